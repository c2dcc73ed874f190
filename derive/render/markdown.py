"""Markdown: the report as a page that renders on GitHub and in Jupyter ($...$ math)."""

from __future__ import annotations

import re

from ..core import Result, all_assumptions
from .common import (evidence_rows, failing_sizes, implementation_check, sizes_phrase,
                     table_legend, table_rows, verdict_phrase)
from .latex import equation_tex, tex, value_tex

_INLINE = [(r"\\emph\{([^{}]*)\}", r"*\1*"), (r"\\textbf\{([^{}]*)\}", r"**\1**"),
           (r"\\texttt\{([^{}]*)\}", r"`\1`"), (r"\\S ", "§"), (r"\\&", "&"),
           (r"\\verdict\{[a-z]+\}\{([^{}]*)\}", r"**\1**"), (r"~\\ref\{[^{}]*\}", " below"),
           (r"\\\[", "$$"), (r"\\\]", "$$"), (r"``", '"'), (r"''", '"'), (r" -- ", " – "),
           (r"\\_", "_")]


def prose(latex_text: str) -> str:
    """LaTeX prose (text with $math$) as Markdown."""
    out = latex_text
    for pattern, repl in _INLINE:
        out = re.sub(pattern, repl, out)
    return out


def claim_md(result: Result) -> str:
    c, v = result.claim, result.verdict
    lines = [f'<a id="{c.id}"></a>', "", f"### {c.title} — `{c.id}`", "",
             f"**{verdict_phrase(result)}**", "",
             prose(c.text), ""]
    lines += [f"$$ {equation_tex(e)} $$" for e in c.equations]
    lines += ["", "Assumptions: " + ", ".join(f"${a}$" for a in all_assumptions(c))
              + (f". Source: {prose(c.source)}." if c.source else ""), ""]
    for n, part in enumerate(result.proof, 1):
        chain = " → ".join(f"`{s.rule}`" for s in part.lhs_steps + part.rhs_steps)
        label = f" ({prose(part.equation.label)})" if part.equation.label else ""
        rules = f"rules {chain}" if part.lhs_steps + part.rhs_steps else "nothing to reduce"
        lines.append(f"- part {n}{label}: {rules}; residual ${tex(part.residual)}$")
    if v.counterexample is not None:
        cex = v.counterexample
        vals = ", ".join(f"${k} = {value_tex(v)}$"
                         for k, v in cex.values.items())
        lines += ["", f"Counterexample (smallest {sizes_phrase(failing_sizes(result))}): {vals}"
                  + "".join(f", ${tex(f)} = {tex(v)}$" for f, v in cex.function_equations())
                  + f"; left = ${tex(cex.lhs)}$, right = ${tex(cex.rhs)}$, residual "
                  f"${tex(cex.residual)}$ (exact)."]
    lines += ["", "| layer | finding | agrees |", "|---|---|---|"]
    lines += [f"| {k} | {f} | {'yes' if ok else 'no'} |" for k, f, ok in evidence_rows(result)]
    return "\n".join(lines) + "\n"


def _implementation(result) -> str:
    check = implementation_check(result)
    if check is None:
        return "(The implementation check needs PyTorch.)"
    rows = [f"| {r['dtype']} | {check['against']} | < {r['max_error_below']:.0e} | "
            f"{r['tolerance']:.0e} |" for r in check["rows"]]
    return "\n\n" + "\n".join(["| dtype | compared with | largest relative error | "
                                 "tolerance |", "|---|---|---|---|"] + rows) + "\n\n"


def _cite(text: str, by_id) -> str:
    """{{claim:ID}} as the claim's verdict and id; {{implementation:ID}} as its table."""
    text = re.sub(r"\{\{implementation:([^}]+)\}\}",
                  lambda m: _implementation(by_id[m.group(1)]), text)
    return re.sub(r"\{\{claim:([^}]+)\}\}",
                  lambda m: f"{verdict_phrase(by_id[m.group(1)]).lower()}, `{m.group(1)}`",
                  text)


def _verbatim(text: str) -> str:
    return re.sub(r"\\begin\{verbatim\}\n?(.*?)\\end\{verbatim\}",
                  lambda m: "\n```\n" + m.group(1).rstrip() + "\n```\n", text, flags=re.S)


def _figures(section, claim=None, skip=()):
    """![caption](NAME.png) for the section's figures placed after ``claim`` (None: the rest)."""
    out = []
    for name, caption, cid in section.figures:
        if (cid == claim if claim is not None else cid not in section.claims) \
                and name not in skip:
            out += [f"![{prose(caption)}]({name}.png)", ""]
    return out


def _math(latex_text: str) -> str:
    """A LaTeX word or header as Markdown: line breaks of a stacked header become spaces,
    colours go (Markdown has none), the check mark and the cross become characters."""
    text = re.sub(r"\\textcolor\{[a-z]+\}\{(.*)\}", r"\1", latex_text)
    text = text.replace(r"\\", " ").replace(r"$\times$", "✗").replace(r"\checkmark", "✓")
    return prose(text.replace(r"\times", "✗"))


def verdict_table_md(table, by_id) -> list[str]:
    """A ``VerdictTable`` as a Markdown table, group headers folded into the column headers,
    each cell its word and the claim that decides it; the legend below."""
    heads = []
    for head, count in table.groups or ((None, len(table.columns)),):
        heads += [head] * count
    columns = [f"{_math(h)}: {_math(c)}" if h else _math(c)
               for h, c in zip(heads, table.columns)]
    out = ["| | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for head, cells in table_rows(table, by_id):
        # each word links to its claim's anchor (claim_md)
        shown = ["" if cell is None else f"[{_math(cell[0])}](#{cell[1]})" for cell in cells]
        out.append(f"| {_math(head)} | " + " | ".join(shown) + " |")
    legend = "; ".join(f"{_math(word)} {prose(text)}" for word, text in table_legend(table))
    return out + ["", f"{prose(table.caption)} {legend}.", ""]


def document(story, results: list[Result], settings=None) -> str:
    by_id = {r.id: r for r in results}
    out = [f"# {prose(story.title)}", "", prose(_cite(story.abstract, by_id)), ""]
    shown: set = set()
    for section in getattr(story, "opening", ()):
        out += ["", f"## {prose(section.title)}", "",
                prose(_verbatim(_cite(section.text, by_id))), ""]
        if section.table is not None:
            out += verdict_table_md(section.table, by_id)
        if section.after:
            out += [prose(_verbatim(_cite(section.after, by_id))), ""]
        out += _figures(section)
        shown.update(name for name, _, _ in section.figures)
    out += ["| claim | verdict |", "|---|---|"]
    out += [f"| `{r.id}` | {verdict_phrase(r)} |" for r in results]
    for section in story.sections:
        out += ["", f"## {prose(section.title)}", "", prose(_cite(section.text, by_id)), ""]
        for cid in section.claims:
            out.append(claim_md(by_id[cid]))
            out += _figures(section, cid, shown)
        out += _figures(section, None, shown)
        if section.after:
            out += [prose(_cite(section.after, by_id)), ""]
    return "\n".join(out) + "\n"
