"""Route rules, modes and path patterns, and the check for request targets with two readings."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from mtlsauth._oauth import TokenCheck
from mtlsauth._policy._policy import Policy

__all__ = ["MODES", "Mode", "Route", "path_ambiguity"]

Mode = Literal["mandatory", "optional", "off"]
MODES: frozenset[str] = frozenset({"mandatory", "optional", "off"})


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
    """Return (kind, text) for an exact or trailing-``*`` prefix pattern.

    A pattern that no routable path can match is refused: it would leave the paths it was
    written for under the default mode and policy, silently. Patterns match the decoded
    path the router sees, so a percent-escape, a query or fragment, and whatever
    ``path_ambiguity`` refuses in a request (a dot or empty segment, ``\\``, ``;``, a
    control character) can never be part of one.
    """
    if not isinstance(pattern, str):
        raise TypeError(
            f"{what} must be a str path or a compiled regex, not {type(pattern).__name__}"
        )
    if not pattern.startswith("/"):
        raise ValueError(f"{what} {pattern!r} must start with '/'")
    star = pattern.find("*")
    if star == -1:
        kind, text = "exact", pattern
    elif star != len(pattern) - 1:
        raise ValueError(f"{what} {pattern!r}: '*' is only allowed at the end (use a regex)")
    else:
        kind, text = "prefix", pattern[:-1]
    if any(c in text for c in "%?#"):
        raise ValueError(
            f"{what} {pattern!r} can never match: patterns match the decoded path the router "
            "sees, without a query or fragment (write '/café', not '/caf%C3%A9')"
        )
    # A prefix may end inside a segment ('/static/.*' covers '/static/.well-known').
    if _AMBIGUOUS_DECODED.search(text + ("x" if kind == "prefix" else "")) is not None:
        raise ValueError(
            f"{what} {pattern!r} can never match: a request path holding a dot or empty "
            "segment, '\\', ';' or a control character is refused as ambiguous"
        )
    return kind, text


# RFC 9110 lets a method be any token; every registered one (and WebDAV's, UPnP's M-SEARCH)
# is letters with '-' or '_'. Other token characters ('|', '+', '.', ...) in a rule are a
# list written as one name, far likelier than a method that uses them.
_METHOD = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


def _method_name(method: object) -> str:
    if not isinstance(method, str) or not method:
        raise ValueError("Route methods must be non-empty method names")
    if method == "*":
        raise ValueError("Route methods: '*' is no method; leave methods out to cover every one")
    if _METHOD.fullmatch(method) is None:
        raise ValueError(
            f"Route methods: {method!r} is not a method name; list each method separately, "
            "e.g. methods=['GET', 'POST'] (a rule naming no real method would never apply)"
        )
    return method.upper()


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
            allow-lists (``None``: the Verifier's policy). The Verifier policy's deny-lists
            still apply: a deny-listed certificate is refused on every route. Refused
            where the route's mode is ``"off"`` (no certificate is checked there).
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
    path is configured. A pattern covers only the spellings written in it: when the app
    routes several to one handler (``/payments`` and ``/payments/1``, a trailing slash
    made optional, a case-insensitive regex), a rule that tightens must cover all of them
    (``"/payments*"``, ``re.compile(r"^/admin(/|$)")``), or the others get the default.
    """

    pattern: str | re.Pattern[str]
    methods: frozenset[str] | None = None
    mode: Mode | None = None
    policy: Policy | None = None
    token: TokenCheck | None = None
    _kind: str = field(default="", init=False, repr=False, compare=False)
    _text: str = field(default="", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
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
            if not methods:
                raise ValueError("Route methods must be non-empty method names")
            object.__setattr__(self, "methods", frozenset(_method_name(m) for m in methods))
        if self.mode is not None:
            _validate_mode(self.mode, "Route mode")
        if self.policy is not None and not isinstance(self.policy, Policy):
            raise TypeError("Route policy must be a Policy")
        if self.policy is not None and self.mode == "off":
            raise ValueError(_OFF_POLICY.format(pattern=self.pattern, where="its mode"))
        if self.token is not None and not isinstance(self.token, TokenCheck):
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


_OFF_POLICY = (
    'route {pattern!r} has a policy, but {where} is "off": no certificate is checked '
    'there, so the policy would never apply; use mode "optional" or "mandatory", or '
    "drop the policy"
)


def inert_route_policy(routes: Sequence[Route], mode: str) -> tuple[int, str] | None:
    """The first route (index from 0, and why) whose policy never applies: it has no mode
    of its own and the middleware's ``mode`` is ``"off"``."""
    for index, route in enumerate(routes):
        if route.policy is not None and route.mode is None and mode == "off":
            where = "the middleware's mode (which the route keeps)"
            return index, _OFF_POLICY.format(pattern=route.pattern, where=where)
    return None


def _covers_methods(first: frozenset[str] | None, later: frozenset[str] | None) -> bool:
    """Whether every method ``later`` covers is covered by ``first`` (GET covers HEAD)."""
    if first is None:
        return True
    if later is None:
        return False
    return later <= (first | {"HEAD"} if "GET" in first else first)


def _covers_path(kind: str, text: str, later_kind: str, later_text: str) -> bool:
    """Whether a path pattern (exact or prefix) matches every path ``later`` matches."""
    if kind == "exact":
        return later_kind == "exact" and later_text == text
    return kind == "prefix" and later_kind in ("exact", "prefix") and later_text.startswith(text)


def unreachable_route(
    routes: Sequence[Route], exempt: Iterable[tuple[str, str]]
) -> tuple[int, str] | None:
    """The first route (index from 0, and why) that no request reaches: every path and
    method it covers is exempt (exempt paths are looked at first) or is taken by an
    earlier route (the first that matches wins). Such a rule is never applied, and the
    requests it was written for get the exempt path's "off" or the earlier rule's mode and
    policy: ``Route("/api/admin/*", policy=admins)`` after ``Route("/api/*",
    mode="optional")`` leaves the admin paths optional. Regex rules are not compared."""
    exempt = tuple(exempt)
    for index, route in enumerate(routes):
        kind, text = route._kind, route._text
        if kind == "regex":
            continue
        for e_kind, e_text in exempt:
            if _covers_path(e_kind, e_text, kind, text):
                shown = e_text + ("*" if e_kind == "prefix" else "")
                return index, (
                    f"route {route.pattern!r} is never applied: the exempt path {shown!r} "
                    "covers every path it matches, and exempt paths are looked at first"
                )
        for earlier in routes[:index]:
            if _covers_methods(earlier.methods, route.methods) and _covers_path(
                earlier._kind, earlier._text, kind, text
            ):
                return index, (
                    f"route {route.pattern!r} is never applied: the earlier route "
                    f"{earlier.pattern!r} matches every request it does, and the first "
                    "matching route wins (put the more specific route first)"
                )
    return None
