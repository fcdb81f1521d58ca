"""`mtlsauth demo`, run once for real: uvicorn with direct TLS (and nginx when installed)."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import pytest

from mtlsauth._cli._main import main

pytestmark = pytest.mark.e2e

DIRECT = {
    # case: (HTTP status or None for a refused handshake, code)
    "valid": (200, "ok"),
    "expired": (None, None),
    "revoked": (401, "certificate_revoked"),
    "wrong CA": (None, None),
    "wrong organization": (403, "organization_not_allowed"),
    "no certificate": (401, "certificate_missing"),
}
NGINX = {
    "valid": (200, "ok"),
    "expired": (400, "refused by nginx"),  # optional_no_ca still refuses expired certificates
    "revoked": (401, "certificate_revoked"),
    "wrong CA": (401, "untrusted_issuer"),  # optional_no_ca passes it on; mtlsauth refuses
    "wrong organization": (403, "organization_not_allowed"),
    "no certificate": (401, "certificate_missing"),
}


@pytest.fixture(scope="module")
def demo():
    import io
    import sys

    stdout, real = io.StringIO(), sys.stdout
    before = set(threading.enumerate())
    sys.stdout = stdout
    try:
        code = main(["demo", "--json"])
    finally:
        sys.stdout = real
    left = [t.name for t in set(threading.enumerate()) - before if t.is_alive()]
    return code, json.loads(stdout.getvalue()), left


def rows(demo, setup: str) -> dict[str, tuple[int | None, str | None]]:
    out = {}
    for r in demo[1]["rows"]:
        if r["setup"] == setup:
            refused = r["status"] is None
            out[r["case"]] = (r["status"], None if refused else r["code"])
            if refused:
                assert r["identity"] == "TLS handshake refused"
    return out


def test_demo_direct_tls_table(demo):
    code, data, _ = demo
    assert code == 0
    assert rows(demo, "uvicorn, direct TLS") == DIRECT
    valid = next(r for r in data["rows"] if r["case"] == "valid")
    assert valid["identity"] == "CN=alice, O=Example Corp"
    assert data["seconds"] < 60


def test_demo_behind_nginx(demo):
    if shutil.which("nginx") is None and not os.path.exists("/usr/sbin/nginx"):
        assert any("nginx is not installed" in n for n in demo[1]["notes"])
        return
    assert rows(demo, "nginx -> uvicorn") == NGINX


def _children() -> list[str]:
    """Names of this process's child processes (Linux /proc), e.g. a forgotten nginx."""
    me, names = os.getpid(), []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            pid_comm, _, rest = stat.read_text().rpartition(")")
        except OSError:
            continue
        if int(rest.split()[1]) == me:
            names.append(pid_comm.partition("(")[2])
    return names


def test_demo_stops_everything(demo):
    # uvicorn ran in threads of this process, nginx as a child: nothing may be left running.
    assert demo[2] == []
    if Path("/proc/self/stat").exists():
        assert "nginx" not in _children()


def test_demo_table_is_plain_when_piped(capsys):
    code = main(["demo", "--no-nginx"])
    out = capsys.readouterr().out
    assert code == 0
    assert "\x1b[" not in out
    header = next(line for line in out.splitlines() if line.startswith("setup"))
    assert header.split() == ["setup", "case", "HTTP", "code", "identity"]
    assert "nginx part skipped" in out
    assert "TLS handshake refused" in out
