"""``derive simulate`` as a newcomer meets it: a table, figures on request, clear refusals."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from derive import figures, pdf

from conftest import cli_status, write_centering

ROOT = Path(__file__).resolve().parents[1]


def run(*args):
    return subprocess.run([sys.executable, "-m", "derive", "simulate", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=300, check=False)


def test_default_run_prints_one_row_per_run_all_on_their_closed_forms():
    proc = run("--steps", "300")
    rows = [ln for ln in proc.stdout.splitlines()[1:] if ln.startswith(("centering", "scale"))]
    assert proc.returncode == 0 and len(rows) == 5 and all(" on it" in r for r in rows)


def test_summary_names_the_closed_form_and_the_tolerance():
    proc = run("--regime", "centering-held", "--steps", "50")
    assert "b_t = b_0 - t eta G" in proc.stdout and "tolerance 1e-09" in proc.stdout


def test_a_positive_c_run_reports_its_crossing():
    proc = run("--regime", "scale-held", "--steps", "200")
    assert "crosses 0 at step" in proc.stdout


def test_out_writes_a_pdf_and_a_png_per_run(tmp_path):
    proc = run("--regime", "scale-held", "--steps", "100", "--out", str(tmp_path))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert proc.returncode == 0 and names == [
        "simulate-scale-held-C-gt-0.pdf", "simulate-scale-held-C-gt-0.png",
        "simulate-scale-held-C-lt-0.pdf", "simulate-scale-held-C-lt-0.png"]


def test_long_runs_draw_a_progress_bar_on_stderr():
    proc = run("--regime", "centering-through", "--steps", "100000", "--batch", "4")
    assert proc.returncode == 0 and "100%" in proc.stderr and "100%" not in proc.stdout


def test_quiet_draws_no_progress_bar():
    proc = run("--regime", "centering-through", "--steps", "100000", "--batch", "4",
               "--quiet")
    assert proc.stderr == ""


BAD = [
    (("--steps", "-5"), "steps must be"),
    (("--steps", "0"), "steps must be"),
    (("--steps", "ten"), "not a whole number"),
    (("--batch", "0"), "batch size must be at least 2"),
    (("--batch", "1"), "batch size must be at least 2"),
    (("--lr", "abc"), "not a number"),
    (("--lr", "-0.1"), "positive number"),
    (("--lr", "inf"), "positive number"),
    (("--lr", "nan"), "positive number"),
    (("--seed", "-1"), "seed must be"),
    (("--regime", "sideways"), "invalid choice"),
]


@pytest.mark.parametrize("args,message", BAD)
def test_bad_values_get_one_line_and_exit_2(args, message, capsys):
    # in this process; in a process of its own: test_out_that_is_a_file_is_refused
    code = cli_status(["simulate", *args])
    out, err = capsys.readouterr()
    assert (code, err.count("\n"), message in err, "Traceback" in err, out) == \
        (2, 1, True, False, ""), err


def test_out_that_is_a_file_is_refused(tmp_path):
    target = tmp_path / "a-file"
    target.write_text("keep")
    proc = run("--out", str(target))
    assert (proc.returncode, target.read_text()) == (2, "keep")


@pytest.mark.slow
def test_report_writes_its_figure_beside_the_tex_and_shows_it_with_the_answers(
        tmp_path, centering_results):
    formats = ("tex",) + (("pdf",) if pdf.tex_available() else ())
    write_centering(centering_results, tmp_path, formats)
    tex = (tmp_path / "centering.tex").read_text()
    # the drift figure sits with the answer that cites it, before the claims begin
    answer, figure = tex.index("What does the displayed equation compute"), \
        tex.index(r"\includegraphics{fig-drift.pdf}")
    first_claim = tex.index(r"\label{claim:")
    written = (tmp_path / "fig-drift.pdf").read_bytes()
    again = figures.render(lambda: figures.report_figure("fig-drift"), "pdf")
    assert answer < figure < first_claim and written == again


def test_the_parser_knows_the_simulation_s_regimes_and_bounds():
    from derive import cli, simulation
    assert (cli.REGIMES, cli.MAX_STEPS) == (simulation.REGIMES, simulation.MAX_STEPS)
