"""Evidence from real autograd: every gradient claim, computed in PyTorch and in JAX.

For a claim with a derivative in it, both sides of each equation are built as a float64
computation in the framework (``program``): the derivative by the framework's reverse-mode
autograd with every held statistic detached, the formula side evaluated as written.  Where
the computation contains a batch standardization, it is computed a second time by the
framework's own batch-norm operator in training mode, so that the formula is also held
against code this project did not write.  Inputs are drawn by Hypothesis (batch sizes from
the claim's minimum to 64, bounded finite values, epsilon over the claim's range, 0 included
where the claim allows it); a mismatch shrinks to a small failing input, reported with both
values side by side.  A claim over several axes (x[n, c]) draws a size for each axis, from
its smallest (``claim.minimums()``) to ``AXIS_MAX``, with at most ``AXES_BUDGET`` entries in
a tensor along all of them; its failures name every axis's size.

A claim that names its operator (``Claim.operator``: batch_norm, layer_norm, instance_norm,
group_norm, rms_norm, weight_norm) has every normalization of that operator's form computed
by that operator, and is checked even without a derivative: its first comparison is then
the formula evaluated in the framework ("formula" where a gradient claim says "autograd").
Such a claim also holds each side computed by the operator against the same side computed
by the formula ("vs_formula"): the framework's own operator agrees with the verified
formula, forward and, through a derivative, backward.  (Two sides computed by one faulty
operator can agree with each other; only the formula shows the fault.)

The frameworks are optional: a framework that is not installed adds no evidence (the
certificate's ``libraries`` says so), and importing one is paid once per run.
"""

from __future__ import annotations

import math
import pickle
import time

import numpy as np
import sympy as sp

from .. import numeric
from ..axes import layout
from ..calculus import Grad, Held
from ..core import Claim, Evidence, error_text, shown_pair
from ..corroboration import attached_to
from ..explicit import free_indices
from .backends import PADDED_WIDTH, OperatorUndefined, backend
from .program import Program, recognized, standardization

FRAMEWORKS = ("torch", "jax")
MAX_SIZE = PADDED_WIDTH
# |left - right| / (1 + max(|left|, |right|)), per dtype.  Autograd and the formula round
# differently, and 1/s^3 grows as a variance approaches the domain's edge.
TOLERANCE = {"float64": 1e-8}
# a claim over several axes: each axis's size up to AXIS_MAX (or its smallest, if larger), at
# most AXES_BUDGET entries in all; JAX pads every axis to its largest size (8 x 8 arrays, not
# 64 x 64: the Jacobian of a derivative by x[n, c] has width^4 entries, a second one width^6)
AXIS_MAX = 8
AXES_BUDGET = numeric.MAX_ENTRIES
INSTALL = {"torch": "pip install 'derive[torch]' (CPU build: pip install torch "
                    "--index-url https://download.pytorch.org/whl/cpu)",
           "jax": "pip install 'derive[jax]'"}

__all__ = ["FRAMEWORKS", "applies", "backend", "first_comparison", "layer", "layers",
           "standardization"]


def _holds_statistics(claim: Claim) -> bool:
    return any(side.has(Held) for eq in claim.equations for side in (eq.lhs, eq.rhs))


def _has_grad(claim: Claim) -> bool:
    return any(side.has(Grad) for eq in claim.equations for side in (eq.lhs, eq.rhs))


def applies(claim: Claim) -> bool:
    """A gradient claim (one with a derivative in some equation), or a claim whose
    normalizations the frameworks compute by the operator it names (``Claim.operator``):
    a claim without a derivative is checked when some side has one of that form."""
    if _has_grad(claim):
        return True
    return claim.operator is not None and any(
        recognized(side, claim.operator) for eq in claim.equations for side in (eq.lhs, eq.rhs))


def first_comparison(claim: Claim) -> str:
    """What the first comparison computes: "autograd" (both sides as written, derivatives
    by autograd), or "formula" for a claim checked for its operator alone (no derivative)."""
    return "formula" if claim.operator is not None and not _has_grad(claim) else "autograd"


def _side_pairs(operator, formula):
    """[operator's side 0, formula's side 0, operator's side 1, ...]: each side's two
    evaluations laid out as the two sides of an equation (``_pairs`` compares them)."""
    return [v for pair in zip(operator, formula) for v in pair]


def _several_axes(claim: Claim) -> bool:
    return len(claim.axes) > 1


def axis_limits(claim: Claim) -> dict:
    """{axis: (smallest, largest size drawn)} for a claim over several axes: each axis from
    its smallest size to AXIS_MAX, so that the others at their smallest leave at most
    AXES_BUDGET entries (never below the axis's own smallest)."""
    mins = claim.minimums()
    out = {}
    for a, lo in mins.items():
        others = math.prod(n for b, n in mins.items() if b != a)
        out[a] = (lo, max(lo, min(AXIS_MAX, AXES_BUDGET // others)))
    return out


class _Compiled:
    """A claim compiled for one backend and one choice of its arbitrary functions."""

    def __init__(self, claim: Claim, xp, choice: dict):
        self.indices = []
        self.free_axes = []   # per equation, the axis of each free index (array order)
        formula, operator = [], []
        # the claim's operator, or (none named) standardizations by batch_norm
        operators = claim.operator or True
        for eq in claim.equations:
            indices = sorted(free_indices(eq.lhs, eq.rhs), key=lambda s: s.name)
            sides = [numeric.instantiate(side, choice) for side in (eq.lhs, eq.rhs)]
            formula += [Program(side, indices, claim.batch.size, xp) for side in sides]
            operator += [Program(side, indices, claim.batch.size, xp, operators=operators)
                         for side in sides]
            self.indices.append(len(indices))
            self.free_axes.append([s.axis for s in indices])
        has_operator = any(p.operator_nodes for p in operator)
        # a named operator is also held against the formula, side by side
        self.vs_formula = has_operator and claim.operator is not None
        self.several = _several_axes(claim)
        if self.several:
            self._build_axes(claim, xp, choice, formula, operator if has_operator else [])
            return
        if has_operator and xp.compiles:
            # one compiled function for both comparisons: compiling is what costs
            both = xp.runner(formula + operator)
            half = len(formula)
            self.formula = lambda *a: both(*a)[:half]
            self.operator = lambda *a: both(*a)[half:]
        else:
            self.formula = xp.runner(formula)
            # the operator stands in where the computation has a standardization
            self.operator = xp.runner(operator) if has_operator else None
        self.domain = [numeric.Compiled(numeric.instantiate(d, choice), [], claim.batch.size)
                       for d in claim.domain]

    def _build_axes(self, claim, xp, choice, formula, operator):
        """Every program of a claim over several axes in one runner: the formula's sides,
        the operator's (if any) and the domain's expressions, evaluated by the framework too
        (a domain expression may have free indices: a variance per channel > 0)."""
        domain, self.domain_axes = [], []
        for d in claim.domain:
            indices = sorted(free_indices(d), key=lambda s: s.name)
            domain.append(Program(numeric.instantiate(d, choice), indices, claim.batch.size, xp))
            self.domain_axes.append([s.axis for s in indices])
        widths = {a: hi for a, (lo, hi) in axis_limits(claim).items()}
        sides = [side for eq in claim.equations for side in (eq.lhs, eq.rhs)]
        axes = {"widths": widths, "layout": layout(*sides, *claim.domain)}
        self.formula = self.operator = None
        self.has_operator = bool(operator)
        if xp.compiles:   # one compiled function for everything: compiling is what costs
            run = xp.runner(formula + domain + operator, **axes)
            first, others = (run, None)
        else:             # the operator may refuse an instance (one sample, epsilon = 0)
            first = xp.runner(formula + domain, **axes)
            others = xp.runner(operator, **axes) if operator else None
        split = len(formula)

        def evaluate(size, samples, params, sizes):
            """(formula's values, operator's or None where it refuses, domain's)."""
            values = first(size, samples, params, sizes)
            if others is not None:
                try:
                    values = values + others(size, samples, params, sizes)
                except OperatorUndefined:
                    values = values + [None] * len(operator)
            used = values[split + len(domain):]
            refused = any(v is None for v in used)   # (``in`` would compare arrays)
            return (values[:split], None if refused else used,
                    values[split:split + len(domain)])
        self.evaluate = evaluate


def _pairs(values, free_counts, size):
    """(left, right) arrays per equation, restricted to the real samples."""
    out = []
    for n, count in enumerate(free_counts):
        left, right = (np.asarray(v, dtype=float) for v in values[2 * n: 2 * n + 2])
        left, right = np.broadcast_arrays(left, right)
        cut = tuple(slice(0, size) for _ in range(min(count, left.ndim)))
        out.append((left[cut], right[cut]))
    return out


def _pairs_axes(values, free_axes, sizes):
    """(left, right) arrays per equation, each free index's array axis cut to its own axis's
    real size (a claim over several axes)."""
    out = []
    for n, axes in enumerate(free_axes):
        left, right = (np.asarray(v, dtype=float) for v in values[2 * n: 2 * n + 2])
        left, right = np.broadcast_arrays(left, right)
        cut = tuple(slice(0, sizes[a]) for a in axes[:left.ndim])
        out.append((left[cut], right[cut]))
    return out


TIE = 1e-6   # errors this close (relatively) are the same error, up to round-off


def _error(pairs):
    """(worst scaled error, left, right at the entry shown); NaN when no entry is defined.

    The entry shown is the first, in order, whose error is the worst up to round-off
    (``TIE``): entries that are equally wrong in exact arithmetic (LayerNorm over two
    channels gives +g and -g) must not be told apart by a last bit, which differs from one
    machine's numerics to another's, and would print another value in the report."""
    errors = []
    for left, right in pairs:
        defined = np.isfinite(left) & np.isfinite(right)
        if defined.any():
            errors.append((left, right, np.where(defined, numeric.scaled_error(left, right),
                                                 -1.0)))
    if not errors:
        return math.nan, math.nan, math.nan
    worst = max(float(err.max()) for _, _, err in errors)
    for left, right, err in errors:
        near = np.flatnonzero(err.ravel() >= worst * (1 - TIE))
        if near.size:
            k = np.unravel_index(int(near[0]), err.shape)
            return worst, float(left[k]), float(right[k])
    raise AssertionError("the worst error is some entry's")


class _Run:
    """The instances of one claim in one framework: the error of each, and the worst."""

    def __init__(self, claim: Claim, xp, prepared=None):
        self.claim, self.xp = claim, xp
        self.cache: dict = {}
        # programs compiled before the run (``prepare``), each taken when first used, so
        # that ``cache`` holds only what this run's instances used
        self.prepared = dict(prepared or {})
        self.tolerance = TOLERANCE[xp.dtype]
        self.formula = {"instances": 0, "max_error": 0.0}
        self.operator = {"instances": 0, "max_error": 0.0, "undefined": 0}
        self.vs_formula = {"instances": 0, "max_error": 0.0}
        self.first = first_comparison(claim)   # "autograd" or "formula"
        self.stats = {self.first: self.formula, "operator": self.operator,
                      "vs_formula": self.vs_formula}
        self.first_failure: numeric.Instance | None = None
        self.seconds = 0.0   # spent evaluating in this framework

    def compiled(self, choice) -> _Compiled:
        key = tuple(sorted((str(f), str(lam)) for f, lam in choice.items()))
        if key not in self.cache:
            found = self.prepared.pop(key, None)
            self.cache[key] = (found if found is not None
                               else _Compiled(self.claim, self.xp, choice))
        return self.cache[key]

    def compare(self, inst: numeric.Instance):
        """[(comparison, error, left, right)] for one instance; [] outside the domain."""
        c = self.compiled(inst.choice)
        if c.several:
            return self._compare_axes(c, inst)
        samples = {b: np.asarray(v, dtype=float) for b, v in inst.samples.items()}
        ctx = numeric.Context(inst.size, samples, inst.params)
        with np.errstate(all="ignore"):
            if not all(np.all(np.real(d(ctx)) > numeric.DOMAIN_MARGIN) for d in c.domain):
                return []
        found = []
        formula = c.formula(inst.size, samples, inst.params)
        err = _error(_pairs(formula, c.indices, inst.size))
        if math.isnan(err[0]):
            return []
        found.append((self.first, *err))
        if c.operator is not None:
            try:
                operator = c.operator(inst.size, samples, inst.params)
                err = _error(_pairs(operator, c.indices, inst.size))
            except OperatorUndefined:
                operator = err = None
            if err is not None and not math.isnan(err[0]):
                found.append(("operator", *err))
                if c.vs_formula:
                    counts = [n for n in c.indices for _ in (0, 1)]   # each side's indices
                    found += self._vs_formula(
                        _pairs(_side_pairs(operator, formula), counts, inst.size))
            else:
                self.operator["undefined"] += 1
        return found

    @staticmethod
    def _vs_formula(pairs):
        """[("vs_formula", error, operator's value, formula's)], or [] where no entry of
        any side is defined."""
        err = _error(pairs)
        return [] if math.isnan(err[0]) else [("vs_formula", *err)]

    def _compare_axes(self, c: _Compiled, inst):
        sizes = inst.all_sizes(self.claim)
        samples = {b: np.asarray(v, dtype=float) for b, v in inst.samples.items()}
        formula, operator, domain = c.evaluate(inst.size, samples, inst.params, sizes)
        with np.errstate(all="ignore"):
            for value, axes in zip(domain, c.domain_axes):
                value = np.asarray(np.real(value), dtype=float)
                value = value[tuple(slice(0, sizes[a]) for a in axes[:value.ndim])]
                if not np.all(value > numeric.DOMAIN_MARGIN):
                    return []
        found = []
        err = _error(_pairs_axes(formula, c.free_axes, sizes))
        if math.isnan(err[0]):
            return []
        found.append((self.first, *err))
        if c.has_operator:
            err = None if operator is None else _error(_pairs_axes(operator, c.free_axes,
                                                                   sizes))
            if err is not None and not math.isnan(err[0]):
                found.append(("operator", *err))
                if c.vs_formula:
                    axes = [a for a in c.free_axes for _ in (0, 1)]   # each side's axes
                    found += self._vs_formula(
                        _pairs_axes(_side_pairs(operator, formula), axes, sizes))
            else:
                self.operator["undefined"] += 1
        return found

    def ask(self, inst: numeric.Instance):
        """``error(inst)``, as a callable that gives it: evaluated when called (a run in
        another process, ``_Elsewhere``, starts at once and answers then)."""
        return lambda: self.error(inst)

    def evidence(self, count: int, shrunk, seconds: float) -> Evidence:
        return _evidence(self.claim, self, count, shrunk, seconds)

    def error(self, inst: numeric.Instance) -> float:
        """The instance's worst error over both comparisons (NaN outside the domain)."""
        t0 = time.perf_counter()
        found = self.compare(inst)
        self.seconds += time.perf_counter() - t0
        if not found:
            return math.nan
        for kind, err, _, _ in found:
            stats = self.stats[kind]
            stats["instances"] += 1
            if err <= self.tolerance:
                stats["max_error"] = max(stats["max_error"], err)
        worst = max(err for _, err, _, _ in found)
        if worst > self.tolerance and self.first_failure is None:
            self.first_failure = inst
        return worst


def layers(claim: Claim, names, settings, deadline: float | None = None,
           shrink: bool = True, elsewhere=None) -> list[Evidence]:
    """Each named framework's evidence for a gradient claim, on the same instances.

    One Hypothesis run draws every instance once and evaluates it in each framework (drawing
    a batch of 64 costs more than evaluating it); an instance fails when any framework's
    comparison fails, and Hypothesis shrinks it for all of them -- unless ``shrink`` is
    False (another layer has already seen the statement fail), when the first failure is
    reported as drawn.

    ``elsewhere``: {name: connection} for frameworks evaluated in another process (``serve``
    at the other end), each instance there while this process evaluates it in the others.
    The evidence is the same as from evaluating them here; a process that is gone raises
    ``PeerLost``.
    """
    t0 = time.perf_counter()
    elsewhere = elsewhere or {}
    runs = [_Elsewhere(elsewhere[name], claim, name) if name in elsewhere
            else _Run(claim, backend(name)) for name in names]
    tolerance = min(r.tolerance for r in runs)

    def error(inst):
        # every framework answers every instance, even after one has raised: those elsewhere
        # were asked at once, and an answer left unread would be taken for the next
        # instance's.  The first exception, in the frameworks' order, is raised once all
        # have answered, from here and without its traceback or context: Hypothesis tells
        # failures apart by where they were raised, which must not depend on where a
        # framework ran.
        answers = [r.ask(inst) for r in runs]   # those elsewhere start now
        found, raised = [], None
        for answer in answers:
            try:
                value = answer()
            except Exception as err:  # noqa: BLE001 -- raised below, once all have answered
                raised = raised or err
                continue
            if not math.isnan(value):
                found.append(value)
        if raised is not None:
            raised.__context__ = raised.__cause__ = None
            raise raised.with_traceback(None)
        return max(found) if found else math.nan

    # numeric's driver: over several axes each size stays within AXIS_MAX and the product
    # within numeric.MAX_ENTRIES, so every draw fits JAX's padded widths (axis_limits)
    count, _, failure = numeric.hypothesis_check(
        claim, settings.framework_examples,
        max_size=AXIS_MAX if _several_axes(claim) else MAX_SIZE, deadline=deadline,
        error=error, tolerance=tolerance, shrink_steps=numeric.SHRINK_STEPS if shrink else 0)
    if not shrink:
        failure = None   # as drawn: each framework reports its own first failure
    # the time no framework accounts for (drawing), shared; frameworks elsewhere overlap
    shared = max(0.0, time.perf_counter() - t0 - sum(r.seconds for r in runs)) / len(runs)
    return [r.evidence(count, failure, r.seconds + shared) for r in runs]


class PeerLost(BaseException):
    """The process evaluating a framework (``layers``'s ``elsewhere``) is gone or could not
    start it: its layer cannot be finished as it would have been.  A BaseException, so
    that neither Hypothesis (which would shrink it as a failure) nor a layer's own error
    handling (which would report the layer as not run) takes it for the framework's."""


class _Elsewhere:
    """A ``_Run`` in another process (``serve``), through a connection: the same questions,
    answered there."""

    def __init__(self, connection, claim: Claim, name: str):
        self.connection, self.seconds = connection, 0.0
        self.tolerance = self._call("start", claim, name)

    def _send(self, *message):
        try:   # (a message that does not pickle fails before any of it is written)
            self.connection.send(message)
        except Exception as err:  # noqa: BLE001 -- a claim that does not travel: run here
            raise PeerLost(f"the {message[0]!r} message was not sent: {err}") from None

    def _receive(self):
        try:
            kind, value = self.connection.recv()
        except Exception as err:  # noqa: BLE001 -- gone, or an answer that does not unpickle
            raise PeerLost(f"no answer: {err or 'the process ended'}") from None
        if kind == "raise":
            raise value   # the framework's own error, as it would have been raised here
        if kind == "lost":
            raise PeerLost(value)
        return value

    def _call(self, *message):
        self._send(*message)
        return self._receive()

    def ask(self, inst):
        self._send("error", inst)

        def answer():
            value, self.seconds = self._receive()
            return value
        return answer

    def evidence(self, count: int, shrunk, seconds: float) -> Evidence:
        return self._call("evidence", count, shrunk, seconds)


def prepare(claim: Claim, name: str, tries: int = 5):
    """(claim's canonical form, programs): ``claim``'s programs in framework ``name``,
    compiled and run once on seeded random instances, for a run of the same claim to take
    (``_Run``'s ``prepared``; ``serve`` hands them over only to a claim of the same
    canonical form, every field of it).  Nothing is counted: a process that has the claim
    before its instances come compiles meanwhile.  A failure here prepares nothing; the run
    meets it again."""
    run = None
    try:
        run = _Run(claim, backend(name))
        for inst in numeric.random_instances(claim, tries):
            if run.compare(inst):
                break
    except Exception:  # noqa: BLE001 -- the run itself raises it, where it counts
        pass
    return _canonical(claim), (run.cache if run is not None else {})


def _canonical(claim: Claim) -> str | None:
    """The claim's canonical form (the cache's), or None where it has none."""
    from ..cache import claim_material
    try:
        return claim_material(claim)[0]
    except Exception:  # noqa: BLE001 -- Uncacheable: no form to tell it by
        return None


def _prepared_for(claim: Claim, prepared) -> dict | None:
    """``prepare``'s programs if they were compiled for ``claim``: the same canonical form
    (a claim as ``check`` scopes it can differ from the claim as stated in its domain and
    sizes, and a program checks its claim's domain)."""
    if prepared is None:
        return None
    form = _canonical(claim)
    return prepared[1] if form is not None and form == prepared[0] else None


def _travels(err: Exception) -> bool:
    """Whether ``err`` arrives at the other end as itself: its type and its message."""
    try:
        copy = pickle.loads(pickle.dumps(err))
    except Exception:  # noqa: BLE001
        return False
    return type(copy) is type(err) and str(copy) == str(err)


def serve(connection, prepared=None) -> None:
    """Answer ``_Elsewhere``'s questions with a ``_Run`` of this process until the
    connection closes: "start" (claim, framework name) makes the run and gives its
    tolerance, "error" (instance) its error and the run's seconds so far, "evidence"
    (count, shrunk instance, seconds) its evidence.  An exception of the framework's is sent
    back to be raised there; one that does not travel ends the run ("lost").
    ``prepared``: ``prepare``'s programs, taken by the first run of that claim."""
    run = None
    while True:
        try:
            kind, *args = connection.recv()
        except (EOFError, OSError):
            return
        try:
            if kind == "start":
                claim, name = args
                xp = backend(name)
                if xp is None:
                    connection.send(("lost", f"{name} is not installed there"))
                    continue
                run = _Run(claim, xp, _prepared_for(claim, prepared))
                prepared = None   # for the first run only
                value = run.tolerance
            elif kind == "error":
                value = (run.error(args[0]), run.seconds)
            else:   # "evidence"
                value = run.evidence(*args)
            reply = ("ok", value)
        except Exception as err:  # noqa: BLE001 -- the framework's: raised at the other end
            # as itself, or not at all: then the layers run there instead
            reply = (("raise", err) if _travels(err)
                     else ("lost", f"{type(err).__name__} does not travel: {err}"))
        try:
            connection.send(reply)
        except (OSError, EOFError):
            return
        except Exception as err:  # noqa: BLE001 -- an answer that does not pickle
            connection.send(("lost", f"an answer to {kind!r} did not travel: {err}"))


def layer(claim: Claim, name: str, settings, deadline: float | None = None) -> Evidence:
    """The ``name`` framework's evidence for a gradient claim."""
    return layers(claim, (name,), settings, deadline)[0]


def _evidence(claim, run: _Run, count: int, shrunk, seconds: float) -> Evidence:
    xp, name = run.xp, run.xp.name
    t0 = time.perf_counter()
    any_operator = any(c.operator is not None or getattr(c, "has_operator", False)
                       for c in run.cache.values())
    several = _several_axes(claim)
    limits = axis_limits(claim) if several else {}
    first, operator_name = run.first, xp.operator_name(claim.operator)
    details = {
        "framework": name, "version": xp.version, "dtype": xp.dtype,
        "tolerance": run.tolerance,
        "sizes": list(limits[claim.batch.size]) if several else [claim.min_size, MAX_SIZE],
        "instances": count, "max_error": run.formula["max_error"],
        "checks": f"{count} instances", "failures": int(run.first_failure is not None),
        "error": "|left - right| / (1 + max(|left|, |right|))",
        first: {"instances": run.formula["instances"],
                "max_error": run.formula["max_error"],
                "held_statistics": (("detach()" if name == "torch" else "stop_gradient")
                                    if _holds_statistics(claim) else None)},
    }
    if several:
        details["axes"] = {sp.sstr(a): list(r) for a, r in limits.items()}
        details["entries"] = AXES_BUDGET
    checks_operator = any_operator and claim.operator is not None
    if any_operator:
        details["operator"] = {"name": operator_name, "instances": run.operator["instances"],
                               "max_error": run.operator["max_error"],
                               "not_defined": run.operator["undefined"]}
        details["max_error"] = max(run.formula["max_error"], run.operator["max_error"])
    if checks_operator:   # each side by the operator against the same side by the formula
        details["operator"]["vs_formula"] = dict(run.vs_formula)
        details["max_error"] = max(details["max_error"], run.vs_formula["max_error"])
    # the claim's own checks in this framework (a kernel built from the formula, an
    # implementation against the framework's), each under its key, in the claim's order
    attached = attached_to(claim, name)
    for c in attached:
        details[c.key] = c.run(claim)

    def done(summary, holds):
        return Evidence(name, False, summary, details, seconds + time.perf_counter() - t0,
                        holds=holds)

    for c in attached:
        if not details[c.key]["passed"]:
            return done(c.failure_text(details[c.key]), False)
    if count == 0:
        return done("not run: no instance in the claim's domain was drawn", None)
    if run.first_failure is None:
        ranges = (", ".join(f"{sp.sstr(a)} = {lo}..{hi}" for a, (lo, hi) in limits.items())
                  + f" (at most {AXES_BUDGET} entries)" if several
                  else f"N = {claim.min_size}..{MAX_SIZE}")
        summary = (f"{run.formula['instances']} Hypothesis instances, {ranges}, float64: "
                   f"{first} max error {error_text(run.formula['max_error'])}")
        if any_operator:
            undefined = run.operator["undefined"]
            summary += (f", {operator_name} max error "
                        f"{error_text(run.operator['max_error'])} "
                        f"({run.operator['instances']} instances"
                        + (f"; it refuses the other {undefined}, "
                           f"{xp.refusal(claim.operator)}" if undefined else "")
                        + (f"; against the formula, side by side, max error "
                           f"{error_text(run.vs_formula['max_error'])}"
                           if checks_operator else "") + ")")
        summary += f"; tolerance {run.tolerance:.0e}"
        summary += "".join(c.note(details[c.key]) for c in attached if c.note is not None)
        return done(summary, True)
    # the shrunk instance, if it fails here too; else the first instance that failed here
    found = run.compare(shrunk) if shrunk is not None else []
    how = "shrunk by Hypothesis"
    if not found or max(f[1] for f in found) <= run.tolerance:
        shrunk, how = run.first_failure, "as drawn"
        found = run.compare(shrunk)
    # the first failing comparison in a fixed order (the formula's, the operator's, the
    # operator against the formula), not the largest error: two comparisons often fail by the
    # same amount, and which of them is larger in the last bits varies between machines
    failing = [f for f in found if f[1] > run.tolerance]
    kind, err, left, right = failing[0] if failing else max(found, key=lambda f: f[1])
    left, right = shown_pair(left, right)
    details["failure"] = {"instance": numeric.instance_json(shrunk), "comparison": kind,
                          "left": left, "right": right, "error": err}
    via = {"operator": operator_name,
           "vs_formula": f"{operator_name} against the formula"}.get(kind, kind)
    # against the formula, the two values are one side's, by the operator and by the formula
    names = ("operator", "formula") if kind == "vs_formula" else ("left", "right")
    return done(f"{name} {xp.version} ({via}, float64) disagrees: at "
                f"{numeric.sizes_phrase(claim, shrunk)} ({how}), {names[0]} = {left:g}, "
                f"{names[1]} = {right:g}, error {err:.2g} > {run.tolerance:.0e}", False)
