"""The fuzz targets: one per parser that takes outside bytes, each asserting invariants.

Every target is a ``Target``: ``check(data)`` runs one input and raises ``AssertionError`` (or
lets an unexpected exception out) when an invariant breaks; ``seeds()`` gives valid inputs made
from the fixed fuzz PKI and ``mtlsauth.testing.encode_forwarded``; ``mutate(data, rng)`` is the
structure-aware mutation (DER fields inside the encoded certificates, re-signed half the time).

Invariants, for every target:

* only ``MTLSAuthError`` escapes request-time code; construction from configuration or files
  raises ``ValueError`` (or ``TypeError``) or nothing;
* forwarded headers: decode -> encode -> decode gives the same certificates, and the identity
  (or refusal code) from the header equals the one from the same chain over TLS;
* chains: PEM/DER input and the decoded DER tuple get the same verdict; PEM round-trips;
* DN strings: a DN that the XFCC parser reads and that a certificate carries is matched by a
  ``Policy(subjects=...)`` holding the same text;
* fast paths (URL-encoded PEM, XFCC element selection) give what the general readers give, or
  decline and leave the value to them.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime as dt
import logging
import os
import random
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from fuzz import _der
from fuzz._pki import pki
from mtlsauth import (
    ClientIdentity,
    CRLSet,
    ForwardedCert,
    MTLSAuthError,
    OCSPChecker,
    Policy,
    Presented,
    TrustStore,
    Verifier,
    load_config,
)
from mtlsauth._forwarded._formats import ENCODINGS, _url_pem_fast, _url_pem_strict
from mtlsauth._forwarded._presets import PRESETS
from mtlsauth._forwarded._xfcc import _select_fast, parse_xfcc
from mtlsauth.testing import encode_forwarded
from mtlsauth.testing._encode import der_to_pem

PROXY = "127.0.0.1"


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence mtlsauth's log while fuzzing: it logs every refused CRL reload and OCSP
    failure, and a fuzzer makes millions of them."""
    log = logging.getLogger("mtlsauth")

    def drop(record: logging.LogRecord) -> bool:
        return False

    log.addFilter(drop)
    try:
        yield
    finally:
        log.removeFilter(drop)


CLIENT = "198.51.100.9"


@dataclass(frozen=True)
class Target:
    name: str
    check: Callable[[bytes], None]
    seeds: Callable[[], list[bytes]]
    mutate: Callable[[bytes, random.Random], bytes]
    doc: str


def _load(der: bytes) -> x509.Certificate | None:
    """Parse a certificate for the harness's own use (never the code under test)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return x509.load_der_x509_certificate(der)
        except Exception:
            return None


def _outcome(fn: Callable[[], ClientIdentity | None]) -> tuple[str, object]:
    """Run a request-time call: ('ok', identity) or ('refused', code); anything else escapes."""
    try:
        ident = fn()
    except MTLSAuthError as exc:
        return "refused", exc.code
    if ident is None:
        return "none", None
    return "ok", dataclasses.replace(ident, source="tls")


def _verifier(**kw: object) -> Verifier:
    p = pki()
    return Verifier(
        trust_store=TrustStore.from_pem(p.root_pem),
        intermediates=[p.inter],
        cache_size=0,
        **kw,  # type: ignore[arg-type]
    )


_TLS = None


def _tls_verifier() -> Verifier:
    global _TLS
    if _TLS is None:
        _TLS = _verifier()
    return _TLS


def _mutate_ders(ders: list[bytes], rng: random.Random) -> list[bytes]:
    """One structure-aware change to a chain: a certificate's fields, order, or count."""
    p = pki()
    out = list(ders)
    r = rng.random()
    if out and r < 0.8:
        i = rng.randrange(len(out))
        cert = _load(out[i])
        try:
            key = p.key_for(cert) if cert is not None else None
        except Exception:
            key = None
        out[i] = _der.mutate_cert(out[i], rng, key)  # type: ignore[arg-type]
    elif r < 0.88:
        out.append(p.der(rng.choice((p.root, p.inter, *p.leaves))))
    elif r < 0.94 and len(out) > 1:
        rng.shuffle(out)
    elif out:
        out.pop()
    return out


# -- forwarded headers ------------------------------------------------------------------------
HEADER_PRESETS = {
    "url_pem": "aws-alb",
    "pem": "apache",
    "der_base64": "haproxy",
    "traefik": "traefik",
    "xfcc": "envoy",
    "rfc9440": "rfc9440",
}


def _header_names(fwd: ForwardedCert) -> list[str]:
    return [fwd.header.lower(), *(h.lower() for h in fwd.chain_header)]


def _values_to_headers(names: list[str], data: bytes) -> tuple[tuple[str, str], ...]:
    # Header values reach the app as latin-1 text (ASGI, WSGI); one line per configured header.
    values = data.decode("latin-1").split("\n")
    return tuple((n, v) for n, v in zip(names, values, strict=False) if v != "\x00")


def _headers_to_data(names: list[str], pairs: list[tuple[str, str]]) -> bytes:
    got = {k.lower(): v for k, v in pairs}
    return "\n".join(got.get(n, "\x00") for n in names).encode("latin-1")


def _round_trip(encoding: str, ders: tuple[bytes, ...]) -> None:
    """decode(encode(ders)) == ders, where the encoder accepts the certificates."""
    if not ders or any(_load(d) is None for d in ders):  # the encoders need certificates
        return
    try:
        pairs = encode_forwarded(encoding, ders)
    except ValueError:
        # Envoy's element names the leaf's subject and SANs, which cryptography reads only
        # when asked: a leaf whose names it cannot read has no XFCC encoding to compare with.
        if encoding != "xfcc":
            raise
        return
    if encoding in PRESETS:  # "traefik", "rfc9440": the preset's own header names
        again = ForwardedCert.preset(encoding, trusted_proxies=[PROXY])
    else:
        again = ForwardedCert(header="X-Client-Cert", encoding=encoding, trusted_proxies=[PROXY])
    fv = again.extract(Presented(peer=PROXY, headers=tuple((k.lower(), v) for k, v in pairs)))
    assert fv is not None, f"{encoding}: encoded chain not found again"
    decoded = fv.decode()
    assert decoded == ders, f"{encoding}: decode(encode(chain)) differs from chain"


def _same_url_pem(value: str) -> None:
    fast = _url_pem_fast(value)
    if fast is None:
        return
    try:
        want: object = _url_pem_strict(value)
    except MTLSAuthError as exc:
        want = exc.detail
    assert fast == want, f"url-pem fast path gave {len(fast)} certificates, strict: {want!r}"


def _fast_paths_agree(encoding: str, headers: tuple[tuple[str, str], ...]) -> None:
    """The decoders' fast paths give what the general readers give, or decline."""
    for _, value in headers:
        if encoding == "url-pem":
            _same_url_pem(value)
        elif encoding == "xfcc":
            try:
                elements: object = parse_xfcc(value)
            except MTLSAuthError:
                elements = None
            for index in (-1, 0, 1):
                fast = _select_fast(value, index)
                if fast is None:
                    continue
                assert isinstance(elements, list), "XFCC fast path read what the reader refuses"
                assert fast == elements[index], "XFCC fast path read another element"
                for key, text in fast:
                    if key in ("cert", "chain"):
                        _same_url_pem(text)


def _header_target(short: str, preset: str) -> Target:
    fwd = ForwardedCert.preset(preset, trusted_proxies=[PROXY])
    names = _header_names(fwd)
    verifier = _verifier(forwarded=fwd)

    def check(data: bytes) -> None:
        headers = _values_to_headers(names, data)
        _fast_paths_agree(fwd.encoding, headers)
        presented = Presented(peer=PROXY, headers=headers)
        via_header = _outcome(lambda: verifier.authenticate(presented))
        try:
            fv = fwd.extract(presented)
            decoded = fv.decode() if fv is not None else None
        except MTLSAuthError:
            return
        if decoded is None:
            assert via_header[0] == "refused", f"no certificate yet {via_header}"
            return
        assert isinstance(decoded, tuple), f"{preset} decoded to {type(decoded)}"
        _round_trip(fwd.encoding, decoded)
        via_tls = _outcome(
            lambda: _tls_verifier().authenticate(Presented(peer=CLIENT, tls_chain=decoded))
        )
        assert via_header == via_tls, f"header says {via_header}, TLS says {via_tls}"
        # The same header from a peer that is not a trusted proxy is never believed.
        forged = _outcome(lambda: verifier.authenticate(Presented(peer=CLIENT, headers=headers)))
        assert forged == ("refused", "untrusted_forwarder"), f"forged header gave {forged}"

    def seeds() -> list[bytes]:
        out = []
        for chain in pki().chains:
            out.append(_headers_to_data(names, encode_forwarded(preset, chain)))
            value = encode_forwarded(fwd.encoding, chain)[0][1]
            out.append(_headers_to_data(names, [(names[0], value)]))
            out.append(_headers_to_data(names, [(names[0], value)] * 1)[:-1])
        return out

    def mutate(data: bytes, rng: random.Random) -> bytes:
        headers = _values_to_headers(names, data)
        presented = Presented(peer=PROXY, headers=headers)
        try:
            fv = fwd.extract(presented)
            ders = fv.decode() if fv is not None else None
        except MTLSAuthError:
            ders = None
        if not isinstance(ders, tuple) or not ders or rng.random() < 0.2:
            return _text_mutate(data, rng)
        new = _mutate_ders(list(ders), rng)
        if not new:
            return _headers_to_data(names, [])
        try:
            pairs = encode_forwarded(preset if rng.random() < 0.5 else fwd.encoding, new)
        except Exception:
            pairs = [(names[0], encode_forwarded("der-base64", new)[0][1])]
            if fwd.encoding != "der-base64":
                return _text_mutate(data, rng)
        if fwd.encoding not in ("xfcc",) and not any(k.lower() in names for k, _ in pairs):
            pairs = [(names[0], pairs[0][1])]
        return _headers_to_data(names, pairs)

    return Target(f"header_{short}", check, seeds, mutate, f"{preset} preset ({fwd.encoding})")


_TEXT_NOISE = (
    "%", "%2", "%zz", "%00", "%0A", "+", "=", "==", ",", ";", '"', '\\"', "\\", ":", "::",
    "(null)", "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----", " ", "\t", "\r",
    "Cert=", "Hash=", "By=", "Subject=", "URI=", "DNS=", "Chain=", "\u00e9", "\udcff", "\x00",
    "{http.request.tls.client.certificate_der_base64}", "*", "0" * 64, "AAAA", "*;*",
)  # fmt: skip


def _text_mutate(data: bytes, rng: random.Random) -> bytes:
    text = data.decode("latin-1")
    for _ in range(rng.choice((1, 1, 2, 4))):
        i = rng.randrange(len(text) + 1)
        op = rng.randrange(4)
        if op == 0:
            text = text[:i] + rng.choice(_TEXT_NOISE) + text[i:]
        elif op == 1 and text:
            j = min(len(text), i + rng.randrange(1, 40))
            text = text[:i] + text[j:]
        elif op == 2 and text:
            j = rng.randrange(len(text))
            text = text[:i] + text[j : j + rng.randrange(1, 80)] + text[i:]
        else:
            text = text[:i] + chr(rng.randrange(256)) + text[i + 1 :]
    return text.encode("latin-1", "replace")


# verified_by_proxy identity headers: AWS ALB verify mode, GCP, Istio (XFCC without Cert).
IDENTITY_PRESETS = ("aws-alb-verify", "gcp", "istio")


def _identity_fwd(preset: str) -> ForwardedCert:
    return ForwardedCert.preset(preset, trusted_proxies=[PROXY], verified_by_proxy=True)


def _identity_names(fwd: ForwardedCert) -> list[str]:
    names = [fwd.header.lower(), *(h.lower() for h in fwd.chain_header)]
    names += sorted(h.lower() for h in (fwd.identity_headers or {}).values())
    return names


def _identity_target() -> Target:
    fwds = [_identity_fwd(p) for p in IDENTITY_PRESETS]
    verifiers = [_verifier(forwarded=f) for f in fwds]

    def split(data: bytes) -> tuple[int, bytes]:
        return (data[0] % len(fwds), data[1:]) if data else (0, b"")

    def check(data: bytes) -> None:
        which, rest = split(data)
        fwd, verifier = fwds[which], verifiers[which]
        headers = _values_to_headers(_identity_names(fwd), rest)
        got = _outcome(lambda: verifier.authenticate(Presented(peer=PROXY, headers=headers)))
        if got[0] == "ok":
            ident = got[1]
            assert isinstance(ident, ClientIdentity)
            for text in (ident.subject, ident.issuer, *ident.dns_names, *ident.uris):
                assert isinstance(text, str), f"identity field {text!r} is not text"
        forged = _outcome(lambda: verifier.authenticate(Presented(peer=CLIENT, headers=headers)))
        assert forged[0] != "ok", f"forged identity headers gave {forged}"

    def seeds() -> list[bytes]:
        out = []
        for i, preset in enumerate(IDENTITY_PRESETS):
            names = _identity_names(fwds[i])
            for leaf in pki().leaves:
                pairs = encode_forwarded(preset, [pki().der(leaf)])
                if preset == "istio":  # the identity-only form: XFCC without Cert
                    pairs = [(k, _strip_xfcc_cert(v)) for k, v in pairs]
                elif preset == "aws-alb-verify":
                    pairs = [(k, v) for k, v in pairs if k.lower() != fwds[i].header.lower()]
                elif preset == "gcp":
                    pairs = [(k, v) for k, v in pairs if not k.lower().startswith("x-client-cert-")
                             or "present" in k.lower() or "hash" in k.lower()]  # fmt: skip
                    pairs += _gcp_fields(leaf, fwds[i])
                out.append(bytes([i]) + _headers_to_data(names, pairs))
        return out

    def mutate(data: bytes, rng: random.Random) -> bytes:
        which, rest = split(data)
        if rng.random() < 0.05:
            which = rng.randrange(len(fwds))
        return bytes([which]) + _text_mutate(rest, rng)

    return Target("header_identity", check, seeds, mutate, "verified_by_proxy identity headers")


def _strip_xfcc_cert(value: str) -> str:
    return ";".join(p for p in value.split(";") if not p.startswith(("Cert=", "Chain=")))


def _gcp_fields(leaf: x509.Certificate, fwd: ForwardedCert) -> list[tuple[str, str]]:
    h = dict(fwd.identity_headers or {})
    san = leaf.extensions
    dns: list[str] = []
    uris: list[str] = []
    with contextlib.suppress(x509.ExtensionNotFound):
        ext = san.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = ext.get_values_for_type(x509.DNSName)
        uris = ext.get_values_for_type(x509.UniformResourceIdentifier)

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    out = [
        (h["chain_verified"], "true"),
        (h["serial"], f"{leaf.serial_number:x}"),
        (h["subject"], b64(leaf.subject.rfc4514_string())),
        (h["issuer"], b64(leaf.issuer.rfc4514_string())),
        (h["not_before"], leaf.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%S+00:00")),
        (h["not_after"], leaf.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%S+00:00")),
    ]
    if dns:
        out.append((h["dns"], ",".join(b64(d) for d in dns)))
    if uris:
        out.append((h["uri"], ",".join(b64(u) for u in uris)))
    return out


# -- PEM/DER chains ---------------------------------------------------------------------------
def _chain_target() -> Target:
    verifier = _verifier()

    def check(data: bytes) -> None:
        whole = _outcome(lambda: verifier.verify(data))
        try:
            from mtlsauth._encoding import chain_to_der

            ders = chain_to_der(data)
        except MTLSAuthError:
            assert whole[0] == "refused", f"undecodable chain gave {whole}"
            return
        parts = _outcome(lambda: verifier.verify(ders))
        assert whole == parts, f"bytes give {whole}, its decoded DER tuple {parts}"
        pem = "".join(der_to_pem(d) for d in ders)
        assert chain_to_der(pem) == ders, "PEM round trip changed the chain"

    def seeds() -> list[bytes]:
        out = []
        for chain in pki().chains:
            out.append(b"".join(chain))
            out.append("".join(der_to_pem(d) for d in chain).encode())
            out.append(chain[0])
        return out

    def mutate(data: bytes, rng: random.Random) -> bytes:
        from mtlsauth._encoding import chain_to_der

        try:
            ders = list(chain_to_der(data))
        except MTLSAuthError:
            return _text_mutate(data, rng) if data[:1] == b"-" else _der.mutate_raw(data, rng)
        new = _mutate_ders(ders, rng)
        if data.startswith(b"-") or rng.random() < 0.2:
            return "".join(der_to_pem(d) for d in new).encode()
        return b"".join(new)

    return Target("chain", check, seeds, mutate, "PEM/DER chains (Verifier.verify)")


# -- CRLs -------------------------------------------------------------------------------------
@contextlib.contextmanager
def _tmpdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="mtlsauth-fuzz-") as d:
        yield Path(d)


def _crl_target() -> Target:
    p = pki()
    chain = p.chains[0]
    good = p.crl()

    def check(data: bytes) -> None:
        try:
            crls = CRLSet.from_pem(data) if b"-----BEGIN" in data else CRLSet.from_der(data)
        except ValueError:
            crls = None
        if crls is not None:
            v = _verifier(revocation=crls)
            _outcome(lambda: v.verify(chain))
        # The same bytes arriving by a file rotation: reload must not raise, and must fail
        # closed (the old CRL stays, or the chain is refused).
        with _tmpdir() as d:
            root_crl = p.crl(signer="root")
            (d / "root.crl").write_bytes(root_crl)
            (d / "inter.crl").write_bytes(good)
            for f in d.iterdir():  # older than the reloader's write-quiet period
                os.utime(f, (1, 1))
            files = CRLSet.from_paths(d, reload_interval=None)
            v = _verifier(revocation=files)
            before = _outcome(lambda: v.verify(chain))
            assert before[0] == "ok", f"good CRLs refused: {before}"
            (d / "inter.crl").write_bytes(data)
            os.utime(d / "inter.crl", (2, 2))
            v.reload()
            _outcome(lambda: v.verify(chain))

    def seeds() -> list[bytes]:
        serial = p.leaves[0].serial_number
        revoked = p.crl(revoked=(serial, 12345))
        pem = x509.load_der_x509_crl(revoked).public_bytes(serialization.Encoding.PEM)
        return [good, revoked, pem]

    def mutate(data: bytes, rng: random.Random) -> bytes:
        if data.startswith(b"-"):
            try:
                data = x509.load_pem_x509_crl(data).public_bytes(serialization.Encoding.DER)
            except ValueError:
                return _text_mutate(data, rng)
        return _der.mutate_cert(data, rng, p.inter_key)

    return Target("crl", check, seeds, mutate, "CRLs (CRLSet from bytes and from rotated files)")


# -- OCSP responses ---------------------------------------------------------------------------
class _CannedOCSP(OCSPChecker):
    """An OCSPChecker whose responder answers with the fuzz input (no network)."""

    __slots__ = ("_canned",)

    def __init__(self, canned: bytes, mode: str) -> None:
        super().__init__(
            responder_url="http://127.0.0.1:9/",
            nonce=False,
            cache_size=0,
            failure=mode,  # type: ignore[arg-type]
        )
        self._canned = canned

    def _post(self, url: str, data: bytes) -> bytes:
        return self._canned


def _ocsp_target() -> Target:
    p = pki()
    chain = p.chains[0]

    def check(data: bytes) -> None:
        hard = _outcome(lambda: _verifier(revocation=_CannedOCSP(data, "hard-fail")).verify(chain))
        soft = _outcome(lambda: _verifier(revocation=_CannedOCSP(data, "soft-fail")).verify(chain))
        # Soft-fail differs from hard-fail only by admitting what hard-fail could not check.
        if hard[0] == "ok":
            assert soft == hard, f"hard-fail {hard}, soft-fail {soft}"
        if soft == ("refused", "certificate_revoked"):
            assert hard == soft, f"revoked in soft-fail only: hard-fail {hard}"

    def seeds() -> list[bytes]:
        return [
            p.ocsp_response(p.leaves[0]),
            p.ocsp_response(p.leaves[0], revoked=True),
            p.ocsp_response(p.leaves[1]),
        ]

    def mutate(data: bytes, rng: random.Random) -> bytes:
        return _der.mutate_cert(data, rng, None)

    return Target("ocsp", check, seeds, mutate, "OCSP responses (OCSPChecker)")


# -- DN strings from configuration -------------------------------------------------------------
def _dn_target() -> Target:
    p = pki()

    def check(data: bytes) -> None:
        text = data.decode("utf-8", "replace")
        try:
            policy = Policy(subjects={text}, issuers={text})
        except (ValueError, TypeError):
            policy = None
        if policy is not None:
            v = _verifier(policy=policy)
            _outcome(lambda: v.verify(p.chains[1]))
        from mtlsauth._forwarded._verified import parse_dn

        try:
            name = parse_dn(text)
        except MTLSAuthError:
            return
        if policy is None or not len(name) or len(text) > 400:
            return
        # A certificate carrying exactly the DN this text names must match Policy(subjects={text}).
        try:
            cert = _leaf_with_subject(name).sign(p.inter_key, hashes.SHA256())
        except ValueError:
            return
        chain = (cert.public_bytes(serialization.Encoding.DER), p.der(p.inter))
        got = _outcome(lambda: _verifier(policy=Policy(subjects={text})).verify(chain))
        assert got != ("refused", "subject_not_allowed"), (
            f"{text!r} parses to {name.rfc4514_string()!r}, but a certificate with that subject "
            "does not match Policy(subjects={text})"
        )

    def seeds() -> list[bytes]:
        out = [leaf.subject.rfc4514_string().encode() for leaf in p.leaves]
        out += [
            b"C = US, O = Example Corp, CN = client-1",
            b"/C=US/O=Example Corp/CN=client-1",
            b"cn=client-1,o=payments",
            b'CN=a \\"b\\",O=x',
            b"CN=a+UID=b,O=x",
            b"emailAddress=ops@example.com,CN=x",
            b"CN=#0c0378797a",
        ]
        return out

    def mutate(data: bytes, rng: random.Random) -> bytes:
        return _text_mutate(data, rng)

    return Target("dn", check, seeds, mutate, "DN strings (Policy subjects/issuers, XFCC Subject)")


def _leaf_with_subject(name: x509.Name) -> x509.CertificateBuilder:
    from fuzz._pki import ec_key, leaf_builder

    p = pki()
    b = leaf_builder("dn", p.inter, p.inter_key, ec_key("leaf plain"))
    return b.subject_name(name)


# -- configuration files ----------------------------------------------------------------------
_TOML_SEED = """mode = "mandatory"
exempt_paths = ["/healthz"]

[trust]
files = ["clients-ca.pem"]
max_depth = 2

[revocation]
crls = ["crls/"]
allow_missing = true

[forwarded]
preset = "nginx"
trusted_proxies = ["127.0.0.1", "10.0.0.0/8"]

[policy]
organizations = ["payments"]
subjects = ["C = US, O = Example Corp, CN = client-1"]

[[routes]]
path = "/catalogue/*"
mode = "optional"

[[routes]]
regex = "^/admin/"
policy = { organizations = ["payments"], organizational_units = ["ops"] }
"""

_YAML_SEED = """mode: mandatory
exempt_paths: [/healthz]
trust:
  files: [clients-ca.pem]
revocation:
  crls: [crls/]
forwarded:
  preset: envoy
  trusted_proxies: ["127.0.0.1"]
policy:
  spiffe_ids: ["spiffe://example.com/ns/prod/*"]
routes:
  - path: /admin/*
    policy: {common_names: [ops]}
"""


def _config_target(kind: str) -> Target:
    p = pki()

    def check(data: bytes) -> None:
        with _tmpdir() as d:
            (d / "clients-ca.pem").write_bytes(p.root_pem)
            (d / "crls").mkdir()
            (d / "crls" / "inter.crl").write_bytes(p.crl())
            path = d / f"mtlsauth.{kind}"
            path.write_bytes(data)
            try:
                config = load_config(path)
            except ValueError:
                return
            assert config is not None

    def seeds() -> list[bytes]:
        return [(_TOML_SEED if kind == "toml" else _YAML_SEED).encode()]

    def mutate(data: bytes, rng: random.Random) -> bytes:
        return _text_mutate(data, rng)

    return Target(f"config_{kind}", check, seeds, mutate, f"{kind.upper()} configuration")


def _leaf_facts_check(data: bytes, cert: x509.Certificate) -> None:
    """``_leafder``'s answers for ``data`` against cryptography's own reading of it."""
    from unittest import mock

    from mtlsauth._der import encode_oid
    from mtlsauth._leafder import SAN_OID, extensions_read, profile_passes, read_leaf, san_values
    from mtlsauth._pathvalidation import check_leaf_profile

    facts = read_leaf(data)
    if facts is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                parts = (cert.tbs_certificate_bytes, cert.issuer.public_bytes())
                parts += (cert.subject.public_bytes(),)
            except Exception:  # cryptography cannot read a part: nothing to compare
                parts = None
            try:
                extensions: x509.Extensions | None = cert.extensions
            except Exception:
                extensions = None
        if parts is not None:
            assert parts == (facts.tbs, facts.issuer, facts.subject), "parts are elsewhere"
        if extensions_read(facts):
            assert extensions is not None, "vouched for extensions cryptography refuses"
        if extensions is not None:
            flags = {encode_oid(e.oid.dotted_string): e.critical for e in extensions}
            assert flags == {o: c for o, (c, _) in facts.extensions.items()}, "extension flags"
            san = facts.extensions.get(SAN_OID)
            values = san_values(san[1]) if san is not None else None
            if values is not None:
                got = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                want = tuple(
                    tuple(got.get_values_for_type(t))
                    for t in (x509.DNSName, x509.UniformResourceIdentifier, x509.RFC822Name)
                )
                assert values[:3] == want, "SAN values differ"
                assert values[3] == tuple(got.get_values_for_type(x509.IPAddress)), "SAN IPs"
            if profile_passes(facts):
                check_leaf_profile(cert)  # the validators must pass where the reading says so
    # The whole verification, with the DER reading and without it, decides alike.
    chain = (data, pki().der(pki().inter))
    with_reading = _verdict(lambda: _tls_verifier().verify(chain))
    with mock.patch("mtlsauth._verifier.read_leaf", return_value=None):
        without = _verdict(lambda: _tls_verifier().verify(chain))
    assert with_reading == without, f"with the DER reading {with_reading}, without {without}"


def _verdict(fn: Callable[[], ClientIdentity]) -> object:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            identity = fn()
        except MTLSAuthError as exc:
            return type(exc).__name__, exc.code, exc.detail
    fields = dataclasses.asdict(identity)
    for name in ("certificate", "chain", "_organizations_from"):
        fields.pop(name)
    return fields


def _der_identity_target() -> Target:
    """The DER reader and the identity read from the DER, against cryptography's reading;
    the leaf reader (``_leafder``) and the verification with and without it."""
    from mtlsauth import _identity
    from mtlsauth._der import DERError, certificate_names, read_name
    from mtlsauth._errors import CertificateInvalid
    from mtlsauth._leafder import read_leaf

    def full(cert: x509.Certificate, data: bytes) -> ClientIdentity:
        try:
            view = x509.load_der_x509_certificate(data)
            return _identity._parsed(cert, (), "tls", data, view)
        except Exception as exc:  # the mapping identity_from_certificate applies
            raise CertificateInvalid(
                f"certificate fields cannot be read ({type(exc).__name__})",
                code="certificate_malformed",
            ) from None

    def check(data: bytes) -> None:
        try:
            spans: tuple[tuple[int, int], ...] = certificate_names(data)
        except DERError:  # a ValueError: the only exception the reader may raise
            spans = ()
        for start, end in spans:
            try:
                read_name(data, start, end)
            except DERError:
                pass
        cert = _load(data)
        if cert is None:
            return
        facts = read_leaf(data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            direct = _outcome(
                lambda: _identity.identity_from_certificate(cert, der=data, facts=facts)
            )
            reference = _outcome(lambda: full(cert, data))
        assert direct == reference, f"read from the DER {direct}, through cryptography {reference}"
        _leaf_facts_check(data, cert)
        if spans and direct[0] == "ok":
            (i0, i1), (s0, s1) = spans
            assert data[i0:i1] == cert.issuer.public_bytes(), "issuer slice is not the issuer"
            assert data[s0:s1] == cert.subject.public_bytes(), "subject slice is not the subject"

    def seeds() -> list[bytes]:
        p = pki()
        long_values = [_long_values_leaf(128, 20), _long_values_leaf(20, 126)]
        return [p.der(c) for c in (p.root, p.inter, *p.leaves)] + long_values

    def mutate(data: bytes, rng: random.Random) -> bytes:
        cert = _load(data)
        try:
            key = pki().key_for(cert) if cert is not None else None
        except Exception:
            key = None
        return _der.mutate_cert(data, rng, key)  # type: ignore[arg-type]

    return Target("der_identity", check, seeds, mutate, "DER reader and ClientIdentity from DER")


def _long_values_leaf(ski: int, aki: int) -> bytes:
    """A client certificate with key identifiers of ``ski`` and ``aki`` octets and a SAN that
    needs a long-form length, so that length mutations reach the long form (and the octets
    around 128) inside the extensions the leaf reader vouches for. One long value per seed:
    a second extension the reader declines would hide the first from it."""
    from cryptography.x509.oid import ExtendedKeyUsageOID

    from fuzz._pki import NOT_AFTER, NOT_BEFORE, ec_key

    p = pki()
    key = ec_key(f"leaf long values {ski} {aki}")
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "long values")]))
        .issuer_name(p.inter.subject)
        .public_key(key.public_key())
        .serial_number(4242)
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier(bytes(range(ski))), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier(bytes(aki), None, None), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("a" * 60 + ".example"), x509.DNSName("b" * 63 + ".example")]
            ),
            critical=False,
        )
    )
    return p.der(builder.sign(p.inter_key, hashes.SHA256()))


def all_targets() -> dict[str, Target]:
    targets = [_header_target(k, v) for k, v in HEADER_PRESETS.items()]
    targets += [
        _identity_target(),
        _chain_target(),
        _der_identity_target(),
        _crl_target(),
        _ocsp_target(),
        _dn_target(),
        _config_target("toml"),
        _config_target("yaml"),
    ]
    covered = {
        ForwardedCert.preset(p, trusted_proxies=[PROXY]).encoding for p in HEADER_PRESETS.values()
    }
    assert covered == set(ENCODINGS), (
        f"header formats without a fuzz target: {set(ENCODINGS) - covered}"
    )
    return {t.name: t for t in targets}


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
