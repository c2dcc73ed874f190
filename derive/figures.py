"""Figures of the simulated runs: vector PDF for the report, PNG for READMEs and Markdown.

Drawn with matplotlib's object interface (no pyplot, no global backend), in a fixed style
that matches the report -- Computer Modern text and mathematics at the document's sizes,
figures as wide as its text -- and written with every date and version stripped, so that the
same figure has the same bytes on every run.
"""

from __future__ import annotations

import io
import math

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from . import simulation
from .simulation import Run

TEXT_WIDTH = 6.3   # inches: the report's text is 16.4 cm wide
STYLE = {
    "font.family": "serif",
    "font.serif": ["cmr10"],
    "mathtext.fontset": "cm",
    "axes.formatter.use_mathtext": True,   # cmr10 has no minus sign; mathtext does
    "axes.unicode_minus": False,
    "font.size": 10,
    "axes.labelsize": 10,
    "axes.titlesize": 10,
    "legend.fontsize": 8.5,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.2,
    "lines.markersize": 3.5,
    "legend.frameon": False,
    "pdf.fonttype": 3,
    "pdf.compression": 6,
    "svg.hashsalt": "derive",
    "savefig.dpi": 150,
    "path.simplify": True,
}
# no dates, no versions: the bytes depend on the data only
PDF_METADATA = {"Creator": None, "Producer": None, "CreationDate": None, "ModDate": None}
PNG_METADATA = {"Software": None}
HELD, THROUGH, CLOSED = "#B3261E", "#1B5E9B", "#222222"


def _new(panels: int = 2, height: float = 2.3):
    fig = Figure(figsize=(TEXT_WIDTH, height), layout="constrained")
    return fig, fig.subplots(1, panels)


def _sample(steps: int, points: int = 400, keep=()) -> np.ndarray:
    """At most ``points`` step indices, evenly spread, plus ``keep`` (a crossing)."""
    idx = np.linspace(0, steps, min(steps + 1, points)).round().astype(int)
    extra = [k for k in keep if 0 <= k <= steps]
    return np.unique(np.concatenate((idx, extra)).astype(int))


def _markers(steps: int, count: int = 25) -> np.ndarray:
    return np.unique(np.linspace(0, steps, min(steps + 1, count)).round().astype(int))


def _label(ax, letter: str):
    ax.set_title(f"({letter})", loc="left")


def drift_figure(held: Run, through: Run) -> Figure:
    """b_t naive and through the mean, the closed form overlaid; the loss in both regimes."""
    fig, (ax, bx) = _new(height=1.95)   # short: it sits beside the answers on page 2
    t = np.arange(held.steps + 1)
    closed = simulation.drift_closed_form(held)
    ax.plot(t, closed, color=CLOSED, ls="--", lw=1, label=r"$b_0 - t\eta G$ (proved)")
    m = _markers(held.steps)
    ax.plot(m, held.params[m, 0], "o", color=HELD, mfc="none", label="held, simulated")
    ax.plot(t, through.params[:, 0], color=THROUGH, label="through, simulated")
    ax.set(xlabel=r"step $t$", ylabel=r"bias $b_t$")
    ax.legend(loc="upper left")
    _label(ax, "a")
    # one style per meaning in both panels: held as circles, through as a solid line (the two
    # losses coincide, and circles keep the held one visible on top of the other)
    bx.plot(t, through.loss, color=THROUGH, label="through the mean")
    bx.plot(m, held.loss[m], "o", color=HELD, mfc="none", label="held (naive step)")
    level = held.loss[0]
    bx.set_ylim(level - 0.5 * abs(level) - 1, level + 0.5 * abs(level) + 1)
    bx.set(xlabel=r"step $t$", ylabel=r"loss $\ell_t$")
    bx.legend(loc="lower right")
    _label(bx, "b")
    return fig


def _log10(values) -> np.ndarray:
    """log10 of positive data, for log axes drawn by hand.

    matplotlib's log scale transforms with NumPy's vectorized log, whose last bit depends on
    the CPU's SIMD path (AVX-512 or not): a coordinate in the PDF then differs by one digit
    between machines.  Python's math.log10 has no SIMD path, and rounding to 9 decimals (far
    below a printer's dot) leaves last-bit noise no place to show."""
    return np.array([round(math.log10(v), 9) for v in np.asarray(values, dtype=float)])


def _log_axis(axis, plain: bool = False):
    """Ticks of a hand-drawn log axis: 10^k at the integers the data spans, 2..9 between."""
    lo, hi = axis.get_view_interval()
    first, last = math.floor(lo), math.ceil(hi)
    major = [k for k in range(first, last + 1) if lo - 1e-9 <= k <= hi + 1e-9]
    minor = [round(k + math.log10(j), 9) for k in range(first, last) for j in range(2, 10)
             if lo <= k + math.log10(j) <= hi]
    axis.set_ticks(major, [f"{10 ** k:g}" if plain and k >= 0 else rf"$10^{{{k}}}$"
                           for k in major])
    axis.set_ticks(minor, minor=True)


def weight_norm_figure(through: Run, held: Run) -> Figure:
    """||w_t|| through the statistics on the proved recurrence; on log axes, against the
    held regime's growth like sqrt(t)."""
    fig, (ax, bx) = _new()
    t = _log10(np.arange(1, through.steps + 1))    # log axes: from the first step
    ax.plot(t, np.sqrt(simulation.norm_closed_form(through))[1:], color=CLOSED, ls="--",
            lw=1, label=r"$\sqrt{\|w_0\|^2 + \eta^2\sum_{s<t}\|\nabla\ell_s\|^2}$")
    m = np.unique(np.geomspace(1, through.steps, 30).round().astype(int))
    ax.plot(_log10(m), through.norm[m], "o", color=THROUGH, mfc="none",
            label=rf"$\|w_t\|$ simulated, $\eta = {through.lr:g}$")
    ax.set(xlabel=r"step $t$", ylabel=r"$\|w_t\|$")
    _log_axis(ax.xaxis)
    ax.legend(loc="lower right")
    _label(ax, "a")
    th = np.arange(1, held.steps + 1)
    c = abs(simulation.scale_constant(held.batch))
    bx.plot(_log10(th), _log10(np.sqrt(held.params[0, 0] ** 2 + 2 * held.lr * c * th)),
            color=CLOSED, ls="--", lw=1, label=r"$\sqrt{w_0^2 + 2\eta|C|t}$")
    bx.plot(_log10(th), _log10(np.abs(held.params[1:, 0])), color=HELD,
            label=rf"held, $C<0$ ($\eta = {held.lr:g}$)")
    bx.plot(_log10(th), _log10(through.norm[1:]), color=THROUGH,
            label=rf"through ($\eta = {through.lr:g}$)")
    bx.set(xlabel=r"step $t$", ylabel=r"$\|w_t\|$")
    _log_axis(bx.xaxis)
    _log_axis(bx.yaxis, plain=True)
    bx.legend(loc="upper left")
    _label(bx, "b")
    return fig


def naive_scale_figure(cross: Run, through: Run) -> Figure:
    """The held step with C > 0 drives w to 0 and across; the loss jumps there."""
    fig, (ax, bx) = _new()
    step = simulation.crossing(cross)
    keep = () if step is None else (step, step + 1)
    idx = _sample(cross.steps, keep=keep)
    closed = simulation.naive_scale_closed_form(cross)
    ax.axhline(0, color="#999999", lw=0.6)
    ax.plot(idx, closed[idx], color=CLOSED, ls="--", lw=1,
            label=r"$w \leftarrow w - \eta C/w$ (proved)")
    m = np.unique(np.concatenate((_markers(cross.steps), keep))).astype(int)
    ax.plot(m, cross.params[m, 0], "o", color=HELD, mfc="none", label="held: simulated")
    ax.plot(idx, through.params[idx, 0], color=THROUGH, label="through: simulated")
    if step is not None:
        for a in (ax, bx):
            a.axvline(step + 1, color="#999999", ls=":", lw=1)
    ax.set(xlabel=r"step $t$", ylabel=r"weight $w_t$")
    ax.set_ylim(min(-1.6, ax.get_ylim()[0]), None)   # room for the legend below the curve
    ax.legend(loc="lower left")
    _label(ax, "a")
    bx.plot(idx, cross.loss[idx], color=HELD, label="held")
    bx.plot(idx, through.loss[idx], color=THROUGH, ls=(0, (4, 3)), label="through")
    bx.set(xlabel=r"step $t$", ylabel=r"loss $\ell_t$")
    bx.legend(loc="center left")
    _label(bx, "b")
    return fig


def run_figure(run: Run) -> Figure:
    """One run of ``derive simulate``: its parameter against the closed form, and its loss."""
    fig, (ax, bx) = _new()
    step = simulation.crossing(run) if run.regime == "scale-held" else None
    idx = _sample(run.steps, 2000, () if step is None else (step, step + 1))
    if run.regime.startswith("centering"):
        value, closed, name = run.params[:, 0], simulation.drift_closed_form(run), r"$b_t$"
        form = r"$b_0 - t\eta G$" if run.regime.endswith("held") else r"$b_0$"
    elif run.regime == "scale-through":
        value, closed = run.norm, np.sqrt(simulation.norm_closed_form(run))
        name, form = r"$\|w_t\|$", r"$\|w_{t+1}\|^2 = \|w_t\|^2 + \eta^2\|\nabla\ell_t\|^2$"
    else:
        value, closed = run.params[:, 0], simulation.naive_scale_closed_form(run)
        name, form = r"$w_t$", r"$w \leftarrow w - \eta C/w$"
    ax.plot(idx, closed[idx], color=CLOSED, ls="--", lw=1, label=f"{form} (proved)")
    ax.plot(idx, value[idx], color=HELD if run.regime.endswith("held") else THROUGH,
            lw=0.9, alpha=0.8, label="simulated")
    ax.set(xlabel=r"step $t$", ylabel=name, title=f"{run.label}, $\\eta = {run.lr:g}$")
    ax.legend(loc="best")
    bx.plot(idx, run.loss[idx], color=CLOSED)
    bx.set(xlabel=r"step $t$", ylabel=r"loss $\ell_t$")
    return fig


def report_figure(name: str) -> Figure:
    runs = simulation.report_runs()
    if name == "fig-drift":
        return drift_figure(runs["centering-held"], runs["centering-through"])
    if name == "fig-weight-norm":
        return weight_norm_figure(runs["scale-through"], runs["scale-held-grow"])
    if name == "fig-naive-scale":
        return naive_scale_figure(runs["scale-held-cross"], runs["scale-through-scalar"])
    raise KeyError(f"no figure named {name!r}")


REPORT_FIGURES = ("fig-drift", "fig-weight-norm", "fig-naive-scale")


def render(draw, fmt: str) -> bytes:
    """The bytes of the figure ``draw()`` returns, as 'pdf' or 'png', in the fixed style."""
    with matplotlib.rc_context(STYLE):
        fig = draw()
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, metadata=PDF_METADATA if fmt == "pdf" else PNG_METADATA)
    return buf.getvalue()


def report_files(names) -> dict[str, bytes]:
    """{'NAME.pdf': bytes} for each report figure named."""
    return {f"{n}.pdf": render(lambda n=n: report_figure(n), "pdf") for n in names}
