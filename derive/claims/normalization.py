"""The normalization family on one tensor: which transformation of its input each layer removes,
its backward pass, the ``ones_like`` gradient-check pitfall, and BN's double backward.

Every layer standardizes a tensor over some of its axes: BatchNorm x[n, c] over the samples n
(per channel c), LayerNorm over the channels c (per sample n), InstanceNorm x[n, c, h] over the
positions h (per sample and channel), GroupNorm x[n, q, k] over the channels k of one group q
(per sample and group); RMSNorm divides x[n, c] by the root of its mean square over c without
centering; weight normalization rescales a weight vector v[j] to gamma v / |v|.  A bias or a
scale that does not vary along the reduced axes is a constant to the statistics, so it cancels;
one that varies along them does not.  Each statement is checked for symbolic sizes of every
axis: the table the report opens with is read off the verdicts, never written by hand.
"""

from __future__ import annotations

import sympy as sp

from ..calculus import Batch, Grad
from ..core import Claim, Equation
from ..verify import Settings

SOURCE = "the normalization family, on a tensor with named axes"
# The three-axis claims' proofs and explicit walks take several seconds with every step
# re-checked: room to spare on a loaded machine, so that the verdicts and the report's bytes
# do not depend on its load (as for the batchnorm topic).
SETTINGS = Settings(budget=40.0, explicit_budget=40.0)

N, C, H = Batch("N"), Batch("C"), Batch("H")    # samples, channels, positions
Q, K = Batch("Q"), Batch("K")                    # groups, channels of one group
J = Batch("J")                                   # the entries of a weight vector

n, m = N.index("n"), N.index("m")
c, d = C.index("c"), C.index("d")
h, p = H.index("h"), H.index("p")
q, r_ = Q.index("q"), Q.index("r")
k, l_ = K.index("k"), K.index("l")
j, i_ = J.index("j"), J.index("i")

x = N.samples("x")                               # the input tensor
g = N.samples("g")                               # g = dl/dy, arbitrary
b = N.samples("b")                               # a bias: per channel b[c], per group b[q], ...
a = N.samples("a")                               # a per-sample bias a[n]
e = N.samples("e")                               # a per-position bias e[h]
s = N.samples("s", positive=True)                # a positive scale: s[c], s[q], s[q, k]
rs = N.samples("r", positive=True)               # a positive per-sample scale r[n]
es = N.samples("e", positive=True)               # a positive per-position scale e[h]
gam = N.samples(r"\gamma")                       # a per-channel gain gamma[c]
bet = N.samples(r"\beta")                        # a per-channel shift beta[c]
v = J.samples("v")                               # weight normalization's direction v[j]
gw = J.samples("g")                              # dl/dw_j, arbitrary

eps = N.param(r"\epsilon", positive=True)        # epsilon > 0
eps_ge0 = N.param(r"\epsilon", nonnegative=True)  # "for every epsilon >= 0"
delta = N.param(r"\delta")                       # a global shift
alpha = N.param(r"\alpha", positive=True)        # a global positive scale
alpha_neg = N.param(r"\alpha", negative=True)    # a negative one
gain = N.param(r"\gamma")                        # weight normalization's gain


def standardize(value, index, epsilon):
    """``value`` (an expression of the free ``index``) minus its mean over ``index``'s axis,
    divided by the root of its variance over that axis plus ``epsilon``."""
    axis = Batch(index.axis)
    mu = axis.mean(value, index)
    return (value - mu) / sp.sqrt(axis.mean((value - mu) ** 2, index) + epsilon)


def variance(value, index):
    axis = Batch(index.axis)
    return axis.mean((value - axis.mean(value, index)) ** 2, index)


def rms(value, index, epsilon):
    """RMSNorm: ``value`` divided by the root of its mean square over ``index``'s axis plus
    ``epsilon``; no centering."""
    axis = Batch(index.axis)
    return value / sp.sqrt(axis.mean(value ** 2, index) + epsilon)


def weight_norm(value, index):
    """Weight normalization's direction: ``value`` / |value|, the norm over ``index``'s axis."""
    axis = Batch(index.axis)
    return value / sp.sqrt(axis.sum(value ** 2, index))


# each norm, as (its reduced index, the input tensor entry it normalizes, the operator the
# frameworks compute it with, its name in the report)
NORMS = {
    "bn": (n, x[n, c], "batch_norm", "BatchNorm"),
    "ln": (c, x[n, c], "layer_norm", "LayerNorm"),
    "in": (h, x[n, c, h], "instance_norm", "InstanceNorm"),
    "gn": (k, x[n, q, k], "group_norm", "GroupNorm"),
    "rms": (c, x[n, c], "rms_norm", "RMSNorm"),
}
EPS0 = r"\epsilon = 0"


def norm_of(name, value, epsilon):
    index = NORMS[name][0]
    return rms(value, index, epsilon) if name == "rms" else standardize(value, index, epsilon)


# -- which transformation each norm removes ----------------------------------------------------

# (name of the transformation, what it adds or multiplies per norm, bias or scale)
# The columns of the report's table, in its order; a norm's cell is its claim about it.
TRANSFORMS = (
    ("channel-bias", "bias", r"per channel"),
    ("sample-bias", "bias", r"per sample"),
    ("position-bias", "bias", r"per position"),
    ("group-bias", "bias", r"per group"),
    ("shift", "bias", r"global"),
    ("channel-scale", "scale", r"per channel"),
    ("sample-scale", "scale", r"per sample"),
    ("position-scale", "scale", r"per position"),
    ("group-scale", "scale", r"per group"),
    ("scale", "scale", r"global"),
)


def _bias(norm, what):
    """The bias term that ``what`` adds to ``norm``'s input entry (None: not stated)."""
    per = {("channel-bias", "gn"): b[q, k], "channel-bias": b[c], "sample-bias": a[n],
           "position-bias": e[h], "group-bias": b[q], "shift": delta}
    return per.get((what, norm), per.get(what))


def _scale(norm, what):
    per = {("channel-scale", "gn"): s[q, k], "channel-scale": s[c], "sample-scale": rs[n],
           "position-scale": es[h], "group-scale": s[q], "scale": alpha}
    return per.get((what, norm), per.get(what))


def _domain(norm, value):
    """At epsilon = 0 the statement needs the reduced statistic > 0: the variance, or for
    RMSNorm the mean square."""
    index = NORMS[norm][0]
    if norm == "rms":
        return Batch(index.axis).mean(value ** 2, index)
    return variance(value, index)


# (transformation, epsilon: "any" (every epsilon >= 0), "positive" or "zero", expected verdict,
#  what the practitioner should take away); the id is family.<norm>.<transformation>, with
#  "-eps0" for the statement at epsilon = 0 (``suffix``)
INVARIANCES = {
    "bn": (
        ("channel-bias", "any", "proved",
         r"The bias $b_c$ is the same for every sample, so the batch mean takes it away: a "
         r"bias before BatchNorm is redundant, whatever $\epsilon$; $\beta$ does its job."),
        ("sample-bias", "any", "refuted",
         r"A bias $a_n$ that differs between samples is not constant along the batch: it "
         r"survives the normalization."),
        ("shift", "any", "proved",
         r"A global shift is a per-channel bias with every $b_c$ equal."),
        ("channel-scale", "zero", "proved",
         r"At $\epsilon = 0$ the scale $s_c > 0$ divides out of $x - \mu$ and out of $\sigma$."),
        ("channel-scale", "positive", "refuted",
         r"With $\epsilon > 0$ the scale does not divide out: $\epsilon$ is not scaled with "
         r"the variance (the output is that of $x$ at $\epsilon/s_c^2$)."),
        ("sample-scale", "zero", "refuted",
         r"A scale $r_n$ that differs between samples changes the batch's shape."),
        ("scale", "zero", "proved",
         r"At $\epsilon = 0$ a global scale $\alpha > 0$ divides out."),
        ("scale", "positive", "refuted",
         r"With $\epsilon > 0$ it does not: the output is that of $x$ at "
         r"$\epsilon/\alpha^2$."),
    ),
    "ln": (
        ("channel-bias", "any", "refuted",
         r"A per-feature bias varies along the channels LayerNorm averages over: it is not "
         r"redundant."),
        ("sample-bias", "any", "proved",
         r"A bias $a_n$ is the same for every channel of sample $n$: LayerNorm's mean takes "
         r"it away."),
        ("shift", "any", "proved", r"A global shift is a per-sample bias."),
        ("sample-scale", "zero", "proved",
         r"At $\epsilon = 0$ a per-sample scale divides out."),
        ("sample-scale", "positive", "refuted",
         r"With $\epsilon > 0$ it does not: $\epsilon$ is not scaled with the variance."),
        ("channel-scale", "zero", "refuted",
         r"A per-feature scale changes the shape of each sample's features."),
        ("scale", "zero", "proved",
         r"At $\epsilon = 0$ a global scale $\alpha > 0$ divides out."),
        ("scale", "positive", "refuted", r"With $\epsilon > 0$ it does not."),
    ),
    "in": (
        ("channel-bias", "any", "proved",
         r"$b_c$ is constant over the positions of channel $c$."),
        ("sample-bias", "any", "proved",
         r"$a_n$ is constant over the positions of every channel of sample $n$."),
        ("position-bias", "any", "refuted",
         r"A bias $e_h$ per position varies along the positions InstanceNorm averages over."),
        ("channel-scale", "zero", "proved",
         r"At $\epsilon = 0$ a per-channel scale divides out."),
        ("channel-scale", "positive", "refuted",
         r"With $\epsilon > 0$ it does not."),
        ("position-scale", "zero", "refuted",
         r"A scale per position changes each channel's spatial pattern."),
        ("shift", "any", "proved", r"A global shift is a per-channel bias."),
        ("scale", "zero", "proved",
         r"At $\epsilon = 0$ a global scale $\alpha > 0$ divides out."),
        ("scale", "positive", "refuted", r"With $\epsilon > 0$ it does not."),
    ),
    "gn": (
        ("group-bias", "any", "proved",
         r"$b_q$ is constant over the channels of group $q$."),
        ("sample-bias", "any", "proved",
         r"$a_n$ is constant over every group of sample $n$."),
        ("channel-bias", "any", "refuted",
         r"A per-channel bias $b_{q,k}$ varies within its group: GroupNorm keeps it."),
        ("group-scale", "zero", "proved",
         r"At $\epsilon = 0$ a per-group scale divides out."),
        ("group-scale", "positive", "refuted",
         r"With $\epsilon > 0$ it does not."),
        ("channel-scale", "zero", "refuted",
         r"A per-channel scale varies within the group."),
        ("shift", "any", "proved", r"A global shift is a per-group bias."),
        ("scale", "zero", "proved",
         r"At $\epsilon = 0$ a global scale $\alpha > 0$ divides out."),
        ("scale", "positive", "refuted", r"With $\epsilon > 0$ it does not."),
    ),
    "rms": (
        ("shift", "any", "refuted",
         r"RMSNorm does not center: a shift changes its output for every $\epsilon \ge 0$; "
         r"it removes no bias at all."),
        ("sample-scale", "zero", "proved",
         r"At $\epsilon = 0$ a per-sample scale divides out of $x$ and of the root mean "
         r"square."),
        ("sample-scale", "positive", "refuted",
         r"With $\epsilon > 0$ it does not."),
        ("channel-scale", "zero", "refuted",
         r"A per-feature scale changes the mean square unevenly."),
        ("scale", "zero", "proved",
         r"At $\epsilon = 0$ a global scale $\alpha > 0$ divides out."),
        ("scale", "positive", "refuted", r"With $\epsilon > 0$ it does not."),
    ),
}

NAMES_TEX = {"bn": r"\operatorname{BN}", "ln": r"\operatorname{LN}",
             "in": r"\operatorname{IN}", "gn": r"\operatorname{GN}",
             "rms": r"\operatorname{RMS}"}


def _epsilon(kind):
    return {"any": eps_ge0, "positive": eps, "zero": sp.S.Zero}[kind]


def suffix(what, eps_kind) -> str:
    """The id's last part: the transformation, "-eps0" for the statement at epsilon = 0."""
    return what + ("-eps0" if eps_kind == "zero" else "")


def invariance_claim(norm, what, eps_kind, expected, text) -> Claim:
    index, entry, operator, title = NORMS[norm]
    epsilon = _epsilon(eps_kind)
    bias, scale = _bias(norm, what), _scale(norm, what)
    moved = entry + bias if bias is not None else scale * entry
    name = NAMES_TEX[norm]
    change = (rf"x + {sp.latex(bias)}" if bias is not None else rf"{sp.latex(scale)}\,x")
    label = rf"${name}({change}) = {name}(x)$"
    domain = (_domain(norm, entry),) if eps_kind == "zero" else ()
    assumptions = {"any": (r"\epsilon \ge 0",), "positive": (r"\epsilon > 0",),
                   "zero": (EPS0, _positive_statistic(norm))}[eps_kind]
    if scale is not None:
        assumptions = assumptions + (rf"{sp.latex(scale)} > 0",)
    kind = "bias" if bias is not None else "scale"
    return Claim(
        f"family.{norm}.{suffix(what, eps_kind)}", f"{title} and a {_phrase(what)} {kind}",
        Batch(N.size), (Equation(norm_of(norm, moved, epsilon), norm_of(norm, entry, epsilon),
                                 label),),
        text=text, assumptions=assumptions, source=SOURCE, expected=expected,
        domain=domain, operator=operator)


def _phrase(what):
    return dict((t, per) for t, _, per in TRANSFORMS)[what]


def _positive_statistic(norm):
    return {"bn": r"\sigma_c^2 > 0", "ln": r"\sigma_n^2 > 0", "in": r"\sigma_{n,c}^2 > 0",
            "gn": r"\sigma_{n,q}^2 > 0", "rms": r"\operatorname{mean}_c x_{n,c}^2 > 0"}[norm]


def invariance_claims() -> list[Claim]:
    out = [invariance_claim(norm, *row) for norm, rows in INVARIANCES.items() for row in rows]
    out.append(Claim(
        "family.rms.centered-is-ln", "LayerNorm is RMSNorm after centering", N,
        (Equation(rms(x[n, c] - C.mean(x[n, c], c), c, eps_ge0), standardize(x[n, c], c, eps_ge0),
                  r"$\operatorname{RMS}(x - \operatorname{mean}_c x) = \operatorname{LN}(x)$"),),
        text=r"The mean square of a centered vector is its variance: with the same "
             r"$\epsilon$, RMSNorm of the centered input is LayerNorm.",
        assumptions=(r"\epsilon \ge 0",), source=SOURCE, expected="proved",
        operator="layer_norm"))
    w = weight_norm(v[j], j)
    out += [
        Claim("family.wn.scale", "Weight normalization and a positive scale", J,
              (Equation(weight_norm(alpha * v[j], j), w, r"$w(\alpha v) = w(v)$"),),
              text=r"$w = \gamma v/\lVert v\rVert$ depends on the direction of $v$ only; no "
                   r"$\epsilon$ is involved.",
              assumptions=(r"\alpha > 0", r"v \ne 0"), source=SOURCE, expected="proved",
              domain=(J.sum(v[j] ** 2, j),), operator="weight_norm"),
        Claim("family.wn.negative-scale", "Weight normalization and a negative scale", J,
              (Equation(weight_norm(alpha_neg * v[j], j), w, r"$w(\alpha v) = w(v)$"),),
              text=r"A negative $\alpha$ flips the direction: $w(\alpha v) = -w(v)$.",
              assumptions=(r"\alpha < 0", r"v \ne 0"), source=SOURCE, expected="refuted",
              domain=(J.sum(v[j] ** 2, j),), operator="weight_norm"),
    ]
    return out


# -- backward passes ---------------------------------------------------------------------------

ARBITRARY = r"g = \partial\ell/\partial y \text{ arbitrary}"


def _probe(value_of, indices, gain_of=None, shift_of=None):
    """L = sum over every index of g * (gain * y + shift): the derivative of any loss with
    dl/dy = g.  ``value_of(*indices)`` is the normalized entry; the sums run innermost last."""
    y = value_of(*indices)
    if gain_of is not None:
        y = gain_of(*indices) * y
    if shift_of is not None:
        y = y + shift_of(*indices)
    body = g[indices] * y
    for index in reversed(indices):
        body = Batch(index.axis).sum(body, index)
    return body


def backward_claims() -> list[Claim]:
    both = (r"\epsilon > 0", ARBITRARY)
    bn_hat = lambda nn, cc: standardize(x[nn, cc], nn, eps)           # noqa: E731
    ln_hat = lambda nn, cc: standardize(x[nn, cc], cc, eps)           # noqa: E731
    rms_hat = lambda nn, cc: rms(x[nn, cc], cc, eps)                   # noqa: E731
    in_hat = lambda nn, cc, hh: standardize(x[nn, cc, hh], hh, eps)    # noqa: E731
    gn_hat = lambda nn, qq, kk: standardize(x[nn, qq, kk], kk, eps)    # noqa: E731
    s_bn = sp.sqrt(variance(x[m, c], m) + eps)
    s_ln = sp.sqrt(variance(x[m, c], c) + eps)
    r_rms = sp.sqrt(C.mean(x[m, c] ** 2, c) + eps)
    s_in = sp.sqrt(variance(x[m, d, h], h) + eps)
    s_gn = sp.sqrt(variance(x[m, r_, k], k) + eps)
    gt = lambda nn, cc: gam[cc] * g[nn, cc]                            # noqa: E731
    gt_gn = lambda nn, qq, kk: gam[qq, kk] * g[nn, qq, kk]             # noqa: E731
    norm2 = J.sum(v[j] ** 2, j)
    wn_loss = J.sum(gw[j] * gain * weight_norm(v[j], j), j)
    wn_grad = gain / sp.sqrt(norm2) * (
        gw[i_] - v[i_] / sp.sqrt(norm2) * J.sum(v[j] / sp.sqrt(norm2) * gw[j], j))
    return [
        Claim(
            "family.bn.channels-independent", "BatchNorm's Jacobian: channels do not mix", N,
            (Equation(Grad(bn_hat(n, c), x[m, d]),
                      sp.KroneckerDelta(c, d) / s_bn
                      * (sp.KroneckerDelta(n, m) - 1 / N.size
                         - bn_hat(n, c) * bn_hat(m, c) / N.size),
                      r"$\partial\hat x_{n,c}/\partial x_{m,d}$"),),
            text=r"Each channel is normalized on its own: the Jacobian is zero across channels "
                 r"($\delta_{cd}$), and within a channel it is the one-dimensional BatchNorm "
                 r"Jacobian over the batch.",
            assumptions=(r"\epsilon > 0",), source=SOURCE, expected="proved",
            operator="batch_norm"),
        Claim(
            "family.ln.backward", "LayerNorm's backward pass", N,
            (Equation(Grad(_probe(ln_hat, (n, c), lambda nn, cc: gam[cc],
                                  lambda nn, cc: bet[cc]), x[m, d]),
                      (gt(m, d) - C.mean(gt(m, c), c) - ln_hat(m, d) * C.mean(
                          gt(m, c) * ln_hat(m, c), c)) / s_ln,
                      r"$\partial\ell/\partial x_{m,d}$"),),
            text=r"BatchNorm's compact formula with the roles of the axes exchanged: the "
                 r"means run over the channels of one sample, and the gain $\gamma_c$ enters "
                 r"as $\tilde g = \gamma\odot g$.",
            assumptions=both, source=SOURCE, expected="proved", operator="layer_norm"),
        Claim(
            "family.rms.backward", "RMSNorm's backward pass", N,
            (Equation(Grad(_probe(rms_hat, (n, c), lambda nn, cc: gam[cc]), x[m, d]),
                      (gt(m, d) - rms_hat(m, d) * C.mean(gt(m, c) * rms_hat(m, c), c)) / r_rms,
                      r"$\partial\ell/\partial x_{m,d}$"),),
            text=r"Without centering there is no $-\operatorname{mean}_c\tilde g$ term: only "
                 r"the projection away from $\hat y$ remains.",
            assumptions=both, source=SOURCE, expected="proved", operator="rms_norm"),
        Claim(
            "family.in.backward", "InstanceNorm's backward pass", N,
            (Equation(Grad(_probe(in_hat, (n, c, h), lambda nn, cc, hh: gam[cc],
                                  lambda nn, cc, hh: bet[cc]), x[m, d, p]),
                      gam[d] / (H.size * s_in) * (
                          H.size * g[m, d, p] - H.sum(g[m, d, h], h)
                          - in_hat(m, d, p) * H.sum(g[m, d, h] * in_hat(m, d, h), h)),
                      r"$\partial\ell/\partial x_{m,d,p}$"),),
            text=r"BatchNorm's compact formula, over the positions $h$ of each sample and "
                 r"channel instead of over the batch.",
            assumptions=both, source=SOURCE, expected="proved", operator="instance_norm"),
        Claim(
            "family.gn.backward", "GroupNorm's backward pass", N,
            (Equation(Grad(_probe(gn_hat, (n, q, k), lambda nn, qq, kk: gam[qq, kk],
                                  lambda nn, qq, kk: bet[qq, kk]), x[m, r_, l_]),
                      (gt_gn(m, r_, l_) - K.mean(gt_gn(m, r_, k), k) - gn_hat(m, r_, l_)
                       * K.mean(gt_gn(m, r_, k) * gn_hat(m, r_, k), k)) / s_gn,
                      r"$\partial\ell/\partial x_{m,r,l}$"),),
            text=r"LayerNorm's formula over the channels $k$ of each sample and group.",
            assumptions=both, source=SOURCE, expected="proved", operator="group_norm"),
        Claim(
            "family.wn.backward-v", "Weight normalization: the gradient by the direction", J,
            (Equation(Grad(wn_loss, v[i_]), wn_grad, r"$\partial\ell/\partial v_i$"),),
            text=r"The gradient by $w$ projected away from $v$ and scaled by "
                 r"$\gamma/\lVert v\rVert$ [Salimans \& Kingma 2016].",
            assumptions=(r"v \ne 0", r"g = \nabla_w\ell \text{ arbitrary}"), source=SOURCE,
            expected="proved", domain=(norm2,), operator="weight_norm"),
        Claim(
            "family.wn.backward-gain", "Weight normalization: the gradient by the gain", J,
            (Equation(Grad(wn_loss, gain), J.sum(gw[j] * v[j], j) / sp.sqrt(norm2),
                      r"$\partial\ell/\partial\gamma$"),),
            text=r"$\partial\ell/\partial\gamma = \langle\nabla_w\ell, v\rangle/"
                 r"\lVert v\rVert$.",
            assumptions=(r"v \ne 0", r"g = \nabla_w\ell \text{ arbitrary}"), source=SOURCE,
            expected="proved", domain=(norm2,), operator="weight_norm"),
        Claim(
            "family.wn.gradient-orthogonal", "Weight normalization: the gradient is orthogonal "
            "to v", J,
            (Equation(J.sum(v[i_] * Grad(wn_loss, v[i_]), i_), sp.S.Zero,
                      r"$\langle v, \partial\ell/\partial v\rangle = 0$"),),
            text=r"The gradient by $v$ is orthogonal to $v$: a gradient step only grows "
                 r"$\lVert v\rVert$ (to first order it keeps it, to second order it adds "
                 r"$\eta^2\lVert\partial\ell/\partial v\rVert^2$).",
            assumptions=(r"v \ne 0",), source=SOURCE, expected="proved", domain=(norm2,),
            operator="weight_norm"),
    ]


# -- the gradient-check pitfall ----------------------------------------------------------------

def gradcheck_claims() -> list[Claim]:
    bn_y = gam[c] * standardize(x[n, c], n, eps) + bet[c]
    ln_hat = standardize(x[n, c], c, eps)
    ones = lambda body: N.sum(C.sum(body, c), n)                       # noqa: E731
    return [
        Claim(
            "family.gradcheck-ones", "With ones as the upstream gradient, every backward pass "
            "looks right", N,
            (Equation(Grad(ones(bn_y), x[m, d]), sp.S.Zero,
                      r"BatchNorm: $\partial\sum_{n,c} y_{n,c}/\partial x_{m,d}$"),
             Equation(N.sum(bn_y, n), N.size * bet[c], r"$\sum_n y_{n,c} = N\beta_c$"),
             Equation(Grad(ones(ln_hat), x[m, d]), sp.S.Zero,
                      r"LayerNorm without a gain: $\partial\sum_{n,c}\hat x_{n,c}/"
                      r"\partial x_{m,d}$")),
            text=r"$\sum_n \hat x_{n,c} = 0$ for every input, so $\sum y$ does not depend on "
                 r"$x$ at all: its true gradient is $0$, and a gradient check of "
                 r"$\operatorname{sum}(\operatorname{BN}(x))$ -- \texttt{ones\_like} as the "
                 r"upstream gradient -- compares $0$ with whatever the backward pass returns "
                 r"for $g = \mathbf 1$, which every formula with the right centering term also "
                 r"returns. Check with a random $g$.",
            assumptions=(r"\epsilon > 0", r"g = \mathbf 1"), source=SOURCE,
            expected="proved", operator="batch_norm"),
        Claim(
            "family.gradcheck-ones-ln-gain", "LayerNorm with a per-feature gain: ones do not "
            "hide the gradient", N,
            (Equation(Grad(ones(gam[c] * ln_hat), x[m, d]), sp.S.Zero,
                      r"$\partial\sum_{n,c}\gamma_c\hat x_{n,c}/\partial x_{m,d}$"),),
            text=r"The gain varies along the reduced axis, so the sum is not constant: the "
                 r"gradient is $(1/s)(\gamma_d - \operatorname{mean}\gamma - \hat x_{m,d}"
                 r"\operatorname{mean}(\gamma\hat x))$.",
            assumptions=(r"\epsilon > 0", r"g = \mathbf 1"), source=SOURCE,
            expected="refuted", operator="layer_norm"),
    ]


def claims() -> list[Claim]:
    """Every claim of the report, in its order: sections E and F of the catalog, then the
    refuted slips."""
    from . import bn_second_order, family_mutants
    return (invariance_claims() + backward_claims() + gradcheck_claims()
            + bn_second_order.claims() + family_mutants.claims())


# -- the report ---------------------------------------------------------------------------------

def _cell(norm, what):
    """The claims that decide the table's cell (``story.VerdictTable``): the statement for
    every epsilon first, then the one at epsilon = 0."""
    kinds = sorted((kind for w, kind, *_ in INVARIANCES[norm] if w == what),
                   key=lambda kind: kind == "zero")
    return tuple((f"family.{norm}.{suffix(what, kind)}",
                  r"\epsilon = 0" if kind == "zero" else "") for kind in kinds)


def table():
    from ..story import VerdictTable

    rows = []
    for norm in INVARIANCES:
        rows.append((NORMS[norm][3], tuple(_cell(norm, what) for what, _, _ in TRANSFORMS)))
    rows.append(("weight norm", tuple((("family.wn.scale", ""),) if what == "scale" else ()
                                      for what, _, _ in TRANSFORMS)))
    return VerdictTable(
        caption=r"Each cell links to the claim that decides it.",
        groups=((r"a bias added", 5), (r"a scale $> 0$ multiplied", 5)),
        columns=tuple({"global": r"global"}.get(per, per.replace(" ", r"\\"))
                      for _, _, per in TRANSFORMS),
        rows=tuple(rows),
        words=(("holds", r"\textcolor{proved}{\checkmark}",
                r"removed: the output is unchanged, for every $\epsilon \ge 0$"),
               ("conditional", r"\textcolor{undecided}{${condition}$}",
                r"removed only at $\epsilon = 0$ (with $\epsilon > 0$ it changes the output)"),
               ("fails", r"\textcolor{refuted}{$\times$}",
                r"not removed: the output changes (refuted with a counterexample)"),
               ("undecided", r"\textcolor{undecided}{?}", r"undecided")))


TABLE_TEXT = r"""Every normalization subtracts a mean and divides by a standard deviation over some
axes of its input, or (RMSNorm) divides by a root mean square without centering. A bias or a
scale that is constant along those axes is a constant to the statistics, so it cancels; one
that varies along them survives. The table says which transformation of the input each layer
removes, with $x[n, c]$ ($n$ the sample, $c$ the channel), $x[n, c, h]$ for InstanceNorm ($h$ a
spatial position) and $x[n, q, k]$ for GroupNorm ($q$ a group, $k$ a channel of it); every
cell is a claim proved for every size of every axis, or refuted by an exact counterexample.
Weight normalization acts on a weight vector $v$, not on activations: $w(\alpha v) = w(v)$ for
$\alpha > 0$, and for $\alpha < 0$ the sign flips ({{claim:family.wn.negative-scale}})."""

TAKEAWAYS = r"""\emph{What to take away.} A bias before BatchNorm, InstanceNorm or GroupNorm is
redundant when it is shared along the reduced axes (per channel, per channel, per group):
drop it and let $\beta$ do its job. A per-feature bias before LayerNorm is \emph{not}
redundant ({{claim:family.ln.channel-bias}}), and RMSNorm, which does not center, removes no
bias at all ({{claim:family.rms.shift}}); LayerNorm is exactly RMSNorm after centering
({{claim:family.rms.centered-is-ln}}). Scale invariance holds only at $\epsilon = 0$: with
$\epsilon > 0$ a scale $a$ acts as a change of $\epsilon$ to $\epsilon/a^2$."""


# where each norm's statistics are printed by name: the entries its claims normalize, and
# the position of the index each norm reduces over
REDUCED_AT = {"bn": 0, "ln": 1, "rms": 1, "in": 2, "gn": 2}
PLACES = {"bn": (x[n, c], x[m, c], x[n, d], x[m, d]), "ln": (x[n, c], x[m, c]),
          "rms": (x[n, c], x[m, c]), "in": (x[n, c, h], x[m, d, h], x[m, d, p]),
          "gn": (x[n, q, k], x[m, r_, k], x[m, r_, l_])}


def _abbreviations():
    """How the statements print each norm's statistics: mu, sigma^2 and s with the indices
    they are taken per (mu_c for BatchNorm, mu_n for LayerNorm, mu_{n,c} for InstanceNorm,
    r_n for RMSNorm's root mean square), xhat with every index; the double-backward claims
    in the paper's mu_B, sigma^2_B."""
    from . import bn_second_order as f
    pairs = [(f.mu, r"\mu_{\mathcal B}"), (f.var, r"\sigma^{2}_{\mathcal B}"), (f.s, "s")]
    for norm, entries in PLACES.items():
        position = REDUCED_AT[norm]
        for entry in entries:
            index = entry.indices[position]
            per = ",".join(sp.latex(t) for n_, t in enumerate(entry.indices) if n_ != position)
            every = ",".join(sp.latex(t) for t in entry.indices)
            axis = Batch(index.axis)
            if norm == "rms":
                for epsilon in (eps, eps_ge0):
                    pairs.append((sp.sqrt(axis.mean(entry ** 2, index) + epsilon),
                                  rf"r_{{{per}}}"))
                    pairs.append((rms(entry, index, epsilon), rf"\hat y_{{{every}}}"))
                continue
            var = variance(entry, index)
            pairs += [(axis.mean(entry, index), rf"\mu_{{{per}}}"),
                      (var, rf"\sigma^{{2}}_{{{per}}}"), (sp.sqrt(var), rf"\sigma_{{{per}}}")]
            for epsilon in (eps, eps_ge0):
                pairs += [(sp.sqrt(var + epsilon), rf"s_{{{per}}}"),
                          (standardize(entry, index, epsilon), rf"\hat x_{{{every}}}")]
    return tuple(pairs)


def _normalized():
    """Each norm's (x - mu)/s, written xhat with every index wherever a derivation or a
    statement holds it (``Story.normalized``): one entry per mean of ``PLACES``."""
    xhat = N.samples(r"\hat x")
    out = []
    for norm, entries in PLACES.items():
        if norm == "rms":
            continue   # no mean: RMSNorm's yhat is abbreviated whole
        for entry in entries:
            index = entry.indices[REDUCED_AT[norm]]
            var = variance(entry, index)
            out.append((x, Batch(index.axis).mean(entry, index),
                        (var + eps, var + eps_ge0), xhat))
    return tuple(out)


def story():
    from ..story import Section, Story
    from . import bn_second_order, family_mutants

    by_norm = {norm: tuple(f"family.{norm}.{suffix(what, kind)}" for what, kind, *_ in rows)
               for norm, rows in INVARIANCES.items()}
    return Story(
        name="normalization",
        title=r"Beyond batch norm: which bias each normalization makes redundant, proved",
        abstract=(r"BatchNorm, LayerNorm, InstanceNorm, GroupNorm, RMSNorm and weight "
                  r"normalization on tensors with named axes of symbolic size: which "
                  r"transformation of the input each removes, their backward passes, the "
                  r"\texttt{ones\_like} gradient-check pitfall and BatchNorm's double "
                  r"backward, each checked against PyTorch's and JAX's own operators."),
        opening=(Section("Which transformation each normalization removes", "",
                         table=table(), after=TABLE_TEXT + "\n\n" + TAKEAWAYS),),
        sections=(
            Section("BatchNorm: per channel, over the batch",
                    r"""$\operatorname{BN}(x)_{n,c} = (x_{n,c} - \mu_c)/\sqrt{\sigma_c^2 +
\epsilon}$ with $\mu_c$, $\sigma_c^2$ the mean and (biased) variance of channel $c$ over the
$N$ samples, and $s_c = \sqrt{\sigma_c^2 + \epsilon}$. At $\epsilon = 0$ each claim assumes
the variance it divides by is $> 0$.""",
                    by_norm["bn"]),
            Section("LayerNorm and RMSNorm: per sample, over the channels",
                    r"""$\operatorname{LN}(x)_{n,c} = (x_{n,c} - \mu_n)/\sqrt{\sigma_n^2 +
\epsilon}$ over the $C$ channels of sample $n$; $\operatorname{RMS}(x)_{n,c} =
x_{n,c}/r_n$ with $r_n = \sqrt{\operatorname{mean}_c x_{n,c}^2 + \epsilon}$, without
centering; $\hat y = x/r$.""",
                    by_norm["ln"] + by_norm["rms"] + ("family.rms.centered-is-ln",)),
            Section("InstanceNorm and GroupNorm",
                    r"""InstanceNorm normalizes $x[n, c, h]$ over the $H$ positions of each
sample and channel, with mean $\mu_{n,c}$ and variance $\sigma^2_{n,c}$; GroupNorm
normalizes $x[n, q, k]$ over the $K$ channels of each sample and group ($\mu_{n,q}$,
$\sigma^2_{n,q}$; spatial positions behave like $k$).""",
                    by_norm["in"] + by_norm["gn"]),
            Section("Weight normalization",
                    r"""$w = \gamma\, v/\lVert v\rVert$ reparametrizes a weight vector $v$ of
$J$ entries [Salimans \& Kingma 2016].""",
                    ("family.wn.scale", "family.wn.negative-scale")),
            Section("Backward passes, as an implementer writes them",
                    r"""$g = \partial\ell/\partial y$ is arbitrary, $\tilde g = \gamma\odot g$
with a per-channel gain, $s$ the root each normalization divides by (with the indices it is
taken per: $s_c$ for BatchNorm, $s_m$ for LayerNorm, $s_{m,d}$ for InstanceNorm, $s_{m,r}$ for
GroupNorm) and $\hat x$ its output. Each formula is proved for symbolic sizes and checked against the framework's own
operator's backward pass.""",
                    ("family.bn.channels-independent", "family.ln.backward",
                     "family.rms.backward", "family.in.backward", "family.gn.backward",
                     "family.wn.backward-v", "family.wn.backward-gain",
                     "family.wn.gradient-orthogonal")),
            Section("The gradient-check pitfall",
                    r"""A common test of a hand-written backward pass compares it with finite
differences of $\operatorname{sum}(\operatorname{BN}(x))$, i.e.\ with \texttt{ones\_like}
as the upstream gradient. For BatchNorm that test cannot fail: the sum does not depend on
$x$.""",
                    ("family.gradcheck-ones", "family.gradcheck-ones-ln-gain")),
            Section("BatchNorm's double backward",
                    bn_second_order.SECTION_TEXT,
                    tuple(c.id for c in bn_second_order.claims())),
            Section("Plausible mistakes, refuted",
                    family_mutants.SECTION_TEXT,
                    tuple(c.id for c in family_mutants.claims())),
        ),
        abbreviations=_abbreviations(),
        normalized=_normalized(),
        references=(r"[BN] S. Ioffe, C. Szegedy. Batch Normalization: Accelerating Deep "
                    r"Network Training by Reducing Internal Covariate Shift. ICML 2015.",
                    r"[LN] J. L. Ba, J. R. Kiros, G. E. Hinton. Layer Normalization. 2016.",
                    r"[GN] Y. Wu, K. He. Group Normalization. ECCV 2018.",
                    r"[RMS] B. Zhang, R. Sennrich. Root Mean Square Layer Normalization. "
                    r"NeurIPS 2019.",
                    r"[WN] T. Salimans, D. P. Kingma. Weight Normalization. NeurIPS 2016."),
    )
