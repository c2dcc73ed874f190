"""The batch calculus: reductions over N samples as SymPy nodes, for a symbolic N.

A batch has N samples, N a positive integer symbol.  Per-sample quantities are written with
SymPy ``Indexed`` objects (``u[i]``), shared parameters with plain symbols (``b``).  Three node
types extend SymPy:

``Mean(f, j)``   (1/N) * sum_{j=1}^{N} f   -- the batch statistic, first class
``BatchSum(f, j)``       sum_{j=1}^{N} f   -- kept apart so a statement can say exactly what it sums
``Held(e)``      the value e, with zero derivative: a stop-gradient (torch ``detach``,
                 JAX ``lax.stop_gradient``).  "Held" differentiation = wrap the statistics in Held.

and ``Grad(e, v)`` is an unevaluated derivative, so a claim can *state* a derivative and its
proof can *compute* it as a named step.

Bound indices are canonical (chosen from the nesting depth), so two reductions that mean the
same thing are the same SymPy object: that is what lets ordinary SymPy algebra treat a closed
reduction as an atom.
"""

from __future__ import annotations

import copyreg

import sympy as sp
from sympy.core.function import FunctionClass

__all__ = [
    "Batch", "SampleIndex", "Mean", "BatchSum", "Held", "Grad", "activation", "held", "release",
    "is_reduction", "BOUND_INDICES", "Axis", "Statistic", "unname",
]

# Canonical bound indices, one per nesting depth.  They are Dummies with fixed dummy_index so
# they never collide with a user's symbols and print and sort the same in every run.  No "l":
# it would read as the layer l or the loss l beside them.
_BOUND_NAMES = ("j", "p", "q", "r", "v")
BOUND_INDICES = tuple(sp.Dummy(n, integer=True, positive=True, dummy_index=900 + k)
                      for k, n in enumerate(_BOUND_NAMES))


class SampleIndex(sp.Symbol):
    """A free index along one axis: a statement with index i holds "for every i in 1..N".

    ``axis`` is the size symbol of the axis the index runs over (N for samples, C for
    channels, ...).  It is part of the index's identity: i over N and i over C are two
    indices, so a reduction can tell whether an index lies in its own range.
    """

    def __new__(cls, name: str, axis: sp.Symbol):
        axis = sp.sympify(axis)
        if not (isinstance(axis, sp.Symbol) and axis.is_integer and axis.is_positive):
            raise ValueError(f"index {name}: its axis must be a size symbol such as N")
        obj = sp.Symbol.__xnew__(cls, name, integer=True, positive=True)
        obj.axis = axis
        return obj

    def _hashable_content(self):
        return super()._hashable_content() + (self.axis,)

    def __getnewargs_ex__(self):   # pickling: the assumptions are the class's own
        return ((self.name, self.axis), {})


def _depth(expr: sp.Basic) -> int:
    """Nesting depth of reductions inside ``expr`` (0 when there is none)."""
    if isinstance(expr, _Reduction):
        return expr.depth
    return max((_depth(a) for a in expr.args), default=0)


class _Reduction(sp.Expr):
    """A reduction over the batch; subclasses say whether it is a mean or a sum."""

    is_commutative = True
    symbol = ""  # set by subclasses (for messages)
    precedence = 45  # between a sum and a product (SymPy: 40, 50): parenthesized as a factor

    def __new__(cls, body, index, size):
        body = sp.sympify(body)
        size = sp.sympify(size)
        if isinstance(index, SampleIndex) and index.axis != size:
            raise ValueError(f"the index {index} runs over {index.axis}: a reduction over "
                             f"{size} needs an index of that axis")
        depth = _depth(body) + 1
        if depth > len(BOUND_INDICES):
            raise ValueError(f"reductions nest deeper than {len(BOUND_INDICES)} levels")
        bound = BOUND_INDICES[depth - 1]
        if index != bound:
            body = body.xreplace({index: bound})
        obj = sp.Expr.__new__(cls, body, bound, size)
        return obj

    @property
    def body(self) -> sp.Expr:
        return self.args[0]

    @property
    def index(self) -> sp.Symbol:
        return self.args[1]

    @property
    def size(self) -> sp.Expr:
        return self.args[2]

    @property
    def depth(self) -> int:
        return BOUND_INDICES.index(self.index) + 1

    @property
    def free_symbols(self):
        # the bound index is not free: a closed reduction is a constant of any outer reduction
        inner = {s for s in self.body.free_symbols if not s.has(self.index)}
        return inner | self.size.free_symbols

    def _eval_derivative(self, v):
        if v in self.size.free_symbols:
            raise ValueError("cannot differentiate a batch reduction by the batch size")
        return self.func(sp.diff(self.body, v), self.index, self.size)

    def _eval_is_real(self):
        return self.body.is_real


class Mean(_Reduction):
    """(1/N) * sum over the batch of ``body``, the bound index running over 1..N."""

    symbol = "E"


class BatchSum(_Reduction):
    """sum over the batch of ``body``, the bound index running over 1..N."""

    symbol = "Sum"


def is_reduction(expr) -> bool:
    return isinstance(expr, _Reduction)


class Held(sp.Expr):
    """A value whose derivative is zero (stop-gradient); its value is its argument's."""

    is_commutative = True

    def __new__(cls, arg):
        return sp.Expr.__new__(cls, sp.sympify(arg))

    def _eval_derivative(self, v):
        return sp.S.Zero

    @property
    def free_symbols(self):
        return self.args[0].free_symbols

    def _eval_is_real(self):
        return self.args[0].is_real


class Statistic(sp.Expr):
    """A closed batch statistic (mu_B, sigma^2_B) kept as one symbol while a proof computes.

    Its value and its derivative are its definition's (the derivative is taken through the
    definition, so mu_B's is (1/N) sum_j delta_jk), but expanding and field arithmetic treat it
    as an atom: a derivation keeps sigma^2_B where the paper writes it, instead of writing it
    out as E[x^2] - E[x]^2.  It lives only inside proofs: statements never contain it, and the
    printers and the explicit layer read it as its definition.
    """

    is_commutative = True
    is_Atom = True   # sp.expand, together, cancel and the reducer do not look inside

    def __new__(cls, definition):
        return sp.Expr.__new__(cls, sp.sympify(definition))

    @property
    def definition(self) -> sp.Expr:
        return self.args[0]

    @property
    def free_symbols(self):
        return self.args[0].free_symbols

    def _eval_derivative(self, v):
        return sp.diff(self.args[0], v)

    def _eval_is_real(self):
        return self.args[0].is_real

    def _eval_is_positive(self):
        return self.args[0].is_positive

    def _eval_is_nonnegative(self):
        return self.args[0].is_nonnegative

    def _latex(self, printer):
        return printer._print(self.args[0])

    def _sympystr(self, printer):
        return printer._print(self.args[0])


def unname(expr: sp.Expr) -> sp.Expr:
    """``expr`` with every ``Statistic`` replaced by its definition (the same value)."""
    if not isinstance(expr, sp.Basic) or not expr.has(Statistic):
        return expr
    if isinstance(expr, Statistic):
        return unname(expr.args[0])
    args = [unname(a) for a in expr.args]
    return expr.func(*args)


class Grad(sp.Expr):
    """Unevaluated derivative of ``expr`` with respect to a parameter or a sample ``u[k]``.

    ``doit`` differentiates with SymPy's chain rule: reductions differentiate their body,
    ``Held`` gives zero.  With ``at``, ``wrt`` is an intermediate node of a computation written
    as a free parameter, and the derivative is evaluated at ``wrt = at``: the backward pass's
    partial derivative by a node such as sigma^2, which holds the node's inputs fixed.
    """

    is_commutative = True

    def __new__(cls, expr, wrt, at=None):
        args = (sp.sympify(expr), sp.sympify(wrt))
        if at is not None:
            if not isinstance(args[1], sp.Symbol) or isinstance(args[1], SampleIndex):
                raise ValueError("Grad(..., at=...) needs a parameter (a node written as a "
                                 "symbol) to differentiate by")
            args += (sp.sympify(at),)
        return sp.Expr.__new__(cls, *args)

    @property
    def expr(self):
        return self.args[0]

    @property
    def wrt(self):
        return self.args[1]

    @property
    def at(self):
        """The value the node is evaluated at, or None for an ordinary derivative."""
        return self.args[2] if len(self.args) > 2 else None

    @property
    def free_symbols(self):
        if self.at is None:
            return self.expr.free_symbols | self.wrt.free_symbols
        return (self.expr.free_symbols - {self.wrt}) | self.at.free_symbols

    def doit(self, **hints):
        expr = self.expr.doit(**hints) if hints.get("deep", True) else self.expr
        out = sp.diff(expr, self.wrt)
        return out if self.at is None else out.xreplace({self.wrt: self.at})


def held(expr: sp.Expr) -> sp.Expr:
    """Hold every batch statistic in ``expr`` constant (wrap each outermost reduction)."""
    expr = sp.sympify(expr)
    if is_reduction(expr):
        return Held(expr)
    if isinstance(expr, Held) or not expr.args:
        return expr
    args = [held(a) for a in expr.args]
    return expr.func(*args) if any(a is not b for a, b in zip(args, expr.args)) else expr


def release(expr: sp.Expr) -> sp.Expr:
    """Drop every Held wrapper: a held statistic has the same value as the statistic."""
    return expr.replace(lambda e: isinstance(e, Held), lambda e: e.args[0])


class ActivationClass(FunctionClass):
    """The metaclass of ``activation`` functions: SymPy's, plus pickling (``_reduce``)."""


def activation(name: str, latex: str | None = None):
    """An arbitrary differentiable scalar function theta, with derivative theta'.

    The derivative is a named function of its own (not a ``Subs``/``Derivative`` with dummy
    variables) so that proofs print the same way in every run.  Each call makes a new function
    (two calls with one name are two functions); a pickled one is rebuilt by name on loading,
    once per pickle, with its derivative (claims and results go to worker processes).
    """
    latex = latex or name
    # classes of their own (sp.Function(name) would return a class shared by name)
    prime = ActivationClass(name + "'", (sp.Function,), {
        "is_real": True, "_latex_name": latex + "'", "arbitrary": True})

    def fdiff(self, argindex=1):
        return prime(self.args[0])

    cls = ActivationClass(name, (sp.Function,), {
        "fdiff": fdiff, "is_real": True, "arbitrary": True, "_latex_name": latex,
        "derivative": prime, "_activation": (name, latex)})
    prime._primitive = cls
    return cls


def _reduce(cls):
    """Pickle an activation by name: the function rebuilt, or the rebuilt one's derivative."""
    if "_primitive" in vars(cls):
        return getattr, (cls._primitive, "derivative")
    return activation, cls._activation


copyreg.pickle(ActivationClass, _reduce)


class Batch:
    """An axis of ``size`` entries -- the batch of N samples, or C channels, H positions, ... --
    and the factory for its indices, reductions, samples and parameters.  ``Axis`` is the
    same class: a claim may use several, each reduction naming the axis it runs over.

    >>> B = Batch("N")
    >>> u = B.samples("u"); i = B.index("i"); b = B.param("b")
    >>> B.mean(u[i] + b, i)          # (1/N) sum_j (u_j + b)
    """

    def __init__(self, size: str | sp.Symbol = "N"):
        if isinstance(size, str):
            size = sp.Symbol(size, integer=True, positive=True)
        if not (isinstance(size, sp.Symbol) and size.is_integer and size.is_positive):
            raise ValueError("the batch size must be a name such as 'N' (a symbol), so that "
                             "claims hold for every batch size")
        self.size = size

    # a batch is its size: equal sizes, equal batches (a claim sent to a worker process and
    # back equals the original)
    def __eq__(self, other):
        return isinstance(other, Batch) and other.size == self.size

    def __hash__(self):
        return hash((Batch, self.size))

    def samples(self, name: str, latex: str | None = None, **assumptions) -> sp.IndexedBase:
        """Per-sample real values name[i]; assumptions such as positive=True apply to each."""
        assumptions.setdefault("real", True)
        return sp.IndexedBase(latex or name, **assumptions)

    def index(self, name: str) -> SampleIndex:
        """A free index along this axis ("for every sample i")."""
        return SampleIndex(name, self.size)

    def param(self, name: str, **assumptions) -> sp.Symbol:
        """A scalar shared by every sample (a bias, a learning rate, ...)."""
        assumptions.setdefault("real", True)
        return sp.Symbol(name, **assumptions)

    def params(self, *names: str, **assumptions):
        return tuple(self.param(n, **assumptions) for n in names)

    def mean(self, body, index) -> Mean:
        """The batch mean of ``body`` over ``index`` (which becomes bound)."""
        return Mean(body, index, self.size)

    def sum(self, body, index) -> BatchSum:
        """The batch sum of ``body`` over ``index`` (which becomes bound)."""
        return BatchSum(body, index, self.size)

    def center(self, body, index):
        """body - E[body]: the centering of section 2 of the batch-normalization paper."""
        return body - self.mean(body, index)


Axis = Batch   # an axis is to an index what a batch is to a sample
