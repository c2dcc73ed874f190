"""Axes: which axis each index runs over, and the concrete sizes the layers try.

A claim may use several axes (N samples, C channels, H positions, ...).  Every index knows its
axis: a free index carries it (``SampleIndex.axis``), a bound index takes it from the
reduction that binds it.  From that, ``layout`` reads the axes of every per-sample tensor
(x[n, c] lies along (N, C)) and refuses a tensor used along two different axes at one position
-- the one layout every evaluating layer (explicit, numeric, counterexample, frameworks) shares.
``size_grid`` lists the concrete sizes to try, smallest first, with a bounded cost.
"""

from __future__ import annotations

import itertools
import math

import sympy as sp

from .calculus import SampleIndex, is_reduction


class AxisError(ValueError):
    """An index or a tensor used along two different axes."""


def index_axis(index, scope: dict):
    """The axis an index expression runs over: a free index's own, a bound index's from its
    reduction (``scope``), an offset index's (k + 1) from its symbol; None for a number."""
    if isinstance(index, SampleIndex):
        return index.axis
    if index in scope:
        return scope[index]
    found = {index_axis(s, scope) for s in sp.sympify(index).free_symbols
             if isinstance(s, SampleIndex) or s in scope}
    found.discard(None)
    if len(found) > 1:
        raise AxisError(f"the index {index} mixes indices of the axes "
                        + ", ".join(sorted(map(str, found))))
    return found.pop() if found else None


def layout(*exprs) -> dict:
    """{tensor base: (axis of each position, ...)} for every tensor in ``exprs``; a position
    only ever indexed by numbers has axis None.  Raises ``AxisError`` when a tensor is indexed
    along two axes at one position, or with two numbers of indices."""
    found: dict = {}

    def visit(e, scope):
        if isinstance(e, sp.Indexed):
            axes = tuple(index_axis(t, scope) for t in e.indices)
            known = found.get(e.base)
            if known is None:
                found[e.base] = axes
            else:
                if len(known) != len(axes):
                    raise AxisError(f"{e.base} is used with {len(known)} and with {len(axes)} "
                                    "indices")
                merged = []
                for pos, (a, b) in enumerate(zip(known, axes)):
                    if a is not None and b is not None and a != b:
                        raise AxisError(f"{e.base} is indexed along {a} and along {b} at "
                                        f"position {pos + 1}")
                    merged.append(a if a is not None else b)
                found[e.base] = tuple(merged)
            for t in e.indices:
                visit(t, scope)
            return
        if is_reduction(e):
            visit(e.body, {**scope, e.index: e.size})
            return
        for a in e.args:
            if isinstance(a, sp.Basic):
                visit(a, scope)

    for expr in exprs:
        visit(sp.sympify(expr), {})
    return found


def reduction_axes(*exprs) -> set:
    """Every axis some reduction in ``exprs`` runs over."""
    return {node.size for e in exprs for node in sp.preorder_traversal(sp.sympify(e))
            if is_reduction(node)}


def axes_of(*exprs, first=None) -> tuple:
    """Every axis in ``exprs`` (reductions, free indices, tensors), ``first`` leading, the
    others by name: the order sizes are written in ("N = 2, C = 3")."""
    found = set(reduction_axes(*exprs))
    for e in exprs:
        found |= {s.axis for s in sp.sympify(e).free_symbols if isinstance(s, SampleIndex)}
    for axes in layout(*exprs).values():
        found |= {a for a in axes if a is not None}
    if first is not None:
        found.add(first)
    rest = sorted((a for a in found if a != first), key=lambda s: s.name)
    return ((first,) if first is not None else ()) + tuple(rest)


def size_grid(minimums: dict, top: int, budget: int | None = None):
    """Concrete sizes for the axes of ``minimums`` ({axis: smallest size}), each up to
    ``top``, smallest first: by total size, then by the first axis's size.  ``budget`` bounds
    the product of the sizes (the number of entries of a tensor along every axis), so the cost
    of writing a statement out stays bounded however many axes it has."""
    axes = list(minimums)
    ranges = [range(minimums[a], max(minimums[a], top) + 1) for a in axes]
    grid = []
    for combo in itertools.product(*ranges):
        if budget is not None and len(axes) > 1 and math.prod(combo) > budget:
            continue
        grid.append(combo)
    grid.sort(key=lambda c: (sum(c), c))
    return [dict(zip(axes, c)) for c in grid]


def sizes_text(sizes: dict) -> str:
    """"N = 2, C = 3"."""
    return ", ".join(f"{sp.sstr(a)} = {n}" for a, n in sizes.items())
