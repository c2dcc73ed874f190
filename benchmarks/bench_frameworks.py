"""What the torch and jax evidence layers add to the reports: prints a table.

    .venv/bin/python benchmarks/bench_frameworks.py [--cold]

Imports each framework once (as a report run does), then runs its layer on every gradient
claim of both reports with the report's settings.  ``--cold`` points JAX's compilation cache
at an empty directory, as on a machine's first run; without it the user's cache is used.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", action="store_true", help="start with an empty JAX cache")
    args = parser.parse_args()
    if args.cold:
        os.environ["DERIVE_CACHE"] = tempfile.mkdtemp(prefix="derive-bench-")

    from derive import frameworks
    from derive.claims import batchnorm, centering
    from derive.verify import Settings

    settings = Settings()
    claims = [c for c in centering.claims() + batchnorm.claims() if frameworks.applies(c)]
    totals = {}
    print(f"{len(claims)} gradient claims, {settings.framework_examples} Hypothesis instances "
          f"each, JAX cache {'cold' if args.cold else 'warm'}")
    print(f"{'claim':42s} {'torch s':>8s} {'jax s':>8s}")
    for name in frameworks.FRAMEWORKS:
        t0 = time.perf_counter()
        if frameworks.backend(name) is None:
            print(f"{name} is not installed")
            continue
        totals[name] = {"import": time.perf_counter() - t0, "claims": {}}
    names = list(totals)
    for claim in claims:   # as the report runs them: one set of instances for both
        t0 = time.perf_counter()
        found = frameworks.layers(claim, names, settings)
        elapsed = time.perf_counter() - t0
        for name, ev in zip(names, found):   # each framework's share, drawing split evenly
            totals[name]["claims"][claim.id] = ev.seconds
        print(f"{claim.id:42s} " + " ".join(f"{ev.seconds:8.2f}" for ev in found)
              + f"   ({elapsed:.2f} s together)")
    grand = 0.0
    for name, t in totals.items():
        layer = sum(t["claims"].values())
        grand += layer + t["import"]
        print(f"{name}: import {t['import']:.2f} s, layer {layer:.2f} s")
    print(f"both layers, imports included: {grand:.2f} s (target: at most 30 s)")


if __name__ == "__main__":
    main()
