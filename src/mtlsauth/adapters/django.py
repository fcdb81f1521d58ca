"""Django integration: a middleware configured from ``settings.MTLSAUTH``, an authentication
backend that maps a verified certificate to a user, and ``request.mtls_identity``.

Settings (``settings.py``)::

    MIDDLEWARE = [
        ...,
        "django.contrib.auth.middleware.AuthenticationMiddleware",  # optional (sessions)
        "mtlsauth.adapters.django.MTLSMiddleware",      # after AuthenticationMiddleware
    ]
    AUTHENTICATION_BACKENDS = ["mtlsauth.adapters.django.MTLSBackend"]

    # The same schema as a TOML/YAML configuration file (docs/config.md), as a dict;
    # relative paths are relative to BASE_DIR (or MTLSAUTH_BASE_DIR). A string is taken as
    # the path of such a file instead.
    MTLSAUTH = {
        "mode": "mandatory",
        "exempt_paths": ["/healthz"],
        "trust": {"files": ["pki/ca.pem"]},
        "forwarded": {"preset": "nginx", "trusted_proxies": ["127.0.0.1"]},
        "policy": {"organizations": ["Example Corp"]},
    }
    MTLSAUTH_USERNAME = "common_name"   # or "email", "spiffe_id", "dns_name", "uri",
                                        # "subject", "fingerprint", or "pkg.mod.function"
    MTLSAUTH_CREATE_USERS = False       # create a user the first time a certificate maps

Every request then carries ``request.mtls_identity`` (a ``ClientIdentity``, or ``None`` in
optional mode without a certificate, on exempt paths and in mode ``"off"``). A refused
request never reaches a view: it is answered with the same problem+json body as every other
adapter. With ``MTLSBackend`` configured, ``request.user`` is the user the certificate maps to
(or ``AnonymousUser`` when it maps to none); no session is created, because the certificate
comes with every request. ``AuthenticationMiddleware`` (which needs sessions) is therefore
optional: an API authenticated by certificates alone can leave it and the sessions app out.

The middleware runs synchronously (Django runs it in a thread under ASGI). It reads the
certificate from the TLS layer (gunicorn's socket or mod_wsgi's ``SSL_CLIENT_CERT`` under
WSGI; the ASGI TLS extension under ASGI, e.g. uvicorn with
``mtlsauth.adapters.uvicorn.MTLSH11Protocol``) or, from trusted proxies only, from the
``forwarded`` header, whose ``HTTP_*`` key is removed from ``request.META`` for every other
peer.

Why one module of this size: settings name the middleware and the backend by their dotted
paths in this one module, and a fifth of it is this settings reference.
"""

from __future__ import annotations

import http
import importlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.http import HttpRequest, HttpResponse

from mtlsauth._config import Config, config_from_mapping, load_config
from mtlsauth._errors import AmbiguousRequest, IdentityMissing, MTLSAuthError
from mtlsauth._guard import Decision, Guard, RequestView, problem_body, problem_headers
from mtlsauth._identity import ClientIdentity
from mtlsauth._problem import refusal_status
from mtlsauth._types import Presented
from mtlsauth.adapters.asgi import IDENTITY_KEY as ASGI_IDENTITY_KEY
from mtlsauth.adapters.asgi import MIDDLEWARE_KEY as ASGI_MIDDLEWARE_KEY
from mtlsauth.adapters.asgi import MTLSMiddleware as ASGIMiddleware
from mtlsauth.adapters.asgi import _peer as asgi_peer
from mtlsauth.adapters.asgi import _single_header
from mtlsauth.adapters.wsgi import _authorization as wsgi_authorization
from mtlsauth.adapters.wsgi import _peer as wsgi_peer
from mtlsauth.adapters.wsgi import presented_from_environ

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

__all__ = [
    "USERNAME_FIELDS",
    "MTLSBackend",
    "MTLSMiddleware",
    "RefusalMiddleware",
    "get_guard",
    "identity_from_request",
    "problem_response",
]

BACKEND_PATH = "mtlsauth.adapters.django.MTLSBackend"

USERNAME_FIELDS: dict[str, Callable[[ClientIdentity], tuple[str, ...]]] = {
    "common_name": lambda i: _common_names(i),
    "email": lambda i: tuple(i.emails),
    "spiffe_id": lambda i: (i.spiffe_id,) if i.spiffe_id else (),
    "dns_name": lambda i: tuple(i.dns_names),
    "uri": lambda i: tuple(i.uris),
    "subject": lambda i: (i.subject,),
    "fingerprint": lambda i: (i.fingerprint_sha256,) if i.fingerprint_sha256 else (),
}
"""How ``MTLSAUTH_USERNAME`` names map a certificate to a username. A field with several
values (two e-mail SANs) maps to no user at all: choosing one would let the certificate's
holder pick whose account it opens."""


def _common_names(identity: ClientIdentity) -> tuple[str, ...]:
    """Every commonName of the subject: the certificate's, or for a proxy-verified identity
    the subject name the proxy reported (``CN=ledger,CN=admin`` names two users, never the
    first of them). With neither, only the first CN is known, and it is believed alone."""
    cert = identity.certificate
    name = cert.subject if cert is not None else identity.subject_name
    if name is None:
        return (identity.common_name,) if identity.common_name else ()
    from cryptography.x509.oid import NameOID

    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return tuple(v.value if isinstance(v.value, str) else "" for v in values)


_lock = threading.Lock()
_guard: Guard | None = None


def _config() -> Config:
    value = getattr(settings, "MTLSAUTH", None)
    if value is None:
        raise ImproperlyConfigured(
            "settings.MTLSAUTH is not set: give the mtlsauth configuration as a dict (the "
            "schema of docs/config.md) or the path of a TOML/YAML file"
        )
    base = getattr(settings, "MTLSAUTH_BASE_DIR", None) or getattr(settings, "BASE_DIR", None)
    try:
        if isinstance(value, str | os.PathLike):
            path = Path(value)
            if not path.is_absolute() and base is not None:
                path = Path(base) / path
            return load_config(path)
        if isinstance(value, dict):
            return config_from_mapping(value, base_dir=base, name="settings.MTLSAUTH")
    except ValueError as exc:
        raise ImproperlyConfigured(str(exc)) from None
    raise ImproperlyConfigured(
        f"settings.MTLSAUTH must be a dict or a file path, not {type(value).__name__}"
    )


def get_guard() -> Guard:
    """The ``Guard`` built from ``settings.MTLSAUTH`` (once per process, shared by every
    middleware instance and DRF class, so they share the verification cache).

    Raises:
        ImproperlyConfigured: the setting is missing or invalid.
    """
    global _guard
    guard = _guard
    if guard is None:
        with _lock:
            if _guard is None:
                config = _config()
                _guard = Guard(**config.middleware_kwargs(), on_decision=_on_decision())
            guard = _guard
    return guard


def _on_decision() -> Callable[[Decision], object] | None:
    hook = getattr(settings, "MTLSAUTH_ON_DECISION", None)
    if hook is None or callable(hook):
        return hook
    if isinstance(hook, str):
        return _import(hook, "MTLSAUTH_ON_DECISION")  # type: ignore[no-any-return]
    raise ImproperlyConfigured("MTLSAUTH_ON_DECISION must be a callable or a dotted path")


def _import(dotted: str, setting: str) -> Any:
    module, _, attr = dotted.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ImproperlyConfigured(f"{setting}: cannot import {dotted!r}: {exc}") from None


def _reset(*, setting: str, **_: object) -> None:
    global _guard
    if setting.startswith("MTLSAUTH") or setting == "BASE_DIR":
        with _lock:
            _guard = None


setting_changed.connect(_reset, dispatch_uid="mtlsauth-django-settings")


def problem_response(error: MTLSAuthError) -> HttpResponse:
    """The problem+json ``HttpResponse`` every adapter answers a refusal with."""
    body = problem_body(error)
    response = HttpResponse(body, status=refusal_status(error))
    for name, value in problem_headers(error, len(body)):
        response[name] = value
    response.reason_phrase = http.HTTPStatus(refusal_status(error)).phrase
    return response


def request_peer(request: HttpRequest) -> str | None:
    """The socket peer of a Django request: an address, ``UNIX_PEER``, or ``None``.

    Under ASGI from the scope (``client``, or uvicorn's ``server=(path, None)`` for a Unix
    socket), under WSGI from the environ (``REMOTE_ADDR``, or the family of the server's
    socket). ``None`` is an unknown peer, which is never a trusted proxy.
    """
    scope = getattr(request, "scope", None)  # django.core.handlers.asgi.ASGIRequest
    if isinstance(scope, dict):
        return asgi_peer(scope)
    return wsgi_peer(request.META)


def request_target(request: HttpRequest) -> tuple[str, bytes | str | None]:
    """(the path Django resolves, the raw request target when the server exposes it)."""
    scope = getattr(request, "scope", None)
    if isinstance(scope, dict):
        raw = scope.get("raw_path")
        return request.path_info or "/", raw if isinstance(raw, bytes) else None
    meta = request.META
    raw = meta.get("RAW_URI") or meta.get("REQUEST_URI")
    return request.path_info or "/", raw if isinstance(raw, str) else None


def presented_from_request(request: HttpRequest, guard: Guard, keys: tuple[str, ...]) -> Presented:
    """The ``Presented`` of a Django request (WSGI environ, or the ASGI TLS extension).

    Under ASGI the certificate headers are read from the scope as the client and the proxy
    sent them, never from ``META``: Django releases before 4.2.30, 5.2.13 and 6.0.4
    (CVE-2026-3902) fold a client's ``x_ssl_client_cert`` into the ``HTTP_X_SSL_CLIENT_CERT``
    key of the proxy's own header.

    Raises:
        AmbiguousRequest: ``request_malformed`` when the server passed a certificate of a
            type that is not text, or headers that are not bytes.
    """
    meta = request.META
    path = request.path_info or "/"
    peer = request_peer(request)
    # Also the headers read only to explain a refusal (X-Forwarded-For, certificate headers
    # no configuration reads), as every adapter hands them to the core; never stripped.
    read = (*keys, *_diagnostic_keys(guard, keys))
    presented = presented_from_environ(meta, path, request.method, header_keys=read, peer=peer)
    scope = getattr(request, "scope", None)  # django.core.handlers.asgi.ASGIRequest
    if isinstance(scope, dict):
        headers = _scope_headers(scope, guard.read_names)
        chain, tls_error = presented.tls_chain, presented.tls_error
        tls = _scope_tls(scope) if not chain else None
        if tls is not None:
            items = tls.get("client_cert_chain") or ()
            if type(items) is not list and type(items) is not tuple:
                raise AmbiguousRequest(
                    "the server passed a certificate chain that is not a list",
                    code="request_malformed",
                )
            chain = tuple(items)
            if not all(isinstance(c, str | bytes) for c in chain):
                raise AmbiguousRequest(
                    "the server passed a certificate that is not text", code="request_malformed"
                )
            error = tls.get("client_cert_error")
            tls_error = (str(error) or "client certificate error") if error is not None else None
        presented = Presented(
            peer=presented.peer,
            headers=headers,
            tls_chain=chain,
            tls_error=tls_error,
            path=presented.path,
            method=presented.method,
            tls_hint=presented.tls_hint,
        )
    return presented


def _scope_tls(scope: dict[str, Any]) -> dict[str, Any] | None:
    """The ASGI TLS extension of ``scope`` (``None``: the server sent none).

    Raises:
        AmbiguousRequest: ``request_malformed`` when the server's ``extensions`` or its
            ``tls`` entry is not a mapping: what it says about the certificate is unknown.
    """
    ext = scope.get("extensions")
    tls = ext.get("tls") if isinstance(ext, dict) else ext  # extensions of a wrong type too
    if tls is not None and not isinstance(tls, dict):
        raise AmbiguousRequest(
            "the server passed ASGI extensions or a TLS extension that is not a mapping",
            code="request_malformed",
        )
    return tls


def _diagnostic_keys(guard: Guard, keys: tuple[str, ...]) -> tuple[str, ...]:
    """The ``META`` keys of the headers the core reads besides ``keys`` (the certificate
    headers): those that only explain a refusal."""
    extra = (
        "HTTP_" + n.upper().replace("-", "_") for n in sorted(guard.read_names - guard.strip_names)
    )
    return tuple(k for k in extra if k not in keys)


def _scope_headers(scope: dict[str, Any], names: frozenset[str]) -> tuple[tuple[str, str], ...]:
    """The headers of an ASGI scope whose lower-case names are ``names``, as sent.

    Only from a list or a tuple: Django's request has read the scope's headers into
    ``META`` already, so a one-shot iterator (which the ASGI spec allows) is spent, and
    its certificate header would look absent; such headers are refused as unreadable."""
    headers = scope.get("headers", ())
    if not isinstance(headers, list | tuple):
        raise AmbiguousRequest("the server passed unreadable headers", code="request_malformed")
    try:
        return tuple(
            (k.lower().decode("latin-1"), v.decode("latin-1"))
            for k, v in headers
            if type(k) is bytes and type(v) is bytes and k.lower().decode("latin-1") in names
        )
    except (TypeError, ValueError, AttributeError):
        raise AmbiguousRequest(
            "the server passed unreadable headers", code="request_malformed"
        ) from None


def hide_headers(request: HttpRequest, keys: tuple[str, ...]) -> None:
    """Remove the certificate headers (their ``META`` keys ``keys``) from every place a view
    reads headers: ``META``, ``request.headers`` (a copy of ``META`` that Django keeps once
    anything has read it, as middlewares above this one may have) and, under ASGI,
    ``request.scope["headers"]``, in every spelling Django folds into those keys.

    Raises:
        AmbiguousRequest: ``request_malformed`` when the scope's headers cannot be read.
    """
    meta = request.META
    for key in keys:
        meta.pop(key, None)
    request.__dict__.pop("headers", None)  # the cached HttpHeaders: rebuilt from META
    scope = getattr(request, "scope", None)  # django.core.handlers.asgi.ASGIRequest
    if isinstance(scope, dict) and "headers" in scope:
        hidden = frozenset(keys)
        try:
            # Django's own fold of a header name into its META key (ASGIRequest)
            kept = [
                (k, v)
                for k, v in scope["headers"]
                if "HTTP_" + k.decode("latin-1").upper().replace("-", "_") not in hidden
            ]
        except (TypeError, ValueError, AttributeError):
            raise AmbiguousRequest(
                "the server passed unreadable headers", code="request_malformed"
            ) from None
        request.scope = {**scope, "headers": kept}


class MTLSMiddleware:
    """Django middleware: verify the client certificate of every request.

    Configured from ``settings.MTLSAUTH`` (mode, routes, exempt paths, trust, policy,
    forwarding); routes and exempt paths match ``request.path_info``, the path Django
    resolves (without the script prefix). With routes or exempt paths configured, a raw
    target (``RAW_URI``, ``REQUEST_URI`` or the ASGI ``raw_path``) with more than one reading
    is refused with 400 ``ambiguous_path``. An ``MTLSAuthError`` that a view raises (a
    stricter ``Policy.check``, ``check_token``) is answered as problem+json with its own
    status. With ``MTLSBackend`` in ``AUTHENTICATION_BACKENDS`` it sets
    ``request.user``; place it after ``AuthenticationMiddleware`` when that is used too.

    Raises:
        ImproperlyConfigured: at start-up, when ``settings.MTLSAUTH`` is missing or invalid.
    """

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self._keys: tuple[Guard | None, tuple[str, ...], tuple[str, bytes] | None] = (
            None,
            (),
            None,
        )
        get_guard()  # fail at start-up, not on the first request
        if _certificate_backends():  # the backend's settings too
            _username_function()
            _create_users()
            _check_order()

    def _keys_of(self, guard: Guard) -> tuple[tuple[str, ...], tuple[str, bytes] | None]:
        """The ``META`` keys of the certificate headers, and the ``META`` key and the
        lower-case name of the one a hit reads (``None``: hits read no header)."""
        known, keys, main = self._keys
        if known is not guard:  # first request, or the settings changed
            keys = tuple("HTTP_" + n.upper().replace("-", "_") for n in sorted(guard.strip_names))
            fwd = guard.forwarded
            plain = fwd.plain_header if fwd is not None else None
            main = (
                ("HTTP_" + plain.upper().replace("-", "_"), plain.encode("latin-1"))
                if plain is not None
                else None
            )
            self._keys = (guard, keys, main)
        return keys, main

    def __call__(self, request: HttpRequest) -> HttpResponse:
        guard = get_guard()
        keys, main = self._keys_of(guard)
        path, raw = request_target(request)
        method = request.method or "GET"
        peer = request_peer(request)
        identity = _cached(request, guard, main, peer, path, method, raw)
        checked = True  # a request the mode asked a certificate of (not exempt, not off)
        if identity is None:
            decision = guard.check(
                RequestView(
                    peer=peer,
                    path=path,
                    method=method,
                    raw_target=raw,
                    credentials=lambda: presented_from_request(request, guard, keys),
                    authorization=lambda: wsgi_authorization(request.META),
                ),
                defer=True,  # reported below, once the headers are hidden (or refused)
            )
            if decision.error is not None:
                return problem_response(decision.error)
            if decision.hide:
                try:
                    hide_headers(request, keys)
                except AmbiguousRequest as exc:
                    guard.refuse(exc, peer, path, method)
                    return problem_response(exc)
                guard.report(decision)
            identity = decision.identity
            checked = decision.mode != "off" and not decision.exempt
        request.mtls_identity = identity
        if _certificate_backends():
            from django.contrib import auth
            from django.contrib.auth.models import AnonymousUser

            if identity is not None:
                user = auth.authenticate(request, mtls_identity=identity)
                _set_user(request, user if user is not None else AnonymousUser())
            else:
                _end_certificate_session(request, log_out=checked)
                if not hasattr(request, "user"):  # no AuthenticationMiddleware (no sessions)
                    _set_user(request, AnonymousUser())
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """A refusal a view raised (``Policy.check`` on the identity, ``check_token``) is
        answered as every refusal is, never as Django's 500, and reported as the
        middleware's own refusals are (``on_decision``, the log line)."""
        if isinstance(exception, MTLSAuthError):
            report_refusal(request, exception)
            return problem_response(exception)
        return None


class RefusalMiddleware:
    """Django middleware for a Django app served behind ``mtlsauth.adapters.asgi.
    MTLSMiddleware`` (which verifies the certificate) instead of ``MTLSMiddleware``: it
    verifies nothing and needs no ``settings.MTLSAUTH``, and answers an ``MTLSAuthError``
    a view raises (a stricter ``Policy.check``, ``check_token``) as problem+json with its
    own status, where Django's ASGI handler would answer 500 (it turns every exception into
    a response, so the ASGI middleware never sees the refusal)."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """A view's refusal answered as every refusal is, never as Django's 500, and
        reported to the ASGI middleware's ``on_decision`` and log (its ``on_error`` answers
        with an ASGI app, which Django cannot send: the default answer goes out)."""
        if isinstance(exception, MTLSAuthError):
            report_to_asgi_middleware(request, exception)
            return problem_response(exception)
        return None


def report_refusal(request: HttpRequest, error: MTLSAuthError, identity: object = None) -> None:
    """Report a refusal Django answers after mtlsauth admitted the request (``on_decision``,
    the log line) as the middleware reports its own: to the ASGI middleware that admitted
    it, else to the Guard of ``settings.MTLSAUTH`` (nothing when neither is there)."""
    if report_to_asgi_middleware(request, error):
        return
    try:
        guard = get_guard()
    except ImproperlyConfigured:
        return
    if identity is None:
        identity = getattr(request, "mtls_identity", None)
    path, _raw = request_target(request)
    guard.refused_by_app(
        error,
        request_peer(request),
        path,
        request.method or "GET",
        identity if isinstance(identity, ClientIdentity) else None,
    )


def report_to_asgi_middleware(request: HttpRequest, error: MTLSAuthError) -> bool:
    """Report a refusal Django answers to the ``mtlsauth.adapters.asgi.MTLSMiddleware``
    that admitted the request (its ``on_decision`` and log); False when none did."""
    scope = getattr(request, "scope", None)
    if not isinstance(scope, dict):
        return False
    middleware = scope.get(ASGI_MIDDLEWARE_KEY)
    if not isinstance(middleware, ASGIMiddleware):
        return False
    middleware.refused_by_app(error, scope)
    return True


def _set_user(request: HttpRequest, user: Any) -> None:
    """``request.user``, and Django 5's ``request.auser()`` (async views, ``login_required``
    on them) answering the same user: ``AuthenticationMiddleware``'s ``auser`` reads the
    session, which knows nothing of the certificate. ``auser`` answers ``request.user`` as
    it is when awaited, not the user set here: a ``logout()`` or ``login()`` later in the
    same request (which set ``request.user``) must not leave ``auser`` on the old user."""

    async def auser() -> Any:
        return request.user

    request.user = user
    request.auser = auser


def _end_certificate_session(request: HttpRequest, *, log_out: bool) -> None:
    """A request with no certificate identity is not the user of a session a certificate
    backend logged in (``django.contrib.auth.login`` in a view): that user lasts as long as
    the certificate. Where a certificate was asked for and none came (optional mode) the
    session is logged out, as ``RemoteUserMiddleware`` does when its header is gone; where
    none was asked for (an exempt path, mode ``"off"``) the request is anonymous and the
    session is kept, since the client may well still hold the certificate. Other sessions
    (a password login) are kept."""
    session = getattr(request, "session", None)
    if session is None:
        return
    from django.contrib import auth
    from django.contrib.auth.models import AnonymousUser

    if session.get(auth.BACKEND_SESSION_KEY) in _backend_paths:
        if log_out:
            auth.logout(request)
        _set_user(request, AnonymousUser())


_AUTH_MIDDLEWARE = "django.contrib.auth.middleware.AuthenticationMiddleware"
_THIS_MIDDLEWARE = "mtlsauth.adapters.django.MTLSMiddleware"


def _check_order() -> None:
    """``AuthenticationMiddleware`` after this one replaces the ``request.user`` the
    certificate mapped to with the session's (or an anonymous) user on every request: the
    backend would never apply. Refused at start-up, as other misconfigurations are."""
    middleware = list(getattr(settings, "MIDDLEWARE", None) or ())
    if (
        _THIS_MIDDLEWARE in middleware
        and _AUTH_MIDDLEWARE in middleware
        and middleware.index(_AUTH_MIDDLEWARE) > middleware.index(_THIS_MIDDLEWARE)
    ):
        raise ImproperlyConfigured(
            f"{_AUTH_MIDDLEWARE} must come before {_THIS_MIDDLEWARE} in MIDDLEWARE: "
            "after it, it replaces the user the client certificate maps to"
        )


def _cached(
    request: HttpRequest,
    guard: Guard,
    main: tuple[str, bytes] | None,
    peer: str | None,
    path: str,
    method: str,
    raw: bytes | str | None,
) -> ClientIdentity | None:
    """The identity of a request whose one certificate header a cached verification admits
    with nothing else to decide (``Guard.cached``; from a trusted proxy, so nothing to
    hide); ``None``: ``Guard.check`` decides it. Leaves to ``check`` every request whose
    TLS layer says anything (``presented_from_request`` reads it, and may refuse it).
    Under ASGI the header is read from the scope, as ``presented_from_request`` does."""
    if main is None:
        return None
    meta = request.META
    scope = getattr(request, "scope", None)  # django.core.handlers.asgi.ASGIRequest
    header: str | bytes | None
    if isinstance(scope, dict):
        try:
            if _scope_tls(scope) is not None:
                return None  # the TLS extension: its chain and error are read by check
        except AmbiguousRequest:
            return None  # presented_from_request refuses it
        try:
            found = _single_header(scope.get("headers", ()), main[1])
        except (TypeError, ValueError):
            return None  # presented_from_request refuses it
        if found is None or found is False:
            return None  # absent, two copies, or headers presented_from_request refuses
        header = found
    else:
        header = meta.get(main[0])
        if not isinstance(header, str):
            return None
    if meta.get("SSL_CLIENT_CERT"):
        return None
    verify = meta.get("SSL_CLIENT_VERIFY")
    if isinstance(verify, str) and verify.startswith("FAILED"):
        return None
    return guard.cached(peer, path, method, raw, header=header)


def _scope_identity(request: HttpRequest) -> tuple[bool, ClientIdentity | None]:
    """The identity ``mtlsauth.adapters.asgi.MTLSMiddleware`` put in the ASGI scope of a
    Django request served behind it: ``(True, identity or None)``, or ``(False, None)``
    when that middleware did not run (not ASGI, or no such key, or a value of another
    type). The scope is the server's and the middleware's, never the client's."""
    scope = getattr(request, "scope", None)  # django.core.handlers.asgi.ASGIRequest
    if isinstance(scope, dict) and ASGI_IDENTITY_KEY in scope:
        identity = scope[ASGI_IDENTITY_KEY]
        if identity is None or isinstance(identity, ClientIdentity):
            return True, identity
    return False, None


def identity_from_request(request: HttpRequest) -> ClientIdentity | None:
    """The identity ``MTLSMiddleware`` attached to ``request`` (``None``: none established),
    else, under ASGI, the one ``mtlsauth.adapters.asgi.MTLSMiddleware`` put in the scope.

    Raises:
        mtlsauth.IdentityMissing: neither middleware ran for this request.
    """
    try:
        return request.mtls_identity  # type: ignore[no-any-return]
    except AttributeError:
        found, identity = _scope_identity(request)
        if found:
            return identity
        raise IdentityMissing(
            "no mtlsauth identity on the request: add "
            "'mtlsauth.adapters.django.MTLSMiddleware' to settings.MIDDLEWARE"
        ) from None


def _create_users(setting: str = "MTLSAUTH_CREATE_USERS") -> bool:
    """Whether unknown usernames are created: ``True`` or ``False`` and nothing else.

    Read as a truth value, ``"False"``, ``"no"`` or ``"0"`` (a setting taken from the
    environment) would be true, and every certificate the policy admits would open an
    account of its own.
    """
    value = getattr(settings, setting, False)
    if not isinstance(value, bool):
        raise ImproperlyConfigured(
            f"{setting} must be True or False, not {value!r} (a setting read from the "
            f"environment is a string: compare it, e.g. os.environ.get(...) == '1')"
        )
    return value


def _username_function() -> Callable[[ClientIdentity], tuple[str, ...]]:
    choice = getattr(settings, "MTLSAUTH_USERNAME", "common_name")
    if callable(choice):
        fn = choice
    elif isinstance(choice, str) and choice in USERNAME_FIELDS:
        return USERNAME_FIELDS[choice]
    elif isinstance(choice, str) and "." in choice:
        fn = _import(choice, "MTLSAUTH_USERNAME")
    else:
        raise ImproperlyConfigured(
            f"MTLSAUTH_USERNAME must be one of {', '.join(sorted(USERNAME_FIELDS))}, a "
            f"callable or a dotted path to one, not {choice!r}"
        )

    def custom(identity: ClientIdentity) -> tuple[str, ...]:
        name = fn(identity)
        return (name,) if isinstance(name, str) and name else ()

    return custom


class MTLSBackend:
    """Authentication backend: the user a verified ``ClientIdentity`` maps to.

    ``authenticate(request, mtls_identity=identity)`` maps the identity to a username with
    ``MTLSAUTH_USERNAME`` (default: the common name), then returns the active user of that
    username, creating it first when ``MTLSAUTH_CREATE_USERS`` is true (with an unusable
    password). It returns ``None`` for anything else: no identity, a field with no value or
    several values, an unknown user, an inactive one. It never accepts a password.

    Subclass it and override ``username_for`` or ``configure_user`` for other mappings.
    """

    create_unknown_user_setting = "MTLSAUTH_CREATE_USERS"

    def authenticate(
        self,
        request: HttpRequest | None,
        mtls_identity: ClientIdentity | None = None,
        **credentials: object,
    ) -> AbstractBaseUser | None:
        if not isinstance(mtls_identity, ClientIdentity) or credentials:
            return None
        username = self.username_for(mtls_identity)
        if not isinstance(username, str) or not username or not username.isprintable():
            # Held here too, not only in ``username_for``: a subclass's own mapping (the
            # documented way to map otherwise) may give a number, which has no length, or a
            # NUL, which PostgreSQL refuses with an error; either would be a 500.
            return None
        from django.contrib.auth import get_user_model

        user_model = get_user_model()
        field = user_model.USERNAME_FIELD
        limit = getattr(user_model._meta.get_field(field), "max_length", None)
        if isinstance(limit, int) and len(username) > limit:
            # No such user can exist, and creating one is a database error (a 500) where
            # the column is bounded (PostgreSQL, MySQL): the certificate names no user.
            return None
        if _create_users(self.create_unknown_user_setting):
            user, created = user_model._default_manager.get_or_create(**{field: username})
            if created:
                user.set_unusable_password()
                user = self.configure_user(request, user, mtls_identity)
                user.save()
        else:
            try:
                user = user_model._default_manager.get_by_natural_key(username)
            except user_model.DoesNotExist:
                return None
        return user if self.user_can_authenticate(user) else None

    def username_for(self, identity: ClientIdentity) -> str | None:
        """The username for ``identity``, or ``None`` when it names no single user.

        A value with a character that is not printable (NUL and other controls, a line or
        paragraph separator, an unpaired surrogate, a format character such as a
        right-to-left mark) names no user either: no one was given such a name, PostgreSQL
        refuses a NUL in a query with an error (a 500), and a look-alike of another user's
        name is not theirs."""
        values = _username_function()(identity)
        if len(values) != 1:
            return None
        name = values[0]
        return name if isinstance(name, str) and name.isprintable() else None

    def _refuses(self, identity: ClientIdentity) -> bool:
        """True when ``identity`` names a user that exists and that ``user_can_authenticate``
        refuses (an inactive one): ``authenticate`` answers ``None`` for it, as for a
        certificate that names no user, and callers that admit the latter must tell the
        two apart."""
        username = self.username_for(identity)
        if not isinstance(username, str) or not username or not username.isprintable():
            return False
        from django.contrib.auth import get_user_model

        user_model = get_user_model()
        try:
            user = user_model._default_manager.get_by_natural_key(username)
        except user_model.DoesNotExist:
            return False
        return not self.user_can_authenticate(user)

    def configure_user(
        self, request: HttpRequest | None, user: AbstractBaseUser, identity: ClientIdentity
    ) -> AbstractBaseUser:
        """Called once for a user created from a certificate; returns the user to save."""
        return user

    def user_can_authenticate(self, user: AbstractBaseUser) -> bool:
        """Inactive users are refused, as Django's own ``ModelBackend`` does."""
        return getattr(user, "is_active", True) is not False

    def get_user(self, user_id: object) -> AbstractBaseUser | None:
        from django.contrib.auth import get_user_model

        user_model = get_user_model()
        try:
            user = user_model._default_manager.get(pk=user_id)
        except (user_model.DoesNotExist, ValueError, TypeError):
            return None
        return user if self.user_can_authenticate(user) else None


_backends: tuple[tuple[object, ...], tuple[MTLSBackend, ...]] = ((), ())
_backend_paths: frozenset[str] = frozenset()  # the dotted paths of those backends


def _certificate_backends() -> tuple[MTLSBackend, ...]:
    """The backends of ``AUTHENTICATION_BACKENDS`` that map certificates to users:
    ``MTLSBackend`` and its subclasses (the documented way to map otherwise), in order."""
    global _backends, _backend_paths
    paths = tuple(settings.AUTHENTICATION_BACKENDS)
    known, found = _backends
    if known != paths:
        from django.utils.module_loading import import_string

        kept: list[MTLSBackend] = []
        kept_paths: set[str] = set()
        for dotted in paths:
            if dotted == BACKEND_PATH:
                kept.append(MTLSBackend())
                kept_paths.add(dotted)
                continue
            if not isinstance(dotted, str) or dotted.startswith("django."):
                continue  # Django's own backends (ModelBackend needs the auth app)
            try:
                cls = import_string(dotted)
            except Exception:  # noqa: BLE001, S112 - Django's own authenticate() reports it
                continue
            if isinstance(cls, type) and issubclass(cls, MTLSBackend):
                kept.append(cls())
                kept_paths.add(dotted)
        found = tuple(kept)
        _backend_paths = frozenset(kept_paths)
        _backends = (paths, found)
    return found
