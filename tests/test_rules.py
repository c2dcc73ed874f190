"""The rule table: each rule's exact output on a small example, and each rule's soundness.

Soundness is checked by an independent oracle that uses no symbolic-N rule: the explicit batch
writes every reduction out as a plain sum at N = 1..4, for every value of the free sample
indices, and ``before - after`` must be exactly 0 at random rational points (samples and
parameters; a positive symbol gets a positive value).  The drawn expressions are built for the
rule under test, so that it changes them: a step that changes nothing proves nothing.
"""

import random

import pytest
import sympy as sp
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from derive.calculus import (BOUND_INDICES, Batch, BatchSum, Grad, Held, Mean, Statistic, held,
                             release)
from derive.explicit import ExplicitBatch, free_indices, index_assignments
from derive.rules import ORDER, RULES, _bottom_up, normal_form, reduce

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


# -- the oracle: explicit N, exact random rational points --------------------------------------

SIZES = (1, 2, 3, 4)
POINTS = 2        # random rational points per batch size
TINY = sp.Float("1e-40", 60)


def _number(symbol, rng):
    """A random rational that the symbol's sign assumptions admit."""
    p, q = rng.randint(-12, 12), rng.randint(1, 5)
    if symbol.is_positive or symbol.is_nonnegative:
        p = abs(p) or 1
    return sp.Rational(p, q)


def _undefined(value):
    return value.has(sp.zoo, sp.nan, sp.oo, -sp.oo)


def _vanishes(value) -> bool:
    """An exact number (rationals, roots of rationals): is it 0?"""
    if not value.is_Rational:
        value = sp.expand(value)
    if value.is_Rational:
        return bool(value == 0)
    re, im = sp.N(value, 60).as_real_imag()
    # an algebraic number of this size that small is 0
    return bool(abs(re) < TINY and abs(im) < TINY)


def explicitly_equal(before, after, sizes=SIZES, points=POINTS, seed=0) -> bool | None:
    """Is ``before = after`` at each batch size, for every value of the free indices?

    True: equal at every random rational point where both are defined (one at least).
    False: a point where they differ, or ``after`` undefined wherever ``before`` is defined.
    None: ``before`` is undefined at every point tried (0/0, say): nothing to compare.
    (A point where only one side is defined is skipped: at explicit N a delta may cancel a
    pole of one side, 0/(u_i + 1) = 0, that the other side keeps.)
    """
    rng = random.Random(seed)
    defined = compared = 0
    for size in sizes:
        batch = ExplicitBatch(size, N)
        pairs = [(batch.eval(before, env), batch.eval(after, env))
                 for env in index_assignments(free_indices(before, after), size)]
        free = set().union(*(e.free_symbols for pair in pairs for e in pair),
                           *(d.free_symbols for d in batch.definitions.values()))
        free = sorted(free - batch.definitions.keys(), key=lambda s: s.name)
        for _ in range(points):
            numbers = {s: _number(s, rng) for s in free}
            for s, definition in batch.definitions.items():   # in the order they were made
                numbers[s] = definition.xreplace(numbers)
            for left, right in pairs:
                left = left.xreplace(numbers)
                if _undefined(left):
                    continue
                defined += 1
                right = right.xreplace(numbers)
                if _undefined(right):
                    continue
                if not _vanishes(left - right):
                    return False
                compared += 1
    return None if not defined else compared > 0


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
    ("statistic", E(x[i]), Statistic(E(x[i]))),
    ("statistic", E(x[i] + b), Statistic(E(x[i])) + b),
    ("statistic", S(x[i]) * E(x[i]), N * Statistic(E(x[i])) ** 2),
    ("statistic", S(x[i]) + S(u[i] * v[i]), S(x[i]) + S(u[i] * v[i])),   # no mean named: sums
    ("statistic", E((x[i] - E(x[i])) ** 2), Statistic(E((x[i] - Statistic(E(x[i]))) ** 2))),
    ("statistic", E((a * x[i] - a * E(x[i])) ** 2),
     a ** 2 * Statistic(E((x[i] - Statistic(E(x[i]))) ** 2))),
    ("statistic", E(u[i] * v[i]) + E(delta(i, k) * u[i]), E(u[i] * v[i]) + E(delta(i, k) * u[i])),
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
    assert explicitly_equal(before, expected) is True


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


# -- expressions each rule applies to, drawn by Hypothesis or by a seeded generator ------------
#
# One builder per rule makes an expression the rule changes, from generic operands; the same
# builders serve the Hypothesis strategies (``DrawnChoices``) and the fire-rate checks below
# (``SeededChoices``, a plain ``random.Random``), so both see the same kind of expression.

MAX_DEPTH = 3


class DrawnChoices:
    """Choices drawn by Hypothesis (they shrink towards the first option, the smallest)."""

    def __init__(self, draw):
        self.draw = draw

    def pick(self, options):
        return self.draw(st.sampled_from(options))

    def number(self, low, high):
        return self.draw(st.integers(low, high))


class SeededChoices:
    """The same choices from a seeded ``random.Random``: the same expressions on every run."""

    def __init__(self, seed):
        self.rng = random.Random(seed)

    def pick(self, options):
        return options[self.rng.randrange(len(options))]

    def number(self, low, high):
        return self.rng.randint(low, high)


def _depth(expr):
    return max((e.depth for e in expr.atoms(Mean, BatchSum)), default=0)


def reduction(kind, body, index=i):
    # stop nesting at MAX_DEPTH rather than filter: every draw stays usable
    return body if _depth(body) >= MAX_DEPTH else kind(body, index, N)


LEAVES = (u[i], b, u[k], v[i], x[k], c, a, N, 1 / N, sp.Integer(2), sp.Integer(-1), delta(i, k))
FORMS = ("leaf", "add", "mul", "square", "held", "mean-i", "mean-k", "sum-i")
WRT = (b, u[i], u[k], x[k], c)
ROOT_FACTORS = (a ** 2, a, sp.Integer(4), sp.Integer(9), N, 1 / N, 4 / N, 2 * a, a * N, b ** 2,
                a ** 2 * c ** 2)
ROOT_POWERS = (sp.Rational(1, 2), sp.Rational(-1, 2), sp.Rational(3, 2), sp.Rational(-3, 2))


def term(d, depth=2):
    """A generic expression: sums, products, squares, held values and reductions of leaves."""
    form = "leaf" if depth == 0 else d.pick(FORMS)
    if form == "leaf":
        return d.pick(LEAVES)
    sub = depth - 1
    if form == "add":
        return term(d, sub) + term(d, sub)
    if form == "mul":
        return term(d, sub) * term(d, sub)
    if form == "square":
        return term(d, sub) ** 2
    if form == "held":
        return Held(term(d, sub))
    kind, index = {"mean-i": (Mean, i), "mean-k": (Mean, k), "sum-i": (BatchSum, i)}[form]
    return reduction(kind, term(d, sub), index)


def sample_term(d, index=i):
    """A term that depends on the sample ``index``."""
    return d.pick((u[index], v[index], u[index] ** 2, u[index] * v[index])) * term(d, 1)


def two(d, depth=1):
    """Two different generic terms."""
    first, second = term(d, depth), term(d, depth)
    return first, (second + 1 if second == first or second == -first else second)


def statistic(d):
    kind, index = d.pick(((Mean, i), (BatchSum, i), (Mean, k)))
    return reduction(kind, sample_term(d, index) + term(d, 1), index)


def for_differentiate(d):
    wrt = d.pick(WRT)
    body = term(d, 1) + d.pick((wrt, wrt ** 2, E(u[i] * wrt), E(wrt + v[i]))) * term(d, 1)
    form = d.pick(("plain", "held", "in-mean", "at"))
    if form == "held":
        return Grad(held(body) + body, wrt)
    if form == "in-mean":    # d/du_i under a mean over i
        return E(Grad(body.xreplace({wrt: u[i]}) + u[i] * term(d, 1), u[i]) * term(d, 1))
    if form == "at":         # a node's partial derivative, evaluated at the node's value
        node = d.pick((E(u[i]), E(u[i] ** 2), b * E(v[i])))
        return Grad(E((u[i] - c) ** 2 * term(d, 1)) + c * term(d, 1), c, at=node)
    return Grad(body, wrt)


def for_release_hold(d):
    value = d.pick((statistic(d), term(d, 1) + u[i]))
    hold = d.pick((Held(value), Held(Held(value)), Held(value * Held(statistic(d)))))
    form = d.pick(("sum", "product", "in-mean", "beside-derivative"))
    if form == "sum":
        return term(d, 1) + hold
    if form == "product":
        return term(d, 1) * hold
    if form == "in-mean":    # a held statistic inside a mean
        return reduction(Mean, u[i] * hold + term(d, 1))
    held_below = Grad(held(statistic(d)) + b * term(d, 1), b)   # stays: beneath a derivative
    return hold + term(d, 1) * held_below


def for_mean_as_sum(d):
    index = d.pick((i, k))
    mean = reduction(Mean, sample_term(d, index) + term(d, 1), index)
    form = d.pick(("alone", "nested", "in-context"))
    if form == "nested":
        return reduction(Mean, u[k] * mean + term(d, 1), k)
    if form == "in-context":
        return term(d, 1) * mean + term(d)
    return mean


def for_expand(d):
    (p, q), (r, s) = two(d), two(d)
    form = d.pick(("product", "square", "in-mean", "factor"))
    if form == "square":
        return (p + q) ** 2
    if form == "in-mean":
        return reduction(Mean, sample_term(d) * (p + q))
    if form == "factor":
        return term(d, 1) * (statistic(d) + p)
    return (p + q) * (r + s)


def for_linearity(d):
    kind = d.pick((Mean, BatchSum))
    form = d.pick(("sum", "factor", "closed-factor", "nested"))
    if form == "sum":
        return reduction(kind, sample_term(d) + term(d, 1))
    if form == "factor":      # a factor free of the bound index: a parameter or u_k
        return reduction(kind, d.pick((b, c, a, N, u[k], 2 * b)) * sample_term(d))
    if form == "closed-factor":   # a closed statistic is a constant of the outer reduction
        return reduction(kind, statistic(d) * sample_term(d))
    # E_k[u_k E_i[u_i u_k]]: u_k is a constant of the inner mean
    return reduction(Mean, u[k] * reduction(kind, u[i] * u[k] * term(d, 1)), k)


def constant(d, index):
    """A term free of the sample ``index`` (constants, other samples, closed statistics)."""
    other = k if index == i else i
    leaves = (b, c, a, N, u[other], x[other], statistic(d))
    return d.pick(leaves) * d.pick(leaves) + d.pick(leaves)


def for_mean_of_constant(d):
    kind, index = d.pick(((Mean, i), (BatchSum, i), (Mean, k)))
    reduced = reduction(kind, constant(d, index), index)
    return d.pick((reduced, term(d, 1) * reduced + term(d, 1)))


def for_sifting(d):
    kind = d.pick((Mean, BatchSum))
    kronecker = d.pick((delta(i, k), delta(k, i)))
    picked = reduction(kind, kronecker * (sample_term(d) + term(d, 1)))
    form = d.pick(("alone", "product", "nested"))
    if form == "product":
        return term(d, 1) * picked
    if form == "nested":      # the delta's other index is the bound index of an outer mean
        return reduction(Mean, v[k] * picked + term(d, 1), k)
    return picked


def for_root_of_product(d):
    factor = d.pick(ROOT_FACTORS)
    p, q = two(d)
    if not (p + q).is_Add:
        q = q + b
    root = sp.Add(factor * p, factor * q) ** d.pick(ROOT_POWERS)
    return d.pick((root, term(d, 1) * root + term(d, 1), reduction(Mean, u[i] * root)))


def for_algebra(d):
    (p, q), (r, s) = two(d), two(d)
    form = d.pick(("quotient", "fractions", "common", "product"))
    if form == "quotient":
        return (p ** 2 - q ** 2) / (p - q)
    if form == "fractions":
        return p / N + q / d.pick((b, a, N ** 2, r + s))
    if form == "common":
        return (p * r + q * r) / (r * d.pick((a, N, b + 1)))
    return (p + q) * (r - s)


def for_statistic(d):
    """Statistics of one input: plain, shifted, scaled, nested (a variance), or summed."""
    base = d.pick((u, x))
    shift = d.pick((sp.S.Zero, b, c * N, 2 * a))
    scale = d.pick((sp.S.One, a, 2 * b))
    value = scale * base[i] + shift
    mean = E(value)
    form = d.pick(("mean", "sum", "variance", "power", "in-context"))
    if form == "sum":          # a sum is N times its mean where that mean is named
        return S(value) * d.pick((mean, E(base[i])))
    if form == "variance":
        return E((value - mean) ** 2)
    if form == "power":
        return E(base[i] ** d.pick((2, 3))) * mean
    if form == "in-context":   # beside a reduction of two inputs, which stays as it is
        return S(u[i] * v[i] * mean) + term(d, 1) * mean
    return mean


BUILDERS = {
    "differentiate": for_differentiate, "release-hold": for_release_hold,
    "mean-as-sum": for_mean_as_sum, "expand": for_expand, "linearity": for_linearity,
    "mean-of-constant": for_mean_of_constant, "sifting": for_sifting,
    "root-of-product": for_root_of_product, "algebra": for_algebra,
    "statistic": for_statistic,
}


def in_context(d, expr):
    """``expr`` as drawn, or as part of a larger expression: beside its own derivative, where
    a rule applies beneath the derivative and outside it (no derivative of a derivative: the
    explicit layer does not take nested derivatives)."""
    form = d.pick(("as-drawn", "sum", "product", "derivative"))
    if form == "sum":
        return expr + term(d, 1)
    if form == "product":
        return term(d, 1) * expr
    if form == "derivative" and not expr.has(Grad):
        return Grad(expr, d.pick(WRT)) + expr
    return expr


def build(rule, d):
    """An expression for ``rule``: mostly one it applies to, sometimes a generic one."""
    if d.number(0, 5) == 0:
        return in_context(d, term(d))
    return in_context(d, BUILDERS[rule](d))


@st.composite
def expressions(draw, rule):
    return build(rule, DrawnChoices(draw))


@st.composite
def any_expressions(draw):
    return build(draw(st.sampled_from(sorted(RULES))), DrawnChoices(draw))


# -- soundness of each rule where it fires --------------------------------------------------------

def _fires(rule, expr):
    after = RULES[rule].apply(expr)
    return after != expr, after


@pytest.mark.parametrize("rule", sorted(RULES))
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_rule_is_sound_where_it_fires_on_drawn_expressions(rule, data):
    expr = data.draw(expressions(rule), label="before")
    fired, after = _fires(rule, expr)
    event(f"{rule}: fired" if fired else f"{rule}: unchanged")
    assume(fired)   # an unchanged expression equals itself: nothing to check
    found = explicitly_equal(expr, after)
    assume(found is not None)   # undefined wherever it was evaluated (0/0): nothing to check
    assert found, f"{rule}: {expr}  ->  {after}"


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_normal_form_is_sound_on_drawn_expressions(data):
    expr = data.draw(any_expressions(), label="before")
    after = normal_form(expr)
    event("normal form: changed" if after != expr else "normal form: unchanged")
    assume(after != expr)
    found = explicitly_equal(expr, after)
    assume(found is not None)
    assert found, f"{expr}  ->  {after}"


# Each rule changes most of the expressions drawn for it.  Counted on the same builders with a
# seeded random.Random, so the share is the same on every run and under every profile.
FIRE_DRAWS = 200
MIN_FIRE_SHARE = 0.6


@pytest.mark.parametrize("rule", sorted(RULES))
def test_rule_fires_on_most_expressions_drawn_for_it(rule):
    d = SeededChoices(f"fire-{rule}")
    fired = sum(_fires(rule, build(rule, d))[0] for _ in range(FIRE_DRAWS))
    assert fired >= MIN_FIRE_SHARE * FIRE_DRAWS, f"{rule} fired on {fired} of {FIRE_DRAWS}"


# -- the properties fail when a rule is unsound ---------------------------------------------------
#
# A plausible wrong version of each rule: the builders and the oracle must catch it within a
# few dozen draws, or the soundness properties above could not fail either.

def _sifting_without_the_mean(expr):
    def node(e):
        out = RULES["sifting"].apply(e) if isinstance(e, Mean) else e
        return out * e.size if out != e else None
    return _bottom_up(expr, node)


def _roots_of_any_factor(expr):   # sqrt(b^2 X) = b sqrt(X) without b > 0
    out = RULES["root-of-product"].apply(expr)
    return sp.powdenest(sp.expand_power_base(out, force=True), force=True)


def _sum_of_a_constant_is_the_constant(expr):
    return _bottom_up(expr, lambda e: e.body if isinstance(e, BatchSum)
                      and e.index not in e.body.free_symbols else None)


def _mean_of_a_product_is_the_product_of_means(expr):
    return _bottom_up(expr, lambda e: sp.Mul(*[e.func(f, e.index, e.size) for f in e.body.args])
                      if isinstance(e, Mean) and e.body.is_Mul else None)


def _differentiate_through_a_hold(expr):
    return RULES["differentiate"].apply(release(expr))


def _square_of_a_sum_is_the_sum_of_squares(expr):
    return expr.replace(lambda e: e.is_Pow and e.exp == 2 and e.base.is_Add,
                        lambda e: sp.Add(*[t ** 2 for t in e.base.args]))


def _mean_as_sum_without_one_over_n(expr):
    return _bottom_up(expr, lambda e: BatchSum(e.body, e.index, e.size)
                      if isinstance(e, Mean) else None)


def _drop_the_denominator(expr):
    return sp.numer(sp.together(expr))


def _a_sum_named_as_its_mean(expr):   # sum_j x_j = mu_B, the N dropped
    return RULES["statistic"].apply(_bottom_up(
        expr, lambda e: Mean(e.body, e.index, e.size) if isinstance(e, BatchSum) else None))


MUTANTS = {
    "differentiate": _differentiate_through_a_hold,
    "release-hold": release,       # also beneath a derivative: d/db sg(E[x+b]) = 0 becomes 1
    "mean-as-sum": _mean_as_sum_without_one_over_n,
    "expand": _square_of_a_sum_is_the_sum_of_squares,
    "linearity": _mean_of_a_product_is_the_product_of_means,
    "mean-of-constant": _sum_of_a_constant_is_the_constant,
    "sifting": _sifting_without_the_mean,
    "root-of-product": _roots_of_any_factor,
    "algebra": _drop_the_denominator,
    "statistic": _a_sum_named_as_its_mean,
}
MUTANT_DRAWS = 60


def test_every_rule_has_a_wrong_version():
    assert set(MUTANTS) == set(RULES)


@pytest.mark.parametrize("rule", sorted(MUTANTS))
def test_a_wrong_version_of_the_rule_is_caught_on_expressions_drawn_for_it(rule):
    d = SeededChoices(f"mutant-{rule}")
    for _ in range(MUTANT_DRAWS):
        expr = build(rule, d)
        after = MUTANTS[rule](expr)
        if after != expr and explicitly_equal(expr, after) is False:
            return
    pytest.fail(f"no unsound step of the wrong {rule} found in {MUTANT_DRAWS} draws")


@pytest.mark.parametrize("before, after", [
    (E(x[i]) ** 2, E(x[i] ** 2)),                        # equal at N = 1 only
    (sp.sqrt(b ** 2 * E(u[i] ** 2)), b * sp.sqrt(E(u[i] ** 2))),   # wrong for b < 0
    (Grad(Held(E(x[i] + b)), b), sp.S.One),             # a hold has derivative 0
    (S(delta(i, k) * u[i]), u[k] / N),
    ((b ** 2 - 1) / (b - 1), b - 1),
], ids=["mean-square", "root-sign", "held-derivative", "sifting-scale", "cancel"])
def test_the_oracle_rejects_a_near_identity(before, after):
    assert explicitly_equal(before, after) is False


# -- soundness on the expressions of the proofs ---------------------------------------------------

SAMPLE_EXPRESSIONS = [
    E((x[i] - E(x[i])) ** 2),
    Grad(E((x[i] - E(x[i])) ** 2), x[k]),
    Grad(x[i] + b - Held(E(x[i] + b)), b),
    S(v[i] * (x[i] - E(x[i]))),
    E(delta(i, k) * u[i] * E(u[i])),
    Grad(S(v[i] * (u[i] + b - E(u[i] + b))), b),
    # held statistics: beside a sample, inside a mean, held twice, beneath a derivative
    x[k] * Held(E(x[i])) + E(u[i] * Held(E(u[i]))) + Held(Held(E(u[i] ** 2)))
    + Grad(Held(E(x[i] + b)), b),
    # the normalization of a scaled input: a positive factor common to the radicand
    (x[k] - E(x[i])) / sp.sqrt(a ** 2 * E((x[i] - E(x[i])) ** 2) + a ** 2 * c ** 2),
    sp.sqrt(4 * E(x[i] ** 2) / N + 4 * S(b ** 2) / N ** 2) ** 3,
    (E(x[i]) ** 2 - b ** 2) / (E(x[i]) - b) + 1 / N + b / (N * c),
    S(delta(k, i) * E(u[i] * v[i]) * (u[i] + b)),
    # a closed statistic is a constant of an outer reduction; a held one too
    E(b * E(x[i]) + u[k]) + S(c * Held(E(u[i]))) * E(x[i] - Held(E(x[i]))),
]
SAMPLE_CASES = [pytest.param(rule, expr, id=f"{rule}-{n}") for rule in sorted(RULES)
                for n, expr in enumerate(SAMPLE_EXPRESSIONS) if _fires(rule, expr)[0]]


@pytest.mark.parametrize("rule, expr", SAMPLE_CASES)
def test_rule_is_sound_on_sample_expressions(rule, expr):
    fired, after = _fires(rule, expr)
    assert fired and explicitly_equal(expr, after) is True


def test_every_rule_changes_at_least_two_sample_expressions():
    counts = {rule: sum(p.values[0] == rule for p in SAMPLE_CASES) for rule in RULES}
    assert min(counts.values()) >= 2, counts


def test_release_hold_releases_every_hold_but_those_beneath_a_derivative():
    # d/db sg(E[x+b]) = 0 but d/db E[x+b] = 1: the hold beneath the derivative must stay
    beneath = Grad(x[i] + b - Held(E(x[i] + b)), b)
    expr = Held(E(x[i])) * beneath + Held(E(u[i] ** 2))
    after = RULES["release-hold"].apply(expr)
    assert after == E(x[i]) * beneath + E(u[i] ** 2)
    assert explicitly_equal(expr, after) is True
    assert explicitly_equal(expr, release(expr)) is False
