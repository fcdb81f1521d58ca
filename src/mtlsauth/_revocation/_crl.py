"""CRLSet: certificate revocation lists, verified against the chain and indexed for O(1) look-ups.

Load time does the parsing: every CRL is read whole, its revoked serials go into a dict, and
it is filed under the DER bytes of its issuer name. ``check`` (called on every verification
and every cache hit) then costs, per certificate in scope, a dict look-up for the issuing CA's
usable CRLs, two datetime comparisons and a serial look-up.

Whether a CRL may be used for an issuing CA (issuer name, authority key identifier, cRLSign
key usage, signature) depends on that CA's certificate, which only the validated chain
provides; the answer is computed once per (snapshot, CA certificate) and memoised. Freshness
depends on the clock, so it is checked on every call.

Decisions (RFC 5280 section 5, and docs/revocation.md):

* Delta CRLs (DeltaCRLIndicator) are refused at load with ``ValueError``: a delta is
  meaningless without its base, and silently ignoring one would drop revocations.
* Indirect CRLs, ``onlySomeReasons`` partitions, attribute-certificate CRLs, unknown critical
  extensions, CRLs without ``nextUpdate`` and SHA-1 or SHA-224 signatures are refused at
  load the same way.
* ``allow_missing`` skips an issuer only when no CRL of its name (compared loosely: case,
  spacing, string type and RDN order aside) is loaded:
  one that is loaded but cannot be used for the certificate fails closed.
* ``onlyContainsUserCerts`` / ``onlyContainsCACerts`` and distribution-point names in the
  Issuing Distribution Point limit what a CRL can clear.
* A listed serial is revoked, whatever its reason (``certificateHold`` included; a
  ``removeFromCRL`` entry in a complete CRL is malformed and also counts as listed) and
  whatever its revocation or invalidity date; a serial listed both on hold and for another
  reason is not a hold.
* The newest fresh CRL decides, except that a revocation other than a hold is final: any CRL
  of the issuer that lists the serial for another reason revokes it, fresh or not.

Why one module of this size: ``CRLSet`` and the snapshot it checks against change together
(reading and indexing are ``_load``).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import threading
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Literal, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPublicKeyTypes
from cryptography.x509.oid import CRLEntryExtensionOID

from mtlsauth._errors import CertificateRevoked, RevocationUnavailable
from mtlsauth._memo import BoundedMemo, ObjectTable
from mtlsauth._reload import FileSnapshot, refuse_pem_text
from mtlsauth._revocation._compose import fail_closed
from mtlsauth._revocation._load import (
    _COMPLETE,
    _CRL,
    _FOREVER,
    _NEVER,
    _is_crl_name,
    _parse,
    _read,
)

__all__ = ["CRLSet"]

logger = logging.getLogger("mtlsauth")

_S = TypeVar("_S", bound=str)
Scope = Literal["chain", "leaf"]
Mode = Scope  # the former name of Scope
_SKEW = timedelta(minutes=5)  # tolerated clock difference for a CRL's lastUpdate
_MEMO_MAX = 4096
_CLIENT_DETAIL = "the certificate's revocation status could not be established (CRL)"


_WHAT_IF: contextvars.ContextVar[bool] = contextvars.ContextVar("mtlsauth_what_if", default=False)


@contextlib.contextmanager
def what_if() -> Iterator[None]:
    """Mark checks made inside as hypothetical (``Verifier.verify(at=...)``).

    Revocation sources read their caches as usual but write no shared state inside: no
    cached OCSP answer or failure, no ``last_error``, no "already logged" marks.
    """
    token = _WHAT_IF.set(True)
    try:
        yield
    finally:
        _WHAT_IF.reset(token)


def is_what_if() -> bool:
    """True inside :func:`what_if`."""
    return _WHAT_IF.get()


def _key_id(cert: x509.Certificate) -> tuple[bytes, ...]:
    ids = [x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest]
    try:
        ids.append(cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest)
    except x509.ExtensionNotFound:
        pass
    return tuple(ids)


def _may_sign_crls(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.KeyUsage).value.crl_sign
    except x509.ExtensionNotFound:
        return True  # RFC 5280 4.2.1.3: no KeyUsage, no restriction


_LooseName = tuple[tuple[tuple[str, str], ...], ...]


def _loose_name(name: x509.Name) -> _LooseName:
    """``name`` as a loose comparison sees it: its RDNs in any order (duplicates kept), each
    value case-folded with its spaces collapsed, whatever its string type (roughly RFC 4518
    and OpenSSL's canonical form, plus the RDN order that printers and hand-written CRL
    issuers disagree on). Used only to recognise a loaded CRL of an issuer that its exact
    name misses, so a looser match can only fail closed more often."""
    return tuple(
        sorted(
            tuple(
                sorted(
                    (
                        a.oid.dotted_string,
                        " ".join(a.value.split()).casefold()
                        if isinstance(a.value, str)
                        else bytes(a.value).hex(),
                    )
                    for a in rdn
                )
            )
            for rdn in name.rdns
        )
    )


_Series = tuple[bytes, frozenset[bytes], tuple[object, ...]]
# A CRL of an issuing CA: the CRL, whether the CA validly signed it, and whether it is older
# than a CRL of its series already verified that this snapshot no longer holds (a replay).
_Candidate = tuple[_CRL, bool, bool]


class _Marks:
    """The CRLs whose signature verified against their issuer, kept as a rollback guard.

    Per series (issuer name, the verifying CA's key identifiers, scope), the
    (CRLNumber, lastUpdate) pairs that no other pair of the series exceeds in both. Only a
    CRL found validly signed by a CA of a validated chain (``_Snapshot._compute``) is
    recorded: a forged CRL, whatever its number, moves nothing. One object is shared by every
    snapshot of a ``CRLSet``, so a CRL verified while an old snapshot is still in use counts
    for the next one.
    """

    __slots__ = ("_keys", "_lock", "_seen")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[_Series, tuple[tuple[int, datetime], ...]] = {}
        # The public key that verified each series: a reload counts as a step of the series
        # only a CRL that key signs.
        self._keys: dict[_Series, CertificateIssuerPublicKeyTypes] = {}

    def record(
        self, c: _CRL, keys: frozenset[bytes], public_key: CertificateIssuerPublicKeyTypes
    ) -> None:
        series = (c.crl.issuer.public_bytes(), keys, c.scope)
        point = (c.number, c.last_update)
        with self._lock:
            self._keys.setdefault(series, public_key)
            front = self._seen.get(series, ())
            if any(n >= point[0] and t >= point[1] for n, t in front):
                return
            kept = tuple(p for p in front if not (p[0] <= point[0] and p[1] <= point[1]))
            self._seen[series] = (*kept, point)

    def highest(self, series: _Series) -> int | None:
        """The highest CRLNumber verified in ``series``, or None."""
        with self._lock:
            front = self._seen.get(series)
        return max(n for n, _ in front) if front else None

    def items(self) -> list[tuple[_Series, tuple[tuple[int, datetime], ...]]]:
        with self._lock:
            return list(self._seen.items())

    def signs(self, series: _Series, c: _CRL) -> bool:
        """Whether the key that verified ``series`` signed ``c``."""
        with self._lock:
            key = self._keys.get(series)
        try:
            return key is not None and c.crl.is_signature_valid(key)
        except Exception:  # noqa: BLE001 - an unsupported algorithm: not signed by it
            return False


def _same_key(c: _CRL, keys: frozenset[bytes]) -> bool:
    """Whether ``c`` may be a CRL of the key ``keys`` identify: its authority key identifier
    names that key, or it has none (its key is unknown until its signature is checked)."""
    return c.aki is None or c.aki in keys


@dataclass(eq=False)
class _Snapshot:
    """An immutable set of indexed CRLs; the memo only caches answers derived from it."""

    by_issuer: dict[bytes, tuple[_CRL, ...]]
    sources: tuple[str, ...]
    loaded_at: float = field(default_factory=time.time)
    # Which issuers (name DER) each file provided: a reload may not lose one whose file stays.
    issuers_by_file: dict[str, frozenset[bytes]] = field(default_factory=dict)
    memo: BoundedMemo[x509.Certificate, tuple[_Candidate, ...]] = field(
        default_factory=lambda: BoundedMemo(_MEMO_MAX)
    )
    # Hashing a Certificate hashes its DER (3 us); the Verifier hands the same objects back on
    # every cache hit, so a look-up by id() (kept honest by holding the object) is the fast path.
    by_id: ObjectTable[tuple[x509.Certificate, tuple[_Candidate, ...]]] = field(
        default_factory=lambda: ObjectTable(_MEMO_MAX)
    )
    serials: ObjectTable[tuple[x509.Certificate, int]] = field(
        default_factory=lambda: ObjectTable(_MEMO_MAX)
    )
    warned: set[tuple[int, str]] = field(default_factory=set)
    noted: BoundedMemo[tuple[bytes, str], bool] = field(
        default_factory=lambda: BoundedMemo(_MEMO_MAX)
    )
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Every loaded CRL's issuer name, compared loosely: with allow_missing, an issuer counts as
    # missing only when no CRL of its name is loaded at all, however spelled or scoped.
    loose_issuers: frozenset[_LooseName] = frozenset()
    # The CRLs found validly signed, in this snapshot and every earlier one of the same
    # CRLSet (shared): a reload may not go back to an older CRL than one of them.
    marks: _Marks = field(default_factory=_Marks)
    # SHA-256 of every CRL's DER, computed when a reload first needs it.
    digests: frozenset[bytes] | None = None

    @property
    def crls(self) -> list[_CRL]:
        return [c for group in self.by_issuer.values() for c in group]

    def candidates(self, issuer: x509.Certificate) -> tuple[_Candidate, ...]:
        """CRLs naming ``issuer`` and its key, each with "verified for this issuer" and
        "superseded" (memoised)."""
        fast = self.by_id.get(id(issuer))
        if fast is not None and fast[0] is issuer:
            return fast[1]
        found = self.memo.get(issuer)
        if found is not None:
            self._remember(issuer, found)
            return found
        with self.lock:  # one thread verifies a (possibly large) CRL signature, others wait
            found = self.memo.get(issuer)
            if found is not None:
                return found
            found = self._compute(issuer)
            self.memo.put(issuer, found)
            self._remember(issuer, found)
            return found

    def _remember(self, issuer: x509.Certificate, found: tuple[_Candidate, ...]) -> None:
        self.by_id.put(id(issuer), (issuer, found))

    def serial(self, cert: x509.Certificate) -> int:
        """``cert.serial_number`` (1 us: a big-int conversion), memoised by object identity."""
        known = self.serials.get(id(cert))
        if known is not None and known[0] is cert:
            return known[1]
        value = cert.serial_number
        self.serials.put(id(cert), (cert, value))
        return value

    def _compute(self, issuer: x509.Certificate) -> tuple[_Candidate, ...]:
        named = self.by_issuer.get(issuer.subject.public_bytes(), ())
        if not named:
            return ()
        key_ids = _key_id(issuer)
        keys = frozenset(key_ids)
        can_sign = _may_sign_crls(issuer)
        public_key = issuer.public_key()
        out = []
        for c in named:
            if c.aki is not None and c.aki not in key_ids:
                continue  # another key of a same-named CA (rollover): not this issuer's CRL
            try:
                ok = can_sign and c.crl.is_signature_valid(public_key)  # type: ignore[arg-type]
            except Exception:  # noqa: BLE001 - unsupported algorithm etc.: unusable, not fatal
                ok = False
            if ok:
                # A genuine CRL of this CA (also in a what-if check: a signature does not
                # depend on the time): no later reload may go back below it.
                self.marks.record(c, keys, public_key)  # type: ignore[arg-type]
            else:
                logger.error(
                    "mtlsauth: CRL %s is not usable for %s: %s",
                    c.source,
                    c.issuer,
                    "the issuer lacks the cRLSign key usage"
                    if not can_sign
                    else "its signature does not verify",
                )
            out.append((c, ok))
        # The rollback guard at reload compares numbers of CRLs whose signatures it cannot
        # check: a forged CRL numbered 10**30 next to an older genuine one, replayed, passed
        # it, and the older one was then used. So here too, once verified: in a scope where
        # every CRL this CA signed is numbered below one it signed before, which the files no
        # longer hold, none of them speaks for a certificate (a revocation in it still counts).
        newest: dict[tuple[object, ...], int] = {}
        for c, ok in out:
            if ok:
                newest[c.scope] = max(newest.get(c.scope, c.number), c.number)
        floors = {
            scope: self.marks.highest((issuer.subject.public_bytes(), keys, scope))
            for scope in newest
        }
        return tuple((c, ok, ok and (floors[c.scope] or 0) > newest[c.scope]) for c, ok in out)

    def has_crl_of(self, cert: x509.Certificate, issuer: x509.Certificate) -> bool:
        """Whether any CRL loaded names ``cert``'s issuer, by exact or loose name comparison,
        whatever its key, signature or scope."""
        if issuer.subject.public_bytes() in self.by_issuer:
            return True
        return not self.loose_issuers.isdisjoint(
            (_loose_name(issuer.subject), _loose_name(cert.issuer))
        )

    def note_once(self, key: tuple[bytes, str], message: str) -> None:
        """Log ``message`` as an error the first time ``key`` is seen in this snapshot."""
        if is_what_if() or self.noted.get(key) is not None:
            return
        self.noted.put(key, True)
        logger.error("%s", message)

    def warn_once(self, c: _CRL, kind: str, message: str) -> None:
        if is_what_if():  # a hypothetical moment: nothing to tell the operator, nothing marked
            return
        key = (id(c), kind)
        if key not in self.warned:
            self.warned.add(key)
            logger.warning(message, c.source, c.expires)


def _shifted(moment: datetime, delta: timedelta, *, back: bool = False) -> datetime:
    """``moment + delta`` (``- delta`` with ``back``), held to the calendar: a CRL dated near
    year 9999, or a grace of ``timedelta.max``, must not raise OverflowError out of a
    constructor or a reload."""
    try:
        return moment - delta if back else moment + delta
    except OverflowError:
        return _NEVER if back else _FOREVER


def _build(
    crls: Iterable[_CRL],
    sources: Sequence[str],
    grace: timedelta,
    warn_before: timedelta,
    issuers_by_file: dict[str, frozenset[bytes]] | None = None,
    marks: _Marks | None = None,
) -> _Snapshot:
    groups: dict[bytes, list[_CRL]] = {}
    for c in crls:
        expires = _shifted(c.next_update, grace)
        c = replace(
            c,
            expires=expires,
            warn_at=_shifted(expires, warn_before, back=True),
            usable_from=_shifted(c.last_update, _SKEW, back=True),
        )
        groups.setdefault(c.crl.issuer.public_bytes(), []).append(c)
    # Newest first: the first fresh CRL in scope is authoritative (a released hold disappears
    # from newer CRLs, so an older still-fresh one must not win).
    by_issuer = {
        k: tuple(sorted(v, key=lambda c: (c.number, c.last_update), reverse=True))
        for k, v in groups.items()
    }
    return _Snapshot(
        by_issuer,
        tuple(sources),
        issuers_by_file=issuers_by_file or {},
        loose_issuers=frozenset(_loose_name(group[0].crl.issuer) for group in by_issuer.values()),
        marks=marks or _Marks(),
    )


def _load_paths(
    files: list[Path], grace: timedelta, warn_before: timedelta, marks: _Marks
) -> _Snapshot:
    crls: list[_CRL] = []
    issuers_by_file: dict[str, frozenset[bytes]] = {}
    for f in files:
        found = _read(f)
        crls += found
        issuers_by_file[str(f)] = frozenset(c.crl.issuer.public_bytes() for c in found)
    if not files:
        logger.warning("mtlsauth: CRL set: no CRL files found; every issuer in scope is missing")
    return _build(crls, [str(f) for f in files], grace, warn_before, issuers_by_file, marks)


def _never_drops_an_issuer(old: _Snapshot, new: _Snapshot, files: Sequence[Path]) -> str | None:
    """Why ``new`` may not replace ``old``: an issuer vanished while its file still exists, or
    ``new`` goes back to an older CRL than one already found validly signed (``_Marks``).

    Going back is a replay: an older CRL, validly signed and still fresh, served by whoever
    sits between the CA and the job that downloads it (CRLs travel over plain HTTP), or a
    restored backup. It would forget every revocation made since. The marks outlive the
    snapshots, so deleting a file and then writing an older CRL is refused too.

    A file caught half-written at a block boundary parses cleanly; so does one cut short by a
    full disk. Either way the issuers after the cut would count as missing, and with
    ``allow_missing`` their revoked certificates would be admitted. Retiring an issuer means
    deleting (or moving) its file, which stays possible.
    """
    existing = {str(f) for f in files}
    for path, issuers in old.issuers_by_file.items():
        if path not in existing:
            continue
        gone = [k for k in issuers if k not in new.by_issuer]
        if gone:
            names = ", ".join(sorted(old.by_issuer[k][0].issuer for k in gone))
            return (
                f"{path} no longer holds a CRL from {names} although the file still exists "
                "(half-written?); to retire an issuer, delete or move its CRL file"
            )
    return _goes_back(old, new)


def _digests(snap: _Snapshot) -> frozenset[bytes]:
    if snap.digests is None:
        snap.digests = frozenset(c.crl.fingerprint(hashes.SHA256()) for c in snap.crls)
    return snap.digests


def _goes_back(old: _Snapshot, new: _Snapshot) -> str | None:
    """Why ``new`` goes back to an older CRL than a verified one, or None.

    * Within a series (issuer name, key, scope): the newest CRL of ``new`` that may belong
      to it must not be numbered below the highest verified one. A CRL without an authority
      key identifier may belong to any key of its issuer, so it counts for every one.
    * Across scopes, where CRLNumbers count separately (RFC 5280 5.2.3): when ``new`` holds
      nothing of a verified series any more, a CRL that ``old`` did not hold, of the same
      issuer and key, whose scope or the series' is complete (no Issuing Distribution Point),
      must not be both numbered below and issued before a verified CRL of that series. A CA
      that starts (or stops) naming its distribution point in its complete CRL starts a new
      scope; the CRL from before, replayed, would otherwise be another series and accepted.
    """
    marks = old.marks.items()
    if not marks:
        return None
    introduced: list[_CRL] | None = None
    for (issuer, keys, scope), front in marks:
        group = new.by_issuer.get(issuer, ())
        # Only CRLs the key that verified the series signs: a forged one, numbered 10**30,
        # would otherwise stand for the series, let an older one of it pass, and keep the
        # comparison across scopes below from being made.
        peers = [
            c
            for c in group
            if _same_key(c, keys) and c.scope == scope and old.marks.signs((issuer, keys, scope), c)
        ]
        seen = max(n for n, _ in front)
        if peers:
            newest = max(peers, key=lambda c: c.number)
            if newest.number < seen:
                return (
                    f"the CRL from {newest.issuer} has CRLNumber {newest.number}, lower than "
                    f"{seen} already loaded and verified (an older CRL replayed?); a CRL "
                    "series never goes back"
                )
            continue
        if introduced is None:
            known = _digests(old)
            introduced = [c for c in new.crls if c.crl.fingerprint(hashes.SHA256()) not in known]
        for c in introduced:
            if (
                c.crl.issuer.public_bytes() != issuer
                or not _same_key(c, keys)
                or not (c.complete or scope == _COMPLETE)
            ):
                continue
            for n, t in front:
                if c.number < n and c.last_update < t:
                    return (
                        f"the CRL from {c.issuer} in {c.source} (CRLNumber {c.number}, issued "
                        f"{c.last_update.isoformat()}) is older than one of another scope "
                        f"already loaded and verified (CRLNumber {n}, issued {t.isoformat()}), "
                        "which the new files no longer hold (an older CRL replayed?)"
                    )
    return None


def renamed_keyword(
    owner: str, new_name: str, new: _S | None, old: _S | None, *, stacklevel: int = 3
) -> _S | None:
    """The value of a keyword that was renamed from ``mode=`` (``mode`` now means the
    adapters' mode only): the old keyword still works, with a ``DeprecationWarning``."""
    if old is None:
        return new
    warnings.warn(
        f"{owner}(mode=...) is now {owner}({new_name}=...); mode= will be removed",
        DeprecationWarning,
        stacklevel=stacklevel,
    )
    if new is not None and new != old:
        raise ValueError(f"{owner}: {new_name}={new!r} and mode={old!r} disagree")
    return old


def _options(
    scope: Scope | None,
    mode: Scope | None,
    allow_missing: object,
    grace: object,
    warn_before: object,
) -> Scope:
    """The scope (``mode=`` still read, with a warning), once every option is checked."""
    scope = renamed_keyword("CRLSet", "scope", scope, mode, stacklevel=4) or "chain"
    if scope not in ("chain", "leaf"):
        raise ValueError('scope must be "chain" or "leaf"')
    if not isinstance(allow_missing, bool):
        raise TypeError("allow_missing must be a bool")
    for name, value in (("grace", grace), ("warn_before", warn_before)):
        if not isinstance(value, timedelta):
            raise TypeError(f"{name} must be a timedelta")
        if value < timedelta(0):
            raise ValueError(f"{name} must not be negative")
    return scope


class CRLSet:
    """Certificate revocation lists, checked against the validated chain on every verification.

    Build one with :meth:`from_paths`, :meth:`from_pem` or :meth:`from_der`, then pass it as
    ``Verifier(revocation=...)``. Several checkers (a CRLSet and an ``OCSPChecker``) combine
    as a tuple: ``Verifier(revocation=(crls, ocsp))``; all must pass.

    A CRL is used for a certificate only if its issuer name equals the certificate's issuer,
    its authority key identifier (if any) matches the issuing CA's key, its signature verifies
    with that key, the CA may sign CRLs (cRLSign, when KeyUsage is present), its scope covers
    the certificate, and it is fresh (``lastUpdate`` not in the future by more than 5 minutes,
    ``nextUpdate + grace`` not passed).

    Args:
        scope: ``"chain"`` checks every certificate below the trust anchor (Apache
            ``SSLCARevocationCheck chain``, nginx ``ssl_crl``); ``"leaf"`` only the client
            certificate (``SSLCARevocationCheck leaf``, Envoy ``only_verify_leaf_cert_crl``).
            (Formerly ``mode=``, which still works and warns.)
        allow_missing: When True, an issuer for which no CRL was loaded at all is not checked
            (Apache ``no_crl_for_cert_ok``). A CRL of the issuer's name (compared loosely)
            that exists but is stale, badly signed, signed by another key of the CA or
            scoped to other certificates still fails closed. Security note: with True, deleting a CRL file admits every
            certificate of that CA; keep it False unless some CAs publish no CRL.
        grace: Extra time a CRL stays usable after its ``nextUpdate``. Security note: a
            revocation published after ``nextUpdate`` is unseen for this long.
        reload_interval: Seconds between cheap change checks of the files (``from_paths``);
            ``None`` checks only on ``reload()``.
        warn_before: Log a warning once when a CRL in use is this close to ``nextUpdate``
            and nothing has replaced it; at ``nextUpdate + grace`` it fails closed.

    Raises:
        ValueError: a file or input that does not parse, or holds a CRL this module refuses
            (delta, indirect, reason-partitioned, no ``nextUpdate``, signed with SHA-1 or
            SHA-224), naming the file.
        RevocationUnavailable, CertificateRevoked: from :meth:`check` only.

    Example::

        crls = CRLSet.from_paths("/etc/mtls/crls/", scope="chain", reload_interval=30)
        verifier = Verifier(trust_store=trust, revocation=crls)
    """

    __slots__ = ("_allow_missing", "_grace", "_scope", "_source", "_static", "_warn_before")

    def __init__(
        self,
        source: _Snapshot | FileSnapshot[_Snapshot],
        *,
        scope: Scope | None = None,
        allow_missing: bool = False,
        grace: timedelta = timedelta(0),
        warn_before: timedelta = timedelta(hours=1),
        mode: Scope | None = None,
    ) -> None:
        if not isinstance(source, _Snapshot | FileSnapshot):
            raise TypeError("use CRLSet.from_paths(), from_pem() or from_der()")
        scope = _options(scope, mode, allow_missing, grace, warn_before)
        self._source = source
        self._static = source if isinstance(source, _Snapshot) else None
        self._scope: Scope = scope
        self._allow_missing = allow_missing
        self._grace = grace
        self._warn_before = warn_before

    # -- constructors ---------------------------------------------------------------------
    @classmethod
    def from_paths(
        cls,
        *files_or_dirs: str | os.PathLike[str],
        scope: Scope | None = None,
        allow_missing: bool = False,
        grace: timedelta = timedelta(0),
        reload_interval: float | None = 30.0,
        warn_before: timedelta = timedelta(hours=1),
        mode: Scope | None = None,
    ) -> CRLSet:
        """CRLs from files (PEM, possibly several per file, or DER) and directories.

        In a directory, ``*.pem``, ``*.crl``, ``*.der`` and OpenSSL hash links (``HASH.rN``,
        as ``openssl rehash`` makes for ``SSLCARevocationPath``) are read; dot-files are
        skipped, so a Kubernetes ``..data`` mount works as is.
        """
        if not files_or_dirs:
            raise ValueError("CRLSet.from_paths() needs at least one file or directory")
        for p in files_or_dirs:
            refuse_pem_text(p, "CRLSet.from_paths()", "CRLSet.from_pem()")
        scope = _options(scope, mode, allow_missing, grace, warn_before)
        marks = _Marks()  # shared by every snapshot of this set
        snap = FileSnapshot(
            list(files_or_dirs),
            accept=_is_crl_name,
            loader=lambda files: _load_paths(files, grace, warn_before, marks),
            reload_interval=reload_interval,
            what="CRL set",
            successor=_never_drops_an_issuer,
        )
        return cls(
            snap, scope=scope, allow_missing=allow_missing, grace=grace, warn_before=warn_before
        )

    @classmethod
    def from_pem(
        cls,
        data: str | bytes,
        *,
        scope: Scope | None = None,
        allow_missing: bool = False,
        grace: timedelta = timedelta(0),
        warn_before: timedelta = timedelta(hours=1),
        mode: Scope | None = None,
    ) -> CRLSet:
        """CRLs from PEM text holding one or more ``X509 CRL`` blocks (never reloads)."""
        if isinstance(data, str):
            data = data.encode("ascii", "replace")
        if not isinstance(data, bytes) or b"-----BEGIN" not in data:
            raise ValueError("from_pem() needs PEM text with an X509 CRL block")
        scope = _options(scope, mode, allow_missing, grace, warn_before)
        snap = _build(_parse(data, "PEM input"), ["PEM input"], grace, warn_before)
        return cls(
            snap, scope=scope, allow_missing=allow_missing, grace=grace, warn_before=warn_before
        )

    @classmethod
    def from_der(
        cls,
        *data: bytes,
        scope: Scope | None = None,
        allow_missing: bool = False,
        grace: timedelta = timedelta(0),
        warn_before: timedelta = timedelta(hours=1),
        mode: Scope | None = None,
    ) -> CRLSet:
        """CRLs from one or more DER encodings (never reloads)."""
        if not data or not all(isinstance(d, bytes) for d in data):
            raise TypeError("from_der() takes one or more DER bytes objects")
        scope = _options(scope, mode, allow_missing, grace, warn_before)
        crls = [c for i, d in enumerate(data) for c in _parse(d, f"DER input #{i + 1}")]
        snap = _build(crls, ["DER input"], grace, warn_before)
        return cls(
            snap, scope=scope, allow_missing=allow_missing, grace=grace, warn_before=warn_before
        )

    # -- RevocationChecker ----------------------------------------------------------------
    @property
    def token(self) -> object:
        """The current snapshot: a new object after every successful reload."""
        return self._current()

    @property
    def may_block(self) -> bool:
        return False

    @property
    def scope(self) -> Scope:
        """``"chain"`` or ``"leaf"``: which certificates of a chain are checked."""
        return self._scope

    @property
    def mode(self) -> Scope:
        """The former name of ``scope``."""
        warnings.warn("CRLSet.mode is now CRLSet.scope", DeprecationWarning, stacklevel=2)
        return self._scope

    def _current(self) -> _Snapshot:
        static = self._static
        if static is not None:
            return static
        src = self._source
        assert isinstance(src, FileSnapshot)
        return src.current()

    def check(self, chain: Sequence[x509.Certificate], *, at: datetime) -> datetime | None:
        """Check the validated ``chain`` (leaf first, ending at the trust anchor) as of ``at``.

        Returns:
            The earliest ``nextUpdate + grace`` of the CRLs used (cache no longer than that),
            or ``None`` when no CRL was consulted.

        Raises:
            CertificateRevoked: a certificate in scope is listed.
            RevocationUnavailable: no usable CRL covers a certificate in scope, or anything
                unexpected happened (this method never raises another type).
        """
        return fail_closed(self._check, chain, at, what="CRL", detail=_CLIENT_DETAIL)

    def _check(self, chain: Sequence[x509.Certificate], at: datetime) -> datetime | None:
        if at.tzinfo is None:
            raise RevocationUnavailable("CRL check needs a timezone-aware time")
        snap = self._current()
        in_scope = len(chain) - 1 if self._scope == "chain" else min(1, len(chain) - 1)
        until: datetime | None = None
        for i in range(in_scope):
            cert = chain[i]
            # The leaf is a new object on every verification (a hit checks nothing): read
            # its serial directly; the CAs above it come back as the same objects.
            serial = cert.serial_number if i == 0 else snap.serial(cert)
            used: _CRL | None = None
            listed: _CRL | None = None  # the CRL whose entry decides, if any
            held_newer = False
            covered = False
            problem = "no CRL from its issuer is loaded"
            # Newest first. The first fresh CRL is authoritative for holds; a revocation
            # for any other reason is final (RFC 5280 5.3.1), so every CRL the issuer
            # signed counts, fresh or not: an older fresh CRL must not clear what a newer,
            # stale one revokes.
            for c, verified, superseded in snap.candidates(chain[i + 1]):
                if used is not None and (serial not in c.revoked or serial in c.holds):
                    # Older than the CRL in use: only a final revocation matters, or a hold
                    # from a CRL of another scope issued later (CRLNumbers count per scope).
                    if (
                        serial in c.holds
                        and verified
                        and c.later_in_another_scope(used)
                        and c.covers(cert, i > 0)
                    ):
                        if c.usable_from <= at < c.expires:
                            listed = c
                            break
                        held_newer = True  # stale or dated ahead: released or not?
                    continue
                if not c.covers(cert, i > 0):
                    continue
                covered = True
                if not verified:
                    problem = f"the issuer's CRL {c.source} is not validly signed by it"
                    continue
                if used is None:
                    if superseded:
                        problem = (
                            f"the issuer's CRL {c.source} is older than one of the same scope "
                            "already verified, which is no longer loaded (replayed?)"
                        )
                        if serial in c.revoked and serial not in c.holds:
                            listed = c  # a revocation is final, however old the CRL
                            break
                        continue
                    if at >= c.expires:
                        problem = f"the issuer's CRL {c.source} expired at {c.expires}"
                    elif at < c.usable_from:
                        problem = f"the issuer's CRL {c.source} is not valid yet (clock skew?)"
                    else:
                        used = c
                        if serial in c.revoked:
                            listed = c  # held or revoked by the authoritative CRL
                            break
                        continue
                    if serial in c.revoked:
                        if serial not in c.holds:
                            listed = c
                            break
                        held_newer = True  # newer than any usable CRL: released or not?
                elif serial in c.revoked and serial not in c.holds:
                    listed = c  # older than the one in use, yet final
                    break
            if listed is not None:
                try:
                    entry = listed.crl.get_revoked_certificate_by_serial_number(serial)
                    assert entry is not None
                    detail = _revoked_detail(cert, entry, i)
                except Exception:  # noqa: BLE001 - odd entry extensions: still revoked
                    detail = f"certificate serial {serial:x} is revoked"
                raise CertificateRevoked(detail)
            if used is not None and held_newer:
                problem = (
                    f"a newer CRL than {used.source} has the certificate on hold but is not "
                    "usable now"
                )
                used = None
            if used is None:
                if not covered:
                    # A CRL of this issuer that is loaded but cannot be used for the
                    # certificate (another key of the CA, its name spelled otherwise, a
                    # partition that leaves it out) is not "no CRL": under allow_missing it
                    # would admit whatever that CRL, or the partition not loaded, revokes.
                    if not snap.has_crl_of(cert, chain[i + 1]):
                        if self._allow_missing and not self._files_refused():
                            continue
                        if self._allow_missing:
                            problem = (
                                "no CRL from its issuer is loaded, and the files on disk are "
                                "refused (they may hold one)"
                            )
                    else:
                        problem = (
                            "a CRL from its issuer is loaded, but none can be used for it "
                            "(signed by another key, the issuer's name spelled otherwise, "
                            "or a scope that leaves it out)"
                        )
                what = "client certificate" if i == 0 else "intermediate CA"
                snap.note_once(
                    (chain[i + 1].subject.public_bytes(), problem),
                    f"mtlsauth: cannot check the revocation of a {what} issued by "
                    f"{chain[i + 1].subject.rfc4514_string()}: {problem}; failing closed",
                )
                # The client learns that revocation could not be checked, not why: which
                # CRLs this server holds, and until when, is the operator's business.
                raise RevocationUnavailable(_CLIENT_DETAIL)
            expires: datetime = used.expires
            if at >= used.warn_at:
                snap.warn_once(
                    used, "near", "mtlsauth: CRL %s reaches nextUpdate at %s, not yet replaced"
                )
            if until is None or expires < until:
                until = expires
        return until

    def _files_refused(self) -> bool:
        """Whether the CRL files on disk were refused at the last reload (the last good
        CRLs are kept). Their issuers cannot be told then: a file added for an issuer with
        no CRL loaded may be the one refused, and under allow_missing that issuer would
        count as missing and its revoked certificates be admitted."""
        return isinstance(self._source, FileSnapshot) and self._source.last_error is not None

    # -- operations -----------------------------------------------------------------------
    def reload(self) -> bool:
        """Re-read the files now (``from_paths`` only); True if a new snapshot was swapped in."""
        if isinstance(self._source, FileSnapshot):
            return self._source.reload()
        return False

    def health(self) -> dict[str, object]:
        """Status for health endpoints: files, last load, last error, earliest nextUpdate."""
        snap = self._current()
        now = datetime.now(timezone.utc)
        crls = snap.crls
        earliest = min((c.next_update for c in crls), default=None)
        status: dict[str, object] = {
            "what": "CRL set",
            "scope": self._scope,
            "mode": self._scope,
            "files": list(snap.sources),
            "crls": [
                {
                    "source": c.source,
                    "issuer": c.issuer,
                    "number": c.number,
                    "entries": len(c.revoked),
                    "next_update": c.next_update.isoformat(),
                    "stale": now >= c.expires,
                }
                for c in crls
            ],
            "earliest_next_update": earliest.isoformat() if earliest else None,
            "last_loaded": snap.loaded_at,
            "last_error": None,
            "generation": 0,
        }
        if isinstance(self._source, FileSnapshot):
            h = self._source.health()
            status.update(
                last_loaded=h["last_loaded"], last_error=h["last_error"], generation=h["generation"]
            )
        return status

    def __repr__(self) -> str:
        return f"<CRLSet scope={self._scope} crls={len(self._current().crls)}>"


def _revoked_detail(cert: x509.Certificate, entry: x509.RevokedCertificate, depth: int) -> str:
    reason = "unspecified"
    extra = ""
    for ext in entry.extensions:
        if ext.oid == CRLEntryExtensionOID.CRL_REASON and isinstance(ext.value, x509.CRLReason):
            reason = ext.value.reason.value
        elif ext.oid == CRLEntryExtensionOID.INVALIDITY_DATE and isinstance(
            ext.value, x509.InvalidityDate
        ):
            extra = f", compromised since {ext.value.invalidity_date_utc.isoformat()}"
    what = "client certificate" if depth == 0 else "intermediate CA"
    held = " (on hold)" if reason == "certificateHold" else ""
    return (
        f"{what} serial {cert.serial_number:x} is revoked{held}: {reason}, "
        f"since {entry.revocation_date_utc.isoformat()}{extra}"
    )
