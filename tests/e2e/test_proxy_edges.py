"""Edge cases through real nginx, Apache httpd, HAProxy and Caddy, one process each per module.

A client chain of a leaf and two intermediates; a TLS session resumed by the same client
(Apache's ``SSL_CLIENT_CERT_CHAIN_n`` and HAProxy's ``ssl_c_chain_der`` are empty then); and
nginx's and Apache's other certificate variables (``$ssl_client_cert`` tab-folded,
``$ssl_client_raw_cert`` with bare line feeds, ``%{escape:...}`` with lower-case hex). Each
proxy asks for a certificate without insisting on a trusted one, so what it forwards is
exactly what mtlsauth must judge.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mtlsauth import ForwardedCert, Verifier
from mtlsauth.testing import ClientCert

pytestmark = pytest.mark.e2e


@dataclass
class Live:
    backend: Any
    urls: dict[str, str]
    root: str
    deep: ClientCert
    files: dict[str, tuple[str, str]]


def _nginx(tmp: Path, port: int, backend: int, pki: Any, tools: Any) -> list[str]:
    conf = tools.nginx_config(
        tmp,
        f"""    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {pki["server_cert"]};
        ssl_certificate_key {pki["server_key"]};
        ssl_client_certificate {pki["root"]};
        ssl_verify_client optional_no_ca;
        ssl_verify_depth 4;
        ssl_session_cache shared:edges:1m;
        location / {{
            proxy_pass http://127.0.0.1:{backend};
            proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert;
            proxy_set_header X-SSL-Client-Cert-Folded $ssl_client_cert;
            proxy_set_header X-TLS-Resumed $ssl_session_reused;
        }}
        location /raw {{
            proxy_pass http://127.0.0.1:{backend};
            proxy_set_header X-SSL-Client-Cert-Raw $ssl_client_raw_cert;
        }}
    }}""",
    )
    return ["/usr/sbin/nginx", "-p", str(tmp), "-c", str(conf), "-g", "daemon off;"]


def _apache(tmp: Path, port: int, backend: int, pki: Any, tools: Any) -> list[str]:
    """Apache as Debian's ssl.conf sets it up: with a session cache, so sessions resume."""
    lines = ['    RequestHeader set X-SSL-Client-Cert "%{SSL_CLIENT_CERT}s"']
    lines += [
        f'    RequestHeader set X-SSL-Client-Cert-Chain-{i} "%{{SSL_CLIENT_CERT_CHAIN_{i}}}s"'
        for i in range(3)
    ]
    lines.append(
        '    RequestHeader set X-SSL-Client-Cert-Escaped "expr=%{escape:%{SSL_CLIENT_CERT}}"'
    )
    conf = tools.apache_config(
        tmp, port, backend, pki, verify_depth=4, headers="\n".join(lines), session_cache=True
    )
    return ["/usr/sbin/apache2", "-X", "-f", str(conf)]


@pytest.fixture(scope="module")
def live(pki: Any, proxy_tools: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    tools = proxy_tools
    tools.require_binary("curl")
    tmp = tmp_path_factory.mktemp("proxy-edges")
    tmp.chmod(0o755)
    inter2 = pki.intermediate.intermediate(common_name="Edge Intermediate Two")
    deep = inter2.issue_client_cert(common_name="deep", dns_names=["deep.example"])
    files: dict[str, tuple[str, str]] = {}
    for name, who in (("deep", deep), ("alice", pki.client)):
        cert = who.chain_pem.write_to_path(tmp / f"{name}.pem")
        key = who.key_pem.write_to_path(tmp / f"{name}.key")
        files[name] = (str(cert), str(key))
    builders = {
        "nginx": lambda *a: _nginx(*a, tools),
        "apache": lambda *a: _apache(*a, tools),
    }
    with contextlib.ExitStack() as stack:
        be = stack.enter_context(tools.serve_backend())
        urls = tools.start_proxies(stack, tmp, be.port, pki, builders)
        yield Live(be, urls, pki["root"], deep, files)


def _get(live: Live, url: str, who: str | None, *, twice: bool = False) -> list[dict[str, Any]]:
    """GET ``url`` (twice in one curl process when ``twice``: the second resumes the TLS
    session); the backend's JSON answers, in order."""
    host = url.split("://")[1].split("/")[0]
    argv = ["curl", "-sS", "--max-time", "10", "--cacert", live.root]
    argv += ["--resolve", f"{host}:127.0.0.1", "-H", "Connection: close", "-w", "\n"]
    if who:
        argv += ["--cert", live.files[who][0], "--key", live.files[who][1]]
    done = subprocess.run(
        [*argv, url, *([url] if twice else [])], capture_output=True, timeout=30, check=True
    )
    return [json.loads(line) for line in done.stdout.decode().splitlines() if line.strip()]


def _verifier(
    pki: Any,
    name: str,
    intermediates: tuple[bytes, ...] = (),
    cache_size: int = 10_000,
    **fields: Any,
) -> Any:
    forwarded = ForwardedCert.preset(name, trusted_proxies=["127.0.0.1"], **fields)
    return Verifier(
        trust_store=pki.root.trust_store(),
        forwarded=forwarded,
        intermediates=intermediates,
        cache_size=cache_size,
    ).authenticate


def _intermediates(live: Live) -> tuple[bytes, ...]:
    return live.deep.chain_der[1:]


@pytest.mark.parametrize("name", ["nginx", "apache", "haproxy", "caddy"])
def test_leaf_and_two_intermediates(name, live, pki):
    """Apache (``CHAIN_0``, ``CHAIN_1``) and HAProxy (both in one DER blob) forward the two
    intermediates; nginx and Caddy forward the leaf alone and need ``intermediates=``."""
    forwards_chain = name in ("apache", "haproxy")
    live.backend.authenticate = _verifier(pki, name)
    [reply] = _get(live, live.urls[name] + "/", "deep")
    if forwards_chain:
        assert (reply["status"], reply["common_name"]) == (200, "deep"), reply
    else:
        assert reply["code"] == "untrusted_issuer", reply
    live.backend.authenticate = _verifier(pki, name, _intermediates(live))
    [reply] = _get(live, live.urls[name] + "/", "deep")
    assert (reply["status"], reply["common_name"]) == (200, "deep"), reply


@pytest.mark.parametrize("name", ["apache", "haproxy"])
def test_resumed_session_forwards_no_intermediates(name, live, pki):
    """On a resumed TLS session Apache's ``SSL_CLIENT_CERT_CHAIN_n`` are ``(null)`` and
    HAProxy's ``ssl_c_chain_der`` is empty (OpenSSL keeps only the leaf in the session):
    without ``intermediates=`` the second request is refused, never let through; with them
    both pass. (A cached verification of the same leaf covers the resumed request only in
    the process that made it, and only for ``cache_ttl``: the cache is off here.)"""
    chain_header = "x-ssl-client-cert-chain-0" if name == "apache" else "x-ssl-client-chain"
    live.backend.authenticate = _verifier(pki, name, cache_size=0)
    first, second = _get(live, live.urls[name] + "/", "deep", twice=True)
    assert first["status"] == 200, first
    assert (second["status"], second["code"]) == (401, "untrusted_issuer"), second
    assert live.backend.last_header(chain_header) == ["(null)" if name == "apache" else ""]
    live.backend.authenticate = _verifier(pki, name, _intermediates(live), cache_size=0)
    replies = _get(live, live.urls[name] + "/", "deep", twice=True)
    assert [r["common_name"] for r in replies] == ["deep", "deep"], replies


def test_nginx_resumed_session_still_forwards_the_leaf(live, pki):
    """nginx forwards the leaf alone in any case, and still does on a resumed session
    (``$ssl_session_reused`` is ``r``; nginx resumes client-verified sessions only with an
    ``ssl_session_cache``): with ``intermediates=`` both requests pass."""
    live.backend.authenticate = _verifier(pki, "nginx", _intermediates(live), cache_size=0)
    replies = _get(live, live.urls["nginx"] + "/", "deep", twice=True)
    assert [r["common_name"] for r in replies] == ["deep", "deep"], replies
    first, second = ({k.lower(): v for k, v in h} for h in live.backend.seen[-2:])
    assert first["x-ssl-client-cert"] == second["x-ssl-client-cert"]
    assert (first["x-tls-resumed"], second["x-tls-resumed"]) == (".", "r")


def test_nginx_folded_cert_is_read(live, pki):
    """``$ssl_client_cert`` (deprecated): the PEM with LF + TAB folds, as Python's HTTP
    parser keeps them; the ``pem`` encoding reads it."""
    live.backend.authenticate = _verifier(
        pki, "nginx", _intermediates(live), header="X-SSL-Client-Cert-Folded", encoding="pem"
    )
    [reply] = _get(live, live.urls["nginx"] + "/", "deep")
    assert (reply["status"], reply["common_name"]) == (200, "deep"), reply
    assert "\n\t" in live.backend.last_header("x-ssl-client-cert-folded")[0]


def test_nginx_raw_cert_is_never_accepted(live, pki):
    """``$ssl_client_raw_cert`` puts bare line feeds in the header: the app receives only
    ``-----BEGIN CERTIFICATE-----`` and refuses it as malformed."""
    live.backend.authenticate = _verifier(
        pki, "nginx", _intermediates(live), header="X-SSL-Client-Cert-Raw", encoding="pem"
    )
    [reply] = _get(live, live.urls["nginx"] + "/raw", "deep")
    assert (reply["status"], reply["code"]) == (401, "certificate_malformed"), reply
    assert live.backend.last_header("x-ssl-client-cert-raw") == ["-----BEGIN CERTIFICATE-----"]


def test_apache_escape_form(live, pki):
    """``expr=%{escape:%{SSL_CLIENT_CERT}}``: lower-case hex escapes (``%0a``), ``+ / =``
    raw; an empty value without a certificate (not ``(null)``)."""
    live.backend.authenticate = _verifier(
        pki,
        "apache",
        _intermediates(live),
        header="X-SSL-Client-Cert-Escaped",
        encoding="url-pem",
        chain_header=None,
    )
    [reply] = _get(live, live.urls["apache"] + "/", "deep")
    assert (reply["status"], reply["common_name"]) == (200, "deep"), reply
    value = live.backend.last_header("x-ssl-client-cert-escaped")[0]
    assert "%0a" in value
    assert "%0A" not in value
    [reply] = _get(live, live.urls["apache"] + "/", None)
    assert reply["code"] == "certificate_missing", reply
    assert live.backend.last_header("x-ssl-client-cert-escaped") == [""]


def test_haproxy_oversized_leaf_alone_reads_as_no_certificate(live, pki, tmp_path):
    """A leaf whose base64 does not fit HAProxy's 16 KB buffer (``tune.bufsize``), presented
    without intermediates: both headers arrive empty, so the request reads as one without a
    certificate (``certificate_missing``, anonymous where the mode is optional), never as an
    authenticated one. With an intermediate, the non-empty chain header gives it away and it
    is refused as malformed (``test_proxies.py``)."""
    big = pki.intermediate.issue_client_cert(
        common_name="big",
        dns_names=[f"host-{i:03d}.a-rather-long-subdomain-label.example.com" for i in range(400)],
    )
    assert len(big.der) > 16384 * 3 // 4  # its base64 is over 16 KB
    cert = big.cert_pem.write_to_path(tmp_path / "big.pem")
    key = big.key_pem.write_to_path(tmp_path / "big.key")
    live.files["big"] = (str(cert), str(key))
    live.backend.authenticate = _verifier(pki, "haproxy", (pki.intermediate.cert_pem.bytes(),))
    [reply] = _get(live, live.urls["haproxy"] + "/", "big")
    assert (reply["status"], reply["code"]) == (401, "certificate_missing"), reply
    assert live.backend.last_header("x-ssl-client-cert") == [""]
    assert live.backend.last_header("x-ssl-client-chain") == [""]
    assert live.backend.last_header("x-ssl-client-used") == ["1"]
