"""Shared end-to-end fixtures: a session PKI on disk, free ports, real proxies as
subprocesses, a stdlib backend app that authenticates through ``Verifier.authenticate``,
and a curl client.

Every proxy and app listens on 127.0.0.1 only. Proxies run in the foreground with all their
files (pid, logs, temp dirs, runtime state) in a per-test temporary directory, and are
stopped at teardown.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from mtlsauth import MTLSAuthError, Presented
from mtlsauth.testing import CA, ClientCert

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


# -- PKI -------------------------------------------------------------------------------------
@dataclass
class PKI:
    """Files for one throwaway PKI: root -> intermediate -> client leaf, plus impostors."""

    dir: Path
    root: CA
    intermediate: CA
    client: ClientCert  # issued by the intermediate
    wrong_ca_client: ClientCert  # same subject, issued by an unrelated CA
    paths: dict[str, Path] = field(default_factory=dict)

    def __getitem__(self, name: str) -> str:
        return str(self.paths[name])


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    d = tmp_path_factory.mktemp("pki")
    root = CA(organization="mtlsauth e2e")
    inter = root.intermediate()
    server = root.issue_client_cert(
        common_name="localhost", dns_names=["localhost"], ip_addresses=["127.0.0.1"], eku="server"
    )
    client = inter.issue_client_cert(
        common_name="alice",
        organization="mtlsauth e2e",
        uris=["spiffe://example.org/ns/e2e/sa/alice"],
        dns_names=["alice.example"],
    )
    wrong = CA(organization="mtlsauth e2e").issue_client_cert(
        common_name="alice", organization="mtlsauth e2e"
    )
    files = {
        "root": root.cert_pem.bytes(),
        "intermediate": inter.cert_pem.bytes(),
        "bundle": root.cert_pem.bytes() + inter.cert_pem.bytes(),
        "server_cert": server.cert_pem.bytes(),
        "server_key": server.key_pem.bytes(),
        "server_combined": server.cert_pem.bytes() + server.key_pem.bytes(),
        "client_leaf": client.cert_pem.bytes(),
        "client_chain": client.chain_pem.bytes(),
        "client_key": client.key_pem.bytes(),
        "wrong_cert": wrong.cert_pem.bytes(),
        "wrong_key": wrong.key_pem.bytes(),
    }
    paths = {}
    for name, data in files.items():
        p = d / f"{name}.pem"
        p.write_bytes(data)
        p.chmod(0o644)
        paths[name] = p
    return PKI(d, root, inter, client, wrong, paths)


# -- ports and processes ---------------------------------------------------------------------
def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(
    port: int, timeout: float = 10.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def require_binary(path: str) -> str:
    """Skip the test when a proxy binary is missing (CI installs them all)."""
    found = shutil.which(path) or (path if os.access(path, os.X_OK) else None)
    if not found:
        pytest.skip(f"{path} is not installed (apt-get install it to run this end-to-end test)")
    return found


@contextlib.contextmanager
def run_proxy(
    argv: Sequence[str],
    port: int,
    workdir: Path,
    *,
    env: dict[str, str] | None = None,
    timeout: float = 15.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start a foreground server, wait until ``port`` accepts, and stop it afterwards.

    Output goes to ``workdir/proxy.log`` (shown in the failure message if it never listens).
    """
    log_path = workdir / "proxy.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=workdir,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        try:
            try:
                wait_for_port(port, timeout, proc)
            except (RuntimeError, TimeoutError) as exc:
                raise RuntimeError(f"{argv[0]} did not start: {exc}\n{_tail(log_path)}") from None
            yield proc
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)


def _tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


# -- the backend app -------------------------------------------------------------------------
@dataclass
class Backend:
    """A stdlib HTTP app on 127.0.0.1 that authenticates each request with ``authenticate``.

    Set ``authenticate`` (for example ``verifier.authenticate``) before sending requests.
    Each request's raw header pairs are kept in ``seen`` so tests can record exactly what a
    proxy forwarded.
    """

    port: int
    authenticate: Callable[[Presented], Any] | None = None
    seen: list[list[tuple[str, str]]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def last_header(self, name: str) -> list[str]:
        """Every value of ``name`` (case-insensitive) in the last request."""
        return [v for k, v in self.seen[-1] if k.lower() == name.lower()]


def _handler(backend: Backend) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            raw = [(k, v) for k, v in self.headers.raw_items()]
            backend.seen.append(raw)
            presented = Presented(
                peer=self.client_address[0],
                headers=tuple((k.lower(), v) for k, v in raw),
                path=self.path,
                method="GET",
            )
            body: dict[str, Any]
            try:
                assert backend.authenticate is not None, "set backend.authenticate first"
                identity = backend.authenticate(presented)
            except MTLSAuthError as exc:
                status = exc.status
                body = {"status": status, "code": exc.code, "common_name": None, "source": None}
            else:
                status = 200
                body = {
                    "status": 200,
                    "code": None if identity is not None else "no_certificate",
                    "common_name": getattr(identity, "common_name", None),
                    "source": getattr(identity, "source", None),
                    "verified_by": getattr(identity, "verified_by", None),
                }
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # proxies close idle upstream connections abruptly; that is not a test failure


@contextlib.contextmanager
def serve_backend() -> Iterator[Backend]:
    """Run a ``Backend`` on a free port of 127.0.0.1 until the block ends."""
    port = free_port()
    be = Backend(port)
    server = _QuietServer(("127.0.0.1", port), _handler(be))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield be
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def backend() -> Iterator[Backend]:
    """The app behind the proxy; stopped after the test."""
    with serve_backend() as be:
        yield be


# -- the client ------------------------------------------------------------------------------
@dataclass
class Reply:
    status: int
    body: dict[str, Any]


def curl(
    url: str,
    *,
    cacert: str,
    cert: str | None = None,
    key: str | None = None,
    headers: Sequence[str] = (),
) -> Reply:
    """GET ``url`` with curl, presenting ``cert``/``key`` (a PEM that may hold the chain)."""
    argv = [require_binary("curl"), "-sS", "--max-time", "10", "--cacert", cacert]
    argv += ["-w", "\n%{http_code}", "-H", "Connection: close"]
    host_port = url.split("://", 1)[-1].split("/", 1)[0]
    if host_port.startswith("localhost:"):  # pin localhost to IPv4, never ::1
        argv += ["--resolve", f"{host_port}:127.0.0.1"]
    if cert:
        argv += ["--cert", cert, "--key", key or cert]
    for h in headers:
        argv += ["-H", h]
    done = subprocess.run([*argv, url], capture_output=True, timeout=20, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"curl failed ({done.returncode}): {done.stderr.decode(errors='replace')}"
        )
    text, _, code = done.stdout.decode().rpartition("\n")
    try:
        body = json.loads(text) if text else {}
    except json.JSONDecodeError:
        body = {"raw": text}
    return Reply(int(code), body)


# -- real proxies ----------------------------------------------------------------------------
APACHE_MODULES = "/usr/lib/apache2/modules"


@dataclass(frozen=True)
class ProxySpec:
    name: str  # also the mtlsauth preset name
    binary: str
    build: Callable[[Path, int, int, PKI], tuple[list[str], dict[str, str]]]
    forwards_chain: bool  # does the proxy forward the client's intermediates?


def nginx(tmp: Path, port: int, backend: int, pki: PKI) -> tuple[list[str], dict[str, str]]:
    return nginx_to(tmp, port, f"http://127.0.0.1:{backend}", pki), {}


def nginx_to(tmp: Path, port: int, upstream: str, pki: PKI, *, verify_depth: int = 3) -> list[str]:
    """nginx with client-certificate TLS on ``port``, forwarding to ``upstream``; its argv."""
    conf = nginx_config(
        tmp,
        f"""    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {pki["server_cert"]};
        ssl_certificate_key {pki["server_key"]};
        ssl_client_certificate {pki["root"]};
        ssl_verify_client optional_no_ca;
        ssl_verify_depth {verify_depth};
        ignore_invalid_headers on;
        underscores_in_headers off;
        location / {{
            proxy_pass {upstream};
            proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert;
            proxy_set_header X-SSL-Client-Verify $ssl_client_verify;
        }}
    }}""",
    )
    return ["/usr/sbin/nginx", "-p", str(tmp), "-c", str(conf), "-g", "daemon off;"]


def apache(tmp: Path, port: int, backend: int, pki: PKI) -> tuple[list[str], dict[str, str]]:
    chain = "\n".join(
        f"    RequestHeader unset X-SSL-Client-Cert-Chain-{i}\n"
        f'    RequestHeader set X-SSL-Client-Cert-Chain-{i} "%{{SSL_CLIENT_CERT_CHAIN_{i}}}s"'
        for i in range(3)
    )
    headers = "\n".join(
        [
            "    # unset, then set: the proxy's header goes after every spelling the client sent",
            "    RequestHeader unset X-SSL-Client-Cert",
            '    RequestHeader set X-SSL-Client-Cert "%{SSL_CLIENT_CERT}s"',
            chain,
            '    RequestHeader set X-SSL-Client-Verify "%{SSL_CLIENT_VERIFY}s"',
        ]
    )
    conf = apache_config(tmp, port, backend, pki, verify_depth=3, headers=headers)
    return ["/usr/sbin/apache2", "-X", "-f", str(conf)], {}


def apache_config(
    tmp: Path,
    port: int,
    backend: int,
    pki: Any,
    *,
    verify_depth: int,
    headers: str,
    session_cache: bool = False,
) -> Path:
    """Write an httpd.conf: one TLS virtual host on ``port`` asking for a client certificate
    from any CA (``optional_no_ca``, as the proxies are set up in docs/proxies.md), setting
    the request ``headers`` (RequestHeader lines) and proxying to ``backend``; with
    ``session_cache``, sessions resume as under Debian's ssl.conf."""
    mods = ["mpm_event", "authz_core", "ssl", "headers", "proxy", "proxy_http", "socache_shmcb"]
    loads = "\n".join(f"LoadModule {m}_module {APACHE_MODULES}/mod_{m}.so" for m in mods)
    user = "User nobody\nGroup nogroup" if IS_ROOT else ""
    cache = f"shmcb:{tmp}/ssl_scache(512000)" if session_cache else "none"
    conf = tmp / "httpd.conf"
    conf.write_text(
        f"""
ServerRoot {tmp}
ServerName localhost
{loads}
{user}
PidFile {tmp}/httpd.pid
DefaultRuntimeDir {tmp}
ErrorLog {tmp}/error.log
LogLevel warn
Listen 127.0.0.1:{port}
SSLSessionCache {cache}
<VirtualHost 127.0.0.1:{port}>
    SSLEngine on
    SSLCertificateFile {pki["server_cert"]}
    SSLCertificateKeyFile {pki["server_key"]}
    SSLCACertificateFile {pki["root"]}
    SSLVerifyClient optional_no_ca
    SSLVerifyDepth {verify_depth}
    SSLOptions +ExportCertData
{headers}
    ProxyPass / http://127.0.0.1:{backend}/
</VirtualHost>
"""
    )
    return conf


def haproxy(tmp: Path, port: int, backend: int, pki: PKI) -> tuple[list[str], dict[str, str]]:
    conf = tmp / "haproxy.cfg"
    conf.write_text(
        f"""
global
    maxconn 64
defaults
    mode http
    timeout connect 5s
    timeout client 10s
    timeout server 10s
frontend fe
    bind 127.0.0.1:{port} ssl crt {pki["server_combined"]} ca-file {pki["root"]} verify optional crt-ignore-err all ca-ignore-err all
    http-request del-header ^x[-_]ssl[-_]client[-_] -m reg
    http-request set-header X-SSL-Client-Cert %[ssl_c_der,base64]
    http-request set-header X-SSL-Client-Chain %[ssl_c_chain_der,base64]
    http-request set-header X-SSL-Client-Verify %[ssl_c_verify]
    http-request set-header X-SSL-Client-Used %[ssl_c_used]
    default_backend be
backend be
    server app 127.0.0.1:{backend}
"""
    )
    return ["/usr/sbin/haproxy", "-f", str(conf), "-db"], {}


def caddy(tmp: Path, port: int, backend: int, pki: PKI) -> tuple[list[str], dict[str, str]]:
    conf = tmp / "Caddyfile"
    conf.write_text(
        f"""
{{
    admin off
    auto_https off
    http_port {port + 1 if port < 65535 else port - 1}
    storage file_system {tmp}/caddy-data
    log {{
        output stderr
        level ERROR
    }}
}}
https://localhost:{port} {{
    bind 127.0.0.1
    tls {pki["server_cert"]} {pki["server_key"]} {{
        client_auth {{
            mode request
        }}
    }}
    reverse_proxy 127.0.0.1:{backend} {{
        header_up X-Client-Cert {{http.request.tls.client.certificate_der_base64}}
        # the client's X_Client_Cert, X_Client-Cert, X-Client_Cert (see docs/proxies.md)
        header_up -X_*
        header_up -X-Client_*
    }}
}}
"""
    )
    env = {
        "HOME": str(tmp),
        "XDG_CONFIG_HOME": str(tmp / "config"),
        "XDG_DATA_HOME": str(tmp / "data"),
    }
    return ["/usr/bin/caddy", "run", "--config", str(conf), "--adapter", "caddyfile"], env


PROXIES = (
    ProxySpec("nginx", "/usr/sbin/nginx", nginx, forwards_chain=False),
    ProxySpec("apache", "/usr/sbin/apache2", apache, forwards_chain=True),
    ProxySpec("haproxy", "/usr/sbin/haproxy", haproxy, forwards_chain=True),
    ProxySpec("caddy", "/usr/bin/caddy", caddy, forwards_chain=False),
)
PROXY_SPECS = {p.name: p for p in PROXIES}


@contextlib.contextmanager
def serve_process(
    argv: list[str],
    env: dict[str, str],
    log_path: Path,
    port: int,
    *,
    cwd: Path,
    timeout: float = 20.0,
) -> Iterator[None]:
    """Run a server subprocess until ``port`` accepts TCP; stop it afterwards."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"{argv} exited: {log_path.read_text(errors='replace')}")
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection(("127.0.0.1", port), 0.2),
                ):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{argv} never listened: {log_path.read_text(errors='replace')}"
                    )
                time.sleep(0.05)
            yield
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def nginx_config(
    tmp: Path, servers: str, *, connections: int = 64, log_level: str = "info"
) -> Path:
    """Write an nginx.conf whose http block holds ``servers``, every runtime file in ``tmp``."""
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp / sub).mkdir(exist_ok=True)
    conf = tmp / "nginx.conf"
    conf.write_text(
        f"""
{"user root;" if IS_ROOT else ""}
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log {log_level};
events {{ worker_connections {connections}; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
{servers}
}}
"""
    )
    return conf


def start_proxies(
    stack: contextlib.ExitStack,
    tmp: Path,
    backend: int,
    pki: Any,
    overrides: dict[str, Callable[[Path, int, int, Any], list[str]]],
    names: Iterable[str] = tuple(PROXY_SPECS),
) -> dict[str, str]:
    """Start each proxy of ``names`` in a directory of its own under ``tmp``, forwarding to
    the ``backend`` port, with ``overrides[name]`` writing its configuration instead of the
    shared one where given; each stops when ``stack`` closes. Their ``https://`` URLs."""
    urls = {}
    for name in names:
        spec = PROXY_SPECS[name]
        require_binary(spec.binary)
        work = tmp / name
        work.mkdir()
        work.chmod(0o755)
        port = free_port()
        if name in overrides:
            argv, env = overrides[name](work, port, backend, pki), {}
        else:
            argv, env = spec.build(work, port, backend, pki)
        stack.enter_context(run_proxy(argv, port, work, env=env))
        urls[name] = f"https://localhost:{port}"
    return urls


@dataclass
class RunningProxy:
    spec: ProxySpec
    port: int
    workdir: Path

    @property
    def url(self) -> str:
        # a host name, so curl sends SNI (Caddy answers 421 without it when client_auth is on)
        return f"https://localhost:{self.port}"


@pytest.fixture
def start_proxy(pki: PKI, tmp_path: Path) -> Iterator[Callable[[str, Backend], RunningProxy]]:
    """Factory: ``start_proxy("nginx", backend)`` runs that proxy in front of ``backend``.

    Skips the test when the proxy's binary is not installed. Every proxy started through
    the factory is stopped at teardown.
    """
    counter = iter(range(1000))
    with contextlib.ExitStack() as stack:

        def start(name: str, be: Backend) -> RunningProxy:
            spec = PROXY_SPECS[name]
            require_binary(spec.binary)
            workdir = tmp_path / f"{name}-{next(counter)}"
            workdir.mkdir()
            workdir.chmod(0o755)
            port = free_port()
            argv, env = spec.build(workdir, port, be.port, pki)
            stack.enter_context(run_proxy(argv, port, workdir, env=env))
            return RunningProxy(spec, port, workdir)

        yield start


@pytest.fixture
def client(pki: PKI) -> Callable[..., Reply]:
    """``client(url, cert="client_chain"|"client_leaf"|"wrong_cert"|None, headers=[...])``.

    Presents the named PKI file (with its key) through curl, trusting the session root.
    """

    def get(url: str, *, cert: str | None = None, headers: Sequence[str] = ()) -> Reply:
        key = {"client_chain": "client_key", "client_leaf": "client_key", "wrong_cert": "wrong_key"}
        return curl(
            url,
            cacert=pki["root"],
            cert=pki[cert] if cert else None,
            key=pki[key[cert]] if cert else None,
            headers=headers,
        )

    return get


@pytest.fixture(scope="session")
def proxy_tools() -> SimpleNamespace:
    """The process helpers above, for test modules that start their own proxy layout."""
    return SimpleNamespace(
        is_root=IS_ROOT,
        free_port=free_port,
        require_binary=require_binary,
        run_proxy=run_proxy,
        nginx_to=nginx_to,
        nginx_config=nginx_config,
        apache_config=apache_config,
        start_proxies=start_proxies,
        serve_backend=serve_backend,
        proxy_specs=PROXY_SPECS,
        apache_modules=APACHE_MODULES,
    )


# -- client certificates for the real-server tests ---------------------------------------
@pytest.fixture(scope="module")
def clients(pki, tmp_path_factory) -> dict[str, tuple[str, str] | None]:
    """name -> (certfile, keyfile) for httpx; None presents no certificate."""
    d = tmp_path_factory.mktemp("e2e-clients")
    now = dt.datetime.now(dt.timezone.utc)
    expired = pki.intermediate.issue_client_cert(
        common_name="alice",
        organization="mtlsauth e2e",
        not_before=now - dt.timedelta(days=30),
        not_after=now - dt.timedelta(days=1),
    )
    exp_cert = expired.chain_pem.write_to_path(d / "expired.pem")
    exp_key = expired.key_pem.write_to_path(d / "expired.key")
    return {
        "good": (pki["client_chain"], pki["client_key"]),
        "wrong_ca": (pki["wrong_cert"], pki["wrong_key"]),
        "expired": (str(exp_cert), str(exp_key)),
        "none": None,
    }
