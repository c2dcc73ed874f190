"""[BN] section 3, Algorithm 1 and 2, section 3.3, and what they mean for training.

Algorithm 1 over a mini-batch of m values x_1..x_m: mu = (1/m) sum x_i, sigma^2 = (1/m)
sum (x_i - mu)^2 (biased), xhat_i = (x_i - mu)/sqrt(sigma^2 + eps), y_i = gamma xhat_i + beta.
The loss l is arbitrary; g_i = dl/dy_i are arbitrary numbers, and a claim about the gradient of
every l is proved on the probe L = sum_i g_i y_i, exactly as in the centering report.

The paper's backward pass differentiates by intermediate nodes of the computation (xhat,
sigma^2, mu).  Such a partial derivative holds the node's inputs fixed: it is written here with
the node as a free symbol and ``Grad(..., node, at=value)``, so each of the six equations is
checked against differentiation of the computation itself, and the last one against the total
derivative of l(y(x)).
"""

from __future__ import annotations

import inspect

import sympy as sp

from .. import simulation
from ..calculus import BOUND_INDICES, Batch, Grad, held
from ..core import Claim, Equation
from ..corroboration import Corroboration
from ..frameworks import kernel
from ..verify import Settings
from . import bn_kernel

SOURCE = r"[BN] \S 3, Algorithm 1"

# The two-input unit's proofs take several seconds with every step re-checked: room to spare
# on a loaded machine, so that the verdicts (and the report's bytes) do not depend on its load.
SETTINGS = Settings(budget=40.0, explicit_budget=40.0)

B = Batch("m")
m = B.size
x = B.samples("x")                 # the mini-batch of one activation
g = B.samples("g")                 # g_i = dl/dy_i, arbitrary
h = B.samples(r"\hat x")           # xhat as a node of the computation
u, v = B.samples("u"), B.samples("v")  # a unit's two inputs, x_i = w_1 u_i + w_2 v_i
z = B.samples("z")                 # a mini-batch used to estimate the population variance
i, k = B.index("i"), B.index("k")
gamma, beta = B.params(r"\gamma", r"\beta")
eps = B.param(r"\epsilon", positive=True)          # the paper's epsilon > 0
eps_ge0 = B.param(r"\epsilon", nonnegative=True)   # "for every epsilon >= 0"
c = B.param("c")
a = B.param("a", positive=True)
w1, w2 = B.params("w_1", "w_2")
w = B.param("w", positive=True)
eta = B.param(r"\eta", positive=True)
C = B.param("C")
MU = B.param(r"\mu_{\mathcal B}")            # the node mu_B
VAR = B.param(r"{\sigma^{2}_{\mathcal B}}")   # the node sigma^2_B
W1 = B.param(r"w_1'")              # the node (a w)_1
EX, VX = B.param(r"\operatorname{E}[x]"), B.param(r"\operatorname{Var}[x]", positive=True)
x_inf = B.param("x")               # an input at inference time


def mean(e):
    return B.mean(e, i)


def total(e):
    return B.sum(e, i)


def at(e, index):
    """``e``, an expression of the sample index i, for sample ``index``."""
    return e.xreplace({i: index})


def normalize(value, epsilon):
    """Algorithm 1's xhat_i for the batch whose sample i is ``value``."""
    mu = mean(value)
    return (value - mu) / sp.sqrt(mean((value - mu) ** 2) + epsilon)


def probe(value, epsilon, affine=True):
    """L = sum_i g_i y_i: its derivative is that of any loss with dl/dy_i = g_i."""
    xhat = normalize(value, epsilon)
    return total(g[i] * (gamma * xhat + beta)) if affine else total(g[i] * xhat)


mu = mean(x[i])
var = mean((x[i] - mu) ** 2)
s = sp.sqrt(var + eps)
xhat = (x[i] - mu) / s
loss = probe(x[i], eps)

# The paper's six equations, right-hand sides as printed there, each node's derivative inserted.
dl_dxhat = g[i] * gamma
dl_dvar = total(dl_dxhat * (x[i] - mu)) * sp.Rational(-1, 2) * (var + eps) ** sp.Rational(-3, 2)
dl_dmu = total(dl_dxhat * (-1 / s)) + dl_dvar * total(-2 * (x[i] - mu)) / m
dl_dx = at(dl_dxhat, k) / s + dl_dvar * 2 * (x[k] - mu) / m + dl_dmu / m
compact = gamma / (m * s) * (m * g[k] - total(g[i]) - at(xhat, k) * total(g[i] * xhat))

# The computation with a node set free: sigma^2 as VAR, mu as MU (sigma^2 then depends on MU).
loss_at_var = total(g[i] * (gamma * (x[i] - mu) / sp.sqrt(VAR + eps) + beta))
loss_at_mu = total(g[i] * (gamma * (x[i] - MU) / sp.sqrt(mean((x[i] - MU) ** 2) + eps) + beta))

EPS0 = (r"\epsilon = 0", r"\sigma^2 > 0 \text{ (not all } x_i \text{ equal)}", r"m \ge 2")
ARBITRARY = r"g_i = \partial\ell/\partial y_i \text{ arbitrary}"


def variance(value):
    """sigma^2 of the batch whose sample i is ``value``."""
    return mean((value - mean(value)) ** 2)


def unit(first, second, epsilon=0):
    """A unit with two inputs and weights (first, second), normalized over the batch."""
    return normalize(first * u[i] + second * v[i], epsilon)


def lemma_claims() -> list[Claim]:
    return [
        Claim(
            "bn.lemma.centered-sum", "Deviations from the mean sum to zero", B,
            (Equation(total(x[i] - mu), sp.S.Zero, r"$\sum_i (x_i - \mu) = 0$"),),
            text=r"Because $\mu$ is the mean, $\sum_i (x_i - \mu) = m\mu - m\mu = 0$, for "
                 r"every batch.",
            assumptions=(r"m \ge 1",), source="Algorithm 1", expected="proved"),
        Claim(
            "bn.lemma.normalized-squares", "The normalized batch: mean 0, mean square below 1", B,
            (Equation(total(xhat), sp.S.Zero, r"$\sum_i \hat x_i = 0$"),
             Equation(total(xhat ** 2), m * var / (var + eps),
                      r"$\sum_i \hat x_i^2 = m\sigma^2/(\sigma^2+\epsilon)$")),
            text=r"$\hat x$ has mean $0$ and mean square $\sigma^2/(\sigma^2+\epsilon)$: "
                 r"exactly $1$ only at $\epsilon = 0$ -- the root of every $\epsilon$ caveat "
                 r"below.",
            assumptions=(r"m \ge 1", r"\epsilon > 0"), source="Algorithm 1",
            uses=("bn.lemma.centered-sum",), expected="proved"),
    ]


# -- the verified kernel: the backward formulas as a torch.autograd.Function ------------------

def kernel_formulas() -> kernel.Formulas:
    """The formulas the kernel's backward pass evaluates: the compact one for the input, the
    derivatives by gamma and beta for the parameters."""
    by_id = {c.id: c for c in backward_claims()}
    return kernel.Formulas(by_id["bn.backward.compact"], by_id["bn.backward.dl-dgamma"],
                           by_id["bn.backward.dl-dbeta"], m, x, g, gamma, eps)


def kernel_gradcheck(claim: Claim) -> dict:
    """torch.autograd.gradcheck on the kernel whose input gradient is ``claim``'s formula."""
    return kernel.gradcheck(claim, formulas=kernel_formulas())


def implementation_check(claim: Claim) -> dict:
    """The implementer's NumPy backward pass of the report, float32 and float64, against
    torch's."""
    return kernel.implementation_check(bn_kernel.bn_backward)


kernel.provide(kernel_formulas)

# the torch layer of the compact formula also checks the kernel built from it, then the NumPy
# implementation the report prints
KERNEL_CHECKS = (
    Corroboration("torch", kernel_gradcheck, key="gradcheck",
                  failure=kernel.gradcheck_failure, note=kernel.gradcheck_note),
    Corroboration("torch", implementation_check, key="implementation",
                  failure=kernel.implementation_failure),
)


def backward_claims() -> list[Claim]:
    both = (r"m \ge 1", r"\epsilon > 0", ARBITRARY)
    return [
        Claim(
            "bn.backward.dl-dxhat", "The derivative by the normalized value", B,
            (Equation(Grad(total(g[i] * (gamma * h[i] + beta)), h[k]), at(dl_dxhat, k),
                      r"$y_i = \gamma\hat x_i + \beta$ with $\hat x$ as a node"),),
            text=r"The first equation of the backward pass: "
                 r"$\partial\ell/\partial\hat x_i = \partial\ell/\partial y_i\cdot\gamma$.",
            assumptions=both, source=SOURCE, expected="proved"),
        Claim(
            "bn.backward.dl-dvar", "The derivative by the variance", B,
            (Equation(Grad(loss_at_var, VAR, at=var), dl_dvar,
                      r"derivative by the node $\sigma^2$"),),
            text=r"$\partial\ell/\partial\sigma^2 = \sum_i \partial\ell/\partial\hat x_i\cdot"
                 r"(x_i-\mu)\cdot(-\tfrac12)(\sigma^2+\epsilon)^{-3/2}$: the node $\sigma^2$ "
                 r"enters every $\hat x_i$ through $1/\sqrt{\sigma^2+\epsilon}$.",
            assumptions=both, source=SOURCE, uses=("bn.backward.dl-dxhat",),
            expected="proved"),
        Claim(
            "bn.backward.dl-dmu", "The derivative by the mean", B,
            (Equation(Grad(loss_at_mu, MU, at=mu), dl_dmu,
                      r"derivative by the node $\mu$, through $\hat x$ and $\sigma^2$"),),
            text=r"$\partial\ell/\partial\mu = \bigl(\sum_i \partial\ell/\partial\hat x_i\cdot"
                 r"\tfrac{-1}{\sqrt{\sigma^2+\epsilon}}\bigr) + \partial\ell/\partial\sigma^2"
                 r"\cdot\tfrac1m\sum_i -2(x_i-\mu)$: $\mu$ enters each $\hat x_i$ and also "
                 r"$\sigma^2$.",
            assumptions=both, source=SOURCE, uses=("bn.backward.dl-dvar",),
            expected="proved"),
        Claim(
            "bn.backward.mu-variance-term-vanishes", "The variance term of the derivative by the mean "
            "is zero", B,
            (Equation(dl_dvar * total(-2 * (x[i] - mu)) / m, sp.S.Zero,
                      r"since $\sum_i (x_i - \mu) = 0$"),
             Equation(Grad(loss_at_mu, MU, at=mu), total(dl_dxhat * (-1 / s)),
                      r"so $\partial\ell/\partial\mu$ is its first term")),
            text=r"The paper keeps a term that is identically zero: $\sum_i (x_i - \mu) = 0$ "
                 r"for every batch, because $\mu$ is the mean. Implementations may drop it.",
            assumptions=both, source=SOURCE, uses=("bn.backward.dl-dmu",), expected="proved"),
        Claim(
            "bn.backward.dl-dx", "The derivative by the input", B,
            (Equation(Grad(loss, x[k]), dl_dx, "total derivative of the loss"),),
            text=r"$\partial\ell/\partial x_i = \partial\ell/\partial\hat x_i\cdot"
                 r"\tfrac{1}{\sqrt{\sigma^2+\epsilon}} + \partial\ell/\partial\sigma^2\cdot"
                 r"\tfrac{2(x_i-\mu)}{m} + \partial\ell/\partial\mu\cdot\tfrac1m$, with the three "
                 r"partials above, equals the total derivative of $\ell(y(x))$.",
            assumptions=both, source=SOURCE, uses=("bn.backward.dl-dmu",), expected="proved"),
        Claim(
            "bn.backward.dl-dgamma", "The derivative by the scale gamma", B,
            (Equation(Grad(loss, gamma), total(g[i] * xhat), "derivative by the scale"),),
            text=r"$\partial\ell/\partial\gamma = \sum_i \partial\ell/\partial y_i\cdot\hat x_i$.",
            assumptions=both, source=SOURCE, expected="proved"),
        Claim(
            "bn.backward.dl-dbeta", "The derivative by the shift beta", B,
            (Equation(Grad(loss, beta), total(g[i]), "derivative by the shift"),),
            text=r"$\partial\ell/\partial\beta = \sum_i \partial\ell/\partial y_i$.",
            assumptions=both, source=SOURCE, expected="proved"),
        Claim(
            "bn.backward.compact", "The compact backward formula", B,
            (Equation(Grad(loss, x[k]), compact, "total derivative of the loss"),),
            text=r"Collecting terms, $\partial\ell/\partial x_i = \frac{\gamma}{m\,s}\bigl(m g_i"
                 r" - \sum_j g_j - \hat x_i\sum_j g_j\hat x_j\bigr)$ with "
                 r"$s = \sqrt{\sigma^2+\epsilon}$: the form kernels implement.",
            assumptions=both, source="the form implementations use",
            uses=("bn.backward.dl-dx",), expected="proved",
            corroborations=KERNEL_CHECKS),
        Claim(
            "bn.jacobian", "The Jacobian of the normalization", B,
            (Equation(Grad(at(xhat, k), x[i]),
                      (sp.KroneckerDelta(i, k) - 1 / m - xhat * at(xhat, k) / m) / s,
                      "entries of the Jacobian"),),
            text=r"$\partial\hat x_k/\partial x_i = \frac1s\bigl(\delta_{ik} - \frac1m - "
                 r"\frac{\hat x_i\hat x_k}{m}\bigr)$, exactly, with $\epsilon$ "
                 r"($\delta_{ik}$ is 1 when $i = k$, else 0). It removes the direction "
                 r"$\mathbf 1$ (all ones) for every $\epsilon$; only at $\epsilon = 0$ is the "
                 r"bracket a projection, which also removes $\hat x$.",
            assumptions=(r"m \ge 1", r"\epsilon > 0"), source=SOURCE, expected="proved"),
    ]


def identity_claims() -> list[Claim]:
    loss0 = probe(x[i], eps_ge0)
    grad_k = Grad(loss, x[k])
    return [
        Claim(
            "bn.gradient-sums-to-zero", "The input gradient sums to zero", B,
            (Equation(B.sum(Grad(loss0, x[k]), k), sp.S.Zero, r"$\sum_i\partial\ell/\partial x_i$"),),
            text=r"For every $\epsilon \ge 0$, $\sum_i \partial\ell/\partial x_i = 0$: the "
                 r"gradient has no component along $\mathbf 1$, the direction a bias moves $x$.",
            assumptions=(r"m \ge 1", r"\epsilon \ge 0", r"\sigma^2 + \epsilon > 0", ARBITRARY),
            source="a consequence of Algorithm 1", expected="proved",
            domain=(mean((x[i] - mu) ** 2) + eps_ge0,)),
        Claim(
            "bn.gradient-orthogonal-to-xhat", "Orthogonal to the normalized batch? Not with epsilon > 0",
            B,
            (Equation(B.sum(at(xhat, k) * grad_k, k), sp.S.Zero,
                      r"$\sum_i \hat x_i\,\partial\ell/\partial x_i$"),),
            text=r"The often quoted $\sum_i \hat x_i\,\partial\ell/\partial x_i = 0$ is false for "
                 r"$\epsilon > 0$: the sum is $\gamma\epsilon\sum_j g_j\hat x_j/s^3$.",
            assumptions=(r"m \ge 1", r"\epsilon > 0", ARBITRARY),
            source="a consequence of Algorithm 1", expected="refuted"),
        Claim(
            "bn.gradient-orthogonal-to-xhat-eps0", "Orthogonal to the normalized batch at epsilon = 0",
            B,
            (Equation(B.sum(at(normalize(x[i], 0), k) * Grad(probe(x[i], 0), x[k]), k),
                      sp.S.Zero, r"$\sum_i \hat x_i\,\partial\ell/\partial x_i$"),),
            text=r"At $\epsilon = 0$ the gradient is orthogonal to $\hat x$ as well.",
            assumptions=EPS0 + (ARBITRARY,), source="a consequence of Algorithm 1",
            expected="proved", min_size=2,
            domain=(var,)),
    ]


def invariance_claims() -> list[Claim]:
    return [
        Claim(
            "bn.shift-invariance", "A shift before the normalization is invisible", B,
            (Equation(normalize(x[i] + c, eps_ge0), normalize(x[i], eps_ge0),
                      r"$\mathrm{BN}(x + c\mathbf 1) = \mathrm{BN}(x)$"),),
            text=r"Adding $c$ to every sample moves $\mu$ by $c$ and leaves $\sigma^2$ "
                 r"unchanged, for every $\epsilon \ge 0$: a bias before BN is redundant.",
            assumptions=(r"m \ge 1", r"\epsilon \ge 0", r"\sigma^2 + \epsilon > 0",
                         r"c \text{ arbitrary}"),
            source=r"[BN] \S 3.2", expected="proved", domain=(var + eps_ge0,)),
        Claim(
            "bn.scale-invariance", "Scale invariance fails for epsilon > 0", B,
            (Equation(normalize(a * x[i], eps), normalize(x[i], eps),
                      r"$\mathrm{BN}(a x) = \mathrm{BN}(x)$"),),
            text=r"With $\epsilon > 0$, $\mathrm{BN}(ax)_i = a(x_i-\mu)/\sqrt{a^2\sigma^2+"
                 r"\epsilon}$, which differs from $\mathrm{BN}(x)_i$ unless $a = 1$.",
            assumptions=(r"m \ge 1", r"a > 0", r"\epsilon > 0"), source=r"[BN] \S 3.3",
            expected="refuted"),
        Claim(
            "bn.scale-invariance-eps0", "Scale invariance at epsilon = 0", B,
            (Equation(normalize(a * x[i], 0), normalize(x[i], 0),
                      r"$\mathrm{BN}(a x) = \mathrm{BN}(x)$"),),
            text=r"At $\epsilon = 0$ and $a > 0$, $\mu$ and $\sigma$ both scale by $a$.",
            assumptions=(r"a > 0",) + EPS0, source=r"[BN] \S 3.3", expected="proved",
            min_size=2,
            domain=(var,)),
        Claim(
            "bn.scale-invariance-eps0-negative", "... but not for a negative factor", B,
            (Equation(normalize(-a * x[i], 0), normalize(x[i], 0),
                      r"$\mathrm{BN}(-a x) = \mathrm{BN}(x)$"),),
            text=r"A negative factor flips the sign of $\hat x$: $\sigma$ scales by $|a|$.",
            assumptions=(r"a > 0",) + EPS0, source=r"[BN] \S 3.3", expected="refuted",
            min_size=2,
            domain=(var,)),
        Claim(
            "bn.scale-eps-rescale", "A scale acts as a change of epsilon", B,
            (Equation(normalize(a * x[i], eps), normalize(x[i], eps / a ** 2),
                      r"$\mathrm{BN}_\epsilon(a x) = \mathrm{BN}_{\epsilon/a^2}(x)$"),),
            text=r"Scaling the batch by $a > 0$ is exactly a change of $\epsilon$ to "
                 r"$\epsilon/a^2$: $\mathrm{BN}_\epsilon(ax)$ is close to "
                 r"$\mathrm{BN}_\epsilon(x)$ when both $\epsilon$ and $\epsilon/a^2$ are "
                 r"small beside $\sigma^2_{\mathcal B}$, that is when "
                 r"$\min(1, a^2)\,\sigma^2_{\mathcal B} \gg \epsilon$.",
            assumptions=(r"m \ge 1", r"a > 0", r"\epsilon > 0"), source=r"[BN] \S 3.3",
            uses=("bn.scale-invariance",), expected="proved"),
        Claim(
            "bn.scale.input-gradient", "Scaled weights, same input gradient", B,
            (Equation(Grad(total(g[i] * unit(a * w1, a * w2)), u[k]),
                      Grad(total(g[i] * unit(w1, w2)), u[k]),
                      r"$\partial\mathrm{BN}((aW)u)/\partial u = \partial\mathrm{BN}(Wu)/"
                      r"\partial u$"),),
            text=r"For a unit $x_i = w_1u_i + w_2v_i$ (a row of $W$ with two inputs), scaling "
                 r"the weights by $a > 0$ leaves the gradient by the inputs unchanged.",
            assumptions=(r"a > 0",) + EPS0 + (ARBITRARY,), source=r"[BN] \S 3.3",
            uses=("bn.scale-invariance-eps0",), expected="proved", min_size=2,
            domain=(variance(w1 * u[i] + w2 * v[i]),), explicit_up_to=5),
        Claim(
            "bn.scale.weight-gradient", "Larger weights, smaller gradients", B,
            (Equation(Grad(total(g[i] * unit(W1, a * w2)), W1, at=a * w1),
                      Grad(total(g[i] * unit(w1, w2)), w1) / a,
                      r"$\partial\mathrm{BN}((aW)u)/\partial(aW) = \frac1a\,"
                      r"\partial\mathrm{BN}(Wu)/\partial W$"),),
            text=r"The gradient by the scaled weight is the unscaled gradient divided by $a$: "
                 r"scaling the weights up scales their gradient down, which [BN] credits with "
                 r"stabilizing the parameter growth.",
            assumptions=(r"a > 0",) + EPS0 + (ARBITRARY,), source=r"[BN] \S 3.3",
            uses=("bn.scale-invariance-eps0",), expected="proved", min_size=2,
            domain=(variance(w1 * u[i] + w2 * v[i]),), explicit_up_to=5),
        Claim(
            "bn.inference-affine", "Inference is an affine map", B,
            (Equation(gamma * (x_inf - EX) / sp.sqrt(VX + eps) + beta,
                      gamma / sp.sqrt(VX + eps) * x_inf
                      + (beta - gamma * EX / sp.sqrt(VX + eps)),
                      "Algorithm 2, step 11"),
             Equation(m / (m - 1) * mean((z[i] - mean(z[i])) ** 2),
                      total((z[i] - mean(z[i])) ** 2) / (m - 1),
                      r"$\tfrac{m}{m-1}\sigma^2_{\mathcal B}$ is the unbiased variance")),
            text=r"With the population statistics fixed, the layer is the affine map "
                 r"$x \mapsto \frac{\gamma}{\sqrt{\operatorname{Var}[x]+\epsilon}}x + \bigl(\beta -"
                 r"\frac{\gamma\operatorname{E}[x]}{\sqrt{\operatorname{Var}[x]+\epsilon}}\bigr)$; "
                 r"$\operatorname{Var}[x]$ averages the unbiased batch variances "
                 r"$\frac{m}{m-1}\sigma^2_{\mathcal B}$.",
            assumptions=(r"m \ge 2", r"\epsilon > 0", r"\operatorname{Var}[x] > 0"),
            source=r"[BN] Algorithm 2", expected="proved", min_size=2),
    ]


def training_claims() -> list[Claim]:
    n = Batch("n")                       # the weight vector's n components
    wv, q = n.samples("w"), n.samples("q")   # q_k = dl/dv_k at v = w/||w||, arbitrary
    j = n.index("k")
    norm = sp.sqrt(n.sum(wv[j] ** 2, j))
    scale_free = n.sum(q[j] * wv[j] / norm, j)   # l(w) = l(w/||w||), to first order
    grad = Grad(scale_free, wv[j])
    naive = total(g[i] * held(normalize(w * u[i], 0)))
    u_scale = sp.sqrt(mean((u[i] - mean(u[i])) ** 2))
    return [
        Claim(
            "train.weight-orthogonal", "The gradient is orthogonal to the weights", n,
            (Equation(n.sum(wv[j] * grad, j), sp.S.Zero, r"$\langle w, \nabla_w\ell\rangle$"),),
            text=r"If $\ell(cw) = \ell(w)$ for every $c > 0$ -- as for a weight vector followed "
                 r"by BN with $\epsilon = 0$ -- then $\ell(w) = \ell(w/\lVert w\rVert)$; with "
                 r"$q_k = \partial\ell/\partial v_k$ at $v = w/\lVert w\rVert$ arbitrary, "
                 r"$\langle w, \nabla_w\ell\rangle = 0$ in every dimension $n$.",
            assumptions=(r"n \ge 1", r"w \ne 0", r"q_k \text{ arbitrary}"),
            source=r"[BN] \S 3.3", uses=("bn.scale-invariance-eps0",), expected="proved"),
        Claim(
            "train.weight-norm-growth", "Gradient descent grows the weights", n,
            (Equation(n.sum((wv[j] - eta * grad) ** 2, j),
                      n.sum(wv[j] ** 2, j) + eta ** 2 * n.sum(grad ** 2, j),
                      r"$\lVert w - \eta\nabla\ell\rVert^2$"),),
            text=r"Because the step is orthogonal to $w$, $\lVert w - \eta\nabla\ell\rVert^2 = "
                 r"\lVert w\rVert^2 + \eta^2\lVert\nabla\ell\rVert^2$: the norm never shrinks, "
                 r"and since $\nabla\ell$ scales like $1/\lVert w\rVert$ the effective step on "
                 r"the direction is $\eta/\lVert w\rVert^2$.",
            assumptions=(r"n \ge 1", r"w \ne 0", r"\eta > 0"), source=r"[BN] \S 3.3",
            uses=("train.weight-orthogonal",), expected="proved",
            corroborations=(Corroboration("simulation", simulation.norm_growth_evidence),)),
        Claim(
            "train.naive-scale-step", "The naive step on a scale", B,
            (Equation(normalize(w * u[i], 0), normalize(u[i], 0),
                      r"$\hat x$ does not depend on $w > 0$"),
             Equation(Grad(naive, w), total(g[i] * u[i]) / u_scale / w,
                      r"naive gradient $C/w$, $C = \sum_i g_i u_i/\sigma_u$"),
             Equation((w - eta * C / w) ** 2, w ** 2 - 2 * eta * C + eta ** 2 * C ** 2 / w ** 2,
                      r"the step $w \leftarrow w - \eta C/w$ on $w^2$"),
             Equation(normalize(-w * u[i], 0), -normalize(u[i], 0),
                      r"past $0$, $\hat x$ flips sign")),
            text=r"A scalar weight $x_i = w u_i$ followed by BN at $\epsilon = 0$, statistics "
                 r"held: $\hat x$, hence $\ell$ and $g$, do not depend on $w > 0$, and the naive "
                 r"step is $w \leftarrow w - \eta C/w$ with $C$ constant on a fixed batch. Then "
                 r"$w_{t+1}^2 = w_t^2 - 2\eta C + \eta^2C^2/w_t^2$: for $C < 0$, $w_t^2 \ge "
                 r"w_0^2 + 2\eta|C|t$ grows like $t$; for $C > 0$, $w$ shrinks until "
                 r"$w^2 < \eta C$, where one step crosses $0$ and $\hat x$ flips sign.",
            assumptions=(r"w > 0", r"\eta > 0") + EPS0 + (ARBITRARY,),
            source=r"[BN] \S 2", uses=("bn.scale-invariance-eps0",), expected="proved",
            min_size=2,
            domain=(variance(u[i]),),
            corroborations=(Corroboration("simulation", simulation.naive_scale_evidence),)),
    ]


def claims() -> list[Claim]:
    return (lemma_claims() + backward_claims() + identity_claims() + invariance_claims()
            + training_claims())


# -- the report --------------------------------------------------------------------------------

NORM_CAPTION = (
    r"\texttt{train.weight-norm-growth}, simulated: $x_i = \langle w, u_i\rangle$ with three "
    r"inputs, normalized at $\epsilon = 0$, trained through the statistics on a fixed batch of "
    r"16 (squared error). (a) $\lVert w_t\rVert$ (circles) lies on the proved recurrence: it "
    r"only grows, fast while the gradient is large, and stops growing as the loss converges. "
    r"(b) The same on log axes next to the naive step on a scalar weight with the statistics "
    r"held and $C < 0$: that one grows like $\sqrt t$ without end, on the proved "
    r"$\sqrt{w_0^2 + 2\eta|C|t}$.")
NAIVE_SCALE_CAPTION = (
    r"\texttt{train.naive-scale-step}, simulated: $x_i = w u_i$ normalized at $\epsilon = 0$, "
    r"targets that ask for $w < 0$, so $C > 0$; $\eta$ is chosen so that $w$ reaches $0$ "
    r"halfway. (a) With the statistics held, $w_t$ (circles) follows $w \leftarrow w - \eta "
    r"C/w$, ever faster, and one step jumps across $0$ exactly where the recurrence predicts "
    r"(dotted); through the statistics the gradient is $0$ and $w$ stays put. (b) At the "
    r"crossing $\hat x$ flips sign and the loss jumps: the training signal was never about "
    r"$w$'s size, which the normalization removes.")

def _folds():
    """Sums a derivation writes out, put back as the batch statistics they are:
    sum_j x_j = m mu_B and sum_j x_j^2 = m (sigma_B^2 + mu_B^2)."""
    j = BOUND_INDICES[0]
    return ((B.sum(x[j], j), m * MU), (B.sum(x[j] ** 2, j), m * (VAR + MU ** 2)))


IMPLEMENTER = r"""What an implementer of a custom kernel needs, with every line a proved
claim. Per channel, over the $m$ values the statistics are taken over -- the batch of $N$ for
a fully connected layer, the $N \cdot H \cdot W$ values of a batch of $H \times W$ feature
maps for a convolution:
\begin{center}\fbox{\begin{minipage}{0.9\linewidth}
\textbf{Forward} (training): \quad
$\mu_{\mathcal B} = \frac1m\sum_i x_i, \quad
 \sigma^2_{\mathcal B} = \frac1m\sum_i (x_i - \mu_{\mathcal B})^2, \quad
 r = (\sigma^2_{\mathcal B} + \epsilon)^{-1/2}, \quad
 \hat x_i = (x_i - \mu_{\mathcal B})\,r, \quad y_i = \gamma\hat x_i + \beta$.
Cache $\hat x$ and $r$.\par\smallskip
\textbf{Backward}, with $dy_i = \partial\ell/\partial y_i$:
\[ d\beta = \sum_i dy_i, \qquad d\gamma = \sum_i dy_i\,\hat x_i, \qquad
   dx_i = \frac{\gamma\,r}{m}\bigl(m\,dy_i - d\beta - \hat x_i\,d\gamma\bigr). \]
\end{minipage}}\end{center}
$d\beta$ is {{claim:bn.backward.dl-dbeta}}, $d\gamma$ is {{claim:bn.backward.dl-dgamma}},
and $dx$ is the compact formula ({{claim:bn.backward.compact}}), which reuses $d\beta$ and
$d\gamma$: one pass of two reductions per channel. In NumPy, for $(N, C)$ or $(N, C, H, W)$
arrays (this is the code the report runs):
\begin{verbatim}
""" + inspect.getsource(bn_kernel.bn_backward).rstrip() + r"""
\end{verbatim}
It agrees with PyTorch's own backward pass of \texttt{batch\_norm} in training mode, on
random batches of shapes $(16, 4)$, $(256, 3)$ and $(8, 3, 5, 5)$ with $\epsilon = 10^{-5}$:
{{implementation:bn.backward.compact}}
\textbf{Where $\epsilon$ matters.} For a positive factor $a$ on the input (or on the weights
before BN), with $\mathrm{BN}$ before its affine $\gamma, \beta$:
\begin{center}\small\begin{tabular}{@{}lll@{}}
\toprule
 & $\epsilon = 0$ & $\epsilon > 0$ \\ \midrule
output, $a > 0$ & $\mathrm{BN}(ax) = \mathrm{BN}(x)$ & $\mathrm{BN}_\epsilon(ax) =
  \mathrm{BN}_{\epsilon/a^2}(x) \ne \mathrm{BN}_\epsilon(x)$ \\
output, $a < 0$ & $\mathrm{BN}(ax) \ne \mathrm{BN}(x)$: the sign flips & not claimed \\
$\partial/\partial u$, weights $aW$ & unchanged & not claimed \\
$\partial/\partial W$, weights $aW$ & divided by $a$ & not claimed \\
$\sum_i \hat x_i\,\partial\ell/\partial x_i$ & $0$ & $\gamma\epsilon\,r^3\sum_j g_j\hat x_j$ \\
\bottomrule
\end{tabular}\end{center}
The claims: {{claim:bn.scale-invariance-eps0}}, {{claim:bn.scale-invariance-eps0-negative}},
{{claim:bn.scale-invariance}} and {{claim:bn.scale-eps-rescale}}, the gradients
{{claim:bn.scale.input-gradient}} and {{claim:bn.scale.weight-gradient}}, and the last row
{{claim:bn.gradient-orthogonal-to-xhat-eps0}} and {{claim:bn.gradient-orthogonal-to-xhat}}.
A bias before BN is removed for every $\epsilon$ ({{claim:bn.shift-invariance}}): BN's
$\beta$ takes its place."""


def story():
    from ..story import Section, Story

    return Story(
        name="batchnorm",
        title=r"Full batch normalization: Ioffe \& Szegedy, \S 3 and Algorithms 1--2, "
              r"checked for every batch size",
        abstract=(
            r"The centering report showed why a gradient step that ignores the batch mean "
            r"achieves nothing. The paper goes on: the problem ``can get worse if the "
            r"normalization not only centers but also scales'', and \S 3 gives the chain-rule "
            r"equations every implementation of batch normalization is built from, \S 3.3 the "
            r"claim that it makes a layer invariant to the scale of its weights. This report "
            r"checks all of them for a symbolic batch size $m$: each equation of the backward "
            r"pass against differentiation of the computation itself, the compact form kernels "
            r"implement, the invariances, Algorithm 2, and what they imply for training. "
            r"Several statements hold only when $\epsilon = 0$, which the paper neglects: those "
            r"are refuted for $\epsilon > 0$ with the exact residual and proved at "
            r"$\epsilon = 0$."),
        opening=(Section("The backward pass, for implementers", IMPLEMENTER),),
        sections=(
            Section(
                "From centering to normalization",
                r"""Algorithm 1 of [BN] normalizes one activation over a mini-batch
$\mathcal B = \{x_1, \dots, x_m\}$:
\[ \mu = \frac1m\sum_{i=1}^m x_i, \qquad
   \sigma^2 = \frac1m\sum_{i=1}^m (x_i - \mu)^2, \qquad
   \hat x_i = \frac{x_i - \mu}{\sqrt{\sigma^2 + \epsilon}}, \qquad
   y_i = \gamma\hat x_i + \beta. \]
The variance is the biased one, as in the paper; we write $s = \sqrt{\sigma^2 + \epsilon}$.
The statements below print these statistics by their names $\mu$, $\sigma^2$ and $s$
(and $\mu_u$, $\sigma_u$ for a batch $u$); each stands for the mean it is, and the proofs
work with the means themselves.
The loss $\ell$ is any function of $y_1, \dots, y_m$, and $g_i = \partial\ell/\partial y_i$
are arbitrary numbers: as in the centering report, a claim about the gradient of every loss
is stated for the probe $L = \sum_i g_i y_i$, whose derivative at a point is that of $\ell$.

\textbf{Why scaling makes the naive step worse.} Centering alone made a step that ignores
$\mu$ useless: the bias drifted and nothing changed. With the division by $\sigma$ the same
neglect is harmful: a step that holds $\mu$ and $\sigma$ fixed sees $\hat x$ depend on the
weight, while the true $\hat x$ does not (at $\epsilon = 0$); Section~\ref{sec:training}
works out the step and shows that it drives the weight through $0$. The proofs use two
identities of the batch statistics, first.""",
                ("bn.lemma.centered-sum", "bn.lemma.normalized-squares"),
            ),
            Section(
                r"The backward pass, equation by equation",
                r"""Section 3 of [BN] displays six equations, in this order. Three of them
differentiate by an intermediate node of the computation: $\hat x_i$, $\sigma^2$ and $\mu$.
Such a partial derivative holds the node's own inputs fixed and lets everything computed
\emph{from} the node vary: $\partial\ell/\partial\sigma^2$ treats $\sigma^2$ as a free
variable in $\hat x_i = (x_i - \mu)/\sqrt{\sigma^2 + \epsilon}$, and
$\partial\ell/\partial\mu$ treats $\mu$ as free both in $\hat x_i$ and in
$\sigma^2 = \frac1m\sum_i (x_i - \mu)^2$. We state each equation exactly so, as the
derivative by the node evaluated at the node's value
$\left.\partial/\partial\sigma^2\,(\cdots)\right|_{\sigma^2 = \dots}$, and insert into its
right-hand side the formulas proved before it, so that the last one is checked against the
total derivative of $\ell(y(x))$.""",
                ("bn.backward.dl-dxhat", "bn.backward.dl-dvar", "bn.backward.dl-dmu",
                 "bn.backward.mu-variance-term-vanishes", "bn.backward.dl-dx",
                 "bn.backward.dl-dgamma", "bn.backward.dl-dbeta"),
                after=r"""All six equations are right, for every $m$ and every $\epsilon > 0$.
The second term of $\partial\ell/\partial\mu$ is a sum that is always $0$; it costs a
reduction in an implementation that keeps it.""",
            ),
            Section(
                "The compact form and the Jacobian",
                r"""Implementations fuse the six equations into one pass over the batch. The
compact form below is what such a kernel computes; its Jacobian form shows the structure:
the centering $I - \tfrac1m\mathbf 1\mathbf 1^{\mathsf T}$, minus a rank-one term along
$\hat x$, divided by $s$. At $\epsilon = 0$ the bracket is a projection; with $\epsilon > 0$
it is not, since $\lVert\hat x\rVert^2 = m\sigma^2_{\mathcal B}/(\sigma^2_{\mathcal B} +
\epsilon) < m$ (\texttt{bn.lemma.normalized-squares}).""",
                ("bn.backward.compact", "bn.jacobian"),
            ),
            Section(
                r"What the gradient cannot see, and where $\epsilon$ matters",
                r"""A direction that the normalization removes carries no gradient. The
direction $\mathbf 1$ (a shift, what a bias does) is removed for every $\epsilon$. The
direction $\hat x$ (a rescaling of the centered batch) is removed only when
$\epsilon = 0$: with $\epsilon > 0$, scaling $x - \mu$ changes $\hat x$ a little, and the
gradient sees it.""",
                ("bn.gradient-sums-to-zero", "bn.gradient-orthogonal-to-xhat",
                 "bn.gradient-orthogonal-to-xhat-eps0"),
                after=r"""The residual is of order $\epsilon/s^3$: negligible when
$\sigma^2 \gg \epsilon$, but not zero, and large for a batch whose variance is comparable to
$\epsilon$.""",
            ),
            Section(
                r"Invariances: \S 3.2 and \S 3.3",
                r"""[BN] \S 3.2 notes that a bias before BN is redundant (its effect is cancelled
by the mean subtraction), and \S 3.3 that $\mathrm{BN}(Wu) = \mathrm{BN}((aW)u)$ for a scalar
$a$, with the two gradient identities that follow. The paper's statements neglect
$\epsilon$ and the sign of $a$. The gradient identities are checked for a unit
$x_i = w_1u_i + w_2v_i$, one row of $W$ with two inputs; the batch size is symbolic.""",
                ("bn.shift-invariance", "bn.scale-invariance", "bn.scale-invariance-eps0",
                 "bn.scale-invariance-eps0-negative", "bn.scale-eps-rescale",
                 "bn.scale.input-gradient",
                 "bn.scale.weight-gradient"),
                after=r"""So the scale invariance of \S 3.3 is exact only at $\epsilon = 0$
(or $a = 1$) and only for $a > 0$. With $\epsilon > 0$ the exact statement is
$\mathrm{BN}_\epsilon(ax) = \mathrm{BN}_{\epsilon/a^2}(x)$
({{claim:bn.scale-eps-rescale}}): the invariance holds approximately when
$\min(1, a^2)\,\sigma^2_{\mathcal B} \gg \epsilon$ -- a small $a$ makes $\epsilon$ count.""",
            ),
            Section(
                "Inference: Algorithm 2",
                r"""After training, Algorithm 2 replaces the batch statistics by population
estimates: $\operatorname{E}[x]$, the average of the batch means, and
$\operatorname{Var}[x] = \frac{m}{m-1}\operatorname{E}_{\mathcal B}[\sigma^2_{\mathcal B}]$,
the average of the unbiased batch variances. The layer is then a fixed affine map, which can
be folded into the preceding linear layer.""",
                ("bn.inference-affine",),
            ),
            Section(
                r"Consequences for training\label{sec:training}",
                r"""When $\ell(cw) = \ell(w)$ for every $c > 0$ -- a weight vector followed by BN
at $\epsilon = 0$ -- gradient descent on $w$ can only grow $\lVert w\rVert$, and the growth
slows the effective learning rate: the stabilizing effect \S 3.3 describes. The last claim
returns to the question of \S 2: what the naive step does once the normalization also
scales.""",
                ("train.weight-orthogonal", "train.weight-norm-growth",
                 "train.naive-scale-step"),
                figures=(("fig-weight-norm", NORM_CAPTION, "train.weight-norm-growth"),
                         ("fig-naive-scale", NAIVE_SCALE_CAPTION, "train.naive-scale-step")),
                after=r"""With the statistics held, the step on a scale is not zero, as it was
for the bias, but $-\eta C/w$: it grows the weight like $\sqrt t$ when $C < 0$, and when
$C > 0$ it shrinks $w$ ever faster until one step jumps across $0$, where $\hat x$ changes
sign and the loss jumps -- the paper's ``the model blows up''. Differentiating through the
statistics, the gradient by $w$ is exactly $0$ (by \texttt{bn.scale-invariance-eps0}), and
nothing happens.""",
            ),
        ),
        references=(r"[BN] S. Ioffe and C. Szegedy, Batch Normalization: Accelerating Deep "
                    r"Network Training by Reducing Internal Covariate Shift, ICML 2015, "
                    r"arXiv:1502.03167.",),
        folds=_folds(),
        normalized=((x, mu, (var + eps, var + eps_ge0, VAR + eps, VAR + eps_ge0), h),),
        abbreviations=((sp.sqrt(VAR + eps), "s"), (sp.sqrt(VAR + eps_ge0), "s"),
                       (sp.sqrt(VAR), r"\sigma_{\mathcal B}"),
                       (mu, r"\mu_{\mathcal B}"), (var, r"\sigma^{2}_{\mathcal B}"),
                       (s, "s"), (sp.sqrt(var + eps_ge0), "s"),
                       (sp.sqrt(var), r"\sigma_{\mathcal B}"),
                       (mean(u[i]), r"\mu_u"), (variance(u[i]), r"\sigma_u^{2}"),
                       (sp.sqrt(variance(u[i])), r"\sigma_u")),
    )
