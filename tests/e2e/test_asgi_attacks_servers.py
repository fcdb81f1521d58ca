"""A ``root_path`` with regular-expression characters, through servers that pass the path
as the client sent it: hypercorn (``--root-path``) and Daphne (its ``Daphne-Root-Path``
request header, which any client that reaches Daphne sets). A path that Starlette's
``re.sub`` versions route elsewhere than the literal prefix rule is refused, whichever
Starlette is installed; paths read one way go on as before."""

from __future__ import annotations

import socket
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import free_port, serve_process

pytestmark = pytest.mark.e2e

APP = """
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route as StarletteRoute

    from mtlsauth import Verifier
    from mtlsauth.adapters.asgi import MTLSMiddleware
    from mtlsauth.testing import CA


    async def admin(request):
        return PlainTextResponse("admin secret")


    async def public(request):
        return PlainTextResponse("public")


    inner = Starlette(
        routes=[StarletteRoute("/admin/secret", admin), StarletteRoute("/public/info", public)]
    )
    app = MTLSMiddleware(
        inner, verifier=Verifier(trust_store=CA().trust_store()), exempt_paths={"/public/*"}
    )
"""

SERVERS = {
    "hypercorn": ["-m", "hypercorn", "--root-path", "/publi.", "-b", "127.0.0.1:{port}", "app:app"],
    "daphne": ["-m", "daphne", "-b", "127.0.0.1", "-p", "{port}", "app:app"],
}


@pytest.fixture(scope="module", params=sorted(SERVERS))
def server(request: pytest.FixtureRequest, tmp_path_factory: Any) -> Iterator[dict[str, Any]]:
    kind = request.param
    pytest.importorskip(kind)
    pytest.importorskip("starlette")
    d: Path = tmp_path_factory.mktemp(f"rootpath-{kind}")
    (d / "app.py").write_text(textwrap.dedent(APP))
    port = free_port()
    argv = [sys.executable, *(a.format(port=port) for a in SERVERS[kind])]
    with serve_process(argv, {}, d / "app.log", port, cwd=d):
        yield {"kind": kind, "port": port}


def _get(port: int, target: str, headers: list[tuple[str, str]]) -> tuple[int, bytes]:
    lines = [f"GET {target} HTTP/1.1", "Host: app", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers]
    with socket.create_connection(("127.0.0.1", port), 10) as s:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def _root(kind: str) -> list[tuple[str, str]]:
    return [("Daphne-Root-Path", "/publi.")] if kind == "daphne" else []


def test_look_alike_root_path_is_refused(server: dict[str, Any]) -> None:
    status, body = _get(server["port"], "/public/admin/secret", _root(server["kind"]))
    assert status == 400, body
    assert b"ambiguous_path" in body
    assert b"secret" not in body.replace(b"/admin/secret", b"")


def test_paths_read_one_way_still_answer(server: dict[str, Any]) -> None:
    root = _root(server["kind"])
    # Below root_path itself: "/public/info" for both readings, exempt.
    assert _get(server["port"], "/publi./public/info", root) == (200, b"public")
    # Not under root_path for either reading: checked, and no certificate came.
    assert _get(server["port"], "/admin/secret", root)[0] == 401
