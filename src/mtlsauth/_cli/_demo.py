"""``mtlsauth demo``: a FastAPI app behind real mutual TLS on 127.0.0.1, called by six clients.

It writes a throwaway PKI to a temporary folder, serves the app with uvicorn and direct TLS
(``mtlsauth.adapters.uvicorn`` plus ``server_ssl_context``), and, when nginx is installed,
a second copy behind nginx, which ends TLS and forwards the certificate in a header. Then it
calls both with a valid, an expired, a revoked, a wrong-CA, a wrong-organization and no
certificate, prints what each got, and stops everything it started. Loopback only.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mtlsauth._cli._testpki import DEMO_ORGANIZATION, TestPKI, write_test_pki

if TYPE_CHECKING:
    from mtlsauth._cli._main import Out
    from mtlsauth._verifier import Verifier

__all__ = ["CASES", "DemoRow", "run_demo"]

# (label, client certificate in the test PKI or None, outcome the demo expects)
CASES: tuple[tuple[str, str | None], ...] = (
    ("valid", "good"),
    ("expired", "expired"),
    ("revoked", "revoked"),
    ("wrong CA", "wrong-ca"),
    ("wrong organization", "other-org"),
    ("no certificate", None),
)


@dataclass(frozen=True)
class DemoRow:
    """One request of the demo and what came back."""

    setup: str
    case: str
    status: int | None
    code: str
    identity: str

    @property
    def allowed(self) -> bool:
        return self.status == 200


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_app(verifier: Verifier) -> Any:
    """The demo's FastAPI app: ``GET /whoami`` answers with the caller's identity."""
    try:
        from fastapi import Depends, FastAPI
    except ImportError:
        raise RuntimeError(
            "the demo needs FastAPI: pip install 'mtlsauth[fastapi,uvicorn]'"
        ) from None
    # Imported once FastAPI is known to be there: the CLI's other commands need no framework.
    from mtlsauth._identity import ClientIdentity
    from mtlsauth.adapters.asgi import MTLSMiddleware, client_identity

    app = FastAPI(title="mtlsauth demo", openapi_url=None, docs_url=None, redoc_url=None)
    app.add_middleware(MTLSMiddleware, verifier=verifier, exempt_paths={"/healthz"})

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/whoami")
    def whoami(who: ClientIdentity = Depends(client_identity)) -> dict[str, Any]:  # noqa: B008
        return {"common_name": who.common_name, "organization": who.organization}

    return app


@contextlib.contextmanager
def _serve(app: Any, ssl_factory: Any = None) -> Iterator[int]:
    """Run uvicorn in a thread on 127.0.0.1; yield its port; stop it on exit."""
    import uvicorn

    kwargs: dict[str, Any] = {}
    if ssl_factory is not None:
        from mtlsauth.adapters.uvicorn import MTLSH11Protocol

        kwargs = {"http": MTLSH11Protocol, "ssl_context_factory": ssl_factory}
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, lifespan="off", log_config=None, log_level="critical",
        access_log=False, timeout_graceful_shutdown=1, **kwargs,
    )  # fmt: skip
    server = uvicorn.Server(config)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()


@contextlib.contextmanager
def _nginx(tmp: Path, pki: TestPKI, backend: int) -> Iterator[int]:
    """nginx ending TLS on 127.0.0.1 and forwarding the certificate to ``backend``."""
    import os

    port = _free_port()
    run = tmp / "nginx"
    run.mkdir()
    conf = run / "nginx.conf"
    user = "user root;" if os.geteuid() == 0 else ""
    conf.write_text(
        f"""{user}
worker_processes 1;
pid {run}/nginx.pid;
error_log {run}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {run}/body;
    proxy_temp_path {run}/proxy;
    fastcgi_temp_path {run}/fastcgi;
    uwsgi_temp_path {run}/uwsgi;
    scgi_temp_path {run}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {pki.path("server.pem")};
        ssl_certificate_key {pki.path("server.key")};
        ssl_client_certificate {pki.path("ca.pem")};
        # optional_no_ca: nginx asks for a certificate and passes even an untrusted one on;
        # the app decides. ssl_verify_depth counts the anchor: 2 = leaf, intermediate, root.
        ssl_verify_client optional_no_ca;
        ssl_verify_depth 2;
        location / {{
            proxy_pass http://127.0.0.1:{backend};
            proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert;
        }}
    }}
}}
"""
    )
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    cmd = [
        nginx,
        "-p",
        str(run),
        "-c",
        str(conf),
        "-e",
        str(run / "error.log"),
        "-g",
        "daemon off;",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise RuntimeError(f"nginx did not start: {err.strip()[-300:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("nginx did not start within 10 s")
            time.sleep(0.02)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def _client_context(pki: TestPKI, case: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.path("ca.pem")))
    if case is not None:
        chain, key = pki.clients[case]
        ctx.load_cert_chain(str(chain), str(key))
    return ctx


def _call(setup: str, label: str, case: str | None, port: int, pki: TestPKI) -> DemoRow:
    import httpx

    try:
        with httpx.Client(verify=_client_context(pki, case), timeout=10) as client:
            resp = client.get(f"https://127.0.0.1:{port}/whoami")
    except httpx.TransportError as exc:
        alert = re.search(r"alert ([a-z ]+)", str(exc).lower())
        why = f"TLS alert: {alert.group(1).strip()}" if alert else "connection closed"
        return DemoRow(setup, label, None, why, "TLS handshake refused")
    try:
        body = resp.json()
    except ValueError:
        body = {}
    if resp.status_code == 200:
        ident = f"CN={body.get('common_name')}, O={body.get('organization')}"
        return DemoRow(setup, label, 200, "ok", ident)
    code = body.get("code") if isinstance(body, dict) else None
    if code is None:  # not from mtlsauth: the proxy answered
        server = resp.headers.get("server", "the server").split("/")[0]
        return DemoRow(setup, label, resp.status_code, f"refused by {server}", "")
    return DemoRow(setup, label, resp.status_code, str(code), "")


def demo_rows(*, use_nginx: bool = True) -> tuple[list[DemoRow], list[str]]:
    """Run every case against every setup; return the rows and notes about skipped setups."""
    from mtlsauth._forwarded._cert import ForwardedCert
    from mtlsauth._policy._policy import Policy
    from mtlsauth._revocation._crl import CRLSet
    from mtlsauth._sslcontext import server_ssl_context
    from mtlsauth._truststore import TrustStore
    from mtlsauth._verifier import Verifier

    rows: list[DemoRow] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="mtlsauth-demo-") as name:
        tmp = Path(name)
        pki = write_test_pki(tmp / "pki")
        trust = TrustStore.from_pem_file(pki.path("ca.pem"), reload_interval=None)
        common: dict[str, Any] = {
            "trust_store": trust,
            "policy": Policy(organizations={DEMO_ORGANIZATION}),
            "revocation": CRLSet.from_paths(pki.path("crl.pem"), reload_interval=None),
            # Python < 3.13 hands over the leaf only, and nginx forwards the leaf only.
            "intermediates": [pki.path("intermediate.pem").read_bytes()],
        }

        def ssl_factory(config: Any, default: Any) -> ssl.SSLContext:
            return server_ssl_context(
                certfile=pki.path("server.pem"),
                keyfile=pki.path("server.key"),
                trust_store=trust,
                mode="optional",  # no certificate reaches the app, which answers 401
            )

        setup = "uvicorn, direct TLS"
        with _serve(build_app(Verifier(**common)), ssl_factory) as port:
            rows += [_call(setup, label, case, port, pki) for label, case in CASES]

        if not use_nginx:
            notes.append("nginx part skipped (--no-nginx)")
        elif shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
            notes.append("nginx is not installed: the behind-a-proxy part was skipped")
        else:
            forwarded = ForwardedCert.preset("nginx", trusted_proxies=["127.0.0.1"])
            app = build_app(Verifier(**common, forwarded=forwarded))
            setup = "nginx -> uvicorn"
            with _serve(app) as backend:
                try:
                    with _nginx(tmp, pki, backend) as port:
                        rows += [_call(setup, label, case, port, pki) for label, case in CASES]
                except RuntimeError as exc:
                    notes.append(str(exc))
    return rows, notes


def run_demo(out: Out, *, json_output: bool = False, use_nginx: bool = True) -> int:
    """Run the demo and print its table; 0 when every case behaved as expected."""
    start = time.monotonic()
    rows, notes = demo_rows(use_nginx=use_nginx)
    elapsed = time.monotonic() - start
    wrong = [r for r in rows if r.allowed != (r.case == "valid")]
    if json_output:
        data = {"rows": [asdict(r) for r in rows], "notes": notes, "seconds": round(elapsed, 2)}
        out.line(json.dumps(data, indent=2))
        return 1 if wrong else 0
    out.line(
        out.style("mtlsauth demo", "bold") + f": FastAPI on 127.0.0.1, policy O={DEMO_ORGANIZATION}"
    )
    out.line()
    table = []
    for r in rows:
        status = "-" if r.status is None else str(r.status)
        colour = "green" if r.allowed else ("yellow" if r.status is None else "red")
        table.append([r.setup, r.case, out.style(status, colour), r.code, r.identity])
    out.table(["setup", "case", "HTTP", "code", "identity"], table)
    out.line()
    for note in notes:
        out.line(f"note: {note}")
    out.line("TLS handshake refused: Python's ssl aborts the handshake for a certificate it")
    out.line("cannot verify (like nginx without optional_no_ca), so the app never sees it.")
    out.line(f"Everything stopped; {len(rows)} requests in {elapsed:.1f} s.")
    if wrong:
        out.line(f"unexpected outcome for: {', '.join(f'{r.setup}/{r.case}' for r in wrong)}")
        return 1
    return 0
