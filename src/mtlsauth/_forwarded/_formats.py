"""Exact decoders for the certificate encodings proxies put in headers.

Each decoder takes the raw header text and returns DER certificates, or raises
``CertificateInvalid(code="certificate_malformed")``; nothing else escapes. The encoders
(byte for byte what each proxy sends) are tooling: ``mtlsauth.testing._encode``.

Sources for every format are in ``docs/proxies.md``; the short version:

* ``url-pem``: percent-encoded PEM. nginx and Envoy escape ``+`` as ``%2B``; AWS ALB and
  Apache's ``escape:`` leave ``+ = /`` raw, so decode with ``unquote``, never ``unquote_plus``.
* ``pem``: PEM whose line breaks became spaces (Apache mod_headers, h11's obs-fold) or tab
  folds (nginx ``$ssl_client_cert``).
* ``der-base64``: base64 of one DER certificate, or of several concatenated (HAProxy
  ``ssl_c_chain_der``), split by their ASN.1 lengths.
* ``traefik``: base64 DER certificates joined by ``,``; each percent-encoded up to Traefik 2.9.1.
* ``rfc9440``: RFC 8941 byte sequences ``:base64:``; ``Client-Cert-Chain`` is a list of them.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from urllib.parse import quote, unquote

from mtlsauth._encoding import (
    MAX_CHAIN_CERTS,
    _der_length,
    b64decode_strict,
    pad_bits_clear,
    pem_to_der_list,
    split_der,
)
from mtlsauth._errors import CertificateInvalid

__all__ = [
    "DECODERS",
    "ENCODINGS",
    "check_certificate_shape",
    "decode_rfc9440_list",
    "is_absent",
    "malformed",
    "url_pem",
]

ENCODINGS = ("url-pem", "pem", "der-base64", "traefik", "xfcc", "rfc9440")

# Checked with regular expressions: they run in C, and decoding runs on every cache miss.
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
# %41-%5A, %61-%7A (letters), %30-%39 (digits), %2D %2E %5F %7E ("-" "." "_" "~")
_UNRESERVED_ESCAPE = re.compile(r"%(?:[46][1-9A-Fa-f]|[57][0-9Aa]|3[0-9]|2[DEde]|5[Ff]|7[Ee])")
_SF_BASE64 = re.compile(r"[A-Za-z0-9+/=]+")
# An RFC 8941 bare item other than a string (RFC 9651 adds dates and display strings):
# decimal, integer, token, byte sequence, boolean, date, display string.
_SF_BARE_ITEM = re.compile(
    r"-?[0-9]{1,12}\.[0-9]{1,3}(?![0-9.])"
    r"|-?[0-9]{1,15}(?![0-9.])"
    r"|[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*"
    r"|:[A-Za-z0-9+/=]*:"
    r"|\?[01]"
    r"|@-?[0-9]{1,15}(?![0-9.])"
    r'|%"(?:[ !#$&-~]|%[0-9a-f]{2})*"'
)
# Apache's "(null)"; Caddy's placeholder when the replacer did not know it (older Caddy).
_CADDY_PLACEHOLDER = "{http.request.tls.client."


def malformed(detail: str) -> CertificateInvalid:
    return CertificateInvalid(detail, code="certificate_malformed")


def is_absent(value: str) -> bool:
    """True for the values real proxies send when there is no client certificate."""
    v = value.strip()
    return not v or v == "(null)" or (v.startswith(_CADDY_PLACEHOLDER) and v.endswith("}"))


def _ascii(value: str, what: str) -> bytes:
    try:
        return value.encode("ascii")
    except UnicodeEncodeError:
        raise malformed(f"{what} holds non-ASCII characters") from None


def _percent_decode(value: str, what: str) -> str:
    raw = _ascii(value, what)
    i = raw.find(b"%")
    if i != -1:
        # every '%' must start a %XX escape: unquote would pass "%zz" through
        if _BAD_ESCAPE.search(value, i):
            raise malformed(f"{what} has an invalid percent-escape")
        # No encoder escapes a letter, digit or "-._~": a second spelling of the same value
        # is someone else's doing (and another cache key).
        if _UNRESERVED_ESCAPE.search(value, i):
            raise malformed(f"{what} percent-encodes a character no proxy escapes")
    try:
        # unquote, not unquote_plus: AWS ALB and Apache leave '+' raw inside base64.
        return unquote(value, encoding="ascii", errors="strict")
    except UnicodeDecodeError:
        raise malformed(f"{what} decodes to non-ASCII bytes") from None


# What an encoder may leave unescaped: nginx keeps RFC 3986 unreserved characters, AWS ALB
# and Apache's ``escape:`` also keep ``+ = /``. Anything else raw (a space, a tab, a quote)
# was never percent-encoded by a proxy.
_URL_PEM_RAW = re.compile(r"[A-Za-z0-9\-._~+=/%]*")
# PEM exactly as OpenSSL writes it: BEGIN/END lines around base64 lines, LF line ends, no
# spaces inside a line, no CR or tabs, no blank lines; only the last LF is optional (nginx
# keeps it, some encoders drop it). Lines end in LF, outside the class: no backtracking blow-up.
_PEM_BLOCK = r"-----BEGIN CERTIFICATE-----\n(?:[A-Za-z0-9+/=]+\n)+-----END CERTIFICATE-----"
_PEM_LINES = re.compile(rf"(?:{_PEM_BLOCK}\n)*{_PEM_BLOCK}\n?")


def url_pem(value: str) -> list[bytes]:
    """Percent-encoded PEM, one or more certificates (nginx, Envoy, AWS ALB, WSO2)."""
    ders = _url_pem_fast(value)
    return ders if ders is not None else _url_pem_strict(value)


# The fast path reads only the spelling nginx and Envoy write: every "+ / = space LF"
# escaped, nothing else escaped, OpenSSL's 64-column PEM. binascii.a2b_qp decodes "=XX"
# in C; once every "%" has become "=" and is known to start one of these escapes (and no
# raw "=", LF or space is left), its soft line breaks, "==" and lone "=" cases cannot
# occur, so what it does is exactly percent-decoding.
_PERCENT_AS_QP = bytes.maketrans(b"%", b"=")
_QP_OTHER_ESCAPE = re.compile(rb"=(?!0[Aa]|2[0BbFf]|3[Dd])")
_PEM_BEGIN = b"-----BEGIN CERTIFICATE-----\n"
_PEM_END = b"\n-----END CERTIFICATE-----"


def _url_pem_fast(value: str) -> list[bytes] | None:
    """What ``_url_pem_strict(value)`` returns, for the common spelling; else None.

    Accepts a subset of what the strict decoder accepts and gives the same certificates
    (the differential tests in ``tests/test_xfcc_decoding.py`` hold it to that); None
    sends the value to the strict decoder, which accepts it or refuses it with its reason.
    """
    try:
        raw = value.encode("ascii")
    except UnicodeEncodeError:
        return None
    if b"=" in raw or b" " in raw or b"\n" in raw:
        return None
    escaped = raw.translate(_PERCENT_AS_QP)
    if _QP_OTHER_ESCAPE.search(escaped) is not None:
        return None
    text = binascii.a2b_qp(escaped)
    ders: list[bytes] = []
    pos, n = 0, len(text)
    while text.startswith(_PEM_BEGIN, pos):
        start = pos + len(_PEM_BEGIN)
        end = text.find(_PEM_END, start)
        if end < 0:
            return None
        body = text[start:end]
        # Lines of exactly 64 characters and a last one of 1 to 64: an LF at every 65th
        # position and nowhere else, none at either end.
        breaks = body[64::65]
        if (
            not body
            or body[-1] == 0x0A
            or breaks.count(b"\n") != len(breaks)
            or body.count(b"\n") != len(breaks)
        ):
            return None
        compact = body.translate(None, b"\n")
        try:  # the very call b64decode_strict makes on the body without its line feeds
            ders.append(base64.b64decode(compact, validate=True))
        except (binascii.Error, ValueError):
            return None
        if not pad_bits_clear(compact):
            return None
        pos = end + len(_PEM_END)
        if pos == n or (pos == n - 1 and text[pos] == 0x0A):
            return ders
        if text[pos] != 0x0A:
            return None
        pos += 1
    return None


def _url_pem_strict(value: str) -> list[bytes]:
    """Percent-encoded PEM, every spelling a proxy writes, refused with the reason."""
    if not _URL_PEM_RAW.fullmatch(value):
        raise malformed("URL-encoded PEM holds a character no proxy leaves unescaped")
    text = _percent_decode(value, "URL-encoded PEM")
    if not _PEM_LINES.fullmatch(text):
        raise malformed(
            "URL-encoded PEM is not PEM as a proxy writes it (stray characters or lines)"
        )
    return pem_to_der_list(text.encode("ascii"))


# Apache turns each LF into a space, nginx's $ssl_client_cert folds with LF + TAB (which h11
# joins into one space), mod_wsgi's environment keeps real LFs.
_PEM_TEXT = re.compile(r"[A-Za-z0-9+/=\- \t\n]*")


def pem(value: str) -> list[bytes]:
    """PEM whose newlines may have become spaces or tab folds (Apache, nginx, Gluu)."""
    if not _PEM_TEXT.fullmatch(value):
        raise malformed("PEM header holds a character outside PEM text")
    return pem_to_der_list(_ascii(value, "PEM header"))


def _b64_exact(value: str, what: str) -> bytes:
    """Canonical standard base64, as proxies write it: no whitespace, padding, canonical bits."""
    raw = b64decode_strict(value, what=what)
    # Encoding back and comparing refuses, in one step, whitespace anywhere (which the
    # decoder skipped), missing or misplaced padding and non-zero padding bits.
    if base64.b64encode(raw).decode("ascii") != value:
        raise malformed(f"{what} is not canonical base64 (padding or trailing bits)")
    return raw


def der_base64(value: str) -> list[bytes]:
    """Base64 of one DER certificate or several concatenated (HAProxy, Caddy, Azure)."""
    return split_der(_b64_exact(value, "base64 DER header"))


def traefik(value: str) -> list[bytes]:
    """Traefik PassTLSClientCert ``pem: true``: base64 DER items joined by commas."""
    if "%" in value:
        # Traefik up to 2.9.1 (and 1.7) applied Go's url.QueryEscape to each certificate and
        # joined them with a raw ','; the whole value escaped (',' as %2C) reads the same.
        # Either way nothing of ``+ / =`` is left raw: a value escaped only in part, or with
        # both kinds of comma, was not written by Traefik.
        decoded = _percent_decode(value, "Traefik header")
        if value not in (quote(decoded, safe=","), quote(decoded, safe="")):
            raise malformed("Traefik header is percent-encoded only in part")
        value = decoded
    out: list[bytes] = []
    for item in value.split(","):
        if not item:
            raise malformed("empty certificate in the Traefik header")
        # Traefik writes each certificate as an item of its own: two DER certificates in
        # one item are not its output (and would be one more spelling of the chain).
        ders = split_der(_b64_exact(item, "Traefik certificate"))
        if len(ders) != 1:
            raise malformed("a Traefik item holds more than one certificate")
        out.append(ders[0])
        if len(out) > MAX_CHAIN_CERTS:
            raise malformed(f"more than {MAX_CHAIN_CERTS} certificates")
    return out


def check_certificate_shape(der: bytes) -> None:
    """Refuse DER that cannot be a certificate before anything else reads it.

    A certificate is ``SEQUENCE { tbsCertificate SEQUENCE, signatureAlgorithm SEQUENCE,
    signatureValue BIT STRING }`` filling its outer length exactly; an empty SEQUENCE or a
    certificate followed by stray bytes split out of a concatenated value stops here.
    """
    outer, pos = _der_length(der, 0)
    if pos + outer != len(der):
        raise malformed("not a DER certificate (its length is not the value's length)")
    for tag in (0x30, 0x30, 0x03):
        length, header = _der_length(der, pos, tag)
        pos += header + length
    if pos != len(der):
        raise malformed("not a DER certificate (its parts do not fill it exactly)")


def _sf_key_end(value: str, i: int) -> int:
    # RFC 8941 key: ( lcalpha / "*" ) *( lcalpha / DIGIT / "_" / "-" / "." / "*" )
    if i >= len(value) or not (value[i].islower() or value[i] == "*") or not value[i].isascii():
        raise malformed("bad structured-field parameter")
    i += 1
    while (
        i < len(value)
        and value[i].isascii()
        and (value[i].islower() or value[i] in "0123456789_-.*")
    ):
        i += 1
    return i


def _sf_string_end(value: str, i: int) -> int:
    """Index of the quote closing the sf-string that starts at ``value[i]``."""
    while i < len(value):
        c = value[i]
        if c == "\\":
            if value[i + 1 : i + 2] not in ('"', "\\"):
                raise malformed("bad escape in a structured-field string")
            i += 2
            continue
        if c == '"':
            return i
        if not " " <= c <= "~":
            raise malformed("a structured-field string holds a non-printable character")
        i += 1
    raise malformed("unterminated parameter string")


def _sf_base64_body(body: str) -> bool:
    """True when ``body`` is not empty and holds only base64 characters and ``=``."""
    # One pattern match, not a loop per character: a certificate is over a thousand.
    return _SF_BASE64.fullmatch(body) is not None


def _sf_byte_sequence(value: str, i: int) -> tuple[bytes, int]:
    """Parse ``:base64:`` plus any parameters at ``value[i]``; return (bytes, next index)."""
    if i >= len(value) or value[i] != ":":
        raise malformed("not a structured-field byte sequence")
    end = value.find(":", i + 1)
    if end == -1:
        raise malformed("unterminated structured-field byte sequence")
    body = value[i + 1 : end]
    if not _sf_base64_body(body):
        raise malformed("structured-field byte sequence is not base64")
    data = body.rstrip("=")
    # Padding may be missing (in part or whole), never more than the last group needs: an
    # encoder writes at most that, and base64 decoders refuse more.
    if "=" in data or len(body) - len(data) > -len(data) % 4:
        raise malformed("misplaced base64 padding")
    body = data
    try:  # RFC 8941 §4.2.7: parsers SHOULD NOT fail when '=' padding is missing
        raw = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise malformed("structured-field byte sequence is not valid base64") from None
    i = end + 1
    while i < len(value) and value[i] == ";":  # parameters are allowed and ignored
        i += 1
        while i < len(value) and value[i] == " ":
            i += 1
        i = _sf_key_end(value, i)
        if i < len(value) and value[i] == "=":
            if value[i + 1 : i + 2] == '"':  # an sf-string: \\ escapes only '"' and '\\'
                i = _sf_string_end(value, i + 2) + 1
                continue
            # Any other value is one bare item, whole: a stray character fails the field
            # (RFC 8941 §4.2), as it does for every parser the proxy in front may run.
            item = _SF_BARE_ITEM.match(value, i + 1)
            if item is None:
                raise malformed("bad structured-field parameter value")
            if value.startswith('%"', i + 1):  # RFC 9651: the escapes spell UTF-8
                try:
                    unquote(item.group()[2:-1], encoding="utf-8", errors="strict")
                except UnicodeDecodeError:
                    raise malformed("a display string is not UTF-8") from None
            i = item.end()
    return raw, i


def decode_rfc9440(value: str) -> list[bytes]:
    """RFC 9440 ``Client-Cert``: exactly one byte sequence holding the leaf's DER."""
    text = value.strip(" \t")
    raw, end = _sf_byte_sequence(text, 0)
    if end != len(text):
        raise malformed("Client-Cert must hold exactly one byte sequence")
    ders = split_der(raw)
    if len(ders) != 1:
        raise malformed("Client-Cert holds more than one certificate")
    return ders


def decode_rfc9440_list(value: str) -> list[bytes]:
    """RFC 9440 ``Client-Cert-Chain``: a list of byte sequences (OWS around commas)."""
    out: list[bytes] = []
    text = value.strip(" \t")
    i = 0
    while i < len(text):
        raw, i = _sf_byte_sequence(text, i)
        ders = split_der(raw)
        if len(ders) != 1:
            raise malformed("a Client-Cert-Chain item must hold one certificate")
        out.append(ders[0])
        if len(out) > MAX_CHAIN_CERTS:
            raise malformed(f"more than {MAX_CHAIN_CERTS} certificates")
        while i < len(text) and text[i] in " \t":
            i += 1
        if i == len(text):
            break
        if text[i] != ",":
            raise malformed("Client-Cert-Chain items must be separated by commas")
        i += 1
        while i < len(text) and text[i] in " \t":
            i += 1
        if i == len(text):
            raise malformed("trailing comma in Client-Cert-Chain")
    if not out:
        raise malformed("empty Client-Cert-Chain")
    return out


DECODERS: dict[str, Callable[[str], list[bytes]]] = {
    "url-pem": url_pem,
    "pem": pem,
    "der-base64": der_base64,
    "traefik": traefik,
    "rfc9440": decode_rfc9440,
}
