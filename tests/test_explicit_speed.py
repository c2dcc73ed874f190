"""The explicit layer's faster paths decide exactly what the slower ones did.

The remainder modulo r^2 = V by substitution against SymPy's division, a common monomial
taken out before it, roots that differ by a square factor or sit over a positive monomial
shared as one generator, the statistics' values at a point remembered, and a claim over
several axes that stops writing out its grid once it has failed often enough.
"""

import random

import sympy as sp

from derive import Axis, Claim, Equation
from derive.explicit import (
    ExplicitBatch,
    _FieldTest,
    _square_part,
    _without_common_monomial,
)
from derive.verify import EXPLICIT_FAILURES, Settings, explicit_layer


def _random_poly(gens, terms, degree, rng):
    out = gens[0].ring.zero
    for _ in range(terms):
        term = sp.QQ(rng.randint(-5, 5), rng.randint(1, 3))
        for g in gens:
            term = term * g ** rng.randint(0, degree)
        out += term
    return out


def _field_test(rng):
    """A _FieldTest with 1-3 root relations r^2 - V over the atoms a, b, c."""
    test = _FieldTest({})
    test.n_roots = rng.randint(1, 3) + rng.randint(0, 1)   # a spare generator, unused
    symbols = [sp.Dummy(f"r{n}") for n in range(test.n_roots)] + list(sp.symbols("a b c"))
    test.ring, *gens = sp.ring(symbols, sp.QQ, sp.polys.orderings.lex)
    test.root_gens = gens[:test.n_roots]
    atoms = gens[test.n_roots:]
    test.roots, test.relations = {}, []
    for _ in range(test.n_roots - 1 or 1):
        v = _random_poly(atoms, rng.randint(1, 4), 2, rng)
        if v == 0 or v in test.roots:
            continue
        r = test.root_gens[len(test.roots)]
        test.roots[v] = r
        test.relations.append(r ** 2 - v)
    return test, gens, atoms


def test_reduced_is_the_remainder_of_division():
    rng = random.Random(7)
    for _ in range(150):
        test, gens, atoms = _field_test(rng)
        p = _random_poly(gens, rng.randint(1, 12), 4, rng)
        assert test._reduced(p) == p.rem(test.relations)
        if test.relations:   # a member of the ideal reduces to 0
            q = p * test.relations[0] + _random_poly(atoms, 2, 1, rng) * test.relations[-1]
            assert test._reduced(q) == q.rem(test.relations) == 0


def test_a_common_monomial_does_not_change_membership():
    rng = random.Random(11)
    for _ in range(150):
        test, gens, atoms = _field_test(rng)
        if not test.relations:
            continue
        monomial = gens[0] ** rng.randint(0, 3) * atoms[0] ** rng.randint(0, 2)
        member = _random_poly(gens, 3, 2, rng) * test.relations[0] * monomial
        other = _random_poly(gens, rng.randint(1, 6), 3, rng) * monomial
        for p in (member, other, member + other):
            if p == 0:
                continue
            assert (test._reduced(_without_common_monomial(p)) == 0) \
                == (p.rem(test.relations) == 0)


def test_square_part():
    for c, s in ((sp.QQ(1, 4), sp.QQ(1, 2)), (sp.QQ(4), sp.QQ(2)), (sp.QQ(-8, 3),
                 sp.QQ(2, 3)), (sp.QQ(12, 5), sp.QQ(2, 5)), (sp.QQ(1), sp.QQ(1)),
                 (sp.QQ(7), sp.QQ(1))):
        assert _square_part(c) == s
        t = c / (s * s)
        assert t.denominator == 1


def test_roots_differing_by_a_square_factor_are_one_root():
    x, y = sp.symbols("x y", real=True)
    eps = sp.Symbol("epsilon", positive=True)
    v = x ** 2 - 2 * x * y + y ** 2 + eps
    value = 2 / sp.sqrt(4 * v) - 1 / sp.sqrt(v)
    test = _FieldTest({})
    assert test.is_zero(value) is True
    assert len(test.roots) == 1
    assert _FieldTest({}).is_zero(2 / sp.sqrt(4 * v) - 1 / sp.sqrt(v + 1)) is False


def test_equal_radicands_from_division_meet():
    # the quotient of SymPy's division keeps a stale hash: copied, equal radicands are one key
    x, y, a = sp.symbols("x y a", real=True)
    v = x ** 2 + y ** 2 + 1
    value = sp.sqrt(a ** 2 * v) * sp.sqrt(v) - a * v * sp.sqrt(1) * sp.sqrt(v) / sp.sqrt(v)
    a_pos = sp.Symbol("a", positive=True)
    value = value.xreplace({a: a_pos})
    assert _FieldTest({}).is_zero(value) is True


def test_a_root_over_a_positive_monomial():
    x, y = sp.symbols("x y", real=True)
    a, eps = sp.Symbol("a", positive=True), sp.Symbol("epsilon", positive=True)
    v = x ** 2 + y ** 2
    assert _FieldTest({}).is_zero(1 / sp.sqrt(a ** 2 * v + eps)
                                  - 1 / (a * sp.sqrt(v + eps / a ** 2))) is True
    assert _FieldTest({}).is_zero(1 / sp.sqrt(a ** 2 * v + eps)
                                  - 1 / (a * sp.sqrt(v + eps / a))) is False


def test_remembered_values_at_points_are_the_values():
    B = Axis("N")
    x = B.samples("x")
    batch = ExplicitBatch(3, B.size)
    value = batch.eval((x[1] - B.mean(x[B.index("j")], B.index("j"))) ** 2 / (1 + x[2] ** 2))
    numbers = {s: sp.Rational(n + 1, 3) for n, s in enumerate(
        sorted(batch.samples().values(), key=sp.default_sort_key))}
    plain = batch.substitute(value, numbers)
    assert batch.substitute(value, numbers, remember=True) == plain
    more = batch.eval(B.mean(x[B.index("j")] ** 3, B.index("j")) * value)
    assert batch.substitute(more, numbers, remember=True) == batch.substitute(more, numbers)


def test_several_axes_stop_once_enough_sizes_fail():
    N, C = Axis("N"), Axis("C")
    x = N.samples("x")
    n, c, d = N.index("n"), C.index("c"), C.index("d")
    wrong = Claim("speed.channel-mean", "a channel mean is its first entry", N,
                  (Equation(C.mean(x[n, c], c), x[n, 1]),), expected="refuted")
    ev = explicit_layer(wrong, Settings())
    assert ev.holds is False
    assert len(ev.details["fails_at"]) == EXPLICIT_FAILURES
    assert ev.details["left_out"] > 0
    assert f"left out once {EXPLICIT_FAILURES} failed" in ev.summary
    assert not ev.details["not_reached"]
    right = Claim("speed.channel-sum", "a channel sum is C times the mean", N,
                  (Equation(C.sum(x[n, c], c), C.size * C.mean(x[n, d], d)),),
                  expected="proved")
    ev = explicit_layer(right, Settings())
    assert ev.holds is True and "left_out" not in ev.details
