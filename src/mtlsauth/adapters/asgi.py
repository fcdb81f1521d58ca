"""Pure ASGI middleware (FastAPI, Starlette, Quart, any ASGI 3 app): no framework import.

Example:
    >>> from fastapi import FastAPI
    >>> from mtlsauth import Verifier
    >>> from mtlsauth.testing import CA
    >>> from mtlsauth.adapters.asgi import MTLSMiddleware
    >>> app = FastAPI()
    >>> app.add_middleware(MTLSMiddleware, verifier=Verifier(trust_store=CA().trust_store()),
    ...                    exempt_paths={"/healthz"})

The certificate comes from the ASGI TLS extension (``scope["extensions"]["tls"]``, filled by
``mtlsauth.adapters.uvicorn`` or a server that implements it) or, from trusted proxies only,
from the header the Verifier's ``ForwardedCert`` names.

Why one module of this size: the middleware is a screen; the rest are the ASGI-specific readers,
the websocket denial and the FastAPI dependencies users import from here.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal, cast

from mtlsauth._errors import AmbiguousRequest, CertificateMissing, IdentityMissing, MTLSAuthError
from mtlsauth._forwarded._trust import UNIX_PEER
from mtlsauth._guard import Decision, Guard, Mode, RequestView, Route, problem_body, problem_headers
from mtlsauth._hooks import REFUSAL_MIN_STATUS
from mtlsauth._identity import ClientIdentity
from mtlsauth._oauth import TOKEN_KEY
from mtlsauth._policy._policy import Policy
from mtlsauth._problem import answer_of, refusal_status
from mtlsauth._types import ASGIApp, Message, Presented, Receive, Scope, Send

if TYPE_CHECKING:
    from mtlsauth._verifier import Verifier

__all__ = [
    "IDENTITY_KEY",
    "MTLSMiddleware",
    "Route",
    "authorization_from_scope",
    "client_identity",
    "identity_from_scope",
    "optional_client_identity",
    "require_client_cert",
]

IDENTITY_KEY = "mtlsauth.identity"
MIDDLEWARE_KEY = "mtlsauth.middleware"
"""The ``MTLSMiddleware`` that admitted the request, for Django's ``RefusalMiddleware``
to report a view's refusal to (Django answers it before this middleware could)."""
_SEQUENCES = (list, tuple)
logger = logging.getLogger("mtlsauth")

OnError = Callable[[MTLSAuthError, Scope], Any]


class MTLSMiddleware:
    """Authenticate every ``http`` and ``websocket`` request by its client certificate.

    Args:
        app: The ASGI application to protect.
        verifier: The ``Verifier`` (trust store, policy, optional ``ForwardedCert``).
        mode: ``"mandatory"`` (default), ``"optional"`` (no certificate: the request goes on
            with identity ``None``; a bad certificate is still refused) or ``"off"``.
        routes: ``Route`` rules, first match wins (their own mode and policy).
        exempt_paths: Paths never checked, e.g. ``{"/healthz"}`` (a trailing ``*`` makes a
            prefix).
        on_error: ``on_error(error, scope)`` returning an ASGI app (a Starlette ``Response``
            is one) to answer a refusal, or ``None`` for the default problem+json answer.
            It may be a coroutine function. If it raises, or returns anything but an ASGI
            app, or that app fails before it sends anything, the default answer is sent.
            Its answer stays a refusal: a success status (1xx, 2xx) is replaced by the
            refusal's, and a ``websocket.accept`` by ``websocket.close`` (1008).
        on_decision: ``on_decision(decision)`` for audit or metrics, called for every
            request; exceptions are logged and ignored.
        verification_threads, verification_queue: The bounded pool that runs
            verifications whose result is not cached (see ``Guard``); past it, requests
            are refused with 503 ``verification_busy``.

    Paths are matched as the app's router sees them: ``scope["path"]`` without the
    ``root_path`` prefix (a ``Mount``, a server's ``--root-path``), as Starlette routes.
    With exempt paths or routes configured, a raw target that could be routed two ways
    (``raw_path`` with an encoded ``/``, a dot segment, ...) is refused with 400
    ``ambiguous_path``; so is, in any configuration, a path that Starlette's ``re.sub``
    versions (0.35 into 0.39) route under a ``root_path`` such as ``/v1.0`` other than
    the literal prefix rule does.

    The app sees a copy of the scope with ``scope["mtlsauth.identity"]`` (a
    ``ClientIdentity`` or ``None``); read it with ``identity_from_scope``. An
    ``MTLSAuthError`` raised by the app (e.g. by ``require_client_cert``) before the
    response started is answered as problem+json too, also after Starlette's
    ``ServerErrorMiddleware`` (in a mounted sub-app, or in an app wrapped from outside)
    answered it with a 500: a complete 500 answer is held until the app returns.

    Security note: a certificate header from a peer that is not a trusted proxy never
    reaches the app: it is refused (``untrusted_forwarder``) or ignored as the
    ``ForwardedCert`` says, and removed from ``scope["headers"]`` in every mode, in any
    letter case and with ``_`` for ``-`` (which Django's ASGI request folds together).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        verifier: Verifier,
        mode: Mode = "mandatory",
        routes: Sequence[Route] = (),
        exempt_paths: Iterable[str] = (),
        on_error: OnError | None = None,
        on_decision: Callable[[Decision], object] | None = None,
        verification_threads: int = 4,
        verification_queue: int = 64,
    ) -> None:
        self.app = app
        self.guard = Guard(
            verifier=verifier,
            mode=mode,
            routes=routes,
            exempt_paths=exempt_paths,
            on_error=on_error,
            on_decision=on_decision,
            verification_threads=verification_threads,
            verification_queue=verification_queue,
        )
        self._strip = frozenset(n.encode("latin-1") for n in self.guard.strip_names)
        # Hidden from the app in every spelling that some framework folds into the same
        # name: Django's ASGIRequest (and WSGI bridges) turn "x_ssl_client_cert" into
        # HTTP_X_SSL_CLIENT_CERT, just as a WSGI server would.
        self._hide = frozenset(n.replace(b"_", b"-") for n in self._strip)
        # ... and in the one spelling outside ASCII that folds into such a name:
        # str.upper() makes "SS" of the Latin-1 byte "\xdf" (see _hidden).
        self._hide_keys = frozenset(
            "HTTP_" + n.upper().replace("-", "_") for n in self.guard.strip_names
        )
        self._read = frozenset(n.encode("latin-1") for n in self.guard.read_names)
        # The one certificate header of a plain ForwardedCert, found without building a
        # request view on the hot path (see _cached); None when headers are not read so.
        fwd = self.guard.forwarded
        plain = fwd.plain_header if fwd is not None else None
        self._main = plain.encode("latin-1") if plain is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":  # lifespan and unknown types pass through
            await self.app(scope, receive, send)
            return
        identity = self._cached(scope) if kind == "http" else None
        if identity is not None:
            headers = scope.get("headers")
            if type(headers) is list:  # a snapshot: see _read_once
                scope = {
                    **scope,
                    IDENTITY_KEY: identity,
                    MIDDLEWARE_KEY: self,
                    "headers": headers[:],
                }
            else:
                scope = {**scope, IDENTITY_KEY: identity, MIDDLEWARE_KEY: self}
        else:
            scope = _read_once(scope)
            decision = await self.guard.acheck(self._view(scope), defer=True)
            if decision.error is not None:
                await self._deny(decision.error, scope, receive, send)
                return
            scope = {**scope, IDENTITY_KEY: decision.identity, MIDDLEWARE_KEY: self}
            if decision.route is not None and decision.route.token is not None:
                scope[TOKEN_KEY] = decision.token
            if decision.hide:
                try:
                    scope["headers"] = [
                        (k, v) for k, v in scope.get("headers", ()) if not self._hidden(k)
                    ]
                except (TypeError, AttributeError, ValueError):
                    error = AmbiguousRequest(
                        "the server passed unreadable headers", code="request_malformed"
                    )
                    self.guard.refuse(error, decision.peer, decision.path, decision.method)
                    await self._deny(error, scope, receive, send)
                    return
                self.guard.report(decision)  # deferred: the request's one decision
        # The app is called here, not in a helper coroutine: one await less per request.
        started = False
        connected = False  # websocket: did the app already consume websocket.connect?
        # A complete 500 answer, held back until the app returns: Starlette's
        # ServerErrorMiddleware (in every Starlette and FastAPI app, a mounted sub-app
        # included) answers 500 for any exception and then re-raises it. When what it
        # answered for is a refusal (a dependency's CertificateMissing or PolicyDenied),
        # the refusal is sent instead, as for an app without that middleware.
        held: list[Message] | None = None

        def tracking_send(message: Message) -> Awaitable[None]:
            # Returns the server's awaitable itself: no coroutine of its own per message.
            nonlocal started, held
            if held is not None or (
                not started
                and message.get("status") == 500
                and message.get("type") == "http.response.start"
            ):
                if held is None:
                    held = [message]
                    return _sent()
                held.append(message)
                if message.get("type") == "http.response.body" and not message.get("more_body"):
                    return _sent()  # complete: still held, in case a refusal follows
                out, held = held, None  # streamed or anything else: no longer held back
                started = True
                return _send_all(send, out)
            # A server push (HTTP/2, hypercorn) starts no response: a refusal can follow it.
            if not started and message.get("type") != "http.response.push":
                started = True
            return send(message)

        app_receive = receive
        if kind == "websocket":

            async def tracking_receive() -> Message:
                nonlocal connected
                message = await receive()
                if message.get("type") == "websocket.connect":
                    connected = True
                return message

            app_receive = tracking_receive
        try:
            await self.app(scope, app_receive, tracking_send)
        except MTLSAuthError as exc:
            if started:
                raise
            self.refused_by_app(exc, scope)
            await self._deny(exc, scope, receive, send, connected=connected)
            return
        except BaseException:
            if held is not None:
                out, held = held, None
                await _send_all(send, out)
            raise
        if held is not None:
            out, held = held, None
            await _send_all(send, out)

    def _hidden(self, name: bytes) -> bool:
        """True when the header ``name`` is a certificate header in a spelling that the
        app's framework reads as one: any letter case, ``_`` for ``-``, and whatever
        Django's ASGI request (and ASGI-to-WSGI bridges) fold into its ``META`` key,
        ``"HTTP_" + name.decode("latin-1").upper().replace("-", "_")``."""
        if name.lower().replace(b"_", b"-") in self._hide:
            return True
        if name.isascii():  # for ASCII the fold is the test above
            return False
        return "HTTP_" + name.decode("latin-1").upper().replace("-", "_") in self._hide_keys

    def _cached(self, scope: Scope) -> ClientIdentity | None:
        """The identity of a request that a cached verification admits with nothing else
        to decide or change (``Guard.cached``; no header to hide); ``None``:
        ``Guard.acheck`` decides it. Reads the scope as ``_view`` and ``_presented`` do,
        and leaves every request they would read otherwise (or refuse) to them."""
        try:
            path = scope.get("path")
            method = scope.get("method", "GET")
            raw_path = scope.get("raw_path")
            if not (
                type(path) is str
                and path
                and type(method) is str
                and method
                and (raw_path is None or type(raw_path) is bytes)
                and not scope.get("root_path")
            ):
                path, method, raw_path = _request_line(scope)  # the general reading
            client = scope.get("client")
            if type(client) is tuple and client and type(client[0]) is str and client[0]:
                peer: str | None = client[0]
            else:
                peer = _peer(scope)
            headers = scope.get("headers", ())
            if type(headers) is not list and type(headers) is not tuple:
                return None  # maybe an iterator, read once: _read_once, then the whole path
            main = self._main
            if main is None:
                if _single_header(headers, None) is False:
                    return None  # an item _presented refuses
                header = None
            else:  # _single_header inline: the one copy of the certificate header
                size = len(main)
                header = None
                for k, v in headers:
                    if type(k) is not bytes or type(v) is not bytes:
                        return None  # _presented refuses it
                    if len(k) == size and k.lower() == main:
                        if header is not None:
                            return None  # two copies: refused
                        header = v
            ext = scope.get("extensions")
            tls = ext.get("tls") if ext else None
            chain: tuple[str | bytes, ...] = ()
            if tls:
                if tls.get("client_cert_error") is not None:
                    return None
                items = tls.get("client_cert_chain") or ()
                if type(items) is not list and type(items) is not tuple:
                    return None  # as the headers
                chain = tuple(items)
                if not all(isinstance(c, str | bytes) for c in chain):
                    return None
        except Exception:  # noqa: BLE001 - _view and _presented answer it
            return None
        guard = self.guard
        if header is not None:
            return guard.cached(peer, path, method, raw_path, header)
        if not chain or guard.must_strip(peer):
            return None  # nothing to look up, or headers to hide: acheck does it
        return guard.cached(peer, path, method, raw_path, None, chain)

    def refused_by_app(self, error: MTLSAuthError, scope: Scope) -> None:
        """Report a refusal the app raised (``require_token``, ``check_token``, a stricter
        ``Policy.check``) as the middleware's own are: ``on_decision`` and the log line."""
        try:
            path, method, _raw = _request_line(scope)
        except AmbiguousRequest:  # not after an admission: the request line was read then
            path, method = "/", "GET"
        identity = scope.get(IDENTITY_KEY)
        self.guard.refused_by_app(
            error,
            _peer(scope),
            path,
            method,
            identity if isinstance(identity, ClientIdentity) else None,
        )

    def _view(self, scope: Scope) -> RequestView:
        peer = _peer(scope)
        try:
            path, method, raw_path = _request_line(scope)
        except AmbiguousRequest as exc:
            return RequestView(peer=peer, unreadable=exc, credentials=Presented)
        return RequestView(
            peer=peer,
            path=path,
            method=method,
            raw_target=raw_path,
            credentials=lambda: _presented(scope, peer, path, method, self._read),
            authorization=lambda: authorization_from_scope(scope),
        )

    async def _deny(
        self,
        error: MTLSAuthError,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        connected: bool = False,
    ) -> None:
        if scope["type"] == "websocket" and not connected:
            # Deny before accept: consume websocket.connect first (asgiref websocket spec).
            message = await receive()
            if message.get("type") != "websocket.connect":
                return
        result = await self.guard.error_hook_result_async(error, scope)
        if result is not None:
            if not callable(result):
                self.guard.hook_misused(
                    "on_error", "not an app", "returned something that is not an ASGI app"
                )
            elif await self._hook_answer(cast(ASGIApp, result), error, scope, receive, send):
                return
        await send_problem(error, scope, send)

    async def _hook_answer(
        self, responder: ASGIApp, error: MTLSAuthError, scope: Scope, receive: Receive, send: Send
    ) -> bool:
        """Let the ``on_error`` app answer, as a refusal: a success status becomes the
        refusal's, an accepted websocket is closed (1008) instead. False when it sent
        nothing (it failed first, or returned without answering): the default answer is
        sent then."""
        started = False
        closed = False

        async def refusal_send(message: Message) -> None:
            nonlocal started, closed
            if closed:  # a websocket.accept was turned into a close: nothing more goes out
                return
            kind = message.get("type")
            if kind in ("http.response.start", "websocket.http.response.start"):
                status = message.get("status")
                if type(status) is not int or status < REFUSAL_MIN_STATUS:
                    self.guard.hook_misused(
                        "on_error",
                        "success status",
                        "answered a refusal with a success "
                        "status: sent with the refusal's status instead",
                    )
                    message = {**message, "status": refusal_status(error)}
            elif kind == "websocket.accept":
                self.guard.hook_misused(
                    "on_error", "accepted", "accepted a refused websocket: closed instead"
                )
                closed = True
                message = {"type": "websocket.close", "code": 1008, "reason": answer_of(error).code}
            started = True
            await send(message)

        try:
            await responder(scope, _no_more_connect(receive, scope), refusal_send)
        except Exception as exc:  # noqa: BLE001 - the refusal stands: default answer, no 500
            self.guard.hook_failed("on_error", exc)
        return started


async def _sent() -> None:
    """A ``send`` that sends nothing (yet)."""


async def _send_all(send: Send, messages: list[Message]) -> None:
    for message in messages:
        await send(message)


def _no_more_connect(receive: Receive, scope: Scope) -> Receive:
    """For websockets the connect message was consumed: replay it to an on_error app."""
    if scope["type"] != "websocket":
        return receive
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "websocket.connect"}
        return await receive()

    return replay


async def send_problem(error: MTLSAuthError, scope: Scope, send: Send) -> None:
    """Send the default problem+json refusal for an ``http`` or ``websocket`` scope.

    A websocket gets the HTTP denial response when the server supports the
    ``websocket.http.response`` extension, else ``websocket.close`` with code 1008 (policy
    violation), which servers turn into an HTTP 403 before the handshake completes.
    """
    body = problem_body(error)
    headers = [
        (k.encode("latin-1"), v.encode("latin-1")) for k, v in problem_headers(error, len(body))
    ]
    if scope["type"] == "websocket":
        extensions = scope.get("extensions")
        if isinstance(extensions, dict) and "websocket.http.response" in extensions:
            await send(
                {
                    "type": "websocket.http.response.start",
                    "status": refusal_status(error),
                    "headers": headers,
                }
            )
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            await send({"type": "websocket.close", "code": 1008, "reason": answer_of(error).code})
        return
    await send({"type": "http.response.start", "status": refusal_status(error), "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _read_once(scope: Scope) -> Scope:
    """``scope``, or a copy of it whose headers and TLS client chain are a list and a
    tuple when the server passed other iterables: the ASGI spec allows any iterable, and
    an iterator is spent by one reading, while the request is read more than once (the
    certificate headers, the ``Authorization`` header, the headers hidden from the app,
    the app itself). Read here once, every later reading sees the same items. An iterable
    that fails while it is read is replaced by ``None``, which ``_presented`` refuses
    (``request_malformed``), never by the items read before it failed.

    A list is copied too: uvicorn's httptools protocol appends the fields of a chunked
    body's trailer section to the very list it passed as ``scope["headers"]``, whenever
    they arrive. HAProxy forwards trailers, so a client's trailer named like a certificate
    header would appear in the app's headers after mtlsauth read them. The app gets the
    headers as they were when the request was decided."""
    headers = scope.get("headers")
    if type(headers) is list:
        scope = {**scope, "headers": headers[:]}
    elif headers is not None and type(headers) is not tuple:
        try:
            headers = list(headers)
        except Exception:  # noqa: BLE001 - refused by _presented as unreadable
            headers = None
        scope = {**scope, "headers": headers}
    ext = scope.get("extensions")
    tls = ext.get("tls") if isinstance(ext, dict) else None
    if isinstance(tls, dict):
        chain = tls.get("client_cert_chain")
        if chain and type(chain) is not list and type(chain) is not tuple:
            try:
                chain = tuple(chain)
            except Exception:  # noqa: BLE001 - refused by _presented as unreadable
                chain = (None,)
            tls = {**tls, "client_cert_chain": chain}
            scope = {**scope, "extensions": {**ext, "tls": tls}}  # type: ignore[dict-item]
    return scope


def _single_header(headers: Iterable[Any], name: bytes | None) -> bytes | Literal[False] | None:
    """The one value of the lower-case header ``name`` among ASGI ``headers`` (``None``:
    absent; with ``name`` ``None``, no header is looked for). ``False`` when only the whole
    path may answer: a second copy (refused), or an item that is not a pair of bytes (which
    the whole path refuses as ``request_malformed``)."""
    size = len(name) if name is not None else -1
    found = None
    for k, v in headers:
        if type(k) is not bytes or type(v) is not bytes:
            return False
        if len(k) == size and k.lower() == name:
            if found is not None:
                return False
            found = v
    return found


def _peer(scope: Scope) -> str | None:
    """The socket peer: an address, ``UNIX_PEER``, or ``None`` (unknown: never trusted).

    ASGI servers report no client for a Unix-domain socket; uvicorn also reports the
    socket's path as ``server=(path, None)``, and only that counts as a Unix socket. A
    missing client on a TCP server (a reset connection) stays unknown.
    """
    client = scope.get("client")
    if client is None:
        server = scope.get("server")
        if (
            isinstance(server, list | tuple)
            and len(server) == 2
            and isinstance(server[0], str)
            and server[0]
            and server[1] is None
        ):
            return UNIX_PEER
        return None
    if isinstance(client, _SEQUENCES) and client:  # a tuple: no union built per request
        host = client[0]
        if isinstance(host, str) and host:
            return host
    return None


def _request_line(scope: Scope) -> tuple[str, str, bytes | None]:
    """(path as the router matches it, method, raw path) or ``request_malformed``."""
    path = scope.get("path")
    method = scope.get("method", "GET")  # a websocket handshake is a GET
    raw_path = scope.get("raw_path")
    root_path = scope.get("root_path") or ""
    if (
        not isinstance(path, str)
        or not isinstance(method, str)
        or not isinstance(root_path, str)
        or not (raw_path is None or isinstance(raw_path, bytes))
    ):
        raise AmbiguousRequest("the server passed an unreadable request", code="request_malformed")
    path = path or "/"
    method = method or "GET"
    if root_path:
        if _REGEX_SPECIAL.search(root_path) is not None:
            _one_route_path(root_path, path)
        # Starlette's rule (get_route_path): the router matches the path below root_path.
        if path.startswith(root_path):
            if path == root_path:
                path = "/"
            elif path[len(root_path)] == "/":
                path = path[len(root_path) :]
    return path, method, raw_path


# A character that a regular expression reads other than itself.
_REGEX_SPECIAL = re.compile(r"[.^$*+?{}\[\]\\|()]")


def _one_route_path(root_path: str, path: str) -> None:
    """Refuse (``ambiguous_path``) a path that routers read two ways under ``root_path``.

    Starlette from 0.35 into 0.39 cut ``root_path`` off the path as a regular expression,
    ``re.sub("^" + root_path, "", path)`` (later with ``(?=/|$)`` appended); later versions
    cut it off only as a literal prefix, as the middleware does. With a ``root_path`` such
    as ``/v1.0`` (a server's setting, or Daphne's ``Daphne-Root-Path`` request header) the
    path ``/v1x0/admin`` was routed as ``/admin`` by the one and kept whole by the other:
    exempt paths and route rules must not read another path than the router. Only called
    when ``root_path`` holds a character that a regular expression reads otherwise.
    """
    if _REGEX_SPECIAL.search(root_path.replace(".", "")) is not None:
        # A quantifier, group or class: the regex reading is neither run nor compiled, since
        # root_path may be the client's own (Daphne-Root-Path): a pattern like "(a+)+b" would
        # backtrack for as long as the path is long, and compiling "((((...))))" nested a few
        # thousand deep raises RecursionError ("a{99999999999999999999}": OverflowError), a
        # 500. No deployment mounts under such a prefix.
        raise AmbiguousRequest(_TWO_READINGS)
    n = len(root_path)
    literal = path
    if path.startswith(root_path) and (path == root_path or path[n] == "/"):
        literal = path[n:]
    # Only "." is special here, and the two patterns are matched without the re module:
    # compiling a client's root_path of 16 KiB cost some 20 ms a request, and each new one
    # pushes a site's own patterns out of re's cache. "^" + root_path: every "." matches one
    # character other than a newline; "(?=/|$)" then needs "/", the end, or a newline that
    # ends the path ("$" matches before a final newline).
    if not _dotted_prefix(root_path, path):
        return  # neither pattern matches: both leave the path whole, as literal does
    rest = path[n:]
    if rest != literal:  # re.sub("^" + root_path, "", path) cuts where the literal rule does not
        raise AmbiguousRequest(_TWO_READINGS)
    # rest == literal: the literal rule cut root_path off at a "/" or at the end, where the
    # look-ahead version matches too and cuts the same.


def _dotted_prefix(root_path: str, path: str) -> bool:
    """Whether the regular expression ``"^" + root_path`` matches ``path``, for a
    ``root_path`` whose only special character is ``.`` (any character but a newline)."""
    if path.startswith(root_path):
        return True  # each "." of root_path meets a "." of path
    pos = 0
    for i, piece in enumerate(root_path.split(".")):
        if i:
            if pos >= len(path) or path[pos] == "\n":
                return False
            pos += 1
        if not path.startswith(piece, pos):
            return False
        pos += len(piece)
    return True


_TWO_READINGS = (
    "the request target can be read more than one way: the path does not start with "
    "root_path as a regular expression and as a literal prefix alike"
)


def _presented(
    scope: Scope, peer: str | None, path: str, method: str, wanted: frozenset[bytes]
) -> Presented:
    try:
        return _read_presented(scope, peer, path, method, wanted)
    except (TypeError, AttributeError, ValueError):
        raise AmbiguousRequest(
            "the server passed unreadable headers or TLS details", code="request_malformed"
        ) from None


def _read_presented(
    scope: Scope, peer: str | None, path: str, method: str, wanted: frozenset[bytes]
) -> Presented:
    # Only the certificate headers are ever read by the core, so only those are decoded.
    # ASGI servers lower-case header names; lower() again in case one does not (a missed
    # name would only mean "no certificate", but it must also be stripped for the app).
    found: list[tuple[str, str]] = []
    for k, v in scope.get("headers", ()):
        if type(k) is not bytes or type(v) is not bytes:
            raise TypeError("header names and values must be bytes")
        if wanted and k.lower() in wanted:
            found.append((k.lower().decode("latin-1"), v.decode("latin-1")))
    headers = tuple(found)
    chain: tuple[str | bytes, ...] = ()
    tls_error: str | None = None
    ext = scope.get("extensions")
    if ext:
        tls = ext.get("tls")
        if tls:
            chain = tuple(tls.get("client_cert_chain") or ())
            if not all(isinstance(c, str | bytes) for c in chain):
                raise TypeError("client_cert_chain holds neither str nor bytes")
            # client_cert_name may be None even with a chain (asgiref#466); we never read it.
            error = tls.get("client_cert_error")
            if error is not None:  # asgiref tls spec: anything but None is a failed check
                tls_error = str(error) or "client certificate error"
    hint: str | None = None
    if (
        not chain
        and scope.get("scheme") in ("https", "wss")
        and not (ext and ext.get("tls"))
        and not any(k == "x-forwarded-for" for k, _v in headers)  # not a proxy's https
    ):
        hint = (
            "the connection is TLS (scheme https), but the server passes no client "
            "certificate to the app "
            "(no ASGI tls extension): under uvicorn use "
            "--http mtlsauth.adapters.uvicorn:MTLSH11Protocol"
        )
    return Presented(
        peer=peer,
        headers=headers,
        tls_chain=chain,
        tls_error=tls_error,
        path=path,
        method=method,
        tls_hint=hint,
    )


def authorization_from_scope(scope: Scope) -> list[str]:
    """Every ``Authorization`` header value of an ASGI request, in arrival order."""
    return [
        v.decode("latin-1") for k, v in scope.get("headers", ()) if k.lower() == b"authorization"
    ]


def identity_from_scope(scope: Scope) -> ClientIdentity | None:
    """The identity ``MTLSMiddleware`` attached to this request.

    Returns:
        The verified ``ClientIdentity``; or ``None`` when the middleware ran but established
        no identity: optional mode without a certificate, mode ``"off"``, or an exempt path.
        In mandatory mode a request without an identity never reaches the app.

    Raises:
        IdentityMissing: the middleware did not run for this scope (status 500: a
            deployment bug, e.g. the middleware added to another app).
    """
    try:
        return scope[IDENTITY_KEY]  # type: ignore[no-any-return]
    except KeyError:
        raise IdentityMissing(
            "no mtlsauth identity in the ASGI scope: add mtlsauth.adapters.asgi.MTLSMiddleware"
        ) from None


def _required(scope: Scope, policy: Policy | None) -> ClientIdentity:
    identity = identity_from_scope(scope)
    if identity is None:
        raise CertificateMissing("this endpoint requires a client certificate")
    if policy is not None and not policy.is_empty:
        policy.check(identity)
    return identity


def require_client_cert(*, policy: Policy | None = None) -> Callable[..., ClientIdentity]:
    """A FastAPI dependency factory: this route needs a verified certificate (and ``policy``).

    Use ``Depends(require_client_cert(policy=Policy(organizations={"ops"})))`` on a route
    (or in ``dependencies=[...]``). It raises ``CertificateMissing`` (401) or
    ``PolicyDenied`` (403); ``MTLSMiddleware`` answers those as problem+json. The policy
    applies *in addition to* whatever the middleware already enforced.

    Raises:
        TypeError: ``policy`` is not a Policy.
    """
    if policy is not None and not isinstance(policy, Policy):
        raise TypeError("policy must be a Policy")
    return _dependency(lambda scope: _required(scope, policy), "require_client_cert")


def _dependency(fn: Callable[[Scope], Any], name: str) -> Callable[..., Any]:
    # FastAPI injects the connection by the parameter's annotation, so it must be the real
    # starlette class; import it here so this module imports without FastAPI installed.
    from starlette.requests import HTTPConnection

    def dependency(conn: HTTPConnection) -> Any:
        return fn(conn.scope)

    dependency.__annotations__ = {"conn": HTTPConnection}
    dependency.__name__ = dependency.__qualname__ = name
    return dependency


if TYPE_CHECKING:

    def client_identity(conn: Any) -> ClientIdentity:
        """FastAPI dependency: the caller's identity (401 problem when there is none)."""
        ...

    def optional_client_identity(conn: Any) -> ClientIdentity | None:
        """FastAPI dependency: the caller's identity, or ``None`` (optional mode)."""
        ...


def __getattr__(name: str) -> Any:
    # PEP 562: build the FastAPI dependencies on first use (they need starlette's classes).
    if name == "client_identity":
        fn = _dependency(lambda scope: _required(scope, None), name)
    elif name == "optional_client_identity":
        fn = _dependency(identity_from_scope, name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = fn
    return fn
