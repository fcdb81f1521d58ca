"""The soak's app: one mtlsauth configuration served by uvicorn, gunicorn or aiohttp.

    python soak_app.py uvicorn|aiohttp            (gunicorn loads ``soak_app:wsgi_app()``)

Environment: SOAK_CA (bundle file, under a Kubernetes-style mount), SOAK_CRLS (CRL folder),
SOAK_RELOAD (seconds), SOAK_INTERMEDIATE, PORT, and for direct TLS SOAK_SERVER_CERT/KEY;
without them the app sits behind a proxy on 127.0.0.1. ``/mem`` reports the resident set size.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from mtlsauth import CRLSet, ForwardedCert, TrustStore, Verifier


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def make_verifier() -> Verifier:
    interval = float(os.environ["SOAK_RELOAD"])
    behind_proxy = not os.environ.get("SOAK_SERVER_CERT")
    return Verifier(
        trust_store=TrustStore.from_pem_file(os.environ["SOAK_CA"], reload_interval=interval),
        revocation=CRLSet.from_paths(os.environ["SOAK_CRLS"], reload_interval=interval),
        intermediates=[Path(os.environ["SOAK_INTERMEDIATE"]).read_bytes()],
        forwarded=ForwardedCert.preset("nginx", trusted_proxies=["127.0.0.1"])
        if behind_proxy
        else None,
    )


def tls_context():  # type: ignore[no-untyped-def]
    from mtlsauth import server_ssl_context

    return server_ssl_context(
        certfile=os.environ["SOAK_SERVER_CERT"],
        keyfile=os.environ["SOAK_SERVER_KEY"],
        trust_store=TrustStore.from_pem_file(os.environ["SOAK_TLS_CA"], reload_interval=None),
        mode="optional",
    )


def asgi_app():  # type: ignore[no-untyped-def]
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from mtlsauth.adapters.asgi import MTLSMiddleware, identity_from_scope

    async def whoami(request):  # type: ignore[no-untyped-def]
        who = identity_from_scope(request.scope)
        return JSONResponse({"cn": who.common_name if who else None})

    async def mem(request):  # type: ignore[no-untyped-def]
        return JSONResponse({"rss_kb": rss_kb()})

    app = Starlette(routes=[Route("/whoami", whoami), Route("/mem", mem)])
    app.add_middleware(MTLSMiddleware, verifier=make_verifier(), exempt_paths={"/mem"})
    return app


def wsgi_app():  # type: ignore[no-untyped-def]
    import json

    from mtlsauth.adapters.wsgi import MTLSMiddleware, identity_from_environ

    def app(environ, start_response):  # type: ignore[no-untyped-def]
        if environ["PATH_INFO"] == "/mem":
            body = {"rss_kb": rss_kb()}
        else:
            who = identity_from_environ(environ)
            body = {"cn": who.common_name if who else None}
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(body).encode()]

    return MTLSMiddleware(app, verifier=make_verifier(), exempt_paths={"/mem"})


def aiohttp_app():  # type: ignore[no-untyped-def]
    from aiohttp import web

    from mtlsauth.adapters.aiohttp import get_identity, mtls_middleware

    async def whoami(request):  # type: ignore[no-untyped-def]
        who = get_identity(request)
        return web.json_response({"cn": who.common_name if who else None})

    async def mem(request):  # type: ignore[no-untyped-def]
        return web.json_response({"rss_kb": rss_kb()})

    app = web.Application(
        middlewares=[mtls_middleware(verifier=make_verifier(), exempt_paths={"/mem"})]
    )
    app.router.add_get("/whoami", whoami)
    app.router.add_get("/mem", mem)
    return app


def main() -> None:
    server = sys.argv[1]
    port = int(os.environ["PORT"])
    tls = bool(os.environ.get("SOAK_SERVER_CERT"))
    if server == "uvicorn":
        import uvicorn

        if tls:
            from mtlsauth.adapters.uvicorn import MTLSH11Protocol

            ctx = tls_context()
            uvicorn.run(asgi_app(), host="127.0.0.1", port=port, http=MTLSH11Protocol,
                        ssl_context_factory=lambda config, default: ctx, log_level="warning")  # fmt: skip
        else:
            uvicorn.run(asgi_app(), host="127.0.0.1", port=port, log_level="warning")
    elif server == "aiohttp":
        from aiohttp import web

        web.run_app(aiohttp_app(), host="127.0.0.1", port=port,
                    ssl_context=tls_context() if tls else None, print=None)  # fmt: skip
    else:
        raise SystemExit(f"unknown server {server}")


if __name__ == "__main__":
    main()
