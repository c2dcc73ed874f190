"""The command line as a newcomer meets it: help, bad input, exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import cli_status

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Every command here reads and writes a cache of its own, never the user's."""
    monkeypatch.setenv("DERIVE_CACHE", str(tmp_path / "derive-cache"))
    return tmp_path / "derive-cache"


def run(*args, cwd=None):
    # output buffered, as on most machines (the command ends its process without the
    # interpreter's teardown, so it must flush what it printed itself)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    return subprocess.run([sys.executable, "-m", "derive", *args], capture_output=True,
                          text=True, cwd=cwd or ROOT, timeout=300, env=env)


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
    (("report", "--jobs", "0"), "--jobs must be at least 1"),
    (("list", "--jobs", "two"), "'two' is not a whole number"),
    (("check", "examples/rmsnorm_shift.py", "--jobs", "-1"), "--jobs must be at least 1"),
    (("report", "--topic", "centering,batchnrom"), "unknown topic 'batchnrom'"),
    (("list", "--topic", ""), "unknown topic"),
]


def test_topic_takes_a_list_in_the_order_given_or_all():
    from derive import cli
    from derive.claims import TOPICS
    parse = cli._parser().parse_args
    assert parse(["report", "--topic", "batchnorm,centering,batchnorm"]).topic == \
        ("batchnorm", "centering")
    assert parse(["list", "--topic", "all"]).topic == parse(["list"]).topic == tuple(TOPICS)


@pytest.mark.parametrize("args,message", BAD)
def test_bad_input_gets_one_line_and_exit_2(args, message, capsys):
    code = cli_status(args)   # in this process; in a process of its own: the test below
    err = capsys.readouterr().err
    assert (code, err.count("\n"), message in err, "Traceback" in err) == (2, 1, True, False), err


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


def test_list_prints_every_claim_of_a_topic_with_its_verdict():
    proc = run("list", "--quiet", "--topic", "centering")
    from derive.claims import centering
    lines = proc.stdout.splitlines()
    rows = {ln.split()[0]: ln.split()[1] for ln in lines[1:]}
    assert proc.returncode == 0 and rows == {c.id: c.expected for c in centering.claims()}


@pytest.mark.parametrize("command", ["report", "list", "check"])
def test_help_names_jobs_and_fresh(command):
    out = run(command, "--help").stdout
    assert "--jobs N" in out and "--fresh" in out and "cache" in out


def _fake_check(calls):
    """verify.check, instantly: a proved result with one layer (the CLI's plumbing only)."""
    from derive.core import Evidence, Result, Verdict

    def check(claim, settings):
        calls.append(claim.id)
        return Result(claim, Verdict.proved("fake"), [],
                      [Evidence("symbolic", True, "fake", {"steps": 1}, 0.25, holds=True)], 0.5)
    return check


def test_list_answers_from_the_cache_and_says_so(monkeypatch, capsys, private_cache):
    from derive import cli, verify
    from derive.claims import all_claims
    calls = []
    monkeypatch.setattr(verify, "check", _fake_check(calls))
    total = len(all_claims())
    cli.main(["list", "--jobs", "1"])
    assert f"0 of {total} claims from the cache" in capsys.readouterr().err
    first = len(calls)
    entries = sorted((private_cache / "results").iterdir())
    entries[0].unlink()                      # one claim's entry is gone: only it is checked
    cli.main(["list", "--jobs", "1"])
    err = capsys.readouterr().err
    assert f"{total - 1} of {total} claims from the cache" in err
    assert err.count("from the cache)") == total - 1     # the progress lines say which
    assert (first, len(calls)) == (total, total + 1)
    cli.main(["list", "--jobs", "1", "--fresh"])
    assert f"0 of {total} claims from the cache" in capsys.readouterr().err
    assert len(calls) == 2 * total + 1
    cli.main(["list", "--jobs", "1", "--quiet"])
    assert capsys.readouterr().err == "" and len(calls) == 2 * total + 1


def test_check_reads_the_cache_and_fresh_checks_again(private_cache):
    example = "examples/rmsnorm_shift.py"
    first = run("check", example, "--frameworks", "none")
    second = run("check", example, "--frameworks", "none")
    fresh = run("check", example, "--frameworks", "none", "--fresh")
    assert [p.stderr for p in (first, second, fresh)] == [
        "0 of 2 claims from the cache\n", "2 of 2 claims from the cache\n",
        "0 of 2 claims from the cache\n"]
    assert first.stdout == second.stdout       # the same lines, the original times included
    assert first.stdout.splitlines()[-1] == "1 proved, 1 refuted, 0 undecided"   # all of them
    assert first.returncode == second.returncode == fresh.returncode == 1
    assert len(list((private_cache / "results").iterdir())) == 2


def test_without_derive_cache_a_test_run_leaves_the_users_cache_alone(tmp_path, monkeypatch):
    monkeypatch.delenv("DERIVE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    proc = run("check", "examples/rmsnorm_shift.py", "--frameworks", "none", "--jobs", "1")
    assert proc.returncode == 1 and not (tmp_path / "xdg").exists()


def test_list_reads_stored_verdicts_without_loading_the_proofs(monkeypatch, capsys,
                                                                private_cache):
    from derive import cache, cli, verify
    calls = []
    monkeypatch.setattr(verify, "check", _fake_check(calls))
    cli.main(["list", "--jobs", "1", "--topic", "centering"])
    first = capsys.readouterr()
    summaries = sorted((private_cache / "summary").iterdir())
    assert len(summaries) == len(calls) == 9

    def no_proofs(data, claim):
        raise AssertionError("a result was loaded")
    monkeypatch.setattr(cache, "loads_result", no_proofs)
    cli.main(["list", "--jobs", "1", "--topic", "centering"])
    second = capsys.readouterr()
    assert second.out == first.out and len(calls) == 9
    assert "9 of 9 claims from the cache" in second.err
    assert second.err.count("from the cache)") == 9


def test_a_corrupt_or_foreign_summary_is_not_trusted(monkeypatch, capsys, private_cache):
    from derive import cache, cli, verify
    calls = []
    monkeypatch.setattr(verify, "check", _fake_check(calls))
    cli.main(["list", "--jobs", "1", "--topic", "centering"])
    first = capsys.readouterr().out
    entries = sorted((private_cache / "summary").iterdir())
    entries[0].write_bytes(b"not an entry")                     # corrupt
    other = cache._unpack(entries[2].read_bytes(), "summary", entries[2].stem)
    entries[1].write_bytes(cache._pack("summary", entries[1].stem, other))   # another claim's
    cli.main(["list", "--jobs", "1", "--topic", "centering"])
    # both are read from their results instead (loaded, not checked again), and say the same
    assert capsys.readouterr().out == first and len(calls) == 9


def test_a_second_list_builds_no_claim_and_a_changed_source_builds_them_again(
        monkeypatch, capsys, private_cache):
    from derive import cache, cli, verify
    from derive.claims import centering
    calls = []
    monkeypatch.setattr(verify, "check", _fake_check(calls))
    cli.main(["list", "--jobs", "1", "--topic", "centering"])
    first = capsys.readouterr().out
    real, builds = centering.claims, []

    def claims():
        builds.append(1)
        return real()
    monkeypatch.setattr(centering, "claims", claims)
    cli.main(["list", "--jobs", "1", "--topic", "centering"])
    assert capsys.readouterr().out == first and builds == [] and len(calls) == 9
    # the index is keyed by the source that builds the claims: another source, another index
    monkeypatch.setattr(cache, "source_hash", lambda: "1" * 64)
    cli.main(["list", "--jobs", "1", "--topic", "centering"])
    assert builds == [1] and len(calls) == 18   # and their results, under new keys


def test_a_corrupt_index_is_not_trusted(monkeypatch, capsys, private_cache):
    from derive import cli, verify
    from derive.claims import centering
    calls = []
    monkeypatch.setattr(verify, "check", _fake_check(calls))
    cli.main(["list", "--jobs", "1", "--topic", "centering"])
    first = capsys.readouterr().out
    [index] = (private_cache / "index").iterdir()
    index.write_bytes(index.read_bytes().replace(b"centering.affine", b"centering.afflne"))
    builds = []
    real = centering.claims
    monkeypatch.setattr(centering, "claims", lambda: builds.append(1) or real())
    cli.main(["list", "--jobs", "1", "--topic", "centering"])
    assert capsys.readouterr().out == first and builds == [1] and len(calls) == 9


def test_list_after_report_builds_no_claim(monkeypatch, capsys, private_cache, tmp_path):
    from derive import cli, verify
    from derive.claims import centering
    calls = []
    monkeypatch.setattr(verify, "check", _fake_check(calls))
    cli.main(["report", "--jobs", "1", "--topic", "centering", "--format", "json",
              "--out", str(tmp_path)])
    monkeypatch.setattr(centering, "claims", lambda: 1 / 0)
    cli.main(["list", "--jobs", "1", "--topic", "centering"])   # (fake verdicts: exit 1)
    assert len(calls) == 9 and "9 of 9 claims from the cache" in capsys.readouterr().err
