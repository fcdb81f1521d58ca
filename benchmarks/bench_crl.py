"""Measurement 3: CRL look-up at 10, 10,000 and 100,000 entries, and the one-time load cost.

The look-up is ``CRLSet.check`` on a validated chain (leaf -> intermediate -> root, mode
"chain": two certificates in scope), exactly what every verification and every cache hit
runs. Its cost must not grow with the CRL: the 100k look-up is compared with the 10-entry one
in the same rounds. The serials looked up are not revoked (the common case, and the worst
case for a list scan).

For contrast, cryptography's own ``get_revoked_certificate_by_serial_number`` (a scan of the
list) is timed on the same 100k CRL against the same CRLSet look-up.

Load cost: ``CRLSet.from_der`` plus the first check (which verifies the CRL's signature
against the issuing CA, once per snapshot), reported in milliseconds and as a multiple of
the least any loader must do: parse the DER and walk every entry once.
"""

from __future__ import annotations

import statistics
import time
from datetime import datetime, timezone

from _context import Context
from _report import Row, Target, ratio_row
from _timing import compare, stmt_runner, summarise
from cryptography import x509

from mtlsauth import CRLSet

SIZES = (10, 10_000, 100_000)
LOOKUP_TARGET = Target("<=", 1.2)


def _validated_chains(ctx: Context, count: int) -> list[tuple[x509.Certificate, ...]]:
    h = ctx.ec
    root = h.root.certificate
    inter = h.intermediate.certificate
    return [(h.leaf(), inter, root) for _ in range(count)]


def _load(root_crl: bytes, inter_crl: bytes, chain: tuple[x509.Certificate, ...]) -> float:
    t0 = time.perf_counter()
    crls = CRLSet.from_der(root_crl, inter_crl)
    crls.check(chain, at=datetime.now(timezone.utc))
    return time.perf_counter() - t0


def _parse_and_walk(inter_crl: bytes) -> float:
    t0 = time.perf_counter()
    crl = x509.load_der_x509_crl(inter_crl)
    for entry in crl:
        entry.serial_number  # noqa: B018 - the walk is the point
    return time.perf_counter() - t0


def run(ctx: Context) -> dict[str, list[Row]]:
    h = ctx.ec
    chains = _validated_chains(ctx, 16)
    crl_bytes: dict[int, tuple[bytes, bytes]] = {}
    sets: dict[int, CRLSet] = {}
    for size in SIZES:
        ctx.log(f"CRL: encoding and loading {size:,} entries")
        crl_bytes[size] = h.crls_der(size)
        sets[size] = CRLSet.from_der(*crl_bytes[size])
    now = datetime.now(timezone.utc)
    for crls in sets.values():
        for chain in chains:
            crls.check(chain, at=now)  # verifies each CRL's signature once, like a real first use

    ctx.log("CRL: look-ups, interleaved")
    stmt = "for c in chains: check(c, at=now)"
    runners = {
        f"n{size}": stmt_runner(stmt, {"chains": chains, "check": sets[size].check, "now": now})
        for size in SIZES
    }
    samples = compare(runners, ctx.budget)
    per_chain = {k: [s / len(chains) for s in v] for k, v in samples.items()}
    rows: list[Row] = []
    for size in SIZES[1:]:
        rows.append(
            ratio_row(
                f"crl_lookup.n{size}",
                f"look-up at {size:,} entries",
                summarise(per_chain, f"n{size}", "n10"),
                subject=f"CRLSet.check(chain) with {size:,} revoked serials",
                baseline="CRLSet.check(chain) with 10 revoked serials",
                target=LOOKUP_TARGET if size == 100_000 else None,
                unit="x 10-entry look-up",
                entries=size,
            )
        )

    ctx.log("CRL: cryptography's linear look-up, for contrast")
    big = x509.load_der_x509_crl(crl_bytes[100_000][1])
    leaf_serial = chains[0][0].serial_number
    scan = stmt_runner(
        "find(serial)",
        {"find": big.get_revoked_certificate_by_serial_number, "serial": leaf_serial},
    )
    ours = stmt_runner(
        "check(chain, at=now)", {"check": sets[100_000].check, "chain": chains[0], "now": now}
    )
    scan_budget = ctx.budget if not ctx.quick else ctx.budget.scaled(2)
    scan_samples = compare(
        {"scan": scan, "ours": ours},
        scan_budget,
        numbers={"scan": 1 if ctx.quick else 3, "ours": 2000},
    )
    rows.append(
        ratio_row(
            "crl_lookup.linear_scan_100k",
            "cryptography's scan at 100,000 (contrast)",
            summarise(scan_samples, "scan", "ours"),
            subject="CertificateRevocationList.get_revoked_certificate_by_serial_number",
            baseline="CRLSet.check(chain) at 100,000 entries (two look-ups)",
            unit="x CRLSet look-up",
        )
    )

    ctx.log("CRL: one-time load cost")
    repeats = 1 if ctx.quick else 5
    for size in SIZES:
        root_crl, inter_crl = crl_bytes[size]
        loads, walks = [], []
        for i in range(repeats):  # interleaved: load, walk, walk, load, ...
            if i % 2 == 0:
                loads.append(_load(root_crl, inter_crl, chains[0]))
                walks.append(_parse_and_walk(inter_crl))
            else:
                walks.append(_parse_and_walk(inter_crl))
                loads.append(_load(root_crl, inter_crl, chains[0]))
        load_s, walk_s = statistics.median(loads), statistics.median(walks)
        rows.append(
            Row(
                f"crl_load.n{size}",
                f"load + first check, {size:,} entries",
                load_s / walk_s,
                "x parse+walk",
                None,
                subject="CRLSet.from_der + first check (signature verified once)",
                baseline="load_der_x509_crl + walking every entry",
                details={
                    "subject_us": load_s * 1e6,
                    "baseline_us": walk_s * 1e6,
                    "entries": size,
                    "crl_bytes": len(inter_crl),
                    "per_entry_us": load_s * 1e6 / size,
                    "repeats": repeats,
                },
            )
        )
    return {"crl": rows}
