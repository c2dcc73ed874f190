"""``explicit.partial``: the explicit layer's and the step re-checks' derivative of a
written-out value, by the sum, product and power rules (SymPy's ``diff`` for every other
node).  It must agree with ``sympy.diff`` on any expression: drawn here from sums, products,
powers (constant and variable exponents, roots) and functions of several symbols, and
compared at exact points."""

from __future__ import annotations

import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from derive.explicit import partial

x, y, s = sp.Dummy("x", real=True), sp.Dummy("y", real=True), sp.Dummy("s", positive=True)
LEAVES = st.sampled_from([x, y, s, sp.Integer(2), sp.Rational(-1, 3), sp.Integer(0)])


def _combine(children):
    # every value stays bounded at the points below (a power's base between s and 1 + s, a
    # function's argument squashed by tanh), so comparing at 40 digits stays cheap
    pair = st.tuples(children, children)
    return st.one_of(
        pair.map(lambda ab: ab[0] + ab[1]),
        pair.map(lambda ab: ab[0] * ab[1]),
        st.tuples(children, st.sampled_from([2, 3, -1, -2, sp.Rational(1, 2),
                                             sp.Rational(-3, 2)]))
        .map(lambda be: (sp.tanh(be[0]) ** 2 + s) ** be[1]),
        pair.map(lambda ab: (sp.tanh(ab[0]) ** 2 + 1) ** (sp.tanh(ab[1]) / 3)),  # variable
        children.map(sp.tanh),
        children.map(lambda e: sp.exp(sp.tanh(e))),
    )


EXPRESSIONS = st.recursive(LEAVES, _combine, max_leaves=12)
POINTS = [{x: sp.Rational(3, 7), y: sp.Rational(-5, 4), s: sp.Rational(2, 3)},
          {x: sp.Rational(-9, 5), y: sp.Rational(1, 6), s: sp.Rational(7, 2)}]


# 40-digit evaluation of a drawn expression takes from 1 ms to a few hundred: no deadline
@settings(deadline=None)
@given(EXPRESSIONS, st.sampled_from([x, y, s]))
def test_partial_agrees_with_sympy_diff_at_exact_points(expr, var):
    mine, theirs = partial(expr, var), sp.diff(expr, var)
    for point in POINTS:
        a, b = sp.N(mine.xreplace(point), 40), sp.N(theirs.xreplace(point), 40)
        # 40 digits: agreement to 30 of them, relative to the size of the value
        assert abs(a - b) <= sp.Float("1e-30", 40) * (1 + abs(b)), (expr, var, mine, theirs)


def test_a_shared_subexpression_and_a_free_node():
    shared = (x * y + s) ** sp.Rational(1, 2)
    expr = shared * x + shared ** 3 + y * s
    assert sp.simplify(partial(expr, x) - sp.diff(expr, x)) == 0
    assert partial(y * s + 4, x) == 0 and partial(x, x) == 1
