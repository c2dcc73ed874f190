"""Numeric instances: the statement evaluated in floating point on concrete batches.

Independent of the symbolic layer in both directions: values are NumPy floats, and a
derivative is taken by the *complex step* (f'(v) = Im f(v + ih)/h with h = 1e-30), which is
exact to rounding and needs no symbolic differentiation at all.  A held statistic keeps only
the real part of its value -- the complex-step picture of a stop-gradient.  Elementary
functions go through ``sympy.lambdify`` to NumPy.

**Axes.**  A claim may run over several named axes (N samples, C channels, ...; see
docs/design-axes.md).  A tensor x[n, c] is an array shaped by its layout (``axes.layout``),
every index (free, or bound by a reduction) is one array axis of its own axis's length, and a
reduction runs over the axis it names.  ``Instance.sizes`` gives every axis's size; without it
the claim has one axis, the batch.

**Second derivatives.**  Complex steps cannot be nested: with one imaginary unit, i * i = -1
mixes the second-order term into the value.  The outer derivative of a nested one is therefore
taken in *forward mode with dual numbers* over the complex numbers: every value of the outer
derivative's evaluation is a ``Jet`` a + eps * b with eps^2 = 0 (a and b complex arrays), the
variable is seeded with b = 1 (a sample with b = delta_jk along its axes), and sums,
products, powers and elementary functions carry b by the chain rule (an elementary function's
derivative is lambdified once, like the function).  Inside it the inner derivative is the
ordinary complex step: the algebra C[eps]/(eps^2) is commutative and i never multiplies i, so
Im(b)/h is d/dv_outer (d/dv_inner f) + O(h^2) with h = 1e-30: exact to rounding, no
difference quotient, no step to tune.  A held statistic drops both perturbations (its real
value part), so it has zero derivative under either derivative.  Rounding is the only error,
so second derivatives are checked against the same tolerance as values
(``SECOND_ORDER_TOLERANCE``, equal to ``TOLERANCE``); a third derivative is refused.

Two drivers: seeded NumPy random instances, and Hypothesis-drawn instances (derandomized, so
the certificate is the same on every run), whose failures shrink to a small example.  Over
several axes both draw a size per axis, from the claim's minimums, with at most
``MAX_ENTRIES`` entries in a tensor along every axis; Hypothesis shrinks each toward its minimum.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field

import numpy as np
import sympy as sp

from .axes import AxisError, axes_of, index_axis, layout, sizes_text
from .calculus import BOUND_INDICES, Grad, Mean, SampleIndex
from .core import Claim, Unsupported
from .explicit import free_indices
from .interpret import Interpreter

STEP = 1e-30          # complex-step size: no subtraction, so it can be tiny
SHRINK_STEPS = 100    # Hypothesis shrinks a failure for at most this many examples
DOMAIN_MARGIN = 1e-6  # a domain expression (a variance) must exceed this in an instance
TINY = 1e-4          # Hypothesis draws smaller magnitudes as 0
TOLERANCE = 1e-9      # |lhs - rhs| <= TOLERANCE * (1 + max(|lhs|, |rhs|)), float64
# second derivatives (dual numbers over the complex step) are exact to rounding, like values
# and first derivatives: the same bound holds for them
SECOND_ORDER_TOLERANCE = TOLERANCE
DEFAULT_RANGE = (-5.0, 5.0)
MAX_ENTRIES = 64      # over several axes: the product of the drawn sizes stays at most this


def instantiate(expr: sp.Expr, choice: dict) -> sp.Expr:
    """Replace each arbitrary function (and its derivative) by a concrete instance."""
    for fn, lam in choice.items():
        z = lam.variables[0]
        d = sp.Lambda(z, sp.diff(lam.expr, z))
        expr = expr.replace(fn.derivative, lambda a, d=d: d(a))
        expr = expr.replace(fn, lambda a, lam=lam: lam(a))
    return expr


# functions whose complex extension does not carry the real derivative
NON_ANALYTIC = (sp.Abs, sp.Max, sp.Min, sp.sign, sp.Heaviside, sp.floor, sp.ceiling, sp.re,
                sp.im)

_CALLABLES: dict = {}
_DERIVATIVES: dict = {}


def _callable(func, nargs):
    key = (func, nargs)
    if key not in _CALLABLES:
        zs = sp.symbols(f"z0:{nargs}")
        _CALLABLES[key] = sp.lambdify(zs, func(*zs), modules="numpy")
    return _CALLABLES[key]


def _derivatives(func, nargs):
    """The partial derivatives of an elementary function, lambdified (for dual numbers)."""
    key = (func, nargs)
    if key not in _DERIVATIVES:
        zs = sp.symbols(f"z0:{nargs}")
        parts = [sp.diff(func(*zs), z) for z in zs]
        if any(p.has(sp.Derivative, sp.Subs) for p in parts):
            raise Unsupported(f"no derivative of {func} to take a second derivative through")
        _DERIVATIVES[key] = [sp.lambdify(zs, p, modules="numpy") for p in parts]
    return _DERIVATIVES[key]


class Jet:
    """a + eps * b with eps^2 = 0: a value and its derivative in one direction (forward mode,
    the outer derivative of a second derivative).  ``a`` and ``b`` are complex arrays or
    numbers, so an inner complex step runs inside it unchanged."""

    __slots__ = ("a", "b")
    __array_ufunc__ = None   # NumPy defers to the operators below (array + jet is a jet)

    def __init__(self, a, b):
        self.a, self.b = a, b

    def __add__(self, other):
        if isinstance(other, Jet):
            return Jet(self.a + other.a, self.b + other.b)
        return Jet(self.a + other, self.b)

    __radd__ = __add__

    def __mul__(self, other):
        if isinstance(other, Jet):
            return Jet(self.a * other.a, self.a * other.b + self.b * other.a)
        return Jet(self.a * other, self.b * other)

    __rmul__ = __mul__

    def map(self, fn):
        """A linear map (a mean, Im, Re) applied to both parts."""
        return Jet(fn(self.a), fn(self.b))


def _value(v):
    """The value without any perturbation's part: a jet's value part, real."""
    return np.real(v.a) if isinstance(v, Jet) else np.real(v)


def _power(base, exponent):
    if not isinstance(base, Jet) and not isinstance(exponent, Jet):
        return np.power(base, exponent)
    if not isinstance(exponent, Jet):
        return Jet(np.power(base.a, exponent),
                   exponent * np.power(base.a, exponent - 1) * base.b)
    a = base.a if isinstance(base, Jet) else base
    value = np.power(a, exponent.a)
    out = value * exponent.b * np.log(a)
    if isinstance(base, Jet):
        out = out + exponent.a * np.power(a, exponent.a - 1) * base.b
    return Jet(value, out)


def _apply(func, nargs, fn, values):
    if not any(isinstance(v, Jet) for v in values):
        return fn(*values)
    parts = [v.a if isinstance(v, Jet) else v for v in values]
    slope = 0
    for d, v in zip(_derivatives(func, nargs), values):
        if isinstance(v, Jet):
            slope = slope + d(*parts) * v.b
    return Jet(fn(*parts), slope)


def _order(e) -> int:
    """How deeply derivatives nest in ``e`` (an ``at`` value is outside its derivative)."""
    if isinstance(e, Grad):
        return max(1 + _order(e.expr), 0 if e.at is None else _order(e.at))
    return max((_order(a) for a in e.args if isinstance(a, sp.Basic)), default=0)


class Compiled(Interpreter):
    """An expression compiled once into NumPy closures, evaluated on many instances.

    Every index gets an array axis (free indices first, then one per reduction depth), of the
    length of the axis the index runs over, so a statement "for every i" is evaluated for all i
    at once and a reduction is a NumPy mean over its array axis.  A derivative by a sample
    ``x[k]`` perturbs ``x[j]`` by ``ih * delta_jk`` (a tensor ``x[k, c]`` by the product of
    one delta per position): one evaluation gives the whole row of partial derivatives.
    ``axes`` lists the axis size symbols (the claim's; by default those of ``expr``).

    An ``Interpreter``: ``visit(e, scope)`` compiles a node by the ``_eval_<ClassName>`` rule
    for its class; a node of no rule is refused in a sentence ("no numeric rule for ...").
    """

    rule_name = "numeric"

    def __init__(self, expr: sp.Expr, indices, size_symbol, axes=None):
        expr = sp.sympify(expr)
        self.axes = {s: n for n, s in enumerate(indices)}
        self.axes.update({j: len(indices) + d for d, j in enumerate(BOUND_INDICES)})
        self.ndim = len(self.axes)
        self.size_symbol = size_symbol
        try:
            own = axes_of(expr, first=size_symbol)
        except AxisError as err:
            raise Unsupported(str(err)) from None
        self.axis_symbols = frozenset(axes or ()) | frozenset(own)
        self.fn = self.visit(expr, {})

    def __call__(self, ctx: "Context"):
        return self.fn(ctx)

    def _along(self, values, *axes):
        shape = [1] * self.ndim
        for a in axes:
            shape[a] = values.shape[0]
        return values.reshape(shape)

    def _place(self, values, axes):
        """An array with one dimension per position placed on the array axes ``axes`` (a
        repeated axis takes the diagonal)."""
        if len(axes) == 1:
            return self._along(values, axes[0])
        if len(set(axes)) < len(axes):
            letters = "abcdefghijklmnopqrstuvwxyz"
            out = sorted(set(axes))
            spec = "".join(letters[a] for a in axes) + "->" + "".join(letters[a] for a in out)
            values, axes = np.einsum(spec, values), out
        order = sorted(range(len(axes)), key=lambda p: axes[p])
        values = values.transpose(order)
        shape = [1] * self.ndim
        for p in order:
            shape[axes[p]] = values.shape[order.index(p)]
        return values.reshape(shape)

    def _axis(self, idx):
        if idx not in self.axes:
            raise Unsupported(f"sample index {idx} must be a single index symbol")
        return self.axes[idx]

    @staticmethod
    def _axis_symbol(idx, scope):
        axis = index_axis(idx, scope)
        if axis is None:
            raise Unsupported(f"the index {idx} runs over no axis")
        return axis

    def _pattern(self, ctx, uses, perturbed, symbols):
        """The perturbation of x[uses] by x[perturbed]: one delta per differing position."""
        out = 1.0
        for u, p, s in zip(uses, perturbed, symbols):
            if u != p:
                out = out * self._along(np.eye(ctx.length(s)), u, p)
        return out

    # -- one rule per node type (``Interpreter.visit`` finds it along the node's MRO) ---------
    # visit(e, scope) compiles ``e`` into a closure ctx -> value; ``scope`` maps each bound
    # index to the axis of the reduction binding it.

    def _eval_Symbol(self, e, scope):
        if e == self.size_symbol:
            return lambda ctx: float(ctx.size)
        if e in self.axis_symbols and not isinstance(e, SampleIndex):
            return lambda ctx: float(ctx.length(e))
        if e in self.axes:
            axis, symbol = self.axes[e], self._axis_symbol(e, scope)
            return lambda ctx: self._along(np.arange(1.0, ctx.length(symbol) + 1), axis)

        def param(ctx):
            if e not in ctx.params:
                if ctx.sizes is not None and e in ctx.sizes:
                    return float(ctx.sizes[e])
                raise Unsupported(f"no value for {e}")
            v = ctx.params[e]
            if isinstance(v, Jet):
                v = v.map(lambda w: w.astype(complex) if isinstance(w, np.ndarray)
                          else complex(w))
            else:
                v = v.astype(complex) if isinstance(v, np.ndarray) else complex(v)
            if ctx.dual == (e,):
                v = Jet(v, 1.0)
            if ctx.pert == (e,):
                v = Jet(v.a + 1j * STEP, v.b) if isinstance(v, Jet) else v + 1j * STEP
            return v
        return param

    def _eval_Number(self, e, scope):
        value = complex(e)
        return lambda ctx: value

    _eval_NumberSymbol = _eval_Number   # pi, E: named constants are numbers too

    def _eval_KroneckerDelta(self, e, scope):
        a, b = (self._axis(x) for x in e.args)
        if a == b:
            return lambda ctx: 1.0
        sa, sb = (self._axis_symbol(x, scope) for x in e.args)
        if sa == sb:
            return lambda ctx: self._along(np.eye(ctx.length(sa)), a, b)
        return lambda ctx: self._place(
            np.equal.outer(np.arange(ctx.length(sa)), np.arange(ctx.length(sb)))
            .astype(float), (a, b))

    def _eval__Reduction(self, e, scope):
        body = self.visit(e.body, {**scope, e.index: e.size})
        axis, mean, over = self._axis(e.index), isinstance(e, Mean), e.size

        def reduce(v, ctx):
            v = np.asarray(v)
            if v.ndim < self.ndim or v.shape[axis] == 1:  # summand free of the index
                return v if mean else ctx.length(over) * v
            return v.mean(axis=axis, keepdims=True) if mean else \
                v.sum(axis=axis, keepdims=True)

        def reduction(ctx):
            v = body(ctx)
            if isinstance(v, Jet):
                return v.map(lambda w: reduce(w, ctx))
            return reduce(v, ctx)
        return reduction

    def _eval_Held(self, e, scope):
        inner = self.visit(e.args[0], scope)
        return lambda ctx: _value(inner(ctx))

    def _arguments(self, e, scope):
        return [self.visit(a, scope) for a in e.args]

    def _eval_Add(self, e, scope):
        args = self._arguments(e, scope)
        return lambda ctx: sum(f(ctx) for f in args)

    def _eval_Mul(self, e, scope):
        args = self._arguments(e, scope)
        return lambda ctx: math.prod(f(ctx) for f in args)

    def _eval_Pow(self, e, scope):
        base, exponent = self._arguments(e, scope)
        return lambda ctx: _power(base(ctx), exponent(ctx))

    def _eval_Application(self, e, scope):
        args = self._arguments(e, scope)
        fn, func, nargs = _callable(e.func, len(args)), e.func, len(args)
        return lambda ctx: _apply(func, nargs, fn, [f(ctx) for f in args])

    def _eval_Basic(self, e, scope):
        self._arguments(e, scope)   # a node of no rule: its arguments' errors come first
        return self.unknown(e, scope)

    def _eval_Indexed(self, e, scope):
        base = e.base
        uses = tuple(self._axis(t) for t in e.indices)
        symbols = tuple(self._axis_symbol(t, scope) for t in e.indices)

        def sample(ctx):
            values = ctx.samples[base]
            if values.ndim != len(uses):
                raise Unsupported(f"{base} has {values.ndim} axes in the instance and "
                                  f"{len(uses)} indices in the statement")
            v = self._place(values.astype(complex), uses)
            if ctx.pert and ctx.pert[0] == base:
                if len(uses) == 1:  # one axis: as it always was
                    k_axis = ctx.pert[1]
                    v = v + 1j * STEP * self._along(np.eye(ctx.length(symbols[0])), uses[0],
                                                    k_axis) \
                        if k_axis != uses[0] else v + 1j * STEP
                else:
                    v = v + 1j * STEP * self._pattern(ctx, uses, ctx.pert[1:], symbols)
            if ctx.dual and ctx.dual[0] == base:
                v = Jet(v, self._pattern(ctx, uses, ctx.dual[1:], symbols))
            return v
        return sample

    def _eval_Grad(self, e, scope):
        bad = e.expr.atoms(*NON_ANALYTIC)
        if bad:
            raise Unsupported("a complex-step derivative needs analytic functions; "
                              f"{sorted(map(str, bad))[0]} is not")
        order = _order(e.expr)
        if order > 1:
            raise Unsupported("derivatives of third or higher order: the numeric layer takes "
                              "second derivatives only")
        inner, wrt = self.visit(e.expr, scope), e.wrt
        if isinstance(wrt, sp.Indexed):
            key = (wrt.base,) + tuple(self._axis(t) for t in wrt.indices)
            for t in wrt.indices:
                self._axis_symbol(t, scope)
        elif isinstance(wrt, sp.Symbol):
            key = (wrt,)
        else:
            raise Unsupported(f"cannot differentiate with respect to {wrt}")

        at = None if e.at is None else self.visit(e.at, scope)

        def locate(ctx):
            if at is None:
                return ctx
            # a node's partial derivative, at the node's value (an outer derivative still
            # flows through the value: only its complex part is dropped)
            v = at(ctx)
            return ctx.with_param(wrt, v.map(np.real) if isinstance(v, Jet) else np.real(v))

        if order == 0:
            def grad(ctx):
                if ctx.pert is not None:
                    raise Unsupported("nested derivatives")
                v = inner(locate(ctx).perturbed(key))
                if isinstance(v, Jet):
                    return v.map(lambda w: np.imag(w) / STEP)
                return np.imag(v) / STEP
            return grad

        def outer(ctx):  # the derivative of a derivative: dual numbers around complex steps
            if ctx.pert is not None or ctx.dual is not None:
                raise Unsupported("derivatives of third or higher order")
            v = inner(locate(ctx).dualized(key))
            return v.b if isinstance(v, Jet) else 0.0 * np.real(v)
        return outer


@dataclass
class Context:
    """One evaluation: the instance's values, the complex step ``pert`` (a key: (parameter,)
    or (base, array axis per position)), the dual perturbation ``dual`` of an outer
    derivative (a key of the same kind), and ``sizes`` {axis: size} (None: every axis has
    ``size`` entries)."""

    size: int
    samples: dict
    params: dict
    pert: tuple | None = None
    sizes: dict | None = None
    dual: tuple | None = None

    def length(self, axis) -> int:
        """The number of entries along ``axis``."""
        if self.sizes is None:
            return self.size
        if axis not in self.sizes:
            raise Unsupported(f"the instance gives no size for the axis {axis}")
        return self.sizes[axis]

    def perturbed(self, key):
        return Context(self.size, self.samples, self.params, key, self.sizes, self.dual)

    def dualized(self, key):
        return Context(self.size, self.samples, self.params, self.pert, self.sizes, key)

    def with_param(self, symbol, value):
        # the parameter is now a value: perturbations of it no longer apply
        pert = None if self.pert == (symbol,) else self.pert
        dual = None if self.dual == (symbol,) else self.dual
        return Context(self.size, self.samples,
                       {**self.params, symbol: value}, pert, self.sizes, dual)


@dataclass
class Instance:
    """One drawn input: batch size, sample values, parameter values, function instances, and
    over several axes every axis's size (``sizes``, {axis: size}, the batch's axis first;
    None: one axis, the batch).
    A tensor's values are an array shaped by its layout (x[n, c]: sizes (N, C))."""

    size: int
    samples: dict
    params: dict
    choice: dict = field(default_factory=dict)
    sizes: dict | None = None

    def all_sizes(self, claim: Claim) -> dict:
        """{axis: size} for every axis of ``claim``."""
        if self.sizes is not None:
            return dict(self.sizes)
        return {a: self.size for a in claim.axes}


def scaled_error(lhs, rhs):
    """|lhs - rhs| / (1 + max(|lhs|, |rhs|)), elementwise: the error the tolerance bounds."""
    return np.abs(lhs - rhs) / (1.0 + np.maximum(np.abs(lhs), np.abs(rhs)))


def compile_claim(claim: Claim, choice: dict) -> list:
    """Each equation's two sides, compiled for one choice of the arbitrary functions."""
    out = []
    for eq in claim.equations:
        for side in (eq.lhs, eq.rhs):
            for f in instantiate(side, choice).atoms(sp.Function):
                if getattr(f.func, "arbitrary", False):
                    raise Unsupported(f"{f.func.__name__} is arbitrary: give the claim concrete "
                                      f"instances, functions=(({f.func.__name__}, (...)),)")
        indices = sorted(free_indices(eq.lhs, eq.rhs), key=lambda s: s.name)
        out.append(tuple(Compiled(instantiate(side, choice), indices, claim.batch.size,
                                  claim.axes) for side in (eq.lhs, eq.rhs)))
    return out


def instance_error(claim: Claim, inst: Instance, cache: dict | None = None) -> float:
    """The largest scaled error over every equation and every free-index value.

    ``cache`` (one per claim) keeps the compiled equations for each choice of functions.
    """
    cache = {} if cache is None else cache
    key = tuple(sorted((str(f), str(lam)) for f, lam in inst.choice.items()))
    if key not in cache:
        cache[key] = compile_claim(claim, inst.choice)
        # a domain expression may have free indices (a variance per channel): all must hold
        cache[key + ("domain",)] = [Compiled(instantiate(d, inst.choice),
                                             sorted(free_indices(d), key=lambda s: s.name),
                                             claim.batch.size, claim.axes)
                                    for d in claim.domain]
    ctx = Context(inst.size, {k: np.asarray(v, dtype=float) for k, v in inst.samples.items()},
                  inst.params, sizes=inst.sizes)
    worst = 0.0
    with np.errstate(all="ignore"):
        if not all(np.all(np.real(d(ctx)) > DOMAIN_MARGIN) for d in cache[key + ("domain",)]):
            return math.nan  # outside the claim's domain, or too close to its edge
        for lhs, rhs in cache[key]:
            lv, rv = np.broadcast_arrays(np.asarray(lhs(ctx)), np.asarray(rhs(ctx)))
            # An identity is a statement about the points where both sides are defined: a
            # side that is undefined there (0/0 at sigma^2 + eps = 0) puts it outside the
            # domain.  (Refutation never rests on this layer; see counterexample.py.)
            undefined = ~np.isfinite(lv) | ~np.isfinite(rv)
            if undefined.all():
                return math.nan
            err = np.where(undefined, 0.0, scaled_error(lv, rv))
            worst = max(worst, float(np.max(err)))
    return worst


def variables(claim: Claim):
    """Sample bases and scalar parameters of a claim (sorted by name, for determinism)."""
    bases, params, axes = set(), set(), set(claim.axes)
    for eq in claim.equations:
        for e in (eq.lhs, eq.rhs):
            bases |= {ix.base for ix in e.atoms(sp.Indexed)}
            params |= {s for s in e.free_symbols if isinstance(s, sp.Symbol)
                       and not isinstance(s, (SampleIndex, sp.Dummy))
                       and s not in axes and not any(s == b.label for b in bases)}
    params -= {b.label for b in bases}
    key = lambda s: str(s)  # noqa: E731
    return sorted(bases, key=key), sorted(params, key=key)


def value_range(claim: Claim, symbol) -> tuple[float, float]:
    """Where instances of ``symbol`` are drawn: the claim's range, else one that respects
    the symbol's sign assumptions (epsilon > 0 is never drawn as 0 or below)."""
    if symbol in dict(claim.ranges):
        return dict(claim.ranges)[symbol]
    lo, hi = DEFAULT_RANGE
    if getattr(symbol, "is_positive", None):
        return (0.01, hi)
    if getattr(symbol, "is_nonnegative", None):
        return (0.0, hi)
    if getattr(symbol, "is_negative", None):
        return (lo, -0.01)
    if getattr(symbol, "is_nonpositive", None):
        return (lo, 0.0)
    return (lo, hi)


def claim_tolerance(claim: Claim) -> float:
    """The scaled error this layer allows for ``claim``: ``SECOND_ORDER_TOLERANCE`` when some
    side takes a second derivative, ``TOLERANCE`` otherwise."""
    second = any(_order(side) > 1 for eq in claim.equations for side in (eq.lhs, eq.rhs))
    return SECOND_ORDER_TOLERANCE if second else TOLERANCE


def is_integer(symbol) -> bool:
    return bool(getattr(symbol, "is_integer", False))


def is_multi_axis(claim: Claim) -> bool:
    """Whether the claim runs over more than one axis, or has a tensor of several indices
    (A[i, j] over N, N): its instances then carry ``sizes`` and tensors shaped by the layout.
    A claim of one axis and one-index samples is drawn as it always was."""
    if len(claim.axes) > 1:
        return True
    sides = [side for eq in claim.equations for side in (eq.lhs, eq.rhs)]
    return any(len(axes) > 1 for axes in layout(*sides, *claim.domain).values())


def size_range(minimums: dict, chosen: dict, axis, max_size: int) -> tuple[int, int]:
    """Where ``axis``'s size is drawn, the axes before it in ``minimums`` having the sizes
    ``chosen``: from its minimum up to ``max_size``, so that the product of every size (the
    axes after it at their minimums) stays at most ``MAX_ENTRIES``."""
    lo, used, rest, after = minimums[axis], 1, 1, False
    for a, m in minimums.items():
        if a == axis:
            after = True
        elif after:
            rest *= m
        else:
            used *= chosen[a]
    return lo, max(lo, min(max_size, MAX_ENTRIES // (used * rest)))


def tensor_shapes(claim: Claim, bases, sizes: dict) -> dict:
    """{base: array shape}: each tensor's layout with the sizes of its axes."""
    found = layout(*[side for eq in claim.equations for side in (eq.lhs, eq.rhs)],
                   *claim.domain)
    batch = sizes[claim.batch.size]
    return {b: tuple(sizes.get(a, batch) if a is not None else batch
                     for a in found.get(b, (claim.batch.size,))) for b in bases}


def _draw_values(claim, params, uniform, integers):
    return {p: float(integers(int(value_range(claim, p)[0]), int(value_range(claim, p)[1]) + 1))
            if is_integer(p) else float(uniform(*value_range(claim, p))) for p in params}


def random_instances(claim: Claim, count: int, seed: int = 0, max_size: int = 8):
    """Seeded random instances (NumPy), batch sizes from the claim's minimum to max_size.

    Over several axes, a size per axis (``size_range``) and tensors shaped by their layout."""
    rng = np.random.default_rng(seed)
    bases, params = variables(claim)
    functions = list(claim.functions)
    if is_multi_axis(claim):
        minimums = claim.minimums()
        for n in range(count):
            sizes: dict = {}
            for a in minimums:
                lo, hi = size_range(minimums, sizes, a, max_size)
                sizes[a] = int(rng.integers(lo, hi + 1))
            shapes = tensor_shapes(claim, bases, sizes)
            samples = {b: rng.uniform(*value_range(claim, b), size=shapes[b]) for b in bases}
            values = _draw_values(claim, params, rng.uniform, rng.integers)
            choice = {fn: inst[n % len(inst)] for fn, inst in functions}
            yield Instance(sizes[claim.batch.size], samples, values, choice, sizes)
        return
    for n in range(count):
        size = int(rng.integers(claim.min_size, max(claim.min_size, max_size) + 1))
        samples = {b: rng.uniform(*value_range(claim, b), size=size) for b in bases}
        values = {p: float(rng.integers(int(value_range(claim, p)[0]),
                                        int(value_range(claim, p)[1]) + 1))
                  if is_integer(p) else float(rng.uniform(*value_range(claim, p)))
                  for p in params}
        choice = {fn: inst[n % len(inst)] for fn, inst in functions}
        yield Instance(size, samples, values, choice)


class _OutOfTime(BaseException):
    """Stops a Hypothesis run at a deadline (a BaseException, so it is not a test failure)."""


def _untiny(v: float, lo: float, hi: float) -> float:
    # magnitudes below TINY are drawn as 0.  An entry of 1e-7 beside entries of order 1 says
    # nothing that 0 does not, and it makes nearly constant groups: normalizing one (epsilon
    # = 0) loses digits to cancellation, so the error would measure float64's conditioning
    # (2e-10 where the statement's own round-off is 1e-15), differently on every machine.
    return 0.0 if abs(v) < TINY and lo <= 0.0 <= hi else v


def hypothesis_check(claim: Claim, max_examples: int, max_size: int = 10,
                     deadline: float | None = None, shrink_steps: int = SHRINK_STEPS,
                     error=None, tolerance: float = TOLERANCE):
    """Hypothesis-drawn instances (derandomized).  Returns (count, worst error, failure).

    ``error(instance)`` is the instance's error (NaN outside the claim's domain); by default
    this layer's ``instance_error``, and the autograd layers pass their own.

    ``failure`` is the shrunk failing Instance when some instance exceeds the tolerance;
    shrinking stops after ``shrink_steps`` more examples with the smallest failure found by
    then (a count, not a time, so the result is reproducible; the minimal counterexample is
    the exact layer's job).  At ``deadline`` (a ``time.monotonic``
    value) the run stops with what it has.
    """
    from hypothesis import HealthCheck, assume, given, settings
    from hypothesis import strategies as st

    bases, params = variables(claim)
    functions = list(claim.functions)
    seen = {"count": 0, "worst": 0.0, "last_failure": None, "shrink_until": math.inf}
    cache: dict = {}

    # Every draw is a plain strategy, mapped here after drawing: a ``.map`` (and a label) on a
    # strategy cost Hypothesis about as much per example as all the rest of its engine.
    def number(data, lo, hi):
        return _untiny(data.draw(st.floats(lo, hi, allow_nan=False, allow_infinity=False,
                                           width=64)), lo, hi)

    def entries(data, lo, hi, count):
        """``count`` floats, drawn as one list."""
        plain = st.floats(lo, hi, allow_nan=False, allow_infinity=False, width=64)
        return [_untiny(v, lo, hi)
                for v in data.draw(st.lists(plain, min_size=count, max_size=count))]

    def parameters(data):
        return {p: data.draw(st.integers(int(value_range(claim, p)[0]),
                                         int(value_range(claim, p)[1])))
                if is_integer(p) else number(data, *value_range(claim, p)) for p in params}

    def judge(inst):
        """The check both properties make of a drawn instance."""
        if (deadline is not None and time.monotonic() > deadline) \
                or seen["count"] >= seen["shrink_until"]:
            raise _OutOfTime
        err = instance_error(claim, inst, cache) if error is None else error(inst)
        assume(not math.isnan(err))  # outside the statement's domain
        seen["count"] += 1
        if err > tolerance:
            seen["last_failure"] = inst
            seen["shrink_until"] = min(seen["shrink_until"], seen["count"] + shrink_steps)
        else:
            seen["worst"] = max(seen["worst"], err)
        assert err <= tolerance

    minimums = claim.minimums()

    # Over several axes: a size per axis (each shrinks toward its minimum, the product at most
    # MAX_ENTRIES), then each tensor's entries in its layout's shape.  (Hypothesis seeds a
    # derandomized run from the property's source: editing either property changes its draws.)
    @settings(max_examples=max_examples, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck), report_multiple_bugs=False)
    @given(data=st.data())
    def property_holds_over_axes(data):
        sizes: dict = {}
        for a in minimums:
            sizes[a] = data.draw(st.integers(*size_range(minimums, sizes, a, max_size)))
        shapes = tensor_shapes(claim, bases, sizes)
        samples = {}
        for b in bases:
            drawn = entries(data, *value_range(claim, b), math.prod(shapes[b]))
            samples[b] = np.asarray(drawn, dtype=float).reshape(shapes[b])
        values = parameters(data)
        choice = {fn: data.draw(st.sampled_from(inst)) for fn, inst in functions}
        judge(Instance(sizes[claim.batch.size], samples, values, choice, sizes))

    @settings(max_examples=max_examples, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck), report_multiple_bugs=False)
    @given(data=st.data())
    def property_holds(data):
        size = data.draw(st.integers(claim.min_size, max(claim.min_size, max_size)))
        samples = {b: entries(data, *value_range(claim, b), size) for b in bases}
        values = parameters(data)
        choice = {fn: data.draw(st.sampled_from(inst)) for fn, inst in functions}
        judge(Instance(size, samples, values, choice))

    try:
        with _reproducible_draws():
            (property_holds_over_axes if is_multi_axis(claim) else property_holds)()
    except AssertionError:
        return seen["count"], seen["worst"], seen["last_failure"]
    except _OutOfTime:
        return seen["count"], seen["worst"], seen["last_failure"]
    return seen["count"], seen["worst"], None


@contextlib.contextmanager
def _reproducible_draws():
    """Hypothesis without its pool of literals from the process's own modules.

    Since 6.131, Hypothesis sometimes draws a literal found in the source of any *local*
    module the process has imported.  What it draws would then depend on what else was
    imported -- a test suite, a notebook, a user's file -- and the certificate would differ
    between runs of the same report.  The pool is emptied while our properties run (an
    internal of Hypothesis: where it is missing, there is nothing to empty).
    """
    try:
        from hypothesis.internal.conjecture import providers
        original, cache = providers._get_local_constants, providers.CONSTANTS_CACHE.cache
        empty = type(providers._local_constants)()
    except (ImportError, AttributeError, TypeError):
        yield
        return
    providers._get_local_constants = lambda: empty
    cache.clear()
    try:
        yield
    finally:
        providers._get_local_constants = original
        cache.clear()


def sizes_phrase(claim: Claim, inst: Instance) -> str:
    """An instance's sizes as the summaries print them: "N = 5" for one axis (whatever its
    symbol), "N = 2, C = 3" for several."""
    if len(claim.axes) == 1:
        return f"N = {inst.size}"
    return sizes_text(inst.all_sizes(claim))


def instance_json(inst: Instance) -> dict:
    """An instance as JSON-ready values: N, each sample list, each parameter, each function.

    Over several axes, "N" the batch's size (whatever its name), then every other axis's size
    by its name (``sizes`` lists the batch's axis first, as the drivers draw them), and a
    tensor's values as nested lists in its layout's order (x[n, c] -> x[n - 1][c - 1])."""
    out = {"N": inst.size}
    if inst.sizes is not None and len(inst.sizes) > 1:
        others = list(inst.sizes.items())[1:]
        out.update({sp.sstr(a): int(n) for a, n in others if sp.sstr(a) not in out})
    out.update({str(b): [float(v) for v in vals] if np.ndim(vals) == 1
                else np.asarray(vals, dtype=float).tolist() for b, vals in inst.samples.items()})
    out.update({str(p): float(v) for p, v in inst.params.items()})
    out.update({str(f): sp.sstr(lam) for f, lam in inst.choice.items()})
    return out
