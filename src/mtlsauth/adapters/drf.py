"""Django REST framework: an authentication class and permission classes for mutual TLS.

``settings.py``::

    REST_FRAMEWORK = {
        "DEFAULT_AUTHENTICATION_CLASSES": ["mtlsauth.adapters.drf.MTLSAuthentication"],
        "DEFAULT_PERMISSION_CLASSES": ["mtlsauth.adapters.drf.HasClientCertificate"],
        # a refusal (MTLSAuthError) raised in a view answered as one, not as a 500
        "EXCEPTION_HANDLER": "mtlsauth.adapters.drf.exception_handler",
    }

A view then finds the verified ``ClientIdentity`` in ``request.auth`` and a user in
``request.user``: the Django user ``MTLSBackend`` maps the certificate to when that backend
is configured and finds one, otherwise a ``ClientCertificateUser`` (authenticated, not
staff, no database row). Per-view allow-lists::

    from mtlsauth import Policy
    from mtlsauth.adapters.drf import certificate_policy

    class LedgerView(APIView):
        permission_classes = [certificate_policy(Policy(organizations={"payments"}))]

``MTLSAuthentication`` uses the identity ``mtlsauth.adapters.django.MTLSMiddleware``
established for the request; without that middleware it verifies the request itself with
the same ``settings.MTLSAUTH``, the policy of the route matching the path included (in
optional mode: no certificate means "not authenticated by this class", so other
authentication classes may still run). A refused certificate is an
``AuthenticationFailed`` whose code is mtlsauth's error code, answered with 401 and a
``WWW-Authenticate: MutualTLS`` challenge.

Certificate-bound access tokens (RFC 8705): ``token_authentication(TokenCheck(...))`` is an
``MTLSAuthentication`` that also runs the token check, so the certificate and the token are
decided together (DRF stops at the first authentication class that succeeds: a separate
token class listed after ``MTLSAuthentication`` would never run). Views read the claims
with ``mtlsauth.adapters.django_oauth.token_claims(request)``.
"""

from __future__ import annotations

import hashlib
from typing import Any

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.throttling import UserRateThrottle

from mtlsauth._errors import MTLSAuthError
from mtlsauth._identity import ClientIdentity
from mtlsauth._oauth import TokenCheck
from mtlsauth._policy._policy import Policy
from mtlsauth._problem import answer_of, problem_headers
from mtlsauth.adapters.django import (
    _certificate_backends,
    _scope_identity,
    get_guard,
    hide_headers,
    presented_from_request,
    report_refusal,
    request_target,
)
from mtlsauth.adapters.django_oauth import check_token

__all__ = [
    "CertificateRateThrottle",
    "ClientCertificatePolicy",
    "ClientCertificateUser",
    "HasClientCertificate",
    "MTLSAuthentication",
    "MTLSTokenAuthentication",
    "certificate_policy",
    "exception_handler",
    "token_authentication",
]

_UNSET = object()


class ClientCertificateUser:
    """The ``request.user`` for a verified certificate that maps to no Django user.

    Authenticated (``is_authenticated`` is true) but never staff or superuser, with no
    permissions; ``username`` is the certificate's common name (or its fingerprint).
    """

    is_active = True
    is_staff = False
    is_superuser = False
    is_anonymous = False
    is_authenticated = True
    pk = None
    id = None

    def __init__(self, identity: ClientIdentity) -> None:
        self.identity = identity
        self.username: str = (
            identity.common_name or identity.fingerprint_sha256 or "client-certificate"
        )

    def get_username(self) -> str:
        return self.username

    def has_perm(self, perm: str, obj: object = None) -> bool:
        return False

    def has_perms(self, perm_list: Any, obj: object = None) -> bool:
        return False

    def has_module_perms(self, app_label: str) -> bool:
        return False

    def __str__(self) -> str:
        return self.username

    def __repr__(self) -> str:
        return f"<ClientCertificateUser {self.username!r}>"


def _failed(error: MTLSAuthError) -> exceptions.APIException:
    status, code, _title, detail, _challenge = answer_of(error)
    if status == 400:
        return exceptions.ParseError(detail=detail, code=code)
    if status == 403:
        return exceptions.PermissionDenied(detail=detail, code=code)
    if status == 401:
        return exceptions.AuthenticationFailed(detail=detail, code=code)
    # 500 internal_error, 503 verification_busy: the status every other adapter answers
    failure = exceptions.APIException(detail=detail, code=code)
    failure.status_code = status
    if status == 503:
        # DRF's exception handler turns ``wait`` into Retry-After, as the other adapters send
        failure.wait = 1
    return failure


def _report(request: Any, error: MTLSAuthError, identity: object = None) -> None:
    """Report a refusal DRF answers (``on_decision``, the log line) as the middleware
    reports one a view raises (``report_refusal``)."""
    report_refusal(getattr(request, "_request", request), error, identity)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Any:
    """DRF's ``EXCEPTION_HANDLER`` that answers a refusal raised in a view, an
    authentication class or a permission class as the refusal it is.

    DRF's own handler only answers ``APIException``: any other exception reaches Django,
    which answers 500 unless ``mtlsauth.adapters.django.MTLSMiddleware`` is installed (its
    ``process_exception``). Here an ``MTLSAuthError`` (``Policy.check``, ``check_token``,
    ``identity_from_request`` without the middleware) becomes the ``APIException`` of its
    status and code, with the ``WWW-Authenticate`` (or ``Retry-After``) every other adapter
    sends; anything else goes to DRF's handler unchanged. ``settings.py``::

        REST_FRAMEWORK = {"EXCEPTION_HANDLER": "mtlsauth.adapters.drf.exception_handler"}
    """
    from rest_framework.views import exception_handler as drf_handler

    if isinstance(exc, MTLSAuthError):
        request = context.get("request")
        if request is not None:
            _report(request, exc)
        failure = _failed(exc)
        for name, value in problem_headers(exc, 0):
            if name == "www-authenticate":
                # DRF asks for a challenge only before this handler runs, and only for its
                # own NotAuthenticated/AuthenticationFailed; a refusal raised as
                # MTLSAuthError carries the one the other adapters send.
                failure.auth_header = value
        exc = failure
    return drf_handler(exc, context)


class MTLSAuthentication(BaseAuthentication):
    """DRF authentication by the request's verified client certificate.

    A browser presents the certificate its user picked with every request to the site,
    also with one another site's page makes (a form POST): like a session cookie, an
    ambient credential. DRF checks CSRF only in ``SessionAuthentication``, so for an API
    that browsers call with their certificate set ``enforce_csrf = True`` in a subclass:
    an unsafe request this class authenticates then needs Django's CSRF token, as under
    ``SessionAuthentication`` (403 ``CSRF Failed`` without it).
    """

    enforce_csrf: bool = False

    def authenticate(self, request: Request) -> tuple[Any, ClientIdentity] | None:
        result = self._authenticate(request)
        if result is not None and self.enforce_csrf:  # any true value: 1 is not an opt-out
            _check_csrf(request)
        return result

    def _authenticate(self, request: Request) -> tuple[Any, ClientIdentity] | None:
        django_request = request._request
        identity = getattr(django_request, "mtls_identity", _UNSET)
        if identity is _UNSET:
            # Behind mtlsauth.adapters.asgi.MTLSMiddleware: its decision (it has hidden the
            # certificate headers, so verifying again here would find none).
            found, established = _scope_identity(django_request)
            if found:
                identity = established
        if identity is _UNSET:
            guard = get_guard()
            keys = tuple("HTTP_" + n.upper().replace("-", "_") for n in sorted(guard.strip_names))
            # The path's route from the same settings, so its policy applies here as it
            # would in the middleware (and a target that reads two ways is refused first).
            path, raw = request_target(django_request)
            ambiguous = guard.check_target(raw, path)
            if ambiguous is not None:
                raise _failed(ambiguous)
            _, route, _ = guard.resolve(path, django_request.method or "GET")
            try:
                presented = presented_from_request(django_request, guard, keys)
            except MTLSAuthError as exc:  # a request the server passed unreadable
                raise _failed(exc) from None
            decision = guard.decide(presented, "optional", route)
            if decision.error is not None:
                raise _failed(decision.error)
            if guard.must_strip(presented.peer):  # as the middleware does (``Decision.hide``)
                try:
                    hide_headers(django_request, keys)
                except MTLSAuthError as exc:
                    raise _failed(exc) from None
            identity = decision.identity
            django_request.mtls_identity = identity
        if not isinstance(identity, ClientIdentity):
            return None
        user: Any = None
        backends = _certificate_backends()
        if backends:
            from django.contrib import auth

            user = auth.authenticate(django_request, mtls_identity=identity)
            if user is None and any(b._refuses(identity) for b in backends):
                # The certificate names a user the backend refuses (an inactive one): not
                # authenticated, as the middleware leaves such a request anonymous. A
                # ClientCertificateUser would let the disabled account's holder through
                # IsAuthenticated.
                return None
        return (user if user is not None else ClientCertificateUser(identity)), identity

    def authenticate_header(self, request: Request) -> str:
        return "MutualTLS"


def _check_csrf(request: Request) -> None:
    """Django's CSRF check of ``request``, as DRF's ``SessionAuthentication`` runs it."""
    from rest_framework.authentication import CSRFCheck

    check = CSRFCheck(lambda _request: None)
    check.process_request(request._request)  # the CSRF cookie, into META
    reason = check.process_view(request._request, lambda _request: None, (), {})
    if reason:
        raise exceptions.PermissionDenied(f"CSRF Failed: {reason}")


class MTLSTokenAuthentication(MTLSAuthentication):
    """``MTLSAuthentication`` followed by a bearer-token check bound to the certificate.

    Set ``token_check`` in a subclass, or make one with ``token_authentication(check)``. A
    refused token is an ``AuthenticationFailed`` (``PermissionDenied`` for
    ``insufficient_scope``, ``ParseError`` for ``token_request_invalid``) whose code is
    mtlsauth's, and a 401 carries the RFC 6750 ``Bearer`` challenge. The check runs on every
    request this class sees, also one without a verified certificate, so a token bound to a
    certificate is refused there (``token_binding_mismatch``) and a required token that is
    missing is refused (``token_missing``); such a request, once its token passes, is still
    not authenticated by this class (``request.auth`` is the verified identity or nothing).
    """

    token_check: TokenCheck | None = None

    def authenticate(self, request: Request) -> tuple[Any, ClientIdentity] | None:
        try:
            result = super().authenticate(request)
        except exceptions.APIException:
            request._request.mtlsauth_challenge = "MutualTLS"  # the certificate was refused
            raise
        check = self.token_check
        if not isinstance(check, TokenCheck):
            raise TypeError(f"{type(self).__name__}.token_check must be a mtlsauth.TokenCheck")
        try:
            check_token(request, check)
        except MTLSAuthError as exc:
            _report(request, exc, result[1] if result is not None else None)
            failure = _failed(exc)
            challenge = getattr(exc, "challenge", None)
            if isinstance(challenge, str):
                request._request.mtlsauth_challenge = challenge
                if failure.status_code != 401:
                    # DRF asks authenticate_header for a 401 only; its exception handler
                    # sends auth_header on any status. RFC 6750 section 3 wants the Bearer
                    # challenge on 400 invalid_request and 403 insufficient_scope too.
                    failure.auth_header = challenge
            raise failure from None
        return result

    def authenticate_header(self, request: Request) -> str:
        challenge = getattr(request._request, "mtlsauth_challenge", None)
        return challenge if isinstance(challenge, str) else "Bearer"


def token_authentication(check: TokenCheck) -> type[MTLSTokenAuthentication]:
    """An ``MTLSTokenAuthentication`` subclass for ``check``, for ``authentication_classes``.

    Raises:
        TypeError: ``check`` is not a ``TokenCheck``.
    """
    if not isinstance(check, TokenCheck):
        raise TypeError("check must be a mtlsauth.TokenCheck")
    return type("TokenAuthentication", (MTLSTokenAuthentication,), {"token_check": check})


class HasClientCertificate(BasePermission):
    """Allows a request only when it was authenticated by a verified client certificate."""

    message = "a verified client certificate is required"

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.auth, ClientIdentity)


class ClientCertificatePolicy(HasClientCertificate):
    """Allows a request whose verified certificate matches ``policy`` (set by a subclass,
    or made with ``certificate_policy(policy)``). A non-matching certificate gets 403 with
    the policy's error code."""

    policy: Policy | None = None

    def has_permission(self, request: Request, view: Any) -> bool:
        identity = request.auth
        if not isinstance(identity, ClientIdentity):
            return False
        policy = self.policy
        if not isinstance(policy, Policy):
            raise TypeError(f"{type(self).__name__}.policy must be a mtlsauth.Policy")
        try:
            policy.check(identity)
        except MTLSAuthError as exc:  # PolicyDenied, or any refusal a policy hook raises
            _report(request, exc, identity)
            raise _failed(exc) from None
        return True


def certificate_policy(policy: Policy) -> type[ClientCertificatePolicy]:
    """A ``ClientCertificatePolicy`` subclass for ``policy``, for ``permission_classes``.

    Raises:
        TypeError: ``policy`` is not a ``Policy``.
    """
    if not isinstance(policy, Policy):
        raise TypeError("policy must be a mtlsauth.Policy")
    return type("CertificatePolicy", (ClientCertificatePolicy,), {"policy": policy})


class CertificateRateThrottle(UserRateThrottle):
    """DRF's ``UserRateThrottle`` with one budget per client certificate.

    ``UserRateThrottle`` keys an authenticated request on ``request.user.pk``. Every
    ``ClientCertificateUser`` has ``pk`` ``None`` (it has no database row), so under it all
    such clients would share one budget and one of them could use it up for the others.
    This class keys those requests on the certificate's SHA-256 fingerprint instead (the
    subject for a proxy-verified identity without one), and anything else as
    ``UserRateThrottle`` does. Same scope (``"user"``) and settings; subclass it to set
    ``scope`` or ``rate``.
    """

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        user = getattr(request, "user", None)
        if isinstance(user, ClientCertificateUser):
            identity = user.identity
            ident = (
                f"x509-sha256-{identity.fingerprint_sha256}"
                if identity.fingerprint_sha256
                else "x509-subject-" + hashlib.sha256(identity.subject.encode()).hexdigest()
            )
            return str(self.cache_format % {"scope": self.scope, "ident": ident})
        key = super().get_cache_key(request, view)
        return key if isinstance(key, str) else None
