"""Explicit batch size: every sample its own SymPy symbol, every sum written out.

This layer uses none of the symbolic-N rules: a reduction becomes the plain sum of its N
summands and a derivative is SymPy's ``diff`` of that.  What makes it scale with N is sharing:
each statistic (a mean, a sum) is computed once and bound to a fresh symbol, like a ``let``,
and a derivative runs through those symbols by the chain rule -- or not, for a held statistic,
which is the whole difference between "held" and "through".  A residual is first simplified
with the statistics as free symbols (if it vanishes for all their values it vanishes for the
actual ones), and only otherwise are their definitions substituted and the full expression
expanded.  Term-by-term expansion of the centering identity at N = 1024 costs minutes; with
shared statistics it costs milliseconds.

A claim may have several axes (docs/design-axes.md): each axis has its concrete size, a
reduction runs over its own axis, a free index over its own, and x[n, c] is one symbol per
entry (x_{2,3}).  A derivative may contain derivatives: the inner one's value is an expression
in the samples and the statistic symbols, and the outer one differentiates it again by the same
chain rule (a held statistic stays held; a node set to its value inside a derivative gets new
statistics defined at that value, so that held ones stay held there too).
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Iterable

import numpy as np
import sympy as sp
from sympy.polys.monomials import monomial_gcd

from .axes import AxisError, index_axis, layout
from .calculus import BOUND_INDICES, Grad, Mean, SampleIndex, is_reduction
from .core import Unsupported
from .deadline import checkpoint
from .interpret import Interpreter


class ExplicitBatch(Interpreter):
    """Evaluates batch expressions at one concrete batch size.

    ``sizes`` maps every axis of a claim over several axes (N samples, C channels, ...) to its
    concrete size; it must agree with ``size`` on ``size_symbol``.  Without it the batch has
    one axis.  A reduction runs over its own axis (``node.size``), a free index over its own
    (``SampleIndex.axis``), and a tensor x[n, c] has one symbol per entry.

    An ``Interpreter``: ``visit(expr, env)`` evaluates a node by the ``_eval_<ClassName>``
    rule for its class; every SymPy node without a rule of its own is rebuilt from its
    evaluated arguments (``_eval_Basic``).
    """

    rule_name = "explicit"

    def __init__(self, size: int, size_symbol: sp.Symbol, sizes: dict | None = None):
        if size < 1:
            raise ValueError("a batch has at least one sample")
        self.size = size
        self.size_symbol = size_symbol
        if sizes is None:
            self.sizes = {size_symbol: size}
        else:
            self.sizes = {}
            for axis, n in sizes.items():
                if not (isinstance(n, (int, np.integer)) or getattr(n, "is_Integer", False)) \
                        or int(n) < 1:
                    raise ValueError(f"the size of the axis {axis} must be a whole number "
                                     f">= 1, not {n}")
                self.sizes[axis] = int(n)
            if self.sizes.setdefault(size_symbol, size) != size:
                raise ValueError(f"the batch axis {size_symbol} has size {size}, but sizes "
                                 f"says {self.sizes[size_symbol]}")
        self.definitions: dict[sp.Symbol, sp.Expr] = {}   # statistic symbol -> explicit value
        self.held: set[sp.Symbol] = set()                 # statistics with zero derivative
        self._cache: dict = {}
        self._derivs: dict = {}
        self._samples: dict = {}
        self._zero: dict = {}   # residuals repeat across samples: decide each once
        self._points: dict = {}  # numbers -> {statistic: its value there}
        self._bound: dict = {}  # bound index -> its reduction's axis, while it is written out
        self._layout: dict = {}     # tensor base -> axis per position (several axes only)
        self._laid_out: set = set()
        self._nesting = 0       # > 0 while writing out the inside of a derivative
        self._values: dict = {}  # (expr, env, hold) -> its value: a proof's steps share sides
        self.multi_axis = len(self.sizes) > 1

    # -- evaluation --------------------------------------------------------------------------

    def sample(self, base: sp.IndexedBase, t) -> sp.Symbol:
        """The symbol of one entry: ``t`` a sample number, or a tuple of numbers, one per
        index of the tensor (x[2, 3] is x_{2,3})."""
        if isinstance(t, tuple):
            t = tuple(int(v) for v in t)
            if len(t) == 1:
                t = t[0]
        else:
            t = int(t)
        key = (base, t)
        if key not in self._samples:
            # a Dummy: never equal to a user's symbol that happens to be named u_1
            signs = {k: v for k, v in base.label.assumptions0.items() if k in SIGNS}
            name = (f"{base.name}_{t}" if isinstance(t, int)
                    else f"{base.name}_{{{','.join(map(str, t))}}}")
            self._samples[key] = sp.Dummy(name, **{"real": True, **signs})
        return self._samples[key]

    def samples(self) -> dict:
        return dict(self._samples)

    def _index_value(self, idx, env, axis=None):
        """The number an index expression stands for, checked against its axis's range
        (``axis``: the tensor position's, for an index that is a plain number)."""
        if idx in env:
            t = env[idx]
        else:
            value = sp.sympify(idx).xreplace({k: sp.Integer(v) for k, v in env.items()})
            if not value.is_Integer:
                raise Unsupported(f"sample index {idx} is not bound to a sample")
            t = int(value)
        if not self.multi_axis:
            if not 1 <= t <= self.size:
                raise Unsupported(f"sample index {t} outside 1..{self.size}")
            return t
        own = self._axis_of(idx)
        if own is not None and axis is not None and own != axis:
            raise Unsupported(f"the index {idx} runs over {own}, but stands where {axis} does")
        axis = own if own is not None else axis
        if axis is None:
            return t   # a number not at a tensor position (in a delta): nothing to check
        if axis not in self.sizes:
            raise Unsupported(f"no concrete size for the axis {axis} of the index {idx}")
        if not 1 <= t <= self.sizes[axis]:
            if axis == self.size_symbol:
                raise Unsupported(f"sample index {t} outside 1..{self.sizes[axis]}")
            raise Unsupported(f"index {idx} = {t} outside 1..{self.sizes[axis]} (the axis "
                              f"{axis})")
        return t

    def _axis_of(self, idx):
        """The axis an index expression runs over: a free index's own, a bound index's from
        the reduction being written out; None for a number or an unknown plain symbol."""
        try:
            return index_axis(idx, self._bound)
        except AxisError as err:
            raise Unsupported(str(err)) from None

    def _entry(self, expr: sp.Indexed, env) -> sp.Symbol:
        if not self.multi_axis and len(expr.indices) == 1:
            return self.sample(expr.base, self._index_value(expr.indices[0], env))
        positions = self._layout.get(expr.base, ())
        values = []
        for pos, idx in enumerate(expr.indices):
            axis = positions[pos] if pos < len(positions) else None
            if axis is None and not self.multi_axis:
                axis = self.size_symbol
            if axis is None and self._axis_of(idx) is None:
                raise Unsupported(f"cannot tell which axis position {pos + 1} of "
                                  f"{expr.base} runs over")
            values.append(self._index_value(idx, env, axis))
        return self.sample(expr.base, tuple(values))

    def _statistic(self, node, env, hold: bool) -> sp.Symbol:
        free = _free_symbols(node)
        relevant = tuple(sorted(((k, v) for k, v in env.items() if k in free),
                                key=lambda kv: kv[0].name))
        key = (node, relevant, hold)
        if self._nesting and node.has(Grad):
            key += ("nested",)   # a node's derivative inside a derivative: kept apart
        if key in self._cache:
            return self._cache[key]
        checkpoint()   # a safe point of the time budget: one per statistic written out
        if hold:
            value = self._statistic(node, env, False)
            sym = sp.Dummy(f"sg{len(self.definitions)}", real=True)
            self.definitions[sym] = value
            self.held.add(sym)
        else:
            n = self.sizes.get(node.size)
            if n is None:
                raise Unsupported(f"no concrete size for the axis {node.size} of a reduction")
            outer = self._bound.get(node.index)
            self._bound[node.index] = node.size
            try:
                terms = [self.visit(node.body, {**env, node.index: t}) for t in range(1, n + 1)]
            finally:
                if outer is None:
                    del self._bound[node.index]
                else:
                    self._bound[node.index] = outer
            total = sp.Add(*terms)
            value = total / n if isinstance(node, Mean) else total
            sym = sp.Dummy(f"s{len(self.definitions)}", real=True)
            self.definitions[sym] = value
        self._cache[key] = sym
        return sym

    def eval(self, expr: sp.Expr, env: dict | None = None, hold: bool = False) -> sp.Expr:
        """The explicit value of ``expr`` with free indices bound by ``env``."""
        expr = sp.sympify(expr)
        if self.multi_axis and expr not in self._laid_out:
            try:
                found = layout(expr)
            except AxisError as err:
                raise Unsupported(str(err)) from None
            for base, axes in found.items():
                known = self._layout.get(base)
                if known is not None and len(known) == len(axes):
                    for a, b in zip(known, axes):
                        if a is not None and b is not None and a != b:
                            raise Unsupported(f"{base} is indexed along {a} and along {b}")
                    axes = tuple(a if a is not None else b for a, b in zip(known, axes))
                self._layout[base] = axes
            self._laid_out.add(expr)
        # a value, once written out, stays valid: the symbols it is made of keep their meaning
        key = (expr, frozenset((env or {}).items()), hold)
        if key not in self._values:
            self._values[key] = self.visit(expr, env or {}, hold)
        return self._values[key]

    # -- one rule per node type (``Interpreter.visit`` finds it along the node's MRO) ---------
    # visit(expr, env, hold): ``env`` binds free and bound indices to numbers; ``hold`` asks
    # a reduction for its held statistic.  Only a reduction takes ``hold``: the arguments of
    # any other node are evaluated through.

    def _eval_Symbol(self, expr, env, hold=False):
        if expr in self.sizes:
            return sp.Integer(self.sizes[expr])
        if isinstance(expr, SampleIndex) or expr in env:
            return sp.Integer(self._index_value(expr, env))
        return expr

    def _eval_Indexed(self, expr, env, hold=False):
        return self._entry(expr, env)

    def _eval_KroneckerDelta(self, expr, env, hold=False):
        a, b = (self._index_value(x, env) for x in expr.args)
        return sp.Integer(int(a == b))

    def _eval__Reduction(self, expr, env, hold=False):
        return self._statistic(expr, env, hold)

    def _eval_Statistic(self, expr, env, hold=False):
        return self.visit(expr.definition, env, hold)   # a proof's name for a statistic

    def _eval_Held(self, expr, env, hold=False):
        inner = expr.args[0]
        if is_reduction(inner):
            return self._statistic(inner, env, True)
        value = self.visit(inner, env)
        sym = sp.Dummy(f"sg{len(self.definitions)}", real=True)
        self.definitions[sym] = value
        self.held.add(sym)
        return sym

    def _eval_Grad(self, expr, env, hold=False):
        return self._derivative(expr, env)

    def _eval_Basic(self, expr, env, hold=False):
        if not expr.args or expr.is_Atom:
            return expr
        return expr.func(*[self.visit(a, env) for a in expr.args])

    def _derivative(self, expr: Grad, env) -> sp.Expr:
        """A derivative of the written-out value, through every statistic that is not held.
        The inside of a derivative may hold derivatives itself: their values are expressions
        in the samples and the statistic symbols, differentiated again the same way."""
        self._nesting += 1
        try:
            value = self.visit(expr.expr, env)
        finally:
            self._nesting -= 1
        wrt = self.visit(expr.wrt, env)
        if not wrt.is_Symbol:
            raise Unsupported(f"cannot differentiate with respect to {expr.wrt}")
        if expr.at is None:
            return self.total_derivative(value, wrt)
        # a node's partial derivative: its inputs fixed, then the node set to its value
        at = self.visit(expr.at, env)
        derivative = self.total_derivative(value, wrt)
        if self._nesting:
            return self.set_at(derivative, wrt, at)
        return self.resolve(derivative, only_with=wrt).xreplace({wrt: at})

    def set_at(self, value: sp.Expr, wrt: sp.Symbol, at: sp.Expr) -> sp.Expr:
        """``value`` with ``wrt`` set to ``at``: each statistic that depends on ``wrt`` is
        replaced by a new one defined at that point (a held one stays held), so the result
        can be differentiated again through its statistics."""
        memo: dict = {}

        def statistic(s):
            if s not in memo:
                definition = self.definitions[s]
                replaced = replace(definition)
                if replaced == definition:
                    memo[s] = s
                else:
                    name = "sg" if s in self.held else "s"
                    new = sp.Dummy(f"{name}{len(self.definitions)}", real=True)
                    self.definitions[new] = replaced
                    if s in self.held:
                        self.held.add(new)
                    memo[s] = new
            return memo[s]

        def replace(e):
            stats = sorted(e.free_symbols & self.definitions.keys(), key=sp.default_sort_key)
            return e.xreplace({wrt: at, **{s: statistic(s) for s in stats}})

        return replace(value)

    # -- differentiation through shared statistics -------------------------------------------

    def total_derivative(self, value: sp.Expr, wrt: sp.Symbol) -> sp.Expr:
        """d value / d wrt, through every statistic symbol that is not held."""
        out = partial(value, wrt)
        for s in value.free_symbols & self.definitions.keys():
            if s in self.held:
                continue
            ds = self._statistic_derivative(s, wrt)
            if ds != 0:
                out += partial(value, s) * ds
        return out

    def _statistic_derivative(self, s, wrt):
        key = (s, wrt)
        if key not in self._derivs:
            self._derivs[key] = self.total_derivative(self.definitions[s], wrt)
        return self._derivs[key]

    # -- deciding and evaluating -------------------------------------------------------------

    def resolve(self, value: sp.Expr, only_with: sp.Symbol | None = None) -> sp.Expr:
        """Substitute statistic definitions until none is left (with ``only_with``: only
        the statistics whose value depends on that symbol)."""
        for _ in range(len(self.definitions) + 1):
            found = value.free_symbols & self.definitions.keys()
            if only_with is not None:
                found = {s for s in found if only_with in self.resolve(self.definitions[s]).free_symbols}
            if not found:
                return value
            value = value.xreplace({s: self.definitions[s] for s in found})
        raise Unsupported("cyclic statistic definitions")

    def is_zero(self, value: sp.Expr) -> bool:
        """Exact: is ``value`` identically 0 as a function of the samples and parameters?"""
        return bool(self._fast_zero(value)) or self._slow_zero(value)

    def _fast_zero(self, value: sp.Expr) -> bool | None:
        """In sparse rational arithmetic; where that does not apply (too many variables for
        dense monomials, or a node it does not know), with SymPy's simplifier."""
        if value not in self._zero:
            found = self.field_zero(value)
            self._zero[value] = self._slow_zero(value) if found is None else found
        return self._zero[value]

    def _slow_zero(self, value: sp.Expr) -> bool:
        """First with the statistics as free symbols (if the value vanishes for all their
        values it vanishes for the actual ones), then fully resolved."""
        return (_simplify(value) == 0 or _roots_vanish(self.resolve(value))
                or _simplify(self.resolve(value)) == 0)

    def field_zero(self, value: sp.Expr) -> bool | None:
        """Zero test in sparse rational arithmetic (SymPy's polynomial rings, not Expr trees).

        Every statistic is converted once, where it is defined, so the shared structure is
        kept.  A square root sqrt(V)^p becomes r^p for a new generator r, and the numerator
        is reduced modulo r^2 - V: a zero remainder proves the value is 0 (r^2 = V holds).
        True: shown to be 0.  False: the remainder is not 0 -- a value that is nevertheless 0
        would need a relation between the roots, so ``decide`` then looks for a point.
        None: the value is outside what the conversion handles.
        """
        try:
            return _FieldTest(self.definitions).is_zero(value)
        except Unsupported:
            return None

    def decide(self, value: sp.Expr, points: int = 3, seed: int = 0) -> bool | None:
        """True: identically 0.  False: certainly not (an exact point where it is nonzero).
        None: neither could be shown -- the simplifier is not complete, so a residual it
        cannot reduce is not a failure by itself."""
        if self._fast_zero(value):
            return True
        if not self.zero_at_points(value, points, seed):
            return False
        # zero at every point tried, but not shown zero yet: try the slow way
        return True if self._zero[value] is False and self._slow_zero(value) else None

    def zero_at_points(self, value: sp.Expr, points: int = 3, seed: int = 0) -> bool:
        """Is ``value`` exactly 0 at ``points`` random rational points?  (A spot check.)"""
        free = set(value.free_symbols)
        for s in self._needed(value):
            free |= _free_symbols(self.definitions[s])
        free = sorted(free - self.definitions.keys(), key=sp.default_sort_key)
        rng = np.random.default_rng(seed)
        for _ in range(points):
            numbers = {s: admissible(s, rng) for s in free}
            try:
                at = self.substitute(value, numbers, remember=True)
            except ZeroDivisionError:
                continue
            if at.has(sp.zoo, sp.nan, sp.oo, -sp.oo):
                continue  # a pole: outside the domain
            if at.free_symbols or not sp.N(at, 15).is_Number:
                # only values of arbitrary functions are left; they are free at distinct
                # points, so a nonzero rational function of them is a failure
                if _simplify(at) != 0 and not at.has(sp.Derivative, sp.Subs):
                    return False
            elif is_certainly_nonzero(at):
                return False
        return True

    def substitute(self, value: sp.Expr, numbers: dict, remember: bool = False) -> sp.Expr:
        """Exact value of ``value`` at ``numbers`` (sample and parameter symbols -> numbers).
        ``remember``: keep the statistics' values at these numbers for the next call (the
        random points of ``zero_at_points`` recur for every residual of a batch)."""
        # one simultaneous replacement, so that 0 * (1/s) with s = 0 is nan, not 0
        stats = self._points.setdefault(tuple(numbers.items()), {}) if remember else {}
        needed = self._needed(value)
        if not needed <= stats.keys():
            # a definition refers only to statistics made before it: in creation order, each
            # is replaced with the values before it
            replace = {**numbers, **stats}
            for s, definition in self.definitions.items():
                if s in needed and s not in stats:
                    stats[s] = replace[s] = definition.xreplace(replace)
        return value.xreplace({**numbers, **{s: stats[s] for s in needed}})

    def _needed(self, value: sp.Expr) -> set:
        """The statistics ``value``'s own refer to, and those theirs refer to: only these are
        written out at a point (a batch shared by many values holds many more)."""
        found: set = set()
        todo = list(value.free_symbols & self.definitions.keys())
        while todo:
            s = todo.pop()
            if s not in found:
                found.add(s)
                todo.extend(_free_symbols(self.definitions[s]) & self.definitions.keys())
        return found


def partial(expr: sp.Expr, x: sp.Symbol) -> sp.Expr:
    """d expr / d x, the same as ``sympy.diff(expr, x)`` up to how it is written.

    Written-out values are large sums and products of samples and statistic symbols, and
    SymPy's ``diff`` builds a ``Derivative`` for every node it passes through; here sums,
    products and constant powers follow the sum, product and power rules directly (a node
    free of ``x`` is 0 at once), and every other node -- a function, a variable exponent --
    is left to ``sympy.diff``.  Each shared subexpression is differentiated once."""
    memo: dict = {}

    def d(e):
        if x not in e.free_symbols:
            return sp.S.Zero
        if e in memo:
            return memo[e]
        if e == x:
            out = sp.S.One
        elif e.is_Add:
            out = sp.Add(*[d(a) for a in e.args])
        elif e.is_Mul:
            args = e.args
            out = sp.Add(*[sp.Mul(*args[:n], d(a), *args[n + 1:])
                           for n, a in enumerate(args) if x in a.free_symbols])
        elif e.is_Pow and x not in e.exp.free_symbols:
            out = e.exp * e.base ** (e.exp - 1) * d(e.base)
        else:
            out = sp.diff(e, x)
        memo[e] = out
        return out

    return d(sp.sympify(expr))


@functools.lru_cache(maxsize=1 << 16)
def _free_symbols(node) -> frozenset:
    """``node.free_symbols``, once per node: a reduction's walks its whole body, and the
    same statistic is looked up once per summand and per index assignment."""
    return frozenset(node.free_symbols)


MAX_GENERATORS = 96   # monomials are tuples of exponents: beyond this, Expr arithmetic wins


class _Frac:
    """numer / prod(factor^k): a fraction whose denominator is kept as a product of factors.

    Sums take the least common multiple of the factor lists, so no polynomial gcd is ever
    computed (gcds dominate SymPy's own rational-function arithmetic here).
    """

    __slots__ = ("numer", "den")

    def __init__(self, numer, den=None):
        self.numer, self.den = numer, den or {}

    def __add__(self, other):
        den = dict(self.den)
        for f, k in other.den.items():
            den[f] = max(den.get(f, 0), k)
        return _Frac(self._over(den) + other._over(den), den)

    def _over(self, den):
        out = self.numer
        for f, k in den.items():
            if k > self.den.get(f, 0):
                out = out * f ** (k - self.den.get(f, 0))
        return out

    def __mul__(self, other):
        den = dict(self.den)
        for f, k in other.den.items():
            den[f] = den.get(f, 0) + k
        return _Frac(self.numer * other.numer, den)

    def inverse(self, ring):
        if self.numer == 0:
            raise ZeroDivisionError
        numer = ring.one
        for f, k in self.den.items():
            numer = numer * f ** k
        scale, den = _factors(self.numer, ring)
        return _Frac(numer * scale, den)

    def power(self, k: int, ring):
        base = self if k >= 0 else self.inverse(ring)
        out = _Frac(ring.one)
        for _ in range(abs(k)):
            out = out * base
        return out


def _without_common_monomial(poly):
    """``poly`` divided by the greatest monomial dividing each of its terms.

    Whether a polynomial lies in the ideal of the relations r^2 - V does not change: modulo
    them the polynomials are a free module over the polynomials in the atoms, with a basis
    of the products of distinct roots; multiplying by an atom, or by a root r (which maps
    a basis element to another, or to V times one, V != 0), is injective on it.  The
    remainder is the smaller for it (r^4 t reduces through V^2, r^0 t not at all)."""
    common = functools.reduce(monomial_gcd, poly.monoms())
    if not any(common):
        return poly
    return poly.ring.from_dict({tuple(a - b for a, b in zip(m, common)): c
                                for m, c in poly.items()})


def _factors(poly, ring):
    """poly = 1/scale * prod(factors): a monomial splits into its generators."""
    lc = poly.LC
    if poly.is_monomial:
        den = {ring.gens[n]: e for n, e in enumerate(poly.LM) if e}
    else:
        den = {poly.quo_ground(lc): 1}
    return ring(1 / lc), den


class _FieldTest:
    """Rational arithmetic over QQ in the samples, parameters and root generators.

    A root is identified by the value of its radicand, not by how it is written, after
    pulling out even powers of positive symbols: sqrt(a^2 V) = a sqrt(V) for a > 0.
    """

    def __init__(self, definitions: dict):
        self.definitions = definitions

    def is_zero(self, value: sp.Expr) -> bool:
        self.atoms: set = set()
        self.n_roots = 0            # an upper bound: one slot per root as written
        self.seen: set = set()
        self._collect(value)
        if len(self.atoms) + self.n_roots > MAX_GENERATORS:
            raise Unsupported("too many variables for dense monomials")
        atoms = sorted(self.atoms, key=sp.default_sort_key)
        symbols = [sp.Dummy(f"r{n}") for n in range(self.n_roots)] + atoms
        # lex with the roots first: the leading term of r^2 - V is r^2
        self.ring, *gens = sp.ring(symbols, sp.QQ, sp.polys.orderings.lex)
        self.root_gens = gens[:self.n_roots]
        self.gen = dict(zip(atoms, gens[self.n_roots:]))
        self.positive = [n for n, a in enumerate(symbols) if getattr(a, "is_positive", False)]
        self.roots: dict = {}       # canonical radicand -> its generator
        self.memo: dict = {}
        self.relations: list = []
        numer = self._convert(value).numer
        if numer == 0:
            return True
        return self._reduced(_without_common_monomial(numer)) == 0

    def _reduced(self, numer):
        """``numer`` modulo the relations r^2 - V: the same remainder as
        ``numer.rem(self.relations)``, computed by substituting r^2 = V.

        Each radicand V is free of the roots (``_root``), so in the lex order with the roots
        first the leading monomial of r^2 - V is r^2; these are pairwise coprime, so the
        relations are a Groebner basis and the remainder is the unique normal form: the
        polynomial congruent to ``numer`` in which no root has an exponent above 1.  The
        substitution reaches it directly, where the general division rescans every term for
        its leading one at each step (quadratic in the number of terms)."""
        if not self.relations:
            return numer
        k = self.n_roots
        radicand = {self.root_gens.index(r): rest for rest, r in self.roots.items()}
        groups: dict = {}   # (h_0, ..., h_k-1) -> the terms, with r_n^(2 h_n) taken out
        for monom, coeff in numer.items():
            halves = tuple(e // 2 if n in radicand else 0 for n, e in enumerate(monom[:k]))
            if any(halves):
                monom = tuple(e - 2 * h for e, h in zip(monom, halves)) + monom[k:]
            groups.setdefault(halves, {})[monom] = coeff
        powers: dict = {}

        def power(n, h):
            if (n, h) not in powers:
                powers[(n, h)] = radicand[n] ** h
            return powers[(n, h)]

        out = self.ring.zero
        for halves, terms in groups.items():
            part = self.ring.from_dict(terms)
            for n, h in enumerate(halves):
                if h:
                    part = part * power(n, h)
            out += part
        return out

    def _collect(self, e):
        if e in self.seen:
            return
        self.seen.add(e)
        if e.is_Rational:
            return
        if e.is_Symbol and e in self.definitions:
            return self._collect(self.definitions[e])
        if e.is_Add or e.is_Mul or (e.is_Pow and e.exp.is_Integer):
            for a in e.args:
                self._collect(a)
        elif e.is_Pow and e.exp.is_Rational and e.exp.q == 2:
            self.n_roots += 1
            self._collect(e.base)
        elif e.is_Symbol or (isinstance(e, sp.Function) and not e.has(*self.definitions)):
            self.atoms.add(e)
        else:
            raise Unsupported(f"no exact arithmetic for {type(e).__name__}")

    def _root(self, radicand: _Frac):
        """sqrt(radicand) as monomial factor * generator r / m, r^2 a canonical radicand.

        A radicand P / m over a monomial m in positive symbols (epsilon / a^2, a > 0) is
        P m / m^2: its root is sqrt(P m) / m."""
        numer, den = radicand.numer, dict(radicand.den)
        if den:
            positive = {self.ring.gens[n] for n in self.positive}
            if not all(f in positive for f in den):
                raise Unsupported("a root of a fraction")
            for f, k in den.items():
                numer = numer * f ** k
        if any(numer.degree(n) > 0 for n in range(self.n_roots)):
            raise Unsupported("a root of a fraction or of a root")
        if numer == 0:
            raise Unsupported("a root of 0")
        common = functools.reduce(monomial_gcd, numer.monoms())
        pulled = tuple(e // 2 if n in self.positive else 0 for n, e in enumerate(common))
        monomial = self.ring.one.mul_monom(pulled)
        # a copy: the quotient division builds in place keeps the hash of the empty
        # polynomial it started from (SymPy caches a PolyElement's hash), and equal radicands
        # must meet as keys of ``roots``
        rest = numer.exquo(monomial * monomial).copy()
        # and the square part of the leading coefficient: sqrt(V/4) = sqrt(V)/2, one root
        scale = _square_part(rest.LC)
        if scale != 1:
            rest = rest.quo_ground(scale * scale)
            monomial = monomial.mul_ground(scale)
        if rest not in self.roots:
            if len(self.roots) == self.n_roots:
                raise Unsupported("more roots than expected")
            r = self.root_gens[len(self.roots)]
            self.roots[rest] = r
            self.relations.append(r ** 2 - rest)
        return _Frac(monomial * self.roots[rest], den)

    def _convert(self, e) -> _Frac:
        if e in self.memo:
            return self.memo[e]
        if e.is_Rational:
            out = _Frac(self.ring(e))
        elif e.is_Symbol and e in self.definitions:
            out = self._convert(self.definitions[e])
        elif e.is_Add:
            out = _Frac(self.ring.zero)
            for a in e.args:
                out = out + self._convert(a)
        elif e.is_Mul:
            out = _Frac(self.ring.one)
            for a in e.args:
                out = out * self._convert(a)
        elif e.is_Pow and e.exp.is_Integer:
            out = self._convert(e.base).power(int(e.exp), self.ring)
        elif e.is_Pow:  # sqrt(V)^p, p odd
            out = self._root(self._convert(e.base)).power(int(e.exp.p), self.ring)
        else:
            out = _Frac(self.gen[e])
        self.memo[e] = out
        return out


def _square_part(c):
    """The rational s > 0 with c = s^2 t, t a whole number with no square factor below
    ``_TRIAL`` (a larger one stays in t: the split is exact either way, only less shared)."""
    m = abs(int(c.numerator) * int(c.denominator))
    root = 1
    p = 2
    while p * p <= m and p < _TRIAL:
        while m % (p * p) == 0:
            m //= p * p
            root *= p
        p += 1 if p == 2 else 2
    last = math.isqrt(m)
    if last > 1 and last * last == m:
        root *= last
    return sp.QQ(root, int(c.denominator))


_TRIAL = 1000

SIGNS = ("positive", "nonnegative", "negative", "nonpositive", "nonzero", "integer")


def admissible(symbol: sp.Symbol, rng) -> sp.Rational:
    """A random small rational that the symbol's assumptions admit (a > 0 gets a > 0)."""
    if getattr(symbol, "is_integer", False):
        value = sp.Integer(int(rng.integers(-9, 10)))
    else:
        value = sp.Rational(int(rng.integers(-9, 10)), int(rng.integers(1, 5)))
    if getattr(symbol, "is_nonnegative", False) or getattr(symbol, "is_positive", False):
        value = abs(value)
    elif getattr(symbol, "is_nonpositive", False) or getattr(symbol, "is_negative", False):
        value = -abs(value)
    if value == 0 and (symbol.is_positive or symbol.is_negative or symbol.is_nonzero):
        value = sp.Integer(-1 if symbol.is_negative else 1)
    return value


def is_certainly_nonzero(value: sp.Expr) -> bool:
    """An exact nonzero number, or a closed form that is nonzero at 50 significant digits."""
    if value.is_Rational:
        return bool(value != 0)
    approx = sp.N(value, 50)
    return bool(approx.is_Number and abs(approx) > sp.Float("1e-40", 50))


def _roots_vanish(value: sp.Expr) -> bool:
    """Zero test for a value with square roots sqrt(B) of polynomials, e.g. sqrt(var + eps).

    Each root becomes a symbol r with r**2 = B.  Where B is linear in a parameter p that
    occurs nowhere else inside a root (eps), p = (r**2 - rest)/c is substituted everywhere:
    an identity, after which r is a free symbol and rational arithmetic decides.  Sound: True
    only when the transformed value is exactly 0.
    """
    roots = {}   # expanded radicand -> its root symbol (one symbol however it is written)
    for power in value.atoms(sp.Pow):
        if power.exp.is_Rational and power.exp.q == 2 and power.base.free_symbols:
            roots.setdefault(sp.expand(power.base), sp.Dummy("r", positive=True))
    if not roots:
        return False
    eliminate = {}
    for base, r in roots.items():
        others = set().union(*(b.free_symbols for b in roots if b != base))
        for p in sorted(base.free_symbols - others, key=sp.default_sort_key):
            if p in eliminate or getattr(p, "is_Dummy", False):
                continue
            if not sp.expand(base).is_polynomial(p):
                continue
            poly = sp.Poly(sp.expand(base), p)
            if poly.degree() == 1 and not poly.coeff_monomial(p).free_symbols:
                c = poly.coeff_monomial(p)
                eliminate[p] = (r**2 - (sp.expand(base) - c * p)) / c
                break
    if len(eliminate) < len(roots):
        return False
    replaced = value.replace(
        lambda e: e.is_Pow and e.exp.is_Rational and e.exp.q == 2
        and sp.expand(e.base) in roots,
        lambda e: roots[sp.expand(e.base)] ** (e.exp * 2))
    return _simplify(replaced.xreplace(eliminate)) == 0


def _simplify(value):
    value = sp.expand(value)
    if value == 0 or not any(p.exp.is_negative or not p.exp.is_Integer
                             for p in value.atoms(sp.Pow)):
        return value
    return sp.cancel(sp.together(value))


def domain_values(batch, domain, extent) -> list:
    """Each domain expression written out by ``batch`` at every value of its free indices (a
    variance per channel > 0 is one condition per channel); ``extent`` as in
    ``index_assignments``."""
    return [batch.eval(d, env) for d in domain
            for env in index_assignments(free_indices(d), extent)]


def index_patterns(indices: Iterable[sp.Symbol], sizes, *exprs):
    """One assignment of the free indices per pattern of which of them are equal (per axis):
    enough to decide an identity in ``exprs``.  Batch expressions treat samples alike -- a
    relabeling of the samples maps each side's value at one assignment to its value at any
    other with the same pattern -- so x[n, c] at (n, c, m, d) = (1, 1, 2, 1) stands for every
    n != m, c = d.  Falls back to ``index_assignments`` when an expression uses an index as
    more than a label (``_only_labels``: x[1], delta_k1, (m - 1) x[n]), which a relabeling
    would change."""
    indices = list(indices)
    if not indices or not all(_only_labels(sp.sympify(e)) for e in exprs):
        yield from index_assignments(indices, sizes)
        return
    groups: dict = {}
    for s in sorted(indices, key=lambda s: (s.name, str(getattr(s, "axis", "")))):
        groups.setdefault(getattr(s, "axis", None) if isinstance(sizes, dict) else None,
                          []).append(s)
    choices = []
    for axis, members in groups.items():
        top = sizes if not isinstance(sizes, dict) else sizes.get(
            axis, next(iter(sizes.values())) if axis is None and len(sizes) == 1 else None)
        if top is None:
            raise Unsupported(f"no concrete size for the axis {axis} of the index {members[0]}")
        choices.append([dict(zip(members, labels))
                        for labels in _set_partitions(len(members), int(top))])
    for combo in itertools.product(*choices):
        env: dict = {}
        for part in combo:
            env.update(part)
        yield env


@functools.lru_cache(maxsize=1 << 14)
def _only_labels(expr) -> bool:
    """Does ``expr`` use its indices only as labels -- a tensor's position (x[n]) or an
    argument of a delta between two indices (delta_nm) -- so that a relabeling of the samples
    moves nothing else?  A number in those places (x[1], delta_k1) or an index in arithmetic
    ((m - 1) x[n]) names particular samples.  Remembered: a step's sides are asked at every
    size, and each side belongs to two steps."""
    if isinstance(expr, sp.Indexed):
        return all(isinstance(t, sp.Symbol) for t in expr.indices)
    if isinstance(expr, sp.KroneckerDelta):
        return all(isinstance(t, sp.Symbol) for t in expr.args)
    if is_reduction(expr):   # its index argument is a binding, not a use
        return _only_labels(expr.body)
    if isinstance(expr, SampleIndex) or expr in BOUND_INDICES:
        return False     # an index outside a tensor or a delta: in arithmetic
    return all(_only_labels(a) for a in expr.args if isinstance(a, sp.Basic))


def _set_partitions(count: int, most: int):
    """Labels 1.. for ``count`` items, one tuple per partition into at most ``most`` blocks
    (restricted growth strings: item k takes a label at most one above the largest so far)."""
    def grow(prefix, top):
        if len(prefix) == count:
            yield tuple(prefix)
            return
        for label in range(1, min(top + 1, most) + 1):
            yield from grow(prefix + [label], max(top, label))
    yield from grow([], 0)


def index_assignments(indices: Iterable[sp.Symbol], sizes):
    """Every assignment of the free indices: ``sizes`` an int (every index over 1..sizes)
    or a dict by axis (each index over 1..sizes[index.axis])."""
    if not isinstance(sizes, dict):
        indices = sorted(indices, key=lambda s: s.name)
        for values in itertools.product(range(1, sizes + 1), repeat=len(indices)):
            yield dict(zip(indices, values))
        return
    indices = sorted(indices, key=lambda s: (s.name, str(getattr(s, "axis", ""))))
    ranges = []
    for s in indices:
        axis = getattr(s, "axis", None)
        if axis in sizes:
            n = sizes[axis]
        elif axis is None and len(sizes) == 1:
            n = next(iter(sizes.values()))
        else:
            raise Unsupported(f"no concrete size for the axis {axis} of the index {s}")
        ranges.append(range(1, int(n) + 1))
    for values in itertools.product(*ranges):
        yield dict(zip(indices, values))


def free_indices(*exprs: sp.Expr) -> set:
    """The free sample indices of the given expressions (a statement holds for each value)."""
    return {s for e in exprs for s in e.free_symbols if isinstance(s, SampleIndex)}
