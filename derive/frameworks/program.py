"""A claim's expression as a program of framework array operations, differentiated by autograd.

Independent of the symbolic layer: nothing here uses SymPy's ``diff``.  The expression tree is
walked once and turned into Python closures over a ``Backend`` (PyTorch or JAX); evaluating
them runs the same computation a user would write in that framework:

* every sample index gets an array axis (free indices first, then one per reduction depth),
  so a reduction is the framework's mean or sum over that axis;
* a held statistic (``Held``) is ``detach()`` / ``stop_gradient``;
* a derivative (``Grad``) is the framework's reverse-mode autograd of the compiled inner
  expression with respect to a leaf: the parameter, the node set free (``at``), or the
  whole sample vector, whose gradient row is laid along the index's axis;
* optionally (``operators=True``) every standardization ``(v - mean v)/sqrt(var v + eps)``
  is computed by the framework's own batch-norm operator instead of by its formula.

Backends that compile (JAX) evaluate on batches padded to a fixed width: ``ctx.mask`` marks
the real samples, reductions ignore the rest, and padded entries repeat real ones so that
every intermediate value stays finite.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp
from sympy.core.function import Application

from ..calculus import BOUND_INDICES, Grad, Held, Mean, SampleIndex, is_reduction
from ..core import Unsupported

# SymPy function -> the array function of the same name in torch / jax.numpy
_FUNCTIONS = {sp.exp: "exp", sp.log: "log", sp.sin: "sin", sp.cos: "cos", sp.tan: "tan",
              sp.tanh: "tanh", sp.sinh: "sinh", sp.cosh: "cosh", sp.atan: "arctan",
              sp.Abs: "abs", sp.sign: "sign"}


@dataclass(frozen=True)
class Context:
    """What one evaluation sees: the batch (as backend arrays), parameters and mask."""

    size: object           # the number of real samples (a Python int, or a traced scalar)
    width: int             # the arrays' length: the size, or the padded width
    samples: dict          # sample base -> backend array of shape (width,)
    params: dict           # parameter symbol -> backend scalar
    mask: object = None    # backend bool array (width,), or None when nothing is padded

    def with_sample(self, base, value):
        return Context(self.size, self.width, {**self.samples, base: value}, self.params,
                       self.mask)

    def with_param(self, symbol, value):
        return Context(self.size, self.width, self.samples, {**self.params, symbol: value},
                       self.mask)


def standardization(e: sp.Expr):
    """``(value, index, eps, coefficient)`` when ``e`` is ``coefficient`` times the
    standardization ``(v_i - mean v)/sqrt(mean (v - mean v)^2 + eps)`` of a sample expression
    ``v_i`` with one free index; else None.

    Recognized by rebuilding the candidate from its parts and comparing: bound indices are
    canonical, so the same standardization is the same expression wherever it occurs.
    """
    if not e.is_Mul:
        return None
    for root in e.args:
        if not (root.is_Pow and root.exp == sp.Rational(-1, 2)):
            continue
        for centered in e.args:
            if not centered.is_Add:
                continue
            found = _centered_pair(centered, root)
            if found is not None:
                coefficient = sp.Mul(*[a for a in e.args if a is not root and a is not centered])
                return (*found, coefficient)
    return None


def _centered_pair(centered, root):
    for term in centered.args:
        mean = -term
        if not isinstance(mean, Mean):
            continue
        value = centered + mean
        # the sample index: free, or bound by an enclosing reduction (a loss's sum)
        indices = {s for s in value.free_symbols
                   if isinstance(s, SampleIndex) or s in BOUND_INDICES}
        if len(indices) != 1:
            continue
        index = next(iter(indices))
        mu = Mean(value, index, mean.size)
        var = Mean((value - mu) ** 2, index, mean.size)
        eps = root.base - var
        if index in eps.free_symbols or eps.has(Mean, Held, Grad):
            continue
        if value - mu == centered and var + eps == root.base:
            return value, index, eps
    return None


class Program:
    """One expression, compiled once for one backend, evaluated on many instances."""

    def __init__(self, expr: sp.Expr, indices, size_symbol, backend, operators=False):
        self.axes = {s: n for n, s in enumerate(indices)}
        self.axes.update({j: len(indices) + d for d, j in enumerate(BOUND_INDICES)})
        self.ndim = len(self.axes)
        self.size_symbol = size_symbol
        self.xp = backend
        self.operators = operators
        self.operator_nodes = 0   # standardizations computed by the framework's operator
        self.fn = self._compile(sp.sympify(expr), inside_grad=False)

    def __call__(self, ctx: Context):
        return self.fn(ctx)

    def _shape(self, width, *axes):
        shape = [1] * self.ndim
        for a in axes:
            shape[a] = width
        return shape

    def _axis(self, idx):
        if idx not in self.axes:
            raise Unsupported(f"sample index {idx} must be a single index symbol")
        return self.axes[idx]

    def _compile(self, e, inside_grad):  # one branch per node type, like a printer
        xp = self.xp
        if e == self.size_symbol:
            return lambda ctx: ctx.size
        if e.is_Number:
            value = float(e)
            return lambda ctx: value
        if self.operators:
            found = standardization(e)
            if found is not None:
                return self._operator(*found, inside_grad)
        if isinstance(e, sp.Indexed):
            base, axis = e.base, self._axis(e.indices[0])
            return lambda ctx: xp.reshape(ctx.samples[base], self._shape(ctx.width, axis))
        if isinstance(e, SampleIndex) or e in BOUND_INDICES:
            axis = self._axis(e)
            return lambda ctx: xp.reshape(xp.arange(ctx.width) + 1.0,
                                          self._shape(ctx.width, axis))
        if isinstance(e, sp.Symbol):
            def param(ctx):
                if e not in ctx.params:
                    raise Unsupported(f"no value for {e}")
                return ctx.params[e]
            return param
        if isinstance(e, sp.KroneckerDelta):
            a, b = (self._axis(i) for i in e.args)
            if a == b:
                return lambda ctx: 1.0
            return lambda ctx: xp.reshape(xp.eye(ctx.width), self._shape(ctx.width, a, b))
        if is_reduction(e):
            return self._reduction(e, inside_grad)
        if isinstance(e, Held):
            inner = self._compile(e.args[0], inside_grad)
            return lambda ctx: xp.detach(inner(ctx))
        if isinstance(e, Grad):
            return self._grad(e, inside_grad)
        args = [self._compile(a, inside_grad) for a in e.args]
        if e.is_Add:
            return lambda ctx: _fold(lambda u, v: u + v, (f(ctx) for f in args))
        if e.is_Mul:
            return lambda ctx: _fold(lambda u, v: u * v, (f(ctx) for f in args))
        if e.is_Pow:
            base, exponent = args
            if e.exp == sp.Rational(1, 2):
                return lambda ctx: xp.sqrt(base(ctx))
            return lambda ctx: base(ctx) ** exponent(ctx)
        if isinstance(e, (sp.Max, sp.Min)):
            pick = xp.maximum if isinstance(e, sp.Max) else xp.minimum
            return lambda ctx: _fold(pick, (xp.asarray(f(ctx)) for f in args))
        if isinstance(e, Application) and e.func in _FUNCTIONS and len(args) == 1:
            fn = xp.function(_FUNCTIONS[e.func])
            return lambda ctx: fn(xp.asarray(args[0](ctx)))
        raise Unsupported(f"no {xp.name} rule for {type(e).__name__}")

    def _reduction(self, e, inside_grad):
        xp = self.xp
        body, axis, mean = self._compile(e.body, inside_grad), self._axis(e.index), e.symbol == "E"

        def reduction(ctx):
            v = body(ctx)
            if not xp.is_array(v) or v.ndim < self.ndim or v.shape[axis] == 1:
                return v if mean else ctx.size * v   # a summand free of the index
            if ctx.mask is not None:
                keep = xp.reshape(ctx.mask, self._shape(ctx.width, axis))
                v = xp.where(keep, v, 0.0)
            total = xp.sum(v, axis)
            return total / ctx.size if mean else total
        return reduction

    def _grad(self, e, inside_grad):
        xp = self.xp
        if inside_grad:
            raise Unsupported("nested derivatives")
        before = self.operator_nodes
        inner, wrt = self._compile(e.expr, inside_grad=True), e.wrt
        # PyTorch has no batched backward rule for its batch-norm operator (it falls back to
        # a slow loop): through the operator, the Jacobian is taken row by row instead
        batched = self.operator_nodes == before
        at = None if e.at is None else self._compile(e.at, inside_grad)
        if isinstance(wrt, sp.Indexed):
            base, axis = wrt.base, self._axis(wrt.indices[0])

            def by_sample(ctx):
                jac = xp.jacobian(lambda leaf: self._full(inner(ctx.with_sample(base, leaf))),
                                  ctx.samples[base], batched)
                # jac: inner's shape + (width,); lay the gradient row along the index's axis
                if jac.shape[axis] == 1:
                    return xp.squeeze(xp.moveaxis(jac, -1, axis), axis + 1)
                return xp.moveaxis(xp.diagonal(jac, axis, jac.ndim - 1), -1, axis)
            return by_sample
        if isinstance(wrt, sp.Symbol):
            def by_param(ctx):
                value = ctx.params[wrt] if at is None else xp.detach(xp.asarray(at(ctx)))
                return xp.jacobian(lambda leaf: self._full(inner(ctx.with_param(wrt, leaf))),
                                   xp.reshape(xp.asarray(value), []), batched)
            return by_param
        raise Unsupported(f"cannot differentiate with respect to {wrt}")

    def _full(self, v):
        """Every value as an array with one axis per index (size 1 where it does not vary)."""
        v = self.xp.asarray(v)
        return self.xp.reshape(v, [1] * self.ndim) if v.ndim == 0 else v

    def _operator(self, value, index, eps, coefficient, inside_grad):
        xp = self.xp
        self.operator_nodes += 1
        v, e, axis = (self._compile(value, inside_grad), self._compile(eps, inside_grad),
                      self._axis(index))
        scale = self._compile(coefficient, inside_grad)

        def operator(ctx):
            values = self._full(v(ctx))
            if values.shape[axis] == 1:   # the same value for every sample
                shape = list(values.shape)
                shape[axis] = ctx.width
                values = xp.broadcast_to(values, shape)
            return scale(ctx) * xp.standardize(values, axis, e(ctx), ctx)
        return operator


def _fold(op, values):
    it = iter(values)
    acc = next(it)
    for v in it:
        acc = op(acc, v)
    return acc
