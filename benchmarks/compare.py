"""Two revisions of mtlsauth side by side in one process: is a change to the uncached
verification faster, and by how much? (A profiling aid, not a measurement with a target.)

On a shared two-core machine, two runs of ``benchmarks/run.py`` minutes apart differ by 5%
or more, more than most single steps gain, so a before/after of two runs says little. This
script loads the working tree's ``mtlsauth`` and another revision's (``git archive`` of its
``src/mtlsauth``, renamed ``mtlsauth_base`` in a temporary directory) into the same
interpreter and verifies fresh chains with each in turn, request by request (base, new,
then new, base), with cryptography's ``ClientVerifier`` alone after each pair for scale:
whatever slows the machine slows all three alike.

    .venv/bin/python benchmarks/compare.py                    # HEAD against the working tree
    .venv/bin/python benchmarks/compare.py --base HEAD~3 --rsa -n 4000

Printed: the median per verification of each, the median of the per-pair ratios new/base
with their 25th-75th percentiles, and each against cryptography alone (measurement 2's ratio).
"""

from __future__ import annotations

import argparse
import io
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _pki import Hierarchy
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store

import mtlsauth

HERE = Path(__file__).resolve().parent
_IMPORTS = re.compile(r"\bmtlsauth(?=[.\s])")


def export_base(revision: str, into: Path) -> None:
    """``src/mtlsauth`` of ``revision`` as the package ``mtlsauth_base`` under ``into``."""
    root = Path(
        subprocess.run(
            ["git", "rev-parse", "--show-toplevel"],
            cwd=HERE,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    archive = subprocess.run(
        ["git", "archive", "--format=tar", revision, "src/mtlsauth"],
        cwd=root,
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    package = into / "mtlsauth_base"
    (into / "src" / "mtlsauth").rename(package)
    for path in package.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        # Absolute imports of the package's own modules: "mtlsauth." and "from mtlsauth import".
        path.write_text(_IMPORTS.sub("mtlsauth_base", text), encoding="utf-8")


def verifier(module: ModuleType, h: Hierarchy) -> Any:
    """Measurement 2's verifier (a CRL for each CA, a three-field policy) from ``module``."""
    return module.Verifier(
        trust_store=module.TrustStore.from_certificates([h.root.certificate]),
        revocation=module.CRLSet.from_der(*h.crls_der(10), scope="chain"),
        policy=module.Policy(
            organizations={"payments", "billing"},
            common_names={"ledger", "invoicing", "reports"},
            dns_names={"*.payments.svc"},
        ),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="HEAD", help="the revision to compare against")
    parser.add_argument("--rsa", action="store_true", help="RSA-2048 instead of P-256")
    parser.add_argument("-n", type=int, default=3000, help="fresh chains per side")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mtlsauth-compare-") as tmp:
        export_base(args.base, Path(tmp))
        sys.path.insert(0, tmp)
        import mtlsauth_base  # type: ignore[import-not-found]

        h = Hierarchy.create("rsa" if args.rsa else "ec")
        n = args.n
        chains = [h.chain_der(h.leaf()) for _ in range(2 * n + 2)]
        base, new = verifier(mtlsauth_base, h), verifier(mtlsauth, h)
        base.verify(chains[-1])  # the first call's one-off costs
        new.verify(chains[-2])
        inter = x509.load_der_x509_certificate(h.intermediate_der)
        leaves = [x509.load_der_x509_certificate(c[0]) for c in chains[:n]]
        alone = PolicyBuilder().store(Store([h.root.certificate])).build_client_verifier()
        clock = time.perf_counter
        times: dict[str, list[float]] = {"base": [], "new": [], "alone": []}
        for i in range(n):
            first, second = chains[2 * i], chains[2 * i + 1]
            order = ((base, "base"), (new, "new")) if i % 2 else ((new, "new"), (base, "base"))
            for (subject, label), chain in zip(order, (first, second), strict=True):
                start = clock()
                subject.verify(chain)
                times[label].append(clock() - start)
            start = clock()
            alone.verify(leaves[i], [inter])
            times["alone"].append(clock() - start)

    # Per pair: the two verifications of a pair ran back to back, on the same machine state.
    ratios = [b / a for a, b in zip(times["base"], times["new"], strict=True)]
    quartiles = statistics.quantiles(ratios, n=4)
    med = {label: statistics.median(samples) * 1e6 for label, samples in times.items()}
    kind = "RSA-2048" if args.rsa else "P-256"
    print(f"{kind}, {n} fresh chains each, base {args.base} against the working tree")
    print(f"  {'base':>6} {med['base']:8.1f} µs   {med['base'] / med['alone']:.3f}x alone")
    print(f"  {'new':>6} {med['new']:8.1f} µs   {med['new'] / med['alone']:.3f}x alone")
    print(f"  {'alone':>6} {med['alone']:8.1f} µs   cryptography's ClientVerifier")
    print(
        f"  new/base {statistics.median(ratios):.3f} "
        f"(25th-75th percentile of {len(ratios)} pairs: {quartiles[0]:.3f}-{quartiles[2]:.3f})"
    )


if __name__ == "__main__":
    main()
