"""Misconfigurations that used to end in a wrong acceptance or a refusal pointing the wrong way."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mtlsauth import ForwardedCert, TrustStore, Verifier, server_ssl_context
from mtlsauth._cli._main import main
from mtlsauth._cli._testpki import TestPKI, write_test_pki
from mtlsauth._errors import CertificateInvalid


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return write_test_pki(tmp_path_factory.mktemp("pki"))


# -- trust stores -------------------------------------------------------------------------
def test_from_pem_file_refuses_a_directory(pki: TestPKI) -> None:
    with pytest.raises(ValueError, match=r"is a directory: use TrustStore\.from_directory"):
        TrustStore.from_pem_file(pki.directory)


def test_from_pem_given_a_file_path_names_the_right_constructor(pki: TestPKI) -> None:
    for given in (pki.path("ca.pem"), str(pki.path("ca.pem"))):
        with pytest.raises(TypeError, match="use from_pem_file"):
            TrustStore.from_pem(given)  # type: ignore[arg-type]


def test_from_pkcs12_refuses_a_directory(pki: TestPKI) -> None:
    with pytest.raises(ValueError, match="is a directory"):
        TrustStore.from_pkcs12(pki.directory)


def test_a_directory_of_mixed_files_never_lets_a_wrong_ca_client_in(
    pki: TestPKI, tmp_path: Path
) -> None:
    # The trap as reported: the folder holds client leaves next to ca.pem.
    for name in ("ca.pem", "intermediate.pem", "client-wrong-ca.pem"):
        (tmp_path / name).write_bytes(pki.path(name).read_bytes())
    (tmp_path / "client-wrong-ca.pem").write_bytes(
        pki.path("client-wrong-ca.pem").read_bytes().split(b"-----END CERTIFICATE-----")[0]
        + b"-----END CERTIFICATE-----\n"
    )
    store = TrustStore.from_directory(tmp_path, reload_interval=None)
    with pytest.raises(ValueError, match=r"end-entity certificate .*CN=alice"):
        Verifier(trust_store=store)


def test_end_entity_in_trust_store_is_refused_with_the_way_out(pki: TestPKI) -> None:
    store = TrustStore.from_pem_file(pki.path("client-good.pem"), reload_interval=None)
    with pytest.raises(ValueError, match=r"end-entity certificate .*CN=alice.*pinned="):
        Verifier(trust_store=store)
    with pytest.raises(ValueError, match="end-entity"):
        server_ssl_context(
            certfile=pki.path("server.pem"), keyfile=pki.path("server.key"), trust_store=store
        )


def test_a_pinned_trust_store_of_leaves_still_works(pki: TestPKI) -> None:
    store = TrustStore.from_pem_file(pki.path("client-good.pem"), reload_interval=None)
    # Pins are exact certificates: end-entity certificates are what they are for. This one is
    # CA-issued, so pinning it without the intermediate is refused by fingerprint, not by CA.
    verifier = Verifier(pinned=store)
    leaf = pki.path("client-good.pem").read_text().split("-----END CERTIFICATE-----")[0]
    assert verifier.verify(leaf + "-----END CERTIFICATE-----\n").common_name == "alice"


def test_a_reload_bringing_a_leaf_into_the_store_never_anchors_it(
    pki: TestPKI, tmp_path: Path
) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(pki.path("ca.pem").read_bytes())
    store = TrustStore.from_pem_file(bundle, reload_interval=None)
    verifier = Verifier(trust_store=store, intermediates=[pki.path("intermediate.pem")])
    other_leaf = pki.path("client-wrong-ca.pem").read_bytes()
    bundle.write_bytes(pki.path("ca.pem").read_bytes() + other_leaf)
    assert store.reload()
    with pytest.raises(CertificateInvalid) as info:
        verifier.verify(other_leaf)
    assert info.value.code == "untrusted_issuer"


# -- certificate inputs given as paths ------------------------------------------------------
def test_intermediates_accept_path_and_str_paths(pki: TestPKI) -> None:
    trust = TrustStore.from_pem_file(pki.path("ca.pem"), reload_interval=None)
    leaf = pki.path("client-good.pem").read_text().split("-----END CERTIFICATE-----")[0]
    leaf += "-----END CERTIFICATE-----\n"
    for given in (pki.path("intermediate.pem"), str(pki.path("intermediate.pem"))):
        assert (
            Verifier(trust_store=trust, intermediates=[given]).verify(leaf).common_name == "alice"
        )
    # a single path, not in a list, too
    assert Verifier(trust_store=trust, intermediates=pki.path("intermediate.pem")).verify(leaf)


def test_pinned_accepts_a_path(pki: TestPKI, tmp_path: Path) -> None:
    from mtlsauth.testing import self_signed_client_cert

    cert = self_signed_client_cert(common_name="kiosk")
    path = tmp_path / "kiosk.pem"
    path.write_bytes(cert.cert_pem.bytes())
    assert Verifier(pinned=[path]).verify(cert.cert_pem.bytes()).common_name == "kiosk"


def test_a_str_that_is_neither_pem_nor_a_file_is_named(pki: TestPKI, tmp_path: Path) -> None:
    trust = TrustStore.from_pem_file(pki.path("ca.pem"), reload_interval=None)
    missing = str(tmp_path / "nope.pem")
    with pytest.raises(
        ValueError, match=r"intermediates: .*nope\.pem.*neither PEM/DER nor an existing file"
    ):
        Verifier(trust_store=trust, intermediates=[missing])
    bad = tmp_path / "not-a-cert.txt"
    bad.write_text("hello\n")
    with pytest.raises(ValueError, match=r"intermediates: .*not-a-cert\.txt: no certificate"):
        Verifier(trust_store=trust, intermediates=[bad])
    with pytest.raises(ValueError, match=r"pinned: .*not-a-cert\.txt: no certificate"):
        Verifier(pinned=[str(bad)])


def test_server_ssl_context_names_the_missing_file(pki: TestPKI, tmp_path: Path) -> None:
    trust = TrustStore.from_pem_file(pki.path("ca.pem"), reload_interval=None)
    missing = tmp_path / "server.pem"
    with pytest.raises(ValueError, match=r"certfile .*server\.pem.*does not exist"):
        server_ssl_context(certfile=missing, keyfile=pki.path("server.key"), trust_store=trust)
    with pytest.raises(ValueError, match=r"keyfile .*nokey\.key.*does not exist"):
        server_ssl_context(
            certfile=pki.path("server.pem"), keyfile=tmp_path / "nokey.key", trust_store=trust
        )
    with pytest.raises(ValueError, match=r"does not match|cannot load"):
        server_ssl_context(
            certfile=pki.path("server.pem"),
            keyfile=pki.path("client-good.key"),
            trust_store=trust,
        )


# -- presets --------------------------------------------------------------------------------
def test_preset_names_are_case_insensitive() -> None:
    fwd = ForwardedCert.preset("NGINX", trusted_proxies=["127.0.0.1"])
    assert fwd.header == ForwardedCert.preset("nginx", trusted_proxies=["127.0.0.1"]).header


def test_unknown_preset_suggests_the_near_one() -> None:
    with pytest.raises(ValueError, match=r"did you mean 'nginx'\?"):
        ForwardedCert.preset("ngnix", trusted_proxies=["127.0.0.1"])
    with pytest.raises(ValueError, match=r"did you mean 'haproxy'\?"):
        ForwardedCert.preset("HAProxi", trusted_proxies=["127.0.0.1"])


# -- command line ---------------------------------------------------------------------------
def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from mtlsauth import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"mtlsauth {__version__}"


@pytest.mark.parametrize("missing", ["fastapi", "uvicorn", "httpx"])
def test_demo_without_its_extras_prints_one_line_and_exits_2(
    missing: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, missing, None)  # import raises ImportError
    assert main(["demo", "--no-nginx"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "pip install 'mtlsauth[demo]'" in lines[0]
    assert missing in lines[0]
    assert "Traceback" not in captured.err + captured.out


def test_cli_header_format_suggests_the_near_preset(
    capsys: pytest.CaptureFixture[str], pki: TestPKI
) -> None:
    assert main(["inspect", "--header-format", "ngnix", str(pki.path("client-good.pem"))]) == 2
    assert "did you mean 'nginx'?" in capsys.readouterr().err
