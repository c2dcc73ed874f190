"""derive: symbolic derivation verifier for the mathematics of deep learning.

The public API -- the one the built-in derivations use::

    from derive import Batch, Claim, Equation, Grad, held, activation, check

    B = Batch("N"); u = B.samples("u"); i = B.index("i"); b = B.param("b")
    xhat = B.center(u[i] + b, i)                     # u_i + b - E[u + b]
    claim = Claim("my.gradient", "zero gradient", B, (Equation(Grad(xhat, b), 0),))
    print(check(claim).verdict.status)               # proved
"""

from .calculus import Axis, Batch, BatchSum, Grad, Held, Mean, activation, held, release
from .core import Claim, Counterexample, DeriveError, Equation, Evidence, Result, Verdict
from .render import jupyter as _jupyter  # noqa: F401  (rich display of claims and results)
from .verify import Settings, check, check_all

__version__ = "0.1.0"

__all__ = ["Axis", "Batch", "BatchSum", "Grad", "Held", "Mean", "activation", "held", "release",
           "Claim", "Counterexample", "DeriveError", "Equation", "Evidence", "Result",
           "Verdict", "Settings", "check", "check_all", "__version__"]
