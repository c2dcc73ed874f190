"""The torch and jax layers on the normalization family: a claim that names its operator
(``Claim.operator``) has each normalization computed by that framework operator -- layer_norm,
instance_norm, group_norm, rms_norm, weight_norm -- held against the two sides evaluated by
formula and against the formula itself, forward and backward.  Each test runs once per
framework and is skipped, with the reason, when that framework is not installed."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from derive import Axis, Claim, Equation, Grad
from derive import frameworks
from derive.axes import layout
from derive.core import OPERATORS
from derive.frameworks.program import (FORMS, Program, normalization, recognized,
                                       rms_normalization, standardization,
                                       weight_normalization)
from derive.verify import Settings

SETTINGS = Settings(framework_examples=30)


@pytest.fixture(params=frameworks.FRAMEWORKS)
def xp(request):
    pytest.importorskip(request.param, reason=f"{request.param} is not installed: "
                                              f"{frameworks.INSTALL[request.param]}")
    return frameworks.backend(request.param)


def check(claim, xp):
    return frameworks.layer(claim, xp.name, SETTINGS)


N, C, H, Q, K, J = (Axis(name) for name in "NCHQKJ")
x, a, b, g = N.samples("x"), N.samples("a"), N.samples("b"), N.samples("g")
r = N.samples("r", positive=True)          # a positive per-sample scale
v = J.samples("v")                         # weight normalization's direction
n, m = N.index("n"), N.index("m")
c, d = C.index("c"), C.index("d")
h, q, k, j = H.index("h"), Q.index("q"), K.index("k"), J.index("j")
eps = N.param("epsilon", positive=True)
alpha = N.param("alpha", positive=True)


def standardize(value, index, epsilon=eps):
    """``value`` centered and scaled over ``index``'s axis (BN, LN, IN, GN by the axis)."""
    axis = Axis(index.axis)
    mu = axis.mean(value, index)
    return (value - mu) / sp.sqrt(axis.mean((value - mu) ** 2, index) + epsilon)


def rms(value, index, epsilon):
    axis = Axis(index.axis)
    return value / sp.sqrt(axis.mean(value ** 2, index) + epsilon)


def weight_norm(value, index):
    axis = Axis(index.axis)
    return value / sp.sqrt(axis.sum(value ** 2, index))


def claim(cid, lhs, rhs, operator, batch=N, **kw):
    return Claim(f"family.{cid}", cid, batch, (Equation(lhs, rhs),), operator=operator, **kw)


# the true statements, one per operator: (claim, how many instances the operator may refuse)
TRUE = {
    "layer_norm": claim("ln.sample-bias", standardize(x[n, c] + a[n], c),
                        standardize(x[n, c], c), "layer_norm"),
    "group_norm": claim("gn.group-bias", standardize(x[n, q, k] + b[q], k),
                        standardize(x[n, q, k], k), "group_norm"),
    "instance_norm": claim("in.channel-bias", standardize(x[n, c, h] + b[c], h),
                           standardize(x[n, c, h], h), "instance_norm"),
    "rms_norm": claim("rms.sample-scale-eps0", rms(r[n] * x[n, c], c, 0), rms(x[n, c], c, 0),
                      "rms_norm", domain=(C.mean(x[n, c] ** 2, c),)),
    "weight_norm": claim("wn.scale", weight_norm(alpha * v[j], j), weight_norm(v[j], j),
                         "weight_norm", batch=J, domain=(J.sum(v[j] ** 2, j),)),
    "batch_norm": claim("bn.channel-bias", standardize(x[n, c] + b[c], n),
                        standardize(x[n, c], n), "batch_norm"),
}


# -- the claim's field -------------------------------------------------------------------------

def test_a_claim_names_an_operator_the_layers_know():
    assert set(OPERATORS) == set(FORMS)
    with pytest.raises(ValueError, match="not one the framework layers know"):
        claim("bad", x[n, c], x[n, c], "batchnorm")
    assert Claim("plain", "plain", N, (Equation(x[n, c], x[n, c]),)).operator is None


# -- recognizing each form ---------------------------------------------------------------------

def test_each_form_is_recognized_over_its_own_axis():
    ln = standardize(x[n, c] + a[n], c)
    found = normalization(ln, "layer_norm")
    assert found is not None and found[:4] == ("standardize", x[n, c] + a[n], c, eps)
    # the one-index recognizer the batch-norm operator has always used does not take x[n, c]
    assert standardization(ln) is None and standardization(ln, any_index=True) is not None
    value, index, epsilon, coefficient = rms_normalization(3 * rms(r[n] * x[n, c], c, eps))
    assert (value, index, epsilon, coefficient) == (r[n] * x[n, c], c, eps, 3)
    assert rms_normalization(rms(x[n, c], c, 0))[2] == 0
    assert weight_normalization(weight_norm(alpha * v[j], j))[:3] == (alpha * v[j], j, 0)
    # a standardization is the RMS scaling of the centered value (what rms_norm computes)
    assert rms_normalization(ln)[0] == x[n, c] + a[n] - C.mean(x[n, c] + a[n], c)
    # not the form: no centering is not a standardization, an epsilon is not weight norm,
    # a sum is not a mean
    assert normalization(rms(x[n, c], c, eps), "layer_norm") is None
    assert weight_normalization(rms(v[j], j, eps)) is None
    assert rms_normalization(weight_norm(v[j], j)) is None
    assert weight_normalization(x[n, c] / sp.sqrt(C.sum(x[n, d] ** 2, d) + x[n, c])) is None


def test_what_applies_without_a_derivative():
    assert all(frameworks.applies(cl) for cl in TRUE.values())
    plain = Claim("plain", "plain", N, (Equation(standardize(x[n, c], c), 0),))
    assert not frameworks.applies(plain)               # no operator named, no derivative
    wrong = claim("wrong-form", standardize(x[n, c], c), 0, "weight_norm")
    assert not frameworks.applies(wrong)               # no weight normalization in it
    assert not recognized(rms(x[n, c], c, eps), "layer_norm")
    assert frameworks.first_comparison(TRUE["layer_norm"]) == "formula"


# -- each operator, against NumPy --------------------------------------------------------------

def _numpy(operator, values, axis, epsilon):
    if operator == "rms_norm":
        return values / np.sqrt((values ** 2).mean(axis, keepdims=True) + epsilon)
    if operator == "weight_norm":
        return values / np.sqrt((values ** 2).sum(axis, keepdims=True))
    centered = values - values.mean(axis, keepdims=True)
    return centered / np.sqrt((centered ** 2).mean(axis, keepdims=True) + epsilon)


@pytest.mark.parametrize("operator", OPERATORS)
def test_each_operator_normalizes_along_one_axis(xp, operator):
    """Every array axis in turn, the others independent groups; epsilon 0 where the operator
    takes it."""
    values = np.random.default_rng(4).normal(size=(3, 4, 5))
    epsilon = 0.1 if operator == "batch_norm" else 0.0
    for axis in range(3):
        got = xp.standardize(xp.asarray(values), axis, epsilon, values.shape[axis],
                             values.shape[axis], None, operator=operator)
        assert np.asarray(got) == pytest.approx(_numpy(operator, values, axis, epsilon),
                                                abs=1e-12)


def test_the_operator_is_named_as_it_is_called(xp):
    names = {o: xp.operator_name(o) for o in OPERATORS}
    assert xp.operator_name(None) == xp.operator == names["batch_norm"]
    if xp.name == "torch":
        assert names["layer_norm"] == "torch.nn.functional.layer_norm"
        assert names["weight_norm"] == "torch.nn.utils.parametrizations.weight_norm"
    else:
        assert names["group_norm"] == "jax.nn.standardize"
        assert names["rms_norm"] == "jax.numpy (jax.nn has no RMSNorm)"


# -- the layer ---------------------------------------------------------------------------------

@pytest.mark.parametrize("operator", OPERATORS)
def test_a_true_statement_holds_by_the_operator(xp, operator):
    ev = check(TRUE[operator], xp)
    assert ev.holds is True, ev.summary
    name = xp.operator_name(operator)
    d = ev.details["operator"]
    assert d["name"] == name and d["instances"] > 0
    assert d["vs_formula"]["instances"] == d["instances"]
    assert d["vs_formula"]["max_error"] <= frameworks.TOLERANCE["float64"]
    assert "float64: formula max error" in ev.summary and f", {name} max error" in ev.summary
    assert "against the formula" in ev.summary
    assert "autograd" not in ev.summary and "formula" in ev.details


def test_the_operators_refusals_are_counted_and_said(xp):
    """InstanceNorm over one position: torch's operator refuses (training mode); jax's
    standardize does not."""
    ev = check(TRUE["instance_norm"], xp)
    refused = ev.details["operator"]["not_defined"]
    if xp.name == "torch":
        assert refused > 0 and "with one entry to normalize" in ev.summary
    else:
        assert refused == 0


def test_a_false_statement_is_rejected_by_the_operator(xp):
    """LN(x + b[c]) = LN(x) is false: b[c] varies along the channels LN averages over."""
    false = claim("ln.channel-bias", standardize(x[n, c] + b[c], c), standardize(x[n, c], c),
                  "layer_norm")
    ev = check(false, xp)
    assert ev.holds is False
    instance = ev.details["failure"]["instance"]
    assert f"disagrees: at N = {instance['N']}, C = {instance['C']} " in ev.summary
    assert instance["C"] >= 2
    # the operator computed the failing sides too, and agreed with the formula on them
    assert ev.details["operator"]["instances"] > 0
    assert ev.details["operator"]["vs_formula"]["max_error"] <= 1e-8


def test_the_layer_norm_backward_by_the_operator(xp):
    """dl/dx[m, d] of sum g LN(x) is (g - mean_c g - xhat mean_c(g xhat)) / s, backward
    through the framework's layer_norm; a slip in the formula is caught."""
    s = sp.sqrt(C.mean((x[m, c] - C.mean(x[m, c], c)) ** 2, c) + eps)
    xhat_d, xhat_c = standardize(x[m, d], d), standardize(x[m, c], c)
    lhs = Grad(N.sum(C.sum(g[n, c] * standardize(x[n, c], c), c), n), x[m, d])
    compact = (g[m, d] - C.mean(g[m, c], c) - xhat_d * C.mean(g[m, c] * xhat_c, c)) / s
    ev = check(claim("ln.backward", lhs, compact, "layer_norm"), xp)
    assert ev.holds is True, ev.summary
    assert "autograd max error" in ev.summary and xp.operator_name("layer_norm") in ev.summary
    assert ev.details["operator"]["instances"] > 0
    assert ev.details["operator"]["vs_formula"]["instances"] > 0
    slip = (g[m, d] - C.mean(g[m, c], c) - xhat_d * C.mean(g[m, c], c)) / s
    assert check(claim("ln.backward-slip", lhs, slip, "layer_norm"), xp).holds is False


def test_a_faulty_operator_fails_against_the_formula(xp, monkeypatch):
    """An operator off by 1e-3 shifts both sides alike, so the two sides still agree: only
    the comparison with the formula catches it."""
    original = xp.standardize

    def faulty(*args, operator=None, **kw):
        out = original(*args, operator=operator, **kw)
        return out + 1e-3 if operator == "layer_norm" else out
    monkeypatch.setattr(xp, "standardize", faulty)
    ev = check(TRUE["layer_norm"], xp)
    assert ev.holds is False
    assert ev.details["failure"]["comparison"] == "vs_formula"
    assert f"({xp.operator_name('layer_norm')} against the formula, float64)" in ev.summary
    assert "operator = " in ev.summary and "formula = " in ev.summary


def test_a_faulty_torch_layer_norm_is_caught(monkeypatch):
    """The torch path itself (F.layer_norm on the axis moved last), off by 1e-3."""
    pytest.importorskip("torch", reason="torch is not installed")
    xp = frameworks.backend("torch")
    original = type(xp)._layer_norm
    monkeypatch.setattr(xp, "_layer_norm", lambda *a: original(xp, *a) + 1e-3)
    ev = check(TRUE["layer_norm"], xp)
    assert ev.holds is False and ev.details["failure"]["comparison"] == "vs_formula"


def test_a_claim_that_names_no_operator_keeps_its_evidence(xp):
    """operator None: a standardization of x[n, c] is computed by formula only (as before),
    and no comparison with the formula is added."""
    lhs = Grad(N.sum(C.sum(g[n, c] * standardize(x[n, c] + b[c], n), c), n), b[d])
    ev = check(Claim("bias-bn", "bias before BN", N, (Equation(lhs, 0),)), xp)
    assert ev.holds is True and "autograd max error" in ev.summary
    assert "operator" not in ev.details
    named = check(Claim("bias-bn-op", "bias before BN", N, (Equation(lhs, 0),),
                        operator="batch_norm"), xp)
    assert named.holds is True
    assert named.details["operator"]["name"] == xp.operator
    assert named.details["operator"]["instances"] > 0


def test_the_operator_through_a_program(xp):
    """Program(..., operators="group_norm") counts the node it hands to the operator and
    computes what the formula does (N = 2, Q = 3, K = 4)."""
    expr = standardize(x[n, q, k] + b[q], k)
    program = Program(expr, [k, n, q], N.size, xp, operators="group_norm")
    formula = Program(expr, [k, n, q], N.size, xp)
    assert program.operator_nodes == 1 and formula.operator_nodes == 0
    rng = np.random.default_rng(5)
    samples = {x: rng.normal(size=(2, 3, 4)), b: rng.normal(size=3)}
    sizes = {N.size: 2, Q.size: 3, K.size: 4}
    run = xp.runner([program, formula], widths={a: 8 for a in sizes}, layout=layout(expr))
    by_operator, by_formula = (np.asarray(v)[:4, :2, :3].reshape(4, 2, 3)   # k, n, q
                               for v in run(2, samples, {eps: 0.5}, sizes))
    assert by_operator == pytest.approx(by_formula, abs=1e-12)
    want = _numpy("group_norm", samples[x] + samples[b][None, :, None], 2, 0.5)
    assert by_formula == pytest.approx(np.moveaxis(want, 2, 0), abs=1e-12)
