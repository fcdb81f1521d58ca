"""Differential test: the path the guard matches is the path the router routes.

The same raw request targets go over a raw socket to real servers (uvicorn with Starlette,
also mounted and under a root_path; werkzeug with Flask; gunicorn with Django; aiohttp), each
configured alike (see ``_router_apps.py``; Django both behind the WSGI middleware and with
mtlsauth's own Django middleware under a script prefix): ``/public/*`` exempt, ``/admin/*`` for the
``admins`` organization only, every other path mandatory. Whatever the target, no handler
may run under a weaker mode or policy than its own path was configured for.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mtlsauth.testing import CA, ClientCert, encode_forwarded

HERE = Path(__file__).parent

# Encoded and raw "/" and "\", dot segments, double encoding, ";" parameters, empty
# segments, trailing slashes, non-ASCII, letter case, NUL, absolute form.
TARGETS: tuple[bytes, ...] = (
    b"/public/x",
    b"/admin/x",
    b"/acme",
    b"/public%2Fx",
    b"/public%2facme",
    b"/admin%2Fx",
    b"/public%2F..%2Fadmin%2Fx",
    b"/public\\x",
    b"/public%5Cx",
    b"/public%5c..%5cadmin%5cx",
    b"/public/..\\admin/x",
    b"/public/../admin/x",
    b"/public/./x",
    b"/public/%2e%2e/admin/x",
    b"/public/%2E%2E/admin/x",
    b"/public/.%2e/admin/x",
    b"/public/..",
    b"/public/x/../../acme",
    b"/public/%2e%2e%2facme",
    b"/public%252Fx",
    b"/public/%252e%252e/admin/x",
    b"/admin%252Fx",
    b"/public;x",
    b"/public;/x",
    b"/public/x;/../../admin/x",
    b"/admin;x/y",
    b"/acme;public",
    b"/admin",
    b"/admin/",
    b"/public",
    b"/public/",
    b"/acme/",
    b"//public/x",
    b"/public//x",
    b"//admin/x",
    b"/public/%C3%A9",
    b"/caf%C3%A9",
    b"/caf%E9",
    b"/public/caf\xc3\xa9",
    b"/PUBLIC/x",
    b"/Public/x",
    b"/ADMIN/x",
    b"/%70ublic/x",
    b"/publ%69c%2Facme",
    b"/%61dmin/x",
    b"/public/x?next=/admin/x",
    b"/public/x%00",
    b"/public%00/../admin/x",
    b"http://127.0.0.1/public/../admin/x",
    b"/public/x#/../../admin/x",
)

# What each handler needs: the mode and policy its own path is configured with.
REQUIREMENTS = {
    "public": lambda org: True,  # exempt
    "account": lambda org: org in {"payments", "admins"},  # mandatory, default policy
    "admin": lambda org: org == "admins",  # Route("/admin/*", policy=admins)
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _request(port: int, target: bytes, headers: list[tuple[str, str]]) -> tuple[int, Any]:
    lines = [b"GET " + target + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    lines += [f"{k}: {v}".encode("latin-1") for k, v in headers]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"\r\n".join(lines) + b"\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    if not data:  # the server closed the connection: nothing ran
        return 0, None
    head, _, payload = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head.lower():
        out, rest = b"", payload
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            out, rest = out + rest[:size], rest[size + 2 :]
        payload = out
    try:
        return status, json.loads(payload)
    except ValueError:
        return status, None


@pytest.fixture(scope="module")
def people(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    ca = CA(organization="Router Test")
    root = tmp_path_factory.mktemp("router") / "root.pem"
    root.write_bytes(ca.cert_pem.bytes())
    certs: dict[str, ClientCert] = {
        "payments": ca.issue_client_cert(common_name="ledger", organization="payments"),
        "admins": ca.issue_client_cert(common_name="root", organization="admins"),
    }
    return {"root": str(root), "certs": certs}


def _headers(cert: ClientCert | None) -> list[tuple[str, str]]:
    if cert is None:
        return []
    return [("X-SSL-Client-Cert", v) for _k, v in encode_forwarded("nginx", cert.chain_der[:1])]


VARIANTS = {
    "starlette": b"",
    "starlette-mount": b"/v1",
    "starlette-root-path": b"",
    "flask": b"",
    "flask-mount": b"/v1",
    "django": b"",
    "django-middleware": b"/v1",
    "aiohttp": b"",
}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def server(
    request: pytest.FixtureRequest, people: dict[str, Any], tmp_path_factory: Any
) -> Iterator[tuple[str, int]]:
    variant = request.param
    port = _free_port()
    log = tmp_path_factory.mktemp("log") / f"{variant}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "_router_apps.py"), variant, str(port), people["root"]],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        pytest.fail(f"{variant} did not start: {log.read_text()}")
                    time.sleep(0.1)
            yield variant, port
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _prefixed(prefix: bytes, target: bytes) -> bytes:
    if target.startswith(b"/"):
        return prefix + target
    return target.replace(b"127.0.0.1/", b"127.0.0.1" + prefix + b"/", 1)


def test_no_handler_runs_under_a_weaker_rule(
    server: tuple[str, int], people: dict[str, Any]
) -> None:
    variant, port = server
    prefix = VARIANTS[variant]
    violations = []
    reached = []
    for who in (None, "payments"):
        cert = people["certs"].get(who) if who else None
        for target in TARGETS:
            status, doc = _request(port, _prefixed(prefix, target), _headers(cert))
            if status == 200 and isinstance(doc, dict) and "handler" in doc:
                reached.append((who, target, doc["handler"]))
                if not REQUIREMENTS[doc["handler"]](doc["org"]):
                    violations.append((who, target, status, doc))
            assert status < 500 or status == 0, (variant, target, status, doc)
    assert violations == [], variant
    # The harness itself works: each handler is reachable where it should be.
    assert (None, b"/public/x", "public") in reached
    assert ("payments", b"/acme", "account") in reached
    assert not any(t == b"/admin/x" for _w, t, _h in reached)


def test_each_handler_is_reached_with_its_own_rule(
    server: tuple[str, int], people: dict[str, Any]
) -> None:
    variant, port = server
    prefix = VARIANTS[variant]
    status, doc = _request(port, prefix + b"/admin/x", _headers(people["certs"]["admins"]))
    assert (status, doc) == (200, {"handler": "admin", "org": "admins"})
    status, doc = _request(port, prefix + b"/admin/x", _headers(people["certs"]["payments"]))
    assert status == 403
    status, doc = _request(port, prefix + b"/acme", [])
    assert (status, doc["code"]) == (401, "certificate_missing")
    status, doc = _request(port, prefix + b"/public%2Facme", [])
    assert (status, doc["code"]) == (400, "ambiguous_path")
