"""Token-endpoint side: authenticating an OAuth client by its certificate (RFC 8705 section 2)."""

from __future__ import annotations

import base64
from collections.abc import Mapping

import pytest

from mtlsauth import (
    InvalidClient,
    Policy,
    TokenCheck,
    Verifier,
    authenticate_client,
    certificate_cnf,
)
from mtlsauth.testing import CA, self_signed_client_cert


@pytest.fixture(scope="module")
def world(ca: CA):
    alice = ca.issue_client_cert(
        common_name="alice",
        organization="bank",
        dns_names=["alice.example"],
        uris=["https://alice.example/client"],
        emails=["alice@example.org"],
        ip_addresses=["10.0.0.7"],
    )
    twin = ca.issue_client_cert(common_name="alice", organization="bank")  # same DN, other key
    # alice's IPv4 address written as an IPv4-mapped IPv6 address: 16 octets, not 4
    mapped = ca.issue_client_cert(
        common_name="mapped", organization="bank", ip_addresses=["::ffff:10.0.0.7"]
    )
    selfie = self_signed_client_cert(common_name="alice", organization="bank", extensions=True)
    other_selfie = self_signed_client_cert(
        common_name="alice", organization="bank", extensions=True
    )
    verifier = Verifier(
        trust_store=ca.trust_store(), pinned=[selfie.certificate, other_selfie.certificate]
    )

    def ident(cert):
        return verifier.verify_pem(cert.chain_pem.text())

    return {
        "alice": ident(alice),
        "twin": ident(twin),
        "mapped": ident(mapped),
        "selfie": ident(selfie),
        "other_selfie": ident(other_selfie),
        "selfie_cert": selfie,
    }


def _x5c(cert) -> dict:
    return {"kty": "EC", "x5c": [base64.b64encode(cert.der).decode()]}


PKI_CASES = [
    ("tls_client_auth_subject_dn", "O=bank,CN=alice", "alice", True),
    ("tls_client_auth_subject_dn", "CN=alice,O=bank", "alice", True),
    ("tls_client_auth_subject_dn", "O=bank,CN=alice", "twin", True),  # same DN: the PKI decides
    ("tls_client_auth_subject_dn", "O=bank,CN=bob", "alice", False),
    ("tls_client_auth_subject_dn", "O=bank,CN=alice", "selfie", False),  # pinned: not PKI
    ("tls_client_auth_san_dns", "alice.example", "alice", True),
    ("tls_client_auth_san_dns", "bob.example", "alice", False),
    ("tls_client_auth_san_uri", "https://alice.example/client", "alice", True),
    ("tls_client_auth_san_ip", "10.0.0.7", "alice", True),
    ("tls_client_auth_san_ip", "10.0.0.8", "alice", False),
    # RFC 8705 2.1.2: compared in binary form, so a 4-octet and a 16-octet address differ
    ("tls_client_auth_san_ip", "10.0.0.7", "mapped", False),
    ("tls_client_auth_san_ip", "::ffff:10.0.0.7", "alice", False),
    ("tls_client_auth_san_ip", "::ffff:10.0.0.7", "mapped", True),
    ("tls_client_auth_san_ip", "::ffff:a00:7", "mapped", True),
    ("tls_client_auth_san_email", "alice@example.org", "alice", True),
    ("tls_client_auth_san_email", "alice@example.org", "twin", False),
]


@pytest.mark.parametrize(
    ("key", "value", "who", "ok"),
    [pytest.param(*c, id=f"{c[0][16:]}={c[1]} as {c[2]}") for c in PKI_CASES],
)
def test_tls_client_auth(world, key, value, who, ok) -> None:
    metadata = {"client_id": "c1", "token_endpoint_auth_method": "tls_client_auth", key: value}
    if ok:
        assert authenticate_client(metadata, world[who]) is world[who]
    else:
        with pytest.raises(InvalidClient) as info:
            authenticate_client(metadata, world[who])
        assert (info.value.code, info.value.status) == ("invalid_client", 401)


@pytest.mark.parametrize(
    ("registered", "who", "via", "ok"),
    [
        pytest.param("selfie", "selfie", "jwks", True, id="registered certificate"),
        pytest.param("selfie", "selfie", "jwks_uri", True, id="registered via jwks_uri"),
        pytest.param("selfie", "other_selfie", "jwks", False, id="same subject, other key"),
        pytest.param("selfie", "alice", "jwks", False, id="a CA-issued certificate"),
    ],
)
def test_self_signed_tls_client_auth(world, registered, who, via, ok) -> None:
    jwks = {"keys": [{"kty": "EC", "kid": "no-x5c"}, _x5c(world[f"{registered}_cert"])]}
    metadata = {"client_id": "c2", "token_endpoint_auth_method": "self_signed_tls_client_auth"}
    kwargs = {}
    if via == "jwks":
        metadata["jwks"] = jwks
    else:
        metadata["jwks_uri"] = "https://client.example/jwks"
        kwargs["jwks"] = jwks
    if ok:
        assert authenticate_client(metadata, world[who], **kwargs) is world[who]
    else:
        with pytest.raises(InvalidClient):
            authenticate_client(metadata, world[who], **kwargs)


@pytest.mark.parametrize(
    "metadata",
    [
        pytest.param({"tls_client_auth_subject_dn": "CN=alice"}, id="no auth method"),
        pytest.param(
            {"token_endpoint_auth_method": "client_secret_basic"}, id="another auth method"
        ),
        pytest.param({"token_endpoint_auth_method": "tls_client_auth"}, id="no subject or SAN"),
        pytest.param(
            {
                "token_endpoint_auth_method": "tls_client_auth",
                "tls_client_auth_subject_dn": "CN=alice",
                "tls_client_auth_san_dns": "alice.example",
            },
            id="two names",
        ),
        pytest.param(
            {"token_endpoint_auth_method": "tls_client_auth", "tls_client_auth_san_dns": 5},
            id="a number",
        ),
        pytest.param({"token_endpoint_auth_method": "self_signed_tls_client_auth"}, id="no jwks"),
        pytest.param(
            {"token_endpoint_auth_method": "self_signed_tls_client_auth", "jwks": {"keys": 1}},
            id="malformed jwks",
        ),
        pytest.param(
            {
                "token_endpoint_auth_method": "self_signed_tls_client_auth",
                "jwks": {"keys": [{"x5c": ["not base64!"]}]},
            },
            id="x5c not a certificate",
        ),
        pytest.param("tls_client_auth", id="not a mapping"),
    ],
)
def test_unusable_registration_refuses_never_raises_otherwise(world, metadata) -> None:
    with pytest.raises(InvalidClient):
        authenticate_client(metadata, world["alice"])


def test_no_identity_refuses(world) -> None:
    meta = {"token_endpoint_auth_method": "tls_client_auth", "tls_client_auth_subject_dn": "CN=a"}
    with pytest.raises(InvalidClient):
        authenticate_client(meta, None)


def test_cnf_binds_the_token_to_exactly_that_certificate(world) -> None:
    cnf = certificate_cnf(world["alice"])
    assert cnf == {"x5t#S256": world["alice"].x5t_s256()}
    assert world["alice"].matches_token_binding(cnf)
    assert not world["twin"].matches_token_binding(cnf)
    check = TokenCheck(lambda t: {"cnf": cnf})
    assert check.check(world["alice"], ["Bearer t"]) == {"cnf": cnf}


def test_policy_from_rfc8705_is_the_same_rule(world) -> None:
    meta = {
        "token_endpoint_auth_method": "tls_client_auth",
        "tls_client_auth_san_dns": "alice.example",
    }
    Policy.from_rfc8705(meta).check(world["alice"])
    assert authenticate_client(meta, world["alice"]) is world["alice"]


class _Hostile(Mapping):
    def __getitem__(self, key):
        raise RuntimeError("boom")

    def __iter__(self):
        raise RuntimeError("boom")

    def __len__(self) -> int:
        return 1


@pytest.mark.parametrize(
    ("metadata", "jwks"),
    [
        pytest.param(_Hostile(), None, id="metadata fails when read"),
        pytest.param(
            {"token_endpoint_auth_method": "self_signed_tls_client_auth"},
            _Hostile(),
            id="jwks fails when read",
        ),
        pytest.param(
            {
                "token_endpoint_auth_method": "self_signed_tls_client_auth",
                "jwks": {"keys": [_Hostile()]},
            },
            None,
            id="a key fails when read",
        ),
    ],
)
def test_registrations_that_fail_when_read_refuse(world, metadata, jwks) -> None:
    with pytest.raises(InvalidClient):
        authenticate_client(metadata, world["alice"], jwks=jwks)
