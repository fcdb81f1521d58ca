"""Bounded verification caches keyed by the SHA-256 of what the client presented.

Positive entries hold a chain-verified identity (before policy, which is re-checked on every
hit) until the earliest of: the chain's ``notAfter``, the revocation data's ``nextUpdate``,
and a TTL. Negative entries are few and short-lived: they blunt floods of the same bad
certificate without pinning a refusal for long.

Keys are digests of the *raw* presented bytes, so a hit needs no percent-decoding, base64 or
DER parsing.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography import x509

from mtlsauth._errors import MTLSAuthError
from mtlsauth._identity import ClientIdentity

__all__ = ["CacheEntry", "NegativeEntry", "VerificationCache"]


@dataclass(frozen=True, slots=True)
class CacheEntry:
    identity: ClientIdentity
    chain: Sequence[x509.Certificate]
    expires: float  # time.time() seconds
    # The trust/pin/revocation snapshots it was computed under: a result that finishes after
    # a reload must never be served under the new trust (compared by identity on every hit).
    tokens: object = None
    # Policy verdicts for this identity, by id(policy) -> (policy, None | (type, code, detail)).
    # Policies and identities are immutable, so a verdict never changes; bounded per entry.
    verdicts: dict[int, tuple[object, tuple[type[MTLSAuthError], str, str] | None]] = field(
        default_factory=dict, repr=False, compare=False
    )


@dataclass(frozen=True, slots=True)
class NegativeEntry:
    error_type: type[MTLSAuthError]
    code: str
    detail: str
    expires: float


class VerificationCache:
    """An LRU of successes and a small LRU of failures, safe under threads and asyncio."""

    __slots__ = ("_lock", "_neg", "_neg_size", "_neg_ttl", "_pos", "_size", "hits", "misses")

    def __init__(self, size: int, *, negative_size: int = 256, negative_ttl: float = 5.0) -> None:
        self._size = size
        self._neg_size = negative_size if size else 0
        self._neg_ttl = negative_ttl
        self._pos: OrderedDict[bytes, CacheEntry] = OrderedDict()
        self._neg: OrderedDict[bytes, NegativeEntry] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: bytes, now: float) -> CacheEntry | None:
        entry = self._pos.get(key)
        if entry is None:
            self.misses += 1
            return None
        if entry.expires <= now:
            with self._lock:
                self._pos.pop(key, None)
            self.misses += 1
            return None
        # move_to_end is one C call, atomic under the GIL (and under the per-object lock of
        # free-threaded builds); the lock only serialises the multi-step writers below.
        try:
            self._pos.move_to_end(key)
        except KeyError:  # evicted by another thread meanwhile; the entry is still valid
            pass
        self.hits += 1
        return entry

    def put(self, key: bytes, entry: CacheEntry) -> None:
        if not self._size:
            return
        with self._lock:
            self._pos[key] = entry
            self._pos.move_to_end(key)
            while len(self._pos) > self._size:
                self._pos.popitem(last=False)

    def get_negative(self, key: bytes, now: float) -> NegativeEntry | None:
        entry = self._neg.get(key)
        if entry is None or entry.expires <= now:
            return None
        return entry

    def put_negative(self, key: bytes, error: MTLSAuthError, now: float) -> None:
        if not self._neg_size:
            return
        with self._lock:
            self._neg[key] = NegativeEntry(
                type(error), error.code, error.detail, now + self._neg_ttl
            )
            while len(self._neg) > self._neg_size:
                self._neg.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._pos.clear()
            self._neg.clear()

    def __len__(self) -> int:
        return len(self._pos)

    def stats(self) -> dict[str, int]:
        return {
            "entries": len(self._pos),
            "negative_entries": len(self._neg),
            "max_entries": self._size,
            "hits": self.hits,
            "misses": self.misses,
        }
