"""A cached answer is the answer a fresh verification gives for the same input at that moment.

Each test asks two Verifiers over the same trust and revocation sources: one that has cached
earlier answers, and one with ``cache_size=0`` that verifies every time. Where their answers
part, the cache admitted (or refused) what a verification would not.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from mtlsauth import (
    CertificateInvalid,
    MTLSAuthError,
    Presented,
    TrustStore,
    Verifier,
)
from mtlsauth._revocation._ocsp import OCSPChecker
from mtlsauth.testing import CA, ClientCert

UTC = dt.timezone.utc
PEER = "192.0.2.10"


def _answer(verifier: Verifier, chain: object) -> str:
    """``"ok:<common name>"`` or the refusal's code."""
    try:
        if isinstance(chain, tuple):
            identity = verifier.authenticate(Presented(peer=PEER, tls_chain=chain))
        else:
            identity = verifier.verify(chain)
    except MTLSAuthError as exc:
        return exc.code
    assert identity is not None
    return f"ok:{identity.common_name}"


def _same_answers(cached: Verifier, fresh: Verifier, chain: object) -> str:
    want = _answer(fresh, chain)
    assert _answer(cached, chain) == want
    return want


# -- OCSP answers the checker no longer holds ----------------------------------------------


class _Responder:
    """An OCSP responder on 127.0.0.1 answering GOOD, or REVOKED for the serials listed."""

    def __init__(self, ca: CA) -> None:
        self.revoked: set[int] = set()
        self.requests = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                owner.requests += 1
                data = owner.build(ocsp.load_der_ocsp_request(body))
                self.send_response(200)
                self.send_header("Content-Type", "application/ocsp-response")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.ca = ca
        self.certs: dict[int, x509.Certificate] = {}
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def build(self, request: ocsp.OCSPRequest) -> bytes:
        now = dt.datetime.now(UTC)
        cert = self.certs[request.serial_number]
        revoked = request.serial_number in self.revoked
        builder = ocsp.OCSPResponseBuilder().add_response(
            cert=cert,
            issuer=self.ca.certificate,
            algorithm=hashes.SHA1(),  # noqa: S303 - RFC 6960 CertID
            cert_status=ocsp.OCSPCertStatus.REVOKED if revoked else ocsp.OCSPCertStatus.GOOD,
            this_update=now - dt.timedelta(minutes=1),
            next_update=now + dt.timedelta(hours=1),
            revocation_time=now - dt.timedelta(minutes=1) if revoked else None,
            revocation_reason=x509.ReasonFlags.key_compromise if revoked else None,
        )
        builder = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, self.ca.certificate)
        try:
            nonce = request.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
            builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
        except x509.ExtensionNotFound:
            pass
        signed = builder.sign(self.ca.private_key, hashes.SHA256())  # type: ignore[arg-type]
        return signed.public_bytes(serialization.Encoding.DER)

    def issue(self, name: str) -> ClientCert:
        leaf = self.ca.issue_client_cert(common_name=name)
        self.certs[leaf.certificate.serial_number] = leaf.certificate
        return leaf

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def responder() -> Iterator[_Responder]:
    server = _Responder(CA(organization="Cache OCSP"))
    yield server
    server.close()


def _pair(responder: _Responder, checker: OCSPChecker) -> tuple[Verifier, Verifier]:
    trust = TrustStore.from_pem(responder.ca.cert_pem.bytes())
    return (
        Verifier(trust_store=trust, revocation=checker),
        Verifier(trust_store=trust, revocation=checker, cache_size=0),
    )


def test_an_ocsp_checker_without_an_answer_cache_is_asked_on_every_verification(
    responder: _Responder,
) -> None:
    # cache_size=0: the checker keeps no answer, so a fresh verification asks the responder
    # each time; a Verifier's cached pass must not stand in for the answer it did not keep.
    checker = OCSPChecker(responder_url=responder.url, cache_size=0)
    cached, fresh = _pair(responder, checker)
    leaf = responder.issue("soon revoked")
    chain = leaf.chain_pem.text()
    assert _same_answers(cached, fresh, chain) == "ok:soon revoked"
    responder.revoked.add(leaf.certificate.serial_number)
    assert _same_answers(cached, fresh, chain) == "certificate_revoked"


def test_an_ocsp_answer_evicted_from_the_checker_takes_the_cached_pass_with_it(
    responder: _Responder,
) -> None:
    checker = OCSPChecker(responder_url=responder.url, cache_size=2)
    cached, fresh = _pair(responder, checker)
    victim = responder.issue("victim")
    others = [responder.issue(f"other {i}") for i in range(3)]
    assert _same_answers(cached, fresh, victim.chain_pem.text()) == "ok:victim"
    for i, other in enumerate(others):  # other clients' answers push the victim's out
        assert _answer(cached, other.chain_pem.text()) == f"ok:other {i}"
    responder.revoked.add(victim.certificate.serial_number)
    assert _same_answers(cached, fresh, victim.chain_pem.text()) == "certificate_revoked"


def test_answers_the_checker_keeps_still_serve_cached_passes(responder: _Responder) -> None:
    # The other side of the rule: while the checker holds every answer, passes stay cached
    # (no request to the responder, and no verification).
    checker = OCSPChecker(responder_url=responder.url, cache_size=8)
    cached, _fresh = _pair(responder, checker)
    leaves = [responder.issue(f"client {i}") for i in range(4)]
    for i, leaf in enumerate(leaves):
        assert _answer(cached, leaf.chain_pem.text()) == f"ok:client {i}"
    asked = responder.requests
    misses = cached.health()["cache"]["misses"]  # type: ignore[index]
    for i, leaf in enumerate(leaves):
        assert _answer(cached, leaf.chain_pem.text()) == f"ok:client {i}"
    assert responder.requests == asked
    assert cached.health()["cache"]["misses"] == misses  # type: ignore[index]


# -- another variant of a cached leaf --------------------------------------------------------


def _not_a_certificate() -> bytes:
    """DER of the shape ``SEQUENCE { SEQUENCE, SEQUENCE, BIT STRING }`` that no certificate
    reader accepts: it passes every shape check and fails to load."""
    inner = b"\x30\x00" + b"\x30\x00" + b"\x03\x01\x00"
    return b"\x30" + bytes([len(inner)]) + inner


def _broken_copy(cert: x509.Certificate) -> bytes:
    """A CA certificate's DER with its signature algorithm replaced by an unknown OID: the
    shape of a certificate, refused when loaded."""
    der = cert.public_bytes(serialization.Encoding.DER)
    oid = bytes.fromhex("06082a8648ce3d040302")  # ecdsa-with-SHA256
    assert der.count(oid) == 2
    return der.replace(oid, bytes.fromhex("06082a8648ce3d04ffff"))


@pytest.mark.parametrize("extra", ["not a certificate", "unloadable CA copy"])
@pytest.mark.parametrize("how", ["tls", "verify"])
def test_a_variant_with_an_unreadable_extra_certificate_is_refused_as_a_fresh_one_is(
    extra: str, how: str
) -> None:
    ca = CA(organization="Variants")
    inter = ca.intermediate()
    leaf = inter.issue_client_cert(common_name="variant")
    trust = ca.trust_store()
    cached = Verifier(trust_store=trust)
    fresh = Verifier(trust_store=trust, cache_size=0)
    good = (leaf.der, inter.certificate.public_bytes(serialization.Encoding.DER))
    bad = _not_a_certificate() if extra == "not a certificate" else _broken_copy(inter.certificate)
    variant = (*good, bad)
    if how == "verify":
        good, variant = list(good), list(variant)  # type: ignore[assignment]
    assert _same_answers(cached, fresh, good) == "ok:variant"
    assert _same_answers(cached, fresh, variant) == "certificate_malformed"
    # The leaf's own entry is untouched: the good chain is still a hit.
    hits = cached.health()["cache"]["hits"]  # type: ignore[index]
    assert _answer(cached, good) == "ok:variant"
    assert cached.health()["cache"]["hits"] == hits + 1  # type: ignore[index,operator]


# -- a refusal that time lifts ----------------------------------------------------------------


@pytest.mark.parametrize("pinned", [False, True])
def test_a_certificate_not_yet_valid_is_admitted_as_soon_as_it_is(pinned: bool) -> None:
    ca = CA(organization="Soon")
    start = dt.datetime.now(UTC).replace(microsecond=0) + dt.timedelta(seconds=2)
    leaf = ca.issue_client_cert(common_name="early", not_before=start)
    if pinned:
        cached = Verifier(pinned=[leaf.certificate])
        fresh = Verifier(pinned=[leaf.certificate], cache_size=0)
    else:
        cached = Verifier(trust_store=ca.trust_store())
        fresh = Verifier(trust_store=ca.trust_store(), cache_size=0)
    chain = (leaf.der,)
    assert _same_answers(cached, fresh, chain) == "certificate_not_yet_valid"
    time.sleep(max(0.0, start.timestamp() - time.time()) + 0.05)
    assert _same_answers(cached, fresh, chain) == "ok:early"


def test_only_refusals_time_cannot_lift_are_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    # An expired certificate stays refused whatever the clock does next: that refusal is
    # still served from the cache (the flood defence stays).
    ca = CA(organization="Late")
    now = dt.datetime.now(UTC)
    leaf = ca.issue_client_cert(
        common_name="late",
        not_before=now - dt.timedelta(days=2),
        not_after=now - dt.timedelta(days=1),
    )
    verifier = Verifier(trust_store=ca.trust_store())
    with pytest.raises(CertificateInvalid) as first:
        verifier.authenticate(Presented(peer=PEER, tls_chain=(leaf.der,)))
    assert first.value.code == "certificate_expired"
    runs: list[object] = []
    real = Verifier._verify_ders

    def counted(self: Verifier, *args: object, **kwargs: object) -> object:
        runs.append(args)
        return real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Verifier, "_verify_ders", counted)
    with pytest.raises(CertificateInvalid) as again:
        verifier.authenticate(Presented(peer=PEER, tls_chain=(leaf.der,)))
    assert again.value.code == "certificate_expired"
    assert runs == []


# -- clock_skew and certificates that live shorter than it ----------------------------------


def _short_lived(
    start: dt.datetime, life: float, skew: float
) -> tuple[Verifier, Verifier, tuple[bytes, ...]]:
    ca = CA(organization="Short lived")
    leaf = ca.issue_client_cert(
        common_name="brief", not_before=start, not_after=start + dt.timedelta(seconds=life)
    )
    trust = ca.trust_store()
    return (
        Verifier(trust_store=trust, clock_skew=skew),
        Verifier(trust_store=trust, clock_skew=skew, cache_size=0),
        (leaf.der,),
    )


def _sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.time()))


def test_a_certificate_shorter_lived_than_the_skew_is_not_served_past_its_notafter() -> None:
    # Valid for 4 s, with 30 s of skew. Once it has expired, the skew's second chance looks
    # 30 s back, before notBefore: a verification refuses it for the next 26 s. A cached
    # success must not last until notAfter + 30 s.
    base = dt.datetime.now(UTC).replace(microsecond=0)
    cached, fresh, chain = _short_lived(base - dt.timedelta(seconds=2), 4, 30)
    assert _same_answers(cached, fresh, chain) == "ok:brief"
    _sleep_until(base.timestamp() + 3.2)
    assert _same_answers(cached, fresh, chain) == "certificate_expired"


def test_a_certificate_admitted_ahead_of_its_notbefore_is_not_served_past_the_lookahead() -> None:
    # Valid from base + 30 s for 2 s, with 30 s of skew: from base to base + 2 s the skew's
    # look ahead lands inside the window and admits it; after that it lands past notAfter,
    # and a verification refuses it until base + 30 s.
    base = dt.datetime.now(UTC).replace(microsecond=0)
    cached, fresh, chain = _short_lived(base + dt.timedelta(seconds=30), 2, 30)
    assert _same_answers(cached, fresh, chain) == "ok:brief"
    _sleep_until(base.timestamp() + 3.2)
    assert _same_answers(cached, fresh, chain) == "certificate_not_yet_valid"


# -- certificates without proof of possession ------------------------------------------------


def test_pasted_certificates_never_stand_in_for_a_tls_client() -> None:
    # verify() reads certificates anyone can paste (a leaf is public). Failures with a
    # client's leaf there must not count against that client's TLS connections: four failing
    # pastes of the leaf made its next TLS chain refused without a verification.
    ca = CA(organization="Pasted")
    inter = ca.intermediate()
    leaf = inter.issue_client_cert(common_name="holder")
    trust = ca.trust_store()
    cached = Verifier(trust_store=trust)
    fresh = Verifier(trust_store=trust, cache_size=0)
    inter_der = inter.certificate.public_bytes(serialization.Encoding.DER)
    for i in range(6):
        inner = b"\x30\x00" + b"\x30\x00" + b"\x03\x02\x00" + bytes([i])
        junk = b"\x30" + bytes([len(inner)]) + inner
        assert _same_answers(cached, fresh, [leaf.der, junk]) == "certificate_malformed"
    assert _same_answers(cached, fresh, (leaf.der, inter_der)) == "ok:holder"


# -- cache keys of several certificate headers -----------------------------------------------

_SUBJECT = "x-amzn-mtls-clientcert-subject"
_ISSUER = "x-amzn-mtls-clientcert-issuer"
_XFCC = "x-forwarded-client-cert"
# ALB always forwards the window, and an identity without it is refused.
_WINDOW = (
    "x-amzn-mtls-clientcert-validity",
    "NotBefore=2020-01-01T00:00:00Z;NotAfter=9000-01-01T00:00:00Z",
)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (  # two headers each time, a value spelling the other's name and separator
            ((_SUBJECT, f"CN=alice\x00{_ISSUER}\x01CN=Evil"), (_ISSUER, "CN=Good"), _WINDOW),
            ((_SUBJECT, "CN=alice"), (_ISSUER, f"CN=Evil\x00{_ISSUER}\x01CN=Good"), _WINDOW),
        ),
        (  # one header against two
            ((_SUBJECT, f"CN=alice,O=x\x00{_ISSUER}\x01CN=Good"), _WINDOW),
            ((_SUBJECT, "CN=alice,O=x"), (_ISSUER, "CN=Good"), _WINDOW),
        ),
    ],
)
def test_header_sets_that_differ_never_share_a_cache_key(
    first: tuple[tuple[str, str], ...], second: tuple[tuple[str, str], ...]
) -> None:
    from mtlsauth import ForwardedCert, Policy

    fwd = ForwardedCert.preset(
        "aws-alb-verify", trusted_proxies=["10.0.0.1"], verified_by_proxy=True
    )
    ca = CA(organization="Keys")

    def verifier(cache_size: int) -> Verifier:
        return Verifier(
            trust_store=ca.trust_store(),
            forwarded=fwd,
            policy=Policy(issuers=["CN=Good"]),
            cache_size=cache_size,
        )

    def answer(v: Verifier, headers: tuple[tuple[str, str], ...]) -> str:
        try:
            identity = v.authenticate(Presented(peer="10.0.0.1", headers=headers))
        except MTLSAuthError as exc:
            return exc.code
        assert identity is not None
        return f"ok:{identity.subject}"

    cached, fresh = verifier(10_000), verifier(0)
    answers = [answer(fresh, h) for h in (first, second)]
    assert answers[0] != answers[1]
    assert [answer(cached, h) for h in (first, second)] == answers
    assert [answer(cached, h) for h in (second, first)] == answers[::-1]


# -- memos compared by identity -----------------------------------------------------------------


@pytest.mark.parametrize("deny_lists", [False, True])
def test_route_policies_built_per_request_never_borrow_a_freed_ones_verdict(
    deny_lists: bool,
) -> None:
    # Each request gets a new Policy object, the previous one freed: CPython hands its
    # address (its id()) to the next. Verdicts memoised by id() must hold the policy.
    from mtlsauth import Policy

    ca = CA(organization="Routes")
    leaf = ca.issue_client_cert(common_name="alice")
    base = Policy(deny_serials=[1]) if deny_lists else None
    cached = Verifier(trust_store=ca.trust_store(), policy=base)
    fresh = Verifier(trust_store=ca.trust_store(), policy=base, cache_size=0)
    chain = (leaf.der,)
    seen_ids: set[int] = set()
    rounds = 700  # past the 256 route policies the Verifier remembers with its deny-lists
    for i in range(rounds):
        name = "alice" if i % 2 else "bob"
        want = _answer_with(fresh, chain, Policy(common_names=[name]))
        policy = Policy(common_names=[name])
        seen_ids.add(id(policy))
        assert _answer_with(cached, chain, policy) == want
        del policy  # freed at once (reference counting): its address is free for the next
    assert len(seen_ids) < rounds  # addresses were reused, so the memo was put to the test


def _answer_with(verifier: Verifier, chain: tuple[bytes, ...], policy: object) -> str:
    try:
        identity = verifier.authenticate(
            Presented(peer=PEER, tls_chain=chain),
            policy=policy,  # type: ignore[arg-type]
        )
    except MTLSAuthError as exc:
        return exc.code
    assert identity is not None
    return f"ok:{identity.common_name}"


# -- the same through a middleware's hot path ------------------------------------------------


def test_the_asgi_hot_path_drops_a_pass_whose_ocsp_answer_was_evicted(
    responder: _Responder,
) -> None:
    import asyncio
    import json
    from urllib.parse import quote

    from mtlsauth import ForwardedCert
    from mtlsauth.adapters.asgi import IDENTITY_KEY, MTLSMiddleware

    checker = OCSPChecker(responder_url=responder.url, cache_size=2)
    fwd = ForwardedCert.preset("nginx", trusted_proxies=["127.0.0.1"])
    trust = TrustStore.from_pem(responder.ca.cert_pem.bytes())
    verifier = Verifier(trust_store=trust, revocation=checker, forwarded=fwd)
    fresh = Verifier(trust_store=trust, revocation=checker, forwarded=fwd, cache_size=0)

    async def app(scope: dict[str, object], receive: object, send: object) -> None:
        identity = scope[IDENTITY_KEY]
        body = json.dumps({"cn": identity.common_name}).encode()  # type: ignore[attr-defined]
        await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": body})  # type: ignore[operator]

    middleware = MTLSMiddleware(app, verifier=verifier)  # type: ignore[arg-type]

    def through_middleware(leaf: ClientCert) -> str:
        value = quote(leaf.cert_pem.text(), safe="")
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": "/",
            "raw_path": b"/",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"x-ssl-client-cert", value.encode())],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
        }
        sent: list[dict[str, object]] = []

        async def receive() -> dict[str, object]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, object]) -> None:
            sent.append(message)

        asyncio.run(middleware(scope, receive, send))
        body = json.loads(sent[1]["body"])  # type: ignore[arg-type]
        return f"ok:{body['cn']}" if sent[0]["status"] == 200 else str(body["code"])

    def directly(leaf: ClientCert) -> str:
        value = quote(leaf.cert_pem.text(), safe="")
        headers = (("x-ssl-client-cert", value),)
        try:
            identity = fresh.authenticate(Presented(peer="127.0.0.1", headers=headers))
        except MTLSAuthError as exc:
            return exc.code
        assert identity is not None
        return f"ok:{identity.common_name}"

    victim = responder.issue("victim")
    for _ in range(3):  # cached and answered on the hot path from the second request on
        assert through_middleware(victim) == directly(victim) == "ok:victim"
    assert verifier.health()["cache"]["hits"] >= 2  # type: ignore[index,operator]
    for i in range(3):
        assert through_middleware(responder.issue(f"other {i}")) == f"ok:other {i}"
    responder.revoked.add(victim.certificate.serial_number)
    assert directly(victim) == "certificate_revoked"
    assert through_middleware(victim) == "certificate_revoked"


def test_der_chains_that_differ_never_share_a_key_and_the_leaf_digest_is_its_own() -> None:
    """``verify`` keys a DER chain by the leaf's SHA-256 and the rest's bytes, and hands that
    digest to a miss as the leaf's fingerprint: chains that differ in any certificate, in
    their number or their order get keys of their own, and the digest is the leaf's."""
    import hashlib

    from mtlsauth._cache import chain_key, der_chain_key

    ca = CA()
    inter = ca.intermediate()
    leaf = inter.issue_client_cert(common_name="svc")
    l_der, (_, i_der) = leaf.der, leaf.chain_der
    r_der = ca.certificate.public_bytes(serialization.Encoding.DER)
    chains = [
        (l_der,),
        (l_der, i_der),
        (l_der, i_der, r_der),
        (l_der, i_der, i_der),
        (i_der, l_der),
        (l_der, r_der),
        (l_der, i_der[:-1] + bytes([i_der[-1] ^ 1])),
        (l_der + i_der,),
    ]
    keys = set()
    for chain in chains:
        key, digest = der_chain_key(chain, b"d")
        assert digest == hashlib.sha256(chain[0]).digest()
        assert key != chain_key(chain, b"d")  # apart from chain_key's keys under one tag
        keys.add(key)
    assert len(keys) == len(chains)
    assert der_chain_key((), b"d")[1] is None
    assert der_chain_key((), b"d")[0] not in keys
    assert der_chain_key((l_der, i_der), b"e")[0] != der_chain_key((l_der, i_der), b"d")[0]

    verifier = Verifier(trust_store=ca.trust_store())
    identity = verifier.verify([l_der, i_der])
    assert identity.fingerprint_sha256 == hashlib.sha256(l_der).hexdigest()
    assert verifier.verify([l_der, i_der]) is identity  # the same key: a hit


def test_a_tls_chain_of_buffers_is_keyed_by_its_octets_never_by_its_item_count() -> None:
    """``chain_key`` prefixes each item with its length. A ``memoryview`` of 4-octet items
    has a ``len`` of a quarter of its octets, so two different chains had one key (and a
    non-contiguous view raised ``BufferError`` out of ``authenticate``): only ``str`` and
    ``bytes`` are keyed as they are, other buffers are read as bytes first."""
    import hashlib

    from mtlsauth._cache import chain_key
    from mtlsauth._types import Presented

    octets = b"AB" + (6).to_bytes(4, "big") + b"CD"
    as_words = memoryview(octets).cast("I")
    other = (b"AB", b"CD" + (0).to_bytes(4, "big"))
    for item in (as_words, bytearray(octets), memoryview(octets)):
        with pytest.raises(TypeError):
            chain_key((item, b""), b"t")
        with pytest.raises(TypeError):
            chain_key((item,), b"t")
    assert chain_key((octets, b""), b"t") != chain_key(other, b"t")

    ca = CA()
    leaf = ca.issue_client_cert(common_name="buffers")
    pem = leaf.chain_pem.bytes()
    verifier = Verifier(trust_store=ca.trust_store())
    fingerprint = hashlib.sha256(leaf.der).hexdigest()
    padded = pem + b" " * (-len(pem) % 4)  # PEM ends in blanks as it may
    shapes = {
        "4-octet items": (memoryview(padded).cast("I"), memoryview(b"")),
        "4-octet items alone": (memoryview(padded).cast("I"),),
        "a writable buffer's view": (memoryview(bytearray(pem)),),
        "not contiguous": (memoryview(bytes(b for c in pem for b in (c, 0)))[::2], b""),
    }
    for what, chain in shapes.items():
        for _ in range(2):
            identity = verifier.authenticate(Presented(peer="192.0.2.1", tls_chain=chain))  # type: ignore[arg-type]
            assert identity is not None, what
            assert identity.fingerprint_sha256 == fingerprint, what


@pytest.mark.parametrize("shape", ["list", "tuple", "pem"])
def test_a_verified_paste_is_never_a_tls_clients_answer(
    shape: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``verify`` of a chain (its key from ``der_chain_key``, or the PEM's own) and
    ``authenticate`` of a TLS client with the same certificates keep their own entries,
    passes and refusals alike: each verifies once, and neither is answered from the
    other's entry, by the raw key or by the leaf's."""
    from mtlsauth import _verifier as verifier_module

    ca = CA(organization="Apart")
    inter = ca.intermediate()
    leaf = inter.issue_client_cert(common_name="holder")
    l_der, i_der = leaf.chain_der
    verifier = Verifier(trust_store=ca.trust_store())
    runs: list[str] = []
    real = verifier_module.Verifier._verify_ders

    def spy(self: Verifier, ders: Any, at: Any, source: str, *args: Any) -> Any:
        runs.append(source)
        return real(self, ders, at, source, *args)

    monkeypatch.setattr(verifier_module.Verifier, "_verify_ders", spy)

    def paste(chain: tuple[bytes, ...]) -> object:
        if shape == "pem":
            return "".join(
                x509.load_der_x509_certificate(d).public_bytes(serialization.Encoding.PEM).decode()
                for d in chain
            )
        return list(chain) if shape == "list" else tuple(chain)

    for _ in range(2):
        assert verifier.verify(paste((l_der, i_der))).common_name == "holder"
    assert runs == ["tls"]
    tls = Presented(peer="203.0.113.9", tls_chain=(l_der, i_der))
    for _ in range(2):
        identity = verifier.authenticate(tls)
        assert identity is not None
    assert len(runs) == 2  # its own verification, once
    # A refusal: a stranger's leaf, pasted, then presented over TLS.
    stranger = CA(organization="Stranger").issue_client_cert(common_name="x").der
    for _ in range(2):
        with pytest.raises(CertificateInvalid) as refused:
            verifier.verify(paste((stranger,)))
        assert refused.value.code == "untrusted_issuer"
    assert len(runs) == 3
    with pytest.raises(CertificateInvalid):
        verifier.authenticate(Presented(peer="203.0.113.9", tls_chain=(stranger,)))
    assert len(runs) == 4
    # A trusted proxy's header with the same certificates: its own verification too.
    from urllib.parse import quote

    from mtlsauth import ForwardedCert

    proxied = Verifier(
        trust_store=ca.trust_store(),
        intermediates=[inter.cert_pem.text()],
        forwarded=ForwardedCert.preset("nginx", trusted_proxies=["127.0.0.1"]),
    )
    runs.clear()
    for _ in range(2):
        assert proxied.verify(paste((l_der, i_der))).common_name == "holder"
    header = (("x-ssl-client-cert", quote(leaf.cert_pem.text(), safe="")),)
    for _ in range(2):
        who = proxied.authenticate(Presented(peer="127.0.0.1", headers=header))
        assert who is not None
    assert len(runs) == 2
    assert runs[1] != "tls"  # verified as a forwarded certificate, not as the paste
