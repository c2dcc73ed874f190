"""Speed figures for the reports; prints a table.  Run: python benchmarks/bench.py

Figures measured here, on the machine that runs it:
* each report as .tex + .json (budget 10 s for centering, 15 s for batchnorm), and what the
  PDF adds;
* the symbolic-m proof of bn.backward.compact (budget 2 s), and its explicit check at m = 8
  next to plain SymPy ``simplify`` at small m;
* the symbolic-N proof of each claim (budget 1 s each);
* the explicit-N check of centering.update-cancels at N = 1024 (budget 1 s), next to plain
  term-by-term SymPy at smaller N for scale.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import runpy

import sympy as sp
from sympy.core.cache import clear_cache

from derive import pdf
from derive.claims import batchnorm, centering
from derive.render import latex
from derive.report import build
from derive.verify import Settings, explicit_holds, prove_part, symbolic_layer

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def timed(fn, repeat=3):
    """Median wall time over ``repeat`` runs, each with SymPy's cache cleared first."""
    times = []
    for _ in range(repeat):
        clear_cache()
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def term_by_term(n: int) -> bool:
    """The update-cancels identity at explicit N, every sample's sum expanded separately."""
    u = sp.symbols(f"u1:{n + 1}")
    b, db = sp.symbols("b db")
    mean = lambda xs: sp.Add(*xs) / n  # noqa: E731
    new = [ui + b + db for ui in u]
    old = [ui + b for ui in u]
    return all(sp.expand((new[i] - mean(new)) - (old[i] - mean(old))) == 0 for i in range(n))


def plain_simplify_compact(n: int) -> bool:
    """The compact BN backward at explicit m, the way one would check it in plain SymPy."""
    x, g = sp.symbols(f"x1:{n + 1}"), sp.symbols(f"g1:{n + 1}")
    gamma, beta, eps = sp.symbols("gamma beta epsilon", positive=True)
    mu = sp.Add(*x) / n
    s = sp.sqrt(sp.Add(*[(xi - mu) ** 2 for xi in x]) / n + eps)
    xhat = [(xi - mu) / s for xi in x]
    loss = sp.Add(*[gi * (gamma * h + beta) for gi, h in zip(g, xhat)])
    k = 0
    compact = gamma / (n * s) * (n * g[k] - sp.Add(*g)
                                 - xhat[k] * sp.Add(*[gi * h for gi, h in zip(g, xhat)]))
    return sp.simplify(sp.diff(loss, x[k]) - compact) == 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t_texjson, _ = timed(lambda: build("centering", Path(tmp), ("tex", "json")), 1)
        rows.append(("report .tex + .json (wall, in process)", t_texjson, 10.0))
        if pdf.tex_available():
            story = centering.story()
            results, _, _ = build("centering", Path(tmp), ("tex",))
            source = latex.document(story, results, Settings())
            t_pdf, _ = timed(lambda: pdf.build_pdf(source, "centering"), 1)
            rows.append(("PDF compile added (latexmk, pdflatex)", t_pdf, None))
        t_bn, _ = timed(lambda: build("batchnorm", Path(tmp), ("tex", "json")), 1)
        rows.append(("batchnorm report .tex + .json (wall, in process)", t_bn, 15.0))
    compact = next(c for c in batchnorm.claims() if c.id == "bn.backward.compact")
    t, part = timed(lambda: prove_part(compact, 0), args.repeat)
    assert part.proved
    rows.append(("symbolic reduction bn.backward.compact (every m)", t, 2.0))
    t, _ = timed(lambda: symbolic_layer(compact, batchnorm.SETTINGS), 1)
    rows.append(("  ... with every step re-checked", t, None))
    for n in (4, 8):
        t, ok = timed(lambda: explicit_holds(compact, n), 1)
        assert ok
        rows.append((f"explicit bn.backward.compact m = {n} (sparse rational arithmetic)", t,
                     None))
    for n in (3, 4):
        t, ok = timed(lambda: plain_simplify_compact(n), 1)
        assert ok
        rows.append((f"explicit bn.backward.compact m = {n} (plain SymPy simplify, for scale)",
                     t, None))
    for claim in centering.claims():
        t, _ = timed(lambda: symbolic_layer(claim, Settings()), args.repeat)
        rows.append((f"symbolic proof {claim.id} (steps re-checked)", t, 1.0))
    layernorm = runpy.run_path(str(EXAMPLES / "layernorm_backward.py"))["backward"]
    t, part = timed(lambda: prove_part(layernorm, 0), args.repeat)
    assert part.proved
    rows.append(("symbolic reduction layernorm.backward (every m)", t, 2.0))
    t, _ = timed(lambda: symbolic_layer(layernorm, Settings()), 1)
    rows.append(("  ... with every step re-checked", t, None))
    update = next(c for c in centering.claims() if c.id == "centering.update-cancels")
    for n in (8, 128, 1024):
        t, ok = timed(lambda: explicit_holds(update, n), args.repeat)
        assert ok
        rows.append((f"explicit update-cancels N = {n} (shared statistics)", t,
                     1.0 if n == 1024 else None))
    for n in (32, 64, 128):
        t, ok = timed(lambda: term_by_term(n), 1)
        assert ok
        rows.append((f"explicit update-cancels N = {n} (term by term, for scale)", t, None))
    width = max(len(r[0]) for r in rows)
    print(f"{'measurement'.ljust(width)}  {'seconds':>8}  budget")
    for name, t, budget in rows:
        verdict = "" if budget is None else (f"<= {budget:g} s " + ("ok" if t <= budget
                                                                  else "OVER"))
        print(f"{name.ljust(width)}  {t:8.3f}  {verdict}")


if __name__ == "__main__":
    main()
