"""The command line as a newcomer meets it: help, bad input, exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "derive", *args], capture_output=True,
                          text=True, cwd=cwd or ROOT, timeout=300)


@pytest.mark.parametrize("args", [(), ("report",), ("list",)])
def test_help_exits_zero_and_names_the_commands(args):
    proc = run(*args, "--help")
    assert proc.returncode == 0 and "usage:" in proc.stdout


def test_version_is_printed():
    assert run("--version").stdout.startswith("derive ")


BAD = [
    ((), "required"),
    (("frob",), "invalid choice"),
    (("report", "--bogus"), "unrecognized arguments"),
    (("report", "--format", "tex,docx"), "unknown format 'docx'"),
    (("report", "--format", ""), "unknown format"),
    (("list", "--nope"), "unrecognized arguments"),
]


@pytest.mark.parametrize("args,message", BAD)
def test_bad_input_gets_one_line_and_exit_2(args, message):
    proc = run(*args)
    assert (proc.returncode, proc.stderr.count("\n"), message in proc.stderr,
            "Traceback" in proc.stderr) == (2, 1, True, False)


def test_out_that_is_a_file_is_refused_with_one_line(tmp_path):
    target = tmp_path / "a-file"
    target.write_text("keep me")
    proc = run("report", "--out", str(target))
    assert (proc.returncode, proc.stderr.count("\n"), target.read_text()) == (2, 1, "keep me")


def test_out_below_a_file_is_refused_without_writing(tmp_path):
    target = tmp_path / "a-file"
    target.write_text("")
    proc = run("report", "--out", str(target / "sub"))
    assert proc.returncode == 2 and "cannot create" in proc.stderr


def test_list_prints_every_claim_with_its_verdict():
    proc = run("list", "--quiet")
    from derive.claims import all_claims
    lines = proc.stdout.splitlines()
    rows = {ln.split()[0]: ln.split()[1] for ln in lines[1:]}
    assert proc.returncode == 0 and rows == {c.id: c.expected for c in all_claims()}
