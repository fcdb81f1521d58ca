"""Safe log fields and a rate limit for refusal log lines.

Certificate names, request paths and peer addresses come from the client. Written into a log
as they are, a newline forges a second log line, an ANSI sequence rewrites the operator's
terminal and a bidi override reorders what they read. ``escape_log_value`` turns every such
character into a visible ``\\xNN``/``\\uNNNN`` escape and bounds the length.

A client can also be refused as often as it likes. ``RefusalLogLimiter`` lets the first
refusal for a (code, fingerprint, peer) through, counts the repeats for ``interval`` seconds and
reports the count on the next line it lets through; a global budget per interval bounds what
a flood of distinct certificates can write.
"""

from __future__ import annotations

import logging
import threading
import time
import unicodedata

from mtlsauth._memo import BoundedMemo

__all__ = ["RefusalLogLimiter", "escape_log_value", "limited_log", "logfmt_value"]

_MAX_FIELD = 256
_MAX_KEY_PEER = 64


def _unsafe(ch: str) -> bool:
    # Cc: C0/C1 controls (newline, ESC, DEL...); Cf: format characters (bidi overrides and
    # isolates, zero-width joiners); Zl/Zp: line and paragraph separators; Cs: lone surrogates
    # (from undecodable bytes); Co/Cn: private use and unassigned.
    return unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn") or ch == "\\"


def escape_log_value(value: object, limit: int = _MAX_FIELD) -> str:
    """``value`` as one printable line: unsafe characters escaped, at most ``limit`` chars."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        text = text[:limit] + "..."
    if text.isascii() and text.isprintable() and "\\" not in text:
        return text
    out = []
    for ch in text:
        if not _unsafe(ch):
            out.append(ch)
            continue
        code = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif code <= 0xFF:
            out.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out)


def logfmt_value(value: object, limit: int = _MAX_FIELD) -> str:
    """``value`` escaped (``escape_log_value``) and, when it holds a blank, ``=`` or ``"``
    or is empty, double-quoted with ``"`` written ``\\"``: one ``key=value`` of a logfmt
    line, so a subject, an issuer or a path cannot read as more fields."""
    text = escape_log_value(value, limit)
    if text and " " not in text and "=" not in text and '"' not in text:
        return text
    return '"' + text.replace('"', '\\"') + '"'


class RefusalLogLimiter:
    """Decides which refusals get a log line.

    Args:
        interval: Seconds during which repeats of one (code, fingerprint, peer) are only
            counted. The peer is part of the key: one client's refusals (many of which carry
            no fingerprint) never hide the first line of another.
        budget: Lines allowed per ``interval`` across all keys.
        max_keys: Keys remembered (a ``BoundedMemo``: a flood of distinct keys evicts only
            its own, and still meets the global budget).
    """

    __slots__ = (
        "_budget",
        "_carry",
        "_interval",
        "_keys",
        "_lock",
        "_max_keys",
        "_window",
        "_window_dropped",
        "_window_used",
    )

    def __init__(self, interval: float = 60.0, budget: int = 100, max_keys: int = 10_000) -> None:
        self._interval = interval
        self._budget = budget
        self._max_keys = max_keys
        self._keys: BoundedMemo[tuple[str, str | None, str | None], tuple[float, int]] = (
            BoundedMemo(max_keys)
        )
        self._lock = threading.Lock()
        self._window = -interval
        self._window_used = 0
        self._window_dropped = 0
        self._carry = 0

    def admit(
        self, code: str, fingerprint: str | None, peer: str | None = None
    ) -> tuple[bool, int, int]:
        """(log this one?, repeats of this key suppressed since its last line, lines dropped
        by the global budget not yet reported)."""
        now = time.monotonic()
        # The peer may be the client's text (a server that takes it from X-Forwarded-For):
        # an address is shorter than 64 characters, and a key holds no more.
        key = (code, fingerprint, peer[:_MAX_KEY_PEER] if peer is not None else None)
        with self._lock:
            if now - self._window >= self._interval:
                self._carry += self._window_dropped
                self._window, self._window_used, self._window_dropped = now, 0, 0
            last = self._keys.get(key)
            if last is not None and now - last[0] < self._interval:
                self._keys.put(key, (last[0], last[1] + 1))
                return False, 0, 0
            if self._window_used >= self._budget:
                self._window_dropped += 1
                return False, 0, 0
            self._keys.put(key, (now, 0))
            self._window_used += 1
            dropped, self._carry = self._carry, 0
            return True, last[1] if last is not None else 0, dropped


def limited_log(
    logger: logging.Logger,
    limiter: RefusalLogLimiter,
    level: int,
    key: tuple[str, str | None],
    msg: str,
    *args: object,
    extra: dict[str, object] | None = None,
) -> None:
    """Log ``msg % args`` at ``level`` if ``limiter`` admits ``key`` (a fixed text and, say,
    a fingerprint or an exception type), with the repeats it counted since the last line."""
    if not logger.isEnabledFor(level):
        return
    admitted, repeats, dropped = limiter.admit(key[0], key[1])
    if not admitted:
        return
    if dropped:
        logger.log(level, "mtlsauth: %d log lines were dropped in the last minute (flood)", dropped)
    if repeats:
        msg += " (and %d more like it since the last line)"
        args = (*args, repeats)
    logger.log(level, msg, *args, extra=extra)
