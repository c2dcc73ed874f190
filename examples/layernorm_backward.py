"""LayerNorm's backward pass in the compact form kernels implement, for every width m."""
import sympy as sp

from derive import Batch, Claim, Equation, Grad

B = Batch("m")                                # the m features LayerNorm normalizes over
x, g = B.samples("x"), B.samples("g")         # inputs; g_i = dl/dy_i, arbitrary numbers
i, k = B.index("i"), B.index("k")
eps = B.param("epsilon", positive=True)

mu = B.mean(x[i], i)
s = sp.sqrt(B.mean((x[i] - mu) ** 2, i) + eps)
y = (x[i] - mu) / s                           # LayerNorm without its affine part
loss = B.sum(g[i] * y, i)                     # any loss, to first order: sum_i g_i y_i
compact = (B.size * g[k] - B.sum(g[i], i) - y.subs(i, k) * B.sum(g[i] * y, i)) / (B.size * s)

backward = Claim("layernorm.backward", "LayerNorm's compact backward formula", B,
                 (Equation(Grad(loss, x[k]), compact),), expected="proved")
