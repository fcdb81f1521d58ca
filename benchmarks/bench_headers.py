"""Measurement 4: header parsing per format, as a share of one chain verification.

What a cache miss adds before verification starts: ``ForwardedCert.extract`` (find the
headers, check the proxy, build the cache key) plus ``decode()`` (percent-decoding, PEM or
base64, structured fields, XFCC), giving DER bytes. Each operation gets a header it has never
seen (XFCC parses are memoised by text, so a repeated value would hide the work).

Baseline: cryptography's ``ClientVerifier.verify`` on a chain of the same hierarchy, timed
in the same rounds; the ratio says what fraction of a verification the parsing adds. XFCC of
three elements, leaf and chain in the last, has a target: at most 0.3 of a verification.
"""

from __future__ import annotations

from _context import Context
from _report import Row, Target, ratio_row
from _timing import compare, pool_runner, stmt_runner, summarise
from bench_verify import PROXY
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store

from mtlsauth import ForwardedCert
from mtlsauth._types import Presented
from mtlsauth.testing import encode_forwarded

# Only XFCC has a target: it was the one format that cost more than a verification.
TARGETS = {"xfcc_3": Target("<=", 0.3)}

# (row id, label, preset, what the proxy forwards)
FORMATS = (
    ("url_pem", "URL-escaped PEM (nginx), leaf", "nginx"),
    ("pem_spaces", "PEM with spaces (Apache), leaf + chain", "apache"),
    ("der_base64", "base64 DER (HAProxy), leaf + chain", "haproxy"),
    ("xfcc_3", "XFCC, 3 elements (Envoy), cert + chain", "envoy"),
    ("rfc9440", "RFC 9440, leaf + chain", "rfc9440"),
)


def _presented(preset: str, chain: tuple[bytes, ...], earlier: list[str]) -> Presented:
    pairs = encode_forwarded(preset, chain)
    if preset == "envoy":  # two earlier hops already appended their elements
        name, value = pairs[0]
        pairs = [(name, ",".join([*earlier, value]))]
    return Presented(peer=PROXY, headers=tuple((k.lower(), v) for k, v in pairs))


def run(ctx: Context) -> dict[str, list[Row]]:
    h = ctx.ec
    budget = ctx.budget
    per_batch = 20 if ctx.quick else 100
    count = per_batch * (budget.rounds + 1)
    ctx.log(f"headers: issuing {count} leaves")
    chains = [h.chain_der(h.leaf()) for _ in range(count)]
    hop_chains = [h.chain_der(h.leaf(common_name=f"hop{i}")) for i in range(2)]
    earlier = [encode_forwarded("envoy", c)[0][1] for c in hop_chains]

    leaf = x509.load_der_x509_certificate(chains[0][0])
    inter = x509.load_der_x509_certificate(chains[0][1])
    verifier = PolicyBuilder().store(Store([h.root.certificate])).build_client_verifier()
    rows: list[Row] = []
    for row_id, label, preset in FORMATS:
        fwd = ForwardedCert.preset(preset, trusted_proxies=[PROXY])
        items = [_presented(preset, c, earlier) for c in chains]
        first = fwd.extract(items[0])
        if first is None:
            raise RuntimeError(f"{preset}: no certificate extracted")
        decoded = first.decode()
        if not isinstance(decoded, tuple) or decoded[0] != chains[0][0]:
            raise RuntimeError(f"{preset}: decoded chain differs from what was encoded")

        def parse(p: Presented, fwd: ForwardedCert = fwd) -> object:
            value = fwd.extract(p)
            assert value is not None
            return value.decode()

        ctx.log(f"headers: {preset}")
        runners = {
            "parse": pool_runner(parse, items[1:]),
            "verify": stmt_runner(
                "v(leaf, inters)", {"v": verifier.verify, "leaf": leaf, "inters": [inter]}
            ),
        }
        samples = compare(
            runners, budget, numbers={"parse": per_batch, "verify": max(2, per_batch // 8)}
        )
        rows.append(
            ratio_row(
                f"headers.{row_id}",
                label,
                summarise(samples, "parse", "verify"),
                subject="ForwardedCert.extract(presented).decode(), a new value each time",
                baseline="cryptography ClientVerifier.verify on one chain",
                unit="x verification",
                target=TARGETS.get(row_id),
                header_chars=sum(len(v) for _, v in items[1].headers),
            )
        )
    return {"headers": rows}
