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


# short names for the tables; the certificate keeps the full ones
OPERATOR_NAMES = {"torch.nn.functional.batch_norm(training=True)": "F.batch_norm(training=True)"}


def framework_rows(result: Result) -> list[dict]:
    """One row per autograd layer and way of computing (autograd; the batch-norm operator)."""
    rows = []
    for e in result.evidence:
        d = e.details
        if "framework" not in d:
            continue
        base = {"framework": d["framework"], "version": d["version"], "dtype": d["dtype"],
                "tolerance": d["tolerance"]}
        held = d["autograd"]["held_statistics"]
        rows.append({**base, "by": "autograd" + (f", statistics held by {held}" if held else ""),
                     "instances": d["autograd"]["instances"],
                     "max_error": d["autograd"]["max_error"]})
        if d.get("operator", {}).get("instances"):   # PyTorch's refuses epsilon = 0
            rows.append({**base, "by": OPERATOR_NAMES.get(d["operator"]["name"],
                                                          d["operator"]["name"]),
                         "instances": d["operator"]["instances"],
                         "max_error": d["operator"]["max_error"]})
    return rows


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("derive", "sympy", "numpy", "hypothesis", "matplotlib", "torch", "jax"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out
