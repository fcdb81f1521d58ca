"""What every benchmark module receives: the mode, the time budget and the shared PKI."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from functools import cached_property

from _pki import Hierarchy
from _timing import FULL, QUICK, Budget


@dataclass
class Context:
    quick: bool
    started: float = field(default_factory=time.perf_counter)

    @property
    def budget(self) -> Budget:
        return QUICK if self.quick else FULL

    @cached_property
    def ec(self) -> Hierarchy:
        return Hierarchy.create("ec")

    @cached_property
    def rsa(self) -> Hierarchy:
        return Hierarchy.create("rsa")

    def log(self, message: str) -> None:
        elapsed = time.perf_counter() - self.started
        print(f"[{elapsed:6.1f}s] {message}", file=sys.stderr, flush=True)
