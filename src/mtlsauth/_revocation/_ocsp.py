"""OCSPChecker: ask the CA's OCSP responder (RFC 6960) whether a certificate is revoked.

cryptography builds requests and parses responses but verifies no response signature, so
everything that makes an answer trustworthy is done here: the signer must be the issuing CA
itself, or a responder certificate issued directly by that CA with the id-kp-OCSPSigning
extended key usage and valid now (RFC 6960 4.2.2.2); the answer must be about the certificate
asked for (serial, issuer name hash, issuer key hash); ``thisUpdate <= now < nextUpdate``
within a small clock skew; and the nonce, when the responder echoes one, must be ours.

Answers (GOOD or REVOKED) are cached per (issuer key hash and name, serial) until
``nextUpdate``, in a bounded LRU, so the check on a Verifier cache hit is a dict look-up.
Failures are cached for ``retry_after`` seconds so a dead responder is not asked on every
request.

Why one module of this size: the checker and its response verification (RFC 6960 signature,
delegation, CertID, freshness) belong together; the HTTP client is ``_http``.
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Literal, ParamSpec, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from mtlsauth import _der
from mtlsauth._errors import CertificateRevoked, RevocationUnavailable
from mtlsauth._hooks import report_unexpected
from mtlsauth._logfields import escape_log_value
from mtlsauth._memo import ObjectTable
from mtlsauth._pathvalidation import shifted, unaccounted_critical
from mtlsauth._revocation._compose import fail_closed, unexpected_log_limiter
from mtlsauth._revocation._crl import is_what_if, renamed_keyword
from mtlsauth._revocation._http import _check_url, _Failure, _http_post

__all__ = ["OCSPChecker"]

_R = TypeVar("_R")
_P = ParamSpec("_P")

logger = logging.getLogger("mtlsauth")

_MAX_RESPONSE = 64 * 1024  # a real answer is a few KiB; a delegated signer adds one certificate
_MAX_HEADER = 16 * 1024
_MAX_SINGLE_RESPONSES = 32
_MAX_RESPONSE_CERTS = 8
_MAX_RESOLVING = 16  # look-ups that may run (and outlive their deadline) at once
_SKEW = timedelta(minutes=5)
_NONCE_OID = _der.encode_oid("1.3.6.1.5.5.7.48.1.2")  # id-pkix-ocsp-nonce
_OCSP_NOCHECK = frozenset({_der.encode_oid("1.3.6.1.5.5.7.48.1.5")})  # id-pkix-ocsp-nocheck
_NOW_TOLERANCE = timedelta(seconds=30)  # an ``at`` further from the clock is a what-if call
# What a client is told when no answer could be used. Where the failure happened (URL, OS
# error, HTTP status) goes to the log and health(), never to the client: telling a closed
# port from an open one would make the responder a probe of the server's network.
_CLIENT_DETAIL = "the certificate's revocation status could not be established (OCSP)"


Failure = Literal["hard-fail", "soft-fail"]


@dataclass(frozen=True, slots=True)
class _Answer:
    revoked: str | None  # None: GOOD; otherwise the refusal detail
    failure: str | None  # set for a cached failure
    until: datetime
    # The failure is a verified UNKNOWN, which refuses under soft-fail too: the CA's own
    # signed word that it does not know the certificate is an answer, not an outage.
    unknown: bool = False
    # The moment it was judged at; never reused for an earlier one (a clock stepped back,
    # or a what-if call): a judgement then may refuse it (thisUpdate in the future, a
    # responder certificate not valid yet). None: any moment (a final revocation).
    since: datetime | None = None


class _Unknown(_Failure):
    """A verified answer that does not know the certificate (UNKNOWN, or GOOD next to it),
    or that cannot be used (a critical extension not understood, RFC 6960 4.4)."""


class _Flight:
    """A fetch in progress, which concurrent misses for the same certificate wait for."""

    __slots__ = ("answer", "done")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.answer: _Answer | None = None


_WEAK_HASHES = (hashes.MD5, hashes.SHA1)
# A delegated responder's certificate follows the certificate profile, which refuses SHA-224
# as well (verify_directly_issued_by checks the signature, not the algorithm).
_WEAK_CERT_HASHES = (hashes.MD5, hashes.SHA1, hashes.SHA224)


class _RevocationOnly(_Failure):
    """A signature that verifies, but that is not trusted to vouch for a GOOD: made with
    MD5 or SHA-1, or by a delegated responder the CA issued whose certificate has expired
    (or is not valid yet). It still proves a final revocation: a forgery could only refuse."""


def _verify_signature(resp: ocsp.OCSPResponse, signer: x509.Certificate) -> None:
    key = signer.public_key()
    algo = resp.signature_hash_algorithm
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
    if isinstance(algo, _WEAK_HASHES):  # as for certificates: no MD5 or SHA-1 signatures
        raise _RevocationOnly(f"OCSP response signed with {algo.name}, which is not accepted")


def _key_hash(cert: x509.Certificate) -> bytes:
    # RFC 6960: SHA-1 of the subjectPublicKey BIT STRING value, which is what an SKI of
    # method 1 (RFC 5280 4.2.1.2) is.
    return x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest


def _names_responder(cand: x509.Certificate, name: x509.Name | None) -> bool:
    """Whether a byName ResponderID names ``cand``: its subject, compared as OpenSSL compares
    names (``X509_NAME_cmp``): RDN by RDN in order, values case-folded with their spaces
    collapsed, whatever their string type. A responder that spells the CA's name so is that
    CA to any other client; compared exactly, its signed REVOKED answer was taken for no
    answer, which soft-fail admits. The name only picks a candidate: its key must still
    verify the signature, and a delegated one must have been issued by the CA."""
    if name is None:
        return False
    subject = cand.subject
    return subject == name or _canonical_name(subject) == _canonical_name(name)


def _canonical_name(name: x509.Name) -> tuple[tuple[tuple[str, str], ...], ...]:
    return tuple(
        tuple(
            sorted(
                (
                    a.oid.dotted_string,
                    " ".join(a.value.split()).casefold()
                    if isinstance(a.value, str)
                    else " #" + bytes(a.value).hex(),
                )
                for a in rdn
            )
        )
        for rdn in name.rdns
    )


def _responder_url(cert: x509.Certificate) -> str | None:
    # Read from a throwaway copy: cryptography caches parsed extensions inside the certificate
    # object, and a cached identity keeps its leaf (about 2 KB more per identity otherwise).
    copy = x509.load_der_x509_certificate(cert.public_bytes(serialization.Encoding.DER))
    try:
        aia = copy.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return None
    first: str | None = None
    for desc in aia:
        if desc.access_method == AuthorityInformationAccessOID.OCSP and isinstance(
            desc.access_location, x509.UniformResourceIdentifier
        ):
            url = desc.access_location.value
            try:
                _check_url(url, ValueError)
            except ValueError:
                first = first or url  # refused later, with the reason, if nothing else fits
                continue
            return url  # the first one that can be asked (an ldap:// one may come first)
    return first


def _failure_on_any_error(judge: Callable[_P, _R]) -> Callable[_P, _R]:
    """``judge``, with any exception but ``_Failure`` turned into a malformed-response one:
    cryptography parses an OCSP response lazily, so any field may fail when it is read."""

    @functools.wraps(judge)
    def judged(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return judge(*args, **kwargs)
        except _Failure:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever the parser raises is no answer
            raise _Failure(f"malformed OCSP response ({type(exc).__name__}: {exc})") from None

    return judged


class OCSPChecker:
    """Revocation status from OCSP responders, verified and cached until ``nextUpdate``.

    Args:
        responder_url: Ask this responder for every certificate (nginx
            ``ssl_ocsp_responder``). ``None`` uses each certificate's AIA OCSP URL.
        timeout: Seconds one ``check`` may spend on the network, all included: name
            resolution, connect, TLS, sending, headers and body, for every certificate in
            scope, and any wait for a fetch another request already started.
        failure: ``"hard-fail"`` (default): no trustworthy answer means
            ``RevocationUnavailable``. ``"soft-fail"``: no trustworthy answer is logged and
            the certificate is admitted. (Formerly ``mode=``, which still works and warns.)
            Security note: soft-fail admits a revoked certificate whenever its holder can
            block or delay the responder (or forge an answer that fails verification).
        scope: ``"leaf"`` (default, like nginx ``ssl_ocsp leaf``) or ``"chain"`` (every
            certificate below the anchor, like ``ssl_ocsp on``).
        cache_size: Maximum cached answers (LRU). A Verifier's cached result lives only as
            long as this cache holds the answers it was checked with (dropping one that has
            not expired takes them all, since a fresh check would ask again), so keep it
            above the number of clients the Verifiers using it cache (their ``cache_size``
            and a tenth more; with ``scope="chain"``, add their CAs). ``0`` keeps no
            answer: every verification asks the responder and none is cached.
        nonce: Send a random nonce; a responder that echoes one must echo ours. Responders
            that pre-sign answers echo none; those are still bounded by ``thisUpdate``.
        trusted_responders: Certificates whose signatures on any answer are accepted
            as is (OpenSSL ``-VAfile``). Security note: such a key can vouch for any
            certificate.
        max_age: How long an answer without ``nextUpdate`` counts as fresh after
            ``thisUpdate``.
        retry_after: Seconds a failure is remembered before the responder is asked again.
        proxy: ``http://host:port`` of a forward proxy to reach responders through (https://
            responders are tunnelled with CONNECT). Proxies from the environment
            (``HTTP_PROXY`` and the like) are never used.

    ``check`` does network I/O (``may_block`` is True): async adapters run it in a thread.
    A REVOKED answer raises ``CertificateRevoked`` in both modes; so does a verified REVOKED
    answer that is stale or carries another nonce, unless its reason is ``certificateHold``
    (a revocation is final, a hold is not). A verified UNKNOWN answer raises
    ``RevocationUnavailable`` in both modes: the CA has said it does not know the certificate.
    """

    __slots__ = (
        "_cache",
        "_cache_size",
        "_failure",
        "_flights",
        "_issuer_ids",
        "_lock",
        "_max_age",
        "_nonce",
        "_proxy",
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
        failure: Failure | None = None,
        scope: Literal["leaf", "chain"] = "leaf",
        cache_size: int = 32_768,
        nonce: bool = True,
        trusted_responders: Iterable[x509.Certificate] = (),
        max_age: timedelta = timedelta(hours=1),
        retry_after: float = 10.0,
        proxy: str | None = None,
        mode: Failure | None = None,
    ) -> None:
        failure = renamed_keyword("OCSPChecker", "failure", failure, mode) or "hard-fail"
        if responder_url is not None:
            _check_url(responder_url, ValueError)
        if proxy is not None:
            _check_url(proxy, ValueError)
            if not proxy.lower().startswith("http://"):
                raise ValueError("proxy must be an http:// URL (https:// responders are tunnelled)")
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not 0 < timeout < math.inf
        ):
            raise ValueError("timeout must be a positive, finite number of seconds")
        if failure not in ("hard-fail", "soft-fail"):
            raise ValueError('failure must be "hard-fail" or "soft-fail"')
        if scope not in ("leaf", "chain"):
            raise ValueError('scope must be "leaf" or "chain"')
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 0:
            raise ValueError("cache_size must be a non-negative int")
        if not isinstance(max_age, timedelta) or max_age <= timedelta(0):
            raise ValueError("max_age must be a positive timedelta")
        if (
            isinstance(retry_after, bool)
            or not isinstance(retry_after, int | float)
            or not 0 <= retry_after < math.inf
        ):
            raise ValueError("retry_after must be a non-negative, finite number of seconds")
        try:
            retry = timedelta(seconds=retry_after)
        except OverflowError:
            raise ValueError("retry_after is longer than a timedelta can hold") from None
        trusted = tuple(trusted_responders)
        if not all(isinstance(c, x509.Certificate) for c in trusted):
            raise TypeError("trusted_responders must be x509.Certificate objects")
        self._url = responder_url
        self._proxy = proxy
        self._timeout = float(timeout)
        self._failure: Failure = failure
        self._scope = scope
        self._cache_size = cache_size
        self._nonce = bool(nonce)
        self._trusted = trusted
        self._max_age = max_age
        self._retry_after = retry
        self._token = object()
        self._cache: OrderedDict[tuple[bytes, int], _Answer] = OrderedDict()
        # By object identity (hashing a Certificate hashes its DER, about 1.4 µs): the CAs of
        # validated chains are the same objects request after request.
        self._issuer_ids: ObjectTable[tuple[x509.Certificate, bytes]] = ObjectTable(1024)
        self._lock = threading.Lock()
        self._flights: dict[tuple[bytes, int], _Flight] = {}
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
        return fail_closed(self._check, chain, at, what="OCSP", detail=_CLIENT_DETAIL)

    def _check(self, chain: Sequence[x509.Certificate], at: datetime) -> datetime | None:
        if at.tzinfo is None:
            raise RevocationUnavailable("OCSP check needs a timezone-aware time")
        # A what-if call (``Verifier.verify(at=...)``, or any ``at`` away from the clock)
        # reads cached answers but never writes shared state: no cache entry, no failure
        # remembered, no shared fetch, no last_error.
        what_if = is_what_if() or abs(at - datetime.now(timezone.utc)) > _NOW_TOLERANCE
        in_scope = len(chain) - 1 if self._scope == "chain" else min(1, len(chain) - 1)
        # One deadline for the whole check: with scope="chain", every fetch shares it.
        deadline = time.monotonic() + self._timeout
        until: datetime | None = None
        for i in range(in_scope):
            cert, issuer = chain[i], chain[i + 1]
            key = (self._issuer_id(issuer), cert.serial_number)
            answer = self._cached(key, at, what_if)
            if answer is None:
                answer = (
                    self._ask(cert, issuer, at, deadline)
                    if what_if
                    else self._shared(key, cert, issuer, at, deadline)
                )
            if answer.revoked is not None:
                raise CertificateRevoked(answer.revoked)
            # Under soft-fail a failure admits; it was logged once, when it was fetched.
            if answer.failure is not None and (self._failure == "hard-fail" or answer.unknown):
                raise RevocationUnavailable(_CLIENT_DETAIL)
            if until is None or answer.until < until:
                until = answer.until
        return until

    def _shared(
        self,
        key: tuple[bytes, int],
        cert: x509.Certificate,
        issuer: x509.Certificate,
        at: datetime,
        deadline: float,
    ) -> _Answer:
        """One fetch per (issuer, serial) at a time: concurrent misses wait for the first one."""
        with self._lock:
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
        if not leader:
            # Wait for the fetch in progress, but never past our own deadline.
            left = max(0.0, deadline - time.monotonic())
            if flight.done.wait(left) and flight.answer is not None:
                return flight.answer
            return self._failed(cert, "the shared fetch did not finish in time (timed out)", at)
        answer: _Answer | None = None
        try:
            answer = self._ask(cert, issuer, at, deadline, record=True)
            self._store(key, answer)
            return answer
        finally:
            flight.answer = answer
            with self._lock:
                self._flights.pop(key, None)
            flight.done.set()

    # -- cache ----------------------------------------------------------------------------
    def _issuer_id(self, issuer: x509.Certificate) -> bytes:
        # The issuer's key hash and name, as the CertID has them: one key may serve CAs of
        # several names (a renamed CA), whose serials are numbered independently.
        known = self._issuer_ids.get(id(issuer))
        if known is not None and known[0] is issuer:
            return known[1]
        found = _key_hash(issuer) + issuer.subject.public_bytes()
        self._issuer_ids.put(id(issuer), (issuer, found))
        return found

    def _cached(self, key: tuple[bytes, int], at: datetime, what_if: bool) -> _Answer | None:
        with self._lock:
            answer = self._cache.get(key)
            if answer is None:
                return None
            since = answer.since
            if what_if:
                # Only a verified answer is reused, and nothing is reordered or dropped.
                if answer.failure is None and at < answer.until:
                    return answer if since is None or since <= at else None
                return None
            if at >= answer.until or (since is not None and at < since):
                del self._cache[key]
                return None
            self._cache.move_to_end(key)
            return answer

    def _store(self, key: tuple[bytes, int], answer: _Answer) -> None:
        """Keep ``answer``; an answer let go before its ``until`` takes a new ``token``.

        A Verifier reuses a passing verification until the ``until`` of the answers it
        used, on the understanding that a fresh check would get the same answers from
        here. One this cache no longer holds would be asked for again (and may have
        changed: revoked meanwhile), so the Verifier's results must go with it: without
        an answer cache (``cache_size=0``) on every answer, and otherwise whenever the
        LRU drops an answer that has not expired (size the cache for the clients in
        use, see ``cache_size``)."""
        if not self._cache_size:
            self._token = object()
            return
        now = datetime.now(timezone.utc)
        with self._lock:
            self._cache[key] = answer
            self._cache.move_to_end(key)
            while len(self._cache) > self._cache_size:
                _key, dropped = self._cache.popitem(last=False)
                if dropped.until > now:
                    self._token = object()

    def clear_cache(self) -> None:
        """Forget every cached answer (and every Verifier result that relied on one)."""
        with self._lock:
            self._cache.clear()
            self._token = object()

    # -- one query ------------------------------------------------------------------------
    def _ask(
        self,
        cert: x509.Certificate,
        issuer: x509.Certificate,
        at: datetime,
        deadline: float,
        *,
        record: bool = False,
    ) -> _Answer:
        try:
            answer = self._query(cert, issuer, at, deadline)
        except _Failure as exc:
            unknown = isinstance(exc, _Unknown)
            return self._failed(cert, str(exc), at, record=record, unknown=unknown)
        except Exception as exc:  # noqa: BLE001 - an answer nobody foresaw: refused, not a 500
            report_unexpected("processing an OCSP answer", exc, unexpected_log_limiter)
            return self._failed(
                cert, f"unprocessable answer ({type(exc).__name__})", at, record=record
            )
        if record:
            self.last_error = None
        return answer

    def _failed(
        self,
        cert: x509.Certificate,
        why: str,
        at: datetime,
        *,
        record: bool = True,
        unknown: bool = False,
    ) -> _Answer:
        message = (
            f"OCSP: the responder's signed answer does not vouch for serial"
            f" {cert.serial_number:x}: {why}"
            if unknown
            else f"OCSP: no trustworthy answer for serial {cert.serial_number:x}: {why}"
        )
        logger.warning(
            "mtlsauth: %s%s",
            escape_log_value(message, 512),  # the responder URL may come from the cert
            f" (soft-fail: admitting it for {self._retry_after.total_seconds():.0f} s)"
            if self._failure == "soft-fail" and record and not unknown
            else "",
        )
        if record:
            self.last_error = message
        return _Answer(None, message, shifted(at, self._retry_after), unknown=unknown, since=at)

    def _query(
        self, cert: x509.Certificate, issuer: x509.Certificate, at: datetime, deadline: float
    ) -> _Answer:
        url = self._url or _responder_url(cert)
        if url is None:
            raise _Failure("the certificate names no OCSP responder and none is configured")
        _check_url(url, _Failure)
        builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1())  # noqa: S303 - RFC 6960 CertID
        nonce = os.urandom(16) if self._nonce else None
        if nonce is not None:
            builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
        request = builder.build()
        body = _http_post(
            url, request.public_bytes(serialization.Encoding.DER), deadline, self._proxy
        )
        try:
            return self._evaluate(body, request, nonce, cert, issuer, at)
        except _Failure as exc:
            raise type(exc)(f"responder {url}: {exc}") from None

    @_failure_on_any_error
    def _evaluate(
        self,
        body: bytes,
        request: ocsp.OCSPRequest,
        nonce: bytes | None,
        cert: x509.Certificate,
        issuer: x509.Certificate,
        at: datetime,
    ) -> _Answer:
        """Judge a responder's bytes; raises ``_Failure`` for anything but a usable answer."""
        try:
            resp = ocsp.load_der_ocsp_response(body)
        except ValueError:
            raise _Failure("unparsable OCSP response") from None
        if resp.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
            raise _Failure(f"responder answered {resp.response_status.name}")
        try:
            singles = list(itertools.islice(resp.responses, _MAX_SINGLE_RESPONSES + 1))
            certs = resp.certificates
        except ValueError:
            raise _Failure("unparsable OCSP response") from None
        if len(certs) > _MAX_RESPONSE_CERTS:
            raise _Failure(f"more than {_MAX_RESPONSE_CERTS} certificates in one response")
        crowded = len(singles) > _MAX_SINGLE_RESPONSES
        # A delegated responder's answer is good while its certificate is: judged later,
        # the answer is refused (its signer expired), so it is not kept past that either.
        signer_ends: datetime | None = None
        revocation_only: _RevocationOnly | None = None
        try:
            signer_ends = self._verify_signer(resp, certs, cert, issuer, at)
        except _RevocationOnly as exc:
            # Verified, but with MD5 or SHA-1 or by an expired delegate: good for a final
            # revocation only.
            revocation_only = exc
        if crowded or revocation_only is not None:
            # Too many answers to judge for a GOOD, but signed: a final revocation of ours
            # among them (the body is 64 KiB at most) revokes. Set aside unread, it was no
            # answer, which soft-fail admits.
            final = _final_revocation(
                list(resp.responses) if crowded else singles, request, cert, issuer
            )
            if final is not None:
                return _Answer(_revoked_detail(cert, final), None, self._final_until(final, at))
            if revocation_only is not None:
                raise revocation_only
            raise _Failure(f"more than {_MAX_SINGLE_RESPONSES} answers in one response")
        single = _matching(singles, request, cert, issuer)
        status = single.certificate_status
        if status == ocsp.OCSPCertStatus.REVOKED and not _is_hold(single):
            # A revocation other than a hold is final (RFC 5280 5.3.1): a CA-signed REVOKED
            # about this very certificate proves it however old the answer is, and whoever
            # replays it. Judged as no answer, soft-fail would admit the certificate.
            return _Answer(_revoked_detail(cert, single), None, self._final_until(single, at))
        # RFC 6960 4.4: an extension marked critical that is not understood makes the answer
        # unusable. The CA signed it, so under soft-fail too it is refused, like an UNKNOWN:
        # a GOOD on conditions mtlsauth cannot read is not a GOOD. (A final REVOKED above
        # stands: honouring a signed revocation never admits anyone.)
        oid = _unaccounted_critical(resp.tbs_response_bytes)
        if oid is not None:
            raise _Unknown(f"the answer carries a critical extension not understood ({oid})")
        if nonce is not None:
            try:
                echoed = resp.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
            except x509.ExtensionNotFound:
                echoed = None
            if echoed is not None and echoed != nonce:
                raise _Failure("the response's nonce is not ours (replayed answer?)")
        this_update = single.this_update_utc
        if this_update > shifted(at, _SKEW):
            raise _Failure("the answer's thisUpdate is in the future")
        next_update = single.next_update_utc
        if next_update is None:
            next_update = shifted(this_update, self._max_age)
        if at >= shifted(next_update, _SKEW):
            raise _Failure(f"stale answer (nextUpdate {next_update.isoformat()})")
        until = max(next_update, at)
        if signer_ends is not None:
            until = min(until, signer_ends)
        if status == ocsp.OCSPCertStatus.GOOD:
            return _Answer(None, None, until, since=at)
        if status == ocsp.OCSPCertStatus.REVOKED:  # on hold, and fresh
            return _Answer(_revoked_detail(cert, single), None, until, since=at)
        raise _Unknown("the responder does not know this certificate (status UNKNOWN)")

    def _final_until(self, single: ocsp.OCSPSingleResponse, at: datetime) -> datetime:
        """How long a final revocation is kept: until the answer's nextUpdate (or
        ``thisUpdate + max_age``), and at least until ``at``."""
        fresh_until = single.next_update_utc or shifted(single.this_update_utc, self._max_age)
        return max(fresh_until, at)

    def _verify_signer(
        self,
        resp: ocsp.OCSPResponse,
        included: Sequence[x509.Certificate],
        cert: x509.Certificate,
        issuer: x509.Certificate,
        at: datetime,
    ) -> datetime | None:
        """Accept the response's signer, or raise ``_Failure``. Returns the last moment a
        delegated responder's certificate is valid (with the clock skew allowed), after
        which its answers are judged expired; ``None`` for the CA itself (its validity
        bounds the chain's) and for configured ``trusted_responders``."""
        candidates = [issuer, *self._trusted, *included]
        key_hash, name = resp.responder_key_hash, resp.responder_name
        problem = "signed by an unknown responder"
        out_of_date: list[x509.Certificate] = []  # delegates fit but for their validity
        for cand in candidates:
            try:
                cand_hash = _key_hash(cand) if key_hash is not None else None
            except (ValueError, TypeError, UnsupportedAlgorithm):
                problem = "an included certificate has an unusable public key"
                continue
            if key_hash is not None and cand_hash != key_hash:
                continue
            if key_hash is None and not _names_responder(cand, name):
                continue
            if cand != issuer and _same_holder(cand, cert):
                # A delegated responder (id-kp-OCSPSigning) vouching for its own serial, or
                # for another certificate of its key, would keep answering GOOD after its CA
                # revoked it. Compared by serial and key, not bytes: a re-encoded copy of the
                # certificate (ECDSA s replaced by n - s) is the same certificate.
                problem = "the responder certificate cannot answer for itself"
                continue
            ends: datetime | None = None
            if cand != issuer and cand not in self._trusted:
                why = _delegation_problem(cand, issuer, at)
                if why == _OUT_OF_DATE:
                    out_of_date.append(cand)
                if why is not None:
                    problem = why
                    continue
                ends = shifted(cand.not_valid_after_utc, _SKEW)
            try:
                _verify_signature(resp, cand)
            except (InvalidSignature, UnsupportedAlgorithm, TypeError, ValueError):
                problem = "bad signature"
                continue
            return ends
        for cand in out_of_date:
            try:
                _verify_signature(resp, cand)
            except (InvalidSignature, UnsupportedAlgorithm, TypeError, ValueError):
                continue
            except _RevocationOnly:
                pass
            raise _RevocationOnly(f"response rejected: {_OUT_OF_DATE}")
        raise _Failure(f"response rejected: {problem}")

    def health(self) -> dict[str, object]:
        """Status for health endpoints."""
        return {
            "what": "OCSP",
            "failure": self._failure,
            "mode": self._failure,
            "scope": self._scope,
            "responder_url": self._url,
            "cached": len(self._cache),
            "last_error": self.last_error,
        }

    def __repr__(self) -> str:
        return f"<OCSPChecker failure={self._failure} scope={self._scope} url={self._url!r}>"


def _same_holder(cand: x509.Certificate, cert: x509.Certificate) -> bool:
    """Whether ``cand`` is ``cert`` (in any encoding) or certifies the same key."""
    if cand.serial_number == cert.serial_number and cand.issuer == cert.issuer:
        return True
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return bool(cand.public_key().public_bytes(*spki) == cert.public_key().public_bytes(*spki))


def _delegation_problem(
    cand: x509.Certificate, issuer: x509.Certificate, at: datetime
) -> str | None:
    """Why ``cand`` may not answer for ``issuer`` (RFC 6960 4.2.2.2), or None if it may."""
    try:
        cand.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return "the responder certificate was not issued by the certificate's CA"
    try:
        is_ca = cand.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if is_ca:
        # A responder certificate is an end-entity one. A sub-CA that also carries
        # id-kp-OCSPSigning (the 2020 delegated-responder incident) would otherwise answer
        # GOOD for every sibling its parent revoked, however its own operator is run.
        return "the responder certificate is a CA certificate (basicConstraints cA)"
    if unaccounted_critical(cand, also=_OCSP_NOCHECK):
        return "the responder certificate carries a critical extension not understood"
    try:
        usage = cand.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is not None and not usage.digital_signature:
        # RFC 5280 4.2.1.3: a key whose keyUsage leaves out digitalSignature signs no answer.
        return "the responder certificate's keyUsage does not allow digitalSignature"
    algo = cand.signature_hash_algorithm
    if isinstance(algo, _WEAK_CERT_HASHES):  # as for the client's own certificates
        return f"the responder certificate is signed with {algo.name}, which is not accepted"
    try:
        eku = cand.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return "the responder certificate lacks the OCSPSigning extended key usage"
    if ExtendedKeyUsageOID.OCSP_SIGNING not in eku:
        return "the responder certificate lacks the OCSPSigning extended key usage"
    if (
        not shifted(cand.not_valid_before_utc, -_SKEW)
        <= at
        <= shifted(cand.not_valid_after_utc, _SKEW)
    ):
        return _OUT_OF_DATE
    return None


_OUT_OF_DATE = "the responder certificate is expired or not yet valid"


def _unaccounted_critical(tbs: bytes) -> str | None:
    """The dotted OID of the first extension marked critical, other than the nonce, in a
    ResponseData's responseExtensions or in any of its SingleResponses' singleExtensions;
    None when there is none. Raises ``DERError`` on anything but the DER it expects."""
    _, start, end = _der.item(tbs, 0, len(tbs))
    fields = list(_der.items(tbs, start, end))
    # version [0]?, responderID ([1] byName or [2] byKey), producedAt, responses, then [1]
    at = next(i for i, (tag, _, _) in enumerate(fields) if tag == _der.SEQUENCE)
    blocks = [fields[at + 1 :]]
    for tag, s_start, s_end in _der.items(tbs, fields[at][1], fields[at][2]):
        if tag != _der.SEQUENCE:
            raise _der.DERError("a SingleResponse that is not a SEQUENCE")
        single = list(_der.items(tbs, s_start, s_end))
        # certID, certStatus (revoked is [1] too), thisUpdate, nextUpdate [0]?, then [1]
        blocks.append(single[3:])
    for block in blocks:
        for tag, b_start, b_end in block:
            if tag != 0xA1:
                continue
            _, e_start, e_end = _der.item(tbs, b_start, b_end)
            for _, x_start, x_end in _der.items(tbs, e_start, e_end):
                parts = list(_der.items(tbs, x_start, x_end))
                oid = tbs[parts[0][1] : parts[0][2]]
                critical = len(parts) == 3 and tbs[parts[1][1] : parts[1][2]] != b"\x00"
                if critical and oid != _NONCE_OID:
                    return _der.decode_oid(oid)
    return None


def _reason(single: ocsp.OCSPSingleResponse) -> x509.ReasonFlags | str | None:
    """A REVOKED answer's CRLReason; a code RFC 5280 does not assign (7 is unused), which
    cryptography refuses to read, is a revocation all the same. Counted as malformed, the
    CA's signed REVOKED was no answer, and soft-fail admitted the certificate."""
    try:
        return single.revocation_reason
    except ValueError:
        return "a reason code not recognized"


def _is_hold(single: ocsp.OCSPSingleResponse) -> bool:
    """Whether a REVOKED answer is a hold (final only while fresh); any other reason,
    one not recognized included, is a final revocation."""
    return _reason(single) == x509.ReasonFlags.certificate_hold


def _revoked_detail(cert: x509.Certificate, single: ocsp.OCSPSingleResponse) -> str:
    reason = _reason(single)
    when = single.revocation_time_utc
    return (
        f"OCSP: serial {cert.serial_number:x} is revoked: "
        f"{(reason if isinstance(reason, str) else reason.value) if reason else 'unspecified'}"
        f"{', since ' + when.isoformat() if when else ''}"
    )


def _matching(
    singles: Sequence[ocsp.OCSPSingleResponse],
    request: ocsp.OCSPRequest,
    cert: x509.Certificate,
    issuer: x509.Certificate,
) -> ocsp.OCSPSingleResponse:
    """The SingleResponse about the certificate asked for.

    A response may hold several for the same CertID. Any of them that says REVOKED is the
    answer, wherever it stands (taking the first would let a GOOD placed before it hide it,
    and under soft-fail a disagreement treated as no answer would admit the certificate),
    and a revocation for another reason goes before a hold, which is final only while fresh.
    GOOD next to UNKNOWN is an UNKNOWN: the CA does not vouch for the certificate.

    A REVOKED whose CertID names the certificate with a SHA-2 hash where SHA-1 was asked
    for counts too: the CA signed that this certificate is revoked, and taken for an answer
    about another certificate, soft-fail admitted it. Any other status so named is still no
    answer (the CertID must be the one asked for).
    """
    found = [
        single
        for single in singles
        if single.serial_number == request.serial_number
        and single.issuer_key_hash == request.issuer_key_hash
        and single.issuer_name_hash == request.issuer_name_hash
        and isinstance(single.hash_algorithm, hashes.SHA1)
    ]
    revoked = [s for s in found if s.certificate_status == ocsp.OCSPCertStatus.REVOKED]
    revoked += [
        single
        for single in singles
        if single.certificate_status == ocsp.OCSPCertStatus.REVOKED
        and single.serial_number == request.serial_number
        and _names_otherwise(single, cert, issuer)
    ]
    if not found and not revoked:
        raise _Failure("the response is about another certificate (CertID mismatch)")
    for single in revoked:  # a final revocation first: a hold may have been released
        if not _is_hold(single):
            return single
    if revoked:
        return revoked[0]
    if len({single.certificate_status for single in found}) > 1:
        # GOOD next to UNKNOWN: the CA does not vouch for the certificate. A signed
        # response, so judged once it is known to be fresh and ours, like an UNKNOWN.
        return next(s for s in found if s.certificate_status == ocsp.OCSPCertStatus.UNKNOWN)
    return found[0]


def _final_revocation(
    singles: Sequence[ocsp.OCSPSingleResponse],
    request: ocsp.OCSPRequest,
    cert: x509.Certificate,
    issuer: x509.Certificate,
) -> ocsp.OCSPSingleResponse | None:
    """The REVOKED for a reason other than a hold that ``singles`` hold about the
    certificate asked for, or None."""
    try:
        single = _matching(singles, request, cert, issuer)
    except _Failure:
        return None
    if single.certificate_status == ocsp.OCSPCertStatus.REVOKED and not _is_hold(single):
        return single
    return None


_SHA2 = (hashes.SHA224, hashes.SHA256, hashes.SHA384, hashes.SHA512)


def _names_otherwise(
    single: ocsp.OCSPSingleResponse, cert: x509.Certificate, issuer: x509.Certificate
) -> bool:
    """Whether ``single``'s CertID names ``cert`` under ``issuer`` with a SHA-2 hash."""
    try:
        algorithm = single.hash_algorithm
    except (UnsupportedAlgorithm, ValueError):  # a hash cryptography does not know
        return False
    if not isinstance(algorithm, _SHA2):
        return False
    ours = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, algorithm).build()
    return bool(
        single.issuer_key_hash == ours.issuer_key_hash
        and single.issuer_name_hash == ours.issuer_name_hash
    )
