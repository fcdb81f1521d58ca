"""Unusual but legitimate client certificates through real nginx, Apache, HAProxy and Caddy.

Each client presents its chain to every proxy (one process each for the module, each asking
for a certificate without insisting on a trusted one, with a verify depth that admits four
intermediates). For each, what the proxy forwarded must decode to exactly the certificates
the client presented (the leaf alone for nginx and Caddy), and the app's verdict through the
header must equal ``Verifier.verify`` of the same chain, as over direct TLS.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import socket
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from mtlsauth import ForwardedCert, MTLSAuthError, Presented, Verifier
from mtlsauth.testing import ClientCert, encode_forwarded

pytestmark = pytest.mark.e2e

NAMES = ("nginx", "apache", "haproxy", "caddy")
APACHE_CHAIN = tuple(f"X-SSL-Client-Cert-Chain-{i}" for i in range(5))


def _clients(pki: Any) -> dict[str, ClientCert]:
    inter = pki.intermediate
    deep = inter
    for i in range(3):  # four intermediates under the root
        deep = deep.intermediate(common_name=f"Deep Intermediate {i + 2}")
    cn = NameOID.COMMON_NAME
    now, day = dt.datetime.now(dt.timezone.utc), dt.timedelta(days=1)
    alice, root, inter_cert = pki.client, pki.root.certificate, inter.certificate
    odd = x509.Name(
        [
            x509.RelativeDistinguishedName(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, '#lead, +"q" \\ ; = '),
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, " space first"),
                ]
            ),
            x509.RelativeDistinguishedName([x509.NameAttribute(cn, "Zoë=日本;+,\\ ")]),
        ]
    )
    policies = x509.CertificatePolicies(
        [
            x509.PolicyInformation(
                x509.ObjectIdentifier(f"1.3.6.1.4.1.55555.{i}"),
                [f"https://policy.example/{i}/" + "x" * 200, "notice " + "y" * 180],
            )
            for i in range(20)
        ]
    )
    sans = x509.SubjectAlternativeName(
        [x509.DNSName(f"h{i:03d}.a-fairly-long-label.example.com") for i in range(60)]
    )
    return {
        "ed25519": inter.issue_client_cert(common_name="ed", key_type="ed25519"),
        "p384": inter.issue_client_cert(common_name="p384", key_type="p384"),
        "p521": inter.issue_client_cert(common_name="p521", key_type="p521"),
        "rsa4096": inter.issue_client_cert(common_name="rsa4096", key_type="rsa4096"),
        "deep": deep.issue_client_cert(common_name="deep"),
        "odd-subject": inter.issue_client_cert(subject=odd),
        "12k": inter.issue_client_cert(
            common_name="12k", extra_extensions=[(policies, False), (sans, False)]
        ),
        # Judged otherwise by different proxies: forwarded by some, refused by others.
        "expired": inter.issue_client_cert(
            common_name="expired", not_before=now - 30 * day, not_after=now - day
        ),
        "not-yet-valid": inter.issue_client_cert(
            common_name="early", not_before=now + day, not_after=now + 30 * day
        ),
        "server-eku": inter.issue_client_cert(common_name="server", eku="server"),
        # Chains in an order of the client's choosing, with the root, or with repeats.
        "root-first": ClientCert(alice.certificate, alice.private_key, (root, inter_cert)),
        "repeated": ClientCert(alice.certificate, alice.private_key, (inter_cert, inter_cert)),
        "leaf-repeated": ClientCert(
            alice.certificate, alice.private_key, (alice.certificate, inter_cert)
        ),
        "seventeen": ClientCert(alice.certificate, alice.private_key, (inter_cert,) * 17),
    }


@dataclass
class Live:
    backend: Any
    urls: dict[str, str]
    root: str
    clients: dict[str, ClientCert]
    files: dict[str, tuple[str, str]]


def _nginx(tmp: Path, port: int, backend: int, pki: Any, tools: Any) -> list[str]:
    return tools.nginx_to(tmp, port, f"http://127.0.0.1:{backend}", pki, verify_depth=8)


def _apache(tmp: Path, port: int, backend: int, pki: Any, tools: Any) -> list[str]:
    lines = ['    RequestHeader set X-SSL-Client-Cert "%{SSL_CLIENT_CERT}s"']
    lines += [
        f'    RequestHeader set {h} "%{{SSL_CLIENT_CERT_CHAIN_{i}}}s"'
        for i, h in enumerate(APACHE_CHAIN)
    ]
    conf = tools.apache_config(tmp, port, backend, pki, verify_depth=8, headers="\n".join(lines))
    return ["/usr/sbin/apache2", "-X", "-f", str(conf)]


@pytest.fixture(scope="module")
def live(pki: Any, proxy_tools: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    tools = proxy_tools
    tools.require_binary("curl")
    tmp = tmp_path_factory.mktemp("proxy-unusual")
    tmp.chmod(0o755)
    clients = _clients(pki)
    files: dict[str, tuple[str, str]] = {}
    for name, who in clients.items():
        cert = who.chain_pem.write_to_path(tmp / f"{name}.pem")
        key = who.key_pem.write_to_path(tmp / f"{name}.key")
        files[name] = (str(cert), str(key))
    builders = {
        "nginx": lambda *a: _nginx(*a, tools),
        "apache": lambda *a: _apache(*a, tools),
    }
    with contextlib.ExitStack() as stack:
        be = stack.enter_context(tools.serve_backend())
        urls = tools.start_proxies(stack, tmp, be.port, pki, builders, NAMES)
        yield Live(be, urls, pki["root"], clients, files)


def _get(live: Live, url: str, who: str) -> tuple[int, str]:
    host = url.split("://")[1].split("/")[0]
    argv = ["curl", "-sS", "--max-time", "10", "--cacert", live.root]
    argv += ["--resolve", f"{host}:127.0.0.1", "-H", "Connection: close"]
    argv += ["-w", "\n%{http_code}", "--cert", live.files[who][0], "--key", live.files[who][1]]
    done = subprocess.run([*argv, url], capture_output=True, timeout=30, check=False)
    if done.returncode:  # the proxy ended the TLS handshake
        return 0, done.stderr.decode(errors="replace")
    body, _, status = done.stdout.decode().rpartition("\n")
    return int(status), body


def _preset(name: str) -> ForwardedCert:
    extra = {"chain_header": APACHE_CHAIN} if name == "apache" else {}
    return ForwardedCert.preset(name, trusted_proxies=["127.0.0.1"], **extra)


def _direct(pki: Any, chain: tuple[bytes, ...]) -> tuple[int, str | None, str | None]:
    verifier = Verifier(trust_store=pki.root.trust_store())
    try:
        identity = verifier.verify(list(chain))
    except MTLSAuthError as exc:
        return exc.status, exc.code, None
    return 200, None, identity.common_name


# What the proxy refuses itself, so the app never sees it (0: the TLS handshake failed).
# HAProxy answers 500 for the 12 KB leaf: its base64 (16 KB) does not fit the room
# ``set-header`` has in the 16 KB buffer (``tune.bufsize``, ``tune.maxrewrite``). Under
# ``optional_no_ca`` nginx answers 400 and Apache ends the handshake for an expired or
# not-yet-valid certificate, or one without clientAuth; HAProxy (``crt-ignore-err all``) and
# Caddy (``mode request``) forward those, and mtlsauth refuses them as it would over TLS.
PROXY_REFUSES = {
    ("haproxy", "12k"): 500,
    **{("nginx", who): 400 for who in ("expired", "not-yet-valid", "server-eku")},
    **{("apache", who): 0 for who in ("expired", "not-yet-valid", "server-eku")},
}


@pytest.mark.parametrize(
    "who",
    [
        "ed25519",
        "p384",
        "p521",
        "rsa4096",
        "deep",
        "odd-subject",
        "12k",
        "expired",
        "not-yet-valid",
        "server-eku",
        "root-first",
        "repeated",
        "leaf-repeated",
    ],
)
@pytest.mark.parametrize("name", NAMES)
def test_unusual_certificate(name, who, live, pki):
    """The forwarded header decodes to the presented certificates (the leaf alone where the
    proxy forwards no chain), and the verdict is ``Verifier.verify``'s for the same chain."""
    chain = live.clients[who].chain_der
    if who == "12k":
        assert 10 * 1024 < len(chain[0]) < 16 * 1024
    live.backend.authenticate = Verifier(
        trust_store=pki.root.trust_store(),
        forwarded=_preset(name),
        intermediates=chain[1:],
        cache_size=0,
    ).authenticate
    before = len(live.backend.seen)
    status, body = _get(live, live.urls[name] + "/", who)
    if (name, who) in PROXY_REFUSES:
        assert status == PROXY_REFUSES[name, who], body
        assert len(live.backend.seen) == before  # the app never saw the request
        return
    reply = json.loads(body)
    headers = tuple((k.lower(), v) for k, v in live.backend.seen[-1])
    value = _preset(name).extract(Presented(peer="127.0.0.1", headers=headers))
    assert value is not None
    expected = chain if name in ("apache", "haproxy") else chain[:1]
    if who == "leaf-repeated":  # a copy of the leaf right after it is read as a repeat
        expected = expected[:1] + expected[2:]
    assert value.decode() == expected
    assert (reply["status"], reply["code"], reply["common_name"]) == _direct(pki, chain), reply


# -- hostile clients -------------------------------------------------------------------------
# Each spelling carries, in a header the preset reads, the genuine (public) encoding of
# alice's chain, from a client that presents no certificate of its own.
SPELLINGS = {
    "capitals": "{H}: {v}",
    "underscores": "{u}: {v}",
    "blank before colon": "{h} : {v}",
    "tab before colon": "{h}\t: {v}",
    "obs-fold into another": "X-Pad: a\r\n {h}: {v}",
    "obs-fold of its value": "{h}: \r\n {v}",
    "twice": "{h}: {v}\r\n{h}: {v}",
    "trailing blanks": "{h}: {v}   ",
    "oversized": "{h}: {v}{pad}",
}


def _raw(live: Live, name: str, data: bytes) -> bytes:
    """Send ``data`` over TLS to the proxy without a client certificate; all it answers."""
    ctx = ssl.create_default_context(cafile=live.root)
    port = int(live.urls[name].rsplit(":", 1)[1])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as sock,
        ctx.wrap_socket(sock, server_hostname="localhost") as tls,
    ):
        out = b""
        with contextlib.suppress(OSError):  # a proxy may close before reading it all
            tls.sendall(data)
            while chunk := tls.recv(65536):
                out += chunk
    return out


def _requests(name: str, spelling: str, forged: list[tuple[str, str]]) -> bytes:
    lines = []
    for h, v in forged:
        lines.append(
            SPELLINGS[spelling].format(
                h=h, H=h.upper(), u=h.replace("-", "_"), v=v, pad="A" * 70_000
            )
        )
    head = "\r\n".join(lines)
    return f"GET / HTTP/1.1\r\nHost: localhost\r\n{head}\r\nConnection: close\r\n\r\n".encode(
        "latin-1"
    )


def _assert_nothing_forged(live: Live, name: str, before: int, values: list[str]) -> None:
    """The app saw no certificate in any header the preset reads, and no forged value under
    any name that folds into one of them (underscores, case); a forged line folded into
    another header's value stays there, where nothing reads it."""
    fwd = _preset(name)
    read = fwd.header_names()
    for seen in live.backend.seen[before:]:
        headers = tuple((k.lower(), v) for k, v in seen)
        assert fwd.extract(Presented(peer="127.0.0.1", headers=headers)) is None, seen
        for k, got in headers:
            if k in read:
                assert not any(v[:40] in got for v in values), (k, got[:60])


@pytest.mark.parametrize("spelling", list(SPELLINGS))
@pytest.mark.parametrize("name", NAMES)
def test_forged_header_spellings(name, spelling, live, pki):
    """Without a client certificate, no spelling of a forged certificate header reaches the
    app as one: each proxy refuses the request or replaces the header."""

    forged = [(h, v) for h, v in encode_forwarded(name, pki.client.chain_der) if len(v) > 40]
    if name == "apache":  # every chain header the preset reads, each the intermediate
        forged += [(h, forged[-1][1]) for h in APACHE_CHAIN[len(forged) - 1 :]]
    live.backend.authenticate = Verifier(
        trust_store=pki.root.trust_store(), forwarded=_preset(name)
    ).authenticate
    before = len(live.backend.seen)
    answer = _raw(live, name, _requests(name, spelling, forged))
    assert b"alice" not in answer
    _assert_nothing_forged(live, name, before, [v for _, v in forged])


@pytest.mark.parametrize("version", ["HTTP/1.0", "pipelined"])
@pytest.mark.parametrize("name", NAMES)
def test_forged_header_old_and_pipelined(name, version, live, pki):
    """An HTTP/1.0 request, and a second request pipelined behind a first on one
    connection, each carrying the forged header: never an identity."""

    h, v = encode_forwarded(name, pki.client.chain_der)[0]
    live.backend.authenticate = Verifier(
        trust_store=pki.root.trust_store(), forwarded=_preset(name)
    ).authenticate
    before = len(live.backend.seen)
    if version == "HTTP/1.0":
        data = f"GET / HTTP/1.0\r\nHost: localhost\r\n{h}: {v}\r\n\r\n"
    else:
        data = (
            f"GET /one HTTP/1.1\r\nHost: localhost\r\n\r\n"
            f"GET /two HTTP/1.1\r\nHost: localhost\r\n{h}: {v}\r\nConnection: close\r\n\r\n"
        )
    answer = _raw(live, name, data.encode())
    assert b"alice" not in answer
    assert b"certificate_missing" in answer
    _assert_nothing_forged(live, name, before, [v])


# Transfer-Encoding and Content-Length spellings that make a proxy and the server behind it
# disagree on where a body ends, each followed by a request carrying the forged header.
FRAMINGS = {
    "TE and CL": "Transfer-Encoding: chunked\r\nContent-Length: 4",
    "unknown coding": "Transfer-Encoding: xchunked\r\nContent-Length: {n}",
    "blank before colon": "Transfer-Encoding : chunked",
    "tab before value": "Transfer-Encoding:\tchunked",
    "TE twice": "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity",
    "TE list": "Transfer-Encoding: identity, chunked",
    "CL twice": "Content-Length: 0\r\nContent-Length: {n}",
}


@pytest.mark.parametrize("framing", list(FRAMINGS))
@pytest.mark.parametrize("name", NAMES)
def test_smuggled_request_never_authenticates(name, framing, live, pki):
    """The proxy refuses the request (400, 422, 501), or reads the tail as a request of its
    own and replaces the certificate header there: the app never gets the forged one."""
    h, v = encode_forwarded(name, pki.client.chain_der)[0]
    body = f"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: localhost\r\n{h}: {v}\r\nConnection: close\r\n\r\n"
    framing_lines = FRAMINGS[framing].format(n=len(body))
    data = f"POST / HTTP/1.1\r\nHost: localhost\r\n{framing_lines}\r\n\r\n{body}"
    live.backend.authenticate = Verifier(
        trust_store=pki.root.trust_store(),
        forwarded=_preset(name),
        intermediates=[pki.intermediate.cert_pem.bytes()],
    ).authenticate
    before = len(live.backend.seen)
    answer = _raw(live, name, data.encode())
    assert b"alice" not in answer
    _assert_nothing_forged(live, name, before, [v])


# A client that sends its leaf and 17 more certificates (the intermediate, 17 times): over
# direct TLS, and through HAProxy (which forwards them all in one header), mtlsauth refuses
# more than 16 as malformed. nginx and Caddy forward the leaf alone and Apache the CHAIN_n
# headers it is configured with, so the rest never reaches the app and the chain verifies.
SEVENTEEN = {"nginx": 200, "apache": 200, "caddy": 200, "haproxy": 401}


@pytest.mark.parametrize("name", NAMES)
def test_more_certificates_than_are_read(name, live, pki):
    chain = live.clients["seventeen"].chain_der
    assert _direct(pki, chain) == (401, "certificate_malformed", None)
    live.backend.authenticate = Verifier(
        trust_store=pki.root.trust_store(),
        forwarded=_preset(name),
        intermediates=chain[1:2],
        cache_size=0,
    ).authenticate
    status, body = _get(live, live.urls[name] + "/", "seventeen")
    reply = json.loads(body)
    assert status == SEVENTEEN[name], reply
    if status == 401:
        assert reply["code"] == "certificate_malformed"
    else:
        assert reply["common_name"] == "alice"
