"""Normative statements of RFC 6750, 7519, 7800, 8705, 8725 and 9068, one test each.

docs/security.md ("OAuth 2.0 clause by clause") maps every clause to its test here or
elsewhere in tests/oauth.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from jwt.algorithms import ECAlgorithm

from mtlsauth import (
    InvalidClient,
    TokenCheck,
    TokenError,
    Verifier,
    authenticate_client,
    certificate_cnf,
)
from mtlsauth._oauth import bearer_token
from mtlsauth.oauth_jwt import JWKS, JWTValidator
from mtlsauth.testing import CA

ISS = "https://as.example"
AUD = "https://api.example"

_A = x509.NameAttribute
_RDN = x509.RelativeDistinguishedName
SUBJECT = x509.Name(
    [
        _RDN([_A(NameOID.COUNTRY_NAME, "GB")]),
        _RDN([_A(NameOID.ORGANIZATION_NAME, "Bank, Ltd")]),
        _RDN(
            [
                _A(NameOID.ORGANIZATIONAL_UNIT_NAME, "ou1"),
                _A(NameOID.ORGANIZATION_IDENTIFIER, "PSDGB-FCA-123"),
            ]
        ),
        _RDN([_A(NameOID.COMMON_NAME, "Alice")]),
    ]
)


@pytest.fixture(scope="module")
def pki(ca: CA) -> dict:
    verifier = Verifier(trust_store=ca.trust_store())

    def ident(cert):
        return verifier.verify_pem(cert.chain_pem.text())

    alice = ca.issue_client_cert(subject=SUBJECT, dns_names=["alice.example"])
    bob = ca.issue_client_cert(common_name="bob")
    return {"alice": ident(alice), "alice_der": alice.der, "bob": ident(bob)}


def _check(claims: dict, **kwargs) -> TokenCheck:
    return TokenCheck(lambda token: claims, **kwargs)


def _refusal(fn, *args) -> TokenError:
    with pytest.raises(TokenError) as info:
        fn(*args)
    return info.value


# -- RFC 6750 -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status", "error"),
    [
        ("token_missing", 401, None),
        ("token_invalid", 401, "invalid_token"),
        ("token_not_bound", 401, "invalid_token"),
        ("token_binding_mismatch", 401, "invalid_token"),
        ("token_request_invalid", 400, "invalid_request"),
        ("insufficient_scope", 403, "insufficient_scope"),
    ],
)
def test_rfc6750_3_1_error_codes_and_status(code: str, status: int, error: str | None) -> None:
    exc = TokenError("x", code=code, scope="accounts" if code == "insufficient_scope" else "")
    assert (exc.status, exc.bearer_error) == (status, error)
    challenge = exc.challenge
    assert challenge.startswith("Bearer")
    if error is None:
        # 3.1: no error code when the request carried no authentication information.
        assert challenge == "Bearer"
        return
    attrs = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
    assert attrs["error"] == error
    # 3: error, error_description and scope values stay in %x20-21 / %x23-5B / %x5D-7E.
    for value in attrs.values():
        assert re.fullmatch(r"[\x20\x21\x23-\x5b\x5d-\x7e]*", value), value
    if code == "insufficient_scope":
        assert attrs["scope"] == "accounts"


def test_rfc6750_3_scope_attribute_lists_every_required_scope() -> None:
    check = _check({"scope": "a"}, binding="if_present", scopes={"b", "a", "c"})
    exc = _refusal(check.check, None, ["Bearer t"])
    assert exc.code == "insufficient_scope"
    assert 'scope="a b c"' in exc.challenge


def test_rfc6750_3_scope_names_outside_the_charset_are_refused_at_configuration() -> None:
    for bad in ('a"b', "a\\b", "a b", ""):
        with pytest.raises(ValueError, match="scope"):
            _check({}, scopes={bad})


@pytest.mark.parametrize(
    "header", ["Bearer abc", "bearer abc", "BEARER abc", "Bearer   abc", " Bearer abc "]
)
def test_rfc6750_2_1_scheme_case_insensitive_one_or_more_spaces(header: str) -> None:
    assert bearer_token([header]) == "abc"


@pytest.mark.parametrize("token", ["abc-._~+/", "A1==", "x" * 10, "a.b.c", "abc="])
def test_rfc6750_2_1_b64token_accepted(token: str) -> None:
    assert bearer_token([f"Bearer {token}"]) == token


@pytest.mark.parametrize(
    "header",
    [
        "Bearer a=b",
        "Bearer =abc",
        "Bearer a b",
        "Bearer a,b",
        "Bearer a\tb",
        "Bearer",
        "Bearer \u00e9",
    ],
)
def test_rfc6750_2_1_outside_b64token_is_invalid_request(header: str) -> None:
    exc = _refusal(bearer_token, [header])
    assert (exc.code, exc.status, exc.bearer_error) == (
        "token_request_invalid",
        400,
        "invalid_request",
    )


def test_rfc6750_2_a_token_sent_twice_is_invalid_request() -> None:
    for headers in (["Bearer a", "Bearer b"], ["Bearer a", "Bearer a"], ["Basic x, Bearer y"]):
        assert _refusal(bearer_token, headers).code == "token_request_invalid"


def test_rfc6750_3_1_another_scheme_is_no_token() -> None:
    exc = _refusal(_check({}).check, None, ["Basic dXNlcjpwYXNz"])
    assert exc.code == "token_missing"
    assert exc.challenge == "Bearer"


# -- RFC 8705 section 3 / RFC 7800 ----------------------------------------------------------


def test_rfc8705_3_1_x5t_s256_is_unpadded_base64url_sha256_of_der(pki) -> None:
    expected = base64.urlsafe_b64encode(hashlib.sha256(pki["alice_der"]).digest())
    assert certificate_cnf(pki["alice"]) == {"x5t#S256": expected.rstrip(b"=").decode()}


def test_rfc8705_3_matching_certificate_passes(pki) -> None:
    claims = {"sub": "c", "cnf": certificate_cnf(pki["alice"])}
    assert _check(claims).check(pki["alice"], ["Bearer t"])["sub"] == "c"


def test_rfc8705_3_mismatch_is_401_invalid_token(pki) -> None:
    exc = _refusal(_check({"cnf": certificate_cnf(pki["alice"])}).check, pki["bob"], ["Bearer t"])
    assert (exc.code, exc.status, exc.bearer_error) == (
        "token_binding_mismatch",
        401,
        "invalid_token",
    )
    assert 'error="invalid_token"' in exc.challenge


def test_rfc8705_3_bound_token_without_a_certificate_is_refused(pki) -> None:
    exc = _refusal(_check({"cnf": certificate_cnf(pki["alice"])}).check, None, ["Bearer t"])
    assert (exc.status, exc.bearer_error) == (401, "invalid_token")


def test_rfc8705_3_padded_thumbprint_is_refused(pki) -> None:
    padded = certificate_cnf(pki["alice"])["x5t#S256"] + "="
    exc = _refusal(_check({"cnf": {"x5t#S256": padded}}).check, pki["alice"], ["Bearer t"])
    assert exc.bearer_error == "invalid_token"


def test_rfc8705_3_2_introspection_response_cnf_is_checked(pki) -> None:
    response = {"active": True, "client_id": "c", "cnf": certificate_cnf(pki["alice"])}
    assert _check(response).check(pki["alice"], ["Bearer t"])["client_id"] == "c"
    assert _refusal(_check(response).check, pki["bob"], ["Bearer t"]).code == (
        "token_binding_mismatch"
    )
    inactive = {**response, "active": False}
    assert _refusal(_check(inactive).check, pki["alice"], ["Bearer t"]).code == "token_invalid"


@pytest.mark.parametrize(
    "extra", [{"jkt": "A" * 43}, {"jwk": {"kty": "EC"}}, {"x5t": "abc"}, {"future": 1}]
)
def test_rfc7800_3_members_besides_x5t_s256_are_refused(pki, extra) -> None:
    cnf = {**certificate_cnf(pki["alice"]), **extra}
    exc = _refusal(_check({"cnf": cnf}).check, pki["alice"], ["Bearer t"])
    assert (exc.code, exc.bearer_error) == ("token_binding_mismatch", "invalid_token")


@pytest.mark.parametrize("cnf", ["x5t", ["x5t#S256"], None, 7])
def test_rfc7800_3_cnf_not_an_object_is_invalid_token(pki, cnf) -> None:
    exc = _refusal(_check({"cnf": cnf}, binding="if_present").check, pki["alice"], ["Bearer t"])
    assert exc.bearer_error == "invalid_token"


# -- RFC 8705 section 2.1 -------------------------------------------------------------------


def _tls_client_auth(**values: str) -> dict:
    return {"token_endpoint_auth_method": "tls_client_auth", **values}


def test_rfc8705_2_1_2_exactly_one_subject_parameter(pki) -> None:
    both = _tls_client_auth(
        tls_client_auth_subject_dn=SUBJECT.rfc4514_string(),
        tls_client_auth_san_dns="alice.example",
    )
    for metadata in (both, _tls_client_auth()):
        with pytest.raises(InvalidClient):
            authenticate_client(metadata, pki["alice"])
    for one in (
        _tls_client_auth(tls_client_auth_subject_dn=SUBJECT.rfc4514_string()),
        _tls_client_auth(tls_client_auth_san_dns="alice.example"),
    ):
        assert authenticate_client(one, pki["alice"]) is pki["alice"]


@pytest.mark.parametrize(
    "dn",
    [
        pytest.param(r"CN=Alice,OU=ou1+2.5.4.97=PSDGB-FCA-123,O=Bank\, Ltd,C=GB", id="rfc4514"),
        pytest.param(r"cn=alice,ou=OU1+2.5.4.97=psdgb-fca-123,o=bank\, ltd,c=gb", id="case"),
        pytest.param(r"CN=Alice,2.5.4.97=PSDGB-FCA-123+OU=ou1,O=Bank\, Ltd,C=GB", id="mv order"),
        pytest.param(r"CN=Alice,OU=ou1+2.5.4.97=PSDGB-FCA-123,O=Bank\2C Ltd,C=GB", id="hex escape"),
        pytest.param(
            r"CN=#0c05416c696365,OU=ou1+2.5.4.97=PSDGB-FCA-123,O=Bank\, Ltd,C=GB", id="hexstring"
        ),
        pytest.param(
            r"2.5.4.3=Alice,OU=ou1+2.5.4.97=PSDGB-FCA-123,O=Bank\, Ltd,C=GB", id="oid type"
        ),
    ],
)
def test_rfc8705_2_1_2_subject_dn_compares_structurally(pki, dn: str) -> None:
    metadata = _tls_client_auth(tls_client_auth_subject_dn=dn)
    assert authenticate_client(metadata, pki["alice"]) is pki["alice"]


@pytest.mark.parametrize(
    "dn",
    [
        pytest.param(r"CN=Alice,OU=ou1,2.5.4.97=PSDGB-FCA-123,O=Bank\, Ltd,C=GB", id="mv split"),
        pytest.param(r"CN=Alice,O=Bank\, Ltd,C=GB", id="rdn missing"),
        pytest.param(
            r"CN=Alice,OU=ou1+2.5.4.97=PSDGB-FCA-123,O=Bank\, Ltd,C=GB,DC=x", id="rdn extra"
        ),
        pytest.param(r"CN=Alice,OU=ou1+2.5.4.97=PSDGB-FCA-123,O=Bank Ltd,C=GB", id="value"),
        pytest.param(r"CN=Alice*,OU=ou1+2.5.4.97=PSDGB-FCA-123,O=Bank\, Ltd,C=GB", id="wildcard"),
    ],
)
def test_rfc8705_2_1_2_other_subject_dn_is_invalid_client(pki, dn: str) -> None:
    with pytest.raises(InvalidClient):
        authenticate_client(_tls_client_auth(tls_client_auth_subject_dn=dn), pki["alice"])


def test_rfc8705_2_1_2_rdn_order_is_ignored_as_documented(pki) -> None:
    # Documented (docs/policies.md): every Policy ignores RDN order, the RFC 8705 one too.
    dn = r"C=GB,O=Bank\, Ltd,OU=ou1+2.5.4.97=PSDGB-FCA-123,CN=Alice"
    metadata = _tls_client_auth(tls_client_auth_subject_dn=dn)
    assert authenticate_client(metadata, pki["alice"]) is pki["alice"]


@pytest.fixture(scope="module")
def sans(ca: CA):
    cert = ca.issue_client_cert(
        common_name="sans",
        dns_names=["alice.example"],
        uris=["https://alice.example/Client"],
        emails=["Alice@Example.org"],
        ip_addresses=["10.0.0.7", "2001:db8::1"],
    )
    return Verifier(trust_store=ca.trust_store()).verify_pem(cert.chain_pem.text())


@pytest.mark.parametrize(
    ("key", "value", "accepted"),
    [
        # RFC 5280 7.2 / 7.4 / 7.5: host names and mail domains case-insensitively,
        # URI scheme and host likewise, the rest of a URI and a mailbox's local part exactly.
        ("san_dns", "ALICE.example", True),
        ("san_dns", "*.example", False),
        ("san_dns", "bob.alice.example", False),
        ("san_uri", "HTTPS://ALICE.EXAMPLE/Client", True),
        ("san_uri", "https://alice.example/client", False),
        ("san_uri", "https://alice.example/Client/", False),
        ("san_uri", "https://alice.example", False),
        ("san_email", "Alice@example.org", True),
        ("san_email", "alice@Example.org", False),
        ("san_email", "example.org", False),
        ("san_email", "@example.org", False),
        # RFC 8705 2.1.2: addresses compare in binary form.
        ("san_ip", "10.0.0.7", True),
        ("san_ip", "2001:DB8:0::1", True),
        ("san_ip", "10.0.0.0/24", False),
        ("san_ip", "10.0.0.8", False),
    ],
)
def test_rfc8705_2_1_2_san_values_compare_exactly(sans, key: str, value: str, accepted: bool):
    metadata = _tls_client_auth(**{f"tls_client_auth_{key}": value})
    if accepted:
        assert authenticate_client(metadata, sans) is sans
    else:
        with pytest.raises(InvalidClient):
            authenticate_client(metadata, sans)


# -- RFC 9068, RFC 7519, RFC 8725 -----------------------------------------------------------


@pytest.fixture(scope="module")
def signer() -> tuple:
    key = ec.generate_private_key(ec.SECP256R1())
    public = {**ECAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": "k1"}
    return key, JWKS.from_document({"keys": [public]})


def _claims(**over) -> dict:
    now = int(time.time())
    base = {"iss": ISS, "aud": AUD, "sub": "s", "client_id": "c", "iat": now, "jti": "j"}
    return {**base, "exp": now + 300, **over}


def _sign(key, payload: dict, **headers) -> str:
    return jwt.encode(payload, key, algorithm="ES256", headers={"kid": "k1", **headers})


def _b64(data: dict) -> bytes:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


def _hand_signed(key, header: dict, payload: dict) -> str:
    """A JWS PyJWT would refuse to produce (a header it considers invalid)."""
    signing_input = _b64(header) + b"." + _b64(payload)
    signature = ECAlgorithm(ECAlgorithm.SHA256).sign(signing_input, key)
    return (signing_input + b"." + base64.urlsafe_b64encode(signature).rstrip(b"=")).decode()


def _invalid(validator: JWTValidator, token: str) -> None:
    with pytest.raises(TokenError) as info:
        validator(token)
    assert info.value.bearer_error == "invalid_token"


@pytest.mark.parametrize("missing", ["exp", "iss", "aud"])
@pytest.mark.parametrize("required", [(), ("sub",), ("jti", "client_id")])
def test_rfc9068_4_exp_iss_aud_required_whatever_required_claims_says(
    signer, missing: str, required: tuple
) -> None:
    key, jwks = signer
    validator = JWTValidator(jwks=jwks, issuer=ISS, audience=AUD, required_claims=required)
    payload = _claims()
    assert validator(_sign(key, payload))["sub"] == "s"
    del payload[missing]
    _invalid(validator, _sign(key, payload))


def test_rfc9068_4_required_claims_add_to_the_three(signer) -> None:
    key, jwks = signer
    validator = JWTValidator(jwks=jwks, issuer=ISS, audience=AUD, required_claims=("jti",))
    payload = _claims()
    del payload["jti"]
    _invalid(validator, _sign(key, payload))


def test_rfc9068_4_typ_at_jwt(signer) -> None:
    key, jwks = signer
    validator = JWTValidator(jwks=jwks, issuer=ISS, audience=AUD, typ="at+jwt")
    assert validator(_sign(key, _claims(), typ="at+jwt"))["sub"] == "s"
    assert validator(_sign(key, _claims(), typ="application/at+jwt"))["sub"] == "s"
    for typ in ("JWT", "jwt", "at+jwt2", "application/jwt"):
        _invalid(validator, _sign(key, _claims(), typ=typ))
    token = jwt.encode(_claims(), key, algorithm="ES256", headers={"kid": "k1", "typ": None})
    _invalid(validator, token)


def test_rfc9068_4_aud_string_or_array(signer) -> None:
    key, jwks = signer
    validator = JWTValidator(jwks=jwks, issuer=ISS, audience=AUD)
    assert validator(_sign(key, _claims(aud=["https://other.example", AUD])))["sub"] == "s"
    for aud in (["https://other.example"], [], "https://api.example/", 7, [7]):
        _invalid(validator, _sign(key, _claims(aud=aud)))


def test_rfc9068_2_1_alg_none_refused(signer) -> None:
    _key, jwks = signer
    validator = JWTValidator(jwks=jwks, issuer=ISS, audience=AUD)
    _invalid(validator, jwt.encode(_claims(), None, algorithm="none", headers={"kid": "k1"}))


@pytest.mark.parametrize("name", ["exp", "nbf", "iat"])
@pytest.mark.parametrize("value", ["0", True, None, [1], "1e12"])
def test_rfc7519_2_numeric_dates_are_numbers(signer, name: str, value) -> None:
    key, jwks = signer
    validator = JWTValidator(jwks=jwks, issuer=ISS, audience=AUD)
    _invalid(validator, _sign(key, _claims(**{name: value})))


def test_rfc7519_4_1_4_exp_with_leeway(signer) -> None:
    key, jwks = signer
    validator = JWTValidator(jwks=jwks, issuer=ISS, audience=AUD, leeway=30)
    now = int(time.time())
    assert validator(_sign(key, _claims(exp=now - 10)))["sub"] == "s"
    _invalid(validator, _sign(key, _claims(exp=now - 60)))
    assert validator(_sign(key, _claims(nbf=now + 10)))["sub"] == "s"
    _invalid(validator, _sign(key, _claims(nbf=now + 120)))


@pytest.mark.parametrize(
    "header",
    [{"crit": ["exp"], "exp": 1}, {"crit": []}, {"b64": False, "crit": ["b64"]}],
)
def test_rfc8725_3_crit_refused(signer, header: dict) -> None:
    key, jwks = signer
    validator = JWTValidator(jwks=jwks, issuer=ISS, audience=AUD)
    _invalid(validator, _sign(key, _claims(), **header))


def test_rfc8725_3_10_kid_not_a_string_refused(signer) -> None:
    key, jwks = signer
    validator = JWTValidator(jwks=jwks, issuer=ISS, audience=AUD)
    _invalid(validator, _hand_signed(key, {"alg": "ES256", "kid": 1}, _claims()))
    _invalid(validator, jwt.encode(_claims(), key, algorithm="ES256", headers={"kid": "k2"}))


# -- RFC 6750 sections 2.2 and 2.3, through an adapter --------------------------------------


def test_rfc6750_2_2_2_3_query_and_form_tokens_are_never_read(ca: CA) -> None:
    from urllib.parse import quote

    from werkzeug.test import Client

    from mtlsauth import ForwardedCert, Route
    from mtlsauth.adapters import wsgi, wsgi_oauth

    seen: list[str] = []
    cert = ca.issue_client_cert(common_name="form")

    def validate(token: str) -> dict:
        seen.append(token)
        return {"sub": token}

    def app(environ, start_response):
        claims = wsgi_oauth.token_claims_from_environ(environ)
        start_response("200 OK", [("content-type", "text/plain")])
        return [(claims["sub"] if claims else "-").encode()]

    verifier = Verifier(
        trust_store=ca.trust_store(),
        forwarded=ForwardedCert.preset("nginx", header="x-cert", trusted_proxies=["127.0.0.1"]),
    )
    check = TokenCheck(validate, binding="if_present")
    client = Client(wsgi.MTLSMiddleware(app, verifier=verifier, routes=[Route("/", token=check)]))
    base = {"x-cert": quote(cert.cert_pem.text(), safe="")}
    environ = {"REMOTE_ADDR": "127.0.0.1"}

    r = client.get("/?access_token=q", headers=base, environ_overrides=environ)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"  # no token: no error code (3.1)
    r = client.post(
        "/",
        data={"access_token": "f"},
        headers=base,
        environ_overrides=environ,
    )
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    r = client.get(
        "/?access_token=q",
        headers={**base, "authorization": "Bearer h"},
        environ_overrides=environ,
    )
    assert (r.status_code, r.get_data(as_text=True)) == (200, "h")
    assert seen == ["h"]


@pytest.mark.parametrize("active", ["true", 1, None, False, {}])
def test_rfc7662_2_2_active_must_be_exactly_true(active) -> None:
    check = _check({"active": active}, binding="if_present")
    exc = _refusal(check.check, None, ["Bearer t"])
    assert (exc.code, exc.bearer_error) == ("token_invalid", "invalid_token")


def test_rfc9068_4_encrypted_tokens_are_refused(signer) -> None:
    _key, jwks = signer
    validator = JWTValidator(jwks=jwks, issuer=ISS, audience=AUD)
    header = _b64({"alg": "RSA-OAEP", "enc": "A256GCM", "kid": "k1"}).decode()
    _invalid(validator, f"{header}.AAAA.AAAA.AAAA.AAAA")
    # Nor with a signature algorithm's name on a five-part (JWE-shaped) token.
    header = _b64({"alg": "ES256", "enc": "A256GCM", "kid": "k1"}).decode()
    _invalid(validator, f"{header}.AAAA.AAAA.AAAA.AAAA")


def test_rfc8725_3_11_typ_is_not_checked_unless_configured(signer) -> None:
    # Documented: RFC 9068 section 4 asks resource servers to require at+jwt; it is opt-in
    # (JWTValidator(typ="at+jwt")) because many authorization servers send "JWT" or nothing.
    key, jwks = signer
    validator = JWTValidator(jwks=jwks, issuer=ISS, audience=AUD)
    assert validator(_sign(key, _claims(), typ="JWT"))["sub"] == "s"


@pytest.mark.parametrize(
    "scope",
    ['a", error="invalid_request', "a\\", "a  b", " a", "a ", "caf\u00e9", "a\tb", 7],
)
def test_rfc6750_3_scope_attribute_only_of_scope_tokens(scope) -> None:
    # A validator may raise its own TokenError with a scope: one that is not
    # scope-token *( SP scope-token ) is left out of the challenge, the refusal kept.
    exc = TokenError("x", code="insufficient_scope", scope=scope)
    assert exc.status == 403
    assert exc.challenge == (
        'Bearer error="insufficient_scope", '
        'error_description="The access token lacks a required scope"'
    )


def test_rfc6750_3_scope_attribute_kept_when_well_formed() -> None:
    exc = TokenError("x", code="insufficient_scope", scope="read write:all")
    assert exc.challenge.endswith(', scope="read write:all"')
