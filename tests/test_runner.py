"""Claims checked in worker processes: the same bytes as a serial run, progress in the claim
order, and claims that cannot travel checked here."""

from __future__ import annotations

import multiprocessing
import pickle
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sympy as sp

from derive import Batch, Claim, Equation, cache, report, runner
from derive.claims import centering
from derive.verify import Settings

from conftest import write_centering

ROOT = Path(__file__).resolve().parents[1]
SMALL = Settings(frameworks=(), explicit_sizes=(1, 2, 3), random_instances=20,
                 hypothesis_examples=10, simulation=False, counterexample_max_size=3)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DERIVE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())
            if not p.name.endswith(".timings.json")}


def test_activation_claims_pickle_and_come_back_whole():
    for claim in centering.claims():
        again = pickle.loads(pickle.dumps(claim))
        assert cache.claim_material(again) == (cache.claim_material(claim)[0],
                                               cache.claim_activations(again))
    nonlinear = next(c for c in centering.claims() if c.id == "centering.nonlinear-first-order")
    again = pickle.loads(pickle.dumps(nonlinear))
    theta = again.functions[0][0]
    assert theta is not nonlinear.functions[0][0] and theta._latex_name == r"\theta"
    used = {f.func for eq in again.equations for side in (eq.lhs, eq.rhs)
            for f in side.atoms(sp.Function)}
    assert used == {theta, theta.derivative}      # one function, rebuilt once per pickle


def test_a_claim_without_activations_equals_itself_after_pickling():
    claim = next(c for c in centering.claims() if c.id == "centering.update-cancels")
    assert pickle.loads(pickle.dumps(claim)) == claim


def test_results_from_workers_are_bound_to_the_callers_claims():
    claims = centering.claims()
    results = runner.check_many(claims, SMALL, jobs=2)
    assert [r.claim for r in results] == claims
    assert all(r.claim is c for r, c in zip(results, claims))


def test_progress_comes_in_the_claim_order():
    claims = centering.claims()
    seen = []
    runner.check_many(claims, SMALL, jobs=2,
                      progress=lambda n, total, r: seen.append((n, total, r.id)))
    assert seen == [(n, len(claims), c.id) for n, c in enumerate(claims, 1)]


def test_serial_and_parallel_reports_have_the_same_bytes(tmp_path):
    claims = centering.claims()
    story = centering.story()
    for jobs in (1, 2):
        report.write_report(story, claims, tmp_path / str(jobs), ("tex", "json"), SMALL,
                            jobs=jobs)
    serial, parallel = files(tmp_path / "1"), files(tmp_path / "2")
    assert {"centering.tex", "centering.json"} <= set(serial)
    assert serial == parallel


@pytest.mark.slow
def test_the_centering_report_has_the_same_bytes_with_jobs_1_and_2(tmp_path,
                                                                   centering_results):
    """The report's own settings, torch and jax included; the serial check is the suite's
    shared one (``conftest.centering_results``: ``check_many`` with one job)."""
    (tmp_path / "1").mkdir()
    write_centering(centering_results, tmp_path / "1", ("tex", "json"))
    report.build("centering", tmp_path / "2", ("tex", "json"), jobs=2)
    assert files(tmp_path / "1") == files(tmp_path / "2")


def test_jobs_1_starts_no_process(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a worker pool was started")
    monkeypatch.setattr(runner, "ProcessPoolExecutor", refuse)
    results = runner.check_many(centering.claims()[:2], SMALL, jobs=1)
    assert [r.verdict.status for r in results] == ["proved", "proved"]


def test_nothing_left_to_check_starts_no_process(monkeypatch):
    claims = centering.claims()[:2]
    runner.check_many(claims, SMALL, cache=cache.Cache())

    def refuse(*args, **kwargs):
        raise AssertionError("a worker pool was started")
    monkeypatch.setattr(runner, "ProcessPoolExecutor", refuse)
    runner.check_many(claims, SMALL, jobs=2, cache=cache.Cache())


def test_a_claim_that_cannot_travel_is_checked_here_at_its_turn():
    class Local(sp.Function):   # defined in a function: pickle cannot find it
        is_real = True

        def fdiff(self, argindex=1):
            return sp.S.One
    B = Batch("N")
    x, i = B.samples("x"), B.index("i")
    local = Claim("local", "a local function", B, (Equation(Local(x[i]), Local(x[i])),))
    with pytest.raises(Exception):
        pickle.dumps(local)
    claims = [centering.claims()[0], local, centering.claims()[2]]
    seen = []
    results = runner.check_many(claims, SMALL, jobs=2,
                                progress=lambda n, total, r: seen.append(r.id))
    assert seen == [c.id for c in claims]
    assert [r.claim for r in results] == claims
    assert [results[0].verdict.status, results[2].verdict.status] == ["proved", "proved"]


def test_the_work_done_meanwhile_does_not_wait_for_the_workers_to_start(monkeypatch):
    # the first claim is handed over only once the fork server has imported what it
    # preloads (seconds): a report's figures are drawn in that time, not after it
    drawn, waited = threading.Event(), []

    class SlowToStart(runner.ProcessPoolExecutor):
        def submit(self, *args, **kwargs):
            if not waited:
                waited.append(drawn.wait(5))
            return super().submit(*args, **kwargs)
    monkeypatch.setattr(runner, "ProcessPoolExecutor", SlowToStart)
    claims = centering.claims()[:2]
    results = runner.check_many(claims, SMALL, jobs=2, meanwhile=drawn.set)
    assert waited == [True]
    assert [r.verdict.status for r in results] == ["proved", "proved"]


def test_work_done_meanwhile_that_stops_ends_the_workers_started_meanwhile():
    # Ctrl-C while the figures are drawn, before the first claim is handed over (the fork
    # server still importing): the workers that hand-over starts are ended all the same
    def interrupted():
        time.sleep(0.3)
        raise RuntimeError("stopped")
    with pytest.raises(RuntimeError):
        runner.check_many(centering.claims(), SMALL, jobs=2, meanwhile=interrupted)
    assert not multiprocessing.active_children()
    assert not [t for t in threading.enumerate() if t.name.startswith("ExecutorManager")
                or type(t).__name__ == "_ExecutorManagerThread"]


def test_one_settings_per_claim():
    claims = centering.claims()[:2]
    other = Settings(frameworks=(), explicit_sizes=(1, 2), random_instances=25,
                     hypothesis_examples=10, simulation=False)
    results = runner.check_many(claims, [SMALL, other], jobs=2)
    assert [r.evidence[1].details["holds_at"] for r in results] == [[1, 2, 3], [1, 2]]
    with pytest.raises(ValueError):
        runner.check_many(claims, [SMALL], jobs=1)


def _strip_times(text: str) -> str:
    return re.sub(r"\(\d+\.\d\d s\)", "(s)", text)


def test_check_prints_the_same_with_one_job_and_two(tmp_path):
    out = {}
    for jobs in ("1", "2"):
        proc = subprocess.run(
            [sys.executable, "-m", "derive", "check", "examples/rmsnorm_shift.py",
             "examples/wrong_batchnorm_backward.py", "--frameworks", "none", "--jobs", jobs,
             "--fresh"], capture_output=True, text=True, cwd=ROOT, timeout=600)
        assert proc.returncode == 1, proc.stderr
        out[jobs] = _strip_times(proc.stdout)
    assert out["1"] == out["2"]
    assert [ln.split()[1] for ln in out["2"].splitlines() if ln[:1].isupper()
            and ln.split()[0] in ("PROVED", "REFUTED")] == [
        "rmsnorm.shift-invariance", "rmsnorm.scale-invariance-eps0",
        "batchnorm.backward-without-variance-path"]


# ``python -m derive`` with Ctrl-C as from a terminal: a test runner's worker may ignore or
# block it, and the command would inherit that
AS_FROM_A_TERMINAL = (
    "import runpy, signal; "
    "signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT]); "
    "signal.signal(signal.SIGINT, signal.default_int_handler); "
    "runpy.run_module('derive', run_name='__main__', alter_sys=True)")


def test_an_interrupted_check_stops_its_workers_and_says_only_that():
    # Ctrl-C while the workers check: one line, and no warning from multiprocessing about
    # semaphores the pool left behind (the process ends at once, so the pool must have
    # given them back before)
    proc = subprocess.Popen(
        [sys.executable, "-c", AS_FROM_A_TERMINAL, "check", "examples/layernorm_backward.py",
         "examples/bias_before_normalization.py", "--frameworks", "none", "--jobs", "2",
         "--fresh"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    hung = threading.Timer(300, proc.kill)   # a command that hangs fails the test, not the run
    hung.start()
    try:
        # the first claim, the quickest, is checked; two slower ones are still being checked
        assert proc.stdout.readline().startswith("PROVED")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        hung.cancel()
        proc.kill()
    assert proc.returncode == 130, err
    assert [line for line in err.splitlines() if "from the cache" not in line] == [
        "derive: interrupted"], err


def test_a_pool_ended_at_once_has_let_go_of_its_queues_when_that_returns():
    # the pool's manager thread holds its queues (and their named semaphores) until it sees
    # the workers gone: ending the pool waits for it, or a process that ends at once next
    # leaves the semaphores to multiprocessing's tracker, which warns about them
    with pytest.raises(RuntimeError):
        with runner._workers(2) as pool:
            pool.submit(int).result()
            manager = pool._executor_manager_thread
            raise RuntimeError("stopped")
    assert not manager.is_alive()


def _environment(name):
    import os
    return os.environ.get(name)


def test_workers_see_the_environment_of_the_call(monkeypatch):
    for value in ("one", "two"):   # the fork server started with the first
        monkeypatch.setenv("DERIVE_TEST_VALUE", value)
        with runner._workers(2) as pool:
            assert pool.submit(_environment, "DERIVE_TEST_VALUE").result() == value


def test_a_report_written_while_claims_are_checked_has_the_bytes_of_one_written_after(
        tmp_path, monkeypatch):
    from derive.render import latex
    monkeypatch.setattr(report, "topic_settings", lambda topic, settings=None: SMALL)
    rendered, order = [], []
    real_derivation, real_figures = latex.derivation_tex, report._figure_files
    monkeypatch.setattr(latex, "derivation_tex",
                        lambda r, s: rendered.append(r.id) or real_derivation(r, s))
    monkeypatch.setattr(report, "_figure_files",
                        lambda story, cache=None: order.append("figures")
                        or real_figures(story, cache))
    # a story that abbreviates, as the paper's do: each part is rendered in its notation
    import dataclasses
    story = dataclasses.replace(centering.story(), abbreviations=(
        (centering.B.mean(centering.u[centering.i], centering.i), r"\bar u"),))
    monkeypatch.setattr(centering, "story", lambda: story)
    report.build_many(["centering"], tmp_path / "during", ("tex", "json"), jobs=1,
                      progress=lambda n, total, result: order.append(n))
    assert r"\bar u" in (tmp_path / "during" / "centering.tex").read_text()
    # each claim's part rendered once, as it came in; the figures drawn before any came in
    assert sorted(rendered) == sorted(c.id for c in centering.claims())
    assert order[0] == "figures" and order[1:] == list(range(1, 10))
    report.write_report(story, centering.claims(), tmp_path / "after", ("tex", "json"), SMALL)
    assert files(tmp_path / "during") == files(tmp_path / "after")


def test_the_fork_server_imports_the_frameworks_that_some_claim_is_checked_in(monkeypatch):
    by_id = {c.id: c for c in centering.claims()}
    gradient, plain = by_id["centering.full-gradient"], by_id["centering.affine"]
    both, torch_only = Settings(), Settings(frameworks=("torch",))
    monkeypatch.setattr(runner.importlib.util, "find_spec", lambda name: object())
    assert runner.preload([gradient, plain], [both, both]) == \
        runner.PRELOAD + ["jax", "jax.numpy", "torch"]
    assert runner.preload([gradient], [torch_only]) == runner.PRELOAD + ["torch"]
    # no claim with a derivative, or no framework asked for: nothing but derive
    assert runner.preload([plain], [both]) == runner.PRELOAD
    assert runner.preload([gradient], [Settings(frameworks=())]) == runner.PRELOAD
    # a framework that is not installed is not imported
    monkeypatch.setattr(runner.importlib.util, "find_spec",
                        lambda name: None if name == "jax" else object())
    assert runner.preload([gradient], [both]) == runner.PRELOAD + ["torch"]


def test_checked_here_the_frameworks_are_imported_before_the_first_claim(monkeypatch):
    by_id = {c.id: c for c in centering.claims()}
    order = []
    monkeypatch.setattr(runner.importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(runner.importlib, "import_module", lambda name: order.append(name))
    monkeypatch.setattr(runner.verify, "check", lambda claim, settings: order.append(claim.id))
    runner.check_many([by_id["centering.affine"], by_id["centering.full-gradient"]],
                      Settings(), jobs=1)
    # the first claim's time is its own: the imports came before it
    assert order == runner.PRELOAD + ["jax", "jax.numpy", "torch", "centering.affine",
                                      "centering.full-gradient"]
    order.clear()
    runner.check_many([by_id["centering.affine"]], Settings(), jobs=1)
    assert order == runner.PRELOAD + ["centering.affine"]   # no claim checked in a framework


# -- one claim: each framework in a process forked while its core layers run ---------------

# check_many on one gradient claim in a fresh process: were torch or jax imported in it, and
# what did each layer find?  argv: the jobs, the claim ("centering" for
# centering.naive-gradient, else an example file's first claim), and how a peer fails:
# "die" (at its start) or "die-later" (after its first answers).
ONE_CLAIM = """
import json, multiprocessing, os, sys
from pathlib import Path
from derive import frameworks, runner
from derive.claims import centering
from derive.collect import load_claims
from derive.verify import Settings

jobs, source, *failing = sys.argv[1:]
if failing == ["die"]:
    runner._framework_peer = lambda *args: os._exit(3)
if failing == ["die-later"]:
    serve = frameworks.serve
    def serve_a_little(connection, prepared=None):
        class Tired:
            answered = 0
            def recv(self):
                if self.answered == 3:
                    os._exit(3)
                self.answered += 1
                return connection.recv()
            def send(self, message):
                connection.send(message)
        serve(Tired(), prepared)
    frameworks.serve = serve_a_little
answers = []   # what the peers answered before the layers ran here, if they did
receive = frameworks._Elsewhere._receive
def counted(self):
    value = receive(self)
    answers.append(1)
    return value
frameworks._Elsewhere._receive = counted
claim = ({c.id: c for c in centering.claims()}["centering.naive-gradient"]
         if source == "centering" else load_claims(Path(source))[0])
settings = Settings(explicit_sizes=(1, 2, 3), random_instances=20, hypothesis_examples=10,
                    framework_examples=10, simulation=False)
[result] = runner.check_many([claim], settings, jobs=int(jobs))
print(json.dumps({"imported here": sorted({"torch", "jax"} & set(sys.modules)),
                  "verdict": result.verdict.status,
                  "evidence": [(e.kind, e.holds, e.summary, e.details)
                               for e in result.evidence],
                  "children": len(multiprocessing.active_children()),
                  "answers": len(answers)}, default=str))
"""


def one_claim(*args) -> dict:
    import json
    proc = subprocess.run([sys.executable, "-c", ONE_CLAIM, *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr == ""   # nothing printed, however a peer ends
    out = json.loads(proc.stdout)
    assert out.pop("children") == 0   # no process is left behind
    return out


WRONG = str(ROOT / "examples" / "wrong_batchnorm_backward.py")


@pytest.mark.parametrize("source", ["centering", WRONG])
def test_one_claim_has_its_frameworks_evaluated_by_forked_peers_with_the_same_evidence(source):
    for name in ("torch", "jax"):
        pytest.importorskip(name, reason=f"{name} is not installed")
    here, peers = one_claim("1", source), one_claim("2", source)
    # with a spare core the frameworks were imported, and evaluated, in the peers only
    assert here["imported here"] == ["jax", "torch"] and peers["imported here"] == []
    assert here.pop("answers") == 0 and peers.pop("answers") > 0
    kinds = [kind for kind, *_ in peers["evidence"]]
    assert {"torch", "jax"} <= set(kinds) and kinds == [kind for kind, *_ in here["evidence"]]
    # every layer's summary and details, the refuted claim's failing instance included
    assert peers == {**here, "imported here": []}
    if source == WRONG:
        assert here["verdict"] == "refuted"
        assert [holds for kind, holds, *_ in here["evidence"] if kind == "jax"] == [False]


@pytest.mark.parametrize("failing", ["die", "die-later"])
def test_a_peer_that_dies_leaves_the_layers_to_this_process_with_the_same_evidence(failing):
    for name in ("torch", "jax"):
        pytest.importorskip(name, reason=f"{name} is not installed")
    here, lost = one_claim("1", "centering"), one_claim("2", "centering", failing)
    assert lost["imported here"] == ["jax", "torch"]   # imported here after all
    # each of the two peers answered its start and two instances before it died, or nothing
    assert lost.pop("answers") == (6 if failing == "die-later" else 0)
    assert here.pop("answers") == 0 and lost == here


def test_ctrl_c_while_the_peers_import_says_only_that():
    # Ctrl-C early in a check of one claim (its peers forking or importing): one line
    proc = subprocess.Popen(
        [sys.executable, "-c", AS_FROM_A_TERMINAL, "check", "examples/layernorm_backward.py",
         "--fresh"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    hung = threading.Timer(300, proc.kill)
    hung.start()
    try:
        assert "from the cache" in proc.stderr.readline()
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        hung.cancel()
        proc.kill()
    assert (proc.returncode, out, err) == (130, "", "derive: interrupted\n")


def test_a_run_takes_the_prepared_programs_it_uses_and_only_those():
    # a peer compiles the claim's programs before the instances come (frameworks.prepare);
    # the run takes what it uses, and its cache -- which the evidence reads -- holds no more
    pytest.importorskip("jax", reason="jax is not installed")
    from derive import frameworks
    claim = {c.id: c for c in centering.claims()}["centering.naive-gradient"]
    form, programs = frameworks.prepare(claim, "jax")
    assert form == frameworks._canonical(claim) and list(programs) == [()]   # one program
    compiled = programs[()]
    run = frameworks._Run(claim, frameworks.backend("jax"), {**programs, ("other",): object()})
    assert run.compiled({}) is compiled
    assert list(run.cache.values()) == [compiled]


def test_peers_are_forked_only_where_forking_is_safe():
    assert not runner._can_fork_peers([])                  # nothing to import
    assert not runner._can_fork_peers(["json", "no_such_module_anywhere"])   # json is here
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:   # a thread besides this one: a fork would copy its locks as they are
        assert not runner._can_fork_peers(["no_such_module_anywhere"])
    finally:
        stop.set()
        other.join()
