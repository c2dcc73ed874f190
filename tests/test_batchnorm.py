"""The full batch-normalization report: every section-B and section-C id with the catalog's
verdict, enough evidence behind each proof, the epsilon residual, the new pages' text."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

from derive import frameworks, pdf
from derive.claims import batchnorm as bn
from derive.explicit import ExplicitBatch

CATALOG = Path(__file__).resolve().parents[2] / "shared" / "claims.md"
SECTIONS_B_C = {
    "bn.backward.dl-dxhat": "proved", "bn.backward.dl-dvar": "proved",
    "bn.backward.dl-dmu": "proved", "bn.backward.mu-variance-term-vanishes": "proved",
    "bn.backward.dl-dx": "proved", "bn.backward.dl-dgamma": "proved",
    "bn.backward.dl-dbeta": "proved", "bn.backward.compact": "proved",
    "bn.jacobian": "proved", "bn.gradient-sums-to-zero": "proved",
    "bn.gradient-orthogonal-to-xhat": "refuted", "bn.gradient-orthogonal-to-xhat-eps0": "proved",
    "bn.shift-invariance": "proved", "bn.scale-invariance": "refuted",
    "bn.scale-invariance-eps0": "proved", "bn.scale.input-gradient": "proved",
    "bn.scale.weight-gradient": "proved", "bn.inference-affine": "proved",
    "train.weight-orthogonal": "proved", "train.weight-norm-growth": "proved",
    "train.naive-scale-step": "proved",
}
IN_CI = os.environ.get("CI") == "true"


@pytest.fixture(scope="module")
def built(elsewhere):
    # checked once for the whole test run (conftest.Elsewhere), written here
    formats = ("tex", "json") + (("pdf",) if pdf.tex_available() or IN_CI else ())
    return elsewhere.build("batchnorm", formats)


@pytest.fixture(scope="module")
def cert(built):
    return {c["id"]: c for c in json.loads((built[0] / "batchnorm.json").read_text())["claims"]}


def test_catalog_sections_b_and_c_match_the_built_in_expectations():
    if not CATALOG.exists():
        pytest.skip("the claims catalog is not beside the checkout")
    text = CATALOG.read_text()
    section = text[text.index("## B."):text.index("## D.")]
    rows = re.findall(r"^\| `([^`]+)` \|.*\| (\*\*refuted\*\*|proved)", section, re.M)
    assert {i: v.strip("*") for i, v in rows} == SECTIONS_B_C


def test_certificate_has_every_b_and_c_id_with_the_catalog_verdict(cert):
    assert {i: cert[i]["verdict"] for i in SECTIONS_B_C if i in cert} == SECTIONS_B_C


def test_every_claim_gets_its_expected_verdict(built):
    assert {i: r.verdict.status for i, r in built[1].items()} == \
        {c.id: c.expected for c in bn.claims()}


def test_every_proved_claim_has_three_passing_evidence_kinds(cert):
    weak = [i for i, c in cert.items() if c["verdict"] == "proved"
            and len({e["kind"] for e in c["evidence"] if e["ok"]}) < 3]
    assert weak == []


@pytest.mark.parametrize("framework", frameworks.FRAMEWORKS)
def test_every_proved_gradient_claim_carries_passing_framework_evidence(cert, built, framework):
    pytest.importorskip(framework, reason=f"{framework} is not installed: "
                                          f"{frameworks.INSTALL[framework]}")
    gradient = [r.id for r in built[1].values() if frameworks.applies(r.claim)]
    assert len(gradient) >= 15
    for cid in gradient:
        found = [e for e in cert[cid]["evidence"] if e["kind"] == framework]
        assert len(found) == 1, cid
        e = found[0]
        assert e["ok"], (cid, e["summary"])
        assert e["dtype"] == "float64"
        if cert[cid]["verdict"] == "proved":
            assert e["instances"] >= 20 and e["max_error_below"] <= e["tolerance"]
        else:   # refuted before: the framework's first failure is enough, reported as drawn
            assert e["instances"] >= 1 and e["failure"]["error"] > e["tolerance"]
            assert "(as drawn)" in e["summary"]
    compact = next(e for e in cert["bn.backward.compact"]["evidence"] if e["kind"] == framework)
    assert compact["operator"]["instances"] >= 20
    if framework == "torch":
        assert compact["gradcheck"]["passed"] and compact["gradcheck"]["runs"] >= 8


def test_the_opening_shows_the_implementation_checked_in_float32_and_float64(built):
    tex = (built[0] / "batchnorm.tex").read_text()
    opening = tex[:tex.index(r"\label{claim:")]
    assert "def bn_backward(dy, xhat, r, gamma, axes=(0,)):" in opening   # the code it runs
    if frameworks.backend("torch") is None:
        assert "needs PyTorch" in opening
        return
    check = next(e.details["implementation"] for e in built[1]["bn.backward.compact"].evidence
                 if "implementation" in e.details)
    assert check["passed"] and [r["dtype"] for r in check["rows"]] == ["float32", "float64"]
    assert all(r["max_error_below"] <= r["tolerance"] for r in check["rows"])
    assert r"float32 & torch" in opening.replace(r"\_", "_")


def test_every_gradient_claim_lists_each_installed_framework_in_its_evidence_table(built):
    tex = (built[0] / "batchnorm.tex").read_text()
    appendix = tex[tex.index(r"\appendix"):]
    installed = [f for f in frameworks.FRAMEWORKS if frameworks.backend(f) is not None]
    if not installed:
        pytest.skip("neither torch nor jax is installed")
    for f in installed:
        assert rf"{f} & 30 Hypothesis instances" in appendix
        assert f"{f} {frameworks.backend(f).version}" in appendix.replace(r"\_", "_")


def test_refuted_claims_carry_an_exact_counterexample(built):
    from derive import recheck
    for r in built[1].values():
        if r.verdict.status == "refuted":
            cex = r.verdict.counterexample
            # the printed values, substituted into the statement independently of the search
            again = recheck.confirm_values(r.claim, cex.size, cex.values, cex.part,
                                           cex.functions)
            assert again.confirmed is True, (r.id, cex.values, again.reason)


def test_orthogonality_residual_is_gamma_eps_sum_over_s_cubed(built):
    """The catalog's residual gamma * eps * sum_j g_j xhat_j / s^3, at explicit points."""
    residual = built[1]["bn.gradient-orthogonal-to-xhat"].verdict.residual
    expected = bn.gamma * bn.eps * bn.total(bn.g[bn.i] * bn.xhat) / bn.s ** 3
    rng = np.random.default_rng(1)
    for size in (2, 3, 5):
        batch = ExplicitBatch(size, bn.m)
        diff = batch.eval(residual, {}) - batch.eval(expected, {})
        for _ in range(3):
            numbers = {s: sp.Rational(int(rng.integers(-9, 10)), int(rng.integers(1, 4)))
                       for s in batch.samples().values()}
            numbers[bn.gamma] = sp.Rational(3, 2)
            numbers[bn.eps] = sp.Rational(1, 3)
            numbers[bn.m] = size
            assert sp.simplify(batch.substitute(diff, numbers)) == 0


def test_explicit_layer_reaches_the_stated_sizes(cert):
    reached = {i: max(e.get("holds_at", [0]) or [0]) for i, c in cert.items()
               for e in c["evidence"] if e["kind"] == "explicit"}
    capped = {c.id: c.explicit_up_to for c in bn.claims() if c.explicit_up_to}
    short = [i for i, top in reached.items()
             if cert[i]["verdict"] == "proved" and top < capped.get(i, 8)]
    assert short == []


def test_pdf_pages_continue_the_story(built):
    out = built[0]
    if not (out / "batchnorm.pdf").exists():
        pytest.skip("no TeX engine here")
    text = subprocess.run(["pdftotext", str(out / "batchnorm.pdf"), "-"], capture_output=True,
                          text=True).stdout
    for phrase in ("From centering to normalization", "The backward pass, equation by equation",
                   "Consequences for training", "bn.backward.compact"):
        assert phrase in text
