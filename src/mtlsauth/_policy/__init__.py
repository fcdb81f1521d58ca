"""Policy: who may call, once the certificate is genuine.

The public face is ``Policy`` (``_policy``) and ``pinned_from_rfc8705``; ``_rules`` parses
each allow-list entry once and checks it. Names are normalised by ``mtlsauth._names``, which
the forwarded-identity parsers share.
"""

from __future__ import annotations

from mtlsauth._policy._policy import Policy, pinned_from_rfc8705

__all__ = ["Policy", "pinned_from_rfc8705"]
