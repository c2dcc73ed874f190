"""Check a claim: prove it symbolically, corroborate it independently, decide its verdict.

The verdict is decided here, in one place, from what the layers found:

* proved    only if every part's residual reduced to 0 under the rule table, every proof step
            passed its own re-check, and no independent layer found a failure;
* refuted   only with an exact counterexample (``counterexample.search``);
* undecided otherwise -- including when a proof and an independent layer disagree, which
            would mean a bug, and is reported as such rather than guessed around.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from dataclasses import dataclass, replace

import sympy as sp

from . import counterexample, numeric
from .calculus import BatchSum
from .core import (
    PROVED,
    REFUTED,
    Claim,
    DeriveError,
    Evidence,
    OutOfTime,
    PartProof,
    Result,
    Step,
    Verdict,
)
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


@contextlib.contextmanager
def time_budget(seconds: float | None, what: str):
    """Raise OutOfTime inside the block after ``seconds`` (main thread only; else no limit)."""
    if seconds is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    if seconds <= 0:
        raise OutOfTime(f"no time was left for {what}")

    def expire(signum, frame):
        raise OutOfTime(f"the time budget of {seconds:.2g} s ran out during {what}")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# -- symbolic ----------------------------------------------------------------------------------

def prove_part(claim: Claim, n: int) -> PartProof:
    eq = claim.equations[n]
    sums = eq.lhs.has(BatchSum) or eq.rhs.has(BatchSum)  # then both sides meet as sums
    lhs_steps, rhs_steps = reduce(eq.lhs, sums=sums), reduce(eq.rhs, sums=sums)
    lhs = lhs_steps[-1].after if lhs_steps else eq.lhs
    rhs = rhs_steps[-1].after if rhs_steps else eq.rhs
    residual = sp.factor(sp.cancel(sp.together(lhs - rhs))) if lhs != rhs else sp.S.Zero
    return PartProof(eq, lhs_steps, rhs_steps, residual)


def recheck_step(claim: Claim, step: Step, settings: Settings) -> None:
    """Re-check ``before = after`` on its own, with every sum written out.

    As an identity at the smallest batch sizes, and exactly at random rational points at
    larger ones; a step that fails or cannot be confirmed invalidates the proof.
    """
    indices = free_indices(step.before, step.after)
    identity, points = [], []
    for size in settings.step_identity_sizes + settings.step_point_sizes:
        if size < claim.min_size:
            continue
        batch = ExplicitBatch(size, claim.batch.size)
        values = [batch.eval(step.before, env) - batch.eval(step.after, env)
                  for env in index_assignments(indices, size)]
        if size in settings.step_identity_sizes:
            found = [batch.decide(v, points=2, seed=size) for v in values]
            ok = False not in found
            (identity if all(found) else points).append(size)
        else:
            ok = all(batch.zero_at_points(v, points=2, seed=size) for v in values)
            points.append(size)
        if not ok:
            step.ok = False
            step.checks = [f"fails at N = {size}"]
            return
    step.checks = ([f"identity at N = {', '.join(map(str, identity))}"] if identity else []) \
        + ([f"exact at random rational points at N = {', '.join(map(str, points))}"]
           if points else [])


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
    t0 = time.perf_counter()
    good, bad, unknown, stopped = [], [], [], None
    for n in explicit_sizes(claim, settings):
        remaining = settings.explicit_budget - (time.perf_counter() - t0)
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
                   f"{max(worst, h_worst):.1e}")
    else:
        found = ([f"fails on {len(failures)} of {count} random instances"] if failures else []) \
            + ([f"Hypothesis finds a failure and shrinks it to N = {h_fail.size}"]
               if h_fail else [])
        summary = "; ".join(found)
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
    """Run every layer on ``claim`` and decide its verdict.

    With ``settings.timeout`` the whole check is bounded: each layer gets what is left, and a
    layer that gets nothing reports so -- the claim then ends *undecided*, never proved.
    """
    t0 = time.perf_counter()
    deadline = None if settings.timeout is None else time.monotonic() + settings.timeout
    parts: list[PartProof] = []

    def left(own: float) -> float:
        return own if deadline is None else min(own, deadline - time.monotonic())

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
    num = bounded("numeric", lambda: numeric_layer(claim, settings, deadline))
    evidence = [symbolic, explicit, num]
    extra = corroborating_layers(claim, settings, deadline)
    evidence += extra
    against = [e for e in extra if e.holds is False]

    thin = _too_little(claim, settings, explicit, num)
    if symbolic.holds and explicit.holds and num.holds and against:
        verdict = Verdict.undecided(
            "the symbolic proof is contradicted: "
            + "; ".join(f"{e.kind}: {e.summary}" for e in against))
    elif symbolic.holds and explicit.holds and num.holds and not thin:
        verdict = Verdict.proved(f"proved for every N >= {claim.min_size}")
    elif symbolic.holds and explicit.holds and num.holds:
        verdict = Verdict.undecided(f"the proof holds, but the independent checks are too thin "
                                    f"to corroborate it ({thin}); allow more time")
    elif symbolic.holds:
        verdict = Verdict.undecided(
            "the symbolic proof is not corroborated: "
            + "; ".join(f"{e.kind}: {e.summary}" for e in (explicit, num) if not e.holds))
    else:
        def search():
            with time_budget(left(60.0), "the counterexample search"):
                return _counterexample_layer(claim, settings)
        cex_ev = bounded("counterexample", search)
        cex = cex_ev.details.pop("found", None)
        residual = next((p.residual for p in parts if not p.proved), None)
        if cex is not None:
            verdict = Verdict.refuted(cex, residual,
                                      f"fails at N = {cex.size} (smallest failing batch size)")
            evidence.append(cex_ev)
        elif symbolic.holds is None or residual is None or residual == 0:
            verdict = Verdict.undecided(symbolic.summary)
        else:
            verdict = Verdict.undecided(
                f"the residual {text(residual)} does not reduce to 0 and no counterexample "
                f"was found up to N = {settings.counterexample_max_size}", residual)
    # each layer agrees with the verdict when what it found points the same way
    for ev in evidence:
        ev.ok = ((verdict.status == PROVED and ev.holds is True)
                 or (verdict.status == REFUTED and ev.holds is False))
    return Result(claim, verdict, parts, evidence, time.perf_counter() - t0)


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
    t0 = time.perf_counter()
    cex = counterexample.search(claim, settings.counterexample_max_size)
    if cex is None:
        return Evidence("counterexample", False,
                        f"none found up to N = {settings.counterexample_max_size}", {},
                        time.perf_counter() - t0, holds=None)
    return Evidence("counterexample", True,
                    f"N = {cex.size}: residual {text(cex.residual)} (exact)",
                    {"N": cex.size, "residual": text(cex.residual), "found": cex},
                    time.perf_counter() - t0, holds=False)


def check_all(claims, settings: Settings = Settings(), progress=None) -> list[Result]:
    results = []
    for n, claim in enumerate(claims, 1):
        result = check(claim, settings)
        if progress:
            progress(n, len(claims), result)
        results.append(result)
    return results


__all__ = ["Settings", "check", "check_all", "prove_part", "explicit_holds"]
