"""Speed figures for the simulations; prints a table.  Run: python benchmarks/bench_simulate.py

* the report's simulations and figures: every run the evidence uses, and the three figures as
  PDF (target: 10 s or less);
* 10^6 steps of each scalar regime -- centering held and through, the held scale step with
  C < 0 and C > 0 -- with their closed-form checks (target: 5 s or less in all), and the
  vector regime for comparison.
"""

from __future__ import annotations

import time

from derive import figures, simulation


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main():
    rows = []
    seconds, runs = timed(simulation.report_runs)
    rows.append(("report: simulated runs", seconds, f"{len(runs)} runs"))
    draw, _ = timed(lambda: figures.report_files(figures.REPORT_FIGURES))
    rows.append(("report: three figures (PDF)", draw, ""))
    evidence, _ = timed(lambda: [f() for f in simulation.EVIDENCE.values()])
    rows.append(("report: evidence of three claims", evidence, ""))
    rows.append(("report: total (target <= 10 s)", seconds + draw + evidence, ""))
    scalar = 0.0
    for regime, gain, label in (("centering-held", 0.0, "centering-held"),
                                ("centering-through", 0.0, "centering-through"),
                                ("scale-held", simulation.GROW_GAIN, "scale-held, C < 0"),
                                ("scale-held", simulation.CROSS_GAIN, "scale-held, C > 0")):
        t, run = timed(lambda r=regime, g=gain: simulation.simulate(r, 10**6, 0.01, 16, 0,
                                                                    gain=g))
        c, checks = timed(lambda r=run: simulation.run_checks(r))
        worst = max(ch.max_error for ch in checks)
        rows.append((f"10^6 steps {label}", t + c, f"deviation {worst:.1e}"))
        scalar += t + c
    rows.append(("10^6 steps, scalar regimes (target <= 5 s)", scalar, ""))
    t, run = timed(lambda: simulation.simulate("scale-through", 10**6, 0.01, 16, 0))
    rows.append(("10^6 steps scale-through (3 weights)", t, ""))
    width = max(len(r[0]) for r in rows)
    for name, secs, note in rows:
        print(f"{name:<{width}}  {secs:7.2f} s  {note}")


if __name__ == "__main__":
    main()
