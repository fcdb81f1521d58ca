"""Real servers on 127.0.0.1 with real TLS, running the examples in examples/.

Direct TLS: uvicorn (with MTLSH11Protocol), gunicorn, werkzeug and aiohttp each terminate
TLS with ``server_ssl_context(mode="optional")`` and the app runs mtlsauth in mandatory mode.
Behind nginx: each adapter's example runs on plain HTTP and trusts 127.0.0.1 as its proxy.
Each is called by an httpx client presenting a good, a wrong-CA, an expired and no
certificate; what each server actually did is asserted (see docs/direct-tls.md).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from conftest import serve_process

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
TLS_REFUSED = "tls_refused"  # the handshake (or the first read after it) failed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Port:
    port: int  # the shape start_proxy() needs from a backend


@contextlib.contextmanager
def serve(argv: list[str], env: dict[str, str], workdir: Path, port: int) -> Iterator[None]:
    """Run a server subprocess (in examples/) until ``port`` accepts TCP; stop it afterwards."""
    with serve_process(argv, env, workdir / f"server-{port}.log", port, cwd=EXAMPLES):
        yield


def call(
    url: str, cacert: str, cert: tuple[str, str] | None, headers: dict[str, str] | None = None
):
    """GET url; return (status, json body) or (TLS_REFUSED, exception name)."""
    ctx = ssl.create_default_context(cafile=cacert)
    if cert is not None:
        ctx.load_cert_chain(*cert)
    try:
        with httpx.Client(verify=ctx, timeout=10) as c:
            r = c.get(url, headers=headers)
    except (
        httpx.ConnectError,
        httpx.ReadError,
        httpx.RemoteProtocolError,
        httpx.WriteError,
    ) as exc:
        return TLS_REFUSED, type(exc).__name__
    try:
        return r.status_code, r.json()
    except ValueError:
        return r.status_code, {"raw": r.text}


def outcomes(url: str, pki, clients) -> dict[str, object]:
    out: dict[str, object] = {}
    for name, cert in clients.items():
        status, body = call(url, pki["root"], cert)
        out[name] = (
            status if not isinstance(body, dict) or status == 200 else (status, body.get("code"))
        )
        if status == 200:
            out[name] = (200, body.get("cn"))
    return out


def app_env(pki, port: int, *, tls: bool) -> dict[str, str]:
    env = {
        "MTLS_CLIENT_CA": pki["root"],
        # Python < 3.13 hands over the leaf only, and nginx forwards the leaf only.
        "MTLS_INTERMEDIATES": pki["intermediate"],
        "MTLS_MODE": "mandatory",
        "PORT": str(port),
        "HOST": "127.0.0.1",
    }
    if tls:
        env |= {
            "MTLS_SERVER_CERT": pki["server_cert"],
            "MTLS_SERVER_KEY": pki["server_key"],
            "MTLS_TLS_MODE": "optional",
        }
    else:
        env["MTLS_TRUSTED_PROXIES"] = "127.0.0.1"
    return env


GUNICORN_CONF = """
import os
from mtlsauth import TrustStore
from mtlsauth._sslcontext import server_ssl_context

bind = "127.0.0.1:" + os.environ["PORT"]
workers = 1
certfile = os.environ.get("MTLS_SERVER_CERT")
keyfile = os.environ.get("MTLS_SERVER_KEY")
loglevel = "warning"

def ssl_context(conf, default_ssl_context_factory):
    return server_ssl_context(
        certfile=conf.certfile,
        keyfile=conf.keyfile,
        trust_store=TrustStore.from_pem_file(os.environ["MTLS_CLIENT_CA"]),
        mode="optional",
    )
"""


def argv_for(server: str, workdir: Path) -> list[str]:
    py = sys.executable
    if server == "uvicorn":
        return [py, "fastapi_app.py"]
    if server == "werkzeug":
        return [py, "flask_app.py"]
    if server == "aiohttp":
        return [py, "aiohttp_app.py"]
    if server == "gunicorn":
        if shutil.which("gunicorn", path=str(Path(py).parent)) is None:
            pytest.skip("gunicorn is not installed in this environment")
        conf = workdir / "gunicorn.conf.py"
        conf.write_text(GUNICORN_CONF)
        return [py, "-m", "gunicorn", "-c", str(conf), "flask_app:create_app()"]
    raise AssertionError(server)


# What each server did, measured: with CERT_OPTIONAL, OpenSSL still verifies a certificate
# that *is* sent, so a wrong-CA or expired certificate fails the handshake and never reaches
# the app; no certificate reaches the app, which refuses it (mandatory mode) as problem+json.
DIRECT = {
    "good": (200, "alice"),
    "wrong_ca": TLS_REFUSED,
    "expired": TLS_REFUSED,
    "none": (401, "certificate_missing"),
}


@pytest.mark.parametrize("server", ["uvicorn", "gunicorn", "werkzeug", "aiohttp"])
def test_direct_tls(server, pki, clients, tmp_path) -> None:
    port = _free_port()
    with serve(argv_for(server, tmp_path), app_env(pki, port, tls=True), tmp_path, port):
        got = outcomes(f"https://127.0.0.1:{port}/whoami", pki, clients)
        status, body = call(f"https://127.0.0.1:{port}/healthz", pki["root"], None)
    assert got == DIRECT
    assert (status, body) == (200, {"status": "up"})


def test_uvicorn_without_protocol_class_sees_no_certificate(pki, clients, tmp_path) -> None:
    """Plain uvicorn requires the certificate at TLS level but never shows it to the app."""
    port = _free_port()
    code = (
        "import os, uvicorn, fastapi_app\n"
        "uvicorn.run(fastapi_app.create_app(), host='127.0.0.1', port=int(os.environ['PORT']),"
        " ssl_certfile=os.environ['MTLS_SERVER_CERT'], ssl_keyfile=os.environ['MTLS_SERVER_KEY'],"
        " ssl_ca_certs=os.environ['MTLS_CLIENT_CA'], ssl_cert_reqs=1, log_level='warning')\n"
    )
    with serve([sys.executable, "-c", code], app_env(pki, port, tls=True), tmp_path, port):
        status, body = call(f"https://127.0.0.1:{port}/whoami", pki["root"], clients["good"])
    assert (status, body["code"]) == (401, "certificate_missing")


# Behind nginx (ssl_verify_client optional_no_ca, $ssl_client_escaped_cert, leaf only):
# the wrong-CA certificate is forwarded and refused by mtlsauth; the expired one is refused
# by nginx itself with a 400 page (optional_no_ca tolerates unknown issuers, not expiry).
BEHIND_NGINX = {
    "good": (200, "alice"),
    "wrong_ca": (401, "untrusted_issuer"),
    "expired": (400, None),  # nginx's own HTML error page, no problem+json
    "none": (401, "certificate_missing"),
}


@pytest.mark.parametrize(
    ("server", "argv"),
    [
        ("fastapi", ["fastapi_app.py"]),
        ("flask", ["flask_app.py"]),
        ("aiohttp", ["aiohttp_app.py"]),
    ],
)
def test_behind_nginx(server, argv, pki, clients, start_proxy, tmp_path) -> None:
    port = _free_port()
    with serve([sys.executable, *argv], app_env(pki, port, tls=False), tmp_path, port):
        proxy = start_proxy("nginx", Port(port))
        got = outcomes(f"{proxy.url}/whoami", pki, clients)
        # a client-sent header is overwritten (or dropped) by nginx, never believed
        forged = {"X-SSL-Client-Cert": "-----BEGIN CERTIFICATE-----forged"}
        status, body = call(f"{proxy.url}/whoami", pki["root"], None, headers=forged)
        _, good_body = call(f"{proxy.url}/whoami", pki["root"], clients["good"])
    assert got == BEHIND_NGINX
    assert (status, body["code"]) == (401, "certificate_missing")
    assert good_body["source"] == "header:X-SSL-Client-Cert"
