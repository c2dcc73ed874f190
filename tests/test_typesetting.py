"""The committed reports pass a typesetting check, as a reader would hold them to it.

Each report is compiled from its committed .tex with pdflatex, and its log and text are read:
no line sticks out of the margin by more than 1 pt, no formula of the main text is shrunk
(``\\fit`` logs each one it scales), no page carries only a line or two of text, and no table
holds raw ASCII mathematics (``*``, ``**``, ``sqrt(``, ``b0``) where LaTeX belongs.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REPORTS = ROOT / "reports"
STEMS = ("centering", "batchnorm")
MIN_LINES = 6   # of text on every page but the last

pytestmark = pytest.mark.skipif(shutil.which("pdflatex") is None or
                                shutil.which("pdftotext") is None,
                                reason="no pdflatex/pdftotext: the PDF cannot be built here")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """{stem: (log text, [text of each page])}, each report compiled twice (references)."""
    out = {}
    for stem in STEMS:
        work = tmp_path_factory.mktemp(stem)
        shutil.copy(REPORTS / f"{stem}.tex", work)
        for fig in REPORTS.glob("fig-*.pdf"):
            shutil.copy(fig, work)
        for _ in range(2):
            proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error",
                                   "-no-shell-escape", f"{stem}.tex"], cwd=work,
                                  capture_output=True, text=True, errors="replace",
                                  stdin=subprocess.DEVNULL)
            assert proc.returncode == 0, proc.stdout[-1500:]
        text = subprocess.run(["pdftotext", "-layout", f"{stem}.pdf", "-"], cwd=work,
                              capture_output=True, text=True).stdout
        out[stem] = ((work / f"{stem}.log").read_text(errors="replace"),
                     text.split("\f")[:-1] if text.endswith("\f") else text.split("\f"))
    return out


def overfull(log: str, limit: float = 1.0) -> list[str]:
    return [m.group(0) for m in re.finditer(r"Overfull \\hbox \(([\d.]+)pt too wide\)[^\n]*",
                                            log) if float(m.group(1)) > limit]


@pytest.mark.slow
@pytest.mark.parametrize("stem", STEMS)
def test_no_line_sticks_out_of_the_margin(built, stem):
    assert overfull(built[stem][0]) == []


def scaled_lines(log: str) -> list[int]:
    return [int(n) for n in re.findall(r"derive: scaled formula on line (\d+)", log)]


@pytest.mark.slow
@pytest.mark.parametrize("stem", STEMS)
def test_no_formula_of_the_main_text_is_shrunk_below_the_body_size(built, stem):
    # the answers, the claims and their counterexamples; the appendix of derivations still
    # shrinks a line that cannot break after a whole term (a long fraction or product)
    lines = (REPORTS / f"{stem}.tex").read_text().splitlines()
    appendix = lines.index("\\appendix") + 1
    assert [n for n in scaled_lines(built[stem][0]) if n < appendix] == []


@pytest.mark.slow
@pytest.mark.parametrize("stem", STEMS)
def test_every_page_but_the_last_carries_real_text(built, stem):
    pages = built[stem][1]
    sparse = [n for n, page in enumerate(pages[:-1], 1)
              if len([ln for ln in page.splitlines() if ln.strip()]) < MIN_LINES]
    assert sparse == []


# raw ASCII mathematics: what a plain-text printer writes and LaTeX never should
RAW_MATH = re.compile(r"\*|sqrt\(|\bb0\b|Σ_|\\textasciicircum|[A-Za-z]\\_[A-Za-z]\[")


def table_cells(tex: str) -> list[str]:
    """The text of every table cell, with math, \\texttt and verbatim left out."""
    cells = []
    for body in re.findall(r"\\begin\{(?:tabular|longtable)\}(.*?)\\end\{(?:tabular|longtable)\}",
                           tex, re.S):
        body = re.sub(r"\$[^$]*\$", "", body)
        body = re.sub(r"\\texttt\{[^{}]*\}", "", body)
        rows = re.split(r"\\\\\*?", body)   # \\ ends a row; \\* one that keeps with the next
        cells += [c.strip() for row in rows for c in row.split("&")]
    return cells


@pytest.mark.parametrize("stem", STEMS)
def test_tables_hold_no_raw_ascii_mathematics(stem):
    tex = (REPORTS / f"{stem}.tex").read_text()
    assert [c for c in table_cells(tex) if RAW_MATH.search(c)] == []


def test_the_checks_can_fail():
    # each check must see what it looks for: a fabricated log and table trip every one
    log = "Overfull \\hbox (3.5pt too wide) in paragraph\nderive: scaled formula on line 9\n"
    assert overfull(log) and scaled_lines(log) == [9]
    assert overfull("Overfull \\hbox (0.5pt too wide)") == []
    cells = table_cells(r"\begin{tabular}{ll} a & residual -Δb*(N - 1) \\ b0 - tηG & $x*y$"
                        r"\end{tabular}")
    assert [c for c in cells if RAW_MATH.search(c)] == ["residual -Δb*(N - 1)", "b0 - tηG"]
