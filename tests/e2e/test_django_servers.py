"""A real Django project (examples/django_project) under real servers on 127.0.0.1.

gunicorn (WSGI) and uvicorn (ASGI, with ``MTLSH11Protocol``) terminate TLS themselves, and
gunicorn runs behind a real nginx that forwards the certificate; an httpx client presents a
good, a wrong-CA, an expired and no certificate. The same project answers the DRF view, and
``MTLSBackend`` maps the certificate's common name to a Django user it creates.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_servers import (  # the shared server helpers of tests/e2e/test_servers.py
    BEHIND_NGINX,
    DIRECT,
    Port,
    _free_port,
    call,
    outcomes,
    serve,
)

pytestmark = pytest.mark.e2e
pytest.importorskip("django")
pytest.importorskip("rest_framework")

PROJECT = Path(__file__).resolve().parents[2] / "examples" / "django_project"

GUNICORN_CONF = """
import os
from mtlsauth import TrustStore, server_ssl_context

bind = "127.0.0.1:" + os.environ["PORT"]
workers = 1
worker_class = os.environ.get("WORKER_CLASS", "sync")
threads = 2 if worker_class == "gthread" else 1
loglevel = "warning"
if os.environ.get("MTLS_SERVER_CERT"):
    certfile = os.environ["MTLS_SERVER_CERT"]
    keyfile = os.environ["MTLS_SERVER_KEY"]

    def ssl_context(conf, default_ssl_context_factory):
        return server_ssl_context(
            certfile=conf.certfile,
            keyfile=conf.keyfile,
            trust_store=TrustStore.from_pem_file(os.environ["MTLS_CLIENT_CA"]),
            mode="optional",
        )
"""


@pytest.fixture(scope="module")
def project(pki, tmp_path_factory) -> dict[str, str]:
    """The example project's environment, with its database migrated."""
    d = tmp_path_factory.mktemp("django-site")
    inherited = os.environ.get("PYTHONPATH")
    env = {
        "PYTHONPATH": os.pathsep.join(p for p in (str(PROJECT), inherited) if p),
        "DJANGO_SETTINGS_MODULE": "mysite.settings",
        "MTLS_CLIENT_CA": pki["root"],
        "MTLS_INTERMEDIATES": pki["intermediate"],
        "MTLS_DB": str(d / "db.sqlite3"),
        "MTLS_CREATE_USERS": "1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "django", "migrate", "--noinput", "-v", "0"],
        env={**os.environ, **env},
        cwd=PROJECT,
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return env


def _tls_env(pki) -> dict[str, str]:
    return {"MTLS_SERVER_CERT": pki["server_cert"], "MTLS_SERVER_KEY": pki["server_key"]}


def _gunicorn(tmp_path: Path, target: str) -> list[str]:
    if shutil.which("gunicorn", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("gunicorn is not installed in this environment")
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(GUNICORN_CONF)
    return [sys.executable, "-m", "gunicorn", "-c", str(conf), target]


def _uvicorn(pki) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", "mysite.asgi:application",
        "--http", "mtlsauth.adapters.uvicorn:MTLSH11Protocol",
        "--ssl-certfile", pki["server_cert"], "--ssl-keyfile", pki["server_key"],
        "--ssl-ca-certs", pki["root"], "--ssl-cert-reqs", "1",
        "--no-proxy-headers", "--log-level", "warning",
    ]  # fmt: skip


@pytest.mark.parametrize("server", ["gunicorn-sync", "gunicorn-gthread", "uvicorn-asgi"])
def test_django_direct_tls(server, project, pki, clients, tmp_path) -> None:
    port = _free_port()
    env = {**project, **_tls_env(pki), "PORT": str(port)}
    if server == "uvicorn-asgi":
        argv = [*_uvicorn(pki), "--host", "127.0.0.1", "--port", str(port)]
    else:
        env["WORKER_CLASS"] = server.split("-")[1]
        argv = _gunicorn(tmp_path, "mysite.wsgi:application")
    with serve(argv, env, tmp_path, port):
        got = outcomes(f"https://127.0.0.1:{port}/whoami", pki, clients)
        status, body = call(f"https://127.0.0.1:{port}/api/who", pki["root"], clients["good"])
        health = call(f"https://127.0.0.1:{port}/healthz", pki["root"], None)
        anon = call(f"https://127.0.0.1:{port}/api/who", pki["root"], None)
    assert got == DIRECT
    assert (status, body) == (200, {"cn": "alice", "user": "alice", "source": "tls"})
    assert health == (200, {"status": "up"})
    assert anon[0] == 401


def test_django_behind_nginx(project, pki, clients, start_proxy, tmp_path) -> None:
    port = _free_port()
    env = {**project, "PORT": str(port), "MTLS_TRUSTED_PROXIES": "127.0.0.1"}
    with serve(_gunicorn(tmp_path, "mysite.wsgi:application"), env, tmp_path, port):
        proxy = start_proxy("nginx", Port(port))
        got = outcomes(f"{proxy.url}/whoami", pki, clients)
        forged = {"X-SSL-Client-Cert": "-----BEGIN CERTIFICATE-----forged"}
        forged_status, forged_body = call(f"{proxy.url}/whoami", pki["root"], None, forged)
        status, body = call(f"{proxy.url}/api/who", pki["root"], clients["good"])
    assert got == BEHIND_NGINX
    assert (forged_status, forged_body["code"]) == (401, "certificate_missing")
    assert (status, body) == (
        200,
        {"cn": "alice", "user": "alice", "source": "header:X-SSL-Client-Cert"},
    )


def test_forged_header_straight_to_django_is_refused(project, pki, tmp_path) -> None:
    """A client that reaches gunicorn around the proxy (from an untrusted address)."""
    port = _free_port()
    env = {**project, "PORT": str(port), "MTLS_TRUSTED_PROXIES": "10.9.9.9"}
    with serve(_gunicorn(tmp_path, "mysite.wsgi:application"), env, tmp_path, port):
        from urllib.parse import quote

        import httpx

        forged = quote(pki.client.cert_pem.bytes().decode(), safe="")
        r = httpx.get(
            f"http://127.0.0.1:{port}/whoami", headers={"X-SSL-Client-Cert": forged}, timeout=10
        )
    assert (r.status_code, r.json()["code"]) == (401, "untrusted_forwarder")
