"""Reading CRLs: files and directories, PEM and DER, each CRL checked for what this library
supports (no delta, indirect or reason-partitioned CRLs; a nextUpdate) and indexed once into
a set of revoked serials for O(1) look-ups."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import CRLEntryExtensionOID, ExtensionOID

from mtlsauth import _der
from mtlsauth._der import DERError

_MAX_FILE = 64 * 1024 * 1024


_NEVER = datetime.min.replace(tzinfo=timezone.utc)
_FOREVER = datetime.max.replace(tzinfo=timezone.utc)
_BEGIN, _END = b"-----BEGIN X509 CRL-----", b"-----END X509 CRL-----"


_OPENSSL_CRL_HASH = re.compile(r"^[0-9a-f]{8}\.r\d+$")  # c_rehash / openssl rehash CRL links


_CRL_SUFFIXES = (".pem", ".crl", ".der")


# The scope of a CRL without an Issuing Distribution Point: every certificate of its issuer.
_COMPLETE: tuple[object, ...] = (False, False, None, None)


# CRL extensions this module understands (RFC 5280 5.2); any other critical one refuses the CRL.
_KNOWN_CRL_EXTENSIONS = frozenset(
    {
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
        ExtensionOID.ISSUER_ALTERNATIVE_NAME,
        ExtensionOID.CRL_NUMBER,
        ExtensionOID.ISSUING_DISTRIBUTION_POINT,
        ExtensionOID.FRESHEST_CRL,
        ExtensionOID.AUTHORITY_INFORMATION_ACCESS,
    }
)


# RFC 5280 5.2.3, 5.2.6, 5.2.7: these MUST be non-critical; a critical one is a malformed CRL.
_MUST_BE_NON_CRITICAL = {
    ExtensionOID.CRL_NUMBER: "CRLNumber",
    ExtensionOID.FRESHEST_CRL: "FreshestCRL",
    ExtensionOID.AUTHORITY_INFORMATION_ACCESS: "AuthorityInfoAccess",
}


# Entry extensions this module understands; certificateIssuer is meaningful only in the
# indirect CRLs that are refused anyway.
_KNOWN_ENTRY_EXTENSIONS = frozenset(
    {
        CRLEntryExtensionOID.CRL_REASON,
        CRLEntryExtensionOID.INVALIDITY_DATE,
    }
)


# Signature hashes refused on a CRL, as on certificates and OCSP answers: SHA-1 (and MD5) can
# be forged at a price within reach. cryptography 50 refuses SHA-1 itself when it verifies;
# earlier releases, which mtlsauth supports, do not. SHA-224 is outside the certificate
# profile too.
_WEAK_SIGNATURE_HASHES = (hashes.MD5, hashes.SHA1, hashes.SHA224)


def _is_crl_name(name: str) -> bool:
    return name.lower().endswith(_CRL_SUFFIXES) or bool(_OPENSSL_CRL_HASH.match(name))


@dataclass(frozen=True, slots=True, eq=False)
class _CRL:
    """One loaded CRL, reduced to what ``check`` needs."""

    crl: x509.CertificateRevocationList
    source: str
    issuer: str  # RFC 4514, for messages
    aki: bytes | None
    number: int
    last_update: datetime
    next_update: datetime
    revoked: frozenset[int]  # entry details are looked up (a linear scan) only on a hit
    holds: frozenset[int] = frozenset()  # listed as certificateHold: the only undoable entries
    only_user: bool = False
    only_ca: bool = False
    dp_full: frozenset[x509.GeneralName] | None = None  # IDP distribution point, if any
    dp_relative: x509.RelativeDistinguishedName | None = None
    # Set by _build(); the defaults make an unprepared CRL unusable (fail closed).
    expires: datetime = _NEVER  # next_update + grace
    warn_at: datetime = _NEVER  # expires - warn_before
    usable_from: datetime = _FOREVER  # last_update - tolerated clock skew

    @property
    def scope(self) -> tuple[object, ...]:
        """What the Issuing Distribution Point says this CRL covers (all of it: indirect,
        reason-partitioned and attribute CRLs are refused at load)."""
        return (self.only_user, self.only_ca, self.dp_full, self.dp_relative)

    @property
    def complete(self) -> bool:
        """Whether this CRL covers every certificate of its issuer (no Issuing Distribution
        Point narrows it)."""
        return self.scope == _COMPLETE

    def later_in_another_scope(self, other: _CRL) -> bool:
        """Whether this CRL has another scope than ``other`` and was issued after it. CRLNumbers
        count per scope (RFC 5280 5.2.3), so across scopes only ``lastUpdate`` tells which
        is newer."""
        return self.last_update > other.last_update and self.scope != other.scope

    def covers(self, cert: x509.Certificate, is_ca: bool) -> bool:
        """Whether this CRL's scope (RFC 5280 5.2.5) includes ``cert``."""
        if (self.only_user and is_ca) or (self.only_ca and not is_ca):
            return False
        if self.dp_full is None and self.dp_relative is None:
            return True
        # A leaf is read through a throwaway copy: cryptography caches parsed extensions inside
        # the certificate object, and a cached identity keeps its leaf.
        source = cert if is_ca else x509.load_der_x509_certificate(cert.public_bytes(Encoding.DER))
        try:  # a partitioned CRL clears only certificates that point at its partition
            dps = source.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
        except x509.ExtensionNotFound:
            return False
        for dp in dps:
            if dp.crl_issuer is not None or dp.reasons is not None:
                continue
            if self.dp_full is not None and dp.full_name and self.dp_full & set(dp.full_name):
                return True
            if self.dp_relative is not None and dp.relative_name == self.dp_relative:
                return True
        return False


def _fail_load(source: str, why: str) -> ValueError:
    return ValueError(f"{source}: {why}")


_VERSION_WINDOW = 16  # the SEQUENCE header and a one-octet INTEGER fit many times over


def _tbs_version(tbs: bytes) -> int:
    """The version field of a TBSCertList (0 for v1, where the field is absent; -1 for a
    version field that is not a short INTEGER)."""
    # The SEQUENCE header, then either the INTEGER version or the signature
    # AlgorithmIdentifier SEQUENCE. Only the first octets are read: a CRL may be megabytes.
    window = min(len(tbs), _VERSION_WINDOW)
    try:
        _, pos, _ = _der.header(tbs, 0, window)
        tag, start, stop = _der.header(tbs, pos, window)
    except DERError:
        return -1
    if tag != 0x02:
        return 0
    if start == stop or stop > window:
        return -1
    return int.from_bytes(tbs[start:stop], "big", signed=True)


def _index_crl(crl: x509.CertificateRevocationList, source: str) -> _CRL:
    if _tbs_version(crl.tbs_certlist_bytes) != 1:
        raise _fail_load(source, "not a version 2 CRL (RFC 5280 5.1.2.1)")
    algorithm = crl.signature_hash_algorithm
    if isinstance(algorithm, _WEAK_SIGNATURE_HASHES):
        raise _fail_load(
            source,
            f"signature made with {algorithm.name}, which is not accepted (as for certificates)",
        )
    exts = crl.extensions
    for ext in exts:
        if ext.oid == ExtensionOID.DELTA_CRL_INDICATOR:
            raise _fail_load(
                source, "delta CRLs are not supported; supply the complete (base) CRL instead"
            )
        if ext.critical and ext.oid not in _KNOWN_CRL_EXTENSIONS:
            raise _fail_load(source, f"unsupported critical CRL extension {ext.oid.dotted_string}")
        if ext.critical and ext.oid in _MUST_BE_NON_CRITICAL:
            raise _fail_load(
                source,
                f"the {_MUST_BE_NON_CRITICAL[ext.oid]} extension must not be critical (RFC 5280 5.2)",
            )
    next_update = crl.next_update_utc
    if next_update is None:
        raise _fail_load(source, "CRL has no nextUpdate, so its freshness cannot be judged")
    aki: bytes | None = None
    try:
        aki = exts.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    except x509.ExtensionNotFound:
        pass
    try:
        number = exts.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        # RFC 5280 5.2.3: conforming CRL issuers MUST include it. Without it, which of two
        # CRLs is newer cannot be told, so an older one could win.
        raise _fail_load(source, "CRL has no CRLNumber extension (RFC 5280 5.2.3)") from None
    scope: dict[str, object] = {}
    try:
        idp = exts.get_extension_for_class(x509.IssuingDistributionPoint).value
    except x509.ExtensionNotFound:
        pass
    else:
        if idp.indirect_crl:
            raise _fail_load(source, "indirect CRLs are not supported")
        if idp.only_some_reasons is not None:
            raise _fail_load(
                source, "CRLs partitioned by reason (onlySomeReasons) are not supported"
            )
        if idp.only_contains_attribute_certs:
            raise _fail_load(source, "attribute-certificate CRLs cannot cover client certificates")
        scope = {
            "only_user": idp.only_contains_user_certs,
            "only_ca": idp.only_contains_ca_certs,
            "dp_full": frozenset(idp.full_name) if idp.full_name else None,
            "dp_relative": idp.relative_name,
        }
    serials: set[int] = set()
    holds: set[int] = set()
    final: set[int] = (
        set()
    )  # listed by an entry that is not a hold: a serial listed twice counts so
    for entry in crl:
        serials.add(entry.serial_number)
        held = False
        for ext in entry.extensions:
            if (
                ext.oid == CRLEntryExtensionOID.CRL_REASON
                and isinstance(ext.value, x509.CRLReason)
                and ext.value.reason == x509.ReasonFlags.certificate_hold
            ):
                held = True
            if ext.oid == CRLEntryExtensionOID.CERTIFICATE_ISSUER or (
                ext.critical and ext.oid not in _KNOWN_ENTRY_EXTENSIONS
            ):
                raise _fail_load(
                    source,
                    f"unsupported{' critical' if ext.critical else ''} CRL entry extension "
                    f"{ext.oid.dotted_string} (serial {entry.serial_number:x})",
                )
        (holds if held else final).add(entry.serial_number)
    revoked = frozenset(serials)
    return _CRL(
        crl=crl,
        source=source,
        issuer=crl.issuer.rfc4514_string(),
        aki=aki,
        number=number,
        last_update=crl.last_update_utc,
        next_update=next_update,
        revoked=revoked,
        holds=frozenset(holds - final),
        **scope,  # type: ignore[arg-type]
    )


def _pem_blocks(data: bytes, source: str) -> list[bytes]:
    # bytes.find rather than a DOTALL regex: 5x faster on a 3 MB CRL.
    out, pos = [], 0
    while (start := data.find(_BEGIN, pos)) >= 0:
        end = data.find(_END, start)
        if end < 0:
            raise _fail_load(source, "truncated PEM block (file half-written?)")
        out.append(data[start + len(_BEGIN) : end])
        pos = end + len(_END)
    return out


def _parse(data: bytes, source: str) -> list[_CRL]:
    ders: list[bytes] = []
    if b"-----BEGIN" in data:
        blocks = _pem_blocks(data, source)
        for block in blocks:
            try:
                ders.append(base64.b64decode(b"".join(block.split()), validate=True))
            except (binascii.Error, ValueError):
                raise _fail_load(source, "bad base64 in a PEM CRL block") from None
        if not ders:
            raise _fail_load(source, "no X509 CRL block found")
    else:
        ders.append(data)
    out = []
    for i, der in enumerate(ders):
        where = source if len(ders) == 1 else f"{source} (CRL #{i + 1})"
        try:
            crl = x509.load_der_x509_crl(der)
            if not _same_signature_algorithms(der):
                raise _fail_load(
                    where,
                    "the signature algorithm inside the CRL differs from the one outside "
                    "(RFC 5280 5.1.1.2)",
                )
            out.append(_index_crl(crl, where))
        except ValueError as exc:
            if str(exc).startswith(where):
                raise
            raise _fail_load(where, f"not a parsable CRL ({exc})") from None
        except Exception as exc:  # noqa: BLE001 - x509.InvalidVersion, DuplicateExtension, ...
            raise _fail_load(where, f"not a usable CRL ({type(exc).__name__}: {exc})") from None
    return out


def _same_signature_algorithms(der: bytes) -> bool:
    """True when ``tbsCertList.signature`` equals ``signatureAlgorithm`` octet for octet
    (RFC 5280 5.1.1.2). cryptography 49 and later refuse a CRL where they differ as they parse
    it; earlier releases do not, so the check is made here, whatever the release. A CRL may
    run to megabytes: the headers are read from its first octets, the outer algorithm from
    what follows the TBSCertList."""
    try:
        n = len(der)
        head = der[: min(n, 1 << 16)]
        tag, start, end = _der.header(head, 0, len(head))
        if tag != _der.SEQUENCE or end != n:
            return False
        tag, tbs, tbs_end = _der.header(head, start, len(head))
        if tag != _der.SEQUENCE:
            return False
        window = min(tbs_end, len(head))
        tag, _, stop = _der.item(head, tbs, window)
        pos = tbs
        if tag == 0x02:  # the optional version
            pos = stop
            _, _, stop = _der.item(head, pos, window)
        tail = der[tbs_end:]
        _, _, outer_stop = _der.item(tail, 0, len(tail))
        return head[pos:stop] == tail[:outer_stop]
    except DERError:
        return False


def _read(path: Path) -> list[_CRL]:
    try:
        if path.stat().st_size > _MAX_FILE:
            raise _fail_load(str(path), "file too large for a CRL")
        data = path.read_bytes()
    except OSError as exc:
        raise _fail_load(str(path), f"cannot read: {exc.strerror or exc}") from None
    if not data.strip():
        raise _fail_load(str(path), "empty file")
    return _parse(data, str(path))
