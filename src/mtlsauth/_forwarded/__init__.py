"""Forwarded certificates: what a trusted proxy hands over in headers, and nothing else.

The public face is ``ForwardedCert``. Inside: ``_trust`` (header names and the trusted-proxy
gate), ``_formats`` (the exact decoders of each encoding), ``_presets`` (the one table of
header and field names per proxy), ``_verified`` (identities a proxy verified itself) and
``_cert`` (``ForwardedCert``, which ties them together). Envoy's XFCC parser is
``mtlsauth._xfcc`` for now.

``ForwardedCert`` is loaded on first use (PEP 562): ``_xfcc`` imports this package's decoders
while ``_cert`` imports ``_xfcc``, so an eager import here could meet a half-initialised
module, whichever of the two a program imports first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mtlsauth._forwarded._cert import ForwardedCert

__all__ = ["ForwardedCert"]


def __getattr__(name: str) -> Any:
    if name == "ForwardedCert":
        from mtlsauth._forwarded._cert import ForwardedCert

        return ForwardedCert
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
