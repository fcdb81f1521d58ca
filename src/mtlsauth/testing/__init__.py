"""Throwaway PKIs for testing mTLS policies in code, shaped like trustme.

Example:
    >>> from mtlsauth import Policy, Verifier
    >>> from mtlsauth.testing import CA
    >>> ca = CA(organization="acme-test")
    >>> cert = ca.issue_client_cert(common_name="ledger", organization="payments")
    >>> verifier = Verifier(trust_store=ca.trust_store(), policy=Policy(organizations={"payments"}))
    >>> verifier.verify_pem(cert.chain_pem.text()).common_name
    'ledger'

Everything here is for tests only: keys are generated in memory and never protected.

Why one module of this size: the one public testing face (``CA``, ``ClientCert``, ``Blob``,
``with_client_cert``), which users import as a single module and whose certificate builders
share the key, name and validity helpers; the header encoders, which the core must never
reach, are the package's one separate module (``_encode``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import tempfile as _tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mtlsauth._types import ASGIApp, Receive, Scope, Send, tls_extension
from mtlsauth.testing._encode import encode_forwarded

if TYPE_CHECKING:
    from mtlsauth._truststore import TrustStore

__all__ = [
    "CA",
    "Blob",
    "ClientCert",
    "encode_forwarded",
    "issue_ocsp_responder_cert",
    "openssl_index",
    "self_signed_client_cert",
    "with_client_cert",
]

KeyType = Literal["ec", "p384", "p521", "rsa", "rsa1024", "rsa4096", "ed25519"]
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
_HOUR = dt.timedelta(hours=1)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


class Blob:
    """Bytes with convenient accessors (PEM text, a file on disk)."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def bytes(self) -> bytes:
        """The raw bytes."""
        return self._data

    def text(self) -> str:
        """The bytes decoded as ASCII (PEM is ASCII)."""
        return self._data.decode("ascii")

    def write_to_path(self, path: str | os.PathLike[str], append: bool = False) -> Path:
        """Write the bytes to ``path`` (appending if asked) and return the path."""
        p = Path(path)
        with p.open("ab" if append else "wb") as f:
            f.write(self._data)
        return p

    @contextmanager
    def tempfile(self, dir: str | None = None) -> Iterator[str]:
        """Yield the path of a temporary file holding the bytes; removed afterwards."""
        fd, name = _tempfile.mkstemp(suffix=".pem", dir=dir)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(self._data)
            yield name
        finally:
            os.unlink(name)

    def __repr__(self) -> str:
        return f"Blob({len(self._data)} bytes)"


def _new_key(key_type: KeyType) -> PrivateKey:
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "p384":
        return ec.generate_private_key(ec.SECP384R1())
    if key_type == "p521":
        return ec.generate_private_key(ec.SECP521R1())
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if key_type == "rsa4096":
        return rsa.generate_private_key(public_exponent=65537, key_size=4096)
    if key_type == "rsa1024":
        return rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 (weak-key tests)
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unknown key_type {key_type!r}")


def _sign_hash(key: PrivateKey) -> hashes.SHA256 | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def _name(
    common_name: str | None,
    organization: str | None = None,
    organizational_unit: str | Iterable[str] | None = None,
    country: str | None = None,
) -> x509.Name:
    attrs = []
    if country:
        attrs.append(x509.NameAttribute(NameOID.COUNTRY_NAME, country))
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    ous = [organizational_unit] if isinstance(organizational_unit, str) else organizational_unit
    for ou in ous or ():
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
    if common_name:
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def _key_pem(key: PrivateKey) -> Blob:
    return Blob(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


class ClientCert:
    """A client certificate with its key and the chain up to (not including) the root.

    Attributes:
        certificate: The leaf as a ``cryptography`` object.
        private_key: Its private key.
        cert_pem: The leaf alone (Blob).
        key_pem: The private key, unencrypted PKCS#8 PEM (Blob).
        chain_pem: The leaf followed by its intermediates, as a client sends them (Blob).
        private_key_and_cert_chain_pem: key + chain, for TLS clients that take one file.
    """

    def __init__(
        self, certificate: x509.Certificate, key: PrivateKey, chain: tuple[x509.Certificate, ...]
    ) -> None:
        self.certificate = certificate
        self.private_key = key
        self.intermediates = chain
        self.cert_pem = Blob(_cert_pem(certificate))
        self.key_pem = _key_pem(key)
        self.chain_pem = Blob(b"".join(_cert_pem(c) for c in (certificate, *chain)))
        self.private_key_and_cert_chain_pem = Blob(self.key_pem.bytes() + self.chain_pem.bytes())

    @property
    def der(self) -> bytes:
        """The leaf's DER encoding."""
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @property
    def chain_der(self) -> tuple[bytes, ...]:
        """The presented chain as DER, leaf first."""
        return tuple(
            c.public_bytes(serialization.Encoding.DER)
            for c in (self.certificate, *self.intermediates)
        )

    def wsgi_environ(self) -> dict[str, str]:
        """WSGI environ keys as mod_wsgi (``SSLOptions +ExportCertData``) sets them."""
        env = {"SSL_CLIENT_CERT": self.cert_pem.text(), "wsgi.url_scheme": "https"}
        for i, c in enumerate(self.intermediates):
            env[f"SSL_CLIENT_CERT_CHAIN_{i}"] = _cert_pem(c).decode("ascii")
        return env

    def asgi_tls_extension(self) -> dict[str, object]:
        """The ASGI TLS extension dict (``scope["extensions"]["tls"]``) for this cert."""
        return dict(
            tls_extension(
                [_cert_pem(c).decode("ascii") for c in (self.certificate, *self.intermediates)],
                name=self.certificate.subject.rfc4514_string(),
                cipher_suite=0x1301,
            )
        )

    def __repr__(self) -> str:
        return f"<ClientCert {self.certificate.subject.rfc4514_string()}>"


class CA:
    """A certificate authority for tests: a root by default, or an intermediate.

    Args:
        organization: The CA's organizationName.
        common_name: The CA's commonName (default: derived from the organization).
        key_type: ``"ec"`` (P-256, fast, default), ``"p384"``, ``"p521"``, ``"rsa"`` (2048)
            or ``"rsa4096"``.
        path_length: BasicConstraints pathLenConstraint, or ``None`` for no limit.
        name_constraints: An optional ``x509.NameConstraints`` extension for the CA.
        parent: The issuing CA (use :meth:`intermediate` rather than passing it).
    """

    certificate: x509.Certificate

    def __init__(
        self,
        *,
        organization: str = "mtlsauth test CA",
        common_name: str | None = None,
        key_type: KeyType = "ec",
        path_length: int | None = None,
        name_constraints: x509.NameConstraints | None = None,
        parent: CA | None = None,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        key_usage: bool = True,
    ) -> None:
        self.parent = parent
        self.private_key = _new_key(key_type)
        self._revoked: list[tuple[int, dt.datetime, x509.ReasonFlags | None]] = []
        self._crl_number = 0
        cn = (
            common_name
            or f"{organization} {'Intermediate' if parent else 'Root'} {os.urandom(3).hex()}"
        )
        subject = _name(cn, organization)
        issuer_name = parent.certificate.subject if parent else subject
        signer = parent.private_key if parent else self.private_key
        now = _now()
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer_name)
            .public_key(self.private_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - _HOUR)
            .not_valid_after(not_after or now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.private_key.public_key()),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
                critical=False,
            )
        )
        if key_usage:
            builder = builder.add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
        if name_constraints is not None:
            builder = builder.add_extension(name_constraints, critical=True)
        self.certificate = builder.sign(signer, _sign_hash(signer))
        self.cert_pem = Blob(_cert_pem(self.certificate))

    @property
    def chain_to_root(self) -> tuple[x509.Certificate, ...]:
        """This CA and its parents, excluding the root (what a client sends after its leaf)."""
        out: list[x509.Certificate] = []
        ca: CA | None = self
        while ca is not None and ca.parent is not None:
            out.append(ca.certificate)
            ca = ca.parent
        return tuple(out)

    @property
    def root(self) -> CA:
        """The root of this CA's hierarchy."""
        return self if self.parent is None else self.parent.root

    def intermediate(self, **kwargs: object) -> CA:
        """Issue an intermediate CA under this one (same keywords as ``CA``)."""
        kwargs.setdefault(
            "organization",
            self.certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value,
        )
        return CA(parent=self, **kwargs)  # type: ignore[arg-type]

    def trust_store(self) -> TrustStore:
        """A TrustStore whose only anchor is this CA's root."""
        from mtlsauth._truststore import TrustStore

        return TrustStore.from_pem(self.root.cert_pem.bytes())

    def issue_client_cert(
        self,
        *,
        common_name: str | None = "client",
        organization: str | None = None,
        organizational_unit: str | Iterable[str] | None = None,
        country: str | None = None,
        dns_names: Iterable[str] = (),
        uris: Iterable[str] = (),
        emails: Iterable[str] = (),
        ip_addresses: Iterable[str] = (),
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        key_type: KeyType = "ec",
        eku: Literal["client", "server", "any", "both"] | None = "client",
        san: bool = True,
        aki: bool = True,
        ca: bool = False,
        subject: x509.Name | None = None,
        extra_extensions: Iterable[tuple[x509.ExtensionType, bool]] = (),
    ) -> ClientCert:
        """Issue a leaf certificate signed by this CA.

        ``san=False`` leaves the Subject Alternative Name extension out even when names are
        given; with no names there is no SAN either (a CN-only enterprise certificate).
        """
        key = _new_key(key_type)
        now = _now()
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject or _name(common_name, organization, organizational_unit, country))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - _HOUR)
            .not_valid_after(not_after or now + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
        )
        if aki:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.private_key.public_key()),
                critical=False,
            )
        usages = {
            "client": [ExtendedKeyUsageOID.CLIENT_AUTH],
            "server": [ExtendedKeyUsageOID.SERVER_AUTH],
            "any": [ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE],
            "both": [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        }
        if eku is not None:
            builder = builder.add_extension(x509.ExtendedKeyUsage(usages[eku]), critical=False)
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
        names += [x509.UniformResourceIdentifier(u) for u in uris]
        names += [x509.RFC822Name(e) for e in emails]
        names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ip_addresses]
        if san and names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        for ext, critical in extra_extensions:
            builder = builder.add_extension(ext, critical=critical)
        cert = builder.sign(self.private_key, _sign_hash(self.private_key))
        return ClientCert(cert, key, self.chain_to_root)

    def revoke(
        self,
        cert: ClientCert | x509.Certificate,
        *,
        reason: x509.ReasonFlags | None = None,
        when: dt.datetime | None = None,
    ) -> Blob:
        """Revoke ``cert`` and return the CA's new CRL (PEM) listing every revocation so far."""
        c = cert.certificate if isinstance(cert, ClientCert) else cert
        self._revoked.append((c.serial_number, when or _now() - dt.timedelta(minutes=1), reason))
        return self.crl()

    def crl(
        self,
        *,
        last_update: dt.datetime | None = None,
        next_update: dt.datetime | None = None,
        extra_serials: Iterable[int] = (),
        extensions: Iterable[tuple[x509.ExtensionType, bool]] = (),
        signer: PrivateKey | None = None,
        encoding: Literal["pem", "der"] = "pem",
    ) -> Blob:
        """The CA's current CRL. ``signer`` lets a test sign it with a wrong key."""
        now = _now()
        self._crl_number += 1
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.certificate.subject)
            .last_update(last_update or now - dt.timedelta(minutes=5))
            .next_update(next_update or now + dt.timedelta(days=7))
            .add_extension(x509.CRLNumber(self._crl_number), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.private_key.public_key()),
                critical=False,
            )
        )
        for ext, critical in extensions:
            builder = builder.add_extension(ext, critical=critical)
        entries = list(self._revoked) + [
            (s, now - dt.timedelta(minutes=1), None) for s in extra_serials
        ]
        for serial, when, reason in entries:
            rb = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when)
            if reason is not None:
                rb = rb.add_extension(x509.CRLReason(reason), critical=False)
            builder = builder.add_revoked_certificate(rb.build())
        key = signer or self.private_key
        crl = builder.sign(key, _sign_hash(key))
        enc = serialization.Encoding.PEM if encoding == "pem" else serialization.Encoding.DER
        return Blob(crl.public_bytes(enc))


def self_signed_client_cert(
    *,
    common_name: str = "self-signed client",
    organization: str | None = None,
    key_type: KeyType = "ec",
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    extensions: bool = False,
) -> ClientCert:
    """A self-signed client certificate, as ``keytool -genkeypair`` makes (only an SKI).

    With ``extensions=True`` it also carries BasicConstraints(cA=false) and a clientAuth EKU.
    Use it for pinning tests (``Verifier(pinned=...)``, RFC 8705 ``self_signed_tls_client_auth``).
    """
    key = _new_key(key_type)
    now = _now()
    name = _name(common_name, organization)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - _HOUR)
        .not_valid_after(not_after or now + dt.timedelta(days=90))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if extensions:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=False, path_length=None), critical=True
        )
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    cert = builder.sign(key, _sign_hash(key))
    return ClientCert(cert, key, ())


# -- OCSP helpers (a responder certificate and an OpenSSL index for `openssl ocsp`) -----------


def issue_ocsp_responder_cert(
    ca: CA,
    *,
    common_name: str = "OCSP responder",
    key_type: KeyType = "ec",
    ocsp_signing: bool = True,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> ClientCert:
    """A delegated OCSP responder certificate issued by ``ca`` (RFC 6960 4.2.2.2).

    It carries the id-kp-OCSPSigning extended key usage (``ocsp_signing=False`` leaves it out,
    for tests that a responder without it is refused) and id-pkix-ocsp-nocheck.
    Use ``cert_pem`` and ``key_pem`` as ``openssl ocsp -rsigner`` and ``-rkey``.
    """
    extensions: list[tuple[x509.ExtensionType, bool]] = [(x509.OCSPNoCheck(), False)]
    if ocsp_signing:
        extensions.append((x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), False))
    return ca.issue_client_cert(
        common_name=common_name,
        key_type=key_type,
        eku=None,
        not_before=not_before,
        not_after=not_after,
        extra_extensions=extensions,
    )


def _openssl_time(when: dt.datetime) -> str:
    # OpenSSL's index uses UTCTime up to 2049 and GeneralizedTime after (RFC 5280 4.1.2.5).
    return when.strftime("%y%m%d%H%M%SZ" if when.year < 2050 else "%Y%m%d%H%M%SZ")


def openssl_index(ca: CA, certs: Iterable[ClientCert | x509.Certificate]) -> Blob:
    """An OpenSSL ``index.txt`` for ``openssl ocsp -index``: ``certs`` are listed as valid,
    or as revoked (with the reason) when :meth:`CA.revoke` was called for them.

    Serials the index does not list are answered UNKNOWN by ``openssl ocsp``.
    """
    revoked = {serial: (when, reason) for serial, when, reason in ca._revoked}
    lines = []
    for item in certs:
        c = item.certificate if isinstance(item, ClientCert) else item
        serial = f"{c.serial_number:X}"
        serial = serial.rjust(len(serial) + len(serial) % 2, "0")
        subject = "".join(f"/{a.rfc4514_attribute_name}={a.value!s}" for a in c.subject).replace(
            "\t", " "
        )
        expiry = _openssl_time(c.not_valid_after_utc)
        if c.serial_number in revoked:
            when, reason = revoked[c.serial_number]
            rev = _openssl_time(when) + (f",{reason.value}" if reason is not None else "")
            lines.append(f"R\t{expiry}\t{rev}\t{serial}\tunknown\t{subject}\n")
        else:
            lines.append(f"V\t{expiry}\t\t{serial}\tunknown\t{subject}\n")
    return Blob("".join(lines).encode("utf-8"))


# -- ASGI: the TLS extension that neither httpx.ASGITransport nor TestClient fills ----------
def with_client_cert(app: ASGIApp, cert: ClientCert | Mapping[str, Any] | None) -> ASGIApp:
    """Wrap ``app`` so every ``http``/``websocket`` scope carries ``extensions["tls"]``.

    Args:
        app: The ASGI app (usually already wrapped in ``MTLSMiddleware``).
        cert: A ``ClientCert`` (its leaf and intermediates become ``client_cert_chain``),
            a raw TLS-extension mapping (e.g. with ``client_cert_error`` set), or ``None``
            for a TLS connection on which the client sent no certificate.

    Example:
        >>> import httpx
        >>> from mtlsauth.testing import CA
        >>> async def app(scope, receive, send): ...
        >>> transport = httpx.ASGITransport(app=with_client_cert(app, CA().issue_client_cert()))
    """
    if cert is None:
        tls: dict[str, Any] = dict(tls_extension(cipher_suite=0x1301))
    elif isinstance(cert, Mapping):
        tls = dict(cert)
    else:
        tls = cert.asgi_tls_extension()

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            extensions = dict(scope.get("extensions") or {})
            extensions["tls"] = tls
            scope = {**scope, "extensions": extensions, "scheme": _secure(scope)}
        await app(scope, receive, send)

    return wrapped


def _secure(scope: Scope) -> str:
    scheme = scope.get("scheme")
    if scope["type"] == "websocket":
        return "wss" if scheme in (None, "ws", "wss") else str(scheme)
    return "https" if scheme in (None, "http", "https") else str(scheme)
