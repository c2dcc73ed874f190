"""Plain text for messages and summaries: one line, Unicode Greek, E_j[...] for a mean."""

from __future__ import annotations

import re

import sympy as sp
from sympy.printing.str import StrPrinter

_GREEK = {"alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "Delta": "Δ", "epsilon": "ε",
          "eta": "η", "theta": "θ", "mu": "μ", "sigma": "σ"}


def plain_name(name: str) -> str:
    return re.sub(r"\\([A-Za-z]+)\s*", lambda m: _GREEK.get(m.group(1), m.group(1)), name)


class TextPrinter(StrPrinter):
    printmethod = "_derive_text"  # ignore the objects' own _sympystr (Indexed has one)

    def _print_Symbol(self, expr):
        return plain_name(expr.name)

    _print_Dummy = _print_Symbol

    def _print_Indexed(self, expr):
        return f"{self._print(expr.base.label)}_{','.join(map(self._print, expr.indices))}"

    def _print_Mean(self, expr):
        return f"E_{self._print(expr.index)}[{self._print(expr.body)}]"

    def _print_BatchSum(self, expr):
        return f"Σ_{self._print(expr.index)}[{self._print(expr.body)}]"

    def _print_Statistic(self, expr):
        return self._print(expr.definition)

    def _print_Held(self, expr):
        return f"sg({self._print(expr.args[0])})"

    def _print_Grad(self, expr):
        out = f"∂/∂{self._print(expr.wrt)}({self._print(expr.expr)})"
        if expr.at is None:
            return out
        return f"{out}|_({self._print(expr.wrt)} = {self._print(expr.at)})"

    def _print_KroneckerDelta(self, expr):
        return f"δ_{''.join(map(self._print, expr.args))}"

    def _print_Function(self, expr):
        return f"{plain_name(getattr(expr.func, '_latex_name', expr.func.__name__))}" \
               f"({', '.join(map(self._print, expr.args))})"


_PRINTER = TextPrinter()


def text(expr) -> str:
    """One-line plain text of an expression of the batch calculus."""
    return _PRINTER.doprint(sp.sympify(expr))
