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


def claim_rows(args, cache: Path, goal: str) -> list:
    """One row per claim the check prints (its own time, as the check measured it), and one
    for the whole command."""
    seconds, stdout = run(args, cache)
    rows = []
    for line in stdout.splitlines():
        found = CLAIM_LINE.match(line)
        if found:
            status, claim, took = found.groups()
            rows.append((f"  {claim} ({status.lower()}), every layer, cold", float(took),
                         goal))
    rows.append((f"derive check {Path(args[1]).name}, cold, every layer, --jobs 1", seconds,
                 ""))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-cold", action="store_true",
                        help="leave out the cold report (about 2 min on 2 cores)")
    parser.add_argument("--axes-only", action="store_true",
                        help="only the claims over several axes (a few seconds)")
    args = parser.parse_args()
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "derive")],
                   check=True, stdout=subprocess.DEVNULL)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.axes_only:
            rows += claim_rows(["check", str(AXES_EXAMPLE), "--jobs", "1"],
                               Path(tmp, "cache-axes"), "<= 3 s")
            return _print(rows)
        cache, out = Path(tmp, "cache"), Path(tmp, "out")
        report = ["report", "--out", str(out), "--quiet"]
        if not args.skip_cold:
            # the goal was set for the two reports of [BN] (the third came later)
            two = ["report", "--out", str(Path(tmp, "out2")), "--quiet", "--topic",
                   "centering,batchnorm"]
            rows.append(("derive report, every layer, centering and batchnorm, PDFs, cold",
                         timed(two, Path(tmp, "cache2"), out), "<= 15 s (moonshot 5 s)"))
            rows.append(("derive report, every layer, all three reports, PDFs, cold cache",
                         timed(report, cache, out), "-"))
        else:
            timed(report, cache, out)
        rows.append(("the same, warm cache, nothing changed", timed(report, cache, out),
                     "<= 2 s"))
        rows.append(("derive list, warm", timed(["list", "--quiet"], cache, out), "<= 1 s"))
        for frameworks, goal in (("none", "<= 1.5 s"), ("torch,jax", "<= 4 s")):
            fresh = Path(tmp, f"cache-{frameworks}")
            rows.append((f"derive check LayerNorm example, cold, --frameworks {frameworks}",
                         timed(["check", str(EXAMPLE), "--frameworks", frameworks, "--jobs",
                                "1"], fresh, out), goal))
        rows += claim_rows(["check", str(AXES_EXAMPLE), "--jobs", "1"],
                           Path(tmp, "cache-axes"), "<= 3 s")
    _print(rows)


def _print(rows) -> None:
    width = max(len(r[0]) for r in rows)
    print(f"{'what':<{width}}  {'seconds':>8}  goal")
    for what, seconds, goal in rows:
        print(f"{what:<{width}}  {seconds:8.1f}  {goal}")
    print(f"({os.cpu_count()} cores; each row one run of the command line)")


if __name__ == "__main__":
    main()
