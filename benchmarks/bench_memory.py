"""Measurement 7: resident memory of a verifier holding 10,000 cached identities.

Run in a fresh subprocess so nothing else the benchmarks allocated blurs the numbers. The
child issues the certificates and builds every request first, warms up with another
verifier (imports, lazy tables), then reads its resident set size (RSS), fills a new
verifier's cache with N distinct nginx-header requests, collects garbage and reads RSS again.
The difference over N is what one cached entry costs: the parsed certificate, the identity,
the key and the LRU slot, allocator overhead included.

For scale, the same child measures a plain dict holding each leaf's DER under its SHA-256
(what any cache must keep at the very least).

Usage (the child): ``python benchmarks/bench_memory.py --entries 10000``
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGET_BYTES = 4096


def _rss() -> int:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def child(entries: int) -> dict[str, float]:
    sys.path.insert(0, str(HERE))
    from _pki import Hierarchy
    from bench_verify import header_request, nginx_forwarded

    from mtlsauth import Verifier

    h = Hierarchy.create("ec")
    warm = [header_request(h, h.leaf())[0] for _ in range(200)]
    leaves = [h.leaf() for _ in range(entries)]
    requests = [header_request(h, leaf)[0] for leaf in leaves]
    ders = [h.chain_der(leaf)[0] for leaf in leaves]
    del leaves

    def verifier() -> Verifier:
        return Verifier(
            trust_store=h.root.trust_store(),
            intermediates=[h.intermediate.certificate],
            forwarded=nginx_forwarded(),
            cache_size=entries + len(warm),
        )

    scratch = verifier()
    for p in warm:
        scratch.authenticate(p)
    del scratch
    gc.collect()

    subject = verifier()
    before = _rss()
    for p in requests:
        subject.authenticate(p)
    gc.collect()
    after = _rss()
    held = subject.health()["cache"]["entries"]  # type: ignore[index]
    if held != entries:
        raise RuntimeError(f"cache holds {held} entries, expected {entries}")

    floor_before = _rss()
    floor = {hashlib.sha256(d).digest(): bytes(memoryview(d)) for d in ders}  # copies
    gc.collect()
    floor_after = _rss()
    assert len(floor) == entries
    return {
        "entries": entries,
        "rss_delta_bytes": after - before,
        "bytes_per_entry": (after - before) / entries,
        "floor_bytes_per_entry": (floor_after - floor_before) / entries,
        "rss_after_mib": after / 2**20,
    }


def run(ctx):  # type: ignore[no-untyped-def]
    from _report import Row, Target

    entries = 500 if ctx.quick else 10_000
    samples = []
    for _ in range(1):  # deterministic enough: one child
        ctx.log(f"memory: child process with {entries:,} cached identities")
        out = subprocess.run(
            [sys.executable, str(Path(__file__)), "--entries", str(entries)],
            check=True,
            capture_output=True,
            text=True,
            timeout=300,
        )
        samples.append(json.loads(out.stdout.strip().splitlines()[-1]))
    samples.sort(key=lambda s: s["bytes_per_entry"])
    mid = samples[len(samples) // 2]
    row = Row(
        "memory.per_entry",
        f"RSS per cached identity ({entries:,} held)",
        mid["bytes_per_entry"],
        "bytes",
        Target("<=", TARGET_BYTES),
        subject="Verifier cache: nginx-header requests, one entry each",
        baseline="dict of sha256 -> leaf DER (the least a cache keeps)",
        details={
            **mid,
            "subject_text": f"{mid['bytes_per_entry']:,.0f} B",
            "baseline_text": f"{mid['floor_bytes_per_entry']:,.0f} B",
            "runs": [s["bytes_per_entry"] for s in samples],
        },
    )
    return {"memory": [row]}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=10_000)
    args = parser.parse_args()
    print(json.dumps(child(args.entries)))
