"""The pytest plugin, exercised the way users meet it: through the pytest11 entry point."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest_plugins = ["pytester"]


@pytest.fixture
def pytester(pytester):
    # The inner runs load every installed plugin, as a user's would; pytest-asyncio warns
    # when this option is unset.
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    return pytester


USER_TESTS = """
import asyncio

import pytest

from mtlsauth import ForwardedCert, Policy, PolicyDenied, Presented, Verifier
from mtlsauth.adapters.asgi import MTLSMiddleware, identity_from_scope


def test_policy_in_five_lines(mtls_ca, client_cert):
    verifier = Verifier(trust_store=mtls_ca.trust_store(), policy=Policy(organizations={"payments"}))
    assert verifier.verify(client_cert(organization="payments").chain_pem.text())
    with pytest.raises(PolicyDenied):
        verifier.verify(client_cert(organization="ads").chain_pem.text())


def test_client_cert_takes_issue_keywords(client_cert):
    cert = client_cert(common_name="ledger", uris=["spiffe://example.org/ns/a/sa/ledger"])
    assert "ledger" in cert.certificate.subject.rfc4514_string()


SEEN = []


def test_ca_is_session_scoped_first(mtls_ca):
    SEEN.append(mtls_ca)


def test_ca_is_session_scoped_second(mtls_ca):
    assert SEEN == [mtls_ca]


@pytest.mark.parametrize(
    "preset", ["nginx", "apache", "haproxy", "envoy", "traefik", "caddy", "aws-alb", "rfc9440"]
)
def test_forwarded_headers(mtls_ca, client_cert, forwarded_headers, preset):
    verifier = Verifier(
        trust_store=mtls_ca.trust_store(),
        forwarded=ForwardedCert.preset(preset, trusted_proxies=["10.0.0.1"]),
    )
    headers = tuple((k.lower(), v) for k, v in forwarded_headers(preset, client_cert(common_name="gw")))
    assert verifier.authenticate(Presented(peer="10.0.0.1", headers=headers)).common_name == "gw"


@pytest.mark.parametrize(("cn", "status"), [("x", 204), (None, 401)])
def test_asgi_tls_scope(mtls_ca, client_cert, asgi_tls_scope, cn, status):
    seen = []

    async def app(scope, receive, send):
        seen.append(identity_from_scope(scope))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    sent = []

    async def send(message):
        sent.append(message)

    middleware = MTLSMiddleware(app, verifier=Verifier(trust_store=mtls_ca.trust_store()))
    cert = client_cert(common_name=cn) if cn else None
    scope = asgi_tls_scope(cert, path="/x?y=1", method="post")
    assert (scope["path"], scope["query_string"], scope["method"]) == ("/x", b"y=1", "POST")
    asyncio.run(middleware(scope, receive, send))
    assert sent[0]["status"] == status
    assert [w.common_name for w in seen] == ([cn] if cn else [])


def test_unknown_preset_is_a_clear_error(client_cert, forwarded_headers):
    with pytest.raises(ValueError, match="unknown preset or encoding 'nginxx'"):
        forwarded_headers("nginxx", client_cert())
"""


def test_fixtures_work_through_the_entry_point(pytester):
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:benchmark", "-W", "error")
    result.assert_outcomes(passed=15)


def test_entry_point_and_fixture_docs():
    from importlib.metadata import entry_points

    from mtlsauth import pytest_plugin

    (ep,) = [e for e in entry_points(group="pytest11") if e.name == "mtlsauth"]
    assert ep.value == "mtlsauth.pytest_plugin"
    for name in ("mtls_ca", "client_cert", "forwarded_headers", "asgi_tls_scope"):
        assert getattr(pytest_plugin, name).__doc__  # shown by `pytest --fixtures`


def test_import_mtlsauth_does_not_import_pytest():
    code = "import sys, mtlsauth, mtlsauth.testing; print('pytest' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False"
