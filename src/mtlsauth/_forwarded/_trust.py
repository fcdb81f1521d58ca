"""Configuration parsing for ForwardedCert: header names and trusted-proxy networks.

Everything here runs once, at construction; a bad value is a ``ValueError``/``TypeError``
there, never a surprise at request time.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

__all__ = ["UNIX", "UNIX_PEER", "Network", "header_name", "match_peer", "parse_proxies"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz")


def header_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not name:
        raise TypeError(f"{what} must be a non-empty header name string")
    # Checked as given, not after lower(): the Kelvin sign lower-cases to an ASCII "k", so
    # a name no proxy can send would be read as another one.
    lower = name.lower()
    if not name.isascii() or any(c not in _TCHAR for c in lower):
        raise ValueError(f"{what} {name!r} is not a valid HTTP header name")
    return lower


UNIX = "unix"


class _UnixPeer(str):
    """The type of ``UNIX_PEER``: recognised by identity, so no string can pass for it."""

    __slots__ = ()

    def __reduce__(self) -> str:
        return "UNIX_PEER"


UNIX_PEER: str = _UnixPeer("unix")
"""The peer of a connection over a Unix-domain socket.

Adapters set it only after seeing the socket's family (``AF_UNIX``) or a server's explicit
report of a socket path; ``ForwardedCert.is_trusted`` compares it by identity, so a
``REMOTE_ADDR`` or header that reads ``"unix"`` is just an untrusted address. A missing
peer (``None``, ``""``) is unknown, and unknown is never trusted.
"""


def parse_proxies(proxies: object) -> tuple[tuple[Network, ...], bool]:
    """The trusted networks, and whether Unix-socket peers (``UNIX_PEER``) are trusted."""
    if isinstance(proxies, str | bytes) or not isinstance(proxies, Iterable):
        raise TypeError("trusted_proxies must be a list of addresses or CIDRs, not a string")
    nets: list[Network] = []
    unix = False
    for entry in proxies:
        if not isinstance(entry, str):
            raise TypeError(f"trusted_proxies entries must be strings, got {entry!r}")
        text = entry.strip()
        if text == UNIX:
            # A Unix-domain socket has no peer address; adapters report UNIX_PEER after
            # checking the socket's family. Opt-in only, because it trusts every local
            # process that may connect to that socket.
            unix = True
            continue
        if text == "*":
            raise ValueError(
                'trusted_proxies="*" would let any client forge a certificate header; '
                "name the proxies' addresses or networks"
            )
        try:
            net = ipaddress.ip_network(text, strict=True)
        except ValueError as exc:
            raise ValueError(
                f"trusted_proxies entry {entry!r} is not an IP or CIDR: {exc}"
            ) from None
        if net.prefixlen == 0:
            raise ValueError(f"trusted_proxies entry {entry!r} trusts every address, like '*'")
        if isinstance(net, ipaddress.IPv6Network) and net.network_address.ipv4_mapped:
            mapped = net.network_address.ipv4_mapped
            net = ipaddress.ip_network(f"{mapped}/{max(net.prefixlen - 96, 0)}", strict=False)
            if net.prefixlen == 0:
                raise ValueError(f"trusted_proxies entry {entry!r} trusts every IPv4 address")
        nets.append(net)
    if not nets and not unix:
        raise ValueError(
            "trusted_proxies is empty: certificate headers stay off unless proxies are named"
        )
    return tuple(nets), unix


def match_peer(peer: str, networks: tuple[Network, ...]) -> bool:
    """True when ``peer`` parses as an IP address inside one of ``networks``.

    IPv4-mapped IPv6 peers (``::ffff:127.0.0.1``, what a dual-stack socket reports) match
    their IPv4 form; a link-local entry with a zone (``fe80::1%eth0``) matches that zone only;
    anything unparseable (a Unix socket path, a list) is untrusted.
    """
    text = peer.strip(" \t")  # ASCII blanks only: "10.0.0.1\u00a0" is not an address
    bracketed = text.startswith("[") and text.endswith("]")
    if bracketed:
        text = text[1:-1]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return False
    zone: str | None = None
    if bracketed and not isinstance(addr, ipaddress.IPv6Address):
        return False  # brackets enclose IPv6 literals only: "[10.0.0.1]" is no IPv4 spelling
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            if addr.scope_id:
                return False  # an IPv4 address has no zone, mapped or not (as "10.0.0.1%eth0")
            addr = addr.ipv4_mapped
        elif addr.scope_id:
            zone = addr.scope_id
            addr = ipaddress.IPv6Address(text.split("%", 1)[0])
    # fe80::1 on eth0 and fe80::1 on eth1 are different hosts: an entry that names a zone
    # trusts that link only (an entry without one trusts the address on any link).
    return any(
        addr in net
        and (
            not isinstance(net, ipaddress.IPv6Network)
            or net.network_address.scope_id in (None, zone)
        )
        for net in networks
    )
