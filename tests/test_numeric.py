"""The numeric layer: complex-step derivatives and compiled evaluation in float64.

Tolerance everywhere: |a - b| <= TOL * (1 + max(|a|, |b|)) with TOL = 1e-9 (the layer's own).
"""

import numpy as np
import pytest
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st

from derive import numeric
from derive.calculus import Batch, Grad, Held, activation, held
from derive.core import Claim, Equation, Unsupported
from derive.explicit import ExplicitBatch
from derive.numeric import Compiled, Context, Instance

TOL = 1e-9
B = Batch("N")
N = B.size
u, x, g = B.samples("u"), B.samples("x"), B.samples("g")
i, k = B.index("i"), B.index("k")
b, c = B.params("b", "c")
delta = sp.KroneckerDelta

FINITE = st.floats(-10, 10, allow_nan=False, allow_infinity=False)
BATCHES = st.lists(FINITE, min_size=1, max_size=8)


def close(actual, expected, tol=TOL) -> bool:
    """|actual - expected| <= tol * (1 + max(|actual|, |expected|)), elementwise."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    scale = 1 + np.maximum(np.abs(actual), np.abs(expected))
    return bool(np.all(np.abs(actual - expected) <= tol * scale))


def evaluate(expr, indices, size, samples, params=None):
    """The compiled value as an array over the free indices, shape (size,) * len(indices)."""
    compiled = Compiled(expr, indices, N)
    ctx = Context(size, {base: np.asarray(vals, dtype=float) for base, vals in samples.items()},
                  params or {})
    out = np.asarray(compiled(ctx))
    out = out.reshape(out.shape + (1,) * (compiled.ndim - out.ndim))  # a constant is 0-d
    # free-index axes come first; every reduction axis has length 1 after reducing
    out = out[(slice(None),) * len(indices) + (0,) * (compiled.ndim - len(indices))]
    return np.broadcast_to(out, (size,) * len(indices))


# -- complex-step derivatives ------------------------------------------------------------------

def test_complex_step_derivative_of_sine_is_cosine():
    value = evaluate(Grad(sp.sin(b) * c, b), [], 1, {}, {b: 0.7, c: 2.0})
    assert close(value, 2.0 * np.cos(0.7))


def test_complex_step_derivative_of_mean_square_in_a_sample_is_two_u_over_n():
    values = [0.5, -1.0, 2.0, 3.5]
    grad = evaluate(Grad(B.mean(u[i] ** 2, i), u[k]), [k], 4, {u: values})
    assert close(grad, 2 * np.array(values) / 4)


def test_complex_step_jacobian_of_centering_is_the_centering_matrix():
    jac = evaluate(Grad(B.center(x[i], i), x[k]), [i, k], 3, {x: [1.0, -2.0, 0.25]})
    assert close(jac, np.eye(3) - np.ones((3, 3)) / 3)


def test_complex_step_derivative_of_activation_instance_matches_its_derivative():
    theta, z = activation("theta"), sp.Symbol("z")
    expr = numeric.instantiate(Grad(theta(b), b), {theta: sp.Lambda(z, sp.tanh(z))})
    assert close(evaluate(expr, [], 1, {}, {b: 0.3}), 1 - np.tanh(0.3) ** 2)


def test_held_centering_has_complex_step_derivative_one_in_the_bias():
    grad = evaluate(Grad(held(B.center(u[i] + b, i)), b), [i], 3, {u: [1.0, 2.0, 4.0]}, {b: 0.1})
    assert close(grad, np.ones(3))


def test_through_derivative_of_centered_output_in_bias_is_zero():
    grad = evaluate(Grad(B.center(u[i] + b, i), b), [i], 3, {u: [1.0, 2.0, 4.0]}, {b: 0.1})
    assert close(grad, np.zeros(3))


def test_instantiate_replaces_activation_and_its_derivative():
    theta = activation("theta")
    z = sp.Symbol("z")
    expr = numeric.instantiate(theta(b) + theta.derivative(b), {theta: sp.Lambda(z, z ** 3)})
    assert expr == b ** 3 + 3 * b ** 2


# -- compiled evaluation agrees with the exact explicit layer ----------------------------------

AGREEMENT = {
    "centered sample": (B.center(u[i] + b, i), [i]),
    "variance": (B.mean((u[i] - B.mean(u[i], i)) ** 2, i), []),
    "jacobian of centering": (Grad(B.center(u[i], i), u[k]), [i, k]),
    "gradient of a centered loss": (Grad(B.sum(g[i] * B.center(u[i] + b, i) ** 2, i), b), []),
    "held gradient of a centered loss": (Grad(B.sum(g[i] * held(B.center(u[i] + b, i)), i), b), []),
    "nonlinear mean": (sp.sin(u[i]) * B.mean(sp.cos(u[i] * b), i), [i]),
    "sifted sum": (B.sum(delta(i, k) * g[i] * u[i], i), [k]),
    "derivative of variance": (Grad(B.mean((u[i] - B.mean(u[i], i)) ** 2, i), u[k]), [k]),
}


def exact_values(expr, indices, size, samples, params):
    batch = ExplicitBatch(size, N)
    numbers = {batch.sample(base, t + 1): sp.Rational(v) for base, vals in samples.items()
               for t, v in enumerate(vals)}
    numbers.update({p: sp.Rational(v) for p, v in params.items()})
    out = np.empty((size,) * len(indices))
    for pos in np.ndindex(*out.shape):
        env = {idx: t + 1 for idx, t in zip(indices, pos)}
        out[pos] = float(sp.N(batch.substitute(batch.eval(expr, env), numbers), 30))
    return out


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("name", sorted(AGREEMENT))
def test_compiled_value_agrees_with_exact_explicit_value(name, seed):
    expr, indices = AGREEMENT[name]
    rng = np.random.default_rng(seed)
    size = int(rng.integers(1, 6))
    samples = {base: rng.uniform(-5, 5, size=size) for base in (u, g)}
    params = {b: float(rng.uniform(-5, 5))}
    assert close(evaluate(expr, indices, size, samples, params),
                 exact_values(expr, indices, size, samples, params))


# -- properties on Hypothesis-drawn batches ----------------------------------------------------

@given(values=BATCHES)
def test_centered_values_sum_to_zero(values):
    centered = evaluate(B.center(u[i], i), [i], len(values), {u: values})
    assert abs(centered.sum().real) <= TOL * (1 + max(abs(v) for v in values))


@given(values=BATCHES, bias=FINITE, step=FINITE)
def test_centered_values_do_not_change_when_the_bias_changes(values, bias, step):
    before = evaluate(B.center(u[i] + b, i), [i], len(values), {u: values}, {b: bias})
    after = evaluate(B.center(u[i] + b, i), [i], len(values), {u: values}, {b: bias + step})
    assert close(before, after)


@given(values=BATCHES)
def test_jacobian_rows_of_centering_sum_to_zero(values):
    jac = evaluate(Grad(B.center(x[i], i), x[k]), [i, k], len(values), {x: values})
    assert close(jac.sum(axis=1), 0.0)


@given(values=BATCHES, bias=FINITE)
def test_held_derivative_of_centered_output_is_one_for_every_sample(values, bias):
    grad = evaluate(Grad(held(B.center(u[i] + b, i)), b), [i], len(values), {u: values},
                    {b: bias})
    assert close(grad, 1.0)


@given(values=BATCHES)
def test_held_value_equals_the_statistic(values):
    held_mean = evaluate(Held(B.mean(u[i], i)), [], len(values), {u: values})
    assert close(held_mean, np.mean(values))


@given(values=BATCHES)
def test_compiled_variance_matches_numpy_variance(values):
    variance = evaluate(B.mean((u[i] - B.mean(u[i], i)) ** 2, i), [], len(values), {u: values})
    assert close(variance, np.var(values))


# -- the claim-level driver --------------------------------------------------------------------

TRUE_CLAIM = Claim("test-numeric.update-cancels", "update cancels", B,
                   (Equation(B.center(u[i] + b + c, i), B.center(u[i] + b, i)),))
FALSE_CLAIM = Claim("test-numeric.sum-centering", "sum centering", B,
                    (Equation(u[i] + b + c - B.sum(u[i] + b + c, i),
                              u[i] + b - B.sum(u[i] + b, i)),),
                    min_size=2)


def test_instance_error_of_a_true_claim_is_within_tolerance():
    worst = max(numeric.instance_error(TRUE_CLAIM, inst)
                for inst in numeric.random_instances(TRUE_CLAIM, 20))
    assert worst <= numeric.TOLERANCE


def test_instance_error_of_a_false_claim_exceeds_tolerance():
    inst = Instance(2, {u: [1.0, 2.0]}, {b: 0.0, c: 1.0})
    assert numeric.instance_error(FALSE_CLAIM, inst) > numeric.TOLERANCE


def test_hypothesis_driver_finds_no_failure_for_a_true_claim():
    _, _, failure = numeric.hypothesis_check(TRUE_CLAIM, 20)
    assert failure is None


def test_hypothesis_driver_finds_a_failure_for_a_false_claim():
    _, _, failure = numeric.hypothesis_check(FALSE_CLAIM, 20)
    assert failure is not None


def test_random_instances_respect_the_claim_minimum_size():
    assert min(inst.size for inst in numeric.random_instances(FALSE_CLAIM, 30)) >= 2


def test_variables_lists_sample_bases_and_parameters():
    assert numeric.variables(TRUE_CLAIM) == ([u], [b, c])


def test_compiled_claims_are_not_shared_between_claims_with_the_same_id():
    # regression: compiled equations were once cached by (claim.id, id(claim)), and a new claim
    # at a freed claim's address got the old claim's compiled functions
    inst = Instance(2, {u: [1.0, 2.0]}, {b: 0.5})
    true_eq, false_eq = Equation(u[i] + b, u[i] + b), Equation(u[i] + b, u[i] - b)
    errors = []
    for _ in range(20):
        old = Claim("test-numeric.reused", "t", B, (true_eq,))
        numeric.instance_error(old, inst)
        del old
        errors.append(numeric.instance_error(Claim("test-numeric.reused", "f", B, (false_eq,)),
                                             inst))
    assert min(errors) > numeric.TOLERANCE


def test_complex_step_through_a_non_analytic_function_is_unsupported():
    with pytest.raises(Unsupported):
        Compiled(Grad(sp.Max(0, b), b), [], N)


def test_hypothesis_draws_do_not_depend_on_what_the_process_imported():
    """Hypothesis mixes literals from imported local modules into its draws; our properties
    run without that pool, so a report is the same whatever else the process loaded."""
    providers = pytest.importorskip("hypothesis.internal.conjecture.providers")
    if not hasattr(providers, "_get_local_constants"):
        pytest.skip("this Hypothesis has no pool of local constants")
    import derive.simulation  # noqa: F401  -- a module full of literals
    from derive.claims import centering

    assert len(providers._get_local_constants().floats) > 0   # the pool is there outside
    seen = []

    def error(inst):
        seen.append(len(providers._get_local_constants().floats))
        return 0.0

    claim = next(c for c in centering.claims() if c.id == "centering.drift")
    numeric.hypothesis_check(claim, 5, error=error)
    assert seen and set(seen) == {0}
    assert len(providers._get_local_constants().floats) > 0   # and is back afterwards


# -- a failure is shrunk only where it is news -------------------------------------------------

def _square_of_mean_claim():
    u_, i_ = B.samples("u"), B.index("i")
    return Claim("false.square-of-mean", "the mean of the square is the square of the mean", B,
                 (Equation(B.mean(u_[i_] ** 2, i_), B.mean(u_[i_], i_) ** 2),))


def test_hypothesis_shrinks_a_failure_no_layer_has_seen():
    from derive.verify import Settings, numeric_layer
    claim = _square_of_mean_claim()
    alone = numeric_layer(claim, Settings(random_instances=0), shrink=True)
    assert "shrunk_failure" in alone.details["hypothesis"]
    assert "Hypothesis shrinks its failure to N = 2" in alone.summary


def test_a_failure_seen_before_is_reported_as_drawn_not_shrunk():
    from derive.verify import Settings, check, numeric_layer
    claim = _square_of_mean_claim()
    told = numeric_layer(claim, Settings(random_instances=0), shrink=False)
    assert "first_failure" in told.details["hypothesis"]
    assert "Hypothesis fails first at" in told.summary
    # the random instances fail first: Hypothesis is not asked to shrink what they found
    seen = numeric_layer(claim, Settings(), shrink=True)
    assert seen.details["random"]["failures"] > 0 and "first_failure" in seen.details["hypothesis"]
    # and in a whole check, the explicit layer's failure is enough
    result = check(claim, Settings(frameworks=(), random_instances=0))
    [num] = [e for e in result.evidence if e.kind == "numeric"]
    assert result.verdict.status == "refuted" and "first_failure" in num.details["hypothesis"]


def test_hypothesis_draws_no_nearly_constant_group_that_would_measure_float64_instead():
    # InstanceNorm with epsilon = 0 of x + a[n]: a group (0, 1e-7) shifted by a[n] = 3.8 is
    # nearly constant, and normalizing it loses digits to cancellation (an error of 2e-10
    # with tiny entries drawn).  Tiny magnitudes are drawn as 0, so the worst error is the
    # statement's own round-off, far below the smallest error the reports print (1e-11).
    from derive.claims import normalization
    from derive.core import ERROR_FLOOR
    from derive.verify import statement_scope
    claim = next(c for c in normalization.claims() if c.id == "family.in.sample-bias")
    count, worst, failure = numeric.hypothesis_check(statement_scope(claim).claim, 100)
    assert failure is None and count > 50 and worst < ERROR_FLOOR / 30
