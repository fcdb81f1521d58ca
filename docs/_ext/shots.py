"""Screenshots of the built docs site with headless Chromium: ``make docs-shots``.

Usage: ``python docs/_ext/shots.py SITE_DIR OUT_DIR [PAGE...]``. Each page is shot at a
desktop width (1400 px) and a laptop width (1024 px) into ``OUT_DIR/<page>-<width>.png``,
from ``file://`` URLs: no server is started. Needs Chromium (Debian: ``apt install
chromium``); screenshots are for a person to look at, so nothing here asserts.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PAGES = [
    "index",
    "quickstart",
    "fastapi",
    "flask",
    "aiohttp",
    "direct-tls",
    "proxies",
    "cli",
    "benchmarks",
    "reference",
]
WIDTHS = (1400, 1024)
HEIGHT = 3000


def browser() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    sys.exit("docs-shots: no Chromium found (Debian: apt install chromium)")


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        sys.exit(__doc__)
    site, out = Path(argv[0]).resolve(), Path(argv[1]).resolve()
    pages = argv[2:] or PAGES
    out.mkdir(parents=True, exist_ok=True)
    exe = browser()
    with tempfile.TemporaryDirectory(prefix="docs-shots-") as profile:
        for page in pages:
            html = site / "index.html" if page == "index" else site / page / "index.html"
            if not html.exists():
                print(f"docs-shots: {html} missing (run make docs first)", file=sys.stderr)
                return 1
            for width in WIDTHS:
                target = out / f"{page}-{width}.png"
                subprocess.run(
                    [
                        exe,
                        "--headless",
                        "--no-sandbox",
                        "--disable-gpu",
                        "--hide-scrollbars",
                        f"--user-data-dir={profile}",
                        f"--window-size={width},{HEIGHT}",
                        f"--screenshot={target}",
                        html.as_uri(),
                    ],
                    check=True,
                    capture_output=True,
                    timeout=120,
                )
                print(target)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
