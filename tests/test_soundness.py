"""Regression tests: ways a verdict could have been wrong, each closed."""

from __future__ import annotations

import pytest
import sympy as sp

from derive import Batch, Claim, Equation, Grad, Settings, activation, check
from derive.core import all_assumptions

B = Batch("N")
x, u = B.samples("x"), B.samples("u")
i, k, l = B.index("i"), B.index("k"), B.index("l")
b = B.param("b")
FAST = Settings(random_instances=40, hypothesis_examples=20)


def test_a_reduction_by_an_index_of_another_axis_is_rejected():
    C = Batch("M")
    with pytest.raises(ValueError, match="runs over N: a reduction over M"):
        Claim("two.sizes", "two sizes", B, (Equation(C.sum(1, i), C.size),))


def test_a_tensor_indexed_along_two_axes_at_one_position_is_rejected():
    C = Batch("M")
    W = sp.IndexedBase("W", real=True)
    c = C.index("c")
    Claim("two.indices", "matrix", B, (Equation(Grad(W[i, k], W[i, l]), 0),))  # one axis: fine
    with pytest.raises(ValueError, match="indexed along"):
        Claim("two.axes", "mixed", B, (Equation(W[i, c] + W[c, i], 0),))


def test_a_numeric_batch_size_is_rejected():
    with pytest.raises(ValueError, match="batch size must be a name"):
        Batch(sp.Integer(3))


def test_an_undefined_point_is_not_a_counterexample():
    a = B.param("a")
    # true wherever both sides are defined; at a = 0 the left is 0/0, not 0
    claim = Claim("zero.over.zero", "scale cancels", B,
                  (Equation(a * x[i] / B.mean(a * x[i] * a * x[i], i) * a,
                            x[i] / B.mean(x[i] ** 2, i)),))
    assert check(claim, FAST).verdict.status != "refuted"


def test_a_claims_range_bounds_the_counterexample_search():
    pos = B.samples("p")
    claim = Claim("sqrt.square", "sqrt of a square", B,
                  (Equation(sp.sqrt(pos[i] ** 2), pos[i]),), ranges=((pos, (0.1, 5.0)),))
    assert check(claim, FAST).verdict.status != "refuted"


def test_a_positive_sample_base_is_never_given_a_negative_value():
    pos = B.samples("p", positive=True)
    claim = Claim("sqrt.square.pos", "sqrt of a square", B,
                  (Equation(sp.sqrt(pos[i] ** 2), pos[i]),))
    assert check(claim, FAST).verdict.status == "proved"


def test_an_arbitrary_function_without_instances_is_undecided_not_a_crash():
    theta = activation("phi")
    claim = Claim("phi.center", "centering through phi", B,
                  (Equation(B.mean(theta(x[i]) - B.mean(theta(x[i]), i), i), 0),))
    result = check(claim, FAST)
    assert (result.evidence[2].kind, result.evidence[2].holds) == ("numeric", None)
    assert result.verdict.status == "undecided"
    assert "numeric: could not run" in result.verdict.reason


def test_too_little_corroboration_within_a_time_budget_is_not_a_proof(monkeypatch):
    from derive import numeric
    claim = Claim("mean.centered", "centered mean", B,
                  (Equation(B.mean(B.center(u[i] + b, i), i), 0),))
    few = list(numeric.random_instances(claim, 3))
    # as if a deadline had stopped the numeric layer after 3 + 2 instances
    monkeypatch.setattr(numeric, "random_instances", lambda *a, **k: iter(few))
    monkeypatch.setattr(numeric, "hypothesis_check", lambda *a, **k: (2, 0.0, None))
    assert check(claim, FAST).verdict.status == "undecided"


def test_symbol_assumptions_are_listed_with_the_claim():
    a = B.param("a", positive=True)
    claim = Claim("scale", "scale", B, (Equation(a * x[i], x[i] * a),))
    assert "a > 0" in all_assumptions(claim)
