"""Django integration in process: settings.MTLSAUTH, the middleware, MTLSBackend and DRF.

Django's settings can be configured once per process, so this module configures everything
the Django tests need (auth, contenttypes, DRF, an in-memory database) and each test swaps
``MTLSAUTH``, ``MIDDLEWARE`` and the URLconf with ``override_settings``.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

django = pytest.importorskip("django")
pytest.importorskip("rest_framework")

from django.conf import settings  # noqa: E402
from django.core.exceptions import ImproperlyConfigured  # noqa: E402
from django.http import JsonResponse  # noqa: E402
from django.test import Client, override_settings  # noqa: E402
from django.urls import path  # noqa: E402

from mtlsauth import ClientIdentity, Policy  # noqa: E402
from mtlsauth.testing import CA  # noqa: E402

PROXY = "10.0.0.1"
STRANGER = "203.0.113.9"
HEADER_KEY = "HTTP_X_SSL_CLIENT_CERT"


def configure_django() -> None:
    """Configure Django once for the whole test process (other modules reuse it)."""
    if settings.configured:
        return
    settings.configure(
        DEBUG=False,
        SECRET_KEY="test-only-not-secret",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=[],
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "rest_framework",
        ],
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


configure_django()


# -- views ------------------------------------------------------------------------------------
def whoami(request):
    from mtlsauth.adapters.django import identity_from_request

    who = identity_from_request(request)
    user = getattr(request, "user", None)
    return JsonResponse(
        {
            "cn": who.common_name if who else None,
            "user": user.get_username() if user is not None and user.is_authenticated else None,
            "header": request.META.get(HEADER_KEY),
        }
    )


def _drf_views():
    from rest_framework.response import Response
    from rest_framework.views import APIView

    from mtlsauth.adapters.drf import (
        HasClientCertificate,
        MTLSAuthentication,
        certificate_policy,
    )

    class Who(APIView):
        authentication_classes = (MTLSAuthentication,)
        permission_classes = (HasClientCertificate,)

        def get(self, request):
            assert isinstance(request.auth, ClientIdentity)
            return Response({"cn": request.auth.common_name, "user": str(request.user)})

    class Payments(Who):
        permission_classes = (certificate_policy(Policy(organizations={"payments"})),)

    class Ads(Who):
        permission_classes = (certificate_policy(Policy(organizations={"ads"})),)

    class Throttled(Who):
        from mtlsauth.adapters.drf import CertificateRateThrottle

        class OnePerMinute(CertificateRateThrottle):
            rate = "1/min"

        throttle_classes = (OnePerMinute,)

    return Who.as_view(), Payments.as_view(), Ads.as_view(), Throttled.as_view()


_who, _payments, _ads, _throttled = _drf_views()


# -- certificate-bound tokens (RFC 8705) ------------------------------------------------------
def _x5t(cert) -> str:
    import base64
    import hashlib

    digest = hashlib.sha256(cert.der).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


_TOKENS: dict[str, dict] = {}  # token -> claims, filled by the tests


def _introspect(token: str) -> dict:
    return _TOKENS[token]  # an unknown token raises: token_invalid


def _token_views():
    from rest_framework.response import Response
    from rest_framework.views import APIView

    from mtlsauth import TokenCheck
    from mtlsauth.adapters.django_oauth import token_claims, token_required
    from mtlsauth.adapters.drf import HasClientCertificate, token_authentication

    check = TokenCheck(_introspect)
    scoped = TokenCheck(_introspect, scopes={"ledger:write"})

    @token_required(check)
    def balance(request):
        claims = token_claims(request)
        return JsonResponse({"sub": claims["sub"], "cn": request.mtls_identity.common_name})

    @token_required(check)
    async def abalance(request):
        return JsonResponse({"sub": token_claims(request)["sub"]})

    class Ledger(APIView):
        authentication_classes = (token_authentication(check),)
        permission_classes = (HasClientCertificate,)

        def get(self, request):
            assert isinstance(request.auth, ClientIdentity)
            return Response({"sub": token_claims(request)["sub"], "cn": request.auth.common_name})

    class Scoped(Ledger):
        authentication_classes = (token_authentication(scoped),)

    return balance, abalance, Ledger.as_view(), Scoped.as_view()


_balance, _abalance, _ledger, _scoped = _token_views()
urlpatterns = [
    path("token/balance", _balance),
    path("token/abalance", _abalance),
    path("api/ledger", _ledger),
    path("api/ledger-write", _scoped),
    path("api/throttled", _throttled),
    path("whoami", whoami),
    path("healthz", whoami),
    path("api/who", _who),
    path("api/payments", _payments),
    path("api/ads", _ads),
]


# -- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def files(pki, certs, tmp_path_factory):
    d = tmp_path_factory.mktemp("django-pki")
    (d / "ca.pem").write_bytes(pki.root.cert_pem.bytes())
    (d / "intermediate.pem").write_bytes(pki.inter.cert_pem.bytes())
    return d


def mtlsauth_settings(files, **extra) -> dict:
    conf = {
        "trust": {"files": ["ca.pem"], "intermediates": ["intermediate.pem"]},
        "forwarded": {"preset": "nginx", "header": "X-SSL-Client-Cert", "trusted_proxies": [PROXY]},
        "exempt_paths": ["/healthz"],
    }
    conf.update(extra)
    return conf


MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "mtlsauth.adapters.django.MTLSMiddleware",
]


def header(cert) -> str:
    return quote(cert.cert_pem.bytes().decode(), safe="")


@pytest.fixture
def django_client(files):
    def make(*, middleware=MIDDLEWARE, backends=("mtlsauth.adapters.django.MTLSBackend",), **kw):
        conf = mtlsauth_settings(files, **kw.pop("conf", {}))
        overrides = override_settings(
            MTLSAUTH=conf,
            MTLSAUTH_BASE_DIR=str(files),
            MIDDLEWARE=list(middleware),
            AUTHENTICATION_BACKENDS=list(backends),
            INSTALLED_APPS=[
                "django.contrib.auth",
                "django.contrib.contenttypes",
                "django.contrib.sessions",
                "rest_framework",
            ],
            ROOT_URLCONF=__name__,
            **kw,
        )
        overrides.enable()
        made.append(overrides)
        return Client()

    made: list = []
    yield make
    for o in reversed(made):
        o.disable()


def get(client, path, cert=None, peer=PROXY, extra=None):
    meta = {"REMOTE_ADDR": peer}
    if cert is not None:
        meta[HEADER_KEY] = header(cert)
    meta.update(extra or {})
    r = client.get(path, **meta)
    body = json.loads(r.content) if r.content else {}
    return r.status_code, body


# -- the middleware ---------------------------------------------------------------------------
# The mode x certificate x path table is tests/adapters/test_contract.py.


def test_refusal_is_problem_json_with_challenge(django_client) -> None:
    client = django_client(backends=())
    r = client.get("/whoami", REMOTE_ADDR=PROXY)
    assert r.status_code == 401
    assert r["Content-Type"] == "application/problem+json"
    assert r["WWW-Authenticate"] == 'MutualTLS error="certificate_missing"'


def test_exempt_path_and_routes(django_client, certs) -> None:
    client = django_client(
        conf={
            "mode": "optional",
            "routes": [
                {"path": "/whoami", "mode": "mandatory", "policy": {"organizations": ["ads"]}}
            ],
        },
        backends=(),
    )
    assert get(client, "/healthz")[0] == 200
    code, body = get(client, "/whoami", certs.good)
    assert (code, body["code"]) == (403, "organization_not_allowed")
    assert get(client, "/whoami", certs.other_org)[1]["cn"] == "ads-bot"


def test_forged_header_is_hidden_from_views_in_every_mode(django_client, certs) -> None:
    client = django_client(
        conf={
            "mode": "off",
            "forwarded": {
                "preset": "nginx",
                "header": "X-SSL-Client-Cert",
                "trusted_proxies": [PROXY],
                "on_untrusted": "ignore",
            },
        },
        backends=(),
    )
    code, body = get(client, "/whoami", certs.good, peer=STRANGER)
    assert (code, body["header"]) == (200, None)
    code, body = get(client, "/whoami", certs.good, peer=PROXY)
    assert body["header"] == header(certs.good)  # a trusted proxy's header is left alone


def test_refusal_log_names_a_peer_rewritten_from_x_forwarded_for(
    django_client, certs, caplog
) -> None:
    """The Django middleware hands the core the headers that explain a refusal, as the
    other adapters do: a certificate header from a peer that is the last hop of
    X-Forwarded-For (a server rewriting the peer from it) is named in the log line, and
    never in the client's answer."""
    import logging

    client = django_client(backends=())
    with caplog.at_level(logging.WARNING, logger="mtlsauth"):
        code, body = get(
            client, "/whoami", certs.good, peer=STRANGER, extra={"HTTP_X_FORWARDED_FOR": STRANGER}
        )
    assert (code, body["code"]) == (401, "untrusted_forwarder")
    lines = [r.getMessage() for r in caplog.records if "untrusted_forwarder" in r.getMessage()]
    assert lines, caplog.text
    assert "last hop of X-Forwarded-For" in lines[0]
    assert "X-Forwarded-For" not in json.dumps(body)


def test_direct_tls_environ(django_client, certs) -> None:
    client = django_client(backends=())
    r = client.get("/whoami", REMOTE_ADDR="127.0.0.1", **certs.good.wsgi_environ())
    assert (r.status_code, json.loads(r.content)["cn"]) == (200, "ledger")


# -- MTLSBackend ------------------------------------------------------------------------------
@pytest.fixture
def users():
    from django.contrib.auth import get_user_model

    model = get_user_model()
    model.objects.all().delete()
    yield model
    model.objects.all().delete()


def test_backend_maps_common_name_to_existing_user(django_client, certs, users) -> None:
    users.objects.create_user("ledger")
    client = django_client()
    assert get(client, "/whoami", certs.good)[1]["user"] == "ledger"
    # no user "ads-bot" and no creation: authenticated certificate, anonymous user
    assert get(client, "/whoami", certs.other_org)[1] == {
        "cn": "ads-bot",
        "user": None,
        "header": header(certs.other_org),
    }


def test_backend_refuses_inactive_users(django_client, certs, users) -> None:
    users.objects.create_user("ledger", is_active=False)
    assert get(django_client(), "/whoami", certs.good)[1]["user"] is None


def test_backend_creates_users_when_asked(django_client, certs, users) -> None:
    client = django_client(MTLSAUTH_CREATE_USERS=True)
    assert get(client, "/whoami", certs.good)[1]["user"] == "ledger"
    created = users.objects.get(username="ledger")
    assert not created.has_usable_password()


@pytest.mark.parametrize("value", ["False", "false", "no", "0", 0, 1, None])
def test_create_users_is_a_boolean_not_a_truth_value(django_client, certs, users, value) -> None:
    """MTLSAUTH_CREATE_USERS read from the environment is a string: "False" is true as a
    truth value, and every admitted certificate would get an account of its own."""
    from mtlsauth.adapters.django import MTLSMiddleware

    client = django_client(MTLSAUTH_CREATE_USERS=value)
    with pytest.raises(ImproperlyConfigured, match="MTLSAUTH_CREATE_USERS must be True or False"):
        MTLSMiddleware(lambda r: None)  # refused at start-up
    # and never read as "create" by the backend on its own: no account is made
    with pytest.raises(ImproperlyConfigured, match="MTLSAUTH_CREATE_USERS"):
        get(client, "/whoami", certs.good)
    assert not users.objects.filter(username="ledger").exists()


@pytest.mark.parametrize("value", [["email"], {"email": 1}])
def test_an_unhashable_username_setting_is_refused_at_start_up(django_client, value) -> None:
    from mtlsauth.adapters.django import MTLSMiddleware

    django_client(MTLSAUTH_USERNAME=value)
    with pytest.raises(ImproperlyConfigured, match="MTLSAUTH_USERNAME must be one of"):
        MTLSMiddleware(lambda r: None)


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("email", "ledger@example.org"),
        ("spiffe_id", "spiffe://example.org/ns/payments/sa/ledger"),
        ("dns_name", "ledger.payments.svc"),
    ],
)
def test_backend_username_fields(django_client, certs, users, field, expected) -> None:
    client = django_client(MTLSAUTH_CREATE_USERS=True, MTLSAUTH_USERNAME=field)
    assert get(client, "/whoami", certs.good)[1]["user"] == expected


def test_backend_never_picks_one_of_several_values(django_client, pki, users) -> None:
    two = pki.inter.issue_client_cert(common_name="x", emails=["a@example.org", "b@example.org"])
    users.objects.create_user("a@example.org")
    client = django_client(MTLSAUTH_CREATE_USERS=True, MTLSAUTH_USERNAME="email")
    assert get(client, "/whoami", two)[1]["user"] is None
    assert not users.objects.filter(username="b@example.org").exists()


def test_backend_maps_no_user_from_a_subject_with_two_common_names(
    django_client, pki, users
) -> None:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    two = pki.inter.issue_client_cert(
        subject=x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, "ledger"),
                x509.NameAttribute(NameOID.COMMON_NAME, "admin"),
            ]
        )
    )
    users.objects.create_user("ledger")
    users.objects.create_user("admin")
    assert get(django_client(), "/whoami", two)[1]["user"] is None


def test_backend_callable_mapping(django_client, certs, users) -> None:
    client = django_client(
        MTLSAUTH_CREATE_USERS=True, MTLSAUTH_USERNAME=lambda i: f"svc-{i.common_name}"
    )
    assert get(client, "/whoami", certs.good)[1]["user"] == "svc-ledger"


def test_backend_ignores_password_logins(users) -> None:
    from mtlsauth.adapters.django import MTLSBackend

    users.objects.create_user("ledger", password="pw")
    assert MTLSBackend().authenticate(None, username="ledger", password="pw") is None
    assert MTLSBackend().authenticate(None, mtls_identity="ledger") is None


def test_bad_settings_fail_at_startup(files) -> None:
    from mtlsauth.adapters.django import MTLSMiddleware

    with (
        override_settings(
            MTLSAUTH={"trust": {"files": ["missing.pem"]}}, MTLSAUTH_BASE_DIR=str(files)
        ),
        pytest.raises(ImproperlyConfigured, match=r"settings\.MTLSAUTH: \[trust\]"),
    ):
        MTLSMiddleware(lambda r: None)
    with (
        override_settings(MTLSAUTH=None),
        pytest.raises(ImproperlyConfigured, match="MTLSAUTH is not set"),
    ):
        MTLSMiddleware(lambda r: None)
    with (
        override_settings(MTLSAUTH=["not", "a", "dict"]),
        pytest.raises(ImproperlyConfigured, match="must be a dict or a file path"),
    ):
        MTLSMiddleware(lambda r: None)
    with override_settings(
        MTLSAUTH=mtlsauth_settings(files),
        MTLSAUTH_BASE_DIR=str(files),
        MTLSAUTH_USERNAME="nonsense",
    ):
        from mtlsauth.adapters.django import MTLSBackend
        from mtlsauth.testing import CA

        cert = CA().issue_client_cert(common_name="a")
        from mtlsauth import Verifier

        ident = Verifier(trust_store=CA().trust_store(), pinned=[cert.cert_pem.bytes()]).verify(
            cert.cert_pem.bytes()
        )
        with pytest.raises(ImproperlyConfigured, match="MTLSAUTH_USERNAME must be one of"):
            MTLSBackend().authenticate(None, mtls_identity=ident)


def test_settings_from_a_toml_file(django_client, certs, files) -> None:
    (files / "mtls.toml").write_text(
        'mode = "mandatory"\n[trust]\nfiles = ["ca.pem"]\nintermediates = ["intermediate.pem"]\n'
        f'[forwarded]\npreset = "nginx"\nheader = "X-SSL-Client-Cert"\ntrusted_proxies = ["{PROXY}"]\n'
        '[policy]\norganizations = ["ads"]\n'
    )
    with override_settings(
        MTLSAUTH="mtls.toml",
        MTLSAUTH_BASE_DIR=str(files),
        MIDDLEWARE=MIDDLEWARE,
        AUTHENTICATION_BACKENDS=[],
    ):
        client = Client()
        assert get(client, "/whoami", certs.good)[1]["code"] == "organization_not_allowed"
        assert get(client, "/whoami", certs.other_org)[1]["cn"] == "ads-bot"


# -- Django REST framework --------------------------------------------------------------------
@pytest.mark.parametrize("with_middleware", [True, False])
def test_drf_authentication_and_permissions(django_client, certs, users, with_middleware) -> None:
    client = django_client(
        conf={"mode": "optional"}, middleware=MIDDLEWARE if with_middleware else [], backends=()
    )
    code, body = get(client, "/api/who", certs.good)
    assert (code, body) == (200, {"cn": "ledger", "user": "ledger"})
    code, body = get(client, "/api/who")
    assert code == 401  # DRF answers 401 because MTLSAuthentication names a challenge
    assert get(client, "/api/payments", certs.good)[0] == 200
    code, body = get(client, "/api/ads", certs.good)
    assert code == 403
    code, body = get(client, "/api/who", certs.wrong_ca)
    assert code == 401
    if not with_middleware:  # without the middleware DRF reports mtlsauth's own code
        assert body["detail"]
    code, body = get(client, "/api/who", certs.good, peer=STRANGER)
    assert code == 401


@pytest.mark.parametrize("with_middleware", [True, False])
def test_drf_applies_the_policy_of_the_route_in_settings(
    django_client, certs, users, with_middleware
) -> None:
    # A route's policy in settings.MTLSAUTH restricts the path with or without the
    # middleware: MTLSAuthentication on its own must not admit every certificate of the CA.
    client = django_client(
        conf={
            "mode": "optional",
            "routes": [{"path": "/api/who", "policy": {"organizations": ["ads"]}}],
        },
        middleware=MIDDLEWARE if with_middleware else [],
        backends=(),
    )
    code, body = get(client, "/api/who", certs.good)
    assert code == 403
    assert body["detail"]  # DRF's own body; the code is the exception's (get_codes)
    if not with_middleware:
        assert body["detail"]  # DRF's own body, status from mtlsauth's PolicyDenied
    assert get(client, "/api/who", certs.other_org)[1]["cn"] == "ads-bot"
    assert get(client, "/api/payments", certs.good)[0] == 200  # no route: no extra policy


def test_drf_refuses_an_ambiguous_target_when_routes_matter(django_client, certs) -> None:
    client = django_client(
        conf={
            "mode": "optional",
            "routes": [{"path": "/api/who", "policy": {"organizations": ["ads"]}}],
        },
        middleware=[],
        backends=(),
    )
    code, _ = get(client, "/api/who", certs.good, extra={"RAW_URI": "/api/%77ho"})
    assert code == 400


def test_drf_throttles_each_certificate_on_its_own(django_client, pki, certs, users) -> None:
    # DRF's UserRateThrottle keys on user.pk, and every ClientCertificateUser has pk None:
    # one client would use up the budget of all. CertificateRateThrottle keys on the
    # certificate's fingerprint.
    from django.core.cache import cache

    cache.clear()
    client = django_client(conf={"mode": "optional"}, backends=())
    assert get(client, "/api/throttled", certs.good)[0] == 200
    assert get(client, "/api/throttled", certs.good)[0] == 429
    twin = pki.inter.issue_client_cert(common_name="ledger", organization="payments")
    assert get(client, "/api/throttled", twin)[0] == 200  # same names, another certificate
    assert get(client, "/api/throttled", certs.other_org)[0] == 200
    cache.clear()


def test_drf_uses_mapped_django_user(django_client, certs, users) -> None:
    users.objects.create_user("ledger", first_name="Led")
    client = django_client(conf={"mode": "optional"})
    code, body = get(client, "/api/who", certs.good)
    assert (code, body["user"]) == (200, "ledger")


def test_drf_www_authenticate(django_client) -> None:
    client = django_client(conf={"mode": "optional"}, backends=())
    r = client.get("/api/who", REMOTE_ADDR=PROXY)
    assert r.status_code == 401
    assert r["WWW-Authenticate"] == "MutualTLS"


def test_client_certificate_user_has_no_privileges() -> None:
    from mtlsauth.adapters.drf import ClientCertificateUser

    ca = CA()
    cert = ca.issue_client_cert(common_name="svc")
    from mtlsauth import Verifier

    ident = Verifier(trust_store=ca.trust_store()).verify(cert.chain_pem.bytes())
    user = ClientCertificateUser(ident)
    assert (user.is_authenticated, user.is_staff, user.is_superuser) == (True, False, False)
    assert not user.has_perm("auth.add_user")
    assert str(user) == "svc"


# -- the path Django resolves, ambiguous targets, unknown peers --------------------------------
def test_routes_match_the_path_django_resolves_below_the_script_prefix(django_client) -> None:
    # Deployed under SCRIPT_NAME=/prefix, Django resolves "/whoami": a Route written as the
    # URLconf is must cover it, or the request falls back to the weaker default mode.
    client = django_client(
        conf={"mode": "optional", "routes": [{"path": "/whoami", "mode": "mandatory"}]},
        backends=(),
    )
    code, body = get(client, "/whoami", extra={"SCRIPT_NAME": "/prefix"})
    assert (code, body["code"]) == (401, "certificate_missing")


@pytest.mark.parametrize(
    "raw",
    ["/healthz/..%2Fwhoami", "/healthz/../whoami", "/health%7Az", "/healthz;x", "//healthz"],
)
def test_ambiguous_targets_are_refused_when_paths_matter(django_client, raw) -> None:
    client = django_client(backends=())
    code, body = get(client, "/healthz", extra={"REQUEST_URI": raw})
    assert (code, body["code"]) == (400, "ambiguous_path")


def test_plain_target_is_not_refused(django_client) -> None:
    client = django_client(backends=())
    assert get(client, "/healthz", extra={"REQUEST_URI": "/healthz?x=/../"})[0] == 200


def test_unknown_peer_is_not_a_unix_socket(django_client, certs) -> None:
    client = django_client(
        conf={
            "forwarded": {
                "preset": "nginx",
                "header": "X-SSL-Client-Cert",
                "trusted_proxies": ["unix"],
            }
        },
        backends=(),
    )
    code, body = get(client, "/whoami", certs.good, peer="")
    assert (code, body["code"]) == (401, "untrusted_forwarder")


def asgi_request(path: str = "/whoami", headers: tuple = (), **scope_items):
    """A Django ``ASGIRequest`` for a GET of ``path``, as an ASGI server builds it."""
    import io

    from django.core.handlers.asgi import ASGIRequest

    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), *headers],
        **scope_items,
    }
    return ASGIRequest(scope, io.BytesIO(b""))


@pytest.mark.parametrize(
    ("client", "server", "unix"),
    [
        (None, ("/run/app.sock", None), True),
        (None, ("127.0.0.1", 8000), False),
        (("", 0), ("/run/app.sock", None), False),
    ],
)
def test_asgi_request_peer_is_a_unix_socket_only_when_the_server_says_so(
    client, server, unix
) -> None:
    from mtlsauth.adapters import UNIX_PEER
    from mtlsauth.adapters.django import request_peer

    peer = request_peer(asgi_request(client=client, server=server))
    assert (peer is UNIX_PEER) is unix
    assert peer is UNIX_PEER or peer is None


# -- a forged certificate header is hidden from every API a view reads headers through --------
def _headers_view(request):
    return JsonResponse(
        {
            "meta": request.META.get(HEADER_KEY),
            "headers": request.headers.get("X-SSL-Client-Cert"),
            "scope": [
                v.decode("latin-1")
                for k, v in getattr(request, "scope", {}).get("headers", ())
                if k.lower().replace(b"_", b"-") == b"x-ssl-client-cert"
            ],
        }
    )


class _ReadsHeadersFirst:
    """A middleware above mtlsauth's that reads ``request.headers`` (as django-cors-headers
    does for ``Origin``), so Django has built and kept its ``HttpHeaders`` by then."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.headers.get("Origin")
        return self.get_response(request)


def _drf_open_view():
    from rest_framework.permissions import AllowAny
    from rest_framework.response import Response
    from rest_framework.views import APIView

    from mtlsauth.adapters.drf import MTLSAuthentication

    class Open(APIView):
        authentication_classes = (MTLSAuthentication,)
        permission_classes = (AllowAny,)

        def get(self, request):
            return Response(
                {
                    "meta": request.META.get(HEADER_KEY),
                    "headers": request.headers.get("X-SSL-Client-Cert"),
                    "cn": request.auth.common_name if request.auth else None,
                }
            )

    return Open.as_view()


urlpatterns += [path("headers", _headers_view), path("api/open", _drf_open_view())]

_IGNORE = {
    "forwarded": {
        "preset": "nginx",
        "header": "X-SSL-Client-Cert",
        "trusted_proxies": [PROXY],
        "on_untrusted": "ignore",
    }
}


@pytest.mark.parametrize("mode", ["off", "optional"])
def test_forged_header_is_hidden_from_request_headers_built_before_the_middleware(
    django_client, certs, mode
) -> None:
    """``request.headers`` is a copy of ``META`` that Django keeps once built: removing the
    key from ``META`` alone left the forged value in it for every view."""
    middleware = [f"{__name__}._ReadsHeadersFirst", *MIDDLEWARE]
    client = django_client(conf={"mode": mode, **_IGNORE}, middleware=middleware, backends=())
    code, body = get(client, "/headers", certs.good, peer=STRANGER)
    assert (code, body["meta"], body["headers"]) == (200, None, None)
    code, body = get(client, "/headers", certs.good, peer=PROXY)
    assert body["headers"] == header(certs.good)  # a trusted proxy's header is left alone


def test_drf_without_the_middleware_hides_a_forged_header(django_client, certs) -> None:
    """``MTLSAuthentication`` verifying the request itself (no middleware) ignored a
    stranger's header (``on_untrusted="ignore"``) but left it in ``META`` and
    ``request.headers`` for the view."""
    client = django_client(conf={"mode": "optional", **_IGNORE}, middleware=[], backends=())
    code, body = get(client, "/api/open", certs.good, peer=STRANGER)
    assert (code, body) == (200, {"meta": None, "headers": None, "cn": None})
    code, body = get(client, "/api/open", certs.good, peer=PROXY)
    assert (code, body["cn"], body["headers"]) == (200, "ledger", header(certs.good))


@pytest.mark.parametrize("spelling", [b"x-ssl-client-cert", b"X_SSL_Client_Cert"])
def test_django_asgi_hides_a_forged_header_from_the_scope_too(
    files, certs, monkeypatch, spelling
) -> None:
    """Under ASGI a view can read ``request.scope["headers"]`` as well as ``META``."""

    from mtlsauth.adapters import django as dj

    conf = mtlsauth_settings(files, mode="off", **_IGNORE)
    with override_settings(MTLSAUTH=conf, MTLSAUTH_BASE_DIR=str(files)):
        guard = dj.get_guard()
        monkeypatch.setattr(dj, "get_guard", lambda: guard)
    middleware = dj.MTLSMiddleware(_headers_view)

    def answer(peer: str) -> dict:
        request = asgi_request(
            "/headers",
            ((spelling, header(certs.good).encode()),),
            client=(peer, 1234),
            server=("127.0.0.1", 80),
        )
        request.headers.get("Origin")  # built before the middleware ran
        return json.loads(middleware(request).content)

    assert answer(STRANGER) == {"meta": None, "headers": None, "scope": []}
    seen = answer(PROXY)  # a trusted proxy's headers are left as they came
    assert seen["scope"] == [header(certs.good)]


@pytest.mark.parametrize(
    "extensions",
    [
        ["tls"],
        "tls",
        {"tls": "yes"},
        {"tls": ["-----BEGIN CERTIFICATE-----"]},
        {"tls": {"client_cert_chain": "-----BEGIN CERTIFICATE-----\nMIIB\n"}},
        {"tls": {"client_cert_chain": 5}},
        {"tls": {"client_cert_chain": [5]}},
    ],
    ids=["list", "str", "tls-str", "tls-list", "chain-str", "chain-int", "chain-of-int"],
)
@pytest.mark.parametrize("mode", ["mandatory", "optional"])
def test_django_asgi_refuses_a_server_tls_extension_of_the_wrong_shape(
    files, monkeypatch, extensions, mode
) -> None:
    """A TLS extension that is not the ASGI spec's mapping says nothing certain about the
    certificate: 400 ``request_malformed``, never a 500, never a request let through."""

    from mtlsauth.adapters import django as dj

    conf = mtlsauth_settings(files, mode=mode)
    with override_settings(MTLSAUTH=conf, MTLSAUTH_BASE_DIR=str(files)):
        guard = dj.get_guard()
    monkeypatch.setattr(dj, "get_guard", lambda: guard)
    reached: list[object] = []

    def view(request):
        reached.append(request)
        return JsonResponse({})

    request = asgi_request(
        client=(STRANGER, 1234),
        server=("127.0.0.1", 443),
        scheme="https",
        extensions=extensions,
    )
    response = dj.MTLSMiddleware(view)(request)
    assert response.status_code == 400
    assert json.loads(response.content)["code"] == "request_malformed"
    assert reached == []


def test_backend_maps_no_user_from_a_proxy_verified_subject_with_two_common_names() -> None:
    """A proxy-verified identity has no certificate; its reported subject still names two
    users, and the backend picks neither (the first CN alone would let the holder choose)."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    from mtlsauth._forwarded._verified import _build
    from mtlsauth.adapters.django import MTLSBackend

    def identity(*names: str):
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, n) for n in names])
        return _build(subject=subject, issuer=None, source="header:x-amzn-mtls-clientcert")

    with override_settings(MTLSAUTH_USERNAME="common_name"):
        assert MTLSBackend().username_for(identity("ledger", "admin")) is None
        assert MTLSBackend().username_for(identity("ledger")) == "ledger"


# -- certificate-bound tokens ------------------------------------------------------------------
@pytest.fixture
def tokens(certs):
    _TOKENS.clear()
    _TOKENS.update(
        {
            "bound": {"sub": "client-1", "cnf": {"x5t#S256": _x5t(certs.good)}},
            "elsewhere": {"sub": "client-2", "cnf": {"x5t#S256": _x5t(certs.other_org)}},
            "unbound": {"sub": "client-3"},
        }
    )
    yield _TOKENS
    _TOKENS.clear()


def _bearer(token: str | None) -> dict:
    return {} if token is None else {"HTTP_AUTHORIZATION": f"Bearer {token}"}


@pytest.mark.parametrize("view", ["/token/balance", "/token/abalance"])
def test_token_required_admits_only_a_token_bound_to_the_certificate(
    django_client, certs, tokens, view
) -> None:
    client = django_client(conf={"mode": "optional"}, backends=())
    code, body = get(client, view, certs.good, extra=_bearer("bound"))
    assert (code, body["sub"]) == (200, "client-1")
    for token, cert, expected in [
        ("elsewhere", certs.good, "token_binding_mismatch"),  # bound to another certificate
        ("bound", None, "token_binding_mismatch"),  # no verified certificate at all
        ("unbound", certs.good, "token_not_bound"),
        ("forged", certs.good, "token_invalid"),
        (None, certs.good, "token_missing"),
    ]:
        r = client.get(
            view,
            REMOTE_ADDR=PROXY,
            **_bearer(token),
            **({HEADER_KEY: header(cert)} if cert is not None else {}),
        )
        assert (r.status_code, json.loads(r.content)["code"]) == (401, expected), token
        assert r["WWW-Authenticate"].startswith("Bearer"), token
        assert r["Content-Type"] == "application/problem+json"


def test_token_required_without_the_middleware_is_a_deployment_error(
    django_client, certs, tokens
) -> None:
    client = django_client(middleware=[], backends=())
    code, body = get(client, "/token/balance", certs.good, extra=_bearer("bound"))
    assert (code, body["code"]) == (500, "identity_missing")


@pytest.mark.parametrize("with_middleware", [True, False])
def test_drf_token_authentication_decides_certificate_and_token_together(
    django_client, certs, tokens, with_middleware
) -> None:
    client = django_client(
        conf={"mode": "optional"}, middleware=MIDDLEWARE if with_middleware else [], backends=()
    )
    code, body = get(client, "/api/ledger", certs.good, extra=_bearer("bound"))
    assert (code, body) == (200, {"sub": "client-1", "cn": "ledger"})
    r = client.get("/api/ledger", REMOTE_ADDR=PROXY, HTTP_X_SSL_CLIENT_CERT=header(certs.good),
                   **_bearer("elsewhere"))  # fmt: skip
    assert r.status_code == 401
    assert json.loads(r.content)["detail"]
    assert r["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
    r = client.get("/api/ledger", REMOTE_ADDR=PROXY, HTTP_X_SSL_CLIENT_CERT=header(certs.good))
    assert (r.status_code, r["WWW-Authenticate"]) == (401, "Bearer")  # token_missing
    r = client.get("/api/ledger", REMOTE_ADDR=PROXY, **_bearer("bound"))  # no certificate
    assert r.status_code == 401
    assert r["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
    # The certificate is decided first, with its own challenge.
    r = client.get("/api/ledger", REMOTE_ADDR=PROXY, HTTP_X_SSL_CLIENT_CERT=header(certs.wrong_ca),
                   **_bearer("bound"))  # fmt: skip
    assert r.status_code == 401
    assert r["WWW-Authenticate"].startswith("MutualTLS")


def test_drf_token_authentication_scopes_are_a_403(django_client, certs, tokens) -> None:
    tokens["writer"] = {**tokens["bound"], "scope": "ledger:read ledger:write"}
    client = django_client(conf={"mode": "optional"}, backends=())
    assert get(client, "/api/ledger-write", certs.good, extra=_bearer("writer"))[0] == 200
    assert get(client, "/api/ledger-write", certs.good, extra=_bearer("bound"))[0] == 403


def test_drf_token_refusals_other_than_401_carry_the_bearer_challenge(
    django_client, certs, tokens
) -> None:
    # RFC 6750 section 3: insufficient_scope (403) and invalid_request (400) are answered
    # with the Bearer challenge too, naming the scope needed, as every other adapter does.
    client = django_client(conf={"mode": "optional"}, backends=())
    r = client.get("/api/ledger-write", REMOTE_ADDR=PROXY, HTTP_X_SSL_CLIENT_CERT=header(certs.good),
                   **_bearer("bound"))  # fmt: skip
    assert r.status_code == 403
    assert r["WWW-Authenticate"] == (
        'Bearer error="insufficient_scope", error_description="The access token lacks a '
        'required scope", scope="ledger:write"'
    )
    r = client.get("/api/ledger", REMOTE_ADDR=PROXY, HTTP_X_SSL_CLIENT_CERT=header(certs.good),
                   HTTP_AUTHORIZATION="Bearer a b")  # fmt: skip
    assert r.status_code == 400
    assert r["WWW-Authenticate"].startswith('Bearer error="invalid_request"')


def test_token_helpers_refuse_what_is_not_a_token_check() -> None:
    from mtlsauth import IdentityMissing
    from mtlsauth.adapters.django_oauth import token_claims, token_required
    from mtlsauth.adapters.drf import token_authentication

    with pytest.raises(TypeError):
        token_required(lambda token: {})  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        token_authentication("check")  # type: ignore[arg-type]
    from django.test import RequestFactory

    with pytest.raises(IdentityMissing):
        token_claims(RequestFactory().get("/"))


# -- DRF: a refusal keeps its status (500, 503, 400, 403, 401), as in every adapter ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("error", "status"),
    [
        pytest.param("internal", 500, id="internal_error"),
        pytest.param("busy", 503, id="verification_busy"),
        pytest.param("malformed", 400, id="request_malformed"),
        pytest.param("denied", 403, id="certificate_denied"),
        pytest.param("missing", 401, id="certificate_missing"),
    ],
)
def test_drf_keeps_the_refusals_status(error: str, status: int) -> None:
    from mtlsauth import CertificateMissing, PolicyDenied
    from mtlsauth._errors import AmbiguousRequest, InternalError, VerificationBusy
    from mtlsauth.adapters import drf

    made = {
        "internal": InternalError("the client certificate could not be checked"),
        "busy": VerificationBusy("too many certificate verifications are waiting"),
        "malformed": AmbiguousRequest("unreadable", code="request_malformed"),
        "denied": PolicyDenied("denied", code="certificate_denied"),
        "missing": CertificateMissing("no client certificate was presented"),
    }[error]
    failure = drf._failed(made)
    assert failure.status_code == status
    assert failure.get_codes() == made.code
    # ... and its headers: DRF's own exception handler builds the response
    from rest_framework.views import exception_handler

    response = exception_handler(failure, {})
    assert response is not None
    assert response.status_code == status
    assert response.headers.get("Retry-After") == ("1" if status == 503 else None)


@pytest.mark.parametrize(
    "name",
    ["ledger\x00admin", "ledger\n", "led\u200fger", "ledger\u2028", "\ud800ledger", "\x7fledger"],
)
def test_backend_maps_no_user_from_a_name_that_is_not_printable(name: str) -> None:
    """A NUL (PostgreSQL refuses it in a query: a 500), another control, a separator, an
    unpaired surrogate or a format character is in no username anyone was given."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    from mtlsauth._forwarded._verified import _build
    from mtlsauth.adapters.django import MTLSBackend

    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ledger")])
    identity = _build(subject=subject, issuer=None, source="header:x")
    with override_settings(MTLSAUTH_USERNAME=lambda i: name):
        assert MTLSBackend().username_for(identity) is None
    with override_settings(MTLSAUTH_USERNAME=lambda i: "ledger"):
        assert MTLSBackend().username_for(identity) == "ledger"
    if name.isascii():  # a commonName that cryptography builds (it refuses surrogates)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        identity = _build(subject=subject, issuer=None, source="header:x")
        with override_settings(MTLSAUTH_USERNAME="common_name"):
            assert MTLSBackend().username_for(identity) is None


def test_backend_maps_no_user_from_a_name_longer_than_the_user_model_holds(
    django_client, pki, users
) -> None:
    """Creating it is a database error where the column is bounded (PostgreSQL, MySQL):
    the certificate names no user, and none is created."""
    limit = users._meta.get_field(users.USERNAME_FIELD).max_length
    base = "https://example.org/"
    long = pki.inter.issue_client_cert(common_name="x", uris=[base + "a" * (limit - len(base) + 1)])
    client = django_client(MTLSAUTH_CREATE_USERS=True, MTLSAUTH_USERNAME="uri")
    assert get(client, "/whoami", long)[1]["user"] is None
    assert not users.objects.exists()
    fits = pki.inter.issue_client_cert(common_name="x", uris=[base + "a" * (limit - len(base))])
    assert get(client, "/whoami", fits)[1]["user"] == base + "a" * (limit - len(base))


@pytest.mark.parametrize("given", [42, b"ledger", "ledger\x00", "led\u200fger", ["ledger"]])
def test_backend_maps_no_user_from_what_a_subclass_maps_badly(users, given: object) -> None:
    """``username_for`` is the documented place to map otherwise; what a subclass returns
    is held to the same rules: a value that is not a printable string names no user (a
    number has no length, a NUL is a database error: either was a 500)."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    from mtlsauth._forwarded._verified import _build
    from mtlsauth.adapters.django import MTLSBackend

    class Mapped(MTLSBackend):
        def username_for(self, identity: ClientIdentity) -> str | None:
            return given  # type: ignore[return-value]

    users.objects.create_user("ledger")
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ledger")])
    identity = _build(subject=subject, issuer=None, source="header:x")
    with override_settings(MTLSAUTH_CREATE_USERS=True):
        assert Mapped().authenticate(None, mtls_identity=identity) is None
    assert list(users.objects.values_list("username", flat=True)) == ["ledger"]
    assert MTLSBackend().authenticate(None, mtls_identity=identity).username == "ledger"


# -- refusals raised by views -----------------------------------------------------------------
def _view_refusals():
    from mtlsauth import TokenCheck
    from mtlsauth.adapters.django import identity_from_request
    from mtlsauth.adapters.django_oauth import check_token

    ops = Policy(organizations={"ops"})
    check = TokenCheck(_introspect)

    def stricter(request):
        identity = identity_from_request(request)
        if identity is None:
            from mtlsauth import CertificateMissing

            raise CertificateMissing("this view requires a client certificate")
        ops.check(identity)
        return JsonResponse({"cn": identity.common_name})

    def token(request):
        return JsonResponse({"sub": check_token(request, check)["sub"]})

    return stricter, token


_stricter, _view_token = _view_refusals()
urlpatterns += [path("view/stricter", _stricter), path("view/token", _view_token)]


def test_a_refusal_raised_by_a_view_is_answered_as_a_refusal(django_client, certs) -> None:
    """A view that checks a stricter policy itself, or calls ``check_token``, raised an
    ``MTLSAuthError`` that Django answered with its own 500 (HTML, no code)."""
    client = django_client(conf={"mode": "optional"}, backends=())
    for path_, cert, status, code in [
        ("/view/stricter", None, 401, "certificate_missing"),
        ("/view/stricter", certs.good, 403, "organization_not_allowed"),
        ("/view/token", certs.good, 401, "token_missing"),
    ]:
        r = client.get(path_, REMOTE_ADDR=PROXY, **({HEADER_KEY: header(cert)} if cert else {}))
        assert (r.status_code, r["Content-Type"]) == (status, "application/problem+json")
        assert json.loads(r.content)["code"] == code
    r = client.get("/view/token", REMOTE_ADDR=PROXY, **{HEADER_KEY: header(certs.good)})
    assert r["WWW-Authenticate"].startswith("Bearer")


# -- users the backend refuses, and backends that subclass MTLSBackend ------------------------
@pytest.mark.parametrize("middleware", [MIDDLEWARE, []], ids=["middleware", "drf-alone"])
def test_drf_does_not_authenticate_a_certificate_of_an_inactive_user(
    django_client, certs, users, middleware
) -> None:
    """``MTLSBackend`` refuses an inactive user, and DRF then made the certificate a
    ``ClientCertificateUser``: authenticated, so a disabled account's holder passed
    ``IsAuthenticated`` and ``HasClientCertificate`` while plain views saw an anonymous
    user."""
    users.objects.create_user("ledger", is_active=False)
    client = django_client(conf={"mode": "optional"}, middleware=middleware)
    assert get(client, "/api/who", certs.good)[0] == 401
    assert get(client, "/api/who", certs.other_org)[1]["user"] == "ads-bot"  # no such user


from mtlsauth.adapters.django import MTLSBackend  # noqa: E402


class EmailBackend(MTLSBackend):
    """A backend mapping the one e-mail SAN, as docs/django.md suggests subclassing."""

    def username_for(self, identity: ClientIdentity) -> str | None:
        return identity.emails[0] if len(identity.emails) == 1 else None


def test_a_subclass_of_the_backend_maps_users_and_refuses_inactive_ones(
    django_client, certs, users
) -> None:
    """The documented way to map otherwise is a subclass of ``MTLSBackend``; neither the
    middleware nor DRF consulted one (they looked for ``MTLSBackend``'s own dotted path), so
    its users were never mapped, and DRF admitted its inactive users."""
    backends = (f"{__name__}.EmailBackend",)
    user = users.objects.create_user("ledger@example.org")
    client = django_client(conf={"mode": "optional"}, backends=backends)
    assert get(client, "/whoami", certs.good)[1]["user"] == "ledger@example.org"
    assert get(client, "/api/who", certs.good)[1]["user"] == "ledger@example.org"
    user.is_active = False
    user.save()
    assert get(client, "/whoami", certs.good)[1]["user"] is None
    assert get(client, "/api/who", certs.good)[0] == 401


def test_authentication_middleware_after_this_one_is_refused_at_start_up(django_client) -> None:
    """After ``MTLSMiddleware``, Django's ``AuthenticationMiddleware`` replaced the user the
    certificate mapped to with the session's or an anonymous one on every request."""
    from mtlsauth.adapters.django import MTLSMiddleware

    misordered = [
        "django.contrib.sessions.middleware.SessionMiddleware",
        "mtlsauth.adapters.django.MTLSMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
    ]
    django_client(middleware=misordered)
    with pytest.raises(ImproperlyConfigured, match="AuthenticationMiddleware must come before"):
        MTLSMiddleware(lambda r: None)
    django_client(middleware=misordered, backends=())  # no certificate users: no request.user
    MTLSMiddleware(lambda r: None)


# -- DRF: a refusal raised in a view or a permission class is never a 500 ---------------------
class _RevokedPolicy(Policy):
    """A policy whose check refuses with something other than ``PolicyDenied``."""

    def check(self, identity):
        from mtlsauth import CertificateRevoked

        raise CertificateRevoked("the certificate was revoked", code="certificate_revoked")


def _drf_refusing_views():
    from rest_framework.permissions import AllowAny
    from rest_framework.response import Response
    from rest_framework.views import APIView

    from mtlsauth import CertificateMissing
    from mtlsauth.adapters.drf import (
        HasClientCertificate,
        MTLSAuthentication,
        certificate_policy,
    )

    class PolicyInView(APIView):
        authentication_classes = (MTLSAuthentication,)
        permission_classes = (HasClientCertificate,)

        def get(self, request):
            Policy(organizations={"ads"}).check(request.auth)
            return Response({"admitted": True})

    class MissingInView(APIView):
        authentication_classes = (MTLSAuthentication,)
        permission_classes = (AllowAny,)

        def get(self, request):
            if request.auth is None:
                raise CertificateMissing("a client certificate is required")
            return Response({"admitted": True})

    class RevokedPermission(APIView):
        authentication_classes = (MTLSAuthentication,)
        permission_classes = (certificate_policy(_RevokedPolicy()),)

        def get(self, request):
            return Response({"admitted": True})

    return PolicyInView.as_view(), MissingInView.as_view(), RevokedPermission.as_view()


_policy_in_view, _missing_in_view, _revoked_permission = _drf_refusing_views()
urlpatterns += [
    path("api/policy-in-view", _policy_in_view),
    path("api/missing-in-view", _missing_in_view),
    path("api/revoked-permission", _revoked_permission),
]
_HANDLER = {
    "UNAUTHENTICATED_USER": None,
    "EXCEPTION_HANDLER": "mtlsauth.adapters.drf.exception_handler",
}


def test_drf_permission_class_refusal_of_any_kind_is_answered(django_client, certs) -> None:
    """``ClientCertificatePolicy`` turned only ``PolicyDenied`` into DRF's refusal: another
    ``MTLSAuthError`` from the policy reached Django as a 500 without the middleware."""
    client = django_client(conf={"mode": "optional"}, middleware=[], backends=())
    client.raise_request_exception = False
    r = client.get("/api/revoked-permission", REMOTE_ADDR=PROXY, **{HEADER_KEY: header(certs.good)})
    assert r.status_code == 401  # CertificateRevoked's status, never Django's 500
    assert json.loads(r.content)["detail"] == "the certificate was revoked"
    assert r["WWW-Authenticate"] == "MutualTLS"


@pytest.mark.parametrize("with_middleware", [False, True])
def test_drf_refusal_raised_in_a_view_keeps_its_status(
    django_client, certs, with_middleware
) -> None:
    """Without ``MTLSMiddleware`` DRF's handler left an ``MTLSAuthError`` raised in a view to
    Django, which answered 500; ``exception_handler`` answers it as the refusal it is, with
    the code and the challenge."""
    middleware = MIDDLEWARE if with_middleware else []
    client = django_client(
        conf={"mode": "optional"}, middleware=middleware, backends=(), REST_FRAMEWORK=_HANDLER
    )
    client.raise_request_exception = False
    code, body = get(client, "/api/policy-in-view", certs.good)
    assert code == 403
    assert body["detail"]  # DRF's own body; the code is the exception's (get_codes)
    r = client.get("/api/missing-in-view", REMOTE_ADDR=PROXY)
    assert r.status_code == 401
    assert r["WWW-Authenticate"] == 'MutualTLS error="certificate_missing"'
    assert get(client, "/api/revoked-permission", certs.good)[0] == 401
    assert get(client, "/api/policy-in-view", certs.good)[0] != 200  # never admitted


def test_drf_exception_handler_uses_mtlsauth_codes(django_client, certs) -> None:
    """DRF's body carries mtlsauth's stable code (``exc.get_codes()``) for a view's refusal."""
    from rest_framework.test import APIRequestFactory

    from mtlsauth.adapters.drf import exception_handler

    django_client(conf={"mode": "optional"}, middleware=[], backends=())
    request = APIRequestFactory().get("/")
    response = exception_handler(_denied(), {"request": request})
    assert response.status_code == 403
    assert response.data["detail"].code == "organization_not_allowed"


def _denied():
    from mtlsauth import PolicyDenied

    return PolicyDenied("organization not allowed", code="organization_not_allowed")


# -- Django behind the generic ASGI middleware (mtlsauth.adapters.asgi.MTLSMiddleware) ------
def test_django_behind_the_asgi_middleware_reads_its_identity(
    django_client, certs, verifier
) -> None:
    """Django's ASGI handler behind ``mtlsauth.adapters.asgi.MTLSMiddleware`` (no Django
    middleware): ``identity_from_request`` raised ``IdentityMissing``, which Django answered
    with 500, and DRF's ``MTLSAuthentication`` verified the request a second time; both now
    take the identity the ASGI middleware put in the scope. A DRF view's refusal is answered by
    ``exception_handler`` there too."""
    import asyncio

    import httpx
    from django.core.handlers.asgi import ASGIHandler

    from mtlsauth.adapters.asgi import MTLSMiddleware as ASGIMiddleware
    from mtlsauth.testing import with_client_cert

    django_client(conf={"mode": "optional"}, middleware=[], backends=(), REST_FRAMEWORK=_HANDLER)
    app = ASGIMiddleware(ASGIHandler(), verifier=verifier, mode="optional")

    async def fetch(path: str, cert=None) -> httpx.Response:
        wrapped = with_client_cert(app, cert) if cert is not None else app
        transport = httpx.ASGITransport(app=wrapped, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="https://test") as c:
            return await c.get(path)

    async def run() -> list[httpx.Response]:
        return [
            await fetch("/whoami", certs.good),
            await fetch("/whoami"),
            await fetch("/api/open", certs.good),
            await fetch("/api/policy-in-view", certs.good),
            await fetch("/api/missing-in-view"),
        ]

    whoami, anonymous, drf_open, policy, missing = asyncio.run(run())
    assert (whoami.status_code, whoami.json()["cn"]) == (200, "ledger")
    assert (anonymous.status_code, anonymous.json()["cn"]) == (200, None)
    assert (drf_open.status_code, drf_open.json()["cn"]) == (200, "ledger")
    assert policy.status_code == 403
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == 'MutualTLS error="certificate_missing"'


def test_a_django_view_refusal_behind_the_asgi_middleware(django_client, certs, verifier) -> None:
    """Django's ASGI handler turns a view's exception into its own 500 response, so the
    generic ASGI middleware never saw the refusal: ``RefusalMiddleware`` answers it."""
    import asyncio

    import httpx
    from django.core.handlers.asgi import ASGIHandler

    from mtlsauth.adapters.asgi import MTLSMiddleware as ASGIMiddleware
    from mtlsauth.testing import with_client_cert

    django_client(
        conf={"mode": "optional"},
        middleware=["mtlsauth.adapters.django.RefusalMiddleware"],
        backends=(),
    )
    app = ASGIMiddleware(ASGIHandler(), verifier=verifier, mode="optional")

    async def fetch(cert=None) -> httpx.Response:
        wrapped = with_client_cert(app, cert) if cert is not None else app
        transport = httpx.ASGITransport(app=wrapped, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="https://test") as c:
            return await c.get("/view/stricter")

    async def run() -> list[httpx.Response]:
        return [await fetch(certs.good), await fetch()]

    denied, missing = asyncio.run(run())
    assert denied.status_code == 403
    assert denied.headers["content-type"] == "application/problem+json"
    assert denied.json()["code"] == "organization_not_allowed"
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == 'MutualTLS error="certificate_missing"'
