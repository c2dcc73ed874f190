"""One dispatch for the layers that walk an expression tree, the way SymPy's printers do.

The explicit layer (exact SymPy at concrete sizes), the numeric layer (NumPy closures), the
framework layers (torch / jax programs) and the re-check of a counterexample each evaluate a
claim's expression with rules of their own: they are independent checks and share no rule.
What they share is only how a node finds its rule.  ``Interpreter.visit(expr, *args)`` looks
along ``type(expr).__mro__`` for a method ``_eval_<ClassName>`` and calls the first it finds
with ``(expr, *args)``: ``Mean`` and ``BatchSum`` reach ``_eval__Reduction`` unless a layer
defines ``_eval_Mean`` itself, a ``SampleIndex`` or a ``Dummy`` reaches ``_eval_Symbol``, an
activation ``theta(x)`` reaches ``_eval_Function`` or ``_eval_Application``, and a layer's
``_eval_Basic`` catches every other SymPy node.  A node with no rule at all gets
``unknown``: the layer's "no ... rule for <node type>" as an ``Unsupported`` error.

A rule is a plain method (not a static or class method).  Checks that depend on a node's
value rather than its class (a symbol bound in an environment, the batch's size symbol) live
inside the rule for its class, or in an override of ``visit`` that makes them and then calls
``dispatch``.  A user's function class is never taken for a SymPy class of the same name: an
arbitrary function (``activation``) or an undefined ``Function("Add")`` is skipped along the
MRO, so that it reaches the rule for functions.
"""

from __future__ import annotations

from sympy.core.function import UndefinedFunction

from .calculus import ActivationClass
from .core import Unsupported

PREFIX = "_eval_"


class Interpreter:
    """A walk over an expression tree with one rule per node class (``_eval_<ClassName>``).

    ``rule_name`` names the layer in the default error: "no numeric rule for Piecewise".
    """

    rule_name = "interpreter"
    _rules: dict = {}   # node type -> the rule found for it (a function), or None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls._rules = {}   # each interpreter class its own: subclasses define other rules

    @classmethod
    def rule_for(cls, node_type: type):
        """The rule (a function taking the interpreter, the node and the walk's arguments)
        for nodes of ``node_type``: the first ``_eval_<ClassName>`` along its MRO; None when
        there is none.  Looked up once per node type."""
        try:
            return cls._rules[node_type]
        except KeyError:
            pass
        found = None
        for klass in node_type.__mro__:
            if isinstance(klass, (UndefinedFunction, ActivationClass)):
                continue   # a user's name, not a node type
            found = getattr(cls, PREFIX + klass.__name__, None)
            if found is not None:
                break
        cls._rules[node_type] = found
        return found

    def visit(self, expr, *args, **kwargs):
        """The value of ``expr`` by the rule for its class (``unknown`` when none)."""
        rule = self.rule_for(type(expr))
        if rule is None:
            return self.unknown(expr, *args, **kwargs)
        return rule(self, expr, *args, **kwargs)

    # an override of ``visit`` that checks something first calls this
    dispatch = visit

    def no_rule(self, expr) -> str:
        """The sentence saying this layer has no rule for ``expr``'s node type."""
        return f"no {self.rule_name} rule for {type(expr).__name__}"

    def unknown(self, expr, *args, **kwargs):
        """A node no rule covers: ``Unsupported``, naming the node type."""
        raise Unsupported(self.no_rule(expr))


__all__ = ["Interpreter"]
