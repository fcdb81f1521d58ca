"""WSGI adapter in process: Flask's test client with environ_base=cert.wsgi_environ()."""

from __future__ import annotations

import json
import ssl
from urllib.parse import quote

import flask
import pytest

from mtlsauth import IdentityMissing, MTLSAuthError, Policy
from mtlsauth.adapters.wsgi import (
    MTLSMiddleware,
    Route,
    identity_from_environ,
    presented_from_environ,
    problem_response,
)

PROXY = "10.0.0.1"
STRANGER = "203.0.113.9"


def flask_app(verifier, **kw) -> flask.Flask:
    app = flask.Flask(__name__)
    app.wsgi_app = MTLSMiddleware(app.wsgi_app, verifier=verifier, **kw)  # type: ignore[method-assign]

    @app.get("/whoami")
    def whoami():
        who = identity_from_environ(flask.request.environ)
        return {"cn": who.common_name if who else None}

    @app.get("/healthz")
    def healthz():
        return {"status": "up"}

    @app.get("/echo-header")
    def echo():
        return {"value": flask.request.headers.get("X-SSL-Client-Cert")}

    @app.errorhandler(MTLSAuthError)
    def refused(error: MTLSAuthError):
        return problem_response(error)

    @app.get("/ops")
    def ops():
        who = identity_from_environ(flask.request.environ)
        assert who is not None
        Policy(organizations={"ops"}).check(who)
        return {"ok": True}

    return app


def env(cert=None, peer="127.0.0.1"):
    base = cert.wsgi_environ() if cert is not None else {}
    return {**base, "REMOTE_ADDR": peer}


# The mode x certificate x path contract is tests/adapters/test_contract.py; here only
# what is this adapter's own: the certificate read from its TLS source.
@pytest.mark.parametrize(
    ("mode", "which", "status", "code"),
    [
        pytest.param("mandatory", "good", 200, None, id="mandatory good"),
        pytest.param("mandatory", "wrong_ca", 401, "untrusted_issuer", id="mandatory wrong CA"),
        pytest.param("optional", None, 200, None, id="optional none"),
    ],
)
def test_tls_source(certs, verifier, mode, which, status, code) -> None:
    client = flask_app(verifier, mode=mode).test_client()
    r = client.get("/whoami", environ_base=env(getattr(certs, which) if which else None))
    assert r.status_code == status
    if code is None:
        expected = "ledger" if which == "good" and mode != "off" else None
        assert r.get_json() == {"cn": expected}
    else:
        assert r.content_type == "application/problem+json"
        body = json.loads(r.data)
        assert body["code"] == code
        assert body["type"] == f"urn:mtlsauth:error:{code}"
        assert body["status"] == status
        assert set(body) == {"type", "title", "status", "detail", "code"}
        assert r.headers["WWW-Authenticate"] == f'MutualTLS error="{code}"'


def test_problem_body_exact(verifier) -> None:
    r = flask_app(verifier).test_client().get("/whoami", environ_base=env())
    assert json.loads(r.data) == {
        "type": "urn:mtlsauth:error:certificate_missing",
        "title": "Client certificate required",
        "status": 401,
        "detail": "no client certificate was presented",
        "code": "certificate_missing",
    }
    assert r.status == "401 Unauthorized"


def test_revoked(certs, rev_verifier) -> None:
    client = flask_app(rev_verifier).test_client()
    assert client.get("/whoami", environ_base=env(certs.unrevoked)).get_json() == {"cn": "current"}
    assert json.loads(client.get("/whoami", environ_base=env(certs.revoked)).data)["code"] == (
        "certificate_revoked"
    )


def test_mod_ssl_verify_failure_is_refused(certs, verifier) -> None:
    base = {**env(certs.good), "SSL_CLIENT_VERIFY": "FAILED:unable to get local issuer"}
    r = flask_app(verifier).test_client().get("/whoami", environ_base=base)
    assert json.loads(r.data)["code"] == "tls_verification_failed"


def test_chain_keys_are_read(certs, pki) -> None:
    base = env(certs.good)
    p = presented_from_environ(base)
    assert len(p.tls_chain) == 2  # leaf + SSL_CLIENT_CERT_CHAIN_0
    assert p.peer == "127.0.0.1"


def test_exempt_and_routes(certs, verifier) -> None:
    app = flask_app(
        verifier,
        exempt_paths={"/healthz"},
        routes=[Route("/whoami", methods={"GET"}, mode="optional")],
    )
    c = app.test_client()
    assert c.get("/healthz", environ_base=env()).get_json() == {"status": "up"}
    assert c.get("/whoami", environ_base=env()).get_json() == {"cn": None}
    assert c.get("/echo-header", environ_base=env()).status_code == 401


def test_handler_raising_policy_denied_with_errorhandler(certs, verifier) -> None:
    r = flask_app(verifier).test_client().get("/ops", environ_base=env(certs.good))
    assert r.status_code == 403
    assert json.loads(r.data)["code"] == "organization_not_allowed"


def test_forwarded_header_and_stripping(certs, fwd_verifier) -> None:
    value = quote(certs.good.chain_pem.text(), safe="")
    c = flask_app(fwd_verifier, mode="optional", exempt_paths={"/echo-header"}).test_client()
    hdr = {"X-SSL-Client-Cert": value}
    assert c.get("/whoami", headers=hdr, environ_base=env(peer=PROXY)).get_json() == {
        "cn": "ledger"
    }
    r = c.get("/whoami", headers=hdr, environ_base=env(peer=STRANGER))
    assert json.loads(r.data)["code"] == "untrusted_forwarder"
    # exempt path: no check, but the forged header never reaches the view
    r = c.get("/echo-header", headers=hdr, environ_base=env(peer=STRANGER))
    assert r.get_json() == {"value": None}
    # the underscore alias folds into the same environ key and is removed too
    r = c.get(
        "/echo-header", headers={"X_SSL_Client_Cert": "forged"}, environ_base=env(peer=STRANGER)
    )
    assert r.get_json() == {"value": None}
    r = c.get("/echo-header", headers=hdr, environ_base=env(peer=PROXY))
    assert r.get_json() == {"value": value}


def test_gunicorn_socket_is_read(certs, verifier, monkeypatch) -> None:
    class LeafOnlySocket(ssl.SSLSocket):
        """An SSLSocket as Python < 3.13 reports it: the leaf only."""

        def __init__(self) -> None:  # no real socket
            pass

        def getpeercert(self, binary_form=False):
            return certs.good.der

        def __del__(self) -> None:
            pass

    class ChainSocket(LeafOnlySocket):
        """As Python 3.13+ reports it: what the client sent, leaf first."""

        def get_unverified_chain(self):
            return list(certs.good.chain_der)

    # On 3.13 the base class has get_unverified_chain, which fails on a fake without a real
    # connection: the adapter falls back to the leaf rather than raising.
    leaf_only = presented_from_environ(
        {"REMOTE_ADDR": "127.0.0.1", "gunicorn.socket": LeafOnlySocket()}
    )
    assert leaf_only.tls_chain == (certs.good.der,)
    chain = presented_from_environ({"REMOTE_ADDR": "127.0.0.1", "gunicorn.socket": ChainSocket()})
    assert chain.tls_chain == tuple(certs.good.chain_der)
    assert len(chain.tls_chain) == 2


def test_on_error_and_on_decision(certs, verifier) -> None:
    import werkzeug

    decisions = []

    def on_error(error, environ):
        return werkzeug.Response(f"refused {error.code}", status=error.status)

    app = flask_app(verifier, on_error=on_error, on_decision=decisions.append)
    r = app.test_client().get("/whoami", environ_base=env(certs.expired))
    assert (r.status_code, r.text) == (401, "refused certificate_expired")
    assert [d.code for d in decisions] == ["certificate_expired"]


def test_raising_hooks_still_refuse(certs, verifier) -> None:
    def bad(*args):
        raise RuntimeError("hook bug")

    c = flask_app(verifier, on_error=bad, on_decision=bad).test_client()
    assert c.get("/whoami", environ_base=env(certs.expired)).status_code == 401
    assert c.get("/whoami", environ_base=env(certs.good)).status_code == 200


def test_identity_from_environ_without_middleware() -> None:
    with pytest.raises(IdentityMissing):
        identity_from_environ({})


def test_threads_share_one_middleware(certs, verifier) -> None:
    from concurrent.futures import ThreadPoolExecutor

    app = flask_app(verifier, mode="optional")
    cases = [certs.good, None, certs.expired, certs.other_org] * 25

    def one(cert):
        r = app.test_client().get("/whoami", environ_base=env(cert))
        return r.status_code, (r.get_json() or {}).get("cn") if r.status_code == 200 else None

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(one, cases))
    want = {
        id(certs.good): (200, "ledger"),
        id(None): (200, None),
        id(certs.expired): (401, None),
        id(certs.other_org): (200, "ads-bot"),
    }
    assert got == [want[id(c)] for c in cases]


def _django_whoami(request):
    from django.http import JsonResponse

    who = identity_from_environ(request.META)  # request.META is the WSGI environ
    return JsonResponse({"cn": who.common_name if who else None})


def test_django_wsgi_application(certs, verifier) -> None:
    pytest.importorskip("django")
    import django
    from django.conf import settings
    from django.core.wsgi import get_wsgi_application
    from django.urls import path
    from werkzeug.test import Client

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="test-only",
            ALLOWED_HOSTS=["localhost"],
            ROOT_URLCONF=__name__,
            MIDDLEWARE=[],
            INSTALLED_APPS=[],
            USE_TZ=True,
        )
        django.setup()
    from django.test import override_settings

    globals()["urlpatterns"] = [path("whoami", _django_whoami)]
    # Settings are configured once per process (test_django.py may have done it first).
    overrides = override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=[])
    overrides.enable()
    try:
        _check_django_app(certs, verifier, get_wsgi_application, Client)
    finally:
        overrides.disable()


def _check_django_app(certs, verifier, get_wsgi_application, Client) -> None:
    application = MTLSMiddleware(get_wsgi_application(), verifier=verifier, mode="optional")
    client = Client(application)
    r = client.get("/whoami", environ_base=env(certs.good))
    assert r.get_json() == {"cn": "ledger"}
    assert client.get("/whoami", environ_base=env()).get_json() == {"cn": None}
    r = client.get("/whoami", environ_base=env(certs.wrong_ca))
    assert (r.status_code, json.loads(r.data)["code"]) == (401, "untrusted_issuer")


@pytest.mark.parametrize("xff", [PROXY, f"{STRANGER}, {PROXY}"])
def test_proxy_fix_wrapped_outside_cannot_make_a_stranger_a_trusted_proxy(
    certs, fwd_verifier, xff
) -> None:
    """werkzeug's ``ProxyFix`` outside the middleware rewrites ``REMOTE_ADDR`` from
    ``X-Forwarded-For`` before the middleware reads it: a client that reaches the app
    directly named the proxy's address and had its forged header believed. The socket
    peer ``ProxyFix`` keeps in ``werkzeug.proxy_fix.orig`` is the peer."""
    from werkzeug.middleware.proxy_fix import ProxyFix

    value = quote(certs.good.chain_pem.text(), safe="")
    app = flask_app(fwd_verifier, mode="optional", exempt_paths={"/echo-header"})
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1)  # type: ignore[method-assign]
    c = app.test_client()
    forged = {"X-SSL-Client-Cert": value, "X-Forwarded-For": xff}
    r = c.get("/whoami", headers=forged, environ_base=env(peer=STRANGER))
    assert (r.status_code, json.loads(r.data)["code"]) == (401, "untrusted_forwarder")
    r = c.get("/echo-header", headers=forged, environ_base=env(peer=STRANGER))
    assert r.get_json() == {"value": None}
    # the proxy itself, whatever X-Forwarded-For names, is still the trusted peer
    sent = {"X-SSL-Client-Cert": value, "X-Forwarded-For": STRANGER}
    r = c.get("/whoami", headers=sent, environ_base=env(peer=PROXY))
    assert r.get_json() == {"cn": "ledger"}
