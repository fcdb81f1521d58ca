"""Framework adapters, imported by full path (mtlsauth.adapters.asgi, .wsgi, .aiohttp).

Shared by all of them, for custom adapters and error handlers: ``UNIX_PEER`` (the peer of a
Unix-domain socket connection), ``AmbiguousRequest`` (400: ``ambiguous_path``,
``request_malformed``) and ``VerificationBusy`` (503: ``verification_busy``).
"""

from mtlsauth._errors import AmbiguousRequest, VerificationBusy
from mtlsauth._forwarded._trust import UNIX_PEER

__all__ = ["UNIX_PEER", "AmbiguousRequest", "VerificationBusy"]
