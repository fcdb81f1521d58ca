"""Bearer tokens bound to the client certificate (RFC 8705) for Django views and DRF.

Behind ``mtlsauth.adapters.django.MTLSMiddleware``, require a token per view with
``@token_required(check)`` (sync and async views), or in Django REST framework with the
authentication class ``token_authentication(check)`` (``mtlsauth.adapters.drf``), which
verifies the certificate and the token together. The claims are read with
``token_claims(request)``.

Example:
    >>> from django.http import JsonResponse
    >>> from mtlsauth import TokenCheck
    >>> from mtlsauth.adapters.django_oauth import token_claims, token_required
    >>> check = TokenCheck(lambda token: {"sub": "x"})
    >>> @token_required(check)
    ... def balance(request):
    ...     return JsonResponse({"sub": token_claims(request)["sub"]})
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from mtlsauth._errors import IdentityMissing, MTLSAuthError
from mtlsauth._identity import ClientIdentity
from mtlsauth._oauth import Claims, TokenCheck
from mtlsauth.adapters.django import problem_response, report_refusal

if TYPE_CHECKING:
    from django.http import HttpRequest

__all__ = ["TOKEN_ATTRIBUTE", "acheck_token", "check_token", "token_claims", "token_required"]

TOKEN_ATTRIBUTE = "mtls_token"  # noqa: S105 - an attribute name, not a secret
"""The ``HttpRequest`` attribute holding the claims a token check stored for the request."""

F = TypeVar("F", bound=Callable[..., Any])
_UNSET = object()


def _django_request(request: Any) -> HttpRequest:
    """The ``HttpRequest`` itself, also when handed DRF's ``Request`` wrapper."""
    return getattr(request, "_request", request)


def token_claims(request: Any) -> Claims | None:
    """The claims the token check stored for this request (``None``: the check did not
    require a token and none came). Takes an ``HttpRequest`` or DRF's ``Request``.

    Raises:
        IdentityMissing: no token check ran for this request.
    """
    claims: Any = getattr(_django_request(request), TOKEN_ATTRIBUTE, _UNSET)
    if claims is _UNSET:
        raise IdentityMissing(
            "no bearer-token check ran for this request: decorate the view with "
            "@token_required(check), or authenticate it with "
            "mtlsauth.adapters.drf.token_authentication(check)"
        )
    return claims  # type: ignore[no-any-return]


def _inputs(request: HttpRequest) -> tuple[ClientIdentity | None, list[str]]:
    """The identity the middleware verified and the ``Authorization`` header(s)."""
    identity = getattr(request, "mtls_identity", _UNSET)
    if identity is _UNSET:
        raise IdentityMissing(
            "no mtlsauth verification ran for this request: add "
            "mtlsauth.adapters.django.MTLSMiddleware to MIDDLEWARE"
        )
    # Under ASGI Django joins repeated headers with ",", which the check refuses
    # (token_request_invalid); a WSGI server keeps one of them or joins them the same way.
    auth = request.META.get("HTTP_AUTHORIZATION")
    return (
        identity if isinstance(identity, ClientIdentity) else None,
        [auth] if isinstance(auth, str) else [],
    )


def check_token(request: Any, check: TokenCheck) -> Claims | None:
    """Run ``check`` for this request and store the claims (``token_claims``).

    Raises:
        TokenError: the token is missing, invalid, unbound or bound to another certificate.
        IdentityMissing: ``MTLSMiddleware`` (or DRF's ``MTLSAuthentication``) did not run.
    """
    django_request = _django_request(request)
    identity, authorization = _inputs(django_request)
    claims = check.check(identity, authorization)
    setattr(django_request, TOKEN_ATTRIBUTE, claims)
    return claims


async def acheck_token(request: Any, check: TokenCheck) -> Claims | None:
    """``check_token`` for async views: a blocking validator runs on the check's own pool.

    Raises:
        TokenError: the token is missing, invalid, unbound or bound to another certificate.
        VerificationBusy: the check's pool is full.
        IdentityMissing: ``MTLSMiddleware`` did not run for this request.
    """
    django_request = _django_request(request)
    identity, authorization = _inputs(django_request)
    claims = await check.acheck(identity, authorization)
    setattr(django_request, TOKEN_ATTRIBUTE, claims)
    return claims


def _refused(request: Any, error: MTLSAuthError) -> Any:
    """The decorator's answer to a refusal, reported behind ``MTLSMiddleware`` (it set
    ``request.mtls_identity``) as the middleware's own (``on_decision``, the log line).
    Answered here rather than raised: a ``process_exception`` of another middleware could
    answer the exception otherwise."""
    django_request = _django_request(request)
    if hasattr(django_request, "mtls_identity"):
        report_refusal(django_request, error)
    return problem_response(error)


def token_required(check: TokenCheck) -> Callable[[F], F]:
    """Django view decorator: the view runs only when ``check`` passes.

    Works on sync and async function views (``method_decorator`` for class-based views).
    A refusal is answered with problem+json and ``WWW-Authenticate: Bearer ...`` (RFC 6750
    section 3) without calling the view, and a view the middleware did not run for with 500
    ``identity_missing``; the claims are in ``token_claims(request)``.

    Raises:
        TypeError: ``check`` is not a TokenCheck.
    """
    if not isinstance(check, TokenCheck):
        raise TypeError("token_required() takes a mtlsauth.TokenCheck")

    def decorate(view: F) -> F:
        if inspect.iscoroutinefunction(view):

            @functools.wraps(view)
            async def async_wrapper(request: Any, *args: Any, **kwargs: Any) -> Any:
                try:
                    await acheck_token(request, check)
                except MTLSAuthError as exc:
                    return _refused(request, exc)
                return await view(request, *args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(view)
        def wrapper(request: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                check_token(request, check)
            except MTLSAuthError as exc:
                return _refused(request, exc)
            return view(request, *args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
