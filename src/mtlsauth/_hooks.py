"""Calling the application's hooks (``on_decision``, ``on_error``) so that none of them can
change a decision, forge a log line or flood the log.

A hook is the application's code, but what it is handed comes from the client: a hook
that raises ``KeyError(path)`` carries the request path into its exception text. Its
failure is therefore logged with that text escaped, once a minute per hook and exception
type (the repeats are counted), with the traceback at DEBUG, also escaped.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import traceback

from mtlsauth._logfields import RefusalLogLimiter, escape_log_value

__all__ = [
    "REFUSAL_MIN_STATUS",
    "discard_awaitable",
    "escaped_traceback",
    "hook_log_limiter",
    "is_coroutine_callable",
    "report_hook_failure",
    "report_hook_misuse",
    "report_unexpected",
]

REFUSAL_MIN_STATUS = 300
"""An ``on_error`` answer below this status (1xx, 2xx: a ``Response`` made without a
status is a 200, which a proxy's ``auth_request`` reads as "allowed") is sent with the
refusal's own status instead. A redirect (3xx) to a page that explains is kept."""

logger = logging.getLogger("mtlsauth")

_CHAIN = 8  # causes and contexts followed in a traceback


def hook_log_limiter() -> RefusalLogLimiter:
    """The limiter of one Guard's lines about failures (hooks, internal errors). Keys are
    (what failed, exception type): a few dozen at most, whatever the clients send."""
    return RefusalLogLimiter(interval=60.0, budget=20, max_keys=256)


def is_coroutine_callable(hook: object) -> bool:
    """True for an ``async def`` function, or an object whose ``__call__`` is one."""
    if inspect.iscoroutinefunction(hook):
        return True
    call = getattr(type(hook), "__call__", None)  # noqa: B004 - the method, not callable()
    return call is not None and inspect.iscoroutinefunction(call)


def _text(exc: BaseException) -> str:
    try:
        return escape_log_value(str(exc), 512)
    except Exception:  # noqa: BLE001 - a broken __str__ must not break the report
        return "(unprintable)"


def escaped_traceback(exc: BaseException) -> str:
    """The traceback of ``exc`` (and what caused it), every exception's text escaped."""
    chain: list[BaseException] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(chain) < _CHAIN:
        seen.add(id(current))
        chain.append(current)
        if current.__cause__ is not None:
            current = current.__cause__
        elif current.__suppress_context__:
            current = None
        else:
            current = current.__context__
    parts: list[str] = []
    for item in reversed(chain):
        parts.append("Traceback (most recent call last):\n")
        parts.extend(traceback.format_tb(item.__traceback__))
        parts.append(f"{type(item).__qualname__}: {_text(item)}\n")
    return "".join(parts)


def report_hook_failure(hook: str, exc: BaseException, limiter: RefusalLogLimiter) -> None:
    """Log that the ``hook`` (``"on_decision"``, ``"on_error"``) raised ``exc``."""
    _report(hook, f"mtlsauth {hook} hook raised", f"mtlsauth {hook} hook", exc, limiter)


def report_unexpected(where: str, exc: BaseException, limiter: RefusalLogLimiter) -> None:
    """Log an exception nothing expected (a bug, or input nobody foresaw) raised in
    ``where``: its type and escaped text at ERROR, once a minute per (where, type), and the
    traceback at DEBUG, every exception's text escaped (it may hold what a client sent)."""
    _report(where, f"mtlsauth: {where} failed unexpectedly:", f"mtlsauth: {where}", exc, limiter)


def _report(
    key: str, headline: str, subject: str, exc: BaseException, limiter: RefusalLogLimiter
) -> None:
    """``headline`` and the exception's type and escaped text at ERROR, once per ``limiter``
    window for (``key``, type) with the repeats counted; the traceback at DEBUG."""
    name = type(exc).__qualname__
    admitted, repeats, _dropped = limiter.admit(key, name)
    if not admitted:
        return
    logger.error(
        "%s %s: %s%s",
        headline,
        name,
        _text(exc),
        f" (and {repeats} more like it since the last line)" if repeats else "",
    )
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("%s traceback:\n%s", subject, escaped_traceback(exc))


def discard_awaitable(hook: str, result: object, why: str, limiter: RefusalLogLimiter) -> None:
    """A hook returned an awaitable where nothing awaits it: close it (it never runs, and
    raises no "never awaited" warning later) and say so once a minute."""
    close = getattr(result, "close", None)
    if callable(close):
        with contextlib.suppress(Exception):  # closing is a courtesy
            close()
    report_hook_misuse(
        hook, "awaitable", f"returned an awaitable, which is never awaited: {why}", limiter
    )


def report_hook_misuse(hook: str, kind: str, what: str, limiter: RefusalLogLimiter) -> None:
    """Log, once a minute per ``kind``, that the ``hook`` did ``what`` (a fixed text: no
    value from the request)."""
    admitted, repeats, _dropped = limiter.admit(hook, kind)
    if admitted:
        logger.error(
            "mtlsauth %s %s%s",
            hook,
            what,
            f" (and {repeats} more like it since the last line)" if repeats else "",
        )
