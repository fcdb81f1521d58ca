"""The adapter fixes of this round attacked again: what each fix must still refuse."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mtlsauth.adapters.asgi import MTLSMiddleware

pytest.importorskip("starlette")


from test_asgi_attacks import call_asgi as _call


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


# -- a root_path with "." read without the re module ------------------------------------------
def _regex_reading_refuses(root_path: str, path: str) -> bool:
    """The rule itself: Starlette 0.35-0.39's two re.sub readings against the literal one."""
    import re

    literal = path
    if path.startswith(root_path) and (path == root_path or path[len(root_path)] == "/"):
        literal = path[len(root_path) :]
    return any(
        re.sub(p, "", path) != literal for p in ("^" + root_path, "^" + root_path + "(?=/|$)")
    )


def _refuses(root_path: str, path: str) -> bool:
    from mtlsauth._errors import AmbiguousRequest
    from mtlsauth.adapters.asgi import _one_route_path

    try:
        _one_route_path(root_path, path)
    except AmbiguousRequest:
        return True
    return False


def test_dotted_root_path_reading_matches_the_regular_expression() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    text = st.text(alphabet="a./\n", max_size=8)

    @settings(max_examples=3000, deadline=None)
    @given(root=text.filter(bool), path=text)
    def check(root: str, path: str) -> None:
        assert _refuses(root, path) == _regex_reading_refuses(root, path)

    check()
    for root, path in [
        ("/v1.0", "/v1x0/admin"),
        ("/v1.0", "/v1.0/admin"),
        ("/v1.0", "/v1\n0/admin"),
        ("/v1.0", "/v1.0\n"),
        ("/v1.0", "/v1x0\n"),
        ("/v.", "/vx"),
        ("/v.", "/v\n"),
    ]:
        assert _refuses(root, path) == _regex_reading_refuses(root, path), (root, path)


def test_client_root_path_with_dots_is_not_compiled(verifier, monkeypatch) -> None:
    # Compiling a 16 KiB Daphne-Root-Path of dots cost some 20 ms a request.
    import types

    from mtlsauth.adapters import asgi

    def no_regex(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a client's root_path went to the re module")

    stub = types.SimpleNamespace(sub=no_regex, compile=no_regex, match=no_regex, search=no_regex)
    monkeypatch.setattr(asgi, "re", stub)  # the adapter's own name only, not the re module
    root = "/" + "a." * 8000
    mw = MTLSMiddleware(_ok, verifier=verifier, exempt_paths={"/public/*"})
    status, _ = _call(mw, _scope(root.replace(".", "x") + "/public/info", root))
    assert status == 400
    assert _call(mw, _scope(root + "/public/info", root)) == (200, b"ok")
