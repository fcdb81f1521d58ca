"""The one table of proxy presets, and ``encode_forwarded``: what each proxy really sends.

Header names are each product's default where it has one (Envoy, Traefik, AWS, Azure,
Cloudflare, WSO2, Gluu, RFC 9440) and the conventional name from the documentation in
``docs/proxies.md`` where the operator picks it (nginx, Apache, HAProxy, Caddy, GCP); any
field can be overridden: ``ForwardedCert.preset("nginx", header="X-Client-Cert", ...)``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from mtlsauth._forwarded._formats import (
    ENCODINGS,
    encode_b64,
    encode_pem_spaces,
    encode_rfc9440,
    encode_url_pem,
)
from mtlsauth._forwarded._xfcc import encode_element

__all__ = ["PRESETS", "encode_forwarded"]

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


def _subject(der: bytes) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = tuple(san.get_values_for_type(x509.UniformResourceIdentifier))
        dns = tuple(san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        uris = dns = ()
    return cert.subject.rfc4514_string(), uris, dns


def encode_forwarded(preset_or_encoding: str, chain_der: Sequence[bytes]) -> list[tuple[str, str]]:
    """The header pairs a proxy sends for a client that presented ``chain_der`` (leaf first).

    Args:
        preset_or_encoding: A preset name (``"nginx"``, ``"apache"``...) or an encoding name
            (then the header is ``X-Client-Cert`` and the whole chain goes into it where the
            encoding can carry one).
        chain_der: The certificates the client presented, leaf first.

    Returns:
        ``(header name, value)`` pairs, byte for byte what that proxy writes (nginx escapes
        ``+`` as ``%2B``, AWS leaves it raw, Apache turns newlines into spaces...).
    """
    ders = tuple(chain_der)
    if not ders:
        raise ValueError("chain_der must hold at least the leaf certificate")
    leaf, rest = ders[0], ders[1:]
    name = resolve_name(preset_or_encoding, [*PRESETS, *ENCODINGS], "preset or encoding")
    if name in ENCODINGS and name not in PRESETS:
        return [("X-Client-Cert", _encode_value(name, ders))]
    if name not in PRESETS:
        raise ValueError(
            f"unknown preset or encoding {name!r}; presets: {', '.join(sorted(PRESETS))}; "
            f"encodings: {', '.join(ENCODINGS)}"
        )
    cfg = PRESETS[name]
    header: str = cfg["header"]
    if name in ("nginx", "ingress-nginx", "wso2", "cloudfront"):
        return [(header, encode_url_pem([leaf]))]  # nginx never exposes the client's chain
    if name == "aws-alb":
        return [(header, encode_url_pem(ders, safe="+=/"))]
    if name in ("apache", "gluu"):
        out = [(header, encode_pem_spaces(leaf))]
        for i, chain_name in enumerate(cfg.get("chain_header", ())):
            out.append((chain_name, encode_pem_spaces(rest[i]) if i < len(rest) else "(null)"))
        return out
    if name == "haproxy":
        return [
            (header, encode_b64([leaf])),
            (cfg["chain_header"], encode_b64(rest) if rest else ""),
        ]
    if name in ("caddy", "azure", "cloudflare"):
        return [(header, encode_b64([leaf]))]
    if name == "traefik":
        return [(header, _encode_value("traefik", ders))]
    if name in ("envoy", "istio", "azure-container-apps"):
        subject, uris, dns = _subject(leaf)
        return [(header, encode_element(ders, subject=subject, uris=uris, dns=dns))]
    if name == "aws-alb-verify":
        from cryptography import x509

        cert = x509.load_der_x509_certificate(leaf)
        fields = cfg["identity_headers"]
        validity = (
            f"NotBefore={cert.not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ};"
            f"NotAfter={cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}"
        )
        return [
            (fields["serial"], f"{cert.serial_number:X}"),
            (fields["issuer"], cert.issuer.rfc4514_string()),
            (fields["subject"], cert.subject.rfc4514_string()),
            (fields["validity"], validity),
            (header, encode_url_pem([leaf], safe="+=/")),
        ]
    if name in ("rfc9440", "gcp"):
        out = [(header, encode_rfc9440(leaf))]
        if rest:
            out.append((cfg["chain_header"], ", ".join(encode_rfc9440(d) for d in rest)))
        if name == "gcp":
            import base64

            fields = cfg["identity_headers"]
            out += [
                (fields["present"], "true"),
                (fields["chain_verified"], "true"),
                (fields["fingerprint"], base64.b64encode(hashlib.sha256(leaf).digest()).decode()),
            ]
        return out
    raise AssertionError(f"preset {name!r} has no encoder")  # pragma: no cover


def _encode_value(encoding: str, ders: tuple[bytes, ...]) -> str:
    if encoding == "url-pem":
        return encode_url_pem(ders)
    if encoding == "pem":
        return " ".join(encode_pem_spaces(d) for d in ders)
    if encoding == "der-base64":
        return encode_b64(ders)
    if encoding == "traefik":
        return ",".join(encode_b64([d]) for d in ders)
    if encoding == "xfcc":
        subject, uris, dns = _subject(ders[0])
        return encode_element(ders, subject=subject, uris=uris, dns=dns)
    return encode_rfc9440(ders[0])  # rfc9440: Client-Cert holds only the leaf


def resolve_name(name: object, choices: Iterable[str], what: str) -> str:
    """``name`` as spelled in ``choices``, matched case-insensitively; ``ValueError`` with a
    "did you mean" suggestion otherwise."""
    import difflib

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
