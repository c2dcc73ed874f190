"""An independent re-check of a counterexample, in plain SymPy and exact arithmetic.

``counterexample.search`` finds a failing instance with the explicit layer's machinery (shared
statistics, its own zero tests).  A refutation must not rest on that machinery alone, so this
module re-evaluates the claim at the instance's printed values (``Counterexample.values``: names
to exact numbers) with code of its own, sharing nothing with ``counterexample`` or
``explicit``: every reduction written out as the plain sum of its N summands, a derivative
taken by ``sympy.diff`` on the written-out expression, a held statistic replaced by a symbol
while differentiating and by its value afterwards.  Values are substituted at the leaves, so an
expression undefined at the instance (a division by zero) is undefined here too.

The answer is ``confirmed``: True when the two sides are exact, real, defined and differ (a
rational difference, or an algebraic one whose minimal polynomial is not z; a transcendental
one must differ at 50 significant digits); False when the values are not an admissible
instance of the claim or the sides agree there; None when this module cannot tell (a construct
it does not write out).  Only True lets a claim be reported refuted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sympy as sp

from .calculus import BatchSum, Grad, Held, Mean, SampleIndex
from .core import Claim

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
    """Re-check a ``Counterexample`` of ``claim`` from its printed values."""
    return confirm_values(claim, cex.size, cex.values, part=cex.part, functions=cex.functions)


def confirm_values(claim: Claim, size: int, values: dict[str, Any], part: int = 0,
                   functions=()) -> Recheck:
    """Do the two sides of part ``part`` of ``claim`` differ at batch size ``size`` with
    ``values`` (sample base -> list of N exact numbers, parameter -> number, free sample
    index -> 1..N), each arbitrary function replaced by its instance in ``functions``?"""
    try:
        return _confirm(claim, size, values, part, functions)
    except _NotAnInstance as err:
        return Recheck(False, f"not an instance of the claim: {err}")
    except _CannotTell as err:
        return Recheck(None, f"cannot be re-checked independently: {err}")
    except (TypeError, ValueError, ArithmeticError, NotImplementedError, RecursionError) as err:
        return Recheck(None, f"cannot be re-checked independently: {type(err).__name__}: {err}")


def _confirm(claim, size, values, part, functions) -> Recheck:
    if not isinstance(size, int) or size < max(claim.min_size, 1):
        raise _NotAnInstance(f"N = {size} is below the claim's smallest batch size "
                             f"{claim.min_size}")
    if not 0 <= part < len(claim.equations):
        raise _NotAnInstance(f"the claim has no part {part}")
    eq = claim.equations[part]
    names = _names(claim)
    samples: dict = {}     # (base, t) -> symbol
    numbers: dict = {}     # symbol -> exact value
    env: dict = {}         # free sample index -> 1..N
    ranges = dict(claim.ranges)
    for name, value in values.items():
        if name not in names:
            raise _CannotTell(f"no variable of the claim is named {name}")
        obj = names[name]
        if obj is None:
            raise _CannotTell(f"two variables of the claim are named {name}")
        if isinstance(obj, sp.IndexedBase):
            if not isinstance(value, (list, tuple)) or len(value) != size:
                raise _NotAnInstance(f"{name} needs {size} values")
            for t, v in enumerate(value, 1):
                sym = sp.Dummy(f"{name}_{t}", real=True)
                samples[(obj, t)] = sym
                numbers[sym] = _admissible(obj.label, v, ranges.get(obj), f"{name}_{t}")
        elif isinstance(obj, SampleIndex):
            if not (isinstance(value, int) or getattr(value, "is_Integer", False)) \
                    or not 1 <= int(value) <= size:
                raise _NotAnInstance(f"the index {name} = {value} is not in 1..{size}")
            env[obj] = int(value)
        else:
            numbers[obj] = _admissible(obj, value, ranges.get(obj), name)
    choice = dict(functions)
    writer = _Writer(size, claim.batch.size, samples, numbers)
    for d in claim.domain:  # the statement says nothing outside its domain
        if writer.value(d, {}).is_positive is not True:
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
                if isinstance(s, sp.Dummy) or s == claim.batch.size or s in labels:
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


class _Writer:
    """Writes a batch expression out at one N: numbers at the leaves, or symbols inside a
    derivative (substituted after differentiating)."""

    def __init__(self, size, size_symbol, samples, numbers):
        self.size, self.size_symbol = size, size_symbol
        self.samples, self.numbers = samples, numbers

    def value(self, expr, env) -> sp.Expr:
        return self._write(sp.sympify(expr), env, None)

    def _index(self, idx, env) -> int:
        t = sp.sympify(idx).xreplace({k: sp.Integer(v) for k, v in env.items()})
        if not t.is_Integer or not 1 <= int(t) <= self.size:
            raise _CannotTell(f"the sample index {idx} is not a sample of the batch")
        return int(t)

    def _sample(self, base, t):
        if (base, t) not in self.samples:
            raise _CannotTell(f"no value for {base}_{t}")
        return self.samples[(base, t)]

    def _write(self, e, env, held):
        """``held`` is None outside a derivative (numbers), else the held statistics' values
        by placeholder symbol (symbols)."""
        if e == self.size_symbol:
            return sp.Integer(self.size)
        if isinstance(e, sp.Indexed):
            if len(e.indices) != 1:
                raise _CannotTell(f"{e} has more than one index")
            sym = self._sample(e.base, self._index(e.indices[0], env))
            return sym if held is not None else self.numbers[sym]
        if isinstance(e, sp.Symbol) and e in env:
            return sp.Integer(env[e])
        if isinstance(e, SampleIndex):
            raise _CannotTell(f"no value for the index {e}")
        if isinstance(e, (Mean, BatchSum)):
            terms = [self._write(e.body, {**env, e.index: t}, held)
                     for t in range(1, self.size + 1)]
            total = sp.Add(*terms)
            return total / self.size if isinstance(e, Mean) else total
        if isinstance(e, Held):
            value = self._write(e.args[0], env, held)
            if held is None:
                return value
            placeholder = sp.Dummy("held", real=True)
            held[placeholder] = value
            return placeholder
        if isinstance(e, Grad):
            return self._derivative(e, env, held)
        if isinstance(e, sp.Symbol):
            return e if held is not None or e not in self.numbers else self.numbers[e]
        if not e.args or e.is_Atom:
            return e
        return e.func(*[self._write(a, env, held) for a in e.args])

    def _derivative(self, e: Grad, env, held):
        if held is not None:
            raise _CannotTell("a derivative inside a derivative")
        inner: dict = {}
        function = self._write(e.expr, env, inner)
        wrt = self._write(e.wrt, env, {})
        if not isinstance(wrt, sp.Symbol):
            raise _CannotTell(f"a derivative by {e.wrt}")
        out = sp.diff(function, wrt)
        for _ in range(len(inner) + 1):   # held values may hold placeholders themselves
            if not out.free_symbols & inner.keys():
                break
            out = out.xreplace(inner)
        at = {} if e.at is None else {wrt: self._write(e.at, env, None)}
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
