"""JWT access-token validation for ``TokenCheck`` (install the ``oauth`` extra: PyJWT).

``JWTValidator`` checks a JWT access token (RFC 9068 profile) the way a resource server
must: the signature against the authorization server's JWK Set, with an allow-list of
asymmetric algorithms, each tied to the key type it needs (no ``alg: none``, no HMAC, so
no "HS256 with the RSA public key as secret"); ``iss`` exactly; ``aud``; ``exp`` and
``nbf`` with a bounded leeway. ``JWKS`` holds the keys: from a document, a file or an
HTTPS URL, cached, refreshed when a token names an unknown ``kid`` (at most once per
``min_refresh_interval``), fetched with a hard deadline and a size cap, never following
a redirect.

Example:
    >>> from mtlsauth import TokenCheck
    >>> from mtlsauth.oauth_jwt import JWKS, JWTValidator
    >>> validator = JWTValidator(
    ...     jwks=JWKS.from_document({"keys": []}),
    ...     issuer="https://as.example",
    ...     audience="https://api.example",
    ... )
    >>> check = TokenCheck(validator)   # bound to the certificate (cnf) by default
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import Any

try:
    import jwt
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError("mtlsauth.oauth_jwt needs PyJWT: pip install 'mtlsauth[oauth]'") from exc

from mtlsauth._jwks import ALGORITHMS, JWKS
from mtlsauth._logfields import RefusalLogLimiter, limited_log
from mtlsauth._oauth import TokenError

__all__ = ["ALGORITHMS", "JWKS", "JWTValidator"]

logger = logging.getLogger("mtlsauth")


class JWTValidator:
    """Validate a JWT access token; use it as ``TokenCheck(validate=JWTValidator(...))``.

    Args:
        jwks: The authorization server's keys.
        issuer: The exact ``iss`` value required.
        audience: The ``aud`` value (or values) this resource server answers to; the token
            must name one of them.
        algorithms: Allowed signature algorithms, a subset of ``ALGORITHMS`` (default
            RS256, PS256, ES256, EdDSA). The token's ``alg`` must be one of them *and* match
            the key's type and curve, and the key's own ``alg`` when it declares one.
        leeway: Seconds of clock skew for ``exp``, ``nbf`` and ``iat`` (at most 300).
        typ: When set (e.g. ``"at+jwt"``, RFC 9068), the header's ``typ`` must equal it
            (case-insensitively, with or without ``application/``). RFC 9068 section 4
            asks resource servers to require ``at+jwt``; it is off by default because many
            authorization servers send ``JWT`` or no ``typ``: set it when yours sends it.
        required_claims: Claims that must be present besides ``exp``, ``iss`` and ``aud``,
            which always must (RFC 9068 section 4): naming others (``sub``, ``jti``) adds
            them, it never drops those three.

    Raises:
        TypeError, ValueError: on a bad setting (an HMAC or ``none`` algorithm included).

    Security note: tokens with a ``crit`` header are refused (no extension is understood),
    and keys embedded in the token (``jwk``, ``jku``, ``x5u``, ``x5c``) are never used.
    """

    __slots__ = (
        "_algorithms",
        "_audience",
        "_log_limiter",
        "_required",
        "issuer",
        "jwks",
        "leeway",
        "typ",
    )

    def __init__(
        self,
        *,
        jwks: JWKS,
        issuer: str,
        audience: str | Iterable[str],
        algorithms: Iterable[str] = ("RS256", "PS256", "ES256", "EdDSA"),
        leeway: float = 60.0,
        typ: str | None = None,
        required_claims: Iterable[str] = ("exp", "iss", "aud"),
    ) -> None:
        if not isinstance(jwks, JWKS):
            raise TypeError("jwks must be a mtlsauth.oauth_jwt.JWKS")
        if not isinstance(issuer, str) or not issuer:
            raise ValueError("issuer must be a non-empty string")
        audiences = [audience] if isinstance(audience, str) else list(audience)
        if not audiences or not all(isinstance(a, str) and a for a in audiences):
            raise ValueError("audience must be a non-empty string or strings")
        if isinstance(algorithms, str):
            raise TypeError("algorithms must be a collection, e.g. ('ES256',)")
        algs = tuple(algorithms)
        bad = [a for a in algs if a not in ALGORITHMS]
        if bad or not algs:
            raise ValueError(
                f"algorithms {bad or algs!r} not allowed: choose from {', '.join(ALGORITHMS)}"
            )
        if (
            isinstance(leeway, bool)
            or not isinstance(leeway, int | float)
            or not 0 <= leeway <= 300
        ):
            raise ValueError("leeway must be between 0 and 300 seconds")
        if typ is not None and (not isinstance(typ, str) or not typ):
            raise ValueError("typ must be a non-empty string or None")
        if isinstance(required_claims, str):
            raise TypeError("required_claims must be a collection, e.g. ('exp', 'iss', 'aud')")
        extra = tuple(required_claims)
        if not all(isinstance(c, str) and c for c in extra):
            raise ValueError("required_claims must hold claim names (non-empty strings)")
        required = tuple(dict.fromkeys((*_ALWAYS_REQUIRED, *extra)))
        self.jwks = jwks
        self.issuer = issuer
        self._audience = tuple(audiences)
        self._algorithms = frozenset(algs)
        self.leeway = float(leeway)
        self.typ = _media_type(typ) if typ is not None else None
        self._required = required
        self._log_limiter = RefusalLogLimiter()  # one line a minute per reason

    @property
    def may_block(self) -> bool:
        """True when validating may fetch keys over the network."""
        return self.jwks.may_block

    def __call__(self, token: str) -> dict[str, Any]:
        """The token's claims; raises ``TokenError`` (``token_invalid``) otherwise."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenError("the token is not a JWT", code="token_invalid") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise TokenError("the token's algorithm is not allowed", code="token_invalid")
        if "crit" in header:
            raise TokenError("the token has critical header parameters", code="token_invalid")
        if self.typ is not None:
            typ = header.get("typ")
            if not isinstance(typ, str) or _media_type(typ) != self.typ:
                raise TokenError("the token has the wrong type", code="token_invalid")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise TokenError("the token's kid is malformed", code="token_invalid")
        keys = self.jwks.keys_for(kid, alg)
        if not keys:
            raise TokenError("no key of the issuer matches the token", code="token_invalid")
        last: Exception | None = None
        for key in keys:
            try:
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=[alg],
                    audience=self._audience,
                    issuer=self.issuer,
                    leeway=self.leeway,
                    options={"require": list(self._required), "verify_signature": True},
                )
            except jwt.InvalidSignatureError as exc:
                last = exc
                continue
            except (jwt.PyJWTError, OverflowError, ValueError, TypeError) as exc:
                # PyJWT 2.10 lets OverflowError out of an infinite exp or iat.
                self._refused(type(exc).__name__)
                raise TokenError("the token is invalid", code="token_invalid") from None
            # Exact comparison again (PyJWT 2.10.0 compared iss as a substring).
            if claims.get("iss") != self.issuer:
                raise TokenError("the token's issuer is not accepted", code="token_invalid")
            # NumericDate is a JSON number (RFC 7519 2); PyJWT reads these with int(), which
            # takes true, false and digit strings ("nbf": "0" passed as 0).
            for name in _NUMERIC_DATES:
                if name in claims and not _is_numeric_date(claims[name]):
                    raise TokenError(f"the token's {name} is not a number", code="token_invalid")
            return claims
        self._refused(type(last).__name__)
        raise TokenError("the token's signature is invalid", code="token_invalid")

    def _refused(self, reason: str) -> None:
        limited_log(
            logger,
            self._log_limiter,
            logging.INFO,
            ("jwt", reason),
            "mtlsauth JWT refused: %s",
            reason,
        )

    def __repr__(self) -> str:
        return f"<JWTValidator issuer={self.issuer!r} jwks={self.jwks.source!r}>"


_NUMERIC_DATES = ("exp", "nbf", "iat")
# RFC 9068 section 4: a resource server checks these on every JWT access token.
_ALWAYS_REQUIRED = ("exp", "iss", "aud")


def _is_numeric_date(value: object) -> bool:
    # math.isfinite raises OverflowError for an integer beyond a float's range.
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _media_type(value: str) -> str:
    value = value.lower()
    return value[len("application/") :] if value.startswith("application/") else value
