"""The numeric layer over several named axes, and its second derivatives.

Each statement that should hold is paired with a wrong one that must fail, so a layer that
answered "holds" to everything (or "fails" to everything) fails this file.
"""

import math

import numpy as np
import pytest
import sympy as sp

from derive import numeric
from derive.calculus import Axis, Batch, Grad, Held
from derive.core import Claim, Equation, Unsupported
from derive.numeric import Compiled, Context, Instance

TOL = numeric.TOLERANCE
delta = sp.KroneckerDelta

# -- two axes: N samples, C channels ---------------------------------------------------------

N, C = Axis("N"), Axis("C")
x, g, bias = N.samples("x"), N.samples("g"), N.samples("b")   # x[n, c], g[n, c], b[c]
n, c, d, e = N.index("n"), C.index("c"), C.index("d"), C.index("e")
k = N.index("k")
a0 = N.param("a")


def holds(claim, count=25, max_examples=40):
    """(worst error over seeded instances, the shrunk Hypothesis failure or None)."""
    worst = max(numeric.instance_error(claim, inst)
                for inst in numeric.random_instances(claim, count))
    _, _, failure = numeric.hypothesis_check(claim, max_examples)
    return worst, failure


def per_channel_centering(v):
    return v - N.mean(v, n)            # over the batch axis: one mean per channel


def per_sample_centering(v):
    return v - C.mean(v, c)            # over the channel axis: one mean per sample


CENTERED_SUMS = Claim("axes.centered-sums", "per-channel centering sums to 0 over N", N,
                      (Equation(N.sum(per_channel_centering(x[n, c]), n), 0),))
WRONG_AXIS = Claim("axes.centered-sums-wrong-axis", "centering over C sums to 0 over N", N,
                   (Equation(N.sum(per_sample_centering(x[n, c]), n), 0),))


def test_claim_over_two_axes_has_both():
    assert CENTERED_SUMS.axes == (N.size, C.size)
    assert numeric.is_multi_axis(CENTERED_SUMS)


def test_per_channel_centering_sums_to_zero_over_the_batch():
    worst, failure = holds(CENTERED_SUMS)
    assert worst <= TOL and failure is None


def test_centering_over_the_wrong_axis_fails_with_every_size_reported():
    worst, failure = holds(WRONG_AXIS)
    assert worst > TOL and failure is not None
    report = numeric.instance_json(failure)
    assert set(report) >= {"N", "C", "x"}
    assert report["N"] == failure.sizes[N.size] and report["C"] == failure.sizes[C.size]
    assert np.shape(report["x"]) == (report["N"], report["C"])  # x[n, c] -> x[n-1][c-1]
    # it fails only with two channels or more: the shrunk failure is the smallest such
    assert report["C"] == 2 and report["N"] == 1


BIAS_BN = Claim("axes.bias-bn", "a per-channel mean cancels a per-channel bias", N,
                (Equation(per_channel_centering(x[n, c] + bias[c]),
                          per_channel_centering(x[n, c])),))
BIAS_LN = Claim("axes.bias-ln", "a per-sample mean cancels a per-channel bias", N,
                (Equation(per_sample_centering(x[n, c] + bias[c]),
                          per_sample_centering(x[n, c])),))


def test_a_per_channel_bias_is_a_vector_over_channels():
    inst = next(numeric.random_instances(BIAS_BN, 1))
    assert inst.samples[bias].shape == (inst.sizes[C.size],)
    assert inst.samples[x].shape == (inst.sizes[N.size], inst.sizes[C.size])


def test_per_channel_mean_cancels_a_per_channel_bias():
    worst, failure = holds(BIAS_BN)
    assert worst <= TOL and failure is None


def test_per_sample_mean_does_not_cancel_a_per_channel_bias():
    worst, failure = holds(BIAS_LN)
    assert worst > TOL and failure is not None
    assert failure.sizes[C.size] >= 2


def bn_loss(v):
    mu = N.mean(v, n)
    return N.sum(C.sum(g[n, c] * (v - mu) / sp.sqrt(N.mean((v - mu) ** 2, n) + 1), c), n)


def ln_loss(v):
    mu = C.mean(v, c)
    return N.sum(C.sum(g[n, c] * (v - mu) / sp.sqrt(C.mean((v - mu) ** 2, c) + 1), c), n)


def test_gradient_in_a_per_channel_bias_vanishes_through_batchnorm_not_layernorm():
    before_bn = Claim("axes.grad-bn", "t", N, (Equation(Grad(bn_loss(x[n, c] + bias[c]),
                                                             bias[d]), 0),))
    before_ln = Claim("axes.grad-ln", "t", N, (Equation(Grad(ln_loss(x[n, c] + bias[c]),
                                                             bias[d]), 0),))
    assert holds(before_bn)[0] <= TOL
    assert holds(before_ln)[0] > TOL


def test_a_sum_of_a_constant_multiplies_by_its_own_axis_size():
    right = Claim("axes.constant-sum", "t", N, (Equation(C.sum(a0, c), C.size * a0),),
                  min_sizes=((C.size, 1),))
    wrong = Claim("axes.constant-sum-wrong", "t", N, (Equation(C.sum(a0 + 0 * x[n, c], c),
                                                               N.size * a0),))
    assert holds(right)[1] is None
    assert holds(wrong)[1] is not None


def test_kronecker_delta_of_one_axis_is_an_identity_of_that_length():
    jac = Claim("axes.jacobian", "d x[n, c] / d x[k, d] = delta_nk delta_cd", N,
                (Equation(Grad(x[n, c], x[k, d]), delta(n, k) * delta(c, d)),))
    wrong = Claim("axes.jacobian-wrong", "t", N,
                  (Equation(Grad(x[n, c], x[k, d]), delta(n, k)),))
    assert holds(jac) == (0.0, None)
    assert holds(wrong)[1] is not None


def test_compiled_two_axis_values_have_one_array_axis_per_index():
    sizes = {N.size: 3, C.size: 4}
    values = np.arange(12.0).reshape(3, 4)
    out = Compiled(per_channel_centering(x[n, c]), [c, n], N.size)(
        Context(3, {x: values}, {}, sizes=sizes))
    # free indices in the order given: c first, then n
    assert np.allclose(np.asarray(out)[:, :, 0, 0, 0, 0, 0].real,
                       (values - values.mean(axis=0)).T)


def test_every_axis_needs_a_size_in_the_instance():
    compiled = Compiled(C.size * a0, [], N.size)
    assert compiled(Context(2, {}, {a0: 1.5}, sizes={N.size: 2, C.size: 3})) == 4.5
    with pytest.raises(Unsupported):
        compiled(Context(2, {}, {a0: 1.5}, sizes={N.size: 2}))


# -- drawing sizes per axis ---------------------------------------------------------------------

DRAWN = Claim("axes.drawn", "t", N, (Equation(N.sum(per_channel_centering(x[n, c]), n), 0),),
              min_sizes=((C.size, 2),))


def test_hypothesis_draws_several_sizes_per_axis_within_the_bounds():
    seen = []

    def error(inst):
        seen.append(dict(inst.sizes))
        assert inst.samples[x].shape == (inst.sizes[N.size], inst.sizes[C.size])
        return 0.0

    numeric.hypothesis_check(DRAWN, 60, error=error)
    assert len({s[N.size] for s in seen}) >= 3
    assert len({s[C.size] for s in seen}) >= 3
    assert all(s[C.size] >= 2 and s[N.size] >= 1 for s in seen)
    assert all(s[N.size] * s[C.size] <= numeric.MAX_ENTRIES for s in seen)


def test_hypothesis_shrinks_every_size_to_its_minimum():
    always_wrong = Claim("axes.always-wrong", "t", N, (Equation(x[n, c] + 1, x[n, c]),),
                         min_sizes=((C.size, 2),))
    _, _, failure = numeric.hypothesis_check(always_wrong, 30)
    assert failure.sizes == {N.size: 1, C.size: 2}


def test_random_instances_draw_several_sizes_per_axis_within_the_bounds():
    drawn = [inst.sizes for inst in numeric.random_instances(DRAWN, 60)]
    assert len({s[N.size] for s in drawn}) >= 3 and len({s[C.size] for s in drawn}) >= 3
    assert all(s[C.size] >= 2 and s[N.size] * s[C.size] <= numeric.MAX_ENTRIES for s in drawn)


def test_one_axis_instances_carry_no_sizes():
    B = Batch("N")
    u, i = B.samples("u"), B.index("i")
    claim = Claim("axes.one", "t", B, (Equation(B.center(u[i], i), u[i] - B.mean(u[i], i)),))
    assert all(inst.sizes is None for inst in numeric.random_instances(claim, 5))
    assert list(numeric.instance_json(next(numeric.random_instances(claim, 1)))) == ["N", "u"]


def test_a_square_tensor_of_one_axis_is_drawn_square():
    B1 = Batch("N")
    A, i1 = B1.samples("A"), B1.index("i")
    trace = Claim("axes.trace", "t", B1, (Equation(B1.sum(A[i1, i1], i1),
                                                   B1.sum(A[i1, i1] + 0 * i1, i1)),))
    wrong = Claim("axes.trace-wrong", "t", B1, (Equation(B1.sum(A[i1, i1], i1),
                                                         B1.sum(A[i1, i1], i1) + 1),))
    inst = next(numeric.random_instances(trace, 1))
    assert inst.samples[A].shape == (inst.size, inst.size)
    assert holds(trace) == (0.0, None)
    assert holds(wrong)[1] is not None
    values = np.arange(9.0).reshape(3, 3)
    total = Compiled(B1.sum(A[i1, i1], i1), [], B1.size)(Context(3, {A: values}, {}))
    assert np.ravel(total)[0] == np.trace(values)


# -- second derivatives -------------------------------------------------------------------------

B = Batch("N")
M = B.size
u, w, y = B.samples("u"), B.samples("w"), B.samples("y")
i, j2, m = B.index("i"), B.index("k"), B.index("m")
b, s = B.params("b", "s")
eps = B.param("epsilon", positive=True)


def normalized(v):
    mu = B.mean(v, i)
    return (v - mu) / sp.sqrt(B.mean((v - mu) ** 2, i) + eps)


# A BN-like loss in a scale b of its input: L(b) = E[w_i * BN(b u)_i] = G b (b^2 S + eps)^(-1/2)
# with G = E[w (u - E u)] and S = Var(u), so by hand
#   dL/db = G eps (b^2 S + eps)^(-3/2),   d^2L/db^2 = -3 G eps b S (b^2 S + eps)^(-5/2).
BN_LOSS = B.mean(w[i] * normalized(b * u[i]), i)
G_ = B.mean(w[i] * (u[i] - B.mean(u[i], i)), i)
S_ = B.mean((u[i] - B.mean(u[i], i)) ** 2, i)
CURVATURE = -3 * G_ * eps * b * S_ * (b ** 2 * S_ + eps) ** sp.Rational(-5, 2)


def test_second_derivative_of_a_bn_loss_matches_the_hand_derived_formula():
    claim = Claim("second.bn", "t", B, (Equation(Grad(Grad(BN_LOSS, b), b), CURVATURE),),
                  min_size=2)
    worst, failure = holds(claim, count=40, max_examples=60)
    assert worst <= numeric.SECOND_ORDER_TOLERANCE and failure is None
    assert numeric.claim_tolerance(claim) == numeric.SECOND_ORDER_TOLERANCE


def test_second_derivative_with_a_factor_two_slip_fails():
    claim = Claim("second.bn-slip", "t", B, (Equation(Grad(Grad(BN_LOSS, b), b),
                                                      2 * CURVATURE),), min_size=2)
    worst, failure = holds(claim)
    assert worst > numeric.SECOND_ORDER_TOLERANCE and failure is not None


def test_second_derivative_is_exact_to_rounding_not_to_a_step():
    # the errors of the dual-over-complex-step method are round-off: far below the tolerance
    claim = Claim("second.bn-error", "t", B, (Equation(Grad(Grad(BN_LOSS, b), b), CURVATURE),),
                  min_size=2)
    worst = max(numeric.instance_error(claim, inst)
                for inst in numeric.random_instances(claim, 200, seed=7))
    assert worst < 1e-12


def test_mixed_derivative_of_centering_is_zero():
    centered = B.center(u[m], i)        # linear in u: every second derivative vanishes
    right = Claim("second.mixed", "t", B, (Equation(Grad(Grad(centered, u[i]), u[j2]), 0),))
    wrong = Claim("second.mixed-wrong", "t", B,
                  (Equation(Grad(Grad(centered, u[i]), u[j2]), delta(i, j2) / M),))
    assert holds(right) == (0.0, None)
    worst, failure = holds(wrong)
    assert worst > TOL and failure is not None


def test_hessian_of_the_variance():
    var = B.mean((u[i] - B.mean(u[i], i)) ** 2, i)
    right = Claim("second.hessian", "t", B, (Equation(Grad(Grad(var, u[m]), u[j2]),
                                                      2 * (delta(m, j2) - 1 / M) / M),))
    wrong = Claim("second.hessian-wrong", "t", B, (Equation(Grad(Grad(var, u[m]), u[j2]),
                                                            2 * delta(m, j2) / M),))
    assert holds(right)[0] <= TOL
    assert holds(wrong)[1] is not None


def test_mixed_parameter_and_sample_derivative():
    # f = E[sin(b u)]: d/du_k (df/db) = (cos(b u_k) - b u_k sin(b u_k)) / N
    f = B.mean(sp.sin(b * u[i]), i)
    rhs = (sp.cos(b * u[j2]) - b * u[j2] * sp.sin(b * u[j2])) / M
    right = Claim("second.param-sample", "t", B, (Equation(Grad(Grad(f, b), u[j2]), rhs),))
    swapped = Claim("second.sample-param", "t", B, (Equation(Grad(Grad(f, u[j2]), b), rhs),))
    wrong = Claim("second.param-sample-wrong", "t", B,
                  (Equation(Grad(Grad(f, b), u[j2]), sp.cos(b * u[j2]) / M),))
    assert holds(right)[0] <= TOL and holds(swapped)[0] <= TOL
    assert holds(wrong)[1] is not None


def test_a_held_statistic_has_zero_derivative_under_both_derivatives():
    mean = B.mean(u[i] + b, i)
    # f = b * E^2: f'' = 4 E + 2 b through the mean; 0 with the mean held
    free = Claim("second.not-held", "t", B, (Equation(Grad(Grad(b * mean ** 2, b), b),
                                                      4 * mean + 2 * b),))
    held_ = Claim("second.held", "t", B, (Equation(Grad(Grad(b * Held(mean) ** 2, b), b), 0),))
    held_wrong = Claim("second.held-wrong", "t", B,
                       (Equation(Grad(Grad(b * Held(mean) ** 2, b), b), 4 * mean + 2 * b),))
    assert holds(free)[0] <= TOL
    assert holds(held_)[0] <= TOL
    assert holds(held_wrong)[1] is not None


def test_a_held_inner_derivative_is_a_constant_of_the_outer_one():
    f = B.mean((u[i] + b) ** 3, i)
    inner = Grad(f, b)                           # 3 E[(u + b)^2]
    right = Claim("second.held-inner", "t", B, (Equation(Grad(b * Held(inner), b), inner),))
    wrong = Claim("second.held-inner-wrong", "t", B,
                  (Equation(Grad(b * Held(inner), b), inner + b * Grad(inner, b)),))
    assert holds(right)[0] <= TOL
    assert holds(wrong)[1] is not None


def test_nested_derivatives_at_a_node_value():
    # f = s^2 b at s = A = b^3: inner 2 s b at s = A -> 2 b^4, outer 8 b^3
    f = s ** 2 * b + B.mean(u[i], i)
    outer_of_at = Claim("second.at-inner", "t", B,
                        (Equation(Grad(Grad(f, s, at=b ** 3), b), 8 * b ** 3),))
    # inner df/db = s^2 (+ 0), outer d/ds at s = b^3 -> 2 b^3
    at_outer = Claim("second.at-outer", "t", B,
                     (Equation(Grad(Grad(f, b), s, at=b ** 3), 2 * b ** 3),))
    wrong = Claim("second.at-wrong", "t", B,
                  (Equation(Grad(Grad(f, s, at=b ** 3), b), 2 * b ** 4),))
    assert holds(outer_of_at)[0] <= TOL and holds(at_outer)[0] <= TOL
    assert holds(wrong)[1] is not None


def test_second_derivatives_over_two_axes():
    # f = sum_n sum_c g[n, c] x[n, c]^3: d^2 f / dx[k, d] dx[n, e] = 6 g x delta_kn delta_de
    f = N.sum(C.sum(g[n, c] * x[n, c] ** 3, c), n)
    p = N.index("p")
    rhs = 6 * g[k, d] * x[k, d] * delta(k, p) * delta(d, e)
    right = Claim("second.axes", "t", N, (Equation(Grad(Grad(f, x[k, d]), x[p, e]), rhs),))
    wrong = Claim("second.axes-wrong", "t", N,
                  (Equation(Grad(Grad(f, x[k, d]), x[p, e]), 6 * g[k, d] * x[k, d]
                            * delta(k, p)),))   # the channel delta forgotten
    assert holds(right)[0] <= TOL
    worst, failure = holds(wrong)
    assert failure is not None and failure.sizes[C.size] >= 2


def test_curvature_in_a_per_channel_bias_before_batchnorm_vanishes():
    loss = bn_loss(x[n, c] + bias[c])
    right = Claim("second.bn-bias", "t", N, (Equation(Grad(Grad(loss, bias[d]), bias[e]), 0),),
                  min_size=2)
    ln = ln_loss(x[n, c] + bias[c])
    wrong = Claim("second.ln-bias", "t", N, (Equation(Grad(Grad(ln, bias[d]), bias[e]), 0),),
                  min_sizes=((C.size, 2),))
    assert holds(right)[0] <= 1e-9
    assert holds(wrong)[1] is not None


def test_the_example_second_derivative_claims():
    B2 = Batch("N")
    v, i2, k2 = B2.samples("u"), B2.index("i"), B2.index("k")
    beta = B2.param("b")
    xx = v[i2] + beta
    loss = B2.mean(sp.sin(B2.center(xx, i2)) ** 2, i2)
    curvature = Claim("second.ex", "t", B2, (Equation(Grad(Grad(loss, beta), beta), 0),
                                             Equation(Grad(Grad(loss, beta), v[k2]), 0)))
    held_loss = B2.mean(sp.sin(xx - Held(B2.mean(xx, i2))) ** 2, i2)
    naive = Claim("second.ex-held", "t", B2, (Equation(Grad(Grad(held_loss, beta), beta), 0),))
    assert holds(curvature)[0] <= TOL
    assert holds(naive)[1] is not None


def test_third_derivatives_are_refused_in_a_sentence():
    claim = Claim("third", "t", B, (Equation(Grad(Grad(Grad(b ** 4, b), b), b), 24 * b),))
    with pytest.raises(Unsupported, match="third"):
        numeric.instance_error(claim, Instance(1, {}, {b: 1.0}))


def test_the_first_derivative_tolerance_is_the_layers_own():
    claim = Claim("first", "t", B, (Equation(Grad(b ** 2, b), 2 * b),))
    assert numeric.claim_tolerance(claim) == numeric.TOLERANCE
    assert not math.isnan(numeric.instance_error(claim, Instance(1, {}, {b: 1.0})))
