"""What each proxy writes in its headers for a given client chain: tooling, not runtime.

The encoders produce byte for byte what nginx, Apache, HAProxy, Envoy, AWS, GCP and the
others send, so tests, fuzz seeds, benchmarks and the documentation can show real values.
Nothing on the request path needs them (the core reads headers, it never writes them), so
they live beside ``mtlsauth.testing``, whose ``encode_forwarded`` is the public face.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from urllib.parse import quote

from mtlsauth._errors import MTLSAuthError
from mtlsauth._forwarded._formats import ENCODINGS
from mtlsauth._forwarded._presets import PRESETS, resolve_name
from mtlsauth._forwarded._xfcc import _quoted

__all__ = [
    "der_to_pem",
    "encode_b64",
    "encode_element",
    "encode_forwarded",
    "encode_pem_spaces",
    "encode_pem_tabs",
    "encode_rfc9440",
    "encode_url_pem",
]


# -- encoders: what each proxy puts on the wire for a given chain ----------------------------
def der_to_pem(der: bytes) -> str:
    body = base64.b64encode(der).decode("ascii")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"


def encode_url_pem(ders: tuple[bytes, ...] | list[bytes], *, safe: str = "") -> str:
    """nginx ``$ssl_client_escaped_cert`` (``safe=""``) or AWS ALB (``safe="+=/"``)."""
    return quote("".join(der_to_pem(d) for d in ders), safe=safe)


def encode_pem_spaces(der: bytes) -> str:
    """Apache ``RequestHeader set X "%{SSL_CLIENT_CERT}s"``: every LF became a space."""
    return der_to_pem(der).replace("\n", " ")


def encode_pem_tabs(der: bytes) -> str:
    """nginx ``$ssl_client_cert``: the PEM minus its final LF, a TAB after every LF."""
    return der_to_pem(der).rstrip("\n").replace("\n", "\n\t")


def encode_b64(ders: tuple[bytes, ...] | list[bytes]) -> str:
    return base64.b64encode(b"".join(ders)).decode("ascii")


def encode_rfc9440(der: bytes) -> str:
    return ":" + base64.b64encode(der).decode("ascii") + ":"


def _quote(value: str) -> str:
    """Quote a value as Envoy does: as it is. Refuse one the reader could not give back."""
    try:
        got, end = _quoted(value + '"', 0)
    except MTLSAuthError:
        got, end = "", -1
    if got != value or end != len(value) + 1:
        raise ValueError(
            f"{value!r} cannot be quoted in x-forwarded-client-cert: it holds an unescaped '\"' "
            "or ends in an odd number of backslashes"
        )
    return f'"{value}"'


def encode_element(
    ders: tuple[bytes, ...] | list[bytes],
    *,
    by: str | None = "spiffe://cluster.local/ns/default/sa/gateway",
    subject: str | None = None,
    uris: tuple[str, ...] | list[str] = (),
    dns: tuple[str, ...] | list[str] = (),
    cert: bool = True,
    chain: bool = True,
) -> str:
    """One element as Envoy's SANITIZE_SET writes it (By, Hash, Cert, Chain, Subject, URI, DNS)."""
    parts: list[str] = []
    if by:
        parts.append(f"By={by}")
    if ders:
        parts.append(f"Hash={hashlib.sha256(ders[0]).hexdigest()}")
        if cert:
            parts.append(f"Cert={_quote(encode_url_pem(ders[:1]))}")
        if chain:
            parts.append(f"Chain={_quote(encode_url_pem(ders))}")
    if subject is not None:
        parts.append(f"Subject={_quote(subject)}")
    parts += [f"URI={u}" for u in uris] or ["URI="]
    parts += [f"DNS={d}" for d in dns]
    return ";".join(parts)


# OpenSSL's short names (crypto/objects/objects.txt) for the attributes it prints by name;
# any other attribute is printed as its dotted OID and ``#`` + the DER of its value.
_OPENSSL_SHORT_NAMES = {
    "2.5.4.3": "CN",
    "2.5.4.4": "SN",
    "2.5.4.5": "serialNumber",
    "2.5.4.6": "C",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.9": "street",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.12": "title",
    "2.5.4.17": "postalCode",
    "2.5.4.42": "GN",
    "2.5.4.43": "initials",
    "2.5.4.44": "generationQualifier",
    "2.5.4.46": "dnQualifier",
    "2.5.4.65": "pseudonym",
    "2.5.4.97": "organizationIdentifier",
    "0.9.2342.19200300.100.1.1": "UID",
    "0.9.2342.19200300.100.1.25": "DC",
    "1.2.840.113549.1.9.1": "emailAddress",
    "1.3.6.1.4.1.311.60.2.1.3": "jurisdictionC",
    "2.5.4.15": "businessCategory",
    # The other names OpenSSL's table has held since 1.0 (checked against OpenSSL 3.0's
    # X509_NAME_print_ex); printing these as OID=#DER gave a Subject no proxy writes.
    "2.5.4.13": "description",
    "2.5.4.14": "searchGuide",
    "2.5.4.16": "postalAddress",
    "2.5.4.18": "postOfficeBox",
    "2.5.4.19": "physicalDeliveryOfficeName",
    "2.5.4.20": "telephoneNumber",
    "2.5.4.21": "telexNumber",
    "2.5.4.22": "teletexTerminalIdentifier",
    "2.5.4.23": "facsimileTelephoneNumber",
    "2.5.4.24": "x121Address",
    "2.5.4.25": "internationaliSDNNumber",
    "2.5.4.26": "registeredAddress",
    "2.5.4.27": "destinationIndicator",
    "2.5.4.28": "preferredDeliveryMethod",
    "2.5.4.29": "presentationAddress",
    "2.5.4.30": "supportedApplicationContext",
    "2.5.4.31": "member",
    "2.5.4.32": "owner",
    "2.5.4.33": "roleOccupant",
    "2.5.4.34": "seeAlso",
    "2.5.4.35": "userPassword",
    "2.5.4.36": "userCertificate",
    "2.5.4.37": "cACertificate",
    "2.5.4.38": "authorityRevocationList",
    "2.5.4.39": "certificateRevocationList",
    "2.5.4.40": "crossCertificatePair",
    "2.5.4.41": "name",
    "2.5.4.45": "x500UniqueIdentifier",
    "2.5.4.47": "enhancedSearchGuide",
    "2.5.4.48": "protocolInformation",
    "2.5.4.49": "distinguishedName",
    "2.5.4.50": "uniqueMember",
    "2.5.4.51": "houseIdentifier",
    "2.5.4.52": "supportedAlgorithms",
    "2.5.4.53": "deltaRevocationList",
    "2.5.4.54": "dmdName",
    "2.5.4.72": "role",
    "0.9.2342.19200300.100.1.2": "textEncodedORAddress",
    "0.9.2342.19200300.100.1.3": "mail",
    "0.9.2342.19200300.100.1.4": "info",
    "0.9.2342.19200300.100.1.5": "favouriteDrink",
    "0.9.2342.19200300.100.1.6": "roomNumber",
    "0.9.2342.19200300.100.1.7": "photo",
    "0.9.2342.19200300.100.1.8": "userClass",
    "0.9.2342.19200300.100.1.9": "host",
    "0.9.2342.19200300.100.1.10": "manager",
    "0.9.2342.19200300.100.1.11": "documentIdentifier",
    "0.9.2342.19200300.100.1.12": "documentTitle",
    "0.9.2342.19200300.100.1.13": "documentVersion",
    "0.9.2342.19200300.100.1.14": "documentAuthor",
    "0.9.2342.19200300.100.1.15": "documentLocation",
    "0.9.2342.19200300.100.1.20": "homeTelephoneNumber",
    "0.9.2342.19200300.100.1.21": "secretary",
    "0.9.2342.19200300.100.1.22": "otherMailbox",
    "0.9.2342.19200300.100.1.23": "lastModifiedTime",
    "0.9.2342.19200300.100.1.24": "lastModifiedBy",
    "0.9.2342.19200300.100.1.26": "aRecord",
    "0.9.2342.19200300.100.1.27": "pilotAttributeType27",
    "0.9.2342.19200300.100.1.28": "mXRecord",
    "0.9.2342.19200300.100.1.29": "nSRecord",
    "0.9.2342.19200300.100.1.30": "sOARecord",
    "0.9.2342.19200300.100.1.31": "cNAMERecord",
    "0.9.2342.19200300.100.1.37": "associatedDomain",
    "0.9.2342.19200300.100.1.38": "associatedName",
    "0.9.2342.19200300.100.1.39": "homePostalAddress",
    "0.9.2342.19200300.100.1.40": "personalTitle",
    "0.9.2342.19200300.100.1.41": "mobileTelephoneNumber",
    "0.9.2342.19200300.100.1.42": "pagerTelephoneNumber",
    "0.9.2342.19200300.100.1.43": "friendlyCountryName",
    "0.9.2342.19200300.100.1.44": "uid",
    "0.9.2342.19200300.100.1.45": "organizationalStatus",
    "0.9.2342.19200300.100.1.46": "janetMailbox",
    "0.9.2342.19200300.100.1.47": "mailPreferenceOption",
    "0.9.2342.19200300.100.1.48": "buildingName",
    "0.9.2342.19200300.100.1.49": "dSAQuality",
    "0.9.2342.19200300.100.1.50": "singleLevelQuality",
    "0.9.2342.19200300.100.1.51": "subtreeMinimumQuality",
    "0.9.2342.19200300.100.1.52": "subtreeMaximumQuality",
    "0.9.2342.19200300.100.1.53": "personalSignature",
    "0.9.2342.19200300.100.1.54": "dITRedirect",
    "0.9.2342.19200300.100.1.55": "audio",
    "0.9.2342.19200300.100.1.56": "documentPublisher",
    "1.2.840.113549.1.9.2": "unstructuredName",
    "1.2.840.113549.1.9.3": "contentType",
    "1.2.840.113549.1.9.4": "messageDigest",
    "1.2.840.113549.1.9.5": "signingTime",
    "1.2.840.113549.1.9.6": "countersignature",
    "1.2.840.113549.1.9.7": "challengePassword",
    "1.2.840.113549.1.9.8": "unstructuredAddress",
    "1.2.840.113549.1.9.9": "extendedCertificateAttributes",
    "1.2.840.113549.1.9.14": "extReq",
    "1.2.840.113549.1.9.15": "SMIME-CAPS",
    "1.2.840.113549.1.9.16": "SMIME",
    "1.2.840.113549.1.9.20": "friendlyName",
    "1.2.840.113549.1.9.21": "localKeyID",
    "1.3.6.1.4.1.311.60.2.1.1": "jurisdictionL",
    "1.3.6.1.4.1.311.60.2.1.2": "jurisdictionST",
}


def _openssl_escape(value: str) -> str:
    """One attribute value as ``X509_NAME_print_ex(XN_FLAG_RFC2253)`` writes it: UTF-8, each
    byte of a multi-byte character and each control byte as ``\\XX`` (ESC_MSB, ESC_CTRL),
    ``,+"\\<>;`` escaped, and a leading ``#`` or space and a trailing space escaped."""
    data = value.encode("utf-8", "surrogatepass")
    out = []
    for i, b in enumerate(data):
        ch = chr(b)
        if b < 0x20 or b >= 0x7F:
            out.append(f"\\{b:02X}")
        elif ch in ',+"\\<>;' or (i == 0 and ch in "# ") or (i == len(data) - 1 and ch == " "):
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def _openssl_value_der(attr: object) -> bytes:
    """The DER of an attribute value (tag, length, content), for OpenSSL's ``#hex`` form."""
    from cryptography.x509.name import _ASN1Type

    kind = getattr(attr, "_type", _ASN1Type.UTF8String)
    value = str(getattr(attr, "value", ""))
    if kind == _ASN1Type.BMPString:
        content = value.encode("utf-16-be")
    elif kind == _ASN1Type.UniversalString:
        content = value.encode("utf-32-be")
    else:
        content = value.encode("utf-8")
    n = len(content)
    length = bytes([n]) if n < 0x80 else bytes([0x80 | ((n.bit_length() + 7) // 8)])
    if n >= 0x80:
        length += n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([kind.value]) + length + content


def openssl_rfc2253(name: object) -> str:
    """A ``cryptography`` ``x509.Name`` as OpenSSL's ``X509_NAME_print_ex(XN_FLAG_RFC2253)``
    prints it, which is what Envoy puts in an XFCC ``Subject``: the last RDN first, non-ASCII
    as ``\\C3\\AB`` escapes of its UTF-8 bytes (``cryptography``'s ``rfc4514_string`` writes
    the characters themselves), unknown attributes as ``OID=#DER``."""
    rdns = []
    for rdn in reversed(list(getattr(name, "rdns", ()))):
        parts = []
        for attr in reversed(list(rdn)):  # OpenSSL reverses every entry, in a set too
            short = _OPENSSL_SHORT_NAMES.get(attr.oid.dotted_string)
            if short is None:
                parts.append(f"{attr.oid.dotted_string}=#{_openssl_value_der(attr).hex().upper()}")
            else:
                parts.append(f"{short}={_openssl_escape(str(attr.value))}")
        rdns.append("+".join(parts))
    return ",".join(rdns)


def _subject(der: bytes) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = tuple(san.get_values_for_type(x509.UniformResourceIdentifier))
        dns = tuple(san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        uris = dns = ()
    return openssl_rfc2253(cert.subject), uris, dns


def encode_forwarded(preset_or_encoding: str, chain_der: Sequence[bytes]) -> list[tuple[str, str]]:
    """The header pairs a proxy sends for a client that presented ``chain_der`` (leaf first).

    Args:
        preset_or_encoding: A preset name (``"nginx"``, ``"apache"``...) or an encoding name
            (then the header is ``X-Client-Cert`` and the whole chain goes into it where the
            encoding can carry one).
        chain_der: The certificates the client presented, leaf first.

    Returns:
        ``(header name, value)`` pairs, byte for byte what that proxy writes (nginx escapes
        ``+`` as ``%2B``, AWS leaves it raw, Apache turns newlines into spaces...).
    """
    if isinstance(chain_der, bytes | str) or not hasattr(chain_der, "__iter__"):
        hint = "cert.chain_der" if hasattr(chain_der, "chain_der") else "[leaf_der, ...]"
        raise TypeError(
            f"encode_forwarded() takes a sequence of DER certificates, leaf first, not "
            f"{type(chain_der).__name__}: pass {hint}"
        )
    ders = tuple(chain_der)
    if not ders:
        raise ValueError("chain_der must hold at least the leaf certificate")
    if not all(isinstance(d, bytes) for d in ders):
        raise TypeError("encode_forwarded() takes DER bytes, leaf first (PEM text is not DER)")
    leaf, rest = ders[0], ders[1:]
    name = resolve_name(preset_or_encoding, [*PRESETS, *ENCODINGS], "preset or encoding")
    if name in ENCODINGS and name not in PRESETS:
        return [("X-Client-Cert", _encode_value(name, ders))]
    if name not in PRESETS:
        raise ValueError(
            f"unknown preset or encoding {name!r}; presets: {', '.join(sorted(PRESETS))}; "
            f"encodings: {', '.join(ENCODINGS)}"
        )
    cfg = PRESETS[name]
    header: str = cfg["header"]
    if name in ("nginx", "ingress-nginx", "wso2", "cloudfront"):
        return [(header, encode_url_pem([leaf]))]  # nginx never exposes the client's chain
    if name == "aws-alb":
        return [(header, encode_url_pem(ders, safe="+=/"))]
    if name in ("apache", "gluu"):
        out = [(header, encode_pem_spaces(leaf))]
        for i, chain_name in enumerate(cfg.get("chain_header", ())):
            out.append((chain_name, encode_pem_spaces(rest[i]) if i < len(rest) else "(null)"))
        return out
    if name == "haproxy":
        return [
            (header, encode_b64([leaf])),
            (cfg["chain_header"], encode_b64(rest) if rest else ""),
        ]
    if name in ("caddy", "azure", "cloudflare"):
        return [(header, encode_b64([leaf]))]
    if name == "traefik":
        return [(header, _encode_value("traefik", ders))]
    if name in ("envoy", "istio", "azure-container-apps"):
        subject, uris, dns = _subject(leaf)
        return [(header, encode_element(ders, subject=subject, uris=uris, dns=dns))]
    if name == "aws-alb-verify":
        from cryptography import x509

        cert = x509.load_der_x509_certificate(leaf)
        fields = cfg["identity_headers"]
        validity = (
            f"NotBefore={cert.not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ};"
            f"NotAfter={cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}"
        )
        return [
            (fields["serial"], f"{cert.serial_number:X}"),
            (fields["issuer"], cert.issuer.rfc4514_string()),
            (fields["subject"], cert.subject.rfc4514_string()),
            (fields["validity"], validity),
            (header, encode_url_pem([leaf], safe="+=/")),
        ]
    if name in ("rfc9440", "gcp"):
        out = [(header, encode_rfc9440(leaf))]
        if rest:
            out.append((cfg["chain_header"], ", ".join(encode_rfc9440(d) for d in rest)))
        if name == "gcp":
            import base64

            fields = cfg["identity_headers"]
            out += [
                (fields["present"], "true"),
                (fields["chain_verified"], "true"),
                (fields["fingerprint"], base64.b64encode(hashlib.sha256(leaf).digest()).decode()),
            ]
        return out
    raise AssertionError(f"preset {name!r} has no encoder")  # pragma: no cover


def _encode_value(encoding: str, ders: tuple[bytes, ...]) -> str:
    if encoding == "url-pem":
        return encode_url_pem(ders)
    if encoding == "pem":
        return " ".join(encode_pem_spaces(d) for d in ders)
    if encoding == "der-base64":
        return encode_b64(ders)
    if encoding == "traefik":
        return ",".join(encode_b64([d]) for d in ders)
    if encoding == "xfcc":
        subject, uris, dns = _subject(ders[0])
        return encode_element(ders, subject=subject, uris=uris, dns=dns)
    return encode_rfc9440(ders[0])  # rfc9440: Client-Cert holds only the leaf
