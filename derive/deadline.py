"""Time budgets that work in every thread and nest.

A budget is a deadline pushed on a per-thread stack for the duration of a ``with`` block.  The
work checks it at *safe points* (``checkpoint()``: the reducer's loop, every explicit size and
index assignment, every step re-check, every counterexample candidate), where a budget that has
run out raises ``OutOfTime``.  Every budget on the stack is checked, so nested budgets keep the
earliest deadline: an inner budget cannot extend an outer one.

A single long SymPy call has no safe point inside it.  On the main thread, with the real clock,
a SIGALRM timer is therefore armed as well, always for the earliest deadline on the stack, and
re-armed whenever a budget is entered or left; elsewhere the safe points are the only limit.

The clock is injectable, so that a test decides deterministically whether a budget runs out:
``using_clock(fn)`` for the current thread, or the module attribute ``clock`` for every thread.
Only the real clock (``time.monotonic``) arms the timer.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable

from .core import OutOfTime

clock: Callable[[], float] = time.monotonic   # the default clock of every thread


class _Local(threading.local):
    def __init__(self):
        self.stack: list[_Budget] = []
        self.clock: Callable[[], float] | None = None


_LOCAL = _Local()


@dataclass
class _Budget:
    end: float
    clock: Callable[[], float]
    message: str
    alarm: bool   # enforced by SIGALRM too (main thread, real clock)

    def left(self) -> float:
        return self.end - self.clock()


def current_clock() -> Callable[[], float]:
    """The clock budgets started now in this thread are measured with."""
    return _LOCAL.clock or clock


@contextlib.contextmanager
def using_clock(fn: Callable[[], float]):
    """Measure the budgets started in this thread inside the block with ``fn``."""
    previous, _LOCAL.clock = _LOCAL.clock, fn
    try:
        yield
    finally:
        _LOCAL.clock = previous


def _expired(stack) -> _Budget | None:
    """The budget on the stack that ran out first, if one has."""
    out = [(b.left(), n, b) for n, b in enumerate(stack)]
    out = [t for t in out if t[0] <= 0]
    return min(out, key=lambda t: t[:2])[2] if out else None


def checkpoint() -> None:
    """A safe point: raise OutOfTime when a budget of this thread has run out."""
    stack = _LOCAL.stack
    if stack:
        found = _expired(stack)
        if found is not None:
            raise OutOfTime(found.message)


def remaining() -> float:
    """Seconds left of the tightest budget of this thread (inf when there is none)."""
    return min((b.left() for b in _LOCAL.stack), default=math.inf)


class time_budget:
    """``with time_budget(seconds, what):`` raise OutOfTime inside the block once ``seconds``
    (on ``clock``, by default the thread's) have passed; None: no budget of its own (an
    enclosing one still applies).  A budget of 0 or less raises at once."""

    def __init__(self, seconds: float | None, what: str,
                 clock: Callable[[], float] | None = None):
        self.seconds, self.what, self.clock = seconds, what, clock

    def __enter__(self):
        if self.seconds is None:
            return self
        if self.seconds <= 0:
            raise OutOfTime(f"no time was left for {self.what}")
        fn = self.clock or current_clock()
        alarm = (fn is time.monotonic and hasattr(signal, "setitimer")
                 and threading.current_thread() is threading.main_thread())
        self.stack = _LOCAL.stack
        self.depth = len(self.stack)
        self.stack.append(_Budget(
            fn() + self.seconds, fn,
            f"the time budget of {self.seconds:.2g} s ran out during {self.what}", alarm))
        if alarm:
            _arm(self.stack)
        return self

    def __exit__(self, *exc):
        if self.seconds is None:
            return False
        alarm = self.stack[self.depth].alarm if len(self.stack) > self.depth else True
        del self.stack[self.depth:]   # inner budgets a signal may have left behind too
        if alarm:
            _arm(self.stack)
        return False


# -- the timer (main thread, real clock) ---------------------------------------------------------

_previous_handler = None   # the SIGALRM handler to restore when no budget needs the timer
_installed = False


def _arm(stack) -> None:
    """Point the timer at the earliest deadline enforced by it; none: disarm and restore."""
    global _previous_handler, _installed
    ends = [b.end for b in stack if b.alarm]
    if not ends:
        signal.setitimer(signal.ITIMER_REAL, 0)
        if _installed:
            # None: the handler was not set from Python; SIGALRM's default then
            signal.signal(signal.SIGALRM, _previous_handler if _previous_handler is not None
                          else signal.SIG_DFL)
            _installed, _previous_handler = False, None
        return
    if not _installed:
        _previous_handler = signal.signal(signal.SIGALRM, _on_alarm)
        _installed = True
    signal.setitimer(signal.ITIMER_REAL, max(min(ends) - time.monotonic(), 1e-6))


def _on_alarm(signum, frame):
    if _in_bookkeeping(frame):
        # raising inside a budget's own bookkeeping could leave the stack inconsistent
        signal.setitimer(signal.ITIMER_REAL, 1e-3)
        return
    found = _expired(_LOCAL.stack)
    if found is not None:
        _hear_dropped()
        raise OutOfTime(found.message)
    _arm(_LOCAL.stack)   # early, or a budget that has just been left: wait for the next


def _in_bookkeeping(frame) -> bool:
    while frame is not None:
        if frame.f_code in _QUIET:
            return True
        frame = frame.f_back
    return False


def _hear_dropped() -> None:
    """Python drops an exception raised where nothing can catch it -- inside a gc callback
    (Hypothesis has one), a ``__del__`` -- and hands it to ``sys.unraisablehook``.  An
    ``OutOfTime`` dropped there must not be lost: the timer fires again a moment later, once
    the interrupted callback has returned.  The hook is wrapped when the alarm fires, so that
    it is in place even where a test runner has set its own."""
    hook = sys.unraisablehook
    if getattr(hook, "derive_deadline", False):
        return

    def retry(info):
        if isinstance(info.exc_value, OutOfTime) and _expired(_LOCAL.stack) is not None:
            signal.setitimer(signal.ITIMER_REAL, 1e-3)
            return
        hook(info)

    retry.derive_deadline = True
    sys.unraisablehook = retry


_QUIET = {time_budget.__enter__.__code__, time_budget.__exit__.__code__, _arm.__code__}

__all__ = ["time_budget", "checkpoint", "remaining", "using_clock", "current_clock", "clock"]
