"""Second order: batch normalization's double backward ([BN] Algorithm 1, differentiated twice).

Frameworks differentiate a backward pass again -- gradient penalties, Hessian-vector products,
``torch.autograd.gradgradcheck`` -- and a normalization layer needs a double backward for
that.  On Algorithm 1 over a batch of m values (s = sqrt(sigma^2 + eps),
xhat = (x - mu)/s, y = gamma xhat + beta) with the probe loss l = sum_i g_i y_i,
G = sum_j g_j and H = sum_j g_j xhat_j, the claims state the Hessian of l by the input, the
derivative of the input gradient by the output gradient (the Jacobian), the Hessian's
symmetry and its zero row sums, and refute the formula with the coefficient 3 slipped to 1.

Every derivative of a derivative is ``Grad(Grad(loss, x[j]), x[k])``: each layer takes it
its own way (the chain rule twice, dual numbers around the complex step, double backward in
PyTorch and JAX).  The Hessian formula is also run as a real kernel's double backward
(``frameworks.double_backward``), where ``torch.autograd.gradgradcheck`` passes on it and
fails on the refuted formula, and is held against PyTorch's own double backward of
``batch_norm``.
"""

from __future__ import annotations

import sympy as sp

from ..calculus import Batch, Grad
from ..core import Claim, Equation
from ..corroboration import Corroboration
from ..frameworks import double_backward
from . import batchnorm

SOURCE = r"[BN] Algorithm 1, differentiated twice"
SECTION_TEXT = r"""PyTorch and JAX differentiate a backward pass again for gradient penalties,
Hessian-vector products and \texttt{torch.autograd.gradgradcheck}; normalization layers have
shipped double-backward bugs. On Algorithm 1 over a batch of $m$ values ($s =
\sqrt{\sigma^2_{\mathcal B} + \epsilon}$, $\hat x = (x - \mu_{\mathcal B})/s$, $y = \gamma\hat x +
\beta$) with $\ell = \sum_i g_i y_i$, $G = \sum_j g_j$ and $H = \sum_j g_j\hat x_j$. The
Hessian formula also runs as the double backward of a real \texttt{torch.autograd.Function}
whose backward is the proved first-order formula: \texttt{gradgradcheck} passes on it and
fails on the refuted one, and it agrees with PyTorch's own double backward of
\texttt{batch\_norm}."""

B = Batch("m")
m = B.size
x = B.samples("x")                 # the mini-batch of one activation
g = B.samples("g")                 # g_i = dl/dy_i, arbitrary
i, j, k = B.index("i"), B.index("j"), B.index("k")
gamma, beta = B.params(r"\gamma", r"\beta")
eps = B.param(r"\epsilon", positive=True)          # the paper's epsilon > 0

mu = B.mean(x[i], i)
var = B.mean((x[i] - mu) ** 2, i)
s = sp.sqrt(var + eps)
loss = B.sum(g[i] * (gamma * (x[i] - mu) / s + beta), i)   # l = sum_i g_i y_i
delta = sp.KroneckerDelta(j, k)


def xhat(index):
    """Algorithm 1's normalized value of sample ``index``."""
    return (x[index] - mu) / s


G = B.sum(g[i], i)
H = B.sum(g[i] * xhat(i), i)


def hessian(coefficient=3):
    """d^2 l / dx_j dx_k = -(gamma/(m^2 s^2)) [m (xhat_j g_k + xhat_k g_j) - G (xhat_j + xhat_k)
    + (m delta_jk - 1 - coefficient xhat_j xhat_k) H]; the right one has coefficient 3."""
    return -(gamma / (m ** 2 * s ** 2)) * (
        m * (xhat(j) * g[k] + xhat(k) * g[j]) - G * (xhat(j) + xhat(k))
        + (m * delta - 1 - coefficient * xhat(j) * xhat(k)) * H)


HESSIAN = Grad(Grad(loss, x[j]), x[k])
JACOBIAN = (gamma / s) * (delta - 1 / m - xhat(j) * xhat(k) / m)
ASSUMED = (r"m \ge 1", r"\epsilon > 0", r"g_i = \partial\ell/\partial y_i \text{ arbitrary}")


# -- the kernel checks: the Hessian formula as a real double backward --------------------------

def kernel_formulas(second_input=None) -> double_backward.Formulas:
    """The formulas the kernel evaluates: the compact first-order formula (from the
    batchnorm topic), the Hessian and the Jacobian of this one, and their symbols."""
    by_id = {c.id: c for c in claims()}
    first = {c.id: c for c in batchnorm.backward_claims()}
    return double_backward.Formulas(
        first["bn.backward.compact"], second_input or by_id["bn.double-backward.input"],
        by_id["bn.double-backward.grad-output"],
        size=m, x=x, g=g, gamma=gamma, eps=eps, rows=j, cols=k,
        dgamma=first["bn.backward.dl-dgamma"], dbeta=first["bn.backward.dl-dbeta"])


def kernel_gradgradcheck(claim: Claim) -> dict:
    """torch.autograd.gradgradcheck on the kernel whose double backward is ``claim``'s
    Hessian formula."""
    return double_backward.gradgradcheck(kernel_formulas(claim))


def framework_double_backward(claim: Claim) -> dict:
    """``claim``'s Hessian (and the Jacobian) against batch_norm's own double backward."""
    return double_backward.agrees_with_framework(kernel_formulas(claim))


KERNEL_CHECKS = (
    Corroboration("torch", kernel_gradgradcheck, key="gradgradcheck",
                  failure=double_backward.gradgradcheck_failure,
                  note=double_backward.gradgradcheck_note),
    Corroboration("torch", framework_double_backward, key="double-backward",
                  failure=double_backward.framework_failure,
                  note=double_backward.framework_note),
)


# the explicit layer writes every sum out for m = 1..4 (m = 5 alone takes seconds for the
# Hessian); the symbolic proof covers every m
EXPLICIT_UP_TO = 4


def claims() -> list[Claim]:
    """The five claims of the catalog's section F."""
    return [
        Claim(
            "bn.double-backward.input", "The double backward by the input", B,
            (Equation(HESSIAN, hessian(),
                      r"$\partial^2\ell/\partial x_j\partial x_k$, the chain rule twice"),),
            text=r"Differentiating the backward pass once more by the input gives "
                 r"$\frac{\partial^2\ell}{\partial x_j\partial x_k} = "
                 r"-\frac{\gamma}{m^2s^2}\bigl[m(\hat x_j g_k + \hat x_k g_j) - "
                 r"G(\hat x_j + \hat x_k) + (m\delta_{jk} - 1 - 3\hat x_j\hat x_k)H\bigr]$ with "
                 r"$G = \sum_j g_j$, $H = \sum_j g_j\hat x_j$: the matrix a double backward "
                 r"contracts with the incoming vector $v$ (it is symmetric, so either index "
                 r"will do). The 3 counts three equal terms, one for each place $s$ occurs in "
                 r"the backward formula $\frac{\gamma}{ms}(mg_k - G - \hat x_kH)$: the factor "
                 r"$1/s$, $\hat x_k$, and the $\hat x_i$ inside $H$; each changes with $x_j$ "
                 r"through $\partial s/\partial x_j = \hat x_j/m$. The torch evidence also runs "
                 r"the formula as the double backward of a PyTorch kernel, through "
                 r"\texttt{gradgradcheck} and against the double backward of PyTorch's own "
                 r"\texttt{batch\_norm}.",
            assumptions=ASSUMED, source=SOURCE, 
            expected="proved", explicit_up_to=EXPLICIT_UP_TO, corroborations=KERNEL_CHECKS),
        Claim(
            "bn.double-backward.grad-output", "The double backward by the output gradient", B,
            (Equation(Grad(Grad(loss, x[k]), g[j]), JACOBIAN,
                      r"$\partial(\partial\ell/\partial x_k)/\partial g_j$"),),
            text=r"The input gradient is linear in the output gradient $g$, and its "
                 r"coefficients are the Jacobian of the layer: "
                 r"$\partial(\partial\ell/\partial x_k)/\partial g_j = \frac{\gamma}{s}"
                 r"\bigl(\delta_{jk} - \frac1m - \frac{\hat x_j\hat x_k}{m}\bigr)$. It is "
                 r"symmetric in $j$ and $k$, so a double backward may apply it to $v$ without "
                 r"transposing it: the gradient the double backward returns for $g$ is "
                 r"$\frac{\gamma}{s}\bigl(v - \bar v - \hat x\,\frac{1}{m}\sum_k "
                 r"v_k\hat x_k\bigr)$ with $\bar v = \frac1m\sum_k v_k$: the layer's "
                 r"backward pass applied to $v$.",
            assumptions=ASSUMED, source=SOURCE, 
            expected="proved", explicit_up_to=EXPLICIT_UP_TO),
        Claim(
            "bn.hessian-symmetric", "The Hessian is symmetric", B,
            (Equation(HESSIAN, Grad(Grad(loss, x[k]), x[j]),
                      r"$\partial^2\ell/\partial x_j\partial x_k = "
                      r"\partial^2\ell/\partial x_k\partial x_j$"),),
            text=r"The order of the two derivatives does not matter: with $\epsilon > 0$, "
                 r"$s > 0$ for every batch and the loss is smooth in $x$. A double backward "
                 r"may contract either index with $v$; a formula that is not symmetric in "
                 r"$j$ and $k$ (one of the two terms $\hat x_j g_k$, $\hat x_k g_j$ lost) "
                 r"is wrong.",
            assumptions=ASSUMED, source=SOURCE, expected="proved",
            explicit_up_to=EXPLICIT_UP_TO),
        Claim(
            "bn.hessian-rows-sum-to-zero", "Each row of the Hessian sums to zero", B,
            (Equation(B.sum(HESSIAN, k), sp.S.Zero,
                      r"$\sum_k \partial^2\ell/\partial x_j\partial x_k$"),),
            text=r"Shifting the whole batch by the same amount changes nothing (the layer "
                 r"subtracts the mean), so the gradient does not change along $\mathbf 1$ "
                 r"either: every row of the Hessian sums to 0. The Hessian-vector product a "
                 r"double backward returns is therefore blind to the constant part of $v$, "
                 r"and sums to 0 itself.",
            assumptions=ASSUMED, source=SOURCE, 
            expected="proved", explicit_up_to=EXPLICIT_UP_TO),
        Claim(
            "bn.double-backward.wrong-coefficient",
            "The double backward with 1 in place of 3 is wrong", B,
            (Equation(HESSIAN, hessian(coefficient=1),
                      r"the same formula with $-\hat x_j\hat x_k$ for $-3\hat x_j\hat x_k$"),),
            text=r"A plausible slip: with $-\hat x_j\hat x_k$ in place of $-3\hat x_j\hat x_k$ "
                 r"the formula keeps only one of the three places $s$ changes (see "
                 r"\texttt{bn.double-backward.input}) and is off by exactly "
                 r"$2\gamma\hat x_j\hat x_k H/(m^2s^2)$: zero only when $H = 0$ or "
                 r"$\hat x_j\hat x_k = 0$, so it fails already for a batch of 2. A kernel "
                 r"whose double backward uses it fails \texttt{gradgradcheck}.",
            assumptions=ASSUMED, source=SOURCE, uses=("bn.double-backward.input",),
            expected="refuted", explicit_up_to=EXPLICIT_UP_TO),
    ]
