"""Certificate-bound access tokens end to end (RFC 8705), with real servers on 127.0.0.1.

examples/oauth_mtls.py runs as three processes: the authorization server (uvicorn with
direct mutual TLS through MTLSH11Protocol), the resource server with direct mutual TLS,
and the resource server on plain HTTP behind a real nginx that forwards the client
certificate. A client with a certificate gets a token, calls the API and succeeds; the
same token from another certificate with the same subject DN, replayed without a
certificate, or with its ``cnf`` altered is refused with the code that says why.
"""

from __future__ import annotations

import base64
import contextlib
import json
import ssl
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from mtlsauth.testing import self_signed_client_cert

pytestmark = pytest.mark.e2e

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "oauth_mtls.py"
AUDIENCE = "https://api.example"


@dataclass
class World:
    root: str
    as_url: str
    rs_urls: dict[str, str]  # "direct" and "nginx"
    certs: dict[str, tuple[str, str] | None]
    pem: dict[str, str]  # leaf PEM of each certificate, for forging headers

    def call(
        self,
        url: str,
        cert: str,
        *,
        token: str | None = None,
        data: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict, str | None]:
        ctx = ssl.create_default_context(cafile=self.root)
        pair = self.certs[cert]
        if pair is not None:
            ctx.load_cert_chain(*pair)
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["authorization"] = f"Bearer {token}"
        with httpx.Client(verify=ctx, timeout=15) as c:
            if data is not None:
                r = c.post(url, data=data, headers=hdrs)
            else:
                r = c.get(url, headers=hdrs)
        return r.status_code, r.json(), r.headers.get("www-authenticate")

    def token(self, cert: str, client_id: str) -> str:
        status, body, _ = self.call(
            f"{self.as_url}/token",
            cert,
            data={"grant_type": "client_credentials", "client_id": client_id},
        )
        assert status == 200, body
        assert body["token_type"] == "Bearer"
        return str(body["access_token"])


@pytest.fixture(scope="module")
def world(pki, tmp_path_factory, proxy_tools) -> Iterator[World]:
    d = tmp_path_factory.mktemp("oauth-e2e")
    d.chmod(0o755)
    # Another certificate with exactly the subject DN of pki.client, from the same CA.
    twin = pki.intermediate.issue_client_cert(
        common_name="alice",
        organization="mtlsauth e2e",
        uris=["spiffe://example.org/ns/e2e/sa/alice"],
        dns_names=["alice.example"],
    )
    assert twin.certificate.subject == pki.client.certificate.subject
    selfie = self_signed_client_cert(common_name="selfie", extensions=True)
    files = {}
    for name, blob in {
        "twin_chain": twin.chain_pem,
        "twin_key": twin.key_pem,
        "selfie_cert": selfie.cert_pem,
        "selfie_key": selfie.key_pem,
    }.items():
        files[name] = str(blob.write_to_path(d / f"{name}.pem"))
    clients = {
        "alice-app": {
            "token_endpoint_auth_method": "tls_client_auth",
            "tls_client_auth_subject_dn": pki.client.certificate.subject.rfc4514_string(),
        },
        "selfie-app": {
            "token_endpoint_auth_method": "self_signed_tls_client_auth",
            "jwks": {"keys": [{"kty": "EC", "x5c": [base64.b64encode(selfie.der).decode()]}]},
        },
    }
    (d / "clients.json").write_text(json.dumps(clients))
    ports = {n: proxy_tools.free_port() for n in ("as", "rs", "rs_plain", "nginx")}
    issuer = f"https://127.0.0.1:{ports['as']}"
    common = {
        "MTLS_CLIENT_CA": pki["root"],
        "MTLS_INTERMEDIATES": pki["intermediate"],  # Python < 3.13 and nginx: leaf only
        "OAUTH_ISSUER": issuer,
        "OAUTH_AUDIENCE": AUDIENCE,
        "HOST": "127.0.0.1",
        "PYTHONUNBUFFERED": "1",
    }
    tls = {"MTLS_SERVER_CERT": pki["server_cert"], "MTLS_SERVER_KEY": pki["server_key"]}
    rs = {
        "OAUTH_ROLE": "rs",
        "OAUTH_JWKS_URL": f"{issuer}/jwks",
        "OAUTH_JWKS_CA": pki["root"],
    }
    py = [sys.executable, str(EXAMPLE)]
    with contextlib.ExitStack() as stack:

        def start(name: str, argv: list[str], env: dict[str, str]) -> None:
            workdir = d / name
            workdir.mkdir()
            workdir.chmod(0o755)
            stack.enter_context(proxy_tools.run_proxy(argv, ports[name], workdir, env=env))

        start(
            "as",
            py,
            common
            | tls
            | {
                "OAUTH_ROLE": "as",
                "OAUTH_CLIENTS": str(d / "clients.json"),
                "MTLS_TLS_EXTRA_CA": files["selfie_cert"],
                "PORT": str(ports["as"]),
            },
        )
        start("rs", py, common | tls | rs | {"PORT": str(ports["rs"])})
        start(
            "rs_plain",
            py,
            common | rs | {"PORT": str(ports["rs_plain"]), "MTLS_TRUSTED_PROXIES": "127.0.0.1"},
        )
        proxy_tools.require_binary("/usr/sbin/nginx")
        nginx_dir = d / "nginx"
        nginx_dir.mkdir()
        nginx_dir.chmod(0o755)
        argv = proxy_tools.nginx_to(
            nginx_dir, ports["nginx"], f"http://127.0.0.1:{ports['rs_plain']}", pki
        )
        stack.enter_context(proxy_tools.run_proxy(argv, ports["nginx"], nginx_dir))
        yield World(
            root=pki["root"],
            as_url=issuer,
            rs_urls={
                "direct": f"https://127.0.0.1:{ports['rs']}",
                "nginx": f"https://localhost:{ports['nginx']}",
            },
            certs={
                "alice": (pki["client_chain"], pki["client_key"]),
                "twin": (files["twin_chain"], files["twin_key"]),
                "selfie": (files["selfie_cert"], files["selfie_key"]),
                "none": None,
            },
            pem={"alice": pki.client.cert_pem.text()},
        )


# -- the token endpoint -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cert", "client_id", "status", "error"),
    [
        pytest.param("alice", "alice-app", 200, None, id="tls_client_auth"),
        pytest.param("twin", "alice-app", 200, None, id="same DN from the same CA"),
        pytest.param("selfie", "selfie-app", 200, None, id="self_signed_tls_client_auth"),
        pytest.param("none", "alice-app", 401, "invalid_client", id="no certificate"),
        pytest.param("selfie", "alice-app", 401, "invalid_client", id="pinned as PKI client"),
        pytest.param("alice", "selfie-app", 401, "invalid_client", id="PKI as self-signed"),
        pytest.param("alice", "nobody", 401, "invalid_client", id="unknown client"),
    ],
)
def test_token_endpoint(world, cert, client_id, status, error) -> None:
    got, body, _ = world.call(
        f"{world.as_url}/token",
        cert,
        data={"grant_type": "client_credentials", "client_id": client_id},
    )
    assert got == status, body
    if error is not None:
        assert body == {"error": error}
        return
    claims = _payload(body["access_token"])
    assert claims["client_id"] == client_id
    assert set(claims["cnf"]) == {"x5t#S256"}


def test_tokens_of_two_certificates_with_one_subject_are_bound_apart(world) -> None:
    a = _payload(world.token("alice", "alice-app"))
    t = _payload(world.token("twin", "alice-app"))
    assert a["sub"] == t["sub"]
    assert a["cnf"] != t["cnf"]


# -- the resource server, direct TLS and behind nginx ------------------------------------------
def _payload(token: str) -> dict:
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def _altered(token: str, cnf: dict) -> str:
    header, _, signature = token.split(".")
    claims = _payload(token) | {"cnf": cnf}
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{body}.{signature}"


CASES = [
    # path, certificate presented, token, status, code
    ("/accounts", "alice", "alice", 200, None),
    ("/accounts", "twin", "alice", 401, "token_binding_mismatch"),
    ("/accounts", "none", "alice", 401, "certificate_missing"),
    ("/partner", "none", "alice", 401, "token_binding_mismatch"),
    ("/accounts", "alice", "altered", 401, "token_invalid"),
    ("/accounts", "twin", "altered", 401, "token_invalid"),
    ("/accounts", "alice", None, 401, "token_missing"),
    ("/statements", "alice", None, 200, None),
    ("/statements", "twin", "alice", 401, "token_binding_mismatch"),
    ("/status", "alice", "garbage", 200, None),
    ("/status", "none", "alice", 401, "certificate_missing"),
]


@pytest.fixture(scope="module")
def tokens(world) -> dict[str, str]:
    alice = world.token("alice", "alice-app")
    twin_cnf = _payload(world.token("twin", "alice-app"))["cnf"]
    return {"alice": alice, "altered": _altered(alice, twin_cnf), "garbage": "garbage"}


@pytest.mark.parametrize("where", ["direct", "nginx"])
@pytest.mark.parametrize(
    ("path", "cert", "token", "status", "code"),
    [pytest.param(*c, id=f"{c[0]} {c[1]} token={c[2]}") for c in CASES],
)
def test_resource_server(world, tokens, where, path, cert, token, status, code) -> None:
    got, body, challenge = world.call(
        world.rs_urls[where] + path, cert, token=tokens[token] if token else None
    )
    assert got == status, body
    if code is None:
        assert body["cn"] == "alice"
        assert body["client_id"] == ("alice-app" if token and path != "/status" else None)
        return
    assert body["code"] == code
    if code.startswith("token_") and code != "token_missing":
        assert challenge is not None
        assert challenge.startswith('Bearer error="invalid_token"')


def test_a_forged_certificate_header_through_nginx_binds_nothing(world, tokens) -> None:
    """The client sends alice's (public) certificate as the header nginx would set."""
    forged = {"X-SSL-Client-Cert": quote(world.pem["alice"], safe="")}
    url = world.rs_urls["nginx"]
    got, body, _ = world.call(url + "/partner", "none", token=tokens["alice"], headers=forged)
    assert (got, body["code"]) == (401, "token_binding_mismatch")
    got, body, _ = world.call(url + "/accounts", "none", token=tokens["alice"], headers=forged)
    assert (got, body["code"]) == (401, "certificate_missing")
