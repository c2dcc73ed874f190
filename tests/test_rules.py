"""The rule table: each rule's exact output on a small example, and each rule's soundness.

Soundness is checked by an independent layer: the explicit batch (plain sums, no symbolic-N
rule) must find ``before - after`` identically zero at N = 1..4, for every value of the free
sample indices.
"""

import pytest
import sympy as sp
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from derive.calculus import BOUND_INDICES, Batch, BatchSum, Grad, Held, Mean
from derive.explicit import ExplicitBatch, free_indices, index_assignments
from derive.rules import ORDER, RULES, normal_form, reduce

B = Batch("N")
N = B.size
u, v, x = B.samples("u"), B.samples("v"), B.samples("x")
i, k = B.index("i"), B.index("k")
b, c = B.params("b", "c")
a = B.param("a", positive=True)
j = BOUND_INDICES[0]
delta = sp.KroneckerDelta


def E(body, index=i):
    return B.mean(body, index)


def S(body, index=i):
    return B.sum(body, index)


def explicitly_equal(before, after, sizes=(1, 2, 3, 4)) -> bool:
    """``before = after`` identically at each batch size, for every value of the free indices."""
    for size in sizes:
        batch = ExplicitBatch(size, N)
        for env in index_assignments(free_indices(before, after), size):
            if not batch.is_zero(batch.eval(before - after, env)):
                return False
    return True


# -- the table: each rule on a small example, with its exact output -----------------------------

TABLE = [
    # (rule, input, expected)
    ("differentiate", Grad(E(u[i] + b), b), Mean(1, j, N)),
    ("differentiate", Grad(E(u[i]), u[k]), Mean(delta(j, k), j, N)),
    ("differentiate", Grad(Held(E(u[i] + b)), b), sp.S.Zero),
    ("differentiate", Grad(E((u[i] - c) ** 2), c, at=E(u[i])), E(-2 * (u[i] - E(u[i])))),
    ("differentiate", E(Grad(b * u[i], b)), E(u[i])),
    ("release-hold", Held(E(u[i])) + b, E(u[i]) + b),
    ("mean-as-sum", E(u[i]), S(u[i]) / N),
    ("expand", E(u[i] * (u[i] + b)), E(u[i] ** 2 + b * u[i])),
    ("expand", c * (E(u[i]) + b), c * E(u[i]) + b * c),
    ("linearity", E(u[i] + b), E(u[i]) + E(b)),
    ("linearity", E(c * u[i]), c * E(u[i])),
    ("linearity", S(c * u[i] * v[i]), c * S(u[i] * v[i])),
    ("linearity", E(x[i] * E(x[i])), E(x[i]) ** 2),
    ("mean-of-constant", E(b), b),
    ("mean-of-constant", S(b), N * b),
    ("mean-of-constant", E(u[k]), u[k]),
    ("sifting", E(delta(i, k) * u[i]), u[k] / N),
    ("sifting", S(delta(i, k) * u[i]), u[k]),
    ("sifting", S(delta(k, i) * u[i] * v[i]), u[k] * v[k]),
    ("root-of-product", sp.sqrt(a ** 2 * E(u[i] ** 2) + a ** 2 * b ** 2),
     a * sp.sqrt(E(u[i] ** 2) + b ** 2)),
    ("root-of-product", 1 / sp.sqrt(4 * b ** 2 + 4), 1 / (2 * sp.sqrt(b ** 2 + 1))),
    ("root-of-product", sp.sqrt(b ** 2 * c + b ** 2), sp.sqrt(b ** 2 * (c + 1))),
    ("algebra", (b ** 2 - 1) / (b - 1), b + 1),
    ("algebra", (b + 1) * (b - 1), b ** 2 - 1),
]


@pytest.mark.parametrize("rule, before, expected", TABLE,
                         ids=[f"{r[0]}-{n}" for n, r in enumerate(TABLE)])
def test_rule_gives_its_exact_expected_output(rule, before, expected):
    assert RULES[rule].apply(before) == expected


def test_table_covers_every_rule():
    assert {rule for rule, _, _ in TABLE} == set(RULES)


def test_reducer_order_names_only_rules_of_the_table():
    assert set(ORDER) <= set(RULES)


@pytest.mark.parametrize("rule, before, expected", TABLE,
                         ids=[f"{r[0]}-{n}" for n, r in enumerate(TABLE)])
def test_table_row_is_an_explicit_identity(rule, before, expected):
    assert explicitly_equal(before, expected)


@pytest.mark.parametrize("rule", [r for r in RULES if r != "differentiate"])
def test_rule_leaves_an_expression_it_does_not_apply_to_unchanged(rule):
    expr = u[i] * b
    assert RULES[rule].apply(expr) == expr


# -- nested reductions: the design must fit the BN variance term -------------------------------

def test_linearity_treats_a_closed_inner_mean_as_a_constant():
    assert RULES["linearity"].apply(E(x[i] * E(x[i]))) == E(x[i]) * E(x[i])


def test_linearity_pulls_the_outer_sample_out_of_an_inner_mean():
    # E_k[u_k E_i[u_i u_k]]: u_k is a constant of the inner mean, then E[u] of the outer one
    assert RULES["linearity"].apply(E(u[k] * E(u[i] * u[k]), k)) == E(u[i]) * E(u[i] ** 2)


def test_variance_body_reduces_to_mean_of_square_minus_square_of_mean():
    variance = E((x[i] - E(x[i])) ** 2)
    assert normal_form(variance) == E(x[i] ** 2) - E(x[i]) ** 2


def test_centered_values_have_mean_zero_for_symbolic_n():
    assert normal_form(E(x[i] - E(x[i]))) == 0


def test_sum_of_centered_values_times_a_sample_reduces_to_covariance():
    # sum_i v_i (x_i - E[x]) = N (E[v x] - E[v] E[x])
    covariance = E(v[i] * x[i]) - E(v[i]) * E(x[i])
    assert normal_form(S(v[i] * (x[i] - E(x[i]))) - N * covariance) == 0


def test_every_reduction_step_names_a_rule_of_the_table():
    steps = reduce(Grad(E((x[i] - E(x[i])) ** 2), x[k]))
    assert {s.rule for s in steps} <= set(RULES)


def test_jacobian_of_centering_reduces_to_delta_minus_one_over_n():
    assert normal_form(Grad(x[i] - E(x[i]), x[k])) == sp.cancel(delta(i, k) - 1 / N)


# -- soundness: Hypothesis-drawn expressions, checked explicitly -------------------------------

MAX_DEPTH = 3


def _depth(expr):
    return max((e.depth for e in expr.atoms(Mean, BatchSum)), default=0)


def _reduce_over(kind, index):
    def build(body):
        # stop nesting at MAX_DEPTH rather than filter: every draw stays usable
        return body if _depth(body) >= MAX_DEPTH else kind(body, index, N)
    return build


LEAVES = st.sampled_from([u[i], u[k], v[i], x[k], b, c, N, 1 / N, sp.Integer(2),
                          sp.Integer(-1), delta(i, k)])


def _extend(children):
    return st.one_of(
        st.tuples(children, children).map(lambda t: t[0] + t[1]),
        st.tuples(children, children).map(lambda t: t[0] * t[1]),
        children.map(lambda e: e ** 2),
        children.map(Held),
        children.map(_reduce_over(Mean, i)),
        children.map(_reduce_over(Mean, k)),
        children.map(_reduce_over(BatchSum, i)),
    )


BODIES = st.recursive(LEAVES, _extend, max_leaves=6)
WRT = st.sampled_from([b, u[i], u[k], x[k]])
EXPRESSIONS = st.one_of(
    BODIES,
    st.tuples(BODIES, WRT).map(lambda t: Grad(*t)),
    st.tuples(BODIES, WRT).map(lambda t: _reduce_over(Mean, i)(Grad(*t))),
)

SAMPLE_EXPRESSIONS = [
    E((x[i] - E(x[i])) ** 2),
    Grad(E((x[i] - E(x[i])) ** 2), x[k]),
    Grad(x[i] + b - Held(E(x[i] + b)), b),
    S(v[i] * (x[i] - E(x[i]))),
    E(delta(i, k) * u[i] * E(u[i])),
    Grad(S(v[i] * (u[i] + b - E(u[i] + b))), b),
]


# release-hold replaces a held statistic by its value: sound for values, not beneath a
# derivative (d/db sg(E[x+b]) = 0 but d/db E[x+b] = 1).  The reducer differentiates first, so
# its domain is expressions without an unevaluated Grad.
GRAD_FREE_RULES = ("release-hold",)


def _in_domain(rule, expr):
    return rule not in GRAD_FREE_RULES or not expr.has(Grad)


SAMPLE_CASES = [pytest.param(rule, expr, id=f"{rule}-{n}") for rule in sorted(RULES)
                for n, expr in enumerate(SAMPLE_EXPRESSIONS) if _in_domain(rule, expr)]


@pytest.mark.parametrize("rule, expr", SAMPLE_CASES)
def test_rule_is_sound_on_sample_expressions(rule, expr):
    assert explicitly_equal(expr, RULES[rule].apply(expr))


@pytest.mark.parametrize("rule", sorted(RULES))
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expr=EXPRESSIONS)
def test_rule_is_sound_on_drawn_expressions(rule, expr):
    assume(_in_domain(rule, expr))
    assert explicitly_equal(expr, RULES[rule].apply(expr))


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expr=EXPRESSIONS)
def test_normal_form_is_sound_on_drawn_expressions(expr):
    assert explicitly_equal(expr, normal_form(expr))


def test_release_hold_is_sound_beneath_a_derivative():
    expr = Grad(x[i] + b - Held(E(x[i] + b)), b)
    assert explicitly_equal(expr, RULES["release-hold"].apply(expr))
