"""Corroborations a claim declares: run generically, for that claim only, and keyed faithfully.

The generic layers (verify, frameworks, simulation, the kernel, the renderers) know no claim by
its id: each topic attaches its own evidence to its claims (``Claim.corroborations``).
"""

from __future__ import annotations

import pickle
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from derive import cache, frameworks, simulation
from derive.claims import all_claims, batchnorm, centering
from derive.core import PROVED, UNDECIDED, Claim, Evidence
from derive.corroboration import Corroboration
from derive.verify import Settings, check, corroborating_layers

ROOT = Path(__file__).resolve().parents[1]
CLAIMS = {c.id: c for c in all_claims()}
QUICK = Settings(frameworks=(), explicit_sizes=(1, 2, 3), random_instances=20,
                 hypothesis_examples=10, counterexample_max_size=3)


# module-level functions of a test: foreign to the derive package (they are not in the source
# hash), so a claim using one runs but is never cached

def holding(claim) -> Evidence:
    return Evidence("probe", False, f"{claim.id}: holds", {"calls": 1}, 0.0, holds=True)


def failing(claim) -> Evidence:
    return Evidence("simulation", False, "the run leaves the closed form", {}, 0.0, holds=False)


def broken(claim) -> Evidence:
    raise RuntimeError("no such run")


def passed_dict(claim) -> dict:
    return {"passed": True, "runs": 3}


def failed_dict(claim) -> dict:
    return {"passed": False, "runs": 3}


def failure_text(result) -> str:
    return f"the probe failed after {result['runs']} runs"


def note_text(result) -> str:
    return f"; the probe passed {result['runs']} runs"


def plain(claim_id: str) -> Claim:
    return replace(CLAIMS[claim_id], corroborations=())


# -- a claim gets the evidence it declares, and only that ------------------------------------

def test_a_declared_corroboration_becomes_a_layer_of_its_own():
    claim = replace(plain("centering.update-cancels"),
                    corroborations=(Corroboration("probe", holding),))
    [ev] = corroborating_layers(claim, Settings(frameworks=()))
    assert (ev.kind, ev.holds, ev.summary) == ("probe", True, "centering.update-cancels: holds")


def test_without_a_corroboration_a_claim_gets_none():
    assert corroborating_layers(plain("centering.update-cancels"), Settings(frameworks=())) == []
    assert corroborating_layers(plain("centering.drift"), Settings(frameworks=())) == []


def test_layers_come_in_the_claims_order():
    claim = replace(plain("centering.update-cancels"),
                    corroborations=(Corroboration("probe", holding),
                                    Corroboration("simulation", failing)))
    assert [e.kind for e in corroborating_layers(claim, Settings(frameworks=()))] == \
        ["probe", "simulation"]


def test_the_simulation_switch_turns_off_only_simulations():
    claim = replace(plain("centering.update-cancels"),
                    corroborations=(Corroboration("probe", holding),
                                    Corroboration("simulation", failing)))
    found = corroborating_layers(claim, Settings(frameworks=(), simulation=False))
    assert [e.kind for e in found] == ["probe"]


def test_a_corroboration_that_cannot_run_says_so_and_supports_nothing():
    claim = replace(plain("centering.update-cancels"),
                    corroborations=(Corroboration("probe", broken),))
    [ev] = corroborating_layers(claim, Settings(frameworks=()))
    assert ev.holds is None and "no such run" in ev.summary


def test_the_topics_declare_the_simulations_and_the_kernel_checks():
    declared = {cid: [(c.kind, c.key) for c in claim.corroborations]
                for cid, claim in CLAIMS.items() if claim.corroborations}
    assert declared == {
        "centering.drift": [("simulation", None)],
        "train.weight-norm-growth": [("simulation", None)],
        "train.naive-scale-step": [("simulation", None)],
        "bn.backward.compact": [("torch", "gradcheck"), ("torch", "implementation")],
        "bn.double-backward.input": [("torch", "gradgradcheck"), ("torch", "double-backward")],
    }


def test_simulation_layer_runs_what_the_claim_declares():
    claim = replace(plain("centering.update-cancels"),
                    corroborations=(Corroboration("simulation", simulation.norm_growth_evidence),))
    assert simulation.applies(claim) and not simulation.applies(plain("centering.drift"))
    assert simulation.layer(claim).summary == simulation.norm_growth_evidence().summary
    with pytest.raises(ValueError, match="declares no simulation"):
        simulation.layer(plain("centering.drift"))


def test_a_corroboration_is_checked_when_declared():
    with pytest.raises(ValueError, match="run must be a function"):
        Corroboration("probe", None)
    with pytest.raises(ValueError, match="evidence kind"):
        Corroboration("", holding)
    with pytest.raises(ValueError, match="tuple of Corroboration"):
        replace(plain("centering.drift"), corroborations=(holding,))


# -- a failing corroboration keeps a proof from being accepted --------------------------------

def test_a_failing_corroboration_makes_a_proof_undecided():
    claim = plain("centering.update-cancels")
    assert check(claim, QUICK).verdict.status == PROVED
    result = check(replace(claim, corroborations=(Corroboration("simulation", failing),)), QUICK)
    assert result.verdict.status == UNDECIDED
    assert "contradicted: simulation: the run leaves the closed form" in result.verdict.reason
    assert [e.kind for e in result.evidence][-1] == "simulation"


def test_a_holding_corroboration_leaves_the_proof_and_is_shown():
    claim = replace(plain("centering.update-cancels"),
                    corroborations=(Corroboration("probe", holding),))
    result = check(claim, QUICK)
    assert result.verdict.status == PROVED
    probe = next(e for e in result.evidence if e.kind == "probe")
    assert probe.ok and probe.details == {"calls": 1}


# -- attached to a framework's layer ---------------------------------------------------------

def _torch_layer(corroborations):
    pytest.importorskip("torch", reason="torch is not installed")
    claim = replace(plain("centering.naive-gradient"), corroborations=corroborations)
    return frameworks.layers(claim, ("torch",), Settings(framework_examples=5))[0]


def test_an_attached_corroboration_goes_into_the_framework_layers_details():
    ev = _torch_layer((Corroboration("torch", passed_dict, key="probe", note=note_text),))
    assert ev.holds is True and ev.details["probe"] == {"passed": True, "runs": 3}
    assert ev.summary.endswith("; the probe passed 3 runs")


def test_a_failing_attached_corroboration_fails_the_framework_layer():
    ev = _torch_layer((Corroboration("torch", failed_dict, key="probe", failure=failure_text),))
    assert ev.holds is False and ev.summary == "the probe failed after 3 runs"


def test_an_attached_corroboration_stays_out_of_other_layers():
    ev = _torch_layer((Corroboration("jax", failed_dict, key="probe"),))
    assert ev.holds is True and "probe" not in ev.details
    claim = replace(plain("centering.update-cancels"),
                    corroborations=(Corroboration("torch", failed_dict, key="probe"),))
    assert corroborating_layers(claim, Settings(frameworks=())) == []


# -- generic modules know no claim -------------------------------------------------------------

GENERIC = sorted([*ROOT.glob("derive/*.py"), *ROOT.glob("derive/frameworks/*.py"),
                  *ROOT.glob("derive/render/*.py")])


def mentions(path: Path, ids) -> list[str]:
    text = path.read_text()
    return [i for i in ids if re.search(r"(?<![\w.-])" + re.escape(i) + r"(?![\w-])", text)]


def test_no_generic_module_names_a_claim():
    ids = sorted(CLAIMS)
    found = {p.relative_to(ROOT).as_posix(): mentions(p, ids) for p in GENERIC}
    assert {p: m for p, m in found.items() if m} == {}


def test_the_id_scan_finds_ids_where_they_are():
    ids = sorted(CLAIMS)
    assert "centering.drift" in mentions(ROOT / "derive/claims/centering.py", ids)
    assert "bn.backward.compact" in mentions(ROOT / "derive/claims/batchnorm.py", ids)
    assert GENERIC and all(p.parent.name != "claims" for p in GENERIC)


def test_the_frameworks_do_not_import_the_claims():
    code = ("import sys, derive.frameworks.kernel, derive.simulation, derive.verify; "
            "print(sorted(m for m in sys.modules if m.startswith('derive.claims')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    assert out.strip() == "[]"


# -- the cache key, and the worker processes ---------------------------------------------------

def test_the_key_names_each_corroboration_by_its_qualified_name():
    text, _ = cache.claim_material(CLAIMS["bn.backward.compact"])
    assert "function:derive.claims.batchnorm.kernel_gradcheck" in text
    assert "function:derive.frameworks.kernel.gradcheck_note" in text


def test_the_key_changes_with_the_corroboration():
    drift = CLAIMS["centering.drift"]
    keys = {cache.claim_material(c)[0] for c in (
        drift,
        replace(drift, corroborations=()),
        replace(drift, corroborations=(Corroboration("simulation",
                                                     simulation.norm_growth_evidence),)),
        replace(drift, corroborations=(Corroboration("other", simulation.drift_evidence),)),
        replace(drift, corroborations=(Corroboration("torch", simulation.drift_evidence,
                                                     key="run"),)),
    )}
    assert len(keys) == 5
    assert cache.claim_material(drift)[0] == cache.claim_material(CLAIMS["centering.drift"])[0]


@pytest.mark.parametrize("fn", [holding, lambda claim: None, pickle.dumps],
                         ids=["foreign function", "lambda", "builtin"])
def test_a_function_from_outside_derive_is_uncacheable(fn):
    claim = replace(plain("centering.drift"), corroborations=(Corroboration("probe", fn),))
    with pytest.raises(cache.Uncacheable, match="the claim uses"):
        cache.claim_material(claim)
    assert cache.Cache.key(claim, QUICK) is None


def test_a_function_that_only_looks_like_derives_is_uncacheable():
    def impostor(claim):
        return simulation.drift_evidence(claim)
    impostor.__module__, impostor.__qualname__ = "derive.simulation", "drift_evidence"
    claim = replace(plain("centering.drift"), corroborations=(Corroboration("probe", impostor),))
    with pytest.raises(cache.Uncacheable):
        cache.claim_material(claim)


def test_claims_with_corroborations_pickle_to_workers():
    for claim in (c for c in CLAIMS.values() if c.corroborations):
        again = pickle.loads(pickle.dumps(claim))
        assert again.corroborations == claim.corroborations
        assert all(a.run is b.run for a, b in zip(again.corroborations, claim.corroborations))


def test_the_kernel_formulas_come_from_the_topic():
    from derive.frameworks import kernel
    formulas = batchnorm.kernel_formulas()
    assert [c.id for c in formulas.claims] == \
        ["bn.backward.compact", "bn.backward.dl-dgamma", "bn.backward.dl-dbeta"]
    assert kernel.default_formulas().claims == formulas.claims
    assert centering.claims()   # the other topic declares nothing for the kernel
