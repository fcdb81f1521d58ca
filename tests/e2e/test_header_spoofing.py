"""A client that reaches the app around its proxy, through real servers on 127.0.0.1.

Every app trusts only 10.255.255.1 as its proxy, so a request from 127.0.0.1 is a stranger's;
``on_untrusted="ignore"`` lets it through without an identity, which is where a forged
header could still reach the handler. The requests are raw bytes on a socket (HTTP/1.1) or
HTTP/2 frames over TLS (hypercorn), with the certificate header in every spelling a server
might hand over: as sent, in capitals, with underscores, twice. Each server either refuses
the request itself (400) or passes it to the app, which must then see no identity and no
certificate header in any spelling, through the API its framework offers for headers.
"""

from __future__ import annotations

import json
import socket
import ssl
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import PKI, free_port, serve_process
from mtlsauth.testing import encode_forwarded

pytestmark = pytest.mark.e2e

_COMMON = """
import json, sys
from mtlsauth import ForwardedCert, TrustStore, Verifier

root, port = sys.argv[1], int(sys.argv[2])
verifier = Verifier(
    trust_store=TrustStore.from_pem_file(root),
    forwarded=ForwardedCert.preset(
        "nginx", header="X-SSL-Client-Cert", trusted_proxies=["10.255.255.1"],
        on_untrusted="ignore", single_certificate=False,
    ),
)

def folds(name):  # every spelling some framework reads as X-SSL-Client-Cert
    return name.lower().replace("_", "-") == "x-ssl-client-cert"
"""

_ASGI = """
from mtlsauth.adapters.asgi import MTLSMiddleware, identity_from_scope

async def echo(scope, receive, send):
    if scope["type"] != "http":
        return
    who = identity_from_scope(scope)
    seen = [v.decode("latin-1") for k, v in scope["headers"] if folds(k.decode("latin-1"))]
    body = json.dumps({"cn": who.common_name if who else None, "seen": seen}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})

app = MTLSMiddleware(echo, verifier=verifier, mode="optional")
"""

APPS = {
    "uvicorn-h11": _COMMON
    + _ASGI
    + """
import uvicorn
uvicorn.run(app, host="127.0.0.1", port=port, http="h11", log_level="warning",
            lifespan="off", proxy_headers=False)
""",
    "uvicorn-httptools": _COMMON
    + _ASGI
    + """
import uvicorn
uvicorn.run(app, host="127.0.0.1", port=port, http="httptools", log_level="warning",
            lifespan="off", proxy_headers=False)
""",
    "hypercorn-tls": _COMMON
    + _ASGI
    + """
import asyncio
from hypercorn.asyncio import serve
from hypercorn.config import Config
cert, key = sys.argv[3], sys.argv[4]
config = Config()
config.bind = [f"127.0.0.1:{port}"]
config.certfile, config.keyfile = cert, key
config.alpn_protocols = ["h2", "http/1.1"]
asyncio.run(serve(app, config))
""",
    "gunicorn-flask": _COMMON
    + """
import flask
from gunicorn.app.base import BaseApplication
from mtlsauth.adapters.wsgi import MTLSMiddleware, identity_from_environ

flask_app = flask.Flask("spoof")

@flask_app.get("/echo")
def echo():
    who = identity_from_environ(flask.request.environ)
    seen = [v for k, v in flask.request.headers.items() if folds(k)]
    seen += [v for k, v in flask.request.environ.items()
             if k.startswith("HTTP_") and folds(k[5:])]
    return {"cn": who.common_name if who else None, "seen": seen}

flask_app.wsgi_app = MTLSMiddleware(flask_app.wsgi_app, verifier=verifier, mode="optional")

class Server(BaseApplication):
    def load_config(self):
        self.cfg.set("bind", f"127.0.0.1:{port}")
        self.cfg.set("workers", 1)
        self.cfg.set("loglevel", "warning")
    def load(self):
        return flask_app

Server().run()
""",
    "aiohttp": _COMMON
    + """
from aiohttp import web
from mtlsauth.adapters.aiohttp import get_identity, mtls_middleware

async def echo(request):
    who = get_identity(request)
    seen = [v for k, v in request.headers.items() if folds(k)]
    seen += [v.decode("latin-1") for k, v in request.raw_headers if folds(k.decode("latin-1"))]
    return web.json_response({"cn": who.common_name if who else None, "seen": seen})

app = web.Application(middlewares=[mtls_middleware(verifier=verifier, mode="optional")])
app.router.add_get("/echo", echo)
web.run_app(app, host="127.0.0.1", port=port, print=None)
""",
}


def _spellings(value: str) -> dict[str, list[tuple[str, str]]]:
    return {
        "as sent": [("X-SSL-Client-Cert", value)],
        "capitals": [("X-SSL-CLIENT-CERT", value)],
        "underscores": [("X_SSL_Client_Cert", value)],
        "twice": [("X-SSL-Client-Cert", value), ("X-SSL-Client-Cert", value)],
        "both spellings": [("X-SSL-Client-Cert", value), ("x_ssl_client_cert", value)],
    }


@pytest.fixture(scope="module", params=sorted(APPS))
def server(request: pytest.FixtureRequest, pki: PKI, tmp_path_factory: Any) -> Iterator[dict]:
    kind = request.param
    d: Path = tmp_path_factory.mktemp(f"spoof-{kind}")
    (d / "app.py").write_text(textwrap.dedent(APPS[kind]))
    port = free_port()
    argv = [sys.executable, str(d / "app.py"), pki["root"], str(port)]
    if kind == "hypercorn-tls":
        argv += [pki["server_cert"], pki["server_key"]]
    with serve_process(argv, {}, d / "app.log", port, cwd=d):
        yield {"kind": kind, "port": port}


def _raw_get(port: int, headers: list[tuple[str, str]]) -> tuple[int, dict]:
    lines = ["GET /echo HTTP/1.1", "Host: app", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers]
    with socket.create_connection(("127.0.0.1", port), 10) as s:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head.lower():
        out, rest = b"", body
        while rest:
            size, _, rest = rest.partition(b"\r\n")
            n = int(size, 16)
            if n == 0:
                break
            out, rest = out + rest[:n], rest[n + 2 :]
        body = out
    return status, (json.loads(body) if status == 200 else {})


def _h2_get(port: int, headers: list[tuple[str, str]], cacert: str) -> tuple[int, dict, str]:
    ctx = ssl.create_default_context(cafile=cacert)
    with httpx.Client(http2=True, verify=ctx, timeout=10) as client:
        r = client.get(f"https://127.0.0.1:{port}/echo", headers=headers)
        return r.status_code, (r.json() if r.status_code == 200 else {}), r.http_version


@pytest.mark.parametrize("spelling", sorted(_spellings("x")))
def test_a_strangers_certificate_header_never_reaches_the_app(
    server: dict, pki: PKI, spelling: str
) -> None:
    ((_name, value),) = encode_forwarded("nginx", pki.client.chain_der)
    headers = _spellings(value)[spelling]
    if server["kind"] == "hypercorn-tls":
        status, body, version = _h2_get(server["port"], headers, pki["root"])
        assert version == "HTTP/2"
    else:
        status, body = _raw_get(server["port"], headers)
    assert status == 200  # every server tested passes these on (none refuses them)
    assert body == {"cn": None, "seen": []}
