"""Identities verified by a proxy (opt-in ``verified_by_proxy=True``), built from its fields.

Istio sidecars forward only the caller's SPIFFE ID, subject and DNS names in XFCC; AWS ALB in
verify mode forwards subject, issuer, serial and validity; GCP's load balancer forwards
fingerprint, SANs and base64 DER names. mtlsauth did not verify any of it: the resulting
``ClientIdentity`` has ``verified_by="proxy"`` and ``certificate=None``, and is exactly as
trustworthy as the proxy (and the network path from it). The Policy still applies.
"""

from __future__ import annotations

import base64
import binascii
import warnings
from datetime import datetime, timezone

from cryptography import x509
from cryptography.x509.oid import NameOID, ObjectIdentifier

from mtlsauth import _der
from mtlsauth._forwarded._formats import malformed
from mtlsauth._forwarded._xfcc import XFCCElement, hash_hex
from mtlsauth._identity import ClientIdentity, IPAddress, spiffe_id_of
from mtlsauth._names import _parse_rdns, colon_hex

__all__ = ["identity_from_aws", "identity_from_gcp", "identity_from_xfcc", "parse_dn"]


def parse_dn(text: str) -> x509.Name:
    """Parse an RFC 2253/4514 DN, or OpenSSL's ``/C=US/O=Acme/CN=x`` form, structurally.

    The same parser as configured DN strings (attribute types case-insensitive, RFC 4514
    escapes, ``#hex`` DER strings), without the configuration's refusal of values that
    hold ``TYPE=``: a proxy's RFC 2253 string is unambiguous as written.
    """
    if not text.strip(" "):
        return x509.Name([])
    try:
        rdns = _parse_rdns(text, strict=False)
        if not text.startswith("/"):
            rdns.reverse()  # RFC 4514 lists the most specific RDN first
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a malformed countryName is a parse failure
            return x509.Name(
                [
                    x509.RelativeDistinguishedName(
                        [x509.NameAttribute(ObjectIdentifier(oid), value) for oid, value in rdn]
                    )
                    for rdn in rdns
                ]
            )
    except (ValueError, TypeError, UnicodeError, Warning):
        raise malformed("the proxy's distinguished name could not be parsed") from None


def _first(name: x509.Name, oid: ObjectIdentifier) -> str | None:
    values = _all(name, oid)
    return values[0] if values else None


def _all(name: x509.Name, oid: ObjectIdentifier) -> tuple[str, ...]:
    return tuple(
        a.value if isinstance(a.value, str) else a.value.decode("utf-8", "replace")
        for a in name.get_attributes_for_oid(oid)
    )


def _build(
    *,
    subject: x509.Name,
    issuer: x509.Name | None,
    source: str,
    uris: tuple[str, ...] = (),
    dns: tuple[str, ...] = (),
    ips: tuple[IPAddress, ...] = (),
    serial: int | None = None,
    fingerprint: str | None = None,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    spiffe_id: str | None = None,
    spiffe_known: bool = False,
) -> ClientIdentity:
    if not len(subject) and not uris and not dns:
        # A certificate with neither subject nor SAN is refused over TLS (it names nobody);
        # a proxy's fields that name nobody are that certificate, or fields it emptied.
        raise malformed("the proxy's fields name nobody (no subject, no URI or DNS name)")
    if not spiffe_known:
        spiffe_id = spiffe_id_of(uris)
    return ClientIdentity(
        subject=subject.rfc4514_string(),
        common_name=_first(subject, NameOID.COMMON_NAME),
        organization=_first(subject, NameOID.ORGANIZATION_NAME),
        organizations=_all(subject, NameOID.ORGANIZATION_NAME),
        organizational_units=_all(subject, NameOID.ORGANIZATIONAL_UNIT_NAME),
        dns_names=dns,
        uris=uris,
        emails=(),
        ip_addresses=ips,
        spiffe_id=spiffe_id,
        issuer=issuer.rfc4514_string() if issuer is not None else "",
        serial_number=serial,
        fingerprint_sha256=fingerprint,
        not_before=not_before,
        not_after=not_after,
        certificate=None,
        chain=(),
        source=source,
        verified_by="proxy",
        subject_name=subject,
        issuer_name=issuer,
    )


_OWS = " \t"  # only ASCII blanks are trimmed: "ab\u00a0" is not "ab"


def _hex_digest(value: str) -> str:
    value = value.strip(_OWS)
    v = value.replace(":", "")
    if len(v) == 64 and all(c in "0123456789abcdefABCDEF" for c in v):
        return v.lower()
    try:  # GCP sends the SHA-256 fingerprint base64-encoded, sometimes without padding
        raw = base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise malformed("the proxy's certificate fingerprint is not a SHA-256 digest")
    return raw.hex()


def _serial(value: str) -> int:
    # int() reads any Unicode digit ("\uff11" is 1) and "_": ASCII hex digits only.
    v: str | None = value.strip(_OWS)
    if v and ":" in v:
        v = colon_hex(v)
        if v is None:
            raise malformed("the proxy's serial number has a group that is not one byte")
    if not v or any(c not in "0123456789abcdefABCDEF" for c in v):
        raise malformed("the proxy's serial number is not hexadecimal")
    serial = int(v, 16)
    if serial == 0:
        # A certificate with serial 0 is refused over TLS, and deny_serials refuses 0 as an
        # entry that denies nothing: an identity holding it could never be deny-listed.
        raise malformed("the proxy's serial number is zero")
    if serial.bit_length() > 159:
        # A certificate's serial is at most 20 octets as a DER INTEGER (sign bit included):
        # path validation refuses a longer one over TLS (RFC 5280 4.1.2.2).
        raise malformed("the proxy's serial number is longer than 20 octets")
    return serial


def identity_from_xfcc(element: XFCCElement, source: str) -> ClientIdentity:
    """Istio sidecar element (``URI``/``Subject``/``DNS``, no ``Cert``)."""
    if element.quoted_names:
        # Envoy writes URI and DNS SANs as they are: URI="spiffe://td/admin" (or with blanks
        # around it) is a SAN whose text holds them, which a certificate's reading refuses.
        raise malformed(
            "x-forwarded-client-cert quotes a URI or DNS name, or puts blanks around it "
            "(Envoy writes neither)"
        )
    return _build(
        subject=parse_dn(element.subject or ""),
        issuer=parse_dn(element.issuer) if element.issuer else None,
        source=source,
        uris=element.uri,
        dns=element.dns,
        # Envoy's own spelling only, as with a Cert: _hex_digest also reads GCP's forms.
        fingerprint=hash_hex(element.hash) if element.hash is not None else None,
    )


def _iso(value: str) -> datetime:
    value = value.strip(_OWS)
    if not value.isascii():
        raise malformed("the proxy's validity is not an ISO 8601 timestamp")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise malformed("the proxy's validity is not an ISO 8601 timestamp") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _validity(value: str) -> tuple[datetime, datetime]:
    """ALB's ``NotBefore=<ISO 8601>;NotAfter=<ISO 8601>``: each key once, both present, and a
    window that ends after it starts (anything else is not what the load balancer writes)."""
    window: dict[str, datetime] = {}
    for part in value.split(";"):
        key, eq, moment = part.partition("=")
        key = key.strip(_OWS).lower()
        if not key and not eq:
            continue  # a trailing ';'
        if key not in ("notbefore", "notafter") or key in window:
            raise malformed("the load balancer's validity is not one NotBefore and one NotAfter")
        window[key] = _iso(moment)
    if len(window) != 2:
        raise malformed("the load balancer's validity is not one NotBefore and one NotAfter")
    return _window(window["notbefore"], window["notafter"])


def _window(not_before: datetime, not_after: datetime) -> tuple[datetime, datetime]:
    if not_after < not_before:
        raise malformed("the proxy's validity ends before it starts")
    return not_before, not_after


def identity_from_aws(fields: dict[str, str], source: str) -> ClientIdentity:
    """AWS ALB verify mode: ``-Subject``, ``-Issuer`` (RFC 2253), ``-Serial-Number`` (hex),
    ``-Validity`` (``NotBefore=...;NotAfter=...``)."""
    if "subject" not in fields:
        raise malformed("the load balancer sent no subject")
    not_before = not_after = None
    if "validity" in fields:
        not_before, not_after = _validity(fields["validity"])
    return _build(
        subject=parse_dn(fields["subject"]),
        issuer=parse_dn(fields["issuer"]) if "issuer" in fields else None,
        source=source,
        serial=_serial(fields["serial"]) if "serial" in fields else None,
        not_before=not_before,
        not_after=not_after,
    )


def _b64_text_list(value: str) -> tuple[str, ...]:
    out = []
    for item in value.split(","):
        item = item.strip(_OWS)
        if item:
            out.append(_b64(item).decode("utf-8", "strict"))
    return tuple(out)


def _b64(value: str) -> bytes:
    try:
        return base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise malformed("the load balancer's field is not base64") from None


def identity_from_gcp(fields: dict[str, str], source: str) -> ClientIdentity:
    """GCP load balancer custom headers: ``{client_cert_*}`` variables.

    GCP lists the SPIFFE ID apart from the other URI SANs (``client_cert_uri_sans`` leaves it
    out), so the certificate's URIs are both together. The SPIFFE ID is the one GCP took as
    such, and only when it is the certificate's one URI SAN (X.509-SVID); a ``spiffe://`` URI
    in the list is one GCP did not take, and names no SPIFFE ID. Any ``client_cert_error``
    refuses: GCP reports there, and only there, a field it emptied for exceeding its size.
    """
    if fields.get("chain_verified", "").strip(_OWS).lower() != "true":
        raise malformed("the load balancer did not verify the client certificate chain")
    error = fields.get("error", "").strip(_OWS)
    if error:
        raise malformed(f"the load balancer reported a client certificate error: {error[:80]!r}")
    try:
        listed = _b64_text_list(fields.get("uri", ""))
        dns = _b64_text_list(fields.get("dns", ""))
    except UnicodeDecodeError:
        raise malformed("the load balancer's SAN list is not UTF-8") from None
    subject = _der_name(_b64(fields["subject"].strip(_OWS))) if "subject" in fields else None
    issuer = _der_name(_b64(fields["issuer"].strip(_OWS))) if "issuer" in fields else None
    spiffe = fields.get("spiffe", "").strip(_OWS)
    uris = (spiffe, *listed) if spiffe else listed
    not_before = _iso(fields["not_before"]) if "not_before" in fields else None
    not_after = _iso(fields["not_after"]) if "not_after" in fields else None
    if (not_before is None) != (not_after is None):
        raise malformed("the load balancer forwarded one end of the validity window")
    if not_before is not None and not_after is not None:
        _window(not_before, not_after)
    return _build(
        subject=subject if subject is not None else x509.Name([]),
        issuer=issuer,
        source=source,
        uris=uris,
        dns=dns,
        serial=_serial(fields["serial"]) if fields.get("serial", "").strip(_OWS) else None,
        fingerprint=_hex_digest(fields["fingerprint"]) if "fingerprint" in fields else None,
        not_before=not_before,
        not_after=not_after,
        spiffe_id=spiffe_id_of((spiffe,)) if spiffe and not listed else None,
        spiffe_known=True,
    )


# -- a bare X.509 Name in DER (GCP sends the subject and issuer that way) -----------------
# UTF8String, PrintableString, IA5String, T61String, BMPString
_STRING_TAGS = frozenset({0x0C, 0x13, 0x16, 0x14, 0x1E})


def _der_name(data: bytes) -> x509.Name:
    try:
        rdns: list[x509.RelativeDistinguishedName] = []
        for rdn in _der.read_name(data, 0, len(data)):
            attrs: list[x509.NameAttribute[str]] = []
            for oid, vtag, raw in rdn:
                if vtag not in _STRING_TAGS:
                    raise ValueError("bad attribute")
                text = raw.decode("utf-16-be" if vtag == 0x1E else "utf-8")
                attrs.append(x509.NameAttribute(ObjectIdentifier(_der.decode_oid(oid)), text))
            rdns.append(x509.RelativeDistinguishedName(attrs))
        return x509.Name(rdns)
    except (ValueError, IndexError, UnicodeDecodeError, TypeError):
        raise malformed("the load balancer's distinguished name is not a DER Name") from None
