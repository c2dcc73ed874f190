"""The machine-readable certificate: every claim, its verdict, its proof and its evidence.

Byte-for-byte reproducible: keys are sorted, floats are rounded to a fixed number of
significant digits, and wall times are left out (``timings`` writes them separately).
"""

from __future__ import annotations

import json

import sympy as sp

from ..core import Result, all_assumptions, error_bound
from ..rules import RULES
from ..text import text
from .common import library_versions, proved_from
from .latex import equation_tex, tex

FORMAT_VERSION = 1


# a layer's largest error below its tolerance is round-off, which differs between machines: the
# certificate records the power of ten it stays below (``core.error_bound``) under KEY_below
ROUND_OFF = ("max_error", "max_step_residual")


def _clean(value):
    """JSON-ready, deterministic: errors as bounds, other floats to 3 significant digits,
    SymPy to strings."""
    if isinstance(value, float):
        return float(f"{value:.3g}")
    if isinstance(value, dict):
        return {(f"{k}_below" if k in ROUND_OFF else str(k)):
                (error_bound(v) if k in ROUND_OFF and isinstance(v, float) else _clean(v))
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, sp.Integer):
        return int(value)
    if isinstance(value, sp.Basic):  # exact values stay exact: "1/2", not 0.5
        return sp.sstr(value)
    return value


def _steps(steps):
    return [{"rule": s.rule, "result": tex(s.after), "rechecked": s.checks, "ok": s.ok}
            for s in steps]


def claim_json(result: Result, budget: float, timings: bool = False) -> dict:
    c, v = result.claim, result.verdict
    out = {
        "id": c.id,
        "title": c.title,
        "verdict": v.status,
        "expected": c.expected,
        "reason": v.reason,
        "statement": r" \quad\text{and}\quad ".join(equation_tex(e) for e in c.equations),
        "equations": [{"label": e.label, "latex": equation_tex(e), "lhs": sp.sstr(e.lhs),
                       "rhs": sp.sstr(e.rhs)} for e in c.equations],
        "text": c.text,
        "assumptions": list(all_assumptions(c)),
        "min_batch_size": c.min_size,
        "domain": [f"{sp.sstr(d)} > 0" for d in c.domain],
        "source": c.source,
        "uses": list(c.uses),
        "proof": [{"part": n, "label": p.equation.label, "lhs_steps": _steps(p.lhs_steps),
                   "rhs_steps": _steps(p.rhs_steps), "residual": sp.sstr(p.residual),
                   "residual_latex": tex(p.residual)}
                  for n, p in enumerate(result.proof)],
        "evidence": [{"kind": e.kind, "ok": e.ok, "summary": e.summary, **_clean(e.details)}
                     for e in result.evidence],
        "time_budget_s": budget,
    }
    if timings:  # wall times vary run to run: only on request, so the default is reproducible
        out["seconds"] = round(result.seconds, 3)
        out["within_budget"] = result.seconds <= budget
        for item, e in zip(out["evidence"], result.evidence):
            item["seconds"] = round(e.seconds, 3)
    if v.residual is not None:
        out["residual"] = {"text": sp.sstr(v.residual), "latex": tex(v.residual)}
    if v.counterexample is not None:
        cex = v.counterexample
        out["counterexample"] = {
            "N": cex.size, "part": cex.part, "values": _clean(cex.values),
            "functions": {text(f): text(v) for f, v in cex.function_equations()},
            "lhs": sp.sstr(cex.lhs), "rhs": sp.sstr(cex.rhs),
            "residual": sp.sstr(cex.residual), "exact": True}
        if len(c.axes) > 1:
            out["counterexample"]["sizes"] = {sp.sstr(a): n for a, n in cex.all_sizes(c).items()}
    if len(c.axes) > 1 or v.defined_from:
        out["proved_from"] = {sp.sstr(a): n for a, n in proved_from(result).items()}
    return out


def certificate(story, results: list[Result], settings, timings: bool = False,
                rendered=None) -> str:
    """The certificate.  ``rendered``: {("json", claim id): claim_json(...)} made before."""
    rendered = rendered or {}
    doc = {
        "format": FORMAT_VERSION,
        "report": story.name,
        "title": story.title,
        "libraries": library_versions(),
        "settings": _clean(vars(settings)),
        "summary": {s: sum(r.verdict.status == s for r in results)
                    for s in ("proved", "refuted", "undecided")},
        "rules": [{"name": r.name, "latex": r.latex, "description": r.description}
                  for r in RULES.values()],
        "claims": [rendered.get(("json", r.id)) or claim_json(r, settings.budget, timings)
                   for r in results],
    }
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _measured(details) -> dict:
    """The exact round-off errors the certificate records only as bounds."""
    out = {}
    for key, value in details.items():
        if key in ROUND_OFF and isinstance(value, float):
            out[key] = value
        elif isinstance(value, dict) and (inner := _measured(value)):
            out[key] = inner
    return out


def timings(results: list[Result]) -> str:
    """Wall times and exact errors: what differs between runs and machines."""
    doc = {"claims": [{"id": r.id, "seconds": round(r.seconds, 4),
                       "layers": {e.kind: round(e.seconds, 4) for e in r.evidence},
                       "errors": {e.kind: m for e in r.evidence if (m := _measured(e.details))}}
                      for r in results]}
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"
