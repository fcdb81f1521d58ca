"""What reports a decision, reviewed as an attacker: the hooks, their failure logs, the
refusal log's rate limit, the debug line of an allowed request and the audit log's sinks.

A client chooses the path, the method, its certificate's names and (behind a rewriting
server) its peer address; none of it may forge a log line, hide another client's line, or
change the decision through a hook.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest

from mtlsauth import Presented, Verifier
from mtlsauth._guard import Decision, Guard
from mtlsauth.audit import AuditLog
from mtlsauth.testing import CA

FORGED = "2026-12-01 00:00:00 INFO mtlsauth allowed code=ok peer=10.0.0.1"


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA(organization="Reports")


@pytest.fixture(scope="module")
def verifier(ca: CA) -> Verifier:
    return Verifier(trust_store=ca.trust_store())


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Every line the records would print (message and traceback)."""
    formatter = logging.Formatter("%(levelname)s %(message)s")
    return [line for r in caplog.records for line in formatter.format(r).splitlines()]


# -- on_decision: a coroutine where a function is expected -----------------------------------
def test_a_coroutine_function_as_on_decision_is_refused_at_construction(verifier) -> None:
    async def hook(decision: Decision) -> None:
        return None

    class AsyncHook:
        async def __call__(self, decision: Decision) -> None:
            return None

    for bad in (hook, AsyncHook()):
        with pytest.raises(TypeError, match="on_decision"):
            Guard(verifier=verifier, on_decision=bad)


def test_an_awaitable_returned_by_on_decision_is_closed_and_logged(
    verifier, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[str] = []
    made = []

    async def record(decision: Decision) -> None:
        ran.append(decision.code)

    def hook(decision: Decision):
        coro = record(decision)
        made.append(coro)
        return coro

    guard = Guard(verifier=verifier, on_decision=hook)
    with caplog.at_level(logging.ERROR, logger="mtlsauth"):
        assert not guard.decide(Presented("127.0.0.1"), "mandatory", None).allowed
    assert ran == []  # never awaited: the hook is synchronous by contract ...
    assert made[0].cr_frame is None  # ... and the coroutine was closed, not left to warn
    assert any("on_decision returned an awaitable" in line for line in _lines(caplog))


# -- hooks that raise ------------------------------------------------------------------------
def test_a_raising_hook_cannot_forge_a_log_line(verifier, caplog) -> None:
    def hook(decision: Decision) -> None:
        raise KeyError(f"unknown route {decision.path}")

    guard = Guard(verifier=verifier, on_decision=hook)
    with caplog.at_level(logging.DEBUG, logger="mtlsauth"):
        guard.decide(Presented("127.0.0.1", path="/x\n" + FORGED), "mandatory", None)
    lines = _lines(caplog)
    assert any("on_decision hook raised KeyError" in line for line in lines)
    assert not any(line.startswith(FORGED[:10]) for line in lines), lines
    assert any("\\n2026-12-01" in line for line in lines)  # the text is there, escaped


def test_a_raising_hook_writes_one_line_a_minute_not_one_a_request(
    verifier, caplog, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mtlsauth._logfields as lf

    clock = [100.0]
    monkeypatch.setattr(lf.time, "monotonic", lambda: clock[0])

    def hook(decision: Decision) -> None:
        raise RuntimeError("metrics backend down")

    guard = Guard(verifier=verifier, on_decision=hook)
    with caplog.at_level(logging.ERROR, logger="mtlsauth"):
        for _ in range(500):
            assert not guard.decide(Presented("127.0.0.1"), "mandatory", None).allowed
        clock[0] += 61
        guard.decide(Presented("127.0.0.1"), "mandatory", None)
    raised = [r.getMessage() for r in caplog.records if "hook raised" in r.getMessage()]
    assert len(raised) == 2
    assert "499 more like it" in raised[1]


# -- the refusal log's rate limit -------------------------------------------------------------
def test_one_clients_refusals_never_hide_another_clients_first_line(
    verifier, caplog, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mtlsauth._logfields as lf

    monkeypatch.setattr(lf.time, "monotonic", lambda: 500.0)
    guard = Guard(verifier=verifier)
    with caplog.at_level(logging.WARNING, logger="mtlsauth"):
        for _ in range(50):  # a noisy client without a certificate
            guard.decide(Presented("192.0.2.1", path="/noise"), "mandatory", None)
        guard.decide(Presented("198.51.100.7", path="/admin"), "mandatory", None)
    peers = [
        r.mtlsauth["peer"]  # type: ignore[attr-defined]
        for r in caplog.records
        if r.getMessage().startswith("mtlsauth refused")
    ]
    assert peers == ["192.0.2.1", "198.51.100.7"]


# -- the debug line of an allowed request ------------------------------------------------------
def test_the_structured_fields_of_an_allowed_request_are_escaped(ca, verifier, caplog) -> None:
    cert = ca.issue_client_cert(common_name="svc")
    guard = Guard(verifier=verifier)
    path = "/a\r\n\x1b[2Jb\u2028c"
    with caplog.at_level(logging.DEBUG, logger="mtlsauth"):
        decision = guard.decide(
            Presented("127.0.0.1", (), (cert.cert_pem.text(),), path=path, method="G\nET"),
            "mandatory",
            None,
        )
    assert decision.allowed
    (record,) = [r for r in caplog.records if r.getMessage().startswith("mtlsauth allowed")]
    fields = record.mtlsauth  # type: ignore[attr-defined]
    assert fields["path"] == "/a\\x0d\\x0a\\x1b[2Jb\\u2028c"
    assert fields["method"] == "G\\x0aET"


# -- the audit log's sinks ---------------------------------------------------------------------
def test_a_binary_stream_is_refused_as_an_audit_sink(tmp_path: Path) -> None:
    with open(tmp_path / "audit.jsonl", "ab") as binary, pytest.raises(TypeError, match="text"):
        AuditLog(binary)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="text"):
        AuditLog(io.BytesIO())  # type: ignore[arg-type]


def test_a_failing_audit_sink_never_hides_the_next_hook(verifier, caplog) -> None:
    class Full(io.StringIO):
        def write(self, s: str) -> int:
            raise MemoryError("no room")  # anything a sink may raise, not only OSError

    seen: list[str] = []
    audit = AuditLog(Full(), on_decision=lambda d: seen.append(d.code))
    guard = Guard(verifier=verifier, on_decision=audit)
    with caplog.at_level(logging.ERROR, logger="mtlsauth"):
        for _ in range(3):
            assert not guard.decide(Presented("127.0.0.1"), "mandatory", None).allowed
    assert seen == ["certificate_missing"] * 3
    messages = [r.getMessage() for r in caplog.records]
    assert sum("audit log cannot be written" in m for m in messages) == 1
    assert not any("hook raised" in m for m in messages)


def test_the_audit_log_bounds_the_peer(verifier) -> None:
    import json

    stream = io.StringIO()
    guard = Guard(verifier=verifier, on_decision=AuditLog(stream))
    guard.decide(Presented("1" * 5000), "mandatory", None)
    record = json.loads(stream.getvalue())
    assert len(record["peer"]) <= 300


# -- what a refusal's body tells the client ----------------------------------------------------
@pytest.mark.parametrize("on_untrusted", ["reject", "ignore"])
def test_the_refusal_body_never_names_the_peer_address(ca, on_untrusted, caplog) -> None:
    """The socket peer may be a proxy's internal address (a proxy missing from
    ``trusted_proxies``), or text the client chose (a server that takes the peer from
    X-Forwarded-For): the log names it, the client's answer does not."""
    import json

    from mtlsauth import ForwardedCert

    fwd = ForwardedCert.preset(
        "nginx", header="x-ssl-client-cert", trusted_proxies=["10.0.0.1"], on_untrusted=on_untrusted
    )
    guard = Guard(verifier=Verifier(trust_store=ca.trust_store(), forwarded=fwd))
    internal = "10.20.30.40"
    with caplog.at_level(logging.WARNING, logger="mtlsauth"):
        decision = guard.decide(
            Presented(internal, (("x-ssl-client-cert", "x"),)), "mandatory", None
        )
    _status, _headers, body = decision.problem()
    assert internal not in json.loads(body)["detail"]
    if on_untrusted == "reject":
        assert "trusted" in json.loads(body)["detail"]  # the code's own reason
    else:
        # An ignored header is no certificate, as the client is told; why it was ignored
        # is the operator's (the hint, the log line).
        assert json.loads(body)["detail"] == "no client certificate was presented"
        assert decision.hint is not None
        assert "trusted" in decision.hint
        assert internal not in decision.hint
    (line,) = [
        r.getMessage() for r in caplog.records if r.getMessage().startswith("mtlsauth refused")
    ]
    assert f"peer={internal}" in line


# -- internal errors ---------------------------------------------------------------------------
def test_an_internal_error_is_logged_escaped_and_once_a_minute(
    ca, verifier, caplog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception inside the check is a refusal (500); its text, which may hold what the
    client sent, is escaped in the traceback at DEBUG, and a flood of them writes one ERROR
    line a minute."""
    import mtlsauth._logfields as lf

    monkeypatch.setattr(lf.time, "monotonic", lambda: 900.0)

    def boom(self, presented, *, required=True, policy=None):
        raise ValueError(f"cannot route {presented.path}")

    monkeypatch.setattr(Verifier, "authenticate", boom)
    guard = Guard(verifier=verifier)
    with caplog.at_level(logging.DEBUG, logger="mtlsauth"):
        for _ in range(200):
            d = guard.decide(Presented("127.0.0.1", path="/x\n" + FORGED), "mandatory", None)
            assert (d.code, d.error.status) == ("internal_error", 500)
    lines = _lines(caplog)
    assert not any(line.startswith(FORGED[:10]) for line in lines), lines
    internal = [line for line in lines if "internal error during verification" in line]
    assert len(internal) == 1


async def test_a_task_returned_by_on_decision_is_left_to_run(verifier, caplog) -> None:
    """A hook may schedule its work (``asyncio.create_task``) and return the task: that
    work runs on its own, so it is neither cancelled nor reported as never awaited."""
    import asyncio

    done: list[str] = []

    async def write(decision: Decision) -> None:
        done.append(decision.code)

    tasks = []

    def hook(decision: Decision):
        tasks.append(asyncio.get_running_loop().create_task(write(decision)))
        return tasks[-1]

    guard = Guard(verifier=verifier, on_decision=hook)
    with caplog.at_level(logging.ERROR, logger="mtlsauth"):
        guard.decide(Presented("127.0.0.1"), "mandatory", None)
        await asyncio.gather(*tasks)
    assert done == ["certificate_missing"]
    assert not any("awaitable" in r.getMessage() for r in caplog.records)
