"""Differential conformance of path validation: mtlsauth against ``openssl verify -x509_strict
-purpose sslclient`` and cryptography's plain ``ClientVerifier`` (see ``fuzz/differential.py``).

Every disagreement with mtlsauth must be a row of the table of differences, which
docs/security.md prints; a new one fails. Rows marked pending a fix are strict xfails here, so
the fix shows up as an XPASS. ``make fuzz`` runs the generator with many more examples
(``DIFF_EXAMPLES``).
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fuzz.differential import (  # noqa: E402
    DIFFERENCES,
    MAX_DEPTH,
    SECOND_WAYS,
    Built,
    CASpec,
    Spec,
    build,
    explain,
    judge,
    judge_mtlsauth,
    judge_mtlsauth_warm,
    one_intermediate_specs,
    specs,
    with_second_way,
)

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")

EXAMPLES = int(os.environ.get("DIFF_EXAMPLES", "120"))

# Hand-picked chains, one per axis, judged on every run (the generator adds combinations).
LANDMARKS = {
    "valid": Spec(),
    "cn-only": Spec(san="none"),
    "no leaf AKI": Spec(aki=False),
    "RSA-1024 leaf": Spec(leaf_key="rsa1024"),
    "Ed25519 leaf": Spec(leaf_key="ed25519"),
    "RSA-2048 SHA-512": Spec(leaf_key="rsa2048", sig_hash="sha512"),
    "SHA-1 signature": Spec(sig_hash="sha1"),
    "v1 leaf": Spec(version=1),
    "leaf is a CA": Spec(bc="ca"),
    "no basicConstraints": Spec(bc="absent"),
    "EKU serverAuth": Spec(eku="server"),
    "EKU anyExtendedKeyUsage": Spec(eku="any"),
    "no EKU": Spec(eku="none"),
    "keyUsage keyEncipherment only": Spec(ku="ke"),
    "unknown critical extension": Spec(unknown_critical=True),
    "duplicate EKU": Spec(duplicate="eku"),
    "duplicate SAN": Spec(duplicate="san"),
    "duplicate basicConstraints": Spec(duplicate="bc"),
    "expired by 1 s": Spec(validity="na_past"),
    "valid from 1 s later": Spec(validity="not_yet"),
    "notBefore == now": Spec(validity="nb_edge"),
    "notAfter == now": Spec(validity="na_edge"),
    "pathLen 0 then one more CA": Spec(cas=(CASpec(path_len=0), CASpec())),
    "root pathLen 0 with a CA": Spec(root_path_len=0, cas=(CASpec(),)),
    "CA without keyCertSign": Spec(cas=(CASpec(ku="no_kcs"),)),
    "CA without basicConstraints": Spec(cas=(CASpec(bc="missing"),)),
    "CA with cA=FALSE": Spec(cas=(CASpec(bc="ca_false"),)),
    "CA EKU serverAuth only": Spec(cas=(CASpec(eku="server"),)),
    "expired CA": Spec(cas=(CASpec(expired=True),)),
    "CA with an unknown critical extension": Spec(cas=(CASpec(unknown_critical=True),)),
    "RSA and Ed25519 CAs": Spec(cas=(CASpec(key="rsa2048"), CASpec(key="ed25519"))),
    "DNS constraint, SAN inside": Spec(cas=(CASpec(nc="dns"),)),
    "DNS constraint, SAN outside": Spec(san="dns_out", cas=(CASpec(nc="dns"),)),
    "e-mail constraint, SAN outside": Spec(san="email_out", cas=(CASpec(nc="email"),)),
    "IP constraint, SAN inside": Spec(san="ip_in", cas=(CASpec(nc="ip"),)),
    "IP constraint, SAN outside": Spec(san="ip_out", cas=(CASpec(nc="ip"),)),
    "excluded DNS, SAN inside it": Spec(san="dns_out", cas=(CASpec(nc="excluded_dns"),)),
    "directoryName constraint": Spec(cas=(CASpec(nc="dirname"),)),
    "cross-signed root": Spec(shape="cross", cas=(CASpec(),)),
    "anchor sent along": Spec(shape="send_root", cas=(CASpec(),)),
    "intermediate as anchor": Spec(shape="anchor_inter", cas=(CASpec(), CASpec())),
    "looping CAs": Spec(shape="loop"),
    # Once disagreements, fixed since: each stays here so that it cannot come back.
    "leaf keyUsage with keyCertSign": Spec(ku="ds_kcs"),
    "critical SAN beside a subject": Spec(san_critical=True),
    "empty subject, non-critical SAN": Spec(subject="empty"),
    "e-mail constraint, SAN-less leaf outside": Spec(
        san="none", subject="email_out", cas=(CASpec(nc="email"),)
    ),
    "DNS constraint, SAN-less leaf with CN outside": Spec(
        san="none", subject="cn_out", cas=(CASpec(nc="dns"),)
    ),
    "unknown CA with its own root": Spec(shape="own_root"),
    "self-issued CA (key rollover)": Spec(shape="self_issued", cas=(CASpec(),)),
    f"{MAX_DEPTH} intermediates": Spec(cas=tuple(CASpec() for _ in range(MAX_DEPTH))),
    f"{MAX_DEPTH + 1} intermediates": Spec(cas=tuple(CASpec() for _ in range(MAX_DEPTH + 1))),
}


@pytest.mark.parametrize("spec", list(LANDMARKS.values()), ids=list(LANDMARKS))
def test_landmark_chains_agree_or_differ_as_documented(spec: Spec) -> None:
    verdicts = judge(build(spec))
    assert not explain(spec, verdicts), verdicts


@settings(
    max_examples=EXAMPLES,
    derandomize=True,  # a fixed seed: the same chains on every run
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(spec=specs())
def test_generated_chains_agree_or_differ_as_documented(spec: Spec) -> None:
    verdicts = judge(build(spec))
    assert not explain(spec, verdicts), (spec, verdicts)


# The warm judge's generated runs: a fixed seed, as the cold ones above.
WARM_SETTINGS = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _answer(judge_: Callable[[Built], str], built: Built) -> str:
    try:
        return judge_(built)
    except ValueError as exc:  # an anchor that is not a CA: the Verifier refuses the store
        return f"ValueError: {exc}"


def _under_an_intermediate(spec: Spec) -> Spec:
    return spec if spec.cas else dataclasses.replace(spec, cas=(CASpec(),))


@pytest.mark.parametrize("spec", list(LANDMARKS.values()), ids=list(LANDMARKS))
def test_landmarks_answer_the_same_after_a_valid_sibling(spec: Spec) -> None:
    """A verifier that has validated a path through the same CAs (and so skips validating
    the intermediate again) gives every chain the answer a fresh one gives."""
    built = build(_under_an_intermediate(spec))
    assert _answer(judge_mtlsauth_warm, built) == _answer(judge_mtlsauth, built)


@WARM_SETTINGS
@given(spec=one_intermediate_specs())
def test_generated_chains_answer_the_same_after_a_valid_sibling(spec: Spec) -> None:
    built = build(spec)
    assert _answer(judge_mtlsauth_warm, built) == _answer(judge_mtlsauth, built), spec


@WARM_SETTINGS
@given(spec=one_intermediate_specs(), way=st.sampled_from(SECOND_WAYS))
def test_generated_chains_with_a_second_way_up_answer_the_same_after_a_valid_sibling(
    spec: Spec, way: str
) -> None:
    """The same, with a second way from the leaf to an anchor (``with_second_way``): the
    shortcut may only answer where it takes the path a fresh verifier takes."""
    built = with_second_way(build(spec), way)
    assert _answer(judge_mtlsauth_warm, built) == _answer(judge_mtlsauth, built), (spec, way)


def _row_params() -> list[object]:
    out = []
    for row in DIFFERENCES:
        marks = []
        if row.pending_fix:
            marks.append(
                pytest.mark.xfail(
                    strict=True, raises=AssertionError, reason=f"pending fix: {row.id}"
                )
            )
        out.append(pytest.param(row, id=row.id, marks=marks))
    return out


@pytest.mark.parametrize("row", _row_params())
def test_each_row_is_real(row: object) -> None:
    """A deliberate row's example still disagrees as the row says (no stale rows). A row
    pending a fix asserts the fixed behaviour: mtlsauth agrees with the judges that refuse."""
    from fuzz.differential import Difference

    assert isinstance(row, Difference)
    assert row.example is not None
    verdicts = judge(build(row.example))
    got = verdicts.accepts()
    if row.pending_fix:  # fixed: mtlsauth says what the judges named in the row say
        for i in (1, 2):
            if row.pattern[i] is not None:
                assert got[0] is row.pattern[i], verdicts
        return
    assert row.applies(row.example)
    assert all(p is None or p == g for p, g in zip(row.pattern, got, strict=True)), verdicts


@pytest.mark.parametrize("shape", ["own_root", "loop"])
def test_unknown_ca_is_reported_as_untrusted_issuer(shape: str) -> None:
    assert judge_mtlsauth(build(Spec(shape=shape))) == "untrusted_issuer"


def test_docs_print_every_row() -> None:
    text = (ROOT / "docs" / "security.md").read_text()
    section = re.search(r"^## Differential conformance\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert section, "docs/security.md lacks its Differential conformance section"
    for row in DIFFERENCES:
        assert f"`{row.id}`" in section.group(1), f"row {row.id} missing from docs/security.md"
