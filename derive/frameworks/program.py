"""A claim's expression as a program of framework array operations, differentiated by autograd.

Independent of the symbolic layer: nothing here uses SymPy's ``diff``.  The expression tree is
walked once and turned into Python closures over a ``Backend`` (PyTorch or JAX); evaluating
them runs the same computation a user would write in that framework:

* every sample index gets an array axis (free indices first, then one per reduction depth),
  so a reduction is the framework's mean or sum over that axis; along it, an array is as long
  as the claim's axis the index runs over (a tensor x[n, c] is an N x C array, laid along
  n's and c's array axes; docs/design-axes.md);
* a held statistic (``Held``) is ``detach()`` / ``stop_gradient``;
* a derivative (``Grad``) is the framework's reverse-mode autograd of the compiled inner
  expression with respect to a leaf: the parameter, the node set free (``at``), or the
  whole sample tensor, whose gradient is laid along its indices' axes; a derivative of a
  derivative differentiates the inner one's differentiable result (double backward);
* optionally (``operators=True``) every standardization ``(v - mean v)/sqrt(var v + eps)``
  is computed by the framework's own batch-norm operator instead of by its formula; with
  ``operators=`` an operator's name (``Claim.operator``), every normalization of the form
  that operator computes, by that operator: a standardization by batch_norm, layer_norm,
  instance_norm or group_norm, ``v (mean v^2 + eps)^(-1/2)`` by rms_norm,
  ``v (sum v^2)^(-1/2)`` by weight_norm (``FORMS``).  Where such a normalization is 0/0
  (epsilon = 0 on a constant group, or a group of zeros), its value is NaN -- outside the
  claim's domain -- not the operator's own convention (``_undefined``).

Backends that compile (JAX) evaluate on batches padded to a fixed width: ``ctx.mask`` marks
the real samples, reductions ignore the rest, and padded entries repeat real ones so that
every intermediate value stays finite.  Over several axes, every axis is padded to its own
width and has its own mask (``Context.axes``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import combinations

import numpy as np
import sympy as sp

from ..axes import AxisError, axes_of, index_axis
from ..calculus import BOUND_INDICES, BatchSum, Grad, Held, Mean, SampleIndex, is_reduction
from ..core import OPERATORS, Unsupported
from ..text import text
from ..interpret import Interpreter

# SymPy function -> the array function of the same name in torch / jax.numpy
_FUNCTIONS = {sp.exp: "exp", sp.log: "log", sp.sin: "sin", sp.cos: "cos", sp.tan: "tan",
              sp.tanh: "tanh", sp.sinh: "sinh", sp.cosh: "cosh", sp.atan: "arctan",
              sp.Abs: "abs", sp.sign: "sign"}


# the form of expression each operator computes: what the compiler hands to it
FORMS = {"batch_norm": "standardize", "layer_norm": "standardize",
         "instance_norm": "standardize", "group_norm": "standardize", "rms_norm": "rms",
         "weight_norm": "l2"}
assert set(FORMS) == set(OPERATORS)


@dataclass(frozen=True)
class Context:
    """What one evaluation sees: the batch (as backend arrays), parameters and mask.

    ``size``, ``width`` and ``mask`` describe the batch axis of a one-axis claim.  A claim over
    several axes gives ``axes``: {axis symbol: (size, width, mask)} for every axis, each with
    its own number of real entries, its arrays' length along it and its mask (None when that
    axis is not padded); sample arrays are then shaped by the claim's layout.
    """

    size: object           # the number of real samples (a Python int, or a traced scalar)
    width: int             # the arrays' length: the size, or the padded width
    samples: dict          # sample base -> backend array of shape (width,), or the layout's
    params: dict           # parameter symbol -> backend scalar
    mask: object = None    # backend bool array (width,), or None when nothing is padded
    axes: dict | None = None   # axis symbol -> (size, width, mask), for several axes

    def with_sample(self, base, value):
        return replace(self, samples={**self.samples, base: value})

    def with_param(self, symbol, value):
        return replace(self, params={**self.params, symbol: value})


def standardization(e: sp.Expr, any_index: bool = False):
    """``(value, index, eps, coefficient)`` when ``e`` is ``coefficient`` times the
    standardization ``(v_i - mean v)/sqrt(mean (v - mean v)^2 + eps)`` of a sample expression
    ``v_i`` with one free index; else None.  With ``any_index``, ``v`` may have other indices
    too (a tensor entry x[n, c] standardized over c): ``index`` is the one its mean runs over.
    (Without it, as the batch-norm operator has always been applied: a claim that names no
    operator keeps the evidence it had.)

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
            found = _centered_pair(centered, root, any_index)
            if found is not None:
                coefficient = sp.Mul(*[a for a in e.args if a is not root and a is not centered])
                return (*found, coefficient)
    return None


def _centered_pair(centered, root, any_index=False):
    for term in centered.args:
        mean = -term
        if not isinstance(mean, Mean):
            continue
        value = centered + mean
        indices = _sample_indices([value])
        if len(indices) != 1 and not any_index:
            continue
        for index in indices:
            try:
                mu = Mean(value, index, mean.size)
            except ValueError:   # an index of another axis
                continue
            var = Mean((value - mu) ** 2, index, mean.size)
            eps = root.base - var
            if index in eps.free_symbols or eps.has(Mean, Held, Grad):
                continue
            if value - mu == centered and var + eps == root.base:
                return value, index, eps
    return None


def _sample_indices(exprs) -> list:
    """The sample indices of ``exprs`` -- free, or bound by an enclosing reduction (a loss's
    sum) -- in a fixed order."""
    return sorted({s for e in exprs for s in e.free_symbols
                   if isinstance(s, SampleIndex) or s in BOUND_INDICES},
                  key=lambda s: (s.name, str(getattr(s, "axis", ""))))


def rms_normalization(e: sp.Expr):
    """``(value, index, eps, coefficient)`` when ``e`` is ``coefficient`` times RMSNorm's
    scaling ``v_i (mean v^2 + eps)^(-1/2)`` of a sample expression ``v_i`` (no centering);
    else None.  Recognized, as ``standardization``, by rebuilding the statistic from the
    candidate and comparing."""
    return _scaled(e, Mean, epsilon=True)


def weight_normalization(e: sp.Expr):
    """``(value, index, 0, coefficient)`` when ``e`` is ``coefficient`` times weight
    normalization's ``v_i (sum v^2)^(-1/2)`` (its g = 1; there is no epsilon); else None."""
    return _scaled(e, BatchSum, epsilon=False)


def _scaled(e, reduction, epsilon):
    """``v_i (R v^2 + eps)^(-1/2)`` for the reduction ``R`` (eps = 0 unless ``epsilon``)."""
    if not e.is_Mul:
        return None
    for k, root in enumerate(e.args):
        if not (root.is_Pow and root.exp == sp.Rational(-1, 2)):
            continue
        rest = e.args[:k] + e.args[k + 1:]
        for statistic in sp.Add.make_args(root.base):
            if type(statistic) is not reduction:
                continue
            eps = root.base - statistic
            if eps.has(Mean, BatchSum, Held, Grad) or not (epsilon or eps == 0):
                continue
            found = _scaled_value(rest, statistic, eps)
            if found is not None:
                return found
    return None


def _scaled_value(factors, statistic, eps):
    """The factors whose product ``v_i`` has ``statistic`` = R v^2 (largest first: alpha v
    before v, since (alpha v)^2 expands to alpha^2 v^2), with the index and the rest."""
    positions = range(len(factors))
    for index in _sample_indices(factors):
        if index in eps.free_symbols:
            continue
        for count in range(len(factors), 0, -1):
            for chosen in combinations(positions, count):
                value = sp.Mul(*[factors[p] for p in chosen])
                if index not in value.free_symbols:
                    continue
                try:
                    rebuilt = type(statistic)(value ** 2, index, statistic.size)
                except ValueError:   # an index of another axis
                    continue
                if rebuilt == statistic:
                    rest = sp.Mul(*[factors[p] for p in positions if p not in chosen])
                    return value, index, eps, rest
    return None


_RECOGNIZERS = {"standardize": lambda e: standardization(e, any_index=True),
                "rms": rms_normalization, "l2": weight_normalization}


def normalization(e: sp.Expr, operator: str | None):
    """``(form, value, index, eps, coefficient)`` when ``e`` is a normalization of the form
    ``operator`` computes (``FORMS``); else None.  ``operator`` None: a standardization of a
    value with one index, the batch-norm operator's (a claim that names no operator)."""
    if operator is None:
        found = standardization(e)
        return None if found is None else ("standardize", *found)
    form = FORMS[operator]
    found = _RECOGNIZERS[form](e)
    return None if found is None else (form, *found)


def _statistic(form, value, index, axis):
    """The reduction a normalization of ``form`` computes over ``axis``."""
    if form == "standardize":
        return Mean(value, index, axis)
    return (Mean if form == "rms" else BatchSum)(value ** 2, index, axis)


def runs_along(e, found, scope) -> bool:
    """The normalization runs over its index's own axis: the operator normalizes along one
    array axis, and a statistic over another axis is not its computation."""
    form, value, index = found[:3]
    try:
        axis = index_axis(index, scope)
    except AxisError:
        return False
    return axis is not None and e.has(_statistic(form, value, index, axis))


def recognized(expr: sp.Expr, operator: str, scope=None) -> bool:
    """Whether ``Program(expr, ..., operators=operator)`` computes some node of ``expr`` by
    the operator (outside derivatives; inside one, an epsilon it varies keeps the formula)."""
    scope = scope or {}
    if is_reduction(expr):
        scope = {**scope, expr.index: expr.size}
    elif expr.is_Mul:
        found = normalization(expr, operator)
        if found is not None and runs_along(expr, found, scope):
            return True
    return any(recognized(a, operator, scope) for a in expr.args)


class Program(Interpreter):
    """One expression, compiled once for one backend, evaluated on many instances.

    Array axes: one per free index (in the order given), then one per reduction depth.  The
    length of an array along one of them is the length of the claim's axis the index runs
    over: a free index's own (``SampleIndex.axis``), a bound index's from the reduction that
    binds it (its ``size``).  Reductions at one depth in different places may run over
    different axes; each is compiled with its own scope, so each knows its own.

    An ``Interpreter``: ``visit(e, scope, depth)`` compiles a node by the
    ``_eval_<ClassName>`` rule for its class; a node of no rule is refused in a sentence
    ("no torch rule for ...", "no jax rule for ...").
    """

    @property
    def rule_name(self) -> str:
        return self.xp.name

    def __init__(self, expr: sp.Expr, indices, size_symbol, backend, operators=False):
        # operators: False (every node by its formula), True (standardizations by the
        # batch-norm operator) or an operator's name (``Claim.operator``; ``FORMS``)
        expr = sp.sympify(expr)
        self.axes = {s: n for n, s in enumerate(indices)}
        self.axes.update({j: len(indices) + d for d, j in enumerate(BOUND_INDICES)})
        self.ndim = len(self.axes)
        self.size_symbol = size_symbol
        # every axis the expression names (its reductions' sizes, its indices' axes)
        self.axis_symbols = set(axes_of(expr)) | {size_symbol}
        self.xp = backend
        self.operators = "batch_norm" if operators is True else (operators or None)
        if self.operators is not None and self.operators not in FORMS:
            raise Unsupported(f"no operator called {self.operators!r}")
        # operators=True recognizes what it always has (a value of one index); a named
        # operator, a value of several indices too (``standardization``'s any_index)
        self._recognize = None if operators is True else self.operators
        self.operator_nodes = 0   # normalizations computed by the framework's operator
        self._varying = []        # the variables of the derivatives being compiled
        self.fn = self.visit(expr, {}, 0)

    def __call__(self, ctx: Context):
        return self.fn(ctx)

    def _dim(self, ctx, axis):
        """(real size, array length, mask or None) of the claim's axis ``axis``."""
        if ctx.axes is None:   # one axis: every index runs over the batch
            return ctx.size, ctx.width, ctx.mask
        if axis in ctx.axes:
            return ctx.axes[axis]
        raise Unsupported(f"no size given for the axis {axis}")

    def _shape(self, ctx, *placed):
        """The shape of an array laid along ``placed`` = ((array axis, claim axis), ...)."""
        shape = [1] * self.ndim
        for position, axis in placed:
            shape[position] = self._dim(ctx, axis)[1]
        return shape

    def _axis(self, idx):
        if idx not in self.axes:
            raise Unsupported(f"sample index {idx} must be a single index symbol")
        return self.axes[idx]

    def _placed(self, idx, scope):
        """(array axis, claim axis) of an index."""
        position = self._axis(idx)
        axis = index_axis(idx, scope)
        if axis is None:
            raise Unsupported(f"the index {idx} runs over no axis")
        return position, axis

    # -- one rule per node type (``Interpreter.visit`` finds it along the node's MRO) ---------
    # visit(e, scope, depth) compiles ``e`` into a closure ctx -> array; ``scope`` maps each
    # bound index to the axis of the reduction binding it, ``depth`` counts the derivatives
    # the node is inside

    def _eval_Symbol(self, e, scope, depth):
        if e in self.axis_symbols:
            return lambda ctx: self._dim(ctx, e)[0]
        if isinstance(e, SampleIndex) or e in BOUND_INDICES:
            xp, placed = self.xp, self._placed(e, scope)
            return lambda ctx: xp.reshape(xp.arange(self._dim(ctx, placed[1])[1]) + 1.0,
                                          self._shape(ctx, placed))

        def param(ctx):
            if e not in ctx.params:
                raise Unsupported(f"no value for {e}")
            return ctx.params[e]
        return param

    def _eval_Number(self, e, scope, depth):
        value = float(e)
        return lambda ctx: value

    _eval_NumberSymbol = _eval_Number   # pi, E: named constants are numbers too

    def _eval_Indexed(self, e, scope, depth):
        return self._tensor(e, scope)

    def _eval_KroneckerDelta(self, e, scope, depth):
        xp = self.xp
        (a, axis_a), (b, axis_b) = (self._placed(i, scope) for i in e.args)
        if axis_a != axis_b:
            raise Unsupported(f"{e} compares indices of the axes {axis_a} and {axis_b}")
        if a == b:
            return lambda ctx: 1.0
        return lambda ctx: xp.reshape(xp.eye(self._dim(ctx, axis_a)[1]),
                                      self._shape(ctx, (a, axis_a), (b, axis_b)))

    def _eval__Reduction(self, e, scope, depth):
        return self._reduction(e, scope, depth)

    def _eval_Held(self, e, scope, depth):
        xp, inner = self.xp, self.visit(e.args[0], scope, depth)
        return lambda ctx: xp.detach(inner(ctx))

    def _eval_Grad(self, e, scope, depth):
        return self._grad(e, scope, depth)

    def _arguments(self, e, scope, depth):
        return [self.visit(a, scope, depth) for a in e.args]

    def _eval_Add(self, e, scope, depth):
        args = self._arguments(e, scope, depth)
        return lambda ctx: _fold(lambda u, v: u + v, (f(ctx) for f in args))

    def _eval_Mul(self, e, scope, depth):
        if self.operators:
            found = normalization(e, self._recognize)
            if found is not None and self._operator_applies(e, found, scope):
                return self._operator(*found, scope, depth)
        args = self._arguments(e, scope, depth)
        return lambda ctx: _fold(lambda u, v: u * v, (f(ctx) for f in args))

    def _eval_Pow(self, e, scope, depth):
        xp, (base, exponent) = self.xp, self._arguments(e, scope, depth)
        if e.exp == sp.Rational(1, 2):
            return lambda ctx: xp.sqrt(base(ctx))
        return lambda ctx: base(ctx) ** exponent(ctx)

    def _eval_Max(self, e, scope, depth):
        xp, args = self.xp, self._arguments(e, scope, depth)
        pick = xp.maximum if isinstance(e, sp.Max) else xp.minimum
        return lambda ctx: _fold(pick, (xp.asarray(f(ctx)) for f in args))

    _eval_Min = _eval_Max

    def _eval_Application(self, e, scope, depth):
        xp, args = self.xp, self._arguments(e, scope, depth)
        if e.func in _FUNCTIONS and len(args) == 1:
            fn = xp.function(_FUNCTIONS[e.func])
            return lambda ctx: fn(xp.asarray(args[0](ctx)))
        return self.unknown(e, scope, depth)

    def _eval_Basic(self, e, scope, depth):
        self._arguments(e, scope, depth)   # a node of no rule: its arguments' errors first
        return self.unknown(e, scope, depth)

    def _tensor(self, e, scope):
        """A tensor entry x[n, c]: the array (shaped by the layout) laid along the indices'
        array axes."""
        xp, base = self.xp, e.base
        placed = [self._placed(t, scope) for t in e.indices]
        if len(placed) == 1:
            return lambda ctx: xp.reshape(ctx.samples[base], self._shape(ctx, placed[0]))
        positions = [p for p, _ in placed]
        if len(set(positions)) != len(positions):
            raise Unsupported(f"{e} uses one index at two positions (a diagonal)")
        order = sorted(range(len(placed)), key=lambda k: positions[k])

        def tensor(ctx):
            value = xp.asarray(ctx.samples[base])
            if value.ndim != len(placed):
                raise Unsupported(f"{base} has {value.ndim} axes, used with {len(placed)} "
                                  "indices")
            return xp.reshape(xp.transpose(value, order), self._shape(ctx, *placed))
        return tensor

    def _reduction(self, e, scope, depth):
        xp = self.xp
        body = self.visit(e.body, {**scope, e.index: e.size}, depth)
        axis, along, mean = self._axis(e.index), e.size, isinstance(e, Mean)

        def reduction(ctx):
            v = body(ctx)
            size, width, mask = self._dim(ctx, along)
            if not xp.is_array(v) or v.ndim < self.ndim or v.shape[axis] == 1:
                return v if mean else size * v   # a summand free of the index
            if mask is not None:
                keep = xp.reshape(mask, self._shape(ctx, (axis, along)))
                v = xp.where(keep, v, 0.0)
            total = xp.sum(v, axis)
            return total / size if mean else total
        return reduction

    def _grad(self, e, scope, depth):
        """The framework's autograd of the compiled inner expression.

        A derivative inside another (``depth`` > 0) must itself stay differentiable: its
        backward pass builds a graph (torch ``create_graph=True``; JAX traces through it), its
        leaf is the outer computation's value rather than a detached copy, and a node's value
        ``at`` is not detached either, so the outer derivative sees every way the inner one
        depends on its variables.  A derivative of a derivative is taken forward-over-reverse
        in JAX (``jax.jacfwd`` of ``jax.jacrev``: the Hessian's scheme) and reverse-over-reverse
        in PyTorch (double backward).
        """
        xp = self.xp
        before = self.operator_nodes
        wrt = e.wrt
        self._varying.append(wrt)
        try:
            inner = self.visit(e.expr, scope, depth + 1)
        finally:
            self._varying.pop()
        # PyTorch has no batched backward rule for its batch-norm operator (it falls back to
        # a slow loop): through the operator, the Jacobian is taken row by row instead
        batched = self.operator_nodes == before
        options = {}
        if depth > 0:
            options["create_graph"] = True
        if e.expr.has(Grad):
            options["outer"] = True
        if e.at is not None and any(isinstance(s, SampleIndex) or s in scope
                                    for s in e.at.free_symbols):
            # the node is one parameter for the whole batch here: a value per sample would
            # need a derivative per sample, which this compiler does not build
            raise Unsupported(f"the node {text(e.wrt)} is evaluated at {text(e.at)}, a value that "
                              "differs "
                              "from sample to sample; the framework layers take a node's "
                              "derivative at one value for the whole batch")
        at = None if e.at is None else self.visit(e.at, scope, depth)
        if isinstance(wrt, sp.Indexed):
            base = wrt.base
            positions = [self._axis(t) for t in wrt.indices]

            def by_sample(ctx):
                jac = xp.jacobian(lambda leaf: self._full(inner(ctx.with_sample(base, leaf))),
                                  ctx.samples[base], batched, **options)
                # jac: inner's shape + the tensor's; lay the gradient along each index's axis,
                # the tensor's last position first (it is always jac's last axis)
                for axis in reversed(positions):
                    if jac.shape[axis] == 1:
                        jac = xp.squeeze(xp.moveaxis(jac, -1, axis), axis + 1)
                    else:
                        jac = xp.moveaxis(xp.diagonal(jac, axis, jac.ndim - 1), -1, axis)
                return jac
            return by_sample
        if isinstance(wrt, sp.Symbol):
            def by_param(ctx):
                if at is None:
                    value = ctx.params[wrt]
                elif depth > 0:
                    value = xp.asarray(at(ctx))   # the outer derivative goes through it
                else:
                    value = xp.detach(xp.asarray(at(ctx)))
                return xp.jacobian(lambda leaf: self._full(inner(ctx.with_param(wrt, leaf))),
                                   xp.reshape(xp.asarray(value), []), batched, **options)
            return by_param
        raise Unsupported(f"cannot differentiate with respect to {wrt}")

    def _full(self, v):
        """Every value as an array with one axis per index (size 1 where it does not vary)."""
        v = self.xp.asarray(v)
        return self.xp.reshape(v, [1] * self.ndim) if v.ndim == 0 else v

    def _operator_applies(self, e, found, scope):
        """The normalization runs over its index's own axis (``runs_along``), and its
        epsilon is not a variable some enclosing derivative differentiates by (the operators
        take epsilon as a number)."""
        eps = found[3]
        if eps.free_symbols & set(self._varying):
            return False
        return runs_along(e, found, scope)

    def _operator(self, form, value, index, eps, coefficient, scope, depth):
        xp, operator = self.xp, self.operators
        self.operator_nodes += 1
        v, e = self.visit(value, scope, depth), self.visit(eps, scope, depth)
        axis, along = self._placed(index, scope)
        scale = self.visit(coefficient, scope, depth)

        def compute(ctx):
            values = self._full(v(ctx))
            size, width, mask = self._dim(ctx, along)
            if values.shape[axis] == 1:   # the same value for every sample
                shape = list(values.shape)
                shape[axis] = width
                values = xp.broadcast_to(values, shape)
            epsilon = e(ctx)
            normalized = xp.standardize(values, axis, epsilon, size, width, mask,
                                        operator=operator)
            return scale(ctx) * normalized * _undefined(xp, form, values, axis, epsilon, mask)
        return compute


def _undefined(xp, form, values, axis, eps, mask):
    """1 where the normalization of ``values`` along ``axis`` is defined, NaN where it is
    0/0: epsilon = 0 and a statistic that is exactly 0 -- every real entry of a group equal
    (a standardization's variance) or zero (RMSNorm's mean square, weight normalization's
    norm).  There the operators return a value of their own (PyTorch's batch-norm kernels
    take 1/sqrt(0 + 0) as 0, so a constant group normalizes to 0; elsewhere the round-off of
    the mean over the round-off of the variance, +-1 or anything), and so does the formula
    evaluated in floating point, while the statement says nothing there: NaN puts the entry
    outside the domain, as the formula's own 0/0 does, and a derivative through it too.
    Computed from held values: it marks where, and carries no derivative of its own."""
    values = xp.detach(values)
    if mask is not None:   # padded entries repeat real ones: each group by its real entries
        shape = [1] * values.ndim
        shape[axis] = mask.shape[0]
        keep = xp.reshape(mask, shape)
        high = xp.where(keep, values, -np.inf)
        low = xp.where(keep, values, np.inf)
    else:
        high = low = values
    if form == "standardize":   # the variance is 0: a constant group
        zero = xp.amax(high, axis) == xp.amin(low, axis)
    else:                       # the mean square or the norm is 0: a group of zeros
        zero = (xp.amax(high, axis) == 0) & (xp.amin(low, axis) == 0)
    undefined = zero & (xp.detach(xp.asarray(eps)) == 0)
    return xp.where(undefined, xp.asarray(np.nan), xp.asarray(1.0))


def _fold(op, values):
    it = iter(values)
    acc = next(it)
    for v in it:
        acc = op(acc, v)
    return acc
