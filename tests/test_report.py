"""The report: certificate contents, reproducibility, atomic writes, the PDF's text."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import sympy as sp

from derive import pdf, report
from derive.claims import centering
from derive.core import DeriveError

from conftest import write_centering

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
def built(tmp_path_factory, centering_results):
    out = tmp_path_factory.mktemp("report")
    formats = ("tex", "json", "md") + (("pdf",) if pdf.tex_available() or IN_CI else ())
    written, warnings = write_centering(centering_results, out, formats)
    return out, centering_results, written, warnings


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


RAW_SYMPY = ("**", "Sum(", "Mean(", "BatchSum(", "Held(", "Grad(", "sqrt(", "Indexed",
             "KroneckerDelta", "Derivative(", "Dummy", "_Dummy")


def _braces_balance(s: str) -> bool:
    depth = 0
    for ch in s.replace(r"\{", "").replace(r"\}", ""):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


def test_certificate_statements_are_latex(cert):
    for c in cert["claims"]:
        st = c["statement"]
        assert " = " in st and re.search(r"\\[A-Za-z]+", st), (c["id"], st)  # \frac, \sum ...
        assert not [r for r in RAW_SYMPY if r in st], (c["id"], st)   # no SymPy text
        assert _braces_balance(st) and st.count(r"\left") == st.count(r"\right"), (c["id"], st)


def test_markdown_names_every_claim(built):
    md = (built[0] / "centering.md").read_text()
    assert all(f"`{cid}`" in md for cid in SECTION_A)


def test_report_is_reproducible_byte_for_byte(built, elsewhere):
    # the same report, checked and written in another process computing like another machine
    same = [(elsewhere.out / f).read_bytes() == (built[0] / f).read_bytes()
            for f in ("centering.tex", "centering.json")]
    assert same == [True, True]


def test_failed_write_leaves_no_partial_files(tmp_path, monkeypatch, centering_results):
    def broken(*args, **kwargs):
        raise DeriveError("PDF not written: LaTeX failed: ! simulated")
    monkeypatch.setattr(pdf, "build_pdf", broken)
    with pytest.raises(DeriveError):
        write_centering(centering_results, tmp_path, ("tex", "json", "pdf"))
    assert list(tmp_path.iterdir()) == []


def test_without_tex_the_tex_and_json_are_written_and_the_fix_is_named(tmp_path, monkeypatch,
                                                                        centering_results):
    monkeypatch.setattr(pdf, "tex_available", lambda: False)
    written, warnings = write_centering(centering_results, tmp_path, ("tex", "json", "pdf"))
    names = sorted(p.name for p in written)
    assert (names, "apt-get install texlive-latex-recommended" in warnings[0]) == \
        (["centering.json", "centering.tex", "centering.timings.json", "fig-drift.pdf"], True)


@pytest.mark.slow
def test_the_first_two_pages_answer_the_four_questions_in_order_citing_their_claims(built):
    if not (built[0] / "centering.pdf").exists():
        pytest.skip("no TeX engine on this machine (CI installs one)")
    if not shutil.which("pdftotext"):
        pytest.skip("pdftotext missing")
    text = subprocess.run(["pdftotext", "-l", "2", str(built[0] / "centering.pdf"), "-"],
                          capture_output=True, text=True, check=True).stdout
    text = " ".join(text.split()).replace("- ", "-")   # an id may break after its hyphen
    marks = [text.find(q) for q in ("1. What are u, x, b", "2. Why", "3. What does the displayed",
                                    "4. What does a nonlinearity change")]
    assert -1 not in marks and marks == sorted(marks)
    # each answer cites the claims that settle it, by verdict, before the next answer begins
    cited = {2: ("centering.naive-gradient", "centering.full-gradient"),
             3: ("centering.update-cancels", "centering.drift"),
             4: ("centering.nonlinear", "centering.affine")}
    ends = marks[1:] + [len(text)]
    for n, ids in cited.items():
        answer = text[marks[n - 1]:ends[n - 1]]
        assert all(i in answer for i in ids), (n, ids)
    assert "Figure 1" in text   # the drift figure sits beside the answers


@pytest.mark.slow
def test_pdf_shows_every_claim_statement_and_verdict(built):
    if not (built[0] / "centering.pdf").exists():
        pytest.skip("no TeX engine on this machine (CI installs one)")
    text = subprocess.run(["pdftotext", str(built[0] / "centering.pdf"), "-"],
                          capture_output=True, text=True, check=True).stdout
    missing = [c.id for c in centering.claims() if c.id not in text or c.title not in text]
    assert (missing, text.count("REFUTED at N = 2") >= 2) == ([], True)


def test_the_markdown_page_embeds_each_figure_as_a_png_written_beside_it(built):
    out = built[0]
    page = (out / "centering.md").read_text()
    assert "](fig-drift.png)" in page
    assert (out / "fig-drift.png").read_bytes().startswith(b"\x89PNG")
