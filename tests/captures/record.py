"""Record what real proxies forward for edge-case client certificates: ``proxies.json``.

Run from the repository root with the Debian packages installed (nginx-light, apache2,
haproxy, caddy)::

    .venv/bin/python tests/captures/record.py

Each proxy ends TLS on 127.0.0.1 without insisting on a trusted certificate
(``optional_no_ca`` and the like, so impostors are forwarded too) and forwards every
certificate variable it has to a raw TCP backend, which keeps the request head byte for
byte. The file holds the chains the clients presented and, per proxy and client, the header
fields as they arrived. ``tests/test_proxy_captures.py`` replays them through mtlsauth's
decoders. Envoy and Traefik are not packaged here: their values are rebuilt by
``reconstructed()`` from their source code (named there), not recorded.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import json
import socket
import subprocess
import sys
import threading
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any
from urllib.parse import quote

from cryptography import x509
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT / "src"))

from mtlsauth.testing import CA, ClientCert, self_signed_client_cert  # noqa: E402
from mtlsauth.testing._encode import encode_element  # noqa: E402


def _e2e() -> Any:
    spec = importlib.util.spec_from_file_location("e2e_conftest", ROOT / "tests/e2e/conftest.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["e2e_conftest"] = module
    spec.loader.exec_module(module)
    return module


class RawBackend:
    """Answers 200 to anything and keeps each request head exactly as received."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.heads: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            conn, _ = self.sock.accept()
            with conn:
                conn.settimeout(5)
                data = b""
                with contextlib.suppress(OSError):
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                self.heads.append(data)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


def fields(head: bytes) -> list[list[str]]:
    """The ``X-*`` fields of a request head: name and the value after ``": "`` as sent."""
    out = []
    for line in head.split(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        name, _, value = line.decode("latin-1").partition(":")
        if name.lower().startswith("x-") and not name.lower().startswith("x-forwarded-"):
            out.append([name, value[1:] if value.startswith(" ") else value])
    return out


def clients(inter: CA) -> dict[str, ClientCert]:
    """Edge-case clients; each presents its leaf and every intermediate below the root."""
    special = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "Bmp Zoë 日本", _type=_ASN1Type.BMPString),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, 'A, "B" + C = D \\ E; <F>'),
        ]
    )
    big = inter.issue_client_cert(
        common_name="big",
        key_type="rsa4096",
        dns_names=[f"host-{i:03d}.a-rather-long-subdomain-label.example.com" for i in range(120)],
    )
    return {
        "deep": inter.issue_client_cert(common_name="deep", dns_names=["deep.example"]),
        "special": inter.issue_client_cert(subject=special, dns_names=["s.example"]),
        "utf8": inter.issue_client_cert(
            common_name='Zoë Ünïcødé 日本語 "q", ok', organization="Ärger & Söhne, GmbH"
        ),
        "rsa4096": big,
        "impostor": self_signed_client_cert(common_name="deep"),
    }


# -- the proxies, each forwarding every certificate variable it has --------------------------
def nginx(tmp: Path, port: int, backend: int, files: dict[str, str], e2e: Any) -> list[str]:
    conf = e2e.nginx_config(
        tmp,
        f"""    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {files["server_cert"]};
        ssl_certificate_key {files["server_key"]};
        ssl_client_certificate {files["root"]};
        ssl_verify_client optional_no_ca;
        ssl_verify_depth 4;
        location / {{
            proxy_pass http://127.0.0.1:{backend};
            proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert;
            proxy_set_header X-SSL-Client-Cert-Folded $ssl_client_cert;
            proxy_set_header X-SSL-Client-Verify $ssl_client_verify;
            proxy_set_header X-SSL-Client-S-DN $ssl_client_s_dn;
        }}
        location /raw {{
            proxy_pass http://127.0.0.1:{backend};
            proxy_set_header X-SSL-Client-Cert-Raw $ssl_client_raw_cert;
        }}
    }}""",
    )
    return ["/usr/sbin/nginx", "-p", str(tmp), "-c", str(conf), "-g", "daemon off;"]


def apache(tmp: Path, port: int, backend: int, files: dict[str, str], e2e: Any) -> list[str]:
    mods = ["mpm_event", "authz_core", "ssl", "headers", "proxy", "proxy_http", "socache_shmcb"]
    loads = "\n".join(f"LoadModule {m}_module {e2e.APACHE_MODULES}/mod_{m}.so" for m in mods)
    chain = "\n".join(
        f'    RequestHeader set X-SSL-Client-Cert-Chain-{i} "%{{SSL_CLIENT_CERT_CHAIN_{i}}}s"'
        for i in range(3)
    )
    (tmp / "httpd.conf").write_text(
        f"""
ServerRoot {tmp}
ServerName localhost
{loads}
{"User nobody" + chr(10) + "Group nogroup" if e2e.IS_ROOT else ""}
PidFile {tmp}/httpd.pid
DefaultRuntimeDir {tmp}
ErrorLog {tmp}/error.log
LogLevel warn
Listen 127.0.0.1:{port}
SSLSessionCache none
<VirtualHost 127.0.0.1:{port}>
    SSLEngine on
    SSLCertificateFile {files["server_cert"]}
    SSLCertificateKeyFile {files["server_key"]}
    SSLCACertificateFile {files["root"]}
    SSLVerifyClient optional_no_ca
    SSLVerifyDepth 4
    SSLOptions +ExportCertData
    RequestHeader set X-SSL-Client-Cert "%{{SSL_CLIENT_CERT}}s"
{chain}
    RequestHeader set X-SSL-Client-Cert-Escaped "expr=%{{escape:%{{SSL_CLIENT_CERT}}}}"
    RequestHeader set X-SSL-Client-Verify "%{{SSL_CLIENT_VERIFY}}s"
    ProxyPass / http://127.0.0.1:{backend}/
</VirtualHost>
"""
    )
    return ["/usr/sbin/apache2", "-X", "-f", str(tmp / "httpd.conf")]


def haproxy(tmp: Path, port: int, backend: int, files: dict[str, str], e2e: Any) -> list[str]:
    # The end-to-end tests' HAProxy already forwards every certificate variable it has.
    argv: list[str] = e2e.haproxy(tmp, port, backend, files)[0]
    return argv


def caddy(tmp: Path, port: int, backend: int, files: dict[str, str], e2e: Any) -> list[str]:
    (tmp / "Caddyfile").write_text(
        f"""
{{
    admin off
    auto_https off
    http_port {port + 1}
    storage file_system {tmp}/caddy-data
}}
https://localhost:{port} {{
    bind 127.0.0.1
    tls {files["server_cert"]} {files["server_key"]} {{
        client_auth {{
            mode request
        }}
    }}
    reverse_proxy 127.0.0.1:{backend} {{
        header_up X-Client-Cert {{http.request.tls.client.certificate_der_base64}}
        header_up X-Client-Fingerprint {{http.request.tls.client.fingerprint}}
    }}
}}
"""
    )
    return ["/usr/bin/caddy", "run", "--config", str(tmp / "Caddyfile"), "--adapter", "caddyfile"]


PROXIES = {"nginx": nginx, "apache": apache, "haproxy": haproxy, "caddy": caddy}


def version(name: str) -> str:
    argv = {
        "nginx": ["/usr/sbin/nginx", "-v"],
        "apache": ["/usr/sbin/apache2", "-v"],
        "haproxy": ["/usr/sbin/haproxy", "-v"],
        "caddy": ["/usr/bin/caddy", "version"],
    }[name]
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    return (done.stdout + done.stderr).strip().splitlines()[0]


def curl(url: str, cacert: str, cert: tuple[str, str] | None) -> None:
    argv = ["curl", "-sS", "--max-time", "10", "--cacert", cacert, "-o", "/dev/null"]
    argv += ["--resolve", url.split("://")[1].split("/")[0] + ":127.0.0.1"]
    if cert:
        argv += ["--cert", cert[0], "--key", cert[1]]
    subprocess.run([*argv, url], check=True, capture_output=True, timeout=20)


# -- Envoy and Traefik, rebuilt from their source ---------------------------------------------
def _go_query_escape(text: str) -> str:
    """Go's ``url.QueryEscape``: keeps ALPHA, DIGIT and ``-_.~``, spaces as ``+``."""
    return quote(text, safe="").replace("%20", "+")


def reconstructed(chains: dict[str, list[bytes]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for client, ders in chains.items():
        leaf = x509.load_der_x509_certificate(ders[0])
        subject = (
            subprocess.run(
                ["openssl", "x509", "-inform", "DER", "-noout", "-subject", "-nameopt", "RFC2253"],
                input=ders[0],
                capture_output=True,
                check=True,
            )
            .stdout.decode("ascii")
            .strip()
        )
        try:
            san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            dns = san.get_values_for_type(x509.DNSName)
        except x509.ExtensionNotFound:
            dns = []
        xfcc = encode_element(ders, subject=subject.removeprefix("subject="), uris=(), dns=dns)
        out.append(
            {
                "proxy": "envoy",
                "source": (
                    "envoyproxy/envoy source/common/http/conn_manager_utility.cc "
                    "(mutateXfccRequestHeader: By, Hash, Cert, Chain, Subject, URI, DNS joined "
                    "by ';', Subject quoted as X509_NAME_print_ex(XN_FLAG_RFC2253) prints it, "
                    "here by OpenSSL's 'x509 -nameopt RFC2253'); Cert/Chain: PEM with "
                    "'\\n',' ','+','/','=' escaped (urlEncodedPemEncodedPeerCertificate)"
                ),
                "client": client,
                "headers": [["X-Forwarded-Client-Cert", xfcc]],
            }
        )
        out.append(
            {
                "proxy": "istio-sidecar",
                "source": (
                    "the same code with set_current_client_cert_details {subject, uri, dns} and"
                    " no cert or chain, as an Istio sidecar's APPEND_FORWARD element"
                ),
                "client": client,
                "headers": [
                    [
                        "X-Forwarded-Client-Cert",
                        encode_element(
                            ders,
                            subject=subject.removeprefix("subject="),
                            dns=dns,
                            cert=False,
                            chain=False,
                        ),
                    ]
                ],
            }
        )
        bodies = [base64.b64encode(d).decode("ascii") for d in ders]
        out.append(
            {
                "proxy": "traefik",
                "source": (
                    "traefik/traefik pkg/middlewares/passtlsclientcert/pass_tls_client_cert.go "
                    "v2.9.2 and later (2c550c284d): sanitize() strips the PEM armour and "
                    "newlines, certificates joined by ','"
                ),
                "client": client,
                "headers": [["X-Forwarded-Tls-Client-Cert", ",".join(bodies)]],
            }
        )
        out.append(
            {
                "proxy": "traefik-legacy",
                "source": (
                    "traefik/traefik pkg/middlewares/passtlsclientcert/pass_tls_client_cert.go "
                    "v2.0.0 to v2.9.1 (and v1.7 middlewares/tlsClientHeaders.go): sanitize() "
                    "applies url.QueryEscape to each certificate, joined by a raw ','"
                ),
                "client": client,
                "headers": [
                    ["X-Forwarded-Tls-Client-Cert", ",".join(_go_query_escape(b) for b in bodies)]
                ],
            }
        )
        info = (
            f'Subject="CN={leaf.subject.rfc4514_string()}";'
            f'NB="{int(leaf.not_valid_before_utc.timestamp())}";'
            f'NA="{int(leaf.not_valid_after_utc.timestamp())}";SAN="{",".join(dns)}"'
        )
        out.append(
            {
                "proxy": "traefik-info",
                "source": (
                    "traefik/traefik pkg/middlewares/passtlsclientcert/pass_tls_client_cert.go "
                    'getCertInfo: url.QueryEscape of Subject="…";NB="…";NA="…";SAN="…" '
                    "(no certificate in it)"
                ),
                "client": client,
                "headers": [["X-Forwarded-Tls-Client-Cert-Info", _go_query_escape(info)]],
            }
        )
    return out


def main() -> None:
    e2e = _e2e()
    root = CA(organization="mtlsauth captures")
    inter1 = root.intermediate(common_name="Captures Intermediate One")
    inter2 = inter1.intermediate(common_name="Captures Intermediate Two")
    server = root.issue_client_cert(
        common_name="localhost", dns_names=["localhost"], ip_addresses=["127.0.0.1"], eku="server"
    )
    people = clients(inter2)
    with TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        tmp.chmod(0o755)
        files = {
            "root": root.cert_pem.write_to_path(tmp / "root.pem"),
            "server_cert": server.cert_pem.write_to_path(tmp / "server.pem"),
            "server_key": server.key_pem.write_to_path(tmp / "server.key"),
            "server_combined": tmp / "server-combined.pem",
        }
        files["server_combined"].write_bytes(server.cert_pem.bytes() + server.key_pem.bytes())
        paths = {k: str(v) for k, v in files.items()}
        for p in files.values():
            p.chmod(0o644)
        creds: dict[str, tuple[str, str] | None] = {"none": None}
        for name, c in people.items():
            cert = c.chain_pem.write_to_path(tmp / f"{name}.pem")
            key = c.key_pem.write_to_path(tmp / f"{name}.key")
            cert.chmod(0o644)
            key.chmod(0o644)
            creds[name] = (str(cert), str(key))
        captures: list[dict[str, Any]] = []
        backend = RawBackend()
        for proxy, build in PROXIES.items():
            work = tmp / proxy
            work.mkdir()
            work.chmod(0o755)
            port = e2e.free_port()
            argv = build(work, port, backend.port, paths, e2e)
            env = {"HOME": str(work), "XDG_CONFIG_HOME": str(work), "XDG_DATA_HOME": str(work)}
            with e2e.run_proxy(argv, port, work, env=env):
                for client, cred in creds.items():
                    raw = proxy == "nginx" and client in ("none", "deep")
                    for path in ("/", "/raw") if raw else ("/",):
                        backend.heads.clear()
                        curl(f"https://localhost:{port}{path}", paths["root"], cred)
                        captures.append(
                            {
                                "proxy": proxy if path == "/" else "nginx-raw",
                                "version": version(proxy),
                                "client": client,
                                "headers": fields(backend.heads[0]),
                            }
                        )
    chains = {n: list(c.chain_der) for n, c in people.items()}
    data = {
        "note": "Recorded by tests/captures/record.py from the Debian packages named in each"
        " capture; 'reconstructed' values are rebuilt from the proxies' source code.",
        "chains": {
            n: [base64.b64encode(d).decode("ascii") for d in ders] for n, ders in chains.items()
        },
        "captures": captures,
        "reconstructed": reconstructed(chains),
    }
    (HERE / "proxies.json").write_text(json.dumps(data, indent=1, ensure_ascii=True) + "\n")


if __name__ == "__main__":
    main()
