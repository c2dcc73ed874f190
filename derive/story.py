"""A report's narrative: sections of prose, each followed by the claims it presents.

A topic module supplies a ``Story``; the renderers interleave it with the checked results.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class VerdictTable:
    """A table read off the verdicts: rows of cells, each cell the claims that decide it,
    the most general first (``((claim id, the condition it adds, "" for none), ...)``).

    A cell says "holds" when its first claim is proved, "holds only under <condition>" when
    a later one is, "fails" when its claims are refuted, and "undecided" otherwise
    (``render.common.cell_verdict``); it links to the claim that decides it.  Nothing in a
    cell is written by hand: a changed verdict changes the table.
    """

    caption: str                    # LaTeX: what the table shows
    groups: tuple                   # ((LaTeX header over several columns, column count), ...)
    columns: tuple[str, ...]        # LaTeX column headers
    rows: tuple                     # ((LaTeX row header, (cell, ...)), ...); a cell: () empty
    # ((state, LaTeX word shown for it, legend text), ...); "{condition}" in a word stands for
    # the cell's condition (the legend shows the table's first)
    words: tuple = ()

    def first_condition(self) -> str:
        return next((cond for _, cells in self.rows for cell in cells for _, cond in cell
                     if cond), "")


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
    table: VerdictTable | None = None   # shown right after ``text``


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
    # ((input x, its mean, radicands r, the name xhat), ...): products (x_k - mean)/sqrt(r)
    # print as xhat_k (the paper's normalized value)
    normalized: tuple = ()

    def figure_names(self) -> list[str]:
        """Every figure the story places, in the order it places them."""
        return [name for section in self.opening + self.sections
                for name, _, _ in section.figures]
