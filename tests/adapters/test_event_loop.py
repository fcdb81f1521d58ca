"""A hung OCSP responder must not stall clients whose result is cached (real servers).

The responder on 127.0.0.1 answers one certificate at once and hangs on every other. A
flood of uncached certificates fills the Guard's own pool (2 threads, 4 waiting places)
and the rest are refused at once with 503 ``verification_busy``; meanwhile a client whose
result is cached is answered from the event loop, promptly, by uvicorn and by aiohttp.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from mtlsauth.testing import CA, ClientCert, encode_forwarded

HERE = Path(__file__).parent
FLOOD = 12  # uncached clients at once; the pool holds 2 running + 4 waiting


class SlowResponder:
    """Answers GOOD at once for ``fast`` serials; holds every other request until released."""

    def __init__(self, ca: CA, certs: dict[int, x509.Certificate], fast: set[int]) -> None:
        self.release = threading.Event()
        self.held = 0
        responder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                req = ocsp.load_der_ocsp_request(body)
                if req.serial_number not in fast:
                    responder.held += 1
                    responder.release.wait(30)
                now = dt.datetime.now(dt.timezone.utc)
                data = (
                    ocsp.OCSPResponseBuilder()
                    .add_response(
                        cert=certs[req.serial_number],
                        issuer=ca.certificate,
                        algorithm=hashes.SHA1(),  # noqa: S303 - RFC 6960 CertID
                        cert_status=ocsp.OCSPCertStatus.GOOD,
                        this_update=now - dt.timedelta(minutes=1),
                        next_update=now + dt.timedelta(hours=1),
                        revocation_time=None,
                        revocation_reason=None,
                    )
                    .responder_id(ocsp.OCSPResponderEncoding.HASH, ca.certificate)
                    .sign(ca.private_key, hashes.SHA256())
                    .public_bytes(serialization.Encoding.DER)
                )
                self.send_response(200)
                self.send_header("Content-Type", "application/ocsp-response")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(port: int, cert: ClientCert, timeout: float = 40) -> tuple[int, Any, float]:
    header = dict(encode_forwarded("nginx", cert.chain_der[:1]))["X-SSL-Client-Cert"]
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(
            b"GET /whoami HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-SSL-Client-Cert: "
            + header.encode()
            + b"\r\n\r\n"
        )
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    elapsed = time.perf_counter() - started
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body), elapsed


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    ca = CA(organization="Slow OCSP")
    cached = ca.issue_client_cert(common_name="cached")
    flood = [ca.issue_client_cert(common_name=f"new-{i}") for i in range(FLOOD)]
    certs = {c.certificate.serial_number: c.certificate for c in (cached, *flood)}
    responder = SlowResponder(ca, certs, fast={cached.certificate.serial_number})
    root = tmp_path_factory.mktemp("slow") / "root.pem"
    root.write_bytes(ca.cert_pem.bytes())
    yield {"root": str(root), "cached": cached, "flood": flood, "responder": responder}
    responder.close()


@pytest.mark.parametrize("kind", ["uvicorn", "aiohttp"])
def test_cached_client_is_answered_while_misses_pile_up(
    world: dict[str, Any], kind: str, tmp_path: Path
) -> None:
    responder: SlowResponder = world["responder"]
    responder.release.clear()
    responder.held = 0
    port = _free_port()
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            str(HERE / "_ocsp_apps.py"),
            kind,
            str(port),
            world["root"],
            responder.url,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    pool = ThreadPoolExecutor(FLOOD)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail((tmp_path / "server.log").read_text())
                time.sleep(0.1)
        # Warm the cache for one client (its responder answer comes at once).
        status, body, _ = _get(port, world["cached"])
        assert (status, body) == (200, {"cn": "cached"})

        floods = [pool.submit(_get, port, c) for c in world["flood"]]
        for _ in range(100):  # until the pool's two threads are held by the responder
            if responder.held >= 2:
                break
            time.sleep(0.05)
        time.sleep(0.3)
        assert responder.held == 2  # only the pool's threads reached the responder

        timings = []
        for _ in range(5):
            status, body, elapsed = _get(port, world["cached"], timeout=5)
            assert (status, body) == (200, {"cn": "cached"})
            timings.append(elapsed)
        assert max(timings) < 0.5, timings

        early = [f.result() for f in floods if f.done()]
        assert len(early) == FLOOD - 6
        assert all(s == 503 and b["code"] == "verification_busy" for s, b, _ in early)
        assert max(elapsed for _, _, elapsed in early) < 1.0

        responder.release.set()
        done = [f.result(timeout=30) for f in floods]
        assert sorted(s for s, _, _ in done) == [200] * 6 + [503] * (FLOOD - 6)
    finally:
        responder.release.set()
        pool.shutdown(wait=True)
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
