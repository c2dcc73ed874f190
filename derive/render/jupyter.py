"""Rich display in Jupyter: claims, equations and results render as Markdown with math.

Registered from outside the core (the core imports nothing from rendering): importing this
module attaches ``_repr_markdown_`` / ``_repr_latex_`` to the core classes.
"""

from __future__ import annotations

from ..core import Claim, Equation, Result
from .latex import equation_tex
from .markdown import claim_md, prose


def _equation_latex(self: Equation) -> str:
    return f"$${equation_tex(self)}$$"


def _claim_markdown(self: Claim) -> str:
    eqs = "\n".join(f"$$ {equation_tex(e)} $$" for e in self.equations)
    return f"**{self.title}** — `{self.id}` (not yet checked)\n\n{prose(self.text)}\n\n{eqs}\n"


def _result_markdown(self: Result) -> str:
    return claim_md(self)


Equation._repr_latex_ = _equation_latex
Claim._repr_markdown_ = _claim_markdown
Result._repr_markdown_ = _result_markdown
