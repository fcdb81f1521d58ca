"""Unknown peers are never trusted, and unreadable input is a 4xx, in every adapter.

* A Unix-socket peer is recognised from the socket (its family, or uvicorn's
  ``server=(path, None)``); a peer that is missing, empty, or merely reads ``"unix"`` is
  unknown, and an unknown peer is never a trusted proxy.
* Header bytes that are not UTF-8, scope entries of the wrong type, duplicate and oversized
  certificate headers: a refusal with a 4xx code, never a 500 or a traceback.
"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import pytest
from aiohttp import web

from mtlsauth import Decision, ForwardedCert, Route, Verifier
from mtlsauth.adapters import UNIX_PEER
from mtlsauth.adapters.aiohttp import get_identity, mtls_middleware
from mtlsauth.adapters.asgi import MTLSMiddleware as ASGIMiddleware
from mtlsauth.adapters.asgi import identity_from_scope
from mtlsauth.adapters.wsgi import MTLSMiddleware as WSGIMiddleware
from mtlsauth.adapters.wsgi import identity_from_environ
from mtlsauth.testing import encode_forwarded

HEADER = "x-ssl-client-cert"


def unix_verifier(pki: Any, proxies: list[str] | None = None, **kw: Any) -> Verifier:
    return Verifier(
        trust_store=pki.root.trust_store(),
        intermediates=[pki.inter.cert_pem.bytes()],
        forwarded=ForwardedCert.preset(
            "nginx", header=HEADER, trusted_proxies=proxies or ["unix"], **kw
        ),
    )


def forged(pki: Any) -> str:
    return dict(encode_forwarded("nginx", pki.good.chain_der[:1]))["X-SSL-Client-Cert"]


# -- ASGI ----------------------------------------------------------------------------------


async def asgi_call(app: Any, scope: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    status = sent[0]["status"]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return status, json.loads(body) if body else {}


async def asgi_whoami(scope: Any, receive: Any, send: Any) -> None:
    who = identity_from_scope(scope)
    body = json.dumps({"cn": who.common_name if who else None}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def asgi_scope(**overrides: Any) -> dict[str, Any]:
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/whoami",
        "raw_path": b"/whoami",
        "root_path": "",
        "query_string": b"",
        "headers": [],
        "client": ("203.0.113.9", 50000),
        "server": ("127.0.0.1", 8000),
    }
    scope.update(overrides)
    return scope


@pytest.mark.parametrize(
    ("client", "server", "status", "expected"),
    [
        pytest.param(None, ("/run/app.sock", None), 200, {"cn": "ledger"}, id="unix socket"),
        pytest.param(
            None, ("127.0.0.1", 8000), 401, {"code": "untrusted_forwarder"}, id="tcp, no client"
        ),
        pytest.param(None, None, 401, {"code": "untrusted_forwarder"}, id="no client, no server"),
        pytest.param(
            ("", 0),
            ("/run/app.sock", None),
            401,
            {"code": "untrusted_forwarder"},
            id="empty client",
        ),
        pytest.param(
            ("unix", 0),
            ("127.0.0.1", 8000),
            401,
            {"code": "untrusted_forwarder"},
            id="'unix' as an address",
        ),
        pytest.param(
            42,
            ("/run/app.sock", None),
            401,
            {"code": "untrusted_forwarder"},
            id="client of another type",
        ),
        pytest.param(
            None, ("", None), 401, {"code": "untrusted_forwarder"}, id="server with empty path"
        ),
    ],
)
async def test_asgi_unknown_peer_is_not_a_unix_socket(
    pki: Any, client: Any, server: Any, status: int, expected: dict[str, str]
) -> None:
    app = ASGIMiddleware(asgi_whoami, verifier=unix_verifier(pki))
    headers = [(HEADER.encode(), forged(pki).encode())]
    scope = asgi_scope(client=client, server=server, headers=headers)
    if server is None:
        del scope["server"]
    got_status, body = await asgi_call(app, scope)
    assert got_status == status
    assert expected.items() <= body.items()


@pytest.mark.parametrize(
    ("overrides", "mode"),
    [
        pytest.param({"path": b"/whoami"}, "mandatory", id="path bytes"),
        pytest.param({"path": None}, "mandatory", id="path None"),
        pytest.param({"method": 7}, "mandatory", id="method int"),
        pytest.param({"raw_path": "/whoami"}, "mandatory", id="raw_path str"),
        pytest.param({"root_path": b"/api"}, "mandatory", id="root_path bytes"),
        pytest.param({"headers": [("x-ssl-client-cert", "v")]}, "mandatory", id="str headers"),
        pytest.param({"headers": [(b"x-ssl-client-cert", "v")]}, "mandatory", id="str value"),
        pytest.param({"headers": [(b"x-other", 5)]}, "mandatory", id="int value"),
        pytest.param({"headers": [("x-ssl-client-cert", "v")]}, "off", id="str headers, mode off"),
        pytest.param({"headers": None}, "off", id="headers None, mode off"),
        pytest.param({"headers": 5}, "mandatory", id="headers int"),
        pytest.param(
            {"extensions": {"tls": {"client_cert_chain": [42]}}}, "mandatory", id="chain of ints"
        ),
        pytest.param({"extensions": {"tls": 5}}, "mandatory", id="tls int"),
        pytest.param({"extensions": 5}, "mandatory", id="extensions int"),
    ],
)
async def test_asgi_unreadable_scope_is_a_400(
    pki: Any, overrides: dict[str, Any], mode: str
) -> None:
    app = ASGIMiddleware(asgi_whoami, verifier=unix_verifier(pki, ["10.0.0.1"]), mode=mode)
    status, body = await asgi_call(app, asgi_scope(**overrides))
    assert (status, body.get("code")) == (400, "request_malformed")


@pytest.mark.parametrize(
    ("values", "code"),
    [
        pytest.param([b"\xff\xfe-not-a-cert"], "certificate_malformed", id="latin-1 bytes"),
        pytest.param([b"a", b"b"], "certificate_malformed", id="duplicate header"),
        pytest.param([b"A" * 300_000], "certificate_malformed", id="oversized header"),
    ],
)
async def test_asgi_bad_certificate_header_from_a_proxy_is_a_4xx(
    pki: Any, values: list[bytes], code: str
) -> None:
    app = ASGIMiddleware(asgi_whoami, verifier=unix_verifier(pki, ["10.0.0.1"]))
    scope = asgi_scope(client=("10.0.0.1", 1), headers=[(HEADER.encode(), v) for v in values])
    status, body = await asgi_call(app, scope)
    assert 400 <= status < 500
    assert body["code"] == code


# -- WSGI ----------------------------------------------------------------------------------


def wsgi_call(app: Any, environ: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    seen: list[str] = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        seen.append(status)
        return lambda data: None

    body = b"".join(app(environ, start_response))
    return int(seen[0].split()[0]), json.loads(body) if body else {}


def wsgi_whoami(environ: Any, start_response: Any) -> list[bytes]:
    who = identity_from_environ(environ)
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({"cn": who.common_name if who else None}).encode()]


def wsgi_environ(**overrides: Any) -> dict[str, Any]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/whoami",
        "SCRIPT_NAME": "",
        "SERVER_NAME": "test",
        "SERVER_PORT": "80",
        "wsgi.url_scheme": "http",
    }
    environ.update(overrides)
    return environ


@pytest.fixture
def sockets() -> Any:
    unix_a, unix_b = socket.socketpair(socket.AF_UNIX)
    tcp = socket.socket(socket.AF_INET)
    yield {"unix": unix_a, "tcp": tcp}
    for s in (unix_a, unix_b, tcp):
        s.close()


@pytest.mark.parametrize(
    ("env", "status", "expected"),
    [
        pytest.param(
            {"REMOTE_ADDR": "", "gunicorn.socket": "unix"},
            200,
            {"cn": "ledger"},
            id="gunicorn unix socket",
        ),
        pytest.param(
            {"REMOTE_ADDR": "", "werkzeug.socket": "unix"},
            200,
            {"cn": "ledger"},
            id="werkzeug unix socket",
        ),
        pytest.param(
            {"REMOTE_ADDR": ""}, 401, {"code": "untrusted_forwarder"}, id="empty REMOTE_ADDR"
        ),
        pytest.param({}, 401, {"code": "untrusted_forwarder"}, id="no REMOTE_ADDR"),
        pytest.param(
            {"REMOTE_ADDR": "unix"},
            401,
            {"code": "untrusted_forwarder"},
            id="REMOTE_ADDR 'unix' (ProxyFix)",
        ),
        pytest.param(
            {"REMOTE_ADDR": "", "gunicorn.socket": "tcp"},
            401,
            {"code": "untrusted_forwarder"},
            id="gunicorn tcp socket",
        ),
    ],
)
def test_wsgi_unknown_peer_is_not_a_unix_socket(
    pki: Any, sockets: Any, env: dict[str, Any], status: int, expected: dict[str, str]
) -> None:
    env = {k: sockets[v] if k.endswith(".socket") else v for k, v in env.items()}
    app = WSGIMiddleware(wsgi_whoami, verifier=unix_verifier(pki))
    got = wsgi_call(app, wsgi_environ(HTTP_X_SSL_CLIENT_CERT=forged(pki), **env))
    assert got[0] == status
    assert expected.items() <= got[1].items()


@pytest.mark.parametrize(
    ("env", "routes", "status", "code"),
    [
        pytest.param({"PATH_INFO": b"/whoami"}, (), 400, "request_malformed", id="PATH_INFO bytes"),
        pytest.param({"REQUEST_METHOD": 5}, (), 400, "request_malformed", id="method int"),
        pytest.param(
            {"PATH_INFO": "/caf\xe9"}, (Route("/x"),), 400, "ambiguous_path", id="not UTF-8, routes"
        ),
        pytest.param(
            {"PATH_INFO": "/caf\xe9"}, (), 401, "certificate_missing", id="not UTF-8, no routes"
        ),
        pytest.param(
            {"REQUEST_URI": "/a%2Fb", "PATH_INFO": "/a/b"},
            (Route("/x"),),
            400,
            "ambiguous_path",
            id="REQUEST_URI",
        ),
        pytest.param(
            {"RAW_URI": "/a/../b", "PATH_INFO": "/a/../b"},
            (Route("/x"),),
            400,
            "ambiguous_path",
            id="RAW_URI",
        ),
        pytest.param({"REQUEST_URI": 5}, (), 401, "certificate_missing", id="REQUEST_URI int"),
        pytest.param({"SSL_CLIENT_CERT": 5}, (), 400, "request_malformed", id="certificate int"),
        pytest.param(
            {"SSL_CLIENT_CERT": "x", "SSL_CLIENT_CERT_CHAIN_0": object()},
            (),
            400,
            "request_malformed",
            id="chain entry object",
        ),
    ],
)
def test_wsgi_unreadable_request(
    pki: Any, env: dict[str, Any], routes: Any, status: int, code: str
) -> None:
    app = WSGIMiddleware(wsgi_whoami, verifier=unix_verifier(pki, ["10.0.0.1"]), routes=routes)
    got = wsgi_call(app, wsgi_environ(REMOTE_ADDR="203.0.113.9", **env))
    assert (got[0], got[1].get("code")) == (status, code)


def test_wsgi_routes_match_the_utf8_path_the_router_sees(pki: Any) -> None:
    # PEP 3333: PATH_INFO is the request's bytes as latin-1; werkzeug and Django route its
    # UTF-8 reading ("/café"), so a Route written "/café/*" must cover it.
    app = WSGIMiddleware(
        wsgi_whoami,
        verifier=unix_verifier(pki, ["10.0.0.1"]),
        mode="optional",
        routes=[Route("/café/*", mode="mandatory")],
    )
    raw_utf8_as_latin1 = "/café/x".encode().decode("latin-1")
    got = wsgi_call(app, wsgi_environ(PATH_INFO=raw_utf8_as_latin1, REMOTE_ADDR="203.0.113.9"))
    assert (got[0], got[1]["code"]) == (401, "certificate_missing")


# -- aiohttp -------------------------------------------------------------------------------


async def aiohttp_raw(port: int, lines: list[bytes]) -> tuple[int, dict[str, Any]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"\r\n".join([*lines, b"Connection: close", b"", b""]))
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body) if body.startswith(b"{") else {}


def aiohttp_app(verifier: Verifier, decisions: list[Decision], **kw: Any) -> web.Application:
    async def whoami(request: web.Request) -> web.Response:
        who = get_identity(request)
        return web.json_response({"cn": who.common_name if who else None})

    app = web.Application(
        middlewares=[mtls_middleware(verifier=verifier, on_decision=decisions.append, **kw)]
    )
    app.router.add_get("/whoami", whoami)
    return app


@pytest.mark.parametrize(
    ("extra", "status", "code"),
    [
        pytest.param([], 200, None, id="no certificate header"),
        pytest.param(
            [b"X-SSL-Client-Cert: forged"], 400, "request_malformed", id="with a forged header"
        ),
    ],
)
async def test_aiohttp_non_utf8_header_from_an_untrusted_peer(
    aiohttp_server: Any, pki: Any, extra: list[bytes], status: int, code: str | None
) -> None:
    verifier = unix_verifier(pki, ["10.0.0.1"], on_untrusted="ignore")
    server = await aiohttp_server(aiohttp_app(verifier, [], mode="optional"))
    got = await aiohttp_raw(
        server.port,
        [b"GET /whoami HTTP/1.1", b"Host: x", b"X-Note: caf\xe9 \xff", *extra],
    )
    assert got[0] == status
    if code is None:
        assert got[1] == {"cn": None}
    else:
        assert got[1]["code"] == code


async def test_aiohttp_a_request_refused_while_hiding_headers_is_reported_once(
    aiohttp_server: Any, pki: Any
) -> None:
    """The refusal is the request's only decision: on_decision (an audit log, metrics)
    never also hears of an "allowed" for it."""
    decisions: list[Decision] = []
    verifier = unix_verifier(pki, ["10.0.0.1"], on_untrusted="ignore")
    server = await aiohttp_server(aiohttp_app(verifier, decisions, mode="optional"))
    got = await aiohttp_raw(
        server.port,
        [b"GET /whoami HTTP/1.1", b"Host: x", b"X-Note: caf\xe9 \xff", b"X-SSL-Client-Cert: x"],
    )
    assert (got[0], got[1]["code"]) == (400, "request_malformed")
    assert [d.code for d in decisions] == ["request_malformed"]


async def test_aiohttp_gone_client_is_not_a_unix_socket(pki: Any) -> None:
    """The client resets before mtlsauth runs: no transport, so no peer; never "unix"."""
    decisions: list[Decision] = []
    ran: list[str] = []
    gone = asyncio.Event()

    async def slow_first(request: web.Request, handler: Any) -> web.StreamResponse:
        for _ in range(200):
            if request.transport is None:
                break
            await asyncio.sleep(0.01)
        gone.set()
        return await handler(request)

    async def whoami(request: web.Request) -> web.Response:
        ran.append("whoami")
        return web.json_response({})

    app = web.Application(
        middlewares=[
            web.middleware(slow_first),
            mtls_middleware(verifier=unix_verifier(pki), on_decision=decisions.append),
        ]
    )
    app.router.add_get("/whoami", whoami)
    # A plain runner: aiohttp's test server cancels handlers when the client goes away,
    # which production servers (handler_cancellation=False) do not.
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(
        b"GET /whoami HTTP/1.1\r\nHost: x\r\nX-SSL-Client-Cert: "
        + forged(pki).encode()
        + b"\r\n\r\n"
    )
    await asyncio.sleep(0.2)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()  # RST
    await asyncio.wait_for(gone.wait(), 5)
    for _ in range(100):
        if decisions:
            break
        await asyncio.sleep(0.01)
    await runner.cleanup()
    assert [d.code for d in decisions] == ["untrusted_forwarder"]
    assert decisions[0].peer is None
    assert ran == []


async def test_aiohttp_unix_socket_peer_is_recognised(tmp_path: Any, pki: Any) -> None:
    decisions: list[Decision] = []
    app = aiohttp_app(unix_verifier(pki), decisions)
    runner = web.AppRunner(app)
    await runner.setup()
    path = str(tmp_path / "app.sock")
    site = web.UnixSite(runner, path)
    await site.start()
    try:
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(
            b"GET /whoami HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-SSL-Client-Cert: "
            + forged(pki).encode()
            + b"\r\n\r\n"
        )
        data = await reader.read()
        writer.close()
    finally:
        await runner.cleanup()
    assert data.startswith(b"HTTP/1.1 200"), data[:200]
    assert decisions[0].peer is UNIX_PEER
    assert json.loads(data.partition(b"\r\n\r\n")[2]) == {"cn": "ledger"}


GUNICORN_APP = """
import json
from mtlsauth import ForwardedCert, TrustStore, Verifier
from mtlsauth.adapters.wsgi import MTLSMiddleware, identity_from_environ

def whoami(environ, start_response):
    who = identity_from_environ(environ)
    body = json.dumps({"cn": who.common_name if who else None}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]

app = MTLSMiddleware(whoami, verifier=Verifier(
    trust_store=TrustStore.from_pem_file(ROOT),
    intermediates=[open(INTER).read()],
    forwarded=ForwardedCert.preset(
        "nginx", header="X-SSL-Client-Cert", trusted_proxies=["unix"]),
))
"""


def test_gunicorn_trusts_its_unix_socket_and_not_its_tcp_port(pki: Any, tmp_path: Any) -> None:
    import subprocess
    import sys
    import time

    root, inter = tmp_path / "root.pem", tmp_path / "inter.pem"
    root.write_bytes(pki.root.cert_pem.bytes())
    inter.write_bytes(pki.inter.cert_pem.bytes())
    source = GUNICORN_APP.replace("ROOT", repr(str(root))).replace("INTER", repr(str(inter)))
    (tmp_path / "gapp.py").write_text(source)
    sock_path = tmp_path / "g.sock"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = (tmp_path / "g.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--chdir", str(tmp_path), "-w", "1",
         "-b", f"unix:{sock_path}", "-b", f"127.0.0.1:{port}", "gapp:app"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    request = (
        b"GET /whoami HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-SSL-Client-Cert: "
        + forged(pki).encode()
        + b"\r\n\r\n"
    )

    def send(family: int, address: Any) -> bytes:
        with socket.socket(family) as s:
            s.settimeout(10)
            s.connect(address)
            s.sendall(request)
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        return data

    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                if sock_path.exists():
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail((tmp_path / "g.log").read_text())
            time.sleep(0.1)
        over_unix = send(socket.AF_UNIX, str(sock_path))
        over_tcp = send(socket.AF_INET, ("127.0.0.1", port))
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
    assert over_unix.startswith(b"HTTP/1.1 200"), over_unix[:300]
    assert json.loads(over_unix.partition(b"\r\n\r\n")[2]) == {"cn": "ledger"}
    assert over_tcp.startswith(b"HTTP/1.1 401"), over_tcp[:300]
    assert json.loads(over_tcp.partition(b"\r\n\r\n")[2])["code"] == "untrusted_forwarder"


PROXY = "10.0.0.1"


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
