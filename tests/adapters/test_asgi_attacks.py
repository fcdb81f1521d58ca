"""The ASGI, Starlette and FastAPI adapters attacked: scopes a server builds that a router
reads other than the middleware, and what the app sees."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mtlsauth import Policy
from mtlsauth.adapters.asgi import MTLSMiddleware, Route, identity_from_scope

pytest.importorskip("starlette")

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route as StarletteRoute


def run_asgi(mw: Any, scope: dict[str, Any]) -> list[dict[str, Any]]:
    """Every message ``mw`` sends for one request without a body."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(mw(scope, receive, send))
    return sent


def call_asgi(mw: Any, scope: dict[str, Any]) -> tuple[int, bytes]:
    """The status and body of the response ``mw`` answers (the first message starts it)."""
    sent = run_asgi(mw, scope)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], body


_call = call_asgi


def _scope(path: str, root_path: str, chain: tuple[str, ...] = ()) -> dict[str, Any]:
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "https",
        "path": path,
        "raw_path": path.encode(),
        "root_path": root_path,
        "query_string": b"",
        "headers": [(b"host", b"api.example")],
        "client": ("203.0.113.9", 40000),
        "server": ("api.example", 443),
    }
    if chain:
        scope["extensions"] = {"tls": {"client_cert_chain": chain, "client_cert_error": None}}
    return scope


def _admin_app() -> Starlette:
    async def admin(request: Any) -> PlainTextResponse:
        who = identity_from_scope(request.scope)
        return PlainTextResponse(f"admin secret for {who.common_name if who else None}")

    async def public(request: Any) -> PlainTextResponse:
        return PlainTextResponse("public")

    return Starlette(
        routes=[
            StarletteRoute("/admin/secret", admin),
            StarletteRoute("/public/info", public),
        ]
    )


def _pem_chain(cert: Any) -> tuple[str, ...]:
    text = cert.chain_pem.text()
    marker = "-----END CERTIFICATE-----"
    return tuple(p.strip() + "\n" + marker + "\n" for p in text.split(marker) if p.strip())


# -- root_path read as a regular expression (Starlette 0.35 into 0.39) -----------------------
# Those versions route re.sub("^" + root_path, "", path); the middleware cuts root_path off as
# a literal prefix, as later versions do. A root_path with a "." (a server's setting, or
# Daphne's Daphne-Root-Path request header) made "/public/admin/secret" the exempt
# "/public/..." for the one and "/admin/secret" for the other.


def test_regex_root_path_cannot_reach_a_route_through_an_exempt_path(verifier) -> None:
    mw = MTLSMiddleware(_admin_app(), verifier=verifier, exempt_paths={"/public/*"})
    status, body = _call(mw, _scope("/public/admin/secret", "/publi."))
    assert status == 400, body
    assert b"ambiguous_path" in body
    assert b"secret" not in body


def test_regex_root_path_cannot_skip_a_route_policy(verifier, certs) -> None:
    mw = MTLSMiddleware(
        _admin_app(),
        verifier=verifier,
        routes=[Route("/admin/*", policy=Policy(organizations={"ops"}))],
    )
    # A certificate of O=payments: admitted by the verifier, refused for /admin/*.
    chain = _pem_chain(certs.good)
    assert _call(mw, _scope("/v1.0/admin/secret", "/v1.0", chain))[0] == 403
    status, body = _call(mw, _scope("/v1x0/admin/secret", "/v1.0", chain))
    assert status == 400, body
    assert b"ambiguous_path" in body


@pytest.mark.parametrize(
    ("path", "root_path", "expected"),
    [
        ("/v1.0/public/info", "/v1.0", 200),  # below root_path: routed the same by both
        ("/public/info", "/v1.0", 200),  # a server that does not prepend root_path
        ("/v1.0", "/v1.0", 401),  # root_path itself: "" for both, not exempt
        ("/api/public/info", "/api", 200),  # no special character: never compared
    ],
)
def test_regex_root_path_leaves_paths_read_one_way_alone(
    verifier, path: str, root_path: str, expected: int
) -> None:
    mw = MTLSMiddleware(_admin_app(), verifier=verifier, exempt_paths={"/public/*"})
    assert _call(mw, _scope(path, root_path))[0] == expected


def test_regex_root_path_websocket_refused_too(verifier) -> None:
    mw = MTLSMiddleware(_admin_app(), verifier=verifier, exempt_paths={"/public/*"})
    sent: list[dict[str, Any]] = []
    queue = [{"type": "websocket.connect"}]

    async def receive() -> dict[str, Any]:
        return queue.pop(0) if queue else {"type": "websocket.disconnect", "code": 1000}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = _scope("/public/admin/secret", "/publi.")
    scope["type"] = "websocket"
    scope["scheme"] = "wss"
    asyncio.run(mw(scope, receive, send))
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": "ambiguous_path"}]


def test_root_path_that_is_no_regular_expression_is_refused_uncompiled(verifier) -> None:
    # Starlette's re.sub versions fail on it themselves. The middleware does not compile a
    # root_path that may be the client's own to find out: it refuses it (ambiguous_path).
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    mw = MTLSMiddleware(app, verifier=verifier, exempt_paths={"/public/*"})
    assert _call(mw, _scope("/public/info", "/a(b"))[0] == 400
    assert _call(mw, _scope("/a(b/public/info", "/a(b"))[0] == 400


def test_root_path_with_a_quantifier_is_refused_without_running_it(verifier) -> None:
    # Daphne takes root_path from the client's Daphne-Root-Path header: a backtracking pattern
    # run against a long path would hold the worker for minutes. It is refused unevaluated.
    import time

    mw = MTLSMiddleware(_admin_app(), verifier=verifier, exempt_paths={"/public/*"})
    started = time.process_time()
    status, body = _call(mw, _scope("/" + "a" * 64 + "!", "/(a+)+b"))
    assert time.process_time() - started < 2.0
    assert status == 400, body
    assert b"ambiguous_path" in body
    for root_path in ("/v[12]", "/api|/public", "/v1*"):
        assert _call(mw, _scope("/public/info", root_path))[0] == 400


# -- a refusal after a server push (HTTP/2, the http.response.push extension) ----------------
def test_refusal_after_a_server_push_is_answered_not_raised(verifier) -> None:
    from mtlsauth import CertificateMissing

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.push", "path": "/style.css", "headers": []})
        raise CertificateMissing("this endpoint requires a client certificate")

    mw = MTLSMiddleware(app, verifier=verifier, mode="optional")
    scope = _scope("/page", "")
    scope["http_version"] = "2"
    scope["extensions"] = {"http.response.push": {}}
    sent = run_asgi(mw, scope)
    assert [m["type"] for m in sent] == [
        "http.response.push",
        "http.response.start",
        "http.response.body",
    ]
    assert sent[1]["status"] == 401
    assert b"certificate_missing" in sent[2]["body"]


# -- concurrency: two requests interleaved on one middleware and one event loop ---------------
def test_interleaved_requests_keep_their_own_identities(verifier, certs) -> None:
    gate = asyncio.Event()
    seen: dict[str, str | None] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        before = identity_from_scope(scope)
        if scope["path"] == "/first":
            await gate.wait()  # the second request runs to its end meanwhile
        else:
            gate.set()
        task_seen: list[Any] = []

        async def spawned() -> None:
            await asyncio.sleep(0)
            task_seen.append(identity_from_scope(scope))

        await asyncio.create_task(spawned())
        after = identity_from_scope(scope)
        assert before is after is task_seen[0]
        seen[scope["path"]] = after.common_name if after else None
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    mw = MTLSMiddleware(app, verifier=verifier)
    good, other = _pem_chain(certs.good), _pem_chain(certs.other_org)

    async def both() -> None:
        async def one(path: str, chain: tuple[str, ...]) -> None:
            async def receive() -> dict[str, Any]:
                return {"type": "http.request", "body": b"", "more_body": False}

            async def send(message: dict[str, Any]) -> None:
                pass

            await mw(_scope(path, "", chain), receive, send)

        for _ in range(2):  # uncached, then cached hits
            gate.clear()
            await asyncio.gather(one("/first", good), one("/second", other))
            assert seen == {"/first": "ledger", "/second": "ads-bot"}

    asyncio.run(both())
