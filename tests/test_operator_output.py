"""Operator output holding client-chosen text: the CLI shows it inert, JSON keeps it exact."""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path

import pytest

from mtlsauth._cli import _main
from mtlsauth._cli._main import main
from mtlsauth.testing import CA

HOSTILE_CN = "al\x1b[2Jice\r\nrefused  forged line\u202egnp.exe\x08\x00"
OSC8 = "root\x1b]8;;https://evil.example/\x07CA\x1b]8;;\x07"
HOSTILE_URI = "spiffe://example.org/\x1b[31mred"
# What must never reach the terminal from a certificate: ESC, CR, NUL, BS, U+202E, and a
# newline inside one value.
RAW = ("\x1b", "\r", "\x00", "\x08", "\u202e", "\x07")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    ca = CA(common_name=OSC8)
    leaf = ca.issue_client_cert(common_name=HOSTILE_CN, uris=[HOSTILE_URI])
    (d / "ca.pem").write_bytes(ca.cert_pem.bytes())
    (d / "leaf.pem").write_bytes(leaf.cert_pem.bytes())
    (d / "policy.toml").write_text('[policy]\ncommon_names = ["bob"]\n')
    return d


def run(capsys, *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_inert(text: str) -> None:
    for ch in RAW:
        assert ch not in text, repr(ch)


@pytest.mark.parametrize("color", ["never", "always"])
def test_inspect_shows_certificate_names_inert(capsys, hostile, color):
    code, out, err = run(capsys, "inspect", hostile / "leaf.pem", "--color", color)
    assert code == 0, err
    text = out.replace("\x1b[0m", "").replace("\x1b[2m", "").replace("\x1b[1;36m", "")
    text = text.replace("\x1b[32m", "")
    assert_inert(text)
    subject = next(line for line in out.splitlines() if "subject:" in line)
    assert "\\x1b[2J" in subject
    assert "\\u202e" in subject
    assert "\\x0d\\x0a" in subject
    assert not any(line.startswith("refused") for line in out.splitlines())
    assert "\\x1b]8" in out
    assert "evil.example/\\x07" in out


def test_verify_accepted_shows_identity_inert(capsys, hostile):
    code, out, err = run(
        capsys, "verify", "--ca", hostile / "ca.pem", hostile / "leaf.pem", "--color", "never"
    )
    assert code == 0, err
    assert_inert(out)
    assert len(out.splitlines()) == len([ln for ln in out.splitlines() if ln.strip()])
    assert "spiffe://example.org/\\x1b[31mred" in out


def test_verify_refused_detail_inert(capsys, hostile):
    code, out, err = run(
        capsys,
        "verify",
        "--ca",
        hostile / "ca.pem",
        "--policy",
        hostile / "policy.toml",
        hostile / "leaf.pem",
        "--color",
        "never",
    )
    assert code == 1, err
    assert_inert(out)
    assert out.splitlines()[0].startswith("refused")
    assert sum(line.startswith("refused") for line in out.splitlines()) == 1


def test_json_keeps_exact_values(capsys, hostile):
    code, out, _ = run(capsys, "verify", "--ca", hostile / "ca.pem", hostile / "leaf.pem", "--json")
    assert code == 0
    assert "\x1b" not in out  # JSON escapes controls itself
    identity = json.loads(out)["identity"]
    assert identity["common_name"] == HOSTILE_CN
    assert identity["uris"] == [HOSTILE_URI]
    code, out, _ = run(capsys, "inspect", hostile / "leaf.pem", "--json")
    assert code == 0
    assert json.loads(out)["certificates"][0]["common_name"] == HOSTILE_CN


def test_error_line_is_one_inert_line(capsys, tmp_path):
    name = tmp_path / "x\x1b[2J\nmtlsauth: ok"
    code, _out, err = run(capsys, "inspect", name)
    assert code == 2
    assert_inert(err)
    assert len(err.splitlines()) == 1
    assert "\\x1b[2J\\x0amtlsauth: ok" in err


def test_display():
    display = _main.display
    assert display("CN=a\\,b") == "CN=a\\,b"  # RFC 4514 escapes stay readable
    assert display("é ü 日本") == "é ü 日本"
    assert display("\x1b\x9b\u2028\u202e\U000e0001") == "\\x1b\\x9b\\u2028\\u202e\\U000e0001"
    assert display("a" + chr(0xD800)) == "a\\ud800"


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_endless_input_is_an_input_error(capsys, monkeypatch):
    monkeypatch.setattr(_main, "MAX_INPUT", 4096)
    code, _out, err = run(capsys, "inspect", "/dev/zero")
    assert code == 2
    assert "larger than" in err
    assert "Traceback" not in err


def test_oversized_stdin_is_an_input_error(capsys, monkeypatch):
    import io

    monkeypatch.setattr(_main, "MAX_INPUT", 64)
    fake = io.TextIOWrapper(io.BytesIO(b"A" * 1000))
    monkeypatch.setattr(sys, "stdin", fake)
    code, _, err = run(capsys, "inspect", "-")
    assert code == 2
    assert "larger than" in err


@pytest.mark.parametrize("kind", ["directory", "symlink loop", "garbage pem", "random der"])
def test_unreadable_inputs_exit_2(capsys, tmp_path, kind):
    if kind == "directory":
        path = tmp_path
    elif kind == "symlink loop":
        (tmp_path / "a").symlink_to(tmp_path / "b")
        (tmp_path / "b").symlink_to(tmp_path / "a")
        path = tmp_path / "a"
    elif kind == "garbage pem":
        path = tmp_path / "g.pem"
        path.write_bytes(
            b"-----BEGIN CERTIFICATE-----\n\xff\xfe\x1b[2J\n-----END CERTIFICATE-----\n"
        )
    else:
        path = tmp_path / "r.der"
        path.write_bytes(bytes(range(256)) * 8)
    for command in (["inspect", path], ["verify", "--ca", path, path]):
        code, _, err = run(capsys, *command)
        assert code == 2, (command, err)
        assert "Traceback" not in err
        assert_inert(err)


# -- mtlsauth.testing encodes as the proxy does ----------------------------------------------
CAPTURES = json.loads(
    (Path(__file__).parent / "captures" / "proxies.json").read_text(encoding="utf-8")
)


def _xfcc_subject(value: str) -> str:
    start = value.index('Subject="') + len('Subject="')
    end = value.index('";URI=', start)
    return value[start:end]


@pytest.mark.parametrize(
    "capture",
    [c for c in CAPTURES["captures"] + CAPTURES["reconstructed"] if c["proxy"] == "envoy"],
    ids=lambda c: c["client"],
)
def test_envoy_helper_subject_is_the_captured_subject(capture):
    """Envoy prints non-ASCII as ``\\C3\\AB`` (OpenSSL ESC_MSB); the helper used to write the
    characters themselves, a header value Envoy never sends."""
    from mtlsauth.testing import encode_forwarded

    ders = [base64.b64decode(d) for d in CAPTURES["chains"][capture["client"]]]
    (got,) = [v for k, v in encode_forwarded("envoy", ders) if k == "X-Forwarded-Client-Cert"]
    want = dict(capture["headers"])["X-Forwarded-Client-Cert"]
    assert got.isascii()
    assert _xfcc_subject(got) == _xfcc_subject(want)
    assert got == want


def _more_names():
    from cryptography import x509
    from cryptography.x509.oid import NameOID, ObjectIdentifier

    a = x509.NameAttribute
    return {
        "attributes OpenSSL names": x509.Name(
            [
                a(NameOID.EMAIL_ADDRESS, "a@b.example"),
                a(NameOID.TITLE, "t"),
                a(NameOID.POSTAL_CODE, "1"),
                a(NameOID.PSEUDONYM, "p"),
                a(NameOID.BUSINESS_CATEGORY, "b"),
                a(NameOID.JURISDICTION_COUNTRY_NAME, "DE"),
                a(NameOID.DN_QUALIFIER, "q"),
                a(NameOID.INITIALS, "I"),
                a(NameOID.GENERATION_QUALIFIER, "Jr"),
                a(NameOID.ORGANIZATION_IDENTIFIER, "VATDE-1"),
            ]
        ),
        "controls and non-ASCII": x509.Name([a(NameOID.COMMON_NAME, "x\x1b[2J\x7f é 日")]),
        "long unknown attribute": x509.Name(
            [a(ObjectIdentifier("1.3.6.1.4.1.99999.2"), "y" * 200)]
        ),
        "multi-valued RDN": x509.Name(
            [
                x509.RelativeDistinguishedName(
                    [a(NameOID.COMMON_NAME, "a"), a(NameOID.ORGANIZATIONAL_UNIT_NAME, "b")]
                ),
                x509.RelativeDistinguishedName([a(NameOID.ORGANIZATION_NAME, "o")]),
            ]
        ),
    }


@pytest.mark.parametrize("label", list(_more_names()))
def test_envoy_helper_subject_is_openssls(label):
    import shutil
    import subprocess

    from cryptography import x509

    from mtlsauth.testing._encode import openssl_rfc2253

    openssl = shutil.which("openssl")
    if openssl is None:  # pragma: no cover
        pytest.skip("the openssl command line is not installed")
    client = CA(organization="subjects").issue_client_cert(subject=_more_names()[label])
    printed = subprocess.run(
        [openssl, "x509", "-noout", "-subject", "-nameopt", "RFC2253"],
        input=client.cert_pem.bytes(),
        capture_output=True,
        check=True,
    ).stdout.decode("ascii")
    want = printed.removesuffix("\n").removeprefix("subject=")
    subject = x509.load_der_x509_certificate(client.der).subject
    assert openssl_rfc2253(subject) == want


@pytest.mark.parametrize("env", [{"PYTHONIOENCODING": "ascii"}, {"LC_ALL": "C", "PYTHONUTF8": "0"}])
def test_non_ascii_name_on_an_ascii_terminal(tmp_path, env):
    """A non-ASCII name on a stream that cannot encode it is escaped, not a traceback (whose
    exit status 1 would read as "refused")."""
    import subprocess

    leaf = CA().issue_client_cert(common_name="Zoë 日本")
    path = tmp_path / "leaf.pem"
    path.write_bytes(leaf.cert_pem.bytes())
    src = str(Path(_main.__file__).resolve().parents[2])
    run_env = {k: v for k, v in os.environ.items() if k not in ("LANG", "LC_ALL", "LC_CTYPE")}
    run_env |= {"PYTHONPATH": src, **env}
    done = subprocess.run(
        [sys.executable, "-m", "mtlsauth", "inspect", str(path)],
        capture_output=True,
        env=run_env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert b"Traceback" not in done.stderr
    assert b"CN=Zo\\xeb \\u65e5\\u672c" in done.stdout


# -- mtlsauth testca in a folder someone else can write to -----------------------------------
def test_testca_force_leaves_no_key_readable_by_others(capsys, tmp_path):
    (tmp_path / "ca.key").write_bytes(b"old")
    (tmp_path / "ca.key").chmod(0o644)
    code, _, err = run(capsys, "testca", tmp_path, "--force")
    assert code == 0, err
    for key in tmp_path.glob("*.key"):
        assert key.stat().st_mode & 0o077 == 0, key


@pytest.mark.parametrize("force", [True, False])
def test_testca_writes_through_no_planted_link(capsys, tmp_path, force):
    out = tmp_path / "pki"
    out.mkdir()
    target = tmp_path / "elsewhere"
    (out / "server.key").symlink_to(target)  # dangling: .exists() is False
    code, _, err = run(capsys, "testca", out, *(["--force"] if force else []))
    assert not target.exists()
    if force:
        assert code == 0, err
        assert not (out / "server.key").is_symlink()
    else:
        assert code == 2
        assert "server.key" in err


# -- the pytest plugin's scope is the one a server makes ----------------------------------------
@pytest.mark.parametrize(
    ("target", "path", "raw_path", "query"),
    [
        ("/orders", "/orders", b"/orders", b""),
        ("/%61dmin", "/admin", b"/%61dmin", b""),
        ("/a%2Fb", "/a/b", b"/a%2Fb", b""),
        ("/a%20b?x=1&y=%20", "/a b", b"/a%20b", b"x=1&y=%20"),
        ("/café?q=é", "/café", b"/caf%C3%A9", b"q=%C3%A9"),
    ],
)
def test_asgi_tls_scope_path_as_a_server_fills_it(target, path, raw_path, query):
    """uvicorn and hypercorn set ``raw_path`` to the target's bytes and ``path`` to its
    percent-decoded text; the helper set both to the text as given, so a test of
    ``/%61dmin`` met a route rule for ``/admin`` differently than production does."""
    from mtlsauth.pytest_plugin import build_asgi_tls_scope

    scope = build_asgi_tls_scope(None, path=target)
    assert scope["path"] == path
    assert scope["raw_path"] == raw_path
    assert scope["query_string"] == query
