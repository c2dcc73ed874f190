"""The report: certificate contents, reproducibility, atomic writes, the PDF's text."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sympy as sp

from derive import pdf, report
from derive.claims import centering
from derive.core import DeriveError

ROOT = Path(__file__).resolve().parents[1]
CATALOG = Path(__file__).resolve().parents[2] / "shared" / "claims.md"
SECTION_A = {
    "centering.naive-gradient": "proved", "centering.full-gradient": "proved",
    "centering.update-cancels": "proved", "centering.drift": "proved",
    "centering.jacobian": "proved", "centering.unnormalized-sum": "refuted",
    "centering.nonlinear": "refuted", "centering.nonlinear-first-order": "proved",
    "centering.affine": "proved",
}
IN_CI = os.environ.get("CI") == "true"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    formats = ("tex", "json", "md") + (("pdf",) if pdf.tex_available() or IN_CI else ())
    results, written, warnings = report.build("centering", out, formats)
    return out, results, written, warnings


@pytest.fixture(scope="module")
def cert(built):
    return json.loads((built[0] / "centering.json").read_text())


def test_catalog_section_a_matches_the_built_in_expectations():
    if not CATALOG.exists():
        pytest.skip("the claims catalog is not beside the checkout")
    text = CATALOG.read_text()
    section = text[text.index("## A."):text.index("## B.")]
    rows = re.findall(r"^\| `([^`]+)` \|.*\| (\*\*refuted\*\*|proved)", section, re.M)
    assert {i: v.strip("*") for i, v in rows} == SECTION_A


def test_certificate_has_every_section_a_claim_with_the_catalog_verdict(cert):
    assert {c["id"]: c["verdict"] for c in cert["claims"]} == SECTION_A


def test_every_proved_claim_has_three_passing_evidence_kinds(cert):
    weak = [c["id"] for c in cert["claims"] if c["verdict"] == "proved"
            and len({e["kind"] for e in c["evidence"] if e["ok"]}) < 3]
    assert weak == []


def test_every_refuted_claim_carries_an_exact_counterexample(cert):
    cexs = {c["id"]: c.get("counterexample") for c in cert["claims"]
            if c["verdict"] == "refuted"}
    assert all(x and x["exact"] and x["residual"] not in ("0", "") for x in cexs.values())


def test_unnormalized_sum_residual_is_one_minus_n_times_delta_b(built):
    from derive.claims.centering import N, db
    result = next(r for r in built[1] if r.id == "centering.unnormalized-sum")
    assert (result.verdict.counterexample.size,
            sp.expand(result.verdict.residual - (1 - N) * db)) == (2, 0)


def test_certificate_statements_are_latex(cert):
    assert all("=" in c["statement"] and c["statement"].strip() for c in cert["claims"])


def test_markdown_names_every_claim(built):
    md = (built[0] / "centering.md").read_text()
    assert all(f"`{cid}`" in md for cid in SECTION_A)


def test_report_is_reproducible_byte_for_byte(built, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "derive", "report", "--out", str(tmp_path),
                           "--format", "tex,json", "--quiet", "--topic", "centering"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    same = [(tmp_path / f).read_bytes() == (built[0] / f).read_bytes()
            for f in ("centering.tex", "centering.json")]
    assert same == [True, True]


def test_failed_write_leaves_no_partial_files(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise DeriveError("PDF not written: LaTeX failed: ! simulated")
    monkeypatch.setattr(pdf, "build_pdf", broken)
    with pytest.raises(DeriveError):
        report.build("centering", tmp_path, ("tex", "json", "pdf"))
    assert list(tmp_path.iterdir()) == []


def test_without_tex_the_tex_and_json_are_written_and_the_fix_is_named(tmp_path,
                                                                        monkeypatch):
    monkeypatch.setattr(pdf, "tex_available", lambda: False)
    _, written, warnings = report.build("centering", tmp_path, ("tex", "json", "pdf"))
    names = sorted(p.name for p in written)
    assert (names, "apt-get install texlive-latex-recommended" in warnings[0]) == \
        (["centering.json", "centering.tex", "centering.timings.json", "fig-drift.pdf"], True)


@pytest.mark.slow
def test_pdf_text_answers_the_four_questions_in_order(built):
    if not (built[0] / "centering.pdf").exists():
        pytest.skip("no TeX engine on this machine (CI installs one)")
    if not shutil.which("pdftotext"):
        pytest.skip("pdftotext missing")
    text = subprocess.run(["pdftotext", str(built[0] / "centering.pdf"), "-"],
                          capture_output=True, text=True, check=True).stdout
    marks = [text.find(f"Question {n}") for n in (1, 2, 3, 4)]
    assert -1 not in marks and marks == sorted(marks)


@pytest.mark.slow
def test_pdf_shows_every_claim_statement_and_verdict(built):
    if not (built[0] / "centering.pdf").exists():
        pytest.skip("no TeX engine on this machine (CI installs one)")
    text = subprocess.run(["pdftotext", str(built[0] / "centering.pdf"), "-"],
                          capture_output=True, text=True, check=True).stdout
    missing = [c.id for c in centering.claims() if c.id not in text or c.title not in text]
    assert (missing, text.count("REFUTED at N = 2") >= 2) == ([], True)
