"""Adapter checks that a mutation of the code left passing elsewhere (docs/security.md,
"Security checks mutated, third round"): each test here fails with its mutant and passes
with the code as written."""

from __future__ import annotations

import pytest

from mtlsauth import IdentityMissing
from mtlsauth.adapters.wsgi import MTLSMiddleware, Route
from mtlsauth.adapters.wsgi_oauth import token_claims_from_environ


def _call(app, environ: dict) -> tuple[str, bytes]:
    status: list[str] = []

    def start_response(s, headers, exc_info=None):
        status.append(s)
        return lambda _b: None

    body = b"".join(app(environ, start_response))
    return status[0], body


def test_wsgi_a_route_without_a_token_check_stores_no_claims(certs, verifier) -> None:
    # The app's token_claims_from_environ must say that no check ran (IdentityMissing, a
    # deployment bug), not answer None ("optional, and none sent") for a route of no check.
    seen: list[str] = []

    def app(environ, start_response):
        try:
            token_claims_from_environ(environ)
            seen.append("claims")
        except IdentityMissing:
            seen.append("no check")
        start_response("200 OK", [])
        return [b""]

    mw = MTLSMiddleware(app, verifier=verifier, routes=[Route("/x", mode="mandatory")])
    environ = {
        **certs.good.wsgi_environ(),
        "REMOTE_ADDR": "127.0.0.1",
        "PATH_INFO": "/x",
        "REQUEST_METHOD": "GET",
    }
    status, _ = _call(mw, environ)
    assert status.startswith("200")
    assert seen == ["no check"]


@pytest.mark.parametrize(
    ("answered", "sent"),
    [("200 OK", "401 "), ("299 Odd", "401 "), ("300 Multiple Choices", "300 ")],
)
def test_wsgi_on_error_answering_a_success_status_is_sent_with_the_refusal_s(
    verifier, answered, sent
) -> None:
    # A proxy's auth_request or a cache takes a 2xx for an admission; from 300 on (a
    # redirect to a login page) the hook's status is kept.
    def on_error(error, environ):
        def answer(environ, start_response):
            start_response(answered, [("content-type", "text/plain")])
            return [b"refused"]

        return answer

    mw = MTLSMiddleware(lambda e, s: [b"app"], verifier=verifier, on_error=on_error)
    environ = {"REMOTE_ADDR": "127.0.0.1", "PATH_INFO": "/", "REQUEST_METHOD": "GET"}
    status, body = _call(mw, environ)
    assert status.startswith(sent)
    assert body == b"refused"


def _never_starts(environ, start_response):
    return [b"x"]


def _triple_header(environ, start_response):
    start_response("403 Forbidden", [("x-a", "1", "2")])
    return [b"x"]


def _bytes_header(environ, start_response):
    start_response("403 Forbidden", [("x-a", b"1")])
    return [b"x"]


def _text_body(environ, start_response):
    start_response("403 Forbidden", [("content-type", "text/plain")])
    return ["x"]


@pytest.mark.parametrize(
    "answer",
    [_never_starts, _triple_header, _bytes_header, _text_body],
    ids=["no start_response", "header of three", "header value bytes", "text body"],
)
def test_wsgi_on_error_answer_that_is_no_wsgi_answer_gives_the_default_refusal(
    verifier, answer
) -> None:
    # The hook's answer is checked before anything of it reaches the server (PEP 3333):
    # a malformed one is replaced by the refusal's own, never left to the server's 500.
    mw = MTLSMiddleware(lambda e, s: [b"app"], verifier=verifier, on_error=lambda e, env: answer)
    environ = {"REMOTE_ADDR": "127.0.0.1", "PATH_INFO": "/", "REQUEST_METHOD": "GET"}
    status, body = _call(mw, environ)
    assert status.startswith("401 ")
    assert b"certificate_missing" in body


# --- DRF -------------------------------------------------------------------------------------


@pytest.fixture
def drf_identity(certs, verifier):
    django = pytest.importorskip("django")
    pytest.importorskip("rest_framework")
    from django.conf import settings

    if not settings.configured:  # alone; with tests/adapters/test_django.py it is already
        settings.configure(
            SECRET_KEY="test-only-not-secret",
            ALLOWED_HOSTS=["*"],
            INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes", "rest_framework"],
            DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
            USE_TZ=True,
            REST_FRAMEWORK={"UNAUTHENTICATED_USER": None},
        )
        django.setup()
    return verifier.verify_pem(certs.good.chain_pem.text())


def _drf_request(method: str, identity):
    from django.test import RequestFactory
    from rest_framework.request import Request

    django_request = getattr(RequestFactory(), method)("/api", REMOTE_ADDR="127.0.0.1")
    django_request.mtls_identity = identity  # as MTLSMiddleware leaves it
    return Request(django_request)


@pytest.mark.parametrize("enforce", [False, True])
def test_drf_csrf_is_checked_only_when_enforced(drf_identity, enforce) -> None:
    # A certificate is an ambient credential, like a session cookie: a cross-site form
    # POST carries it. With enforce_csrf, an unsafe request needs Django's CSRF token.
    from rest_framework.exceptions import PermissionDenied

    from mtlsauth.adapters.drf import MTLSAuthentication

    class Auth(MTLSAuthentication):
        enforce_csrf = enforce

    assert Auth().authenticate(_drf_request("get", drf_identity))[1] is drf_identity
    if enforce:
        with pytest.raises(PermissionDenied, match="CSRF"):
            Auth().authenticate(_drf_request("post", drf_identity))
    else:
        assert Auth().authenticate(_drf_request("post", drf_identity))[1] is drf_identity


def test_drf_csrf_is_not_checked_for_a_request_without_a_certificate(drf_identity) -> None:
    from mtlsauth.adapters.drf import MTLSAuthentication

    class Auth(MTLSAuthentication):
        enforce_csrf = True

    assert Auth().authenticate(_drf_request("post", None)) is None


# --- Bearer tokens: one Authorization header --------------------------------------------------


def _token_check(identity):
    from mtlsauth import TokenCheck

    return TokenCheck(lambda t: {"sub": "c", "cnf": {"x5t#S256": identity.x5t_s256()}})


def test_asgi_check_token_refuses_two_authorization_headers(certs, verifier) -> None:
    import asyncio

    from mtlsauth import TokenError
    from mtlsauth.adapters.asgi import IDENTITY_KEY
    from mtlsauth.adapters.asgi_oauth import check_token

    identity = verifier.verify_pem(certs.good.chain_pem.text())
    scope = {
        "type": "http",
        "headers": [(b"authorization", b"Bearer a"), (b"authorization", b"Bearer b")],
        IDENTITY_KEY: identity,
    }
    with pytest.raises(TokenError) as info:
        asyncio.run(check_token(scope, _token_check(identity)))
    assert info.value.code == "token_request_invalid"
    scope["headers"] = scope["headers"][:1]
    assert asyncio.run(check_token(scope, _token_check(identity)))["sub"] == "c"


def test_aiohttp_check_token_refuses_two_authorization_headers(certs, verifier) -> None:
    import asyncio

    pytest.importorskip("aiohttp")
    from aiohttp.test_utils import make_mocked_request
    from multidict import CIMultiDict

    from mtlsauth import TokenError
    from mtlsauth.adapters.aiohttp import IDENTITY_KEY
    from mtlsauth.adapters.aiohttp_oauth import check_token

    identity = verifier.verify_pem(certs.good.chain_pem.text())
    two = CIMultiDict([("Authorization", "Bearer a"), ("Authorization", "Bearer b")])
    request = make_mocked_request("GET", "/", headers=two)
    request[IDENTITY_KEY] = identity
    with pytest.raises(TokenError) as info:
        asyncio.run(check_token(request, _token_check(identity)))
    assert info.value.code == "token_request_invalid"


def test_drf_has_client_certificate_needs_a_certificate_identity(drf_identity) -> None:
    # Another authentication class (a DRF token) leaves its own object in request.auth.
    import types

    from mtlsauth.adapters.drf import HasClientCertificate

    assert HasClientCertificate().has_permission(types.SimpleNamespace(auth=drf_identity), None)
    for auth in ("a-drf-token", object(), None):
        assert not HasClientCertificate().has_permission(types.SimpleNamespace(auth=auth), None)


# --- Django: sessions a certificate backend made -----------------------------------------------


def _session_request(backend: str):
    from django.contrib import auth
    from django.contrib.sessions.backends.signed_cookies import SessionStore
    from django.test import RequestFactory

    request = RequestFactory().get("/")
    request.session = SessionStore()
    request.session[auth.SESSION_KEY] = "1"
    request.session[auth.BACKEND_SESSION_KEY] = backend
    request.user = "the session's user"
    return request


@pytest.mark.parametrize("log_out", [True, False])
def test_django_a_certificate_session_without_a_certificate(drf_identity, log_out) -> None:
    # Asked for a certificate and none came: the session a certificate backend logged in is
    # logged out. Not asked (exempt path, mode "off"): kept, the request anonymous.
    from django.contrib import auth
    from django.contrib.auth.models import AnonymousUser
    from django.test import override_settings

    from mtlsauth.adapters import django as adapter

    with override_settings(AUTHENTICATION_BACKENDS=[adapter.BACKEND_PATH]):
        adapter._certificate_backends()
        request = _session_request(adapter.BACKEND_PATH)
        adapter._end_certificate_session(request, log_out=log_out)
        assert isinstance(request.user, AnonymousUser)
        assert (auth.SESSION_KEY in request.session) is not log_out


def test_django_a_password_session_is_kept_without_a_certificate(drf_identity) -> None:
    from django.contrib import auth
    from django.test import override_settings

    from mtlsauth.adapters import django as adapter

    backends = [adapter.BACKEND_PATH, "django.contrib.auth.backends.ModelBackend"]
    with override_settings(AUTHENTICATION_BACKENDS=backends):
        adapter._certificate_backends()
        request = _session_request("django.contrib.auth.backends.ModelBackend")
        adapter._end_certificate_session(request, log_out=True)
        assert request.user == "the session's user"
        assert auth.SESSION_KEY in request.session


def test_wsgi_chain_keys_stop_at_the_first_empty_one(certs, verifier) -> None:
    # mod_ssl exports SSL_CLIENT_CERT_CHAIN_n as an empty string where there is none.
    from mtlsauth.adapters.wsgi import presented_from_environ

    environ = {
        **certs.good.wsgi_environ(),
        "SSL_CLIENT_CERT_CHAIN_0": "",
        "SSL_CLIENT_CERT_CHAIN_1": "junk",
    }
    presented = presented_from_environ(environ)
    assert presented.tls_chain == (environ["SSL_CLIENT_CERT"],)
