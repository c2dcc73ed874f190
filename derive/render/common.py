"""What every renderer shows the same way: verdict phrases, evidence rows, versions."""

from __future__ import annotations

import platform
from importlib import metadata

import sympy as sp

from ..core import PROVED, REFUTED, Result
from ..story import Section, Story, VerdictTable  # noqa: F401  (re-exported for the renderers)

HOLDS, CONDITIONAL, FAILS, UNDECIDED = "holds", "conditional", "fails", "undecided"


def proved_from(result: Result) -> dict:
    """{axis: smallest size} the proof covers: the claim's minimums, raised where the
    statement is only defined from a larger size (a variance at epsilon = 0 needs N >= 2)."""
    return {**result.claim.minimums(), **(result.verdict.defined_from or {})}


def failing_sizes(result: Result) -> dict:
    """{axis: size} of the counterexample, every axis of the claim."""
    return result.verdict.counterexample.all_sizes(result.claim)


def sizes_phrase(sizes: dict, relation: str = "=", latex: bool = False) -> str:
    """"N = 2" or "N = 2, C = 3" (relation "≥": "N ≥ 1, C ≥ 1"); with ``latex`` as math."""
    if latex:
        rel = {"=": "=", "≥": r"\ge"}[relation]
        return r",\ ".join(f"{sp.latex(a)} {rel} {n}" for a, n in sizes.items())
    return ", ".join(f"{sp.sstr(a)} {relation} {n}" for a, n in sizes.items())


def verdict_phrase(result: Result) -> str:
    v = result.verdict
    if v.status == PROVED:
        return f"PROVED for every {sizes_phrase(proved_from(result), '≥')}"
    if v.status == REFUTED:
        return f"REFUTED at {sizes_phrase(failing_sizes(result))}"
    return "UNDECIDED"


def cell_verdict(cell, by_id) -> tuple[str, str, str]:
    """(state, the condition it holds under or "", the id of the claim that decides it) for
    one cell of a ``VerdictTable``: its claims are tried most general first.  The first proved
    claim decides it ("holds", or "conditional" when it adds a condition such as epsilon = 0); a
    cell whose claims are all refuted "fails" by the last, most special of them (refuted even
    under every condition); anything undecided on the way leaves the cell undecided."""
    for n, (cid, condition) in enumerate(cell):
        status = by_id[cid].verdict.status
        if status == PROVED:
            return (CONDITIONAL if condition else HOLDS), condition, cid
        if status != REFUTED:
            return UNDECIDED, "", cid
    return FAILS, "", cell[-1][0]


def table_rows(table, by_id):
    """(row header, [(the cell's word, the id of the claim that decides it) or None for an
    empty cell, ...]) for each row of a ``VerdictTable``: the word of the cell's state, its
    "{condition}" filled in.  The renderers only format these."""
    words = {state: word for state, word, _ in table.words}
    for head, cells in table.rows:
        shown = []
        for cell in cells:
            if not cell:
                shown.append(None)
                continue
            state, condition, cid = cell_verdict(cell, by_id)
            shown.append((words.get(state, state).replace("{condition}", condition), cid))
        yield head, shown


def table_legend(table) -> list[tuple[str, str]]:
    """[(word, what it means), ...]: the legend, a word's "{condition}" shown as the table's
    first condition."""
    return [(word.replace("{condition}", table.first_condition()), text)
            for _, word, text in table.words]


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
