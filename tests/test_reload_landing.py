"""When does a rotated file take effect? The soak (tests/e2e/test_soak.py) measures it under
load; these pin down what it found, deterministically.

A revocation is meant to land when the CRL swap has completed and one ``reload_interval`` has
passed. While one request thread is loading the changed files, ``FileSnapshot.current()`` makes
every other thread wait for that load (it used to hand them the previous value, so requests
arriving during a load were judged by the old CRL). Files rewritten in place faster than the
250 ms write-quiet period are not read until the rewrites stop: a deliberate limit, see the
second test.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from mtlsauth._reload import FileSnapshot

pytestmark = pytest.mark.slow  # real clocks and racing threads


def test_a_request_after_the_interval_never_gets_the_value_a_reload_is_replacing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "crl.pem"
    path.write_text("old")
    loading = threading.Event()
    release = threading.Event()

    def loader(files: list[Path]) -> str:
        text = files[0].read_text()
        if text != "old":
            loading.set()
            release.wait(5)  # a slow load: a big CRL on a busy machine
        return text

    snap = FileSnapshot(
        [path], accept=lambda _: True, loader=loader, reload_interval=0.05, what="t"
    )
    path.write_text("revoking")
    time.sleep(0.4)  # interval and the 250 ms write-quiet period passed: the file has landed

    first = threading.Thread(target=snap.current)
    first.start()
    if not loading.wait(2):
        raise RuntimeError("the reload never started")  # a broken setup, not the race
    seen: list[str] = []
    second = threading.Thread(target=lambda: seen.append(snap.current()))
    second.start()  # a request arriving after the landing, during the load
    time.sleep(0.2)
    release.set()
    first.join(5)
    second.join(5)
    assert seen == ["revoking"]


def test_files_rewritten_in_place_faster_than_the_quiet_period_land_once_they_settle(
    tmp_path: Path,
) -> None:
    """A reload reads no file younger than 250 ms. Rewritten in place every 50 ms, the file is
    not read while the rotations go on: from its stat signature and age, a version that stays
    for 50 ms cannot be told from a writer that paused for 50 ms half-way through the file (a
    trust bundle cut after its intermediate would make that intermediate an anchor; see
    ``test_a_ca_bundle_rewritten_in_place_is_never_read_half_way``). The last version lands
    as soon as the rotations stop: within one interval plus the quiet period."""
    path = tmp_path / "crl.pem"
    path.write_text("v0")
    snap = FileSnapshot(
        [path], accept=lambda _: True, loader=lambda f: f[0].read_text(), reload_interval=0.05,
        what="t",
    )  # fmt: skip
    stop = threading.Event()
    written: list[str] = []

    def rotate() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            path.write_text(f"v{n}")
            written.append(f"v{n}")
            time.sleep(0.05)

    writer = threading.Thread(target=rotate)
    writer.start()
    seen = set()
    deadline = time.monotonic() + 1.0
    try:
        while time.monotonic() < deadline:
            seen.add(snap.current())
            time.sleep(0.01)
    finally:
        stop.set()
        writer.join(5)
    assert seen == {"v0"}
    assert len(written) > 10  # the rotations really were faster than the quiet period
    settled = time.monotonic() + 2.0
    while snap.current() != written[-1] and time.monotonic() < settled:
        time.sleep(0.01)
    assert snap.current() == written[-1]
