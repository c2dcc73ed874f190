"""The two frameworks, behind one small set of array operations ``program.Program`` uses.

Each backend is created once per run (importing a framework takes seconds) and evaluates in
float64.  PyTorch runs eagerly, one batch size at a time, with reverse-mode autograd
(``torch.autograd.grad``); a held statistic is ``detach()``.  JAX runs the whole claim as one
``jax.jit``-compiled function with ``jax.jacrev`` and ``stop_gradient``, compiled for a fast
compile rather than a fast run (``XLA_DEFAULT_FLAGS``, ``XLA_DEFAULT_OPTIONS``: the programs
are small and each runs a few dozen times); because JAX compiles once per array shape,
batches are padded to ``PADDED_WIDTH`` and masked, so one compilation serves every batch size
(a claim over several axes: every axis padded to its own width and masked on its own).  A
derivative of a derivative is double backward in PyTorch (``create_graph=True``) and
``jax.jacfwd`` over ``jax.jacrev`` in JAX.  The batch-norm operator is
``torch.nn.functional.batch_norm`` in training mode and ``jax.nn.standardize``, both without
running statistics.

A claim that names its operator (``Claim.operator``) has each normalization computed by that
operator: in PyTorch ``layer_norm``, ``instance_norm``, ``group_norm``, ``rms_norm`` (all in
``torch.nn.functional``) or the parametrization ``weight_norm`` installs; in JAX
``jax.nn.standardize`` for every centered one (with its two-pass, "stable", variance: the
claims' own), and plain ``jax.numpy`` where ``jax.nn`` has no such operator (RMSNorm, weight
normalization), as its name in the evidence says.  Every
normalization runs over one array axis; the other axes are independent groups, laid out as
each operator expects them (``standardize``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import os
import re
from importlib import metadata
from pathlib import Path

import numpy as np

from ..core import Unsupported
from .program import Context

PADDED_WIDTH = 64   # the largest batch an instance draws; JAX pads every batch to it


def cache_dir() -> Path:
    """Where compiled programs are kept: $DERIVE_CACHE, else the user's cache directory."""
    if os.environ.get("DERIVE_CACHE"):
        return Path(os.environ["DERIVE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "derive"


class OperatorUndefined(Exception):
    """The framework's operator refuses this input (PyTorch: one sample in training mode)."""


def _refusal(operator) -> str:
    """Where an operator refuses its input, as the evidence's summary says it."""
    if operator in ("instance_norm", "group_norm"):   # training mode: more than one value
        return "with one entry to normalize"
    return "at N = 1 or epsilon = 0"


class TorchBackend:
    name = "torch"
    dtype = "float64"
    operator = "torch.nn.functional.batch_norm(training=True)"
    operator_min_size = 2   # batch_norm in training mode needs more than one value per channel
    compiles = False        # eager: each evaluation runs op by op
    OPERATORS = {"batch_norm": operator,
                 "layer_norm": "torch.nn.functional.layer_norm",
                 "instance_norm": "torch.nn.functional.instance_norm",
                 "group_norm": "torch.nn.functional.group_norm",
                 "rms_norm": "torch.nn.functional.rms_norm",
                 "weight_norm": "torch.nn.utils.parametrizations.weight_norm"}

    def __init__(self):
        import torch
        import torch.nn.functional as F

        self.torch, self.F = torch, F
        # a plain str: torch's own version type would make every pickled result that
        # records it (the cache's, a framework peer's) import torch to be read back
        self.version = str(torch.__version__)
        self.float = torch.float64

    # -- array operations used by Program ---------------------------------------------------
    def asarray(self, v):
        return v if isinstance(v, self.torch.Tensor) else self.torch.as_tensor(v, dtype=self.float)

    def is_array(self, v):
        return isinstance(v, self.torch.Tensor)

    def reshape(self, v, shape):
        return self.torch.reshape(self.asarray(v), tuple(shape))

    def arange(self, n):
        return self.torch.arange(n, dtype=self.float)

    def eye(self, n):
        return self.torch.eye(n, dtype=self.float)

    def sum(self, v, axis):
        return v.sum(dim=axis, keepdim=True)

    def amax(self, v, axis):
        return v.amax(dim=axis, keepdim=True)

    def amin(self, v, axis):
        return v.amin(dim=axis, keepdim=True)

    def where(self, mask, v, other):
        return self.torch.where(mask, v, other)

    def detach(self, v):
        return v.detach() if self.is_array(v) else v

    def sqrt(self, v):
        return self.torch.sqrt(self.asarray(v))

    def maximum(self, a, b):
        return self.torch.maximum(self.asarray(a), self.asarray(b))

    def minimum(self, a, b):
        return self.torch.minimum(self.asarray(a), self.asarray(b))

    def function(self, name):
        return getattr(self.torch, name)

    def moveaxis(self, v, source, dest):
        return self.torch.movedim(v, source, dest)

    def transpose(self, v, order):
        return self.torch.permute(v, tuple(order))

    def squeeze(self, v, axis):
        return v.squeeze(axis)

    def diagonal(self, v, a, b):
        return self.torch.diagonal(v, dim1=a, dim2=b)

    def broadcast_to(self, v, shape):
        return v.expand(*shape)

    def jacobian(self, f, value, batched=True, create_graph=False, outer=False):
        """d f(value) / d value, shape f's + value's, by reverse-mode autograd: one backward
        pass per entry of f, batched (vmap over the cotangents) or one after another.

        ``create_graph``: the derivative is inside another, which differentiates it again
        (double backward): the backward passes record their own graph, and a value that
        depends on the outer derivative's variable is differentiated through, not detached.
        (``outer`` is JAX's concern: PyTorch has one mode.)"""
        torch = self.torch
        value = self.asarray(value)
        if create_graph and value.requires_grad:
            leaf = value.clone()    # a node of the outer graph: the outer derivative sees it
        else:
            leaf = value.detach().clone().requires_grad_(True)
        grad = dict(allow_unused=True, create_graph=create_graph)
        with torch.enable_grad():
            out = self.asarray(f(leaf))
        shape = tuple(out.shape) + tuple(leaf.shape)
        if not out.requires_grad:   # does not depend on the leaf at all
            return torch.zeros(shape, dtype=self.float)
        flat = out.reshape(-1)
        with torch.enable_grad():
            if flat.numel() == 1:
                rows = [torch.autograd.grad(flat[0], leaf, **grad)[0]]
            elif batched:
                cotangents = torch.eye(flat.numel(), dtype=self.float)
                rows = [torch.autograd.grad(flat, leaf, grad_outputs=cotangents,
                                            is_grads_batched=True, **grad)[0]]
            else:
                rows = [torch.autograd.grad(entry, leaf, retain_graph=True, **grad)[0]
                        for entry in flat]
        if any(r is None for r in rows):
            return torch.zeros(shape, dtype=self.float)
        return torch.stack(rows).reshape(shape) if len(rows) > 1 else rows[0].reshape(shape)

    def operator_name(self, operator=None) -> str:
        """The operator a claim's normalizations are computed by (None: batch_norm)."""
        return self.OPERATORS[operator or "batch_norm"]

    def refusal(self, operator=None) -> str:
        return _refusal(operator)

    def standardize(self, values, axis, eps, size, width, mask, operator=None):
        """``values`` normalized along the array axis ``axis`` by ``operator`` (None:
        batch_norm), every other array axis an independent group."""
        operator = operator or "batch_norm"
        if operator == "batch_norm":
            return self._batch_norm(values, axis, eps, size)
        name = self.operator_name(operator)
        eps = self.asarray(eps)
        if eps.requires_grad:
            raise Unsupported(f"{name} takes epsilon as a number, not a variable")
        # the others take epsilon = 0 (a claim at epsilon = 0 is checkable by them); each
        # normalizes along the last axis of its input, the groups before it
        x = self.torch.movedim(values, axis, -1)
        shape, groups = x.shape, int(np.prod(x.shape[:-1]))
        try:
            y = getattr(self, "_" + operator)(x, shape[-1], groups, float(eps))
        except ValueError as err:   # training mode: more than one value per statistic
            raise OperatorUndefined(f"{name}: {err}") from None
        return self.torch.movedim(y.reshape(shape), -1, axis)

    def _batch_norm(self, values, axis, eps, size):
        """Training mode, no running statistics: each column of (the axis, the rest)."""
        if size < self.operator_min_size:
            raise OperatorUndefined(f"{self.operator} needs a batch of 2 or more")
        eps = self.asarray(eps)
        if eps.requires_grad:
            raise Unsupported(f"{self.operator} takes epsilon as a number, not a variable")
        if not float(eps) > 0:
            raise OperatorUndefined(f"{self.operator} refuses epsilon = 0")
        x = self.torch.movedim(values, axis, 0)
        shape = x.shape
        y = self.F.batch_norm(x.reshape(shape[0], -1), None, None, training=True,
                              eps=float(eps))
        return self.torch.movedim(y.reshape(shape), 0, axis)

    def _layer_norm(self, x, width, groups, eps):
        """normalized_shape = the last axis: one statistic per group."""
        return self.F.layer_norm(x, (width,), eps=eps)

    def _instance_norm(self, x, width, groups, eps):
        """One sample, a channel per group, the normalized axis as its positions."""
        return self.F.instance_norm(x.reshape(1, groups, width), eps=eps)

    def _group_norm(self, x, width, groups, eps):
        """One sample of groups x width channels in ``groups`` groups: each group's
        channels are one group's entries (the group is the contiguous run of width)."""
        return self.F.group_norm(x.reshape(1, groups * width), groups, eps=eps)

    def _rms_norm(self, x, width, groups, eps):
        return self.F.rms_norm(x, (width,), eps=eps)

    def _weight_norm(self, x, width, groups, eps):
        """The parametrization ``weight_norm`` installs on a weight of (groups, width) --
        one output row per group, its norm over the row (dim = 0) -- evaluated at g = 1 and
        v = the values, so autograd runs through the module PyTorch's layers use."""
        v = x.reshape(groups, width)
        g = self.torch.ones((groups, 1), dtype=self.float)
        return self._weight_norm_module(groups, width)(g, v)

    def _weight_norm_module(self, groups, width):
        """The ``_WeightNorm`` module of an ``nn.Linear(width, groups)`` under
        ``weight_norm``, one per shape (it keeps no state but its dim)."""
        cache = self.__dict__.setdefault("_weight_norms", {})
        if (groups, width) not in cache:
            from torch.nn.utils.parametrizations import weight_norm
            layer = weight_norm(self.torch.nn.Linear(width, groups, bias=False,
                                                     dtype=self.float))
            cache[groups, width] = layer.parametrizations.weight[0]
        return cache[groups, width]

    # -- running a claim ---------------------------------------------------------------------
    def runner(self, programs, widths=None, layout=None):
        """A function (size, samples, params[, sizes]) -> every program's value as a NumPy
        array; ``sizes`` ({axis: size}, every axis) for a claim over several axes, whose
        sample arrays are shaped by its layout.  Nothing is padded (``widths`` and
        ``layout`` are for the JAX backend)."""
        def run(size, samples, params, sizes=None):
            axes = None if sizes is None else {a: (n, n, None) for a, n in sizes.items()}
            ctx = Context(size, size, {b: self.asarray(v) for b, v in samples.items()},
                          {p: self.asarray(v) for p, v in params.items()}, axes=axes)
            with self.one_thread():
                return [np.asarray(self.asarray(p(ctx)).detach().numpy()) for p in programs]
        return run

    @contextlib.contextmanager
    def one_thread(self):
        """The tensors are tiny: worker threads would only wait for each other (and, on a
        loaded machine, for the CPU -- a batch-norm call then takes 10 ms instead of 10 us)."""
        before = self.torch.get_num_threads()
        self.torch.set_num_threads(1)
        try:
            yield
        finally:
            self.torch.set_num_threads(before)


# what the JAX backend sets when the user set no XLA_FLAGS (cache keys treat it as unset)
XLA_DEFAULT_FLAGS = ("--xla_backend_optimization_level=0 "
                     "--xla_llvm_disable_expensive_passes=true "
                     "--xla_cpu_multi_thread_eigen=false")
# ... and compiles with, through ``jax.jit(compiler_options=)``, each unless the user's
# XLA_FLAGS name it: XLA:CPU's older elemental emitters compile these small programs in half
# the time of its MLIR fusion emitters (a claim's program in 0.07 s instead of 0.15 s; under
# a user's --xla_backend_optimization_level=3, a quarter less).  An XLA that no longer
# knows an option refuses it with an error (an unknown XLA_FLAGS entry would abort the
# process), and the backend then compiles without it.
XLA_DEFAULT_OPTIONS = {"xla_cpu_use_fusion_emitters": False}


def compile_options(xla_flags: str) -> dict:
    """The entries of ``XLA_DEFAULT_OPTIONS`` that ``xla_flags`` do not set themselves."""
    return {name: value for name, value in XLA_DEFAULT_OPTIONS.items()
            if not re.search(rf"--{name}(=|\s|$)", xla_flags)}


class JaxBackend:
    name = "jax"
    dtype = "float64"
    operator = "jax.nn.standardize"
    operator_min_size = 1
    compiles = True         # each claim is compiled once (jax.jit)
    # jax.nn standardizes (every centered normalization); the rest are written in jax.numpy
    OPERATORS = {"rms_norm": "jax.numpy (jax.nn has no RMSNorm)",
                 "weight_norm": "jax.numpy (jax.nn has no weight normalization)"}

    def __init__(self):
        # Compiling is most of JAX's cost here and the programs are small: skip XLA's
        # expensive optimizations (read when the backend starts; a user's XLA_FLAGS win,
        # over the flags and over every option they name).
        # One thread, as for PyTorch: the arrays are tiny.
        os.environ.setdefault("XLA_FLAGS", XLA_DEFAULT_FLAGS)
        self.compile_options = compile_options(os.environ["XLA_FLAGS"])
        import jax

        jax.config.update("jax_enable_x64", True)   # float64, as the other layers
        # compiled programs are kept on disk, so a second report compiles nothing
        jax.config.update("jax_compilation_cache_dir", str(cache_dir() / "jax"))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        import jax.numpy as jnp

        self.jax, self.jnp = jax, jnp
        self.version = metadata.version("jax")
        # jax.nn.standardize's variance is by default ("fast") mean(x^2) - mean(x)^2, which
        # cancels catastrophically when a group's spread is small against its mean (a shift
        # of 2 on a spread of 1e-5 loses five digits); the claims' variance is the two-pass
        # mean((x - mean x)^2), which jax.nn computes with algorithm="stable" (a newer JAX)
        self._stable = "algorithm" in inspect.signature(jax.nn.standardize).parameters

    def asarray(self, v):
        return self.jnp.asarray(v, dtype=self.jnp.float64) if not self.is_array(v) else v

    def is_array(self, v):
        return isinstance(v, self.jax.Array)

    def reshape(self, v, shape):
        return self.jnp.reshape(self.asarray(v), tuple(shape))

    def arange(self, n):
        return self.jnp.arange(n, dtype=self.jnp.float64)

    def eye(self, n):
        return self.jnp.eye(n, dtype=self.jnp.float64)

    def sum(self, v, axis):
        return self.jnp.sum(v, axis=axis, keepdims=True)

    def amax(self, v, axis):
        return self.jnp.max(v, axis=axis, keepdims=True)

    def amin(self, v, axis):
        return self.jnp.min(v, axis=axis, keepdims=True)

    def where(self, mask, v, other):
        return self.jnp.where(mask, v, other)

    def detach(self, v):
        return self.jax.lax.stop_gradient(v)

    def sqrt(self, v):
        return self.jnp.sqrt(self.asarray(v))

    def maximum(self, a, b):
        return self.jnp.maximum(a, b)

    def minimum(self, a, b):
        return self.jnp.minimum(a, b)

    def function(self, name):
        return getattr(self.jnp, name)

    def moveaxis(self, v, source, dest):
        return self.jnp.moveaxis(v, source, dest)

    def transpose(self, v, order):
        return self.jnp.transpose(v, tuple(order))

    def squeeze(self, v, axis):
        return self.jnp.squeeze(v, axis)

    def diagonal(self, v, a, b):
        return self.jnp.diagonal(v, axis1=a, axis2=b)

    def broadcast_to(self, v, shape):
        return self.jnp.broadcast_to(v, tuple(shape))

    def jacobian(self, f, value, batched=True, create_graph=False, outer=False):
        """d f(value) / d value by ``jax.jacrev``; a derivative of a derivative (``outer``)
        by ``jax.jacfwd`` over the inner ``jacrev`` -- forward-over-reverse, as
        ``jax.hessian``.  Nesting needs nothing else: the inner derivative is traced as a
        function of the outer one's variable (``create_graph`` is PyTorch's concern)."""
        return (self.jax.jacfwd if outer else self.jax.jacrev)(f)(self.asarray(value))

    def operator_name(self, operator=None) -> str:
        """The operator a claim's normalizations are computed by (None: batch_norm)."""
        return self.OPERATORS.get(operator, self.operator)

    def refusal(self, operator=None) -> str:
        return _refusal(operator)

    def standardize(self, values, axis, eps, size, width, mask, operator=None):
        """``values`` normalized along the array axis ``axis``; the padded entries (``mask``
        False) take no part in any statistic."""
        where = None
        if mask is not None:
            shape = [1] * values.ndim
            shape[axis] = width
            where = self.jnp.broadcast_to(self.jnp.reshape(mask, shape), values.shape)
        if operator in ("rms_norm", "weight_norm"):
            squares = values ** 2 if where is None else self.jnp.where(where, values ** 2, 0.0)
            total = self.jnp.sum(squares, axis=axis, keepdims=True)
            if operator == "rms_norm":
                return values * (total / size + eps) ** -0.5
            return values * total ** -0.5
        if self._stable:
            return self.jax.nn.standardize(values, axis=axis, epsilon=eps, where=where,
                                           algorithm="stable")
        # an older JAX: the same two-pass variance, handed to it
        mean = self.jnp.mean(values, axis=axis, keepdims=True, where=where)
        variance = self.jnp.mean((values - mean) ** 2, axis=axis, keepdims=True, where=where)
        return self.jax.nn.standardize(values, axis=axis, mean=mean, variance=variance,
                                       epsilon=eps, where=where)

    def jit(self, fn):
        """``jax.jit(fn)`` with ``compile_options``; where this JAX refuses them (too old
        for ``compiler_options``, or XLA knows an option no more), plain ``jax.jit`` from
        then on."""
        plain = self.jax.jit(fn)
        if not self.compile_options:
            return plain
        try:
            tuned = self.jax.jit(fn, compiler_options=self.compile_options)
        except TypeError:
            self.compile_options = {}
            return plain

        def call(*args):
            nonlocal tuned
            try:   # the first call compiles: there XLA takes the options or refuses them
                return tuned(*args)
            except Exception as err:  # noqa: BLE001 -- the type moved between versions
                if tuned is plain or "compile option" not in str(err):
                    raise
                self.compile_options = {}
                tuned = plain
                return plain(*args)
        return call

    def runner(self, programs, widths=None, layout=None):
        """One jit-compiled function for every batch size: batches padded to PADDED_WIDTH.

        A claim over several axes gives ``widths`` ({axis: padded length}, every axis) and
        its ``layout`` ({sample base: (axis per position, ...)}): every axis is padded to its
        own width, each sample array along each of its positions, and each axis has its own
        mask.  That is correct per axis for the same reason as for one: every reduction masks
        the padded entries of the axis it runs over (so a padded entry never reaches a real
        one, nor a real one's derivative), padded entries repeat real ones along every axis
        (so every intermediate value stays finite and a masked NaN cannot poison a gradient),
        and the results are cut back to the real sizes of the free indices' axes.  The widths
        are the largest sizes the instances draw, so one compilation serves every instance.
        """
        if widths is not None:
            return self._runner_axes(programs, dict(widths), dict(layout or {}))
        jnp = self.jnp
        bases: dict = {}

        def evaluate(size, samples, params, mask):
            ctx = Context(size, PADDED_WIDTH, {bases[k]: v for k, v in samples.items()},
                          {bases[k]: v for k, v in params.items()}, mask)
            return [jnp.asarray(p(ctx), dtype=jnp.float64) for p in programs]

        compiled = self.jit(evaluate)

        def run(size, samples, params):
            bases.update({str(b): b for b in samples} | {str(p): p for p in params})
            if size > PADDED_WIDTH:
                raise Unsupported(f"batches above {PADDED_WIDTH} are not padded for")
            # padding repeats the real samples: every intermediate value stays finite
            padded = {str(b): jnp.asarray(np.resize(np.asarray(v, dtype=float), PADDED_WIDTH))
                      for b, v in samples.items()}
            values = {str(p): jnp.asarray(float(v)) for p, v in params.items()}
            mask = jnp.arange(PADDED_WIDTH) < size
            return [np.asarray(v) for v in compiled(float(size), padded, values, mask)]
        return run

    def _runner_axes(self, programs, widths, layout):
        jnp = self.jnp
        names: dict = {}   # str -> symbol (jit takes string keys)

        def evaluate(sizes, samples, params, masks):
            axes = {names[a]: (sizes[a], widths[names[a]], masks[a]) for a in sizes}
            ctx = Context(None, None, {names[k]: v for k, v in samples.items()},
                          {names[k]: v for k, v in params.items()}, axes=axes)
            return [jnp.asarray(p(ctx), dtype=jnp.float64) for p in programs]

        compiled = self.jit(evaluate)

        def run(size, samples, params, sizes=None):
            sizes = dict(sizes or {})
            missing = set(widths) - set(sizes)
            if missing:
                raise Unsupported("no size given for the axes "
                                  + ", ".join(sorted(map(str, missing))))
            for a, n in sizes.items():
                if n > widths[a]:
                    raise Unsupported(f"{a} = {n} is above the padded width {widths[a]}")
            names.update({str(k): k for k in [*samples, *params, *sizes]})
            padded = {str(b): jnp.asarray(pad(v, layout.get(b, ()), sizes, widths))
                      for b, v in samples.items()}
            values = {str(p): jnp.asarray(float(v)) for p, v in params.items()}
            masks = {str(a): jnp.arange(widths[a]) < n for a, n in sizes.items()}
            reals = {str(a): float(n) for a, n in sizes.items()}
            return [np.asarray(v) for v in compiled(reals, padded, values, masks)]
        return run


def pad(values, axes, sizes, widths):
    """A sample array (one position per axis of ``axes``) padded to ``widths`` along every
    position, by repeating its real entries cyclically (``np.resize`` does the same for one
    axis)."""
    out = np.asarray(values, dtype=float)
    if out.ndim != len(axes):
        raise Unsupported(f"an array of {out.ndim} axes for a tensor of {len(axes)}")
    for position, axis in enumerate(axes):
        if axis is None:
            continue
        real = out.shape[position]
        out = np.take(out, np.arange(widths[axis]) % real, axis=position)
    return out


BACKENDS = {"torch": (TorchBackend, "torch"), "jax": (JaxBackend, "jax")}
_CREATED: dict = {}


def backend(name: str):
    """The backend called ``name``, created once per run; None when it is not installed."""
    if name not in BACKENDS:
        raise Unsupported(f"unknown framework {name!r}: choose from {', '.join(BACKENDS)}")
    if name not in _CREATED:
        cls, module = BACKENDS[name]
        _CREATED[name] = cls() if importlib.util.find_spec(module) is not None else None
    return _CREATED[name]
