"""Names and policies reviewed once more: spellings an attacker's certificate could use."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from mtlsauth import ClientIdentity, Policy, PolicyDenied
from mtlsauth._identity import identity_from_certificate
from mtlsauth._leafder import read_leaf
from mtlsauth.testing import CA


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA(organization="Names Again")


def _identity(ca: CA, **kwargs: object) -> ClientIdentity:
    cert = ca.issue_client_cert(**kwargs).certificate  # type: ignore[arg-type]
    raw = cert.public_bytes(Encoding.DER)
    parsed = identity_from_certificate(cert)
    assert identity_from_certificate(cert, der=raw, facts=read_leaf(raw)) == parsed
    return parsed


@pytest.mark.parametrize(
    ("entry", "presented"),
    [
        ("urn:foo:bar", "urnf:oo:bar"),
        ("mailto:alice@example.com", "mailtoa:lice@example.com"),
        ("urn:a/*", "ur:na/x"),
    ],
)
def test_uri_without_authority_keeps_its_scheme_colon(ca: CA, entry: str, presented: str) -> None:
    # The scheme's ':' was dropped when normalising a URI without '//': "urnf:oo:bar" and
    # "urn:foo:bar" both became "urnfoo:bar".
    identity = _identity(ca, uris=[presented])
    with pytest.raises(PolicyDenied) as info:
        Policy(uris={entry}).check(identity)
    assert info.value.code == "uri_not_allowed"
    Policy(uris={presented}).check(identity)
    # The scheme still compares case-insensitively.
    Policy(uris={entry[:3].upper() + entry[3:]}).check(
        _identity(ca, uris=[entry.replace("*", "x")])
    )
