"""Plausible wrong versions of the section-B formulas: each must be refuted, with an exact
counterexample.  A verifier that proves any of them is unsound; one that leaves any of them
undecided is too weak to protect a reader who copies a formula with a typo."""

from __future__ import annotations

import pytest
import sympy as sp

from derive import Claim, Equation, Grad, check, recheck
from derive.claims import batchnorm as bn
from derive.verify import Settings

B, m, i, k = bn.B, bn.m, bn.i, bn.k
x, g, h = bn.x, bn.g, bn.h
gamma, beta, eps = bn.gamma, bn.beta, bn.eps
mu, var, s, xhat, loss = bn.mu, bn.var, bn.s, bn.xhat, bn.loss
total, at = bn.total, bn.at
xhat_k = at(xhat, k)


def compact(g_sum=None, correlation=None, scale=None, s_=s):
    """The compact backward formula with one part replaced."""
    g_sum = total(g[i]) if g_sum is None else g_sum
    correlation = xhat_k * total(g[i] * xhat) if correlation is None else correlation
    scale = gamma / (m * s_) if scale is None else scale
    return scale * (m * g[k] - g_sum - correlation)


def dl_dx(variance_term=True, mean_term=True, two=2):
    out = at(bn.dl_dxhat, k) / s
    if variance_term:
        out += bn.dl_dvar * two * (x[k] - mu) / m
    if mean_term:
        out += bn.dl_dmu / m
    return out


dl_dvar_half = total(bn.dl_dxhat * (x[i] - mu)) * sp.Rational(-1, 2) * (var + eps) ** sp.Rational(-1, 2)
dl_dvar_sign = total(bn.dl_dxhat * (x[i] - mu)) * sp.Rational(1, 2) * (var + eps) ** sp.Rational(-3, 2)
s_unbiased = sp.sqrt(m / (m - 1) * var + eps)
jac = Grad(xhat_k, x[i])

MUTANTS = {
    "dx.no-mean-path": (Grad(loss, x[k]), dl_dx(mean_term=False)),
    "dx.no-variance-path": (Grad(loss, x[k]), dl_dx(variance_term=False)),
    "dx.one-over-m-for-two-over-m": (Grad(loss, x[k]), dl_dx(two=1)),
    "dvar.exponent-half": (Grad(bn.loss_at_var, bn.VAR, at=var), dl_dvar_half),
    "dvar.sign": (Grad(bn.loss_at_var, bn.VAR, at=var), dl_dvar_sign),
    "dmu.sign": (Grad(bn.loss_at_mu, bn.MU, at=mu), total(bn.dl_dxhat / s)),
    "dxhat.no-gamma": (Grad(B.sum(g[i] * (gamma * h[i] + beta), i), h[k]), g[k]),
    "dgamma.x-for-xhat": (Grad(loss, gamma), total(g[i] * x[i])),
    "dbeta.weighted": (Grad(loss, beta), total(g[i] * xhat)),
    "compact.no-eps": (Grad(loss, x[k]), compact(s_=sp.sqrt(var))),
    "compact.eps-outside-root": (Grad(loss, x[k]), compact(s_=sp.sqrt(var) + eps)),
    "compact.unbiased-variance": (Grad(loss, x[k]), compact(s_=s_unbiased)),
    "compact.sign": (Grad(loss, x[k]), compact(g_sum=-total(g[i]))),
    "compact.x-for-xhat": (Grad(loss, x[k]), compact(correlation=x[k] * total(g[i] * x[i]))),
    "compact.sum-for-mean": (Grad(loss, x[k]), compact(scale=gamma / s)),
    "compact.mean-for-sum": (Grad(loss, x[k]), compact(g_sum=B.mean(g[i], i))),
    "compact.no-gamma": (Grad(loss, x[k]), compact(scale=1 / (m * s))),
    "jacobian.no-mean-term": (jac, (sp.KroneckerDelta(i, k) - xhat * xhat_k / m) / s),
    "jacobian.no-1/m": (jac, (sp.KroneckerDelta(i, k) - 1 / m - xhat * xhat_k) / s),
}

# the autograd layers reject every mutant too: tests/test_frameworks.py
FAST = Settings(explicit_sizes=(1, 2, 3), explicit_budget=5.0, random_instances=40,
                hypothesis_examples=20, step_identity_sizes=(1,), step_point_sizes=(),
                frameworks=(), simulation=False)


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_mutant_is_refuted_with_an_exact_counterexample(name):
    lhs, rhs = MUTANTS[name]
    min_size = 2 if name == "compact.unbiased-variance" else 1
    claim = Claim(f"mutant.{name}", name, B, (Equation(lhs, rhs),), min_size=min_size)
    result = check(claim, FAST)
    assert result.verdict.status == "refuted", (name, result.verdict.reason)
    cex = result.verdict.counterexample
    assert cex.residual != 0 and cex.size <= 3
    # the printed values, substituted into the statement by code independent of the search
    again = recheck.confirm_values(claim, cex.size, cex.values, cex.part, cex.functions)
    assert again.confirmed is True, (name, cex.values, again.reason)


def test_there_are_at_least_fifteen_mutants():
    assert len(MUTANTS) >= 15
