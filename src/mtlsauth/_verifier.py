"""Verifier: presented chain -> pinned or path validation -> revocation -> policy -> identity.

The hot path is a cache hit: one SHA-256 over the raw presented bytes, a dict look-up, then the
cheap re-checks (revocation set look-ups and policy) so a freshly revoked certificate or a
stricter per-route policy applies at once.

Why one module of this size: it is the orchestration alone (certificate rules are in
``_pathvalidation``, cache keys and verdicts in ``_cache``, composition in ``_revocation``); the
rest is the cached hot path, kept in one place so it stays readable as one sequence.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from contextvars import ContextVar
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from mtlsauth._cache import (
    NOT_CACHED,
    CacheEntry,
    ExactAliases,
    VerificationCache,
    _CacheMiss,
    _NotCached,
    chain_key,
    der_chain_key,
    identity_key,
    leaf_key,
)
from mtlsauth._encoding import chain_to_der, check_leaf_size, load_der
from mtlsauth._errors import (
    AmbiguousRequest,
    CertificateInvalid,
    CertificateMissing,
    CertificateRevoked,
    MTLSAuthError,
    RevocationUnavailable,
)
from mtlsauth._forwarded._cert import ForwardedCert
from mtlsauth._hooks import report_unexpected
from mtlsauth._identity import ClientIdentity, identity_from_certificate
from mtlsauth._leafder import read_leaf
from mtlsauth._memo import BoundedMemo
from mtlsauth._observe import cache_missed
from mtlsauth._pathbuilding import _signed_by, cheap_to_verify
from mtlsauth._pathvalidation import (
    check_leaf_key,
    check_pinned_leaf,
    missing_issuer_hint,
    shifted,
    validate_path,
)
from mtlsauth._policy._policy import Policy
from mtlsauth._reload import NO_WAIT, WouldBlock
from mtlsauth._revocation._compose import AllOf, reload_part, unexpected_log_limiter
from mtlsauth._revocation._crl import what_if
from mtlsauth._truststore import (
    TrustSnapshot,
    TrustStore,
    load_certificate_file,
    not_a_trust_store,
    refuse_end_entities,
)
from mtlsauth._types import HealthReporting, Presented, RevocationChecker

__all__ = ["NOT_CACHED", "Verifier"]

_DEFAULT_TTL = 600.0
# Characters of admitted header values (and of TLS chains) remembered with their cache
# key, each (ExactAliases): about a thousand nginx headers of a P-256 leaf.
_EXACT_ALIAS_BUDGET = 1 << 20
_MAX_SKEW = 3600.0
# Refusals that the clock alone turns into admissions: never cached as refusals.
_TIME_LIFTS = frozenset({"certificate_not_yet_valid"})
_MAX_ROUTE_POLICIES = 256
# Where ``verify()`` keeps its leaves' entries: certificates handed over without a TLS
# handshake (pasted, read from a file) prove no possession, so a leaf anyone can copy never
# shares an entry, or a count of failures (``VerificationCache.failing_leaf``), with the
# TLS clients that hold its key.
_PASTED = "pasted"  # distinct route policies remembered with the deny-lists added


_CACHE_ONLY: ContextVar[bool] = ContextVar("mtlsauth_cache_only", default=False)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _parse_certs(items: Iterable[object], what: str) -> tuple[x509.Certificate, ...]:
    """Certificates given at construction: PEM/DER, ``x509.Certificate``, or a file path
    (``pathlib.Path``, or a ``str`` naming an existing file)."""
    if isinstance(items, str | bytes | x509.Certificate | os.PathLike):
        items = (items,)
    out: list[x509.Certificate] = []
    for item in items:
        if isinstance(item, os.PathLike) or (isinstance(item, str) and "-----BEGIN" not in item):
            path = Path(item)
            if not path.is_file():
                raise ValueError(
                    f"{what}: {str(item)[:200]!r} is neither PEM/DER nor an existing file"
                )
            out += load_certificate_file(path, what=what)
            continue
        try:
            out += [load_der(d) for d in chain_to_der(item)]
        except CertificateInvalid as exc:
            raise ValueError(f"{what}: {exc.detail}") from None
    return tuple(out)


def _aware(value: object) -> bool:
    """Whether ``value`` is a timezone-aware datetime (its offset known, not ``None``)."""
    return isinstance(value, datetime) and value.utcoffset() is not None


def _self_signed(cert: x509.Certificate) -> bool:
    """Whether ``cert`` names itself as issuer and its signature verifies with its own key."""
    try:
        cert.verify_directly_issued_by(cert)
    except Exception:  # noqa: BLE001 - another issuer, a bad signature, an unusable key
        return False
    return True


class Verifier:
    """Decides whether a client certificate chain is genuine, current, unrevoked and allowed.

    Args:
        trust_store: The CAs that issue client certificates. Required unless ``pinned`` is set.
        policy: Who is allowed (allow/deny-lists). ``None`` or ``Policy()`` admits any
            certificate that chains to ``trust_store``.
        revocation: A ``CRLSet``, an ``OCSPChecker``, or a non-empty sequence of them (all
            must pass; an empty one is a ``ValueError``).
        pinned: Exact certificates accepted without a CA (self-signed clients, RFC 8705
            ``self_signed_tls_client_auth``): certificates in any input form, or a
            ``TrustStore`` (which can be built from files and reloads). Matched by their
            exact bytes; one that also chains to ``trust_store`` is checked by
            ``revocation`` like any other certificate.
        max_depth: How many intermediate CAs may sit between the leaf and the anchor
            (cryptography's ``max_chain_depth``). Apache ``SSLVerifyDepth N`` and nginx
            ``ssl_verify_depth N`` count the anchor too: they equal ``max_depth=N-1``.
        forwarded: Accept a certificate header from trusted proxies (``ForwardedCert``).
        intermediates: Known intermediate CAs, for clients that send only their leaf. They
            are *not* trust anchors.
        clock_skew: Tolerance for validity windows (``timedelta`` or seconds, at most 1 h).
        cache_size: Maximum cached verifications that a request was admitted with (0 disables
            caching); new and refused ones wait in a segment a tenth that size. Entries are
            per leaf and source, so variants of a chain cannot multiply them.
        cache_ttl: Seconds a cached success may live at most.

    Raises:
        ValueError, TypeError: on bad configuration, at construction.

    Security note: ``verify()`` on a certificate *without proof of possession* (a header, a
    pasted PEM) proves only that the certificate is genuine, not that the caller holds its key.
    That proof is the TLS handshake's job, which is why headers are believed only from
    ``forwarded.trusted_proxies``.
    """

    __slots__ = (
        "_anchor_memo",
        "_cache",
        "_cache_ttl",
        "_chain_aliases",
        "_forwarded",
        "_header_aliases",
        "_intermediates",
        "_last_tokens",
        "_max_depth",
        "_pinned",
        "_pinned_store",
        "_policy",
        "_policy_check",
        "_revocation",
        "_route_policies",
        "_skew_s",
        "_trust_store",
    )

    def __init__(
        self,
        *,
        trust_store: TrustStore | None = None,
        policy: Policy | None = None,
        revocation: RevocationChecker | Sequence[RevocationChecker] | None = None,
        pinned: Iterable[object] | TrustStore = (),
        max_depth: int = 8,
        forwarded: ForwardedCert | None = None,
        intermediates: Iterable[object] = (),
        clock_skew: timedelta | float = 0.0,
        cache_size: int = 10_000,
        cache_ttl: float = _DEFAULT_TTL,
    ) -> None:
        if trust_store is not None and not isinstance(trust_store, TrustStore):
            raise not_a_trust_store(trust_store)
        if trust_store is not None:
            refuse_end_entities(trust_store, "trust_store")
        if policy is not None and not isinstance(policy, Policy):
            raise TypeError("policy must be a Policy")
        if forwarded is not None and not isinstance(forwarded, ForwardedCert):
            raise TypeError("forwarded must be a ForwardedCert (or ForwardedCert.preset(...))")
        if isinstance(revocation, list | tuple):
            if not revocation:  # AllOf(()) would pass everything, and look configured
                raise ValueError(
                    "revocation is an empty sequence: give at least one checker, or None "
                    "for no revocation checking"
                )
            revocation = AllOf(revocation) if len(revocation) != 1 else revocation[0]
        if revocation is not None and not isinstance(revocation, RevocationChecker):
            raise TypeError("revocation must be a CRLSet, an OCSPChecker, or a sequence of them")
        if isinstance(max_depth, bool) or not isinstance(max_depth, int):
            raise TypeError("max_depth must be an int")
        if not 0 <= max_depth <= 32:
            raise ValueError("max_depth must be between 0 and 32")
        if isinstance(clock_skew, timedelta):
            clock_skew = clock_skew.total_seconds()
        if isinstance(clock_skew, bool) or not isinstance(clock_skew, int | float):
            raise TypeError("clock_skew must be a timedelta or a number of seconds")
        if not 0 <= clock_skew <= _MAX_SKEW:
            raise ValueError("clock_skew must be between 0 and 3600 seconds")
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 0:
            raise ValueError("cache_size must be a non-negative int")
        if (
            isinstance(cache_ttl, bool)
            or not isinstance(cache_ttl, int | float)
            # nan would make an entry's expiry one no clock passes (notAfter included)
            or not 0 < cache_ttl < math.inf
        ):
            raise ValueError("cache_ttl must be a positive, finite number of seconds")

        self._trust_store = trust_store
        self._policy = policy
        self._revocation: RevocationChecker | None = revocation
        self._forwarded = forwarded
        self._pinned_store = pinned if isinstance(pinned, TrustStore) else None
        self._pinned: frozenset[str] = frozenset()
        if not isinstance(pinned, TrustStore):
            self._pinned = _fingerprints(_parse_certs(pinned, "pinned"))
        if trust_store is None and self._pinned_store is None and not self._pinned:
            raise ValueError("a Verifier needs a trust_store, pinned certificates, or both")
        self._intermediates = _parse_certs(intermediates, "intermediates")
        self._max_depth = max_depth
        self._skew_s = float(clock_skew)
        self._policy_check = None if policy is None or policy.is_empty else policy.check
        # A route's policy replaces the allow-lists, never the deny-lists: each one is used
        # with this policy's deny-lists added (memoised per route policy, holding it).
        self._route_policies: dict[int, tuple[Policy, Policy]] | None = (
            {} if policy is not None and policy._deny else None
        )
        self._cache = VerificationCache(cache_size)
        self._cache_ttl = float(cache_ttl)
        self._last_tokens: tuple[object, ...] = ()
        self._anchor_memo: tuple[TrustSnapshot, tuple[x509.Certificate, ...]] | None = None
        # Cache keys by exact presented value, for values admitted before (ExactAliases).
        self._header_aliases = ExactAliases(_EXACT_ALIAS_BUDGET)
        self._chain_aliases = ExactAliases(_EXACT_ALIAS_BUDGET)

    # -- read-only configuration (build a new Verifier to change it) -----------------------
    @property
    def trust_store(self) -> TrustStore | None:
        """The trust anchors."""
        return self._trust_store

    @property
    def policy(self) -> Policy | None:
        """The default policy (routes may use their own)."""
        return self._policy

    @property
    def revocation(self) -> RevocationChecker | None:
        """The revocation checker, if any."""
        return self._revocation

    @property
    def forwarded(self) -> ForwardedCert | None:
        """The forwarded-certificate configuration, if headers are accepted at all."""
        return self._forwarded

    # -- public API -----------------------------------------------------------------------
    def verify(
        self, chain: object, *, at: datetime | None = None, policy: Policy | None = None
    ) -> ClientIdentity:
        """Verify a chain (leaf first) and return the client's identity.

        Args:
            chain: PEM ``str``/``bytes`` (one or many certificates), DER ``bytes``, an
                ``x509.Certificate``, or a sequence of these.
            at: Validate as of this moment (timezone-aware) instead of now; not cached.
            policy: Use this policy's allow-lists instead of the Verifier's own (per-route
                rules); the Verifier policy's deny-lists still apply.

        Results are cached apart from those of TLS clients (``authenticate``): these
        certificates come without proof of possession, so nothing done here with a leaf
        anyone can copy changes how its holder's connections are answered.

        Raises:
            MTLSAuthError: ``CertificateMissing``, ``CertificateInvalid``, ``CertificateRevoked``
                or ``PolicyDenied``, each with a stable ``code``.
        """
        if at is not None:
            if at.tzinfo is None or at.utcoffset() is None:  # Python's "naive", both
                raise ValueError("at must be timezone-aware")
            # In UTC from here on: two times of one zone compare by their wall clock alone,
            # so 01:30 before and after a clock goes back would count as the same moment.
            try:
                at = at.astimezone(timezone.utc)
            except OverflowError:
                raise ValueError("at must fall within the years 1 to 9999 in UTC") from None
            # A what-if call neither reads nor writes this Verifier's cache, and revocation
            # sources write no shared state for it (see _revocation.what_if).
            with what_if():
                identity = self._verify_ders(chain_to_der(chain), at, "tls")[0]
            self._apply_policy(identity, policy)
            return identity
        # Certificates anyone may paste (no proof of possession): their results and
        # failures are kept apart from those of TLS clients with the same leaf (_PASTED).
        if isinstance(chain, str | bytes):  # key on the raw input: a hit parses nothing
            return self._verified(
                chain_key((chain,), b"v"), lambda: chain_to_der(chain), "tls", policy, _PASTED
            )
        ders = chain_to_der(chain)
        key, digest = der_chain_key(ders, b"d")
        return self._verified(key, lambda: ders, "tls", policy, _PASTED, digest)

    def verify_pem(self, pem: str | bytes, *, at: datetime | None = None) -> ClientIdentity:
        """Verify PEM text holding the leaf followed by any intermediates."""
        if not isinstance(pem, str | bytes):
            raise CertificateInvalid("PEM input must be str or bytes", code="certificate_malformed")
        return self.verify(pem, at=at)

    def authenticate(
        self, presented: Presented, *, required: bool = True, policy: Policy | None = None
    ) -> ClientIdentity | None:
        """The single entry point adapters use.

        The TLS peer chain is used unless the peer is a trusted proxy: from a trusted proxy
        only its certificate header counts, since the proxy's own TLS certificate (upstream
        mTLS) identifies the proxy, not its client. Returns ``None`` when no certificate came
        and ``required`` is False.

        Raises:
            MTLSAuthError: any refusal, including ``UntrustedForwarder`` for a certificate
                header from a peer that is not a trusted proxy.
        """
        if presented.tls_error:
            raise CertificateInvalid(
                "the server reported a TLS client-certificate error", code="tls_verification_failed"
            )
        fwd = self._forwarded
        tls_chain = presented.tls_chain
        if fwd is not None and not (tls_chain and not fwd.is_trusted(presented.peer)):
            # The common request first: one plain header from a trusted proxy, admitted
            # from the cache. Anything else (or a miss) takes the whole path below.
            try:
                plain = fwd.plain_value(presented.headers)
            except (TypeError, ValueError):
                raise _unreadable_headers() from None
            if type(plain) is str:  # other values: extract refuses them (request_malformed)
                identity = self._cached_header(plain, presented.peer, policy)
                if identity is not None:
                    return identity
            try:
                value = fwd.extract(presented)
            except (TypeError, ValueError):  # headers that are not (name, value) pairs
                raise _unreadable_headers() from None
            if value is not None:
                return self._verified(
                    hashlib.sha256(value.key).digest(), value.decode, value.source, policy
                )
            # A trusted proxy speaks for its clients: the certificate it presented itself
            # (upstream mTLS) names the proxy, never the client it forwards.
            tls_chain = ()
        if tls_chain:
            try:
                identity, key = self._tls_lookup(tls_chain, presented.peer, policy)
            except TypeError:  # items other than str/bytes (a direct caller's): read or refuse
                tls_chain = _tls_items(tls_chain)
                identity, key = self._tls_lookup(tls_chain, presented.peer, policy)
            if identity is not None:
                return identity
            return self._verified(key, lambda: chain_to_der(tls_chain), "tls", policy)
        if required:
            raise CertificateMissing("no client certificate was presented")
        return None

    def authenticate_cached(
        self, presented: Presented, *, required: bool = True, policy: Policy | None = None
    ) -> ClientIdentity | _NotCached | None:
        """As ``authenticate``, answered from the cache only: it never blocks.

        Returns the identity (or ``None``) when ``authenticate`` would return it without a
        verification, raises what it would raise from a cached refusal or the request
        itself (no certificate, an untrusted forwarder, a policy), and returns
        ``NOT_CACHED`` when only a full verification (path building, revocation, maybe
        network I/O) can answer: call ``authenticate`` for that, off the event loop.
        """
        token = _CACHE_ONLY.set(True)
        # Files due for a check, or being loaded by another thread, are left to the call that
        # may block: stat'ing, parsing or waiting here would hold the event loop.
        no_wait = NO_WAIT.set(True)
        try:
            return self.authenticate(presented, required=required, policy=policy)
        except (_CacheMiss, WouldBlock):
            return NOT_CACHED
        finally:
            NO_WAIT.reset(no_wait)
            _CACHE_ONLY.reset(token)

    @property
    def may_block(self) -> bool:
        """True when a verification may do network I/O (OCSP): run it off the event loop."""
        return self._revocation is not None and self._revocation.may_block

    def reload(self) -> bool:
        """Re-read file-backed trust, pins and CRLs now; drop cached results if anything changed."""
        changed = False
        for part in (self._trust_store, self._pinned_store, self._revocation):
            if part is not None:
                changed = reload_part(part) or changed
        if changed:
            self._cache.clear()
        return changed

    def health(self) -> dict[str, object]:
        """Status for health endpoints: reload errors, cache statistics, the number of CA
        anchors in force, and warnings (a trust store left with no CA and no pin)."""
        parts: dict[str, object] = {"cache": self._cache.stats()}
        errors: list[str] = []
        for name, part in (
            ("trust_store", self._trust_store),
            ("pinned", self._pinned_store),
            ("revocation", self._revocation),
        ):
            if isinstance(part, HealthReporting):
                status = part.health()
                parts[name] = status
                items = status if isinstance(status, list) else [status]
                errors += [
                    str(s["last_error"])
                    for s in items
                    if isinstance(s, dict) and s.get("last_error")
                ]
        warnings: list[str] = []
        if self._trust_store is not None:
            # A withdrawn trust file (emptied or deleted) is what the operator asked for, no
            # reload error (``ok`` stays true); yet from then on every client without a pin is
            # refused: the count and a warning let monitoring see it.
            try:
                anchors = len(self._anchors(self._trust_store.snapshot()))
                pins = len(self._pinned_fingerprints())
            except Exception as exc:  # noqa: BLE001 - a health check reports, never raises
                errors.append(f"the trust store cannot be read ({type(exc).__name__})")
            else:
                parts["anchors"] = anchors
                if not anchors and not pins:
                    warnings.append(
                        "the trust store holds no CA and no certificate is pinned: every "
                        "client is refused"
                    )
        parts["warnings"] = warnings
        parts["ok"] = not errors
        parts["errors"] = errors
        return parts

    def clear_cache(self) -> None:
        """Forget every cached verification."""
        self._cache.clear()
        self._header_aliases.clear()
        self._chain_aliases.clear()

    # -- internals ------------------------------------------------------------------------
    def _route_policy(self, policy: Policy) -> Policy:
        """``policy`` (a route's, in place of the Verifier's own) with the Verifier's
        deny-lists added, when it has any."""
        memo = self._route_policies
        if memo is None:
            return policy
        hit = memo.get(id(policy))
        if hit is not None and hit[0] is policy:
            return hit[1]
        combined = policy._with_deny_lists_of(self._policy)  # type: ignore[arg-type]
        if len(memo) >= _MAX_ROUTE_POLICIES:
            memo.clear()
        memo[id(policy)] = (policy, combined)
        return combined

    def _apply_policy(self, identity: ClientIdentity, policy: Policy | None) -> None:
        if policy is not None:
            policy = self._route_policy(policy)
            if not policy.is_empty:
                policy.check(identity)
        elif self._policy_check is not None:
            self._policy_check(identity)

    def _sync_tokens(self) -> tuple[object, ...]:
        """Drop cached results when trust, pins or revocation data were reloaded; return the
        tokens in force, as read here.

        Compared by identity: each source hands out the same snapshot object until it reloads.
        The caller uses the returned tuple, never ``_last_tokens`` read again: another thread
        that read its snapshots before a reload may still write its older tuple there.
        """
        trust, pins, rev = self._trust_store, self._pinned_store, self._revocation
        t = trust.snapshot() if trust is not None else None
        p = pins.snapshot() if pins is not None else None
        r = rev.token if rev is not None else None
        last = self._last_tokens
        if not last or t is not last[0] or p is not last[1] or r is not last[2]:
            self._cache.clear()
            last = self._last_tokens = (t, p, r)
        return last

    def _hit(self, key: bytes, policy: Policy | None) -> ClientIdentity | None:
        """What ``_verified(key, ...)`` returns when a cache hit is all it does: the entry
        for ``key`` was computed under the trust, pins and revocation data in force, has
        not expired, was admitted before, and ``policy`` (else the Verifier's own) admits
        it. ``None`` for anything else, having counted and moved nothing: ``_verified``
        then decides (a miss, a reload, a refusal, an entry on probation)."""
        last = self._last_tokens
        trust, rev, pins = self._trust_store, self._revocation, self._pinned_store
        if (
            not last
            or (trust is not None and trust.snapshot() is not last[0])
            or (rev is not None and rev.token is not last[2])
            or (pins is not None and pins.snapshot() is not last[1])
        ):
            return None
        cache = self._cache
        entry = cache.admitted(key, last, time.time())
        if entry is None:
            return None
        if policy is None:
            if self._policy_check is not None and entry.denial(self._policy) is not None:  # type: ignore[arg-type]
                return None
        else:
            if self._route_policies is not None:
                policy = self._route_policy(policy)
            if not policy.is_empty and entry.denial(policy) is not None:
                return None
        cache.touch(entry)
        return entry.identity

    def _cached_header(
        self, value: str | bytes, peer: str | None, policy: Policy | None
    ) -> ClientIdentity | None:
        """``authenticate``'s answer from the cache alone, for a request whose only
        certificate header is ``value`` (its one copy, raw) and that reports no TLS error;
        ``None`` when ``authenticate`` must decide. The hot path of adapters.

        A value that was admitted before is remembered with its cache key, by its exact
        bytes (``_header_aliases``): the key is a pure function of the value, so a repeat
        costs a dict look-up instead of a SHA-256, and the value's checks (``plain_key``)
        held when it was remembered; the peer is still checked on every request.
        """
        fwd = self._forwarded
        if fwd is None:
            return None
        try:
            alias = self._header_aliases.map.get(value)
        except TypeError:  # unhashable: not a header value (plain_key refuses it)
            alias = None
        if alias is not None:
            if (type(peer) is str and peer in fwd._peer_cache) or fwd.is_trusted(peer):
                return self._hit(alias, policy)
            return None
        raw = fwd.plain_key(value, peer)
        if raw is None:
            return None
        alias = hashlib.sha256(raw).digest()
        identity = self._hit(alias, policy)
        if identity is not None:
            self._header_aliases.remember(value, alias)
        return identity

    def _tls_lookup(
        self, chain: Sequence[str | bytes], peer: str | None, policy: Policy | None
    ) -> tuple[ClientIdentity | None, bytes]:
        """The cached identity for a TLS chain, else ``None`` and the chain's cache key.
        ``TypeError`` for items that are not ``str``/``bytes`` (``_tls_items`` reads them):
        checked only then, so a remembered chain costs no pass over its items."""
        identity = self._cached_chain(chain, peer, policy)  # type: ignore[arg-type]
        return identity, b"" if identity is not None else chain_key(chain, b"t")

    def _cached_chain(
        self, chain: tuple[str | bytes, ...], peer: str | None, policy: Policy | None
    ) -> ClientIdentity | None:
        """As ``_cached_header``, for a request with this TLS peer chain (``str`` or
        ``bytes`` items) and no TLS error, whatever its headers: ``None`` unless the chain
        counts (no ``ForwardedCert``, or a peer that is not a trusted proxy)."""
        fwd = self._forwarded
        if not chain or type(chain) is not tuple or (fwd is not None and fwd.is_trusted(peer)):
            return None
        # An unhashable item (a memoryview of words or of a writable buffer raises
        # ValueError): chain_key decides what it is.
        try:
            alias = self._chain_aliases.map.get(chain)
        except (TypeError, ValueError):
            alias = None
        if alias is not None:
            return self._hit(alias, policy)
        alias = chain_key(chain, b"t")
        identity = self._hit(alias, policy)
        if identity is not None:
            self._chain_aliases.remember(chain, alias)
        return identity

    def _verified(
        self,
        key: bytes,
        decode: Callable[[], Sequence[bytes] | ClientIdentity],
        source: str,
        policy: Policy | None,
        space: str | None = None,
        digest: bytes | None = None,
    ) -> ClientIdentity:
        """``space``: where the leaf's entry is kept, when not ``source`` (see ``_PASTED``);
        ``digest``: the SHA-256 of the first certificate ``decode`` returns, when the caller
        has taken it (``der_chain_key``)."""
        # The hot path: keep it to attribute reads, one dict look-up and the re-checks.
        now = time.time()
        trust, rev = self._trust_store, self._revocation
        last = self._last_tokens
        if (
            not last
            or (trust is not None and trust.snapshot() is not last[0])
            or (rev is not None and rev.token is not last[2])
            or (self._pinned_store is not None and self._pinned_store.snapshot() is not last[1])
        ):
            last = self._sync_tokens()
        # ``last`` as checked above: re-reading ``_last_tokens`` could find an older tuple
        # that a thread which read its snapshots before a reload wrote back meanwhile.
        cache = self._cache
        entry = cache.get(key, now, last)  # None for trust since reloaded
        if entry is None:
            neg = cache.get_negative(key, now, last)
            if neg is not None:
                raise neg.error_type(neg.detail, code=neg.code)
            entry = self._miss(key, decode, source, now, space, last, digest)
        # No revocation call on a hit: the entry expires at the revocation answer's ``until``
        # and every entry is dropped when the revocation data changes (``token``), so the
        # answer is what a fresh check would give. See RevocationChecker.
        if policy is None:
            policy = self._policy
            if policy is None or self._policy_check is None:
                if not entry.admitted:
                    cache.admit(entry)
                return entry.identity
        elif self._route_policies is not None:
            policy = self._route_policy(policy)
        if policy.is_empty:
            if not entry.admitted:
                cache.admit(entry)
            return entry.identity
        denial = entry.denial(policy)
        if denial is not None:
            raise denial[0](denial[2], code=denial[1])
        if not entry.admitted:  # only what some policy admits may evict admitted entries
            cache.admit(entry)
        return entry.identity

    def _miss(
        self,
        key: bytes,
        decode: Callable[[], Sequence[bytes] | ClientIdentity],
        source: str,
        now: float,
        space: str | None,
        tokens: tuple[object, ...],
        digest: bytes | None = None,
    ) -> CacheEntry:
        """``tokens``: those ``_verified`` checked, taken before validating (see
        ``CacheEntry.tokens``); ``digest``: as for ``_verified``."""
        cache_missed.set(True)  # for the uncached/cached split of the metrics
        cache = self._cache
        leaf: bytes | None = None
        presented: list[x509.Certificate] | None = None  # the certificates after the leaf
        try:
            decoded = decode()
            # Key what identifies the verification, not the bytes the client chose: another
            # variant of a cached leaf (other extra certificates, order, encoding) reuses its
            # validated chain while trust, pins and revocation data are unchanged.
            if isinstance(decoded, ClientIdentity):  # proxy-verified, opt-in
                leaf = identity_key(decoded)
            elif decoded:
                # SHA-256 of the leaf's DER: its entry's key and its fingerprint.
                if digest is None:
                    digest = hashlib.sha256(decoded[0]).digest()
                leaf = leaf_key(space or source, digest)
                # A variant is served from its leaf's entry only if a verification of it
                # would get that far: each certificate it presents must load, as
                # _verify_ders loads them (memoised by their bytes, so this costs a look-up),
                # and hands them to it.
                presented = [_load_presented(der) for der in decoded[1:]]
            if leaf is not None:
                found = cache.find(leaf, key, now, tokens)
                if found is not None:
                    cache_missed.set(False)  # served from the cache: no verification ran
                    return found
                failing = cache.failing_leaf(leaf, now, tokens)
                if failing is not None:  # this leaf failed with too many inputs lately
                    raise failing.error_type(failing.detail, code=failing.code)
            if _CACHE_ONLY.get():  # authenticate_cached: no verification from here on
                raise _CacheMiss
            # The entry is served from the moment verified at (``since``), not before: a
            # clock that steps back may read a time before a notBefore or a thisUpdate.
            at = _utcnow()
            since = at.timestamp()
            if isinstance(decoded, ClientIdentity):
                ends = _proxy_valid_until(decoded, at, self._skew_s)
                expires = now + self._cache_ttl
                if ends is not None:
                    expires = min(expires, ends)
                entry = CacheEntry(decoded, (), expires, tokens, since)
            else:
                identity, until = self._verify_ders(decoded, at, source, digest, presented)
                expires = min(now + self._cache_ttl, until.timestamp())
                entry = CacheEntry(identity, identity.chain, expires, tokens, since)
        except (CertificateInvalid, CertificateMissing, CertificateRevoked) as exc:
            # Never remembered: a transient failure, and a certificate that is not valid
            # *yet* (a fresh verification admits it the moment it is).
            if not isinstance(exc, RevocationUnavailable) and exc.code not in _TIME_LIFTS:
                cache.put_negative(key, exc, now, leaf, tokens)
            raise
        if leaf is not None:
            cache.put(leaf, key, entry)
        return entry

    def _check_revocation(self, chain: Sequence[x509.Certificate], at: datetime) -> datetime | None:
        assert self._revocation is not None
        try:
            until = self._revocation.check(chain, at=at)
            # A checker of its own (the protocol is public) may hand back anything: what is
            # not None or a timezone-aware datetime would raise TypeError where the result is
            # compared with the chain's notAfter, outside this guard.
            if until is not None and not _aware(until):
                raise TypeError(
                    f"{type(self._revocation).__name__}.check() returned "
                    f"{type(until).__name__}, not None or a timezone-aware datetime"
                )
            return until
        except MTLSAuthError:
            raise
        except Exception as exc:  # noqa: BLE001 - a checker bug must deny, not 500
            # What broke goes to the log; the client's answer is the same whatever it was
            # (a refused connection told from a timeout would probe the server's network).
            report_unexpected("the revocation check", exc, unexpected_log_limiter)
            raise RevocationUnavailable(
                "the certificate's revocation status could not be established"
            ) from None

    def _verify_ders(
        self,
        ders: Sequence[bytes],
        at: datetime,
        source: str,
        digest: bytes | None = None,
        presented: list[x509.Certificate] | None = None,
    ) -> tuple[ClientIdentity, datetime]:
        """``digest``: the SHA-256 of ``ders[0]`` when the caller has taken it already;
        ``presented``: ``ders[1:]`` loaded, likewise."""
        if not ders:
            raise CertificateMissing("no client certificate was presented")
        check_leaf_size(ders[0])
        facts = read_leaf(ders[0])  # None: not in the shape it reads; load_der then decides
        leaf = load_der(ders[0], serial_checked=facts is not None)
        presented_intermediates = (
            presented if presented is not None else [_load_presented(d) for d in ders[1:]]
        )
        if digest is None:
            digest = hashlib.sha256(ders[0]).digest()
        fingerprint = digest.hex()
        if fingerprint in self._pinned_fingerprints():
            identity, until = self._verify_pinned(leaf, ders[0], at, source)
            return identity, self._revoke_pinned(leaf, presented_intermediates, at, until)
        if self._trust_store is None:
            raise CertificateInvalid(
                "certificate is not one of the pinned certificates", code="pin_mismatch"
            )
        trust = self._trust_store.snapshot()
        if trust.store is None:  # a reload left only end-entity certificates
            raise CertificateInvalid("the trust store holds no CA", code="untrusted_issuer")
        try:
            chain = validate_path(
                trust.store,
                leaf,
                presented_intermediates,
                at=at,
                max_depth=self._max_depth,
                clock_skew_s=self._skew_s,
                configured=[*self._intermediates, *trust.intermediates],
                anchors=self._anchors(trust),
                facts=facts,
            )
        except CertificateInvalid:
            # Where the chain stops (a look-alike of a trusted CA's name included) is for
            # the operator: the refusal log line and ``mtlsauth verify`` say it. The client
            # gets the same answer whatever name it guessed.
            raise
        check_leaf_key(leaf, facts.spki if facts is not None else None)
        until = _valid_until(chain, at, self._skew_s)
        if self._revocation is not None:
            rev_until = self._check_revocation(chain, at)
            if rev_until is not None:
                until = min(until, rev_until)
        identity = identity_from_certificate(
            leaf, tuple(chain), source=source, der=ders[0], facts=facts, fingerprint=fingerprint
        )
        return identity, until

    def _anchors(self, trust: TrustSnapshot) -> tuple[x509.Certificate, ...]:
        """The snapshot's anchors (its certificates that no other one of the set issued).

        Remembered per snapshot; the snapshot itself is held, so the comparison is sound.
        """
        memo = self._anchor_memo
        if memo is not None and memo[0] is trust:
            return memo[1]
        below = {*trust.intermediates, *trust.end_entities}  # a leaf anchors nothing
        anchors = tuple(c for c in trust.certificates if c not in below)
        self._anchor_memo = (trust, anchors)
        return anchors

    def _untrusted_issuer_hint(self, ders: Sequence[bytes]) -> str | None:
        """For the operator (the refusal log, the CLI): where the chain of an
        ``untrusted_issuer`` refusal stops. Never for the client: it names the trust
        store's CAs."""
        if self._trust_store is None:
            return None
        try:
            certs = [load_der(d) for d in ders]
            if not certs:
                return None
            snap = self._trust_store.snapshot()
            known = [*certs[1:], *self._intermediates, *snap.intermediates]
            return missing_issuer_hint(certs[0], known, snap)
        except Exception:  # noqa: BLE001 - an unparsable name: no hint, same refusal
            return None

    def _pinned_fingerprints(self) -> frozenset[str]:
        if self._pinned_store is None:
            return self._pinned
        return self._pinned_store.snapshot().fingerprints

    def _revoke_pinned(
        self,
        leaf: x509.Certificate,
        presented: Sequence[x509.Certificate],
        at: datetime,
        until: datetime,
    ) -> datetime:
        """Revocation wins over a pin: a pinned certificate that also chains to the trust store
        is checked by the revocation checker like any other, and so is one whose path is
        refused but which a known CA signed (found by name and signature: ``_signed_path``,
        which counts only if it reaches a CA configured here, not one the client sent alone).

        A self-signed pin (RFC 8705 ``self_signed_tls_client_auth``) has no CA whose CRL or
        OCSP answer could be verified: it is revoked by removing the pin, or with
        ``Policy(deny_fingerprints=...)``. Any other pin whose chain does not validate is
        refused with ``RevocationUnavailable``: whether it chains depends on what the client
        sends (its intermediate left out, or a stale copy of it), so it cannot decide whether
        revocation applies.
        """
        if self._revocation is None:
            return until
        # No trust store, or none left after a reload: no path validates, and the pin is
        # judged as one whose path is refused below. Skipping revocation here admitted a
        # pin its CA had revoked, and an emptied trust file widened access that way.
        trust = self._trust_store.snapshot() if self._trust_store is not None else None
        try:
            if trust is None or trust.store is None:
                raise CertificateInvalid("no CA to validate the pinned certificate against")
            chain = validate_path(
                trust.store,
                leaf,
                presented,
                at=at,
                max_depth=self._max_depth,
                clock_skew_s=self._skew_s,
                configured=[*self._intermediates, *trust.intermediates],
                anchors=self._anchors(trust),
            )
        except CertificateInvalid:
            # The path is refused (an expired CA, a constraint the leaf breaks, an
            # intermediate left out), and the pin vouches for the certificate in its place:
            # but a CA that issued it still speaks for its revocation. Its issuers are found
            # among the known CAs by name and signature alone.
            if _self_signed(leaf):
                return until  # no CA vouches for it: the pin alone does
            # Presented CAs whose key would cost tens of verifications are left out
            # (cheap_to_verify), as the path builder leaves them out.
            known = [*self._intermediates]
            if trust is not None:
                known += [*self._anchors(trust), *trust.intermediates]
            chain = _signed_path(
                leaf,
                [*known, *(c for c in presented if cheap_to_verify(c))],
                self._max_depth,
            )
            # A path made only of CAs the client sent (its own self-signed CA, say) speaks
            # for nothing: their CRLs are not ours to trust, and their AIA URL is whatever
            # the client wrote (an OCSP request to it would be the client's to aim). Only a
            # path that reaches a CA configured here counts; anything else is no issuer.
            if not any(c in known for c in chain[1:]):
                raise RevocationUnavailable(
                    "the pinned certificate's chain to the trust store could not be validated, "
                    "so its revocation cannot be checked (send its intermediate, or configure "
                    "it with intermediates=)"
                ) from None
        rev_until = self._check_revocation(chain, at)
        return until if rev_until is None else min(until, rev_until)

    def _verify_pinned(
        self, leaf: x509.Certificate, der: bytes, at: datetime, source: str
    ) -> tuple[ClientIdentity, datetime]:
        try:
            return self._verify_pinned_fields(leaf, der, at, source)
        except MTLSAuthError:
            raise
        except Exception as exc:  # noqa: BLE001 - unreadable extensions: malformed, not a 500
            raise CertificateInvalid(
                f"pinned certificate cannot be read ({type(exc).__name__})",
                code="certificate_malformed",
            ) from None

    def _verify_pinned_fields(
        self, leaf: x509.Certificate, der: bytes, at: datetime, source: str
    ) -> tuple[ClientIdentity, datetime]:
        # The rules read the leaf's extensions: from a throwaway copy, since cryptography
        # caches them inside the certificate object and the identity keeps ``leaf``.
        copy = x509.load_der_x509_certificate(der)
        until = check_pinned_leaf(copy, at=at, clock_skew_s=self._skew_s)
        identity = identity_from_certificate(leaf, (leaf,), source=source, der=der)
        return identity, until

    def __repr__(self) -> str:
        anchors = len(self._trust_store) if self._trust_store is not None else 0
        return (
            f"<Verifier anchors={anchors} pinned={len(self._pinned_fingerprints())} "
            f"revocation={type(self._revocation).__name__ if self._revocation else None} "
            f"forwarded={'yes' if self._forwarded else 'no'}>"
        )


def _signed_path(
    leaf: x509.Certificate, pool: Sequence[x509.Certificate], max_depth: int
) -> list[x509.Certificate]:
    """``leaf`` and the certificates of ``pool`` that issued it, and issued those, by name and
    signature only (no validity, usage or constraint checks): the CAs whose revocation
    information speaks for a pinned certificate whose path is refused. Stops at a
    self-signed certificate, a certificate none of the pool signed, or ``max_depth`` CAs.
    """
    chain = [leaf]
    current = leaf
    for _ in range(max_depth + 1):
        if current.issuer == current.subject and _signed_by(current, current):
            break  # a root (or the self-signed pin itself)
        issuer = next(
            (
                c
                for c in pool
                if c.subject == current.issuer and c not in chain and _signed_by(current, c)
            ),
            None,
        )
        if issuer is None:
            break
        chain.append(issuer)
        current = issuer
    return chain


# Presented intermediates by their exact DER: a fleet's clients all send the same few CA
# certificates, so each is parsed once and then shared, and so are what the path builder,
# the name-constraint check and the CRL set remember per certificate object.
# Bounded in count and in size (a client chooses these bytes before anything is verified):
# CA certificates are 1-2 KB, a larger one is parsed on every request instead.
_PRESENTED_MAX = 8192
_PRESENTED: BoundedMemo[bytes, x509.Certificate] = BoundedMemo(64, max_key_len=_PRESENTED_MAX)


def _valid_until(chain: Sequence[x509.Certificate], at: datetime, skew_s: float) -> datetime:
    """Until when ``chain``, valid as of ``at``, stays admitted by a fresh validation.

    Without skew: the earliest ``notAfter``. With it, ``validate_path`` tries again ``skew``
    away when the clock falls outside the window, which admits ``[notBefore - skew,
    notAfter + skew]`` as one span only while the window (latest ``notBefore`` to earliest
    ``notAfter``) is at least ``skew`` long. A shorter one is admitted in three separate
    spans (looking ahead, in the window, looking back), with refusals between them: a
    result holds to the end of the span ``at`` lies in, never across a refusal.
    """
    not_after = min([c.not_valid_after_utc for c in chain])
    if not skew_s:
        return not_after
    skew = timedelta(seconds=skew_s)
    not_before = max([c.not_valid_before_utc for c in chain])
    if not_after - not_before >= skew:
        return shifted(not_after, skew)
    if at < not_before:  # admitted by looking ahead: until the look-ahead passes notAfter
        return shifted(not_after, -skew)
    if at <= not_after:
        return not_after
    return shifted(not_after, skew)


def _proxy_valid_until(identity: ClientIdentity, at: datetime, skew_s: float) -> float | None:
    """Check a proxy-verified identity's forwarded validity window as of ``at``.

    The proxy verified the certificate, but some admit expired ones (ALB's
    ``IgnoreClientCertificateExpiry``, GCP's allow-listed certificates) and still call them
    verified: a window the proxy forwarded is held to the same rule as a certificate's,
    ``clock_skew`` included. Returns until when (``time.time()`` seconds) the identity stays
    admitted, ``None`` when the proxy forwarded no ``notAfter``. The skew moves ``at``, never
    the forwarded moments (year 1 and year 9999 are forwardable and must not overflow).
    """
    skew = timedelta(seconds=skew_s)
    if identity.not_before is not None and at + skew < identity.not_before:
        raise CertificateInvalid(
            "the proxy forwarded a certificate that is not valid yet",
            code="certificate_not_yet_valid",
        )
    if identity.not_after is None:
        return None
    if at - skew > identity.not_after:
        raise CertificateInvalid(
            "the proxy forwarded a certificate that has expired", code="certificate_expired"
        )
    return identity.not_after.timestamp() + skew_s


def _unreadable_headers() -> AmbiguousRequest:
    return AmbiguousRequest(
        "the request's headers are not (name, value) pairs", code="request_malformed"
    )


def _tls_items(chain: object) -> tuple[str | bytes, ...]:
    """A ``Presented.tls_chain`` as ``str``/``bytes`` items. A direct caller may hand
    certificates, ``bytearray`` or ``memoryview`` (read as ``verify`` reads them: their DER,
    their bytes); anything else is ``certificate_malformed``, never a ``TypeError``."""
    items = (chain,) if isinstance(chain, str | bytes) else chain
    if not isinstance(items, list | tuple):
        raise CertificateInvalid(
            f"unsupported certificate chain type {type(chain).__name__}",
            code="certificate_malformed",
        )
    out: list[str | bytes] = []
    for item in items:
        if isinstance(item, str | bytes):
            out.append(item)
        elif isinstance(item, bytearray | memoryview):
            out.append(bytes(item))
        elif isinstance(item, x509.Certificate):
            out.append(item.public_bytes(Encoding.DER))
        else:
            raise CertificateInvalid(
                f"unsupported certificate input type {type(item).__name__}",
                code="certificate_malformed",
            )
    return tuple(out)


def _load_presented(der: bytes) -> x509.Certificate:
    cert = _PRESENTED.get(der)
    if cert is None:
        cert = load_der(der)
        _PRESENTED.put(der, cert)
    return cert


def _fingerprints(certs: Iterable[x509.Certificate]) -> frozenset[str]:
    return frozenset(hashlib.sha256(c.public_bytes(Encoding.DER)).hexdigest() for c in certs)
