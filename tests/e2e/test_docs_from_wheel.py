"""The docs, followed as a pip user would: from a freshly built wheel in a clean virtualenv.

One test, in the order a reader goes: build the wheel, ``pip install`` it with the extras the
docs name (dependencies from the package index, mtlsauth from the wheel only), then

* the quickstart: ``python -m mtlsauth demo`` (its table as the page shows it),
  ``mtlsauth testca``/``inspect``/``verify``, ``app.py`` and ``run.py`` saved from the page
  and started, every ``curl`` of the page run against it with its output compared with
  what the page prints, the server's log lines the page shows, and ``test_policy.py``
  passing under pytest;
* every runnable python block of every page, run by ``tests/test_docs.py`` with the
  virtualenv's interpreter, so a block that leans on the source tree instead of the
  installed package fails here.

Nothing here reads ``src/``: a file the wheel does not ship, an extra that lacks a
dependency or a page that drifted from the code shows up as a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "docs" / "quickstart.md"
EXTRAS = "demo,test,flask,aiohttp,yaml,drf,prometheus,opentelemetry,oauth"


def run(
    cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fenced(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, re.S | re.M)


def block_after(text: str, phrase: str, lang: str) -> str:
    """The first ``lang`` block after the sentence that names the file it is saved as."""
    start = text.index(phrase)
    return fenced(text[start:], lang)[0]


CLOSED = "curl: (52) Empty reply from server"
# The server closing in the handshake reaches curl as either, depending on whether the close
# beats curl's last write: both mean "no HTTP answer", and the page says so.
CLOSED_FORMS = re.compile(
    r"curl: \(52\) Empty reply from server|curl: \(56\) Recv failure: Connection reset by peer"
)


def matches(expected: str, actual: str) -> bool:
    """A shown output line against the real one; ``...`` in the page stands for anything."""
    if expected == CLOSED:
        return CLOSED_FORMS.fullmatch(actual) is not None
    pattern = ".*".join(re.escape(part) for part in expected.split("..."))
    return re.fullmatch(pattern, actual) is not None


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("wheel")
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    built = run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "-w",
            str(base / "dist"),
            str(ROOT),
        ],
        base,
        env,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    [wheel] = (base / "dist").glob("mtlsauth-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(base / "venv")], check=True)
    py = base / "venv" / "bin" / "python"
    # mtlsauth itself only from the wheel; its dependencies from the index.
    installed = run([str(py), "-m", "pip", "install", "-q", f"{wheel}[{EXTRAS}]"], base, env, 600)
    assert installed.returncode == 0, installed.stderr[-2000:]
    return base / "venv"


def venv_env(venv: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    env["NO_COLOR"] = "1"
    return env


def test_the_installed_wheel_knows_its_version(venv: Path, tmp_path: Path) -> None:
    env = venv_env(venv)
    out = run(["mtlsauth", "--version"], tmp_path, env)
    assert out.returncode == 0
    assert re.fullmatch(r"mtlsauth \d+\.\d+\.\d+\S*\n", out.stdout)
    where = run(
        [str(venv / "bin" / "python"), "-c", "import mtlsauth; print(mtlsauth.__file__)"],
        tmp_path,
        env,
    )
    assert str(venv) in where.stdout  # the installed package, not the source tree


def test_quickstart_end_to_end(venv: Path, tmp_path: Path) -> None:
    page = QUICKSTART.read_text(encoding="utf-8")
    env = venv_env(venv)
    py = str(venv / "bin" / "python")

    # 1. the demo, as the page shows it
    assert 'pip install "mtlsauth[demo]"\npython -m mtlsauth demo' in page
    demo = run([py, "-m", "mtlsauth", "demo", "--color", "never"], tmp_path, env, 120)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    shown = {
        tuple(re.split(r"\s{2,}", line.strip())[:4])
        for line in fenced(page, "text")[0].splitlines()[2:]
    }
    got = {tuple(re.split(r"\s{2,}", line.strip())[:4]) for line in demo.stdout.splitlines()}
    with_nginx = shutil.which("nginx") is not None or Path("/usr/sbin/nginx").exists()
    expected = shown if with_nginx else {row for row in shown if row[0].startswith("uvicorn")}
    assert expected <= got, sorted(expected - got)

    # 2. a test PKI, and the two commands shown
    assert run(["mtlsauth", "testca", "pki"], tmp_path, env).returncode == 0
    assert run(["mtlsauth", "inspect", "pki/client-good.pem"], tmp_path, env).returncode == 0
    verdict = run(
        [
            "mtlsauth",
            "verify",
            "--ca",
            "pki/ca.pem",
            "--crl",
            "pki/crl.pem",
            "pki/client-revoked.pem",
        ],
        tmp_path,
        env,
    )
    assert verdict.returncode == 1
    assert "certificate_revoked" in verdict.stdout

    # 3-4. app.py and run.py as the page gives them, then every curl of the page
    (tmp_path / "app.py").write_text(block_after(page, "Save this as `app.py`", "python"))
    port = free_port()
    runner = block_after(page, "as `run.py`", "python").replace("8443", str(port))
    (tmp_path / "run.py").write_text(runner)
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        [py, "run.py"], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, (tmp_path / "server.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "run.py did not start"
                time.sleep(0.1)
        console = block_after(page, "Then call it", "console").replace("\\\n", "").splitlines()
        commands = [(i, line[2:]) for i, line in enumerate(console) if line.startswith("$ curl")]
        assert len(commands) >= 6
        for i, command in commands:
            shown_out = console[i + 1]
            args = command.replace("8443", str(port)).split()
            result = run([*args, "-sS"], tmp_path, env, 30)
            actual = (result.stdout + result.stderr).strip()
            assert matches(shown_out, actual), (command, shown_out, actual)
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()
    server_log = (tmp_path / "server.log").read_text()
    for shown_line in block_after(page, "The server's terminal says why", "text").splitlines():
        head = shown_line.split(" fingerprint=")[0].split(" peer=")[0]
        assert head in server_log, (head, server_log)

    # 5. the policy test, under pytest
    (tmp_path / "test_policy.py").write_text(
        block_after(page, "Save as `test_policy.py`", "python")
    )
    tested = run(
        [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_policy.py"], tmp_path, env
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "1 passed" in tested.stdout


def test_every_page_block_runs_against_the_wheel(venv: Path, tmp_path: Path) -> None:
    env = venv_env(venv)
    ini = tmp_path / "pytest.ini"
    ini.write_text("[pytest]\n")
    result = run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-c",
            str(ini),
            "--rootdir",
            str(tmp_path),
            "--noconftest",
            str(ROOT / "tests" / "test_docs.py"),
            "-k",
            "python_block_runs or config_page_examples_load",
        ],
        tmp_path,
        env,
        300,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert re.search(r"\d+ passed", result.stdout)
