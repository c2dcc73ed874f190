"""The dispatch the evaluating layers share (``derive.interpret.Interpreter``): a node finds
its rule ``_eval_<ClassName>`` along its class's MRO, a node of no rule is refused in a
sentence, and each of the four independent interpreters -- explicit, numeric, the framework
programs, the re-check's writer -- is one."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import sympy as sp

from derive.calculus import Batch, BatchSum, Mean, activation
from derive.core import Unsupported
from derive.explicit import ExplicitBatch
from derive.frameworks.program import Program
from derive.interpret import Interpreter
from derive.numeric import Compiled, Context
from derive.recheck import _CannotTell, _Writer

B = Batch("N")
N = B.size
x = B.samples("x")
i = B.index("i")
b = B.param("b")


class Names(Interpreter):
    """Answers the name of the rule each node reaches."""

    rule_name = "naming"

    def _eval__Reduction(self, e):
        return "reduction"

    def _eval_Symbol(self, e):
        return "symbol"

    def _eval_Application(self, e):
        return "application"

    def _eval_Add(self, e):
        return "add"


class MeansApart(Names):
    def _eval_Mean(self, e):
        return "mean"


# -- dispatch along the MRO ---------------------------------------------------------------------

def test_a_node_finds_the_rule_of_a_base_class():
    names = Names()
    assert names.visit(B.mean(x[i], i)) == "reduction"       # Mean -> _Reduction
    assert names.visit(B.sum(x[i], i)) == "reduction"        # BatchSum -> _Reduction
    assert names.visit(i) == "symbol"                        # SampleIndex -> Symbol
    assert names.visit(sp.Dummy("d")) == "symbol"            # Dummy -> Symbol
    assert names.visit(sp.exp(b)) == "application"           # exp -> ... -> Application
    assert names.visit(sp.Max(b, x[i])) == "application"     # Max -> ... -> Application


def test_a_subclass_rule_comes_first_and_only_for_its_class():
    means = MeansApart()
    assert means.visit(B.mean(x[i], i)) == "mean"
    assert means.visit(B.sum(x[i], i)) == "reduction"
    assert Names().visit(B.mean(x[i], i)) == "reduction"     # the base class keeps its own


def test_arguments_reach_the_rule():
    class Scaled(Interpreter):
        def _eval_Integer(self, e, factor, offset=0):
            return int(e) * factor + offset

    assert Scaled().visit(sp.Integer(3), 2) == 6
    assert Scaled().visit(sp.Integer(3), 2, offset=1) == 7


def test_a_users_function_is_not_taken_for_a_sympy_class_of_its_name():
    named_like_add = activation("Add")
    undefined = sp.Function("Add")
    assert Names().visit(named_like_add(b)) == "application"
    assert Names().visit(undefined(b)) == "application"
    assert Names().visit(b + x[i]) == "add"


def test_no_rule_is_refused_in_a_sentence_naming_the_node_type():
    with pytest.raises(Unsupported, match=r"^no naming rule for Pi$"):
        Names().visit(sp.pi)
    with pytest.raises(Unsupported, match=r"^no interpreter rule for Indexed$"):
        Interpreter().visit(x[i])


# -- the four interpreters ----------------------------------------------------------------------

class Stranger:
    """A node no layer has a rule for."""


class FakeBackend(SimpleNamespace):
    """Just enough of a backend to compile (not run) a program."""


def test_each_layer_is_an_interpreter():
    for layer in (ExplicitBatch, Compiled, Program, _Writer):
        assert issubclass(layer, Interpreter), layer


def test_explicit_refuses_an_unknown_node():
    batch = ExplicitBatch(2, N)
    with pytest.raises(Unsupported, match=r"^no explicit rule for Stranger$"):
        batch.visit(Stranger(), {})


def test_numeric_refuses_an_unknown_node():
    with pytest.raises(Unsupported, match=r"^no numeric rule for Tuple$"):
        Compiled(sp.Tuple(b, b), [], N)
    compiled = Compiled(b, [], N)
    with pytest.raises(Unsupported, match=r"^no numeric rule for Stranger$"):
        compiled.visit(Stranger(), {})


def test_a_program_refuses_an_unknown_node_naming_its_framework():
    backend = FakeBackend(name="torch")
    with pytest.raises(Unsupported, match=r"^no torch rule for Tuple$"):
        Program(sp.Tuple(b, b), [], N, backend)
    with pytest.raises(Unsupported, match=r"^no jax rule for Stranger$"):
        Program(b, [], N, FakeBackend(name="jax")).visit(Stranger(), {}, 0)


def test_the_recheck_cannot_tell_about_an_unknown_node():
    writer = _Writer({N: 2}, N, {}, {})
    with pytest.raises(_CannotTell, match=r"^no re-check rule for Stranger$"):
        writer.visit(Stranger(), {}, None)


# -- a mean is told from a sum by its class, not by how it prints ------------------------------

class PrintedAsSum(Mean):
    """A mean whose display field says "Sum"."""

    symbol = "Sum"


class PrintedAsMean(BatchSum):
    symbol = "E"


def test_a_mean_is_a_mean_whatever_it_prints_as():
    mean, total = PrintedAsSum(x[i], i, N), PrintedAsMean(x[i], i, N)
    batch = ExplicitBatch(2, N)
    x1, x2 = batch.sample(x, 1), batch.sample(x, 2)
    assert batch.resolve(batch.eval(mean)) == (x1 + x2) / 2
    assert batch.resolve(batch.eval(total)) == x1 + x2

    ctx = Context(2, {x: np.array([1.0, 3.0])}, {})
    assert complex(np.squeeze(Compiled(mean, [], N)(ctx))) == 2.0
    assert complex(np.squeeze(Compiled(total, [], N)(ctx))) == 4.0

    writer = _Writer({N: 2}, N, {(x, (1,)): x1, (x, (2,)): x2},
                     {x1: sp.Integer(1), x2: sp.Integer(3)}, {x: (N,)})
    assert writer.value(mean, {}) == 2
    assert writer.value(total, {}) == 4



def test_named_constants_are_numbers_to_every_layer():
    import sympy as sp

    from derive import Batch, Claim, Equation, Grad, Settings, check
    B = Batch("N")
    u, i = B.samples("u"), B.index("i")
    b = B.param("b")
    claim = Claim("constants", "pi and e", B,
                  (Equation(Grad(sp.pi * b + sp.E * B.mean(u[i], i), b), sp.pi),))
    result = check(claim, Settings(random_instances=20, hypothesis_examples=10))
    assert result.verdict.status == "proved", result.verdict.reason
    assert all(e.ok for e in result.evidence), [(e.kind, e.summary) for e in result.evidence]
    assert {e.kind for e in result.evidence} >= {"symbolic", "explicit", "numeric"}
