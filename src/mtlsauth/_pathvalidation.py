"""Path validation with cryptography's ClientVerifier, and its errors mapped to stable codes.

Relaxed on purpose, and only this far (enterprise PKIs issue CN-only client certificates
without SAN or key identifiers): the leaf's SubjectAlternativeName and AuthorityKeyIdentifier
may be absent. Everything else of cryptography's web-PKI profile stays enforced: signatures
(SHA-1 refused), validity, CA basicConstraints and pathLen, name constraints, unknown critical
extensions, and the clientAuth EKU when an EKU is present. We add what it does not check:
a leaf keyUsage, when present, must allow signing (as OpenSSL's ``sslclient`` purpose does),
and the leaf key must be strong enough (RSA >= 2048 bits, P-256/384/521, Ed25519/Ed448).

The client-certificate profile keeps cryptography's end-entity rules that the relaxed hooks
would otherwise drop: a leaf keyUsage must not assert keyCertSign, and a SubjectAlternativeName
must be critical exactly when the subject is empty (RFC 5280 4.2.1.6); with neither a subject
nor a SAN the certificate names nobody and is refused.

Name constraints bind the names an identity is read from, not only SANs: after cryptography
has checked the SANs, every CA's constraints are applied to the leaf subject's emailAddress
values (rfc822Name constraints, RFC 5280 4.2.1.10), to each commonName that reads as a DNS
name, an e-mail address or an IP address, and to the IPv4 form of IPv4-mapped IPv6 SANs,
permitted and excluded subtrees alike, for every CA on the validated path
(``check_identity_name_constraints``).

Hostile chains: only presented certificates that can be on a path reach the path builder
(``select_intermediates``): no duplicates, self-issued or non-CA certificates; only shortest
name paths from the leaf to a trust anchor; at most ``MAX_ISSUER_CANDIDATES`` CAs per level;
signatures checked from the anchor down when more than two CAs remain.

Never ``ExtensionPolicy.permit_all()`` for the leaf: it drops the EKU check and accepts a CA
certificate, even the trust anchor itself, as a client certificate.
"""

from __future__ import annotations

import ipaddress
import socket
import unicodedata
from collections.abc import Sequence
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from mtlsauth._errors import CertificateInvalid

__all__ = [
    "MAX_ISSUER_CANDIDATES",
    "MIN_RSA_BITS",
    "check_identity_name_constraints",
    "check_leaf_key",
    "check_leaf_profile",
    "select_intermediates",
    "validate_path",
]

MIN_RSA_BITS = 2048
_STRONG_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)


def _leaf_key_usage(_policy: object, _cert: x509.Certificate, ku: x509.KeyUsage | None) -> None:
    # TLS client authentication signs CertificateVerify: RFC 5280 4.2.1.3, RFC 8446 4.4.3.
    if ku is None:
        return
    if not (ku.digital_signature or ku.key_agreement):
        raise ValueError("keyUsage does not permit digitalSignature")
    if ku.key_cert_sign:  # an end entity never signs certificates (RFC 5280 4.2.1.3)
        raise ValueError("keyUsage asserts keyCertSign on an end-entity certificate")


def check_leaf_profile(leaf: x509.Certificate) -> None:
    """The leaf keyUsage and SAN rules, for certificates that skip path validation (pins)."""
    extensions = leaf.extensions
    try:
        ku = extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        ku = None
    try:
        san = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    try:
        _leaf_key_usage(None, leaf, ku)
        _leaf_san(None, leaf, san)
    except ValueError as exc:
        raise _map_error(str(exc), (), datetime.min) from None


def _leaf_san(
    _policy: object, cert: x509.Certificate, san: x509.SubjectAlternativeName | None
) -> None:
    # Presence is optional (CN-only enterprise certificates); criticality is not (RFC 5280
    # 4.2.1.6): critical when the subject is empty, non-critical otherwise.
    empty_subject = _tbs_names(cert)[1] == b"\x30\x00"  # an empty SEQUENCE OF RDNs
    if san is None:
        if empty_subject:
            raise ValueError("subjectAltName absent and subject empty: no identity")
        return
    critical = _extension_flags(cert).get(_SAN_OID, False)
    if empty_subject and not critical:
        raise ValueError("subjectAltName must be critical when the subject is empty")
    if critical and not empty_subject:
        raise ValueError("subjectAltName must not be critical when the subject is not empty")


_EE_POLICY = (
    ExtensionPolicy.webpki_defaults_ee()
    .may_be_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, _leaf_san)
    .may_be_present(x509.AuthorityKeyIdentifier, Criticality.AGNOSTIC, None)
    .may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, _leaf_key_usage)
)
_CA_POLICY = ExtensionPolicy.webpki_defaults_ca()


def check_leaf_key(leaf: x509.Certificate) -> None:
    """Refuse weak leaf keys, which cryptography's verifier does not check (issuers only)."""
    try:
        key = leaf.public_key()
    except Exception:  # noqa: BLE001 - UnsupportedAlgorithm, an invalid point, a bad encoding
        raise CertificateInvalid(
            "the certificate's public key cannot be read", code="certificate_malformed"
        ) from None
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise CertificateInvalid(
                f"RSA key of {key.key_size} bits is below the {MIN_RSA_BITS}-bit minimum",
                code="weak_key",
            )
        return
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, _STRONG_CURVES):
            raise CertificateInvalid(
                f"elliptic curve {key.curve.name} is not allowed", code="weak_key"
            )
        return
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return
    raise CertificateInvalid(f"{type(key).__name__} keys are not allowed", code="weak_key")


def _validity_code(certs: Sequence[x509.Certificate], at: datetime) -> str | None:
    for c in certs:
        if at > c.not_valid_after_utc:
            return "certificate_expired"
        if at < c.not_valid_before_utc:
            return "certificate_not_yet_valid"
    return None


_MESSAGE_CODES = (
    (
        "required EKU not found",
        "invalid_usage",
        "extended key usage does not allow client authentication",
    ),
    (
        "cA must not be asserted",
        "invalid_usage",
        "a CA certificate cannot be used as a client certificate",
    ),
    ("keyUsage does not permit", "invalid_usage", "key usage does not allow digital signatures"),
    (
        "asserts keyCertSign",
        "invalid_usage",
        "key usage allows certificate signing, which a client certificate must not",
    ),
    (
        "subjectAltName must",
        "certificate_malformed",
        "subject alternative name criticality does not match the subject (RFC 5280 4.2.1.6)",
    ),
    (
        "subject empty: no identity",
        "certificate_malformed",
        "certificate has neither a subject nor a subject alternative name",
    ),
    ("exceeds max depth", "chain_too_long", "chain is longer than max_depth allows"),
    ("path length constraint", "chain_too_long", "chain violates a CA's path length constraint"),
    (
        "unaccounted-for critical",
        "invalid_usage",
        "certificate carries an unsupported critical extension",
    ),
    ("X509v3", "certificate_malformed", "only X.509 v3 certificates are accepted"),
    (
        "Forbidden signature algorithm",
        "untrusted_issuer",
        "signature algorithm not allowed (e.g. SHA-1)",
    ),
    (
        "directoryName constraint",
        "untrusted_issuer",
        "a CA uses directoryName name constraints, which are not supported",
    ),
    ("name constraint", "untrusted_issuer", "certificate violates a CA's name constraints"),
    ("too weak", "untrusted_issuer", "an issuing CA's key is too weak"),
    ("Forbidden public key", "untrusted_issuer", "an issuing CA's key algorithm is not allowed"),
    ("duplicate extension", "certificate_malformed", "a certificate repeats an extension"),
    ("error parsing", "certificate_malformed", "a certificate field cannot be parsed"),
    ("verifier error: ValueError", "certificate_malformed", "a certificate field cannot be parsed"),
)


def _map_error(
    message: str,
    presented: Sequence[x509.Certificate],
    at: datetime,
    anchors: Sequence[x509.Certificate] = (),
) -> CertificateInvalid:
    if "not valid at validation time" in message:
        code = _validity_code(presented, at)
        if code is not None:
            return CertificateInvalid(code.replace("_", " "), code=code)
        # An anchor the chain names as its issuer is outside its own validity window.
        issuers = {c.issuer for c in presented}
        code = _validity_code([a for a in anchors if a.subject in issuers], at)
        if code is not None:
            when = "has expired" if code == "certificate_expired" else "is not valid yet"
            return CertificateInvalid(f"the trusted CA certificate {when}", code=code)
        return CertificateInvalid("untrusted issuer", code="untrusted_issuer")
    for needle, code, detail in _MESSAGE_CODES:
        if needle in message:
            return CertificateInvalid(detail, code=code)
    # "all candidates exhausted", a bad signature, an unknown issuer, any other failure.
    return CertificateInvalid("no valid path to a trusted CA", code="untrusted_issuer")


# --- which presented certificates may take part in path building ---------------------------

MAX_ISSUER_CANDIDATES = 3  # CAs kept per level of the path (cross-signing, key rollover)
_SIMPLE_CHAIN = 2  # up to this many chosen CAs, the path builder's own search is cheap


def _der_item(buf: bytes, i: int) -> tuple[int, int]:
    """Start of the content and end of the DER item at ``i`` (low-tag-number form)."""
    length = buf[i + 1]
    i += 2
    if length & 0x80:
        n = length & 0x7F
        length = int.from_bytes(buf[i : i + n], "big")
        i += n
    return i, i + length


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


class _Candidate:
    """A certificate's names and key as DER slices; extensions are parsed only when needed."""

    __slots__ = ("_ids", "cert", "issuer", "spki", "subject")

    def __init__(self, cert: x509.Certificate, tbs: bytes | None = None) -> None:
        self.cert = cert
        self.issuer, self.subject, self.spki = _tbs_names(cert, tbs)
        self._ids: tuple[bool, bytes | None, bytes | None] | None = None

    def ids(self) -> tuple[bool, bytes | None, bytes | None]:
        """(usable as a CA, subjectKeyIdentifier, authorityKeyIdentifier keyIdentifier)."""
        if self._ids is None:
            try:
                self._ids = (_usable_ca(self.cert), *_key_ids(self.cert))
            except Exception:  # noqa: BLE001 - unreadable extensions: not on any valid path
                self._ids = (False, None, None)
        return self._ids


def _usable_ca(cert: x509.Certificate) -> bool:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except Exception:  # noqa: BLE001 - absent or unreadable: it cannot be an issuer
        return False
    return bc.ca


def select_intermediates(
    leaf: x509.Certificate,
    presented: Sequence[x509.Certificate],
    configured: Sequence[x509.Certificate] = (),
    *,
    max_depth: int,
    anchors: Sequence[x509.Certificate] = (),
) -> list[x509.Certificate]:
    """The certificates that may sit on a path from ``leaf``, in the order to try them."""
    return _select(leaf, presented, configured, max_depth, anchors)[0]


def _anchor_distances(
    pool: Sequence[_Candidate], anchors: Sequence[x509.Certificate]
) -> tuple[dict[bytes, int], dict[bytes, list[x509.Certificate]]] | None:
    """Fewest certificates from each subject name to a trust anchor (by name links only),
    and the anchors by subject name."""
    if not anchors:
        return None
    by_subject: dict[bytes, list[x509.Certificate]] = {}
    for anchor in anchors:
        try:
            by_subject.setdefault(_tbs_names(anchor)[1], []).append(anchor)
        except Exception:  # noqa: BLE001, S112 - an unreadable anchor anchors nothing
            continue
    dist = dict.fromkeys(by_subject, 0)
    far = len(pool) + 1  # a shortest path uses each certificate at most once
    for _ in range(far):
        changed = False
        for c in pool:
            above = dist.get(c.issuer)
            if above is not None and above + 1 < dist.get(c.subject, far + 1):
                dist[c.subject] = above + 1
                changed = True
        if not changed:
            break
    return dist, by_subject


MAX_SELF_ISSUED = 2
"""Self-issued certificates a client may present that are checked for a rollover link."""


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except Exception:  # noqa: BLE001 - a wrong name, a bad signature, an unusual key
        return False
    return True


def _grounded(
    chosen: Sequence[_Candidate],
    dist: dict[bytes, int],
    anchors: dict[bytes, list[x509.Certificate]],
) -> list[_Candidate]:
    """The chosen certificates whose signatures lead to a trust anchor, checked from the top.

    An issuer is tried only once per certificate, each level only if the level above kept
    something, so look-alikes cost one failed signature check each, at the first level where
    they part from a genuine chain.
    """
    kept: dict[bytes, list[x509.Certificate]] = {}
    by_level: dict[int, list[_Candidate]] = {}
    for c in chosen:
        by_level.setdefault(dist[c.subject], []).append(c)
    out: list[_Candidate] = []
    for level in sorted(by_level):
        found = False
        for c in by_level[level]:
            above = anchors.get(c.issuer, []) if level == 1 else kept.get(c.issuer, [])
            if any(_signed_by(c.cert, i) for i in above[:MAX_ISSUER_CANDIDATES]):
                kept.setdefault(c.subject, []).append(c.cert)
                out.append(c)
                found = True
        if not found:
            break
    return [c for c in chosen if c in out]


def _select(
    leaf: x509.Certificate,
    presented: Sequence[x509.Certificate],
    configured: Sequence[x509.Certificate],
    max_depth: int,
    anchors: Sequence[x509.Certificate] = (),
) -> tuple[list[x509.Certificate], bool]:
    """``select_intermediates``, and whether the shortest path is longer than ``max_depth``.

    A hostile client can present many look-alike CAs, or CAs that name each other in a
    circle, to make path building expensive. Kept: CA certificates (basicConstraints cA)
    that are not self-signed (a root comes from the trust store, never from the client;
    at most ``MAX_SELF_ISSUED`` self-issued ones are checked for a key-rollover link), one
    per (subject, issuer, key), linked by issuer -> subject names from the leaf and, when the
    anchors are known, on a shortest name path to one of them (each certificate one step
    closer to an anchor: no loops, no dead ends); at most ``MAX_ISSUER_CANDIDATES`` per
    certificate (a candidate whose subjectKeyIdentifier contradicts the child's
    authorityKeyIdentifier cannot be its issuer, as OpenSSL also holds), at most
    ``max_depth + 1`` links above the leaf and ``2 * (max_depth + 1)`` certificates in all.
    Configured intermediates come before presented ones.
    """
    # Duplicates by TBSCertificate: re-encodings of one certificate (see _identity) add nothing.
    pool: list[_Candidate] = []
    seen: set[bytes] = {leaf.tbs_certificate_bytes}
    self_issued_checked = 0
    for cert in (*configured, *presented):
        tbs = cert.tbs_certificate_bytes
        if tbs in seen:
            continue
        seen.add(tbs)
        try:
            cand = _Candidate(cert, tbs)
        except Exception:  # noqa: BLE001, S112 - unreadable: it cannot be on a valid path
            continue
        if cand.subject != cand.issuer:
            pool.append(cand)
        elif self_issued_checked < MAX_SELF_ISSUED:
            # Self-issued: a root when it is also self-signed (roots come from the trust
            # store, never from the client); otherwise a CA rolling over to a new key under
            # the same name (RFC 5280 6.1), which may sit on a path. Only a few are checked,
            # so a client cannot buy many signature verifications.
            self_issued_checked += 1
            if not _signed_by(cert, cert):
                pool.append(cand)
    # One level beyond max_depth, so a path that is merely too long is reported as such.
    levels = max_depth + 1
    if not pool:
        return [], False
    if len(pool) == 1 or (
        len(pool) == _SIMPLE_CHAIN
        and not (pool[0].issuer == pool[1].subject and pool[1].issuer == pool[0].subject)
    ):
        # The common case (one or two intermediates, no circle): the path builder's search
        # is cheap and its own checks decide; reading extensions here would only add cost.
        return [c.cert for c in pool], False
    try:
        frontier = [_Candidate(leaf)]
    except Exception:  # noqa: BLE001 - the path builder reports the unreadable leaf
        return [], False
    known = _anchor_distances(pool, anchors)
    if known is None:  # anchors unknown: name links from the leaf only
        chosen, depth, frontier = _walk(frontier, pool, levels, 2 * levels)
        deeper = depth >= levels and any(
            c.subject == f.issuer and c not in chosen for f in frontier for c in pool
        )
        return [c.cert for c in chosen], deeper
    dist, by_subject = known
    start = dist.get(frontier[0].issuer)
    if start is None or start == 0:
        return [], False  # no name path to an anchor, or issued by one directly
    # Only certificates one step closer to an anchor: shortest name paths, no loops.
    pool = [c for c in pool if c.issuer in dist and dist[c.issuer] < dist.get(c.subject, 0)]
    if start > max_depth:
        # Too long by names. Say so only if signatures back it, down to the leaf.
        chosen = _grounded(_walk(frontier, pool, start, 2 * start)[0], dist, by_subject)
        if any(c.subject == frontier[0].issuer and _signed_by(leaf, c.cert) for c in chosen):
            raise CertificateInvalid("chain is longer than max_depth allows", code="chain_too_long")
        return [], False
    chosen = _walk(frontier, pool, start, 2 * start)[0]
    if len(chosen) > _SIMPLE_CHAIN:
        chosen = _grounded(chosen, dist, by_subject)
    return [c.cert for c in chosen], False


def _walk(
    frontier: list[_Candidate], pool: Sequence[_Candidate], levels: int, limit: int
) -> tuple[list[_Candidate], int, list[_Candidate]]:
    """Breadth-first from the leaf over issuer -> subject links: (chosen, depth, frontier)."""
    chosen: list[_Candidate] = []
    keys: set[tuple[bytes, bytes, bytes]] = set()
    depth = 0
    while frontier and depth < levels and len(chosen) < limit:
        depth += 1
        nxt: list[_Candidate] = []
        taken = 0  # per level: a genuine chain has one CA per level, two when cross-signed
        for child in frontier:
            aki = child.ids()[2]
            # Extensions are read for the first few name matches only: a genuine chain has
            # one or two per level, and look-alikes must not cost a parse each.
            named = [c for c in pool if c.subject == child.issuer][: 2 * MAX_ISSUER_CANDIDATES]
            issuers = [
                c
                for c in named
                if c.ids()[0] and not (aki is not None and c.ids()[1] not in (None, aki))
            ]
            # Candidates whose key identifier matches first, then the rest in order.
            issuers.sort(key=lambda c: aki is None or c.ids()[1] != aki)
            for cand in issuers:
                if taken >= MAX_ISSUER_CANDIDATES or len(chosen) >= limit:
                    break
                if cand in chosen:
                    continue
                key = (cand.subject, cand.issuer, cand.spki)
                if key in keys:
                    continue  # one per (subject, issuer, public key): re-issues add nothing
                keys.add(key)
                chosen.append(cand)
                nxt.append(cand)
                taken += 1
        frontier = nxt
    return chosen, depth, frontier


# --- name constraints on names read from the subject -----------------------------------

_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})  # IDNA label separators


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text.translate(_DOTS)).casefold().rstrip(".")


def _cn_as_ip(cn: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = cn.strip()
    if not text or not (text[0].isdigit() or text[0] == ":" or ":" in text):
        return None  # every IPv4 form starts with a digit; IPv6 has a colon
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if text and all(ch in "0123456789abcdefxABCDEFX." for ch in text):
        try:  # what lenient parsers make of "010.1", "0x7f.1", "2130706433"
            return ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    return None


def _cn_as_dns(cn: str) -> str | None:
    """The host a CN names when it reads as a DNS name (or a URL, or host:port), else None."""
    text = cn.strip().translate(_DOTS)
    if "://" in text:
        text = text.split("://", 1)[1]
    for sep in "/?#":
        text = text.split(sep, 1)[0]
    text = text.rsplit("@", 1)[-1]
    if text.count(":") == 1:
        text = text.split(":", 1)[0]
    text = text.rstrip(".")
    if "." not in text or any(ch.isspace() for ch in text):
        return None
    return text


def _cn_as_email(cn: str) -> str | None:
    text = cn.strip()
    local, at, host = text.rpartition("@")
    if not at or not local or "." not in host or any(ch.isspace() for ch in text):
        return None
    return text


def _dns_within(name: str, base: str, *, strict: bool) -> bool:
    """RFC 5280 4.2.1.10 dNSName matching; ``strict`` = only exact ASCII (permitted subtrees)."""
    if strict:
        if not name.isascii():
            return False
        name, base = name.lower().rstrip("."), base.lower().rstrip(".")
    else:
        name, base = _fold(name), _fold(base)
    if not base:
        return True
    if base.startswith("."):
        return name.endswith(base)
    return name == base or name.endswith("." + base)


def _email_within(address: str, base: str, *, strict: bool) -> bool:
    """RFC 5280 4.2.1.10 rfc822Name matching: a mailbox, a host, or '.domain' for subdomains."""
    if strict and not address.isascii():
        return False
    local, at, host = address.rpartition("@")
    if not at:
        return False
    if "@" in base:
        b_local, _, b_host = base.rpartition("@")
        if strict:
            return local == b_local and host.lower() == b_host.lower()
        return _fold(local) == _fold(b_local) and _fold(host) == _fold(b_host)
    if base.startswith("."):
        return _dns_within(host, base, strict=strict) and (
            _fold(host) != _fold(base[1:]) if not strict else host.lower() != base[1:].lower()
        )
    if strict:
        return host.lower() == base.lower()
    return _fold(host) == _fold(base)


def _identity_names(leaf: x509.Certificate) -> list[tuple[type[x509.GeneralName], object]]:
    """Names an identity is read from that cryptography's constraint checks do not see."""
    names: list[tuple[type[x509.GeneralName], object]] = []
    subject = leaf.subject
    for attr in subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS):
        value = attr.value if isinstance(attr.value, str) else attr.value.decode("latin-1")
        names.append((x509.RFC822Name, value))
    for attr in subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        value = attr.value if isinstance(attr.value, str) else attr.value.decode("latin-1")
        ip = _cn_as_ip(value)
        if ip is not None:
            names.append((x509.IPAddress, ip))
            continue
        email = _cn_as_email(value)
        if email is not None:
            names.append((x509.RFC822Name, email))
        dns = _cn_as_dns(value)
        if dns is not None:
            names.append((x509.DNSName, dns))
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return names
    for address in san.get_values_for_type(x509.IPAddress):
        # Policies match ::ffff:a.b.c.d as a.b.c.d: so must the IPv4 constraints.
        mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
        if mapped is not None:
            names.append((x509.IPAddress, mapped))
    return names


def _within(
    kind: type[x509.GeneralName], name: object, subtree: x509.GeneralName, *, strict: bool
) -> bool:
    if kind is x509.IPAddress:
        net = subtree.value
        if not isinstance(net, ipaddress.IPv4Network | ipaddress.IPv6Network):
            return False
        candidates: list[object] = [name]
        if not strict and isinstance(name, ipaddress.IPv6Address) and name.ipv4_mapped:
            candidates.append(name.ipv4_mapped)  # an exclusion also covers the mapped form
        return any(
            isinstance(a, ipaddress.IPv4Address | ipaddress.IPv6Address)
            and a.version == net.version
            and a in net
            for a in candidates
        )
    value = subtree.value
    if not isinstance(name, str) or not isinstance(value, str):
        return False
    if kind is x509.DNSName:
        return _dns_within(name, value, strict=strict)
    return _email_within(name, value, strict=strict)


def check_identity_name_constraints(chain: Sequence[x509.Certificate]) -> None:
    """Apply every CA's name constraints to the names an identity is read from beyond the SANs
    cryptography checks: the subject's emailAddress values, commonNames that read as an IP
    address, an e-mail address or a DNS name (a URL's or ``host:port``'s host), and the IPv4
    form of an IPv4-mapped IPv6 SAN (policies match ``::ffff:10.1.2.3`` as ``10.1.2.3``).

    Raises:
        CertificateInvalid: ``untrusted_issuer`` when a name falls outside a CA's permitted
            subtrees of its kind, or inside an excluded one.
    """
    if len(chain) < 2:
        return
    try:
        constraints = [
            ca.extensions.get_extension_for_class(x509.NameConstraints).value
            for ca in chain[1:]
            if _NAME_CONSTRAINTS_OID in _extension_flags(ca)
        ]
        if not constraints:
            return
        names = _identity_names(chain[0])
    except Exception:  # noqa: BLE001 - unreadable names cannot be shown to satisfy constraints
        raise CertificateInvalid(
            "certificate names cannot be read", code="certificate_malformed"
        ) from None
    if not names:
        return
    for nc in constraints:
        for kind, name in names:
            permitted = [t for t in nc.permitted_subtrees or () if isinstance(t, kind)]
            if permitted and not any(_within(kind, name, t, strict=True) for t in permitted):
                raise CertificateInvalid(_NC_DETAIL, code="untrusted_issuer")
            excluded = [t for t in nc.excluded_subtrees or () if isinstance(t, kind)]
            if any(_within(kind, name, t, strict=False) for t in excluded):
                raise CertificateInvalid(_NC_DETAIL, code="untrusted_issuer")


_NC_DETAIL = "certificate violates a CA's name constraints (a name in its subject)"


def validate_path(
    store: Store,
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    *,
    at: datetime,
    max_depth: int,
    clock_skew_s: float,
    configured: Sequence[x509.Certificate] = (),
    anchors: Sequence[x509.Certificate] = (),
) -> list[x509.Certificate]:
    """Return the validated chain (leaf first, ending at the anchor) or raise CertificateInvalid.

    ``intermediates`` are what the client presented, ``configured`` the operator's known
    intermediates; only those ``select_intermediates`` keeps reach the path builder.
    ``anchors`` (the store's certificates) only name the cause of a failure: an anchor
    outside its validity window is ``certificate_expired``/``not_yet_valid``.
    A validity failure is retried once with the clock moved by ``clock_skew_s`` in the
    forgiving direction, so skew only ever costs time on the failure path.
    """
    candidates, deeper = _select(leaf, intermediates, configured, max_depth, anchors)
    try:
        chain = _verify(store, leaf, candidates, at, max_depth)
    except VerificationError as exc:
        err = _map_error(str(exc), (leaf, *candidates), at, anchors)
        if err.code == "chain_too_long" and "max depth" in str(exc) and not deeper:
            err = _depth_error(store, leaf, candidates, at, max_depth, err, anchors)
    else:
        check_identity_name_constraints(chain)
        return chain
    if clock_skew_s and err.code in ("certificate_expired", "certificate_not_yet_valid"):
        from datetime import timedelta

        shift = timedelta(seconds=clock_skew_s)
        retry_at = at - shift if err.code == "certificate_expired" else at + shift
        try:
            chain = _verify(store, leaf, candidates, retry_at, max_depth)
        except VerificationError:
            pass
        else:
            check_identity_name_constraints(chain)
            return chain
    raise err


def _depth_error(
    store: Store,
    leaf: x509.Certificate,
    candidates: Sequence[x509.Certificate],
    at: datetime,
    max_depth: int,
    err: CertificateInvalid,
    anchors: Sequence[x509.Certificate],
) -> CertificateInvalid:
    """Tell a chain that is too long from one that loops or never reaches an anchor.

    A loop-free path uses each candidate at most once, so a builder allowed one more
    intermediate than there are candidates either finds the (too long) path or proves that
    none exists.
    """
    deeper = len(candidates) + 1
    if deeper <= max_depth:
        return CertificateInvalid("no valid path to a trusted CA", code="untrusted_issuer")
    try:
        _verify(store, leaf, candidates, at, min(deeper, 255))
    except VerificationError as exc:
        if "max depth" in str(exc):
            return CertificateInvalid("no valid path to a trusted CA", code="untrusted_issuer")
        return _map_error(str(exc), (leaf, *candidates), at, anchors)
    return err


def _verify(
    store: Store,
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    at: datetime,
    max_depth: int,
) -> list[x509.Certificate]:
    # A verifier's time is frozen when it is built, so build one per validation (~4 us).
    verifier = (
        PolicyBuilder()
        .store(store)
        .time(at)
        .max_chain_depth(max_depth)
        .extension_policies(ca_policy=_CA_POLICY, ee_policy=_EE_POLICY)
        .build_client_verifier()
    )
    try:
        return verifier.verify(leaf, list(intermediates)).chain
    except VerificationError:
        raise
    except Exception as exc:  # noqa: BLE001 - fail closed on anything the engine throws
        raise VerificationError(f"verifier error: {type(exc).__name__}") from None
