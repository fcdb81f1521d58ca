"""The one table of proxy presets: each proxy's header and field names and encoding.

Header names are each product's default where it has one (Envoy, Traefik, AWS, Azure,
Cloudflare, WSO2, Gluu, RFC 9440) and the conventional name from the documentation in
``docs/proxies.md`` where the operator picks it (nginx, Apache, HAProxy, Caddy, GCP); any
field can be overridden: ``ForwardedCert.preset("nginx", header="X-Client-Cert", ...)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

__all__ = ["PRESETS", "resolve_name"]

_APACHE_CHAIN = (
    "X-SSL-Client-Cert-Chain-0",
    "X-SSL-Client-Cert-Chain-1",
    "X-SSL-Client-Cert-Chain-2",
)
_AWS_FIELDS = {
    "subject": "X-Amzn-Mtls-Clientcert-Subject",
    "issuer": "X-Amzn-Mtls-Clientcert-Issuer",
    "serial": "X-Amzn-Mtls-Clientcert-Serial-Number",
    "validity": "X-Amzn-Mtls-Clientcert-Validity",
}
_GCP_FIELDS = {
    "present": "X-Client-Cert-Present",
    "chain_verified": "X-Client-Cert-Chain-Verified",
    "error": "X-Client-Cert-Error",
    "fingerprint": "X-Client-Cert-Hash",
    "serial": "X-Client-Cert-Serial-Number",
    "spiffe": "X-Client-Cert-SPIFFE",
    "uri": "X-Client-Cert-URI-SANs",
    "dns": "X-Client-Cert-DNSName-SANs",
    "subject": "X-Client-Cert-Subject-DN",
    "issuer": "X-Client-Cert-Issuer-DN",
    "not_before": "X-Client-Cert-Valid-Not-Before",
    "not_after": "X-Client-Cert-Valid-Not-After",
}
_XFCC = {"header": "X-Forwarded-Client-Cert", "encoding": "xfcc"}
# The proxy forwards the leaf alone in this header (nginx never exposes the client's chain;
# Caddy, Azure App Service, Cloudflare, CloudFront and ALB's verify-mode Leaf neither; Apache,
# HAProxy, RFC 9440 and GCP send the chain in headers of its own). Set explicitly, so that a
# preset with chain_header=None overridden still refuses a second certificate there.
_LEAF = {"single_certificate": True}

PRESETS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        "nginx": {"header": "X-SSL-Client-Cert", "encoding": "url-pem", **_LEAF},
        "ingress-nginx": {"header": "ssl-client-cert", "encoding": "url-pem", **_LEAF},
        "apache": {
            "header": "X-SSL-Client-Cert",
            "encoding": "pem",
            "chain_header": _APACHE_CHAIN,
            **_LEAF,
        },
        "haproxy": {
            "header": "X-SSL-Client-Cert",
            "encoding": "der-base64",
            "chain_header": "X-SSL-Client-Chain",
            **_LEAF,
        },
        "envoy": _XFCC,
        "istio": _XFCC,
        "azure-container-apps": _XFCC,
        "traefik": {"header": "X-Forwarded-Tls-Client-Cert", "encoding": "traefik"},
        "caddy": {"header": "X-Client-Cert", "encoding": "der-base64", **_LEAF},
        "aws-alb": {"header": "X-Amzn-Mtls-Clientcert", "encoding": "url-pem"},
        "aws-alb-verify": {
            "header": "X-Amzn-Mtls-Clientcert-Leaf",
            "encoding": "url-pem",
            **_LEAF,
            "identity_format": "aws-alb",
            "identity_headers": _AWS_FIELDS,
        },
        "cloudfront": {"header": "CloudFront-Viewer-Cert-Pem", "encoding": "url-pem", **_LEAF},
        "azure": {"header": "X-ARR-ClientCert", "encoding": "der-base64", **_LEAF},
        "cloudflare": {"header": "Cf-Client-Cert-Der-Base64", "encoding": "der-base64", **_LEAF},
        "wso2": {"header": "X-WSO2-CLIENT-CERTIFICATE", "encoding": "url-pem", **_LEAF},
        "gluu": {"header": "X-ClientCert", "encoding": "pem", **_LEAF},
        "rfc9440": {
            "header": "Client-Cert",
            "encoding": "rfc9440",
            "chain_header": "Client-Cert-Chain",
            **_LEAF,
        },
        "gcp": {
            "header": "X-Client-Cert-Leaf",
            "encoding": "rfc9440",
            "chain_header": "X-Client-Cert-Chain",
            **_LEAF,
            "identity_format": "gcp",
            "identity_headers": _GCP_FIELDS,
        },
    }
)


def resolve_name(name: object, choices: Iterable[str], what: str) -> str:
    """``name`` as spelled in ``choices``, matched case-insensitively; ``ValueError`` with a
    "did you mean" suggestion otherwise."""
    import difflib  # only when a name is wrong: kept off the import of every app

    options = list(choices)
    if isinstance(name, str):
        if name in options:
            return name
        folded = {o.casefold(): o for o in options}
        hit = folded.get(name.strip().casefold())
        if hit is not None:
            return hit
        near = difflib.get_close_matches(name.strip().casefold(), list(folded), n=1, cutoff=0.6)
        if near:
            raise ValueError(f"unknown {what} {name!r}: did you mean {folded[near[0]]!r}?")
    raise ValueError(f"unknown {what} {name!r}; choose one of: {', '.join(options)}")
