"""The adapter fixes of this round attacked again: what each fix must still refuse."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mtlsauth.adapters.asgi import MTLSMiddleware

pytest.importorskip("starlette")


def _call(mw: Any, scope: dict[str, Any]) -> tuple[int, bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(mw(scope, receive, send))
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], body


def _scope(path: str, root_path: str) -> dict[str, Any]:
    return {
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


async def _ok(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.mark.parametrize(
    "root_path",
    [
        "(" * 5000 + ")" * 5000,  # compiling it: RecursionError
        "(?:" * 5000 + "a" + ")" * 5000,
        "/v{99999999999999999999}",  # compiling it: OverflowError
        "/a(b",  # no regular expression at all
    ],
)
def test_client_root_path_is_never_compiled(verifier, root_path: str) -> None:
    # Daphne takes root_path from the client's Daphne-Root-Path header: the middleware
    # compiled it before looking at it, and the compiler's own exceptions were a 500.
    mw = MTLSMiddleware(_ok, verifier=verifier, exempt_paths={"/public/*"})
    status, body = _call(mw, _scope("/public/info", root_path))
    assert status == 400, body
    assert b"ambiguous_path" in body


# -- Django: request.auser() after a logout in the same request -----------------------------
def test_django_auser_follows_a_logout_in_the_same_request() -> None:
    pytest.importorskip("django")
    from test_django import configure_django

    configure_django()
    from django.contrib import auth
    from django.contrib.auth.models import AnonymousUser, User
    from django.contrib.sessions.backends.signed_cookies import SessionStore
    from django.test import RequestFactory

    from mtlsauth.adapters.django import _set_user

    request = RequestFactory().get("/")
    request.session = SessionStore()
    user = User(username="ledger")
    _set_user(request, user)
    assert asyncio.run(request.auser()) is user
    auth.logout(request)  # a view logs the certificate's user out
    assert isinstance(request.user, AnonymousUser)
    assert not asyncio.run(request.auser()).is_authenticated


# -- DRF: enforce_csrf set to any true value ---------------------------------------------------
@pytest.mark.parametrize("setting", [True, 1, "yes"])
def test_drf_enforce_csrf_is_on_for_any_true_value(monkeypatch, setting: object) -> None:
    pytest.importorskip("rest_framework")
    from test_django import configure_django

    configure_django()
    from rest_framework import exceptions

    from mtlsauth.adapters import drf

    def refuse(request: Any) -> None:
        raise exceptions.PermissionDenied("CSRF Failed: no token")

    monkeypatch.setattr(drf, "_check_csrf", refuse)

    class Browser(drf.MTLSAuthentication):
        enforce_csrf = setting  # type: ignore[assignment]

        def _authenticate(self, request: Any) -> Any:
            return ("user", "identity")

    with pytest.raises(exceptions.PermissionDenied):
        Browser().authenticate(object())  # type: ignore[arg-type]
