"""The acceptance test: every catalog claim gets the catalog's verdict, and the verdict is sound.

The claims catalog (``claims.md``, beside the checkout) fixes the ids and the verdicts; the
table below holds the verdict of every id the project implements (sections A to G), so
that CI compares every built-in claim and every certificate id with the catalog even where the
catalog itself is not at hand, and where it is, the table is compared with it.  The section-A
claims are checked once each with the report's default settings (sections B, C and G:
test_batchnorm.py); the deliberately false claims use smaller counts, since their verdict comes
from the exact counterexample search.
"""

import itertools
import json
import re
from pathlib import Path

import pytest
import sympy as sp

from derive import deadline, report
from derive.calculus import Batch, Grad, held
from derive.claims import all_claims, centering
from derive.core import PROVED, REFUTED, UNDECIDED, Claim, Equation
from derive.verify import Settings, check, explicit_holds

ROOT = Path(__file__).resolve().parents[1]
CATALOG_FILE = ROOT.parent / "shared" / "claims.md"
REPORTS = sorted((ROOT / "reports").glob("*.json"))

# claims.md: id -> verdict, for every id the project implements
CATALOG_VERDICTS = {
    # A. Centering
    "centering.naive-gradient": PROVED,
    "centering.full-gradient": PROVED,
    "centering.update-cancels": PROVED,
    "centering.drift": PROVED,
    "centering.jacobian": PROVED,
    "centering.unnormalized-sum": REFUTED,
    "centering.nonlinear": REFUTED,
    "centering.nonlinear-first-order": PROVED,
    "centering.affine": PROVED,
    # B. Full batch normalization
    "bn.backward.dl-dxhat": PROVED,
    "bn.backward.dl-dvar": PROVED,
    "bn.backward.dl-dmu": PROVED,
    "bn.backward.mu-variance-term-vanishes": PROVED,
    "bn.backward.dl-dx": PROVED,
    "bn.backward.dl-dgamma": PROVED,
    "bn.backward.dl-dbeta": PROVED,
    "bn.backward.compact": PROVED,
    "bn.jacobian": PROVED,
    "bn.gradient-sums-to-zero": PROVED,
    "bn.gradient-orthogonal-to-xhat": REFUTED,
    "bn.gradient-orthogonal-to-xhat-eps0": PROVED,
    "bn.shift-invariance": PROVED,
    "bn.scale-invariance": REFUTED,
    "bn.scale-invariance-eps0": PROVED,
    "bn.scale.input-gradient": PROVED,
    "bn.scale.weight-gradient": PROVED,
    "bn.inference-affine": PROVED,
    # C. Consequences for training
    "train.weight-orthogonal": PROVED,
    "train.weight-norm-growth": PROVED,
    "train.naive-scale-step": PROVED,
    # G. Lemmas and additions to sections B and C
    "bn.lemma.centered-sum": PROVED,
    "bn.lemma.normalized-squares": PROVED,
    "bn.scale-invariance-eps0-negative": REFUTED,
    "bn.scale-eps-rescale": PROVED,
    # E. The normalization family on one tensor; F. BN's double backward
    "family.bn.channel-bias": PROVED,
    "family.bn.sample-bias": REFUTED,
    "family.bn.shift": PROVED,
    "family.bn.channel-scale-eps0": PROVED,
    "family.bn.channel-scale": REFUTED,
    "family.bn.sample-scale-eps0": REFUTED,
    "family.ln.channel-bias": REFUTED,
    "family.ln.sample-bias": PROVED,
    "family.ln.shift": PROVED,
    "family.ln.sample-scale-eps0": PROVED,
    "family.ln.sample-scale": REFUTED,
    "family.ln.channel-scale-eps0": REFUTED,
    "family.in.channel-bias": PROVED,
    "family.in.sample-bias": PROVED,
    "family.in.position-bias": REFUTED,
    "family.in.channel-scale-eps0": PROVED,
    "family.in.position-scale-eps0": REFUTED,
    "family.gn.group-bias": PROVED,
    "family.gn.sample-bias": PROVED,
    "family.gn.channel-bias": REFUTED,
    "family.gn.group-scale-eps0": PROVED,
    "family.gn.channel-scale-eps0": REFUTED,
    "family.rms.shift": REFUTED,
    "family.rms.sample-scale-eps0": PROVED,
    "family.rms.sample-scale": REFUTED,
    "family.rms.channel-scale-eps0": REFUTED,
    "family.rms.centered-is-ln": PROVED,
    "family.wn.scale": PROVED,
    "family.wn.negative-scale": REFUTED,
    "family.bn.channels-independent": PROVED,
    "family.ln.backward": PROVED,
    "family.rms.backward": PROVED,
    "family.in.backward": PROVED,
    "family.gn.backward": PROVED,
    "family.wn.backward-v": PROVED,
    "family.wn.backward-gain": PROVED,
    "family.wn.gradient-orthogonal": PROVED,
    "family.gradcheck-ones": PROVED,
    "family.gradcheck-ones-ln-gain": REFUTED,
    "bn.double-backward.input": PROVED,
    "bn.double-backward.grad-output": PROVED,
    "bn.hessian-symmetric": PROVED,
    "bn.hessian-rows-sum-to-zero": PROVED,
    "bn.double-backward.wrong-coefficient": REFUTED,
}
# ids the project states beyond the catalog (the normalization report's table cells the
# catalog leaves open, and plausible slips refuted): never a catalog id
PROJECT_VERDICTS = {
    "family.bn.scale-eps0": PROVED,
    "family.bn.scale": REFUTED,
    "family.ln.scale-eps0": PROVED,
    "family.ln.scale": REFUTED,
    "family.in.channel-scale": REFUTED,
    "family.in.shift": PROVED,
    "family.in.scale-eps0": PROVED,
    "family.in.scale": REFUTED,
    "family.gn.group-scale": REFUTED,
    "family.gn.shift": PROVED,
    "family.gn.scale-eps0": PROVED,
    "family.gn.scale": REFUTED,
    "family.rms.scale-eps0": PROVED,
    "family.rms.scale": REFUTED,
    "family.mutant.ln-channel-bias-gradient": REFUTED,
    "family.mutant.ln-backward-no-mean": REFUTED,
    "family.mutant.ln-backward-gain-outside": REFUTED,
    "family.mutant.ln-backward-unbiased": REFUTED,
    "family.mutant.rms-backward-centered": REFUTED,
    "family.mutant.rms-backward-no-projection": REFUTED,
    "family.mutant.bn-channels-mix": REFUTED,
    "family.mutant.bn-backward-no-xhat-term": REFUTED,
    "family.mutant.bn-backward-all-channels": REFUTED,
    "family.mutant.in-backward-batch-stats": REFUTED,
    "family.mutant.gn-wrong-axis": REFUTED,
    "family.mutant.wn-no-projection": REFUTED,
    "family.mutant.wn-gain-unnormalized": REFUTED,
    "family.mutant.gn-group-bias-per-channel": REFUTED,
    "family.mutant.rms-removes-sample-bias": REFUTED,
}
# section A
CATALOG = {i: v for i, v in CATALOG_VERDICTS.items() if i.startswith("centering.")}
CLAIMS = {c.id: c for c in centering.claims()}  # sections B and C: test_batchnorm.py
PROVED_IDS = sorted(i for i, v in CATALOG.items() if v == PROVED)
REFUTED_IDS = sorted(i for i, v in CATALOG.items() if v == REFUTED)
FAST = Settings(random_instances=30, hypothesis_examples=20)


@pytest.fixture(scope="module")
def results(centering_results):
    """Each catalog claim checked once, with the report's settings (the defaults)."""
    assert report.topic_settings("centering") == Settings()
    return {r.id: r for r in centering_results}


# -- the catalog -------------------------------------------------------------------------------

def test_catalog_ids_are_exactly_the_section_a_ids():
    assert set(CLAIMS) == set(CATALOG)


def test_catalog_ids_are_unique():
    from derive.claims import all_claims
    ids = [c.id for c in all_claims()]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("claim_id", sorted(CATALOG))
def test_claim_states_the_catalog_verdict_as_expected(claim_id):
    assert CLAIMS[claim_id].expected == CATALOG[claim_id]


# -- every id, built in or certified, against the catalog -------------------------------------

BUILT_IN = {c.id: c for c in all_claims()}


def test_catalog_table_holds_exactly_the_built_in_claims():
    assert set(CATALOG_VERDICTS) | set(PROJECT_VERDICTS) == set(BUILT_IN)


def test_the_project_own_claims_are_not_catalog_ids():
    assert not set(PROJECT_VERDICTS) & set(CATALOG_VERDICTS)
    if CATALOG_FILE.exists():
        assert not set(PROJECT_VERDICTS) & set(catalog_verdicts(CATALOG_FILE.read_text()))


@pytest.mark.parametrize("claim_id", sorted(BUILT_IN))
def test_built_in_claim_expects_the_catalog_verdict(claim_id):
    # not the claim's own ``expected``: this is what holds that to the catalog
    assert BUILT_IN[claim_id].expected == {**CATALOG_VERDICTS, **PROJECT_VERDICTS}[claim_id]


def test_there_are_certificates_to_compare():
    names = {p.name for p in REPORTS}
    assert names >= {"centering.json", "batchnorm.json"}
    assert all("verdict" in c for name in ("centering.json", "batchnorm.json")
               for c in json.loads((ROOT / "reports" / name).read_text())["claims"])


@pytest.mark.parametrize("path", REPORTS, ids=[p.name for p in REPORTS])
def test_every_certificate_id_has_the_catalog_verdict(path):
    # the certificates, and the timings sidecars beside them (ids only)
    claims = json.loads(path.read_text())["claims"]
    known = {**CATALOG_VERDICTS, **PROJECT_VERDICTS}
    assert sorted(c["id"] for c in claims if c["id"] not in known) == []
    certified = [c for c in claims if "verdict" in c]
    catalog = {c["id"]: known[c["id"]] for c in certified}
    assert {c["id"]: c["verdict"] for c in certified} == catalog
    assert {c["id"]: c["expected"] for c in certified} == catalog


def catalog_verdicts(text: str) -> dict:
    """Every ``| `id` | statement | verdict |`` row of the catalog's tables: id -> verdict,
    refuted when the verdict cell starts with a bold "refuted", else proved."""
    found = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        name = re.fullmatch(r"`([^`]+)`", cells[0]) if len(cells) == 3 else None
        if name:
            found[name.group(1)] = REFUTED if cells[2].startswith("**refuted**") else PROVED
    return found


def test_catalog_parser_reads_rows_and_bold_refutations():
    text = ("| id | statement | verdict |\n|---|---|---|\n| `p.one` | x | proved, all N |\n"
            "| `r.two` | y | **refuted**: residual z |\n"
            "| `p.three` | w | proved; for a < 0 refuted |\n| `bn` | n (per channel c) |\n")
    assert catalog_verdicts(text) == {"p.one": PROVED, "r.two": REFUTED, "p.three": PROVED}


def test_catalog_table_agrees_with_the_catalog():
    if not CATALOG_FILE.exists():
        pytest.skip("the claims catalog is not beside the checkout")
    catalog = catalog_verdicts(CATALOG_FILE.read_text())
    assert {i: catalog.get(i, "missing from the catalog") for i in CATALOG_VERDICTS} == \
        CATALOG_VERDICTS


@pytest.mark.parametrize("claim_id", sorted(CATALOG))
def test_checked_verdict_is_the_expected_verdict(results, claim_id):
    assert results[claim_id].verdict.status == CLAIMS[claim_id].expected


@pytest.mark.parametrize("claim_id", PROVED_IDS)
def test_proved_claim_has_at_least_three_agreeing_evidence_kinds(results, claim_id):
    assert len({e.kind for e in results[claim_id].evidence if e.ok}) >= 3


@pytest.mark.parametrize("claim_id", PROVED_IDS)
def test_proved_claim_has_every_residual_exactly_zero(results, claim_id):
    assert all(part.residual == 0 for part in results[claim_id].proof)


@pytest.mark.parametrize("claim_id", PROVED_IDS)
def test_proved_claim_has_every_step_rechecked(results, claim_id):
    steps = [s for p in results[claim_id].proof for s in p.lhs_steps + p.rhs_steps]
    assert all(s.ok and s.checks for s in steps)


@pytest.mark.parametrize("claim_id", REFUTED_IDS)
def test_refuted_claim_carries_a_counterexample_with_nonzero_residual(results, claim_id):
    cex = results[claim_id].verdict.counterexample
    assert cex is not None and cex.residual != 0


@pytest.mark.parametrize("claim_id", REFUTED_IDS)
def test_refuted_claim_counterexample_is_at_the_smallest_failing_size(results, claim_id):
    claim, size = CLAIMS[claim_id], results[claim_id].verdict.counterexample.size
    assert all(explicit_holds(claim, n) for n in range(claim.min_size, size))


@pytest.mark.parametrize("claim_id", REFUTED_IDS)
def test_refuted_claim_fails_explicitly_at_its_counterexample_size(results, claim_id):
    claim, size = CLAIMS[claim_id], results[claim_id].verdict.counterexample.size
    assert not explicit_holds(claim, size)


def test_unnormalized_sum_symbolic_residual_is_one_minus_n_times_the_step(results):
    from derive.claims.centering import N, db
    residual = results["centering.unnormalized-sum"].verdict.residual
    assert sp.expand(residual - (1 - N) * db) == 0


# -- soundness: deliberately false claims are never proved -------------------------------------

B = Batch("N")
N = B.size
u, x = B.samples("u"), B.samples("x")
i, k = B.index("i"), B.index("k")
b, db = B.params("b", "db")


def xhat(bias):
    return B.center(u[i] + bias, i)


FALSE_CLAIMS = [
    Claim("false.double-mean", "centering with 2/N", B,
          (Equation(u[i] + b + db - 2 * B.mean(u[i] + b + db, i),
                    u[i] + b - 2 * B.mean(u[i] + b, i)),)),
    Claim("false.held-derivative-zero", "held derivative claimed 0", B,
          (Equation(Grad(held(xhat(b)), b), sp.S.Zero),)),
    Claim("false.jacobian-sign", "Jacobian with the wrong off-diagonal sign", B,
          (Equation(Grad(B.center(x[i], i), x[k]), sp.KroneckerDelta(i, k) + 1 / N),)),
    Claim("false.through-derivative-one", "through derivative claimed 1", B,
          (Equation(Grad(xhat(b), b), sp.S.One),)),
    Claim("false.square-of-mean", "square of the mean is the mean of squares", B,
          (Equation(B.mean(x[i], i) ** 2, B.mean(x[i] ** 2, i)),)),
]


@pytest.fixture(scope="module")
def false_results():
    return {c.id: check(c, FAST) for c in FALSE_CLAIMS}


@pytest.mark.parametrize("claim_id", [c.id for c in FALSE_CLAIMS])
def test_false_claim_is_never_proved(false_results, claim_id):
    assert false_results[claim_id].verdict.status != PROVED


@pytest.mark.parametrize("claim_id", [c.id for c in FALSE_CLAIMS])
def test_false_claim_is_refuted(false_results, claim_id):
    assert false_results[claim_id].verdict.status == REFUTED


@pytest.mark.parametrize("claim_id", [c.id for c in FALSE_CLAIMS])
def test_false_claim_counterexample_residual_is_nonzero(false_results, claim_id):
    assert false_results[claim_id].verdict.counterexample.residual != 0


def test_mean_of_squares_claim_holds_at_n_1_and_fails_first_at_n_2(false_results):
    assert false_results["false.square-of-mean"].verdict.counterexample.size == 2


# -- undecided: no proof and no counterexample --------------------------------------------------

def test_a_search_capped_below_the_failure_goes_where_the_residual_points():
    # the residual -Delta b (N - 1) vanishes at N = 1 only: a search capped at 1 goes on to 2
    result = check(CLAIMS["centering.unnormalized-sum"],
                   Settings(random_instances=30, hypothesis_examples=20,
                            counterexample_max_size=1))
    assert (result.verdict.status, result.verdict.counterexample.size) == (REFUTED, 2)
    assert "smallest failing batch size" in result.verdict.reason


def test_false_claim_vanishing_on_every_search_value_is_undecided():
    # the polynomial vanishes on the whole search pool {0, +-1, +-2, 1/2, 3}, nowhere else
    pool_roots = b * (b - 1) * (b + 1) * (b - 2) * (b + 2) * (2 * b - 1) * (b - 3)
    claim = Claim("false.vanishes-on-pool", "zero on the pool", B,
                  (Equation(pool_roots * B.mean(u[i], i) ** 0, sp.S.Zero),))
    assert check(claim, FAST).verdict.status == UNDECIDED


def test_true_identity_outside_the_rules_is_undecided_not_refuted():
    # sqrt(b^2 + 2b + 1) = |b + 1| for real b; the rules treat the root as an atom
    claim = Claim("true.root-of-square", "sqrt((b+1)^2) = |b+1|", B,
                  (Equation(sp.sqrt(b ** 2 + 2 * b + 1) + B.mean(u[i], i),
                            sp.Abs(b + 1) + B.mean(u[i], i)),))
    assert check(claim, FAST).verdict.status == UNDECIDED


# -- the time budget ---------------------------------------------------------------------------

def ticking():
    """A clock that advances by 1 ms each time it is read: the 1e-6 s budget of the symbolic
    proof runs out at its first safe point on every machine, however fast, while the other
    layers' budgets (seconds: thousands of readings) are not reached."""
    readings = itertools.count()
    return lambda: next(readings) * 1e-3


@pytest.fixture(scope="module")
def out_of_time():
    with deadline.using_clock(ticking()):
        return check(CLAIMS["centering.update-cancels"],
                     Settings(budget=1e-6, random_instances=30, hypothesis_examples=20,
                              counterexample_max_size=2))


def test_tiny_time_budget_gives_undecided(out_of_time):
    assert out_of_time.verdict.status == UNDECIDED


def test_tiny_time_budget_names_the_budget_in_the_reason(out_of_time):
    assert "time budget" in out_of_time.verdict.reason


@pytest.mark.parametrize("claim_id", PROVED_IDS)
def test_tiny_time_budget_never_proves(claim_id):
    with deadline.using_clock(ticking()):
        result = check(CLAIMS[claim_id],
                       Settings(budget=1e-6, random_instances=5, hypothesis_examples=5,
                                counterexample_max_size=2))
    assert result.verdict.status != PROVED
    assert "time budget" in result.evidence[0].summary   # it was the budget that stopped it


# -- what the tool cannot do ---------------------------------------------------------------------

def test_claim_no_layer_can_evaluate_is_undecided():
    # a derivative by the batch size: the explicit and numeric layers cannot take it
    claim = Claim("unsupported.d-by-n", "derivative by the batch size", B,
                  (Equation(Grad(B.sum(b, i), N), b),))
    assert check(claim, FAST).verdict.status == UNDECIDED
