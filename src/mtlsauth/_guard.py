"""Guard: the behaviour every adapter shares, implemented once and framework-free (sans-IO).

An adapter turns a request into a ``RequestView`` and asks ``Guard.check`` (WSGI, Django)
or ``Guard.acheck`` (ASGI, aiohttp) for a ``Decision``; it never decides anything itself,
and only translates the decision back (attach the identity and token claims, hide the
headers named in ``Decision.hide``, or answer the refusal). The Guard owns:

* modes (Apache ``SSLVerifyClient``, nginx ``ssl_verify_client``): ``"mandatory"`` (no or
  bad certificate: refuse), ``"optional"`` (no certificate: pass without identity; a bad one:
  refuse), ``"off"`` (no check at all);
* per-route rules (``Route``), first match wins like Apache ``<LocationMatch>``, and exempt
  paths (``/healthz``), which behave as mode ``"off"``;
* failing closed: an unexpected exception from the verifier or a policy becomes an
  ``InternalError`` (code ``internal_error``, HTTP 500), never a pass and never a traceback
  in the response;
* the RFC 9457 ``application/problem+json`` body of a refusal;
* a route's bearer-token requirement (``Route(token=...)``): a refused token is the
  request's decision too;
* logging every decision through the ``mtlsauth`` logger, and the ``on_decision`` hook.

The finer steps (``resolve``, ``check_target``, ``decide``, ``decide_cached``, ...) stay
public for tools that decide about a certificate without a request (the CLI, DRF).

Why one module of this size: ``Guard`` is one protocol (check, acheck and the steps they share);
its pool, problem bodies, routes and refusal logging already live in ``_pool``, ``_problem``,
``_routes`` and ``_refusal``, and what is left is mostly docstrings.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING

from mtlsauth._errors import (
    AmbiguousRequest,
    InternalError,
    MTLSAuthError,
    VerificationBusy,
)
from mtlsauth._hooks import (
    discard_awaitable,
    escaped_traceback,
    hook_log_limiter,
    is_coroutine_callable,
    report_hook_failure,
    report_hook_misuse,
)
from mtlsauth._identity import ClientIdentity
from mtlsauth._logfields import RefusalLogLimiter
from mtlsauth._oauth import TokenError
from mtlsauth._observe import cache_missed
from mtlsauth._pool import BoundedPool
from mtlsauth._problem import PROBLEM_TYPE_PREFIX, problem_body, problem_headers, refusal_status
from mtlsauth._refusal import (
    _DIAGNOSTIC_HEADERS,
    LogDetails,
    _leaf_fingerprint,
    _refused_leaf,
    leaf_names,
    log_allowed,
    log_refusal,
    refusal_hint,
)
from mtlsauth._reload import NO_WAIT
from mtlsauth._routes import (
    MODES,
    Mode,
    Route,
    _path_pattern,
    _validate_mode,
    inert_route_policy,
    path_ambiguity,
    unreachable_route,
)
from mtlsauth._types import Presented, fast_init
from mtlsauth._verifier import NOT_CACHED, Verifier

if TYPE_CHECKING:
    from mtlsauth._policy._policy import Policy

__all__ = [
    "MODES",
    "PROBLEM_TYPE_PREFIX",
    "AmbiguousRequest",
    "Decision",
    "Guard",
    "InternalError",
    "Mode",
    "RequestView",
    "Route",
    "VerificationBusy",
    "path_ambiguity",
    "problem_body",
    "problem_headers",
]

DENY_ONLY_ROUTE = (
    "has only deny-lists, while the Verifier's policy has allow-lists: a route's policy "
    "replaces those allow-lists, so it would admit every trusted certificate it does not "
    "deny; repeat the allow-lists next to these deny-lists (or put the deny-lists into the "
    "Verifier's policy, where they apply on every route)"
)


def deny_only_route(verifier_policy: Policy | None, route_policy: Policy | None) -> bool:
    """True when ``route_policy`` holds deny-lists alone while ``verifier_policy`` (which it
    replaces on its route, deny-lists apart) has allow-lists: it reads as "the Verifier's
    policy, minus these" and admits every trusted certificate it does not deny. A route
    policy that admits anyone on purpose says so: ``Policy()``, or an ``any_of`` with one."""
    if verifier_policy is None or route_policy is None:
        return False
    if not (verifier_policy._allow or verifier_policy._alternatives):
        return False  # every trusted certificate passes anyway: the route only narrows it
    return route_policy._only_denies


# Bound once: the hot path of ``cached`` sets and resets it on every request.
_no_wait_set, _no_wait_reset = NO_WAIT.set, NO_WAIT.reset

logger = logging.getLogger("mtlsauth")
_DEBUG = logging.DEBUG


@fast_init
@dataclass(frozen=True, slots=True)
class Decision:
    """What the Guard decided for one request (handed to ``on_decision`` and logged).

    Attributes:
        identity: The verified client, or ``None`` (refused, no certificate in optional
            mode, or not checked).
        error: The refusal, or ``None`` when the request may proceed.
        mode: The effective mode (after route rules and exempt paths).
        route: The matching ``Route``, or ``None``.
        exempt: True when the path is in ``exempt_paths``.
        peer: The socket peer address.
        path, method: The request's path and method.
        fingerprint: SHA-256 hex of the leaf when known (also for most refusals).
        elapsed: Seconds the certificate check took (``None`` when nothing was checked).
        cached: True when the verification was served from the Verifier's cache, False when
            it was computed, ``None`` when no verification ran (no certificate, mode off).
        token: What the route's ``TokenCheck`` returned (the claims), or ``None``.
        hide: Header names (lower case) the application must not see: the certificate
            headers of a peer that is not a trusted proxy. Adapters remove them in every
            spelling their framework folds into the same name.
        hint: For a refusal, what the request shows is misconfigured (a certificate header
            from a peer not in ``trusted_proxies``, a peer address taken from
            ``X-Forwarded-For``, another proxy's header), or ``None``. For the operator:
            the log line carries it too, the client's answer never does.
    """

    identity: ClientIdentity | None
    error: MTLSAuthError | None
    mode: Mode
    route: Route | None = None
    exempt: bool = False
    peer: str | None = None
    path: str = "/"
    method: str = "GET"
    fingerprint: str | None = None
    elapsed: float | None = None
    cached: bool | None = None
    token: object = None
    hide: frozenset[str] = frozenset()
    hint: str | None = None

    @property
    def allowed(self) -> bool:
        """True when the request proceeds to the application."""
        return self.error is None

    @property
    def code(self) -> str:
        """``"ok"``, ``"no_certificate"`` (optional mode), ``"skipped"`` (mode off), or the
        error code of a refusal."""
        if self.error is not None:
            return self.error.code
        if self.identity is not None:
            return "ok"
        return "skipped" if self.mode == "off" else "no_certificate"

    def problem(self) -> tuple[int, list[tuple[str, str]], bytes]:
        """``(status, headers, body)`` of the default problem+json answer to a refusal.

        Raises:
            ValueError: the request was allowed.
        """
        if self.error is None:
            raise ValueError("an allowed request has no problem answer")
        body = problem_body(self.error)
        return refusal_status(self.error), problem_headers(self.error, len(body)), body


_DECISION_FIELDS = tuple(f.name for f in fields(Decision))
_new, _set = object.__new__, object.__setattr__


def _for_hook(decision: Decision) -> Decision:
    """The copy of ``decision`` an ``on_decision`` hook is handed (equal to it, with the
    same error).

    ``Decision`` is frozen, but that does not stop ``object.__setattr__``: a hook that
    changed the adapter's own decision could drop a refusal (``error=None``), put another
    identity in, or keep certificate headers from being hidden. The adapter acts on the
    decision no hook has seen. (The error stays the one the adapter answers from, so
    that a hook can compare it; its answer's status is a refusal's whatever is written
    to it: see ``refusal_status``.)

    A token's claims are the one mutable part a hook would change by accident (a hook
    that redacts ``sub`` before logging, say, with ``claims.pop``): the application reads
    them after the hook ran, so the hook gets a deep copy. Claims that cannot be copied are
    not shown to it (``token`` is ``None`` in its copy); the request is decided as before.
    """
    clone = _new(Decision)
    for name in _DECISION_FIELDS:
        _set(clone, name, getattr(decision, name))
    token = decision.token
    if token is not None:
        try:
            token = copy.deepcopy(token)
        except Exception:  # noqa: BLE001 - anything a validator returned; the hook goes without
            token = None
        _set(clone, "token", token)
    return clone


_GUARD_FIXED = frozenset(
    {
        "_exempt_exact",
        "_exempt_prefixes",
        "_made",
        "_not_cached",
        "_pool",
        "forwarded",
        "mode",
        "path_sensitive",
        "read_names",
        "routes",
        "strip_names",
        "verifier",
    }
)


def _no_authorization() -> Sequence[str]:
    return ()


@dataclass(slots=True, kw_only=True)  # not frozen: built per request, never kept
class RequestView:
    """One request as an adapter hands it to ``Guard.check``: framework-free, read lazily.

    Attributes:
        peer: The socket peer as the server saw it (an address, ``UNIX_PEER``, or ``None``
            when unknown, which is never a trusted proxy); never ``X-Forwarded-For``.
        path: The path exactly as the framework's router matches it.
        method: The request method.
        raw_target: The request target as the client sent it, when the server exposes it.
        strict_target: The router matches the still-encoded target (aiohttp before 3.10).
        unreadable: Set by an adapter that could not read the request line: refused at once.
        credentials: Reads the certificate headers (the Guard's ``read_names``) and the TLS
            chain or error into a ``Presented``; called only when a certificate is checked.
            It may raise ``AmbiguousRequest`` (``request_malformed``).
        authorization: Reads every ``Authorization`` header value; called only for a route
            with a ``TokenCheck``.
    """

    peer: str | None
    path: str = "/"
    method: str = "GET"
    raw_target: bytes | str | None = None
    strict_target: bool = False
    unreadable: AmbiguousRequest | None = None
    credentials: Callable[[], Presented]
    authorization: Callable[[], Sequence[str]] = _no_authorization


OnDecision = Callable[[Decision], object]
_Outcome = tuple["ClientIdentity | None", "MTLSAuthError | None", float, bool]


def _internal(exc: Exception, limiter: RefusalLogLimiter) -> InternalError:
    """The refusal for an unexpected exception: its type at ERROR (once a minute per type),
    its traceback at DEBUG with the exception's text escaped (it may hold the client's)."""
    name = type(exc).__name__
    admitted, repeats, _dropped = limiter.admit("internal", name)
    if admitted:
        logger.error(
            "mtlsauth internal error during verification: %s%s",
            name,
            f" (and {repeats} more like it since the last line)" if repeats else "",
        )
        if logger.isEnabledFor(_DEBUG):
            logger.debug("mtlsauth internal error traceback:\n%s", escaped_traceback(exc))
    return InternalError("the client certificate could not be checked")


# Refusals decided before any certificate was verified (no timing, no cache outcome).
_UNCHECKED = frozenset({"certificate_missing", "untrusted_forwarder", "tls_verification_failed"})


class Guard:
    """Modes, routes, exempt paths and the verifier call, shared by every adapter.

    Args:
        verifier: The ``Verifier`` that decides about certificates.
        mode: ``"mandatory"`` (default), ``"optional"`` or ``"off"``.
        routes: ``Route`` rules; the first that matches a request sets its mode and policy.
        exempt_paths: Paths (exact, or a prefix ending in ``*``) never checked, such as
            ``"/healthz"``. They are checked before ``routes``.
        on_error: Kept for the adapter (its signature is framework-specific); it is
            handed a copy of the error, and the answer is sent from the original.
        on_decision: Called with every ``Decision``; its exceptions are logged (escaped,
            once a minute per exception type), never raised, and never change the
            decision: it is handed a copy (equal to the decision, with the same error),
            and the adapter acts on the original. It is called synchronously: an
            ``async def`` hook would never run, so it is refused with ``TypeError``.
        verification_threads: Threads of the Guard's own pool, which runs the verifications
            that are not cached for the async adapters (``decide_async``). They start on
            demand and end when there is no more work.
        verification_queue: Verifications that may wait for one of those threads; one
            more is refused at once with ``VerificationBusy`` (503), never queued.

    Raises:
        TypeError, ValueError: on bad configuration.

    The verifier, mode, routes and exempt paths are read-only once the Guard is made
    (``AttributeError``: make a new Guard to change them); ``on_decision`` and
    ``on_error`` may be reassigned.

    Security note: forwarded-certificate headers are removed from what the application
    sees whenever the peer is not a trusted proxy, in every mode, including ``"off"``
    and exempt paths (``strip_names`` / ``must_strip``).
    """

    __slots__ = (
        "_exempt_exact",
        "_exempt_prefixes",
        "_hook_limiter",
        "_log_limiter",
        "_made",
        "_not_cached",
        "_pool",
        "forwarded",
        "mode",
        "on_decision",
        "on_error",
        "path_sensitive",
        "read_names",
        "routes",
        "strip_names",
        "verifier",
    )

    def __init__(
        self,
        *,
        verifier: Verifier,
        mode: Mode = "mandatory",
        routes: Sequence[Route] = (),
        exempt_paths: Iterable[str] = (),
        on_error: Callable[..., object] | None = None,
        on_decision: OnDecision | None = None,
        verification_threads: int = 4,
        verification_queue: int = 64,
    ) -> None:
        if not isinstance(verifier, Verifier):
            raise TypeError("verifier must be a mtlsauth.Verifier")
        self.verifier = verifier
        self.mode: Mode = _validate_mode(mode, "mode")
        if isinstance(routes, str | bytes | Route) or not isinstance(routes, Iterable):
            raise TypeError("routes must be a sequence of Route objects")
        self.routes: tuple[Route, ...] = tuple(routes)
        for r in self.routes:
            if not isinstance(r, Route):
                raise TypeError(f"routes must hold Route objects, not {type(r).__name__}")
            if deny_only_route(verifier.policy, r.policy):
                raise ValueError(f"the policy of route {r.pattern!r} {DENY_ONLY_ROUTE}")
        if isinstance(exempt_paths, str | bytes) or not isinstance(exempt_paths, Iterable):
            raise TypeError("exempt_paths must be a collection of paths, e.g. {'/healthz'}")
        exact: set[str] = set()
        prefixes: list[str] = []
        for p in exempt_paths:
            kind, text = _path_pattern(p, "exempt path")
            (exact.add(text) if kind == "exact" else prefixes.append(text))
        unreachable = unreachable_route(
            self.routes, [*(("exact", t) for t in exact), *(("prefix", t) for t in prefixes)]
        )
        if unreachable is not None:
            raise ValueError(unreachable[1])
        inert = inert_route_policy(self.routes, self.mode)
        if inert is not None:
            raise ValueError(inert[1])
        self._exempt_exact = frozenset(exact)
        self._exempt_prefixes = tuple(sorted(prefixes))
        # The path only matters when some paths are treated differently from others.
        self.path_sensitive = bool(exact or prefixes or self.routes)
        for value, what, low in (
            (verification_threads, "verification_threads", 1),
            (verification_queue, "verification_queue", 0),
        ):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{what} must be an int")
            if not low <= value <= 1024:
                raise ValueError(f"{what} must be between {low} and 1024")
        self._pool = BoundedPool(verification_threads, verification_queue)
        self._not_cached: object = NOT_CACHED
        if on_error is not None and not callable(on_error):
            raise TypeError("on_error must be callable")
        if on_decision is not None and not callable(on_decision):
            raise TypeError("on_decision must be callable")
        if is_coroutine_callable(on_decision):
            raise TypeError(
                "on_decision must be a plain function: it is called synchronously, so an "
                "async def hook would never run (schedule async work from a plain one)"
            )
        self.on_error = on_error
        self.on_decision = on_decision
        self.forwarded = verifier.forwarded
        names = self.forwarded.header_names() if self.forwarded is not None else frozenset()
        self.strip_names: frozenset[str] = frozenset(n.lower() for n in names)
        # Read (never stripped) only to explain a refusal: X-Forwarded-For and certificate
        # headers that no configuration reads. Adapters hand these to the core too.
        self.read_names: frozenset[str] = self.strip_names | _DIAGNOSTIC_HEADERS
        self._log_limiter = RefusalLogLimiter()
        self._hook_limiter = hook_log_limiter()
        self._made = True

    # What decides which checks a request gets (and the hot path's summary of it) is fixed
    # once the Guard is made: a route assigned later would be applied by the whole path
    # and skipped by cached hits. The hooks stay assignable.
    def __setattr__(self, name: str, value: object) -> None:
        if name in _GUARD_FIXED and getattr(self, "_made", False):
            raise AttributeError(f"Guard.{name} is read-only: make a new Guard")
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        if name in _GUARD_FIXED and getattr(self, "_made", False):
            raise AttributeError(f"Guard.{name} is read-only: make a new Guard")
        object.__delattr__(self, name)

    # -- per request: the one entry of every adapter ---------------------------------------
    def check(self, view: RequestView, *, defer: bool = False) -> Decision:
        """Decide one request: target, mode, route, certificate and token. Never raises.

        For WSGI and Django: it may block (a verification that is not cached, OCSP).

        With ``defer``, an allowed decision with headers to hide (``Decision.hide``) is not
        reported yet: the adapter reports it (``report``) once they are hidden, or refuses
        the request instead (``refuse``), so that a request has one reported decision.
        """
        step = self._start(view)
        if isinstance(step, Decision):
            decision = step
        else:
            identity, error, elapsed, missed = self._outcome(*step[:3])
            decision = self._decision(*step, identity, error, elapsed, missed, report=False)
        if decision.error is not None:
            return decision  # reported where it was decided
        route = decision.route
        if route is not None and route.token is not None:
            try:
                claims = route.token.check(decision.identity, view.authorization())
            except Exception as exc:  # noqa: BLE001 - refused either way, never a 500 trace
                return self._token_refused(decision, exc)
            decision = replace(decision, token=claims)
        return self._finish(decision, defer=defer)

    async def acheck(self, view: RequestView, *, defer: bool = False) -> Decision:
        """As ``check``, for an event loop (ASGI, aiohttp): never blocks it, never raises.

        A cached result (and a cached refusal) is answered on the loop; anything else runs
        on the Guard's bounded pool, or is refused with ``VerificationBusy`` (503) when
        that is full.
        """
        step = self._start(view)
        if isinstance(step, Decision):
            decision = step
        else:
            hit = self.decide_cached(*step, report=False)
            decision = hit or await self.decide_uncached(*step, report=False)
        if decision.error is not None:
            return decision  # reported where it was decided
        route = decision.route
        if route is not None and route.token is not None:
            try:
                claims = await route.token.acheck(decision.identity, view.authorization())
            except Exception as exc:  # noqa: BLE001 - refused either way, never a 500 trace
                return self._token_refused(decision, exc)
            decision = replace(decision, token=claims)
        return self._finish(decision, defer=defer)

    def cached(
        self,
        peer: str | None,
        path: str | None,
        method: str,
        raw_target: bytes | str | None,
        header: str | bytes | None = None,
        chain: tuple[str | bytes, ...] = (),
        strict_target: bool = False,
    ) -> ClientIdentity | None:
        """The hot path of ``check`` and ``acheck``: the identity of a request that a cached
        verification admits, when that is all there is to decide; ``None`` otherwise, and
        then ``check``/``acheck`` decide the same request from the start.

        The adapter has read the request line (``path``, ``method``, ``raw_target``, as
        for ``RequestView``) and found the request to carry either the one copy of the
        certificate header (``header``, its raw value) or a TLS peer chain (``chain``),
        and no TLS error. Everything ``check`` would do besides a cache hit sends the
        request there: an ambiguous target, an exempt path, mode ``"off"``, a route with
        a bearer token, an untrusted forwarder, a cache miss or an entry not admitted
        yet, any refusal, any error. The decision is reported (hook, debug log) exactly
        as ``check`` reports it; which headers to hide stays ``must_strip(peer)``.

        ``path`` may be ``None`` when the adapter has not read it (decoding it costs
        something) because neither ``path_sensitive`` nor ``reporting`` needed it; should
        either need it after all, ``None`` is returned and ``check`` decides.
        """
        if (
            not self.path_sensitive
            and self.on_decision is None
            and self.mode != "off"
            and not logger.isEnabledFor(_DEBUG)
        ):
            # The common case, kept short: nothing depends on the path and nobody reads
            # the decision, so a hit is the verifier's answer alone.
            no_wait = _no_wait_set(True)
            try:
                if header is not None:
                    return self.verifier._cached_header(header, peer, None)
                return self.verifier._cached_chain(chain, peer, None)
            except Exception:  # noqa: BLE001 - the whole path decides (and refuses) it
                return None
            finally:
                _no_wait_reset(no_wait)
        try:
            if self.path_sensitive:
                if path is None or (
                    self.check_target(raw_target, path, strict=strict_target) is not None
                ):
                    return None
                mode, route, exempt = self.resolve(path, method)
                if exempt or mode == "off":
                    return None
                policy = None
                if route is not None:
                    if route.token is not None:
                        return None
                    policy = route.policy
            elif self.mode == "off":
                return None
            else:
                mode, route, policy = self.mode, None, None
            report = self.on_decision is not None or logger.isEnabledFor(_DEBUG)
            if report and path is None:
                return None
            started = time.perf_counter() if report else 0.0
            # On an event loop: files due for a check, or being loaded by another thread,
            # raise WouldBlock (caught below) rather than be read or waited for here.
            no_wait = _no_wait_set(True)
            try:
                if header is not None:
                    identity = self.verifier._cached_header(header, peer, policy)
                else:
                    identity = self.verifier._cached_chain(chain, peer, policy)
            finally:
                _no_wait_reset(no_wait)
            if identity is None:
                return None
        except Exception:  # noqa: BLE001 - the whole path decides (and refuses) it
            return None
        if report and path is not None:  # (a report without a path was left to check)
            decision = Decision(
                identity=identity,
                error=None,
                mode=mode,
                route=route,
                peer=peer,
                path=path,
                method=method,
                fingerprint=identity.fingerprint_sha256,
                elapsed=time.perf_counter() - started,
                cached=True,
            )
            self._finish(decision)
        return identity

    @property
    def reporting(self) -> bool:
        """True when someone reads each decision (``on_decision``, or the ``mtlsauth``
        logger at debug level): a hot path must then hand ``cached`` the path."""
        return self.on_decision is not None or logger.isEnabledFor(_DEBUG)

    def _start(self, view: RequestView) -> Decision | tuple[Presented, Mode, Route | None, bool]:
        """A decision the request line settles (a reported refusal, or an unreported skip
        for mode ``"off"``), or what to verify."""
        peer, path, method = view.peer, view.path, view.method
        error = view.unreadable or self.check_target(
            view.raw_target, path, strict=view.strict_target
        )
        if error is None:
            mode, route, exempt = self.resolve(path, method)
            if mode == "off":
                return self._skipped(
                    Presented(peer=peer, path=path, method=method), mode, route, exempt
                )
            try:
                return view.credentials(), mode, route, exempt
            except AmbiguousRequest as exc:
                error = exc
        return self.refuse(error, peer, path, method)

    def _skipped(
        self, presented: Presented, mode: Mode, route: Route | None, exempt: bool
    ) -> Decision:
        return Decision(
            identity=None,
            error=None,
            mode=mode,
            route=route,
            exempt=exempt,
            peer=presented.peer,
            path=presented.path,
            method=presented.method,
        )

    def _token_refused(self, decision: Decision, exc: Exception) -> Decision:
        """The certificate passed but the route's bearer token did not: a refusal too.

        ``TokenCheck`` logs its own refusals (with the token's details), so only the hook
        and the metrics hear of it here."""
        error = exc if isinstance(exc, MTLSAuthError) else _internal(exc, self._hook_limiter)
        identity = decision.identity
        refused = replace(decision, identity=None, error=error)
        names = (identity.subject, identity.issuer) if identity is not None else (None, None)
        self._report(refused, names, log=not isinstance(exc, MTLSAuthError))
        return refused

    def _finish(self, decision: Decision, *, defer: bool = False) -> Decision:
        """Report an allowed ``decision``, saying which headers the application must not see
        (with ``defer`` and headers to hide, the caller reports it: see ``check``)."""
        if self.strip_names and self.must_strip(decision.peer):
            decision = replace(decision, hide=self.strip_names)
            if defer:
                return decision
        self._report(decision)
        return decision

    def report(self, decision: Decision) -> None:
        """Report a decision ``check`` or ``acheck`` was asked to ``defer``: the log line and
        ``on_decision``."""
        self._report(decision)

    def resolve(self, path: str, method: str) -> tuple[Mode, Route | None, bool]:
        """The effective (mode, route, exempt) for a request."""
        if path in self._exempt_exact or (
            self._exempt_prefixes and path.startswith(self._exempt_prefixes)
        ):
            return "off", None, True
        for route in self.routes:
            if route.matches(path, method):
                return (route.mode or self.mode), route, False
        return self.mode, None, False

    def check_target(
        self, raw: bytes | str | None, path: str, *, strict: bool = False
    ) -> AmbiguousRequest | None:
        """The refusal for a target that could be routed other than ``path`` says, if any.

        Only when exempt paths or routes are configured: without them every path gets
        the same treatment and nothing can be confused. See ``path_ambiguity``.
        """
        if not self.path_sensitive:
            return None
        reason = path_ambiguity(raw, path, strict=strict)
        if reason is None:
            return None
        return AmbiguousRequest(f"the request target can be read more than one way: {reason}")

    def refuse(self, error: MTLSAuthError, peer: str | None, path: str, method: str) -> Decision:
        """The decision for a request refused before any certificate was looked at."""
        decision = Decision(
            identity=None, error=error, mode=self.mode, peer=peer, path=path, method=method
        )
        self._report(decision)
        return decision

    def refused_by_app(
        self,
        error: MTLSAuthError,
        peer: str | None,
        path: str,
        method: str,
        identity: ClientIdentity | None,
    ) -> Decision:
        """Report a refusal the application raised (or a ``token_required`` decorator
        answered) after this Guard admitted the request, which the adapter answers through
        ``on_error``: the refusal's ``on_decision`` record and its log line, as for a refusal
        of the Guard's own. A ``TokenError`` was logged by the ``TokenCheck`` that raised
        it, so only the hook and the metrics hear of it here (as for ``Route(token=...)``).
        """
        mode, route, exempt = self.resolve(path, method)
        decision = Decision(
            identity=None,
            error=error,
            mode=mode,
            route=route,
            exempt=exempt,
            peer=peer,
            path=path,
            method=method,
            fingerprint=identity.fingerprint_sha256 if identity is not None else None,
        )
        names = (identity.subject, identity.issuer) if identity is not None else (None, None)
        self._report(decision, names, log=not isinstance(error, TokenError))
        return decision

    def must_strip(self, peer: str | None) -> bool:
        """True when the app must not see the forwarded-certificate headers of this peer."""
        fwd = self.forwarded
        if fwd is None or not self.strip_names:
            return False
        try:
            return not fwd.is_trusted(peer)
        except Exception:  # noqa: BLE001 - fail closed: strip when unsure
            return True

    def skip(
        self,
        mode: Mode,
        route: Route | None,
        exempt: bool,
        peer: str | None,
        path: str,
        method: str,
    ) -> Decision:
        """The decision for a request whose mode is ``"off"`` (no certificate check)."""
        decision = self._skipped(
            Presented(peer=peer, path=path, method=method), mode, route, exempt
        )
        self._report(decision)
        return decision

    def decide(
        self, presented: Presented, mode: Mode, route: Route | None, exempt: bool = False
    ) -> Decision:
        """Authenticate ``presented`` under ``mode``; never raises. May block (OCSP)."""
        if mode == "off":
            return self.skip(mode, route, exempt, presented.peer, presented.path, presented.method)
        identity, error, elapsed, missed = self._outcome(presented, mode, route)
        return self._decision(presented, mode, route, exempt, identity, error, elapsed, missed)

    async def decide_async(
        self, presented: Presented, mode: Mode, route: Route | None, exempt: bool = False
    ) -> Decision:
        """As ``decide``, for an event loop: never blocks it, never raises.

        A cached result (and a cached refusal) is answered on the loop. Anything else runs
        on the Guard's own bounded pool; when ``verification_threads`` are busy and
        ``verification_queue`` requests already wait, the request is refused at once with
        ``VerificationBusy`` (503).
        """
        decision = self.decide_cached(presented, mode, route, exempt)
        if decision is None:
            decision = await self.decide_uncached(presented, mode, route, exempt)
        return decision

    def decide_cached(
        self,
        presented: Presented,
        mode: Mode,
        route: Route | None,
        exempt: bool = False,
        *,
        report: bool = True,
    ) -> Decision | None:
        """The decision if the cache (or the request alone) settles it, else ``None``.

        Never blocks and never raises: what an event loop may call inline.
        """
        if mode == "off":
            return self.skip(mode, route, exempt, presented.peer, presented.path, presented.method)
        cached, error, elapsed, missed = self._timed(
            self.verifier.authenticate_cached, presented, mode, route
        )
        if cached is self._not_cached:
            return None  # the pool measures the verification itself
        identity = cached if isinstance(cached, ClientIdentity) else None
        return self._decision(
            presented, mode, route, exempt, identity, error, elapsed, missed, report=report
        )

    async def decide_uncached(
        self,
        presented: Presented,
        mode: Mode,
        route: Route | None,
        exempt: bool = False,
        *,
        report: bool = True,
    ) -> Decision:
        """Run the full verification on the Guard's bounded pool (or refuse: busy)."""
        future = self._submit(presented, mode, route)
        if future is None:
            busy = VerificationBusy("too many certificate verifications are waiting")
            return self._decision(presented, mode, route, exempt, None, busy)
        identity, error, elapsed, missed = await asyncio.wrap_future(future)
        return self._decision(
            presented, mode, route, exempt, identity, error, elapsed, missed, report=report
        )

    def _outcome(self, presented: Presented, mode: Mode, route: Route | None) -> _Outcome:
        """(identity, error, seconds, cache missed) of one full ``authenticate``."""
        identity, error, elapsed, missed = self._timed(
            self.verifier.authenticate, presented, mode, route
        )
        return (identity if isinstance(identity, ClientIdentity) else None), error, elapsed, missed

    def _timed(
        self, call: Callable[..., object], presented: Presented, mode: Mode, route: Route | None
    ) -> tuple[object, MTLSAuthError | None, float, bool]:
        """One Verifier call, timed, with its cache outcome; any failure is a refusal."""
        result: object = None
        error: MTLSAuthError | None = None
        reset = cache_missed.set(False)
        started = time.perf_counter()
        try:
            result = call(
                presented,
                required=mode == "mandatory",
                policy=route.policy if route is not None else None,
            )
        except MTLSAuthError as exc:
            error = exc
        except Exception as exc:  # noqa: BLE001 - fail closed: refused, never a 500 trace
            error = _internal(exc, self._hook_limiter)
        elapsed = time.perf_counter() - started
        missed = cache_missed.get()
        cache_missed.reset(reset)
        return result, error, elapsed, missed

    def _submit(
        self, presented: Presented, mode: Mode, route: Route | None
    ) -> Future[_Outcome] | None:
        """Queue one verification on the bounded pool, or ``None`` when it is full."""
        return self._pool.submit(lambda: self._outcome(presented, mode, route))

    @property
    def verifications_waiting(self) -> int:
        """Verifications running or queued on the pool right now (for metrics)."""
        return self._pool.waiting

    def _decision(
        self,
        presented: Presented,
        mode: Mode,
        route: Route | None,
        exempt: bool,
        identity: ClientIdentity | None,
        error: MTLSAuthError | None,
        elapsed: float | None = None,
        missed: bool = False,
        *,
        report: bool = True,
    ) -> Decision:
        """The decision for one verification's outcome; reported unless ``report`` is false
        and it lets the request through (the caller reports it after the token check)."""
        # Timing and the cache outcome only for verifications that ran (not for a missing
        # certificate, an untrusted forwarder, a busy pool).
        checked = elapsed is not None and (
            identity is not None or (error is not None and error.code not in _UNCHECKED)
        )
        details: LogDetails | None = None
        hint: str | None = None
        if identity is not None:
            fingerprint: str | None = identity.fingerprint_sha256
        elif error is not None:
            fingerprint, names, ders = _refused_leaf(presented, self.forwarded)
            hint = refusal_hint(error, presented, self.forwarded)
            details = self._log_details(error.code, names, ders, hint)
        else:
            fingerprint = _leaf_fingerprint(presented)
        decision = Decision(
            identity=identity,
            error=error,
            mode=mode,
            route=route,
            exempt=exempt,
            peer=presented.peer,
            path=presented.path,
            method=presented.method,
            fingerprint=fingerprint,
            elapsed=elapsed if checked else None,
            cached=(not missed) if checked else None,
            hint=hint,
        )
        if report or error is not None:
            self._report(decision, details=details)
        return decision

    def _log_details(
        self,
        code: str,
        names: tuple[str | None, str | None] | None,
        ders: Sequence[bytes],
        hint: str | None = None,
    ) -> LogDetails:
        """What a refusal's log line adds, read only when the line is written: the
        refused leaf's names, and ``hint``, or for ``untrusted_issuer`` where its chain
        stops."""

        def details() -> tuple[tuple[str | None, str | None], str | None]:
            if names is not None:
                return names, hint
            read = leaf_names(ders)
            if read is None:
                return (None, None), hint
            if code == "untrusted_issuer":
                return read, self.verifier._untrusted_issuer_hint(ders) or hint
            return read, hint

        return details

    def error_hook_result(self, error: MTLSAuthError, request: object) -> object:
        """``on_error(error, request)``'s answer; ``None`` (the default answer) if it raised
        or returned an awaitable (nothing awaits one in a synchronous adapter).

        A failing hook is logged and never turns a refusal into a 500 or a pass.
        """
        hook = self.on_error
        if hook is None:
            return None
        try:
            # A copy: the answer is sent from the error no hook has seen (see __copy__).
            result = hook(copy.copy(error), request)
        except Exception as exc:  # noqa: BLE001 - the default answer refuses instead
            report_hook_failure("on_error", exc, self._hook_limiter)
            return None
        if result is not None and inspect.isawaitable(result):
            discard_awaitable("on_error", result, "the default answer was sent", self._hook_limiter)
            return None
        return result

    async def error_hook_result_async(self, error: MTLSAuthError, request: object) -> object:
        """As ``error_hook_result``, awaiting a coroutine hook (ASGI, aiohttp)."""
        hook = self.on_error
        if hook is None:
            return None
        try:
            result = hook(copy.copy(error), request)  # a copy, as in error_hook_result
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:  # noqa: BLE001 - the default answer refuses instead
            report_hook_failure("on_error", exc, self._hook_limiter)
            return None
        return result

    def hook_failed(self, hook: str, exc: BaseException) -> None:
        """For an adapter: log that the answer of ``hook`` failed with ``exc`` (escaped,
        once a minute per exception type)."""
        report_hook_failure(hook, exc, self._hook_limiter)

    def hook_misused(self, hook: str, kind: str, what: str) -> None:
        """For an adapter: log that ``hook`` did ``what`` (a fixed text), once a minute per
        ``kind``."""
        report_hook_misuse(hook, kind, what, self._hook_limiter)

    def _report(
        self,
        decision: Decision,
        names: tuple[str | None, str | None] = (None, None),
        *,
        log: bool = True,
        details: LogDetails | None = None,
    ) -> None:
        error = decision.error
        if not log:
            pass  # logged by whoever refused (TokenCheck logs its own refusals)
        elif error is None:
            if logger.isEnabledFor(logging.DEBUG):
                log_allowed(decision)
        else:
            log_refusal(decision, error, details or (lambda: (names, None)), self._log_limiter)
        hook = self.on_decision
        if hook is not None:
            try:
                result = hook(_for_hook(decision))
            except Exception as exc:  # noqa: BLE001 - logged; the decision stands
                report_hook_failure("on_decision", exc, self._hook_limiter)
                return
            # A coroutine never runs unless awaited; a task or a future the hook scheduled
            # runs by itself and is left alone.
            if result is not None and inspect.iscoroutine(result):
                discard_awaitable(
                    "on_decision", result, "the hook is called synchronously", self._hook_limiter
                )

    def __repr__(self) -> str:
        return (
            f"<Guard mode={self.mode} routes={len(self.routes)} "
            f"exempt={len(self._exempt_exact) + len(self._exempt_prefixes)}>"
        )
