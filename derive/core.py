"""The core model: a claim, the steps of its proof, the evidence gathered for it, its verdict.

Nothing here knows how a proof is found, how evidence is gathered or how anything is printed;
those live in ``rules``, ``explicit``, ``numeric``, ``counterexample``, ``verify`` and
``render``.  A verdict is one of three:

* ``proved``    -- every part's residual reduced to exactly 0 under named, checked rules,
                   for every batch size the assumptions allow;
* ``refuted``   -- a concrete instance (batch size and numbers) on which the two sides differ,
                   re-checked in exact arithmetic;
* ``undecided`` -- anything else, with the reason.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any

import sympy as sp

from .axes import AxisError, axes_of, layout
from .calculus import Batch, BatchSum, Mean

_Z = sp.Symbol("z", real=True)
PROVED, REFUTED, UNDECIDED = "proved", "refuted", "undecided"
VERDICTS = (PROVED, REFUTED, UNDECIDED)
# the framework operators a claim's normalizations may name (``Claim.operator``), as PyTorch
# names them (torch.nn.functional.*, torch.nn.utils.parametrizations.weight_norm)
OPERATORS = ("batch_norm", "layer_norm", "instance_norm", "group_norm", "rms_norm",
             "weight_norm")


class DeriveError(Exception):
    """Something the tool cannot do; the command line turns it into one clear line."""


class Unsupported(DeriveError):
    """An expression uses a construct no layer knows how to handle."""


class OutOfTime(DeriveError):
    """A time budget ran out; the claim becomes undecided, never proved."""


@dataclass(frozen=True)
class Equation:
    """One equality ``lhs = rhs``; free sample indices and symbols are universally quantified."""

    lhs: sp.Expr
    rhs: sp.Expr
    label: str = ""

    def __post_init__(self):
        object.__setattr__(self, "lhs", sp.sympify(self.lhs))
        object.__setattr__(self, "rhs", sp.sympify(self.rhs))

    @property
    def residual(self) -> sp.Expr:
        return self.lhs - self.rhs


@dataclass(frozen=True)
class Claim:
    """A statement to prove or refute, with everything needed to check it independently.

    ``functions`` maps each arbitrary function in the statement (an ``activation``) to concrete
    instances used by the numeric and counterexample layers (ordered simplest first).
    ``min_size`` is the smallest batch size the assumptions allow (``min_sizes`` the smallest
    size of another axis, 1 when not given).  ``domain`` lists closed
    expressions that must be positive where the statement is defined (a variance at
    epsilon = 0): instances and counterexamples outside it are not drawn.
    ``corroborations`` is the evidence only this claim's topic knows how to gather (simulated
    training, a kernel built from the formula; ``corroboration.Corroboration``).
    ``operator`` names the framework operator the statement's normalizations mean (one of
    ``OPERATORS``): the torch and jax layers then compute each normalization they recognize
    by that operator, and check a claim without a derivative too.  None: a standardization
    is computed by the batch-norm operator, and only a claim with a derivative is checked
    by the frameworks.
    """

    id: str
    title: str
    batch: Batch
    equations: tuple[Equation, ...]
    text: str = ""
    assumptions: tuple[str, ...] = ()
    source: str = ""
    uses: tuple[str, ...] = ()
    expected: str | None = None
    min_size: int = 1
    functions: tuple[tuple[Any, tuple[sp.Lambda, ...]], ...] = ()
    ranges: tuple[tuple[sp.Symbol, tuple[float, float]], ...] = ()
    domain: tuple[sp.Expr, ...] = ()   # closed expressions that must be > 0 (sigma^2 > 0)
    explicit_up_to: int | None = None  # largest explicit N worth its time (None: settings')
    min_sizes: tuple[tuple[sp.Symbol, int], ...] = ()  # (axis, smallest size) beyond the batch
    corroborations: tuple = ()   # ``corroboration.Corroboration``s: the topic's own evidence
    operator: str | None = None  # the framework operator its normalizations mean (OPERATORS)

    def __post_init__(self):
        from .corroboration import Corroboration
        if not (isinstance(self.corroborations, tuple)
                and all(isinstance(c, Corroboration) for c in self.corroborations)):
            raise ValueError(f"{self.id}: corroborations must be a tuple of Corroboration")
        if self.operator is not None and self.operator not in OPERATORS:
            raise ValueError(f"{self.id}: the operator {self.operator!r} is not one the "
                             "framework layers know; choose one of " + ", ".join(OPERATORS))
        if self.expected is not None and self.expected not in VERDICTS:
            raise ValueError(f"{self.id}: expected verdict must be one of {VERDICTS}")
        if not self.equations:
            raise ValueError(f"{self.id}: a claim needs at least one equation")
        sides = [side for eq in self.equations for side in (eq.lhs, eq.rhs)]
        try:
            layout(*sides, *self.domain)
        except AxisError as err:
            raise ValueError(f"{self.id}: {err}") from None
        for side in sides:
            for node in side.atoms(Mean, BatchSum):
                if not (isinstance(node.size, sp.Symbol) and node.size.is_integer
                        and node.size.is_positive):
                    raise ValueError(f"{self.id}: a reduction over {node.size} entries; an "
                                     "axis size is a symbol such as N")
        for axis, n in self.min_sizes:
            if axis not in self.axes:
                raise ValueError(f"{self.id}: min_sizes names {axis}, which is not an axis of "
                                 "the claim")
            if not (isinstance(n, int) and n >= 1):
                raise ValueError(f"{self.id}: the smallest size of {axis} must be a whole "
                                 "number >= 1")

    # Read for every drawn instance (hundreds per claim), and a walk of every equation each
    # time: found once.  cached_property writes the instance's __dict__ directly, which a
    # frozen dataclass allows; equality, hashing and the cache key read only the fields.
    @functools.cached_property
    def axes(self) -> tuple:
        """Every axis of the claim, the batch's first: (N,), or (N, C, H) for a tensor."""
        sides = [side for eq in self.equations for side in (eq.lhs, eq.rhs)]
        return axes_of(*sides, first=self.batch.size)

    @functools.cached_property
    def _minimums(self) -> tuple:
        stated = dict(self.min_sizes)
        return tuple((a, stated.get(a, self.min_size if a == self.batch.size else 1))
                     for a in self.axes)

    def minimums(self) -> dict:
        """{axis: smallest size the assumptions allow}, in the order of ``axes``."""
        return dict(self._minimums)


_SIGN_TEXT = (("positive", "> 0"), ("negative", "< 0"), ("nonnegative", r"\ge 0"),
              ("nonpositive", r"\le 0"))


def all_assumptions(claim: Claim) -> tuple[str, ...]:
    """The claim's stated assumptions, plus those its symbols carry (a > 0, t an integer)."""
    stated = list(claim.assumptions)
    compact = [a.replace(" ", "") for a in stated]
    symbols = set()
    for eq in claim.equations:
        for side in (eq.lhs, eq.rhs):
            symbols |= {s for s in side.free_symbols if isinstance(s, sp.Symbol)
                        and s not in claim.axes and type(s) is sp.Symbol}
            symbols |= {ix.base.label for ix in side.atoms(sp.Indexed)}
    for s in sorted(symbols, key=sp.default_sort_key):
        name = sp.latex(s)
        if any(a.replace(" ", "").startswith(name.replace(" ", "")) for a in compact):
            continue  # the claim already says something about this symbol
        for attr, text in _SIGN_TEXT:
            if getattr(s, f"is_{attr}"):
                integer = r",\ \text{an integer}" if s.is_integer else ""
                stated.append(f"{name} {text}{integer}")
                break
    return tuple(stated)


@dataclass
class Step:
    """``before = after`` by ``rule``; ``checks`` lists the independent re-checks it passed."""

    rule: str
    before: sp.Expr
    after: sp.Expr
    checks: list[str] = field(default_factory=list)
    ok: bool = True


@dataclass
class PartProof:
    """The derivation of one equation: both sides reduced, then their difference."""

    equation: Equation
    lhs_steps: list[Step]
    rhs_steps: list[Step]
    residual: sp.Expr  # the reduced lhs - rhs; exactly 0 when the part is proved

    @property
    def proved(self) -> bool:
        return self.residual == 0 and all(s.ok for s in self.lhs_steps + self.rhs_steps)


@dataclass
class Counterexample:
    """A concrete instance on which a part fails, checked in exact arithmetic."""

    size: int
    values: dict[str, Any]  # printable name -> exact value (or list of values per sample)
    lhs: sp.Expr
    rhs: sp.Expr
    part: int = 0
    functions: tuple = ()  # (arbitrary function, the Lambda it was instantiated with), ...
    sizes: dict = field(default_factory=dict)  # every axis's size when there are several

    def all_sizes(self, claim: "Claim") -> dict:
        """{axis: size} for every axis of ``claim`` (``size`` is the batch's)."""
        return {**{a: 1 for a in claim.axes}, **self.sizes, claim.batch.size: self.size}

    @property
    def residual(self) -> sp.Expr:
        return sp.simplify(self.lhs - self.rhs)

    def function_equations(self) -> list[tuple[sp.Expr, sp.Expr]]:
        """Each arbitrary function's instance as (f(z), its formula in z), for printing."""
        return [(f(_Z), lam(_Z)) for f, lam in self.functions]


@dataclass
class Evidence:
    """What one independent layer found.

    ``holds``: True when the layer found the statement true wherever it looked, False when it
    found it failing, None when it could not tell.  ``ok``: the layer agrees with the verdict.
    """

    kind: str
    ok: bool
    summary: str
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    holds: bool | None = None


@dataclass
class Verdict:
    status: str
    reason: str = ""
    residual: sp.Expr | None = None
    counterexample: Counterexample | None = None
    defined_from: dict | None = None   # {axis: size} when the statement starts above the
    #                                    claim's minimums (undefined below: a variance of 0)

    def __post_init__(self):
        if self.status not in VERDICTS:
            raise ValueError(f"unknown verdict {self.status!r}")

    @classmethod
    def proved(cls, reason=""):
        return cls(PROVED, reason)

    @classmethod
    def refuted(cls, counterexample, residual=None, reason=""):
        return cls(REFUTED, reason, residual, counterexample)

    @classmethod
    def undecided(cls, reason, residual=None):
        return cls(UNDECIDED, reason, residual)


@dataclass
class Result:
    """A checked claim: its proof attempt, the evidence of every layer, and the verdict."""

    claim: Claim
    verdict: Verdict
    proof: list[PartProof]
    evidence: list[Evidence]
    seconds: float = 0.0

    @property
    def id(self):
        return self.claim.id


# -- errors as printed -------------------------------------------------------------------------
#
# Floating-point errors below a tolerance are round-off, and round-off differs between CPUs
# (SIMD paths of NumPy's and XLA's elementwise functions, reduction order): 3.6e-14 on one
# machine is 5.5e-14 on another.  What the documents and the certificate record is therefore not
# the error but the power of ten it stays below, never finer than ERROR_FLOOR.  Every round-off
# seen in the reports is at most 3e-13, a factor 30 under the floor, so no machine's noise can
# move the printed figure; the exact errors go to the timings sidecar, which may differ.

ERROR_FLOOR = 1e-11


def error_bound(err: float, floor: float = ERROR_FLOOR) -> float:
    """The power of ten ``err`` stays below, ``floor`` for anything smaller (0 included: an
    error that is exactly 0 here may be 1e-17 on another machine)."""
    if err < floor:
        return floor
    return float(f"1e{math.floor(math.log10(err)) + 1}")


def error_text(err: float) -> str:
    """``err`` as printed: "< 1e-11", "< 1e-3"."""
    return f"< {error_bound(err):.0e}".replace("e-0", "e-").replace("e+0", "e+")


def shown_pair(left: float, right: float) -> tuple[float, float]:
    """Two floats as printed beside each other (a failing instance's two sides): 3 significant
    digits, and a side within round-off of 0, relative to the larger, shown as 0."""
    scale = 1.0 + max(abs(left), abs(right))

    def one(v: float) -> float:
        return 0.0 if abs(v) < ERROR_FLOOR * scale else float(f"{v:.3g}")
    return one(left), one(right)
