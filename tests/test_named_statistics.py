"""Proofs that keep the statistics named (mu_B, sigma^2_B), as the paper writes them.

The first proof attempt names each closed statistic of one input and differentiates through
its definition; equal normal forms in named statistics prove the part, different ones send it
to the second attempt, which writes every statistic out.  These tests hold that the named
attempt is what proves the backward formulas, that it keeps sigma^2_B unexpanded, and that it
cannot make a false statement proved.
"""

from __future__ import annotations

import sympy as sp

from derive import Batch, Claim, Equation, Grad, check
from derive import verify
from derive.calculus import BOUND_INDICES, Mean, Statistic, unname
from derive.core import Step
from derive.claims import batchnorm
from derive.rules import name_statistics
from derive.verify import Settings

B = Batch("N")
N = B.size
x, g = B.samples("x"), B.samples("g")
i, k = B.index("i"), B.index("k")
b = B.param("b")
FAST = Settings(random_instances=30, hypothesis_examples=20, explicit_sizes=(1, 2, 3, 4),
                frameworks=(), framework_examples=0, simulation=False)
MU = B.mean(x[i], i)
TRUE = Claim("true.mean", "a mean", B, (Equation(MU, MU),))
VAR = B.mean((x[i] - MU) ** 2, i)


def _claim(claim_id):
    return next(c for c in batchnorm.claims() if c.id == claim_id)


def _steps(parts):
    return [s for p in parts for s in p.lhs_steps + p.rhs_steps]


def test_a_statistic_differentiates_through_its_definition():
    named = name_statistics(VAR)
    assert isinstance(named, Statistic)
    assert unname(sp.diff(named, x[k])) == sp.diff(VAR, x[k])
    assert unname(named) == VAR


def test_the_compact_backward_formula_is_proved_with_sigma_squared_kept_whole():
    parts, evidence = verify.symbolic_layer(_claim("bn.backward.compact"), Settings())
    steps = _steps(parts)
    assert evidence.holds and all(s.ok for s in steps)
    assert any(s.after.has(Statistic) for s in steps)
    # the raw second moment E[x^2] is what writing sigma^2_B out produces: never here
    j = BOUND_INDICES[0]
    m = _claim("bn.backward.compact").batch.size
    xs = batchnorm.x
    raw = (Mean(xs[j] ** 2, j, m), )
    assert not any(unname(s.after).has(*raw) for s in steps)


def test_a_step_on_a_named_statistic_is_rechecked_through_its_definition():
    # the re-check writes the definition out: a statistic treated as held fails it
    sigma2 = name_statistics(VAR)
    wrong = Step("differentiate", Grad(sigma2, x[k]), sp.S.Zero)
    right = Step("differentiate", Grad(sigma2, x[k]), 2 * (x[k] - name_statistics(MU)) / N)
    for step in (wrong, right):
        verify.recheck_step(TRUE, step, FAST)
    assert (wrong.ok, right.ok) == (False, True)


def test_a_wrong_derivative_of_a_statistic_cannot_prove_a_wrong_formula(monkeypatch):
    # a statistic differentiated as if it were held "proves" that the variance has no
    # gradient; the step's re-check differentiates the definition and stops the proof
    monkeypatch.setattr(Statistic, "_eval_derivative", lambda self, v: sp.S.Zero)
    held_formula = Claim("false.variance-gradient-zero", "the variance has no gradient", B,
                         (Equation(Grad(VAR, x[k]), 0),))
    parts, evidence = verify.symbolic_layer(held_formula, FAST)
    assert parts[0].residual == 0                  # the wrong derivative did reduce it to 0
    assert [s.rule for s in _steps(parts) if not s.ok] == ["differentiate"]
    assert not evidence.holds and "failed its own re-check" in evidence.summary


def test_a_false_statement_about_named_statistics_is_refuted():
    claim = Claim("false.variance-is-second-moment", "variance is the second moment", B,
                  (Equation(VAR, B.mean(x[i] ** 2, i)),))
    result = check(claim, FAST)
    assert result.verdict.status == "refuted"
    assert result.proof[0].residual != 0


def test_a_true_statement_that_relates_statistics_falls_back_and_is_proved():
    # E[x - mu] = 0 needs mu = E[x] written out: the named attempt cannot see it
    claim = Claim("true.centered", "centered values have mean zero", B,
                  (Equation(B.mean(x[i] - MU, i), 0),))
    parts, evidence = verify.symbolic_layer(claim, FAST)
    assert evidence.holds
    assert not any(s.after.has(Statistic) for s in _steps(parts))


def test_a_shifted_input_has_the_same_named_variance():
    # E[(x + b - E[x + b])^2] names to sigma^2_B itself: the shift leaves it
    shifted = B.mean((x[i] + b - B.mean(x[i] + b, i)) ** 2, i)
    assert name_statistics(shifted) == name_statistics(VAR)


def test_derivative_by_a_shift_is_zero_in_one_step():
    claim = Claim("true.shift", "BN ignores a shift", B,
                  (Equation(Grad(B.sum(g[i] * (x[i] + b - B.mean(x[i] + b, i)), i), b), 0),))
    parts, evidence = verify.symbolic_layer(claim, FAST)
    assert evidence.holds and any(s.rule == "statistic" for s in _steps(parts))


# -- the derivation prints in the paper's notation ------------------------------------------------

def test_the_batchnorm_printer_writes_xhat_s_and_named_statistics():
    from derive.render.latex import abbreviated, tex
    story = batchnorm.story()
    bn_x, bn_mu, bn_s, k_ = batchnorm.x, batchnorm.mu, batchnorm.s, batchnorm.k
    with abbreviated(story.abbreviations, story.folds, story.normalized):
        # (x_k - mu_B)/s is xhat_k; what is left of 1/s^3 stays a power of s
        assert tex((bn_x[k_] - bn_mu) / bn_s ** 3) == r"\frac{\hat x_{k}}{s^{2}}"
        assert tex(bn_s ** 3) == "s^{3}"
        # a named statistic is one symbol: no brackets around it in a product
        assert tex(2 * sp.KroneckerDelta(i, k) * name_statistics(bn_mu)) == \
            r"2 \delta_{i k} \mu_{\mathcal B}"
    # outside the story, the same values are written out
    assert r"\hat x" not in tex((bn_x[k_] - bn_mu) / bn_s)


def test_a_value_written_in_full_is_not_taken_from_the_names_printed_before_it():
    # the printer remembers what it printed inside a story's block; the value a derivative
    # is taken at is written out in full, so it must not come from that memory, before or
    # after the statistic was printed by its name
    from derive.render.latex import abbreviated, tex
    story, v = batchnorm.story(), sp.Symbol("v")
    at_mean = Grad(v ** 2, v, at=batchnorm.mu)
    with abbreviated(story.abbreviations, story.folds, story.normalized):
        printed = [tex(batchnorm.mu), tex(at_mean), tex(batchnorm.mu), tex(at_mean)]
    assert printed[0] == printed[2] == r"\mu_{\mathcal B}"
    assert printed[1] == printed[3] == tex(at_mean)
    assert printed[1].endswith(r"v = \operatorname{E}\!\left[x\right]}")


def test_a_statistic_per_sample_is_named_under_the_sum_that_binds_its_sample():
    # LayerNorm's mean E_c[x_{n,c}] inside a sum over n: named there, and after sifting
    # picks n = m it is mu_m, the statistic of sample m
    from derive.claims import normalization
    claim = next(c for c in normalization.claims() if c.id == "family.ln.backward")
    parts, evidence = verify.symbolic_layer(claim, Settings(budget=60))
    steps = _steps(parts)
    assert evidence.holds and all(s.ok for s in steps)
    differentiated = next(s for s in steps if s.rule == "differentiate")
    assert differentiated.after.has(Statistic)
