"""Structure-aware DER mutation: parse a certificate (or CRL, OCSP answer) into a TLV tree,
change one field the way a hostile encoder would, and write it back.

Two kinds of change: tree edits, written back with consistent lengths (tags, string types,
versions, criticality, duplicated or dropped extensions, contents), and raw edits that break
the encoding itself (a length too long or short, long-form or indefinite lengths, truncation).
A certificate may then be re-signed with the fuzz CA key, so the mutation reaches the
validation rules instead of stopping at the signature check.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

MAX_NODES = 4000


@dataclass
class Node:
    tag: int
    content: bytes = b""
    children: list[Node] | None = None
    # BIT STRING: the unused-bits byte before an encapsulated structure
    prefix: bytes = b""
    wrapped: bool = False  # OCTET/BIT STRING holding DER
    kids: list[Node] = field(default_factory=list)


def _read_len(data: bytes, pos: int) -> tuple[int, int]:
    first = data[pos]
    if first < 0x80:
        return first, pos + 1
    n = first & 0x7F
    if n == 0 or n > 4 or pos + 1 + n > len(data):
        raise ValueError("length")
    return int.from_bytes(data[pos + 1 : pos + 1 + n], "big"), pos + 1 + n


def _parse_seq(data: bytes, budget: list[int]) -> list[Node]:
    out: list[Node] = []
    pos = 0
    while pos < len(data):
        budget[0] -= 1
        if budget[0] < 0 or pos + 2 > len(data):
            raise ValueError("budget")
        tag = data[pos]
        if tag & 0x1F == 0x1F:
            raise ValueError("high tag")
        length, start = _read_len(data, pos + 1)
        end = start + length
        if end > len(data):
            raise ValueError("short")
        content = data[start:end]
        node = Node(tag, content)
        if tag & 0x20:
            node.children = _parse_seq(content, budget)
        elif tag == 0x04 and content[:1] in (b"\x30", b"\x04", b"\x03", b"\x02", b"\x01"):
            try:
                node.children = _parse_seq(content, budget)
                node.wrapped = True
            except ValueError:
                node.children = None
        elif tag == 0x03 and content[:2] == b"\x00\x30":
            try:
                node.children = _parse_seq(content[1:], budget)
                node.prefix, node.wrapped = b"\x00", True
            except ValueError:
                node.children = None
        out.append(node)
        pos = end
    return out


def parse(data: bytes) -> Node | None:
    """The TLV tree of one DER value, or None when ``data`` is not one."""
    try:
        nodes = _parse_seq(data, [MAX_NODES])
    except (ValueError, IndexError):
        return None
    return nodes[0] if len(nodes) == 1 else None


def _len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def encode(node: Node) -> bytes:
    if node.children is not None:
        body = node.prefix + b"".join(encode(c) for c in node.children)
    else:
        body = node.content
    return bytes([node.tag]) + _len(len(body)) + body


def _walk(node: Node, out: list[Node]) -> list[Node]:
    out.append(node)
    for child in node.children or ():
        _walk(child, out)
    return out


STRING_TAGS = (0x0C, 0x13, 0x16, 0x14, 0x1E, 0x1C, 0x12, 0x1A, 0x04, 0x03, 0x05, 0x01, 0x02)
ODD_TEXT = (
    b"",
    b"\x00",
    b"a\x00b",
    "ex\u0430mple".encode(),
    "\u212a".encode(),
    b"\xff\xfe",
    b"\xc3\x28",
    b"*",
    b"..",
    b"a" * 126,  # content lengths on both sides of the short-form boundary (127 octets)
    b"a" * 127,
    b"a" * 128,
    b"a" * 300,
    b"CN=x,O=y",
    b'"\\,+;<>#=',
    b"example.com",
    b"spiffe://example.com/x",
    b"\x00\x00\x00a",
)
CRITICAL = Node(0x01, b"\xff")
UNKNOWN_EXT_OID = bytes.fromhex("06082b06010401828f1f")  # 1.3.6.1.4.1.2015.31


def _extensions(tree: Node) -> Node | None:
    """The SEQUENCE OF Extension inside a certificate's or CRL's [3]/[0] wrapper."""
    for n in _walk(tree, []):
        if n.tag in (0xA3, 0xA0, 0xA1) and n.children and n.children[0].tag == 0x30:
            seq = n.children[0]
            if seq.children and all(
                c.tag == 0x30 and c.children and c.children[0].tag == 0x06 for c in seq.children
            ):
                return seq
    return None


def mutate_tree(tree: Node, rng: random.Random) -> None:
    nodes = _walk(tree, [])
    target = rng.choice(nodes)
    op = rng.randrange(12)
    if op == 0:  # tag change (string types, or any type confusion)
        target.tag = rng.choice(STRING_TAGS)
        if target.children is not None and not target.tag & 0x20 and not target.wrapped:
            target.content, target.children = encode(target)[2:], None
    elif op == 1 and target.children is None:  # content: odd text
        target.content = rng.choice(ODD_TEXT)
    elif op == 2 and target.children is None and target.content:  # content: flip a byte
        b = bytearray(target.content)
        i = rng.randrange(len(b))
        b[i] ^= 1 << rng.randrange(8)
        target.content = bytes(b)
    elif op == 3 and target.children:  # drop a child
        target.children.pop(rng.randrange(len(target.children)))
    elif op == 4 and target.children:  # duplicate a child
        i = rng.randrange(len(target.children))
        target.children.insert(i, parse(encode(target.children[i])) or target.children[i])
    elif op == 5 and target.children and len(target.children) > 1:  # swap two children
        i, j = rng.sample(range(len(target.children)), 2)
        target.children[i], target.children[j] = target.children[j], target.children[i]
    elif op == 6:  # version: [0] EXPLICIT INTEGER or a bare INTEGER version
        for n in _walk(tree, []):
            if n.tag == 0xA0 and n.children and n.children[0].tag == 0x02:
                n.children[0].content = bytes([rng.choice((0, 1, 2, 3, 4, 255))])
                break
            if n.tag == 0x02 and len(n.content) == 1 and n.content[0] <= 2:
                n.content = bytes([rng.choice((0, 1, 2, 3, 4, 255))])
                break
    elif op in (7, 8):  # extensions: criticality, duplicates, unknown critical
        exts = _extensions(tree)
        if exts is not None and exts.children:
            ext = rng.choice(exts.children)
            assert ext.children is not None
            if op == 7:
                if len(ext.children) == 3:
                    ext.children.pop(1)  # make it non-critical (default)
                else:
                    ext.children.insert(1, Node(0x01, rng.choice((b"\xff", b"\x01", b"\x00"))))
            elif rng.random() < 0.5:
                exts.children.append(parse(encode(ext)) or ext)
            else:
                oid = parse(UNKNOWN_EXT_OID)
                assert oid is not None
                exts.children.append(
                    Node(0x30, children=[oid, Node(0x01, b"\xff"), Node(0x04, b"\x05\x00")])
                )
    elif op == 9 and target.tag == 0x02:  # integers: sign, zero, huge
        target.content = rng.choice((b"\x00", b"\xff", b"\x80", b"\x00\x01", b"\x7f" * 25))
    elif op == 10 and target.tag in (0x17, 0x18):  # times: edges and junk
        target.content = rng.choice(
            (b"500101000000Z", b"491231235959Z", b"991231235959Z", b"20500101000000Z",
             b"99991231235959Z", b"000000000000Z", b"2401010000Z", b"240101000000+0100")
        )  # fmt: skip
    else:  # append a child anywhere structured
        if target.children is not None:
            target.children.insert(rng.randrange(len(target.children) + 1), Node(0x05))


def mutate_raw(data: bytes, rng: random.Random) -> bytes:
    """Break the encoding: lengths, long/indefinite forms (also inside extension values),
    truncation, trailing data."""
    if not data:
        return data
    op = rng.randrange(7)
    i = rng.randrange(len(data))
    if op == 5:  # a long-form length (0x81/0x82 and its octets) spelt another way
        marks = [j for j in range(1, len(data) - 2) if data[j] in (0x81, 0x82)]
        if marks:
            j = rng.choice(marks)
            b = bytearray(data)
            how = rng.randrange(4)
            if how == 0:  # the length octet one off, or with a leading zero
                b[j + 1] = (b[j + 1] + rng.choice((1, -1))) & 0xFF
            elif how == 1:
                b[j + 1] = 0x00
            elif how == 2:  # indefinite, or one more length octet than needed
                b[j] = 0x80
            else:
                b[j] = 0x82 if b[j] == 0x81 else 0x81
            return bytes(b)
    if op == 0:  # a length byte one off
        b = bytearray(data)
        b[min(i, len(b) - 1)] = (b[min(i, len(b) - 1)] + rng.choice((1, -1, 0x80))) & 0xFF
        return bytes(b)
    if op == 1:  # indefinite length at a constructed tag
        positions = [j for j in range(len(data) - 1) if data[j] in (0x30, 0x31, 0xA0, 0xA3)]
        if positions:
            j = rng.choice(positions)
            return data[: j + 1] + b"\x80" + data[j + 2 :] + b"\x00\x00"
    if op == 2:
        return data[:i]
    if op == 3:
        return data + rng.choice((b"\x00", b"\x30\x00", data[:16]))
    if op == 4:  # non-minimal long-form length on the outer SEQUENCE
        tree = parse(data)
        if tree is not None:
            body = encode(tree)
            hdr = 2 if body[1] < 0x80 else 2 + (body[1] & 0x7F)
            n = len(body) - hdr
            return bytes([body[0], 0x84]) + n.to_bytes(4, "big") + body[hdr:]
    return bytes(b ^ 0xFF if j == i else b for j, b in enumerate(data))


def resign(tree: Node, key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    """Re-sign a (mutated) certificate or CRL: TBS, then the signature over it, algorithm kept."""
    if not tree.children or len(tree.children) != 3 or tree.children[2].tag != 0x03:
        return encode(tree)
    tbs = encode(tree.children[0])
    if isinstance(key, ed25519.Ed25519PrivateKey):
        sig = key.sign(tbs)
    else:
        sig = key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    tree.children[2] = Node(0x03, b"\x00" + sig)
    return encode(tree)


def mutate_cert(
    der: bytes, rng: random.Random, key: ec.EllipticCurvePrivateKey | None = None
) -> bytes:
    """One structure-aware mutation of ``der``; re-signed with ``key`` half of the time."""
    tree = parse(der)
    if tree is None or rng.random() < 0.15:
        return mutate_raw(der, rng)
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        mutate_tree(tree, rng)
    if key is not None and rng.random() < 0.5:
        return resign(tree, key)
    return encode(tree)
