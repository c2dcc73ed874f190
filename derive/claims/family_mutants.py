"""Plausible wrong statements about the normalization family, each one slip away from a proved
claim: a bias taken as redundant where it is not, a backward pass with a term too many or too
few, a mean over the wrong axis.  Each must be refuted by an exact counterexample and rejected
by both frameworks' own operators; the report shows them so that a reader who wrote the same
slip sees where it fails.
"""

from __future__ import annotations

import sympy as sp

from ..calculus import Grad
from ..core import Claim, Equation
from .normalization import (C, H, J, K, N, Q, b, bet, d, eps, g, gam, gain, gw, h, i_, j, k, l_,
                            m, n, p, q, r_, rms, standardize, v, variance, weight_norm, x)
from .normalization import c as c_

SOURCE = "a plausible slip, refuted"
SECTION_TEXT = r"""Each statement below is one slip away from a proved claim of this report:
a bias taken as redundant where it is not, a backward pass with a term too many or too few, a
mean over the wrong axis. Each is refuted by the smallest exact counterexample, and PyTorch's
and JAX's own operators disagree with it too."""

ARBITRARY = r"g = \partial\ell/\partial y \text{ arbitrary}"


def _loss(reduced):
    """L = sum_{n,c} g (gamma_c xhat + beta_c), xhat standardized over ``reduced`` (n: BatchNorm,
    c: LayerNorm): the derivative of any loss with dl/dy = g."""
    y = gam[c_] * standardize(x[n, c_], reduced, eps) + bet[c_]
    return N.sum(C.sum(g[n, c_] * y, c_), n)


def claims() -> list[Claim]:
    both = (r"\epsilon > 0", ARBITRARY)
    # LayerNorm at sample m: s, xhat and the gained gradient g~ = gamma g
    s_ln = sp.sqrt(variance(x[m, c_], c_) + eps)
    xh_ln = lambda cc: standardize(x[m, cc], cc, eps)                 # noqa: E731
    gt_ln = lambda cc: gam[cc] * g[m, cc]                              # noqa: E731
    ln_dx = Grad(_loss(c_), x[m, d])
    s_bn = sp.sqrt(variance(x[n, d], n) + eps)
    xh_bn = lambda nn: standardize(x[nn, d], nn, eps)                 # noqa: E731
    bn_dx = Grad(_loss(n), x[m, d])
    r_rms = sp.sqrt(C.mean(x[m, c_] ** 2, c_) + eps)
    yh = lambda cc: rms(x[m, cc], cc, eps)                             # noqa: E731
    rms_dx = Grad(N.sum(C.sum(g[n, c_] * gam[c_] * rms(x[n, c_], c_, eps), c_), n), x[m, d])
    gn_xh = lambda nn, qq, kk: standardize(x[nn, qq, kk], kk, eps)     # noqa: E731
    gn_loss = N.sum(Q.sum(K.sum(g[n, q, k] * gam[q, k] * gn_xh(n, q, k), k), q), n)
    s_gn_wrong = sp.sqrt(variance(x[m, q, l_], q) + eps)   # statistics over the groups
    gn_xh_wrong = lambda qq: standardize(x[m, qq, l_], qq, eps)        # noqa: E731
    gtg = lambda qq, kk: gam[qq, kk] * g[m, qq, kk]                    # noqa: E731
    in_xh = lambda nn, cc, hh: standardize(x[nn, cc, hh], hh, eps)     # noqa: E731
    in_loss = N.sum(C.sum(H.sum(g[n, c_, h] * gam[c_] * in_xh(n, c_, h), h), c_), n)
    s_in_batch = sp.sqrt(variance(x[n, d, p], n) + eps)
    norm2 = J.sum(v[j] ** 2, j)
    wn_loss = J.sum(gw[j] * gain * weight_norm(v[j], j), j)
    return [
        Claim("family.mutant.ln-channel-bias-gradient",
              "A per-feature bias before LayerNorm gets no gradient", N,
              (Equation(Grad(N.sum(C.sum(g[n, c_] * standardize(x[n, c_] + b[c_], c_, eps),
                                         c_), n), b[d]), sp.S.Zero,
                        r"$\partial\ell/\partial b_d$"),),
              text=r"True before BatchNorm, false before LayerNorm: the bias varies along the "
                   r"channels LayerNorm averages over.",
              assumptions=both, source=SOURCE, expected="refuted", operator="layer_norm"),
        Claim("family.mutant.ln-backward-no-mean", "LayerNorm's backward without the mean "
              "term", N,
              (Equation(ln_dx, (gt_ln(d) - xh_ln(d) * C.mean(gt_ln(c_) * xh_ln(c_), c_)) / s_ln,
                        r"$\partial\ell/\partial x_{m,d}$"),),
              text=r"Dropping $-\operatorname{mean}_c\tilde g$ is RMSNorm's formula, not "
                   r"LayerNorm's.",
              assumptions=both, source=SOURCE, expected="refuted", operator="layer_norm"),
        Claim("family.mutant.ln-backward-gain-outside", "LayerNorm's backward with the gain "
              "outside the means", N,
              (Equation(ln_dx, gam[d] / s_ln * (g[m, d] - C.mean(g[m, c_], c_) - xh_ln(d)
                                                * C.mean(g[m, c_] * xh_ln(c_), c_)),
                        r"$\partial\ell/\partial x_{m,d}$"),),
              text=r"BatchNorm's gain is one number per normalized group and may leave the "
                   r"means; LayerNorm's $\gamma_c$ varies along the reduced axis and may not.",
              assumptions=both, source=SOURCE, expected="refuted", operator="layer_norm"),
        Claim("family.mutant.ln-backward-unbiased", "LayerNorm's backward with the unbiased "
              "variance", N,
              (Equation(ln_dx, (gt_ln(d) - C.mean(gt_ln(c_), c_) - xh_ln(d) * C.mean(
                  gt_ln(c_) * xh_ln(c_), c_) * C.size / (C.size - 1)) / s_ln,
                  r"$\partial\ell/\partial x_{m,d}$"),),
              text=r"The forward pass divides by the biased variance; a factor $C/(C-1)$ "
                   r"in the backward pass belongs to another normalization.",
              assumptions=both, source=SOURCE, expected="refuted", operator="layer_norm",
              min_sizes=((C.size, 2),)),
        Claim("family.mutant.rms-backward-centered", "RMSNorm's backward with a centering "
              "term", N,
              (Equation(rms_dx, (gam[d] * g[m, d] - C.mean(gam[c_] * g[m, c_], c_)
                                 - yh(d) * C.mean(gam[c_] * g[m, c_] * yh(c_), c_)) / r_rms,
                        r"$\partial\ell/\partial x_{m,d}$"),),
              text=r"Copying LayerNorm's formula: RMSNorm does not center, so there is no "
                   r"$-\operatorname{mean}\tilde g$ term.",
              assumptions=both, source=SOURCE, expected="refuted", operator="rms_norm"),
        Claim("family.mutant.rms-backward-no-projection", "RMSNorm's backward without the "
              "projection", N,
              (Equation(rms_dx, gam[d] * g[m, d] / r_rms, r"$\partial\ell/\partial x_{m,d}$"),),
              text=r"Treating the root mean square as a constant (a stop-gradient) drops the "
                   r"$-\hat y\operatorname{mean}(\tilde g\hat y)$ term.",
              assumptions=both, source=SOURCE, expected="refuted", operator="rms_norm"),
        Claim("family.mutant.bn-channels-mix", "BatchNorm's Jacobian without the channel "
              "delta", N,
              (Equation(Grad(standardize(x[n, c_], n, eps), x[m, d]),
                        (sp.KroneckerDelta(n, m) - 1 / N.size
                         - standardize(x[n, c_], n, eps) * standardize(x[m, c_], m, eps)
                         / N.size) / sp.sqrt(variance(x[n, c_], n) + eps),
                        r"$\partial\hat x_{n,c}/\partial x_{m,d}$"),),
              text=r"Forgetting $\delta_{cd}$: an input of one channel does not move another "
                   r"channel's output.",
              assumptions=(r"\epsilon > 0",), source=SOURCE, expected="refuted",
              operator="batch_norm"),
        Claim("family.mutant.bn-backward-no-xhat-term", "BatchNorm's backward without the "
              "variance term", N,
              (Equation(bn_dx, gam[d] / (N.size * s_bn)
                        * (N.size * g[m, d] - N.sum(g[n, d], n)),
                        r"$\partial\ell/\partial x_{m,d}$"),),
              text=r"Holding $\sigma^2$ constant drops $-\hat x_m\sum_n g_n\hat x_n$. With "
                   r"\texttt{ones\_like} as the upstream gradient this slip is invisible "
                   r"(Section on the gradient-check pitfall); with a random $g$ it is not.",
              assumptions=both, source=SOURCE, expected="refuted", operator="batch_norm"),
        Claim("family.mutant.bn-backward-all-channels", "BatchNorm's backward with sums over "
              "every channel", N,
              (Equation(bn_dx, gam[d] / (N.size * s_bn) * (
                  N.size * g[m, d] - N.sum(C.sum(g[n, c_], c_), n)
                  - xh_bn(m) * N.sum(g[n, d] * xh_bn(n), n))
                  , r"$\partial\ell/\partial x_{m,d}$"),),
              text=r"The sums of the compact formula run over the batch of one channel; a sum "
                   r"over every channel mixes them.",
              assumptions=both, source=SOURCE, expected="refuted", operator="batch_norm"),
        Claim("family.mutant.in-backward-batch-stats", "InstanceNorm's backward with the "
              "batch's statistics", N,
              (Equation(Grad(in_loss, x[m, d, p]),
                        gam[d] / (N.size * s_in_batch) * (
                            N.size * g[m, d, p] - N.sum(g[n, d, p], n)
                            - standardize(x[m, d, p], m, eps)
                            * N.sum(g[n, d, p] * standardize(x[n, d, p], n, eps), n))
                        ,
                        r"$\partial\ell/\partial x_{m,d,p}$"),),
              text=r"BatchNorm's formula applied as is: InstanceNorm's statistics run over "
                   r"the positions $h$, not over the batch.",
              assumptions=both, source=SOURCE, expected="refuted", operator="instance_norm"),
        Claim("family.mutant.gn-wrong-axis", "GroupNorm's backward over the groups instead of "
              "within one", N,
              (Equation(Grad(gn_loss, x[m, r_, l_]),
                        ((gtg(r_, l_) - Q.mean(gtg(q, l_), q) - gn_xh_wrong(r_)
                          * Q.mean(gtg(q, l_) * gn_xh_wrong(q), q)) / s_gn_wrong)
                        ,
                        r"$\partial\ell/\partial x_{m,r,l}$"),),
              text=r"LayerNorm's formula with the means over the groups $q$: GroupNorm's "
                   r"statistics run over the channels $k$ within a group.",
              assumptions=both, source=SOURCE, expected="refuted", operator="group_norm"),
        Claim("family.mutant.wn-no-projection", "Weight normalization's gradient without the "
              "projection", J,
              (Equation(Grad(wn_loss, v[i_]), gain * gw[i_] / sp.sqrt(norm2),
                        r"$\partial\ell/\partial v_i$"),),
              text=r"The chain rule through $1/\lVert v\rVert$ subtracts the component along "
                   r"$v$; without it the gradient is not orthogonal to $v$.",
              assumptions=(r"v \ne 0",), source=SOURCE, expected="refuted",
              domain=(norm2,), operator="weight_norm"),
        Claim("family.mutant.wn-gain-unnormalized", "Weight normalization's gain gradient "
              "without the norm", J,
              (Equation(Grad(wn_loss, gain), J.sum(gw[j] * v[j], j),
                        r"$\partial\ell/\partial\gamma$"),),
              text=r"$\partial\ell/\partial\gamma = \langle\nabla_w\ell, v\rangle/\lVert v\rVert$:"
                   r" dropping $\lVert v\rVert$ is right only on the unit sphere.",
              assumptions=(r"v \ne 0",), source=SOURCE, expected="refuted",
              domain=(norm2,), operator="weight_norm"),
        Claim("family.mutant.gn-group-bias-per-channel", "GroupNorm removes a per-channel bias",
              N,
              (Equation(standardize(x[n, q, k] + b[k], k, eps), standardize(x[n, q, k], k, eps),
                        r"$\operatorname{GN}(x + b_k) = \operatorname{GN}(x)$"),),
              text=r"A bias indexed by the channel within the group varies along the axis "
                   r"GroupNorm averages over.",
              assumptions=(r"\epsilon > 0",), source=SOURCE, expected="refuted",
              operator="group_norm"),
        Claim("family.mutant.rms-removes-sample-bias", "RMSNorm removes a per-sample bias", N,
              (Equation(rms(x[n, c_] + b[n], c_, eps), rms(x[n, c_], c_, eps),
                        r"$\operatorname{RMS}(x + a_n) = \operatorname{RMS}(x)$"),),
              text=r"LayerNorm removes it by centering; RMSNorm does not center.",
              assumptions=(r"\epsilon > 0",), source=SOURCE, expected="refuted",
              operator="rms_norm"),
    ]
