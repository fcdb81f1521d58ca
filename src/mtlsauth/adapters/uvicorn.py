"""Direct mutual TLS under uvicorn: HTTP protocol classes that fill the ASGI TLS extension.

uvicorn can *require* a client certificate but never tells the app which one arrived (it
implements no ``scope["extensions"]["tls"]``). These classes subclass uvicorn's own HTTP
protocols and, once per connection (after the handshake), read the transport's
``ssl_object`` and put the ASGI TLS extension into the scope of every request on that
connection. They are selected through uvicorn's public ``http=`` option::

    uvicorn.run(app, http=MTLSH11Protocol,
                ssl_context_factory=lambda config, default: server_ssl_context(...))

Supported: HTTP/1.1 requests through ``H11Protocol`` (and ``HttpToolsProtocol`` when
``httptools`` is installed). uvicorn hands an upgraded websocket connection to its
websocket protocol, which calls the app itself: wrap that class too
(``ws=with_tls_extension(WebSocketsSansIOProtocol)``), or websockets see no certificate.
On Python < 3.13 the chain holds the leaf only: configure ``Verifier(intermediates=...)``.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from mtlsauth._sslcontext import peer_chain, server_ssl_context
from mtlsauth._types import ASGIApp, Receive, Scope, Send, TLSExtension
from mtlsauth._types import tls_extension as _build_tls_extension

if TYPE_CHECKING:
    import asyncio

__all__ = [
    "MTLSH11Protocol",
    "server_ssl_context",
    "tls_extension",
    "with_tls_extension",
]

_TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


def tls_extension(ssl_object: object) -> TLSExtension | None:
    """The ASGI TLS extension dict for a TLS connection, or ``None`` for plain TCP.

    ``client_cert_chain`` holds PEM strings, leaf first (leaf only before Python 3.13);
    ``client_cert_error`` is always ``None`` because Python's ``ssl`` aborts the handshake
    instead of reporting a failed verification; ``cipher_suite`` is ``None`` (Python exposes
    the cipher's name, not its IANA number) and ``server_cert`` is ``None``.
    """
    if ssl_object is None:
        return None
    ders = peer_chain(ssl_object)
    name: str | None = None
    if ders:
        try:
            from cryptography import x509

            name = x509.load_der_x509_certificate(ders[0]).subject.rfc4514_string()
        except Exception:  # noqa: BLE001 - e.g. x509.InvalidVersion, not a ValueError
            name = None  # best effort only: the verifier refuses such a leaf later
    version = getattr(ssl_object, "version", lambda: None)()
    return _build_tls_extension(
        [ssl.DER_cert_to_PEM_cert(d) for d in ders],
        name=name,
        tls_version=_TLS_VERSIONS.get(version) if isinstance(version, str) else None,
    )


def _app_with_tls(app: ASGIApp, tls: TLSExtension) -> ASGIApp:
    """``app`` with ``tls`` in the scope of each request on one connection. Each request gets
    its own copy (and its own chain list): a request that changes its extension must not
    change what the next request on the same keep-alive connection carries."""
    chain = tuple(tls["client_cert_chain"])

    async def app_with_tls(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" or scope["type"] == "websocket":
            mine: TLSExtension = {**tls, "client_cert_chain": list(chain)}
            ext = scope.get("extensions")
            scope = {**scope, "extensions": {**ext, "tls": mine} if ext else {"tls": mine}}
        await app(scope, receive, send)

    return app_with_tls


class _TLSExtensionMixin:
    """Wraps ``self.app`` per connection once the TLS handshake is done."""

    app: ASGIApp

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        tls = tls_extension(transport.get_extra_info("ssl_object"))
        if tls is not None:
            self.app = _app_with_tls(self.app, tls)


def with_tls_extension(protocol_class: type[Any]) -> type[Any]:
    """Subclass a uvicorn protocol class so its requests carry the ASGI TLS extension.

    The class must keep the ASGI app in ``self.app`` and receive the transport in
    ``connection_made``: uvicorn's ``H11Protocol`` and ``HttpToolsProtocol`` do, and so do
    its websocket protocols (pass ``ws=with_tls_extension(WebSocketsSansIOProtocol)``).
    """
    if not isinstance(protocol_class, type):
        raise TypeError("protocol_class must be a class")
    return type(f"MTLS{protocol_class.__name__}", (_TLSExtensionMixin, protocol_class), {})


class MTLSH11Protocol(_TLSExtensionMixin, H11Protocol):
    """uvicorn's ``H11Protocol`` plus the ASGI TLS extension (``http=MTLSH11Protocol``)."""


def __getattr__(name: str) -> Any:
    # httptools is optional in uvicorn: build this class only when asked for.
    if name == "MTLSHttpToolsProtocol":
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        cls = with_tls_extension(HttpToolsProtocol)
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
