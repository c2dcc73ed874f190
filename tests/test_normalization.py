"""The normalization report: every section-E and section-F id with the catalog's verdict, the
frameworks' own operators behind every claim that names one, the verdict table first, the
double backward checked by gradgradcheck, and the refuted slips rejected everywhere."""

from __future__ import annotations

import json
import os
import re

import pytest

from derive import frameworks, pdf, recheck
from derive.claims import normalization
from derive.render.common import cell_verdict

from test_verdicts import CATALOG_VERDICTS, PROJECT_VERDICTS

IN_CI = os.environ.get("CI") == "true"
SECTIONS_E_F = {i: v for i, v in CATALOG_VERDICTS.items()
                if i.startswith("family.") or i.startswith(("bn.double-backward", "bn.hessian"))}


@pytest.fixture(scope="module")
def built(elsewhere):
    # checked once for the whole test run (conftest.Elsewhere), written here
    formats = ("tex", "json", "md") + (("pdf",) if pdf.tex_available() or IN_CI else ())
    return elsewhere.build("normalization", formats)


@pytest.fixture(scope="module")
def cert(built):
    data = json.loads((built[0] / "normalization.json").read_text())
    return {c["id"]: c for c in data["claims"]}


def test_sections_e_and_f_are_all_there():
    assert len(SECTIONS_E_F) == 44
    ids = {c.id for c in normalization.claims()}
    assert set(SECTIONS_E_F) <= ids
    assert ids - set(SECTIONS_E_F) <= set(PROJECT_VERDICTS)


def test_every_e_and_f_id_is_certified_with_the_catalog_verdict(cert):
    assert {i: cert[i]["verdict"] for i in SECTIONS_E_F} == SECTIONS_E_F


def test_every_claim_gets_its_expected_verdict(built):
    assert {i: r.verdict.status for i, r in built[1].items()} == \
        {c.id: c.expected for c in normalization.claims()}


def test_at_least_fifteen_slips_are_refuted(built):
    slips = [r for i, r in built[1].items() if i.startswith("family.mutant.")]
    assert len(slips) >= 15 and all(r.verdict.status == "refuted" for r in slips)


def test_every_proved_claim_has_three_passing_evidence_kinds(cert):
    weak = [i for i, c in cert.items() if c["verdict"] == "proved"
            and len({e["kind"] for e in c["evidence"] if e["ok"]}) < 3]
    assert weak == []


@pytest.mark.parametrize("framework", frameworks.FRAMEWORKS)
def test_every_claim_with_an_operator_is_checked_by_the_framework_operator(cert, built,
                                                                        framework):
    pytest.importorskip(framework, reason=f"{framework} is not installed: "
                                          f"{frameworks.INSTALL[framework]}")
    named = [r.id for r in built[1].values() if r.claim.operator is not None]
    assert len(named) >= 60
    for cid in named:
        found = [e for e in cert[cid]["evidence"] if e["kind"] == framework]
        assert len(found) == 1, cid
        e = found[0]
        assert e["ok"], (cid, e["summary"])        # agrees with the verdict, either way
        if cert[cid]["verdict"] == "proved":
            if e["operator"]["instances"] == 0:
                # only torch's batch_norm refuses a claim at epsilon = 0 outright, and says so
                assert (framework, built[1][cid].claim.operator) == ("torch", "batch_norm"), cid
                assert "refuses the other" in e["summary"], cid
                continue
            assert e["operator"]["vs_formula"]["instances"] >= 1, cid
        else:
            assert e["failure"]["error"] > e["tolerance"], cid


def test_the_operators_are_the_frameworks_own(cert):
    pytest.importorskip("torch")
    summaries = " ".join(e["summary"] for c in cert.values() for e in c["evidence"]
                         if e["kind"] == "torch")
    for op in ("layer_norm", "group_norm", "instance_norm", "rms_norm", "batch_norm"):
        assert f"torch.nn.functional.{op}" in summaries, op


def test_gradgradcheck_passes_on_the_verified_double_backward(cert):
    pytest.importorskip("torch")
    torch_layer = next(e for e in cert["bn.double-backward.input"]["evidence"]
                       if e["kind"] == "torch")
    assert torch_layer["gradgradcheck"]["passed"] is True
    assert torch_layer["gradgradcheck"]["runs"] >= 8


def test_refuted_claims_carry_an_exact_counterexample(built):
    for r in built[1].values():
        if r.verdict.status == "refuted":
            cex = r.verdict.counterexample
            again = recheck.confirm(r.claim, cex)
            assert again.confirmed is True, (r.id, cex.values, again.reason)


def test_the_table_comes_first_and_is_read_off_the_verdicts(built):
    tex = (built[0] / "normalization.tex").read_text()
    body = tex[tex.index(r"\begin{document}"):]
    table = body.index(r"\begin{tabular}")
    assert table < body.index(r"\begin{claimenv}") and table < body.index("Claim~")
    assert body.index(r"\section{") < table
    rows = body[table:body.index(r"\end{tabular}")]
    by_id = built[1]
    for head, cells in normalization.table().rows:
        line = next(ln for ln in rows.splitlines() if ln.startswith(head + " &"))
        for cell in cells:
            if cell:
                assert rf"\hyperref[claim:{cell_verdict(cell, by_id)[2]}]" in line, head
    # the practitioner's answers: LN keeps a per-feature bias, RMSNorm keeps a shift
    assert cell_verdict(normalization._cell("ln", "channel-bias"), by_id)[0] == "fails"
    assert cell_verdict(normalization._cell("rms", "shift"), by_id)[0] == "fails"
    assert cell_verdict(normalization._cell("bn", "channel-bias"), by_id)[0] == "holds"
    assert cell_verdict(normalization._cell("ln", "sample-scale"), by_id)[0] == "conditional"
    md = (built[0] / "normalization.md").read_text()
    assert re.search(r"^\| LayerNorm \| \[✗\]\(#family\.ln\.channel-bias\) \| "
                     r"\[✓\]\(#family\.ln\.sample-bias\) \|", md, re.M)
    assert '<a id="family.ln.channel-bias"></a>' in md


def test_the_pdf_is_written_where_tex_is_available(built):
    if not (pdf.tex_available() or IN_CI):
        pytest.skip("no TeX engine here")
    assert (built[0] / "normalization.pdf").read_bytes()[:5] == b"%PDF-"
    assert built[2] == []


def readme_table(certificate: dict) -> str:
    """The verdict table as the README shows it, read off a certificate's verdicts: the
    report's Markdown table without the links into the report, with short headers."""
    from types import SimpleNamespace

    from derive.render.markdown import verdict_table_md

    by_id = {c["id"]: SimpleNamespace(verdict=SimpleNamespace(status=c["verdict"]))
             for c in certificate["claims"]}
    lines = verdict_table_md(normalization.table(), by_id)
    rows = [ln for ln in lines if ln.startswith("|")]
    rows[0] = rows[0].replace("a bias added: ", "bias ").replace(
        r"a scale $> 0$ multiplied: ", "scale ")
    return "\n".join(re.sub(r"\[([^]]*)\]\(#[^)]*\)", r"\1", row) for row in rows)


def test_the_readme_shows_the_table_of_the_committed_certificate():
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    certificate = json.loads((root / "reports" / "normalization.json").read_text())
    assert readme_table(certificate) in (root / "README.md").read_text()
