"""``with_client_cert``: make an in-process ASGI request look like it came over mutual TLS.

Neither ``httpx.ASGITransport`` nor Starlette's ``TestClient`` fills the ASGI TLS extension,
so tests wrap the app::

    transport = httpx.ASGITransport(app=with_client_cert(app, cert))
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mtlsauth._types import ASGIApp, Receive, Scope, Send, tls_extension

if TYPE_CHECKING:
    from mtlsauth.testing import ClientCert

__all__ = ["with_client_cert"]


def with_client_cert(app: ASGIApp, cert: ClientCert | Mapping[str, Any] | None) -> ASGIApp:
    """Wrap ``app`` so every ``http``/``websocket`` scope carries ``extensions["tls"]``.

    Args:
        app: The ASGI app (usually already wrapped in ``MTLSMiddleware``).
        cert: A ``ClientCert`` (its leaf and intermediates become ``client_cert_chain``),
            a raw TLS-extension mapping (e.g. with ``client_cert_error`` set), or ``None``
            for a TLS connection on which the client sent no certificate.

    Example:
        >>> import httpx
        >>> from mtlsauth.testing import CA
        >>> async def app(scope, receive, send): ...
        >>> transport = httpx.ASGITransport(app=with_client_cert(app, CA().issue_client_cert()))
    """
    if cert is None:
        tls: dict[str, Any] = dict(tls_extension(cipher_suite=0x1301))
    elif isinstance(cert, Mapping):
        tls = dict(cert)
    else:
        tls = cert.asgi_tls_extension()

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            extensions = dict(scope.get("extensions") or {})
            extensions["tls"] = tls
            scope = {**scope, "extensions": extensions, "scheme": _secure(scope)}
        await app(scope, receive, send)

    return wrapped


def _secure(scope: Scope) -> str:
    scheme = scope.get("scheme")
    if scope["type"] == "websocket":
        return "wss" if scheme in (None, "ws", "wss") else str(scheme)
    return "https" if scheme in (None, "http", "https") else str(scheme)
