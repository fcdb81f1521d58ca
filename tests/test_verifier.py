"""Verifier: every rule accepted and refused, input forms, pinning, depth, time, cache."""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections.abc import Sequence

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from _verdicts import verdict
from mtlsauth import (
    CertificateInvalid,
    CertificateMissing,
    CertificateRevoked,
    MTLSAuthError,
    Presented,
    RevocationUnavailable,
    TrustStore,
    Verifier,
)
from mtlsauth.testing import CA, ClientCert, self_signed_client_cert

NOW = dt.datetime.now(dt.timezone.utc)
DAY = dt.timedelta(days=1)


# -- what a leaf may and may not be ------------------------------------------------------
LEAF_CASES = [
    pytest.param({}, "accepted", id="plain client cert, no SAN (enterprise CN-only)"),
    pytest.param({"dns_names": ["a.example"]}, "accepted", id="with DNS SAN"),
    pytest.param({"aki": False}, "accepted", id="no authority key identifier"),
    pytest.param({"eku": None}, "accepted", id="no EKU"),
    pytest.param({"eku": "both"}, "accepted", id="EKU serverAuth+clientAuth"),
    pytest.param({"eku": "server"}, "invalid_usage", id="EKU serverAuth only"),
    pytest.param({"eku": "any"}, "invalid_usage", id="EKU anyExtendedKeyUsage only"),
    pytest.param({"key_type": "rsa"}, "accepted", id="RSA-2048 leaf"),
    pytest.param({"key_type": "ed25519"}, "accepted", id="Ed25519 leaf"),
    pytest.param({"key_type": "rsa1024"}, "weak_key", id="RSA-1024 leaf"),
    pytest.param({"ca": True}, "invalid_usage", id="leaf asserting cA=TRUE"),
    pytest.param(
        {"not_before": NOW - 10 * DAY, "not_after": NOW - DAY}, "certificate_expired", id="expired"
    ),
    pytest.param(
        {"not_before": NOW + DAY, "not_after": NOW + 10 * DAY},
        "certificate_not_yet_valid",
        id="not yet valid",
    ),
    pytest.param(
        {
            "extra_extensions": [
                (
                    x509.UnrecognizedExtension(
                        x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00"
                    ),
                    True,
                )
            ]
        },
        "invalid_usage",
        id="unknown critical extension",
    ),
    pytest.param(
        {
            "extra_extensions": [
                (
                    x509.UnrecognizedExtension(
                        x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00"
                    ),
                    False,
                )
            ]
        },
        "accepted",
        id="unknown non-critical extension",
    ),
    pytest.param(
        {
            "extra_extensions": [
                (
                    x509.KeyUsage(False, False, True, False, False, False, False, False, False),
                    True,
                )
            ]
        },
        "invalid_usage",
        id="keyUsage without digitalSignature",
    ),
    pytest.param(
        {
            "extra_extensions": [
                (x509.KeyUsage(True, False, False, False, False, False, False, False, False), True)
            ]
        },
        "accepted",
        id="keyUsage digitalSignature",
    ),
]


@pytest.mark.parametrize(("kwargs", "expected"), LEAF_CASES)
def test_leaf_rules(pki, kwargs: dict[str, object], expected: str) -> None:
    verifier = Verifier(trust_store=pki.root.trust_store())
    cert = pki.inter.issue_client_cert(common_name="c", **kwargs)  # type: ignore[arg-type]
    assert verdict(verifier, cert.chain_pem.text()) == expected


def test_ca_certificates_are_never_client_certificates(pki) -> None:
    verifier = Verifier(trust_store=pki.root.trust_store())
    assert verdict(verifier, pki.root.cert_pem.text()) == "invalid_usage"  # the anchor itself
    assert verdict(verifier, pki.inter.cert_pem.text()) == "invalid_usage"


def test_chain_rules(pki) -> None:
    verifier = Verifier(trust_store=pki.root.trust_store())
    assert verdict(verifier, pki.good.chain_pem.text()) == "accepted"
    assert verdict(verifier, pki.direct.chain_pem.text()) == "accepted"
    fresh = Verifier(trust_store=pki.root.trust_store())
    assert verdict(fresh, pki.good.cert_pem.text()) == "untrusted_issuer"  # intermediate missing
    # Once verified with its intermediate, the same leaf reuses that validated chain.
    assert verdict(verifier, pki.good.cert_pem.text()) == "accepted"
    assert (
        verdict(verifier, pki.other_root.issue_client_cert().chain_pem.text()) == "untrusted_issuer"
    )
    # A look-alike intermediate: same name, different key.
    fake = CA(
        common_name=pki.inter.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[
            0
        ].value
    )
    forged = fake.issue_client_cert(common_name="ledger")
    assert (
        verdict(verifier, forged.cert_pem.bytes() + pki.inter.cert_pem.bytes())
        == "untrusted_issuer"
    )


def test_known_intermediates_complete_leaf_only_chains(pki) -> None:
    verifier = Verifier(
        trust_store=pki.root.trust_store(), intermediates=[pki.inter.cert_pem.text()]
    )
    assert verifier.verify(pki.good.cert_pem.text()).common_name == "ledger"


def test_intermediate_as_anchor(pki) -> None:
    verifier = Verifier(trust_store=TrustStore.from_pem(pki.inter.cert_pem.bytes()))
    assert verdict(verifier, pki.good.cert_pem.text()) == "accepted"
    assert verdict(verifier, pki.direct.chain_pem.text()) == "untrusted_issuer"


@pytest.mark.parametrize(
    ("max_depth", "expected"),
    [
        pytest.param(0, "chain_too_long", id="0: leaf must be issued by an anchor"),
        pytest.param(1, "accepted", id="1: one intermediate (SSLVerifyDepth 2)"),
        pytest.param(8, "accepted", id="default"),
    ],
)
def test_max_depth_counts_intermediates(pki, max_depth: int, expected: str) -> None:
    verifier = Verifier(trust_store=pki.root.trust_store(), max_depth=max_depth)
    assert verdict(verifier, pki.good.chain_pem.text()) == expected
    assert verdict(verifier, pki.direct.chain_pem.text()) == "accepted"


def test_ca_path_length_is_enforced() -> None:
    root = CA()
    limited = root.intermediate(path_length=0)
    sub = limited.intermediate()
    leaf = sub.issue_client_cert()
    assert (
        verdict(Verifier(trust_store=root.trust_store()), leaf.chain_pem.text()) == "chain_too_long"
    )


def test_name_constraints() -> None:
    root = CA()
    nc = x509.NameConstraints(
        permitted_subtrees=[x509.DNSName("example.com")], excluded_subtrees=None
    )
    inter = root.intermediate(name_constraints=nc)
    verifier = Verifier(trust_store=root.trust_store())
    inside = inter.issue_client_cert(dns_names=["a.example.com"])
    outside = inter.issue_client_cert(dns_names=["evil.test"])
    assert verdict(verifier, inside.chain_pem.text()) == "accepted"
    assert verdict(verifier, outside.chain_pem.text()) == "untrusted_issuer"


def test_directory_name_constraint_is_a_clean_refusal() -> None:
    root = CA()
    dn = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme Corp")])
    nc = x509.NameConstraints(permitted_subtrees=[x509.DirectoryName(dn)], excluded_subtrees=None)
    inter = root.intermediate(name_constraints=nc)
    leaf = inter.issue_client_cert(organization="Acme Corp")
    with pytest.raises(CertificateInvalid) as info:
        Verifier(trust_store=root.trust_store()).verify(leaf.chain_pem.text())
    assert info.value.code == "untrusted_issuer"
    assert "directoryName" in info.value.detail


# -- input forms ---------------------------------------------------------------------------
def _forms(cert: ClientCert) -> list[object]:
    der = cert.chain_der
    return [
        cert.chain_pem.text(),
        cert.chain_pem.bytes(),
        b"".join(der),
        [der[0], der[1]],
        [cert.certificate, *cert.intermediates],
        (cert.cert_pem.text(), der[1]),
    ]


def test_every_input_form_verifies(pki) -> None:
    verifier = Verifier(trust_store=pki.root.trust_store())
    for form in _forms(pki.good):
        assert verifier.verify(form).common_name == "ledger"


MALFORMED = [
    pytest.param("hello", id="text"),
    pytest.param(b"\x30\x03\x02\x01\x00", id="DER of something else"),
    pytest.param(b"\x30\x82\xff\xff", id="truncated DER header"),
    pytest.param("-----BEGIN CERTIFICATE-----\nMIIB\n", id="truncated PEM"),
    pytest.param("-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n", id="bad base64"),
    pytest.param(
        "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n", id="base64 of text"
    ),
    pytest.param("-----BEGIN CERTIFICATE-----\n\n-----END CERTIFICATE-----\n", id="empty PEM body"),
    pytest.param("caf\u00e9", id="non-ASCII text"),
    pytest.param(12345, id="an int"),
    pytest.param({"cert": "x"}, id="a dict"),
    pytest.param(b"\x00" * 10, id="zero bytes"),
]


@pytest.mark.parametrize("bad", MALFORMED)
def test_malformed_input_is_certificate_malformed(pki, bad: object) -> None:
    verifier = Verifier(trust_store=pki.root.trust_store())
    with pytest.raises(CertificateInvalid) as info:
        verifier.verify(bad)
    assert info.value.code == "certificate_malformed"


def test_private_keys_trailing_data_and_huge_chains_are_malformed(pki) -> None:
    verifier = Verifier(trust_store=pki.root.trust_store())
    cases = [
        pki.good.key_pem.text(),
        pki.good.chain_pem.text() + pki.good.key_pem.text(),
        pki.good.chain_pem.text() + "trailing words",
        pki.good.der + b"\x00",
        pki.good.chain_pem.text() * 9,  # 18 certificates
        "A" * (300 * 1024),
    ]
    for bad in cases:
        with pytest.raises(CertificateInvalid) as info:
            verifier.verify(bad)
        assert info.value.code == "certificate_malformed"


@pytest.mark.parametrize("empty", ["", b"", [], (), "   \n"])
def test_empty_input_is_missing(pki, empty: object) -> None:
    with pytest.raises(CertificateMissing):
        Verifier(trust_store=pki.root.trust_store()).verify(empty)


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_no_input_raises_anything_but_mtlsauth_errors(data: str | bytes) -> None:
    verifier = _SHARED_VERIFIER
    try:
        verifier.verify(data)
    except MTLSAuthError:
        pass


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=1, max_size=64), st.integers(min_value=0, max_value=2000))
def test_corrupted_certificates_never_crash(noise: bytes, pos: int) -> None:
    der = bytearray(_SHARED_CERT.der)
    pos %= len(der)
    der[pos : pos + len(noise)] = noise
    try:
        _SHARED_VERIFIER.verify(bytes(der))
    except MTLSAuthError:
        pass


_SHARED_CA = CA()
_SHARED_CERT = _SHARED_CA.issue_client_cert()
_SHARED_VERIFIER = Verifier(trust_store=_SHARED_CA.trust_store(), cache_size=0)


# -- pinning -------------------------------------------------------------------------------
def test_pinned_self_signed_certificates() -> None:
    pinned = self_signed_client_cert(common_name="keytool user")
    other = self_signed_client_cert(common_name="impostor")
    verifier = Verifier(pinned=[pinned.cert_pem.text()])
    assert verifier.verify(pinned.cert_pem.text()).common_name == "keytool user"
    assert verdict(verifier, other.cert_pem.text()) == "pin_mismatch"
    old = self_signed_client_cert(not_before=NOW - 10 * DAY, not_after=NOW - DAY)
    assert verdict(Verifier(pinned=[old.certificate]), old.cert_pem.text()) == "certificate_expired"


def test_pins_next_to_a_trust_store(pki) -> None:
    pinned = self_signed_client_cert()
    verifier = Verifier(trust_store=pki.root.trust_store(), pinned=[pinned.der])
    assert verdict(verifier, pinned.cert_pem.text()) == "accepted"
    assert verdict(verifier, pki.good.chain_pem.text()) == "accepted"
    assert verdict(verifier, self_signed_client_cert().cert_pem.text()) == "untrusted_issuer"


def test_pinned_server_only_certificate_is_refused(pki) -> None:
    server = pki.inter.issue_client_cert(eku="server")
    assert verdict(Verifier(pinned=[server.certificate]), server.cert_pem.text()) == "invalid_usage"


# -- time ------------------------------------------------------------------------------------
def test_validate_as_of_a_moment(pki) -> None:
    verifier = Verifier(trust_store=pki.root.trust_store())
    chain = pki.good.chain_pem.text()
    assert verifier.verify(chain, at=NOW).common_name == "ledger"
    with pytest.raises(CertificateInvalid) as info:
        verifier.verify(chain, at=NOW + 400 * DAY)
    assert info.value.code == "certificate_expired"
    with pytest.raises(ValueError, match="timezone"):
        verifier.verify(chain, at=dt.datetime(2030, 1, 1))


def test_validate_as_of_the_last_moment_the_calendar_holds(pki) -> None:
    # 9999-12-31T23:59:59.999999Z is a moment like any other: refused as expired, never an
    # OverflowError out of verify() (the verifier built for its second must not add one).
    verifier = Verifier(trust_store=pki.root.trust_store())
    last = dt.datetime.max.replace(tzinfo=dt.timezone.utc)
    for at in (last, last.replace(microsecond=0)):
        with pytest.raises(CertificateInvalid) as info:
            verifier.verify(pki.good.chain_pem.text(), at=at)
        assert info.value.code == "certificate_expired"


@pytest.mark.parametrize(
    "at",
    [
        dt.datetime.max.replace(tzinfo=dt.timezone(dt.timedelta(hours=-5))),
        dt.datetime.min.replace(tzinfo=dt.timezone(dt.timedelta(hours=5))),
    ],
    ids=["after 9999", "before year 1"],
)
def test_a_moment_outside_the_calendar_in_utc_is_a_value_error(pki, at) -> None:
    verifier = Verifier(trust_store=pki.root.trust_store())
    with pytest.raises(ValueError, match="at must"):
        verifier.verify(pki.good.chain_pem.text(), at=at)


def test_a_tzinfo_without_an_offset_is_naive(pki) -> None:
    # Python calls a datetime aware only when its utcoffset() is not None: a tzinfo that
    # answers None leaves it naive, and turning it into UTC would read it as local time.
    class NoOffset(dt.tzinfo):
        def utcoffset(self, d: dt.datetime | None) -> None:
            return None

        def dst(self, d: dt.datetime | None) -> None:
            return None

    verifier = Verifier(trust_store=pki.root.trust_store())
    with pytest.raises(ValueError, match="timezone"):
        verifier.verify(pki.good.chain_pem.text(), at=NOW.replace(tzinfo=NoOffset()))


@pytest.mark.parametrize("first_fold", [0, 1], ids=["EDT first", "EST first"])
def test_an_hour_that_repeats_is_told_apart(first_fold) -> None:
    # 01:30 on 2026-11-01 happens twice in New York: 05:30Z (EDT, fold=0) and 06:30Z (EST,
    # fold=1). Two times of one zone compare by their wall clock alone, so the verifier
    # built for one of them must not be taken for the other: a leaf that expires at 06:00Z
    # is valid at the first and expired at the second, in either order.
    from zoneinfo import ZoneInfo

    utc = dt.timezone.utc
    new_york = ZoneInfo("America/New_York")
    root = CA(
        not_before=dt.datetime(2026, 1, 1, tzinfo=utc),
        not_after=dt.datetime(2027, 1, 1, tzinfo=utc),
    )
    leaf = root.issue_client_cert(
        not_before=dt.datetime(2026, 6, 1, tzinfo=utc),
        not_after=dt.datetime(2026, 11, 1, 6, 0, tzinfo=utc),
    )
    verifier = Verifier(trust_store=root.trust_store())
    expected = {0: "accepted", 1: "certificate_expired"}
    for fold in (first_fold, 1 - first_fold):
        at = dt.datetime(2026, 11, 1, 1, 30, 0, 200000 + 300000 * fold, tzinfo=new_york, fold=fold)
        try:
            verifier.verify(leaf.chain_pem.text(), at=at)
            got = "accepted"
        except CertificateInvalid as exc:
            got = exc.code
        assert (fold, got) == (fold, expected[fold])


def test_a_built_verifier_answers_for_its_second_in_utc_only(pki) -> None:
    # The same below Verifier.verify (which hands UTC down): a verifier, or a vouched
    # intermediate's, built for 01:30:00 EDT is not reused for 01:30:00 EST an hour later,
    # and the time it validates at is the UTC second of the moment asked about.
    from zoneinfo import ZoneInfo

    from cryptography.x509.verification import Store

    import mtlsauth._pathvalidation as pathvalidation

    utc = dt.timezone.utc
    first = dt.datetime(2026, 11, 1, 1, 30, 0, 200000, tzinfo=ZoneInfo("America/New_York"))
    second = first.replace(microsecond=500000, fold=1)
    store = Store([pki.root.certificate])
    policy = pathvalidation._EE_POLICY
    before = pathvalidation._client_verifier(store, first, 3, policy)
    after = pathvalidation._client_verifier(store, second, 3, policy)
    assert after is not before
    assert before.policy.validation_time == dt.datetime(2026, 11, 1, 5, 30)
    assert after.policy.validation_time == dt.datetime(2026, 11, 1, 6, 30)
    window = pathvalidation._whole_second(first, None)
    assert window == (
        dt.datetime(2026, 11, 1, 5, 30, tzinfo=utc),
        dt.datetime(2026, 11, 1, 5, 30, 1, tzinfo=utc),
    )
    built = (*window, 3, policy, before)
    assert pathvalidation._whole_second(second, built)[0] == dt.datetime(
        2026, 11, 1, 6, 30, tzinfo=utc
    )


def test_no_expiration_date_with_clock_skew(pki) -> None:
    # RFC 5280 4.1.2.5: notAfter 99991231235959Z means "no well-defined expiration date"
    # (IEEE 802.1AR device certificates use it). With a clock skew, "valid until notAfter
    # plus the skew" overflowed the calendar: OverflowError out of verify() and
    # authenticate() for a chain, certificate_malformed for a pinned certificate.
    from mtlsauth import Presented

    end = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.timezone.utc)
    root = CA(not_after=end)
    chained = root.issue_client_cert(common_name="device", not_after=end)
    pinned = self_signed_client_cert(common_name="pinned device", not_after=end)
    for verifier, cert in (
        (Verifier(trust_store=root.trust_store(), clock_skew=60), chained),
        (Verifier(pinned=[pinned.certificate], clock_skew=60), pinned),
    ):
        assert verifier.verify(cert.cert_pem.text()).not_after == end
        assert verifier.verify(cert.cert_pem.text(), at=NOW).not_after == end
        identity = verifier.authenticate(Presented(tls_chain=(cert.der,)))
        assert identity is not None
        assert identity.not_after == end


_OFFSETS = st.builds(
    lambda us: dt.timezone(dt.timedelta(microseconds=us)),
    st.integers(min_value=-(24 * 3600 * 10**6) + 1, max_value=24 * 3600 * 10**6 - 1),
)


@settings(max_examples=300, deadline=None)
@given(
    moments=st.lists(
        st.tuples(
            st.datetimes(
                min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2000, 1, 1, 0, 0, 3)
            ),
            st.one_of(st.just(dt.timezone.utc), _OFFSETS),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_a_reused_verifier_always_validates_at_the_utc_second_asked_about(moments) -> None:
    # Whatever came before (the last verifier, a vouched intermediate's window), the time
    # a verifier validates at is the whole UTC second of the moment asked about; offsets
    # with seconds and microseconds included (Python allows them).
    from cryptography.x509.verification import Store

    import mtlsauth._pathvalidation as pathvalidation

    store = Store([_HYPOTHESIS_ROOT.certificate])
    policy = pathvalidation._EE_POLICY
    built = None
    for naive, tz in moments:
        at = naive.replace(tzinfo=dt.timezone.utc).astimezone(tz)
        expected = naive.replace(microsecond=0)
        verifier = pathvalidation._client_verifier(store, at, 3, policy)
        assert verifier.policy.validation_time == expected
        window = pathvalidation._whole_second(at, built)
        assert window[0].replace(tzinfo=None) == expected
        assert window[1] - window[0] == dt.timedelta(seconds=1)
        built = (*window, 3, policy, verifier)


_HYPOTHESIS_ROOT = CA(organization="whole seconds")


def test_clock_skew_forgives_small_differences(pki) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    soon = pki.inter.issue_client_cert(not_before=now + dt.timedelta(seconds=60))
    assert verdict(Verifier(trust_store=pki.root.trust_store()), soon.chain_pem.text()) == (
        "certificate_not_yet_valid"
    )
    lenient = Verifier(trust_store=pki.root.trust_store(), clock_skew=dt.timedelta(minutes=5))
    assert verdict(lenient, soon.chain_pem.text()) == "accepted"


# -- authenticate ------------------------------------------------------------------------
def test_authenticate_tls_chain(pki) -> None:
    verifier = Verifier(trust_store=pki.root.trust_store())
    tls = pki.good.asgi_tls_extension()["client_cert_chain"]
    assert isinstance(tls, list)
    identity = verifier.authenticate(Presented(tls_chain=tuple(tls)))
    assert identity is not None
    assert identity.source == "tls"
    der_identity = verifier.authenticate(Presented(tls_chain=pki.good.chain_der))
    assert der_identity is not None
    assert der_identity.fingerprint_sha256 == identity.fingerprint_sha256


def test_authenticate_without_certificate(pki) -> None:
    verifier = Verifier(trust_store=pki.root.trust_store())
    with pytest.raises(CertificateMissing) as info:
        verifier.authenticate(Presented())
    assert (info.value.code, info.value.status) == ("certificate_missing", 401)
    assert verifier.authenticate(Presented(), required=False) is None


def test_server_reported_tls_error_is_refused(pki) -> None:
    verifier = Verifier(trust_store=pki.root.trust_store())
    presented = Presented(tls_chain=pki.good.chain_der, tls_error="certificate verify failed")
    with pytest.raises(CertificateInvalid) as info:
        verifier.authenticate(presented)
    assert info.value.code == "tls_verification_failed"


# -- cache -------------------------------------------------------------------------------
class SwitchableRevocation:
    """A RevocationChecker whose answer the test flips, to prove cache hits re-check."""

    def __init__(self) -> None:
        self.revoked: set[int] = set()
        self.calls = 0
        self.token: object = object()
        self.may_block = False
        self.explode = False

    def check(self, chain: Sequence[x509.Certificate], *, at: dt.datetime) -> dt.datetime | None:
        self.calls += 1
        if self.explode:
            raise RuntimeError("checker bug")
        if chain[0].serial_number in self.revoked:
            raise CertificateRevoked("revoked")
        return None


def test_cached_pass_is_reused_only_while_revocation_data_is_unchanged(pki) -> None:
    rev = SwitchableRevocation()
    verifier = Verifier(trust_store=pki.root.trust_store(), revocation=rev)
    chain = pki.good.chain_pem.text()
    verifier.verify(chain)
    verifier.verify(chain)
    assert verifier.health()["cache"] == {
        "entries": 1,
        "admitted": 1,
        "aliases": 1,
        "negative_entries": 0,
        "max_entries": 10000,
        "hits": 1,
        "misses": 1,
    }
    assert rev.calls == 1  # the hit reused the answer of unchanged revocation data
    rev.revoked.add(pki.good.certificate.serial_number)
    rev.token = object()  # a new CRL was loaded: refused on the very next request
    with pytest.raises(CertificateRevoked):
        verifier.verify(chain)
    rev.revoked.clear()
    rev.explode = True
    rev.token = object()
    with pytest.raises(RevocationUnavailable):
        verifier.verify(chain)


class Answering(SwitchableRevocation):
    """A checker of its own that returns ``answer`` from ``check`` (the protocol is public)."""

    def __init__(self, answer: object) -> None:
        super().__init__()
        self.answer = answer

    def check(self, chain: Sequence[x509.Certificate], *, at: dt.datetime) -> dt.datetime | None:
        super().check(chain, at=at)
        return self.answer  # type: ignore[return-value]


@pytest.mark.parametrize(
    "answer",
    [dt.datetime(2100, 1, 1), "2100-01-01", 0, 4102444800, True, 1.5, dt.date(2100, 1, 1)],
    ids=["naive", "str", "zero", "int", "bool", "float", "date"],
)
def test_a_checker_that_returns_no_aware_datetime_is_a_refusal_not_a_crash(
    pki, answer: object
) -> None:
    """A third-party checker returning something else than None or an aware datetime made
    ``verify`` raise TypeError where the answer was compared with the chain's notAfter,
    outside the guard that turns a checker's bug into a refusal (a 500 in a server). It is
    refused as ``revocation_unavailable``, alone, composed or for a pinned certificate."""
    good = Answering(dt.datetime(2100, 1, 1, tzinfo=dt.timezone.utc))
    chain = pki.good.chain_pem.text()
    for revocation in (Answering(answer), [Answering(answer), good], [good, Answering(answer)]):
        verifier = Verifier(trust_store=pki.root.trust_store(), revocation=revocation)
        with pytest.raises(RevocationUnavailable):
            verifier.verify(chain)
    pinned = Verifier(
        trust_store=pki.root.trust_store(),
        pinned=[pki.good.certificate],
        revocation=Answering(answer),
    )
    with pytest.raises(RevocationUnavailable):
        pinned.verify(chain)
    # None and aware datetimes, in any zone, still pass.
    east = dt.timezone(dt.timedelta(hours=9))
    for fine in (None, dt.datetime(2100, 1, 1, tzinfo=east)):
        assert Verifier(trust_store=pki.root.trust_store(), revocation=Answering(fine)).verify(
            chain
        )


@pytest.mark.parametrize("empty", [[], ()])
def test_an_empty_sequence_of_checkers_is_refused(pki, empty: Sequence[object]) -> None:
    """``revocation=[]`` became a composition of no checkers, which every certificate
    passes, while ``health()`` showed revocation configured: a configuration trap."""
    from mtlsauth._revocation._compose import AllOf

    with pytest.raises(ValueError, match="empty sequence"):
        Verifier(trust_store=pki.root.trust_store(), revocation=empty)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one"):
        AllOf(empty)  # type: ignore[arg-type]


def test_cached_pass_expires_with_the_revocation_answer(pki) -> None:
    class ShortLived(SwitchableRevocation):
        def check(
            self, chain: Sequence[x509.Certificate], *, at: dt.datetime
        ) -> dt.datetime | None:
            super().check(chain, at=at)
            return at + dt.timedelta(seconds=0.3)  # e.g. a CRL whose nextUpdate is near

    rev = ShortLived()
    verifier = Verifier(trust_store=pki.root.trust_store(), revocation=rev)
    chain = pki.good.chain_pem.text()
    verifier.verify(chain)
    verifier.verify(chain)
    assert rev.calls == 1
    time.sleep(0.4)
    verifier.verify(chain)
    assert rev.calls == 2


def test_policy_verdicts_per_route_on_one_cached_identity(pki) -> None:
    from mtlsauth import Policy, PolicyDenied

    payments = Policy(organizations={"payments"})
    ads = Policy(organizations={"ads"})
    verifier = Verifier(trust_store=pki.root.trust_store(), policy=ads)
    chain = pki.good.chain_pem.text()
    for _ in range(3):  # the first call computes each verdict, later ones reuse it
        assert verifier.verify(chain, policy=payments).organization == "payments"
        with pytest.raises(PolicyDenied) as info:
            verifier.verify(chain)
        assert info.value.code == "organization_not_allowed"
        with pytest.raises(PolicyDenied):
            verifier.verify(chain, policy=ads)
        assert verifier.verify(chain, policy=Policy()).common_name == "ledger"


def test_cache_dropped_when_revocation_data_reloads(pki) -> None:
    rev = SwitchableRevocation()
    verifier = Verifier(trust_store=pki.root.trust_store(), revocation=rev)
    verifier.verify(pki.good.chain_pem.text())
    assert verifier.health()["cache"]["entries"] == 1  # type: ignore[index]
    rev.token = object()
    verifier.verify(pki.direct.chain_pem.text())
    assert verifier.health()["cache"]["entries"] == 1  # type: ignore[index]


@pytest.mark.slow
def test_cache_expires_with_the_certificate(pki) -> None:
    # Certificate times have whole-second precision and the engine accepts the last second,
    # so wait until notAfter is clearly past.
    short = pki.inter.issue_client_cert(
        not_after=dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1)
    )
    verifier = Verifier(trust_store=pki.root.trust_store())
    assert verdict(verifier, short.chain_pem.text()) == "accepted"
    time.sleep(2.5)
    assert verdict(verifier, short.chain_pem.text()) == "certificate_expired"


def test_result_computed_before_a_reload_is_not_served_after_it(pki, tmp_path) -> None:
    ca_file = pki.root.cert_pem.write_to_path(tmp_path / "ca.pem")
    trust = TrustStore.from_pem_file(ca_file, reload_interval=None)

    class RotateDuringValidation(SwitchableRevocation):
        # Runs after path validation and before the result is cached: the widest race window.
        def check(
            self, chain: Sequence[x509.Certificate], *, at: dt.datetime
        ) -> dt.datetime | None:
            if self.calls == 0:
                pki.other_root.cert_pem.write_to_path(ca_file)  # the operator rotates the CA
                assert trust.reload() is True
            return super().check(chain, at=at)

    verifier = Verifier(trust_store=trust, revocation=RotateDuringValidation())
    chain = pki.good.chain_pem.text()
    assert verdict(verifier, chain) == "accepted"  # validated under the old CA: in flight
    assert verdict(verifier, chain) == "untrusted_issuer"  # never served from the cache after


def test_cache_dropped_when_trust_reloads(pki, tmp_path) -> None:
    ca_file = pki.root.cert_pem.write_to_path(tmp_path / "ca.pem")
    verifier = Verifier(trust_store=TrustStore.from_pem_file(ca_file, reload_interval=None))
    chain = pki.good.chain_pem.text()
    assert verdict(verifier, chain) == "accepted"
    pki.other_root.cert_pem.write_to_path(ca_file)  # the operator rotates the CA
    assert verdict(verifier, chain) == "accepted"  # not noticed until a reload is due
    assert verifier.reload() is True
    assert verdict(verifier, chain) == "untrusted_issuer"


def test_negative_cache_is_bounded_and_disabled_with_the_cache(pki) -> None:
    verifier = Verifier(trust_store=pki.root.trust_store())
    for i in range(400):
        verdict(verifier, f"garbage {i}")
    stats = verifier.health()["cache"]
    assert stats["negative_entries"] == 256  # type: ignore[index]
    off = Verifier(trust_store=pki.root.trust_store(), cache_size=0)
    off.verify(pki.good.chain_pem.text())
    off.verify(pki.good.chain_pem.text())
    assert off.health()["cache"]["entries"] == 0  # type: ignore[index]


# -- cache keys a client cannot multiply --------------------------------------------------
def _tls(*certs: object) -> Presented:
    from cryptography.hazmat.primitives.serialization import Encoding

    ders = tuple(c.public_bytes(Encoding.DER) for c in certs)  # type: ignore[attr-defined]
    return Presented(peer="192.0.2.7", headers=(), tls_chain=ders)


@pytest.fixture(scope="module")
def junk() -> list[x509.Certificate]:
    """Unrelated certificates a client can append to its chain: they do not stop validation."""
    ca = CA(organization="Junk")
    leaf = ca.issue_client_cert().certificate
    from cryptography.hazmat.primitives import hashes

    out = []
    for i in range(1100):  # cheap: one key, new serials
        builder = (
            x509.CertificateBuilder()
            .subject_name(leaf.subject)
            .issuer_name(leaf.issuer)
            .public_key(leaf.public_key())
            .serial_number(i + 1)
            .not_valid_before(leaf.not_valid_before_utc)
            .not_valid_after(leaf.not_valid_after_utc)
        )
        out.append(builder.sign(ca.private_key, hashes.SHA256()))  # type: ignore[arg-type]
    return out


def _legit(pki, n: int) -> list[Presented]:
    return [
        _tls(pki.inter.issue_client_cert(common_name=f"user{i}").certificate, pki.inter.certificate)
        for i in range(n)
    ]


def test_chain_variants_of_one_leaf_cannot_evict_legitimate_entries(pki, junk) -> None:
    verifier = Verifier(trust_store=pki.root.trust_store(), cache_size=100)
    legit = _legit(pki, 50)
    for p in legit:
        verifier.authenticate(p)
    attacker = pki.inter.issue_client_cert(common_name="attacker").certificate
    for extra in junk:  # 1,100 variants of one valid chain
        assert verifier.authenticate(_tls(attacker, pki.inter.certificate, extra)) is not None
    stats = verifier.health()["cache"]
    assert stats["entries"] == 51  # type: ignore[index]
    assert stats["aliases"] <= 50 + 4  # type: ignore[index,operator]
    hits = stats["hits"]  # type: ignore[index]
    misses = stats["misses"]  # type: ignore[index]
    for p in legit:
        verifier.authenticate(p)
    after = verifier.health()["cache"]
    assert after["hits"] == hits + 50  # type: ignore[index,operator]
    assert after["misses"] == misses  # type: ignore[index]


def test_chain_variants_reuse_the_validated_chain(pki, junk, monkeypatch) -> None:
    import mtlsauth._verifier as verifier_module

    calls = []
    real = verifier_module.validate_path
    monkeypatch.setattr(
        verifier_module, "validate_path", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    rev = SwitchableRevocation()
    verifier = Verifier(trust_store=pki.root.trust_store(), revocation=rev)
    leaf = pki.good.certificate
    first = verifier.authenticate(_tls(leaf, pki.inter.certificate))
    for extra in junk[:200]:
        assert verifier.authenticate(_tls(leaf, pki.inter.certificate, extra)) is first
    assert (len(calls), rev.calls) == (1, 1)
    # Revocation data changed: the next variant is verified again, and refused.
    rev.revoked.add(leaf.serial_number)
    rev.token = object()
    with pytest.raises(CertificateRevoked):
        verifier.authenticate(_tls(leaf, pki.inter.certificate, junk[500]))
    with pytest.raises(CertificateRevoked):
        verifier.authenticate(_tls(leaf, pki.inter.certificate))


def test_a_leaf_cached_from_one_source_is_not_served_for_another(pki) -> None:
    from mtlsauth import ForwardedCert
    from mtlsauth.testing import encode_forwarded

    fwd = ForwardedCert.preset("nginx", header="X-Cert", trusted_proxies=["192.0.2.1"])
    verifier = Verifier(
        trust_store=pki.root.trust_store(), forwarded=fwd, intermediates=[pki.inter.certificate]
    )
    leaf = pki.good
    assert verifier.authenticate(_tls(leaf.certificate, pki.inter.certificate)).source == "tls"
    headers = tuple(("x-cert", v) for _k, v in encode_forwarded("nginx", leaf.chain_der))
    identity = verifier.authenticate(Presented(peer="192.0.2.1", headers=headers))
    assert identity is not None
    assert identity.source == "header:X-Cert"


@pytest.mark.parametrize("preset", ["aws-alb", "traefik", "envoy", "haproxy", "apache", "rfc9440"])
def test_forwarded_chain_variants_make_one_entry(pki, junk, preset: str) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding

    from mtlsauth import ForwardedCert
    from mtlsauth.testing import encode_forwarded

    fwd = ForwardedCert.preset(preset, trusted_proxies=["192.0.2.1"])
    verifier = Verifier(trust_store=pki.root.trust_store(), forwarded=fwd, cache_size=50)
    legit = [
        Presented(
            peer="192.0.2.1",
            headers=tuple(
                (k.lower(), v)
                for k, v in encode_forwarded(preset, p.tls_chain)  # type: ignore[arg-type]
            ),
        )
        for p in _legit(pki, 20)
    ]
    for p in legit:
        verifier.authenticate(p)
    leaf = pki.good.chain_der
    for extra in junk[:1000]:
        pairs = encode_forwarded(preset, (*leaf, extra.public_bytes(Encoding.DER)))
        headers = tuple((k.lower(), v) for k, v in pairs)
        assert verifier.authenticate(Presented(peer="192.0.2.1", headers=headers)) is not None
    assert verifier.health()["cache"]["entries"] == 21  # type: ignore[index]
    hits = verifier.health()["cache"]["hits"]  # type: ignore[index]
    for p in legit:
        verifier.authenticate(p)
    assert verifier.health()["cache"]["hits"] == hits + 20  # type: ignore[index,operator]


def test_policy_denied_certificates_do_not_evict_admitted_entries(pki) -> None:
    from mtlsauth import Policy, PolicyDenied

    verifier = Verifier(
        trust_store=pki.root.trust_store(), policy=Policy(organizations={"payments"}), cache_size=40
    )
    legit = [
        _tls(
            pki.inter.issue_client_cert(organization="payments").certificate, pki.inter.certificate
        )
        for _ in range(30)
    ]
    for p in legit:
        verifier.authenticate(p)
    for _ in range(300):  # genuine certificates the policy refuses
        denied = pki.inter.issue_client_cert(organization="elsewhere").certificate
        with pytest.raises(PolicyDenied):
            verifier.authenticate(_tls(denied, pki.inter.certificate))
    hits = verifier.health()["cache"]["hits"]  # type: ignore[index]
    for p in legit:
        verifier.authenticate(p)
    assert verifier.health()["cache"]["hits"] == hits + 30  # type: ignore[index,operator]
    assert verifier.health()["cache"]["admitted"] == 30  # type: ignore[index]
    assert verifier.health()["cache"]["entries"] <= 30 + 16  # probation: its own small share


def test_a_denied_entry_is_admitted_once_some_route_allows_it(pki) -> None:
    from mtlsauth import Policy, PolicyDenied

    verifier = Verifier(
        trust_store=pki.root.trust_store(), policy=Policy(organizations={"ads"}), cache_size=10
    )
    p = _tls(pki.good.certificate, pki.inter.certificate)
    with pytest.raises(PolicyDenied):
        verifier.authenticate(p)
    assert verifier.health()["cache"]["admitted"] == 0  # type: ignore[index]
    assert verifier.authenticate(p, policy=Policy(organizations={"payments"})) is not None
    assert verifier.health()["cache"]["admitted"] == 1  # type: ignore[index]


def test_failing_chain_variants_of_one_leaf_cost_bounded_work(pki, junk, monkeypatch) -> None:
    import mtlsauth._verifier as verifier_module

    calls = []
    real = verifier_module.validate_path
    monkeypatch.setattr(
        verifier_module, "validate_path", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    verifier = Verifier(trust_store=pki.root.trust_store())
    orphan = pki.good.certificate  # without its intermediate: no path
    for extra in junk[:300]:
        with pytest.raises(CertificateInvalid) as info:
            verifier.authenticate(_tls(orphan, extra))
        assert info.value.code == "untrusted_issuer"
    assert len(calls) <= 4
    assert verifier.health()["cache"]["negative_entries"] <= 256  # type: ignore[index,operator]
    # Another, valid leaf is not affected.
    assert verifier.authenticate(_tls(pki.direct.certificate)) is not None


def test_proxy_verified_identities_are_keyed_by_identity_not_by_header_bytes(pki) -> None:
    from mtlsauth import ForwardedCert

    fwd = ForwardedCert(
        header="X-Forwarded-Client-Cert",
        encoding="xfcc",
        trusted_proxies=["192.0.2.1"],
        verified_by_proxy=True,
    )
    verifier = Verifier(trust_store=pki.root.trust_store(), forwarded=fwd, cache_size=100)
    own = "Hash=" + "ab" * 32 + ';Subject="CN=web,O=Acme";URI=spiffe://td/ns/a/sa/web'
    for i in range(1000):  # a client-chosen element before the proxy's own (APPEND_FORWARD)
        value = f'By=spiffe://x;Hash={i:064x};Subject="CN=junk{i}",' + own
        headers = (("x-forwarded-client-cert", value),)
        identity = verifier.authenticate(Presented(peer="192.0.2.1", headers=headers))
        assert identity is not None
        assert identity.common_name == "web"
    assert verifier.health()["cache"]["entries"] == 1  # type: ignore[index]


# -- configuration errors ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        pytest.param({}, ValueError, id="no trust at all"),
        pytest.param({"trust_store": "ca.pem"}, TypeError, id="trust_store as a path"),
        pytest.param({"max_depth": "8"}, TypeError, id="max_depth as str"),
        pytest.param({"max_depth": -1}, ValueError, id="negative depth"),
        pytest.param({"clock_skew": dt.timedelta(hours=2)}, ValueError, id="huge skew"),
        pytest.param({"cache_size": -5}, ValueError, id="negative cache"),
        pytest.param({"revocation": "crls/"}, TypeError, id="revocation as a path"),
        pytest.param({"pinned": ["not a cert"]}, ValueError, id="bad pin"),
        pytest.param({"intermediates": [b"junk"]}, ValueError, id="bad intermediate"),
        pytest.param({"policy": {"organizations": ["x"]}}, TypeError, id="policy as a dict"),
        pytest.param({"forwarded": "nginx"}, TypeError, id="forwarded as a str"),
    ],
)
def test_bad_configuration_fails_at_construction(
    pki, kwargs: dict[str, object], error: type
) -> None:
    if kwargs and "trust_store" not in kwargs:
        kwargs = {"trust_store": pki.root.trust_store(), **kwargs}
    with pytest.raises(error):
        Verifier(**kwargs)  # type: ignore[arg-type]


def test_identity_fields(pki) -> None:
    identity = Verifier(trust_store=pki.root.trust_store()).verify(pki.good.chain_pem.text())
    assert identity.subject == "CN=ledger,OU=ops,OU=eng,O=payments"
    assert identity.common_name == "ledger"
    assert identity.organization == "payments"
    assert identity.organizational_units == ("eng", "ops")
    assert identity.dns_names == ("ledger.payments.svc",)
    assert identity.spiffe_id == "spiffe://example.org/ns/payments/sa/ledger"
    assert identity.emails == ("ledger@example.org",)
    assert [str(i) for i in identity.ip_addresses] == ["10.1.2.3"]
    assert identity.serial_number == pki.good.certificate.serial_number
    assert len(identity.fingerprint_sha256 or "") == 64
    assert identity.chain[-1] == pki.root.certificate
    assert identity.certificate == pki.good.certificate
    assert identity.verified_by == "mtlsauth"
    assert identity.matches_token_binding({"x5t#S256": identity.x5t_s256()})
    assert not identity.matches_token_binding({"x5t#S256": "AAAA"})
    assert not identity.matches_token_binding("nope")


# -- source choice: a trusted proxy's own TLS certificate is never its client's ----------
PROXY = "10.0.0.1"


@pytest.fixture(scope="module")
def proxied(pki):
    from mtlsauth import ForwardedCert

    # The proxy re-encrypts to the app with its own certificate from the same CA, as it
    # must when the app's server context requires one (server_ssl_context, mode mandatory).
    proxy_cert = pki.inter.issue_client_cert(common_name="gateway", organization="payments")
    verifier = Verifier(
        trust_store=pki.root.trust_store(),
        forwarded=ForwardedCert.preset(
            "nginx",
            header="x-ssl-client-cert",
            trusted_proxies=[PROXY],
            single_certificate=False,  # leaf + intermediate in the header
        ),
    )
    return verifier, tuple(proxy_cert.chain_der)


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param((), id="no header (client sent no certificate)"),
        pytest.param((("x-ssl-client-cert", ""),), id="empty header"),
        pytest.param((("x-ssl-client-cert", "(null)"),), id="Apache (null)"),
    ],
)
def test_trusted_proxy_without_header_is_not_authenticated_as_itself(proxied, headers) -> None:
    from mtlsauth import CertificateMissing, Presented

    verifier, proxy_chain = proxied
    presented = Presented(peer=PROXY, headers=headers, tls_chain=proxy_chain)
    with pytest.raises(CertificateMissing):
        verifier.authenticate(presented)
    assert verifier.authenticate(presented, required=False) is None


def test_trusted_proxy_header_still_wins_over_its_tls_chain(proxied, pki) -> None:
    from urllib.parse import quote

    from mtlsauth import Presented

    verifier, proxy_chain = proxied
    header = ("x-ssl-client-cert", quote(pki.good.chain_pem.text(), safe=""))
    identity = verifier.authenticate(
        Presented(peer=PROXY, headers=(header,), tls_chain=proxy_chain)
    )
    assert identity is not None
    assert identity.common_name == "ledger"


def test_direct_tls_client_still_authenticates_beside_a_forwarded_config(proxied, pki) -> None:
    from mtlsauth import Presented

    verifier, _ = proxied
    identity = verifier.authenticate(
        Presented(peer="192.0.2.7", tls_chain=tuple(pki.good.chain_der))
    )
    assert identity is not None
    assert identity.source == "tls"


def test_validity_is_judged_at_whole_seconds_and_never_at_a_neighbouring_one(pki) -> None:
    """The engine validates at whole seconds (a certificate whose notAfter is T is valid until
    T + 0.999999), and a verifier is reused only within its second: validating at T + 0.5,
    then at T + 1, then at T + 0.999999 gives valid, expired, valid; the same at notBefore."""
    t = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) + dt.timedelta(days=2)
    cert = pki.inter.issue_client_cert(not_before=t - dt.timedelta(days=1), not_after=t)
    early = pki.inter.issue_client_cert(not_before=t, not_after=t + dt.timedelta(days=1))
    verifier = Verifier(trust_store=pki.root.trust_store())
    chain, later = cert.chain_pem.text(), early.chain_pem.text()
    us = dt.timedelta(microseconds=1)

    def code(pem: str, at: dt.datetime) -> str:
        try:
            verifier.verify(pem, at=at)
        except MTLSAuthError as exc:
            return exc.code
        return "accepted"

    moments = [t + dt.timedelta(milliseconds=500), t + dt.timedelta(seconds=1), t + 999_999 * us]
    assert [code(chain, at) for at in moments] == [
        "accepted",
        "certificate_expired",
        "accepted",
    ]
    assert [code(later, at) for at in (t - us, t, t - us, t + 999_999 * us)] == [
        "certificate_not_yet_valid",
        "accepted",
        "certificate_not_yet_valid",
        "accepted",
    ]


def test_an_entry_computed_under_replaced_revocation_data_is_a_miss_not_a_hit(pki) -> None:
    """A verification that finishes after another request noticed new revocation data caches
    its result under the old data; the next request must verify again, and the cache's
    counters must call that a miss, not a hit."""
    other = pki.inter.issue_client_cert().chain_pem.text()

    class ReplacedMidway(SwitchableRevocation):
        def check(
            self, chain: Sequence[x509.Certificate], *, at: dt.datetime
        ) -> dt.datetime | None:
            if self.calls == 0:
                self.token = object()  # new revocation data lands...
                self.calls += 1
                verifier.verify(other)  # ...and another request notices it meanwhile
                return None
            return super().check(chain, at=at)

    rev = ReplacedMidway()
    verifier = Verifier(trust_store=pki.root.trust_store(), revocation=rev)
    chain = pki.good.chain_pem.text()
    verifier.verify(chain)  # computed under the old data, finished under the new
    before = verifier.health()["cache"]
    calls = rev.calls
    verifier.verify(chain)
    after = verifier.health()["cache"]
    assert rev.calls == calls + 1  # verified again
    assert after["hits"] == before["hits"]  # type: ignore[index]
    assert after["misses"] == before["misses"] + 1  # type: ignore[index,operator]


def test_a_refusal_computed_under_replaced_revocation_data_is_not_served_after_it(pki) -> None:
    """A check that read the old CRL (revoked) and finishes after another request noticed the
    new one (revocation lifted) must not leave its refusal in the cache: the next request is
    judged under the new data."""
    other = pki.inter.issue_client_cert().chain_pem.text()

    class LiftedMidway(SwitchableRevocation):
        def check(
            self, chain: Sequence[x509.Certificate], *, at: dt.datetime
        ) -> dt.datetime | None:
            if self.calls == 0:
                self.calls += 1
                self.revoked.clear()  # the revocation is lifted...
                self.token = object()
                verifier.verify(other)  # ...and another request notices it meanwhile
                raise CertificateRevoked("revoked")  # what this check read before
            return super().check(chain, at=at)

    rev = LiftedMidway()
    rev.revoked.add(pki.good.certificate.serial_number)
    verifier = Verifier(trust_store=pki.root.trust_store(), revocation=rev)
    chain = pki.good.chain_pem.text()
    assert verdict(verifier, chain) == "certificate_revoked"
    assert verdict(verifier, chain) == "accepted"


def test_a_tls_chain_of_other_item_types_is_read_or_refused_never_a_type_error(pki) -> None:
    """``Presented.tls_chain`` holds PEM or DER as ``str``/``bytes``; a direct caller may hand
    certificates, ``bytearray`` or ``memoryview`` (read as their bytes, like ``verify``) or
    anything else (refused as ``certificate_malformed``), and asking twice answers the same."""
    from mtlsauth._types import Presented

    verifier = Verifier(trust_store=pki.root.trust_store())
    leaf, inter = pki.good.certificate, pki.inter.certificate
    pem = pki.good.chain_pem.bytes()
    readable = {
        "certificates": (leaf, inter),
        "bytearray": (bytearray(pem),),
        "memoryview": (memoryview(pem),),
        "a list": [pki.good.chain_pem.text()],
        "mixed": (pki.good.cert_pem.text(), inter),
    }
    for what, chain in readable.items():
        for _ in range(2):
            identity = verifier.authenticate(Presented(peer="192.0.2.1", tls_chain=chain))  # type: ignore[arg-type]
            assert identity is not None, what
            assert identity.fingerprint_sha256 == hashlib.sha256(pki.good.der).hexdigest(), what
    for what, chain in {"an int": (123,), "None": (None,), "a dict": ({},)}.items():
        for _ in range(2):
            with pytest.raises(MTLSAuthError) as caught:
                verifier.authenticate(Presented(peer="192.0.2.1", tls_chain=chain))  # type: ignore[arg-type]
            assert caught.value.code == "certificate_malformed", what


@pytest.mark.parametrize("preset", ["nginx", "envoy", "apache", "traefik", "haproxy", "gcp"])
def test_headers_that_are_not_name_value_pairs_are_request_malformed(pki, preset: str) -> None:
    """``Presented.headers`` is a sequence of (name, value) pairs; a direct caller's other
    shapes are refused as ``request_malformed``, never a ``TypeError`` or ``ValueError``."""
    from mtlsauth import ForwardedCert
    from mtlsauth._types import Presented

    fwd = ForwardedCert.preset(preset, trusted_proxies=["10.0.0.1"])
    verifier = Verifier(trust_store=pki.root.trust_store(), forwarded=fwd)
    name = fwd.header
    for headers in (((name,),), ((name, "a", "b"),), (123,), None, 5):
        with pytest.raises(MTLSAuthError) as caught:
            verifier.authenticate(Presented(peer="10.0.0.1", headers=headers))  # type: ignore[arg-type]
        assert caught.value.code == "request_malformed", headers


@pytest.mark.parametrize("where", ["permitted", "excluded"])
@pytest.mark.parametrize("org", ["Acme Corp", "Evil Corp"])
def test_directory_name_constraints_are_refused_by_mtlsauth_itself(where: str, org: str) -> None:
    """cryptography 45 ignores a CA's directoryName name constraints (a leaf with O=Evil Corp
    passed under "permitted: O=Acme Corp"); later releases refuse them as unsupported. The
    chain's own check refuses them too, whatever the installed engine does."""
    from mtlsauth._nameconstraints import check_identity_name_constraints

    root = CA()
    dn = x509.DirectoryName(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme Corp")]))
    nc = x509.NameConstraints(
        permitted_subtrees=[dn] if where == "permitted" else None,
        excluded_subtrees=[dn] if where == "excluded" else None,
    )
    inter = root.intermediate(name_constraints=nc)
    leaf = inter.issue_client_cert(organization=org)
    with pytest.raises(CertificateInvalid) as info:
        check_identity_name_constraints([leaf.certificate, inter.certificate, root.certificate])
    assert info.value.code == "untrusted_issuer"
    assert "directoryName" in info.value.detail
