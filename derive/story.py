"""A report's narrative: sections of prose, each followed by the claims it presents.

A topic module supplies a ``Story``; the renderers interleave it with the checked results.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Section:
    title: str
    # LaTeX prose shown before the claims; {{claim:ID}} stands for that claim's one-line
    # verdict, linked to the claim (answers cite the claims that back them this way)
    text: str
    claims: tuple[str, ...] = ()   # claim ids, in the order they are presented
    after: str = ""                # LaTeX prose shown after the claims
    # ((figure name, LaTeX caption, claim id), ...): each figure is placed right after the
    # claim it illustrates; the name is the figure's file stem (``figures.REPORT_FIGURES``)
    figures: tuple = ()


@dataclass(frozen=True)
class Story:
    name: str                      # the output file stem: reports/<name>.tex
    title: str
    abstract: str
    sections: tuple[Section, ...]
    # what the reader came for, before any claim: short sections of prose that cite the claims
    # ({{claim:ID}}); the claims, their derivations and evidence follow
    opening: tuple[Section, ...] = ()
    version: str = ""
    references: tuple[str, ...] = field(default_factory=tuple)
    # ((expression, LaTeX name), ...): how the statements print recurring statistics
    abbreviations: tuple = ()
    # ((expression, an equal expression), ...): how the printer puts statistics back where a
    # derivation wrote them out, e.g. sum_j x_j as m mu_B (identities only)
    folds: tuple = ()

    def figure_names(self) -> list[str]:
        """Every figure the story places, in the order it places them."""
        return [name for section in self.opening + self.sections
                for name, _, _ in section.figures]
