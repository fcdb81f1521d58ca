"""Envoy's ``x-forwarded-client-cert`` (XFCC) header: grammar and decoding.

Grammar (envoyproxy/envoy ``docs/root/configuration/http/http_conn_man/headers.rst``): a
comma-separated list of *elements*, one per proxy that appended one; each element is a
semicolon-separated list of ``key=value`` pairs. Keys are case-insensitive; a value holding
``,``, ``;`` or ``=`` should be double-quoted, with ``"`` escaped as ``\\"``. Envoy itself
leaves ``By=`` and ``URI=`` unquoted even when they contain ``=``
(``// TODO(myidpt): Handle the special characters in By and URI fields``), so a pair splits
on its *first* ``=`` only. It writes ``Subject="<RFC 2253 DN>"`` with the DN as it is: the
DN's own escapes (``\\"``, ``\\,``, ``\\\\``) are the only ones, so a quoted value is kept
exactly as written and ends at the first quote that no backslash escapes.

The last element is the one the nearest (trusted) proxy appended; earlier ones came from
upstream hops and are only as trustworthy as those hops, so the default reads the last.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

from mtlsauth._errors import MTLSAuthError
from mtlsauth._forwarded._formats import malformed, url_pem

__all__ = ["XFCCElement", "decode_element", "hash_hex", "parse_xfcc"]

_SINGLE = frozenset({"hash", "cert", "chain", "subject", "issuer"})
_OWS = " \t"
_SHA256_HEX = re.compile("[0-9a-f]{64}")
_JSON_START = re.compile(r"[ \t]*[\[{]")
_KEY_END = re.compile('[=;,"]')
_VALUE_END = re.compile('[;,"]')


@dataclass(frozen=True, slots=True)
class XFCCElement:
    """One XFCC element, values as written (quotes removed), not yet percent-decoded."""

    by: tuple[str, ...] = ()
    hash: str | None = None
    cert: str | None = None
    chain: str | None = None
    subject: str | None = None
    issuer: str | None = None
    uri: tuple[str, ...] = ()
    dns: tuple[str, ...] = ()
    # A URI or DNS value written between quotes or with blanks around it: Envoy writes both
    # as the SAN is, so such a value is a SAN whose own text holds them (or not Envoy's).
    quoted_names: bool = False

    @property
    def has_certificate(self) -> bool:
        return bool(self.cert or self.chain)

    @property
    def has_identity(self) -> bool:
        return bool(self.uri or self.subject or self.dns or self.quoted_names)


def _quoted(text: str, i: int) -> tuple[str, int]:
    """Read a quoted value starting after the opening quote at ``text[i-1]``.

    The value is kept exactly as written: Envoy puts the RFC 2253 subject between the quotes
    as it is (``Subject="CN=a \\"b\\",O=Acme\\, Inc."``), escapes included, and a DN parser
    must see those escapes. A backslash protects the character after it, so the closing quote
    is the first ``"`` not preceded by an odd run of backslashes; an escaped quote never ends
    the value (and cannot start a new pair).
    """
    # Jump from backslash to backslash with find() instead of a loop per character: a
    # quoted Cert or Chain is thousands of characters and holds no backslash at all.
    start = i
    quote = -1
    while True:
        if quote < i:
            quote = text.find('"', i)
            if quote < 0:
                break
        slash = text.find("\\", i, quote)
        if slash < 0:
            return text[start:quote], quote + 1
        i = slash + 2  # the escaped character, whatever it is, never ends the value
    raise malformed("unterminated quoted value in x-forwarded-client-cert")


_ALWAYS_QUOTED = frozenset({"cert", "chain"})
# Keys Envoy writes unquoted and untrimmed whatever they hold: a value quoted, or with blanks
# around it, is kept under the key with a '"' appended (no key read from the header holds
# one), for XFCCElement.quoted_names.
_NEVER_QUOTED = frozenset({"uri", "dns"})
"""Keys whose values Envoy always double-quotes (their URL-encoded PEM is long)."""


def parse_xfcc(text: str) -> list[list[tuple[str, str]]]:
    """Split an XFCC value into elements of (lower-case key, value) pairs."""
    if _JSON_START.match(text) is not None:
        raise malformed("JSON-format x-forwarded-client-cert is not supported")
    elements: list[list[tuple[str, str]]] = []
    pairs: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in _OWS:
            i += 1
        if pairs:  # after a ';': tolerate a trailing one (Azure writes "Hash=..;Cert=..;")
            if i >= n:
                elements.append(pairs)
                return elements
            if text[i] == ",":
                elements.append(pairs)
                pairs = []
                i += 1
                continue
        stop = _KEY_END.search(text, i)
        eq = n if stop is None else stop.start()
        key = text[i:eq].lower()  # Envoy writes no space around '=' (" Cert =" is not its)
        if eq >= n or text[eq] != "=" or not key or not key.isascii() or not key.isalnum():
            raise malformed("malformed key=value pair in x-forwarded-client-cert")
        i = eq + 1
        if i < n and text[i] == '"':
            value, i = _quoted(text, i + 1)
            if key in _NEVER_QUOTED:
                key += '"'
            while i < n and text[i] in _OWS:
                i += 1
            if i < n and text[i] not in ";,":
                raise malformed("unexpected text after a quoted x-forwarded-client-cert value")
        else:
            stop = _VALUE_END.search(text, i)
            end = n if stop is None else stop.start()
            if end < n and text[end] == '"':
                raise malformed("stray quote in an unquoted x-forwarded-client-cert value")
            if key in _ALWAYS_QUOTED:
                raise malformed(f"unquoted {key!r} in x-forwarded-client-cert (Envoy quotes it)")
            value, i = text[i:end].strip(_OWS), end
            if key in _NEVER_QUOTED and len(value) != end - eq - 1:
                key += '"'
        pairs.append((key, value))
        if i >= n:
            elements.append(pairs)
            return elements
        sep = text[i]
        i += 1
        if sep == ",":
            elements.append(pairs)
            pairs = []


def _element(pairs: list[tuple[str, str]]) -> XFCCElement:
    fields: dict[str, str] = {}
    by: list[str] = []
    uri: list[str] = []
    dns: list[str] = []
    quoted_names = False
    for key, value in pairs:
        if key in _SINGLE:
            if key in fields:
                raise malformed(f"repeated {key!r} in one x-forwarded-client-cert element")
            fields[key] = value
        elif key == "by":
            by.append(value)
        elif key == "uri":
            uri.append(value)
        elif key == "dns" and value:
            dns.append(value)
        elif key in ('uri"', 'dns"'):
            quoted_names = True
        # unknown keys (added by newer Envoy versions) are ignored
    if uri == [""]:
        # Envoy's bare "URI=" when the certificate has no URI SAN. An empty value beside others
        # is an empty URI SAN, kept as the certificate holds it: dropping it would leave one
        # URI, read as the X.509-SVID's SPIFFE ID, where the certificate has two.
        uri = []
    return XFCCElement(
        by=tuple(by),
        hash=fields.get("hash"),
        cert=fields.get("cert"),
        chain=fields.get("chain"),
        subject=fields.get("subject"),
        issuer=fields.get("issuer"),
        uri=tuple(uri),
        dns=tuple(dns),
        quoted_names=quoted_names,
    )


def select_element(text: str, index: int) -> XFCCElement:
    """Parse ``text`` and return element ``index`` (``-1``: the last one)."""
    pairs = _select_fast(text, index)
    if pairs is None:
        elements = parse_xfcc(text)
        try:
            pairs = elements[index]
        except IndexError:
            raise malformed("x-forwarded-client-cert has fewer elements than configured") from None
    return _element(pairs)


# The fast path reads the header as Envoy writes it: no backslash anywhere, a quote right
# after "=" and a ";" or "," right after the closing quote, printable ASCII outside quotes.
# Cut at every quote, the text outside the quotes (the skeleton, each quoted value left as
# '""') is a few hundred characters that one regular expression checks against the whole
# grammar; only the selected element is then taken apart. Unquoted values cannot hold
# ';', ',' or '"', so in a skeleton that matches, every ',' ends an element, every ';' ends
# a pair and every '""' is a quoted value, in order.
_FAST_UNQUOTED = r"[\t -!#-+\--:<-~]*"  # printable ASCII and tab, minus '"' ',' ';'
_FAST_PAIR = (
    r'[ \t]*(?:[A-Za-z0-9]+=""'
    rf"|(?![Cc][Ee][Rr][Tt]=|[Cc][Hh][Aa][Ii][Nn]=)[A-Za-z0-9]+={_FAST_UNQUOTED})"
)
_FAST_HEADER = re.compile(rf"{_FAST_PAIR}(?:[;,]{_FAST_PAIR})*")


def _select_fast(text: str, index: int) -> list[tuple[str, str]] | None:
    """``parse_xfcc(text)[index]`` for a header written as Envoy writes it; else None.

    Accepts a subset of what ``parse_xfcc`` accepts and gives the same pairs (the
    differential tests in ``tests/test_xfcc_decoding.py`` hold it to that); None sends
    the header to ``parse_xfcc``, which reads it or refuses it with its reason.
    """
    if "\\" in text:
        return None
    parts = text.split('"')
    if not len(parts) & 1:
        return None
    skeleton = '""'.join(parts[::2])
    if _FAST_HEADER.fullmatch(skeleton) is None:
        return None
    elements = skeleton.split(",")
    if not -len(elements) <= index < len(elements):
        return None
    index %= len(elements)
    quoted = iter(parts[2 * sum(e.count('""') for e in elements[:index]) + 1 :: 2])
    pairs: list[tuple[str, str]] = []
    for pair in elements[index].split(";"):
        key, _, value = pair.partition("=")
        key = key.lstrip(_OWS).lower()
        if value == '""':
            pairs.append((key + '"' if key in _NEVER_QUOTED else key, next(quoted)))
        else:
            trimmed = value.strip(_OWS)
            if key in _NEVER_QUOTED and len(trimmed) != len(value):
                key += '"'
            pairs.append((key, trimmed))
    return pairs


def hash_hex(value: str) -> str:
    """An XFCC ``Hash`` as Envoy writes it (lower-case hex of a SHA-256), else refused."""
    if _SHA256_HEX.fullmatch(value) is None:
        raise malformed("x-forwarded-client-cert Hash is not a lower-case SHA-256 hex digest")
    return value


def check_hash(element: XFCCElement, leaf: bytes) -> None:
    """Refuse a ``Hash`` that is not the SHA-256 of the leaf actually forwarded."""
    if element.hash is None:
        return
    want = hash_hex(element.hash)
    if not hmac.compare_digest(want, hashlib.sha256(leaf).hexdigest()):
        raise malformed("x-forwarded-client-cert Hash does not match its certificate")


def _chain(text: str, cert_text: str | None, cert: list[bytes] | None) -> list[bytes]:
    """``url_pem(text)``, without decoding twice the ``Cert`` that ``Chain`` starts with.

    Envoy writes ``Chain`` as ``Cert`` followed by the rest of the chain. When ``text``
    starts with the text of a ``Cert`` that decoded to one certificate and ends in its
    escaped final line feed, that prefix ends on an escape boundary and its PEM is one
    complete block with its LF, so decoding the rest alone (which must itself be whole
    blocks) and prepending the certificate gives what decoding the whole would. Any other
    case (no such prefix, no final LF, a rest that is not whole blocks) decodes the whole.
    """
    if (
        cert is not None
        and cert_text
        and cert_text.endswith(("%0A", "%0a"))
        and len(text) > len(cert_text)
        and text.startswith(cert_text)
    ):
        try:
            return cert + url_pem(text[len(cert_text) :])
        except MTLSAuthError:
            pass  # whitespace only, or malformed: the whole value gives the exact answer
    return url_pem(text)


def decode_element(element: XFCCElement) -> list[bytes]:
    """The DER chain (leaf first) of an element that carries ``Cert`` and/or ``Chain``."""
    cert = url_pem(element.cert) if element.cert else None
    if cert is not None and len(cert) != 1:
        raise malformed("x-forwarded-client-cert Cert holds more than one certificate")
    chain = _chain(element.chain, element.cert, cert) if element.chain else None
    if chain is not None and cert is not None and chain[0] != cert[0]:
        raise malformed("x-forwarded-client-cert Chain does not start with its Cert")
    ders = chain if chain is not None else cert
    if not ders:
        raise malformed("x-forwarded-client-cert element has no certificate")
    check_hash(element, ders[0])
    return ders
