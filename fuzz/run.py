"""Run the fuzz targets under atheris (coverage-guided, libFuzzer).

    python -m fuzz.run TARGET [libFuzzer options]     one target, e.g. -max_total_time=60
    python -m fuzz.run --all [--seconds 60]           every target in turn, then a table
    python -m fuzz.run --list

New inputs go to ``.fuzz-work/TARGET/`` (not committed); the committed seeds in
``fuzz/corpus/TARGET/`` are read too. A failure with a new signature stops the target and
leaves ``.fuzz-work/TARGET/crash-*``; known ones (``fuzz/_known.py``) are counted and skipped.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"
WORK = Path(os.environ.get("FUZZ_WORK", ROOT / ".fuzz-work"))


def _fuzz_one(name: str, libfuzzer_args: list[str]) -> None:
    import atheris

    with atheris.instrument_imports(include=["mtlsauth", "fuzz"]):
        from fuzz._known import PENDING, signature
        from fuzz.targets import all_targets

    from fuzz.targets import quiet

    quiet().__enter__()  # for the life of this process
    target = all_targets()[name]
    known: dict[tuple[str, str], int] = {}

    def test_one_input(data: bytes) -> None:
        try:
            target.check(data)
        except Exception as exc:
            sig = signature(exc)
            if sig not in PENDING:
                raise
            if sig not in known:
                print(f"known failure {sig}: {PENDING[sig]}", file=sys.stderr, flush=True)
            known[sig] = known.get(sig, 0) + 1

    def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
        rng = random.Random(seed)
        if rng.random() < 0.5:
            try:
                out = target.mutate(data, rng)
            except Exception:
                out = data
        else:
            out = atheris.Mutate(data, max_size)
        return out[:max_size]

    work = WORK / name
    work.mkdir(parents=True, exist_ok=True)
    seeds = CORPUS / name
    argv = [sys.argv[0], *libfuzzer_args, f"-artifact_prefix={work}/", str(work), str(seeds)]
    import atexit

    atexit.register(
        lambda: print(f"known failures: {sum(known.values())} {sorted(known)}", file=sys.stderr)
    )
    atheris.Setup(argv, test_one_input, custom_mutator=custom_mutator)
    atheris.Fuzz()


_DONE = re.compile(r"Done (\d+) runs in (\d+) second")
_COV = re.compile(r"cov: (\d+) ft: (\d+) corp: (\d+)")


def run_all(seconds: int, names: list[str]) -> int:
    rows = []
    failed = []
    for name in names:
        t0 = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "fuzz.run", name, f"-max_total_time={seconds}",
             "-print_final_stats=1", "-rss_limit_mb=4096", "-max_len=65536"],
            cwd=ROOT, capture_output=True, text=True, check=False,
        )  # fmt: skip
        err = proc.stderr
        (WORK / f"{name}.log").parent.mkdir(parents=True, exist_ok=True)
        (WORK / f"{name}.log").write_text(err)
        execs = _DONE.findall(err)
        execs_n = int(execs[-1][0]) if execs else _last_exec(err)
        cov = _COV.findall(err)
        cov_s, ft_s, corp_s = cov[-1] if cov else ("?", "?", "?")
        known = [str(len(set(re.findall(r"^known failure (\(.*?\)):", err, re.MULTILINE))))]
        status = "ok" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
        if proc.returncode != 0:
            failed.append(name)
        rows.append((name, execs_n, cov_s, ft_s, corp_s, known[-1] if known else "0", status,
                     time.monotonic() - t0))  # fmt: skip
        print(f"{name:18} execs={execs_n} cov={cov_s} ft={ft_s} corpus={corp_s} "
              f"known={rows[-1][5]} {status}", flush=True)  # fmt: skip
    print(
        "\n| target | executions | coverage (edges) | features | corpus | known failure kinds | result |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for name, execs_n, cov_s, ft_s, corp_s, known_n, status, _t in rows:
        print(f"| {name} | {execs_n} | {cov_s} | {ft_s} | {corp_s} | {known_n} | {status} |")
    print(f"total executions: {sum(int(r[1]) for r in rows)}")
    for name in failed:
        print(f"{name}: see {WORK / name}/crash-* and {WORK / (name + '.log')}")
    return 1 if failed else 0


def _last_exec(err: str) -> int:
    found = re.findall(r"^#(\d+)", err, re.MULTILINE)
    return int(found[-1]) if found else 0


def main() -> int:
    if len(sys.argv) > 1 and not sys.argv[1].startswith("-"):
        _fuzz_one(sys.argv[1], sys.argv[2:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--all", action="store_true")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--seconds", type=int, default=int(os.environ.get("FUZZ_SECONDS", "60")))
    parser.add_argument("--only", nargs="*", default=None)
    args = parser.parse_args()
    from fuzz.targets import all_targets

    names = list(all_targets())
    if args.list:
        for name, t in all_targets().items():
            print(f"{name:18} {t.doc}")
        return 0
    return run_all(args.seconds, args.only or names)


if __name__ == "__main__":
    sys.exit(main())
