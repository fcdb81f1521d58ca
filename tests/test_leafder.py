"""The leaf's DER read once (``_leafder``): what it vouches for is what cryptography reads.

Three oracles, each against cryptography itself:

* ``read_leaf`` finds the TBSCertificate, names, key and extensions exactly where
  cryptography does (or declines);
* ``extensions_read`` says yes only for certificates whose ``extensions`` cryptography reads
  without an error, and ``san_values`` gives the values cryptography gives;
* ``profile_passes`` says yes only where the keyUsage and SAN validators that
  ``_pathvalidation`` hands cryptography's verifier pass.

Then the whole verification, differential: ``Verifier.verify`` with the DER reading and with
it switched off (the full reading through cryptography alone) gives the same identity, the
same policy verdicts, or the same refusal (code and detail), for leaves carrying every
extension form the reader vouches for and many it does not (explicit FALSE criticality,
duplicated extensions, unknown critical ones, non-ASCII names, masked addresses, ...).
"""

from __future__ import annotations

import dataclasses
import warnings
from unittest import mock

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.verification import VerificationError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _x509_forge import assemble, split, tlv
from mtlsauth import MTLSAuthError, Policy, Verifier, _leafder
from mtlsauth._cache import policy_verdict
from mtlsauth._der import encode_oid, item, item_in_window
from mtlsauth._identity import identity_from_certificate, subject_organizations
from mtlsauth._leafder import (
    extensions_read,
    profile_passes,
    read_leaf,
    san_values,
)
from mtlsauth._pathvalidation import check_leaf_profile
from mtlsauth.testing import CA

_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_ROOT = CA()
_INTER = _ROOT.intermediate()
_KEY = _INTER.private_key
assert isinstance(_KEY, ec.EllipticCurvePrivateKey)
_BASE = _INTER.issue_client_cert(common_name="base", organization="Acme").certificate
_BASE_DER = _BASE.public_bytes(Encoding.DER)
_INTER_DER = _INTER.certificate.public_bytes(Encoding.DER)


def _ext(oid: str, value: bytes, critical: bytes | None = None) -> bytes:
    flag = tlv(0x01, critical) if critical is not None else b""
    return tlv(0x30, tlv(0x06, encode_oid(oid)) + flag + tlv(0x04, value))


def _tbs_fields(der: bytes) -> list[bytes]:
    tbs, _, _ = split(der)
    _, pos, end = item(tbs, 0, len(tbs))
    fields = []
    while pos < end:
        _, _, stop = item(tbs, pos, end)
        fields.append(tbs[pos:stop])
        pos = stop
    return fields


def _leaf(extensions: list[bytes] | None, subject: bytes | None = None) -> bytes:
    """The base leaf with its extensions (and subject) replaced, signed again by the CA."""
    fields = _tbs_fields(_BASE_DER)
    if subject is not None:
        fields[5] = subject
    fields = fields[:7]  # version .. subjectPublicKeyInfo
    if extensions is not None:
        fields.append(tlv(0xA3, tlv(0x30, b"".join(extensions))))
    tbs = tlv(0x30, b"".join(fields))
    _, alg, _ = split(_BASE_DER)
    return assemble(tbs, alg, _KEY.sign(tbs, ec.ECDSA(hashes.SHA256())))


def _load(der: bytes) -> x509.Certificate | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return x509.load_der_x509_certificate(der)
    except ValueError:
        return None


# --- extension values: every form the reader vouches for, and neighbours it must not ------

_CLIENT_AUTH = tlv(0x06, encode_oid("1.3.6.1.5.5.7.3.2"))
_SERVER_AUTH = tlv(0x06, encode_oid("1.3.6.1.5.5.7.3.1"))
_ANY_EKU = tlv(0x06, encode_oid("2.5.29.37.0"))
_BC = [
    b"\x30\x00",
    b"\x30\x03\x01\x01\xff",
    b"\x30\x03\x01\x01\x00",  # cA FALSE spelt out: not DER
    b"\x30\x03\x02\x01\x05",  # pathLen without cA
    b"\x30\x06\x01\x01\xff\x02\x01\x00",
    b"\x30\x06\x01\x01\xff\x02\x01\x80",  # negative pathLen
    b"\x30\x07\x01\x01\xff\x02\x02\x00\x80",
    b"\x05\x00",
]
_EKU = [
    tlv(0x30, _CLIENT_AUTH),
    tlv(0x30, _SERVER_AUTH),
    tlv(0x30, _ANY_EKU),
    tlv(0x30, _SERVER_AUTH + _CLIENT_AUTH),
    b"\x30\x00",
    b"\x30\x03\x06\x01\x80",  # a non-terminated arc
    b"\x30\x04\x06\x02\x80\x01",  # a leading zero septet
    b"\x30\x02\x06\x00",
    tlv(0x30, tlv(0x06, encode_oid("1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.17.18.19.20.21"))),
]
_SKI = [b"\x04\x02\xab\xcd", b"\x04\x00", b"\x05\x00", b"\x04\x14" + bytes(20)]
_AKI = [
    b"\x30\x04\x80\x02\xab\xcd",
    b"\x30\x00",
    b"\x30\x02\x80\x00",
    b"\x30\x08\x80\x02\xab\xcd\x82\x02\x01\x02",  # a serial without an issuer
    x509.AuthorityKeyIdentifier(b"\x01\x02", [x509.DNSName("ca.example")], 7).public_bytes(),
]
_IA5 = st.sampled_from([b"a.example", b"*.b.example", b"", b"spiffe://td/w", b"u@x.example"])
_RAW_NAMES = st.one_of(
    st.builds(tlv, st.sampled_from([0x81, 0x82, 0x86]), _IA5),
    st.builds(
        tlv,
        st.sampled_from([0x81, 0x82, 0x86]),
        st.sampled_from([b"\xc3\xa9.example", b"\xff", b"a\x00b", b"\x7f"]),
    ),
    st.builds(tlv, st.just(0x87), st.sampled_from([bytes(4), bytes(16), bytes(8), bytes(5), b""])),
    st.builds(tlv, st.just(0x87), st.binary(min_size=4, max_size=4)),
    st.builds(tlv, st.just(0x87), st.binary(min_size=16, max_size=16)),
    st.just(tlv(0x88, encode_oid("1.2.3.4"))),
    st.just(tlv(0xA0, tlv(0x06, encode_oid("1.2.3.5")) + tlv(0xA0, b"\x05\x00"))),
    st.just(tlv(0xA4, x509.Name([]).public_bytes())),
    st.just(tlv(0xA2, tlv(0x16, b"a.example"))),  # constructed [2]
    st.just(tlv(0x83, b"x")),  # x400Address, primitive: not a GeneralName encoding
)
_SAN = st.one_of(
    st.lists(_RAW_NAMES, max_size=4).map(lambda names: tlv(0x30, b"".join(names))),
    st.just(b"\x04\x00"),
)


def _ku_values() -> list[bytes]:
    out = [b"\x03\x01\x00", b"\x03\x00", b"\x04\x02\x07\x80"]
    for unused in range(9):
        for first in (0x80, 0x88, 0x08, 0x09, 0x01, 0x84, 0x86, 0xA0, 0x00, 0x40, 0xFF, 0xF8):
            out.append(bytes([0x03, 0x02, unused, first]))
        for first, second in ((0x88, 0x80), (0x80, 0x80), (0x80, 0x00), (0x88, 0x01)):
            out.append(bytes([0x03, 0x03, unused, first, second]))
    return out


_KU = _ku_values()
# Mostly absent or TRUE; now and then a BOOLEAN that DER does not allow here.
_CRITICAL = st.sampled_from([None] * 12 + [b"\xff"] * 6 + [b"\x00", b"\x01", b"\xff\xff"])


@st.composite
def _extension(draw: st.DrawFn) -> tuple[str, bytes]:
    oid, values = draw(
        st.sampled_from(
            [
                ("2.5.29.19", st.sampled_from([*_BC, b"\x30\x00", b"\x30\x00"])),
                ("2.5.29.15", st.sampled_from(_KU)),
                ("2.5.29.37", st.sampled_from([*_EKU, *_EKU[:4]])),
                ("2.5.29.14", st.sampled_from(_SKI)),
                ("2.5.29.35", st.sampled_from(_AKI)),
                ("2.5.29.17", _SAN),
                ("2.5.29.31", st.sampled_from([b"\x30\x00", b"\x05\x00"])),  # CRL DP
                ("1.3.6.1.5.5.7.1.1", st.sampled_from([b"\x30\x00", b"\x02\x01\x01"])),  # AIA
                ("1.2.3.4", st.binary(max_size=4)),  # unknown to everyone
            ]
        )
    )
    return oid, _ext(oid, draw(values), draw(_CRITICAL))


_EXTENSIONS = st.one_of(
    st.none(),
    st.lists(_extension(), max_size=7, unique_by=lambda e: e[0]),  # each type at most once
    st.lists(_extension(), max_size=7, unique_by=lambda e: e[0]),
    st.lists(_extension(), max_size=4),  # repeats
).map(lambda exts: None if exts is None else [e for _, e in exts])
_SUBJECTS = st.sampled_from(
    [
        None,
        b"\x30\x00",
        x509.Name([x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME, "Acme")]).public_bytes(),
    ]
)


# --- oracle 1: where the parts are ----------------------------------------------------------


def _facts_match(der: bytes) -> None:
    facts = read_leaf(der)
    cert = _load(der)
    if facts is None or cert is None:
        return
    try:  # cryptography reads lazily: a part it cannot read has nothing to compare
        tbs, issuer = cert.tbs_certificate_bytes, cert.issuer.public_bytes()
        subject = cert.subject.public_bytes()
    except ValueError:
        return
    assert (facts.tbs, facts.issuer, facts.subject) == (tbs, issuer, subject)
    assert facts.serial == cert.serial_number
    try:
        spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    except Exception:  # noqa: BLE001 - a key cryptography cannot load: nothing to compare
        spki = None
    if spki is not None:
        assert facts.spki == spki
    try:
        extensions = cert.extensions
    except Exception:  # noqa: BLE001 - cryptography refuses them: the reader must not vouch
        assert not extensions_read(facts)
        return
    got = {oid: critical for oid, (critical, _) in facts.extensions.items()}
    want = {encode_oid(e.oid.dotted_string): e.critical for e in extensions}
    assert got == want


@_SETTINGS
@given(extensions=_EXTENSIONS, subject=_SUBJECTS)
def test_the_parts_are_where_cryptography_finds_them(
    extensions: list[bytes] | None, subject: bytes | None
) -> None:
    _facts_match(_leaf(extensions, subject))


def test_unusual_shapes_are_declined() -> None:
    fields = _tbs_fields(_BASE_DER)
    _, alg, sig = split(_BASE_DER)
    v1 = tlv(0x30, b"".join(fields[1:7]))  # no version: v1
    assert read_leaf(assemble(v1, alg, sig)) is None
    unique_id = tlv(0x30, b"".join(fields[:7]) + tlv(0x81, b"\x00\x01") + fields[7])
    assert read_leaf(assemble(unique_id, alg, sig)) is None
    dup = _ext("2.5.29.14", b"\x04\x01\x01")
    assert read_leaf(_leaf([dup, dup])) is None
    assert read_leaf(_leaf([_ext("2.5.29.14", b"\x04\x01\x01", b"\x00")])) is None
    assert read_leaf(_BASE_DER + b"\x00") is None
    negative = fields[1][:2] + bytes([fields[1][2] | 0x80]) + fields[1][3:]
    tbs = tlv(0x30, b"".join([fields[0], negative, *fields[2:]]))
    assert read_leaf(assemble(tbs, alg, sig)) is None
    assert read_leaf(b"") is None
    assert read_leaf(b"\x30\x80\x00\x00") is None


@_SETTINGS
@given(data=st.data())
def test_corrupted_certificates_never_raise(data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(_BASE_DER) - 1))
    j = data.draw(st.integers(i, min(len(_BASE_DER), i + 8)))
    corrupted = _BASE_DER[:i] + data.draw(st.binary(max_size=8)) + _BASE_DER[j:]
    facts = read_leaf(corrupted)  # None or facts, never an exception
    if facts is not None:
        extensions_read(facts)
        profile_passes(facts)
        _facts_match(corrupted)


# --- oracle 2: extensions cryptography reads, SAN values ------------------------------------


def _san_of(cert: x509.Certificate) -> tuple[tuple[object, ...], ...]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return (), (), (), ()
    return (
        tuple(san.get_values_for_type(x509.DNSName)),
        tuple(san.get_values_for_type(x509.UniformResourceIdentifier)),
        tuple(san.get_values_for_type(x509.RFC822Name)),
        tuple(san.get_values_for_type(x509.IPAddress)),
    )


def _vouched_is_read(der: bytes) -> bool:
    facts = read_leaf(der)
    cert = _load(der)
    if facts is None or cert is None or not extensions_read(facts):
        return False
    cert.extensions  # noqa: B018 - must not raise: the reader vouched for it
    san = facts.extensions.get(_leafder.SAN_OID)
    if san is not None:
        assert san_values(san[1]) == _san_of(cert)
    assert facts.san() == _san_of(cert)  # read once, the same values
    return True


@_SETTINGS
@given(extensions=_EXTENSIONS, subject=_SUBJECTS)
def test_vouched_extensions_are_read_by_cryptography(
    extensions: list[bytes] | None, subject: bytes | None
) -> None:
    _vouched_is_read(_leaf(extensions, subject))


@pytest.mark.parametrize("value", _KU)
def test_every_key_usage_form_is_read_as_cryptography_reads_it(value: bytes) -> None:
    der = _leaf([_ext("2.5.29.15", value)])
    cert = _load(der)
    assert cert is not None
    bits = _leafder._key_usage(value)
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except ValueError:
        assert bits is None
        return
    if bits is not None:
        assert bits == (ku.digital_signature, ku.key_agreement, ku.key_cert_sign)


def test_common_forms_are_vouched_for() -> None:
    """The reader must actually vouch for ordinary certificates, or it saves nothing."""
    ordinary = [
        _BASE_DER,
        _INTER.issue_client_cert(
            dns_names=["a.example"], uris=["spiffe://td/w"], emails=["u@example.com"],
            ip_addresses=["10.0.0.1", "::1"],
        ).certificate.public_bytes(Encoding.DER),
        _leaf([_ext("2.5.29.15", b"\x03\x02\x07\x80", b"\xff")]),
        _leaf([_ext("2.5.29.15", b"\x03\x02\x03\x88")]),
        _leaf([_ext("2.5.29.19", b"\x30\x00", b"\xff"), _ext("2.5.29.37", _EKU[3])]),
    ]  # fmt: skip
    for der in ordinary:
        facts = read_leaf(der)
        assert facts is not None
        assert extensions_read(facts)
        assert profile_passes(facts)
        assert _vouched_is_read(der)


# --- oracle 3: the profile validators --------------------------------------------------------


@_SETTINGS
@given(extensions=_EXTENSIONS, subject=_SUBJECTS)
def test_the_profile_passes_only_where_the_validators_pass(
    extensions: list[bytes] | None, subject: bytes | None
) -> None:
    der = _leaf(extensions, subject)
    facts = read_leaf(der)
    if facts is None or not profile_passes(facts):
        return
    # The validators see the subject, the SAN (with its flag) and the keyUsage, parsed by
    # cryptography: the same leaf with only those two extensions shows what they decide.
    kept = [
        _ext_raw(oid, flag, value)
        for oid, (flag, value) in facts.extensions.items()
        if oid in (_leafder.SAN_OID, _leafder.KEY_USAGE_OID)
    ]
    probe = _load(_leaf(kept or None, subject))
    assert probe is not None
    check_leaf_profile(probe)  # raises CertificateInvalid where a validator refuses


def _ext_raw(oid: bytes, critical: bool, value: bytes) -> bytes:
    flag = tlv(0x01, b"\xff") if critical else b""
    return tlv(0x30, tlv(0x06, oid) + flag + tlv(0x04, value))


# --- the whole verification, with and without the DER reading -----------------------------

_POLICIES = (
    Policy(organizations={"acme"}),
    Policy(subjects={"CN=base,O=Acme"}),
    Policy(dns_names={"a.example"}),
    Policy(common_names={"base"}),
)


def _verify(chain: tuple[bytes, ...], *, reading: bool) -> object:
    verifier = Verifier(trust_store=_ROOT.trust_store(), cache_size=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if reading:
            return _outcome(lambda: verifier.verify(chain))
        with mock.patch("mtlsauth._verifier.read_leaf", return_value=None):
            return _outcome(lambda: verifier.verify(chain))


def _outcome(run: object) -> object:
    try:
        identity = run()  # type: ignore[operator]
    except MTLSAuthError as exc:
        return ("refused", type(exc).__name__, exc.code, exc.detail)
    fields = dataclasses.asdict(identity)
    for name in ("certificate", "chain", "_organizations_from"):
        fields.pop(name)
    verdicts = [policy_verdict(p, identity) for p in _POLICIES]
    known = subject_organizations(identity)
    return fields, identity.issuer_name, verdicts, known


def _same_verification(der: bytes) -> object:
    chain = (der, _INTER_DER)
    want = _verify(chain, reading=False)
    got = _verify(chain, reading=True)
    assert got == want
    return got


@_SETTINGS
@given(extensions=_EXTENSIONS, subject=_SUBJECTS)
def test_verification_is_the_same_with_and_without_the_reading(
    extensions: list[bytes] | None, subject: bytes | None
) -> None:
    _same_verification(_leaf(extensions, subject))


_GOOD_NAMES = st.one_of(
    st.builds(tlv, st.sampled_from([0x81, 0x82, 0x86]), _IA5),
    st.builds(tlv, st.just(0x87), st.binary(min_size=4, max_size=4)),
    st.builds(tlv, st.just(0x87), st.binary(min_size=16, max_size=16)),
)
_ORDINARY = st.tuples(
    st.sampled_from([None, b"\x30\x00", b"\x30\x06\x01\x01\xff\x02\x01\x00"]),  # BC
    st.sampled_from([None, b"\x03\x02\x07\x80", b"\x03\x02\x03\x88", b"\x03\x02\x05\xa0"]),
    st.sampled_from([None, *_EKU[:4]]),
    st.lists(_GOOD_NAMES, min_size=1, max_size=4).map(lambda n: tlv(0x30, b"".join(n))),
    st.booleans(),  # with a SAN
    st.booleans(),  # keyUsage critical
).map(
    lambda t: [
        e
        for e in (
            _ext("2.5.29.19", t[0], b"\xff") if t[0] else None,
            _ext("2.5.29.15", t[1], b"\xff" if t[5] else None) if t[1] else None,
            _ext("2.5.29.37", t[2]) if t[2] else None,
            _ext("2.5.29.14", b"\x04\x02\xab\xcd"),
            _ext("2.5.29.35", b"\x30\x04\x80\x02\xab\xcd"),
            _ext("2.5.29.17", t[3]) if t[4] else None,
        )
        if e is not None
    ]
)


@_SETTINGS
@given(extensions=_ORDINARY)
def test_verification_of_ordinary_leaves_is_the_same(extensions: list[bytes]) -> None:
    _same_verification(_leaf(extensions))


_EE = [
    _ext("2.5.29.19", b"\x30\x00", b"\xff"),
    _ext("2.5.29.37", tlv(0x30, _CLIENT_AUTH)),
]


@pytest.mark.parametrize(
    ("extensions", "subject", "code"),
    [
        ([*_EE, _ext("2.5.29.15", b"\x03\x02\x02\x84")], None, "invalid_usage"),  # keyCertSign
        ([*_EE, _ext("2.5.29.15", b"\x03\x02\x05\x20")], None, "invalid_usage"),  # no signing
        ([*_EE, _ext("2.5.29.17", tlv(0x30, tlv(0x82, b"a")), b"\xff")], None, "certificate_malformed"),
        ([*_EE, _ext("2.5.29.17", tlv(0x30, tlv(0x82, b"a")))], b"\x30\x00", "certificate_malformed"),
        (_EE, b"\x30\x00", "certificate_malformed"),  # nobody named
        ([*_EE, _ext("2.5.29.17", tlv(0x30, tlv(0x82, b"\xc3\xa9")))], None, None),
        ([*_EE, _ext("2.5.29.31", b"\x05\x00")], None, "certificate_malformed"),
        ([*_EE, _ext("1.2.3.4", b"", b"\xff")], None, "invalid_usage"),
        ([*_EE, _ext("2.5.29.14", b"\x04\x01\x01"), _ext("2.5.29.14", b"\x04\x01\x01")], None,
         "certificate_malformed"),
        ([*_EE, _ext("2.5.29.17", tlv(0x30, tlv(0x87, bytes(8))))], None, None),
        ([*_EE, _ext("2.5.29.17", tlv(0x30, tlv(0x82, b"a.example")))], None, None),
    ],
)  # fmt: skip
def test_refusals_keep_their_codes(
    extensions: list[bytes], subject: bytes | None, code: str | None
) -> None:
    got = _same_verification(_leaf(extensions, subject))
    if code is None:
        assert got[0] != "refused"  # type: ignore[index]
    else:
        assert got[:3] == ("refused", "CertificateInvalid", code)  # type: ignore[index]


def test_the_fast_validators_are_used_for_ordinary_leaves() -> None:
    """Otherwise the differential above compares the full reading with itself."""
    calls: list[object] = []
    from mtlsauth import _pathvalidation

    real = _pathvalidation._verify

    def spy(*args: object) -> object:
        calls.append(args[-1])
        return real(*args)  # type: ignore[arg-type]

    with mock.patch.object(_pathvalidation, "_verify", spy):
        Verifier(trust_store=_ROOT.trust_store()).verify((_BASE_DER, _INTER_DER))
    assert calls == [_pathvalidation._EE_POLICY_CHECKED]
    facts = read_leaf(_BASE_DER)
    assert facts is not None
    identity = identity_from_certificate(_BASE, der=_BASE_DER, facts=facts)
    assert subject_organizations(identity) == ("Acme",)


def test_the_skipped_validators_would_have_refused_nothing() -> None:
    """With the Python validators, the same leaves verify the same way (cryptography's
    verifier, not only our reading of it): the policy without them differs in nothing else."""
    from datetime import datetime, timezone

    from mtlsauth import _pathvalidation

    leaf = _load(_BASE_DER)
    inter = _load(_INTER_DER)
    assert leaf is not None
    assert inter is not None
    store = _ROOT.trust_store().snapshot().store
    assert store is not None
    now = datetime.now(timezone.utc)
    for policy in (_pathvalidation._EE_POLICY, _pathvalidation._EE_POLICY_CHECKED):
        chain = _pathvalidation._verify(store, leaf, [inter], now, 8, policy)
        assert chain[0] is leaf
    bad = _load(_leaf([*_EE, _ext("2.5.29.15", b"\x03\x02\x02\x84")]))
    assert bad is not None
    with pytest.raises(VerificationError):
        _pathvalidation._verify(store, bad, [inter], now, 8, _pathvalidation._EE_POLICY)


def test_memos_give_what_a_first_reading_gives() -> None:
    """Remembered subject, SAN and key verdicts: a certificate whose bytes were seen before
    gets exactly what reading them afresh gives, refusals included."""
    weak = _INTER.issue_client_cert(key_type="rsa1024").certificate.public_bytes(Encoding.DER)
    first = _same_verification(weak)
    assert first[:3] == ("refused", "CertificateInvalid", "weak_key")  # type: ignore[index]
    assert _same_verification(weak) == first
    assert _same_verification(_BASE_DER) == _same_verification(_BASE_DER)


@_SETTINGS
@given(
    data=st.one_of(
        st.binary(max_size=40),
        st.builds(
            lambda head, n, body: head + n + body,
            st.binary(min_size=1, max_size=1),
            st.sampled_from(
                [b"\x81", b"\x82", b"\x83", b"\x84", b"\x80", b"\x81\x7f", b"\x82\x00"]
            ),
            st.binary(max_size=300),
        ),
    ),
    cut=st.integers(0, 400),
)
def test_the_fast_header_reader_agrees_with_the_strict_one(data: bytes, cut: int) -> None:
    """``_der.item_in_window`` reads exactly what ``_der.item`` reads (it declines only lengths of
    four octets, which no certificate on the request path has)."""
    from mtlsauth._der import DERError

    end = min(cut, len(data))
    try:
        want: object = item(data, 0, end)
    except DERError:
        want = DERError
    try:
        got: object = item_in_window(data, 0, end)
    except DERError:
        got = DERError
    if want is not DERError and data[1] == 0x84:
        assert got is DERError
    else:
        assert got == want


@_SETTINGS
@given(data=st.data())
def test_corrupted_extensions_are_read_as_cryptography_reads_them(data: st.DataObject) -> None:
    """Mutations inside the extensions (lengths and tags included, where the reading takes
    short lengths in place): the reading declines, or finds what cryptography finds."""
    der = _leaf(
        [
            _ext("2.5.29.19", b"\x30\x00", b"\xff"),
            _ext("2.5.29.15", b"\x03\x02\x07\x80", b"\xff"),
            _ext("2.5.29.37", _EKU[3]),
            _ext("2.5.29.17", tlv(0x30, tlv(0x82, b"a.example") + tlv(0x87, bytes(4)))),
            _ext("2.5.29.14", b"\x04\x02\xab\xcd"),
        ]
    )
    fields = _tbs_fields(der)
    start = der.index(fields[7])
    i = data.draw(st.integers(start, start + len(fields[7]) - 1))
    j = data.draw(st.integers(i, min(start + len(fields[7]), i + 4)))
    corrupted = der[:i] + data.draw(st.binary(max_size=4)) + der[j:]
    facts = read_leaf(corrupted)
    if facts is not None:
        extensions_read(facts)
        profile_passes(facts)
        _facts_match(corrupted)


@pytest.mark.parametrize("octets", [1, 2, 8, 16, 20])
def test_the_serial_is_the_one_cryptography_reads(octets: int) -> None:
    for top in (0x01, 0x7F, 0x80, 0xFF):  # with a leading zero octet when the top bit is set
        serial = bytes([top]) + bytes(range(1, octets))
        if top & 0x80:
            serial = b"\x00" + serial[:-1] if octets > 1 else b"\x00" + serial
        fields = _tbs_fields(_BASE_DER)
        fields[1] = tlv(0x02, serial)
        tbs = tlv(0x30, b"".join(fields))
        _, alg, _ = split(_BASE_DER)
        der = assemble(tbs, alg, _KEY.sign(tbs, ec.ECDSA(hashes.SHA256())))
        facts = read_leaf(der)
        assert facts is not None
        assert facts.serial == x509.load_der_x509_certificate(der).serial_number


@pytest.mark.parametrize("serial", [b"\x00", b"\x80\x01", b"\xff", b"\x00\x00"])
def test_a_serial_that_is_not_positive_is_refused_alike(serial: bytes) -> None:
    """The reading declines it, so the parser's own check refuses it, as before."""
    fields = _tbs_fields(_BASE_DER)
    fields[1] = tlv(0x02, serial)
    tbs = tlv(0x30, b"".join(fields))
    _, alg, _ = split(_BASE_DER)
    der = assemble(tbs, alg, _KEY.sign(tbs, ec.ECDSA(hashes.SHA256())))
    assert read_leaf(der) is None
    got = _same_verification(der)
    assert got[:3] == ("refused", "CertificateInvalid", "certificate_malformed")  # type: ignore[index]


def test_memos_by_bytes_keep_no_large_keys() -> None:
    """A client chooses these bytes before anything is verified: a memo of thousands of keys
    must stay small, so values above the bound are read every time, never kept."""
    from mtlsauth import _verifier
    from mtlsauth._leafder import MEMO_MAX_KEY

    big_san = tlv(0x30, b"".join(tlv(0x82, b"a" * 100) for _ in range(MEMO_MAX_KEY // 100 + 1)))
    assert len(big_san) > MEMO_MAX_KEY
    assert san_values(big_san) is not None
    assert big_san not in _leafder._SANS
    small = tlv(0x30, tlv(0x82, b"kept.example"))
    san_values(small)
    assert small in _leafder._SANS
    # A presented "intermediate" of more than 8 KB is parsed, not remembered.
    big_cert = _INTER.issue_client_cert(
        dns_names=[f"n{i}.example" for i in range(700)]
    ).certificate.public_bytes(Encoding.DER)
    assert len(big_cert) > _verifier._PRESENTED_MAX
    _verifier._load_presented(big_cert)
    assert big_cert not in _verifier._PRESENTED


def test_a_flood_of_distinct_values_stays_bounded() -> None:
    for i in range(3 * 1024):
        san_values(tlv(0x30, tlv(0x82, f"h{i}.example".encode())))
    assert len(_leafder._SANS) <= 2 * 1024


def test_name_constraints_leave_nothing_cached_in_the_leaf() -> None:
    """The identity keeps its leaf for as long as it is cached: reading the leaf's subject and
    extensions through it (cryptography caches both inside the object, about 3.5 KB) would
    grow every cached identity under a name-constrained CA. The check reads a throwaway copy."""
    import gc
    import tracemalloc

    from mtlsauth._nameconstraints import check_identity_name_constraints

    root = CA(
        name_constraints=x509.NameConstraints(
            permitted_subtrees=[x509.DNSName("example")], excluded_subtrees=None
        )
    )
    chain = root.issue_client_cert(dns_names=["a.example"]).certificate
    der = chain.public_bytes(Encoding.DER)
    leaves = [x509.load_der_x509_certificate(der) for _ in range(200)]
    check_identity_name_constraints([leaves[0], root.certificate])  # warm the CA's memo
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for leaf in leaves:
            check_identity_name_constraints([leaf, root.certificate])
        gc.collect()
        kept = (tracemalloc.get_traced_memory()[0] - before) / len(leaves)
    finally:
        tracemalloc.stop()
    assert kept < 500, f"{kept:.0f} bytes kept per leaf"


def test_path_selection_leaves_nothing_cached_in_the_leaf() -> None:
    """Likewise for path selection among several presented CAs, which reads the leaf's key
    identifiers: from a throwaway copy, not the leaf the identity keeps."""
    import gc
    import tracemalloc

    from mtlsauth._pathbuilding import _select

    # Three CAs that are not self-issued: more than the simple case, so the leaf is read.
    presented = [_INTER.certificate, CA().intermediate().certificate]
    presented.append(CA().intermediate().certificate)
    leaves = [x509.load_der_x509_certificate(_BASE_DER) for _ in range(200)]
    anchors = [_ROOT.certificate]
    assert _select(leaves[0], presented, [], 8, anchors)[0] == [_INTER.certificate]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for leaf in leaves[1:]:
            _select(leaf, presented, [], 8, anchors)
        gc.collect()
        kept = (tracemalloc.get_traced_memory()[0] - before) / (len(leaves) - 1)
    finally:
        tracemalloc.stop()
    assert kept < 500, f"{kept:.0f} bytes kept per leaf"


def _kept_per_leaf(read: object, der: bytes) -> float:
    import gc
    import tracemalloc

    leaves = [x509.load_der_x509_certificate(der) for _ in range(200)]
    read(leaves[0])  # type: ignore[operator]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for leaf in leaves[1:]:
            read(leaf)  # type: ignore[operator]
        gc.collect()
        return (tracemalloc.get_traced_memory()[0] - before) / (len(leaves) - 1)
    finally:
        tracemalloc.stop()


def test_revocation_reads_leave_nothing_cached_in_the_leaf() -> None:
    """The OCSP responder address and a partitioned CRL's scope are read from the leaf's
    extensions: from a throwaway copy, so cached identities do not grow by them."""
    from datetime import datetime, timezone

    from mtlsauth._revocation._load import _CRL
    from mtlsauth._revocation._ocsp import _responder_url

    leaf = _INTER.issue_client_cert(
        extra_extensions=[
            (
                x509.AuthorityInformationAccess(
                    [
                        x509.AccessDescription(
                            x509.oid.AuthorityInformationAccessOID.OCSP,
                            x509.UniformResourceIdentifier("http://127.0.0.1:1/ocsp"),
                        )
                    ]
                ),
                False,
            ),
            (
                x509.CRLDistributionPoints(
                    [
                        x509.DistributionPoint(
                            [x509.UniformResourceIdentifier("http://127.0.0.1:1/p1.crl")],
                            None,
                            None,
                            None,
                        )
                    ]
                ),
                False,
            ),
        ]
    ).certificate
    der = leaf.public_bytes(Encoding.DER)
    assert _responder_url(leaf) == "http://127.0.0.1:1/ocsp"
    assert _kept_per_leaf(_responder_url, der) < 500
    now = datetime.now(timezone.utc)
    partition = _CRL(
        crl=None,  # type: ignore[arg-type]
        source="test",
        issuer="",
        aki=None,
        number=1,
        last_update=now,
        next_update=now,
        revoked=frozenset(),
        dp_full=frozenset({x509.UniformResourceIdentifier("http://127.0.0.1:1/p1.crl")}),
    )
    assert partition.covers(leaf, False)
    assert _kept_per_leaf(lambda c: partition.covers(c, False), der) < 500


def test_pinned_verification_leaves_nothing_cached_in_the_leaf() -> None:
    """The pinned-certificate rules read the leaf's extensions: from a throwaway copy too."""
    from datetime import datetime, timezone

    pinned = _INTER.issue_client_cert(common_name="pinned").certificate
    der = pinned.public_bytes(Encoding.DER)
    verifier = Verifier(pinned=[der], cache_size=0)
    assert verifier.verify(der).certificate is not None
    now = datetime.now(timezone.utc)
    assert _kept_per_leaf(lambda c: verifier._verify_pinned(c, der, now, "tls"), der) < 700


# --- extension values of every length, and mutations of them -------------------------------

# Key identifiers and names long enough to need a long-form length (128 octets and up), and
# the length octets spelt wrong around that boundary: a check on the second octet alone
# reads "0x81" or "0x82" as a short length that happens to equal the rest of the value.
_LONG_FORMS = [
    ("2.5.29.14", b"\x04\x81\x05" + bytes(128)),  # 0x81 = the rest's length, not a length
    ("2.5.29.14", b"\x04\x82\x00\x80" + bytes(128)),  # a length with a leading zero octet
    ("2.5.29.14", b"\x04\x81\x7f" + bytes(128)),  # long form for a short length
    ("2.5.29.14", b"\x04\x81\x80" + bytes(128)),  # DER: a 128-octet identifier
    ("2.5.29.35", b"\x30\x80\x80\x7e" + bytes(126)),  # indefinite length
    ("2.5.29.35", b"\x30\x81\x80\x7f" + bytes(127)),  # 0x81 read as the length 129
    ("2.5.29.35", tlv(0x30, tlv(0x80, bytes(130)))),  # DER: a 130-octet keyIdentifier
    ("2.5.29.37", b"\x30\x81\x03" + _CLIENT_AUTH[:3]),
    ("2.5.29.17", b"\x30\x81\x03\x82\x01a"),
    ("2.5.29.17", tlv(0x30, tlv(0x82, b"a" * 200))),
]


@pytest.mark.parametrize(("oid", "value"), _LONG_FORMS)
def test_long_form_values_are_vouched_only_when_cryptography_reads_them(
    oid: str, value: bytes
) -> None:
    """A CA-signed leaf whose extension value cryptography refuses must be refused alike
    with the DER reading: vouching for it would accept a certificate the full reading
    refuses as malformed."""
    der = _leaf([_ext(oid, value)])
    cert = _load(der)
    facts = read_leaf(der)
    assert cert is not None
    assert facts is not None
    try:
        cert.extensions  # noqa: B018 - the full reading of the extensions
    except ValueError:
        assert not extensions_read(facts)
    _same_verification(der)


def _valid_values(oid: str, size: int) -> bytes:
    """A DER value of extension ``oid`` whose variable part holds ``size`` octets."""
    if oid == "2.5.29.14":
        return tlv(0x04, bytes(range(size % 256)) * (size // 256) + bytes(range(size % 256)))
    if oid == "2.5.29.35":
        return tlv(0x30, tlv(0x80, b"\x5a" * max(size, 1)))
    if oid == "2.5.29.37":
        return tlv(0x30, _CLIENT_AUTH * max(1, size // len(_CLIENT_AUTH)))
    if oid == "2.5.29.17":
        return tlv(0x30, tlv(0x82, b"a" * size))
    if oid == "2.5.29.15":
        return bytes([0x03, 0x02, 0x07, 0x80])
    return b"\x30\x06\x01\x01\xff\x02\x01" + bytes([size % 256])


@st.composite
def _mutated_extension(draw: st.DrawFn) -> tuple[str, bytes]:
    oid = draw(
        st.sampled_from(
            ["2.5.29.14", "2.5.29.35", "2.5.29.37", "2.5.29.17", "2.5.29.15", "2.5.29.19"]
        )
    )
    value = bytearray(
        _valid_values(
            oid, draw(st.sampled_from([0, 1, 20, 124, 125, 126, 127, 128, 129, 255, 256, 300]))
        )
    )
    for _ in range(draw(st.integers(0, 3))):
        where = draw(st.integers(0, min(len(value), 5)))
        kind = draw(st.integers(0, 3))
        octet = draw(
            st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0x81, 0x82, 0x83, 0xFF, len(value) - 2 & 0xFF])
        )
        if kind == 0 and where < len(value):
            value[where] = octet
        elif kind == 1:
            value.insert(where, octet)
        elif kind == 2 and where < len(value):
            del value[where]
        elif where < len(value):
            value[where] = (value[where] + draw(st.sampled_from([-1, 1]))) & 0xFF
    return oid, bytes(value)


@_SETTINGS
@given(extension=_mutated_extension(), critical=st.sampled_from([None, b"\xff"]))
def test_mutated_values_of_every_length_are_vouched_only_when_read(
    extension: tuple[str, bytes], critical: bytes | None
) -> None:
    """Every extension type the reader vouches for, at lengths on both sides of the short-form
    boundary, with its tag and length octets mutated: a yes only where cryptography reads the
    value, with the same SAN values."""
    oid, value = extension
    _vouched_is_read(_leaf([_ext(oid, value, critical)]))


# --- the extension loop's reads by index: flags, headers and ends -----------------------------

_SKI_OID = tlv(0x06, encode_oid("2.5.29.14"))
_ODD_EXTENSIONS = {
    # (raw extension, what the reading gives: None for "declined", else its critical flag)
    "DER TRUE": (tlv(0x30, _SKI_OID + b"\x01\x01\xff" + b"\x04\x04\x04\x02\xab\xcd"), True),
    "no flag": (tlv(0x30, _SKI_OID + b"\x04\x04\x04\x02\xab\xcd"), False),
    "BER TRUE (01)": (tlv(0x30, _SKI_OID + b"\x01\x01\x01" + b"\x04\x04\x04\x02\xab\xcd"), None),
    "FALSE spelt out": (tlv(0x30, _SKI_OID + b"\x01\x01\x00" + b"\x04\x04\x04\x02\xab\xcd"), None),
    "long-form flag length": (
        tlv(0x30, _SKI_OID + b"\x01\x81\x01\xff" + b"\x04\x04\x04\x02\xab\xcd"),
        None,
    ),
    "two-octet flag": (
        tlv(0x30, _SKI_OID + b"\x01\x02\x00\xff" + b"\x04\x04\x04\x02\xab\xcd"),
        None,
    ),
    "flag, then nothing": (tlv(0x30, _SKI_OID + b"\x01\x01\xff"), None),
    "flag, then a header only": (tlv(0x30, _SKI_OID + b"\x01\x01\xff\x04"), None),
    "flag, then an empty value": (tlv(0x30, _SKI_OID + b"\x01\x01\xff\x04\x00"), True),
    "OID only": (tlv(0x30, _SKI_OID), None),
    "OID and one octet": (tlv(0x30, _SKI_OID + b"\x04"), None),
    "long-form value length for a short value": (
        tlv(0x30, _SKI_OID + b"\x04\x81\x04\x04\x02\xab\xcd"),
        None,
    ),
    "long-form value length": (
        tlv(0x30, _SKI_OID + tlv(0x04, tlv(0x04, bytes(130)))),
        False,
    ),
    "long-form extension length": (
        tlv(0x30, _SKI_OID + b"\x01\x01\xff" + tlv(0x04, tlv(0x04, bytes(200)))),
        True,
    ),
    "value past the extension": (
        b"\x30\x0b" + _SKI_OID + b"\x04\x06\x04\x02\xab\xcd",
        None,
    ),
    "value short of the extension": (
        b"\x30\x0d" + _SKI_OID + b"\x04\x04\x04\x02\xab\xcd\x00\x00",
        None,
    ),
    "constructed value": (tlv(0x30, _SKI_OID + b"\x24\x04\x04\x02\xab\xcd"), None),
    "long-form OID length": (
        tlv(0x30, b"\x06\x81\x03\x55\x1d\x0e" + b"\x04\x04\x04\x02\xab\xcd"),
        None,
    ),
    "a SET, not a SEQUENCE": (tlv(0x31, _SKI_OID + b"\x04\x04\x04\x02\xab\xcd"), None),
}


@pytest.mark.parametrize("name", list(_ODD_EXTENSIONS))
def test_the_extension_loop_reads_flags_and_headers_as_cryptography(name: str) -> None:
    """Each odd extension alone, then cut short at every octet (the extensions block,
    the TBS and the certificate shortened with it, so that the cut lands at the end of
    every enclosing item, the buffer's included, and with nothing after the TBS): the
    reading raises nothing but declines, or finds what cryptography finds; and for the
    whole extension, what is stated here."""
    raw, want = _ODD_EXTENSIONS[name]
    der = _leaf([raw])
    facts = read_leaf(der)
    if want is None:
        assert facts is None
    else:
        assert facts is not None
        assert facts.extensions[encode_oid("2.5.29.14")][0] is want
        assert _load(der) is not None
        _facts_match(der)
    fields = _tbs_fields(_BASE_DER)[:7]
    _, alg, _sig = split(_BASE_DER)
    for cut in range(len(raw)):
        tbs = tlv(0x30, b"".join(fields) + tlv(0xA3, tlv(0x30, raw[:cut])))
        for shape in (assemble(tbs, alg, b"\x00"), tlv(0x30, tbs), tbs):
            facts = read_leaf(shape)  # DERError is caught inside: anything else fails here
            if facts is not None:
                extensions_read(facts)
                profile_passes(facts)
                _facts_match(shape)
