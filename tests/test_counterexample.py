"""Minimal counterexamples: smallest batch size, simplest numbers, exact residual."""

import pytest
import sympy as sp

from derive import counterexample
from derive.calculus import Batch
from derive.claims import all_claims
from derive.claims import centering as C
from derive.core import Claim, Equation
from derive.explicit import ExplicitBatch, free_indices
from derive.numeric import instantiate, variables

CLAIMS = {c.id: c for c in all_claims()}


@pytest.fixture(scope="module")
def unnormalized():
    return counterexample.search(CLAIMS["centering.unnormalized-sum"])


@pytest.fixture(scope="module")
def nonlinear():
    return counterexample.search(CLAIMS["centering.nonlinear"])


def exact_residual(claim, cex):
    """Re-evaluate the counterexample from its printed values, independently of the search."""
    eq = claim.equations[cex.part]
    batch = ExplicitBatch(cex.size, claim.batch.size)
    bases, params = variables(claim)
    env = {s: cex.values[str(s)] for s in free_indices(eq.lhs, eq.rhs)}
    numbers = {batch.sample(base, t + 1): sp.sympify(v)
               for base in bases for t, v in enumerate(cex.values[str(base)])}
    numbers.update({p: sp.sympify(cex.values[str(p)]) for p in params})
    value = batch.eval(instantiate(eq.lhs - eq.rhs, dict(cex.functions)), env)
    return sp.simplify(batch.substitute(value, numbers))


# -- the unnormalized sum ----------------------------------------------------------------------

def test_unnormalized_sum_counterexample_is_at_n_2(unnormalized):
    assert unnormalized.size == 2


def test_unnormalized_sum_counterexample_residual_is_plus_or_minus_one(unnormalized):
    assert unnormalized.residual in (sp.Integer(1), sp.Integer(-1))


def test_unnormalized_sum_counterexample_residual_is_exact(unnormalized):
    assert unnormalized.residual.is_Integer


def test_unnormalized_sum_counterexample_residual_is_one_minus_n_times_the_step(unnormalized):
    step = unnormalized.values[str(C.db)]
    assert unnormalized.residual == (1 - unnormalized.size) * step


def test_unnormalized_sum_counterexample_rechecks_exactly(unnormalized):
    claim = CLAIMS["centering.unnormalized-sum"]
    assert exact_residual(claim, unnormalized) == unnormalized.residual


# -- the nonlinearity --------------------------------------------------------------------------

def test_nonlinear_counterexample_is_at_n_2(nonlinear):
    assert nonlinear.size == 2


def test_nonlinear_counterexample_uses_relu(nonlinear):
    assert dict(nonlinear.functions) == {C.theta: C.RELU}


def test_nonlinear_counterexample_residual_is_an_exact_nonzero_rational(nonlinear):
    assert nonlinear.residual.is_Rational and nonlinear.residual != 0


def test_nonlinear_counterexample_rechecks_exactly_with_relu(nonlinear):
    claim = CLAIMS["centering.nonlinear"]
    assert exact_residual(claim, nonlinear) == nonlinear.residual


def test_nonlinear_counterexample_inputs_have_both_signs_after_the_bias(nonlinear):
    # ReLU is affine on each half-line: a failure needs pre-activations on both sides of 0
    b, db = nonlinear.values[str(C.b)], nonlinear.values[str(C.db)]
    points = [v + b + s for v in nonlinear.values[str(C.u)] for s in (0, db)]
    assert min(points) < 0 < max(points)


# -- true claims and the search itself ---------------------------------------------------------

@pytest.mark.parametrize("claim_id", ["centering.update-cancels", "centering.affine",
                                      "centering.jacobian", "centering.full-gradient"])
def test_true_claim_gets_no_counterexample(claim_id):
    assert counterexample.search(CLAIMS[claim_id], max_size=3) is None


def test_counterexample_at_n_1_for_a_claim_false_at_every_size():
    B = Batch("N")
    u, i, b = B.samples("u"), B.index("i"), B.param("b")
    wrong = Claim("test-cex.double-centering", "2/N centering", B,
                  (Equation(u[i] + b - 2 * B.mean(u[i] + b, i), u[i] - 2 * B.mean(u[i], i)),))
    assert counterexample.search(wrong).size == 1


def test_search_stops_at_its_maximum_size():
    assert counterexample.search(CLAIMS["centering.unnormalized-sum"], max_size=1) is None


def test_candidates_start_with_all_zeros():
    assert next(counterexample._candidates(3, seed=0)) == (0, 0, 0)


@pytest.mark.parametrize("value, nonzero", [
    (sp.Integer(0), False), (sp.Rational(1, 2), True), (sp.sqrt(2) - sp.sqrt(2), False),
    (sp.tanh(1) - sp.tanh(sp.Rational(1, 2)), True), (sp.Float(0.0), False),
])
def test_is_nonzero_decides_exact_values(value, nonzero):
    assert bool(counterexample.is_nonzero(value)) is nonzero
