"""A claim's domain with free indices: a variance per sample > 0 is one condition per sample.

``domain=(var_n,)`` with n a free index of N says "every sample's variance is positive".  The
numeric layer (``numeric.instance_error``), the counterexample search (``counterexample.search``
via ``explicit.domain_values``), the independent re-check (``recheck.confirm_values``) and the
scope (``verify.statement_scope``) must each honour it at every value of n -- not only at the
instance's own free index, and not at none.  Each test fails when one of them reads the domain
at one sample only, or not at all.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp

from derive import Axis, Claim, Equation, check, counterexample, numeric, recheck
from derive.core import PROVED, REFUTED
from derive.explicit import ExplicitBatch, domain_values
from derive.numeric import Instance
from derive.verify import Settings, statement_scope

FAST = Settings(frameworks=(), random_instances=60, hypothesis_examples=30)

N, C = Axis("N"), Axis("C")
x = N.samples("x")                       # x[n, c]
r = N.samples("r", positive=True)        # a scale per sample
s = C.samples("s", positive=True)        # a scale per channel
n, c, j, k = N.index("n"), C.index("c"), C.index("j"), N.index("k")


def variance_of(i):
    """The (biased) variance over the channels of sample ``i``."""
    return C.mean((x[i, c] - C.mean(x[i, c], c)) ** 2, c)


VAR_N = variance_of(n)                   # free index n: one condition per sample


def layer_norm(v):
    """LayerNorm at epsilon = 0 of the entry ``v`` (an expression in n and c)."""
    mean = C.mean(v.subs(c, j), j)
    return (v - mean) / sp.sqrt(C.mean((v.subs(c, j) - mean) ** 2, j))


SAMPLE_SCALE = Claim("domain-indices.ln-sample-scale", "LN at eps 0 removes a scale r_n > 0", N,
                     (Equation(layer_norm(r[n] * x[n, c]), layer_norm(x[n, c])),),
                     domain=(VAR_N,))
# at N >= 2, so that the counterexample has a second sample whose variance must be checked too
CHANNEL_SCALE = Claim("domain-indices.ln-channel-scale", "LN at eps 0 removes a scale s_c > 0",
                      N, (Equation(layer_norm(s[c] * x[n, c]), layer_norm(x[n, c])),),
                      domain=(VAR_N,), min_size=2)
# true exactly on the domain: every sample's variance is positive, so each sign is 1.  A layer
# that reads the domain at one sample only sees it fail where another sample is constant.
EVERY_SAMPLE = Claim("domain-indices.every-sample", "every sample varies over its channels", N,
                     (Equation(N.sum(sp.sign(variance_of(k)), k), N.size),), domain=(VAR_N,))


def exact_variance(row) -> sp.Rational:
    row = [sp.nsimplify(v) for v in row]
    mean = sum(row) / len(row)
    return sum((v - mean) ** 2 for v in row) / len(row)


def instance(rows, others=None):
    """A float instance of x (and ``others``: base -> values) with N = len(rows)."""
    samples = {x: np.array(rows, dtype=float)}
    samples.update({base: np.array(v, dtype=float) for base, v in (others or {}).items()})
    return Instance(len(rows), samples, {}, sizes={N.size: len(rows), C.size: len(rows[0])})


# -- the domain written out: one condition per value of its free index -----------------------

@pytest.mark.parametrize("size", [1, 2, 3])
def test_the_domain_is_written_out_once_per_sample(size):
    sizes = {N.size: size, C.size: 2}
    batch = ExplicitBatch(size, N.size, sizes=sizes)
    values = domain_values(batch, (VAR_N,), sizes)
    assert len(values) == size
    # each is the variance of its own sample: (x_{t,1} - x_{t,2})^2 / 4
    for t, value in enumerate(values, 1):
        a, b = batch.sample(x, (t, 1)), batch.sample(x, (t, 2))
        assert sp.expand(batch.resolve(value) - (a - b) ** 2 / 4) == 0
    # a closed domain expression (no free index) is one condition
    assert len(domain_values(batch, (variance_of(1),), sizes)) == 1


# -- the scope -------------------------------------------------------------------------------

def test_the_scope_starts_at_two_channels_for_every_sample():
    # at C = 1 every sample's variance is identically 0: the statement starts at C = 2
    for claim in (SAMPLE_SCALE, EVERY_SAMPLE):
        scope = statement_scope(claim)
        assert scope.defined_from == {C.size: 2}, scope.note
        assert scope.claim.minimums() == {N.size: claim.min_size, C.size: 2}
        assert "C = 1" in scope.note


def test_layer_norm_at_eps_0_removes_a_scale_per_sample():
    result = check(SAMPLE_SCALE, FAST)
    v = result.verdict
    assert v.status == PROVED, v.reason
    assert v.defined_from == {C.size: 2}
    assert "C >= 2" in v.reason
    for kind in ("symbolic", "explicit", "numeric"):
        ev = next(e for e in result.evidence if e.kind == kind)
        assert ev.holds is True, (kind, ev.summary)


def test_a_scale_per_channel_is_refuted_inside_the_domain_at_every_sample():
    v = check(CHANNEL_SCALE, FAST).verdict
    assert v.status == REFUTED, v.reason
    assert v.defined_from == {C.size: 2}
    cex = v.counterexample
    sizes = cex.all_sizes(CHANNEL_SCALE)
    assert sizes[N.size] >= 2 and sizes[C.size] >= 2
    rows = cex.values["x"]
    assert len(rows) == sizes[N.size]
    # every sample's variance is positive, not only the one the free index points at
    assert all(exact_variance(row) > 0 for row in rows), rows
    assert recheck.confirm(CHANNEL_SCALE, cex).confirmed is True


# -- the numeric layer ---------------------------------------------------------------------------

@pytest.mark.parametrize("rows", [[[1, 2], [3, 3]], [[3, 3], [1, 2]], [[1, 2], [3, 5], [7, 7]]])
def test_numeric_an_instance_with_one_constant_sample_is_outside_the_domain(rows):
    assert math.isnan(numeric.instance_error(EVERY_SAMPLE, instance(rows)))
    assert math.isnan(numeric.instance_error(
        SAMPLE_SCALE, instance(rows, {r: [1.0 + t for t in range(len(rows))]})))


def test_numeric_an_instance_inside_the_domain_is_checked():
    rows = [[1, 2], [3, 5], [7, 6]]
    assert numeric.instance_error(EVERY_SAMPLE, instance(rows)) <= numeric.TOLERANCE
    assert numeric.instance_error(SAMPLE_SCALE, instance(rows, {r: [1.0, 2.0, 3.0]})) \
        <= numeric.TOLERANCE
    # and a wrong statement is still seen failing there: the domain does not hide everything
    wrong = Claim("domain-indices.wrong", "wrong", N,
                  (Equation(N.sum(sp.sign(variance_of(k)), k), N.size + 1),), domain=(VAR_N,))
    assert numeric.instance_error(wrong, instance(rows)) > numeric.TOLERANCE


def test_numeric_drawn_instances_satisfy_the_domain_at_every_sample():
    drawn = counted = 0
    for inst in numeric.random_instances(EVERY_SAMPLE, 40):
        drawn += 1
        err = numeric.instance_error(EVERY_SAMPLE, inst)
        if math.isnan(err):
            continue
        counted += 1
        assert err <= numeric.TOLERANCE
    assert counted > drawn // 2


# -- the counterexample search -------------------------------------------------------------------

def test_the_search_finds_no_counterexample_outside_the_domain():
    # a constant second sample would falsify the statement, but is outside the domain
    assert counterexample.search(statement_scope(EVERY_SAMPLE).claim, 3) is None


def test_the_search_counterexample_satisfies_the_domain_at_every_sample():
    cex = counterexample.search(statement_scope(CHANNEL_SCALE).claim, 3)
    assert cex is not None
    assert cex.all_sizes(CHANNEL_SCALE)[N.size] >= 2
    assert all(exact_variance(row) > 0 for row in cex.values["x"]), cex.values


# -- the independent re-check --------------------------------------------------------------------

TWO_BY_TWO = {N.size: 2, C.size: 2}
S = [sp.Rational(1, 2), 3]


def test_recheck_confirms_a_failure_inside_the_domain():
    again = recheck.confirm_values(CHANNEL_SCALE, 2, {"x": [[3, 2], [4, 5]], "s": S, "n": 1,
                                                      "c": 1}, sizes=TWO_BY_TWO)
    assert again.confirmed is True, again.reason


@pytest.mark.parametrize("rows, at", [([[3, 2], [4, 4]], 1),    # sample 2 constant, n = 1
                                      ([[4, 4], [3, 2]], 2),    # sample 1 constant, n = 2
                                      ([[3, 2], [4, 4]], 2)])
def test_recheck_refuses_an_instance_with_a_constant_sample_anywhere(rows, at):
    # the sides differ at the sample n points at; the other sample is outside the domain
    again = recheck.confirm_values(CHANNEL_SCALE, 2, {"x": rows, "s": S, "n": at, "c": 1},
                                   sizes=TWO_BY_TWO)
    assert again.confirmed is False
    assert "outside the claim's domain" in again.reason


def test_recheck_refuses_the_domain_of_a_statement_without_a_free_index():
    again = recheck.confirm_values(EVERY_SAMPLE, 2, {"x": [[1, 2], [3, 3]]}, sizes=TWO_BY_TWO)
    assert again.confirmed is False and "outside the claim's domain" in again.reason
    inside = recheck.confirm_values(EVERY_SAMPLE, 2, {"x": [[1, 2], [3, 5]]}, sizes=TWO_BY_TWO)
    assert inside.confirmed is False and "both sides are 2" in inside.reason
