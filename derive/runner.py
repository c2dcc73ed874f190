"""Check many claims: from the cache where it holds them, the rest in worker processes.

Claims are independent, so ``check_many`` checks them in parallel, ``jobs`` at a time, each in
a worker process running ``verify.check``.  What it returns, and what is rendered from it, is
the same byte for byte as a serial run: a worker's result is pickled relative to its claim
(``cache.dumps_result``) and bound again to the caller's own claim, and ``progress`` is called
in the claim order, as each claim's turn comes (a claim that finishes early waits for the ones
before it).

Workers are started by the "forkserver" method: a clean server process imports ``derive``
once and forks each worker from it, so no worker inherits the threads of this process (fork
is unsafe with a running torch or JAX) and none pays the import of SymPy again.  When the
claims will be checked in PyTorch or JAX, the server imports those too (``preload``): an
import starts no thread (their thread pools and XLA's backend start on first use, in the
worker), and the seconds each import takes are paid once, not once per worker.  Checked in
this process, the claims find the frameworks imported before the first of them, as in a
worker: each claim's time is its own -- except for a single claim with a core to spare
(``derive check`` on one claim): then each framework gets a process of its own, forked from
this one, which imports it and compiles the claim's programs while this process runs the
claim's core layers, and evaluates the autograd layers' instances (``_framework_peers``), so
the imports run side by side and no longer come before the work.  A claim that cannot
be sent to a worker (it does not pickle), or whose worker fails, is checked in this process,
at its turn.  ``jobs=1`` checks everything here, in order, as ``verify.check_all`` does.
"""

from __future__ import annotations

import contextlib
import importlib.util
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from . import verify
from .cache import Cache, dumps_result, loads_result

# imported once by the fork server, not once per worker (Hypothesis, which the numeric layer
# imports at its first claim, takes 0.4 s)
PRELOAD = ["derive.verify", "derive.cache", "hypothesis", "hypothesis.strategies"]
FRAMEWORK_MODULES = {"torch": ["torch"], "jax": ["jax", "jax.numpy"]}
PEER_GRACE = 0.5   # seconds a framework's peer has to end by itself once its work is done


def default_jobs() -> int:
    return os.cpu_count() or 1


def check_many(claims, settings, jobs: int = 1, progress=None, cache: Cache | None = None,
               announce=None, lazy: bool = False, meanwhile=None, keys=None) -> list:
    """``[verify.check(c, s) for c in claims]``, from ``cache`` where it holds a result, the
    rest in ``jobs`` worker processes.

    ``settings``: one ``Settings`` for every claim, or a sequence of one per claim.
    ``progress(n, total, result)`` is called in the claim order.  ``announce(cached, total)``
    is called once, after the cache was read and before anything is checked.  Every result
    checked here is stored in ``cache`` (``Cache.put`` decides what is kept).  ``lazy``: a
    result the cache holds is returned as a ``cache.Stored``, loaded when first used.
    ``meanwhile()`` is called while the claims are handed to the workers (from a thread: the
    first hand-over waits for the fork server's imports), before their results are awaited:
    work that needs no result (a report's figures) is done while they start and check.
    ``keys``: the claims' cache keys (``Cache.key``) where the caller has them already (a
    topic's stored index).
    """
    claims = list(claims)
    per_claim = (list(settings) if isinstance(settings, (list, tuple))
                 else [settings] * len(claims))
    if len(per_claim) != len(claims):
        raise ValueError("one Settings per claim, or one for all")
    if keys is None or cache is None:
        keys = [cache.key(c, s) if cache is not None else None
                for c, s in zip(claims, per_claim)]
    results: list = [((lazy and cache.peek(c, s, k)) or cache.get(c, s, k))
                     if k is not None else None for c, s, k in zip(claims, per_claim, keys)]
    if announce is not None:
        announce(sum(r is not None for r in results), len(claims))
    todo = [n for n, r in enumerate(results) if r is None]
    futures: dict[int, Future] = {}
    modules = preload([claims[n] for n in todo], [per_claim[n] for n in todo]) if todo else []
    peers = None
    if min(jobs, len(todo)) <= 1:
        # checked here: what a worker has is imported before the first claim, so that its
        # time is its own and not the imports' (the frameworks: about 2 s) -- except, for one
        # claim with a core to spare, the frameworks: a process per framework, forked from
        # this one (after the rest is imported, so that it inherits them), imports it while
        # this one runs the claim's core layers, and evaluates its instances
        # (``_framework_peers``)
        frameworks = [m for m in modules if m not in PRELOAD]
        forked = jobs > 1 and len(todo) == 1 and _can_fork_peers(frameworks)
        for module in modules:
            if not (forked and module in frameworks):
                importlib.import_module(module)
        if forked:
            peers = _framework_peers(frameworks, claims[todo[0]])
    with (peers or contextlib.nullcontext()) as run_frameworks, \
            _workers(min(jobs, len(todo)), modules) as pool:
        submitting, stop = None, threading.Event()
        if pool is not None:
            def submit():
                for n in todo:
                    if stop.is_set():
                        return
                    try:   # pickled here, so that a claim that cannot be sent stays here
                        task = pickle.dumps((claims[n], per_claim[n]),
                                            protocol=pickle.HIGHEST_PROTOCOL)
                    except Exception:  # noqa: BLE001
                        continue
                    try:
                        futures[n] = pool.submit(_check_in_worker, task)
                    except Exception:  # noqa: BLE001 -- a broken pool: the rest are checked here
                        return
            if meanwhile is None:
                submit()
            else:
                # the first submission waits while the fork server imports what it preloads
                # (2-3 s, one core): the other work is done meanwhile, not after it
                submitting = threading.Thread(target=submit, daemon=True)
                submitting.start()
        try:
            if meanwhile is not None:
                meanwhile()
        except BaseException:
            stop.set()   # (Ctrl-C) nothing more is sent
            raise
        finally:
            # the pool's workers exist once the thread is done, so that ending the pool on
            # the way out (an exception) ends them too
            if submitting is not None:
                submitting.join()
        for n, claim in enumerate(claims):
            payload = None
            if results[n] is None:
                results[n], payload = _outcome(futures.get(n), claim, per_claim[n],
                                               run_frameworks)
                if cache is not None and keys[n] is not None:
                    cache.put(claim, per_claim[n], results[n], payload, keys[n])
            if progress:
                progress(n + 1, len(claims), results[n])
    return results


def preload(claims, settings) -> list[str]:
    """The modules the fork server imports: ``derive``'s, and the frameworks (installed ones)
    that some of ``claims`` will be checked in."""
    from .frameworks import applies
    wanted = {name for claim, s in zip(claims, settings) for name in s.frameworks
              if name in FRAMEWORK_MODULES and applies(claim)}
    return PRELOAD + [module for name in sorted(wanted) if importlib.util.find_spec(name)
                      for module in FRAMEWORK_MODULES[name]]


def _outcome(future: Future | None, claim, settings, run_frameworks=None):
    """(result, its pickle or None): from the worker, or checked here when it could not be
    (``run_frameworks``: where its autograd layers run, ``verify.check``)."""
    if future is not None:
        try:
            payload = future.result()
            return loads_result(payload, claim), payload
        except (KeyboardInterrupt, SystemExit):
            raise
        except BrokenProcessPool:
            pass   # a worker died (out of memory, killed): check the claim here
        except Exception:  # noqa: BLE001 -- it did not travel; the check itself is redone here
            pass
    if run_frameworks is None:
        return verify.check(claim, settings), None
    return verify.check(claim, settings, run_frameworks=run_frameworks), None


def _can_fork_peers(modules) -> bool:
    """Whether ``_framework_peers`` may fork this process to import ``modules``: some to
    import, none of them imported here already, no thread but this one (a fork copies the
    locks of other threads in whatever state they are, and a framework may have started
    some), and a system that forks."""
    return (bool(modules) and "fork" in multiprocessing.get_all_start_methods()
            and threading.active_count() == 1
            and not any(m.partition(".")[0] in sys.modules for m in modules))


@contextlib.contextmanager
def _framework_peers(modules, claim):
    """A callable running ``verify.framework_layers`` here, with each framework evaluated in
    a process of its own (a peer) forked from this one at once.

    Each peer inherits everything imported here (SymPy, derive, the claim), imports its
    framework (torch about 1.4 s, JAX 0.7 s) and compiles the claim's programs in it, while
    this process runs the claim's core layers: the two imports run side by side, and not
    before the work.  The autograd layers then draw their instances here and have each
    evaluated in every peer at once (``frameworks.layers``'s ``elsewhere``), with the
    arguments this process would have used, so the evidence is the same.  Where a peer
    fails, or none could be forked, the layers run here after all."""
    from .frameworks import PeerLost
    context = multiprocessing.get_context("fork")
    peers, processes = {}, []
    used = False   # whether the layers ran: if not, no peer is waited for

    def end(at_once: bool):
        # a peer that has answered everything ends when its connection closes; one never
        # used or still at work (out of time, Ctrl-C) is not waited for
        for connection in peers.values():
            connection.close()
        for process in processes:
            if not at_once:
                process.join(PEER_GRACE)
            if process.is_alive():
                process.kill()
            process.join()

    # Ctrl-C is held back while a peer is forked, until it ignores Ctrl-C itself (its
    # parent stops it); a thread started since ``_can_fork_peers`` forks nothing
    try:
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            for name, names in FRAMEWORK_MODULES.items():
                if names[0] not in modules or threading.active_count() != 1:
                    continue
                mine, theirs = context.Pipe()
                process = context.Process(
                    target=_framework_peer, daemon=True,
                    args=(theirs, [mine, *peers.values()], dict(os.environ), os.getpid(),
                          names, name, claim))
                try:
                    process.start()
                except OSError:   # no process to be had: that framework is evaluated here
                    mine.close()
                    continue
                finally:
                    theirs.close()
                peers[name] = mine
                processes.append(process)
        finally:   # a Ctrl-C held back arrives here, and ends the peers below
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
    except BaseException:
        end(at_once=True)
        raise

    def run(claim, settings, deadline, shrink):
        nonlocal used
        used = True
        try:
            return verify.framework_layers(claim, settings, deadline, shrink,
                                           elsewhere=peers)
        except PeerLost:
            return verify.framework_layers(claim, settings, deadline, shrink)
    try:
        yield run
    except BaseException:
        end(at_once=True)
        raise
    end(at_once=not used)


def _framework_peer(connection, others, environment: dict[str, str], parent: int, modules,
                    name: str, claim):
    """A peer: imports one framework, compiles ``claim``'s programs in it (as ``check``
    scopes it), and evaluates the instances it is sent (``frameworks.serve``) until its
    parent is done.  Where anything fails it just ends: the parent then finds it gone."""
    try:
        for other in others:   # the parent's ends, inherited: open here, they hide its end
            other.close()
        _start_worker(environment, parent)   # Ctrl-C ignored from here: let it through
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        for module in modules:
            importlib.import_module(module)
        from .frameworks import prepare, serve
        serve(connection, prepare(verify.checked_scope(claim).claim, name))
    except BaseException:  # noqa: BLE001 -- nothing to print: the parent finds it gone
        pass
    finally:
        connection.close()


def _check_in_worker(task: bytes) -> bytes:
    claim, settings = pickle.loads(task)
    return dumps_result(verify.check(claim, settings))


def _start_worker(environment: dict[str, str], parent: int):
    """A worker leaves Ctrl-C to the parent, which stops it; sees the parent's environment
    as it is now (the fork server keeps the one it started with); and ends when the parent
    is gone (killed, so that it could not stop it)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.clear()
    os.environ.update(environment)
    threading.Thread(target=_end_with, args=(parent,), daemon=True).start()


def _end_with(parent: int, every: float = 1.0):
    while True:
        time.sleep(every)
        try:
            os.kill(parent, 0)
        except ProcessLookupError:
            os._exit(1)
        except OSError:
            pass


def _terminated(signum, frame):
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def _workers(jobs: int, modules=()):
    """A pool of ``jobs`` workers, or None for ``jobs <= 1``; stopped on leaving, at once
    when leaving by an exception (Ctrl-C): pending claims are cancelled, workers ended.
    ``modules``: what the fork server imports (``preload``; it starts once per process, so
    the first pool's choice stays)."""
    if jobs <= 1:
        yield None
        return
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(modules) or PRELOAD)
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_start_worker,
                               initargs=(dict(os.environ), os.getpid()))
    # SIGTERM, like Ctrl-C, stops the workers before this process ends
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminated) if main else None
    try:
        yield pool
    except BaseException:
        _end_at_once(pool)
        raise
    else:
        pool.shutdown(wait=True)
    finally:
        if main and previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _end_at_once(pool: ProcessPoolExecutor):
    """Cancel what ``pool`` has pending and end its processes now."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    manager = getattr(pool, "_executor_manager_thread", None)
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        with contextlib.suppress(Exception):
            process.terminate()
    for process in processes:   # reaped, so that a long-lived caller keeps no zombie
        with contextlib.suppress(Exception):
            process.join(1.0)
    if manager is not None:
        # it sees its workers gone and closes the pool's queues; until then it holds them
        # (and their named semaphores, which a process ending at once would leave behind)
        manager.join(5.0)


__all__ = ["check_many", "default_jobs"]
