"""An independent re-check of a counterexample, in plain SymPy and exact arithmetic.

``counterexample.search`` finds a failing instance with the explicit layer's machinery (shared
statistics, its own zero tests).  A refutation must not rest on that machinery alone, so this
module re-evaluates the claim at the instance's printed values (``Counterexample.values``: names
to exact numbers) with code of its own, sharing nothing with ``counterexample`` or
``explicit``: every reduction written out as the plain sum of its N summands, a derivative
taken by ``sympy.diff`` on the written-out expression, a held statistic replaced by a symbol
while differentiating and by its value afterwards.  Values are substituted at the leaves, so an
expression undefined at the instance (a division by zero) is undefined here too.  A derivative
inside a derivative is written out as an expression in the symbols and differentiated again (a
held value stays a constant until the outermost derivative is taken).  Over several axes, each
reduction runs over its own axis's size and a tensor's values are a nested list in the order of
its axes (``axes.layout``).

The answer is ``confirmed``: True when the two sides are exact, real, defined and differ (a
rational difference, or an algebraic one whose minimal polynomial is not z; a transcendental
one must differ at 50 significant digits); False when the values are not an admissible
instance of the claim or the sides agree there; None when this module cannot tell (a construct
it does not write out).  Only True lets a claim be reported refuted.
"""

from __future__ import annotations

import itertools

from dataclasses import dataclass
from typing import Any

import sympy as sp

from .axes import AxisError, layout
from .calculus import Grad, Mean, SampleIndex
from .core import Claim
from .interpret import Interpreter

_Z = sp.Dummy("z")
# assumptions a value must satisfy when its symbol carries them
_CHECKED = ("positive", "nonnegative", "negative", "nonpositive", "nonzero", "integer", "real")


@dataclass(frozen=True)
class Recheck:
    confirmed: bool | None
    reason: str
    lhs: sp.Expr | None = None   # the two sides' exact values, where they were computed
    rhs: sp.Expr | None = None


class _CannotTell(Exception):
    pass


class _NotAnInstance(Exception):
    pass


def confirm(claim: Claim, cex) -> Recheck:
    """Re-check a ``Counterexample`` of ``claim`` from its printed values (at every axis's
    size, ``cex.all_sizes(claim)``, for a claim over several axes)."""
    sizes = cex.all_sizes(claim) if cex.sizes else None
    return confirm_values(claim, cex.size, cex.values, part=cex.part, functions=cex.functions,
                          sizes=sizes)


def confirm_values(claim: Claim, size: int, values: dict[str, Any], part: int = 0,
                   functions=(), sizes: dict | None = None) -> Recheck:
    """Do the two sides of part ``part`` of ``claim`` differ at batch size ``size`` with
    ``values`` (sample base -> list of N exact numbers, parameter -> number, free sample
    index -> 1..N), each arbitrary function replaced by its instance in ``functions``?

    For a claim over several axes, ``sizes`` gives every axis's size ({axis symbol: int},
    agreeing with ``size`` on the batch axis; an axis it leaves out has size 1), and a tensor
    of k axes is a nested list of depth k in its layout order (x[n, c] -> x[n-1][c-1])."""
    try:
        return _confirm(claim, size, values, part, functions, sizes)
    except _NotAnInstance as err:
        return Recheck(False, f"not an instance of the claim: {err}")
    except _CannotTell as err:
        return Recheck(None, f"cannot be re-checked independently: {err}")
    except (TypeError, ValueError, ArithmeticError, NotImplementedError, RecursionError) as err:
        return Recheck(None, f"cannot be re-checked independently: {type(err).__name__}: {err}")


def _confirm(claim, size, values, part, functions, sizes=None) -> Recheck:
    if not isinstance(size, int) or size < max(claim.min_size, 1):
        raise _NotAnInstance(f"N = {size} is below the claim's smallest batch size "
                             f"{claim.min_size}")
    if not 0 <= part < len(claim.equations):
        raise _NotAnInstance(f"the claim has no part {part}")
    sizes = _all_sizes(claim, size, sizes)
    eq = claim.equations[part]
    try:
        shapes = layout(*[side for e in claim.equations for side in (e.lhs, e.rhs)],
                        *claim.domain)
    except AxisError as err:
        raise _CannotTell(str(err)) from None
    names = _names(claim)
    samples: dict = {}     # (base, (t, ...)) -> symbol
    numbers: dict = {}     # symbol -> exact value
    env: dict = {}         # free index -> 1..its axis's size
    ranges = dict(claim.ranges)
    for name, value in values.items():
        if name not in names:
            raise _CannotTell(f"no variable of the claim is named {name}")
        obj = names[name]
        if obj is None:
            raise _CannotTell(f"two variables of the claim are named {name}")
        if isinstance(obj, sp.IndexedBase):
            for t, v in _entries(name, value, shapes.get(obj, (claim.batch.size,)), sizes):
                label = f"{name}_{t[0]}" if len(t) == 1 else f"{name}_{{{','.join(map(str, t))}}}"
                sym = sp.Dummy(label, real=True)
                samples[(obj, t)] = sym
                numbers[sym] = _admissible(obj.label, v, ranges.get(obj), label)
        elif isinstance(obj, SampleIndex):
            top = sizes.get(obj.axis)
            if top is None:
                raise _CannotTell(f"no size for the axis {obj.axis} of the index {name}")
            if not (isinstance(value, int) or getattr(value, "is_Integer", False)) \
                    or not 1 <= int(value) <= top:
                raise _NotAnInstance(f"the index {name} = {value} is not in 1..{top}")
            env[obj] = int(value)
        else:
            numbers[obj] = _admissible(obj, value, ranges.get(obj), name)
    choice = dict(functions)
    writer = _Writer(sizes, claim.batch.size, samples, numbers, shapes)
    for d in claim.domain:  # the statement says nothing outside its domain
        # a domain with free indices (a variance per channel) must hold at each of them
        free = sorted((s for s in d.free_symbols if isinstance(s, SampleIndex)), key=str)
        for values in itertools.product(*(range(1, sizes[s.axis] + 1) for s in free)):
            if writer.value(d, dict(zip(free, values))).is_positive is not True:
                raise _NotAnInstance(f"{d} is not positive there: outside the claim's domain")
    missing = {s for s in eq.lhs.free_symbols | eq.rhs.free_symbols
               if isinstance(s, SampleIndex)} - env.keys()
    if missing:
        raise _CannotTell(f"no value for the index {sorted(map(str, missing))[0]}")
    lhs = writer.value(_instantiate(eq.lhs, choice), env)
    rhs = writer.value(_instantiate(eq.rhs, choice), env)
    for side in (lhs, rhs):
        if side.has(sp.zoo, sp.nan, sp.oo, -sp.oo) or side.has(sp.I):
            raise _NotAnInstance("a side is undefined or not real there")
        if side.free_symbols or side.atoms(sp.core.function.AppliedUndef):
            raise _CannotTell(f"{side} is not a number (a value or a function instance "
                              "is missing)")
    differ, how = _nonzero(sp.expand(lhs - rhs))
    if differ is None:
        return Recheck(None, f"cannot tell whether {lhs} and {rhs} differ", lhs, rhs)
    if not differ:
        return Recheck(False, f"both sides are {lhs} there", lhs, rhs)
    return Recheck(True, f"the sides differ ({how})", lhs, rhs)


def _all_sizes(claim, size, sizes) -> dict:
    """{axis: size} for every axis of the claim, checked against its smallest sizes."""
    batch = claim.batch.size
    out = {a: 1 for a in claim.axes}
    if sizes is not None:
        for axis, n in dict(sizes).items():
            if not (isinstance(n, int) or getattr(n, "is_Integer", False)):
                raise _NotAnInstance(f"the size {axis} = {n} is not a whole number")
            out[axis] = int(n)
        if out[batch] != size:
            raise _NotAnInstance(f"the sizes give {batch} = {out[batch]}, not {size}")
    out[batch] = size
    for axis, least in claim.minimums().items():
        if axis != batch and out[axis] < max(least, 1):
            raise _NotAnInstance(f"{axis} = {out[axis]} is below the claim's smallest size "
                                 f"{least} of that axis")
    return out


def _entries(name, value, axes, sizes):
    """[((t_1, ..., t_k), value), ...] from a nested list of depth k in layout order; an
    ``_NotAnInstance`` naming the shape expected when the list does not have it."""
    dims = [sizes.get(a) if a is not None else None for a in axes]
    if len(dims) == 1 and dims[0] is not None and not (
            isinstance(value, (list, tuple)) and len(value) == dims[0]
            and not any(isinstance(v, (list, tuple)) for v in value)):
        raise _NotAnInstance(f"{name} needs {dims[0]} values")
    found = []

    def walk(v, prefix):
        depth = len(prefix)
        if depth == len(dims):
            if isinstance(v, (list, tuple)):
                raise _NotAnInstance(_shape_error(name, axes, dims))
            found.append((prefix, v))
            return
        if not isinstance(v, (list, tuple)) or (dims[depth] is not None
                                                and len(v) != dims[depth]):
            raise _NotAnInstance(_shape_error(name, axes, dims))
        for t, item in enumerate(v, 1):
            walk(item, prefix + (t,))

    walk(value, ())
    return found


def _shape_error(name, axes, dims) -> str:
    shape = " x ".join("?" if d is None else str(d) for d in dims)
    along = ", ".join("?" if a is None else sp.sstr(a) for a in axes)
    return (f"{name} needs a nested list of shape {shape} (along {along}, in that order)")


def _names(claim) -> dict:
    """Printed name -> the claim's variable (None where two variables share a name)."""
    found: dict = {}

    def add(name, obj):
        found[name] = obj if found.get(name, obj) == obj else None

    for eq in claim.equations:
        for side in (eq.lhs, eq.rhs):
            bases = {ix.base for ix in side.atoms(sp.Indexed)}
            labels = {b.label for b in bases}
            for b in bases:
                add(str(b), b)
            for s in side.atoms(sp.Symbol):
                if isinstance(s, sp.Dummy) or s == claim.batch.size or s in labels \
                        or s in claim.axes:
                    continue
                add(str(s), s)
    return found


def _admissible(symbol, value, bounds, name) -> sp.Expr:
    """``value`` as an exact number the symbol's assumptions and range admit."""
    v = sp.sympify(value)
    if not v.is_number or v.has(sp.Float) or v.free_symbols:
        raise _CannotTell(f"{name} = {value} is not an exact number")
    for attr in _CHECKED:
        if getattr(symbol, f"is_{attr}", None) and getattr(v, f"is_{attr}") is not True:
            raise _NotAnInstance(f"{name} = {v} but {name} is {attr}")
    if bounds is not None and not (bounds[0] <= v <= bounds[1]):
        raise _NotAnInstance(f"{name} = {v} is outside the claim's range {bounds}")
    return v


def _instantiate(expr, choice: dict):
    """Each arbitrary function, and its derivative, replaced by its concrete instance."""
    for fn, lam in choice.items():
        z = lam.variables[0]
        derivative = sp.Lambda(z, sp.diff(lam.expr, z))
        if getattr(fn, "derivative", None) is not None:
            expr = expr.replace(fn.derivative, lambda a, d=derivative: d(a))
        expr = expr.replace(fn, lambda a, f=lam: f(a))
    return expr


class _Writer(Interpreter):
    """Writes a batch expression out at concrete sizes of its axes: numbers at the leaves, or
    symbols inside a derivative (substituted after differentiating).

    An ``Interpreter`` with rules of its own: ``visit(e, env, held)`` writes a node out by the
    ``_eval_<ClassName>`` rule for its class; every SymPy node without a rule of its own is
    rebuilt from its written-out arguments (``_eval_Basic``).  A node of no rule at all is a
    construct this module cannot tell about."""

    rule_name = "re-check"

    def __init__(self, sizes, size_symbol, samples, numbers, shapes=None):
        self.sizes, self.size_symbol = sizes, size_symbol
        self.size = sizes[size_symbol]
        self.samples, self.numbers = samples, numbers
        self.shapes = shapes or {}   # tensor base -> axis per position

    def value(self, expr, env) -> sp.Expr:
        return self.visit(sp.sympify(expr), env, None)

    def _index(self, idx, env, axis) -> int:
        """The number index ``idx`` stands for, at a tensor position along ``axis``."""
        t = sp.sympify(idx).xreplace({k: sp.Integer(v) for k, v in env.items()})
        top = self.sizes.get(axis, self.size if axis is None else 0)
        if not t.is_Integer or not 1 <= int(t) <= top:
            if axis in (None, self.size_symbol):
                raise _CannotTell(f"the sample index {idx} is not a sample of the batch")
            raise _CannotTell(f"the index {idx} is not in 1..{top} (the axis {axis})")
        return int(t)

    def _sample(self, base, t):
        if (base, t) not in self.samples:
            if len(t) == 1:
                raise _CannotTell(f"no value for {base}_{t[0]}")
            raise _CannotTell(f"no value for {base}[{', '.join(map(str, t))}]")
        return self.samples[(base, t)]

    # -- one rule per node type (``Interpreter.visit`` finds it along the node's MRO) ---------
    # visit(e, env, held): ``held`` is None outside a derivative (numbers), else the held
    # statistics' values by placeholder symbol (symbols).

    def _eval_Symbol(self, e, env, held):
        if e in self.sizes:
            return sp.Integer(self.sizes[e])
        if e in env:
            return sp.Integer(env[e])
        if isinstance(e, SampleIndex):
            raise _CannotTell(f"no value for the index {e}")
        return e if held is not None or e not in self.numbers else self.numbers[e]

    def _eval_Indexed(self, e, env, held):
        axes = self.shapes.get(e.base, ())
        t = tuple(self._index(i, env, axes[n] if n < len(axes) else None)
                  for n, i in enumerate(e.indices))
        sym = self._sample(e.base, t)
        return sym if held is not None else self.numbers[sym]

    def _written_sum(self, e, env, held):
        """A mean or a sum written out: its summands at every value of its index."""
        if e.size not in self.sizes:
            raise _CannotTell(f"no size for the axis {e.size}")
        n = self.sizes[e.size]
        terms = [self.visit(e.body, {**env, e.index: t}, held) for t in range(1, n + 1)]
        total = sp.Add(*terms)
        return total / n if isinstance(e, Mean) else total

    _eval_Mean = _eval_BatchSum = _written_sum

    def _eval_Held(self, e, env, held):
        value = self.visit(e.args[0], env, held)
        if held is None:
            return value
        placeholder = sp.Dummy("held", real=True)
        held[placeholder] = value
        return placeholder

    def _eval_Grad(self, e, env, held):
        return self._derivative(e, env, held)

    def _eval_Basic(self, e, env, held):
        if not e.args or e.is_Atom:
            return e
        return e.func(*[self.visit(a, env, held) for a in e.args])

    def unknown(self, e, *args, **kwargs):
        raise _CannotTell(self.no_rule(e))

    def _derivative(self, e: Grad, env, held):
        """Outside a derivative (``held`` None): the derivative's number.  Inside one: the
        derivative as an expression in the symbols, differentiated again by the outer one;
        its held values stay placeholders (constants) until the outermost derivative is
        taken."""
        inner: dict = {}
        function = self.visit(e.expr, env, inner)
        wrt = self.visit(e.wrt, env, {})
        if not isinstance(wrt, sp.Symbol):
            raise _CannotTell(f"a derivative by {e.wrt}")
        out = sp.diff(function, wrt)
        if held is not None:
            # inside a derivative: keep it symbolic; with ``at``, the node is set to its value
            # in the derivative and in the held values written for it
            if e.at is None:
                held.update(inner)
                return out
            at = self.visit(e.at, env, held)
            moved: dict = {}
            for placeholder, value in inner.items():   # in creation order: inner ones first
                new = sp.Dummy("held", real=True)
                held[new] = value.xreplace({wrt: at, **moved})
                moved[placeholder] = new
            return out.xreplace({wrt: at, **moved})
        for _ in range(len(inner) + 1):   # held values may hold placeholders themselves
            if not out.free_symbols & inner.keys():
                break
            out = out.xreplace(inner)
        at = {} if e.at is None else {wrt: self.visit(e.at, env, None)}
        # one simultaneous substitution: 0 * (1/s) at s = 0 stays undefined
        return out.xreplace({**self.numbers, **at})


def _nonzero(value: sp.Expr) -> tuple[bool | None, str]:
    """Is the exact real number ``value`` nonzero, and how that was decided."""
    if value.is_Rational:
        return bool(value != 0), "exact rational arithmetic"
    if value.is_algebraic:
        try:
            poly = sp.minimal_polynomial(value, _Z)
        except (NotImplementedError, ValueError, sp.polys.polyerrors.PolynomialError):
            poly = None
        if poly is not None:
            return poly != _Z, "exact: the difference's minimal polynomial"
    approx = sp.N(value, 60)
    if approx.is_Number and abs(approx) > sp.Float("1e-40", 60):
        return True, "nonzero at 50 significant digits"
    return None, ""


__all__ = ["Recheck", "confirm", "confirm_values"]
