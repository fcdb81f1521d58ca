"""JSON Web Key Sets for ``mtlsauth.oauth_jwt``: parsing, caching, bounded fetching.

Needs PyJWT (the ``oauth`` extra); nothing in the core imports this module.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from jwt import PyJWK

from mtlsauth._logfields import escape_log_value
from mtlsauth._reload import NO_WAIT, WouldBlock

__all__ = ["ALGORITHMS", "JWKS"]

logger = logging.getLogger("mtlsauth")

# The only algorithms a validator may allow, each with the key type (and curve) it needs.
# HMAC and "none" are absent on purpose: a resource server verifies an authorization
# server's signature with a public key, and a shared secret would let every resource
# server mint tokens.
ALGORITHMS: Mapping[str, tuple[str, frozenset[str] | None]] = {
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "RS512": ("RSA", None),
    "PS256": ("RSA", None),
    "PS384": ("RSA", None),
    "PS512": ("RSA", None),
    "ES256": ("EC", frozenset({"P-256"})),
    "ES384": ("EC", frozenset({"P-384"})),
    "ES512": ("EC", frozenset({"P-521"})),
    "EdDSA": ("OKP", frozenset({"Ed25519", "Ed448"})),
}
MAX_KEYS = 100
MAX_STALE = 86400.0
"""How long known keys serve through failed reloads by default (a day; ``max_age`` when that
is longer)."""
MIN_RSA_BITS = 2048


@dataclass(frozen=True, slots=True)
class _Key:
    kid: str | None
    kty: str
    crv: str | None
    alg: str | None
    key: Any


def _parse_keys(document: object) -> tuple[_Key, ...]:
    """The usable public signature keys of a JWK Set; ValueError when it is not one."""
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise ValueError("a JWK Set is an object with a 'keys' list")
    raw = document["keys"]
    if len(raw) > MAX_KEYS:
        raise ValueError(f"the JWK Set has more than {MAX_KEYS} keys")
    keys = []
    for jwk in raw:
        if not isinstance(jwk, Mapping):
            continue
        kty, kid, alg = jwk.get("kty"), jwk.get("kid"), jwk.get("alg")
        if kty not in ("RSA", "EC", "OKP") or any(p in jwk for p in ("d", "p", "q", "k")):
            continue  # symmetric, unknown, or carrying private material: never a verifier
        if jwk.get("use", "sig") != "sig":
            continue
        ops = jwk.get("key_ops")
        if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
            continue
        if (kid is not None and not isinstance(kid, str)) or (
            alg is not None and alg not in ALGORITHMS
        ):
            continue
        try:
            key = PyJWK(dict(jwk)).key
        except Exception:  # noqa: BLE001 - one malformed key must not hide the others
            logger.warning("mtlsauth JWKS: skipping an unusable key (kid=%r)", kid)
            continue
        if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
            logger.warning("mtlsauth JWKS: skipping a %d-bit RSA key (kid=%r)", key.key_size, kid)
            continue
        crv = jwk.get("crv")
        keys.append(_Key(kid, kty, crv if isinstance(crv, str) else None, alg, key))
    return tuple(keys)


_UNSENDABLE = re.compile(r"[\x00-\x20\x7f]")
_QUIET = 0.25  # seconds a JWKS file must stay gone or empty before that withdraws its keys
# Seconds a reload may run before it counts as failed for ``max_stale``: longer than a
# fetch's deadline and a slow name resolution, far shorter than any sensible max_stale.
_IN_FLIGHT = 60.0


class _NotSettled(Exception):
    """A load found the source in a state that may be the middle of a rewrite."""


class JWKS:
    """A JSON Web Key Set of an authorization server, cached and refreshed within bounds.

    Build one with ``from_document``, ``from_file`` or ``from_url``. Keys are looked up by
    the token's ``kid`` and algorithm; an unknown ``kid`` triggers a reload, at most once
    per ``min_refresh_interval`` seconds however many tokens ask (so forged ``kid`` values
    cannot turn into a request flood), and the set is reloaded anyway once it is older than
    ``max_age``. A failed reload keeps the keys already known (a file deleted or emptied
    withdraws them: see ``from_file``), but not forever: once the last reload has failed,
    keys not renewed for ``max_stale`` seconds (by default a day, or ``max_age`` when that
    is longer) are no longer used, so a key the server has withdrawn stops validating
    tokens even while fetches keep failing (an outage, or somebody blocking them).
    Thread-safe: one thread fetches, and tokens checked meanwhile use the keys already
    known rather than queue (a reload in flight is no failure).

    Only public signature keys are kept: ``kty`` RSA, EC or OKP, no private members,
    ``use`` absent or ``sig``, ``key_ops`` absent or holding ``verify``.
    """

    __slots__ = (
        "_attempted",
        "_failing",
        "_io",
        "_keys",
        "_load",
        "_loaded",
        "_lock",
        "max_age",
        "max_stale",
        "may_block",
        "min_refresh_interval",
        "source",
    )

    def __init__(
        self,
        load: Callable[[], object],
        *,
        source: str,
        may_block: bool,
        min_refresh_interval: float = 30.0,
        max_age: float = 3600.0,
        max_stale: float | None = None,
    ) -> None:
        if max_stale is None:  # a day, or max_age when that is longer (as before max_stale)
            max_stale = max(MAX_STALE, max_age) if isinstance(max_age, int | float) else MAX_STALE
        for name, value in (
            ("min_refresh_interval", min_refresh_interval),
            ("max_age", max_age),
            ("max_stale", max_stale),
        ):
            # ``not >= 0`` refuses nan, which no age exceeds (the keys never fetched again)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise ValueError(f"{name} must be a non-negative number of seconds")
        self._load = load
        self.source = source
        self.may_block = may_block
        self.min_refresh_interval = float(min_refresh_interval)
        self.max_age = float(max_age)
        if max_stale < max_age:
            raise ValueError("max_stale must be at least max_age")
        self.max_stale = float(max_stale)
        self._keys: tuple[_Key, ...] = ()
        self._loaded: float | None = None  # monotonic time of the last successful load
        self._attempted: float | None = None  # monotonic time of the last attempt
        # True when the last reload that finished failed: only then may the keys be stale
        # (a reload in flight, or held back by min_refresh_interval, is not a failure).
        self._failing = False
        self._lock = threading.Lock()
        # A reload reads a file or the network: never on an event loop (see keys_for).
        self._io = True

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> JWKS:
        """A fixed key set (never reloaded).

        Raises:
            ValueError: ``document`` is not a JWK Set.
        """
        keys = _parse_keys(document)
        forever = float("inf")
        jwks = cls(
            lambda: document,
            source="document",
            may_block=False,
            max_age=forever,
            max_stale=forever,
        )
        jwks._keys, jwks._loaded = keys, time.monotonic()
        jwks._io = False  # its reload parses the document again: no I/O
        return jwks

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str],
        *,
        min_refresh_interval: float = 30.0,
        max_age: float = 300.0,
        max_bytes: int = 1 << 20,
        max_stale: float | None = None,
    ) -> JWKS:
        """Keys from a JSON file, re-read on an unknown ``kid`` and after ``max_age``.

        A file deleted or emptied (nothing but whitespace) withdraws its keys, as a trust
        file does: every token is refused until keys are written back. Found gone or empty,
        the file is looked at again a quarter of a second later (the next token that asks,
        whatever ``min_refresh_interval`` says), and the keys are withdrawn only if it is
        still so: an editor that moves the old file away, or truncates it, before writing
        the new one is in the middle of a rewrite, not withdrawing anything. Content that
        cannot be read (a half-written file) keeps the last good keys. Replace the file by
        a rename, so that no reload reads it half-written or gone.

        Raises:
            ValueError: the file is missing or empty, cannot be read or is not a JWK Set
                (checked now).
        """
        path = os.path.abspath(path)  # the same file after the process changes directory

        def read() -> bytes | None:
            """The file's bytes; None when it is gone or holds nothing but whitespace."""
            try:
                with open(path, "rb") as f:
                    data = f.read(max_bytes + 1)
            except FileNotFoundError:
                return None
            if len(data) > max_bytes:
                raise ValueError(f"JWKS file larger than {max_bytes} bytes")
            return data if data.strip() else None

        # When the file was first found gone or empty, while it stays so (loads run under
        # the JWKS's lock, one at a time).
        gone_since: list[float] = []

        def load() -> object:
            data = read()
            if data is not None:
                gone_since.clear()
                return json.loads(data)
            now = time.monotonic()
            if not gone_since:
                gone_since.append(now)
            if now - gone_since[0] < _QUIET:
                raise _NotSettled("the file is gone or empty: looked at again shortly")
            logger.warning(
                "mtlsauth JWKS %s: the file is gone or empty, so it holds no key: tokens "
                "are refused until keys are written back",
                escape_log_value(path),
            )
            return {"keys": []}

        jwks = cls(
            load,
            source=path,
            may_block=False,
            min_refresh_interval=min_refresh_interval,
            max_age=max_age,
            max_stale=max_stale,
        )
        if not jwks.refresh():  # a file gone or empty is never settled on the first look
            why = ": the file is missing or empty" if gone_since else ""
            raise ValueError(f"cannot load a JWK Set from {path}{why}")
        return jwks

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 5.0,
        max_bytes: int = 256 * 1024,
        min_refresh_interval: float = 30.0,
        max_age: float = 3600.0,
        max_stale: float | None = None,
    ) -> JWKS:
        """Keys fetched from an ``https`` URL (an authorization server's ``jwks_uri``).

        Args:
            url: ``https://...`` only.
            ssl_context: To verify the server (default: the system's trust store).
            timeout: A deadline in seconds, counted from the start of each fetch:
                connecting (to each address tried) and the TLS handshake may each take up
                to ``timeout``; reading the answer stops when the deadline passes (name
                resolution excepted).
            max_bytes: Larger documents are refused.
            min_refresh_interval, max_age, max_stale: See the class.

        Nothing is fetched here: the first token triggers the first fetch. Redirects are
        not followed (a 3xx is a failed fetch), nor are proxies from the environment used.

        Raises:
            ValueError: not an https URL, one no fetch could use (an invalid port, spaces
                or control characters, a non-ASCII path or query, a host name with no IDNA
                form), or a bad bound.
        """
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError("the JWKS URL must be an https:// URL")
        if parts.username is not None or parts.password is not None:
            raise ValueError("the JWKS URL must not hold credentials (they are never sent)")
        # What no fetch could use is refused now, not by every fetch (every token refused):
        # a port out of range, spaces or control characters (http.client refuses them).
        try:
            port = parts.port
        except ValueError:
            raise ValueError("the JWKS URL has an invalid port") from None
        if _UNSENDABLE.search(url):
            raise ValueError("the JWKS URL holds spaces or control characters")
        # The request line is sent in ASCII: a path or query with other characters could
        # never be requested (percent-encode them). A non-ASCII host name is sent in its
        # IDNA form, as the TLS handshake's server name is: it must have one.
        if not (parts.path + parts.query).isascii():
            raise ValueError(
                "the JWKS URL's path or query holds non-ASCII characters: percent-encode them"
            )
        try:
            parts.hostname.encode("idna")
        except UnicodeError:
            raise ValueError("the JWKS URL's host name has no IDNA form") from None
        if not 0 < timeout <= 60 or not 0 < max_bytes <= 16 << 20:
            raise ValueError("timeout must be in (0, 60] seconds and max_bytes in (0, 16 MiB]")
        context = ssl_context or ssl.create_default_context()
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query

        host = parts.hostname
        # Always an explicit port: given None, http.client would read one from the host
        # itself, and the last group of a bare IPv6 literal ("[::1]" -> "::1") is no port.
        port = 443 if port is None else port

        def load() -> object:
            return json.loads(_fetch(host, port, target, context, timeout, max_bytes))

        return cls(
            load,
            source=url,
            may_block=True,
            min_refresh_interval=min_refresh_interval,
            max_age=max_age,
            max_stale=max_stale,
        )

    # -- use ------------------------------------------------------------------------------
    def refresh(self, *, force: bool = False, wait: bool = True) -> bool:
        """Reload now, unless the last attempt is younger than ``min_refresh_interval``.

        With ``wait=False``, give up at once when another thread is reloading. Returns True
        when a reload happened and succeeded. Never raises.
        """
        if not self._lock.acquire(blocking=wait):
            return False
        try:
            now = time.monotonic()
            last = self._attempted
            if not force and last is not None and now - last < self.min_refresh_interval:
                return False
            self._attempted = now
            try:
                keys = _parse_keys(self._load())
            except _NotSettled:
                # Looked at again once the quiet period has passed, however long
                # min_refresh_interval is; the keys already known serve meanwhile.
                self._attempted = now - max(0.0, self.min_refresh_interval - _QUIET)
                return False
            except Exception as exc:  # noqa: BLE001 - keep the old keys, log, refuse later
                # The text can be the key server's (http.client's BadStatusLine carries the
                # raw status line): escaped, so it cannot forge a log line.
                loaded = self._loaded
                stale = loaded is not None and now - loaded > self.max_stale
                logger.warning(
                    "mtlsauth JWKS %s: reload failed: %s: %s%s",
                    escape_log_value(self.source),
                    type(exc).__name__,
                    escape_log_value(str(exc)),
                    " (the keys are older than max_stale: every token is refused)"
                    if stale
                    else " (the keys already known stay in use)",
                )
                self._failing = True
                return False
            self._keys, self._loaded = keys, time.monotonic()
            self._failing = False
            return True
        finally:
            self._lock.release()

    def keys_for(self, kid: str | None, alg: str) -> list[Any]:
        """The verification keys for a token header's ``kid`` and ``alg`` (possibly none)."""
        # Never wait for another thread's fetch: a slow key endpoint would otherwise hold
        # every worker thread. The request that starts a fetch waits for it; the others use
        # the keys already known (and are refused when those do not match).
        #
        # Under ``NO_WAIT`` (an event loop: ``TokenCheck.acheck``), a reload this call would
        # make raises ``WouldBlock`` instead, and the caller asks again from a worker thread:
        # reading a file (or fetching) on the loop would hold up its every request.
        loaded = self._loaded
        if loaded is None or time.monotonic() - loaded > self.max_age:
            if self._io and NO_WAIT.get() and self._reload_due():
                raise WouldBlock
            self.refresh(wait=False)
            if self._stale():
                return []  # kept through failed reloads for too long (the last one said so)
        found = _select(self._keys, kid, alg)
        if not found:
            if self._io and NO_WAIT.get() and self._reload_due():
                raise WouldBlock
            if self.refresh(wait=False):
                found = _select(self._keys, kid, alg)
        return found

    def _reload_due(self) -> bool:
        """Whether ``refresh(wait=False)`` would load now (no other thread is loading, and
        ``min_refresh_interval`` has passed since the last attempt)."""
        if self._lock.locked():
            return False
        attempted = self._attempted
        return attempted is None or time.monotonic() - attempted >= self.min_refresh_interval

    def _stale(self) -> bool:
        """Whether the keys have been kept through failed reloads for over ``max_stale``:
        the last reload that finished failed, or the one in flight has run for longer than
        any should (``_IN_FLIGHT``), and the last success is older than ``max_stale``."""
        loaded = self._loaded
        now = time.monotonic()
        if loaded is None or now - loaded <= self.max_stale:
            return False
        if self._failing:
            return True
        attempted = self._attempted
        return attempted is not None and attempted > loaded and now - attempted > _IN_FLIGHT


def _select(keys: tuple[_Key, ...], kid: str | None, alg: str) -> list[Any]:
    kty, curves = ALGORITHMS[alg]
    out = []
    for k in keys:
        if kid is not None and k.kid != kid:
            continue
        if k.kty != kty or (curves is not None and k.crv not in curves):
            continue  # algorithm confusion: the key type must be the algorithm's
        if k.alg is not None and k.alg != alg:
            continue
        out.append(k.key)
    # Without a kid, only an unambiguous set will do.
    return out if kid is not None or len(out) == 1 else []


def _fetch(
    host: str, port: int, target: str, context: ssl.SSLContext, timeout: float, cap: int
) -> bytes:
    deadline = time.monotonic() + timeout

    def remaining() -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("JWKS fetch exceeded its deadline")
        return left

    conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    watchdog: threading.Timer | None = None
    try:
        conn.request(
            "GET",
            target,
            headers={
                "Accept": "application/jwk-set+json, application/json",
                "Accept-Encoding": "identity",
                "User-Agent": "mtlsauth",
            },
        )
        # getresponse() drops (and from Python 3.13 closes) conn.sock when the server will
        # close, so per-read timeouts alone cannot hold the deadline: a watchdog shuts the
        # connection down when it passes, which ends any read in progress.
        sock = conn.sock
        if sock is None:
            raise OSError("JWKS connection failed")
        watchdog = threading.Timer(remaining(), _shut, (sock,))
        watchdog.daemon = True
        watchdog.start()
        _set_timeout(sock, remaining())
        resp = conn.getresponse()
        if resp.status != 200:
            raise OSError(f"JWKS fetch answered HTTP {resp.status} (redirects are not followed)")
        length = resp.getheader("content-length")
        if length is not None and (not length.isdigit() or int(length) > cap):
            raise OSError("JWKS document too large")
        body = bytearray()
        while True:
            _set_timeout(sock, remaining())
            chunk = resp.read1(65536)
            if not chunk:
                break
            body += chunk
            if len(body) > cap:
                raise OSError("JWKS document too large")
        remaining()  # a read ended by the watchdog is a timeout, not a short document
        return bytes(body)
    finally:
        if watchdog is not None:
            watchdog.cancel()
        conn.close()


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed


def _set_timeout(sock: socket.socket, seconds: float) -> None:
    try:
        sock.settimeout(seconds)
    except OSError:
        pass  # closed by http.client once the answer is read (Python 3.13+): the watchdog holds
