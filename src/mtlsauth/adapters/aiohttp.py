"""aiohttp middleware: ``web.Application(middlewares=[mtls_middleware(verifier=...)])``.

Example:
    >>> from aiohttp import web
    >>> from mtlsauth import Verifier
    >>> from mtlsauth.testing import CA
    >>> from mtlsauth.adapters.aiohttp import mtls_middleware
    >>> app = web.Application(middlewares=[mtls_middleware(verifier=Verifier(trust_store=CA().trust_store()))])

The certificate comes from the connection's ``ssl_object`` (the whole chain the client sent
on Python 3.13+, the leaf only before: then intermediates come from
``Verifier(intermediates=...)``) or, from trusted proxies only, the ``ForwardedCert`` header.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from aiohttp import __version__ as _aiohttp_version
from aiohttp import web
from multidict import CIMultiDict

from mtlsauth._errors import AmbiguousRequest, IdentityMissing, MTLSAuthError
from mtlsauth._forwarded._trust import UNIX_PEER
from mtlsauth._guard import Decision, Guard, Mode, RequestView, Route, problem_body, problem_headers
from mtlsauth._hooks import REFUSAL_MIN_STATUS
from mtlsauth._identity import ClientIdentity
from mtlsauth._problem import refusal_status
from mtlsauth._sslcontext import peer_chain, unrequested_hint
from mtlsauth._types import Presented

if TYPE_CHECKING:
    from mtlsauth._verifier import Verifier

__all__ = [
    "IDENTITY_KEY",
    "TOKEN_KEY",
    "Route",
    "answer_refusal",
    "get_identity",
    "mtls_middleware",
    "problem_response",
]

logger = logging.getLogger("mtlsauth")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
OnError = Callable[[MTLSAuthError, web.Request], Any]

# A typed request key where aiohttp has one (3.14+); a plain string before that, where
# string keys raise no warning.
_RequestKey = getattr(web, "RequestKey", None)
IDENTITY_KEY: Any = (
    _RequestKey("mtlsauth.identity", ClientIdentity) if _RequestKey else "mtlsauth.identity"
)
TOKEN_KEY: Any = _RequestKey("mtlsauth.token", object) if _RequestKey else "mtlsauth.token"
ANSWER_KEY: Any = _RequestKey("mtlsauth.answer", object) if _RequestKey else "mtlsauth.answer"
"""The admitting middleware's answer to a refusal a handler's decorator meets: through
``on_error``, reported to ``on_decision`` and the log (``answer_refusal``)."""
_VERSION = tuple(int(p) for p in _aiohttp_version.split(".")[:2] if p.isdigit())
_MARK_MIDDLEWARE = _VERSION < (4,)  # 4.0 deprecates @middleware
# Before 3.10 the router matched the still-encoded path: every encoded ASCII character is
# then another spelling of a route.
_RAW_ROUTER = _VERSION < (3, 10)


def _peer(transport: asyncio.BaseTransport | None) -> str | None:
    """The socket peer: an address, ``UNIX_PEER``, or ``None`` (unknown: never trusted)."""
    if transport is None:  # the client went away before this middleware ran
        return None
    peername = transport.get_extra_info("peername")
    if type(peername) is tuple and peername and type(peername[0]) is str and peername[0]:
        # An IP socket's (host, port, ...): a Unix-domain socket's peer name is a path,
        # never a tuple, so the socket's family (an enum built per read) is not needed.
        return peername[0]
    sock = transport.get_extra_info("socket")
    if getattr(sock, "family", None) == getattr(socket, "AF_UNIX", object()):
        return UNIX_PEER
    if isinstance(peername, list | tuple) and peername:
        host = peername[0]
        if isinstance(host, str) and host:
            return host
    return None


def mtls_middleware(
    *,
    verifier: Verifier,
    mode: Mode = "mandatory",
    routes: Sequence[Route] = (),
    exempt_paths: Iterable[str] = (),
    on_error: OnError | None = None,
    on_decision: Callable[[Decision], object] | None = None,
    verification_threads: int = 4,
    verification_queue: int = 64,
) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """Build the middleware that authenticates every request by its client certificate.

    Args:
        verifier: The ``Verifier`` (trust store, policy, optional ``ForwardedCert``).
        mode: ``"mandatory"`` (default), ``"optional"`` or ``"off"``.
        routes: ``Route`` rules, first match wins, matched against ``request.path`` (the
            path in full, including any sub-application prefix, as the router sees it).
        exempt_paths: Paths never checked, e.g. ``{"/healthz"}``.
        on_error: ``on_error(error, request)`` returning a ``web.StreamResponse`` (or a
            coroutine of one) to answer a refusal, or ``None`` for the default problem+json
            answer. If it raises or returns anything else, the default answer is sent; a
            success status (1xx, 2xx) on its response is replaced by the refusal's, and a
            response the hook already prepared with one drops the connection instead.
        on_decision: ``on_decision(decision)``, called for every request; exceptions are
            logged and ignored.
        verification_threads, verification_queue: The bounded pool that runs
            verifications whose result is not cached (see ``Guard``); past it, requests
            are refused with 503 ``verification_busy``. Cached results are answered on the
            event loop.

    With exempt paths or routes configured, a raw target that aiohttp's router could read
    other than ``request.path`` (an encoded ``/``, a dot segment, double encoding, ...) is
    refused with 400 ``ambiguous_path``.

    Handlers read the identity with ``get_identity(request)``. An ``MTLSAuthError``
    raised by a handler before it prepared a response of its own is answered as
    problem+json too (after that, aiohttp closes the connection).

    Security note: the peer is the socket's address (``peername``), never
    ``request.remote``, which other middlewares may rewrite from ``X-Forwarded-For``; a
    Unix-domain socket is recognised by the socket's family, and a connection that is
    already gone (no transport) has an unknown peer, which is never a trusted proxy.
    Forwarded-certificate headers from untrusted peers are removed from the request the
    handler sees, in every mode.
    """
    guard = Guard(
        verifier=verifier,
        mode=mode,
        routes=routes,
        exempt_paths=exempt_paths,
        on_error=on_error,
        on_decision=on_decision,
        verification_threads=verification_threads,
        verification_queue=verification_queue,
    )
    strip_names = guard.strip_names
    wanted = frozenset(n.encode("latin-1") for n in guard.read_names)  # all the core reads
    hide = frozenset(n.replace("_", "-") for n in strip_names)  # every spelling, as in ASGI
    hide_raw = frozenset(n.encode("latin-1") for n in hide)

    def credentials(request: web.Request, peer: str | None) -> Presented:
        transport = request.transport
        ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
        return Presented(
            peer=peer,
            headers=tuple(
                (k.lower().decode("latin-1"), v.decode("latin-1"))
                for k, v in request.raw_headers
                if k.lower() in wanted
            ),
            tls_chain=peer_chain(ssl_object),
            path=request.path,
            method=request.method,
            tls_hint=unrequested_hint(ssl_object),
        )

    fwd = guard.forwarded
    plain = fwd.plain_header if fwd is not None else None
    main = plain.encode("latin-1") if plain is not None else None
    size = len(main) if main is not None else 0
    sensitive = guard.path_sensitive

    def cached(request: web.Request, transport: Any, peer: str | None) -> ClientIdentity | None:
        """The identity of a request that a cached verification admits with nothing else
        to decide or change (``Guard.cached``; no header to hide); ``None``:
        ``Guard.acheck`` decides it. Reads the request as ``credentials`` does, and only
        what a hit needs: the path is not decoded unless routes, exempt paths or a
        reader of decisions use it."""
        raw_headers = request.raw_headers
        header: bytes | None = None
        if main is not None:
            for k, v in raw_headers:
                if len(k) == size and k.lower() == main:
                    if header is not None:
                        return None  # two copies: refused
                    header = v
        path = request.path if sensitive or guard.reporting else None
        raw_path = request.raw_path if sensitive else None
        if header is not None:
            return guard.cached(
                peer, path, request.method, raw_path, header, strict_target=_RAW_ROUTER
            )
        ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
        if ssl_object is None:
            return None
        chain = peer_chain(ssl_object)
        if not chain:
            return None
        if guard.must_strip(peer) and any(
            k.lower().replace(b"_", b"-") in hide_raw for k, _ in raw_headers
        ):
            return None  # a header to hide: acheck decides, and the request is cloned
        return guard.cached(
            peer, path, request.method, raw_path, None, chain, strict_target=_RAW_ROUTER
        )

    async def answer(request: web.Request, error: MTLSAuthError) -> web.StreamResponse:
        identity = request.get(IDENTITY_KEY)
        guard.refused_by_app(
            error,
            _peer(request.transport),
            request.path,
            request.method,
            identity if isinstance(identity, ClientIdentity) else None,
        )
        return await _deny(guard, error, request)

    async def mtlsauth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        transport = request.transport
        # _peer's first case inline: an IP socket's (host, port, ...)
        name = transport.get_extra_info("peername") if transport is not None else None
        if type(name) is tuple and name and type(name[0]) is str and name[0]:
            peer: str | None = name[0]
        else:
            peer = _peer(transport)
        identity = cached(request, transport, peer)
        if identity is not None:
            request[IDENTITY_KEY] = identity
            request[ANSWER_KEY] = answer
            try:
                return await handler(request)
            except MTLSAuthError as exc:
                if _response_started(request):
                    raise
                guard.refused_by_app(exc, peer, request.path, request.method, identity)
                return await _deny(guard, exc, request)
        decision = await guard.acheck(
            RequestView(
                peer=peer,
                path=request.path,
                method=request.method,
                raw_target=request.raw_path,
                strict_target=_RAW_ROUTER,
                credentials=lambda: credentials(request, peer),
                authorization=lambda: request.headers.getall("Authorization", []),
            ),
            defer=True,  # reported below, once the headers are hidden (or refused)
        )
        if decision.error is not None:
            return await _deny(guard, decision.error, request)
        # Clone the request only when a header must actually be hidden from the handler.
        # The identity goes on both requests: the middlewares before this one (and the
        # access logger) keep the one aiohttp made, whatever headers the client added.
        seen = request
        if decision.hide and any(
            k.lower().replace(b"_", b"-") in hide_raw for k, _ in request.raw_headers
        ):
            kept = [
                (k, v)
                for k, v in request.headers.items()
                if k.lower().replace("_", "-") not in hide
            ]
            try:
                # A CIMultiDict: aiohttp before 3.10 accepts only a mapping here, and it
                # keeps repeated headers, which a dict would not. clone() re-encodes every
                # header as UTF-8, which a header that arrived as other bytes cannot be;
                # and it refuses (RuntimeError) a request whose body a middleware before
                # this one has read. Before 3.10 it asserts that the connection is still
                # there, which a client that went away meanwhile makes a traceback.
                if request.transport is None:
                    raise RuntimeError("the connection closed before the header was hidden")
                request = request.clone(headers=CIMultiDict(kept), **_overrides(request))
            except (UnicodeError, RuntimeError) as exc:
                error = AmbiguousRequest(
                    "a header that is not UTF-8 came with a certificate header to remove"
                    if isinstance(exc, UnicodeError)
                    else "a request that cannot be copied came with a certificate header to remove",
                    code="request_malformed",
                )
                guard.refuse(error, peer, decision.path, decision.method)
                return await _deny(guard, error, request)
        if decision.hide:
            guard.report(decision)
        route = decision.route
        for each in (request,) if seen is request else (seen, request):
            each[IDENTITY_KEY] = decision.identity
            each[ANSWER_KEY] = answer
            if route is not None and route.token is not None:
                each[TOKEN_KEY] = decision.token
        try:
            return await handler(request)
        except MTLSAuthError as exc:
            if _response_started(request):
                raise
            guard.refused_by_app(exc, peer, decision.path, decision.method, decision.identity)
            return await _deny(guard, exc, request)

    if _MARK_MIDDLEWARE:
        return web.middleware(mtlsauth_middleware)
    return mtlsauth_middleware


def _overrides(request: web.Request) -> dict[str, Any]:
    """What an earlier ``clone(remote=..., scheme=..., host=...)`` set (a proxy-fix
    middleware placed before this one, such as aiohttp-remotes): a clone made from the
    message alone would go back to the socket's address and scheme and to the ``Host``
    header. ``host`` is passed only when it costs nothing: aiohttp before 3.10 answers a
    request without ``Host`` (and without an override) with ``socket.getfqdn()``, a
    blocking lookup."""
    found: dict[str, Any] = {"remote": request.remote, "scheme": request.scheme}
    if "host" in getattr(request, "_cache", ()) or "Host" in request.headers:
        found["host"] = request.host
    return found


def _response_started(request: web.Request) -> bool:
    """True when the handler already prepared a response of its own (a ``StreamResponse``):
    its status line is sent or queued, so a refusal cannot be answered any more (a second
    response would land inside the first one's body). aiohttp then answers the exception
    itself by closing the connection, as it does for any error after the response began."""
    writer = request.writer
    return bool(getattr(writer, "output_size", 0) or getattr(writer, "_headers_buf", None))


def _drop(request: web.Request) -> None:
    """Abort the connection: whatever is still buffered (aiohttp 3.10+ holds a prepared
    response's headers until its first body write) is discarded, and aiohttp's own writes
    that follow fail as a client disconnection, which it logs quietly."""
    transport = request.transport
    if transport is not None:
        abort = getattr(transport, "abort", None)
        (abort if callable(abort) else transport.close)()


async def _deny(guard: Guard, error: MTLSAuthError, request: web.Request) -> web.StreamResponse:
    result = await guard.error_hook_result_async(error, request)
    if isinstance(result, web.StreamResponse):
        if result.status < REFUSAL_MIN_STATUS:
            if result.prepared or _response_started(request):
                # The hook prepared it (a 200 stream, an accepted websocket): its status
                # line is queued or sent and cannot be changed. The connection is dropped
                # before anything more goes out, and the response's end is never written.
                guard.hook_misused(
                    "on_error",
                    "success status",
                    "prepared a response with a success status to a refusal: "
                    "the connection is closed instead",
                )
                _drop(request)
                return result
            guard.hook_misused(
                "on_error",
                "success status",
                "answered a refusal with a success status: sent with the refusal's status instead",
            )
            result.set_status(refusal_status(error))
        return result
    if result is not None:
        guard.hook_misused(
            "on_error", "not a response", "returned something that is not a response"
        )
    return problem_response(error)


async def answer_refusal(request: web.Request, error: MTLSAuthError) -> web.StreamResponse:
    """The answer to a refusal a handler (or its decorator) meets: behind ``mtls_middleware``
    the middleware's (``on_error``, else problem+json), reported as its own refusals are
    (``on_decision``, the log line); without it ``problem_response(error)``. Unlike raising
    the refusal, no middleware between ``mtls_middleware`` and the handler can turn it into
    another answer."""
    answer = request.get(ANSWER_KEY)
    if answer is None:
        return problem_response(error)
    return await answer(request, error)  # type: ignore[no-any-return]


def problem_response(error: MTLSAuthError) -> web.Response:
    """The default problem+json answer for ``error``."""
    body = problem_body(error)
    headers = [(k, v) for k, v in problem_headers(error, len(body)) if k != "content-length"]
    return web.Response(body=body, status=refusal_status(error), headers=dict(headers))


def get_identity(request: web.Request) -> ClientIdentity | None:
    """The identity ``mtls_middleware`` attached to this request.

    Returns:
        The verified ``ClientIdentity``, or ``None`` when the middleware ran but
        established none (optional mode without a certificate, mode ``"off"``, an exempt
        path).

    Raises:
        IdentityMissing: the middleware is not installed on this application.
    """
    try:
        return request[IDENTITY_KEY]  # type: ignore[no-any-return]
    except KeyError:
        raise IdentityMissing(
            "no mtlsauth identity on the request: add mtls_middleware(...) to the application"
        ) from None
