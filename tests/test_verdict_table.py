"""A ``story.VerdictTable`` is read off the verdicts (``render.common.cell_verdict``) and rendered
by ``render.latex.verdict_table_tex`` and ``render.markdown.verdict_table_md``.

Every result here is fake (no claim is checked), so the file runs in well under a second:
each cell's word, condition and link must follow from its claims' verdicts alone, and changing
one verdict must change that cell and no other.
"""

from __future__ import annotations

import re

import pytest
import sympy as sp

from derive import Axis, Claim, Equation
from derive.core import PROVED, REFUTED, UNDECIDED, Counterexample, Result, Verdict
from derive.render.common import CONDITIONAL, FAILS, HOLDS, cell_verdict
from derive.render.latex import verdict_table_tex
from derive.render.markdown import _math, document, verdict_table_md
from derive.story import Section, Story, VerdictTable

N = Axis("N")
x = N.samples("x")
i = N.index("i")
EPS0 = r"\epsilon = 0"


def result(cid: str, status: str) -> Result:
    claim = Claim(cid, cid, N, (Equation(x[i], x[i]),))
    verdict = {PROVED: lambda: Verdict.proved("fake"),
               REFUTED: lambda: Verdict.refuted(
                   Counterexample(2, {"x": [0, 1]}, sp.Integer(0), sp.Integer(1)), sp.Integer(1),
                   "fake"),
               UNDECIDED: lambda: Verdict.undecided("fake")}[status]()
    return Result(claim, verdict, [], [], 0.0)


def results(**statuses) -> dict:
    """{claim id: fake Result}; keyword names use _ for the id's dots (a_b -> a.b)."""
    return {cid.replace("_", "."): result(cid.replace("_", "."), s) for cid, s in statuses.items()}


WORDS = (("holds", "YES", "the output is unchanged"),
         ("conditional", "ONLY-AT ${condition}$", "unchanged only under the condition"),
         ("fails", "NO", "the output changes"),
         ("undecided", "?", "undecided"))

# two rows, three columns, empty cells in both rows
TABLE = VerdictTable(
    caption="Each cell links to the claim that decides it.",
    groups=(("a bias", 1), ("a scale", 2)),
    columns=("per channel", "per sample", "global"),
    rows=(("Alpha", ((("a.bias", ""),), (), (("a.scale", ""), ("a.scale0", EPS0)))),
          ("Beta", ((), (("b.sample", ""), ("b.sample0", EPS0)), (("b.fails", ""),)))),
    words=WORDS)

STATUSES = {"a.bias": PROVED, "a.scale": REFUTED, "a.scale0": PROVED,
            "b.sample": REFUTED, "b.sample0": REFUTED, "b.fails": REFUTED}


def by_id(**changes) -> dict:
    statuses = {**STATUSES, **{k.replace("_", "."): v for k, v in changes.items()}}
    return {cid: result(cid, s) for cid, s in statuses.items()}


def tex_cells(tex: str, table=TABLE) -> dict:
    """{(row header, column): the cell's LaTeX} from the tabular's body rows."""
    out = {}
    for head, cells in table.rows:
        line = next(ln for ln in tex.splitlines() if ln.startswith(head + " & "))
        assert line.endswith(r" \\")
        shown = line[len(head) + 3:-3].split(" & ")
        assert len(shown) == len(table.columns), line
        out.update({(head, col): cell.strip() for col, cell in enumerate(shown)})
    return out


def md_cells(lines: list, table=TABLE, raw=False) -> dict:
    """{(row head, column): the cell's word} ("[word](#claim id)" with ``raw``)."""
    out = {}
    for head, _ in table.rows:
        found = [ln for ln in lines if ln.startswith(f"| {_math(head)} |")]
        assert len(found) == 1, head
        shown = found[0].strip().strip("|").split("|")[1:]
        assert len(shown) == len(table.columns), found[0]
        out.update({(head, col): cell.strip() if raw
                    else re.sub(r"^\[(.*)\]\(#[^)]*\)$", r"\1", cell.strip())
                    for col, cell in enumerate(shown)})
    return out


# -- cell_verdict --------------------------------------------------------------------------------

def test_a_cell_whose_first_claim_is_proved_holds():
    found = results(g=PROVED, g0=PROVED)
    assert cell_verdict((("g", ""), ("g0", EPS0)), found) == (HOLDS, "", "g")
    # the later claims do not matter once the first is proved
    found = results(g=PROVED, g0=REFUTED)
    assert cell_verdict((("g", ""), ("g0", EPS0)), found) == (HOLDS, "", "g")
    assert cell_verdict((("g", ""),), found) == (HOLDS, "", "g")


def test_first_refuted_and_second_proved_holds_only_under_its_condition():
    found = results(g=REFUTED, g0=PROVED)
    assert cell_verdict((("g", ""), ("g0", EPS0)), found) == (CONDITIONAL, EPS0, "g0")
    # a third, more special claim after the deciding one is not reached
    found = results(g=REFUTED, g0=PROVED, g00=REFUTED)
    cell = (("g", ""), ("g0", EPS0), ("g00", r"\epsilon = 0, N = 1"))
    assert cell_verdict(cell, found) == (CONDITIONAL, EPS0, "g0")
    # the condition is the deciding claim's own, not the first one's
    found = results(g=REFUTED, g0=REFUTED, g00=PROVED)
    assert cell_verdict(cell, found) == (CONDITIONAL, r"\epsilon = 0, N = 1", "g00")


def test_a_first_claim_with_a_condition_of_its_own_is_conditional():
    assert cell_verdict((("g0", EPS0),), results(g0=PROVED)) == (CONDITIONAL, EPS0, "g0")


@pytest.mark.parametrize("ids", [("g",), ("g", "g0"), ("g", "g0", "g00")])
def test_all_refuted_fails_and_links_the_last_most_special_claim(ids):
    found = {cid: result(cid, REFUTED) for cid in ids}
    cell = tuple((cid, EPS0 if n else "") for n, cid in enumerate(ids))
    assert cell_verdict(cell, found) == (FAILS, "", ids[-1])


@pytest.mark.parametrize("statuses, decider", [((UNDECIDED,), "c0"),
                                               ((UNDECIDED, PROVED), "c0"),
                                               ((REFUTED, UNDECIDED), "c1"),
                                               ((REFUTED, UNDECIDED, PROVED), "c1"),
                                               ((REFUTED, REFUTED, UNDECIDED), "c2")])
def test_an_undecided_claim_on_the_way_leaves_the_cell_undecided(statuses, decider):
    ids = [f"c{n}" for n in range(len(statuses))]
    found = {cid: result(cid, s) for cid, s in zip(ids, statuses)}
    cell = tuple((cid, EPS0 if n else "") for n, cid in enumerate(ids))
    state, condition, cid = cell_verdict(cell, found)
    assert (state, condition, cid) == ("undecided", "", decider)


# -- LaTeX ---------------------------------------------------------------------------------------

def test_latex_each_cell_says_its_verdict_and_links_the_deciding_claim():
    tex = verdict_table_tex(TABLE, by_id())
    cells = tex_cells(tex)
    assert cells == {
        ("Alpha", 0): r"\hyperref[claim:a.bias]{YES}",
        ("Alpha", 1): "",
        ("Alpha", 2): r"\hyperref[claim:a.scale0]{ONLY-AT $\epsilon = 0$}",
        ("Beta", 0): "",
        ("Beta", 1): r"\hyperref[claim:b.sample0]{NO}",
        ("Beta", 2): r"\hyperref[claim:b.fails]{NO}",
    }
    # one link per non-empty cell, and none anywhere else
    assert tex.count(r"\hyperref[") == 4
    assert sorted(re.findall(r"\\hyperref\[claim:([^\]]+)\]", tex)) == \
        ["a.bias", "a.scale0", "b.fails", "b.sample0"]


def test_latex_headers_groups_and_legend():
    tex = verdict_table_tex(TABLE, by_id())
    assert r"\begin{tabular}{@{}l*{3}{c}@{}}" in tex
    assert r" & \multicolumn{1}{c}{a bias} & \multicolumn{2}{c}{a scale} \\" in tex
    assert r"\cmidrule(lr){2-2}\cmidrule(lr){3-4}" in tex
    assert (r" & \shortstack{per channel} & \shortstack{per sample} & \shortstack{global}"
            r" \\ \midrule") in tex
    legend = tex.splitlines()[-1]
    assert legend.startswith(r"{\small Each cell links to the claim that decides it. ")
    assert legend.endswith(".}")
    # every word with its text, the condition filled in with the table's first
    for word, text in (("YES", "the output is unchanged"),
                       (r"ONLY-AT $\epsilon = 0$", "unchanged only under the condition"),
                       ("NO", "the output changes"), ("?", "undecided")):
        assert f"{word} {text}" in legend
    assert "{condition}" not in tex
    assert tex.index(r"\end{tabular}") < tex.index(legend)


def test_latex_the_legend_condition_is_the_tables_first():
    table = VerdictTable("c", (), ("a",), (("R", ((("p", ""), ("q", "N = 1")),)),
                                          ("S", ((("u", ""), ("v", EPS0)),))), WORDS)
    assert table.first_condition() == "N = 1"
    tex = verdict_table_tex(table, results(p=REFUTED, q=REFUTED, u=REFUTED, v=PROVED))
    assert r"ONLY-AT $N = 1$ unchanged only under" in tex.splitlines()[-1]
    # ... while each cell shows its own
    assert tex_cells(tex, table)[("S", 0)] == r"\hyperref[claim:v]{ONLY-AT $\epsilon = 0$}"
    assert tex_cells(tex, table)[("R", 0)] == r"\hyperref[claim:q]{NO}"


def test_latex_an_undecided_claim_makes_its_cell_undecided():
    tex = verdict_table_tex(TABLE, by_id(a_scale=UNDECIDED))
    assert tex_cells(tex)[("Alpha", 2)] == r"\hyperref[claim:a.scale]{?}"


def test_a_state_without_a_word_is_shown_by_its_name():
    table = VerdictTable("c", (), ("a",), (("R", ((("p", ""),),)),), words=())
    assert tex_cells(verdict_table_tex(table, results(p=REFUTED)), table)[("R", 0)] == \
        r"\hyperref[claim:p]{fails}"


# -- Markdown ------------------------------------------------------------------------------------

def test_markdown_one_row_per_table_row_with_the_same_words():
    lines = verdict_table_md(TABLE, by_id())
    rows = [ln for ln in lines if ln.startswith("| ") and not ln.startswith("| |")]
    assert len(rows) == len(TABLE.rows)
    assert lines[0] == ("| | a bias: per channel | a scale: per sample | a scale: global |")
    assert lines[1] == "|---|---|---|---|"
    assert md_cells(lines) == {
        ("Alpha", 0): "YES", ("Alpha", 1): "", ("Alpha", 2): r"ONLY-AT $\epsilon = 0$",
        ("Beta", 0): "", ("Beta", 1): "NO", ("Beta", 2): "NO"}
    legend = next(ln for ln in lines if ln.startswith("Each cell"))
    for word, text in (("YES", "the output is unchanged"), ("?", "undecided"),
                       (r"ONLY-AT $\epsilon = 0$", "unchanged only under the condition")):
        assert f"{word} {text}" in legend


def test_markdown_and_latex_say_the_same_word_in_every_cell():
    for changes in ({}, {"a_bias": UNDECIDED}, {"a_scale": PROVED}, {"b_sample0": PROVED},
                    {"b_fails": UNDECIDED}):
        found = by_id(**changes)
        tex, md = tex_cells(verdict_table_tex(TABLE, found)), md_cells(
            verdict_table_md(TABLE, found))
        assert tex.keys() == md.keys()
        for key, cell in tex.items():
            word = re.sub(r"^\\hyperref\[claim:[^\]]+\]\{(.*)\}$", r"\1", cell)
            assert _math(word) == md[key], (changes, key)


def test_markdown_headers_fold_groups_and_stacked_lines():
    table = VerdictTable("c", (("a bias", 2),), ("per\\\\channel", r"global"),
                         (("R", ((("p", ""),), ())),), WORDS)
    lines = verdict_table_md(table, results(p=PROVED))
    assert lines[0] == "| | a bias: per channel | a bias: global |"
    plain = VerdictTable("c", (), ("one", "two"), (("R", ((), (("p", ""),))),), WORDS)
    lines = verdict_table_md(plain, results(p=PROVED))
    assert lines[0] == "| | one | two |" and md_cells(lines, plain)[("R", 1)] == "YES"


# -- read off the verdicts: one changed verdict changes exactly its cell --------------------------

def _changes():
    """(cell, claim id, new status, whether the claim decides the cell) for every claim of the
    table and every verdict it does not have."""
    found = by_id()
    for head, cells in TABLE.rows:
        for col, cell in enumerate(cells):
            decider = cell_verdict(cell, found)[2] if cell else None
            for cid, _ in cell:
                for status in (PROVED, REFUTED, UNDECIDED):
                    if status != STATUSES[cid]:
                        yield (head, col), cid, status, cid == decider


def _changed(render, cells, before, after) -> set:
    old, new = cells(render(TABLE, before)), cells(render(TABLE, after))
    assert old.keys() == new.keys()
    return {k for k in old if old[k] != new[k]}


@pytest.mark.parametrize("where, cid, status, decides", list(_changes()))
def test_changing_one_verdict_changes_that_cell_and_no_other(where, cid, status, decides):
    before, after = by_id(), by_id(**{cid.replace(".", "_"): status})
    for render, cells in ((verdict_table_tex, tex_cells), (verdict_table_md, md_cells)):
        changed = _changed(render, cells, before, after)
        if decides:   # the claim that decides a cell: changing it changes the cell
            assert changed == {where}, (render.__name__, cid, status, changed)
        else:
            assert changed <= {where}, (render.__name__, cid, status, changed)


def test_a_claim_behind_a_proved_one_changes_nothing():
    # with a.scale proved, a.scale0 (at epsilon = 0) is never reached, whatever its verdict
    base = by_id(a_scale=PROVED)
    for status in (REFUTED, UNDECIDED):
        other = by_id(a_scale=PROVED, a_scale0=status)
        assert verdict_table_tex(TABLE, base) == verdict_table_tex(TABLE, other)
        assert verdict_table_md(TABLE, base) == verdict_table_md(TABLE, other)


def test_every_verdict_undecided_makes_every_non_empty_cell_undecided():
    found = {cid: result(cid, UNDECIDED) for cid in STATUSES}
    tex, md = tex_cells(verdict_table_tex(TABLE, found)), md_cells(verdict_table_md(TABLE, found))
    for key, cell in tex.items():
        assert (cell == "") == (md[key] == "")
        if cell:
            assert cell.endswith("{?}") and md[key] == "?"


# -- the normalization report's own table --------------------------------------------------------

@pytest.fixture(scope="module")
def normalization_table():
    from derive.claims import normalization
    claims = {c.id: c for c in normalization.claims()}
    return normalization.table(), claims


def test_the_normalization_table_links_existing_claims_and_follows_their_verdicts(
        normalization_table):
    table, claims = normalization_table
    ids = [cid for _, cells in table.rows for cell in cells for cid, _ in cell]
    assert len(ids) == len(set(ids)), "a claim decides at most one cell"
    assert set(ids) <= claims.keys()
    expected = {cid: result(cid, claims[cid].expected) for cid in ids}
    tex = verdict_table_tex(table, expected)
    cells = tex_cells(tex, table)
    filled = sum(1 for _, row in table.rows for cell in row if cell)
    assert sum(1 for c in cells.values() if c) == filled
    assert tex.count(r"\hyperref[claim:") == filled
    for head, row in table.rows:
        for col, cell in enumerate(row):
            if cell:
                state, _, cid = cell_verdict(cell, expected)
                assert state != "undecided", (head, col)
                assert cells[(head, col)].startswith(rf"\hyperref[claim:{cid}]")
    assert len(md_cells(verdict_table_md(table, expected), table)) == len(cells)
    # every cell turns undecided with its claims
    undecided = {cid: result(cid, UNDECIDED) for cid in ids}
    cells = tex_cells(verdict_table_tex(table, undecided), table)
    assert all(c.endswith(r"{\textcolor{undecided}{?}}") for c in cells.values() if c)


# -- the Markdown rendering ------------------------------------------------------

def test_markdown_cells_carry_no_latex_commands(normalization_table):
    table, claims = normalization_table
    ids = [cid for _, cells in table.rows for cell in cells for cid, _ in cell]
    lines = verdict_table_md(table, {cid: result(cid, claims[cid].expected) for cid in ids})
    assert not any("\\textcolor" in cell for cell in md_cells(lines, table).values())


def test_markdown_cells_name_the_deciding_claim():
    cells = md_cells(verdict_table_md(TABLE, by_id()), raw=True)
    assert cells[("Alpha", 2)].endswith("](#a.scale0)")


def test_markdown_document_shows_the_prose_after_an_opening_table():
    story = Story("s", "T", "A.", sections=(), opening=(
        Section("Opening", "Before the table.", table=TABLE, after="After the table."),))
    md = document(story, list(by_id().values()))
    assert "Before the table." in md and "After the table." in md
