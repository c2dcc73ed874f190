"""No blind spots in deciding: failures beyond the usual sizes, statements undefined at small
sizes, layers that cannot run, claims over several axes.

* A statement that holds up to N = 8 and fails from N = 9 on (a term times (N-1)...(N-8)) is
  refuted at N = 9: the residual says where it stops vanishing.  One that fails from N = 12,
  with a residual that says nothing, is refuted at N = 12 because the numeric layer failed
  there (and every smaller size was searched on the way).
* The epsilon = 0 standardization (x - mean)/sqrt(var) is 0/0 at N = 1: checked from N = 2,
  where it is defined, without ``min_size`` or ``domain``; a wrong one is refuted inside the
  domain.
* A layer that raises says why in words.
* Over two axes the search walks sizes smallest first and the verdict names every axis.
"""

import functools

import pytest
import sympy as sp

from derive import counterexample, numeric, recheck, verify
from derive.calculus import Axis, Batch
from derive.core import PROVED, REFUTED, UNDECIDED, Claim, Counterexample, Equation, Evidence
from derive.verify import Settings, check, decide

FAST = Settings(random_instances=40, hypothesis_examples=30, frameworks=(), simulation=False,
                explicit_budget=10.0)

B = Batch("N")
N = B.size
x = B.samples("x")
i = B.index("i")
mu = B.mean(x[i], i)
var = B.mean((x[i] - mu) ** 2, i)
xh = (x[i] - mu) / sp.sqrt(var)            # standardized at epsilon = 0: 0/0 at N = 1
UP_TO_8 = sp.prod([N - k for k in range(1, 9)])   # 0 for N = 1..8, nonzero from 9 on

# E[x^2] = Var[x] + E[x]^2, plus a term that vanishes exactly for N <= 8
FROM_9 = Claim("deciding.from-9", "fails from N = 9 on", B,
               (Equation(B.mean(x[i] ** 2, i), var + mu ** 2 + UP_TO_8 * mu ** 2),))
# ... and one whose residual has no factor in N alone: zero for N <= 11, not for N = 12
FROM_12 = Claim("deciding.from-12", "fails from N = 12 on", B,
                (Equation(B.mean(x[i] ** 2, i),
                          var + mu ** 2 + sp.Max(0, N - 11) * mu ** 2
                          + sp.Max(0, 2 * N - 22) * B.mean(x[i] ** 2, i)),))
STANDARDIZED = Claim("deciding.standardized", "a standardized batch has mean square 1", B,
                     (Equation(B.mean(xh ** 2, i), 1),))
WRONG_STANDARDIZED = Claim("deciding.standardized-wrong", "standardizing only centers", B,
                           (Equation(xh, x[i] - mu),))
SKEW = Claim("deciding.standardized-skew", "a standardized batch has no skew", B,
             (Equation(B.mean(xh ** 3, i), 0),))


@functools.lru_cache(maxsize=None)
def checked(claim):
    return check(claim, FAST)


# -- failing beyond the usual sizes ----------------------------------------------------------

def test_the_statement_failing_from_9_holds_wherever_the_old_search_looked():
    # the blind spot: the explicit layer's sizes and the search's usual sizes all hold
    assert all(verify.explicit_holds(FROM_9, n) for n in range(1, 9))
    assert counterexample.search(FROM_9, max_size=6) is None


def test_a_statement_failing_from_9_is_refuted_at_9():
    result = checked(FROM_9)
    v = result.verdict
    assert (v.status, v.counterexample.size) == (REFUTED, 9)
    assert v.reason == "fails at N = 9 (smallest failing batch size)"


def test_the_counterexample_at_9_is_exact_and_rechecked_independently():
    cex = checked(FROM_9).verdict.counterexample
    assert cex.residual.is_Rational and cex.residual != 0
    assert len(cex.values["x"]) == 9
    assert recheck.confirm(FROM_9, cex).confirmed is True


def test_the_residual_points_the_search_at_the_first_size_where_it_does_not_vanish():
    residual = checked(FROM_9).verdict.residual
    beyond, holds = counterexample.further_sizes(
        FROM_9, [{N: n} for n in range(1, 7)], residuals=(residual,))
    assert [s[N] for s, _ in beyond] == [9]
    assert [s[N] for s in holds] == [7, 8]
    assert "residual" in beyond[0][1]
    log = counterexample.SearchLog()
    cex = counterexample.search(FROM_9, 6, residuals=(residual,), log=log)
    assert cex.size == 9 and [s[N] for s in log.searched] == list(range(1, 7))


def test_a_residual_with_a_single_root_points_at_the_first_size():
    # (N - 12) vanishes only at 12: the first size that is not a root is the minimum itself
    claim = Claim("deciding.n-12", "N - 12", B, (Equation((N - 12) * mu, 0),))
    beyond, _ = counterexample.further_sizes(claim, [{N: n} for n in range(1, 7)],
                                             residuals=((N - 12) * mu,))
    assert beyond == []


def test_a_hint_searches_every_smaller_size_on_the_way():
    beyond, _ = counterexample.further_sizes(FROM_12, [{N: n} for n in range(1, 7)],
                                             hints=[({N: 12}, "the numeric layer")])
    assert [s[N] for s, _ in beyond] == [7, 8, 9, 10, 11, 12]
    assert beyond[-1][1] == "the numeric layer failed at N = 12"
    cex = counterexample.search(FROM_12, 6, hints=[12])
    assert cex.size == 12 and recheck.confirm(FROM_12, cex).confirmed is True


def test_the_search_beyond_the_usual_sizes_stays_within_the_cap():
    beyond, _ = counterexample.further_sizes(FROM_12, [{N: n} for n in range(1, 7)],
                                             hints=[1000], cap=20)
    assert max(s[N] for s, _ in beyond) == 20


def test_a_numeric_failure_at_12_is_refuted_at_12(monkeypatch):
    # the numeric layer draws up to N = 12 here; the residual says nothing about where it
    # vanishes, so only the numeric failure can take the search there
    drawn = numeric.random_instances
    monkeypatch.setattr(numeric, "random_instances",
                        lambda claim, count, seed=0, max_size=8: drawn(claim, count, seed, 12))
    result = check(FROM_12, FAST)
    num = next(e for e in result.evidence if e.kind == "numeric")
    cex_ev = next(e for e in result.evidence if e.kind == "counterexample")
    assert num.holds is False and "_failing_sizes" not in num.details
    assert (result.verdict.status, result.verdict.counterexample.size) == (REFUTED, 12)
    assert "the numeric layer" in cex_ev.summary and "N = 12" in cex_ev.summary


def test_without_the_hint_the_statement_failing_from_12_stays_undecided():
    result = checked(FROM_12)
    assert result.verdict.status == UNDECIDED
    assert "no counterexample was found up to N = 6" in result.verdict.reason


# -- where a statement is defined ------------------------------------------------------------

def test_the_standardization_at_epsilon_0_is_proved_from_n_2():
    result = checked(STANDARDIZED)
    v = result.verdict
    assert v.status == PROVED, v.reason
    assert v.reason.startswith("proved for every N >= 2 (defined for N >= 2: at N = 1, ")
    assert "is identically 0" in v.reason
    assert v.defined_from == {N: 2}
    assert result.claim is STANDARDIZED and STANDARDIZED.min_size == 1
    assert not any("could not run" in e.summary for e in result.evidence)
    explicit = next(e for e in result.evidence if e.kind == "explicit")
    assert explicit.details["holds_at"][0] == 2


def test_the_scope_takes_the_variance_as_the_domain():
    scope = verify.statement_scope(STANDARDIZED)
    assert (scope.claim.min_size, scope.defined_from) == (2, {N: 2})
    assert scope.claim.domain == (var,)
    assert "defined for N >= 2" in scope.note


def test_a_claim_defined_from_its_stated_size_is_checked_as_stated():
    stated = Claim("deciding.stated", "stated", B, (Equation(B.mean(xh ** 2, i), 1),),
                   min_size=2, domain=(var,))
    assert verify.statement_scope(stated).claim is stated
    eps = B.param("epsilon", positive=True)
    with_eps = Claim("deciding.eps", "eps", B,
                     (Equation(B.mean((x[i] - mu) / sp.sqrt(var + eps), i), 0),))
    assert verify.implicit_domain(with_eps) == ()    # var + eps > 0 by its form
    assert verify.statement_scope(with_eps).claim is with_eps


def test_a_wrong_standardization_is_refuted_inside_its_domain():
    v = checked(WRONG_STANDARDIZED).verdict
    assert (v.status, v.counterexample.size) == (REFUTED, 2)
    assert "defined for N >= 2" in v.reason
    values = [sp.Rational(t) for t in v.counterexample.values["x"]]
    assert len(set(values)) > 1     # a nonzero variance: inside the domain
    assert recheck.confirm(WRONG_STANDARDIZED, v.counterexample).confirmed is True


def test_a_wrong_standardization_holding_at_2_is_refuted_at_3():
    # at N = 2 the standardized batch is (1, -1) or (-1, 1): no skew; from N = 3 it can have
    v = checked(SKEW).verdict
    assert (v.status, v.counterexample.size) == (REFUTED, 3)
    assert recheck.confirm(SKEW, v.counterexample).confirmed is True


def test_the_explicit_layer_says_where_a_statement_is_undefined():
    with pytest.raises(verify.Undefined, match="divides by zero at N = 1"):
        verify.explicit_holds(STANDARDIZED, 1)
    ev = verify.explicit_layer(STANDARDIZED, Settings(explicit_sizes=(1, 2, 3)))
    assert ev.summary == ("identity at N = 2, 3; undefined (a division by zero) at N = 1")
    assert ev.details["undefined_at"] == [1]


# -- a layer that cannot run says why -------------------------------------------------------

def test_a_layer_that_raises_gives_an_undecided_reason_in_words(monkeypatch):
    def broken(claim, settings):
        raise ZeroDivisionError
    monkeypatch.setattr(verify, "explicit_layer", broken)
    result = check(STANDARDIZED, FAST)
    explicit = next(e for e in result.evidence if e.kind == "explicit")
    assert result.verdict.status == UNDECIDED
    assert explicit.summary.startswith("could not run: a division by zero")
    assert "ZeroDivisionError" not in explicit.summary
    assert "ZeroDivisionError" not in result.verdict.reason
    assert "division by zero" in result.verdict.reason


@pytest.mark.parametrize("err, words", [
    (ZeroDivisionError(), "a division by zero"),
    (RecursionError("maximum recursion depth exceeded"), "nests too deeply"),
    (MemoryError(), "too large"),
    (NotImplementedError("no rule"), "SymPy cannot carry out a step it needs (no rule)"),
    (TypeError("unsupported operand"), "internal error (type error: unsupported operand)"),
    (RuntimeError(), "an unexpected failure; a bug in this layer"),
])
def test_why_text_is_words_never_a_bare_exception_name(err, words):
    why = verify.why_text(err)
    assert words in why
    assert type(err).__name__ not in why


# -- several axes ----------------------------------------------------------------------------

NA, CA = Axis("N"), Axis("C")
n, c = NA.index("n"), CA.index("c")
w = NA.samples("w")
ROW = CA.mean(w[n, c], c)
# the rows' third central moment over C (0 for C <= 2) times the variance of the row means
# over N (0 for N = 1): fails exactly when N >= 2 and C >= 3
TWO_AXES = Claim("deciding.two-axes", "fails from N = 2, C = 3", NA,
                 (Equation(NA.mean(CA.mean((w[n, c] - ROW) ** 3, c), n)
                           * NA.mean((ROW - NA.mean(ROW, n)) ** 2, n), 0),))


def test_two_axis_search_finds_the_smallest_sizes():
    log = counterexample.SearchLog()
    cex = counterexample.search(TWO_AXES, 4, log=log)
    assert cex.sizes == {NA.size: 2, CA.size: 3} and cex.size == 2
    assert [tuple(s.values()) for s in log.searched] == [(1, 1), (1, 2), (2, 1), (1, 3),
                                                          (2, 2), (3, 1), (1, 4)]
    # a tensor over (N, C) is a nested list in layout order: w[n, c] -> w[n-1][c-1]
    assert [len(row) for row in cex.values["w"]] == [3, 3]
    assert "C" not in cex.values        # an axis size is not a variable
    assert recheck.confirm(TWO_AXES, cex).confirmed is True


def test_two_axis_claim_is_refuted_at_every_axis_size():
    v = checked(TWO_AXES).verdict
    assert v.status == REFUTED
    assert v.reason == "fails at N = 2, C = 3 (smallest failing sizes)"


def test_two_axis_explicit_sizes_are_smallest_first():
    sizes = verify.explicit_sizes(TWO_AXES, Settings(explicit_sizes=(1, 2, 3)))
    assert [tuple(s.values()) for s in sizes][:4] == [(1, 1), (1, 2), (2, 1), (1, 3)]
    assert all(s[NA.size] * s[CA.size] <= verify.EXPLICIT_GRID for s in sizes)
    assert verify.explicit_holds(TWO_AXES, {NA.size: 2, CA.size: 2}) is True
    assert verify.explicit_holds(TWO_AXES, {NA.size: 2, CA.size: 3}) is False


def test_a_residual_factor_in_one_axis_points_that_axis_beyond():
    claim = Claim("deciding.c-factor", "C factor", NA,
                  (Equation(CA.mean(w[n, c], c) * sp.prod([CA.size - k for k in range(1, 5)]),
                            0),))
    beyond, _ = counterexample.further_sizes(
        claim, [], residuals=(claim.equations[0].lhs,))
    assert [tuple(s.values()) for s, _ in beyond] == [(1, 5)]


# -- the policy stays pure, one-axis wording unchanged ----------------------------------------

def _ev(kind, holds):
    return Evidence(kind, bool(holds), f"{kind} {holds}", {}, holds=holds)


YES = (_ev("symbolic", True), _ev("explicit", True), _ev("numeric", True))


def test_decide_names_every_axis_and_where_a_statement_is_defined():
    v = decide(*YES, minimums={NA.size: 1, CA.size: 2})
    assert v.reason == "proved for every N >= 1, C >= 2"
    v = decide(*YES, min_size=2, defined_from={N: 2}, note="defined for N >= 2: why")
    assert (v.reason, v.defined_from) == ("proved for every N >= 2 (defined for N >= 2: why)",
                                          {N: 2})
    assert decide(*YES).defined_from is None
    cex = Counterexample(2, {}, sp.S.One, sp.S.Zero, sizes={NA.size: 2, CA.size: 3})
    found = Evidence("counterexample", True, "", {"found": cex, "rechecked": True},
                     holds=False)
    v = decide(_ev("symbolic", False), *YES[1:], [], "", found, sp.S.One)
    assert v.reason == "fails at N = 2, C = 3 (smallest failing sizes)"
    assert found.details["found"] is cex     # nothing changed


def test_decide_says_how_far_the_search_went():
    none = Evidence("counterexample", False, "none found", {}, holds=None)
    v = decide(_ev("symbolic", False), *YES[1:], [], "", none, sp.Symbol("r"),
               searched="up to N = 6, and at N = 9")
    assert v.reason.endswith("no counterexample was found up to N = 6, and at N = 9")


def test_a_search_capped_below_the_failure_is_taken_there_by_the_residual():
    # the unnormalized sum fails from N = 2; its residual -db*(N - 1) vanishes only at N = 1,
    # so a search told to stop at N = 1 goes on to N = 2 (it used to end undecided)
    from derive.claims import all_claims
    claim = next(c for c in all_claims() if c.id == "centering.unnormalized-sum")
    result = check(claim, Settings(random_instances=30, hypothesis_examples=20, frameworks=(),
                                   counterexample_max_size=1))
    v = result.verdict
    assert (v.status, v.counterexample.size, v.reason) == (
        REFUTED, 2, "fails at N = 2 (smallest failing batch size)")


def test_failure_hints_read_where_each_layer_failed_and_take_private_notes_out():
    num = Evidence("numeric", False, "fails", {
        "hypothesis": {"shrunk_failure": {"N": 2, "C": 3, "w": [[0.0] * 3] * 2}},
        verify.FAILING_SIZES: [(4, 1)]}, holds=False)
    explicit = Evidence("explicit", False, "", {"fails_at": [[2, 4]]}, holds=False)
    torch = Evidence("torch", False, "", {"failure": {"instance": {"N": 3, "C": 5}}},
                     holds=False)
    hints = verify.failure_hints(TWO_AXES, [explicit, num, torch])
    assert [h for h, _ in hints] == [{NA.size: 2, CA.size: 4}, {NA.size: 4, CA.size: 1},
                                     {NA.size: 2, CA.size: 3}, {NA.size: 3, CA.size: 5}]
    assert verify.FAILING_SIZES not in num.details
