"""The command line: every subcommand, exit codes 0/1/2, --json, colour only on a terminal."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mtlsauth._cli._main import Out, main
from mtlsauth._cli._testpki import write_test_pki
from mtlsauth._forwarded._presets import PRESETS
from mtlsauth.testing import CA, encode_forwarded

ANSI = "\x1b["


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return write_test_pki(tmp_path_factory.mktemp("cli-pki"))


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def chain(pki, case: str) -> Path:
    return pki.clients[case][0]


# -- verify --------------------------------------------------------------------------------------
VERIFY = [
    # (client, extra arguments, exit status, code)
    pytest.param("good", [], 0, "ok", id="valid"),
    pytest.param("expired", [], 1, "certificate_expired", id="expired"),
    pytest.param("revoked", ["--crl", "{crl}"], 1, "certificate_revoked", id="revoked with --crl"),
    pytest.param("revoked", [], 0, "ok", id="revoked without --crl"),
    pytest.param("wrong-ca", [], 1, "untrusted_issuer", id="wrong CA"),
    pytest.param("other-org", ["--policy", "{policy}"], 1, "organization_not_allowed", id="policy"),
    pytest.param("good", ["--policy", "{policy}"], 0, "ok", id="policy admits"),
    pytest.param("good", ["--at", "2000-01-01"], 1, "certificate_not_yet_valid", id="--at past"),
    pytest.param("good", ["--at", "{in_30_days}"], 0, "ok", id="--at next month"),
    pytest.param(
        "good", ["--at", "2100-01-01T00:00:00+02:00"], 1, "certificate_expired", id="--at 2100"
    ),
    pytest.param("good", ["--crl", "{crl}", "--crl-mode", "leaf"], 0, "ok", id="crl leaf mode"),
    pytest.param(
        "good", ["--max-depth", "0"], 1, "chain_too_long", id="depth 0 refuses intermediate"
    ),
]


@pytest.fixture(scope="module")
def placeholders(pki, tmp_path_factory):
    import datetime as dt

    policy = tmp_path_factory.mktemp("policy") / "policy.toml"
    policy.write_text('[policy]\norganizations = ["Example Corp"]\n')
    soon = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=30)
    return {
        "crl": str(pki.path("crl.pem")),
        "policy": str(policy),
        "in_30_days": soon.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


@pytest.mark.parametrize(("client", "extra", "status", "code"), VERIFY)
def test_verify(capsys, pki, placeholders, client, extra, status, code):
    args = [a.format(**placeholders) for a in extra]
    rc, out, err = run(
        capsys, "verify", "--json", "--ca", pki.path("ca.pem"), *args, chain(pki, client)
    )
    result = json.loads(out)
    assert (rc, result["code"], result["accepted"]) == (status, code, status == 0)
    assert err == ""
    if status == 1:  # a policy refusal is 403 Forbidden; every certificate problem is 401
        assert result["status"] == (403 if code == "organization_not_allowed" else 401)
        assert result["explanation"]


def test_verify_human_output(capsys, pki):
    rc, out, _ = run(capsys, "verify", "--ca", pki.path("ca.pem"), chain(pki, "good"))
    assert rc == 0
    assert out.startswith("accepted")
    assert "common name:" in out
    assert "spiffe://example.test/ns/payments/sa/alice" in out
    assert ANSI not in out  # captured output is not a terminal
    rc, out, _ = run(capsys, "verify", "--ca", pki.path("ca.pem"), chain(pki, "wrong-ca"))
    assert rc == 1
    assert out.startswith("refused  untrusted_issuer (HTTP 401)")
    assert "why: the chain does not lead to a CA given with --ca" in out


def test_verify_leaf_only_needs_intermediate(capsys, pki, tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    leaf = x509.load_pem_x509_certificates(chain(pki, "good").read_bytes())[0]
    der = tmp_path / "leaf.der"
    der.write_bytes(leaf.public_bytes(Encoding.DER))
    ca = pki.path("ca.pem")
    assert run(capsys, "verify", "--ca", ca, der)[0] == 1
    rc, _, _ = run(
        capsys, "verify", "--ca", ca, "--intermediate", pki.path("intermediate.pem"), der
    )
    assert rc == 0


def test_verify_ca_directory_and_stdin(capsys, pki, monkeypatch, tmp_path):
    import shutil

    for name in ("ca.pem", "other-ca.pem"):
        shutil.copy(pki.path(name), tmp_path / name)
    data = chain(pki, "good").read_bytes()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    rc, out, _ = run(capsys, "verify", "--json", "--ca", tmp_path, "-")
    assert rc == 0
    assert json.loads(out)["identity"]["common_name"] == "alice"


def test_verify_pkcs12_ca(capsys, pki, tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, pkcs12

    root = x509.load_pem_x509_certificate(pki.path("ca.pem").read_bytes())
    p12 = tmp_path / "trust.p12"
    p12.write_bytes(
        pkcs12.serialize_java_truststore(
            [pkcs12.PKCS12Certificate(root, b"root")], BestAvailableEncryption(b"changeit")
        )
    )
    args = ["verify", "--ca", p12, "--ca-password", "changeit", chain(pki, "good")]
    assert run(capsys, *args)[0] == 0


def test_verify_with_config_routes(capsys, pki, tmp_path):
    config = tmp_path / "mtls.toml"
    config.write_text(
        f'[trust]\nfiles = ["{pki.path("ca.pem")}"]\n'
        '[[routes]]\npath = "/admin/*"\npolicy = { organizational_units = ["ops"] }\n'
        '[[routes]]\npath = "/public/*"\nmode = "off"\n'
    )
    good = chain(pki, "good")
    base = ["verify", "--json", "--config", config]
    assert run(capsys, *base, good)[0] == 0
    rc, out, _ = run(capsys, *base, "--path", "/admin/users", good)
    assert (rc, json.loads(out)["code"]) == (1, "organizational_unit_not_allowed")
    rc, out, _ = run(capsys, *base, "--path", "/public/x", chain(pki, "wrong-ca"))
    assert (rc, json.loads(out)["code"]) == (0, "skipped")


def test_verify_forwarded_header_value(capsys, pki, tmp_path):
    der = ders(chain(pki, "good"))
    header = tmp_path / "header.txt"
    header.write_text(dict(encode_forwarded("nginx", der))["X-SSL-Client-Cert"])
    args = ["verify", "--ca", pki.path("ca.pem"), "--header-format", "nginx"]
    assert run(capsys, *args, header)[0] == 1  # nginx forwards the leaf only
    rc, _, _ = run(capsys, *args, "--intermediate", pki.path("intermediate.pem"), header)
    assert rc == 0


def ders(path: Path) -> tuple[bytes, ...]:
    from mtlsauth._encoding import chain_to_der

    return chain_to_der(path.read_bytes())


USAGE_ERRORS = [
    pytest.param(["verify", "{good}"], "give at least one --ca", id="no --ca"),
    pytest.param(
        ["verify", "--ca", "{ca}", "--at", "tomorrow", "{good}"],
        "--at 'tomorrow' is not an ISO 8601 time",
        id="bad --at",
    ),
    pytest.param(
        ["verify", "--ca", "{ca}", "--at", "0001-01-01T00:00:00+01:00", "{good}"],
        "outside the years 1 to 9999 in UTC",
        id="--at before the year 1 in UTC",
    ),
    pytest.param(
        ["verify", "--ca", "{ca}", "--at", "9999-12-31T23:59:59-01:00", "{good}"],
        "outside the years 1 to 9999 in UTC",
        id="--at after 9999 in UTC",
    ),
    pytest.param(["verify", "--ca", "{ca}", "{missing}"], "cannot read", id="missing CERT"),
    pytest.param(
        ["verify", "--ca", "{ca}", "{garbage}"], "not a PEM or DER certificate", id="garbage CERT"
    ),
    pytest.param(["verify", "--ca", "{garbage}", "{good}"], "no certificate found", id="bad --ca"),
    pytest.param(["verify", "--ca", "{missing}", "{good}"], "missing.pem", id="missing --ca"),
    pytest.param(["verify", "--ca", "{ca}", "--crl", "{ca}", "{good}"], "ca.pem", id="CA as --crl"),
    pytest.param(
        ["verify", "--ca", "{ca}", "--policy", "{bad_policy}", "{good}"],
        r"[policy].organizations: must not be empty",
        id="bad --policy",
    ),
    pytest.param(
        ["verify", "--config", "{bad_policy}", "--ca", "{ca}", "{good}"],
        "drop the others",
        id="--config with --ca",
    ),
    pytest.param(
        ["verify", "--ca", "{ca}", "--header-format", "nginxx", "{good}"],
        "unknown --header-format 'nginxx'",
        id="unknown header format",
    ),
    pytest.param(["inspect", "{garbage}"], "not a PEM or DER certificate", id="inspect garbage"),
    pytest.param(["inspect", "{empty}"], "no certificate in the input", id="inspect empty"),
    pytest.param(
        ["inspect", "--header-format", "apache", "{null}"],
        "no certificate in the input",
        id="apache (null)",
    ),
    pytest.param(
        ["inspect", "--header-format", "haproxy", "{garbage}"],
        "not a valid haproxy header value",
        id="bad header value",
    ),
]


@pytest.fixture(scope="module")
def files(pki, tmp_path_factory):
    d = tmp_path_factory.mktemp("cli-files")
    (d / "garbage.pem").write_text("hello, this is not a certificate\n")
    (d / "empty.pem").write_text("")
    (d / "null.txt").write_text("(null)\n")
    (d / "bad.toml").write_text("[policy]\norganizations = []\n")
    return {
        "good": str(chain(pki, "good")),
        "ca": str(pki.path("ca.pem")),
        "missing": str(d / "missing.pem"),
        "garbage": str(d / "garbage.pem"),
        "empty": str(d / "empty.pem"),
        "null": str(d / "null.txt"),
        "bad_policy": str(d / "bad.toml"),
    }


@pytest.mark.parametrize(("argv", "message"), USAGE_ERRORS)
def test_usage_and_input_errors_exit_2(capsys, files, argv, message):
    rc, out, err = run(capsys, *(a.format(**files) for a in argv))
    assert rc == 2
    assert out == ""
    assert err.startswith("mtlsauth: error: ")
    assert message in err
    assert "Traceback" not in err
    assert err.count("\n") == 1  # one line


def test_json_error_is_also_on_stdout(capsys, files):
    rc, out, err = run(capsys, "verify", "--json", files["good"])
    assert rc == 2
    assert "give at least one --ca" in json.loads(out)["error"]
    assert "give at least one --ca" in err


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param([], id="no command"),
        pytest.param(["frobnicate"], id="unknown command"),
        pytest.param(["verify", "--ca"], id="missing value"),
        pytest.param(["verify", "--crl-mode", "sideways", "x"], id="bad choice"),
    ],
)
def test_argparse_usage_errors_exit_2(capsys, argv):
    rc, _out, err = run(capsys, *argv)
    assert rc == 2
    assert "usage: mtlsauth" in err


def test_help_exits_0(capsys):
    rc, out, _ = run(capsys, "--help")
    assert rc == 0
    for command in ("inspect", "verify", "testca", "demo"):
        assert command in out


# -- inspect -------------------------------------------------------------------------------------
def test_inspect_chain_json(capsys, pki):
    rc, out, _ = run(capsys, "inspect", "--json", chain(pki, "good"))
    assert rc == 0
    leaf, inter = json.loads(out)["certificates"]
    assert leaf["subject"] == "CN=alice,OU=payments,O=Example Corp"
    assert leaf["spiffe_id"] == "spiffe://example.test/ns/payments/sa/alice"
    assert "URI:spiffe://example.test/ns/payments/sa/alice" in leaf["subject_alternative_names"]
    assert leaf["extended_key_usage"] == ["clientAuth"]
    assert leaf["basic_constraints"] == {"ca": False, "path_length": None}
    assert leaf["key"] == "EC secp256r1 (256 bits)"
    assert len(leaf["fingerprint_sha256"]) == 64
    assert len(leaf["fingerprint_sha1"]) == 40
    assert leaf["validity"].startswith("valid for ")
    assert inter["basic_constraints"]["ca"] is True
    assert "key_cert_sign" in inter["key_usage"]


def test_inspect_human_output(capsys, pki):
    rc, out, _ = run(capsys, "inspect", chain(pki, "expired"))
    assert rc == 0
    assert "certificate 1 of 2 (leaf)" in out
    assert "expired " in out
    assert "SHA-256:" in out
    assert ANSI not in out


def test_inspect_der_and_rsa(capsys, tmp_path):
    from cryptography.hazmat.primitives.serialization import Encoding

    cert = CA().issue_client_cert(
        common_name="rsa", key_type="rsa", eku=None, dns_names=["a.example"]
    )
    path = tmp_path / "leaf.der"
    path.write_bytes(cert.certificate.public_bytes(Encoding.DER))
    rc, out, _ = run(capsys, "inspect", "--json", path)
    info = json.loads(out)["certificates"][0]
    assert (rc, info["key"], info["extended_key_usage"]) == (0, "RSA 2048", [])
    assert info["subject_alternative_names"] == ["DNS:a.example"]


def _header_cases():
    for name, cfg in sorted(PRESETS.items()):
        if cfg.get("identity_format"):
            continue  # verified-identity presets: the certificate is one of several headers
        yield pytest.param(name, str(cfg["header"]), id=name)


@pytest.mark.parametrize(("preset", "header"), list(_header_cases()))
def test_inspect_forwarded_header_of_every_preset(capsys, pki, tmp_path, preset, header):
    value = dict(encode_forwarded(preset, ders(chain(pki, "good"))))[header]
    path = tmp_path / "header.txt"
    path.write_text(f"{header}: {value}\n")  # a whole header line, as copied from a log
    rc, out, err = run(capsys, "inspect", "--json", "--header-format", preset, path)
    assert (rc, err) == (0, "")
    infos = json.loads(out)["certificates"]
    assert infos[0]["subject"] == "CN=alice,OU=payments,O=Example Corp"
    path.write_text(value)  # the bare value works too
    assert run(capsys, "inspect", "--header-format", preset, path)[0] == 0


# -- testca --------------------------------------------------------------------------------------
def test_testca_writes_a_working_pki(capsys, tmp_path):
    target = tmp_path / "pki"
    rc, out, _ = run(capsys, "testca", "--json", target)
    assert rc == 0
    files = json.loads(out)["files"]
    for name in ("ca.pem", "intermediate.pem", "crl.pem", "server.pem", "server.key",
                 "client-good.pem", "client-good.key", "client-expired.pem",
                 "client-revoked.pem", "client-wrong-ca.pem"):  # fmt: skip
        assert Path(files[name]["path"]).is_file(), name
    assert (target / "client-good.key").stat().st_mode & 0o077 == 0  # keys are private
    ca, crl = target / "ca.pem", target / "crl.pem"
    assert run(capsys, "verify", "--ca", ca, "--crl", crl, target / "client-good.pem")[0] == 0
    assert run(capsys, "verify", "--ca", ca, "--crl", crl, target / "client-revoked.pem")[0] == 1
    # the server certificate is for localhost: the TLS client side accepts it
    import ssl

    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.load_cert_chain(str(target / "client-good.pem"), str(target / "client-good.key"))
    rc, out, err = run(capsys, "testca", target)
    assert rc == 2
    assert "would overwrite" in err
    assert "--force" in err
    rc, out, _ = run(capsys, "testca", "--force", target)
    assert rc == 0
    assert "test PKI written to" in out
    assert "mtlsauth verify --ca" in out
    assert "ca-bundle.pem" not in out.split("Try:")[1]  # the root is the anchor, not a bundle
    assert "trust anchor is ca.pem" in out


def test_testca_bundle_is_validated_up_to_the_root(capsys, tmp_path):
    target = tmp_path / "pki"
    assert run(capsys, "testca", "--json", target)[0] == 0
    bundle, crl = target / "ca-bundle.pem", target / "crl.pem"
    assert run(capsys, "verify", "--ca", bundle, "--crl", crl, target / "client-good.pem")[0] == 0
    assert (
        run(capsys, "verify", "--ca", bundle, "--crl", crl, target / "client-revoked.pem")[0] == 1
    )
    # The intermediate is checked against the root's CRL: with only the intermediate's CRL,
    # the intermediate's status is unknown, which refuses.
    only_inter = tmp_path / "inter-crl.pem"
    end = b"-----END X509 CRL-----\n"
    only_inter.write_bytes(crl.read_bytes().split(end)[1] + end)  # root's CRL first, then this
    rc, out, _ = run(capsys, "verify", "--json", "--ca", bundle, "--crl", only_inter,
                     target / "client-good.pem")  # fmt: skip
    assert rc == 1
    assert json.loads(out)["code"] == "revocation_unavailable"


# -- output --------------------------------------------------------------------------------------
class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("stream", "color", "no_color", "coloured"),
    [
        pytest.param(FakeTTY, "auto", None, True, id="terminal"),
        pytest.param(FakeTTY, "auto", "1", False, id="terminal with NO_COLOR"),
        pytest.param(io.StringIO, "auto", None, False, id="piped"),
        pytest.param(io.StringIO, "always", None, True, id="--color always"),
        pytest.param(FakeTTY, "never", None, False, id="--color never"),
    ],
)
def test_colour_only_on_a_terminal(monkeypatch, stream, color, no_color, coloured):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    if no_color:
        monkeypatch.setenv("NO_COLOR", no_color)
    out = Out(stream(), color)
    out.line(out.style("accepted", "green"))
    out.table(["a", "b"], [[out.style("x", "red"), "yy"]])
    text = out.stream.getvalue()
    assert (ANSI in text) is coloured
    # alignment ignores colour codes: the second column starts at the same place
    lines = [line for line in text.splitlines() if "yy" in line]
    assert lines[0].replace("\x1b[31m", "").replace("\x1b[0m", "") == "x  yy"


def test_python_dash_m_and_piped_output(pki):
    proc = subprocess.run(
        [sys.executable, "-m", "mtlsauth", "verify", "--ca", str(pki.path("ca.pem")),
         str(chain(pki, "expired"))],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stdout.startswith("refused  certificate_expired")
    assert ANSI not in proc.stdout


def test_verify_with_config_routes_keeps_the_deny_lists(capsys, pki, tmp_path):
    from cryptography import x509

    leaf = x509.load_pem_x509_certificates(chain(pki, "good").read_bytes())[0]
    config = tmp_path / "mtls.toml"
    config.write_text(
        f'[trust]\nfiles = ["{pki.path("ca.pem")}"]\n'
        f'[policy]\ndeny_serials = ["0x{leaf.serial_number:x}"]\n'
        '[[routes]]\npath = "/admin/*"\npolicy = { common_names = ["alice"] }\n'
    )
    base = ["verify", "--json", "--config", config, chain(pki, "good")]
    for path in ("/", "/admin/users"):
        rc, out, _ = run(capsys, *base, "--path", path)
        assert (rc, json.loads(out)["code"]) == (1, "certificate_denied")
