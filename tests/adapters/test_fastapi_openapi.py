"""FastAPI: the MutualTLS dependency and the OpenAPI 3.1 mutualTLS security scheme."""

from __future__ import annotations

from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI

from mtlsauth import ClientIdentity, Policy, Verifier
from mtlsauth.adapters.asgi import MTLSMiddleware
from mtlsauth.adapters.fastapi import MutualTLS, document_mutual_tls
from mtlsauth.testing import with_client_cert

# Module level: FastAPI resolves the (string) annotations in the module's namespace.
required = MutualTLS()
optional = MutualTLS(required=False)
ops_only = MutualTLS(policy=Policy(organizational_units={"ops"}))
ads_only = MutualTLS(policy=Policy(organizations={"ads"}))


@pytest.fixture(scope="module")
def app(pki) -> FastAPI:
    app = FastAPI()
    app.add_middleware(
        MTLSMiddleware, verifier=Verifier(trust_store=pki.root.trust_store()), mode="optional"
    )

    @app.get("/required")
    def req(who: Annotated[ClientIdentity, Depends(required)]) -> dict[str, str | None]:
        return {"cn": who.common_name}

    @app.get("/optional")
    def opt(who: Annotated[ClientIdentity | None, Depends(optional)]) -> dict[str, str | None]:
        return {"cn": who.common_name if who else None}

    @app.get("/ops")
    def ops(who: Annotated[ClientIdentity, Depends(ops_only)]) -> dict[str, str | None]:
        return {"cn": who.common_name}

    @app.get("/ads")
    def ads(who: Annotated[ClientIdentity, Depends(ads_only)]) -> dict[str, str | None]:
        return {"cn": who.common_name}

    @app.get("/public")
    def public() -> dict[str, bool]:
        return {"ok": True}

    @app.post("/mixed", dependencies=[Depends(optional), Depends(required)])
    def mixed() -> dict[str, bool]:
        return {"ok": True}

    document_mutual_tls(app)
    return app


def test_openapi_declares_the_scheme_and_each_routes_requirement(app) -> None:
    doc = app.openapi()
    assert doc["openapi"].startswith("3.1")
    scheme = doc["components"]["securitySchemes"]["mutualTLS"]
    assert scheme["type"] == "mutualTLS"
    assert set(scheme) == {"type", "description"}
    paths = doc["paths"]
    assert paths["/required"]["get"]["security"] == [{"mutualTLS": []}]
    assert paths["/ops"]["get"]["security"] == [{"mutualTLS": []}]
    assert paths["/optional"]["get"]["security"] == [{"mutualTLS": []}, {}]
    assert "security" not in paths["/public"]["get"]
    # one required dependency makes the route required, whatever else it depends on
    assert paths["/mixed"]["post"]["security"] == [{"mutualTLS": []}]
    assert app.openapi() is doc  # built once, cached


async def _get(app, path, cert=None):
    transport = httpx.ASGITransport(app=with_client_cert(app, cert) if cert else app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        r = await c.get(path)
    return r.status_code, r.json()


async def test_dependency_outcomes(app, pki) -> None:
    assert await _get(app, "/required", pki.good) == (200, {"cn": "ledger"})
    status, body = await _get(app, "/required")
    assert (status, body["code"]) == (401, "certificate_missing")
    assert await _get(app, "/optional") == (200, {"cn": None})
    assert await _get(app, "/optional", pki.good) == (200, {"cn": "ledger"})
    assert await _get(app, "/ops", pki.good) == (200, {"cn": "ledger"})
    status, body = await _get(app, "/ads", pki.good)
    assert (status, body["code"]) == (403, "organization_not_allowed")
    status, body = await _get(app, "/required", pki.other_root.issue_client_cert(common_name="x"))
    assert (status, body["code"]) == (401, "untrusted_issuer")


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match="policy"):
        MutualTLS(policy={"organizations": ["x"]})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="required"):
        MutualTLS(required="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="scheme_name"):
        MutualTLS(scheme_name="")


def test_other_schemes_are_combined_not_offered_as_alternatives() -> None:
    # OpenAPI: the objects of "security" are alternatives, the schemes inside one object
    # are all required. A route that needs a bearer token *and* a certificate must not read
    # as "a bearer token or a certificate", nor a route with an optional certificate as
    # open to anonymous callers.
    from fastapi.security import HTTPBearer

    bearer = HTTPBearer()
    app = FastAPI()

    @app.get("/both", dependencies=[Depends(bearer), Depends(required)])
    def both() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/maybe", dependencies=[Depends(bearer), Depends(optional)])
    def maybe() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/two", dependencies=[Depends(required), Depends(MutualTLS(scheme_name="other"))])
    def two() -> dict[str, bool]:
        return {"ok": True}

    document_mutual_tls(app)
    document_mutual_tls(app)  # a second call changes nothing
    paths = app.openapi()["paths"]
    assert paths["/both"]["get"]["security"] == [{"HTTPBearer": [], "mutualTLS": []}]
    assert paths["/maybe"]["get"]["security"] == [
        {"HTTPBearer": [], "mutualTLS": []},
        {"HTTPBearer": []},
    ]
    assert paths["/two"]["get"]["security"] == [{"mutualTLS": [], "other": []}]


def test_require_token_is_documented_as_a_bearer_requirement() -> None:
    # A route behind Depends(require_token(check)) needs a bearer token: a document that
    # shows it without any security requirement tells clients it is public.
    from mtlsauth import TokenCheck
    from mtlsauth.adapters.asgi_oauth import require_token

    needed = require_token(TokenCheck(lambda t: {}))
    maybe = require_token(TokenCheck(lambda t: {}, required=False))
    app = FastAPI()

    @app.get("/token", dependencies=[Depends(needed)])
    def token() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/token-and-cert", dependencies=[Depends(required), Depends(needed)])
    def both() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/cert-maybe-token", dependencies=[Depends(required), Depends(maybe)])
    def cert() -> dict[str, bool]:
        return {"ok": True}

    document_mutual_tls(app)
    doc = app.openapi()
    scheme = doc["components"]["securitySchemes"]["bearerToken"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    paths = doc["paths"]
    assert paths["/token"]["get"]["security"] == [{"bearerToken": []}]
    assert paths["/token-and-cert"]["get"]["security"] == [{"bearerToken": [], "mutualTLS": []}]
    assert paths["/cert-maybe-token"]["get"]["security"] == [
        {"bearerToken": [], "mutualTLS": []},
        {"mutualTLS": []},
    ]
