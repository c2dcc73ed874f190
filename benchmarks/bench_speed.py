"""The speed a user feels, as whole commands; prints a table.

    .venv/bin/python benchmarks/bench_speed.py [--skip-cold]

Each row runs the command line in a subprocess, as a user would, with its own cache
directory (``DERIVE_CACHE``): *cold* starts from an empty one (no verified results, no
compiled JAX programs), *warm* runs the same command again with nothing changed.  Measured on
this machine; the README quotes the figures of a 2-core run.  The symbolic proofs side by
side with tensorgrad are in ``bench_tensorgrad.py``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "layernorm_backward.py"


def timed(args, cache: Path, out: Path) -> float:
    env = {**os.environ, "DERIVE_CACHE": str(cache)}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "derive", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    seconds = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        raise SystemExit(f"derive {' '.join(args)} failed: {proc.stderr.strip()[-500:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-cold", action="store_true",
                        help="leave out the cold report (about 80 s on 2 cores)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cache, out = Path(tmp, "cache"), Path(tmp, "out")
        report = ["report", "--out", str(out), "--quiet"]
        if not args.skip_cold:
            rows.append(("derive report, every layer, both reports, PDFs, cold cache",
                         timed(report, cache, out), "<= 15 s (moonshot 5 s)"))
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
    width = max(len(r[0]) for r in rows)
    print(f"{'what':<{width}}  {'seconds':>8}  goal")
    for what, seconds, goal in rows:
        print(f"{what:<{width}}  {seconds:8.1f}  {goal}")
    print(f"({os.cpu_count()} cores; each row one run of the command line)")


if __name__ == "__main__":
    main()
