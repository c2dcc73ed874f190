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

import functools
import math
import time
from dataclasses import dataclass, replace

import sympy as sp

from . import counterexample, deadline as _deadline, numeric, recheck
from .calculus import BatchSum
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
from .explicit import ExplicitBatch, free_indices, index_assignments
from .rules import reduce
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
    eq = claim.equations[n]
    sums = eq.lhs.has(BatchSum) or eq.rhs.has(BatchSum)  # then both sides meet as sums
    lhs_steps = reduce(eq.lhs, deadline=checkpoint, sums=sums)
    rhs_steps = reduce(eq.rhs, deadline=checkpoint, sums=sums)
    lhs = lhs_steps[-1].after if lhs_steps else eq.lhs
    rhs = rhs_steps[-1].after if rhs_steps else eq.rhs
    residual = sp.factor(sp.cancel(sp.together(lhs - rhs))) if lhs != rhs else sp.S.Zero
    return PartProof(eq, lhs_steps, rhs_steps, residual)


def recheck_step(claim: Claim, step: Step, settings: Settings) -> None:
    """Re-check ``before = after`` on its own, with every sum written out.

    As an identity at the smallest batch sizes, and exactly at random rational points at
    larger ones; a step that fails or cannot be confirmed invalidates the proof.
    """
    step.ok, checks = _recheck(step.before, step.after, claim.min_size, claim.batch.size,
                               settings.step_identity_sizes, settings.step_point_sizes)
    step.checks = list(checks)


@functools.lru_cache(maxsize=4096)
def _recheck(before, after, min_size, size_symbol, identity_sizes, point_sizes):
    """(ok, checks) of one step: a pure function of its arguments, so a step that recurs (one
    in six does, across the parts and claims of a report) is re-checked once.  A budget that
    runs out raises, and nothing is remembered."""
    indices = free_indices(before, after)
    identity, points = [], []
    for size in identity_sizes + point_sizes:
        if size < min_size:
            continue
        batch = ExplicitBatch(size, size_symbol)
        values = []
        for env in index_assignments(indices, size):
            checkpoint()
            values.append(batch.eval(before, env) - batch.eval(after, env))
        if size in identity_sizes:
            found = [_checked(batch.decide, v, points=2, seed=size) for v in values]
            ok = False not in found
            (identity if all(found) else points).append(size)
        else:
            ok = all(_checked(batch.zero_at_points, v, points=2, seed=size) for v in values)
            points.append(size)
        if not ok:
            return False, (f"fails at N = {size}",)
    return True, tuple(([f"identity at N = {', '.join(map(str, identity))}"] if identity else [])
                       + ([f"exact at random rational points at N = "
                           f"{', '.join(map(str, points))}"] if points else []))


def _checked(test, *args, **kwargs):
    """``test(*args)`` after a safe point (a budget that ran out stops before it)."""
    checkpoint()
    return test(*args, **kwargs)


def symbolic_layer(claim: Claim, settings: Settings):
    t0 = time.perf_counter()
    parts = []
    with time_budget(settings.budget, f"the symbolic proof of {claim.id}"):
        for n in range(len(claim.equations)):
            part = prove_part(claim, n)
            for step in part.lhs_steps + part.rhs_steps:
                recheck_step(claim, step, settings)
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

def explicit_holds(claim: Claim, size: int) -> bool | None:
    """Every part at this batch size, plain sums, no symbolic rules: True when each holds
    identically, False when one certainly fails, None when that cannot be told."""
    batch = ExplicitBatch(size, claim.batch.size)
    outcome: bool | None = True
    for eq in claim.equations:
        for env in index_assignments(free_indices(eq.lhs, eq.rhs), size):
            checkpoint()
            found = batch.decide(batch.eval(eq.lhs, env) - batch.eval(eq.rhs, env))
            if found is False:
                return False
            if found is None:
                outcome = None
    return outcome


def explicit_sizes(claim: Claim, settings: Settings) -> list[int]:
    """The explicit batch sizes a claim is checked at: from its minimum to its cap."""
    top = claim.explicit_up_to or max(settings.explicit_sizes, default=0)
    return [n for n in settings.explicit_sizes if claim.min_size <= n <= top]


def explicit_layer(claim: Claim, settings: Settings) -> Evidence:
    """Explicit batch sizes in increasing order, as many as the time budget allows."""
    t0, clock = time.perf_counter(), _deadline.current_clock()
    start = clock()
    good, bad, unknown, stopped = [], [], [], None
    for n in explicit_sizes(claim, settings):
        remaining = settings.explicit_budget - (clock() - start)
        try:
            with time_budget(max(remaining, 1e-3), f"the explicit check at N = {n}"):
                found = explicit_holds(claim, n)
        except OutOfTime:
            stopped = n
            break
        (good if found else bad if found is False else unknown).append(n)
    parts = [f"identity at N = {_ranges(good)}" if good else "",
             f"not an identity at N = {_ranges(bad)}" if bad else "",
             f"undecided at N = {_ranges(unknown)}" if unknown else "",
             f"N = {stopped} not reached within {settings.explicit_budget:g} s"
             if stopped else ""]
    summary = "; ".join(p for p in parts if p)
    holds = False if bad else (True if good and not unknown else None)
    return Evidence("explicit", bool(holds), summary,
                    {"holds_at": good, "fails_at": bad, "undecided_at": unknown,
                     "not_reached": stopped}, time.perf_counter() - t0, holds=holds)


def _ranges(ns):
    ns = sorted(ns)
    if len(ns) > 2 and ns == list(range(ns[0], ns[-1] + 1)):
        return f"{ns[0]}..{ns[-1]}"
    return ", ".join(map(str, ns))


# -- numeric -----------------------------------------------------------------------------------

def numeric_layer(claim: Claim, settings: Settings, deadline: float | None = None) -> Evidence:
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
    h_count, h_worst, h_fail = numeric.hypothesis_check(claim, settings.hypothesis_examples,
                                                        deadline=deadline)
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
        details["hypothesis"]["shrunk_failure"] = numeric.instance_json(h_fail)
        details["hypothesis"]["shrunk_error"] = numeric.instance_error(claim, h_fail, cache)
    failed = bool(failures) or h_fail is not None
    total = count + h_count
    if not failed:
        summary = (f"{total} instances ({count} random, {h_count} Hypothesis), max error "
                   f"{error_text(max(worst, h_worst))}")
    else:
        # the same totals as the log's row (random and Hypothesis together), so that every
        # count printed anywhere agrees
        bad = len(failures) + (h_fail is not None)
        summary = (f"fails on {bad} of {total} instances ({len(failures)} of {count} random"
                   + (f"; Hypothesis shrinks its failure to N = {h_fail.size}" if h_fail else
                      "") + ")")
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
    err = err if isinstance(err, DeriveError) else f"{type(err).__name__}: {err}"
    return Evidence(kind, False, f"could not run: {err}", {"error": str(err)}, seconds,
                    holds=None)


def check(claim: Claim, settings: Settings = Settings()) -> Result:
    """Run every layer on ``claim`` and decide its verdict (``decide``).

    With ``settings.timeout`` the whole check is bounded: each layer gets what is left, and a
    layer that gets nothing reports so -- the claim then ends *undecided*, never proved.  Time
    is measured with the thread's clock (``deadline.using_clock``); a budget enclosing the call
    bounds every layer's budget too.
    """
    t0 = time.perf_counter()
    clock = _deadline.current_clock()
    end = None if settings.timeout is None else clock() + settings.timeout
    parts: list[PartProof] = []

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
    num = bounded("numeric", lambda: numeric_layer(claim, settings, monotonic_deadline()))
    extra = corroborating_layers(claim, settings, monotonic_deadline())
    thin = _too_little(claim, settings, explicit, num)
    cex_ev = None
    if wants_counterexample(symbolic):
        def search():
            with time_budget(left(60.0), "the counterexample search"):
                return _counterexample_layer(claim, settings)
        cex_ev = bounded("counterexample", search)
    residual = next((p.residual for p in parts if not p.proved), None)
    verdict = decide(symbolic, explicit, num, extra, thin, cex_ev, residual,
                     min_size=claim.min_size, max_size=settings.counterexample_max_size)
    evidence = [symbolic, explicit, num] + extra
    if cex_ev is not None:
        found = cex_ev.details.pop("found", None)   # the verdict carries it
        if found is not None:
            evidence.append(cex_ev)
    # each layer agrees with the verdict when what it found points the same way
    for ev in evidence:
        ev.ok = ((verdict.status == PROVED and ev.holds is True)
                 or (verdict.status == REFUTED and ev.holds is False))
    return Result(claim, verdict, parts, evidence, time.perf_counter() - t0)


def wants_counterexample(symbolic: Evidence) -> bool:
    """``decide`` needs the counterexample search exactly when there is no symbolic proof."""
    return not symbolic.holds


def decide(symbolic: Evidence, explicit: Evidence, numeric: Evidence,
           corroborating=(), thin: str = "", counterexample: Evidence | None = None,
           residual: sp.Expr | None = None, *, min_size: int = 1, max_size: int = 6) -> Verdict:
    """The verdict, from the evidence alone (pure: no layer is run, nothing is changed).

    ``symbolic``, ``explicit``, ``numeric``: the three core layers; ``corroborating``: the
    further layers (autograd, simulation); ``thin``: why the corroboration is too little to
    back a proof ('' when it is enough, ``_too_little``); ``counterexample``: the search's
    evidence (None when it did not run), with ``details["found"]`` the Counterexample and
    ``details["rechecked"]`` True only when the independent re-check confirmed it;
    ``residual``: the first unproved part's residual.  ``min_size``: the claim's smallest
    batch size; ``max_size``: how far the search went.

    * proved:    the symbolic proof holds, the explicit and numeric layers hold, no
                 corroborating layer contradicts it and the corroboration is not too thin;
    * refuted:   no symbolic proof, and a counterexample the independent re-check confirmed;
    * undecided: everything else, with the reason.
    """
    core = symbolic.holds and explicit.holds and numeric.holds
    against = [e for e in corroborating if e.holds is False]
    if core and against:
        return Verdict.undecided(
            "the symbolic proof is contradicted: "
            + "; ".join(f"{e.kind}: {e.summary}" for e in against))
    if core and not thin:
        return Verdict.proved(f"proved for every N >= {min_size}")
    if core:
        return Verdict.undecided(f"the proof holds, but the independent checks are too thin "
                                 f"to corroborate it ({thin}); allow more time")
    if symbolic.holds:
        return Verdict.undecided(
            "the symbolic proof is not corroborated: "
            + "; ".join(f"{e.kind}: {e.summary}" for e in (explicit, numeric) if not e.holds))
    details = counterexample.details if counterexample is not None else {}
    cex = details.get("found")
    if cex is not None and details.get("rechecked") is True:
        return Verdict.refuted(cex, residual,
                               f"fails at N = {cex.size} (smallest failing batch size)")
    if cex is not None:
        return Verdict.undecided(
            f"a counterexample at N = {cex.size} was not confirmed by the independent "
            f"re-check: {details.get('recheck', 'no re-check')}", residual)
    if symbolic.holds is None or residual is None or residual == 0:
        return Verdict.undecided(symbolic.summary)
    return Verdict.undecided(
        f"the residual {text(residual)} does not reduce to 0 and no counterexample "
        f"was found up to N = {max_size}", residual)


def corroborating_layers(claim: Claim, settings: Settings,
                         deadline: float | None = None) -> list[Evidence]:
    """Evidence beyond the three core layers, for the claims it applies to: autograd in each
    installed framework (``frameworks``), and simulated training runs checked against the
    claim's closed form (``simulation``).  A layer that finds the claim failing makes a proof
    undecided; a layer that does not apply, or whose framework is absent, adds nothing."""
    out: list[Evidence] = []
    if settings.frameworks and (deadline is None or time.monotonic() < deadline):
        from . import frameworks
        names = [n for n in settings.frameworks
                 if frameworks.applies(claim) and frameworks.backend(n) is not None]
        if names:
            t0 = time.perf_counter()
            try:   # the same instances in every framework: drawing them is the cost
                out += frameworks.layers(claim, names, settings, deadline)
            except Exception as err:  # noqa: BLE001 -- a layer that fails supports nothing
                out += [_could_not_run(n, err, time.perf_counter() - t0) for n in names]
    if settings.simulation and (deadline is None or time.monotonic() < deadline):
        from . import simulation
        if simulation.applies(claim):
            out.append(_layer("simulation", simulation.layer, claim))
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


def _counterexample_layer(claim: Claim, settings: Settings) -> Evidence:
    """The search, and the independent re-check of what it found (``recheck``): the
    evidence holds False (the claim fails) only when the re-check confirms the instance."""
    t0 = time.perf_counter()
    cex = counterexample.search(claim, settings.counterexample_max_size)
    if cex is None:
        return Evidence("counterexample", False,
                        f"none found up to N = {settings.counterexample_max_size}", {},
                        time.perf_counter() - t0, holds=None)
    checkpoint()
    return counterexample_evidence(claim, cex, time.perf_counter() - t0)


def counterexample_evidence(claim: Claim, cex: Counterexample, seconds: float = 0.0) -> Evidence:
    """The evidence of a found counterexample, re-checked independently."""
    again = recheck.confirm(claim, cex)
    if again.confirmed:
        summary = (f"N = {cex.size}: residual {text(cex.residual)} (exact), "
                   f"re-checked independently")
    else:
        summary = (f"N = {cex.size}: residual {text(cex.residual)}, not confirmed by the "
                   f"independent re-check ({again.reason})")
    return Evidence("counterexample", bool(again.confirmed), summary,
                    {"N": cex.size, "residual": text(cex.residual),
                     "rechecked": again.confirmed, "recheck": again.reason, "found": cex},
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
