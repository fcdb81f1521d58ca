"""File-backed snapshots that reload without a restart, and never widen access on failure.

A ``FileSnapshot`` owns a loader (paths -> immutable value). ``current()`` is the hot-path
call: it costs one monotonic-clock read until ``reload_interval`` has passed, then one cheap
stat pass. A changed stat signature triggers a full load into a *new* value that is swapped
in atomically. A load that fails keeps the last good value, logs an error naming the file and
records it for ``health()``.

Kubernetes mounts ConfigMaps/Secrets as ``name -> ..data/name`` symlinks and swaps ``..data``
atomically; the signature follows symlinks (``realpath``), so the swap is noticed.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Generic, TypeVar

__all__ = ["FileSnapshot", "list_files"]

T = TypeVar("T")
logger = logging.getLogger("mtlsauth")

Signature = tuple[tuple[str, str, int, int, int], ...]


def list_files(paths: Sequence[Path], accept: Callable[[str], bool]) -> list[Path]:
    """Expand directories into the files whose names ``accept`` admits (sorted, no dot-files)."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            for child in sorted(p.iterdir()):
                # "..data" and "..2024_01_01..." are Kubernetes' atomic-swap machinery.
                if child.name.startswith(".") or not accept(child.name):
                    continue
                if child.is_file():
                    out.append(child)
        else:
            out.append(p)
    return out


def _signature(files: Sequence[Path]) -> Signature:
    sig = []
    for f in files:
        try:
            real = os.path.realpath(f)
            st = os.stat(real)
            sig.append((str(f), real, st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError:
            sig.append((str(f), "", -1, -1, -1))
    return tuple(sig)


class FileSnapshot(Generic[T]):
    """An immutable value loaded from files, swapped whole when the files change.

    Args:
        paths: Files or directories.
        accept: Which file names in a directory count.
        loader: Builds the value from the expanded file list; raises ``ValueError`` naming
            the file on bad content.
        reload_interval: Seconds between change checks; ``None`` disables automatic checks
            (``reload()`` still works).
        what: A word for log lines ("trust store", "CRL set").
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike[str]],
        *,
        accept: Callable[[str], bool],
        loader: Callable[[list[Path]], T],
        reload_interval: float | None,
        what: str,
    ) -> None:
        if reload_interval is not None and (
            not isinstance(reload_interval, int | float) or reload_interval <= 0
        ):
            raise ValueError("reload_interval must be a positive number of seconds or None")
        self._paths = tuple(Path(p) for p in paths)
        if not self._paths:
            raise ValueError(f"{what}: no paths given")
        self._accept = accept
        self._loader = loader
        self._interval = reload_interval
        self._what = what
        self._lock = threading.Lock()
        files = list_files(self._paths, accept)
        for p in self._paths:
            if not p.exists():
                raise ValueError(f"{what}: {p} does not exist")
        self._sig = _signature(files)
        self._value: T = loader(files)  # errors at construction are configuration errors
        self.generation = 0
        self.last_error: str | None = None
        self.last_loaded = time.time()
        self._next_check = time.monotonic() + (reload_interval or 0)

    @property
    def paths(self) -> tuple[Path, ...]:
        return self._paths

    def current(self) -> T:
        """The current value; checks for changes at most every ``reload_interval``."""
        if self._interval is not None and time.monotonic() >= self._next_check:
            self._check(force=False)
        return self._value

    def reload(self) -> bool:
        """Check the files now; return True if a new value was swapped in."""
        return self._check(force=True)

    def _check(self, *, force: bool) -> bool:
        if not self._lock.acquire(blocking=force):
            return False  # another thread is already checking; keep serving the current value
        try:
            self._next_check = time.monotonic() + (self._interval or 0)
            try:
                files = list_files(self._paths, self._accept)
            except OSError as exc:
                return self._fail(f"{self._what}: cannot list {self._paths[0]}: {exc}")
            sig = _signature(files)
            if sig == self._sig and not force:
                return False
            if sig == self._sig and self.last_error is None:
                return False
            try:
                value = self._loader(files)
            except (ValueError, OSError) as exc:
                return self._fail(f"{self._what}: reload failed, keeping the last good copy: {exc}")
            self._value = value
            self._sig = sig
            self.generation += 1
            self.last_error = None
            self.last_loaded = time.time()
            logger.info("mtlsauth: %s reloaded (generation %d)", self._what, self.generation)
            return True
        finally:
            self._lock.release()

    def _fail(self, message: str) -> bool:
        if message != self.last_error:
            logger.error("mtlsauth: %s", message)
        self.last_error = message
        return False

    def health(self) -> dict[str, object]:
        """A small status dict for health endpoints."""
        return {
            "what": self._what,
            "paths": [str(p) for p in self._paths],
            "generation": self.generation,
            "last_loaded": self.last_loaded,
            "last_error": self.last_error,
        }
