"""A CA bundle (root + intermediate) with CRLs: mtlsauth refuses what nginx refuses.

nginx (OpenSSL, no partial chains) validates every chain up to the self-signed root, so a
root CRL that lists the intermediate refuses its clients whether the trust file holds the
root alone or the root and the intermediate. mtlsauth must agree with both trust files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mtlsauth import CRLSet, MTLSAuthError, TrustStore, Verifier
from mtlsauth.testing import CA


def _nginx_conf(tmp: Path, port: int, pki: Any, trust: Path, crl: Path, is_root: bool) -> Path:
    conf = tmp / "nginx.conf"
    conf.write_text(
        f"""
{"user root;" if is_root else ""}
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
events {{ worker_connections 16; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {pki["server_cert"]};
        ssl_certificate_key {pki["server_key"]};
        ssl_client_certificate {trust};
        ssl_crl {crl};
        ssl_verify_client on;
        ssl_verify_depth 3;
        location / {{ return 200 "admitted"; }}
    }}
}}
"""
    )
    return conf


@pytest.mark.e2e
@pytest.mark.parametrize("bundle", [False, True], ids=["root only", "root + intermediate"])
def test_revoked_intermediate_refused_like_nginx(
    pki: Any, proxy_tools: Any, tmp_path: Path, bundle: bool
) -> None:
    nginx = proxy_tools.require_binary("/usr/sbin/nginx")
    proxy_tools.require_binary("curl")
    import subprocess

    root = CA(organization="bundle e2e")
    revoked, good = root.intermediate(), root.intermediate()
    clients = {
        "revoked": revoked.issue_client_cert(common_name="mallory"),
        "good": good.issue_client_cert(common_name="alice"),
    }
    crl = tmp_path / "crl.pem"
    crl.write_bytes(
        root.revoke(revoked.certificate).bytes() + revoked.crl().bytes() + good.crl().bytes()
    )
    trust = tmp_path / "trust.pem"
    trust.write_bytes(
        root.cert_pem.bytes()
        + (revoked.cert_pem.bytes() + good.cert_pem.bytes() if bundle else b"")
    )
    (tmp_path / "body").mkdir()
    port = proxy_tools.free_port()
    conf = _nginx_conf(tmp_path, port, pki, trust, crl, proxy_tools.is_root)
    verifier = Verifier(
        trust_store=TrustStore.from_pem_file(trust), revocation=CRLSet.from_paths(crl), cache_size=0
    )
    nginx_says: dict[str, int] = {}
    ours: dict[str, str] = {}
    with proxy_tools.run_proxy(
        [nginx, "-p", str(tmp_path), "-c", str(conf), "-g", "daemon off;"], port, tmp_path
    ):
        for name, cert in clients.items():
            chain = cert.chain_pem.write_to_path(tmp_path / f"{name}.pem")
            key = cert.key_pem.write_to_path(tmp_path / f"{name}.key")
            done = subprocess.run(
                ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10",
                 "--cacert", pki["root"], "--resolve", f"localhost:{port}:127.0.0.1",
                 "--cert", str(chain), "--key", str(key), f"https://localhost:{port}/"],
                capture_output=True, timeout=20, check=False,
            )  # fmt: skip
            nginx_says[name] = int(done.stdout or 0)
            try:
                verifier.verify(cert.chain_pem.text())
                ours[name] = "accepted"
            except MTLSAuthError as exc:
                ours[name] = exc.code
    assert nginx_says == {"revoked": 400, "good": 200}
    assert ours == {"revoked": "certificate_revoked", "good": "accepted"}
