"""FastAPI behind mtlsauth: direct mutual TLS under uvicorn, or behind a TLS proxy.

Run it directly with TLS (uvicorn terminates TLS, mtlsauth reads the peer certificate)::

    MTLS_CLIENT_CA=clients-ca.pem MTLS_SERVER_CERT=server.pem MTLS_SERVER_KEY=server.key \\
        python examples/fastapi_app.py

or behind nginx (plain HTTP on 127.0.0.1, the certificate arrives in X-SSL-Client-Cert)::

    MTLS_CLIENT_CA=clients-ca.pem MTLS_TRUSTED_PROXIES=127.0.0.1 python examples/fastapi_app.py

Settings (environment): MTLS_CLIENT_CA (PEM of the client CAs, default clients-ca.pem),
MTLS_INTERMEDIATES (PEM of intermediates, for leaf-only sources), MTLS_MODE
(mandatory|optional|off), MTLS_TRUSTED_PROXIES (comma-separated), MTLS_CERT_HEADER
(default X-SSL-Client-Cert, nginx's URL-escaped PEM), HOST (127.0.0.1), PORT (8443).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI

from mtlsauth import ClientIdentity, ForwardedCert, TrustStore, Verifier
from mtlsauth.adapters.asgi import MTLSMiddleware, client_identity, optional_client_identity


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


def create_app() -> FastAPI:
    app = FastAPI()
    app.add_middleware(
        MTLSMiddleware,
        verifier=make_verifier(),
        mode=os.environ.get("MTLS_MODE", "mandatory"),  # type: ignore[arg-type]
        exempt_paths={"/healthz"},
    )

    @app.get("/whoami")
    def whoami(who: Annotated[ClientIdentity, Depends(client_identity)]) -> dict[str, str | None]:
        return {"cn": who.common_name, "source": who.source}

    @app.get("/maybe")
    def maybe(
        who: Annotated[ClientIdentity | None, Depends(optional_client_identity)],
    ) -> dict[str, str | None]:
        return {"cn": who.common_name if who else None}

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "up"}

    return app


def main() -> None:
    # proxy_headers=False: mtlsauth must see the socket peer. uvicorn otherwise replaces it
    # with the X-Forwarded-For address for peers in FORWARDED_ALLOW_IPS (often "*" in
    # containers), and any client could name the proxy and forward a certificate itself.
    import uvicorn

    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8443"))
    app = create_app()
    if os.environ.get("MTLS_SERVER_CERT"):
        from mtlsauth.adapters import uvicorn as mtls_uvicorn
        from mtlsauth.adapters.uvicorn import server_ssl_context

        # MTLS_UVICORN_HTTP=httptools picks uvicorn's httptools parser (uvicorn[standard]).
        protocol = (
            mtls_uvicorn.MTLSHttpToolsProtocol
            if os.environ.get("MTLS_UVICORN_HTTP") == "httptools"
            else mtls_uvicorn.MTLSH11Protocol
        )

        ctx = server_ssl_context(
            certfile=os.environ["MTLS_SERVER_CERT"],
            keyfile=os.environ.get("MTLS_SERVER_KEY"),
            trust_store=TrustStore.from_pem_file(
                os.environ.get("MTLS_CLIENT_CA", "clients-ca.pem")
            ),
            mode=os.environ.get("MTLS_TLS_MODE", "optional"),  # type: ignore[arg-type]
        )
        uvicorn.run(
            app,
            host=host,
            port=port,
            http=protocol,
            ssl_context_factory=lambda config, default: ctx,
            proxy_headers=False,
            log_level="warning",
        )
    else:
        uvicorn.run(app, host=host, port=port, proxy_headers=False, log_level="warning")


if __name__ == "__main__":
    main()
