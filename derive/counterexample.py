"""Minimal counterexamples, found and re-checked in exact arithmetic.

The search walks batch sizes upward from the claim's minimum, and at each size tries simple
exact values first (0, 1, -1, 2, ...), and the simplest instance of each arbitrary function
first (the claim orders them).  The first failure is therefore at the smallest batch size that
fails, with the simplest numbers the search knows.  Each candidate is evaluated with the
explicit layer (plain sums, no symbolic-N rule) and the residual must be an exact nonzero
number; a residual that only evaluates numerically must be nonzero at 50 significant digits.

A claim over several axes is searched the same way over its concrete sizes, smallest first
(``axes.size_grid``): every axis from its minimum, the product of the sizes bounded.

Small sizes are not the only place a statement can fail: a term multiplied by
(N - 1)(N - 2)...(N - 8) vanishes for N <= 8 and nowhere else.  Beyond ``max_size`` the search
therefore goes where the evidence points (``further_sizes``): to the first size where the
unproved residual no longer vanishes (a factor in the sizes alone, such as N - 12 or
(N - 1)...(N - 8), is evaluated at each size), and to the sizes where another layer saw a
failure (a numeric, Hypothesis or framework instance), together with every smaller size on
the way that the residual does not show to hold -- so what it finds is still the smallest
failing size.  Up to ``CAP`` and within ``EXTRA_SECONDS``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import sympy as sp

from .axes import layout, size_grid, sizes_text
from .core import Claim, Counterexample, OutOfTime
from .deadline import checkpoint, time_budget
from .explicit import (ExplicitBatch, domain_values, free_indices, index_assignments,
                       is_certainly_nonzero)
from .numeric import instantiate, variables

POOL = (sp.Integer(0), sp.Integer(1), sp.Integer(-1), sp.Integer(2), sp.Integer(-2),
        sp.Rational(1, 2), sp.Integer(3))
MAX_CANDIDATES = 400
GRID_BUDGET = 64      # several axes: the largest product of sizes the search writes out
CAP = 64              # the largest size of any axis the search goes to, beyond max_size
EXTRA_SECONDS = 20.0  # the time the search may spend beyond max_size


def _candidates(count: int, seed: int, sparse: bool = False):
    """Value tuples (indices into POOL) in order of simplicity.

    First every tuple over {0, 1, -1} when there are few enough, simplest first; then a
    seeded sample over the whole pool.  ``sparse`` (large batches, beyond the usual sizes):
    first the tuples with one or two nonzero entries, which a tuple over {0, 1, -1} of that
    length would almost never be.
    """
    budget = MAX_CANDIDATES
    if sparse and 3 ** count > 3 * MAX_CANDIDATES:
        sparse_ones = itertools.chain(
            [(0,) * count],
            ((tuple(v if n == at else 0 for n in range(count)))
             for at in reversed(range(count)) for v in (1, 2, 3)),
            (tuple(dict(zip(at, vs)).get(n, 0) for n in range(count))
             for at in itertools.combinations(reversed(range(count)), 2)
             for vs in itertools.product((1, 2, 3), repeat=2)))
        yield from itertools.islice(sparse_ones, MAX_CANDIDATES)
    elif 3 ** count <= 3 * MAX_CANDIDATES:
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


@dataclass
class SearchLog:
    """What a search did: the sizes it searched completely, in order; the sizes beyond
    ``max_size`` it chose and why; the sizes the residual showed to hold (skipped); the sizes
    at which a time budget stopped it."""

    searched: list = field(default_factory=list)
    beyond: list = field(default_factory=list)      # (sizes, why), in the order searched
    holds: list = field(default_factory=list)
    stopped: dict | None = None

    def text(self, axes) -> str:
        """"up to N = 6" (one axis) or "at 20 sizes up to N = 6, C = 6", then the sizes
        searched beyond those."""
        def one(sizes):
            return (f"N = {sizes[axes[0]]}" if len(axes) == 1 else sizes_text(sizes))
        base = [s for s in self.searched if not any(s == b for b, _ in self.beyond)]
        if not base:
            out = "at no size"
        elif len(axes) == 1:
            out = f"up to {one(base[-1])}"
        else:
            top = {a: max(s[a] for s in base) for a in axes}
            out = f"at {len(base)} sizes up to {sizes_text(top)}"
        extra = [s for s, _ in self.beyond if any(s == t for t in self.searched)]
        if extra:
            out += ", and at " + "; ".join(one(s) for s in extra)
        if self.stopped is not None:
            out += f" ({one(self.stopped)} not finished within the time budget)"
        return out


def search(claim: Claim, max_size: int = 6, *, hints=(), residuals=(), cap: int = CAP,
           seconds: float = EXTRA_SECONDS, log: SearchLog | None = None
           ) -> Counterexample | None:
    """The first counterexample: every size from the claim's minimums up to ``max_size``
    (every axis), then the sizes ``further_sizes`` picks from ``hints`` (sizes where another
    layer saw a failure: {axis: size} or a batch size) and ``residuals`` (the unproved parts'
    residuals, trusted to vanish where they vanish), up to ``cap`` within ``seconds``."""
    log = SearchLog() if log is None else log
    found = _search_grid(claim, size_grid(claim.minimums(), max_size, GRID_BUDGET), log)
    if found is None and (hints or residuals):
        found = search_beyond(claim, max_size, hints=hints, residuals=residuals, cap=cap,
                              seconds=seconds, log=log)
    return found


def search_beyond(claim: Claim, max_size: int = 6, *, hints=(), residuals=(), cap: int = CAP,
                  seconds: float = EXTRA_SECONDS, log: SearchLog | None = None
                  ) -> Counterexample | None:
    """The second half of ``search``, after the sizes up to ``max_size`` found nothing: the
    sizes beyond that the hints and the residuals point to (``further_sizes``), smallest
    first, within ``seconds`` (a search the budget stops returns None, ``log.stopped``)."""
    log = SearchLog() if log is None else log
    grid = size_grid(claim.minimums(), max_size, GRID_BUDGET)
    if not log.searched:
        log.searched = list(grid)
    beyond, log.holds = further_sizes(claim, grid, hints, residuals, cap)
    if not beyond:
        return None
    log.beyond = beyond
    sizes = beyond[0][0]
    try:
        with time_budget(seconds, "the counterexample search beyond the smallest sizes"):
            return _search_grid(claim, [s for s, _ in beyond], log, sparse=True)
    except OutOfTime:
        log.stopped = next((s for s, _ in beyond if s not in log.searched), sizes)
    return None


def _search_grid(claim, grid, log, sparse=False):
    bases, params = variables(claim)
    params = [p for p in params if p not in claim.axes]   # an axis size is not a variable
    choices = [dict(zip([fn for fn, _ in claim.functions], combo))
               for combo in itertools.product(*[inst for _, inst in claim.functions])] or [{}]
    for sizes in grid:
        found = _search_sizes(claim, sizes, choices, bases, params, sparse)
        if found:
            return found
        log.searched.append(sizes)
    return None


def further_sizes(claim: Claim, searched, hints=(), residuals=(), cap: int = CAP):
    """([(sizes, why), ...] smallest first, [sizes where the residual vanishes]): where to
    search beyond the sizes already ``searched``.

    ``residuals``: every unproved part's residual.  A size where each of them vanishes (a
    factor in the axis sizes alone is 0 there) has no counterexample; the first size after
    ``searched`` where one does not is a target.  ``hints``: sizes where some layer saw a
    failure; each is a target, and so is every smaller size (every axis at most the hint's)
    the residual does not show to hold, so that the first failure found is the smallest."""
    minimums = claim.minimums()
    axes = list(minimums)
    done = {_key(s, axes) for s in searched}
    factors = [_size_factors(r, axes) for r in residuals]
    info = bool(factors) and all(factors)

    def holds(sizes) -> bool:
        at = {a: sp.Integer(n) for a, n in sizes.items()}
        return info and all(any(f.xreplace(at) == 0 for f in fs) for fs in factors)

    top = cap if len(axes) == 1 else min(cap, 16)
    budget = None if len(axes) == 1 else GRID_BUDGET * 8
    grid = size_grid(minimums, top, budget)
    wanted: dict = {}
    vanishing = []
    if info:
        for sizes in grid:
            if not holds(sizes):
                if _key(sizes, axes) not in done:
                    wanted.setdefault(_key(sizes, axes), _residual_why(residuals, sizes, axes))
                break
            vanishing.append(sizes)
    for hint, where in _hint_sizes(hints, minimums, top):
        for sizes in grid:
            if all(sizes[a] <= hint[a] for a in axes) and _key(sizes, axes) not in done \
                    and not holds(sizes):
                wanted.setdefault(_key(sizes, axes), where if sizes == hint else
                                  f"a smaller size than where {where[:1].lower() + where[1:]}")
    order = sorted(wanted, key=lambda k: (sum(k), k))
    out = [(dict(zip(axes, k)), wanted[k]) for k in order]
    return out, [s for s in vanishing if _key(s, axes) not in done]


def _key(sizes: dict, axes) -> tuple:
    return tuple(sizes[a] for a in axes)


def _size_factors(residual, axes) -> list:
    """The factors of the residual's numerator that depend on the axis sizes alone."""
    numer = sp.fraction(sp.factor(sp.sympify(residual)))[0]
    out = []
    for f in sp.Mul.make_args(numer):
        if f.is_Pow and f.exp.is_positive:
            f = f.base
        if f.free_symbols and f.free_symbols <= set(axes):
            out.append(f)
    return out


def _residual_why(residuals, sizes, axes) -> str:
    where = f"N = {sizes[axes[0]]}" if len(axes) == 1 else sizes_text(sizes)
    return f"the first size where the residual does not vanish ({where})"


def _hint_sizes(hints, minimums, top):
    """Each hint as ({axis: size} on every axis, why): a bare number is the batch size; an
    axis the hint does not name is at its minimum.  Hints beyond ``top`` are brought to it.
    A hint may come with who saw the failure: (sizes, "the numeric layer")."""
    axes = list(minimums)
    for hint in hints:
        who = "another layer"
        if isinstance(hint, tuple) and len(hint) == 2 and isinstance(hint[1], str):
            hint, who = hint
        if not isinstance(hint, dict):
            hint = {axes[0]: int(hint)}
        sizes = {a: max(minimums[a], min(top, int(hint.get(a, minimums[a])))) for a in axes}
        text = f"N = {sizes[axes[0]]}" if len(axes) == 1 else sizes_text(sizes)
        yield sizes, f"{who} failed at {text}"


def _search_sizes(claim, sizes, choices, bases, params, sparse=False):
    for choice in choices:
        found = _search_at(claim, sizes, choice, bases, params, sparse)
        if found:
            return found
    return None


def _entry(batch, base, position):
    """The symbol of one entry of a tensor (a sample of a one-axis tensor)."""
    return batch.sample(base, position[0] if len(position) == 1 else position)


def _search_at(claim, sizes, choice, bases, params, sparse=False):
    if not isinstance(sizes, dict):
        sizes = {claim.batch.size: sizes}
    first = claim.batch.size
    size = sizes[first]
    several = len(sizes) > 1
    batch = (ExplicitBatch(size, first, sizes=sizes) if several
             else ExplicitBatch(size, first))
    extent = sizes if several else size
    parts = []
    for n, eq in enumerate(claim.equations):
        lhs, rhs = instantiate(eq.lhs, choice), instantiate(eq.rhs, choice)
        for env in index_assignments(free_indices(eq.lhs, eq.rhs), extent):
            parts.append((n, env, batch.eval(lhs, env), batch.eval(rhs, env)))
    domain = domain_values(batch, claim.domain, extent)
    shapes = _shapes(claim, bases, sizes) if several else {b: (size,) for b in bases}
    positions = {b: list(itertools.product(*(range(1, m + 1) for m in shapes[b])))
                 for b in bases}
    names = [_entry(batch, b, pos) for b in bases for pos in positions[b]] + list(params)
    ranges = dict(claim.ranges)
    pools = [allowed(_entry(batch, b, (1,) * len(shapes[b])), ranges.get(b)) for b in bases
             for _ in positions[b]] + [allowed(p, ranges.get(p)) for p in params]
    if not all(pools):
        return None  # some variable admits none of the simple values
    for combo in _candidates(len(names), seed=size if not several else sum(sizes.values()),
                             sparse=sparse):
        checkpoint()   # a safe point of the time budget: one per candidate
        numbers = {s: pool[c % len(pool)] for s, pool, c in zip(names, pools, combo)}
        if not all(batch.substitute(d, numbers).is_positive for d in domain):
            continue  # outside the claim's domain (a zero variance at epsilon = 0)
        for n, env, lhs, rhs in parts:
            lv, rv = batch.substitute(lhs, numbers), batch.substitute(rhs, numbers)
            if lv.has(sp.zoo, sp.nan) or rv.has(sp.zoo, sp.nan):
                continue  # outside the domain (a division by zero): not a counterexample
            if is_nonzero(sp.simplify(lv - rv)):
                values = {str(b): _nested([numbers[_entry(batch, b, pos)]
                                           for pos in positions[b]], shapes[b])
                          for b in bases}
                values.update({str(p): numbers[p] for p in params})
                values.update({str(k): v for k, v in env.items()})
                return Counterexample(size, values, lv, rv, part=n,
                                      functions=tuple(choice.items()),
                                      sizes=dict(sizes) if several else {})
    return None


def _shapes(claim, bases, sizes) -> dict:
    """Each tensor's shape at ``sizes``, from its layout (a position only ever indexed by a
    number runs along the batch axis)."""
    sides = [side for eq in claim.equations for side in (eq.lhs, eq.rhs)]
    found = layout(*sides, *claim.domain)
    first = claim.batch.size
    return {b: tuple(sizes.get(a if a is not None else first, sizes[first])
                     for a in found.get(b, (first,))) for b in bases}


def _nested(flat: list, shape: tuple):
    """A flat list in row-major order as nested lists of ``shape`` (one axis: the list)."""
    if len(shape) <= 1:
        return list(flat)
    step = len(flat) // shape[0]
    return [_nested(flat[n * step:(n + 1) * step], shape[1:]) for n in range(shape[0])]
