"""Websockets through a real uvicorn: refused before the handshake completes, never spoofed.

The certificate comes from a trusted proxy's header (the test client plays nginx on
127.0.0.1); a refusal is the problem+json denial response of the ASGI
``websocket.http.response`` extension, which uvicorn supports.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mtlsauth.testing import CA, encode_forwarded

websockets_client = pytest.importorskip(
    "websockets.sync.client", reason="the websockets package is not installed"
)
from websockets.exceptions import InvalidStatus  # noqa: E402

APP = """
import sys
import uvicorn
from mtlsauth import ForwardedCert, TrustStore, Verifier
from mtlsauth.adapters.asgi import MTLSMiddleware, identity_from_scope

root, port = sys.argv[1], int(sys.argv[2])

async def echo_identity(scope, receive, send):
    assert scope["type"] == "websocket"
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": identity_from_scope(scope).common_name})
    await send({"type": "websocket.close", "code": 1000})

verifier = Verifier(
    trust_store=TrustStore.from_pem_file(root),
    forwarded=ForwardedCert.preset(
        "nginx", header="X-SSL-Client-Cert", trusted_proxies=["127.0.0.1"]
    ),
)
uvicorn.run(MTLSMiddleware(echo_identity, verifier=verifier), host="127.0.0.1", port=port,
            ws="websockets-sansio", log_level="warning", lifespan="off")
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, proxy_tools: Any) -> Iterator[dict[str, Any]]:
    d: Path = tmp_path_factory.mktemp("ws")
    ca = CA(organization="ws")
    ca.cert_pem.write_to_path(d / "root.pem")
    (d / "app.py").write_text(textwrap.dedent(APP))
    port = proxy_tools.free_port()
    log = (d / "app.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, str(d / "app.py"), str(d / "root.pem"), str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"uvicorn did not start: {(d / 'app.log').read_text()}")
                time.sleep(0.05)
        good = ca.issue_client_cert(common_name="ws-client")
        header = dict(encode_forwarded("nginx", good.chain_der))
        yield {"url": f"ws://127.0.0.1:{port}/", "port": port, "header": header}
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def _refusal(exc: InvalidStatus) -> tuple[int, dict[str, Any]]:
    return exc.response.status_code, json.loads(exc.response.body or b"{}")


@pytest.mark.e2e
def test_websocket_with_a_certificate_is_accepted(server: dict[str, Any]) -> None:
    with websockets_client.connect(server["url"], additional_headers=server["header"]) as ws:
        assert ws.recv(timeout=5) == "ws-client"


@pytest.mark.e2e
def test_websocket_without_a_certificate_is_refused_before_accept(server: dict[str, Any]) -> None:
    with pytest.raises(InvalidStatus) as info:
        websockets_client.connect(server["url"])
    status, body = _refusal(info.value)
    assert (status, body["code"]) == (401, "certificate_missing")


@pytest.mark.e2e
def test_websocket_with_a_forged_header_from_an_untrusted_peer(server: dict[str, Any]) -> None:
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.2", 0))  # not a trusted proxy
    except OSError:
        sock.close()
        pytest.skip("127.0.0.2 is not usable as a source address on this machine")
    sock.connect(("127.0.0.1", server["port"]))
    with pytest.raises(InvalidStatus) as info:
        websockets_client.connect(server["url"], sock=sock, additional_headers=server["header"])
    status, body = _refusal(info.value)
    assert (status, body["code"]) == (401, "untrusted_forwarder")
