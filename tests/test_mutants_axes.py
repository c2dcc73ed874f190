"""Soundness on the new ground: plausible wrong statements over several axes and of second
order, each refuted with an exact counterexample, never proved -- beside the right versions,
which are proved.  (The frameworks' own verdicts on such statements are in
test_frameworks_axes.py.)"""

from __future__ import annotations

import pytest
import sympy as sp

from derive import Axis, Batch, Claim, Equation, Grad, check
from derive.core import PROVED, REFUTED
from derive.recheck import confirm
from derive.verify import Settings

FAST = Settings(frameworks=(), random_instances=30, hypothesis_examples=20,
                explicit_sizes=(1, 2, 3), explicit_budget=10.0)

# -- several axes ------------------------------------------------------------------------------

N, C = Axis("N"), Axis("C")
x, a, bc, s = N.samples("x"), N.samples("a"), N.samples("b"), N.samples("s")
n, c = N.index("n"), C.index("c")
eps = N.param("epsilon", positive=True)


def standardize(v, axis, index, epsilon=eps):
    mu = axis.mean(v, index)
    return (v - mu) / sp.sqrt(axis.mean((v - mu) ** 2, index) + epsilon)


def bn(v, epsilon=eps):
    return standardize(v, N, n, epsilon)


def ln(v, epsilon=eps):
    return standardize(v, C, c, epsilon)


AXES = {   # id: (lhs, rhs, expected, min_sizes)
    "bn removes a per-channel bias": (bn(x[n, c] + bc[c]), bn(x[n, c]), PROVED, ()),
    "bn removes a per-sample bias": (bn(x[n, c] + a[n]), bn(x[n, c]), REFUTED, ()),
    "ln removes a per-sample bias": (ln(x[n, c] + a[n]), ln(x[n, c]), PROVED, ()),
    "ln removes a per-channel bias": (ln(x[n, c] + bc[c]), ln(x[n, c]), REFUTED, ()),
    "ln removes a per-channel scale at eps 0": (ln(s[c] ** 2 * x[n, c], 0), ln(x[n, c], 0),
                                               REFUTED, ((C.size, 2),)),
    "bn over the channels is bn over the batch": (ln(x[n, c]), bn(x[n, c]), REFUTED, ()),
}


@pytest.mark.parametrize("case", sorted(AXES))
def test_a_statement_over_two_axes_gets_its_verdict(case):
    lhs, rhs, expected, mins = AXES[case]
    claim = Claim("axes." + case.replace(" ", "-"), case, N, (Equation(lhs, rhs),),
                  min_sizes=mins)
    result = check(claim, FAST)
    assert result.verdict.status == expected, result.verdict.reason
    if expected == REFUTED:
        cex = result.verdict.counterexample
        assert set(cex.all_sizes(claim)) == {N.size, C.size}
        assert confirm(claim, cex).confirmed is True


# -- second order: BN's double backward --------------------------------------------------------

B = Batch("m")
m = B.size
u, g = B.samples("x"), B.samples("g")
i, j, k = B.index("i"), B.index("j"), B.index("k")
gamma = B.param("gamma")
mu = B.mean(u[i], i)
sd = sp.sqrt(B.mean((u[i] - mu) ** 2, i) + eps)


def xh(t):
    return (u[t] - mu) / sd


LOSS = B.sum(g[i] * gamma * xh(i), i)
G, H = B.sum(g[i], i), B.sum(g[i] * xh(i), i)


def hessian(coefficient=3, sign=-1, pair=True):
    """d^2 l / dx_j dx_k = -(gamma / (m^2 s^2)) [m (xh_j g_k + xh_k g_j) - G (xh_j + xh_k)
    + (m delta_jk - 1 - 3 xh_j xh_k) H], and slips of it."""
    cross = xh(j) * g[k] + xh(k) * g[j] if pair else 2 * xh(j) * g[k]
    return sign * (gamma / (m ** 2 * sd ** 2)) * (
        m * cross - G * (xh(j) + xh(k))
        + (m * sp.KroneckerDelta(j, k) - 1 - coefficient * xh(j) * xh(k)) * H)


SECOND = {   # id: (lhs, rhs, expected)
    "the double backward formula": (Grad(Grad(LOSS, u[j]), u[k]), hessian(), PROVED),
    "a coefficient 1 for 3": (Grad(Grad(LOSS, u[j]), u[k]), hessian(coefficient=1), REFUTED),
    "a sign slip": (Grad(Grad(LOSS, u[j]), u[k]), hessian(sign=1), REFUTED),
    "a lost symmetric term": (Grad(Grad(LOSS, u[j]), u[k]), hessian(pair=False), REFUTED),
    "the hessian is symmetric": (Grad(Grad(LOSS, u[j]), u[k]), Grad(Grad(LOSS, u[k]), u[j]),
                                 PROVED),
    "the hessian vanishes": (Grad(Grad(LOSS, u[j]), u[k]), 0, REFUTED),
    "the gamma curvature vanishes": (Grad(Grad(LOSS, gamma), gamma), 0, PROVED),
}


@pytest.mark.parametrize("case", sorted(SECOND))
def test_a_second_order_statement_gets_its_verdict(case):
    lhs, rhs, expected = SECOND[case]
    claim = Claim("second." + case.replace(" ", "-"), case, B, (Equation(lhs, rhs),))
    result = check(claim, FAST)
    assert result.verdict.status == expected, result.verdict.reason
    if expected == REFUTED:
        assert confirm(claim, result.verdict.counterexample).confirmed is True
