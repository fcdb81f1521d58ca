"""Websockets over direct TLS through a real uvicorn (``MTLSH11Protocol``).

uvicorn hands an upgraded connection to its websocket protocol class, which calls the app
itself: unless that class is wrapped too (``ws=with_tls_extension(...)``), a websocket
scope carries no TLS extension and a client with a good certificate is refused
(``certificate_missing``: fail closed). Wrapped, the websocket sees the certificate of its
connection; a certificate header sent by the client is never read (no trusted proxy).
"""

from __future__ import annotations

import json
import ssl
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from test_servers import _free_port, serve

from mtlsauth.testing import CA

websockets_client = pytest.importorskip(
    "websockets.sync.client", reason="the websockets package is not installed"
)
from websockets.exceptions import InvalidStatus  # noqa: E402

pytestmark = pytest.mark.e2e

APP = """
import os, sys
import uvicorn
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from mtlsauth import TrustStore, Verifier, server_ssl_context
from mtlsauth.adapters.asgi import MTLSMiddleware, identity_from_scope
from mtlsauth.adapters.uvicorn import MTLSH11Protocol, with_tls_extension

async def echo_identity(scope, receive, send):
    assert scope["type"] == "websocket"
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": identity_from_scope(scope).common_name})
    await send({"type": "websocket.close", "code": 1000})

trust = TrustStore.from_pem_file(os.environ["MTLS_CLIENT_CA"])
ctx = server_ssl_context(certfile=os.environ["MTLS_SERVER_CERT"],
                         keyfile=os.environ["MTLS_SERVER_KEY"], trust_store=trust,
                         mode="optional")
ws = WebSocketsSansIOProtocol
if os.environ.get("WRAP_WS"):
    ws = with_tls_extension(WebSocketsSansIOProtocol)
uvicorn.run(MTLSMiddleware(echo_identity, verifier=Verifier(trust_store=trust)),
            host="127.0.0.1", port=int(os.environ["PORT"]), http=MTLSH11Protocol, ws=ws,
            ssl_context_factory=lambda config, default: ctx, log_level="warning",
            lifespan="off")
"""


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d: Path = tmp_path_factory.mktemp("wss")
    ca = CA(organization="wss")
    good = ca.issue_client_cert(common_name="ws-client")
    server = ca.issue_client_cert(
        common_name="localhost", dns_names=["localhost"], ip_addresses=["127.0.0.1"],
        eku="server",
    )  # fmt: skip
    (d / "app.py").write_text(textwrap.dedent(APP))
    return {
        "dir": d,
        "ca": str(ca.cert_pem.write_to_path(d / "ca.pem")),
        "good": (
            str(good.cert_pem.write_to_path(d / "good.pem")),
            str(good.key_pem.write_to_path(d / "good.key")),
        ),
        "server": (
            str(server.cert_pem.write_to_path(d / "server.pem")),
            str(server.key_pem.write_to_path(d / "server.key")),
        ),
        "forged": {"X-SSL-Client-Cert": good.cert_pem.text().replace("\n", " ")},
    }


def _env(pki: dict[str, Any], port: int, wrap: bool) -> dict[str, str]:
    env = {
        "MTLS_CLIENT_CA": pki["ca"],
        "MTLS_SERVER_CERT": pki["server"][0],
        "MTLS_SERVER_KEY": pki["server"][1],
        "PORT": str(port),
    }
    return env | ({"WRAP_WS": "1"} if wrap else {})


def _connect(port: int, pki: dict[str, Any], cert: tuple[str, str] | None, **kw: Any) -> Any:
    """The first text message, or (status, code) of a refused upgrade."""
    ctx = ssl.create_default_context(cafile=pki["ca"])
    if cert is not None:
        ctx.load_cert_chain(*cert)
    try:
        # Generous: the server's first handshake also loads what it imports lazily, and a
        # loaded machine may take seconds for it.
        with websockets_client.connect(
            f"wss://localhost:{port}/", ssl=ctx, open_timeout=30, **kw
        ) as ws:
            return ws.recv(timeout=30)
    except InvalidStatus as exc:
        body = json.loads(exc.response.body or b"{}")
        return exc.response.status_code, body.get("code")


@pytest.mark.parametrize("wrap", [False, True], ids=["bare-ws-protocol", "with_tls_extension"])
def test_websocket_over_direct_tls(pki: dict[str, Any], tmp_path: Path, wrap: bool) -> None:
    port = _free_port()
    argv = [sys.executable, str(pki["dir"] / "app.py")]
    with serve(argv, _env(pki, port, wrap), tmp_path, port):
        good = _connect(port, pki, pki["good"])
        none = _connect(port, pki, None)
        forged = _connect(port, pki, None, additional_headers=pki["forged"])
    assert good == ("ws-client" if wrap else (401, "certificate_missing"))
    assert none == (401, "certificate_missing")
    assert forged == (401, "certificate_missing")
