"""Bearer tokens bound to the client certificate (RFC 8705) for ASGI apps and FastAPI.

Two ways to require a token, both behind ``MTLSMiddleware``:

* per route in the middleware: ``Route("/accounts/*", token=TokenCheck(validate))``; the
  claims are then in ``scope["mtlsauth.token"]`` (read them with ``token_claims_from_scope``);
* per endpoint with a FastAPI dependency: ``Depends(require_token(check))`` returns the
  claims (or ``None`` when the check does not require a token and none came) and stores
  them in the scope too, where ``token_claims_from_scope`` reads them.

Example:
    >>> from fastapi import Depends, FastAPI
    >>> from mtlsauth import TokenCheck
    >>> from mtlsauth.adapters.asgi_oauth import require_token
    >>> check = TokenCheck(lambda token: {"sub": "x"}, binding="if_present")
    >>> app = FastAPI()
    >>> @app.get("/balance")
    ... def balance(claims=Depends(require_token(check))):
    ...     return {"sub": claims["sub"]}

Refusals are ``TokenError`` (401, 400 or 403 with ``WWW-Authenticate: Bearer ...``), which
``MTLSMiddleware`` answers as problem+json.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from mtlsauth._oauth import TOKEN_CHECK_ATTRIBUTE, TOKEN_KEY, Claims, TokenCheck, stored_claims
from mtlsauth._types import Scope
from mtlsauth.adapters.asgi import authorization_from_scope, identity_from_scope

__all__ = ["TOKEN_KEY", "check_token", "require_token", "token_claims_from_scope"]


def token_claims_from_scope(scope: Scope) -> Claims | None:
    """The claims a ``Route(token=...)`` check, ``require_token`` or ``check_token`` stored
    for this request.

    Returns:
        The validated claims, or ``None`` when the route's check allows requests without a
        token and none came.

    Raises:
        IdentityMissing: no token check ran for this request (no ``Route`` with ``token``
            matched it, or ``MTLSMiddleware`` is not installed): a deployment bug, 500.
    """
    return stored_claims(scope, TOKEN_KEY, "MTLSMiddleware, or use require_token()")


async def check_token(scope: Scope, check: TokenCheck) -> Claims | None:
    """Run ``check`` for the request in ``scope``, against the identity the middleware set,
    and store the claims in ``scope["mtlsauth.token"]`` (``token_claims_from_scope``).

    Raises:
        TokenError: the token is missing, invalid, unbound or bound to another certificate.
        IdentityMissing: ``MTLSMiddleware`` did not run for this request.
    """
    claims = await check.acheck(identity_from_scope(scope), authorization_from_scope(scope))
    scope[TOKEN_KEY] = claims
    return claims


def require_token(check: TokenCheck) -> Callable[..., Awaitable[Claims | None]]:
    """A FastAPI dependency factory: this endpoint needs what ``check`` requires.

    The dependency returns the claims (``None`` when the check does not require a token and
    none came) and raises ``TokenError`` otherwise.

    Raises:
        TypeError: ``check`` is not a TokenCheck.
    """
    if not isinstance(check, TokenCheck):
        raise TypeError("require_token() takes a mtlsauth.TokenCheck")
    # FastAPI injects the connection by its annotation: it must be starlette's real class.
    from starlette.requests import HTTPConnection

    async def dependency(conn: HTTPConnection) -> Any:
        return await check_token(conn.scope, check)

    dependency.__annotations__ = {"conn": HTTPConnection, "return": Any}
    dependency.__name__ = dependency.__qualname__ = "require_token"
    # What document_mutual_tls (mtlsauth.adapters.fastapi) reads to declare the route's
    # bearer-token requirement in the OpenAPI document.
    dependency.__dict__[TOKEN_CHECK_ATTRIBUTE] = check
    return dependency
