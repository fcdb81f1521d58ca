"""Differential conformance of path validation: one chain, three judges.

A ``Spec`` describes a client-certificate chain along the axes that matter for client
authentication (key usage and EKU, basicConstraints and pathLen, name constraints with and
without a SAN, validity edges, signature algorithms and key sizes, unknown critical and
duplicate extensions, self-issued, cross-signed and looping CAs, long chains, the anchor sent
along or not). ``build`` turns it into certificates; ``judge`` asks mtlsauth's ``Verifier``,
``openssl verify -x509_strict -purpose sslclient`` and cryptography's plain ``ClientVerifier``.

Every disagreement must match a row of ``DIFFERENCES``: a deliberate difference with its reason,
or a bug recorded as pending a fix. The table is printed in docs/security.md.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import ipaddress
import subprocess
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cryptography
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from fuzz import _der

Key = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
AT = dt.datetime(2030, 6, 1, 12, 0, 0, tzinfo=dt.timezone.utc)
MAX_DEPTH = 8
UNKNOWN_OID = x509.ObjectIdentifier("1.3.6.1.4.1.55555.1.1")

KEY_TYPES = ("ec256", "ec384", "rsa2048", "rsa1024", "ed25519")
HASHES = ("sha256", "sha384", "sha512", "sha1")


@functools.cache
def key_pool() -> dict[str, tuple[Key, ...]]:
    """A few keys of each type, made once per process (RSA keygen is the slow part)."""
    return {
        "ec256": tuple(ec.generate_private_key(ec.SECP256R1()) for _ in range(16)),
        "ec384": tuple(ec.generate_private_key(ec.SECP384R1()) for _ in range(2)),
        "rsa2048": tuple(rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2)),
        "rsa1024": (rsa.generate_private_key(public_exponent=65537, key_size=1024),),
        "ed25519": tuple(ed25519.Ed25519PrivateKey.generate() for _ in range(2)),
    }  # fmt: skip


@dataclass(frozen=True)
class CASpec:
    bc: str = "ok"  # ok | missing | ca_false | noncritical
    path_len: int | None = None
    ku: str = "ok"  # ok | no_kcs | missing
    eku: str = "none"  # none | client | server
    nc: str = "none"  # none | dns | email | ip | dirname | excluded_dns
    key: str = "ec256"
    expired: bool = False
    unknown_critical: bool = False


@dataclass(frozen=True)
class Spec:
    cas: tuple[CASpec, ...] = ()  # intermediates, root-side first
    root_path_len: int | None = None
    leaf_key: str = "ec256"
    sig_hash: str = "sha256"  # the issuing CA's signature on the leaf
    ku: str = "ds"  # none | ds | ke | ds_kcs | kcs
    ku_critical: bool = True
    eku: str = "client"  # client | server | any | both | none | codesign
    bc: str = "ee"  # absent | ee | ee_noncrit | ca
    san: str = "dns_in"  # none | dns_in | dns_out | email_in | email_out | ip_in | ip_out | uri
    san_critical: bool = False
    subject: str = "cn"  # cn | cn_out | email_in | email_out | o_only | empty
    aki: bool = True
    validity: str = "ok"  # ok | expired | not_yet | nb_edge | na_edge | na_past
    unknown_critical: bool = False
    duplicate: str = "none"  # none | eku | san | bc
    shape: str = "plain"  # plain | send_root | self_issued | cross | loop | own_root | anchor_inter
    version: int = 3


# -- building ------------------------------------------------------------------------------------
def _hash(name: str) -> hashes.HashAlgorithm:
    return {"sha256": hashes.SHA256(), "sha384": hashes.SHA384(), "sha512": hashes.SHA512(),
            "sha1": hashes.SHA1()}[name]  # fmt: skip


def _sign(builder: x509.CertificateBuilder, key: Key, sig_hash: str = "sha256") -> x509.Certificate:
    algo = None if isinstance(key, ed25519.Ed25519PrivateKey) else _hash(sig_hash)
    return builder.sign(key, algo)


def _ku(kind: str) -> x509.KeyUsage | None:
    flags = {
        "ds": {"digital_signature"},
        "ke": {"key_encipherment"},
        "ds_kcs": {"digital_signature", "key_cert_sign"},
        "kcs": {"key_cert_sign", "crl_sign"},
        "ok": {"digital_signature", "key_cert_sign", "crl_sign"},
        "no_kcs": {"digital_signature", "crl_sign"},
    }.get(kind)
    if flags is None:
        return None
    names = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
             "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")  # fmt: skip
    return x509.KeyUsage(**{n: n in flags for n in names})


_EKUS = {
    "client": [ExtendedKeyUsageOID.CLIENT_AUTH],
    "server": [ExtendedKeyUsageOID.SERVER_AUTH],
    "any": [ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE],
    "both": [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
    "codesign": [ExtendedKeyUsageOID.CODE_SIGNING],
}


def _nc(kind: str) -> x509.NameConstraints | None:
    if kind == "dns":
        return x509.NameConstraints([x509.DNSName("example.com")], None)
    if kind == "email":
        return x509.NameConstraints([x509.RFC822Name("example.com")], None)
    if kind == "ip":
        return x509.NameConstraints([x509.IPAddress(ipaddress.ip_network("192.0.2.0/24"))], None)
    if kind == "dirname":
        dn = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "payments")])
        return x509.NameConstraints([x509.DirectoryName(dn)], None)
    if kind == "excluded_dns":
        return x509.NameConstraints(None, [x509.DNSName("attacker.test")])
    if kind == "second":  # no generated leaf has a DNS name under it (``with_second_way``)
        return x509.NameConstraints([x509.DNSName("second.test")], None)
    return None


@dataclass
class _CA:
    cert: x509.Certificate
    key: Key


def _name(cn: str, org: str = "payments") -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org), x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    )  # fmt: skip


_counter = iter(range(1, 10**9))


def _make_ca(
    spec: CASpec,
    name: x509.Name,
    key: Key,
    issuer: _CA | None,
    sig_hash: str = "sha256",
    ski: bool = True,
) -> _CA:
    signer_key = issuer.key if issuer else key
    b = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.cert.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(next(_counter))
        .not_valid_before(AT - dt.timedelta(days=365))
        .not_valid_after(AT + dt.timedelta(days=365) if not spec.expired else AT - dt.timedelta(seconds=1))
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key()), False)
    )  # fmt: skip
    if ski:
        b = b.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    if spec.bc != "missing":
        is_ca = spec.bc != "ca_false"
        b = b.add_extension(
            x509.BasicConstraints(ca=is_ca, path_length=spec.path_len if is_ca else None),
            critical=spec.bc != "noncritical",
        )
    ku = _ku(spec.ku)
    if ku is not None:
        b = b.add_extension(ku, critical=True)
    if spec.eku in _EKUS:
        b = b.add_extension(x509.ExtendedKeyUsage(_EKUS[spec.eku]), critical=False)
    nc = _nc(spec.nc)
    if nc is not None:
        b = b.add_extension(nc, critical=True)
    if spec.unknown_critical:
        b = b.add_extension(x509.UnrecognizedExtension(UNKNOWN_OID, b"\x05\x00"), critical=True)
    return _CA(_sign(b, signer_key, sig_hash), key)


def _leaf_subject(kind: str) -> x509.Name:
    attrs = {
        "cn": [(NameOID.ORGANIZATION_NAME, "payments"), (NameOID.COMMON_NAME, "client.example.com")],
        "cn_out": [(NameOID.ORGANIZATION_NAME, "payments"), (NameOID.COMMON_NAME, "evil.attacker.test")],
        "email_in": [(NameOID.COMMON_NAME, "ops"), (NameOID.EMAIL_ADDRESS, "ops@example.com")],
        "email_out": [(NameOID.COMMON_NAME, "ops"), (NameOID.EMAIL_ADDRESS, "evil@attacker.test")],
        "o_only": [(NameOID.ORGANIZATION_NAME, "payments")],
        "empty": [],
    }[kind]  # fmt: skip
    return x509.Name([x509.NameAttribute(oid, v) for oid, v in attrs])


def _san(kind: str) -> list[x509.GeneralName]:
    return {
        "dns_in": [x509.DNSName("client.example.com")],
        "dns_out": [x509.DNSName("evil.attacker.test")],
        "email_in": [x509.RFC822Name("ops@example.com")],
        "email_out": [x509.RFC822Name("evil@attacker.test")],
        "ip_in": [x509.IPAddress(ipaddress.ip_address("192.0.2.7"))],
        "ip_out": [x509.IPAddress(ipaddress.ip_address("198.51.100.7"))],
        "uri": [x509.UniformResourceIdentifier("spiffe://example.com/ns/prod/sa/ledger")],
    }.get(kind, [])


def _validity(kind: str) -> tuple[dt.datetime, dt.datetime]:
    day = dt.timedelta(days=30)
    return {
        "ok": (AT - day, AT + day),
        "expired": (AT - 2 * day, AT - dt.timedelta(seconds=1)),
        "not_yet": (AT + dt.timedelta(seconds=1), AT + day),
        "nb_edge": (AT, AT + day),
        "na_edge": (AT - day, AT),
        "na_past": (AT - day, AT - dt.timedelta(seconds=1)),
    }[kind]


def _resign(cert: x509.Certificate, key: Key, tree: _der.Node) -> x509.Certificate:
    if not tree.children or len(tree.children) != 3:
        raise ValueError("not a certificate")
    tbs = _der.encode(tree.children[0])
    if isinstance(key, ed25519.Ed25519PrivateKey):
        sig = key.sign(tbs)
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        sig = key.sign(tbs, ec.ECDSA(cert.signature_hash_algorithm))  # type: ignore[arg-type]
    else:
        sig = key.sign(tbs, padding.PKCS1v15(), cert.signature_hash_algorithm)  # type: ignore[arg-type]
    tree.children[2] = _der.Node(0x03, b"\x00" + sig)
    return x509.load_der_x509_certificate(_der.encode(tree))


def _duplicate(cert: x509.Certificate, key: Key, oid: x509.ObjectIdentifier) -> x509.Certificate:
    """The same certificate with extension ``oid`` twice, re-signed (builders refuse this)."""
    tree = _der.parse(cert.public_bytes(serialization.Encoding.DER))
    assert tree is not None and tree.children
    exts = _der._extensions(tree.children[0])
    assert exts is not None and exts.children is not None
    target = _der.encode(_oid_node(oid))
    for ext in list(exts.children):
        if ext.children and _der.encode(ext.children[0]) == target:
            exts.children.append(_der.parse(_der.encode(ext)) or ext)
            break
    return _resign(cert, key, tree)


_SHA1_OIDS = {
    "1.2.840.10045.4.3.2": "1.2.840.10045.4.1",  # ecdsa-with-SHA256 -> ecdsa-with-SHA1
    "1.2.840.113549.1.1.11": "1.2.840.113549.1.1.5",  # sha256WithRSA -> sha1WithRSA
}


def _to_sha1(cert: x509.Certificate, key: Key) -> x509.Certificate:
    """The same certificate signed with SHA-1 (cryptography's builder refuses to make one)."""
    old = _oid_node(cert.signature_algorithm_oid).content
    sha1 = _SHA1_OIDS[cert.signature_algorithm_oid.dotted_string]
    new = _oid_node(x509.ObjectIdentifier(sha1)).content
    tree = _der.parse(cert.public_bytes(serialization.Encoding.DER))
    assert tree is not None and tree.children
    for node in _der._walk(tree, []):
        if node.tag == 0x06 and node.content == old:
            node.content = new
    tbs = _der.encode(tree.children[0])
    if isinstance(key, ec.EllipticCurvePrivateKey):
        sig = key.sign(tbs, ec.ECDSA(hashes.SHA1()))
    else:
        sig = key.sign(tbs, padding.PKCS1v15(), hashes.SHA1())  # type: ignore[union-attr]
    tree.children[2] = _der.Node(0x03, b"\x00" + sig)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return x509.load_der_x509_certificate(_der.encode(tree))


def _oid_node(oid: x509.ObjectIdentifier) -> _der.Node:
    parts = [int(p) for p in oid.dotted_string.split(".")]
    body = bytearray([40 * parts[0] + parts[1]])
    for p in parts[2:]:
        chunk = [p & 0x7F]
        p >>= 7
        while p:
            chunk.append(0x80 | (p & 0x7F))
            p >>= 7
        body += bytes(reversed(chunk))
    return _der.Node(0x06, bytes(body))


@dataclass
class Built:
    anchors: list[x509.Certificate]
    chain: list[x509.Certificate]  # leaf first, then what the client sends
    partial: bool = False  # the anchor is not self-signed (openssl needs -partial_chain)
    # a leaf of the default spec from the same issuer, sent with the same certificates: what
    # a verifier may have validated before ``chain`` (see ``judge_mtlsauth_warm``)
    sibling: x509.Certificate | None = None
    cas: tuple[_CA, ...] = ()  # the root, then the CAs below it down to the leaf's issuer


def build(spec: Spec) -> Built:
    pool = key_pool()
    pick = iter(pool["ec256"])
    root_key = next(pick)
    root = _make_ca(CASpec(path_len=spec.root_path_len), _name("Diff Root", "diff"), root_key, None)
    issuer = root
    presented: list[x509.Certificate] = []
    cas: list[_CA] = []
    for i, ca_spec in enumerate(spec.cas):
        key = (
            pool[ca_spec.key][i % len(pool[ca_spec.key])] if ca_spec.key != "ec256" else next(pick)
        )
        ca = _make_ca(ca_spec, _name(f"Diff CA {i}", "diff"), key, issuer)
        cas.append(ca)
        issuer = ca
    anchors = [root.cert]
    partial = False
    if spec.shape == "self_issued":
        # key rollover: a CA certificate whose subject equals its issuer's, new key
        key = next(pick)
        rolled = _make_ca(CASpec(), issuer.cert.subject, key, issuer)
        cas.append(rolled)
        issuer = rolled
    elif spec.shape == "cross":
        # leaf <- I (issued by R2) and R2 cross-signed by the trusted root; R2 itself untrusted
        r2_key = next(pick)
        r2_name = _name("Diff Root 2", "diff")
        cross = _make_ca(CASpec(), r2_name, r2_key, issuer)
        cas.append(cross)
        issuer = cross
    elif spec.shape == "loop":
        # A and B issue each other; neither chains to the anchor
        a_key, b_key = next(pick), next(pick)
        a_name, b_name = _name("Loop A", "diff"), _name("Loop B", "diff")
        a_self = _make_ca(CASpec(), a_name, a_key, None)
        b = _make_ca(CASpec(), b_name, b_key, a_self)
        a = _make_ca(CASpec(), a_name, a_key, b)
        cas = [b, a]
        issuer = a
    elif spec.shape == "own_root":
        other_key = next(pick)
        other = _make_ca(CASpec(), _name("Unknown Root", "diff"), other_key, None)
        cas = [other]
        issuer = other
    presented = [c.cert for c in reversed(cas)]
    if spec.shape == "send_root":
        presented.append(root.cert)
    if spec.shape == "anchor_inter" and cas:
        anchors = [cas[-1].cert]
        partial = True

    leaf_key = pool[spec.leaf_key][-1]
    nb, na = _validity(spec.validity)
    b = (
        x509.CertificateBuilder()
        .subject_name(_leaf_subject(spec.subject))
        .issuer_name(issuer.cert.subject)
        .public_key(leaf_key.public_key())
        .serial_number(next(_counter) + 1000)
        .not_valid_before(nb)
        .not_valid_after(na)
    )
    if spec.version == 3:
        b = b.add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), False)
        if spec.aki:
            b = b.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), False
            )
        if spec.bc != "absent":
            b = b.add_extension(
                x509.BasicConstraints(ca=spec.bc == "ca", path_length=None),
                critical=spec.bc != "ee_noncrit",
            )
        ku = _ku(spec.ku)
        if ku is not None:
            b = b.add_extension(ku, critical=spec.ku_critical)
        if spec.eku in _EKUS:
            b = b.add_extension(x509.ExtendedKeyUsage(_EKUS[spec.eku]), critical=False)
        names = _san(spec.san)
        if names:
            b = b.add_extension(x509.SubjectAlternativeName(names), critical=spec.san_critical)
        if spec.unknown_critical:
            b = b.add_extension(x509.UnrecognizedExtension(UNKNOWN_OID, b"\x05\x00"), critical=True)
    sig_hash = spec.sig_hash
    if isinstance(issuer.key, ed25519.Ed25519PrivateKey):
        sig_hash = "sha256"  # Ed25519 has no hash choice
    leaf = _sign(b, issuer.key, "sha256" if sig_hash == "sha1" else sig_hash)
    if sig_hash == "sha1":
        leaf = _to_sha1(leaf, issuer.key)
    if spec.version == 1:
        tree = _der.parse(leaf.public_bytes(serialization.Encoding.DER))
        assert tree is not None and tree.children and tree.children[0].children
        tbs = tree.children[0].children
        if tbs[0].tag == 0xA0:
            tbs.pop(0)
        leaf = _resign(leaf, issuer.key, tree)
    dup = {"eku": x509.ExtensionOID.EXTENDED_KEY_USAGE, "san": x509.ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
           "bc": x509.ExtensionOID.BASIC_CONSTRAINTS}.get(spec.duplicate)  # fmt: skip
    if dup is not None and spec.version == 3:
        leaf = _duplicate(leaf, issuer.key, dup)
    return Built(anchors, [leaf, *presented], partial, _sibling(issuer, pool), (root, *cas))


SECOND_WAYS = ("twin_root", "anchor_named_as_intermediate", "copy_of_intermediate", "root_cross")


def with_second_way(built: Built, way: str) -> Built:
    """``built`` (leaf -> one intermediate I -> root) with a second way up from its leaf.

    Each second way runs through a CA constrained to ``second.test``, which no generated leaf
    or sibling has a DNS name under: the sibling's own path avoids it (its SAN is refused
    there), while a leaf without a DNS SAN may be taken along it and refused there by its
    subject name. A verifier that took a shortcut after the sibling must still answer as a
    fresh one, on whichever path cryptography's builder takes first:

    - ``twin_root``: a copy of the root (its name and key, constrained) as the first anchor;
    - ``anchor_named_as_intermediate``: a self-signed, constrained anchor with I's name and key;
    - ``copy_of_intermediate``: I's name and key under a second, constrained root, sent first;
    - ``root_cross``: the root without a subjectKeyIdentifier, and a copy of it (its name and
      key, with the identifier) under a second, constrained root, sent after I.
    """
    if len(built.cas) != 2 or len(built.chain) != 2:
        return built
    root, inter = built.cas
    leaf, *presented = built.chain
    constrained = CASpec(nc="second")
    other_key = key_pool()["ec256"][-2]
    other = _make_ca(constrained, _name("Diff Second Root", "diff"), other_key, None)
    if way == "twin_root":
        twin = _make_ca(constrained, root.cert.subject, root.key, None)
        return dataclasses.replace(built, anchors=[twin.cert, *built.anchors])
    if way == "anchor_named_as_intermediate":
        anchor = _make_ca(constrained, inter.cert.subject, inter.key, None)
        return dataclasses.replace(built, anchors=[*built.anchors, anchor.cert])
    if way == "copy_of_intermediate":
        copy = _make_ca(CASpec(), inter.cert.subject, inter.key, other)
        return dataclasses.replace(
            built, anchors=[*built.anchors, other.cert], chain=[leaf, copy.cert, *presented]
        )
    if way == "root_cross":
        bare = _make_ca(CASpec(), root.cert.subject, root.key, None, ski=False)
        cross = _make_ca(CASpec(), root.cert.subject, root.key, other)
        return dataclasses.replace(
            built, anchors=[bare.cert, other.cert], chain=[leaf, *presented, cross.cert]
        )
    raise ValueError(way)


def _sibling(issuer: _CA, pool: dict[str, list[Key]]) -> x509.Certificate:
    key = pool["ec256"][-1]
    nb, na = _validity("ok")
    ku = _ku("ds")
    assert ku is not None
    b = (
        x509.CertificateBuilder()
        .subject_name(_leaf_subject("cn"))
        .issuer_name(issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(next(_counter) + 1000)
        .not_valid_before(nb)
        .not_valid_after(na)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), False
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(ku, critical=True)
        .add_extension(x509.ExtendedKeyUsage(_EKUS["client"]), critical=False)
        .add_extension(x509.SubjectAlternativeName(_san("dns_in")), critical=False)
    )
    return _sign(b, issuer.key)


# -- the judges ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Verdicts:
    mtlsauth: str  # "accept" or the refusal code
    openssl: str  # "accept" or openssl's error text
    cryptography: str  # "accept" or "refuse: <reason>"

    def accepts(self) -> tuple[bool, bool, bool]:
        return (self.mtlsauth == "accept", self.openssl == "accept", self.cryptography == "accept")

    def unanimous(self) -> bool:
        return len(set(self.accepts())) == 1


def _pem(certs: list[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


# A trust store the Verifier refuses when it is built (an anchor that is no CA: an
# intermediate without basicConstraints configured as the anchor) is a refusal of every chain.
ANCHOR_REFUSED = "anchor_refused_at_configuration"


def _verifier(built: Built) -> Any:
    from mtlsauth import TrustStore, Verifier

    try:
        return Verifier(
            trust_store=TrustStore.from_certificates(built.anchors),
            max_depth=MAX_DEPTH,
            cache_size=0,
        )
    except ValueError:
        return None


def judge_mtlsauth(built: Built) -> str:
    from mtlsauth import MTLSAuthError

    v = _verifier(built)
    if v is None:
        return ANCHOR_REFUSED
    try:
        v.verify(built.chain, at=AT)
    except MTLSAuthError as exc:
        return exc.code
    return "accept"


def judge_mtlsauth_warm(built: Built) -> str:
    """``judge_mtlsauth`` after the same verifier has validated ``built.sibling``.

    A verifier that has seen a valid path through the chain's CAs takes shortcuts with them
    (an intermediate validated up to an anchor is not validated again); its answer on the
    chain must be the one a fresh verifier gives.
    """
    from mtlsauth import MTLSAuthError

    v = _verifier(built)
    if v is None:
        return ANCHOR_REFUSED
    if built.sibling is not None:
        try:
            v.verify([built.sibling, *built.chain[1:]], at=AT)
        except MTLSAuthError:
            pass
    try:
        v.verify(built.chain, at=AT)
    except MTLSAuthError as exc:
        return exc.code
    return "accept"


def judge_openssl(built: Built, workdir: Path) -> str:
    (workdir / "ca.pem").write_bytes(_pem(built.anchors))
    (workdir / "untrusted.pem").write_bytes(_pem(built.chain[1:]) or b"")
    (workdir / "leaf.pem").write_bytes(_pem(built.chain[:1]))
    cmd = ["openssl", "verify", "-x509_strict", "-purpose", "sslclient",
           "-attime", str(int(AT.timestamp())), "-verify_depth", str(MAX_DEPTH),
           "-CAfile", str(workdir / "ca.pem")]  # fmt: skip
    if built.partial:
        cmd.append("-partial_chain")
    if len(built.chain) > 1:
        cmd += ["-untrusted", str(workdir / "untrusted.pem")]
    cmd.append(str(workdir / "leaf.pem"))
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=30)
    if proc.returncode == 0:
        return "accept"
    for line in (proc.stderr + proc.stdout).splitlines():
        if line.startswith("error ") or ("error" in line and ":" in line):
            return line.split(":", 1)[-1].strip() if line.startswith("error ") else line.strip()
    return "refuse"


def judge_cryptography(built: Built) -> str:
    verifier = (
        PolicyBuilder()
        .store(Store(built.anchors))
        .time(AT)
        .max_chain_depth(MAX_DEPTH)
        .build_client_verifier()
    )
    try:
        verifier.verify(built.chain[0], built.chain[1:])
    except VerificationError as exc:
        return f"refuse: {exc}"
    except Exception as exc:
        return f"refuse: {type(exc).__name__}: {exc}"
    return "accept"


def judge(built: Built) -> Verdicts:
    with tempfile.TemporaryDirectory(prefix="mtlsauth-diff-") as d:
        return Verdicts(
            judge_mtlsauth(built), judge_openssl(built, Path(d)), judge_cryptography(built)
        )


# -- the table of differences --------------------------------------------------------------------
@dataclass(frozen=True)
class Difference:
    """A known disagreement: when ``applies(spec)`` and the verdicts match ``pattern``
    (mtlsauth, openssl, cryptography accept flags; None = either), it is expected."""

    id: str
    pattern: tuple[bool | None, bool | None, bool | None]
    applies: Callable[[Spec], bool]
    reason: str
    pending_fix: bool = False
    example: Spec | None = field(default=None, compare=False)

    def matches(self, spec: Spec, verdicts: Verdicts) -> bool:
        got = verdicts.accepts()
        return self.applies(spec) and all(
            p is None or p == g for p, g in zip(self.pattern, got, strict=True)
        )


# cryptography 45 to 48 verify a chain whatever its directoryName constraints say; 49 and
# later refuse such a chain as unsupported.
_ENGINE_IGNORES_DIRNAME = int(cryptography.__version__.split(".")[0]) < 49


def _any_nc(spec: Spec, kind: str) -> bool:
    return any(ca.nc == kind for ca in spec.cas)


def _nc_violated_by_subject(spec: Spec) -> bool:
    """A SAN-less leaf whose subject names fall outside a DNS or e-mail name constraint."""
    return spec.san == "none" and (
        (_any_nc(spec, "dns") and spec.subject == "cn_out")
        or (_any_nc(spec, "email") and spec.subject == "email_out")
        or (_any_nc(spec, "excluded_dns") and spec.subject == "cn_out")
    )


# Each row: the other judge's verdict ("accept" or "refuse") where mtlsauth says the opposite.
DIFFERENCES: tuple[Difference, ...] = (
    # -- cryptography's plain ClientVerifier (the web-PKI profile) -----------------------------
    Difference(
        "cn-only-leaf",
        (None, None, False),
        lambda s: s.san == "none" and s.version == 3,
        "Enterprise PKIs issue client certificates with the name in the subject only. mtlsauth "
        "relaxes exactly the SAN's presence; cryptography's web-PKI profile requires a SAN.",
        example=Spec(san="none"),
    ),
    Difference(
        "no-leaf-aki",
        (None, None, False),
        lambda s: not s.aki,
        "A leaf without authorityKeyIdentifier is common in private PKIs; the issuer is found "
        "by name and the signature proves it. cryptography (and openssl -x509_strict) require it.",
        example=Spec(aki=False),
    ),
    Difference(
        "weak-leaf-key",
        (None, True, True),
        lambda s: s.leaf_key == "rsa1024",
        "mtlsauth refuses leaf keys below RSA-2048 (and curves other than P-256/384/521); "
        "neither OpenSSL (at its default level) nor cryptography's verifier checks the leaf's key.",
        example=Spec(leaf_key="rsa1024"),
    ),
    Difference(
        "leaf-ku-without-signature",
        (None, None, True),
        lambda s: s.ku == "ke",
        "A leaf keyUsage that forbids digitalSignature cannot sign the TLS CertificateVerify. "
        "mtlsauth refuses it as OpenSSL's sslclient purpose does; cryptography's client verifier "
        "does not look at the leaf's keyUsage.",
        example=Spec(ku="ke"),
    ),
    # -- openssl verify -x509_strict -purpose sslclient --------------------------------------
    Difference(
        "critical-san-with-subject",
        (False, True, None),
        lambda s: s.san_critical and s.san != "none" and s.subject != "empty",
        "RFC 5280 4.2.1.6: a SAN beside a non-empty subject should not be critical. mtlsauth "
        "refuses it as cryptography's profile does; OpenSSL accepts it.",
        example=Spec(san_critical=True),
    ),
    Difference(
        "directory-name-constraint",
        (False, True, _ENGINE_IGNORES_DIRNAME),
        lambda s: _any_nc(s, "dirname"),
        "cryptography cannot evaluate directoryName name constraints: releases 45 to 48 "
        "ignore them (a leaf outside a permitted directoryName verifies), 49 and later refuse "
        "the chain. mtlsauth refuses it itself, whatever the release (fails closed), where "
        "OpenSSL evaluates them.",
        example=Spec(cas=(CASpec(nc="dirname"),)),
    ),
    Difference(
        "ed25519-issuer",
        (False, True, None),
        lambda s: any(ca.key == "ed25519" for ca in s.cas),
        "cryptography's verifier accepts only RSA and ECDSA (P-256/384/521) signatures on "
        "certificates, so a chain with an Ed25519 CA is refused; OpenSSL accepts it. Ed25519 "
        "is fine as the leaf's own key.",
        example=Spec(cas=(CASpec(key="ed25519"),)),
    ),
    Difference(
        "sha1-signature",
        (False, True, None),
        lambda s: s.sig_hash == "sha1",
        "SHA-1 signatures are forgeable at a price within reach (chosen-prefix collisions); "
        "mtlsauth (through cryptography) refuses them, OpenSSL at its default level does not.",
        example=Spec(sig_hash="sha1"),
    ),
    Difference(
        "v1-leaf",
        (False, True, None),
        lambda s: s.version == 1,
        "An X.509 v1 certificate carries no extensions, so no EKU or basicConstraints; "
        "mtlsauth refuses it, OpenSSL accepts a v1 leaf.",
        example=Spec(version=1),
    ),
    Difference(
        "leaf-is-a-ca",
        (False, True, None),
        lambda s: s.bc == "ca",
        "A certificate with basicConstraints cA=TRUE is a CA, not a client; mtlsauth refuses it "
        "as a leaf (as cryptography does), OpenSSL's sslclient purpose does not.",
        example=Spec(bc="ca"),
    ),
    Difference(
        "no-leaf-aki-openssl",
        (None, False, None),
        lambda s: not s.aki,
        "openssl -x509_strict requires an authorityKeyIdentifier in every certificate that is "
        "not self-signed; mtlsauth accepts a leaf without one (see no-leaf-aki).",
        example=Spec(aki=False),
    ),
    Difference(
        "not-after-inclusive",
        (None, False, None),
        lambda s: s.validity == "na_edge",
        "RFC 5280 4.1.2.5: the validity period includes notAfter. At exactly notAfter mtlsauth "
        "and cryptography accept; OpenSSL counts the certificate as expired.",
        example=Spec(validity="na_edge"),
    ),
)


def explain(spec: Spec, verdicts: Verdicts) -> list[str]:
    """The disagreements with mtlsauth that no row of DIFFERENCES explains (empty: all fine),
    and which rows were used."""
    mt = verdicts.mtlsauth == "accept"
    problems = []
    for i, judge_name in ((1, "openssl"), (2, "cryptography")):
        other = verdicts.accepts()[i]
        if other == mt:
            continue
        pattern_ok = [
            d for d in DIFFERENCES
            if d.pattern[i] is other and (d.pattern[0] is None or d.pattern[0] is mt) and d.applies(spec)
        ]  # fmt: skip
        if not pattern_ok:
            problems.append(
                f"{judge_name} says {getattr(verdicts, judge_name)!r}, mtlsauth {verdicts.mtlsauth!r}"
            )
    return problems


def rows_used(spec: Spec, verdicts: Verdicts) -> list[Difference]:
    mt = verdicts.mtlsauth == "accept"
    out = []
    for i in (1, 2):
        other = verdicts.accepts()[i]
        if other != mt:
            out += [d for d in DIFFERENCES if d.pattern[i] is other and d.applies(spec)]
    return out


def one_intermediate_specs():  # type: ignore[no-untyped-def]
    """``specs`` narrowed to paths leaf -> one intermediate -> root, sent plainly: the shape
    in which a verifier remembers a validated intermediate (``judge_mtlsauth_warm``)."""
    return specs().map(
        lambda s: dataclasses.replace(s, cas=s.cas[:1] or (CASpec(),), shape="plain")
    )


def specs():  # type: ignore[no-untyped-def]
    """The hypothesis strategy: mostly-valid chains with one or two axes turned."""
    from hypothesis import strategies as st

    def axis(default: object, *others: object) -> st.SearchStrategy[object]:
        return st.sampled_from((default,) * (2 * len(others) or 1) + others)

    ca = st.builds(
        CASpec,
        bc=axis("ok", "missing", "ca_false", "noncritical"),
        path_len=axis(None, 0, 1),
        ku=axis("ok", "no_kcs", "missing"),
        eku=axis("none", "client", "server"),
        nc=axis("none", "dns", "email", "ip", "dirname", "excluded_dns"),
        key=axis("ec256", "ec384", "rsa2048", "ed25519"),
        expired=axis(False, True),
        unknown_critical=axis(False, True),
    )
    cas = st.one_of(
        st.lists(ca, max_size=3).map(tuple),
        st.just(tuple(CASpec() for _ in range(MAX_DEPTH + 1))),
        st.just(tuple(CASpec() for _ in range(MAX_DEPTH))),
    )
    return st.builds(
        Spec,
        cas=cas,
        root_path_len=axis(None, 0, 1),
        leaf_key=axis("ec256", "ec384", "rsa2048", "rsa1024", "ed25519"),
        sig_hash=axis("sha256", "sha384", "sha512", "sha1"),
        ku=axis("ds", "none", "ke", "ds_kcs", "kcs"),
        ku_critical=st.booleans(),
        eku=axis("client", "server", "any", "both", "none", "codesign"),
        bc=axis("ee", "absent", "ee_noncrit", "ca"),
        san=axis("dns_in", "none", "dns_out", "email_in", "email_out", "ip_in", "ip_out", "uri"),
        san_critical=axis(False, True),
        subject=axis("cn", "cn_out", "email_in", "email_out", "o_only", "empty"),
        aki=axis(True, False),
        validity=axis("ok", "expired", "not_yet", "nb_edge", "na_edge", "na_past"),
        unknown_critical=axis(False, True),
        duplicate=axis("none", "eku", "san", "bc"),
        shape=axis(
            "plain", "send_root", "self_issued", "cross", "loop", "own_root", "anchor_inter"
        ),
        version=axis(3, 1),
    )
