"""Attacks on the code that decides whether a request gets in: each one must fail closed."""

from __future__ import annotations

import pytest

from mtlsauth import Verifier
from mtlsauth._guard import Guard, Route

UNCHECKED = "off"


@pytest.fixture(scope="module")
def verifier(pki) -> Verifier:
    return Verifier(trust_store=pki.root.trust_store())


# -- routes: a method rule must cover every spelling the framework serves -----------------
METHOD_SPELLINGS = [
    pytest.param("GET", {"GET"}, id="GET rule, GET"),
    pytest.param("HEAD", {"GET"}, id="GET rule, HEAD runs the GET handler"),
    pytest.param("head", {"GET"}, id="GET rule, lower-case head"),
    pytest.param("post", {"POST"}, id="POST rule, lower-case post (WSGI upper-cases it)"),
    pytest.param("Delete", {"DELETE"}, id="DELETE rule, mixed case"),
]


@pytest.mark.parametrize(("method", "methods"), METHOD_SPELLINGS)
def test_method_rule_covers_what_the_framework_serves(verifier, method, methods) -> None:
    guard = Guard(
        verifier=verifier,
        mode=UNCHECKED,
        routes=[Route("/admin/*", methods=methods, mode="mandatory")],
    )
    mode, route, _ = guard.resolve("/admin/users", method)
    assert mode == "mandatory"
    assert route is not None


@pytest.mark.parametrize(
    ("method", "methods"),
    [
        pytest.param("POST", {"GET"}, id="GET rule does not cover POST"),
        pytest.param("GET", {"HEAD"}, id="HEAD rule does not cover GET"),
        pytest.param("OPTIONS", {"GET"}, id="GET rule does not cover OPTIONS"),
    ],
)
def test_method_rule_does_not_widen(verifier, method, methods) -> None:
    guard = Guard(
        verifier=verifier, mode=UNCHECKED, routes=[Route("/x", methods=methods, mode="mandatory")]
    )
    assert guard.resolve("/x", method)[0] == UNCHECKED


def test_wsgi_lower_case_method_cannot_skip_a_mandatory_route(verifier) -> None:
    from mtlsauth.adapters.wsgi import MTLSMiddleware

    reached: list[str] = []

    def app(environ, start_response):
        reached.append(environ["REQUEST_METHOD"].upper())  # what Flask and Django serve
        start_response("200 OK", [("content-type", "text/plain")])
        return [b"admin"]

    mw = MTLSMiddleware(
        app,
        verifier=verifier,
        mode="off",
        routes=[Route("/admin/*", methods={"POST"}, mode="mandatory")],
    )
    statuses: list[str] = []
    environ = {"REQUEST_METHOD": "post", "PATH_INFO": "/admin/rotate", "REMOTE_ADDR": "1.2.3.4"}
    mw(environ, lambda status, headers, exc_info=None: statuses.append(status))
    assert statuses[0].startswith("401")
    assert reached == []


# -- source choice: a trusted proxy's own TLS certificate is never its client's ----------
PROXY = "10.0.0.1"


@pytest.fixture(scope="module")
def proxied(pki):
    from mtlsauth import ForwardedCert

    # The proxy re-encrypts to the app with its own certificate from the same CA, as it
    # must when the app's server context requires one (server_ssl_context, mode mandatory).
    proxy_cert = pki.inter.issue_client_cert(common_name="gateway", organization="payments")
    verifier = Verifier(
        trust_store=pki.root.trust_store(),
        forwarded=ForwardedCert.preset(
            "nginx",
            header="x-ssl-client-cert",
            trusted_proxies=[PROXY],
            single_certificate=False,  # leaf + intermediate in the header
        ),
    )
    return verifier, tuple(proxy_cert.chain_der)


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param((), id="no header (client sent no certificate)"),
        pytest.param((("x-ssl-client-cert", ""),), id="empty header"),
        pytest.param((("x-ssl-client-cert", "(null)"),), id="Apache (null)"),
    ],
)
def test_trusted_proxy_without_header_is_not_authenticated_as_itself(proxied, headers) -> None:
    from mtlsauth import CertificateMissing, Presented

    verifier, proxy_chain = proxied
    presented = Presented(peer=PROXY, headers=headers, tls_chain=proxy_chain)
    with pytest.raises(CertificateMissing):
        verifier.authenticate(presented)
    assert verifier.authenticate(presented, required=False) is None


def test_trusted_proxy_header_still_wins_over_its_tls_chain(proxied, pki) -> None:
    from urllib.parse import quote

    from mtlsauth import Presented

    verifier, proxy_chain = proxied
    header = ("x-ssl-client-cert", quote(pki.good.chain_pem.text(), safe=""))
    identity = verifier.authenticate(
        Presented(peer=PROXY, headers=(header,), tls_chain=proxy_chain)
    )
    assert identity is not None
    assert identity.common_name == "ledger"


def test_direct_tls_client_still_authenticates_beside_a_forwarded_config(proxied, pki) -> None:
    from mtlsauth import Presented

    verifier, _ = proxied
    identity = verifier.authenticate(
        Presented(peer="192.0.2.7", tls_chain=tuple(pki.good.chain_der))
    )
    assert identity is not None
    assert identity.source == "tls"


# -- policy: case-insensitive, but no character may fold into a different ASCII name -----
FOLDING = [
    # (field, allowed, presented CN/O, admitted)
    pytest.param("common_names", "staff", "\u017ftaff", False, id="long s folds to s"),
    pytest.param("common_names", "kube", "\u212aube", False, id="Kelvin sign folds to k"),
    pytest.param("common_names", "office", "o\ufb03ce", False, id="ffi ligature folds to ffi"),
    pytest.param("organizations", "strasse", "Stra\u00dfe", False, id="sharp s folds to ss"),
    pytest.param("common_names", "admin", "adm\u0130n", False, id="dotted capital I"),
    pytest.param("common_names", "admin", "adm\u0131n", False, id="dotless i"),
    pytest.param("subjects", "CN=staff", "\u017ftaff", False, id="subject DN, long s"),
    pytest.param("common_names", "admin", "ADMIN", True, id="ASCII case still folds"),
    pytest.param("common_names", "m\u00fcller", "M\u00dcLLER", True, id="Latin-1 case folds"),
    pytest.param(
        "organizations",
        "\u03c3\u03bf\u03c6\u03b9\u03b1",
        "\u03a3\u039f\u03a6\u0399\u0391",
        True,
        id="Greek case folds",
    ),
    pytest.param("common_names", "caf\u00e9", "cafe\u0301", True, id="NFC composes"),
]


@pytest.fixture(scope="module")
def folding_ca():
    from mtlsauth.testing import CA

    return CA(organization="folding")


@pytest.mark.parametrize(("field", "allowed", "presented", "admitted"), FOLDING)
def test_policy_case_folding_is_not_a_confusable_match(
    folding_ca, field, allowed, presented, admitted
) -> None:
    from mtlsauth import Policy, PolicyDenied

    if field == "organizations":
        cert = folding_ca.issue_client_cert(common_name="x", organization=presented)
    else:
        cert = folding_ca.issue_client_cert(common_name=presented)
    identity = Verifier(trust_store=folding_ca.trust_store()).verify(cert.chain_der)
    policy = Policy(**{field: [allowed]})
    if admitted:
        policy.check(identity)
    else:
        with pytest.raises(PolicyDenied):
            policy.check(identity)


@pytest.mark.parametrize(
    ("field", "allowed", "attribute", "presented"),
    [
        pytest.param("dns_names", "kube.example", "dns_names", "\u212aube.example", id="DNS"),
        pytest.param("dns_names", "*.example", "dns_names", "\u212aube.example", id="DNS wild"),
        pytest.param("emails", "@kube.example", "emails", "a@\u212aube.example", id="email"),
    ],
)
def test_non_ascii_san_never_folds_into_an_ascii_entry(
    pki, field, allowed, attribute, presented
) -> None:
    import dataclasses

    from mtlsauth import Policy, PolicyDenied

    identity = Verifier(trust_store=pki.root.trust_store()).verify(pki.good.chain_der)
    forged = dataclasses.replace(identity, **{attribute: (presented,)})
    with pytest.raises(PolicyDenied):
        Policy(**{field: [allowed]}).check(forged)


# -- ASGI: header names in any case, and the TLS extension's error -------------------------
def _asgi_fwd(pki, *, on_untrusted: str = "reject") -> Verifier:
    from mtlsauth import ForwardedCert

    return Verifier(
        trust_store=pki.root.trust_store(),
        forwarded=ForwardedCert.preset(
            "nginx",
            header="X-SSL-Client-Cert",
            trusted_proxies=[PROXY],
            on_untrusted=on_untrusted,
            single_certificate=False,  # leaf + intermediate in the header
        ),
    )


async def _run_asgi(app, scope):
    sent: list[dict] = []
    seen: list[dict] = []

    async def inner(scope, receive, send):
        seen.append(scope)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive():
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    await app(inner)(scope, receive, send)
    return sent[0]["status"], seen


def _http_scope(peer: str, headers: list[tuple[bytes, bytes]], tls: dict | None = None) -> dict:
    scope = {"type": "http", "path": "/", "method": "GET", "headers": headers, "client": (peer, 1)}
    if tls is not None:
        scope["extensions"] = {"tls": tls}
    return scope


NAME_SPELLINGS = [
    pytest.param(b"X-SSL-Client-Cert", id="canonical case"),
    pytest.param(b"X-SSL-CLIENT-CERT", id="upper case"),
    pytest.param(b"x-ssl-client-cert", id="lower case"),
]


@pytest.mark.parametrize("name", NAME_SPELLINGS)
async def test_asgi_forged_header_in_any_case_is_refused(pki, name) -> None:
    from urllib.parse import quote

    from mtlsauth.adapters.asgi import MTLSMiddleware

    forged = quote(pki.good.chain_pem.text(), safe="").encode()
    verifier = _asgi_fwd(pki)
    status, seen = await _run_asgi(
        lambda app: MTLSMiddleware(app, verifier=verifier, mode="optional"),
        _http_scope("203.0.113.9", [(name, forged)]),
    )
    assert status == 401
    assert seen == []


@pytest.mark.parametrize(
    "name", [*NAME_SPELLINGS, pytest.param(b"X_SSL_Client_Cert", id="underscores")]
)
async def test_asgi_forged_header_in_any_spelling_is_hidden_from_the_app(pki, name) -> None:
    from urllib.parse import quote

    from mtlsauth.adapters.asgi import MTLSMiddleware

    forged = quote(pki.good.chain_pem.text(), safe="").encode()
    verifier = _asgi_fwd(pki, on_untrusted="ignore")
    status, seen = await _run_asgi(
        lambda app: MTLSMiddleware(app, verifier=verifier, mode="optional"),
        _http_scope("203.0.113.9", [(name, forged), (b"accept", b"*/*")]),
    )
    assert status == 204
    assert seen[0]["headers"] == [(b"accept", b"*/*")]
    assert seen[0]["mtlsauth.identity"] is None


@pytest.mark.parametrize("name", NAME_SPELLINGS)
async def test_asgi_trusted_proxy_header_is_read_in_any_case(pki, name) -> None:
    from urllib.parse import quote

    from mtlsauth.adapters.asgi import MTLSMiddleware

    value = quote(pki.good.chain_pem.text(), safe="").encode()
    verifier = _asgi_fwd(pki)
    status, seen = await _run_asgi(
        lambda app: MTLSMiddleware(app, verifier=verifier),
        _http_scope(PROXY, [(name, value)]),
    )
    assert status == 204
    assert seen[0]["mtlsauth.identity"].common_name == "ledger"


async def test_asgi_empty_client_cert_error_is_still_an_error(pki) -> None:
    from mtlsauth.adapters.asgi import MTLSMiddleware

    tls = {"client_cert_chain": [pki.good.chain_pem.text()], "client_cert_error": ""}
    status, seen = await _run_asgi(
        lambda app: MTLSMiddleware(app, verifier=Verifier(trust_store=pki.root.trust_store())),
        _http_scope("192.0.2.7", [], tls),
    )
    assert status == 401
    assert seen == []


async def test_aiohttp_forged_header_with_underscores_is_hidden(aiohttp_client, pki) -> None:
    from urllib.parse import quote

    from aiohttp import web

    from mtlsauth.adapters.aiohttp import mtls_middleware

    async def echo(request: web.Request) -> web.Response:
        return web.json_response(sorted(k.lower() for k in request.headers))

    app = web.Application(
        middlewares=[mtls_middleware(verifier=_asgi_fwd(pki, on_untrusted="ignore"), mode="off")]
    )
    app.router.add_get("/", echo)
    client = await aiohttp_client(app)
    forged = quote(pki.good.chain_pem.text(), safe="")
    r = await client.get("/", headers={"X_SSL_Client_Cert": forged, "X-Other": "1"})
    assert "x_ssl_client_cert" not in await r.json()
    assert "x-other" in await r.json()


# -- trust gate: a link-local proxy named with its zone is trusted on that link only -------
@pytest.mark.parametrize(
    ("proxies", "peer", "trusted"),
    [
        pytest.param(["fe80::1%eth0"], "fe80::1%eth0", True, id="same zone"),
        pytest.param(["fe80::1%eth0"], "fe80::1%eth1", False, id="other zone"),
        pytest.param(["fe80::1%eth0"], "fe80::1", False, id="zoned entry, no zone on peer"),
        pytest.param(["fe80::/64"], "fe80::1%eth1", True, id="entry without zone"),
        pytest.param(["fe80::%eth0/64"], "fe80::9%eth0", True, id="zoned network"),
        pytest.param(["fe80::%eth0/64"], "fe80::9%wlan0", False, id="zoned network, other zone"),
    ],
)
def test_zone_of_a_link_local_proxy_counts(proxies, peer, trusted) -> None:
    from mtlsauth import ForwardedCert

    fc = ForwardedCert.preset("nginx", trusted_proxies=proxies)
    assert fc.is_trusted(peer) is trusted


# -- XFCC: a quoted Subject carries its own RFC 2253 escapes --------------------------------
def _xfcc_identity(value: str):
    from mtlsauth import ForwardedCert, Presented

    fc = ForwardedCert(
        header="X-Forwarded-Client-Cert",
        encoding="xfcc",
        trusted_proxies=[PROXY],
        verified_by_proxy=True,
    )
    presented = Presented(peer=PROXY, headers=(("x-forwarded-client-cert", value),))
    extracted = fc.extract(presented)
    assert extracted is not None
    return extracted.decode()


@pytest.mark.parametrize(
    ("subject", "cn", "org"),
    [
        pytest.param('CN=a \\"b\\",O=Acme\\, Inc.', 'a "b"', "Acme, Inc.", id="escaped quotes"),
        pytest.param("CN=back\\\\,O=Acme", "back\\", "Acme", id="value ending in a backslash"),
        pytest.param('CN=\\"\\\\\\",O=Acme', '"\\"', "Acme", id="quote, backslash, quote"),
        pytest.param("CN=a\\,b;c,O=x\\;y", None, None, id="unescaped ; stays in the quotes"),
    ],
)
def test_xfcc_subject_with_escapes_parses(subject, cn, org) -> None:
    from mtlsauth import MTLSAuthError

    header = f'Hash={"ab" * 32};Subject="{subject}";URI=spiffe://td/caller'
    if cn is None:  # RFC 2253 escapes ';': a bare one is refused by the DN parser, not split on
        with pytest.raises(MTLSAuthError):
            _xfcc_identity(header)
        return
    identity = _xfcc_identity(header)
    assert (identity.common_name, identity.organization) == (cn, org)
    assert identity.uris == ("spiffe://td/caller",)
    assert identity.spiffe_id == "spiffe://td/caller"


def test_xfcc_escaped_quote_cannot_end_the_subject() -> None:
    # An attacker's CN 'x";URI=spiffe://td/admin' reaches the header as RFC 2253 writes it.
    subject = 'CN=x\\"\\;URI=spiffe://td/admin,O=Acme'
    identity = _xfcc_identity(f'Hash={"ab" * 32};Subject="{subject}";URI=spiffe://td/mallory')
    assert identity.uris == ("spiffe://td/mallory",)
    assert identity.common_name == 'x";URI=spiffe://td/admin'


def test_xfcc_encoder_writes_the_subject_as_envoy_does() -> None:
    from mtlsauth._xfcc import encode_element, select_element

    subject = 'CN=a \\"b\\",O=Acme\\, Inc.\\\\'
    header = encode_element([], by=None, subject=subject)
    assert header == f'Subject="{subject}";URI='
    assert select_element(header, -1).subject == subject
    with pytest.raises(ValueError, match="cannot be quoted"):
        encode_element([], by=None, subject='CN=a "b"')


def test_rfc9440_parameter_strings_honour_escapes(pki) -> None:
    import base64

    from mtlsauth import MTLSAuthError
    from mtlsauth._forwarded_formats import decode_rfc9440, decode_rfc9440_list

    der = pki.good.chain_der[0]
    item = ":" + base64.b64encode(der).decode() + ":"
    assert decode_rfc9440(f'{item};note="a \\"quoted\\", :x: value"') == [der]
    chain = decode_rfc9440_list(f'{item};note="a\\\\", {item}')
    assert chain == [der, der]
    for bad in (f'{item};note="a\\q"', f'{item};note="a\\"', f'{item};note="\u00e9"'):
        with pytest.raises(MTLSAuthError):
            decode_rfc9440(bad)


# -- multi-valued names: the policy and the application read the same values -----------------
def test_every_organization_must_be_allowed(pki) -> None:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    from mtlsauth import Policy, PolicyDenied
    from mtlsauth.testing import CA

    ca = CA()
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "evil"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ops"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "red"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "blue"),
            x509.NameAttribute(NameOID.COMMON_NAME, "svc"),
        ]
    )
    cert = ca.issue_client_cert(subject=subject)
    identity = Verifier(trust_store=ca.trust_store()).verify(cert.chain_der)
    assert identity.organization == "evil"  # the first, as before
    assert identity.organizations == ("evil", "ops")
    assert identity.organizational_units == ("red", "blue")
    for policy in (Policy(organizations=["ops"]), Policy(organizations=["evil"])):
        with pytest.raises(PolicyDenied) as info:
            policy.check(identity)
        assert "not all are in the allow-list" in info.value.detail
    Policy(organizations=["OPS", "evil"], organizational_units=["blue"]).check(identity)


def test_proxy_identity_lists_every_organization() -> None:
    from mtlsauth import Policy, PolicyDenied

    identity = _xfcc_identity(f'Hash={"ab" * 32};Subject="CN=svc,O=ops,O=evil";URI=')
    assert (identity.organization, identity.organizations) == ("evil", ("evil", "ops"))
    with pytest.raises(PolicyDenied):
        Policy(organizations=["ops"]).check(identity)
    Policy(organizations=["ops", "evil"]).check(identity)


def test_gcp_spiffe_id_must_be_the_one_spiffe_uri() -> None:
    import base64

    from mtlsauth import MTLSAuthError
    from mtlsauth._forwarded_identity import identity_from_gcp

    def fields(spiffe: str, *uris: str) -> dict[str, str]:
        listed = ",".join(base64.b64encode(u.encode()).decode() for u in uris)
        return {"chain_verified": "true", "spiffe": spiffe, "uri": listed}

    ok = identity_from_gcp(fields("spiffe://td/a", "spiffe://td/a", "https://x"), "header:x")
    assert ok.spiffe_id == "spiffe://td/a"
    assert identity_from_gcp(fields("spiffe://td/a"), "header:x").spiffe_id == "spiffe://td/a"
    for bad in (
        fields("spiffe://td/admin", "spiffe://td/a"),
        fields("spiffe://td/a", "spiffe://td/a", "spiffe://td/b"),
        fields("spiffe://td/a", "https://x"),
    ):
        with pytest.raises(MTLSAuthError, match="not the certificate's one SPIFFE URI"):
            identity_from_gcp(bad, "header:x")
