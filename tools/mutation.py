#!/usr/bin/env python3
"""Mutation testing of the decision core with mutmut: do the tests fail when soundness breaks?

    .venv/bin/python tools/mutation.py [--targets decide,recheck_step,...] [--jobs 2]
                                       [--diffs policy|all|none] [--no-install]

Each target is mutated by mutmut (a changed comparison, a flipped boolean, a dropped argument,
a changed string, ...) and the tests that matter for it are run against each mutant: a mutant
the tests still pass on ("survived") is a change to the verifier that no test notices.

    target                   mutated                            tests
    decide                   derive/verify.py: decide           tests/test_safety_nets.py
    recheck_step             derive/verify.py: recheck_step     tests/test_safety_nets.py
                             and _recheck
    counterexample_evidence  derive/verify.py: the function     tests/test_safety_nets.py
    recheck.py               derive/recheck.py (whole file)     tests/test_safety_nets.py
    rules.py                 derive/rules.py (whole file)       tests/test_safety_nets.py,
                                                                tests/test_rules.py

mutmut 3 works in a ``mutants/`` folder beside the code it mutates; it runs here in a temporary
copy of the working tree (``derive/``, ``tests/``, ``pyproject.toml``, with a ``[tool.mutmut]``
section added to the copy), one copy per file mutated, removed at the end: the working tree is
never written to.  In the copy, the ``functools`` cache decorators of the mutated file are
removed (``uncache``): mutmut does not mutate decorated functions.  The tests run with
``HYPOTHESIS_PROFILE=dev``, without ``CI`` (whose requirement checks are for the full suite),
with ``DERIVE_CACHE`` in the temporary copy.  mutmut runs, for each mutant, only the tests
that call the mutated function.

It prints a table -- target, mutants, killed, survived, timeout, other (no test reaches it,
suspicious, ...), score = (killed + timeout) / mutants -- then the surviving mutants of the
verdict policy with their diff (``--diffs all``: of every target).  It is a measurement: the
exit status is 0 whatever the score, and 1 only when mutmut itself fails.

mutmut is a development tool, not a dependency of ``derive``: when it is missing it is
installed into the running interpreter's environment (``pip install mutmut``), unless
``--no-install``.  Written for mutmut 3 (3.8.1); mutant names are like
``derive.verify.x_decide__mutmut_7``, methods ``derive.recheck.xǁ_Writerǁ_write__mutmut_3``
(``mutmut show NAME`` in a ``--keep`` copy prints one).  On 2 shared cores the whole run takes
about 7 minutes: verify.py 1, recheck.py 2-3, rules.py 3-4 (``--targets`` runs fewer).
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAFETY = "tests/test_safety_nets.py"
POLICY = "decide"


@dataclass(frozen=True)
class Target:
    name: str
    path: str                 # the file mutated
    patterns: tuple[str, ...]  # mutmut mutant names (fnmatch)
    tests: tuple[str, ...]     # the tests that matter for it


TARGETS = (
    Target("decide", "derive/verify.py", ("derive.verify.x_decide__mutmut_*",), (SAFETY,)),
    Target("recheck_step", "derive/verify.py", ("derive.verify.x_recheck_step__mutmut_*",
                                                "derive.verify.x__recheck__mutmut_*"), (SAFETY,)),
    Target("counterexample_evidence", "derive/verify.py",
           ("derive.verify.x_counterexample_evidence__mutmut_*",), (SAFETY,)),
    Target("recheck.py", "derive/recheck.py", ("derive.recheck.*",), (SAFETY,)),
    Target("rules.py", "derive/rules.py", ("derive.rules.*",), (SAFETY, "tests/test_rules.py")),
)

COPIED = ("derive", "tests", "pyproject.toml")
DETECTED = ("killed", "timeout")


def ensure_mutmut(install: bool) -> None:
    if importlib.util.find_spec("mutmut") is not None:
        return
    if not install:
        sys.exit("mutmut is not installed: pip install mutmut (a development tool, not a "
                 "dependency of derive)")
    print("installing mutmut into this environment (pip install mutmut) ...", flush=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "mutmut"], check=True)


def mutmut_command() -> list[str]:
    script = Path(sys.executable).with_name("mutmut")
    return [str(script)] if script.exists() else [sys.executable, "-m", "mutmut"]


def copy_tree(dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis", ".pytest_cache",
                                    "mutants")
    for name in COPIED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        else:
            shutil.copy2(src, dest / name)


def toml_list(items) -> str:
    return "[" + ", ".join(f'"{x}"' for x in items) + "]"


def configure(dest: Path, path: str, tests: tuple[str, ...]) -> None:
    text = (dest / "pyproject.toml").read_text()
    if "[tool.mutmut]" in text:
        raise SystemExit("pyproject.toml already has a [tool.mutmut] section: "
                         "tools/mutation.py writes its own")
    text += ("\n[tool.mutmut]\n"
             f'source_paths = ["derive"]\n'
             f"only_mutate = {toml_list([path])}\n"
             f"pytest_add_cli_args_test_selection = {toml_list(tests)}\n"
             f'pytest_add_cli_args = ["-p", "no:cacheprovider"]\n'
             "use_git_change_detection = false\n")
    (dest / "pyproject.toml").write_text(text)


CACHE_DECORATOR = re.compile(r"^[ \t]*@(functools\.)?(lru_cache|cache)\b.*\n", re.MULTILINE)


def uncache(path: Path) -> None:
    """Remove ``@functools.lru_cache``/``@functools.cache`` from the copy of a mutated file.

    mutmut 3 does not mutate a decorated function (``verify._recheck``, the body of
    ``recheck_step``, is one), and a cache filled in mutmut's main process (which runs the
    tests once, then forks a child per mutant) would answer the children with the unmutated
    function's results.  The caches are for speed only: the functions are pure."""
    text = path.read_text()
    path.write_text(CACHE_DECORATOR.sub("", text))


def results(workdir: Path, env) -> dict[str, str]:
    out = subprocess.run(mutmut_command() + ["results", "--all", "true"], cwd=workdir, env=env,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise MutmutFailed("mutmut results", out)
    found = {}
    for line in out.stdout.splitlines():
        m = re.match(r"\s*(\S+): (.+)$", line)
        if m:
            found[m.group(1)] = m.group(2).strip()
    return found


def diff(workdir: Path, env, name: str) -> str:
    out = subprocess.run(mutmut_command() + ["show", name], cwd=workdir, env=env,
                         capture_output=True, text=True)
    if out.returncode != 0:
        return f"(mutmut show failed: {out.stderr.strip()[-300:]})"
    lines = out.stdout.splitlines()
    return "\n".join(line for line in lines[1:] if not line.startswith(("---", "+++")))


class MutmutFailed(Exception):
    def __init__(self, what, out):
        super().__init__(f"{what} exited with {out.returncode}")
        self.out = out


def run_group(base: Path, path: str, tests: tuple[str, ...], targets, jobs: int, show) -> dict:
    """One mutmut run on ``path`` in a fresh copy; the statuses and diffs per target."""
    workdir = base / path.replace("/", "_")
    workdir.mkdir()
    copy_tree(workdir)
    configure(workdir, path, tests)
    uncache(workdir / path)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env.update(HYPOTHESIS_PROFILE="dev", DERIVE_CACHE=str(workdir / ".cache"),
               PYTHONDONTWRITEBYTECODE="1")
    log = workdir / "mutmut.log"
    command = mutmut_command() + ["run", "--max-children", str(jobs)] + \
        [p for t in targets for p in t.patterns]
    print(f"mutmut run on {path} with {', '.join(tests)} ...", flush=True)
    t0 = time.monotonic()
    with open(log, "w") as out:
        done = subprocess.run(command, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT)
    seconds = time.monotonic() - t0
    if done.returncode != 0:
        tail = log.read_text(errors="replace")[-4000:]
        raise MutmutFailed(f"mutmut run on {path}", subprocess.CompletedProcess(
            command, done.returncode, tail, ""))
    statuses = results(workdir, env)
    by_target = {}
    for t in targets:
        mine = {k: v for k, v in statuses.items()
                if any(fnmatch.fnmatchcase(k, p) for p in t.patterns)}
        survivors = sorted((k for k, v in mine.items() if v == "survived"), key=_natural)
        diffs = {k: diff(workdir, env, k) for k in survivors} if show(t) else {}
        by_target[t.name] = {"statuses": mine, "survivors": survivors, "diffs": diffs}
    print(f"    done in {seconds:.0f} s", flush=True)
    return {"seconds": seconds, "targets": by_target}


def _natural(name: str):
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def table(rows) -> str:
    head = ("target", "mutants", "killed", "survived", "timeout", "other", "score")
    body = []
    for name, statuses in rows:
        values = list(statuses.values())
        n = len(values)
        killed, survived, timeout = (values.count(s) for s in ("killed", "survived", "timeout"))
        other = n - killed - survived - timeout
        score = f"{100 * (killed + timeout) / n:.1f}%" if n else "-"
        body.append((name, n, killed, survived, timeout, other, score))
    cells = [head] + [tuple(map(str, r)) for r in body]
    widths = [max(len(r[c]) for r in cells) for c in range(len(head))]
    fmt = lambda r: "  ".join(  # noqa: E731
        (v.ljust(w) if c == 0 else v.rjust(w)) for c, (v, w) in enumerate(zip(r, widths)))
    return "\n".join(fmt(r) for r in cells)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--targets", default=",".join(t.name for t in TARGETS),
                        help="comma-separated: " + ", ".join(t.name for t in TARGETS))
    parser.add_argument("--jobs", type=int, default=2, help="mutants tested at once (2)")
    parser.add_argument("--diffs", choices=("policy", "all", "none"), default="policy",
                        help="print the diff of the survivors of the verdict policy (default), "
                             "of every target, or of none")
    parser.add_argument("--no-install", action="store_true",
                        help="fail instead of installing mutmut when it is missing")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary copies (their path is printed)")
    args = parser.parse_args(argv)
    wanted = [t for t in TARGETS if t.name in args.targets.split(",")]
    unknown = set(args.targets.split(",")) - {t.name for t in TARGETS}
    if unknown or not wanted:
        parser.error(f"unknown target(s): {', '.join(sorted(unknown)) or '(none)'}")
    ensure_mutmut(not args.no_install)

    def show(t):
        return args.diffs == "all" or (args.diffs == "policy" and t.name == POLICY)

    groups: dict[tuple, list[Target]] = {}
    for t in wanted:
        groups.setdefault((t.path, t.tests), []).append(t)
    t0 = time.monotonic()
    base = Path(tempfile.mkdtemp(prefix="derive-mutation-"))
    found = {}
    try:
        for (path, tests), targets in groups.items():
            found.update(run_group(base, path, tests, targets, args.jobs, show)["targets"])
    except MutmutFailed as err:
        print(f"\n{err}:\n{err.out.stdout}{err.out.stderr}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    print()
    print(table([(t.name, found[t.name]["statuses"]) for t in wanted]))
    print(f"\nscore = (killed + timeout) / mutants; other = no test reaches it, suspicious, "
          f"...; mutmut {metadata.version('mutmut')}, {time.monotonic() - t0:.0f} s")
    for t in wanted:
        if not found[t.name]["statuses"]:
            print(f"warning: no mutant of {t.name} ({', '.join(t.patterns)}): was it renamed?")
    for t in wanted:
        res = found[t.name]
        if res["survivors"]:
            print(f"\nsurviving mutants of {t.name} ({len(res['survivors'])}):")
        for name in res["survivors"]:
            if name in res["diffs"]:
                print(f"\n# {name}\n{res['diffs'][name]}")
            else:
                print(f"  {name}")
        others = sorted((k for k, v in res["statuses"].items()
                         if v not in DETECTED + ("survived",)), key=_natural)
        if others:
            print(f"\nnot tested ({t.name}): " + ", ".join(
                f"{k} ({res['statuses'][k]})" for k in others))
    return 0


if __name__ == "__main__":
    sys.exit(main())
