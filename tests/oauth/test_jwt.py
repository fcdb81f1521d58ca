"""JWTValidator and JWKS (the ``oauth`` extra): signatures, algorithm confusion, claims, fetching."""

from __future__ import annotations

import base64
import json
import logging
import os
import ssl
import threading
import time
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from mtlsauth import TokenCheck, TokenError, Verifier
from mtlsauth.oauth_jwt import JWKS, JWTValidator
from mtlsauth.testing import CA

ISS = "https://as.example"
AUD = "https://api.example"


class Keys:
    def __init__(self) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.ec384 = ec.generate_private_key(ec.SECP384R1())
        self.ed = ed25519.Ed25519PrivateKey.generate()
        self.rsa2 = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwk(self, name: str, kid: str, **extra) -> dict:
        key = getattr(self, name).public_key()
        algo = {"rsa": RSAAlgorithm, "rsa2": RSAAlgorithm, "ec": ECAlgorithm}.get(name)
        if name == "ec384":
            algo = ECAlgorithm
        if name == "ed":
            algo = OKPAlgorithm
        return {**algo.to_jwk(key, as_dict=True), "kid": kid, **extra}

    def document(self, **extra) -> dict:
        return {
            "keys": [
                self.jwk("rsa", "r1", **extra),
                self.jwk("ec", "e1", **extra),
                self.jwk("ed", "d1", **extra),
                self.jwk("ec384", "e384", **extra),
            ]
        }


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


def claims(**over) -> dict:
    now = int(time.time())
    return {"iss": ISS, "aud": AUD, "sub": "client-1", "exp": now + 300, "iat": now} | over


def sign(key, alg: str, kid: str | None, payload: dict | None = None, **headers) -> str:
    hdr = dict(headers)
    if kid is not None:
        hdr["kid"] = kid
    return jwt.encode(payload or claims(), key, algorithm=alg, headers=hdr)


@pytest.fixture
def validator(keys) -> JWTValidator:
    return JWTValidator(jwks=JWKS.from_document(keys.document()), issuer=ISS, audience=AUD)


@pytest.mark.parametrize(
    ("name", "alg", "kid"),
    [
        ("rsa", "RS256", "r1"),
        ("rsa", "PS256", "r1"),
        ("ec", "ES256", "e1"),
        ("ed", "EdDSA", "d1"),
    ],
)
def test_valid_tokens(keys, validator, name, alg, kid) -> None:
    assert validator(sign(getattr(keys, name), alg, kid))["sub"] == "client-1"


def _b64(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(alg: str, kid: str = "r1") -> str:
    header = _b64(json.dumps({"alg": alg, "kid": kid, "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(claims()).encode())}."


def test_refused_tokens(keys, validator) -> None:
    rsa_pub_pem = keys.rsa.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    import hashlib
    import hmac

    def hs256_with(secret: bytes, kid: str = "r1") -> str:
        header = _b64(json.dumps({"alg": "HS256", "kid": kid}).encode())
        body = _b64(json.dumps(claims()).encode())
        sig = hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
        return f"{header}.{body}.{_b64(sig)}"

    evil = ec.generate_private_key(ec.SECP256R1())
    evil_jwk = ECAlgorithm.to_jwk(evil.public_key(), as_dict=True)
    evil_ca = CA(organization="Evil")
    evil_cert = base64.b64encode(
        evil_ca.issue_client_cert(common_name="evil").certificate.public_bytes(
            serialization.Encoding.DER
        )
    ).decode()
    cases = {
        "alg none": _unsigned("none"),
        "alg None": _unsigned("None"),
        "HS256 with the RSA public key as secret": hs256_with(rsa_pub_pem),
        "ES256 naming the RSA key": sign(keys.ec, "ES256", "r1"),
        "RS256 naming the EC key": sign(keys.rsa, "RS256", "e1"),
        "ES256 naming the P-384 key": sign(keys.ec, "ES256", "e384"),
        "ES384 (not allowed here)": sign(keys.ec384, "ES384", "e384"),
        "signed by another RSA key": sign(keys.rsa2, "RS256", "r1"),
        "unknown kid": sign(keys.rsa, "RS256", "nope"),
        "no kid, several candidates": sign(keys.rsa, "RS256", None),
        "wrong issuer": sign(keys.rsa, "RS256", "r1", claims(iss="https://evil.example")),
        "issuer prefix": sign(keys.rsa, "RS256", "r1", claims(iss="https://as.exam")),
        "issuer as a list": jwt.api_jws.encode(
            json.dumps(claims(iss=[ISS])).encode(),
            keys.rsa,
            algorithm="RS256",
            headers={"kid": "r1"},
        ),
        "issuer with a suffix": sign(keys.rsa, "RS256", "r1", claims(iss=ISS + ".evil")),
        "wrong audience": sign(keys.rsa, "RS256", "r1", claims(aud="https://other.example")),
        "no audience": sign(
            keys.rsa, "RS256", "r1", {k: v for k, v in claims().items() if k != "aud"}
        ),
        "no exp": sign(keys.rsa, "RS256", "r1", {k: v for k, v in claims().items() if k != "exp"}),
        "expired": sign(keys.rsa, "RS256", "r1", claims(exp=int(time.time()) - 120)),
        "not yet valid": sign(keys.rsa, "RS256", "r1", claims(nbf=int(time.time()) + 600)),
        "crit header": sign(keys.rsa, "RS256", "r1", crit=["exp"]),
        "kid a number": _unsigned("RS256", kid=5),  # type: ignore[arg-type]
        # Keys the token brings along are never used, with or without a kid.
        "embedded jwk": sign(evil, "ES256", "e1", jwk=evil_jwk),
        "embedded jwk, no kid": sign(evil, "ES256", None, jwk=evil_jwk),
        "jku": sign(evil, "ES256", "e1", jku="https://127.0.0.1:1/jwks"),
        "x5u": sign(evil, "ES256", "e1", x5u="https://127.0.0.1:1/cert.pem"),
        "x5c": sign(evil, "ES256", "e1", x5c=[evil_cert]),
        "kid a path": sign(keys.rsa, "RS256", "../r1"),
        "kid a URL": sign(keys.rsa, "RS256", "https://127.0.0.1:1/r1"),
        "garbage": "not-a-jwt",
        "two parts": "a.b",
    }
    # "no kid": only one RS key exists, so an ES/RS/EdDSA set with one RSA key is unambiguous;
    # give it a second RSA key to make it ambiguous.
    ambiguous = JWTValidator(
        jwks=JWKS.from_document({"keys": [keys.jwk("rsa", "r1"), keys.jwk("rsa2", "r2")]}),
        issuer=ISS,
        audience=AUD,
    )
    for name, token in cases.items():
        v = ambiguous if name.startswith("no kid") else validator
        with pytest.raises(TokenError) as info:
            v(token)
        assert info.value.code == "token_invalid", name


def test_leeway_and_no_kid_with_one_candidate(keys) -> None:
    one = JWTValidator(
        jwks=JWKS.from_document({"keys": [keys.jwk("rsa", "r1")]}), issuer=ISS, audience=AUD
    )
    assert one(sign(keys.rsa, "RS256", None))["sub"] == "client-1"
    assert one(sign(keys.rsa, "RS256", "r1", claims(exp=int(time.time()) - 30)))["sub"]


def test_key_declared_alg_must_match(keys) -> None:
    v = JWTValidator(
        jwks=JWKS.from_document({"keys": [keys.jwk("rsa", "r1", alg="PS256")]}),
        issuer=ISS,
        audience=AUD,
    )
    assert v(sign(keys.rsa, "PS256", "r1"))["sub"] == "client-1"
    with pytest.raises(TokenError):
        v(sign(keys.rsa, "RS256", "r1"))


@pytest.mark.parametrize(
    ("extra", "usable"),
    [
        pytest.param({}, True, id="plain"),
        pytest.param({"use": "enc"}, False, id="encryption key"),
        pytest.param({"key_ops": ["encrypt"]}, False, id="key_ops without verify"),
        pytest.param({"key_ops": ["verify"]}, True, id="key_ops verify"),
        pytest.param({"d": "AAAA"}, False, id="private member"),
        pytest.param({"alg": "HS256"}, False, id="alg HS256"),
        pytest.param({"kid": 7}, False, id="kid a number"),
    ],
)
def test_only_public_signature_keys_are_kept(keys, extra, usable) -> None:
    v = JWTValidator(
        jwks=JWKS.from_document({"keys": [keys.jwk("ec", "e1") | extra]}),
        issuer=ISS,
        audience=AUD,
    )
    token = sign(keys.ec, "ES256", "e1")
    if usable:
        assert v(token)["sub"] == "client-1"
    else:
        with pytest.raises(TokenError):
            v(token)


def test_symmetric_keys_never_verify(keys) -> None:
    secret = b"shared-secret-shared-secret-1234"
    doc = {"keys": [{"kty": "oct", "kid": "h1", "k": _b64(secret)}]}
    v = JWTValidator(jwks=JWKS.from_document(doc), issuer=ISS, audience=AUD)
    with pytest.raises(TokenError):
        v(jwt.encode(claims(), secret, algorithm="HS256", headers={"kid": "h1"}))


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        pytest.param({"algorithms": ["HS256"]}, ValueError, id="HS256"),
        pytest.param({"algorithms": ["none"]}, ValueError, id="none"),
        pytest.param({"algorithms": []}, ValueError, id="no algorithm"),
        pytest.param({"algorithms": "RS256"}, TypeError, id="a string"),
        pytest.param({"issuer": ""}, ValueError, id="empty issuer"),
        pytest.param({"audience": []}, ValueError, id="no audience"),
        pytest.param({"leeway": 3600}, ValueError, id="leeway an hour"),
        pytest.param({"jwks": {"keys": []}}, TypeError, id="jwks a dict"),
        pytest.param({"required_claims": "exp"}, TypeError, id="required claims a string"),
        pytest.param({"required_claims": ["exp", 7]}, ValueError, id="required claim a number"),
        pytest.param({"typ": 7}, ValueError, id="typ a number"),
    ],
)
def test_bad_configuration(keys, kwargs, error) -> None:
    args = {"jwks": JWKS.from_document(keys.document()), "issuer": ISS, "audience": AUD} | kwargs
    with pytest.raises(error):
        JWTValidator(**args)


def test_typ(keys) -> None:
    v = JWTValidator(
        jwks=JWKS.from_document(keys.document()), issuer=ISS, audience=AUD, typ="at+jwt"
    )
    assert v(sign(keys.ec, "ES256", "e1", typ="at+jwt"))["sub"]
    assert v(sign(keys.ec, "ES256", "e1", typ="application/AT+JWT"))["sub"]
    with pytest.raises(TokenError):
        v(sign(keys.ec, "ES256", "e1", typ="JWT"))  # an ID token is not an access token


def test_file_is_reloaded_on_unknown_kid_at_most_once_per_interval(keys, tmp_path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [keys.jwk("rsa", "r1")]}))
    jwks = JWKS.from_file(path, min_refresh_interval=3600)
    v = JWTValidator(jwks=jwks, issuer=ISS, audience=AUD)
    assert v(sign(keys.rsa, "RS256", "r1"))
    path.write_text(json.dumps({"keys": [keys.jwk("rsa2", "r2")]}))
    jwks.min_refresh_interval = 0  # a rotation: the next unknown kid reloads
    assert v(sign(keys.rsa2, "RS256", "r2"))
    jwks.min_refresh_interval = 3600
    path.write_text(json.dumps({"keys": [keys.jwk("ec", "e9")]}))
    with pytest.raises(TokenError):  # rate-limited: the new file is not read yet
        v(sign(keys.ec, "ES256", "e9"))


@pytest.mark.parametrize("how", ["deleted", "emptied", "whitespace"])
def test_a_deleted_or_emptied_file_withdraws_its_keys(keys, tmp_path, how, caplog) -> None:
    # As with a trust file: an operator withdraws a leaked signing key by emptying or
    # deleting the file; the keys it held must not keep validating tokens until a restart.
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [keys.jwk("rsa", "r1")]}))
    jwks = JWKS.from_file(path, min_refresh_interval=0, max_age=0)
    v = JWTValidator(jwks=jwks, issuer=ISS, audience=AUD)
    assert v(sign(keys.rsa, "RS256", "r1"))
    if how == "deleted":
        path.unlink()
    else:
        path.write_text("" if how == "emptied" else " \n\t")
    time.sleep(0.01)
    # Seen gone or empty once, it may be in the middle of a rewrite; seen so a quarter of
    # a second later, it is a withdrawal.
    assert v(sign(keys.rsa, "RS256", "r1"))
    time.sleep(0.3)
    with caplog.at_level("WARNING", logger="mtlsauth"), pytest.raises(TokenError):
        v(sign(keys.rsa, "RS256", "r1"))
    assert jwks.keys_for("r1", "RS256") == []
    assert "holds no key" in caplog.text
    # ... and a key written back is used again.
    path.write_text(json.dumps({"keys": [keys.jwk("rsa", "r1")]}))
    assert v(sign(keys.rsa, "RS256", "r1"))


@pytest.mark.parametrize("how", ["renamed away", "truncated"])
def test_a_file_caught_in_a_rewrite_keeps_its_keys(keys, tmp_path, how) -> None:
    # An editor that renames the old file away (or truncates it) before writing the new
    # one: a reload in between sees no file, or an empty one. That must not withdraw the
    # keys, which would refuse every token until the next reload allowed
    # (min_refresh_interval), nor delay the keys written back by as long.
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [keys.jwk("rsa", "r1")]}))
    jwks = JWKS.from_file(path, max_age=0, min_refresh_interval=0.5)  # reloaded per token
    v = JWTValidator(jwks=jwks, issuer=ISS, audience=AUD)
    time.sleep(0.55)  # the next token reloads
    if how == "renamed away":
        path.rename(tmp_path / "jwks.json~")
    else:
        path.write_text("")
    assert v(sign(keys.rsa, "RS256", "r1"))  # mid-rewrite: the keys stay
    path.write_text(json.dumps({"keys": [keys.jwk("rsa", "r1"), keys.jwk("ec", "e1")]}))
    time.sleep(0.3)
    assert v(sign(keys.ec, "ES256", "e1"))  # read a quarter of a second later, not 0.5 s
    assert v(sign(keys.rsa, "RS256", "r1"))


def test_a_reload_that_hangs_does_not_keep_stale_keys(keys, tmp_path, monkeypatch) -> None:
    # A reload that never finishes (a FIFO nobody writes, a hung network mount) is no
    # failure, but no renewal either: past max_stale, the keys serve only while it has run
    # for less than a fetch may take.
    import mtlsauth._jwks as jwks_module

    monkeypatch.setattr(jwks_module, "_IN_FLIGHT", 0.3)
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [keys.jwk("rsa", "r1")]}))
    jwks = JWKS.from_file(path, min_refresh_interval=0, max_age=0.2, max_stale=0.2)
    path.unlink()
    os.mkfifo(path)
    time.sleep(0.25)
    hung = threading.Thread(target=jwks.keys_for, args=("r1", "RS256"))
    hung.start()
    try:
        time.sleep(0.1)
        assert hung.is_alive()
        assert jwks.keys_for("r1", "RS256")  # in flight for 0.1 s: the keys still serve
        time.sleep(0.3)
        assert jwks.keys_for("r1", "RS256") == []  # in flight for 0.4 s: no longer
    finally:
        writer = os.open(path, os.O_WRONLY | os.O_NONBLOCK)  # lets the reader finish
        os.write(writer, json.dumps({"keys": [keys.jwk("rsa", "r1")]}).encode())
        os.close(writer)
        hung.join()
    assert jwks.keys_for("r1", "RS256")


def test_a_garbled_file_keeps_the_last_good_keys(keys, tmp_path) -> None:
    # A half-written file is a botched write, not a withdrawal.
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [keys.jwk("rsa", "r1")]}))
    jwks = JWKS.from_file(path, min_refresh_interval=0, max_age=0)
    v = JWTValidator(jwks=jwks, issuer=ISS, audience=AUD)
    path.write_text('{"keys": [{"kty": "RS')
    time.sleep(0.01)
    assert v(sign(keys.rsa, "RS256", "r1"))


@pytest.mark.parametrize("content", [None, "", "  \n"], ids=["missing", "empty", "blank"])
def test_a_file_without_keys_fails_at_construction(tmp_path, content) -> None:
    path = tmp_path / "jwks.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValueError, match="cannot load"):
        JWKS.from_file(path)


def test_unreadable_file_fails_at_construction(tmp_path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="cannot load"):
        JWKS.from_file(bad)


# -- a real HTTPS JWKS endpoint on 127.0.0.1 ---------------------------------------------------
class Endpoint:
    def __init__(self) -> None:
        self.body = b""
        self.status = 200
        self.extra_headers: dict[str, str] = {}
        self.drip: float = 0.0
        self.delay: float = 0.0  # seconds before answering
        self.hits = 0
        self.port = 0


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    ca = CA(organization="jwks-test")
    server = ca.issue_client_cert(common_name="localhost", ip_addresses=["127.0.0.1"], eku="server")
    d = tmp_path_factory.mktemp("jwks-tls")
    cert = server.cert_pem.write_to_path(d / "cert.pem")
    key = server.key_pem.write_to_path(d / "key.pem")
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(cert, key)
    cctx = ssl.create_default_context(cadata=ca.cert_pem.text())
    return sctx, cctx


@pytest.fixture
def endpoint(tls) -> Iterator[Endpoint]:
    ep = Endpoint()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ep.hits += 1
            time.sleep(ep.delay)
            self.send_response(ep.status)
            for k, v in ep.extra_headers.items():
                self.send_header(k, v)
            if ep.drip:
                self.send_header("Content-Length", str(len(ep.body)))
                self.end_headers()
                for i in range(len(ep.body)):
                    self.wfile.write(ep.body[i : i + 1])
                    self.wfile.flush()
                    time.sleep(ep.drip)
                return
            self.send_header("Content-Length", str(len(ep.body)))
            self.end_headers()
            self.wfile.write(ep.body)

        def log_message(self, *args) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request, client_address) -> None:
            pass

    server = Server(("127.0.0.1", 0), Handler)
    server.socket = tls[0].wrap_socket(server.socket, server_side=True)
    ep.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield ep
    finally:
        server.shutdown()
        server.server_close()


def url_jwks(endpoint: Endpoint, tls, **kw) -> JWKS:
    return JWKS.from_url(f"https://127.0.0.1:{endpoint.port}/jwks", ssl_context=tls[1], **kw)


def test_url_fetch_and_refresh_on_unknown_kid(keys, endpoint, tls) -> None:
    endpoint.body = json.dumps({"keys": [keys.jwk("rsa", "r1")]}).encode()
    jwks = url_jwks(endpoint, tls, min_refresh_interval=0)
    v = JWTValidator(jwks=jwks, issuer=ISS, audience=AUD)
    assert v.may_block is True
    assert endpoint.hits == 0  # nothing fetched before the first token
    assert v(sign(keys.rsa, "RS256", "r1"))
    assert endpoint.hits == 1
    assert v(sign(keys.rsa, "RS256", "r1"))
    assert endpoint.hits == 1  # cached
    endpoint.body = json.dumps({"keys": [keys.jwk("rsa", "r1"), keys.jwk("ec", "e2")]}).encode()
    assert v(sign(keys.ec, "ES256", "e2"))
    assert endpoint.hits == 2


def test_url_unknown_kid_flood_is_rate_limited(keys, endpoint, tls) -> None:
    endpoint.body = json.dumps({"keys": [keys.jwk("rsa", "r1")]}).encode()
    v = JWTValidator(
        jwks=url_jwks(endpoint, tls, min_refresh_interval=60), issuer=ISS, audience=AUD
    )
    for i in range(50):
        with pytest.raises(TokenError):
            v(sign(keys.rsa, "RS256", f"forged-{i}"))
    assert endpoint.hits == 1


@pytest.mark.parametrize(
    ("status", "headers", "body"),
    [
        pytest.param(302, {"Location": "https://127.0.0.1:1/jwks"}, b"", id="redirect"),
        pytest.param(500, {}, b"{}", id="server error"),
        pytest.param(200, {}, b"x" * 300_000, id="too large"),
        pytest.param(200, {}, b"[1, 2]", id="not a JWK Set"),
    ],
)
def test_url_failures_refuse(keys, endpoint, tls, status, headers, body) -> None:
    endpoint.status, endpoint.extra_headers = status, headers
    endpoint.body = body or json.dumps({"keys": [keys.jwk("rsa", "r1")]}).encode()
    v = JWTValidator(jwks=url_jwks(endpoint, tls), issuer=ISS, audience=AUD)
    with pytest.raises(TokenError):
        v(sign(keys.rsa, "RS256", "r1"))
    assert endpoint.hits == 1  # no redirect followed, no retry storm


def test_known_keys_outlive_failed_fetches_only_until_max_stale(
    keys, endpoint, tls, caplog
) -> None:
    # Keeping the last keys through an outage is right for a while; for ever, it would let
    # whoever can block the fetches keep a withdrawn key validating tokens.
    endpoint.body = json.dumps({"keys": [keys.jwk("rsa", "r1")]}).encode()
    jwks = url_jwks(endpoint, tls, min_refresh_interval=0, max_age=0, max_stale=1.0)
    v = JWTValidator(jwks=jwks, issuer=ISS, audience=AUD)
    assert v(sign(keys.rsa, "RS256", "r1"))
    endpoint.status = 500
    with caplog.at_level("WARNING", logger="mtlsauth"):
        assert v(sign(keys.rsa, "RS256", "r1"))  # a failed fetch: the known key still serves
        assert "stay in use" in caplog.text
        time.sleep(1.05)
        with pytest.raises(TokenError):
            v(sign(keys.rsa, "RS256", "r1"))
        assert "older than max_stale" in caplog.text
    endpoint.status = 200  # the server answers again: its keys are used again
    assert v(sign(keys.rsa, "RS256", "r1"))


def test_a_reload_in_flight_refuses_nothing_while_no_reload_has_failed(keys, endpoint, tls) -> None:
    # max_stale bounds keys kept through *failed* reloads. Keys due for a reload (past
    # max_age, here also past max_stale) while one is in flight in another thread, from a
    # server that answers, must keep validating tokens: nothing has failed.
    endpoint.body = json.dumps({"keys": [keys.jwk("rsa", "r1")]}).encode()
    jwks = url_jwks(endpoint, tls, min_refresh_interval=0, max_age=0.3, max_stale=0.3)
    assert jwks.keys_for("r1", "RS256")
    time.sleep(0.35)
    endpoint.delay = 0.5
    fetching = threading.Thread(target=jwks.keys_for, args=("r1", "RS256"))
    fetching.start()
    try:
        time.sleep(0.15)  # the other thread's reload is in flight
        assert endpoint.hits == 2
        assert jwks.keys_for("r1", "RS256")
    finally:
        fetching.join()


@pytest.mark.parametrize(
    "kwargs",
    [{"max_stale": 10.0, "max_age": 60.0}, {"max_stale": float("nan")}, {"max_stale": -1}],
    ids=["below max_age", "nan", "negative"],
)
def test_max_stale_is_checked(tls, kwargs) -> None:
    with pytest.raises(ValueError, match="max_stale"):
        JWKS.from_url("https://127.0.0.1:1/jwks", ssl_context=tls[1], **kwargs)


@pytest.mark.parametrize("max_age", [2 * 86400.0, float("inf")], ids=["two days", "never"])
def test_a_max_age_over_a_day_still_builds_and_sets_max_stale(keys, tmp_path, tls, max_age) -> None:
    # A max_age longer than a day was valid before max_stale existed: it must stay valid,
    # its keys kept through failed reloads for max_age at least (never refused earlier
    # than they would be reloaded).
    url = JWKS.from_url("https://127.0.0.1:1/jwks", ssl_context=tls[1], max_age=max_age)
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [keys.jwk("rsa", "r1")]}))
    local = JWKS.from_file(path, max_age=max_age)
    assert (url.max_stale, local.max_stale) == (max_age, max_age)
    assert JWKS.from_file(path).max_stale == 86400.0  # the day, when max_age is shorter


def test_url_fetch_has_a_hard_deadline(keys, endpoint, tls) -> None:
    endpoint.body = json.dumps({"keys": [keys.jwk("rsa", "r1")]}).encode()
    endpoint.drip = 0.05  # one byte every 50 ms: each read is quick, the whole is not
    v = JWTValidator(jwks=url_jwks(endpoint, tls, timeout=0.5), issuer=ISS, audience=AUD)
    started = time.monotonic()
    with pytest.raises(TokenError):
        v(sign(keys.rsa, "RS256", "r1"))
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1/jwks", "file:///etc/passwd", "https:///jwks", "ftp://x/jwks"],
)
def test_url_must_be_https(url) -> None:
    with pytest.raises(ValueError, match="https"):
        JWKS.from_url(url)


def test_jwt_bound_to_the_certificate_through_token_check(keys, ca) -> None:
    cert = ca.issue_client_cert(common_name="alice")
    twin = ca.issue_client_cert(common_name="alice")
    verifier = Verifier(trust_store=ca.trust_store())
    alice = verifier.verify_pem(cert.chain_pem.text())
    other = verifier.verify_pem(twin.chain_pem.text())
    v = JWTValidator(jwks=JWKS.from_document(keys.document()), issuer=ISS, audience=AUD)
    check = TokenCheck(v)
    token = sign(keys.ec, "ES256", "e1", claims(cnf={"x5t#S256": alice.x5t_s256()}))
    assert check.check(alice, [f"Bearer {token}"])["sub"] == "client-1"
    with pytest.raises(TokenError) as info:
        check.check(other, [f"Bearer {token}"])
    assert info.value.code == "token_binding_mismatch"


def test_keys_older_than_max_age_are_reloaded(keys, tmp_path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [keys.jwk("rsa", "r1")]}))
    jwks = JWKS.from_file(path, min_refresh_interval=0, max_age=0)
    v = JWTValidator(jwks=jwks, issuer=ISS, audience=AUD)
    assert v(sign(keys.rsa, "RS256", "r1"))
    path.write_text(json.dumps({"keys": [keys.jwk("rsa2", "r1")]}))  # same kid, new key
    time.sleep(0.01)
    with pytest.raises(TokenError):  # the retired key is gone after the reload
        v(sign(keys.rsa, "RS256", "r1"))
    assert v(sign(keys.rsa2, "RS256", "r1"))


def test_short_rsa_keys_are_never_loaded() -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
    jwk = {**RSAAlgorithm.to_jwk(weak.public_key(), as_dict=True), "kid": "weak"}
    v = JWTValidator(jwks=JWKS.from_document({"keys": [jwk]}), issuer=ISS, audience=AUD)
    with warnings.catch_warnings():  # PyJWT warns when *signing* with a short key
        # PyJWT 2.10 has no such warning class.
        insecure = getattr(jwt.warnings, "InsecureKeyLengthWarning", None)
        if insecure is not None:
            warnings.simplefilter("ignore", insecure)
        token = sign(weak, "RS256", "weak")
    with pytest.raises(TokenError):
        v(token)


def test_url_with_credentials_is_refused() -> None:
    with pytest.raises(ValueError, match="credentials"):
        JWKS.from_url("https://user:secret@as.example/jwks")


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("https://as.example/jw ks", id="space in the path"),
        pytest.param("https://as.example/jwks\x7f", id="DEL in the path"),
        pytest.param("https://as.example/jwks?a=\x00", id="NUL in the query"),
        pytest.param("https://as .example/jwks", id="space in the host"),
        pytest.param("https://as.example:99999/jwks", id="port out of range"),
        pytest.param("https://as.example:x/jwks", id="port not a number"),
        pytest.param("https://as.example/jwks/\u043a\u043b\u044e\u0447\u0438", id="non-ASCII path"),
        pytest.param("https://as.example/jwks?k=\u00e9", id="non-ASCII query"),
        pytest.param("https://" + "\u00e9" * 64 + ".example/jwks", id="host with no IDNA form"),
        pytest.param("https://a\u2028b.example/jwks", id="host with a line separator"),
    ],
)
def test_url_that_no_fetch_could_use_is_refused_at_construction(url) -> None:
    # Accepted, it would fail every fetch: every token refused, from the first one on.
    with pytest.raises(ValueError, match="JWKS URL"):
        JWKS.from_url(url)


def test_url_with_a_non_ascii_host_name_is_fetched_by_its_idna_form() -> None:
    # The host name is sent (Host header, TLS server name) in its IDNA form, so it stays
    # usable; only the path and query must be ASCII already.
    assert JWKS.from_url("https://b\u00fccher.example/jwks/%D0%BA?k=%C3%A9")


@pytest.mark.parametrize(
    ("url", "host", "port"),
    [
        pytest.param("https://[::1]/jwks", "::1", 443, id="IPv6 loopback, no port"),
        pytest.param(
            "https://[2001:db8::1:8443]/jwks", "2001:db8::1:8443", 443, id="IPv6, no port"
        ),
        pytest.param("https://[::1]:8443/jwks", "::1", 8443, id="IPv6 with a port"),
        pytest.param("https://as.example/jwks", "as.example", 443, id="a name, no port"),
    ],
)
def test_url_fetch_connects_to_the_host_and_port_the_url_names(
    monkeypatch, url, host, port
) -> None:
    # Handed no port, http.client reads one from the host: a bare IPv6 literal's last
    # group became the port ("[::1]" went to host ":" port 1).
    import http.client

    seen: list[tuple[str, int]] = []

    def connect(self: http.client.HTTPSConnection) -> None:
        seen.append((self.host, self.port))
        raise OSError("not connecting in a test")

    jwks = JWKS.from_url(url, timeout=1)
    monkeypatch.setattr(http.client.HTTPSConnection, "connect", connect)
    assert not jwks.refresh(force=True)
    assert seen == [(host, port)]


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(
            b'{"iss":"https://as.example","aud":"https://api.example","exp":1e999}',
            id="exp infinite",
        ),
        pytest.param(
            b'{"iss":"https://as.example","aud":"https://api.example","exp":9e9,"iat":1e999}',
            id="iat infinite",
        ),
        pytest.param(
            b'{"iss":"https://as.example","aud":"https://api.example","exp":9e9,"nbf":NaN}',
            id="nbf NaN",
        ),
        pytest.param(b'{"iss":"https://as.example","aud":{"a":1},"exp":9e9}', id="aud an object"),
        pytest.param(
            b'{"iss":"https://as.example","aud":"https://api.example","exp":"soon"}',
            id="exp a string",
        ),
        pytest.param(
            b'{"iss":"https://as.example","aud":"https://api.example","exp":9e9,"nbf":true}',
            id="nbf true",
        ),
        pytest.param(
            b'{"iss":"https://as.example","aud":"https://api.example","exp":9e9,"iat":false}',
            id="iat false",
        ),
        pytest.param(
            b'{"iss":"https://as.example","aud":"https://api.example","exp":9e9,"nbf":"0"}',
            id="nbf a string",
        ),
        pytest.param(
            b'{"iss":"https://as.example","aud":"https://api.example","exp":1' + b"0" * 400 + b"}",
            id="exp an integer beyond any float",
        ),
        pytest.param(
            b'{"iss":"https://as.example","aud":"https://api.example","exp":9e9,"iat":-1'
            + b"0" * 400
            + b"}",
            id="iat a negative integer beyond any float",
        ),
        pytest.param(b'["not", "an", "object"]', id="payload a list"),
        pytest.param(b"\xff\xfe", id="payload not UTF-8"),
    ],
)
def test_odd_payloads_are_token_errors(keys, validator, payload) -> None:
    token = jwt.api_jws.encode(payload, keys.ec, algorithm="ES256", headers={"kid": "e1"})
    with pytest.raises(TokenError) as info:
        validator(token)
    assert info.value.code == "token_invalid"


@pytest.mark.slow
def test_tokens_do_not_queue_behind_a_slow_key_fetch(keys, endpoint, tls) -> None:
    # A slow jwks_uri must not hold every worker thread: only one request waits for the
    # fetch, the others are answered at once with what is known (here: nothing).
    endpoint.body = json.dumps({"keys": [keys.jwk("rsa", "r1")]}).encode()
    endpoint.drip = 0.004  # the whole document takes about 2 s
    jwks = url_jwks(endpoint, tls, timeout=10, min_refresh_interval=0)
    v = JWTValidator(jwks=jwks, issuer=ISS, audience=AUD)
    token = sign(keys.rsa, "RS256", "r1")
    first = threading.Thread(target=lambda: jwks.refresh())
    first.start()
    time.sleep(0.3)  # the fetch is under way
    waited = []
    for i in range(5):
        started = time.monotonic()
        with pytest.raises(TokenError):
            v(sign(keys.rsa, "RS256", f"other-{i}"))
        waited.append(time.monotonic() - started)
    first.join()
    assert max(waited) < 0.5, waited
    assert v(token)["sub"] == "client-1"  # the fetch finished meanwhile


def test_a_key_server_cannot_forge_log_lines(keys, tls, caplog) -> None:
    # http.client puts the raw status line it could not parse into BadStatusLine: a key
    # server (or whoever answers at its address with a valid certificate) writes the text.
    import socket

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    forged = b"garbage\x1b[2J\rmtlsauth allowed code=ok peer=10.0.0.1\n"

    def serve() -> None:
        conn, _ = listener.accept()
        with tls[0].wrap_socket(conn, server_side=True) as s:
            s.recv(65536)
            s.sendall(forged)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    jwks = JWKS.from_url(f"https://127.0.0.1:{port}/jwks", ssl_context=tls[1], timeout=5)
    v = JWTValidator(jwks=jwks, issuer=ISS, audience=AUD)
    with caplog.at_level(logging.DEBUG, logger="mtlsauth"), pytest.raises(TokenError):
        v(sign(keys.rsa, "RS256", "r1"))
    thread.join(5)
    listener.close()
    lines = [r.getMessage() for r in caplog.records if "reload failed" in r.getMessage()]
    assert len(lines) == 1
    assert "BadStatusLine" in lines[0]
    assert not any(c in lines[0] for c in "\x1b\r\n")


def test_a_flood_of_refused_tokens_writes_one_line_a_minute(keys, validator, caplog) -> None:
    """Each refused token was one INFO line: a client sending expired tokens as fast as it
    can wrote as fast. One line a minute per reason, the repeats counted."""
    expired = sign(keys.rsa, "RS256", "r1", claims(exp=int(time.time()) - 120))
    with caplog.at_level(logging.INFO, logger="mtlsauth"):
        for _ in range(300):
            with pytest.raises(TokenError):
                validator(expired)
    lines = [r.getMessage() for r in caplog.records if "JWT refused" in r.getMessage()]
    assert lines == ["mtlsauth JWT refused: ExpiredSignatureError"]


def test_a_relative_jwks_path_keeps_naming_the_same_file_after_a_chdir(
    keys, tmp_path, monkeypatch
) -> None:
    """The file was opened by the path as given at every refresh: after a ``chdir`` a relative
    path named another directory's ``jwks.json``, whose keys then validated tokens."""
    (tmp_path / "app").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "app" / "jwks.json").write_text(json.dumps({"keys": [keys.jwk("rsa", "r1")]}))
    planted = {"keys": [keys.jwk("ec", "e9")]}
    (tmp_path / "elsewhere" / "jwks.json").write_text(json.dumps(planted))
    monkeypatch.chdir(tmp_path / "app")
    jwks = JWKS.from_file("jwks.json", min_refresh_interval=0, max_age=0)
    monkeypatch.chdir(tmp_path / "elsewhere")
    v = JWTValidator(jwks=jwks, issuer=ISS, audience=AUD)
    with pytest.raises(TokenError):
        v(sign(keys.ec, "ES256", "e9"))
    assert v(sign(keys.rsa, "RS256", "r1"))
