"""FastAPI dependency and OpenAPI 3.1 ``mutualTLS`` security scheme.

``MTLSMiddleware`` (``mtlsauth.adapters.asgi``) authenticates the request; ``MutualTLS`` is
the per-route dependency that hands the route its ``ClientIdentity``, and
``document_mutual_tls(app)`` writes what those dependencies require into the app's OpenAPI
document: a ``mutualTLS`` Security Scheme Object (OpenAPI 3.1, section 4.8.27) under
``components.securitySchemes``, and on every route that depends on it a ``security``
requirement (``[{"mutualTLS": []}]`` when a certificate is required,
``[{"mutualTLS": []}, {}]`` when it is optional), so ``/docs`` and generated clients show
which routes need a client certificate::

    from fastapi import Depends, FastAPI
    from mtlsauth.adapters.asgi import MTLSMiddleware
    from mtlsauth.adapters.fastapi import MutualTLS, document_mutual_tls

    mtls = MutualTLS()                       # required: 401 certificate_missing without one
    maybe_mtls = MutualTLS(required=False)   # optional: None without a certificate

    app = FastAPI()
    app.add_middleware(MTLSMiddleware, verifier=verifier, mode="optional")

    @app.get("/balance")
    def balance(who: ClientIdentity = Depends(mtls)) -> dict[str, str]: ...

    document_mutual_tls(app)

FastAPI's own OpenAPI models know only the OpenAPI 3.0 scheme types, so the scheme is added
to the generated document rather than declared through ``fastapi.security``. The dependency
never verifies anything itself: it reads what the middleware established, so the middleware
must run for every route that uses it (``IdentityMissing``, a 500, otherwise).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from starlette.requests import HTTPConnection

from mtlsauth._errors import CertificateMissing
from mtlsauth._identity import ClientIdentity
from mtlsauth._oauth import TOKEN_CHECK_ATTRIBUTE, TokenCheck
from mtlsauth._policy._policy import Policy
from mtlsauth.adapters.asgi import identity_from_scope

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["MutualTLS", "document_mutual_tls"]

DEFAULT_SCHEME_NAME = "mutualTLS"
_DEFAULT_DESCRIPTION = (
    "A client certificate presented in the TLS handshake, or forwarded by a trusted "
    "TLS-terminating proxy, and verified by the server."
)


class MutualTLS:
    """A FastAPI dependency: the caller's verified ``ClientIdentity``.

    Args:
        required: ``True`` (default): a request without an identity is refused with 401
            ``certificate_missing`` (answered as problem+json by the middleware).
            ``False``: the route gets ``None`` instead.
        policy: An extra ``Policy`` for this route, checked on top of the middleware's
            (``PolicyDenied``, 403, when it does not match).
        scheme_name: The name under ``components.securitySchemes`` (``"mutualTLS"``).
        description: The scheme's description in the OpenAPI document.

    Raises:
        TypeError: a wrongly typed argument.
    """

    __slots__ = ("__signature__", "description", "policy", "required", "scheme_name")

    def __init__(
        self,
        *,
        required: bool = True,
        policy: Policy | None = None,
        scheme_name: str = DEFAULT_SCHEME_NAME,
        description: str = _DEFAULT_DESCRIPTION,
    ) -> None:
        if not isinstance(required, bool):
            raise TypeError("required must be True or False")
        if policy is not None and not isinstance(policy, Policy):
            raise TypeError("policy must be a mtlsauth.Policy")
        if not isinstance(scheme_name, str) or not scheme_name:
            raise TypeError("scheme_name must be a non-empty string")
        if not isinstance(description, str):
            raise TypeError("description must be a string")
        self.required = required
        self.policy = policy
        self.scheme_name = scheme_name
        self.description = description

    def __call__(self, conn: HTTPConnection) -> ClientIdentity | None:
        identity = identity_from_scope(conn.scope)
        if identity is None:
            if self.required:
                raise CertificateMissing("this endpoint requires a client certificate")
            return None
        if self.policy is not None and not self.policy.is_empty:
            self.policy.check(identity)
        return identity

    def __repr__(self) -> str:
        return f"MutualTLS(required={self.required}, scheme_name={self.scheme_name!r})"


# The annotations as objects, not strings: FastAPI before 0.112 reads a callable instance's
# annotations without its module's names, so "HTTPConnection" became a query parameter and
# every request was refused with 422.
MutualTLS.__call__.__annotations__.update({"conn": HTTPConnection, "return": ClientIdentity | None})


BEARER_SCHEME_NAME = "bearerToken"
_BEARER_DESCRIPTION = (
    "An OAuth 2.0 access token in the Authorization header (RFC 6750), bound to the client "
    "certificate of the request (RFC 8705) unless the server accepts unbound tokens."
)


def _schemes(dependant: Any) -> Iterator[MutualTLS | TokenCheck]:
    """The ``MutualTLS`` dependencies and ``require_token`` checks of a route's tree."""
    stack = [dependant]
    while stack:
        d = stack.pop()
        if isinstance(d.call, MutualTLS):
            yield d.call
        else:
            check = getattr(d.call, "__dict__", {}).get(TOKEN_CHECK_ATTRIBUTE)
            if isinstance(check, TokenCheck):
                yield check
        stack.extend(d.dependencies)


def _requiring(
    security: list[dict[str, list[str]]], names: list[str], optional: bool
) -> list[dict[str, list[str]]]:
    """An operation's ``security`` once it also requires (or accepts) the schemes ``names``.

    The objects of the list are alternatives; the schemes inside one object are all
    required. So a certificate the route requires joins *every* alternative the operation
    already lists (another scheme's requirement stays required, never becomes an "or"),
    and an optional one adds each alternative with the certificate next to the one
    without. Without other schemes: ``[{mTLS}]``, or ``[{mTLS}, {}]`` when optional.
    Applying it twice changes nothing.
    """
    alternatives = security or [{}]
    out: list[dict[str, list[str]]] = []
    for requirement in alternatives:
        combined = {**requirement, **{n: requirement.get(n, []) for n in names}}
        out.append(dict(sorted(combined.items())))
    if optional:
        out.extend(alternatives)
    unique: list[dict[str, list[str]]] = []
    for requirement in out:
        if requirement not in unique:
            unique.append(requirement)
    return unique


def document_mutual_tls(app: FastAPI) -> None:
    """Declare the ``MutualTLS`` dependencies of ``app``'s routes in its OpenAPI document.

    Call it once, after the routes are added; it wraps ``app.openapi`` (the document is
    still built on first use and cached). A route that depends on a required ``MutualTLS``
    anywhere in its dependency tree gets ``{"mutualTLS": []}`` in ``security``; a route
    whose ``MutualTLS`` dependencies are all optional also gets ``{}`` (anonymous callers
    allowed). A route that already requires another scheme (an ``HTTPBearer``
    dependency) requires both: ``[{"HTTPBearer": [], "mutualTLS": []}]``, and with an
    optional certificate ``[{"HTTPBearer": [], "mutualTLS": []}, {"HTTPBearer": []}]``,
    never an alternative that would read as "either one" or "anyone".

    ``Depends(require_token(check))`` (``mtlsauth.adapters.asgi_oauth``) is declared the
    same way, as the ``bearerToken`` scheme (``type: http``, ``scheme: bearer``): required
    unless ``check.required`` is false. Requirements set in the middleware (``Route(...)``
    in ``routes=``) are not visible here: declare those routes with the dependencies too.
    """
    from fastapi.routing import APIRoute

    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        declared: dict[str, str] = {}
        bearer = False
        paths = schema.get("paths", {})
        for route in app.routes:
            if not isinstance(route, APIRoute) or not route.include_in_schema:
                continue
            found = list(_schemes(route.dependant))
            schemes = [s for s in found if isinstance(s, MutualTLS)]
            tokens = [s for s in found if isinstance(s, TokenCheck)]
            if not found:
                continue
            for s in schemes:
                declared.setdefault(s.scheme_name, s.description)
            bearer = bearer or bool(tokens)
            names = sorted({s.scheme_name for s in schemes})
            optional = not any(s.required for s in schemes)
            token_optional = not any(t.required for t in tokens)
            for method in route.methods or ():
                op = paths.get(route.path_format, {}).get(method.lower())
                if op is None:
                    continue
                security = op.get("security") or []
                if names:
                    security = _requiring(security, names, optional)
                if tokens:
                    security = _requiring(security, [BEARER_SCHEME_NAME], token_optional)
                op["security"] = security
        if declared or bearer:
            components = schema.setdefault("components", {})
            known = components.setdefault("securitySchemes", {})
            for name, description in declared.items():
                known[name] = {"type": "mutualTLS", "description": description}
            if bearer:
                known[BEARER_SCHEME_NAME] = {
                    "type": "http",
                    "scheme": "bearer",
                    "description": _BEARER_DESCRIPTION,
                }
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
