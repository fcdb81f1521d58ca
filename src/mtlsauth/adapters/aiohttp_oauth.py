"""Bearer tokens bound to the client certificate (RFC 8705) for aiohttp.

Behind ``mtls_middleware``, require a token per route in the middleware
(``Route("/accounts/*", token=TokenCheck(validate))``) or per handler with
``@token_required(check)``; read the claims with ``get_token_claims(request)``.

Example:
    >>> from aiohttp import web
    >>> from mtlsauth import TokenCheck
    >>> from mtlsauth.adapters.aiohttp_oauth import get_token_claims, token_required
    >>> check = TokenCheck(lambda token: {"sub": "x"})
    >>> @token_required(check)
    ... async def balance(request: web.Request) -> web.Response:
    ...     return web.json_response({"sub": get_token_claims(request)["sub"]})
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from aiohttp import web

from mtlsauth._errors import MTLSAuthError
from mtlsauth._oauth import Claims, TokenCheck, stored_claims
from mtlsauth.adapters.aiohttp import TOKEN_KEY, answer_refusal, get_identity

__all__ = ["TOKEN_KEY", "check_token", "get_token_claims", "token_required"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def get_token_claims(request: web.Request) -> Claims | None:
    """The claims the token check stored for this request (``None``: optional, none sent).

    Raises:
        IdentityMissing: no token check ran for this request.
    """
    return stored_claims(request, TOKEN_KEY, "mtls_middleware, or use @token_required(check)")


async def check_token(request: web.Request, check: TokenCheck) -> Claims | None:
    """Run ``check`` for this request and store the claims on it.

    Raises:
        TokenError: the token is missing, invalid, unbound or bound to another certificate.
        IdentityMissing: ``mtls_middleware`` is not installed.
    """
    claims = await check.acheck(get_identity(request), request.headers.getall("Authorization", []))
    request[TOKEN_KEY] = claims
    return claims


def token_required(check: TokenCheck) -> Callable[[Handler], Handler]:
    """Handler decorator: the handler runs only when ``check`` passes.

    A refusal is answered with problem+json and ``WWW-Authenticate: Bearer ...``: behind
    ``mtls_middleware`` as the middleware's own refusals are (``on_error``,
    ``on_decision``, the log line: ``answer_refusal``); without it (``identity_missing``)
    by the decorator.

    Raises:
        TypeError: ``check`` is not a TokenCheck.
    """
    if not isinstance(check, TokenCheck):
        raise TypeError("token_required() takes a mtlsauth.TokenCheck")

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def wrapper(request: web.Request) -> web.StreamResponse:
            try:
                await check_token(request, check)
            except MTLSAuthError as exc:
                return await answer_refusal(request, exc)
            return await handler(request)

        return wrapper

    return decorate
