"""The Guard shared by every adapter: modes x outcomes, routes, exempt paths, hooks, failing closed."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from urllib.parse import quote

import pytest

from mtlsauth import (
    ClientIdentity,
    CRLSet,
    ForwardedCert,
    MTLSAuthError,
    Policy,
    Presented,
    Verifier,
)
from mtlsauth._guard import Decision, Guard, InternalError, Route, problem_body, problem_headers
from mtlsauth.testing import CA

PROXY = "10.0.0.1"
STRANGER = "203.0.113.9"


@pytest.fixture(scope="module")
def pkix(pki):
    now = dt.datetime.now(dt.timezone.utc)
    rev_ca = CA(organization="guard revocation")
    retired = rev_ca.issue_client_cert(common_name="retired")
    crl = rev_ca.revoke(retired)
    return {
        "good": pki.good.chain_pem.text(),
        "ads": pki.inter.issue_client_cert(common_name="ads", organization="ads").chain_pem.text(),
        "wrong_ca": pki.other_root.issue_client_cert(common_name="ledger").chain_pem.text(),
        "expired": pki.inter.issue_client_cert(
            not_before=now - dt.timedelta(days=9), not_after=now - dt.timedelta(days=1)
        ).chain_pem.text(),
        "garbage": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        "revoked": retired.chain_pem.text(),
        "rev_trust": rev_ca.trust_store(),
        "crl": crl.bytes(),
        "header_good": quote(pki.good.chain_pem.text(), safe=""),
    }


@pytest.fixture(scope="module")
def verifier(pki) -> Verifier:
    return Verifier(
        trust_store=pki.root.trust_store(),
        forwarded=ForwardedCert.preset(
            "nginx",
            header="x-ssl-client-cert",
            trusted_proxies=[PROXY],
            single_certificate=False,  # leaf + intermediate in the header
        ),
    )


def presented(pkix, what: str | None, *, peer: str = "127.0.0.1", **kw) -> Presented:
    chain = (pkix[what],) if what else ()
    return Presented(peer=peer, tls_chain=chain, **kw)


# -- modes x outcomes --------------------------------------------------------------------
OUTCOMES = [
    # (certificate, mandatory, optional, off): "ok" / "no_certificate" / "skipped" or a code
    pytest.param("good", "ok", "ok", "skipped", id="good"),
    pytest.param(None, "certificate_missing", "no_certificate", "skipped", id="none"),
    pytest.param("wrong_ca", "untrusted_issuer", "untrusted_issuer", "skipped", id="wrong CA"),
    pytest.param("expired", "certificate_expired", "certificate_expired", "skipped", id="expired"),
    pytest.param(
        "garbage", "certificate_malformed", "certificate_malformed", "skipped", id="garbage"
    ),
]


@pytest.mark.parametrize(("cert", "mandatory", "optional", "off"), OUTCOMES)
def test_modes_by_outcome(pkix, verifier, cert, mandatory, optional, off) -> None:
    for mode, expected in (("mandatory", mandatory), ("optional", optional), ("off", off)):
        guard = Guard(verifier=verifier, mode=mode)
        d = guard.decide(presented(pkix, cert), *guard.resolve("/", "GET")[:2])
        assert d.code == expected, mode
        assert d.allowed == (expected in ("ok", "no_certificate", "skipped"))
        assert (d.identity is not None) == (expected == "ok")
        assert d.mode == mode


def test_tls_error_is_refused_in_every_checking_mode(pkix, verifier) -> None:
    for mode in ("mandatory", "optional"):
        d = Guard(verifier=verifier, mode=mode).decide(
            presented(pkix, "good", tls_error="certificate verify failed"), mode, None
        )
        assert d.code == "tls_verification_failed"
        assert d.error is not None
        assert d.error.status == 401


def test_revoked(pkix) -> None:
    v = Verifier(trust_store=pkix["rev_trust"], revocation=CRLSet.from_pem(pkix["crl"]))
    d = Guard(verifier=v, mode="optional").decide(presented(pkix, "revoked"), "optional", None)
    assert d.code == "certificate_revoked"
    assert d.fingerprint is not None  # known from the TLS leaf even for a refusal


def test_policy_denied_is_403(pkix, pki) -> None:
    v = Verifier(trust_store=pki.root.trust_store(), policy=Policy(organizations={"payments"}))
    d = Guard(verifier=v).decide(presented(pkix, "ads"), "mandatory", None)
    assert d.code == "organization_not_allowed"
    assert d.error is not None
    assert d.error.status == 403


# -- forwarded headers -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("peer", "mode", "code"),
    [
        pytest.param(PROXY, "mandatory", "ok", id="trusted proxy"),
        pytest.param(STRANGER, "mandatory", "untrusted_forwarder", id="forged, mandatory"),
        pytest.param(STRANGER, "optional", "untrusted_forwarder", id="forged, optional"),
        pytest.param(STRANGER, "off", "skipped", id="forged, off"),
    ],
)
def test_forwarded_header_trust(pkix, verifier, peer, mode, code) -> None:
    guard = Guard(verifier=verifier, mode=mode)
    p = Presented(peer=peer, headers=(("x-ssl-client-cert", pkix["header_good"]),))
    assert guard.decide(p, mode, None).code == code
    assert guard.strip_names == frozenset({"x-ssl-client-cert"})
    assert guard.must_strip(peer) is (peer != PROXY)


def test_no_forwarded_config_strips_nothing(pki) -> None:
    guard = Guard(verifier=Verifier(trust_store=pki.root.trust_store()))
    assert guard.strip_names == frozenset()
    assert guard.must_strip(STRANGER) is False


# -- routes and exempt paths -------------------------------------------------------------
def test_resolve_routes_first_match_wins(verifier) -> None:
    admin = Route("/admin/*", mode="mandatory")
    public = Route("/public", mode="off")
    api_post = Route(re.compile(r"^/api/v\d+/"), methods={"post"}, mode="mandatory")
    api_any = Route("/api/*", mode="optional")
    guard = Guard(
        verifier=verifier,
        mode="optional",
        routes=[admin, public, api_post, api_any],
        exempt_paths={"/healthz", "/static/*"},
    )
    table = {
        ("/healthz", "GET"): ("off", None, True),
        ("/healthz/x", "GET"): ("optional", None, False),  # exact only
        ("/static/app.js", "GET"): ("off", None, True),
        ("/admin/users", "GET"): ("mandatory", admin, False),
        ("/admin", "GET"): ("optional", None, False),  # "/admin/*" needs the slash
        ("/public", "GET"): ("off", public, False),
        ("/api/v2/pay", "POST"): ("mandatory", api_post, False),
        ("/api/v2/pay", "GET"): ("optional", api_any, False),
        ("/other", "GET"): ("optional", None, False),
    }
    for (path, method), expected in table.items():
        assert guard.resolve(path, method) == expected, (path, method)


def test_route_policy_replaces_verifier_policy(pkix, pki) -> None:
    v = Verifier(trust_store=pki.root.trust_store())
    route = Route("/pay/*", policy=Policy(organizations={"payments"}))
    guard = Guard(verifier=v, routes=[route])
    mode, r, exempt = guard.resolve("/pay/now", "GET")
    assert guard.decide(presented(pkix, "good"), mode, r, exempt).code == "ok"
    assert guard.decide(presented(pkix, "ads"), mode, r, exempt).code == "organization_not_allowed"
    assert guard.decide(presented(pkix, "ads"), *guard.resolve("/x", "GET")).code == "ok"


@pytest.mark.parametrize(
    ("kwargs", "exc"),
    [
        pytest.param({"mode": "sometimes"}, ValueError, id="bad mode"),
        pytest.param({"mode": 1}, TypeError, id="mode not a str"),
        pytest.param({"routes": "/admin"}, TypeError, id="routes a str"),
        pytest.param({"routes": [("/admin", "mandatory")]}, TypeError, id="routes of tuples"),
        pytest.param({"exempt_paths": "/healthz"}, TypeError, id="exempt a bare str"),
        pytest.param({"exempt_paths": ["healthz"]}, ValueError, id="exempt without slash"),
        pytest.param({"exempt_paths": ["/a*b"]}, ValueError, id="star inside"),
        pytest.param({"on_error": "oops"}, TypeError, id="on_error not callable"),
        pytest.param({"on_decision": 3}, TypeError, id="on_decision not callable"),
    ],
)
def test_guard_rejects_bad_configuration(verifier, kwargs, exc) -> None:
    with pytest.raises(exc):
        Guard(verifier=verifier, **kwargs)


def test_guard_needs_a_verifier() -> None:
    with pytest.raises(TypeError):
        Guard(verifier=object())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "kwargs", "exc"),
    [
        pytest.param(("admin",), {}, ValueError, id="no leading slash"),
        pytest.param(("/a*b",), {}, ValueError, id="star inside"),
        pytest.param((b"/a",), {}, TypeError, id="bytes pattern"),
        pytest.param(("/a",), {"methods": "GET"}, TypeError, id="methods a str"),
        pytest.param(("/a",), {"methods": []}, ValueError, id="no methods"),
        pytest.param(("/a",), {"mode": "strict"}, ValueError, id="bad mode"),
        pytest.param(("/a",), {"policy": {"organizations": ["x"]}}, TypeError, id="policy dict"),
    ],
)
def test_route_rejects_bad_rules(args, kwargs, exc) -> None:
    with pytest.raises(exc):
        Route(*args, **kwargs)


def test_route_is_frozen_and_normalises_methods() -> None:
    r = Route("/x", methods=["get", "Post"])
    assert r.methods == frozenset({"GET", "POST"})
    with pytest.raises(AttributeError):
        r.mode = "off"  # type: ignore[misc]


# -- problem+json ------------------------------------------------------------------------
def test_problem_body_and_headers_exact() -> None:
    from mtlsauth import CertificateInvalid, PolicyDenied

    err = CertificateInvalid("certificate expired", code="certificate_expired")
    body = problem_body(err)
    assert json.loads(body) == {
        "type": "urn:mtlsauth:error:certificate_expired",
        "title": "Client certificate invalid",
        "status": 401,
        "detail": "certificate expired",
        "code": "certificate_expired",
    }
    assert problem_headers(err, len(body)) == [
        ("content-type", "application/problem+json"),
        ("content-length", str(len(body))),
        ("cache-control", "no-store"),
        ("www-authenticate", 'MutualTLS error="certificate_expired"'),
    ]
    denied = PolicyDenied("organization not allowed", code="organization_not_allowed")
    assert (
        "www-authenticate",
        'MutualTLS error="organization_not_allowed"',
    ) not in problem_headers(denied, 1)


# -- failing closed, hooks, logging ------------------------------------------------------
def test_unexpected_exception_fails_closed(pkix, verifier, monkeypatch, caplog) -> None:
    def boom(self, presented, *, required=True, policy=None):
        raise RuntimeError("-----BEGIN CERTIFICATE----- secret")

    monkeypatch.setattr(Verifier, "authenticate", boom)
    with caplog.at_level(logging.DEBUG, logger="mtlsauth"):
        for mode in ("mandatory", "optional"):
            d = Guard(verifier=verifier, mode=mode).decide(presented(pkix, "good"), mode, None)
            assert isinstance(d.error, InternalError)
            assert (d.code, d.error.status) == ("internal_error", 500)
            assert not d.allowed
    assert (
        json.loads(problem_body(d.error))["detail"] == "the client certificate could not be checked"
    )
    assert any(
        r.levelno == logging.ERROR and "RuntimeError" in r.getMessage() for r in caplog.records
    )


def test_on_decision_sees_every_decision(pkix, verifier) -> None:
    seen: list[Decision] = []
    guard = Guard(
        verifier=verifier, mode="optional", exempt_paths={"/healthz"}, on_decision=seen.append
    )
    guard.decide(presented(pkix, "good", path="/a"), "optional", None)
    guard.decide(presented(pkix, "expired", path="/b"), "optional", None)
    guard.skip(*guard.resolve("/healthz", "GET"), "127.0.0.1", "/healthz", "GET")
    assert [(d.path, d.code) for d in seen] == [
        ("/a", "ok"),
        ("/b", "certificate_expired"),
        ("/healthz", "skipped"),
    ]
    assert seen[0].identity is not None
    assert seen[0].fingerprint == seen[0].identity.fingerprint_sha256
    assert seen[2].exempt


def test_raising_hook_changes_nothing(pkix, verifier, caplog) -> None:
    def hook(decision: Decision) -> None:
        raise ValueError("metrics backend down")

    guard = Guard(verifier=verifier, on_decision=hook)
    with caplog.at_level(logging.ERROR, logger="mtlsauth"):
        assert guard.decide(presented(pkix, "good"), "mandatory", None).allowed
        assert not guard.decide(presented(pkix, None), "mandatory", None).allowed
    # One line, not one per request: the repeats within the minute are counted.
    assert sum("on_decision hook raised" in r.getMessage() for r in caplog.records) == 1


def test_logs_carry_no_certificate_material(pkix, verifier, caplog) -> None:
    guard = Guard(verifier=verifier, mode="mandatory")
    with caplog.at_level(logging.DEBUG, logger="mtlsauth"):
        ok = guard.decide(presented(pkix, "good", path="/pay"), "mandatory", None)
        guard.decide(presented(pkix, "wrong_ca", path="/pay"), "mandatory", None)
        guard.decide(
            Presented(peer=STRANGER, headers=(("x-ssl-client-cert", pkix["header_good"]),)),
            "mandatory",
            None,
        )
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "BEGIN" not in text
    assert "%2D%2D" not in text
    assert pkix["header_good"][:40] not in text
    assert ok.identity is not None
    assert ok.identity.fingerprint_sha256 in text
    assert "code=untrusted_issuer" in text
    assert "code=untrusted_forwarder" in text
    fields = [r.mtlsauth for r in caplog.records if hasattr(r, "mtlsauth")]
    assert [f["outcome"] for f in fields] == ["allowed", "denied", "denied"]
    assert fields[1]["status"] == 401
    assert fields[1]["peer"] == "127.0.0.1"


def test_mtlsauth_errors_pass_through_unchanged(pkix, verifier, monkeypatch) -> None:
    from mtlsauth import RevocationUnavailable

    def unavailable(self, presented, *, required=True, policy=None):
        raise RevocationUnavailable("no CRL for issuer")

    monkeypatch.setattr(Verifier, "authenticate", unavailable)
    d = Guard(verifier=verifier).decide(presented(pkix, "good"), "mandatory", None)
    assert isinstance(d.error, MTLSAuthError)
    assert d.code == "revocation_unavailable"


# -- path ambiguity: one reading of the target, or a 400 ------------------------------------

from mtlsauth._guard import AmbiguousRequest, VerificationBusy, path_ambiguity  # noqa: E402


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        pytest.param(b"/public/x", "/public/x", id="plain"),
        pytest.param(b"/public/x?next=/../%2F", "/public/x", id="query is not the path"),
        pytest.param(b"/caf%C3%A9", "/café", id="UTF-8"),
        pytest.param(b"/my%20doc", "/my doc", id="space"),
        pytest.param(b"/what%3F", "/what?", id="encoded ?"),
        pytest.param(b"/a%40b/%24x", "/a@b/$x", id="encoded @ and $"),
        pytest.param(b"/admin/", "/admin/", id="trailing slash"),
        pytest.param(b"/", "/", id="root"),
        pytest.param(b"http://h/admin/x", "/admin/x", id="absolute form"),
        pytest.param(None, "/admin/x", id="no raw target"),
        pytest.param(b"/a.b/..c/...", "/a.b/..c/...", id="dots inside segments"),
        pytest.param(b"/.well-known/x", "/.well-known/x", id="segment starting with a dot"),
    ],
)
def test_unambiguous_targets(raw: bytes | None, path: str) -> None:
    assert path_ambiguity(raw, path) is None


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        pytest.param(b"/static%2Facme", "/static/acme", id="encoded slash"),
        pytest.param(b"/static%2facme", "/static/acme", id="encoded slash, lower case"),
        pytest.param(b"/static%5Cacme", "/static\\acme", id="encoded backslash"),
        pytest.param(b"/static\\acme", "/static\\acme", id="raw backslash"),
        pytest.param(b"/a/../admin", "/a/../admin", id="dot-dot"),
        pytest.param(b"/a/./admin", "/a/./admin", id="dot"),
        pytest.param(b"/a/..", "/a/..", id="trailing dot-dot"),
        pytest.param(b"/a/%2e%2e/admin", "/a/../admin", id="encoded dots"),
        pytest.param(b"/a/.%2E/admin", "/a/../admin", id="half-encoded dots"),
        pytest.param(b"/a%252Fb", "/a%2Fb", id="double encoding"),
        pytest.param(b"/a;x/b", "/a;x/b", id="semicolon"),
        pytest.param(b"/a%3Bx", "/a;x", id="encoded semicolon"),
        pytest.param(b"//admin", "//admin", id="empty segment"),
        pytest.param(b"/a//b", "/a//b", id="inner empty segment"),
        pytest.param(b"/caf%E9", "/caf\ufffd", id="not UTF-8"),
        pytest.param(b"/caf\xc3\xa9", "/café", id="raw non-ASCII"),
        pytest.param(b"/%61dmin", "/admin", id="encoded letter"),
        pytest.param(b"/a%00", "/a\x00", id="NUL"),
        pytest.param(b"/a%2", "/a%2", id="truncated escape"),
        pytest.param(b"/a%zz", "/a%zz", id="bad escape"),
        pytest.param(b"/a#frag", "/a", id="raw fragment"),
        pytest.param(b"*", "*", id="asterisk form"),
        pytest.param(b"http://h/a/../b", "/b", id="absolute form with dot segment"),
        pytest.param(None, "/a/../b", id="dot segment in the decoded path"),
        pytest.param(None, "/a\\b", id="backslash in the decoded path"),
        pytest.param(None, "//a", id="empty segment in the decoded path"),
        pytest.param(None, "/a;b", id="semicolon in the decoded path"),
        pytest.param(None, "/a\tb", id="control character in the decoded path"),
        pytest.param(None, "../a", id="leading dot-dot without a slash"),
        pytest.param(None, "/a/..", id="trailing dot-dot in the decoded path"),
    ],
)
def test_ambiguous_targets(raw: bytes | None, path: str) -> None:
    assert path_ambiguity(raw, path) is not None


def test_strict_mode_refuses_every_encoded_ascii_character() -> None:
    assert path_ambiguity(b"/my%20doc", "/my doc") is None
    assert path_ambiguity(b"/my%20doc", "/my doc", strict=True) is not None
    assert path_ambiguity(b"/caf%C3%A9", "/café", strict=True) is None
    assert path_ambiguity(b"/caf%c3%a9", "/café") is None
    assert path_ambiguity(b"/caf%c3%a9", "/café", strict=True) is not None


def test_targets_are_checked_only_when_paths_matter(pkix) -> None:
    verifier = Verifier(trust_store=pkix["rev_trust"])
    assert Guard(verifier=verifier).check_target(b"/a%2Fb", "/a/b") is None
    refusal = Guard(verifier=verifier, exempt_paths={"/a*"}).check_target(b"/a%2Fb", "/a/b")
    assert isinstance(refusal, AmbiguousRequest)
    assert (refusal.status, refusal.code) == (400, "ambiguous_path")
    routes = [Route("/x", mode="optional")]
    assert Guard(verifier=verifier, routes=routes).check_target(b"/a/../x", "/a/../x") is not None


def test_busy_refusal_tells_when_to_retry() -> None:
    error = VerificationBusy("too many")
    headers = dict(problem_headers(error, 10))
    assert (error.status, error.code, headers["retry-after"]) == (503, "verification_busy", "1")
    assert "www-authenticate" not in headers


@pytest.mark.parametrize(
    ("kwargs", "exc"),
    [
        ({"verification_threads": 0}, ValueError),
        ({"verification_threads": True}, TypeError),
        ({"verification_queue": -1}, ValueError),
        ({"verification_queue": 2.5}, TypeError),
    ],
)
def test_bad_pool_sizes(pkix, kwargs, exc) -> None:
    with pytest.raises(exc):
        Guard(verifier=Verifier(trust_store=pkix["rev_trust"]), **kwargs)


# -- decide_async: cache hits on the loop, misses on the Guard's own bounded pool ----------

import contextlib  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402


class _Gate:
    """A revocation checker that blocks every check until released, counting threads."""

    may_block = True

    def __init__(self) -> None:
        self.release = threading.Event()
        self.threads: set[str] = set()
        self.calls = 0
        self.token = object()

    def check(self, chain, *, at):
        self.calls += 1
        self.threads.add(threading.current_thread().name)
        self.release.wait(10)


async def test_decide_async_answers_hits_on_the_loop_and_bounds_misses(pki) -> None:
    import asyncio

    gate = _Gate()
    verifier = Verifier(trust_store=pki.root.trust_store(), revocation=gate)
    guard = Guard(verifier=verifier, verification_threads=2, verification_queue=1)
    good = Presented(tls_chain=pki.good.chain_der)
    gate.release.set()
    first = await guard.decide_async(good, "mandatory", None)
    assert first.code == "ok"
    assert all(name.startswith("mtlsauth-verify") for name in gate.threads)
    gate.release.clear()
    calls = gate.calls

    # Three different uncached certificates fill 2 threads + 1 queue slot; a fourth is busy.
    others = [
        Presented(tls_chain=pki.inter.issue_client_cert(common_name=f"c{i}").chain_der)
        for i in range(4)
    ]
    waiting = [asyncio.ensure_future(guard.decide_async(p, "mandatory", None)) for p in others[:3]]
    await asyncio.sleep(0.05)
    busy = await guard.decide_async(others[3], "mandatory", None)
    assert (busy.code, busy.error.status) == ("verification_busy", 503)
    assert guard.verifications_waiting == 3

    # The cached client is answered on the loop at once, without touching the checker.
    started = time.perf_counter()
    hit = await guard.decide_async(good, "mandatory", None)
    assert hit.code == "ok"
    assert time.perf_counter() - started < 0.05
    assert gate.calls == calls + 2  # only the two running misses reached the checker

    gate.release.set()
    results = await asyncio.gather(*waiting)
    assert [d.code for d in results] == ["ok", "ok", "ok"]
    assert guard.verifications_waiting == 0
    assert not any(name.startswith("asyncio") for name in gate.threads)
    # An idle pool holds no thread.
    for _ in range(100):
        if not any(t.name == "mtlsauth-verify" for t in threading.enumerate()):
            break
        await asyncio.sleep(0.01)
    assert not any(t.name == "mtlsauth-verify" for t in threading.enumerate())


async def test_a_request_that_goes_away_frees_its_place(pki) -> None:
    import asyncio

    gate = _Gate()
    verifier = Verifier(trust_store=pki.root.trust_store(), revocation=gate)
    guard = Guard(verifier=verifier, verification_threads=1, verification_queue=1)
    a, b = (
        Presented(tls_chain=pki.inter.issue_client_cert(common_name=n).chain_der)
        for n in ("a", "b")
    )
    running = asyncio.ensure_future(guard.decide_async(a, "mandatory", None))
    queued = asyncio.ensure_future(guard.decide_async(b, "mandatory", None))
    await asyncio.sleep(0.05)
    assert guard.verifications_waiting == 2
    queued.cancel()  # the client disconnected while waiting for a thread
    await asyncio.sleep(0.01)
    assert guard.verifications_waiting == 1
    gate.release.set()
    assert (await running).code == "ok"
    assert gate.calls == 1  # the abandoned verification never ran


async def test_cancelled_verifications_never_pile_up_behind_a_hung_pool(pki) -> None:
    # Servers cancel a request's task when its client goes away. A cancelled verification
    # that still waited for a thread left the count at once but stayed in the pool's queue
    # until a worker popped it, which a hung OCSP responder never let happen: every
    # cancelled request held an entry (its chain and closure) beyond the bound.
    import asyncio

    gate = _Gate()
    verifier = Verifier(trust_store=pki.root.trust_store(), revocation=gate)
    guard = Guard(verifier=verifier, verification_threads=2, verification_queue=4)
    pool = guard._pool
    p = Presented(tls_chain=pki.inter.issue_client_cert(common_name="cancel").chain_der)
    for _ in range(2000):
        task = asyncio.ensure_future(guard.decide_async(p, "mandatory", None))
        await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert len(pool._queue) <= 4
        assert guard.verifications_waiting <= 6
    await asyncio.sleep(0.05)
    assert guard.verifications_waiting == 2  # the two hung verifications hold their threads
    live = [asyncio.ensure_future(guard.decide_async(p, "mandatory", None)) for _ in range(4)]
    await asyncio.sleep(0.01)
    assert guard.verifications_waiting == 6
    busy = await guard.decide_async(p, "mandatory", None)
    assert (busy.code, busy.error.status) == ("verification_busy", 503)
    gate.release.set()
    assert [d.code for d in await asyncio.gather(*live)] == ["ok"] * 4
    for _ in range(500):
        if guard.verifications_waiting == 0:
            break
        await asyncio.sleep(0.01)
    assert (guard.verifications_waiting, len(pool._queue)) == (0, 0)
    assert gate.calls <= 6  # no abandoned verification ever ran


async def test_decide_async_answers_cached_refusals_on_the_loop(pki, pkix) -> None:
    gate = _Gate()
    gate.release.set()
    verifier = Verifier(trust_store=pki.root.trust_store(), revocation=gate)
    guard = Guard(verifier=verifier)
    wrong = Presented(tls_chain=(pkix["wrong_ca"],))
    assert (await guard.decide_async(wrong, "mandatory", None)).code == "untrusted_issuer"
    gate.release.clear()  # a miss would now block: the cached refusal must not
    started = time.perf_counter()
    assert (await guard.decide_async(wrong, "mandatory", None)).code == "untrusted_issuer"
    assert (await guard.decide_async(Presented(), "mandatory", None)).code == (
        "certificate_missing"
    )
    assert time.perf_counter() - started < 0.05


def test_authenticate_cached_does_no_work(pki) -> None:
    from mtlsauth._verifier import NOT_CACHED

    gate = _Gate()
    verifier = Verifier(trust_store=pki.root.trust_store(), revocation=gate)
    presented = Presented(tls_chain=pki.good.chain_der)
    assert verifier.authenticate_cached(presented) is NOT_CACHED
    assert gate.calls == 0
    assert verifier.authenticate_cached(Presented(), required=False) is None
    gate.release.set()
    identity = verifier.authenticate(presented)
    assert verifier.authenticate_cached(presented) == identity
    assert gate.calls == 1


@pytest.mark.parametrize("item", [5, None, object(), "-----BEGIN CERTIFICATE-----\n\u00e9"])
def test_decide_never_raises_on_odd_chain_items(pkix, item) -> None:
    guard = Guard(verifier=Verifier(trust_store=pkix["rev_trust"]))
    decision = guard.decide(Presented(tls_chain=(item,)), "mandatory", None)
    assert decision.error is not None
    assert decision.fingerprint is None


# -- Guard.check / Guard.acheck: one entry per request ------------------------------------
def _view(pkix, what: str | None, *, path: str = "/", peer: str = "127.0.0.1", auth=(), **kw):
    from mtlsauth._guard import RequestView

    headers = ()
    if what == "header_good":
        what, headers = None, (("x-ssl-client-cert", pkix["header_good"]),)
    return RequestView(
        peer=peer,
        path=path,
        credentials=lambda: presented(pkix, what, peer=peer, path=path, headers=headers),
        authorization=lambda: auth,
        **kw,
    )


def _token_guard(verifier: Verifier, seen: list[Decision]) -> Guard:
    from mtlsauth import TokenCheck

    def validate(token: str) -> dict[str, object]:
        if token != "good-token":
            raise ValueError("unknown token")
        return {"sub": "alice", "active": True}

    check = TokenCheck(validate, binding="if_present")
    return Guard(verifier=verifier, routes=[Route("/api/*", token=check)], on_decision=seen.append)


def test_a_token_refusal_is_the_decision_on_decision_sees(pkix, verifier) -> None:
    seen: list[Decision] = []
    guard = _token_guard(verifier, seen)
    decision = guard.check(_view(pkix, "good", path="/api/x"))
    assert (decision.allowed, decision.code, decision.identity) == (False, "token_missing", None)
    assert decision.fingerprint is not None
    assert [d.code for d in seen] == ["token_missing"]
    status, headers, body = decision.problem()
    assert status == 401
    assert b'"token_missing"' in body
    assert ("www-authenticate", "Bearer") in headers
    accepted = guard.check(_view(pkix, "good", path="/api/x", auth=["Bearer good-token"]))
    assert (accepted.code, accepted.token) == ("ok", {"sub": "alice", "active": True})
    assert [d.code for d in seen] == ["token_missing", "ok"]


async def test_acheck_refuses_a_token_as_check_does(pkix, verifier) -> None:
    seen: list[Decision] = []
    guard = _token_guard(verifier, seen)
    refused = await guard.acheck(_view(pkix, "good", path="/api/x", auth=["Bearer nope"]))
    assert refused.code == "token_invalid"
    ok = await guard.acheck(_view(pkix, "good", path="/api/x", auth=["Bearer good-token"]))
    assert ok.allowed
    assert ok.token == {"sub": "alice", "active": True}
    assert [d.code for d in seen] == ["token_invalid", "ok"]


@pytest.mark.parametrize(
    ("what", "peer", "path", "code", "hide"),
    [
        pytest.param("header_good", PROXY, "/x", "ok", False, id="trusted proxy keeps header"),
        pytest.param("good", STRANGER, "/x", "ok", True, id="stranger's header hidden"),
        pytest.param(None, STRANGER, "/healthz", "skipped", True, id="hidden on exempt path"),
        pytest.param("good", STRANGER, "/a/%2e%2e/healthz", "ambiguous_path", False, id="dots"),
        pytest.param(None, STRANGER, "/x", "certificate_missing", False, id="refused"),
    ],
)
def test_check_reports_once_and_says_what_to_hide(pkix, verifier, what, peer, path, code, hide):
    seen: list[Decision] = []
    guard = Guard(verifier=verifier, exempt_paths={"/healthz"}, on_decision=seen.append)
    raw = path.encode()
    routed = "/a/../healthz" if "%2e" in path else path
    decision = guard.check(_view(pkix, what, path=routed, peer=peer, raw_target=raw))
    assert decision.code == code
    assert decision.hide == (frozenset({"x-ssl-client-cert"}) if hide else frozenset())
    assert seen == [decision]


def test_an_unreadable_request_is_refused_before_anything_is_read(verifier) -> None:
    from mtlsauth import AmbiguousRequest
    from mtlsauth._guard import RequestView

    def boom() -> Presented:
        raise AssertionError("credentials read for an unreadable request")

    guard = Guard(verifier=verifier)
    bad = AmbiguousRequest("unreadable", code="request_malformed")
    decision = guard.check(RequestView(peer=None, unreadable=bad, credentials=boom))
    assert decision.code == "request_malformed"
    with pytest.raises(ValueError, match="no problem answer"):
        Guard(verifier=verifier, mode="off").check(
            RequestView(peer=None, credentials=boom)
        ).problem()


@pytest.mark.parametrize(
    "cls", [Decision, Presented, ClientIdentity], ids=["Decision", "Presented", "ClientIdentity"]
)
def test_fast_init_keeps_the_dataclass_signature(cls) -> None:
    import dataclasses
    import inspect

    params = list(inspect.signature(cls).parameters.values())
    fields = dataclasses.fields(cls)
    assert [p.name for p in params] == [f.name for f in fields]
    for p, f in zip(params, fields, strict=True):
        expected = inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default
        assert p.default == expected
    built = cls(**{f.name: f"v-{f.name}" for f in fields})
    assert type(built) is cls  # the draft class it was filled as is gone
    assert all(getattr(built, f.name) == f"v-{f.name}" for f in fields)
    assert built == cls(**{f.name: f"v-{f.name}" for f in fields})
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(built, fields[0].name, "changed")
    assert getattr(built, fields[0].name) == f"v-{fields[0].name}"


@pytest.mark.parametrize(
    "cls", [Decision, Presented, ClientIdentity], ids=["Decision", "Presented", "ClientIdentity"]
)
def test_fast_init_describes_itself_as_the_dataclass_init_does(cls) -> None:
    # help(), inspect.signature and typing.get_type_hints (which documentation tools and
    # dependency-injecting frameworks read) see the fields' types and the class's module,
    # as they do for the __init__ dataclass generates.
    import dataclasses
    import inspect
    import pydoc
    import typing

    init = cls.__init__
    assert init.__module__ == cls.__module__
    assert init.__qualname__ == f"{cls.__qualname__}.__init__"
    assert init.__name__ == "__init__"
    fields = dataclasses.fields(cls)
    assert init.__annotations__ == {**{f.name: f.type for f in fields}, "return": None}
    hints = typing.get_type_hints(init)
    assert set(hints) == {f.name for f in fields} | {"return"}
    assert hints["return"] is type(None)
    params = inspect.signature(cls).parameters
    assert all(params[f.name].annotation == f.type for f in fields)
    text = pydoc.render_doc(cls, renderer=pydoc.plaintext)
    first = fields[0]
    assert f"{first.name}: {inspect.formatannotation(first.type)}" in text
    assert inspect.signature(cls).return_annotation is None


@pytest.mark.parametrize(
    "cls", [Decision, Presented, ClientIdentity], ids=["Decision", "Presented", "ClientIdentity"]
)
def test_fast_init_records_copy_pickle_and_replace_as_themselves(cls) -> None:
    # Copies and pickles are restored without __init__, replace() goes through it: each
    # gives a frozen record of the very class, equal to the original and hashing alike.
    import copy
    import dataclasses
    import pickle

    fields = dataclasses.fields(cls)
    built = cls(**{f.name: f"v-{f.name}" for f in fields})
    first = fields[0].name
    changed = dataclasses.replace(built, **{first: "other"})
    for twin in (copy.copy(built), copy.deepcopy(built), pickle.loads(pickle.dumps(built))):  # noqa: S301
        assert type(twin) is cls
        assert twin == built
        assert hash(twin) == hash(built)
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(twin, first, "changed")
    assert type(changed) is cls
    assert getattr(changed, first) == "other"
    assert changed != built
    assert [getattr(changed, f.name) for f in fields[1:]] == [f"v-{f.name}" for f in fields[1:]]
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(changed, first, "changed")


@pytest.mark.parametrize(
    "cls", [Decision, Presented, ClientIdentity], ids=["Decision", "Presented", "ClientIdentity"]
)
def test_fast_init_records_refuse_any_change_as_frozen(cls) -> None:
    # dataclass(frozen=True, slots=True) alone answers a name that is not a field with a
    # TypeError about super(): an application writing identity.role = "admin" deserves
    # the FrozenInstanceError (an AttributeError) every other change gets.
    import dataclasses

    fields = dataclasses.fields(cls)
    built = cls(**{f.name: f"v-{f.name}" for f in fields})
    for name in (fields[0].name, "role"):
        with pytest.raises(dataclasses.FrozenInstanceError, match=repr(name)):
            setattr(built, name, "changed")
        with pytest.raises(dataclasses.FrozenInstanceError, match=repr(name)):
            delattr(built, name)
    assert getattr(built, fields[0].name) == f"v-{fields[0].name}"


def test_fast_init_builds_a_subclass_as_itself() -> None:
    import dataclasses

    from mtlsauth._types import fast_init

    @fast_init
    @dataclasses.dataclass(frozen=True, slots=True)
    class Base:
        x: int
        y: str = "y"

    class Sub(Base):  # no __init__ of its own: Base's runs on it
        __slots__ = ("extra",)

    sub = Sub(1)
    assert type(sub) is Sub
    assert (sub.x, sub.y) == (1, "y")
    with pytest.raises(dataclasses.FrozenInstanceError):
        sub.x = 2  # type: ignore[misc]
    sub.extra = "its own"  # a name the subclass adds stays its to set, as in a dataclass
    assert sub.extra == "its own"
    base = Base(2, y="z")
    assert type(base) is Base
    assert (base.x, base.y) == (2, "z")


def _record_with_field(name: str) -> type:
    import dataclasses

    return dataclasses.make_dataclass(
        "Record",
        [("x", int), (name, object, dataclasses.field(default="d"))],
        frozen=True,
        slots=True,
    )


@pytest.mark.parametrize("name", ["type", "object", "setattr", "self_"])
def test_fast_init_builds_a_field_named_like_a_builtin(name) -> None:
    # The generated __init__ takes each field as a parameter: one named like a builtin it
    # calls (``type``) must not replace that builtin (every construction raised TypeError).
    from mtlsauth._types import fast_init

    fast = fast_init(_record_with_field(name))
    for value in ("text", int, print):
        built = fast(1, value)
        assert type(built) is fast
        assert (built.x, getattr(built, name)) == (1, value)

    class Sub(fast):  # type: ignore[misc,valid-type]
        __slots__ = ()

    sub = Sub(2)
    assert (type(sub), sub.x, getattr(sub, name)) == (Sub, 2, "d")


@pytest.mark.parametrize(
    "name", ["_cls", "_draft", "_set", "_type", "_set_x", "_default_x", "self"]
)
def test_fast_init_refuses_a_field_named_like_its_helpers(name) -> None:
    # ... nor one of its own helpers (a field ``_set_x`` would be called to set ``x``).
    from mtlsauth._types import fast_init

    with pytest.raises(TypeError, match=r"fast_init: .* is named like"):
        fast_init(_record_with_field(name))


def test_fast_init_refuses_what_it_cannot_copy() -> None:
    import dataclasses

    from mtlsauth._types import fast_init

    @dataclasses.dataclass(slots=True)
    class Mutable:
        x: int = 0

    with pytest.raises(TypeError, match="frozen, slotted"):
        fast_init(Mutable)

    @dataclasses.dataclass(frozen=True, slots=True)
    class Factory:
        x: list[int] = dataclasses.field(default_factory=list)

    with pytest.raises(TypeError, match="not a plain field"):
        fast_init(Factory)


def test_what_a_guard_decides_by_is_fixed_once_made() -> None:
    """Routes, exempt paths and the mode decide which checks a request gets, and the hot
    path reads a summary of them made at construction (``path_sensitive``): reassigning
    one afterwards made cached hits skip a route's policy that the whole path applied.
    They are read-only once the Guard is made; the hooks stay assignable."""
    ca = CA()
    verifier = Verifier(trust_store=ca.trust_store())
    guard = Guard(verifier=verifier)
    strict = Route("/admin", policy=Policy(organizations=["ops"]))
    for name, value in (
        ("routes", (strict,)),
        ("mode", "off"),
        ("path_sensitive", True),
        ("_exempt_exact", frozenset({"/x"})),
        ("_exempt_prefixes", ("/x",)),
        ("verifier", verifier),
        ("forwarded", None),
        ("strip_names", frozenset()),
        ("read_names", frozenset()),
    ):
        with pytest.raises(AttributeError, match="read-only"):
            setattr(guard, name, value)
        with pytest.raises(AttributeError, match="read-only"):
            delattr(guard, name)
    assert guard.routes == ()
    assert guard.mode == "mandatory"
    assert guard.path_sensitive is False

    def hook(decision: Decision) -> None:
        return None

    guard.on_decision = hook
    guard.on_error = None
    assert guard.on_decision is hook
