"""WSGI middleware (Flask, Django, any PEP 3333 app): no framework import.

Example:
    >>> from flask import Flask
    >>> from mtlsauth import Verifier
    >>> from mtlsauth.testing import CA
    >>> from mtlsauth.adapters.wsgi import MTLSMiddleware
    >>> app = Flask(__name__)
    >>> app.wsgi_app = MTLSMiddleware(app.wsgi_app, verifier=Verifier(trust_store=CA().trust_store()))

Where the certificate comes from, in order: ``environ["SSL_CLIENT_CERT"]`` plus
``SSL_CLIENT_CERT_CHAIN_0..n`` (mod_wsgi with ``SSLOptions +ExportCertData``, werkzeug's
server with ``ssl_context``), gunicorn's ``environ["gunicorn.socket"]`` when it is an
``ssl.SSLSocket``, and, from trusted proxies only, the ``ForwardedCert`` header.
"""

from __future__ import annotations

import http
import logging
import socket
import ssl
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, cast

from mtlsauth._errors import AmbiguousRequest, IdentityMissing, MTLSAuthError
from mtlsauth._forwarded._trust import UNIX_PEER
from mtlsauth._guard import Decision, Guard, Mode, RequestView, Route, problem_body, problem_headers
from mtlsauth._hooks import REFUSAL_MIN_STATUS, is_coroutine_callable
from mtlsauth._identity import ClientIdentity
from mtlsauth._oauth import TOKEN_KEY
from mtlsauth._problem import refusal_status
from mtlsauth._sslcontext import peer_chain, unrequested_hint
from mtlsauth._types import Presented

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from mtlsauth._verifier import Verifier

__all__ = [
    "IDENTITY_KEY",
    "MTLSMiddleware",
    "Route",
    "answer_refusal",
    "identity_from_environ",
    "problem_response",
]

IDENTITY_KEY = "mtlsauth.identity"
MIDDLEWARE_KEY = "mtlsauth.middleware"
"""The ``MTLSMiddleware`` that admitted the request: ``answer_refusal`` answers through it."""
logger = logging.getLogger("mtlsauth")

_CHAIN_KEYS = tuple(f"SSL_CLIENT_CERT_CHAIN_{i}" for i in range(16))


class MTLSMiddleware:
    """Authenticate every request by its client certificate.

    Args:
        app: The WSGI application to protect (for Flask: ``app.wsgi_app``).
        verifier: The ``Verifier`` (trust store, policy, optional ``ForwardedCert``).
        mode: ``"mandatory"`` (default), ``"optional"`` or ``"off"``.
        routes: ``Route`` rules, first match wins, matched against ``PATH_INFO`` (decoded
            as UTF-8), the path werkzeug and Django route; ``SCRIPT_NAME`` is not part of it.
        exempt_paths: Paths never checked, e.g. ``{"/healthz"}``.
        on_error: ``on_error(error, environ)`` returning a WSGI app (a Flask/werkzeug
            ``Response`` is one) to answer a refusal, or ``None`` for the default
            problem+json answer. If it raises, or returns anything but a WSGI app, or that
            app fails, the default answer is sent; a success status (1xx, 2xx) in its
            answer is replaced by the refusal's. An ``async def`` hook is refused with
            ``TypeError`` (nothing awaits it under WSGI).
        on_decision: ``on_decision(decision)``, called for every request; exceptions are
            logged and ignored.

    The app finds ``environ["mtlsauth.identity"]`` (a ``ClientIdentity`` or ``None``); read
    it with ``identity_from_environ``. An ``MTLSAuthError`` the app raises before it returns
    is answered as problem+json too. The middleware keeps no per-request state and is
    safe under threaded servers.

    With exempt paths or routes configured, a request target (``RAW_URI`` or
    ``REQUEST_URI``) that could be routed two ways is refused with 400 ``ambiguous_path``.

    Security note: the forwarded-certificate header's ``HTTP_*`` key is deleted from the
    environ for peers (``REMOTE_ADDR``) that are not trusted proxies, in every mode. WSGI
    folds ``-`` and ``_`` into one key and joins repeated headers with commas, so a
    forged ``X_Client_Cert`` lands on the same key and is deleted as well. From a trusted
    proxy the two spellings are only told apart when the server joins them (a comma is
    refused): Twisted and cheroot keep the later one, so the proxy must send its header after
    every underscore spelling, or remove them (``docs/proxies.md``).
    """

    def __init__(
        self,
        app: WSGIApplication,
        *,
        verifier: Verifier,
        mode: Mode = "mandatory",
        routes: Sequence[Route] = (),
        exempt_paths: Iterable[str] = (),
        on_error: Callable[[MTLSAuthError, WSGIEnvironment], Any] | None = None,
        on_decision: Callable[[Decision], object] | None = None,
    ) -> None:
        self.app = app
        self.guard = Guard(
            verifier=verifier,
            mode=mode,
            routes=routes,
            exempt_paths=exempt_paths,
            on_error=on_error,
            on_decision=on_decision,
        )
        if is_coroutine_callable(on_error):
            raise TypeError(
                "on_error must be a plain function under WSGI: nothing awaits an async def hook"
            )
        self._strip_keys = tuple(
            "HTTP_" + n.upper().replace("-", "_") for n in sorted(self.guard.strip_names)
        )
        self._read_keys = tuple(
            "HTTP_" + n.upper().replace("-", "_") for n in sorted(self.guard.read_names)
        )
        fwd = self.guard.forwarded
        plain = fwd.plain_header if fwd is not None else None
        self._main_key = "HTTP_" + plain.upper().replace("-", "_") if plain is not None else None

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        identity = self._cached(environ)
        if identity is None:
            decision = self.guard.check(self._view(environ))
            if decision.error is not None:
                return self._deny(decision.error, environ, start_response)
            identity = decision.identity
            if decision.route is not None and decision.route.token is not None:
                environ[TOKEN_KEY] = decision.token
            if decision.hide:
                for key in self._strip_keys:
                    environ.pop(key, None)
        # (a hit is from a trusted proxy: nothing to hide, no token route)
        environ[IDENTITY_KEY] = identity
        environ[MIDDLEWARE_KEY] = self  # for answer_refusal
        try:
            return self.app(environ, start_response)
        except MTLSAuthError as exc:
            # A refusal the app raised before it returned (``check_token``, a stricter
            # ``Policy.check``): answered as the middleware's own, not as the server's 500.
            # Nothing of the app's answer has been sent (its body is not returned yet), so
            # with exc_info the server takes these headers in place of any the app set
            # (PEP 3333), whether or not it called start_response: no wrapper per request.
            self._refused_by_app(exc, environ, identity)
            return self._deny(exc, environ, start_response, sys.exc_info())

    def _refused_by_app(
        self, error: MTLSAuthError, environ: WSGIEnvironment, identity: ClientIdentity | None
    ) -> None:
        """Report a refusal of the app's as the middleware's own are: ``on_decision`` and
        the log line."""
        path, method, _raw, _unreadable = _request_line(environ, self.guard.path_sensitive)
        self.guard.refused_by_app(error, _peer(environ), path, method, identity)

    def _cached(self, environ: WSGIEnvironment) -> ClientIdentity | None:
        """The identity of a request whose one certificate header a cached verification
        admits with nothing else to decide (``Guard.cached``); ``None``: ``Guard.check``
        decides it. Reads the environ as ``_view`` and ``presented_from_environ`` do."""
        key = self._main_key
        if key is None:
            return None
        header = environ.get(key)
        if not isinstance(header, str) or environ.get("SSL_CLIENT_CERT"):
            return None
        verify = environ.get("SSL_CLIENT_VERIFY")
        if isinstance(verify, str) and verify.startswith("FAILED"):
            return None
        path, method, raw, unreadable = _request_line(environ, self.guard.path_sensitive)
        if unreadable is not None:
            return None
        return self.guard.cached(_peer(environ), path, method, raw, header=header)

    def _view(self, environ: WSGIEnvironment) -> RequestView:
        peer = _peer(environ)
        path, method, raw, unreadable = _request_line(environ, self.guard.path_sensitive)
        return RequestView(
            peer=peer,
            path=path,
            method=method,
            raw_target=raw,
            unreadable=unreadable,
            credentials=lambda: presented_from_environ(
                environ, path, method, header_keys=self._read_keys, peer=peer
            ),
            authorization=lambda: _authorization(environ),
        )

    def _deny(
        self,
        error: MTLSAuthError,
        environ: WSGIEnvironment,
        start_response: StartResponse,
        exc_info: Any = None,
    ) -> Iterable[bytes]:
        status_line, headers, body = self.refusal_answer(error, environ)
        _start(start_response, status_line, headers, exc_info)
        return body

    def refusal_answer(
        self, error: MTLSAuthError, environ: WSGIEnvironment
    ) -> tuple[str, list[tuple[str, str]], list[bytes]]:
        """(status line, headers, body) of the answer to ``error``: the ``on_error`` app's,
        or the default problem+json answer."""
        result = self.guard.error_hook_result(error, environ)
        if result is not None:
            if not callable(result):
                self.guard.hook_misused(
                    "on_error", "not an app", "returned something that is not a WSGI app"
                )
            else:
                try:
                    return self._hook_answer(cast("WSGIApplication", result), error, environ)
                except Exception as exc:  # noqa: BLE001 - the refusal stands: default answer
                    self.guard.hook_failed("on_error", exc)
        body, status, headers = problem_response(error)
        return f"{status} {http.HTTPStatus(status).phrase}", headers, [body]

    def _hook_answer(
        self, responder: WSGIApplication, error: MTLSAuthError, environ: WSGIEnvironment
    ) -> tuple[str, list[tuple[str, str]], list[bytes]]:
        """The ``on_error`` app's answer, as a refusal: (status line, headers, body), a
        success status replaced by the refusal's own.

        The answer is read here, before anything reaches the server: an app that fails
        while its body is read (a generator), answers with something else than bytes,
        never calls ``start_response`` or passes it headers that are not a list of
        ``(name, value)`` strings raises here, and the caller sends the default answer
        instead of the server's 500."""
        head: list[tuple[str, Any]] = []
        chunks: list[bytes] = []

        def refusal_start_response(
            status: str, headers: Any, exc_info: Any = None
        ) -> Callable[[bytes], None]:
            code = status.split(" ", 1)[0] if isinstance(status, str) else ""
            if not (code.isascii() and code.isdigit() and int(code) >= REFUSAL_MIN_STATUS):
                self.guard.hook_misused(
                    "on_error",
                    "success status",
                    "answered a refusal with a success status: sent with the refusal's "
                    "status instead",
                )
                status = f"{refusal_status(error)} {http.HTTPStatus(refusal_status(error)).phrase}"
            head[:] = [(status, headers)]  # nothing is sent yet: a second call replaces it
            return chunks.append

        answer = responder(environ, refusal_start_response)
        try:
            chunks.extend(answer)  # a refusal's answer is small
        finally:
            close = getattr(answer, "close", None)
            if callable(close):
                close()
        if not head:
            raise TypeError("the on_error app never called start_response")
        status, headers = head[0]
        if not (
            isinstance(status, str)
            and type(headers) is list
            and all(
                type(pair) is tuple
                and len(pair) == 2
                and isinstance(pair[0], str)
                and isinstance(pair[1], str)
                for pair in headers
            )
        ):  # PEP 3333: a str status and a list of (name, value) str tuples
            raise TypeError("the on_error app passed start_response something else than headers")
        if not all(isinstance(chunk, bytes) for chunk in chunks):
            raise TypeError("the on_error app answered with something else than bytes")
        return status, headers, chunks


def _start(start_response: StartResponse, status: str, headers: Any, exc_info: Any) -> None:
    """``start_response`` with ``exc_info`` only when there is one (a refusal the app
    raised): a refusal of the middleware's own calls it as it always did."""
    if exc_info is None:
        start_response(status, headers)
    else:
        start_response(status, headers, exc_info)


def answer_refusal(
    error: MTLSAuthError, environ: WSGIEnvironment
) -> tuple[bytes, int | str, list[tuple[str, str]]]:
    """``(body, status, headers)`` for a refusal the app answers itself, as a Flask view or
    ``errorhandler`` returns it: behind ``MTLSMiddleware`` the middleware's answer (its
    ``on_error``, else problem+json), reported as its own refusals are (``on_decision``,
    the log line); without the middleware ``problem_response(error)``."""
    middleware = environ.get(MIDDLEWARE_KEY)
    if not isinstance(middleware, MTLSMiddleware):
        return problem_response(error)
    identity = environ.get(IDENTITY_KEY)
    middleware._refused_by_app(
        error, environ, identity if isinstance(identity, ClientIdentity) else None
    )
    status_line, headers, body = middleware.refusal_answer(error, environ)
    return b"".join(body), status_line, headers


def problem_response(error: MTLSAuthError) -> tuple[bytes, int, list[tuple[str, str]]]:
    """``(body, status, headers)`` of the problem+json answer for ``error``.

    Flask views and error handlers can return this tuple as it is, e.g. from
    ``@app.errorhandler(MTLSAuthError)``.
    """
    body = problem_body(error)
    return body, refusal_status(error), problem_headers(error, len(body))


def _authorization(environ: WSGIEnvironment) -> list[str]:
    auth = environ.get("HTTP_AUTHORIZATION")
    return [auth] if isinstance(auth, str) else []


def _peer(environ: WSGIEnvironment) -> str | None:
    """The socket peer: ``REMOTE_ADDR``, ``UNIX_PEER``, or ``None`` (unknown: never trusted).

    A Unix-domain socket is recognised by the family of the connection's socket, which
    gunicorn (``gunicorn.socket``) and werkzeug (``werkzeug.socket``) put in the environ;
    an empty or missing ``REMOTE_ADDR`` alone means nothing.

    werkzeug's ``ProxyFix`` wrapped outside the middleware replaces ``REMOTE_ADDR`` with
    an ``X-Forwarded-For`` address and keeps the server's own in
    ``werkzeug.proxy_fix.orig``: that one is the peer, never the header's.
    """
    for key in ("gunicorn.socket", "werkzeug.socket"):
        family = getattr(environ.get(key), "family", None)
        if family is not None:
            if family == getattr(socket, "AF_UNIX", object()):
                return UNIX_PEER
            break
    orig = environ.get("werkzeug.proxy_fix.orig")
    if orig is not None:
        addr = orig.get("REMOTE_ADDR") if isinstance(orig, dict) else None
    else:
        addr = environ.get("REMOTE_ADDR")
    return addr if isinstance(addr, str) and addr else None


def _request_line(
    environ: WSGIEnvironment, sensitive: bool
) -> tuple[str, str, str | None, AmbiguousRequest | None]:
    """(path as the router matches it, method, raw target, refusal).

    Routers (werkzeug, Django) match ``PATH_INFO``, below ``SCRIPT_NAME``, decoded as
    UTF-8 from the latin-1 string PEP 3333 makes of the request's bytes.
    """
    info = environ.get("PATH_INFO") or "/"
    method = environ.get("REQUEST_METHOD") or "GET"
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if not isinstance(info, str) or not isinstance(method, str):
        return (
            "/",
            "GET",
            None,
            AmbiguousRequest("the server passed an unreadable request", code="request_malformed"),
        )
    if not isinstance(raw, str):
        raw = None
    try:
        path = info.encode("latin-1").decode("utf-8")
    except UnicodeError:
        # Frameworks substitute or re-escape such bytes; which handler runs is anyone's
        # guess, so refuse when the path matters.
        path = info.encode("latin-1", "replace").decode("utf-8", "replace")
        if sensitive:
            return (
                path,
                method,
                raw,
                AmbiguousRequest(
                    "the request target can be read more than one way: "
                    "percent-encoded bytes that are not UTF-8"
                ),
            )
    return path, method, raw, None


def presented_from_environ(
    environ: WSGIEnvironment,
    path: str | None = None,
    method: str | None = None,
    *,
    header_keys: Sequence[str] | None = None,
    peer: str | None = None,
) -> Presented:
    """Build the core's ``Presented`` from a WSGI environ.

    Raises ``AmbiguousRequest`` (``request_malformed``) when the server put a certificate
    of another type than ``str`` in ``SSL_CLIENT_CERT*``.

    ``header_keys`` limits the headers taken to these environ keys (``HTTP_X_SSL_CLIENT_CERT``):
    the middleware passes the certificate headers, the only ones the core reads. ``peer``
    overrides the peer found in the environ (the middleware passes the one it found).
    """
    if header_keys is not None:
        headers = tuple(
            (k[5:].lower().replace("_", "-"), v)
            for k in header_keys
            if isinstance(v := environ.get(k), str)
        )
    else:
        headers = tuple(
            (k[5:].lower().replace("_", "-"), v)
            for k, v in environ.items()
            if k.startswith("HTTP_") and isinstance(v, str)
        )
    chain: tuple[str | bytes, ...] = ()
    hint: str | None = None
    leaf = environ.get("SSL_CLIENT_CERT")
    if leaf:
        more = []
        for key in _CHAIN_KEYS:
            c = environ.get(key)
            if not c:
                break
            more.append(c)
        chain = (leaf, *more)
        if not all(isinstance(c, str | bytes) for c in chain):
            raise AmbiguousRequest(
                "the server passed a certificate that is not text", code="request_malformed"
            )
    else:
        sock = environ.get("gunicorn.socket")
        if isinstance(sock, ssl.SSLSocket):
            chain = peer_chain(sock)
            hint = unrequested_hint(sock)
    verify = environ.get("SSL_CLIENT_VERIFY")  # mod_ssl: NONE, SUCCESS, GENEROUS, FAILED:...
    tls_error = verify if isinstance(verify, str) and verify.startswith("FAILED") else None
    return Presented(
        peer=peer if peer is not None else _peer(environ),
        headers=headers,
        tls_chain=chain,
        tls_error=tls_error,
        path=path if path is not None else (environ.get("PATH_INFO") or "/"),
        method=method if method is not None else (environ.get("REQUEST_METHOD") or "GET"),
        tls_hint=hint,
    )


def identity_from_environ(environ: WSGIEnvironment) -> ClientIdentity | None:
    """The identity ``MTLSMiddleware`` attached to this request.

    Works with ``flask.request.environ`` and Django's ``request.META`` (the same dict).

    Returns:
        The verified ``ClientIdentity``, or ``None`` when the middleware ran but
        established none (optional mode without a certificate, mode ``"off"``, an exempt
        path).

    Raises:
        IdentityMissing: the middleware did not run for this request.
    """
    try:
        return environ[IDENTITY_KEY]  # type: ignore[no-any-return]
    except KeyError:
        raise IdentityMissing(
            "no mtlsauth identity in the WSGI environ: wrap the app in "
            "mtlsauth.adapters.wsgi.MTLSMiddleware"
        ) from None
