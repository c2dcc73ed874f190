"""Shared test configuration: Hypothesis settings profiles, and what CI must have.

``dev`` is fast for the edit-test loop; ``ci`` is thorough and derandomized, so a CI failure
reproduces on every run.  Choose with ``HYPOTHESIS_PROFILE=ci python3 -m pytest tests``.  The
profile alone decides how many examples each property draws: no test overrides it.

On a developer's machine the tests of torch, jax and the PDF skip when those are missing.  In CI
(``CI=true``) a missing one fails the run at once, with the reason: skipped tests would let CI
pass without checking them.
"""

import fcntl
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

settings.register_profile("dev", max_examples=30)
settings.register_profile("ci", max_examples=300, derandomize=True, deadline=None,
                          print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

FRAMEWORKS = ("torch", "jax")
TEX_TOOLS = ("latexmk", "pdflatex", "pdftotext")


def missing_requirements() -> list[str]:
    """What the full run needs and this machine lacks, one reason each."""
    missing = []
    for name in FRAMEWORKS:
        try:
            importlib.import_module(name)
        except Exception as exc:   # not installed, or installed and broken: either way skipped
            missing.append(f"{name} cannot be imported ({type(exc).__name__}: {exc})")
    tools = [tool for tool in TEX_TOOLS if shutil.which(tool) is None]
    if tools:
        missing.append(f"TeX: {', '.join(tools)} not found on PATH")
    return missing


def pytest_configure(config):
    if os.environ.get("CI") != "true":
        return
    missing = missing_requirements()
    if missing:
        raise pytest.UsageError(
            "CI=true, but the full test run needs what is missing here (its tests would be "
            "skipped and CI would pass without them):\n  - " + "\n  - ".join(missing)
            + "\n./bootstrap installs torch, jax and TeX; see its messages and .bootstrap.log.")


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory):
    """Every ``derive`` this test run starts reads and writes a cache of the run's own (one
    per xdist worker), never the user's: no result comes from an earlier run.  Tests of one
    file that check the same claims with the same settings find each other's results there;
    a test about the cache itself gives each command a cache of its own."""
    where = tmp_path_factory.mktemp("derive-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DERIVE_CACHE", str(where))
        yield where


def shared_by_workers(tmp_path_factory) -> Path:
    """A directory every xdist worker of this test run sees (the parent of their base
    directories; without xdist, the base directory itself)."""
    shared = tmp_path_factory.getbasetemp()
    return shared.parent if os.environ.get("PYTEST_XDIST_WORKER") else shared


@pytest.fixture(scope="session")
def centering_results(tmp_path_factory):
    """The centering claims, checked with the report's settings (one job, in this process):
    the tests about writing a report (not about checking it) share them.  Checked once per
    test run: the first worker to need them checks them into a cache the workers share, the
    others wait for it and read them from there."""
    from derive import runner
    from derive.cache import Cache
    from derive.claims import centering
    from derive.report import topic_settings
    shared = shared_by_workers(tmp_path_factory)
    with open(shared / "centering.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return runner.check_many(centering.claims(), topic_settings("centering"),
                                 cache=Cache(shared / "centering-cache"))


def write_centering(results, out, formats):
    """``report.build("centering", out, formats)`` from checked ``results``: (written,
    warnings)."""
    from derive import report
    from derive.claims import centering
    return report.write_results(centering.story(), results, out, formats,
                                report.topic_settings("centering"))


def cli_status(argv) -> int:
    """``derive``'s command line run in this process: the exit status ``main`` returns, or the
    one argparse's refusals end it with.  (A process per command would pay Python's start-up
    each time; the whole path in a process of its own is test_cli's ``run``.)"""
    from derive.cli import main
    try:
        return main(list(argv))
    except SystemExit as stop:
        return stop.code


def rejected_at_first_failure(claim, framework: str, settings) -> bool:
    """The ``framework`` layer rejects ``claim``, at its first failing instance.  Shrinking
    that instance (a hundred more, most of them new shapes for JAX to compile) changes which
    failure is shown, not whether one is found: the tests that read a shrunk failure call the
    layer itself."""
    from derive import frameworks
    ev = frameworks.layers(claim, (framework,), settings, shrink=False)[0]
    return ev.holds is False and ev.details["failures"] == 1


# -- every report, built once for the whole run, as another machine would build it -----------

ROOT = Path(__file__).resolve().parents[1]


def other_machine_env() -> dict[str, str]:
    """This machine made to compute like another one."""
    umath = np._core._multiarray_umath
    # NumPy picks a SIMD path per function at import time; disabling every optional one
    # makes it compute as a CPU without AVX2/AVX-512 would (another last bit for pow, log, ...)
    simd = [f for f in umath.__cpu_dispatch__ if umath.__cpu_features__.get(f)]
    env = {**os.environ,
           "PYTHONHASHSEED": "2718",                  # another iteration order of sets
           "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2",
           # XLA compiled with full optimization (fusions reorder floating-point sums)
           "XLA_FLAGS": "--xla_backend_optimization_level=3"}
    if simd:
        env["NPY_DISABLE_CPU_FEATURES"] = " ".join(simd)
    return env


class Elsewhere:
    """``derive report`` of every topic, run once per test session (whatever the number of
    xdist workers) in a subprocess computing like another machine (``other_machine_env``),
    with a cache of its own.  ``out`` holds its files; ``build(topic, formats)`` gives a
    topic's checked results in this process, read from that cache: each report's claims are
    checked once in a test run, not once per test file that needs them."""

    def __init__(self, out: Path, cache: Path, env: dict[str, str]):
        self.out, self.cache, self.env = out, cache, env

    def build(self, topic: str, formats):
        """(out, {id: result}, warnings) of ``report.build(topic)`` into a directory of its
        own, every result from the subprocess's cache: the keys are made with its
        environment, the one its results were computed in."""
        from derive import cache as cache_module
        from derive import report
        store = cache_module.Cache(self.cache)
        # a directory per call: two test files may build one topic at once, in two workers
        out = Path(tempfile.mkdtemp(prefix=f"{topic}-here-", dir=self.out.parent))
        numerics = {name: self.env.get(name) for name in cache_module.NUMERIC_ENVIRONMENT}
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(cache_module, "_ENVIRONMENT", numerics)
            results, written, warnings = report.build(topic, out, formats, cache=store)
        assert store.misses == 0, f"{store.misses} {topic} claims were not in the cache"
        return out, {r.id: r for r in results}, warnings


def _formats_built() -> str:
    from derive import pdf
    tex = pdf.tex_available() or os.environ.get("CI") == "true"
    return "tex,json,md" + (",pdf" if tex else "")


@pytest.fixture(scope="session")
def elsewhere(tmp_path_factory) -> Elsewhere:
    # xdist's workers share the parent of their base directories: the first to get here
    # builds (with every core), the others wait for it and read what it wrote
    shared = shared_by_workers(tmp_path_factory)
    where = shared / "elsewhere"
    env = {**other_machine_env(), "DERIVE_CACHE": str(where / "cache")}
    with open(shared / "elsewhere.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        failed = where / "failed.txt"
        if failed.exists():
            pytest.fail(failed.read_text())
        if not (where / "done").exists():
            where.mkdir(exist_ok=True)
            proc = subprocess.run(
                [sys.executable, "-m", "derive", "report", "--out", str(where / "out"),
                 "--format", _formats_built(), "--quiet"],
                cwd=ROOT, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
            if proc.returncode != 0:
                failed.write_text(f"derive report failed ({proc.returncode}): "
                                  f"{proc.stderr[-2000:]}")
                pytest.fail(failed.read_text())
            (where / "done").write_text("")
    return Elsewhere(where / "out", where / "cache", env)
