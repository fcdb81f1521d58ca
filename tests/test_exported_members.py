"""The package's front door: __all__ matches what is public, and no framework is imported."""

from __future__ import annotations

import subprocess
import sys

import mtlsauth


def test_all_is_sorted_and_complete() -> None:
    # Order is kept by ruff (RUF022); here: no duplicates and nothing public left out.
    assert len(set(mtlsauth.__all__)) == len(mtlsauth.__all__)
    public = {
        n
        for n in dir(mtlsauth)
        if not n.startswith("_") and not isinstance(getattr(mtlsauth, n), type(mtlsauth))
    }
    public.discard("annotations")
    assert public <= set(mtlsauth.__all__)
    for name in mtlsauth.__all__:
        assert hasattr(mtlsauth, name), name


def test_testing_all_names_each_public_helper_once() -> None:
    import mtlsauth.testing

    names = mtlsauth.testing.__all__
    assert len(set(names)) == len(names), sorted(n for n in names if names.count(n) > 1)
    for name in names:
        assert hasattr(mtlsauth.testing, name), name


def test_core_imports_no_web_framework() -> None:
    code = (
        "import sys, mtlsauth, mtlsauth.testing; "
        "bad = [m for m in ('starlette', 'fastapi', 'flask', 'werkzeug', 'aiohttp', 'uvicorn', "
        "'gunicorn', 'django', 'pytest') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
