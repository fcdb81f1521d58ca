"""A throwaway test PKI written to a folder, for ``mtlsauth testca`` and ``mtlsauth demo``.

Everything here is for tests and demos: keys are written unencrypted.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["DEMO_ORGANIZATION", "TestPKI", "write_test_pki"]

DEMO_ORGANIZATION = "Example Corp"
"""The organization the demo's policy allows; the "wrong organization" client has another."""


@dataclass(frozen=True)
class TestPKI:
    """Where each piece of a written test PKI lives (``__test__`` keeps pytest away)."""

    __test__ = False

    directory: Path
    files: dict[str, tuple[Path, str]] = field(default_factory=dict)
    """File name -> (path, one-line description), in the order written."""
    clients: dict[str, tuple[Path, Path]] = field(default_factory=dict)
    """Client case -> (chain PEM path, key path)."""

    def path(self, name: str) -> Path:
        return self.files[name][0]


CLIENT_CASES: dict[str, str] = {
    "good": "valid client certificate (O=Example Corp, issued by the intermediate)",
    "expired": "expired client certificate (same CA)",
    "revoked": "client certificate listed in crl.pem",
    "wrong-ca": "client certificate from an unrelated CA (other-ca.pem)",
    "other-org": "valid certificate, but O=Other Org (refused by an organization policy)",
}


def write_test_pki(directory: str | os.PathLike[str], *, force: bool = False) -> TestPKI:
    """Write a root CA, an intermediate, client certificates, CRLs and a localhost server cert.

    Raises:
        FileExistsError: when a file would be overwritten and ``force`` is False.
        OSError: when the folder cannot be written.
    """
    from cryptography.hazmat.primitives import serialization

    from mtlsauth.testing import CA

    out = Path(directory)
    names = [
        "ca.pem",
        "ca.key",
        "intermediate.pem",
        "ca-bundle.pem",
        "crl.pem",
        "server.pem",
        "server.key",
        "other-ca.pem",
    ]
    for case in CLIENT_CASES:
        names += [f"client-{case}.pem", f"client-{case}.key"]
    if not force:
        existing = [n for n in names if (out / n).exists() or (out / n).is_symlink()]
        if existing:
            raise FileExistsError(
                f"{out}: would overwrite {', '.join(existing)} (use --force to replace them)"
            )
    out.mkdir(parents=True, exist_ok=True)

    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    root = CA(organization=DEMO_ORGANIZATION, common_name="mtlsauth test root CA")
    inter = root.intermediate(common_name="mtlsauth test client CA")
    other = CA(organization="Unrelated Org", common_name="unrelated test CA")
    clients = {
        "good": inter.issue_client_cert(
            common_name="alice",
            organization=DEMO_ORGANIZATION,
            organizational_unit="payments",
            uris=["spiffe://example.test/ns/payments/sa/alice"],
            emails=["alice@example.test"],
        ),
        "expired": inter.issue_client_cert(
            common_name="old-bob",
            organization=DEMO_ORGANIZATION,
            not_before=now - dt.timedelta(days=400),
            not_after=now - dt.timedelta(days=35),
        ),
        "revoked": inter.issue_client_cert(common_name="mallory", organization=DEMO_ORGANIZATION),
        "wrong-ca": other.issue_client_cert(common_name="alice", organization=DEMO_ORGANIZATION),
        "other-org": inter.issue_client_cert(common_name="eve", organization="Other Org"),
    }
    inter_crl = inter.revoke(clients["revoked"])
    server = root.issue_client_cert(
        common_name="localhost", dns_names=["localhost"], ip_addresses=["127.0.0.1"], eku="server"
    )
    root_key = root.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )

    pki = TestPKI(out)

    def put(name: str, data: bytes, what: str, *, secret: bool = False) -> Path:
        # A new file every time: truncating an existing one would keep its mode (a key left
        # 0644 by an earlier run or another user), and opening a name that is a symlink would
        # write through it (a link planted in a shared folder). --force removes the old name;
        # O_EXCL | O_NOFOLLOW refuse whatever appears there in between.
        p = out / name
        if force:
            try:
                p.unlink()
            except FileNotFoundError:
                pass
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(p, flags, 0o600 if secret else 0o644)
        except FileExistsError:
            raise FileExistsError(
                f"{p}: already exists (a link or a file made meanwhile)"
            ) from None
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        pki.files[name] = (p, what)
        return p

    put("ca.pem", root.cert_pem.bytes(), "root CA: the trust anchor (--ca, ssl_client_certificate)")
    put("ca.key", root_key, "root CA private key (to issue more test certificates)", secret=True)
    put("intermediate.pem", inter.cert_pem.bytes(), "intermediate CA that issued the clients")
    put(
        "ca-bundle.pem",
        root.cert_pem.bytes() + inter.cert_pem.bytes(),
        "root + intermediate, only for tools that need both in one file (the anchor is ca.pem)",
    )
    put(
        "crl.pem",
        root.crl().bytes() + inter_crl.bytes(),
        "CRLs of both CAs (client-revoked is listed) (--crl, ssl_crl)",
    )
    put("server.pem", server.chain_pem.bytes(), "server certificate for localhost and 127.0.0.1")
    put("server.key", server.key_pem.bytes(), "its private key", secret=True)
    put("other-ca.pem", other.cert_pem.bytes(), "an unrelated CA (issued client-wrong-ca)")
    for case, cert in clients.items():
        chain = put(f"client-{case}.pem", cert.chain_pem.bytes(), CLIENT_CASES[case])
        key = put(f"client-{case}.key", cert.key_pem.bytes(), "its private key", secret=True)
        pki.clients[case] = (chain, key)
    return pki
