"""Path validation with cryptography's ClientVerifier, and its errors mapped to stable codes.

Relaxed on purpose, and only this far (enterprise PKIs issue CN-only client certificates
without SAN or key identifiers): the leaf's SubjectAlternativeName and AuthorityKeyIdentifier
may be absent. Everything else of cryptography's web-PKI profile stays enforced: signatures
(SHA-1 refused), validity, CA basicConstraints and pathLen, name constraints, unknown critical
extensions, and the clientAuth EKU when an EKU is present. We add what it does not check:
a leaf keyUsage, when present, must allow signing (as OpenSSL's ``sslclient`` purpose does),
and the leaf key must be strong enough (RSA >= 2048 bits, P-256/384/521, Ed25519/Ed448).
An RSA modulus that is not a whole number of octets is refused on the leaf and on every CA
of the validated path (CA/B BR 6.1.5; cryptography checks a CA key's size only).

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

An intermediate that a full validation took up to an anchor is remembered, and later leaves
under it are validated against it alone, the root appended (``_verify_vouched``; the argument
for why that is the same answer is above that function, and in docs/security.md).

Never ``ExtensionPolicy.permit_all()`` for the leaf: it drops the EKU check and accepts a CA
certificate, even the trust anchor itself, as a client certificate.

Why one module of this size: every certificate rule in one place on purpose (path building, name
constraints and raw TBS reading are ``_pathbuilding``, ``_nameconstraints`` and ``_tbs``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.verification import (
    ClientVerifier,
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from mtlsauth._errors import CertificateInvalid
from mtlsauth._leafder import LeafFacts, profile_passes
from mtlsauth._memo import BoundedMemo, ObjectTable
from mtlsauth._nameconstraints import _constraints, check_identity_name_constraints
from mtlsauth._names import _name_view
from mtlsauth._pathbuilding import (
    MAX_ISSUER_CANDIDATES,
    _candidate,
    _select,
    select_intermediates,
    whole_octets,
)
from mtlsauth._tbs import _NAME_CONSTRAINTS_OID, _SAN_OID, _extension_flags, _tbs_names

if TYPE_CHECKING:
    from mtlsauth._truststore import TrustSnapshot

__all__ = [
    "MAX_ISSUER_CANDIDATES",
    "MIN_RSA_BITS",
    "check_identity_name_constraints",
    "check_leaf_key",
    "check_leaf_profile",
    "select_intermediates",
    "shifted",
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
# The same policy without the two Python validators, for a leaf whose DER already shows that
# both would pass (``_leafder.profile_passes``): each callback costs cryptography a parse of
# the extension into Python objects and a call back into the interpreter. The result is the
# one _EE_POLICY gives: the validators only ever add refusals, and they would add none.
_EE_POLICY_CHECKED = (
    ExtensionPolicy.webpki_defaults_ee()
    .may_be_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)
    .may_be_present(x509.AuthorityKeyIdentifier, Criticality.AGNOSTIC, None)
    .may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, None)
)
_CA_POLICY = ExtensionPolicy.webpki_defaults_ca()


def check_leaf_key(leaf: x509.Certificate, spki: bytes | None = None) -> None:
    """Refuse weak leaf keys, which cryptography's verifier does not check (issuers only).

    ``spki``, the leaf's subjectPublicKeyInfo exactly as in its DER, remembers the verdict
    for those bytes (a renewed certificate often keeps its key; an EC key costs a point
    check to load).
    """
    verdict: tuple[str, ...] | None
    if spki is None:
        verdict = _key_verdict(leaf)
    else:
        verdict = _KEYS.get(spki)
        if verdict is None:
            verdict = _key_verdict(leaf)
            _KEYS.put(spki, verdict)
    if verdict:
        raise CertificateInvalid(verdict[0], code=verdict[1])


_KEY_MEMO_MAX = 1200  # octets: an RSA-8192 subjectPublicKeyInfo, every EC and EdDSA one
_KEYS: BoundedMemo[bytes, tuple[str, ...]] = BoundedMemo(1024, max_key_len=_KEY_MEMO_MAX)


def _key_verdict(leaf: x509.Certificate) -> tuple[str, ...]:
    """``()`` for an acceptable key, else (detail, code) of the refusal."""
    try:
        key = leaf.public_key()
    except Exception:  # noqa: BLE001 - UnsupportedAlgorithm, an invalid point, a bad encoding
        return ("the certificate's public key cannot be read", "certificate_malformed")
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            return (
                f"RSA key of {key.key_size} bits is below the {MIN_RSA_BITS}-bit minimum",
                "weak_key",
            )
        if key.key_size % 8:  # CA/B BR 6.1.5; no key generator in use makes such a modulus
            return (
                f"RSA modulus of {key.key_size} bits is not a whole number of octets",
                "weak_key",
            )
        return ()
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, _STRONG_CURVES):
            return (f"elliptic curve {key.curve.name} is not allowed", "weak_key")
        return ()
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return ()
    return (f"{type(key).__name__} keys are not allowed", "weak_key")


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
        "serial between 1 and 20 octets",
        "certificate_malformed",
        "a certificate's serial number is empty or longer than 20 octets (RFC 5280 4.1.2.2)",
    ),
    ("serial number cannot be negative", "certificate_malformed", "a serial number is negative"),
    ("non-empty Issuer", "certificate_malformed", "a certificate has an empty issuer name"),
    (
        "mismatch between signatureAlgorithm",
        "certificate_malformed",
        "a certificate's signature algorithm differs from the one in its signed part",
    ),
    (
        "must be UtcTime",
        "certificate_malformed",
        "a certificate's validity dates are not encoded as RFC 5280 4.1.2.5 requires",
    ),
    (
        "incorrect criticality",
        "certificate_malformed",
        "a certificate marks an extension critical that must not be, or the reverse",
    ),
    (
        "prohibited extension",
        "certificate_malformed",
        "a client certificate carries an extension only a CA may carry (name constraints)",
    ),
    (
        "Neither EKU nor anyEKU",
        "invalid_usage",
        "a CA's extended key usage does not allow client authentication",
    ),
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
    # An extension whose DER does not parse (an empty extKeyUsage, a truncated
    # authorityInfoAccess): cryptography reads extensions only when the policy asks.
    ("ASN.1 parsing error", "certificate_malformed", "a certificate field cannot be parsed"),
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
    facts: LeafFacts | None = None,
) -> list[x509.Certificate]:
    """Return the validated chain (leaf first, ending at the anchor) or raise CertificateInvalid.

    ``intermediates`` are what the client presented, ``configured`` the operator's known
    intermediates; only those ``select_intermediates`` keeps reach the path builder.
    ``anchors`` (the store's certificates) name the cause of a failure (an anchor outside
    its validity window is ``certificate_expired``/``not_yet_valid``) and tell whether a
    validated intermediate may be vouched for (``_vouch``): without them, none is.
    A validity failure is retried once with the clock moved by ``clock_skew_s`` in the
    forgiving direction, so skew only ever costs time on the failure path.

    ``facts``, the leaf's DER as ``_leafder.read_leaf`` found it, lets the verifier skip the
    Python validators when the DER shows they would pass (the same answer, sooner).
    """
    leaf_tbs = facts.tbs if facts is not None else None
    candidates, deeper = _select(leaf, intermediates, configured, max_depth, anchors, leaf_tbs)
    ee_policy = _EE_POLICY
    if facts is not None and profile_passes(facts):
        ee_policy = _EE_POLICY_CHECKED
    try:
        chain = _verify_vouched(store, leaf, candidates, at, max_depth, ee_policy)
        if chain is None:
            chain = _verify(store, leaf, candidates, at, max_depth, ee_policy)
            _vouch(store, chain, candidates, max_depth, anchors)
    except VerificationError as exc:
        err = _map_error(str(exc), (leaf, *candidates), at, anchors)
        if err.code == "chain_too_long" and "max depth" in str(exc) and not deeper:
            err = _depth_error(store, leaf, candidates, at, max_depth, err, anchors)
    else:
        return _accepted(chain)
    if clock_skew_s and err.code in ("certificate_expired", "certificate_not_yet_valid"):
        shift = timedelta(seconds=clock_skew_s)
        retry_at = at - shift if err.code == "certificate_expired" else at + shift
        try:
            chain = _verify(store, leaf, candidates, retry_at, max_depth, ee_policy)
        except VerificationError:
            pass
        else:
            return _accepted(chain)
    raise err


def _accepted(chain: list[x509.Certificate]) -> list[x509.Certificate]:
    """``chain``, once the rules cryptography's verifier leaves to mtlsauth hold for it (the
    CAs' RSA moduli, name constraints on the names an identity is read from)."""
    _check_ca_keys(chain)
    check_identity_name_constraints(chain)
    return chain


_WHOLE_OCTETS: ObjectTable[tuple[x509.Certificate, bool]] = ObjectTable(256)


def _check_ca_keys(chain: Sequence[x509.Certificate]) -> None:
    """Refuse a CA on the validated path (the anchor included) whose RSA modulus is not a
    whole number of octets (CA/B BR 6.1.5), which cryptography's verifier does not check:
    ``untrusted_issuer``, as for a CA key that is too weak."""
    for ca in chain[1:]:
        known = _WHOLE_OCTETS.get(id(ca))  # the same CA objects, request after request
        if known is None or known[0] is not ca:
            known = (ca, whole_octets(ca))
            _WHOLE_OCTETS.put(id(ca), known)
        if not known[1]:
            raise CertificateInvalid(
                "an issuing CA's RSA modulus is not a whole number of octets",
                code="untrusted_issuer",
            )


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
    ee_policy: ExtensionPolicy = _EE_POLICY,
) -> list[x509.Certificate]:
    verifier = _client_verifier(store, at, max_depth, ee_policy)
    try:
        return verifier.verify(leaf, list(intermediates)).chain
    except VerificationError:
        raise
    except Exception as exc:  # noqa: BLE001 - fail closed on anything the engine throws
        raise VerificationError(f"verifier error: {type(exc).__name__}") from None


# --- intermediates already validated up to an anchor ------------------------------------------
#
# Most clients of a deployment share one intermediate, and every uncached validation checks
# its signature by the root again: for P-256, a third of the whole cost. Once cryptography has
# validated a path leaf -> I -> root, every check it made on I and on the root is known to
# pass, except the two that depend on the next leaf or the clock (cryptography's
# ``build_chain_inner`` and ``Policy.valid_issuer``, read for this):
#
# - what it checks of I as the leaf's issuer (I's CA profile at depth 0, I's validity, I's key
#   and the leaf's signature algorithm, the leaf's signature, I's name constraints on the
#   leaf's SANs) it checks again when I is the trust anchor: a store's certificates are held
#   to the same ``valid_issuer`` as any other issuer;
# - of the root, everything is static for a given I (its CA profile at depth 1, pathLen, key
#   algorithm, I's signature algorithm and signature, the depth limit) except its validity,
#   checked here at the verifier's second, and its name constraints, which apply to the next
#   leaf's SANs: a root with a NameConstraints extension is never vouched for.
#
# So when a path ends leaf -> I -> root, I is remembered against that root, for that store
# object (a reload builds a new store and starts afresh). A later leaf that presents (or is
# configured with) I is first validated against a store of I alone; when that passes and the
# root is valid at the same second, the path leaf -> I -> root is one cryptography would accept.
# Anything else (I not vouched, the leaf refused, the root outside its validity) falls through
# to the full validation, which alone decides every refusal and its message.
#
# Accepting is not enough: it must be the path the full validation returns, since mtlsauth's
# own checks run on that one path (name constraints on subject names, revocation of each CA,
# the cache lifetime). cryptography's builder tries a certificate's potential issuers in one
# order (trust anchors named as its issuer first, then the candidates so named, both sorted
# with a matching key identifier first) and returns the first path that validates; a second
# way up (a copy of the root with name constraints, an anchor or a cross-signed copy of I, a
# cross-certificate of the root) may be the one it takes. So the shortcut answers only where
# the builder has a single way up at each step, which it then takes exactly as checked here:
#
# - the root is the only anchor named as I's issuer, and no anchor is named as I (both fixed
#   for a store: checked once, when I is vouched for, ``_vouch``);
# - no other candidate of the request is named as I or as I's issuer (``_single_way_up``).


class _Vouched:
    """The intermediates validated up to an anchor, for one trust store object."""

    __slots__ = ("entries", "names", "store")

    def __init__(self, store: Store, anchors: Sequence[x509.Certificate]) -> None:
        self.store = store
        # anchor subject name (DER) -> how many anchors bear it (None: one is unreadable)
        self.names = _anchor_names(anchors)
        # id(intermediate) -> its entry, which holds the intermediate: a match by ``is`` is
        # that very certificate (presented certificates are remembered by their bytes, so
        # they are the same objects request after request; hashing a certificate would cost
        # more than a microsecond per look-up).
        self.entries: dict[int, _VouchedEntry] = {}


class _VouchedEntry:
    __slots__ = ("built", "intermediate", "not_after", "not_before", "root")

    def __init__(
        self,
        intermediate: x509.Certificate,
        root: x509.Certificate,
        not_before: datetime,
        not_after: datetime,
    ) -> None:
        self.intermediate = intermediate
        self.root = root
        self.not_before = not_before  # the root's validity window
        self.not_after = not_after
        # (second, the next one, max_depth, ee_policy, verifier of a store of the
        # intermediate alone), swapped whole so threads never see half of it
        self.built: tuple[datetime, datetime, int, ExtensionPolicy, ClientVerifier] | None = None


_VOUCHED_MAX = 256  # intermediates per store; past that the store's table starts afresh
_VOUCHED_STORES = 8  # stores with a table (a process may hold several verifiers, and reloads)
# id(store) -> its table; the table holds the store, so the id cannot be reused while listed.
_VOUCHED: dict[int, _Vouched] = {}


def _vouched_for(store: Store, anchors: Sequence[x509.Certificate]) -> _Vouched:
    table = _VOUCHED.get(id(store))
    if table is None or table.store is not store:
        table = _Vouched(store, anchors)
        while len(_VOUCHED) >= _VOUCHED_STORES:
            try:
                del _VOUCHED[next(iter(_VOUCHED))]  # the oldest
            except (KeyError, RuntimeError, StopIteration):  # another thread got there first
                break
        _VOUCHED[id(store)] = table
    return table


def _vouch(
    store: Store,
    chain: Sequence[x509.Certificate],
    candidates: Sequence[x509.Certificate],
    max_depth: int,
    anchors: Sequence[x509.Certificate],
) -> None:
    """Remember the intermediate of a validated path leaf -> I -> root (see above).

    ``anchors`` are the store's certificates: I is vouched for only when the root is the one
    anchor named as I's issuer and no anchor is named as I.
    """
    if len(chain) != 3 or max_depth < 1 or not anchors:
        return
    intermediate, root = chain[1], chain[2]
    if not any(c is intermediate for c in candidates):
        return
    try:
        if _constraints(root) is not None:  # memoised per CA, as the name-constraint check reads it
            return
        entry = _VouchedEntry(
            intermediate, root, root.not_valid_before_utc, root.not_valid_after_utc
        )
        own = _candidate(intermediate)  # its names, as path building read them
    except Exception:  # noqa: BLE001 - an anchor it cannot read is simply never vouched for
        return
    table = _vouched_for(store, anchors)
    names = table.names
    if names is None or names.get(own.issuer) != 1 or own.subject in names:
        return  # a second anchor the builder may take instead (see above)
    if len(table.entries) >= _VOUCHED_MAX:
        table.entries.clear()
    table.entries[id(intermediate)] = entry


def _anchor_names(anchors: Sequence[x509.Certificate]) -> dict[bytes, int] | None:
    """How many anchors bear each subject name (DER, as the path builder compares them).

    None when one cannot be read: which names it bears is unknown, so nothing is vouched for.
    """
    names: dict[bytes, int] = {}
    for anchor in anchors:
        try:
            name = _tbs_names(anchor)[1]
        except Exception:  # noqa: BLE001 - cannot tell which name it bears
            return None
        names[name] = names.get(name, 0) + 1
    return names


def _single_way_up(
    intermediate: x509.Certificate,
    root: x509.Certificate,
    candidates: Sequence[x509.Certificate],
) -> bool:
    """No candidate but ``intermediate`` is named as it or as its issuer (see above).

    A copy of the root itself is no other way: the builder tries the anchor before a
    candidate with the same key identifier, and either path is the same certificates.
    """
    if len(candidates) == 1:
        return True
    try:
        own = _candidate(intermediate)
        for cert in candidates:
            if cert is intermediate:
                continue
            subject = _candidate(cert).subject
            if subject == own.subject or (subject == own.issuer and cert != root):
                return False
    except Exception:  # noqa: BLE001 - a name it cannot read: the full validation decides
        return False
    return True


def _verify_vouched(
    store: Store,
    leaf: x509.Certificate,
    candidates: Sequence[x509.Certificate],
    at: datetime,
    max_depth: int,
    ee_policy: ExtensionPolicy,
) -> list[x509.Certificate] | None:
    """The path leaf -> I -> root when a vouched-for I validates the leaf; None otherwise."""
    table = _VOUCHED.get(id(store))
    if table is None or table.store is not store or max_depth < 1:
        return None
    entries = table.entries
    for intermediate in candidates:
        entry = entries.get(id(intermediate))
        if entry is None or entry.intermediate is not intermediate:
            continue
        built = entry.built
        try:
            second, following = _whole_second(at, built)
            if not entry.not_before <= second <= entry.not_after:
                continue
        except TypeError:  # a naive time: the full validation reads it as it does
            return None
        if not _single_way_up(intermediate, entry.root, candidates):
            return None  # the full validation may take another path (see above)
        # One attempt at most (one signature), then the full validation: a client that
        # presents several vouched-for CAs cannot make the shortcut cost more than that.
        try:
            if (
                built is None
                or built[0] is not second
                or built[2] != max_depth
                or built[3] is not ee_policy
            ):
                verifier = (
                    PolicyBuilder()
                    .store(Store([intermediate]))
                    .time(second)
                    .max_chain_depth(max_depth)
                    .extension_policies(ca_policy=_CA_POLICY, ee_policy=ee_policy)
                    .build_client_verifier()
                )
                entry.built = (second, following, max_depth, ee_policy, verifier)
            else:
                verifier = built[4]
            chain = verifier.verify(leaf, []).chain
        except Exception:  # noqa: BLE001 - any doubt: the full validation decides
            return None
        return [*chain, entry.root] if len(chain) == 2 else None
    return None


# A verifier's time is frozen when it is built. cryptography validates at whole seconds (the
# microseconds of the time are dropped: a certificate that expires at 12:00:00 is valid at
# 12:00:00.999999), so the verifier built for one second answers for every moment of it. The
# last one built is kept (one tuple, swapped whole, so threads never see half of it) and
# reused while the store, the second, the depth and the leaf policy are the same: building
# one costs five calls into cryptography per validation.
_LAST_VERIFIER: tuple[Store, datetime, datetime, int, ExtensionPolicy, ClientVerifier] | None = None
_ONE_SECOND = timedelta(seconds=1)


_LAST_SECOND = datetime.max.replace(microsecond=0)


def _utc_second(at: datetime) -> tuple[datetime, datetime]:
    """The whole second of ``at`` in UTC, and the next one: the window a verifier built for
    it answers for. In UTC, so that comparing a later ``at`` with it is a comparison of
    moments: two times of one zone compare by their wall clock alone, and the hour a clock
    goes back happens twice. A naive ``at`` stays naive (compared with an aware window, it
    raises ``TypeError``). The last second of the calendar has no next one: its window ends
    at the last microsecond, which is then computed again rather than reused."""
    tz = at.tzinfo
    if tz is not None and tz is not timezone.utc:
        at = at.astimezone(timezone.utc)
    second = at.replace(microsecond=0)
    if second.replace(tzinfo=None) == _LAST_SECOND:
        return second, second.replace(microsecond=999999)
    return second, second + _ONE_SECOND


def _whole_second(
    at: datetime, built: tuple[datetime, datetime, int, ExtensionPolicy, ClientVerifier] | None
) -> tuple[datetime, datetime]:
    """``at`` without its microseconds, in UTC, and the next second: the window a verifier
    was ``built`` for when ``at`` falls in it, the very objects, so ``is`` tells it is the
    same; else computed (``datetime.replace`` costs about 0.7 µs). ``TypeError`` for a naive
    ``at`` compared with a built one."""
    if built is not None and built[0] <= at < built[1]:
        return built[0], built[1]
    return _utc_second(at)


def _client_verifier(
    store: Store, at: datetime, max_depth: int, ee_policy: ExtensionPolicy
) -> ClientVerifier:
    global _LAST_VERIFIER
    last = _LAST_VERIFIER
    if last is not None and last[0] is store and last[4] is ee_policy and last[3] == max_depth:
        try:
            if last[1] <= at < last[2]:
                return last[5]
        except TypeError:  # a naive time: built for below, as cryptography reads it
            pass
    second, following = _utc_second(at)
    verifier = (
        PolicyBuilder()
        .store(store)
        .time(second)
        .max_chain_depth(max_depth)
        .extension_policies(ca_policy=_CA_POLICY, ee_policy=ee_policy)
        .build_client_verifier()
    )
    _LAST_VERIFIER = (store, second, following, max_depth, ee_policy, verifier)
    return verifier


_CALENDAR_START = datetime.min.replace(tzinfo=timezone.utc)
_CALENDAR_END = datetime.max.replace(tzinfo=timezone.utc)


def shifted(moment: datetime, delta: timedelta) -> datetime:
    """``moment + delta`` held to the calendar: a certificate's notAfter of
    99991231235959Z (RFC 5280 4.1.2.5: no well-defined expiration date) plus a clock skew
    is the end of the calendar, not an ``OverflowError`` (likewise its start, backwards)."""
    try:
        return moment + delta
    except OverflowError:
        end = _CALENDAR_END if delta > timedelta(0) else _CALENDAR_START
        return end if moment.tzinfo is not None else end.replace(tzinfo=None)


def check_pinned_leaf(leaf: x509.Certificate, *, at: datetime, clock_skew_s: float) -> datetime:
    """The rules for a pinned certificate (accepted by its exact bytes, without a CA): the
    validity window, no CA certificate, clientAuth when an EKU is present, the profile and
    the key strength. Returns the moment the pin stops being valid.

    Raises:
        CertificateInvalid: the pinned certificate breaks one of these rules.
    """
    skew = timedelta(seconds=clock_skew_s)
    until = shifted(leaf.not_valid_after_utc, skew)
    if at > until:
        raise CertificateInvalid("pinned certificate expired", code="certificate_expired")
    if at < shifted(leaf.not_valid_before_utc, -skew):
        raise CertificateInvalid(
            "pinned certificate not yet valid", code="certificate_not_yet_valid"
        )
    try:
        bc = leaf.extensions.get_extension_for_class(x509.BasicConstraints).value
        if bc.ca:
            raise CertificateInvalid(
                "a CA certificate cannot be a client certificate", code="invalid_usage"
            )
    except x509.ExtensionNotFound:
        pass
    try:
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH not in eku:
            raise CertificateInvalid(
                "extended key usage does not allow client authentication", code="invalid_usage"
            )
    except x509.ExtensionNotFound:
        pass
    except ValueError:
        raise CertificateInvalid("unparsable extensions", code="certificate_malformed") from None
    check_leaf_extensions(leaf)
    check_leaf_profile(leaf)
    check_leaf_key(leaf)
    return until


# The extensions cryptography's end-entity policy (``_EE_POLICY``) knows, by OID (DER
# content), and whether each must not be critical; any other critical extension is
# "unaccounted-for", and a name constraints extension is prohibited in an end entity.
_EE_KNOWN: dict[bytes, bool] = {
    b"\x2b\x06\x01\x05\x05\x07\x01\x01": True,  # authorityInfoAccess: non-critical
    b"\x55\x1d\x23": False,  # authorityKeyIdentifier (relaxed here: either)
    b"\x55\x1d\x0e": False,  # subjectKeyIdentifier
    b"\x55\x1d\x0f": False,  # keyUsage
    _SAN_OID: False,  # subjectAltName (criticality: ``_leaf_san``)
    b"\x55\x1d\x13": False,  # basicConstraints
    b"\x55\x1d\x25": True,  # extKeyUsage: non-critical
}


def unaccounted_critical(cert: x509.Certificate, also: frozenset[bytes] = frozenset()) -> bool:
    """Whether ``cert`` marks critical an extension the end-entity rules do not know (nor
    one of ``also``, OID contents a caller knows besides). Raises ValueError on bad DER."""
    return any(
        critical and oid not in _EE_KNOWN and oid not in also
        for oid, critical in _extension_flags(cert).items()
    )


def check_leaf_extensions(leaf: x509.Certificate) -> None:
    """The extension rules the path validation's end-entity policy applies, for certificates
    that skip it (pins): an unknown critical extension is ``invalid_usage``, name constraints
    or a critical authorityInfoAccess or extKeyUsage ``certificate_malformed``, with the
    detail the path validation gives (``_MESSAGE_CODES``)."""
    for oid, critical in _extension_flags(leaf).items():
        if oid == _NAME_CONSTRAINTS_OID:
            raise _map_error("prohibited extension", (), datetime.min)
        must_not_be_critical = _EE_KNOWN.get(oid)
        if must_not_be_critical is None:
            if critical:
                raise _map_error("unaccounted-for critical", (), datetime.min)
        elif critical and must_not_be_critical:
            raise _map_error("incorrect criticality", (), datetime.min)


def missing_issuer_hint(
    leaf: x509.Certificate, intermediates: Sequence[x509.Certificate], snapshot: TrustSnapshot
) -> str | None:
    """Why a chain found no trusted CA, as far as names tell; for the operator only.

    Walks up by issuer name through the presented and configured intermediates. A name that
    is neither an anchor nor a known intermediate is where the chain stops: a client of
    another CA, or an intermediate that was not passed on (nginx, Caddy and Python's ``ssl``
    before 3.13 hand over the leaf only). A leaf whose issuer *is* an anchor by name but
    still fails was signed by another key with that name. Either hint names CAs of the
    trust store, or confirms a name the client chose: it goes to the log, never into the
    refusal the client gets (whose answer must not depend on whether a guess was right).

    Names are compared as the path builder links them, as DER: cryptography's does, byte
    for byte. A name that equals a known CA's only once case, spacing, string type or RDN
    order are set aside is said to be spelled otherwise, since no key can make it chain.
    """
    cas = [c for c in snapshot.certificates if c not in snapshot.end_entities]
    anchors = {_tbs_names(c)[1] for c in cas}
    by_subject = {_tbs_names(c)[1]: c for c in intermediates}
    # Not through the memo that policies share: the intermediates are the client's choice.
    loose = {_loose_key(c.subject): c for c in (*intermediates, *cas)}
    if _tbs_names(leaf)[0] in anchors:
        name = leaf.issuer.rfc4514_string() or "(empty name)"
        return (
            f"a CA named {name} is in the trust store, but this certificate does not "
            "verify against it (a CA re-issued with a new key, or a look-alike)"
        )
    cert = leaf
    for _ in range(_HINT_DEPTH):
        issuer = _tbs_names(cert)[0]
        if issuer in anchors:
            return None  # the names line up: the failure is something else
        nxt = by_subject.get(issuer)
        if nxt is None or _tbs_names(nxt)[0] == _tbs_names(nxt)[1]:
            name = cert.issuer.rfc4514_string() or "(empty name)"
            other = loose.get(_loose_key(cert.issuer))
            if other is not None:
                known = other.subject.rfc4514_string() or "(empty name)"
                return (
                    f"the chain stops at {name}, which is the name of the known CA {known} "
                    "spelled otherwise (case, spacing, string type or RDN order): a "
                    "certificate chains only to a CA whose name it repeats byte for byte"
                )
            return (
                f"the chain stops at {name}, neither in the trust store nor a known "
                "intermediate: a missing intermediate (configure intermediates=), or a "
                "client of another CA"
            )
        cert = nxt
    return None


_HINT_DEPTH = 10


def _loose_key(name: x509.Name) -> object:
    """``name`` as the ``subjects`` allow-list compares it, without its memo."""
    return _name_view.__wrapped__(name)[0]
