"""What the metrics need to know about one verification, without widening any signature.

``Guard.decide`` resets ``cache_missed`` before it calls the Verifier and reads it after;
``Verifier`` sets it when a verification was not served from the cache. A context variable
keeps concurrent requests (threads, tasks) apart.
"""

from __future__ import annotations

from contextvars import ContextVar

__all__ = ["cache_missed"]

cache_missed: ContextVar[bool] = ContextVar("mtlsauth_cache_missed", default=False)
