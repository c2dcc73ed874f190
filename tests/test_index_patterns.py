"""One assignment of the free indices per equality pattern (``explicit.index_patterns``).

The explicit layer (``verify.explicit_holds``) and the step re-checks (``verify._recheck``)
decide an identity at one assignment per pattern of which free indices are equal (per axis)
instead of at every assignment.  That is sound only when the patterns are exactly the set
partitions, each realized by valid index values, and when the layers fall back to every
assignment wherever a relabeling of the samples would move the statement (x[1]).  Each test
here fails when one of those goes wrong: a statement false on one pattern only must still be
refuted, and a true one still proved.
"""

from __future__ import annotations

import pytest
import sympy as sp
from sympy.functions.combinatorial.numbers import stirling
from sympy.utilities.iterables import multiset_partitions

from derive import Axis, Claim, Equation, Grad, check, recheck
from derive.core import PROVED, REFUTED
from derive.explicit import _set_partitions, index_assignments, index_patterns
from derive.verify import Settings, _recheck, explicit_holds

FAST = Settings(frameworks=(), random_instances=60, hypothesis_examples=30)

N, C = Axis("N"), Axis("C")
x = N.samples("x")
n, m, l, k = N.index("n"), N.index("m"), N.index("l"), N.index("k")
c, d = C.index("c"), C.index("d")
delta = sp.KroneckerDelta


def claim(name, lhs, rhs, **kw):
    return Claim(f"patterns.{name}", name, N, (Equation(lhs, rhs),), **kw)


def blocks(labels) -> frozenset:
    """The set partition of positions 0..k-1 that a tuple of labels induces."""
    out: dict = {}
    for pos, label in enumerate(labels):
        out.setdefault(label, set()).add(pos)
    return frozenset(frozenset(b) for b in out.values())


def pattern(env, groups) -> tuple:
    """Which indices of each group (one axis) are equal in ``env``: one partition per group."""
    return tuple(blocks([env[s] for s in members]) for members in groups)


# -- the partitions ------------------------------------------------------------------------------

@pytest.mark.parametrize("count, bell", [(0, 1), (1, 1), (2, 2), (3, 5), (4, 15), (5, 52)])
def test_set_partitions_are_counted_by_the_bell_numbers(count, bell):
    found = list(_set_partitions(count, count))
    assert len(found) == bell
    assert len(set(found)) == bell                      # no labelling twice
    assert len({blocks(t) for t in found}) == bell      # no partition twice


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5])
def test_set_partitions_are_exactly_the_set_partitions(count):
    found = {blocks(t) for t in _set_partitions(count, count)}
    every = {frozenset(frozenset(b) for b in p) for p in multiset_partitions(list(range(count)))}
    assert found == every


@pytest.mark.parametrize("count, most", [(1, 1), (2, 1), (3, 1), (3, 2), (4, 2), (4, 3),
                                         (5, 2), (4, 9)])
def test_at_most_most_blocks_and_every_such_partition(count, most):
    found = list(_set_partitions(count, most))
    # the partitions into at most ``most`` blocks: a sum of Stirling numbers of the 2nd kind
    assert len(found) == sum(stirling(count, j) for j in range(1, min(count, most) + 1))
    for labels in found:
        assert len(labels) == count
        assert set(labels) == set(range(1, max(labels) + 1))   # labels 1..b, none skipped
        assert max(labels) <= most
        # restricted growth: each label at most one above the largest before it
        assert labels[0] == 1
        assert all(b <= max(labels[:i]) + 1 for i, b in enumerate(labels) if i)
    every = {frozenset(frozenset(b) for b in p) for p in multiset_partitions(list(range(count)))
             if len(p) <= most}
    assert {blocks(t) for t in found} == every


# -- the patterns of free indices ----------------------------------------------------------------

@pytest.mark.parametrize("indices, size", [((n,), 1), ((n,), 3), ((n, m), 1), ((n, m), 2),
                                           ((n, m, l), 2), ((n, m, l), 3), ((n, m, l, k), 4),
                                           ((n, m, l, k), 2)])
def test_one_axis_one_assignment_per_pattern(indices, size):
    expr = sp.Mul(*[x[s] for s in indices])
    found = list(index_patterns(set(indices), size, expr))
    every = list(index_assignments(set(indices), size))
    groups = [sorted(indices, key=lambda s: s.name)]
    for env in found:
        assert set(env) == set(indices)
        assert all(1 <= v <= size and isinstance(v, int) for v in env.values())
    seen = [pattern(env, groups) for env in found]
    assert len(seen) == len(set(seen))                            # each pattern once
    assert set(seen) == {pattern(env, groups) for env in every}   # and every one that occurs
    assert len(found) == sum(stirling(len(indices), j)
                             for j in range(1, min(len(indices), size) + 1))


@pytest.mark.parametrize("sizes", [{N.size: 1, C.size: 1}, {N.size: 2, C.size: 1},
                                   {N.size: 1, C.size: 3}, {N.size: 2, C.size: 3},
                                   {N.size: 3, C.size: 2}, {N.size: 4, C.size: 4}])
def test_several_axes_one_assignment_per_pattern_of_each_axis(sizes):
    indices = {n, m, l, c, d}
    expr = x[n, c] * x[m, d] * x[l, c]
    found = list(index_patterns(indices, sizes, expr))
    every = list(index_assignments(indices, sizes))
    groups = [[l, m, n], [c, d]]
    for env in found:
        assert set(env) == indices
        for s, v in env.items():
            assert 1 <= v <= sizes[s.axis], (s, v)               # within its own axis
    seen = [pattern(env, groups) for env in found]
    assert len(seen) == len(set(seen))
    assert set(seen) == {pattern(env, groups) for env in every}
    # the patterns of the axes combine freely: a product of the counts per axis
    per_axis = [sum(stirling(len(g), j) for j in range(1, min(len(g), sizes[g[0].axis]) + 1))
                for g in groups]
    assert len(found) == per_axis[0] * per_axis[1]
    assert len(found) < len(every) or len(every) == 1


def test_patterns_of_one_axis_do_not_borrow_another_axis_size():
    # N = 1 admits only n = m; C = 3 admits c, d equal or not
    found = list(index_patterns({n, m, c, d}, {N.size: 1, C.size: 3}, x[n, c] * x[m, d]))
    assert {(e[n], e[m]) for e in found} == {(1, 1)}
    assert {e[c] == e[d] for e in found} == {True, False}


def test_no_free_index_is_one_empty_assignment():
    assert list(index_patterns(set(), 3, x[k])) == [{}]
    assert list(index_patterns(set(), {N.size: 2, C.size: 2}, x[n, c])) == [{}]


# -- the fallback when a sample is named by number --------------------------------------------

@pytest.mark.parametrize("named", [x[1], x[2] ** 2 + x[n], N.mean(x[k] - x[1], k)])
def test_a_sample_named_by_number_falls_back_to_every_assignment(named):
    indices = {n, m}
    assert list(index_patterns(indices, 3, named, x[n] * x[m])) == \
        list(index_assignments(indices, 3))
    # any expression of the statement names it: either side
    assert list(index_patterns(indices, 3, x[n] * x[m], named)) == \
        list(index_assignments(indices, 3))
    # without it, fewer
    assert len(list(index_patterns(indices, 3, x[n] * x[m]))) == 2


def test_the_fallback_over_several_axes():
    sizes = {N.size: 2, C.size: 3}
    indices = {n, m, c}
    assert list(index_patterns(indices, sizes, x[1, c] * x[n, c] * x[m, c])) == \
        list(index_assignments(indices, sizes))
    assert len(list(index_assignments(indices, sizes))) == 12
    assert len(list(index_patterns(indices, sizes, x[n, c] * x[m, c]))) == 2


def test_a_statement_about_sample_1_is_refuted_by_the_explicit_layer():
    # x_n = x_1 holds at n = 1, the one assignment of its only pattern: only the fallback to
    # every assignment sees n = 2
    cl = claim("first", x[n], x[1])
    assert explicit_holds(cl, 1) is True
    assert explicit_holds(cl, 2) is False
    assert explicit_holds(cl, 3) is False
    ok, checks = _recheck(x[n], x[1], 1, N.size, (1, 2), (3,))
    assert ok is False and checks == ("fails at N = 2",)


# -- soundness: a statement false on one pattern only -----------------------------------------

ONE_AXIS_SIZES = (1, 2, 3, 4)
TWO_AXIS_SIZES = ({N.size: 1, C.size: 1}, {N.size: 2, C.size: 1}, {N.size: 1, C.size: 2},
                  {N.size: 2, C.size: 2}, {N.size: 3, C.size: 2})

DIAGONAL = claim("diagonal", delta(n, m) * delta(c, d) * x[n, c], 0)   # false iff n=m, c=d
OFF_N = claim("off-n", (1 - delta(n, m)) * x[n, c], 0)                  # false iff n != m
MIXED = claim("mixed", delta(n, m) * (1 - delta(c, d)) * x[n, c], 0)   # false iff n=m, c!=d
ALL_DIFFER = claim("all-differ", (1 - delta(n, m)) * (1 - delta(m, l)) * (1 - delta(n, l))
                   * x[n], 0)                                             # false iff all differ


def test_false_only_when_both_pairs_are_equal():
    assert [explicit_holds(DIAGONAL, s) for s in TWO_AXIS_SIZES] == [False] * 5


def test_false_only_when_the_samples_differ():
    assert [explicit_holds(OFF_N, s) for s in TWO_AXIS_SIZES] == [True, False, True, False,
                                                                 False]


def test_false_only_when_samples_are_equal_and_channels_differ():
    # the patterns of the two axes must combine freely: (n = m, c != d) is no pattern's
    # diagonal
    assert [explicit_holds(MIXED, s) for s in TWO_AXIS_SIZES] == [True, True, False, False,
                                                                 False]


def test_three_indices_false_only_when_all_three_differ():
    assert [explicit_holds(ALL_DIFFER, s) for s in ONE_AXIS_SIZES] == [True, True, False, False]


def test_a_true_statement_on_the_diagonal_is_still_an_identity():
    cl = claim("diagonal-true", delta(n, m) * x[n, c], delta(n, m) * x[m, c])
    assert [explicit_holds(cl, s) for s in TWO_AXIS_SIZES] == [True] * 5
    cl3 = claim("all-differ-true", (1 - delta(n, m)) * (1 - delta(m, l)) * (1 - delta(n, l))
                * (x[n] - x[m]) * delta(n, m), 0)
    assert [explicit_holds(cl3, s) for s in ONE_AXIS_SIZES] == [True] * 4


@pytest.mark.parametrize("cl, sizes", [(DIAGONAL, {N.size: 1, C.size: 1}),
                                       (OFF_N, {N.size: 2, C.size: 1}),
                                       (MIXED, {N.size: 1, C.size: 2}),
                                       (ALL_DIFFER, {N.size: 3})])
def test_check_refutes_them_at_the_smallest_size_and_the_explicit_layer_agrees(cl, sizes):
    result = check(cl, FAST)
    v = result.verdict
    assert v.status == REFUTED, v.reason
    assert v.counterexample.all_sizes(cl) == sizes
    assert recheck.confirm(cl, v.counterexample).confirmed is True
    explicit = next(e for e in result.evidence if e.kind == "explicit")
    assert explicit.holds is False, explicit.summary     # the explicit net saw it too


def test_check_proves_a_true_statement_that_depends_on_the_pattern():
    # d x[m, d] / d x[n, c] is 1 exactly on the pattern n = m, c = d
    cl = claim("grad-entry", Grad(x[m, d], x[n, c]), delta(n, m) * delta(c, d))
    result = check(cl, FAST)
    assert result.verdict.status == PROVED, result.verdict.reason
    explicit = next(e for e in result.evidence if e.kind == "explicit")
    assert explicit.holds is True
    assert len(explicit.details["holds_at"]) >= 5
    # and its variant that forgets the channels fails where n = m and c != d
    wrong = claim("grad-entry-wrong", Grad(x[m, d], x[n, c]), delta(n, m))
    v = check(wrong, FAST).verdict
    assert v.status == REFUTED and v.counterexample.all_sizes(wrong) == {N.size: 1, C.size: 2}


# -- the step re-checks --------------------------------------------------------------------------

def test_a_step_false_only_off_the_diagonal_fails_its_recheck():
    ok, checks = _recheck((1 - delta(n, m)) * x[n], sp.S.Zero, 1, N.size, (1, 2), (3,))
    assert ok is False and checks == ("fails at N = 2",)


def test_a_step_false_only_when_three_indices_differ_fails_at_the_point_size():
    # identity sizes 1 and 2 cannot tell; the random points at N = 3 must use n, m, l distinct
    ok, checks = _recheck(ALL_DIFFER.equations[0].lhs, sp.S.Zero, 1, N.size, (1, 2), (3,))
    assert ok is False and checks == ("fails at N = 3",)


def test_a_step_over_two_axes_false_on_one_combined_pattern_fails():
    several = ((N.size, 1), (C.size, 1))
    lhs = MIXED.equations[0].lhs
    ok, checks = _recheck(lhs, sp.S.Zero, 1, N.size, (1, 2), (3,), several)
    assert ok is False and checks == ("fails at N = C = 2",)
    ok, _ = _recheck(DIAGONAL.equations[0].lhs, sp.S.Zero, 1, N.size, (1, 2), (3,), several)
    assert ok is False


def test_a_true_step_still_passes_its_recheck():
    several = ((N.size, 1), (C.size, 1))
    ok, checks = _recheck(delta(n, m) * x[n, c], delta(n, m) * x[m, c], 1, N.size, (1, 2),
                          (3,), several)
    assert ok is True and checks[0] == "identity at N = C = 1, 2"


# -- an index compared with a number: every assignment ---------------------------------------------

def test_a_number_in_a_delta_is_a_sample_named_by_number():
    first = N.sum(delta(k, 1) * x[k], k)      # x_1, written as a sum
    cl = claim("first-as-sum", first, x[n])
    assert explicit_holds(cl, 2) is False


# -- steps written out in shared batches (one step's after is the next one's before) -------------

def test_a_false_step_fails_in_batches_shared_with_a_true_one_that_wrote_its_side_out():
    # the true step writes (1 - delta_nm) x_n out at every pattern first (0 where n = m); the
    # false one must not be served that value where n != m
    _recheck.cache_clear()
    shared: dict = {}
    side = (1 - delta(n, m)) * x[n]
    assert _recheck(side, side * 1, 1, N.size, (1, 2), (3,), None, shared)[0] is True
    ok, checks = _recheck(side, sp.S.Zero, 1, N.size, (1, 2), (3,), None, shared)
    assert ok is False and checks == ("fails at N = 2",)


def test_a_side_two_steps_share_is_written_out_once(monkeypatch):
    from derive.explicit import ExplicitBatch
    _recheck.cache_clear()
    a, b, c3 = N.mean(x[k] * 2, k), 2 * N.mean(x[k], k), N.sum(x[k], k) * 2 / N.size
    shared: dict = {}
    assert _recheck(a, b, 1, N.size, (1, 2), (3,), None, shared)[0] is True
    written = []
    original = ExplicitBatch.visit

    def visit(self, expr, *args, **kwargs):
        written.append(expr)
        return original(self, expr, *args, **kwargs)
    monkeypatch.setattr(ExplicitBatch, "visit", visit)
    assert _recheck(b, c3, 1, N.size, (1, 2), (3,), None, shared)[0] is True
    assert c3 in written and b not in written
