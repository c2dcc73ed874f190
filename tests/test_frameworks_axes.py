"""The autograd layers on claims over several named axes (x[n, c]) and on derivatives of
derivatives (double backward).  Each test runs once per framework and is skipped, with the
reason, when that framework is not installed."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from derive import Axis, Batch, Claim, Equation, Grad, held
from derive import frameworks
from derive.axes import layout
from derive.frameworks.program import Program
from derive.verify import Settings

from conftest import rejected_at_first_failure

SETTINGS = Settings(framework_examples=30)


@pytest.fixture(params=frameworks.FRAMEWORKS)
def xp(request):
    pytest.importorskip(request.param, reason=f"{request.param} is not installed: "
                                              f"{frameworks.INSTALL[request.param]}")
    return frameworks.backend(request.param)


def check(claim, xp):
    return frameworks.layer(claim, xp.name, SETTINGS)


def refuted(claim, xp) -> bool:
    """Rejected at the first failing instance (the shrunk failures are
    test_a_per_channel_centering's)."""
    return rejected_at_first_failure(claim, xp.name, SETTINGS)


# -- several axes ------------------------------------------------------------------------------

N, C = Axis("N"), Axis("C")
x, g, b = N.samples("x"), N.samples("g"), N.samples("b")
n, m, c, d = N.index("n"), N.index("m"), C.index("c"), C.index("d")
eps = N.param("epsilon", positive=True)


def loss(y):
    """sum over n and c of g[n, c] * y(n, c)."""
    return N.sum(C.sum(g[n, c] * y, c), n)


def batch_norm(v):      # per channel, over the batch axis n
    mu = N.mean(v, n)
    return (v - mu) / sp.sqrt(N.mean((v - mu) ** 2, n) + eps)


def layer_norm(v):      # per sample, over the channel axis c
    mu = C.mean(v, c)
    return (v - mu) / sp.sqrt(C.mean((v - mu) ** 2, c) + eps)


def evaluate_axes(xp, expr, indices, samples, params, sizes):
    """``expr`` on one instance of a claim over several axes, cut to the real sizes."""
    widths = {a: 8 for a in sizes}
    run = xp.runner([Program(expr, list(indices), N.size, xp)], widths=widths,
                    layout=layout(expr))
    value = np.asarray(run(sizes[N.size], samples, params, sizes)[0])
    cut = tuple(slice(0, sizes[i.axis]) for i in indices)
    return value[cut].reshape([sizes[i.axis] for i in indices])


def test_a_per_channel_centering_over_the_batch_axis(xp):
    """d/dx[m, d] of sum g * (x - E_n x) is g[m, d] - E_n g[n, d]; centering over C is not."""
    lhs = Grad(loss(x[n, c] - N.mean(x[n, c], n)), x[m, d])
    right = Claim("axes.centering", "per-channel centering", N,
                  (Equation(lhs, g[m, d] - N.mean(g[n, d], n)),))
    wrong = Claim("axes.centering-wrong-axis", "centered over the channels", N,
                  (Equation(lhs, g[m, d] - C.mean(g[m, c], c)),))
    assert right.axes == (N.size, C.size)
    ev = check(right, xp)
    assert ev.holds is True, ev.summary
    assert ev.details["instances"] >= 20 and ev.details["max_error"] <= 1e-8
    assert ev.details["axes"] == {"N": [1, 8], "C": [1, 8]}
    assert "N = 1..8, C = 1..8" in ev.summary
    bad = check(wrong, xp)
    assert bad.holds is False
    # the failure names every axis's size, and its instance has a value per entry
    instance = bad.details["failure"]["instance"]
    assert f"at N = {instance['N']}, C = {instance['C']} " in bad.summary
    assert np.shape(instance["x"]) == (instance["N"], instance["C"])


def test_each_axis_has_its_own_length(xp):
    """N = 3, C = 2: the gradient of the per-channel centering, against NumPy, entry by entry
    (an axis given the other's length, or a reduction over the wrong array axis, shows)."""
    rng = np.random.default_rng(1)
    xs, gs = rng.normal(size=(3, 2)), rng.normal(size=(3, 2))
    sizes = {N.size: 3, C.size: 2}
    expr = Grad(loss(x[n, c] - N.mean(x[n, c], n)), x[m, d])
    got = evaluate_axes(xp, expr, [d, m], {x: xs, g: gs}, {}, sizes)   # free: d, m by name
    want = (gs - gs.mean(axis=0)).T                                    # [d, m]
    assert got == pytest.approx(want, abs=1e-12)
    normalized = evaluate_axes(xp, batch_norm(x[n, c]), [c, n], {x: xs}, {eps: 0.1}, sizes)
    byhand = (xs - xs.mean(axis=0)) / np.sqrt(xs.var(axis=0) + 0.1)
    assert normalized == pytest.approx(byhand.T, abs=1e-12)


def test_a_per_channel_bias_through_batch_norm_and_layer_norm(xp):
    """b[c] is constant along n: BatchNorm (over N) gives it zero gradient; LayerNorm (over
    C) does not."""
    through_bn = Grad(loss(batch_norm(x[n, c] + b[c])), b[d])
    through_ln = Grad(loss(layer_norm(x[n, c] + b[c])), b[d])
    bn_claim = Claim("axes.bias-bn", "bias before BN", N, (Equation(through_bn, 0),))
    ln_claim = Claim("axes.bias-ln", "bias before LN", N, (Equation(through_ln, 0),))
    ev = check(bn_claim, xp)
    assert ev.holds is True, ev.summary
    assert refuted(ln_claim, xp)
    # the LayerNorm gradient on one instance: nonzero, and what NumPy's finite difference says
    rng = np.random.default_rng(2)
    xs, gs, bs = rng.normal(size=(2, 3)), rng.normal(size=(2, 3)), rng.normal(size=3)
    sizes = {N.size: 2, C.size: 3}
    got = evaluate_axes(xp, through_ln, [d], {x: xs, g: gs, b: bs}, {eps: 0.5}, sizes)
    assert np.abs(got).max() > 1e-3
    zero = evaluate_axes(xp, through_bn, [d], {x: xs, g: gs, b: bs}, {eps: 0.5}, sizes)
    assert zero == pytest.approx(np.zeros(3), abs=1e-12)

    def ln_loss(bias):
        v = xs + bias
        y = (v - v.mean(axis=1, keepdims=True)) / np.sqrt(v.var(axis=1, keepdims=True) + 0.5)
        return float((gs * y).sum())
    h = 1e-6
    fd = [(ln_loss(bs + h * e) - ln_loss(bs - h * e)) / (2 * h) for e in np.eye(3)]
    assert got == pytest.approx(np.array(fd), abs=1e-7)


# -- second derivatives ------------------------------------------------------------------------

B = Batch("N")
u, w = B.samples("u"), B.samples("w")
i, k = B.index("i"), B.index("k")
beta = B.param("beta")
e = B.param("e", positive=True)          # epsilon, differentiated twice
V = B.param("V", positive=True)          # the variance as a node (Grad(..., V, at=var))

mu = B.mean(u[i], i)
var = B.mean((u[i] - mu) ** 2, i)
s = sp.sqrt(var + e)
xhat = (u[i] - mu) / s
bn_loss = B.sum(w[i] * xhat, i)           # sum_i w_i xhat_i: the BN backward's loss
wbar, G = B.mean(w[i], i), B.mean(w[i] * xhat, i)
xhat_k = xhat.xreplace({i: k})


def second(name, lhs, rhs, **kw):
    return Claim(f"second.{name}", name, B, (Equation(lhs, rhs),), **kw)


def test_the_curvature_in_epsilon(xp):
    """d^2/de^2 sum w (u - mu)/sqrt(var + e) = 3/4 sum w (u - mu) (var + e)^(-5/2)."""
    lhs = Grad(Grad(bn_loss, e), e)
    rhs = sp.Rational(3, 4) * B.sum(w[i] * (u[i] - mu), i) * (var + e) ** sp.Rational(-5, 2)
    ev = check(second("curvature-eps", lhs, rhs), xp)
    assert ev.holds is True, ev.summary
    assert refuted(second("curvature-eps-sign", lhs, -rhs), xp)
    assert refuted(second("curvature-eps-half", lhs, rhs * 2 / 3), xp)


def test_the_hessian_of_the_batchnorm_loss(xp):
    """d/du_k d/du_i sum_j w_j xhat_j =
    (-G (delta_ik - 1/N) - (xhat_k (w_i - wbar) + xhat_i (w_k - wbar))/N
     + 3 G xhat_i xhat_k / N) / (var + e)."""
    Nn = B.size
    lhs = Grad(Grad(bn_loss, u[i]), u[k])
    hessian = (-G * (sp.KroneckerDelta(i, k) - 1 / Nn)
               - (xhat_k * (w[i] - wbar) + xhat * (w[k] - wbar)) / Nn
               + 3 * G * xhat * xhat_k / Nn) / (var + e)
    ev = check(second("bn-hessian", lhs, hessian), xp)
    assert ev.holds is True, ev.summary
    slip = hessian + 2 * G * sp.KroneckerDelta(i, k) / (var + e)     # the delta's sign
    assert refuted(second("bn-hessian-sign", lhs, slip), xp)
    factor = hessian - 2 * G * xhat * xhat_k / Nn / (var + e)        # 3 G -> G
    assert refuted(second("bn-hessian-factor", lhs, factor), xp)


def test_the_hessian_on_one_batch_against_finite_differences(xp):
    """The double backward itself, entry by entry (not only "both sides agree")."""
    values = {u: [0.3, -1.2, 2.5, 0.4], w: [1.0, -0.5, 0.25, 2.0]}
    run = xp.runner([Program(Grad(Grad(bn_loss, u[i]), u[k]), [i, k], B.size, xp)])
    got = np.asarray(run(4, {a: np.asarray(v) for a, v in values.items()}, {e: 0.3})[0])
    got = got[:4, :4].reshape(4, 4)
    ws = np.asarray(values[w])

    def grad(us):   # the first derivative by hand (the BN backward), differenced once more
        sd = np.sqrt(us.var() + 0.3)
        xh = (us - us.mean()) / sd
        return (ws - ws.mean() - xh * (ws * xh).mean()) / sd
    us, h = np.asarray(values[u]), 1e-6
    fd = np.array([(grad(us + h * t) - grad(us - h * t)) / (2 * h) for t in np.eye(4)])
    assert got == pytest.approx(fd, abs=1e-7)
    assert got == pytest.approx(got.T, abs=1e-12) and np.abs(got).max() > 0.1


def test_a_held_statistic_has_zero_second_derivative(xp):
    """With the mean and the deviation held, the loss is linear in u: its Hessian is 0; and
    so are d^2/dbeta^2 and d/du_k d/dbeta of a loss in u + beta centered by its mean."""
    linear = B.sum(w[i] * held(xhat), i) + B.sum(w[i] * (u[i] - held(mu)) / held(s), i)
    assert check(second("held-hessian", Grad(Grad(linear, u[i]), u[k]), 0), xp).holds is True
    # not held: the Hessian is not 0 (the check can fail)
    assert refuted(second("full-hessian", Grad(Grad(bn_loss, u[i]), u[k]), 0), xp)
    v = u[i] + beta
    centered = B.mean(sp.sin(v - B.mean(v, i)) ** 2, i)
    shifted = B.mean(sp.sin(v - held(B.mean(v, i))) ** 2, i)
    assert check(second("bias-curvature", Grad(Grad(centered, beta), beta), 0), xp).holds
    assert check(second("bias-mixed", Grad(Grad(centered, beta), u[k]), 0), xp).holds
    # with E[v] held, beta moves every centered value: 2 E[cos(2 (v - E v))]
    want = 2 * B.mean(sp.cos(2 * (v - B.mean(v, i))), i)
    assert check(second("bias-held", Grad(Grad(shifted, beta), beta), want), xp).holds
    assert refuted(second("bias-held-zero", Grad(Grad(shifted, beta), beta), 0), xp)


def test_a_node_derivative_inside_a_derivative(xp):
    """Grad(f(V), V, at=var) is a function of u through f and through var: differentiated
    again by u_k, both count; by e, the curvature in epsilon."""
    f = B.sum(w[i] * (u[i] - mu), i) / sp.sqrt(V + e)
    inner = Grad(f, V, at=var)                    # -1/2 sum w (u - mu) (var + e)^(-3/2)
    total = B.sum(w[i] * (u[i] - mu), i)
    by_u = (-sp.Rational(1, 2) * (w[k] - wbar) * (var + e) ** sp.Rational(-3, 2)
            + sp.Rational(3, 2) / B.size * total * (u[k] - mu)
            * (var + e) ** sp.Rational(-5, 2))
    assert check(second("node-by-u", Grad(inner, u[k]), by_u), xp).holds is True
    # the var path dropped (what detaching the node's value would compute)
    only_f = -sp.Rational(1, 2) * (w[k] - wbar) * (var + e) ** sp.Rational(-3, 2)
    assert refuted(second("node-by-u-detached", Grad(inner, u[k]), only_f), xp)
    by_e = sp.Rational(3, 4) * total * (var + e) ** sp.Rational(-5, 2)
    assert check(second("node-by-e", Grad(inner, e), by_e), xp).holds is True


def test_second_derivatives_over_two_axes(xp):
    """d^2/db[d] db[f] and d^2/db[d] dx[m, f] of a loss through a LayerNorm over C, on one
    instance (N = 2, C = 3), against NumPy's second differences; through a BatchNorm over N
    both are 0."""
    f = C.index("f")
    rng = np.random.default_rng(3)
    xs, gs, bs = rng.normal(size=(2, 3)), rng.normal(size=(2, 3)), rng.normal(size=3)
    sizes, values = {N.size: 2, C.size: 3}, {x: xs, g: gs, b: bs}

    def ln_loss(xv, bias):
        v = xv + bias
        y = (v - v.mean(axis=1, keepdims=True)) / np.sqrt(v.var(axis=1, keepdims=True) + 0.5)
        return float((gs * y).sum())

    def second_difference(fn, s, t, h=1e-4):
        return (fn(h * s + h * t) - fn(h * s - h * t) - fn(-h * s + h * t)
                + fn(-h * s - h * t)) / (4 * h * h)

    ln, bn = (loss(norm(x[n, c] + b[c])) for norm in (layer_norm, batch_norm))
    by_b = evaluate_axes(xp, Grad(Grad(ln, b[d]), b[f]), [d, f], values, {eps: 0.5}, sizes)
    want = np.array([[second_difference(lambda t: ln_loss(xs, bs + t), sd, sf)
                      for sf in np.eye(3)] for sd in np.eye(3)])
    assert by_b == pytest.approx(want, abs=1e-5)
    assert by_b == pytest.approx(by_b.T, abs=1e-12) and np.abs(by_b).max() > 1e-2

    mixed = evaluate_axes(xp, Grad(Grad(ln, b[d]), x[m, f]), [d, f, m], values, {eps: 0.5},
                          sizes)                                   # axes d, f, m by name
    unit = np.eye(9)    # b's 3 entries, then x's 2 x 3

    def both(t):
        return ln_loss(xs + t[3:].reshape(2, 3), bs + t[:3])
    want = np.array([[[second_difference(both, unit[dd], unit[3 + 3 * mm + ff])
                       for mm in range(2)] for ff in range(3)] for dd in range(3)])
    assert mixed == pytest.approx(want, abs=1e-5)
    assert np.abs(mixed).max() > 1e-2
    for expr, idx in ((Grad(Grad(bn, b[d]), b[f]), [d, f]),
                      (Grad(Grad(bn, b[d]), x[m, f]), [d, f, m])):
        assert evaluate_axes(xp, expr, idx, values, {eps: 0.5}, sizes) == pytest.approx(
            0.0, abs=1e-10)


def test_a_node_valued_per_sample_is_refused_in_words():
    pytest.importorskip("torch", reason="torch is not installed")
    from derive import Batch, Claim, Equation, Grad, Settings, check
    B = Batch("N")
    u, i = B.samples("u"), B.index("i")
    b, s = B.param("b"), B.param("s")
    claim = Claim("per-sample-node", "a node at u_i b", B, (Equation(
        Grad(B.mean(Grad(s ** 3 * u[i], s, at=u[i] * b), i), b),
        B.mean(6 * b * u[i] ** 3, i)),))
    result = check(claim, Settings(random_instances=20, hypothesis_examples=10))
    framework_rows = [e for e in result.evidence if e.kind in ("torch", "jax")]
    for e in framework_rows:
        assert "differs from sample to sample" in e.summary, e.summary
        assert "internal error" not in e.summary
