"""Bounded verification caches that a client cannot flood.

One entry per *verification*: the leaf (its DER bytes) and the source it came from, or for a
proxy-verified identity the identity itself. What else a client sends with its leaf (extra or
unrelated certificates, another order, another encoding of the same chain) does not make a
new entry: it adds an *alias*, the SHA-256 of the raw presented bytes, which is what a hit
looks up (a hit needs no percent-decoding, base64 or DER parsing). Each entry keeps at most
``MAX_ALIASES`` aliases; more variants of one leaf replace that leaf's own oldest alias, so
they never evict anyone else's entry, and cost a decode and a hash, not a verification.

Positive entries hold a chain-verified identity (before policy, which is re-checked on every
hit) until the earliest of: the chain's ``notAfter``, the revocation data's ``nextUpdate``,
and a TTL; and from the moment it was verified at: a clock that steps back before that
moment (an NTP correction, a restored virtual machine) may read a time before a
``notBefore`` or a CRL's ``thisUpdate``, so the entry is not served then and the request
is verified again. A new entry starts *on probation*, in a small segment of its own; the first
request it is admitted for (any policy, or none) moves it to the main LRU. Certificates that
every policy refuses therefore only ever evict each other.

Negative entries are few and short-lived: they blunt floods of the same bad input without
pinning a refusal for long. They live apart from the positive ones and never evict them.
Failures are also counted per leaf: once ``MAX_FAILING_VARIANTS`` different inputs with one
leaf have failed within the negative TTL, further new variants of that leaf are refused with
the last failure, without verifying them again, until the TTL has passed.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography import x509

from mtlsauth._errors import MTLSAuthError, PolicyDenied
from mtlsauth._identity import ClientIdentity
from mtlsauth._memo import BoundedMemo

if TYPE_CHECKING:
    from mtlsauth._policy._policy import Policy

__all__ = [
    "MAX_ALIASES",
    "MAX_FAILING_VARIANTS",
    "BoundedMemo",
    "CacheEntry",
    "ExactAliases",
    "NegativeEntry",
    "VerificationCache",
    "identity_key",
    "leaf_key",
]

MAX_ALIASES = 4
"""Raw-input variants remembered per cached verification."""
MAX_FAILING_VARIANTS = 4
"""Different failing inputs per leaf verified within the negative TTL, before refusing more."""


class _NotCached:
    """The type of ``NOT_CACHED``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NOT_CACHED"


NOT_CACHED = _NotCached()
"""What ``Verifier.authenticate_cached`` returns when only a full verification can answer."""


class _CacheMiss(Exception):
    """Raised inside ``authenticate_cached`` where a full verification would start."""


_MAX_VERDICTS = 32  # distinct policies remembered per cached identity (routes x verifier)


def chain_key(items: Sequence[str | bytes], tag: bytes) -> bytes:
    """The cache key of a presented chain (PEM strings, DER items or header values).

    ``tag`` keeps the kinds of input apart. Text keys as its bytes only when it is ASCII
    (PEM), which ``chain_to_der`` reads as those bytes; other text, which it refuses, is
    marked, so that it never shares the key of bytes it encodes to, and is encoded with
    ``surrogatepass``: one to one for every ``str``, lone surrogates included (with
    ``surrogateescape`` a high surrogate raised ``UnicodeEncodeError``, a traceback where
    a refusal belongs, and ``"\\udcc3\\udca9"`` keyed as ``"é"``).

    Raises:
        TypeError: an item that is neither ``str`` nor ``bytes``. Other buffers are not
            keyed as they are: a ``memoryview``'s ``len`` counts its items, not its octets,
            so the length prefix would not tell two chains apart (``_tls_items`` reads them
            as bytes first)."""
    if len(items) == 1:  # the common case: one PEM string or one header value
        item = items[0]
        if isinstance(item, str):
            mark = b"\x01" if item.isascii() else b"\x03"
            return hashlib.sha256(tag + mark + item.encode("utf-8", "surrogatepass")).digest()
        if not isinstance(item, bytes):
            raise TypeError(f"cannot key a {type(item).__name__}")
        return hashlib.sha256(tag + b"\x01" + item).digest()
    # Several items: length-prefix each, so no two different chains share a key.
    h = hashlib.sha256(tag + b"\x02" + len(items).to_bytes(2, "big"))
    for item in items:
        if isinstance(item, str):
            raw = item.encode("utf-8", "surrogatepass")
            size = len(raw) if item.isascii() else len(raw) | 1 << 31  # lengths are < 2**31
        elif isinstance(item, bytes):
            raw, size = item, len(item)
        else:
            raise TypeError(f"cannot key a {type(item).__name__}")
        h.update(size.to_bytes(4, "big"))
        h.update(raw)
    return h.digest()


def der_chain_key(ders: Sequence[bytes], tag: bytes) -> tuple[bytes, bytes | None]:
    """The cache key of a chain already in DER (``chain_to_der``'s output), and the SHA-256
    of its first certificate (``None`` for no certificate), which a miss needs again as
    the leaf's fingerprint and entry key: the leaf's bytes are hashed once.

    The key hashes that fixed-size digest, then each further certificate after its length,
    so no two different chains share a key; the ``\x04`` mark keeps these keys apart from
    ``chain_key``'s under the same ``tag``."""
    if not ders:
        return hashlib.sha256(tag + b"\x04\x00\x00").digest(), None
    digest = hashlib.sha256(ders[0]).digest()
    h = hashlib.sha256(tag + b"\x04" + len(ders).to_bytes(2, "big") + digest)
    for der in ders[1:]:
        h.update(len(der).to_bytes(4, "big"))
        h.update(der)
    return h.digest(), digest


def policy_verdict(
    policy: Policy, identity: ClientIdentity
) -> tuple[type[MTLSAuthError], str, str] | None:
    """Run a policy once; a denial is kept as data so it can be raised again cheaply."""
    try:
        policy.check(identity)
    except PolicyDenied as exc:
        return (type(exc), exc.code, exc.detail)
    return None


def leaf_key(source: str, leaf_digest: bytes) -> bytes:
    """What identifies a verification: the leaf's exact bytes and where it came from.

    ``leaf_digest`` is the SHA-256 of the leaf's DER (the fingerprint the identity carries,
    so the leaf's bytes are hashed once per miss). The digest's fixed 32 octets come first,
    so no two (digest, source) pairs share a key, and every key is longer than the 32 octets
    of an ``identity_key``, which shares the same dictionaries."""
    return leaf_digest + b"L" + source.encode("utf-8", "surrogatepass")


def identity_key(identity: ClientIdentity) -> bytes:
    """The key of a proxy-verified identity: every compared field, and the source."""
    return hashlib.sha256(b"I" + repr(identity).encode("utf-8", "surrogatepass")).digest()


class CacheEntry:
    """One cached verification.

    It is served for the clock readings ``since <= now < expires``: ``since`` is the moment
    (``time.time()`` seconds) the verification was made for. A verification admits for any
    later moment until ``expires`` (the earliest end of a validity window or of a
    revocation answer), but not necessarily for an earlier one: the clock may step back
    before a ``notBefore`` (of the leaf, an intermediate, a pinned certificate) or a
    revocation answer's ``thisUpdate``.

    ``tokens`` are the trust/pin/revocation snapshots it was computed under: a result that
    finishes after a reload must never be served under the new trust (compared by identity on
    every hit, and held here so that the comparison stays meaningful).

    ``verdicts`` are the policy verdicts for this identity, by id(policy) -> (policy, None |
    (type, code, detail)); the policy is held so that its id() cannot be reused. Policies and
    identities are immutable, so a verdict never changes; bounded per entry by the Verifier.
    """

    __slots__ = (
        "admitted",
        "aliases",
        "chain",
        "expires",
        "identity",
        "key",
        "since",
        "tokens",
        "verdicts",
    )

    def __init__(
        self,
        identity: ClientIdentity,
        chain: Sequence[x509.Certificate],
        expires: float,  # time.time() seconds
        tokens: object = None,
        since: float = 0.0,  # time.time() seconds
    ) -> None:
        self.identity = identity
        self.chain = chain
        self.expires = expires
        self.since = since
        self.tokens = tokens
        self.verdicts: dict[int, tuple[object, tuple[type[MTLSAuthError], str, str] | None]] = {}
        self.key = b""  # the leaf (or identity) key, set when cached
        self.aliases: tuple[bytes, ...] = ()
        self.admitted = False  # True once some request was admitted with it

    def denial(self, policy: Policy) -> tuple[type[MTLSAuthError], str, str] | None:
        """``policy``'s verdict on this identity, memoised (a denial kept as data)."""
        verdicts = self.verdicts
        memo = verdicts.get(id(policy))
        if memo is None or memo[0] is not policy:
            memo = (policy, policy_verdict(policy, self.identity))
            if len(verdicts) < _MAX_VERDICTS:
                verdicts[id(policy)] = memo
        return memo[1]

    def __repr__(self) -> str:
        return f"<CacheEntry {self.identity.subject!r} admitted={self.admitted}>"


@dataclass(frozen=True, slots=True)
class NegativeEntry:
    """A cached refusal; ``tokens`` as in ``CacheEntry``: one computed under trust, pins or
    revocation data since replaced is never served (a lifted revocation, a CA added)."""

    error_type: type[MTLSAuthError]
    code: str
    detail: str
    expires: float
    tokens: object = None


class _Failures:
    __slots__ = ("count", "expires", "last")

    def __init__(self, last: NegativeEntry) -> None:
        self.count = 1
        self.expires = last.expires
        self.last = last


class ExactAliases:
    """Cache keys (aliases) remembered by the exact presented value they were computed
    from: a header value (``str``/``bytes``) or a TLS chain (a tuple of them).

    The alias is a pure function of the value (a SHA-256 of it, see ``chain_key`` and
    ``ForwardedCert.plain_key``), so a hit here replaces hashing the value and changes no
    verdict: the cache entry is still looked up by the alias, with every check. Keyed by
    the whole value, never a digest or ``id()``. Bounded by the characters held
    (``budget``), the oldest going first; a value over a 64th of it is not remembered.
    Callers remember only values a request was admitted with, so a flood of new values
    fills nothing.
    """

    __slots__ = ("_held", "_lock", "budget", "map")

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.map: dict[object, bytes] = {}  # value -> alias; read inline on the hot path
        self._held = 0
        self._lock = threading.Lock()

    def remember(self, value: str | bytes | tuple[str | bytes, ...], alias: bytes) -> None:
        """Remember ``alias`` for ``value`` (after a request with it was admitted)."""
        size = _value_size(value)
        if size > self.budget // 64:
            return
        with self._lock:
            held = self.map
            if value in held:
                return
            while held and self._held + size > self.budget:
                oldest = next(iter(held))
                del held[oldest]
                self._held -= _value_size(oldest)  # type: ignore[arg-type]
            held[value] = alias
            self._held += size

    def clear(self) -> None:
        with self._lock:
            self.map.clear()
            self._held = 0

    def __len__(self) -> int:
        return len(self.map)


def _value_size(value: str | bytes | tuple[str | bytes, ...]) -> int:
    return sum(len(v) for v in value) if isinstance(value, tuple) else len(value)


class VerificationCache:
    """Successes (main LRU + probation) and a small LRU of failures, safe under threads and asyncio."""

    __slots__ = (
        "_aliases",
        "_failures",
        "_lock",
        "_main",
        "_neg",
        "_neg_size",
        "_neg_ttl",
        "_probation",
        "_probation_size",
        "_size",
        "hits",
        "misses",
    )

    def __init__(self, size: int, *, negative_size: int = 256, negative_ttl: float = 5.0) -> None:
        self._size = size
        self._probation_size = min(size, max(16, size // 10))
        self._neg_size = negative_size if size else 0
        self._neg_ttl = negative_ttl
        self._main: OrderedDict[bytes, CacheEntry] = OrderedDict()
        self._probation: OrderedDict[bytes, CacheEntry] = OrderedDict()
        self._aliases: dict[bytes, CacheEntry] = {}
        self._neg: OrderedDict[bytes, NegativeEntry] = OrderedDict()
        self._failures: OrderedDict[bytes, _Failures] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    # -- the hot path -----------------------------------------------------------------------
    def admitted(self, key: bytes, tokens: object, now: float) -> CacheEntry | None:
        """The entry for a raw-input key (an alias) when it was admitted, computed under
        ``tokens`` and is current (``since <= now < expires``); else ``None``. Counts and
        moves nothing: the caller that serves the entry says so with ``touch``
        (``Verifier._hit``, the adapters' hot path, which leaves every other case to
        ``get``)."""
        entry = self._aliases.get(key)
        if (
            entry is None
            or not entry.admitted
            or entry.tokens is not tokens
            or entry.expires <= now
            or now < entry.since
        ):
            return None
        return entry

    def touch(self, entry: CacheEntry) -> None:
        """Count a hit on an entry ``admitted`` returned, and keep it recently used."""
        try:
            self._main.move_to_end(entry.key)
        except KeyError:  # evicted by another thread meanwhile; the entry is still valid
            pass
        self.hits += 1

    def get(self, key: bytes, now: float, tokens: object) -> CacheEntry | None:
        """The entry for a raw-input key (an alias), if cached, computed under ``tokens`` (a
        verification that finished after a reload was noticed is not) and current (not
        expired, and not verified for a moment after ``now``: the clock stepped back)."""
        entry = self._aliases.get(key)
        if entry is None or entry.tokens is not tokens:
            self.misses += 1
            return None
        if entry.expires <= now or now < entry.since:
            with self._lock:
                self._drop(entry)
            self.misses += 1
            return None
        # move_to_end is one C call, atomic under the GIL (and under the per-object lock of
        # free-threaded builds); the lock only serialises the multi-step writers below.
        try:
            (self._main if entry.admitted else self._probation).move_to_end(entry.key)
        except KeyError:  # evicted by another thread meanwhile; the entry is still valid
            pass
        self.hits += 1
        return entry

    # -- misses -------------------------------------------------------------------------------
    def find(self, key: bytes, alias: bytes, now: float, tokens: object) -> CacheEntry | None:
        """The entry for a leaf (or identity) ``key`` computed under ``tokens``; ``alias`` joins it.

        Another variant of an already verified leaf: no verification, and no new entry.
        """
        entry = self._main.get(key) or self._probation.get(key)
        if entry is None or entry.tokens is not tokens or entry.expires <= now or now < entry.since:
            return None
        with self._lock:
            if entry.key not in (self._main if entry.admitted else self._probation):
                return None  # evicted meanwhile
            self._add_alias(entry, alias)
        self.hits += 1
        self.misses -= 1  # counted by get(); this variant cost no verification
        return entry

    def put(self, key: bytes, alias: bytes, entry: CacheEntry) -> None:
        """Cache a new verification under its leaf ``key``, on probation, with one alias."""
        if not self._size:
            return
        with self._lock:
            old = self._main.get(key) or self._probation.get(key)
            if old is not None:
                self._drop(old)
            entry.key = key
            entry.admitted = False
            self._probation[key] = entry
            self._add_alias(entry, alias)
            while len(self._probation) > self._probation_size:
                self._drop(next(iter(self._probation.values())))

    def admit(self, entry: CacheEntry) -> None:
        """A request was admitted with ``entry``: move it from probation to the main LRU."""
        if entry.admitted:
            return
        with self._lock:
            if entry.admitted or self._probation.get(entry.key) is not entry:
                entry.admitted = True  # not cached (any more): nothing to move
                return
            del self._probation[entry.key]
            entry.admitted = True
            self._main[entry.key] = entry
            while len(self._main) > self._size:
                self._drop(next(iter(self._main.values())))

    def _add_alias(self, entry: CacheEntry, alias: bytes) -> None:
        other = self._aliases.get(alias)
        if other is entry:
            return
        if other is not None:  # the same bytes verified again (e.g. after expiry)
            other.aliases = tuple(a for a in other.aliases if a != alias)
        aliases = entry.aliases
        if len(aliases) >= MAX_ALIASES:
            self._aliases.pop(aliases[0], None)
            aliases = aliases[1:]
        entry.aliases = (*aliases, alias)
        self._aliases[alias] = entry

    def _drop(self, entry: CacheEntry) -> None:
        segment = self._main if entry.admitted else self._probation
        if segment.get(entry.key) is entry:
            del segment[entry.key]
        for alias in entry.aliases:
            if self._aliases.get(alias) is entry:
                del self._aliases[alias]
        entry.aliases = ()

    # -- failures -----------------------------------------------------------------------------
    def get_negative(self, key: bytes, now: float, tokens: object) -> NegativeEntry | None:
        """The refusal cached for a raw-input key, computed under ``tokens``, not expired."""
        entry = self._neg.get(key)
        if entry is None or entry.expires <= now or entry.tokens is not tokens:
            return None
        return entry

    def failing_leaf(self, key: bytes, now: float, tokens: object) -> NegativeEntry | None:
        """The last failure of a leaf that failed with too many different inputs lately,
        under ``tokens``."""
        record = self._failures.get(key)
        if (
            record is None
            or record.expires <= now
            or record.count < MAX_FAILING_VARIANTS
            or record.last.tokens is not tokens
        ):
            return None
        return record.last

    def put_negative(
        self,
        key: bytes,
        error: MTLSAuthError,
        now: float,
        leaf: bytes | None = None,
        tokens: object = None,
    ) -> None:
        """Cache a refusal computed under ``tokens`` (taken before the work began)."""
        if not self._neg_size:
            return
        entry = NegativeEntry(type(error), error.code, error.detail, now + self._neg_ttl, tokens)
        with self._lock:
            self._neg[key] = entry
            self._neg.move_to_end(key)
            while len(self._neg) > self._neg_size:
                self._neg.popitem(last=False)
            if leaf is None:
                return
            record = self._failures.get(leaf)
            if record is None or record.expires <= now or record.last.tokens is not tokens:
                self._failures[leaf] = _Failures(entry)
            else:
                record.count += 1
                record.last = entry
                record.expires = entry.expires
            self._failures.move_to_end(leaf)
            while len(self._failures) > self._neg_size:
                self._failures.popitem(last=False)

    # -- maintenance ----------------------------------------------------------------------------
    def clear(self) -> None:
        with self._lock:
            self._main.clear()
            self._probation.clear()
            self._aliases.clear()
            self._neg.clear()
            self._failures.clear()

    def __len__(self) -> int:
        return len(self._main) + len(self._probation)

    def stats(self) -> dict[str, int]:
        return {
            "entries": len(self._main) + len(self._probation),
            "admitted": len(self._main),
            "aliases": len(self._aliases),
            "negative_entries": len(self._neg),
            "max_entries": self._size,
            "hits": self.hits,
            "misses": self.misses,
        }
