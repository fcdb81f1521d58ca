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

import asyncio
import base64
import hashlib
import inspect
import json
import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from mtlsauth._errors import (
    AmbiguousRequest,
    CertificateMissing,
    InternalError,
    MTLSAuthError,
    UntrustedForwarder,
    VerificationBusy,
)
from mtlsauth._identity import ClientIdentity
from mtlsauth._logfields import RefusalLogLimiter, escape_log_value
from mtlsauth._observe import cache_missed
from mtlsauth._types import Presented

if TYPE_CHECKING:
    from mtlsauth._forwarded import ForwardedCert
    from mtlsauth._oauth import TokenCheck
    from mtlsauth._policy import Policy
    from mtlsauth._verifier import Verifier

__all__ = [
    "MODES",
    "PROBLEM_TYPE_PREFIX",
    "AmbiguousRequest",
    "Decision",
    "Guard",
    "InternalError",
    "Mode",
    "Route",
    "VerificationBusy",
    "path_ambiguity",
    "problem_body",
    "problem_headers",
]

logger = logging.getLogger("mtlsauth")

Mode = Literal["mandatory", "optional", "off"]
MODES: frozenset[str] = frozenset({"mandatory", "optional", "off"})

PROBLEM_TYPE_PREFIX = "urn:mtlsauth:error:"
"""Problem ``type`` URIs are this prefix plus the error code (RFC 9457 section 3.1.1)."""


# Characters a client may write unencoded in a path segment (RFC 3986 section 3.3: pchar).
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HEX = frozenset(b"0123456789abcdefABCDEF")
# Encoded octets that servers, proxies and routers disagree about, or that spell a path
# differently from its canonical form: every unreserved character (%41 is "A", %2E a dot),
# "/", "\\", "%" (double encoding), ";" (path parameters) and the control characters.
_AMBIGUOUS_ESCAPES = frozenset([*_UNRESERVED, *b"/\\%;", *range(0x20), 0x7F])


# In a decoded path: a backslash, ";", a control character, an empty or a dot segment.
_AMBIGUOUS_DECODED = re.compile(r"[\x00-\x1f\x7f\\;]|//|(?:\A|/)\.\.?(?=/|\Z)")
_PLAIN_TARGET = re.compile(rb"(/[A-Za-z0-9\-._~!$&'()*+,=:@/]*)(?:\?|\Z)")


def path_ambiguity(raw: bytes | str | None, path: str, *, strict: bool = False) -> str | None:
    """Why the request target ``raw`` and the decoded ``path`` could be routed two ways.

    Args:
        raw: The target as the client sent it (path, optionally ``?query``, or absolute
            form), or ``None`` when the server does not expose it.
        path: The decoded path the framework routes.
        strict: Refuse every encoded ASCII character and lower-case hex digits (for
            routers that match the still encoded form, such as aiohttp before 3.10).

    Returns:
        ``None`` when there is one reading only; else a short reason (for the log).
    """
    if isinstance(raw, str):
        try:
            raw = raw.encode("latin-1")
        except UnicodeEncodeError:
            return "non-latin-1 request target"
    if raw is not None:
        plain = _PLAIN_TARGET.match(raw)
        if plain is not None:
            target = plain.group(1)
            if b"//" not in target and b"/." not in target:
                # The common case: nothing encoded, nothing to normalise, so the decoded
                # path is the target itself (below a root_path the server prepended).
                return None
    bad = _AMBIGUOUS_DECODED.search(path)
    if bad is not None:
        return f"{bad.group()!r} in the path"
    if raw is None:
        return None
    query = raw.find(b"?")
    target = raw if query == -1 else raw[:query]
    if not target.startswith(b"/"):
        lower = target[:8].lower()
        if not (lower.startswith((b"http://", b"https://"))):
            return "request target is not a path"
        slash = target.find(b"/", target.find(b"//") + 2)
        target = target[slash:] if slash != -1 else b"/"
    if b"//" in target:
        return "empty path segment"
    out = bytearray()
    i, n = 0, len(target)
    while i < n:
        b = target[i]
        if b == 0x25:  # "%"
            hexpair = target[i + 1 : i + 3]
            if len(hexpair) != 2 or not all(c in _HEX for c in hexpair):
                return "malformed percent-encoding"
            o = int(hexpair, 16)
            if strict and hexpair != hexpair.upper():
                return "lower-case percent-encoding"
            if o in _AMBIGUOUS_ESCAPES or (strict and o < 0x80):
                return f"encoded {chr(o)!r}" if 0x20 < o < 0x7F else f"encoded byte 0x{o:02x}"
            out.append(o)
            i += 3
            continue
        if b <= 0x20 or b >= 0x7F or b in b"\\;#":
            return f"raw byte 0x{b:02x}" if b <= 0x20 or b >= 0x7F else f"{chr(b)!r} in the target"
        out.append(b)
        i += 1
    try:
        decoded = out.decode("utf-8")
    except UnicodeDecodeError:
        return "percent-encoded bytes that are not UTF-8"
    raw_segments = decoded.split("/")
    if "." in raw_segments or ".." in raw_segments:
        return "dot segment"
    return None


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

    Security note: paths are matched as the framework's router sees them (ASGI
    ``scope["path"]`` below ``root_path``, WSGI ``PATH_INFO`` read as UTF-8, aiohttp
    ``request.path``), and the adapters refuse a raw target that could be routed other
    than that (``AmbiguousRequest``, 400 ``ambiguous_path``) whenever any route or exempt
    path is configured.
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
    elif error.status == 503:
        headers.append(("retry-after", "1"))
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
    except Exception:  # noqa: BLE001 - for the log only: never turn a refusal into a 500
        return None


def _refused_leaf(
    presented: Presented, forwarded: ForwardedCert | None
) -> tuple[str | None, tuple[str | None, str | None], Sequence[bytes]]:
    """(fingerprint, (subject, issuer), DER chain) of a refused certificate, for the log;
    never raises.

    A header is only decoded when its sender is a trusted proxy: from anyone else it is
    attacker text, and nothing of it goes into a log.
    """
    from cryptography import x509

    try:
        ders: Sequence[bytes] = ()
        if forwarded is not None and forwarded.is_trusted(presented.peer):
            value = forwarded.extract(presented)
            if value is not None:
                decoded = value.decode()
                if isinstance(decoded, ClientIdentity):
                    return decoded.fingerprint_sha256, (decoded.subject, decoded.issuer), ()
                ders = decoded
        elif presented.tls_chain:
            from mtlsauth._encoding import chain_to_der

            ders = chain_to_der(presented.tls_chain)
        if not ders:
            return None, (None, None), ()
        fingerprint = hashlib.sha256(ders[0]).hexdigest()
        try:
            cert = x509.load_der_x509_certificate(ders[0])
            names = (cert.subject.rfc4514_string(), cert.issuer.rfc4514_string())
            return fingerprint, names, ders
        except ValueError:
            return fingerprint, (None, None), ()
    except Exception:  # noqa: BLE001 - best effort: the refusal stands either way
        return _leaf_fingerprint(presented), (None, None), ()


def _known_certificate_headers() -> frozenset[str]:
    from mtlsauth._forwarded_presets import PRESETS

    names = {"x-forwarded-client-cert", "x-client-cert", "x-ssl-client-cert", "ssl-client-cert"}
    for cfg in PRESETS.values():
        for key in ("header", "chain_header"):
            value = cfg.get(key)
            if isinstance(value, str):
                names.add(value.lower())
    return frozenset(names)


_CERT_HEADERS = _known_certificate_headers()
_DIAGNOSTIC_HEADERS = _CERT_HEADERS | {"x-forwarded-for"}


def _with_hint(
    error: MTLSAuthError, presented: Presented, forwarded: ForwardedCert | None
) -> MTLSAuthError:
    """The refusal, with its detail saying what is misconfigured when the request shows it.

    Only names from fixed lists are quoted; never a header value.
    """
    try:
        xff = presented.header_values("x-forwarded-for")
        last = xff[-1].rsplit(",", 1)[-1].strip() if xff else ""
        rewritten = bool(presented.peer) and last == presented.peer
        if isinstance(error, UntrustedForwarder):
            if rewritten:
                return UntrustedForwarder(f"{error.detail}; {_REWRITTEN}")
            return error
        if not isinstance(error, CertificateMissing) or presented.tls_chain:
            return error
        configured = forwarded.header_names() if forwarded is not None else frozenset()
        if forwarded is not None and any(k in configured for k, _v in presented.headers):
            # on_untrusted="ignore": the header was there, from a peer not trusted
            where = presented.peer or "an unknown peer"
            why = _REWRITTEN if rewritten else f"{where} is not in trusted_proxies"
            return CertificateMissing(
                f"{error.detail}; a {forwarded.header!r} header was ignored: {why}"
            )
        seen = sorted({k for k, _v in presented.headers if k in _CERT_HEADERS} - configured)
        if seen:
            if forwarded is None:
                what = "no forwarded= is configured (ForwardedCert.preset(...))"
            else:
                what = f"forwarded= reads {forwarded.header!r}"
            return CertificateMissing(
                f"{error.detail}; the request carries a {seen[0]!r} header, but {what}"
            )
        if presented.tls_hint:
            return CertificateMissing(f"{error.detail}; {presented.tls_hint}")
    except Exception:  # noqa: BLE001 - a hint must never change the refusal
        return error
    return error


_REWRITTEN = (
    "but that address is the last hop of X-Forwarded-For: the server replaced the socket "
    "peer with it (uvicorn does by default: run it with --no-proxy-headers), so the trusted "
    "proxy cannot be recognised"
)

OnDecision = Callable[[Decision], object]
_Outcome = tuple["ClientIdentity | None", "MTLSAuthError | None", float, bool]
_Job = tuple["Future[_Outcome]", Presented, Mode, "Route | None"]


def _internal(exc: Exception) -> InternalError:
    logger.error("mtlsauth internal error during verification: %s", type(exc).__name__)
    logger.debug("mtlsauth internal error traceback", exc_info=exc)
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
        on_error: Kept for the adapter (its signature is framework-specific).
        on_decision: Called with every ``Decision``; its exceptions are logged, never
            raised, and never change the decision.
        verification_threads: Threads of the Guard's own pool, which runs the verifications
            that are not cached for the async adapters (``decide_async``). They start on
            demand and end when there is no more work.
        verification_queue: Verifications that may wait for one of those threads; one
            more is refused at once with ``VerificationBusy`` (503), never queued.

    Raises:
        TypeError, ValueError: on bad configuration.

    Security note: forwarded-certificate headers are removed from what the application
    sees whenever the peer is not a trusted proxy, in every mode, including ``"off"``
    and exempt paths (``strip_names`` / ``must_strip``).
    """

    __slots__ = (
        "_exempt_exact",
        "_exempt_prefixes",
        "_inflight",
        "_lock",
        "_log_limiter",
        "_max_inflight",
        "_not_cached",
        "_pool_pid",
        "_queue",
        "_running",
        "_threads",
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
        from mtlsauth._verifier import NOT_CACHED, Verifier

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
        self._threads = verification_threads
        self._max_inflight = verification_threads + verification_queue
        self._inflight = 0  # queued or running
        self._running = 0  # pool threads alive
        self._lock = threading.Lock()
        self._queue: deque[_Job] = deque()
        self._pool_pid = os.getpid()
        self._not_cached: object = NOT_CACHED
        if on_error is not None and not callable(on_error):
            raise TypeError("on_error must be callable")
        if on_decision is not None and not callable(on_decision):
            raise TypeError("on_decision must be callable")
        self.on_error = on_error
        self.on_decision = on_decision
        self.forwarded = verifier.forwarded
        names = self.forwarded.header_names() if self.forwarded is not None else frozenset()
        self.strip_names: frozenset[str] = frozenset(n.lower() for n in names)
        # Read (never stripped) only to explain a refusal: X-Forwarded-For and certificate
        # headers that no configuration reads. Adapters hand these to the core too.
        self.read_names: frozenset[str] = self.strip_names | _DIAGNOSTIC_HEADERS
        self._log_limiter = RefusalLogLimiter()

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
        decision = Decision(None, error, self.mode, None, False, peer, path, method)
        self._report(decision)
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
        decision = Decision(None, None, mode, route, exempt, peer, path, method)
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
        self, presented: Presented, mode: Mode, route: Route | None, exempt: bool = False
    ) -> Decision | None:
        """The decision if the cache (or the request alone) settles it, else ``None``.

        Never blocks and never raises: what an event loop may call inline.
        """
        if mode == "off":
            return self.skip(mode, route, exempt, presented.peer, presented.path, presented.method)
        error: MTLSAuthError | None = None
        cached: object = None
        reset = cache_missed.set(False)
        started = time.perf_counter()
        try:
            cached = self.verifier.authenticate_cached(
                presented,
                required=mode == "mandatory",
                policy=route.policy if route is not None else None,
            )
        except MTLSAuthError as exc:
            error = exc
        except Exception as exc:  # noqa: BLE001 - fail closed: refused, never a 500 trace
            error = _internal(exc)
        elapsed = time.perf_counter() - started
        missed = cache_missed.get()
        cache_missed.reset(reset)
        if cached is self._not_cached:
            return None  # the pool measures the verification itself
        identity = cached if isinstance(cached, ClientIdentity) else None
        return self._decision(presented, mode, route, exempt, identity, error, elapsed, missed)

    async def decide_uncached(
        self, presented: Presented, mode: Mode, route: Route | None, exempt: bool = False
    ) -> Decision:
        """Run the full verification on the Guard's bounded pool (or refuse: busy)."""
        future = self._submit(presented, mode, route)
        if future is None:
            busy = VerificationBusy("too many certificate verifications are waiting")
            return self._decision(presented, mode, route, exempt, None, busy)
        identity, error, elapsed, missed = await asyncio.wrap_future(future)
        return self._decision(presented, mode, route, exempt, identity, error, elapsed, missed)

    def _outcome(self, presented: Presented, mode: Mode, route: Route | None) -> _Outcome:
        """(identity, error, seconds, cache missed) of one full ``authenticate``."""
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
        except Exception as exc:  # noqa: BLE001 - fail closed: refused, never a 500 trace
            error = _internal(exc)
        elapsed = time.perf_counter() - started
        missed = cache_missed.get()
        cache_missed.reset(reset)
        return identity, error, elapsed, missed

    def _submit(
        self, presented: Presented, mode: Mode, route: Route | None
    ) -> Future[_Outcome] | None:
        """Queue one verification for the pool, or ``None`` when the pool is full.

        Threads start on demand, up to ``verification_threads``, and end as soon as the
        queue is empty: an idle middleware holds no thread, and a forked worker process
        (whose parent's threads did not survive the fork) starts afresh.
        """
        future: Future[_Outcome] = Future()
        start = False
        with self._lock:
            if self._pool_pid != os.getpid():
                self._pool_pid = os.getpid()
                self._queue.clear()
                self._inflight = self._running = 0
            if self._inflight >= self._max_inflight:
                return None
            self._inflight += 1
            self._queue.append((future, presented, mode, route))
            if self._running < self._threads:
                self._running += 1
                start = True
        future.add_done_callback(self._release)
        if start:
            try:
                threading.Thread(target=self._work, name="mtlsauth-verify", daemon=True).start()
            except RuntimeError:  # no thread can start (interpreter shutting down)
                with self._lock:
                    self._running -= 1
                future.cancel()
                return None
        return future

    def _work(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._running -= 1
                    return
                future, presented, mode, route = self._queue.popleft()
            if future.set_running_or_notify_cancel():  # False: its request went away
                future.set_result(self._outcome(presented, mode, route))

    def _release(self, _future: object) -> None:
        with self._lock:
            self._inflight -= 1

    @property
    def verifications_waiting(self) -> int:
        """Verifications running or queued on the pool right now (for metrics)."""
        return self._inflight

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
    ) -> Decision:
        # Timing and the cache outcome only for verifications that ran (not for a missing
        # certificate, an untrusted forwarder, a busy pool).
        checked = elapsed is not None and (
            identity is not None or (error is not None and error.code not in _UNCHECKED)
        )
        names: tuple[str | None, str | None] = (None, None)
        log_hint: str | None = None
        if identity is not None:
            fingerprint: str | None = identity.fingerprint_sha256
        elif error is not None:
            fingerprint, names, ders = _refused_leaf(presented, self.forwarded)
            error = _with_hint(error, presented, self.forwarded)
            if error.code == "untrusted_issuer" and ders:
                log_hint = self.verifier._untrusted_issuer_hint(ders)
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
        self._report(decision, names, log_hint)
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

    def _report(
        self,
        decision: Decision,
        names: tuple[str | None, str | None] = (None, None),
        hint: str | None = None,
    ) -> None:
        error = decision.error
        if error is None:
            if logger.isEnabledFor(logging.DEBUG):
                fields = {
                    "outcome": "allowed",
                    "code": decision.code,
                    "peer": decision.peer,
                    "fingerprint": decision.fingerprint,
                    "path": decision.path,
                    "method": decision.method,
                    "mode": decision.mode,
                    "status": None,
                }
                logger.debug(
                    "mtlsauth allowed code=%s peer=%s fingerprint=%s method=%s path=%s mode=%s",
                    decision.code,
                    escape_log_value(decision.peer or "-"),
                    decision.fingerprint or "-",
                    escape_log_value(decision.method),
                    escape_log_value(decision.path),
                    decision.mode,
                    extra={"mtlsauth": fields},
                )
        else:
            self._log_refusal(decision, error, names, hint)
        hook = self.on_decision
        if hook is not None:
            try:
                hook(decision)
            except Exception:
                logger.error("mtlsauth on_decision hook raised", exc_info=True)

    def _log_refusal(
        self,
        decision: Decision,
        error: MTLSAuthError,
        names: tuple[str | None, str | None],
        hint: str | None,
    ) -> None:
        """One WARNING line per refusal (ERROR for a 500), rate-limited per code and
        fingerprint. Every field is escaped; never a certificate or a header value."""
        level = logging.ERROR if error.status >= 500 else logging.WARNING
        if not logger.isEnabledFor(level):
            return
        admitted, repeats, dropped = self._log_limiter.admit(error.code, decision.fingerprint)
        if not admitted:
            return
        subject, issuer = names

        def safe(value: str | None, limit: int = 256) -> str | None:
            return None if value is None else escape_log_value(value, limit)

        # Escaped here too: a formatter may print the dict as it is.
        fields: dict[str, object] = {
            "outcome": "denied",
            "code": error.code,
            "status": error.status,
            "detail": safe(error.detail, 512),
            "peer": safe(decision.peer),
            "method": safe(decision.method, 16),
            "path": safe(decision.path),
            "mode": decision.mode,
            "subject": safe(subject),
            "issuer": safe(issuer),
            "fingerprint": decision.fingerprint,
            "hint": safe(hint, 512),
            "suppressed": repeats,
        }
        if dropped:
            logger.warning(
                "mtlsauth: %d refusal log lines were dropped in the last minute (flood)", dropped
            )
        logger.log(
            level,
            "mtlsauth refused code=%s status=%d peer=%s method=%s path=%s subject=%s "
            "issuer=%s fingerprint=%s detail=%s%s%s",
            error.code,
            error.status,
            escape_log_value(decision.peer or "-"),
            escape_log_value(decision.method, 16),
            escape_log_value(decision.path),
            escape_log_value(subject) if subject is not None else "-",
            escape_log_value(issuer) if issuer is not None else "-",
            decision.fingerprint or "-",
            escape_log_value(error.detail, 512),
            f" hint={escape_log_value(hint, 512)}" if hint else "",
            f" (and {repeats} more like it since the last line)" if repeats else "",
            extra={"mtlsauth": fields},
        )

    def __repr__(self) -> str:
        return (
            f"<Guard mode={self.mode} routes={len(self.routes)} "
            f"exempt={len(self._exempt_exact) + len(self._exempt_prefixes)}>"
        )
