"""RMSNorm divides by the root mean square without centering: what does that keep?"""
import sympy as sp

from derive import Batch, Claim, Equation

B = Batch("m")
x, i = B.samples("x"), B.index("i")
c = B.param("c")                              # a shift shared by every feature
a = B.param("a", positive=True)               # a positive scale
eps = B.param("epsilon", positive=True)


def rmsnorm(v, eps):
    """v_i / sqrt(mean_j v_j^2 + eps), for an expression v in the index i."""
    return v / sp.sqrt(B.mean(v ** 2, i) + eps)


shift = Claim("rmsnorm.shift-invariance", "RMSNorm ignores a common shift", B,
              (Equation(rmsnorm(x[i] + c, eps), rmsnorm(x[i], eps)),),
              text="Unlike LayerNorm, RMSNorm does not subtract the mean, so a shift survives.",
              assumptions=(r"\epsilon > 0",), expected="refuted")

scale = Claim("rmsnorm.scale-invariance-eps0", "RMSNorm ignores a positive scale at eps = 0", B,
              (Equation(rmsnorm(a * x[i], 0), rmsnorm(x[i], 0)),),
              assumptions=(r"a > 0", r"\epsilon = 0", r"\text{not all } x_i = 0"),
              expected="proved")
