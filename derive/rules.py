"""The proof rules for batch reductions, in one table, and the reducer that applies them.

Each rule is sound for every batch size N >= 1 and is stated in LaTeX next to its code.  The
reducer applies one rule at a time, everywhere in the expression, and records a ``Step``
naming it; the caller re-checks every step on its own (see ``verify``).  Closed reductions
(a mean whose bound index is not free) are constants of any outer reduction: ``free_symbols``
of a reduction excludes its own bound index, and every test below asks only that question.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import sympy as sp

from .calculus import (BatchSum, Grad, Held, Mean, SampleIndex, Statistic, is_reduction,
                       unname)
from .core import Step


@dataclass(frozen=True)
class Rule:
    name: str
    latex: str          # the rule as a formula, for the report
    description: str    # one line, for the report and --help
    apply: Callable[[sp.Expr], sp.Expr]


def _bottom_up(expr: sp.Expr, node_rule: Callable[[sp.Expr], sp.Expr | None]) -> sp.Expr:
    """Rewrite children first, then the node itself; ``node_rule`` returns None to keep it."""
    if not expr.args or expr.is_Atom:
        out = node_rule(expr)
        return expr if out is None else out
    args = [_bottom_up(a, node_rule) for a in expr.args]
    new = expr.func(*args) if any(a is not b for a, b in zip(args, expr.args)) else expr
    out = node_rule(new)
    return new if out is None else out


def _free_of(expr: sp.Expr, index: sp.Symbol) -> bool:
    return index not in expr.free_symbols


# -- the rules ---------------------------------------------------------------------------------

def _differentiate(expr):
    def node(e):
        return e.doit() if isinstance(e, Grad) else None
    return _bottom_up(expr, node)


def _release_hold(expr):
    # beneath an unevaluated derivative a held statistic still has derivative 0: keep it
    if isinstance(expr, Grad):
        return expr
    if isinstance(expr, Held):
        return _release_hold(expr.args[0])
    if not expr.args:
        return expr
    args = [_release_hold(a) for a in expr.args]
    return expr.func(*args) if any(a is not b for a, b in zip(args, expr.args)) else expr


def _mean_as_sum(expr):
    return _bottom_up(expr, lambda e: BatchSum(e.body, e.index, e.size) / e.size
                      if isinstance(e, Mean) else None)


def _expand(expr):
    return sp.expand(expr)


def _linearity(expr):
    def node(e):
        if not is_reduction(e):
            return None
        body, j = e.body, e.index
        if body.is_Add:  # each new term may itself have factors to move out
            terms = [e.func(t, j, e.size) for t in body.args]
            return sp.Add(*[node(t) or t for t in terms])
        if body.is_Mul:
            const = [f for f in body.args if _free_of(f, j)]
            if const and len(const) < len(body.args):
                rest = [f for f in body.args if not _free_of(f, j)]
                return sp.Mul(*const) * e.func(sp.Mul(*rest), j, e.size)
        return None
    return _bottom_up(expr, node)


def _constant(expr):
    def node(e):
        if is_reduction(e) and _free_of(e.body, e.index):
            return e.body if isinstance(e, Mean) else e.size * e.body
        return None
    return _bottom_up(expr, node)


def _sifting(expr):
    # sum_j delta_jk h_j = h_k needs k in j's range 1..N: a free index of the reduction's own
    # axis, or the bound index of an enclosing reduction over that axis.  An index of another
    # axis (a channel c beside samples j) may lie outside 1..N, so its delta stays.
    def sift(e, scope):
        j = e.index
        factors = sp.Mul.make_args(e.body)
        for n, f in enumerate(factors):
            if isinstance(f, sp.KroneckerDelta) and j in f.args:
                other = f.args[1] if f.args[0] == j else f.args[0]
                if other == j:
                    continue
                axis = other.axis if isinstance(other, SampleIndex) else scope.get(other)
                if axis is None or axis != e.size:
                    continue
                rest = sp.Mul(*(factors[:n] + factors[n + 1:]))
                picked = rest.xreplace({j: other})
                return picked / e.size if isinstance(e, Mean) else picked
        return None

    def walk(e, scope):
        if not e.args or e.is_Atom:
            return e
        inner = {**scope, e.index: e.size} if is_reduction(e) else scope
        args = [walk(a, inner) for a in e.args]
        new = e.func(*args) if any(a is not b for a, b in zip(args, e.args)) else e
        out = sift(new, scope) if is_reduction(new) else None
        return new if out is None else out
    return walk(expr, {})


def _roots(expr):
    # (c X)^p = c^p X^p for c > 0: a common positive factor of a radicand leaves the root
    # (SymPy splits the power once factor_terms has made the factor explicit)
    def node(e):
        if e.is_Pow and e.exp.is_Rational and not e.exp.is_integer and e.base.is_Add:
            return _root_of_product(e)
        return None
    return _bottom_up(expr, node)


@functools.lru_cache(maxsize=4096)
def _root_of_product(e):
    """One power's rewrite (None: unchanged), once per power: the reducer meets the same
    roots in every round, and factor_terms is the cost of the rule."""
    out = sp.Pow(sp.factor_terms(e.base), e.exp)
    return out if out != e else None


def _algebra(expr):
    # Closed reductions, deltas and function values are atoms (generators) for SymPy's
    # rational-function arithmetic; cancel gives a canonical numerator/denominator.
    return sp.cancel(sp.together(expr)) if expr.has(sp.Pow) else sp.expand(expr)


# -- named statistics --------------------------------------------------------------------------
# The first proof attempt keeps each closed statistic of one input (mu_B = E[x], sigma^2_B =
# E[(x - mu_B)^2]) as one symbol, as the paper does, and differentiates through its
# definition; the fallback writes everything out (see ``verify.prove_part``).

def _splits(e) -> bool:
    """Linearity or a constant would rewrite this reduction (so it is not one statistic)."""
    body, j = e.body, e.index
    return (body.is_Add or _free_of(body, j)
            or (body.is_Mul and any(_free_of(f, j) for f in body.args)))


def _statistic_candidate(e) -> bool:
    """A reduction of one input's samples, free of derivatives: mu_B, sigma^2_B, or a
    statistic per sample E_j[x_{n,j}] whose n an outer reduction binds."""
    return (is_reduction(e) and not e.has(Grad, Held, sp.KroneckerDelta)
            and len({a.base for a in e.atoms(sp.Indexed)}) == 1)


def name_statistics(expr: sp.Expr, known=frozenset()) -> sp.Expr:
    """``expr`` with its statistics named, innermost first.

    A mean of one input is a statistic.  A mean of a linear body is split first (E[x + b] =
    mu_B + b) and a common factor leaves it (E[(a x - a mu_B)^2] = a^2 sigma^2_B), so one
    statistic has one name wherever it occurs.  A sum is N times its mean when that mean is
    a statistic named here or in ``known`` (sum_j x_j = N mu_B); other sums stay sums
    (sum_j dy_j is the gradient of beta, not a statistic of the batch).
    """
    expr = sp.sympify(expr)
    means = set(known) | expr.atoms(Statistic)

    def node(e):
        if not _statistic_candidate(e):
            return None
        if _splits(e):
            split = _constant(_linearity(e))
            return None if split == e else _bottom_up(split, node)
        common = sp.factor_terms(e.body)   # E[(a x - a mu)^2] = a^2 E[(x - mu)^2]
        if common != e.body and _splits(e.func(common, e.index, e.size)):
            return node(e.func(common, e.index, e.size))
        if isinstance(e, BatchSum):
            return None
        means.add(Statistic(e))
        return Statistic(e)

    def fold_sum(e):
        if isinstance(e, BatchSum) and _statistic_candidate(e):
            named = Statistic(Mean(e.body, e.index, e.size))
            if named in means:
                return e.size * named
        return None

    named = _bottom_up(expr, node)
    return _bottom_up(named, fold_sum)


def _expand_summands(expr):
    """The expansion a proof in named statistics needs, and no more: in a summand, a factor
    that holds a Kronecker delta of the summand's own index is multiplied out, so sifting
    can pick its terms; every other grouping stays as the paper writes it (sum_q dy_q (x_q -
    mu_B), not sum_q dy_q x_q - mu_B sum_q dy_q)."""
    def has_delta(e, j):
        return any(j in d.args for d in e.atoms(sp.KroneckerDelta))

    def distribute(e, j):
        if e.is_Add:
            return sp.Add(*[distribute(t, j) for t in e.args])
        if e.is_Mul:
            for n, f in enumerate(e.args):
                if f.is_Add and has_delta(f, j):
                    rest = sp.Mul(*(e.args[:n] + e.args[n + 1:]))
                    return sp.Add(*[distribute(rest * t, j) for t in f.args])
        return e

    def node(e):
        if is_reduction(e) and has_delta(e.body, e.index):
            body = distribute(e.body, e.index)
            return e.func(body, e.index, e.size) if body != e.body else None
        return None
    return _bottom_up(expr, node)


RULES: dict[str, Rule] = {r.name: r for r in (
    Rule("differentiate",
         r"\tfrac{\partial}{\partial v}\tfrac{1}{N}\sum_j f_j = \tfrac{1}{N}\sum_j "
         r"\tfrac{\partial f_j}{\partial v},\ \tfrac{\partial u_j}{\partial u_k}=\delta_{jk},\ "
         r"\tfrac{\partial}{\partial v}\operatorname{sg}(e) = 0",
         "chain rule; a reduction differentiates its summands; a held statistic sg(e) has "
         "derivative 0", _differentiate),
    Rule("release-hold", r"\operatorname{sg}(e) = e",
         "a held statistic has the value of the statistic", _release_hold),
    Rule("mean-as-sum", r"\operatorname{E}_j[f_j] = \tfrac{1}{N}\sum_{j=1}^{N} f_j",
         "a batch mean is the batch sum over N (used when a statement has sums)",
         _mean_as_sum),
    Rule("expand", r"a(b+c) = ab + ac",
         "distribute products over sums, inside and outside reductions", _expand),
    Rule("linearity",
         r"\tfrac{1}{N}\sum_j (f_j + h_j) = \tfrac{1}{N}\sum_j f_j + \tfrac{1}{N}\sum_j h_j,\ "
         r"\tfrac{1}{N}\sum_j c f_j = c\,\tfrac{1}{N}\sum_j f_j",
         "a reduction is linear; factors free of the bound index (closed statistics "
         "included) move out", _linearity),
    Rule("mean-of-constant", r"\tfrac{1}{N}\sum_{j=1}^{N} c = c,\ \sum_{j=1}^{N} c = Nc",
         "a summand free of the bound index", _constant),
    Rule("sifting", r"\tfrac{1}{N}\sum_{j=1}^{N} \delta_{jk} h_j = \tfrac{1}{N} h_k",
         "the Kronecker delta picks one summand", _sifting),
    Rule("root-of-product", r"(cX)^{p} = c^{p} X^{p}\ (c > 0)",
         "a positive factor common to every term of a radicand leaves the root",
         _roots),
    Rule("statistic",
         r"\tfrac{1}{N}\sum_j x_j = \mu,\ \tfrac{1}{N}\sum_j (x_j-\mu)^2 = \sigma^2,\ "
         r"\sum_j x_j = N\mu",
         "a batch mean of one input (mu, sigma^2) is one symbol wherever it occurs, its sum N "
         "times it; its value and derivative are its definition's", name_statistics),
    Rule("algebra", r"\text{field arithmetic}",
         "rational-function arithmetic, closed statistics treated as atoms", _algebra),
)}

# The order in which the reducer tries the structural rules; it loops until none applies.
ORDER = ("differentiate", "release-hold", "mean-as-sum", "root-of-product", "expand",
         "linearity", "mean-of-constant", "sifting")


def reduce(expr: sp.Expr, deadline: Callable[[], None] | None = None,
           max_rounds: int = 50, sums: bool | None = None, statistics=None,
           grouping: bool = False) -> list[Step]:
    """Apply the rules until none changes ``expr``; returns the steps (possibly empty).

    ``sums``: write means as sums (so that both sides of a statement with a sum meet in
    one form); by default, when ``expr`` itself has a sum.  ``statistics``: the statistics
    named in the proof (a set, possibly empty; None: none are named); name them wherever a
    rule writes one out (the "statistic" rule; a naming that changes nothing but the name is
    not a step, since it prints and evaluates the same).
    ``grouping``: expand only the summands sifting needs, so the derivation keeps the
    paper's grouping.
    """
    steps: list[Step] = []
    current = sp.sympify(expr)
    if sums is None:
        sums = current.has(BatchSum)
    order = ORDER if sums else tuple(n for n in ORDER if n != "mean-as-sum")
    if statistics is not None:
        order += ("statistic",)
        statistics = set(statistics)
    for _ in range(max_rounds):
        changed = False
        for name in order:
            if deadline:
                deadline()
            if grouping and name == "expand":
                new = _expand_summands(current)
            elif name == "statistic":
                new = name_statistics(current, statistics)
                statistics |= new.atoms(Statistic)
            else:
                new = RULES[name].apply(current)
            if name == "statistic" and new != current and unname(new) == unname(current):
                current = new
                continue
            if new != current:
                steps.append(Step(name, current, new))
                current, changed = new, True
        if not changed:
            break
    new = RULES["algebra"].apply(current)
    if new != current:
        steps.append(Step("algebra", current, new))
    return steps


def normal_form(expr: sp.Expr, deadline=None, sums: bool | None = None) -> sp.Expr:
    steps = reduce(expr, deadline, sums=sums)
    return steps[-1].after if steps else sp.sympify(expr)
