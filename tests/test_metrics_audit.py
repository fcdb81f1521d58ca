"""Metrics (Prometheus, OpenTelemetry) and the JSON-lines audit log, fed by real decisions."""

from __future__ import annotations

import io
import json
import logging
import os
import time

import httpx
import pytest

from mtlsauth import CRLSet, ForwardedCert, Verifier
from mtlsauth._guard import Guard
from mtlsauth.adapters.asgi import MTLSMiddleware
from mtlsauth.audit import AuditLog, audit_record
from mtlsauth.metrics import health_gauges
from mtlsauth.testing import CA, with_client_cert

PROXY = "10.0.0.1"


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA(organization="Metrics")


@pytest.fixture
def verifier(ca) -> Verifier:
    return Verifier(
        trust_store=ca.trust_store(),
        revocation=CRLSet.from_pem(ca.crl().bytes()),
        forwarded=ForwardedCert.preset("nginx", header="X-Client-Cert", trusted_proxies=[PROXY]),
    )


def _decide(guard: Guard, cert=None, mode="mandatory", peer="127.0.0.1"):
    from mtlsauth import Presented

    chain = (cert.cert_pem.bytes().decode(),) if cert is not None else ()
    return guard.decide(Presented(peer, (), chain, None, "/x", "GET"), mode, None)


def test_decisions_carry_timing_and_cache_outcome(ca, verifier) -> None:
    guard = Guard(verifier=verifier)
    cert = ca.issue_client_cert(common_name="svc")
    first, second = _decide(guard, cert), _decide(guard, cert)
    assert (first.cached, second.cached) == (False, True)
    assert first.elapsed is not None
    assert first.elapsed > 0
    assert second.elapsed is not None
    missing = _decide(guard)
    assert (missing.code, missing.elapsed, missing.cached) == ("certificate_missing", None, None)
    wrong = CA().issue_client_cert(common_name="svc")
    w1, w2 = _decide(guard, wrong), _decide(guard, wrong)
    assert (w1.code, w1.cached, w2.cached) == ("untrusted_issuer", False, True)


def test_prometheus(ca, verifier) -> None:
    prometheus_client = pytest.importorskip("prometheus_client")
    from mtlsauth.metrics.prometheus import PrometheusMetrics

    registry = prometheus_client.CollectorRegistry()
    metrics = PrometheusMetrics(verifier, registry=registry)
    guard = Guard(verifier=verifier, on_decision=metrics.on_decision)
    cert = ca.issue_client_cert(common_name="svc")
    for _ in range(3):
        _decide(guard, cert)
    _decide(guard)
    _decide(guard, mode="optional")
    _decide(guard, CA().issue_client_cert(common_name="x"))

    def value(name, **labels):
        return registry.get_sample_value(name, labels)

    assert value("mtlsauth_decisions_total", outcome="allowed", code="ok") == 3
    assert value("mtlsauth_decisions_total", outcome="denied", code="certificate_missing") == 1
    assert value("mtlsauth_decisions_total", outcome="allowed", code="no_certificate") == 1
    assert value("mtlsauth_decisions_total", outcome="denied", code="untrusted_issuer") == 1
    assert value("mtlsauth_verification_seconds_count", cache="miss") == 2
    assert value("mtlsauth_verification_seconds_count", cache="hit") == 2
    assert value("mtlsauth_cache_entries") == 1
    next_update = value("mtlsauth_crl_next_update_seconds")
    assert next_update is not None
    assert 0 < next_update <= 8 * 86400
    assert value("mtlsauth_reload_errors") == 0
    text = prometheus_client.generate_latest(registry).decode()
    assert "mtlsauth_decisions_total" in text


def test_opentelemetry(ca, verifier) -> None:
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from mtlsauth.metrics.opentelemetry import OpenTelemetryMetrics

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    metrics = OpenTelemetryMetrics(verifier, meter=provider.get_meter("test"))
    guard = Guard(verifier=verifier, on_decision=metrics)
    cert = ca.issue_client_cert(common_name="svc")
    _decide(guard, cert)
    _decide(guard, cert)
    _decide(guard)
    data = reader.get_metrics_data()
    found = {
        m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
    }
    counts = {
        (p.attributes["outcome"], p.attributes["code"]): p.value
        for p in found["mtlsauth.decisions"].data.data_points
    }
    assert counts == {("allowed", "ok"): 2, ("denied", "certificate_missing"): 1}
    hist = {
        p.attributes["cache"]: p.count
        for p in found["mtlsauth.verification.duration"].data.data_points
    }
    assert hist == {"miss": 1, "hit": 1}
    assert found["mtlsauth.cache.entries"].data.data_points[0].value == 1
    assert found["mtlsauth.crl.next_update"].data.data_points[0].value > 0


def test_health_gauges_report_reload_errors(tmp_path, ca) -> None:
    from mtlsauth import TrustStore

    path = tmp_path / "ca.pem"
    path.write_bytes(ca.cert_pem.bytes())
    verifier = Verifier(trust_store=TrustStore.from_pem_file(path, reload_interval=None))
    assert health_gauges(verifier)["reload_errors"] == 0
    path.write_text("not a certificate")
    verifier.reload()
    gauges = health_gauges(verifier)
    assert gauges["reload_errors"] == 1
    assert gauges["trust_last_load_age_seconds"] >= 0


def test_health_gauges_count_the_anchors_in_force(tmp_path, ca) -> None:
    """An emptied CA file withdraws its anchors without a reload error: the anchors gauge is
    what shows that every client is refused from then on."""
    from mtlsauth import TrustStore

    path = tmp_path / "ca.pem"
    path.write_bytes(ca.cert_pem.bytes())
    verifier = Verifier(trust_store=TrustStore.from_pem_file(path, reload_interval=None))
    assert health_gauges(verifier)["trust_anchors"] == 1
    path.write_text("")
    os.utime(path, (time.time() - 5, time.time() - 5))  # settled: not a write in progress
    assert verifier.reload() is True
    gauges = health_gauges(verifier)
    assert gauges["trust_anchors"] == 0
    assert gauges["reload_errors"] == 0
    assert "trust_anchors" not in health_gauges(
        Verifier(pinned=[ca.issue_client_cert().certificate])
    )


# -- audit log ----------------------------------------------------------------------------
HOSTILE_CN = 'evil\n{"decision":"allowed"}\x1b[31m\u202e'


async def _through_asgi(app_kwargs, cert, *, peer="127.0.0.1", path="/x", headers=None):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    wrapped = MTLSMiddleware(app, **app_kwargs)
    transport = httpx.ASGITransport(
        app=with_client_cert(wrapped, cert) if cert is not None else wrapped, client=(peer, 5000)
    )
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        return (await c.get(path, headers=headers)).status_code


async def test_audit_lines_are_single_ascii_json_objects(ca, verifier) -> None:
    stream = io.StringIO()
    audit = AuditLog(stream)
    hostile = ca.issue_client_cert(common_name=HOSTILE_CN)
    assert await _through_asgi({"verifier": verifier, "on_decision": audit}, hostile) == 200
    assert (
        await _through_asgi({"verifier": verifier, "on_decision": audit}, None, path="/a%0Ab%1B[2J")
        == 401
    )
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert all(line.isascii() for line in lines)
    assert "\x1b" not in stream.getvalue()
    assert "\u202e" not in stream.getvalue()
    assert first["decision"] == "allowed"
    assert first["subject"].startswith("CN=evil")
    assert first["fingerprint"]
    assert first["source"] == "tls"
    assert second == {
        **second,
        "decision": "denied",
        "code": "certificate_missing",
        "status": 401,
        "path": "/a\nb\x1b[2J",
    }


async def test_audit_never_writes_certificates_or_untrusted_header_values(ca, verifier) -> None:
    stream = io.StringIO()
    audit = AuditLog(stream)
    cert = ca.issue_client_cert(common_name="svc")
    from urllib.parse import quote

    forged = quote(cert.cert_pem.bytes().decode(), safe="")
    status = await _through_asgi(
        {"verifier": verifier, "on_decision": audit},
        None,
        peer="203.0.113.7",
        headers={"X-Client-Cert": forged},
    )
    assert status == 401
    await _through_asgi({"verifier": verifier, "on_decision": audit}, cert)
    text = stream.getvalue()
    body = "".join(cert.cert_pem.bytes().decode().splitlines()[1:-1])
    assert "BEGIN CERTIFICATE" not in text
    assert "%2D%2D" not in text.upper()
    assert body[:40] not in text
    assert forged[:60] not in text
    records = [json.loads(line) for line in text.splitlines()]
    assert [r["code"] for r in records] == ["untrusted_forwarder", "ok"]


def test_audit_to_file_logger_and_refusals_only(tmp_path, ca, verifier, caplog) -> None:
    path = tmp_path / "audit.jsonl"
    audit = AuditLog(path, allowed=False)
    guard = Guard(verifier=verifier, on_decision=audit)
    _decide(guard, ca.issue_client_cert(common_name="ok"))
    _decide(guard)
    audit.close()
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    lines = path.read_text().splitlines()
    assert [json.loads(x)["code"] for x in lines] == ["certificate_missing"]
    with caplog.at_level(logging.INFO, logger="mtlsauth.audit"):
        Guard(verifier=verifier, on_decision=AuditLog())
        _decide(Guard(verifier=verifier, on_decision=AuditLog()))
    assert any('"code":"certificate_missing"' in r.getMessage() for r in caplog.records)


def test_audit_sink_failure_never_breaks_a_request(ca, verifier, caplog) -> None:
    class Broken(io.StringIO):
        def write(self, s):
            raise OSError("disk full")

    guard = Guard(verifier=verifier, on_decision=AuditLog(Broken()))
    decision = _decide(guard, ca.issue_client_cert(common_name="ok"))
    assert decision.allowed
    assert any("audit log cannot be written" in r.getMessage() for r in caplog.records)


def test_audit_record_cuts_long_paths(ca, verifier) -> None:
    guard = Guard(verifier=verifier)
    from mtlsauth import Presented

    d = guard.decide(
        Presented("127.0.0.1", (), (), None, "/" + "a" * 5000, "GET"), "optional", None
    )
    rec = audit_record(d)
    assert len(rec["path"]) < 600
    assert rec["path"].endswith("...(cut)")
    with pytest.raises(ValueError, match="max_path"):
        AuditLog(io.StringIO(), max_path=0)
    with pytest.raises(TypeError, match="sink"):
        AuditLog(42)  # type: ignore[arg-type]


def test_a_failing_metrics_backend_never_hides_the_next_hook(
    tmp_path, ca, verifier, monkeypatch, caplog
) -> None:
    """prometheus_client in multiprocess mode writes each value to a file: when that fails
    (a full disk, a directory gone), the chained hook (the audit log) still hears of the
    decision, and the request is answered as decided."""
    pytest.importorskip("prometheus_client")
    from prometheus_client import CollectorRegistry, values

    from mtlsauth.metrics.prometheus import PrometheusMetrics

    gone = tmp_path / "not-a-directory"
    gone.write_text("")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(gone))
    monkeypatch.setattr(values, "ValueClass", values.MultiProcessValue())
    stream = io.StringIO()
    metrics = PrometheusMetrics(registry=CollectorRegistry(), on_decision=AuditLog(stream))
    guard = Guard(verifier=verifier, on_decision=metrics)
    with caplog.at_level(logging.ERROR, logger="mtlsauth"):
        decision = _decide(guard)
    assert decision.code == "certificate_missing"
    assert json.loads(stream.getvalue())["code"] == "certificate_missing"
    assert any("on_decision hook raised" in r.getMessage() for r in caplog.records)
