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
import sys
from pathlib import Path

import pytest
from test_servers import (  # the shared server helpers of tests/e2e/test_servers.py
    DIRECT,
    GUNICORN_CONF,
    _free_port,
    app_env,
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
