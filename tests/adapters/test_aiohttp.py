"""aiohttp adapter in process: aiohttp's test client (no TLS, so peer chain cases use a stub)."""

from __future__ import annotations

import json
import threading
from urllib.parse import quote

import pytest
from aiohttp import web

from mtlsauth import IdentityMissing, Policy, Verifier
from mtlsauth.adapters import aiohttp as adapter
from mtlsauth.adapters.aiohttp import Route, get_identity, mtls_middleware


def make_app(verifier, **kw) -> web.Application:
    async def whoami(request: web.Request) -> web.Response:
        who = get_identity(request)
        return web.json_response({"cn": who.common_name if who else None})

    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"value": request.headers.get("X-SSL-Client-Cert")})

    async def ops(request: web.Request) -> web.Response:
        who = get_identity(request)
        assert who is not None
        Policy(organizations={"ops"}).check(who)  # PolicyDenied -> 403 problem
        return web.json_response({"ok": True})

    app = web.Application(middlewares=[mtls_middleware(verifier=verifier, **kw)])
    app.router.add_get("/whoami", whoami)
    app.router.add_get("/echo-header", echo)
    app.router.add_get("/healthz", echo)
    app.router.add_get("/ops", ops)
    return app


@pytest.fixture
def peer_chain(monkeypatch):
    """Pretend the connection carried this TLS chain (the test client speaks plain HTTP)."""
    holder: dict[str, tuple[bytes, ...]] = {"chain": ()}
    monkeypatch.setattr(adapter, "peer_chain", lambda ssl_object: holder["chain"])

    def use(cert) -> None:
        holder["chain"] = cert.chain_der if cert is not None else ()

    return use


# The mode x certificate x path contract is tests/adapters/test_contract.py; here only
# what is this adapter's own: the certificate read from its TLS source.
@pytest.mark.parametrize(
    ("mode", "which", "status", "code"),
    [
        pytest.param("mandatory", "good", 200, None, id="mandatory good"),
        pytest.param("mandatory", "wrong_ca", 401, "untrusted_issuer", id="mandatory wrong CA"),
        pytest.param("optional", None, 200, None, id="optional none"),
    ],
)
async def test_tls_source(
    aiohttp_client, peer_chain, certs, verifier, mode, which, status, code
) -> None:
    peer_chain(getattr(certs, which) if which else None)
    client = await aiohttp_client(make_app(verifier, mode=mode))
    r = await client.get("/whoami")
    assert r.status == status
    body = json.loads(await r.read())
    if code is None:
        assert body == {"cn": "ledger" if which == "good" and mode != "off" else None}
    else:
        assert r.content_type == "application/problem+json"
        assert body["code"] == code
        assert body["type"] == f"urn:mtlsauth:error:{code}"
        assert r.headers["WWW-Authenticate"] == f'MutualTLS error="{code}"'


async def test_problem_body_exact(aiohttp_client, peer_chain, verifier) -> None:
    peer_chain(None)
    r = await (await aiohttp_client(make_app(verifier))).get("/whoami")
    assert json.loads(await r.read()) == {
        "type": "urn:mtlsauth:error:certificate_missing",
        "title": "Client certificate required",
        "status": 401,
        "detail": "no client certificate was presented",
        "code": "certificate_missing",
    }
    assert r.headers["Cache-Control"] == "no-store"


async def test_revoked(aiohttp_client, peer_chain, certs, rev_verifier) -> None:
    client = await aiohttp_client(make_app(rev_verifier))
    peer_chain(certs.revoked)
    assert json.loads(await (await client.get("/whoami")).read())["code"] == "certificate_revoked"


async def test_handler_policy_denied_is_403(aiohttp_client, peer_chain, certs, verifier) -> None:
    peer_chain(certs.good)
    r = await (await aiohttp_client(make_app(verifier))).get("/ops")
    assert r.status == 403
    assert json.loads(await r.read())["code"] == "organization_not_allowed"


async def test_exempt_and_routes(aiohttp_client, peer_chain, verifier) -> None:
    peer_chain(None)
    app = make_app(verifier, exempt_paths={"/healthz"}, routes=[Route("/whoami", mode="optional")])
    client = await aiohttp_client(app)
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/whoami")).status == 200
    assert (await client.get("/echo-header")).status == 401


async def test_forwarded_header_from_loopback_proxy(aiohttp_client, peer_chain, certs, pki) -> None:
    from mtlsauth import ForwardedCert, Verifier

    peer_chain(None)
    value = quote(certs.good.chain_pem.text(), safe="")
    trusted = Verifier(
        trust_store=pki.root.trust_store(),
        forwarded=ForwardedCert.preset(
            "nginx",
            header="x-ssl-client-cert",
            trusted_proxies=["127.0.0.1"],
            single_certificate=False,  # leaf + intermediate in the header
        ),
    )
    client = await aiohttp_client(make_app(trusted))
    r = await client.get("/whoami", headers={"X-SSL-Client-Cert": value})
    assert json.loads(await r.read()) == {"cn": "ledger"}


async def test_forged_header_refused_and_stripped(
    aiohttp_client, peer_chain, certs, fwd_verifier
) -> None:
    # fwd_verifier trusts 10.0.0.1 only; the test client connects from 127.0.0.1
    peer_chain(None)
    client = await aiohttp_client(
        make_app(fwd_verifier, mode="optional", exempt_paths={"/echo-header"})
    )
    forged = {"X-SSL-Client-Cert": quote(certs.good.cert_pem.text(), safe="")}
    r = await client.get("/whoami", headers=forged)
    assert json.loads(await r.read())["code"] == "untrusted_forwarder"
    r = await client.get("/echo-header", headers=forged)
    assert json.loads(await r.read()) == {"value": None}


async def test_hooks(aiohttp_client, peer_chain, certs, verifier) -> None:
    decisions = []

    async def on_error(error, request):
        return web.Response(text=f"refused {error.code}", status=error.status)

    peer_chain(certs.expired)
    client = await aiohttp_client(
        make_app(verifier, on_error=on_error, on_decision=decisions.append)
    )
    r = await client.get("/whoami")
    assert (r.status, await r.text()) == (401, "refused certificate_expired")
    assert [d.code for d in decisions] == ["certificate_expired"]


async def test_raising_hooks_still_refuse(aiohttp_client, peer_chain, certs, verifier) -> None:
    def bad(*args):
        raise RuntimeError("hook bug")

    client = await aiohttp_client(make_app(verifier, on_error=bad, on_decision=bad))
    peer_chain(certs.expired)
    assert (await client.get("/whoami")).status == 401
    peer_chain(certs.good)
    assert (await client.get("/whoami")).status == 200


async def test_get_identity_without_middleware(aiohttp_client) -> None:
    async def handler(request: web.Request) -> web.Response:
        with pytest.raises(IdentityMissing):
            get_identity(request)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", handler)
    assert (await (await aiohttp_client(app)).get("/")).status == 200


def test_request_key_is_typed() -> None:
    if hasattr(web, "RequestKey"):
        assert isinstance(adapter.IDENTITY_KEY, web.RequestKey)
    else:  # pragma: no cover - aiohttp < 3.14
        assert adapter.IDENTITY_KEY == "mtlsauth.identity"


async def test_may_block_runs_off_the_event_loop(aiohttp_client, peer_chain, certs, pki) -> None:
    class SlowChecker:
        """A revocation checker that claims to do network I/O, as OCSP does."""

        token = object()
        may_block = True

        def __init__(self) -> None:
            self.threads: list[str] = []

        def check(self, chain, *, at):
            self.threads.append(threading.current_thread().name)

    checker = SlowChecker()
    v = Verifier(trust_store=pki.root.trust_store(), revocation=checker)
    client = await aiohttp_client(make_app(v))
    peer_chain(certs.good)
    r = await client.get("/whoami")
    assert json.loads(await r.read()) == {"cn": "ledger"}
    assert checker.threads
    assert threading.main_thread().name not in checker.threads


@pytest.mark.parametrize("written", [b"", b"partial"])
async def test_handler_refusing_after_its_response_started_is_not_answered_twice(
    aiohttp_client, verifier, written
) -> None:
    """A handler that prepared a streamed response and then raised ``MTLSAuthError`` was
    answered with a problem response written after the first one's headers (and body),
    a second status line inside a chunked body: the connection's responses no longer
    parse. As the ASGI middleware does, the error is left to aiohttp then (it closes the
    connection), and the next connection is answered normally."""
    from aiohttp import ClientPayloadError

    from mtlsauth import CertificateMissing

    async def late(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        if written:
            await response.write(written)
        raise CertificateMissing("refused after the response started")

    async def fine(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application(middlewares=[mtls_middleware(verifier=verifier, mode="off")])
    app.router.add_get("/late", late)
    app.router.add_get("/whoami", fine)
    client = await aiohttp_client(app)
    r = await client.get("/late")
    assert r.status == 200  # the handler's own status line, the only one sent
    with pytest.raises(ClientPayloadError, match="not completed"):
        await r.read()  # the body ends with the connection, not with a second response
    r = await client.get("/whoami")
    assert (r.status, await r.json()) == (200, {"ok": True})
