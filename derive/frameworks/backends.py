"""The two frameworks, behind one small set of array operations ``program.Program`` uses.

Each backend is created once per run (importing a framework takes seconds) and evaluates in
float64.  PyTorch runs eagerly, one batch size at a time, with reverse-mode autograd
(``torch.autograd.grad``); a held statistic is ``detach()``.  JAX runs the whole claim as one
``jax.jit``-compiled function with ``jax.jacrev`` and ``stop_gradient``; because JAX compiles
once per array shape, batches are padded to ``PADDED_WIDTH`` and masked, so one compilation
serves every batch size.  The batch-norm operator is ``torch.nn.functional.batch_norm`` in
training mode and ``jax.nn.standardize``, both without running statistics.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
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


class TorchBackend:
    name = "torch"
    dtype = "float64"
    operator = "torch.nn.functional.batch_norm(training=True)"
    operator_min_size = 2   # batch_norm in training mode needs more than one value per channel
    compiles = False        # eager: each evaluation runs op by op

    def __init__(self):
        import torch
        import torch.nn.functional as F

        self.torch, self.F = torch, F
        self.version = torch.__version__
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

    def squeeze(self, v, axis):
        return v.squeeze(axis)

    def diagonal(self, v, a, b):
        return self.torch.diagonal(v, dim1=a, dim2=b)

    def broadcast_to(self, v, shape):
        return v.expand(*shape)

    def jacobian(self, f, value, batched=True):
        """d f(value) / d value, shape f's + value's, by reverse-mode autograd: one backward
        pass per entry of f, batched (vmap over the cotangents) or one after another."""
        torch = self.torch
        leaf = self.asarray(value).detach().clone().requires_grad_(True)
        with torch.enable_grad():
            out = self.asarray(f(leaf))
        shape = tuple(out.shape) + tuple(leaf.shape)
        if not out.requires_grad:   # does not depend on the leaf at all
            return torch.zeros(shape, dtype=self.float)
        flat = out.reshape(-1)
        if flat.numel() == 1:
            rows = [torch.autograd.grad(flat[0], leaf, allow_unused=True)[0]]
        elif batched:
            cotangents = torch.eye(flat.numel(), dtype=self.float)
            rows = [torch.autograd.grad(flat, leaf, grad_outputs=cotangents,
                                        is_grads_batched=True, allow_unused=True)[0]]
        else:
            rows = [torch.autograd.grad(entry, leaf, retain_graph=True, allow_unused=True)[0]
                    for entry in flat]
        if any(r is None for r in rows):
            return torch.zeros(shape, dtype=self.float)
        return torch.stack(rows).reshape(shape) if len(rows) > 1 else rows[0].reshape(shape)

    def standardize(self, values, axis, eps, ctx):
        if ctx.size < self.operator_min_size:
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

    # -- running a claim ---------------------------------------------------------------------
    def runner(self, programs):
        """A function (size, samples, params) -> every program's value as a NumPy array."""
        def run(size, samples, params):
            ctx = Context(size, size, {b: self.asarray(v) for b, v in samples.items()},
                          {p: self.asarray(v) for p, v in params.items()})
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


class JaxBackend:
    name = "jax"
    dtype = "float64"
    operator = "jax.nn.standardize"
    operator_min_size = 1
    compiles = True         # each claim is compiled once (jax.jit)

    def __init__(self):
        # Compiling is most of JAX's cost here and the programs are small: skip XLA's
        # expensive optimizations (read when the backend starts; a user's XLA_FLAGS win).
        # One thread, as for PyTorch: the arrays are tiny.
        os.environ.setdefault("XLA_FLAGS", XLA_DEFAULT_FLAGS)
        import jax

        jax.config.update("jax_enable_x64", True)   # float64, as the other layers
        # compiled programs are kept on disk, so a second report compiles nothing
        jax.config.update("jax_compilation_cache_dir", str(cache_dir() / "jax"))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        import jax.numpy as jnp

        self.jax, self.jnp = jax, jnp
        self.version = metadata.version("jax")

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

    def squeeze(self, v, axis):
        return self.jnp.squeeze(v, axis)

    def diagonal(self, v, a, b):
        return self.jnp.diagonal(v, axis1=a, axis2=b)

    def broadcast_to(self, v, shape):
        return self.jnp.broadcast_to(v, tuple(shape))

    def jacobian(self, f, value, batched=True):
        return self.jax.jacrev(f)(self.asarray(value))

    def standardize(self, values, axis, eps, ctx):
        shape = [1] * values.ndim
        shape[axis] = ctx.width
        where = self.jnp.broadcast_to(self.jnp.reshape(ctx.mask, shape), values.shape)
        return self.jax.nn.standardize(values, axis=axis, epsilon=eps, where=where)

    def runner(self, programs):
        """One jit-compiled function for every batch size: batches padded to PADDED_WIDTH."""
        jnp = self.jnp
        bases: dict = {}

        def evaluate(size, samples, params, mask):
            ctx = Context(size, PADDED_WIDTH, {bases[k]: v for k, v in samples.items()},
                          {bases[k]: v for k, v in params.items()}, mask)
            return [jnp.asarray(p(ctx), dtype=jnp.float64) for p in programs]

        compiled = self.jax.jit(evaluate)

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
