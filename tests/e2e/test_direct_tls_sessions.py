"""Direct TLS: what a resumed or renegotiated connection shows the app, through real servers.

A session resumed from a stateless ticket (TLS 1.2 or 1.3) skips the certificate exchange,
and on Python 3.13+ ``get_unverified_chain()`` is then empty: only the leaf is left (measured on
3.10 to 3.13 with OpenSSL 3.0). A client accepted on its first connection through the chain
it sent would be refused (``untrusted_issuer``) on the next one, so ``server_ssl_context``
issues no session tickets unless asked to (``session_tickets=True``), and refuses
renegotiation, so a connection keeps the certificate of its handshake. When tickets are
turned on, each request on a resumed connection is still verified by the Verifier:
a certificate revoked since the first handshake is refused.

The clients are Python ``ssl`` sockets (sessions passed by hand) and pyOpenSSL (the only
client that can ask for a renegotiation).
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import struct
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from test_servers import _free_port, app_env, serve

from mtlsauth import CRLSet, Verifier, server_ssl_context
from mtlsauth.adapters.aiohttp import get_identity, mtls_middleware
from mtlsauth.testing import CA

pytestmark = pytest.mark.e2e

VERSIONS = [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3]


class PKI:
    def __init__(self, d: Path) -> None:
        self.root = CA(organization="direct sessions")
        inter = self.root.intermediate()
        chained = inter.issue_client_cert(common_name="chained")
        direct = self.root.issue_client_cert(common_name="direct")
        other = self.root.issue_client_cert(common_name="other")
        server = self.root.issue_client_cert(
            common_name="localhost", dns_names=["localhost"], ip_addresses=["127.0.0.1"],
            eku="server",
        )  # fmt: skip
        self.direct = direct
        self.ca = str(self.root.cert_pem.write_to_path(d / "ca.pem"))
        self.server = (
            str(server.cert_pem.write_to_path(d / "server.pem")),
            str(server.key_pem.write_to_path(d / "server.key")),
        )
        self.chained = (
            str(chained.chain_pem.write_to_path(d / "chained.pem")),  # leaf + intermediate
            str(chained.key_pem.write_to_path(d / "chained.key")),
        )
        self.direct_files = (
            str(direct.cert_pem.write_to_path(d / "direct.pem")),
            str(direct.key_pem.write_to_path(d / "direct.key")),
        )
        self.other = other
        self.crl = d / "ca.crl"
        self.crl.write_bytes(self.root.crl().bytes())


@pytest.fixture
def pki(tmp_path: Path) -> PKI:
    return PKI(tmp_path)


def _client(pki: PKI, cert: tuple[str, str], version: ssl.TLSVersion) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=pki.ca)
    ctx.load_cert_chain(*cert)
    ctx.minimum_version = ctx.maximum_version = version
    return ctx


def _get(
    port: int, ctx: ssl.SSLContext, session: ssl.SSLSession | None
) -> tuple[int, dict[str, Any], bool, ssl.SSLSession | None]:
    """One request on a new connection offering ``session``: (status, body, resumed, session)."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost", session=session) as tls,
    ):
        tls.sendall(b"GET /whoami HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
        resumed, new_session = tls.session_reused, tls.session
    head, _, body = data.partition(b"\r\n\r\n")
    if b"chunked" in head.lower():
        size, _, rest = body.partition(b"\r\n")
        body = rest[: int(size, 16)]
    return int(head.split(b" ")[1]), json.loads(body), resumed, new_session


def _answer(status: int, body: dict[str, Any]) -> tuple[int, object]:
    return (status, body.get("cn") if status == 200 else body.get("code"))


async def _aiohttp(aiohttp_server: Any, verifier: Verifier, ctx: ssl.SSLContext) -> int:
    async def whoami(request: web.Request) -> web.Response:
        who = get_identity(request)
        return web.json_response({"cn": who.common_name if who else None})

    app = web.Application(middlewares=[mtls_middleware(verifier=verifier)])
    app.router.add_get("/whoami", whoami)
    srv = await aiohttp_server(app, ssl=ctx)
    return int(srv.port)


@pytest.mark.parametrize("version", VERSIONS, ids=["tls1.2", "tls1.3"])
async def test_a_resumed_connection_shows_the_chain_of_its_first_handshake(
    aiohttp_server, pki, version
) -> None:
    """The session resumes (from the server's cache) and shows the chain the client sent
    in the full handshake: the same answer on both connections. With stateless tickets,
    Python 3.13 answered 200 to the first connection and ``untrusted_issuer`` to the
    resumed one (the ticket holds the leaf only)."""
    ctx = server_ssl_context(
        certfile=pki.server[0], keyfile=pki.server[1], trust_store=pki.root.trust_store()
    )
    # no verification cache: a leaf verified on the first connection would otherwise be
    # found there, whatever the resumed connection showed
    verifier = Verifier(trust_store=pki.root.trust_store(), cache_size=0)
    port = await _aiohttp(aiohttp_server, verifier, ctx)
    client = _client(pki, pki.chained, version)
    first = await asyncio.to_thread(_get, port, client, None)
    second = await asyncio.to_thread(_get, port, client, first[3])
    assert (first[2], second[2]) == (False, True)
    expected = (200, "chained") if sys.version_info >= (3, 13) else (401, "untrusted_issuer")
    assert [_answer(*first[:2]), _answer(*second[:2])] == [expected, expected]


@pytest.mark.parametrize("tickets", [False, True], ids=["cache", "tickets"])
@pytest.mark.parametrize("version", VERSIONS, ids=["tls1.2", "tls1.3"])
async def test_a_resumed_session_is_verified_again(aiohttp_server, pki, version, tickets) -> None:
    """A certificate revoked after the first handshake is refused on the resumed
    connection: OpenSSL does not check it again, the Verifier does (for sessions from the
    server's cache and from stateless tickets alike)."""
    ctx = server_ssl_context(
        certfile=pki.server[0],
        keyfile=pki.server[1],
        trust_store=pki.root.trust_store(),
        session_tickets=tickets,
    )
    crls = CRLSet.from_paths(pki.crl, reload_interval=None)
    verifier = Verifier(trust_store=pki.root.trust_store(), revocation=crls)
    port = await _aiohttp(aiohttp_server, verifier, ctx)
    client = _client(pki, pki.direct_files, version)
    first = await asyncio.to_thread(_get, port, client, None)
    pki.crl.write_bytes(pki.root.revoke(pki.direct).bytes())
    assert verifier.reload()
    second = await asyncio.to_thread(_get, port, client, first[3])
    assert (first[2], second[2]) == (False, True)  # the session was resumed
    assert [_answer(*first[:2]), _answer(*second[:2])] == [
        (200, "direct"),
        (401, "certificate_revoked"),
    ]


async def test_renegotiation_is_refused(aiohttp_server, pki) -> None:
    """A TLS 1.2 client that asks to renegotiate (here: to switch to another certificate)
    is refused; the connection's identity is the one of its handshake."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    from OpenSSL import SSL

    ctx = server_ssl_context(
        certfile=pki.server[0], keyfile=pki.server[1], trust_store=pki.root.trust_store()
    )
    port = await _aiohttp(aiohttp_server, Verifier(trust_store=pki.root.trust_store()), ctx)

    def attempt() -> tuple[bytes, str]:
        c = SSL.Context(SSL.TLS_METHOD)
        c.set_max_proto_version(SSL.TLS1_2_VERSION)
        c.use_certificate_chain_file(pki.direct_files[0])
        c.use_privatekey_file(pki.direct_files[1])
        with socket.create_connection(("127.0.0.1", port)) as raw:
            # blocking (pyOpenSSL needs it), with a receive timeout of 10 s from the kernel
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 10, 0))
            conn = SSL.Connection(c, raw)
            conn.set_connect_state()
            conn.do_handshake()
            conn.sendall(b"GET /whoami HTTP/1.1\r\nHost: localhost\r\n\r\n")
            first = b""
            while not first.endswith(b"}"):
                first += conn.recv(65536)
            conn.use_certificate(pki.other.certificate)
            conn.use_privatekey(load_pem_private_key(pki.other.key_pem.bytes(), None))
            conn.renegotiate()
            try:
                conn.do_handshake()
                conn.sendall(b"GET /whoami HTTP/1.1\r\nHost: localhost\r\n\r\n")
                second = conn.recv(65536).decode("latin-1")
            except SSL.Error as exc:
                second = f"refused: {exc}"
            return first, second

    first, second = await asyncio.to_thread(attempt)
    assert first.endswith(b'{"cn": "direct"}')
    assert second.startswith("refused:")
    assert "no renegotiation" in second


# gunicorn's sync worker calls the ssl_context hook for every connection: a new context,
# whose empty cache resumes nothing.
@pytest.mark.parametrize(("server", "resumed"), [("uvicorn", True), ("gunicorn", False)])
def test_real_servers_show_the_same_chain_again(server, resumed, tmp_path, pki) -> None:
    """uvicorn (``MTLSH11Protocol``) and gunicorn (sync worker) with ``server_ssl_context``:
    the second connection, resumed or not, shows the chain of the first."""
    from test_servers import argv_for

    port = _free_port()
    files = {
        "root": pki.ca,
        "intermediate": pki.ca,  # no intermediates: the chain must come from the client
        "server_cert": pki.server[0],
        "server_key": pki.server[1],
    }
    env = app_env(files, port, tls=True)
    env.pop("MTLS_INTERMEDIATES")
    client = _client(pki, pki.chained, ssl.TLSVersion.TLSv1_3)
    with serve(argv_for(server, tmp_path), env, tmp_path, port):
        first = _get(port, client, None)
        second = _get(port, client, first[3])
    assert (first[2], second[2]) == (False, resumed)
    expected = (200, "chained") if sys.version_info >= (3, 13) else (401, "untrusted_issuer")
    assert [_answer(*first[:2]), _answer(*second[:2])] == [expected, expected]
