"""What an operator reads about a refusal: the log line and the detail.

The log line must say enough to act on (code, detail, peer, path, subject, issuer,
fingerprint, a hint), must never carry a certificate or an untrusted header value, must not
be forgeable through certificate fields or paths, and must not grow without bound.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import logging
import ssl
from urllib.parse import quote

import pytest

from _x509_forge import der, resign
from mtlsauth import ForwardedCert, Presented, Verifier
from mtlsauth._guard import Guard
from mtlsauth._logfields import RefusalLogLimiter, escape_log_value
from mtlsauth.testing import CA

PROXY = "10.0.0.1"


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA(organization="Example Corp", common_name="Example Root")


def nginx_value(pem: bytes) -> str:
    return quote(pem.decode(), safe="")


def refusals(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith("mtlsauth refused")]


def decide(guard: Guard, presented: Presented):
    return guard.decide(presented, "mandatory", None)


# -- content --------------------------------------------------------------------------------
def test_refusal_is_a_warning_with_everything_an_operator_needs(
    ca: CA, caplog: pytest.LogCaptureFixture
) -> None:
    expired = ca.issue_client_cert(
        common_name="old-bob",
        organization="Example Corp",
        not_before=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=30),
        not_after=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1),
    )
    fwd = ForwardedCert.preset("nginx", trusted_proxies=[PROXY])
    guard = Guard(verifier=Verifier(trust_store=ca.trust_store(), forwarded=fwd))
    value = nginx_value(expired.cert_pem.bytes())
    with caplog.at_level(logging.WARNING, logger="mtlsauth"):
        decision = decide(
            guard,
            Presented(PROXY, (("x-ssl-client-cert", value),), path="/pay", method="POST"),
        )
    assert decision.code == "certificate_expired"
    assert (
        decision.fingerprint == hashlib.sha256(expired.der).hexdigest()
    )  # used to be None for headers
    [record] = refusals(caplog)
    assert record.levelno == logging.WARNING
    line = record.getMessage()
    for part in (
        "code=certificate_expired",
        "status=401",
        f"peer={PROXY}",
        "method=POST",
        "path=/pay",
        'subject="CN=old-bob,O=Example Corp"',  # quoted: it holds a blank and "="
        'issuer="CN=Example Root,O=Example Corp"',
        f"fingerprint={hashlib.sha256(expired.der).hexdigest()}",
        'detail="certificate expired"',
    ):
        assert part in line, (part, line)
    fields = record.mtlsauth  # type: ignore[attr-defined]
    assert fields["code"] == "certificate_expired"
    assert fields["subject"] == "CN=old-bob,O=Example Corp"


def test_a_certificate_whose_names_cannot_be_read_is_still_logged_by_its_fingerprint(
    ca: CA, caplog: pytest.LogCaptureFixture
) -> None:
    """cryptography raises TypeError (not ValueError) for a name value spelled as a BIT
    STRING under another attribute type: the line keeps the fingerprint, names are "-"."""
    leaf = ca.issue_client_cert(common_name="client", organization="Example Corp")
    needle = b"\x06\x03\x55\x04\x03\x0c\x06client"  # CN, UTF8String "client"
    assert needle in leaf.der
    forged = leaf.der.replace(needle, b"\x06\x03\x55\x04\x03\x03\x06\x00lient")
    pem = (
        b"-----BEGIN CERTIFICATE-----\n"
        + base64.encodebytes(forged)
        + b"-----END CERTIFICATE-----\n"
    )
    fwd = ForwardedCert.preset("nginx", trusted_proxies=[PROXY])
    guard = Guard(verifier=Verifier(trust_store=ca.trust_store(), forwarded=fwd))
    with caplog.at_level(logging.WARNING, logger="mtlsauth"):
        decision = decide(guard, Presented(PROXY, (("x-ssl-client-cert", nginx_value(pem)),)))
    assert decision.code == "untrusted_issuer"
    [record] = refusals(caplog)
    line = record.getMessage()
    assert f"fingerprint={hashlib.sha256(forged).hexdigest()}" in line, line
    assert "subject=- issuer=-" in line, line


def test_never_a_certificate_nor_an_untrusted_header_value(
    ca: CA, caplog: pytest.LogCaptureFixture
) -> None:
    cert = ca.issue_client_cert(common_name="alice")
    fwd = ForwardedCert.preset("nginx", trusted_proxies=[PROXY])
    guard = Guard(verifier=Verifier(trust_store=ca.trust_store(), forwarded=fwd))
    forged = nginx_value(cert.cert_pem.bytes()) + "MARKER-FROM-ATTACKER"
    with caplog.at_level(logging.DEBUG, logger="mtlsauth"):
        decision = decide(guard, Presented("203.0.113.9", (("x-ssl-client-cert", forged),)))
    assert decision.code == "untrusted_forwarder"
    assert decision.fingerprint is None  # an untrusted header is never decoded
    text = "\n".join(r.getMessage() + repr(getattr(r, "mtlsauth", "")) for r in caplog.records)
    assert "code=untrusted_forwarder" in text
    assert "MARKER-FROM-ATTACKER" not in text
    assert "BEGIN" not in text
    assert "alice" not in text  # nothing decoded from the untrusted header
    body = base64.b64encode(cert.der).decode()
    assert body[:40] not in text

    # From the trusted proxy the certificate is decoded, but only its names reach the log.
    caplog.clear()
    other = CA(organization="Other").issue_client_cert(common_name="alice")
    with caplog.at_level(logging.DEBUG, logger="mtlsauth"):
        decide(
            guard, Presented(PROXY, (("x-ssl-client-cert", nginx_value(other.cert_pem.bytes())),))
        )
    text = "\n".join(r.getMessage() + repr(getattr(r, "mtlsauth", "")) for r in caplog.records)
    assert 'subject="CN=alice"' in text
    assert "BEGIN" not in text
    assert base64.b64encode(other.der).decode()[:40] not in text
    assert nginx_value(other.cert_pem.bytes())[:60] not in text


@pytest.mark.parametrize(
    ("evil", "escaped"),
    [
        ("bob\nmtlsauth allowed code=ok", "bob\\x0amtlsauth allowed code=ok"),
        ("bob\r\n", "bob\\x0d\\x0a"),
        ("\x1b[2J\x1b[31mred", "\\x1b[2J\\x1b[31mred"),
        ("admin\u202egnp.exe", "admin\\u202egnp.exe"),
        ("a\u2028b\u2029c\u2066d\u200be", "a\\u2028b\\u2029c\\u2066d\\u200be"),
        ("tab\there\x00\x7f\x85", "tab\\x09here\\x00\\x7f\\x85"),
        ("back\\x0aslash", "back\\\\x0aslash"),  # a literal backslash cannot fake an escape
    ],
)
def test_certificate_fields_and_paths_cannot_forge_or_recolour_log_lines(
    ca: CA, caplog: pytest.LogCaptureFixture, evil: str, escaped: str
) -> None:
    other = CA(organization="Other", common_name="Other Root")
    cert = other.issue_client_cert(common_name=evil)
    guard = Guard(verifier=Verifier(trust_store=ca.trust_store()))
    with caplog.at_level(logging.WARNING, logger="mtlsauth"):
        decide(guard, Presented("127.0.0.1", (), (cert.cert_pem.text(),), path="/x" + evil))
    [record] = refusals(caplog)
    line = record.getMessage()
    assert escaped in line
    # quoted (logfmt) when the value holds a blank or "=": the first case does
    path = f'path="/x{escaped}"' if " " in escaped else f"path=/x{escaped}"
    assert path in line
    for bad in (
        "\n",
        "\r",
        "\x1b",
        "\u202e",
        "\u2028",
        "\u2029",
        "\u2066",
        "\u200b",
        "\x00",
        "\x85",
    ):
        assert bad not in line
        # the structured fields too: a formatter may print them as they are
        assert bad not in record.mtlsauth["subject"]  # type: ignore[attr-defined]
        assert bad not in record.mtlsauth["path"]  # type: ignore[attr-defined]


def test_escape_bounds_the_length() -> None:
    assert len(escape_log_value("/" + "a" * 10_000)) <= 260
    assert escape_log_value("plain ascii") == "plain ascii"
    assert escape_log_value("é ü 日本") == "é ü 日本"  # printable text stays readable


# -- rate limit -----------------------------------------------------------------------------
def test_a_flood_of_one_certificate_writes_one_line_then_a_count(
    ca: CA, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mtlsauth._logfields as lf

    clock = [1000.0]
    monkeypatch.setattr(lf.time, "monotonic", lambda: clock[0])
    cert = CA(organization="Other").issue_client_cert(common_name="mallory")
    guard = Guard(verifier=Verifier(trust_store=ca.trust_store()))
    presented = Presented("127.0.0.1", (), (cert.cert_pem.text(),))
    with caplog.at_level(logging.WARNING, logger="mtlsauth"):
        for _ in range(5000):
            decide(guard, presented)
        assert len(refusals(caplog)) == 1
        clock[0] += 61
        decide(guard, presented)
    lines = refusals(caplog)
    assert len(lines) == 2
    assert "(and 4999 more like it since the last line)" in lines[1].getMessage()


def test_a_flood_of_distinct_certificates_meets_a_global_budget(
    ca: CA, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mtlsauth._logfields as lf

    clock = [5000.0]
    monkeypatch.setattr(lf.time, "monotonic", lambda: clock[0])
    guard = Guard(verifier=Verifier(trust_store=ca.trust_store()))
    with caplog.at_level(logging.WARNING, logger="mtlsauth"):
        for i in range(300):
            # garbage with a distinct fingerprint each time
            decide(guard, Presented("127.0.0.1", (), (b"\x30\x03\x02\x01" + bytes([i % 256]),)))
        assert len(refusals(caplog)) <= 100
        clock[0] += 61
        decide(guard, Presented("127.0.0.1", (), (b"\x30\x03\x02\x01\xff\xfe",)))
    messages = [r.getMessage() for r in caplog.records]
    assert any("refusal log lines were dropped" in m for m in messages)


def test_limiter_forgets_keys_but_keeps_the_budget() -> None:
    limiter = RefusalLogLimiter(interval=60, budget=3, max_keys=2)
    admitted = [limiter.admit("c", str(i))[0] for i in range(10)]
    assert admitted.count(True) == 3


# -- hints ----------------------------------------------------------------------------------
def test_missing_intermediate_is_named_in_the_log_not_the_response(
    caplog: pytest.LogCaptureFixture,
) -> None:
    root = CA(organization="Example Corp", common_name="Example Root")
    inter = root.intermediate(common_name="Example Issuing CA")
    leaf = inter.issue_client_cert(common_name="alice")
    guard = Guard(verifier=Verifier(trust_store=root.trust_store()))
    with caplog.at_level(logging.WARNING, logger="mtlsauth"):
        decision = decide(guard, Presented("127.0.0.1", (), (leaf.cert_pem.text(),)))
    assert decision.code == "untrusted_issuer"
    assert decision.error is not None
    assert decision.error.detail == "no valid path to a trusted CA"
    [record] = refusals(caplog)
    line = record.getMessage()
    assert 'hint="the chain stops at CN=Example Issuing CA' in line
    assert "configure intermediates=" in line
    # with the intermediate configured, it passes
    ok = Guard(
        verifier=Verifier(trust_store=root.trust_store(), intermediates=[inter.cert_pem.bytes()])
    )
    assert decide(ok, Presented("127.0.0.1", (), (leaf.cert_pem.text(),))).allowed


def test_a_look_alike_ca_is_said_in_the_log_line_only(caplog: pytest.LogCaptureFixture) -> None:
    # The client gets the answer any unknown CA gets: telling it that a CA of the name it
    # guessed is trusted would let it probe the trust store's names.
    real = CA(organization="Example Corp", common_name="Example Root")
    twin = CA(organization="Example Corp", common_name="Example Root")  # same name, new key
    leaf = twin.issue_client_cert(common_name="alice")
    guard = Guard(verifier=Verifier(trust_store=real.trust_store()))
    with caplog.at_level(logging.WARNING, logger="mtlsauth"):
        decision = decide(guard, Presented("127.0.0.1", (), (leaf.cert_pem.text(),)))
    assert decision.error is not None
    assert decision.code == "untrusted_issuer"
    assert decision.error.detail == "no valid path to a trusted CA"
    line = refusals(caplog)[0].getMessage()
    assert "a CA named CN=Example Root,O=Example Corp is in the trust store" in line
    assert "does not verify against it" in line


def test_uvicorn_proxy_headers_rewrite_is_named(ca: CA, caplog: pytest.LogCaptureFixture) -> None:
    cert = ca.issue_client_cert(common_name="alice")
    fwd = ForwardedCert.preset("nginx", trusted_proxies=["127.0.0.1"])
    guard = Guard(verifier=Verifier(trust_store=ca.trust_store(), forwarded=fwd))
    # what uvicorn hands the app behind nginx's `proxy_add_x_forwarded_for`: the client's
    # address from X-Forwarded-For in place of nginx's own
    headers = (
        ("x-ssl-client-cert", nginx_value(cert.cert_pem.bytes())),
        ("x-forwarded-for", "198.51.100.7"),
    )
    with caplog.at_level(logging.WARNING, logger="mtlsauth"):
        decision = decide(guard, Presented("198.51.100.7", headers))
    assert decision.code == "untrusted_forwarder"
    assert decision.error is not None
    assert decision.hint is not None
    assert "last hop of X-Forwarded-For" in decision.hint
    assert "--no-proxy-headers" in decision.hint
    assert "--no-proxy-headers" in refusals(caplog)[0].getMessage()
    # the same rewrite by a middleware placed outside mtlsauth's (uvicorn's
    # ProxyHeadersMiddleware added after MTLSMiddleware) is named too
    assert "proxy-headers middleware wraps the mtlsauth middleware" in decision.hint
    # the client is not told (it would learn that X-Forwarded-For is believed)
    assert "X-Forwarded-For" not in decision.error.detail
    # a genuinely untrusted peer (no such X-Forwarded-For) has no hint
    plain = decide(guard, Presented("198.51.100.8", headers))
    assert plain.error is not None
    assert plain.hint is None
    assert plain.error.detail == decision.error.detail


def test_ignored_header_from_a_rewritten_peer_is_named(ca: CA) -> None:
    cert = ca.issue_client_cert(common_name="alice")
    fwd = ForwardedCert.preset("nginx", trusted_proxies=["127.0.0.1"], on_untrusted="ignore")
    guard = Guard(verifier=Verifier(trust_store=ca.trust_store(), forwarded=fwd))
    headers = (
        ("x-ssl-client-cert", nginx_value(cert.cert_pem.bytes())),
        ("x-forwarded-for", "198.51.100.7"),
    )
    decision = decide(guard, Presented("198.51.100.7", headers))
    assert decision.code == "certificate_missing"
    assert decision.error is not None
    assert decision.hint is not None
    assert "'X-SSL-Client-Cert' header was ignored" in decision.hint
    assert "--no-proxy-headers" in decision.hint
    assert decision.error.detail == "no client certificate was presented"


def test_certificate_header_that_nothing_reads_is_named(ca: CA) -> None:
    cert = ca.issue_client_cert(common_name="alice")
    value = nginx_value(cert.cert_pem.bytes())
    no_fwd = Guard(verifier=Verifier(trust_store=ca.trust_store()))
    decision = decide(no_fwd, Presented("127.0.0.1", (("x-ssl-client-cert", value),)))
    assert decision.error is not None
    assert decision.code == "certificate_missing"
    assert decision.hint is not None
    assert "'x-ssl-client-cert' header, but no forwarded= is configured" in decision.hint
    assert value[:30] not in decision.hint
    assert decision.error.detail == "no client certificate was presented"

    caddy = ForwardedCert.preset("caddy", trusted_proxies=["127.0.0.1"])
    wrong = Guard(verifier=Verifier(trust_store=ca.trust_store(), forwarded=caddy))
    decision = decide(wrong, Presented("127.0.0.1", (("x-ssl-client-cert", value),)))
    assert decision.error is not None
    assert decision.hint is not None
    assert "but forwarded= reads 'X-Client-Cert'" in decision.hint
    assert "X-Client-Cert" not in decision.error.detail
    # the adapters read these names so the core can say so
    assert "x-ssl-client-cert" in wrong.read_names
    assert "x-forwarded-for" in wrong.read_names
    assert "x-forwarded-for" not in wrong.strip_names


def test_no_header_no_tls_keeps_the_plain_detail(ca: CA) -> None:
    guard = Guard(verifier=Verifier(trust_store=ca.trust_store()))
    decision = decide(guard, Presented("127.0.0.1", (("x-forwarded-for", "1.2.3.4"),)))
    assert decision.error is not None
    assert decision.error.detail == "no client certificate was presented"


# -- fields that pretend to be other fields -------------------------------------------------
def _logfmt(line: str) -> list[tuple[str, str]]:
    """The key=value pairs of a logfmt line, as a log shipper reads them."""
    import shlex

    pairs = []
    for token in shlex.split(line.removeprefix("mtlsauth refused ")):
        key, sep, value = token.partition("=")
        if sep:
            pairs.append((key, value))
    return pairs


def test_names_and_paths_cannot_add_fields_to_the_line(caplog: pytest.LogCaptureFixture) -> None:
    """A subject, an issuer or a path with blanks and ``=`` would otherwise read as more
    ``key=value`` pairs (a second ``fingerprint=``, a ``code=ok`` after the real one): values
    with a blank, ``=`` or ``"`` are quoted, so each key is there once, with its own value."""
    trusted = CA(organization="Example Corp", common_name="Example Root")
    rogue = CA(organization="x", common_name='Rogue code=ok fingerprint=1111 status=200 "x')
    cert = rogue.issue_client_cert(common_name="x fingerprint=0000 detail=ok subject=CN=admin")
    guard = Guard(verifier=Verifier(trust_store=trusted.trust_store()))
    with caplog.at_level(logging.WARNING, logger="mtlsauth"):
        decide(
            guard,
            Presented(
                "127.0.0.1",
                (),
                (cert.cert_pem.text(),),
                path="/a code=ok status=200 fingerprint=2222",
            ),
        )
    [record] = refusals(caplog)
    pairs = _logfmt(record.getMessage())
    keys = [k for k, _v in pairs]
    assert len(keys) == len(set(keys)), keys
    fields = dict(pairs)
    assert fields["code"] == "untrusted_issuer"
    assert fields["status"] == "401"
    assert fields["fingerprint"] == hashlib.sha256(cert.der).hexdigest()
    assert fields["path"] == "/a code=ok status=200 fingerprint=2222"
    assert fields["subject"].startswith("CN=x fingerprint=0000")


def test_limiter_keys_stay_small_whatever_the_peer(monkeypatch: pytest.MonkeyPatch) -> None:
    """The peer is part of the key, and behind a server that takes it from X-Forwarded-For
    it is the client's text: a key keeps at most 64 characters of it, so 10,000 remembered
    keys of 16 KB peers do not hold 160 MB."""
    import tracemalloc

    import mtlsauth._logfields as lf

    clock = [0.0]
    monkeypatch.setattr(lf.time, "monotonic", lambda: clock[0])
    limiter = RefusalLogLimiter(interval=60, budget=100, max_keys=2_000)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for window in range(30):
            clock[0] = window * 61.0
            for i in range(100):
                limiter.admit("certificate_missing", None, f"{window}-{i}-" + "a" * 16_000)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 4_000_000, grown


def test_a_flood_of_refusals_reads_the_names_only_for_the_lines_written(
    ca: CA, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Subject, issuer and the missing-intermediate hint are for the log line only: a
    refusal the limiter does not write costs no certificate parsing for them (measured:
    about 46 of the 56 us a repeated untrusted_issuer refusal took)."""
    import mtlsauth._refusal as refusal_module

    parsed: list[bytes] = []
    real = refusal_module.x509.load_der_x509_certificate

    def counting(data: bytes, *args: object) -> object:
        parsed.append(data)
        return real(data, *args)

    hints: list[object] = []
    real_hint = Verifier._untrusted_issuer_hint

    def counting_hint(self: Verifier, ders: object) -> object:
        hints.append(ders)
        return real_hint(self, ders)

    monkeypatch.setattr(refusal_module.x509, "load_der_x509_certificate", counting)
    monkeypatch.setattr(Verifier, "_untrusted_issuer_hint", counting_hint)
    cert = CA(organization="Other").issue_client_cert(common_name="mallory")
    guard = Guard(verifier=Verifier(trust_store=ca.trust_store()))
    presented = Presented("127.0.0.1", (), (cert.cert_pem.text(),))
    with caplog.at_level(logging.WARNING, logger="mtlsauth"):
        for _ in range(200):
            assert decide(guard, presented).code == "untrusted_issuer"
    assert len(refusals(caplog)) == 1
    assert 'subject="CN=mallory' in refusals(caplog)[0].getMessage()
    assert len(hints) == 1  # the one line written
    assert len(parsed) < 5  # for that line (its names, its hint), not one per refusal


def test_an_issuer_spelled_otherwise_is_named_as_such_in_the_hint(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The leaf names its root with a PrintableString CN where the root's own subject has a
    # UTF8String, signed by the root's key: cryptography links names byte for byte, so no
    # path exists, and the hint says why instead of blaming another key or a lost intermediate.
    root = CA(organization="Example Corp", common_name="Example Root")
    inter = root.intermediate(common_name="Example Issuing CA")
    utf8, printable = (
        b"\x06\x03\x55\x04\x03" + bytes([tag, 12]) + b"Example Root" for tag in (0x0C, 0x13)
    )
    direct = resign(der(root.issue_client_cert(common_name="alice").certificate),
                    root.private_key, (utf8, printable))  # fmt: skip
    issuing = b"\x06\x03\x55\x04\x03\x0c\x12Example Issuing CA"
    respelled = b"\x06\x03\x55\x04\x03\x0c\x12EXAMPLE ISSUING CA"
    below = resign(der(inter.issue_client_cert(common_name="bob").certificate),
                   inter.private_key, (issuing, respelled))  # fmt: skip
    guard = Guard(
        verifier=Verifier(trust_store=root.trust_store(), intermediates=[inter.cert_pem.bytes()])
    )
    for forged, known in ((direct, "CN=Example Root"), (below, "CN=Example Issuing CA")):
        caplog.clear()
        text = ssl.DER_cert_to_PEM_cert(forged)
        with caplog.at_level(logging.WARNING, logger="mtlsauth"):
            decision = decide(guard, Presented("127.0.0.1", (), (text,)))
        assert decision.code == "untrusted_issuer"
        [record] = refusals(caplog)
        line = record.getMessage()
        assert f"which is the name of the known CA {known}" in line
        assert "spelled otherwise" in line
        assert "new key" not in line
        assert "configure intermediates=" not in line
