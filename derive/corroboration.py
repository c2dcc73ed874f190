"""Corroborations a claim declares: evidence beyond the core layers that only its topic knows.

A claim lists them in ``Claim.corroborations``; the generic layers run them without knowing
any claim by name.  A corroboration is either

* a layer of its own (``key`` None): ``run(claim)`` returns an ``Evidence`` of kind ``kind``,
  added after the framework layers (the simulated training runs, kind ``"simulation"``:
  ``verify.Settings.simulation`` switches them off); or
* attached to a framework layer (``key`` set, ``kind`` the framework's name, e.g.
  ``"torch"``): ``run(claim)`` returns a details dict with a boolean ``"passed"``, stored in
  that layer's details under ``key``.  When it has not passed, the layer fails with
  ``failure(result)`` as its summary; when the layer holds, ``note(result)`` (if given) is
  added to its summary.

``run``, ``failure`` and ``note`` are module-level functions: a claim with corroborations
pickles to the worker processes by reference, and the cache key names each function by its
qualified name (a function outside the ``derive`` package makes the claim uncacheable).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Corroboration:
    kind: str                         # the evidence kind: its own layer's, or the framework's
    run: Callable                     # run(claim) -> Evidence (own layer) or dict (attached)
    key: str | None = None            # attached: the key in the framework layer's details
    failure: Callable | None = None   # attached: failure(result) -> the failing layer's summary
    note: Callable | None = None      # attached: note(result) -> added to a holding summary

    def __post_init__(self):
        if not (isinstance(self.kind, str) and self.kind):
            raise ValueError("a corroboration needs an evidence kind")
        for name in ("run", "failure", "note"):
            fn = getattr(self, name)
            if (fn is not None or name == "run") and not callable(fn):
                raise ValueError(f"a corroboration's {name} must be a function")

    @property
    def attached(self) -> bool:
        """Attached to a framework layer's details, not a layer of its own."""
        return self.key is not None

    def failure_text(self, result: dict) -> str:
        if self.failure is not None:
            return self.failure(result)
        return f"the {self.key} check fails"


def own_layers(claim) -> list[Corroboration]:
    """The claim's corroborations that are layers of their own, in its order."""
    return [c for c in getattr(claim, "corroborations", ()) if not c.attached]


def attached_to(claim, kind: str) -> list[Corroboration]:
    """The claim's corroborations attached to the ``kind`` layer, in its order."""
    return [c for c in getattr(claim, "corroborations", ()) if c.attached and c.kind == kind]
