"""Live reload of CRLs and trust: Kubernetes ``..data`` swaps, broken files, threads, a server."""

from __future__ import annotations

import datetime as dt
import http.client
import logging
import os
import random
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509

from mtlsauth import CertificateRevoked, MTLSAuthError, RevocationUnavailable, TrustStore, Verifier
from mtlsauth._revocation._crl import CRLSet
from mtlsauth.testing import CA, ClientCert

UTC = dt.timezone.utc


def _now() -> dt.datetime:
    return dt.datetime.now(UTC)


def _outcome(crls: CRLSet, chain: list[x509.Certificate]) -> str:
    try:
        crls.check(chain, at=_now())
    except CertificateRevoked:
        return "revoked"
    except RevocationUnavailable:
        return "unavailable"
    return "ok"


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@dataclass
class Leaf:
    ca: CA
    leaf: ClientCert

    @property
    def chain(self) -> list[x509.Certificate]:
        return [self.leaf.certificate, self.ca.certificate]


@pytest.fixture
def pki() -> Leaf:
    ca = CA(organization="Reload")
    return Leaf(ca, ca.issue_client_cert(common_name="rotating"))


class K8sMount:
    """A folder laid out as the kubelet mounts a ConfigMap or Secret."""

    def __init__(self, root: Path, name: str = "crl.pem") -> None:
        self.root = root
        self.name = name
        self.version = 0
        (root / name).symlink_to(Path("..data") / name)

    def publish(self, data: bytes) -> None:
        self.version += 1
        stamp = f"..2026_11_23_{self.version}"
        (self.root / stamp).mkdir()
        (self.root / stamp / self.name).write_bytes(data)
        tmp = self.root / "..data_tmp"
        tmp.symlink_to(stamp)
        os.rename(tmp, self.root / "..data")  # the atomic swap the kubelet does


def test_kubernetes_data_symlink_swap(tmp_path: Path, pki: Leaf) -> None:
    mount = K8sMount(tmp_path)
    mount.publish(pki.ca.crl().bytes())
    crls = CRLSet.from_paths(tmp_path, reload_interval=None)
    assert crls.health()["files"] == [str(tmp_path / "crl.pem")]
    token = crls.token
    assert _outcome(crls, pki.chain) == "ok"
    mount.publish(pki.ca.revoke(pki.leaf).bytes())
    assert _outcome(crls, pki.chain) == "ok"  # no automatic checks: unchanged until reload()
    assert crls.reload() is True
    assert crls.token is not token
    assert _outcome(crls, pki.chain) == "revoked"
    assert crls.reload() is False  # nothing changed since


def test_automatic_reload_after_interval(tmp_path: Path, pki: Leaf) -> None:
    mount = K8sMount(tmp_path)
    mount.publish(pki.ca.crl().bytes())
    crls = CRLSet.from_paths(tmp_path, reload_interval=0.05)
    assert _outcome(crls, pki.chain) == "ok"
    mount.publish(pki.ca.revoke(pki.leaf).bytes())
    time.sleep(0.1)
    # A file is read once it has been still for 0.25 s (it might be being written).
    assert _outcome(crls, pki.chain) == "ok"
    time.sleep(0.3)
    assert _outcome(crls, pki.chain) == "revoked"


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param(lambda good: good[: len(good) // 2], id="half-written PEM"),
        pytest.param(lambda good: b"", id="empty file"),
        pytest.param(lambda good: b"\x30\x82\x01", id="truncated DER"),
    ],
)
def test_broken_file_keeps_last_good(
    tmp_path: Path, pki: Leaf, broken: object, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "ca.crl"
    good = pki.ca.revoke(pki.leaf).bytes()
    path.write_bytes(good)
    crls = CRLSet.from_paths(tmp_path, reload_interval=None)
    token = crls.token
    with caplog.at_level(logging.ERROR, logger="mtlsauth"):
        path.write_bytes(broken(good))  # type: ignore[operator]
        assert crls.reload() is False
    assert crls.token is token
    assert _outcome(crls, pki.chain) == "revoked"  # the last good CRL still applies
    error = crls.health()["last_error"]
    assert isinstance(error, str)
    assert str(path) in error
    assert any(str(path) in r.getMessage() for r in caplog.records)
    path.write_bytes(pki.ca.crl().bytes())  # fixed: listed again by the CA's next CRL
    assert crls.reload() is True
    assert crls.health()["last_error"] is None


def test_removed_file_never_widens_access(tmp_path: Path, pki: Leaf) -> None:
    path = tmp_path / "ca.pem"
    path.write_bytes(pki.ca.crl().bytes())
    crls = CRLSet.from_paths(tmp_path, reload_interval=None)
    path.unlink()
    crls.reload()
    # With no CRL for the issuer, its certificates fail closed (allow_missing is False).
    assert _outcome(crls, pki.chain) == "unavailable"


def test_broken_file_at_construction_is_a_value_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.pem"
    path.write_bytes(b"-----BEGIN X509 CRL-----\nMIIB")
    with pytest.raises(ValueError, match=r"bad\.pem"):
        CRLSet.from_paths(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        CRLSet.from_paths(tmp_path / "missing")


def test_directory_file_names(tmp_path: Path) -> None:
    cas = [CA(organization=f"Names {i}") for i in range(4)]
    (tmp_path / "one.pem").write_bytes(cas[0].crl().bytes())
    (tmp_path / "two.crl").write_bytes(cas[1].crl().bytes())
    (tmp_path / "three.der").write_bytes(cas[2].crl(encoding="der").bytes())
    (tmp_path / "0a1b2c3d.r0").write_bytes(cas[3].crl().bytes())  # openssl rehash link name
    (tmp_path / "README.txt").write_text("not a CRL")
    (tmp_path / ".hidden.pem").write_text("skipped")
    crls = CRLSet.from_paths(tmp_path, reload_interval=None)
    assert len(crls.health()["crls"]) == 4  # type: ignore[arg-type]
    for ca in cas:
        leaf = ca.issue_client_cert()
        assert _outcome(crls, [leaf.certificate, ca.certificate]) == "ok"


@pytest.mark.slow
def test_threads_never_see_a_torn_state(tmp_path: Path, pki: Leaf) -> None:
    path = tmp_path / "ca.pem"
    clean = pki.ca.crl().bytes()
    listed = pki.ca.revoke(pki.leaf).bytes()
    path.write_bytes(clean)
    crls = CRLSet.from_paths(tmp_path, reload_interval=0.01)
    stop = threading.Event()
    final = threading.Event()
    problems: list[str] = []

    def worker() -> None:
        while not stop.is_set():
            after_final = final.is_set()
            result = _outcome(crls, pki.chain)
            if result == "unavailable" or (after_final and result != "revoked"):
                problems.append(f"{result} (after final swap: {after_final})")

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for i in range(12):
            _write_atomically(path, listed if i % 2 else clean)
            crls.reload()
            time.sleep(0.005)
        _write_atomically(path, listed)
        crls.reload()
        final.set()
        time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert problems == []


# -- a running server: rotate a CRL and a CA with requests in flight ----------------------


@dataclass
class Record:
    started: float
    who: str
    status: int


class Server:
    def __init__(self, verifier: Verifier) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                chain = self.rfile.read(int(self.headers["Content-Length"])).decode("ascii")
                try:
                    body = verifier.verify(chain).common_name or ""
                    status = 200
                except MTLSAuthError as exc:
                    body, status = exc.code, exc.status
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def rotation(tmp_path: Path) -> tuple[Path, Path, dict[str, ClientCert], CA, CA]:
    ca_a, ca_b = CA(organization="Old CA"), CA(organization="New CA")
    certs = {
        "a1": ca_a.issue_client_cert(common_name="a1"),
        "a2": ca_a.issue_client_cert(common_name="a2"),
        "b": ca_b.issue_client_cert(common_name="b"),
    }
    trust = tmp_path / "clients-ca.pem"
    trust.write_bytes(ca_a.cert_pem.bytes() + ca_b.cert_pem.bytes())
    crl_dir = tmp_path / "crls"
    crl_dir.mkdir()
    (crl_dir / "a.pem").write_bytes(ca_a.crl().bytes())
    (crl_dir / "b.pem").write_bytes(ca_b.crl().bytes())
    return trust, crl_dir, certs, ca_a, ca_b


@pytest.mark.slow
def test_rotation_under_a_running_server(
    rotation: tuple[Path, Path, dict[str, ClientCert], CA, CA],
) -> None:
    trust, crl_dir, certs, ca_a, ca_b = rotation
    verifier = Verifier(
        trust_store=TrustStore.from_pem_file(trust, reload_interval=0.05),
        revocation=CRLSet.from_paths(crl_dir, reload_interval=0.05),
    )
    server = Server(verifier)
    records: list[Record] = []
    stop = threading.Event()
    lock = threading.Lock()
    pems = {who: c.chain_pem.bytes() for who, c in certs.items()}

    def client(seed: int) -> None:
        rnd = random.Random(seed)
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        try:
            while not stop.is_set():
                who = rnd.choice(list(pems))
                started = time.monotonic()
                conn.request("POST", "/", body=pems[who])
                resp = conn.getresponse()
                resp.read()
                with lock:
                    records.append(Record(started, who, resp.status))
        finally:
            conn.close()

    clients = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for t in clients:
        t.start()
    try:
        time.sleep(0.2)
        # 1. The old CA revokes a2: a new CRL lands in the folder.
        _write_atomically(crl_dir / "a.pem", ca_a.revoke(certs["a2"]).bytes())
        verifier.reload()
        crl_swapped = time.monotonic()
        time.sleep(0.3)
        # 2. The old CA is retired: trust holds only the new CA; its CRL goes too.
        _write_atomically(trust, ca_b.cert_pem.bytes())
        (crl_dir / "a.pem").unlink()
        verifier.reload()
        ca_rotated = time.monotonic()
        time.sleep(0.3)
    finally:
        stop.set()
        for t in clients:
            t.join()
        server.close()

    def admitted(who: str, after: float) -> list[Record]:
        return [r for r in records if r.who == who and r.started > after and r.status == 200]

    assert admitted("a2", crl_swapped) == [], "a revoked certificate was admitted"
    assert admitted("a1", ca_rotated) == [], "a certificate of the removed CA was admitted"
    assert {r.status for r in records if r.who == "b"} == {200}
    # The run really exercised each phase.
    assert [r for r in records if r.who == "a2" and r.started < crl_swapped and r.status == 200]
    assert admitted("a1", crl_swapped)
    assert [r for r in records if r.who == "a1" and r.started > ca_rotated]
    assert verifier.health()["ok"] is True


# -- a reload never widens access ---------------------------------------------------------


@dataclass
class TwoCAs:
    a: CA
    b: CA
    a_leaf: ClientCert
    b_revoked: ClientCert

    def bundle(self) -> bytes:
        """One file, two CRL blocks: A's first, then B's (which lists ``b_revoked``)."""
        return self.a.crl().bytes() + self.b.revoke(self.b_revoked).bytes()


@pytest.fixture
def two() -> TwoCAs:
    a, b = CA(organization="Reload A"), CA(organization="Reload B")
    two = TwoCAs(a, b, a.issue_client_cert(common_name="a"), b.issue_client_cert(common_name="b"))
    two.b.revoke(two.b_revoked)
    return two


def test_a_file_half_rewritten_at_a_block_boundary_is_not_a_snapshot(
    tmp_path: Path, two: TwoCAs
) -> None:
    path = tmp_path / "crls.pem"
    full = two.bundle()
    path.write_bytes(full)
    crls = CRLSet.from_paths(path, allow_missing=True, reload_interval=None)
    chain = [two.b_revoked.certificate, two.b.certificate]
    assert _outcome(crls, chain) == "revoked"
    boundary = full.index(b"-----END X509 CRL-----") + len(b"-----END X509 CRL-----\n")
    path.write_bytes(full[:boundary])  # the writer stopped (or the disk filled up) right here
    assert crls.reload() is False
    assert "Reload B" in str(crls.health()["last_error"])
    assert _outcome(crls, chain) == "revoked"
    path.write_bytes(full)
    crls.reload()
    assert crls.health()["last_error"] is None
    assert _outcome(crls, chain) == "revoked"


def test_an_issuer_may_move_to_another_file_or_go_with_its_file(
    tmp_path: Path, two: TwoCAs
) -> None:
    both, a_only = tmp_path / "both.pem", tmp_path / "a.pem"
    both.write_bytes(two.bundle())
    crls = CRLSet.from_paths(tmp_path, reload_interval=None)
    a_chain = [two.a_leaf.certificate, two.a.certificate]
    b_chain = [two.b_revoked.certificate, two.b.certificate]
    # Split: B stays in both.pem, A moves to its own file. Nothing is dropped.
    a_only.write_bytes(two.a.crl().bytes())
    both.write_bytes(two.b.revoke(two.b_revoked).bytes())
    assert crls.reload() is True
    assert (_outcome(crls, a_chain), _outcome(crls, b_chain)) == ("ok", "revoked")
    # A's file removed: its issuer goes with it (and, without allow_missing, fails closed).
    a_only.unlink()
    assert crls.reload() is True
    assert (_outcome(crls, a_chain), _outcome(crls, b_chain)) == ("unavailable", "revoked")


@pytest.mark.slow
def test_files_rewritten_byte_by_byte_while_requests_flow(tmp_path: Path, two: TwoCAs) -> None:
    """In-place rewrites (truncate, then one byte at a time, pausing at block boundaries)
    while threads verify and reload: the revoked certificate is never admitted, and the good
    one is never refused."""
    path = tmp_path / "crls.pem"
    full = two.bundle()
    path.write_bytes(full)
    crls = CRLSet.from_paths(path, allow_missing=True, reload_interval=0.001)
    revoked = [two.b_revoked.certificate, two.b.certificate]
    good = [two.a_leaf.certificate, two.a.certificate]
    boundary = full.index(b"-----END X509 CRL-----") + len(b"-----END X509 CRL-----\n")
    stop = threading.Event()
    seen: dict[str, int] = {}
    wrong: list[str] = []

    def writer() -> None:
        pauses = [0.05, 0.4]  # shorter than the quiet period, and longer
        while not stop.is_set():
            with path.open("r+b") as f:
                f.truncate(0)
                for i in range(len(full)):
                    f.write(full[i : i + 1])
                    f.flush()
                    if i + 1 == boundary:
                        pauses.reverse()
                        stop.wait(pauses[0])  # exactly where the old loader was fooled
                    elif i % 64 == 0:
                        time.sleep(0)

    def verifier() -> None:
        while not stop.is_set():
            if random.random() < 0.01:
                crls.reload()  # waits for the files to settle, for up to about a second
            r, g = _outcome(crls, revoked), _outcome(crls, good)
            seen[r] = seen.get(r, 0) + 1
            if r != "revoked":
                wrong.append(f"revoked certificate: {r}")
            if g != "ok":
                wrong.append(f"good certificate: {g}")

    threads = [threading.Thread(target=writer)] + [
        threading.Thread(target=verifier) for _ in range(2)
    ]
    for t in threads:
        t.start()
    time.sleep(3)
    stop.set()
    for t in threads:
        t.join()
    assert not wrong, wrong[:5]
    assert seen.get("revoked", 0) > 100
    # Once the writer is done, the file loads again and nothing is left in error.
    path.write_bytes(full)
    crls.reload()
    assert crls.health()["last_error"] is None


def test_a_loader_exception_of_any_type_never_escapes_reload(tmp_path: Path) -> None:
    from cryptography.x509 import InvalidVersion

    from mtlsauth._reload import FileSnapshot

    path = tmp_path / "x.txt"
    path.write_text("1")

    def loader(files: list[Path]) -> str:
        text = files[0].read_text()
        if text == "v3":
            raise InvalidVersion("bad version", 2)
        return text

    snap = FileSnapshot(
        [path], accept=lambda _n: True, loader=loader, reload_interval=None, what="x"
    )
    path.write_text("v3")
    assert snap.reload() is False
    assert snap.current() == "1"
    assert "InvalidVersion" in str(snap.health()["last_error"])
    path.write_text("v3")
    with pytest.raises(ValueError, match="InvalidVersion"):
        FileSnapshot([path], accept=lambda _n: True, loader=loader, reload_interval=None, what="x")


@pytest.mark.slow
def test_a_ca_bundle_rewritten_in_place_is_never_read_half_way(tmp_path: Path) -> None:
    """The same machinery reloads trust stores: a bundle caught after its first certificate
    is never swapped in while the writer is still at work (an intermediate left alone in a
    bundle would become an anchor)."""
    root = CA(organization="Bundle Reload")
    inter = root.intermediate()
    path = tmp_path / "bundle.pem"
    full = inter.cert_pem.bytes() + root.cert_pem.bytes()
    path.write_bytes(full)
    store = TrustStore.from_pem_file(path, reload_interval=0.001)
    assert len(store) == 2
    boundary = full.index(b"-----END CERTIFICATE-----") + len(b"-----END CERTIFICATE-----\n")
    stop = threading.Event()
    sizes: dict[int, int] = {}
    rewrites = 0

    def writer() -> None:
        nonlocal rewrites
        while not stop.is_set():
            with path.open("r+b") as f:
                f.truncate(0)
                for i in range(len(full)):
                    f.write(full[i : i + 1])
                    f.flush()
                    if i + 1 == boundary:
                        stop.wait(0.05)
            rewrites += 1

    t = threading.Thread(target=writer)
    t.start()
    deadline = time.monotonic() + 2
    try:
        while time.monotonic() < deadline:
            n = len(store)
            sizes[n] = sizes.get(n, 0) + 1
            time.sleep(0.0005)  # let the writer run
    finally:
        stop.set()
        t.join()
    assert set(sizes) == {2}, sizes
    assert rewrites > 10


# -- Reloads reviewed as an attacker -------------------------------------------------------
NOT_FINITE = [pytest.param(float("nan"), id="nan"), pytest.param(float("inf"), id="inf")]


@pytest.mark.parametrize("value", [*NOT_FINITE, pytest.param(True, id="bool")])
def test_a_reload_interval_that_is_no_number_of_seconds_is_refused(
    tmp_path: Path, pki: Leaf, value: object
) -> None:
    """``nan`` made every automatic check compare False: the files were never read again, so a
    removed CA or a new CRL never landed, with ``health()`` saying ok. ``None`` is the way to
    turn automatic checks off."""
    ca_file = pki.ca.cert_pem.write_to_path(tmp_path / "ca.pem")
    crl_dir = tmp_path / "crls"
    crl_dir.mkdir()
    (crl_dir / "ca.crl").write_bytes(pki.ca.crl().bytes())
    p12 = tmp_path / "trust.p12"
    from cryptography.hazmat.primitives.serialization import NoEncryption, pkcs12

    p12.write_bytes(pkcs12.serialize_java_truststore([pkcs12.PKCS12Certificate(pki.ca.certificate, None)], NoEncryption()))  # fmt: skip
    builders = [
        lambda: TrustStore.from_pem_file(ca_file, reload_interval=value),  # type: ignore[arg-type]
        lambda: TrustStore.from_directory(tmp_path, reload_interval=value),  # type: ignore[arg-type]
        lambda: TrustStore.from_pkcs12(p12, reload_interval=value),  # type: ignore[arg-type]
        lambda: CRLSet.from_paths(crl_dir, reload_interval=value),  # type: ignore[arg-type]
    ]
    for build in builders:
        with pytest.raises(ValueError, match="reload_interval"):
            build()


@pytest.mark.parametrize("value", [*NOT_FINITE, pytest.param(True, id="bool")])
def test_a_cache_ttl_that_is_no_number_of_seconds_is_refused(pki: Leaf, value: object) -> None:
    """With ``cache_ttl=nan`` an entry's expiry was ``nan``, which no clock passes: a cached
    admission outlived the certificate's notAfter and the CRL's nextUpdate."""
    trust = TrustStore.from_pem(pki.ca.cert_pem.text())
    with pytest.raises(ValueError, match="cache_ttl"):
        Verifier(trust_store=trust, cache_ttl=value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"timeout": float("inf")}, "timeout"),
        ({"timeout": float("nan")}, "timeout"),
        ({"retry_after": float("inf")}, "retry_after"),
        ({"retry_after": float("nan")}, "retry_after"),
        ({"retry_after": True}, "retry_after"),
    ],
)
def test_ocsp_durations_that_are_no_number_of_seconds_are_value_errors(
    kwargs: dict[str, object], name: str
) -> None:
    """An infinite timeout held a request forever on a silent responder; an infinite
    ``retry_after`` raised OverflowError from the constructor instead of a ValueError."""
    from mtlsauth import OCSPChecker

    with pytest.raises(ValueError, match=name):
        OCSPChecker(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["min_refresh_interval", "max_age"])
def test_jwks_refresh_periods_of_nan_are_refused(name: str) -> None:
    """``max_age=nan`` compared False with every age: a key set was never fetched again, so a
    key the issuer had withdrawn kept validating tokens."""
    from mtlsauth.oauth_jwt import JWKS

    with pytest.raises(ValueError, match=name):
        JWKS(lambda: {"keys": []}, source="test", may_block=False, **{name: float("nan")})  # type: ignore[arg-type]


@pytest.mark.parametrize("ahead_s", [1, 3600])
def test_a_bundle_dated_in_the_future_is_not_read_half_written(
    tmp_path: Path, ahead_s: int
) -> None:
    """The quiet period read "mtime less than 0.25 s old" as ``0 <= now - mtime``: a file
    dated in the future (a file server whose clock runs ahead, ``touch -d``, an unpacked
    archive) counted as settled at once. A bundle caught after its intermediate, the writer
    paused before the root, made the intermediate an anchor (its revocation and the root's
    constraints skipped). Such a file is now read once its signature has held for 0.25 s."""
    root = CA(organization="Ahead")
    inter = root.intermediate()
    f = tmp_path / "bundle.pem"
    f.write_bytes(root.cert_pem.bytes())
    trust = TrustStore.from_pem_file(f, reload_interval=0.05)
    before = trust.snapshot()

    def write_dated(data: bytes) -> None:
        f.write_bytes(data)
        stamp = time.time_ns() + ahead_s * 10**9
        os.utime(f, ns=(stamp, stamp))

    write_dated(inter.cert_pem.bytes())  # the intermediate written, the root not yet
    time.sleep(0.1)
    assert trust.snapshot() is before  # not read: it may be half-written
    write_dated(inter.cert_pem.bytes() + root.cert_pem.bytes())  # the writer finishes
    time.sleep(0.1)
    assert trust.snapshot() is before
    deadline = time.monotonic() + 3
    while trust.snapshot() is before and time.monotonic() < deadline:
        time.sleep(0.05)
    # The whole bundle landed once it stopped changing: the root is the one anchor.
    snap = trust.snapshot()
    assert snap is not before
    assert snap.intermediates == (inter.certificate,)
    assert {*snap.certificates} == {root.certificate, inter.certificate}


def test_a_deleted_trust_file_lands_only_once_it_stays_deleted(tmp_path: Path, pki: Leaf) -> None:
    """A deletion has no mtime to wait on; an editor that deletes and then writes must not
    leave the store empty in between, so a deletion lands after 0.25 s, like any write."""
    f = tmp_path / "ca.pem"
    f.write_bytes(pki.ca.cert_pem.bytes())
    past = time.time_ns() - 10**10
    os.utime(f, ns=(past, past))
    trust = TrustStore.from_pem_file(f, reload_interval=0.05)
    before = trust.snapshot()
    f.unlink()
    time.sleep(0.1)
    assert trust.snapshot() is before
    f.write_bytes(pki.ca.cert_pem.bytes())  # written again at once
    os.utime(f, ns=(past, past))
    time.sleep(0.4)
    assert trust.certificates == (pki.ca.certificate,)


def _dated_past(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    past = time.time_ns() - 10**10
    os.utime(path, ns=(past, past))


def test_a_file_deleted_from_a_watched_directory_lands_only_once_it_stays_deleted(
    tmp_path: Path,
) -> None:
    """A file that leaves a watched directory is simply absent from the next listing, and
    the files left all have old mtimes: the deletion was read at once. ``rm *.crl; cp
    new/*.crl .`` then made the issuer missing in between, and with ``allow_missing`` its
    revoked certificates were admitted. A deletion from a directory now waits the quiet
    period, as a deleted path given by name does."""
    root = CA(organization="Dir")
    inter = root.intermediate()
    bad = inter.issue_client_cert(common_name="bad")
    inter_crl = tmp_path / "inter.crl"
    _dated_past(inter_crl, inter.revoke(bad).bytes())
    _dated_past(tmp_path / "root.crl", root.crl().bytes())
    crls = CRLSet.from_paths(tmp_path, allow_missing=True, reload_interval=0.01)
    chain = [bad.certificate, inter.certificate, root.certificate]
    assert _outcome(crls, chain) == "revoked"
    before = crls.token
    inter_crl.unlink()  # the first half of "rm *.crl; cp new/*.crl ."
    time.sleep(0.05)
    assert _outcome(crls, chain) == "revoked"
    assert crls.token is before
    _dated_past(inter_crl, inter.revoke(bad).bytes())  # the second half
    time.sleep(0.4)
    assert _outcome(crls, chain) == "revoked"
    # A deletion that stays is still a way to retire an issuer: it lands after 0.25 s.
    before = crls.token
    inter_crl.unlink()
    deadline = time.monotonic() + 3
    while crls.token is before and time.monotonic() < deadline:
        _outcome(crls, chain)
        time.sleep(0.05)
    assert crls.token is not before
    assert _outcome(crls, chain) == "ok"  # no CRL of the issuer at all: allow_missing


def test_a_ca_file_deleted_from_a_trust_directory_waits_the_quiet_period_too(
    tmp_path: Path,
) -> None:
    a, b = CA(organization="Dir A"), CA(organization="Dir B")
    _dated_past(tmp_path / "a.pem", a.cert_pem.bytes())
    _dated_past(tmp_path / "b.pem", b.cert_pem.bytes())
    trust = TrustStore.from_directory(tmp_path, reload_interval=0.01)
    before = trust.snapshot()
    (tmp_path / "b.pem").unlink()
    time.sleep(0.05)
    assert trust.snapshot() is before
    deadline = time.monotonic() + 3
    while trust.snapshot() is before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert trust.certificates == (a.certificate,)


def test_a_request_uses_the_tokens_it_checked_not_a_later_write_of_older_ones(
    tmp_path: Path,
) -> None:
    """``_verified`` checked the snapshots against ``_last_tokens``, then read
    ``_last_tokens`` again to look the request up. Between the two, a thread whose own
    check had read the trust store before a reload could write its older tokens back; the
    request was then answered with an entry computed under the removed CA. The thread
    interleaving is reproduced here by a revocation source whose ``token`` (read during the
    check) performs that late write."""
    a, b = CA(organization="Kept"), CA(organization="Removed later")
    f = tmp_path / "ca.pem"
    f.write_bytes(b.cert_pem.bytes() + a.cert_pem.bytes())
    past = time.time_ns() - 10**10
    os.utime(f, ns=(past, past))
    trust = TrustStore.from_pem_file(f, reload_interval=None)

    class Source:
        may_block = False
        late_write: object = None

        def check(self, chain: object, *, at: object) -> None:
            return None

        @property
        def token(self) -> object:
            if self.late_write is not None:
                verifier._last_tokens, self.late_write = self.late_write, None  # type: ignore[assignment]
            return "unchanged"

    source = Source()
    verifier = Verifier(trust_store=trust, revocation=source)  # type: ignore[arg-type]
    chain = b.issue_client_cert(common_name="gone").chain_pem.text()
    assert verifier.verify(chain).common_name == "gone"  # cached under the old tokens
    old = verifier._last_tokens
    f.write_bytes(a.cert_pem.bytes())  # b removed
    os.utime(f, ns=(past + 10**9, past + 10**9))
    assert trust.reload() is True
    # Another thread has seen the new store meanwhile; one still holding the old tokens
    # writes them back while this request is being checked.
    verifier._last_tokens = (trust.snapshot(), None, "unchanged")
    source.late_write = old
    with pytest.raises(MTLSAuthError) as refused:
        verifier.verify(chain)
    assert refused.value.code == "untrusted_issuer"


def test_a_successor_rule_that_raises_never_escapes_a_request(tmp_path: Path) -> None:
    """The loader's exceptions were contained, the successor rule's were not: one raised out
    of ``current()``, in the middle of a request (a 500, not a refusal). It now refuses the
    new value, keeping the last good one, as any failed reload does."""
    from mtlsauth._reload import FileSnapshot

    path = tmp_path / "x.txt"
    path.write_text("1")

    def successor(old: str, new: str, files: object) -> str | None:
        raise KeyError(new)

    snap = FileSnapshot(
        [path],
        accept=lambda _n: True,
        loader=lambda files: files[0].read_text(),
        reload_interval=0.01,
        what="x",
        successor=successor,
    )
    path.write_text("2")
    past = time.time_ns() - 10**10
    os.utime(path, ns=(past, past))
    time.sleep(0.02)
    assert snap.current() == "1"  # the automatic check, as a request makes it
    assert "KeyError" in str(snap.health()["last_error"])
    assert snap.reload() is False
    assert snap.current() == "1"


@pytest.mark.parametrize("name", ["grace", "warn_before"])
def test_crl_windows_past_the_calendar_are_no_overflow_error(pki: Leaf, name: str) -> None:
    """``nextUpdate + grace`` past year 9999 raised OverflowError: out of ``CRLSet.from_pem``
    (neither ValueError nor TypeError), and at every reload of a CRL dated far ahead. The
    window now ends at the calendar's end."""
    far = pki.ca.crl(next_update=dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)).bytes()
    for data in (pki.ca.crl().bytes(), far):
        crls = CRLSet.from_pem(data, **{name: dt.timedelta.max})  # type: ignore[arg-type]
        assert _outcome(crls, pki.chain) == "ok"
    crls = CRLSet.from_pem(far, grace=dt.timedelta(days=1))
    assert _outcome(crls, pki.chain) == "ok"


def test_the_cache_only_answer_never_reads_files_nor_waits_for_a_reload(
    tmp_path: Path, pki: Leaf
) -> None:
    """``authenticate_cached`` runs on the event loop and must never block, yet it read the
    trust store's snapshot the ordinary way: when a check was due it stat'ed (and on a change
    loaded) the files on the loop, and while a verification thread was loading a large
    bundle or CRL it waited for it, up to five seconds, holding every request of the loop.
    Now either case answers ``NOT_CACHED``: the check and the wait happen in the
    verification pool, where ``authenticate`` runs."""
    from mtlsauth import Presented
    from mtlsauth._verifier import NOT_CACHED

    f = pki.ca.cert_pem.write_to_path(tmp_path / "ca.pem")
    past = time.time_ns() - 10**10
    os.utime(f, ns=(past, past))
    crl = tmp_path / "ca.crl"
    crl.write_bytes(pki.ca.crl().bytes())
    trust = TrustStore.from_pem_file(f, reload_interval=0.2)
    crls = CRLSet.from_paths(crl, reload_interval=0.2)
    verifier = Verifier(trust_store=trust, revocation=crls)
    presented = Presented(tls_chain=(pki.leaf.cert_pem.text(),))
    assert verifier.authenticate(presented) is not None
    assert verifier.authenticate_cached(presented) is not None  # a hit, nothing due

    for source in (trust._parts[0], crls._source):
        held = threading.Event()
        release = threading.Event()

        def loading(lock: threading.Lock, held: threading.Event, release: threading.Event) -> None:
            with lock:  # another thread in the middle of a long load
                held.set()
                release.wait(5)

        worker = threading.Thread(target=loading, args=(source._lock, held, release))  # type: ignore[union-attr]
        worker.start()
        held.wait(5)
        started = time.monotonic()
        try:
            assert verifier.authenticate_cached(presented) is NOT_CACHED
            assert time.monotonic() - started < 0.5
        finally:
            release.set()
            worker.join()
        assert verifier.authenticate_cached(presented) is not None

    time.sleep(0.25)  # a check is due: the files are not touched on the loop
    due = trust._parts[0]._next_check  # type: ignore[union-attr]
    assert verifier.authenticate_cached(presented) is NOT_CACHED
    assert trust._parts[0]._next_check == due  # type: ignore[union-attr]
    assert verifier.authenticate(presented) is not None  # the pool's call makes the check
    assert verifier.authenticate_cached(presented) is not None
