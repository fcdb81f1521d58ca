"""Certificate fields read straight from the DER, without a full parse: names, SPKI,
extension flags and key identifiers (the path builder's and the profile's fast paths)."""

from __future__ import annotations

from cryptography import x509

from mtlsauth._der import item


def _der_item(buf: bytes, i: int) -> tuple[int, int]:
    """Start of the content and end of the DER item at ``i`` (``_der.item``, strict and
    bounded: a malformed item raises ``DERError``, a ``ValueError``)."""
    _tag, start, stop = item(buf, i, len(buf))
    return start, stop


def _tbs_names(cert: x509.Certificate, tbs: bytes | None = None) -> tuple[bytes, bytes, bytes]:
    """(issuer, subject, subjectPublicKeyInfo) as DER, sliced from the TBSCertificate.

    cryptography's path builder links a certificate to its issuer only when the issuer and
    subject names are the same DER, so comparing these bytes drops nothing it could link,
    and costs no parsing.
    """
    if tbs is None:
        tbs = cert.tbs_certificate_bytes
    i, _ = _der_item(tbs, 0)
    if tbs[i] == 0xA0:  # [0] EXPLICIT version
        i = _der_item(tbs, i)[1]
    i = _der_item(tbs, i)[1]  # serialNumber
    i = _der_item(tbs, i)[1]  # signature AlgorithmIdentifier
    issuer_end = _der_item(tbs, i)[1]
    issuer = tbs[i:issuer_end]
    i = _der_item(tbs, issuer_end)[1]  # validity
    subject_end = _der_item(tbs, i)[1]
    subject = tbs[i:subject_end]
    spki = tbs[subject_end : _der_item(tbs, subject_end)[1]]
    return issuer, subject, spki


_SAN_OID = b"\x55\x1d\x11"  # 2.5.29.17
_NAME_CONSTRAINTS_OID = b"\x55\x1d\x1e"  # 2.5.29.30


def _extension_flags(cert: x509.Certificate) -> dict[bytes, bool]:
    """Each extension's OID (DER content) -> its critical flag, sliced from the TBSCertificate.

    Cheaper than ``cert.extensions``, which parses every extension's value; callers that need
    a value still read it through cryptography. Raises IndexError/ValueError on bad DER.
    """
    tbs = cert.tbs_certificate_bytes
    i, end = _der_item(tbs, 0)
    if tbs[i] == 0xA0:
        i = _der_item(tbs, i)[1]
    for _ in range(6):  # serial, signature, issuer, validity, subject, subjectPublicKeyInfo
        i = _der_item(tbs, i)[1]
    flags: dict[bytes, bool] = {}
    while i < end:
        tag = tbs[i]
        start, i = _der_item(tbs, i)
        if tag != 0xA3:  # [1]/[2] unique identifiers
            continue
        j, stop = _der_item(tbs, start)  # SEQUENCE OF Extension
        while j < stop:
            k, ext_end = _der_item(tbs, j)
            oid_start, oid_end = _der_item(tbs, k)
            critical = tbs[oid_end] == 0x01 and tbs[oid_end + 2] != 0
            flags[tbs[oid_start:oid_end]] = critical
            j = ext_end
    return flags


def _key_ids(cert: x509.Certificate) -> tuple[bytes | None, bytes | None]:
    """(subjectKeyIdentifier, authorityKeyIdentifier.keyIdentifier), None when absent."""
    ski = aki = None
    for ext in cert.extensions:
        value = ext.value
        if isinstance(value, x509.SubjectKeyIdentifier):
            ski = value.digest
        elif isinstance(value, x509.AuthorityKeyIdentifier):
            aki = value.key_identifier
    return ski, aki
