"""A per-channel bias before a normalization: BatchNorm removes it, LayerNorm does not.

The same tensor x[n, c] (n over the N samples of a batch, c over the C channels) is normalized
two ways: per channel over the batch (BatchNorm) and per sample over the channels (LayerNorm).
A bias b[c], one per channel, is constant along the batch axis, so BatchNorm's mean takes it
away; along the channel axis it varies, so LayerNorm keeps it.
"""
import sympy as sp

from derive import Axis, Claim, Equation, Grad

N, C = Axis("N"), Axis("C")                   # the batch axis and the channel axis
x, b, g = N.samples("x"), N.samples("b"), N.samples("g")   # inputs, bias, dl/dy
n, c, d = N.index("n"), C.index("c"), C.index("d")
eps = N.param("epsilon", positive=True)


def batch_norm(v):
    """v standardized per channel, over the batch axis n."""
    mu = N.mean(v, n)
    return (v - mu) / sp.sqrt(N.mean((v - mu) ** 2, n) + eps)


def layer_norm(v):
    """v standardized per sample, over the channel axis c."""
    mu = C.mean(v, c)
    return (v - mu) / sp.sqrt(C.mean((v - mu) ** 2, c) + eps)


def loss(norm):
    """Any loss, to first order: the sum of g[n, c] * y[n, c]."""
    return N.sum(C.sum(g[n, c] * norm(x[n, c] + b[c]), c), n)


before_bn = Claim("axes.bias-before-batchnorm", "a per-channel bias before BatchNorm gets no "
                  "gradient", N, (Equation(Grad(loss(batch_norm), b[d]), 0),),
                  expected="proved")

before_ln = Claim("axes.bias-before-layernorm", "a per-channel bias before LayerNorm gets no "
                  "gradient", N, (Equation(Grad(loss(layer_norm), b[d]), 0),),
                  text="False: along the channel axis the bias is not a constant.",
                  expected="refuted")
