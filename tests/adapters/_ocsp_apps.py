"""An app whose verifier asks a (slow) OCSP responder, under real uvicorn or aiohttp.

Usage: python _ocsp_apps.py <uvicorn|aiohttp> <port> <root-ca.pem> <responder-url>

The certificate arrives in nginx's header from 127.0.0.1; the Guard's pool is 2 threads
and 4 waiting places, so a flood of uncached certificates is refused beyond 6.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from mtlsauth import ForwardedCert, OCSPChecker, TrustStore, Verifier

POOL = {"verification_threads": 2, "verification_queue": 4}


def verifier(root: str, url: str) -> Verifier:
    return Verifier(
        trust_store=TrustStore.from_pem_file(root),
        revocation=OCSPChecker(responder_url=url, timeout=20.0, nonce=False),
        forwarded=ForwardedCert.preset(
            "nginx", header="X-SSL-Client-Cert", trusted_proxies=["127.0.0.1"]
        ),
    )


def main() -> None:
    kind, port, root, url = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    if kind == "uvicorn":
        import uvicorn

        from mtlsauth.adapters.asgi import MTLSMiddleware, identity_from_scope

        async def app(scope: Any, receive: Any, send: Any) -> None:
            who = identity_from_scope(scope)
            body = json.dumps({"cn": who.common_name if who else None}).encode()
            headers = [(b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        uvicorn.run(
            MTLSMiddleware(app, verifier=verifier(root, url), **POOL),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
        )
    else:
        from aiohttp import web

        from mtlsauth.adapters.aiohttp import get_identity, mtls_middleware

        async def whoami(request: web.Request) -> web.Response:
            who = get_identity(request)
            return web.json_response({"cn": who.common_name if who else None})

        application = web.Application(
            middlewares=[mtls_middleware(verifier=verifier(root, url), **POOL)]
        )
        application.router.add_get("/{tail:.*}", whoami)
        web.run_app(application, host="127.0.0.1", port=port, print=None)


if __name__ == "__main__":
    main()
