"""The batch calculus: canonical bound indices, free symbols, held statistics, derivatives."""

import pytest
import sympy as sp

from derive.calculus import BOUND_INDICES, Batch, BatchSum, Held, Mean, activation, held, release
from derive.core import DeriveError

B = Batch("N")
N = B.size
u, x = B.samples("u"), B.samples("x")
i, k = B.index("i"), B.index("k")
b = B.param("b")
z = sp.Symbol("z", real=True)


# -- canonical bound indices -------------------------------------------------------------------

def test_mean_over_different_index_names_is_the_same_object():
    assert B.mean(u[i] + b, i) == B.mean(u[k] + b, k)


def test_mean_over_different_index_names_has_the_same_hash():
    assert hash(B.mean(u[i] * x[i], i)) == hash(B.mean(u[k] * x[k], k))


def test_sum_over_different_index_names_is_the_same_object():
    assert B.sum(u[i] ** 2, i) == B.sum(u[k] ** 2, k)


def test_mean_and_sum_of_the_same_body_differ():
    assert B.mean(u[i], i) != B.sum(u[i], i)


def test_outermost_reduction_binds_the_first_canonical_index():
    assert B.mean(u[i], i).index == BOUND_INDICES[0]


def test_nested_means_get_distinct_bound_indices():
    variance = B.mean((x[i] - B.mean(x[i], i)) ** 2, i)
    (inner,) = variance.body.atoms(Mean)
    assert variance.index != inner.index


def test_nested_mean_binds_the_index_of_its_depth():
    variance = B.mean((x[i] - B.mean(x[i], i)) ** 2, i)
    assert (variance.index, variance.depth) == (BOUND_INDICES[1], 2)


def test_inner_mean_depending_on_outer_index_keeps_outer_index_in_its_body():
    # E_k[ u_k * E_i[u_i u_k] ]: the inner mean is not closed, it depends on the outer sample
    nested = B.mean(u[k] * B.mean(u[i] * u[k], i), k)
    (inner,) = nested.body.atoms(Mean)
    assert u[nested.index] in inner.body.atoms(sp.Indexed)


def test_reductions_nested_beyond_the_canonical_indices_are_rejected():
    expr = u[i]
    with pytest.raises(ValueError, match="nest deeper"):
        for _ in range(len(BOUND_INDICES) + 1):
            expr = B.mean(expr * u[i], i)


# -- free symbols ------------------------------------------------------------------------------

def test_free_symbols_of_a_mean_exclude_its_bound_index():
    mean = B.mean(u[i] + b, i)
    assert mean.index not in mean.free_symbols


def test_free_symbols_of_a_sum_exclude_its_bound_index():
    total = B.sum(u[i] * b, i)
    assert total.index not in total.free_symbols


def test_free_symbols_of_a_mean_keep_parameters_and_size():
    assert {b, N} <= B.mean(u[i] + b, i).free_symbols


def test_free_symbols_of_a_mean_keep_a_free_sample_index():
    assert k in B.mean(u[i] * u[k], i).free_symbols


def test_free_symbols_of_a_nested_mean_exclude_both_bound_indices():
    variance = B.mean((x[i] - B.mean(x[i], i)) ** 2, i)
    assert not set(BOUND_INDICES) & variance.free_symbols


# -- held statistics ---------------------------------------------------------------------------

def test_derivative_of_a_held_statistic_is_zero():
    assert sp.diff(Held(B.mean(u[i] + b, i)), b) == 0


def test_held_wraps_every_outermost_statistic():
    expr = held(u[i] + b - B.mean(u[i] + b, i))
    assert expr == u[i] + b - Held(B.mean(u[i] + b, i))


def test_held_centering_has_derivative_one_in_the_bias():
    assert sp.diff(held(B.center(u[i] + b, i)), b) == 1


def test_held_wraps_only_the_outermost_statistic_of_a_nested_one():
    variance = B.mean((x[i] - B.mean(x[i], i)) ** 2, i)
    assert held(variance) == Held(variance)


def test_release_undoes_held():
    expr = B.center(u[i] + b, i)
    assert release(held(expr)) == expr


def test_held_leaves_an_expression_without_statistics_unchanged():
    assert held(u[i] + b) == u[i] + b


# -- derivatives -------------------------------------------------------------------------------

def test_derivative_of_a_mean_in_a_sample_is_a_mean_of_a_kronecker_delta():
    j = BOUND_INDICES[0]
    assert sp.diff(B.mean(u[i], i), u[k]) == Mean(sp.KroneckerDelta(j, k), j, N)


def test_derivative_of_a_sum_in_a_sample_is_a_sum_of_a_kronecker_delta():
    j = BOUND_INDICES[0]
    assert sp.diff(B.sum(u[i], i), u[k]) == BatchSum(sp.KroneckerDelta(j, k), j, N)


def test_derivative_of_a_sum_in_the_batch_size_is_not_silently_wrong():
    try:
        derivative = sp.diff(B.sum(b, i), N)
    except (DeriveError, ValueError, TypeError, NotImplementedError):
        derivative = b  # refusing to differentiate is fine; a wrong value is not
    assert sp.simplify(derivative - b) == 0


def test_derivative_of_a_mean_in_a_parameter_differentiates_the_body():
    assert sp.diff(B.mean(u[i] * b ** 2, i), b) == B.mean(2 * b * u[i], i)


# -- activations -------------------------------------------------------------------------------

def test_activation_derivative_is_the_named_prime_function():
    theta = activation("theta")
    assert sp.diff(theta(z), z) == theta.derivative(z)


def test_activation_derivative_is_named_with_a_prime():
    theta = activation("theta")
    assert theta.derivative.__name__ == "theta'"


def test_activation_derivative_obeys_the_chain_rule():
    theta = activation("theta")
    assert sp.diff(theta(2 * z + b), z) == 2 * theta.derivative(2 * z + b)


def test_activation_derivative_contains_no_unevaluated_derivative():
    theta = activation("theta")
    assert not sp.diff(theta(z ** 2), z).has(sp.Derivative, sp.Subs)


def test_activations_with_the_same_name_do_not_share_their_latex():
    fancy = activation("theta", r"\vartheta")
    activation("theta")  # a second one, without a LaTeX name, must not rename the first
    assert fancy.derivative._latex_name == r"\vartheta'"
