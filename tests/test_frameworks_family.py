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
from derive import frameworks, numeric
from derive.axes import layout
from derive.core import OPERATORS
from derive.frameworks.program import (FORMS, Program, normalization, recognized,
                                       rms_normalization, standardization,
                                       weight_normalization)
from derive.frameworks.backends import OperatorUndefined
from derive.verify import Settings

from conftest import rejected_at_first_failure

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
    assert rejected_at_first_failure(claim("ln.backward-slip", lhs, slip, "layer_norm"),
                                     xp.name, SETTINGS)


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


# -- where a normalization is 0/0, and where its statistic cancels -----------------------------

# family.in.channel-bias as Hypothesis shrank it (N = 3, C = 7, H = 3; regression): at
# epsilon = 0, rows of x constant over h (zeros) make x + b[c] the constant b[c], whose
# normalization is 0/0 -- the formula's round-off gave +-1 there, torch's instance_norm 0
# (1/sqrt(0 + 0) taken as 0), jax.nn.standardize 1e-8 -- on the real rows all three agree
_B = [0.0, 0.0, -2.2519982299861603, 4.8985361496640145, -2.656563899974835,
      -1.5833006090067054, -3.2950187733677483]
_X = np.zeros((3, 7, 3))
_X[0, 0] = [-0.5984480322195331, 0.0, -2.954711888894776]
_X[0, 1, 1] = -0.07336434589013585
# family.in.sample-bias as Hypothesis shrank it for jax (N = 3, C = 8, H = 2): a spread of
# 1e-5 under a shift of 2.26, where jax.nn.standardize's default variance, mean(x^2) -
# mean(x)^2, kept five digits fewer than the formula's mean((x - mean x)^2)
_A = [0.0, -2.2618811285206215, 0.0]
_X2 = np.zeros((3, 8, 2))
_X2[1, 7, 1] = -1e-05


def _constant_rows(shape, seed):
    """Normal values with a few rows (the last axis) constant, one of them zero."""
    values = np.random.default_rng(seed).normal(size=shape)
    values[0, 1] = 0.0
    values[-1, -1] = 0.3
    return values


def _three_axes(operator, sizes, samples, epsilon):
    """(claim, instance): IN(x + bias) = IN(x) over h, or GN over k, at the given sizes."""
    second, third = (C, H) if operator == "instance_norm" else (Q, K)
    i, l_ = (c, h) if operator == "instance_norm" else (q, k)
    bias = b[i] if b in samples else a[n]
    cl = claim(f"zero-over-zero.{operator}", standardize(x[n, i, l_] + bias, l_),
               standardize(x[n, i, l_], l_), operator)
    axes = {N.size: sizes[0], second.size: sizes[1], third.size: sizes[2]}
    return cl, numeric.Instance(sizes[0], samples, {eps: epsilon}, sizes=axes)


CASES = {
    "in.channel-bias shrunk": ("instance_norm", (3, 7, 3), {x: _X, b: np.array(_B)}, 0.0),
    "in.sample-bias shrunk": ("instance_norm", (3, 8, 2), {x: _X2, a: np.array(_A)}, 0.0),
    "in, each axis its size": ("instance_norm", (2, 5, 4),
                               {x: _constant_rows((2, 5, 4), 7), b: np.arange(5.0) - 2.1},
                               0.0),
    "gn at N, Q, K = 3, 7, 3": ("group_norm", (3, 7, 3), {x: _X, b: np.array(_B)}, 0.0),
    "gn, each axis its size": ("group_norm", (2, 5, 4),
                               {x: _constant_rows((2, 5, 4), 8), a: np.array([1.7, -3.3])},
                               0.0),
    "gn, epsilon > 0": ("group_norm", (3, 7, 3), {x: _X, b: np.array(_B)}, 0.25),
}


@pytest.mark.parametrize("case", CASES)
def test_three_axes_at_different_sizes_agree_with_the_formula(xp, case):
    """A true IN / GN statement over x[n, c, h] (x[n, q, k]) at sizes that all differ,
    at epsilon = 0 with constant rows: the operator's sides agree with each other and with
    the formula wherever the normalization is defined (regression: torch's instance_norm and
    jax.nn.standardize were held to a value of 0/0; jax's one-pass variance cancelled)."""
    cl, inst = _three_axes(*CASES[case])
    found = frameworks._Run(cl, xp).compare(inst)
    assert {kind for kind, *_ in found} == {"formula", "operator", "vs_formula"}
    for kind, err, left, right in found:
        assert err <= frameworks.TOLERANCE["float64"], (kind, err, left, right)


def _normalizations(operator):
    """(expression, the tensor's indices, the index it normalizes over) of each operator's
    form."""
    if operator == "batch_norm":
        return standardize(x[n, c], n), (n, c), n
    if operator == "layer_norm":
        return standardize(x[n, c], c), (n, c), c
    if operator == "rms_norm":
        return rms(x[n, c], c, eps), (n, c), c
    if operator == "weight_norm":
        return weight_norm(x[n, c], c), (n, c), c
    last = h if operator == "instance_norm" else k
    return standardize(x[n, c, last], last), (n, c, last), last


@pytest.mark.parametrize("operator", OPERATORS)
@pytest.mark.parametrize("epsilon", [0.0, 0.25])
def test_a_normalization_of_zero_over_zero_is_undefined(xp, operator, epsilon):
    """At epsilon = 0 a group whose statistic is exactly 0 -- a constant group (its
    variance), a group of zeros (its mean square, its norm) -- normalizes to 0/0: the value
    by the operator is NaN there (outside the domain, as the formula's own 0/0 is), whatever
    the operator returns for it, and equal to the formula's everywhere else."""
    expr, tensor, along = _normalizations(operator)
    sizes = {N.size: 3, C.size: 4, H.size: 5, K.size: 5}
    shape = [sizes[t.axis] for t in tensor]
    values = np.random.default_rng(9).normal(size=shape)
    # one group of zeros and, for a centered form, one group of a constant (0.1 three
    # times: its mean rounds, so the formula's 0/0 is a round-off +-1, not NaN)
    zeros = tuple(slice(None) if t == along else 1 for t in tensor)
    constant = tuple(slice(None) if t == along else 2 for t in tensor)
    centered = FORMS[operator] == "standardize"
    values[zeros] = 0.0
    if centered:
        values[constant] = 0.1
    programs = [Program(expr, list(tensor), N.size, xp, operators=operator),
                Program(expr, list(tensor), N.size, xp)]
    assert programs[0].operator_nodes == 1
    real = {t.axis: sizes[t.axis] for t in tensor}
    run = xp.runner(programs, widths={axis: 8 for axis in real}, layout=layout(expr))
    if operator == "batch_norm" and xp.name == "torch" and epsilon == 0:
        with pytest.raises(OperatorUndefined):   # it refuses epsilon = 0 outright
            run(3, {x: values}, {eps: epsilon}, real)
        return
    cut = tuple(slice(0, n_) for n_ in shape)
    by_operator, by_formula = (np.asarray(v)[cut].reshape(shape)
                               for v in run(3, {x: values}, {eps: epsilon}, real))
    undefined = np.zeros(shape, dtype=bool)
    if epsilon == 0 or operator == "weight_norm":   # weight normalization has no epsilon
        undefined[zeros] = True
        undefined[constant] = centered
    assert np.isnan(by_operator[undefined]).all()
    assert np.isfinite(by_operator[~undefined]).all()
    assert by_operator[~undefined] == pytest.approx(by_formula[~undefined], abs=1e-12)
