"""Shared types: what an adapter hands the core, and the protocols between core parts."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, TypedDict, TypeVar, runtime_checkable

from cryptography import x509

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = [
    "ASGIApp",
    "Headers",
    "HealthReporting",
    "Immutable",
    "Presented",
    "Receive",
    "Reloadable",
    "RevocationChecker",
    "Scope",
    "Send",
    "TLSExtension",
    "fast_init",
    "tls_extension",
]

Headers = tuple[tuple[str, str], ...]
"""Request headers as (lower-case name, value) pairs, duplicates kept in arrival order."""

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
if TYPE_CHECKING:
    Receive = Callable[[], Awaitable[Message]]
    Send = Callable[[Message], Awaitable[None]]
    ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
else:  # runtime aliases only matter for annotations
    Receive = Send = ASGIApp = object


class TLSExtension(TypedDict, total=False):
    """``scope["extensions"]["tls"]`` as the ASGI TLS extension (asgiref specs/tls.rst) defines it."""

    server_cert: str | None
    client_cert_chain: Sequence[str]
    client_cert_name: str | None
    client_cert_error: str | None
    tls_version: int | None
    cipher_suite: int | None


class Immutable:
    """The immutability of configuration objects that keep derived lookup tables (``Policy``,
    ``ForwardedCert``): set in ``__init__`` through ``_freeze``, then never again.

    Plain value records are ``@dataclass(frozen=True, slots=True)`` instead (``Route``,
    ``TokenCheck``, ``Config``); both refuse assignment and deletion with ``AttributeError``
    (``FrozenInstanceError`` is one), and both change by building a new object.
    """

    __slots__ = ()

    def _freeze(self, **fields: object) -> None:
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(
            f"{type(self).__name__} is immutable; build a new one instead of setting {name!r}"
        )

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")


_T = TypeVar("_T")


def fast_init(cls: type[_T]) -> type[_T]:
    """Give a frozen, slotted dataclass built on the hot path a faster ``__init__``.

    The generated one sets each field with ``object.__setattr__`` (a type look-up per
    field, about 0.1 µs each). This one has the same signature (field order, defaults,
    keyword-only fields) and sets the same values, three times as fast for a class of many
    fields (``ClientIdentity`` is built once per verification, ``Decision`` and
    ``Presented`` once per request): it turns the new object, which nobody else holds yet,
    into a plain slotted twin of ``cls`` (the same slots, no frozen ``__setattr__``), fills
    the slots with ordinary assignments, and turns it back. A subclass of ``cls`` gets each
    slot set through its descriptor instead. Only for the simple shape: no
    ``__post_init__``, no ``default_factory``, every field in ``__init__``.
    """
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    params = (cls.__dataclass_params__.frozen, "__slots__" in cls.__dict__)  # type: ignore[attr-defined]
    if params != (True, True) or hasattr(cls, "__post_init__"):
        raise TypeError(f"fast_init needs a frozen, slotted dataclass: {cls.__name__}")
    draft = type(
        f"_{cls.__name__}Draft",
        (),
        {"__slots__": cls.__dict__["__slots__"], "__module__": cls.__module__},
    )
    # Every name the generated function reads besides its parameters (``_type``: a field
    # may well be called ``type``); a parameter named like one would take its place.
    scope: dict[str, object] = {
        "_cls": cls,
        "_draft": draft,
        "_set": object.__setattr__,
        "_type": type,
    }
    args: list[str] = []
    keyword_only: list[str] = []
    swapped: list[str] = []
    direct: list[str] = []
    for f in fields:
        if not f.init or f.default_factory is not dataclasses.MISSING:
            raise TypeError(f"fast_init: {cls.__name__}.{f.name} is not a plain field")
        if f.name in scope or f.name == "self" or f.name.startswith(("_set_", "_default_")):
            raise TypeError(f"fast_init: {cls.__name__}.{f.name} is named like a helper")
        scope[f"_set_{f.name}"] = cls.__dict__[f.name].__set__
        arg = f.name
        if f.default is not dataclasses.MISSING:
            scope[f"_default_{f.name}"] = f.default
            arg += f"=_default_{f.name}"
        (keyword_only if f.kw_only else args).append(arg)
        swapped.append(f"        self.{f.name} = {f.name}")
        direct.append(f"        _set_{f.name}(self, {f.name})")
    # The twin must share cls's layout for the swap; a trial on a bare object proves it.
    probe = object.__new__(cls)
    try:
        object.__setattr__(probe, "__class__", draft)
        probe.__class__ = cls
    except TypeError:  # pragma: no cover - CPython accepts equal slots on object
        swapped = []
    signature = ", ".join(["self", *args, *(["*", *keyword_only] if keyword_only else [])])
    # The helpers reach __init__ as a closure (the arguments of a maker function), so that
    # its globals are those of cls's module, as for the __init__ dataclass generates: its
    # __module__, and the types typing.get_type_hints resolves from its annotations.
    lines = [f"def _make({', '.join(scope)}):", f"    def __init__({signature}):"]
    if swapped:
        lines += [
            "        if _type(self) is _cls:",
            "            _set(self, '__class__', _draft)",
            *(f"    {line}" for line in swapped),
            "            self.__class__ = _cls",
            "        else:",
        ]
    else:
        lines.append("        if True:")
    lines += [f"    {line}" for line in direct] or ["            pass"]
    lines.append("    return __init__")
    module = sys.modules.get(cls.__module__)
    made: dict[str, Any] = {}
    # Our own field names, checked above.
    exec("\n".join(lines), module.__dict__ if module else {}, made)  # noqa: S102
    init = made["_make"](**scope)
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__annotations__ = {**{f.name: f.type for f in fields}, "return": None}
    setattr(cls, "__init__", init)  # noqa: B010 - replacing the generated method
    _refuse_changes(cls, frozenset(f.name for f in fields))
    return cls


def _refuse_changes(cls: type, names: frozenset[str]) -> None:
    """A frozen ``__setattr__``/``__delattr__`` that raise ``FrozenInstanceError`` for any
    name. The ones ``dataclass(frozen=True, slots=True)`` generates refer to the class as it
    was before the slots were added, so for a name that is not a field they fail with a
    ``TypeError`` about ``super()`` instead (``identity.role = "admin"``), on every
    CPython this library supports. A subclass may still set the names it adds, as a frozen
    dataclass allows."""

    def __setattr__(self: object, name: str, value: object) -> None:
        if type(self) is cls or name in names:
            raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")
        object.__setattr__(self, name, value)

    def __delattr__(self: object, name: str) -> None:
        if type(self) is cls or name in names:
            raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")
        object.__delattr__(self, name)

    for method in (__setattr__, __delattr__):
        method.__qualname__ = f"{cls.__qualname__}.{method.__name__}"
        setattr(cls, method.__name__, method)


def tls_extension(
    chain_pem: Sequence[str] = (),
    *,
    name: str | None = None,
    tls_version: int | None = 0x0304,
    cipher_suite: int | None = None,
) -> TLSExtension:
    """The one place an ASGI TLS extension is built (servers' glue, test helpers).

    ``chain_pem`` is the client's chain, leaf first, as PEM strings (empty: TLS without a
    client certificate); ``name`` the leaf's subject as RFC 4514 text.
    """
    return {
        "server_cert": None,
        "client_cert_chain": list(chain_pem),
        "client_cert_name": name,
        "client_cert_error": None,
        "tls_version": tls_version,
        "cipher_suite": cipher_suite,
    }


@fast_init
@dataclass(frozen=True, slots=True)
class Presented:
    """Everything an adapter knows about a request's client, framework-free.

    Attributes:
        peer: The socket peer's IP address as the server reports it (never X-Forwarded-For).
        headers: Request headers as (lower-case name, value) pairs, duplicates kept.
        tls_chain: The certificate chain the server's TLS layer received, leaf first, as PEM
            strings or DER bytes; empty when the server ended no TLS or got no certificate.
        tls_error: A non-empty string when the server reported a client-certificate error.
        path: The request path (for per-route rules).
        method: The request method.
        tls_hint: Set by an adapter that sees a TLS connection whose client certificate
            cannot reach the app (the server does not pass it on, or its ``SSLContext``
            does not ask for one); a ``certificate_missing`` refusal's ``Decision.hint``
            and log line say it (the client is not told how the server is set up).
    """

    peer: str | None = None
    headers: Headers = ()
    tls_chain: tuple[str | bytes, ...] = ()
    tls_error: str | None = None
    path: str = "/"
    method: str = "GET"
    tls_hint: str | None = None

    def header_values(self, name: str) -> list[str]:
        """Every value of header ``name`` (lower-case), in arrival order."""
        return [v for k, v in self.headers if k == name]


@runtime_checkable
class RevocationChecker(Protocol):
    """What the Verifier needs from a revocation source (CRLSet, OCSPChecker, ...).

    The contract: ``check`` runs after path validation on every verification that is not
    served from the cache. A passing answer is then reused for that chain until the
    ``until`` it returned, or until ``token`` changes, whichever comes first: the Verifier
    reads ``token`` on every request and drops all cached results when it changes. So a
    source must hand out a new ``token`` whenever its answer for some chain may change
    before that chain's ``until`` (a CRL reload, a cleared response cache).
    """

    def check(self, chain: Sequence[x509.Certificate], *, at: datetime) -> datetime | None:
        """Raise ``CertificateRevoked`` or ``RevocationUnavailable``, or return the moment
        until which this "not revoked" answer may be cached (``None``: no limit). The moment
        is a timezone-aware ``datetime``: anything else refuses the certificate
        (``RevocationUnavailable``), as any other exception does."""
        ...

    @property
    def token(self) -> object:
        """An object whose identity changes whenever the revocation data may have changed.

        Read on every request (cheaply): the moment to notice changed files on disk."""
        ...

    @property
    def may_block(self) -> bool:
        """True when ``check`` may do network I/O (OCSP), so async callers use a thread."""
        ...


@runtime_checkable
class Reloadable(Protocol):
    """A source backed by files (``TrustStore``, ``CRLSet``): ``Verifier.reload()`` calls it."""

    def reload(self) -> bool:
        """Re-read the files now; True when anything changed."""
        ...


@runtime_checkable
class HealthReporting(Protocol):
    """A source that reports its state (reload errors, ages) for ``Verifier.health()``."""

    def health(self) -> object:
        """A dict, or a list of dicts, each possibly with a ``last_error``."""
        ...
