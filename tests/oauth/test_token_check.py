"""TokenCheck and bearer-token extraction, framework-free (RFC 6750, RFC 7662, RFC 8705)."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import copy
import hashlib
import logging
import pickle
import threading
import time
from collections.abc import Mapping

import pytest

from mtlsauth import ForwardedCert, MTLSAuthError, Presented, TokenCheck, TokenError, Verifier
from mtlsauth._guard import problem_headers
from mtlsauth._oauth import MAX_TOKEN_LENGTH, bearer_token, parse_x5t_s256
from mtlsauth.testing import CA


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param([], None, id="no header"),
        pytest.param(["Bearer abc.def-ghi_jkl~+/=="], "abc.def-ghi_jkl~+/==", id="b64token"),
        pytest.param(["bearer abc"], "abc", id="scheme is case-insensitive"),
        pytest.param(["BEARER  abc"], "abc", id="several spaces"),
        pytest.param(["Basic dXNlcjpwYXNz"], None, id="another scheme: no bearer token"),
        pytest.param(["DPoP abc"], None, id="DPoP scheme: no bearer token"),
    ],
)
def test_bearer_token_accepts(values, expected) -> None:
    assert bearer_token(values) == expected


@pytest.mark.parametrize(
    ("values", "code"),
    [
        pytest.param(["Bearer a", "Bearer b"], "token_request_invalid", id="two headers"),
        pytest.param(["Bearer a, Bearer b"], "token_request_invalid", id="WSGI-folded copies"),
        pytest.param(["Bearer"], "token_request_invalid", id="no credentials"),
        pytest.param(["Bearer "], "token_request_invalid", id="empty credentials"),
        pytest.param(["Bearer a b"], "token_request_invalid", id="space inside"),
        pytest.param(["Bearer a\tb"], "token_request_invalid", id="tab inside"),
        pytest.param(["Bearer =abc"], "token_request_invalid", id="leading padding"),
        pytest.param(["Bearer ab=c"], "token_request_invalid", id="padding in the middle"),
        pytest.param(["Bearer a\u00e9"], "token_request_invalid", id="non-ASCII"),
        pytest.param(["Bearer a\x00"], "token_request_invalid", id="NUL"),
        pytest.param(["Bearer a,b"], "token_request_invalid", id="comma"),
        pytest.param(["Bearer " + "a" * (MAX_TOKEN_LENGTH + 1)], "token_invalid", id="too long"),
    ],
)
def test_bearer_token_refuses(values, code) -> None:
    with pytest.raises(TokenError) as info:
        bearer_token(values)
    assert info.value.code == code


@pytest.mark.parametrize(
    ("code", "status", "challenge"),
    [
        ("token_missing", 401, "Bearer"),
        (
            "token_invalid",
            401,
            'Bearer error="invalid_token", error_description="The access token is invalid"',
        ),
        ("token_not_bound", 401, None),
        ("token_binding_mismatch", 401, None),
        ("token_request_invalid", 400, None),
        ("insufficient_scope", 403, None),
    ],
)
def test_refusals_carry_a_bearer_challenge(code, status, challenge) -> None:
    error = TokenError(code=code)
    assert error.status == status
    headers = dict(problem_headers(error, 10))
    assert headers["www-authenticate"] == error.challenge
    if challenge is not None:
        assert error.challenge == challenge
    expected = {"token_missing": None, "token_request_invalid": "invalid_request"}.get(
        code, "insufficient_scope" if code == "insufficient_scope" else "invalid_token"
    )
    assert error.bearer_error == expected
    # RFC 6750 3: error_description is restricted to %x20-21 / %x23-5B / %x5D-7E
    assert all(0x20 <= ord(ch) <= 0x7E and ch != "\\" for ch in error.challenge)
    again = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own object
    assert (again.code, again.status) == (code, status)


def test_a_pickled_bearer_refusal_keeps_its_scope_and_challenge() -> None:
    """Pickling (multiprocessing, a task queue) rebuilt a refusal from its detail and code
    only: a ``TokenError`` lost the scopes its challenge names, and a copy carried another
    challenge than the original."""
    error = TokenError("needs more", code="insufficient_scope", scope="write admin")
    again = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own object
    assert type(again) is TokenError
    assert (again.code, again.detail, again.status) == ("insufficient_scope", "needs more", 403)
    assert again.required_scope == "write admin"
    assert again.challenge == error.challenge
    assert 'scope="write admin"' in again.challenge
    with pytest.raises(AttributeError):
        again.required_scope = "read"  # still read-only once rebuilt


def test_insufficient_scope_names_the_scopes() -> None:
    check = TokenCheck(lambda t: {"scope": "read", "cnf": None}, scopes={"write", "admin"})
    with pytest.raises(TokenError) as info:
        check.check(None, ["Bearer t"])
    # cnf present but malformed: the binding is checked before the scopes
    assert info.value.code == "token_invalid"
    check = TokenCheck(
        lambda t: {"scope": "read write"}, scopes={"write", "admin"}, binding="if_present"
    )
    with pytest.raises(TokenError) as info:
        check.check(None, ["Bearer t"])
    assert info.value.code == "insufficient_scope"
    assert info.value.status == 403
    assert info.value.challenge.endswith('scope="admin write"')
    ok = TokenCheck(
        lambda t: {"scope": "admin write x"}, scopes={"write", "admin"}, binding="if_present"
    )
    assert ok.check(None, ["Bearer t"]) == {"scope": "admin write x"}


@pytest.fixture(scope="module")
def alice(ca: CA):
    cert = ca.issue_client_cert(common_name="alice")
    return Verifier(trust_store=ca.trust_store()).verify_pem(cert.chain_pem.text())


class _Now:
    def __init__(self, offset: float) -> None:
        self.offset = offset


def _bound(identity, **extra):
    return {"sub": "c", "cnf": {"x5t#S256": identity.x5t_s256()}, **extra}


@pytest.mark.parametrize(
    ("claims", "code"),
    [
        pytest.param({"active": False}, "token_invalid", id="inactive"),
        pytest.param({"active": "true"}, "token_invalid", id="active as a string"),
        pytest.param({"active": 1}, "token_invalid", id="active as 1"),
        pytest.param({"exp": _Now(-120)}, "token_invalid", id="expired"),
        pytest.param({"exp": float("inf")}, "token_invalid", id="exp infinite"),
        pytest.param({"exp": float("nan")}, "token_invalid", id="exp NaN"),
        pytest.param({"exp": True}, "token_invalid", id="exp boolean"),
        pytest.param({"exp": "9999999999"}, "token_invalid", id="exp string"),
        pytest.param({"nbf": _Now(3600)}, "token_invalid", id="not yet valid"),
        pytest.param({"nbf": None}, None, id="nbf null is absent"),
        pytest.param({"exp": _Now(-30)}, None, id="expired within the leeway"),
    ],
)
def test_claims_checked_after_the_validator(alice, claims, code) -> None:
    # Times relative to when the test runs, not to when it was collected.
    claims = {k: time.time() + v.offset if isinstance(v, _Now) else v for k, v in claims.items()}
    check = TokenCheck(lambda t: _bound(alice, **claims))
    if code is None:
        assert check.check(alice, ["Bearer t"])["sub"] == "c"
        return
    with pytest.raises(TokenError) as info:
        check.check(alice, ["Bearer t"])
    assert info.value.code == code


@pytest.mark.parametrize(
    ("cnf", "binding", "code"),
    [
        pytest.param({"jkt": "abc"}, "if_present", "token_binding_mismatch", id="DPoP-bound"),
        pytest.param({}, "if_present", "token_binding_mismatch", id="empty cnf"),
        pytest.param("x5t", "if_present", "token_invalid", id="cnf a string"),
        pytest.param(None, "required", "token_invalid", id="cnf null"),
        pytest.param({"x5t#S256": 7}, "required", "token_invalid", id="thumbprint a number"),
    ],
)
def test_a_cnf_that_cannot_be_confirmed_is_refused(alice, cnf, binding, code) -> None:
    check = TokenCheck(lambda t: {"cnf": cnf}, binding=binding)
    with pytest.raises(TokenError) as info:
        check.check(alice, ["Bearer t"])
    assert info.value.code == code


def test_proxy_verified_identity_cannot_hold_a_bound_token(ca: CA) -> None:
    cert = ca.issue_client_cert(common_name="alice", uris=["spiffe://td/ns/a/sa/alice"])
    fingerprint = hashlib.sha256(cert.der).hexdigest()
    fwd = ForwardedCert.preset("istio", trusted_proxies=["127.0.0.1"], verified_by_proxy=True)
    verifier = Verifier(trust_store=ca.trust_store(), forwarded=fwd)
    xfcc = f'Hash={fingerprint};Subject="CN=alice";URI=spiffe://td/ns/a/sa/alice'
    identity = verifier.authenticate(
        Presented(peer="127.0.0.1", headers=(("x-forwarded-client-cert", xfcc),))
    )
    assert identity is not None
    assert identity.verified_by == "proxy"
    # Even with the proxy's hash equal to the real certificate's: no certificate, no binding.
    x5t = base64.urlsafe_b64encode(bytes.fromhex(fingerprint)).rstrip(b"=").decode()
    assert identity.matches_token_binding({"x5t#S256": x5t}) is False
    check = TokenCheck(lambda t: {"cnf": {"x5t#S256": x5t}})
    with pytest.raises(TokenError) as info:
        check.check(identity, ["Bearer t"])
    assert info.value.code == "token_binding_mismatch"


@pytest.mark.parametrize(
    "validator",
    [
        pytest.param(lambda t: ["not", "claims"], id="returns a list"),
        pytest.param(lambda t: None, id="returns None"),
        pytest.param(lambda t: 1 / 0, id="raises ZeroDivisionError"),
        pytest.param(lambda t: (_ for _ in ()).throw(KeyError("x")), id="raises KeyError"),
    ],
)
def test_a_failing_validator_refuses(alice, validator) -> None:
    check = TokenCheck(validator, binding="if_present")
    with pytest.raises(TokenError) as info:
        check.check(alice, ["Bearer t"])
    assert info.value.code == "token_invalid"
    with pytest.raises(TokenError) as info:
        asyncio.run(check.acheck(alice, ["Bearer t"]))
    assert info.value.code == "token_invalid"


def test_async_validator_in_a_sync_app_refuses(alice) -> None:
    async def validate(token: str) -> dict[str, object]:
        return _bound(alice)

    check = TokenCheck(validate)
    with pytest.raises(TokenError) as info:
        check.check(alice, ["Bearer t"])
    assert info.value.code == "token_invalid"
    assert asyncio.run(check.acheck(alice, ["Bearer t"]))["sub"] == "c"


def test_blocking_validator_runs_off_the_event_loop(alice) -> None:
    seen: list[threading.Thread] = []

    class Introspect:
        may_block = True

        def __call__(self, token: str) -> dict[str, object]:
            seen.append(threading.current_thread())
            return _bound(alice)

    check = TokenCheck(Introspect())
    assert check.blocking is True
    assert asyncio.run(check.acheck(alice, ["Bearer t"]))["sub"] == "c"
    assert seen
    assert seen[0] is not threading.main_thread()
    assert TokenCheck(Introspect(), blocking=False).blocking is False


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        pytest.param({"validate": "nope"}, TypeError, id="validator not callable"),
        pytest.param({"required": "yes"}, TypeError, id="required not a bool"),
        pytest.param({"binding": "maybe"}, ValueError, id="unknown binding"),
        pytest.param({"scopes": "read"}, TypeError, id="scopes a string"),
        pytest.param({"scopes": {"a b"}}, ValueError, id="scope with a space"),
        pytest.param({"scopes": {'a"'}}, ValueError, id="scope with a quote"),
        pytest.param({"scopes": {""}}, ValueError, id="empty scope"),
        pytest.param({"leeway": -1}, ValueError, id="negative leeway"),
        pytest.param({"leeway": True}, TypeError, id="leeway a bool"),
        pytest.param({"blocking": "yes"}, TypeError, id="blocking not a bool"),
        pytest.param({"threads": 0}, ValueError, id="no thread"),
        pytest.param({"threads": True}, TypeError, id="threads a bool"),
        pytest.param({"queue": -1}, ValueError, id="negative queue"),
        pytest.param({"queue": 2000}, ValueError, id="queue too long"),
    ],
)
def test_bad_configuration_fails_at_construction(kwargs, error) -> None:
    args = {"validate": lambda t: {}} | kwargs
    with pytest.raises(error):
        TokenCheck(**args)


def test_route_token_must_be_a_token_check() -> None:
    from mtlsauth import Route

    with pytest.raises(TypeError):
        Route("/x", token=lambda t: {})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value",
    [
        "A" * 43,
        "_" * 42 + "w",
    ],
)
def test_parse_x5t_s256_canonical(value) -> None:
    assert len(parse_x5t_s256(value)) == 32


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("Bearer\tabc", id="tab after the scheme"),
        pytest.param("\tBearer abc", id="leading tab"),
        pytest.param("Bearer\u00a0abc", id="no-break space after the scheme"),
        pytest.param("Bearer\u2003abc", id="em space after the scheme"),
        pytest.param("Bearer\x1fabc", id="unit separator after the scheme"),
        pytest.param("Bearer\nabc", id="newline after the scheme"),
        pytest.param("Bearer\x85abc", id="NEL after the scheme"),
    ],
)
def test_a_bearer_token_another_parser_would_see_is_never_skipped(value) -> None:
    # str.split() (a common way apps read the header) splits on all of these: a header
    # that some parser reads as a bearer token must be validated or refused, never ignored.
    assert value.split(None, 1)[0].lower() == "bearer"
    with pytest.raises(TokenError) as info:
        bearer_token([value])
    assert info.value.code == "token_request_invalid"
    optional = TokenCheck(lambda t: {}, required=False, binding="if_present")
    with pytest.raises(TokenError):
        optional.check(None, [value])


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("Basic dXNlcjpwYXNz, Bearer abc", id="Basic then Bearer"),
        pytest.param("DPoP abc,Bearer def", id="DPoP then Bearer, no space"),
        pytest.param("Basic dXNlcjpwYXNz,  bearer\tabc", id="Basic then a tab-spaced bearer"),
    ],
)
def test_a_bearer_token_folded_behind_another_scheme_is_refused(value) -> None:
    # A WSGI server joins two Authorization headers with ", ". Sent as two headers (ASGI,
    # aiohttp) the request is refused; folded into one it must not read as "no bearer
    # token", or the app behind a WSGI server sees a token that was never validated.
    with pytest.raises(TokenError) as info:
        bearer_token([value])
    assert info.value.code == "token_request_invalid"
    with pytest.raises(TokenError) as info:
        bearer_token(value.split(","))
    assert info.value.code == "token_request_invalid"
    optional = TokenCheck(lambda t: {}, required=False, binding="if_present")
    with pytest.raises(TokenError):
        optional.check(None, [value])


def test_a_proxy_asserted_hash_never_becomes_a_thumbprint(ca: CA) -> None:
    # x5t#S256 names a certificate's DER; a proxy-verified identity has only the proxy's word
    # for a hash, so it offers no thumbprint to mint a cnf from.
    cert = ca.issue_client_cert(common_name="alice")
    fwd = ForwardedCert.preset("istio", trusted_proxies=["127.0.0.1"], verified_by_proxy=True)
    verifier = Verifier(trust_store=ca.trust_store(), forwarded=fwd)
    xfcc = f'Hash={hashlib.sha256(cert.der).hexdigest()};Subject="CN=alice"'
    identity = verifier.authenticate(
        Presented(peer="127.0.0.1", headers=(("x-forwarded-client-cert", xfcc),))
    )
    assert identity is not None
    assert identity.verified_by == "proxy"
    assert identity.x5t_s256() is None


def test_refusals_are_logged_without_the_token(alice, caplog) -> None:
    secret = "s3cr3t-token-value"
    check = TokenCheck(lambda t: {"cnf": {"x5t#S256": "A" * 43}})
    with caplog.at_level("INFO", logger="mtlsauth"), pytest.raises(TokenError):
        check.check(alice, [f"Bearer {secret}"])
    lines = [r.getMessage() for r in caplog.records]
    assert any("code=token_binding_mismatch" in line for line in lines), lines
    assert all(secret not in line for line in lines)
    assert all(secret not in str(getattr(r, "mtlsauth", "")) for r in caplog.records)


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}, id="also DPoP-bound"),
        pytest.param({"jwk": {"kty": "EC"}}, id="also a proof-of-possession key"),
        pytest.param({"x5t#S256 ": "x"}, id="a look-alike member"),
    ],
)
def test_a_cnf_with_methods_beyond_the_certificate_is_refused(alice, extra) -> None:
    # Confirming only the certificate would drop the other proof the issuer asked for.
    check = TokenCheck(lambda t: {"cnf": {"x5t#S256": alice.x5t_s256(), **extra}})
    with pytest.raises(TokenError) as info:
        check.check(alice, ["Bearer t"])
    assert info.value.code == "token_binding_mismatch"


class _Hostile(Mapping):
    """Claims whose every look-up fails (a validator's own mapping type gone wrong)."""

    def __getitem__(self, key):
        raise RuntimeError("boom")

    def __iter__(self):
        raise RuntimeError("boom")

    def __len__(self) -> int:
        return 1


def test_claims_that_fail_on_access_refuse_never_raise_otherwise(alice) -> None:
    check = TokenCheck(lambda t: _Hostile())
    with pytest.raises(TokenError) as info:
        check.check(alice, ["Bearer t"])
    assert info.value.code == "token_invalid"
    with pytest.raises(TokenError) as info:
        asyncio.run(check.acheck(alice, ["Bearer t"]))
    assert info.value.code == "token_invalid"


def test_a_token_is_expired_at_its_exp(alice, monkeypatch) -> None:
    # RFC 7519 4.1.4: the token must not be accepted "on or after" exp (PyJWT agrees).
    monkeypatch.setattr(time, "time", lambda: 1_000_000.0)
    at_exp = TokenCheck(lambda t: _bound(alice, exp=1_000_000), leeway=0)
    with pytest.raises(TokenError) as info:
        at_exp.check(alice, ["Bearer t"])
    assert info.value.code == "token_invalid"
    before = TokenCheck(lambda t: _bound(alice, exp=1_000_001), leeway=0)
    assert before.check(alice, ["Bearer t"])["sub"] == "c"
    at_nbf = TokenCheck(lambda t: _bound(alice, nbf=1_000_000, exp=1_000_001), leeway=0)
    assert at_nbf.check(alice, ["Bearer t"])["sub"] == "c"


@pytest.mark.parametrize("name", ["exp", "nbf"])
@pytest.mark.parametrize("value", [10**400, -(10**400)], ids=["huge", "huge negative"])
def test_integers_beyond_any_float_are_refused_as_claims(alice, caplog, name, value) -> None:
    # A clean refusal of the claim, not an OverflowError caught as "unreadable claims".
    check = TokenCheck(lambda t: _bound(alice, **{name: value}))
    with caplog.at_level(logging.DEBUG, logger="mtlsauth"), pytest.raises(TokenError) as info:
        check.check(alice, ["Bearer t"])
    assert info.value.code == "token_invalid"
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_blocking_validators_have_a_bounded_pool_of_their_own(alice) -> None:
    # A hung introspection endpoint must neither fill asyncio's shared default executor
    # (which also resolves host names for the whole app) nor queue requests without end:
    # beyond threads + queue, a request is refused at once with 503 verification_busy.
    release = threading.Event()
    started = threading.Semaphore(0)

    def introspect(token: str) -> dict[str, object]:
        started.release()
        release.wait(10)
        return _bound(alice)

    check = TokenCheck(introspect, blocking=True, threads=2, queue=1)

    async def scenario() -> tuple[list[object], str]:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(max_workers=2))
        hung = [asyncio.ensure_future(check.acheck(alice, ["Bearer t"])) for _ in range(3)]
        for _ in range(2):  # both pool threads are inside the validator
            await loop.run_in_executor(None, started.acquire)
        # the shared executor still answers at once
        other = await asyncio.wait_for(loop.run_in_executor(None, lambda: "free"), 2)
        try:
            await asyncio.wait_for(check.acheck(alice, ["Bearer t"]), 2)
        except MTLSAuthError as exc:
            refused = exc
        else:
            raise AssertionError("a fourth validation was queued")
        release.set()
        done = await asyncio.gather(*hung)
        return [refused, *done], other

    (refused, *done), other = asyncio.run(scenario())
    assert other == "free"
    assert isinstance(refused, MTLSAuthError)
    assert (refused.code, refused.status) == ("verification_busy", 503)
    assert [claims["sub"] for claims in done] == ["c", "c", "c"]


def _drained(pool) -> None:
    """The pool counts every job out once its thread is done with it (threads that were
    released finish on their own schedule)."""
    for _ in range(500):
        if pool.waiting == 0:
            break
        time.sleep(0.01)
    assert (pool.waiting, len(pool._queue)) == (0, 0)


async def _cancel_cycles(start, pool, cycles: int, queue: int) -> None:
    """Start a request, let it reach the pool, cancel it (its client went away), repeat;
    the pool never holds more than its bound, whatever the number of cycles."""
    for _ in range(cycles):
        task = asyncio.ensure_future(start())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises((asyncio.CancelledError, MTLSAuthError)):
            await task
        assert len(pool._queue) <= queue
        assert pool.waiting <= pool._max_inflight


def test_cancelled_requests_never_pile_up_behind_a_hung_validator(alice) -> None:
    # Servers cancel a request's task when its client goes away. A cancelled validation that
    # still waited for a thread left the count at once but stayed in the queue until a
    # worker popped it, which a hung authorization server never let happen: 2000 cancelled
    # requests held 2000 entries (with their tokens) behind a pool bounded at 6.
    release = threading.Event()
    calls: list[str] = []

    def introspect(token: str) -> dict[str, object]:
        calls.append(token)
        release.wait(10)
        return _bound(alice)

    check = TokenCheck(introspect, blocking=True, threads=2, queue=4)
    pool = check._pool
    assert pool is not None

    async def scenario() -> tuple[list[object], MTLSAuthError]:
        def start():
            return check.acheck(alice, ["Bearer " + "a" * 2000])

        await _cancel_cycles(start, pool, 2000, 4)
        # The two hung validations still hold their threads; live requests fill the rest.
        assert pool.waiting == 2
        live = [asyncio.ensure_future(check.acheck(alice, ["Bearer t"])) for _ in range(4)]
        await asyncio.sleep(0.01)
        assert pool.waiting == 6
        with pytest.raises(MTLSAuthError) as info:
            await check.acheck(alice, ["Bearer t"])
        release.set()
        return list(await asyncio.gather(*live)), info.value

    done, busy = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert (busy.code, busy.status) == ("verification_busy", 503)
    assert [claims["sub"] for claims in done] == ["c"] * 4
    _drained(pool)
    assert len(calls) == 6  # the two that were running when cancelled, and the four live


def test_the_pool_count_survives_cancels_racing_its_workers() -> None:
    # A cancel can land before a worker pops the entry, between the pop and the start, or
    # while the job runs: each path counts the job out exactly once.
    from mtlsauth._pool import BoundedPool

    pool = BoundedPool(2, 8)

    async def scenario() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        answered = cancelled = 0
        for round_ in range(300):
            futures = []
            for i in range(10):
                future = pool.submit(lambda i=i: time.sleep(0.0001) or i)
                if future is not None:
                    futures.append(asyncio.wrap_future(future, loop=loop))
            await asyncio.sleep(0 if round_ % 2 else 0.0002)
            for task in futures[round_ % 3 :: 2]:
                task.cancel()
            for task in futures:
                try:
                    await task
                    answered += 1
                except asyncio.CancelledError:
                    cancelled += 1
        return answered, cancelled

    answered, cancelled = asyncio.run(scenario())
    assert answered
    assert cancelled
    _drained(pool)


def test_a_raising_blocking_validator_refuses_through_the_pool(alice) -> None:
    def introspect(token: str) -> dict[str, object]:
        raise TimeoutError("the authorization server did not answer")

    check = TokenCheck(introspect, blocking=True)
    with pytest.raises(TokenError) as info:
        asyncio.run(asyncio.wait_for(check.acheck(alice, ["Bearer t"]), 5))
    assert info.value.code == "token_invalid"


def test_a_flood_of_token_refusals_writes_one_line_a_minute(alice, caplog) -> None:
    """One line per code and certificate a minute, the repeats counted into the next, as
    for the certificate refusals: a client cannot flood the log with refused tokens."""
    check = TokenCheck(lambda t: {"cnf": {"x5t#S256": "A" * 43}})
    with caplog.at_level("INFO", logger="mtlsauth"):
        for _ in range(300):
            with pytest.raises(TokenError):
                check.check(alice, ["Bearer abc"])
    lines = [r.getMessage() for r in caplog.records if "token denied" in r.getMessage()]
    assert len(lines) == 1
    assert "code=token_binding_mismatch" in lines[0]


def test_an_app_that_changes_its_claims_never_changes_a_cached_answer(alice, ca) -> None:
    # A validator that caches its answers (an introspection cache) returns the same mapping
    # for every request with that token. An application that changed it (dropped "cnf",
    # added a scope) changed what the next request was checked against: the bound token
    # then passed as a plain bearer token from any certificate under binding="if_present".
    twin = Verifier(trust_store=ca.trust_store()).verify(
        ca.issue_client_cert(common_name="alice").chain_der
    )
    answer = _bound(alice, scope="read", ext={"roles": ["reader"]})
    pristine = copy.deepcopy(answer)

    def introspect(token: str) -> dict[str, object]:
        return answer  # the cache's one mapping

    loose = TokenCheck(introspect, binding="if_present")
    strict = TokenCheck(introspect, binding="if_present", scopes={"admin"})
    for claims in (
        loose.check(alice, ["Bearer t"]),
        asyncio.run(loose.acheck(alice, ["Bearer t"])),
    ):
        assert claims == pristine
        claims.pop("cnf")
        claims["scope"] = "read admin"
        claims["ext"]["roles"].append("admin")
    assert answer == pristine
    with pytest.raises(TokenError) as info:
        loose.check(twin, ["Bearer t"])
    assert info.value.code == "token_binding_mismatch"
    with pytest.raises(TokenError) as info:
        asyncio.run(strict.acheck(alice, ["Bearer t"]))
    assert info.value.code == "insufficient_scope"


def test_the_claims_copy_keeps_their_shapes() -> None:
    from mtlsauth._oauth import _own_copy

    class Custom(dict):
        pass

    nested = {"a": [1, 2.5, True, None, "s", {"b": ("t", ["u"])}], "c": Custom(d=[1])}
    copied = _own_copy(nested)
    assert copied == nested
    assert type(copied["c"]) is Custom
    assert copied["a"] is not nested["a"]
    assert copied["a"][5] is not nested["a"][5]
    assert copied["a"][5]["b"][1] is not nested["a"][5]["b"][1]
    assert copied["c"]["d"] is not nested["c"]["d"]
