"""docs/architecture.md's pictures are drawn from the code: they fail here when they drift."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _generator():
    spec = importlib.util.spec_from_file_location(
        "architecture", ROOT / "docs/_ext/architecture.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["architecture"] = module
    spec.loader.exec_module(module)
    return module


def test_architecture_page_is_generated_from_the_code() -> None:
    gen = _generator()
    page = gen.PAGE.read_text(encoding="utf-8")
    assert page == gen.updated(page, gen.render(gen.scan())), (
        "docs/architecture.md is out of date: run python docs/_ext/architecture.py"
    )


def test_the_request_path_starts_at_an_adapter_and_reaches_the_verifier() -> None:
    gen = _generator()
    lines = gen.request_path(gen.scan())
    assert lines[0] == "mtlsauth.adapters.asgi"
    names = {line.strip().split()[0] for line in lines}
    assert {"mtlsauth._guard", "mtlsauth._verifier"} <= names
    assert not any(n.startswith("mtlsauth.adapters.") for n in names - {lines[0]})


def test_every_string_in_the_package_is_valid_unicode() -> None:
    """No string literal of the package holds a lone surrogate (an escape such as ``\\udcc3``
    in a docstring): Python 3.13 encodes docstrings as UTF-8 when it compiles a module, so
    such a literal makes ``import mtlsauth`` fail there while it works on 3.11."""
    import ast

    found = []
    for path in sorted((ROOT / "src" / "mtlsauth").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                try:
                    node.value.encode("utf-8")
                except UnicodeEncodeError:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not found, found
