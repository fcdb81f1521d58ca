"""Measurements 1, 2 and 8: the cached hit against its floor, uncached verification against
cryptography, and a hostile chain against a genuine verification.

1. Cached hit: the same certificate again through ``Verifier.authenticate``, once as an nginx
   header (``$ssl_client_escaped_cert``) from a trusted proxy and once as a TLS peer chain.
   Floor: SHA-256 of the raw presented bytes plus a dict look-up, inline, no function call.
   Timed both for a verifier with only trust (the floor's fair partner) and for one that also
   re-checks a CRL and a policy on every hit (what a deployment with both pays). And the
   whole ASGI middleware in process (no server): what ``MTLSMiddleware`` adds around a
   hello-world app for the same cached request, over the same floor.
2. Uncached: a never-seen certificate every time (RSA-2048 and P-256 chains, leaf ->
   intermediate -> root), with a CRL for every CA in scope and a policy of three allow-lists,
   against cryptography's ``ClientVerifier.verify`` alone on the same chain: a verifier
   built once, certificates already parsed.
8. Hostile chains against the genuine chain, both uncached: the client's genuine leaf followed
   by 15 look-alike P-521 "intermediates" carrying its CA's name and extensions (each a new
   key, so every one is a candidate issuer whose signature check fails); and a leaf under 5
   levels of 3 attacker-held P-521 CAs that name the root at the top (every link verifies
   but the last).
"""

from __future__ import annotations

import hashlib
import statistics
from typing import Any

from _context import Context
from _pki import Hierarchy, der, pem
from _report import Row, Target, ratio_row
from _timing import compare, paired_pool_runners, stmt_runner, summarise
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store

from mtlsauth import CRLSet, ForwardedCert, MTLSAuthError, Policy, Verifier
from mtlsauth._types import Presented
from mtlsauth.testing import encode_forwarded

HIT_TARGET = Target("<=", 2.0)
UNCACHED_TARGET = Target("<=", 1.3)  # stretch goal: 1.15
ASGI_TARGET = Target("<=", 4.0)
HOSTILE_TARGET = Target("<=", 10.0)
HOSTILE_LOOK_ALIKES = 15
PROXY = "127.0.0.1"
HEADER = "X-SSL-Client-Cert"
# What a request carries besides the certificate; the verifier has to find its header among them.
COMMON_HEADERS = (
    ("host", "api.example.test"),
    ("user-agent", "wrk/4"),
    ("accept", "*/*"),
    ("x-forwarded-for", "192.0.2.10"),
)


def policy() -> Policy:
    """A realistic allow-list: organisation, common names and a DNS wildcard must all match."""
    return Policy(
        organizations={"payments", "billing"},
        common_names={"ledger", "invoicing", "reports"},
        dns_names={"*.payments.svc"},
    )


def crlset(h: Hierarchy, intermediate_entries: int = 10) -> CRLSet:
    return CRLSet.from_der(*h.crls_der(intermediate_entries), scope="chain")


def nginx_forwarded() -> ForwardedCert:
    return ForwardedCert.preset("nginx", header=HEADER, trusted_proxies=[PROXY])


def header_request(h: Hierarchy, leaf: x509.Certificate) -> tuple[Presented, str]:
    """A request as nginx forwards it: the leaf alone, URL-escaped PEM, from 127.0.0.1."""
    pairs = encode_forwarded("nginx", h.chain_der(leaf))
    headers = (*COMMON_HEADERS, *((k.lower(), v) for k, v in pairs))
    return Presented(peer=PROXY, headers=headers), pairs[0][1]


def tls_request(h: Hierarchy, leaf: x509.Certificate) -> tuple[Presented, str]:
    """A request whose server ended TLS: the peer chain as PEM strings (ASGI TLS extension)."""
    chain = (pem(leaf), pem(h.intermediate.certificate))
    return Presented(peer="192.0.2.10", headers=COMMON_HEADERS, tls_chain=chain), "".join(chain)


def _hit(
    ctx: Context, verifier: Verifier, presented: Presented, raw: str
) -> dict[str, list[float]]:
    identity = verifier.authenticate(presented)  # warm the cache
    if identity is None or verifier.authenticate(presented) is not identity:
        raise RuntimeError("the cache did not return the cached identity")
    raw_bytes = raw.encode("latin-1")
    floor_ns = {
        "sha256": hashlib.sha256,
        "raw": raw_bytes,
        "get": {hashlib.sha256(raw_bytes).digest(): identity}.get,
    }
    runners = {
        "subject": stmt_runner("auth(p)", {"auth": verifier.authenticate, "p": presented}),
        "floor": stmt_runner("get(sha256(raw).digest())", floor_ns),
    }
    return compare(runners, ctx.budget)


def cached_hit(ctx: Context) -> list[Row]:
    h = ctx.ec
    leaf = h.leaf()
    rows: list[Row] = []
    intermediates = [h.intermediate.certificate]
    configs = {
        "trust only": {},
        "+ CRL + policy": {"revocation": crlset(h), "policy": policy()},
    }
    for config, extra in configs.items():
        for kind in ("header", "tls"):
            if kind == "header":
                presented, raw = header_request(h, leaf)
                verifier = Verifier(
                    trust_store=h.root.trust_store(),
                    intermediates=intermediates,
                    forwarded=nginx_forwarded(),
                    **extra,  # type: ignore[arg-type]
                )
                label = f"nginx header, {config}"
            else:
                presented, raw = tls_request(h, leaf)
                verifier = Verifier(trust_store=h.root.trust_store(), **extra)  # type: ignore[arg-type]
                label = f"TLS chain, {config}"
            ctx.log(f"cached hit: {label}")
            samples = _hit(ctx, verifier, presented, raw)
            slug = "header" if kind == "header" else "tls"
            suffix = "" if config == "trust only" else "_crl_policy"
            rows.append(
                ratio_row(
                    f"cached_hit.{slug}{suffix}",
                    label,
                    summarise(samples, "subject", "floor"),
                    subject="Verifier.authenticate(presented), warm cache",
                    baseline="sha256(raw presented bytes) + dict.get, inline",
                    target=HIT_TARGET,
                    unit="x floor",
                    raw_bytes=len(raw),
                )
            )
            if config == "trust only":
                rows.append(_not_remembered(ctx, verifier, presented, raw, slug, label))
    rows += asgi_in_process(ctx)
    return rows


def _forget_values(verifier: Verifier) -> None:
    """No presented value is remembered with its cache key: every hit hashes the value."""
    for memo in (verifier._header_aliases, verifier._chain_aliases):
        memo.clear()
        memo.budget = 0


def _not_remembered(
    ctx: Context, verifier: Verifier, presented: Presented, raw: str, slug: str, label: str
) -> Row:
    """The unfavourable case of the exact-value keys: a hit whose value is not remembered
    (more clients than the memo holds, or a value over its size limit) hashes it again."""
    _forget_values(verifier)
    ctx.log(f"cached hit: {label}, value not remembered")
    samples = _hit(ctx, verifier, presented, raw)
    return ratio_row(
        f"cached_hit.{slug}_not_remembered",
        f"{label}, value not remembered",
        summarise(samples, "subject", "floor"),
        subject="Verifier.authenticate(presented), warm cache, exact-value keys off",
        baseline="sha256(raw presented bytes) + dict.get, inline",
        unit="x floor",
        raw_bytes=len(raw),
    )


ASGI_RESPONSE = (
    {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]},
    {"type": "http.response.body", "body": b"ok"},
)


async def _hello(scope: dict[str, object], receive: object, send: Any) -> None:
    await send(ASGI_RESPONSE[0])
    await send(ASGI_RESPONSE[1])


async def _receive() -> dict[str, object]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: object) -> None:
    return None


def _drive(coroutine: Any) -> None:
    """Run a coroutine that never suspends (a cached hit does not) to its end, no event loop."""
    try:
        coroutine.send(None)
    except StopIteration:
        return
    coroutine.close()
    raise RuntimeError("the ASGI call suspended: the cache was not hit")


def asgi_in_process(ctx: Context) -> list[Row]:
    """The ASGI middleware's overhead with a warm cache: (middleware + app) - app, vs floor."""
    from mtlsauth.adapters.asgi import MTLSMiddleware

    h = ctx.ec
    presented, raw = header_request(h, h.leaf())
    verifier = Verifier(
        trust_store=h.root.trust_store(),
        intermediates=[h.intermediate.certificate],
        forwarded=nginx_forwarded(),
    )
    middleware = MTLSMiddleware(_hello, verifier=verifier)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "root_path": "",
        "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in presented.headers],
        "client": (PROXY, 50000),
        "server": ("127.0.0.1", 8000),
    }
    sent: list[Any] = []

    async def record(message: object) -> None:
        sent.append(message)

    # Warm the cache on a loop (a miss verifies on the Guard's pool), then check the answer.
    import asyncio

    asyncio.run(middleware(scope, _receive, record))
    _drive(middleware(scope, _receive, record))
    if [m.get("status") for m in sent if m["type"] == "http.response.start"] != [200, 200]:
        raise RuntimeError(f"the middleware did not admit the request: {sent[:2]}")
    raw_bytes = raw.encode("latin-1")
    ns = {
        "drive": _drive,
        "mw": middleware,
        "app": _hello,
        "scope": scope,
        "receive": _receive,
        "send": _send,
        "sha256": hashlib.sha256,
        "raw": raw_bytes,
        "get": {hashlib.sha256(raw_bytes).digest(): presented}.get,
    }
    runners = {
        "middleware": stmt_runner("drive(mw(scope, receive, send))", ns),
        "app": stmt_runner("drive(app(scope, receive, send))", ns),
        "floor": stmt_runner("get(sha256(raw).digest())", ns),
    }
    rows = []
    for remembered in (True, False):
        if not remembered:
            _forget_values(verifier)
        ctx.log(f"cached hit: ASGI middleware in process{'' if remembered else ', not remembered'}")
        samples = compare(runners, ctx.budget)
        overhead = [m - a for m, a in zip(samples["middleware"], samples["app"], strict=True)]
        comparison = summarise({"subject": overhead, "floor": samples["floor"]}, "subject", "floor")
        rows.append(
            ratio_row(
                "cached_hit.asgi_middleware" + ("" if remembered else "_not_remembered"),
                "ASGI middleware in process, nginx header"
                + ("" if remembered else ", value not remembered"),
                comparison,
                subject="MTLSMiddleware(app)(scope) minus app(scope), warm cache, no server"
                + ("" if remembered else ", exact-value keys off"),
                baseline="sha256(raw presented bytes) + dict.get, inline",
                target=ASGI_TARGET if remembered else None,
                unit="x floor",
                app_us=statistics.median(samples["app"]) * 1e6,
                middleware_us=statistics.median(samples["middleware"]) * 1e6,
            )
        )
    return rows


def _distinct_leaf(h: Hierarchy, n: int) -> x509.Certificate:
    """A leaf sharing nothing a memo could reuse: its own subject (an OU), SAN and key."""
    from cryptography.hazmat.primitives.asymmetric import ec

    return h.leaf(
        unit=f"replica {n}", host=f"ledger-{n}", key=ec.generate_private_key(ec.SECP256R1())
    )


def uncached(ctx: Context) -> list[Row]:
    rows: list[Row] = []
    budget = ctx.budget
    per_batch = 8 if ctx.quick else 48
    # The fleet case first (leaves of one service share subject, SAN and, here, key), then
    # the unfavourable ones for what mtlsauth remembers: every leaf distinct (memos by exact
    # bytes), and every leaf the first under its intermediate (no intermediate validated
    # before: the table of vouched-for intermediates emptied before each verification).
    import mtlsauth._pathvalidation as pathvalidation

    def forget() -> None:  # every intermediate unseen; the stores' tables (anchor names) stay
        for table in list(pathvalidation._VOUCHED.values()):
            table.entries.clear()

    for key_type in ("ec", "rsa", "ec_distinct", "ec_first"):
        h = ctx.rsa if key_type == "rsa" else ctx.ec
        count = per_batch * (budget.rounds + 1)
        ctx.log(f"uncached: issuing {count} {key_type} leaves")
        inter = x509.load_der_x509_certificate(h.intermediate_der)
        items = []
        for n in range(count):
            leaf = _distinct_leaf(h, n) if key_type == "ec_distinct" else h.leaf()
            chain = h.chain_der(leaf)
            items.append((chain, x509.load_der_x509_certificate(chain[0]), inter))
        verifier = Verifier(trust_store=h.root.trust_store(), revocation=crlset(h), policy=policy())
        baseline = PolicyBuilder().store(Store([h.root.certificate])).build_client_verifier()
        # Both sides must accept every chain, or the comparison is meaningless.
        verifier.verify(items[0][0])
        baseline.verify(items[0][1], [items[0][2]])

        def subject(item: Any, v: Verifier = verifier, first: bool = key_type == "ec_first") -> Any:
            if first:
                forget()
            return v.verify(item[0])

        runners = paired_pool_runners(
            {
                "subject": subject,
                "baseline": lambda item, b=baseline: b.verify(item[1], [item[2]]),
            },
            items[1:],
        )
        ctx.log(f"uncached: {key_type} interleaved")
        samples = compare(runners, budget, numbers={"subject": per_batch, "baseline": per_batch})
        label = {
            "ec": "P-256 chain, CRL + policy",
            "rsa": "RSA-2048 chain, CRL + policy",
            "ec_distinct": "P-256, every leaf its own subject, SAN and key",
            "ec_first": "P-256, every leaf the first under its intermediate",
        }[key_type]
        rows.append(
            ratio_row(
                f"uncached.{key_type}",
                label,
                summarise(samples, "subject", "baseline"),
                subject="Verifier.verify(DER chain), new certificate each time"
                + {
                    "ec_distinct": ", nothing shared between leaves",
                    "ec_first": ", no intermediate validated before",
                }.get(key_type, ""),
                baseline="cryptography ClientVerifier.verify(leaf, [intermediate]) alone",
                target=UNCACHED_TARGET if key_type in ("ec", "rsa") else None,
                unit="x cryptography",
            )
        )
    return rows


def look_alikes(h: Hierarchy, count: int = HOSTILE_LOOK_ALIKES) -> list[x509.Certificate]:
    """The intermediate again (subject, issuer, every extension), each with a new P-521 key."""
    import datetime as dt

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    inter = h.intermediate.certificate
    now = dt.datetime.now(dt.timezone.utc)
    out = []
    for _ in range(count):
        key = ec.generate_private_key(ec.SECP521R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(inter.subject)
            .issuer_name(inter.issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=30))
        )
        for ext in inter.extensions:  # the same extensions, key identifiers included
            builder = builder.add_extension(ext.value, critical=ext.critical)
        out.append(builder.sign(key, hashes.SHA512()))
    return out


def lattice(h: Hierarchy, levels: int = 5, width: int = 3) -> list[bytes]:
    """A leaf under ``levels`` attacker CAs, ``width`` P-521 look-alikes per level, each level
    signed by the one above (the attacker holds every key); the top names the root as issuer.
    """
    import datetime as dt

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.timezone.utc)
    names = [
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Look-alike CA {i}")])
        for i in range(levels)
    ]
    issuers = [*names[1:], h.root.certificate.subject]
    keys = [[ec.generate_private_key(ec.SECP521R1()) for _ in range(width)] for _ in names]
    usage = h.intermediate.certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    out: list[bytes] = []
    for level in range(levels):
        signer = (
            keys[level + 1][0] if level + 1 < levels else ec.generate_private_key(ec.SECP521R1())
        )
        certs = [
            x509.CertificateBuilder()
            .subject_name(names[level])
            .issuer_name(issuers[level])
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(usage, critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), False
            )
            .sign(signer, hashes.SHA512())
            for key in keys[level]
        ]
        out += [der(c) for c in certs[1:] + certs[:1]]  # the one that verifies, last
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hostile")]))
        .issuer_name(names[0])
        .public_key(h.leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(keys[0][0].public_key()), False
        )
        .sign(keys[0][0], hashes.SHA512())
    )
    return [der(leaf), *out]


def hostile(ctx: Context) -> list[Row]:
    h = ctx.ec
    leaf = h.leaf()
    genuine = list(h.chain_der(leaf))
    verifier = Verifier(trust_store=h.root.trust_store(), policy=policy(), cache_size=0)
    verifier.verify(genuine)  # the genuine chain must pass, the hostile ones must not

    def attempt(chain: list[bytes]) -> None:
        try:
            verifier.verify(chain)
        except MTLSAuthError:
            return
        raise RuntimeError("a hostile chain was accepted")

    cases = {
        "look_alikes": (
            f"leaf + {HOSTILE_LOOK_ALIKES} look-alike P-521 CAs",
            [der(leaf), *(der(c) for c in look_alikes(h))],
        ),
        "lattice": ("leaf + 5 levels x 3 attacker P-521 CAs", lattice(h)),
    }
    rows = []
    for slug, (label, chain) in cases.items():
        attempt(chain)
        ctx.log(f"hostile: {slug} vs genuine chain, uncached")
        runners = {
            "subject": stmt_runner("attempt(c)", {"attempt": attempt, "c": chain}),
            "baseline": stmt_runner("verify(c)", {"verify": verifier.verify, "c": genuine}),
        }
        samples = compare(runners, ctx.budget)
        rows.append(
            ratio_row(
                f"hostile.{slug}",
                label,
                summarise(samples, "subject", "baseline"),
                subject="Verifier.verify(hostile chain), refused, uncached",
                baseline="Verifier.verify(genuine P-256 chain), uncached",
                target=HOSTILE_TARGET,
                unit="x genuine",
            )
        )
    return rows


def run(ctx: Context) -> dict[str, list[Row]]:
    return {"cached_hit": cached_hit(ctx), "uncached": uncached(ctx), "hostile": hostile(ctx)}


__all__ = [
    "asgi_in_process",
    "cached_hit",
    "crlset",
    "der",
    "header_request",
    "hostile",
    "lattice",
    "look_alikes",
    "policy",
    "run",
    "uncached",
]
