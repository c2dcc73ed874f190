"""The safety nets, each caught in the act: a fault is injected that the net exists for, and
the net must stop it from turning into a wrong verdict.

A false statement is never reported *proved*, and *refuted* only with a confirmed exact
counterexample.  The nets:

* a proof step that fails its own re-check voids the proof (``verify.recheck_step``), also
  when the step holds at the identity sizes N = 1, 2 and fails only at N = 3;
* a proof that another layer contradicts is undecided (``verify.decide``): a corroborating
  layer, the explicit layer, the numeric layer;
* refuted only when the independent re-check (``recheck``) confirms the counterexample;
* time budgets hold in every thread and nest (``deadline``).
"""

from __future__ import annotations

import itertools
import signal
import threading
import time
from dataclasses import replace

import pytest
import sympy as sp

from derive import Batch, Claim, Equation, Grad, check, counterexample, deadline, recheck, rules
from derive import verify
from derive.calculus import Held, Mean, activation, held
from derive.core import OutOfTime, PROVED, REFUTED, UNDECIDED, Counterexample, Evidence, Step
from derive.verify import Settings, decide

B = Batch("N")
u, g = B.samples("u"), B.samples("g")
i, k = B.index("i"), B.index("k")
b, db = B.param("b"), B.param("db")
eps = B.param("eps", positive=True)

FAST = Settings(random_instances=30, hypothesis_examples=20, explicit_sizes=(1, 2, 3, 4),
                counterexample_max_size=3, frameworks=(), simulation=False)

TRUE = Claim("true.centered-mean", "centered mean", B,
             (Equation(B.mean(B.center(u[i] + b, i), i), 0),))
# false, but the unsound rules below make each "reduce to 0"
SQUARE = Claim("false.mean-of-square", "mean of the square is the square of the mean", B,
               (Equation(B.mean(u[i] ** 2, i), B.mean(u[i], i) ** 2),))
THIRD_MOMENT = B.mean((u[i] - B.mean(u[i], i)) ** 3, i)
SKEW = Claim("false.no-skew", "every batch is symmetric", B, (Equation(THIRD_MOMENT, 0),))
# false from N = 2 on (the 1/N dropped)
UNNORMALIZED = Claim("false.unnormalized", "update cancels with a sum", B,
                     (Equation(u[i] + (b + db) - B.sum(u[i] + (b + db), i),
                               u[i] + b - B.sum(u[i] + b, i)),))


def _unsound_rule(monkeypatch, name, apply):
    """Add a rule to the table and run it first in the reducer."""
    monkeypatch.setitem(rules.RULES, name, rules.Rule(name, name, "unsound", apply))
    monkeypatch.setattr(rules, "ORDER", (name,) + rules.ORDER)


def _blind_layers(monkeypatch):
    """The explicit and numeric layers report agreement whatever the claim says: only the
    step re-check is left between an unsound rule and a proof."""
    agree = {"holds_at": [1, 2, 3, 4], "fails_at": [], "undecided_at": [], "not_reached": None}
    monkeypatch.setattr(verify, "explicit_layer", lambda c, s: Evidence(
        "explicit", True, "blind", agree, holds=True))
    many = {"random": {"instances": 100}, "hypothesis": {"instances": 100}}
    monkeypatch.setattr(verify, "numeric_layer", lambda c, s, d=None, shrink=True: Evidence(
        "numeric", True, "blind", many, holds=True))


def _failed_steps(result):
    return [s for p in result.proof for s in p.lhs_steps + p.rhs_steps if not s.ok]


def _square_of_mean(expr):
    """Unsound: E[f^2] = E[f]^2."""
    return expr.replace(lambda e: isinstance(e, Mean) and e.body.is_Pow and e.body.exp == 2,
                        lambda e: Mean(e.body.base, e.index, e.size) ** 2)


# -- net: every proof step is re-checked on its own ----------------------------------------------

def test_an_unsound_rule_is_caught_by_the_step_recheck(monkeypatch):
    _unsound_rule(monkeypatch, "square-of-mean", _square_of_mean)
    result = check(SQUARE, FAST)
    bad = _failed_steps(result)
    assert [s.rule for s in bad] == ["square-of-mean"]
    assert bad[0].checks == ["fails at N = 2"]
    assert result.evidence[0].holds is False
    assert "failed its own re-check" in result.evidence[0].summary
    assert result.verdict.status != PROVED


def test_an_unsound_rule_is_not_proved_even_when_the_other_layers_are_blind(monkeypatch):
    _unsound_rule(monkeypatch, "square-of-mean", _square_of_mean)
    _blind_layers(monkeypatch)
    result = check(SQUARE, FAST)
    assert result.proof[0].residual == 0          # the unsound rule did "reduce it to 0"
    assert result.verdict.status != PROVED


def test_a_wrong_step_that_holds_at_n_1_and_2_is_caught_at_random_points_at_n_3(monkeypatch):
    # sum_j (u_j - mean)^3 = 0 holds at N = 1 and N = 2 (deviations d, -d), not at N = 3
    _unsound_rule(monkeypatch, "no-skew", lambda e: e.xreplace({THIRD_MOMENT: sp.S.Zero}))
    _blind_layers(monkeypatch)
    result = check(SKEW, FAST)
    bad = _failed_steps(result)
    assert [(s.rule, s.checks) for s in bad] == [("no-skew", ["fails at N = 3"])]
    assert result.verdict.status != PROVED


def test_the_step_recheck_passes_a_sound_step():
    step = Step("linearity", B.mean(u[i] + b, i), B.mean(u[i], i) + b)
    verify.recheck_step(TRUE, step, FAST)
    assert (step.ok, step.checks) == (True, ["identity at N = 1, 2",
                                              "exact at random rational points at N = 3"])


def _rechecked(rule, before, after, claim=TRUE, settings=FAST):
    step = Step(rule, sp.sympify(before), sp.sympify(after))
    verify.recheck_step(claim, step, settings)
    return step.ok, step.checks


def test_the_step_recheck_tries_every_value_of_a_free_index_on_either_side():
    # u_k - E[u] = 0 holds at N = 1 only; the index k may be free on one side alone
    centered = u[k] - B.mean(u[i], i)
    assert _rechecked("wrong", centered, 0) == (False, ["fails at N = 2"])
    assert _rechecked("wrong", 0, centered) == (False, ["fails at N = 2"])
    assert _rechecked("sound", u[k] + b - B.mean(u[i] + b, i), centered) == (
        True, ["identity at N = 1, 2", "exact at random rational points at N = 3"])


def test_the_step_recheck_writes_the_batch_size_symbol_as_the_batch_size():
    assert _rechecked("mean-as-sum", B.mean(u[i], i), B.sum(u[i], i) / B.size) == (
        True, ["identity at N = 1, 2", "exact at random rational points at N = 3"])
    assert _rechecked("wrong", B.mean(u[i], i), B.sum(u[i], i)) == (False, ["fails at N = 2"])


def test_the_step_recheck_starts_at_the_claims_smallest_batch_size_and_skips_none_above():
    from_2 = Claim("true.from-2", "from N = 2", B, TRUE.equations, min_size=2)
    from_3 = Claim("true.from-3", "from N = 3", B, TRUE.equations, min_size=3)
    sound = (B.mean(u[i] + b, i), B.mean(u[i], i) + b)
    assert _rechecked("sound", *sound, claim=from_2) == (
        True, ["identity at N = 2", "exact at random rational points at N = 3"])
    assert _rechecked("sound", *sound, claim=from_3) == (
        True, ["exact at random rational points at N = 3"])
    assert _rechecked("wrong", u[k] - B.mean(u[i], i), 0, claim=from_2) == (
        False, ["fails at N = 2"])


def test_the_step_recheck_claims_an_identity_only_where_it_showed_one():
    # sin^2 + cos^2 = 1: the explicit zero test cannot show it, the random points agree
    assert _rechecked("trig", sp.sin(b) ** 2 + sp.cos(b) ** 2, 1) == (
        True, ["exact at random rational points at N = 1, 2, 3"])
    sound = (B.mean(u[i] + b, i), B.mean(u[i], i) + b)
    assert _rechecked("sound", *sound, settings=replace(FAST, step_point_sizes=())) == (
        True, ["identity at N = 1, 2"])
    assert _rechecked("sound", *sound, settings=replace(FAST, step_point_sizes=(3, 4))) == (
        True, ["identity at N = 1, 2", "exact at random rational points at N = 3, 4"])


# -- net: a proof contradicted by another layer is undecided ------------------------------------

def test_a_contradicting_corroborating_layer_makes_a_proof_undecided(monkeypatch):
    against = Evidence("torch", False, "fails on 3 of 30 instances", holds=False)
    monkeypatch.setattr(verify, "corroborating_layers", lambda *a, **kw: [against])
    result = check(TRUE, FAST)
    assert result.evidence[0].holds is True       # the proof itself went through
    assert result.verdict.status == UNDECIDED
    assert "contradicted" in result.verdict.reason and "torch" in result.verdict.reason


def test_an_explicit_layer_that_disagrees_makes_a_proof_undecided(monkeypatch):
    monkeypatch.setattr(verify, "explicit_layer", lambda c, s: Evidence(
        "explicit", False, "not an identity at N = 3",
        {"holds_at": [1, 2, 4], "fails_at": [3], "undecided_at": [], "not_reached": None},
        holds=False))
    result = check(TRUE, FAST)
    assert result.evidence[0].holds is True
    assert result.verdict.status == UNDECIDED
    assert "explicit: not an identity at N = 3" in result.verdict.reason


def test_a_numeric_layer_that_disagrees_makes_a_proof_undecided(monkeypatch):
    monkeypatch.setattr(verify, "numeric_layer", lambda c, s, d=None, shrink=True: Evidence(
        "numeric", False, "fails on 2 of 30 random instances",
        {"random": {"instances": 30}, "hypothesis": {"instances": 20}}, holds=False))
    result = check(TRUE, FAST)
    assert result.evidence[0].holds is True
    assert result.verdict.status == UNDECIDED
    assert "numeric: fails on 2 of 30" in result.verdict.reason


# -- net: refuted only with a counterexample the independent re-check confirms -------------------

def _tampered(monkeypatch, cex):
    monkeypatch.setattr(counterexample, "search", lambda claim, max_size=6: cex)


def test_a_tampered_counterexample_that_does_not_falsify_is_not_a_refutation(monkeypatch):
    # at db = 0 the two sides agree; the tampered instance claims they differ by 1
    cex = Counterexample(2, {"u": [0, 0], "db": 0, "b": 0, "i": 1}, sp.S.One, sp.S.Zero)
    _tampered(monkeypatch, cex)
    result = check(UNNORMALIZED, FAST)
    assert result.verdict.status == UNDECIDED
    assert "not confirmed by the independent re-check" in result.verdict.reason
    assert result.evidence[-1].details["rechecked"] is False


def test_a_counterexample_outside_the_assumptions_is_not_a_refutation(monkeypatch):
    # eps > 0: at eps = 0 the claim says nothing, whatever the sides are there
    claim = Claim("false.eps", "eps is 1", B, (Equation(eps * B.mean(u[i], i), B.mean(u[i], i)),))
    _tampered(monkeypatch, Counterexample(1, {"u": [1], "eps": 0}, sp.S.Zero, sp.S.One))
    result = check(claim, FAST)
    assert result.verdict.status == UNDECIDED
    assert "eps is positive" in result.verdict.reason


def test_a_counterexample_at_an_undefined_point_is_not_a_refutation(monkeypatch):
    claim = Claim("false.pole", "a pole", B, (Equation(1 / b + B.mean(u[i], i), 1 / b),))
    _tampered(monkeypatch, Counterexample(1, {"u": [1], "b": 0}, sp.S.Zero, sp.S.One))
    result = check(claim, FAST)
    assert result.verdict.status == UNDECIDED and "undefined" in result.verdict.reason


def test_a_true_counterexample_is_confirmed_and_recorded():
    result = check(UNNORMALIZED, FAST)
    ev = result.evidence[-1]
    assert result.verdict.status == REFUTED
    assert (ev.kind, ev.details["rechecked"], ev.holds) == ("counterexample", True, False)
    assert "re-checked independently" in ev.summary


def test_a_confirmed_counterexample_is_evidence_that_the_claim_fails():
    # u = (0, 0), b = 0, db = 1, i = 1: lhs = 1 - 2 = -1, rhs = 0
    cex = Counterexample(2, {"u": [0, 0], "db": 1, "b": 0, "i": 1}, sp.Integer(-1), sp.S.Zero)
    e = verify.counterexample_evidence(UNNORMALIZED, cex)
    assert (e.kind, e.ok, e.holds, e.seconds) == ("counterexample", True, False, 0.0)
    assert e.summary == "N = 2: residual -1 (exact), re-checked independently"
    assert e.details == {"N": 2, "residual": "-1", "rechecked": True, "found": cex,
                         "recheck": "the sides differ (exact rational arithmetic)"}


def test_an_unconfirmed_counterexample_is_evidence_of_nothing():
    # tampered: at db = 0 both sides are 0, whatever the counterexample says they are
    cex = Counterexample(2, {"u": [0, 0], "db": 0, "b": 0, "i": 1}, sp.S.One, sp.S.Zero)
    e = verify.counterexample_evidence(UNNORMALIZED, cex, 0.5)
    assert (e.kind, e.ok, e.holds, e.seconds) == ("counterexample", False, None, 0.5)
    assert e.summary == ("N = 2: residual 1, not confirmed by the independent re-check "
                         "(both sides are 0 there)")
    assert e.details == {"N": 2, "residual": "1", "rechecked": False, "found": cex,
                         "recheck": "both sides are 0 there"}


# -- the independent re-check itself -------------------------------------------------------------

def test_recheck_confirms_the_unnormalized_sum_at_n_2():
    found = recheck.confirm_values(UNNORMALIZED, 2, {"u": [0, 0], "db": 1, "b": 0, "i": 1})
    assert (found.confirmed, found.lhs - found.rhs) == (True, -1)


def test_recheck_differentiates_the_written_out_expression():
    # d/du_k sum_i g_i (u_i - E[u]) = g_k - E[g]; a claim that drops E[g] fails at N = 2
    claim = Claim("false.grad", "drops the mean", B,
                  (Equation(Grad(B.sum(g[i] * B.center(u[i], i), i), u[k]), g[k]),))
    found = recheck.confirm_values(claim, 2, {"u": [0, 0], "g": [1, 0], "k": 1})
    assert (found.confirmed, found.lhs, found.rhs) == (True, sp.Rational(1, 2), 1)


def test_recheck_holds_a_held_statistic_fixed_when_differentiating():
    # d/db (u_i + b - sg(E[u + b])) = 1: with the mean held the claim "= 0" is false ...
    claim = Claim("false.held", "held", B, (Equation(Grad(held(B.center(u[i] + b, i)), b), 0),))
    found = recheck.confirm_values(claim, 1, {"u": [0], "b": 0, "i": 1})
    assert (found.confirmed, found.lhs) == (True, 1)
    # ... and through the mean it is true: not confirmed
    through = Claim("true.through", "through", B, (Equation(Grad(B.center(u[i] + b, i), b), 0),))
    assert recheck.confirm_values(through, 1, {"u": [0], "b": 0, "i": 1}).confirmed is False


def test_recheck_cannot_tell_for_an_unknown_name():
    found = recheck.confirm_values(UNNORMALIZED, 2, {"u": [0, 0], "zz": 1, "b": 0, "i": 1})
    assert found.confirmed is None


c = B.param("c")
x_pos = B.samples("x", positive=True)
f = activation("f")
z = sp.Symbol("z")


def probe(lhs, rhs, **kw):
    return Claim("recheck.probe", "a statement to re-check", B, (Equation(lhs, rhs),), **kw)


def rechecked(claim, size, values, **kw):
    found = recheck.confirm_values(claim, size, values, **kw)
    return found.confirmed, found.reason


NOT_AN_INSTANCE = {   # (claim, N, values): the reason after "not an instance of the claim: "
    "below the smallest N": ((probe(B.mean(u[i], i), 0, min_size=2), 1, {"u": [1]}),
                             "N = 1 is below the claim's smallest batch size 2"),
    "too few samples": ((probe(B.mean(u[i], i), 0), 2, {"u": [1]}), "u needs 2 values"),
    "a positive sample below 0": ((probe(B.mean(x_pos[i], i), 0), 1, {"x": [-1]}),
                                  "x_1 = -1 but x_1 is positive"),
    "a sample outside its range": ((probe(B.mean(u[i], i), 0, ranges=((u, (0.0, 1.0)),)), 1,
                                    {"u": [2]}), "u_1 = 2 is outside the claim's range (0.0, 1.0)"),
    "a parameter outside its range": ((probe(b, 2, ranges=((b, (0.0, 1.0)),)), 1, {"b": 2}),
                                      "b = 2 is outside the claim's range (0.0, 1.0)"),
    "an index beyond N": ((probe(u[i], 1), 2, {"u": [0, 1], "i": 3}),
                          "the index i = 3 is not in 1..2"),
    "an index that is not an integer": ((probe(u[i], 1), 2, {"u": [0, 1], "i": 1.5}),
                                        "the index i = 1.5 is not in 1..2"),
    "outside the domain": ((probe(b, 0, domain=(b,)), 1, {"b": -1}),
                           "b is not positive there: outside the claim's domain"),
    "0/0": ((probe(b / c, 1), 1, {"b": 0, "c": 0}), "a side is undefined or not real there"),
    "+oo": ((probe(b * sp.oo, 0), 1, {"b": 1}), "a side is undefined or not real there"),
    "-oo": ((probe(b * sp.oo, 0), 1, {"b": -1}), "a side is undefined or not real there"),
    "not real": ((probe(sp.sqrt(b), 0), 1, {"b": -1}), "a side is undefined or not real there"),
}


@pytest.mark.parametrize("case", sorted(NOT_AN_INSTANCE))
def test_recheck_rejects_what_is_not_an_instance_of_the_claim(case):
    args, reason = NOT_AN_INSTANCE[case]
    assert rechecked(*args) == (False, "not an instance of the claim: " + reason)


def test_recheck_rejects_a_part_the_claim_does_not_have():
    two = Claim("two", "two parts", B, (Equation(b, 0), Equation(b, 1)))
    assert rechecked(two, 1, {"b": 1}, part=1) == (False, "both sides are 1 there")
    assert rechecked(two, 1, {"b": 1}, part=2) == (
        False, "not an instance of the claim: the claim has no part 2")


CANNOT_TELL = {   # (claim, N, values): the reason after "cannot be re-checked independently: "
    "no value for an index": ((probe(u[i], 0), 1, {"u": [1]}), "no value for the index i"),
    "no values for a sample": ((probe(u[k] + g[k], 0), 2, {"u": [1, 2], "k": 2}),
                               "no value for g_2"),
    "no value for a parameter": ((probe(b + c, 0), 1, {"b": 1}),
                                 "c + 1 is not a number (a value or a function instance "
                                 "is missing)"),
    "two variables, one name": ((probe(c + B.param("c", positive=True), 0), 1, {"c": 1}),
                                "two variables of the claim are named c"),
    "a value for N": ((probe(b * B.size, 0), 1, {"b": 1, "N": 5}),
                      "no variable of the claim is named N"),
    "a function without an instance": ((probe(sp.Function("h")(b), 0), 1, {"b": 1}),
                                       "h(1) is not a number (a value or a function instance "
                                       "is missing)"),
    "a derivative by a statistic": ((probe(Grad(b, B.mean(u[i], i)), 0), 2,
                                     {"u": [1, 2], "b": 1}),
                                    "a derivative by Mean(u[_j], _j, N)"),
    "a float": ((probe(b, 0), 1, {"b": 0.5}), "b = 0.5 is not an exact number"),
    "an index off the batch": ((probe(u[k + 1], 0), 2, {"u": [1, 2], "k": 2}),
                               "the sample index k + 1 is not a sample of the batch"),
}


@pytest.mark.parametrize("case", sorted(CANNOT_TELL))
def test_recheck_cannot_tell_without_every_value_or_outside_what_it_writes_out(case):
    args, reason = CANNOT_TELL[case]
    assert rechecked(*args) == (None, "cannot be re-checked independently: " + reason)


SECOND_ORDER = {   # a derivative of a derivative, re-checked exactly: claim vs 0 at b = 1
    "a second derivative": (Grad(Grad(b ** 3, b), b), 6),
    "a held first derivative times b": (Grad(Held(Grad(b ** 2, b)) * b, b), 2),
}


@pytest.mark.parametrize("case", sorted(SECOND_ORDER))
def test_recheck_confirms_second_order_instances_exactly(case):
    expr, value = SECOND_ORDER[case]
    assert rechecked(probe(expr, 0), 1, {"b": 1}) == (
        True, "the sides differ (exact rational arithmetic)")
    assert rechecked(probe(expr, value), 1, {"b": 1}) == (False, f"both sides are {value} there")


def test_recheck_cannot_tell_for_a_value_it_cannot_read():
    confirmed, reason = rechecked(probe(b, 0), 1, {"b": "1/"})
    assert confirmed is None
    assert reason.startswith("cannot be re-checked independently: SympifyError: ")


DIFFER = {   # lhs, rhs at b: confirmed, how, the two sides
    "rationals": (b, -b, 1, True, "the sides differ (exact rational arithmetic)", 1, -1),
    "equal rationals": (b, b, 1, False, "both sides are 1 there", 1, 1),
    "algebraic numbers": (sp.sqrt(b), 1, 2, True,
                          "the sides differ (exact: the difference's minimal polynomial)",
                          sp.sqrt(2), 1),
    "equal algebraic numbers": (sp.sqrt(3 + 2 * sp.sqrt(b)), 1 + sp.sqrt(b), 2, False,
                                "both sides are sqrt(2*sqrt(2) + 3) there",
                                sp.sqrt(3 + 2 * sp.sqrt(2)), 1 + sp.sqrt(2)),
    "transcendental numbers": (sp.pi, b, 3, True,
                               "the sides differ (nonzero at 50 significant digits)", sp.pi, 3),
    "equal, not shown": (sp.sin(b) ** 2 + sp.cos(b) ** 2, 1, 1, None,
                         "cannot tell whether cos(1)**2 + sin(1)**2 and 1 differ",
                         sp.sin(1) ** 2 + sp.cos(1) ** 2, 1),
}


@pytest.mark.parametrize("case", sorted(DIFFER))
def test_recheck_confirms_exactly_the_sides_that_differ(case):
    lhs, rhs, at, confirmed, reason, left, right = DIFFER[case]
    found = recheck.confirm_values(probe(lhs, rhs), 1, {"b": at})
    assert (found.confirmed, found.reason, found.lhs, found.rhs) == (confirmed, reason, left,
                                                                     right)


def test_recheck_admits_a_range_with_its_ends_and_an_index_as_a_sympy_integer():
    in_unit = probe(b, 2, ranges=((b, (0.0, 1.0)),))
    for at in (0, sp.Rational(1, 2), 1):
        assert rechecked(in_unit, 1, {"b": at})[0] is True
    assert rechecked(probe(b, 0, domain=(b,)), 1, {"b": 1})[0] is True
    assert rechecked(probe(u[i], 0), 2, {"u": [0, 1], "i": sp.Integer(2)})[0] is True


def test_recheck_writes_the_batch_size_symbol_and_deltas_of_indices_as_numbers():
    claim = probe(B.sum(u[i], i), B.size * B.mean(u[i], i) + 1)
    assert recheck.confirm_values(claim, 1, {"u": [1]}).rhs == 2
    delta = probe(sp.KroneckerDelta(i, k), 0)
    assert recheck.confirm_values(delta, 2, {"i": 1, "k": 1}).lhs == 1


def test_recheck_differentiates_samples_as_real_numbers():
    # d/du_k E[|u|] = sign(u_k)/N: needs u real (for a complex u, |u| has no such derivative)
    claim = probe(Grad(B.mean(sp.Abs(u[i]), i), u[k]), sp.sign(u[k]))
    found = recheck.confirm_values(claim, 2, {"u": [1, 1], "k": 1})
    assert (found.confirmed, found.lhs, found.rhs) == (True, sp.Rational(1, 2), 1)


def test_recheck_a_held_statistic_is_its_value_outside_and_after_a_derivative():
    assert recheck.confirm_values(probe(held(B.mean(u[i], i)), 0), 1, {"u": [1]}).lhs == 1
    # d/db (sg(E[u + b]) b) = E[u + b]: the held value is left after differentiating
    claim = probe(Grad(held(B.mean(u[i] + b, i)) * b, b), 0)
    found = recheck.confirm_values(claim, 1, {"u": [1], "b": 0})
    assert (found.confirmed, found.lhs) == (True, 1)


def test_recheck_evaluates_a_derivative_by_a_node_at_the_nodes_value():
    claim = probe(Grad(c ** 2, c, at=B.mean(u[i], i)), 0)   # 2c at c = E[u]
    found = recheck.confirm_values(claim, 1, {"u": [1]})
    assert (found.confirmed, found.lhs) == (True, 2)


def test_recheck_instantiates_an_arbitrary_function_and_its_derivative():
    # d/du_k E[f(u)] = f'(u_k)/N, not f'(u_k): with f = z^2 at u = (1, 0), 1 against 2
    claim = probe(Grad(B.mean(f(u[i]), i), u[k]), f.derivative(u[k]))
    square = ((f, sp.Lambda(z, z ** 2)),)
    found = recheck.confirm_values(claim, 2, {"u": [1, 0], "k": 1}, functions=square)
    assert (found.confirmed, found.lhs, found.rhs) == (True, 1, 2)
    # the same, from a counterexample of the second part
    two = Claim("two", "two parts", B, (Equation(b, b),) + claim.equations)
    cex = Counterexample(2, {"u": [1, 0], "k": 1}, sp.S.One, sp.Integer(2), part=1,
                         functions=square)
    assert recheck.confirm(two, cex).confirmed is True
    # a plain SymPy function (no derivative of its own) is instantiated too
    h = sp.Function("h")
    found = recheck.confirm_values(probe(h(b), 2), 1, {"b": 0},
                                   functions=((h, sp.Lambda(z, z + 1)),))
    assert (found.confirmed, found.lhs) == (True, 1)


# -- the verdict policy, on hand-built evidence --------------------------------------------------

def ev(kind, holds, **details):
    return Evidence(kind, bool(holds), f"{kind} {holds}", details, holds=holds)


def found(rechecked, size=2):
    cex = Counterexample(size, {"u": [0, 1]}, sp.S.Zero, sp.S.One)
    return Evidence("counterexample", bool(rechecked), "found",
                    {"found": cex, "rechecked": rechecked, "recheck": "why"},
                    holds=False if rechecked else None)


R = sp.Symbol("r")
YES = (ev("symbolic", True), ev("explicit", True), ev("numeric", True))


def test_decide_proves_when_every_layer_holds_and_enough_was_checked():
    v = decide(*YES, [ev("torch", True), ev("jax", None)], "", min_size=2)
    assert (v.status, v.reason) == (PROVED, "proved for every N >= 2")


def test_decide_a_contradicting_layer_wins_over_everything_else():
    v = decide(*YES, [ev("torch", True), ev("jax", False)], "too few")
    assert v.status == UNDECIDED and v.reason.startswith("the symbolic proof is contradicted")
    assert "jax: jax False" in v.reason and "torch" not in v.reason


def test_decide_too_thin_corroboration_is_undecided():
    v = decide(*YES, [], "only 5 numeric instances")
    assert v.status == UNDECIDED and "too thin" in v.reason and "only 5" in v.reason


@pytest.mark.parametrize("explicit,numeric", [(False, True), (None, True), (True, False),
                                              (True, None), (False, False)])
def test_decide_an_uncorroborated_proof_is_undecided(explicit, numeric):
    v = decide(ev("symbolic", True), ev("explicit", explicit), ev("numeric", numeric), [], "",
               found(True))
    assert v.status == UNDECIDED and v.reason.startswith("the symbolic proof is not corroborated")
    assert ("explicit" in v.reason, "numeric" in v.reason) == (not explicit, not numeric)


def test_decide_refutes_with_a_confirmed_counterexample():
    v = decide(ev("symbolic", False), ev("explicit", False), ev("numeric", False), [], "",
               found(True, size=3), R)
    assert (v.status, v.counterexample.size, v.residual, v.reason) == (
        REFUTED, 3, R, "fails at N = 3 (smallest failing batch size)")


@pytest.mark.parametrize("rechecked", [False, None])
def test_decide_an_unconfirmed_counterexample_is_undecided(rechecked):
    v = decide(ev("symbolic", False), ev("explicit", False), ev("numeric", False), [], "",
               found(rechecked), R)
    assert (v.status, v.residual, v.counterexample) == (UNDECIDED, R, None)
    assert "not confirmed by the independent re-check: why" in v.reason


def test_decide_a_residual_without_counterexample_is_undecided():
    none = Evidence("counterexample", False, "none found", {}, holds=None)
    for cex in (none, None):
        v = decide(ev("symbolic", False), *YES[1:], [], "", cex, R, max_size=4)
        assert (v.status, v.residual) == (UNDECIDED, R)
        assert v.reason == "the residual r does not reduce to 0 and no counterexample was " \
                           "found up to N = 4"


@pytest.mark.parametrize("symbolic,residual", [(None, R), (False, None), (False, sp.S.Zero)])
def test_decide_without_a_residual_to_show_gives_the_symbolic_reason(symbolic, residual):
    v = decide(ev("symbolic", symbolic), *YES[1:], [], "", None, residual)
    assert (v.status, v.reason) == (UNDECIDED, f"symbolic {symbolic}")


HOLDS = (True, False, None)


@pytest.mark.parametrize("s,e,n,c", list(itertools.product(HOLDS, HOLDS, HOLDS, HOLDS)))
def test_decide_never_proves_without_every_layer_nor_refutes_without_a_recheck(s, e, n, c):
    for rechecked in HOLDS:
        for thin in ("", "thin"):
            v = decide(ev("symbolic", s), ev("explicit", e), ev("numeric", n), [ev("x", c)],
                       thin, found(rechecked), R)
            assert (v.status == PROVED) == (s is e is n is True and c is not False
                                            and thin == "")
            assert (v.status == REFUTED) == (not s and rechecked is True)


def test_decide_by_default_proves_from_n_1_and_reports_a_search_up_to_n_6():
    assert (decide(*YES).status, decide(*YES).reason) == (PROVED, "proved for every N >= 1")
    v = decide(ev("symbolic", False), *YES[1:], residual=R)
    assert (v.status, v.reason) == (UNDECIDED, "the residual r does not reduce to 0 and no "
                                               "counterexample was found up to N = 6")


def test_decide_names_every_contradicting_layer_with_what_it_found():
    v = decide(*YES, [ev("torch", False), ev("simulation", True), ev("jax", False)])
    assert (v.status, v.reason) == (UNDECIDED, "the symbolic proof is contradicted: "
                                               "torch: torch False; jax: jax False")


def test_decide_names_both_core_layers_that_do_not_corroborate_a_proof():
    v = decide(ev("symbolic", True), ev("explicit", False), ev("numeric", None))
    assert (v.status, v.reason) == (UNDECIDED, "the symbolic proof is not corroborated: "
                                               "explicit: explicit False; numeric: numeric None")


def test_decide_a_counterexample_never_rechecked_is_not_a_refutation_and_says_so():
    cex = Counterexample(2, {"u": [0, 1]}, sp.S.Zero, sp.S.One)
    unchecked = Evidence("counterexample", False, "found", {"found": cex}, holds=None)
    v = decide(ev("symbolic", False), ev("explicit", False), ev("numeric", False), [], "",
               unchecked, R)
    assert (v.status, v.residual, v.counterexample) == (UNDECIDED, R, None)
    assert v.reason == ("a counterexample at N = 2 was not confirmed by the independent "
                        "re-check: no re-check")


def test_decide_is_pure():
    evidence = [ev("symbolic", False), ev("explicit", False), ev("numeric", False)]
    cex = found(True)
    before = [(x.ok, dict(x.details)) for x in evidence + [cex]]
    decide(*evidence, [], "", cex, R)
    assert [(x.ok, dict(x.details)) for x in evidence + [cex]] == before


# -- the rule table: each step is exactly what its rule says ------------------------------------

def test_linearity_moves_every_constant_factor_out_of_every_term_in_one_step():
    step = rules.RULES["linearity"].apply(B.mean(c * u[i] + b * u[i], i))
    assert step == c * B.mean(u[i], i) + b * B.mean(u[i], i)


def test_linearity_leaves_a_mean_of_a_constant_to_mean_of_constant():
    assert rules.RULES["linearity"].apply(B.mean(b * c, i)) == B.mean(b * c, i)


def test_mean_as_sum_keeps_the_bound_index():
    assert rules.RULES["mean-as-sum"].apply(B.mean(u[i], i)) == B.sum(u[i], i) / B.size


def test_sifting_needs_a_sample_index_and_looks_past_a_delta_it_cannot_use():
    # delta(i, c): c is not known to lie in 1..N, so no summand is picked
    assert rules.RULES["sifting"].apply(B.mean(sp.KroneckerDelta(i, c) * u[i], i)) \
        == B.mean(sp.KroneckerDelta(i, c) * u[i], i)
    both = B.mean(sp.KroneckerDelta(i, c) * sp.KroneckerDelta(i, k) * u[i], i)
    assert rules.RULES["sifting"].apply(both) == sp.KroneckerDelta(k, c) * u[k] / B.size


def test_the_reducer_runs_the_table_to_a_fixed_point_and_chains_its_steps():
    # the second round expands what mean-of-constant left
    steps = rules.reduce(B.mean(held(B.mean(u[i] + b, i)) * (u[i] + b), i))
    assert [s.rule for s in steps] == ["release-hold", "expand", "linearity",
                                       "mean-of-constant", "expand"]
    steps = rules.reduce(B.mean(sp.KroneckerDelta(i, k) * (u[i] + b), i) * c)
    assert [s.rule for s in steps] == ["expand", "linearity", "sifting", "expand", "algebra"]
    assert all(s.before == t.after for t, s in zip(steps, steps[1:]))


def test_normal_form_passes_on_sums_and_the_deadline():
    assert rules.normal_form(B.mean(u[i], i), sums=True) == B.sum(u[i], i) / B.size

    def out_of_time():
        raise OutOfTime("stop")
    with pytest.raises(OutOfTime):
        rules.normal_form(B.mean(u[i] + b, i), out_of_time)


# -- net: time budgets hold in every thread and nest ---------------------------------------------

def jumping(step: float):
    """A clock that advances by ``step`` each time it is read."""
    count = itertools.count()
    return lambda: step * next(count)


def test_a_budget_is_enforced_off_the_main_thread():
    out = {}

    def run():
        with deadline.using_clock(jumping(1000.0)):   # every budget runs out at once
            out["result"] = check(TRUE, FAST)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join(timeout=600)
    result = out["result"]
    assert result.verdict.status == UNDECIDED
    assert "time budget" in result.verdict.reason
    assert result.evidence[0].holds is None


def test_a_budget_is_enforced_off_the_main_thread_at_a_safe_point():
    out = {}

    def run():
        with deadline.using_clock(jumping(1.0)):
            try:
                with deadline.time_budget(5, "a loop"):
                    for n in range(100):
                        deadline.checkpoint()
            except OutOfTime as err:
                out["error"], out["n"] = str(err), n

    worker = threading.Thread(target=run)
    worker.start()
    worker.join(timeout=60)
    assert out == {"error": "the time budget of 5 s ran out during a loop", "n": 4}


def test_nested_budgets_keep_the_earliest_deadline():
    now = [0.0]
    with deadline.using_clock(lambda: now[0]):
        with deadline.time_budget(1, "the outer block"):
            with deadline.time_budget(100, "the inner block"):
                now[0] = 0.5
                deadline.checkpoint()                   # neither has run out
                assert deadline.remaining() == 0.5
                now[0] = 2.0
                with pytest.raises(OutOfTime, match="outer block"):
                    deadline.checkpoint()


def test_an_inner_budget_runs_out_first_and_is_gone_once_left():
    now = [0.0]
    with deadline.using_clock(lambda: now[0]):
        with deadline.time_budget(100, "the outer block"):
            with pytest.raises(OutOfTime, match="inner block"):
                with deadline.time_budget(1, "the inner block"):
                    now[0] = 2.0
                    deadline.checkpoint()
            deadline.checkpoint()                       # the outer one has time left
            assert deadline.remaining() == 98.0
    assert deadline.remaining() == float("inf")


def test_a_budget_of_nothing_raises_at_once():
    with pytest.raises(OutOfTime, match="no time was left"):
        with deadline.time_budget(0, "nothing"):
            pass


def test_an_enclosing_budget_bounds_a_check():
    now = [0.0]
    with deadline.using_clock(lambda: now[0]):
        with deadline.time_budget(1, "the caller's block"):
            now[0] = 5.0
            result = check(TRUE, FAST)
    assert result.verdict.status == UNDECIDED


def test_nested_alarms_on_the_main_thread_keep_the_outer_deadline():
    """The timer interrupts work without safe points; an inner budget must not postpone it."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("the timer is for the main thread")
    handler, t0 = signal.getsignal(signal.SIGALRM), time.monotonic()
    with pytest.raises(OutOfTime, match="outer block"):
        with deadline.time_budget(0.2, "the outer block"):
            with deadline.time_budget(60, "the inner block"):
                while time.monotonic() - t0 < 30:
                    time.sleep(0.01)                     # no safe point here
    assert time.monotonic() - t0 < 30
    assert signal.getsignal(signal.SIGALRM) == handler   # restored once no budget needs it
    with deadline.time_budget(60, "after"):              # nothing was left behind
        deadline.checkpoint()


def test_a_budget_that_runs_out_inside_a_garbage_collection_is_not_lost(capsys):
    """Python prints and drops an exception raised inside a gc callback (Hypothesis has one):
    the budget must still run out, right after the callback, and nothing is printed."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("the timer is for the main thread")
    import gc

    def slow_callback(phase, info):
        if phase == "start":
            t = time.monotonic()
            while time.monotonic() - t < 0.3:   # the alarm fires in here
                pass

    gc.callbacks.insert(0, slow_callback)
    t0 = time.monotonic()
    try:
        with pytest.raises(OutOfTime, match="the collected block"):
            with deadline.time_budget(0.1, "the collected block"):
                gc.collect()
                while time.monotonic() - t0 < 30:
                    time.sleep(0.01)
    finally:
        gc.callbacks.remove(slow_callback)
    assert time.monotonic() - t0 < 5
    assert "Exception ignored" not in capsys.readouterr().err
