"""Where an uncached verification spends its time, stage by stage (a profiling aid, not a
measurement with a target).

Runs ``Verifier.verify`` on fresh chains (a CRL for each CA and a three-field policy, as in
measurement 2) with a ``perf_counter`` timer around each stage, in place, and prints the
median per stage. The timers cost about 0.2 µs each, so the stages add up to a little more
than the untimed call; the total is printed too, with cryptography's ``ClientVerifier`` alone
on the same chains for scale.

    .venv/bin/python benchmarks/stages.py                   # P-256
    .venv/bin/python benchmarks/stages.py --rsa             # RSA-2048
    .venv/bin/python benchmarks/stages.py --interference    # see below

``--interference`` times cryptography's verification alone, once right after another one (a
tight loop, the baseline's setting) and once after other work: a whole mtlsauth verification
of another chain, or reading 256 KiB or 4 MiB of memory (evicting the CPU caches without
running any Python step). Both are measured in alternating batches, so the difference is
what the work before it costs cryptography's own call.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _pki import Hierarchy
from bench_verify import crlset, policy
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store

import mtlsauth._identity as identity_module
import mtlsauth._pathvalidation as path_module
import mtlsauth._verifier as verifier_module
from mtlsauth import Verifier

# (module or class, attribute, label): each is replaced by a timed wrapper.
STAGES: list[tuple[Any, str, str]] = [
    (verifier_module, "chain_to_der", "decode the input (chain_to_der)"),
    (verifier_module, "der_chain_key", "key of the presented bytes (der_chain_key)"),
    (verifier_module, "read_leaf", "read the leaf's DER (read_leaf)"),
    (verifier_module, "load_der", "parse the leaf (cryptography)"),
    (path_module, "_select", "select intermediates"),
    (path_module, "_verify_vouched", "path validation, intermediate vouched for"),
    (path_module, "_verify", "cryptography's full path validation"),
    (path_module, "check_identity_name_constraints", "name constraints on subject names"),
    (verifier_module, "check_leaf_key", "leaf key strength"),
    (verifier_module.Verifier, "_check_revocation", "revocation (CRL look-up)"),
    (verifier_module, "identity_from_certificate", "build the identity"),
    (verifier_module.Verifier, "_verify_ders", "= all of the verification (_verify_ders)"),
    (verifier_module.Verifier, "_miss", "= a miss, with cache bookkeeping (_miss)"),
]
_ = identity_module  # imported so the identity module's memos are warm like the verifier's


def _timed(label: str, fn: Callable[..., Any], times: dict[str, list[float]]) -> Callable[..., Any]:
    clock = time.perf_counter
    samples = times[label]

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = clock()
        try:
            return fn(*args, **kwargs)
        finally:
            samples.append(clock() - start)

    return wrapper


def interference(h: Hierarchy, n: int) -> None:
    inter = x509.load_der_x509_certificate(h.intermediate_der)
    leaves = [h.chain_der(h.leaf())[0] for _ in range(n)]
    chains = iter([h.chain_der(h.leaf()) for _ in range(n * 2)])
    verifier = Verifier(trust_store=h.root.trust_store(), revocation=crlset(h), policy=policy())
    baseline = PolicyBuilder().store(Store([h.root.certificate])).build_client_verifier()
    memory = bytearray(4 << 20)
    before: dict[str, Callable[[], object]] = {
        "nothing (a tight loop)": lambda: None,
        "a whole mtlsauth verification": lambda: verifier.verify(next(chains)),
        "reading 256 KiB of memory": lambda: memory.find(b"x", 0, 256 << 10),
        "reading 4 MiB of memory": lambda: memory.find(b"x"),
    }
    times: dict[str, list[float]] = {label: [] for label in before}
    batch = 20
    for start in range(0, n - batch + 1, batch):
        for label, work in before.items():
            total = 0.0
            for der in leaves[start : start + batch]:
                work()
                leaf = x509.load_der_x509_certificate(der)
                begin = time.perf_counter()
                baseline.verify(leaf, [inter])
                total += time.perf_counter() - begin
            times[label].append(total / batch)
    print("cryptography ClientVerifier.verify alone, after (median µs of batches):")
    for label, samples in times.items():
        print(f"  {label:48s} {statistics.median(samples) * 1e6:7.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rsa", action="store_true", help="RSA-2048 instead of P-256")
    parser.add_argument("-n", type=int, default=2000, help="fresh chains to verify")
    parser.add_argument("--interference", action="store_true", help="see the module's doc")
    args = parser.parse_args()
    h = Hierarchy.create("rsa" if args.rsa else "ec")
    if args.interference:
        interference(h, args.n)
        return
    chains = [h.chain_der(h.leaf()) for _ in range(args.n + 1)]
    inter = x509.load_der_x509_certificate(h.intermediate_der)
    parsed = [x509.load_der_x509_certificate(c[0]) for c in chains]
    baseline = PolicyBuilder().store(Store([h.root.certificate])).build_client_verifier()

    untimed = Verifier(trust_store=h.root.trust_store(), revocation=crlset(h), policy=policy())
    untimed.verify(chains[0])
    whole = []
    for chain in chains[1:]:
        start = time.perf_counter()
        untimed.verify(chain)
        whole.append(time.perf_counter() - start)
    alone = []
    for leaf in parsed[1:]:
        start = time.perf_counter()
        baseline.verify(leaf, [inter])
        alone.append(time.perf_counter() - start)

    times: dict[str, list[float]] = defaultdict(list)
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in STAGES]
    try:
        for owner, name, label in STAGES:
            setattr(owner, name, _timed(label, getattr(owner, name), times))
        timed = Verifier(trust_store=h.root.trust_store(), revocation=crlset(h), policy=policy())
        timed.verify(chains[0])
        for samples in times.values():  # the first call's one-off costs
            samples.clear()
        for chain in [h.chain_der(h.leaf()) for _ in range(args.n)]:
            timed.verify(chain)
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)

    kind = "RSA-2048" if args.rsa else "P-256"
    print(f"{kind}, {args.n} fresh chains, CRLs for both CAs, a three-field policy (median µs)")
    for _, _, label in STAGES:
        if times[label]:
            print(f"  {label:48s} {statistics.median(times[label]) * 1e6:7.1f}")
        else:
            print(f"  {label:48s}  not run")
    print(f"  {'Verifier.verify, untimed':48s} {statistics.median(whole) * 1e6:7.1f}")
    print(
        f"  {'cryptography ClientVerifier.verify alone':48s} {statistics.median(alone) * 1e6:7.1f}"
    )


if __name__ == "__main__":
    main()
