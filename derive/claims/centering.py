"""[BN] section 2: a bias before a centering step, and a gradient step that ignores E[x].

Per-layer notation: the layer receives u_i = (W a^{(l-1)})_i for sample i of a batch of N,
adds a bias b shared by all samples, x_i = u_i + b, and centers, xhat_i = x_i - E[x].  The loss
l depends on the layer only through xhat, with g_i = dl/dxhat_i arbitrary numbers.  A claim
about the gradient of an arbitrary l is proved on the probe L = sum_i g_i xhat_i, g held fixed:
by the chain rule the derivative of l at a point is that of this linear probe.
"""

from __future__ import annotations

import sympy as sp

from ..calculus import Batch, Grad, activation, held
from ..core import Claim, Equation

SOURCE = r"[BN] \S 2"

B = Batch("N")
N = B.size
u = B.samples("u")             # the layer input, u = W a^{(l-1)}
x = B.samples("x")             # pre-activations, for the Jacobian
g = B.samples("g")             # g_i = dl/dxhat_i, arbitrary
i, k = B.index("i"), B.index("k")
b = B.param("b")
db = B.param(r"\Delta b")
eta = B.param(r"\eta", positive=True)
G = B.param("G")
t = sp.Symbol("t", integer=True, nonnegative=True)
b0 = B.param("b_0")
alpha, beta = B.params(r"\alpha", r"\beta")
theta = activation("theta", r"\theta")

z = sp.Symbol("z", real=True)
RELU = sp.Lambda(z, sp.Max(0, z))
TANH = sp.Lambda(z, sp.tanh(z))
SMOOTH = (TANH, sp.Lambda(z, sp.sin(z)), sp.Lambda(z, z**3 / 3))


def xhat(bias, index=i):
    """The centered pre-activation of sample ``index`` for bias ``bias``."""
    return B.center(u[index] + bias, index)


def claims() -> list[Claim]:
    return [
        Claim(
            "centering.naive-gradient", "The naive gradient", B,
            (Equation(Grad(held(xhat(b)), b), sp.S.One, "held derivative of each output"),
             Equation(Grad(B.sum(g[i] * held(xhat(b)), i), b), B.sum(g[i], i),
                      "chain rule for the loss")),
            text=r"With $\operatorname{E}[x]$ held constant, $\partial\hat x_i/\partial b = 1$, so "
                 r"$\partial\ell/\partial b = \sum_i \partial\ell/\partial\hat x_i$ and the naive "
                 r"step is $\Delta b = -\eta\sum_i \partial\ell/\partial \hat x_i$: the paper's "
                 r"$\Delta b \propto -\partial\ell/\partial\hat x$.",
            assumptions=(r"N \ge 1", r"g_i = \partial\ell/\partial\hat x_i \text{ arbitrary}"),
            source=SOURCE, expected="proved"),
        Claim(
            "centering.full-gradient", "The true gradient is zero", B,
            (Equation(Grad(xhat(b), b), sp.S.Zero, "derivative of each output"),
             Equation(Grad(B.sum(g[i] * xhat(b), i), b), sp.S.Zero, "chain rule for the loss")),
            text=r"Differentiating through $\operatorname{E}[x]$, "
                 r"$\partial\hat x_i/\partial b = 1 - \tfrac1N\cdot N = 0$ for every $i$, so "
                 r"$\partial\ell/\partial b = 0$ for every loss.",
            assumptions=(r"N \ge 1", r"g_i = \partial\ell/\partial\hat x_i \text{ arbitrary}"),
            source=SOURCE, uses=("centering.naive-gradient",), expected="proved"),
        Claim(
            "centering.update-cancels", "The update cancels", B,
            (Equation(xhat(b + db), xhat(b), "output after the update = output before"),),
            text=r"The paper's displayed equation computes the layer's output $\hat x_i$ after "
                 r"the update $b \leftarrow b + \Delta b$: "
                 r"$u_i + (b+\Delta b) - \operatorname{E}[u + (b + \Delta b)] = "
                 r"u_i + b - \operatorname{E}[u + b]$ for every $\Delta b$, $i$ and $N$.",
            assumptions=(r"N \ge 1", r"\Delta b \text{ arbitrary}"),
            source=SOURCE, expected="proved"),
        Claim(
            "centering.drift", "The bias drifts, the loss stays", B,
            (Equation(xhat(b - eta * G), xhat(b), "one naive step leaves every output unchanged"),
             Equation((b0 - t * eta * G) - eta * G, b0 - (t + 1) * eta * G,
                      "induction step for b_t = b_0 - t eta G"),
             Equation(b0 - 0 * eta * G, b0, "induction base")),
            text=r"On a fixed batch the naive step $b \leftarrow b - \eta G$, "
                 r"$G = \sum_i \partial\ell/\partial\hat x_i$, leaves $\hat x$ and hence $\ell$ "
                 r"and $G$ unchanged; by induction $b_t = b_0 - t\eta G$. When $G \ne 0$, $b$ "
                 r"grows without bound while the loss never changes.",
            assumptions=(r"N \ge 1", r"\eta > 0", r"t \in \{0, 1, 2, \dots\}",
                         r"G = \sum_i g_i \text{ depends on } b \text{ only through } \hat x"),
            source=SOURCE, uses=("centering.naive-gradient", "centering.update-cancels"),
            expected="proved", ranges=((t, (0.0, 100.0)), (eta, (0.0, 1.0)))),
        Claim(
            "centering.jacobian", "The centering matrix", B,
            (Equation(Grad(B.center(x[i], i), x[k]), sp.KroneckerDelta(i, k) - 1 / N,
                      "entries of the Jacobian"),
             Equation(B.sum(sp.KroneckerDelta(i, k) - 1 / N, k), sp.S.Zero,
                      "the all-ones vector is in its kernel")),
            text=r"$\partial\hat x/\partial x = I - \tfrac1N\mathbf 1\mathbf 1^{\mathsf T}$, the "
                 r"centering matrix; it maps $\mathbf 1$ to $0$, so a change of $x$ along "
                 r"$\mathbf 1$ -- which is what a bias does -- is invisible after centering.",
            assumptions=(r"N \ge 1",), source=SOURCE, expected="proved"),
        Claim(
            "centering.unnormalized-sum", "Without the 1/N the update does not cancel", B,
            (Equation(u[i] + (b + db) - B.sum(u[i] + (b + db), i),
                      u[i] + b - B.sum(u[i] + b, i), "update cancels with E[x] as a sum"),),
            text=r"With $\operatorname{E}[x]$ transcribed as $\sum_j x_j$ (the $1/N$ dropped), "
                 r"the update would still cancel.",
            assumptions=(r"N \ge 1",), source=r"the reader's transcription of [BN] \S 2",
            uses=("centering.update-cancels",), expected="refuted"),
        Claim(
            "centering.nonlinear", "A nonlinearity before the centering", B,
            (Equation(theta(u[i] + b + db) - B.mean(theta(u[i] + b + db), i),
                      theta(u[i] + b) - B.mean(theta(u[i] + b), i),
                      "update cancels through a nonlinearity"),),
            text=r"With a nonlinearity $\theta$ between the bias and the centering, "
                 r"$\theta(u_i+b+\Delta b) - \operatorname{E}[\theta(u+b+\Delta b)] = "
                 r"\theta(u_i+b) - \operatorname{E}[\theta(u+b)]$ for every $\theta$.",
            assumptions=(r"N \ge 1", r"\theta \text{ arbitrary}"),
            source="the reader's objection", expected="refuted",
            functions=((theta, (RELU, TANH)),)),
        Claim(
            "centering.nonlinear-first-order", "What the nonlinearity changes, to first order", B,
            (Equation(Grad(theta(u[i] + b + db) - B.mean(theta(u[i] + b + db), i), db),
                      theta.derivative(u[i] + b + db) - B.mean(theta.derivative(u[i] + b + db), i),
                      "rate of change of the output in the update"),),
            text=r"The output $\theta(x_i) - \operatorname{E}[\theta(x)]$ changes, to first "
                 r"order in $\Delta b$, by $\Delta b\,(\theta'(x_i) - \operatorname{E}[\theta'(x)])$: "
                 r"zero for every $i$ if and only if $\theta'$ takes one value over the batch.",
            assumptions=(r"N \ge 1", r"\theta \text{ differentiable}"),
            source="the reader's objection", uses=("centering.nonlinear",), expected="proved",
            functions=((theta, SMOOTH),)),
        Claim(
            "centering.affine", "An affine map keeps the cancellation", B,
            (Equation(alpha * (u[i] + b + db) + beta - B.mean(alpha * (u[i] + b + db) + beta, i),
                      alpha * (u[i] + b) + beta - B.mean(alpha * (u[i] + b) + beta, i),
                      "update cancels through an affine map"),),
            text=r"For an affine $\theta(z) = \alpha z + \beta$ the cancellation holds exactly.",
            assumptions=(r"N \ge 1", r"\alpha, \beta \text{ arbitrary}"),
            source="the reader's objection", uses=("centering.update-cancels",),
            expected="proved"),
    ]
