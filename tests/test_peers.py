"""A framework evaluated in another process answers as it would here.

``frameworks.layers`` can have a framework evaluated at the other end of a connection
(``frameworks.serve``: ``derive check`` on one claim runs each framework in a process of its
own).  The evidence must be the same as from evaluating it here, whatever a framework does:
fail an instance, raise on one, raise something that does not pickle.  Here the other end
is a thread of this process and the frameworks are stand-ins, so that only the protocol is
under test (tests/test_runner.py runs the real processes with torch and jax).
"""

from __future__ import annotations

import dataclasses
import pickle
import threading
from multiprocessing import Pipe

import pytest
import sympy as sp

from derive import Batch, Claim, Equation, Grad, frameworks
from derive.claims import centering
from derive.frameworks import PeerLost, _Elsewhere, _prepared_for, _Run
from derive.verify import Settings, checked_scope

CLAIM = {c.id: c for c in centering.claims()}["centering.naive-gradient"]


class StandIn:
    """A framework that computes nothing: ``RULES`` decides each instance's fate."""
    dtype = "float64"

    def __init__(self, name):
        self.name = name


RULES: dict = {}


class Refusal(Exception):
    """What a framework may raise on an instance."""


class Stubborn(Exception):
    """An exception that does not pickle back as itself (its constructor wants two
    arguments)."""

    def __init__(self, size, why):
        super().__init__(f"N = {size}: {why}")


def stand_in_error(self, inst):
    rules = RULES[self.xp.name]
    if inst.size in rules.get("raise", ()):
        raise Refusal(f"{self.xp.name} refuses N = {inst.size}")
    if inst.size in rules.get("stubborn", ()):
        raise Stubborn(inst.size, "no")
    failing = inst.size in rules.get("fail", ())
    stats = self.formula
    stats["instances"] += 1
    if failing and self.first_failure is None:
        self.first_failure = inst
    return 1.0 if failing else 0.0


def stand_in_evidence(self, count, shrunk, seconds):
    """What the evidence is made of: the counts, the failures, the instances seen."""
    return (self.xp.name, count, self.formula["instances"],
            shrunk.size if shrunk is not None else None,
            self.first_failure.size if self.first_failure is not None else None)


@pytest.fixture
def stand_ins(monkeypatch):
    monkeypatch.setattr(frameworks, "backend", StandIn)
    monkeypatch.setattr(_Run, "error", stand_in_error)
    monkeypatch.setattr(_Run, "evidence", stand_in_evidence)


def served(*names):
    """{name: connection} to a ``serve`` running in a thread for each name."""
    ends = {}
    for name in names:
        mine, theirs = Pipe()
        threading.Thread(target=frameworks.serve, args=(theirs,), daemon=True).start()
        ends[name] = mine
    return ends


def outcome(settings, shrink, elsewhere=None):
    try:
        return frameworks.layers(CLAIM, ["torch", "jax"], settings, shrink=shrink,
                                 elsewhere=elsewhere)
    except Exception as err:  # noqa: BLE001 -- what the layers raise is the outcome too
        return f"{type(err).__name__}: {err}"


# torch's rules, jax's, and whether Hypothesis shrinks: failures alone, and a framework that
# raises while the other fails (each of the last three gives other evidence elsewhere when an
# answer is left unread after a raise)
CASES = [
    ({}, {}, True),
    ({}, {"fail": set(range(1, 14))}, False),
    ({"raise": {21}}, {"fail": set(range(1, 14))}, False),
    ({"raise": {21}}, {"fail": set(range(1, 14))}, True),
    ({"raise": {21}}, {"fail": set(range(30, 65))}, False),
]


@pytest.mark.parametrize("torch_rules, jax_rules, shrink", CASES)
def test_the_evidence_is_the_same_with_the_frameworks_elsewhere(stand_ins, torch_rules,
                                                                 jax_rules, shrink):
    # a framework that raises on some instances, while another fails on some: every
    # framework answers every instance, so none is left behind to be taken for the next one
    RULES.update(torch=torch_rules, jax=jax_rules)
    settings = Settings(framework_examples=60)
    here = outcome(settings, shrink)
    assert outcome(settings, shrink, served("jax")) == here
    assert outcome(settings, shrink, served("torch", "jax")) == here


def test_an_exception_that_does_not_travel_ends_the_run_elsewhere(stand_ins):
    # it could not be raised there as itself: the caller runs the layers itself instead
    RULES.update(torch={}, jax={"stubborn": {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}})
    assert "Stubborn" in outcome(Settings(framework_examples=20), True)
    with pytest.raises(PeerLost, match="does not travel"):
        frameworks.layers(CLAIM, ["torch", "jax"], Settings(framework_examples=20),
                          elsewhere=served("jax"))


class Broken:
    """A connection whose messages do not pickle, or whose answers do not unpickle."""

    def send(self, message):
        raise pickle.PicklingError("Can't pickle <lambda>")

    def recv(self):
        raise pickle.UnpicklingError("truncated")


def test_a_claim_or_answer_that_does_not_travel_is_a_lost_peer_not_a_layer_error():
    # a claim that does not pickle (a user's lambda in it) is checked here, with its layers
    with pytest.raises(PeerLost):
        _Elsewhere(Broken(), CLAIM, "jax")
    mine, theirs = Pipe()
    theirs.close()
    with pytest.raises(PeerLost):   # and the other end gone
        _Elsewhere(mine, CLAIM, "jax")


def test_prepared_programs_go_only_to_the_claim_they_were_compiled_for():
    # LayerNorm without epsilon: check() scopes it (sigma^2 > 0, N from 2), and a program
    # compiled for the claim as stated would not check that domain
    B = Batch("m")
    x, g = B.samples("x"), B.samples("g")
    i, k = B.index("i"), B.index("k")
    mu = B.mean(x[i], i)
    s = sp.sqrt(B.mean((x[i] - mu) ** 2, i))
    y = (x[i] - mu) / s
    compact = (B.size * g[k] - B.sum(g[i], i)
               - y.subs(i, k) * B.sum(g[i] * y, i)) / (B.size * s)
    stated = Claim("ln.noeps", "LayerNorm backward, eps = 0", B,
                   (Equation(Grad(B.sum(g[i] * y, i), x[k]), compact),))
    scoped = checked_scope(stated).claim
    assert scoped != stated and scoped.id == stated.id
    programs = {(): object()}
    prepared = (frameworks._canonical(scoped), programs)
    assert _prepared_for(pickle.loads(pickle.dumps(scoped)), prepared) is programs
    assert _prepared_for(stated, prepared) is None
    assert _prepared_for(dataclasses.replace(scoped, min_size=3), prepared) is None
    assert _prepared_for(scoped, None) is None
