"""ForwardedCert: certificates forwarded in headers, believed only from trusted proxies.

The hot path (``extract``) only finds the configured headers, checks the peer against the
trusted networks (cached per peer string), counts copies and sizes, and builds the cache key
from the raw values. Percent-decoding, base64 and DER parsing happen in ``decode()``, which
the Verifier calls only on a cache miss.

Why one module of this size: ``ForwardedCert`` is one class (its decoders, presets, trust gate
and proxy-verified identities are the sibling modules); its length is the construction-time
validation of every field.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, NamedTuple

from mtlsauth._encoding import MAX_CHAIN_CERTS
from mtlsauth._errors import CertificateInvalid, UntrustedForwarder
from mtlsauth._forwarded._formats import (
    DECODERS,
    ENCODINGS,
    check_certificate_shape,
    decode_rfc9440_list,
    is_absent,
    malformed,
)
from mtlsauth._forwarded._presets import PRESETS, resolve_name
from mtlsauth._forwarded._trust import (
    UNIX_PEER,
    Network,
    header_name,
    match_peer,
    parse_proxies,
)
from mtlsauth._forwarded._verified import identity_from_aws, identity_from_gcp, identity_from_xfcc
from mtlsauth._forwarded._xfcc import XFCCElement, decode_element, select_element
from mtlsauth._identity import ClientIdentity
from mtlsauth._memo import BoundedMemo
from mtlsauth._types import Immutable, Presented

__all__ = ["ForwardedCert", "ForwardedValue"]

_IDENTITY_FIELDS = {
    "aws-alb": frozenset({"subject", "issuer", "serial", "validity"}),
    "gcp": frozenset(
        {"present", "chain_verified", "error", "fingerprint", "serial", "spiffe", "uri", "dns",
         "subject", "issuer", "not_before", "not_after"}
    ),
}  # fmt: skip
# What an absent-certificate marker (``is_absent``) can start with: nothing, "(" of "(null)",
# "{" of Caddy's placeholder, or any ASCII character ``str.strip`` removes before it looks
# (a form feed or a line break, not only a space or a tab). A value starting otherwise is a
# certificate (or malformed), so the hot path may take it without asking ``is_absent``.
_SENTINEL_START = frozenset(("", "(", "{", *(c for c in map(chr, range(128)) if c.isspace())))
_SENTINEL_START_BYTES = frozenset(ord(c) for c in _SENTINEL_START if c)  # "" is not a byte
_COMMA = ord(",")
_SINGLE_CERT = frozenset({"url-pem", "pem", "der-base64", "rfc9440"})
_PEER_CACHE_MAX = 4096
_XFCC_CACHE_MAX = 512
# The longest XFCC value memoised: an Envoy header with the client's Cert and a Chain of
# three RSA-4096 certificates is under 8 KB. The memo holds the value and its parsed
# element (substrings of it), so at most about 2 x 2 x 512 x 16 KB stay in memory however
# large ``max_size`` is; a longer value is parsed again on each request (linear work).
_XFCC_CACHE_MAX_KEY = 16 * 1024
_DECODE_ERRORS = (ValueError, TypeError, IndexError, KeyError, UnicodeError)
# Names a client sends (or a proxy consumes) on its own: a proxy passes them through or
# strips them, so a certificate carried there is the client's word, or never arrives.
_CLIENT_HEADERS = frozenset(
    {
        "accept", "accept-encoding", "accept-language", "authorization", "cache-control",
        "connection", "content-encoding", "content-length", "content-range", "content-type",
        "cookie", "date", "expect", "forwarded", "host", "if-match", "if-modified-since",
        "if-none-match", "if-range", "if-unmodified-since", "keep-alive", "max-forwards",
        "origin", "pragma", "proxy-authorization", "proxy-connection", "range", "referer",
        "set-cookie", "te", "trailer", "transfer-encoding", "upgrade", "user-agent", "via",
        "x-forwarded-for", "x-forwarded-host", "x-forwarded-port", "x-forwarded-proto",
        "x-real-ip",
    }
)  # fmt: skip


def _own_header(name: object, what: str) -> str:
    """A header name the proxy alone writes: valid, dash-separated, not a standard header."""
    lower = header_name(name, what)
    if "_" in lower:
        raise ValueError(
            f"{what} {name!r} contains an underscore: nginx, Apache, gunicorn and werkzeug drop"
            " such headers, and WSGI folds '_' and '-' into one key; use dashes"
        )
    if lower in _CLIENT_HEADERS:
        raise ValueError(
            f"{what} {name!r} is a standard header that the client sends itself (or that"
            " proxies consume); use a dedicated name such as X-SSL-Client-Cert"
        )
    return lower


class ForwardedValue(NamedTuple):
    """A certificate header taken from a trusted proxy, not yet decoded.

    A NamedTuple, not a dataclass: it is built on every request and a tuple is several
    times cheaper to construct than a frozen dataclass.

    Attributes:
        source: ``"header:<name as configured>"``.
        key: Cache-key material: the header names and raw values, nothing decoded.
        decode: Returns the DER chain (leaf first) or, for ``verified_by_proxy``, a
            proxy-verified ``ClientIdentity``; raises only ``CertificateInvalid``.
    """

    source: str
    key: bytes
    decode: Callable[[], tuple[bytes, ...] | ClientIdentity]


class ForwardedCert(Immutable):
    """Accept a client certificate that a trusted reverse proxy forwards in a header.

    Args:
        header: The header carrying the certificate (case-insensitive).
        encoding: ``"url-pem"``, ``"pem"``, ``"der-base64"``, ``"traefik"``, ``"xfcc"`` or
            ``"rfc9440"``.
        trusted_proxies: IP addresses and CIDRs of the proxies allowed to send the header,
            matched against the socket peer (never ``X-Forwarded-For``). ``"*"`` and ``/0``
            networks are refused. ``"unix"`` trusts connections over a Unix-domain socket
            (nginx ``proxy_pass http://unix:/run/app.sock``), as the adapter recognises
            them from the socket itself (``UNIX_PEER``), never from a missing address: list it
            only when nothing but the proxy can connect to that socket (file permissions).
        chain_header: Header(s) carrying intermediates (Apache ``SSL_CLIENT_CERT_CHAIN_n``,
            HAProxy ``ssl_c_chain_der``, RFC 9440 ``Client-Cert-Chain``).
        on_untrusted: ``"reject"`` (``UntrustedForwarder``) or ``"ignore"`` a certificate
            header from any other peer.
        max_size: Cap on the total size of the header values read, in characters.
        verified_by_proxy: Opt-in: accept an identity the proxy verified itself when it
            forwards no certificate (Istio XFCC without ``Cert``, AWS ALB verify mode, GCP).
        xfcc_element: Which XFCC element to read; ``-1`` (default) is the one the nearest
            proxy appended.
        identity_format: ``"aws-alb"`` or ``"gcp"``: how to read ``identity_headers``.
        identity_headers: Field name to header name for ``verified_by_proxy`` identities.
            A validity field named here must come with every identity (GCP's two both).
        single_certificate: The certificate header holds the leaf alone, so a second
            certificate in it is malformed. Default: True with ``chain_header`` or
            ``"rfc9440"``, False otherwise (AWS ALB's URL-encoded PEM, Traefik and XFCC
            carry the chain); the presets of proxies that forward only the leaf set it.

    Raises:
        ValueError, TypeError: on any bad setting, at construction.

    Security:
        A proxy must *replace* (never append to) the configured headers on every request,
        or a client's forged copy reaches the app; see ``docs/proxies.md`` for each proxy's
        exact configuration. ``verified_by_proxy=True`` means mtlsauth verifies nothing:
        anyone who can reach the app from a trusted address can claim any identity.
    """

    __slots__ = (
        "_chain_names",
        "_fields",
        "_key_prefix",
        "_main",
        "_main_key",
        "_name_keys",
        "_names",
        "_networks",
        "_one_cert",
        "_peer_cache",
        "_read",
        "_simple",
        "_source",
        "_trust_unix",
        "_untrusted_peers",
        "_xfcc_cache",
        "chain_header",
        "encoding",
        "header",
        "identity_format",
        "identity_headers",
        "max_size",
        "on_untrusted",
        "single_certificate",
        "trusted_proxies",
        "verified_by_proxy",
        "xfcc_element",
    )  # fmt: skip

    header: str
    encoding: str
    trusted_proxies: tuple[str, ...]
    chain_header: tuple[str, ...]
    on_untrusted: Literal["reject", "ignore"]
    max_size: int
    single_certificate: bool
    verified_by_proxy: bool
    xfcc_element: int
    identity_format: str | None
    identity_headers: Mapping[str, str]
    _main: str
    _main_key: bytes
    _simple: bool
    _one_cert: bool
    _chain_names: tuple[str, ...]
    _fields: dict[str, str]
    _names: frozenset[str]
    _read: frozenset[str]
    _networks: tuple[Network, ...]
    _trust_unix: bool
    _peer_cache: dict[str, bool]
    _untrusted_peers: BoundedMemo[str, bool]
    _xfcc_cache: BoundedMemo[str, XFCCElement | str]
    _key_prefix: bytes
    _name_keys: dict[str, bytes]
    _source: str

    def __init__(
        self,
        *,
        header: str,
        encoding: str,
        trusted_proxies: Sequence[str],
        chain_header: str | Sequence[str] | None = None,
        on_untrusted: Literal["reject", "ignore"] = "reject",
        max_size: int = 65536,
        verified_by_proxy: bool = False,
        xfcc_element: int = -1,
        identity_format: Literal["aws-alb", "gcp"] | None = None,
        identity_headers: Mapping[str, str] | None = None,
        single_certificate: bool | None = None,
    ) -> None:
        main = _own_header(header, "header")
        if not isinstance(encoding, str):
            raise TypeError(f"encoding must be a string, got {type(encoding).__name__}")
        if encoding not in ENCODINGS:
            raise ValueError(
                f"unknown encoding {encoding!r}; choose one of: {', '.join(ENCODINGS)}"
            )
        if not isinstance(trusted_proxies, str | bytes) and isinstance(trusted_proxies, Iterable):
            trusted_proxies = tuple(trusted_proxies)  # a one-shot iterable is read once
        networks, trust_unix = parse_proxies(trusted_proxies)
        if chain_header is None:
            chains: tuple[str, ...] = ()
        elif isinstance(chain_header, str):
            chains = (chain_header,)
        elif isinstance(chain_header, list | tuple):
            chains = tuple(chain_header)
        else:
            raise TypeError(
                "chain_header must be a header name or a list of names in chain order"
                f" (a {type(chain_header).__name__} has no order)"
            )
        chain_names = tuple(_own_header(c, "chain_header") for c in chains)
        if chain_names and encoding in ("xfcc", "traefik"):
            raise ValueError(f"encoding {encoding!r} carries the chain itself; drop chain_header")
        if single_certificate is None:
            single = bool(chain_names) or encoding == "rfc9440"
        elif not isinstance(single_certificate, bool):
            raise TypeError("single_certificate must be a bool or None")
        else:
            single = single_certificate
            if not single and (chain_names or encoding == "rfc9440"):
                raise ValueError(
                    "with chain_header (and in RFC 9440) the certificate header holds the leaf"
                    " alone: single_certificate cannot be False"
                )
            if single and encoding in ("xfcc", "traefik"):
                raise ValueError(
                    f"encoding {encoding!r} carries the chain itself: single_certificate"
                    " cannot be True"
                )
        if on_untrusted not in ("reject", "ignore"):
            raise ValueError('on_untrusted must be "reject" or "ignore"')
        if isinstance(max_size, bool) or not isinstance(max_size, int):
            raise TypeError("max_size must be an int")
        if max_size <= 0:
            raise ValueError("max_size must be a positive int")
        if not isinstance(verified_by_proxy, bool):
            raise TypeError("verified_by_proxy must be a bool")
        if isinstance(xfcc_element, bool) or not isinstance(xfcc_element, int):
            raise TypeError("xfcc_element must be an int (-1: the last element)")
        if identity_format is not None and identity_format not in _IDENTITY_FIELDS:
            raise ValueError(f"identity_format must be one of {sorted(_IDENTITY_FIELDS)} or None")
        if identity_headers is not None and not isinstance(identity_headers, Mapping):
            raise TypeError("identity_headers must be a mapping of field name to header name")
        fields = dict(identity_headers or {})
        if fields and identity_format is None:
            raise ValueError("identity_headers needs identity_format")
        if identity_format is not None:
            unknown = set(fields) - _IDENTITY_FIELDS[identity_format]
            if unknown:
                raise ValueError(
                    f"unknown identity_headers fields {sorted(unknown)}; "
                    f"{identity_format} knows {sorted(_IDENTITY_FIELDS[identity_format])}"
                )
        if len({"not_before", "not_after"} & set(fields)) == 1:
            # Half a window checks one end only: a certificate past its notAfter would pass.
            raise ValueError("identity_headers names one of not_before and not_after: name both")
        lower_fields = {k: _own_header(v, f"identity_headers[{k!r}]") for k, v in fields.items()}
        all_names = {main, *chain_names, *lower_fields.values()}
        if len(all_names) != 1 + len(chain_names) + len(lower_fields):
            raise ValueError("header, chain_header and identity_headers must all be different")
        read = {main, *chain_names} | (set(lower_fields.values()) if verified_by_proxy else set())
        s = object.__setattr__
        s(self, "header", header)
        s(self, "encoding", encoding)
        s(self, "trusted_proxies", tuple(trusted_proxies))
        s(self, "chain_header", chains)
        s(self, "on_untrusted", on_untrusted)
        s(self, "max_size", max_size)
        s(self, "single_certificate", single)
        s(self, "verified_by_proxy", verified_by_proxy)
        s(self, "xfcc_element", xfcc_element)
        s(self, "identity_format", identity_format)
        s(self, "identity_headers", dict(fields))
        s(self, "_main", main)
        s(self, "_chain_names", chain_names)
        s(self, "_fields", lower_fields)
        s(self, "_names", frozenset(all_names))
        s(self, "_read", frozenset(read))
        s(self, "_networks", networks)
        s(self, "_trust_unix", trust_unix)
        # Only trusted addresses enter _peer_cache (a plain dict: membership is one inline
        # operation), and only until it holds _PEER_CACHE_MAX of them; any client can choose
        # its own address (an IPv6 /64 holds plenty), so the others are a BoundedMemo.
        s(self, "_peer_cache", {})
        s(self, "_untrusted_peers", BoundedMemo(_PEER_CACHE_MAX))
        s(self, "_xfcc_cache", BoundedMemo(_XFCC_CACHE_MAX, max_key_len=_XFCC_CACHE_MAX_KEY))
        s(self, "_key_prefix", b"fwd\x00")
        s(self, "_name_keys", {n: n.encode("ascii") + b"\x01" for n in all_names})
        s(self, "_source", f"header:{header}")
        # The common shape (one certificate header, nothing else read) gets a fast path.
        s(self, "_simple", encoding != "xfcc" and not chain_names and read == {main})
        s(self, "_main_key", b"fwd\x00" + main.encode("ascii") + b"\x01")
        s(self, "_one_cert", encoding in _SINGLE_CERT)

    def __repr__(self) -> str:
        return (
            f"ForwardedCert(header={self.header!r}, encoding={self.encoding!r}, "
            f"trusted_proxies={list(self.trusted_proxies)!r}, on_untrusted={self.on_untrusted!r}, "
            f"single_certificate={self.single_certificate}, "
            f"verified_by_proxy={self.verified_by_proxy})"
        )

    @classmethod
    def preset(
        cls, name: str, *, trusted_proxies: Sequence[str], **overrides: Any
    ) -> ForwardedCert:
        """A configuration for a known proxy; any field can be overridden by keyword.

        Example:
            >>> ForwardedCert.preset("nginx", trusted_proxies=["127.0.0.1"]).header
            'X-SSL-Client-Cert'

        Names match case-insensitively; an unknown one is refused with the nearest known
        name ("did you mean 'nginx'?").
        """
        name = resolve_name(name, sorted(PRESETS), "preset")  # "NGINX" is nginx
        return cls(**{**PRESETS[name], **overrides, "trusted_proxies": trusted_proxies})

    def header_names(self) -> frozenset[str]:
        """Lower-case names of every header this configuration reads.

        Adapters remove these from requests of untrusted peers before the app sees them.
        """
        return self._names

    def is_trusted(self, peer: str | None) -> bool:
        """True when ``peer`` (the socket peer address) is one of the trusted proxies.

        A Unix-domain socket peer is ``UNIX_PEER``, which adapters set only after seeing
        the socket's family; it is trusted only when ``trusted_proxies`` lists ``"unix"``.
        No peer address (``None``, ``""``: a peer that is gone or was never reported) is
        never trusted.
        """
        cache = self._peer_cache
        if type(peer) is str and peer in cache:  # the hot path: a trusted proxy seen before
            return True
        if peer is UNIX_PEER:
            return self._trust_unix
        if not peer or not isinstance(peer, str):
            return False
        if self._untrusted_peers.get(peer) is not None:
            return False
        trusted = match_peer(peer, self._networks)
        if not trusted:
            self._untrusted_peers.put(peer, False)
            return False
        if len(cache) < _PEER_CACHE_MAX:  # full: the others are matched each time
            cache[peer] = True
        return True

    def extract(self, presented: Presented) -> ForwardedValue | None:
        """Take the certificate header(s) from ``presented``, without decoding them.

        Returns:
            None when no configured header carries a certificate (absent, empty, ``(null)``,
            an unreplaced Caddy placeholder) or when an untrusted peer sent one and
            ``on_untrusted="ignore"``.

        Raises:
            UntrustedForwarder: a certificate header from a peer that is not trusted.
            CertificateInvalid: ``certificate_malformed`` for two copies of a single-valued
                header, a comma-folded value, or values over ``max_size``.
        """
        if self._simple:
            plain = self.plain_value(presented.headers)
            if type(plain) is str:  # (bytes are the adapters' hot path only: refused below)
                raw = self.plain_key(plain, presented.peer)
                if raw is not None:  # the common case, settled with the fewest steps
                    return ForwardedValue(self._source, raw, lambda: self._decode_chain(plain, []))
        read = self._read
        found = [(k, v) for k, v in presented.headers if k in read]
        if not found:
            return None
        if not all(isinstance(v, str) for _, v in found):
            # Values are text (adapters decode them as Latin-1); a decoder handed bytes
            # would fail with an AttributeError, a 500 instead of a refusal.
            raise TypeError("certificate header values must be text")
        # Fast path: a value whose first character cannot start a sentinel is a certificate.
        if all(v[:1] in _SENTINEL_START and is_absent(v) for _, v in found):
            return None
        if not self.is_trusted(presented.peer):
            self._untrusted(presented.peer)  # raises unless on_untrusted="ignore"
            return None
        if len(found) == 1:
            k, v = found[0]
            if len(v) > self.max_size:
                raise malformed(f"certificate header exceeds {self.max_size} characters")
            key = self._key_prefix + self._name_keys[k] + v.encode("utf-8", "surrogatepass")
        else:
            if sum(len(v) for _, v in found) > self.max_size:
                raise malformed(f"certificate headers exceed {self.max_size} characters")
            # Each value length-prefixed, under a prefix of its own: a value holding a
            # separator and another header's name must not spell the key of two headers
            # (or one header the key of several).
            names = self._name_keys
            parts = [b"fwd\x01"]
            for k, v in found:
                raw = v.encode("utf-8", "surrogatepass")
                parts += (names[k], len(raw).to_bytes(4, "big"), raw)
            key = b"".join(parts)
        main = self._main
        mains = [v for k, v in found if k == main]
        source = self._source
        if self.encoding == "xfcc":
            return self._extract_xfcc(mains, key, source)
        if len(mains) > 1:
            raise malformed(f"{len(mains)} copies of the single-valued header {self.header!r}")
        if mains and not is_absent(mains[0]):
            value = mains[0]
            if self.encoding in _SINGLE_CERT and "," in value:
                # WSGI servers join duplicate headers with a comma: never pick one of them
                raise malformed(f"header {self.header!r} holds a comma (two copies folded?)")
            chain_values = self._chain_values(found)
            return ForwardedValue(source, key, lambda: self._decode_chain(value, chain_values))
        chain_names = self._chain_names
        if any(k in chain_names and not is_absent(v) for k, v in found):
            # No proxy forwards intermediates without the leaf they belong to.
            raise malformed(f"a chain header came without the certificate header {self.header!r}")
        if self.verified_by_proxy and self._fields:
            return self._extract_fields(found, key, source)
        return None

    @property
    def plain_header(self) -> str | None:
        """The lower-case name of the certificate header when this configuration reads
        that header alone (no chain, XFCC or identity headers), else ``None``: what an
        adapter's hot path looks for (see ``plain_key``)."""
        return self._main if self._simple else None

    def plain_value(self, headers: Iterable[tuple[str, str]]) -> str | None:
        """The one value of the certificate header in ``headers`` (lower-case names), when
        this configuration reads that header alone (no chain, XFCC or identity headers);
        ``None`` when it is absent, repeated, or the configuration reads more."""
        if not self._simple:
            return None
        main = self._main
        value: str | None = None
        for k, v in headers:
            if k == main:
                if value is not None:
                    return None  # two copies: extract() refuses them
                value = v
        return value

    def plain_key(self, value: str | bytes, peer: str | None) -> bytes | None:
        """The cache-key material ``extract`` gives a request whose only certificate header
        is ``value``, when nothing but that is to be decided: the configuration reads that
        header alone, the value is ASCII and not an absent-certificate marker, within
        ``max_size``, without a comma where one certificate is expected, and ``peer`` is a
        trusted proxy. ``None`` otherwise: ``extract`` then decides (and refuses).

        ``value`` may be the header's bytes as the server received them: for ASCII, the
        same material as their Latin-1 reading, which is what adapters hand the core.
        """
        if not self._simple:
            return None
        if type(value) is bytes:  # int look-ups: a bytes needle is several times slower
            if (
                not value
                or value[0] in _SENTINEL_START_BYTES
                or not value.isascii()
                or len(value) > self.max_size
                or (self._one_cert and _COMMA in value)
            ):
                return None
            raw = value
        elif type(value) is str:
            if (
                value[:1] in _SENTINEL_START
                or not value.isascii()
                or len(value) > self.max_size
                or (self._one_cert and "," in value)
            ):
                return None
            raw = value.encode("ascii")
        else:
            return None
        if not self.is_trusted(peer):
            return None
        return self._main_key + raw

    def _untrusted(self, peer: str | None) -> None:
        """A certificate header from a peer that is not a trusted proxy: ignore or refuse."""
        if self.on_untrusted == "ignore":
            return
        # The peer is not named: it may be a proxy's internal address, or text a client
        # chose (a server that takes the peer from X-Forwarded-For). The log names it.
        raise UntrustedForwarder(
            f"certificate header {self.header!r} from "
            f"{'a peer' if peer else 'an unknown peer'} that is not a trusted proxy"
        )

    def _chain_values(self, found: list[tuple[str, str]]) -> list[str]:
        out: list[str] = []
        gap = ""
        for name in self._chain_names:
            values = [v for k, v in found if k == name]
            if self.encoding == "rfc9440":  # a List: repeated lines concatenate
                live = [v for v in values if not is_absent(v)]
                if live:
                    out.append(", ".join(live))
                continue
            if len(values) > 1:
                raise malformed(f"{len(values)} copies of the single-valued header {name!r}")
            if values and not is_absent(values[0]):
                if gap:  # Apache numbers CHAIN_0..n without holes
                    raise malformed(f"chain header {name!r} follows the absent {gap!r}")
                if "," in values[0]:
                    raise malformed(f"header {name!r} holds a comma (two copies folded?)")
                out.append(values[0])
            elif not gap:
                gap = name
        return out

    def _decode_chain(self, value: str, chain_values: list[str]) -> tuple[bytes, ...]:
        try:
            decoder = DECODERS[self.encoding]
            ders = list(decoder(value))
            if self.single_certificate and len(ders) != 1:
                raise malformed(
                    f"header {self.header!r} must hold one certificate, not {len(ders)}"
                )
            one_each = len(self._chain_names) > 1  # CHAIN_0..n: one certificate per header
            for chain_value in chain_values:
                if self.encoding == "rfc9440":
                    extra = decode_rfc9440_list(chain_value)
                else:
                    extra = decoder(chain_value)
                if one_each and len(extra) != 1:
                    raise malformed("each numbered chain header must hold one certificate")
                if extra and extra[0] == ders[0]:  # some proxies repeat the leaf
                    extra = extra[1:]
                ders.extend(extra)
                if len(ders) > MAX_CHAIN_CERTS:
                    break
        except _DECODE_ERRORS:
            raise malformed("certificate header could not be decoded") from None
        return _checked(ders)

    def _extract_xfcc(self, mains: list[str], key: bytes, source: str) -> ForwardedValue | None:
        live = [v for v in mains if not is_absent(v)]
        if not live:
            return None
        text = ",".join(live)  # repeated lines of a list-valued header concatenate
        element = self._xfcc_select(text)
        if element.has_certificate:
            return ForwardedValue(source, key, lambda: _xfcc_chain(element))
        if self.verified_by_proxy and element.has_identity:
            return ForwardedValue(
                source,
                key,
                lambda: _guard(lambda _f, s: identity_from_xfcc(element, s), {}, source),
            )
        return None

    def _xfcc_select(self, text: str) -> XFCCElement:
        # Memoised (bounded, and a flood of new values cannot evict the values in use): XFCC
        # must be parsed to know whether it carries a certificate. A parse error is remembered
        # by its message only (no traceback kept alive).
        cache = self._xfcc_cache
        hit = cache.get(text)
        if hit is None:
            try:
                hit = select_element(text, self.xfcc_element)
            except CertificateInvalid as exc:
                hit = exc.detail
            cache.put(text, hit)
        if isinstance(hit, str):
            raise malformed(hit)
        return hit

    def _extract_fields(
        self, found: list[tuple[str, str]], key: bytes, source: str
    ) -> ForwardedValue | None:
        fields: dict[str, str] = {}
        for field, name in self._fields.items():
            values = [v for k, v in found if k == name]
            if len(values) > 1:
                raise malformed(f"{len(values)} copies of the single-valued header {name!r}")
            if values and not is_absent(values[0]):
                fields[field] = values[0]
        if self.identity_format == "gcp":
            if fields.get("present", "").strip(" \t").lower() != "true":
                return None
            _window_forwarded(self._fields, fields)
            return ForwardedValue(source, key, lambda: _guard(identity_from_gcp, fields, source))
        if "subject" not in fields:
            return None
        _window_forwarded(self._fields, fields)
        return ForwardedValue(source, key, lambda: _guard(identity_from_aws, fields, source))


_WINDOW_FIELDS = ("validity", "not_before", "not_after")


def _window_forwarded(configured: Mapping[str, str], fields: Mapping[str, str]) -> None:
    """Refuse an identity whose configured validity header did not come.

    ALB forwards expired certificates as verified (``IgnoreClientCertificateExpiry``), GCP
    those in its trust config's allow-list: the forwarded window is the only expiry check.
    A header the configuration names and the proxy always sets is missing only when the
    proxy does not set it under that name (a header renamed on the load balancer): reading
    on without it would admit an expired certificate. Leave the field out of
    ``identity_headers`` to do without it.
    """
    for field in _WINDOW_FIELDS:
        if field in configured and field not in fields:
            raise malformed(f"the proxy forwarded no validity ({configured[field]!r} is absent)")


def _xfcc_chain(element: XFCCElement) -> tuple[bytes, ...]:
    try:
        ders = decode_element(element)
    except _DECODE_ERRORS:
        raise malformed("x-forwarded-client-cert could not be decoded") from None
    return _checked(ders)


def _checked(ders: Sequence[bytes]) -> tuple[bytes, ...]:
    """The common checks on every decoded chain: count, then each certificate's shape."""
    if len(ders) > MAX_CHAIN_CERTS:
        raise malformed(f"more than {MAX_CHAIN_CERTS} certificates forwarded")
    for der in ders:
        check_certificate_shape(der)
    return tuple(ders)


def _guard(
    build: Callable[[dict[str, str], str], ClientIdentity], fields: dict[str, str], source: str
) -> ClientIdentity:
    try:
        return build(fields, source)
    except _DECODE_ERRORS:
        raise malformed("the proxy's identity fields could not be read") from None
