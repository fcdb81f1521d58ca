"""Adversarial cases for the cached-request hot path that the twins of
``test_cached_hit.py`` do not reach: configurations without a certificate header, many
routes and methods, pins and trust that change under a cached entry, threads serving hits
while a revocation lands. Each compares the hot path with the whole path (every shortcut
off), or with what the whole path is known to answer.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from test_cached_hit import _normal, whole_path_only

from mtlsauth import CRLSet, ForwardedCert, Policy, Presented, TrustStore, Verifier
from mtlsauth._guard import Decision, Guard, RequestView, Route
from mtlsauth.testing import CA, self_signed_client_cert

TRUSTED = "127.0.0.1"
HEADER = "x-ssl-client-cert"


# -- ASGI without a certificate header: the TLS chain alone ------------------------------------
def _tls_twins(verifier_of):
    from mtlsauth.adapters.asgi import MTLSMiddleware, identity_from_scope

    async def app(scope, receive, send) -> None:
        who = identity_from_scope(scope)
        body = json.dumps({"cn": who.common_name if who else None}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    out = []
    for _ in range(2):
        decisions: list[Decision] = []
        verifier = verifier_of()
        mw = MTLSMiddleware(
            app,
            verifier=verifier,
            routes=[Route("/admin/*", policy=Policy(organizations={"ads"}))],
            on_decision=decisions.append,
        )
        out.append((mw, verifier, decisions))
    return out


def _send(loop: asyncio.AbstractEventLoop, mw, scope: dict[str, Any]) -> tuple[int, str | None]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    loop.run_until_complete(mw(dict(scope), receive, send))
    body = json.loads(sent[1]["body"])
    return sent[0]["status"], body.get("cn", body.get("code"))


def _django_whoami(request: Any) -> Any:
    """A Django view answering the common name of the request's identity."""
    from django.http import JsonResponse

    from mtlsauth.adapters import django as dj

    who = dj.identity_from_request(request)
    return JsonResponse({"cn": who.common_name if who else None})


def _django_asgi_request(headers: Any) -> Any:
    """Django's ASGI request for ``GET /app`` from the trusted proxy with ``headers``."""
    import io

    from django.core.handlers.asgi import ASGIRequest

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/app",
        "raw_path": b"/app",
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": (TRUSTED, 1),
        "server": ("127.0.0.1", 80),
    }
    return ASGIRequest(scope, io.BytesIO(b""))


def test_asgi_tls_hot_path_refuses_unreadable_headers_as_the_whole_path(pki) -> None:
    """Without a ``ForwardedCert`` the hot path has no header to look for, yet the whole
    path reads every header and refuses a scope whose headers are not bytes pairs
    (``request_malformed``): a cached TLS chain must not answer such a scope either."""
    twins = _tls_twins(lambda: Verifier(trust_store=pki.root.trust_store()))
    tls = {"tls": {"client_cert_chain": [pki.good.chain_pem.text()], "client_cert_error": None}}

    def scope(headers: object, path: str = "/app") -> dict[str, Any]:
        return {
            "type": "http",
            "method": "GET",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": headers,
            "client": ("203.0.113.9", 1),
            "server": ("127.0.0.1", 443),
            "extensions": tls,
        }

    good = scope([(b"accept", b"*/*")])
    odd = [
        scope([("accept", b"*/*")]),  # a str name
        scope([(b"accept", "*/*")]),  # a str value
        scope([(b"accept", b"*/*"), (b"x-forwarded-for", "192.0.2.1")]),
        scope([(b"accept",)]),  # not a pair
        scope(None),
        scope(3),
        scope([(b"accept", "*/*")], path="/admin/x"),
    ]
    (fast, fast_v, fast_d), (slow, _slow_v, slow_d) = twins
    loop = asyncio.new_event_loop()
    try:
        for request in [good, good, *odd, good, *odd]:
            a = _send(loop, fast, request)
            with whole_path_only():
                b = _send(loop, slow, request)
            assert a == b, request["headers"]
            assert [_normal(d) for d in fast_d] == [_normal(d) for d in slow_d]
        assert _send(loop, fast, odd[0]) == (400, "request_malformed")
    finally:
        loop.close()
    assert len(fast_v._chain_aliases) == 1  # the hot path answered the good requests


# -- threads serving hits while a reload lands ----------------------------------------------------
def _write_past(path: Path, data: bytes, age_s: float) -> None:
    """Write ``data`` with a modification time ``age_s`` seconds in the past: past the
    write-quiet period of file sources, so ``reload()`` takes it at once."""
    path.write_bytes(data)
    then = time.time_ns() - int(age_s * 1e9)
    os.utime(path, ns=(then, then))


@pytest.mark.slow
@pytest.mark.parametrize("what", ["crl", "trust", "pins"])
def test_hits_served_while_a_reload_lands_never_outlive_it(tmp_path: Path, what: str) -> None:
    """Threads ask ``Guard.cached`` (and ``check`` when it declines) about one cached
    certificate while the main thread reloads, again and again, a CRL that revokes it, a
    trust store without its CA, or pins without it. Once ``reload()`` has returned with
    the refusing files, no request that starts afterwards is admitted, by either path."""
    ca, stranger = CA(organization="Reload CA"), CA(organization="Stranger CA")
    if what == "pins":
        client = self_signed_client_cert(common_name="pinned", extensions=True)
        other = self_signed_client_cert(common_name="someone else", extensions=True)
        path = tmp_path / "pins.pem"
        files = (client.cert_pem.bytes(), other.cert_pem.bytes())
    else:
        client = ca.issue_client_cert(common_name="client")
        if what == "crl":
            path = tmp_path / "ca.crl"
            files = (
                ca.crl().bytes(),
                ca.crl(extra_serials=[client.certificate.serial_number]).bytes(),
            )
        else:
            path = tmp_path / "ca.pem"
            files = (ca.cert_pem.bytes(), stranger.cert_pem.bytes())
    _write_past(path, files[0], 100)
    source = None if what == "crl" else TrustStore.from_pem_file(path, reload_interval=None)
    verifier = Verifier(
        trust_store=ca.trust_store() if what != "trust" else source,
        pinned=source if what == "pins" else (),
        revocation=CRLSet.from_paths(path, reload_interval=None) if what == "crl" else None,
        forwarded=ForwardedCert.preset("nginx", trusted_proxies=[TRUSTED]),
    )
    guard = Guard(verifier=verifier)
    value = quote(client.cert_pem.text(), safe="")
    view = RequestView(
        peer=TRUSTED,
        path="/app",
        credentials=lambda: Presented(peer=TRUSTED, headers=((HEADER, value),)),
    )
    # (reloads begun, refusing): refusing is set only after reload() has returned, and a
    # request counts only if no other reload began while it ran.
    phase = [(0, False)]
    stop = threading.Event()
    problems: list[str] = []
    hits = [0]

    def worker() -> None:
        while not stop.is_set():
            begun, refused = phase[0]
            identity = guard.cached(TRUSTED, "/app", "GET", None, header=value)
            if identity is not None:
                hits[0] += 1
            else:
                identity = guard.check(view).identity
            if refused and phase[0][0] == begun and identity is not None:
                problems.append(f"admitted after a refusing {what} reload")

    for _ in range(2):  # verified, then admitted: cached
        assert guard.check(view).identity is not None
    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for i in range(1, 13):
            turn = i % 2
            phase[0] = (i, False)
            if what == "crl":  # a new CRL each time: a CRL series never goes back
                extra = [client.certificate.serial_number] if turn else []
                _write_past(path, ca.crl(extra_serials=extra).bytes(), 100 - i)
            else:
                _write_past(path, files[turn], 100 - i)
            assert verifier.reload()
            phase[0] = (i, bool(turn))
            time.sleep(0.02)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert problems == []
    assert hits[0] > 0  # the hot path served requests between the reloads


# -- Django under ASGI: a certificate header spelled with underscores ------------------------------
@pytest.mark.parametrize("preset", ["nginx", "traefik"])
def test_django_asgi_reads_the_certificate_header_as_sent_never_an_underscore_spelling(
    pki, monkeypatch, preset
) -> None:
    """Django before 4.2.30, 5.2.13 and 6.0.4 (CVE-2026-3902) folds ``x_ssl_client_cert``
    into ``HTTP_X_SSL_CLIENT_CERT`` under ASGI, joined with a comma to the proxy's own
    header when both came. Proxies that pass such names (HAProxy, Traefik, Envoy, Caddy,
    Apache) and send no header of their own for a client without a certificate let that
    client name any certificate it has seen. The middleware and DRF read the certificate
    headers from the ASGI scope as they were sent, on the hot path and the whole path."""

    import test_django

    from mtlsauth.adapters import django as dj
    from mtlsauth.testing import encode_forwarded

    test_django.configure_django()
    victim = pki.direct  # issued by the root: nginx forwards the leaf alone
    someone = pki.root.issue_client_cert(common_name="someone")
    fwd = ForwardedCert.preset(preset, trusted_proxies=[TRUSTED])
    name = fwd.header.lower().encode()
    spoof = name.replace(b"-", b"_")
    key = "HTTP_" + fwd.header.upper().replace("-", "_")

    def value(cert) -> bytes:
        ((_name, text),) = encode_forwarded(preset, cert.chain_der)
        return text.encode()

    view = _django_whoami

    def request(headers: list[tuple[bytes, bytes]]) -> Any:
        req = _django_asgi_request(headers)
        folded = [v.decode("latin-1") for k, v in headers if k.replace(b"_", b"-") == name]
        if folded:  # META as the Django releases before the fix build it
            req.META[key] = ",".join(folded)
        return req

    guard = Guard(verifier=Verifier(trust_store=pki.root.trust_store(), forwarded=fwd))
    monkeypatch.setattr(dj, "get_guard", lambda: guard)
    middleware = dj.MTLSMiddleware(view)

    def answer(headers: list[tuple[bytes, bytes]]) -> tuple[int, str | None]:
        response = middleware(request(headers))
        body = json.loads(response.content)
        return response.status_code, body.get("cn", body.get("code"))

    for _ in range(3):  # cached, then answered by the hot path
        assert answer([(name, value(someone))]) == (200, "someone")
    for _ in range(3):
        assert answer([(spoof, value(victim))]) == (401, "certificate_missing")
        assert answer([(spoof, value(victim)), (name, value(someone))]) == (200, "someone")
        assert answer([(name, value(someone)), (spoof, value(victim))]) == (200, "someone")
    presented = dj.presented_from_request(request([(spoof, value(victim))]), guard, (key,))
    assert presented.headers == ()


# -- seeded random requests against twins with many routes -----------------------------------------
def _route_table() -> dict[str, Any]:
    from mtlsauth import TokenCheck

    return {
        "routes": [
            Route("/admin/*", policy=Policy(organizations={"admin"})),
            Route("/post/*", methods={"POST"}, policy=Policy(organizations={"admin"})),
            Route("/opt/*", mode="optional"),
            Route("/off/*", mode="off"),
            Route("/tok/*", token=TokenCheck(lambda token: {"sub": token}, required=False)),
            Route("/open/*", policy=Policy()),
        ],
        "exempt_paths": {"/healthz", "/pub/*"},
    }


# (path the router sees, raw target or None): dot segments, encoded slashes, case, ";",
# a path below a root path, routes that differ by method or policy
_TARGETS = [
    ("/app", b"/app"),
    ("/admin/x", b"/admin/x"),
    ("/admin/x", b"/admin%2Fx"),
    ("/admin/x", b"/ADMIN/x"),
    ("/app", b"/admin/../app"),
    ("/admin/../app", b"/admin/../app"),
    ("/healthz", b"/healthz"),
    ("/healthz", b"//healthz"),
    ("/pub/../admin/x", b"/pub/../admin/x"),
    ("/pub/x", b"/pub/x;a"),
    ("/post/x", b"/post/x"),
    ("/opt/x", b"/opt/x"),
    ("/off/x", b"/off/x"),
    ("/tok/x", b"/tok/x"),
    ("/open/x", b"/open/x"),
    ("/app", None),
    ("/admin/x", None),
    ("", b"/admin/x"),
    ("/x/admin/x", b"/x/admin/x"),
]


class _Clients:
    def __init__(self) -> None:
        import base64

        self.root = CA(organization="Example Corp")
        made = {
            "admin": self.root.issue_client_cert(common_name="admin", organization="admin"),
            "user": self.root.issue_client_cert(common_name="user", organization="users"),
            "evil": CA(organization="Evil").issue_client_cert(
                common_name="evil", organization="admin"
            ),
        }
        self.certs = made

        def traefik(c) -> str:
            return ",".join(base64.b64encode(d).decode() for d in c.chain_der)

        self.values = {
            "nginx": [quote(c.cert_pem.text(), safe="") for c in made.values()]
            + ["(null)", "", " x", quote(made["user"].cert_pem.text(), safe="") + ","],
            "traefik": [traefik(c) for c in made.values()]
            + [traefik(made["admin"]) + "," + traefik(made["user"])],
        }


@pytest.fixture(scope="module")
def clients() -> _Clients:
    return _Clients()


def _verifier(kind: str, c: _Clients) -> Verifier:
    fwd = ForwardedCert.preset(kind, trusted_proxies=[TRUSTED]) if kind != "none" else None
    return Verifier(
        trust_store=c.root.trust_store(),
        forwarded=fwd,
        policy=Policy(organizations={"users", "admin"}),
    )


def _random_scope(r: random.Random, kind: str, c: _Clients) -> dict[str, Any]:
    path, raw = r.choice(_TARGETS)
    names = [b"x-ssl-client-cert", b"X-SSL-Client-Cert", b"x_ssl_client_cert"]
    names += [b"x-forwarded-tls-client-cert", b"X_Forwarded_Tls_Client_Cert", b"accept"]
    headers: list[tuple[Any, Any]] = []
    for _ in range(r.randrange(4)):
        name: Any = r.choice(names)
        value: Any = r.choice(c.values["traefik" if kind == "traefik" else "nginx"]).encode()
        if r.random() < 0.04:
            value = value.decode()
        if r.random() < 0.03:
            name = name.decode()
        headers.append((name, value))
    if r.random() < 0.3:
        headers.append((b"authorization", b"Bearer t"))
    scope: dict[str, Any] = {
        "type": "http",
        "method": r.choice(["GET", "POST", "get"]),
        "path": path,
        "raw_path": raw,
        "root_path": r.choice(["", "", "", "/x"]),
        "query_string": b"",
        "headers": headers,
        "client": r.choice([(TRUSTED, 1), ("203.0.113.9", 1), None, [TRUSTED, 1]]),
        "server": r.choice([("127.0.0.1", 80), ("/run/app.sock", None)]),
    }
    if raw is None:
        del scope["raw_path"]
    cert = r.choice([None, *c.certs.values()])
    if cert is not None:
        shape = r.randrange(5)
        chain: list[Any] = list(cert.chain_der) if shape == 1 else [cert.cert_pem.text()]
        tls: dict[str, Any] = {"client_cert_chain": chain, "client_cert_error": None}
        if shape == 2:
            tls["client_cert_error"] = "bad"
        if shape == 3:
            tls["client_cert_chain"] = [cert.der, 5]
        if shape == 4:
            tls = {"client_cert_chain": chain}
        scope["extensions"] = {"tls": tls}
    return scope


def _random_environ(r: random.Random, kind: str, c: _Clients) -> dict[str, Any]:
    path, raw = r.choice(_TARGETS)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": r.choice(["GET", "POST", "get", ""]),
        "PATH_INFO": r.choice([path, path, "/\xc3\xa9", "/adm\xe9"]),
        "REMOTE_ADDR": r.choice([TRUSTED, "203.0.113.9", "", " 127.0.0.1"]),
        "wsgi.url_scheme": "http",
    }
    if raw is not None:
        environ[r.choice(["RAW_URI", "REQUEST_URI"])] = raw.decode("latin-1")
    keys = ["HTTP_X_SSL_CLIENT_CERT", "HTTP_X_FORWARDED_TLS_CLIENT_CERT", "HTTP_ACCEPT"]
    for _ in range(r.randrange(3)):  # a WSGI server joins repeated headers with a comma
        key = r.choice(keys)
        value = r.choice(c.values["traefik" if kind == "traefik" else "nginx"])
        environ[key] = environ[key] + "," + value if key in environ else value
    if r.random() < 0.3:
        environ["HTTP_AUTHORIZATION"] = "Bearer t"
    if r.random() < 0.2:
        environ["SSL_CLIENT_CERT"] = r.choice(
            [c.certs["admin"].cert_pem.text(), c.certs["user"].cert_pem.text(), "", 3]
        )
    if r.random() < 0.2:
        environ["SSL_CLIENT_VERIFY"] = r.choice(["SUCCESS", "FAILED:x", "NONE"])
    if r.random() < 0.05:
        environ["HTTP_X_SSL_CLIENT_CERT"] = b"x"
    return environ


@pytest.mark.slow
@pytest.mark.parametrize("adapter", ["asgi", "wsgi"])
@pytest.mark.parametrize("kind", ["nginx", "traefik", "none"])
def test_random_requests_through_many_routes_decide_as_the_whole_path(
    clients: _Clients, adapter: str, kind: str
) -> None:
    """Seeded random requests (peers, spellings and copies of the header, TLS extensions
    of every shape, targets with dot segments, encoded slashes and ``;``, root paths,
    methods, bearer tokens) against twins with six routes and two exempt patterns, for a
    leaf-only header (nginx), a header that carries a chain and may hold commas
    (Traefik), and no certificate header at all (the TLS chain alone)."""
    r = random.Random(f"{adapter}-{kind}")
    twins = []
    for _ in range(2):
        decisions: list[Decision] = []
        verifier = _verifier(kind, clients)
        if adapter == "asgi":
            from mtlsauth.adapters.asgi import MTLSMiddleware as AsgiMiddleware

            async def app(scope, receive, send) -> None:
                from mtlsauth.adapters.asgi import identity_from_scope

                who = identity_from_scope(scope)
                seen = [(repr(k), repr(v)) for k, v in scope["headers"]]
                body = json.dumps({"cn": who.common_name if who else None, "h": seen})
                await send({"type": "http.response.start", "status": 200, "headers": []})
                await send({"type": "http.response.body", "body": body.encode()})

            mw: Any = AsgiMiddleware(
                app, verifier=verifier, on_decision=decisions.append, **_route_table()
            )
        else:
            from mtlsauth.adapters.wsgi import MTLSMiddleware as WsgiMiddleware
            from mtlsauth.adapters.wsgi import identity_from_environ

            def wsgi_app(environ, start_response):
                who = identity_from_environ(environ)
                seen = sorted((k, repr(v)) for k, v in environ.items() if k.startswith("HTTP_"))
                start_response("200 OK", [])
                return [json.dumps({"cn": who.common_name if who else None, "h": seen}).encode()]

            mw = WsgiMiddleware(
                wsgi_app, verifier=verifier, on_decision=decisions.append, **_route_table()
            )
        twins.append((mw, verifier, decisions))
    (fast, fast_v, fast_d), (slow, slow_v, slow_d) = twins
    make = _random_scope if adapter == "asgi" else _random_environ
    requests = [make(r, kind, clients) for _ in range(150)]
    loop = asyncio.new_event_loop()

    def send(mw: Any, request: dict[str, Any]) -> tuple[Any, ...]:
        if adapter == "wsgi":
            status: list[str] = []
            body = b"".join(mw(dict(request), lambda s, h: status.append(s)))
            return status[0], body
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send_(message: dict[str, Any]) -> None:
            sent.append(message)

        loop.run_until_complete(mw(dict(request), receive, send_))
        return sent[0]["status"], sent[1]["body"]

    try:
        for _ in range(3):
            for request in requests:
                a = send(fast, request)
                with whole_path_only():
                    b = send(slow, request)
                assert a == b, request
                assert [_normal(d) for d in fast_d] == [_normal(d) for d in slow_d], request
    finally:
        loop.close()
    assert fast_v.health()["cache"] == slow_v.health()["cache"]
    assert fast_v.health()["cache"]["hits"] > 0


# -- the cache key of a TLS chain: text and bytes -------------------------------------------------
def test_a_chain_item_as_text_never_shares_the_key_of_other_bytes(pki) -> None:
    """``chain_key`` hashes a text item as its UTF-8 bytes (surrogates escaped back to the
    bytes they stand for), so DER read as text with ``surrogateescape`` had the key of the
    DER itself: once the DER was cached, the text, which ``chain_to_der`` refuses (not
    ASCII), was answered from that entry by the hot path and the whole path alike. Text
    that is not ASCII has keys of its own; ASCII text (PEM) still keys as its bytes."""
    from mtlsauth import CertificateInvalid
    from mtlsauth._cache import chain_key

    verifier = Verifier(
        trust_store=pki.root.trust_store(), intermediates=[pki.inter.cert_pem.text()]
    )
    der = pki.good.der
    as_text = der.decode("utf-8", "surrogateescape")
    for _ in range(2):  # verified, then admitted
        assert verifier.authenticate(Presented(peer="203.0.113.9", tls_chain=(der,))) is not None
    for chain in ((as_text,), (as_text, pki.inter.cert_pem.text())):
        with pytest.raises(CertificateInvalid) as refused:
            verifier.authenticate(Presented(peer="203.0.113.9", tls_chain=chain))
        assert refused.value.code == "certificate_malformed"
        assert verifier._cached_chain(chain, "203.0.113.9", None) is None
    pem = pki.good.cert_pem.text()
    assert chain_key((pem,), b"t") == chain_key((pem.encode(),), b"t")
    assert chain_key((as_text,), b"t") != chain_key((der,), b"t")
    assert chain_key((as_text, "a"), b"t") != chain_key((der, b"a"), b"t")


# -- the quiet hot path: no routes, no exempt paths, nobody reading decisions --------------------
def _quiet_twins(kind: str, c: _Clients, mode: str, adapter: str = "asgi") -> list[Any]:
    """Twin middlewares without routes, exempt paths or ``on_decision``: the
    configuration whose cached hits ``Guard.cached`` answers in its short branch."""
    from mtlsauth.adapters.asgi import MTLSMiddleware as AsgiMiddleware
    from mtlsauth.adapters.asgi import identity_from_scope

    if adapter == "wsgi":
        from mtlsauth.adapters.wsgi import MTLSMiddleware as WsgiMiddleware
        from mtlsauth.adapters.wsgi import identity_from_environ

        def wsgi_app(environ: Any, start_response: Any) -> list[bytes]:
            who = identity_from_environ(environ)
            seen = sorted((k, repr(v)) for k, v in environ.items() if k.startswith("HTTP_"))
            start_response("200 OK", [])
            return [json.dumps({"cn": who.common_name if who else None, "h": seen}).encode()]

        return [
            (
                mw := WsgiMiddleware(wsgi_app, verifier=_verifier(kind, c), mode=mode),
                mw.guard.verifier,
            )
            for _ in range(2)
        ]

    async def app(scope, receive, send) -> None:
        who = identity_from_scope(scope)
        try:
            seen = [(repr(k), repr(v)) for k, v in scope["headers"]]
        except Exception as exc:  # noqa: BLE001 - what the app would meet, compared
            seen = [type(exc).__name__]
        body = json.dumps({"cn": who.common_name if who else None, "h": seen})
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body.encode()})

    return [
        (mw := AsgiMiddleware(app, verifier=_verifier(kind, c), mode=mode), mw.guard.verifier)
        for _ in range(2)
    ]


def _asgi_send(loop: asyncio.AbstractEventLoop, mw: Any, scope: dict[str, Any]) -> tuple[Any, ...]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    loop.run_until_complete(mw(scope, receive, send))
    return sent[0]["status"], sent[1]["body"]


@pytest.fixture
def short_branch_hits(monkeypatch) -> list[object]:
    """Each identity ``Guard.cached`` answers in its short branch (nothing path-dependent,
    nobody reading decisions), so that a test can show that branch ran."""
    from mtlsauth import _guard

    hits: list[object] = []
    real = Guard.cached

    def cached(self: Guard, *args: Any, **kwargs: Any) -> Any:
        quiet = (
            not self.path_sensitive
            and self.on_decision is None
            and self.mode != "off"
            and not _guard.logger.isEnabledFor(_guard._DEBUG)
        )
        identity = real(self, *args, **kwargs)
        if quiet and identity is not None:
            hits.append(identity)
        return identity

    monkeypatch.setattr(Guard, "cached", cached)
    return hits


def _wsgi_send(mw: Any, environ: dict[str, Any]) -> tuple[Any, ...]:
    status: list[str] = []
    body = b"".join(mw(environ, lambda s, h, exc_info=None: status.append(s)))
    return status[0], body


@pytest.mark.slow
@pytest.mark.parametrize("adapter", ["asgi", "wsgi"])
@pytest.mark.parametrize("mode", ["mandatory", "optional"])
@pytest.mark.parametrize("kind", ["nginx", "traefik", "none"])
def test_the_quiet_hot_path_decides_as_the_whole_path(
    clients: _Clients,
    adapter: str,
    kind: str,
    mode: str,
    short_branch_hits: list[object],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Seeded random requests against twins with nothing path-dependent, in modes
    ``"mandatory"`` and ``"optional"``: first with nobody reading decisions (the short
    branch of ``Guard.cached``), then with an ``on_decision`` hook set on the running
    Guard, then with the ``mtlsauth`` logger switched to DEBUG while it runs, then quiet
    again. Answers, what the app saw, the decisions and the allowed-request log lines
    are the whole path's."""
    import logging

    r = random.Random(f"quiet-{adapter}-{kind}-{mode}")
    (fast, fast_v), (slow, slow_v) = _quiet_twins(kind, clients, mode, adapter)
    make = _random_scope if adapter == "asgi" else _random_environ
    requests = [make(r, kind, clients) for _ in range(120)]
    loop = asyncio.new_event_loop()
    fast_d: list[Decision] = []
    slow_d: list[Decision] = []

    def send(mw: Any, request: dict[str, Any]) -> tuple[Any, ...]:
        if adapter == "wsgi":
            return _wsgi_send(mw, dict(request))
        return _asgi_send(loop, mw, dict(request))

    def both(request: dict[str, Any]) -> None:
        caplog.clear()
        a = send(fast, request)
        fast_lines = [rec.getMessage() for rec in caplog.records]
        caplog.clear()
        with whole_path_only():
            b = send(slow, request)
        slow_lines = [rec.getMessage() for rec in caplog.records]
        assert a == b, request
        assert fast_lines == slow_lines, request
        assert [(*_normal(d), d.hint) for d in fast_d] == [(*_normal(d), d.hint) for d in slow_d], (
            request
        )

    try:
        for phase in ("quiet", "hook", "debug", "quiet"):
            fast.guard.on_decision = fast_d.append if phase == "hook" else None
            slow.guard.on_decision = slow_d.append if phase == "hook" else None
            level = logging.DEBUG if phase == "debug" else logging.WARNING
            caplog.set_level(level, logger="mtlsauth")
            before = len(short_branch_hits)
            for _ in range(2):
                for request in requests:
                    both(request)
            if phase == "quiet" and (adapter, kind) != ("wsgi", "none"):
                # (WSGI's hot path reads a certificate header: none here)
                assert len(short_branch_hits) > before  # the short branch answered
            else:
                assert len(short_branch_hits) == before  # someone reads: the whole branch
    finally:
        loop.close()
    assert fast_d  # the hook phase decided something
    assert fast_v.health()["cache"] == slow_v.health()["cache"]


def _header_shapes(c: _Clients) -> list[tuple[str, Any]]:
    """``scope["headers"]`` in the shapes a server might pass: (label, a maker of a fresh
    value, since an iterator is spent by one reading)."""
    good = quote(c.certs["user"].cert_pem.text(), safe="").encode()
    bad = quote(c.certs["evil"].cert_pem.text(), safe="").encode()
    name = HEADER.encode()
    return [
        ("one copy", lambda: [(name, good)]),
        ("lists, not tuples", lambda: [[name, good], [b"accept", b"*/*"]]),
        ("a tuple of tuples", lambda: ((name, good),)),
        ("upper case", lambda: [(name.upper(), good)]),
        ("mixed case", lambda: [(b"X-Ssl-Client-Cert", good)]),
        ("two copies", lambda: [(name, good), (name, good)]),
        ("two spellings", lambda: [(name, good), (name.upper(), good)]),
        ("two copies, one refused", lambda: [(name, good), (name, bad)]),
        ("a str name", lambda: [(HEADER, good)]),
        ("a str value", lambda: [(name, good.decode())]),
        ("a bytearray value", lambda: [(name, bytearray(good))]),
        ("a str elsewhere", lambda: [(name, good), ("accept", b"*/*")]),
        ("three items", lambda: [(name, good, b"x")]),
        ("one item", lambda: [(name,)]),
        ("a bytes item", lambda: [b"ab"]),
        ("None", lambda: None),
        ("an int", lambda: 3),
        ("a dict", lambda: {name: good}),
        ("bytes", lambda: name),
        ("an iterator", lambda: iter([(name, good)])),
        ("an iterator, refused", lambda: iter([(name, bad)])),
        ("a generator, two copies", lambda: (h for h in [(name, good), (name, bad)])),
        ("an iterator of a str", lambda: iter([(name, good), (HEADER, good)])),
    ]


def _chain_shapes(c: _Clients) -> list[tuple[str, Any]]:
    """``client_cert_chain`` of the TLS extension in the shapes a server might pass."""
    good, bad = c.certs["user"], c.certs["evil"]
    return [
        ("a list", lambda: [good.cert_pem.text()]),
        ("a tuple", lambda: (good.cert_pem.text(),)),
        ("DER", lambda: [good.der]),
        ("an iterator", lambda: iter([good.cert_pem.text()])),
        ("an iterator, refused", lambda: iter([bad.cert_pem.text()])),
        ("a generator with an int", lambda: (x for x in [good.der, 5])),
        ("an int", lambda: 5),
        ("a str", lambda: good.cert_pem.text()),
    ]


@pytest.mark.parametrize("kind", ["nginx", "none"])
@pytest.mark.parametrize("mode", ["mandatory", "optional"])
@pytest.mark.parametrize("quiet", [True, False])
def test_header_and_chain_shapes_are_read_as_the_whole_path_reads_them(
    clients: _Clients, kind: str, mode: str, quiet: bool
) -> None:
    """The ASGI hot path reads ``scope["headers"]`` (and the TLS chain) before the whole
    path does: for every shape a server may pass (lists for tuples, other letter cases,
    copies, items that are not bytes or not pairs, no iterable at all, and a one-shot
    iterator, which the ASGI spec allows), twins answer alike, with and without someone
    reading decisions. An iterator spent by the hot path once left the whole path no
    certificate: a refused certificate then went through mode ``"optional"`` with no
    identity."""
    shapes = [("headers", *s) for s in _header_shapes(clients)]
    shapes += [("chain", *s) for s in _chain_shapes(clients)]
    (fast, _fast_v), (slow, _slow_v) = _quiet_twins(kind, clients, mode)
    fast_d: list[Decision] = []
    slow_d: list[Decision] = []
    if not quiet:
        fast.guard.on_decision, slow.guard.on_decision = fast_d.append, slow_d.append
    peer = TRUSTED if kind == "nginx" else "203.0.113.9"

    def scope(where: str, make: Any) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "http",
            "method": "GET",
            "path": "/app",
            "raw_path": b"/app",
            "root_path": "",
            "query_string": b"",
            "headers": make() if where == "headers" else [(b"accept", b"*/*")],
            "client": (peer, 1),
            "server": ("127.0.0.1", 443),
        }
        if where == "chain":
            out["extensions"] = {"tls": {"client_cert_chain": make(), "client_cert_error": None}}
        return out

    loop = asyncio.new_event_loop()
    try:
        for _ in range(3):  # verified, admitted, then answered by the hot path
            for where, label, make in shapes:
                a = _asgi_send(loop, fast, scope(where, make))
                with whole_path_only():
                    b = _asgi_send(loop, slow, scope(where, make))
                assert a == b, (where, label)
                assert [_normal(d) for d in fast_d] == [_normal(d) for d in slow_d], label
        by_label = {(where, label): make for where, label, make in shapes}
        where = "headers" if kind == "nginx" else "chain"
        status, body = _asgi_send(loop, fast, scope(where, by_label[where, "an iterator"]))
        assert (status, json.loads(body).get("cn")) == (200, "user"), body
        assert len(json.loads(body)["h"]) == 1  # the app sees the header that was sent
        status, body = _asgi_send(loop, fast, scope(where, by_label[where, "an iterator, refused"]))
        assert (status, json.loads(body).get("code")) == (401, "untrusted_issuer"), body
    finally:
        loop.close()


@pytest.mark.parametrize("mode", ["mandatory", "optional"])
def test_django_asgi_headers_spent_by_django_are_refused_not_taken_as_absent(
    clients: _Clients, monkeypatch, mode: str
) -> None:
    """Django's ASGI request reads ``scope["headers"]`` into ``META`` when it is made;
    the middleware then reads the certificate header from the scope again (never from
    ``META``: CVE-2026-3902). A one-shot iterator, which the ASGI spec allows, is spent
    by then: the header looked absent, and mode ``"optional"`` let a request whose
    certificate is refused through with no identity. Headers that are not a list or a
    tuple are refused as unreadable (``request_malformed``) instead."""

    import test_django

    from mtlsauth.adapters import django as dj

    test_django.configure_django()
    name = HEADER.encode()
    value = quote(clients.certs["evil"].cert_pem.text(), safe="").encode()
    good = quote(clients.certs["user"].cert_pem.text(), safe="").encode()

    view = _django_whoami

    def answer(headers: Any) -> tuple[int, str | None]:
        response = middleware(_django_asgi_request(headers))
        body = json.loads(response.content)
        return response.status_code, body.get("cn", body.get("code"))

    guard = Guard(verifier=_verifier("nginx", clients), mode=mode)
    monkeypatch.setattr(dj, "get_guard", lambda: guard)
    middleware = dj.MTLSMiddleware(view)
    assert answer([(name, value)]) == (401, "untrusted_issuer")
    for _ in range(3):  # verified, admitted, then answered by the hot path
        assert answer([(name, good)]) == (200, "user")
    for headers in (iter([(name, value)]), iter([(name, good)]), (h for h in [(name, good)])):
        assert answer(headers) == (400, "request_malformed")
    assert answer(iter([])) == (400, "request_malformed")
    assert answer(((name, good),)) == (200, "user")  # a tuple is read as a list is
