"""Attacks on the Django adapter's user mapping: what async code and sessions see.

``MTLSMiddleware`` maps the certificate to ``request.user``; a view must see that user, and
only that one, however it asks (``request.user``, Django 5's ``await request.auser()``,
``login_required`` on an async view), and a certificate user written to the session by
``django.contrib.auth.login`` must not outlive the certificate.
"""

from __future__ import annotations

import pytest

django = pytest.importorskip("django")
pytest.importorskip("rest_framework")

from django.contrib.auth.decorators import login_required  # noqa: E402
from django.http import JsonResponse  # noqa: E402
from django.test import override_settings  # noqa: E402
from django.urls import path  # noqa: E402
from test_django import (  # noqa: E402
    MIDDLEWARE,
    PROXY,
    django_client,  # noqa: F401 - fixture
    files,  # noqa: F401 - fixture
    get,
    users,  # noqa: F401 - fixture
)

BACKEND = "mtlsauth.adapters.django.MTLSBackend"


async def _auser_view(request):
    auser = getattr(request, "auser", None)
    if auser is None:  # Django 4.2: no auser
        user = request.user
    else:
        user = await auser()
    return JsonResponse({"user": user.get_username() if user.is_authenticated else None})


@login_required
async def _async_protected(request):
    return JsonResponse({"user": request.user.get_username()})


def _login_view(request):
    from django.contrib.auth import login

    login(request, request.user)  # an app keeping the certificate's user in a session
    return JsonResponse({"user": request.user.get_username()})


def _session_who(request):
    user = request.user
    return JsonResponse({"user": user.get_username() if user.is_authenticated else None})


urlpatterns = [
    path("auser", _auser_view),
    path("protected", _async_protected),
    path("login", _login_view),
    path("healthz", _session_who),
    path("who", _session_who),
]

NEW_DJANGO = django.VERSION >= (5, 0)


def _session_table() -> None:
    from django.contrib.sessions.models import Session
    from django.db import connection

    if Session._meta.db_table not in connection.introspection.table_names():
        with connection.schema_editor() as editor:
            editor.create_model(Session)


@pytest.fixture
def client_of(django_client):  # noqa: F811
    made = []

    def make(**kw):
        client = django_client(**kw)
        _session_table()
        urls = override_settings(ROOT_URLCONF=__name__, LOGIN_URL="/login-page")
        urls.enable()
        made.append(urls)
        return client

    yield make
    for o in reversed(made):
        o.disable()


@pytest.mark.skipif(not NEW_DJANGO, reason="request.auser is Django 5.0+")
def test_auser_is_the_certificate_user_not_the_session_one(client_of, users, certs) -> None:  # noqa: F811
    users.objects.create_user("ledger")
    client = client_of()
    assert get(client, "/auser", certs.good) == (200, {"user": "ledger"})


@pytest.mark.skipif(not NEW_DJANGO, reason="request.auser is Django 5.0+")
def test_auser_after_a_password_login_is_the_certificate_user(client_of, users, certs) -> None:  # noqa: F811
    users.objects.create_user("ledger")
    other = users.objects.create_user("someone-else", password="pw")
    client = client_of(
        backends=(BACKEND, "django.contrib.auth.backends.ModelBackend"),
    )
    client.force_login(other, backend="django.contrib.auth.backends.ModelBackend")
    # the certificate names ledger: request.user and auser() agree on it
    assert get(client, "/auser", certs.good) == (200, {"user": "ledger"})
    # a certificate that maps to no user: anonymous, not the session's user either way
    assert get(client, "/auser", certs.other_org) == (200, {"user": None})


@pytest.mark.skipif(not NEW_DJANGO, reason="request.auser is Django 5.0+")
@pytest.mark.parametrize("middleware", [MIDDLEWARE, ["mtlsauth.adapters.django.MTLSMiddleware"]])
def test_async_login_required_sees_the_certificate_user(
    client_of,
    users,  # noqa: F811
    certs,
    middleware,
) -> None:
    users.objects.create_user("ledger")
    client = client_of(middleware=middleware)
    assert get(client, "/protected", certs.good) == (200, {"user": "ledger"})
    status, _ = get(client, "/protected", certs.other_org)
    assert status == 302  # anonymous: sent to the login page, never a 500


def test_a_session_login_of_the_certificate_user_ends_with_the_certificate(
    client_of,
    users,  # noqa: F811
    certs,
) -> None:
    users.objects.create_user("ledger")
    client = client_of(conf={"mode": "optional"})
    assert get(client, "/login", certs.good) == (200, {"user": "ledger"})
    # the same session, no certificate: not ledger any more (RemoteUserMiddleware's rule)
    assert get(client, "/who") == (200, {"user": None})
    assert not client.session.get("_auth_user_id")  # logged out, as RemoteUserMiddleware does
    assert get(client, "/who", certs.good) == (200, {"user": "ledger"})


def test_a_session_login_of_the_certificate_user_does_not_open_exempt_paths(
    client_of,
    users,  # noqa: F811
    certs,
) -> None:
    users.objects.create_user("ledger")
    client = client_of()
    assert get(client, "/login", certs.good) == (200, {"user": "ledger"})
    assert get(client, "/healthz") == (200, {"user": None})
    # nothing was asked of the client there: the session is anonymous, not logged out
    assert client.session.get("_auth_user_id")
    assert get(client, "/who", certs.good) == (200, {"user": "ledger"})
    assert get(client, "/who")[0] == 401  # mandatory mode: never the session alone


def test_a_password_session_is_kept_where_no_certificate_is_presented(
    client_of,
    users,  # noqa: F811
    certs,
) -> None:
    other = users.objects.create_user("someone-else", password="pw")
    client = client_of(
        conf={"mode": "optional"},
        backends=(BACKEND, "django.contrib.auth.backends.ModelBackend"),
    )
    client.force_login(other, backend="django.contrib.auth.backends.ModelBackend")
    assert get(client, "/who") == (200, {"user": "someone-else"})


def test_a_certificate_session_without_authentication_middleware_ends_too(
    client_of,
    users,  # noqa: F811
    certs,
) -> None:
    users.objects.create_user("ledger")
    client = client_of(
        conf={"mode": "optional"},
        middleware=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "mtlsauth.adapters.django.MTLSMiddleware",
        ],
    )
    assert get(client, "/login", certs.good) == (200, {"user": "ledger"})
    assert get(client, "/who") == (200, {"user": None})
    assert not client.session.get("_auth_user_id")


def _session_first_view():
    from rest_framework.authentication import SessionAuthentication
    from rest_framework.response import Response
    from rest_framework.views import APIView

    from mtlsauth.adapters.drf import HasClientCertificate, MTLSAuthentication

    class SessionFirst(APIView):
        authentication_classes = (SessionAuthentication, MTLSAuthentication)
        permission_classes = (HasClientCertificate,)

        def get(self, request):
            return Response({"user": str(request.user)})

        def post(self, request):
            return Response({"user": str(request.user)})

    return SessionFirst.as_view()


urlpatterns.append(path("api/session-first", _session_first_view()))


@pytest.mark.parametrize("method", ["get", "post"])
def test_drf_session_authentication_first_fails_closed(
    client_of,
    users,  # noqa: F811
    certs,
    method,
) -> None:
    from test_django import HEADER_KEY, header

    users.objects.create_user("ledger")
    client = client_of()
    r = getattr(client, method)(
        "/api/session-first", REMOTE_ADDR=PROXY, **{HEADER_KEY: header(certs.good)}
    )
    assert r.status_code == 403  # the session class took it, with no request.auth: not a 500


# -- Flask: @token_required on an async view --------------------------------------------------
def _flask_async_app(pki, mode):
    import base64
    import hashlib

    from flask import Flask

    from mtlsauth import TokenCheck, Verifier
    from mtlsauth.adapters.wsgi import MTLSMiddleware
    from mtlsauth.adapters.wsgi_oauth import token_claims_from_environ, token_required

    x5t = base64.urlsafe_b64encode(hashlib.sha256(pki.good.der).digest()).rstrip(b"=").decode()
    check = TokenCheck(lambda token: {"sub": token, "cnf": {"x5t#S256": x5t}})
    app = Flask("async-token")

    @app.get("/balance")
    @token_required(check)
    async def balance():
        from flask import request

        return {"sub": token_claims_from_environ(request.environ)["sub"]}

    app.wsgi_app = MTLSMiddleware(
        app.wsgi_app, verifier=Verifier(trust_store=pki.root.trust_store()), mode=mode
    )
    return app


def test_flask_token_required_runs_an_async_view(pki) -> None:
    pytest.importorskip("flask")
    pytest.importorskip("asgiref")  # Flask's async views
    from werkzeug.test import Client

    client = Client(_flask_async_app(pki, "mandatory"))
    env = pki.good.wsgi_environ()
    r = client.get("/balance", environ_overrides=env, headers={"Authorization": "Bearer alice"})
    assert (r.status_code, r.get_json()) == (200, {"sub": "alice"})
    r = client.get("/balance", environ_overrides=env)
    assert r.status_code == 401
    assert r.headers["Content-Type"] == "application/problem+json"
    assert r.headers["WWW-Authenticate"].startswith("Bearer")


def test_flask_token_required_refuses_an_unbound_caller_of_an_async_view(pki) -> None:
    pytest.importorskip("flask")
    pytest.importorskip("asgiref")
    from werkzeug.test import Client

    client = Client(_flask_async_app(pki, "optional"))
    r = client.get("/balance", headers={"Authorization": "Bearer alice"})
    assert r.status_code == 401
    assert r.get_json()["code"] == "token_binding_mismatch"


@pytest.mark.skipif(not NEW_DJANGO, reason="request.auser is Django 5.0+")
def test_auser_under_django_asgi_handler(client_of, users, certs) -> None:  # noqa: F811
    """The sync-only middleware in Django's async chain (Django adapts it): an async view's
    ``await request.auser()`` is the certificate's user from the ASGI TLS extension."""
    import asyncio

    httpx = pytest.importorskip("httpx")
    from django.core.handlers.asgi import ASGIHandler

    from mtlsauth.testing import with_client_cert

    users.objects.create_user("ledger")
    client_of(middleware=MIDDLEWARE)  # AuthenticationMiddleware's auser() reads the session
    app = ASGIHandler()

    async def fetch(cert) -> httpx.Response:
        transport = httpx.ASGITransport(
            app=with_client_cert(app, cert), client=("127.0.0.1", 50000)
        )
        async with httpx.AsyncClient(transport=transport, base_url="https://test") as c:
            return await c.get("/auser")

    def close_thread_connections(**kwargs: object) -> None:
        # Each request runs in a thread of its own (ThreadSensitiveContext), and Django
        # ignores close() on an in-memory database: the connection that thread opened is
        # closed by hand when the request finishes (Python 3.13 warns about an unclosed one).
        from django.db import connections

        for conn in connections.all(initialized_only=True):
            if conn.connection is not None:
                conn.connection.close()
                conn.connection = None

    async def run():
        return await fetch(certs.good), await fetch(certs.other_org)

    from django.core.signals import request_finished

    request_finished.connect(close_thread_connections)
    try:
        mapped, unmapped = asyncio.run(run())
    finally:
        request_finished.disconnect(close_thread_connections)
    assert (mapped.status_code, mapped.json()) == (200, {"user": "ledger"})
    assert (unmapped.status_code, unmapped.json()) == (200, {"user": None})


# -- DRF: a browser's certificate is an ambient credential --------------------------------------
def _csrf_views():
    from rest_framework.response import Response
    from rest_framework.views import APIView

    from mtlsauth.adapters.drf import HasClientCertificate, MTLSAuthentication

    class BrowserAuthentication(MTLSAuthentication):
        enforce_csrf = True

    class Plain(APIView):
        authentication_classes = (MTLSAuthentication,)
        permission_classes = (HasClientCertificate,)

        def get(self, request):
            return Response({"cn": request.auth.common_name})

        def post(self, request):
            return Response({"cn": request.auth.common_name})

    class Browser(Plain):
        authentication_classes = (BrowserAuthentication,)

    return Plain.as_view(), Browser.as_view()


_plain, _browser = _csrf_views()
urlpatterns += [path("api/plain", _plain), path("api/browser", _browser)]


def test_drf_enforce_csrf_refuses_a_cross_site_post(client_of, certs) -> None:
    from django.middleware.csrf import get_token
    from django.test import Client, RequestFactory
    from test_django import HEADER_KEY, header

    client_of(middleware=[], backends=())
    meta = {"REMOTE_ADDR": PROXY, HEADER_KEY: header(certs.good)}
    browser = Client(enforce_csrf_checks=True)
    # a form another site's page posts: the certificate comes along, no CSRF token
    assert browser.post("/api/plain", {"x": "1"}, **meta).status_code == 200  # the default
    refused = browser.post("/api/browser", {"x": "1"}, **meta)
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["detail"]
    assert browser.get("/api/browser", **meta).status_code == 200  # safe methods pass
    # the site's own page: the CSRF cookie and its token
    token = get_token(RequestFactory().get("/"))
    browser.cookies["csrftoken"] = token
    ok = browser.post("/api/browser", {"x": "1"}, HTTP_X_CSRFTOKEN=token, **meta)
    assert (ok.status_code, ok.json()) == (200, {"cn": "ledger"})
