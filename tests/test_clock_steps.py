"""A clock that steps back never makes a cached answer admit what a verification refuses.

NTP corrections and restored virtual machines move the system clock backwards. A result
cached while the clock was past every ``notBefore`` (of the leaf, of an intermediate, of a
pinned certificate) and past every revocation answer's ``thisUpdate`` must not be served
once the clock reads a moment before them: a verification at that moment refuses.

Each test runs two Verifiers under one controlled clock: one that caches, one with
``cache_size=0`` that verifies on every request. Their answers must agree at every step.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from mtlsauth import CRLSet, ForwardedCert, MTLSAuthError, Presented, TrustStore, Verifier
from mtlsauth import _verifier as verifier_module
from mtlsauth._revocation._ocsp import OCSPChecker
from mtlsauth.testing import CA, self_signed_client_cert
from test_cache_answers import _Responder

UTC = dt.timezone.utc
PEER = "192.0.2.10"


class _Clock:
    """The Verifier's view of the time (``time.time()`` and the UTC now it validates at)."""

    def __init__(self, at: dt.datetime) -> None:
        self.at = at

    def time(self) -> float:
        return self.at.timestamp()

    def __getattr__(self, name: str) -> Any:  # monotonic(), perf_counter(), ...
        return getattr(time, name)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    fake = _Clock(dt.datetime.now(UTC))
    monkeypatch.setattr(verifier_module, "time", fake)
    monkeypatch.setattr(verifier_module, "_utcnow", lambda: fake.at)
    return fake


def _answer(verifier: Verifier, chain: tuple[bytes, ...]) -> str:
    try:
        identity = verifier.authenticate(Presented(peer=PEER, tls_chain=chain))
    except MTLSAuthError as exc:
        return exc.code
    return f"ok:{identity.common_name}"


def _agree(cached: Verifier, fresh: Verifier, chain: tuple[bytes, ...]) -> str:
    want = _answer(fresh, chain)
    assert _answer(cached, chain) == want
    return want


def _step_back_and_compare(
    clock: _Clock,
    cached: Verifier,
    fresh: Verifier,
    chain: tuple[bytes, ...],
    start: dt.datetime,
    refusal: str,
) -> None:
    """Admitted (twice: the second answer comes from the hot path) an hour after
    ``start``; then the clock steps back to an hour before it."""
    clock.at = start + dt.timedelta(hours=1)
    assert _agree(cached, fresh, chain).startswith("ok:")
    assert _agree(cached, fresh, chain).startswith("ok:")
    assert cached.health()["cache"]["hits"] >= 1  # type: ignore[index]
    clock.at = start - dt.timedelta(hours=1)
    assert _agree(cached, fresh, chain) == refusal
    assert _agree(cached, fresh, chain) == refusal
    # Forward again: admitted again, by both.
    clock.at = start + dt.timedelta(hours=2)
    assert _agree(cached, fresh, chain).startswith("ok:")


def _twins(**settings: Any) -> tuple[Verifier, Verifier]:
    """A verifier with its cache and its twin that verifies every request, alike otherwise."""
    return Verifier(**settings), Verifier(**settings, cache_size=0)


def _start() -> dt.datetime:
    return dt.datetime.now(UTC).replace(microsecond=0) + dt.timedelta(days=3)


@pytest.mark.parametrize("skew", [0, 300])
def test_a_leaf_not_yet_valid_after_a_step_back_is_refused_from_the_cache(
    clock: _Clock, skew: int
) -> None:
    start = _start()
    ca = CA(organization="Step leaf")
    leaf = ca.issue_client_cert(common_name="leaf", not_before=start)
    trust = ca.trust_store()
    cached, fresh = _twins(trust_store=trust, clock_skew=skew)
    _step_back_and_compare(clock, cached, fresh, (leaf.der,), start, "certificate_not_yet_valid")


def test_an_intermediate_not_yet_valid_after_a_step_back_is_refused_from_the_cache(
    clock: _Clock,
) -> None:
    start = _start()
    root = CA(organization="Step root")
    inter = root.intermediate(organization="Step intermediate", not_before=start)
    leaf = inter.issue_client_cert(
        common_name="via-intermediate", not_before=start - dt.timedelta(days=1)
    )
    trust = root.trust_store()
    cached, fresh = _twins(trust_store=trust)
    chain = (leaf.der, inter.certificate.public_bytes(serialization.Encoding.DER))
    clock.at = start + dt.timedelta(hours=1)
    assert _agree(cached, fresh, chain) == "ok:via-intermediate"
    clock.at = start - dt.timedelta(hours=1)
    refusal = _answer(fresh, chain)
    assert not refusal.startswith("ok:")
    _step_back_and_compare(clock, cached, fresh, chain, start, refusal)


def test_a_pinned_certificate_not_yet_valid_after_a_step_back_is_refused_from_the_cache(
    clock: _Clock,
) -> None:
    start = _start()
    pin = self_signed_client_cert(common_name="pinned", not_before=start)
    cached, fresh = _twins(pinned=[pin.certificate])
    _step_back_and_compare(clock, cached, fresh, (pin.der,), start, "certificate_not_yet_valid")


def test_a_crl_issued_after_the_stepped_back_clock_is_not_stood_in_for_by_the_cache(
    clock: _Clock,
) -> None:
    start = _start()
    ca = CA(organization="Step CRL")
    leaf = ca.issue_client_cert(common_name="crl", not_before=start - dt.timedelta(days=2))
    crls = CRLSet.from_pem(
        ca.crl(last_update=start, next_update=start + dt.timedelta(days=7)).bytes()
    )
    trust = ca.trust_store()
    cached, fresh = _twins(trust_store=trust, revocation=crls)
    _step_back_and_compare(clock, cached, fresh, (leaf.der,), start, "revocation_unavailable")


def test_a_proxy_verified_identity_not_yet_valid_after_a_step_back_is_refused(
    clock: _Clock,
) -> None:
    start = _start()
    end = start + dt.timedelta(days=30)
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    request = Presented(
        peer="10.0.0.5",
        headers=(
            ("x-amzn-mtls-clientcert-subject", "CN=alice,O=Acme"),
            ("x-amzn-mtls-clientcert-issuer", "CN=Acme CA"),
            ("x-amzn-mtls-clientcert-serial-number", "0A1B"),
            (
                "x-amzn-mtls-clientcert-validity",
                f"NotBefore={start.strftime(stamp)};NotAfter={end.strftime(stamp)}",
            ),
        ),
    )

    def make(size: int) -> Verifier:
        forwarded = ForwardedCert.preset(
            "aws-alb-verify", trusted_proxies=["10.0.0.0/24"], verified_by_proxy=True
        )
        return Verifier(trust_store=CA().trust_store(), forwarded=forwarded, cache_size=size)

    cached, fresh = make(10), make(0)

    def ask(verifier: Verifier) -> str:
        try:
            identity = verifier.authenticate(request)
        except MTLSAuthError as exc:
            return exc.code
        return f"ok:{identity.common_name}"

    clock.at = start + dt.timedelta(hours=1)
    assert ask(fresh) == ask(cached) == "ok:alice"
    assert ask(fresh) == ask(cached) == "ok:alice"
    clock.at = start - dt.timedelta(hours=1)
    assert ask(fresh) == "certificate_not_yet_valid"
    assert ask(cached) == "certificate_not_yet_valid"


def test_an_ocsp_answer_newer_than_the_stepped_back_clock_is_not_reused(
    clock: _Clock,
) -> None:
    server = _Responder(CA(organization="Step OCSP"))
    try:
        leaf = server.issue("ocsp")
        trust = TrustStore.from_pem(server.ca.cert_pem.bytes())
        shared = OCSPChecker(responder_url=server.url)
        cached = Verifier(trust_store=trust, revocation=shared)
        fresh = Verifier(
            trust_store=trust,
            revocation=OCSPChecker(responder_url=server.url, cache_size=0),
            cache_size=0,
        )
        now = dt.datetime.now(UTC)
        clock.at = now
        assert _agree(cached, fresh, (leaf.der,)) == "ok:ocsp"
        assert _agree(cached, fresh, (leaf.der,)) == "ok:ocsp"
        # An hour back: the responder's answers (thisUpdate a minute ago) are from the
        # future; the leaf itself is valid (issued an hour before now, with the step).
        clock.at = now - dt.timedelta(minutes=30)
        assert _agree(cached, fresh, (leaf.der,)) == "revocation_unavailable"
    finally:
        server.close()


def test_the_ocsp_answer_cache_never_answers_for_a_moment_before_the_answer() -> None:
    server = _Responder(CA(organization="Step OCSP cache"))
    try:
        leaf = server.issue("ocsp-cache")
        chain = [leaf.certificate, server.ca.certificate]
        checker = OCSPChecker(responder_url=server.url)
        assert checker.check(chain, at=dt.datetime.now(UTC)) is not None
        earlier = dt.datetime.now(UTC) - dt.timedelta(minutes=30)
        fresh = OCSPChecker(responder_url=server.url)
        with pytest.raises(MTLSAuthError) as want:
            fresh.check(chain, at=earlier)
        with pytest.raises(MTLSAuthError) as got:
            checker.check(chain, at=earlier)
        assert got.value.code == want.value.code == "revocation_unavailable"
    finally:
        server.close()


def test_the_ocsp_answer_cache_drops_an_answer_when_the_clock_steps_back_before_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mtlsauth._revocation import _ocsp

    server = _Responder(CA(organization="Step OCSP clock"))
    try:
        leaf = server.issue("ocsp-clock")
        chain = [leaf.certificate, server.ca.certificate]
        checker = OCSPChecker(responder_url=server.url)
        now = dt.datetime.now(UTC)
        assert checker.check(chain, at=now) is not None
        assert server.requests == 1
        earlier = now - dt.timedelta(minutes=30)

        class Stepped(dt.datetime):
            @classmethod
            def now(cls, tz: dt.tzinfo | None = None) -> Stepped:  # type: ignore[override]
                return cls.fromtimestamp(earlier.timestamp(), tz)

        monkeypatch.setattr(_ocsp, "datetime", Stepped)
        with pytest.raises(MTLSAuthError) as got:
            checker.check(chain, at=earlier)  # the clock itself reads 30 minutes back
        assert got.value.code == "revocation_unavailable"
        assert server.requests == 2  # asked again, and its answer is from the future
    finally:
        server.close()
