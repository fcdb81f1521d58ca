"""Guard: the behaviour every adapter shares, implemented once and framework-free.

An adapter turns a request into a ``Presented`` and asks the Guard for a ``Decision``; it
never decides anything itself. The Guard owns:

* modes (Apache ``SSLVerifyClient``, nginx ``ssl_verify_client``): ``"mandatory"`` (no or
  bad certificate: refuse), ``"optional"`` (no certificate: pass without identity; a bad one:
  refuse), ``"off"`` (no check at all);
* per-route rules (``Route``), first match wins like Apache ``<LocationMatch>``, and exempt
  paths (``/healthz``), which behave as mode ``"off"``;
* failing closed: an unexpected exception from the verifier or a policy becomes an
  ``InternalError`` (code ``internal_error``, HTTP 500), never a pass and never a traceback
  in the response;
* the RFC 9457 ``application/problem+json`` body of a refusal;
* logging every decision through the ``mtlsauth`` logger, and the ``on_decision`` hook.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import inspect
import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from mtlsauth._errors import InternalError, MTLSAuthError
from mtlsauth._identity import ClientIdentity
from mtlsauth._observe import cache_missed
from mtlsauth._types import Presented

if TYPE_CHECKING:
    from mtlsauth._oauth import TokenCheck
    from mtlsauth._policy import Policy
    from mtlsauth._verifier import Verifier

__all__ = [
    "MODES",
    "PROBLEM_TYPE_PREFIX",
    "Decision",
    "Guard",
    "InternalError",
    "Mode",
    "Route",
    "problem_body",
    "problem_headers",
]

logger = logging.getLogger("mtlsauth")

Mode = Literal["mandatory", "optional", "off"]
MODES: frozenset[str] = frozenset({"mandatory", "optional", "off"})

PROBLEM_TYPE_PREFIX = "urn:mtlsauth:error:"
"""Problem ``type`` URIs are this prefix plus the error code (RFC 9457 section 3.1.1)."""


def _validate_mode(mode: object, what: str) -> Mode:
    if not isinstance(mode, str):
        raise TypeError(f"{what} must be a string: 'mandatory', 'optional' or 'off'")
    if mode not in MODES:
        raise ValueError(f"{what} must be 'mandatory', 'optional' or 'off', not {mode!r}")
    return mode  # type: ignore[return-value]


def _path_pattern(pattern: object, what: str) -> tuple[str, str]:
    """Return (kind, text) for an exact or trailing-``*`` prefix pattern."""
    if not isinstance(pattern, str):
        raise TypeError(
            f"{what} must be a str path or a compiled regex, not {type(pattern).__name__}"
        )
    if not pattern.startswith("/"):
        raise ValueError(f"{what} {pattern!r} must start with '/'")
    star = pattern.find("*")
    if star == -1:
        return "exact", pattern
    if star != len(pattern) - 1:
        raise ValueError(f"{what} {pattern!r}: '*' is only allowed at the end (use a regex)")
    return "prefix", pattern[:-1]


@dataclass(frozen=True, slots=True)
class Route:
    """A per-route rule: which requests it covers, and the mode and policy they get.

    Args:
        pattern: ``"/exact/path"``, a prefix ending in ``*`` (``"/admin/*"`` covers
            ``/admin/`` and everything below it, but not ``/admin``; write ``"/admin*"``
            for both, which also covers ``/administrator``), or a compiled ``re.Pattern``,
            searched like Apache ``<LocationMatch>`` (anchor it with ``^``).
        methods: HTTP methods this rule covers (``None``: all), compared case-insensitively.
            ``GET`` also covers ``HEAD``, which frameworks answer with the GET handler. A
            websocket handshake counts as ``GET``.
        mode: ``"mandatory"``, ``"optional"`` or ``"off"`` for matching requests (``None``:
            the middleware's mode).
        policy: The allow-lists for matching requests, *instead of* the Verifier's own
            policy (``None``: the Verifier's policy).
        token: A ``TokenCheck``: matching requests must also satisfy its bearer-token
            requirement (RFC 6750, bound to the certificate per RFC 8705) once the
            certificate check passed; the claims reach the app under ``"mtlsauth.token"``.
            ``None`` (default): the ``Authorization`` header is not looked at.

    Raises:
        TypeError, ValueError: on a malformed rule.

    Example:
        >>> import re
        >>> Route("/admin/*", mode="mandatory").matches("/admin/users", "GET")
        True
        >>> Route(re.compile(r"^/api/v\\d+/"), methods={"POST"}).matches("/api/v2/x", "GET")
        False

    Security note: paths are matched as the server decoded them (``scope["path"]``,
    ``PATH_INFO``); a rule that relaxes the mode (``"off"``) on a prefix also relaxes it
    for every path the framework later normalises into that prefix.
    """

    pattern: str | re.Pattern[str]
    methods: frozenset[str] | None = None
    mode: Mode | None = None
    policy: Policy | None = None
    token: TokenCheck | None = None
    _kind: str = field(default="", init=False, repr=False, compare=False)
    _text: str = field(default="", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        from mtlsauth._policy import Policy

        if isinstance(self.pattern, re.Pattern):
            if not isinstance(self.pattern.pattern, str):
                raise TypeError("Route pattern regex must be compiled from a str")
            kind, text = "regex", ""
        else:
            kind, text = _path_pattern(self.pattern, "Route pattern")
        object.__setattr__(self, "_kind", kind)
        object.__setattr__(self, "_text", text)
        if self.methods is not None:
            if isinstance(self.methods, str | bytes) or not isinstance(self.methods, Iterable):
                raise TypeError("Route methods must be an iterable of method names, e.g. {'GET'}")
            methods = frozenset(self.methods)
            if not methods or not all(isinstance(m, str) and m for m in methods):
                raise ValueError("Route methods must be non-empty method names")
            object.__setattr__(self, "methods", frozenset(m.upper() for m in methods))
        if self.mode is not None:
            _validate_mode(self.mode, "Route mode")
        if self.policy is not None and not isinstance(self.policy, Policy):
            raise TypeError("Route policy must be a Policy")
        if self.token is not None:
            from mtlsauth._oauth import TokenCheck

            if not isinstance(self.token, TokenCheck):
                raise TypeError("Route token must be a mtlsauth.TokenCheck")

    def matches(self, path: str, method: str) -> bool:
        """True when this rule covers a request for ``path`` with ``method``."""
        methods = self.methods
        if methods is not None and method not in methods:
            # WSGI frameworks upper-case REQUEST_METHOD, and every framework answers HEAD
            # with the GET handler (as Apache's <Limit GET> covers HEAD): a rule must cover
            # whatever reaches the handler it protects.
            method = method.upper()
            if method not in methods and not (method == "HEAD" and "GET" in methods):
                return False
        kind = self._kind
        if kind == "exact":
            return path == self._text
        if kind == "prefix":
            return path.startswith(self._text)
        assert isinstance(self.pattern, re.Pattern)
        return self.pattern.search(path) is not None


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


def problem_body(error: MTLSAuthError) -> bytes:
    """The RFC 9457 ``application/problem+json`` body for a refusal.

    Members: ``type`` (``urn:mtlsauth:error:<code>``), ``title``, ``status``, ``detail``
    and the extension member ``code``. Never a certificate, a header value or a traceback.
    """
    doc = {
        "type": PROBLEM_TYPE_PREFIX + error.code,
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
        "code": error.code,
    }
    return json.dumps(doc, separators=(",", ":")).encode("utf-8")


def problem_headers(error: MTLSAuthError, body_length: int) -> list[tuple[str, str]]:
    """Response headers for a refusal.

    A 401 carries ``WWW-Authenticate: MutualTLS error="<code>"``: RFC 9110 section 15.5.2
    requires a challenge on every 401 and no scheme is registered for TLS client
    certificates, so this names one that clients without support simply ignore.
    """
    headers = [
        ("content-type", "application/problem+json"),
        ("content-length", str(body_length)),
        ("cache-control", "no-store"),
    ]
    challenge = getattr(error, "challenge", None)  # bearer-token refusals (RFC 6750 section 3)
    if isinstance(challenge, str):
        headers.append(("www-authenticate", challenge))
    elif error.status == 401:
        headers.append(("www-authenticate", f'MutualTLS error="{error.code}"'))
    return headers


_PEM_BEGIN = "-----BEGIN CERTIFICATE-----"
_PEM_END = "-----END CERTIFICATE-----"


def _leaf_fingerprint(presented: Presented) -> str | None:
    """Best-effort SHA-256 of the TLS leaf, for logging refusals (never raises)."""
    if not presented.tls_chain:
        return None
    leaf = presented.tls_chain[0]
    try:
        if isinstance(leaf, bytes) and not leaf.lstrip().startswith(b"-----"):
            return hashlib.sha256(leaf).hexdigest()
        text = leaf.decode("ascii") if isinstance(leaf, bytes) else leaf
        start = text.index(_PEM_BEGIN) + len(_PEM_BEGIN)
        der = base64.b64decode("".join(text[start : text.index(_PEM_END, start)].split()))
        return hashlib.sha256(der).hexdigest()
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None


OnDecision = Callable[[Decision], object]

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
        on_error: Kept for the adapter (its signature is framework-specific).
        on_decision: Called with every ``Decision``; its exceptions are logged, never
            raised, and never change the decision.

    Raises:
        TypeError, ValueError: on bad configuration.

    Security note: forwarded-certificate headers are removed from what the application
    sees whenever the peer is not a trusted proxy, in every mode, including ``"off"``
    and exempt paths (``strip_names`` / ``must_strip``).
    """

    __slots__ = (
        "_exempt_exact",
        "_exempt_prefixes",
        "forwarded",
        "mode",
        "on_decision",
        "on_error",
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
    ) -> None:
        from mtlsauth._verifier import Verifier

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
        if isinstance(exempt_paths, str | bytes) or not isinstance(exempt_paths, Iterable):
            raise TypeError("exempt_paths must be a collection of paths, e.g. {'/healthz'}")
        exact: set[str] = set()
        prefixes: list[str] = []
        for p in exempt_paths:
            kind, text = _path_pattern(p, "exempt path")
            (exact.add(text) if kind == "exact" else prefixes.append(text))
        self._exempt_exact = frozenset(exact)
        self._exempt_prefixes = tuple(sorted(prefixes))
        if on_error is not None and not callable(on_error):
            raise TypeError("on_error must be callable")
        if on_decision is not None and not callable(on_decision):
            raise TypeError("on_decision must be callable")
        self.on_error = on_error
        self.on_decision = on_decision
        self.forwarded = verifier.forwarded
        names = self.forwarded.header_names() if self.forwarded is not None else frozenset()
        self.strip_names: frozenset[str] = frozenset(n.lower() for n in names)

    # -- per request ----------------------------------------------------------------------
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
        decision = Decision(None, None, mode, route, exempt, peer, path, method)
        self._report(decision)
        return decision

    def decide(
        self, presented: Presented, mode: Mode, route: Route | None, exempt: bool = False
    ) -> Decision:
        """Authenticate ``presented`` under ``mode``; never raises."""
        if mode == "off":
            return self.skip(mode, route, exempt, presented.peer, presented.path, presented.method)
        identity: ClientIdentity | None = None
        error: MTLSAuthError | None = None
        reset = cache_missed.set(False)
        started = time.perf_counter()
        try:
            identity = self.verifier.authenticate(
                presented,
                required=mode == "mandatory",
                policy=route.policy if route is not None else None,
            )
        except MTLSAuthError as exc:
            error = exc
        except Exception as exc:
            logger.error("mtlsauth internal error during verification: %s", type(exc).__name__)
            logger.debug("mtlsauth internal error traceback", exc_info=True)
            error = InternalError("the client certificate could not be checked")
        elapsed = time.perf_counter() - started
        missed = cache_missed.get()
        cache_missed.reset(reset)
        checked = identity is not None or (error is not None and error.code not in _UNCHECKED)
        if identity is not None:
            fingerprint = identity.fingerprint_sha256
        else:
            fingerprint = _leaf_fingerprint(presented)
        decision = Decision(
            identity,
            error,
            mode,
            route,
            exempt,
            presented.peer,
            presented.path,
            presented.method,
            fingerprint,
            elapsed if checked else None,
            (not missed) if checked else None,
        )
        self._report(decision)
        return decision

    def error_hook_result(self, error: MTLSAuthError, request: object) -> object:
        """``on_error(error, request)``'s answer; ``None`` (the default answer) if it raised.

        A failing hook is logged and never turns a refusal into a 500 or a pass.
        """
        hook = self.on_error
        if hook is None:
            return None
        try:
            return hook(error, request)
        except Exception:
            logger.error("mtlsauth on_error hook raised", exc_info=True)
            return None

    async def error_hook_result_async(self, error: MTLSAuthError, request: object) -> object:
        """As ``error_hook_result``, awaiting a coroutine hook (ASGI, aiohttp)."""
        result = self.error_hook_result(error, request)
        if inspect.isawaitable(result):
            try:
                return await result
            except Exception:
                logger.error("mtlsauth on_error hook raised", exc_info=True)
                return None
        return result

    def _report(self, decision: Decision) -> None:
        error = decision.error
        level = (
            logging.DEBUG
            if error is None
            else (logging.ERROR if error.status >= 500 else logging.INFO)
        )
        if logger.isEnabledFor(level):
            fields = {
                "outcome": "allowed" if error is None else "denied",
                "code": decision.code,
                "peer": decision.peer,
                "fingerprint": decision.fingerprint,
                "path": decision.path,
                "method": decision.method,
                "mode": decision.mode,
                "status": error.status if error is not None else None,
            }
            logger.log(
                level,
                "mtlsauth %s code=%s peer=%s fingerprint=%s method=%s path=%r mode=%s",
                fields["outcome"],
                fields["code"],
                fields["peer"],
                fields["fingerprint"],
                fields["method"],
                fields["path"],
                fields["mode"],
                extra={"mtlsauth": fields},
            )
        hook = self.on_decision
        if hook is not None:
            try:
                hook(decision)
            except Exception:
                logger.error("mtlsauth on_decision hook raised", exc_info=True)

    def __repr__(self) -> str:
        return (
            f"<Guard mode={self.mode} routes={len(self.routes)} "
            f"exempt={len(self._exempt_exact) + len(self._exempt_prefixes)}>"
        )
