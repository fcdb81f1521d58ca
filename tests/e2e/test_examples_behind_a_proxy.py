"""The shipped uvicorn examples behind a proxy, run as a user runs them.

Both run uvicorn with its defaults unless told otherwise, and uvicorn's proxy-headers
handling replaces the socket peer with the ``X-Forwarded-For`` address for every peer in
``FORWARDED_ALLOW_IPS``, an environment variable containers often set to ``*``. A client
that reaches the app directly then names the proxy's address and sends a certificate
header of its choosing (a certificate is public: no key is needed to forward one). The
examples must leave the peer as the socket saw it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from conftest import PKI, free_port, serve_process

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PROXY = "10.255.255.1"  # the proxy the app trusts; the test client is 127.0.0.1


@pytest.mark.parametrize(
    ("example", "path", "extra"),
    [
        ("fastapi_app.py", "/whoami", {}),
        (
            "oauth_mtls.py",
            "/status",  # the resource server's route that needs a certificate only
            {
                "OAUTH_ROLE": "rs",
                "OAUTH_ISSUER": "https://127.0.0.1:9/",
                "OAUTH_JWKS_URL": "https://127.0.0.1:9/jwks",
            },
        ),
    ],
)
def test_a_client_cannot_name_the_proxy_in_x_forwarded_for(
    pki: PKI, tmp_path: Path, example: str, path: str, extra: dict[str, str]
) -> None:
    port = free_port()
    env = {
        "MTLS_CLIENT_CA": pki["root"],
        "MTLS_INTERMEDIATES": pki["intermediate"],
        "MTLS_TRUSTED_PROXIES": PROXY,
        "FORWARDED_ALLOW_IPS": "*",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        **extra,
    }
    with serve_process(
        [sys.executable, str(EXAMPLES / example)],
        env,
        tmp_path / "server.log",
        port,
        cwd=tmp_path,
    ):
        forged = {
            "X-Forwarded-For": PROXY,
            "X-SSL-Client-Cert": quote(pki.client.cert_pem.bytes().decode(), safe=""),
        }
        r = httpx.get(f"http://127.0.0.1:{port}{path}", headers=forged, timeout=10)
    assert r.status_code == 401, r.text
    assert r.json()["code"] == "untrusted_forwarder"
