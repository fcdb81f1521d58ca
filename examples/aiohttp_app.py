"""aiohttp behind mtlsauth: aiohttp's own TLS (peer certificate from the transport), or a proxy.

    MTLS_CLIENT_CA=clients-ca.pem MTLS_INTERMEDIATES=intermediate.pem \\
        MTLS_SERVER_CERT=server.pem MTLS_SERVER_KEY=server.key python examples/aiohttp_app.py

Behind nginx: set MTLS_TRUSTED_PROXIES=127.0.0.1 and leave MTLS_SERVER_CERT unset.
Settings are the same environment variables as examples/fastapi_app.py (PORT default 8443).
"""

from __future__ import annotations

import os
from pathlib import Path

from aiohttp import web

from mtlsauth import ForwardedCert, TrustStore, Verifier
from mtlsauth.adapters.aiohttp import get_identity, mtls_middleware


def make_verifier() -> Verifier:
    proxies = [
        p.strip() for p in os.environ.get("MTLS_TRUSTED_PROXIES", "").split(",") if p.strip()
    ]
    intermediates = os.environ.get("MTLS_INTERMEDIATES")
    return Verifier(
        trust_store=TrustStore.from_pem_file(os.environ.get("MTLS_CLIENT_CA", "clients-ca.pem")),
        intermediates=[Path(intermediates).read_bytes()] if intermediates else (),
        forwarded=ForwardedCert.preset(
            "nginx",
            header=os.environ.get("MTLS_CERT_HEADER", "X-SSL-Client-Cert"),
            trusted_proxies=proxies,
        )
        if proxies
        else None,
    )


async def whoami(request: web.Request) -> web.Response:
    who = get_identity(request)
    if who is None:
        return web.json_response({"cn": None, "source": None})
    return web.json_response({"cn": who.common_name, "source": who.source})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "up"})


def create_app() -> web.Application:
    app = web.Application(
        middlewares=[
            mtls_middleware(
                verifier=make_verifier(),
                mode=os.environ.get("MTLS_MODE", "mandatory"),  # type: ignore[arg-type]
                exempt_paths={"/healthz"},
            )
        ]
    )
    app.router.add_get("/whoami", whoami)
    app.router.add_get("/healthz", healthz)
    return app


def main() -> None:
    ssl_context = None
    if os.environ.get("MTLS_SERVER_CERT"):
        from mtlsauth import server_ssl_context

        ssl_context = server_ssl_context(
            certfile=os.environ["MTLS_SERVER_CERT"],
            keyfile=os.environ.get("MTLS_SERVER_KEY"),
            trust_store=TrustStore.from_pem_file(
                os.environ.get("MTLS_CLIENT_CA", "clients-ca.pem")
            ),
            mode=os.environ.get("MTLS_TLS_MODE", "optional"),  # type: ignore[arg-type]
        )
    web.run_app(
        create_app(),
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ.get("PORT", "8443")),
        ssl_context=ssl_context,
        print=None,
    )


if __name__ == "__main__":
    main()
