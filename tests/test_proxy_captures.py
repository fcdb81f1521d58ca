"""Header values recorded from real proxies, replayed through mtlsauth's decoders.

``tests/captures/proxies.json`` holds, for edge-case clients (a leaf under two intermediates,
a subject of BMPString and RFC 4514 specials, a UTF-8 subject, an RSA-4096 leaf of about
7 KB, a self-signed impostor, no certificate), the exact header fields that nginx 1.22,
Apache httpd 2.4, HAProxy 2.6 and Caddy 2.6 forwarded (``tests/captures/record.py`` records
them), and the values Envoy and Traefik write, rebuilt from their source code (each entry
names the source). Every certificate value must decode to exactly the certificates the
client presented, every "no certificate" form must read as absent, and what is not a
certificate, or is cut short, must be refused.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from mtlsauth import CertificateInvalid, ForwardedCert, Presented

DATA = json.loads((Path(__file__).parent / "captures" / "proxies.json").read_text())
CHAINS = {n: tuple(base64.b64decode(d) for d in ders) for n, ders in DATA["chains"].items()}
ALL = DATA["captures"] + DATA["reconstructed"]
PROXY = "127.0.0.1"

# proxy -> (how mtlsauth is configured for it, how many of the presented certificates the
# header carries: None = the whole chain, 1 = the leaf alone)
CONFIGS: dict[str, list[tuple[str, dict[str, Any], int | None]]] = {
    "nginx": [
        ("escaped", {"preset": "nginx"}, 1),
        (
            "folded",
            {"preset": "nginx", "header": "X-SSL-Client-Cert-Folded", "encoding": "pem"},
            1,
        ),
    ],
    "apache": [
        ("pem", {"preset": "apache"}, None),
        (
            "escape:",
            {
                "preset": "apache",
                "header": "X-SSL-Client-Cert-Escaped",
                "encoding": "url-pem",
                "chain_header": None,
            },
            1,
        ),
    ],
    "haproxy": [("der", {"preset": "haproxy"}, None)],
    "caddy": [("der", {"preset": "caddy"}, 1)],
    "envoy": [("xfcc", {"preset": "envoy"}, None)],
    "traefik": [("pem: true", {"preset": "traefik"}, None)],
    "traefik-legacy": [("pem: true, <= 2.9.1", {"preset": "traefik"}, None)],
}


def _forwarded(config: dict[str, Any]) -> ForwardedCert:
    config = dict(config)
    return ForwardedCert.preset(config.pop("preset"), trusted_proxies=[PROXY], **config)


def _request(headers: list[list[str]], *, transform=lambda v: v) -> Presented:
    return Presented(peer=PROXY, headers=tuple((k.lower(), transform(v)) for k, v in headers))


def _cases(with_certificate: bool):
    for capture in ALL:
        has = capture["client"] != "none"
        if has != with_certificate:
            continue
        for label, config, count in CONFIGS.get(capture["proxy"], []):
            yield pytest.param(
                capture, config, count, id=f"{capture['proxy']}-{label}-{capture['client']}"
            )


def _expected(capture: dict[str, Any], count: int | None) -> tuple[bytes, ...]:
    chain = CHAINS[capture["client"]]
    return chain if count is None else chain[:count]


def test_captures_cover_every_proxy_and_client():
    seen = {(c["proxy"], c["client"]) for c in ALL}
    for proxy in ("nginx", "apache", "haproxy", "caddy", "envoy", "traefik", "traefik-legacy"):
        for client in CHAINS:
            assert (proxy, client) in seen
    assert len(CHAINS["deep"]) == 3  # the leaf and two intermediates
    assert max(len(d) for d in CHAINS["rsa4096"]) > 6000


@pytest.mark.parametrize(("capture", "config", "count"), list(_cases(True)))
def test_capture_decodes_to_the_presented_certificates(capture, config, count):
    value = _forwarded(config).extract(_request(capture["headers"]))
    assert value is not None
    assert value.decode() == _expected(capture, count)


@pytest.mark.parametrize(("capture", "config", "count"), list(_cases(True)))
def test_capture_with_surrounding_blanks_trimmed(capture, config, count):
    """What a server that trims a field's surrounding blanks (h11, gunicorn) hands the app:
    Apache's trailing space is gone."""
    value = _forwarded(config).extract(_request(capture["headers"], transform=str.strip))
    assert value is not None
    assert value.decode() == _expected(capture, count)


@pytest.mark.parametrize(("capture", "config", "count"), list(_cases(False)))
def test_no_certificate_reads_as_absent(capture, config, count):
    assert _forwarded(config).extract(_request(capture["headers"])) is None


def _nginx(client: str, proxy: str = "nginx") -> dict[str, Any]:
    return next(c for c in DATA["captures"] if (c["proxy"], c["client"]) == (proxy, client))


def _value(capture: dict[str, Any], name: str) -> str:
    return next(v for k, v in capture["headers"] if k.lower() == name.lower())


@pytest.mark.parametrize("client", ["deep", "special", "utf8", "rsa4096", "impostor"])
def test_nginx_folded_cert_unfolded_by_h11(client):
    """uvicorn (h11) joins nginx's ``$ssl_client_cert`` folds into single spaces."""
    folded = _value(_nginx(client), "X-SSL-Client-Cert-Folded")
    assert "\n\t" in folded
    fc = _forwarded({"preset": "nginx", "encoding": "pem"})
    value = fc.extract(_request([["X-SSL-Client-Cert", folded.replace("\n\t", " ")]]))
    assert value is not None
    assert value.decode() == CHAINS[client][:1]


def test_nginx_raw_cert_is_refused_as_the_app_receives_it():
    """``$ssl_client_raw_cert`` puts bare line feeds in the header: Python's HTTP parser
    keeps its first line and takes the rest for the body (h11 and gunicorn refuse the
    request). The first line alone is a cut PEM: malformed, never absent or accepted."""
    raw = _value(_nginx("deep", "nginx-raw"), "X-SSL-Client-Cert-Raw")
    assert raw.count("\n") > 3
    first_line = raw.split("\n", 1)[0]
    assert first_line == "-----BEGIN CERTIFICATE-----"
    fc = _forwarded({"preset": "nginx", "encoding": "pem"})
    value = fc.extract(_request([["X-SSL-Client-Cert", first_line]]))
    assert value is not None
    with pytest.raises(CertificateInvalid) as info:
        value.decode()
    assert info.value.code == "certificate_malformed"


def test_traefik_info_header_is_not_a_certificate():
    """``X-Forwarded-Tls-Client-Cert-Info`` describes the certificate; configured as the
    certificate header by mistake, it is refused."""
    fc = _forwarded({"preset": "traefik", "header": "X-Forwarded-Tls-Client-Cert-Info"})
    for capture in DATA["reconstructed"]:
        if capture["proxy"] != "traefik-info":
            continue
        value = fc.extract(_request(capture["headers"]))
        assert value is not None
        with pytest.raises(CertificateInvalid) as info:
            value.decode()
        assert info.value.code == "certificate_malformed"


@pytest.mark.parametrize("client", ["deep", "special", "utf8", "rsa4096", "impostor"])
def test_istio_sidecar_subject_is_the_certificate_subject(client):
    """Envoy writes ``Subject`` with BoringSSL's RFC 2253 printer (non-ASCII as ``\\C3\\AB``,
    specials escaped); the proxy-verified identity's subject is the certificate's own."""
    from cryptography import x509

    capture = next(
        c for c in DATA["reconstructed"] if (c["proxy"], c["client"]) == ("istio-sidecar", client)
    )
    fc = _forwarded({"preset": "istio", "verified_by_proxy": True})
    value = fc.extract(_request(capture["headers"]))
    assert value is not None
    identity = value.decode()
    leaf = x509.load_der_x509_certificate(CHAINS[client][0])
    assert identity.subject_name == leaf.subject
    assert identity.verified_by == "proxy"


# -- cut short: a truncated value never reads as another certificate ------------------------
def _single_values():
    for capture in DATA["captures"]:
        if capture["client"] == "none":
            continue
        names = {
            "nginx": ("X-SSL-Client-Cert", "url-pem"),
            "apache": ("X-SSL-Client-Cert", "pem"),
            "haproxy": ("x-ssl-client-cert", "der-base64"),
            "caddy": ("X-Client-Cert", "der-base64"),
        }
        if capture["proxy"] in names:
            header, encoding = names[capture["proxy"]]
            yield pytest.param(
                _value(capture, header),
                encoding,
                CHAINS[capture["client"]][0],
                id=f"{capture['proxy']}-{capture['client']}",
            )


@pytest.mark.parametrize(("value", "encoding", "leaf"), list(_single_values()))
def test_truncated_value_is_refused(value, encoding, leaf):
    """Every cut of a real value (every line boundary, and a spread of other points) is
    refused as malformed, unless all it lost was trailing blanks (an escaped final line feed
    of URL-encoded PEM among them)."""
    fc = ForwardedCert(header="X-Cert", encoding=encoding, trusted_proxies=[PROXY])
    cuts = set(range(1, len(value), max(1, len(value) // 150)))
    cuts |= {i for i, c in enumerate(value) if c in " \n%"}
    cuts |= {i + 1 for i, c in enumerate(value) if c in " \n%"}
    codes: set[str] = set()
    for cut in sorted(c for c in cuts if 0 < c < len(value)):
        part = value[:cut]
        extracted = fc.extract(Presented(peer=PROXY, headers=(("x-cert", part),)))
        if extracted is None:
            continue  # nothing but blanks left: reads as no certificate at all
        try:
            got = extracted.decode()
        except CertificateInvalid as exc:
            codes.add(exc.code)
            continue
        lost = unquote(value[cut:]) if encoding == "url-pem" else value[cut:]
        assert lost.strip() == "", (encoding, cut)
        assert got == (leaf,)
    assert codes == {"certificate_malformed"}


# -- Envoy's Subject, printed as Envoy prints it ---------------------------------------------
def _names():
    from cryptography import x509
    from cryptography.x509.name import _ASN1Type
    from cryptography.x509.oid import NameOID, ObjectIdentifier

    a = x509.NameAttribute
    rdn = x509.RelativeDistinguishedName
    cn = NameOID.COMMON_NAME
    return {
        "specials": x509.Name([a(cn, 'a, "b" + c = d \\ e; <f> #g')]),
        "leading hash and spaces": x509.Name([a(cn, "#lead"), a(NameOID.ORGANIZATION_NAME, " o ")]),
        "ends in a backslash": x509.Name([a(cn, "ends with \\")]),
        # printed last (RFC 2253 reverses the order), so the DN string ends in an escaped space
        "space ends the DN": x509.Name([a(NameOID.ORGANIZATION_NAME, " o "), a(cn, "x")]),
        "escaped backslash then space end the DN": x509.Name(
            [a(NameOID.ORGANIZATION_NAME, "o\\ "), a(cn, "x")]
        ),
        "ends in a quote": x509.Name([a(cn, 'ends with "')]),
        "semicolon and equals": x509.Name([a(cn, "a;b=c,d")]),
        "control characters": x509.Name([a(cn, "tab\there\x01")]),
        "multi-valued RDN": x509.Name(
            [rdn([a(cn, "a"), a(NameOID.ORGANIZATIONAL_UNIT_NAME, "b")])]
        ),
        "BMPString": x509.Name([a(cn, "Bmp Zoë 日本", _type=_ASN1Type.BMPString)]),
        "UniversalString": x509.Name([a(cn, "uni 日", _type=_ASN1Type.UniversalString)]),
        "unknown attribute": x509.Name(
            [a(ObjectIdentifier("1.3.6.1.4.1.99999.1"), "x"), a(cn, "u")]
        ),
        "LDAP names": x509.Name(
            [
                a(NameOID.DOMAIN_COMPONENT, "example"),
                a(NameOID.USER_ID, "u1"),
                a(NameOID.SERIAL_NUMBER, "123"),
                a(NameOID.SURNAME, "S"),
                a(NameOID.GIVEN_NAME, "G"),
                a(NameOID.EMAIL_ADDRESS, "a@b.example"),
                a(NameOID.STREET_ADDRESS, "1 Road"),
            ]
        ),
    }


@pytest.mark.parametrize("label", list(_names()))
def test_envoy_subject_of_every_shape_reads_back(label):
    """Envoy's ``Subject`` is ``X509_NAME_print_ex(..., XN_FLAG_RFC2253)`` between quotes, with
    no escaping of its own; OpenSSL's ``-nameopt RFC2253`` is the same printer. The
    proxy-verified identity's subject is the certificate's, for every special character."""
    import shutil
    import subprocess

    from cryptography import x509

    from mtlsauth.testing import CA
    from mtlsauth.testing._encode import encode_element

    openssl = shutil.which("openssl")
    if openssl is None:  # pragma: no cover - every supported CI image has it
        pytest.skip("the openssl command line is not installed")
    name = _names()[label]
    client = CA(organization="envoy subjects").issue_client_cert(subject=name)
    printed = subprocess.run(
        [openssl, "x509", "-noout", "-subject", "-nameopt", "RFC2253"],
        input=client.cert_pem.bytes(),
        capture_output=True,
        check=True,
    ).stdout.decode("ascii")
    # only the line feed: a DN may end in an escaped space ("O=\\ o\\ ")
    subject = printed.removesuffix("\n").removeprefix("subject=")
    assert subject.isascii()
    xfcc = encode_element(client.chain_der, subject=subject, cert=False, chain=False)
    fc = _forwarded({"preset": "istio", "verified_by_proxy": True})
    value = fc.extract(Presented(peer=PROXY, headers=(("x-forwarded-client-cert", xfcc),)))
    assert value is not None
    assert value.decode().subject_name == x509.load_der_x509_certificate(client.der).subject
