"""LaTeX: a SymPy printer for the batch calculus, and the report document.

The printer subclasses SymPy's ``LatexPrinter`` and adds only the project's node types, so
precedence and settings flow through SymPy's own machinery.  The document renderer reads the
checked results and the topic's story; it computes nothing.
"""

from __future__ import annotations

import contextlib
import re

import sympy as sp
from sympy.printing.latex import LatexPrinter

from ..calculus import BatchSum, Grad, Held, Mean, unname
from ..core import PROVED, REFUTED, Result, all_assumptions, error_bound
from ..rules import RULES
from .common import (Story, failing_sizes, implementation_check, library_versions,
                     proved_from, sizes_phrase, table_legend, table_rows)


class BatchLatexPrinter(LatexPrinter):
    """LaTeX for means, sums, held statistics and unevaluated derivatives.

    ``abbreviations`` maps sub-expressions to the names a story gives them (mu, sigma^2):
    bound indices are canonical, so a statistic is the same object wherever it occurs.
    """

    abbreviations: dict = {}
    folds: dict = {}
    # ((input x, its mean, the radicands r of its scale sqrt(r), the name xhat), ...): a
    # product holding x_k - mean and 1/sqrt(r) prints xhat_k in their place
    normalized: tuple = ()

    def doprint(self, expr, **kwargs):
        # a story's folds put its statistics back where a rule wrote them out (sum x_j as
        # m mu_B): an identity, so the printed line is the same expression in the paper's terms
        # a proof's named statistics print as what they name, so the story's names apply
        expr = unname(expr)
        if self.folds:
            expr = expr.xreplace(self.folds)
        return super().doprint(expr, **kwargs)

    # {(expr, keywords): LaTeX} inside ``abbreviated``, for its abbreviations, folds and
    # normalized names: a proof's steps repeat most of the expression before them, so each
    # sub-expression is printed once per block instead of once per step.  (The printer keeps
    # no other state: what it prints depends on the expression, the keywords and those three.)
    memo: dict | None = None

    def _print(self, expr, **kwargs):
        if not isinstance(expr, sp.Basic):
            return super()._print(expr, **kwargs)
        key = (expr, tuple(sorted(kwargs.items())))
        try:
            done = self.memo.get(key) if self.memo is not None else None
        except TypeError:   # a keyword that does not hash: printed, not remembered
            key = done = None
        if done is None:
            done = self.abbreviations.get(expr)
            if done is None:
                done = super()._print(expr, **kwargs)
            if self.memo is not None and key is not None:
                self.memo[key] = done
        return done

    # a statistic printed by its name is one symbol: 2 mu_B, not 2 (mu_B)
    def _named(self, expr) -> bool:
        return isinstance(expr, sp.Basic) and expr in self.abbreviations

    def parenthesize(self, item, level, is_neg=False, strict=False):
        if self._named(item):
            return self.abbreviations[item]
        return super().parenthesize(item, level, is_neg, strict)

    def _print_Mul(self, expr, **kwargs):
        folded = self._normalize(expr)
        return self._print(folded) if folded is not None else super()._print_Mul(expr, **kwargs)

    def _normalize(self, expr):
        """``expr`` with (x_k - mu)/sqrt(r) written xhat_k, one root per centered factor, or
        None when there is nothing to fold (an identity: the value is the same)."""
        for base, mean, radicands, name in self.normalized:
            factors = list(expr.args)
            centered = [n for n, f in enumerate(factors) if f.is_Add
                        and isinstance(f + mean, sp.Indexed) and (f + mean).base == base]
            for n, f in enumerate(factors):
                if not (centered and f.is_Pow and f.base in radicands and f.exp.is_Rational
                        and f.exp.q in (1, 2) and f.exp < 0):
                    continue
                pairs = min(len(centered), -2 * f.exp)
                for c in centered[:pairs]:
                    factors[c] = name[(factors[c] + mean).indices]
                power = f.exp + sp.Rational(pairs, 2)
                root = self.abbreviations.get(sp.sqrt(f.base))
                # what is left of 1/r^k prints as a power of the root's name: 1/s^2
                factors[n] = (sp.Symbol(root) ** (2 * power) if root and power.is_integer
                              else sp.Pow(f.base, power))
                return sp.Mul(*factors)
        return None

    def _print_Pow(self, expr, **kwargs):
        # (sigma^2 + eps)^(3/2) = s^3 when the story names the root s
        if expr.exp.is_Rational and expr.exp.q == 2 and expr.exp.p != 1:
            name = self.abbreviations.get(sp.sqrt(expr.base))
            if name is not None:
                power = expr.exp.p
                if power == -1:
                    return rf"\frac{{1}}{{{name}}}"
                return (rf"\frac{{1}}{{{name}^{{{-power}}}}}" if power < 0
                        else rf"{name}^{{{power}}}")
        return super()._print_Pow(expr, **kwargs)

    def _needs_mul_brackets(self, expr, first=False, last=False) -> bool:
        return not self._named(expr) and super()._needs_mul_brackets(expr, first, last)

    def _needs_add_brackets(self, expr) -> bool:
        return not self._named(expr) and super()._needs_add_brackets(expr)

    def _reduction(self, expr, prefix):
        body = self._print(expr.body)
        if expr.body.is_Add:
            body = r"\left(" + body + r"\right)"
        j = self._print(expr.index)
        n = self._print(expr.size)
        return rf"{prefix}\sum_{{{j}=1}}^{{{n}}} {body}"

    def _print_Mean(self, expr: Mean):
        folded = self._expectation(expr)
        if folded is not None:
            return folded
        return self._reduction(expr, rf"\frac{{1}}{{{self._print(expr.size)}}}")

    def _expectation(self, expr: Mean):
        """E[body] in the paper's notation, the bound index dropped -- when that is
        unambiguous: every sample in the body carries the bound index alone, and no delta or
        free sample index mixes with it.  Otherwise None (the sum is printed)."""
        j = expr.index
        samples = _own_samples(expr.body)   # an inner statistic is closed: not looked into
        if not samples or expr.body.has(sp.KroneckerDelta):
            return None
        if any(len(s.indices) > 1 for s in samples):
            # a tensor (x_{j,c}): the mean names the index it runs over, E_j[x_{j,c}]
            if any(j not in s.indices for s in samples):
                return None
            return rf"\operatorname{{E}}_{{{self._print(j)}}}\!\left[{self._print(expr.body)}\right]"
        if any(s.indices != (j,) for s in samples):
            return None
        plain = expr.body.xreplace({s: _SampleName(str(s.base.label)) for s in samples})
        return rf"\operatorname{{E}}\!\left[{self._print(plain)}\right]"

    def _as_ordered_terms(self, expr, order=None):
        """Terms in the paper's order: samples first, then parameters, then their increments
        (Delta b), then statistics, numbers last: u_i + (b + Delta b) - E[u + b], not
        Delta b + b + u_i - ...; positive terms before negative ones within each rank."""
        if not isinstance(expr, sp.Add):
            return super()._as_ordered_terms(expr, order)
        return sorted(expr.args, key=lambda t: (_rank(t), t.could_extract_minus_sign(),
                                                sp.default_sort_key(t)))

    def _print_BatchSum(self, expr: BatchSum):
        return self._reduction(expr, "")

    def _print_Held(self, expr: Held):
        return r"\operatorname{sg}\!\left(" + self._print(expr.args[0]) + r"\right)"

    def _print_Grad(self, expr: Grad):
        inner = self._print(expr.expr)
        if expr.expr.is_Add or isinstance(expr.expr, (Mean, BatchSum)):
            inner = r"\left(" + inner + r"\right)"
        out = rf"\frac{{\partial}}{{\partial {self._print(expr.wrt)}}} {inner}"
        if expr.at is None:
            return out
        # the value in full, not its name (and so not from the memo of named printing)
        saved = self.abbreviations, self.memo
        self.abbreviations, self.memo = {}, {}
        try:
            at = self._print(expr.at)
        finally:
            self.abbreviations, self.memo = saved
        return rf"\left.{out}\right|_{{{self._print(expr.wrt)} = {at}}}"

    def _print_Function(self, expr, exp=None):
        name = getattr(expr.func, "_latex_name", None)
        if name is None:
            return super()._print_Function(expr, exp)
        args = ", ".join(self._print(a) for a in expr.args)
        out = rf"{name}\!\left({args}\right)"
        return rf"{out}^{{{exp}}}" if exp else out

    def _print_Indexed(self, expr):
        base = self._print(expr.base.label)
        return f"{base}_{{{', '.join(self._print(i) for i in expr.indices)}}}"

    def _print_Dummy(self, expr):
        return expr.name


class _SampleName(sp.Symbol):
    """A sample's name with its index dropped, inside E[...]: u for u_j."""


def _own_samples(expr) -> set:
    """The samples of ``expr`` outside any reduction nested in it."""
    if isinstance(expr, sp.Indexed):
        return {expr}
    if isinstance(expr, (Mean, BatchSum)):
        return set()
    return set().union(*(_own_samples(a) for a in expr.args)) if expr.args else set()


def _rank(term) -> int:
    _, rest = term.as_coeff_Mul()
    if isinstance(rest, _SampleName) or (rest.is_Mul and any(isinstance(f, _SampleName)
                                                             for f in rest.args)):
        return 0
    if rest.has(Mean, BatchSum, Held, Grad):
        return 3
    if rest.is_number:
        return 4
    if rest.has(sp.Indexed):
        return 0
    if any(str(s).startswith("\\Delta") for s in rest.free_symbols):
        return 2
    return 1


_PRINTER = BatchLatexPrinter({"mul_symbol": None})


def tex(expr) -> str:
    """LaTeX of an expression of the batch calculus."""
    return _PRINTER.doprint(sp.sympify(expr))


@contextlib.contextmanager
def abbreviated(pairs, folds=(), normalized=()):
    """Print each expression of ``pairs`` ((expr, latex), ...) as its name inside the block,
    first replace each expression of ``folds`` ((expr, equal expr), ...) by its equal, and
    write each normalized value of ``normalized`` by its name (``BatchLatexPrinter``)."""
    saved = _PRINTER.abbreviations, _PRINTER.folds, _PRINTER.normalized, _PRINTER.memo
    _PRINTER.memo = {}
    _PRINTER.abbreviations = {sp.sympify(e): name for e, name in pairs}
    _PRINTER.folds = {sp.sympify(e): sp.sympify(v) for e, v in folds}
    _PRINTER.normalized = tuple((b, sp.sympify(m), tuple(sp.sympify(r) for r in rs), n)
                                for b, m, rs, n in normalized)
    try:
        yield
    finally:
        _PRINTER.abbreviations, _PRINTER.folds, _PRINTER.normalized, _PRINTER.memo = saved


def equation_tex(eq) -> str:
    return f"{tex(eq.lhs)} = {tex(eq.rhs)}"


# -- the document ------------------------------------------------------------------------------

# Only packages of texlive-latex-base and -recommended: a fresh Debian gets exactly what
# bootstrap's apt list pulls in (tests/test_tex_dependencies.py checks every file a build
# reads).  The default OT1 Computer Modern needs no font package; the text characters OT1
# lacks (< > |) are set as mathematics (\textless would need the bitmap TS1 fonts of a package
# bootstrap does not install), and non-ASCII text goes through _UNICODE.
PREAMBLE = r"""\documentclass[11pt]{article}
\usepackage[a4paper,margin=2.3cm]{geometry}
\usepackage{amsmath,amssymb,amsthm}
\usepackage{booktabs}
\usepackage{array}
\usepackage{longtable}
\usepackage{xcolor}
\usepackage[hidelinks]{hyperref}
\usepackage{graphicx}
% \fit{math}: the formula as is, or shrunk to 80% of the line when it is wider (logged as
% "derive: scaled", which the typesetting test counts)
\newsavebox{\fitbox}
\newcommand{\fit}[1]{\sbox{\fitbox}{$\displaystyle #1$}%
  \ifdim\wd\fitbox>0.8\linewidth\typeout{derive: scaled formula on line \the\inputlineno}%
  \resizebox{0.8\linewidth}{!}{\usebox{\fitbox}}%
  \else\usebox{\fitbox}\fi}
% \stepfit{math}{broken}: the formula on one line, or its aligned broken form when too wide
% (the braces keep the inner & from the enclosing alignment while a branch is skipped)
\newcommand{\stepfit}[2]{\sbox{\fitbox}{$\displaystyle #1$}%
  \ifdim\wd\fitbox>0.8\linewidth{\begin{aligned}[t]#2\end{aligned}}\else\usebox{\fitbox}\fi}
% \eqfit{lhs}{rhs}: lhs = rhs on one line, or on two (lhs, then = rhs) when that is too wide;
% rhs comes as \fit or \stepfit
\newcommand{\eqfit}[2]{\sbox{\fitbox}{$\displaystyle #1 = #2$}%
  \ifdim\wd\fitbox>\linewidth{\begin{aligned}[t]&\fit{#1}\\&\quad= #2\end{aligned}}%
  \else\usebox{\fitbox}\fi}
\allowdisplaybreaks
% the section sign from the math symbol font: LaTeX takes it from TS1 by default, whose fonts
% (cm-super) bootstrap does not install, and pdflatex would fall back to bitmaps
\DeclareTextSymbol{\textsection}{OMS}{120}\DeclareTextSymbolDefault{\textsection}{OMS}
% a figure may take half a page at its bottom, beside the text that cites it
\renewcommand{\bottomfraction}{0.55}
\renewcommand{\textfraction}{0.15}
\ifdefined\pdftrailerid \pdfinfoomitdate=1 \pdftrailerid{} \pdfsuppressptexinfo=-1 \fi
\definecolor{proved}{HTML}{1B7F3B}
\definecolor{refuted}{HTML}{B3261E}
\definecolor{undecided}{HTML}{8A6D00}
\newcommand{\verdict}[2]{\fcolorbox{#1}{#1!8}{\textcolor{#1}{\textbf{\strut #2}}}}
% \cited{status}{verdict}{id}: a claim cited in the prose, linked to it
\newcommand{\cited}[3]{\textcolor{#1}{\textbf{#2}}
  (\hyperref[claim:#3]{Claim~\ref*{claim:#3}}, \texttt{\small #3})}
\theoremstyle{definition}
\newtheorem{claimenv}{Claim}
\newcommand{\rulename}[1]{\textsf{\small #1}}
\setlength{\parskip}{0.4em}
\setlength{\parindent}{0pt}
\setlength{\emergencystretch}{3em}
"""


_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
            "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
            "^": r"\textasciicircum{}", "<": "$<$", ">": "$>$", "|": r"$|$"}
_UNICODE = {"α": r"$\alpha$", "β": r"$\beta$", "γ": r"$\gamma$", "δ": r"$\delta$",
            "Δ": r"$\Delta$", "ε": r"$\varepsilon$", "η": r"$\eta$", "θ": r"$\theta$",
            "μ": r"$\mu$", "σ": r"$\sigma$", "Σ": r"$\Sigma$", "∂": r"$\partial$",
            "≥": r"$\ge$", "→": r"$\to$"}


def _escape(text: str) -> str:
    """Plain text (summaries, reasons) as LaTeX text, in one pass."""
    return "".join(_SPECIAL.get(ch) or _UNICODE.get(ch) or ch for ch in text)


def _verdict_box(result: Result) -> str:
    v = result.verdict
    if v.status == PROVED:
        phrase = rf"PROVED for every ${sizes_phrase(proved_from(result), '≥', latex=True)}$"
    elif v.status == REFUTED:
        phrase = rf"REFUTED at ${sizes_phrase(failing_sizes(result), latex=True)}$"
    else:
        phrase = "UNDECIDED"
    return rf"\verdict{{{v.status}}}{{{phrase}}}"


ELIDE_AFTER = 5000   # characters of LaTeX: a step longer than this is summarized


def _step(expr) -> str:
    """A derivation line: a sum too wide for the line breaks after whole terms (TeX measures
    and chooses); what cannot break is shrunk to the line; a huge one is summarized."""
    source = tex(expr)
    if len(source) > ELIDE_AFTER:
        return (rf"\text{{\small [an expression of {sp.count_ops(expr)} operations; "
                r"in full in the certificate]}")
    if not isinstance(expr, sp.Add):
        return rf"\fit{{{source}}}"
    lines = [r"\\&\quad ".join(rf"\fit{{{chunk}}}" for chunk in _chunks(expr))]
    return rf"\stepfit{{{source}}}{{&{lines[0]}}}"


BREAK_AFTER = 58   # glyphs of a display line, roughly: a chunk of terms longer than this breaks


def _glyphs(source: str) -> int:
    """About how many glyphs wide a formula is (an overestimate: sub- and superscripts count
    in full)."""
    s = re.sub(r"\\(left|right|!|,|;|quad)(?![A-Za-z])", "", source)
    s = re.sub(r"\\operatorname\{(\w+)\}", r"\1", s)
    s = re.sub(r"\\[A-Za-z]+", "x", s)
    return len(re.sub(r"[{}^_&\s]", "", s))


def _chunks(expr: sp.Add) -> list[str]:
    """The terms of a sum, signed, grouped into lines of at most BREAK_AFTER glyphs."""
    chunks, current = [], ""
    for n, term in enumerate(_PRINTER._as_ordered_terms(expr)):
        sign = ""
        if n and term.could_extract_minus_sign():
            sign, term = "- ", -term
        elif n:
            sign = "+ "
        body = tex(term)
        if _PRINTER._needs_add_brackets(term):
            body = r"\left(" + body + r"\right)"
        piece = sign + body
        if current and _glyphs(current + piece) > BREAK_AFTER:
            chunks.append(current)
            current = piece
        else:
            current = f"{current} {piece}".strip()
    return chunks + [current]


READABLE = 240   # glyphs, about four display lines: a longer intermediate step is not shown


def _steps_tex(label: str, start, steps) -> list[str]:
    """One side's derivation.  The rule goes in the equation's tag, which amsmath moves below
    a long line.  Intermediate steps too long to read (the expanded sums between two readable
    lines) are passed over in one line naming their rules; they are re-checked like every
    other step and given in full in the certificate.  The last step is always shown."""
    if not steps:
        return [rf"  {label} &= {_step(start)} \tag*{{\rulename{{nothing to reduce}}}}\\"]
    lines = [rf"  {label} &= {_step(start)} \notag\\"]
    skipped: list = []
    for n, s in enumerate(steps):
        # a step that failed its re-check is always shown
        if n < len(steps) - 1 and s.ok and _glyphs(tex(s.after)) > READABLE:
            skipped.append(s)
            continue
        if skipped:
            rules = ", ".join(dict.fromkeys(t.rule for t in skipped))
            check = r"\ \checkmark" if all(t.ok and t.checks for t in skipped) else ""
            count = f"{len(skipped)} step{'s' if len(skipped) > 1 else ''}"
            lines.append(rf"  &\quad\vdots \quad\text{{\small {count}, each too long to "
                         rf"show (in the certificate)}} \tag*{{\rulename{{{rules}}}{check}}}\\")
            skipped = []
        check = r"\ \checkmark" if s.ok and s.checks else ""
        lines.append(rf"  &= {_step(s.after)} \tag*{{\rulename{{{s.rule}}}{check}}}\\")
    return lines


def _proof_tex(result: Result, settings) -> list[str]:
    out = [r"\begin{proof}[Derivation]"]
    if not result.proof:
        out += [_escape(result.verdict.reason), r"\end{proof}"]
        return out
    for n, part in enumerate(result.proof, 1):
        eq = part.equation
        if len(result.proof) > 1:
            out.append(rf"\par\textit{{Part {n}: {eq.label}.}}")
        out.append(r"\begin{align*}")
        out += _steps_tex(r"\text{left}", eq.lhs, part.lhs_steps)
        out += _steps_tex(r"\text{right}", eq.rhs, part.rhs_steps)
        if part.residual == 0:
            out.append(r"  \text{left} - \text{right} &= 0 \tag*{\rulename{algebra}}")
        else:
            out.append(rf"  \text{{left}} - \text{{right}} &= {_step(part.residual)} "
                       r"\tag*{does not reduce to $0$}")
        out.append(r"\end{align*}")
    out.append(r"\end{proof}")
    return out


def value_tex(v) -> str:
    """A counterexample's value: a number, a vector (u_1, ..., u_N), or for a tensor over two
    axes the matrix of its entries (rows along the first axis); deeper ones nest parentheses."""
    if not isinstance(v, list):
        return tex(v)
    if v and all(isinstance(row, list) and not any(isinstance(x, list) for x in row)
                 for row in v):
        rows = r" \\ ".join(" & ".join(tex(x) for x in row) for row in v)
        return r"\begin{pmatrix} " + rows + r" \end{pmatrix}"
    return r"\left(" + ", ".join(value_tex(x) for x in v) + r"\right)"


def _counterexample_tex(result: Result) -> list[str]:
    cex = result.verdict.counterexample
    if cex is None:
        return []
    values = []
    for name, v in cex.values.items():
        shown = value_tex(v)
        values.append(f"{name} = {shown}")
    smallest = ("batch size that fails is" if len(result.claim.axes) == 1
                else "sizes that fail are")
    lines = [rf"\paragraph{{Counterexample.}} The smallest {smallest} "
             rf"${sizes_phrase(failing_sizes(result), latex=True)}$. Take ${', '.join(values)}$"
             + "".join(rf" and ${tex(f)} = {tex(v)}$" for f, v in cex.function_equations())
             + ". Then",
             r"\[ \text{left} = " + tex(cex.lhs) + r",\qquad \text{right} = " + tex(cex.rhs)
             + r",\qquad \text{left} - \text{right} = " + tex(cex.residual) + r" \ne 0, \]",
             r"computed in exact arithmetic with every sum written out."]
    if result.verdict.residual is not None:
        lines.append(rf"For every ${tex(result.claim.batch.size)}$ the residual is exactly "
                     rf"$\text{{left}} - \text{{right}} = {tex(result.verdict.residual)}$.")
    return lines


def _evidence_tex(result: Result) -> list[str]:
    lines = [r"\par\smallskip\begin{tabular}{@{}lp{0.68\linewidth}l@{}}", r"\toprule",
             r"layer & finding & agrees \\ \midrule"]
    for e in result.evidence:
        lines.append(rf"{e.kind} & {_finding_tex(result, e)} & {'yes' if e.ok else 'no'} \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    # the torch and jax rows say what a per-framework table would; versions are in the log
    return lines


def _finding_tex(result: Result, e) -> str:
    """A layer's finding as LaTeX: the summary, with the exact residuals typeset rather than
    in the plain-text form the summary carries for terminals."""
    residuals = [p.residual for p in result.proof if p.residual != 0]
    if e.kind == "symbolic" and e.holds is False and residuals and "residual" in e.summary:
        return "a residual does not reduce to $0$: " + ", ".join(f"${tex(r)}$" for r in residuals)
    cex = result.verdict.counterexample
    if e.kind == "counterexample" and cex is not None:
        return (rf"${sizes_phrase(failing_sizes(result), latex=True)}$: residual "
                rf"${tex(cex.residual)}$ (exact)")
    return _escape(e.summary)


def _sci(value: float) -> str:
    """A tolerance, 1e-08, as 10^{-8} in LaTeX."""
    mantissa, exponent = f"{value:.0e}".split("e")
    factor = "" if mantissa == "1" else mantissa + r"\cdot "
    return rf"${factor}10^{{{int(exponent)}}}$"


def _error(value: float) -> str:
    """A largest error as the power of ten it stays below (``core.error_bound``), $<10^{-11}$:
    the same on every machine, whatever its round-off."""
    return _below(error_bound(value))


def _below(bound: float) -> str:
    """A bound already taken, $<10^{-5}$."""
    return rf"$<{_sci(bound).strip('$')}$"


def claim_tex(result: Result, settings) -> str:
    """A claim as the reader meets it: statement, verdict, what backs it in one sentence, and
    for a refuted claim the counterexample; the derivation and the tables are in Appendix A."""
    c = result.claim
    # the right side may break after whole terms, on its own line (_step decides in TeX)
    eqs = r" \\ ".join(rf"\eqfit{{{tex(e.lhs)}}}{{{_step(e.rhs)}}}" for e in c.equations)
    lines = [rf"\begin{{claimenv}}[{_escape(c.title)}]\label{{claim:{c.id}}}",
             # the id beside the verdict, under the header: long ids do not fit beside titles
             rf"\hfill\break {_verdict_box(result)}\enspace{{\small\texttt{{{c.id}}}}}\par",
             c.text,
             r"\begin{gather*}" + eqs + r"\end{gather*}",
             r"{\raggedright\emph{Assumptions:} " + _assumptions_tex(c) + "."
             + (rf" \emph{{Source:}} {c.source}." if c.source else "")
             + (r" \emph{Uses:} " + ", ".join(rf"\texttt{{{u}}}" for u in c.uses) + "."
                if c.uses else "") + r"\par}",
             r"\end{claimenv}"]
    lines += _counterexample_tex(result)
    lines.append(_evidence_line(result))
    return "\n".join(lines)


_LAYER_NAMES = {"symbolic": "the symbolic derivation", "explicit": "explicit sums",
                "numeric": "numeric instances", "torch": "PyTorch", "jax": "JAX",
                "simulation": "a simulated training run",
                "counterexample": "the exact counterexample"}


def _assumptions_tex(claim) -> str:
    """"$a > 0$, $\\epsilon > 0$", or "none" for a claim that assumes nothing (an empty $$
    would be display math to TeX)."""
    found = all_assumptions(claim)
    return ", ".join(f"${a}$" for a in found) if found else "none"


def _evidence_line(result: Result) -> str:
    """One sentence: which layers back the verdict, with a link to the details."""
    agree = [_LAYER_NAMES.get(e.kind, e.kind) for e in result.evidence
             if e.ok and e.kind != "counterexample"]
    other = [_LAYER_NAMES.get(e.kind, e.kind) for e in result.evidence if not e.ok]
    if result.verdict.status == REFUTED:
        what = "Refuted by the exact counterexample above"
        if agree:
            what += "; " + _join(agree) + " find it false too"
    elif agree:
        what = "Backed by " + _join(agree)
    else:
        what = "Not backed by any layer"
    if other:
        what += "; " + _join(other) + (" does" if len(other) == 1 else " do") + " not agree"
    return (rf"\par{{\small {what}. Derivation and evidence: "
            rf"Appendix~\ref{{app:derivations}}, p.~\pageref{{deriv:{result.id}}}.}}")


def _join(words) -> str:
    words = list(words)
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def derivation_tex(result: Result, settings) -> str:
    """A claim's appendix entry: its derivation and the table of every layer's evidence."""
    c = result.claim
    lines = [rf"\subsection*{{Claim~\ref{{claim:{c.id}}}: {_escape(c.title)}}}"
             rf"\label{{deriv:{c.id}}}"
             rf"\addcontentsline{{toc}}{{subsection}}{{{_escape(c.title)}}}"]
    lines += _proof_tex(result, settings)
    lines += _evidence_tex(result)
    return "\n".join(lines)


def derivations_appendix(results, settings, order, rendered=None) -> list[str]:
    ident = ", ".join(map(str, settings.step_identity_sizes))
    points = ", ".join(map(str, settings.step_point_sizes))
    lines = [r"\section{Derivations and evidence}\label{app:derivations}",
             r"Each derivation below reduces both sides of a claim, one named rule at a time "
             r"(the rules are listed in Appendix~\ref{app:rules}), until their difference is "
             r"$0$. A \checkmark{} marks a step re-checked on its own, independently of the "
             r"rule that produced it, with every sum written out: as an identity at "
             rf"$N = {ident}$ and exactly at random rational points at $N = {points}$. "
             r"Each table lists what every \emph{evidence layer} -- an independent way of "
             r"checking the claim -- found: \emph{explicit}, plain SymPy with every sum "
             r"written out for small $N$; \emph{numeric}, floating-point instances drawn at "
             r"random and by Hypothesis (a library that searches for failing inputs and "
             r"shrinks a failure no other layer has seen to the simplest), derivatives by "
             r"the complex step "
             r"($f'(x) \approx \operatorname{Im} f(x + ih)/h$, exact to rounding); "
             r"\emph{torch} and \emph{jax}, the same computation differentiated by the "
             r"framework's autograd; \emph{simulation}, a training run held against the "
             r"proved closed form. ``Agrees'' means the layer points the same way as the "
             r"verdict: for a refuted claim, failing instances are what refutes it."]
    by_id = {r.id: r for r in results}
    rendered = rendered or {}
    lines += [rendered.get(("derivation", cid)) or derivation_tex(by_id[cid], settings)
              for cid in order]
    return lines


def summary_table(results) -> list[str]:
    lines = [r"\begin{center}\small\begin{tabular}{@{}llr@{}}", r"\toprule",
             r"claim & verdict & layers agreeing \\ \midrule"]
    for r in results:
        agreeing = sum(e.ok for e in r.evidence)
        lines.append(rf"\hyperref[claim:{r.id}]{{\texttt{{{r.id}}}}} & {_verdict_box(r)} & "
                     rf"{agreeing} of {len(r.evidence)} \\")
    lines += [r"\bottomrule", r"\end{tabular}\end{center}"]
    return lines


def rules_appendix(results=None) -> list[str]:
    """The rule table; with ``results``, only the rules their derivations use."""
    used = None if results is None else {s.rule for r in results for p in r.proof
                                         for s in p.lhs_steps + p.rhs_steps}
    lines = [r"\section{The rules}\label{app:rules}",
             r"Each rule holds for every batch size $N \ge 1$. A reduction's bound index "
             r"is not free in it, so a closed statistic such as $\frac1N\sum_j x_j$ is a "
             r"constant of any outer reduction.",
             r"\begin{description}"]
    for rule in RULES.values():  # a list, not a table, so that it can break across pages
        if used is not None and rule.name not in used:
            continue
        lines.append(rf"\item[\rulename{{{rule.name}}}] ${rule.latex}$\\ "
                     rf"{{\small {_escape(rule.description)}}}")
    lines.append(r"\end{description}")
    return lines


def _log_row(e) -> tuple[str, str, str]:
    """(checks, failures, max. error) of one evidence item, for the log table."""
    d = e.details
    if e.kind == "symbolic":
        return f"{d.get('steps', 0)} steps", "", ""
    if e.kind == "explicit":
        return f"{len(d['holds_at']) + len(d['fails_at'])} sizes", str(len(d["fails_at"])), ""
    if e.kind == "numeric":
        count = d["random"]["instances"] + d["hypothesis"]["instances"]
        fails = d["random"]["failures"] + int(d["hypothesis"]["failed"])
        err = max(d["random"]["max_error"], d["hypothesis"]["max_error"])
        return f"{count} instances", str(fails), _error(err)
    if e.kind == "counterexample":
        return f"$N = {d['N']}$", "", ""
    # every other layer (autograd, simulation) states its own checks, failures, worst error
    err = d.get("max_error")
    return (_escape(str(d.get("checks", ""))), str(d.get("failures", "")),
            _error(err) if isinstance(err, float) else "")


def log_appendix(results, settings, timings: bool = False) -> list[str]:
    cols = "lrrr" + ("r" if timings else "") + "l"
    lines = [r"\section{Log of every check}\label{app:log}",
             r"Each claim was checked by every layer below. \emph{symbolic}: the rule table, "
             r"for a symbolic $N$. \emph{explicit}: plain SymPy with every sum written out, "
             rf"$N = {settings.explicit_sizes[0]}, \dots, {settings.explicit_sizes[-1]}$. "
             r"\emph{numeric}: float64 instances, seeded NumPy and derandomized Hypothesis, "
             r"derivatives by the complex step; error "
             r"$|\text{left}-\text{right}|/(1+\max(|\text{left}|,|\text{right}|))$ over the "
             r"instances that pass, tolerance $10^{-9}$; a failure is an instance above it. "
             r"\emph{torch}, \emph{jax}: the same computation in the framework, float64, "
             r"derivatives by its reverse-mode autograd with held statistics detached, and "
             r"where the computation has a standardization also by the framework's "
             r"batch-norm operator; Hypothesis instances, $N$ up to 64, same error, "
             r"tolerance $10^{-8}$ (a framework that is not installed adds no row). "
             r"\emph{counterexample}: an exact search from the smallest "
             rf"batch size up to $N = {settings.counterexample_max_size}$. "
             rf"The symbolic proof of each claim ran under a time budget of "
             rf"{settings.budget:g}\,s. \emph{{agrees}}: the layer points the same way as "
             r"the verdict -- for a refuted claim, its failures are what refutes it.",
             # a longtable breaks across pages: a tabular would run off the first one
             rf"{{\small\setlength{{\tabcolsep}}{{4pt}}\begin{{longtable}}{{@{{}}{cols}@{{}}}}",
             r"\toprule",
             r"layer & checks & failures & max.\ error & "
             + (r"time (s) & " if timings else "") + r"agrees \\ \midrule\endhead"]
    width = 6 if timings else 5
    for r in results:   # the claim's id as a row of its own: ids are long
        lines.append(rf"\multicolumn{{{width}}}{{@{{}}l}}{{\texttt{{{r.id}}}, "
                     rf"{r.verdict.status}}} \\*")
        for e in r.evidence:
            checks, fails, err = _log_row(e)
            time_cell = f"{e.seconds:.2f} & " if timings else ""
            lines.append(rf"\quad {e.kind} & {checks} & {fails} & {err} & {time_cell}"
                         rf"{'yes' if e.ok else 'no'} \\")
        lines.append(r"\addlinespace[0.2em]")
    lines += [r"\bottomrule", r"\end{longtable}}",
              r"Libraries: "
              + ", ".join(f"{_escape(k)} {_escape(v)}" for k, v in library_versions().items())
              + "."]
    if not timings:
        lines.append(r"Wall times are left out of this document so that it is reproducible "
                     r"byte for byte; \texttt{derive report} prints them, writes them to "
                     r"the \texttt{.timings.json} file beside it, and adds them here with "
                     r"\texttt{--timings}.")
    return lines


def document(story: Story, results: list[Result], settings, timings: bool = False,
             rendered=None) -> str:
    """The report.  ``rendered``: {(part, claim id): LaTeX} of the claims' parts rendered
    before (``claim_parts``), taken as they are."""
    with abbreviated(story.abbreviations, story.folds, story.normalized):
        return _document(story, results, settings, timings, rendered or {})


def claim_parts(story: Story, result: Result, settings) -> dict:
    """The parts of ``story``'s report that are one claim's and nothing else's, rendered as
    ``document`` renders them (a report writes them while later claims are being checked)."""
    with abbreviated(story.abbreviations, story.folds, story.normalized):
        return {("claim", result.id): claim_tex(result, settings),
                ("derivation", result.id): derivation_tex(result, settings)}


def _figure_tex(name: str, caption: str) -> str:
    # [!htbp]: beside its claim when it fits there, never pushed to the end of the document
    return "\n".join([r"\begin{figure}[!htbp]\centering",
                      rf"\includegraphics{{{name}.pdf}}",
                      rf"\caption{{{caption}}}\label{{fig:{name}}}",
                      r"\end{figure}"])


_CITE = re.compile(r"\{\{claim:([^}]+)\}\}")


_IMPLEMENTATION = re.compile(r"\{\{implementation:([^}]+)\}\}")


def _implementation_tex(result) -> str:
    """The table of a claim's implementation check (float32 and float64 against a framework's
    own backward), or a sentence saying it did not run."""
    check = implementation_check(result)
    if check is None:
        return (r"\emph{(The implementation check needs PyTorch, which was not installed "
                r"when this report was built.)}")
    lines = [r"\begin{center}\small\begin{tabular}{@{}lllr@{}}", r"\toprule",
             r"dtype & compared with & largest relative error & tolerance \\ \midrule"]
    for row in check["rows"]:
        lines.append(rf"{row['dtype']} & {_escape(check['against'])} & "
                     rf"{_below(row['max_error_below'])} & {_sci(row['tolerance'])} \\")
    lines += [r"\bottomrule", r"\end{tabular}\end{center}"]
    return "\n".join(lines)


def verdict_table_tex(table, by_id) -> str:
    """A ``VerdictTable`` as a tabular: each cell the word for its state (``cell_verdict``),
    linked to the claim that decides it, and the legend below."""
    width = len(table.columns)
    lines = [r"\begin{center}\small", rf"\begin{{tabular}}{{@{{}}l*{{{width}}}{{c}}@{{}}}}",
             r"\toprule"]
    if table.groups:
        lines.append(" & " + " & ".join(rf"\multicolumn{{{n}}}{{c}}{{{head}}}"
                                        for head, n in table.groups) + r" \\")
        start, rules = 2, []
        for _, n in table.groups:
            rules.append(rf"\cmidrule(lr){{{start}-{start + n - 1}}}")
            start += n
        lines.append("".join(rules))
    lines.append(" & " + " & ".join(rf"\shortstack{{{c}}}" for c in table.columns)
                 + r" \\ \midrule")
    for head, cells in table_rows(table, by_id):
        shown = ["" if cell is None else rf"\hyperref[claim:{cell[1]}]{{{cell[0]}}}"
                 for cell in cells]
        lines.append(head + " & " + " & ".join(shown) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{center}"]
    legend = "; ".join(f"{word} {text}" for word, text in table_legend(table))
    lines.append(r"{\small " + table.caption + " " + legend + ".}")
    return "\n".join(lines)


def cite_claims(text: str, by_id) -> str:
    """Each {{claim:ID}} in story prose as the claim's verdict, linked to the claim; each
    {{implementation:ID}} as the table of that claim's implementation check."""
    text = _IMPLEMENTATION.sub(lambda m: _implementation_tex(by_id[m.group(1)]), text)
    def one(match):
        r = by_id[match.group(1)]
        v = r.verdict
        word = {PROVED: lambda: rf"proved for every ${sizes_phrase(proved_from(r), '≥', True)}$",
                REFUTED: lambda: rf"refuted at ${sizes_phrase(failing_sizes(r), latex=True)}$"
                }.get(v.status, lambda: "undecided")()
        return rf"\cited{{{v.status}}}{{{word}}}{{{r.id}}}"
    return _CITE.sub(one, text)


def _document(story: Story, results: list[Result], settings, timings: bool,
              rendered: dict) -> str:
    by_id = {r.id: r for r in results}
    n_proved = sum(r.verdict.status == PROVED for r in results)
    n_refuted = sum(r.verdict.status == REFUTED for r in results)
    parts = [PREAMBLE + r"\begin{document}",
             "\n".join([rf"\title{{{story.title}}}",
                        r"\author{derive " + _escape(story.version) + "}", r"\date{}",
                        r"\maketitle"]),
             r"\begin{abstract}" + cite_claims(story.abstract, by_id)
             + rf" Of {len(results)} claims, {n_proved} are proved for every batch size and "
               rf"{n_refuted} are refuted with a concrete counterexample.\end{{abstract}}"]
    placed = set()

    def section_tex(section):
        out = [rf"\section{{{section.title}}}", cite_claims(section.text, by_id)]
        if section.table is not None:
            out.append(verdict_table_tex(section.table, by_id))
        for cid in section.claims:
            out.append(rendered.get(("claim", cid)) or claim_tex(by_id[cid], settings))
            out += [_figure_tex(name, caption) for name, caption, claim in section.figures
                    if claim == cid and name not in placed]
            placed.update(name for name, _, claim in section.figures if claim == cid)
        out += [_figure_tex(name, caption) for name, caption, claim in section.figures
                if claim not in section.claims and name not in placed]
        placed.update(name for name, _, _ in section.figures)
        if section.after:
            out.append(cite_claims(section.after, by_id))
        return out

    for section in story.opening:   # the answers first
        parts += section_tex(section)
    parts.append("\n".join(summary_table(results)))
    for section in story.sections:
        parts += section_tex(section)
    if story.references:
        parts.append(r"\section*{References}" + "\n"
                     + "\n\n".join(story.references))
    order = [cid for section in story.sections for cid in section.claims]
    order += [r.id for r in results if r.id not in order]
    parts.append(r"\appendix")
    parts.append("\n".join(derivations_appendix(results, settings, order, rendered)))
    parts.append("\n".join(rules_appendix(results)))
    parts.append("\n".join(log_appendix(results, settings, timings)))
    parts.append(r"\end{document}")
    return "\n\n".join(parts) + "\n"
