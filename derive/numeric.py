"""Numeric instances: the statement evaluated in floating point on concrete batches.

Independent of the symbolic layer in both directions: values are NumPy floats, and a
derivative is taken by the *complex step* (f'(v) = Im f(v + ih)/h with h = 1e-30), which is
exact to rounding and needs no symbolic differentiation at all.  A held statistic keeps only
the real part of its value -- the complex-step picture of a stop-gradient.  Elementary
functions go through ``sympy.lambdify`` to NumPy.

Two drivers: seeded NumPy random instances, and Hypothesis-drawn instances (derandomized, so
the certificate is the same on every run), whose failures shrink to a small example.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field

import numpy as np
import sympy as sp
from sympy.core.function import Application

from .calculus import BOUND_INDICES, Grad, Held, SampleIndex, is_reduction
from .core import Claim, Unsupported
from .explicit import free_indices

STEP = 1e-30          # complex-step size: no subtraction, so it can be tiny
SHRINK_STEPS = 60     # Hypothesis shrinks a failure for at most this many examples
DOMAIN_MARGIN = 1e-6  # a domain expression (a variance) must exceed this in an instance
TINY = 1e-12         # Hypothesis draws smaller magnitudes as 0
TOLERANCE = 1e-9      # |lhs - rhs| <= TOLERANCE * (1 + max(|lhs|, |rhs|)), float64
DEFAULT_RANGE = (-5.0, 5.0)


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


def _callable(func, nargs):
    key = (func, nargs)
    if key not in _CALLABLES:
        zs = sp.symbols(f"z0:{nargs}")
        _CALLABLES[key] = sp.lambdify(zs, func(*zs), modules="numpy")
    return _CALLABLES[key]


class Compiled:
    """An expression compiled once into NumPy closures, evaluated on many instances.

    Every sample index gets an array axis (free indices first, then one per reduction depth),
    so a statement "for every i" is evaluated for all i at once and a reduction is a NumPy
    mean over its axis.  A derivative by a sample ``x[k]`` perturbs ``x[j]`` by
    ``ih * delta_jk``: one evaluation gives the whole row of partial derivatives.
    """

    def __init__(self, expr: sp.Expr, indices, size_symbol):
        self.axes = {s: n for n, s in enumerate(indices)}
        self.axes.update({j: len(indices) + d for d, j in enumerate(BOUND_INDICES)})
        self.ndim = len(self.axes)
        self.size_symbol = size_symbol
        self.fn = self._compile(sp.sympify(expr))

    def __call__(self, ctx: "Context"):
        return self.fn(ctx)

    def _along(self, values, *axes):
        shape = [1] * self.ndim
        for a in axes:
            shape[a] = values.shape[0]
        return values.reshape(shape)

    def _axis(self, idx):
        if idx not in self.axes:
            raise Unsupported(f"sample index {idx} must be a single index symbol")
        return self.axes[idx]

    def _compile(self, e):  # noqa: C901 -- one branch per node type, like a printer
        if e == self.size_symbol:
            return lambda ctx: float(ctx.size)
        if e.is_Number:
            value = complex(e)
            return lambda ctx: value
        if isinstance(e, sp.Indexed):
            base, axis = e.base, self._axis(e.indices[0])

            def sample(ctx):
                v = self._along(ctx.samples[base].astype(complex), axis)
                if ctx.pert and ctx.pert[0] == base:
                    k_axis = ctx.pert[1]
                    v = v + 1j * STEP * self._along(np.eye(ctx.size), axis, k_axis) \
                        if k_axis != axis else v + 1j * STEP
                return v
            return sample
        if isinstance(e, sp.Symbol) and e in self.axes:
            axis = self.axes[e]
            return lambda ctx: self._along(np.arange(1.0, ctx.size + 1), axis)
        if isinstance(e, sp.Symbol):
            def param(ctx):
                if e not in ctx.params:
                    raise Unsupported(f"no value for {e}")
                v = ctx.params[e]
                v = v.astype(complex) if isinstance(v, np.ndarray) else complex(v)
                return v + 1j * STEP if ctx.pert == (e,) else v
            return param
        if isinstance(e, sp.KroneckerDelta):
            a, b = (self._axis(x) for x in e.args)
            if a == b:
                return lambda ctx: 1.0
            return lambda ctx: self._along(np.eye(ctx.size), a, b)
        if is_reduction(e):
            body, axis, mean = self._compile(e.body), self._axis(e.index), e.symbol == "E"

            def reduction(ctx):
                v = np.asarray(body(ctx))
                if v.ndim < self.ndim or v.shape[axis] == 1:  # summand free of the index
                    return v if mean else ctx.size * v
                return v.mean(axis=axis, keepdims=True) if mean else \
                    v.sum(axis=axis, keepdims=True)
            return reduction
        if isinstance(e, Held):
            inner = self._compile(e.args[0])
            return lambda ctx: np.real(inner(ctx))
        if isinstance(e, Grad):
            bad = e.expr.atoms(*NON_ANALYTIC)
            if bad:
                raise Unsupported("a complex-step derivative needs analytic functions; "
                                  f"{sorted(map(str, bad))[0]} is not")
            inner, wrt = self._compile(e.expr), e.wrt
            if isinstance(wrt, sp.Indexed):
                key = (wrt.base, self._axis(wrt.indices[0]))
            elif isinstance(wrt, sp.Symbol):
                key = (wrt,)
            else:
                raise Unsupported(f"cannot differentiate with respect to {wrt}")

            at = None if e.at is None else self._compile(e.at)

            def grad(ctx):
                if ctx.pert is not None:
                    raise Unsupported("nested derivatives")
                if at is not None:  # a node's partial derivative, at the node's value
                    ctx = ctx.with_param(wrt, np.real(at(ctx)))
                return np.imag(inner(ctx.perturbed(key))) / STEP
            return grad
        args = [self._compile(a) for a in e.args]
        if e.is_Add:
            return lambda ctx: sum(f(ctx) for f in args)
        if e.is_Mul:
            return lambda ctx: math.prod(f(ctx) for f in args)
        if e.is_Pow:
            base, exponent = args
            return lambda ctx: np.power(base(ctx), exponent(ctx))
        if isinstance(e, Application):
            fn = _callable(e.func, len(args))
            return lambda ctx: fn(*(f(ctx) for f in args))
        raise Unsupported(f"no numeric rule for {type(e).__name__}")


@dataclass
class Context:
    size: int
    samples: dict
    params: dict
    pert: tuple | None = None

    def perturbed(self, key):
        return Context(self.size, self.samples, self.params, key)

    def with_param(self, symbol, value):
        return Context(self.size, self.samples, {**self.params, symbol: value}, self.pert)


@dataclass
class Instance:
    """One drawn input: batch size, sample values, parameter values, function instances."""

    size: int
    samples: dict
    params: dict
    choice: dict = field(default_factory=dict)


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
        out.append((Compiled(instantiate(eq.lhs, choice), indices, claim.batch.size),
                    Compiled(instantiate(eq.rhs, choice), indices, claim.batch.size)))
    return out


def instance_error(claim: Claim, inst: Instance, cache: dict | None = None) -> float:
    """The largest scaled error over every equation and every free-index value.

    ``cache`` (one per claim) keeps the compiled equations for each choice of functions.
    """
    cache = {} if cache is None else cache
    key = tuple(sorted((str(f), str(lam)) for f, lam in inst.choice.items()))
    if key not in cache:
        cache[key] = compile_claim(claim, inst.choice)
        cache[key + ("domain",)] = [Compiled(instantiate(d, inst.choice), [], claim.batch.size)
                                    for d in claim.domain]
    ctx = Context(inst.size, {k: np.asarray(v, dtype=float) for k, v in inst.samples.items()},
                  inst.params)
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
    bases, params = set(), set()
    for eq in claim.equations:
        for e in (eq.lhs, eq.rhs):
            bases |= {ix.base for ix in e.atoms(sp.Indexed)}
            params |= {s for s in e.free_symbols if isinstance(s, sp.Symbol)
                       and not isinstance(s, (SampleIndex, sp.Dummy))
                       and s != claim.batch.size and not any(s == b.label for b in bases)}
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


def is_integer(symbol) -> bool:
    return bool(getattr(symbol, "is_integer", False))


def random_instances(claim: Claim, count: int, seed: int = 0, max_size: int = 8):
    """Seeded random instances (NumPy), batch sizes from the claim's minimum to max_size."""
    rng = np.random.default_rng(seed)
    bases, params = variables(claim)
    functions = list(claim.functions)
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

    def floats(lo, hi):
        # magnitudes below TINY are drawn as 0: a complex step of STEP needs inputs far from
        # a singularity, and a value of 1e-300 says nothing that 0 does not
        return st.floats(lo, hi, allow_nan=False, allow_infinity=False, width=64).map(
            lambda v: 0.0 if abs(v) < TINY and lo <= 0.0 <= hi else v)

    @settings(max_examples=max_examples, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck), report_multiple_bugs=False)
    @given(data=st.data())
    def property_holds(data):
        size = data.draw(st.integers(claim.min_size, max(claim.min_size, max_size)), "N")
        samples = {b: data.draw(st.lists(floats(*value_range(claim, b)), min_size=size,
                                         max_size=size), str(b)) for b in bases}
        values = {p: data.draw(st.integers(int(value_range(claim, p)[0]),
                                           int(value_range(claim, p)[1]))
                               if is_integer(p) else floats(*value_range(claim, p)), str(p))
                  for p in params}
        choice = {fn: data.draw(st.sampled_from(inst), str(fn)) for fn, inst in functions}
        inst = Instance(size, samples, values, choice)
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

    try:
        with _reproducible_draws():
            property_holds()
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


def instance_json(inst: Instance) -> dict:
    """An instance as JSON-ready values: N, each sample list, each parameter, each function."""
    out = {"N": inst.size}
    out.update({str(b): [float(v) for v in vals] for b, vals in inst.samples.items()})
    out.update({str(p): float(v) for p, v in inst.params.items()})
    out.update({str(f): sp.sstr(lam) for f, lam in inst.choice.items()})
    return out
