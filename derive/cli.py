"""The command line: ``python -m derive report | list``.

Usage errors print one line and exit 2; a run whose claims or outputs fall short exits 1.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .cache import Summary
from .claims import TOPICS
from .collect import UsageError
from .core import DeriveError

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage dump, no traceback)."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _choices(text: str, allowed, what: str, otherwise: str = "") -> tuple[str, ...]:
    """A comma-separated subset of ``allowed``, in the order given, without repeats."""
    items = [f.strip() for f in text.split(",") if f.strip()]
    unknown = [f for f in items if f not in allowed]
    if unknown or not items:
        raise argparse.ArgumentTypeError(
            f"unknown {what} {', '.join(map(repr, unknown)) or repr(text)}: "
            f"choose from {', '.join(allowed)}{otherwise}")
    return tuple(dict.fromkeys(items))


def _topics(text: str) -> tuple[str, ...]:
    """--topic: all, or a comma-separated list of topics, in the order given."""
    if text.strip() == "all":
        return tuple(TOPICS)
    return _choices(text, tuple(TOPICS), "topic", ", or all")


def _formats(text: str):
    from .report import FORMATS
    return _choices(text, FORMATS, "format")


def _out_dir(text: str) -> Path:
    """--out: a directory that exists or can be created, and can be written."""
    from .report import prepare_out_dir
    try:
        return prepare_out_dir(Path(text))
    except DeriveError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix("--out ")) from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: give a positive number of seconds")
    return value


def _whole(low: int, what: str, high: int | None = None):
    """An argparse type: a whole number >= ``low`` (and <= ``high``)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low or (high is not None and value > high):
            bound = f"from {low} to {high:,}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"{text}: {what} must be {bound}")
        return value
    return parse


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"{text}: the learning rate must be a positive number")
    return value


# the simulate command's bounds, here so that the parser imports no simulation code
REGIMES = ("centering-held", "centering-through", "scale-held", "scale-through")
MAX_STEPS = 10_000_000


def _frameworks(text: str) -> tuple[str, ...]:
    """--frameworks: a comma-separated subset of torch,jax, or none."""
    from .frameworks import FRAMEWORKS
    if text.strip() == "none":
        return ()
    return _choices(text, FRAMEWORKS, "framework", otherwise=", or none alone")


FRAMEWORKS_HELP = ("autograd evidence layers to run where installed: a comma-separated subset "
                   "of torch,jax, or none (default: torch,jax)")
JOBS_HELP = ("check this many claims at once, each in a worker process (default: every core, "
             "{cores} here; 1 checks them one by one in this process); the output is the same "
             "byte for byte")
FRESH_HELP = ("check every claim again, ignoring the cache of verified results (and replace "
              "what it holds); by default a claim checked before -- the same statement, "
              "settings, derive source and library versions -- is taken from the cache in "
              "$DERIVE_CACHE, else $XDG_CACHE_HOME/derive or ~/.cache/derive, which is kept "
              "under $DERIVE_CACHE_LIMIT megabytes (default 512; 0: no limit) by removing "
              "what was used least recently")


def _add_speed_options(parser) -> None:
    """--jobs and --fresh, shared by report, list and check."""
    parser.add_argument("--jobs", type=_whole(1, "--jobs"), default=None, metavar="N",
                        help=JOBS_HELP.format(cores=os.cpu_count() or 1))
    parser.add_argument("--fresh", action="store_true", help=FRESH_HELP)


def _parser() -> argparse.ArgumentParser:
    from . import __version__
    p = _Parser(prog="derive", description=(
        "Symbolic derivation verifier: proves the batch-normalization derivations of Ioffe & "
        "Szegedy (2015) for every batch size N, corroborates each claim independently "
        "(explicit N, numeric instances), and writes a LaTeX/PDF report and a JSON "
        "certificate."))
    p.add_argument("--version", action="version", version=f"derive {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    r = sub.add_parser("report", help="check every claim and write the report",
                       description="Check every claim and write one report per topic: "
                                   "centering ([BN] §2), batchnorm ([BN] §3, Algorithms 1-2, "
                                   "§3.3) and normalization (LayerNorm, InstanceNorm, "
                                   "GroupNorm, RMSNorm, weight normalization; BatchNorm's "
                                   "double backward), as reports/TOPIC.{tex,pdf,json}. "
                                   "Without a TeX "
                                   "engine the .tex and .json are still written. Claims are "
                                   "checked in parallel (--jobs), and a claim checked before "
                                   "is taken from the cache (--fresh: check all again); a PDF "
                                   "whose .tex did not change is not rebuilt.")
    r.add_argument("--topic", type=_topics, default=tuple(TOPICS), metavar="LIST",
                   help="which reports to write: a comma-separated subset of "
                        f"{','.join(TOPICS)}, or all (default: all)")
    r.add_argument("--out", type=_out_dir, default="reports", metavar="DIR",
                   help="directory for the outputs (default: reports)")
    r.add_argument("--format", type=_formats, default=("tex", "pdf", "json"),
                   metavar="LIST", help="comma-separated subset of tex,pdf,json,md "
                                        "(default: tex,pdf,json)")
    r.add_argument("--timings", action="store_true",
                   help="add wall times to the .tex and .json (then they differ run to run; "
                        "by default both are reproducible byte for byte)")
    r.add_argument("--frameworks", type=_frameworks, default=("torch", "jax"), metavar="LIST",
                   help=FRAMEWORKS_HELP)
    r.add_argument("--quiet", action="store_true", help="no progress lines")
    _add_speed_options(r)
    chk = sub.add_parser(
        "check", help="check the claims of your own Python file(s)",
        description="Run each FILE.py (only the files named), collect every Claim bound to a "
                    "top-level name (or in a top-level list or tuple), check each with every evidence "
                    "layer and print one line per claim, in file order. Claims are checked in "
                    "parallel (--jobs), and a claim checked before is taken from the cache "
                    "(--fresh: check all again). Exit status: 0 when every claim is "
                    "proved, 1 when any is refuted or undecided, 2 for a usage error.")
    chk.add_argument("files", nargs="+", type=Path, metavar="FILE.py")
    chk.add_argument("--timeout", type=_seconds, default=None, metavar="SECONDS",
                     help="time budget per claim; a claim that needs longer is undecided")
    chk.add_argument("--report", type=_out_dir, default=None, metavar="DIR",
                     help="also write each file's claims as a report in DIR")
    chk.add_argument("--format", type=_formats, default=("tex", "pdf", "json"), metavar="LIST",
                     help="formats for --report: comma-separated subset of tex,pdf,json,md")
    chk.add_argument("--frameworks", type=_frameworks, default=("torch", "jax"),
                     metavar="LIST", help=FRAMEWORKS_HELP)
    _add_speed_options(chk)
    sim = sub.add_parser(
        "simulate", help="train a small model and compare it with the proved closed forms",
        description="Train a small model by gradient descent on a fixed, seeded synthetic "
                    "batch (squared error to fixed targets) in four regimes -- centering with "
                    "the mean held (the paper's naive step) or differentiated through, scale "
                    "normalization (epsilon = 0) with the statistics held or through -- and "
                    "compare every step with the closed forms the report proves. Prints a "
                    "table; with --out, writes a figure per run (PDF and PNG). Exit status 0 "
                    "when every run lies on its closed form, 1 otherwise, 2 for a bad option.")
    sim.add_argument("--regime", choices=("all",) + REGIMES, default="all",
                     help="which regime to train (default: all)")
    sim.add_argument("--steps", type=_whole(1, "steps", MAX_STEPS), default=1000,
                     help="gradient steps per run (default: 1000)")
    sim.add_argument("--lr", type=_rate, default=0.01, metavar="ETA",
                     help="learning rate (default: 0.01)")
    sim.add_argument("--batch", type=_whole(2, "the batch size"), default=16, metavar="N",
                     help="samples in the batch, at least 2 (default: 16)")
    sim.add_argument("--seed", type=_whole(0, "the seed"), default=0,
                     help="seed of the synthetic batch (default: 0)")
    sim.add_argument("--out", type=_out_dir, default=None, metavar="DIR",
                     help="write the figures to DIR")
    sim.add_argument("--quiet", action="store_true", help="no progress bar")
    lst = sub.add_parser("list", help="check every claim and print a table of verdicts",
                         description="Check every built-in claim (with its report's "
                                     "settings) and print id, verdict, the catalog's expected "
                                     "verdict and the evidence. Claims "
                                     "checked before (by list or report) are answered from the "
                                     "cache; only those "
                                     "missing or stale there are checked (in parallel, "
                                     "--jobs), and stderr says how many came from the cache "
                                     "(--fresh: check all again).")
    lst.add_argument("--topic", type=_topics, default=tuple(TOPICS), metavar="LIST",
                     help="whose claims to list: a comma-separated subset of "
                          f"{','.join(TOPICS)}, or all (default: all)")
    lst.add_argument("--frameworks", type=_frameworks, default=("torch", "jax"),
                     metavar="LIST", help=FRAMEWORKS_HELP)
    lst.add_argument("--quiet", action="store_true", help="no progress lines")
    _add_speed_options(lst)
    return p


def _progress(quiet: bool, cache=None, topics=None):
    """Progress lines on stderr, in the claim order.  ``topics``: [(name, count)] to head
    each topic's lines with its name and count them within it."""
    if quiet:
        return None
    starts = {}
    begin = 0
    for name, count in topics or ():
        starts[begin + 1] = (name, begin, count)
        begin += count
    current = [0, None]

    def report(n, total, result):
        if n in starts:
            name, current[0], current[1] = starts[n]
            print(f"{name}:", file=sys.stderr, flush=True)
        shown, of = (n - current[0], current[1]) if topics else (n, total)
        cached = ", from the cache" if cache is not None and cache.served(result) else ""
        s = Summary.of(result)
        agree = sum(ok for _, ok in s.layers)
        print(f"[{shown}/{of}] {s.id:<36} {s.status:<9} "
              f"({agree}/{len(s.layers)} layers agree, {s.seconds:.2f} s{cached})",
              file=sys.stderr, flush=True)
    return report


def _cache(args):
    """The cache of verified results, or None.  Under a test runner (pytest) without
    $DERIVE_CACHE, None: a test suite never reads or writes the user's cache."""
    from .cache import Cache, size_limit
    if os.environ.get("PYTEST_CURRENT_TEST") and not os.environ.get("DERIVE_CACHE"):
        return None
    try:
        limit = size_limit()   # a limit that is not one is refused before any work, not after
    except ValueError as err:
        raise UsageError(str(err)) from None
    return Cache(fresh=args.fresh, limit=limit)


def _tidy(cache) -> None:
    """After a run: the cache back under its size limit, if it stored something."""
    if cache is not None:
        cache.tidy()


def _jobs(args) -> int:
    from .runner import default_jobs
    return args.jobs or default_jobs()


def _announce(quiet: bool = False):
    """The one line saying how many claims the cache answered."""
    def say(cached, total):
        if not quiet:
            print(f"{cached} of {total} claims from the cache", file=sys.stderr, flush=True)
    return say


def cmd_report(args) -> int:
    from dataclasses import replace

    from .report import build_many
    from .verify import Settings
    t0 = time.perf_counter()
    topics = list(args.topic)
    settings = {topic: replace(getattr(TOPICS[topic], "SETTINGS", Settings()),
                               frameworks=args.frameworks) for topic in topics}
    cache = _cache(args)
    claims = {topic: TOPICS[topic].claims() for topic in topics}
    progress = _progress(args.quiet, cache, [(topic, len(claims[topic])) for topic in topics])
    built = build_many(topics, args.out, args.format, settings, progress=progress,
                       timings=args.timings, jobs=_jobs(args), cache=cache,
                       announce=_announce(args.quiet or cache is None), claims=claims)
    results, written, warnings = [], [], []
    for _, found, files, warn in built:
        results += found
        written += files
        warnings += [w for w in warn if w not in warnings]
    for path in written:
        print(f"wrote {path}")
    for w in warnings:
        print(f"derive: {w}", file=sys.stderr)
    bad = [r for r in results
           if r.claim.expected and Summary.of(r).status != r.claim.expected]
    for r in bad:
        print(f"derive: {r.id}: verdict {r.verdict.status}, catalog expects "
              f"{r.claim.expected}: {r.verdict.reason}", file=sys.stderr)
    _tidy(cache)
    if not args.quiet:
        print(f"done in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return EXIT_FAIL if bad or warnings else EXIT_OK


LONG_RESIDUAL = 400   # characters: a longer residual is summarized on the terminal
SYMBOL = {"proved": "PROVED", "refuted": "REFUTED", "undecided": "UNDECIDED"}


def _claim_lines(result) -> list[str]:
    """One line per claim, then, for a refuted or undecided one, what the user needs."""
    import sympy as sp

    from .render.common import failing_sizes, sizes_phrase
    from .text import plain_name, text
    v = result.verdict
    layers = "  ".join(_brief(e) for e in result.evidence)
    lines = [f"{SYMBOL[v.status]:<10} {result.id:<40} {layers}  ({result.seconds:.2f} s)"]
    if v.counterexample is not None:
        cex = v.counterexample
        values = ", ".join(f"{plain_name(k)} = {_value(x)}" for k, x in cex.values.items())
        fns = "".join(f", {text(f)} = {text(v)}" for f, v in cex.function_equations())
        lines.append(f"    counterexample: {sizes_phrase(failing_sizes(result))}: {values}{fns}")
        lines.append(f"    left = {text(cex.lhs)}, right = {text(cex.rhs)}, "
                     f"residual = {text(cex.residual)} (exact)")
        if v.residual is not None:
            shown = text(v.residual)
            if len(shown) > LONG_RESIDUAL:   # a terminal line of pages helps nobody
                shown = (f"an expression of {sp.count_ops(v.residual)} operations "
                         "(in full in the report and certificate: --report DIR)")
            lines.append(f"    residual for every N: {shown}")
    elif v.status != "proved":
        lines.append(f"    reason: {v.reason}")
    return lines


def _brief(e) -> str:
    """'explicit ok (N = 1..4)': the layer, whether it agrees, and what it covered."""
    d, note = e.details, ""
    if e.kind == "symbolic" and "steps" in d:
        note = f"{d['steps']} steps"
    elif e.kind == "explicit" and "axes" in d and (d.get("holds_at") or d.get("fails_at")):
        sizes = d.get("holds_at", []) + d.get("fails_at", [])   # one list of sizes per axis
        top = ", ".join(str(max(s[n] for s in sizes)) for n in range(len(d["axes"])))
        note = f"{len(sizes)} sizes of ({', '.join(d['axes'])}) up to ({top})"
    elif e.kind == "explicit" and (d.get("holds_at") or d.get("fails_at")):
        sizes = sorted(d.get("holds_at", []) + d.get("fails_at", []))
        note = f"N = {sizes[0]}..{sizes[-1]}" if len(sizes) > 1 else f"N = {sizes[0]}"
    elif e.kind == "numeric" and "random" in d:
        n = d["random"]["instances"] + d["hypothesis"]["instances"]
        note = f"{n} instances"
    elif d.get("checks"):   # the autograd and simulation layers say what they covered
        note = str(d["checks"])
    return f"{e.kind} {'ok' if e.ok else 'no'}" + (f" ({note})" if note else "")


def _value(x):
    from .text import text
    # a tensor over several axes is a nested list: rows in parentheses, ((0, -1), (2, 1))
    return "(" + ", ".join(_value(v) for v in x) + ")" if isinstance(x, list) else text(x)


def cmd_check(args) -> int:
    from .collect import load_all
    from .report import file_story, write_results
    from .runner import check_many
    from .verify import Settings
    loaded = load_all(args.files)  # every file is loaded before anything is checked
    settings = Settings(timeout=args.timeout, explicit_budget=5.0, frameworks=args.frameworks)
    cache = _cache(args)
    claims = [c for _, found in loaded for c in found]

    def show(n, total, result):   # each claim's lines in file order, as its turn comes
        print("\n".join(_claim_lines(result)), flush=True)

    results = check_many(claims, settings, _jobs(args), show, cache,
                         _announce(cache is None))
    statuses = [r.verdict.status for r in results]
    warnings, start = [], 0
    for path, found in loaded:
        mine = results[start:start + len(found)]
        start += len(found)
        if args.report is not None:
            written, warn = write_results(file_story(path, found), mine, args.report,
                                          args.format, settings, cache=cache)
            warnings += warn
            for w in written:
                print(f"wrote {w}")
    for w in warnings:
        print(f"derive: {w}", file=sys.stderr)
    counts = {s: statuses.count(s) for s in ("proved", "refuted", "undecided")}
    print(", ".join(f"{n} {s}" for s, n in counts.items()))
    _tidy(cache)
    return EXIT_OK if counts["proved"] == len(statuses) and not warnings else EXIT_FAIL


def _progress_bar(steps: int, quiet: bool):
    """A bar on stderr for long runs (10^5 steps or more), redrawn at most 50 times a run."""
    if quiet or steps < 100_000:
        return None
    shown = {}

    def draw(label, fraction):
        filled = int(50 * fraction)
        if shown.get(label) == filled:
            return
        shown[label] = filled
        end = "\n" if fraction >= 1 else ""
        print(f"\r{label:<20} [{'#' * filled}{'.' * (50 - filled)}] {100 * fraction:3.0f}%",
              end=end, file=sys.stderr, flush=True)
    return draw


def cmd_simulate(args) -> int:
    from . import simulation
    from .report import write_atomically
    t0 = time.perf_counter()
    runs = simulation.standard_runs(args.regime, args.steps, args.lr, args.batch, args.seed,
                                    _progress_bar(args.steps, args.quiet))
    rows = [simulation.summary_row(r) for r in runs]
    cols = ("run", "steps", "parameter", "loss", "xhat moved", "closed form", "deviation",
            "verdict")
    widths = [max(len(str(row[c])) for row in rows + [dict(zip(cols, cols))]) for c in cols]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)).rstrip())
    for row in rows:
        line = "  ".join(str(row[c]).ljust(w) for c, w in zip(cols, widths)).rstrip()
        print(line + (f"  ({row['note']})" if row["note"] else ""))
    print(f"batch {args.batch}, seed {args.seed}, learning rate {args.lr:g}; deviation: "
          f"{simulation.ERROR}; tolerance {simulation.TOLERANCE:g}")
    if args.out is not None:
        from . import figures
        files = {}
        for run in runs:
            label = run.label.replace("<", "lt").replace(">", "gt")
            stem = "simulate-" + "".join(ch if ch.isalnum() else "-" for ch in label)
            stem = "-".join(part for part in stem.split("-") if part)
            for fmt in ("pdf", "png"):
                files[args.out / f"{stem}.{fmt}"] = figures.render(
                    lambda run=run: figures.run_figure(run), fmt)
        write_atomically(files)
        for path in sorted(files):
            print(f"wrote {path}")
    if not args.quiet:
        print(f"done in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return EXIT_OK if not any(row["failures"] for row in rows) else EXIT_FAIL


def cmd_list(args) -> int:
    from dataclasses import replace

    from .cache import IndexEntry
    from .runner import check_many
    from .verify import Settings
    cache = _cache(args)
    # each topic's claims with the topic's settings, as `report` checks them: the two commands
    # share their cache entries.  A topic is read from its stored index (ids, expected
    # verdicts, keys), which derive's source determines; its claims are built only when one of
    # them must be checked, or there is no index yet.
    entries, settings, places, built = [], [], [], {}
    for name in args.topic:
        topic_settings = replace(getattr(TOPICS[name], "SETTINGS", Settings()),
                                 frameworks=args.frameworks)
        found = cache.get_index(name, topic_settings) if cache is not None else None
        if found is None:
            built[name] = TOPICS[name].claims()
            found = (cache.put_index(name, topic_settings, built[name]) if cache is not None
                     else [IndexEntry(c.id, c.expected, None) for c in built[name]])
        entries += found
        settings += [topic_settings] * len(found)
        places += [(name, k) for k in range(len(found))]

    def claim(n):
        name, k = places[n]
        if name not in built:
            built[name] = TOPICS[name].claims()
            if [c.id for c in built[name]] != [e.id for e, (t, _) in zip(entries, places)
                                               if t == name]:
                raise DeriveError(f"the stored index of {name} does not match its claims; "
                                  "run again with --fresh")
        return built[name][k]

    # what is stored is read as summaries (the verdicts, not the proofs); the rest is checked
    summaries = [cache.get_summary(e.id, e.key) if cache is not None else None
                 for e in entries]
    todo = [n for n, found in enumerate(summaries) if found is None]
    announce = _announce(args.quiet or cache is None)
    progress = _progress(args.quiet, cache)
    shown = [0]   # progress lines go out in the claim order, stored ones between the checked

    def show_until(end):
        while shown[0] < end:
            if progress:
                progress(shown[0] + 1, len(entries), summaries[shown[0]])
            shown[0] += 1

    def checked(k, _, result):
        summaries[todo[k - 1]] = result
        show_until(todo[k - 1] + 1)

    stored = len(entries) - len(todo)
    check_many([claim(n) for n in todo], [settings[n] for n in todo], _jobs(args), checked,
               cache, lambda cached, _: announce(stored + cached, len(entries)))
    show_until(len(entries))
    summaries = [Summary.of(r) for r in summaries]
    rows = [("claim", "verdict", "expected", "evidence")]
    for s, e in zip(summaries, entries):
        rows.append((s.id, s.status, e.expected or "-",
                     ", ".join(f"{kind} {'ok' if ok else 'NO'}" for kind, ok in s.layers)))
    widths = [max(len(row[c]) for row in rows) for c in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[3])
    _tidy(cache)
    return EXIT_OK if all(s.status == (e.expected or s.status)
                          for s, e in zip(summaries, entries)) else EXIT_FAIL


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        return {"report": cmd_report, "list": cmd_list, "check": cmd_check,
                "simulate": cmd_simulate}[args.command](args)
    except UsageError as err:
        print(f"derive: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except DeriveError as err:
        print(f"derive: error: {err}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        print("derive: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAIL


def run() -> None:
    """The command line's entry point (``derive``, ``python -m derive``): ``main``, then the
    process ends at once.

    A run leaves SymPy's caches, the checked results and a few thousand modules behind, and
    the interpreter took 0.3-0.4 s to tear them down one by one after the work was done.
    By then every file is written and closed (atomically, ``report.write_atomically``) and
    the worker processes are stopped, so only the two output streams need flushing."""
    code = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):   # a closed pipe (``| head``): nothing more to say
            pass
    os._exit(code)


if __name__ == "__main__":
    run()
