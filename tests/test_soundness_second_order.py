"""Soundness of derivatives of derivatives: adversarial second-order statements (a held inner
derivative, ``at`` inside and outside, a held statistic that depends on the variable at both
levels, mixed parameter/sample Hessians, Kronecker deltas that matter only from N = 2 or 3 on,
activations, non-analytic functions, third derivatives), each with the verdict it must get,
and every layer held against an independent evaluation on the same instances.

Each case can fail: a false statement must be refuted (or at least not proved), a true one
proved, and every layer's value must equal the re-check's exact value (plain SymPy, every sum
written out, ``sympy.diff``)."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from derive import check, numeric, rules
from derive.calculus import Batch, Grad, Held, activation
from derive.core import PROVED, REFUTED, Claim, Equation, Unsupported
from derive.explicit import ExplicitBatch, free_indices, index_assignments
from derive.recheck import _Writer, confirm
from derive.verify import Settings

FAST = Settings(frameworks=(), random_instances=30, hypothesis_examples=20,
                explicit_sizes=(1, 2, 3), explicit_budget=10.0)

B = Batch("N")
N = B.size
u, w = B.samples("u"), B.samples("w")
i, j, k = B.index("i"), B.index("j"), B.index("k")
b, s = B.param("b"), B.param("s")
delta = sp.KroneckerDelta
mu = B.mean(u[i], i)
var = B.mean((u[i] - mu) ** 2, i)
hess = 2 * (delta(j, k) - 1 / N) / N                  # d^2 var / du_j du_k
cube = B.mean((u[i] + b) ** 3, i)
held_exp = B.mean(sp.exp(b * (u[i] - Held(B.mean(b * u[i], i)))), i)
theta = activation("theta")
z = sp.Symbol("z", real=True)
THETA = ((theta, (sp.Lambda(z, sp.tanh(z)), sp.Lambda(z, z ** 3))),)
f_theta = B.mean(theta(u[i] * b), i)
NOT_PROVED = "not proved"


def claim(name, lhs, rhs, **kw):
    return Claim("second." + name, name, B, (Equation(lhs, rhs),), **kw)


CASES = {   # name: (lhs, rhs, expected, claim options)
    # a held inner derivative is a constant of the outer one
    "held inner derivative": (Grad(b * Held(Grad(cube, b)), b), Grad(cube, b), PROVED, {}),
    "held inner derivative differentiated through":
        (Grad(b * Held(Grad(cube, b)), b), Grad(cube, b) + b * Grad(Grad(cube, b), b),
         REFUTED, {}),
    # Hessians whose error vanishes at N = 1, or at N = 1 and 2
    "variance hessian": (Grad(Grad(var, u[j]), u[k]), hess, PROVED, {}),
    "variance hessian with delta squared":
        (Grad(Grad(var, u[j]), u[k]), 2 * (delta(j, k) ** 2 - 1 / N) / N, PROVED, {}),
    "variance hessian wrong from N = 2":
        (Grad(Grad(var, u[j]), u[k]), hess + (1 - delta(j, k)) * (N - 1) / N ** 2, REFUTED, {}),
    "variance hessian wrong from N = 3":
        (Grad(Grad(var, u[j]), u[k]), hess + (1 - delta(j, k)) * (N - 1) * (N - 2), REFUTED,
         {}),
    "variance hessian diagonal": (Grad(Grad(var, u[k]), u[k]), 2 * (1 - 1 / N) / N, PROVED, {}),
    "variance hessian diagonal without the mean": (Grad(Grad(var, u[k]), u[k]), 2 / N,
                                                    REFUTED, {}),
    # a node set to its value inside, then differentiated by the node outside: 0
    "at inside and outside": (Grad(Grad(s ** 2 * b * mu, s, at=b ** 2), s, at=b), 0, PROVED,
                              {}),
    "at inside and outside not zero": (Grad(Grad(s ** 2 * b * mu, s, at=b ** 2), s, at=b),
                                       2 * b ** 2 * mu, REFUTED, {}),
    # a node set to a held value: the outer derivative does not flow through it
    "at a held value": (Grad(Grad(s ** 3, s, at=Held(b * mu)), b), 0, PROVED, {}),
    "at a held value flowed through": (Grad(Grad(s ** 3, s, at=Held(b * mu)), b),
                                       6 * b * mu ** 2, REFUTED, {}),
    # a held statistic that depends on b, under both derivatives by b
    "held statistic at both levels":
        (Grad(Grad(held_exp, b), b),
         B.mean((u[i] - b * mu) ** 2 * sp.exp(b * (u[i] - b * mu)), i), PROVED, {}),
    "held statistic at both levels differentiated through":
        (Grad(Grad(held_exp, b), b),
         B.mean((u[i] - 2 * b * mu) ** 2 * sp.exp(b * (u[i] - b * mu)), i), REFUTED, {}),
    "mixed sample and parameter, one term lost":
        (Grad(Grad(B.mean(sp.sin(b * u[i]), i), u[k]), b), sp.cos(b * u[k]) / N, REFUTED, {}),
    # activations: theta'' exists as SymPy's derivative of theta'; instances for the numbers
    "activation hessian is symmetric": (Grad(Grad(f_theta, b), u[k]),
                                        Grad(Grad(f_theta, u[k]), b), PROVED,
                                        {"functions": THETA}),
    "activation hessian doubled": (Grad(Grad(f_theta, b), u[k]),
                                   2 * Grad(Grad(f_theta, u[k]), b), REFUTED,
                                   {"functions": THETA}),
    "activation curvature is theta' u^2":
        (Grad(Grad(f_theta, b), b), B.mean(theta.derivative(u[i] * b) * u[i] ** 2, i),
         REFUTED, {"functions": THETA}),
    # third derivatives: the numeric layer refuses them, so a true one is not proved on the
    # symbolic layer alone, and a false one is refuted
    "third derivative": (Grad(Grad(Grad(B.mean((u[i] * b) ** 2, i), b), b), b), 0, NOT_PROVED,
                         {}),
    "third derivative slipped": (Grad(Grad(Grad(B.mean((u[i] * b) ** 3, i), b), b), b),
                                 12 * B.mean(u[i] ** 3, i), REFUTED, {}),
    "held second derivative": (Grad(Held(Grad(Grad(B.mean((u[i] * b) ** 3, i), b), b)), b),
                               b, REFUTED, {}),
    # non-analytic functions under a second derivative: pointwise true or false, never proved
    # on a layer that cannot take the derivative
    "abs under a second derivative": (Grad(Grad(B.mean(sp.Abs(u[i]) * u[i] * b, i), b), u[k]),
                                      2 * sp.Abs(u[k]) / N, NOT_PROVED, {}),
    "abs under a second derivative, sign lost":
        (Grad(Grad(B.mean(sp.Abs(u[i]) * u[i] * b, i), b), u[k]), 2 * u[k] / N, REFUTED, {}),
    "max under a second derivative, kink lost":
        (Grad(Grad(B.mean(sp.Max(u[i], 0) ** 2 * b, i), b), u[k]), 2 * u[k] / N, REFUTED, {}),
    "a kink's second derivative": (Grad(Grad(sp.sqrt(b ** 2) * b, b), b), 2 * sp.sign(b),
                                   NOT_PROVED, {}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_an_adversarial_second_order_statement_gets_its_verdict(case):
    lhs, rhs, expected, options = CASES[case]
    c = claim(case.replace(" ", "-"), lhs, rhs, **options)
    result = check(c, FAST)
    status = result.verdict.status
    if expected == NOT_PROVED:
        assert status != PROVED, result.verdict.reason
    else:
        assert status == expected, result.verdict.reason
    if status == REFUTED:
        assert confirm(c, result.verdict.counterexample).confirmed is True


def test_the_smallest_failing_sizes_of_the_delta_hessians():
    for rhs, size in ((hess + (1 - delta(j, k)) * (N - 1) / N ** 2, 2),
                      (hess + (1 - delta(j, k)) * (N - 1) * (N - 2), 3)):
        result = check(claim("delta", Grad(Grad(var, u[j]), u[k]), rhs), FAST)
        assert result.verdict.status == REFUTED
        assert result.verdict.counterexample.size == size


# -- every layer against the independent re-check, on the same exact instances -------------------

t = B.index("t")
f = B.mean(sp.sin(u[i] * b + B.mean(u[i] + b, i)) ** 2 * s ** 2, i)
g = B.mean(sp.exp(s * u[i]) * w[i], i) * Held(B.mean(s * u[i] ** 2, i))
EXPRESSIONS = {
    "bb": Grad(Grad(f, b), b),
    "bu": Grad(Grad(f, b), u[k]),
    "uu": Grad(Grad(f, u[j]), u[k]),
    "ukuk": Grad(Grad(f, u[k]), u[k]),
    "held inner": Grad(b * Held(Grad(f, b)), b),
    "held statistic": Grad(Grad(held_exp * Held(B.mean(u[i] * b, i)), b), b),
    "at inside": Grad(Grad(f, s, at=b ** 2 + mu), b),
    "at inside, by a sample": Grad(Grad(f, s, at=b ** 2 + mu), u[k]),
    "at outside": Grad(Grad(f, b), s, at=mu * b),
    "at its own variable": Grad(Grad(f, s, at=s * b), s),
    "at a held value": Grad(Grad(f, s, at=Held(mu) * b), b),
    "at with a held statistic": Grad(Grad(g, s, at=mu * b), b),
    "at with a held statistic, by a sample": Grad(Grad(g, s, at=mu * b), u[k]),
    "a derivative in at": Grad(Grad(s ** 3 * b, s, at=Grad(B.mean(u[i] ** 2 * b ** 2, i), b)),
                               b),
    "inner derivative by a bound sample":
        Grad(B.sum(Grad(sp.cos(u[t] * b + s * mu), u[t]) * w[t], t), u[k]),
    "root of a variance": Grad(Grad(sp.sqrt(var + b ** 2), u[j]), b),
}
VALUES = {u: [sp.Rational(2, 3), sp.Rational(-1, 2), sp.Rational(5, 4)],
          w: [sp.Rational(-3, 2), sp.Rational(1, 3), sp.Rational(3, 4)]}
PARAMS = {b: sp.Rational(2, 3), s: sp.Rational(-3, 5)}


def _layer_values(expr, size):
    """{index values: value} of the re-check, the explicit layer, the symbolic normal form
    (written out) and the numeric layer, at one exact instance."""
    idx = sorted(free_indices(expr), key=lambda v: v.name)
    envs = list(index_assignments(idx, size))
    samples, numbers = {}, {}
    for base, values in VALUES.items():
        for n, v in enumerate(values[:size], 1):
            sym = sp.Dummy(f"{base}_{n}", real=True)
            samples[(base, (n,))], numbers[sym] = sym, v
    numbers.update(PARAMS)
    writer = _Writer({N: size}, N, samples, numbers, {})
    out = {"recheck": [float(writer.value(expr, env)) for env in envs]}

    def explicit(e):
        batch = ExplicitBatch(size, N)
        values = []
        for env in envs:
            value = batch.eval(e, env)
            at = {batch.sample(base, n): VALUES[base][n - 1]
                  for base in VALUES for n in range(1, size + 1)}
            values.append(float(batch.substitute(value, {**at, **PARAMS})))
        return values

    out["explicit"] = explicit(expr)
    out["symbolic"] = explicit(rules.normal_form(expr))
    compiled = numeric.Compiled(expr, idx, N)
    ctx = numeric.Context(size, {base: np.array([float(v) for v in values[:size]])
                                 for base, values in VALUES.items()},
                          {p: float(v) for p, v in PARAMS.items()})
    value = np.real(np.asarray(compiled(ctx), dtype=complex))
    full = np.broadcast_to(value, (size,) * value.ndim) if value.ndim else value
    out["numeric"] = [float(full[tuple(env[v] - 1 for v in idx)
                                 + (0,) * (value.ndim - len(idx))]) if value.ndim
                      else float(full) for env in envs]
    return out


@pytest.mark.parametrize("size", (1, 2, 3))
@pytest.mark.parametrize("name", sorted(EXPRESSIONS))
def test_every_layer_computes_the_second_derivative_the_recheck_computes(name, size):
    out = _layer_values(EXPRESSIONS[name], size)
    reference = out.pop("recheck")
    for layer, values in out.items():
        assert np.allclose(values, reference, rtol=1e-9, atol=1e-9), (layer, values, reference)


def test_the_layers_disagree_on_a_wrong_held_semantics():
    # the comparison can fail: a held statistic differentiated through is another number
    held = _layer_values(EXPRESSIONS["held statistic"], 2)["recheck"]
    through = _layer_values(Grad(Grad(B.mean(sp.exp(b * (u[i] - B.mean(b * u[i], i))), i)
                                      * B.mean(u[i] * b, i), b), b), 2)["recheck"]
    assert not np.allclose(held, through)


# -- refusals in words -----------------------------------------------------------------------

def test_the_numeric_layer_refuses_a_third_derivative_in_a_sentence():
    with pytest.raises(Unsupported, match="third or higher order"):
        numeric.Compiled(Grad(Grad(Grad(B.mean(u[i] ** 4 * b ** 4, i), b), b), b), [], N)
    # through a node's value too: d/db f'(g''(b)) needs g'''
    with pytest.raises(Unsupported, match="third or higher order"):
        numeric.Compiled(Grad(Grad(s ** 2, s, at=Grad(Grad(b ** 4, b), b)), b), [], N)


@pytest.mark.parametrize("fn", (sp.Abs, lambda v: sp.Max(v, 0)))
def test_the_numeric_layer_refuses_a_kink_under_a_second_derivative(fn):
    expr = Grad(Grad(B.mean(fn(u[i]) * u[i] * b ** 2, i), b), u[k])
    with pytest.raises(Unsupported, match="analytic"):
        numeric.Compiled(expr, [k], N)
    # and in a node's value
    with pytest.raises(Unsupported, match="analytic"):
        numeric.Compiled(Grad(Grad(s ** 3, s, at=fn(b)), b), [], N)


def test_an_activation_second_derivative_through_its_instance_is_sympy_diff():
    # theta = tanh, instantiated: the dual numbers carry tanh'' through the chain rule
    expr = numeric.instantiate(Grad(Grad(f_theta, b), b), {theta: sp.Lambda(z, sp.tanh(z))})
    compiled = numeric.Compiled(expr, [], N)
    values = [0.3, -1.2, 0.7]
    ctx = numeric.Context(3, {u: np.array(values)}, {b: 0.9})
    bb = sp.Symbol("bb")
    exact = sum(sp.diff(sp.tanh(bb * v), bb, 2) for v in values) / 3
    value = float(np.real(np.asarray(compiled(ctx))).reshape(-1)[0])
    assert abs(value - float(exact.subs(bb, 0.9))) < 1e-12
