"""Minimal counterexamples, found and re-checked in exact arithmetic.

The search walks batch sizes upward from the claim's minimum, and at each size tries simple
exact values first (0, 1, -1, 2, ...), and the simplest instance of each arbitrary function
first (the claim orders them).  The first failure is therefore at the smallest batch size that
fails, with the simplest numbers the search knows.  Each candidate is evaluated with the
explicit layer (plain sums, no symbolic-N rule) and the residual must be an exact nonzero
number; a residual that only evaluates numerically must be nonzero at 50 significant digits.
"""

from __future__ import annotations

import itertools

import numpy as np
import sympy as sp

from .core import Claim, Counterexample
from .deadline import checkpoint
from .explicit import ExplicitBatch, free_indices, index_assignments, is_certainly_nonzero
from .numeric import instantiate, variables

POOL = (sp.Integer(0), sp.Integer(1), sp.Integer(-1), sp.Integer(2), sp.Integer(-2),
        sp.Rational(1, 2), sp.Integer(3))
MAX_CANDIDATES = 400


def _candidates(count: int, seed: int):
    """Value tuples (indices into POOL) in order of simplicity.

    First every tuple over {0, 1, -1} when there are few enough, simplest first; then a
    seeded sample over the whole pool.
    """
    budget = MAX_CANDIDATES
    if 3 ** count <= 3 * MAX_CANDIDATES:
        ranked = sorted(itertools.product(range(3), repeat=count),
                        key=lambda t: (sum(x != 0 for x in t), sum(t), t))
        yield from ranked
        budget -= len(ranked) // 2
    rng = np.random.default_rng(seed)
    for _ in range(max(budget, 0)):
        yield tuple(int(v) for v in rng.integers(0, len(POOL), size=count))


_ASSUMPTIONS = ("positive", "nonnegative", "negative", "nonpositive", "nonzero", "integer")


def allowed(symbol, bounds=None) -> tuple:
    """The values of POOL that the symbol's assumptions and the claim's range admit
    (epsilon > 0: no 0, no -1).  Empty when none does: then no search is possible."""
    lo, hi = bounds if bounds is not None else (-sp.oo, sp.oo)
    return tuple(v for v in POOL
                 if lo <= v <= hi and all(getattr(v, f"is_{a}") for a in _ASSUMPTIONS
                                          if getattr(symbol, f"is_{a}", None)))


def is_nonzero(value: sp.Expr) -> bool:
    """Certainly nonzero (exact, or at 50 significant digits)."""
    value = sp.nsimplify(value) if value.is_Float else value
    return is_certainly_nonzero(value)


def search(claim: Claim, max_size: int = 6) -> Counterexample | None:
    bases, params = variables(claim)
    choices = [dict(zip([fn for fn, _ in claim.functions], combo))
               for combo in itertools.product(*[inst for _, inst in claim.functions])] or [{}]
    for size in range(claim.min_size, max(claim.min_size, max_size) + 1):
        for choice in choices:
            found = _search_at(claim, size, choice, bases, params)
            if found:
                return found
    return None


def _search_at(claim, size, choice, bases, params):
    batch = ExplicitBatch(size, claim.batch.size)
    parts = []
    for n, eq in enumerate(claim.equations):
        lhs, rhs = instantiate(eq.lhs, choice), instantiate(eq.rhs, choice)
        for env in index_assignments(free_indices(eq.lhs, eq.rhs), size):
            parts.append((n, env, batch.eval(lhs, env), batch.eval(rhs, env)))
    domain = [batch.eval(d, {}) for d in claim.domain]
    names = [batch.sample(b, t) for b in bases for t in range(1, size + 1)] + list(params)
    ranges = dict(claim.ranges)
    pools = [allowed(batch.sample(b, 1), ranges.get(b)) for b in bases
             for t in range(1, size + 1)] + [allowed(p, ranges.get(p)) for p in params]
    if not all(pools):
        return None  # some variable admits none of the simple values
    for combo in _candidates(len(names), seed=size):
        checkpoint()   # a safe point of the time budget: one per candidate
        numbers = {s: pool[c % len(pool)] for s, pool, c in zip(names, pools, combo)}
        if not all(batch.substitute(d, numbers).is_positive for d in domain):
            continue  # outside the claim's domain (a zero variance at epsilon = 0)
        for n, env, lhs, rhs in parts:
            lv, rv = batch.substitute(lhs, numbers), batch.substitute(rhs, numbers)
            if lv.has(sp.zoo, sp.nan) or rv.has(sp.zoo, sp.nan):
                continue  # outside the domain (a division by zero): not a counterexample
            if is_nonzero(sp.simplify(lv - rv)):
                values = {str(b): [numbers[batch.sample(b, t)] for t in range(1, size + 1)]
                          for b in bases}
                values.update({str(p): numbers[p] for p in params})
                values.update({str(k): v for k, v in env.items()})
                return Counterexample(size, values, lv, rv, part=n,
                                      functions=tuple(choice.items()))
    return None
