"""Forwarded certificates: what a trusted proxy hands over in headers, and nothing else.

The public face is ``ForwardedCert``. Inside: ``_trust`` (header names and the trusted-proxy
gate), ``_formats`` (the exact decoders of each encoding), ``_xfcc`` (Envoy's
``x-forwarded-client-cert``), ``_presets`` (the one table of header and field names per
proxy), ``_verified`` (identities a proxy verified itself) and ``_cert`` (``ForwardedCert``,
which ties them together).
"""

from __future__ import annotations

from mtlsauth._forwarded._cert import ForwardedCert

__all__ = ["ForwardedCert"]
