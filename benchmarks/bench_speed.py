"""The speed a user feels, as whole commands; prints a table.

    .venv/bin/python benchmarks/bench_speed.py [--skip-cold]

Each row runs the command line in a subprocess, as a user would, with its own cache
directory (``DERIVE_CACHE``): *cold* starts from an empty one (no verified results, no
compiled JAX programs), *warm* runs the same command again with nothing changed.  Measured on
this machine; the README quotes the figures of a 2-core run.  The symbolic proofs side by
side with tensorgrad are in ``bench_tensorgrad.py``.

``derive``'s own modules are compiled to bytecode first (``compileall``), as an installed
package is and as Python does on the first run of a checkout: with PYTHONDONTWRITEBYTECODE
set, every command would compile them again (about 0.3 s), which no user pays.

The claims over several axes (``examples/bias_before_normalization.py``: a bias before
BatchNorm, proved, and before LayerNorm, refuted) are timed one by one, with every layer, as
the check prints them: the time of the claim itself, and what the command took in all.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "layernorm_backward.py"
AXES_EXAMPLE = ROOT / "examples" / "bias_before_normalization.py"
CLAIM_LINE = re.compile(r"^(PROVED|REFUTED|UNDECIDED)\s+(\S+)\s.*\((\d+(?:\.\d+)?) s\)\s*$")


def run(args, cache: Path) -> tuple[float, str]:
    """(seconds, standard output) of one run of the command line."""
    env = {**os.environ, "DERIVE_CACHE": str(cache)}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "derive", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    seconds = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        raise SystemExit(f"derive {' '.join(args)} failed: {proc.stderr.strip()[-500:]}")
    return seconds, proc.stdout


def timed(args, cache: Path, out: Path) -> float:
    return run(args, cache)[0]


def claim_rows(args, caches, goal: str) -> list:
    """One row per claim the check prints (its own time, as the check measured it), and one
    for the whole command; one run per cache directory in ``caches`` (each empty)."""
    claims: dict = {}
    whole = []
    for cache in caches:
        seconds, stdout = run(args, cache)
        whole.append(seconds)
        for line in stdout.splitlines():
            found = CLAIM_LINE.match(line)
            if found:
                status, claim, took = found.groups()
                claims.setdefault(f"  {claim} ({status.lower()}), every layer, cold",
                                  []).append(float(took))
    return ([(what, times, goal) for what, times in claims.items()]
            + [(f"derive check {Path(args[1]).name}, cold, every layer, --jobs 1", whole, "")])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-cold", action="store_true",
                        help="leave out the cold reports (about 2 min on 2 cores)")
    parser.add_argument("--axes-only", action="store_true",
                        help="only the claims over several axes (a few seconds)")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="run every row N times and print the median and the range "
                             "(a shared machine's timings vary by 20%% and more)")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat takes a positive number")
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "derive")],
                   check=True, stdout=subprocess.DEVNULL)
    times = range(args.repeat)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        def fresh(name):   # an empty cache directory per run
            return [Path(tmp, f"{name}-{n}") for n in times]

        axes = ["check", str(AXES_EXAMPLE), "--jobs", "1"]
        if args.axes_only:
            rows += claim_rows(axes, fresh("cache-axes"), "<= 3 s")
            return _print(rows, args.repeat)
        out = Path(tmp, "out")
        report = ["report", "--out", str(out), "--quiet"]
        caches = fresh("cache")
        if not args.skip_cold:
            # the goal was set for the two reports of [BN] (the third came later)
            two = ["report", "--out", str(Path(tmp, "out2")), "--quiet", "--topic",
                   "centering,batchnorm"]
            rows.append(("derive report, every layer, centering and batchnorm, PDFs, cold",
                         [timed(two, c, out) for c in fresh("cache2")],
                         "<= 15 s (moonshot 5 s)"))
            rows.append(("derive report, every layer, all three reports, PDFs, cold cache",
                         [timed(report, c, out) for c in caches], "-"))
        else:
            timed(report, caches[0], out)
        warm = caches[-1]
        rows.append(("the same, warm cache, nothing changed",
                     [timed(report, warm, out) for _ in times], "<= 2 s"))
        rows.append(("derive list, warm", [timed(["list", "--quiet"], warm, out)
                                           for _ in times], "<= 1 s"))
        for frameworks, goal in (("none", "<= 1.5 s"), ("torch,jax", "<= 4 s")):
            check = ["check", str(EXAMPLE), "--frameworks", frameworks, "--jobs", "1"]
            rows.append((f"derive check LayerNorm example, cold, --frameworks {frameworks}",
                         [timed(check, c, out) for c in fresh(f"cache-{frameworks}")], goal))
        rows += claim_rows(axes, fresh("cache-axes"), "<= 3 s")
    _print(rows, args.repeat)


def _print(rows, repeat: int) -> None:
    """One line per row: its seconds (with several runs, the median and the range)."""
    shown = [(what, f"{statistics.median(t):.1f}" + (f" ({min(t):.1f}-{max(t):.1f})"
                                                      if len(t) > 1 else ""), goal)
             for what, t, goal in rows]
    width = max(len(r[0]) for r in shown)
    column = max(len("seconds"), *(len(r[1]) for r in shown))
    print(f"{'what':<{width}}  {'seconds':>{column}}  goal")
    for what, seconds, goal in shown:
        print(f"{what:<{width}}  {seconds:>{column}}  {goal}")
    print(f"({os.cpu_count()} cores; each row "
          + ("one run of the command line)" if repeat == 1 else
             f"the median of {repeat} runs of the command line, and their range)"))


if __name__ == "__main__":
    main()
