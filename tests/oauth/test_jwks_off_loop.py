"""A JWKS file is never read on an event loop.

Under ASGI and aiohttp a token check runs on the event loop. A key set read from a file
reloads when it is due (``max_age``) or when a token names an unknown ``kid``: that read
(a slow disk, a network file system) must happen on a worker thread, as the trust files'
reads do, never on the loop, whose every request it would hold up.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import threading
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from mtlsauth import TokenCheck, TokenError
from mtlsauth import _jwks as jwks_module
from mtlsauth.oauth_jwt import JWKS, JWTValidator

ISS = "https://as.example"
AUD = "https://api.example"


def _jwk(key: ec.EllipticCurvePrivateKey, kid: str) -> dict[str, Any]:
    return {**ECAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid}


def _token(key: ec.EllipticCurvePrivateKey, kid: str) -> str:
    now = int(time.time())
    claims = {"iss": ISS, "aud": AUD, "sub": "c", "exp": now + 300, "iat": now}
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": kid})


class _Reads:
    """Records, for each read of the JWKS file, whether an event loop ran on that thread."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.on_loop: list[bool] = []

    def open(self, file: Any, *args: Any, **kwargs: Any) -> Any:
        if str(file) == self.path:
            try:
                asyncio.get_running_loop()
                self.on_loop.append(True)
            except RuntimeError:
                self.on_loop.append(False)
        return builtins.open(file, *args, **kwargs)


@pytest.mark.parametrize("due", ["max_age", "unknown_kid"])
def test_a_due_reload_reads_the_file_on_a_worker_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, due: str
) -> None:
    old, new = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [_jwk(old, "k1")]}))
    if due == "max_age":
        jwks = JWKS.from_file(path, min_refresh_interval=0, max_age=0)
    else:
        jwks = JWKS.from_file(path, min_refresh_interval=0, max_age=3600)
    check = TokenCheck(JWTValidator(jwks=jwks, issuer=ISS, audience=AUD), binding="if_present")
    assert check.blocking is False  # a file is no network: checked on the loop when it can
    reads = _Reads(path)
    monkeypatch.setattr(jwks_module, "open", reads.open, raising=False)
    path.write_text(json.dumps({"keys": [_jwk(old, "k1"), _jwk(new, "k2")]}))
    time.sleep(0.01)

    async def run() -> list[str]:
        loop_thread = threading.get_ident()
        subjects = []
        for key, kid in ((old, "k1"), (new, "k2"), (old, "k1")):
            claims = await check.acheck(None, [f"Bearer {_token(key, kid)}"])
            assert claims is not None
            subjects.append(f"{kid}:{claims['sub']}")
        assert threading.get_ident() == loop_thread
        return subjects

    assert asyncio.run(run()) == ["k1:c", "k2:c", "k1:c"]
    assert reads.on_loop  # the file was read again (the new key was found)...
    assert not any(reads.on_loop)  # ...and never on the loop


def _empty_key_file(tmp_path: Path) -> tuple[ec.EllipticCurvePrivateKey, Path, JWKS, TokenCheck]:
    """A signing key, a key file that does not list it yet (reread on every look-up), and
    a token check that reads its keys from that file."""
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": []}))
    jwks = JWKS.from_file(path, min_refresh_interval=0, max_age=0)
    check = TokenCheck(JWTValidator(jwks=jwks, issuer=ISS, audience=AUD), binding="if_present")
    return key, path, jwks, check


def test_a_synchronous_check_still_reads_the_file_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, path, _jwks, check = _empty_key_file(tmp_path)
    path.write_text(json.dumps({"keys": [_jwk(key, "k1")]}))
    claims = check.check(None, [f"Bearer {_token(key, 'k1')}"])
    assert claims is not None
    path.write_text(json.dumps({"keys": []}))
    with pytest.raises(TokenError):
        check.check(None, [f"Bearer {_token(key, 'k1')}"])


def test_a_validator_that_returns_nothing_is_called_once_on_the_loop() -> None:
    """On the loop, a validation that would block moves to a worker thread; one that
    returned ``None`` (no claims: refused) is not asked a second time there: a validator
    with side effects (an introspection call, a replay cache) is called once per token."""
    calls: list[str] = []

    def validate(token: str) -> Any:
        calls.append(token)
        return None

    check = TokenCheck(validate, binding="if_present")
    with pytest.raises(TokenError) as refused:
        asyncio.run(check.acheck(None, ["Bearer abc"]))
    assert refused.value.code == "token_invalid"
    assert calls == ["abc"]


def test_would_block_never_escapes_a_synchronous_check(tmp_path: Path) -> None:
    """``WouldBlock`` is how a JWKS due for a reload tells ``TokenCheck.acheck`` to move
    to a worker thread. A synchronous check, or a direct ``keys_for`` (user code, the
    DRF authentication class), reads the file in place; and a synchronous check run in a
    context that still says "no waiting" (a thread started with the loop's context)
    refuses the token as ``TokenError``, never lets ``WouldBlock`` out."""
    from mtlsauth._reload import NO_WAIT

    key, path, jwks, check = _empty_key_file(tmp_path)
    path.write_text(json.dumps({"keys": [_jwk(key, "k1")]}))
    assert len(jwks.keys_for("k1", "ES256")) == 1
    path.write_text(json.dumps({"keys": []}))
    time.sleep(0.01)
    reset = NO_WAIT.set(True)
    try:
        with pytest.raises(TokenError):
            check.check(None, [f"Bearer {_token(key, 'k1')}"])
    finally:
        NO_WAIT.reset(reset)
