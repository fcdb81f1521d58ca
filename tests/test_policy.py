"""Policy: every field accepted and refused, DN normalisation, any_of, RFC 8705, config errors."""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import pickle
import re
import unicodedata
from collections.abc import Callable
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mtlsauth import ClientIdentity, Policy, PolicyDenied, Verifier
from mtlsauth._identity import identity_from_certificate
from mtlsauth._names import _norm
from mtlsauth._policy._policy import pinned_from_rfc8705
from mtlsauth.testing import CA, self_signed_client_cert

A = x509.NameAttribute
R = x509.RelativeDistinguishedName
ROOT_CN = "Policy Test Root"

Ids = dict[str, ClientIdentity]


def _name(*attrs: tuple[x509.ObjectIdentifier, str]) -> x509.Name:
    return x509.Name([A(oid, value) for oid, value in attrs])


@pytest.fixture(scope="session")
def ids() -> Ids:
    """Identities built from real certificates (one CA, keys generated once)."""
    ca = CA(organization="Policy Test", common_name=ROOT_CN)
    alice_subject = _name(
        (NameOID.COUNTRY_NAME, "US"),
        (NameOID.ORGANIZATION_NAME, "Acme Corp"),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, "Eng"),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, "Ops"),
        (NameOID.COMMON_NAME, "alice"),
    )
    subjects: dict[str, x509.Name] = {
        "bob": x509.Name(
            [
                R([A(NameOID.ORGANIZATION_NAME, "Acme Corp")]),
                R([A(NameOID.COMMON_NAME, "bob"), A(NameOID.USER_ID, "b42")]),
            ]
        ),
        "special": _name(
            (NameOID.ORGANIZATION_NAME, 'Acme, Inc. "Q"+R'),
            (NameOID.COMMON_NAME, "#lead =eq ; semi\\ back "),
        ),
        "nonascii": _name((NameOID.ORGANIZATION_NAME, "Zürich AG"), (NameOID.COMMON_NAME, "José")),
        "carol": _name(
            (NameOID.ORGANIZATION_NAME, "Acme"),
            (NameOID.EMAIL_ADDRESS, "a@x.org"),
            (NameOID.COMMON_NAME, "carol"),
        ),
        "inject": _name((NameOID.ORGANIZATION_NAME, "Acme"), (NameOID.COMMON_NAME, "x,CN=admin")),
        "two_orgs": _name(
            (NameOID.ORGANIZATION_NAME, "One"),
            (NameOID.ORGANIZATION_NAME, "Two"),
            (NameOID.COMMON_NAME, "svc"),
        ),
        "unknown_oid": _name(
            (x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), "Blue"), (NameOID.COMMON_NAME, "u")
        ),
        "no_cn": _name((NameOID.ORGANIZATION_NAME, "Acme")),
        "spaced": _name((NameOID.COMMON_NAME, "al   ice")),
    }
    out: Ids = {}
    alice = ca.issue_client_cert(
        subject=alice_subject,
        dns_names=["a.svc.example", "Host.Example.COM."],
        uris=["spiffe://td/ns/x/sa/y", "https://Login.Example.com/users/alice"],
        emails=["Alice@Example.com"],
        ip_addresses=["10.1.2.3", "2001:db8::5"],
    )
    out["alice"] = identity_from_certificate(alice.certificate)
    for key, subject in subjects.items():
        out[key] = identity_from_certificate(ca.issue_client_cert(subject=subject).certificate)
    sans: dict[str, dict[str, list[str]]] = {
        "deep": {"dns_names": ["a.b.svc.example"]},
        "apex": {"dns_names": ["svc.example"]},
        "wild": {"dns_names": ["*.svc.example"]},
        "xy": {"uris": ["spiffe://td/ns/xy"]},
        "dotdot": {"uris": ["spiffe://td/ns/x/../admin"]},
        "pctdot": {"uris": ["spiffe://td/ns/x/%2e%2e/admin"]},
        # an encoded "?" or "#" is path, not query: the ".." after it still climbs
        "pctquery": {"uris": ["spiffe://td/ns/x/a%3F/../../admin"]},
        "pctfragment": {"uris": ["spiffe://td/ns/x/a%23/../../admin"]},
        # WHATWG URL parsers read "\\" as "/" in http(s) URLs
        "backslash": {"uris": ["https://login.example.com/users/a\\..\\..\\admin"]},
        "pct2dot": {"uris": ["spiffe://td/ns/x/%252e%252e/admin"]},
        # Tomcat and Jetty read "..;x" as ".." followed by a path parameter
        "dotdot_param": {"uris": ["spiffe://td/ns/x/..;/admin"]},
        "dotdot_param_https": {
            "uris": ["https://login.example.com/users/a/..;jsessionid=1/../admin"]
        },
        "bare_prefix": {"uris": ["spiffe://td/ns/x/"]},
        "two_spiffe": {"uris": ["spiffe://td/a", "spiffe://td/b"]},
        "svid": {"uris": ["spiffe://td/ns/x/sa/y"]},
        # X.509-SVID: "certificates containing more than one URI SAN MUST be rejected"
        "spiffe_and_https": {"uris": ["spiffe://td/ns/x/sa/y", "https://login.example.com/y"]},
        "https_and_spiffe": {"uris": ["https://login.example.com/y", "spiffe://td/ns/x/sa/y"]},
        "subdomain_mail": {"emails": ["x@sub.example.com"]},
        # not one mailbox: a mailer may read two recipients, or route through evil.test
        "two_mailboxes": {"emails": ["eve@evil.test,x@example.com"]},
        "spaced_mailboxes": {"emails": ["eve@evil.test x@example.com"]},
        "routed_mailbox": {"emails": ["eve@evil.test@example.com"]},
        "angle_mailbox": {"emails": ["<eve@evil.test>x@example.com"]},
        "quoted_mailbox": {"emails": ['"eve@evil.test"@example.com']},
        "dotted_mailbox": {"emails": ["x.y+tag@example.com"]},
        "mapped": {"ip_addresses": ["::ffff:10.9.9.9"]},
    }
    for key, kwargs in sans.items():
        if "emails" in kwargs:  # as a CA could write them: cryptography checks only its own
            raw = [x509.RFC822Name._init_without_validation(e) for e in kwargs.pop("emails")]
            extra = [(x509.SubjectAlternativeName(raw), False)]
            kwargs = {**kwargs, "extra_extensions": extra}  # type: ignore[dict-item]
        cert = ca.issue_client_cert(common_name=key, **kwargs)  # type: ignore[arg-type]
        out[key] = identity_from_certificate(cert.certificate)
    out["bare"] = identity_from_certificate(ca.issue_client_cert(common_name="bare").certificate)
    proxy = dict(
        certificate=None,
        chain=(),
        subject_name=None,
        issuer_name=None,
        fingerprint_sha256=None,
        serial_number=None,
        verified_by="proxy",
        source="header:x-forwarded-client-cert",
        spiffe_id="spiffe://td/ns/x/sa/y",  # what an Istio sidecar forwards as its URI
    )
    out["proxy"] = dataclasses.replace(out["alice"], **proxy)  # type: ignore[arg-type]
    out["proxy_slash"] = dataclasses.replace(
        out["proxy"], subject="/C=US/O=Acme Corp/OU=Eng/OU=Ops/CN=alice"
    )
    out["proxy_garbage"] = dataclasses.replace(out["proxy"], subject="not a DN", issuer="")
    return out


ALICE_DN = "CN=alice,OU=Ops,OU=Eng,O=Acme Corp,C=US"

# (policy keywords, identity, expected PolicyDenied code or None for "admitted")
CHECKS = [
    # --- subject DN: parsed, case-folded, spaces collapsed, RDN order ignored
    pytest.param({"subjects": [ALICE_DN]}, "alice", None, id="subject: RFC 4514 exact"),
    pytest.param({"subjects": ["cn=ALICE,ou=ops,ou=eng,o=acme corp,c=us"]}, "alice", None, id="subject: case-insensitive keys and values"),
    pytest.param({"subjects": ["CN=alice,OU=Ops,OU=Eng,O=Acme   Corp,C=US"]}, "alice", None, id="subject: internal spaces collapse"),
    pytest.param({"subjects": ["CN=\\ alice\\ ,OU=Ops,OU=Eng,O=Acme Corp,C=US"]}, "alice", None, id="subject: escaped outer spaces trimmed"),
    pytest.param({"subjects": ["C=US,O=Acme Corp,OU=Eng,OU=Ops,CN=alice"]}, "alice", None, id="subject: OpenSSL forward order"),
    pytest.param({"subjects": ["/C=US/O=Acme Corp/OU=Eng/OU=Ops/CN=alice"]}, "alice", None, id="subject: OpenSSL slash form"),
    pytest.param({"subjects": ["/C=US/O=Acme Corp/OU=Eng/OU=Ops/CN=alice/"]}, "alice", None, id="subject: slash form, trailing slash"),
    pytest.param({"subjects": ["OU=Eng,CN=alice,OU=Ops,O=Acme Corp,C=US"]}, "alice", None, id="subject: scrambled order"),
    pytest.param({"subjects": ["CN=mallory", ALICE_DN]}, "alice", None, id="subject: any entry may match"),
    pytest.param({"subjects": ["CN=alice,OU=Eng,O=Acme Corp,C=US"]}, "alice", "subject_not_allowed", id="subject: one OU missing"),
    pytest.param({"subjects": ["CN=alice,OU=Ops,OU=Ops,OU=Eng,O=Acme Corp,C=US"]}, "alice", "subject_not_allowed", id="subject: duplicated OU is not the same DN"),
    pytest.param({"subjects": ["CN=alice,O=Acme Corp,C=US"]}, "alice", "subject_not_allowed", id="subject: a prefix of the DN is not the DN"),
    pytest.param({"subjects": ["CN=alice+OU=Ops,OU=Eng,O=Acme Corp,C=US"]}, "alice", "subject_not_allowed", id="subject: RDNs merged into one"),
    pytest.param({"subjects": ["CN=mallory,OU=Ops,OU=Eng,O=Acme Corp,C=US"]}, "alice", "subject_not_allowed", id="subject: other CN"),
    pytest.param({"subjects": ["UID=b42+CN=bob,O=Acme Corp"]}, "bob", None, id="subject: multi-valued RDN, OpenSSL member order"),
    pytest.param({"subjects": ["CN=bob+UID=b42,O=Acme Corp"]}, "bob", None, id="subject: multi-valued RDN, cryptography order"),
    pytest.param({"subjects": ["/O=Acme Corp/CN=bob+UID=b42"]}, "bob", None, id="subject: multi-valued RDN, slash form"),
    pytest.param({"subjects": ["CN=bob,UID=b42,O=Acme Corp"]}, "bob", "subject_not_allowed", id="subject: multi-valued RDN split in two"),
    pytest.param({"subjects": ['CN=\\#lead =eq \\; semi\\\\ back\\ ,O=Acme\\, Inc. \\"Q\\"\\+R']}, "special", None, id="subject: escapes as cryptography/OpenSSL print them"),
    pytest.param({"subjects": ['CN=\\#lead \\=eq \\; semi\\\\ back\\ ,O=Acme\\, Inc. \\"Q\\"\\+R']}, "special", None, id="subject: escapes as Java prints them"),
    pytest.param({"subjects": ['/O=Acme, Inc. "Q"\\+R/CN=#lead =eq ; semi\\ back']}, "special", None, id="subject: escapes as OpenSSL compat prints them"),
    pytest.param({"subjects": ['CN=\\#lead =eq \\; semi\\\\ back\\ ,O=Acme']}, "special", "subject_not_allowed", id="subject: truncated O value"),
    # OpenSSL's display form (openssl x509 -noout -subject), lower/mixed-case types, layout spaces
    pytest.param({"subjects": ["C = US, O = Acme Corp, OU = Eng, OU = Ops, CN = alice"]}, "alice", None, id="subject: OpenSSL display form"),
    pytest.param({"subjects": ["cn=alice,ou=Ops,ou=Eng,o=Acme Corp,c=US"]}, "alice", None, id="subject: lower-case types"),
    pytest.param({"subjects": ["Cn = alice ,  oU=Ops, OU =Eng,O= Acme Corp , C=US"]}, "alice", None, id="subject: mixed case and spaces"),
    pytest.param({"subjects": ['C = US, O = "Acme Corp", OU = Eng, OU = "Ops", CN = alice']}, "alice", None, id="subject: display form, quoted values"),
    pytest.param({"subjects": ["/c=US/o=Acme Corp/ou=Eng/ou=Ops/cn=alice"]}, "alice", None, id="subject: slash form, lower-case types"),
    pytest.param({"subjects": ["2.5.4.3=alice,OU=Ops,OU=Eng,O=#0c0941636d6520436f7270,C=US"]}, "alice", None, id="subject: OID type and #hex value"),
    pytest.param({"subjects": ["CN=\\61lice,OU=Ops,OU=Eng,O=Acme\\20Corp,C=US"]}, "alice", None, id="subject: hex-pair escapes"),
    pytest.param({"subjects": ["O = Acme Corp, CN = bob + UID = b42"]}, "bob", None, id="subject: display form, multi-valued RDN"),
    pytest.param({"subjects": ['O = "Acme, Inc. \\"Q\\"+R", CN = "#lead =eq ; semi\\\\ back "']}, "special", None, id="subject: display form, specials quoted"),
    pytest.param({"subjects": ["O = Z\\C3\\BCrich AG, CN = Jos\\C3\\A9"]}, "nonascii", None, id="subject: display form, UTF-8 escapes"),
    pytest.param({"subjects": ["CN=José,O=Zürich AG"]}, "nonascii", None, id="subject: non-ASCII"),
    pytest.param({"subjects": ["CN=Jos\\C3\\A9,O=Z\\C3\\BCrich AG"]}, "nonascii", None, id="subject: non-ASCII, OpenSSL RFC2253 hex escapes"),
    pytest.param({"subjects": ["/O=Z\\xC3\\xBCrich AG/CN=Jos\\xC3\\xA9"]}, "nonascii", None, id="subject: non-ASCII, OpenSSL compat escapes"),
    pytest.param({"subjects": ["CN=JOSÉ,O=ZÜRICH AG"]}, "nonascii", None, id="subject: non-ASCII case-folded"),
    pytest.param({"subjects": ["CN=Jose\u0301,O=Zürich AG"]}, "nonascii", None, id="subject: decomposed accent (NFC)"),
    pytest.param({"subjects": ["CN=Jose,O=Zürich AG"]}, "nonascii", "subject_not_allowed", id="subject: accent matters"),
    pytest.param({"subjects": ["CN=carol,emailAddress=a@x.org,O=Acme"]}, "carol", None, id="subject: emailAddress keyword"),
    pytest.param({"subjects": ["CN=carol,E=A@X.org,O=Acme"]}, "carol", None, id="subject: E keyword"),
    pytest.param({"subjects": ["CN=carol,1.2.840.113549.1.9.1=a@x.org,O=Acme"]}, "carol", None, id="subject: emailAddress as dotted OID"),
    pytest.param({"subjects": ["CN=carol,1.2.840.113549.1.9.1=#16076140782e6f7267,O=Acme"]}, "carol", None, id="subject: emailAddress as Java hex DER"),
    pytest.param({"subjects": ["/O=Acme/emailAddress=a@x.org/CN=carol"]}, "carol", None, id="subject: emailAddress, slash form"),
    pytest.param({"subjects": ["CN=carol,O=Acme"]}, "carol", "subject_not_allowed", id="subject: emailAddress attribute missing"),
    pytest.param({"subjects": ["CN=u,1.3.6.1.4.1.99999.1=blue"]}, "unknown_oid", None, id="subject: unknown OID by dotted string"),
    pytest.param({"subjects": ["CN=admin,O=Acme"]}, "inject", "subject_not_allowed", id="subject: CN 'x,CN=admin' is not CN=admin"),
    pytest.param({"subjects": ["CN=x,CN=admin,O=Acme"]}, "inject", "subject_not_allowed", id="subject: nor two CN RDNs"),
    pytest.param({"subjects": ["CN=x\\,CN=admin,O=Acme"]}, "inject", None, id="subject: escaped comma is the real value"),
    pytest.param({"subjects": [ALICE_DN]}, "proxy", None, id="subject: proxy identity, string parsed"),
    pytest.param({"subjects": [ALICE_DN]}, "proxy_slash", None, id="subject: proxy identity, slash string"),
    pytest.param({"subjects": ["CN=mallory"]}, "proxy", "subject_not_allowed", id="subject: proxy identity refused"),
    pytest.param({"subjects": [ALICE_DN]}, "proxy_garbage", "subject_not_allowed", id="subject: unparseable proxy subject fails closed"),
    # --- common name: the first CN, case-insensitive, spaces normalised
    pytest.param({"common_names": ["alice"]}, "alice", None, id="cn: exact"),
    pytest.param({"common_names": [" ALICE "]}, "alice", None, id="cn: case and outer spaces"),
    pytest.param({"common_names": ["al ice"]}, "spaced", None, id="cn: internal space runs"),
    pytest.param({"common_names": ["bob"]}, "alice", "common_name_not_allowed", id="cn: other name"),
    pytest.param({"common_names": ["alic"]}, "alice", "common_name_not_allowed", id="cn: no substring match"),
    pytest.param({"common_names": ["admin"]}, "inject", "common_name_not_allowed", id="cn: injection attempt"),
    pytest.param({"common_names": ["x,CN=admin"]}, "inject", None, id="cn: the literal value"),
    pytest.param({"common_names": ["acme"]}, "no_cn", "common_name_not_allowed", id="cn: certificate without CN"),
    pytest.param({"common_names": ["bob"]}, "bob", None, id="cn: inside a multi-valued RDN"),
    # --- organization: every O attribute must be allowed
    pytest.param({"organizations": ["acme corp"]}, "alice", None, id="o: case-insensitive"),
    pytest.param({"organizations": ["Acme"]}, "alice", "organization_not_allowed", id="o: no prefix match"),
    pytest.param({"organizations": ["two"]}, "two_orgs", "organization_not_allowed", id="o: one of two O attributes"),
    pytest.param({"organizations": ["one"]}, "two_orgs", "organization_not_allowed", id="o: the first of two O attributes"),
    pytest.param({"organizations": ["one", "two"]}, "two_orgs", None, id="o: every O attribute allowed"),
    pytest.param({"organizations": ["Acme"]}, "bare", "organization_not_allowed", id="o: certificate without O"),
    pytest.param({"organizations": ["Acme Corp"]}, "proxy", None, id="o: proxy identity"),
    # --- organizational unit: any OU (memberships; the identity exposes them all as a tuple)
    pytest.param({"organizational_units": ["ops"]}, "alice", None, id="ou: second OU"),
    pytest.param({"organizational_units": ["Eng"]}, "alice", None, id="ou: first OU"),
    pytest.param({"organizational_units": ["Sales"]}, "alice", "organizational_unit_not_allowed", id="ou: other OU"),
    pytest.param({"organizational_units": ["Eng"]}, "bare", "organizational_unit_not_allowed", id="ou: certificate without OU"),
    # --- issuer DN
    pytest.param({"issuers": [f"CN={ROOT_CN},O=Policy Test"]}, "alice", None, id="issuer: RFC 4514"),
    pytest.param({"issuers": [f"/O=policy test/CN={ROOT_CN.upper()}"]}, "alice", None, id="issuer: slash form, other case"),
    pytest.param({"issuers": ["CN=Other Root,O=Policy Test"]}, "alice", "issuer_not_allowed", id="issuer: other CA"),
    pytest.param({"issuers": [f"CN={ROOT_CN},O=Policy Test"]}, "proxy", None, id="issuer: proxy identity string"),
    pytest.param({"issuers": [f"CN={ROOT_CN},O=Policy Test"]}, "proxy_garbage", "issuer_not_allowed", id="issuer: empty proxy issuer fails closed"),
    # --- DNS SANs: exact or one-label wildcard
    pytest.param({"dns_names": ["a.svc.example"]}, "alice", None, id="dns: exact"),
    pytest.param({"dns_names": ["A.SVC.EXAMPLE."]}, "alice", None, id="dns: case and trailing dot in config"),
    pytest.param({"dns_names": ["host.example.com"]}, "alice", None, id="dns: trailing dot in certificate"),
    pytest.param({"dns_names": ["*.svc.example"]}, "alice", None, id="dns: wildcard, one label"),
    pytest.param({"dns_names": ["*.SVC.example"]}, "alice", None, id="dns: wildcard case-insensitive"),
    pytest.param({"dns_names": ["b.svc.example"]}, "alice", "dns_name_not_allowed", id="dns: other name"),
    pytest.param({"dns_names": ["svc.example"]}, "alice", "dns_name_not_allowed", id="dns: parent is not the name"),
    pytest.param({"dns_names": ["*.example"]}, "alice", "dns_name_not_allowed", id="dns: wildcard is not recursive"),
    pytest.param({"dns_names": ["*.svc.example"]}, "deep", "dns_name_not_allowed", id="dns: wildcard, two labels"),
    pytest.param({"dns_names": ["*.svc.example"]}, "apex", "dns_name_not_allowed", id="dns: wildcard, no label"),
    pytest.param({"dns_names": ["*.svc.example"]}, "wild", "dns_name_not_allowed", id="dns: presented wildcard never matches"),
    pytest.param({"dns_names": ["a.svc.example"]}, "bare", "dns_name_not_allowed", id="dns: certificate without SAN"),
    # --- URI SANs: exact (scheme/host case-insensitive) or /* prefix
    pytest.param({"uris": ["https://login.example.com/users/alice"]}, "alice", None, id="uri: host case-insensitive"),
    pytest.param({"uris": ["HTTPS://LOGIN.EXAMPLE.COM/users/alice"]}, "alice", None, id="uri: scheme case-insensitive"),
    pytest.param({"uris": ["https://login.example.com/users/Alice"]}, "alice", "uri_not_allowed", id="uri: path case-sensitive"),
    pytest.param({"uris": ["https://login.example.com/users/*"]}, "alice", None, id="uri: prefix"),
    pytest.param({"uris": ["https://login.example.com/user/*"]}, "alice", "uri_not_allowed", id="uri: prefix ends at a slash"),
    pytest.param({"uris": ["spiffe://td/ns/x/*"]}, "alice", None, id="uri: spiffe prefix"),
    pytest.param({"uris": ["spiffe://td/ns/x/*"]}, "xy", "uri_not_allowed", id="uri: prefix is not a string prefix"),
    pytest.param({"uris": ["spiffe://td/ns/x/*"]}, "dotdot", "uri_not_allowed", id="uri: dot-dot segment refused"),
    pytest.param({"uris": ["spiffe://td/ns/x/*"]}, "pctdot", "uri_not_allowed", id="uri: encoded dot-dot refused"),
    pytest.param({"uris": ["spiffe://td/ns/x/*"]}, "pctquery", "uri_not_allowed", id="uri: dot-dot after an encoded ? refused"),
    pytest.param({"uris": ["spiffe://td/ns/x/*"]}, "pctfragment", "uri_not_allowed", id="uri: dot-dot after an encoded # refused"),
    pytest.param({"spiffe_ids": ["spiffe://td/ns/x/*"]}, "pctquery", "spiffe_id_not_allowed", id="spiffe: dot-dot after an encoded ? refused"),
    pytest.param({"uris": ["https://login.example.com/users/*"]}, "backslash", "uri_not_allowed", id="uri: backslash dot-dot refused"),
    pytest.param({"uris": ["spiffe://td/ns/x/*"]}, "pct2dot", "uri_not_allowed", id="uri: twice-encoded dot-dot refused"),
    pytest.param({"spiffe_ids": ["spiffe://td/ns/x/*"]}, "dotdot_param", "spiffe_id_not_allowed", id="spiffe: dot-dot with a path parameter refused"),
    pytest.param({"uris": ["https://login.example.com/users/*"]}, "dotdot_param_https", "uri_not_allowed", id="uri: dot-dot with a path parameter refused"),
    pytest.param({"uris": ["spiffe://td/ns/x/*"]}, "bare_prefix", "uri_not_allowed", id="uri: prefix needs a remainder"),
    pytest.param({"uris": ["spiffe://td/ns/x/"]}, "alice", "uri_not_allowed", id="uri: exact is exact"),
    pytest.param({"uris": ["spiffe://td/ns/x/sa/y"]}, "bare", "uri_not_allowed", id="uri: certificate without SAN"),
    # --- SPIFFE ID: the single spiffe:// URI SAN
    pytest.param({"spiffe_ids": ["spiffe://td/ns/x/sa/y"]}, "svid", None, id="spiffe: exact"),
    pytest.param({"spiffe_ids": ["SPIFFE://TD/ns/x/*"]}, "svid", None, id="spiffe: prefix, trust domain case-insensitive"),
    pytest.param({"spiffe_ids": ["spiffe://td/ns/x/sa/Y"]}, "svid", "spiffe_id_not_allowed", id="spiffe: path case-sensitive"),
    pytest.param({"spiffe_ids": ["spiffe://other/ns/x/*"]}, "svid", "spiffe_id_not_allowed", id="spiffe: other trust domain"),
    pytest.param({"spiffe_ids": ["spiffe://td/*"]}, "two_spiffe", "spiffe_id_not_allowed", id="spiffe: two SPIFFE URIs are no SPIFFE ID"),
    pytest.param({"spiffe_ids": ["spiffe://td/*"]}, "spiffe_and_https", "spiffe_id_not_allowed", id="spiffe: a second URI SAN makes no SVID"),
    pytest.param({"spiffe_ids": ["spiffe://td/ns/x/sa/y"]}, "https_and_spiffe", "spiffe_id_not_allowed", id="spiffe: a URI SAN before it makes no SVID"),
    pytest.param({"uris": ["spiffe://td/ns/x/sa/y"]}, "spiffe_and_https", None, id="uri: any URI SAN still matches uris"),
    pytest.param({"spiffe_ids": ["spiffe://td/ns/x/sa/y"]}, "proxy", None, id="spiffe: proxy identity"),
    pytest.param({"spiffe_ids": ["spiffe://td/*"]}, "bare", "spiffe_id_not_allowed", id="spiffe: certificate without SAN"),
    # --- email SANs: local part exact, domain case-insensitive, @domain for a whole domain
    pytest.param({"emails": ["Alice@example.COM"]}, "alice", None, id="email: domain case-insensitive"),
    pytest.param({"emails": ["alice@Example.com"]}, "alice", "email_not_allowed", id="email: local part exact"),
    pytest.param({"emails": ["@example.com"]}, "alice", None, id="email: whole domain"),
    pytest.param({"emails": ["@sub.example.com"]}, "alice", "email_not_allowed", id="email: other domain"),
    pytest.param({"emails": ["@example.com"]}, "subdomain_mail", "email_not_allowed", id="email: domain does not cover subdomains"),
    pytest.param({"emails": ["@example.com"]}, "two_mailboxes", "email_not_allowed", id="email: two mailboxes in one SAN"),
    pytest.param({"emails": ["@example.com"]}, "spaced_mailboxes", "email_not_allowed", id="email: space-separated mailboxes"),
    pytest.param({"emails": ["@example.com"]}, "routed_mailbox", "email_not_allowed", id="email: unquoted @ in the local part"),
    pytest.param({"emails": ["@example.com"]}, "angle_mailbox", "email_not_allowed", id="email: angle brackets"),
    pytest.param({"emails": ["@example.com"]}, "quoted_mailbox", None, id="email: quoted local part is example.com's"),
    pytest.param({"emails": ["@example.com"]}, "dotted_mailbox", None, id="email: dot-atom local part"),
    pytest.param({"emails": ["x.y+tag@example.com"]}, "dotted_mailbox", None, id="email: exact dot-atom"),
    pytest.param({"emails": ["@example.com"]}, "bare", "email_not_allowed", id="email: certificate without SAN"),
    # --- IP SANs: address or CIDR, v4 and v6
    pytest.param({"ip_addresses": ["10.1.2.3"]}, "alice", None, id="ip: v4 address"),
    pytest.param({"ip_addresses": ["10.0.0.0/8"]}, "alice", None, id="ip: v4 CIDR"),
    pytest.param({"ip_addresses": ["10.1.2.4"]}, "alice", "ip_address_not_allowed", id="ip: other v4 address"),
    pytest.param({"ip_addresses": ["192.168.0.0/16"]}, "alice", "ip_address_not_allowed", id="ip: other v4 CIDR"),
    pytest.param({"ip_addresses": ["2001:DB8:0::5"]}, "alice", None, id="ip: v6 address, other spelling"),
    pytest.param({"ip_addresses": ["2001:db8::/32"]}, "alice", None, id="ip: v6 CIDR"),
    pytest.param({"ip_addresses": ["2001:db9::/32"]}, "alice", "ip_address_not_allowed", id="ip: other v6 CIDR"),
    pytest.param({"ip_addresses": ["::/0"]}, "mapped", None, id="ip: v4-mapped v6 in a v6 net"),
    pytest.param({"ip_addresses": ["10.0.0.0/8"]}, "mapped", None, id="ip: v4-mapped v6 in a v4 net"),
    pytest.param({"ip_addresses": ["0.0.0.0/0"]}, "bare", "ip_address_not_allowed", id="ip: certificate without SAN"),
    # --- fingerprints on an identity without one
    pytest.param({"fingerprints": ["ab" * 32]}, "proxy", "fingerprint_not_allowed", id="fingerprint: unknown fails"),
    # --- across fields: all must match, first failing field (keyword order) reported
    pytest.param({"organizations": ["Acme Corp"], "common_names": ["alice"]}, "alice", None, id="all fields match"),
    pytest.param({"organizations": ["Acme Corp"], "common_names": ["bob"]}, "alice", "common_name_not_allowed", id="one field fails"),
    pytest.param({"organizations": ["Evil"], "dns_names": ["evil.example"]}, "alice", "organization_not_allowed", id="first failing field in keyword order"),
]  # fmt: skip


@pytest.mark.parametrize(("kwargs", "who", "code"), CHECKS)
def test_check(ids: Ids, kwargs: dict[str, Any], who: str, code: str | None) -> None:
    policy = Policy(**kwargs)
    if code is None:
        policy.check(ids[who])
        return
    with pytest.raises(PolicyDenied) as info:
        policy.check(ids[who])
    assert info.value.code == code
    assert info.value.status == 403


Fmt = Callable[[str], str]
FINGERPRINT_FORMS = [
    pytest.param(lambda fp: fp, id="lower hex"),
    pytest.param(lambda fp: fp.upper(), id="upper hex"),
    pytest.param(lambda fp: ":".join(fp[i : i + 2] for i in range(0, 64, 2)).upper(), id="openssl colons"),
    pytest.param(lambda fp: " ".join(fp[i : i + 4] for i in range(0, 64, 4)), id="spaced groups"),
    pytest.param(lambda fp: "sha256 Fingerprint=" + ":".join(fp[i : i + 2] for i in range(0, 64, 2)).upper(), id="openssl 3 output line"),
    pytest.param(lambda fp: "SHA256 Fingerprint=" + ":".join(fp[i : i + 2] for i in range(0, 64, 2)).upper(), id="openssl 1.1 output line"),
]  # fmt: skip


def test_openssl_output_line_is_the_real_one() -> None:
    # The forms above are what `openssl x509 -noout -fingerprint -sha256` prints: checked
    # against the installed openssl where there is one.
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("no openssl binary")
    ca = CA(organization="Fingerprint Test")
    cert = ca.issue_client_cert(common_name="fp")
    line = subprocess.run(
        ["openssl", "x509", "-noout", "-fingerprint", "-sha256"],
        input=cert.cert_pem.bytes(), capture_output=True, check=True,
    ).stdout.decode().strip()  # fmt: skip
    ident = Verifier(trust_store=ca.trust_store()).verify(cert.chain_der)
    Policy(fingerprints=[line]).check(ident)
    other = Verifier(trust_store=ca.trust_store()).verify(ca.issue_client_cert().chain_der)
    with pytest.raises(PolicyDenied):
        Policy(fingerprints=[line]).check(other)


@pytest.mark.parametrize("fmt", FINGERPRINT_FORMS)
def test_fingerprint_forms(ids: Ids, fmt: Fmt) -> None:
    fp = ids["alice"].fingerprint_sha256
    assert fp is not None
    Policy(fingerprints=[fmt(fp)]).check(ids["alice"])
    with pytest.raises(PolicyDenied) as info:
        Policy(fingerprints=[fmt(fp)]).check(ids["bare"])
    assert info.value.code == "fingerprint_not_allowed"
    with pytest.raises(PolicyDenied) as info:
        Policy(deny_fingerprints=[fmt(fp)]).check(ids["alice"])
    assert info.value.code == "certificate_denied"
    Policy(deny_fingerprints=[fmt(fp)]).check(ids["bare"])


SERIAL_FORMS = [
    pytest.param(lambda s: s, id="int"),
    pytest.param(lambda s: hex(s), id="0x hex"),
    pytest.param(lambda s: hex(s).upper().replace("0X", "0x"), id="0x upper hex"),
    pytest.param(lambda s: ":".join(f"{s:040x}"[i : i + 2] for i in range(0, 40, 2)), id="colon hex"),
]  # fmt: skip


@pytest.mark.parametrize("fmt", SERIAL_FORMS)
def test_deny_serials(ids: Ids, fmt: Callable[[int], int | str]) -> None:
    serial = ids["alice"].serial_number
    assert serial is not None
    policy = Policy(deny_serials=[fmt(serial)])
    with pytest.raises(PolicyDenied) as info:
        policy.check(ids["alice"])
    assert info.value.code == "certificate_denied"
    policy.check(ids["bare"])


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"deny_fingerprints": ["ab" * 32]}, id="fingerprint"),
        pytest.param({"deny_serials": [1]}, id="serial"),
    ],
)
def test_deny_list_fails_closed_without_certificate(ids: Ids, kwargs: dict[str, Any]) -> None:
    with pytest.raises(PolicyDenied) as info:
        Policy(**kwargs).check(ids["proxy"])
    assert info.value.code == "certificate_denied"


def test_fingerprint_deny_list_refuses_a_proxy_identity_even_with_its_hash(ids: Ids) -> None:
    # The proxy's hash is of the bytes it saw: the ECDSA twin of a denied certificate has
    # another one, and without the certificate no twin can be ruled out.
    proxy = dataclasses.replace(ids["proxy"], fingerprint_sha256="cd" * 32)
    with pytest.raises(PolicyDenied) as info:
        Policy(deny_fingerprints=["ab" * 32]).check(proxy)
    assert info.value.code == "certificate_denied"
    # a serial is part of what the CA signed: the proxy's serial is checked as it is
    serial = dataclasses.replace(ids["proxy"], serial_number=7)
    Policy(deny_serials=[8]).check(serial)
    with pytest.raises(PolicyDenied):
        Policy(deny_serials=[7]).check(serial)
    # an allow-list of fingerprints admits the exact bytes the trusted proxy hashed
    Policy(fingerprints=["cd" * 32]).check(proxy)


def test_deny_list_checked_before_allow_lists(ids: Ids) -> None:
    serial = ids["alice"].serial_number
    assert serial is not None
    with pytest.raises(PolicyDenied) as info:
        Policy(common_names=["nobody"], deny_serials=[serial]).check(ids["alice"])
    assert info.value.code == "certificate_denied"


def test_ip_entries_may_be_ipaddress_objects(ids: Ids) -> None:
    Policy(ip_addresses=[ipaddress.ip_network("10.0.0.0/8")]).check(ids["alice"])  # type: ignore[list-item]
    Policy(ip_addresses=[ipaddress.ip_address("2001:db8::5")]).check(ids["alice"])  # type: ignore[list-item]
    for other in (ipaddress.ip_network("192.0.2.0/24"), ipaddress.ip_address("2001:db8::6")):
        with pytest.raises(PolicyDenied) as info:
            Policy(ip_addresses=[other]).check(ids["alice"])  # type: ignore[list-item]
        assert info.value.code == "ip_address_not_allowed"


def test_detail_names_field_not_value(ids: Ids) -> None:
    with pytest.raises(PolicyDenied) as info:
        Policy(common_names=["bob"]).check(ids["alice"])
    assert "common name" in info.value.detail
    assert "alice" not in info.value.detail
    assert "bob" not in info.value.detail


# --- any_of ---------------------------------------------------------------------------------

ANY_OF = [
    pytest.param([{"common_names": ["nobody"]}, {"organizations": ["acme corp"]}], None, id="second alternative admits"),
    pytest.param([{"common_names": ["alice"]}, {"organizations": ["nobody"]}], None, id="first alternative admits"),
    pytest.param([{"common_names": ["nobody"]}, {"organizations": ["nobody"]}], "common_name_not_allowed", id="all refuse: first error"),
    pytest.param([{"organizations": ["nobody"]}, {"common_names": ["nobody"]}], "organization_not_allowed", id="all refuse: first error, other order"),
    pytest.param([{"common_names": ["alice"]}, {"organizations": ["x"], "deny_fingerprints": ["ALICE"]}], "certificate_denied", id="a deny-list anywhere wins"),
    pytest.param([{"common_names": ["alice"], "deny_serials": [1]}, {"organizations": ["x"]}], None, id="deny-list without a hit"),
]  # fmt: skip


@pytest.mark.parametrize(("parts", "code"), ANY_OF)
def test_any_of(ids: Ids, parts: list[dict[str, Any]], code: str | None) -> None:
    fp = ids["alice"].fingerprint_sha256
    for kwargs in parts:
        if kwargs.get("deny_fingerprints") == ["ALICE"]:
            kwargs["deny_fingerprints"] = [fp]
    policy = Policy.any_of(*(Policy(**kw) for kw in parts))
    assert not policy.is_empty
    if code is None:
        policy.check(ids["alice"])
        return
    with pytest.raises(PolicyDenied) as info:
        policy.check(ids["alice"])
    assert info.value.code == code


def test_any_of_nested_and_trivial(ids: Ids) -> None:
    a, b, c = (Policy(common_names=[n]) for n in ("x", "y", "alice"))
    nested = Policy.any_of(Policy.any_of(a, b), c)
    nested.check(ids["alice"])
    with pytest.raises(PolicyDenied):
        Policy.any_of(Policy.any_of(a, b), Policy(common_names=["z"])).check(ids["alice"])
    assert Policy.any_of(a) is a
    assert Policy.any_of(Policy(), a).is_empty
    assert not Policy.any_of(Policy(), Policy(deny_serials=[1])).is_empty
    assert (
        repr(Policy.any_of(a, b))
        == "Policy.any_of(Policy(common_names=['x']), Policy(common_names=['y']))"
    )


@pytest.mark.parametrize(
    ("args", "exc"),
    [
        pytest.param((), ValueError, id="no policies"),
        pytest.param(("common_names",), TypeError, id="not a Policy"),
    ],
)
def test_any_of_misuse(args: tuple[Any, ...], exc: type[Exception]) -> None:
    with pytest.raises(exc, match="any_of"):
        Policy.any_of(*args)


# --- the object itself ------------------------------------------------------------------------


def test_empty_policy_admits_everyone(ids: Ids) -> None:
    policy = Policy()
    assert policy.is_empty
    assert repr(policy) == "Policy()"
    for identity in ids.values():
        policy.check(identity)
    assert not Policy(deny_serials=[1]).is_empty
    assert not Policy(common_names=["x"]).is_empty


def test_policy_is_immutable_and_picklable(ids: Ids) -> None:
    policy = Policy(organizations=("Acme Corp", "Acme Corp"), dns_names={"*.svc.example"})
    with pytest.raises(AttributeError):
        policy._allow = ()
    with pytest.raises(AttributeError):
        policy.extra = 1
    assert not hasattr(policy, "__dict__")
    assert repr(policy) == "Policy(organizations=['Acme Corp'], dns_names=['*.svc.example'])"
    clone = pickle.loads(pickle.dumps(policy))  # noqa: S301 - our own object
    clone.check(ids["alice"])
    assert repr(clone) == repr(policy)
    combined = pickle.loads(pickle.dumps(Policy.any_of(policy, Policy(common_names=["x"]))))  # noqa: S301
    combined.check(ids["alice"])


@pytest.mark.parametrize(
    "identity",
    [
        pytest.param(object(), id="not an identity"),
        pytest.param(None, id="None"),
    ],
)
def test_check_fails_closed(identity: Any) -> None:
    for kwargs in ({"common_names": ["x"]}, {"subjects": ["CN=x"]}, {"deny_serials": [1]}):
        with pytest.raises(PolicyDenied):
            Policy(**kwargs).check(identity)


def test_check_fails_closed_on_odd_values(ids: Ids) -> None:
    odd = dataclasses.replace(ids["alice"], dns_names=(None,), common_name=5)  # type: ignore[arg-type]
    with pytest.raises(PolicyDenied) as info:
        Policy(dns_names=["a.svc.example"]).check(odd)
    assert info.value.code == "dns_name_not_allowed"
    with pytest.raises(PolicyDenied) as info:
        Policy(common_names=["5"]).check(odd)
    assert info.value.code == "common_name_not_allowed"


# --- configuration errors: at construction, with the field and entry named ---------------------

CONFIG_ERRORS = [
    pytest.param({"organizations": "Acme"}, TypeError, "single string", id="bare str instead of a list"),
    pytest.param({"organizations": b"Acme"}, TypeError, "single string", id="bytes instead of a list"),
    pytest.param({"organizations": 5}, TypeError, "iterable", id="not iterable"),
    pytest.param({"organizations": []}, ValueError, "deny every", id="empty list"),
    pytest.param({"deny_serials": set()}, ValueError, "deny every", id="empty deny-list"),
    pytest.param({"common_names": [1]}, TypeError, "common_names entries must be strings", id="non-str entry"),
    pytest.param({"common_names": ["  "]}, ValueError, "empty entry", id="blank entry"),
    pytest.param({"subjects": ["not a dn"]}, ValueError, "'not a dn' is not a distinguished name", id="dn: garbage"),
    pytest.param({"subjects": ["CN=x,"]}, ValueError, "distinguished name", id="dn: trailing comma"),
    pytest.param({"subjects": ["CN=x, O=y,"]}, ValueError, r"a trailing ','", id="dn: trailing comma after a space"),
    pytest.param({"subjects": ["FOO=x"]}, ValueError, "distinguished name", id="dn: unknown keyword"),
    pytest.param({"subjects": ["/CN=x//O=y"]}, ValueError, "distinguished name", id="dn: slash form, empty RDN"),
    pytest.param({"subjects": ["/FOO=x"]}, ValueError, "unknown attribute type 'FOO'", id="dn: slash form, unknown keyword"),
    pytest.param({"subjects": ["/CN="]}, ValueError, "empty value", id="dn: slash form, empty value"),
    pytest.param({"subjects": ["/CN"]}, ValueError, "'CN' has no '='", id="dn: slash form, no '='"),
    pytest.param({"issuers": ["C=USA"]}, ValueError, "issuers entry 'C=USA'", id="dn: country of three letters"),
    pytest.param({"dns_names": ["a.*.example"]}, ValueError, "leading", id="dns: inner wildcard"),
    pytest.param({"dns_names": ["*"]}, ValueError, "leading", id="dns: lone star"),
    pytest.param({"dns_names": ["*.*.example"]}, ValueError, "leading", id="dns: double wildcard"),
    pytest.param({"dns_names": ["a*.example"]}, ValueError, "leading", id="dns: partial-label wildcard"),
    pytest.param({"dns_names": ["bücher.example"]}, ValueError, "A-label", id="dns: unicode name"),
    pytest.param({"dns_names": ["a..example"]}, ValueError, "not a DNS name", id="dns: empty label"),
    pytest.param({"uris": ["spiffe://td/*/x"]}, ValueError, "trailing", id="uri: inner star"),
    pytest.param({"uris": ["spiffe://td/x*"]}, ValueError, "trailing", id="uri: star without slash"),
    pytest.param({"uris": ["no-scheme"]}, ValueError, "not a URI", id="uri: no scheme"),
    pytest.param({"uris": ["https://a b"]}, ValueError, "not a URI", id="uri: space"),
    pytest.param({"spiffe_ids": ["https://td/x"]}, ValueError, "spiffe://", id="spiffe: other scheme"),
    pytest.param({"spiffe_ids": ["spiffe://"]}, ValueError, "spiffe://", id="spiffe: no trust domain"),
    pytest.param({"emails": ["alice"]}, ValueError, "@example.com", id="email: no @"),
    pytest.param({"emails": ["*@example.com"]}, ValueError, "@example.com", id="email: star"),
    pytest.param({"emails": ["alice@"]}, ValueError, "@example.com", id="email: no domain"),
    # an rfc822Name SAN is IA5String (ASCII): such an entry could never match
    pytest.param({"emails": ["@bücher.example"]}, ValueError, "A-label", id="email: U-label domain"),
    pytest.param({"emails": ["jos\u00e9@example.com"]}, ValueError, "ASCII", id="email: non-ASCII local part"),
    pytest.param({"ip_addresses": ["10.0.0.300"]}, ValueError, "not an IP address or CIDR", id="ip: bad octet"),
    pytest.param({"ip_addresses": ["10.0.0.1/8"]}, ValueError, "host bits", id="ip: host bits set"),
    # a zone is no part of a certificate's address: the entry would match nothing
    pytest.param({"ip_addresses": ["fe80::1%eth0"]}, ValueError, "zone", id="ip: zone id"),
    pytest.param({"ip_addresses": ["fe80::%1/64"]}, ValueError, "zone", id="ip: zone id network"),
    pytest.param({"ip_addresses": [ipaddress.ip_address("fe80::1%eth0")]}, ValueError, "zone", id="ip: zone id object"),
    pytest.param({"ip_addresses": ["example.com"]}, ValueError, "not an IP address", id="ip: a name"),
    pytest.param({"ip_addresses": [10]}, TypeError, "strings", id="ip: int"),
    pytest.param({"fingerprints": ["abc"]}, ValueError, "64 hex digits", id="fingerprint: too short"),
    pytest.param({"fingerprints": ["zz" * 32]}, ValueError, "64 hex digits", id="fingerprint: not hex"),
    pytest.param({"deny_fingerprints": ["ab" * 20]}, ValueError, "SHA-256", id="deny fingerprint: SHA-1 length"),
    pytest.param({"deny_serials": ["1234"]}, ValueError, "ambiguous", id="serial: bare digits"),
    pytest.param({"deny_serials": ["1a2b"]}, ValueError, "ambiguous", id="serial: bare hex"),
    # no certificate with such a serial is ever accepted: the entry would deny nothing (a
    # serial read as a signed number from its bytes comes out negative)
    pytest.param({"deny_serials": [-0x7F12]}, ValueError, "positive", id="serial: negative int"),
    pytest.param({"deny_serials": [0]}, ValueError, "positive", id="serial: zero"),
    pytest.param({"deny_serials": ["0x0"]}, ValueError, "positive", id="serial: zero hex"),
    pytest.param({"deny_serials": ["00:00"]}, ValueError, "positive", id="serial: zero bytes"),
    pytest.param({"deny_serials": ["0xzz"]}, ValueError, "hex", id="serial: bad hex"),
    pytest.param({"deny_serials": [True]}, TypeError, "int or hex str", id="serial: bool"),
    pytest.param({"deny_serials": [1.5]}, TypeError, "int or hex str", id="serial: float"),
]  # fmt: skip


@pytest.mark.parametrize(("kwargs", "exc", "message"), CONFIG_ERRORS)
def test_config_errors(kwargs: dict[str, Any], exc: type[Exception], message: str) -> None:
    with pytest.raises(exc, match=message.replace("*", r"\*").replace(".", r"\.")):
        Policy(**kwargs)


DN_REFUSALS = [
    pytest.param(
        "/CN=alice,O=Acme Corp",
        "the CN value 'alice,O=Acme Corp' contains 'O='",
        id="slash form with a comma (mixed)",
    ),
    pytest.param(
        "/O=Acme Corp/CN=alice, OU=Ops", "contains 'OU='", id="slash form, comma later (mixed)"
    ),
    pytest.param(
        "CN=alice/O=Acme Corp",
        "the CN value 'alice/O=Acme Corp' contains 'O='",
        id="comma form with a slash (mixed)",
    ),
    pytest.param("CN=alice O=Acme Corp", "is a ',' missing before it?", id="missing comma"),
    pytest.param("cn=alice, o=x,", "a trailing ','", id="trailing comma"),
    pytest.param("CN=alice+", "a trailing '+'", id="trailing plus"),
    pytest.param("CN=alice,,O=x", "an attribute type is expected at ',O=x'", id="empty RDN"),
    pytest.param("CN=", "empty value for 'CN'", id="empty value"),
    pytest.param("CN = , O=x", "empty value for 'CN'", id="empty value, display form"),
    pytest.param('CN="   "', "empty value for 'CN'", id="blank quoted value"),
    pytest.param("/CN=a//O=b", "an empty RDN (a doubled or stray '/')", id="slash form, empty RDN"),
    pytest.param("/O=b/CN=", "empty value for 'CN'", id="slash form, empty value"),
    pytest.param('CN="alice', "the quoted CN value has no closing", id="unterminated quote"),
    pytest.param('CN="al"ice', "text after the quoted CN value", id="text after a quote"),
    pytest.param('CN=al"ice', "an unescaped '\"' in the CN value", id="bare quote"),
    pytest.param("CN=a;O=b", "an unescaped ';' (an old RDN separator)", id="semicolon separator"),
    pytest.param("CN=a<b>", "an unescaped '<'", id="angle bracket"),
    pytest.param("CN=a\\qb", "a backslash must be followed by one of", id="bad escape"),
    pytest.param("CN=a\\", "a backslash must be followed by one of", id="trailing backslash"),
    pytest.param("CN=\\C3", "the CN value's \\XX escapes are not UTF-8", id="hex escape not UTF-8"),
    pytest.param("CN=#zz", "'#' must be followed by hex pairs", id="hex value not hex"),
    pytest.param("CN=#0201", "is not a DER string", id="hex value not a string"),
    pytest.param("CN=#0c05616263", "is not a DER string", id="hex value with a wrong length"),
    pytest.param("XX=1", "unknown attribute type 'XX'", id="unknown type"),
    pytest.param("CN=a,S=CA", "unknown attribute type 'S'", id="unknown short name"),
    pytest.param(
        "2.5.4.\uff13=x",
        "'=' is expected after the attribute type '2.5.4'",
        id="OID with a non-ASCII digit",
    ),
    pytest.param(
        "subject=C = US, CN = alice",
        "remove the 'subject'= that openssl prints",
        id="openssl's subject= prefix",
    ),
    pytest.param("C=USA,CN=alice", "countryName is a two-letter code", id="three-letter country"),
    pytest.param(
        "CN\t=alice", "'=' is expected after the attribute type 'CN'", id="tab is not layout"
    ),
]


@pytest.mark.parametrize(("text", "message"), DN_REFUSALS)
def test_dn_string_refusals_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        Policy(subjects=[text])
    assert str(info.value).startswith(f"subjects entry {text!r} is not a distinguished name: ")


def test_positional_arguments_refused() -> None:
    with pytest.raises(TypeError):
        Policy(["Acme"])  # type: ignore[call-arg]


# --- RFC 8705 ---------------------------------------------------------------------------------

RFC8705 = [
    pytest.param({"tls_client_auth_subject_dn": ALICE_DN}, None, id="subject_dn"),
    pytest.param({"tls_client_auth_subject_dn": "C=US,O=Acme Corp,OU=Eng,OU=Ops,CN=ALICE"}, None, id="subject_dn, other order and case"),
    pytest.param({"tls_client_auth_subject_dn": "CN=mallory,O=Acme Corp"}, "subject_not_allowed", id="subject_dn refused"),
    pytest.param({"tls_client_auth_san_dns": "a.svc.example"}, None, id="san_dns"),
    pytest.param({"tls_client_auth_san_dns": "b.svc.example"}, "dns_name_not_allowed", id="san_dns refused"),
    pytest.param({"tls_client_auth_san_uri": "https://login.example.com/users/alice"}, None, id="san_uri"),
    pytest.param({"tls_client_auth_san_uri": "https://login.example.com/users/bob"}, "uri_not_allowed", id="san_uri refused"),
    pytest.param({"tls_client_auth_san_ip": "2001:db8:0:0::5"}, None, id="san_ip compared as an address"),
    pytest.param({"tls_client_auth_san_ip": "10.1.2.4"}, "ip_address_not_allowed", id="san_ip refused"),
    pytest.param({"tls_client_auth_san_email": "Alice@example.com"}, None, id="san_email"),
    pytest.param({"tls_client_auth_san_email": "bob@example.com"}, "email_not_allowed", id="san_email refused"),
    pytest.param({"tls_client_auth_san_dns": "a.svc.example", "token_endpoint_auth_method": "tls_client_auth", "tls_client_auth_san_uri": None, "client_id": "c1"}, None, id="with method, other members and nulls"),
]  # fmt: skip


@pytest.mark.parametrize(("metadata", "code"), RFC8705)
def test_from_rfc8705(ids: Ids, metadata: dict[str, Any], code: str | None) -> None:
    policy = Policy.from_rfc8705(metadata)
    if code is None:
        policy.check(ids["alice"])
        return
    with pytest.raises(PolicyDenied) as info:
        policy.check(ids["alice"])
    assert info.value.code == code


RFC8705_ERRORS = [
    pytest.param({}, ValueError, "exactly one .*found: none", id="no key"),
    pytest.param({"tls_client_auth_san_dns": "a", "tls_client_auth_san_uri": "https://a/"}, ValueError, "exactly one .*found: tls_client_auth_san_dns, tls_client_auth_san_uri", id="two keys"),
    pytest.param({"token_endpoint_auth_method": "self_signed_tls_client_auth", "jwks": {}}, ValueError, "pinned_from_rfc8705", id="self-signed method"),
    pytest.param({"token_endpoint_auth_method": "client_secret_basic", "tls_client_auth_san_dns": "a"}, ValueError, "not 'tls_client_auth'", id="other method"),
    pytest.param({"tls_client_auth_san_dns": "*.svc.example"}, ValueError, "no wildcards", id="san_dns wildcard"),
    pytest.param({"tls_client_auth_san_uri": "spiffe://td/*"}, ValueError, "no wildcards", id="san_uri prefix"),
    pytest.param({"tls_client_auth_san_ip": "10.0.0.0/8"}, ValueError, "single IP address", id="san_ip CIDR"),
    pytest.param({"tls_client_auth_san_email": "@example.com"}, ValueError, "full email address", id="san_email domain"),
    pytest.param({"tls_client_auth_subject_dn": "garbage"}, ValueError, "distinguished name", id="subject_dn garbage"),
    pytest.param({"tls_client_auth_san_dns": ["a.example"]}, TypeError, "must be a string", id="list value"),
    pytest.param([("tls_client_auth_san_dns", "a")], TypeError, "mapping", id="not a mapping"),
]  # fmt: skip


@pytest.mark.parametrize(("metadata", "exc", "message"), RFC8705_ERRORS)
def test_from_rfc8705_errors(metadata: Any, exc: type[Exception], message: str) -> None:
    with pytest.raises(exc, match=message):
        Policy.from_rfc8705(metadata)


@pytest.fixture(scope="session")
def self_signed() -> tuple[x509.Certificate, x509.Certificate]:
    return (
        self_signed_client_cert(common_name="one").certificate,
        self_signed_client_cert(common_name="two").certificate,
    )


def _x5c(cert: x509.Certificate) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding

    return base64.b64encode(cert.public_bytes(Encoding.DER)).decode()


def test_pinned_from_rfc8705(self_signed: tuple[x509.Certificate, x509.Certificate]) -> None:
    one, two = self_signed
    metadata = {
        "token_endpoint_auth_method": "self_signed_tls_client_auth",
        "jwks": {
            "keys": [
                {"kty": "EC", "x5c": [_x5c(one)]},
                {"kty": "RSA", "use": "enc"},  # no x5c: skipped
                {"kty": "EC", "x5c": [_x5c(two), "ignored-rest-of-chain"]},
                {"kty": "EC", "x5c": [_x5c(one)]},  # duplicate
            ]
        },
    }
    assert pinned_from_rfc8705(metadata) == (one, two)


PINNED_ERRORS = [
    pytest.param({"jwks": {"keys": [{"kty": "EC"}]}}, ValueError, "no certificate", id="no x5c"),
    pytest.param({"jwks": {"keys": []}}, ValueError, "no certificate", id="no keys"),
    pytest.param({"jwks_uri": "https://client.example/jwks"}, ValueError, "jwks_uri is not fetched", id="jwks_uri only"),
    pytest.param({"jwks": {"keys": [{"x5c": ["!!!"]}]}}, ValueError, "key 0: x5c\\[0\\] is not", id="bad base64"),
    pytest.param({"jwks": {"keys": [{"x5c": [base64.b64encode(b"junk").decode()]}]}}, ValueError, "not a base64 DER", id="not a certificate"),
    pytest.param({"jwks": {"keys": [{"x5c": "abc"}]}}, ValueError, "list of base64", id="x5c not a list"),
    pytest.param({"jwks": '{"keys": []}'}, TypeError, "'keys' list", id="jwks as JSON text"),
    pytest.param("jwks", TypeError, "mapping", id="not a mapping"),
]  # fmt: skip


@pytest.mark.parametrize(("metadata", "exc", "message"), PINNED_ERRORS)
def test_pinned_from_rfc8705_errors(metadata: Any, exc: type[Exception], message: str) -> None:
    with pytest.raises(exc, match=message):
        pinned_from_rfc8705(metadata)


# --- properties -------------------------------------------------------------------------------

_TEXT = st.text(min_size=1, max_size=24).filter(str.strip)


@settings(max_examples=150, deadline=None)
@given(value=_TEXT)
def test_any_common_name_matches_itself(ids: Ids, value: str) -> None:
    identity = dataclasses.replace(ids["alice"], common_name=value)
    Policy(common_names=[value]).check(identity)
    if _ascii_count(value.upper()) == _ascii_count(value):
        Policy(common_names=[value.upper()]).check(identity)
    # else upper() made ASCII out of non-ASCII (sharp s -> SS, long s -> S, dotless i -> I):
    # a different name to whoever registered it, refused on purpose (test_policy_case_folding_is_not_a_confusable_match).
    assert _norm(_norm(value)) == _norm(value)


def _ascii_count(text: str) -> int:
    return sum(c.isascii() for c in unicodedata.normalize("NFC", text))


@settings(max_examples=100, deadline=None)
@given(
    value=st.text(
        st.characters(min_codepoint=0x20, exclude_categories=["Cs"]), min_size=1, max_size=24
    )
    .filter(str.strip)
    # cryptography caps a CN at 64 UTF-8 bytes: 24 characters can be more
    .filter(lambda v: len(v.encode("utf-8")) <= 64)
)
def test_any_subject_matches_its_rfc4514_string(ids: Ids, value: str) -> None:
    # A value holding " O=" (a separator, then a known type and '=') is refused as a
    # probable missing ',' (test_dn_strings_name_what_is_wrong); any other value round-trips.
    assume(not re.search(r"[ ,/+;]([A-Za-z][A-Za-z0-9-]*|[0-9]+(\.[0-9]+)+) *=", value))
    name = _name((NameOID.ORGANIZATION_NAME, "Acme"), (NameOID.COMMON_NAME, value))
    identity = dataclasses.replace(ids["alice"], subject_name=name, subject=name.rfc4514_string())
    Policy(subjects=[name.rfc4514_string()]).check(identity)


def test_every_form_openssl_prints_is_accepted_and_matches(tmp_path) -> None:
    """What ``openssl x509 -noout -subject`` prints, pasted as is, admits that certificate."""
    import shutil
    import subprocess

    from mtlsauth._identity import identity_from_certificate
    from mtlsauth.testing import CA

    openssl = shutil.which("openssl")
    if openssl is None:  # pragma: no cover - every supported CI image has it
        pytest.skip("the openssl command line is not installed")
    subject = x509.Name(
        [
            R([A(NameOID.COUNTRY_NAME, "US")]),
            R([A(NameOID.ORGANIZATION_NAME, "Example, Inc.")]),
            R([A(NameOID.ORGANIZATIONAL_UNIT_NAME, "a+b")]),
            R([A(NameOID.ORGANIZATIONAL_UNIT_NAME, 'x"y\\z')]),
            R([A(NameOID.COMMON_NAME, "caf\u00e9 =#;<>")]),
            R([A(NameOID.COMMON_NAME, " lead")]),
            R([A(NameOID.EMAIL_ADDRESS, "a@b.example")]),
            R([A(NameOID.COMMON_NAME, "second"), A(NameOID.USER_ID, "u1")]),
        ]
    )
    cert = CA().issue_client_cert(subject=subject)
    identity = identity_from_certificate(cert.certificate)
    path = cert.cert_pem.write_to_path(tmp_path / "leaf.pem")
    printed = {}
    for nameopt in ("", "RFC2253", "oneline", "compat"):
        args = [openssl, "x509", "-noout", "-subject", "-in", str(path)]
        if nameopt:
            args += ["-nameopt", nameopt]
        out = subprocess.run(args, capture_output=True, text=True, check=True).stdout.strip()
        assert out.startswith("subject=")
        printed[nameopt or "default"] = out.removeprefix("subject=").strip()
    assert printed["default"].startswith('C = US, O = "Example, Inc.", OU = "a+b"')
    for text in printed.values():
        Policy(subjects=[text]).check(identity)
        with pytest.raises(PolicyDenied):
            Policy(subjects=[text.replace("second", "third")]).check(identity)


def test_configuration_objects_refuse_assignment_and_deletion() -> None:
    import dataclasses

    from mtlsauth import ForwardedCert, Route, TokenCheck

    policy = Policy(organizations={"payments"})
    forwarded = ForwardedCert(header="x-cert", encoding="pem", trusted_proxies=["10.0.0.1"])
    route = Route("/x")
    token = TokenCheck(lambda token: {})
    for obj, field in (
        (policy, "_allow"),
        (forwarded, "header"),
        (route, "mode"),
        (token, "required"),
    ):
        with pytest.raises(AttributeError, match=r"immutable|cannot assign"):
            setattr(obj, field, None)
        with pytest.raises(AttributeError, match=r"immutable|cannot delete"):
            delattr(obj, field)
    assert forwarded.header == "x-cert"
    assert dataclasses.is_dataclass(route)


# -- policy: case-insensitive, but no character may fold into a different ASCII name -----
FOLDING = [
    # (field, allowed, presented CN/O, admitted)
    pytest.param("common_names", "staff", "\u017ftaff", False, id="long s folds to s"),
    pytest.param("common_names", "kube", "\u212aube", False, id="Kelvin sign folds to k"),
    pytest.param("common_names", "office", "o\ufb03ce", False, id="ffi ligature folds to ffi"),
    pytest.param("organizations", "strasse", "Stra\u00dfe", False, id="sharp s folds to ss"),
    pytest.param("common_names", "admin", "adm\u0130n", False, id="dotted capital I"),
    pytest.param("common_names", "admin", "adm\u0131n", False, id="dotless i"),
    pytest.param("subjects", "CN=staff", "\u017ftaff", False, id="subject DN, long s"),
    pytest.param("common_names", "admin", "ADMIN", True, id="ASCII case still folds"),
    pytest.param("common_names", "m\u00fcller", "M\u00dcLLER", True, id="Latin-1 case folds"),
    pytest.param(
        "organizations",
        "\u03c3\u03bf\u03c6\u03b9\u03b1",
        "\u03a3\u039f\u03a6\u0399\u0391",
        True,
        id="Greek case folds",
    ),
    pytest.param("common_names", "caf\u00e9", "cafe\u0301", True, id="NFC composes"),
]


@pytest.fixture(scope="module")
def folding_ca():
    from mtlsauth.testing import CA

    return CA(organization="folding")


@pytest.mark.parametrize(("field", "allowed", "presented", "admitted"), FOLDING)
def test_policy_case_folding_is_not_a_confusable_match(
    folding_ca, field, allowed, presented, admitted
) -> None:
    from mtlsauth import Policy, PolicyDenied

    if field == "organizations":
        cert = folding_ca.issue_client_cert(common_name="x", organization=presented)
    else:
        cert = folding_ca.issue_client_cert(common_name=presented)
    identity = Verifier(trust_store=folding_ca.trust_store()).verify(cert.chain_der)
    policy = Policy(**{field: [allowed]})
    if admitted:
        policy.check(identity)
    else:
        with pytest.raises(PolicyDenied):
            policy.check(identity)


@pytest.mark.parametrize(
    ("field", "allowed", "attribute", "presented"),
    [
        pytest.param("dns_names", "kube.example", "dns_names", "\u212aube.example", id="DNS"),
        pytest.param("dns_names", "*.example", "dns_names", "\u212aube.example", id="DNS wild"),
        pytest.param("emails", "@kube.example", "emails", "a@\u212aube.example", id="email"),
    ],
)
def test_non_ascii_san_never_folds_into_an_ascii_entry(
    pki, field, allowed, attribute, presented
) -> None:
    import dataclasses

    from mtlsauth import Policy, PolicyDenied

    identity = Verifier(trust_store=pki.root.trust_store()).verify(pki.good.chain_der)
    forged = dataclasses.replace(identity, **{attribute: (presented,)})
    with pytest.raises(PolicyDenied):
        Policy(**{field: [allowed]}).check(forged)


# -- multi-valued names: the policy and the application read the same values -----------------
def test_every_organization_must_be_allowed(pki) -> None:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    from mtlsauth import Policy, PolicyDenied
    from mtlsauth.testing import CA

    ca = CA()
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "evil"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ops"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "red"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "blue"),
            x509.NameAttribute(NameOID.COMMON_NAME, "svc"),
        ]
    )
    cert = ca.issue_client_cert(subject=subject)
    identity = Verifier(trust_store=ca.trust_store()).verify(cert.chain_der)
    assert identity.organization == "evil"  # the first, as before
    assert identity.organizations == ("evil", "ops")
    assert identity.organizational_units == ("red", "blue")
    for policy in (Policy(organizations=["ops"]), Policy(organizations=["evil"])):
        with pytest.raises(PolicyDenied) as info:
            policy.check(identity)
        assert "not all are in the allow-list" in info.value.detail
    Policy(organizations=["OPS", "evil"], organizational_units=["blue"]).check(identity)


def test_a_single_organization_is_matched_as_the_whole_set_would_be() -> None:
    """One O (the common case, answered without building a set): folded and trimmed like
    any name, refused with the same code and detail as before."""
    from mtlsauth import Policy, PolicyDenied
    from mtlsauth.testing import CA

    ca = CA()
    verifier = Verifier(trust_store=ca.trust_store())
    identity = verifier.verify(ca.issue_client_cert(organization="  Payments  Team ").chain_der)
    assert identity.organizations == ("  Payments  Team ",)
    Policy(organizations=["payments team"]).check(identity)
    Policy(organizations=["other", "PAYMENTS TEAM"]).check(identity)
    for allowed in (["payments"], ["payments-team"], ["paymentsteam"]):
        with pytest.raises(PolicyDenied) as info:
            Policy(organizations=allowed).check(identity)
        assert info.value.code == "organization_not_allowed"
        assert info.value.detail == "organization not in the allow-list"
    none = verifier.verify(ca.issue_client_cert(common_name="x").chain_der)
    with pytest.raises(PolicyDenied) as info:
        Policy(organizations=["payments team"]).check(none)
    assert info.value.detail == "certificate has no organization"


def test_a_configured_teletex_hex_value_reads_as_a_certificate_carrying_it() -> None:
    """``O=#14...`` names the TeletexString with those octets, read as cryptography reads
    that string in a certificate (as UTF-8), so the configured value matches exactly the
    certificates carrying those octets; octets no certificate could carry are refused."""
    from cryptography.x509.name import _ASN1Type

    from mtlsauth._identity import identity_from_certificate
    from mtlsauth.testing import CA

    org = A(NameOID.ORGANIZATION_NAME, "\u00e9-corp", _type=_ASN1Type.T61String)
    subject = x509.Name([R([org]), R([A(NameOID.COMMON_NAME, "alice")])])
    cert = CA().issue_client_cert(subject=subject)
    octets = "\u00e9-corp".encode()
    assert bytes([0x14, len(octets)]) + octets in cert.certificate.subject.public_bytes()
    identity = identity_from_certificate(cert.certificate)
    assert identity.organization == "\u00e9-corp"
    Policy(subjects=[f"O=#14{len(octets):02x}{octets.hex()},CN=alice"]).check(identity)
    # The same text as Latin-1 octets: no certificate reads so (cryptography refuses them).
    latin = "\u00e9-corp".encode("latin-1")
    with pytest.raises(ValueError, match="does not decode as its string type"):
        Policy(subjects=[f"O=#14{len(latin):02x}{latin.hex()},CN=alice"])
    # Octets that read as other text under Latin-1 ("Ã©-corp") no longer denote that text.
    mojibake = x509.Name(
        [
            R([A(NameOID.ORGANIZATION_NAME, "\u00c3\u00a9-corp")]),
            R([A(NameOID.COMMON_NAME, "alice")]),
        ]
    )
    other = identity_from_certificate(CA().issue_client_cert(subject=mojibake).certificate)
    with pytest.raises(PolicyDenied):
        Policy(subjects=[f"O=#14{len(octets):02x}{octets.hex()},CN=alice"]).check(other)


def test_any_of_refuses_an_alternative_of_deny_lists_only(ids: Ids) -> None:
    # any_of(admin, deny-list) read as "admins, minus these" but admitted everyone else:
    # an alternative without allow-lists admits every certificate.
    for deny in ({"deny_serials": [1]}, {"deny_fingerprints": ["ab" * 32]}):
        with pytest.raises(ValueError, match="only deny-lists"):
            Policy.any_of(Policy(common_names=["admin"]), Policy(**deny))
        with pytest.raises(ValueError, match="only deny-lists"):
            Policy.any_of(Policy(**deny), Policy(common_names=["admin"]))
    # Policy() itself stays "anyone" (documented), and deny-lists next to allow-lists are fine
    assert Policy.any_of(Policy(common_names=["admin"]), Policy()).is_empty
    mixed = Policy.any_of(Policy(common_names=["admin"]), Policy(emails=["@x"], deny_serials=[1]))
    with pytest.raises(PolicyDenied):
        mixed.check(ids["alice"])


def test_spiffe_id_needs_exactly_one_uri_san_on_every_reading_path() -> None:
    ca = CA()
    verifier = Verifier(trust_store=ca.trust_store())
    for uris in (
        ["spiffe://td/ns/x/sa/y", "https://login.example.com/y"],
        ["urn:example:y", "spiffe://td/ns/x/sa/y"],
    ):
        cert = ca.issue_client_cert(uris=uris)
        via_verifier = verifier.verify(list(cert.chain_der))  # the leaf read from its DER
        via_certificate = identity_from_certificate(cert.certificate)
        for identity in (via_verifier, via_certificate):
            assert identity.uris == tuple(uris)
            assert identity.spiffe_id is None
    one = ca.issue_client_cert(uris=["spiffe://td/ns/x/sa/y"])
    assert verifier.verify(list(one.chain_der)).spiffe_id == "spiffe://td/ns/x/sa/y"


_ODD_ORGANIZATIONS = [
    "ops",
    "OPS",
    " ops",
    "ops ",
    " ",
    "\u00f3p\u015b",
    "ops\u200b",
    "\u212aelvin",  # the Kelvin sign, which str.lower() folds to "k"
    "\uff2f\uff30\uff33",  # fullwidth "OPS"
    "o\u0301ps",
    "evil",
]
_ORG_LISTS = [{"ops"}, {"OPS"}, {"\u00f3p\u015b"}, {"kelvin"}, {"ops", "\uff2f\uff30\uff33"}]


@pytest.mark.parametrize("organization", _ODD_ORGANIZATIONS)
def test_one_organization_is_judged_as_the_general_rule_judges_it(organization: str) -> None:
    """The single-organization shortcut of the organization rule gives what the general
    rule (a set of every O, read from the parsed subject) gives, for spellings that
    normalise alike or not at all: case, spaces, non-ASCII, the Kelvin sign, fullwidth
    letters, combining marks; and for identities that never take the shortcut
    (``dataclasses.replace`` copies with other organizations, proxy-verified
    identities)."""
    from mtlsauth._identity import subject_organizations

    ca = CA(organization="Org Rule")
    identity = identity_from_certificate(
        ca.issue_client_cert(common_name="c", organization=organization).certificate
    )
    assert subject_organizations(identity) == (organization,)  # the shortcut applies
    # A copy with its own tuple of organizations: the general rule, the subject parsed.
    copied = dataclasses.replace(identity, organizations=tuple(list(identity.organizations)))
    assert subject_organizations(copied) is None
    assert subject_organizations(dataclasses.replace(identity)) == (organization,)
    # As a proxy-verified identity: no certificate, the organizations as given.
    proxied = dataclasses.replace(identity, certificate=None, organizations=(organization,))

    def outcome(policy: Policy, who: ClientIdentity) -> str | None:
        try:
            policy.check(who)
        except PolicyDenied as exc:
            return exc.detail
        return None

    for allowed in _ORG_LISTS:
        policy = Policy(organizations=allowed)
        want = outcome(policy, copied)
        assert outcome(policy, identity) == want, (organization, allowed)
        assert outcome(policy, proxied) == want, (organization, allowed)
    if organization in ("ops", "evil"):
        want = None if organization == "ops" else "organization not in the allow-list"
        assert outcome(Policy(organizations={"ops"}), identity) == want


@pytest.mark.parametrize(
    "names",
    [
        ["a.example."],
        ["A.Example"],
        ["a.example.."],
        ["."],
        [""],
        ["x.svc.example."],
        ["*.svc.example"],
        ["\u212a.svc.example"],
        ["k.svc.example", "a.example"],
        ["xn--ls8h.example"],
    ],
)
def test_dns_names_are_folded_as_before(names: list[str]) -> None:
    """The DNS rule's inline folding (ASCII lower case, one trailing dot dropped) gives
    what ``_dns_norm`` gives: a name that ends with a dot, a lone dot, an empty name,
    a wildcard, a non-ASCII name (never folded into ASCII)."""
    from mtlsauth._names import _dns_norm

    allowed = {"a.example", "*.svc.example", "k.svc.example"}
    policy = Policy(dns_names=allowed)
    base = identity_from_certificate(CA().issue_client_cert(common_name="x").certificate)
    identity = dataclasses.replace(base, dns_names=tuple(names))

    def reference() -> bool:
        for raw in names:
            if not raw.isascii():
                continue
            name = _dns_norm(raw)
            if name in {"a.example"}:
                return True
            head, dot, rest = name.partition(".")
            if dot and head and "*" not in head and rest in {"svc.example", "k.svc.example"}:
                return True
        return False

    try:
        policy.check(identity)
        got = True
    except PolicyDenied:
        got = False
    assert got is reference()


@pytest.mark.parametrize(
    ("field", "entry"),
    [
        pytest.param("spiffe_ids", "spiffe://*", id="spiffe: every trust domain"),
        pytest.param("uris", "spiffe://*", id="uri: every trust domain"),
        pytest.param("uris", "https://*", id="uri: every host"),
    ],
)
def test_a_prefix_that_ends_inside_the_authority_is_refused(field: str, entry: str) -> None:
    # It would admit every trust domain or host: leave the allow-list out to mean that.
    with pytest.raises(ValueError, match="admits every"):
        Policy(**{field: [entry]})
    Policy(**{field: [entry.replace("*", "example.org/*")]})  # a named authority is fine
