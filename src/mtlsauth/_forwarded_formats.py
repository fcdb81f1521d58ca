"""Compatibility for ``mtlsauth._xfcc``, which imports these helpers from here until it moves
into ``mtlsauth._forwarded``; everything else imports ``mtlsauth._forwarded._formats``."""

from __future__ import annotations

from mtlsauth._forwarded._formats import encode_url_pem, malformed, url_pem

__all__ = ["encode_url_pem", "malformed", "url_pem"]
