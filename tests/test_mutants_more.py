"""Security checks that a mutation of the code left passing elsewhere (docs/security.md,
"Security checks mutated, second round"): each test here fails with its mutant and passes
with the code as written."""

from __future__ import annotations

import base64
import json
import time

import pytest

from mtlsauth import Policy, Route, TokenCheck, TokenError, Verifier
from mtlsauth._guard import Guard
from mtlsauth._routes import path_ambiguity
from mtlsauth.testing import CA


@pytest.fixture(scope="module")
def alice():
    ca = CA(organization="Mutants Two")
    cert = ca.issue_client_cert(common_name="alice")
    return Verifier(trust_store=ca.trust_store()).verify_pem(cert.chain_pem.text())


def _refused(check: TokenCheck, identity, code: str) -> None:
    with pytest.raises(TokenError) as info:
        check.check(identity, ["Bearer t"])
    assert info.value.code == code


# --- Routes and request targets -----------------------------------------------------------


def test_a_raw_space_in_the_target_is_ambiguous() -> None:
    # The bound is inclusive: 0x20 itself is refused, not only control characters.
    assert path_ambiguity(b"/a b", "/a b") is not None


def test_a_single_dot_segment_in_the_raw_target_is_ambiguous() -> None:
    # The server handed over the normalised path; the raw target still has "/./".
    assert path_ambiguity(b"/admin/./x", "/admin/x") is not None


def test_an_exact_route_covers_its_path_only() -> None:
    route = Route("/health", mode="off")
    assert route.matches("/health", "GET")
    assert not route.matches("/healthz", "GET")
    assert not route.matches("/health/admin", "GET")


def test_a_deny_only_route_policy_is_refused_under_an_any_of_verifier_policy() -> None:
    # The Verifier admits admins or operators (alternatives only, no allow-list of its
    # own); a route policy of deny-lists alone would admit every trusted certificate.
    ca = CA(organization="Mutants Two")
    policy = Policy.any_of(Policy(common_names=["admin"]), Policy(common_names=["operator"]))
    verifier = Verifier(trust_store=ca.trust_store(), policy=policy)
    with pytest.raises(ValueError, match="only"):
        Guard(verifier=verifier, routes=[Route("/x/*", policy=Policy(deny_serials=[1]))])


# --- Bearer tokens (TokenCheck) ------------------------------------------------------------


def test_exp_leeway_is_added_once(alice) -> None:
    exp = time.time() - 90  # beyond the 60-second default leeway
    check = TokenCheck(lambda t: {"sub": "c", "exp": exp, "cnf": {"x5t#S256": alice.x5t_s256()}})
    _refused(check, alice, "token_invalid")


def test_a_thumbprint_differing_in_its_last_octet_is_another_certificate(alice) -> None:
    raw = bytearray(base64.urlsafe_b64decode(alice.x5t_s256() + "="))
    raw[-1] ^= 1
    other = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    check = TokenCheck(lambda t: {"sub": "c", "cnf": {"x5t#S256": other}})
    _refused(check, alice, "token_binding_mismatch")


@pytest.mark.parametrize("leeway", [600.5, 601, -0.5])
def test_token_check_leeway_is_bounded(leeway) -> None:
    with pytest.raises(ValueError, match="leeway"):
        TokenCheck(lambda t: {}, leeway=leeway)


# --- JWTValidator --------------------------------------------------------------------------

jwt = pytest.importorskip("jwt")
_ISS, _AUD = "https://as.example", "https://api.example"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def ec_key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _validator(ec_key, **kw):
    from jwt.algorithms import ECAlgorithm

    from mtlsauth.oauth_jwt import JWKS, JWTValidator

    jwk = {**ECAlgorithm.to_jwk(ec_key.public_key(), as_dict=True), "kid": "e1"}
    return JWTValidator(jwks=JWKS.from_document({"keys": [jwk]}), issuer=_ISS, audience=_AUD, **kw)


def _token(ec_key, header: dict) -> str:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    now = int(time.time())
    body = {"iss": _ISS, "aud": _AUD, "sub": "c", "exp": now + 300, "iat": now}
    signing = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(body).encode())}"
    r, s = decode_dss_signature(ec_key.sign(signing.encode(), ec.ECDSA(hashes.SHA256())))
    return f"{signing}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def test_a_token_without_typ_is_refused_when_typ_is_required(ec_key) -> None:
    v = _validator(ec_key, typ="at+jwt")
    assert v(_token(ec_key, {"alg": "ES256", "kid": "e1", "typ": "at+jwt"}))["sub"] == "c"
    with pytest.raises(TokenError):
        v(_token(ec_key, {"alg": "ES256", "kid": "e1"}))


@pytest.mark.parametrize("leeway", [300.5, 301, -1])
def test_jwt_leeway_is_bounded(ec_key, leeway) -> None:
    with pytest.raises(ValueError, match="leeway"):
        _validator(ec_key, leeway=leeway)


def test_a_jwk_carrying_private_material_is_no_verification_key(ec_key) -> None:
    from jwt.algorithms import ECAlgorithm

    from mtlsauth.oauth_jwt import JWKS, JWTValidator

    # A key set that leaks the private key is a publishing mistake: no key of it verifies.
    jwk = {**ECAlgorithm.to_jwk(ec_key, as_dict=True), "kid": "e1"}
    assert "d" in jwk
    v = JWTValidator(jwks=JWKS.from_document({"keys": [jwk]}), issuer=_ISS, audience=_AUD)
    with pytest.raises(TokenError):
        v(_token(ec_key, {"alg": "ES256", "kid": "e1"}))


def test_an_rsa_jwk_one_bit_short_of_the_minimum_is_skipped() -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa
    from jwt.algorithms import RSAAlgorithm

    from mtlsauth._jwks import MIN_RSA_BITS
    from mtlsauth.oauth_jwt import JWKS, JWTValidator

    key = rsa.generate_private_key(public_exponent=65537, key_size=MIN_RSA_BITS - 1)
    jwk = {**RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": "r1"}
    v = JWTValidator(jwks=JWKS.from_document({"keys": [jwk]}), issuer=_ISS, audience=_AUD)
    now = int(time.time())
    body = {"iss": _ISS, "aud": _AUD, "sub": "c", "exp": now + 300, "iat": now}
    with pytest.warns(Warning, match="2047 bits"):  # PyJWT warns when signing with it
        token = jwt.encode(body, key, algorithm="RS256", headers={"kid": "r1"})
    with pytest.raises(TokenError):
        v(token)


# --- The verification cache ----------------------------------------------------------------


def test_a_policy_verdict_memo_is_keyed_by_the_policy_not_only_its_id(alice) -> None:
    # id() of a collected policy can be reused by a new one: the memo must not answer for
    # the newcomer. Simulated by filing another policy's "admitted" under the strict one's id.
    from mtlsauth._cache import CacheEntry

    entry = CacheEntry(alice, (), time.time() + 60)
    lenient, strict = Policy(common_names=["alice"]), Policy(common_names=["bob"])
    assert entry.denial(lenient) is None
    entry.verdicts[id(strict)] = (lenient, None)
    assert entry.denial(strict) is not None


# --- Revocation checkers composed ----------------------------------------------------------


class _Checker:
    def __init__(self, answer: object, *, may_block: bool = False) -> None:
        self.answer, self.may_block = answer, may_block

    def check(self, chain, *, at):
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_all_of_refuses_when_one_checker_cannot_tell(alice) -> None:
    import datetime as dt

    from mtlsauth import RevocationUnavailable
    from mtlsauth._revocation._compose import AllOf

    now = dt.datetime.now(dt.timezone.utc)
    chain = [alice.certificate]
    for order in ((0, 1), (1, 0)):
        parts = [_Checker(RevocationUnavailable("no CRL")), _Checker(None)]
        with pytest.raises(RevocationUnavailable):
            AllOf([parts[i] for i in order]).check(chain, at=now)
    # The earliest "good until" of those that pass is the answer.
    soon, later = now + dt.timedelta(minutes=1), now + dt.timedelta(hours=1)
    assert AllOf([_Checker(later), _Checker(soon)]).check(chain, at=now) == soon


def test_all_of_token_changes_when_a_part_reloads() -> None:
    # The verification cache keeps answers under this token: a CRL reloaded in one part
    # (a certificate newly revoked) must make every answer cached before it stale.
    from mtlsauth._revocation._compose import AllOf

    crl, ocsp = _Checker(None), _Checker(None, may_block=True)
    crl.token, ocsp.token = object(), object()
    both = AllOf([crl, ocsp])
    first = both.token
    assert both.token is first  # unchanged parts: the same token
    crl.token = object()  # reloaded
    assert both.token is not first
