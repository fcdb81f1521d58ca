"""TrustStore: every source, the errors that name the file, `|`, and reload."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, Encoding, pkcs12

from _verdicts import verdict
from mtlsauth import CertificateInvalid, CRLSet, TrustStore, Verifier
from mtlsauth.testing import CA


@pytest.fixture(scope="module")
def cas() -> tuple[CA, CA, CA]:
    return CA(organization="A"), CA(organization="B"), CA(organization="C")


def test_from_pem_str_bytes_and_bundles(cas) -> None:
    a, b, _ = cas
    assert len(TrustStore.from_pem(a.cert_pem.text())) == 1
    bundle = a.cert_pem.bytes() + b"# comment between certificates\n" + b.cert_pem.bytes()
    assert len(TrustStore.from_pem(bundle)) == 2
    assert len(TrustStore.from_pem(a.cert_pem.bytes() * 2)) == 1  # duplicates collapse


def test_from_pem_file_and_der_file(cas, tmp_path: Path) -> None:
    a, _, _ = cas
    pem = a.cert_pem.write_to_path(tmp_path / "ca.pem")
    der = tmp_path / "ca.der"
    der.write_bytes(a.certificate.public_bytes(Encoding.DER))
    assert TrustStore.from_pem_file(pem).certificates == (a.certificate,)
    assert TrustStore.from_pem_file(der).certificates == (a.certificate,)


def test_from_directory_reads_cert_files_and_hash_links(cas, tmp_path: Path) -> None:
    a, b, c = cas
    a.cert_pem.write_to_path(tmp_path / "a.pem")
    b.cert_pem.write_to_path(tmp_path / "b.crt")
    c.cert_pem.write_to_path(tmp_path / "5d30f3c5.0")  # `openssl rehash` style name
    (tmp_path / "README.txt").write_text("not a certificate")
    (tmp_path / "key.key").write_text("ignored by suffix")
    assert len(TrustStore.from_directory(tmp_path)) == 3


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(b"", "no certificate", id="empty file"),
        pytest.param(b"just words\n", "no certificate", id="text file"),
        pytest.param(b"-----BEGIN CERTIFICATE-----\nMIIB", "truncated", id="truncated PEM"),
        pytest.param(b"\x30\x82\x01\x00garbage", "DER", id="corrupt DER"),
    ],
)
def test_bad_files_are_value_errors_naming_the_file(
    tmp_path: Path, content: bytes, message: str
) -> None:
    f = tmp_path / "bad.pem"
    f.write_bytes(content)
    with pytest.raises(ValueError, match=message) as info:
        TrustStore.from_pem_file(f)
    assert "bad.pem" in str(info.value)


def test_private_key_where_a_certificate_belongs(cas, tmp_path: Path) -> None:
    key = cas[0].issue_client_cert().key_pem.write_to_path(tmp_path / "ca.pem")
    with pytest.raises(ValueError, match="private key") as info:
        TrustStore.from_pem_file(key)
    assert "ca.pem" in str(info.value)


def test_missing_and_empty_sources(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        TrustStore.from_pem_file(tmp_path / "nope.pem")
    with pytest.raises(ValueError, match="no certificate files"):
        TrustStore.from_directory(tmp_path)
    with pytest.raises(ValueError, match="not a directory"):
        TrustStore.from_directory(tmp_path / "nope")
    with pytest.raises(TypeError):
        TrustStore()
    with pytest.raises(TypeError):
        TrustStore.from_pem(123)  # type: ignore[arg-type]


def test_union_combines_anchors(cas) -> None:
    a, b, _ = cas
    both = TrustStore.from_pem(a.cert_pem.bytes()) | TrustStore.from_pem(b.cert_pem.bytes())
    assert {c.subject for c in both.certificates} == {a.certificate.subject, b.certificate.subject}
    verifier = Verifier(trust_store=both)
    assert verifier.verify(a.issue_client_cert().chain_pem.text()).common_name == "client"
    assert verifier.verify(b.issue_client_cert().chain_pem.text()).common_name == "client"


def test_pkcs12_made_by_cryptography(cas, tmp_path: Path) -> None:
    a, b, _ = cas
    data = pkcs12.serialize_key_and_certificates(
        None, None, None, [a.certificate, b.certificate], BestAvailableEncryption(b"changeit")
    )
    path = tmp_path / "trust.p12"
    path.write_bytes(data)
    assert len(TrustStore.from_pkcs12(path, password="changeit")) == 2
    with pytest.raises(ValueError, match="wrong password"):
        TrustStore.from_pkcs12(path, password="wrong")


@pytest.mark.skipif(shutil.which("keytool") is None, reason="keytool (Java) is not installed")
def test_java_truststore_made_by_keytool(cas, tmp_path: Path) -> None:
    a, b, _ = cas
    store = tmp_path / "truststore.p12"
    for alias, ca in (("ca-a", a), ("ca-b", b)):
        pem = ca.cert_pem.write_to_path(tmp_path / f"{alias}.pem")
        subprocess.run(
            [
                "keytool",
                "-importcert",
                "-noprompt",
                "-storetype",
                "PKCS12",
                "-keystore",
                str(store),
                "-storepass",
                "changeit",
                "-alias",
                alias,
                "-file",
                str(pem),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
    trust = TrustStore.from_pkcs12(store, password="changeit")
    assert {c.subject for c in trust.certificates} == {a.certificate.subject, b.certificate.subject}
    leaf = b.issue_client_cert(common_name="spring-client")
    assert Verifier(trust_store=trust).verify(leaf.chain_pem.text()).common_name == "spring-client"


def test_reload_swaps_and_keeps_last_good(cas, tmp_path: Path, caplog) -> None:
    a, b, _ = cas
    f = a.cert_pem.write_to_path(tmp_path / "ca.pem")
    trust = TrustStore.from_pem_file(f, reload_interval=None)
    assert trust.certificates == (a.certificate,)
    assert trust.reload() is False  # nothing changed
    b.cert_pem.write_to_path(f)
    assert trust.reload() is True
    assert trust.certificates == (b.certificate,)
    f.write_bytes(b"-----BEGIN CERTIFICATE-----\nhalf-writ")  # a half-written file
    with caplog.at_level("ERROR", logger="mtlsauth"):
        assert trust.reload() is False
    assert trust.certificates == (b.certificate,)  # last good copy kept, access not widened
    assert "ca.pem" in (trust.health()[0]["last_error"] or "")
    assert "ca.pem" in caplog.text
    a.cert_pem.write_to_path(f)
    assert trust.reload() is True
    assert trust.health()[0]["last_error"] is None


def test_automatic_reload_after_interval(cas, tmp_path: Path) -> None:
    a, b, _ = cas
    f = a.cert_pem.write_to_path(tmp_path / "ca.pem")
    trust = TrustStore.from_pem_file(f, reload_interval=0.2)
    b.cert_pem.write_to_path(f)
    os.utime(f, ns=(time.time_ns() - 10**9, time.time_ns() - 10**9))  # past the quiet period
    time.sleep(0.3)
    assert trust.certificates == (b.certificate,)


def test_kubernetes_configmap_symlink_swap(cas, tmp_path: Path) -> None:
    a, b, _ = cas
    # Kubernetes: ca.pem -> ..data/ca.pem, ..data -> ..2026_11_23_01; swapped by renaming a link.
    v1 = tmp_path / "..2026_11_23_01"
    v1.mkdir()
    a.cert_pem.write_to_path(v1 / "ca.pem")
    (tmp_path / "..data").symlink_to(v1.name)
    (tmp_path / "ca.pem").symlink_to("..data/ca.pem")
    trust = TrustStore.from_directory(tmp_path, reload_interval=None)
    assert trust.certificates == (a.certificate,)
    v2 = tmp_path / "..2026_11_23_02"
    v2.mkdir()
    b.cert_pem.write_to_path(v2 / "ca.pem")
    (tmp_path / "..data_tmp").symlink_to(v2.name)
    os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
    shutil.rmtree(v1)
    assert trust.reload() is True
    assert trust.certificates == (b.certificate,)


def test_reload_interval_validation(cas, tmp_path: Path) -> None:
    f = cas[0].cert_pem.write_to_path(tmp_path / "ca.pem")
    for bad in (0, -1, "30"):
        with pytest.raises(ValueError, match="reload_interval"):
            TrustStore.from_pem_file(f, reload_interval=bad)  # type: ignore[arg-type]


def test_combined_store_never_serves_anchors_removed_from_every_file(cas, tmp_path: Path) -> None:
    """Reloads free old snapshots and a new one may take a freed address: nothing goes stale."""
    a, b, removed = cas
    fa, fb = tmp_path / "a.pem", tmp_path / "b.pem"
    trust = None
    stamp = time.time_ns() - 10**13  # in the past: a future mtime waits for the quiet period

    def write(f: Path, data: bytes) -> None:
        nonlocal stamp
        stamp += 10**9  # a new mtime each time, so every write is noticed
        f.write_bytes(data)
        os.utime(f, ns=(stamp, stamp))
        if trust is not None:
            assert trust.reload() is True

    write(fa, a.cert_pem.bytes() + removed.cert_pem.bytes())
    write(fb, b.cert_pem.bytes() + removed.cert_pem.bytes())
    trust = TrustStore.from_pem_file(fa, reload_interval=None) | TrustStore.from_pem_file(
        fb, reload_interval=None
    )
    verifier = Verifier(trust_store=trust, cache_size=0)
    leaf = removed.issue_client_cert().chain_pem.text()
    admitted = 0
    for _ in range(200):
        write(fa, a.cert_pem.bytes() + removed.cert_pem.bytes())
        write(fb, b.cert_pem.bytes() + removed.cert_pem.bytes())
        assert removed.certificate in trust.certificates
        for f, ca in ((fa, a), (fb, b)):  # removed everywhere, each file rewritten twice
            write(f, ca.cert_pem.bytes())
            write(f, ca.cert_pem.bytes() + b"\n")
        assert removed.certificate not in trust.certificates
        try:
            verifier.verify(leaf)
            admitted += 1
        except CertificateInvalid:
            pass
        assert verifier.health()["ok"] is True
    assert admitted == 0


# -- CA bundles: a store certificate issued by another one is validated up to it ----------
def _bundle_code(trust: TrustStore, chain: str, **kwargs: object) -> str:
    from mtlsauth import MTLSAuthError

    try:
        Verifier(trust_store=trust, cache_size=0, **kwargs).verify(chain)  # type: ignore[arg-type]
    except MTLSAuthError as exc:
        return exc.code
    return "accepted"


@pytest.fixture(scope="module")
def revoked_intermediate() -> tuple[CA, CA, str, bytes]:
    """A root whose CRL lists its intermediate, and a client of that intermediate."""
    root = CA(organization="Bundle")
    inter = root.intermediate()
    leaf = inter.issue_client_cert(common_name="alice")
    crls = root.revoke(inter.certificate).bytes() + inter.crl().bytes()
    return root, inter, leaf.chain_pem.text(), crls


@pytest.mark.parametrize("bundle", [False, True], ids=["root only", "root + intermediate"])
def test_bundle_keeps_revocation_of_the_intermediate(revoked_intermediate, bundle: bool) -> None:
    from mtlsauth import CRLSet

    root, inter, chain, crls = revoked_intermediate
    pem = root.cert_pem.bytes() + (inter.cert_pem.bytes() if bundle else b"")
    rev = CRLSet.from_pem(crls, scope="chain")
    assert _bundle_code(TrustStore.from_pem(pem), chain, revocation=rev) == "certificate_revoked"


def test_bundle_loaded_from_a_file_in_any_order(revoked_intermediate, tmp_path: Path) -> None:
    from mtlsauth import CRLSet

    root, inter, chain, crls = revoked_intermediate
    f = tmp_path / "ca-bundle.pem"
    f.write_bytes(inter.cert_pem.bytes() + root.cert_pem.bytes())  # intermediate first
    rev = CRLSet.from_pem(crls, scope="chain")
    trust = TrustStore.from_pem_file(f, reload_interval=None)
    assert _bundle_code(trust, chain, revocation=rev) == "certificate_revoked"
    # Also when the root and the intermediate come from different stores combined with |.
    split = TrustStore.from_pem(root.cert_pem.bytes()) | TrustStore.from_pem(inter.cert_pem.bytes())
    assert _bundle_code(split, chain, revocation=rev) == "certificate_revoked"


def test_bundle_keeps_the_roots_name_constraints() -> None:
    nc = x509.NameConstraints(
        permitted_subtrees=[x509.DNSName("example.com")], excluded_subtrees=None
    )
    root = CA(organization="Constrained", name_constraints=nc)
    inter = root.intermediate()
    inside = inter.issue_client_cert(dns_names=["a.example.com"]).chain_pem.text()
    outside = inter.issue_client_cert(dns_names=["evil.test"]).chain_pem.text()
    for pem in (root.cert_pem.bytes(), root.cert_pem.bytes() + inter.cert_pem.bytes()):
        trust = TrustStore.from_pem(pem)
        assert _bundle_code(trust, inside) == "accepted"
        assert _bundle_code(trust, outside) == "untrusted_issuer"


def test_bundle_completes_leaf_only_chains_and_ends_at_the_root() -> None:
    root = CA(organization="Bundle")
    inter = root.intermediate()
    leaf = inter.issue_client_cert(common_name="alice")
    trust = TrustStore.from_pem(root.cert_pem.bytes() + inter.cert_pem.bytes())
    identity = Verifier(trust_store=trust).verify(leaf.cert_pem.text())  # leaf only
    assert identity.chain == (leaf.certificate, inter.certificate, root.certificate)
    assert len(trust) == 2  # both are still listed (and given to the TLS layer)
    # An intermediate alone is still an anchor: nothing above it is known.
    alone = Verifier(trust_store=TrustStore.from_pem(inter.cert_pem.bytes()))
    assert alone.verify(leaf.cert_pem.text()).chain == (leaf.certificate, inter.certificate)


def test_bundle_with_an_expired_root_refuses_like_openssl() -> None:
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=30)
    root = CA(organization="Old", not_before=past - dt.timedelta(days=30), not_after=past)
    inter = root.intermediate(not_after=dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=30))
    leaf = inter.issue_client_cert().chain_pem.text()
    assert _bundle_code(TrustStore.from_pem(inter.cert_pem.bytes()), leaf) == "accepted"
    bundle = TrustStore.from_pem(root.cert_pem.bytes() + inter.cert_pem.bytes())
    # No valid path to the root; OpenSSL says "certificate has expired" at the root's depth.
    assert _bundle_code(bundle, leaf) == "certificate_expired"


def test_cross_signed_cas_in_one_store_stay_usable() -> None:
    """Two CAs that certify each other: neither is above the other, both remain anchors."""
    from cryptography.hazmat.primitives import hashes

    a, b = CA(organization="A"), CA(organization="B")

    def cross(subject: CA, issuer: CA) -> x509.Certificate:
        c = subject.certificate
        builder = (
            x509.CertificateBuilder()
            .subject_name(c.subject)
            .issuer_name(issuer.certificate.subject)
            .public_key(c.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(c.not_valid_before_utc)
            .not_valid_after(c.not_valid_after_utc)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                subject.certificate.extensions.get_extension_for_class(x509.KeyUsage).value,
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(c.public_key()), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.private_key.public_key()),  # type: ignore[arg-type]
                critical=False,
            )
        )
        return builder.sign(issuer.private_key, hashes.SHA256())  # type: ignore[arg-type]

    trust = TrustStore.from_certificates([cross(a, b), cross(b, a)])
    assert _bundle_code(trust, a.issue_client_cert().cert_pem.text()) == "accepted"
    assert _bundle_code(trust, b.issue_client_cert().cert_pem.text()) == "accepted"


def test_a_cross_signed_twin_of_a_bundled_intermediate_is_no_shortcut() -> None:
    """The same CA (name and key) certified by the root and by an outside CA: still validated
    up to the root, so the root's CRL listing it applies."""
    from cryptography.hazmat.primitives import hashes

    from mtlsauth import CRLSet

    root, outside = CA(organization="Root"), CA(organization="Outside")
    inter = root.intermediate()
    leaf = inter.issue_client_cert().cert_pem.text()  # leaf only: every path is up to the store
    c = inter.certificate
    twin = (
        x509.CertificateBuilder()
        .subject_name(c.subject)
        .issuer_name(outside.certificate.subject)
        .public_key(c.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(c.not_valid_before_utc)
        .not_valid_after(c.not_valid_after_utc)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(c.extensions.get_extension_for_class(x509.KeyUsage).value, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(c.public_key()), critical=False)
        .sign(outside.private_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    crls = CRLSet.from_pem(root.revoke(c).bytes() + inter.crl().bytes())
    for order in ([root.certificate, c, twin], [twin, c, root.certificate]):
        trust = TrustStore.from_certificates(order)
        assert _bundle_code(trust, leaf, revocation=crls) == "certificate_revoked"


def test_a_self_signed_root_stays_an_anchor_next_to_its_cross_signed_copy() -> None:
    """A root both self-signed and cross-signed by an older, now expired root (all three in
    the bundle): its own self-signed certificate still anchors, nothing is locked out."""
    from cryptography.hazmat.primitives import hashes

    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)
    old = CA(organization="Old", not_before=past - dt.timedelta(days=900), not_after=past)
    root = CA(organization="New")
    c = root.certificate
    cross = (
        x509.CertificateBuilder()
        .subject_name(c.subject)
        .issuer_name(old.certificate.subject)
        .public_key(c.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(past - dt.timedelta(days=100))
        .not_valid_after(c.not_valid_after_utc)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(c.extensions.get_extension_for_class(x509.KeyUsage).value, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(c.public_key()), critical=False)
        .sign(old.private_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    leaf = root.intermediate().issue_client_cert().chain_pem.text()
    for order in ([old.certificate, cross, c], [c, cross, old.certificate]):
        assert _bundle_code(TrustStore.from_certificates(order), leaf) == "accepted"


# -- Reloads reviewed as an attacker: a file emptied or deleted to withdraw trust ---------------
def _write_settled(path: Path, data: bytes) -> None:
    """Write ``data`` with a modification time in the past: past the write-quiet period."""
    path.write_bytes(data)
    then = time.time_ns() - 10**10
    os.utime(path, ns=(then, then))


def _withdraw(kind: str, path: Path) -> None:
    if kind == "emptied":
        _write_settled(path, b"")
    elif kind == "blanked":
        _write_settled(path, b"\n  \n")
    else:
        path.unlink()


WITHDRAWALS = ["emptied", "blanked", "deleted"]


@pytest.mark.parametrize("kind", WITHDRAWALS)
def test_a_trust_file_emptied_or_deleted_withdraws_its_anchors(
    cas, tmp_path: Path, kind: str
) -> None:
    """An operator who empties or deletes the CA file of a compromised CA means "trust it no
    more". The last good copy was kept instead: its clients were admitted, from the cache
    and by fresh verifications, until a restart. A file with nothing in it now withdraws
    what it held; a file that holds something unreadable still keeps the last good copy."""
    a, _, _ = cas
    f = tmp_path / "ca.pem"
    _write_settled(f, a.cert_pem.bytes())
    trust = TrustStore.from_pem_file(f, reload_interval=None)
    verifier = Verifier(trust_store=trust)
    chain = a.issue_client_cert(common_name="withdrawn").chain_pem.text()
    assert verdict(verifier, chain) == "accepted"  # and cached
    _withdraw(kind, f)
    assert verifier.reload() is True
    assert trust.certificates == ()
    assert len(trust) == 0
    assert verdict(verifier, chain) == "untrusted_issuer"
    health = verifier.health()
    assert health["ok"] is True  # what the operator asked for, not a failure
    assert health["anchors"] == 0  # but monitoring sees that every client is refused
    assert health["warnings"] == [
        "the trust store holds no CA and no certificate is pinned: every client is refused"
    ]
    _write_settled(f, a.cert_pem.bytes())  # trusted again once the file holds it again
    assert verifier.reload() is True
    assert verdict(verifier, chain) == "accepted"
    assert verifier.health()["anchors"] == 1
    assert verifier.health()["warnings"] == []


@pytest.mark.parametrize("kind", WITHDRAWALS)
def test_one_of_combined_trust_files_withdrawn_leaves_the_others(
    cas, tmp_path: Path, kind: str
) -> None:
    a, b, _ = cas
    fa, fb = tmp_path / "a.pem", tmp_path / "b.pem"
    _write_settled(fa, a.cert_pem.bytes())
    _write_settled(fb, b.cert_pem.bytes())
    trust = TrustStore.from_pem_file(fa, reload_interval=None) | TrustStore.from_pem_file(
        fb, reload_interval=None
    )
    verifier = Verifier(trust_store=trust)
    chain_a = a.issue_client_cert().chain_pem.text()
    chain_b = b.issue_client_cert().chain_pem.text()
    assert verdict(verifier, chain_a) == verdict(verifier, chain_b) == "accepted"
    _withdraw(kind, fa)
    assert verifier.reload() is True
    assert trust.certificates == (b.certificate,)
    assert (verdict(verifier, chain_a), verdict(verifier, chain_b)) == (
        "untrusted_issuer",
        "accepted",
    )
    _withdraw(kind, fb)  # nothing left anywhere: every chain refused, no exception
    assert verifier.reload() is True
    assert trust.certificates == ()
    assert (verdict(verifier, chain_a), verdict(verifier, chain_b)) == ("untrusted_issuer",) * 2


def test_a_trust_folder_emptied_or_deleted_withdraws_its_anchors(cas, tmp_path: Path) -> None:
    a, _, _ = cas
    folder = tmp_path / "ca.d"
    folder.mkdir()
    _write_settled(folder / "a.pem", a.cert_pem.bytes())
    (folder / "README.txt").write_text("not a certificate")
    trust = TrustStore.from_directory(folder, reload_interval=None)
    verifier = Verifier(trust_store=trust)
    chain = a.issue_client_cert().chain_pem.text()
    assert verdict(verifier, chain) == "accepted"
    (folder / "a.pem").unlink()  # no certificate file left
    assert verifier.reload() is True
    assert verdict(verifier, chain) == "untrusted_issuer"
    _write_settled(folder / "a.pem", a.cert_pem.bytes())
    assert verifier.reload() is True
    assert verdict(verifier, chain) == "accepted"
    shutil.rmtree(folder)  # the folder itself removed
    assert verifier.reload() is True
    assert verdict(verifier, chain) == "untrusted_issuer"


@pytest.mark.parametrize("kind", WITHDRAWALS)
def test_a_pkcs12_trust_store_emptied_or_deleted_withdraws_its_anchors(
    cas, tmp_path: Path, kind: str
) -> None:
    a, _, _ = cas
    f = tmp_path / "trust.p12"
    data = pkcs12.serialize_java_truststore(
        [pkcs12.PKCS12Certificate(a.certificate, None)], BestAvailableEncryption(b"pw")
    )
    _write_settled(f, data)
    trust = TrustStore.from_pkcs12(f, password="pw", reload_interval=None)
    verifier = Verifier(trust_store=trust)
    chain = a.issue_client_cert().chain_pem.text()
    assert verdict(verifier, chain) == "accepted"
    _withdraw(kind, f)
    assert verifier.reload() is True
    assert verdict(verifier, chain) == "untrusted_issuer"


def test_a_pkcs12_trust_store_rewritten_with_another_password_keeps_the_last_good(
    cas, tmp_path: Path
) -> None:
    """Content that cannot be read is a failed reload, not a withdrawal."""
    a, _, _ = cas
    f = tmp_path / "trust.p12"

    def write(password: bytes) -> None:
        _write_settled(
            f,
            pkcs12.serialize_java_truststore(
                [pkcs12.PKCS12Certificate(a.certificate, None)], BestAvailableEncryption(password)
            ),
        )

    write(b"pw")
    trust = TrustStore.from_pkcs12(f, password="pw", reload_interval=None)
    write(b"other")
    assert trust.reload() is False
    assert trust.certificates == (a.certificate,)
    assert "wrong password" in str(trust.health()[0]["last_error"])


@pytest.mark.parametrize("kind", WITHDRAWALS)
def test_a_pin_file_emptied_or_deleted_withdraws_its_pins(cas, tmp_path: Path, kind: str) -> None:
    a, _, _ = cas
    pin = a.issue_client_cert(common_name="kiosk")
    f = tmp_path / "pins.pem"
    _write_settled(f, pin.cert_pem.bytes())
    verifier = Verifier(pinned=TrustStore.from_pem_file(f, reload_interval=None))
    assert verdict(verifier, pin.cert_pem.text()) == "accepted"
    _withdraw(kind, f)
    assert verifier.reload() is True
    assert verdict(verifier, pin.cert_pem.text()) == "pin_mismatch"


@pytest.mark.parametrize("kind", ["emptied", "blanked"])
def test_an_empty_trust_file_at_construction_is_still_a_value_error(
    tmp_path: Path, kind: str
) -> None:
    f = tmp_path / "ca.pem"
    _withdraw(kind, f)
    with pytest.raises(ValueError, match="no certificate"):
        TrustStore.from_pem_file(f)
    folder = tmp_path / "empty.d"
    folder.mkdir()
    with pytest.raises(ValueError, match="no certificate files"):
        TrustStore.from_directory(folder)


def test_a_ca_file_replaced_in_place_with_its_old_size_and_mtime_is_noticed(tmp_path: Path) -> None:
    """The change check compared path, target, size, mtime and inode. ``cp -p`` (or
    ``touch -r``, or any tool that restores times) writing another CA of the same size into
    the same file, with the same mtime (files unpacked from one archive share their second),
    left all five equal: the old CA stayed trusted and the new one was never read. The
    change time, which no tool can set, is compared too."""
    first = CA(organization="Same size")
    second = CA(organization="Same size")
    while len(second.cert_pem.bytes()) != len(first.cert_pem.bytes()):
        second = CA(organization="Same size")
    f = tmp_path / "ca.pem"
    stamp = (time.time_ns() // 10**9 - 60) * 10**9  # a whole second, as tar keeps it
    f.write_bytes(first.cert_pem.bytes())
    os.utime(f, ns=(stamp, stamp))
    trust = TrustStore.from_pem_file(f, reload_interval=None)
    verifier = Verifier(trust_store=trust)
    chain = first.issue_client_cert().chain_pem.text()
    assert verdict(verifier, chain) == "accepted"
    time.sleep(0.01)
    with open(f, "r+b") as out:  # in place: the same inode
        out.write(second.cert_pem.bytes())
    os.utime(f, ns=(stamp, stamp))
    assert verifier.reload() is True
    assert trust.certificates == (second.certificate,)
    assert verdict(verifier, chain) == "untrusted_issuer"


def test_what_a_trust_folder_and_a_ca_file_never_take(cas, tmp_path: Path) -> None:
    """Checked and holding: OpenSSL's TRUSTED CERTIFICATE blocks (whose trust settings may say
    "not for client authentication") and CRL blocks are refused in a CA file; a folder
    skips dot-files, subdirectories, FIFOs, dangling links and other names."""
    a, b, c = cas
    for label in (b"TRUSTED CERTIFICATE", b"X509 CRL"):
        body = a.cert_pem.bytes().replace(b"CERTIFICATE", label)
        with pytest.raises(ValueError, match="unexpected PEM block"):
            TrustStore.from_pem(a.cert_pem.bytes() + body)
    folder = tmp_path / "ca.d"
    folder.mkdir()
    a.cert_pem.write_to_path(folder / "a.pem")
    b.cert_pem.write_to_path(folder / ".a.pem.swp")
    (folder / "sub.pem").mkdir()
    c.cert_pem.write_to_path(folder / "sub.pem" / "c.pem")
    os.mkfifo(folder / "pipe.pem")
    (folder / "dangling.pem").symlink_to(folder / "gone.pem")
    b.cert_pem.write_to_path(folder / "b.pem~")
    b.cert_pem.write_to_path(folder / "b.pem.save")
    trust = TrustStore.from_directory(folder, reload_interval=None)
    assert trust.certificates == (a.certificate,)


def test_a_relative_path_keeps_naming_the_same_file_after_a_chdir(
    cas, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Relative paths were kept relative and resolved again at every reload: after the process
    changed its working directory (a daemon's ``chdir("/")``, a worker's ``--chdir``), the
    next reload read whatever ``ca.pem`` the new directory held, and trusted it. They now
    name the file they named when the store was built."""
    a, b, _ = cas
    (tmp_path / "app").mkdir()
    (tmp_path / "elsewhere").mkdir()
    _write_settled(tmp_path / "app" / "ca.pem", a.cert_pem.bytes())
    _write_settled(tmp_path / "elsewhere" / "ca.pem", b.cert_pem.bytes())
    monkeypatch.chdir(tmp_path / "app")
    trust = TrustStore.from_pem_file("ca.pem", reload_interval=None)
    pins = TrustStore.from_directory(".", reload_interval=None)
    for where, ca in (("app", a), ("elsewhere", b)):
        (tmp_path / where / "crls").mkdir()
        (tmp_path / where / "crls" / f"{where}.crl").write_bytes(ca.crl().bytes())
    from mtlsauth import CRLSet

    crls = CRLSet.from_paths("crls", reload_interval=None)
    monkeypatch.chdir(tmp_path / "elsewhere")
    crls.reload()
    assert crls.health()["files"] == [str(tmp_path / "app" / "crls" / "app.crl")]
    assert trust.reload() is False
    assert pins.reload() is False
    assert trust.certificates == (a.certificate,)
    assert pins.certificates == (a.certificate,)
    assert trust.health()[0]["paths"] == [str(tmp_path / "app" / "ca.pem")]


@pytest.mark.parametrize(
    ("load", "use"),
    [
        (TrustStore.from_pem_file, "TrustStore.from_pem()"),
        (TrustStore.from_directory, "TrustStore.from_pem()"),
        (TrustStore.from_pkcs12, "TrustStore.from_pem()"),
    ],
)
@pytest.mark.parametrize("as_bytes", [False, True])
def test_pem_text_where_a_path_belongs_says_so(cas, load, use, as_bytes) -> None:
    """A pasted PEM is not reported as the system's "File name too long" over base64."""
    text = cas[0].cert_pem.text()
    with pytest.raises(ValueError, match="PEM text where a file path belongs") as caught:
        load(text.encode() if as_bytes else text)
    assert use in str(caught.value)
    assert "MII" not in str(caught.value)  # no certificate body in the message


def test_pem_text_given_to_crlset_from_paths_says_so(cas) -> None:
    with pytest.raises(ValueError, match=r"PEM text where a file path belongs.*CRLSet\.from_pem"):
        CRLSet.from_paths(cas[0].crl().text())


def test_a_path_or_pem_text_given_as_trust_store_names_the_constructor(cas, tmp_path) -> None:
    from mtlsauth import server_ssl_context

    ca_file = tmp_path / "ca.pem"
    cas[0].cert_pem.write_to_path(ca_file)
    pem = cas[0].cert_pem.text()
    cases = [
        (
            str(ca_file),
            r"not a path: use TrustStore\.from_pem_file\(" + re.escape(repr(str(ca_file))),
        ),
        (ca_file, r"TrustStore\.from_pem_file\("),
        (str(tmp_path), r"TrustStore\.from_directory\("),
        (pem, r"for PEM text use TrustStore\.from_pem\(text\)"),
        ([str(ca_file)], r"not list"),
    ]
    for value, message in cases:
        with pytest.raises(TypeError, match=message):
            Verifier(trust_store=value)
        with pytest.raises(TypeError, match=message):
            server_ssl_context(certfile="x.pem", trust_store=value)


def test_server_ssl_context_certfile_as_pem_text_says_so(cas) -> None:
    from mtlsauth import server_ssl_context

    cert = cas[0].issue_client_cert(common_name="localhost")
    with pytest.raises(ValueError, match="certfile: got PEM text where a file path") as caught:
        server_ssl_context(certfile=cert.cert_pem.text(), trust_store=cas[0].trust_store())
    assert "MII" not in str(caught.value)
