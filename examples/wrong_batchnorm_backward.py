"""A plausible but wrong batch-norm backward: the path through the variance is forgotten.

The true gradient is (1/(m s)) (m g_k - sum_j g_j - xhat_k sum_j g_j xhat_j); dropping the
last term is the classic mistake.  derive refutes it with the smallest batch that shows it.
"""
import sympy as sp

from derive import Batch, Claim, Equation, Grad

B = Batch("m")
x, g = B.samples("x"), B.samples("g")
i, k = B.index("i"), B.index("k")
eps = B.param("epsilon", positive=True)

mu = B.mean(x[i], i)
s = sp.sqrt(B.mean((x[i] - mu) ** 2, i) + eps)
xhat = (x[i] - mu) / s
wrong = (g[k] - B.mean(g[i], i)) / s         # the mean path only

forgotten_variance = Claim(
    "batchnorm.backward-without-variance-path", "BN backward without the variance path", B,
    (Equation(Grad(B.sum(g[i] * xhat, i), x[k]), wrong),), expected="refuted")
