"""Write the seed corpora: ``python -m fuzz.make_corpus`` (re-run after changing a target).

Seeds are valid inputs made from the fixed fuzz PKI (public certificates, no keys), so they
are the same on every machine. CRL and OCSP seeds carry dates from the day they were made and
a ten-year nextUpdate.
"""

from __future__ import annotations

import hashlib
import shutil

from fuzz.run import CORPUS
from fuzz.targets import all_targets


def main() -> None:
    for name, target in all_targets().items():
        out = CORPUS / name
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        for seed in target.seeds():
            (out / hashlib.sha256(seed).hexdigest()[:16]).write_bytes(seed)
        print(f"{name}: {len(list(out.iterdir()))} seeds")


if __name__ == "__main__":
    main()
