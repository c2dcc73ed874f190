"""Adversarial claims over several axes, the automatic domain and the search beyond small
sizes: a false statement is never proved, and a refutation always rests on a counterexample
the independent re-check confirms.

Each case can fail: a wrong rule, a blind layer or a dishonest domain turns its verdict.
"""

from __future__ import annotations

import sympy as sp

from derive import Axis, Claim, Equation, Grad, check, held, recheck
from derive.core import PROVED, REFUTED, UNDECIDED
from derive.rules import normal_form
from derive.verify import Settings, implicit_domain, statement_scope

FAST = Settings(frameworks=(), random_instances=60, hypothesis_examples=30)

N, C = Axis("N"), Axis("C")
x, y, g = N.samples("x"), N.samples("y"), N.samples("g")
z = C.samples("z")
n, k, m = N.index("n"), N.index("k"), N.index("m")
c, d, e = C.index("c"), C.index("d"), C.index("e")

mu = N.mean(x[n], n)
var = N.mean((x[n] - mu) ** 2, n)
var_c = C.mean((z[c] - C.mean(z[c], c)) ** 2, c)


def claim(name, lhs, rhs, **kw):
    return Claim(f"soundness-axes.{name}", name, N, (Equation(lhs, rhs),), **kw)


def verdict(cl):
    return check(cl, FAST).verdict


def assert_refuted_and_confirmed(cl, sizes=None):
    v = verdict(cl)
    assert v.status == REFUTED, v.reason
    assert recheck.confirm(cl, v.counterexample).confirmed is True
    if sizes is not None:
        assert v.counterexample.all_sizes(cl) == sizes
    return v


# -- a root taken as a value does not make a statement undefined -----------------------------

def test_a_root_of_a_zero_variance_is_a_value_so_n_1_is_checked():
    # sign(sqrt(var)) = 1 fails at N = 1, where var = 0 and the statement is sign(0) = 0: it is
    # defined there.  Raising N to 2 ("defined for N >= 2") left it undecided with a false
    # note; it is refuted at N = 1.
    cl = claim("sign-root", sp.sign(sp.sqrt(var)), 1)
    assert statement_scope(cl).claim is cl
    assert implicit_domain(cl) == (var,)        # still a statistic of the domain
    v = assert_refuted_and_confirmed(cl, {N.size: 1})
    assert "defined for" not in v.reason


def test_a_root_of_a_zero_variance_over_another_axis_is_a_value_too():
    cl = claim("sign-root-c", sp.sign(sp.sqrt(var_c)) * x[k], x[k])
    assert statement_scope(cl).claim is cl
    assert_refuted_and_confirmed(cl, {N.size: 1, C.size: 1})


def test_a_root_inside_a_derivative_still_raises_the_smallest_size():
    # d sqrt(var) / dx_k divides by sqrt(var): undefined at N = 1
    cl = claim("grad-root", Grad(sp.sqrt(var), x[k]), (x[k] - mu) / (N.size * sp.sqrt(var)))
    scope = statement_scope(cl)
    assert scope.defined_from == {N.size: 2}
    assert verdict(cl).status == PROVED


def test_a_divisor_raises_the_smallest_size_and_the_verdict_says_so():
    xh = (x[k] - mu) / sp.sqrt(var)
    v = verdict(claim("wrong-std", xh, x[k] - mu))
    assert v.status == REFUTED and v.counterexample.size == 2
    assert "defined for N >= 2" in v.reason


# -- deltas, held statistics and derivatives across axes ---------------------------------------

def test_a_delta_between_a_sample_and_a_channel_index_is_not_sifted():
    body = C.sum(sp.KroneckerDelta(k, c) * z[c], c)
    assert normal_form(body).has(sp.KroneckerDelta)
    assert_refuted_and_confirmed(claim("delta-free-cross", C.sum(sp.KroneckerDelta(k, c), c), 1),
                                 {N.size: 2, C.size: 1})


def test_a_delta_between_two_bound_indices_of_different_axes_is_not_sifted():
    assert_refuted_and_confirmed(
        claim("delta-bound-cross", N.sum(C.sum(sp.KroneckerDelta(n, c), c), n), N.size),
        {N.size: 2, C.size: 1})
    assert_refuted_and_confirmed(
        claim("delta-bound-cross-y", N.sum(C.sum(sp.KroneckerDelta(n, c) * y[n], c), n),
              N.sum(y[n], n)))


def test_a_delta_with_an_outer_index_of_its_own_axis_is_sifted():
    lhs = N.sum(C.sum(N.sum(sp.KroneckerDelta(n, m) * x[n, c], n), c), m)
    assert verdict(claim("sift-outer", lhs, N.sum(C.sum(x[n, c], c), n))).status == PROVED
    assert_refuted_and_confirmed(claim("sift-outer-wrong", lhs, N.sum(x[n, 1], n)))


HELD_LOSS = N.sum(C.sum(g[n, c] * (x[n, c] - held(C.mean(x[n, c], c))), c), n)


def test_a_held_statistic_inside_two_axes_has_no_gradient():
    assert verdict(claim("held-true", Grad(HELD_LOSS, x[k, d]), g[k, d])).status == PROVED
    assert_refuted_and_confirmed(
        claim("held-false", Grad(HELD_LOSS, x[k, d]), g[k, d] - C.mean(g[k, c], c)))


def test_a_derivative_by_an_entry_indexed_by_outer_bound_indices_of_two_axes():
    inner = N.mean(C.mean(x[n, c] ** 2, c), n)
    lhs = N.sum(C.sum(Grad(inner, x[k, d]), d), k)
    assert verdict(claim("bound-wrt", lhs, 2 * N.mean(C.mean(x[n, c], c), n))).status == PROVED
    assert_refuted_and_confirmed(claim("bound-wrt-false", lhs, 2 * N.mean(C.sum(x[n, c], c), n)))


def test_a_second_derivative_over_two_axes_keeps_both_deltas():
    f = N.sum(C.sum(x[n, c] ** 3, c), n)
    second = Grad(Grad(f, x[k, d]), x[m, e])
    right = 6 * x[k, d] * sp.KroneckerDelta(k, m) * sp.KroneckerDelta(d, e)
    assert verdict(claim("second", second, right)).status == PROVED
    assert_refuted_and_confirmed(
        claim("second-false", second, 6 * x[k, d] * sp.KroneckerDelta(k, m)))


# -- sizes: one axis against another, factors in the sizes, the search beyond ------------------

def test_a_statement_failing_only_off_the_diagonal_is_refuted():
    # a proof step is re-checked with every axis at one size, where (N - C) vanishes
    assert_refuted_and_confirmed(claim("diag", (N.size - C.size) * x[k, c] + x[k, c], x[k, c]),
                                 {N.size: 1, C.size: 2})


def test_a_statement_failing_only_from_n_9_is_refuted_there():
    factor = sp.prod([N.size - t for t in range(1, 9)])
    assert_refuted_and_confirmed(claim("beyond9", x[k] + factor * x[k], x[k]), {N.size: 9})


def test_an_axis_size_as_a_value_is_its_size():
    assert verdict(claim("size-value", C.sum(x[k, c], c),
                         C.size * C.mean(x[k, c], c))).status == PROVED
    assert_refuted_and_confirmed(claim("size-value-false", C.sum(x[k, c], c),
                                       N.size * C.mean(x[k, c], c)))


def test_a_parameter_named_like_an_axis_is_not_the_axis():
    c_param = N.param("C")
    v = assert_refuted_and_confirmed(claim("param-named-C", C.sum(x[k, c], c),
                                           c_param * C.mean(x[k, c], c)))
    assert v.counterexample.values["C"] != v.counterexample.all_sizes(
        claim("param-named-C", C.sum(x[k, c], c), c_param * C.mean(x[k, c], c)))[C.size]


def test_two_indices_with_one_name_on_two_axes_are_never_refuted_by_confusion():
    j_n, j_c = N.index("j"), C.index("j")
    v = verdict(claim("same-name", sp.KroneckerDelta(j_n, j_c) * x[j_n, j_c], x[j_n, j_c]))
    assert v.status in (REFUTED, UNDECIDED)
    if v.status == REFUTED:
        cl = claim("same-name", sp.KroneckerDelta(j_n, j_c) * x[j_n, j_c], x[j_n, j_c])
        assert recheck.confirm(cl, v.counterexample).confirmed is True


def test_a_term_vanishing_when_either_axis_is_1_is_refuted_where_both_exceed_1():
    lhs = (N.size - 1) * (C.size - 1) * x[k, c] + x[k, c]
    cl = claim("both-above-1", lhs, x[k, c])
    v = assert_refuted_and_confirmed(cl)
    found = v.counterexample.all_sizes(cl)
    assert found[N.size] >= 2 and found[C.size] >= 2
