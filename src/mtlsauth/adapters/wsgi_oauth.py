"""Bearer tokens bound to the client certificate (RFC 8705) for WSGI apps and Flask.

Behind ``mtlsauth.adapters.wsgi.MTLSMiddleware``, require a token either per route in the
middleware (``Route("/accounts/*", token=TokenCheck(validate))``, claims in
``environ["mtlsauth.token"]``) or per Flask view with ``@token_required(check)``.

Example:
    >>> from flask import Flask
    >>> from mtlsauth import TokenCheck
    >>> from mtlsauth.adapters.wsgi_oauth import token_claims_from_environ, token_required
    >>> app = Flask(__name__)
    >>> check = TokenCheck(lambda token: {"sub": "x"})
    >>> @app.get("/balance")
    ... @token_required(check)
    ... def balance():
    ...     from flask import request
    ...     return {"sub": token_claims_from_environ(request.environ)["sub"]}
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from mtlsauth._errors import MTLSAuthError
from mtlsauth._oauth import TOKEN_KEY, Claims, TokenCheck, stored_claims
from mtlsauth.adapters.wsgi import answer_refusal, identity_from_environ

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

__all__ = ["TOKEN_KEY", "check_token", "token_claims_from_environ", "token_required"]

F = TypeVar("F", bound=Callable[..., Any])


def token_claims_from_environ(environ: WSGIEnvironment) -> Claims | None:
    """The claims the token check stored for this request (``None``: optional, none sent).

    Raises:
        IdentityMissing: no token check ran for this request.
    """
    return stored_claims(environ, TOKEN_KEY, "MTLSMiddleware, or use @token_required(check)")


def check_token(environ: WSGIEnvironment, check: TokenCheck) -> Claims | None:
    """Run ``check`` for this request and store the claims in ``environ["mtlsauth.token"]``.

    Raises:
        TokenError: the token is missing, invalid, unbound or bound to another certificate.
        IdentityMissing: ``MTLSMiddleware`` did not run for this request.
    """
    auth = environ.get("HTTP_AUTHORIZATION")
    claims = check.check(identity_from_environ(environ), [auth] if isinstance(auth, str) else [])
    environ[TOKEN_KEY] = claims
    return claims


def token_required(check: TokenCheck) -> Callable[[F], F]:
    """Flask view decorator: the view runs only when ``check`` passes.

    A refusal is answered with the problem+json tuple (status, ``WWW-Authenticate:
    Bearer ...``) without calling the view; the claims are in ``environ["mtlsauth.token"]``.
    Behind ``MTLSMiddleware`` the middleware answers the refusal in its place, through
    ``on_error``, and reports it (``on_decision``, log line) as its own (``answer_refusal``).

    Raises:
        TypeError: ``check`` is not a TokenCheck.
    """
    if not isinstance(check, TokenCheck):
        raise TypeError("token_required() takes a mtlsauth.TokenCheck")

    def decorate(view: F) -> F:
        if inspect.iscoroutinefunction(view):
            # Flask runs an ``async def`` view only when the function it is given is one:
            # a plain wrapper would hand Flask the view's coroutine as its answer (a 500).
            @functools.wraps(view)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                refusal = _refusal()
                if refusal is not None:
                    return refusal
                return await view(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            refusal = _refusal()
            if refusal is not None:
                return refusal
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    def _refusal() -> tuple[bytes, int | str, list[tuple[str, str]]] | None:
        from flask import request

        try:
            check_token(request.environ, check)
        except MTLSAuthError as exc:
            return answer_refusal(exc, request.environ)
        return None

    return decorate
