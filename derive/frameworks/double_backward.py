"""The verified second-order formulas as a real PyTorch double backward, and PyTorch's checks.

``verified_double_backward()`` builds two ``torch.autograd.Function``s:

* the layer: its forward pass is Algorithm 1 (training mode, one activation over a batch of
  m, y = gamma xhat + beta), its backward pass computes dx by the second Function, and
  dgamma, dbeta by the first-order formulas of their claims (compiled by ``program.Program``,
  so PyTorch differentiates them again by its own autograd);
* the backward: its forward pass evaluates the verified first-order formula for dx (the
  compact one), and its own backward -- the double backward -- evaluates the second-order
  claims' right-hand sides, matrices over two free indices (j, k), contracted with the
  cotangent v of dx:

      d(v . dx)/dx_j = sum_k v_k d^2 l/dx_j dx_k        (the Hessian claim)
      d(v . dx)/dg_j = sum_k v_k d(dl/dx_k)/dg_j         (the Jacobian claim)
      d(v . dx)/dgamma = sum_k v_k dx_k / gamma          (the first formula at gamma = 1; it is
                                                          linear in gamma, checked when built)

Nothing in either backward is written by hand: every derivative is a formula the report
proves (dgamma and dbeta too, when their claims are given, as the topic does; else they are
computed from xhat by torch).  ``gradgradcheck`` then runs ``torch.autograd.gradcheck`` and
``torch.autograd.gradgradcheck`` (finite differences of the backward pass), and
``agrees_with_framework`` holds the Hessian- and Jacobian-vector products against what
``torch.nn.functional.batch_norm(training=True)``'s own double backward computes, in float64
and float32, recorded as power-of-ten bounds so that the numbers are the same on every
machine.

Like ``kernel``, this module knows no claim: the topic hands the formulas over (``Formulas``)
and declares the checks as corroborations of its claim.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sympy as sp

from ..explicit import free_indices
from .backends import TorchBackend, backend
from .program import Context, Program

SIZES = (2, 3, 8, 32)       # batch sizes gradgradcheck runs at
EPSILONS = (1e-5, 0.5)      # the usual epsilon, and a large one

# the framework comparison: (N, C) and (N, C, H, W) inputs, statistics per channel over the
# other axes (m = N, or N*H*W)
FRAMEWORK_SHAPES = ((16, 4), (64, 3), (4, 2, 3, 3))
FRAMEWORK_EPS = 1e-5
# errors recorded as the power of ten they stay below, never finer than these floors (a
# factor of 10 or more above what any machine's round-off reaches), so no noise moves them
FRAMEWORK_FLOORS = {"float32": 1e-5, "float64": 1e-12}
FRAMEWORK_TOLERANCE = {"float32": 1e-3, "float64": 1e-9}


@dataclass(frozen=True)
class Formulas:
    """What the kernel evaluates: ``first``, a claim whose first equation's right-hand side is
    dl/dx over one free index; ``second_input`` and ``second_grad_output``, claims whose
    right-hand sides are d^2 l/dx_j dx_k and d(dl/dx_k)/dg_j over the free indices ``rows``
    (j) and ``cols`` (k); optionally ``dgamma`` and ``dbeta``, claims for the parameters'
    gradients (else computed from xhat by torch itself); and the symbols the claims are
    written in: the batch's size, the input x, the output gradient g, gamma and epsilon."""

    first: Any
    second_input: Any
    second_grad_output: Any
    size: Any
    x: Any
    g: Any
    gamma: Any
    eps: Any
    rows: Any
    cols: Any
    dgamma: Any = None
    dbeta: Any = None

    @property
    def claims(self) -> tuple:
        return (self.first, self.second_input, self.second_grad_output)


class _Float32(TorchBackend):
    """PyTorch in float32: the constants a program creates (eye, arange, numbers) too, so
    that a float32 evaluation is float32 throughout."""

    dtype = "float32"

    def __init__(self):
        super().__init__()
        self.float = self.torch.float32


_BACKENDS: dict = {}


def _backend(dtype: str):
    if dtype == "float64":
        return backend("torch")
    if dtype not in _BACKENDS:
        _BACKENDS[dtype] = _Float32()
    return _BACKENDS[dtype]


def _rhs(claim):
    return claim.equations[0].rhs


def _vector(claim, f, xp):
    """The claim's right-hand side over its one free index, compiled."""
    eq = claim.equations[0]
    free = sorted(free_indices(eq.lhs, eq.rhs), key=str)
    if len(free) > 1:
        raise ValueError(f"{claim.id}: a gradient over one free index expected, got "
                         f"{', '.join(map(str, free))}")
    return Program(_rhs(claim), free, f.size, xp)


def _matrix(claim, f, xp):
    """The claim's right-hand side over (rows, cols), compiled: entry [j, k]."""
    eq = claim.equations[0]
    extra = free_indices(eq.lhs, eq.rhs) - {f.rows, f.cols}
    if extra:
        raise ValueError(f"{claim.id}: free indices other than {f.rows}, {f.cols}: "
                         f"{', '.join(map(str, sorted(extra, key=str)))}")
    return Program(_rhs(claim), [f.rows, f.cols], f.size, xp)


def _linear_in_gamma(claim, gamma) -> bool:
    rhs = _rhs(claim)
    return sp.expand(rhs - gamma * rhs.xreplace({gamma: sp.S.One})) == 0


def _as_vector(value, size):
    """A program's value over one free index (a number when it does not depend on it) as a
    vector of ``size`` entries."""
    return value.reshape(-1).expand(size) if value.numel() == 1 else value.reshape(size)


def _as_matrix(value, size):
    """A program's value over (rows, cols), its reduction axes of length 1 after them, as a
    size x size matrix."""
    while value.ndim > 2:
        value = value.squeeze(-1)
    while value.ndim < 2:
        value = value.unsqueeze(0)
    return value.expand(size, size)


def verified_double_backward(first, second_input, second_grad_output, formulas: Formulas,
                             dtype: str = "float64"):
    """The layer's ``torch.autograd.Function`` (apply(x, gamma, beta, eps) -> y) whose backward
    is ``first``'s formula and whose double backward is ``second_input``'s (by x) and
    ``second_grad_output``'s (by the output gradient).  ``formulas`` gives the symbols and the
    parameters' claims.  A wrong second-order formula makes a kernel gradgradcheck rejects."""
    import torch

    f = formulas
    xp = _backend(dtype)
    if not _linear_in_gamma(first, f.gamma):
        raise ValueError(f"{first.id}: the input gradient is not linear in {f.gamma}")
    dx_program = _vector(first, f, xp)
    hessian, jacobian = _matrix(second_input, f, xp), _matrix(second_grad_output, f, xp)
    dgamma = _vector(f.dgamma, f, xp) if f.dgamma is not None else None
    dbeta = _vector(f.dbeta, f, xp) if f.dbeta is not None else None

    def context(x, gamma, grad_y, eps):
        size = x.shape[0]
        return Context(size, size, {f.x: x, f.g: grad_y},
                       {f.gamma: gamma, f.eps: torch.as_tensor(eps, dtype=x.dtype)})

    def evaluate(program, values, like):
        return torch.as_tensor(program(values), dtype=like.dtype)

    def vector(program, values, like):
        return _as_vector(evaluate(program, values, like), like.shape[0])

    def matrix(program, values, like):
        return _as_matrix(evaluate(program, values, like), like.shape[0])

    class VerifiedBackward(torch.autograd.Function):
        """dx from the first-order formula; its backward is the second-order formulas."""

        @staticmethod
        def forward(ctx, x, gamma, grad_y, eps):
            ctx.save_for_backward(x, gamma, grad_y)
            ctx.eps = eps
            return vector(dx_program, context(x, gamma, grad_y, eps), x)

        @staticmethod
        @torch.autograd.function.once_differentiable
        def backward(ctx, v):
            x, gamma, grad_y = ctx.saved_tensors
            values = context(x, gamma, grad_y, ctx.eps)
            d_x = matrix(hessian, values, x) @ v          # sum_k H[j, k] v_k
            d_g = matrix(jacobian, values, x) @ v         # sum_k J[j, k] v_k
            d_gamma = None
            if ctx.needs_input_grad[1]:                   # dx is gamma times dx at gamma = 1
                at_one = context(x, torch.ones_like(gamma), grad_y, ctx.eps)
                d_gamma = (vector(dx_program, at_one, x) * v).sum().reshape(gamma.shape)
            return d_x, d_gamma, d_g, None

    class VerifiedBatchNorm(torch.autograd.Function):
        """Algorithm 1; backward: dx by ``VerifiedBackward``, dgamma and dbeta by their
        formulas (differentiated again by torch)."""

        @staticmethod
        def forward(ctx, x, gamma, beta, eps):
            # gamma and beta: tensors (differentiable) or plain numbers (fixed)
            gamma_t = torch.as_tensor(gamma, dtype=x.dtype)
            beta_t = torch.as_tensor(beta, dtype=x.dtype)
            mu = x.mean()
            xhat = (x - mu) / torch.sqrt(((x - mu) ** 2).mean() + eps)
            ctx.save_for_backward(x, gamma_t)
            ctx.eps, ctx.beta_shape = eps, beta_t.shape
            return gamma_t * xhat + beta_t

        @staticmethod
        def backward(ctx, grad_y):
            x, gamma = ctx.saved_tensors
            dx = VerifiedBackward.apply(x, gamma, grad_y, ctx.eps)
            values = context(x, gamma, grad_y, ctx.eps)
            d_gamma = d_beta = None
            if ctx.needs_input_grad[1]:
                if dgamma is not None:
                    d_gamma = evaluate(dgamma, values, x).reshape(gamma.shape)
                else:
                    mu = x.mean()
                    xhat = (x - mu) / torch.sqrt(((x - mu) ** 2).mean() + ctx.eps)
                    d_gamma = (grad_y * xhat).sum().reshape(gamma.shape)
            if ctx.needs_input_grad[2]:
                d_beta = (evaluate(dbeta, values, x) if dbeta is not None
                          else grad_y.sum()).reshape(ctx.beta_shape)
            return dx, d_gamma, d_beta, None

    return VerifiedBatchNorm


def kernel(formulas: Formulas, dtype: str = "float64"):
    """The kernel of ``formulas``' own claims."""
    return verified_double_backward(formulas.first, formulas.second_input,
                                    formulas.second_grad_output, formulas, dtype)


# -- gradcheck and gradgradcheck ---------------------------------------------------------------

def gradgradcheck(formulas: Formulas, seed: int = 0) -> dict:
    """``torch.autograd.gradcheck`` and ``gradgradcheck`` on the kernel, float64, at every
    size and epsilon."""
    layer = kernel(formulas)
    with backend("torch").one_thread():
        return _gradgradcheck(layer, seed, [c.id for c in formulas.claims])


def gradgradcheck_failure(checked: dict) -> str:
    """The torch layer's summary when a check fails on the kernel."""
    bad = checked["failed"][0]
    return (f"torch.autograd.{bad['check']} fails on the kernel whose double backward is "
            f"this formula (N = {bad['N']}, epsilon = {bad['epsilon']})")


def gradgradcheck_note(checked: dict) -> str:
    """What a passing gradgradcheck adds to the torch layer's summary."""
    return (f"; torch.autograd.gradcheck and gradgradcheck pass on a kernel whose double "
            f"backward is this formula ({checked['runs']} runs, N up to "
            f"{max(checked['sizes'])})")


def _gradgradcheck(layer, seed, names):
    import torch

    generator = torch.Generator().manual_seed(seed)
    runs, failed = 0, []

    def draw(*shape):
        return torch.randn(shape, dtype=torch.float64, generator=generator,
                           requires_grad=True)

    for size in SIZES:
        for eps in EPSILONS:
            inputs = (draw(size), draw(), draw())
            grad_y = draw(size)

            def fn(a, b, c, e=eps):
                return layer.apply(a, b, c, e)

            options = dict(eps=1e-6, atol=1e-6, rtol=1e-5, raise_exception=False)
            checks = (("gradcheck", lambda: torch.autograd.gradcheck(fn, inputs, **options)),
                      ("gradgradcheck", lambda: torch.autograd.gradgradcheck(
                          fn, inputs, (grad_y,), **options)))
            for name, run in checks:
                runs += 1
                if not run():
                    failed.append({"check": name, "N": size, "epsilon": eps})
    return {"function": "VerifiedBatchNorm (double backward: " + ", ".join(names) + ")",
            "sizes": list(SIZES), "epsilons": list(EPSILONS), "runs": runs,
            "passed": not failed, "failed": failed}


# -- against batch_norm's own double backward ---------------------------------------------------

def agrees_with_framework(formulas: Formulas, seed: int = 0) -> dict:
    """The kernel's double backward (its Hessian-, Jacobian- and gamma-vector products)
    against ``batch_norm(training=True)``'s, both in float32 and float64: the largest
    relative error per dtype, as a power-of-ten bound."""
    with backend("torch").one_thread():
        return _agrees(formulas, seed)


def framework_failure(compared: dict) -> str:
    """The torch layer's summary when the formula disagrees with torch's double backward."""
    bad = next(r for r in compared["rows"] if not r["passed"])
    return (f"this formula, as a double backward, disagrees with batch_norm(training=True)'s "
            f"own in {bad['dtype']}")


def framework_note(compared: dict) -> str:
    """What agreement adds to the torch layer's summary."""
    bounds = ", ".join(f"{r['dtype']} < {_power(r['max_error_below'])}"
                       for r in compared["rows"])
    return (f"; as a double backward it agrees with batch_norm(training=True)'s own "
            f"({bounds})")


def _power(bound: float) -> str:
    return f"{bound:.0e}".replace("e-0", "e-").replace("e+0", "e+")


def double_backward_products(layer, x, gamma, beta, grad_y, v, eps):
    """d(v . dx)/dx, d(v . dx)/dg and d(v . dx)/dgamma through ``layer`` (one channel)."""
    import torch

    x, gamma, grad_y = (t.detach().requires_grad_(True) for t in (x, gamma, grad_y))
    y = layer.apply(x, gamma, beta, eps)
    (dx,) = torch.autograd.grad(y, x, grad_y, create_graph=True)
    return torch.autograd.grad(dx, (x, grad_y, gamma), v)


def _agrees(formulas, seed):
    import numpy as np
    import torch

    from ..core import error_bound

    rng = np.random.default_rng(seed)
    rows = []
    for dtype in ("float32", "float64"):
        layer = kernel(formulas, dtype)
        worst = 0.0
        for shape in FRAMEWORK_SHAPES:
            channels = shape[1]
            draw = {name: torch.tensor(rng.normal(1.0 if name == "x" else 0.0,
                                                  2.0 if name == "x" else 1.0,
                                                  size=shape).astype(dtype))
                    for name in ("x", "g", "v")}
            gamma = torch.tensor(rng.normal(size=channels).astype(dtype))
            beta = torch.tensor(rng.normal(size=channels).astype(dtype))
            x, g = (draw[n].clone().requires_grad_(True) for n in ("x", "g"))
            gm = gamma.clone().requires_grad_(True)
            y = torch.nn.functional.batch_norm(x, None, None, gm, beta, training=True,
                                               eps=FRAMEWORK_EPS)
            (dx,) = torch.autograd.grad(y, x, g, create_graph=True)
            theirs = torch.autograd.grad(dx, (x, g, gm), draw["v"])

            def per_channel(t, c):   # the m values of channel c
                return t.movedim(1, 0)[c].reshape(-1)

            for c in range(channels):
                ours = double_backward_products(
                    layer, per_channel(draw["x"], c), gamma[c], beta[c],
                    per_channel(draw["g"], c), per_channel(draw["v"], c), FRAMEWORK_EPS)
                pairs = ((ours[0], per_channel(theirs[0], c)),
                         (ours[1], per_channel(theirs[1], c)),
                         (ours[2].reshape(1), theirs[2][c].reshape(1)))
                for mine, reference in pairs:
                    mine = mine.detach().double()
                    reference = reference.detach().double()
                    err = (mine - reference).abs().max() / (1 + reference.abs().max())
                    worst = max(worst, float(err))
        rows.append({"dtype": dtype, "shapes": [list(s) for s in FRAMEWORK_SHAPES],
                     "max_error_below": error_bound(worst, FRAMEWORK_FLOORS[dtype]),
                     "tolerance": FRAMEWORK_TOLERANCE[dtype],
                     "passed": worst <= FRAMEWORK_TOLERANCE[dtype]})
    return {"against": f"torch {torch.__version__} batch_norm(training=True) double backward",
            "rows": rows, "passed": all(r["passed"] for r in rows)}
