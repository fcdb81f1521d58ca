"""TrustStore: the CA certificates a client chain must end at.

A TrustStore is immutable from the outside. One built from paths holds a ``FileSnapshot``
that swaps in a whole new set of anchors when the files change; ``|`` combines stores.

Why one module of this size: the store, the snapshot it swaps and the reading of anchor files
and bundles (PEM, DER, PKCS#12, directories) are one concept whose rules (no end-entity
anchors, no duplicates) apply to all three; no part would stand on its own.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, pkcs12
from cryptography.x509.verification import Store

from mtlsauth._encoding import MAX_INPUT_BYTES, chain_to_der, load_der, pem_to_der_list
from mtlsauth._errors import CertificateInvalid
from mtlsauth._reload import FileSnapshot, refuse_pem_text
from mtlsauth._tbs import _tbs_names

__all__ = [
    "TrustSnapshot",
    "TrustStore",
    "is_end_entity",
    "load_certificate_file",
    "not_a_trust_store",
    "refuse_end_entities",
]

logger = logging.getLogger("mtlsauth")

_CERT_SUFFIXES = (".pem", ".crt", ".cer")
_OPENSSL_HASH = re.compile(r"^[0-9a-f]{8}\.\d+$")  # c_rehash / openssl rehash links
_MAX_FILE = 16 * 1024 * 1024


def _is_cert_name(name: str) -> bool:
    return name.lower().endswith(_CERT_SUFFIXES) or bool(_OPENSSL_HASH.match(name))


def is_end_entity(cert: x509.Certificate) -> bool:
    """True for a certificate that cannot issue others: basicConstraints ``cA`` false, or a
    version 3 certificate without basicConstraints (RFC 5280 section 4.2.1.9)."""
    try:
        return not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return cert.version == x509.Version.v3
    except ValueError:  # unparsable extensions: not an anchor either
        return True


@dataclass(frozen=True, slots=True, eq=False)
class TrustSnapshot:
    """One immutable set of trusted certificates, with the verifier ``Store`` built once for it.

    ``store`` holds the anchors: every certificate that no other certificate of the set
    issued. The others (``intermediates``: an intermediate CA next to its root in a bundle)
    are offered to path building as intermediates, so a chain through them is validated up to
    the top anchor and gets that anchor's name constraints and its CRL or OCSP check.

    ``end_entities`` are the certificates that are not CAs (client or server leaves). They
    count for pinning (``fingerprints``) but are never anchors nor intermediates: a leaf
    issues nothing. ``store`` is ``None`` when no CA is left.
    """

    certificates: tuple[x509.Certificate, ...]
    store: Store | None
    fingerprints: frozenset[str]
    intermediates: tuple[x509.Certificate, ...] = ()
    end_entities: tuple[x509.Certificate, ...] = ()


def _issued(child: x509.Certificate, parent: x509.Certificate) -> bool:
    """True when ``parent`` is a CA whose key signed ``child`` under ``child``'s issuer name."""
    try:
        bc = parent.extensions.get_extension_for_class(x509.BasicConstraints).value
        if not bc.ca:
            return False
        child.verify_directly_issued_by(parent)
    except Exception:  # noqa: BLE001 - no CA, other name, other key, unsupported algorithm
        return False
    return True


def _split_anchors(
    certs: list[x509.Certificate],
) -> tuple[list[x509.Certificate], list[x509.Certificate]]:
    """Anchors (issued by no other CA of the set) and in-store intermediates.

    A certificate whose issuer is also in the set is validated up to that issuer, as OpenSSL
    does without partial chains: otherwise a bundle's intermediate would end every path,
    skipping the root's name constraints and the intermediate's own revocation check. A
    self-signed certificate is always an anchor. A certificate from which no anchor can be
    reached (CAs that certify each other) stays an anchor, so a bundle never loses a CA it
    lists; another certificate for a CA that is placed below an anchor (same name and key:
    cross-signed elsewhere) is placed there too.
    """
    ids = [_ca_identity(c) for c in certs]
    by_subject: dict[bytes, list[int]] = {}
    for i, (subject, _key) in enumerate(ids):
        by_subject.setdefault(subject, []).append(i)
    parents: list[list[int]] = []
    for i, c in enumerate(certs):
        same_name = by_subject.get(c.issuer.public_bytes(), [])
        # Another certificate of the same CA (name and key) is not its issuer: a self-signed
        # root and a cross-signed copy of it certify each other that way.
        parents.append([j for j in same_name if ids[j] != ids[i] and _issued(c, certs[j])])
    top = [not p for p in parents]
    reaches = list(top)
    changed = True
    while changed:  # reaches[i]: some in-store issuer path from i ends at a top certificate
        changed = False
        for i, ps in enumerate(parents):
            if not reaches[i] and any(reaches[j] for j in ps):
                reaches[i] = changed = True
    below = {i for i in range(len(certs)) if not top[i] and reaches[i]}
    # The same CA certified elsewhere as well, e.g. cross-signed by a CA outside the store, is
    # no shortcut: it is an intermediate too, so paths through that CA still end at the top.
    placed = {ids[i] for i in below}
    below |= {i for i in range(len(certs)) if ids[i] in placed}
    below -= {i for i, c in enumerate(certs) if _self_signed(c)}
    anchors = [c for i, c in enumerate(certs) if i not in below]
    return anchors, [certs[i] for i in sorted(below)]


def _self_signed(cert: x509.Certificate) -> bool:
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except Exception:  # noqa: BLE001 - other key, unsupported algorithm
        return False
    return True


def _ca_identity(cert: x509.Certificate) -> tuple[bytes, bytes]:
    # The key as its DER bytes, not parsed: a key type cryptography cannot load still
    # identifies its CA (and cannot verify anything).

    return cert.subject.public_bytes(), _tbs_names(cert)[2]


def _snapshot(certs: Iterable[x509.Certificate], *, allow_empty: bool = False) -> TrustSnapshot:
    """``allow_empty``: a reload whose files were all withdrawn (``_withdrawn``) trusts
    nothing; a store being built needs a certificate."""
    unique: dict[str, x509.Certificate] = {}
    for c in certs:
        unique.setdefault(hashlib.sha256(c.public_bytes(Encoding.DER)).hexdigest(), c)
    if not unique:
        if allow_empty:
            return TrustSnapshot((), None, frozenset())
        raise ValueError("a TrustStore needs at least one certificate")
    everything = list(unique.values())
    try:
        leaves = tuple(c for c in everything if is_end_entity(c))
        cas = [c for c in everything if not is_end_entity(c)]
        anchors, subordinate = _split_anchors(cas)
    except Exception as exc:  # noqa: BLE001 - a certificate field that cannot be read
        raise ValueError(f"a certificate cannot be read ({type(exc).__name__})") from None
    return TrustSnapshot(
        tuple(everything),
        Store(anchors) if anchors else None,
        frozenset(unique),
        tuple(subordinate),
        leaves,
    )


def not_a_trust_store(value: object, what: str = "trust_store") -> TypeError:
    """The ``TypeError`` for a value given where a ``TrustStore`` belongs, saying which
    constructor turns it into one (a path, PEM text) when that can be told."""
    if isinstance(value, str | bytes) and (
        "-----BEGIN" in value if isinstance(value, str) else b"-----BEGIN" in value
    ):
        return TypeError(f"{what} must be a TrustStore: for PEM text use TrustStore.from_pem(text)")
    if isinstance(value, str | os.PathLike):
        name = os.fsdecode(value)
        maker = "from_directory" if os.path.isdir(name) else "from_pem_file"
        return TypeError(
            f"{what} must be a TrustStore, not a path: use TrustStore.{maker}({name!r})"
        )
    return TypeError(
        f"{what} must be a TrustStore (e.g. TrustStore.from_pem_file(...)), "
        f"not {type(value).__name__}"
    )


def refuse_end_entities(store: TrustStore, what: str) -> None:
    """``ValueError`` when ``store`` holds certificates that are not CAs (used as anchors)."""
    leaves = store.snapshot().end_entities
    unreadable = [c for c in leaves if not _extensions_readable(c)]
    if unreadable:
        # Not an end entity that someone put there by mistake: a CA certificate whose
        # extensions do not parse (a name constraint with a wildcard, an authority key
        # identifier with half its fields), which can never be an anchor either.
        names = ", ".join(_subject_text(c) for c in unreadable[:3])
        raise ValueError(
            f"{what} holds certificate {names} whose extensions cannot be read, so it cannot "
            "be a trust anchor: re-issue the CA certificate"
        )
    if leaves:
        names = ", ".join(c.subject.rfc4514_string() or "(empty subject)" for c in leaves[:3])
        more = f" and {len(leaves) - 3} more" if len(leaves) > 3 else ""
        raise ValueError(
            f"{what} holds end-entity certificate {names}{more}, which is not a CA: an "
            "anchor must be the CA that issues client certificates. To accept exact "
            "certificates without a CA, use Verifier(pinned=...)"
        )


def _extensions_readable(cert: x509.Certificate) -> bool:
    try:
        cert.extensions  # noqa: B018 - parsed lazily; reading them is the check
    except ValueError:
        return False
    return True


def _subject_text(cert: x509.Certificate) -> str:
    try:
        return cert.subject.rfc4514_string() or "(empty subject)"
    except ValueError:
        return "(unreadable subject)"


_BLANK_MAX = 4096  # a file of whitespace alone, as `: > ca.pem` or an editor leaves it


def _withdrawn(path: Path, what: str) -> bool:
    """True when ``path`` is gone (deleted, or a symlink whose target was removed) or holds
    nothing but whitespace: what an operator does to stop trusting what the file held.

    Keeping the last good copy then would keep admitting a CA someone meant to withdraw,
    until a restart. A file caught half-written never gets here (``FileSnapshot`` reads only
    files that have stopped changing), and a file with content that cannot be read is a
    failed reload that keeps the last good copy, as before.
    """
    try:
        if path.stat().st_size > _BLANK_MAX:
            return False
        blank = not path.read_bytes().strip()
    except FileNotFoundError:
        blank = True
    except OSError:
        return False  # unreadable (permissions...): a failed reload, not a withdrawal
    if blank:
        logger.warning("mtlsauth: %s: %s is gone or empty: nothing in it is trusted", what, path)
    return blank


def _nonempty(store: TrustStore, message: str) -> TrustStore:
    """``store`` unless it holds no certificate: a store is built with something to trust."""
    if not store.snapshot().certificates:
        raise ValueError(message)
    return store


def _not_a_directory(path: str | os.PathLike[str], use: str) -> None:
    if Path(path).is_dir():
        raise ValueError(f"{path} is a directory: use TrustStore.{use} for a folder of CA files")


def load_certificate_file(path: Path, *, what: str = "") -> list[x509.Certificate]:
    """Read every certificate in a PEM or DER file; ``ValueError`` naming the file otherwise."""
    where = f"{what}: {path}" if what else str(path)
    try:
        if path.stat().st_size > _MAX_FILE:
            raise ValueError(f"{where}: file too large for a certificate bundle")
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{where}: cannot read: {exc.strerror or exc}") from None
    return _parse_bundle(data, where)


def _parse_bundle(data: bytes, where: str) -> list[x509.Certificate]:
    try:
        if b"-----BEGIN" in data:
            ders = pem_to_der_list(data, allow_text=True)
        elif not data.startswith(b"\x30"):  # neither PEM nor DER (a SEQUENCE)
            ders = []
        else:
            ders = list(chain_to_der(data)) if len(data) <= MAX_INPUT_BYTES else []
        certs = [load_der(d) for d in ders]
    except CertificateInvalid as exc:
        raise ValueError(f"{where}: {exc.detail}") from None
    if not certs:
        raise ValueError(f"{where}: no certificate found")
    return certs


class TrustStore:
    """Trust anchors for client certificates.

    Build one with a class method; combine with ``|``::

        trust = TrustStore.from_pem_file("clients-ca.pem") | TrustStore.from_directory("extra/")

    A certificate in the store is a trust anchor unless another certificate in the store
    issued it: a bundle of a root and its intermediate validates chains through the
    intermediate up to the root (the root's name constraints, and revocation of the
    intermediate, apply). An intermediate whose issuer is not in the store anchors the chains
    below it (a "partial chain").
    End-entity certificates (client or server leaves) are never anchors:
    ``Verifier(trust_store=...)`` and ``server_ssl_context`` refuse a store holding one with a
    ``ValueError`` (for exact certificates without a CA there is ``Verifier(pinned=...)``,
    which may be a ``TrustStore``), and one that appears on a reload is left out.

    Stores built from files reload when the files change. A file that fails to load keeps
    the last good copy (and shows in ``health()``); a file that was deleted or emptied, a
    PKCS#12 file with no certificate left, or a folder with no certificate file withdraws
    what it held, so emptying a CA's file is how to stop trusting it without a restart.

    Security note: anything you put here can issue client certificates your app will accept.
    Keep it to the CAs that issue *client* certificates, not a public web PKI bundle.
    """

    __slots__ = ("_cached", "_parts", "_static")

    def __init__(self, *parts: TrustSnapshot | FileSnapshot[TrustSnapshot]) -> None:
        if not parts:
            raise TypeError(
                "use TrustStore.from_pem_file(), from_pem(), from_directory() or from_pkcs12()"
            )
        self._parts = parts
        # The parts' snapshots the merged one was built from, held (never their id()s: a
        # freed snapshot's address is reused by a later one, which would revive old anchors).
        self._cached: tuple[tuple[TrustSnapshot, ...], TrustSnapshot] | None = None
        only = parts[0]
        self._static = only if len(parts) == 1 and isinstance(only, TrustSnapshot) else None

    # -- constructors ---------------------------------------------------------------------
    @classmethod
    def from_pem(cls, data: str | bytes) -> TrustStore:
        """Anchors from PEM text holding one or more certificates."""
        if isinstance(data, os.PathLike) or (
            isinstance(data, str) and "-----BEGIN" not in data and Path(data).is_file()
        ):
            raise TypeError(
                f"from_pem() takes PEM text; for the file {os.fsdecode(data)} use from_pem_file()"
            )
        if isinstance(data, str):
            data = data.encode("utf-8")
        if not isinstance(data, bytes):
            raise TypeError("from_pem() takes str or bytes")
        return cls(_snapshot(_parse_bundle(data, "PEM input")))

    @classmethod
    def from_certificates(cls, certificates: Iterable[x509.Certificate]) -> TrustStore:
        """Anchors from ``cryptography`` certificate objects."""
        certs = list(certificates)
        if not all(isinstance(c, x509.Certificate) for c in certs):
            raise TypeError("from_certificates() takes x509.Certificate objects")
        return cls(_snapshot(certs))

    @classmethod
    def from_pem_file(
        cls, path: str | os.PathLike[str], *, reload_interval: float | None = 30.0
    ) -> TrustStore:
        """Anchors from a PEM (or DER) file, re-read when it changes.

        Raises:
            ValueError: the file is missing, unreadable, holds no certificate, or is a
                directory (use ``from_directory``).
        """
        refuse_pem_text(path, "TrustStore.from_pem_file()", "TrustStore.from_pem()")
        path = os.path.abspath(path)  # the same file after a chdir
        _not_a_directory(path, "from_directory()")

        def load(files: list[Path]) -> TrustSnapshot:
            _not_a_directory(path, "from_directory()")  # also when a reload finds a folder
            kept = [f for f in files if not _withdrawn(f, "trust store")]
            return _snapshot((c for f in kept for c in load_certificate_file(f)), allow_empty=True)

        store = cls(
            FileSnapshot(
                [path],
                accept=lambda _: True,
                reload_interval=reload_interval,
                loader=load,
                what="trust store",
            )
        )
        return _nonempty(store, f"{path}: no certificate found")

    @classmethod
    def from_directory(
        cls, path: str | os.PathLike[str], *, reload_interval: float | None = 30.0
    ) -> TrustStore:
        """Anchors from every ``*.pem``/``*.crt``/``*.cer`` file and OpenSSL hash link in a folder."""
        refuse_pem_text(path, "TrustStore.from_directory()", "TrustStore.from_pem()")
        path = os.path.abspath(path)  # the same folder after a chdir
        if not Path(path).is_dir():
            raise ValueError(f"{path}: not a directory")

        def load(files: list[Path]) -> TrustSnapshot:
            # No certificate file left, or the folder itself removed: nothing trusted from it.
            kept = [f for f in files if not _withdrawn(f, "trust store")]
            return _snapshot((c for f in kept for c in load_certificate_file(f)), allow_empty=True)

        store = cls(
            FileSnapshot(
                [path],
                accept=_is_cert_name,
                loader=load,
                reload_interval=reload_interval,
                what="trust store",
            )
        )
        return _nonempty(
            store, f"{path}: no certificate files (*.pem, *.crt, *.cer, HASH.N), or all empty"
        )

    @classmethod
    def from_pkcs12(
        cls,
        path: str | os.PathLike[str],
        *,
        password: str | bytes | None = None,
        reload_interval: float | None = 30.0,
    ) -> TrustStore:
        """Anchors from a PKCS#12 file, e.g. a Java truststore made with ``keytool -storetype PKCS12``."""
        pw = password.encode("utf-8") if isinstance(password, str) else password
        refuse_pem_text(path, "TrustStore.from_pkcs12()", "TrustStore.from_pem()")
        path = os.path.abspath(path)  # the same file after a chdir
        _not_a_directory(path, "from_directory()")

        def load(files: list[Path]) -> TrustSnapshot:
            _not_a_directory(path, "from_directory()")
            f = files[0]
            if _withdrawn(f, "trust store"):
                return _snapshot((), allow_empty=True)
            try:
                p12 = pkcs12.load_pkcs12(f.read_bytes(), pw)
            except OSError as exc:
                raise ValueError(f"{f}: cannot read: {exc.strerror or exc}") from None
            except (ValueError, TypeError):
                raise ValueError(f"{f}: not a PKCS#12 file, or wrong password") from None
            certs = [c.certificate for c in p12.additional_certs]
            if p12.cert is not None:
                certs.insert(0, p12.cert.certificate)
            if not certs:  # every entry deleted (keytool -delete): a withdrawal as well
                logger.warning("mtlsauth: trust store: %s holds no certificate", f)
            return _snapshot(certs, allow_empty=True)

        store = cls(
            FileSnapshot(
                [path],
                accept=lambda _: True,
                loader=load,
                reload_interval=reload_interval,
                what="trust store",
            )
        )
        return _nonempty(store, f"{path}: no certificate in the PKCS#12 file")

    # -- use ------------------------------------------------------------------------------
    def __or__(self, other: object) -> TrustStore:
        if not isinstance(other, TrustStore):
            return NotImplemented
        return TrustStore(*self._parts, *other._parts)

    def snapshot(self) -> TrustSnapshot:
        """The current anchors (hot path: checks file sources for changes when due)."""
        if self._static is not None:
            return self._static
        parts = self._parts
        if len(parts) == 1:
            only = parts[0]
            return only if isinstance(only, TrustSnapshot) else only.current()
        current = tuple(p if isinstance(p, TrustSnapshot) else p.current() for p in parts)
        cached = self._cached
        if cached is not None and all(a is b for a, b in zip(cached[0], current, strict=True)):
            return cached[1]
        snap = _snapshot((c for s in current for c in s.certificates), allow_empty=True)
        self._cached = (current, snap)
        return snap

    @property
    def certificates(self) -> tuple[x509.Certificate, ...]:
        """The anchors currently in force."""
        return self.snapshot().certificates

    def reload(self) -> bool:
        """Re-read file-backed parts now; True if anything changed."""
        changed = False
        for p in self._parts:
            if isinstance(p, FileSnapshot):
                changed = p.reload() or changed
        return changed

    def health(self) -> list[dict[str, object]]:
        """Status of file-backed parts (last load, last error)."""
        return [p.health() for p in self._parts if isinstance(p, FileSnapshot)]

    def __len__(self) -> int:
        return len(self.snapshot().certificates)

    def __repr__(self) -> str:
        return f"<TrustStore {len(self)} anchors>"
