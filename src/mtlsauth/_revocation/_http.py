"""The OCSP checker's HTTP client: one POST with one deadline for everything.

Name resolution, connect, TLS, sending, headers and body all count against the same
deadline; responses are bounded (``_MAX_RESPONSE``, ``_MAX_HEADER``); a proxy is reached with
plain HTTP (``CONNECT`` for https responders). No redirects, no keep-alive.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from typing import TypeVar

_R = TypeVar("_R")
_MAX_RESPONSE = 64 * 1024  # a real answer is a few KiB; a delegated signer adds one certificate
_MAX_HEADER = 16 * 1024
_MAX_RESOLVING = 16  # look-ups that may run (and outlive their deadline) at once
_resolving = threading.BoundedSemaphore(_MAX_RESOLVING)


class _Failure(Exception):
    """No trustworthy answer (network, HTTP, parsing, signature, CertID, freshness)."""


def _check_url(url: str, error: type[Exception]) -> None:
    if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
        raise error("OCSP responder URL must be http:// or https://")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise error("OCSP responder URL does not parse") from None
    if not parts.hostname:
        raise error("OCSP responder URL has no host")
    if parts.username is not None or parts.password is not None:
        raise error("OCSP responder URL must not carry user information")
    if any(ord(c) < 0x21 or ord(c) > 0x7E for c in url):
        raise error("OCSP responder URL must be printable ASCII without spaces")


# -- HTTP, with one deadline for everything ---------------------------------------------------
#
# urllib is not used: its timeout bounds each socket operation rather than the exchange, it
# resolves names with no timeout at all, follows redirects to other hosts and schemes, and
# honours proxies from the environment. This client sends one POST straight to the configured
# host and reads one answer, and every step (resolution, connect, TLS, send, headers, body)
# gets only what is left of a single deadline.


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """For https:// responders: the system's CAs, hostname checked (a seam for tests)."""
    return ssl.create_default_context()


def _remaining(deadline: float, what: str) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise _Failure(f"timed out during {what}")
    return left


def _resolve(host: str, port: int, deadline: float) -> list[tuple[int, tuple[object, ...]]]:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        return [(family, (host, port))]
    # getaddrinfo() cannot be interrupted: it runs in a thread we stop waiting for at the
    # deadline. The number of such threads is bounded.
    if not _resolving.acquire(blocking=False):
        raise _Failure("too many name look-ups in progress")
    result: list[tuple[int, tuple[object, ...]]] = []
    problem: list[str] = []
    done = threading.Event()

    def run() -> None:
        try:
            for family, _type, _proto, _name, addr in socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            ):
                if family in (socket.AF_INET, socket.AF_INET6):
                    result.append((family, tuple(addr)))
        except (OSError, UnicodeError) as exc:
            problem.append(str(exc))
        finally:
            _resolving.release()
            done.set()

    threading.Thread(target=run, name="mtlsauth-ocsp-resolve", daemon=True).start()
    if not done.wait(_remaining(deadline, "name resolution")):
        raise _Failure(f"timed out during name resolution of {host}")
    if problem or not result:
        raise _Failure(f"cannot resolve {host}: {problem[0] if problem else 'no address'}")
    return result


def _connect(addrs: Sequence[tuple[int, tuple[object, ...]]], deadline: float) -> socket.socket:
    last: OSError | None = None
    for family, addr in addrs:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(_remaining(deadline, "connect"))
            sock.connect(addr)
            return sock
        except TimeoutError:
            sock.close()
            raise _Failure("timed out during connect") from None
        except OSError as exc:
            sock.close()
            last = exc
        except BaseException:
            sock.close()
            raise
    raise _Failure(f"unreachable: {last.strerror if last and last.strerror else last}")


class _Conn:
    """A socket, optionally with TLS run through memory BIOs so that no call outlives the deadline."""

    def __init__(self, sock: socket.socket, tls_host: str | None, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline
        self._tls: ssl.SSLObject | None = None
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        if tls_host is not None:
            self.start_tls(tls_host)

    def start_tls(self, host: str) -> None:
        self._tls = _tls_context().wrap_bio(self._in, self._out, server_hostname=host)
        self._tls_call(self._tls.do_handshake, "TLS handshake")

    def _raw_recv(self, what: str) -> bytes:
        self._sock.settimeout(_remaining(self._deadline, what))
        try:
            return self._sock.recv(65536)
        except TimeoutError:
            raise _Failure(f"timed out during {what}") from None

    def _raw_send(self, data: bytes, what: str) -> None:
        view = memoryview(data)
        while view:
            self._sock.settimeout(_remaining(self._deadline, what))
            try:
                sent = self._sock.send(view)
            except TimeoutError:
                raise _Failure(f"timed out during {what}") from None
            view = view[sent:]

    def _flush(self, what: str) -> None:
        pending = self._out.read()
        if pending:
            self._raw_send(pending, what)

    def _tls_call(self, fn: Callable[[], _R], what: str) -> _R:
        while True:
            try:
                result = fn()
            except ssl.SSLWantReadError:
                self._flush(what)
                data = self._raw_recv(what)
                if data:
                    self._in.write(data)
                else:
                    self._in.write_eof()
                continue
            self._flush(what)
            return result

    def send(self, data: bytes) -> None:
        if self._tls is None:
            self._raw_send(data, "sending the request")
            return
        tls = self._tls
        self._tls_call(lambda: tls.write(data), "sending the request")

    def recv(self, what: str) -> bytes:
        """Some bytes, or b"" at the end of the stream."""
        if self._tls is None:
            return self._raw_recv(what)
        tls = self._tls
        try:
            return self._tls_call(lambda: tls.read(65536), what)
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            # A close without close_notify is common; a cut answer fails its signature check.
            return b""


def _http_post(url: str, data: bytes, deadline: float, proxy: str | None = None) -> bytes:
    """POST ``data`` to ``url``; the answer's body, or ``_Failure`` naming what went wrong.

    No redirects are followed, no proxy is used unless ``proxy`` is given (the environment's
    ``HTTP_PROXY`` and friends are ignored), and at most ``_MAX_HEADER`` + ``_MAX_RESPONSE``
    bytes are read, all before ``deadline`` (``time.monotonic()``).
    """
    via = f" via proxy {proxy}" if proxy else ""
    try:
        return _exchange(url, data, deadline, proxy)
    except _Failure as exc:
        raise _Failure(f"responder {url}{via}: {exc}") from None
    except ssl.SSLError as exc:
        raise _Failure(f"responder {url}{via}: TLS failed: {exc.reason or exc}") from None
    except OSError as exc:
        raise _Failure(f"responder {url}{via} unreachable: {exc.strerror or exc}") from None


def _host_port(url: str) -> tuple[str, int, str]:
    parts = urllib.parse.urlsplit(url)
    https = parts.scheme.lower() == "https"
    host = parts.hostname or ""
    port = parts.port or (443 if https else 80)
    authority = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        authority += f":{parts.port}"
    return host, port, authority


def _exchange(url: str, data: bytes, deadline: float, proxy: str | None) -> bytes:
    parts = urllib.parse.urlsplit(url)
    https = parts.scheme.lower() == "https"
    host, port, authority = _host_port(url)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    if proxy is None:
        sock = _connect(_resolve(host, port, deadline), deadline)
    else:
        p_host, p_port, _ = _host_port(proxy)
        sock = _connect(_resolve(p_host, p_port, deadline), deadline)
    try:
        conn = _Conn(sock, None, deadline)
        if proxy is not None and https:
            # A tunnel: the proxy sees the host name, never the request or the answer.
            tunnel = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
            conn.send(f"CONNECT {tunnel} HTTP/1.1\r\nHost: {tunnel}\r\n\r\n".encode("ascii"))
            code, _fields, rest = _read_head(conn, "the proxy's answer")
            if code != 200 or rest:
                raise _Failure(f"the proxy refused the tunnel (HTTP {code})")
        elif proxy is not None:
            target = f"http://{authority}{target}"  # absolute form, for the proxy
        if https:
            conn.start_tls(host)
        conn.send(
            f"POST {target} HTTP/1.1\r\nHost: {authority}\r\n"
            "Content-Type: application/ocsp-request\r\nAccept: application/ocsp-response\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode("ascii")
            + data
        )
        return _read_response(conn)
    finally:
        sock.close()


def _read_head(conn: _Conn, what: str) -> tuple[int, dict[bytes, bytes], bytes]:
    """Status code, header fields (lower-case names) and the bytes read past the head."""
    # Grown in place and searched only where the end can newly be: headers sent an octet at
    # a time cost their length, not its square.
    buf = bytearray()
    seen = 0
    while (end := buf.find(b"\r\n\r\n", seen)) < 0:
        if len(buf) > _MAX_HEADER:
            raise _Failure(f"{what}: headers too large")
        chunk = conn.recv(f"reading {what}")
        if not chunk:
            raise _Failure(f"connection closed before {what} ended")
        seen = max(0, len(buf) - 3)
        buf += chunk
    if end > _MAX_HEADER:
        raise _Failure(f"{what}: headers too large")
    head, rest = bytes(buf[:end]), bytes(buf[end + 4 :])
    lines = head.split(b"\r\n")
    status = lines[0].split(None, 2)
    if len(status) < 2 or not status[0].startswith(b"HTTP/1.") or not status[1].isdigit():
        raise _Failure(f"{what} is not HTTP")
    fields: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            raise _Failure(f"{what}: malformed header")
        fields[name.strip().lower()] = value.strip()
    return int(status[1]), fields, rest


def _read_response(conn: _Conn) -> bytes:
    code, fields, body = _read_head(conn, "the response headers")
    if 300 <= code < 400:
        location = fields.get(b"location", b"").decode("ascii", "replace")[:200]
        raise _Failure(f"answered HTTP {code}, a redirect to {location!r}, which is not followed")
    if code != 200:
        raise _Failure(f"answered HTTP {code}")
    chunked = b"chunked" in fields.get(b"transfer-encoding", b"").lower()
    length: int | None = None
    if not chunked and b"content-length" in fields:
        raw = fields[b"content-length"]
        if not raw.isdigit():
            raise _Failure("malformed Content-Length")
        length = int(raw)
        if length > _MAX_RESPONSE:
            raise _Failure("OCSP response too large")
    if chunked:
        return _read_chunked(conn, bytearray(body))
    limit = _MAX_RESPONSE if length is None else length
    data = bytearray(body)  # grown in place: an answer an octet at a time costs its length
    while length is None or len(data) < length:
        if len(data) > limit:
            raise _Failure("OCSP response too large")
        chunk = conn.recv("reading the body")
        if not chunk:
            if length is not None:
                raise _Failure("connection closed before the body ended")
            break
        data += chunk
    if len(data) > limit:
        raise _Failure("OCSP response too large")
    return bytes(data[:length]) if length is not None else bytes(data)


_MAX_CHUNK_LINE = 1024  # a chunk-size line with extensions; a longer one is not an answer's


def _read_chunked(conn: _Conn, data: bytearray) -> bytes:
    """A chunked body (``data``: what arrived with the headers), read as it arrives.

    Each chunk is taken apart once, when it is complete, and never read again: a body that
    arrives in small pieces costs its length. The answer ends with the last chunk and the
    empty line after any trailer fields, or when the server closes after the last chunk.
    """
    out = bytearray()
    pos = 0  # where the next chunk-size line starts
    last: int | None = None  # where the trailer section starts, once the last chunk came
    seen = 0  # how far the trailer section holds no empty line
    cap = _MAX_RESPONSE * 2 + 4096  # chunk framing and trailers around at most _MAX_RESPONSE
    while True:
        while last is None:
            eol = data.find(b"\r\n", pos, pos + _MAX_CHUNK_LINE + 2)
            if eol < 0:
                if len(data) - pos > _MAX_CHUNK_LINE:
                    raise _Failure("malformed chunked body")
                break
            size_text = data[pos:eol].split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise _Failure("malformed chunked body") from None
            if size < 0:
                raise _Failure("malformed chunked body")
            if size == 0:
                last = seen = eol
                break
            if len(out) + size > _MAX_RESPONSE:
                raise _Failure("OCSP response too large")
            start = eol + 2
            if start + size + 2 > len(data):
                break  # the rest of this chunk is still on its way
            if data[start + size : start + size + 2] != b"\r\n":
                raise _Failure("malformed chunked body")
            out += data[start : start + size]
            pos = start + size + 2
        if last is not None:
            if data.find(b"\r\n\r\n", seen) >= 0:
                return bytes(out)  # no need to wait for the server to close
            seen = max(last, len(data) - 3)
        if len(data) > cap:
            raise _Failure("OCSP response too large")
        chunk = conn.recv("reading the body")
        if not chunk:
            if last is None:
                raise _Failure("malformed chunked body")
            return bytes(out)
        data += chunk
