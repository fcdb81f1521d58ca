"""Envoy's ``x-forwarded-client-cert`` (XFCC) header: grammar, decoding, encoding.

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
from dataclasses import dataclass

from mtlsauth._errors import MTLSAuthError
from mtlsauth._forwarded_formats import malformed, url_pem

__all__ = ["XFCCElement", "decode_element", "encode_element", "parse_xfcc"]

_SINGLE = frozenset({"hash", "cert", "chain", "subject", "issuer"})
_OWS = " \t"


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

    @property
    def has_certificate(self) -> bool:
        return bool(self.cert or self.chain)

    @property
    def has_identity(self) -> bool:
        return bool(self.uri or self.subject or self.dns)


def _quoted(text: str, i: int) -> tuple[str, int]:
    """Read a quoted value starting after the opening quote at ``text[i-1]``.

    The value is kept exactly as written: Envoy puts the RFC 2253 subject between the quotes
    as it is (``Subject="CN=a \\"b\\",O=Acme\\, Inc."``), escapes included, and a DN parser
    must see those escapes. A backslash protects the character after it, so the closing quote
    is the first ``"`` not preceded by an odd run of backslashes; an escaped quote never ends
    the value (and cannot start a new pair).
    """
    n = len(text)
    start = i
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == '"':
            return text[start:i], i + 1
        i += 1
    raise malformed("unterminated quoted value in x-forwarded-client-cert")


def parse_xfcc(text: str) -> list[list[tuple[str, str]]]:
    """Split an XFCC value into elements of (lower-case key, value) pairs."""
    stripped = text.lstrip(_OWS)
    if stripped[:1] in ("[", "{"):
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
        eq = i
        while eq < n and text[eq] not in '=;,"':
            eq += 1
        key = text[i:eq].strip(_OWS).lower()
        if eq >= n or text[eq] != "=" or not key or not key.isascii() or not key.isalnum():
            raise malformed("malformed key=value pair in x-forwarded-client-cert")
        i = eq + 1
        if i < n and text[i] == '"':
            value, i = _quoted(text, i + 1)
            while i < n and text[i] in _OWS:
                i += 1
            if i < n and text[i] not in ";,":
                raise malformed("unexpected text after a quoted x-forwarded-client-cert value")
        else:
            end = i
            while end < n and text[end] not in ";,":
                if text[end] == '"':
                    raise malformed("stray quote in an unquoted x-forwarded-client-cert value")
                end += 1
            value, i = text[i:end].strip(_OWS), end
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
    for key, value in pairs:
        if key in _SINGLE:
            if key in fields:
                raise malformed(f"repeated {key!r} in one x-forwarded-client-cert element")
            fields[key] = value
        elif key == "by":
            by.append(value)
        elif key == "uri":
            if value:  # Envoy emits a bare "URI=" when the certificate has no URI SAN
                uri.append(value)
        elif key == "dns" and value:
            dns.append(value)
        # unknown keys (added by newer Envoy versions) are ignored
    return XFCCElement(
        by=tuple(by),
        hash=fields.get("hash"),
        cert=fields.get("cert"),
        chain=fields.get("chain"),
        subject=fields.get("subject"),
        issuer=fields.get("issuer"),
        uri=tuple(uri),
        dns=tuple(dns),
    )


def select_element(text: str, index: int) -> XFCCElement:
    """Parse ``text`` and return element ``index`` (``-1``: the last one)."""
    elements = parse_xfcc(text)
    try:
        return _element(elements[index])
    except IndexError:
        raise malformed("x-forwarded-client-cert has fewer elements than configured") from None


def check_hash(element: XFCCElement, leaf: bytes) -> None:
    """Refuse a ``Hash`` that is not the SHA-256 of the leaf actually forwarded."""
    if element.hash is None:
        return
    want = element.hash.strip(_OWS).lower()
    if len(want) != 64 or any(c not in "0123456789abcdef" for c in want):
        raise malformed("x-forwarded-client-cert Hash is not a SHA-256 hex digest")
    if not hmac.compare_digest(want, hashlib.sha256(leaf).hexdigest()):
        raise malformed("x-forwarded-client-cert Hash does not match its certificate")


def decode_element(element: XFCCElement) -> list[bytes]:
    """The DER chain (leaf first) of an element that carries ``Cert`` and/or ``Chain``."""
    cert = url_pem(element.cert) if element.cert else None
    if cert is not None and len(cert) != 1:
        raise malformed("x-forwarded-client-cert Cert holds more than one certificate")
    chain = url_pem(element.chain) if element.chain else None
    if chain is not None and cert is not None and chain[0] != cert[0]:
        raise malformed("x-forwarded-client-cert Chain does not start with its Cert")
    ders = chain if chain is not None else cert
    if not ders:
        raise malformed("x-forwarded-client-cert element has no certificate")
    check_hash(element, ders[0])
    return ders


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
    from mtlsauth._forwarded_formats import encode_url_pem

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
