"""The autograd layers: PyTorch and JAX compute what the formulas say, and catch what they
do not.  Each test runs once per framework and is skipped, with the reason, when that
framework is not installed (``pip install 'derive[torch]'`` / ``'derive[jax]'``)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import sympy as sp

from derive import Claim, Equation, Grad, frameworks, held
from derive.claims import batchnorm as bn
from derive.claims import centering as ce
from derive.frameworks.program import Program, standardization
from derive.verify import Settings, corroborating_layers

from conftest import rejected_at_first_failure
from test_mutants import MUTANTS

SETTINGS = Settings(framework_examples=30)


@pytest.fixture(params=frameworks.FRAMEWORKS)
def xp(request):
    pytest.importorskip(request.param, reason=f"{request.param} is not installed: "
                                              f"{frameworks.INSTALL[request.param]}")
    return frameworks.backend(request.param)


def evaluate(xp, expr, samples, params=None, indices=()):
    """``expr`` on one concrete batch, by the framework, as a NumPy array."""
    size = len(next(iter(samples.values())))
    run = xp.runner([Program(expr, list(indices), bn.m, xp)])
    value = run(size, {b: np.asarray(v, dtype=float) for b, v in samples.items()},
                params or {})[0]
    return np.asarray(value)[tuple(slice(0, size) for _ in indices)].squeeze()


# -- the naive gradient is what a framework computes with the statistic detached --------------

def test_naive_gradient_is_the_detached_statistic(xp):
    """With E[x] held, dL/db = sum g; through it, 0 -- the framework agrees on both."""
    u, g, b, i, N = ce.u, ce.g, ce.b, ce.i, ce.N
    x = u[i] + b
    xhat = x - ce.B.mean(x, i)
    batch = {u: [0.5, -1.0, 2.0, 0.25], g: [1.0, 2.0, -0.5, 3.0]}
    naive = Grad(ce.B.sum(g[i] * held(xhat), i), b)
    full = Grad(ce.B.sum(g[i] * xhat, i), b)
    run = xp.runner([Program(e, [], N, xp) for e in (naive, full)])
    got = run(4, {k: np.asarray(v) for k, v in batch.items()}, {b: 0.7})
    assert float(got[0].squeeze()) == pytest.approx(5.5, abs=1e-12)   # sum g
    assert float(got[1].squeeze()) == pytest.approx(0.0, abs=1e-12)


def test_a_derivative_by_a_sample_fills_the_gradient_row(xp):
    """Grad(L, x[k]) with k free: the whole gradient, one entry per k."""
    x, g, k, i = bn.x, bn.g, bn.k, bn.i
    values = {x: [1.0, -2.0, 0.5], g: [0.3, 0.1, -1.0]}
    got = evaluate(xp, Grad(bn.total(g[i] * x[i] ** 3), x[k]), values, indices=[k])
    assert got == pytest.approx(3 * np.array(values[x]) ** 2 * np.array(values[g]), abs=1e-12)


def test_the_jacobian_of_the_centering_is_the_centering_matrix(xp):
    x, i, k = ce.x, ce.i, ce.k
    got = evaluate(xp, Grad(ce.B.center(x[i], i), x[k]), {x: [1.0, 4.0, -2.0]}, indices=[i, k])
    assert got == pytest.approx(np.eye(3) - 1 / 3, abs=1e-12)


def test_a_node_derivative_is_taken_at_the_nodes_value(xp):
    """Grad(f(VAR), VAR, at=var): the derivative by the node, evaluated at sigma^2."""
    values = {bn.x: [1.0, 2.0, 4.0], bn.g: [1.0, -1.0, 0.5]}
    params = {bn.gamma: 1.5, bn.beta: 0.2, bn.eps: 0.1}
    lhs = evaluate(xp, Grad(bn.loss_at_var, bn.VAR, at=bn.var), values, params)
    rhs = evaluate(xp, bn.dl_dvar, values, params)
    assert float(lhs) == pytest.approx(float(rhs), rel=1e-12)
    assert abs(float(lhs)) > 1e-3   # not trivially zero


# -- the framework's own operator --------------------------------------------------------------

def test_the_standardization_is_recognized_wherever_it_occurs():
    found = standardization(bn.xhat)
    assert found is not None and found[0] == bn.x[bn.i] and found[2] == bn.eps
    inner = bn.loss.args[0].args[0]          # g_j (gamma xhat_j + beta) inside the sum
    assert any(standardization(t) for t in sp.preorder_traversal(inner))
    assert standardization(bn.normalize(bn.x[bn.i], 0))[2] == 0
    # a held mean is not the operator's computation
    assert standardization(held(bn.xhat)) is None
    assert standardization((bn.x[bn.i] - bn.mu) / sp.sqrt(bn.var + 1 + bn.x[bn.i])) is None


def test_the_operator_computes_the_same_values(xp):
    values = {bn.x: [0.3, -1.2, 2.5, 0.0, 1.0]}
    params = {bn.eps: 1e-3}
    by_formula = evaluate(xp, bn.xhat, values, params, indices=[bn.i])
    run = xp.runner([Program(bn.xhat, [bn.i], bn.m, xp, operators=True)])
    by_operator = np.asarray(run(5, {bn.x: np.asarray(values[bn.x])}, params)[0])[:5].squeeze()
    assert by_operator == pytest.approx(by_formula, abs=1e-12)
    x = np.asarray(values[bn.x])
    assert by_formula == pytest.approx((x - x.mean()) / np.sqrt(x.var() + 1e-3), abs=1e-12)


# -- the layer ---------------------------------------------------------------------------------

@pytest.mark.parametrize("cid", ["bn.backward.compact", "bn.jacobian", "centering.naive-gradient",
                                 "bn.scale.weight-gradient", "bn.backward.dl-dmu"])
def test_proved_gradient_claims_pass(xp, cid):
    claim = {c.id: c for c in bn.claims() + ce.claims()}[cid]
    ev = frameworks.layer(claim, xp.name, SETTINGS)
    assert ev.holds is True, ev.summary
    d = ev.details
    assert d["dtype"] == "float64" and d["tolerance"] == frameworks.TOLERANCE["float64"]
    assert d["instances"] >= 20 and d["max_error"] <= d["tolerance"]
    assert d["sizes"] == [claim.min_size, 64]


def test_the_operator_is_used_for_the_batchnorm_backward(xp):
    claim = {c.id: c for c in bn.claims()}["bn.backward.dl-dx"]
    d = frameworks.layer(claim, xp.name, SETTINGS).details
    assert d["operator"]["name"] == xp.operator and d["operator"]["instances"] >= 20


def test_a_wrong_claim_is_caught_with_both_values(xp):
    claim = {c.id: c for c in bn.claims()}["bn.gradient-orthogonal-to-xhat"]
    ev = frameworks.layer(claim, xp.name, SETTINGS)
    assert ev.holds is False
    failure = ev.details["failure"]
    assert failure["error"] > frameworks.TOLERANCE["float64"]
    assert abs(failure["left"] - failure["right"]) > 1e-6
    assert f"left = {failure['left']:.6g}" in ev.summary


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_every_mutant_is_rejected(xp, name):
    lhs, rhs = MUTANTS[name]
    min_size = 2 if name == "compact.unbiased-variance" else 1
    claim = Claim(f"mutant.{name}", name, bn.B, (Equation(lhs, rhs),), min_size=min_size)
    # the shrunk failure is test_a_wrong_claim_is_caught_with_both_values's
    assert rejected_at_first_failure(claim, xp.name, SETTINGS), name


def test_no_framework_no_evidence(monkeypatch):
    monkeypatch.setattr(frameworks, "backend", lambda name: None)
    claim = {c.id: c for c in bn.claims()}["bn.backward.dl-dbeta"]
    assert corroborating_layers(claim, SETTINGS) == []
    assert corroborating_layers(claim, Settings(frameworks=())) == []


def test_claims_without_a_derivative_are_not_framework_claims():
    by_id = {c.id: c for c in bn.claims() + ce.claims()}
    assert not frameworks.applies(by_id["bn.shift-invariance"])
    assert frameworks.applies(by_id["bn.backward.compact"])


# -- the verified kernel -----------------------------------------------------------------------

def test_gradcheck_passes_on_the_verified_kernel():
    pytest.importorskip("torch", reason=f"torch is not installed: {frameworks.INSTALL['torch']}")
    from derive.frameworks import kernel
    report = kernel.gradcheck()
    assert report["passed"] and report["runs"] == len(kernel.SIZES) * len(kernel.EPSILONS)


def test_gradcheck_rejects_a_kernel_built_from_a_wrong_formula():
    pytest.importorskip("torch", reason=f"torch is not installed: {frameworks.INSTALL['torch']}")
    from derive.frameworks import kernel
    lhs, rhs = MUTANTS["compact.no-gamma"]
    wrong = Claim("mutant", "mutant", bn.B, (Equation(lhs, rhs),))
    assert not kernel.gradcheck(wrong)["passed"]


def test_the_kernel_is_the_formula_not_a_copy_of_autograd():
    torch = pytest.importorskip("torch", reason="torch is not installed")
    from derive.frameworks import kernel
    fn = kernel.verified_batch_norm()
    x = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64, requires_grad=True)
    gamma = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    beta = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
    g = torch.tensor([1.0, 0.0, -2.0], dtype=torch.float64)
    fn.apply(x, gamma, beta, 1e-5).backward(g)
    assert torch.allclose(beta.grad, g.sum()) and x.grad.abs().sum() > 0
    assert float(x.grad.sum()) == pytest.approx(0.0, abs=1e-12)   # sums to zero


def test_both_frameworks_see_the_same_instances():
    for name in frameworks.FRAMEWORKS:
        pytest.importorskip(name, reason=f"{name} is not installed")
    by_id = {c.id: c for c in bn.claims()}
    good = frameworks.layers(by_id["bn.backward.dl-dx"], frameworks.FRAMEWORKS, SETTINGS)
    assert [e.kind for e in good] == list(frameworks.FRAMEWORKS)
    assert all(e.holds for e in good)
    assert len({e.details["instances"] for e in good}) == 1
    bad = frameworks.layers(by_id["bn.gradient-orthogonal-to-xhat"], frameworks.FRAMEWORKS,
                            SETTINGS)
    assert [e.holds for e in bad] == [False, False]
    assert bad[0].details["failure"]["instance"] == bad[1].details["failure"]["instance"]


def test_the_entry_shown_does_not_hang_on_a_last_bit():
    # LayerNorm over two channels: the two entries are +g and -g exactly, and round-off picks
    # which of them is a bit larger; the report must show the same one on every machine
    from derive.frameworks import _error
    right = np.zeros(2)
    for bigger in (0, 1):
        left = np.array([2.25, -2.25])
        left[bigger] *= 1 + 2 ** -52
        worst, shown, _ = _error([(left, right)])
        assert shown == left[0] and worst == max(abs(left)) / (1 + max(abs(left)))
    # a clearly worse entry later on is the one shown
    worst, shown, _ = _error([(np.array([1.0]), np.zeros(1)), (np.array([0.5, 3.0]),
                                                                np.zeros(2))])
    assert shown == 3.0 and worst == 0.75


# -- JAX's compile options: a speed-up that must never cost a result -------------------------

def _centering_jacobian(xp):
    """d(x[i] - mean x)/dx[k] at (1, 4, -2): the centering matrix I - 1/3."""
    x, i, k = ce.x, ce.i, ce.k
    return evaluate(xp, Grad(ce.B.center(x[i], i), x[k]), {x: [1.0, 4.0, -2.0]}, indices=[i, k])


def test_jax_compiles_with_each_option_the_users_xla_flags_do_not_name(monkeypatch):
    pytest.importorskip("jax", reason=f"jax is not installed: {frameworks.INSTALL['jax']}")
    from derive.frameworks.backends import XLA_DEFAULT_FLAGS, XLA_DEFAULT_OPTIONS, JaxBackend
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    assert JaxBackend().compile_options == XLA_DEFAULT_OPTIONS
    monkeypatch.setenv("XLA_FLAGS", XLA_DEFAULT_FLAGS)
    assert JaxBackend().compile_options == XLA_DEFAULT_OPTIONS
    monkeypatch.setenv("XLA_FLAGS", "--xla_backend_optimization_level=3")
    assert JaxBackend().compile_options == XLA_DEFAULT_OPTIONS
    for named in ("--xla_cpu_use_fusion_emitters=true", "--xla_cpu_use_fusion_emitters",
                  "--xla_backend_optimization_level=3 --xla_cpu_use_fusion_emitters=false"):
        monkeypatch.setenv("XLA_FLAGS", named)
        assert JaxBackend().compile_options == {}, named     # the user's choice wins
    # a flag whose name only begins like an option's is not that option
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_use_fusion_emitters_for_everything=true")
    assert JaxBackend().compile_options == XLA_DEFAULT_OPTIONS


def test_a_compile_option_xla_refuses_is_dropped_and_the_value_is_still_computed(monkeypatch):
    pytest.importorskip("jax", reason=f"jax is not installed: {frameworks.INSTALL['jax']}")
    from derive.frameworks.backends import JaxBackend
    monkeypatch.setenv("XLA_FLAGS", frameworks.backends.XLA_DEFAULT_FLAGS)
    xp = JaxBackend()
    xp.compile_options = {"xla_no_such_option_anywhere": True}
    assert _centering_jacobian(xp) == pytest.approx(np.eye(3) - 1 / 3, abs=1e-12)
    assert xp.compile_options == {}   # ... and every later program compiles without it
    assert _centering_jacobian(xp) == pytest.approx(np.eye(3) - 1 / 3, abs=1e-12)


def test_the_version_recorded_is_a_plain_string(xp):
    # a framework's own version type (torch's TorchVersion) in the evidence would make every
    # pickled result -- the cache's, a framework peer's -- import the framework to be read
    assert type(xp.version) is str and xp.version
    assert type(pickle.loads(pickle.dumps(xp.version))) is str
