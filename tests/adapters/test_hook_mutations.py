"""A hook that changes what it is handed changes nothing that is sent.

``on_decision`` and ``on_error`` receive the refusal (an ``MTLSAuthError``) and the
``Decision``. A hook that sets ``error.status = 200``, rewrites ``code`` or ``detail``, adds a
``challenge`` or swaps the error's class must neither alter the answer the client gets nor
let the request through: the attempt fails inside the hook, which is logged and ignored.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import pytest
from test_refusal_oracle import _PKI, DRIVERS, HEADER, PEER, Answer

from mtlsauth import CertificateInvalid, IdentityMissing, MTLSAuthError


def _vandal(error: MTLSAuthError) -> None:
    """Every change a hook could try on the error; each attempt is made on its own."""
    attempts = [
        lambda: setattr(error, "status", 200),
        lambda: setattr(error, "code", "ok"),
        lambda: setattr(error, "detail", "welcome, admin"),
        lambda: setattr(error, "title", "OK"),
        lambda: setattr(error, "challenge", "Basic realm=x"),
        lambda: setattr(error, "__class__", IdentityMissing),
        lambda: delattr(error, "code"),
        lambda: delattr(error, "detail"),
    ]
    failed = 0
    for attempt in attempts:
        try:
            attempt()
        except AttributeError:
            failed += 1
    if failed:
        raise AttributeError(f"{failed} changes refused")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> _PKI:
    return _PKI(tmp_path_factory.mktemp("hooks"))


def _conf() -> dict[str, Any]:
    return {
        "mode": "mandatory",
        "trust": {"files": ["ca.pem"]},
        "forwarded": {"preset": "nginx", "header": HEADER, "trusted_proxies": [PEER]},
    }


def _ask(driver: str, base: Path, headers: dict[str, str], **hooks: Any) -> Answer:
    conf = _conf()
    if driver == "django" and hooks:
        import test_django
        from django.test import override_settings

        test_django.configure_django()
        with override_settings(MTLSAUTH_ON_DECISION=hooks["on_decision"]):
            return DRIVERS[driver](conf, base, headers)
    if hooks:
        import mtlsauth._config as config_module

        real = config_module.Config.middleware_kwargs

        def with_hooks(self: Any) -> dict[str, Any]:
            return {**real(self), **hooks}

        config_module.Config.middleware_kwargs = with_hooks  # type: ignore[method-assign]
        try:
            return DRIVERS[driver](conf, base, headers)
        finally:
            config_module.Config.middleware_kwargs = real  # type: ignore[method-assign]
    return DRIVERS[driver](conf, base, headers)


@pytest.mark.parametrize("driver", list(DRIVERS))
def test_on_decision_cannot_change_a_refusal(
    pki: _PKI, driver: str, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []

    def on_decision(decision: Any) -> None:
        if decision.error is not None:
            seen.append(decision.error.code)
            _vandal(decision.error)

    plain = _ask(driver, pki.base, {HEADER: pki.unknown})
    with caplog.at_level(logging.ERROR, logger="mtlsauth"):
        hooked = _ask(driver, pki.base, {HEADER: pki.unknown}, on_decision=on_decision)
    assert seen == ["untrusted_issuer"]
    assert hooked == plain
    assert hooked[0] == 401
    assert any("on_decision" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("driver", [d for d in DRIVERS if d != "django"])  # Django: none
def test_on_error_cannot_change_the_default_answer(pki: _PKI, driver: str) -> None:
    def on_error(error: MTLSAuthError, request: object) -> None:
        _vandal(error)

    plain = _ask(driver, pki.base, {HEADER: pki.unknown})
    hooked = _ask(driver, pki.base, {HEADER: pki.unknown}, on_error=on_error)
    assert hooked == plain


def test_an_error_is_read_only_once_made_and_still_pickles() -> None:
    import copy
    import pickle

    error = CertificateInvalid("bad", code="untrusted_issuer")
    with pytest.raises(AttributeError):
        error.status = 200  # type: ignore[misc]
    with pytest.raises(AttributeError):
        error.code = "ok"
    for clone in (copy.copy(error), copy.deepcopy(error), pickle.loads(pickle.dumps(error))):  # noqa: S301
        assert (type(clone), clone.code, clone.detail, clone.status) == (
            CertificateInvalid,
            "untrusted_issuer",
            "bad",
            401,
        )
        with pytest.raises(AttributeError):
            clone.detail = "x"
    # What Python itself records on an exception still works.
    with pytest.raises(CertificateInvalid) as raised:
        raise error from ValueError("cause")
    assert isinstance(raised.value.__cause__, ValueError)
    raised.value.__traceback__ = None  # what a re-raise records
    # Notes (Python 3.11+), as pytest and exception groups add them; the attribute Python
    # keeps them in is set on 3.10 too.
    raised.value.__notes__ = ["a note"]
    assert raised.value.__notes__ == ["a note"]
    if sys.version_info >= (3, 11):
        raised.value.add_note("another")
        assert raised.value.__notes__ == ["a note", "another"]


def _tamper_error(error: MTLSAuthError, status: object = 200) -> None:
    """A write past ``__setattr__`` (to the instance dictionary; ``object.__setattr__``
    writes there too): nothing in Python stops code in the process from doing it."""
    vars(error)["status"] = status


def _tamper_decision(decision: Any) -> None:
    """A frozen ``Decision`` changed with ``object.__setattr__``: the refusal removed and an
    identity put in its place."""
    object.__setattr__(decision, "error", None)
    object.__setattr__(decision, "identity", object())


@pytest.mark.parametrize("driver", list(DRIVERS))
def test_a_hook_that_writes_past_the_read_only_fields_changes_nothing_sent(
    pki: _PKI, driver: str
) -> None:
    """``on_decision`` is handed its own copy of the decision, and a refusal is answered
    with a refusal's status whatever is written to its error: a hook that changes the
    frozen decision with ``object.__setattr__`` (no refusal, an identity), or writes a
    success, a redirect or no number at all to the error's ``__dict__``, neither admits
    the request nor changes its answer."""
    seen: list[str] = []

    def on_decision(decision: Any) -> None:
        if decision.error is not None:
            seen.append(decision.error.code)
            _tamper_error(decision.error, written[0])
            _tamper_decision(decision)

    plain = _ask(driver, pki.base, {HEADER: pki.unknown})
    written: list[object] = [None]
    for status in (200, 302, "200", None):
        written[0] = status
        seen.clear()
        hooked = _ask(driver, pki.base, {HEADER: pki.unknown}, on_decision=on_decision)
        assert seen == ["untrusted_issuer"]
        assert hooked == plain
        assert hooked[0] == 401


@pytest.mark.parametrize("driver", [d for d in DRIVERS if d != "django"])  # Django: none
def test_on_error_writing_past_the_read_only_fields_changes_nothing_sent(
    pki: _PKI, driver: str
) -> None:
    def on_error(error: MTLSAuthError, request: object) -> None:
        # It is handed a copy: even code and detail written past the guard stay its own.
        _tamper_error(error)
        vars(error)["code"] = "ok"
        vars(error)["detail"] = "welcome, admin"

    plain = _ask(driver, pki.base, {HEADER: pki.unknown})
    hooked = _ask(driver, pki.base, {HEADER: pki.unknown}, on_error=on_error)
    assert hooked == plain


def test_the_copy_a_hook_gets_is_the_same_refusal() -> None:
    """``copy.copy`` of an error (what hooks are handed) keeps every field, a subclass's
    own ones included (a bearer refusal's scope, hence its challenge), the message and
    the cause, and is read-only as well; writing to it leaves the original alone."""
    import copy

    from mtlsauth._oauth import TokenError

    try:
        raise TokenError("no", code="insufficient_scope", scope="accounts") from KeyError("k")
    except TokenError as exc:
        error = exc
    clone = copy.copy(error)
    assert clone is not error
    assert type(clone) is TokenError
    assert (clone.code, clone.status, clone.detail, clone.challenge, str(clone)) == (
        error.code,
        403,
        "no",
        error.challenge,
        "no",
    )
    assert 'scope="accounts"' in clone.challenge
    assert isinstance(clone.__cause__, KeyError)
    assert clone.__traceback__ is error.__traceback__
    with pytest.raises(AttributeError):
        clone.status = 200  # type: ignore[misc]
    vars(clone)["status"] = 200
    assert error.status == 403


@pytest.mark.parametrize("driver", [d for d in DRIVERS if d != "django"])  # Django: no on_error
@pytest.mark.parametrize("mode", ["mandatory", "optional"])
def test_an_on_error_answer_built_from_the_error_carries_no_hint(
    pki: _PKI, driver: str, mode: str
) -> None:
    """An ``on_error`` hook that answers with the error's own text (a common handler)
    tells the client no more than the default answer: in modes ``"mandatory"`` and
    ``"optional"``, a peer taken from X-Forwarded-For (refused: untrusted forwarder) and a
    certificate header ignored from an untrusted peer say nothing of it in the error;
    what is misconfigured is the ``Decision.hint`` and the log line's."""
    from test_refusal_oracle import _conf as oracle_conf

    import mtlsauth._config as config_module

    def on_error(error: MTLSAuthError, request: object) -> Any:
        text = f"{error.code}: {error.detail} {vars(error)!r}"
        if driver == "aiohttp":
            from aiohttp import web

            return web.Response(status=error.status, text=text)
        if driver == "wsgi":

            def app(environ: Any, start_response: Any) -> list[bytes]:
                start_response(f"{error.status} X", [("content-type", "text/plain")])
                return [text.encode()]

            return app
        from starlette.responses import PlainTextResponse

        return PlainTextResponse(text, status_code=error.status)

    hints: list[str | None] = []
    real = config_module.Config.middleware_kwargs

    def with_hooks(self: Any) -> dict[str, Any]:
        return {**real(self), "on_error": on_error, "on_decision": lambda d: hints.append(d.hint)}

    config_module.Config.middleware_kwargs = with_hooks  # type: ignore[method-assign]
    try:
        for on_untrusted, headers in (
            ("reject", {HEADER: pki.good, "x-forwarded-for": f"198.51.100.7, {PEER}"}),
            ("reject", {HEADER: pki.good}),
            ("ignore", {HEADER: pki.good, "x-forwarded-for": f"198.51.100.7, {PEER}"}),
            ("ignore", {HEADER: pki.good}),
        ):
            conf = {**oracle_conf(["10.0.0.1"], on_untrusted), "mode": mode}
            status, _headers, body = DRIVERS[driver](conf, pki.base, headers)
            text = body.decode()
            for word in ("X-Forwarded-For", "trusted_proxies", "no-proxy-headers", "ignored"):
                assert word not in text, (on_untrusted, text)
            if on_untrusted == "reject":
                assert (status, text.split(":")[0]) == (401, "untrusted_forwarder")
            elif mode == "optional":
                assert (status, body) == (200, b"ok")  # no certificate: through, anonymous
            else:
                assert (status, text.split(":")[0]) == (401, "certificate_missing")
    finally:
        config_module.Config.middleware_kwargs = real  # type: ignore[method-assign]
    assert any(h and "X-Forwarded-For" in h for h in hints)  # the operator is told


@pytest.mark.parametrize("driver", list(DRIVERS))
def test_garbage_written_past_the_read_only_fields_never_breaks_the_answer(
    pki: _PKI, driver: str
) -> None:
    """A hook that writes values of the wrong type into the error's ``__dict__`` (no code,
    a number for a detail, an object for a title, a code no challenge knows) still gets
    the request a problem+json refusal, never a 500 or a traceback: each field of the
    answer is taken from the error only when it is one the error's class could have."""
    import json

    def on_decision(decision: Any) -> None:
        error = decision.error
        if error is not None:
            vars(error).update(code=None, detail=5, title=object(), status="401")

    hooked = _ask(driver, pki.base, {HEADER: pki.unknown}, on_decision=on_decision)
    status, headers, body = hooked
    assert status == 401
    assert dict(headers)["content-type"] == "application/problem+json"
    doc = json.loads(body)
    assert (doc["status"], doc["code"], doc["title"]) == (
        401,
        "certificate_malformed",
        "Client certificate invalid",
    )
    assert doc["detail"] == "certificate malformed"
