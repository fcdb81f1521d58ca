"""File-backed snapshots that reload without a restart, and never widen access on failure.

A ``FileSnapshot`` owns a loader (paths -> immutable value). ``current()`` is the hot-path
call: it costs one monotonic-clock read until ``reload_interval`` has passed, then one cheap
stat pass. A changed stat signature triggers a full load into a *new* value that is swapped
in atomically. A load that fails keeps the last good value, logs an error naming the file and
records it for ``health()``.

A reload never widens access:

* A changed file is read only once it has stopped changing: its mtime at least 0.25 s old,
  or, for a file that is gone (a path given, or a file of a watched directory) or dated in
  the future, the signature unchanged for 0.25 s.
* Files are stat'ed again after reading (path, target, size, mtime, inode, change time). If
  anything moved while they were read, the value is thrown away and the files are read
  again later: a file caught in the middle of an in-place rewrite, even at a clean block
  boundary, is never a snapshot. ``reload()`` waits and retries for up to about a second; the automatic check
  looks again soon after.
* An optional ``successor`` rule compares the new value with the current one and may refuse
  it (for CRLs: no issuer may vanish while the file that held it still exists). A refusal is
  an error in ``health()``, and the last good value stays.

Kubernetes mounts ConfigMaps/Secrets as ``name -> ..data/name`` symlinks and swaps ``..data``
atomically; the signature follows symlinks (``realpath``), so the swap is noticed.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import Generic, TypeVar

__all__ = ["NO_WAIT", "FileSnapshot", "WouldBlock", "list_files", "refuse_pem_text"]

T = TypeVar("T")


def refuse_pem_text(path: object, what: str, use: str | None = None) -> None:
    """``ValueError`` when ``path`` is PEM text given where a file path belongs.

    Without it the text becomes a file name, and the error is the operating system's
    "File name too long" or a "does not exist" over a screenful of base64.
    """
    if isinstance(path, os.PathLike):
        # Path(pem_text) too: otherwise "does not exist" errors repeat the text, a private
        # key's included (server_ssl_context's keyfile), into tracebacks and logs.
        try:
            path = os.fspath(path)
        except TypeError:
            return
    text = path.decode("latin-1") if isinstance(path, bytes) else path
    if isinstance(text, str) and "-----BEGIN" in text:
        alternative = f", or give the text to {use}" if use else ""
        raise ValueError(
            f"{what}: got PEM text where a file path belongs: pass the file's path{alternative}"
        )


logger = logging.getLogger("mtlsauth")

Signature = tuple[tuple[str, str, int, int, int, int], ...]
_SETTLE_TRIES = 20  # reload(): read again up to this many times while files keep changing
_SETTLE_PAUSE = 0.05
_RETRY_SOON = 0.1  # automatic checks: look again this soon after catching files mid-change
_QUIET_NS = 250_000_000  # a file modified less than this long ago may still be being written


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
            # The change time as well: ``cp -p``, ``touch -r`` or an unpacked archive set the
            # mtime, and a file rewritten in place keeps its inode (and maybe its size).
            sig.append((str(f), real, st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns))
        except OSError:
            sig.append((str(f), "", -1, -1, -1, -1))
    return tuple(sig)


_WAIT_FOR_LOAD = 5.0
"""Seconds a request waits for another thread's reload before using the previous value."""

NO_WAIT: ContextVar[bool] = ContextVar("mtlsauth_reload_no_wait", default=False)
"""Set where nothing may block (an event loop): ``current()`` then raises ``WouldBlock``
instead of checking files that are due, or waiting for another thread's load."""


class WouldBlock(Exception):
    """``current()`` under ``NO_WAIT``: only a call allowed to block can answer."""


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
        successor: ``successor(old, new, files)`` returns why ``new`` may not replace
            ``old`` (a reason string), or ``None`` to allow it.
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike[str]],
        *,
        accept: Callable[[str], bool],
        loader: Callable[[list[Path]], T],
        reload_interval: float | None,
        what: str,
        successor: Callable[[T, T, Sequence[Path]], str | None] | None = None,
    ) -> None:
        if reload_interval is not None and (
            isinstance(reload_interval, bool)
            or not isinstance(reload_interval, int | float)
            # nan compares False with every clock: the files would never be checked again
            or not 0 < reload_interval < math.inf
        ):
            raise ValueError(
                "reload_interval must be a positive, finite number of seconds, or None "
                "(no automatic checks)"
            )
        for p in paths:
            refuse_pem_text(p, what, "from_pem()")
        # Absolute now: a relative path resolved at every reload would name another file
        # once the process changes its working directory. (Symlinks stay: they are followed
        # at each check, as a Kubernetes swap needs.)
        self._paths = tuple(Path(os.path.abspath(p)) for p in paths)
        if not self._paths:
            raise ValueError(f"{what}: no paths given")
        self._accept = accept
        self._loader = loader
        self._interval = reload_interval
        self._what = what
        self._successor = successor
        self._lock = threading.Lock()
        for p in self._paths:
            if not p.exists():
                raise ValueError(f"{what}: {p} does not exist")
        loaded: tuple[list[Path], Signature, T] | None = None
        for _ in range(_SETTLE_TRIES):
            files = list_files(self._paths, accept)
            sig = _signature(files)
            try:
                value = loader(files)  # errors at construction are configuration errors
            except (ValueError, OSError):
                if _signature(list_files(self._paths, accept)) == sig:
                    raise
            except Exception as exc:  # noqa: BLE001 - a parser's own exception type
                if _signature(list_files(self._paths, accept)) == sig:
                    raise ValueError(f"{what}: {type(exc).__name__}: {exc}") from None
            else:
                if _signature(list_files(self._paths, accept)) == sig:
                    loaded = (files, sig, value)
                    break
            time.sleep(_SETTLE_PAUSE)
        if loaded is None:
            raise ValueError(f"{what}: the files kept changing while being read")
        self._sig = loaded[1]
        self._value: T = loaded[2]
        self.generation = 0
        self.last_error: str | None = None
        self.last_loaded = time.time()
        self._next_check = time.monotonic() + (reload_interval or 0)
        # A changed signature first seen at this monotonic time (``_settled``).
        self._seen: tuple[Signature, float] | None = None

    @property
    def paths(self) -> tuple[Path, ...]:
        return self._paths

    def current(self) -> T:
        """The current value; checks for changes at most every ``reload_interval``.

        While another thread is checking (and maybe loading changed files), this waits for it (at most ``_WAIT_FOR_LOAD`` seconds) instead of handing out the value
        being replaced: a revocation lands one interval after its file does, not one load
        later.
        """
        if self._interval is not None and time.monotonic() >= self._next_check:
            if NO_WAIT.get():
                raise WouldBlock
            self._check(force=False)
        if self._lock.locked():
            if NO_WAIT.get():
                raise WouldBlock
            if self._lock.acquire(timeout=_WAIT_FOR_LOAD):
                self._lock.release()  # another thread's check (maybe a load) has finished
        return self._value

    def reload(self) -> bool:
        """Check the files now; return True if a new value was swapped in."""
        return self._check(force=True)

    def _check(self, *, force: bool) -> bool:
        if not self._lock.acquire(blocking=force):
            return False  # another thread is already checking; keep serving the current value
        try:
            self._next_check = time.monotonic() + (self._interval or 0)
            for _ in range(_SETTLE_TRIES if force else 1):
                outcome = self._try_load(force=force)
                if outcome is not None:
                    return outcome
                if force:
                    time.sleep(_SETTLE_PAUSE)
            if force:
                return self._fail(f"{self._what}: the files kept changing while being read")
            # Caught mid-change: keep the current value and look again soon.
            self._next_check = time.monotonic() + min(self._interval or 0, _RETRY_SOON)
            return False
        finally:
            self._lock.release()

    def _try_load(self, *, force: bool) -> bool | None:
        """One attempt: True/False as ``reload()`` answers, None if files changed meanwhile."""
        try:
            files = list_files(self._paths, self._accept)
        except OSError as exc:
            return self._fail(f"{self._what}: cannot list {self._paths[0]}: {exc}")
        sig = _signature(files)
        if sig == self._sig and (not force or self.last_error is None):
            return False
        if not self._settled(sig):
            return None  # changed a moment ago: wait until the files have stopped changing
        failure: str | None = None
        value: T | None = None
        try:
            value = self._loader(files)
        except (ValueError, OSError) as exc:
            failure = f"{self._what}: reload failed, keeping the last good copy: {exc}"
        except Exception as exc:  # noqa: BLE001 - a parser's own exception type: still a bad file
            failure = (
                f"{self._what}: reload failed, keeping the last good copy: "
                f"{type(exc).__name__}: {exc}"
            )
        try:
            settled = _signature(list_files(self._paths, self._accept)) == sig
        except OSError:
            settled = False
        if not settled:
            return None  # read while being written: neither a snapshot nor an error
        if failure is not None or value is None:
            return self._fail(failure or f"{self._what}: reload failed")
        if self._successor is not None:
            try:
                why = self._successor(self._value, value, files)
            except Exception as exc:  # noqa: BLE001 - runs inside a request: refuse, never raise
                why = f"the new files could not be compared ({type(exc).__name__}: {exc})"
            if why is not None:
                return self._fail(
                    f"{self._what}: reload refused, keeping the last good copy: {why}"
                )
        self._value = value
        self._sig = sig
        self.generation += 1
        self.last_error = None
        self.last_loaded = time.time()
        logger.info("mtlsauth: %s reloaded (generation %d)", self._what, self.generation)
        return True

    def _settled(self, sig: Signature) -> bool:
        """Whether the files of ``sig`` have stopped changing: each one's mtime at least the
        quiet period old, or else this very signature seen that long ago.

        An mtime cannot vouch for a file that is gone (a deletion may be the first half of
        a rewrite) nor for one dated in the future (a network file system whose clock runs
        ahead, an archive unpacked with its times, ``touch -d``): read at once, a writer
        paused at a block boundary would be taken for a whole file. For those, the
        signature must stay the same for the quiet period as this process sees it. A file
        that has left a watched directory is gone too, though no entry of ``sig`` says so
        (``rm *.crl; cp new/*.crl .`` leaves, in between, only files with old mtimes).
        """
        now_ns = time.time_ns()
        if all(entry[2] >= 0 and now_ns - entry[2] >= _QUIET_NS for entry in sig) and not (
            {entry[0] for entry in self._sig} - {entry[0] for entry in sig}
        ):
            return True
        now = time.monotonic()
        seen = self._seen
        if seen is None or seen[0] != sig:
            self._seen = (sig, now)
            return False
        return (now - seen[1]) * 1e9 >= _QUIET_NS

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
