"""Shared test configuration: Hypothesis settings profiles, and what CI must have.

``dev`` is fast for the edit-test loop; ``ci`` is thorough and derandomized, so a CI failure
reproduces on every run.  Choose with ``HYPOTHESIS_PROFILE=ci python3 -m pytest tests``.  The
profile alone decides how many examples each property draws: no test overrides it.

On a developer's machine the tests of torch, jax and the PDF skip when those are missing.  In CI
(``CI=true``) a missing one fails the run at once, with the reason: skipped tests would let CI
pass without checking them.
"""

import importlib
import os
import shutil

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


@pytest.fixture(scope="session")
def centering_results():
    """The centering claims, checked once per test process with the report's settings: the
    tests about writing a report (not about checking it) share them."""
    from derive import runner
    from derive.claims import centering
    from derive.report import topic_settings
    return runner.check_many(centering.claims(), topic_settings("centering"))


def write_centering(results, out, formats):
    """``report.build("centering", out, formats)`` from checked ``results``: (written,
    warnings)."""
    from derive import report
    from derive.claims import centering
    return report.write_results(centering.story(), results, out, formats,
                                report.topic_settings("centering"))
