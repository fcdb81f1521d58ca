"""OAuth 2.0 on mutual TLS, resource-server side: certificate-bound bearer tokens (RFC 8705).

Framework-free. An adapter hands ``TokenCheck.check`` (or ``acheck``) the identity the
request authenticated with and the raw ``Authorization`` header values; the check returns
the token's claims, ``None`` (no token where one is optional), or raises ``TokenError``.

The binding is computed from the certificate mtlsauth verified for *this* request (the TLS
peer, or a trusted proxy's header), never from anything else the client sends. A
proxy-verified identity (``verified_by == "proxy"``) has no certificate: no binding can be
checked against it, so a bound token is refused with it.

Why one module of this size: ``TokenCheck`` and its RFC 6750/8705 rules are one protocol, shared
by every adapter.
"""

from __future__ import annotations

import copy
import hmac
import inspect
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from mtlsauth._errors import IdentityMissing, MTLSAuthError, VerificationBusy
from mtlsauth._identity import certificate_thumbprint, parse_x5t_s256
from mtlsauth._logfields import RefusalLogLimiter, limited_log
from mtlsauth._pool import BoundedPool
from mtlsauth._reload import NO_WAIT, WouldBlock

if TYPE_CHECKING:
    from mtlsauth._identity import ClientIdentity

__all__ = [
    "MAX_TOKEN_LENGTH",
    "TOKEN_KEY",
    "Claims",
    "TokenCheck",
    "TokenError",
    "bearer_token",
    "certificate_thumbprint",
    "parse_x5t_s256",
]

logger = logging.getLogger("mtlsauth")

TOKEN_KEY = "mtlsauth.token"  # noqa: S105 - a key name, not a secret
"""Where adapters keep the validated claims (``scope``, ``environ``, aiohttp request)."""

TOKEN_CHECK_ATTRIBUTE = "mtlsauth_token_check"  # noqa: S105 - an attribute name
"""The attribute of a ``require_token`` dependency holding its ``TokenCheck`` (read by
``document_mutual_tls`` to declare the bearer requirement in OpenAPI)."""

MAX_TOKEN_LENGTH = 16384
"""Longer bearer tokens are refused before any validator sees them."""

Claims = Mapping[str, Any]
Validator = Callable[[str], "Claims | Awaitable[Claims]"]


class TokenError(MTLSAuthError):
    """A bearer-token refusal (RFC 6750 section 3), with its own status per code.

    ====================== ====== ===================== ===========================================
    code                   status RFC 6750 ``error``    meaning
    ====================== ====== ===================== ===========================================
    token_missing          401    (none)                no bearer token where one is required
    token_invalid          401    invalid_token         the validator refused it, expired, inactive
    token_not_bound        401    invalid_token         no ``cnf`` where a bound token is required
    token_binding_mismatch 401    invalid_token         bound to another certificate, or to none
                                                        this request authenticated with
    token_request_invalid  400    invalid_request       malformed or repeated ``Authorization``
    insufficient_scope     403    insufficient_scope    a required scope is missing
    ====================== ====== ===================== ===========================================

    Attributes:
        challenge: The ``WWW-Authenticate`` value (``Bearer ...``) the response carries.
        bearer_error: The RFC 6750 ``error`` value, or ``None`` for ``token_missing``.
    """

    default_code = "token_invalid"
    codes: ClassVar[frozenset[str]] = frozenset(
        {
            "token_missing",
            "token_invalid",
            "token_not_bound",
            "token_binding_mismatch",
            "token_request_invalid",
            "insufficient_scope",
        }
    )
    title = "Bearer token refused"
    _STATUS: ClassVar[dict[str, int]] = {"token_request_invalid": 400, "insufficient_scope": 403}
    _ERROR: ClassVar[dict[str, str | None]] = {
        "token_missing": None,
        "token_request_invalid": "invalid_request",
        "insufficient_scope": "insufficient_scope",
    }
    # error_description is a quoted-string limited to %x20-21 / %x23-5B / %x5D-7E (RFC 6750
    # section 3): fixed texts, never anything derived from the request.
    _DESCRIPTION: ClassVar[dict[str, str]] = {
        "token_invalid": "The access token is invalid",
        "token_not_bound": "The access token is not bound to a client certificate",
        "token_binding_mismatch": "The access token is not bound to this client certificate",
        "token_request_invalid": "Malformed Authorization header",
        "insufficient_scope": "The access token lacks a required scope",
    }

    def __init__(self, detail: str = "", *, code: str | None = None, scope: str = "") -> None:
        super().__init__(detail, code=code)
        self.status = self._STATUS.get(self.code, 401)
        self.bearer_error: str | None = self._ERROR.get(self.code, "invalid_token")
        self.required_scope = scope

    @property
    def challenge(self) -> str:
        parts = []
        if self.bearer_error is not None:
            parts.append(f'error="{self.bearer_error}"')
            parts.append(f'error_description="{self._DESCRIPTION[self.code]}"')
        # RFC 6750 section 3: scope = scope-token *( SP scope-token ). A scope given to a
        # validator's own TokenError that is anything else (a quote would end the
        # quoted-string and start an attribute of its own) is left out, the refusal kept.
        scope = self.required_scope
        if isinstance(scope, str) and _SCOPE_VALUE.fullmatch(scope):
            parts.append(f'scope="{scope}"')
        return "Bearer " + ", ".join(parts) if parts else "Bearer"


# RFC 6750 section 2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def bearer_token(authorization: Sequence[str]) -> str | None:
    """The bearer token of a request, from its ``Authorization`` header values.

    Only the header is read (RFC 6750 section 2.1); tokens in the query or the body are
    never looked at. Another scheme (``Basic``, ``DPoP``) means "no bearer token".

    Raises:
        TokenError: ``token_request_invalid`` for several ``Authorization`` headers (a WSGI
            server's comma-joined copies included, whichever scheme comes first) or
            malformed ``Bearer`` credentials;
            ``token_invalid`` for a token longer than ``MAX_TOKEN_LENGTH``.
    """
    if not authorization:
        return None
    if len(authorization) != 1:
        raise TokenError("several Authorization headers", code="token_request_invalid")
    value = authorization[0]
    if not isinstance(value, str):
        raise TokenError("unreadable Authorization header", code="token_request_invalid")
    scheme, _, credentials = value.strip(" ").partition(" ")
    if scheme.lower() != "bearer":
        # Another scheme, unless some other parser would read a bearer token here: str.split()
        # splits on tabs, NBSP and other Unicode spaces, and a WSGI server folds two headers
        # into one with ", " ("Basic x, Bearer y", refused as two headers elsewhere). Such a
        # header is refused, never skipped, so an app cannot act on a token that was not
        # validated.
        for part in value.split(","):
            words = part.split(None, 1)
            if words and words[0].lower() == "bearer":
                raise TokenError("malformed Bearer credentials", code="token_request_invalid")
        return None
    token = credentials.lstrip(" ")
    if len(token) > MAX_TOKEN_LENGTH:
        raise TokenError("the bearer token is too long", code="token_invalid")
    if not token or _B64TOKEN.fullmatch(token) is None:
        raise TokenError("malformed Bearer credentials", code="token_request_invalid")
    return token


Binding = Literal["required", "if_present"]

_WOULD_BLOCK = object()  # a validation that must move off the event loop (see _acheck)


@dataclass(frozen=True, slots=True)
class TokenCheck:
    """What a route requires of the bearer token, and how to validate one.

    Args:
        validate: ``validate(token) -> claims``: a JWT validator (``mtlsauth.oauth_jwt``),
            an RFC 7662 introspection call, or any callable returning the claims as a
            mapping (or an awaitable of one, in ASGI and aiohttp). To refuse, it raises:
            any exception means ``token_invalid`` (raise ``TokenError`` to pick a code).
        required: True (default): a request without a bearer token is refused
            (``token_missing``). False: no token is fine (the route relies on the
            certificate alone), but a token that *is* sent must pass every check.
        binding: ``"required"`` (default): the token must carry ``cnf`` with ``x5t#S256``
            equal to the thumbprint of the certificate the request authenticated with
            (``token_not_bound`` without one). ``"if_present"``: unbound tokens are
            accepted; a bound one must still match. A ``cnf`` this check cannot confirm
            (DPoP's ``jkt``, or any member besides ``x5t#S256``) is refused either way.
        scopes: Scopes the token's ``scope`` claim must all contain (``insufficient_scope``).
        leeway: Seconds of clock skew for the ``exp`` and ``nbf`` claims, which are checked
            here too when present (introspection responses carry them as well).
        blocking: Run ``validate`` in a worker thread under ASGI and aiohttp (network
            introspection, JWKS fetching). ``None`` (default): the validator's own
            ``may_block`` attribute, else False.
        threads, queue: The check's own pool for blocking validators: at most ``threads``
            run at once and ``queue`` more wait; one more is refused at once with
            ``VerificationBusy`` (503 ``verification_busy``, ``Retry-After: 1``). Never
            asyncio's shared default executor, which a hung authorization server would
            otherwise fill for the whole application (name resolution included).

    Raises:
        TypeError, ValueError: on a bad setting.

    Security note: claims with ``"active"`` (RFC 7662) are accepted only when it is
    exactly ``true``. A validator that returns claims for a token it did not verify makes
    every check here meaningless: the binding proves who *holds* a token, not that it is
    genuine.
    """

    validate: Validator
    required: bool = True
    binding: Binding = "required"
    scopes: frozenset[str] = frozenset()
    leeway: float = 60.0
    blocking: bool | None = None
    threads: int = 8
    queue: int = 64
    _scope_text: str = field(default="", init=False, repr=False, compare=False)
    _pool: BoundedPool | None = field(default=None, init=False, repr=False, compare=False)
    _spill: BoundedPool | None = field(default=None, init=False, repr=False, compare=False)
    _log_limiter: RefusalLogLimiter = field(
        default_factory=RefusalLogLimiter, init=False, repr=False, compare=False
    )
    _refuse_on_error: _RefuseOnValidatorError | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if not callable(self.validate):
            raise TypeError("validate must be callable: validate(token) -> claims")
        if not isinstance(self.required, bool):
            raise TypeError("required must be True or False")
        if self.binding not in ("required", "if_present"):
            raise ValueError(f"binding must be 'required' or 'if_present', not {self.binding!r}")
        scopes: Iterable[object] = self.scopes
        if isinstance(scopes, str | bytes) or not isinstance(scopes, Iterable):
            raise TypeError("scopes must be a collection of scope names, e.g. {'accounts'}")
        names: set[str] = set()
        for s in scopes:
            if not isinstance(s, str) or not _SCOPE_TOKEN.fullmatch(s):
                raise ValueError(f"scope {s!r} is not a valid scope token (RFC 6749 3.3)")
            names.add(s)
        object.__setattr__(self, "scopes", frozenset(names))
        object.__setattr__(self, "_scope_text", " ".join(sorted(names)))
        if isinstance(self.leeway, bool) or not isinstance(self.leeway, int | float):
            raise TypeError("leeway must be a number of seconds")
        if not 0 <= self.leeway <= 600:
            raise ValueError("leeway must be between 0 and 600 seconds")
        if self.blocking is None:
            object.__setattr__(
                self, "blocking", bool(getattr(self.validate, "may_block", False) is True)
            )
        elif not isinstance(self.blocking, bool):
            raise TypeError("blocking must be True, False or None")
        for value, what, low in ((self.threads, "threads", 1), (self.queue, "queue", 0)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{what} must be an int")
            if not low <= value <= 1024:
                raise ValueError(f"{what} must be between {low} and 1024")
        if self.blocking:
            object.__setattr__(self, "_pool", BoundedPool(self.threads, self.queue))
        object.__setattr__(self, "_refuse_on_error", _RefuseOnValidatorError(self._log_limiter))

    # -- per request ------------------------------------------------------------------------
    def _refusing(self) -> _RefuseOnValidatorError:
        guard = self._refuse_on_error
        assert guard is not None  # set in __post_init__
        return guard

    def check(self, identity: ClientIdentity | None, authorization: Sequence[str]) -> Claims | None:
        """Validate the request's token synchronously (WSGI). Raises ``TokenError``."""
        try:
            return self._check(identity, authorization)
        except MTLSAuthError as exc:
            _log_refusal(exc, identity, self._log_limiter)
            raise

    async def acheck(
        self, identity: ClientIdentity | None, authorization: Sequence[str]
    ) -> Claims | None:
        """Validate the request's token (ASGI, aiohttp). Raises ``TokenError``."""
        try:
            return await self._acheck(identity, authorization)
        except MTLSAuthError as exc:
            _log_refusal(exc, identity, self._log_limiter)
            raise

    def _check(
        self, identity: ClientIdentity | None, authorization: Sequence[str]
    ) -> Claims | None:
        token = self._token(authorization)
        if token is None:
            return None
        with self._refusing():
            result = self.validate(token)
        if inspect.isawaitable(result):
            if inspect.iscoroutine(result):
                result.close()
            limited_log(
                logger,
                self._log_limiter,
                logging.ERROR,
                ("validator", "awaitable"),
                "mtlsauth token validator returned an awaitable in a synchronous app",
            )
            raise TokenError("the token could not be validated", code="token_invalid")
        return self.confirm(result, identity)

    async def _acheck(
        self, identity: ClientIdentity | None, authorization: Sequence[str]
    ) -> Claims | None:
        token = self._token(authorization)
        if token is None:
            return None
        with self._refusing():
            if self._pool is not None:
                result = await self._in_pool(self._pool, token)
            else:
                # On the event loop: what would block here (a JWKS file due for a reload)
                # raises WouldBlock instead, and the validation moves to a worker thread.
                reset = NO_WAIT.set(True)
                try:
                    result = self.validate(token)
                except WouldBlock:
                    # Not ``None`` for this: a validator may return that (no claims), and
                    # must not be asked again for it.
                    result = _WOULD_BLOCK
                finally:
                    NO_WAIT.reset(reset)
                if result is _WOULD_BLOCK:
                    result = await self._in_pool(self._spill_pool(), token)
            if inspect.isawaitable(result):
                result = await result
        return self.confirm(result, identity)

    def _spill_pool(self) -> BoundedPool:
        """The pool a validation that would block on the loop moves to (made on first use)."""
        pool = self._spill
        if pool is None:
            pool = BoundedPool(self.threads, self.queue)
            object.__setattr__(self, "_spill", pool)
        return pool

    async def _in_pool(self, pool: BoundedPool, token: str) -> object:
        """``validate(token)`` on the check's own bounded pool; its exception re-raised."""
        import asyncio

        validate = self.validate

        def job() -> tuple[bool, object]:
            try:
                return True, validate(token)
            except Exception as exc:  # noqa: BLE001 - handed back to the request's task
                return False, exc

        future = pool.submit(job)
        if future is None:
            raise VerificationBusy("too many token validations are waiting")
        ok, outcome = await asyncio.wrap_future(future)
        if not ok:
            assert isinstance(outcome, Exception)
            raise outcome
        return outcome

    def _token(self, authorization: Sequence[str]) -> str | None:
        token = bearer_token(authorization)
        if token is None and self.required:
            raise TokenError("this endpoint requires a bearer token", code="token_missing")
        return token

    def confirm(self, claims: object, identity: ClientIdentity | None) -> Claims:
        """Every check after the validator: activity, time, binding, scopes.

        Raises:
            TokenError: always the refusal, even for claims that fail when read.
        """
        try:
            return self._confirm(claims, identity)
        except MTLSAuthError:
            raise
        except Exception as exc:  # noqa: BLE001 - unreadable claims refuse the token
            name = type(exc).__name__
            limited_log(
                logger,
                self._log_limiter,
                logging.ERROR,
                ("claims", name),
                "mtlsauth token claims could not be read: %s",
                name,
            )
            raise TokenError("the token could not be validated", code="token_invalid") from None

    def _confirm(self, claims: object, identity: ClientIdentity | None) -> Claims:
        if not isinstance(claims, Mapping):
            name = type(claims).__name__
            limited_log(
                logger,
                self._log_limiter,
                logging.ERROR,
                ("not claims", name),
                "mtlsauth token validator returned %s, not claims",
                name,
            )
            raise TokenError("the token could not be validated", code="token_invalid")
        if "active" in claims and claims["active"] is not True:
            raise TokenError("the token is not active", code="token_invalid")
        now = time.time()
        exp, nbf = claims.get("exp"), claims.get("nbf")
        # RFC 7519 4.1.4: not "on or after" exp; 4.1.5: "on or after" nbf is fine.
        if exp is not None and (not _is_number(exp) or now >= exp + self.leeway):
            raise TokenError("the token has expired", code="token_invalid")
        if nbf is not None and (not _is_number(nbf) or now < nbf - self.leeway):
            raise TokenError("the token is not valid yet", code="token_invalid")
        self._confirm_binding(claims.get("cnf", _ABSENT), identity)
        if self.scopes:
            granted = claims.get("scope")
            have = set(granted.split(" ")) if isinstance(granted, str) else set()
            if not self.scopes <= have:
                raise TokenError(
                    "the token lacks a required scope",
                    code="insufficient_scope",
                    scope=self._scope_text,
                )
        # The application gets its own copy: a validator that caches its answers (an
        # introspection cache) hands every request the same mapping, and an application
        # that changed it (``claims.pop("cnf")``, a scope added) would change what the
        # next request with that token is checked against. Claims that cannot be copied
        # (a lock inside, say) are handed over as they are, as hooks go without them.
        try:
            own: Claims = _own_copy(claims)
        except Exception:  # noqa: BLE001 - the token passed; only the copy is not possible
            return claims
        return own

    def _confirm_binding(self, cnf: object, identity: ClientIdentity | None) -> None:
        if cnf is _ABSENT:
            if self.binding == "required":
                raise TokenError(
                    "the token is not bound to a client certificate", code="token_not_bound"
                )
            return
        if not isinstance(cnf, Mapping):
            raise TokenError("the token's cnf claim is malformed", code="token_invalid")
        if set(cnf) != {"x5t#S256"}:
            # No certificate thumbprint, or other confirmation methods next to it (DPoP's
            # jkt, a jwk): confirming only what we can check would drop the issuer's other
            # proof, and ignoring the cnf would make a bound token a bearer token.
            raise TokenError(
                "the token is bound by a method this server does not check",
                code="token_binding_mismatch",
            )
        try:
            theirs = parse_x5t_s256(cnf["x5t#S256"])
        except ValueError:
            raise TokenError("the token's x5t#S256 is malformed", code="token_invalid") from None
        mine = certificate_thumbprint(identity)
        if mine is None:
            raise TokenError(
                "the token is bound to a certificate, but this request authenticated with none",
                code="token_binding_mismatch",
            )
        if not hmac.compare_digest(mine, theirs):
            raise TokenError(
                "the token is bound to another certificate", code="token_binding_mismatch"
            )


_ABSENT: Any = object()
_ATOMS = frozenset({str, int, float, bool, type(None)})


def _own_copy(value: Any) -> Any:
    """A deep copy of claims: JSON's shapes copied directly (a few µs), anything else by
    ``copy.deepcopy`` (which raises for what cannot be copied)."""
    kind = type(value)
    if kind is dict:
        return {key: _own_copy(item) for key, item in value.items()}
    if kind is list:
        return [_own_copy(item) for item in value]
    if kind in _ATOMS:
        return value
    return copy.deepcopy(value)


_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5B\x5D-\x7E]+")
_SCOPE_VALUE = re.compile(r"[\x21\x23-\x5B\x5D-\x7E]+(?: [\x21\x23-\x5B\x5D-\x7E]+)*")


def _is_number(value: object) -> bool:
    """A JSON number usable as a time: not a boolean, finite, and within a float's range
    (an integer of 400 digits is a number, but not a moment)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _log_refusal(
    error: MTLSAuthError, identity: ClientIdentity | None, limiter: RefusalLogLimiter
) -> None:
    # Like the Guard's lines: the code and the certificate, never the token; one line per
    # code and certificate a minute, the repeats counted into the next.
    fingerprint = identity.fingerprint_sha256 if identity is not None else None
    limited_log(
        logger,
        limiter,
        logging.INFO,
        (error.code, fingerprint),
        "mtlsauth token denied code=%s fingerprint=%s",
        error.code,
        fingerprint,
        extra={"mtlsauth": {"outcome": "denied", "code": error.code, "stage": "token"}},
    )


class _Store(Protocol):
    """What the frameworks' request objects share: ``environ``, ``scope``, aiohttp's request."""

    def __getitem__(self, key: str, /) -> Any: ...


class _RefuseOnValidatorError:
    """``with`` it around a validator call: any failure but our own refusals refuses the
    token (``token_invalid``); the validator's exception goes to the log by type only, once
    a minute per type."""

    __slots__ = ("_limiter",)

    def __init__(self, limiter: RefusalLogLimiter) -> None:
        self._limiter = limiter

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> Literal[False]:
        if exc is None or isinstance(exc, MTLSAuthError) or not isinstance(exc, Exception):
            return False
        name = type(exc).__name__
        limited_log(
            logger,
            self._limiter,
            logging.INFO,
            ("validator", name),
            "mtlsauth token refused by the validator: %s",
            name,
        )
        raise TokenError("the token is invalid", code="token_invalid") from None


def stored_claims(request: _Store, key: str, hint: str) -> Claims | None:
    """The claims a token check stored under ``key`` on a framework's request object.

    Raises:
        IdentityMissing: no token check ran for this request (``hint`` says what installs one).
    """
    try:
        return request[key]  # type: ignore[no-any-return]
    except KeyError:
        raise IdentityMissing(
            f"no bearer-token check ran for this request: add Route(..., token=TokenCheck(...)) "
            f"to {hint}"
        ) from None
