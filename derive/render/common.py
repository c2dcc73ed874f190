"""What every renderer shows the same way: verdict phrases, evidence rows, versions."""

from __future__ import annotations

import platform
from importlib import metadata

from ..core import PROVED, REFUTED, Result
from ..story import Section, Story  # noqa: F401  (re-exported for the renderers)


def verdict_phrase(result: Result) -> str:
    v = result.verdict
    if v.status == PROVED:
        return f"PROVED for every N ≥ {result.claim.min_size}"
    if v.status == REFUTED:
        return f"REFUTED at N = {v.counterexample.size}"
    return "UNDECIDED"


def evidence_rows(result: Result):
    """(layer, finding, agrees-with-verdict) for each layer."""
    for e in result.evidence:
        yield e.kind, e.summary, e.ok


def implementation_check(result: Result) -> dict | None:
    """The claim's implementation check (a framework layer's ``implementation`` details), if
    one ran."""
    return next((e.details["implementation"] for e in result.evidence
                 if "implementation" in e.details), None)


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("derive", "sympy", "numpy", "hypothesis", "matplotlib", "torch", "jax"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out
