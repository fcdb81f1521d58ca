"""Every refusal mtlsauth answers reaches ``on_error``, ``on_decision`` and the log, once.

A refusal can come from the middleware (the certificate, a ``Route(token=...)`` check) or
from the application after the middleware admitted the request: a ``token_required``
decorator, a dependency, ``check_token`` or ``Policy.check`` called by hand. Behind the
middleware each of them is answered through ``on_error`` and gives exactly one denied
``on_decision`` record (with the code, the peer, the path and the certificate's
fingerprint) and one log line: the token check's own for a ``TokenError``, the refusal
line otherwise. The answer the client gets (status, problem+json, ``WWW-Authenticate``)
is the one it always was. Without the middleware a decorator answers by itself.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from mtlsauth import ForwardedCert, Policy, TokenCheck, Verifier
from mtlsauth._errors import MTLSAuthError
from mtlsauth._guard import Decision
from mtlsauth.adapters import aiohttp as aio
from mtlsauth.adapters import aiohttp_oauth, asgi, asgi_oauth, wsgi, wsgi_oauth
from mtlsauth.testing import CA

HEADER = "x-ssl-client-cert"
PATH = "/balance"


class World:
    """A verifier behind a trusted proxy, the hooks, and what they saw."""

    def __init__(self, ca: CA) -> None:
        self.client = ca.issue_client_cert(common_name="alice", organization="bank")
        self.verifier = Verifier(
            trust_store=ca.trust_store(),
            forwarded=ForwardedCert.preset("nginx", header=HEADER, trusted_proxies=["127.0.0.1"]),
        )
        self.fingerprint = hashlib.sha256(self.client.der).hexdigest()
        self.check = TokenCheck(self.validate)
        self.decisions: list[Decision] = []
        self.errors: list[str] = []

    @staticmethod
    def validate(token: str) -> dict[str, Any]:
        if token != "good":
            raise LookupError("unknown token")
        return {"sub": "alice"}

    def on_decision(self, decision: Decision) -> None:
        self.decisions.append(decision)

    def headers(self, token: str | None = None) -> dict[str, str]:
        out = {HEADER: quote(self.client.cert_pem.text(), safe="")}
        if token is not None:
            out["authorization"] = f"Bearer {token}"
        return out

    def refused(self) -> Decision:
        """The one denied record: allowed records (the admission) aside."""
        denied = [d for d in self.decisions if d.error is not None]
        assert len(denied) == 1, denied
        decision = denied[0]
        assert decision.peer == "127.0.0.1"
        assert decision.path == PATH
        assert decision.fingerprint == self.fingerprint
        assert decision.identity is None
        return decision


@pytest.fixture
def world(ca: CA) -> World:
    return World(ca)


def denied_code(world: World) -> str:
    return next(d.code for d in world.decisions if d.error is not None)


def _lines(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(1 for r in caplog.records if r.name == "mtlsauth" and text in r.getMessage())


def _token_answer(status: int, challenge: str | None, body: dict[str, Any]) -> None:
    assert status == 401
    assert challenge == "Bearer"
    assert body["code"] == "token_missing"


def _one_token_refusal(world: World, caplog: pytest.LogCaptureFixture) -> None:
    assert world.refused().code == "token_missing"
    assert world.errors == ["token_missing"]
    assert _lines(caplog, "mtlsauth token denied code=token_missing") == 1
    assert _lines(caplog, "mtlsauth refused") == 0


def _one_policy_refusal(world: World, caplog: pytest.LogCaptureFixture) -> None:
    assert world.refused().code == "organization_not_allowed"
    assert world.errors == ["organization_not_allowed"]
    assert _lines(caplog, "mtlsauth refused code=organization_not_allowed") == 1


STRICT = Policy(organizations=["other"])


# -- aiohttp -----------------------------------------------------------------------------------
def _aiohttp_app(world: World, handler: Any, *, middleware: bool = True) -> web.Application:
    def on_error(error: MTLSAuthError, request: web.Request) -> None:
        world.errors.append(error.code)

    middlewares = []
    if middleware:
        middlewares.append(
            aio.mtls_middleware(
                verifier=world.verifier, on_error=on_error, on_decision=world.on_decision
            )
        )
    app = web.Application(middlewares=middlewares)
    app.router.add_get(PATH, handler)
    return app


async def _aiohttp_get(app: web.Application, headers: dict[str, str]) -> tuple[Any, ...]:
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        r = await client.get(PATH, headers=headers)
        return r.status, r.headers.get("www-authenticate"), await r.json()


async def test_aiohttp_token_required_refusal_reaches_the_hooks(world, caplog) -> None:
    caplog.set_level(logging.INFO, logger="mtlsauth")

    @aiohttp_oauth.token_required(world.check)
    async def balance(request: web.Request) -> web.Response:
        raise AssertionError("not reached")

    status, challenge, body = await _aiohttp_get(_aiohttp_app(world, balance), world.headers())
    _token_answer(status, challenge, body)
    _one_token_refusal(world, caplog)


async def test_aiohttp_token_required_refusal_passes_a_catch_all_middleware(world, caplog) -> None:
    """A middleware between ``mtls_middleware`` and the handler that answers every
    exception with 500 does not see the decorator's refusal: it is answered, not raised."""
    caplog.set_level(logging.INFO, logger="mtlsauth")

    @aiohttp_oauth.token_required(world.check)
    async def balance(request: web.Request) -> web.Response:
        raise AssertionError("not reached")

    @web.middleware
    async def catch_all(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            return await handler(request)
        except Exception:  # noqa: BLE001 - what such a middleware does
            return web.json_response({"code": "oops"}, status=500)

    app = _aiohttp_app(world, balance)
    app.middlewares.append(catch_all)
    status, challenge, body = await _aiohttp_get(app, world.headers())
    _token_answer(status, challenge, body)
    _one_token_refusal(world, caplog)


async def test_aiohttp_token_required_answers_by_itself_without_the_middleware(world) -> None:
    @aiohttp_oauth.token_required(world.check)
    async def balance(request: web.Request) -> web.Response:
        raise AssertionError("not reached")

    app = _aiohttp_app(world, balance, middleware=False)
    status, _challenge, body = await _aiohttp_get(app, world.headers("good"))
    assert status == 500
    assert body["code"] == "identity_missing"
    assert world.decisions == []


async def test_aiohttp_handler_refusal_is_reported_and_logged(world, caplog) -> None:
    async def balance(request: web.Request) -> web.Response:
        identity = aio.get_identity(request)
        assert identity is not None
        STRICT.check(identity)
        raise AssertionError("not reached")

    status, _challenge, body = await _aiohttp_get(_aiohttp_app(world, balance), world.headers())
    assert (status, body["code"]) == (403, "organization_not_allowed")
    _one_policy_refusal(world, caplog)


# -- WSGI and Flask ----------------------------------------------------------------------------
def _wsgi_get(world: World, app: Any, headers: dict[str, str]) -> httpx.Response:
    def on_error(error: MTLSAuthError, environ: Any) -> None:
        world.errors.append(error.code)

    mw = wsgi.MTLSMiddleware(
        app, verifier=world.verifier, on_error=on_error, on_decision=world.on_decision
    )
    transport = httpx.WSGITransport(app=mw, remote_addr="127.0.0.1")
    with httpx.Client(transport=transport, base_url="http://rs") as client:
        return client.get(PATH, headers=headers)


def _flask(world: World) -> Any:
    flask = pytest.importorskip("flask")
    app = flask.Flask(__name__)

    @app.get(PATH)
    @wsgi_oauth.token_required(world.check)
    def balance() -> dict[str, str]:
        raise AssertionError("not reached")

    @app.get("/async" + PATH)
    @wsgi_oauth.token_required(world.check)
    async def abalance() -> dict[str, str]:
        raise AssertionError("not reached")

    return app


def test_flask_token_required_refusal_reaches_the_hooks(world, caplog) -> None:
    caplog.set_level(logging.INFO, logger="mtlsauth")
    r = _wsgi_get(world, _flask(world).wsgi_app, world.headers())
    assert r.headers["content-type"] == "application/problem+json"
    _token_answer(r.status_code, r.headers.get("www-authenticate"), r.json())
    _one_token_refusal(world, caplog)


def test_flask_token_required_answer_is_the_on_error_app(world) -> None:
    flask = pytest.importorskip("flask")
    app = _flask(world)

    def on_error(error: MTLSAuthError, environ: Any) -> Any:
        return flask.Response("sorry", status=418, headers={"x-why": error.code})

    mw = wsgi.MTLSMiddleware(app.wsgi_app, verifier=world.verifier, on_error=on_error)
    transport = httpx.WSGITransport(app=mw, remote_addr="127.0.0.1")
    with httpx.Client(transport=transport, base_url="http://rs") as client:
        for path in (PATH, "/async" + PATH):
            r = client.get(path, headers=world.headers())
            assert (r.status_code, r.text, r.headers["x-why"]) == (418, "sorry", "token_missing")


def test_flask_errorhandler_with_answer_refusal_reaches_the_hooks(world, caplog) -> None:
    """The errorhandler docs/flask.md shows, for a view that checks a stricter Policy."""
    flask = pytest.importorskip("flask")
    app = flask.Flask(__name__)

    @app.get(PATH)
    def balance() -> dict[str, str]:
        identity = wsgi.identity_from_environ(flask.request.environ)
        assert identity is not None
        STRICT.check(identity)
        raise AssertionError("not reached")

    @app.errorhandler(MTLSAuthError)
    def refused(error: MTLSAuthError) -> Any:
        return wsgi.answer_refusal(error, flask.request.environ)

    r = _wsgi_get(world, app.wsgi_app, world.headers())
    assert (r.status_code, r.json()["code"]) == (403, "organization_not_allowed")
    assert r.headers["content-type"] == "application/problem+json"
    _one_policy_refusal(world, caplog)
    # without the middleware: problem_response's answer, reported nowhere
    error = MTLSAuthError("refused")
    assert wsgi.answer_refusal(error, {}) == wsgi.problem_response(error)


def test_flask_token_required_answers_by_itself_without_the_middleware(world) -> None:
    client = _flask(world).test_client()
    r = client.get(PATH, headers=world.headers("good"))
    assert r.status_code == 500
    assert r.get_json()["code"] == "identity_missing"


def _wsgi_call(world: World, app: Any, headers: dict[str, str]) -> tuple[str, dict[str, str], Any]:
    """Call the middleware as a server does: a second ``start_response`` with ``exc_info``
    replaces the headers while nothing was sent (PEP 3333)."""

    def on_error(error: MTLSAuthError, environ: Any) -> None:
        world.errors.append(error.code)

    mw = wsgi.MTLSMiddleware(
        app, verifier=world.verifier, on_error=on_error, on_decision=world.on_decision
    )
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": PATH,
        "REMOTE_ADDR": "127.0.0.1",
        "SERVER_NAME": "rs",
        "SERVER_PORT": "80",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(),
    }
    for name, value in headers.items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    head: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(status: str, hdrs: list[tuple[str, str]], exc_info: Any = None) -> Any:
        head[:] = [(status, hdrs)]
        return lambda data: None

    body = b"".join(mw(environ, start_response))
    status, hdrs = head[0]
    return status, {k.lower(): v for k, v in hdrs}, json.loads(body)


def test_wsgi_app_refusal_is_reported_and_logged(world, caplog) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        identity = wsgi.identity_from_environ(environ)
        assert identity is not None
        STRICT.check(identity)
        raise AssertionError("not reached")

    status, _headers, body = _wsgi_call(world, app, world.headers())
    assert (status, body["code"]) == ("403 Forbidden", "organization_not_allowed")
    _one_policy_refusal(world, caplog)


def test_wsgi_check_token_refusal_is_reported_once(world, caplog) -> None:
    caplog.set_level(logging.INFO, logger="mtlsauth")

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        wsgi_oauth.check_token(environ, world.check)
        raise AssertionError("not reached")

    status, headers, body = _wsgi_call(world, app, world.headers())
    _token_answer(int(status.split()[0]), headers.get("www-authenticate"), body)
    _one_token_refusal(world, caplog)


# -- ASGI and FastAPI --------------------------------------------------------------------------
async def test_fastapi_require_token_refusal_is_reported(world, caplog) -> None:
    fastapi = pytest.importorskip("fastapi")
    caplog.set_level(logging.INFO, logger="mtlsauth")
    app = fastapi.FastAPI()
    needs_token = fastapi.Depends(asgi_oauth.require_token(world.check))

    @app.get(PATH)
    def balance(claims: Any = needs_token) -> None:
        raise AssertionError("not reached")

    def on_error(error: MTLSAuthError, scope: Any) -> None:
        world.errors.append(error.code)

    mw = asgi.MTLSMiddleware(
        app, verifier=world.verifier, on_error=on_error, on_decision=world.on_decision
    )
    transport = httpx.ASGITransport(app=mw, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://rs") as client:
        r = await client.get(PATH, headers=world.headers())
    _token_answer(r.status_code, r.headers.get("www-authenticate"), r.json())
    _one_token_refusal(world, caplog)


async def test_asgi_app_refusal_is_reported_and_logged(world, caplog) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        identity = asgi.identity_from_scope(scope)
        assert identity is not None
        STRICT.check(identity)

    def on_error(error: MTLSAuthError, scope: Any) -> None:
        world.errors.append(error.code)

    mw = asgi.MTLSMiddleware(
        app, verifier=world.verifier, on_error=on_error, on_decision=world.on_decision
    )
    transport = httpx.ASGITransport(app=mw, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://rs") as client:
        r = await client.get(PATH, headers=world.headers())
    assert (r.status_code, r.json()["code"]) == (403, "organization_not_allowed")
    _one_policy_refusal(world, caplog)


# -- Django ------------------------------------------------------------------------------------
def _django_settings() -> None:
    """Django's settings, configured once per process as tests/adapters/test_django.py does
    (whichever module comes first)."""
    django = pytest.importorskip("django")
    from django.conf import settings

    if settings.configured:
        return
    apps = ["django.contrib.auth", "django.contrib.contenttypes"]
    try:
        import rest_framework  # noqa: F401
    except ImportError:
        pass
    else:
        apps.append("rest_framework")
    settings.configure(
        DEBUG=False,
        SECRET_KEY="test-only-not-secret",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=[],
        INSTALLED_APPS=apps,
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": "file:mtlsauth-tests?mode=memory&cache=shared",
                "OPTIONS": {"uri": True},
                "TEST": {"NAME": "file:mtlsauth-tests?mode=memory&cache=shared"},
            }
        },
        USE_TZ=True,
        REST_FRAMEWORK={"UNAUTHENTICATED_USER": None},
    )
    django.setup()
    from django.core.management import call_command

    call_command("migrate", run_syncdb=True, verbosity=0)


_DJANGO_CHECK = TokenCheck(World.validate)
urlpatterns: list[Any] = []


def _django_urls() -> None:
    if urlpatterns:
        return
    from django.http import JsonResponse
    from django.urls import path

    from mtlsauth.adapters.django_oauth import token_required

    @token_required(_DJANGO_CHECK)
    def balance(request: Any) -> Any:
        return JsonResponse({"ok": True})

    def view(request: Any) -> Any:
        if "policy" in request.GET:
            STRICT.check(request.mtls_identity)
        return balance(request)

    def raw(request: Any) -> Any:
        from mtlsauth.adapters.django import identity_from_request

        STRICT.check(identity_from_request(request))
        return JsonResponse({"ok": True})

    urlpatterns.append(path(PATH.lstrip("/"), view))
    urlpatterns.append(path("raw" + PATH, raw))
    try:
        from rest_framework.response import Response
        from rest_framework.views import APIView
    except ImportError:
        return
    from mtlsauth.adapters.drf import (
        MTLSAuthentication,
        certificate_policy,
        token_authentication,
    )

    class Token(APIView):
        authentication_classes = (token_authentication(_DJANGO_CHECK),)
        permission_classes = ()

        def get(self, request: Any) -> Any:
            return Response({"ok": True})

    class Permission(APIView):
        authentication_classes = (MTLSAuthentication,)
        permission_classes = (certificate_policy(STRICT),)

        def get(self, request: Any) -> Any:
            return Response({"ok": True})

    class Raises(APIView):
        authentication_classes = (MTLSAuthentication,)
        permission_classes = ()

        def get(self, request: Any) -> Any:
            STRICT.check(request.auth)
            return Response({"ok": True})

    for prefix, drf_view in (("token", Token), ("permission", Permission), ("raises", Raises)):
        urlpatterns.append(path(f"{prefix}/{PATH.lstrip('/')}", drf_view.as_view()))


@pytest.fixture
def django_client(world: World, ca: CA, tmp_path: Any) -> Any:
    _django_settings()
    _django_urls()
    from django.test import Client, override_settings

    (tmp_path / "ca.pem").write_bytes(ca.cert_pem.bytes())
    conf = {
        "trust": {"files": ["ca.pem"]},
        "forwarded": {"preset": "nginx", "header": HEADER, "trusted_proxies": ["127.0.0.1"]},
    }
    with override_settings(
        MTLSAUTH=conf,
        MTLSAUTH_BASE_DIR=str(tmp_path),
        MTLSAUTH_ON_DECISION=world.on_decision,
        MIDDLEWARE=["mtlsauth.adapters.django.MTLSMiddleware"],
        AUTHENTICATION_BACKENDS=[],
        ROOT_URLCONF=__name__,
        REST_FRAMEWORK={
            "UNAUTHENTICATED_USER": None,
            "EXCEPTION_HANDLER": "mtlsauth.adapters.drf.exception_handler",
        },
    ):
        yield Client(REMOTE_ADDR="127.0.0.1")


@pytest.mark.parametrize("query", ["", "?policy=1"], ids=["token_required", "policy"])
def test_django_view_refusal_is_reported_once(world, django_client, caplog, query) -> None:
    caplog.set_level(logging.INFO, logger="mtlsauth")
    r = django_client.get(PATH + query, HTTP_X_SSL_CLIENT_CERT=world.headers()[HEADER])
    body = json.loads(r.content)
    assert r["Content-Type"] == "application/problem+json"
    world.errors.append(body["code"])  # Django has no on_error: the answer is the default one
    if query:
        assert (r.status_code, body["code"]) == (403, "organization_not_allowed")
        _one_policy_refusal(world, caplog)
    else:
        _token_answer(r.status_code, r.get("WWW-Authenticate"), body)
        _one_token_refusal(world, caplog)


@pytest.mark.parametrize("prefix", ["token", "permission", "raises"])
def test_drf_refusal_is_reported_once(world, django_client, caplog, prefix) -> None:
    """DRF answers these itself (authentication, permission, ``exception_handler``); they
    reach ``MTLSAUTH_ON_DECISION`` and the log as the middleware's own refusals do."""
    pytest.importorskip("rest_framework")
    caplog.set_level(logging.INFO, logger="mtlsauth")
    r = django_client.get(f"/{prefix}{PATH}", HTTP_X_SSL_CLIENT_CERT=world.headers()[HEADER])
    body = json.loads(r.content)
    denied = [d for d in world.decisions if d.error is not None]
    assert len(denied) == 1, denied
    decision = denied[0]
    assert (decision.peer, decision.path) == ("127.0.0.1", f"/{prefix}{PATH}")
    assert decision.fingerprint == world.fingerprint
    if prefix == "token":
        assert r.status_code == 401
        assert r["WWW-Authenticate"] == "Bearer"
        assert decision.code == "token_missing"
        assert _lines(caplog, "mtlsauth token denied code=token_missing") == 1
        assert _lines(caplog, "mtlsauth refused") == 0
    else:
        assert r.status_code == 403, body
        assert decision.code == "organization_not_allowed"
        assert _lines(caplog, "mtlsauth refused code=organization_not_allowed") == 1


async def test_audit_log_and_metrics_count_a_decorator_refusal(world) -> None:
    """The audit log line and the Prometheus counter of a ``token_required`` refusal."""
    prometheus_client = pytest.importorskip("prometheus_client")
    from mtlsauth.audit import AuditLog
    from mtlsauth.metrics.prometheus import PrometheusMetrics

    stream = io.StringIO()
    registry = prometheus_client.CollectorRegistry()
    metrics = PrometheusMetrics(
        world.verifier, registry=registry, on_decision=AuditLog(stream, allowed=False)
    )

    @aiohttp_oauth.token_required(world.check)
    async def balance(request: web.Request) -> web.Response:
        raise AssertionError("not reached")

    app = web.Application(
        middlewares=[aio.mtls_middleware(verifier=world.verifier, on_decision=metrics.on_decision)]
    )
    app.router.add_get(PATH, balance)
    status, challenge, body = await _aiohttp_get(app, world.headers())
    _token_answer(status, challenge, body)
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(records) == 1
    record = records[0]
    assert (record["decision"], record["code"], record["status"]) == (
        "denied",
        "token_missing",
        401,
    )
    assert (record["peer"], record["path"], record["method"]) == ("127.0.0.1", PATH, "GET")
    assert record["fingerprint"] == world.fingerprint
    sample = registry.get_sample_value
    assert sample("mtlsauth_decisions_total", {"outcome": "denied", "code": "token_missing"}) == 1
    assert sample("mtlsauth_decisions_total", {"outcome": "allowed", "code": "ok"}) == 1


@pytest.mark.parametrize("view", ["/raw", "/raises"], ids=["RefusalMiddleware", "drf"])
async def test_django_behind_the_asgi_middleware_reports_a_view_refusal(
    world, caplog, view
) -> None:
    """``RefusalMiddleware`` and DRF's ``exception_handler`` answer a view's refusal before
    the ASGI middleware sees it; they report it to that middleware's ``on_decision`` and
    log."""
    if view == "/raises":
        pytest.importorskip("rest_framework")
    _django_settings()
    _django_urls()
    from django.core.handlers.asgi import ASGIHandler
    from django.test import override_settings

    with override_settings(
        MIDDLEWARE=["mtlsauth.adapters.django.RefusalMiddleware"],
        ROOT_URLCONF=__name__,
        REST_FRAMEWORK={
            "UNAUTHENTICATED_USER": None,
            "EXCEPTION_HANDLER": "mtlsauth.adapters.drf.exception_handler",
        },
    ):
        mw = asgi.MTLSMiddleware(
            ASGIHandler(), verifier=world.verifier, on_decision=world.on_decision
        )
        transport = httpx.ASGITransport(app=mw, client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://rs") as client:
            r = await client.get(view + PATH, headers=world.headers())
    assert r.status_code == 403  # problem+json, or DRF's own format
    assert denied_code(world) == "organization_not_allowed"
    denied = [d for d in world.decisions if d.error is not None]
    assert len(denied) == 1, denied
    assert (denied[0].path, denied[0].peer) == (view + PATH, "127.0.0.1")
    assert denied[0].fingerprint == world.fingerprint
    assert _lines(caplog, "mtlsauth refused code=organization_not_allowed") == 1


class CatchAll:
    """A Django middleware that answers every exception a view raises with 500."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        return self.get_response(request)

    def process_exception(self, request: Any, exception: Exception) -> Any:
        from django.http import JsonResponse

        return JsonResponse({"code": "oops"}, status=500)


def test_django_token_required_refusal_passes_a_catch_all_middleware(
    world, django_client, caplog
) -> None:
    from django.test import override_settings

    caplog.set_level(logging.INFO, logger="mtlsauth")
    with override_settings(
        MIDDLEWARE=["mtlsauth.adapters.django.MTLSMiddleware", f"{__name__}.CatchAll"]
    ):
        r = django_client.get(PATH, HTTP_X_SSL_CLIENT_CERT=world.headers()[HEADER])
    body = json.loads(r.content)
    world.errors.append(body["code"])  # Django has no on_error: the answer is the default one
    _token_answer(r.status_code, r.get("WWW-Authenticate"), body)
    _one_token_refusal(world, caplog)
