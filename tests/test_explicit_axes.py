"""The explicit layer and the independent re-check over several named axes, and derivatives of
derivatives (docs/design-axes.md): each checked against sums and ``sympy.diff`` written out by
hand here, with no shared statistics."""

import pytest
import sympy as sp

from derive import recheck
from derive.calculus import Axis, Batch, Grad, Held
from derive.core import Claim, Counterexample, Equation, Unsupported
from derive.explicit import ExplicitBatch, free_indices, index_assignments

NA, CA = Axis("N"), Axis("C")
N, C = NA.size, CA.size
x = NA.samples("x")            # x[n, c]: along (N, C)
b, w = CA.samples("b"), CA.samples("w")   # per channel: along C
n, c = NA.index("n"), CA.index("c")
SIZES = {N: 2, C: 3}


def batch_at(sizes=SIZES):
    return ExplicitBatch(sizes[N], N, sizes)


def holds(sizes, lhs, rhs):
    """Every assignment of the free indices, each over its own axis: True / False / None."""
    batch = batch_at(sizes)
    found = [batch.decide(batch.eval(lhs, env) - batch.eval(rhs, env))
             for env in index_assignments(free_indices(lhs, rhs), sizes)]
    return False if False in found else (True if all(found) else None)


# -- several axes --------------------------------------------------------------------------------

def test_a_two_axis_statement_is_the_hand_written_sum():
    batch = batch_at()
    value = batch.resolve(batch.eval(NA.mean(CA.sum(x[n, c] * w[c], c), n) + C))
    X = {(p, q): batch.sample(x, (p, q)) for p in (1, 2) for q in (1, 2, 3)}
    W = {q: batch.sample(w, q) for q in (1, 2, 3)}
    hand = sp.Rational(1, 2) * sum(X[p, q] * W[q] for p in (1, 2) for q in (1, 2, 3)) + 3
    assert sp.expand(value - hand) == 0
    assert (X[2, 3].name, W[3].name) == ("x_{2,3}", "w_3")
    # every statistic resolved: the 6 entries of x and the 3 of w are left, nothing else
    assert value.free_symbols == set(X.values()) | set(W.values())


def test_each_free_index_runs_over_its_own_axis():
    found = list(index_assignments({n, c}, SIZES))
    assert len(found) == 6
    assert {env[c] for env in found} == {1, 2, 3} and {env[n] for env in found} == {1, 2}
    assert len(list(index_assignments({n, c}, 3))) == 9   # an int: the old meaning


def test_a_reduction_runs_over_its_own_axis_not_the_batch_size():
    batch = batch_at()
    assert batch.eval(CA.sum(1, c)) != batch.eval(NA.sum(1, n))
    assert batch.resolve(batch.eval(CA.sum(1, c))) == 3
    assert batch.resolve(batch.eval(NA.sum(1, n))) == 2
    mean_c3 = batch.resolve(batch.eval(NA.mean(x[n, c], n), {c: 3}))
    assert sp.expand(mean_c3 - (batch.sample(x, (1, 3)) + batch.sample(x, (2, 3))) / 2) == 0


def test_per_channel_and_per_sample_means_differ():
    per_channel, per_sample = NA.mean(x[n, c], n), CA.mean(x[n, c], c)
    assert holds({N: 2, C: 3}, per_channel, per_sample) is False
    assert holds({N: 2, C: 1}, per_channel, per_sample) is False
    assert holds({N: 1, C: 1}, per_channel, per_sample) is True   # one entry: both are it


def test_a_per_channel_bias_cancels_in_the_mean_over_n_but_not_over_c():
    def residuals(axis, index):
        biased = x[n, c] + b[c] - axis.mean(x[n, c] + b[c], index)
        plain = x[n, c] - axis.mean(x[n, c], index)
        batch = batch_at()
        return batch, [sp.expand(batch.resolve(batch.eval(biased - plain, env)))
                       for env in index_assignments({n, c}, SIZES)]

    assert residuals(NA, n)[1] == [0] * 6
    batch, over_c = residuals(CA, c)
    assert all(r != 0 for r in over_c)
    b1, b2, b3 = (batch.sample(b, q) for q in (1, 2, 3))
    assert over_c[0] == sp.expand(b1 - (b1 + b2 + b3) / 3)
    assert holds(SIZES, x[n, c] + b[c] - NA.mean(x[n, c] + b[c], n),
                 x[n, c] - NA.mean(x[n, c], n)) is True
    assert holds(SIZES, x[n, c] + b[c] - CA.mean(x[n, c] + b[c], c),
                 x[n, c] - CA.mean(x[n, c], c)) is False


def test_a_delta_across_indices_compares_their_values():
    k = CA.index("k")
    batch = batch_at()
    assert batch.eval(sp.KroneckerDelta(c, k), {c: 3, k: 3}) == 1
    assert batch.eval(sp.KroneckerDelta(c, k), {c: 3, k: 2}) == 0
    sifted = batch.resolve(batch.eval(CA.sum(sp.KroneckerDelta(c, k) * w[c], c), {k: 3}))
    assert sifted == batch.sample(w, 3)


@pytest.mark.parametrize("env", [{n: 1, c: 4}, {n: 3, c: 1}, {n: 0, c: 1}])
def test_an_index_outside_its_axis_is_unsupported(env):
    with pytest.raises(Unsupported):
        batch_at().eval(x[n, c], env)


def test_an_index_inside_its_axis_but_beyond_the_batch_size_is_fine():
    assert batch_at().eval(x[n, c], {n: 2, c: 3}).name == "x_{2,3}"
    assert batch_at().eval(b[c + 1], {c: 2}).name == "b_3"
    with pytest.raises(Unsupported):
        batch_at().eval(b[c + 1], {c: 3})


def test_an_axis_without_a_size_is_unsupported_and_sizes_must_agree():
    with pytest.raises(Unsupported):
        ExplicitBatch(2, N).eval(CA.mean(w[c], c))
    with pytest.raises(Unsupported):
        list(index_assignments({n, c}, {N: 2}))
    with pytest.raises(ValueError):
        ExplicitBatch(2, N, {N: 3, C: 3})


def test_the_axis_sizes_evaluate_to_the_concrete_sizes():
    batch = batch_at()
    assert batch.eval(N * C + N) == 8


# -- derivatives of derivatives ------------------------------------------------------------------

B = Batch("N")
u, g = B.samples("u"), B.samples("g")
i, k, m = B.index("i"), B.index("k"), B.index("m")
a = B.param("a")
eps = B.param("epsilon", positive=True)
s2 = B.param("s2")   # the variance as a node of the computation (Grad(..., at=...))


def mean_(e):
    return B.mean(e, i)


def bn_loss(scale=1, hold_mean=False, variance=None):
    """sum_i g_i (a u_i - mu) / sqrt(var + eps) with statistics of a u."""
    y = scale * u[i]
    mu = mean_(y)
    var = mean_((y - mu) ** 2) if variance is None else variance
    centre = Held(mu) if hold_mean else mu
    return B.sum(g[i] * (y - centre) / sp.sqrt(var + eps), i)


def written(size, scale=1, hold_mean=False, variance=None):
    """The same loss written out by hand, every sum in full; a held mean is the symbol M."""
    U = sp.symbols(f"U1:{size + 1}", real=True)
    G = sp.symbols(f"G1:{size + 1}", real=True)
    y = [scale * t for t in U]
    mu = sum(y) / size
    var = sum((t - mu) ** 2 for t in y) / size
    M = sp.Symbol("M", real=True)
    centre = M if hold_mean else mu
    v = var if variance is None else variance
    loss = sum(gg * (t - centre) / sp.sqrt(v + eps) for gg, t in zip(G, y))
    return loss, U, G, {M: mu}, var


def points(size, count=3, seed=1, scaled=False):
    """Rational points at which var(a u) + eps (a = 1 unless ``scaled``) is a square: every
    value below is rational."""
    import random
    rng = random.Random(seed * 100 + size)
    for _ in range(count):
        us = [sp.Rational(rng.randint(-9, 9), rng.randint(1, 3)) for _ in range(size)]
        gs = [sp.Rational(rng.randint(-9, 9), rng.randint(1, 3)) for _ in range(size)]
        aa = sp.Rational(rng.randint(1, 5), rng.randint(1, 3)) if scaled else sp.Integer(1)
        var = sum((aa * t - aa * sum(us) / size) ** 2 for t in us) / size
        root = sp.Rational(rng.randint(1, 9), 2)
        while root ** 2 <= var:
            root += 1
        yield us, gs, aa, root ** 2 - var


class Explicit:
    """The explicit layer's values of ``expr`` at each index assignment, written out once and
    evaluated exactly at each point."""

    def __init__(self, size, expr, envs):
        self.batch = ExplicitBatch(size, B.size)
        self.values = {key: self.batch.eval(expr, env) for key, env in envs.items()}

    def at(self, us, gs, aa, ee):
        batch = self.batch
        numbers = {batch.sample(u, t): v for t, v in enumerate(us, 1)}
        numbers.update({batch.sample(g, t): v for t, v in enumerate(gs, 1)})
        numbers.update({a: aa, eps: ee})
        return {key: batch.substitute(v, numbers) for key, v in self.values.items()}


def hand_value(expr, U, G, us, gs, aa, ee, after=None):
    numbers = {**dict(zip(U, us)), **dict(zip(G, gs)), a: aa, eps: ee}
    if after:
        expr = expr.xreplace(after)
    return expr.xreplace(numbers)


def pairs(size):
    return [(p, q) for p in range(1, size + 1) for q in range(1, size + 1)]


@pytest.mark.parametrize("size", (2, 3))
def test_second_derivative_by_two_samples_matches_sympy_diff_of_the_written_out_loss(size):
    loss, U, G, _, _ = written(size)
    hand = {(p, q): sp.diff(loss, U[p - 1], U[q - 1]) for p, q in pairs(size)}
    explicit = Explicit(size, Grad(Grad(bn_loss(), u[k]), u[m]),
                        {(p, q): {k: p, m: q} for p, q in pairs(size)})
    nonzero = 0
    for point in points(size):
        got = explicit.at(*point)
        for key, derivative in hand.items():
            want = hand_value(derivative, U, G, *point)
            assert got[key].is_Rational and want.is_Rational and got[key] == want, key
            nonzero += want != 0
    assert nonzero   # not all zero: the check can tell a wrong derivative


@pytest.mark.parametrize("size", (2, 3))
def test_the_explicit_hessian_is_symmetric(size):
    loss = bn_loss()
    batch = ExplicitBatch(size, B.size)
    for p, q in pairs(size):
        value = batch.eval(Grad(Grad(loss, u[k]), u[m]) - Grad(Grad(loss, u[m]), u[k]),
                           {k: p, m: q})
        assert batch.decide(value) is True
    wrong = batch.eval(Grad(Grad(loss, u[k]), u[m]) - Grad(Held(Grad(loss, u[m])), u[k]),
                       {k: 1, m: 2})
    assert batch.decide(wrong) is False


@pytest.mark.parametrize("size", (2, 3))
def test_second_derivatives_by_a_parameter_match_sympy_diff(size):
    loss, U, G, _, _ = written(size, scale=a)
    by_a = Explicit(size, Grad(Grad(bn_loss(scale=a), a), a), {"a": {}})
    by_a_u = Explicit(size, Grad(Grad(bn_loss(scale=a), a), u[k]),
                      {p: {k: p} for p in range(1, size + 1)})
    hand = {p: sp.diff(loss, a, U[p - 1]) for p in range(1, size + 1)}
    twice = sp.diff(loss, a, a)
    for point in points(size, scaled=True):
        want = hand_value(twice, U, G, *point)
        assert by_a.at(*point)["a"] == want and want != 0
        got = by_a_u.at(*point)
        for p, derivative in hand.items():
            assert got[p] == hand_value(derivative, U, G, *point), p


@pytest.mark.parametrize("size", (2, 3))
def test_a_node_derivative_inside_and_outside_a_derivative(size):
    # inside: d/du_m of (d loss / d s2 at s2 = var); outside: d/ds2 of d loss/du_k at var
    node_loss = bn_loss(variance=s2)
    var = mean_((u[i] - mean_(u[i])) ** 2)
    loss, U, G, _, var_w = written(size, variance=s2)
    inside = sp.diff(loss, s2).xreplace({s2: var_w})
    envs = {p: {k: p, m: p} for p in range(1, size + 1)}
    explicit_inside = Explicit(size, Grad(Grad(node_loss, s2, at=var), u[m]), envs)
    explicit_outside = Explicit(size, Grad(Grad(node_loss, u[k]), s2, at=var), envs)
    hand_inside = {p: sp.diff(inside, U[p - 1]) for p in envs}
    hand_outside = {p: sp.diff(loss, U[p - 1], s2).xreplace({s2: var_w}) for p in envs}
    for point in points(size):
        got_inside, got_outside = explicit_inside.at(*point), explicit_outside.at(*point)
        for p in envs:
            assert got_inside[p] == hand_value(hand_inside[p], U, G, *point), p
            assert got_outside[p] == hand_value(hand_outside[p], U, G, *point), p


@pytest.mark.parametrize("size", (2, 3))
def test_a_held_mean_stays_held_in_a_second_derivative(size):
    loss, U, G, held_values, _ = written(size, hold_mean=True)
    through, *_ = written(size)
    hand = {key: sp.diff(loss, U[key[0] - 1], U[key[1] - 1]) for key in pairs(size)}
    hand_through = {key: sp.diff(through, U[key[0] - 1], U[key[1] - 1]) for key in pairs(size)}
    explicit = Explicit(size, Grad(Grad(bn_loss(hold_mean=True), u[k]), u[m]),
                        {(p, q): {k: p, m: q} for p, q in pairs(size)})
    differs = 0
    for point in points(size):
        got = explicit.at(*point)
        for key in hand:
            want = hand_value(hand[key], U, G, *point, after=held_values)
            assert got[key] == want, key
            differs += want != hand_value(hand_through[key], U, G, *point)
    assert differs   # holding the mean changes the second derivative


def test_a_held_derivative_inside_a_derivative_is_a_constant():
    size = 3
    loss, U, G, _, _ = written(size)
    expr = Grad(Held(Grad(bn_loss(), u[k])) * mean_(u[i] ** 2), u[m])
    explicit = Explicit(size, expr, {(p, q): {k: p, m: q} for p, q in pairs(size)})
    for point in points(size, count=2):
        got = explicit.at(*point)
        for p, q in pairs(size):
            want = hand_value(sp.diff(loss, U[p - 1]) * 2 * U[q - 1] / size, U, G, *point)
            assert got[p, q] == want, (p, q)


def test_a_derivative_of_a_derivative_by_a_parameter_held_inside():
    # d/da d/da (Held(a^2) a^2 + a^3) = 2 Held(a^2) + 6a: the held factor stays constant
    batch = ExplicitBatch(1, B.size)
    value = batch.eval(Grad(Grad(Held(a ** 2) * a ** 2 + a ** 3, a), a))
    assert sp.expand(batch.resolve(value) - (2 * a ** 2 + 6 * a)) == 0


# -- the independent re-check ----------------------------------------------------------------

FALSE_BIAS = Claim("axes.bias-c", "a bias cancels in the mean over channels", NA,
                   (Equation(x[n, c] + b[c] - CA.mean(x[n, c] + b[c], c),
                             x[n, c] - CA.mean(x[n, c], c)),))
TRUE_BIAS = Claim("axes.bias-n", "a bias cancels in the mean over samples", NA,
                  (Equation(x[n, c] + b[c] - NA.mean(x[n, c] + b[c], n),
                            x[n, c] - NA.mean(x[n, c], n)),))


def cex(values, size=1, sizes=None):
    return Counterexample(size, values, sp.S.Zero, sp.S.Zero, sizes=sizes or {N: 1, C: 2})


def test_recheck_confirms_a_genuine_multi_axis_counterexample():
    genuine = cex({"x": [[0, 0]], "b": [1, 0], "n": 1, "c": 1})
    found = recheck.confirm(FALSE_BIAS, genuine)
    assert (found.confirmed, found.lhs, found.rhs) == (True, sp.Rational(1, 2), 0)
    assert recheck.confirm(FALSE_BIAS, genuine).confirmed is True
    wide = cex({"x": [[0, 0, 1], [2, 0, 0]], "b": [1, 0, 0], "n": 2, "c": 3}, size=2,
               sizes={N: 2, C: 3})
    found = recheck.confirm(FALSE_BIAS, wide)
    assert (found.confirmed, found.lhs - found.rhs) == (True, -sp.Rational(1, 3))


def test_recheck_rejects_a_fake_multi_axis_counterexample():
    fake = cex({"x": [[0, 0]], "b": [1, 1], "n": 1, "c": 1})
    assert recheck.confirm(FALSE_BIAS, fake).confirmed is False
    true_claim = recheck.confirm(TRUE_BIAS, cex({"x": [[0, 5]], "b": [1, 0], "n": 1, "c": 2}))
    assert (true_claim.confirmed, true_claim.reason) == (False, "both sides are 0 there")


@pytest.mark.parametrize("values, reason", [
    ({"x": [0, 0], "b": [1, 0], "n": 1, "c": 1},
     "x needs a nested list of shape 1 x 2 (along N, C, in that order)"),
    ({"x": [[0, 0, 0]], "b": [1, 0], "n": 1, "c": 1},
     "x needs a nested list of shape 1 x 2 (along N, C, in that order)"),
    ({"x": [[[0], [0]]], "b": [1, 0], "n": 1, "c": 1},
     "x needs a nested list of shape 1 x 2 (along N, C, in that order)"),
    ({"x": [[0, 0]], "b": [1], "n": 1, "c": 1}, "b needs 2 values"),
    ({"x": [[0, 0]], "b": [1, 0], "n": 1, "c": 3}, "the index c = 3 is not in 1..2"),
])
def test_recheck_rejects_a_wrongly_shaped_counterexample(values, reason):
    found = recheck.confirm(FALSE_BIAS, cex(values))
    assert (found.confirmed, found.reason) == (False, "not an instance of the claim: " + reason)


def test_recheck_sizes_must_agree_with_the_batch_size():
    found = recheck.confirm_values(FALSE_BIAS, 2, {"x": [[0, 0]], "b": [1, 0], "n": 1, "c": 1},
                                   sizes={N: 1, C: 2})
    assert found.confirmed is False and "N = 1, not 2" in found.reason


def test_recheck_evaluates_a_nested_derivative():
    size = 3
    loss, U, G, _, _ = written(size)
    us, gs, aa, ee = next(points(size))
    want = hand_value(sp.diff(loss, U[0], U[1]), U, G, us, gs, aa, ee)
    values = {"u": us, "g": gs, "epsilon": ee, "k": 1, "m": 2}
    expr = Grad(Grad(bn_loss(), u[k]), u[m])
    same = Claim("nested.same", "the value", B, (Equation(expr, want),))
    assert recheck.confirm_values(same, size, values).confirmed is False
    off = Claim("nested.off", "off by one", B, (Equation(expr, want + 1),))
    found = recheck.confirm_values(off, size, values)
    assert (found.confirmed, found.lhs) == (True, want)


def test_recheck_keeps_a_held_value_constant_in_a_nested_derivative():
    # d/db (Held(d/db b^2) b) = 2b, d/db d/db (Held(b^2) b^2) = 2 b^2
    bb = B.param("b")
    one = Claim("held.one", "held", B, (Equation(Grad(Held(Grad(bb ** 2, bb)) * bb, bb), 0),))
    assert recheck.confirm_values(one, 1, {"b": 3}).lhs == 6
    two = Claim("held.two", "held", B, (Equation(Grad(Grad(Held(bb ** 2) * bb ** 2, bb), bb),
                                                 0),))
    assert recheck.confirm_values(two, 1, {"b": 3}).lhs == 18
    inner_at = Claim("at.inner", "node", B,
                     (Equation(Grad(Grad(Held(s2) * s2 ** 2, s2, at=bb ** 2), bb), 0),))
    # d/ds2 (Held(s2) s2^2) = 2 s2 Held(s2) -> at s2 = b^2: 2 b^2 Held(b^2); d/db: 4 b Held(b^2)
    assert recheck.confirm_values(inner_at, 1, {"b": 3}).lhs == 4 * 3 * 9
    batch = ExplicitBatch(1, B.size)
    value = batch.resolve(batch.eval(inner_at.equations[0].lhs))
    assert sp.expand(value - 4 * bb ** 3) == 0
