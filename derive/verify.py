"""Check a claim: prove it symbolically, corroborate it independently, decide its verdict.

The verdict is decided here, in one place, from what the layers found:

* proved    only if every part's residual reduced to 0 under the rule table, every proof step
            passed its own re-check, and no independent layer found a failure;
* refuted   only with an exact counterexample (``counterexample.search``) that an independent
            re-check (``recheck``) confirms;
* undecided otherwise -- including when a proof and an independent layer disagree, which
            would mean a bug, and is reported as such rather than guessed around.

``check`` gathers the evidence; ``decide`` is the policy, a pure function of that evidence.
Time budgets (``deadline.time_budget``) work in every thread and nest.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import sympy as sp

from . import counterexample, deadline as _deadline, numeric, recheck
from .axes import size_grid, sizes_text
from .calculus import (BOUND_INDICES, BatchSum, Grad, SampleIndex, Statistic, is_reduction,
                       release, unname)
from .core import (
    PROVED,
    REFUTED,
    Claim,
    Counterexample,
    DeriveError,
    Evidence,
    OutOfTime,
    PartProof,
    Result,
    Step,
    Verdict,
    error_text,
)
from .deadline import checkpoint, time_budget
from .explicit import ExplicitBatch, domain_values, free_indices, index_patterns
from .rules import name_statistics, reduce
from .text import text


@dataclass(frozen=True)
class Settings:
    """How hard each layer works.  The defaults are the report's."""

    budget: float = 10.0                  # seconds for the symbolic proof of one claim
    explicit_sizes: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8)
    step_identity_sizes: tuple[int, ...] = (1, 2)   # each step: an identity at these N
    step_point_sizes: tuple[int, ...] = (3,)        # ... and exact at random points here
    explicit_budget: float = 20.0         # seconds for the explicit layer of one claim
    timeout: float | None = None          # seconds for everything about one claim
    random_instances: int = 200
    hypothesis_examples: int = 100
    counterexample_max_size: int = 6
    frameworks: tuple[str, ...] = ("torch", "jax")  # autograd layers, where installed
    framework_examples: int = 30          # Hypothesis instances per claim and framework
    simulation: bool = True               # simulated training runs, for the claims that have one


# -- symbolic ----------------------------------------------------------------------------------

def prove_part(claim: Claim, n: int) -> PartProof:
    """Reduce both sides of one equation to a normal form, in two attempts.

    First with the statistics named (``rules.name_statistics``): a derivation that reads
    like the paper's, in mu_B and sigma^2_B.  Equal normal forms in named statistics are
    equal whatever the statistics' values, so that proves the part; different ones prove
    nothing (the statistics are related: E[x - mu_B] = 0), and the second attempt writes
    every statistic out, which decides the part or leaves its residual.
    """
    eq = claim.equations[n]
    sums = eq.lhs.has(BatchSum) or eq.rhs.has(BatchSum)  # then both sides meet as sums
    named = _named_attempt(eq, sums)
    if named is not None:
        return named
    lhs_steps = reduce(eq.lhs, deadline=checkpoint, sums=sums)
    rhs_steps = reduce(eq.rhs, deadline=checkpoint, sums=sums)
    lhs = lhs_steps[-1].after if lhs_steps else eq.lhs
    rhs = rhs_steps[-1].after if rhs_steps else eq.rhs
    # factor puts the difference over one denominator itself, and cancels the factors the
    # numerator and denominator share: a together and a cancel before it were paid twice
    residual = sp.factor(lhs - rhs) if lhs != rhs else sp.S.Zero
    return PartProof(eq, lhs_steps, rhs_steps, residual)


def left_equals_right(left, right) -> bool:
    """Field arithmetic on the two reduced sides, reductions and statistics as atoms."""
    return left == right or sp.cancel(sp.together(left - right)) == 0


def _named_attempt(eq, sums) -> PartProof | None:
    """The part proved with its statistics named, or None when it is not proved so (or there
    is no statistic to name: the second attempt is then the same).

    Each side is reduced keeping the paper's grouping (only what sifting needs is expanded),
    and the two must then agree as rational functions of their statistics and reductions:
    the "left - right = 0" of the derivation."""
    sides = (eq.lhs, eq.rhs)
    named = [name_statistics(side) for side in sides]
    known = set().union(*(n.atoms(Statistic) for n in named))
    if not known and all(unname(n) == side for n, side in zip(named, sides)):
        return None
    named = [name_statistics(n, known) for n in named]   # a sum on one side, a mean on the other

    def end(steps, start):
        return steps[-1].after if steps else start

    grouped = []
    for side, start in zip(sides, named):
        # naming is invisible unless it also rewrote (E[x + b] = mu_B + b): then it is a step
        first = [Step("statistic", side, start)] if unname(start) != side else []
        steps = first + reduce(start, deadline=checkpoint, sums=sums, statistics=known,
                               grouping=True)
        # the last step puts a side over one denominator: the comparison does that itself
        grouped.append(steps[:-1] if steps and steps[-1].rule == "algebra" else steps)
    ends = [end(s, n) for s, n in zip(grouped, named)]
    if left_equals_right(*ends):
        return PartProof(eq, grouped[0], grouped[1], sp.S.Zero)
    return None


def recheck_step(claim: Claim, step: Step, settings: Settings,
                 batches: dict | None = None) -> None:
    """Re-check ``before = after`` on its own, with every sum written out.

    As an identity at the smallest batch sizes, and exactly at random rational points at
    larger ones; a step that fails or cannot be confirmed invalidates the proof.  A claim over
    several axes is written out with every axis at the same size (at least its minimum).
    ``batches``: the written-out batches of the claim's other steps, shared: one step's
    ``after`` is the next one's ``before``, and is written out once.
    """
    minimums = claim.minimums()
    several = tuple(minimums.items()) if len(minimums) > 1 else None
    step.ok, checks = _recheck(step.before, step.after, claim.min_size, claim.batch.size,
                               settings.step_identity_sizes, settings.step_point_sizes,
                               several, batches)
    step.checks = list(checks)


def _step_batch(size, size_symbol, several, batches: dict):
    """(batch, the extent of its free indices) at one size, every axis at ``size``: the one
    ``batches`` holds for that size, made there first if it holds none."""
    key = (size, size_symbol, several)
    if key not in batches:
        if several is None:
            batches[key] = ExplicitBatch(size, size_symbol), size
        else:
            sizes = {a: max(size, m) for a, m in several}
            batches[key] = ExplicitBatch(sizes[size_symbol], size_symbol, sizes=sizes), sizes
    return batches[key]


_RECHECKS: dict = {}   # the re-checks done, by step and sizes
_RECHECKS_KEPT = 4096


def _recheck(before, after, min_size, size_symbol, identity_sizes, point_sizes, several=None,
             batches=None):
    """(ok, checks) of one step, remembered by the step and the sizes: a step that recurs
    (one in six does, across the parts and claims of a report) is re-checked once.
    ``batches`` is only where it writes out: exact arithmetic, and points drawn from what the
    step's own values depend on, whatever else a shared batch holds.  A budget that runs out
    raises, and nothing is remembered."""
    key = (before, after, min_size, size_symbol, identity_sizes, point_sizes, several)
    if key not in _RECHECKS:
        if len(_RECHECKS) >= _RECHECKS_KEPT:
            _RECHECKS.clear()
        _RECHECKS[key] = _recheck_fresh(*key, {} if batches is None else batches)
    return _RECHECKS[key]


_recheck.cache_clear = _RECHECKS.clear


def _recheck_fresh(before, after, min_size, size_symbol, identity_sizes, point_sizes, several,
                   batches):
    """``_recheck`` itself.  A size where the step is undefined (a division by zero for
    every value: a variance at N = 1) says nothing and is skipped; a step no size could
    check is checked at random points at the first size where it is defined, never passed
    unchecked."""
    indices = free_indices(before, after)
    identity, points = [], []
    name = "N" if several is None else " = ".join(sp.sstr(a) for a, _ in several)

    def values_at(size):
        batch, extent = _step_batch(size, size_symbol, several, batches)
        out = []
        for env in index_patterns(indices, extent, before, after):
            checkpoint()
            out.append(batch.eval(before, env) - batch.eval(after, env))
        return batch, out

    for size in identity_sizes + point_sizes:
        if size < min_size:
            continue
        try:
            batch, values = values_at(size)
            if size in identity_sizes:
                found = [_checked(batch.decide, v, points=2, seed=size) for v in values]
                ok = False not in found
                (identity if all(found) else points).append(size)
            else:
                ok = all(_checked(batch.zero_at_points, v, points=2, seed=size)
                         for v in values)
                points.append(size)
        except ZeroDivisionError:
            continue   # undefined at this size
        if not ok:
            return False, (f"fails at {name} = {size}",)
    if not identity and not points:
        start = max([min_size] + [n + 1 for n in identity_sizes + point_sizes])
        for size in range(min_size, start + 4):
            try:
                batch, values = values_at(size)
                ok = all(_checked(batch.zero_at_points, v, points=2, seed=size)
                         for v in values)
            except ZeroDivisionError:
                continue
            if not ok:
                return False, (f"fails at {name} = {size}",)
            points.append(size)
            break
        else:
            return False, ("undefined at every size tried",)
    return True, tuple(([f"identity at {name} = {', '.join(map(str, identity))}"]
                        if identity else [])
                       + ([f"exact at random rational points at {name} = "
                           f"{', '.join(map(str, points))}"] if points else []))


def _checked(test, *args, **kwargs):
    """``test(*args)`` after a safe point (a budget that ran out stops before it)."""
    checkpoint()
    return test(*args, **kwargs)


def symbolic_layer(claim: Claim, settings: Settings):
    t0 = time.perf_counter()
    parts = []
    with time_budget(settings.budget, f"the symbolic proof of {claim.id}"):
        batches: dict = {}   # the claim's steps are written out in the same batches
        for n in range(len(claim.equations)):
            part = prove_part(claim, n)
            for step in part.lhs_steps + part.rhs_steps:
                recheck_step(claim, step, settings, batches)
            parts.append(part)
    steps = sum(len(p.lhs_steps) + len(p.rhs_steps) for p in parts)
    zero = all(p.proved for p in parts)
    failed = [s for p in parts for s in p.lhs_steps + p.rhs_steps if not s.ok]
    if zero:
        summary = (f"every residual reduces to 0 in {steps} named "
                   f"step{'s' if steps != 1 else ''}, each re-checked")
    elif failed:
        summary = (f"the proof step '{failed[0].rule}' failed its own re-check "
                   f"({'; '.join(failed[0].checks)})")
    else:
        summary = "a residual does not reduce to 0: " + ", ".join(
            text(p.residual) for p in parts if p.residual != 0)
    return parts, Evidence("symbolic", zero, summary,
                           {"steps": steps, "rules": sorted({s.rule for p in parts for s in
                                                             p.lhs_steps + p.rhs_steps})},
                           time.perf_counter() - t0, holds=zero)


# -- explicit ----------------------------------------------------------------------------------

class Undefined(DeriveError):
    """The statement is undefined at a size: a division by zero for every value there."""


def explicit_holds(claim: Claim, size) -> bool | None:
    """Every part at this batch size (or these sizes, {axis: size}), plain sums, no symbolic
    rules: True when each holds identically, False when one certainly fails, None when that
    cannot be told.  Raises ``Undefined`` where the statement divides by zero for every
    value of its variables (the variance of one sample, at epsilon = 0)."""
    batch, extent = _explicit_batch(claim, size)
    outcome: bool | None = True
    for eq in claim.equations:
        for env in index_patterns(free_indices(eq.lhs, eq.rhs), extent, eq.lhs, eq.rhs):
            checkpoint()
            try:
                found = batch.decide(batch.eval(eq.lhs, env) - batch.eval(eq.rhs, env))
            except ZeroDivisionError:
                raise Undefined(f"the statement divides by zero at {_where(claim, size)} for "
                                "every value of its variables") from None
            if found is False:
                return False
            if found is None:
                outcome = None
    return outcome


def _explicit_batch(claim: Claim, size):
    """(ExplicitBatch, the extent of the free indices) at a batch size or at {axis: size}."""
    if not isinstance(size, dict):
        size = {claim.batch.size: size}
    sizes = {**claim.minimums(), **size}
    n = sizes[claim.batch.size]
    if len(sizes) == 1:
        return ExplicitBatch(n, claim.batch.size), n
    return ExplicitBatch(n, claim.batch.size, sizes=sizes), sizes


def _where(claim: Claim, size) -> str:
    """"N = 3" (one axis) or "N = 2, C = 3"."""
    if isinstance(size, dict):
        return sizes_text({**claim.minimums(), **size}) if len(claim.axes) > 1 \
            else f"N = {size[claim.batch.size]}"
    return f"N = {size}"


EXPLICIT_GRID = 12   # several axes: the largest product of sizes the explicit layer writes out
EXPLICIT_FAILURES = 3   # several axes: failing sizes after which the rest of the grid is left
                        # out (one refutes; a few point the counterexample search; more only
                        # cost time, the larger sizes most)


def explicit_sizes(claim: Claim, settings: Settings) -> list:
    """The explicit batch sizes a claim is checked at: from its minimum to its cap.  A claim
    over several axes: {axis: size} from its minimums, smallest first, the product of the
    sizes at most ``EXPLICIT_GRID``."""
    top = claim.explicit_up_to or max(settings.explicit_sizes, default=0)
    if len(claim.axes) > 1:
        return size_grid(claim.minimums(), top, EXPLICIT_GRID)
    return [n for n in settings.explicit_sizes if claim.min_size <= n <= top]


def explicit_layer(claim: Claim, settings: Settings) -> Evidence:
    """Explicit batch sizes in increasing order, as many as the time budget allows."""
    t0, clock = time.perf_counter(), _deadline.current_clock()
    start = clock()
    good, bad, unknown, undefined, stopped = [], [], [], [], None
    several = len(claim.axes) > 1
    grid = explicit_sizes(claim, settings)
    left_out = 0
    for count, n in enumerate(grid):
        if several and len(bad) >= EXPLICIT_FAILURES:
            left_out = len(grid) - count   # refuted already: the rest would only repeat it
            break
        remaining = settings.explicit_budget - (clock() - start)
        try:
            with time_budget(max(remaining, 1e-3), f"the explicit check at {_where(claim, n)}"):
                found = explicit_holds(claim, n)
        except OutOfTime:
            stopped = n
            break
        except Undefined:
            undefined.append(n)
            continue
        (good if found else bad if found is False else unknown).append(n)
    if several:
        axes = claim.axes
        names = f"({', '.join(map(sp.sstr, axes))})" if len(axes) > 1 else sp.sstr(axes[0])
        show = lambda ns: f"{names} = " + ", ".join(  # noqa: E731
            "(" + ", ".join(str(s[a]) for a in axes) + ")" for s in ns)
        stop_text = sizes_text(stopped) if stopped else ""
        good, bad, unknown, undefined = ([[s[a] for a in axes] for s in ns]
                                         for ns in (good, bad, unknown, undefined))
        shown = lambda ns: show([dict(zip(axes, s)) for s in ns])  # noqa: E731
    else:
        shown = lambda ns: f"N = {_ranges(ns)}"  # noqa: E731
        stop_text = f"N = {stopped}" if stopped else ""
    parts = [f"identity at {shown(good)}" if good else "",
             f"not an identity at {shown(bad)}" if bad else "",
             f"undecided at {shown(unknown)}" if unknown else "",
             f"undefined (a division by zero) at {shown(undefined)}" if undefined else "",
             f"{stop_text} not reached within {settings.explicit_budget:g} s"
             if stopped else "",
             f"{left_out} larger size{'s' if left_out != 1 else ''} left out once "
             f"{len(bad)} failed" if left_out else ""]
    summary = "; ".join(p for p in parts if p)
    holds = False if bad else (True if good and not unknown else None)
    details = {"holds_at": good, "fails_at": bad, "undecided_at": unknown,
               "not_reached": ([stopped[a] for a in claim.axes] if several and stopped
                               else stopped)}
    if several:
        details["axes"] = [sp.sstr(a) for a in claim.axes]
    if left_out:
        details["left_out"] = left_out
    if undefined:
        details["undefined_at"] = undefined
    return Evidence("explicit", bool(holds), summary, details, time.perf_counter() - t0,
                    holds=holds)


def _ranges(ns):
    ns = sorted(ns)
    if len(ns) > 2 and ns == list(range(ns[0], ns[-1] + 1)):
        return f"{ns[0]}..{ns[-1]}"
    return ", ".join(map(str, ns))


# -- numeric -----------------------------------------------------------------------------------

FAILING_SIZES = "_failing_sizes"   # a layer's private note of where it failed (not printed)


def _instance_sizes(claim: Claim, inst) -> tuple:
    """The sizes of a drawn instance, in the order of ``claim.axes``."""
    sizes = inst.all_sizes(claim)
    return tuple(sizes.get(a, m) for a, m in claim.minimums().items())


def numeric_layer(claim: Claim, settings: Settings, deadline: float | None = None,
                  shrink: bool = True) -> Evidence:
    """Random and Hypothesis instances in float64.  Hypothesis shrinks a failure only when it
    is news (``shrink`` and no random instance failed): where another layer has already seen
    the statement fail, the exact counterexample is the small instance, and the first
    failure Hypothesis draws is reported as drawn."""
    t0 = time.perf_counter()
    worst, failures, count, cache, outside = 0.0, [], 0, {}, 0
    for inst in numeric.random_instances(claim, settings.random_instances):
        if deadline is not None and time.monotonic() > deadline:
            break
        err = numeric.instance_error(claim, inst, cache)
        if math.isnan(err):
            outside += 1  # both sides undefined: outside the statement's domain
            continue
        count += 1
        if err > numeric.TOLERANCE:
            failures.append((err, inst))
        else:
            worst = max(worst, err)
    shrink = shrink and not failures
    h_count, h_worst, h_fail = numeric.hypothesis_check(
        claim, settings.hypothesis_examples, deadline=deadline,
        shrink_steps=numeric.SHRINK_STEPS if shrink else 0)
    if count + h_count == 0:
        return Evidence("numeric", False, "not run: the time budget was spent", {},
                        time.perf_counter() - t0, holds=None)
    details = {
        "random": {"instances": count, "max_error": worst, "failures": len(failures),
                   "outside_domain": outside},
        "hypothesis": {"instances": h_count, "max_error": h_worst,
                       "failed": h_fail is not None},
        "tolerance": numeric.TOLERANCE,
        "error": "|lhs - rhs| / (1 + max(|lhs|, |rhs|)), float64",
    }
    if h_fail is not None:
        how = "shrunk" if shrink else "first"
        details["hypothesis"][f"{how}_failure"] = numeric.instance_json(h_fail)
        details["hypothesis"][f"{how}_error"] = numeric.instance_error(claim, h_fail, cache)
    failed = bool(failures) or h_fail is not None
    if failures:   # private: where the random instances failed (``check`` takes it out)
        details[FAILING_SIZES] = sorted({_instance_sizes(claim, inst) for _, inst in failures},
                                        key=lambda t: (sum(t), t))
    total = count + h_count
    if not failed:
        summary = (f"{total} instances ({count} random, {h_count} Hypothesis), max error "
                   f"{error_text(max(worst, h_worst))}")
    else:
        # the same totals as the log's row (random and Hypothesis together), so that every
        # count printed anywhere agrees
        bad = len(failures) + (h_fail is not None)
        summary = (f"fails on {bad} of {total} instances ({len(failures)} of {count} random"
                   + (f"; Hypothesis {'shrinks its failure to' if shrink else 'fails first at'} "
                      f"{numeric.sizes_phrase(claim, h_fail)}" if h_fail else "") + ")")
    return Evidence("numeric", not failed, summary, details, time.perf_counter() - t0,
                    holds=not failed)


# -- the verdict -------------------------------------------------------------------------------

def _layer(kind: str, run, *args) -> Evidence:
    """Run one layer; a layer that cannot run reports why and can support no verdict."""
    t0 = time.perf_counter()
    try:
        return run(*args)
    except Exception as err:  # noqa: BLE001 -- a layer that fails can support no verdict
        return _could_not_run(kind, err, time.perf_counter() - t0)


def _could_not_run(kind: str, err: Exception, seconds: float) -> Evidence:
    why = err if isinstance(err, DeriveError) else why_text(err)
    return Evidence(kind, False, f"could not run: {why}", {"error": str(err)}, seconds,
                    holds=None)


def why_text(err: BaseException) -> str:
    """Why a layer could not run, in words (never a bare exception name): what went wrong
    and what it means for the claim."""
    detail = str(err).strip()
    detail = f" ({detail})" if detail else ""
    if isinstance(err, ZeroDivisionError):
        return ("a division by zero: the statement is undefined at some of the sizes or "
                "values it was evaluated at; give the claim a domain (domain=, min_size=)"
                + detail)
    if isinstance(err, RecursionError):
        return "the expression nests too deeply to be evaluated"
    if isinstance(err, MemoryError):
        return "the expression is too large to be evaluated in the memory available"
    if isinstance(err, NotImplementedError):
        return f"SymPy cannot carry out a step it needs{detail}"
    if isinstance(err, (TypeError, ValueError, AttributeError, KeyError, IndexError)):
        kind = type(err).__name__.lower().replace("error", " error")
        return (f"an internal error ({kind}{': ' + str(err).strip() if str(err).strip() else ''})"
                "; a bug in this layer, not a finding about the claim (please report it)")
    return (f"an unexpected failure{detail}; a bug in this layer, not a finding about the "
            "claim (please report it)")


# -- where the statement is defined ------------------------------------------------------------

@dataclass(frozen=True)
class Scope:
    """Where a statement is checked: ``claim`` with the domain its closed statistics imply
    (a variance under a square root or in a denominator must be > 0) and its smallest sizes
    raised to where it is defined; ``defined_from`` ({axis: size}) when they were raised,
    ``note`` saying why ("defined for N >= 2: at N = 1, ... is identically 0")."""

    claim: Claim
    defined_from: dict | None = None
    note: str = ""


def implicit_domain(claim: Claim) -> tuple:
    """The closed statistics the statement divides by or takes the square root of, which the
    claim's own domain does not already cover and which are not positive by their form (a
    variance plus epsilon > 0 is): each must be > 0 where the statement is defined.  A
    statistic that may be negative (a mean in a denominator) enters squared: nonzero."""
    return tuple(term for term, _ in _implicit_terms(claim))


def _implicit_terms(claim: Claim) -> list:
    """[(term of ``implicit_domain``, whether the statement may divide by it), ...]: a
    statistic in a denominator, or under a root inside a derivative (whose derivative
    divides by the root), may make the statement undefined where it is 0; a root taken as
    a value (sqrt(var) = 0) does not."""
    stated = {sp.expand(release(d)) for d in claim.domain}
    found: list = []
    divides: set = set()

    def visit(node, in_grad):
        if isinstance(node, Grad):
            in_grad = True
        if (node.is_Pow and node.exp.is_Rational
                and (node.exp.is_negative or node.exp.q == 2)):
            base = release(node.base)
            while base.is_Pow and base.exp.is_Rational and base.exp.q == 2:
                base = release(base.base)
            if not (base.is_number or not _closed(base)
                    or not any(is_reduction(e) for e in sp.preorder_traversal(base))
                    or sp.expand(base) in stated):
                if base not in found:
                    found.append(base)
                if node.exp.is_negative or in_grad:
                    divides.add(base)
        for arg in node.args:
            if isinstance(arg, sp.Basic):
                visit(arg, in_grad)

    for eq in claim.equations:
        for side in (eq.lhs, eq.rhs):
            visit(sp.sympify(side), False)
    out = []
    probe = {a: max(m, 2) for a, m in claim.minimums().items()}
    for base in found:
        sign = _sign(claim, base, probe)
        if sign == "positive":
            continue
        out.append((base if sign == "nonnegative" else base ** 2, base in divides))
    return out


def _closed(expr) -> bool:
    """No free index and no bound index of an enclosing reduction: one value per batch."""
    return not any(isinstance(s, SampleIndex) or s in BOUND_INDICES for s in expr.free_symbols)


def _sign(claim: Claim, expr, sizes) -> str:
    """"positive", "nonnegative" or "" (unknown) for ``expr`` written out at ``sizes``."""
    try:
        batch, _ = _explicit_batch(claim, sizes)
        value = batch.resolve(batch.eval(expr, {}))
        if value.is_positive:
            return "positive"
        if value.is_nonnegative:
            return "nonnegative"
    except Exception:  # noqa: BLE001 -- unknown: the statistic enters the domain as is
        pass
    return ""


DEFINED_WITHIN = 8   # how far above its minimum an axis is raised to where a statement is defined


def checked_scope(claim: Claim) -> Scope:
    """The scope ``check`` checks the claim in: its ``statement_scope``, or the claim as
    stated where that cannot be found (the layers will say what fails)."""
    try:
        return statement_scope(claim)
    except Exception:  # noqa: BLE001
        return Scope(claim)


def statement_scope(claim: Claim) -> Scope:
    """The claim as checked (``Scope``).  A statement is defined at a size when none of its
    domain's statistics (its own ``domain``, and those of ``implicit_domain`` it may divide
    by: a root taken as a value, sqrt(var) = 0, is defined) is identically 0 there;
    each axis starts at the first such size (the others held at a size where they do not
    matter).  Where that raises a size, the implicit domain is the claim's too; a claim
    defined from its stated sizes is checked as stated."""
    implicit = _implicit_terms(claim)
    # only what the statement may divide by can make it undefined: sqrt(var) = 0 is a value,
    # and a statement that takes it is checked there, never skipped
    raising = tuple(claim.domain) + tuple(t for t, divides in implicit if divides)
    if not raising:
        return Scope(claim)
    minimums = claim.minimums()
    defined, zero_at = dict(minimums), {}
    for axis, low in minimums.items():
        probe = {a: max(m, 3) for a, m in minimums.items()}
        for size in range(low, low + DEFINED_WITHIN):
            probe[axis] = size
            zero = _identically_zero(claim, raising, probe)
            if zero is None:
                defined[axis] = size
                break
            zero_at.setdefault(axis, (size, zero))
        else:
            defined[axis] = low   # undefined as far as we looked: the layers will say so
            zero_at.pop(axis, None)
    raised = {a: n for a, n in defined.items() if n > minimums[a]}
    if not raised:
        # defined from the stated sizes: checked as stated (a layer treats an undefined
        # instance as outside the domain in any case)
        return Scope(claim)
    changes = {"domain": tuple(claim.domain) + tuple(t for t in raising
                                                     if t not in claim.domain),
               "min_size": defined[claim.batch.size]}
    others = {a: n for a, n in raised.items() if a != claim.batch.size}
    if others:
        changes["min_sizes"] = tuple({**dict(claim.min_sizes), **others}.items())
    checked = replace(claim, **changes)
    one = len(minimums) == 1
    where = (f"N >= {defined[claim.batch.size]}" if one else
             ", ".join(f"{sp.sstr(a)} >= {n}" for a, n in defined.items()))
    reasons = []
    for axis in raised:
        size, zero = zero_at[axis]
        at = f"N = {size}" if one else f"{sp.sstr(axis)} = {size}"
        reasons.append(f"at {at}, {text(zero)} is identically 0")
    note = f"defined for {where}: " + "; ".join(reasons)
    return Scope(checked, dict(raised), note)


def _identically_zero(claim: Claim, terms, sizes):
    """The first of ``terms`` that is identically 0 at ``sizes`` (None when none is)."""
    try:
        batch, extent = _explicit_batch(claim, sizes)
    except Exception:  # noqa: BLE001 -- a size that cannot be written out decides nothing
        return None
    for term in terms:
        try:
            if any(batch.is_zero(value) for value in domain_values(batch, (term,), extent)):
                return term
        except Exception:  # noqa: BLE001 -- a term that cannot be decided is not 0
            continue
    return None


def check(claim: Claim, settings: Settings = Settings(), run_frameworks=None) -> Result:
    """Run every layer on ``claim`` and decide its verdict (``decide``).

    ``run_frameworks``: where the autograd layers run (``corroborating_layers``); the
    command line may hand them to a process that imported the frameworks meanwhile.

    With ``settings.timeout`` the whole check is bounded: each layer gets what is left, and a
    layer that gets nothing reports so -- the claim then ends *undecided*, never proved.  Time
    is measured with the thread's clock (``deadline.using_clock``); a budget enclosing the call
    bounds every layer's budget too.

    Every layer checks the statement where it is defined (``statement_scope``): a variance in
    a denominator is taken as > 0, and N starts where it is not identically 0.  The
    counterexample search goes beyond its usual sizes where the other layers and the residual
    point (``counterexample.further_sizes``).
    """
    t0 = time.perf_counter()
    clock = _deadline.current_clock()
    end = None if settings.timeout is None else clock() + settings.timeout
    parts: list[PartProof] = []
    original = claim
    scope = checked_scope(claim)
    claim = scope.claim

    def left(own: float) -> float:
        own = min(own, _deadline.remaining())
        return own if end is None else min(own, end - clock())

    def monotonic_deadline() -> float | None:
        """The deadline as a ``time.monotonic`` value, for the layers that take one."""
        rest = left(math.inf)
        return None if rest == math.inf else time.monotonic() + rest

    def symbolic_run():
        found, ev = symbolic_layer(claim, replace(settings, budget=left(settings.budget)))
        parts.extend(found)
        return ev

    def bounded(kind, run):
        if left(1.0) <= 0:
            return Evidence(kind, False, "not run: the time budget was spent", {}, holds=None)
        return _layer(kind, run)

    symbolic = bounded("symbolic", symbolic_run)
    explicit = bounded("explicit", lambda: explicit_layer(
        claim, replace(settings, explicit_budget=left(settings.explicit_budget))))
    # a failure is shrunk only where it is news: not once a layer before has seen one
    num = bounded("numeric", lambda: numeric_layer(claim, settings, monotonic_deadline(),
                                                   shrink=explicit.holds is not False))
    extra = corroborating_layers(claim, settings, monotonic_deadline(),
                                 shrink=explicit.holds is not False and num.holds is not False,
                                 run_frameworks=run_frameworks)
    hints = failure_hints(claim, [explicit, num] + extra)
    thin = _too_little(claim, settings, explicit, num)
    cex_ev = None
    if wants_counterexample(symbolic):
        residuals = trusted_residuals(parts)

        def search():
            with time_budget(left(60.0), "the counterexample search"):
                return _counterexample_layer(claim, settings, hints, residuals)
        cex_ev = bounded("counterexample", search)
    residual = next((p.residual for p in parts if not p.proved), None)
    searched = cex_ev.details.pop(SEARCHED, None) if cex_ev is not None else None
    verdict = decide(symbolic, explicit, num, extra, thin, cex_ev, residual,
                     min_size=claim.min_size, max_size=settings.counterexample_max_size,
                     searched=searched, minimums=claim.minimums(),
                     defined_from=scope.defined_from, note=scope.note)
    evidence = [symbolic, explicit, num] + extra
    if cex_ev is not None:
        found = cex_ev.details.pop("found", None)   # the verdict carries it
        if found is not None:
            evidence.append(cex_ev)
    # each layer agrees with the verdict when what it found points the same way
    for ev in evidence:
        ev.ok = ((verdict.status == PROVED and ev.holds is True)
                 or (verdict.status == REFUTED and ev.holds is False))
    return Result(original, verdict, parts, evidence, time.perf_counter() - t0)


def failure_hints(claim: Claim, evidence) -> list:
    """Where the layers saw the statement fail, as ({axis: size}, who saw it): the explicit
    layer's failing sizes, the numeric layer's failing instances (random and the one
    Hypothesis shrank), each framework's failing instance.  The counterexample search goes
    there (and below) when the usual sizes hold.  Takes the layers' private notes out of
    their details, so what is printed is unchanged."""
    axes = list(claim.minimums())
    out: list = []

    def add(sizes, who):
        if isinstance(sizes, dict):
            sizes = {a: sizes[a] for a in axes if a in sizes}
        elif isinstance(sizes, (list, tuple)):
            sizes = dict(zip(axes, sizes))
        else:
            sizes = {axes[0]: sizes}
        if all(isinstance(n, int) and n >= 1 for n in sizes.values()) and sizes:
            out.append((sizes, who))

    for ev in evidence:
        d = ev.details if isinstance(ev.details, dict) else {}
        private = d.pop(FAILING_SIZES, None)
        try:
            if ev.kind == "explicit":
                for n in d.get("fails_at") or ():
                    add(n, "the explicit layer")
            elif ev.kind == "numeric":
                for n in (private or ())[:3]:
                    add(n, "a random instance of the numeric layer")
                drawn = d.get("hypothesis") or {}
                shrunk = drawn.get("shrunk_failure") or drawn.get("first_failure")
                if shrunk:
                    add(_json_sizes(shrunk, axes), "the instance Hypothesis found")
            elif isinstance((d.get("failure") or {}).get("instance"), dict):
                add(_json_sizes(d["failure"]["instance"], axes), f"the {ev.kind} layer")
        except (TypeError, ValueError, KeyError, AttributeError):
            continue   # a note in another shape: no hint from it
    return out


def _json_sizes(instance: dict, axes) -> dict:
    """The sizes of an instance as ``numeric.instance_json`` writes it ("N", and any other
    axis by name)."""
    sizes = {axes[0]: instance["N"]}
    for a in axes[1:]:
        if isinstance(instance.get(sp.sstr(a)), int):
            sizes[a] = instance[sp.sstr(a)]
    for key, n in (instance.get("sizes") or {}).items():
        sizes.update({a: n for a in axes if key == a or key == sp.sstr(a)})
    return sizes


def trusted_residuals(parts) -> tuple:
    """The unproved parts' residuals, when every step that produced them passed its re-check
    (then each residual is 0 exactly where the part holds); else nothing."""
    unproved = [p for p in parts if not p.proved]
    if not unproved or any(not s.ok for p in unproved for s in p.lhs_steps + p.rhs_steps):
        return ()
    return tuple(p.residual for p in unproved)


def wants_counterexample(symbolic: Evidence) -> bool:
    """``decide`` needs the counterexample search exactly when there is no symbolic proof."""
    return not symbolic.holds


def decide(symbolic: Evidence, explicit: Evidence, numeric: Evidence,
           corroborating=(), thin: str = "", counterexample: Evidence | None = None,
           residual: sp.Expr | None = None, *, min_size: int = 1, max_size: int = 6,
           searched: str | None = None, minimums: dict | None = None,
           defined_from: dict | None = None, note: str = "") -> Verdict:
    """The verdict, from the evidence alone (pure: no layer is run, nothing is changed).

    ``symbolic``, ``explicit``, ``numeric``: the three core layers; ``corroborating``: the
    further layers (autograd, simulation); ``thin``: why the corroboration is too little to
    back a proof ('' when it is enough, ``_too_little``); ``counterexample``: the search's
    evidence (None when it did not run), with ``details["found"]`` the Counterexample and
    ``details["rechecked"]`` True only when the independent re-check confirmed it;
    ``residual``: the first unproved part's residual.  ``min_size``: the claim's smallest
    batch size; ``max_size``: how far the search went (``searched``: how far, in words, when
    it went beyond its usual sizes).  ``minimums``: {axis: smallest size}, for a claim over
    several axes.  ``defined_from``: {axis: size} where the statement only starts to be
    defined above the claim's own minimums, ``note`` why; both go into the verdict.

    * proved:    the symbolic proof holds, the explicit and numeric layers hold, no
                 corroborating layer contradicts it and the corroboration is not too thin;
    * refuted:   no symbolic proof, and a counterexample the independent re-check confirmed;
    * undecided: everything else, with the reason.
    """
    verdict = _decide(symbolic, explicit, numeric, corroborating, thin, counterexample,
                      residual, min_size, max_size, searched, minimums, note)
    if defined_from:
        verdict.defined_from = dict(defined_from)
    return verdict


def _decide(symbolic, explicit, numeric, corroborating, thin, counterexample, residual,
            min_size, max_size, searched, minimums, note) -> Verdict:
    several = minimums is not None and len(minimums) > 1
    also = f" ({note})" if note else ""
    core = symbolic.holds and explicit.holds and numeric.holds
    against = [e for e in corroborating if e.holds is False]
    if core and against:
        return Verdict.undecided(
            "the symbolic proof is contradicted: "
            + "; ".join(f"{e.kind}: {e.summary}" for e in against))
    if core and not thin:
        every = (", ".join(f"{sp.sstr(a)} >= {n}" for a, n in minimums.items()) if several
                 else f"N >= {min_size}")
        return Verdict.proved(f"proved for every {every}{also}")
    if core:
        return Verdict.undecided(f"the proof holds, but the independent checks are too thin "
                                 f"to corroborate it ({thin}); allow more time")
    if symbolic.holds:
        return Verdict.undecided(
            "the symbolic proof is not corroborated: "
            + "; ".join(f"{e.kind}: {e.summary}" for e in (explicit, numeric) if not e.holds))
    details = counterexample.details if counterexample is not None else {}
    cex = details.get("found")
    at = None
    if cex is not None:
        at = sizes_text(cex.sizes) if len(cex.sizes) > 1 else f"N = {cex.size}"
    if cex is not None and details.get("rechecked") is True:
        smallest = "sizes" if len(cex.sizes) > 1 else "batch size"
        return Verdict.refuted(cex, residual,
                               f"fails at {at} (smallest failing {smallest}"
                               + (f"; {note}" if note else "") + ")")
    if cex is not None:
        return Verdict.undecided(
            f"a counterexample at {at} was not confirmed by the independent "
            f"re-check: {details.get('recheck', 'no re-check')}", residual)
    if symbolic.holds is None or residual is None or residual == 0:
        return Verdict.undecided(symbolic.summary)
    return Verdict.undecided(
        f"the residual {text(residual)} does not reduce to 0 and no counterexample "
        f"was found {searched or f'up to N = {max_size}'}{also}", residual)


def framework_layers(claim: Claim, settings: Settings, deadline: float | None = None,
                     shrink: bool = True, elsewhere=None) -> list[Evidence]:
    """Autograd in each of ``settings.frameworks`` that is installed, for a claim the
    frameworks apply to (``corroborating_layers``); [] for any other.  ``elsewhere``: the
    frameworks another process evaluates (``frameworks.layers``)."""
    from . import frameworks
    elsewhere = elsewhere or {}
    names = [n for n in settings.frameworks if frameworks.applies(claim)
             and (n in elsewhere or frameworks.backend(n) is not None)]
    if not names:
        return []
    t0 = time.perf_counter()
    try:   # the same instances in every framework: drawing them is the cost
        return frameworks.layers(claim, names, settings, deadline, shrink=shrink,
                                 elsewhere=elsewhere)
    except Exception as err:  # noqa: BLE001 -- a layer that fails supports nothing
        return [_could_not_run(n, err, time.perf_counter() - t0) for n in names]


def corroborating_layers(claim: Claim, settings: Settings, deadline: float | None = None,
                         shrink: bool = True, run_frameworks=None) -> list[Evidence]:
    """Evidence beyond the three core layers, for the claims it applies to: autograd in each
    installed framework (``frameworks``, with the corroborations the claim attaches to a
    framework's layer), then each corroboration the claim declares as a layer of its own
    (``Claim.corroborations``: simulated training runs checked against the claim's closed
    form are kind "simulation", which ``settings.simulation`` switches off).  A layer that
    finds the claim failing makes a proof undecided; a layer that does not apply, or whose
    framework is absent, adds nothing.  ``shrink``: the frameworks shrink a failure (False
    once another layer has seen the statement fail: their first failure is then reported as
    drawn).  ``run_frameworks``: what computes ``framework_layers`` (the same arguments, the
    same evidence), by default this process."""
    out: list[Evidence] = []
    if settings.frameworks and (deadline is None or time.monotonic() < deadline):
        out += (run_frameworks or framework_layers)(claim, settings, deadline, shrink)
    for c in claim.corroborations:
        if c.attached or (c.kind == "simulation" and not settings.simulation):
            continue
        if deadline is None or time.monotonic() < deadline:
            out.append(_layer(c.kind, c.run, claim))
    return out


def _too_little(claim: Claim, settings: Settings, explicit: Evidence, num: Evidence) -> str:
    """Why the corroboration is too thin to back a proof ('' when it is enough)."""
    sizes = explicit_sizes(claim, settings)
    wanted = min(2, len(sizes))
    if len(explicit.details.get("holds_at", [])) < wanted:
        return f"the explicit layer reached fewer than {wanted} batch sizes"
    d = num.details
    count = d.get("random", {}).get("instances", 0) + d.get("hypothesis", {}).get("instances", 0)
    if count < min(50, settings.random_instances + settings.hypothesis_examples):
        return f"only {count} numeric instances"
    return ""


SEARCHED = "_searched"   # the search's private note of how far it went (not printed)


def _counterexample_layer(claim: Claim, settings: Settings, hints=(), residuals=()) -> Evidence:
    """The search, and the independent re-check of what it found (``recheck``): the
    evidence holds False (the claim fails) only when the re-check confirms the instance.
    ``hints`` and ``residuals`` take the search beyond its usual sizes
    (``counterexample.further_sizes``)."""
    t0 = time.perf_counter()
    log = counterexample.SearchLog()
    cex = counterexample.search(claim, settings.counterexample_max_size)
    if cex is None and (hints or residuals):
        checkpoint()
        cex = counterexample.search_beyond(claim, settings.counterexample_max_size,
                                           hints=hints, residuals=residuals, log=log)
    beyond = bool(log.beyond) or len(claim.axes) > 1
    if cex is None:
        how = (log.text(list(claim.minimums())) if beyond
               else f"up to N = {settings.counterexample_max_size}")
        details = {"searched_beyond": [[s[a] for a in claim.minimums()] for s, _ in log.beyond],
                   "why": [why for _, why in log.beyond]} if log.beyond else {}
        if beyond:
            details[SEARCHED] = how
        return Evidence("counterexample", False, f"none found {how}", details,
                        time.perf_counter() - t0, holds=None)
    checkpoint()
    ev = counterexample_evidence(claim, cex, time.perf_counter() - t0)
    why = next((w for s, w in log.beyond if s == cex.all_sizes(claim)), None)
    if why is not None:
        ev.summary += f" (searched there: {why})"
        ev.details["why"] = why
    return ev


def counterexample_evidence(claim: Claim, cex: Counterexample, seconds: float = 0.0) -> Evidence:
    """The evidence of a found counterexample, re-checked independently."""
    again = recheck.confirm(claim, cex)
    at = sizes_text(cex.sizes) if len(cex.sizes) > 1 else f"N = {cex.size}"
    if again.confirmed:
        summary = (f"{at}: residual {text(cex.residual)} (exact), "
                   f"re-checked independently")
    else:
        summary = (f"{at}: residual {text(cex.residual)}, not confirmed by the "
                   f"independent re-check ({again.reason})")
    details = {"N": cex.size, "residual": text(cex.residual),
               "rechecked": again.confirmed, "recheck": again.reason, "found": cex}
    if len(cex.sizes) > 1:
        details["sizes"] = {sp.sstr(a): n for a, n in cex.sizes.items()}
    return Evidence("counterexample", bool(again.confirmed), summary, details,
                    seconds, holds=False if again.confirmed else None)


def check_all(claims, settings: Settings = Settings(), progress=None) -> list[Result]:
    results = []
    for n, claim in enumerate(claims, 1):
        result = check(claim, settings)
        if progress:
            progress(n, len(claims), result)
        results.append(result)
    return results


__all__ = ["Settings", "check", "check_all", "decide", "prove_part", "explicit_holds",
           "time_budget"]
