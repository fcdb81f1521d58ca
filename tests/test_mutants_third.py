"""Security checks that a mutation of the code left passing elsewhere (docs/security.md,
"Security checks mutated, third round"): each test here fails with its mutant and passes
with the code as written."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mtlsauth import CertificateRevoked, RevocationUnavailable, Verifier
from mtlsauth._cache import CacheEntry, VerificationCache
from mtlsauth._forwarded._xfcc import parse_xfcc
from mtlsauth._revocation._crl import CRLSet
from mtlsauth.testing import CA

UTC = dt.timezone.utc
NOW = dt.datetime.now(UTC).replace(microsecond=0)
DP = x509.UniformResourceIdentifier("http://crl.example/partition.crl")


# --- DER by hand -----------------------------------------------------------------------------


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _der_len(len(content)) + content


def _elements(der: bytes) -> list[bytes]:
    """The encoded elements inside one DER SEQUENCE (``der`` is exactly that SEQUENCE)."""
    pos, length = 2, der[1]
    if length & 0x80:
        width = length & 0x7F
        pos, length = 2 + width, int.from_bytes(der[2 : 2 + width], "big")
    content, out, i = der[pos : pos + length], [], 0
    while i < len(content):
        start, ln = i + 2, content[i + 1]
        if ln & 0x80:
            width = ln & 0x7F
            start, ln = i + 2 + width, int.from_bytes(content[i + 2 : i + 2 + width], "big")
        out.append(content[i : start + ln])
        i = start + ln
    return out


def _crl(ca: CA, extensions: tuple[tuple[x509.ExtensionType, bool], ...] = ()) -> bytes:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(NOW - dt.timedelta(minutes=5))
        .next_update(NOW + dt.timedelta(days=1))
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.private_key.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .add_extension(x509.CRLNumber(1), critical=False)
    )
    for ext, critical in extensions:
        builder = builder.add_extension(ext, critical=critical)
    crl = builder.sign(ca.private_key, hashes.SHA256())  # type: ignore[arg-type]
    return crl.public_bytes(serialization.Encoding.DER)


def _outcome(crls: CRLSet, chain: list[x509.Certificate]) -> str:
    try:
        crls.check(chain, at=NOW)
    except CertificateRevoked:
        return "revoked"
    except RevocationUnavailable:
        return "unavailable"
    return "ok"


# --- CRLs --------------------------------------------------------------------------------------


def test_a_crl_without_next_update_is_refused_when_loaded() -> None:
    # cryptography's builder insists on nextUpdate: the TBS is re-encoded without it (the
    # fifth field, after version, signature, issuer and thisUpdate) and signed again by the CA.
    ca = CA(organization="Mutants Three")
    tbs, outer_alg, _sig = _elements(_crl(ca))
    fields = _elements(tbs)
    assert fields[4][0] in (0x17, 0x18)  # nextUpdate, a UTCTime or GeneralizedTime
    new_tbs = _tlv(0x30, b"".join(fields[:4] + fields[5:]))
    sig = ca.private_key.sign(new_tbs, ec.ECDSA(hashes.SHA256()))  # type: ignore[call-arg]
    der = _tlv(0x30, new_tbs + outer_alg + _tlv(0x03, b"\x00" + sig))
    assert x509.load_der_x509_crl(der).next_update_utc is None  # well-formed, only undated
    with pytest.raises(ValueError, match="no nextUpdate"):
        CRLSet.from_der(der)


def test_a_distribution_point_naming_reasons_is_no_partition_match() -> None:
    # The leaf points at the partition only for some reasons: a partitioned CRL of that
    # distribution point does not clear it for all of them (the CRL says nothing about the
    # others), so its status cannot be told.
    root = CA(organization="Mutants Three")
    inter = root.intermediate()

    def outcome(reasons: frozenset[x509.ReasonFlags] | None) -> str:
        dp = x509.DistributionPoint(
            full_name=[DP], relative_name=None, reasons=reasons, crl_issuer=None
        )
        leaf = inter.issue_client_cert(
            common_name="leaf", extra_extensions=[(x509.CRLDistributionPoints([dp]), False)]
        )
        idp = x509.IssuingDistributionPoint(
            full_name=[DP],
            relative_name=None,
            only_contains_user_certs=False,
            only_contains_ca_certs=False,
            only_some_reasons=None,
            indirect_crl=False,
            only_contains_attribute_certs=False,
        )
        crls = CRLSet.from_der(_crl(inter, ((idp, True),)), _crl(root))
        return _outcome(crls, [leaf.certificate, inter.certificate, root.certificate])

    assert outcome(None) == "ok"
    assert outcome(frozenset({x509.ReasonFlags.key_compromise})) == "unavailable"


# --- The verification cache ------------------------------------------------------------------


@pytest.fixture(scope="module")
def alice():
    ca = CA(organization="Mutants Three")
    cert = ca.issue_client_cert(common_name="alice")
    return Verifier(trust_store=ca.trust_store()).verify_pem(cert.chain_pem.text())


def _cached(alice, *, since: float, expires: float) -> tuple[VerificationCache, object]:
    cache, tokens = VerificationCache(64), object()
    cache.put(b"leaf", b"alias", CacheEntry(alice, (), expires, tokens, since))
    return cache, tokens


def test_find_ignores_an_entry_verified_after_now(alice) -> None:
    # The clock stepped back before the moment the verification was made for.
    now = time.time()
    cache, tokens = _cached(alice, since=now, expires=now + 60)
    assert cache.find(b"leaf", b"other", now - 1, tokens) is None
    assert cache.find(b"leaf", b"other", now, tokens) is not None


def test_find_ignores_an_entry_at_its_exact_expiry_instant(alice) -> None:
    now = time.time()
    cache, tokens = _cached(alice, since=now - 60, expires=now)
    assert cache.find(b"leaf", b"other", now, tokens) is None
    assert cache.find(b"leaf", b"other", now - 0.5, tokens) is not None


# --- XFCC values Envoy never quotes -------------------------------------------------------------


@pytest.mark.parametrize("text", ["URI= spiffe://a/b", "URI=spiffe://a/b ", "DNS=\tx.example"])
def test_a_never_quoted_value_with_blanks_around_it_is_marked(text: str) -> None:
    # Envoy writes URI and DNS untrimmed: blanks around one are not its own, so the value is
    # marked (like a quoted one) instead of being read as a name of the certificate.
    ((key, value),) = parse_xfcc(text)[0]
    assert key.endswith('"')
    assert value.strip() == value


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("Hash= ab ", "hash"),
        ("By= spiffe://p ", "by"),
        ("URI=spiffe://a/b", "uri"),
        ("DNS=x", "dns"),
    ],
)
def test_blanks_around_other_unquoted_values_are_trimmed_only(text: str, key: str) -> None:
    ((read, value),) = parse_xfcc(text)[0]
    assert read == key
    assert value == value.strip() != ""


# --- The server's TLS context ----------------------------------------------------------------


@pytest.fixture(scope="module")
def server_files(tmp_path_factory):
    from mtlsauth import TrustStore
    from mtlsauth._cli._testpki import write_test_pki

    pki = write_test_pki(tmp_path_factory.mktemp("pki"))
    trust = TrustStore.from_pem_file(pki.path("ca.pem"), reload_interval=None)
    return {"certfile": pki.path("server.pem"), "keyfile": pki.path("server.key")}, trust, pki


def test_server_ssl_context_applies_a_higher_minimum_version(server_files) -> None:
    # TLS 1.2 is OpenSSL's own floor for a server context too: only a higher minimum shows
    # whether the argument is applied at all.
    import ssl

    from mtlsauth import server_ssl_context

    files, trust, _pki = server_files
    ctx = server_ssl_context(**files, trust_store=trust, minimum_version=ssl.TLSVersion.TLSv1_3)
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3


def test_server_ssl_context_takes_no_file_name_or_pem_text_as_pins(server_files) -> None:
    from mtlsauth import server_ssl_context

    files, trust, pki = server_files
    for pinned in (str(pki.path("client-good.pem")), pki.path("client-good.pem").read_bytes()):
        with pytest.raises(TypeError, match="pinned must be a sequence"):
            server_ssl_context(**files, trust_store=trust, pinned=pinned)


# --- Refusal answers -------------------------------------------------------------------------


@pytest.mark.parametrize(("written", "sent"), [(399, 401), (400, 400), (599, 599), (600, 401)])
def test_a_refusal_status_is_a_client_or_server_error_at_both_ends(written, sent) -> None:
    # Code handed the error (a hook) can write its status; only 400 to 599 are sent.
    from mtlsauth import CertificateMissing
    from mtlsauth._problem import refusal_status

    error = CertificateMissing("no certificate")
    vars(error)["status"] = written
    assert refusal_status(error) == sent


# --- Bounded memos ---------------------------------------------------------------------------


def test_a_bounded_memo_holds_size_entries_per_segment() -> None:
    from mtlsauth._memo import BoundedMemo, ObjectTable

    memo: BoundedMemo[str, int] = BoundedMemo(2)
    for key in "abc":  # seen once: probation, the oldest leaves
        memo.put(key, 1)
    assert len(memo) == 2
    assert "a" not in memo
    for key in "xyz":  # seen twice: protected, the oldest leaves
        memo.put(key, 1)
        assert memo.get(key) == 1
    assert "x" not in memo
    assert "y" in memo
    assert "z" in memo
    table: ObjectTable[int] = ObjectTable(2)
    table.put(1, 1)
    table.put(2, 2)
    table.put(3, 3)  # full: starts afresh
    assert dict(table) == {3: 3}


class _Sly(int):
    """An int that says it lies in every range."""

    def __ge__(self, other: object) -> bool:
        return True

    def __le__(self, other: object) -> bool:
        return True


def test_a_refusal_status_of_an_int_subclass_is_not_taken() -> None:
    # Its comparisons are its own: a written 200 that claims to lie in 400..599.
    from mtlsauth import CertificateMissing
    from mtlsauth._problem import refusal_status

    error = CertificateMissing("no certificate")
    vars(error)["status"] = _Sly(200)
    assert refusal_status(error) == 401


@pytest.mark.parametrize("written", ["invalid_token\r\nSet-Cookie: s=1", "invalid_tokén"])
def test_a_written_challenge_that_is_no_header_value_is_dropped(written: str) -> None:
    # The challenge is computed from the error's fields, which a hook can write: a line
    # break would start a header of its own, a non-ASCII character is no header text.
    from mtlsauth import TokenError
    from mtlsauth._problem import answer_of, problem_headers

    error = TokenError("bad token")
    vars(error)["bearer_error"] = written
    assert answer_of(error).challenge is None
    values = [v for _k, v in problem_headers(error, 0)]
    assert all(v.isascii() and v.isprintable() for v in values)


def test_a_written_code_that_is_not_the_class_s_own_is_not_sent() -> None:
    # The code goes into the problem body and into WWW-Authenticate: MutualTLS error="...".
    from mtlsauth import CertificateMissing
    from mtlsauth._problem import answer_of, problem_headers

    error = CertificateMissing("no certificate")
    vars(error)["code"] = 'x", realm="\r\nSet-Cookie: s=1'
    assert answer_of(error).code == "certificate_missing"
    assert ("www-authenticate", 'MutualTLS error="certificate_missing"') in problem_headers(
        error, 0
    )


# --- Base64 and PEM of request input -----------------------------------------------------------


@pytest.mark.parametrize(("clean", "set_bits"), [(b"QQ==", b"QR=="), (b"QUI=", b"QUJ=")])
def test_base64_padding_bits_must_be_clear_in_request_input(clean, set_bits) -> None:
    # "QR==" decodes to the same octet as "QQ==": a second spelling of the same certificate.
    from mtlsauth import CertificateInvalid
    from mtlsauth._encoding import b64decode_strict, pad_bits_clear, pem_to_der_list

    assert pad_bits_clear(clean)
    assert not pad_bits_clear(set_bits)
    assert b64decode_strict(set_bits) == b64decode_strict(clean, canonical=True)
    with pytest.raises(CertificateInvalid, match="canonical"):
        b64decode_strict(set_bits, canonical=True)
    pem = b"-----BEGIN CERTIFICATE-----\n%s\n-----END CERTIFICATE-----\n"
    with pytest.raises(CertificateInvalid, match="canonical"):
        pem_to_der_list(pem % set_bits)
    # A bundle file is read as OpenSSL reads it.
    assert pem_to_der_list(pem % set_bits, allow_text=True) == pem_to_der_list(pem % clean)


def _with_serial(der: bytes, serial: bytes) -> bytes:
    """``der`` (a certificate) with its serial INTEGER's content replaced (unsigned)."""
    tbs, alg, sig = _elements(der)
    fields = _elements(tbs)
    fields[1] = _tlv(0x02, serial)
    return _tlv(0x30, _tlv(0x30, b"".join(fields)) + alg + sig)


@pytest.mark.parametrize("serial", [b"\x00", b"\x80", b"\xff\x01"], ids=["zero", "-128", "-255"])
def test_a_serial_that_is_not_positive_is_refused_before_parsing(serial) -> None:
    from mtlsauth import CertificateInvalid
    from mtlsauth._encoding import load_der

    der = (
        CA(organization="Mutants Three")
        .issue_client_cert()
        .certificate.public_bytes(serialization.Encoding.DER)
    )
    assert load_der(_with_serial(der, b"\x01")).serial_number == 1  # the rebuilding is sound
    with pytest.raises(CertificateInvalid, match="not positive"):
        load_der(_with_serial(der, serial))


def test_input_size_bounds_are_inclusive() -> None:
    from mtlsauth import CertificateInvalid
    from mtlsauth._encoding import MAX_INPUT_BYTES, MAX_LEAF_BYTES, chain_to_der, check_leaf_size

    check_leaf_size(b"\x30" * MAX_LEAF_BYTES)
    with pytest.raises(CertificateInvalid, match="too large"):
        check_leaf_size(b"\x30" * (MAX_LEAF_BYTES + 1))
    for blob in (b"\x30", b" "):  # DER, and text (PEM or nothing)
        with pytest.raises(CertificateInvalid, match="too large"):
            chain_to_der([blob + b"\x00" * MAX_INPUT_BYTES])


def test_request_pem_refuses_text_after_the_last_block() -> None:
    from mtlsauth import CertificateInvalid
    from mtlsauth._encoding import pem_to_der_list

    pem = b"-----BEGIN CERTIFICATE-----\nQQ==\n-----END CERTIFICATE-----\n"
    assert pem_to_der_list(pem + b" \n") == [b"A"]
    with pytest.raises(CertificateInvalid, match="trailing"):
        pem_to_der_list(pem + b"X-Injected: 1\n")
    assert pem_to_der_list(pem + b"subject=CN=x\n", allow_text=True) == [b"A"]


# --- Names -----------------------------------------------------------------------------------


def test_a_configured_country_is_two_ascii_letters() -> None:
    from mtlsauth._names import _parse_dn

    assert _parse_dn("C=DE,O=Example")
    with pytest.raises(ValueError, match="countryName"):
        _parse_dn("C=ÄB,O=Example")  # two letters, not ASCII: no ISO 3166 code


def test_a_uri_with_userinfo_keeps_its_case() -> None:
    # Only the host is case-insensitive; userinfo names someone, as it is written.
    from mtlsauth._names import _norm_uri

    assert _norm_uri("HTTPS://Example.COM/P") == "https://example.com/P"
    assert _norm_uri("https://Alice@example.com/") != _norm_uri("https://alice@example.com/")


def test_dot_segments_are_looked_for_in_the_path_only() -> None:
    from mtlsauth._names import _under_prefix

    prefix = "spiffe://td/ns/"
    assert _under_prefix(prefix + "svc?next=/../x", prefix)
    assert _under_prefix(prefix + "svc#/../x", prefix)
    assert not _under_prefix(prefix + "svc/../../admin", prefix)
    # "\\" separates segments for WHATWG URL parsers; Tomcat and Jetty read "..;x" as "..".
    assert not _under_prefix(prefix + "svc\\..\\..\\admin", prefix)
    assert not _under_prefix(prefix + "svc/..;x/..;y/admin", prefix)
    # A name still changing after the rounds of decoding a server might make is refused.
    deep = ".."
    for _ in range(5):
        deep = deep.replace("%", "%25").replace(".", "%2e")
    assert not _under_prefix(prefix + deep + "/admin", prefix)


def test_a_traefik_header_holds_at_most_the_chain_bound() -> None:
    import base64

    from mtlsauth import CertificateInvalid
    from mtlsauth._encoding import MAX_CHAIN_CERTS
    from mtlsauth._forwarded._formats import traefik

    der = CA(organization="Mutants Three").certificate.public_bytes(serialization.Encoding.DER)
    item = base64.b64encode(der).decode()
    assert len(traefik(",".join([item] * MAX_CHAIN_CERTS))) == MAX_CHAIN_CERTS
    with pytest.raises(CertificateInvalid, match="more than"):
        traefik(",".join([item] * (MAX_CHAIN_CERTS + 1)))


def test_a_host_name_is_at_most_253_octets() -> None:
    from mtlsauth._names import is_host_name

    name = ".".join(["a" * 63] * 3 + ["b" * 61])
    assert len(name) == 253
    assert is_host_name(name)
    assert not is_host_name(name + "b")


def test_an_xn_label_that_decodes_to_ascii_is_no_host_name() -> None:
    from mtlsauth._names import is_host_name

    assert is_host_name("xn--mnchen-3ya.example")
    assert not is_host_name("xn--zz-.example")  # decodes to "zz", encodes back the same


def test_a_configured_hex_value_is_one_der_string_exactly() -> None:
    from mtlsauth._names import _parse_dn

    assert _parse_dn("CN=#0c0161,O=x") == _parse_dn("CN=a,O=x")
    with pytest.raises(ValueError, match="not a DER string"):
        _parse_dn("CN=#0c016100,O=x")  # a string, then one octet more


# --- Reloaded files ------------------------------------------------------------------------------


def test_a_watched_directory_skips_subdirectories_and_dot_files(tmp_path) -> None:
    # Kubernetes mounts a secret as "..data" and dated "..2024_..." directories beside the
    # files; a subdirectory is not a CA file.
    from mtlsauth import TrustStore

    ca = CA(organization="Mutants Three")
    (tmp_path / "ca.pem").write_bytes(ca.certificate.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "..data").mkdir()
    (tmp_path / "sub.pem").mkdir()
    (tmp_path / ".hidden.pem").write_text("not a certificate")
    store = TrustStore.from_directory(tmp_path, reload_interval=None)
    assert [c.subject for c in store.certificates] == [ca.certificate.subject]
