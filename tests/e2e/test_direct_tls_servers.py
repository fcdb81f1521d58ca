"""Direct TLS on the other popular Python servers: what reaches the app, measured.

Each row of the table in docs/direct-tls.md comes from a test here or in test_servers.py.
Supported: uvicorn's httptools protocol (``MTLSHttpToolsProtocol``) and gunicorn's gevent
worker (the gevent ``SSLSocket`` in ``environ["gunicorn.socket"]``). Not supported, because
the server never hands the peer certificate to the app: hypercorn, granian and daphne. For
those the tests pin down that a *good* certificate still ends in ``certificate_missing``
(the app cannot see it), so the documentation cannot drift from what the servers do.
"""

from __future__ import annotations

import importlib.util
import shutil
import ssl
import sys
from pathlib import Path

import httpx
import pytest
from test_servers import (  # the shared server helpers of tests/e2e/test_servers.py
    DIRECT,
    GUNICORN_CONF,
    TLS_REFUSED,
    _free_port,
    app_env,
    argv_for,
    call,
    outcomes,
    serve,
)

pytestmark = pytest.mark.e2e


def _needs(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed in this environment")


def test_uvicorn_httptools(pki, clients, tmp_path) -> None:
    _needs("httptools")
    port = _free_port()
    env = {**app_env(pki, port, tls=True), "MTLS_UVICORN_HTTP": "httptools"}
    with serve([sys.executable, "fastapi_app.py"], env, tmp_path, port):
        got = outcomes(f"https://127.0.0.1:{port}/whoami", pki, clients)
    assert got == DIRECT


def test_gunicorn_gevent_worker(pki, clients, tmp_path) -> None:
    _needs("gevent")
    if shutil.which("gunicorn", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("gunicorn is not installed in this environment")
    port = _free_port()
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(GUNICORN_CONF + '\nworker_class = "gevent"\n')
    argv = [sys.executable, "-m", "gunicorn", "-c", str(conf), "flask_app:create_app()"]
    with serve(argv, app_env(pki, port, tls=True), tmp_path, port):
        got = outcomes(f"https://127.0.0.1:{port}/whoami", pki, clients)
    assert got == DIRECT


def _argv(server: str, pki, port: int) -> list[str]:
    py = sys.executable
    if server == "hypercorn":
        _needs("hypercorn")
        return [
            py, "-m", "hypercorn", "--certfile", pki["server_cert"], "--keyfile", pki["server_key"],
            "--ca-certs", pki["root"], "--verify-mode", "CERT_OPTIONAL",
            "-b", f"127.0.0.1:{port}", "asgi_factory:app",
        ]  # fmt: skip
    if server == "granian":
        _needs("granian")
        return [
            py, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port),
            "--ssl-certificate", pki["server_cert"], "--ssl-keyfile", pki["server_key"],
            "--ssl-ca", pki["root"], "--ssl-client-verify", "asgi_factory:app",
        ]  # fmt: skip
    if server == "daphne":
        _needs("daphne")
        return [
            py, "-m", "daphne", "-e",
            f"ssl:{port}:interface=127.0.0.1:privateKey={pki['server_key']}:certKey={pki['server_cert']}",
            "asgi_factory:app",
        ]  # fmt: skip
    raise AssertionError(server)


@pytest.mark.parametrize("server", ["hypercorn", "granian", "daphne"])
def test_servers_that_never_show_the_certificate(server, pki, clients, tmp_path) -> None:
    port = _free_port()
    (tmp_path / "asgi_factory.py").write_text(
        "import fastapi_app\napp = fastapi_app.create_app()\n"
    )
    env = {**app_env(pki, port, tls=True), "PYTHONPATH": str(tmp_path)}
    examples = Path(__file__).resolve().parents[2] / "examples"
    env["PYTHONPATH"] = f"{tmp_path}:{examples}"
    with serve(_argv(server, pki, port), env, tmp_path, port):
        status, body = call(f"https://127.0.0.1:{port}/whoami", pki["root"], clients["good"])
    # The TLS handshake accepted the good certificate, but the app was never told about it.
    assert (status, body["code"]) == (401, "certificate_missing")


def _forged_header(pki) -> dict[str, str]:
    """The good client's leaf as nginx would forward it ($ssl_client_escaped_cert)."""
    from urllib.parse import quote

    return {"X-SSL-Client-Cert": quote(Path(pki["client_leaf"]).read_text(), safe="")}


def _h2_call(url: str, pki, cert: tuple[str, str], headers: dict[str, str]):
    ctx = ssl.create_default_context(cafile=pki["root"])
    ctx.load_cert_chain(*cert)
    with httpx.Client(verify=ctx, http2=True, http1=False, timeout=10) as c:
        r = c.get(url, headers=headers)
    return r.http_version, r.status_code, r.json().get("code")


@pytest.mark.parametrize("server", ["uvicorn", "gunicorn", "werkzeug", "aiohttp", "hypercorn"])
def test_direct_tls_never_reads_a_header_from_the_client(server, pki, clients, tmp_path) -> None:
    """A direct-TLS client is no trusted proxy, even when the app trusts a proxy elsewhere
    (10.9.9.9): its certificate header is refused without a certificate and unused with
    one, never believed. hypercorn, which shows the app no certificate, is called over
    HTTP/2 (ALPN) too."""
    port = _free_port()
    env = {**app_env(pki, port, tls=True), "MTLS_TRUSTED_PROXIES": "10.9.9.9"}
    url = f"https://127.0.0.1:{port}/whoami"
    forged = _forged_header(pki)
    if server == "hypercorn":
        _needs("h2")
        examples = Path(__file__).resolve().parents[2] / "examples"
        (tmp_path / "asgi_factory.py").write_text(
            "import fastapi_app\napp = fastapi_app.create_app()\n"
        )
        env["PYTHONPATH"] = f"{tmp_path}:{examples}"
        argv = _argv("hypercorn", pki, port)
    else:
        argv = argv_for(server, tmp_path)
    with serve(argv, env, tmp_path, port):
        none = call(url, pki["root"], None, headers=forged)
        other = call(url, pki["root"], clients["wrong_ca"], headers=forged)
        status, body = call(url, pki["root"], clients["good"], headers=forged)
        h2 = _h2_call(url, pki, clients["good"], forged) if server == "hypercorn" else None
    assert (none[0], none[1]["code"]) == (401, "untrusted_forwarder")
    assert other[0] == TLS_REFUSED
    if server == "hypercorn":
        assert (status, body["code"]) == (401, "untrusted_forwarder")
        assert h2 == ("HTTP/2", 401, "untrusted_forwarder")
    else:
        assert (status, body["cn"], body["source"]) == (200, "alice", "tls")


UVICORN_WORKER = """
import os
from uvicorn.workers import UvicornWorker
from mtlsauth import TrustStore, server_ssl_context
from mtlsauth.adapters.uvicorn import MTLSH11Protocol

TRUST = TrustStore.from_pem_file(os.environ["MTLS_CLIENT_CA"])


class MTLSUvicornWorker(UvicornWorker):
    CONFIG_KWARGS = {
        "loop": "asyncio",
        "http": MTLSH11Protocol,
        "ssl_context_factory": lambda config, default: server_ssl_context(
            certfile=os.environ["MTLS_SERVER_CERT"], keyfile=os.environ["MTLS_SERVER_KEY"],
            trust_store=TRUST, mode="optional",
        ),
    }
"""


@pytest.mark.parametrize("worker", ["UvicornWorker", "MTLSUvicornWorker"])
def test_gunicorn_uvicorn_worker(worker, pki, clients, tmp_path) -> None:
    """gunicorn's ``ssl_context`` hook does not apply to uvicorn's worker (it builds its own
    context from ``cert_reqs``/``ca_certs``), and the plain worker shows the app no
    certificate. A subclass that sets ``http`` and ``ssl_context_factory`` does."""
    if shutil.which("gunicorn", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("gunicorn is not installed in this environment")
    port = _free_port()
    (tmp_path / "mtls_worker.py").write_text(UVICORN_WORKER)
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(GUNICORN_CONF + '\nca_certs = os.environ["MTLS_CLIENT_CA"]\ncert_reqs = 1\n')
    klass = (
        "uvicorn.workers.UvicornWorker"
        if worker == "UvicornWorker"
        else "mtls_worker.MTLSUvicornWorker"
    )
    examples = Path(__file__).resolve().parents[2] / "examples"
    env = {**app_env(pki, port, tls=True), "PYTHONPATH": f"{tmp_path}:{examples}"}
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        str(conf),
        "-k",
        klass,
        "fastapi_app:create_app()",
    ]
    with serve(argv, env, tmp_path, port):
        got = outcomes(f"https://127.0.0.1:{port}/whoami", pki, clients)
    if worker == "UvicornWorker":
        assert got == {**DIRECT, "good": (401, "certificate_missing")}
    else:
        assert got == DIRECT
