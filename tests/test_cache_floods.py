"""Memos keyed by what a client chooses: bounded, and a flood cannot evict what is in use."""

from __future__ import annotations

import importlib

import pytest

from mtlsauth import ForwardedCert, MTLSAuthError, Presented
from mtlsauth._cache import BoundedMemo

PROXY = "10.0.0.1"


def _spy(monkeypatch: pytest.MonkeyPatch, module: object, name: str) -> list[object]:
    calls: list[object] = []
    real = getattr(module, name)

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(args[0] if args else None)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counting)
    return calls


def test_bounded_memo_keeps_repeated_keys_through_a_flood_of_new_ones() -> None:
    memo: BoundedMemo[str, int] = BoundedMemo(8)
    for key in ("a", "b"):
        memo.put(key, 1)
        assert memo.get(key) == 1  # asked for again: kept
    for i in range(10_000):  # each seen once
        if memo.get(f"junk{i}") is None:
            memo.put(f"junk{i}", i)
    assert memo.get("a") == 1
    assert memo.get("b") == 1
    assert len(memo) <= 8 + 8
    memo.clear()
    assert memo.get("a") is None


def test_bounded_memo_does_not_keep_a_key_over_its_length_bound() -> None:
    memo: BoundedMemo[bytes, int] = BoundedMemo(4, max_key_len=8)
    memo.put(b"x" * 8, 1)
    memo.put(b"x" * 9, 2)  # a client-chosen key of any size would otherwise stay in memory
    assert memo.get(b"x" * 8) == 1
    assert memo.get(b"x" * 9) is None


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("mtlsauth._identity", "_ISSUERS"),
        ("mtlsauth._identity", "_SUBJECTS"),
        ("mtlsauth._leafder", "_SANS"),
        ("mtlsauth._leafder", "_EKUS"),
        ("mtlsauth._pathvalidation", "_KEYS"),
        ("mtlsauth._verifier", "_PRESENTED"),
    ],
)
def test_memos_keyed_by_request_bytes_bound_their_keys(module: str, name: str) -> None:

    memo = getattr(importlib.import_module(module), name)
    assert isinstance(memo, BoundedMemo)
    assert memo._max_key_len is not None
    assert memo._max_key_len <= 8192


def test_xfcc_parse_memo_survives_a_flood(monkeypatch: pytest.MonkeyPatch) -> None:
    import mtlsauth._forwarded._cert as fwd_module

    calls = _spy(monkeypatch, fwd_module, "select_element")
    fc = ForwardedCert(
        header="X-Forwarded-Client-Cert",
        encoding="xfcc",
        trusted_proxies=[PROXY],
        verified_by_proxy=True,
    )
    legit = "Hash=" + "ab" * 32 + ';Subject="CN=web,O=Acme";URI=spiffe://td/ns/a/sa/web'

    def extract(value: str) -> None:
        fc.extract(Presented(peer=PROXY, headers=(("x-forwarded-client-cert", value),)))

    extract(legit)
    extract(legit)
    for i in range(5000):  # every request a new header value
        extract(f'Hash={i:064x};Subject="CN=junk{i}"')
    before = len(calls)
    extract(legit)
    assert len(calls) == before  # still memoised
    assert len(fc._xfcc_cache) <= 1024


def test_peer_memo_survives_a_flood_of_untrusted_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    import mtlsauth._forwarded._cert as fwd_module

    calls = _spy(monkeypatch, fwd_module, "match_peer")
    fc = ForwardedCert(header="X-Cert", encoding="url-pem", trusted_proxies=["10.0.0.0/24"])
    assert fc.is_trusted(PROXY) is True
    for i in range(20_000):  # e.g. an IPv6 client rotating its source address
        peer = f"2001:db8::{i:x}"
        assert fc.is_trusted(peer) is False
        with pytest.raises(MTLSAuthError):
            fc.extract(Presented(peer=peer, headers=(("x-cert", "MII"),)))
    before = len(calls)
    assert fc.is_trusted(PROXY) is True
    assert len(calls) == before  # the proxy's answer was never evicted
    assert len(fc._peer_cache) + len(fc._untrusted_peers) <= 4096 + 4096


def test_a_chain_variant_served_from_the_leaf_entry_counts_as_cached() -> None:
    from mtlsauth import Verifier
    from mtlsauth._guard import Guard
    from mtlsauth.testing import CA

    ca = CA(organization="Variants")
    cert = ca.issue_client_cert(common_name="svc")
    extra = CA().cert_pem.text()
    guard = Guard(verifier=Verifier(trust_store=ca.trust_store()))

    def decide(*chain: str) -> object:
        return guard.decide(Presented(PROXY, (), chain, None, "/x", "GET"), "mandatory", None)

    first, variant = decide(cert.cert_pem.text()), decide(cert.cert_pem.text(), extra)
    assert (first.cached, variant.cached) == (False, True)  # type: ignore[attr-defined]
    assert variant.code == "ok"  # type: ignore[attr-defined]


def test_xfcc_parse_memo_holds_no_header_over_its_bound() -> None:
    # Keyed by the whole header text (up to max_size, 64 KB by default) and holding the
    # parsed element (substrings of it): 1 024 huge values parked over 100 MB.
    from mtlsauth._forwarded._cert import _XFCC_CACHE_MAX_KEY

    fc = ForwardedCert(header="X-Forwarded-Client-Cert", encoding="xfcc", trusted_proxies=[PROXY])

    def extract(value: str) -> None:
        try:
            fc.extract(Presented(peer=PROXY, headers=(("x-forwarded-client-cert", value),)))
        except MTLSAuthError:
            pass

    for i in range(40):
        huge = f'By=spiffe://td/{i};Subject="CN={"x" * 60_000}"'
        extract(huge)
        extract(huge)  # asked for twice: the protected segment too
    assert len(fc._xfcc_cache) == 0
    typical = "By=spiffe://td/a;Hash=" + "ab" * 32 + ';Cert="' + "A" * 12_000 + '"'
    assert len(typical) <= _XFCC_CACHE_MAX_KEY
    extract(typical)
    assert len(fc._xfcc_cache) == 1  # an Envoy header with a chain is still memoised
