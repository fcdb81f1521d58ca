"""The ``mtlsauth`` command line: ``inspect``, ``verify``, ``testca`` and ``demo``.

``main(argv=None)`` returns the exit status: 0 accepted/success, 1 refused, 2 usage or input
error. Errors go to stderr as one line; no traceback ever reaches the user.

Why one module of this size: one argument parser and the four commands it dispatches, each a
screen; splitting per command would split the shared output helpers.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import unicodedata
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from mtlsauth._errors import explain as _explain

if TYPE_CHECKING:
    from mtlsauth._identity import ClientIdentity
    from mtlsauth._verifier import Verifier

__all__ = ["main"]


class UsageError(Exception):
    """Bad arguments or unreadable input: exit status 2."""


# -- output --------------------------------------------------------------------------------
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_CODES = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "cyan": "36"}
_DISPLAY_UNSAFE = frozenset(("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"))


class _Styled(str):
    """Text ``Out.style`` made: its escape sequences are ours, so ``Out.fields`` keeps them."""

    __slots__ = ()


def display(value: object) -> str:
    """``value`` as one line a terminal shows as it is.

    Certificate names, SANs and header values are chosen by the client (or whoever issued its
    certificate): an ESC starts a terminal sequence (clear the screen, an OSC 8 link, a new
    window title), ``\\r`` and backspace overwrite what was printed, a newline forges a line and
    U+202E reorders it. Each such character (Unicode categories Cc, Cf, Zl, Zp, Cs, Co and Cn)
    is written as a visible ``\\xNN``/``\\uNNNN``/``\\UNNNNNNNN`` escape. The JSON output keeps the
    exact value.
    """
    text = value if isinstance(value, str) else str(value)
    if text.isascii() and text.isprintable():
        return text
    out = []
    for ch in text:
        if unicodedata.category(ch) not in _DISPLAY_UNSAFE:
            out.append(ch)
        elif ord(ch) <= 0xFF:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return "".join(out)


class Out:
    """Aligned ``key: value`` output, coloured only on a terminal and without ``NO_COLOR``."""

    def __init__(self, stream: IO[str], color: str = "auto") -> None:
        self.stream = stream
        if color == "always":
            self.color = True
        elif color == "never":
            self.color = False
        else:
            isatty = getattr(stream, "isatty", None)
            self.color = (
                bool(isatty and isatty())
                and not os.environ.get("NO_COLOR")
                and os.environ.get("TERM") != "dumb"
            )

    def style(self, text: str, *styles: str) -> str:
        if not self.color or not styles:
            return text
        codes = ";".join(_CODES[s] for s in styles)
        return _Styled(f"\x1b[{codes}m{text}\x1b[0m")

    def line(self, text: str = "") -> None:
        self.stream.write(text + "\n")

    def fields(self, rows: Sequence[tuple[str, object]], indent: str = "  ") -> None:
        """Aligned ``key: value`` rows; every value not made by ``style`` goes through
        ``display``, so a certificate's content cannot drive the terminal."""
        rows = [(k, v) for k, v in rows if v not in (None, "", [], ())]
        width = max((len(k) for k, _ in rows), default=0)
        for key, value in rows:
            values = list(value) if isinstance(value, list | tuple) else [value]
            values = [v if isinstance(v, _Styled) else display(v) for v in values]
            label = self.style(f"{key + ':':<{width + 1}}", "dim")
            self.line(f"{indent}{label} {values[0]}")
            for more in values[1:]:
                self.line(f"{indent}{' ' * (width + 1)} {more}")

    def table(self, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        """Aligned columns; colour codes in cells do not count towards the widths."""
        width = [len(h) for h in header]
        for row in rows:
            for i, cell in enumerate(row):
                width[i] = max(width[i], len(_ANSI.sub("", cell)))

        def fmt(cells: Sequence[str]) -> str:
            parts = [c + " " * (width[i] - len(_ANSI.sub("", c))) for i, c in enumerate(cells)]
            return "  ".join(parts).rstrip()

        self.line(self.style(fmt(header), "bold"))
        self.line("  ".join("-" * w for w in width))
        for row in rows:
            self.line(fmt(row))


# -- reading input -------------------------------------------------------------------------
MAX_INPUT = 16 * 1024 * 1024


def read_input(name: str) -> bytes:
    """Bytes of FILE, or of stdin for ``-``; at most ``MAX_INPUT`` bytes.

    No certificate chain comes near 16 MiB: a larger input (``/dev/zero``, a log file named by
    mistake, a pipe that never ends) is an input error, not something read into memory whole.
    """
    try:
        if name == "-":
            data = sys.stdin.buffer.read(MAX_INPUT + 1)
        else:
            with open(name, "rb") as f:
                data = f.read(MAX_INPUT + 1)
    except OSError as exc:
        raise UsageError(f"{name}: cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_INPUT:
        raise UsageError(f"{name}: larger than {MAX_INPUT // (1024 * 1024)} MiB, not a certificate")
    return data


def _header_formats() -> dict[str, str]:
    """``--header-format`` choices: every preset name and every encoding name -> encoding."""
    from mtlsauth._forwarded._formats import ENCODINGS
    from mtlsauth._forwarded._presets import PRESETS

    formats = {name: str(cfg["encoding"]) for name, cfg in PRESETS.items()}
    formats.update({e: e for e in ENCODINGS})
    return formats


def decode_header(fmt: str, data: bytes) -> tuple[bytes, ...]:
    """DER certificates from a forwarded header value (a bare value or a ``Name: value`` line)."""
    from mtlsauth._errors import CertificateInvalid
    from mtlsauth._forwarded._formats import DECODERS, is_absent
    from mtlsauth._forwarded._presets import resolve_name

    formats = _header_formats()
    try:
        fmt = resolve_name(fmt, formats, "--header-format")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    encoding = formats[fmt]
    try:
        text = data.decode("ascii").strip()
    except UnicodeDecodeError:
        raise UsageError("the header value is not ASCII text") from None
    name, sep, rest = text.partition(":")
    if sep and name and all(c.isalnum() or c in "-_" for c in name):
        text = rest.strip()  # "X-SSL-Client-Cert: value" as copied from a log or curl -v
    if is_absent(text):
        return ()
    try:
        if encoding == "xfcc":
            from mtlsauth._forwarded._xfcc import decode_element, select_element

            return tuple(decode_element(select_element(text, -1)))
        return tuple(DECODERS[encoding](text))
    except CertificateInvalid as exc:
        raise UsageError(f"not a valid {fmt} header value: {exc.detail}") from None


def load_chain(data: bytes, header_format: str | None) -> tuple[bytes, ...]:
    """DER certificates from PEM (one or many), DER, or a forwarded header value."""
    from mtlsauth._encoding import chain_to_der, pem_to_der_list
    from mtlsauth._errors import CertificateInvalid

    if header_format:
        return decode_header(header_format, data)
    try:
        if b"-----BEGIN" in data:
            return tuple(pem_to_der_list(data, allow_text=True))
        return chain_to_der(data)
    except CertificateInvalid as exc:
        raise UsageError(f"not a PEM or DER certificate: {exc.detail}") from None


# -- describing a certificate --------------------------------------------------------------
def _hex_colons(data: bytes) -> str:
    return ":".join(f"{b:02x}" for b in data)


def _validity(cert: Any, now: datetime) -> str:
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    if now < start:
        return f"not yet valid (starts in {(start - now).days} days)"
    if now > end:
        return f"expired {(now - end).days} days ago"
    return f"valid for {(end - now).days} more days"


def _key_description(cert: Any) -> str:
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name} ({key.key_size} bits)"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448"
    if isinstance(key, dsa.DSAPublicKey):
        return f"DSA {key.key_size}"
    return type(key).__name__


def _extensions(cert: Any) -> dict[str, Any]:
    from cryptography import x509

    out: dict[str, Any] = {"key_usage": [], "extended_key_usage": [], "basic_constraints": None}
    try:
        exts = cert.extensions
    except ValueError as exc:
        out["extension_error"] = str(exc)
        return out
    for ext in exts:
        value = ext.value
        if isinstance(value, x509.KeyUsage):
            names = ["digital_signature", "content_commitment", "key_encipherment"]
            names += ["data_encipherment", "key_agreement", "key_cert_sign", "crl_sign"]
            out["key_usage"] = [n for n in names if getattr(value, n)]
            if value.key_agreement:
                out["key_usage"] += [
                    n for n in ("encipher_only", "decipher_only") if getattr(value, n)
                ]
        elif isinstance(value, x509.ExtendedKeyUsage):
            out["extended_key_usage"] = [
                getattr(oid, "_name", None) or oid.dotted_string for oid in value
            ]
        elif isinstance(value, x509.BasicConstraints):
            out["basic_constraints"] = {"ca": value.ca, "path_length": value.path_length}
    return out


def describe(der: bytes, now: datetime | None = None) -> dict[str, Any]:
    """Everything ``inspect`` shows about one certificate, as JSON-ready data."""
    import hashlib

    from mtlsauth._encoding import load_der
    from mtlsauth._identity import identity_from_certificate

    now = now or datetime.now(timezone.utc)
    cert = load_der(der)
    ident = identity_from_certificate(cert, der=der)
    ext = _extensions(cert)
    sans = [f"DNS:{d}" for d in ident.dns_names] + [f"URI:{u}" for u in ident.uris]
    sans += [f"email:{e}" for e in ident.emails] + [f"IP:{i}" for i in ident.ip_addresses]
    sig = cert.signature_algorithm_oid
    return {
        "subject": ident.subject,
        "issuer": ident.issuer,
        "self_signed": cert.subject == cert.issuer,
        "common_name": ident.common_name,
        "organization": ident.organization,
        "organizational_units": list(ident.organizational_units),
        "subject_alternative_names": sans,
        "spiffe_id": ident.spiffe_id,
        "serial_number": format(cert.serial_number, "x"),
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "validity": _validity(cert, now),
        "expired": now > cert.not_valid_after_utc,
        "fingerprint_sha256": ident.fingerprint_sha256,
        "fingerprint_sha1": hashlib.sha1(der).hexdigest(),  # noqa: S324 - display only, like nginx
        "key": _key_description(cert),
        "signature_algorithm": getattr(sig, "_name", None) or sig.dotted_string,
        **ext,
    }


def _print_cert(out: Out, info: dict[str, Any], title: str) -> None:
    out.line(out.style(title, "bold", "cyan"))
    validity = info["validity"]
    bad = info["expired"] or validity.startswith("not yet")
    bc = info["basic_constraints"]
    bc_text = None
    if bc is not None:
        bc_text = "CA" if bc["ca"] else "not a CA"
        if bc["ca"] and bc["path_length"] is not None:
            bc_text += f", path length {bc['path_length']}"
    eku = info["extended_key_usage"]
    out.fields(
        [
            ("subject", info["subject"]),
            ("issuer", info["issuer"] + (" (self-signed)" if info["self_signed"] else "")),
            ("SANs", info["subject_alternative_names"]),
            ("SPIFFE ID", info["spiffe_id"]),
            ("serial", info["serial_number"]),
            ("not before", info["not_before"]),
            ("not after", info["not_after"]),
            ("validity", out.style(validity, "red" if bad else "green")),
            ("SHA-256", info["fingerprint_sha256"]),
            ("SHA-1", info["fingerprint_sha1"]),
            ("key", info["key"]),
            ("signature", info["signature_algorithm"]),
            ("key usage", ", ".join(info["key_usage"])),
            ("ext. key usage", ", ".join(eku) if eku else "(none: any usage)"),
            ("basic constr.", bc_text),
        ]
    )


# -- subcommands ---------------------------------------------------------------------------
def cmd_inspect(args: argparse.Namespace, out: Out) -> int:
    ders = load_chain(read_input(args.file), args.header_format)
    if not ders:
        raise UsageError("no certificate in the input")
    from mtlsauth._errors import CertificateInvalid

    try:
        infos = [describe(d) for d in ders]
    except CertificateInvalid as exc:
        raise UsageError(f"not a certificate: {exc.detail}") from None
    if args.json:
        out.line(json.dumps({"certificates": infos}, indent=2))
        return 0
    for i, info in enumerate(infos):
        if i:
            out.line()
        title = "certificate" if len(infos) == 1 else f"certificate {i + 1} of {len(infos)}"
        if len(infos) > 1:
            title += " (leaf)" if i == 0 else ""
        _print_cert(out, info, title)
    return 0


def parse_time(text: str) -> datetime:
    """``--at``: ISO 8601 date or date-time; without an offset it means UTC."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(
            f"--at {text!r} is not an ISO 8601 time (e.g. 2030-01-31 or 2030-01-31T12:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    try:  # 0001-01-01T00:00+01:00 is a moment before the year 1 in UTC
        return moment.astimezone(timezone.utc)
    except OverflowError:
        raise UsageError(f"--at {text!r} falls outside the years 1 to 9999 in UTC") from None


def _trust_from(paths: Sequence[str], password: str | None) -> Any:
    from mtlsauth._truststore import TrustStore

    store: TrustStore | None = None
    for p in paths:
        path = Path(p)
        if path.is_dir():
            part = TrustStore.from_directory(path, reload_interval=None)
        elif path.suffix.lower() in (".p12", ".pfx"):
            part = TrustStore.from_pkcs12(path, password=password, reload_interval=None)
        else:
            part = TrustStore.from_pem_file(path, reload_interval=None)
        store = part if store is None else store | part
    return store


def _build_verifier(args: argparse.Namespace) -> tuple[Verifier, Any, Any]:
    """The Verifier plus (route, mode) the middleware would use for --path/--method."""
    from mtlsauth._verifier import Verifier

    try:
        if args.config:
            from mtlsauth._config import load_config

            if args.ca or args.crl or args.policy or args.intermediate:
                raise UsageError("--config names trust, CRLs and policy itself; drop the others")
            from mtlsauth._guard import Guard

            config = load_config(args.config)
            guard = Guard(**config.middleware_kwargs())
            mode, route, _exempt = guard.resolve(args.path, args.method.upper())
            return config.verifier(), route, mode
        if not args.ca:
            raise UsageError("give at least one --ca PATH (or --config FILE)")
        policy = None
        if args.policy:
            from mtlsauth._config import load_policy

            policy = load_policy(args.policy)
        revocation = None
        if args.crl:
            from mtlsauth._revocation._crl import CRLSet

            revocation = CRLSet.from_paths(
                *args.crl,
                scope=args.crl_mode,
                allow_missing=args.allow_missing_crl,
                reload_interval=None,
            )
        verifier = Verifier(
            trust_store=_trust_from(args.ca, args.ca_password),
            policy=policy,
            revocation=revocation,
            intermediates=[Path(p).read_bytes() for p in args.intermediate],
            max_depth=args.max_depth,
            cache_size=0,
        )
    except OSError as exc:
        raise UsageError(
            f"{getattr(exc, 'filename', '') or 'input'}: {exc.strerror or exc}"
        ) from None
    except (ValueError, TypeError) as exc:
        raise UsageError(str(exc)) from None
    return verifier, None, "mandatory"


def identity_dict(identity: ClientIdentity) -> dict[str, Any]:
    return {
        "subject": identity.subject,
        "common_name": identity.common_name,
        "organization": identity.organization,
        "organizational_units": list(identity.organizational_units),
        "dns_names": list(identity.dns_names),
        "uris": list(identity.uris),
        "emails": list(identity.emails),
        "ip_addresses": [str(i) for i in identity.ip_addresses],
        "spiffe_id": identity.spiffe_id,
        "issuer": identity.issuer,
        "serial_number": None
        if identity.serial_number is None
        else format(identity.serial_number, "x"),
        "fingerprint_sha256": identity.fingerprint_sha256,
        "not_before": identity.not_before.isoformat() if identity.not_before else None,
        "not_after": identity.not_after.isoformat() if identity.not_after else None,
    }


def cmd_verify(args: argparse.Namespace, out: Out) -> int:
    from mtlsauth._errors import CertificateMissing, MTLSAuthError

    at = parse_time(args.at) if args.at else None
    ders = load_chain(read_input(args.cert), args.header_format)
    verifier, route, mode = _build_verifier(args)
    result: dict[str, Any] = {"mode": mode}
    if mode == "off":
        result |= {"accepted": True, "code": "skipped", "identity": None}
    else:
        try:
            if not ders:
                raise CertificateMissing("no client certificate in the input")
            policy = route.policy if route is not None else None
            identity = verifier.verify(
                list(ders), at=at or datetime.now(timezone.utc), policy=policy
            )
            result |= {"accepted": True, "code": "ok", "identity": identity_dict(identity)}
        except CertificateMissing as exc:
            ok = mode == "optional"
            result |= {"accepted": ok, "code": "no_certificate" if ok else exc.code}
            if not ok:
                result |= {
                    "status": exc.status,
                    "detail": exc.detail,
                    "explanation": _explain(exc.code),
                }
        except MTLSAuthError as exc:
            result |= {
                "accepted": False,
                "code": exc.code,
                "status": exc.status,
                "detail": exc.detail,
                "explanation": _explain(exc.code),
            }
            if exc.code == "untrusted_issuer":
                # Where the chain stops: for the operator running this, as in the log
                # line; never in the refusal a client gets.
                hint = verifier._untrusted_issuer_hint(ders)
                if hint is not None:
                    result["hint"] = hint
    if args.json:
        out.line(json.dumps(result, indent=2))
    elif result["accepted"]:
        out.line(out.style("accepted", "bold", "green") + f"  ({result['code']}, mode {mode})")
        if result.get("identity"):
            ident = result["identity"]
            out.fields([(k.replace("_", " "), v) for k, v in ident.items()])
    else:
        head = out.style("refused", "bold", "red")
        detail = display(result["detail"])
        out.line(f"{head}  {result['code']} (HTTP {result['status']}): {detail}")
        out.line(f"  {out.style('why:', 'dim')} {result['explanation']}")
        if result.get("hint"):
            out.line(f"  {out.style('hint:', 'dim')} {display(result['hint'])}")
    return 0 if result["accepted"] else 1


def cmd_testca(args: argparse.Namespace, out: Out) -> int:
    from mtlsauth._cli._testpki import write_test_pki

    try:
        pki = write_test_pki(args.directory, force=args.force)
    except FileExistsError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"{args.directory}: cannot write: {exc.strerror or exc}") from None
    if args.json:
        files = {name: {"path": str(p), "description": d} for name, (p, d) in pki.files.items()}
        out.line(json.dumps({"directory": str(pki.directory), "files": files}, indent=2))
        return 0
    out.line(out.style(f"test PKI written to {pki.directory}/", "bold"))
    out.fields([(name, desc) for name, (_p, desc) in pki.files.items()])
    out.line()
    out.line("Try:")
    d = str(pki.directory)
    out.line(f"  mtlsauth verify --ca {d}/ca.pem --crl {d}/crl.pem {d}/client-good.pem")
    out.line(f"  mtlsauth verify --ca {d}/ca.pem --crl {d}/crl.pem {d}/client-revoked.pem")
    out.line(
        "The trust anchor is ca.pem (the root). For clients that send only their leaf, add "
        "intermediate.pem as --intermediate (intermediates= in code), not as another anchor."
    )
    out.line("These keys are for testing only: never use them for anything real.")
    return 0


DEMO_NEEDS = ("fastapi", "uvicorn", "httpx")


def cmd_demo(args: argparse.Namespace, out: Out) -> int:
    import importlib

    missing = []
    for module in DEMO_NEEDS:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise UsageError(
            f"the demo needs {', '.join(missing)} (not installed): pip install 'mtlsauth[demo]'"
        )
    from mtlsauth._cli._demo import run_demo

    return run_demo(out, json_output=args.json, use_nginx=not args.no_nginx)


# -- wiring --------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    common.add_argument(
        "--color", choices=("auto", "always", "never"), default="auto",
        help="colour output (auto: only on a terminal, and never when NO_COLOR is set)",
    )  # fmt: skip
    parser = argparse.ArgumentParser(
        prog="mtlsauth",
        description="Mutual-TLS client authentication: inspect and verify client certificates.",
        parents=[common],
    )
    from mtlsauth import __version__

    parser.add_argument("--version", action="version", version=f"mtlsauth {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    fmt_help = "decode FILE as a forwarded header value: a preset (nginx, apache, haproxy, envoy, "
    fmt_help += "traefik, rfc9440, ...) or an encoding (url-pem, pem, der-base64, xfcc, ...)"

    p = sub.add_parser("inspect", parents=[common], help="show what is in a certificate")
    p.add_argument("file", metavar="FILE", help="PEM or DER file, or - for stdin")
    p.add_argument("--header-format", metavar="FORMAT", help=fmt_help)
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser(
        "verify", parents=[common], help="the decision the middleware would make for a certificate"
    )
    p.add_argument("cert", metavar="CERT", help="client certificate (PEM chain or DER), or -")
    p.add_argument("--ca", action="append", default=[], metavar="PATH",
                   help="trusted CA: PEM/DER file, folder, or .p12 (repeatable)")  # fmt: skip
    p.add_argument("--ca-password", metavar="PASSWORD", help="password of a .p12 --ca")
    p.add_argument("--crl", action="append", default=[], metavar="PATH",
                   help="CRL file or folder (repeatable)")  # fmt: skip
    p.add_argument("--crl-mode", choices=("chain", "leaf"), default="chain")
    p.add_argument("--allow-missing-crl", action="store_true",
                   help="issuers without any CRL are not checked (Apache no_crl_for_cert_ok)")  # fmt: skip
    p.add_argument("--intermediate", action="append", default=[], metavar="PATH",
                   help="known intermediate CAs for a leaf-only CERT (repeatable)")  # fmt: skip
    p.add_argument("--policy", metavar="FILE", help="allow-lists: the [policy] of a TOML/YAML file")
    p.add_argument("--config", metavar="FILE",
                   help="a whole mtls.toml: trust, CRLs, policy, routes (instead of --ca...)")  # fmt: skip
    p.add_argument("--path", default="/", help="request path, for --config route rules")
    p.add_argument("--method", default="GET", help="request method, for --config route rules")
    p.add_argument("--max-depth", type=int, default=8, help="intermediates allowed (default 8)")
    p.add_argument("--at", metavar="TIME", help="validate as of this ISO 8601 time (default now)")
    p.add_argument("--header-format", metavar="FORMAT", help=fmt_help)
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser(
        "testca",
        parents=[common],
        help="write a test PKI to a folder",
        description="Write a root CA (ca.pem, the trust anchor), an intermediate, client "
        "certificates, CRLs and a localhost server certificate to DIR.",
    )
    p.add_argument("directory", metavar="DIR")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    p.set_defaults(func=cmd_testca)

    p = sub.add_parser(
        "demo", parents=[common], help="run a FastAPI app behind real mutual TLS and call it"
    )
    p.add_argument("--no-nginx", action="store_true", help="skip the nginx part even if installed")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 refused, 2 usage/input error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else 2
    for stream in (sys.stdout, sys.stderr):
        # A name like "Zoë" on a stream that cannot encode it (LC_ALL=C, PYTHONIOENCODING=ascii,
        # a cron job) is written as \xeb rather than ending the command in a traceback.
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="backslashreplace")
            except (ValueError, OSError):  # pragma: no cover - a stream that cannot change
                pass
    out = Out(sys.stdout, args.color)
    err = Out(sys.stderr, args.color)
    try:
        return int(args.func(args, out))
    except UsageError as exc:
        err.line(f"{err.style('mtlsauth: error:', 'bold', 'red')} {display(exc)}")
        if args.json:
            out.line(json.dumps({"error": str(exc)}))
        return 2
    except KeyboardInterrupt:
        err.line("mtlsauth: interrupted")
        return 130
    except BrokenPipeError:  # `mtlsauth inspect x.pem | head`: stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
