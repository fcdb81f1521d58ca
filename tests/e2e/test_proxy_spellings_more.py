"""Forged spellings of the certificate headers sent through each real proxy, as raw bytes.

A client that connects through the trusted proxy sends its own copy of a certificate
header, spelled so that the proxy might not recognise it as the header it replaces, while
the Python server folds it into the name mtlsauth reads. Two halves:

* What each proxy passes. A raw echo backend records the header lines each proxy forwards
  for every spelling (whitespace or a tab before the colon, an obs-fold continuation, NUL,
  CR, non-ASCII look-alikes, other letter cases, two copies, a chunked trailer). None of
  them reaches the backend under a name that any server or framework folds into a
  certificate header's (lower case, ``_`` for ``-``, Latin-1 ``upper()``), except one:
  HAProxy forwards a chunked body's trailer section as it came.
* What a server does with a trailer. uvicorn's httptools protocol (also gunicorn's
  ``UvicornWorker`` when httptools is installed) appends trailer fields to the very list it
  passed as ``scope["headers"]``. Sent with the rest of the request, the trailer is a second
  copy of the proxy's header and the request is refused (``certificate_malformed``). Sent a
  moment later, it lands in the app's headers after mtlsauth decided the request: the app
  read a certificate header holding alice's certificate next to no identity. The ASGI
  middleware now hands the app the headers as they were when it decided.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import test_proxy_wsgi_spellings as wsgi_spellings

from conftest import PKI, free_port, nginx_to, serve_process, start_proxies
from mtlsauth.testing import encode_forwarded

pytestmark = pytest.mark.e2e

# the certificate headers each proxy's preset reads (mtlsauth/_forwarded/_presets.py)
READ = {
    "nginx": ["X-SSL-Client-Cert"],
    "apache": ["X-SSL-Client-Cert", *(f"X-SSL-Client-Cert-Chain-{i}" for i in range(3))],
    "haproxy": ["X-SSL-Client-Cert", "X-SSL-Client-Chain"],
    "caddy": ["X-Client-Cert"],
}
FORGED = b"FORGED"


def _spellings(name: bytes) -> dict[str, list[bytes]]:
    """Header lines spelling ``name`` so that a proxy might not know it."""

    def swap(old: bytes, new: str) -> bytes:
        return name.replace(old, new.encode())

    v = b": " + FORGED
    return {
        "space before the colon": [name + b" " + v],
        "tab before the colon": [name + b"\t" + v],
        "obs-fold": [name + v, b" " + FORGED],
        "continuation line": [b" " + name + v],
        "NUL in the name": [name + b"\x00" + v],
        "CR in the name": [name + b"\r" + v],
        "lower case": [name.lower() + v],
        "upper case": [name.upper() + v],
        "two copies": [name + v, name.lower() + v],
        "dotless i (UTF-8)": [swap(b"i", "\u0131") + v],
        "sharp s (Latin-1)": [name.replace(b"SS", b"\xdf").replace(b"ss", b"\xdf") + v],
        "sharp s (UTF-8)": [swap(b"SS", "\u00df").replace(b"ss", "\u00df".encode()) + v],
        "long s (UTF-8)": [swap(b"S", "\u017f") + v],
        "Kelvin sign (UTF-8)": [swap(b"C", "\u212a").replace(b"c", "\u212a".encode()) + v],
        "underscores": [name.replace(b"-", b"_") + v],
    }


def _folds(line: bytes, read: list[str]) -> bool:
    """Does any server or framework read the header ``line`` as one of ``read``?"""
    raw = line.split(b":", 1)[0]
    text = raw.decode("latin-1")
    keys = {n.upper().replace("-", "_") for n in read}
    return (
        raw.strip().lower().replace(b"_", b"-").decode("latin-1") in {n.lower() for n in read}
        or text.upper().replace("-", "_") in keys
        or text.strip().upper().replace("-", "_") in keys
    )


class _Echo:
    """A raw HTTP/1.1 backend: keeps each request's bytes up to the end of its body."""

    def __init__(self) -> None:
        self.port = free_port()
        self.seen: list[bytes] = []
        self._sock = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        conn.settimeout(3)
        buf = b""
        with conn, contextlib.suppress(OSError):
            while b"\r\n\r\n" not in buf:
                if not (data := conn.recv(65536)):
                    return
                buf += data
            if b"chunked" in buf.split(b"\r\n\r\n", 1)[0].lower():
                while not buf.endswith(b"\r\n\r\n") or buf.count(b"\r\n\r\n") < 2:
                    if not (data := conn.recv(65536)):
                        break
                    buf += data
            self.seen.append(buf)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    def close(self) -> None:
        self._sock.close()


def _tls(url: str, pki: PKI, cert: bool) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=pki["root"])
    ctx.set_alpn_protocols(["http/1.1"])
    if cert:
        ctx.load_cert_chain(pki["wrong_cert"], pki["wrong_key"])
    raw = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), 5)
    return ctx.wrap_socket(raw, server_hostname="localhost")


def _exchange(s: ssl.SSLSocket, *parts: bytes) -> bytes:
    for i, part in enumerate(parts):
        if i:
            time.sleep(0.5)  # the trailer in a later read than the request's head
        s.sendall(part)
    out = b""
    s.settimeout(10)
    with contextlib.suppress(OSError):
        while data := s.recv(65536):
            out += data
    return out


def _chunked(trailer: list[tuple[str, str]]) -> tuple[bytes, bytes]:
    head = b"POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
    head += b"Connection: close\r\n\r\n1\r\na\r\n"
    tail = b"0\r\n" + b"".join(f"{k}: {v}\r\n".encode() for k, v in trailer) + b"\r\n"
    return head, tail


@pytest.fixture(scope="module")
def proxies_to_echo(pki: PKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    echo = _Echo()
    with contextlib.ExitStack() as stack:
        urls = start_proxies(stack, tmp_path_factory.mktemp("spell"), echo.port, pki, {})
        yield echo, urls
    echo.close()


@pytest.mark.parametrize("name", ["nginx", "apache", "haproxy", "caddy"])
def test_no_spelling_passes_a_proxy_as_a_certificate_header(name, pki, proxies_to_echo):
    echo, urls = proxies_to_echo
    for header in READ[name]:
        for what, lines in _spellings(header.encode()).items():
            if name == "apache" and what == "underscores":
                continue  # passed on, after the proxy's own: test_proxy_wsgi_spellings.py
            before = len(echo.seen)
            request = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
            request += b"".join(line + b"\r\n" for line in lines) + b"\r\n"
            with _tls(urls[name], pki, cert=False) as s:
                _exchange(s, request)
            for got in echo.seen[before:]:
                forwarded = got.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]
                bad = [x for x in forwarded if FORGED in x and _folds(x, READ[name])]
                assert not bad, (name, header, what, bad)


@pytest.mark.parametrize("name", ["nginx", "apache", "haproxy", "caddy"])
def test_which_proxy_forwards_a_trailer(name, pki, proxies_to_echo):
    echo, urls = proxies_to_echo
    before = len(echo.seen)
    with _tls(urls[name], pki, cert=False) as s:
        _exchange(s, *_chunked([(READ[name][0], FORGED.decode())]))
    sent = b"".join(echo.seen[before:])
    # Measured: HAProxy passes the trailer section on as it came; the others drop it.
    assert (FORGED in sent) == (name == "haproxy"), sent


_APP = """
import json, sys
import uvicorn
from mtlsauth import ForwardedCert, TrustStore, Verifier
from mtlsauth.adapters.asgi import MTLSMiddleware, identity_from_scope

root, intermediate, port, http = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
verifier = Verifier(
    trust_store=TrustStore.from_pem_file(root),
    forwarded=ForwardedCert.preset("haproxy", trusted_proxies=["127.0.0.1"]),
    intermediates=[open(intermediate, "rb").read()],
)

async def echo(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    who = identity_from_scope(scope)
    seen = [v.decode("latin-1") for k, v in scope["headers"] if k.startswith(b"x-ssl-client-")]
    body = json.dumps({"cn": who.common_name if who else None, "seen": seen}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})

app = MTLSMiddleware(echo, verifier=verifier, mode="optional")
uvicorn.run(app, host="127.0.0.1", port=port, http=http, log_level="warning")
"""


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_a_trailer_through_haproxy_never_reaches_an_asgi_app(http, pki, tmp_path):
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(_APP))
    port = free_port()
    argv = [sys.executable, str(script), pki["root"], pki["intermediate"], str(port), http]
    with (
        serve_process(argv, {}, tmp_path / "app.log", port, cwd=tmp_path),
        contextlib.ExitStack() as stack,
    ):
        url = start_proxies(stack, tmp_path, port, pki, {}, ["haproxy"])["haproxy"]
        forged = encode_forwarded("haproxy", pki.client.chain_der)
        values = {v for _, v in forged}
        for cert in (False, True):
            for trailer in (forged[:1], forged):
                for split in (False, True):
                    head, tail = _chunked(trailer)
                    with _tls(url, pki, cert) as s:
                        reply = _exchange(s, *((head, tail) if split else (head + tail,)))
                    status = reply.split(b"\r\n", 1)[0]
                    where = (http, cert, [k for k, _ in trailer], split, status)
                    if b" 200 " not in status:
                        assert b" 401 " in status, where
                        continue
                    body = reply.split(b"\r\n\r\n", 1)[1]
                    if b"chunked" in reply.split(b"\r\n\r\n", 1)[0].lower():
                        body = body.split(b"\r\n", 1)[1].rsplit(b"\r\n0\r\n", 1)[0]
                    answer = json.loads(body)
                    assert answer["cn"] != "alice", where
                    assert not values & set(answer["seen"]), where


def _nginx_lenient_http_block(tmp: Any, port: int, backend: int, pki: PKI) -> list[str]:
    """The documented nginx server, in an nginx.conf whose http block turns both checks
    off (as another site on the same nginx might need)."""
    argv = nginx_to(tmp, port, f"http://127.0.0.1:{backend}", pki)
    conf = tmp / "nginx.conf"
    lenient = "http {\n    ignore_invalid_headers off;\n    underscores_in_headers on;\n"
    conf.write_text(conf.read_text().replace("http {\n", lenient, 1))
    return argv


def test_nginx_pins_its_header_checks_against_the_http_block(pki, tmp_path):
    """With ``ignore_invalid_headers off`` in the http block, nginx passed a client's
    ``X_SSL_Client_Cert`` after its own header, and Twisted's WSGI container let the later
    spelling win: a client without a certificate was alice. The documented server block
    now pins both checks."""
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(wsgi_spellings._APP))
    port = free_port()
    argv = [sys.executable, str(script), pki["root"], pki["intermediate"], str(port), "nginx"]
    with (
        serve_process(argv, {}, tmp_path / "app.log", port, cwd=tmp_path),
        contextlib.ExitStack() as stack,
    ):
        urls = start_proxies(
            stack, tmp_path, port, pki, {"nginx": _nginx_lenient_http_block}, ["nginx"]
        )
        url = urls["nginx"]
        assert wsgi_spellings._ask(pki, url, [], "client_chain") == {"cn": "alice"}
        header, value = encode_forwarded("nginx", pki.client.chain_der)[0]
        for cert in (None, "wrong_cert"):
            for folded in wsgi_spellings._spellings(header):
                reply = wsgi_spellings._ask(pki, url, [f"{folded}: {value}"], cert)
                assert reply.get("cn") != "alice", (cert, folded, reply)
