"""Name constraints on commonNames written with look-alike characters.

A commonName is read as a DNS name, an e-mail address or an IP address to apply a CA's name
constraints to it. Python's own ``str.encode("idna")`` (and whoever folds names the same
way) reads other characters as dots (U+FE52 SMALL FULL STOP, U+2024 ONE DOT LEADER, ...),
as ``@`` (U+FF20, U+FE6B) and as digits (fullwidth), and drops others altogether (RFC 3454
table B.1: soft hyphen, zero-width space, ...). A name so written is what it folds to:
refused wherever its folded form is excluded, and never inside a permitted subtree (which
matches exact ASCII), under DNS, e-mail and IP constraints alike.
"""

from __future__ import annotations

import ipaddress
import stringprep
import unicodedata

import pytest
from cryptography import x509

from mtlsauth import MTLSAuthError, Verifier
from mtlsauth._nameconstraints import check_identity_name_constraints
from mtlsauth.testing import CA

_PERMITTED = {
    "dns": x509.NameConstraints(
        permitted_subtrees=[x509.DNSName("good.test")], excluded_subtrees=None
    ),
    "email": x509.NameConstraints(
        permitted_subtrees=[x509.RFC822Name("good.test")], excluded_subtrees=None
    ),
    "ip": x509.NameConstraints(
        permitted_subtrees=[x509.IPAddress(ipaddress.ip_network("192.168.0.0/16"))],
        excluded_subtrees=None,
    ),
}
_EXCLUDED = {
    "dns": x509.NameConstraints(
        permitted_subtrees=None, excluded_subtrees=[x509.DNSName("evil.test")]
    ),
    "email": x509.NameConstraints(
        permitted_subtrees=None, excluded_subtrees=[x509.RFC822Name("evil.test")]
    ),
    "ip": x509.NameConstraints(
        permitted_subtrees=None,
        excluded_subtrees=[x509.IPAddress(ipaddress.ip_network("10.0.0.0/8"))],
    ),
}


@pytest.fixture(scope="module")
def cas() -> dict[tuple[str, str], CA]:
    root = CA()
    out = {("permitted", k): root.intermediate(name_constraints=v) for k, v in _PERMITTED.items()}
    out.update(
        {("excluded", k): root.intermediate(name_constraints=v) for k, v in _EXCLUDED.items()}
    )
    out[("root", "")] = root
    return out


def _passes(ca: CA, cn: str) -> bool:
    leaf = ca.issue_client_cert(common_name=cn, san=False)
    try:
        check_identity_name_constraints([leaf.certificate, ca.certificate])
    except MTLSAuthError as exc:
        code = exc.code
    else:
        return True
    assert code == "untrusted_issuer"
    return False


# Every character whose NFKC form is a full stop, and the IDNA label separators (characters
# whose NFKC form ends in one, U+2488 DIGIT ONE FULL STOP for "1.", are in the forms below).
_DOTS = sorted(
    {chr(c) for c in range(0x80, 0x110000) if unicodedata.normalize("NFKC", chr(c)) == "."}
    | {"\u3002", "\uff0e", "\uff61"}
)
_ATS = sorted(chr(c) for c in range(0x80, 0x110000) if unicodedata.normalize("NFKC", chr(c)) == "@")
_FULLWIDTH_DIGITS = str.maketrans("0123456789", "".join(chr(0xFF10 + i) for i in range(10)))


def test_the_look_alike_sets_are_the_ones_named() -> None:
    assert _DOTS == ["\u2024", "\u3002", "\ufe52", "\uff0e", "\uff61"]
    assert _ATS == ["\ufe6b", "\uff20"]
    from mtlsauth._nameconstraints import _B1

    assert set(_B1) == stringprep.b1_set


def _dns_forms(host: str) -> list[str]:
    """``host`` written with each look-alike dot, each table B.1 character inserted, and with
    a digit-dot character in place of a label's last digit."""
    forms = [host.replace(".", d) for d in _DOTS]
    forms += [host[:3] + b + host[3:] for b in map(chr, sorted(stringprep.b1_set))]
    forms += [host + "\u00ad", "\u200b" + host]
    if host.count(".") > 1:  # "admin\u2488evil.test" is admin1.evil.test
        forms.append(host.replace(".", "\u2488", 1))
    return forms


def _email_forms(local: str, host: str) -> list[str]:
    return [local + a + host for a in _ATS] + [local + "@" + h for h in _dns_forms(host)]


def _ip_forms(ip: str) -> list[str]:
    forms = [ip.replace(".", d) for d in _DOTS]
    forms += [ip.translate(_FULLWIDTH_DIGITS), ip + ".", ip + "..", f"[{ip}]", f"[{ip}]:443"]
    forms += [f"{ip}:443", f"https://{ip}/x", f"user@{ip}", f"https://[::ffff:{ip}]/"]
    forms += [ip[:2] + "\u200b" + ip[2:], ip.translate(_FULLWIDTH_DIGITS) + "\uff0e"]
    first, _, rest = ip.partition(".")
    if first == "10":
        forms.append("\u2491" + rest)  # U+2491 NUMBER TEN FULL STOP is "10."
    return forms


@pytest.mark.parametrize("where", ["permitted", "excluded"])
def test_dns_look_alikes_are_refused(cas: dict[tuple[str, str], CA], where: str) -> None:
    ca = cas[(where, "dns")]
    for cn in _dns_forms("admin.evil.test"):
        assert cn.encode("idna").endswith(b".evil.test")  # what Python's codec reads
        assert not _passes(ca, cn), ascii(cn)
    if where == "permitted":  # a name inside it, but not as written: never inside
        for cn in _dns_forms("admin.good.test"):
            assert not _passes(ca, cn), ascii(cn)
        assert _passes(ca, "admin.good.test")
        assert _passes(ca, "ADMIN.good.test")


@pytest.mark.parametrize("where", ["permitted", "excluded"])
@pytest.mark.parametrize("kind", ["email", "dns"])
def test_email_look_alikes_are_refused(
    cas: dict[tuple[str, str], CA], where: str, kind: str
) -> None:
    """An e-mail CN is read as an address (rfc822Name constraints) and by its host (dNSName
    constraints), as written and folded."""
    ca = cas[(where, kind)]
    for cn in _email_forms("x", "evil.test"):
        assert not _passes(ca, cn), ascii(cn)
    if where == "permitted":
        for cn in _email_forms("x", "good.test"):
            assert not _passes(ca, cn), ascii(cn)
        assert _passes(ca, "x@good.test")


@pytest.mark.parametrize("where", ["permitted", "excluded"])
def test_ip_look_alikes_are_refused(cas: dict[tuple[str, str], CA], where: str) -> None:
    ca = cas[(where, "ip")]
    for cn in _ip_forms("10.0.0.1"):
        assert not _passes(ca, cn), ascii(cn)
    if where == "permitted":
        for cn in _ip_forms("192.168.1.1"):
            if cn.isascii():  # the same address, only written as a URL, with a port, ...
                continue
            assert not _passes(ca, cn), ascii(cn)
        for cn in ("192.168.1.1", "192.168.1.1.", "[192.168.1.1]", "https://192.168.1.1/x"):
            assert _passes(ca, cn), cn


@pytest.mark.parametrize(
    "cn",
    ["010.0.0.1", "0010.0.0.1", "010.000.000.001", "010.1", "010.0.0.1.", "https://010.0.0.1/x"],
)
def test_an_ip_with_leading_zeros_is_read_as_decimal_too(
    cas: dict[tuple[str, str], CA], cn: str
) -> None:
    """``inet_aton`` reads ``010.0.0.1`` as octal (8.0.0.1); Python's ``ipaddress`` before
    3.9.5, Go's ``net.ParseIP`` before 1.17 and many others read it as 10.0.0.1. Both
    readings meet the CA's exclusion of 10.0.0.0/8."""
    assert not _passes(cas[("excluded", "ip")], cn)
    assert _passes(cas[("permitted", "ip")], "192.168.001.001")


@pytest.mark.parametrize(
    ("where", "kind", "cn"),
    [
        ("excluded", "dns", "admin.evil.test\x00"),
        ("excluded", "dns", "admin.evil.test\x00.other.test"),
        ("permitted", "dns", "admin.evil.test\x00.good.test"),
        ("excluded", "email", "x@evil.test\x00"),
        ("permitted", "email", "x@evil.test\x00@good.test"),
        ("excluded", "ip", "10.0.0.1\x00.other.test"),
    ],
)
def test_a_nul_ends_the_name_for_c_readers_and_for_the_constraints(
    cas: dict[tuple[str, str], CA], where: str, kind: str, cn: str
) -> None:
    """A reader of C strings takes ``evil.test\x00.good.test`` for ``evil.test``: the text
    before the first NUL meets the constraints too, in a commonName and in emailAddress."""
    ca = cas[(where, kind)]
    assert not _passes(ca, cn), ascii(cn)
    if kind == "email":
        subject = x509.Name(
            [
                x509.NameAttribute(x509.NameOID.COMMON_NAME, "mailbox"),
                x509.NameAttribute(x509.NameOID.EMAIL_ADDRESS, cn),
            ]
        )
        leaf = ca.issue_client_cert(subject=subject, san=False)
        with pytest.raises(MTLSAuthError):
            check_identity_name_constraints([leaf.certificate, ca.certificate])


@pytest.mark.parametrize(
    ("constraint", "cn"),
    [
        (x509.DNSName("xn--vil-9la.test"), "\u00e9vil.test"),
        (x509.DNSName("xn--vil-9la.test"), "admin.\u00c9VIL.test"),
        (x509.DNSName("xn--fa-hia.test"), "fa\u00df.test"),  # IDNA 2008 (2003 maps to fass)
        (x509.DNSName("fass.test"), "fa\u00df.test"),
        (x509.RFC822Name("xn--vil-9la.test"), "x@\u00e9vil.test"),
    ],
)
def test_a_non_ascii_name_meets_exclusions_of_its_a_labels(
    constraint: x509.GeneralName, cn: str
) -> None:
    """A CA's constraints are written in A-labels (IA5String); ``évil.test`` in a commonName
    is ``xn--vil-9la.test`` to Python's ``idna`` codec and to every resolver."""
    nc = x509.NameConstraints(permitted_subtrees=None, excluded_subtrees=[constraint])
    ca = CA().intermediate(name_constraints=nc)
    assert not _passes(ca, cn), ascii(cn)
    assert _passes(ca, "client.other.test")


@pytest.mark.parametrize(
    ("where", "kind", "cn"),
    [
        ("excluded", "dns", "https://evil%2Etest/x"),
        ("excluded", "dns", "https://admin.%65vil.test/"),
        ("excluded", "ip", "https://10%2E0.0.1/"),
        ("permitted", "dns", "https://evil%2Etest/"),
    ],
)
def test_a_url_host_is_read_percent_decoded_too(
    cas: dict[tuple[str, str], CA], where: str, kind: str, cn: str
) -> None:
    """WHATWG URL parsers and Go's net/url decode a host's percent-escapes:
    ``https://evil%2Etest/`` names evil.test to them."""
    assert not _passes(cas[(where, kind)], cn)
    assert _passes(cas[("permitted", "dns")], "https://api.good.test/a%20b")


@pytest.mark.parametrize("cn", ["Evil <x@evil.test>", "<x@evil.test>", "x@evil.test>"])
@pytest.mark.parametrize("where", ["permitted", "excluded"])
def test_a_mailbox_in_angle_brackets_is_read_as_its_address(
    cas: dict[tuple[str, str], CA], where: str, cn: str
) -> None:
    """``Evil <x@evil.test>`` is x@evil.test to a mail reader (``email.utils.parseaddr``)."""
    assert not _passes(cas[(where, "email")], cn)


def test_excluded_subtrees_fold_the_emailaddress_attribute_too(
    cas: dict[tuple[str, str], CA],
) -> None:
    ca = cas[("excluded", "email")]
    for address in _email_forms("x", "evil.test"):
        subject = x509.Name(
            [
                x509.NameAttribute(x509.NameOID.COMMON_NAME, "mailbox"),
                x509.NameAttribute(x509.NameOID.EMAIL_ADDRESS, address),
            ]
        )
        leaf = ca.issue_client_cert(subject=subject, san=False)
        with pytest.raises(MTLSAuthError):
            check_identity_name_constraints([leaf.certificate, ca.certificate])


@pytest.mark.parametrize("cn", ["client", "M\u00fcller", "\uff21\uff22\uff23", "\u5c71\u7530"])
def test_names_that_read_as_nothing_stay_unconstrained(
    cas: dict[tuple[str, str], CA], cn: str
) -> None:
    """No dot, no ``@``, no address, as written or folded: no constraint applies."""
    for ca in cas.values():
        assert _passes(ca, cn), (cn, ca.certificate.subject)


def test_a_verifier_refuses_them_end_to_end(cas: dict[tuple[str, str], CA]) -> None:
    root = cas[("root", "")]
    verifier = Verifier(trust_store=root.trust_store(), cache_size=0)
    cases = [
        (("excluded", "dns"), "admin\ufe52evil\ufe52test"),
        (("permitted", "dns"), "admin\u2024good\u2024test"),
        (("excluded", "dns"), "admin.ev\u200bil.test"),
        (("excluded", "email"), "x\uff20evil.test"),
        (("excluded", "ip"), "\uff11\uff10.0.0.1"),
        (("excluded", "ip"), "10.0.0.1."),
        (("permitted", "ip"), "10\ufe520\ufe520\ufe521"),
    ]
    for where, cn in cases:
        chain = cas[where].issue_client_cert(common_name=cn, san=False).chain_der
        with pytest.raises(MTLSAuthError) as caught:
            verifier.verify(chain)
        assert caught.value.code == "untrusted_issuer", (where, ascii(cn))
    good = cas[("permitted", "dns")].issue_client_cert(common_name="a.good.test", san=False)
    assert verifier.verify(good.chain_der).common_name == "a.good.test"
