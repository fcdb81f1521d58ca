"""load_config: every key, TOML and YAML, errors that name the key and the line, the examples."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, pkcs12
from hypothesis import given, settings
from hypothesis import strategies as st

from mtlsauth import (
    ForwardedCert,
    MTLSAuthError,
    Policy,
    PolicyDenied,
    Presented,
    Route,
    TrustStore,
    Verifier,
)
from mtlsauth._cli._testpki import write_test_pki
from mtlsauth._config import Config, _load, _table_header, load_config, load_policy, render_key
from mtlsauth._guard import Guard
from mtlsauth.testing import self_signed_client_cert

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return write_test_pki(tmp_path_factory.mktemp("config-pki"))


def write(tmp_path: Path, text: str, name: str = "mtls.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def base(pki) -> str:
    return f'[trust]\nfiles = ["{pki.path("ca.pem")}"]\n'


def pem(pki, case: str) -> str:
    return pki.clients[case][0].read_text()


# -- every key, accepted ---------------------------------------------------------------------
def test_minimal_config_defaults(tmp_path, pki):
    config = load_config(write(tmp_path, base(pki)))
    assert isinstance(config, Config)
    assert (config.mode, config.routes, config.exempt_paths, config.policy) == (
        "mandatory",
        (),
        (),
        None,
    )
    assert config.verifier().verify_pem(pem(pki, "good")).common_name == "alice"
    assert config.verifier() is config.verifier()  # one Verifier: one cache, one reload
    kwargs = config.middleware_kwargs()
    assert set(kwargs) == {"verifier", "mode", "routes", "exempt_paths"}


def test_full_toml_every_key(tmp_path, pki, monkeypatch):
    pinned = self_signed_client_cert(common_name="pinned-bot")
    pinned_file = pinned.cert_pem.write_to_path(tmp_path / "pinned.pem")
    p12 = tmp_path / "trust.p12"
    p12.write_bytes(
        pkcs12.serialize_key_and_certificates(
            None, None, None, [_other_ca(pki)], BestAvailableEncryption(b"changeit")
        )
    )
    cadir = tmp_path / "cadir"
    cadir.mkdir()
    shutil.copy(pki.path("ca.pem"), cadir / "root.pem")
    monkeypatch.setenv("P12_PASSWORD", "changeit")
    text = f"""
mode = "optional"
exempt_paths = ["/healthz", "/static/*"]

[trust]
files = ["{pki.path("ca.pem")}"]
directories = ["{cadir}"]
pkcs12 = [{{ path = "{p12}", password_env = "P12_PASSWORD" }}]
pinned = ["{pinned_file}"]
intermediates = ["{pki.path("intermediate.pem")}"]
max_depth = 3
clock_skew = 30
reload_interval = false

[revocation]
crls = ["{pki.path("crl.pem")}"]
mode = "chain"
allow_missing = false
grace = 60
reload_interval = 10

[forwarded]
preset = "nginx"
trusted_proxies = ["10.0.0.0/8", "127.0.0.1"]
header = "X-Client-Cert"
on_untrusted = "ignore"
max_size = 20000

[cache]
size = 100
ttl = 60

[policy]
subjects = ["CN=alice,OU=payments,O=Example Corp", "CN=pinned-bot"]
common_names = ["alice", "eve", "pinned-bot", "mallory"]
organizations = ["Example Corp", "Other Org", "Unrelated Org"]
organizational_units = ["payments"]
issuers = ["CN=mtlsauth test client CA,O=Example Corp"]
dns_names = ["*.example.test"]
uris = ["spiffe://example.test/*"]
spiffe_ids = ["spiffe://example.test/ns/payments/*"]
emails = ["@example.test"]
ip_addresses = ["10.0.0.0/8"]
fingerprints = ["{"ab" * 32}"]
deny_fingerprints = ["{"cd" * 32}"]
deny_serials = ["0x0badc0de", 12345]

[[routes]]
path = "/admin/*"
methods = ["get", "POST"]
mode = "mandatory"
policy = {{ organizational_units = ["ops"] }}

[[routes]]
regex = "^/api/v[0-9]+/"
mode = "off"
"""
    config = load_config(write(tmp_path, text))
    assert config.mode == "optional"
    assert config.exempt_paths == ("/healthz", "/static/*")
    admin, api = config.routes
    assert admin.methods == frozenset({"GET", "POST"})
    assert admin.mode == "mandatory"
    assert isinstance(admin.policy, Policy)
    assert api.pattern.pattern == "^/api/v[0-9]+/"
    assert api.mode == "off"
    verifier = config.verifier()
    assert isinstance(verifier.forwarded, ForwardedCert)
    assert verifier.forwarded.header == "X-Client-Cert"
    assert verifier.forwarded.on_untrusted == "ignore"
    assert verifier.forwarded.max_size == 20000
    assert len(verifier.trust_store) == 2  # the root (twice: file and directory) + other CA
    assert verifier.trust_store is not None
    guard = Guard(**config.middleware_kwargs())
    assert guard.resolve("/admin/x", "POST")[:1] == ("mandatory",)
    assert guard.resolve("/api/v2/x", "GET")[0] == "off"
    assert guard.resolve("/healthz", "GET") == ("off", None, True)


def _other_ca(pki):
    from cryptography import x509

    return x509.load_pem_x509_certificate(pki.path("other-ca.pem").read_bytes())


@pytest.mark.parametrize(
    ("case", "code"),
    [
        pytest.param("good", None, id="good"),
        pytest.param("revoked", "certificate_revoked", id="revoked via crls"),
        pytest.param("other-org", "organization_not_allowed", id="policy organizations"),
        pytest.param("wrong-ca", "untrusted_issuer", id="trust files only"),
    ],
)
def test_loaded_verifier_decides(tmp_path, pki, case, code):
    text = (
        base(pki)
        + f"""
[revocation]
crls = ["{pki.path("crl.pem")}"]

[policy]
organizations = ["Example Corp"]
"""
    )
    verifier = load_config(write(tmp_path, text)).verifier()
    if code is None:
        assert verifier.verify_pem(pem(pki, case)).organization == "Example Corp"
    else:
        with pytest.raises(MTLSAuthError) as info:
            verifier.verify_pem(pem(pki, case))
        assert info.value.code == code


def test_pinned_only(tmp_path):
    me = self_signed_client_cert(common_name="kiosk")
    path = me.cert_pem.write_to_path(tmp_path / "kiosk.pem")
    config = load_config(write(tmp_path, '[trust]\npinned = ["kiosk.pem"]\n'))
    assert path.exists()
    assert config.verifier().verify_pem(me.cert_pem.text()).common_name == "kiosk"


def test_relative_paths_are_relative_to_the_file(tmp_path, pki):
    sub = tmp_path / "conf"
    sub.mkdir()
    shutil.copy(pki.path("ca.pem"), sub / "ca.pem")
    config = load_config(write(sub, '[trust]\nfiles = "ca.pem"\n'))  # a string is a list of one
    assert config.verifier().verify_pem(pem(pki, "good"))


def test_any_of_alternatives_with_inherited_deny_list(tmp_path, pki):
    from cryptography import x509

    eve = x509.load_pem_x509_certificate(pki.clients["other-org"][0].read_bytes())
    text = (
        base(pki)
        + f"""
[policy]
deny_serials = [{eve.serial_number}]

[[policy.any_of]]
common_names = ["alice"]

[[policy.any_of]]
organizations = ["Other Org"]
"""
    )
    verifier = load_config(write(tmp_path, text)).verifier()
    assert verifier.verify_pem(pem(pki, "good")).common_name == "alice"
    with pytest.raises(PolicyDenied) as info:  # admitted by alternative 2, but deny-listed
        verifier.verify_pem(pem(pki, "other-org"))
    assert info.value.code == "certificate_denied"


def test_rfc8705_policy(tmp_path, pki):
    text = (
        base(pki)
        + '[policy.rfc8705]\ntls_client_auth_subject_dn = "CN=alice,OU=payments,O=Example Corp"\n'
    )
    verifier = load_config(write(tmp_path, text)).verifier()
    assert verifier.verify_pem(pem(pki, "good"))
    with pytest.raises(PolicyDenied):
        verifier.verify_pem(pem(pki, "other-org"))


def test_forwarded_without_preset(tmp_path, pki):
    text = (
        base(pki)
        + '[forwarded]\nheader = "x-client-cert"\nencoding = "der-base64"\ntrusted_proxies = ["10.1.2.3"]\n'
    )
    fwd = load_config(write(tmp_path, text)).verifier().forwarded
    assert fwd is not None
    assert fwd.encoding == "der-base64"
    assert fwd.is_trusted("10.1.2.3")


def test_ocsp_table(tmp_path, pki):
    from mtlsauth import OCSPChecker

    path = write(tmp_path, base(pki) + "[revocation.ocsp]\n")
    checker = load_config(path).verifier().revocation
    assert isinstance(checker, OCSPChecker)
    assert repr(checker) == "<OCSPChecker failure=hard-fail scope=leaf url=None>"


def test_ocsp_table_every_key(tmp_path, pki):
    from mtlsauth import CRLSet, OCSPChecker

    text = base(pki) + (
        f'[revocation]\ncrls = ["{pki.path("crl.pem")}"]\n'
        "[revocation.ocsp]\n"
        'responder_url = "http://127.0.0.1:9/ocsp"\ntimeout = 2\nmode = "soft-fail"\n'
        'scope = "chain"\ncache_size = 10\nnonce = false\nmax_age = 600\n'
        f'retry_after = 5\ntrusted_responders = ["{pki.path("ca.pem")}"]\n'
    )
    crls, ocsp = load_config(write(tmp_path, text)).verifier().revocation._checkers
    assert isinstance(crls, CRLSet)
    assert isinstance(ocsp, OCSPChecker)
    assert repr(ocsp) == "<OCSPChecker failure=soft-fail scope=chain url='http://127.0.0.1:9/ocsp'>"
    assert (ocsp._timeout, ocsp._cache_size, ocsp._nonce) == (2.0, 10, False)
    assert ocsp._max_age.total_seconds() == 600
    assert ocsp._retry_after.total_seconds() == 5
    assert len(ocsp._trusted) == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('mode = "hard"', r"\[revocation\.ocsp\]\.mode: must be one of hard-fail, soft-fail"),
        ("timeout = 0", r"\[revocation\.ocsp\]\.timeout: must be a number > 0"),
        ('timeout = "2"', r"\[revocation\.ocsp\]\.timeout: must be a number > 0, not a string"),
        ("nonce = 1", r"\[revocation\.ocsp\]\.nonce: must be true or false"),
        ('responder_url = "ftp://x/"', r"\[revocation\]\.ocsp: .*"),
        ('trusted_responders = ["nope.pem"]', r"trusted_responders\[1\]: .*no such file"),
        ("timout = 2", r"\[revocation\.ocsp\]\.timout: unknown key \(did you mean 'timeout'\?\)"),
    ],
)
def test_ocsp_table_errors_name_the_key(tmp_path, pki, body, message):
    path = write(tmp_path, base(pki) + f"[revocation.ocsp]\n{body}\n")
    with pytest.raises(ValueError, match=message + r".*\(line \d+\)"):
        load_config(path)


def test_load_policy_only(tmp_path):
    path = write(tmp_path, '[trust]\nfiles = ["missing.pem"]\n[policy]\norganizations = ["x"]\n')
    policy = load_policy(path)  # the policy alone: trust files are not read
    assert isinstance(policy, Policy)
    assert not policy.is_empty
    assert load_policy(write(tmp_path, "mode = 'off'\n", "empty.toml")) is None
    policy_only = _load(path, policy_only=True)
    with pytest.raises(ValueError, match="loaded for its policy only"):
        policy_only.verifier()


def test_middleware_kwargs_work_with_the_asgi_middleware(tmp_path, pki):
    import asyncio

    import httpx

    from mtlsauth.adapters.asgi import MTLSMiddleware
    from mtlsauth.testing import with_client_cert

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["path"].encode()})

    config = load_config(write(tmp_path, 'exempt_paths = ["/healthz"]\n' + base(pki)))
    guarded = MTLSMiddleware(app, **config.middleware_kwargs())
    text = pem(pki, "good")
    marker = "-----BEGIN CERTIFICATE-----"
    chain = [marker + part for part in text.split(marker)[1:]]
    tls = {"client_cert_chain": chain, "client_cert_error": None, "tls_version": 0x0304}

    async def get(path: str, ext: dict | None) -> httpx.Response:
        transport = httpx.ASGITransport(app=with_client_cert(guarded, ext))
        async with httpx.AsyncClient(transport=transport, base_url="https://test") as client:
            return await client.get(path)

    exempt = asyncio.run(get("/healthz", None))
    missing = asyncio.run(get("/x", None))
    admitted = asyncio.run(get("/x", tls))
    assert (exempt.status_code, exempt.text) == (200, "/healthz")
    assert missing.status_code == 401
    assert missing.json()["code"] == "certificate_missing"
    assert (admitted.status_code, admitted.text) == (200, "/x")


# -- errors name the key and the line ----------------------------------------------------------
ERRORS = [
    pytest.param(
        'mode = "sometimes"\n',
        r"mode: must be one of mandatory, optional, off \(line 1\)",
        id="mode",
    ),
    pytest.param(
        "trsut = 1\n",
        r"trsut: unknown key \(did you mean 'trust'\?\) \(line 1\)",
        id="unknown top key",
    ),
    pytest.param(
        "[policy]\norganisations = ['x']\n",
        r"\[policy\]\.organisations: unknown key \(did you mean 'organizations'\?\) \(line \d+\)",
        id="typo in policy",
    ),
    pytest.param(
        "[policy]\norganizations = []\n",
        r"\[policy\]\.organizations: must not be empty",
        id="empty allow-list",
    ),
    pytest.param(
        "[policy]\norganizations = [1]\n",
        r"\[policy\]\.organizations\[1\]: must be a non-empty string",
        id="wrong type",
    ),
    pytest.param(
        "[policy]\nsubjects = ['not a dn']\n",
        r"\[policy\]\.subjects: .*distinguished name",
        id="bad DN",
    ),
    pytest.param(
        "[policy]\nip_addresses = ['10.0.0.300']\n",
        r"\[policy\]\.ip_addresses: .*not an IP",
        id="bad IP",
    ),
    pytest.param(
        "[policy]\nfingerprints = ['abc']\n",
        r"\[policy\]\.fingerprints: .*SHA-256",
        id="bad fingerprint",
    ),
    pytest.param(
        "[policy]\ndeny_serials = [true]\n",
        r"\[policy\]\.deny_serials\[1\]: must be an integer",
        id="bad serial",
    ),
    pytest.param("[policy]\n", r"policy: is empty", id="empty policy"),
    pytest.param(
        "[policy]\ncommon_names = ['a']\n[[policy.any_of]]\ncommon_names = ['b']\n",
        r"\[policy\]\.any_of: cannot be combined",
        id="any_of mixed",
    ),
    pytest.param(
        "[policy]\nany_of = []\n",
        r"\[policy\]\.any_of: must be a non-empty list",
        id="any_of empty",
    ),
    pytest.param(
        "[policy.rfc8705]\ntls_client_auth_san_dns = 'a'\ntls_client_auth_san_uri = 'b:c'\n",
        r"\[policy\]\.rfc8705: .*exactly one",
        id="rfc8705 two keys",
    ),
    pytest.param(
        "[forwarded]\npreset = 'nginx'\n",
        r"forwarded: needs trusted_proxies",
        id="no trusted proxies",
    ),
    pytest.param(
        "[forwarded]\npreset = 'nginxx'\ntrusted_proxies = ['10.0.0.1']\n",
        r"\[forwarded\]\.preset: unknown preset",
        id="unknown preset",
    ),
    pytest.param(
        "[forwarded]\npreset = 'nginx'\ntrusted_proxies = ['*']\n",
        r"\[forwarded\]\.trusted_proxies: ",
        id="wildcard proxies",
    ),
    pytest.param(
        "[forwarded]\ntrusted_proxies = ['10.0.0.1']\nheader = 'x'\n",
        r"forwarded: give a preset, or both header and encoding",
        id="no encoding",
    ),
    pytest.param(
        "[forwarded]\npreset = 'nginx'\ntrusted_proxies = ['10.0.0.1']\nheadr = 'x'\n",
        r"\[forwarded\]\.headr: unknown key \(did you mean 'header'\?\)",
        id="forwarded typo",
    ),
    pytest.param(
        "[revocation]\nmode = 'all'\ncrls = ['ca.pem']\n",
        r"\[revocation\]\.mode: must be one of chain, leaf",
        id="revocation mode",
    ),
    pytest.param(
        "[revocation]\nmode = 'leaf'\n",
        r"\[revocation\]\.mode: applies to CRLs",
        id="crl option without crls",
    ),
    pytest.param("[revocation]\n", r"revocation: give crls", id="empty revocation"),
    pytest.param(
        "[revocation]\ncrls = ['ca.pem']\n",
        r"\[revocation\]\.crls: .*ca\.pem",
        id="CA file given as CRL",
    ),
    pytest.param(
        'exempt_paths = ["healthz"]\n', r"exempt_paths: .*must start with '/'", id="exempt path"
    ),
    pytest.param("routes = 'x'\n", r"routes: must be a list of tables", id="routes not a list"),
    pytest.param(
        "[[routes]]\npath = '/a'\nregex = '^/a'\n",
        r"\[routes\.1\]: give exactly one of path or regex \(line \d+\)",
        id="path and regex",
    ),
    pytest.param(
        "[[routes]]\nregex = '('\n",
        r"\[routes\.1\]\.regex: not a valid regular expression",
        id="bad regex",
    ),
    pytest.param(
        "[[routes]]\npath = 'admin'\n",
        r"\[routes\.1\]\.path: .*must start with '/'",
        id="path without slash",
    ),
    pytest.param(
        "[[routes]]\npath = '/a'\nmethods = []\n",
        r"\[routes\.1\]\.methods: must not be empty",
        id="empty methods",
    ),
    pytest.param(
        "[[routes]]\npath = '/a'\npolicy = {organizations = []}\n",
        r"\[routes\.1\.policy\]\.organizations: must not be empty",
        id="route policy",
    ),
    pytest.param(
        "[cache]\nsize = 'big'\n", r"\[cache\]\.size: must be an integer", id="cache size"
    ),
    pytest.param("mode = \n", r"not valid TOML", id="TOML syntax"),
]


@pytest.mark.parametrize(("extra", "message"), ERRORS)
def test_errors_name_the_key(tmp_path, pki, extra, message):
    shutil.copy(pki.path("ca.pem"), tmp_path / "ca.pem")
    path = write(
        tmp_path, extra + '\n[trust]\nfiles = ["ca.pem"]\n' if "[trust]" not in extra else extra
    )
    with pytest.raises(ValueError, match=message) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: ")


TRUST_ERRORS = [
    pytest.param(
        'files = ["nope.pem"]',
        r"\[trust\]\.files\[1\]: .*nope\.pem: no such file",
        id="missing file",
    ),
    pytest.param(
        'files = ["notes.txt"]',
        r"\[trust\]\.files\[1\]: .*no certificate found",
        id="not a certificate",
    ),
    pytest.param(
        'directories = ["notes.txt"]',
        r"\[trust\]\.directories\[1\]: .*not a directory",
        id="not a directory",
    ),
    pytest.param(
        'pkcs12 = [{ path = "notes.txt", password = "x" }]',
        r"\[trust\.pkcs12\.1\]: .*not a PKCS#12",
        id="bad pkcs12",
    ),
    pytest.param(
        'pkcs12 = [{ path = "notes.txt", password_env = "MTLSAUTH_UNSET_VAR" }]',
        r"\[trust\.pkcs12\.1\]\.password_env: environment variable MTLSAUTH_UNSET_VAR is not set",
        id="unset env",
    ),
    pytest.param(
        "max_depth = -1",
        r"\[trust\]\.max_depth: must be an integer >= 0 \(line 2\)",
        id="max_depth",
    ),
    pytest.param("clock_skew = 'a'", r"\[trust\]\.clock_skew: must be a number", id="clock_skew"),
    pytest.param(
        "reload_interval = 0",
        r"\[trust\]\.reload_interval: must be a number >= 1",
        id="reload_interval",
    ),
    pytest.param(
        'intermediates = ["nope.pem"]',
        r"\[trust\]\.intermediates\[1\]: ",
        id="missing intermediates",
    ),
    pytest.param(
        "max_depth = 2", r"trust: give files, directories, pkcs12 or pinned", id="no anchors"
    ),
    pytest.param(  # an OSError escaped load_config instead of this ValueError
        'intermediates = ["."]',
        r"\[trust\]\.intermediates\[1\]: .*(directory|cannot read)",
        id="intermediates is a folder",
    ),
]


@pytest.mark.parametrize(("line", "message"), TRUST_ERRORS)
def test_trust_errors(tmp_path, line, message):
    (tmp_path / "notes.txt").write_text("hello\n")
    with pytest.raises(ValueError, match=message):
        load_config(write(tmp_path, f"[trust]\n{line}\n"))


def test_missing_trust_table(tmp_path):
    with pytest.raises(ValueError, match=r"trust: missing"):
        load_config(write(tmp_path, 'mode = "optional"\n'))


def test_error_line_points_into_the_right_route(tmp_path, pki):
    text = (
        base(pki)
        + """
[[routes]]
path = "/a"

[[routes]]
path = "/b"
# a comment
mode = "sometimes"
"""
    )
    path = write(tmp_path, text)
    lineno = text.splitlines().index('mode = "sometimes"') + 1
    with pytest.raises(ValueError, match=r"\[routes\.2\]\.mode") as info:
        load_config(path)
    assert str(info.value) == (
        f"{path}: [routes.2].mode: must be one of mandatory, optional, off (line {lineno})"
    )


def test_file_errors(tmp_path):
    with pytest.raises(ValueError, match=r"nope\.toml: cannot read"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ValueError, match=r"use a \.toml, \.yaml or \.yml file"):
        load_config(write(tmp_path, "x", "mtls.ini"))


def test_pem_text_pasted_where_a_path_belongs_is_a_value_error(tmp_path, pki):
    pem = pki.path("ca.pem").read_text()
    path = write(tmp_path, f'[trust]\nfiles = ["""{pem}"""]\n')
    with pytest.raises(
        ValueError, match=r"\[trust\]\.files\[1\]: PEM text where a file path"
    ) as info:
        load_config(path)
    assert "MII" not in str(info.value)
    # A name the system cannot even look up is a ValueError naming the key, not an OSError.
    path = write(tmp_path, f'[trust]\nfiles = ["{"x" * 5000}"]\n')
    with pytest.raises(ValueError, match=r"\[trust\]\.files\[1\]: .*cannot be read"):
        load_config(path)


@pytest.mark.parametrize(
    ("key", "text"),
    [
        pytest.param(("mode",), "mode", id="top"),
        pytest.param(("routes", 2, "mode"), "[routes.2].mode", id="array of tables"),
        pytest.param(("trust", "files", 1), "[trust].files[1]", id="list entry"),
        pytest.param(("routes", 2), "[routes.2]", id="array element"),
        pytest.param(("trust", "pkcs12", 1, "path"), "[trust.pkcs12.1].path", id="inline tables"),
        pytest.param(
            ("routes", 1, "policy", "organizations"), "[routes.1.policy].organizations", id="nested"
        ),
        pytest.param((), "(top level)", id="root"),
    ],
)
def test_render_key(key, text):
    assert render_key(key) == text


# -- YAML --------------------------------------------------------------------------------------
def test_yaml_config_and_error_lines(tmp_path, pki):
    pytest.importorskip("yaml")
    text = f"""trust:
  files: ["{pki.path("ca.pem")}"]
routes:
  - path: /a
  - path: /b
    mode: sometimes
"""
    path = write(tmp_path, text, "mtls.yaml")
    with pytest.raises(ValueError, match="mode") as info:
        load_config(path)
    assert (
        str(info.value)
        == f"{path}: [routes.2].mode: must be one of mandatory, optional, off (line 6)"
    )
    good = write(tmp_path, text.replace("sometimes", "optional"), "mtls.yml")
    config = load_config(good)
    assert [r.mode for r in config.routes] == [None, "optional"]


def test_yaml_unquoted_off_is_an_error_that_says_why(tmp_path, pki):
    pytest.importorskip("yaml")
    text = f"""trust:
  files: ["{pki.path("ca.pem")}"]
mode: off
"""
    with pytest.raises(ValueError, match=r'mode: must be one of .*not a boolean.*write "off"'):
        load_config(write(tmp_path, text, "mtls.yaml"))
    config = load_config(write(tmp_path, text.replace("off", '"off"'), "mtls.yaml"))
    assert config.middleware_kwargs()["mode"] == "off"


def test_yaml_syntax_error(tmp_path):
    pytest.importorskip("yaml")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_config(write(tmp_path, "trust: [\n", "mtls.yaml"))


# -- the shipped examples ---------------------------------------------------------------------
@pytest.mark.parametrize("name", ["mtls.toml", "mtls.yaml"])
def test_examples_load_and_decide(tmp_path, name):
    if name.endswith(".yaml"):
        pytest.importorskip("yaml")
    shutil.copy(EXAMPLES / name, tmp_path / name)
    pki = write_test_pki(tmp_path / "pki")
    config = load_config(tmp_path / name)
    guard = Guard(**config.middleware_kwargs())
    good, eve = pem(pki, "good"), pem(pki, "other-org")

    def decide(path: str, method: str, chain: str | None) -> str:
        mode, route, exempt = guard.resolve(path, method)
        presented = Presented(
            peer="203.0.113.5", tls_chain=(chain,) if chain else (), path=path, method=method
        )
        return guard.decide(presented, mode, route, exempt).code

    assert decide("/healthz", "GET", None) == "skipped"
    assert decide("/catalogue/books", "GET", None) == "no_certificate"
    assert decide("/catalogue/books", "GET", good) == "ok"
    assert decide("/orders", "GET", good) == "ok"
    assert decide("/orders", "GET", eve) == "organization_not_allowed"
    assert decide("/orders", "GET", None) == "certificate_missing"
    assert decide("/admin/users", "GET", good) == "organizational_unit_not_allowed"
    # The bare spellings an app may route to the same handlers meet the same rules.
    assert decide("/admin", "GET", good) == "organizational_unit_not_allowed"
    assert decide("/administrator", "GET", good) == "ok"  # not the admin rule
    assert decide("/payments", "POST", eve) == "spiffe_id_not_allowed"
    assert decide("/payments/1", "POST", good) == "ok"  # alice: alternative 2 (and SPIFFE)
    # every alternative refuses: the first one's reason is reported
    assert decide("/payments/1", "POST", eve) == "spiffe_id_not_allowed"
    assert decide("/payments/1", "GET", eve) == "organization_not_allowed"  # not a write
    assert decide("/orders", "GET", pem(pki, "revoked")) == "certificate_revoked"
    assert isinstance(config.verifier(), Verifier)


# -- any wrong type under any key: an error naming the key and the line, never a traceback ----
def _toml_value(value: object) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value != value:
        return "nan"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f'"{k}" = {_toml_value(v)}' for k, v in value.items()) + "}"


def _to_toml(data: dict) -> str:
    lines = [f"{k} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for table, body in data.items():
        if isinstance(body, dict):
            lines.append(f"[{table}]")
            lines += [f'"{k}" = {_toml_value(v)}' for k, v in body.items()]
    return "\n".join(lines) + "\n"


def _key_paths(data: object, prefix: tuple = ()):
    if isinstance(data, dict):
        for k, v in data.items():
            yield (*prefix, k)
            yield from _key_paths(v, (*prefix, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            if isinstance(v, dict | list):
                yield from _key_paths(v, (*prefix, i))


WRONG_VALUES = [7, 1e300, float("nan"), True, "x", [], ["x"], [1], {"a": 1}, [{"a": 1}]]


@pytest.mark.parametrize("suffix", [".toml", ".yaml"])
def test_wrong_types_anywhere_name_the_key_and_line(tmp_path, pki, suffix):
    import copy

    import yaml

    base = {
        "mode": "optional",
        "exempt_paths": ["/healthz"],
        "trust": {"files": [str(pki.path("ca.pem"))], "max_depth": 4, "clock_skew": 5},
        "revocation": {"ocsp": {"timeout": 2, "mode": "soft-fail", "max_age": 60}},
        "forwarded": {"preset": "nginx", "trusted_proxies": ["10.0.0.1"], "max_size": 9000},
        "policy": {"organizations": ["x"], "subjects": ["CN = a"], "deny_serials": [1]},
        "routes": [{"path": "/a/*", "methods": ["GET"], "policy": {"any_of": [{"uris": ["u:x"]}]}}],
        "cache": {"size": 10, "ttl": 60},
    }
    wrong = [*WRONG_VALUES, None] if suffix == ".yaml" else WRONG_VALUES
    path = tmp_path / f"mtls{suffix}"
    tracebacks, unnamed = [], []
    for key in _key_paths(base):
        if key[0] == "routes" and suffix == ".toml":  # the TOML writer is flat; YAML covers it
            continue
        for value in wrong:
            data = copy.deepcopy(base)
            node = data
            for k in key[:-1]:
                node = node[k]
            node[key[-1]] = value
            path.write_text(yaml.safe_dump(data) if suffix == ".yaml" else _to_toml(data))
            try:
                load_config(path)
            except ValueError as exc:
                if "(line " not in str(exc) or str(key[0]) not in str(exc):
                    unnamed.append((key, value, str(exc)))
            except Exception as exc:  # noqa: BLE001 -- the point: nothing else may escape
                tracebacks.append((key, value, repr(exc)))
    assert tracebacks == []
    assert unnamed == []


def test_a_file_that_is_not_a_table_names_line_one(tmp_path):
    with pytest.raises(ValueError, match=r"\(top level\): must be a table, not a list \(line 1\)"):
        load_config(write(tmp_path, "- a\n- b\n", "mtls.yaml"))


def test_dn_strings_as_openssl_prints_them_and_mixed_forms_refused(tmp_path, pki):
    text = base(pki) + (
        '[policy]\nsubjects = ["O = Example Corp, OU = payments, CN = alice", "cn=bob,o=x"]\n'
    )
    verifier = load_config(write(tmp_path, text)).verifier()
    assert verifier.verify_pem(pem(pki, "good")).common_name == "alice"
    mixed = base(pki) + '[policy]\nsubjects = ["/CN=alice,O=Example Corp"]\n'
    with pytest.raises(ValueError, match="is not a distinguished name") as info:
        load_config(write(tmp_path, mixed))
    message = str(info.value)
    assert "[policy].subjects: subjects entry '/CN=alice,O=Example Corp'" in message
    assert "the CN value 'alice,O=Example Corp' contains 'O='" in message
    assert message.endswith("(line 4)")


def test_revocation_scope_and_ocsp_failure_keys(tmp_path) -> None:
    from mtlsauth._config import config_from_mapping
    from mtlsauth.testing import CA

    ca = CA(organization="config keys")
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem.bytes())
    (tmp_path / "ca.crl").write_bytes(ca.crl().bytes())
    base = {"trust": {"files": ["ca.pem"]}}
    rev = {"crls": ["ca.crl"], "scope": "leaf", "ocsp": {"failure": "soft-fail"}}
    verifier = config_from_mapping({**base, "revocation": rev}, base_dir=tmp_path).verifier()
    health = verifier.health()["revocation"]
    assert [h["scope"] for h in health if "failure" not in h] == ["leaf"]
    assert [h["failure"] for h in health if "failure" in h] == ["soft-fail"]
    clash = {"crls": ["ca.crl"], "scope": "leaf", "mode": "chain"}
    with pytest.raises(ValueError, match="disagrees with scope"):
        config_from_mapping({**base, "revocation": clash}, base_dir=tmp_path).verifier()


def test_route_policy_keeps_the_top_level_deny_lists(tmp_path, pki):
    from cryptography import x509

    leaf = x509.load_pem_x509_certificates(pem(pki, "good").encode())[0]
    config = load_config(
        write(
            tmp_path,
            base(pki) + f"[policy]\ndeny_serials = [{leaf.serial_number}]\n"
            '[[routes]]\npath = "/admin/*"\npolicy = { common_names = ["alice"] }\n',
        )
    )
    verifier, route_policy = config.verifier(), config.routes[0].policy
    for policy in (None, route_policy):
        with pytest.raises(PolicyDenied) as info:
            verifier.verify_pem(pem(pki, "good")) if policy is None else verifier.verify(
                pem(pki, "good"), policy=policy
            )
        assert info.value.code == "certificate_denied"


def test_route_policy_of_deny_lists_only_is_refused_next_to_allow_lists(tmp_path, pki):
    # A route's policy replaces the allow-lists of [policy]: one holding only deny-lists
    # reads as "[policy], minus these" and admitted every trusted certificate it did not
    # deny (here other-org, which [policy] refuses) on the route's paths.
    route = '[[routes]]\npath = "/admin*"\npolicy = { deny_serials = ["0x0badc0de"] }\n'
    allow = '[policy]\norganizations = ["Example Corp"]\n'
    with pytest.raises(ValueError, match=r"\[routes\.1\]\.policy: .*only deny-lists"):
        load_config(write(tmp_path, base(pki) + allow + route))
    any_of = (
        '[[policy.any_of]]\ncommon_names = ["alice"]\n[[policy.any_of]]\ncommon_names = ["bob"]\n'
    )
    with pytest.raises(ValueError, match=r"\[routes\.1\]\.policy: .*only deny-lists"):
        load_config(write(tmp_path, base(pki) + any_of + route))
    # Without allow-lists in [policy] every trusted certificate passes anyway: the route's
    # deny-lists only narrow that, and are accepted, as are deny-lists next to allow-lists.
    for text in (
        base(pki) + route,
        base(pki) + "[policy]\ndeny_serials = [7]\n" + route,
        base(pki) + allow + route.replace("}", ', common_names = ["alice"] }'),
    ):
        config = load_config(write(tmp_path, text))
        assert config.routes[0].policy is not None


def test_guard_refuses_a_deny_only_route_policy_next_to_verifier_allow_lists(pki):
    verifier = Verifier(
        trust_store=TrustStore.from_pem_file(pki.path("ca.pem")),
        policy=Policy(organizations=["Example Corp"]),
    )
    with pytest.raises(ValueError, match="only deny-lists"):
        Guard(verifier=verifier, routes=[Route("/admin*", policy=Policy(deny_serials=[5]))])
    Guard(verifier=verifier, routes=[Route("/admin*", policy=Policy())])  # explicit: anyone


# -- YAML 1.1 scalars that mean something else than they read ---------------------------------
def test_yaml_colon_serial_is_hex_bytes_not_base_60(tmp_path, pki):
    pytest.importorskip("yaml")
    # PyYAML resolves 12:34:56 as a base-60 integer (45296): the deny-list named another serial
    text = f"trust:\n  files: ['{pki.path('ca.pem')}']\npolicy:\n  deny_serials: [12:34:56, 0x1f]\n"
    config = load_config(write(tmp_path, text, "mtls.yaml"))
    assert repr(config.policy) == "Policy(deny_serials=['12:34:56', 31])"
    toml = load_config(write(tmp_path, base(pki) + "[policy]\ndeny_serials = ['12:34:56', 0x1f]\n"))
    assert repr(toml.policy) == repr(config.policy)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        # YAML 1.1 octal: 010 is 8, a serial nobody wrote; as text it is ambiguous and refused
        ("policy:\n  deny_serials: [010]\n", "ambiguous"),
        ("policy:\n  deny_serials: [0b11]\n", "ambiguous"),
        ("policy:\n  deny_serials: [1_0]\n", "deny_serials"),
        ("cache:\n  size: 010\n", "size"),
        ("cache:\n  size: 1:00\n", "size"),
        ("revocation:\n  crls: [crl.pem]\n  grace: 1:30\n", "grace"),
    ],
    ids=["octal serial", "binary serial", "underscore serial", "octal size", "base-60 size",
         "base-60 seconds"],
)  # fmt: skip
def test_yaml_numbers_other_than_plain_decimal_or_hex_are_refused(tmp_path, pki, extra, message):
    pytest.importorskip("yaml")
    (tmp_path / "crl.pem").write_bytes(pki.path("crl.pem").read_bytes())
    text = f"trust:\n  files: ['{pki.path('ca.pem')}']\n" + extra
    with pytest.raises(ValueError, match=message):
        load_config(write(tmp_path, text, "mtls.yaml"))


@pytest.mark.parametrize(
    "text",
    [
        # a second policy: block silently replaced the first (with its deny-list)
        "policy:\n  deny_serials: [0x1f]\npolicy:\n  common_names: [alice]\n",
        "policy:\n  organizations: [ops]\n  organizations: [ops, evil]\n",
        "routes:\n  - path: /a\n    path: /b\n",
    ],
    ids=["top level", "policy key", "route key"],
)
def test_yaml_duplicate_keys_are_refused(tmp_path, pki, text):
    pytest.importorskip("yaml")
    trust = f"trust:\n  files: ['{pki.path('ca.pem')}']\n"
    with pytest.raises(ValueError, match="duplicate key"):
        load_config(write(tmp_path, trust + text, "mtls.yaml"))


@pytest.mark.parametrize(
    "text",
    [
        # one of two merged deny-lists was dropped (serial 5 was not denied)
        "policy:\n  <<: [{deny_serials: [5]}, {deny_serials: [6]}]\n  organizations: [x]\n",
        # the table's own deny-list replaced the merged one
        "routes:\n  - &admin\n    path: /admin*\n    policy: &p {deny_serials: [5],"
        " organizations: [x]}\n  - path: /ops*\n    policy:\n      <<: *p\n"
        "      deny_serials: [6]\n",
        # nested: a merged table that merges another one with the same key
        "policy:\n  <<: {<<: {organizations: [x]}, organizations: [y]}\n",
    ],
    ids=["two merged tables", "merged and own", "nested merge"],
)
def test_yaml_key_given_by_a_merge_and_again_is_refused(tmp_path, pki, text):
    pytest.importorskip("yaml")
    trust = f"trust:\n  files: ['{pki.path('ca.pem')}']\n"
    with pytest.raises(ValueError, match=r"deny_serials|organizations.*merge \(<<\) and again"):
        load_config(write(tmp_path, trust + text, "mtls.yaml"))


def test_yaml_merge_without_a_repeated_key_still_loads(tmp_path, pki):
    pytest.importorskip("yaml")
    text = (
        f"trust:\n  files: ['{pki.path('ca.pem')}']\n"
        "policy: &p\n  organizations: [x]\n  deny_serials: [5]\n"
        "routes:\n  - path: /ops*\n    policy:\n      <<: *p\n      organizational_units: [ops]\n"
    )
    config = load_config(write(tmp_path, text, "mtls.yaml"))
    assert "organizational_units" in repr(config.routes[0].policy)
    assert "deny_serials" in repr(config.routes[0].policy)


@pytest.mark.parametrize(
    "text",
    [
        "policy: &p\n  organizations: [x]\n  any_of: [*p]\n",  # an alias in its own anchor
        "exempt_paths: &e [/a, *e]\n",
    ],
    ids=["policy in any_of", "list in itself"],
)
def test_yaml_recursive_alias_is_an_error_naming_the_key(tmp_path, pki, text):
    # walking the alias again and again ended in a RecursionError (a traceback)
    pytest.importorskip("yaml")
    trust = f"trust:\n  files: ['{pki.path('ca.pem')}']\n"
    with pytest.raises(ValueError, match=r"mtls\.yaml: (\[policy\]\.any_of|exempt_paths)"):
        load_config(write(tmp_path, trust + text, "mtls.yaml"))
    # a table that merges itself gives no key twice, and loads
    itself = trust + "policy: &p\n  organizations: [x]\n  <<: *p\n"
    assert load_config(write(tmp_path, itself, "mtls.yaml")).policy is not None


def test_yaml_aliases_of_aliases_are_walked_once(tmp_path, pki):
    pytest.importorskip("yaml")
    import time

    # 2**40 paths through nine lines: each node is checked once, not once per path
    levels = ["a0: &a0 [/x]"] + [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}]" for i in range(1, 41)]
    text = (
        f"trust:\n  files: ['{pki.path('ca.pem')}']\nroutes:\n  - path: /y\n    policy:\n"
        "      common_names: [a]\n      dns_names: [b.example]\n"
    )
    body = "".join(f"- {{{line}}}\n" for line in levels)
    started = time.monotonic()
    with pytest.raises(ValueError, match="exempt_paths"):
        load_config(write(tmp_path, text + "exempt_paths:\n" + body, "mtls.yaml"))
    assert time.monotonic() - started < 5


def test_any_of_alternative_of_deny_lists_only_is_refused(tmp_path, pki):
    text = base(pki) + (
        '[[policy.any_of]]\ncommon_names = ["admin"]\n[[policy.any_of]]\ndeny_serials = ["0x1f"]\n'
    )
    with pytest.raises(ValueError, match=r"\[policy\.any_of\.2\]: .*only deny-lists"):
        load_config(write(tmp_path, text))


# -- what reading a TOML file's line numbers costs --------------------------------------------

# The pattern table headers were read with until now: "\s*" on both sides of a lazy name that
# may hold spaces too, so a "[" followed by spaces and no "]" was tried at every split of
# them, cubic work. It is kept here as the reference the hand-written reader must agree with.
_OLD_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]#]+?)\s*\]\]?\s*(?:#.*)?$")
_HEADER_PIECES = [*"[]# a.\"'x", "\t", "\x1c", "\u3000", "[[", "]]", "\u00a0"]


@settings(max_examples=1000, deadline=None)
@given(
    st.one_of(
        st.lists(st.sampled_from(_HEADER_PIECES), max_size=14).map("".join),
        st.text(alphabet=st.characters(blacklist_characters="\n")),
    )
)
def test_a_table_header_is_read_as_the_pattern_read_it(line: str) -> None:
    old = _OLD_HEADER.match(line)
    assert _table_header(line) == (None if old is None else old.group(1, 2))


@pytest.mark.parametrize(
    ("line", "header"),
    [
        ("[a]", ("[", "a")),
        ("  [[ a . b ]]  # x", ("[[", "a . b")),
        ("[[a]", ("[[", "a")),
        ("[a]]", ("[", "a")),
        ("[[]", ("[", "[")),
        ("[   ]", ("[", " ")),
        ("[[a]] x", None),
        ("[a#]", None),
        ("[]", None),
        ("[", None),
        ("[" + " " * 4000, None),
    ],
)
def test_table_headers(line: str, header: tuple[str, str] | None) -> None:
    assert _table_header(line) == header


def test_a_long_line_that_opens_a_table_header_is_read_in_linear_time(tmp_path, pki):
    # Valid TOML: the line sits in a multi-line string, yet every line is looked at for the
    # line map that the error names. With the old pattern this took about half a minute;
    # now well under 10 ms.
    text = base(pki) + 'note = """\n[' + " " * 4000 + '\n"""\n'
    started = time.process_time()  # this process's CPU: tests beside it do not count
    with pytest.raises(ValueError, match=r"\[trust\]\.note: unknown key .*\(line 3\)"):
        _load(write(tmp_path, text))
    assert time.process_time() - started < 2.0


# -- the file means what the code means ------------------------------------------------------
def _ocsp_settings(checker: object) -> tuple[object, ...]:
    names = ("_url", "_timeout", "_failure", "_scope", "_cache_size", "_nonce", "_max_age",
             "_retry_after", "_trusted")  # fmt: skip
    return tuple(getattr(checker, n) for n in names)


def test_defaults_left_out_of_the_file_are_the_code_defaults(tmp_path, pki):
    from mtlsauth import CRLSet, OCSPChecker

    text = base(pki) + f'[revocation]\ncrls = ["{pki.path("crl.pem")}"]\n[revocation.ocsp]\n'
    verifier = load_config(write(tmp_path, text)).verifier()
    crls, ocsp = verifier.revocation._checkers
    code_crls = CRLSet.from_paths(pki.path("crl.pem"))
    assert (crls._scope, crls._allow_missing, crls._grace) == (
        code_crls._scope,
        code_crls._allow_missing,
        code_crls._grace,
    )
    assert _ocsp_settings(ocsp) == _ocsp_settings(OCSPChecker())
    code = Verifier(trust_store=TrustStore.from_pem_file(pki.path("ca.pem")))
    for name in ("_max_depth", "_skew_s", "_cache_ttl"):
        assert getattr(verifier, name) == getattr(code, name), name


def test_max_depth_counts_intermediates_in_the_file_as_in_code(tmp_path):
    from mtlsauth.testing import CA

    root = CA()
    first = root.intermediate()
    second = first.intermediate()
    (tmp_path / "root.pem").write_bytes(root.cert_pem.bytes())
    (tmp_path / "ints.pem").write_bytes(first.cert_pem.bytes() + second.cert_pem.bytes())
    leaf = second.issue_client_cert(common_name="deep").certificate
    for depth, admitted in ((1, False), (2, True)):
        text = f'[trust]\nfiles = ["root.pem"]\nintermediates = ["ints.pem"]\nmax_depth = {depth}\n'
        code = Verifier(
            trust_store=root.trust_store(),
            intermediates=[first.certificate, second.certificate],
            max_depth=depth,
        )
        for verifier in (load_config(write(tmp_path, text)).verifier(), code):
            if admitted:
                assert verifier.verify(leaf).common_name == "deep"
            else:
                with pytest.raises(MTLSAuthError, match="max_depth"):
                    verifier.verify(leaf)


def test_a_route_policy_keeps_the_deny_lists_next_to_a_top_level_any_of(tmp_path, pki):
    from cryptography import x509

    good = x509.load_pem_x509_certificate(pki.clients["good"][0].read_bytes())
    text = base(pki) + (
        f"[policy]\ndeny_serials = [{good.serial_number}]\n"
        '[[policy.any_of]]\ncommon_names = ["nobody"]\n'
        '[[policy.any_of]]\norganizations = ["nobody"]\n'
        '[[routes]]\npath = "/open/*"\npolicy = { common_names = ["'
        + str(good.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value)
        + '"] }\n'
    )
    config = load_config(write(tmp_path, text))
    code = Verifier(
        trust_store=TrustStore.from_pem_file(pki.path("ca.pem")),
        policy=Policy.any_of(
            Policy(common_names=["nobody"], deny_serials=[good.serial_number]),
            Policy(organizations=["nobody"]),
        ),
    )
    route_policy = config.routes[0].policy
    for verifier in (config.verifier(), code):
        with pytest.raises(PolicyDenied, match="deny-listed"):
            verifier.verify(pem(pki, "good"), policy=route_policy)
    # Without the deny-list the route's own allow-list admits it: the deny-list refused it.
    plain = Verifier(trust_store=TrustStore.from_pem_file(pki.path("ca.pem")))
    route_policy.check(plain.verify(pem(pki, "good")))


def test_pinned_in_the_file_pins_exact_certificates_as_code_does(tmp_path, pki):
    from cryptography import x509

    from mtlsauth.testing import CA

    other = CA()
    leaf = other.issue_client_cert(common_name="kiosk")
    (tmp_path / "leaf.pem").write_bytes(leaf.cert_pem.bytes())
    (tmp_path / "issuer.pem").write_bytes(other.cert_pem.bytes())
    for name, admitted in (("leaf.pem", True), ("issuer.pem", False)):
        text = base(pki) + f'pinned = ["{name}"]\n'
        pins = x509.load_pem_x509_certificates((tmp_path / name).read_bytes())
        code = Verifier(trust_store=TrustStore.from_pem_file(pki.path("ca.pem")), pinned=pins)
        for verifier in (load_config(write(tmp_path, text)).verifier(), code):
            if admitted:
                assert verifier.verify(leaf.certificate).common_name == "kiosk"
            else:
                with pytest.raises(MTLSAuthError):
                    verifier.verify(leaf.certificate)


def test_an_rfc8705_alternative_in_the_file_narrows_as_code_does(tmp_path, pki):
    from cryptography import x509

    good = x509.load_pem_x509_certificate(pki.clients["good"][0].read_bytes())
    other = x509.load_pem_x509_certificate(pki.clients["other-org"][0].read_bytes())
    dn = good.subject.rfc4514_string()
    text = base(pki) + (
        f"[[policy.any_of]]\nrfc8705 = {{ tls_client_auth_subject_dn = '{dn}' }}\n"
        '[[policy.any_of]]\norganizations = ["nobody"]\n'
    )
    code = Verifier(
        trust_store=TrustStore.from_pem_file(pki.path("ca.pem")),
        policy=Policy.any_of(
            Policy.from_rfc8705({"tls_client_auth_subject_dn": dn}),
            Policy(organizations=["nobody"]),
        ),
    )
    for verifier in (load_config(write(tmp_path, text)).verifier(), code):
        assert verifier.verify(pem(pki, "good")).subject == verifier.verify(good).subject
        with pytest.raises(PolicyDenied):
            verifier.verify(pem(pki, "other-org"))
    assert other.subject != good.subject


def test_a_policy_key_above_every_table_says_to_write_it_under_policy(tmp_path, pki):
    # `mtlsauth verify --policy FILE` reads the [policy] table: a file of bare allow-list
    # keys is the first one a new user writes
    path = write(tmp_path, 'organizations = ["Example Corp"]\n')
    message = r"organizations: unknown key at the top level: it is a policy key, write it under \[policy\] \(line 1\)"
    with pytest.raises(ValueError, match=message):
        load_policy(path)
    path = write(tmp_path, f'organizations = ["x"]\n[trust]\nfiles = ["{pki.path("ca.pem")}"]\n')
    with pytest.raises(ValueError, match=message):
        load_config(path)
    from mtlsauth._config import config_from_mapping

    with pytest.raises(ValueError, match="write it under"):
        config_from_mapping(
            {"trust": {"files": [str(pki.path("ca.pem"))]}, "deny_fingerprints": ["00" * 32]}
        )
