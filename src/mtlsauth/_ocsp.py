"""OCSPChecker: ask the CA's OCSP responder (RFC 6960) whether a certificate is revoked.

cryptography builds requests and parses responses but verifies no response signature, so
everything that makes an answer trustworthy is done here: the signer must be the issuing CA
itself, or a responder certificate issued directly by that CA with the id-kp-OCSPSigning
extended key usage and valid now (RFC 6960 4.2.2.2); the answer must be about the certificate
asked for (serial, issuer name hash, issuer key hash); ``thisUpdate <= now < nextUpdate``
within a small clock skew; and the nonce, when the responder echoes one, must be ours.

Answers (GOOD or REVOKED) are cached per (issuer key hash, serial) until ``nextUpdate``, in a
bounded LRU, so the check on a Verifier cache hit is a dict look-up. Failures are cached for
``retry_after`` seconds so a dead responder is not asked on every request.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from mtlsauth._errors import CertificateRevoked, MTLSAuthError, RevocationUnavailable

__all__ = ["OCSPChecker"]

logger = logging.getLogger("mtlsauth")

_MAX_RESPONSE = 1024 * 1024
_SKEW = timedelta(minutes=5)


class _Failure(Exception):
    """No trustworthy answer (network, HTTP, parsing, signature, CertID, freshness)."""


@dataclass(frozen=True, slots=True)
class _Answer:
    revoked: str | None  # None: GOOD; otherwise the refusal detail
    failure: str | None  # set for a cached failure
    until: datetime


_WEAK_HASHES = (hashes.MD5, hashes.SHA1)


def _verify_signature(resp: ocsp.OCSPResponse, signer: x509.Certificate) -> None:
    key = signer.public_key()
    algo = resp.signature_hash_algorithm
    if isinstance(algo, _WEAK_HASHES):  # as for certificates: no MD5 or SHA-1 signatures
        raise _Failure(f"OCSP response signed with {algo.name}, which is not accepted")
    if isinstance(key, rsa.RSAPublicKey) and algo is not None:
        if resp.signature_algorithm_oid == x509.oid.SignatureAlgorithmOID.RSASSA_PSS:
            raise _Failure("RSA-PSS signed OCSP responses are not supported")
        key.verify(resp.signature, resp.tbs_response_bytes, padding.PKCS1v15(), algo)
    elif isinstance(key, ec.EllipticCurvePublicKey) and algo is not None:
        key.verify(resp.signature, resp.tbs_response_bytes, ec.ECDSA(algo))
    elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        key.verify(resp.signature, resp.tbs_response_bytes)
    else:
        raise _Failure("unsupported OCSP signature algorithm")


def _key_hash(cert: x509.Certificate) -> bytes:
    # RFC 6960: SHA-1 of the subjectPublicKey BIT STRING value, which is what an SKI of
    # method 1 (RFC 5280 4.2.1.2) is.
    return x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest


def _responder_url(cert: x509.Certificate) -> str | None:
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return None
    for desc in aia:
        if desc.access_method == AuthorityInformationAccessOID.OCSP and isinstance(
            desc.access_location, x509.UniformResourceIdentifier
        ):
            return desc.access_location.value
    return None


class OCSPChecker:
    """Revocation status from OCSP responders, verified and cached until ``nextUpdate``.

    Args:
        responder_url: Ask this responder for every certificate (nginx
            ``ssl_ocsp_responder``). ``None`` uses each certificate's AIA OCSP URL.
        timeout: Seconds for the whole HTTP exchange.
        mode: ``"hard-fail"`` (default): no trustworthy answer means ``RevocationUnavailable``.
            ``"soft-fail"``: no trustworthy answer is logged and the certificate is admitted.
            Security note: soft-fail admits a revoked certificate whenever its holder can
            block or delay the responder (or forge an answer that fails verification).
        scope: ``"leaf"`` (default, like nginx ``ssl_ocsp leaf``) or ``"chain"`` (every
            certificate below the anchor, like ``ssl_ocsp on``).
        cache_size: Maximum cached answers (LRU).
        nonce: Send a random nonce; a responder that echoes one must echo ours. Responders
            that pre-sign answers echo none; those are still bounded by ``thisUpdate``.
        trusted_responders: Certificates whose signatures on any answer are accepted
            as is (OpenSSL ``-VAfile``). Security note: such a key can vouch for any
            certificate.
        max_age: How long an answer without ``nextUpdate`` counts as fresh after
            ``thisUpdate``.
        retry_after: Seconds a failure is remembered before the responder is asked again.

    ``check`` does network I/O (``may_block`` is True): async adapters run it in a thread.
    A REVOKED answer raises ``CertificateRevoked`` in both modes; an UNKNOWN answer is treated
    as no answer.
    """

    __slots__ = (
        "_cache",
        "_cache_size",
        "_issuer_ids",
        "_lock",
        "_max_age",
        "_mode",
        "_nonce",
        "_opener",
        "_retry_after",
        "_scope",
        "_timeout",
        "_token",
        "_trusted",
        "_url",
        "last_error",
    )

    def __init__(
        self,
        *,
        responder_url: str | None = None,
        timeout: float = 3.0,
        mode: Literal["hard-fail", "soft-fail"] = "hard-fail",
        scope: Literal["leaf", "chain"] = "leaf",
        cache_size: int = 10_000,
        nonce: bool = True,
        trusted_responders: Iterable[x509.Certificate] = (),
        max_age: timedelta = timedelta(hours=1),
        retry_after: float = 10.0,
    ) -> None:
        if responder_url is not None:
            _check_url(responder_url, ValueError)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise ValueError("timeout must be a positive number of seconds")
        if mode not in ("hard-fail", "soft-fail"):
            raise ValueError('mode must be "hard-fail" or "soft-fail"')
        if scope not in ("leaf", "chain"):
            raise ValueError('scope must be "leaf" or "chain"')
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 0:
            raise ValueError("cache_size must be a non-negative int")
        if not isinstance(max_age, timedelta) or max_age <= timedelta(0):
            raise ValueError("max_age must be a positive timedelta")
        if not isinstance(retry_after, int | float) or retry_after < 0:
            raise ValueError("retry_after must be a non-negative number of seconds")
        trusted = tuple(trusted_responders)
        if not all(isinstance(c, x509.Certificate) for c in trusted):
            raise TypeError("trusted_responders must be x509.Certificate objects")
        self._url = responder_url
        self._timeout = float(timeout)
        self._mode = mode
        self._scope = scope
        self._cache_size = cache_size
        self._nonce = bool(nonce)
        self._trusted = trusted
        self._max_age = max_age
        self._retry_after = timedelta(seconds=retry_after)
        self._token = object()
        self._cache: OrderedDict[tuple[bytes, int], _Answer] = OrderedDict()
        self._issuer_ids: dict[x509.Certificate, bytes] = {}
        self._lock = threading.Lock()
        self._opener = urllib.request.build_opener()
        self.last_error: str | None = None

    # -- RevocationChecker ----------------------------------------------------------------
    @property
    def token(self) -> object:
        # A Verifier reuses a passing answer until its nextUpdate; clear_cache() hands out a
        # new token so that cached passes are dropped with the answers they came from.
        return self._token

    @property
    def may_block(self) -> bool:
        return True

    def check(self, chain: Sequence[x509.Certificate], *, at: datetime) -> datetime | None:
        """Check the validated ``chain`` (leaf first, ending at the anchor) as of ``at``.

        Returns:
            The earliest ``nextUpdate`` of the answers used, or ``None``.

        Raises:
            CertificateRevoked: the responder says a certificate in scope is revoked.
            RevocationUnavailable: hard-fail and no trustworthy answer, or anything unexpected.
        """
        try:
            return self._check(chain, at)
        except MTLSAuthError:
            raise
        except Exception as exc:
            logger.exception("mtlsauth: OCSP check failed unexpectedly")
            raise RevocationUnavailable(f"OCSP check failed: {type(exc).__name__}") from None

    def _check(self, chain: Sequence[x509.Certificate], at: datetime) -> datetime | None:
        if at.tzinfo is None:
            raise RevocationUnavailable("OCSP check needs a timezone-aware time")
        in_scope = len(chain) - 1 if self._scope == "chain" else min(1, len(chain) - 1)
        until: datetime | None = None
        for i in range(in_scope):
            cert, issuer = chain[i], chain[i + 1]
            key = (self._issuer_id(issuer), cert.serial_number)
            answer = self._cached(key, at)
            if answer is None:
                answer = self._ask(cert, issuer, at)
                self._store(key, answer)
            if answer.revoked is not None:
                raise CertificateRevoked(answer.revoked)
            # Under soft-fail a failure admits; it was logged once, when it was fetched.
            if answer.failure is not None and self._mode == "hard-fail":
                raise RevocationUnavailable(answer.failure)
            if until is None or answer.until < until:
                until = answer.until
        return until

    # -- cache ----------------------------------------------------------------------------
    def _issuer_id(self, issuer: x509.Certificate) -> bytes:
        found = self._issuer_ids.get(issuer)
        if found is None:
            found = _key_hash(issuer)
            if len(self._issuer_ids) > 1024:
                self._issuer_ids.clear()
            self._issuer_ids[issuer] = found
        return found

    def _cached(self, key: tuple[bytes, int], at: datetime) -> _Answer | None:
        with self._lock:
            answer = self._cache.get(key)
            if answer is None:
                return None
            if at >= answer.until:
                del self._cache[key]
                return None
            self._cache.move_to_end(key)
            return answer

    def _store(self, key: tuple[bytes, int], answer: _Answer) -> None:
        if not self._cache_size:
            return
        with self._lock:
            self._cache[key] = answer
            self._cache.move_to_end(key)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    def clear_cache(self) -> None:
        """Forget every cached answer (and every Verifier result that relied on one)."""
        with self._lock:
            self._cache.clear()
            self._token = object()

    # -- one query ------------------------------------------------------------------------
    def _ask(self, cert: x509.Certificate, issuer: x509.Certificate, at: datetime) -> _Answer:
        try:
            answer = self._query(cert, issuer, at)
        except _Failure as exc:
            message = f"OCSP: no trustworthy answer for serial {cert.serial_number:x}: {exc}"
            logger.warning(
                "mtlsauth: %s%s",
                message,
                f" (soft-fail: admitting it for {self._retry_after.total_seconds():.0f} s)"
                if self._mode == "soft-fail"
                else "",
            )
            self.last_error = message
            return _Answer(None, message, at + self._retry_after)
        self.last_error = None
        return answer

    def _query(self, cert: x509.Certificate, issuer: x509.Certificate, at: datetime) -> _Answer:
        url = self._url or _responder_url(cert)
        if url is None:
            raise _Failure("the certificate names no OCSP responder and none is configured")
        _check_url(url, _Failure)
        builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1())  # noqa: S303 - RFC 6960 CertID
        nonce = os.urandom(16) if self._nonce else None
        if nonce is not None:
            builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
        request = builder.build()
        body = self._post(url, request.public_bytes(serialization.Encoding.DER))
        try:
            resp = ocsp.load_der_ocsp_response(body)
        except ValueError:
            raise _Failure("unparsable OCSP response") from None
        if resp.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
            raise _Failure(f"responder answered {resp.response_status.name}")
        self._verify_signer(resp, issuer, at)
        single = _matching(resp, request)
        if nonce is not None:
            try:
                echoed = resp.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
            except x509.ExtensionNotFound:
                echoed = None
            if echoed is not None and echoed != nonce:
                raise _Failure("the response's nonce is not ours (replayed answer?)")
        this_update = single.this_update_utc
        if this_update > at + _SKEW:
            raise _Failure("the answer's thisUpdate is in the future")
        next_update = single.next_update_utc
        if next_update is None:
            next_update = this_update + self._max_age
        if at >= next_update + _SKEW:
            raise _Failure(f"stale answer (nextUpdate {next_update.isoformat()})")
        until = max(next_update, at)
        status = single.certificate_status
        if status == ocsp.OCSPCertStatus.GOOD:
            return _Answer(None, None, until)
        if status == ocsp.OCSPCertStatus.REVOKED:
            reason = single.revocation_reason
            when = single.revocation_time_utc
            return _Answer(
                f"OCSP: serial {cert.serial_number:x} is revoked: "
                f"{reason.value if reason else 'unspecified'}"
                f"{', since ' + when.isoformat() if when else ''}",
                None,
                until,
            )
        raise _Failure("the responder does not know this certificate (status UNKNOWN)")

    def _post(self, url: str, data: bytes) -> bytes:
        req = urllib.request.Request(  # noqa: S310 - scheme checked: http or https only
            url,
            data=data,
            method="POST",
            headers={
                "Content-Type": "application/ocsp-request",
                "Accept": "application/ocsp-response",
            },
        )
        deadline = time.monotonic() + self._timeout
        try:
            with self._opener.open(req, timeout=self._timeout) as r:
                chunks: list[bytes] = []
                size = 0
                while True:
                    if time.monotonic() > deadline:
                        raise _Failure(f"responder {url} timed out")
                    chunk = r.read(65536)
                    if not chunk:
                        break
                    size += len(chunk)
                    if size > _MAX_RESPONSE:
                        raise _Failure("OCSP response too large")
                    chunks.append(chunk)
        except urllib.error.HTTPError as exc:
            exc.close()
            raise _Failure(f"responder {url} answered HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise _Failure(f"responder {url} unreachable: {reason}") from None
        return b"".join(chunks)

    def _verify_signer(
        self, resp: ocsp.OCSPResponse, issuer: x509.Certificate, at: datetime
    ) -> None:
        candidates = [issuer, *self._trusted, *resp.certificates]
        key_hash, name = resp.responder_key_hash, resp.responder_name
        problem = "signed by an unknown responder"
        for cand in candidates:
            if key_hash is not None and _key_hash(cand) != key_hash:
                continue
            if key_hash is None and cand.subject != name:
                continue
            if cand != issuer and cand not in self._trusted:
                why = _delegation_problem(cand, issuer, at)
                if why is not None:
                    problem = why
                    continue
            try:
                _verify_signature(resp, cand)
            except (InvalidSignature, UnsupportedAlgorithm, TypeError, ValueError):
                problem = "bad signature"
                continue
            return
        raise _Failure(f"response rejected: {problem}")

    def health(self) -> dict[str, object]:
        """Status for health endpoints."""
        return {
            "what": "OCSP",
            "mode": self._mode,
            "scope": self._scope,
            "responder_url": self._url,
            "cached": len(self._cache),
            "last_error": self.last_error,
        }

    def __repr__(self) -> str:
        return f"<OCSPChecker mode={self._mode} scope={self._scope} url={self._url!r}>"


def _delegation_problem(
    cand: x509.Certificate, issuer: x509.Certificate, at: datetime
) -> str | None:
    """Why ``cand`` may not answer for ``issuer`` (RFC 6960 4.2.2.2), or None if it may."""
    try:
        cand.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return "the responder certificate was not issued by the certificate's CA"
    try:
        eku = cand.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return "the responder certificate lacks the OCSPSigning extended key usage"
    if ExtendedKeyUsageOID.OCSP_SIGNING not in eku:
        return "the responder certificate lacks the OCSPSigning extended key usage"
    if not cand.not_valid_before_utc - _SKEW <= at <= cand.not_valid_after_utc + _SKEW:
        return "the responder certificate is expired or not yet valid"
    return None


def _matching(resp: ocsp.OCSPResponse, request: ocsp.OCSPRequest) -> ocsp.OCSPSingleResponse:
    for single in resp.responses:
        if (
            single.serial_number == request.serial_number
            and single.issuer_key_hash == request.issuer_key_hash
            and single.issuer_name_hash == request.issuer_name_hash
            and isinstance(single.hash_algorithm, hashes.SHA1)
        ):
            return single
    raise _Failure("the response is about another certificate (CertID mismatch)")


def _check_url(url: str, error: type[Exception]) -> None:
    if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
        raise error("OCSP responder URL must be http:// or https://")
