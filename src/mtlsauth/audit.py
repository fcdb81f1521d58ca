"""A structured audit log of mtlsauth decisions: one JSON object per line.

Example::

    from mtlsauth.audit import AuditLog

    audit = AuditLog("/var/log/app/mtls-audit.jsonl")   # or a stream, or a logging.Logger
    app.add_middleware(MTLSMiddleware, verifier=verifier, on_decision=audit)

Each line holds ``time`` (RFC 3339, UTC), ``peer``, ``method``, ``path``, ``mode``,
``decision`` (``allowed`` or ``denied``), ``code``, ``status``, and for a verified
certificate ``subject``, ``issuer``, ``serial``, ``source`` and ``fingerprint``
(SHA-256 of the leaf). Refusals carry the ``fingerprint`` of a TLS leaf when one was
presented.

What it never writes: a certificate, a header value (the forwarded-certificate header of an
untrusted peer included), or a raw control character. Every line is ASCII JSON, so newlines,
ANSI escapes and bidirectional overrides in a certificate's names or in a request path
arrive escaped (``\\u001b``) and cannot forge or hide a line. Paths longer than
``max_path`` characters are cut and marked.
"""

from __future__ import annotations

import io
import json
import logging
import os
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from mtlsauth._guard import Decision

__all__ = ["AuditLog", "audit_record"]

_MAX_PATH = 512
_MAX_PEER = 256


def audit_record(
    decision: Decision, *, now: datetime | None = None, max_path: int = _MAX_PATH
) -> dict[str, Any]:
    """The audit record of one decision, as a dict of JSON-safe values."""
    when = now or datetime.now(timezone.utc)
    path = decision.path
    if len(path) > max_path:
        path = path[:max_path] + "...(cut)"
    peer = decision.peer
    if peer is not None and len(peer) > _MAX_PEER:  # e.g. taken from X-Forwarded-For
        peer = peer[:_MAX_PEER] + "...(cut)"
    error = decision.error
    record: dict[str, Any] = {
        "time": when.astimezone(timezone.utc).isoformat(timespec="milliseconds"),
        "peer": peer,
        "method": decision.method[:16],
        "path": path,
        "mode": decision.mode,
        "decision": "allowed" if error is None else "denied",
        "code": decision.code,
        "status": error.status if error is not None else None,
        "fingerprint": decision.fingerprint,
    }
    identity = decision.identity
    if identity is not None:
        record.update(
            subject=identity.subject,
            issuer=identity.issuer,
            serial=format(identity.serial_number, "x")
            if isinstance(identity.serial_number, int)
            else None,
            source=identity.source,
        )
    if decision.route is not None:
        record["route"] = (
            decision.route.pattern
            if isinstance(decision.route.pattern, str)
            else (decision.route.pattern.pattern)
        )
    return record


class AuditLog:
    """An ``on_decision`` hook that writes one JSON line per decision.

    Args:
        sink: A file path (opened for appending, created ``0o600``), a text stream, or a
            ``logging.Logger`` (each line logged at INFO). Default: the ``mtlsauth.audit``
            logger.
        allowed: Also record allowed requests (default True); False records refusals only.
        max_path: Longest request path kept, in characters.
        on_decision: Another hook to call afterwards (e.g. metrics).

    Writing never raises into the request: a failing sink is reported once through the
    ``mtlsauth`` logger, the decision stands, and the next hook is still called.
    """

    def __init__(
        self,
        sink: str | os.PathLike[str] | TextIO | logging.Logger | None = None,
        *,
        allowed: bool = True,
        max_path: int = _MAX_PATH,
        on_decision: Callable[[Decision], object] | None = None,
    ) -> None:
        if not isinstance(max_path, int) or isinstance(max_path, bool) or max_path < 1:
            raise ValueError("max_path must be a positive integer")
        self._lock = threading.Lock()
        self._logger: logging.Logger | None = None
        self._stream: TextIO | None = None
        self._owned = False
        if sink is None:
            self._logger = logging.getLogger("mtlsauth.audit")
        elif isinstance(sink, logging.Logger):
            self._logger = sink
        elif isinstance(sink, str | os.PathLike):
            path = Path(sink)
            if path.is_dir():
                raise ValueError(f"{path} is a directory: give the audit log's file name")
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self._stream = io.TextIOWrapper(
                os.fdopen(fd, "ab", buffering=0), encoding="ascii", line_buffering=True
            )
            self._owned = True
        elif isinstance(sink, io.RawIOBase | io.BufferedIOBase) or "b" in str(
            getattr(sink, "mode", "")
        ):
            raise TypeError(
                "sink must be a text stream: open the file in text mode, or give its path"
            )
        elif hasattr(sink, "write"):
            self._stream = sink
        else:
            raise TypeError("sink must be a path, a text stream or a logging.Logger")
        self._allowed = bool(allowed)
        self._max_path = max_path
        self._next = on_decision
        self._failed = False

    def __call__(self, decision: Decision) -> None:
        if self._allowed or not decision.allowed:
            try:
                line = json.dumps(
                    audit_record(decision, max_path=self._max_path),
                    ensure_ascii=True,
                    separators=(",", ":"),
                )
                if self._logger is not None:
                    self._logger.info("%s", line)
                else:
                    assert self._stream is not None
                    with self._lock:
                        self._stream.write(line + "\n")
                        self._stream.flush()
            except Exception as exc:  # noqa: BLE001 - any failing sink: never hide the next hook
                if not self._failed:
                    self._failed = True
                    logging.getLogger("mtlsauth").error(
                        "mtlsauth audit log cannot be written: %s", type(exc).__name__
                    )
        if self._next is not None:
            self._next(decision)

    on_decision = __call__

    def close(self) -> None:
        """Close a file the log opened itself."""
        if self._stream is not None and self._owned:
            self._stream.close()
