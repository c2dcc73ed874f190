"""The verified backward formulas used as a real PyTorch kernel, and PyTorch's own check of it.

``verified_batch_norm()`` is a ``torch.autograd.Function``: its forward pass is Algorithm 1
(training mode, one activation over a batch), and its backward pass evaluates the right-hand
sides of three claims (``Formulas``: the input's gradient, the scale's, the shift's), compiled
by ``program.Program``.  Nothing in the backward pass is written by hand: it is the formula
the report proves.  ``torch.autograd.gradcheck`` then compares it with finite differences of
the forward pass.  ``implementation_check`` holds a NumPy backward pass against torch's own.

This module knows no claim: the topic that proves the formulas hands them over (``Formulas``),
declares the checks as corroborations of its claim (``corroboration.Corroboration``, attached
to the torch layer), and may ``provide`` the formulas used when none are given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..explicit import free_indices
from .backends import backend
from .program import Context, Program

SIZES = (2, 3, 8, 64)       # batch sizes gradcheck runs at
EPSILONS = (1e-5, 0.5)      # the usual epsilon, and a large one


@dataclass(frozen=True)
class Formulas:
    """What the kernel's backward pass evaluates: three claims whose first equation's
    right-hand side is the gradient by the input x[k], by gamma and by beta, and the symbols
    they are written in (the batch's size, the input x, the output gradient g, gamma,
    epsilon)."""

    dx: Any
    dgamma: Any
    dbeta: Any
    size: Any
    x: Any
    g: Any
    gamma: Any
    eps: Any

    @property
    def claims(self) -> tuple:
        return (self.dx, self.dgamma, self.dbeta)


_provider: Callable[[], Formulas] | None = None


def provide(formulas: Callable[[], Formulas]) -> None:
    """Set the formulas used when a caller gives none (a function, called when needed)."""
    global _provider
    _provider = formulas


def default_formulas() -> Formulas:
    if _provider is None:
        raise LookupError("no kernel formulas: pass formulas=, or import the topic that "
                          "provides them (derive.claims)")
    return _provider()


def verified_batch_norm(input_gradient=None, formulas: Formulas | None = None):
    """The autograd.Function whose backward is the claims' formulas (needs torch).

    ``input_gradient``: the claim whose right-hand side gives the input's gradient (by
    default ``formulas.dx``; a wrong formula makes a kernel that gradcheck rejects).
    """
    import torch

    xp = backend("torch")
    f = formulas or default_formulas()
    used = (input_gradient or f.dx, f.dgamma, f.dbeta)
    dx, dgamma, dbeta = (Program(claim.equations[0].rhs, sorted(_free(claim), key=str),
                                 f.size, xp)
                         for claim in used)

    class VerifiedBatchNorm(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, gamma, beta, eps):
            mu = x.mean()
            xhat = (x - mu) / torch.sqrt(((x - mu) ** 2).mean() + eps)
            ctx.save_for_backward(x, gamma)
            ctx.eps = eps
            return gamma * xhat + beta

        @staticmethod
        def backward(ctx, grad_y):
            x, gamma = ctx.saved_tensors
            size = x.shape[0]
            values = Context(size, size, {f.x: x, f.g: grad_y},
                             {f.gamma: gamma, f.eps: torch.as_tensor(ctx.eps, dtype=x.dtype)})
            return (dx(values).reshape(size), dgamma(values).reshape(gamma.shape),
                    dbeta(values).reshape(gamma.shape), None)

    return VerifiedBatchNorm


def _free(claim):
    eq = claim.equations[0]
    return free_indices(eq.lhs, eq.rhs)


def gradcheck(input_gradient=None, seed: int = 0, formulas: Formulas | None = None) -> dict:
    """Run ``torch.autograd.gradcheck`` on the verified kernel at every size and epsilon."""
    formulas = formulas or default_formulas()
    kernel = verified_batch_norm(input_gradient, formulas)
    with backend("torch").one_thread():
        return _gradcheck(kernel, seed, [c.id for c in formulas.claims])


def gradcheck_failure(checked: dict) -> str:
    """The torch layer's summary when gradcheck fails on the kernel."""
    bad = checked["failed"][0]
    return (f"torch.autograd.gradcheck fails on the kernel whose backward is this "
            f"formula (N = {bad['N']}, epsilon = {bad['epsilon']})")


def gradcheck_note(checked: dict) -> str:
    """What a passing gradcheck adds to the torch layer's summary."""
    return (f"; torch.autograd.gradcheck passes on a kernel whose backward is this "
            f"formula ({checked['runs']} runs, N up to {max(checked['sizes'])})")


def _gradcheck(kernel, seed, names):
    import torch

    generator = torch.Generator().manual_seed(seed)
    runs, failed = 0, []
    for size in SIZES:
        for eps in EPSILONS:
            x = torch.randn(size, dtype=torch.float64, generator=generator, requires_grad=True)
            gamma = torch.randn((), dtype=torch.float64, generator=generator,
                                requires_grad=True)
            beta = torch.randn((), dtype=torch.float64, generator=generator, requires_grad=True)
            ok = torch.autograd.gradcheck(lambda a, b, c, e=eps: kernel.apply(a, b, c, e),
                                          (x, gamma, beta), eps=1e-6, atol=1e-6, rtol=1e-5,
                                          raise_exception=False)
            runs += 1
            if not ok:
                failed.append({"N": size, "epsilon": eps})
    return {"function": "VerifiedBatchNorm (backward: " + ", ".join(names) + ")",
            "sizes": list(SIZES), "epsilons": list(EPSILONS), "runs": runs,
            "passed": not failed, "failed": failed}


# float32 round-off is about 1e-7 per operation; its errors are recorded as the power of ten
# they stay below, never finer than these floors, so that no machine's noise moves them
IMPLEMENTATION_FLOORS = {"float32": 1e-5, "float64": 1e-11}
IMPLEMENTATION_TOLERANCE = {"float32": 1e-3, "float64": 1e-8}
IMPLEMENTATION_SHAPES = ((16, 4), (256, 3), (8, 3, 5, 5))   # (N, C) and (N, C, H, W)


def implementation_check(bn_backward, seed: int = 0) -> dict:
    """A NumPy backward pass against torch's batch-norm backward, both in float32 and
    float64: the largest relative error of dx, dgamma, dbeta per dtype.
    ``bn_backward(dy, xhat, r, gamma, axes)`` returns (dx, dgamma, dbeta), r = 1/s."""
    with backend("torch").one_thread():
        return _implementation_check(bn_backward, seed)


def implementation_failure(implemented: dict) -> str:
    """The torch layer's summary when the NumPy implementation disagrees with torch."""
    bad = next(r for r in implemented["rows"] if not r["passed"])
    return (f"the report's NumPy implementation of this formula disagrees with "
            f"{implemented['against']} in {bad['dtype']}")


def _implementation_check(bn_backward, seed):
    import numpy as np
    import torch

    from ..core import error_bound

    rng = np.random.default_rng(seed)
    rows = []
    for dtype in ("float32", "float64"):
        worst = 0.0
        for shape in IMPLEMENTATION_SHAPES:
            axes = (0,) if len(shape) == 2 else (0, 2, 3)
            cshape = (1, shape[1]) + (1,) * (len(shape) - 2)
            x = rng.normal(1.0, 2.0, size=shape).astype(dtype)
            dy = rng.normal(size=shape).astype(dtype)
            gamma = rng.normal(size=shape[1]).astype(dtype)
            eps = 1e-5
            tx = torch.tensor(x, requires_grad=True)
            tg = torch.tensor(gamma, requires_grad=True)
            tb = torch.zeros(shape[1], dtype=tx.dtype, requires_grad=True)
            y = torch.nn.functional.batch_norm(tx, None, None, tg, tb, training=True, eps=eps)
            y.backward(torch.tensor(dy))
            mean = x.mean(axis=axes, keepdims=True)
            var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
            r = 1 / np.sqrt(var + np.asarray(eps, dtype=dtype))
            xhat = (x - mean) * r
            dx, dgamma, dbeta = bn_backward(dy, xhat, r, gamma.reshape(cshape), axes)
            for ours, theirs in ((dx, tx.grad), (dgamma.reshape(-1), tg.grad),
                                 (dbeta.reshape(-1), tb.grad)):
                theirs = theirs.numpy().astype(np.float64)
                err = np.abs(ours.astype(np.float64) - theirs).max() / (1 + np.abs(theirs).max())
                worst = max(worst, float(err))
        rows.append({"dtype": dtype, "shapes": [list(s) for s in IMPLEMENTATION_SHAPES],
                     "max_error_below": error_bound(worst, IMPLEMENTATION_FLOORS[dtype]),
                     "tolerance": IMPLEMENTATION_TOLERANCE[dtype],
                     "passed": worst <= IMPLEMENTATION_TOLERANCE[dtype]})
    return {"against": f"torch {torch.__version__} batch_norm(training=True) backward",
            "rows": rows, "passed": all(r["passed"] for r in rows)}

