"""Measurement 6: peers in the same run, uncached, and the naive approach.

* pyhanko-certvalidator (the maintained fork of certvalidator), given its best footing: one
  event loop, one ``ValidationContext`` shared by every validation (trust root, the
  intermediate and pre-parsed CRLs), each presented leaf parsed from DER as a request would
  need. Without revocation (``revocation_mode="none"``) and with a 10,000-entry CRL for the
  intermediate plus a CRL for the root (``"require"``: Apache ``SSLCARevocationCheck chain``).
  mtlsauth runs the same job: ``Verifier.verify`` on the DER chain, never-seen certificates,
  no cache hit possible, with the same CRLs (``CRLSet`` mode "chain") or none.
* Naive: what an app does without mtlsauth: percent-decode the nginx header, parse the PEM,
  build cryptography's verifier and verify, on every request; against mtlsauth's warm path
  (``authenticate`` on the same header).

Every ratio is "times faster" (peer time / mtlsauth time), medians of interleaved rounds.
"""

from __future__ import annotations

import asyncio
from urllib.parse import unquote

from _context import Context
from _pki import Hierarchy
from _report import Row, Target, missing_row, ratio_row
from _timing import Budget, compare, pool_runner, stmt_runner, summarise
from bench_verify import header_request, nginx_forwarded
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store

from mtlsauth import CRLSet, Verifier

UNCACHED_TARGET = Target(">=", 5.0)
CRL_TARGET = Target(">=", 100.0)


def _pyhanko(h: Hierarchy, crls: tuple[bytes, ...] | None):  # type: ignore[no-untyped-def]
    from asn1crypto import crl as acrl
    from asn1crypto import x509 as ax509
    from pyhanko_certvalidator import CertificateValidator, ValidationContext

    context = ValidationContext(
        trust_roots=[ax509.Certificate.load(_der(h.root.certificate))],
        other_certs=[ax509.Certificate.load(h.intermediate_der)],
        crls=[acrl.CertificateList.load(c) for c in crls] if crls else None,
        revocation_mode="require" if crls else "none",
    )
    inter = ax509.Certificate.load(h.intermediate_der)
    loop = asyncio.new_event_loop()

    def validate(chain: tuple[bytes, ...]) -> object:
        leaf = ax509.Certificate.load(chain[0])
        validator = CertificateValidator(
            leaf, intermediate_certs=[inter], validation_context=context
        )
        return loop.run_until_complete(
            validator.async_validate_usage(set(), extended_key_usage={"client_auth"})
        )

    return validate, loop


def _der(cert: x509.Certificate) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    return cert.public_bytes(Encoding.DER)


def _peer_rows(ctx: Context) -> list[Row]:
    h = ctx.ec
    rounds = ctx.budget.rounds if not ctx.quick else 2
    budget = Budget(rounds=rounds, batch_s=0, warmup_s=0)
    rows: list[Row] = []
    for with_crl in (False, True):
        crls = h.crls_der(10_000) if with_crl else None
        peer_batch = (1 if ctx.quick else 2) if with_crl else (2 if ctx.quick else 6)
        ours_batch = 8 if ctx.quick else 48
        ctx.log(f"peers: pyhanko-certvalidator {'with a 10k CRL' if with_crl else 'no CRL'}")
        peer_items = [h.chain_der(h.leaf()) for _ in range(peer_batch * (rounds + 1) + 1)]
        our_items = [h.chain_der(h.leaf()) for _ in range(ours_batch * (rounds + 1) + 1)]
        try:
            validate, loop = _pyhanko(h, crls)
        except ImportError as exc:
            rows.append(
                missing_row(
                    f"peers.pyhanko{'_crl10k' if with_crl else ''}",
                    "pyhanko-certvalidator",
                    f"not installed: {exc}",
                )
            )
            continue
        verifier = Verifier(
            trust_store=h.root.trust_store(),
            revocation=CRLSet.from_der(*crls, scope="chain") if crls else None,
        )
        try:
            validate(peer_items[0])  # both accept the chain, and first-use costs are paid
            verifier.verify(our_items[0])
            samples = compare(
                {
                    "peer": pool_runner(validate, peer_items[1:]),
                    "ours": pool_runner(verifier.verify, our_items[1:]),
                },
                budget,
                numbers={"peer": peer_batch, "ours": ours_batch},
            )
        finally:
            loop.close()
        label = (
            "pyhanko-certvalidator, 10k-entry CRL"
            if with_crl
            else "pyhanko-certvalidator, no revocation"
        )
        rows.append(
            ratio_row(
                "peers.pyhanko_crl10k" if with_crl else "peers.pyhanko",
                label,
                summarise(samples, "peer", "ours"),
                subject="pyhanko-certvalidator async_validate_usage, shared context, one loop",
                baseline="mtlsauth Verifier.verify, uncached" + (", same CRLs" if with_crl else ""),
                target=CRL_TARGET if with_crl else UNCACHED_TARGET,
                unit="x faster",
            )
        )
    return rows


def _naive_row(ctx: Context) -> Row:
    h = ctx.ec
    leaf = h.leaf()
    presented, header_value = header_request(h, leaf)
    store = Store([h.root.certificate])
    inter = h.intermediate.certificate

    def naive(value: str) -> str:
        cert = x509.load_pem_x509_certificate(unquote(value).encode("ascii"))
        verifier = PolicyBuilder().store(store).build_client_verifier()
        verified = verifier.verify(cert, [inter])
        return verified.chain[0].subject.rfc4514_string()

    verifier = Verifier(
        trust_store=h.root.trust_store(), intermediates=[inter], forwarded=nginx_forwarded()
    )
    verifier.authenticate(presented)
    naive(header_value)
    ctx.log("peers: naive decode + verify per request")
    samples = compare(
        {
            "naive": stmt_runner("naive(value)", {"naive": naive, "value": header_value}),
            "ours": stmt_runner("auth(p)", {"auth": verifier.authenticate, "p": presented}),
        },
        ctx.budget,
    )
    return ratio_row(
        "peers.naive",
        "naive: decode + verify every request",
        summarise(samples, "naive", "ours"),
        subject="unquote + load_pem + PolicyBuilder + ClientVerifier.verify per request",
        baseline="mtlsauth Verifier.authenticate (nginx header, warm cache)",
        unit="x faster",
    )


def run(ctx: Context) -> dict[str, list[Row]]:
    return {"peers": [*_peer_rows(ctx), _naive_row(ctx)]}
