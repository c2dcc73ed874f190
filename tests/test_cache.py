"""The verification cache: a second run reads it, any change re-checks, nothing corrupt is
trusted, and a cached result renders to the same bytes as a fresh one."""

from __future__ import annotations

import dataclasses
import hashlib
import multiprocessing
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import sympy as sp

from derive import Batch, Claim, Equation, activation, cache, pdf, report, runner, verify
from derive.claims import centering
from derive.render import certificate, latex
from derive.verify import Settings

from conftest import cli_status

ROOT = Path(__file__).resolve().parents[1]
# small but complete: every core layer runs, enough instances to back a proof
SMALL = Settings(frameworks=(), explicit_sizes=(1, 2, 3), random_instances=20,
                 hypothesis_examples=10, simulation=False, counterexample_max_size=3)
IDS = ("centering.update-cancels", "centering.unnormalized-sum", "centering.nonlinear")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DERIVE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def claims(ids=IDS):
    by_id = {c.id: c for c in centering.claims()}
    return [by_id[i] for i in ids]


@pytest.fixture
def counted(monkeypatch):
    """verify.check, counting the claims it checks."""
    calls = []
    real = verify.check

    def check(claim, settings=Settings()):
        calls.append(claim.id)
        return real(claim, settings)
    monkeypatch.setattr(verify, "check", check)
    return calls


def forbid_checking(monkeypatch):
    def check(claim, settings=Settings()):
        raise AssertionError(f"{claim.id} was checked; the cache should have answered")
    monkeypatch.setattr(verify, "check", check)


def rendered(results, settings=SMALL, timings=False):
    return ([latex.claim_tex(r, settings) for r in results],
            [certificate.claim_json(r, settings.budget, timings) for r in results])


def test_the_cache_lives_in_derive_cache(private_cache):
    assert cache.Cache().directory == private_cache


def test_the_cache_directory_follows_xdg_then_home(monkeypatch, tmp_path):
    monkeypatch.delenv("DERIVE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_dir() == tmp_path / "xdg" / "derive"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.cache_dir() == tmp_path / "home" / ".cache" / "derive"


def test_a_second_run_reads_the_cache_and_renders_the_same_bytes(monkeypatch, private_cache):
    store = cache.Cache()
    first = runner.check_many(claims(), SMALL, cache=store)
    assert (store.hits, store.misses) == (0, len(IDS))
    assert len(list((private_cache / "results").iterdir())) == len(IDS)
    forbid_checking(monkeypatch)
    again = cache.Cache()
    found = runner.check_many(claims(), SMALL, cache=again)
    assert (again.hits, again.misses) == (len(IDS), 0)
    assert all(again.served(r) for r in found)
    assert rendered(found) == rendered(first)
    assert rendered(found, timings=True) == rendered(first, timings=True)


def test_a_cached_result_keeps_its_original_times():
    store = cache.Cache()
    [first] = runner.check_many(claims(IDS[:1]), SMALL, cache=store)
    [again] = runner.check_many(claims(IDS[:1]), SMALL, cache=cache.Cache())
    assert again.seconds == first.seconds > 0
    assert [e.seconds for e in again.evidence] == [e.seconds for e in first.evidence]
    assert certificate.timings([again]) == certificate.timings([first])


def test_a_cached_result_is_bound_to_the_claim_in_hand():
    [claim] = claims(("centering.nonlinear",))
    runner.check_many([claim], SMALL, cache=cache.Cache())
    [fresh_claim] = claims(("centering.nonlinear",))   # built again: other objects
    [result] = runner.check_many([fresh_claim], SMALL, cache=cache.Cache())
    theta = fresh_claim.functions[0][0]
    assert result.claim is fresh_claim
    assert result.proof[0].equation is fresh_claim.equations[0]
    assert result.verdict.counterexample.functions[0][0] is theta
    assert all(f.func in (theta, theta.derivative)
               for f in result.proof[0].residual.atoms(sp.Function)
               if getattr(f.func, "arbitrary", False))


# -- keys --------------------------------------------------------------------------------------

def test_the_same_claim_built_twice_has_the_same_key():
    assert [cache.result_key(c, SMALL) for c in centering.claims()] == \
        [cache.result_key(c, SMALL) for c in centering.claims()]


def test_every_built_in_claim_has_its_own_key():
    from derive.claims import all_claims
    keys = [cache.result_key(c, SMALL) for c in all_claims()]
    assert len(set(keys)) == len(keys)


def test_the_key_does_not_depend_on_the_process():
    from derive.claims import all_claims
    code = ("from derive import cache; from derive.claims import all_claims; "
            "from derive.verify import Settings; "
            "print('\\n'.join(cache.result_key(c, Settings()) for c in all_claims()))")
    keys = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           cwd=ROOT, check=True, env={**os.environ, "PYTHONHASHSEED": seed}
                           ).stdout.split() for seed in ("1", "2")]
    assert keys[0] == keys[1] == [cache.result_key(c, Settings()) for c in all_claims()]


def test_keys_tell_apart_what_prints_alike():
    B = Batch("N")
    i = B.index("i")
    x = B.samples("x")
    f, g = activation("f"), activation("f")   # two functions that print alike
    plain, positive = B.param("b"), B.param("b", positive=True)
    pairs = [
        (Equation(f(x[i]), g(x[i])), Equation(f(x[i]), f(x[i]))),
        (Equation(x[i] + plain, 0), Equation(x[i] + positive, 0)),
        (Equation(x[i], sp.Function("h")(x[i])), Equation(x[i], sp.Function("h", real=True)(x[i]))),
        (Equation(x[i], sp.Float(0.5)), Equation(x[i], sp.Rational(1, 2))),
        (Equation(f(x[i]), 0), Equation(f.derivative(x[i]), 0)),
    ]
    for one, other in pairs:
        keys = {cache.result_key(Claim("c", "t", B, (eq,)), SMALL) for eq in (one, other)}
        assert len(keys) == 2, (one, other)


def test_a_claim_with_a_class_from_elsewhere_is_not_cached(monkeypatch):
    from derive.core import Evidence, Result, Verdict
    monkeypatch.setattr(verify, "check", lambda claim, settings: Result(
        claim, Verdict.proved(), [], [Evidence("symbolic", True, "", {}, 0.1, True)], 0.1))

    class Mystery(sp.Function):   # its behaviour is no version's and no source hash's
        pass
    B = Batch("N")
    x, i = B.samples("x"), B.index("i")
    claim = Claim("mystery", "t", B, (Equation(Mystery(x[i]), x[i]),))
    with pytest.raises(cache.Uncacheable):
        cache.result_key(claim, SMALL)
    assert cache.Cache.key(claim, SMALL) is None
    store = cache.Cache()
    runner.check_many([claim], SMALL, cache=store)
    assert not (store.directory / "results").exists()


# -- every kind of change re-checks ------------------------------------------------------------

def changed_claims():
    [claim] = claims(("centering.update-cancels",))
    eq = claim.equations[0]
    return {
        "equation": dataclasses.replace(claim, equations=(
            Equation(eq.lhs, eq.rhs + 1, eq.label),)),
        "label": dataclasses.replace(claim, equations=(Equation(eq.lhs, eq.rhs, "other"),)),
        "assumption": dataclasses.replace(claim, assumptions=claim.assumptions + ("b > 0",)),
        "min_size": dataclasses.replace(claim, min_size=2),
        "explicit_up_to": dataclasses.replace(claim, explicit_up_to=2),
        "domain": dataclasses.replace(claim, domain=(sp.Symbol("b", real=True) ** 2 + 1,)),
    }


@pytest.mark.parametrize("change", sorted(changed_claims()))
def test_a_changed_claim_is_checked_again(change, counted):
    [claim] = claims(("centering.update-cancels",))
    runner.check_many([claim], SMALL, cache=cache.Cache())
    runner.check_many([changed_claims()[change]], SMALL, cache=cache.Cache())
    runner.check_many([claim], SMALL, cache=cache.Cache())   # the original: still cached
    assert counted == [claim.id, claim.id]


def test_changed_settings_check_again(counted):
    runner.check_many(claims(IDS[:1]), SMALL, cache=cache.Cache())
    runner.check_many(claims(IDS[:1]), dataclasses.replace(SMALL, random_instances=21),
                      cache=cache.Cache())
    runner.check_many(claims(IDS[:1]), dataclasses.replace(SMALL, frameworks=("torch",)),
                      cache=cache.Cache())
    assert len(counted) == 3


def test_a_changed_derive_source_checks_again(counted, monkeypatch):
    runner.check_many(claims(IDS[:1]), SMALL, cache=cache.Cache())
    monkeypatch.setattr(cache, "source_hash", lambda: "0" * 64)
    runner.check_many(claims(IDS[:1]), SMALL, cache=cache.Cache())
    assert len(counted) == 2


def test_the_source_hash_covers_every_module_of_the_package():
    import hashlib
    root = ROOT / "derive"
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(f"{path.relative_to(root).as_posix()}\0{path.stat().st_size}\0".encode())
        digest.update(path.read_bytes())
    assert cache._hash_source() == digest.hexdigest()
    assert {"verify.py", "rules.py", "frameworks/backends.py"} <= {
        p.relative_to(root).as_posix() for p in root.rglob("*.py")}


def test_nothing_is_stored_when_the_source_changed_during_the_run(counted, monkeypatch,
                                                                 private_cache):
    with monkeypatch.context() as edited:
        edited.setattr(cache, "_hash_source", lambda: "edited meanwhile")
        runner.check_many(claims(IDS[:1]), SMALL, cache=cache.Cache())
    assert not private_cache.exists()
    runner.check_many(claims(IDS[:1]), SMALL, cache=cache.Cache())
    assert len(list((private_cache / "results").iterdir())) == 1


@pytest.mark.parametrize("library,version", [("sympy", "0.0.1"), ("torch", None),
                                             ("jax", "99.0")])
def test_a_changed_library_version_checks_again(library, version, counted, monkeypatch):
    from importlib import metadata
    runner.check_many(claims(IDS[:1]), SMALL, cache=cache.Cache())
    real = metadata.version

    def fake(name):
        if name != library:
            return real(name)
        if version is None:
            raise metadata.PackageNotFoundError(name)
        return version
    monkeypatch.setattr(cache.metadata, "version", fake)
    assert cache.library_versions()[library] == (version or "not installed")
    runner.check_many(claims(IDS[:1]), SMALL, cache=cache.Cache())
    assert len(counted) == 2


def test_fresh_checks_again_and_rewrites(counted, private_cache):
    runner.check_many(claims(IDS[:1]), SMALL, cache=cache.Cache())
    [entry] = (private_cache / "results").iterdir()
    entry.write_bytes(b"stale")
    fresh = cache.Cache(fresh=True)
    runner.check_many(claims(IDS[:1]), SMALL, cache=fresh)
    assert (fresh.hits, len(counted)) == (0, 2)
    assert entry.read_bytes() != b"stale"
    runner.check_many(claims(IDS[:1]), SMALL, cache=cache.Cache())
    assert len(counted) == 2


def test_a_result_that_may_hinge_on_time_is_not_stored(counted, private_cache):
    hurried = dataclasses.replace(SMALL, timeout=1e-6)
    [result] = runner.check_many(claims(IDS[:1]), hurried, cache=cache.Cache())
    assert result.verdict.status == "undecided" and cache.transient(result)
    runner.check_many(claims(IDS[:1]), hurried, cache=cache.Cache())
    assert len(counted) == 2 and not (private_cache / "results").exists()


# -- nothing corrupt is trusted ----------------------------------------------------------------

def _entry(private_cache):
    [entry] = (private_cache / "results").iterdir()
    return entry


def _garbage(entry, other):
    entry.write_bytes(os.urandom(300))


def _truncated(entry, other):
    entry.write_bytes(entry.read_bytes()[: len(entry.read_bytes()) // 2])


def _empty(entry, other):
    entry.write_bytes(b"")


def _foreign_key(entry, other):
    entry.write_bytes(other.read_bytes())   # a whole, valid entry -- for another claim


def _flipped_payload(entry, other):
    data = bytearray(entry.read_bytes())
    data[-40] ^= 0x01
    entry.write_bytes(bytes(data))


def _other_format(entry, other):
    data = pickle.loads(entry.read_bytes())
    data["format"] = cache.FORMAT + 1
    entry.write_bytes(pickle.dumps(data))


def _a_class_inside(entry, other):
    entry.write_bytes(pickle.dumps(Path("/")))   # the envelope must never look up a class


@pytest.mark.parametrize("damage", [_garbage, _truncated, _empty, _foreign_key,
                                    _flipped_payload, _other_format, _a_class_inside])
def test_a_damaged_entry_is_ignored_and_rewritten(damage, counted, private_cache):
    one, other = claims(IDS[:2])
    store = cache.Cache()
    [first] = runner.check_many([one], SMALL, cache=store)
    entry = _entry(private_cache)
    second_dir = private_cache.parent / "other"
    runner.check_many([other], SMALL, cache=cache.Cache(second_dir))
    [other_entry] = (second_dir / "results").iterdir()
    damage(entry, other_entry)
    again = cache.Cache()
    [result] = runner.check_many([one], SMALL, cache=again)
    assert (again.hits, counted) == (0, [one.id, other.id, one.id])
    assert rendered([result]) == rendered([first])
    third = cache.Cache()
    runner.check_many([one], SMALL, cache=third)   # rewritten: read from the cache again
    assert third.hits == 1 and len(counted) == 3


def _write_many(directory: str, key: str, payload: bytes, times: int) -> None:
    for _ in range(times):
        cache.Cache(Path(directory))._write("result", key, payload)


def test_two_processes_writing_one_entry_at_once_leave_a_valid_entry(private_cache):
    [claim] = claims(IDS[:1])
    [result] = runner.check_many([claim], SMALL)
    key, payload = cache.result_key(claim, SMALL), cache.dumps_result(result)
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_write_many, args=(str(private_cache), key, payload, 200))
               for _ in range(2)]
    for w in writers:
        w.start()
    seen = 0
    while any(w.is_alive() for w in writers):
        found = cache.Cache().get(claim, SMALL)   # whole or absent, never half
        if found is not None:
            seen += 1
            assert rendered([found]) == rendered([result])
    for w in writers:
        w.join()
        assert w.exitcode == 0
    assert cache.Cache().get(claim, SMALL) is not None
    assert [p.name for p in (private_cache / "results").iterdir()] == [f"{key}.pickle"]


# -- the PDF -----------------------------------------------------------------------------------

def test_a_pdf_whose_tex_did_not_change_is_not_rebuilt(monkeypatch, tmp_path):
    built = []

    def build_pdf(tex_source, stem, timeout=180, files=None):
        built.append(stem)
        return b"%PDF-1.5 " + str(len(built)).encode()
    monkeypatch.setattr(pdf, "build_pdf", build_pdf)
    results = runner.check_many(claims(IDS[:2]), SMALL)
    story = report.file_story(Path("mine.py"), [r.claim for r in results])
    store = cache.Cache()
    for timings in (False, False, True):
        report.write_results(story, results, tmp_path, ("pdf",), SMALL, timings, cache=store)
    assert built == ["mine", "mine"]          # the second build was the same .tex
    assert (tmp_path / "mine.pdf").read_bytes() == b"%PDF-1.5 2"
    report.write_results(story, results, tmp_path, ("pdf",), SMALL, False, cache=store)
    assert (tmp_path / "mine.pdf").read_bytes() == b"%PDF-1.5 1" and len(built) == 2
    report.write_results(story, results, tmp_path, ("pdf",), SMALL, False)   # no cache
    assert len(built) == 3


def test_the_library_api_uses_no_cache_by_default(counted, private_cache, tmp_path):
    story = report.file_story(Path("mine.py"), claims(IDS[:1]))
    report.write_report(story, claims(IDS[:1]), tmp_path, ("json",), SMALL)
    report.write_report(story, claims(IDS[:1]), tmp_path, ("json",), SMALL)
    assert len(counted) == 2 and not private_cache.exists()


# -- the rendered documents and the figures ----------------------------------------------------

class Version(str):
    """A library's own string type, like torch's version string."""


def test_a_librarys_string_type_is_stored_as_the_plain_string():
    [claim] = claims(IDS[:1])
    [result] = runner.check_many([claim], SMALL)
    result.evidence[0].details["version"] = Version("2.5.1+cpu")
    payload = cache.dumps_result(result)
    assert b"Version" not in payload
    loaded = cache.loads_result(payload, claim)
    assert type(loaded.evidence[0].details["version"]) is str
    assert rendered([loaded]) == rendered([result])


def _dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _count(monkeypatch, module, name):
    calls = []
    real = getattr(module, name)

    def counted(*args, **kwargs):
        calls.append(name)
        return real(*args, **kwargs)
    monkeypatch.setattr(module, name, counted)
    return calls


def test_documents_of_unchanged_results_are_not_rendered_again(monkeypatch, tmp_path):
    rendering = _count(monkeypatch, latex, "document")
    ids = IDS[:2]
    story = report.file_story(Path("mine.py"), claims(ids))
    outs = []
    for n, timings in enumerate((False, False, True, False)):
        store = cache.Cache()   # the one that read the results vouches for their bytes
        results = runner.check_many(claims(ids), SMALL, cache=store)
        report.write_results(story, results, _dir(tmp_path / str(n)), ("tex", "json", "md"),
                             SMALL, timings, cache=store)
        outs.append({p.name: p.read_bytes() for p in (tmp_path / str(n)).iterdir()})
    assert len(rendering) == 2          # the first run, and the one with timings
    assert outs[0] == outs[1] == outs[3] and outs[2] != outs[0]
    # results checked without the cache have no stored bytes to vouch for them: rendered
    report.write_results(story, runner.check_many(claims(ids), SMALL), _dir(tmp_path / "x"),
                         ("tex",), SMALL, cache=cache.Cache())
    assert len(rendering) == 3


def test_documents_of_rechecked_results_are_rendered_again(monkeypatch, tmp_path):
    rendering = _count(monkeypatch, latex, "document")
    story = report.file_story(Path("mine.py"), claims(IDS[:1]))
    # --fresh: new results, new bytes (their times differ), rendered; then read back
    for fresh in (False, True, False):
        store = cache.Cache(fresh=fresh)
        results = runner.check_many(claims(IDS[:1]), SMALL, cache=store)
        report.write_results(story, results, tmp_path, ("tex",), SMALL, cache=store)
    assert len(rendering) == 2


def test_figures_are_drawn_once_for_unchanged_source_and_matplotlib(monkeypatch, tmp_path):
    import matplotlib

    from derive import figures
    drawing = _count(monkeypatch, figures, "report_files")
    story = centering.story()
    results = runner.check_many(centering.claims(), SMALL, cache=cache.Cache())
    written = []
    for n in range(2):
        report.write_results(story, results, _dir(tmp_path / str(n)), ("tex",), SMALL,
                             cache=cache.Cache())
        written.append({p.name: p.read_bytes() for p in (tmp_path / str(n)).iterdir()})
    assert len(drawing) == 1 and written[0] == written[1]
    assert any(name.startswith("fig-") for name in written[0])
    monkeypatch.setitem(matplotlib.rcParams, "lines.linewidth", 3.0)   # a user's matplotlibrc
    report.write_results(story, results, _dir(tmp_path / "2"), ("tex",), SMALL,
                         cache=cache.Cache())
    monkeypatch.setattr(cache, "source_hash", lambda: "1" * 64)
    report.write_results(story, results, _dir(tmp_path / "3"), ("tex",), SMALL,
                         cache=cache.Cache())
    assert len(drawing) == 3


# -- a warm report loads no result ------------------------------------------------------------

def _build_twice(monkeypatch, tmp_path, between=None):
    """Write the centering report (.tex, .json) with a cold cache, then again with a warm one
    after ``between()``: the second run's files, and how many results it loaded."""
    monkeypatch.setattr(report, "topic_settings", lambda topic, settings=None: SMALL)
    report.build_many(["centering"], _dir(tmp_path / "cold"), ("tex", "json"),
                      cache=cache.Cache())
    if between:
        between()
    loads = _count(monkeypatch, cache, "loads_result")
    store = cache.Cache()
    [(_, results, _, _)] = report.build_many(["centering"], _dir(tmp_path / "warm"),
                                             ("tex", "json"), cache=store)
    files = {p.name: p.read_bytes() for p in (tmp_path / "warm").iterdir()}
    cold = {p.name: p.read_bytes() for p in (tmp_path / "cold").iterdir()}
    assert files == cold
    return results, loads, store


def test_a_warm_report_reads_summaries_and_digests_not_results(monkeypatch, tmp_path):
    results, loads, store = _build_twice(monkeypatch, tmp_path,
                                         lambda: forbid_checking(monkeypatch))
    assert loads == [] and all(isinstance(r, cache.Stored) for r in results)
    assert all(store.served(r) for r in results)
    # what the command line reads of them: the summary, and the result itself on demand
    r = results[0]
    assert cache.Summary.of(r).status == r.claim.expected and loads == []
    assert r.verdict.status == r.claim.expected and loads == ["loads_result"]


def test_a_report_keys_each_claim_once_and_a_warm_one_none(monkeypatch, tmp_path):
    # the topic's claim index holds the keys: a cold report keys each claim once (for the
    # index, and looks it up by that key), a warm one reads them from the index
    keyed = _count(monkeypatch, cache, "result_key")
    _build_twice(monkeypatch, tmp_path, lambda: keyed.clear())
    assert keyed == []
    keyed_cold = _count(monkeypatch, cache, "result_key")
    monkeypatch.setattr(report, "topic_settings", lambda topic, settings=None: SMALL)
    report.build_many(["centering"], _dir(tmp_path / "fresh"), ("tex", "json"),
                      cache=cache.Cache(fresh=True))
    assert len(keyed_cold) == len(centering.claims())


def test_a_warm_report_whose_documents_are_gone_loads_its_results(monkeypatch, tmp_path,
                                                                   private_cache):
    import shutil
    _, loads, _ = _build_twice(monkeypatch, tmp_path,
                               lambda: shutil.rmtree(private_cache / "documents"))
    assert len(loads) == len(centering.claims())   # rendered again, from the loaded results


def test_a_stored_result_that_does_not_load_is_checked_again(monkeypatch, counted):
    [claim] = claims(IDS[:1])
    runner.check_many([claim], SMALL, cache=cache.Cache())
    store = cache.Cache()
    stored = store.peek(claim, SMALL)
    assert isinstance(stored, cache.Stored) and counted == [claim.id]
    monkeypatch.setattr(cache, "loads_result", lambda data, claim: 1 / 0)
    assert stored.load().verdict.status == claim.expected and counted == [claim.id] * 2


# -- its size ------------------------------------------------------------------------------------

def _key(name: str) -> str:
    """A key as derive makes them (64 hex digits), one per name."""
    return hashlib.sha256(name.encode()).hexdigest()


def _stored(store, names, size=10_000):
    """An entry per name (a rendered document of ``size`` bytes), used at times 1, 2, ...
    in that order; {name: its file}."""
    paths = {}
    for used, name in enumerate(names, 1):
        store.put_files("documents", _key(name), {"x.tex": bytes([used]) * size})
        paths[name] = store._path("documents", _key(name))
        os.utime(paths[name], (used, used))
    return paths


def test_pruning_removes_what_was_used_least_recently_until_the_rest_fits(private_cache):
    store = cache.Cache(private_cache)
    paths = _stored(store, ["a", "b", "c", "d"])
    each = paths["a"].stat().st_size
    assert store.get_files("documents", _key("a")) is not None   # read: used now
    removed = store.prune(2 * each)
    assert {n for n, p in paths.items() if p.exists()} == {"a", "d"}
    assert removed == 2 * each
    assert store.prune(2 * each) == 0 and store.prune(None) == 0
    assert store.get_files("documents", _key("a")) == {"x.tex": bytes([1]) * 10_000}


def test_a_file_another_process_pruned_first_counts_as_removed(private_cache, monkeypatch):
    store = cache.Cache(private_cache)
    paths = _stored(store, ["a", "b", "c"])
    each = paths["a"].stat().st_size
    unlink = Path.unlink

    def gone_first(path, *args, **kwargs):
        unlink(path, *args, **kwargs)
        if path == paths["a"]:
            raise FileNotFoundError(path)   # as if another process had removed it just before
    monkeypatch.setattr(Path, "unlink", gone_first)
    assert store.prune(2 * each) == each
    assert {n for n, p in paths.items() if p.exists()} == {"b", "c"}


def test_a_summary_read_keeps_its_result_as_recently_used(private_cache):
    claim = claims()[0]
    store = cache.Cache(private_cache)
    key = store.key(claim, SMALL)
    store.put(claim, SMALL, verify.check(claim, SMALL), key=key)
    for kind in ("result", "summary"):
        os.utime(store._path(kind, key), (1, 1))
    assert store.get_summary(claim.id, key) is not None
    assert all(store._path(kind, key).stat().st_mtime > 1 for kind in ("result", "summary"))


def test_pruning_touches_nothing_but_derives_own_files(private_cache, tmp_path):
    store = cache.Cache(private_cache)
    ours = list(_stored(store, ["a", "b"]).values())
    (private_cache / "jax").mkdir()
    ours.append(private_cache / "jax" / f"jit_program-{_key('p')}-cache")
    ours[-1].write_bytes(b"compiled")
    outside = tmp_path / "precious.pickle"
    outside.write_bytes(b"the user's")
    elsewhere = tmp_path / "elsewhere"
    foreign = [private_cache / "notes.txt", private_cache / "results" / "README",
               private_cache / "mine" / f"{_key('x')}.pickle",
               private_cache / "documents" / "draft.tex",
               private_cache / "documents" / "draft.pickle",
               private_cache / "documents" / f".{_key('y')}.pickle.1234.tmp",
               private_cache / "jax" / "notes.txt",
               elsewhere / f"{_key('z')}.pickle"]
    for path in foreign:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not derive's")
    (private_cache / "documents" / f"{_key('link')}.pickle").symlink_to(outside)
    (private_cache / "pdf").symlink_to(elsewhere, target_is_directory=True)
    store.prune(1)
    assert not any(p.exists() for p in ours)
    assert all(p.exists() for p in foreign) and outside.read_bytes() == b"the user's"
    assert (private_cache / "documents" / f"{_key('link')}.pickle").is_symlink()


@pytest.mark.parametrize("text, limit", [("", cache.DEFAULT_LIMIT_MB * 2 ** 20), ("0", None),
                                         ("1.5", 3 * 2 ** 19), (" 64 ", 64 * 2 ** 20),
                                         ("1e-9", 1)])
def test_the_size_limit_is_read_in_megabytes(text, limit):
    assert cache.size_limit({cache.LIMIT_VARIABLE: text}) == limit


@pytest.mark.parametrize("text", ["abc", "-1", "inf", "nan", "1e400", "512M"])
def test_a_size_limit_that_is_not_a_number_of_megabytes_is_refused_in_one_line(
        text, monkeypatch, capsys):
    with pytest.raises(ValueError):
        cache.size_limit({cache.LIMIT_VARIABLE: text})
    monkeypatch.setenv(cache.LIMIT_VARIABLE, text)
    assert cli_status(["list", "--topic", "centering"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "DERIVE_CACHE_LIMIT must be a number of megabytes" in err


def test_a_check_that_stored_results_leaves_the_cache_under_its_limit(private_cache,
                                                                      monkeypatch):
    argv = ["check", str(ROOT / "examples" / "rmsnorm_shift.py"), "--frameworks", "none",
            "--jobs", "1"]
    assert cli_status(argv) == 1   # one claim refuted: the example's point
    stored = cache.Cache(private_cache).files()
    assert len(stored) >= 4 and sum(size for _, size, _ in stored) > 4096
    monkeypatch.setenv(cache.LIMIT_VARIABLE, str(4096 / 2 ** 20))
    assert cli_status(argv + ["--fresh"]) == 1
    assert sum(size for _, size, _ in cache.Cache(private_cache).files()) <= 4096
