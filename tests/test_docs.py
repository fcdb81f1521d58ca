"""Every ```python block in docs/*.md and README.md runs, and the site builds strictly.

Each block runs in a fresh namespace, in a fresh working folder that holds a test PKI under
the names the docs use (``clients-ca.pem``, ``crls/``, ``pki/``, ``mtls.toml``...). Functions
named ``test_*`` that a block defines are then called, with the pytest plugin's fixtures
(``mtls_ca``, ``client_cert``, ``forwarded_headers``, ``asgi_tls_scope``) and ``parametrize``
marks honoured, so a test shown in the docs really passes.

A block is left out only with a visible marker on the line(s) just above its fence:
``<!-- not-run: reason -->``. Every marker must give a reason, and a block that starts a
server (``uvicorn.run``, ``app.run``, ``web.run_app``...) must carry one.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SOURCES = [*sorted(DOCS.glob("*.md")), ROOT / "README.md"]
NOT_RUN = re.compile(r"^<!--\s*not-run:(.*?)-->\s*$")
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")
STARTS_SERVER = re.compile(
    r"\b(uvicorn\.run|\.run_app|web\.run_app|serve_forever|app\.run\(|\.serve\(|gunicorn)"
)


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    not_run: str | None  # None: runs; else the marker's reason ("" if none was given)

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks(path: Path) -> list[Block]:
    out: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = m.groups()
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            j += 1
        body = [ln[len(indent) :] if ln.startswith(indent) else ln for ln in lines[i + 1 : j]]
        k = i - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        marker = NOT_RUN.match(lines[k].strip()) if k >= 0 else None
        reason = marker.group(1).strip() if marker else None
        out.append(Block(path, i + 1, lang.lower(), "\n".join(body) + "\n", reason))
        i = j + 1
    return out


ALL = [b for p in SOURCES if p.exists() for b in blocks(p)]
PYTHON = [b for b in ALL if b.lang in ("python", "py")]


@pytest.fixture(scope="session")
def docs_folder(tmp_path_factory) -> Path:
    """The template working folder: a test PKI under the names the docs use."""
    from mtlsauth._cli._testpki import write_test_pki
    from mtlsauth.testing import self_signed_client_cert

    base = tmp_path_factory.mktemp("docs-template")
    pki = write_test_pki(base / "pki")
    shutil.copy(pki.path("ca.pem"), base / "clients-ca.pem")
    for name in ("server.pem", "server.key"):
        shutil.copy(pki.path(name), base / name)
    (base / "crls").mkdir()
    shutil.copy(pki.path("crl.pem"), base / "crls" / "crl.pem")
    (base / "ca.d").mkdir()
    shutil.copy(pki.path("ca.pem"), base / "ca.d" / "root.pem")
    self_signed_client_cert(common_name="kiosk").cert_pem.write_to_path(base / "kiosk.pem")
    for name in ("mtls.toml", "mtls.yaml"):
        shutil.copy(ROOT / "examples" / name, base / name)
    return base


@pytest.fixture
def workdir(docs_folder, tmp_path, monkeypatch) -> Path:
    target = tmp_path / "work"
    shutil.copytree(docs_folder, target)
    monkeypatch.chdir(target)
    return target


def _fixtures(tmp_path: Path) -> dict[str, object]:
    from mtlsauth.pytest_plugin import build_asgi_tls_scope, build_forwarded_headers
    from mtlsauth.testing import CA

    ca = CA(organization="docs test CA")
    return {
        "mtls_ca": ca,
        "client_cert": lambda **kw: ca.issue_client_cert(**kw),
        "forwarded_headers": build_forwarded_headers,
        "asgi_tls_scope": build_asgi_tls_scope,
        "tmp_path": tmp_path,
    }


def _param_sets(fn: object) -> list[dict[str, object]]:
    combos: list[dict[str, object]] = [{}]
    for mark in getattr(fn, "pytestmark", []):
        if mark.name != "parametrize":
            continue
        names = mark.args[0]
        names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
        new = []
        for combo in combos:
            for value in mark.args[1]:
                value = getattr(value, "values", value)  # pytest.param(...)
                values = value if len(names) > 1 else (value,)
                new.append({**combo, **dict(zip(names, values, strict=True))})
        combos = new
    return combos


def run_tests_in(namespace: dict[str, object], tmp_path: Path, where: str) -> int:
    """Call every test_* function the block defined; return how many calls ran."""
    calls = 0
    for name, fn in list(namespace.items()):
        if not (name.startswith("test_") and inspect.isfunction(fn)):
            continue
        for params in _param_sets(fn):
            available = {**_fixtures(tmp_path), **params}
            wanted = inspect.signature(fn).parameters
            missing = [p for p in wanted if p not in available]
            assert not missing, f"{where}: {name} needs fixtures the docs test lacks: {missing}"
            fn(**{p: available[p] for p in wanted})
            calls += 1
    return calls


@pytest.mark.parametrize("block", [b for b in PYTHON if b.not_run is None], ids=lambda b: b.where)
def test_python_block_runs(block, workdir):
    namespace: dict[str, object] = {"__name__": "__docs__"}
    code = compile(block.code, block.where, "exec")
    exec(code, namespace)  # noqa: S102 - running our own documentation is the point
    run_tests_in(namespace, workdir, block.where)


def test_every_not_run_marker_has_a_reason():
    bad = [b.where for b in PYTHON if b.not_run is not None and len(b.not_run) < 8]
    assert bad == [], "write <!-- not-run: why this block cannot run as is -->"


def test_blocks_that_start_servers_are_marked():
    unmarked = [b.where for b in PYTHON if b.not_run is None and STARTS_SERVER.search(b.code)]
    assert unmarked == [], "a block that starts a server needs <!-- not-run: reason -->"


def test_docs_have_python_blocks():
    # guards the extractor itself: if it silently found nothing, every test above would pass
    assert len(PYTHON) >= 20
    names = {b.path.name for b in PYTHON}
    assert {"index.md", "quickstart.md", "testing.md", "config.md"} <= names


CONFIG_BLOCKS = [
    b
    for b in ALL
    if b.path.name == "config.md" and b.lang in ("toml", "yaml") and "trust" in b.code
]


@pytest.mark.parametrize("block", CONFIG_BLOCKS, ids=lambda b: b.where)
def test_config_page_examples_load(block, workdir):
    from mtlsauth._config import load_config

    if block.lang == "yaml":
        pytest.importorskip("yaml")
    path = workdir / ("docs-example." + block.lang)
    path.write_text(block.code)
    config = load_config(path)
    assert config.verifier() is not None


def test_security_page_lists_every_error_code():
    from mtlsauth import _errors, _guard, _oauth, _oauth_client

    rows = re.findall(r"^\| `([a-z_]+)` \| (\d{3}) \|", (DOCS / "security.md").read_text(), re.M)
    documented = {code: int(status) for code, status in rows}
    classes = [
        c
        for module in (_errors, _oauth, _oauth_client)
        for c in vars(module).values()
        if isinstance(c, type) and issubclass(c, _errors.MTLSAuthError)
    ]
    classes.append(getattr(_errors, "InternalError", None) or _guard.InternalError)
    # The status may depend on the code (bearer-token refusals: 400, 401 or 403).
    actual = {
        code: c(code=code).status for c in classes for code in c.codes if code != "access_denied"
    }
    assert documented == actual


def test_cli_page_names_every_subcommand():
    from mtlsauth._cli._main import build_parser

    text = (DOCS / "cli.md").read_text()
    sub = next(a for a in build_parser()._subparsers._group_actions)  # type: ignore[union-attr]
    for command in sub.choices:  # type: ignore[union-attr]
        assert f"## `mtlsauth {command}`" in text


@pytest.mark.slow
def test_mkdocs_build_strict(tmp_path):
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed (pip install -e '.[docs]')")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=env, check=False,
    )  # fmt: skip
    warnings = [ln for ln in proc.stderr.splitlines() if "WARNING" in ln or "ERROR" in ln]
    assert proc.returncode == 0, "\n".join(warnings) or proc.stderr[-2000:]


@pytest.mark.parametrize(
    "block", [b for b in PYTHON if b.not_run is not None], ids=lambda b: b.where
)
def test_not_run_python_block_compiles(block):
    # A block that cannot run here (it starts a server, needs a Django project) is still
    # copied as is by a reader: it must at least be valid Python.
    compile(block.code, block.where, "exec")
