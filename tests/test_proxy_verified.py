"""Proxy-verified identities (``verified_by_proxy=True``) reviewed as an attacker.

The proxy verified the certificate and forwards facts about it. What it forwards is believed
only as far as it goes: a validity window that has passed refuses the identity, a reported
error refuses it, and the SANs it reports read as the certificate's own.
"""

from __future__ import annotations

import base64
import time
from datetime import datetime, timedelta, timezone
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtlsauth import (
    CertificateInvalid,
    ForwardedCert,
    Policy,
    PolicyDenied,
    Presented,
    Verifier,
    _names,
)
from mtlsauth._forwarded._verified import identity_from_gcp, parse_dn
from mtlsauth.testing import CA, encode_forwarded

PROXY = "10.0.0.5"
TRUSTED = ["10.0.0.0/24"]


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _verifier(preset: str, **kw: object) -> Verifier:
    forwarded = ForwardedCert.preset(preset, trusted_proxies=TRUSTED, verified_by_proxy=True)
    return Verifier(trust_store=CA().trust_store(), forwarded=forwarded, **kw)  # type: ignore[arg-type]


def _request(*headers: tuple[str, str]) -> Presented:
    return Presented(peer=PROXY, headers=tuple((k.lower(), v) for k, v in headers))


def _alb(not_before: datetime, not_after: datetime, **extra: str) -> Presented:
    validity = extra.pop("validity", f"NotBefore={_iso(not_before)};NotAfter={_iso(not_after)}")
    return _request(
        ("X-Amzn-Mtls-Clientcert-Subject", "CN=alice,O=Acme"),
        ("X-Amzn-Mtls-Clientcert-Issuer", "CN=Acme CA"),
        ("X-Amzn-Mtls-Clientcert-Serial-Number", "0A1B"),
        ("X-Amzn-Mtls-Clientcert-Validity", validity),
    )


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _gcp(not_before: datetime, not_after: datetime, **extra: str) -> Presented:
    headers = {
        "X-Client-Cert-Present": "true",
        "X-Client-Cert-Chain-Verified": "true",
        "X-Client-Cert-SPIFFE": "spiffe://td/ns/a/sa/b",
        "X-Client-Cert-Valid-Not-Before": _rfc3339(not_before),
        "X-Client-Cert-Valid-Not-After": _rfc3339(not_after),
        **extra,
    }
    return _request(*headers.items())


NOW = datetime.now(timezone.utc).replace(microsecond=0)
PAST = (NOW - timedelta(days=400), NOW - timedelta(days=30))
FUTURE = (NOW + timedelta(days=30), NOW + timedelta(days=400))
CURRENT = (NOW - timedelta(days=1), NOW + timedelta(days=30))


# -- validity: what the proxy forwarded is checked, as a certificate's would be -----------------
@pytest.mark.parametrize("build", [_alb, _gcp], ids=["aws-alb", "gcp"])
@pytest.mark.parametrize(
    ("window", "code"),
    [(PAST, "certificate_expired"), (FUTURE, "certificate_not_yet_valid")],
    ids=["expired", "not yet valid"],
)
def test_forwarded_validity_outside_the_window_is_refused(build, window, code) -> None:
    """ALB's ``IgnoreClientCertificateExpiry`` and GCP's allow-listed certificates forward
    expired certificates as verified: the forwarded window decides, as the certificate's."""
    preset = "aws-alb-verify" if build is _alb else "gcp"
    verifier = _verifier(preset)
    with pytest.raises(CertificateInvalid) as info:
        verifier.authenticate(build(*window))
    assert info.value.code == code
    assert verifier.authenticate(build(*CURRENT)).verified_by == "proxy"


def test_clock_skew_applies_to_the_forwarded_window() -> None:
    now = datetime.now(timezone.utc).replace(microsecond=0)  # not NOW: the suite takes minutes
    just_expired = (now - timedelta(days=30), now - timedelta(seconds=30))
    with pytest.raises(CertificateInvalid):
        _verifier("aws-alb-verify").authenticate(_alb(*just_expired))
    lenient = _verifier("aws-alb-verify", clock_skew=300)
    assert lenient.authenticate(_alb(*just_expired)).not_after == just_expired[1]


def test_a_cached_proxy_identity_expires_with_its_forwarded_window() -> None:
    """The cache keeps a proxy-verified identity no longer than its forwarded notAfter."""
    verifier = _verifier("aws-alb-verify")
    soon = datetime.now(timezone.utc) + timedelta(seconds=2)
    request = _alb(NOW - timedelta(days=1), soon)
    assert verifier.authenticate(request).verified_by == "proxy"
    time.sleep(max(0.0, (soon - datetime.now(timezone.utc)).total_seconds()) + 1.1)
    with pytest.raises(CertificateInvalid) as info:
        verifier.authenticate(request)
    assert info.value.code == "certificate_expired"


@pytest.mark.parametrize(
    "validity",
    [
        pytest.param("NotBefore=2020-01-01T00:00:00Z;NotAfter=2099-01-01T00:00:00Z;NotAfter=2000-01-01T00:00:00Z", id="NotAfter twice"),
        pytest.param("NotBefore=2020-01-01T00:00:00Z;notafter=2099-01-01T00:00:00Z;NotAfter=2000-01-01T00:00:00Z", id="NotAfter twice, other case"),
        pytest.param("NotBefore=2020-01-01T00:00:00Z", id="no NotAfter"),
        pytest.param("NotAfter=2099-01-01T00:00:00Z", id="no NotBefore"),
        pytest.param("NotBefore=2099-01-01T00:00:00Z;NotAfter=2020-01-01T00:00:00Z", id="ends before it starts"),
    ],
)  # fmt: skip
def test_alb_validity_that_is_not_one_window_is_malformed(validity: str) -> None:
    verifier = _verifier("aws-alb-verify")
    with pytest.raises(CertificateInvalid) as info:
        verifier.authenticate(_alb(*CURRENT, validity=validity))
    assert info.value.code == "certificate_malformed"


# -- GCP: a reported error refuses; the SPIFFE ID is one of the URIs ------------------------
@pytest.mark.parametrize(
    "error",
    [
        "client_cert_uri_sans_exceeded_size_limit",
        "client_cert_subject_dn_exceeded_size_limit",
        "client_cert_dnsname_sans_exceeded_size_limit",
    ],
)
def test_gcp_reported_error_refuses_the_identity(error: str) -> None:
    """Over its size limits GCP empties a field and says so in ``client_cert_error`` only:
    an identity read from the rest would lack SANs (and gain a SPIFFE ID as the sole URI)."""
    verifier = _verifier("gcp")
    with pytest.raises(CertificateInvalid) as info:
        verifier.authenticate(_gcp(*CURRENT, **{"X-Client-Cert-Error": error}))
    assert info.value.code == "certificate_malformed"
    assert verifier.authenticate(_gcp(*CURRENT)).spiffe_id == "spiffe://td/ns/a/sa/b"


def _gcp_fields(spiffe: str, *uris: str) -> dict[str, str]:
    return {
        "chain_verified": "true",
        "spiffe": spiffe,
        "uri": ",".join(_b64(u) for u in uris),
    }


def test_gcp_spiffe_id_is_one_of_the_uris() -> None:
    """GCP leaves the SPIFFE ID out of ``client_cert_uri_sans``: the certificate's URIs are
    the SPIFFE ID and that list together, as the TLS path would list them."""
    only = identity_from_gcp(_gcp_fields("spiffe://td/a"), "header:x")
    assert (only.uris, only.spiffe_id) == (("spiffe://td/a",), "spiffe://td/a")
    two = identity_from_gcp(_gcp_fields("spiffe://td/a", "https://x.example"), "header:x")
    assert two.uris == ("spiffe://td/a", "https://x.example")
    assert two.spiffe_id is None  # two URI SANs: no X.509-SVID, as on the TLS path


def test_gcp_spiffe_id_never_comes_from_the_uri_list() -> None:
    """A ``spiffe://`` URI that GCP listed among the other URIs is one it did not take as the
    SPIFFE ID (invalid, or beside another one it removed): it names no SPIFFE ID."""
    listed = identity_from_gcp(_gcp_fields("", "spiffe://td/admin"), "header:x")
    assert listed.uris == ("spiffe://td/admin",)
    assert listed.spiffe_id is None


# -- DN strings that end in an escaped space -------------------------------------------------
def test_dn_ending_in_an_escaped_space_keeps_it() -> None:
    """RFC 2253 printers write a trailing space as ``\\ ``; printed last, it ends the string.
    It belongs to the value (in an ALB ``-Subject`` and in a configured DN alike)."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    from mtlsauth import Policy
    from mtlsauth._forwarded._verified import parse_dn

    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, " o "),
            x509.NameAttribute(NameOID.COMMON_NAME, "x"),
        ]
    )
    assert parse_dn("CN=x,O=\\ o\\ ") == name
    assert (
        parse_dn("CN=x,O=o\\\\\\ ").get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
        == "o\\ "
    )
    assert parse_dn("CN=x,O=o\\\\ ") == parse_dn("CN=x,O=o\\\\")  # an escaped backslash, a blank
    client = CA().issue_client_cert(subject=name)
    Policy(subjects=["CN=x,O=\\ o\\ "]).check(
        Verifier(trust_store=CA().trust_store(), pinned=[client.der]).verify(client.der)
    )


def test_extreme_forwarded_windows_never_escape_as_other_errors() -> None:
    """Year 1 and year 9999 with a clock skew: no arithmetic overflow reaches the caller."""
    verifier = _verifier("aws-alb-verify", clock_skew=300)
    edge = "NotBefore=0001-01-01T00:00:00Z;NotAfter=9999-12-31T23:59:59Z"
    identity = verifier.authenticate(_alb(*CURRENT, validity=edge))
    assert identity.not_after == datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc)
    past = "NotBefore=0001-01-01T00:00:00Z;NotAfter=0001-01-01T00:00:01Z"
    with pytest.raises(CertificateInvalid) as info:
        verifier.authenticate(_alb(*CURRENT, validity=past))
    assert info.value.code == "certificate_expired"
    future = "NotBefore=9999-12-31T23:59:58Z;NotAfter=9999-12-31T23:59:59Z"
    with pytest.raises(CertificateInvalid) as info:
        verifier.authenticate(_alb(*CURRENT, validity=future))
    assert info.value.code == "certificate_not_yet_valid"


# -- checked and clean: GCP booleans, deny-lists on proxy-verified identities ----------------
@pytest.mark.parametrize("present", ["1", "yes", "on", "truE x", "\u0074rue\u00a0", ""])
def test_gcp_present_other_than_true_is_no_certificate(present: str) -> None:
    fc = ForwardedCert.preset("gcp", trusted_proxies=TRUSTED, verified_by_proxy=True)
    request = _gcp(*CURRENT, **{"X-Client-Cert-Present": present})
    assert fc.extract(request) is None


@pytest.mark.parametrize("verified", ["1", "yes", "false", "TRUE1", "t", ""])
def test_gcp_chain_verified_other_than_true_refuses(verified: str) -> None:
    verifier = _verifier("gcp")
    with pytest.raises(CertificateInvalid) as info:
        verifier.authenticate(_gcp(*CURRENT, **{"X-Client-Cert-Chain-Verified": verified}))
    assert info.value.code == "certificate_malformed"
    for spelling in ("true", "True", " TRUE "):
        request = _gcp(*CURRENT, **{"X-Client-Cert-Chain-Verified": spelling})
        assert verifier.authenticate(request).verified_by == "proxy"


def _alice_with_serial(serial: str) -> Presented:
    return _request(
        ("X-Amzn-Mtls-Clientcert-Subject", "CN=alice"),
        ("X-Amzn-Mtls-Clientcert-Serial-Number", serial),
        ("X-Amzn-Mtls-Clientcert-Validity", f"NotBefore={_iso(CURRENT[0])};NotAfter={_iso(CURRENT[1])}"),
    )  # fmt: skip


@pytest.mark.parametrize("spelling", ["0A1B", "0a1b", "0a:1b", "00:0A:1B", "000a1b"])
def test_no_spelling_of_a_forwarded_serial_dodges_deny_serials(spelling: str) -> None:
    from mtlsauth import Policy, PolicyDenied

    forwarded = ForwardedCert.preset(
        "aws-alb-verify", trusted_proxies=TRUSTED, verified_by_proxy=True
    )
    verifier = Verifier(
        trust_store=CA().trust_store(),
        forwarded=forwarded,
        policy=Policy(common_names=["alice"], deny_serials=["0x0a1b"]),
    )
    request = _alice_with_serial(spelling)
    with pytest.raises(PolicyDenied) as info:
        verifier.authenticate(request)
    assert info.value.code == "certificate_denied"


@pytest.mark.parametrize("spelling", ["a:1b", "0a:1b:", ":0a:1b", "0a::1b", "0a1:b"])
def test_a_forwarded_serial_with_groups_other_than_bytes_is_malformed(spelling: str) -> None:
    """Colon-separated hex is one byte per group: "a:1b" could mean 0x0a1b or 0xa1b, so it
    is refused rather than read as the digits run together."""
    request = _alice_with_serial(spelling)
    with pytest.raises(CertificateInvalid) as info:
        _verifier("aws-alb-verify").authenticate(request)
    assert info.value.code == "certificate_malformed"


@pytest.mark.parametrize("spelling", ["0", "00", "0000", "00:00"])
@pytest.mark.parametrize("preset", ["aws-alb-verify", "gcp"])
def test_a_forwarded_serial_of_zero_is_malformed(preset: str, spelling: str) -> None:
    """No certificate with a serial of zero is accepted over TLS, and ``deny_serials``
    refuses 0 as an entry that would deny nothing: a proxy's serial of zero is refused too,
    or such an identity could never be deny-listed."""
    if preset == "gcp":
        request = _gcp(*CURRENT, **{"X-Client-Cert-Serial-Number": spelling})
    else:
        request = _alice_with_serial(spelling)
    with pytest.raises(CertificateInvalid) as info:
        _verifier(preset).authenticate(request)
    assert info.value.code == "certificate_malformed"
    assert (
        _verifier(preset)
        .authenticate(
            _gcp(*CURRENT, **{"X-Client-Cert-Serial-Number": "01"})
            if preset == "gcp"
            else _alice_with_serial("01")
        )
        .serial_number
        == 1
    )


def test_deny_fingerprints_refuses_every_proxy_verified_identity() -> None:
    """Without the certificate no re-encoding of a denied one can be ruled out."""
    from mtlsauth import Policy, PolicyDenied

    verifier = _verifier(
        "gcp", policy=Policy(spiffe_ids=["spiffe://td/ns/a/sa/b"], deny_fingerprints=["00" * 32])
    )
    digest = base64.b64encode(bytes(range(32))).decode()
    with pytest.raises(PolicyDenied) as info:
        verifier.authenticate(_gcp(*CURRENT, **{"X-Client-Cert-Hash": digest}))
    assert info.value.code == "certificate_denied"


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("X-Amzn-Mtls-Clientcert-Serial-Number", "0A1B,0C"),
        ("X-Amzn-Mtls-Clientcert-Serial-Number", "0A1B, 0C"),
        (
            "X-Amzn-Mtls-Clientcert-Validity",
            f"NotBefore={_iso(CURRENT[0])};NotAfter={_iso(CURRENT[1])},"
            f"NotBefore={_iso(PAST[0])};NotAfter={_iso(PAST[1])}",
        ),
    ],
)
def test_alb_fields_joined_by_a_wsgi_server_are_malformed(header: str, value: str) -> None:
    """WSGI joins a client's copy and the load balancer's with a comma: for the fields that
    hold none of their own, that is refused, never read as one of them."""
    headers = {
        "X-Amzn-Mtls-Clientcert-Subject": "CN=alice",
        "X-Amzn-Mtls-Clientcert-Serial-Number": "0A1B",
        "X-Amzn-Mtls-Clientcert-Validity": f"NotBefore={_iso(CURRENT[0])};NotAfter={_iso(CURRENT[1])}",
        header: value,
    }
    with pytest.raises(CertificateInvalid) as info:
        _verifier("aws-alb-verify").authenticate(_request(*headers.items()))
    assert info.value.code == "certificate_malformed"


def test_a_proxy_reported_spiffe_field_that_is_no_spiffe_id_is_none() -> None:
    """The SPIFFE ID rule of the TLS path holds for a proxy-verified identity: a reported
    ``spiffe://Example.org/...`` (or one with a trailing slash) is no SPIFFE ID."""
    for bad in ("spiffe://TD/a", "spiffe://td/a/", "SPIFFE://td/a", "spiffe://td/%61"):
        identity = identity_from_gcp(_gcp_fields(bad), "header:x")
        assert identity.uris == (bad,)
        assert identity.spiffe_id is None
    assert identity_from_gcp(_gcp_fields("spiffe://td/a"), "header:x").spiffe_id == "spiffe://td/a"


# -- what reading a proxy's DN costs --------------------------------------------------------


def _old_quoted_value(text: str, i: int, keyword: str) -> tuple[str, int]:
    # As it was: a copy of the rest of the DN after each quoted value, to look at its start.
    value, _, i = _names._scan(text, i, keyword, '"')
    if i == len(text):
        raise ValueError(f"the quoted {keyword} value has no closing '\"'")
    i += 1
    rest = text[i:].lstrip(" ")
    if rest and rest[0] not in ",+":
        raise ValueError(f"text after the quoted {keyword} value: {rest[:12]!r}")
    return value, i


def _outcome(text: str, *, strict: bool) -> object:
    try:
        return _names._parse_rdns(text, strict=strict)
    except ValueError as exc:
        return str(exc)


_DN_PIECES = ['"', "CN=", "O=", ",", "+", " ", "a", "\\", '\\"', "\\41", "#", "x=", "\t"]


@settings(max_examples=600, deadline=None)
@given(st.lists(st.sampled_from(_DN_PIECES), max_size=16).map("".join), st.booleans())
def test_a_quoted_value_is_read_as_before(text: str, strict: bool) -> None:
    new = _outcome(text, strict=strict)
    with mock.patch.object(_names, "_quoted_value", _old_quoted_value):
        assert _outcome(text, strict=strict) == new


def test_a_dn_of_many_quoted_values_is_read_in_linear_time() -> None:
    # Each quoted value copied the rest of the DN: a proxy's 1 MiB DN (max_size raised) of
    # quoted values took over 2 s, the square of its length; now about 0.4 s. Judged by how
    # this process's CPU time grows from a sixteenth of the length to all of it: 17-21x for
    # the linear reader (16x, and the CPU's caches, which a 1 MiB string outgrows), 74-91x
    # for the copying one on CPython 3.11 and 3.13; neither a slow machine nor tests
    # running beside this one on the same cores move that much.
    def fastest(size: int, runs: int) -> float:
        text = 'O="a",' * (size // 6)
        text += "\x00" * (size - len(text))
        best = float("inf")
        for _ in range(runs):
            started = time.process_time()
            with pytest.raises(CertificateInvalid):
                parse_dn(text)
            best = min(best, time.process_time() - started)
        return best

    small, whole = fastest(1 << 16, 5), fastest(1 << 20, 2)
    assert whole < 45 * small, (small, whole)
    with pytest.raises(ValueError, match=r"text after the quoted O value: 'x'"):
        _names._parse_rdns('O="a" x', strict=False)


# -- a proxy identity that names nobody ---------------------------------------------------------
def _xfcc(value: str) -> Presented:
    return _request(("X-Forwarded-Client-Cert", value))


_WINDOW = (
    ("X-Client-Cert-Valid-Not-Before", _rfc3339(CURRENT[0])),
    ("X-Client-Cert-Valid-Not-After", _rfc3339(CURRENT[1])),
)


@pytest.mark.parametrize(
    ("preset", "request_"),
    [
        # Every configured GCP field absent but Present and Chain-Verified (or emptied).
        (
            "gcp",
            _request(
                ("X-Client-Cert-Present", "true"),
                ("X-Client-Cert-Chain-Verified", "true"),
                *_WINDOW,
            ),
        ),
        (
            "gcp",
            _request(
                ("X-Client-Cert-Present", "true"),
                ("X-Client-Cert-Chain-Verified", "true"),
                ("X-Client-Cert-Hash", "ab" * 32),
                ("X-Client-Cert-Subject-DN", "MAA="),  # an empty DER Name
                *_WINDOW,
            ),
        ),
        # A Subject of blanks is no name; Envoy writes Subject="" for an empty subject.
        ("istio", _xfcc("Hash=" + "ab" * 32 + ';Subject=" ";URI=')),
    ],
)
def test_a_proxy_identity_that_names_nobody_is_malformed(preset: str, request_: Presented) -> None:
    # A certificate with neither subject nor SAN is certificate_malformed over TLS; the
    # same certificate described by a proxy was admitted (an empty policy, or a fingerprints
    # or serials rule, admits it).
    verifier = _verifier("gcp" if preset == "gcp" else "istio")
    with pytest.raises(CertificateInvalid) as info:
        verifier.authenticate(request_)
    assert info.value.code == "certificate_malformed"
    assert "name nobody" in str(info.value)


# -- a validity window the configuration names must come, whole --------------------------------
@pytest.mark.parametrize(
    ("preset", "request_"),
    [
        # ALB always sends -Validity in verify mode; without it the expiry went unchecked.
        ("aws-alb-verify", _request(("X-Amzn-Mtls-Clientcert-Subject", "CN=alice,O=Acme"))),
        ("gcp", _gcp(*PAST, **{"X-Client-Cert-Valid-Not-After": ""})),  # an expired window's start
        ("gcp", _gcp(*PAST, **{"X-Client-Cert-Valid-Not-Before": ""})),
        ("gcp", _request(("X-Client-Cert-Present", "true"), ("X-Client-Cert-Chain-Verified", "true"),
                         ("X-Client-Cert-SPIFFE", "spiffe://td/ns/a/sa/b"))),
    ],
)  # fmt: skip
def test_a_configured_validity_that_does_not_come_is_malformed(
    preset: str, request_: Presented
) -> None:
    # ALB (IgnoreClientCertificateExpiry) and GCP (allow-listed certificates) forward expired
    # certificates as verified: the forwarded window is the only expiry check, and an
    # identity was admitted without it, or with its notBefore alone.
    with pytest.raises(CertificateInvalid) as info:
        _verifier(preset).authenticate(request_)
    assert info.value.code == "certificate_malformed"


def test_identity_headers_without_a_validity_window_do_without_it() -> None:
    # Left out of identity_headers, the window is not asked for (the documented opt-out) ...
    fields = {"subject": "X-Amzn-Mtls-Clientcert-Subject"}
    fc = ForwardedCert(
        header="X-Amzn-Mtls-Clientcert-Leaf", encoding="url-pem", trusted_proxies=TRUSTED,
        verified_by_proxy=True, identity_format="aws-alb", identity_headers=fields,
    )  # fmt: skip
    verifier = Verifier(trust_store=CA().trust_store(), forwarded=fc)
    request = _request(("X-Amzn-Mtls-Clientcert-Subject", "CN=alice"))
    assert verifier.authenticate(request).common_name == "alice"
    # ... but half of GCP's window is a configuration error: it would check one end only.
    for half in ("not_before", "not_after"):
        with pytest.raises(ValueError, match="name both"):
            ForwardedCert(
                header="X-Client-Cert-Leaf", encoding="rfc9440", trusted_proxies=TRUSTED,
                verified_by_proxy=True, identity_format="gcp",
                identity_headers={"present": "X-P", "chain_verified": "X-V", half: "X-W"},
            )  # fmt: skip
    with pytest.raises(CertificateInvalid, match="one end"):
        identity_from_gcp({"chain_verified": "true", "not_before": _rfc3339(PAST[0])}, "gcp")


# -- XFCC URI and DNS values are never quoted by Envoy -----------------------------------------
_ADMIN_ID = Policy(spiffe_ids=["spiffe://td/ns/prod/sa/admin"])
_ADMIN_URI = Policy(uris=["spiffe://td/ns/prod/sa/admin"])
_ADMIN_HOST = Policy(dns_names=["admin.example"])


@pytest.mark.parametrize(
    ("value", "policy"),
    [
        ('URI="spiffe://td/ns/prod/sa/admin"', _ADMIN_ID),
        ('Subject="CN=a\\,b";URI="spiffe://td/ns/prod/sa/admin"', _ADMIN_ID),  # full parser
        ('By=spiffe://td/gw;URI=spiffe://td/ns/a/sa/b;URI="spiffe://td/ns/prod/sa/admin"', _ADMIN_URI),
        ('DNS="admin.example"', _ADMIN_HOST),
        ('Subject="CN=a";DNS=ok.example;DNS="admin.example"', _ADMIN_HOST),
        # Blanks around a value are the SAN's own text too (" spiffe://..." is no SPIFFE ID).
        ("URI= spiffe://td/ns/prod/sa/admin", _ADMIN_ID),
        ("URI=spiffe://td/ns/prod/sa/admin\t;DNS=a.example", _ADMIN_ID),
        ('Subject="CN=a\\,b";URI=\tspiffe://td/ns/prod/sa/admin', _ADMIN_ID),  # full parser
        ("DNS=a.example;DNS= admin.example", _ADMIN_HOST),
    ],
)  # fmt: skip
def test_a_quoted_xfcc_uri_or_dns_name_is_malformed(value: str, policy: Policy) -> None:
    # Envoy writes a URI or DNS SAN as it is, unquoted and untrimmed: URI="spiffe://.../admin"
    # is a SAN whose own text holds the quotes (or blanks), which no certificate reading takes
    # for that SPIFFE ID or host name. It was read with them removed and admitted as admin.
    with pytest.raises(CertificateInvalid) as info:
        _verifier("istio", policy=policy).authenticate(_xfcc(value))
    assert info.value.code == "certificate_malformed"


def test_unquoted_xfcc_names_and_quoted_ones_beside_a_cert_read_as_before() -> None:
    verifier = _verifier("istio")
    identity = verifier.authenticate(_xfcc("URI=spiffe://td/ns/a/sa/b;DNS=a.example"))
    assert identity.spiffe_id == "spiffe://td/ns/a/sa/b"
    assert identity.dns_names == ("a.example",)
    # An element with a Cert is verified from the certificate; its URI pairs are not read.
    fc = ForwardedCert.preset("istio", trusted_proxies=TRUSTED, verified_by_proxy=True)
    leaf = CA().issue_client_cert(common_name="c")
    ((name, text),) = encode_forwarded("istio", [leaf.der])
    value = fc.extract(_request((name, text + ';URI="spiffe://td/x"')))
    assert value is not None
    assert value.decode() == (leaf.der,)


@pytest.mark.parametrize(
    "value",
    ["URI=;URI=spiffe://td/ns/prod/sa/admin", "URI=spiffe://td/ns/prod/sa/admin;URI="],
)
def test_an_empty_xfcc_uri_beside_another_is_a_uri_san(value: str) -> None:
    # Envoy writes a bare "URI=" only for a certificate without URI SANs. Beside another URI
    # it is an empty URI SAN: the certificate has two URIs and, read over TLS, no SPIFFE ID.
    # The empty one was dropped and the other became the X.509-SVID's SPIFFE ID.
    verifier = _verifier("istio", policy=_ADMIN_ID)
    with pytest.raises(PolicyDenied) as info:
        verifier.authenticate(_xfcc(value))
    assert info.value.code == "spiffe_id_not_allowed"
    identity = _verifier("istio").authenticate(_xfcc(value))
    assert identity.spiffe_id is None
    assert sorted(identity.uris) == ["", "spiffe://td/ns/prod/sa/admin"]
    # Envoy's own bare "URI=" still means no URI SAN.
    assert _verifier("istio").authenticate(_xfcc('Subject="CN=a";URI=')).uris == ()


@pytest.mark.parametrize("serial", ["80" + "00" * 19, "01" + "00" * 20, "00" + "FF" * 21])
def test_a_forwarded_serial_longer_than_20_octets_is_malformed(serial: str) -> None:
    # Over TLS, path validation refuses a serial whose DER INTEGER is longer than 20 octets
    # (RFC 5280 4.1.2.2); the same certificate described by the load balancer was admitted.
    with pytest.raises(CertificateInvalid) as info:
        _verifier("aws-alb-verify").authenticate(_alice_with_serial(serial))
    assert info.value.code == "certificate_malformed"
    longest = "7F" + "FF" * 19  # 20 octets with the sign bit clear: a valid serial
    identity = _verifier("aws-alb-verify").authenticate(_alice_with_serial(longest))
    assert identity.serial_number == int(longest, 16)
