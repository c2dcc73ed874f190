"""`derive check FILE.py`: the examples through the command line, bad files, time budgets."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def check(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "derive", "check", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd or ROOT, timeout=600)


def verdicts(stdout: str) -> dict:
    return {ln.split()[1]: ln.split()[0] for ln in stdout.splitlines()
            if ln.split() and ln.split()[0] in ("PROVED", "REFUTED", "UNDECIDED")}


@pytest.mark.slow
def test_layernorm_backward_example_is_proved_and_exits_zero():
    proc = check(EXAMPLES / "layernorm_backward.py")
    assert (proc.returncode, verdicts(proc.stdout)) == (0, {"layernorm.backward": "PROVED"})


def test_rmsnorm_example_refutes_shift_proves_scale_and_exits_one():
    proc = check(EXAMPLES / "rmsnorm_shift.py")
    assert (proc.returncode, verdicts(proc.stdout)) == (1, {
        "rmsnorm.shift-invariance": "REFUTED", "rmsnorm.scale-invariance-eps0": "PROVED"})


def test_rmsnorm_shift_counterexample_is_a_single_sample():
    proc = check(EXAMPLES / "rmsnorm_shift.py")
    assert "counterexample: m = 1:" in proc.stdout


@pytest.mark.slow
def test_wrong_backward_formula_is_refuted_with_a_two_sample_counterexample():
    proc = check(EXAMPLES / "wrong_batchnorm_backward.py")
    lines = proc.stdout.splitlines()
    assert (proc.returncode, lines[0].split()[0], "counterexample: m = 2:" in lines[1]) == \
        (1, "REFUTED", True)


# the command line with a clock that advances by a second each time it is read: a budget of
# 0.05 s has run out at its first reading, on every machine however fast
TICKING_CLI = ("import itertools, sys\n"
               "from derive import deadline\n"
               "from derive.cli import main\n"
               "readings = itertools.count()\n"
               "deadline.clock = lambda: float(next(readings))\n"
               "sys.exit(main(sys.argv[1:]))\n")


def test_a_tiny_time_budget_gives_undecided_not_a_hang():
    proc = subprocess.run([sys.executable, "-c", TICKING_CLI, "check", "--timeout", "0.05",
                           str(EXAMPLES / "layernorm_backward.py")],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert (proc.returncode, verdicts(proc.stdout)) == (1, {"layernorm.backward": "UNDECIDED"})
    assert "time budget" in proc.stdout, proc.stdout


def test_report_option_writes_the_files_claims_as_a_certificate(tmp_path):
    proc = check(EXAMPLES / "rmsnorm_shift.py", "--report", tmp_path, "--format", "tex,json")
    cert = json.loads((tmp_path / "rmsnorm-shift.json").read_text())
    assert (proc.returncode, {c["id"]: c["verdict"] for c in cert["claims"]}) == (1, {
        "rmsnorm.shift-invariance": "refuted", "rmsnorm.scale-invariance-eps0": "proved"})


BAD_FILES = [
    ("missing.py", None, "no such file"),
    ("syntax.py", "x = (\n", "syntax error"),
    ("empty.py", "a = 1\n", "no claims found"),
    ("boom.py", "raise RuntimeError('boom')\n", "RuntimeError while running it: boom"),
    ("notes.txt", "hello\n", "not a Python file"),
]


@pytest.mark.parametrize("name,content,message", BAD_FILES)
def test_bad_file_gets_one_line_and_exit_2(tmp_path, name, content, message):
    if content is not None:
        (tmp_path / name).write_text(content)
    proc = check(tmp_path / name)
    assert (proc.returncode, proc.stderr.count("\n"), message in proc.stderr,
            "Traceback" in proc.stderr) == (2, 1, True, False)


@pytest.mark.parametrize("value", ["abc", "-1", "0", "__import__('os').getcwd()"])
def test_timeout_must_be_a_positive_number_and_is_never_evaluated(value):
    proc = check("--timeout", value, EXAMPLES / "rmsnorm_shift.py")
    assert (proc.returncode, "--timeout" in proc.stderr) == (2, True)


def test_only_the_named_file_runs(tmp_path):
    marker = tmp_path / "ran"
    (tmp_path / "other.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    (tmp_path / "mine.py").write_text(
        "from derive import Batch, Claim, Equation\n"
        "B = Batch('N'); u = B.samples('u'); i = B.index('i')\n"
        "c = Claim('mine.mean', 'mean of a centred batch', B,\n"
        "          (Equation(B.mean(B.center(u[i], i), i), 0),))\n")
    proc = check(tmp_path / "mine.py")
    assert (proc.returncode, marker.exists()) == (0, False)


def test_duplicate_claim_ids_across_files_are_a_usage_error(tmp_path):
    body = ("from derive import Batch, Claim, Equation\n"
            "B = Batch('N'); u = B.samples('u'); i = B.index('i')\n"
            "c = Claim('same.id', 'zero', B, (Equation(B.mean(B.center(u[i], i), i), 0),))\n")
    (tmp_path / "a.py").write_text(body)
    (tmp_path / "b.py").write_text(body)
    proc = check(tmp_path / "a.py", tmp_path / "b.py")
    assert (proc.returncode, "already used" in proc.stderr) == (2, True)


def layers(stdout: str, claim_id: str) -> dict:
    """{layer: "ok" | "no"} of one claim's line."""
    line = next(ln for ln in stdout.splitlines() if ln.split()[1:2] == [claim_id])
    words = line.split()
    return {w: words[n + 1] for n, w in enumerate(words[:-1])
            if w in ("symbolic", "explicit", "numeric", "torch", "jax", "counterexample")}


def test_two_axis_example_bias_before_batch_norm_proved_before_layer_norm_refuted():
    proc = check(EXAMPLES / "bias_before_normalization.py")
    assert verdicts(proc.stdout) == {"axes.bias-before-batchnorm": "PROVED",
                                     "axes.bias-before-layernorm": "REFUTED"}, proc.stderr
    proved = layers(proc.stdout, "axes.bias-before-batchnorm")
    assert {proved.get(k) for k in ("symbolic", "explicit", "numeric")} == {"ok"}
    assert "counterexample: N = " in proc.stdout and ", C = " in proc.stdout
    # the refuted claim's residual runs to pages: the terminal gets its size, not the pages
    assert max(len(line) for line in proc.stdout.splitlines()) < 600


def test_second_derivative_example_proved_and_held_version_refuted():
    proc = check(EXAMPLES / "second_derivative.py")
    assert verdicts(proc.stdout) == {"second.bias-curvature": "PROVED",
                                     "second.bias-curvature-held": "REFUTED"}, proc.stderr
    proved = layers(proc.stdout, "second.bias-curvature")
    assert {proved.get(k) for k in ("symbolic", "explicit", "numeric")} == {"ok"}


@pytest.mark.skipif(shutil.which("latexmk") is None, reason="no TeX engine")
def test_reports_of_the_axes_and_second_derivative_examples_build_as_pdf(tmp_path):
    # a claim with no assumptions and a tensor counterexample (a matrix) typeset cleanly
    # (checked as the tests above check them: their results are in the run's cache)
    proc = check(EXAMPLES / "second_derivative.py", EXAMPLES / "bias_before_normalization.py",
                 "--report", tmp_path, "--format", "tex,pdf")
    assert proc.returncode == 1 and "error" not in proc.stderr, proc.stderr
    assert {p.name for p in tmp_path.glob("*.pdf")} == {
        "second-derivative.pdf", "bias-before-normalization.pdf"}
    assert r"\begin{pmatrix}" in (tmp_path / "bias-before-normalization.tex").read_text()


def test_a_residual_that_runs_to_pages_is_summarized_on_the_terminal():
    import sympy as sp

    from derive import Batch, Claim, Counterexample, Equation, Result, Verdict
    from derive.cli import LONG_RESIDUAL, _claim_lines
    B = Batch("N")
    b = B.param("b")
    claim = Claim("long", "long", B, (Equation(b, 0),))
    cex = Counterexample(1, {"b": 1}, sp.Integer(1), sp.Integer(0))
    for residual, summarized in ((b + 1, False), (sum(b ** k / (k + 1) for k in range(90)), True)):
        lines = _claim_lines(Result(claim, Verdict.refuted(cex, residual), [], []))
        last = lines[-1]
        assert last.startswith("    residual for every N: ")
        assert ("an expression of" in last) == summarized
        assert len(last) < LONG_RESIDUAL + 100
