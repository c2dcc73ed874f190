"""[BN] section 2: a bias before a centering step, and a gradient step that ignores E[x].

Per-layer notation: the layer receives u_i = (W a^{(l-1)})_i for sample i of a batch of N,
adds a bias b shared by all samples, x_i = u_i + b, and centers, xhat_i = x_i - E[x].  The loss
l depends on the layer only through xhat, with g_i = dl/dxhat_i arbitrary numbers.  A claim
about the gradient of an arbitrary l is proved on the probe L = sum_i g_i xhat_i, g held fixed:
by the chain rule the derivative of l at a point is that of this linear probe.
"""

from __future__ import annotations

import sympy as sp

from .. import simulation
from ..calculus import Batch, Grad, activation, held
from ..core import Claim, Equation
from ..corroboration import Corroboration

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
                      r"induction step for $b_t = b_0 - t\eta G$")),
            text=r"On a fixed batch the naive step $b \leftarrow b - \eta G$, "
                 r"$G = \sum_i \partial\ell/\partial\hat x_i$, leaves $\hat x$ and hence $\ell$ "
                 r"and $G$ unchanged; by induction $b_t = b_0 - t\eta G$. When $G \ne 0$, $b$ "
                 r"grows without bound while the loss never changes.",
            assumptions=(r"N \ge 1", r"\eta > 0", r"t \in \{0, 1, 2, \dots\}",
                         r"G = \sum_i g_i \text{ depends on } b \text{ only through } \hat x"),
            source=SOURCE, uses=("centering.naive-gradient", "centering.update-cancels"),
            expected="proved", ranges=((t, (0.0, 100.0)), (eta, (0.0, 1.0))),
            # trained for 1000 steps, held and through the mean, against b_t = b_0 - t eta G
            corroborations=(Corroboration("simulation", simulation.drift_evidence),)),
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
            "centering.unnormalized-sum", "E[x] must be a mean: without the 1/N nothing cancels",
            B,
            (Equation(u[i] + (b + db) - B.sum(u[i] + (b + db), i),
                      u[i] + b - B.sum(u[i] + b, i), "update cancels with E[x] as a sum"),),
            text=r"The statement tested: with $\operatorname{E}[x]$ copied as $\sum_j x_j$ (the "
                 r"$1/N$ lost, as in the transcription of the paragraph in the question), the "
                 r"update would still cancel. It does not: the $1/N$ is what makes a shift of "
                 r"every $x_j$ by $\Delta b$ shift $\operatorname{E}[x]$ by exactly $\Delta b$.",
            assumptions=(r"N \ge 1",),
            source=r"[BN] \S 2 as transcribed in the question, with the $1/N$ of E dropped",
            uses=("centering.update-cancels",), expected="refuted"),
        Claim(
            "centering.nonlinear", "The objection holds: a nonlinearity breaks the cancellation",
            B,
            (Equation(theta(u[i] + b + db) - B.mean(theta(u[i] + b + db), i),
                      theta(u[i] + b) - B.mean(theta(u[i] + b), i),
                      "update cancels through a nonlinearity"),),
            text=r"The statement tested: the cancellation survives a nonlinearity $\theta$ "
                 r"between the bias and the centering, "
                 r"$\theta(u_i+b+\Delta b) - \operatorname{E}[\theta(u+b+\Delta b)] = "
                 r"\theta(u_i+b) - \operatorname{E}[\theta(u+b)]$ for every $\theta$. The "
                 r"reader doubted it, rightly: it is false, so the refutation confirms the "
                 r"objection.",
            assumptions=(r"N \ge 1", r"\theta \text{ arbitrary}"),
            source="the question's proposed correction of [BN] \\S 2", expected="refuted",
            functions=((theta, (RELU, TANH)),)),
        Claim(
            "centering.nonlinear-first-order", "What the nonlinearity changes, to first order", B,
            (Equation(Grad(theta(u[i] + b + db) - B.mean(theta(u[i] + b + db), i), db),
                      theta.derivative(u[i] + b + db) - B.mean(theta.derivative(u[i] + b + db), i),
                      "rate of change of the output in the update"),),
            text=r"The output $\theta(x_i) - \operatorname{E}[\theta(x)]$ changes, to first "
                 r"order in $\Delta b$, by $\Delta b\,(\theta'(x_i) - \operatorname{E}[\theta'(x)])$: "
                 r"zero for every $i$ when $\theta'$ takes one value over the batch, "
                 r"as for an affine $\theta$.",
            assumptions=(r"N \ge 1", r"\theta \text{ differentiable}"),
            source="the question's proposed correction of [BN] \\S 2",
            uses=("centering.nonlinear",), expected="proved",
            functions=((theta, SMOOTH),)),
        Claim(
            "centering.affine", "An affine map keeps the cancellation", B,
            (Equation(alpha * (u[i] + b + db) + beta - B.mean(alpha * (u[i] + b + db) + beta, i),
                      alpha * (u[i] + b) + beta - B.mean(alpha * (u[i] + b) + beta, i),
                      "update cancels through an affine map"),),
            text=r"For an affine $\theta(z) = \alpha z + \beta$ the cancellation holds exactly.",
            assumptions=(r"N \ge 1", r"\alpha, \beta \text{ arbitrary}"),
            source="the question's proposed correction of [BN] \\S 2",
            uses=("centering.update-cancels",), expected="proved"),
    ]


# -- the report --------------------------------------------------------------------------------

DRIFT_CAPTION = (
    r"\texttt{centering.drift}, simulated: gradient descent on a fixed batch of 16 "
    r"($\eta = 0.01$). (a) Held, $b_t$ (circles) follows the proved line $b_0 - t\eta G$; "
    r"through the mean, $b$ stays put. (b) The loss is the same constant in both (held: "
    r"circles, through: line).")

ANSWERS = r"""The four questions asked about the paragraph have short answers; each cites the
verified claim that settles it.

\subsection*{1. What are $u$, $x$, $b$ and the ``activation''?}
The example is about one layer $l$ of a network -- any layer, not only the first. With
$a^{(l-1)}$ the previous layer's output ($a^{(0)}$ the network's input), the paper's
\emph{input} $u$ is what the weights have already produced, and $x$ is the pre-activation,
the value a unit produces \emph{before} any nonlinearity (the question's $z^{(l)}$):
\[ u_i = W^{(l)} a^{(l-1)}_i, \qquad x_i = u_i + b, \qquad
   \hat x_i = x_i - \operatorname{E}[x], \qquad
   \operatorname{E}[x] = \frac1N \sum_{j=1}^{N} x_j , \]
for the samples $i = 1, \dots, N$ of a batch (the paper's ``training set''); $b$ is one
learned number shared by all samples. The rest of the network sees only $\hat x$, so the
loss $\ell$ is a function of $\hat x_1, \dots, \hat x_N$, and its partial derivatives
$g_i = \partial\ell/\partial\hat x_i$ are the backpropagated ``deltas'' arriving at this
layer. There is no nonlinearity between $b$ and the centering; in batch normalization the
nonlinearity $\theta$ comes after it, $a^{(l)} = \theta(\mathrm{BN}(u))$ ([BN] \S 3.2).

\subsection*{2. Why $\Delta b \propto -\partial\ell/\partial\hat x$, not $-\partial\ell/\partial b$?}
It \emph{is} $-\partial\ell/\partial b$ -- computed the way the paragraph describes, with
$\operatorname{E}[x]$ \emph{held} as a constant. Then $\partial\hat x_i/\partial b = 1$ and
the chain rule gives
\[ \frac{\partial\ell}{\partial b}\bigg|_{\operatorname{E}[x]\text{ held}}
   = \sum_{i=1}^{N} \frac{\partial\ell}{\partial\hat x_i} = \sum_{i=1}^{N} g_i ,
   \qquad \Delta b = -\eta \sum_{i=1}^{N} g_i : \]
the paper's $\partial\ell/\partial\hat x$ is shorthand for these deltas
({{claim:centering.naive-gradient}}). Differentiated \emph{through} the mean,
$\partial\hat x_i/\partial b = 1 - \tfrac1N\cdot N = 0$, so the true gradient is
$\partial\ell/\partial b = 0$ for every loss ({{claim:centering.full-gradient}}). In code,
holding the mean is cutting it out of the graph:
\begin{verbatim}
x_hat = x - x.mean().detach()                  # PyTorch
x_hat = x - jax.lax.stop_gradient(x.mean())    # JAX
\end{verbatim}
gives \texttt{b.grad == g.sum()}, the naive step; without \texttt{.detach()},
\texttt{b.grad == 0}.

\subsection*{3. What does the displayed equation compute?}
The layer's output $\hat x_i$ \emph{after} the naive update $b \leftarrow b + \Delta b$
(left) and \emph{before} it (right):
\[ u_i + (b + \Delta b) - \operatorname{E}[u + (b + \Delta b)] = u_i + b - \operatorname{E}[u + b]
   \qquad\text{for every } \Delta b, \]
because the mean of $u + b + \Delta b$ is $\operatorname{E}[u] + b + \Delta b$
({{claim:centering.update-cancels}}). The step changes $b$ but not $\hat x$, hence not the
loss and not the next gradient: on a fixed batch $b_t = b_0 - t\eta G$ with
$G = \sum_i g_i$ constant, while the loss stays where it was
({{claim:centering.drift}}; Figure~\ref{fig:fig-drift}). The reason is the Jacobian
$\partial\hat x/\partial x = I - \tfrac1N\mathbf 1\mathbf 1^{\mathsf T}$, with $\mathbf 1$ the
all-ones vector: it maps $\mathbf 1$ to $0$, and a bias moves $x$ exactly along $\mathbf 1$
({{claim:centering.jacobian}}). The $1/N$ in $\operatorname{E}$ matters: with
$\operatorname{E}[x]$ copied as $\sum_j x_j$, as in the question's transcription, nothing
cancels ({{claim:centering.unnormalized-sum}}).

\subsection*{4. What does a nonlinearity change?}
The objection is right: with a nonlinearity $\theta$ between bias and centering,
$\theta(u_i + b + \Delta b) - \operatorname{E}[\theta(u + b + \Delta b)]$ does \emph{not}
equal the output before the update in general ({{claim:centering.nonlinear}}; the
counterexample uses $\theta = \operatorname{ReLU}$). To first order the output moves by
$\Delta b\,(\theta'(x_i) - \operatorname{E}[\theta'(x)])$
({{claim:centering.nonlinear-first-order}}), which vanishes when $\theta'$ is the same for
the whole batch -- for an affine $\theta$ the cancellation is exact
({{claim:centering.affine}}). The paper's example has no $\theta$ there, and batch
normalization puts the nonlinearity after the normalization, so the cancellation is the
paper's situation.

\textbf{The takeaway.} A bias before a normalization does nothing the normalization does not
undo: its true gradient is $0$, and a step that ignores the mean only makes it drift. That is
why batch normalization drops $b$ and lets the learned shift $\beta$ after the normalization,
$y_i = \gamma\hat x_i + \beta$, do its job ([BN] \S 3.2). With a nonlinearity in between, the
naive gradient is still the wrong gradient -- it is just no longer exactly cancelled."""


def story():
    from ..story import Section, Story

    return Story(
        name="centering",
        title=r"Centering after a bias: Ioffe \& Szegedy, \S 2, checked for every batch size",
        abstract=(
            r"Section 2 of the batch-normalization paper [BN] argues that a gradient step which "
            r"ignores how the mean $\operatorname{E}[x]$ depends on a bias $b$ changes nothing: "
            r"the normalization cancels it, so $b$ drifts while the loss stays fixed. Section 1 "
            r"answers a reader's four questions about that paragraph; Sections 2--4 state the "
            r"claims behind the answers, each proved for a symbolic batch size $N$ or refuted "
            r"with the smallest counterexample; Appendix A has the derivations and evidence."),
        opening=(Section("The four questions, answered", ANSWERS,
                         figures=(("fig-drift", DRIFT_CAPTION, None),)),),
        sections=(
            Section(
                "The gradient of the bias",
                r"""\emph{Held} means differentiated with the statistic treated as a
constant: we write $\operatorname{sg}(\cdot)$ (``stop-gradient'') around it; its value is
unchanged and its derivative is $0$ -- \texttt{detach()} in PyTorch,
\texttt{jax.lax.stop\_gradient} in JAX. \emph{Through} is the ordinary derivative. A claim
about the gradient of an arbitrary loss is stated for the probe $L = \sum_i g_i \hat x_i$,
with the $g_i$ fixed: by the chain rule the derivative of $\ell$ at a point is the
derivative of this probe.""",
                ("centering.naive-gradient", "centering.full-gradient"),
            ),
            Section(
                "The update cancels, and the bias drifts",
                r"""$\delta_{ik}$ is $1$ when $i = k$ and $0$ otherwise; $\mathbf 1$ is the
all-ones vector.""",
                ("centering.update-cancels", "centering.drift", "centering.jacobian",
                 "centering.unnormalized-sum"),
            ),
            Section(
                "A nonlinearity before the centering",
                r"""The question's alternative puts a nonlinearity $\theta$ between the bias
and the centering. Claims about an arbitrary $\theta$ are checked with concrete instances
($\operatorname{ReLU}$, $\tanh$, $\sin$, $z^3/3$) wherever a number is needed.""",
                ("centering.nonlinear", "centering.nonlinear-first-order", "centering.affine"),
            ),
        ),
        references=(r"[BN] S. Ioffe and C. Szegedy, Batch Normalization: Accelerating Deep "
                    r"Network Training by Reducing Internal Covariate Shift, ICML 2015, "
                    r"arXiv:1502.03167.",),
    )
