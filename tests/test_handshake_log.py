"""Direct TLS: a certificate refused in the handshake leaves a line in the server's log.

Real servers on 127.0.0.1 (uvicorn through ``mtlsauth.adapters.uvicorn``, aiohttp), a real
``ssl`` client, and ``server_ssl_context`` as the documentation shows it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from pathlib import Path

import pytest

from mtlsauth import TrustStore, Verifier, server_ssl_context
from mtlsauth._cli._testpki import TestPKI, write_test_pki
from mtlsauth._logfields import RefusalLogLimiter

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return write_test_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(autouse=True)
def _fresh_limiter(monkeypatch: pytest.MonkeyPatch) -> None:
    import mtlsauth._sslcontext as sc

    monkeypatch.setattr(sc, "_handshake_limiter", RefusalLogLimiter(60.0, 100, 1024))


def server_context(pki: TestPKI) -> ssl.SSLContext:
    trust = TrustStore.from_pem_file(pki.path("ca.pem"), reload_interval=None)
    return server_ssl_context(
        certfile=pki.path("server.pem"), keyfile=pki.path("server.key"), trust_store=trust
    )


def client_context(pki: TestPKI, case: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.path("ca.pem")))
    if case is not None:
        chain, key = pki.clients[case]
        ctx.load_cert_chain(str(chain), str(key))
    return ctx


def call(port: int, ctx: ssl.SSLContext) -> str:
    """What a client sees: the response's first line, or the TLS error."""
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            ctx.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            tls.sendall(b"GET /whoami HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            data = tls.recv(200)
            return data.split(b"\r\n", 1)[0].decode() if data else "connection closed"
    except (ssl.SSLError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"


def handshake_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "TLS handshake failed" in r.getMessage()]


def wait_for(caplog: pytest.LogCaptureFixture, n: int) -> list[str]:
    deadline = time.monotonic() + 5
    while len(handshake_lines(caplog)) < n and time.monotonic() < deadline:
        time.sleep(0.02)
    return handshake_lines(caplog)


def test_uvicorn_logs_why_the_handshake_failed(
    pki: TestPKI, caplog: pytest.LogCaptureFixture
) -> None:
    from mtlsauth._cli._demo import _serve, build_app

    trust = TrustStore.from_pem_file(pki.path("ca.pem"), reload_interval=None)
    app = build_app(Verifier(trust_store=trust, intermediates=[pki.path("intermediate.pem")]))
    with (
        caplog.at_level(logging.WARNING, logger="mtlsauth"),
        _serve(app, lambda config, default: server_context(pki)) as port,
    ):
        assert call(port, client_context(pki, "good")) == "HTTP/1.1 200 OK"
        assert handshake_lines(caplog) == []
        seen = call(port, client_context(pki, "expired"))
        # asyncio's TLS closes without an alert: the client sees an empty reply
        assert seen == "connection closed"
        lines = wait_for(caplog, 1)
        assert "client certificate refused: certificate has expired" in lines[0]
        seen = call(port, client_context(pki, "wrong-ca"))
        assert seen == "connection closed"
        lines = wait_for(caplog, 2)
        assert "unable to get local issuer certificate" in lines[1]
        seen = call(port, client_context(pki, None))
        assert seen == "connection closed"
        lines = wait_for(caplog, 3)
        assert "no client certificate" in lines[2]
        # the same reason again within the minute is counted, not written
        call(port, client_context(pki, "expired"))
        time.sleep(0.2)
        assert len(handshake_lines(caplog)) == 3


async def test_aiohttp_logs_why_the_handshake_failed(
    pki: TestPKI, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    from aiohttp import web

    async def whoami(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/whoami", whoami)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context(pki))
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        with caplog.at_level(logging.WARNING, logger="mtlsauth"):
            seen = await asyncio.to_thread(call, port, client_context(pki, "expired"))
            assert seen == "connection closed"
            for _ in range(100):
                if handshake_lines(caplog):
                    break
                await asyncio.sleep(0.02)
        [line] = handshake_lines(caplog)
        assert "client certificate refused: certificate has expired" in line
    finally:
        await runner.cleanup()


def test_blocking_socket_server_logs_the_reason_and_the_peer(
    pki: TestPKI, caplog: pytest.LogCaptureFixture
) -> None:
    """gunicorn's sync workers and wsgiref wrap accepted sockets with the context."""
    import threading

    ctx = server_context(pki)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]

    def serve_one() -> None:
        conn, _ = listener.accept()
        try:
            ctx.wrap_socket(conn, server_side=True).close()
        except (ssl.SSLError, OSError):
            conn.close()

    thread = threading.Thread(target=serve_one, daemon=True)
    with caplog.at_level(logging.WARNING, logger="mtlsauth"):
        thread.start()
        call(port, client_context(pki, "wrong-ca"))
        thread.join(timeout=10)
    listener.close()
    [line] = handshake_lines(caplog)
    assert "unable to get local issuer certificate" in line
    assert "peer=127.0.0.1" in line


def test_one_peers_failed_handshakes_never_hide_another_peers_line(
    pki: TestPKI, caplog: pytest.LogCaptureFixture
) -> None:
    """The lines are limited per reason *and peer*: a client failing its handshakes over and
    over never keeps another client's first failure (same reason) out of the log."""
    import threading

    ctx = server_context(pki)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]

    def serve(n: int) -> None:
        for _ in range(n):
            conn, _ = listener.accept()
            try:
                ctx.wrap_socket(conn, server_side=True).close()
            except (ssl.SSLError, OSError):
                conn.close()

    def attempt(source: str) -> None:
        tls_ctx = client_context(pki, "wrong-ca")
        try:
            with (
                socket.create_connection(
                    ("127.0.0.1", port), timeout=5, source_address=(source, 0)
                ) as raw,
                tls_ctx.wrap_socket(raw, server_hostname="localhost") as tls,
            ):
                tls.recv(10)
        except (ssl.SSLError, OSError):
            pass

    thread = threading.Thread(target=serve, args=(6,), daemon=True)
    with caplog.at_level(logging.WARNING, logger="mtlsauth"):
        thread.start()
        for _ in range(5):
            attempt("127.0.0.2")
        attempt("127.0.0.1")
        thread.join(timeout=10)
    listener.close()
    lines = handshake_lines(caplog)
    assert [line.rsplit("peer=", 1)[1].split()[0] for line in lines] == ["127.0.0.2", "127.0.0.1"]
