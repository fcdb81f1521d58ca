"""OCSPChecker against a real ``openssl ocsp`` responder and a server returning crafted answers."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import random
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _x509_forge import der, ecdsa_twin
from mtlsauth import CertificateRevoked, RevocationUnavailable
from mtlsauth._revocation._ocsp import OCSPChecker
from mtlsauth.testing import CA, ClientCert, issue_ocsp_responder_cert, openssl_index

UTC = dt.timezone.utc
GENERIC = "the certificate's revocation status could not be established (OCSP)"


def _now() -> dt.datetime:
    return dt.datetime.now(UTC)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Responder:
    ca: CA
    good: ClientCert
    revoked: ClientCert
    unknown: ClientCert
    url: str


@contextlib.contextmanager
def _openssl_responder(d: Path, *extra: str) -> Iterator[Responder]:
    """``openssl ocsp`` on a free port, answering for a fresh CA through a delegated signer."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command line is not installed; the OCSP tests need it")
    ca = CA(organization="OCSP Test")
    good = ca.issue_client_cert(common_name="good")
    revoked = ca.issue_client_cert(common_name="revoked")
    unknown = ca.issue_client_cert(common_name="not in the index")
    ca.revoke(revoked, reason=x509.ReasonFlags.key_compromise)
    signer = issue_ocsp_responder_cert(ca)
    openssl_index(ca, [good, revoked]).write_to_path(d / "index.txt")
    ca.cert_pem.write_to_path(d / "ca.pem")
    signer.cert_pem.write_to_path(d / "rsigner.pem")
    signer.key_pem.write_to_path(d / "rkey.pem")
    port = _free_port()
    log_path = d / "responder.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            ["openssl", "ocsp", "-index", "index.txt", "-port", str(port), "-rsigner",
             "rsigner.pem", "-rkey", "rkey.pem", "-CA", "ca.pem", "-ndays", "1", "-text", *extra],
            cwd=d, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        # Wait for its banner: probing the port would tie up the single-threaded responder.
        while b"waiting for OCSP client connections" not in log_path.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"openssl ocsp did not start: {log_path.read_text()[-500:]}")
            time.sleep(0.02)
        yield Responder(ca, good, revoked, unknown, f"http://127.0.0.1:{port}/")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def responder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Responder]:
    with _openssl_responder(tmp_path_factory.mktemp("ocsp")) as r:
        yield r


def test_responses_signed_with_sha1_are_not_trusted(tmp_path: Path) -> None:
    # cryptography will not build such a response; OpenSSL's responder will (-rmd sha1).
    with _openssl_responder(tmp_path, "-rmd", "sha1") as r:
        _refused(OCSPChecker(responder_url=r.url), _chain(r.good, r.ca), "sha1")


def _chain(c: ClientCert, ca: CA) -> list[x509.Certificate]:
    return [c.certificate, ca.certificate]


def _refused(checker: OCSPChecker, chain: list[x509.Certificate], match: str) -> None:
    """Refused with the generic detail; the reason is kept for the operator (health, log)."""
    with pytest.raises(RevocationUnavailable) as info:
        checker.check(chain, at=_now())
    assert info.value.detail == GENERIC
    assert re.search(match, str(checker.health()["last_error"])), checker.health()["last_error"]


# -- against openssl ocsp -----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["hard-fail", "soft-fail"])
def test_good_is_cached_until_next_update(responder: Responder, mode: str) -> None:
    checker = OCSPChecker(responder_url=responder.url, failure=mode)  # type: ignore[arg-type]
    until = checker.check(_chain(responder.good, responder.ca), at=_now())
    assert until is not None
    assert dt.timedelta(hours=23) < until - _now() <= dt.timedelta(days=1)
    assert checker.health()["cached"] == 1


@pytest.mark.parametrize("mode", ["hard-fail", "soft-fail"])
def test_revoked_is_refused_in_both_modes(responder: Responder, mode: str) -> None:
    checker = OCSPChecker(responder_url=responder.url, failure=mode)  # type: ignore[arg-type]
    for _ in range(2):  # the second answer comes from the cache
        with pytest.raises(CertificateRevoked, match="keyCompromise"):
            checker.check(_chain(responder.revoked, responder.ca), at=_now())


@pytest.mark.parametrize("mode", ["hard-fail", "soft-fail"])
def test_a_verified_unknown_refuses_in_both_modes(responder: Responder, mode: str) -> None:
    """The CA's own signed word that it does not know the certificate (a mis-issued one,
    say) is an answer, not an outage: soft-fail does not admit it."""
    chain = _chain(responder.unknown, responder.ca)
    checker = OCSPChecker(responder_url=responder.url, failure=mode)  # type: ignore[arg-type]
    for _ in range(2):  # the second time from the cache
        _refused(checker, chain, "UNKNOWN")


def test_url_from_the_certificates_aia(responder: Responder) -> None:
    aia = x509.AuthorityInformationAccess(
        [
            x509.AccessDescription(
                AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(responder.url)
            )
        ]
    )
    leaf = responder.ca.issue_client_cert(common_name="aia", extra_extensions=[(aia, False)])
    # Not in the responder's index: an authenticated UNKNOWN proves the AIA URL was used.
    _refused(OCSPChecker(), _chain(leaf, responder.ca), "UNKNOWN")
    _refused(OCSPChecker(), _chain(responder.good, responder.ca), "names no OCSP responder")


def test_responder_down_hard_vs_soft(caplog: pytest.LogCaptureFixture) -> None:
    ca = CA()
    leaf = ca.issue_client_cert()
    url = f"http://127.0.0.1:{_free_port()}/"  # nothing listens there
    _refused(OCSPChecker(responder_url=url, timeout=1), _chain(leaf, ca), "unreachable")
    soft = OCSPChecker(responder_url=url, timeout=1, failure="soft-fail")
    with caplog.at_level(logging.WARNING, logger="mtlsauth"):
        assert soft.check(_chain(leaf, ca), at=_now()) is not None
    assert any("soft-fail" in r.getMessage() for r in caplog.records)
    assert soft.health()["last_error"]


def test_a_retry_after_beyond_the_calendar(caplog: pytest.LogCaptureFixture) -> None:
    # retry_after is any finite number of seconds: one too large for a timedelta is a
    # ValueError at construction (it was OverflowError), and one that reaches past year 9999
    # from now admits, in soft-fail, until the end of the calendar (it refused: the
    # overflow became revocation_unavailable).
    with pytest.raises(ValueError, match="retry_after"):
        OCSPChecker(responder_url="http://127.0.0.1:9/", retry_after=1e15)
    ca = CA()
    url = f"http://127.0.0.1:{_free_port()}/"  # nothing listens there
    soft = OCSPChecker(responder_url=url, timeout=1, failure="soft-fail", retry_after=3e11)
    until = soft.check(_chain(ca.issue_client_cert(), ca), at=_now())
    assert until == dt.datetime.max.replace(tzinfo=dt.timezone.utc)


# -- crafted answers ----------------------------------------------------------------------


class Crafted:
    """A tiny OCSP server whose answer is computed by ``self.answer(request)``."""

    def __init__(self) -> None:
        self.answer: Callable[[ocsp.OCSPRequest], bytes] = lambda _r: b""
        self.status = 200
        self.requests = 0
        crafted = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                crafted.requests += 1
                data = crafted.answer(ocsp.load_der_ocsp_request(body))
                self.send_response(crafted.status)
                self.send_header("Content-Type", "application/ocsp-response")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture(scope="module")
def crafted() -> Iterator[Crafted]:
    server = Crafted()
    yield server
    server.close()


@dataclass
class Setup:
    ca: CA
    leaf: ClientCert
    delegate: ClientCert


@pytest.fixture(scope="module")
def setup() -> Setup:
    ca = CA(organization="Crafted OCSP")
    return Setup(ca, ca.issue_client_cert(common_name="leaf"), issue_ocsp_responder_cert(ca))


def _nonce_of(req: ocsp.OCSPRequest) -> bytes | None:
    try:
        return req.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    except x509.ExtensionNotFound:
        return None


def _response(
    s: Setup,
    *,
    cert: x509.Certificate | None = None,
    status: ocsp.OCSPCertStatus = ocsp.OCSPCertStatus.GOOD,
    signer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
    include: tuple[x509.Certificate, ...] = (),
    this_update: dt.timedelta = dt.timedelta(minutes=-1),
    next_update: dt.timedelta | None = dt.timedelta(hours=1),
    nonce: bytes | Callable[[ocsp.OCSPRequest], bytes | None] | None = _nonce_of,
    reason: x509.ReasonFlags = x509.ReasonFlags.superseded,
    extensions: tuple[tuple[x509.ExtensionType, bool], ...] = (),
) -> Callable[[ocsp.OCSPRequest], bytes]:
    def build(req: ocsp.OCSPRequest) -> bytes:
        now = _now()
        revoked = status == ocsp.OCSPCertStatus.REVOKED
        b = ocsp.OCSPResponseBuilder().add_response(
            cert=cert or s.leaf.certificate,
            issuer=s.ca.certificate,
            algorithm=hashes.SHA1(),  # noqa: S303 - RFC 6960 CertID
            cert_status=status,
            this_update=now + this_update,
            next_update=now + next_update if next_update is not None else None,
            revocation_time=now - dt.timedelta(hours=1) if revoked else None,
            revocation_reason=reason if revoked else None,
        )
        cert_, key = signer or (s.ca.certificate, s.ca.private_key)  # type: ignore[assignment]
        b = b.responder_id(ocsp.OCSPResponderEncoding.HASH, cert_)
        if include:
            b = b.certificates(list(include))
        n = nonce(req) if callable(nonce) else nonce
        if n is not None:
            b = b.add_extension(x509.OCSPNonce(n), critical=False)
        for extension, critical in extensions:
            b = b.add_extension(extension, critical=critical)
        return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)

    return build


def _attacker() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    evil = CA(organization="Evil")
    return evil.certificate, evil.private_key  # type: ignore[return-value]


def _delegate(s: Setup) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    return s.delegate.certificate, s.delegate.private_key  # type: ignore[return-value]


def _tampered(build: Callable[[ocsp.OCSPRequest], bytes]) -> Callable[[ocsp.OCSPRequest], bytes]:
    """The CA's genuine answer with its signature's last byte flipped (the signature ends it)."""
    return lambda req: (der := build(req))[:-1] + bytes([der[-1] ^ 1])


def _other_delegate(s: Setup, **kwargs: object) -> Callable[[ocsp.OCSPRequest], bytes]:
    d = issue_ocsp_responder_cert(s.ca, **kwargs)  # type: ignore[arg-type]
    return _response(s, signer=(d.certificate, d.private_key), include=(d.certificate,))  # type: ignore[arg-type]


REJECTED = [
    pytest.param(
        lambda s: _response(s, signer=_attacker()), "unknown responder", id="forged: unrelated key"
    ),
    pytest.param(
        lambda s: _response(s, signer=(a := _attacker()), include=(a[0],)),
        "not issued",
        id="forged: unrelated responder cert included",
    ),
    pytest.param(
        lambda s: _tampered(_response(s)),
        "bad signature",
        id="tampered signature",
    ),
    pytest.param(
        lambda s: _other_delegate(s, ocsp_signing=False),
        "OCSPSigning",
        id="delegate without id-kp-OCSPSigning",
    ),
    pytest.param(
        lambda s: _other_delegate(
            s, not_before=_now() - dt.timedelta(days=2), not_after=_now() - dt.timedelta(days=1)
        ),
        "expired",
        id="expired delegate",
    ),
    pytest.param(
        lambda s: _response(
            s, next_update=dt.timedelta(minutes=-30), this_update=dt.timedelta(hours=-2)
        ),
        "stale",
        id="stale: nextUpdate passed",
    ),
    pytest.param(
        lambda s: _response(s, this_update=dt.timedelta(hours=1)),
        "future",
        id="thisUpdate in the future",
    ),
    pytest.param(
        lambda s: _response(s, cert=s.ca.issue_client_cert(common_name="someone else").certificate),
        "CertID",
        id="wrong CertID: another serial",
    ),
    pytest.param(lambda s: _response(s, nonce=b"\x00" * 16), "nonce", id="replayed: another nonce"),
    pytest.param(
        lambda s: (
            lambda _req: ocsp.OCSPResponseBuilder.build_unsuccessful(
                ocsp.OCSPResponseStatus.TRY_LATER
            ).public_bytes(serialization.Encoding.DER)
        ),
        "TRY_LATER",
        id="unsuccessful status",
    ),
    pytest.param(lambda s: lambda _req: b"not DER", "unparsable", id="garbage body"),
    # A verified UNKNOWN refuses under soft-fail too: test_soft_fail_does_not_admit_...
]


@pytest.mark.parametrize(("answer", "message"), REJECTED)
def test_untrustworthy_answers(
    crafted: Crafted, setup: Setup, answer: Callable[[Setup], Callable[..., bytes]], message: str
) -> None:
    crafted.answer = answer(setup)
    chain = _chain(setup.leaf, setup.ca)
    _refused(OCSPChecker(responder_url=crafted.url), chain, message)
    # Soft-fail admits (that is its documented risk), but never caches a forged GOOD for long.
    soft = OCSPChecker(responder_url=crafted.url, failure="soft-fail", retry_after=5)
    until = soft.check(chain, at=_now())
    assert until is not None
    assert until - _now() <= dt.timedelta(seconds=6)


ACCEPTED = [
    pytest.param(lambda s: _response(s), id="signed by the CA itself"),
    pytest.param(
        lambda s: _response(s, signer=_delegate(s), include=(s.delegate.certificate,)),
        id="delegated responder with OCSPSigning",
    ),
    pytest.param(lambda s: _response(s, nonce=None), id="no nonce echoed"),
    pytest.param(lambda s: _response(s, next_update=None), id="no nextUpdate: max_age applies"),
    pytest.param(
        # notAfter 99991231235959Z: no expiration date (RFC 5280 4.1.2.5); its window
        # widened by the tolerated skew must not overflow into "unprocessable answer"
        lambda s: _other_delegate(
            s, not_after=dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.timezone.utc)
        ),
        id="delegated responder without an expiration date",
    ),
]


@pytest.mark.parametrize("answer", ACCEPTED)
def test_trustworthy_answers(
    crafted: Crafted, setup: Setup, answer: Callable[[Setup], Callable[..., bytes]]
) -> None:
    crafted.answer = answer(setup)
    assert OCSPChecker(responder_url=crafted.url).check(_chain(setup.leaf, setup.ca), at=_now())


_CALENDAR_END = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.timezone.utc)


def test_answers_dated_to_the_end_of_the_calendar(crafted: Crafted, setup: Setup) -> None:
    # A nextUpdate in 9999, or a max_age of timedelta.max for an answer without one, plus
    # the tolerated skew went past the calendar: OverflowError, "unprocessable answer".
    chain = _chain(setup.leaf, setup.ca)
    crafted.answer = _response(setup, next_update=_CALENDAR_END - _now())
    assert OCSPChecker(responder_url=crafted.url).check(chain, at=_now())
    crafted.answer = _response(setup, next_update=None)
    checker = OCSPChecker(responder_url=crafted.url, max_age=dt.timedelta.max)
    assert checker.check(chain, at=_now())
    # ... and a REVOKED answer, final, must not turn into "no answer", which soft-fail admits
    crafted.answer = _response(setup, status=ocsp.OCSPCertStatus.REVOKED, next_update=None)
    soft = OCSPChecker(responder_url=crafted.url, failure="soft-fail", max_age=dt.timedelta.max)
    with pytest.raises(CertificateRevoked, match="superseded"):
        soft.check(chain, at=_now())


def test_revoked_answer_signed_by_the_ca(crafted: Crafted, setup: Setup) -> None:
    crafted.answer = _response(setup, status=ocsp.OCSPCertStatus.REVOKED)
    with pytest.raises(CertificateRevoked, match="superseded"):
        OCSPChecker(responder_url=crafted.url, failure="soft-fail").check(
            _chain(setup.leaf, setup.ca), at=_now()
        )


def test_http_error_is_no_answer(crafted: Crafted, setup: Setup) -> None:
    crafted.answer = _response(setup)
    crafted.status = 500
    try:
        _refused(OCSPChecker(responder_url=crafted.url), _chain(setup.leaf, setup.ca), "HTTP 500")
    finally:
        crafted.status = 200


def test_answers_and_failures_are_cached(
    crafted: Crafted, setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    crafted.answer = _response(setup)
    checker = OCSPChecker(responder_url=crafted.url)
    before = crafted.requests
    for _ in range(5):
        checker.check(_chain(setup.leaf, setup.ca), at=_now())
    assert crafted.requests == before + 1
    # An answer is used only until its nextUpdate: later, the responder is asked again.
    with (
        caplog.at_level(logging.WARNING, logger="mtlsauth"),
        pytest.raises(RevocationUnavailable),
    ):
        checker.check(_chain(setup.leaf, setup.ca), at=_now() + dt.timedelta(hours=2))
    assert "stale" in caplog.records[-1].getMessage()
    assert crafted.requests == before + 2
    crafted.answer = _response(setup, signer=_attacker())
    failing = OCSPChecker(responder_url=crafted.url, retry_after=60)
    for _ in range(3):
        with pytest.raises(RevocationUnavailable):
            failing.check(_chain(setup.leaf, setup.ca), at=_now())
    assert crafted.requests == before + 3


def test_chain_scope_asks_for_every_certificate(crafted: Crafted) -> None:
    root = CA(organization="Scope")
    inter = root.intermediate()
    leaf = inter.issue_client_cert()
    chain = [leaf.certificate, inter.certificate, root.certificate]

    def answer(req: ocsp.OCSPRequest) -> bytes:
        is_leaf = req.serial_number == leaf.certificate.serial_number
        cert, issuer = (leaf.certificate, inter) if is_leaf else (inter.certificate, root)
        b = ocsp.OCSPResponseBuilder().add_response(
            cert=cert,
            issuer=issuer.certificate,
            algorithm=hashes.SHA1(),  # noqa: S303 - RFC 6960 CertID
            cert_status=ocsp.OCSPCertStatus.GOOD,
            this_update=_now(),
            next_update=_now() + dt.timedelta(hours=1),
            revocation_time=None,
            revocation_reason=None,
        )
        b = b.responder_id(ocsp.OCSPResponderEncoding.HASH, issuer.certificate)
        return b.sign(issuer.private_key, hashes.SHA256()).public_bytes(  # type: ignore[arg-type]
            serialization.Encoding.DER
        )

    crafted.answer = answer
    before = crafted.requests
    OCSPChecker(responder_url=crafted.url).check(chain, at=_now())
    assert crafted.requests == before + 1
    OCSPChecker(responder_url=crafted.url, scope="chain").check(chain, at=_now())
    assert crafted.requests == before + 3


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"responder_url": "file:///etc/passwd"}, ValueError),
        ({"failure": "lenient"}, ValueError),
        ({"scope": "all"}, ValueError),
        ({"timeout": 0}, ValueError),
        ({"trusted_responders": ["pem"]}, TypeError),
    ],
)
def test_bad_options(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        OCSPChecker(**kwargs)  # type: ignore[arg-type]


def test_aia_with_a_non_http_url_is_refused() -> None:
    ca = CA()
    aia = x509.AuthorityInformationAccess(
        [
            x509.AccessDescription(
                AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier("file:///x")
            )
        ]
    )
    leaf = ca.issue_client_cert(extra_extensions=[(aia, False)])
    _refused(OCSPChecker(), _chain(leaf, ca), "http")


@pytest.mark.parametrize(
    "chain",
    [[object(), object()], [], [object()], "x", None],
    ids=["objects", "empty", "one object", "a string", "None"],
)
def test_check_fails_closed_on_nonsense(chain: object) -> None:
    """Nothing to check is not a pass: a chain with no certificate in it is refused."""
    with pytest.raises(RevocationUnavailable) as info:
        OCSPChecker().check(chain, at=_now())  # type: ignore[arg-type]
    assert info.value.detail == GENERIC


def test_protocol_properties() -> None:
    checker = OCSPChecker()
    assert checker.may_block is True
    assert checker.token is checker.token


# -- the network path: one deadline, one fetch, only where configured ----------------------


class RawServer:
    """A TCP listener on 127.0.0.1 that hands every connection to ``behave`` in a thread."""

    def __init__(self, behave: Callable[[socket.socket], object], *, accept: bool = True) -> None:
        self.behave = behave
        self.connections = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/"
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        if accept:
            self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:
            self.behave(conn)

    def close(self) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()
        self.sock.close()


def _read_request(conn: socket.socket) -> bytes:
    conn.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        body += conn.recv(4096)
    return head + b"\r\n\r\n" + body


def _trickle(conn: socket.socket, data: bytes, pause: float, stop: threading.Event) -> None:
    for i in range(len(data)):
        if stop.wait(pause):
            return
        conn.sendall(data[i : i + 1])


@contextlib.contextmanager
def _raw(behave: Callable[[socket.socket], object], **kw: bool) -> Iterator[RawServer]:
    server = RawServer(behave, **kw)
    try:
        yield server
    finally:
        server.close()


def _good_http(s: Setup) -> Callable[[socket.socket], bytes]:
    build = _response(s)

    def answer(conn: socket.socket) -> bytes:
        req = _read_request(conn)
        der = build(ocsp.load_der_ocsp_request(req.partition(b"\r\n\r\n")[2]))
        return (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/ocsp-response\r\n"
            b"Content-Length: " + str(len(der)).encode() + b"\r\n\r\n" + der
        )

    return answer


def _slow_cases(s: Setup) -> dict[str, Callable[[RawServer], Callable[[socket.socket], None]]]:
    answer = _good_http(s)

    def headers(srv: RawServer) -> Callable[[socket.socket], None]:
        return lambda conn: _trickle(conn, answer(conn), 0.2, srv.stop)

    def body(srv: RawServer) -> Callable[[socket.socket], None]:
        def run(conn: socket.socket) -> None:
            data = answer(conn)
            head, _, der = data.partition(b"\r\n\r\n")
            conn.sendall(head + b"\r\n\r\n")
            _trickle(conn, der, 0.2, srv.stop)

        return run

    def silent(srv: RawServer) -> Callable[[socket.socket], None]:
        def run(conn: socket.socket) -> None:
            _read_request(conn)
            srv.stop.wait(30)

        return run

    return {"trickled headers": headers, "trickled body": body, "never answers": silent}


@pytest.mark.slow
@pytest.mark.parametrize(
    "case", ["trickled headers", "trickled body", "never answers", "no accept"]
)
@pytest.mark.parametrize("mode", ["hard-fail", "soft-fail"])
def test_one_deadline_for_the_whole_fetch(setup: Setup, case: str, mode: str) -> None:
    holder: list[RawServer] = []

    def behave(conn: socket.socket) -> None:
        _slow_cases(setup)[case](holder[0])(conn)

    with _raw(behave, accept=case != "no accept") as srv:
        holder.append(srv)
        checker = OCSPChecker(responder_url=srv.url, timeout=1.0, failure=mode)  # type: ignore[arg-type]
        start = time.monotonic()
        if mode == "hard-fail":
            with pytest.raises(RevocationUnavailable):
                checker.check(_chain(setup.leaf, setup.ca), at=_now())
        else:
            assert checker.check(_chain(setup.leaf, setup.ca), at=_now()) is not None
        elapsed = time.monotonic() - start
        assert elapsed < 1.5, f"{case}: check() took {elapsed:.2f} s with timeout=1.0"
        assert "timed out" in str(checker.health()["last_error"])


def test_the_slow_responder_is_answered_in_time_when_fast_enough(setup: Setup) -> None:
    # The same trickle, fast enough to finish inside the deadline: the answer is used.
    holder: list[RawServer] = []
    answer = _good_http(setup)

    def behave(conn: socket.socket) -> None:
        data = answer(conn)
        head, _, der = data.partition(b"\r\n\r\n")
        conn.sendall(head + b"\r\n\r\n" + der[:-20])
        _trickle(conn, der[-20:], 0.01, holder[0].stop)

    with _raw(behave) as srv:
        holder.append(srv)
        checker = OCSPChecker(responder_url=srv.url, timeout=3.0)
        assert checker.check(_chain(setup.leaf, setup.ca), at=_now()) is not None


def test_dns_resolution_is_inside_the_deadline(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No real resolver may be used in tests: a resolver that hangs stands in for a slow DNS.
    release = threading.Event()

    def hanging(*_args: object, **_kw: object) -> list[object]:
        release.wait(10)
        raise OSError("resolver gave up")

    monkeypatch.setattr(socket, "getaddrinfo", hanging)
    checker = OCSPChecker(responder_url="http://ocsp.example.test/", timeout=0.5)
    start = time.monotonic()
    try:
        with pytest.raises(RevocationUnavailable):
            checker.check(_chain(setup.leaf, setup.ca), at=_now())
        assert time.monotonic() - start < 1.0
        assert "timed out" in str(checker.health()["last_error"])
    finally:
        release.set()


def test_concurrent_misses_share_one_fetch(setup: Setup) -> None:
    holder: list[RawServer] = []
    answer = _good_http(setup)

    def behave(conn: socket.socket) -> None:
        data = answer(conn)
        holder[0].stop.wait(0.5)  # slow enough that every thread misses while it runs
        conn.sendall(data)

    with _raw(behave) as srv:
        holder.append(srv)
        checker = OCSPChecker(responder_url=srv.url, timeout=5.0)
        results: list[object] = []
        barrier = threading.Barrier(10)

        def one() -> None:
            barrier.wait()
            try:
                results.append(checker.check(_chain(setup.leaf, setup.ca), at=_now()))
            except Exception as exc:  # noqa: BLE001 - recorded and asserted below
                results.append(exc)

        threads = [threading.Thread(target=one) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert srv.connections == 1
        assert len(results) == 10
        assert all(isinstance(r, dt.datetime) for r in results), results


@pytest.mark.slow
def test_waiters_for_a_shared_fetch_keep_their_own_deadline(setup: Setup) -> None:
    holder: list[RawServer] = []

    def behave(conn: socket.socket) -> None:
        _read_request(conn)
        holder[0].stop.wait(30)

    with _raw(behave) as srv:
        holder.append(srv)
        checker = OCSPChecker(responder_url=srv.url, timeout=1.0)
        errors: list[float] = []

        def one() -> None:
            start = time.monotonic()
            with contextlib.suppress(RevocationUnavailable):
                checker.check(_chain(setup.leaf, setup.ca), at=_now())
            errors.append(time.monotonic() - start)

        threads = [threading.Thread(target=one) for _ in range(5)]
        for t in threads:
            t.start()
            time.sleep(0.1)
        for t in threads:
            t.join()
        assert srv.connections == 1
        assert max(errors) < 1.5, errors


def test_redirects_are_not_followed(setup: Setup) -> None:
    hits: list[bytes] = []

    def internal(conn: socket.socket) -> None:
        hits.append(_read_request(conn))
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    with _raw(internal) as target:
        for status in (301, 302, 303, 307, 308):
            location = f"{target.url}admin/flush?all=1".encode()

            def redirect(conn: socket.socket, status: int = status, loc: bytes = location) -> None:
                _read_request(conn)
                conn.sendall(
                    b"HTTP/1.1 %d Moved\r\nLocation: %s\r\nContent-Length: 0\r\n\r\n"
                    % (status, loc)
                )

            with _raw(redirect) as srv:
                checker = OCSPChecker(responder_url=srv.url, timeout=2.0)
                with pytest.raises(RevocationUnavailable) as info:
                    checker.check(_chain(setup.leaf, setup.ca), at=_now())
                assert srv.url not in info.value.detail
                assert "redirect" in str(checker.health()["last_error"])
        assert hits == []


def test_environment_proxies_are_ignored(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    proxied: list[bytes] = []

    def proxy(conn: socket.socket) -> None:
        proxied.append(_read_request(conn))

    answer = _good_http(setup)
    with _raw(proxy) as evil, _raw(lambda conn: conn.sendall(answer(conn))) as srv:
        for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
            monkeypatch.setenv(var, evil.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        checker = OCSPChecker(responder_url=srv.url.replace("127.0.0.1", "localhost"), timeout=2)
        assert checker.check(_chain(setup.leaf, setup.ca), at=_now()) is not None
    assert proxied == []


def test_client_detail_does_not_reveal_what_happened(setup: Setup) -> None:
    """Closed port, open port, HTTP error, redirect: the client sees one and the same detail."""
    details: dict[str, str] = {}
    errors: dict[str, str] = {}

    def status(code: int) -> Callable[[socket.socket], None]:
        def run(conn: socket.socket) -> None:
            _read_request(conn)
            conn.sendall(b"HTTP/1.1 %d X\r\nContent-Length: 0\r\n\r\n" % code)

        return run

    cases: dict[str, Callable[[socket.socket], object] | None] = {
        "closed port": None,
        "open, talks nonsense": lambda conn: (
            _read_request(conn),
            conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n"),
        ),
        "open, closes": lambda conn: _read_request(conn) and None,
        "HTTP 404": status(404),
        "HTTP 500": status(500),
        "garbage body": lambda conn: (
            _read_request(conn),
            conn.sendall(b"HTTP/1.0 200 OK\r\n\r\nnot DER"),
        ),
    }
    for name, behave in cases.items():
        if behave is None:
            url = f"http://127.0.0.1:{_free_port()}/"
            checker = OCSPChecker(responder_url=url, timeout=1)
            with pytest.raises(RevocationUnavailable) as info:
                checker.check(_chain(setup.leaf, setup.ca), at=_now())
        else:
            with _raw(behave) as srv:
                url = srv.url
                checker = OCSPChecker(responder_url=url, timeout=1)
                with pytest.raises(RevocationUnavailable) as info:
                    checker.check(_chain(setup.leaf, setup.ca), at=_now())
        details[name] = info.value.detail
        errors[name] = str(checker.health()["last_error"])
        assert url in errors[name]  # the operator sees where and what
    assert len(set(details.values())) == 1, details
    assert len(set(errors.values())) == len(errors), errors
    assert "127.0.0.1" not in next(iter(details.values()))


def test_response_size_is_bounded(setup: Setup) -> None:
    def huge(conn: socket.socket) -> None:
        _read_request(conn)
        conn.sendall(b"HTTP/1.0 200 OK\r\n\r\n")
        with contextlib.suppress(OSError):
            for _ in range(1024):
                conn.sendall(b"\x00" * 65536)

    with _raw(huge) as srv:
        checker = OCSPChecker(responder_url=srv.url, timeout=5)
        with pytest.raises(RevocationUnavailable):
            checker.check(_chain(setup.leaf, setup.ca), at=_now())
        assert "too large" in str(checker.health()["last_error"])

    def endless_headers(conn: socket.socket) -> None:
        _read_request(conn)
        conn.sendall(b"HTTP/1.0 200 OK\r\n")
        with contextlib.suppress(OSError):
            for _ in range(100_000):
                conn.sendall(b"X-Filler: " + b"a" * 1000 + b"\r\n")

    with _raw(endless_headers) as srv:
        checker = OCSPChecker(responder_url=srv.url, timeout=5)
        with pytest.raises(RevocationUnavailable):
            checker.check(_chain(setup.leaf, setup.ca), at=_now())
        assert "too large" in str(checker.health()["last_error"])


# -- what-if calls ------------------------------------------------------------------------


def _switchable(s: Setup) -> tuple[Crafted, dict[str, ocsp.OCSPCertStatus]]:
    state = {"status": ocsp.OCSPCertStatus.GOOD}
    server = Crafted()
    server.answer = lambda req: _response(s, status=state["status"])(req)
    return server, state


def test_what_if_in_soft_fail_does_not_hide_a_later_revocation(setup: Setup) -> None:
    from mtlsauth import TrustStore, Verifier

    server, state = _switchable(setup)
    try:
        checker = OCSPChecker(responder_url=server.url, failure="soft-fail", retry_after=600)
        verifier = Verifier(
            trust_store=TrustStore.from_pem(setup.ca.cert_pem.bytes()), revocation=checker
        )
        chain = setup.leaf.chain_pem.text()
        # Two hours ahead the answer (nextUpdate in 1 h) is stale: soft-fail admits.
        verifier.verify(chain, at=_now() + dt.timedelta(hours=2))
        assert checker.health()["last_error"] is None
        assert checker.health()["cached"] == 0
        state["status"] = ocsp.OCSPCertStatus.REVOKED
        with pytest.raises(CertificateRevoked):
            verifier.verify(chain)
    finally:
        server.close()


def test_what_if_in_hard_fail_does_not_refuse_a_good_certificate_later(setup: Setup) -> None:
    from mtlsauth import TrustStore, Verifier

    server, _state = _switchable(setup)
    try:
        checker = OCSPChecker(responder_url=server.url, retry_after=600)
        verifier = Verifier(
            trust_store=TrustStore.from_pem(setup.ca.cert_pem.bytes()), revocation=checker
        )
        chain = setup.leaf.chain_pem.text()
        with pytest.raises(RevocationUnavailable):
            verifier.verify(chain, at=_now() + dt.timedelta(hours=2))
        assert checker.health()["last_error"] is None
        assert verifier.verify(chain).common_name == "leaf"
        assert verifier.health()["ok"] is True
    finally:
        server.close()


def test_what_if_reads_but_never_writes_the_verifier_cache(setup: Setup) -> None:
    from mtlsauth import CertificateInvalid, TrustStore, Verifier

    server, _state = _switchable(setup)
    try:
        verifier = Verifier(
            trust_store=TrustStore.from_pem(setup.ca.cert_pem.bytes()),
            revocation=OCSPChecker(responder_url=server.url),
        )
        chain = setup.leaf.chain_pem.text()
        verifier.verify(chain, at=_now() + dt.timedelta(minutes=1))
        assert (
            verifier.health()["cache"]
            == Verifier(trust_store=TrustStore.from_pem(setup.ca.cert_pem.bytes())).health()[
                "cache"
            ]
        )
        verifier.verify(chain)  # cached now
        stats = verifier.health()["cache"]
        # A cached success does not answer for another moment: ten years on, it has expired.
        with pytest.raises(CertificateInvalid) as info:
            verifier.verify(chain, at=_now() + dt.timedelta(days=3650))
        assert info.value.code == "certificate_expired"
        assert verifier.health()["cache"] == stats
    finally:
        server.close()


def test_what_if_does_not_join_or_start_a_shared_fetch(setup: Setup) -> None:
    server, _state = _switchable(setup)
    try:
        checker = OCSPChecker(responder_url=server.url)
        before = server.requests
        checker.check(_chain(setup.leaf, setup.ca), at=_now() + dt.timedelta(minutes=10))
        assert server.requests == before + 1
        assert checker.health()["cached"] == 0
        checker.check(_chain(setup.leaf, setup.ca), at=_now())
        assert checker.health()["cached"] == 1
        # A what-if call reuses a verified answer that covers its moment (a read, no fetch).
        checker.check(_chain(setup.leaf, setup.ca), at=_now() + dt.timedelta(minutes=10))
        assert server.requests == before + 2
    finally:
        server.close()


def test_what_if_close_to_now_writes_nothing_either(setup: Setup) -> None:
    from mtlsauth import TrustStore, Verifier

    server = Crafted()
    server.answer = lambda _req: b"not DER"
    try:
        checker = OCSPChecker(responder_url=server.url, retry_after=600)
        verifier = Verifier(
            trust_store=TrustStore.from_pem(setup.ca.cert_pem.bytes()), revocation=checker
        )
        chain = setup.leaf.chain_pem.text()
        with pytest.raises(RevocationUnavailable):
            verifier.verify(chain, at=_now() + dt.timedelta(seconds=1))
        assert checker.health()["last_error"] is None
        server.answer = _response(setup)
        assert verifier.verify(chain).common_name == "leaf"
    finally:
        server.close()


# -- bounded work, and nothing but a refusal from malformed bytes --------------------------


def _judge(
    checker: OCSPChecker, body: bytes, s: Setup, request: ocsp.OCSPRequest | None = None
) -> object:
    """What the checker makes of a responder's bytes: an answer, or the reason it refused."""
    from mtlsauth._revocation._ocsp import _Failure

    if request is None:
        request = (
            ocsp.OCSPRequestBuilder()
            .add_certificate(s.leaf.certificate, s.ca.certificate, hashes.SHA1())  # noqa: S303
            .build()
        )
    try:
        return checker._evaluate(body, request, None, s.leaf.certificate, s.ca.certificate, _now())
    except _Failure as exc:
        return exc


def test_too_many_certificates_in_a_response_is_no_answer(setup: Setup) -> None:
    req = ocsp.OCSPRequestBuilder().add_certificate(
        setup.leaf.certificate,
        setup.ca.certificate,
        hashes.SHA1(),  # noqa: S303
    )
    many = tuple(CA().certificate for _ in range(9))
    few = many[:8]
    checker = OCSPChecker()
    assert "more than 8 certificates" in str(
        _judge(checker, _response(setup, include=many, nonce=None)(req.build()), setup)
    )
    assert not isinstance(
        _judge(checker, _response(setup, include=few, nonce=None)(req.build()), setup), Exception
    )


def test_too_many_single_responses_is_no_answer(tmp_path: Path, setup: Setup) -> None:
    """``openssl ocsp`` answers a request for 40 serials with 40 SingleResponses."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command line is not installed")
    others = [setup.ca.issue_client_cert(common_name=f"n{i}") for i in range(39)]
    openssl_index(setup.ca, [setup.leaf, *others]).write_to_path(tmp_path / "index.txt")
    setup.ca.cert_pem.write_to_path(tmp_path / "ca.pem")
    (tmp_path / "key.pem").write_bytes(
        setup.ca.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )

    def answer_for(certs: list[ClientCert]) -> bytes:
        serials = [a for c in certs for a in ("-serial", str(c.certificate.serial_number))]
        subprocess.run(
            ["openssl", "ocsp", "-issuer", "ca.pem", *serials, "-no_nonce", "-reqout", "req.der"],
            cwd=tmp_path, check=True, capture_output=True,
        )  # fmt: skip
        subprocess.run(
            ["openssl", "ocsp", "-index", "index.txt", "-rsigner", "ca.pem", "-rkey", "key.pem",
             "-CA", "ca.pem", "-reqin", "req.der", "-respout", "resp.der", "-ndays", "1",
             "-rmd", "sha256"],
            cwd=tmp_path, check=True, capture_output=True,
        )  # fmt: skip
        return (tmp_path / "resp.der").read_bytes()

    checker = OCSPChecker()
    assert "more than 32 answers" in str(_judge(checker, answer_for([setup.leaf, *others]), setup))
    assert not isinstance(_judge(checker, answer_for([setup.leaf, *others[:31]]), setup), Exception)


@pytest.fixture(scope="module")
def genuine(setup: Setup) -> bytes:
    req = ocsp.OCSPRequestBuilder().add_certificate(
        setup.leaf.certificate,
        setup.ca.certificate,
        hashes.SHA1(),  # noqa: S303
    )
    delegate = (setup.delegate.certificate, setup.delegate.private_key)
    return _response(setup, signer=delegate, include=(setup.delegate.certificate,), nonce=None)(  # type: ignore[arg-type]
        req.build()
    )


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_mutated_responses_are_refused_never_raised(
    setup: Setup, genuine: bytes, data: st.DataObject
) -> None:
    from mtlsauth._revocation._ocsp import _Failure

    body = bytearray(genuine)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert", "length"]))
        pos = data.draw(st.integers(0, len(body) - 1))
        if op == "flip":
            body[pos] ^= data.draw(st.integers(1, 255))
        elif op == "cut":
            del body[pos:]
            if not body:
                body = bytearray(b"\x30")
        elif op == "insert":
            body[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
        else:  # DER lengths are where parsers slip: make one huge or zero
            body[pos] = data.draw(st.sampled_from([0x00, 0x7F, 0x80, 0x81, 0x84, 0xFF]))
    outcome = _judge(OCSPChecker(), bytes(body), setup)
    assert isinstance(outcome, _Failure) or outcome.failure is None  # type: ignore[attr-defined]


def test_mutated_responses_end_to_end_only_refuse(
    crafted: Crafted, setup: Setup, genuine: bytes
) -> None:
    rng = random.Random(1234)
    chain = _chain(setup.leaf, setup.ca)
    for _ in range(60):
        body = bytearray(genuine)
        body[rng.randrange(len(body))] ^= rng.randrange(1, 256)
        crafted.answer = lambda _req, b=bytes(body): b
        checker = OCSPChecker(responder_url=crafted.url)
        # Every byte of a genuine answer is covered by a signature or by the structure that
        # carries it: a changed byte is never an answer, and the client learns nothing more.
        with pytest.raises(RevocationUnavailable) as info:
            checker.check(chain, at=_now())
        assert info.value.detail == GENERIC


@pytest.mark.slow
def test_the_deadline_spans_every_certificate_of_a_check() -> None:
    """scope="chain" asks once per certificate; together they get one ``timeout``."""
    root = CA(organization="Deadline")
    inter = root.intermediate()
    leaf = inter.issue_client_cert()
    holder: list[RawServer] = []

    def answer(req: ocsp.OCSPRequest) -> bytes:
        is_leaf = req.serial_number == leaf.certificate.serial_number
        cert, issuer = (leaf.certificate, inter) if is_leaf else (inter.certificate, root)
        b = ocsp.OCSPResponseBuilder().add_response(
            cert=cert,
            issuer=issuer.certificate,
            algorithm=hashes.SHA1(),  # noqa: S303 - RFC 6960 CertID
            cert_status=ocsp.OCSPCertStatus.GOOD,
            this_update=_now(),
            next_update=_now() + dt.timedelta(hours=1),
            revocation_time=None,
            revocation_reason=None,
        )
        b = b.responder_id(ocsp.OCSPResponderEncoding.HASH, issuer.certificate)
        return b.sign(issuer.private_key, hashes.SHA256()).public_bytes(  # type: ignore[arg-type]
            serialization.Encoding.DER
        )

    def behave(conn: socket.socket) -> None:
        der = answer(ocsp.load_der_ocsp_request(_read_request(conn).partition(b"\r\n\r\n")[2]))
        holder[0].stop.wait(0.6)  # each answer alone is in time; both together are not
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(der), der))

    chain = [leaf.certificate, inter.certificate, root.certificate]
    with _raw(behave) as srv:
        holder.append(srv)
        assert OCSPChecker(responder_url=srv.url, timeout=1.0).check(chain, at=_now())
        checker = OCSPChecker(responder_url=srv.url, timeout=1.0, scope="chain")
        start = time.monotonic()
        with pytest.raises(RevocationUnavailable):
            checker.check(chain, at=_now())
        assert time.monotonic() - start < 1.3
        assert "timed out" in str(checker.health()["last_error"])


# -- HTTPS responders ---------------------------------------------------------------------


@dataclass
class TLSSetup:
    server_ctx: ssl.SSLContext
    client_ca: bytes


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSSetup:
    web = CA(organization="OCSP over HTTPS")
    server = web.issue_client_cert(
        common_name="127.0.0.1", ip_addresses=["127.0.0.1"], dns_names=["localhost"], eku="server"
    )
    d = tmp_path_factory.mktemp("tls")
    server.cert_pem.write_to_path(d / "cert.pem")
    server.key_pem.write_to_path(d / "key.pem")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(d / "cert.pem", d / "key.pem")
    return TLSSetup(ctx, web.cert_pem.bytes())


@pytest.fixture
def trusting(tls: TLSSetup, monkeypatch: pytest.MonkeyPatch) -> None:
    """The client side trusts the test web CA (instead of the system's CAs)."""
    import mtlsauth._revocation._http

    def context() -> ssl.SSLContext:
        ctx = ssl.create_default_context(cadata=tls.client_ca.decode())
        return ctx

    monkeypatch.setattr(mtlsauth._revocation._http, "_tls_context", context)


def _over_tls(
    tls: TLSSetup, inner: Callable[[socket.socket], object]
) -> Callable[[socket.socket], None]:
    def run(conn: socket.socket) -> None:
        conn.settimeout(5)
        with tls.server_ctx.wrap_socket(conn, server_side=True) as t:
            inner(t)

    return run


def _https(url: str) -> str:
    return url.replace("http://", "https://")


@pytest.mark.usefixtures("trusting")
def test_https_responder(setup: Setup, tls: TLSSetup) -> None:
    answer = _good_http(setup)
    with _raw(_over_tls(tls, lambda conn: conn.sendall(answer(conn)))) as srv:
        checker = OCSPChecker(responder_url=_https(srv.url), timeout=3)
        assert checker.check(_chain(setup.leaf, setup.ca), at=_now()) is not None


@pytest.mark.slow
@pytest.mark.usefixtures("trusting")
@pytest.mark.parametrize("case", ["no TLS handshake", "trickled body"])
def test_https_deadline(setup: Setup, tls: TLSSetup, case: str) -> None:
    holder: list[RawServer] = []
    answer = _good_http(setup)

    def trickle(conn: socket.socket) -> None:
        data = answer(conn)
        head, _, der = data.partition(b"\r\n\r\n")
        conn.sendall(head + b"\r\n\r\n")
        _trickle(conn, der, 0.2, holder[0].stop)

    def silent(conn: socket.socket) -> None:
        holder[0].stop.wait(30)  # accepts TCP, never says a word of TLS

    behave = silent if case == "no TLS handshake" else _over_tls(tls, trickle)
    with _raw(behave) as srv:
        holder.append(srv)
        checker = OCSPChecker(responder_url=_https(srv.url), timeout=1.0)
        start = time.monotonic()
        with pytest.raises(RevocationUnavailable):
            checker.check(_chain(setup.leaf, setup.ca), at=_now())
        assert time.monotonic() - start < 1.5
        assert "timed out" in str(checker.health()["last_error"])


def test_https_responder_with_an_untrusted_certificate(setup: Setup, tls: TLSSetup) -> None:
    answer = _good_http(setup)
    with _raw(_over_tls(tls, lambda conn: conn.sendall(answer(conn)))) as srv:
        _refused(
            OCSPChecker(responder_url=_https(srv.url), timeout=3),
            _chain(setup.leaf, setup.ca),
            "TLS",
        )


# -- a configured proxy (and only a configured one) ---------------------------------------


def _relay(a: socket.socket, b: socket.socket) -> None:
    def pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    t = threading.Thread(target=pump, args=(b, a), daemon=True)
    t.start()
    pump(a, b)
    t.join(5)


def _proxy(seen: list[bytes], refuse: bool = False) -> Callable[[socket.socket], None]:
    """A forward proxy: CONNECT tunnels, or absolute-form requests passed on as they are."""

    def run(conn: socket.socket) -> None:
        conn.settimeout(5)
        head = b""
        while b"\r\n\r\n" not in head:
            head += conn.recv(1)
        first = head.split(b"\r\n", 1)[0]
        seen.append(first)
        if refuse:
            conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return
        method, target, _ = first.split(b" ")
        if method == b"CONNECT":
            host, _, port = target.rpartition(b":")
            upstream = socket.create_connection((host.decode(), int(port)), timeout=5)
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            with upstream:
                _relay(conn, upstream)
            return
        where = urllib.parse.urlsplit(target.decode())
        upstream = socket.create_connection((where.hostname, where.port), timeout=5)
        with upstream:
            upstream.sendall(head)
            _relay(conn, upstream)

    return run


def test_a_configured_proxy_carries_plain_http(setup: Setup) -> None:
    seen: list[bytes] = []
    answer = _good_http(setup)
    with _raw(lambda conn: conn.sendall(answer(conn))) as srv, _raw(_proxy(seen)) as proxy:
        checker = OCSPChecker(responder_url=srv.url, proxy=proxy.url.rstrip("/"), timeout=3)
        assert checker.check(_chain(setup.leaf, setup.ca), at=_now()) is not None
    assert seen == [f"POST {srv.url} HTTP/1.1".encode()]


@pytest.mark.usefixtures("trusting")
def test_a_configured_proxy_tunnels_https(setup: Setup, tls: TLSSetup) -> None:
    seen: list[bytes] = []
    answer = _good_http(setup)
    with (
        _raw(_over_tls(tls, lambda conn: conn.sendall(answer(conn)))) as srv,
        _raw(_proxy(seen)) as proxy,
    ):
        checker = OCSPChecker(responder_url=_https(srv.url), proxy=proxy.url, timeout=3)
        assert checker.check(_chain(setup.leaf, setup.ca), at=_now()) is not None
        port = srv.url.rstrip("/").rpartition(":")[2]
    assert seen == [f"CONNECT 127.0.0.1:{port} HTTP/1.1".encode()]


@pytest.mark.usefixtures("trusting")
def test_a_proxy_that_refuses_is_no_answer(setup: Setup) -> None:
    seen: list[bytes] = []
    with _raw(_proxy(seen, refuse=True)) as proxy:
        checker = OCSPChecker(responder_url="https://127.0.0.1:9/", proxy=proxy.url, timeout=3)
        _refused(checker, _chain(setup.leaf, setup.ca), "proxy refused the tunnel")
    assert seen == [b"CONNECT 127.0.0.1:9 HTTP/1.1"]


@pytest.mark.parametrize(
    "proxy", ["https://proxy.test:3128", "socks5://proxy.test:1080", "http://u:p@proxy.test:3128"]
)
def test_unsupported_proxies_are_configuration_errors(proxy: str) -> None:
    with pytest.raises(ValueError, match="URL"):
        OCSPChecker(proxy=proxy)


def test_chunked_answers_are_read_without_waiting_for_the_close(setup: Setup) -> None:
    holder: list[RawServer] = []
    answer = _good_http(setup)

    def chunked(conn: socket.socket) -> None:
        der = answer(conn).partition(b"\r\n\r\n")[2]
        body = b"".join(
            b"%x;ext=1\r\n%s\r\n" % (len(der[i : i + 100]), der[i : i + 100])
            for i in range(0, len(der), 100)
        )
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body + b"0\r\n\r\n")
        holder[0].stop.wait(30)  # keeps the connection open, as some servers do

    with _raw(chunked) as srv:
        holder.append(srv)
        checker = OCSPChecker(responder_url=srv.url, timeout=2)
        start = time.monotonic()
        assert checker.check(_chain(setup.leaf, setup.ca), at=_now()) is not None
        assert time.monotonic() - start < 1


def test_ipv6_responder(setup: Setup) -> None:
    answer = _good_http(setup)
    sock = socket.socket(socket.AF_INET6)
    try:
        sock.bind(("::1", 0))
    except OSError:
        sock.close()
        pytest.skip("no IPv6 loopback on this machine")
    sock.listen(4)
    port = sock.getsockname()[1]

    def serve() -> None:
        conn, _ = sock.accept()
        with conn:
            conn.sendall(answer(conn))

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        checker = OCSPChecker(responder_url=f"http://[::1]:{port}/", timeout=3)
        assert checker.check(_chain(setup.leaf, setup.ca), at=_now()) is not None
    finally:
        t.join(5)
        sock.close()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://[::1]/ocsp", ("::1", 80, "[::1]")),
        ("https://[2001:db8::1:8443]/", ("2001:db8::1:8443", 443, "[2001:db8::1:8443]")),
        ("https://[::1]:8443/", ("::1", 8443, "[::1]:8443")),
        ("http://ocsp.example/", ("ocsp.example", 80, "ocsp.example")),
    ],
)
def test_an_ipv6_responder_without_a_port_gets_the_scheme_default(url, expected) -> None:
    # The port always comes from the URL or its scheme, never from the host: the last group
    # of a bare IPv6 literal is no port.
    from mtlsauth._revocation._http import _host_port

    assert _host_port(url) == expected


@pytest.mark.parametrize(
    "url",
    ["http://ocsp.example/\u043a", "http://ocsp.example/?k=\u00e9", "http://b\u00fccher.example/"],
)
def test_a_responder_url_no_request_could_carry_is_refused_at_construction(url) -> None:
    with pytest.raises(ValueError, match="ASCII"):
        OCSPChecker(responder_url=url)


# -- CertID matching: several answers, other issuers, other hash algorithms ---------------


def _der_items(buf: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    """(tag offset, content start, content end) of each DER item in ``buf[start:end]``."""
    from _x509_forge import _item

    out, i = [], start
    while i < end:
        c_start, c_end = _item(buf, i)
        out.append((i, c_start, c_end))
        i = c_end
    return out


def _opened(der: bytes) -> tuple[bytes, list[tuple[int, int, int]], bytes, bytes]:
    """A response's BasicOCSPResponse: its DER, the items of its ResponseData (offsets in
    it), its signature algorithm and its certificates (DER)."""
    ((_, o_start, o_end),) = _der_items(der, 0, len(der))
    _status, (_, rb_start, rb_end) = _der_items(der, o_start, o_end)
    ((_, seq_start, seq_end),) = _der_items(der, rb_start, rb_end)
    _oid, (_, b_start, b_end) = _der_items(der, seq_start, seq_end)
    basic = der[b_start:b_end]
    ((_, bs_start, bs_end),) = _der_items(basic, 0, len(basic))
    tbs, alg, *rest = _der_items(basic, bs_start, bs_end)
    certs = b"".join(basic[r[0] : r[2]] for r in rest[1:])
    return basic, _der_items(basic, tbs[1], tbs[2]), basic[alg[0] : alg[2]], certs


def _signed_by_the_ca(s: Setup, fields: bytes, alg: bytes, certs: bytes) -> bytes:
    """A successful response whose ResponseData holds ``fields``, signed by the setup CA."""
    from _x509_forge import tlv

    tbs = tlv(0x30, fields)
    key = s.ca.private_key
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    signature = key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    basic = tlv(0x30, tbs + alg + tlv(0x03, b"\x00" + signature) + certs)
    oid = tlv(0x06, bytes.fromhex("2b0601050507300101"))  # id-pkix-ocsp-basic
    return tlv(0x30, tlv(0x0A, b"\x00") + tlv(0xA0, tlv(0x30, oid + tlv(0x04, basic))))


def _several(
    s: Setup, *parts: Callable[[ocsp.OCSPRequest], bytes]
) -> Callable[[ocsp.OCSPRequest], bytes]:
    """One CA-signed response holding the SingleResponses of every part, in order.

    cryptography builds one SingleResponse per response; a responder may send several, so
    the first part's ResponseData gets the others' SingleResponses and is signed again.
    """
    from _x509_forge import tlv

    def singles(der: bytes) -> bytes:
        basic, fields, _, _ = _opened(der)
        responses = next(f for f in fields if basic[f[0]] == 0x30)
        return basic[responses[1] : responses[2]]

    def build(req: ocsp.OCSPRequest) -> bytes:
        basic, fields, alg, certs = _opened(first := parts[0](req))
        merged = singles(first) + b"".join(singles(p(req)) for p in parts[1:])
        return _signed_by_the_ca(
            s,
            b"".join(
                tlv(0x30, merged) if basic[f[0]] == 0x30 else basic[f[0] : f[2]] for f in fields
            ),
            alg,
            certs,
        )

    return build


def _twin(s: Setup, *, ca: bool) -> x509.Certificate:
    """A CertID built on it differs from ours in exactly one hash (cryptography hashes the
    certificate's issuer field for the name, the issuer certificate's key for the key).

    ``ca=True``: a CA sharing the setup CA's name, with another key (the key hash differs).
    ``ca=False``: a certificate with the leaf's serial naming another issuer (the name
    hash differs, the key hash is the setup CA's).
    """
    key = ec.generate_private_key(ec.SECP256R1())
    other = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Twin CA")])
    subject = s.ca.certificate.subject if ca else s.leaf.certificate.subject
    now = _now()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(s.ca.certificate.subject if ca else other)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number() if ca else s.leaf.certificate.serial_number)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )


def _single_for(
    s: Setup,
    *,
    status: ocsp.OCSPCertStatus = ocsp.OCSPCertStatus.GOOD,
    cert: x509.Certificate | None = None,
    issuer: x509.Certificate | None = None,
    algorithm: hashes.HashAlgorithm | None = None,
    reason: x509.ReasonFlags = x509.ReasonFlags.key_compromise,
    age: dt.timedelta = dt.timedelta(0),
) -> Callable[[ocsp.OCSPRequest], bytes]:
    """A CA-signed response with one SingleResponse whose CertID is built as given (``age``
    moves its thisUpdate and nextUpdate into the past)."""

    def build(req: ocsp.OCSPRequest) -> bytes:
        now = _now()
        revoked = status == ocsp.OCSPCertStatus.REVOKED
        b = (
            ocsp.OCSPResponseBuilder()
            .add_response(
                cert=cert or s.leaf.certificate,
                issuer=issuer or s.ca.certificate,
                algorithm=algorithm or hashes.SHA1(),  # noqa: S303 - RFC 6960 CertID
                cert_status=status,
                this_update=now - dt.timedelta(minutes=1) - age,
                next_update=now + dt.timedelta(hours=1) - age,
                revocation_time=now - dt.timedelta(hours=1) - age if revoked else None,
                revocation_reason=reason if revoked else None,
            )
            .responder_id(ocsp.OCSPResponderEncoding.HASH, s.ca.certificate)
        )
        n = _nonce_of(req)
        if n is not None:
            b = b.add_extension(x509.OCSPNonce(n), critical=False)
        key = s.ca.private_key
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)

    return build


GOOD, REVOKED, UNKNOWN = (
    ocsp.OCSPCertStatus.GOOD,
    ocsp.OCSPCertStatus.REVOKED,
    ocsp.OCSPCertStatus.UNKNOWN,
)


@pytest.mark.parametrize("mode", ["hard-fail", "soft-fail"])
@pytest.mark.parametrize(
    "order", [(GOOD, REVOKED), (REVOKED, GOOD), (UNKNOWN, REVOKED), (GOOD, GOOD, REVOKED)]
)
def test_a_revoked_answer_among_several_for_the_certificate_wins(
    crafted: Crafted, setup: Setup, mode: str, order: tuple[ocsp.OCSPCertStatus, ...]
) -> None:
    """A response may hold several SingleResponses; one that says REVOKED for our CertID
    revokes, wherever it stands, and soft-fail does not admit it."""
    crafted.answer = _several(setup, *(_single_for(setup, status=st_) for st_ in order))
    checker = OCSPChecker(responder_url=crafted.url, failure=mode)  # type: ignore[arg-type]
    with pytest.raises(CertificateRevoked, match="keyCompromise"):
        checker.check(_chain(setup.leaf, setup.ca), at=_now())


@pytest.mark.parametrize("order", [(GOOD, UNKNOWN), (UNKNOWN, GOOD)])
def test_disagreeing_answers_for_the_certificate_are_no_answer(
    crafted: Crafted, setup: Setup, order: tuple[ocsp.OCSPCertStatus, ...]
) -> None:
    crafted.answer = _several(setup, *(_single_for(setup, status=st_) for st_ in order))
    _refused(OCSPChecker(responder_url=crafted.url), _chain(setup.leaf, setup.ca), "UNKNOWN")


@pytest.mark.parametrize(
    "order",
    [(UNKNOWN,), (GOOD, UNKNOWN), (UNKNOWN, GOOD)],
    ids=["unknown", "good+unknown", "unknown+good"],
)
def test_soft_fail_does_not_admit_a_verified_unknown(
    crafted: Crafted, setup: Setup, order: tuple[ocsp.OCSPCertStatus, ...]
) -> None:
    crafted.answer = _several(setup, *(_single_for(setup, status=st_) for st_ in order))
    soft = OCSPChecker(responder_url=crafted.url, failure="soft-fail")
    _refused(soft, _chain(setup.leaf, setup.ca), "UNKNOWN")


def test_soft_fail_still_admits_an_unknown_it_cannot_trust(crafted: Crafted, setup: Setup) -> None:
    """Only a verified UNKNOWN refuses under soft-fail: a forged one is no answer, like a
    blocked responder, which soft-fail admits by design."""
    crafted.answer = _response(setup, status=UNKNOWN, signer=_attacker())
    soft = OCSPChecker(responder_url=crafted.url, failure="soft-fail")
    assert soft.check(_chain(setup.leaf, setup.ca), at=_now()) is not None
    assert "unknown responder" in str(soft.health()["last_error"])


def test_a_delegated_responder_certificate_signed_with_a_weak_hash_is_refused(
    crafted: Crafted, setup: Setup
) -> None:
    """A delegated responder certificate is a certificate the CA signed: the signature rule
    for certificates (no SHA-1, no SHA-224) holds for it as for the client's own."""
    weak, key = _responder_with(setup, algorithm=hashes.SHA224())
    assert weak.verify_directly_issued_by(setup.ca.certificate) is None  # genuine
    crafted.answer = _response(setup, signer=(weak, key), include=(weak,))
    _refused(OCSPChecker(responder_url=crafted.url), _chain(setup.leaf, setup.ca), "sha224")


def test_a_sub_ca_with_ocsp_signing_is_no_delegated_responder(
    crafted: Crafted, setup: Setup
) -> None:
    """A CA certificate that its parent issued with id-kp-OCSPSigning in its extended key
    usage (a partner's sub-CA, as in the 2020 delegated-responder incident) was accepted as
    a delegated responder, so it could sign GOOD for its siblings. A responder certificate
    is an end-entity one: a certificate with basicConstraints cA=true answers for nothing."""
    ca_key = setup.ca.private_key
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()

    def delegate(ca: bool) -> x509.Certificate:
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name.from_rfc4514_string(f"CN=partner {'CA' if ca else 'EE'}"))
            .issuer_name(setup.ca.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.OCSP_SIGNING]
                ),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )

    sub_ca = delegate(ca=True)
    crafted.answer = _response(setup, signer=(sub_ca, key), include=(sub_ca,))
    _refused(OCSPChecker(responder_url=crafted.url), _chain(setup.leaf, setup.ca), "CA certificate")
    # The same key in an end-entity responder certificate is a delegate as before.
    responder = delegate(ca=False)
    crafted.answer = _response(setup, signer=(responder, key), include=(responder,))
    assert OCSPChecker(responder_url=crafted.url).check(_chain(setup.leaf, setup.ca), at=now)


def test_a_stale_hold_next_to_a_final_revocation_still_revokes(
    crafted: Crafted, setup: Setup
) -> None:
    """Two REVOKED answers for the certificate in one stale response, a hold first: the
    revocation for another reason is final however old, so soft-fail does not admit."""
    old = dt.timedelta(days=2)
    crafted.answer = _several(
        setup,
        _single_for(setup, status=REVOKED, reason=x509.ReasonFlags.certificate_hold, age=old),
        _single_for(setup, status=REVOKED, age=old),
    )
    soft = OCSPChecker(responder_url=crafted.url, failure="soft-fail")
    with pytest.raises(CertificateRevoked, match="keyCompromise"):
        soft.check(_chain(setup.leaf, setup.ca), at=_now())


def test_answers_for_other_certificates_are_ignored(crafted: Crafted, setup: Setup) -> None:
    other = setup.ca.issue_client_cert(common_name="someone else").certificate
    # Our certificate is revoked; a GOOD for another one before it must not hide that.
    crafted.answer = _several(
        setup, _single_for(setup, cert=other), _single_for(setup, status=REVOKED)
    )
    with pytest.raises(CertificateRevoked):
        OCSPChecker(responder_url=crafted.url, failure="soft-fail").check(
            _chain(setup.leaf, setup.ca), at=_now()
        )
    # ... and a REVOKED for another one does not revoke ours.
    crafted.answer = _several(
        setup, _single_for(setup, cert=other, status=REVOKED), _single_for(setup)
    )
    assert OCSPChecker(responder_url=crafted.url).check(_chain(setup.leaf, setup.ca), at=_now())


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(
            lambda s: _single_for(s, issuer=_twin(s, ca=True)),
            id="issuer key hash: a same-named CA with another key",
        ),
        pytest.param(
            lambda s: _single_for(s, cert=_twin(s, ca=False)),
            id="issuer name hash: the same serial and key under another issuer name",
        ),
        pytest.param(
            lambda s: _single_for(s, algorithm=hashes.SHA256()),
            id="hash algorithm: SHA-256 CertID for a SHA-1 request",
        ),
    ],
)
def test_an_answer_about_another_certid_is_no_answer(
    crafted: Crafted, setup: Setup, build: Callable[[Setup], Callable[..., bytes]]
) -> None:
    crafted.answer = build(setup)
    _refused(OCSPChecker(responder_url=crafted.url), _chain(setup.leaf, setup.ca), "CertID")


def test_a_responder_certificate_cannot_answer_for_itself(crafted: Crafted, setup: Setup) -> None:
    """A certificate with id-kp-OCSPSigning could otherwise sign GOOD for its own serial."""
    own = (setup.delegate.certificate, setup.delegate.private_key)
    crafted.answer = _response(
        setup,
        cert=setup.delegate.certificate,
        signer=own,
        include=(own[0],),  # type: ignore[arg-type]
    )
    _refused(
        OCSPChecker(responder_url=crafted.url),
        _chain(setup.delegate, setup.ca),
        "answer for itself",
    )
    # The CA itself may still answer for it.
    crafted.answer = _response(setup, cert=setup.delegate.certificate)
    assert OCSPChecker(responder_url=crafted.url).check(_chain(setup.delegate, setup.ca), at=_now())


def test_cached_answers_are_keyed_by_the_whole_certid(crafted: Crafted) -> None:
    """Two CA certificates with one key but different names (a renamed CA) may each issue a
    certificate with the same serial: the answer for one must not be reused for the other."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()

    def cert(subject: str, issuer: str, serial: int, ca: bool) -> x509.Certificate:
        b = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, issuer)]))
            .public_key(
                key.public_key() if ca else ec.generate_private_key(ec.SECP256R1()).public_key()
            )
            .serial_number(serial)
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        return b.sign(key, hashes.SHA256())

    ca_a, ca_b = cert("CA A", "CA A", 1, True), cert("CA B", "CA B", 2, True)
    leaf_a, leaf_b = cert("a", "CA A", 4242, False), cert("b", "CA B", 4242, False)
    revoked_name_hash = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(
            leaf_b,
            ca_b,
            hashes.SHA1(),  # noqa: S303
        )
        .build()
        .issuer_name_hash
    )

    def answer(req: ocsp.OCSPRequest) -> bytes:
        is_b = req.issuer_name_hash == revoked_name_hash
        leaf, ca = (leaf_b, ca_b) if is_b else (leaf_a, ca_a)
        status = ocsp.OCSPCertStatus.REVOKED if is_b else ocsp.OCSPCertStatus.GOOD
        b = ocsp.OCSPResponseBuilder().add_response(
            cert=leaf, issuer=ca, algorithm=hashes.SHA1(),  # noqa: S303
            cert_status=status, this_update=_now() - dt.timedelta(minutes=1),
            next_update=_now() + dt.timedelta(hours=1),
            revocation_time=_now() - dt.timedelta(hours=1) if is_b else None,
            revocation_reason=None,
        )  # fmt: skip
        b = b.responder_id(ocsp.OCSPResponderEncoding.HASH, ca)
        return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)

    crafted.answer = answer
    checker = OCSPChecker(responder_url=crafted.url, nonce=False)
    assert checker.check([leaf_a, ca_a], at=_now())
    with pytest.raises(CertificateRevoked):
        checker.check([leaf_b, ca_b], at=_now())
    assert checker.check([leaf_a, ca_a], at=_now())


def _revoked_for(
    s: Setup, reason: x509.ReasonFlags, **kwargs: object
) -> Callable[[ocsp.OCSPRequest], bytes]:
    return _response(s, status=REVOKED, reason=reason, **kwargs)  # type: ignore[arg-type]


STALE = {"next_update": dt.timedelta(minutes=-30), "this_update": dt.timedelta(hours=-2)}
FUTURE = {"this_update": dt.timedelta(hours=1)}
REPLAYED = {"nonce": b"\x00" * 16}


@pytest.mark.parametrize("mode", ["hard-fail", "soft-fail"])
@pytest.mark.parametrize(
    "kwargs",
    [pytest.param(STALE, id="stale"), pytest.param(FUTURE, id="future thisUpdate"),
     pytest.param(REPLAYED, id="another nonce")],
)  # fmt: skip
def test_a_genuine_revocation_refuses_even_when_the_answer_is_not_fresh(
    crafted: Crafted, setup: Setup, mode: str, kwargs: dict[str, object]
) -> None:
    """A revocation (but a hold) is final (RFC 5280 5.3.1): a CA-signed REVOKED about this
    very certificate proves it, however old the answer or whoever replays it. Soft-fail
    treated such an answer as no answer, and admitted the certificate."""
    crafted.answer = _revoked_for(setup, x509.ReasonFlags.key_compromise, **kwargs)
    checker = OCSPChecker(responder_url=crafted.url, failure=mode)  # type: ignore[arg-type]
    with pytest.raises(CertificateRevoked, match="keyCompromise"):
        checker.check(_chain(setup.leaf, setup.ca), at=_now())


@pytest.mark.parametrize(
    "kwargs",
    [pytest.param(STALE, id="stale"), pytest.param(FUTURE, id="future thisUpdate"),
     pytest.param(REPLAYED, id="another nonce")],
)  # fmt: skip
def test_a_hold_that_is_not_fresh_is_no_answer(
    crafted: Crafted, setup: Setup, kwargs: dict[str, object]
) -> None:
    """A hold may have been released since: only a fresh answer tells."""
    crafted.answer = _revoked_for(setup, x509.ReasonFlags.certificate_hold, **kwargs)
    _refused(OCSPChecker(responder_url=crafted.url), _chain(setup.leaf, setup.ca), ".")
    soft = OCSPChecker(responder_url=crafted.url, failure="soft-fail")
    assert soft.check(_chain(setup.leaf, setup.ca), at=_now())


def test_the_first_http_responder_in_the_aia_is_asked(crafted: Crafted, setup: Setup) -> None:
    """An AIA may list an ldap:// or file:// responder before an http:// one: the usable one
    is asked, and its REVOKED refuses (soft-fail admitted the certificate without asking)."""
    leaf = setup.ca.issue_client_cert(
        common_name="aia",
        extra_extensions=[
            (
                x509.AuthorityInformationAccess(
                    [
                        x509.AccessDescription(
                            AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(u)
                        )
                        for u in ("ldap://ldap.example/cn=ocsp", "file:///x", crafted.url)
                    ]
                ),
                False,
            )
        ],
    )
    crafted.answer = _response(setup, cert=leaf.certificate, status=REVOKED)
    with pytest.raises(CertificateRevoked):
        OCSPChecker(failure="soft-fail").check(_chain(leaf, setup.ca), at=_now())


@pytest.mark.parametrize(
    "signer_cert",
    [
        pytest.param(
            lambda d: x509.load_der_x509_certificate(ecdsa_twin(der(d.certificate))),
            id="its own certificate, re-encoded (ECDSA s replaced by n - s)",
        ),
        pytest.param(None, id="another responder certificate for the same key"),
    ],
)
def test_a_responder_cannot_answer_for_itself_in_another_encoding(
    crafted: Crafted, setup: Setup, signer_cert: Callable[[ClientCert], x509.Certificate] | None
) -> None:
    """The certificate asked about, re-encoded so that its bytes differ, or a second
    certificate for its key, is still the same key vouching for itself."""
    key = setup.delegate.private_key
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    if signer_cert is not None:
        signer = signer_cert(setup.delegate)
    else:
        now = _now()
        signer = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "twin")]))
            .issuer_name(setup.ca.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False
            )
            .sign(setup.ca.private_key, hashes.SHA256())  # type: ignore[arg-type]
        )
    assert signer != setup.delegate.certificate
    crafted.answer = _response(
        setup, cert=setup.delegate.certificate, signer=(signer, key), include=(signer,)
    )
    _refused(
        OCSPChecker(responder_url=crafted.url),
        _chain(setup.delegate, setup.ca),
        "answer for itself",
    )


def test_a_crl_revocation_is_found_without_asking_the_responder(crafted: Crafted) -> None:
    """Verifier(revocation=(ocsp, crls)): the CRL set (no network) is asked first, so a
    certificate its CRL revokes is refused as revoked without a fetch, and a responder that
    cannot answer does not turn that into revocation_unavailable."""
    from mtlsauth import CRLSet, Verifier

    ca = CA()  # its own: revoke() marks the CA, which openssl_index() reads
    leaf = ca.issue_client_cert()
    crafted.answer = lambda _r: b"junk"
    before = crafted.requests
    crls = CRLSet.from_pem(ca.revoke(leaf).bytes())
    ocsp_checker = OCSPChecker(responder_url=crafted.url)
    verifier = Verifier(trust_store=ca.trust_store(), revocation=(ocsp_checker, crls))
    with pytest.raises(CertificateRevoked):
        verifier.verify(leaf.chain_pem.text())
    assert crafted.requests == before


# -- a failure nobody foresaw: refused, logged once a minute, escaped ---------------------------
FORGED = 'boom\nmtlsauth refused code=ok peer="10.0.0.1"'


def _error_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def test_an_unexpected_failure_in_a_source_is_logged_once_a_minute_escaped(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A source's bug that a client can provoke must neither flood the log nor let the
    # client's bytes forge a line of it (no traceback at ERROR, every text escaped).
    from mtlsauth._hooks import hook_log_limiter
    from mtlsauth._revocation import _compose

    monkeypatch.setattr(_compose, "unexpected_log_limiter", hook_log_limiter())
    ca = CA(organization="bug")
    chain = _chain(ca.issue_client_cert(common_name="c"), ca)

    def buggy(_chain: object, _at: object) -> None:
        raise ValueError(FORGED)

    with caplog.at_level(logging.DEBUG, logger="mtlsauth"):
        for _ in range(50):
            with pytest.raises(RevocationUnavailable):
                _compose.fail_closed(buggy, chain, _now(), what="CRL", detail="unavailable")
    lines = _error_lines(caplog)
    assert len(lines) == 1, lines
    assert "ValueError" in lines[0]
    assert "\n" not in lines[0]
    assert all(FORGED not in r.getMessage() for r in caplog.records)  # the traceback too
    assert not any(r.exc_info for r in caplog.records)


def test_an_unprocessable_ocsp_answer_is_logged_once_a_minute_escaped(
    crafted: Crafted,
    setup: Setup,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from mtlsauth._hooks import hook_log_limiter
    from mtlsauth._revocation import _ocsp

    monkeypatch.setattr(_ocsp, "unexpected_log_limiter", hook_log_limiter())

    def unforeseen(*_args: object, **_kwargs: object) -> None:
        raise ValueError(FORGED)

    monkeypatch.setattr(OCSPChecker, "_query", unforeseen)
    with caplog.at_level(logging.DEBUG, logger="mtlsauth"):
        for _ in range(20):
            checker = OCSPChecker(responder_url=crafted.url)  # a fresh one: nothing cached
            _refused(checker, _chain(setup.leaf, setup.ca), "unprocessable answer")
    lines = _error_lines(caplog)
    assert len(lines) == 1, lines
    assert "\n" not in lines[0]
    assert all(FORGED not in r.getMessage() for r in caplog.records)
    assert not any(r.exc_info for r in caplog.records)


def test_an_answer_is_not_used_past_its_delegated_responder_certificate(
    crafted: Crafted, setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    """A delegated responder's answer is judged with its certificate's validity: a GOOD
    answer whose ``nextUpdate`` comes after the responder certificate's ``notAfter``
    was served from the answer cache, and the Verifier's entry kept its ``until``, past
    that moment, when asking again (a clock stepped forward, ``verify(at=...)`` later
    on) refuses it: its signer has expired. An answer's ``until`` ends there."""
    now = _now()
    ends = now + dt.timedelta(minutes=20)
    short = issue_ocsp_responder_cert(setup.ca, not_after=ends)
    crafted.answer = _response(
        setup,
        signer=(short.certificate, short.private_key),  # type: ignore[arg-type]
        include=(short.certificate,),
        next_update=dt.timedelta(hours=2),
    )
    checker = OCSPChecker(responder_url=crafted.url)
    chain = _chain(setup.leaf, setup.ca)
    until = checker.check(chain, at=now)
    assert until is not None
    assert until <= ends + dt.timedelta(minutes=5)  # the clock skew a judgement allows
    later = now + dt.timedelta(hours=1)
    with caplog.at_level(logging.WARNING, logger="mtlsauth"), pytest.raises(RevocationUnavailable):
        checker.check(chain, at=later)  # asked again: the answer's signer has expired
    assert any("expired or not yet valid" in r.getMessage() for r in caplog.records)


# -- extensions the checker does not understand (RFC 6960 4.4) ----------------------------

_ODD = x509.ObjectIdentifier("1.3.6.1.4.1.55555.1")  # a private arc nobody here knows


def _with_single_extension(
    s: Setup, build: Callable[[ocsp.OCSPRequest], bytes], *, critical: bool
) -> Callable[[ocsp.OCSPRequest], bytes]:
    """``build``'s CA-signed response with a singleExtensions [1] holding one unknown
    extension added to each SingleResponse, signed again (cryptography builds none)."""
    from _x509_forge import tlv

    def rebuilt(req: ocsp.OCSPRequest) -> bytes:
        basic, items, alg, certs = _opened(build(req))
        flag = tlv(0x01, b"\xff") if critical else b""
        ext = tlv(
            0x30, tlv(0x06, bytes.fromhex("2b0601040183b20301")) + flag + tlv(0x04, b"\x05\x00")
        )
        fields = []
        for f in items:
            if basic[f[0]] == 0x30:  # responses: each SingleResponse gets the extension
                singles = b"".join(
                    tlv(0x30, basic[r[1] : r[2]] + tlv(0xA1, tlv(0x30, ext)))
                    for r in _der_items(basic, f[1], f[2])
                )
                fields.append(tlv(0x30, singles))
            else:
                fields.append(basic[f[0] : f[2]])
        return _signed_by_the_ca(s, b"".join(fields), alg, certs)

    return rebuilt


def _with_response_extension(
    s: Setup, *, critical: bool, status: ocsp.OCSPCertStatus = ocsp.OCSPCertStatus.GOOD
) -> Callable[[ocsp.OCSPRequest], bytes]:
    """A CA-signed answer whose responseExtensions hold one unknown extension."""
    return _response(
        s,
        status=status,
        nonce=None,
        reason=x509.ReasonFlags.key_compromise,
        extensions=((x509.UnrecognizedExtension(_ODD, b"\x05\x00"), critical),),
    )


@pytest.mark.parametrize("mode", ["hard-fail", "soft-fail"])
@pytest.mark.parametrize("where", ["responseExtensions", "singleExtensions"])
def test_a_critical_extension_not_understood_makes_the_answer_unusable(
    crafted: Crafted, setup: Setup, mode: str, where: str
) -> None:
    """RFC 6960 4.4: a GOOD carrying a critical extension the checker does not understand
    is not a GOOD. The CA signed it, so soft-fail does not admit it either (as for a
    verified UNKNOWN); the same answer with the extension non-critical is a GOOD."""
    chain = _chain(setup.leaf, setup.ca)
    for critical in (True, False):
        crafted.answer = (
            _with_response_extension(setup, critical=critical)
            if where == "responseExtensions"
            else _with_single_extension(setup, _response(setup, nonce=None), critical=critical)
        )
        checker = OCSPChecker(responder_url=crafted.url, failure=mode)  # type: ignore[arg-type]
        if critical:
            _refused(
                checker, chain, r"critical extension not understood \(1\.3\.6\.1\.4\.1\.55555\.1\)"
            )
        else:
            assert checker.check(chain, at=_now()) is not None


@pytest.mark.parametrize(
    "encoding", [ocsp.OCSPResponderEncoding.HASH, ocsp.OCSPResponderEncoding.NAME]
)
def test_the_extension_walk_reads_every_layout(
    crafted: Crafted, setup: Setup, encoding: ocsp.OCSPResponderEncoding
) -> None:
    """The responder named by name ([1], as responseExtensions are), a hold (certStatus
    revoked is [1], as singleExtensions are), no nextUpdate, a critical nonce: none of them
    is taken for an extension not understood."""
    chain = _chain(setup.leaf, setup.ca)

    def build(req: ocsp.OCSPRequest) -> bytes:
        now = _now()
        b = (
            ocsp.OCSPResponseBuilder()
            .add_response(
                cert=setup.leaf.certificate,
                issuer=setup.ca.certificate,
                algorithm=hashes.SHA1(),  # noqa: S303 - RFC 6960 CertID
                cert_status=ocsp.OCSPCertStatus.REVOKED,
                this_update=now - dt.timedelta(minutes=1),
                next_update=None,
                revocation_time=now - dt.timedelta(hours=1),
                revocation_reason=x509.ReasonFlags.certificate_hold,
            )
            .responder_id(encoding, setup.ca.certificate)
        )
        n = _nonce_of(req)
        assert n is not None
        b = b.add_extension(x509.OCSPNonce(n), critical=True)
        key = setup.ca.private_key
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)

    crafted.answer = build
    with pytest.raises(CertificateRevoked, match="certificateHold"):
        OCSPChecker(responder_url=crafted.url).check(chain, at=_now())


def test_a_final_revocation_with_a_critical_extension_still_revokes(
    crafted: Crafted, setup: Setup
) -> None:
    """Honouring the CA's signed REVOKED never admits anyone: a critical extension beside it
    does not turn it into "no answer", which soft-fail would admit."""
    crafted.answer = _with_response_extension(
        setup, critical=True, status=ocsp.OCSPCertStatus.REVOKED
    )
    soft = OCSPChecker(responder_url=crafted.url, failure="soft-fail")
    with pytest.raises(CertificateRevoked, match="keyCompromise"):
        soft.check(_chain(setup.leaf, setup.ca), at=_now())


def _responder_with(
    s: Setup,
    *extra: tuple[x509.ExtensionType, bool],
    algorithm: hashes.HashAlgorithm | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A delegated responder certificate the setup CA issued (id-kp-OCSPSigning,
    id-pkix-ocsp-nocheck), with ``extra`` extensions, signed with ``algorithm``."""
    ca_key = s.ca.private_key
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    b = (
        x509.CertificateBuilder()
        .subject_name(x509.Name.from_rfc4514_string("CN=responder"))
        .issuer_name(s.ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False)
        .add_extension(x509.OCSPNoCheck(), critical=False)
    )
    for ext, critical in extra:
        b = b.add_extension(ext, critical=critical)
    return b.sign(ca_key, algorithm or hashes.SHA256()), key


def _usage(*, digital_signature: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature, content_commitment=not digital_signature,
        key_encipherment=False, data_encipherment=False, key_agreement=False,
        key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        pytest.param(
            (x509.UnrecognizedExtension(_ODD, b"\x05\x00"), True),
            "critical extension not understood",
            id="unknown critical extension",
        ),
        pytest.param(
            (_usage(digital_signature=False), True),
            "digitalSignature",
            id="keyUsage without digitalSignature",
        ),
    ],
)
def test_a_delegated_responder_certificate_must_be_fit_to_sign(
    crafted: Crafted, setup: Setup, extra: tuple[x509.ExtensionType, bool], message: str
) -> None:
    chain = _chain(setup.leaf, setup.ca)
    cert, key = _responder_with(setup, extra)
    crafted.answer = _response(setup, signer=(cert, key), include=(cert,))
    _refused(OCSPChecker(responder_url=crafted.url), chain, message)
    # The same delegate without the flaw answers: non-critical, or with digitalSignature.
    fit = (
        (_usage(digital_signature=True), True)
        if isinstance(extra[0], x509.KeyUsage)
        else (extra[0], False)
    )
    cert, key = _responder_with(setup, fit)
    crafted.answer = _response(setup, signer=(cert, key), include=(cert,))
    assert OCSPChecker(responder_url=crafted.url).check(chain, at=_now()) is not None


@pytest.mark.parametrize("respell", ["upper", "spaces"])
def test_a_revoked_answer_naming_the_ca_spelled_otherwise_is_revoked(
    crafted: Crafted, setup: Setup, respell: str
) -> None:
    """A byName ResponderID that spells the CA's name in another case, or with its spaces
    doubled, names that CA as OpenSSL compares names (X509_NAME_cmp): the CA's signature on
    the REVOKED answer verifies, so soft-fail must not take it for no answer."""

    def spelled(value: str) -> str:
        return value.upper() if respell == "upper" else value.replace(" ", "  ")

    name = x509.Name(
        [
            x509.RelativeDistinguishedName(
                [x509.NameAttribute(a.oid, spelled(str(a.value))) for a in rdn]
            )
            for rdn in setup.ca.certificate.subject.rdns
        ]
    )
    assert name != setup.ca.certificate.subject

    def answer(
        status: ocsp.OCSPCertStatus, key: ec.EllipticCurvePrivateKey
    ) -> Callable[[ocsp.OCSPRequest], bytes]:
        # cryptography writes a byName ResponderID from a certificate of the signing key.
        stand_in = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(1)
            .not_valid_before(_now() - dt.timedelta(days=1))
            .not_valid_after(_now() + dt.timedelta(days=1))
            .sign(key, hashes.SHA256())
        )

        def build(req: ocsp.OCSPRequest) -> bytes:
            now = _now()
            revoked = status == ocsp.OCSPCertStatus.REVOKED
            b = (
                ocsp.OCSPResponseBuilder()
                .add_response(
                    cert=setup.leaf.certificate,
                    issuer=setup.ca.certificate,
                    algorithm=hashes.SHA1(),  # noqa: S303 - RFC 6960 CertID
                    cert_status=status,
                    this_update=now - dt.timedelta(minutes=1),
                    next_update=now + dt.timedelta(hours=1),
                    revocation_time=now - dt.timedelta(hours=1) if revoked else None,
                    revocation_reason=x509.ReasonFlags.key_compromise if revoked else None,
                )
                .responder_id(ocsp.OCSPResponderEncoding.NAME, stand_in)
            )
            nonce = _nonce_of(req)
            if nonce is not None:
                b = b.add_extension(x509.OCSPNonce(nonce), critical=False)
            return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)

        return build

    chain = _chain(setup.leaf, setup.ca)
    crafted.answer = answer(ocsp.OCSPCertStatus.REVOKED, setup.ca.private_key)  # type: ignore[arg-type]
    for mode in ("soft-fail", "hard-fail"):
        with pytest.raises(CertificateRevoked, match="keyCompromise"):
            OCSPChecker(responder_url=crafted.url, failure=mode).check(chain, at=_now())
    # The name picks a candidate, nothing more: a GOOD answer under that name signed by
    # another key is still no answer.
    crafted.answer = answer(ocsp.OCSPCertStatus.GOOD, _attacker()[1])
    _refused(OCSPChecker(responder_url=crafted.url), chain, "bad signature")


@pytest.mark.parametrize("algorithm", [hashes.SHA256(), hashes.SHA384(), hashes.SHA512()])
@pytest.mark.parametrize("mode", ["hard-fail", "soft-fail"])
def test_a_revocation_under_a_certid_of_another_hash_still_revokes(
    crafted: Crafted, setup: Setup, mode: str, algorithm: hashes.HashAlgorithm
) -> None:
    """The CA's signed REVOKED for our serial, issuer name and key, hashed with SHA-2 where
    SHA-1 was asked for, is still its word that the certificate is revoked: taken for an
    answer about another certificate, soft-fail admitted it. A GOOD so named stays no
    answer (test_an_answer_about_another_certid_is_no_answer)."""
    crafted.answer = _single_for(setup, status=REVOKED, algorithm=algorithm)
    checker = OCSPChecker(responder_url=crafted.url, failure=mode)  # type: ignore[arg-type]
    with pytest.raises(CertificateRevoked, match="keyCompromise"):
        checker.check(_chain(setup.leaf, setup.ca), at=_now())
    # Another serial, or another issuer key, under SHA-256 revokes nothing of ours.
    other = setup.ca.issue_client_cert(common_name="someone else").certificate
    for build in (
        _single_for(setup, status=REVOKED, algorithm=algorithm, cert=other),
        _single_for(setup, status=REVOKED, algorithm=algorithm, issuer=_twin(setup, ca=True)),
    ):
        crafted.answer = build
        _refused(OCSPChecker(responder_url=crafted.url), _chain(setup.leaf, setup.ca), "CertID")


@pytest.mark.parametrize("mode", ["hard-fail", "soft-fail"])
def test_a_revocation_signed_with_sha1_still_revokes(tmp_path: Path, mode: str) -> None:
    """A SHA-1 signature is not trusted to vouch for a GOOD, but the CA's REVOKED so signed
    was set aside with it, and soft-fail admitted the revoked certificate. A forgery of it
    could only refuse, so it revokes; a GOOD so signed is still no answer."""
    with _openssl_responder(tmp_path, "-rmd", "sha1") as r:
        checker = OCSPChecker(responder_url=r.url, failure=mode)  # type: ignore[arg-type]
        with pytest.raises(CertificateRevoked, match="keyCompromise"):
            checker.check(_chain(r.revoked, r.ca), at=_now())
        _refused(OCSPChecker(responder_url=r.url), _chain(r.good, r.ca), "sha1")
        _refused(OCSPChecker(responder_url=r.url), _chain(r.unknown, r.ca), "sha1")


def _with_reason_code(
    build: Callable[[ocsp.OCSPRequest], bytes], s: Setup, code: int
) -> Callable[[ocsp.OCSPRequest], bytes]:
    """``build``'s CA-signed keyCompromise answer with the CRLReason code replaced by
    ``code``, signed again by the CA (a signature of the same length is drawn, so that the
    lengths around it stay as they are)."""

    def patched(req: ocsp.OCSPRequest) -> bytes:
        der = build(req)
        resp = ocsp.load_der_ocsp_response(der)
        tbs = resp.tbs_response_bytes
        new_tbs = tbs.replace(b"\xa0\x03\x0a\x01\x01", b"\xa0\x03\x0a\x01" + bytes([code]))
        assert new_tbs != tbs
        key = s.ca.private_key
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        while len(sig := key.sign(new_tbs, ec.ECDSA(hashes.SHA256()))) != len(resp.signature):
            pass
        return der.replace(tbs, new_tbs).replace(resp.signature, sig)

    return patched


@pytest.mark.parametrize("code", [7, 11, 99])
@pytest.mark.parametrize("mode", ["hard-fail", "soft-fail"])
def test_a_revocation_for_a_reason_not_known_still_revokes(
    crafted: Crafted, setup: Setup, mode: str, code: int
) -> None:
    """A CA-signed REVOKED whose CRLReason is a code RFC 5280 does not assign (7 is unused)
    made the parser raise, the answer counted as malformed, and soft-fail admitted the
    revoked certificate. It is a revocation, and not a hold, so final."""
    crafted.answer = _with_reason_code(_single_for(setup, status=REVOKED), setup, code)
    checker = OCSPChecker(responder_url=crafted.url, failure=mode)  # type: ignore[arg-type]
    with pytest.raises(CertificateRevoked, match="reason code not recognized"):
        checker.check(_chain(setup.leaf, setup.ca), at=_now())
    # Final: stale, it still revokes.
    crafted.answer = _with_reason_code(
        _single_for(setup, status=REVOKED, age=dt.timedelta(days=2)), setup, code
    )
    checker = OCSPChecker(responder_url=crafted.url, failure=mode)  # type: ignore[arg-type]
    with pytest.raises(CertificateRevoked):
        checker.check(_chain(setup.leaf, setup.ca), at=_now())


@pytest.mark.parametrize("mode", ["hard-fail", "soft-fail"])
def test_a_revocation_signed_by_an_expired_delegate_still_revokes(
    crafted: Crafted, setup: Setup, mode: str
) -> None:
    """A responder that goes on answering after its delegated certificate expired signs
    REVOKED answers the CA's delegation once covered. Set aside with a GOOD, they let
    soft-fail admit every revoked certificate; a final revocation so signed revokes (a
    forgery could only refuse). A GOOD, or a hold, so signed is still no answer."""
    past = issue_ocsp_responder_cert(
        setup.ca, not_before=_now() - dt.timedelta(days=2), not_after=_now() - dt.timedelta(days=1)
    )
    signer = (past.certificate, past.private_key)
    chain = _chain(setup.leaf, setup.ca)
    crafted.answer = _response(
        setup,
        status=REVOKED,
        reason=x509.ReasonFlags.key_compromise,
        signer=signer,
        include=(past.certificate,),
    )  # type: ignore[arg-type]
    with pytest.raises(CertificateRevoked, match="keyCompromise"):
        OCSPChecker(responder_url=crafted.url, failure=mode).check(chain, at=_now())  # type: ignore[arg-type]
    for answer in (
        _response(setup, signer=signer, include=(past.certificate,)),  # type: ignore[arg-type]
        _revoked_for(
            setup, x509.ReasonFlags.certificate_hold, signer=signer, include=(past.certificate,)
        ),
    ):
        crafted.answer = answer
        _refused(OCSPChecker(responder_url=crafted.url), chain, "expired")
    # Not issued by the CA, or without id-kp-OCSPSigning: its REVOKED is no answer.
    for bad in (
        issue_ocsp_responder_cert(setup.ca, ocsp_signing=False),
        issue_ocsp_responder_cert(CA(organization="Evil")),
    ):
        crafted.answer = _response(
            setup,
            status=REVOKED,
            signer=(bad.certificate, bad.private_key),  # type: ignore[arg-type]
            include=(bad.certificate,),
        )
        _refused(OCSPChecker(responder_url=crafted.url), chain, "OCSPSigning|not issued")


@pytest.mark.parametrize("mode", ["hard-fail", "soft-fail"])
def test_a_revocation_among_too_many_answers_still_revokes(
    crafted: Crafted, setup: Setup, mode: str
) -> None:
    """A CA-signed response with more SingleResponses than are read for a GOOD (32), ours
    REVOKED among them, was no answer unread, and soft-fail admitted the certificate. The
    signature is checked first now, and a final revocation of ours anywhere in it revokes;
    without one, so many answers are still no answer."""
    others = [setup.ca.issue_client_cert(common_name=f"n{i}").certificate for i in range(36)]
    crafted.answer = _several(
        setup,
        *(_single_for(setup, cert=c) for c in others),
        _single_for(setup, status=REVOKED),
    )
    checker = OCSPChecker(responder_url=crafted.url, failure=mode)  # type: ignore[arg-type]
    with pytest.raises(CertificateRevoked, match="keyCompromise"):
        checker.check(_chain(setup.leaf, setup.ca), at=_now())
    crafted.answer = _several(
        setup, *(_single_for(setup, cert=c) for c in others), _single_for(setup)
    )
    _refused(OCSPChecker(responder_url=crafted.url), _chain(setup.leaf, setup.ca), "more than 32")
    # Forged, it is no answer whatever it holds.
    crafted.answer = _tampered(
        _several(
            setup,
            *(_single_for(setup, cert=c) for c in others),
            _single_for(setup, status=REVOKED),
        )
    )
    _refused(OCSPChecker(responder_url=crafted.url), _chain(setup.leaf, setup.ca), "signature")
