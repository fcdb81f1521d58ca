"""Which presented certificates reach the path builder: a defence against hostile chains.

Only presented certificates that can be on a path are kept: no duplicates, self-issued or
non-CA certificates; only shortest name paths from the leaf to a trust anchor; at most
``MAX_ISSUER_CANDIDATES`` CAs per level; signatures checked from the anchor down when more
than two CAs remain (see ``_pathvalidation``).
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from mtlsauth._errors import CertificateInvalid
from mtlsauth._memo import ObjectTable
from mtlsauth._tbs import _key_ids, _tbs_names

MAX_ISSUER_CANDIDATES = 3  # CAs kept per level of the path (cross-signing, key rollover)
_SIMPLE_CHAIN = 2  # up to this many chosen CAs, the path builder's own search is cheap
MAX_RSA_BITS = 8192
"""The largest RSA modulus of a CA certificate a client presents (as Go's TLS stack holds)."""
MAX_RSA_EXPONENT_BITS = 33  # 65537 is 17 bits; BoringSSL refuses exponents over 33 bits
MAX_DSA_BITS = 3072


class _Candidate:
    """A certificate's names and key as DER slices; extensions are parsed only when needed."""

    __slots__ = ("_cheap", "_ids", "cert", "issuer", "spki", "subject", "tbs")

    def __init__(self, cert: x509.Certificate, tbs: bytes | None = None) -> None:
        self.cert = cert
        if tbs is None:
            tbs = cert.tbs_certificate_bytes
        self.tbs = tbs
        self.issuer, self.subject, self.spki = _tbs_names(cert, tbs)
        self._ids: tuple[bool, bytes | None, bytes | None] | None = None
        self._cheap: bool | None = None

    def cheap(self) -> bool:
        """Whether a signature check with this certificate's key costs what one with a
        genuine CA's key does (``cheap_to_verify``)."""
        if self._cheap is None:
            self._cheap = cheap_to_verify(self.cert)
        return self._cheap

    def ids(self) -> tuple[bool, bytes | None, bytes | None]:
        """(usable as a CA, subjectKeyIdentifier, authorityKeyIdentifier keyIdentifier)."""
        if self._ids is None:
            try:
                self._ids = (_usable_ca(self.cert), *_key_ids(self.cert))
            except Exception:  # noqa: BLE001 - unreadable extensions: not on any valid path
                self._ids = (False, None, None)
        return self._ids


# Candidates by certificate object, the object held in the value so that a match by ``is`` is
# the same certificate: the trust store's and the configured certificates are the same
# objects on every request, and so are presented intermediates that ``_encoding`` remembers
# by their bytes. Saves re-encoding each TBSCertificate (about 5 us) per request.
# Bounded in count and size: presented certificates reach it before anything is verified.
_CANDIDATES: ObjectTable[_Candidate] = ObjectTable(256)
_CANDIDATE_MAX_TBS = 8192


def _candidate(cert: x509.Certificate) -> _Candidate:
    known = _CANDIDATES.get(id(cert))
    if known is not None and known.cert is cert:
        return known
    cand = _Candidate(cert)
    if len(cand.tbs) <= _CANDIDATE_MAX_TBS:
        _CANDIDATES.put(id(cert), cand)
    return cand


def cheap_to_verify(cert: x509.Certificate) -> bool:
    """Whether checking a signature with ``cert``'s key costs what a genuine CA's key does.

    A client's CA certificate is used to check a signature (the leaf's, or its own when it
    is self-issued) before anything vouches for it. The cost of an RSA check grows with the
    public exponent's length: one of thousands of bits costs a private-key operation, tens
    of genuine verifications. No CA has such a key: RSA moduli over ``MAX_RSA_BITS``,
    exponents over ``MAX_RSA_EXPONENT_BITS`` bits and DSA keys over ``MAX_DSA_BITS`` are
    refused (the path builder accepts no DSA CA at all), as is a key that cannot be read.
    """
    try:
        key = cert.public_key()
    except Exception:  # noqa: BLE001 - an unreadable key checks no signature either
        return False
    if isinstance(key, rsa.RSAPublicKey):
        return (
            key.key_size <= MAX_RSA_BITS
            and key.public_numbers().e.bit_length() <= MAX_RSA_EXPONENT_BITS
        )
    if isinstance(key, dsa.DSAPublicKey):
        return key.key_size <= MAX_DSA_BITS
    return True  # EC keys on the named curves cryptography reads, Ed25519, Ed448


# rsaEncryption and id-RSASSA-PSS, spelt out: every cryptography release this supports has
# the OIDs, not every one names them both.
_RSA_KEY_OIDS = (
    x509.ObjectIdentifier("1.2.840.113549.1.1.1"),
    x509.ObjectIdentifier("1.2.840.113549.1.1.10"),
)


def whole_octets(cert: x509.Certificate) -> bool:
    """False for an RSA key whose modulus is not a whole number of octets (CA/B BR 6.1.5
    requires a multiple of 8 bits); True for any other key, and for a key that cannot be read
    (which verifies no signature, so no path the verifier returns holds one)."""
    try:
        if cert.public_key_algorithm_oid not in _RSA_KEY_OIDS:
            return True
        key = cert.public_key()
    except Exception:  # noqa: BLE001 - see above
        return True
    return not isinstance(key, rsa.RSAPublicKey) or key.key_size % 8 == 0


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
    rollovers: Sequence[_Candidate] = (),
) -> list[_Candidate]:
    """The chosen certificates whose signatures lead to a trust anchor, checked from the top.

    An issuer is tried only once per certificate, each level only if the level above kept
    something, so look-alikes cost one failed signature check each, at the first level where
    they part from a genuine chain. ``rollovers`` (self-issued CAs, at most
    ``MAX_SELF_ISSUED``) are checked at the level of their name, after the certificates
    that bear it: each leads to an anchor when a kept certificate (or anchor) of its name
    signed it, and then may sign the level below.
    """
    kept: dict[bytes, list[x509.Certificate]] = {n: list(a) for n, a in anchors.items()}
    by_level: dict[int, list[_Candidate]] = {}
    for c in chosen:
        by_level.setdefault(dist[c.subject], []).append(c)
    rolled: dict[int, list[_Candidate]] = {}
    for c in rollovers:
        rolled.setdefault(dist[c.subject], []).append(c)
    out: list[_Candidate] = []
    for level in sorted({*by_level, *rolled}):
        found = False
        for c in by_level.get(level, ()):
            above = kept.get(c.issuer, [])
            if any(_signed_by(c.cert, i) for i in above[:MAX_ISSUER_CANDIDATES]):
                kept.setdefault(c.subject, []).append(c.cert)
                out.append(c)
                found = True
        # A rollover signed by a certificate of its name; then one signed by such a
        # rollover (old key -> new key -> newer key): each is checked at most once against
        # the certificates of its name, and once more against the rollovers just kept.
        pending, fresh = rolled.get(level, []), []
        for c in pending:
            above = kept.get(c.issuer, [])[:MAX_ISSUER_CANDIDATES]
            if any(_signed_by(c.cert, i) for i in above):
                fresh.append(c)
        for c in pending:
            if c not in fresh and any(_signed_by(c.cert, r.cert) for r in fresh):
                fresh.append(c)
        for c in fresh:
            kept.setdefault(c.issuer, []).append(c.cert)
            out.append(c)
            found = True
        if not found and level > 0:
            break
    return [c for c in (*chosen, *rollovers) if c in out]


def _select(
    leaf: x509.Certificate,
    presented: Sequence[x509.Certificate],
    configured: Sequence[x509.Certificate],
    max_depth: int,
    anchors: Sequence[x509.Certificate] = (),
    leaf_tbs: bytes | None = None,
) -> tuple[list[x509.Certificate], bool]:
    """``select_intermediates``, and whether the shortest path is longer than ``max_depth``.

    A hostile client can present many look-alike CAs, or CAs that name each other in a
    circle, or CAs whose keys are costly to use, to make path building expensive. Kept: CA
    certificates (basicConstraints cA) whose key is ``cheap_to_verify`` (presented ones;
    configured ones are trusted), that are not self-signed (a root comes from the trust store, never from the client;
    at most ``MAX_SELF_ISSUED`` self-issued ones are checked for a key-rollover link), one
    per (subject, issuer, key), linked by issuer -> subject names from the leaf and, when the
    anchors are known, on a shortest name path to one of them (each certificate one step
    closer to an anchor: no loops, no dead ends); at most ``MAX_ISSUER_CANDIDATES`` per
    certificate (a candidate whose subjectKeyIdentifier contradicts the child's
    authorityKeyIdentifier cannot be its issuer, as OpenSSL also holds), at most
    ``max_depth + 1`` links above the leaf and ``2 * (max_depth + 1)`` certificates in all.
    A self-issued CA is no step closer to an anchor by names: in the general case it stays
    when its name is on the chosen path (the leaf's issuer's, or one a chosen CA bears or
    names as issuer) and a certificate of its name, or an anchor, signed it (``_grounded``).
    Configured intermediates come before presented ones. ``leaf_tbs`` is the leaf's
    TBSCertificate when the caller has it already (as in its DER: cryptography reads DER
    only, so those are the bytes ``tbs_certificate_bytes`` gives).
    """
    # Duplicates by TBSCertificate: re-encodings of one certificate (see _identity) add nothing.
    pool: list[_Candidate] = []
    seen: set[bytes] = {leaf.tbs_certificate_bytes if leaf_tbs is None else leaf_tbs}
    self_issued_checked = 0
    rollovers: list[_Candidate] = []  # self-issued, not self-signed: a CA's key rollover
    for i, cert in enumerate((*configured, *presented)):
        try:
            cand = _candidate(cert)
        except Exception:  # noqa: BLE001, S112 - unreadable: it cannot be on a valid path
            continue
        if cand.tbs in seen:
            continue
        seen.add(cand.tbs)
        if i >= len(configured) and not cand.cheap():
            continue  # a key no CA has, whose every use would cost tens of verifications
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
                rollovers.append(cand)
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
        # A throwaway copy: reading the key identifiers makes cryptography cache the parsed
        # extensions inside the certificate object, and the identity keeps the leaf.
        frontier = [_Candidate(x509.load_der_x509_certificate(leaf.public_bytes(Encoding.DER)))]
    except Exception:  # noqa: BLE001 - the path builder reports the unreadable leaf
        return [], False
    leaf_issuer = frontier[0].issuer
    known = _anchor_distances(pool, anchors)
    if known is None:  # anchors unknown: name links from the leaf only
        chosen, depth, frontier = _walk(frontier, pool, levels, 2 * levels)
        deeper = depth >= levels and any(
            c.subject == f.issuer and c not in chosen for f in frontier for c in pool
        )
        return [c.cert for c in chosen], deeper
    dist, by_subject = known
    start = dist.get(frontier[0].issuer)
    if start is None:
        return [], False  # no name path to an anchor
    # Only certificates one step closer to an anchor: shortest name paths, no loops. A
    # self-issued CA (a key rollover) is no step closer; it stays beside the certificates
    # of its name on the path, or beside the anchor the leaf names (``_on_path``).
    pool = [c for c in pool if c.issuer in dist and dist[c.issuer] < dist.get(c.subject, 0)]
    if start > max_depth:
        # Too long by names. Say so only if signatures back it, down to the leaf.
        walked = _walk(frontier, pool, start, 2 * start)[0]
        chosen = _grounded(walked, dist, by_subject, _on_path(rollovers, leaf_issuer, walked))
        if any(c.subject == frontier[0].issuer and _signed_by(leaf, c.cert) for c in chosen):
            raise CertificateInvalid("chain is longer than max_depth allows", code="chain_too_long")
        return [], False
    chosen = _walk(frontier, pool, start, 2 * start)[0] if start else []
    rolled = _on_path(rollovers, leaf_issuer, chosen)
    if rolled or len(chosen) > _SIMPLE_CHAIN:
        chosen = _grounded(chosen, dist, by_subject, rolled)
    return [c.cert for c in chosen], False


def _on_path(
    rollovers: Sequence[_Candidate], leaf_issuer: bytes, chosen: Sequence[_Candidate]
) -> list[_Candidate]:
    """The self-issued CAs whose name is on the chosen name path: the leaf's issuer, or a
    name a chosen certificate bears or is issued by (an anchor's, at the top)."""
    if not rollovers:
        return []
    names = {leaf_issuer, *(c.subject for c in chosen), *(c.issuer for c in chosen)}
    return [c for c in rollovers if c.subject in names]


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
