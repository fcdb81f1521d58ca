"""The cached-hit hot path against the whole path, request by request.

A cached request is answered before any request view is built (``Guard.cached``, each
adapter's reading of the request for it, ``Verifier._cached_header`` and
``_cached_chain`` with their exact-value keys). Twins check that it decides nothing the
whole path would not: two middlewares built from one configuration, one as shipped and
one with every hot path switched off (so each request takes ``check``/``acheck`` and
``extract`` as before), get the same requests in the same order. Each decision handed
to ``on_decision``, each answer, what the app saw, and the caches' counters must be the
same; the sequences repeat so that the cache is warm, pass through exempt and routed
paths, an ambiguous target, every kind of refusal, odd spellings of the header, the
clock moving past the cache's lifetime and a CRL reload in the middle.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from mtlsauth import ClientIdentity, ForwardedCert, TrustStore, Verifier
from mtlsauth._config import config_from_mapping
from mtlsauth._guard import Decision, Guard
from mtlsauth.testing import CA, ClientCert

HEADER = "x-ssl-client-cert"
TRUSTED = "127.0.0.1"
UNTRUSTED = "203.0.113.9"
TTL = 600.0
RELOAD_INTERVAL = 1.0


@contextlib.contextmanager
def whole_path_only() -> Iterator[None]:
    """Every hot path off: what each request took before it existed."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Guard, "cached", lambda self, *a, **k: None)
        mp.setattr(Verifier, "_cached_header", lambda self, *a: None)
        mp.setattr(Verifier, "_cached_chain", lambda self, *a: None)
        mp.setattr(ForwardedCert, "plain_value", lambda self, headers: None)
        yield


@dataclass
class Pki:
    root_files: Path
    ca_pem: bytes
    good: ClientCert
    denied: ClientCert
    wrong_ca: ClientCert
    expired: ClientCert
    revoked: ClientCert
    current: ClientCert  # revoked half-way through a sequence
    rev_ca: CA
    values: dict[str, str | None] = field(default_factory=dict)


@pytest.fixture(scope="module")
def hit_certs(pki) -> Pki:
    now = dt.datetime.now(dt.timezone.utc)
    rev_ca = CA(organization="Revocation Test")
    revoked = rev_ca.issue_client_cert(common_name="retired")
    rev_ca.revoke(revoked)
    out = Pki(
        root_files=Path(),
        ca_pem=pki.root.cert_pem.bytes() + rev_ca.cert_pem.bytes(),
        good=pki.good,
        denied=pki.inter.issue_client_cert(common_name="ads-bot", organization="ads"),
        wrong_ca=pki.other_root.issue_client_cert(common_name="x", organization="payments"),
        expired=pki.inter.issue_client_cert(
            common_name="old",
            organization="payments",
            not_before=now - dt.timedelta(days=30),
            not_after=now - dt.timedelta(days=1),
        ),
        revoked=revoked,
        current=rev_ca.issue_client_cert(common_name="current", organization="Revocation Test"),
        rev_ca=rev_ca,
    )
    for name in ("good", "denied", "wrong_ca", "expired", "revoked", "current"):
        out.values[name] = quote(getattr(out, name).chain_pem.text(), safe="")
    return out


@pytest.fixture
def hit_pki(hit_certs, tmp_path) -> Pki:
    """The certificates, with the files of a configuration of their own (rewritten)."""
    (tmp_path / "ca.pem").write_bytes(hit_certs.ca_pem)
    (tmp_path / "revoked.crl").write_bytes(hit_certs.rev_ca.crl().bytes())
    time.sleep(0.3)  # past the write-quiet period: the first load takes it
    return replace(hit_certs, root_files=tmp_path)


def _conf(mode: str) -> dict[str, Any]:
    return {
        "mode": mode,
        "trust": {"files": ["ca.pem"]},
        "revocation": {
            "crls": ["revoked.crl"],
            "allow_missing": True,
            "reload_interval": RELOAD_INTERVAL,
        },
        "forwarded": {
            "preset": "nginx",
            "header": HEADER,
            "trusted_proxies": [TRUSTED],
            "single_certificate": False,
        },
        "policy": {"organizations": ["payments", "Revocation Test"]},
        "exempt_paths": ["/healthz"],
        "routes": [{"path": "/route/*", "mode": "mandatory", "policy": {"organizations": ["ads"]}}],
        "cache": {"ttl": TTL},
    }


def _kwargs(mode: str, base: Path, decisions: list[Decision]) -> dict[str, Any]:
    kwargs = config_from_mapping(_conf(mode), base_dir=base, name="hit").middleware_kwargs()
    return {**kwargs, "on_decision": decisions.append}


def _normal(d: Decision) -> tuple[Any, ...]:
    """A decision without its timing, comparable across twins."""
    error = None if d.error is None else (type(d.error), d.error.code, d.error.detail)
    route = None if d.route is None else (d.route.pattern, d.route.mode)
    return (
        d.identity,
        error,
        d.mode,
        route,
        d.exempt,
        d.peer,
        d.path,
        d.method,
        d.fingerprint,
        d.elapsed is None,
        d.cached,
        d.token,
        d.hide,
    )


# -- what the twins are sent ------------------------------------------------------------------
# (name, raw target, list of (header name, value) or None for the certificate header)
def _requests(p: Pki) -> list[tuple[str, str, list[tuple[str, str]]]]:
    v = p.values
    good = v["good"]
    assert good is not None
    reqs: list[tuple[str, str, list[tuple[str, str]]]] = []
    for target in ("/app", "/route/x", "/healthz", "/app%2Fx", "/other"):
        for name in ("good", "denied", "wrong_ca", "expired", "revoked", "current"):
            value = v[name]
            assert value is not None
            reqs.append((name, target, [(HEADER, value)]))
        reqs.append(("none", target, []))
    odd = {
        "two copies": [(HEADER, good), (HEADER, good)],
        "two spellings": [(HEADER, good), ("X-SSL-Client-Cert", good)],
        "(null)": [(HEADER, "(null)")],
        "empty": [(HEADER, "")],
        "leading blank": [(HEADER, " " + good)],
        "comma": [(HEADER, good + "," + good)],
        "non-ascii": [(HEADER, good + "\u00e9")],
        "oversize": [(HEADER, good + "A" * 70_000)],
        "other headers": [("accept", "*/*"), (HEADER, good), ("x-forwarded-for", "192.0.2.1")],
    }
    for name, headers in odd.items():
        reqs.append((name, "/app", headers))
    return reqs


@dataclass(frozen=True)
class Seen:
    status: int
    code: str | None
    cn: str | None
    headers: tuple[tuple[str, str], ...]  # what the app saw of the certificate header


# -- ASGI: the scope is built here, so the peer and odd scopes can be chosen -------------------
def _asgi_twins(mode: str, base: Path):
    from mtlsauth.adapters.asgi import MTLSMiddleware, identity_from_scope

    async def app(scope, receive, send) -> None:
        who = identity_from_scope(scope)
        seen = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in scope["headers"]
            if isinstance(k, bytes) and k.lower().replace(b"_", b"-") == HEADER.encode()
        ]
        body = json.dumps({"cn": who.common_name if who else None, "hdr": seen}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    out = []
    for _ in range(2):
        decisions: list[Decision] = []
        kwargs = _kwargs(mode, base, decisions)
        out.append((MTLSMiddleware(app, **kwargs), kwargs["verifier"], decisions))
    return out


def _asgi_send(loop: asyncio.AbstractEventLoop, mw, scope: dict[str, Any]) -> Seen:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    loop.run_until_complete(mw(scope, receive, send))
    status = sent[0]["status"]
    body = json.loads(sent[1]["body"])
    if status != 200:
        return Seen(status, body["code"], None, ())
    return Seen(200, None, body["cn"], tuple(tuple(h) for h in body["hdr"]))


def _scope(target: str, headers: list[tuple[str, str]], peer: str, **extra: Any) -> dict[str, Any]:
    path = target.replace("%2F", "/")
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": target.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers],
        "client": (peer, 50000),
        "server": ("127.0.0.1", 8000),
        **extra,
    }


def _odd_scopes(p: Pki) -> list[dict[str, Any]]:
    """Scopes only a server can get wrong: each is refused or read as the whole path says."""
    good = p.values["good"]
    assert good is not None
    ok = [(HEADER, good)]
    tls = {
        "tls": {
            "client_cert_chain": [p.good.cert_pem.text()],
            "client_cert_error": None,
            "client_cert_name": None,
        }
    }
    str_name = _scope("/app", ok, TRUSTED)
    str_name["headers"] = [(HEADER, good.encode())]
    str_value = _scope("/app", ok, TRUSTED)
    str_value["headers"].append((b"accept", "*/*"))
    both = _scope("/app", ok, TRUSTED)
    both["headers"].append((HEADER, good.encode()))
    return [
        str_name,
        str_value,
        both,
        _scope("/app", ok, TRUSTED, extensions={"tls": {**tls["tls"], "client_cert_error": "x"}}),
        _scope("/app", ok, TRUSTED, extensions=tls),
        _scope("/app", [], UNTRUSTED, extensions=tls),
        _scope("/app", ok, UNTRUSTED, extensions=tls),
        _scope("/app", [], TRUSTED, extensions=tls),
        _scope("/app", [], UNTRUSTED, extensions={"tls": {"client_cert_chain": [b"x", 3]}}),
        _scope("/app", ok, TRUSTED, path=b"/app"),
        _scope("/app", ok, TRUSTED, method=None),
        _scope("/x/app", ok, TRUSTED, root_path="/x"),
        _scope("/x/healthz", ok, TRUSTED, root_path="/x"),
        _scope("/app", ok, TRUSTED, raw_path="/app"),
        _scope("/app", ok, TRUSTED, client=[TRUSTED, 1]),
        _scope("/app", ok, TRUSTED, client=None),
        _scope("/app", ok, TRUSTED, client=("", 1)),
        _scope("/app", ok, TRUSTED, client=None, server=("/run/app.sock", None)),
        _scope("/app", ok, TRUSTED, method="POST"),
        _scope("/app", ok, TRUSTED, path=""),
    ]


@contextlib.contextmanager
def _clock(offset: list[float]) -> Iterator[None]:
    real = time.time
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(time, "time", lambda: real() + offset[0])
        yield


def _write_crl(p: Pki, *, revoke_current: bool) -> None:
    extra = [p.current.certificate.serial_number] if revoke_current else []
    time.sleep(0.3)  # the previous write is past the write-quiet period of file sources
    (p.root_files / "revoked.crl").write_bytes(p.rev_ca.crl(extra_serials=extra).bytes())


def _run_sequence(p: Pki, send_one, twins, requests) -> list[tuple[int, Seen]]:
    """Each request three times to both twins, in four phases: a cold cache; the clock
    past the cache's lifetime; a CRL file that revokes ``current``, which the CRL source
    notices on its own (no reload call); a CRL without it, loaded by ``reload()``."""
    (fast, fast_v, fast_d), (slow, slow_v, slow_d) = twins
    answers: list[tuple[int, Seen]] = []
    offset = [0.0]
    with _clock(offset):
        for phase in range(4):
            if phase == 1:
                offset[0] = TTL + 1
            if phase == 2:
                _write_crl(p, revoke_current=True)
                time.sleep(RELOAD_INTERVAL + 0.1)  # due for a check at the next request
            if phase == 3:
                _write_crl(p, revoke_current=False)
                for v in (fast_v, slow_v):
                    assert v.reload()
            for request in requests:
                for _ in range(3):
                    a = send_one(fast, request)
                    with whole_path_only():
                        b = send_one(slow, request)
                    assert a == b, request
                    assert [_normal(d) for d in fast_d] == [_normal(d) for d in slow_d], request
                    answers.append((phase, a))
                    if phase == 2 and a.cn == "current":
                        raise AssertionError(f"a revoked certificate was admitted: {request}")
    assert fast_v.health()["cache"] == slow_v.health()["cache"]
    return answers


def _check_phases(answers: list[tuple[int, Seen]], mode: str) -> None:
    """The hot path served what it should: ``current`` admitted before the CRL revoked it
    and after it was lifted (never while revoked: checked as it ran)."""
    assert any(a.status == 200 and a.cn is not None for _phase, a in answers)
    if mode != "off":
        for phase in (0, 1, 3):
            assert any(a.cn == "current" for ph, a in answers if ph == phase), phase


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["mandatory", "optional", "off"])
def test_asgi_hot_path_decides_as_the_whole_path(hit_pki, mode) -> None:
    p = hit_pki
    twins = _asgi_twins(mode, p.root_files)
    requests: list[Any] = []
    for name, target, headers in _requests(p):
        for peer in (TRUSTED, UNTRUSTED):
            requests.append((name, _scope(target, headers, peer)))
    requests += [("odd", s) for s in _odd_scopes(p)]
    loop = asyncio.new_event_loop()  # one loop for the sequence (asyncio.Runner is 3.11+)
    try:
        answers = _run_sequence(p, lambda mw, r: _asgi_send(loop, mw, r[1]), twins, requests)
    finally:
        loop.close()
    _assert_hot_path_ran(twins[0][1])
    _check_phases(answers, mode)


def _assert_hot_path_ran(verifier: Verifier) -> None:
    """The twins agree, and the hot path was really taken (values were remembered)."""
    assert len(verifier._header_aliases) >= 1


# -- WSGI ---------------------------------------------------------------------------------------
def _wsgi_twins(mode: str, base: Path):
    from mtlsauth.adapters.wsgi import MTLSMiddleware, identity_from_environ

    def app(environ, start_response):
        who = identity_from_environ(environ)
        seen = [(k, v) for k, v in environ.items() if k == "HTTP_X_SSL_CLIENT_CERT"]
        start_response("200 OK", [("content-type", "application/json")])
        return [json.dumps({"cn": who.common_name if who else None, "hdr": seen}).encode()]

    out = []
    for _ in range(2):
        decisions: list[Decision] = []
        kwargs = _kwargs(mode, base, decisions)
        out.append((MTLSMiddleware(app, **kwargs), kwargs["verifier"], decisions))
    return out


def _wsgi_send(mw, environ: dict[str, Any]) -> Seen:
    answer: list[str] = []
    body = b"".join(mw(dict(environ), lambda s, h: answer.append(s)))
    data = json.loads(body)
    status = int(answer[0].split()[0])
    if status != 200:
        return Seen(status, data["code"], None, ())
    return Seen(200, None, data["cn"], tuple(tuple(h) for h in data["hdr"]))


def _environ(target: str, headers: list[tuple[str, str]], peer: str, **extra: Any) -> dict:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": target.replace("%2F", "/"),
        "RAW_URI": target,
        "REMOTE_ADDR": peer,
        "wsgi.url_scheme": "http",
    }
    for k, v in headers:  # a WSGI server joins repeated headers with a comma
        key = "HTTP_" + k.upper().replace("-", "_")
        environ[key] = environ[key] + "," + v if key in environ else v
    environ.update(extra)
    return environ


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["mandatory", "optional", "off"])
def test_wsgi_hot_path_decides_as_the_whole_path(hit_pki, mode) -> None:
    p = hit_pki
    twins = _wsgi_twins(mode, p.root_files)
    good = p.values["good"]
    requests: list[Any] = []
    for name, target, headers in _requests(p):
        for peer in (TRUSTED, UNTRUSTED):
            requests.append((name, _environ(target, headers, peer)))
    ok = [(HEADER, good)]
    for extra in (
        {"SSL_CLIENT_CERT": p.good.cert_pem.text()},
        {"SSL_CLIENT_CERT": 3},
        {"SSL_CLIENT_VERIFY": "FAILED:unknown CA"},
        {"SSL_CLIENT_VERIFY": "SUCCESS"},
        {"PATH_INFO": 3},
        {"PATH_INFO": "/\u00e9"},
        {"REMOTE_ADDR": ""},
        {"RAW_URI": None, "REQUEST_URI": "/app/%2e%2e/healthz"},
    ):
        requests.append(("odd", _environ("/app", ok, TRUSTED, **extra)))  # type: ignore[arg-type]
    answers = _run_sequence(p, lambda mw, r: _wsgi_send(mw, r[1]), twins, requests)
    _assert_hot_path_ran(twins[0][1])
    _check_phases(answers, mode)


# -- aiohttp: a real server (the peer is the test client's, 127.0.0.1) --------------------------
@pytest.mark.slow
@pytest.mark.parametrize("plain", [False, True])
def test_aiohttp_hot_path_decides_as_the_whole_path(hit_pki, plain) -> None:
    """``plain``: no routes, no exempt paths and no reader of decisions, so a hit never
    reads the path (only answers and counters can be compared then)."""
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer
    from multidict import CIMultiDict

    from mtlsauth.adapters.aiohttp import get_identity, mtls_middleware

    p = hit_pki

    async def handler(request: web.Request) -> web.Response:
        who = get_identity(request)
        seen = [(k, v) for k, v in request.headers.items() if k.lower() == HEADER]
        return web.json_response({"cn": who.common_name if who else None, "hdr": seen})

    async def run() -> None:
        clients = []
        twins = []
        for trusted in (TRUSTED, "10.0.0.1"):
            pair = []
            for _ in range(2):
                decisions: list[Decision] = []
                conf = _conf("mandatory")
                conf["forwarded"]["trusted_proxies"] = [trusted]
                if plain:
                    del conf["exempt_paths"], conf["routes"]
                kwargs = config_from_mapping(
                    conf, base_dir=p.root_files, name="hit"
                ).middleware_kwargs()
                hook = None if plain else decisions.append
                app = web.Application(middlewares=[mtls_middleware(**kwargs, on_decision=hook)])
                app.router.add_get("/{tail:.*}", handler)
                client = TestClient(TestServer(app))
                await client.start_server()
                clients.append(client)
                pair.append((client, kwargs["verifier"], decisions))
            twins.append(pair)

        async def send_one(client, request) -> Seen:
            _name, target, headers = request
            r = await client.get(target, headers=CIMultiDict(headers))
            data = json.loads(await r.read())
            if r.status != 200:
                return Seen(r.status, data["code"], None, ())
            return Seen(200, None, data["cn"], tuple(tuple(h) for h in data["hdr"]))

        try:
            for pair in twins:
                (fast, fast_v, fast_d), (slow, slow_v, slow_d) = pair
                for request in _requests(p):
                    if request[0] == "oversize":  # aiohttp's parser refuses it first
                        continue
                    for _ in range(3):
                        a = await send_one(fast, request)
                        with whole_path_only():
                            b = await send_one(slow, request)
                        assert a == b, request
                        assert [_normal(d) for d in fast_d] == [_normal(d) for d in slow_d]
                assert fast_v.health()["cache"] == slow_v.health()["cache"]
            _assert_hot_path_ran(twins[0][0][1])
        finally:
            for client in clients:
                await client.close()

    asyncio.run(run())


# -- Django: the middleware under WSGI (WSGIRequest) and ASGI (ASGIRequest) ----------------------
def _django_twins(mode: str, base: Path, mp: pytest.MonkeyPatch):
    """Two ``MTLSMiddleware`` over two Guards of one configuration (``settings.MTLSAUTH``
    builds one per process; here each twin gets its own, and so its own cache)."""
    import test_django  # the adapter's own tests configure Django, once per process
    from django.http import JsonResponse

    from mtlsauth.adapters import django as dj

    test_django.configure_django()

    def view(request):
        who = dj.identity_from_request(request)
        seen = [(k, v) for k, v in request.META.items() if k == "HTTP_X_SSL_CLIENT_CERT"]
        return JsonResponse({"cn": who.common_name if who else None, "hdr": seen})

    out = []
    for _ in range(2):
        decisions: list[Decision] = []
        kwargs = _kwargs(mode, base, decisions)
        guard = Guard(**kwargs)
        mp.setattr(dj, "get_guard", lambda guard=guard: guard)
        out.append(((dj.MTLSMiddleware(view), guard), kwargs["verifier"], decisions))
    return out


def _django_send(mp: pytest.MonkeyPatch, twin, make) -> Seen:
    from mtlsauth.adapters import django as dj

    middleware, guard = twin
    mp.setattr(dj, "get_guard", lambda: guard)
    response = middleware(make())
    data = json.loads(response.content)
    if response.status_code != 200:
        return Seen(response.status_code, data["code"], None, ())
    return Seen(200, None, data["cn"], tuple(tuple(h) for h in data["hdr"]))


def _django_wsgi(environ: dict[str, Any]):
    """A ``WSGIRequest`` of this environ (a fresh one per call: Django mutates it)."""
    import io

    from django.core.handlers.wsgi import WSGIRequest

    def make():
        return WSGIRequest({**environ, "wsgi.input": io.BytesIO(b"")})

    return make


def _django_asgi(scope: dict[str, Any]):
    import io

    from django.core.handlers.asgi import ASGIRequest

    def make():
        return ASGIRequest(dict(scope), io.BytesIO(b""))

    return make


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["mandatory", "optional", "off"])
def test_django_hot_path_decides_as_the_whole_path(hit_pki, mode) -> None:
    p = hit_pki
    good = p.values["good"]
    assert good is not None
    ok = [(HEADER, good)]
    requests: list[Any] = []
    for name, target, headers in _requests(p):
        for peer in (TRUSTED, UNTRUSTED):
            environ = _environ(target, headers, peer, REQUEST_URI=target)
            del environ["RAW_URI"]
            requests.append((name, _django_wsgi(environ)))
            if name != "non-ascii":  # ASGI headers are bytes: latin-1 only
                requests.append((name, _django_asgi(_scope(target, headers, peer))))
    for extra in (
        {"SSL_CLIENT_CERT": p.good.cert_pem.text()},
        {"SSL_CLIENT_CERT": 3},
        {"SSL_CLIENT_VERIFY": "FAILED:unknown CA"},
        {"SSL_CLIENT_VERIFY": "SUCCESS"},
        {"REMOTE_ADDR": ""},
        {"REQUEST_URI": "/app/%2e%2e/healthz"},
        {"REQUEST_METHOD": "POST"},
    ):
        requests.append(("odd", _django_wsgi(_environ("/app", ok, TRUSTED, **extra))))
    requests += [("odd", _django_asgi(s)) for s in _odd_scopes(p) if _django_reads(s)]
    hits: list[ClientIdentity] = []
    real = Guard.cached

    def spy(self: Guard, *args: Any, **kwargs: Any) -> ClientIdentity | None:
        identity = real(self, *args, **kwargs)
        if identity is not None:
            hits.append(identity)
        return identity

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Guard, "cached", spy)
        twins = _django_twins(mode, p.root_files, mp)
        answers = _run_sequence(p, lambda mw, r: _django_send(mp, mw, r[1]), twins, requests)
    _assert_hot_path_ran(twins[0][1])
    if mode != "off":  # the middleware's own hot path answered requests
        assert len(hits) > 50
    _check_phases(answers, mode)


def _django_reads(scope: dict[str, Any]) -> bool:
    """Scopes Django's ASGIRequest can be built from at all (it reads these itself)."""
    return (
        type(scope.get("path")) is str
        and type(scope.get("method")) is str
        and all(type(k) is bytes and type(v) is bytes for k, v in scope["headers"])
    )


# -- the Verifier alone ---------------------------------------------------------------------------
def test_authenticate_hot_path_answers_as_the_whole_path(hit_pki, pki) -> None:
    from mtlsauth import CRLSet, Policy
    from mtlsauth._errors import MTLSAuthError
    from mtlsauth._types import Presented

    p = hit_pki
    crl = CRLSet.from_pem((p.root_files / "revoked.crl").read_bytes(), allow_missing=True)

    def build() -> Verifier:
        return Verifier(
            trust_store=TrustStore.from_pem_file(p.root_files / "ca.pem"),
            revocation=crl,
            policy=Policy(organizations={"payments", "Revocation Test"}),
            forwarded=ForwardedCert.preset(
                "nginx", header=HEADER, trusted_proxies=[TRUSTED], single_certificate=False
            ),
        )

    fast, slow = build(), build()
    ads = Policy(organizations={"ads"})
    presented = []
    for _name, _target, headers in _requests(p):
        for peer in (TRUSTED, UNTRUSTED, None):
            presented.append(Presented(peer=peer, headers=tuple(headers)))
    tls = (p.good.cert_pem.text(), p.good.chain_pem.text())
    presented += [
        Presented(peer=UNTRUSTED, tls_chain=(p.good.cert_pem.text(),)),
        Presented(peer=UNTRUSTED, tls_chain=tls),
        Presented(peer=UNTRUSTED, tls_chain=[p.good.cert_pem.text()]),  # type: ignore[arg-type]
        Presented(peer=TRUSTED, tls_chain=tls, headers=((HEADER, p.values["good"]),)),
        Presented(peer=TRUSTED, tls_error="bad", headers=((HEADER, p.values["good"]),)),
        Presented(peer=TRUSTED, headers=((HEADER, ["not", "text"]),)),  # type: ignore[arg-type]
    ]

    def outcome(v: Verifier, pr: Presented, policy: Policy | None) -> object:
        try:
            return v.authenticate(pr, required=True, policy=policy)
        except MTLSAuthError as exc:
            return (type(exc), exc.code, exc.detail)
        except Exception as exc:  # noqa: BLE001 - compared, not raised
            return type(exc)

    for _ in range(3):
        for pr in presented:
            for policy in (None, ads, Policy()):
                a = outcome(fast, pr, policy)
                with whole_path_only():
                    b = outcome(slow, pr, policy)
                assert a == b, pr
    assert fast.health()["cache"] == slow.health()["cache"]
    _assert_hot_path_ran(fast)
    assert len(fast._chain_aliases) >= 1


def test_exact_value_keys_are_bounded_and_remember_only_admitted_values(hit_pki) -> None:
    from mtlsauth._cache import ExactAliases

    memo = ExactAliases(64 * 100)
    for i in range(1000):
        memo.remember(f"{i:0100d}", b"k")
    assert 0 < len(memo) <= 64
    assert sum(len(str(k)) for k in memo.map) <= 64 * 100
    memo.remember("x" * 101, b"k")  # over a 64th of the budget: never held
    assert "x" * 101 not in memo.map

    p = hit_pki
    v = Verifier(
        trust_store=TrustStore.from_pem_file(p.root_files / "ca.pem"),
        forwarded=ForwardedCert.preset(
            "nginx", header=HEADER, trusted_proxies=[TRUSTED], single_certificate=False
        ),
    )
    from mtlsauth._types import Presented

    for name in ("wrong_ca", "expired", "good"):
        value = p.values[name]
        for _ in range(3):
            with contextlib.suppress(Exception):
                v.authenticate(Presented(peer=TRUSTED, headers=((HEADER, value),)))
    # only the admitted value is remembered; refusals never are
    assert list(v._header_aliases.map) == [p.values["good"]]
    v.clear_cache()
    assert len(v._header_aliases) == 0


def test_an_entry_computed_under_other_trust_is_never_a_hit(hit_pki) -> None:
    """An entry whose verification finished under trust, pins or revocation data that has
    since been replaced is looked past by the hot path, exactly as by ``_verified``."""
    from mtlsauth._types import Presented

    p = hit_pki
    v = Verifier(
        trust_store=TrustStore.from_pem_file(p.root_files / "ca.pem"),
        forwarded=ForwardedCert.preset(
            "nginx", header=HEADER, trusted_proxies=[TRUSTED], single_certificate=False
        ),
    )
    request = Presented(peer=TRUSTED, headers=((HEADER, p.values["good"]),))
    v.authenticate(request)
    v.authenticate(request)  # admitted, remembered
    (entry,) = v._cache._main.values()
    entry.tokens = (object(), None, None)  # as if computed before a reload landed
    assert v._cached_header(p.values["good"], TRUSTED, None) is None
    again = v.authenticate(request)
    assert again is not None
    assert again is not entry.identity  # verified again, not served from that entry


def test_a_hit_without_its_path_is_answered_only_when_nothing_reads_the_path(
    hit_pki, caplog
) -> None:
    """An adapter may leave the path unread (``None``) on the hot path; ``Guard.cached``
    then answers only when neither routes, exempt paths nor a reader of decisions need
    it, and otherwise leaves the request to ``check``."""
    import logging

    from mtlsauth._guard import RequestView
    from mtlsauth._types import Presented

    p = hit_pki
    value = p.values["good"]
    assert value is not None

    def guard(**kwargs: Any) -> Guard:
        verifier = Verifier(
            trust_store=TrustStore.from_pem_file(p.root_files / "ca.pem"),
            forwarded=ForwardedCert.preset(
                "nginx", header=HEADER, trusted_proxies=[TRUSTED], single_certificate=False
            ),
        )
        g = Guard(verifier=verifier, **kwargs)
        view = RequestView(
            peer=TRUSTED,
            path="/app",
            credentials=lambda: Presented(peer=TRUSTED, headers=((HEADER, value),)),
        )
        for _ in range(2):  # verified, then admitted
            assert g.check(view).identity is not None
        return g

    plain = guard()
    assert not plain.reporting
    identity = plain.cached(TRUSTED, None, "GET", None, header=value)
    assert identity is not None
    assert plain.cached(TRUSTED, "/app", "GET", None, header=value) is identity
    assert plain.cached(UNTRUSTED, None, "GET", None, header=value) is None
    seen: list[Decision] = []
    for g in (guard(exempt_paths={"/healthz"}), guard(on_decision=seen.append)):
        assert g.cached(TRUSTED, None, "GET", None, header=value) is None
        assert g.cached(TRUSTED, "/app", "GET", None, header=value) is not None
    assert [d.path for d in seen[-1:]] == ["/app"]
    with caplog.at_level(logging.DEBUG, logger="mtlsauth"):
        assert plain.reporting
        assert plain.cached(TRUSTED, None, "GET", None, header=value) is None
        assert plain.cached(TRUSTED, "/app", "GET", None, header=value) is identity
