"""derive side by side with tensorgrad on the same statements; prints a table.

    .venv/bin/python benchmarks/bench_tensorgrad.py [--repeat 5] [--venv DIR]

tensorgrad (PyPI ``tensorgrad`` 0.3.0, a SymPy/torch symbolic tensor autograd) is never a
dependency of derive: on first use this script creates a virtual environment of its own,
``$DERIVE_CACHE/bench-venv`` (else ``$XDG_CACHE_HOME/derive/bench-venv`` or
``~/.cache/derive/bench-venv``), and installs ``tensorgrad==0.3.0 torch==2.13.0`` into it (the
torch pin keeps pip on the CPU wheel; a plain torch pulls the multi-GB CUDA build).  The
tensorgrad side runs there, in a subprocess that is this file run with ``--worker``; it prints
one JSON line per statement.  When tensorgrad cannot be installed or run, derive's figures are
printed alone, with the reason.

Statements, each for a symbolic batch size N, with g_i = dl/dy_i arbitrary:

1. a bias before centering: x_i = u_i + b, xhat = x - mean(x), l = sum_i g_i xhat_i;
   dxhat_i/db = 0 and dl/db = 0 (derive: the claim ``centering.full-gradient``);
2. a bias before full BN, xhat = (x - mu)/sqrt(sigma^2 + eps): dl/db = 0 (derive: a claim
   built here with the public API; ``bn.shift-invariance`` is the output statement);
3. BN's input gradient equals the compact backward formula (derive: ``bn.backward.compact``).

derive: the symbolic layer (every step re-checked at N = 1, 2 and at random points at N = 3),
and ``prove_part`` alone (the reduction, no re-checks).  tensorgrad: ``Derivative`` then
``full_simplify()``, the statement holding when the result is tensorgrad's ``Zero``; a wrong
variant of each statement (a control) must not simplify to ``Zero``.  Each measurement is run
once cold (its first run in the process), then ``--repeat`` times; the median of those is
reported.  SymPy's cache is cleared before every run on both sides.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

TENSORGRAD = "tensorgrad==0.3.0"
TORCH = "torch==2.13.0"
INSTALL_TIMEOUT = 1800.0     # seconds for creating the venv and pip install
WORKER_TIMEOUT = 900.0       # seconds for the whole tensorgrad side

STATEMENTS = (
    ("centering", "1. dl/db = 0, bias before centering"),
    ("bn-bias", "2. dl/db = 0, bias before full BN"),
    ("bn-compact", "3. BN input gradient = compact formula"),
)


def timed(fn, repeat: int, clear=()):
    """(cold, median of ``repeat`` further runs, result); SymPy's cache cleared before each,
    and each function of ``clear`` called (a side's own memo caches)."""
    from sympy.core.cache import clear_cache

    times, out = [], None
    for _ in range(1 + repeat):
        clear_cache()
        for forget in clear:
            forget()
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return times[0], statistics.median(times[1:]), out


# -- the tensorgrad side (runs in the bench venv) -------------------------------------------------

def worker(repeat: int) -> None:
    """Time tensorgrad on the three statements; one JSON object per line on stdout."""
    t0 = time.perf_counter()
    from fractions import Fraction
    from importlib.metadata import version

    import sympy as sp
    import tensorgrad.functions as F
    from tensorgrad import Delta, Ones, Variable, Zero

    def emit(**obj):
        print(json.dumps(obj), flush=True)

    emit(event="meta", tensorgrad=version("tensorgrad"), torch=version("torch"),
         sympy=version("sympy"), python=sys.version.split()[0],
         import_s=time.perf_counter() - t0)

    N = sp.symbols("N")

    def bn(x, eps, mean=F.mean, square=lambda c: c * c):
        """(xhat, 1/sqrt(sigma^2 + eps)) over the batch edge N."""
        c = x - mean(x, "N", keepdims=True)
        rs = F.pow(mean(square(c), "N") + eps, Fraction(-1, 2))
        return c * rs, rs

    def centering(variant=None):
        u, g, b = Variable("u", N), Variable("g", N), Variable("b")
        x = u + b @ Ones(N)
        xhat = x - (F.sum if variant == "wrong" else F.mean)(x, "N", keepdims=True)
        return [xhat.grad(b), (g @ xhat).grad(b)]

    def bn_bias(variant=None):
        u, g, b, eps = Variable("u", N), Variable("g", N), Variable("b"), Variable("eps")
        xhat, _ = bn(u + b @ Ones(N), eps, mean=F.sum if variant == "wrong" else F.mean,
                     square=(lambda c: c ** 2) if variant == "pow2" else (lambda c: c * c))
        return [(g @ xhat).grad(b)]

    def bn_compact(variant=None):
        x, g = Variable("x", N), Variable("g", N)
        eps, gamma, beta = Variable("eps"), Variable("gamma"), Variable("beta")
        xhat, rs = bn(x, eps)
        loss = g @ (gamma * xhat + beta @ Ones(N))
        if variant == "pow2":   # the formula's own 1/s, written with (x - mu)**2
            rs = F.pow(F.mean((x - F.mean(x, "N", keepdims=True)) ** 2, "N") + eps,
                       Fraction(-1, 2))
        m = Delta(N)                                   # the scalar N
        term = xhat.rename(N="k") * (g @ xhat)         # x^_k sum_j g_j x^_j
        compact = gamma * rs * F.pow(m, -1) * (
            m * g.rename(N="k") - F.sum(g, "N") @ Ones(k=N)
            - (0 if variant == "wrong" else term))
        return [loss.grad(x, {"N": "k"}) - compact]

    builders = {"centering": centering, "bn-bias": bn_bias, "bn-compact": bn_compact}
    for sid, _ in STATEMENTS:
        try:
            # Built outside the timer, as derive's claims are: time derivative + simplify.
            def once(build=builders[sid]):
                exprs = build()
                t = time.perf_counter()
                out = [e.full_simplify() for e in exprs]
                return time.perf_counter() - t, out
            from sympy.core.cache import clear_cache
            times, results = [], None
            for _ in range(1 + repeat):
                clear_cache()
                dt, results = once()
                times.append(dt)
            zero = all(isinstance(r, Zero) for r in results)
            alone = all(isinstance(e.simplify(), Zero) for e in builders[sid]())
            control = [e.full_simplify() for e in builders[sid]("wrong")]
            pow2 = None if sid == "centering" else \
                all(isinstance(e.full_simplify(), Zero) for e in builders[sid]("pow2"))
            emit(event="result", id=sid, cold=times[0], median=statistics.median(times[1:]),
                 runs=times, zero=zero, simplify_alone=alone,
                 control_nonzero=not all(isinstance(r, Zero) for r in control),
                 pow2_zero=pow2,
                 residual=None if zero else " ".join(repr(results).split())[:300])
        except Exception as exc:   # a statement tensorgrad cannot state or simplify
            emit(event="result", id=sid, error=f"{type(exc).__name__}: {exc}"[:400])


# -- setting up tensorgrad -----------------------------------------------------------------------

def default_venv() -> Path:
    if os.environ.get("DERIVE_CACHE"):
        return Path(os.environ["DERIVE_CACHE"]) / "bench-venv"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "derive" \
        / "bench-venv"


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def installed(venv: Path) -> bool:
    py = venv_python(venv)
    if not py.exists():
        return False
    probe = subprocess.run(
        [str(py), "-c", "from importlib.metadata import version as v; import tensorgrad, torch; "
                        "print(v('tensorgrad'), v('torch'))"],
        capture_output=True, text=True, timeout=300)
    if probe.returncode != 0:
        return False
    tg, torch = probe.stdout.split()
    return tg == TENSORGRAD.split("==")[1] and torch.split("+")[0] == TORCH.split("==")[1]


def ensure_tensorgrad(venv: Path) -> tuple[Path | None, str]:
    """The venv's python with tensorgrad installed, or None and the reason."""
    try:
        if installed(venv):
            return venv_python(venv), ""
        print(f"installing {TENSORGRAD} {TORCH} into {venv} (once) ...", file=sys.stderr,
              flush=True)
        deadline = time.monotonic() + INSTALL_TIMEOUT
        if not venv_python(venv).exists():
            made = subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True,
                                  text=True, timeout=INSTALL_TIMEOUT)
            if made.returncode != 0:
                return None, "could not create the venv: " + _last_line(made)
        pip = subprocess.run([str(venv_python(venv)), "-m", "pip", "install", "--quiet",
                              TENSORGRAD, TORCH], capture_output=True, text=True,
                             timeout=max(1.0, deadline - time.monotonic()))
        if pip.returncode != 0:
            return None, f"pip install {TENSORGRAD} {TORCH} failed: " + _last_line(pip)
        if not installed(venv):
            return None, "tensorgrad installed but does not import"
        return venv_python(venv), ""
    except subprocess.TimeoutExpired:
        return None, f"installing tensorgrad took over {INSTALL_TIMEOUT:g} s"
    except OSError as exc:
        return None, f"could not set up {venv}: {exc}"


def _last_line(proc) -> str:
    lines = [ln for ln in (proc.stderr or proc.stdout or "").splitlines() if ln.strip()]
    errors = [ln for ln in lines if "ERROR" in ln]
    return (errors or lines or ["(no output)"])[-1].strip()[:300]


def run_tensorgrad(python: Path, repeat: int) -> tuple[dict, dict, str]:
    """(meta, results by statement id, reason something is missing)."""
    meta, results, reason = {}, {}, ""
    try:
        proc = subprocess.run([str(python), __file__, "--worker", "--repeat", str(repeat)],
                              capture_output=True, text=True, timeout=WORKER_TIMEOUT)
        out, failed = proc.stdout, proc.returncode != 0
        if failed:
            reason = "the tensorgrad worker failed: " + _last_line(proc)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        reason = f"the tensorgrad worker ran over {WORKER_TIMEOUT:g} s"
    for line in out.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if obj.get("event") == "meta":
            meta = obj
        elif obj.get("event") == "result":
            results[obj["id"]] = obj
    return meta, results, reason


# -- the derive side -----------------------------------------------------------------------------

def bn_bias_claim():
    """Grad(sum_i g_i BN(u_i + b), b) = 0, stated with derive's public API."""
    import sympy as sp

    from derive import Batch, Claim, Equation, Grad

    B = Batch("N")
    u, g = B.samples("u"), B.samples("g")
    i = B.index("i")
    b = B.param("b")
    eps = B.param(r"\epsilon", positive=True)
    x = u[i] + b
    c = x - B.mean(x, i)
    xhat = c / sp.sqrt(B.mean(c ** 2, i) + eps)
    return Claim("bench.bn-bias-gradient", "A bias before BN has zero gradient", B,
                 (Equation(Grad(B.sum(g[i] * xhat, i), b), sp.S.Zero, "chain rule for the loss"),),
                 assumptions=(r"N \ge 1", r"\epsilon > 0"), expected="proved")


def run_derive(repeat: int) -> dict:
    """{statement id: {"layer": (cold, median, ok) | error, "part": ...}}."""
    from derive import rules, verify
    from derive.claims import batchnorm, centering
    from derive.verify import Settings, prove_part, symbolic_layer

    # derive's own memos (a step re-checked once, a root factored once) start empty every run,
    # as SymPy's cache does: each run measures a proof from scratch
    forget = (verify._recheck.cache_clear, rules._root_of_product.cache_clear)

    claims = {
        "centering": (next(c for c in centering.claims() if c.id == "centering.full-gradient"),
                      Settings()),
        "bn-bias": (bn_bias_claim(), batchnorm.SETTINGS),
        "bn-compact": (next(c for c in batchnorm.claims() if c.id == "bn.backward.compact"),
                       batchnorm.SETTINGS),
    }
    out = {}
    for sid, (claim, settings) in claims.items():
        row = out[sid] = {"claim": claim.id}
        measures = {
            "layer": lambda: symbolic_layer(claim, settings)[1].holds,
            "part": lambda: all(prove_part(claim, n).proved
                                for n in range(len(claim.equations))),
        }
        for name, fn in measures.items():
            try:
                row[name] = timed(fn, repeat, clear=forget)
            except Exception as exc:   # e.g. OutOfTime on a loaded machine
                row[name] = f"{type(exc).__name__}: {exc}"
        print(f"derive: {claim.id} done", file=sys.stderr, flush=True)
    return out


# -- the table -----------------------------------------------------------------------------------

def fmt(t) -> str:
    return "-" if t is None else f"{t:.3f}"


def ratio(a, b) -> str:
    return "-" if a is None or b is None or b <= 0 else f"{a / b:.2f}x"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5,
                    help="warm runs per measurement, after one cold run (default 5)")
    ap.add_argument("--venv", type=Path, default=None,
                    help="the venv for tensorgrad (default: ~/.cache/derive/bench-venv)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    if args.worker:
        worker(args.repeat)
        return

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    derive = run_derive(args.repeat)

    venv = args.venv or default_venv()
    python, reason = ensure_tensorgrad(venv)
    meta, tg = {}, {}
    if python is not None:
        print("tensorgrad: running ...", file=sys.stderr, flush=True)
        meta, tg, reason = run_tensorgrad(python, args.repeat)

    head = ("statement / derive measurement", "derive cold", "derive median",
            "tg cold", "tg median", "ratio median", "ratio cold")
    rows, notes = [], []
    for sid, title in STATEMENTS:
        d, t = derive[sid], tg.get(sid, {})
        t_ok = "median" in t and t.get("zero")
        t_cold, t_med = (t["cold"], t["median"]) if t_ok else (None, None)
        rows.append((f"{title}  [{d['claim']}]",) + ("",) * 6)
        for key, label in (("layer", "symbolic layer, steps re-checked"),
                           ("part", "prove_part only, no re-checks")):
            m = d[key]
            if isinstance(m, str):
                rows.append((f"    {label}", "error", "", fmt(t_cold), fmt(t_med), "-", "-"))
                notes.append(f"derive {d['claim']} ({label}): {m}")
                continue
            cold, med, ok = m
            if not ok:
                notes.append(f"derive {d['claim']} ({label}): NOT proved")
            rows.append((f"    {label}", fmt(cold), fmt(med), fmt(t_cold), fmt(t_med),
                         ratio(med, t_med), ratio(cold, t_cold)))
        if t.get("error"):
            notes.append(f"tensorgrad cannot state/simplify statement {title[0]} {t['error']}")
        elif t and not t.get("zero"):
            notes.append(f"tensorgrad: statement {title[0]} does not simplify to Zero "
                         f"(residual {t.get('residual')})")
        elif t:
            how = ("plain .simplify() already gives Zero" if t["simplify_alone"]
                   else "needs full_simplify(); plain .simplify() leaves a nonzero expression")
            ctl = ("wrong variant stays nonzero" if t["control_nonzero"]
                   else "WRONG VARIANT ALSO GIVES ZERO")
            notes.append(f"tensorgrad, statement {title[0]} Zero; {how}; control: {ctl}")
            if t.get("pow2_zero") is False:
                where = "the compact formula's s" if sid == "bn-compact" else "the variance"
                notes.append(f"tensorgrad, statement {title[0]} with {where} written (x-mu)**2 "
                             "instead of (x-mu)*(x-mu): NOT Zero (it does not identify c**2 "
                             "with c*c; the table's figure shares the forward's s)")
    widths = [max(len(r[c]) for r in rows + [head]) for c in range(len(head))]
    line = lambda r: "  ".join(  # noqa: E731
        (r[c].ljust(widths[c]) if c == 0 else r[c].rjust(widths[c])) for c in range(len(r)))
    print(line(head))
    for r in rows:
        print(line(r).rstrip())
    print(f"\nseconds; cold = first run of the statement, median of {args.repeat} further runs; "
          "ratio = derive / tensorgrad (above 1: derive slower)")
    if meta:
        print(f"tensorgrad {meta['tensorgrad']} (torch {meta['torch']}, sympy {meta['sympy']}, "
              f"python {meta['python']}) in {venv}; its import takes {meta['import_s']:.2f} s "
              f"(not in the table)")
    if python is None or reason:
        print(f"tensorgrad figures missing: {reason}")
    for n in notes:
        print("- " + n)


if __name__ == "__main__":
    main()
