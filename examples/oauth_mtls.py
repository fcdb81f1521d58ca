"""OAuth 2.0 with certificate-bound access tokens (RFC 8705): a token endpoint and an API.

Two FastAPI apps in one file, each behind mtlsauth:

* the authorization server (``OAUTH_ROLE=as``) authenticates OAuth clients by their TLS
  certificate (``tls_client_auth`` or ``self_signed_tls_client_auth``, from a JSON file of
  registered client metadata) and issues JWT access tokens bound to that certificate
  (``cnf.x5t#S256``) for the ``client_credentials`` grant; it publishes its keys at /jwks;
* the resource server (``OAUTH_ROLE=rs``) requires, per route, mutual TLS and a bound
  token ("/accounts"), mutual TLS with an optional token ("/statements"), mutual TLS only
  ("/status"), or a token with mutual TLS optional ("/partner").

Run the authorization server with direct TLS::

    OAUTH_ROLE=as OAUTH_ISSUER=https://127.0.0.1:8443 OAUTH_CLIENTS=clients.json \\
        MTLS_CLIENT_CA=clients-ca.pem MTLS_SERVER_CERT=server.pem MTLS_SERVER_KEY=server.key \\
        PORT=8443 python examples/oauth_mtls.py

and the resource server, directly or behind nginx (``MTLS_TRUSTED_PROXIES=127.0.0.1``)::

    OAUTH_ROLE=rs OAUTH_ISSUER=https://127.0.0.1:8443 OAUTH_AUDIENCE=https://api.example \\
        OAUTH_JWKS_URL=https://127.0.0.1:8443/jwks OAUTH_JWKS_CA=server-ca.pem \\
        MTLS_CLIENT_CA=clients-ca.pem MTLS_TRUSTED_PROXIES=127.0.0.1 PORT=8000 \\
        python examples/oauth_mtls.py

The other settings are those of examples/fastapi_app.py. Needs ``mtlsauth[oauth,fastapi,uvicorn]``.
"""

from __future__ import annotations

import json
import os
import secrets
import ssl
import time
import urllib.parse
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from jwt.algorithms import ECAlgorithm

from mtlsauth import (
    ForwardedCert,
    InvalidClient,
    Route,
    TokenCheck,
    TrustStore,
    Verifier,
    authenticate_client,
    certificate_cnf,
    pinned_from_rfc8705,
)
from mtlsauth.adapters.asgi import MTLSMiddleware, identity_from_scope
from mtlsauth.adapters.asgi_oauth import token_claims_from_scope
from mtlsauth.oauth_jwt import JWKS, JWTValidator

TOKEN_LIFETIME = 300


def make_verifier(pinned: tuple[Any, ...] = ()) -> Verifier:
    proxies = [
        p.strip() for p in os.environ.get("MTLS_TRUSTED_PROXIES", "").split(",") if p.strip()
    ]
    intermediates = os.environ.get("MTLS_INTERMEDIATES")
    return Verifier(
        trust_store=TrustStore.from_pem_file(os.environ.get("MTLS_CLIENT_CA", "clients-ca.pem")),
        intermediates=[Path(intermediates).read_bytes()] if intermediates else (),
        pinned=pinned,
        forwarded=ForwardedCert.preset(
            "nginx",
            header=os.environ.get("MTLS_CERT_HEADER", "X-SSL-Client-Cert"),
            trusted_proxies=proxies,
        )
        if proxies
        else None,
    )


# -- the authorization server -----------------------------------------------------------------
def create_authorization_server(
    *, issuer: str, audience: str, clients: dict[str, dict[str, Any]]
) -> FastAPI:
    """A token endpoint for the client_credentials grant, clients authenticated by mTLS."""
    key = ec.generate_private_key(ec.SECP256R1())
    kid = secrets.token_urlsafe(8)
    public_jwk = {**ECAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid}
    public_jwk |= {"use": "sig", "alg": "ES256"}
    # Self-signed clients' certificates are accepted as pins (RFC 8705 section 2.2).
    pinned = tuple(
        cert
        for meta in clients.values()
        if meta.get("token_endpoint_auth_method") == "self_signed_tls_client_auth"
        for cert in pinned_from_rfc8705(meta)
    )
    app = FastAPI()
    # Optional: a request without a certificate reaches the endpoint, which answers
    # invalid_client as RFC 6749 section 5.2 says.
    app.add_middleware(
        MTLSMiddleware, verifier=make_verifier(pinned), mode="optional", exempt_paths={"/jwks"}
    )

    @app.get("/jwks")
    def jwks() -> dict[str, Any]:
        return {"keys": [public_jwk]}

    @app.post("/token")
    async def token(request: Request) -> JSONResponse:
        form = urllib.parse.parse_qs((await request.body()).decode("ascii", "replace"))
        grant = form.get("grant_type", [""])
        client_id = form.get("client_id", [""])
        if grant != ["client_credentials"] or len(client_id) != 1:
            return _oauth_error("invalid_request", 400)
        try:
            identity = authenticate_client(
                clients.get(client_id[0], {}), identity_from_scope(request.scope)
            )
        except InvalidClient:
            return _oauth_error("invalid_client", 401)
        now = int(time.time())
        claims = {
            "iss": issuer,
            "aud": audience,
            "sub": client_id[0],
            "client_id": client_id[0],
            "iat": now,
            "exp": now + TOKEN_LIFETIME,
            "jti": secrets.token_urlsafe(16),
            "scope": "accounts",
            "cnf": certificate_cnf(identity),
        }
        access_token = jwt.encode(
            claims, key, algorithm="ES256", headers={"kid": kid, "typ": "at+jwt"}
        )
        return JSONResponse(
            {"access_token": access_token, "token_type": "Bearer", "expires_in": TOKEN_LIFETIME},
            headers={"cache-control": "no-store"},
        )

    return app


def _oauth_error(error: str, status: int) -> JSONResponse:
    return JSONResponse({"error": error}, status_code=status, headers={"cache-control": "no-store"})


# -- the resource server ----------------------------------------------------------------------
def create_resource_server(*, issuer: str, audience: str, jwks: JWKS) -> FastAPI:
    """An API whose routes combine mutual TLS and OAuth 2.0 in the four usual ways."""
    validate = JWTValidator(
        jwks=jwks, issuer=issuer, audience=audience, algorithms=["ES256"], typ="at+jwt"
    )
    routes = [
        # both mandatory: mTLS, and a token bound to that certificate with scope "accounts"
        Route("/accounts", mode="mandatory", token=TokenCheck(validate, scopes={"accounts"})),
        # mTLS mandatory, OAuth optional: a token that is sent must be valid and bound
        Route("/statements", mode="mandatory", token=TokenCheck(validate, required=False)),
        # mTLS only: the Authorization header is not looked at
        Route("/status", mode="mandatory"),
        # OAuth mandatory, mTLS optional: a bound token still needs its certificate
        Route("/partner", mode="optional", token=TokenCheck(validate, binding="if_present")),
    ]
    app = FastAPI()
    app.add_middleware(MTLSMiddleware, verifier=make_verifier(), routes=routes)

    def answer(request: Request, *, token: bool = True) -> dict[str, Any]:
        who = identity_from_scope(request.scope)
        claims = token_claims_from_scope(request.scope) if token else None
        return {
            "cn": who.common_name if who else None,
            "client_id": claims.get("client_id") if claims else None,
        }

    @app.get("/accounts")
    @app.get("/statements")
    @app.get("/partner")
    def with_token(request: Request) -> dict[str, Any]:
        return answer(request)

    @app.get("/status")
    def status(request: Request) -> dict[str, Any]:
        return answer(request, token=False)

    return app


# -- running either -----------------------------------------------------------------------------
def main() -> None:
    # proxy_headers=False: mtlsauth must see the socket peer. uvicorn otherwise replaces it
    # with the X-Forwarded-For address for peers in FORWARDED_ALLOW_IPS (often "*" in
    # containers), and any client could name the proxy and forward a certificate itself.
    import uvicorn

    role = os.environ.get("OAUTH_ROLE", "rs")
    issuer = os.environ["OAUTH_ISSUER"]
    audience = os.environ.get("OAUTH_AUDIENCE", "https://api.example")
    if role == "as":
        clients = json.loads(Path(os.environ.get("OAUTH_CLIENTS", "clients.json")).read_text())
        app = create_authorization_server(issuer=issuer, audience=audience, clients=clients)
    else:
        ca = os.environ.get("OAUTH_JWKS_CA")
        context = ssl.create_default_context(cafile=ca) if ca else None
        jwks = JWKS.from_url(os.environ["OAUTH_JWKS_URL"], ssl_context=context)
        app = create_resource_server(issuer=issuer, audience=audience, jwks=jwks)
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8443"))
    if os.environ.get("MTLS_SERVER_CERT"):
        from mtlsauth.adapters.uvicorn import MTLSH11Protocol, server_ssl_context

        trust = TrustStore.from_pem_file(os.environ.get("MTLS_CLIENT_CA", "clients-ca.pem"))
        extra = os.environ.get("MTLS_TLS_EXTRA_CA")  # self-signed clients' certificates
        ctx = server_ssl_context(
            certfile=os.environ["MTLS_SERVER_CERT"],
            keyfile=os.environ.get("MTLS_SERVER_KEY"),
            trust_store=trust,
            mode="optional",
            pinned=[Path(extra)] if extra else (),
        )
        uvicorn.run(
            app,
            host=host,
            port=port,
            http=MTLSH11Protocol,
            ssl_context_factory=lambda config, default: ctx,
            proxy_headers=False,
            log_level="warning",
        )
    else:
        uvicorn.run(app, host=host, port=port, proxy_headers=False, log_level="warning")


if __name__ == "__main__":
    main()
