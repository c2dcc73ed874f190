"""A second derivative: the curvature of a loss in a bias before centering is zero.

Double backward through a normalization is where frameworks have had bugs; the simplest
statement of it: after centering, a bias b is invisible to the loss to every order, so
d^2 l / db^2 = 0 and d/dx_k (dl/db) = 0, while without the mean's dependence on b held
correctly the naive second derivative is not 0.
"""
import sympy as sp

from derive import Batch, Claim, Equation, Grad, held

B = Batch("N")
u, i, k = B.samples("u"), B.index("i"), B.index("k")
b = B.param("b")

x = u[i] + b
centered = B.center(x, i)                     # x_i - E[x]
loss = B.mean(sp.sin(centered) ** 2, i)       # any smooth loss of the centered values

curvature = Claim("second.bias-curvature", "the curvature in a bias before centering is 0", B,
                  (Equation(Grad(Grad(loss, b), b), 0),
                   Equation(Grad(Grad(loss, b), u[k]), 0)),
                  expected="proved")

held_loss = B.mean(sp.sin(x - held(B.mean(x, i))) ** 2, i)   # E[x] as a constant
naive = Claim("second.bias-curvature-held", "with E[x] held, the curvature is still 0", B,
              (Equation(Grad(Grad(held_loss, b), b), 0),),
              text="False: with E[x] held, b moves every centered value.",
              expected="refuted")
