"""Section F of the catalog: BN's double backward, as claims and as a real PyTorch kernel.

The five claims reach the catalog's verdicts with every layer (the frameworks where
installed); the Hessian formula, run as a kernel's double backward, passes
torch.autograd.gradgradcheck and agrees with batch_norm's own double backward, while the
refuted formula and injected faults (a flipped sign, a Jacobian without its rank-one term)
are caught by the same checks."""

from __future__ import annotations

from dataclasses import replace

import pytest
import sympy as sp

from derive.claims import bn_second_order as so
from derive.core import PROVED, REFUTED, Claim, Equation
from derive.frameworks import double_backward as db
from derive.recheck import confirm

CLAIMS = {c.id: c for c in so.claims()}
EXPECTED = {
    "bn.double-backward.input": PROVED,
    "bn.double-backward.grad-output": PROVED,
    "bn.hessian-symmetric": PROVED,
    "bn.hessian-rows-sum-to-zero": PROVED,
    "bn.double-backward.wrong-coefficient": REFUTED,
}


def test_the_catalog_ids_and_expected_verdicts():
    assert list(CLAIMS) == list(EXPECTED)
    assert {i: c.expected for i, c in CLAIMS.items()} == EXPECTED


@pytest.fixture(scope="module")
def reported(elsewhere):
    """{id: result} of the normalization report, which checks every section-F claim with
    torch and jax (conftest.Elsewhere: once per test run)."""
    return elsewhere.build("normalization", ("json",))[1]


@pytest.mark.parametrize("claim_id", list(EXPECTED))
def test_a_section_f_claim_reaches_its_verdict(claim_id, reported):
    claim = CLAIMS[claim_id]
    result = reported[claim_id]
    assert result.claim == claim and {"torch", "jax"} <= {e.kind for e in result.evidence}
    assert result.verdict.status == EXPECTED[claim_id], result.verdict.reason
    assert all(e.ok for e in result.evidence), [e.summary for e in result.evidence]
    if EXPECTED[claim_id] == REFUTED:
        assert confirm(claim, result.verdict.counterexample).confirmed is True
    torch = next((e for e in result.evidence if e.kind == "torch"), None)
    if claim_id == "bn.double-backward.input" and torch is not None:
        # the kernel checks ran inside the torch layer, and passed
        assert torch.details["gradgradcheck"]["passed"] is True
        assert torch.details["double-backward"]["passed"] is True
        assert "gradgradcheck pass" in torch.summary


def test_the_mutant_differs_by_two_of_the_three_terms():
    """The refuted formula is off by exactly 2 gamma xhat_j xhat_k H / (m^2 s^2)."""
    gap = so.hessian() - so.hessian(coefficient=1)
    expected = 2 * so.gamma * so.xhat(so.j) * so.xhat(so.k) * so.H / (so.m ** 2 * so.s ** 2)
    assert sp.expand(gap - expected) == 0


# -- the kernel --------------------------------------------------------------------------------

def _formulas(**changes):
    return replace(so.kernel_formulas(), **changes)


def _claim(name, rhs, lhs=so.HESSIAN):
    return Claim("mutant." + name, name, so.B, (Equation(lhs, rhs),))


def test_gradgradcheck_passes_on_the_verified_kernel():
    pytest.importorskip("torch")
    checked = db.gradgradcheck(so.kernel_formulas())
    assert checked["passed"] is True and checked["failed"] == []
    assert checked["runs"] == 2 * len(db.SIZES) * len(db.EPSILONS)
    assert "gradgradcheck pass" in db.gradgradcheck_note(checked)


def test_gradgradcheck_fails_on_the_refuted_formula():
    pytest.importorskip("torch")
    wrong = CLAIMS["bn.double-backward.wrong-coefficient"]
    checked = db.gradgradcheck(so.kernel_formulas(wrong))
    assert checked["passed"] is False
    # the first-order check still passes: only the double backward is wrong
    assert {f["check"] for f in checked["failed"]} == {"gradgradcheck"}
    assert "gradgradcheck fails" in db.gradgradcheck_failure(checked)


def test_the_kernel_agrees_with_batch_norms_double_backward():
    pytest.importorskip("torch")
    compared = db.agrees_with_framework(so.kernel_formulas())
    assert compared["passed"] is True
    bounds = {r["dtype"]: r["max_error_below"] for r in compared["rows"]}
    assert bounds == {"float32": 1e-5, "float64": 1e-12}   # at their floors: byte-stable
    assert "float64 < 1e-12" in db.framework_note(compared)


@pytest.mark.parametrize("fault", ["sign flipped", "coefficient dropped", "jacobian rank one"])
def test_an_injected_fault_in_the_double_backward_is_caught(fault):
    pytest.importorskip("torch")
    if fault == "sign flipped":
        formulas = _formulas(second_input=_claim("sign", -so.hessian()))
    elif fault == "coefficient dropped":
        formulas = _formulas(second_input=_claim("no-three", so.hessian(coefficient=0)))
    else:   # the Jacobian without its xhat_j xhat_k / m term
        jac = so.gamma / so.s * (so.delta - 1 / so.m)
        formulas = _formulas(second_grad_output=_claim("jacobian", jac, so.JACOBIAN))
    checked = db.gradgradcheck(formulas)
    assert checked["passed"] is False
    compared = db.agrees_with_framework(formulas)
    assert compared["passed"] is False
    assert "disagrees with" in db.framework_failure(compared)


def test_the_kernel_takes_fixed_numbers_for_gamma_and_beta():
    torch = pytest.importorskip("torch")
    layer = db.kernel(so.kernel_formulas())
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(6, dtype=torch.float64, generator=generator, requires_grad=True)
    grad_y = torch.randn(6, dtype=torch.float64, generator=generator, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda a: layer.apply(a, 1.5, -0.25, 1e-3), (x,),
                                        (grad_y,))
    y = layer.apply(x, 1.5, -0.25, 1e-3)
    reference = torch.nn.functional.batch_norm(x.reshape(6, 1), None, None, training=True,
                                               eps=1e-3).reshape(6) * 1.5 - 0.25
    assert torch.allclose(y, reference, atol=1e-12)
