"""CRLSet rules, each shown both ways, against chains built with mtlsauth.testing.CA."""

from __future__ import annotations

import base64
import datetime as dt
import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID

from mtlsauth import CertificateRevoked, RevocationUnavailable, Verifier
from mtlsauth._revocation._crl import CRLSet
from mtlsauth.testing import CA, ClientCert

UTC = dt.timezone.utc
NOW = dt.datetime.now(UTC).replace(microsecond=0)


@dataclass
class PKI:
    root: CA
    inter: CA
    leaf: ClientCert

    @property
    def chain(self) -> list[x509.Certificate]:
        return [self.leaf.certificate, self.inter.certificate, self.root.certificate]


def _pki(**leaf_kwargs: object) -> PKI:
    root = CA(organization="CRL Test")
    inter = root.intermediate()
    return PKI(root, inter, inter.issue_client_cert(common_name="leaf", **leaf_kwargs))  # type: ignore[arg-type]


def _crl(
    issuer: CA,
    *,
    serials: tuple[tuple[int, x509.ReasonFlags | None], ...] = (),
    last_update: dt.datetime | None = None,
    next_update: dt.datetime | None = None,
    extensions: tuple[tuple[x509.ExtensionType, bool], ...] = (),
    entry_extensions: tuple[x509.ExtensionType, ...] = (),
    critical_entry_extensions: tuple[x509.ExtensionType, ...] = (),
    signer: ec.EllipticCurvePrivateKey | None = None,
    aki_key: ec.EllipticCurvePrivateKey | None = None,
    number: int | None = 1,
    number_critical: bool = False,
    issuer_name: x509.Name | None = None,
    hash_alg: hashes.HashAlgorithm | None = None,
    aki: bool = True,
) -> bytes:
    """A CRL built by hand, for the cases CA.crl() does not cover."""
    b = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer_name or issuer.certificate.subject)
        .last_update(last_update or NOW - dt.timedelta(minutes=5))
        .next_update(next_update or NOW + dt.timedelta(days=1))
    )
    if aki:
        b = b.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(
                (aki_key or issuer.private_key).public_key()  # type: ignore[arg-type]
            ),
            critical=False,
        )
    if number is not None:
        b = b.add_extension(x509.CRLNumber(number), critical=number_critical)
    for ext, critical in extensions:
        b = b.add_extension(ext, critical=critical)
    for serial, reason in serials:
        rb = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(NOW)
        if reason is not None:
            rb = rb.add_extension(x509.CRLReason(reason), critical=False)
        for ext in entry_extensions:
            rb = rb.add_extension(ext, critical=ext in critical_entry_extensions)
        b = b.add_revoked_certificate(rb.build())
    key = signer or issuer.private_key
    return b.sign(key, hash_alg or hashes.SHA256()).public_bytes(serialization.Encoding.PEM)  # type: ignore[arg-type]


def _respelled(
    name: x509.Name, edit: Callable[[str], str], as_type: _ASN1Type | None = None
) -> x509.Name:
    """``name`` with every value edited and, optionally, encoded as another string type."""
    return x509.Name(
        [
            x509.NameAttribute(a.oid, edit(str(a.value)), as_type or a._type)  # type: ignore[arg-type]
            for a in name
        ]
    )


def _idp(**kw: object) -> tuple[x509.ExtensionType, bool]:
    fields: dict[str, object] = {
        "full_name": None,
        "relative_name": None,
        "only_contains_user_certs": False,
        "only_contains_ca_certs": False,
        "only_some_reasons": None,
        "indirect_crl": False,
        "only_contains_attribute_certs": False,
    }
    fields.update(kw)
    return (x509.IssuingDistributionPoint(**fields), True)  # type: ignore[arg-type]


def _outcome(crls: CRLSet, chain: list[x509.Certificate], at: dt.datetime = NOW) -> str:
    try:
        crls.check(chain, at=at)
    except CertificateRevoked:
        return "revoked"
    except RevocationUnavailable:
        return "unavailable"
    return "ok"


# Each case: (builder of the CRL PEM for the intermediate, for the root) -> expected outcome.
Build = Callable[[PKI], bytes]
ROOT_OK: Build = lambda p: _crl(p.root)  # noqa: E731
LEAF = lambda p: p.leaf.certificate.serial_number  # noqa: E731
DP = x509.UniformResourceIdentifier("http://crl.example/inter.crl")

CASES = [
    pytest.param(lambda p: _crl(p.inter), ROOT_OK, {}, "ok", id="fresh CRLs, nothing listed"),
    pytest.param(
        lambda p: _crl(p.inter, serials=((LEAF(p), None),)),
        ROOT_OK,
        {},
        "revoked",
        id="leaf listed",
    ),
    pytest.param(
        lambda p: _crl(p.inter, serials=((LEAF(p), x509.ReasonFlags.certificate_hold),)),
        ROOT_OK,
        {},
        "revoked",
        id="certificateHold counts as revoked while listed",
    ),
    pytest.param(
        lambda p: _crl(p.inter, serials=((LEAF(p), x509.ReasonFlags.remove_from_crl),)),
        ROOT_OK,
        {},
        "revoked",
        id="removeFromCRL in a complete CRL still counts as listed",
    ),
    pytest.param(
        lambda p: _crl(
            p.inter,
            serials=((LEAF(p), x509.ReasonFlags.key_compromise),),
            entry_extensions=(x509.InvalidityDate(NOW + dt.timedelta(days=30)),),
        ),
        ROOT_OK,
        {},
        "revoked",
        id="invalidity date after now: still revoked",
    ),
    pytest.param(
        lambda p: _crl(p.inter),
        lambda p: _crl(p.root, serials=((p.inter.certificate.serial_number, None),)),
        {},
        "revoked",
        id="intermediate listed, chain scope",
    ),
    pytest.param(
        lambda p: _crl(p.inter),
        lambda p: _crl(p.root, serials=((p.inter.certificate.serial_number, None),)),
        {"scope": "leaf"},
        "ok",
        id="intermediate listed, leaf scope",
    ),
    pytest.param(lambda p: _crl(p.inter), None, {}, "unavailable", id="no root CRL, chain scope"),
    pytest.param(
        lambda p: _crl(p.inter), None, {"scope": "leaf"}, "ok", id="no root CRL, leaf scope"
    ),
    pytest.param(
        lambda p: _crl(p.inter),
        None,
        {"allow_missing": True},
        "ok",
        id="no root CRL, allow_missing",
    ),
    pytest.param(None, ROOT_OK, {}, "unavailable", id="no intermediate CRL"),
    pytest.param(
        None, ROOT_OK, {"allow_missing": True}, "ok", id="no intermediate CRL, allow_missing"
    ),
    pytest.param(
        lambda p: _crl(p.inter, next_update=NOW - dt.timedelta(seconds=1)),
        ROOT_OK,
        {},
        "unavailable",
        id="stale CRL",
    ),
    pytest.param(
        lambda p: _crl(p.inter, next_update=NOW - dt.timedelta(seconds=1)),
        ROOT_OK,
        {"allow_missing": True},
        "unavailable",
        id="stale CRL fails even with allow_missing",
    ),
    pytest.param(
        lambda p: _crl(p.inter, next_update=NOW - dt.timedelta(minutes=5)),
        ROOT_OK,
        {"grace": dt.timedelta(minutes=10)},
        "ok",
        id="stale CRL within grace",
    ),
    pytest.param(
        lambda p: _crl(p.inter, last_update=NOW + dt.timedelta(hours=1)),
        ROOT_OK,
        {},
        "unavailable",
        id="lastUpdate an hour ahead",
    ),
    pytest.param(
        lambda p: _crl(p.inter, last_update=NOW + dt.timedelta(minutes=2)),
        ROOT_OK,
        {},
        "ok",
        id="lastUpdate 2 min ahead: within skew",
    ),
    pytest.param(
        lambda p: _crl(p.inter, signer=ec.generate_private_key(ec.SECP256R1())),
        ROOT_OK,
        {},
        "unavailable",
        id="wrongly signed CRL",
    ),
    pytest.param(
        lambda p: _crl(p.inter, signer=ec.generate_private_key(ec.SECP256R1())),
        ROOT_OK,
        {"allow_missing": True},
        "unavailable",
        id="wrongly signed CRL fails even with allow_missing",
    ),
    pytest.param(
        lambda p: _crl(p.inter, aki_key=(k := ec.generate_private_key(ec.SECP256R1())), signer=k),
        ROOT_OK,
        {},
        "unavailable",
        id="AKI names another key of a same-named CA",
    ),
    pytest.param(
        lambda p: _crl(p.inter, aki_key=(k := ec.generate_private_key(ec.SECP256R1())), signer=k),
        ROOT_OK,
        {"allow_missing": True},
        "unavailable",
        id="AKI names another key, allow_missing: a CRL of the issuer exists",
    ),
    pytest.param(
        lambda p: _crl(
            p.inter,
            serials=((LEAF(p), x509.ReasonFlags.key_compromise),),
            aki_key=(k := ec.generate_private_key(ec.SECP256R1())),
            signer=k,
        ),
        ROOT_OK,
        {"allow_missing": True},
        "unavailable",
        id="rolled-over key's CRL lists the leaf, allow_missing: not taken for no CRL",
    ),
    pytest.param(
        lambda p: _crl(
            p.inter,
            serials=((LEAF(p), x509.ReasonFlags.key_compromise),),
            issuer_name=_respelled(p.inter.certificate.subject, str.upper),
        ),
        ROOT_OK,
        {"allow_missing": True},
        "unavailable",
        id="CRL issuer name in other case, allow_missing: not taken for no CRL",
    ),
    pytest.param(
        lambda p: _crl(
            p.inter,
            serials=((LEAF(p), x509.ReasonFlags.key_compromise),),
            issuer_name=_respelled(p.inter.certificate.subject, str, _ASN1Type.PrintableString),
        ),
        ROOT_OK,
        {"allow_missing": True},
        "unavailable",
        id="CRL issuer name as PrintableString, allow_missing: not taken for no CRL",
    ),
    pytest.param(
        lambda p: _crl(
            p.inter,
            serials=((LEAF(p), x509.ReasonFlags.key_compromise),),
            issuer_name=_respelled(
                p.inter.certificate.subject, lambda v: f" {v}  x".replace(" x", "")
            ),
        ),
        ROOT_OK,
        {"allow_missing": True},
        "unavailable",
        id="CRL issuer name with other spacing, allow_missing: not taken for no CRL",
    ),
    pytest.param(
        lambda p: _crl(
            p.inter,
            serials=((LEAF(p), x509.ReasonFlags.key_compromise),),
            issuer_name=x509.Name(list(reversed(p.inter.certificate.subject.rdns))),
        ),
        ROOT_OK,
        {"allow_missing": True},
        "unavailable",
        id="CRL issuer name with its RDNs in the other order, allow_missing: not taken for no CRL",
    ),
    pytest.param(
        lambda p: _crl(p.inter, extensions=(_idp(only_contains_ca_certs=True),)),
        ROOT_OK,
        {"allow_missing": True},
        "unavailable",
        id="IDP onlyContainsCACerts, allow_missing: the leaf's partition is missing",
    ),
    pytest.param(
        lambda p: _crl(p.inter),
        lambda p: _crl(p.root, extensions=(_idp(only_contains_user_certs=True),)),
        {"allow_missing": True},
        "unavailable",
        id="IDP onlyContainsUserCerts, allow_missing: the CA partition is missing",
    ),
    pytest.param(
        lambda p: _crl(p.inter, extensions=(_idp(full_name=[DP]),)),
        ROOT_OK,
        {"allow_missing": True},
        "unavailable",
        id="IDP distribution point, leaf names none, allow_missing: partition missing",
    ),
    pytest.param(
        lambda p: _crl(p.root),  # the root's CRL cannot clear the intermediate's leaf
        ROOT_OK,
        {},
        "unavailable",
        id="CRL from another issuer",
    ),
    pytest.param(
        lambda p: _crl(p.inter, extensions=(_idp(only_contains_ca_certs=True),)),
        ROOT_OK,
        {},
        "unavailable",
        id="IDP onlyContainsCACerts does not clear a leaf",
    ),
    pytest.param(
        lambda p: _crl(p.inter, extensions=(_idp(only_contains_user_certs=True),)),
        ROOT_OK,
        {},
        "ok",
        id="IDP onlyContainsUserCerts clears a leaf",
    ),
    pytest.param(
        lambda p: _crl(p.inter),
        lambda p: _crl(p.root, extensions=(_idp(only_contains_user_certs=True),)),
        {},
        "unavailable",
        id="IDP onlyContainsUserCerts does not clear a CA",
    ),
    pytest.param(
        lambda p: _crl(p.inter),
        lambda p: _crl(p.root, extensions=(_idp(only_contains_ca_certs=True),)),
        {},
        "ok",
        id="IDP onlyContainsCACerts clears a CA",
    ),
    pytest.param(
        lambda p: _crl(p.inter, extensions=(_idp(full_name=[DP]),)),
        ROOT_OK,
        {},
        "unavailable",
        id="IDP distribution point, leaf names none",
    ),
]


@pytest.mark.parametrize(("inter_crl", "root_crl", "options", "expected"), CASES)
def test_crl_rules(
    inter_crl: Build | None, root_crl: Build | None, options: dict[str, object], expected: str
) -> None:
    p = _pki()
    pem = b"".join(build(p) for build in (inter_crl, root_crl) if build is not None)
    crls = CRLSet.from_pem(pem, **options)  # type: ignore[arg-type]
    assert _outcome(crls, p.chain) == expected


def _with_dp(names: list[x509.GeneralName]) -> PKI:
    dp = x509.DistributionPoint(full_name=names, relative_name=None, reasons=None, crl_issuer=None)
    return _pki(extra_extensions=[(x509.CRLDistributionPoints([dp]), False)])


@pytest.mark.parametrize(
    ("cert_dp", "listed", "expected"),
    [
        pytest.param(DP, False, "ok", id="matching distribution point, not listed"),
        pytest.param(DP, True, "revoked", id="matching distribution point, listed"),
        pytest.param(
            x509.UniformResourceIdentifier("http://crl.example/other.crl"),
            False,
            "unavailable",
            id="other distribution point",
        ),
    ],
)
def test_idp_distribution_point(cert_dp: x509.GeneralName, listed: bool, expected: str) -> None:
    p = _with_dp([cert_dp])
    serials = ((LEAF(p), None),) if listed else ()
    pem = _crl(p.inter, serials=serials, extensions=(_idp(full_name=[DP]),)) + _crl(p.root)
    assert _outcome(CRLSet.from_pem(pem), p.chain) == expected


def _ca_without_crl_sign() -> tuple[CA, ClientCert]:
    ca = CA(organization="No CRL sign", key_usage=False)
    ku = x509.KeyUsage(True, False, False, False, False, True, False, False, False)
    # Re-sign the CA certificate with a KeyUsage lacking cRLSign (same key, same name).
    cert = (
        x509.CertificateBuilder()
        .subject_name(ca.certificate.subject)
        .issuer_name(ca.certificate.subject)
        .public_key(ca.private_key.public_key())  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(hours=1))
        .not_valid_after(NOW + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(ku, critical=True)
        .sign(ca.private_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    ca.certificate = cert
    return ca, ca.issue_client_cert()


@pytest.mark.parametrize(("crl_sign", "expected"), [(False, "unavailable"), (True, "ok")])
def test_issuer_needs_crl_sign_key_usage(crl_sign: bool, expected: str) -> None:
    if crl_sign:
        ca = CA(key_usage=True)
        leaf = ca.issue_client_cert()
    else:
        ca, leaf = _ca_without_crl_sign()
    crls = CRLSet.from_pem(_crl(ca))
    assert _outcome(crls, [leaf.certificate, ca.certificate]) == expected


def test_ca_without_key_usage_may_sign_crls() -> None:
    ca = CA(key_usage=False)
    leaf = ca.issue_client_cert()
    assert _outcome(CRLSet.from_pem(_crl(ca)), [leaf.certificate, ca.certificate]) == "ok"


@pytest.mark.parametrize(
    ("older_lists", "newer_lists", "expected"),
    [
        pytest.param(True, False, "ok", id="hold released in the newer CRL"),
        pytest.param(False, True, "revoked", id="revoked in the newer CRL"),
    ],
)
def test_newest_fresh_crl_wins(older_lists: bool, newer_lists: bool, expected: str) -> None:
    p = _pki()
    held = ((LEAF(p), x509.ReasonFlags.certificate_hold),)
    older = _crl(p.inter, serials=held if older_lists else (), number=1)
    newer = _crl(p.inter, serials=held if newer_lists else (), number=2)
    for pem in (older + newer, newer + older):  # file order does not matter
        assert _outcome(CRLSet.from_pem(pem + _crl(p.root)), p.chain) == expected


KEY_COMPROMISE = x509.ReasonFlags.key_compromise
HOLD = x509.ReasonFlags.certificate_hold
STALE = NOW - dt.timedelta(seconds=1)


@pytest.mark.parametrize(
    ("older", "newer", "expected"),
    [
        pytest.param(
            {"number": 1},
            {"number": 2, "next_update": STALE, "reason": KEY_COMPROMISE},
            "revoked",
            id="revoked in a newer CRL that went stale: the older fresh one cannot clear it",
        ),
        pytest.param(
            {"number": 1},
            {"number": 2, "last_update": NOW + dt.timedelta(hours=1), "reason": KEY_COMPROMISE},
            "revoked",
            id="revoked in a newer CRL dated ahead",
        ),
        pytest.param(
            {"number": 1},
            {"number": 2, "next_update": STALE, "reason": HOLD},
            "unavailable",
            id="on hold in a newer CRL that went stale: released or not, nobody knows",
        ),
        pytest.param(
            {"number": 1, "reason": KEY_COMPROMISE},
            {"number": 2},
            "revoked",
            id="revoked in the older CRL, missing from the newer: a revocation is final",
        ),
        pytest.param(
            {"number": 1, "reason": HOLD},
            {"number": 2},
            "ok",
            id="on hold in the older CRL, missing from the newer: released",
        ),
        pytest.param(
            {"number": 1, "next_update": STALE, "reason": KEY_COMPROMISE},
            None,
            "revoked",
            id="revoked in the issuer's only CRL, stale",
        ),
        pytest.param(
            {"number": 1, "next_update": STALE, "reason": HOLD},
            None,
            "unavailable",
            id="on hold in the issuer's only CRL, stale",
        ),
    ],
)
def test_a_verified_revocation_is_final(
    older: dict[str, object], newer: dict[str, object] | None, expected: str
) -> None:
    """A revocation other than a hold cannot be undone (RFC 5280 5.3.1): any CRL signed by
    the issuer that lists the certificate for another reason revokes it, fresh or not; and
    an older fresh CRL cannot clear a certificate a newer one lists."""
    p = _pki()

    def build(spec: dict[str, object]) -> bytes:
        spec = dict(spec)
        reason = spec.pop("reason", None)
        serials = ((LEAF(p), reason),) if reason is not None else ()
        return _crl(p.inter, serials=serials, **spec)  # type: ignore[arg-type]

    parts = [build(older)] + ([build(newer)] if newer is not None else [])
    for pem in (b"".join(parts), b"".join(reversed(parts))):
        for options in ({}, {"allow_missing": True}):
            crls = CRLSet.from_pem(pem + _crl(p.root), **options)  # type: ignore[arg-type]
            assert _outcome(crls, p.chain) == expected, options


def test_newest_stale_falls_back_to_older_fresh() -> None:
    p = _pki()
    stale_newer = _crl(p.inter, number=2, next_update=NOW - dt.timedelta(seconds=1))
    fresh_older = _crl(p.inter, number=1)
    assert _outcome(CRLSet.from_pem(stale_newer + fresh_older + _crl(p.root)), p.chain) == "ok"


@pytest.mark.parametrize(
    ("extensions", "message"),
    [
        pytest.param(((x509.DeltaCRLIndicator(1), True),), "delta CRLs", id="delta CRL"),
        pytest.param(
            ((x509.DeltaCRLIndicator(1), False),), "delta CRLs", id="delta CRL, marked non-critical"
        ),
        pytest.param((_idp(indirect_crl=True),), "indirect", id="indirect CRL"),
        pytest.param(
            (_idp(only_some_reasons=frozenset({x509.ReasonFlags.key_compromise})),),
            "onlySomeReasons",
            id="onlySomeReasons",
        ),
        pytest.param(
            (_idp(only_contains_attribute_certs=True),), "attribute", id="attribute certificates"
        ),
        pytest.param(
            (
                (
                    x509.UnrecognizedExtension(
                        x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00"
                    ),
                    True,
                ),
            ),
            "unsupported critical",
            id="unknown critical extension",
        ),
    ],
)
def test_refused_crls(
    extensions: tuple[tuple[x509.ExtensionType, bool], ...], message: str
) -> None:
    ca = CA()
    with pytest.raises(ValueError, match=message):
        CRLSet.from_pem(_crl(ca, extensions=extensions))


def _ecdsa_signed_with(ca: CA, weak: hashes.HashAlgorithm, oid: str) -> bytes:
    """The CA's valid CRL, signed again with ECDSA over ``weak`` (cryptography's builder no
    longer signs with SHA-1), the algorithm named inside and outside alike."""
    der = x509.load_pem_x509_crl(_crl(ca)).public_bytes(serialization.Encoding.DER)
    tbs, _outer, _sig = _children(der)
    alg = _tlv(0x30, _tlv(0x06, bytes.fromhex(oid)))
    fields = _children(tbs)
    new_tbs = _tlv(0x30, b"".join([fields[0], alg, *fields[2:]]))
    sig = ca.private_key.sign(new_tbs, ec.ECDSA(weak))  # type: ignore[call-arg]
    return _as_pem(_tlv(0x30, new_tbs + alg + _tlv(0x03, b"\x00" + sig)))


@pytest.mark.parametrize(
    ("weak", "oid"),
    [(hashes.SHA1(), "2a8648ce3d0401"), (hashes.SHA224(), "2a8648ce3d040301")],  # noqa: S303
    ids=["SHA-1", "SHA-224"],
)
def test_crls_signed_with_a_weak_hash_are_refused(weak: hashes.HashAlgorithm, oid: str) -> None:
    """The rule for certificates holds for CRLs: a SHA-1 signature can be forged at a price
    within reach, so a CRL signed with one clears nothing (SHA-224, which certificates may
    not use either, goes with it)."""
    ca = CA()
    pem = _ecdsa_signed_with(ca, weak, oid)  # genuine: `openssl crl -CAfile` says verify OK
    with pytest.raises(ValueError, match="signature"):
        CRLSet.from_pem(pem)


# -- the CRL profile (RFC 5280 5.1 to 5.3) that cryptography does not enforce -------------

_UNKNOWN = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.2"), b"\x05\x00")
_FRESHEST = x509.FreshestCRL(
    [
        x509.DistributionPoint(
            [x509.UniformResourceIdentifier("http://x.test/d.crl")], None, None, None
        )
    ]
)
_AIA = x509.AuthorityInformationAccess(
    [
        x509.AccessDescription(
            x509.oid.AuthorityInformationAccessOID.CA_ISSUERS,
            x509.UniformResourceIdentifier("http://x.test/ca.crt"),
        )
    ]
)


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _der_len(len(content)) + content


def _children(der: bytes) -> list[bytes]:
    """The encoded elements inside a DER SEQUENCE."""
    length, pos = der[1], 2
    if length & 0x80:
        n = length & 0x7F
        length, pos = int.from_bytes(der[2 : 2 + n], "big"), 2 + n
    content, out, i = der[pos : pos + length], [], 0
    while i < len(content):
        ln, p = content[i + 1], i + 2
        if ln & 0x80:
            n = ln & 0x7F
            ln, p = int.from_bytes(content[i + 2 : i + 2 + n], "big"), i + 2 + n
        out.append(content[i : p + ln])
        i = p + ln
    return out


def _resigned(ca: CA, edit: Callable[[list[bytes]], list[bytes]]) -> bytes:
    """A valid CRL whose TBS fields were edited, then signed again by ``ca``: only the CA
    could have made it, so everything that refuses it is a profile rule, not a signature."""
    der = x509.load_pem_x509_crl(_crl(ca)).public_bytes(serialization.Encoding.DER)
    tbs, outer_alg, _sig = _children(der)
    new_tbs = _tlv(0x30, b"".join(edit(_children(tbs))))
    sig = ca.private_key.sign(new_tbs, ec.ECDSA(hashes.SHA256()))  # type: ignore[call-arg]
    return _tlv(0x30, new_tbs + outer_alg + _tlv(0x03, b"\x00" + sig))


def _inner_alg(alg: bytes) -> bytes:  # ecdsa-with-SHA256 -> ecdsa-with-SHA384, inside only
    return alg.replace(bytes.fromhex("2a8648ce3d040302"), bytes.fromhex("2a8648ce3d040303"))


PROFILE = [
    pytest.param(lambda ca: _crl(ca, number=None), "CRLNumber", id="no CRLNumber"),
    pytest.param(lambda ca: _crl(ca, number_critical=True), "CRLNumber", id="critical CRLNumber"),
    pytest.param(
        lambda ca: _crl(ca, extensions=((_FRESHEST, True),)), "critical", id="critical FreshestCRL"
    ),
    pytest.param(lambda ca: _crl(ca, extensions=((_AIA, True),)), "critical", id="critical AIA"),
    pytest.param(
        lambda ca: _crl(
            ca,
            serials=((12345, None),),
            entry_extensions=(_UNKNOWN,),
            critical_entry_extensions=(_UNKNOWN,),
        ),
        "entry extension",
        id="unknown critical entry extension",
    ),
    pytest.param(
        lambda ca: _crl(
            ca,
            serials=((12345, None),),
            entry_extensions=(x509.CertificateIssuer([x509.DNSName("other.test")]),),
        ),
        "entry extension",
        id="certificateIssuer entry in a direct CRL",
    ),
    pytest.param(
        lambda ca: _resigned(ca, lambda f: f[1:]), "version", id="v1 CRL carrying extensions"
    ),
    pytest.param(
        lambda ca: _resigned(ca, lambda f: [_tlv(0x02, b"\x02"), *f[1:]]),
        "version",
        id="version 3 (x509.InvalidVersion)",
    ),
    pytest.param(
        lambda ca: _resigned(ca, lambda f: [f[0], _inner_alg(f[1]), *f[2:]]),
        "signature algorithm",
        id="inner and outer signature algorithms differ",
    ),
]


def _as_pem(data: bytes) -> bytes:
    if data.startswith(b"-----"):
        return data
    return b"-----BEGIN X509 CRL-----\n" + base64.encodebytes(data) + b"-----END X509 CRL-----\n"


@pytest.mark.parametrize(("build", "message"), PROFILE)
def test_crl_profile(build: Callable[[CA], bytes], message: str) -> None:
    p = _pki()
    bad = build(p.inter)
    with pytest.raises(ValueError, match=message):
        CRLSet.from_pem(_as_pem(bad) + _crl(p.root))
    if not bad.startswith(b"-----"):
        with pytest.raises(ValueError, match=message):
            CRLSet.from_der(bad)


@pytest.mark.parametrize(("build", "message"), PROFILE)
def test_crl_profile_on_reload_keeps_the_last_good_copy(
    tmp_path: Path, build: Callable[[CA], bytes], message: str
) -> None:
    p = _pki()
    path = tmp_path / "inter.crl"
    path.write_bytes(p.inter.revoke(p.leaf).bytes())
    (tmp_path / "root.crl").write_bytes(_crl(p.root))
    crls = CRLSet.from_paths(tmp_path, reload_interval=None)
    assert _outcome(crls, p.chain) == "revoked"
    path.write_bytes(_as_pem(build(p.inter)))
    assert crls.reload() is False  # never raises
    assert re.search(message, str(crls.health()["last_error"]))
    assert _outcome(crls, p.chain) == "revoked"


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"-----BEGIN X509 CRL-----\nMIIB\n", id="truncated PEM"),
        pytest.param(b"-----BEGIN X509 CRL-----\n!!!!\n-----END X509 CRL-----\n", id="bad base64"),
        pytest.param(b"-----BEGIN X509 CRL-----\nMIIB\n-----END X509 CRL-----\n", id="not a CRL"),
        pytest.param(
            b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", id="no CRL block"
        ),
    ],
)
def test_unparsable_pem_is_a_value_error(data: bytes) -> None:
    with pytest.raises(ValueError, match="PEM input"):
        CRLSet.from_pem(data)


def test_der_and_multi_pem_inputs() -> None:
    p = _pki()
    revoked = p.inter.revoke(p.leaf, reason=x509.ReasonFlags.key_compromise)
    der_inter = x509.load_pem_x509_crl(revoked.bytes()).public_bytes(serialization.Encoding.DER)
    der_root = p.root.crl(encoding="der").bytes()
    assert _outcome(CRLSet.from_der(der_inter, der_root), p.chain) == "revoked"
    assert _outcome(CRLSet.from_pem(revoked.text() + p.root.crl().text()), p.chain) == "revoked"
    with pytest.raises(ValueError, match="DER input #1"):
        CRLSet.from_der(b"\x30\x03\x02\x01\x00")


def test_returns_earliest_next_update_plus_grace() -> None:
    p = _pki()
    soon, later = NOW + dt.timedelta(hours=2), NOW + dt.timedelta(days=3)
    pem = _crl(p.inter, next_update=later) + _crl(p.root, next_update=soon)
    grace = dt.timedelta(minutes=7)
    assert CRLSet.from_pem(pem).check(p.chain, at=NOW) == soon
    assert CRLSet.from_pem(pem, grace=grace).check(p.chain, at=NOW) == soon + grace
    assert CRLSet.from_pem(pem, scope="leaf").check(p.chain, at=NOW) == later


@pytest.mark.parametrize(
    "chain",
    [
        pytest.param("garbage", id="not certificates"),
        pytest.param([object(), object()], id="objects"),
        pytest.param(None, id="None"),
        pytest.param([], id="empty"),
        pytest.param([object()], id="one object"),
        pytest.param(("x",), id="one string"),
    ],
)
def test_check_fails_closed_on_nonsense(chain: object) -> None:
    crls = CRLSet.from_pem(_crl(CA()))
    with pytest.raises(RevocationUnavailable) as info:
        crls.check(chain, at=NOW)  # type: ignore[arg-type]
    assert "Error" not in info.value.detail  # no exception type names for the client


def test_naive_time_fails_closed() -> None:
    p = _pki()
    crls = CRLSet.from_pem(_crl(p.inter) + _crl(p.root))
    with pytest.raises(RevocationUnavailable):
        crls.check(p.chain, at=NOW.replace(tzinfo=None))


def test_chain_of_one_needs_no_crl() -> None:
    ca = CA()
    assert CRLSet.from_pem(_crl(CA())).check([ca.certificate], at=NOW) is None


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"scope": "all"}, ValueError),
        ({"allow_missing": "yes"}, TypeError),
        ({"grace": 5}, TypeError),
        ({"grace": dt.timedelta(seconds=-1)}, ValueError),
    ],
)
def test_bad_options_raise_at_construction(
    kwargs: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        CRLSet.from_pem(_crl(CA()), **kwargs)  # type: ignore[arg-type]


def test_logs_before_next_update_and_when_stale(caplog: pytest.LogCaptureFixture) -> None:
    p = _pki()
    pem = _crl(p.inter, next_update=NOW + dt.timedelta(minutes=30)) + _crl(p.root)
    crls = CRLSet.from_pem(pem, warn_before=dt.timedelta(hours=1))
    with caplog.at_level(logging.WARNING, logger="mtlsauth"):
        crls.check(p.chain, at=NOW)
        crls.check(p.chain, at=NOW)
        with pytest.raises(RevocationUnavailable):
            crls.check(p.chain, at=NOW + dt.timedelta(minutes=31))
    near = [r for r in caplog.records if "not yet replaced" in r.getMessage()]
    stale = [r for r in caplog.records if "failing closed" in r.getMessage()]
    assert len(near) == 1  # once, not per request
    assert near[0].levelno == logging.WARNING
    assert len(stale) == 1
    assert stale[0].levelno == logging.ERROR


def test_what_if_checks_leave_no_marks(caplog: pytest.LogCaptureFixture) -> None:
    """A hypothetical check in the future must not use up the real "stale" error log."""
    from mtlsauth._revocation._crl import what_if

    p = _pki()
    crls = CRLSet.from_pem(_crl(p.inter, next_update=NOW + dt.timedelta(minutes=30)) + _crl(p.root))
    later = NOW + dt.timedelta(minutes=31)
    with caplog.at_level(logging.WARNING, logger="mtlsauth"):
        with what_if(), pytest.raises(RevocationUnavailable):
            crls.check(p.chain, at=later)
        assert not [r for r in caplog.records if "failing closed" in r.getMessage()]
        with pytest.raises(RevocationUnavailable):
            crls.check(p.chain, at=later)
    assert len([r for r in caplog.records if "failing closed" in r.getMessage()]) == 1


def test_health_reports_crls() -> None:
    p = _pki()
    soon = NOW + dt.timedelta(hours=3)
    h = CRLSet.from_pem(_crl(p.inter, next_update=soon) + _crl(p.root)).health()
    assert h["earliest_next_update"] == soon.isoformat()
    assert h["last_error"] is None
    assert len(h["crls"]) == 2  # type: ignore[arg-type]


def test_verifier_refuses_revoked_even_from_cache() -> None:
    p = _pki()
    crls = CRLSet.from_pem(p.inter.revoke(p.leaf).bytes() + p.root.crl().bytes())
    verifier = Verifier(trust_store=p.root.trust_store(), revocation=crls)
    other = p.inter.issue_client_cert(common_name="other")
    assert verifier.verify(other.chain_pem.text()).common_name == "other"
    assert verifier.verify(other.chain_pem.text()).common_name == "other"  # cache hit
    for _ in range(2):
        with pytest.raises(CertificateRevoked) as info:
            verifier.verify(p.leaf.chain_pem.text())
        assert info.value.code == "certificate_revoked"


def test_hot_path_is_cheap() -> None:
    p = _pki()
    crls = CRLSet.from_pem(_crl(p.inter) + _crl(p.root))
    chain = p.chain
    crls.check(chain, at=NOW)  # first call verifies the signatures
    n = 2000
    t = time.perf_counter()
    for _ in range(n):
        crls.check(chain, at=NOW)
    per_call = (time.perf_counter() - t) / n
    assert per_call < 100e-6, f"{per_call * 1e6:.1f} us per check"


@pytest.fixture(scope="session")
def big_crl(tmp_path_factory: pytest.TempPathFactory) -> tuple[CA, Path]:
    """A 100,000-entry CRL made by ``openssl ca -gencrl`` (cryptography's builder needs ~25 s)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command line is not installed")
    d = tmp_path_factory.mktemp("bigcrl")
    ca = CA(organization="Big CRL")
    ca.cert_pem.write_to_path(d / "ca.pem")
    (d / "key.pem").write_bytes(
        ca.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (d / "index.txt").write_text(
        "".join(
            f"R\t491231000000Z\t260101000000Z\t{i:08X}\tunknown\t/CN=x{i}\n"
            for i in range(1000, 101_000)
        )
    )
    (d / "crlnumber").write_text("01\n")
    (d / "ca.cnf").write_text(
        "[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\ncrlnumber = crlnumber\n"
        "default_md = sha256\ndefault_crl_days = 7\n"
    )
    subprocess.run(
        ["openssl", "ca", "-batch", "-gencrl", "-config", "ca.cnf", "-keyfile", "key.pem",
         "-cert", "ca.pem", "-out", "big.crl"],
        cwd=d, check=True, capture_output=True,
    )  # fmt: skip
    return ca, d / "big.crl"


def test_a_100k_entry_crl_from_openssl_loads_and_answers(big_crl: tuple[CA, Path]) -> None:
    """A CRL of 100,000 entries written by ``openssl ca -gencrl``: the listed serial is
    revoked, any other passes, at the CRL's own time (the fixture may run long after this
    module's ``NOW``). That the look-up does not grow with the CRL is measurement 3 of the
    benchmarks (``benchmarks/bench_crl.py``), not a timed test."""
    ca, path = big_crl
    crls = CRLSet.from_paths(path, reload_interval=None)
    at = dt.datetime.now(UTC)
    listed = _leaf_with_serial(ca, 50_000)
    absent = ca.issue_client_cert()
    with pytest.raises(CertificateRevoked):
        crls.check([listed.certificate, ca.certificate], at=at)
    assert crls.check([absent.certificate, ca.certificate], at=at) is not None
    near = _leaf_with_serial(ca, 101_000)  # just past the last listed serial
    assert crls.check([near.certificate, ca.certificate], at=at) is not None


def _leaf_with_serial(ca: CA, serial: int) -> ClientCert:
    leaf = ca.issue_client_cert()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "listed")]))
        .issuer_name(ca.certificate.subject)
        .public_key(leaf.private_key.public_key())  # type: ignore[arg-type]
        .serial_number(serial)
        .not_valid_before(NOW - dt.timedelta(hours=1))
        .not_valid_after(NOW + dt.timedelta(days=1))
        .sign(ca.private_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return ClientCert(cert, leaf.private_key, ())


def test_client_detail_does_not_reveal_the_servers_crl_state(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Missing, stale, not-yet-valid, badly signed: one detail for the client, the reason in
    the log for the operator."""
    p = _pki()
    evil = ec.generate_private_key(ec.SECP256R1())
    cases = {
        "no CRL from its issuer": CRLSet.from_pem(_crl(p.root)),
        "expired": CRLSet.from_pem(
            _crl(
                p.inter,
                next_update=NOW - dt.timedelta(hours=1),
                last_update=NOW - dt.timedelta(days=1),
            )
            + _crl(p.root)
        ),
        "not valid yet": CRLSet.from_pem(
            _crl(p.inter, last_update=NOW + dt.timedelta(hours=1)) + _crl(p.root)
        ),
        "not validly signed": CRLSet.from_pem(
            _crl(p.inter, signer=evil, aki_key=p.inter.private_key) + _crl(p.root)
        ),  # type: ignore[arg-type]
    }
    details = set()
    for reason, crls in cases.items():
        caplog.clear()
        with (
            caplog.at_level(logging.WARNING, logger="mtlsauth"),
            pytest.raises(RevocationUnavailable) as info,
        ):
            crls.check(p.chain, at=NOW)
        details.add(info.value.detail)
        assert any(reason in r.getMessage() for r in caplog.records), (reason, caplog.records)
    assert len(details) == 1, details
    assert "CRL" in next(iter(details))
    assert str(NOW.year) not in next(iter(details))


# -- `mode` means the adapters' mode only: CRLSet's is `scope`, OCSPChecker's `failure` ----
def test_former_mode_keywords_still_work_and_warn() -> None:
    from mtlsauth import OCSPChecker

    pem = CA(organization="renamed keywords").crl().bytes()
    with pytest.warns(DeprecationWarning, match=r"CRLSet\(scope=\.\.\.\)"):
        old = CRLSet.from_pem(pem, mode="leaf")
    assert old.scope == "leaf"
    assert CRLSet.from_pem(pem).scope == "chain"
    with pytest.warns(DeprecationWarning, match=r"CRLSet.scope"):
        assert old.mode == "leaf"
    with (
        pytest.raises(ValueError, match="disagree"),
        pytest.warns(DeprecationWarning, match="mode="),
    ):
        CRLSet.from_pem(pem, scope="chain", mode="leaf")
    with pytest.warns(DeprecationWarning, match=r"OCSPChecker\(failure=\.\.\.\)"):
        soft = OCSPChecker(mode="soft-fail")
    assert soft.health()["failure"] == "soft-fail"
    assert OCSPChecker().health()["failure"] == "hard-fail"
    with pytest.raises(ValueError, match='failure must be "hard-fail" or "soft-fail"'):
        OCSPChecker(failure="hard")  # type: ignore[arg-type]


def test_inner_and_outer_crl_signature_algorithms_are_compared_here() -> None:
    """cryptography 45 to 48 parse a CRL whose tbsCertList.signature differs from its
    signatureAlgorithm; the loader compares them itself (RFC 5280 5.1.1.2), on CRLs of any
    size, so the refusal does not depend on the release."""
    from mtlsauth._revocation._load import _same_signature_algorithms

    ca = CA()
    good = x509.load_pem_x509_crl(_crl(ca)).public_bytes(serialization.Encoding.DER)
    assert _same_signature_algorithms(good)
    assert _same_signature_algorithms(_resigned(ca, lambda f: f))  # re-signed, unchanged
    assert not _same_signature_algorithms(_resigned(ca, lambda f: [f[0], _inner_alg(f[1]), *f[2:]]))
    assert not _same_signature_algorithms(good[:-1])  # cut short
    assert not _same_signature_algorithms(b"")
    no_version = _resigned(ca, lambda f: f[1:])  # v1 layout: the algorithm comes first
    assert _same_signature_algorithms(no_version)


def test_a_partition_lost_from_a_half_written_file_is_not_missing(tmp_path: Path) -> None:
    """A file holding two partitions of one issuer (CA certificates, then users), cut after
    the first: the issuer is still there, so the reload goes through, and the leaf that only
    the lost partition covered must fail closed, not pass as "no CRL"."""
    p = _pki()
    leaf_revoked = (LEAF(p), x509.ReasonFlags.key_compromise)
    ca_part = _crl(p.inter, extensions=(_idp(only_contains_ca_certs=True),), number=7)
    user_part = _crl(
        p.inter, serials=(leaf_revoked,), extensions=(_idp(only_contains_user_certs=True),)
    )
    path = tmp_path / "inter.pem"
    path.write_bytes(ca_part + user_part)
    (tmp_path / "root.pem").write_bytes(_crl(p.root))
    crls = CRLSet.from_paths(tmp_path, allow_missing=True, reload_interval=None)
    assert _outcome(crls, p.chain) == "revoked"
    path.write_bytes(ca_part)  # the writer stopped at the block boundary
    time.sleep(0.3)
    crls.reload()
    assert _outcome(crls, p.chain) == "unavailable"


@pytest.mark.parametrize("order", ["hold first", "hold last"])
def test_a_serial_listed_both_on_hold_and_revoked_is_revoked_for_good(order: str) -> None:
    """A CRL that lists a serial twice, once on hold and once for another reason, revokes it
    finally: a newer CRL leaving it out does not release it, whichever entry comes first."""
    p = _pki()
    entries = ((LEAF(p), HOLD), (LEAF(p), KEY_COMPROMISE))
    older = _crl(p.inter, serials=entries if order == "hold first" else entries[::-1], number=1)
    newer = _crl(p.inter, number=2)
    assert _outcome(CRLSet.from_pem(older + newer + _crl(p.root)), p.chain) == "revoked"


def test_with_several_checkers_a_revocation_outranks_unavailability() -> None:
    """Verifier(revocation=(a, b)): when one source cannot tell and another says revoked,
    the answer is certificate_revoked (remembered as such), whatever the order given; the
    certificate is refused either way."""
    p = _pki()
    revoking = CRLSet.from_pem(_crl(p.inter, serials=((LEAF(p), KEY_COMPROMISE),)) + _crl(p.root))
    stale = CRLSet.from_pem(_crl(p.inter, next_update=STALE) + _crl(p.root))
    for checkers in ((stale, revoking), (revoking, stale)):
        verifier = Verifier(trust_store=p.root.trust_store(), revocation=checkers)
        with pytest.raises(CertificateRevoked):
            verifier.verify(p.leaf.chain_pem.text())


def test_crl_numbers_of_different_scopes_are_not_compared() -> None:
    """CRLNumbers count per scope (RFC 5280 5.2.3): a complete CRL numbered 100 is not newer
    than a user-certificates partition numbered 5 that was issued after it. The partition's
    hold is the newer word and must not be cleared by the older complete CRL."""
    p = _pki()
    complete = _crl(p.inter, number=100, last_update=NOW - dt.timedelta(hours=2))
    partition = _crl(
        p.inter,
        serials=((LEAF(p), HOLD),),
        extensions=(_idp(only_contains_user_certs=True),),
        number=5,
    )
    crls = CRLSet.from_pem(complete + partition + _crl(p.root))
    assert _outcome(crls, p.chain) == "revoked"
    # Within one scope the number decides as before: a newer complete CRL releases the hold.
    released = _crl(p.inter, number=101)
    crls = CRLSet.from_pem(complete + partition + released + _crl(p.root))
    assert _outcome(crls, p.chain) == "ok"


def test_a_later_hold_of_another_scope_that_went_stale_fails_closed() -> None:
    p = _pki()
    complete = _crl(p.inter, number=100, last_update=NOW - dt.timedelta(hours=2))
    partition = _crl(
        p.inter,
        serials=((LEAF(p), HOLD),),
        extensions=(_idp(only_contains_user_certs=True),),
        number=5,
        last_update=NOW - dt.timedelta(hours=1),
        next_update=STALE,
    )
    crls = CRLSet.from_pem(complete + partition + _crl(p.root))
    assert _outcome(crls, p.chain) == "unavailable"


@pytest.mark.parametrize("allow_missing", [False, True])
def test_a_reload_never_goes_back_to_an_older_crl(tmp_path: Path, allow_missing: bool) -> None:
    """An older CRL of the issuer, still fresh, written over the newer one (a replay through
    an unauthenticated CRL download, a restored backup): the revocation only the newer one
    carries must not be forgotten. The reload is refused and the newer CRL stays."""
    p = _pki()
    older = _crl(p.inter, number=1)
    newer = _crl(p.inter, serials=((LEAF(p), KEY_COMPROMISE),), number=2)
    path = tmp_path / "inter.pem"
    path.write_bytes(newer)
    (tmp_path / "root.pem").write_bytes(_crl(p.root))
    crls = CRLSet.from_paths(tmp_path, allow_missing=allow_missing, reload_interval=None)
    assert _outcome(crls, p.chain) == "revoked"
    path.write_bytes(older)
    time.sleep(0.3)
    assert crls.reload() is False
    assert "CRLNumber" in str(crls.health()["last_error"])
    assert _outcome(crls, p.chain) == "revoked"
    # Going forward is fine, and so is a file that keeps the newer CRL next to an older one.
    path.write_bytes(older + _crl(p.inter, serials=((LEAF(p), KEY_COMPROMISE),), number=3))
    time.sleep(0.3)
    assert crls.reload() is True
    assert _outcome(crls, p.chain) == "revoked"


def test_deleting_a_crl_file_then_writing_an_older_one_is_refused(tmp_path: Path) -> None:
    p = _pki()
    path = tmp_path / "inter.pem"
    path.write_bytes(_crl(p.inter, serials=((LEAF(p), KEY_COMPROMISE),), number=2))
    (tmp_path / "root.pem").write_bytes(_crl(p.root))
    crls = CRLSet.from_paths(tmp_path, allow_missing=True, reload_interval=None)
    assert _outcome(crls, p.chain) == "revoked"  # CRL #2 used, so its signature is verified
    path.unlink()
    assert crls.reload() is True  # retiring an issuer is allowed
    path.write_bytes(_crl(p.inter, number=1))
    time.sleep(0.3)
    assert crls.reload() is False
    assert "CRLNumber 1, lower than 2" in str(crls.health()["last_error"])


def test_fail_closed_looks_at_every_item_of_the_chain_it_is_given() -> None:
    """``fail_closed`` hands a check only a non-empty list or tuple (subclasses too) of
    certificates: a non-certificate anywhere in it, a look-alike sequence, an iterator or
    an empty chain is refused (``RevocationUnavailable``) without calling the check."""
    from collections.abc import Sequence

    from mtlsauth import RevocationUnavailable
    from mtlsauth._revocation._compose import fail_closed

    ca = CA(organization="items")
    leaf = ca.issue_client_cert(common_name="c").certificate
    root = ca.certificate
    calls: list[object] = []

    def check(chain: object, at: object) -> None:
        calls.append(chain)

    class L(list):  # type: ignore[type-arg]
        pass

    class T(tuple):  # type: ignore[type-arg]
        pass

    class Seq(Sequence):  # type: ignore[type-arg]
        def __len__(self) -> int:
            return 2

        def __getitem__(self, i):  # type: ignore[no-untyped-def]
            return (leaf, root)[i]

    now = dt.datetime.now(dt.timezone.utc)
    for good in ([leaf, root], (leaf,), L([leaf, root]), T([leaf])):
        assert fail_closed(check, good, now, what="test", detail="no") is None  # type: ignore[arg-type]
    assert len(calls) == 4
    for bad in (
        [leaf, root.public_bytes(serialization.Encoding.DER)],
        [None, leaf],
        [leaf, root, "x"],
        L([leaf, 1]),
        T([object()]),
        [],
        (),
        Seq(),
        iter([leaf, root]),
        None,
    ):
        with pytest.raises(RevocationUnavailable):
            fail_closed(check, bad, now, what="test", detail="no")  # type: ignore[arg-type]
    assert len(calls) == 4


def _replace(crls: CRLSet, path: Path, data: bytes) -> bool:
    """Write ``data`` over ``path`` as a download job would, and reload once it settled."""
    path.write_bytes(data)
    past = time.time() - 5
    os.utime(path, (past, past))
    return crls.reload()


def _hours_ago(n: int) -> dt.datetime:
    return NOW - dt.timedelta(hours=n)


@pytest.mark.parametrize(("newer_aki", "older_aki"), [(True, False), (False, True), (False, False)])
def test_a_crl_without_an_authority_key_identifier_counts_for_every_key(
    tmp_path: Path, newer_aki: bool, older_aki: bool
) -> None:
    """The authority key identifier is optional: a CA upgraded between two CRLs may have
    added or dropped it. An older CRL replayed without it (or with it, over a newer one
    without) was another series for the rollback guard and was accepted, forgetting the
    revocations made since. A CRL whose key is unknown is compared with every key's."""
    p = _pki()
    older = _crl(p.inter, number=3, last_update=_hours_ago(5), aki=older_aki)
    newer = _crl(
        p.inter,
        serials=((LEAF(p), KEY_COMPROMISE),),
        number=5,
        last_update=_hours_ago(1),
        aki=newer_aki,
    )
    path = tmp_path / "inter.pem"
    (tmp_path / "root.pem").write_bytes(_crl(p.root))
    path.write_bytes(newer)
    crls = CRLSet.from_paths(tmp_path, allow_missing=True, reload_interval=None)
    assert _outcome(crls, p.chain) == "revoked"
    assert _replace(crls, path, older) is False
    assert "CRLNumber 3, lower than 5" in str(crls.health()["last_error"])
    assert _outcome(crls, p.chain) == "revoked"
    # An older CRL kept next to the newer one takes nothing away: still accepted.
    assert _replace(crls, path, older + newer) is True
    assert _outcome(crls, p.chain) == "revoked"


def test_another_key_of_the_ca_keeps_its_own_numbers(tmp_path: Path) -> None:
    """CRLs that name another key of a same-named CA are not compared with this key's:
    a CA that rolled its key over may number the new key's CRLs afresh."""
    p = _pki()
    other = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "inter.pem"
    (tmp_path / "root.pem").write_bytes(_crl(p.root))
    path.write_bytes(_crl(p.inter, number=5))
    crls = CRLSet.from_paths(tmp_path, reload_interval=None)
    assert _outcome(crls, p.chain) == "ok"
    assert _replace(crls, path, _crl(p.inter, number=1, signer=other, aki_key=other)) is True


def _dp_idp() -> tuple[x509.ExtensionType, bool]:
    return _idp(full_name=[DP])


@pytest.mark.parametrize("change", ["the CA starts naming its CDP", "the CA stops naming it"])
def test_an_older_crl_of_another_scope_cannot_replace_a_newer_one(
    tmp_path: Path, change: str
) -> None:
    """A CA that starts (or stops) putting an Issuing Distribution Point naming its CDP URL
    into its complete CRL starts a new scope, whose CRLNumbers count apart. The CRL from
    before, replayed over the newer one, was another series and accepted. A CRL that is
    numbered below and issued before a verified one of another scope, where one of the two
    is complete, cannot replace it."""
    p = _pki(extra_extensions=[(x509.CRLDistributionPoints([_dp_point()]), False)])
    before, after = ((), (_dp_idp(),)) if change.endswith("CDP") else ((_dp_idp(),), ())
    older = _crl(p.inter, number=3, last_update=_hours_ago(5), extensions=before)
    newer = _crl(
        p.inter,
        serials=((LEAF(p), KEY_COMPROMISE),),
        number=5,
        last_update=_hours_ago(1),
        extensions=after,
    )
    path = tmp_path / "inter.pem"
    (tmp_path / "root.pem").write_bytes(_crl(p.root))
    path.write_bytes(newer)
    crls = CRLSet.from_paths(tmp_path, reload_interval=None)
    assert _outcome(crls, p.chain) == "revoked"
    assert _replace(crls, path, older) is False
    assert "older than one of another scope" in str(crls.health()["last_error"])
    assert _outcome(crls, p.chain) == "revoked"
    # The newer CRL next to the older one, or a newer CRL of the old scope: accepted.
    assert _replace(crls, path, older + newer) is True
    renewed = _crl(p.inter, number=4, last_update=NOW - dt.timedelta(minutes=1), extensions=before)
    assert _replace(crls, path, renewed) is True


def _dp_point() -> x509.DistributionPoint:
    return x509.DistributionPoint([DP], None, None, None)


def test_a_complete_crl_and_partitions_with_their_own_counters_keep_reloading(
    tmp_path: Path,
) -> None:
    """A CA that publishes a complete CRL and a partition, each numbered on its own: a new
    complete CRL numbered below the partition, and a new partition issued before the
    complete one, are forward steps of their own series while the other stays loaded."""
    p = _pki(extra_extensions=[(x509.CRLDistributionPoints([_dp_point()]), False)])
    full, part = tmp_path / "full.pem", tmp_path / "part.pem"
    (tmp_path / "root.pem").write_bytes(_crl(p.root))
    full.write_bytes(_crl(p.inter, number=10, last_update=_hours_ago(3)))
    part.write_bytes(_crl(p.inter, number=500, last_update=_hours_ago(2), extensions=(_dp_idp(),)))
    crls = CRLSet.from_paths(tmp_path, reload_interval=None)
    assert _outcome(crls, p.chain) == "ok"  # both verified
    assert _replace(crls, full, _crl(p.inter, number=11, last_update=_hours_ago(1))) is True
    assert _outcome(crls, p.chain) == "ok"
    partition = _crl(p.inter, number=501, last_update=_hours_ago(2), extensions=(_dp_idp(),))
    assert _replace(crls, part, partition) is True
    assert _outcome(crls, p.chain) == "ok"


def test_a_forged_crl_moves_no_rollback_mark(tmp_path: Path) -> None:
    """A CRL that is not validly signed (any key, the CA's name and key identifier,
    CRLNumber 10**30) loads, since signatures are checked against the chain's CA when it is
    used. It set the rollback mark all the same, and every genuine CRL of the CA was then
    refused as a replay until a restart. Only a CRL found validly signed sets a mark."""
    p = _pki()
    path = tmp_path / "inter.pem"
    (tmp_path / "root.pem").write_bytes(_crl(p.root))
    path.write_bytes(_crl(p.inter, number=1, last_update=_hours_ago(2)))
    crls = CRLSet.from_paths(tmp_path, reload_interval=None)
    assert _outcome(crls, p.chain) == "ok"
    forger = ec.generate_private_key(ec.SECP256R1())
    forged = _crl(p.inter, number=10**30, signer=forger, aki_key=p.inter.private_key)
    assert _replace(crls, path, forged) is True
    assert _outcome(crls, p.chain) == "unavailable"  # unusable, and it fails closed
    genuine = _crl(p.inter, serials=((LEAF(p), KEY_COMPROMISE),), number=2)
    assert _replace(crls, path, genuine) is True
    assert crls.health()["last_error"] is None
    assert _outcome(crls, p.chain) == "revoked"


def test_a_forged_crl_next_to_a_replayed_one_cannot_undo_a_revocation(tmp_path: Path) -> None:
    """The reload guard compared the newest CRL of the new files with the verified mark, and
    could not check signatures. A replayed older CRL, written with a forged block (CRLNumber
    10**30) before it in one PEM file, passed it; the forged CRL was then unusable, and the
    older genuine one, which predates the revocation, admitted the certificate. Only CRLs
    that the key which verified the series signs count at reload now; and when a check
    finds that every CRL of a scope is numbered below one verified before (verified in the
    snapshot a reload was replacing, say), none of them speaks for a certificate."""
    p = _pki()
    path = tmp_path / "inter.pem"
    (tmp_path / "root.pem").write_bytes(_crl(p.root))
    newer = _crl(p.inter, serials=((LEAF(p), KEY_COMPROMISE),), number=5)
    path.write_bytes(newer)
    crls = CRLSet.from_paths(tmp_path, reload_interval=None)
    assert _outcome(crls, p.chain) == "revoked"
    older = _crl(p.inter, number=4, last_update=_hours_ago(1))
    assert _replace(crls, path, older) is False  # a replay alone is refused at reload
    forger = ec.generate_private_key(ec.SECP256R1())
    forged = _crl(p.inter, number=10**30, signer=forger, aki_key=p.inter.private_key)
    unnamed = _crl(p.inter, number=10**30, signer=forger, aki=False)
    for decoy in (forged, unnamed):  # with the CA's key identifier, or without one
        assert _replace(crls, path, decoy + older) is False
        assert "lower than 5" in str(crls.health()["last_error"])
        assert _outcome(crls, p.chain) == "revoked"
    # The newer CRL verified only in the snapshot the replay replaced: the check refuses.
    # A revocation in such a CRL is still final.
    revoking = _crl(p.inter, serials=((LEAF(p), KEY_COMPROMISE),), number=3)
    for replayed, expected in ((older, "unavailable"), (revoking, "revoked")):
        race = tmp_path / expected
        race.mkdir()
        (race / "root.pem").write_bytes(_crl(p.root))
        (race / "inter.pem").write_bytes(newer)
        crls = CRLSet.from_paths(race, reload_interval=None)
        first = crls.token
        assert _replace(crls, race / "inter.pem", forged + replayed) is True  # none verified
        first.candidates(p.inter.certificate)  # type: ignore[attr-defined]  # a request on it
        assert _outcome(crls, p.chain) == expected
    # A newer genuine CRL is used again.
    assert _replace(crls, race / "inter.pem", _crl(p.inter, number=6)) is True
    assert _outcome(crls, p.chain) == "ok"


@pytest.mark.parametrize("change", ["the CA starts naming its CDP", "the CA stops naming it"])
def test_a_forged_crl_does_not_hide_an_older_crl_of_another_scope(
    tmp_path: Path, change: str
) -> None:
    """The reload guard takes the newest CRL of a verified scope that the new files hold as
    the series' next step, and compares across scopes only when they hold none. A forged
    block of the newer scope (CRLNumber 10**30) made the series look present, and the older
    CRL of the other scope, replayed next to it, was accepted and used. CRLs that the key
    which verified a series does not sign are no step of it."""
    p = _pki(extra_extensions=[(x509.CRLDistributionPoints([_dp_point()]), False)])
    before, after = ((), (_dp_idp(),)) if change.endswith("CDP") else ((_dp_idp(),), ())
    older = _crl(p.inter, number=3, last_update=_hours_ago(5), extensions=before)
    newer = _crl(
        p.inter, serials=((LEAF(p), KEY_COMPROMISE),), number=5, last_update=_hours_ago(1),
        extensions=after,
    )  # fmt: skip
    path = tmp_path / "inter.pem"
    (tmp_path / "root.pem").write_bytes(_crl(p.root))
    path.write_bytes(newer)
    crls = CRLSet.from_paths(tmp_path, reload_interval=None)
    assert _outcome(crls, p.chain) == "revoked"
    forger = ec.generate_private_key(ec.SECP256R1())
    forged = _crl(
        p.inter, number=10**30, signer=forger, aki_key=p.inter.private_key, extensions=after
    )
    assert _replace(crls, path, forged + older) is False
    assert "older than one of another scope" in str(crls.health()["last_error"])
    assert _outcome(crls, p.chain) == "revoked"


def test_a_crl_verified_in_a_replaced_snapshot_still_sets_the_mark(tmp_path: Path) -> None:
    """A CRL is verified when a certificate of its CA is first checked, which may happen in
    the snapshot a reload is replacing. The mark it sets counts for the snapshots after it."""
    p = _pki()
    path = tmp_path / "inter.pem"
    (tmp_path / "root.pem").write_bytes(_crl(p.root))
    path.write_bytes(_crl(p.inter, serials=((LEAF(p), KEY_COMPROMISE),), number=5))
    crls = CRLSet.from_paths(tmp_path, reload_interval=None)
    first = crls.token
    assert _replace(crls, tmp_path / "root.pem", _crl(p.root, number=2)) is True
    assert crls.token is not first
    first.candidates(p.inter.certificate)  # type: ignore[attr-defined]  # a request still on it
    assert _replace(crls, path, _crl(p.inter, number=4, last_update=_hours_ago(1))) is False
    assert _outcome(crls, p.chain) == "revoked"


def test_allow_missing_skips_no_issuer_while_a_reload_is_refused(tmp_path: Path) -> None:
    """A CRL file added for an issuer none was loaded for, which cannot be loaded (here a
    critical extension not understood), kept the last good CRLs, where the issuer has no
    CRL: under allow_missing it counted as missing, and the certificates its CRL revokes
    were admitted. While the files on disk are refused, no issuer counts as missing."""
    p = _pki()
    (tmp_path / "root.pem").write_bytes(_crl(p.root))
    crls = CRLSet.from_paths(tmp_path, allow_missing=True, reload_interval=None)
    assert _outcome(crls, p.chain) == "ok"  # the intermediate has no CRL: missing
    odd = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"\x05\x00")
    (tmp_path / "inter.pem").write_bytes(
        _crl(p.inter, serials=((LEAF(p), KEY_COMPROMISE),), extensions=((odd, True),))
    )
    time.sleep(0.3)
    assert crls.reload() is False
    assert "critical CRL extension" in str(crls.health()["last_error"])
    assert _outcome(crls, p.chain) == "unavailable"
    # The file fixed, the revocation counts; removed, the issuer is missing again.
    (tmp_path / "inter.pem").write_bytes(_crl(p.inter, serials=((LEAF(p), KEY_COMPROMISE),)))
    time.sleep(0.3)
    assert crls.reload() is True
    assert _outcome(crls, p.chain) == "revoked"
