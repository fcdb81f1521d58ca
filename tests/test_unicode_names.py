"""No non-ASCII character folds into an ASCII allow-list entry, in any field a policy matches.

Every code point whose case fold, lower case, upper case, NFKC or NFKD form holds ASCII (plus
every Unicode space and format character, which a careless trim would drop) is put into a
presented name, in the middle and at either end, for every field: certificate identities and
proxy-verified ones (XFCC, AWS ALB, GCP). An allow-list holding every ASCII string such a
character could be read as must refuse each one. Exhaustive over ``range(0x110000)``.
"""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import unicodedata
from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from mtlsauth import ClientIdentity, MTLSAuthError, Policy, PolicyDenied
from mtlsauth._forwarded._verified import identity_from_aws, identity_from_gcp, identity_from_xfcc
from mtlsauth._forwarded._xfcc import select_element
from mtlsauth.testing import CA

_FORMS: tuple[Callable[[str], str], ...] = (
    str.casefold,
    str.lower,
    str.upper,
    lambda c: unicodedata.normalize("NFKC", c),
    lambda c: unicodedata.normalize("NFKD", c),
    lambda c: unicodedata.normalize("NFC", c),
)


def _reaches_ascii(c: str) -> bool:
    return any(ch.isascii() for f in _FORMS for ch in f(c))


def _confusable(c: str) -> bool:
    if c.isascii() or unicodedata.category(c) == "Cs":
        return False
    return _reaches_ascii(c) or c.isspace() or unicodedata.category(c) in ("Zs", "Cf")


CHARS = tuple(chr(cp) for cp in range(0x110000) if _confusable(chr(cp)))


def _readings(c: str) -> set[str]:
    """Every ASCII string a normaliser might turn ``c`` into (or nothing, or a space)."""
    out = {"", " "}
    for f in _FORMS:
        form = f(c)
        kept = "".join(ch for ch in form if ch.isascii())
        out.add(kept)
        out.add(kept.strip())
    return out


READINGS = sorted(set().union(*map(_readings, CHARS)))


def test_the_character_set_is_the_whole_class() -> None:
    # Spot checks that the enumeration holds what it must (and is not sampled).
    for (
        c
    ) in "\u017f\u212a\u00df\ufb03\uff21\u00a0\u3000\u200b\u2028\u037e\u1fef\u0130\u00e9\U0001d400":
        assert c in CHARS, hex(ord(c))
    assert len(CHARS) > 2000
    assert {"ss", ";", "k"} <= set(READINGS)


def _placements(c: str) -> tuple[str, ...]:
    return (f"ab{c}cd", f"abcd{c}", f"{c}abcd")


def _entries(template: str, field: str) -> list[str]:
    """Every ASCII entry ``template`` could be folded into, keeping those the field accepts."""
    out = []
    for reading in READINGS:
        for value in (f"ab{reading}cd", "abcd"):
            entry = template.format(value)
            try:
                Policy(**{field: [entry]})
            except ValueError:
                continue
            out.append(entry)
    return sorted(set(out))


def _dn(value: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "x"),
            x509.NameAttribute(NameOID.COMMON_NAME, value),
        ]
    )


def _dn_entries() -> list[str]:
    out = set()
    for reading in READINGS:
        for value in (f"ab{reading}cd", "abcd"):
            if value.strip():
                out.add(_dn(value).rfc4514_string())
    return sorted(out)


@pytest.fixture(scope="module")
def base() -> ClientIdentity:
    ca = CA()
    identity = _identity_of(ca)
    return dataclasses.replace(
        identity, certificate=None, chain=(), verified_by="proxy", fingerprint_sha256=None
    )


def _identity_of(ca: CA) -> ClientIdentity:
    from mtlsauth._identity import identity_from_certificate

    return identity_from_certificate(ca.issue_client_cert(common_name="seed").certificate)


# field -> (entry template, how a presented value goes into the identity)
_Setter = Callable[[ClientIdentity, str], ClientIdentity]
FIELDS: dict[str, list[tuple[str, _Setter]]] = {
    "common_names": [("{}", lambda i, v: dataclasses.replace(i, common_name=v))],
    "organizations": [
        ("{}", lambda i, v: dataclasses.replace(i, subject_name=_org(v), organization=v))
    ],
    "organizational_units": [
        ("{}", lambda i, v: dataclasses.replace(i, organizational_units=(v,)))
    ],
    "dns_names": [
        ("{}.example", lambda i, v: dataclasses.replace(i, dns_names=(f"{v}.example",))),
        ("*.example", lambda i, v: dataclasses.replace(i, dns_names=(f"{v}.example",))),
    ],
    "emails": [
        ("{}@example.com", lambda i, v: dataclasses.replace(i, emails=(f"{v}@example.com",))),
        ("u@{}.example", lambda i, v: dataclasses.replace(i, emails=(f"u@{v}.example",))),
        ("@{}.example", lambda i, v: dataclasses.replace(i, emails=(f"u@{v}.example",))),
    ],
    "uris": [
        ("https://{}.example/p", lambda i, v: dataclasses.replace(i, uris=(f"https://{v}.example/p",))),
        ("https://{}.example/*", lambda i, v: dataclasses.replace(i, uris=(f"https://{v}.example/p",))),
        ("https://h.example/{}", lambda i, v: dataclasses.replace(i, uris=(f"https://h.example/{v}",))),
    ],
    "spiffe_ids": [
        ("spiffe://{}/w", lambda i, v: dataclasses.replace(i, spiffe_id=f"spiffe://{v}/w")),
        ("spiffe://{}/*", lambda i, v: dataclasses.replace(i, spiffe_id=f"spiffe://{v}/w")),
        ("spiffe://td/{}", lambda i, v: dataclasses.replace(i, spiffe_id=f"spiffe://td/{v}")),
    ],
}  # fmt: skip


def _org(value: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, value)])


@pytest.mark.parametrize(
    ("field", "case"),
    [(f, i) for f, cases in FIELDS.items() for i in range(len(cases))],
)
def test_no_character_folds_into_an_ascii_entry(base, field, case) -> None:
    template, put = FIELDS[field][case]
    entries = [template] if "{}" not in template else _entries(template, field)
    assert entries
    policy = Policy(**{field: entries})
    put_ascii = put(base, "abcd")
    policy.check(put_ascii)  # the ASCII name itself is admitted: the test can see a match
    admitted = []
    for c in CHARS:
        for value in _placements(c):
            try:
                policy.check(put(base, value))
            except PolicyDenied:
                continue
            admitted.append(f"U+{ord(c):04X} in {value!r}")
    assert admitted == []


@pytest.mark.parametrize("field", ["subjects", "issuers"])
def test_no_character_folds_into_an_ascii_dn(base, field) -> None:
    policy = Policy(**{field: _dn_entries()})
    attr = "subject_name" if field == "subjects" else "issuer_name"
    policy.check(dataclasses.replace(base, **{attr: _dn("abcd")}))
    admitted = []
    for c in CHARS:
        for value in _placements(c):
            try:
                policy.check(dataclasses.replace(base, **{attr: _dn(value)}))
            except PolicyDenied:
                continue
            admitted.append(f"U+{ord(c):04X} in {value!r}")
    assert admitted == []


def test_configured_ip_and_fingerprint_entries_refuse_every_such_character() -> None:
    accepted = []
    fp = "ab" * 32
    for c in CHARS:
        for field, entry in (
            ("ip_addresses", f"10.0.0.1{c}"),
            ("ip_addresses", f"1{c}0.0.0.1"),
            ("ip_addresses", f"10.0.0.0/8{c}"),
            ("fingerprints", f"{fp[:10]}{c}{fp[11:]}"),
            ("fingerprints", f"{fp}{c}"),
            ("deny_serials", f"0x1{c}"),
        ):
            try:
                Policy(**{field: [entry]})
            except ValueError:
                continue
            accepted.append((field, entry))
    assert accepted == []


# -- the proxy-verified path: the same rule for what a proxy forwards -------------------------
def _proxy_policies() -> list[tuple[str, Policy]]:
    return [
        ("subjects", Policy(subjects=_dn_entries())),
        ("common_names", Policy(common_names=_entries("{}", "common_names"))),
        ("organizations", Policy(organizations=["x"], common_names=_entries("{}", "common_names"))),
        ("uris", Policy(uris=_entries("spiffe://{}/w", "uris"))),
        ("spiffe_ids", Policy(spiffe_ids=_entries("spiffe://td/{}", "spiffe_ids"))),
        ("dns_names", Policy(dns_names=_entries("{}.example", "dns_names"))),
    ]


def _xfcc(value: str) -> ClientIdentity:
    header = (
        f'Hash={"ab" * 32};Subject="CN={value},O=x";URI=spiffe://{value}/w;'
        f"URI=spiffe://td/{value};DNS={value}.example"
    )
    return identity_from_xfcc(select_element(header, -1), "header:x-forwarded-client-cert")


def _aws(value: str) -> ClientIdentity:
    return identity_from_aws({"subject": f"CN={value},O=x", "serial": "0a"}, "header:x")


def _gcp(value: str) -> ClientIdentity:
    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    der = _dn(value).public_bytes()
    return identity_from_gcp(
        {
            "chain_verified": "true",
            "subject": base64.b64encode(der).decode(),
            "uri": f"{b64(f'spiffe://{value}/w')},{b64(f'spiffe://td/{value}')}",
            "dns": b64(f"{value}.example"),
        },
        "header:x",
    )


@pytest.mark.parametrize("build", [_xfcc, _aws, _gcp], ids=["xfcc", "aws-alb", "gcp"])
def test_proxy_identities_never_fold_into_an_ascii_entry(build) -> None:
    policies = _proxy_policies()
    reference = build("abcd")
    for field, policy in policies:
        if field in ("uris", "spiffe_ids", "dns_names") and build is _aws:
            continue  # the load balancer forwards no SANs in verify mode
        if field == "spiffe_ids":
            policy = Policy(uris=_entries("spiffe://td/{}", "uris"))  # two spiffe URIs: no ID
        policy.check(reference)
    admitted = []
    for c in CHARS:
        for value in _placements(c):
            try:
                identity = build(value)
            except MTLSAuthError:
                continue  # refused as malformed: fails closed, never matches
            for field, policy in policies:
                if field in ("uris", "spiffe_ids", "dns_names") and build is _aws:
                    continue
                try:
                    policy.check(identity)
                except PolicyDenied:
                    continue
                admitted.append(f"{field}: U+{ord(c):04X} in {value!r}")
    assert admitted == []


def test_proxy_fingerprint_serial_and_validity_accept_ascii_only() -> None:
    from mtlsauth._forwarded._verified import _hex_digest, _iso, _serial

    bad = []
    fp = "ab" * 32
    for c in CHARS:
        for fn, text in (
            (_hex_digest, f"{fp}{c}"),
            (_hex_digest, f"{c}{fp}"),
            (_serial, f"1{c}"),
            (_serial, f"{c}1f"),
            (_iso, f"2024-01-01T00:00:00Z{c}"),
        ):
            try:
                fn(text)
            except MTLSAuthError:
                continue
            bad.append((fn.__name__, text))
    assert bad == []
    assert _serial("0a:1F") == 0x0A1F
    assert _hex_digest(fp.upper()) == fp
    assert ipaddress.ip_address("10.0.0.1")  # the ASCII spellings still parse


def test_a_proxy_peer_address_never_folds_into_a_trusted_one() -> None:
    from mtlsauth import ForwardedCert

    fc = ForwardedCert(header="X-Cert", encoding="pem", trusted_proxies=["10.0.0.0/8", "::1"])
    assert fc.is_trusted("10.0.0.1")
    assert fc.is_trusted(" 10.0.0.1\t")
    trusted = [
        peer
        for c in CHARS
        for peer in (f"10.0.0.1{c}", f"{c}10.0.0.1", f"10.0.0.{c}1", f"::1{c}", f"1{c}.0.0.1")
        if fc.is_trusted(peer)
    ]
    assert trusted == []


# -- DN strings: any text is a DN or a ValueError (config), a DN or a refusal (proxy) --------
_DN_ALPHABET = st.sampled_from(list('CNOUcnou=,+;/\\"#<> 0123456789aAfF.\u00e9\u00a0\u212a\t'))


@settings(max_examples=400, deadline=None)
@given(text=st.one_of(st.text(_DN_ALPHABET, max_size=40), st.text(max_size=40)))
def test_any_dn_string_parses_or_is_refused_cleanly(text: str) -> None:
    from mtlsauth._forwarded._verified import parse_dn

    try:
        Policy(subjects=[text])
    except ValueError as exc:
        message = str(exc)
    else:
        message = "subjects: parsed"
    assert message.startswith("subjects")
    try:
        parse_dn(text)
    except MTLSAuthError:
        pass


@pytest.mark.parametrize("blank", ["\t", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x1f"])
def test_only_the_ascii_space_is_layout(base, blank) -> None:
    policy = Policy(common_names=["ops", "o ps"], subjects=["CN=ops,O=x", "CN=o ps,O=x"])
    policy.check(dataclasses.replace(base, common_name=" o  ps ", subject_name=_dn(" o  ps ")))
    for value in (f"ops{blank}", f"{blank}ops", f"o{blank}ps"):
        with pytest.raises(PolicyDenied):
            Policy(common_names=["ops", "o ps"]).check(dataclasses.replace(base, common_name=value))
        with pytest.raises(PolicyDenied):
            Policy(subjects=["CN=ops,O=x", "CN=o ps,O=x"]).check(
                dataclasses.replace(base, subject_name=_dn(value))
            )


@pytest.mark.parametrize(
    ("escaped", "decoded"),
    [("\\41\\42", "AB"), ("\\C3\\A9", "\u00e9"), ("\\,", ","), ("\\41", "A")],
)
def test_layout_spaces_end_a_value_whatever_its_escapes_decode_to(escaped, decoded) -> None:
    """The spaces before a separator are dropped however many characters an escape gave."""
    from cryptography.x509.oid import NameOID

    from mtlsauth._forwarded._verified import parse_dn
    from mtlsauth._names import _parse_rdns

    text = f"CN={escaped}x  ,O=y"
    assert _parse_rdns(text) == [[("2.5.4.3", f"{decoded}x")], [("2.5.4.10", "y")]]
    cn = parse_dn(text).get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn == f"{decoded}x"
