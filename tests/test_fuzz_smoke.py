"""The fuzz targets keep working: seeds, a fixed-seed burst of structure-aware mutations, a
short coverage-guided run under atheris, and the recorded failures as strict regressions.

``make fuzz`` runs the same targets for a minute each; see ``fuzz/run.py``.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fuzz._known import PENDING, signature  # noqa: E402
from fuzz.targets import all_targets, quiet  # noqa: E402

TARGETS = all_targets()
MUTATIONS = 120


@pytest.fixture(autouse=True)
def _quiet_log() -> Iterator[None]:
    with quiet():
        yield


# Every parser that takes outside bytes has a target; a new one must be added here and there.
EXPECTED = {
    "header_url_pem",
    "header_pem",
    "header_der_base64",
    "header_traefik",
    "header_xfcc",
    "header_rfc9440",
    "header_identity",
    "chain",
    "der_identity",
    "crl",
    "ocsp",
    "dn",
    "config_toml",
    "config_yaml",
}


def test_every_parser_has_a_target_and_a_committed_corpus() -> None:
    assert set(TARGETS) == EXPECTED
    for name in TARGETS:
        seeds = list((ROOT / "fuzz" / "corpus" / name).iterdir())
        assert seeds, f"fuzz/corpus/{name} is empty: run python -m fuzz.make_corpus"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_seeds_pass_every_invariant(name: str) -> None:
    target = TARGETS[name]
    for seed in [*target.seeds(), *_committed(name)]:
        target.check(seed)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_mutations_break_no_invariant(name: str) -> None:
    """A fixed-seed burst of the structure-aware mutator; only recorded failures may appear."""
    target = TARGETS[name]
    rng = random.Random(f"mtlsauth {name}")
    pool = target.seeds()
    new: list[str] = []
    for _ in range(MUTATIONS):
        data = target.mutate(rng.choice(pool), rng)
        try:
            target.check(data)
        except Exception as exc:  # noqa: BLE001 - classified below; unknown ones fail
            if signature(exc) not in PENDING:
                new.append(f"{signature(exc)}: {exc!r} on {data[:200]!r}")
            continue
        pool.append(data)
    assert not new, "new failures:\n" + "\n".join(new)


def _committed(name: str) -> list[bytes]:
    return [p.read_bytes() for p in sorted((ROOT / "fuzz" / "corpus" / name).iterdir())]


class PendingFix(Exception):
    """The recorded failure happened again, exactly as recorded (same signature)."""


def _regressions() -> list[object]:
    cases = []
    for path in sorted((ROOT / "fuzz" / "regressions").glob("*/*")):
        target, case = path.parent.name, path.name
        sig = tuple(case.split("-", 1))
        key = (sig[0], sig[1].replace("-", ".")) if len(sig) == 2 else ("?", "?")
        marks = []
        if key in PENDING:
            marks.append(
                pytest.mark.xfail(
                    strict=True, raises=PendingFix, reason=f"pending fix: {PENDING[key]}"
                )
            )
        cases.append(pytest.param(target, path, id=f"{target}/{case}", marks=marks))
    return cases


@pytest.mark.parametrize(("target", "path"), _regressions())
def test_recorded_failure(target: str, path: Path) -> None:
    """Each input a fuzzer found that broke an invariant. Pending ones are strict xfails."""
    key = tuple(path.name.split("-", 1))
    try:
        TARGETS[target].check(path.read_bytes())
    except Exception as exc:
        if signature(exc) == (key[0], key[1].replace("-", ".")):
            raise PendingFix(f"{signature(exc)}: {exc!r}") from exc
        raise


def test_atheris_runs_every_target(tmp_path: Path) -> None:
    """A short coverage-guided run of each target, two at a time (the same entry point as
    ``make fuzz``)."""
    pytest.importorskip("atheris")
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "FUZZ_WORK": str(tmp_path)}
    names = sorted(EXPECTED)
    failures = []
    for i in range(0, len(names), 2):
        procs = [
            (
                name,
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "fuzz.run",
                        name,
                        "-runs=150",
                        "-max_len=65536",
                        "-seed=1",
                    ],
                    cwd=ROOT,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                ),
            )
            for name in names[i : i + 2]
        ]
        for name, proc in procs:
            _, err = proc.communicate(timeout=120)
            if proc.returncode != 0 or not re.search(r"Done \d+ runs", err):
                failures.append(f"{name}: exit {proc.returncode}\n{err[-3000:]}")
    assert not failures, "\n".join(failures)
