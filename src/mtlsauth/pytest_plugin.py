"""pytest plugin: fixtures for testing mTLS policies, registered automatically on install.

Fixtures:

* ``mtls_ca``: a session-scoped ``mtlsauth.testing.CA`` (key generation is the slow part).
* ``client_cert``: a factory issuing client certificates from ``mtls_ca``; it takes the
  keywords of ``CA.issue_client_cert`` (``common_name``, ``organization``, ``uris``...).
* ``forwarded_headers``: ``forwarded_headers(preset, cert)`` returns the ``(name, value)``
  header pairs that proxy sends for that certificate (``"nginx"``, ``"envoy"``...).
* ``asgi_tls_scope``: ``asgi_tls_scope(cert, path="/")`` returns an ASGI HTTP scope whose
  TLS extension carries the certificate, as a direct-TLS server would fill it.

Example::

    from mtlsauth import Policy, PolicyDenied, Verifier

    def test_only_payments(mtls_ca, client_cert):
        verifier = Verifier(trust_store=mtls_ca.trust_store(), policy=Policy(organizations={"payments"}))
        assert verifier.verify(client_cert(organization="payments").chain_pem.text())
        with pytest.raises(PolicyDenied):
            verifier.verify(client_cert(organization="ads").chain_pem.text())

Only this module imports pytest; ``import mtlsauth`` never does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import pytest

from mtlsauth._types import tls_extension

if TYPE_CHECKING:
    from mtlsauth.testing import CA, ClientCert

__all__ = [
    "asgi_tls_scope",
    "build_asgi_tls_scope",
    "build_forwarded_headers",
    "client_cert",
    "forwarded_headers",
    "mtls_ca",
]


def build_forwarded_headers(preset: str, cert: ClientCert) -> list[tuple[str, str]]:
    """The header pairs proxy ``preset`` sends for ``cert`` (its whole presented chain).

    ``preset`` is a ``ForwardedCert`` preset name (``"nginx"``, ``"apache"``, ``"envoy"``,
    ``"traefik"``, ``"rfc9440"``...) or an encoding name (``"url-pem"``...). The values are
    byte for byte what that proxy writes; the names are its default (or documented) ones.
    """
    # pytest loads this plugin in every session where mtlsauth is installed: the test PKI
    # and the encoders are imported only by the fixtures that use them.
    from mtlsauth.testing import encode_forwarded

    return encode_forwarded(preset, cert.chain_der)


def build_asgi_tls_scope(
    cert: ClientCert | None,
    *,
    path: str = "/",
    method: str = "GET",
    headers: Iterable[tuple[str, str]] = (),
    client: tuple[str, int] = ("127.0.0.1", 50000),
    scope_type: str = "http",
) -> dict[str, Any]:
    """An ASGI ``http`` (or ``websocket``) scope with ``extensions["tls"]`` for ``cert``.

    ``cert=None`` gives a TLS connection without a client certificate.
    """
    tls: dict[str, Any]
    tls = dict(cert.asgi_tls_extension()) if cert is not None else dict(tls_extension())
    # As an HTTP server fills the scope from the request target (uvicorn, hypercorn):
    # ``raw_path`` the bytes as sent (non-ASCII percent-encoded, as a client sends it),
    # ``path`` percent-decoded. "/a%2Fb" is path "/a/b" with raw_path b"/a%2Fb", so a test
    # of an encoded path meets the middleware exactly as production does.
    from urllib.parse import quote, unquote

    target, _, query_text = path.partition("?")
    raw_path = quote(target, safe="/%!$&'()*+,;=:@-._~")
    query = quote(query_text, safe="/?%!$&'()*+,;=:@-._~")
    return {
        "type": scope_type,
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method.upper(),
        "scheme": "https" if scope_type == "http" else "wss",
        "path": unquote(raw_path),
        "raw_path": raw_path.encode("ascii"),
        "query_string": query.encode("ascii"),
        "root_path": "",
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers],
        "client": client,
        "server": ("127.0.0.1", 443),
        "extensions": {"tls": tls},
        "state": {},
    }


@pytest.fixture(scope="session")
def mtls_ca() -> CA:
    """A session-wide test CA (``mtlsauth.testing.CA``): issue certificates, CRLs, trust."""
    from mtlsauth.testing import CA  # on first use only (see above)

    return CA(organization="mtlsauth pytest CA")


@pytest.fixture
def client_cert(mtls_ca: CA) -> Callable[..., ClientCert]:
    """Factory: ``client_cert(common_name="ledger", organization="payments", ...)``.

    Takes every keyword of ``CA.issue_client_cert``; the certificate is issued by ``mtls_ca``.
    """

    def issue(**kwargs: Any) -> ClientCert:
        return mtls_ca.issue_client_cert(**kwargs)

    return issue


@pytest.fixture
def forwarded_headers() -> Callable[[str, ClientCert], list[tuple[str, str]]]:
    """``forwarded_headers(preset, cert)``: what that proxy sends for the certificate."""
    return build_forwarded_headers


@pytest.fixture
def asgi_tls_scope() -> Callable[..., dict[str, Any]]:
    """``asgi_tls_scope(cert, path="/", method="GET", headers=())``: an ASGI scope with TLS."""
    return build_asgi_tls_scope
