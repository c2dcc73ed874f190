"""A verification cache that cannot lie: a result is reused only for exactly what produced it.

A result is stored under a key covering everything it depends on:

* the claim, in a canonical form (``claim_material``): every field of the ``Claim``, each
  SymPy expression as its ``srepr`` with every symbol's assumptions and every arbitrary
  function (``activation``) by its name, LaTeX name and place in the claim.  A claim that
  contains a class defined outside SymPy and ``derive`` (whose behaviour no key can cover) is
  not cached at all;
* the ``Settings``;
* the source of ``derive`` itself (``source_hash``: every ``.py`` file of the package);
* the versions of Python, SymPy, mpmath, NumPy, Hypothesis, torch and jax, "not installed"
  included (``library_versions``), the machine, and the environment variables that change
  floating-point results (``NUMERIC_ENVIRONMENT``).

Entries live in ``cache_dir()/results`` (``$DERIVE_CACHE``, else ``$XDG_CACHE_HOME/derive``
or ``~/.cache/derive``), one file per key, written to a temporary name and renamed into
place, so processes writing at once leave a whole entry.  Each entry repeats its key, the
format version and a SHA-256 of its payload, and is checked against all three on loading; an
entry that is corrupt, truncated, of another format or for another key is ignored (and then
rewritten), never trusted.  A result whose verdict may hinge on the machine's load (undecided,
a layer that could not run or ran out of time) is not stored: it is checked again next time.

The result itself is pickled relative to its claim (``dumps_result``): the claim, its
equations and its arbitrary functions are stored as references and restored as the caller's
own objects, so a loaded result is bound to the claim in hand (and the worker processes of
``runner`` return results the same way).

``report`` caches two more things the same way: a report's rendered documents (.tex, .json,
.md), under the stored bytes of its results, its story, settings and formats, the source hash
and the versions the documents print (``documents_key``); and its PDF, under the LaTeX source,
the figures, ``pdf.py`` and the TeX tools it is built with (``pdf_key``).  The figures
themselves are kept under the source, the versions, matplotlib's settings and the fonts it
can choose from (``figures_key``).

The cache is kept under a size limit (``DERIVE_CACHE_LIMIT`` megabytes, default
``DEFAULT_LIMIT_MB``; 0: none): after a run that stored something, ``Cache.prune`` removes the
entries used least recently (an entry's modification time is set when it is read) until
derive's own files -- its kinds of entry, and JAX's compiled programs -- fit.  Nothing else in
the directory is touched.

Two things make a run with nothing changed fast.  A result's ``Summary`` (verdict, layers) is
stored beside it: ``derive list`` prints it, and ``report`` takes a result as a ``Stored`` (its
summary and the digest of its bytes) and unpickles it only to render documents that are not
cached.  And a built-in topic's claim index (ids, expected verdicts, result keys) is stored
under everything those keys are made of except the claims themselves, which derive's source
builds (``index_key``): ``derive list`` reads it instead of building the claims.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import pickle
import platform
import re
import shutil
import sys
import tempfile
import types
from importlib import metadata
from pathlib import Path

import sympy as sp
from sympy.core.function import FunctionClass, UndefinedFunction
from sympy.printing.repr import ReprPrinter

from .calculus import Batch, SampleIndex
from .core import PROVED, REFUTED, UNDECIDED, Claim, Result

FORMAT = 1
LIBRARIES = ("sympy", "mpmath", "numpy", "hypothesis", "torch", "jax", "jaxlib")
# what makes the floating-point layers round differently (the documents print only bounds,
# but the timings file records the exact errors)
NUMERIC_ENVIRONMENT = ("NPY_DISABLE_CPU_FEATURES", "XLA_FLAGS")


LIMIT_VARIABLE = "DERIVE_CACHE_LIMIT"
DEFAULT_LIMIT_MB = 512
# the subdirectories derive writes, and the names of the files it (or JAX, for its compiled
# programs) writes there: nothing else is ever removed
ENTRY_KINDS = ("results", "summary", "index", "documents", "figures", "pdf")
JAX_KIND = "jax"
OWN_NAMES = {kind: re.compile(r"[0-9a-f]{64}\.pickle") for kind in ENTRY_KINDS}
OWN_NAMES[JAX_KIND] = re.compile(r".+-[0-9a-f]{64}-(cache|atime)")


def size_limit(environ=None) -> int | None:
    """The bytes the cache may hold (``DERIVE_CACHE_LIMIT``, in megabytes), or None for no
    limit (0).  ValueError for a value that is not a number of megabytes."""
    text = (os.environ if environ is None else environ).get(LIMIT_VARIABLE, "").strip()
    if not text:
        return DEFAULT_LIMIT_MB * 2 ** 20
    try:
        megabytes = float(text)
    except ValueError:
        megabytes = -1.0
    if not megabytes >= 0 or megabytes == float("inf"):
        raise ValueError(f"{LIMIT_VARIABLE} must be a number of megabytes (0: no limit), "
                         f"not {text!r}")
    return max(1, int(megabytes * 2 ** 20)) if megabytes else None


def _touch(path: Path) -> None:
    """Mark an entry as used now: the last to go when the cache is pruned."""
    with contextlib.suppress(OSError):
        os.utime(path)


class Uncacheable(Exception):
    """The claim holds something no key can describe faithfully."""


def cache_dir() -> Path:
    """The user's cache directory for derive (``frameworks.backends.cache_dir``)."""
    from .frameworks.backends import cache_dir as base
    return base()


# -- the key -----------------------------------------------------------------------------------

def _ours(cls) -> bool:
    """A class whose behaviour the key covers: SymPy's (by its version) or derive's (by the
    source hash)."""
    if isinstance(cls, UndefinedFunction):   # sp.Function("f"): SymPy's, by name
        return True
    module = getattr(cls, "__module__", None) or ""
    return module.split(".")[0] in ("sympy", "derive") and not module.startswith("derive_")


class _Canonical(ReprPrinter):
    """``srepr``, made faithful: assumptions sorted, undefined functions with theirs, arbitrary
    functions numbered in order of appearance, and classes of unknown origin refused."""

    def __init__(self):
        super().__init__()
        self.activations: list = []   # the claim's activation classes, first appearance first
        self.foreign: list[str] = []  # classes the key cannot cover

    def _print(self, expr, **kwargs):
        cls = expr if isinstance(expr, type) else type(expr)
        if isinstance(expr, sp.Basic) and not _ours(cls):
            self.foreign.append(f"{cls.__module__}.{cls.__qualname__}")
        return super()._print(expr, **kwargs)

    def _print_ActivationClass(self, cls):
        base = vars(cls).get("_primitive", cls)
        number = next((n for n, known in enumerate(self.activations) if known is base), None)
        if number is None:
            number = len(self.activations)
            self.activations.append(base)
        name, latex = base._activation
        part = "derivative" if base is not cls else "function"
        return f"Activation({number}, {name!r}, {latex!r}, {part})"

    def _print_FunctionClass(self, cls):
        if isinstance(cls, UndefinedFunction):
            return f"Function({cls.__name__!r}, {sorted(cls._kwargs.items())!r})"
        if not _ours(cls):
            self.foreign.append(f"{cls.__module__}.{cls.__qualname__}")
        return f"{cls.__module__}.{cls.__qualname__}"

    # SymPy keeps the arguments of a sum and a product sorted canonically (Basic.compare):
    # printed in that order, without srepr's re-sorting, which was most of a key's time
    def _print_Add(self, expr, order=None):
        return f"{type(expr).__name__}(" + ", ".join(self._print(a) for a in expr.args) + ")"

    _print_Mul = _print_Add

    def _print_Symbol(self, expr):
        assumptions = sorted(expr._assumptions_orig.items())
        if expr.is_Dummy:
            assumptions.append(("dummy_index", expr.dummy_index))
        if isinstance(expr, SampleIndex):
            assumptions.append(("axis", self.doprint(expr.axis)))
        return f"{type(expr).__qualname__}({expr.name!r}, {assumptions!r})"


def _function_name(fn) -> str | None:
    """A module-level function of the ``derive`` package by its qualified name (its source is
    in the key's source hash), else None: a function from elsewhere, a lambda, a nested
    function or a bound method has no name that says what it does."""
    if not isinstance(fn, types.FunctionType):
        return None
    module, qualname = getattr(fn, "__module__", None) or "", fn.__qualname__
    if module.split(".")[0] != "derive" or "<" in qualname:
        return None
    found = sys.modules.get(module)
    for part in qualname.split("."):
        found = getattr(found, part, None)
    return f"{module}.{qualname}" if found is fn else None


def _material(value, printer: _Canonical) -> str:
    if value is None or isinstance(value, (bool, int, float, str)):
        return f"{type(value).__name__}:{value!r}"
    if isinstance(value, (sp.Basic, FunctionClass)):
        return printer.doprint(value)
    if isinstance(value, (tuple, list)):
        return f"{type(value).__name__}(" + ", ".join(_material(v, printer) for v in value) + ")"
    if isinstance(value, Batch):
        return f"Batch({printer.doprint(value.size)})"
    if dataclasses.is_dataclass(value) and not isinstance(value, type) and _ours(type(value)):
        return f"{type(value).__qualname__}(" + ", ".join(
            f"{f.name}={_material(getattr(value, f.name), printer)}"
            for f in dataclasses.fields(value)) + ")"
    if callable(value) and not isinstance(value, type):   # a corroboration's function
        name = _function_name(value)
        if name is None:
            printer.foreign.append(f"{getattr(value, '__module__', None)}."
                                   f"{getattr(value, '__qualname__', type(value).__qualname__)}")
            return "foreign"
        return f"function:{name}"
    raise Uncacheable(f"a {type(value).__qualname__} cannot be part of a cache key")


def claim_material(claim: Claim) -> tuple[str, list]:
    """The claim's canonical form (every field) and its activation classes in the order the
    form numbers them.  Raises ``Uncacheable`` for a claim no key can describe faithfully."""
    printer = _Canonical()
    text = _material(claim, printer)
    if printer.foreign:
        raise Uncacheable("the claim uses " + ", ".join(sorted(set(printer.foreign))))
    return text, printer.activations


def claim_activations(claim: Claim) -> list:
    """The claim's activation classes, numbered as in ``claim_material``."""
    printer = _Canonical()
    try:
        _material(claim, printer)
    except Uncacheable:
        pass
    return printer.activations


def settings_material(settings) -> str:
    return f"{type(settings).__qualname__}(" + ", ".join(
        f"{f.name}={getattr(settings, f.name)!r}" for f in dataclasses.fields(settings)) + ")"


def _hash_source() -> str:
    """SHA-256 of every ``.py`` file of the ``derive`` package, by relative path, as they are
    on disk now."""
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        digest.update(f"{rel}\0{path.stat().st_size}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


# the source this run is made of: hashed when it starts (derive.cache is imported before any
# claim is checked), and hashed again before anything is stored (``source_unchanged``)
_SOURCE_AT_START = _hash_source()


def source_hash() -> str:
    """The hash of derive's source (every ``.py`` file) as this run started."""
    return _SOURCE_AT_START


def source_unchanged() -> bool:
    """Whether derive's source on disk is still the one this run started with: a result
    computed by a module edited (and imported) meanwhile must not be stored under the old
    source's key."""
    return _hash_source() == _SOURCE_AT_START


def library_versions() -> dict[str, str]:
    """The versions a result depends on; a library that is not installed is "not installed".

    Read once per process (reading package metadata takes about 8 ms, and every claim's key
    needs it): the versions of the libraries this process imported do not change under it.
    The memo is keyed by the metadata reader, so a reader swapped in (a test) reads again."""
    reader = metadata.version
    if _VERSIONS.get("reader") is not reader:
        out = {"python": f"{platform.python_implementation()} {platform.python_version()}",
               "machine": platform.machine()}
        for name in LIBRARIES:
            try:
                out[name] = reader(name)
            except metadata.PackageNotFoundError:
                out[name] = "not installed"
        _VERSIONS.update(reader=reader, versions=out)
    return dict(_VERSIONS["versions"])


_VERSIONS: dict = {}


# as the user set them: taken when derive starts, before a backend sets its own defaults
# (the JAX backend sets XLA_FLAGS if the user did not)
_ENVIRONMENT = {name: os.environ.get(name) for name in NUMERIC_ENVIRONMENT}


def environment() -> dict[str, str | None]:
    # the backend's own default is no choice of the user's: the key must not depend on
    # whether a JAX backend started in this process before derive.cache was imported
    from .frameworks.backends import XLA_DEFAULT_FLAGS
    return {name: (None if name == "XLA_FLAGS" and value == XLA_DEFAULT_FLAGS else value)
            for name, value in _ENVIRONMENT.items()}


def result_key(claim: Claim, settings) -> str:
    """The key of ``check(claim, settings)``'s result.  Raises ``Uncacheable``."""
    parts = ["derive result", str(FORMAT), claim_material(claim)[0], settings_material(settings),
             source_hash(), repr(sorted(library_versions().items())),
             repr(sorted(environment().items()))]
    return _digest(parts)


def index_key(topic: str, settings) -> str:
    """The key of a built-in topic's claim index: the topic, the settings and all that its
    claims' keys are made of besides the claims, which derive's source builds."""
    parts = ["derive index", str(FORMAT), topic, settings_material(settings), source_hash(),
             repr(sorted(library_versions().items())), repr(sorted(environment().items()))]
    return _digest(parts)


@dataclasses.dataclass(frozen=True)
class IndexEntry:
    """One claim of a topic's index: its id, its expected verdict and its result key."""

    id: str
    expected: str | None
    key: str | None


def pdf_key(tex_source: str, files: dict[str, bytes]) -> str:
    """The key of a PDF: its LaTeX source, the files it includes, how it is built (pdf.py)
    and the TeX tools it is built with."""
    from . import pdf
    tools = []
    for tool in ("latexmk", "pdflatex"):
        where = shutil.which(tool)
        stat = os.stat(where) if where else None
        tools.append((tool, where and os.path.realpath(where),
                      stat and (stat.st_size, stat.st_mtime_ns)))
    parts = ["derive pdf", str(FORMAT), tex_source,
             repr(sorted((name, hashlib.sha256(data).hexdigest())
                         for name, data in files.items())),
             Path(pdf.__file__).read_text(encoding="utf-8"), repr(tools)]
    return _digest(parts)


def documents_key(story, formats, settings, timings: bool, digests) -> str:
    """The key of a report's rendered documents: the story, the formats, the settings, the
    results (``digests``: SHA-256 of each one's stored bytes, in order), the renderer (the
    source hash) and the versions the documents print.  Raises ``Uncacheable``."""
    from .render.common import library_versions as printed
    printer = _Canonical()
    story_text = _material(story, printer)
    if printer.foreign:
        raise Uncacheable("the story uses " + ", ".join(sorted(set(printer.foreign))))
    parts = ["derive documents", str(FORMAT), story_text, repr(sorted(set(formats) - {"pdf"})),
             repr(bool(timings)), settings_material(settings), source_hash(),
             repr(sorted(printed().items())), repr(sorted(library_versions().items())),
             repr(sorted(environment().items())), *digests]
    return _digest(parts)


def figures_key(names) -> str:
    """The key of the report's figures ``names``: the source that computes and draws them,
    the library versions, matplotlib's settings (a user's matplotlibrc included) and the
    fonts it can choose from."""
    import matplotlib
    from matplotlib import font_manager
    # every setting but the interactive backend (a figure is saved by its format's canvas)
    settings = sorted((k, repr(matplotlib.rcParams._get(k))) for k in matplotlib.rcParams
                      if k != "backend")
    fonts = sorted(repr((f.fname, f.name, f.style, f.variant, f.weight, f.stretch))
                   for f in font_manager.fontManager.ttflist + font_manager.fontManager.afmlist)
    parts = ["derive figures", str(FORMAT), repr(list(names)), source_hash(),
             repr(sorted(library_versions().items())), f"matplotlib {matplotlib.__version__}",
             repr(settings), repr(fonts), repr(sorted(environment().items()))]
    return _digest(parts)


def _digest(parts) -> str:
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8", "surrogatepass")
        digest.update(len(data).to_bytes(8, "big"))  # no two lists of parts hash alike
        digest.update(data)
    return digest.hexdigest()


# -- a result, pickled relative to its claim ----------------------------------------------------

def _references(claim: Claim) -> dict[int, tuple]:
    refs = {id(claim): ("claim",), id(claim.batch): ("batch",)}
    for n, eq in enumerate(claim.equations):
        refs[id(eq)] = ("equation", n)
    for n, cls in enumerate(claim_activations(claim)):
        refs[id(cls)] = ("activation", n)
        refs[id(cls.derivative)] = ("derivative", n)
    return refs


class _Pickler(pickle.Pickler):
    def __init__(self, file, refs):
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.refs = refs

    def persistent_id(self, obj):
        return self.refs.get(id(obj))

    def reducer_override(self, obj):
        # a library's string type (torch's version string) as the plain string it is: the
        # same text, and loading it imports nothing (torch takes seconds to import)
        if isinstance(obj, str) and type(obj) is not str and not _ours(type(obj)):
            return str, (str.__str__(obj),)
        return NotImplemented


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, claim: Claim):
        super().__init__(file)
        self.claim = claim
        self.activations = claim_activations(claim)

    def persistent_load(self, pid):
        kind, *rest = pid
        if kind == "claim":
            return self.claim
        if kind == "batch":
            return self.claim.batch
        if kind == "equation":
            return self.claim.equations[rest[0]]
        if kind == "activation":
            return self.activations[rest[0]]
        if kind == "derivative":
            return self.activations[rest[0]].derivative
        raise pickle.UnpicklingError(f"unknown reference {pid!r}")


def dumps_result(result: Result) -> bytes:
    """The result, pickled with its claim (and the claim's parts) as references."""
    refs = _references(result.claim)
    buf = io.BytesIO()
    _Pickler(buf, refs).dump(result)
    return buf.getvalue()


def loads_result(data: bytes, claim: Claim) -> Result:
    """A result pickled by ``dumps_result``, bound to ``claim`` (which must be the same claim,
    or one with the same ``claim_material``)."""
    result = _Unpickler(io.BytesIO(data), claim).load()
    if not isinstance(result, Result) or result.claim is not claim:
        raise pickle.UnpicklingError("not a result of this claim")
    return result


def transient(result: Result) -> bool:
    """Whether the result may hinge on time or the machine's load, not only on its key:
    undecided, or a layer that could not run, was not run or ran out of time."""
    return result.verdict.status == UNDECIDED or any(
        e.summary.startswith(("could not run", "not run")) or e.details.get("not_reached")
        for e in result.evidence)


# -- summaries: what `derive list` prints, read without loading a proof ------------------------

@dataclasses.dataclass(frozen=True)
class Summary:
    """A result's verdict and its layers' agreement, stored beside the result under its key:
    loading 107 results with their proofs takes seconds, reading their summaries does not."""

    id: str
    status: str
    layers: tuple      # ((kind, agrees), ...) in the result's order
    seconds: float

    @staticmethod
    def of(result) -> "Summary":
        if isinstance(result, Summary):
            return result
        if isinstance(result, Stored):
            return result.summary
        return Summary(result.id, result.verdict.status,
                       tuple((e.kind, bool(e.ok)) for e in result.evidence), result.seconds)

    def dumps(self) -> bytes:
        return json.dumps({"id": self.id, "status": self.status,
                           "layers": [list(layer) for layer in self.layers],
                           "seconds": self.seconds}, sort_keys=True).encode()

    @staticmethod
    def loads(data: bytes, claim_id: str) -> "Summary":
        """The summary in ``data``, checked to be one of the claim ``claim_id``'s (ValueError
        otherwise)."""
        d = json.loads(data)
        layers = d["layers"]
        if not (d["id"] == claim_id and d["status"] in (PROVED, REFUTED, UNDECIDED)
                and isinstance(d["seconds"], (int, float))
                and all(isinstance(k, str) and isinstance(ok, bool) for k, ok in layers)):
            raise ValueError("not a summary of this claim")
        return Summary(d["id"], d["status"], tuple((k, ok) for k, ok in layers),
                       float(d["seconds"]))


class Stored:
    """A result held by the cache and not loaded yet (``Cache.peek``): its ``claim``, its
    ``summary`` and the digest of its stored bytes, which key the documents rendered from it.
    ``load()`` unpickles it, once; any other attribute is the loaded result's.  A report whose
    documents are cached never loads it: loading 107 results takes seconds."""

    def __init__(self, cache: "Cache", claim: Claim, settings, key: str, payload: bytes,
                 summary: Summary):
        self.claim, self.summary = claim, summary
        self._cache, self._settings, self._key, self._payload = cache, settings, key, payload
        self._result: Result | None = None

    @property
    def id(self) -> str:
        return self.claim.id

    def load(self) -> Result:
        """The result itself.  Bytes that pass the envelope's checks and still do not load
        (they cannot, short of a bug) are not trusted: the claim is checked again."""
        if self._result is None:
            try:
                self._result = loads_result(self._payload, self.claim)
            except Exception:  # noqa: BLE001
                from .verify import check
                self._result = check(self.claim, self._settings)
                self._cache.put(self.claim, self._settings, self._result, key=self._key)
            self.summary = Summary.of(self._result)
        return self._result

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.load(), name)


def loaded(results) -> list:
    """``results`` with every ``Stored`` one loaded."""
    return [r.load() if isinstance(r, Stored) else r for r in results]


# -- entries on disk ---------------------------------------------------------------------------

class _Envelope(pickle.Unpickler):
    """An entry's outer layer holds only plain values: no class is ever looked up."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"an entry names {module}.{name}")


def _pack(kind: str, key: str, payload: bytes) -> bytes:
    return pickle.dumps({"format": FORMAT, "kind": kind, "key": key,
                         "sha256": hashlib.sha256(payload).hexdigest(), "payload": payload},
                        protocol=pickle.HIGHEST_PROTOCOL)


def _unpack(data: bytes, kind: str, key: str) -> bytes:
    entry = _Envelope(io.BytesIO(data)).load()
    if not (isinstance(entry, dict) and entry.get("format") == FORMAT
            and entry.get("kind") == kind and entry.get("key") == key
            and isinstance(entry.get("payload"), bytes)
            and hashlib.sha256(entry["payload"]).hexdigest() == entry.get("sha256")):
        raise ValueError("not an entry for this key")
    return entry["payload"]


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class Cache:
    """Results (and report PDFs) by key, in ``directory`` (default: ``cache_dir()``).

    ``fresh``: every lookup misses, and what is computed is stored anew (``--fresh``).
    ``hits``/``misses`` count the result lookups; ``served(result)`` says whether a result
    came from the cache.
    """

    def __init__(self, directory: Path | None = None, fresh: bool = False,
                 limit: int | None = None):
        self.directory = Path(directory) if directory is not None else cache_dir()
        self.fresh = fresh
        self.limit = limit      # bytes ``tidy`` keeps it under (``size_limit``); None: any
        self.hits = 0
        self.misses = 0
        self._served: set[int] = set()
        self._digests: dict[int, str] = {}   # id(result) -> SHA-256 of its stored bytes
        self._keep: list = []   # the results above, so that their ids stay theirs
        self.wrote = False      # whether this run stored anything (then ``prune``)

    def _path(self, kind: str, key: str) -> Path:
        return self.directory / ("results" if kind == "result" else kind) / f"{key}.pickle"

    def _read(self, kind: str, key: str) -> bytes | None:
        if self.fresh:
            return None
        path = self._path(kind, key)
        try:
            found = _unpack(path.read_bytes(), kind, key)
        except Exception:  # noqa: BLE001 -- missing, corrupt, truncated, foreign: not trusted
            return None
        _touch(path)
        return found

    def _write(self, kind: str, key: str, payload: bytes) -> None:
        if not source_unchanged():
            return   # derive was edited during the run: what it computed is not stored
        try:
            write_atomically(self._path(kind, key), _pack(kind, key, payload))
            self.wrote = True
        except OSError:
            pass   # a cache that cannot be written only costs time

    # -- its size ----------------------------------------------------------------------------
    def files(self) -> list[tuple[float, int, Path]]:
        """(last used, bytes, path) of every file derive keeps here: its entries and JAX's
        compiled programs, nothing else."""
        found = []
        for kind, own in OWN_NAMES.items():
            folder = self.directory / kind
            try:
                if folder.is_symlink():
                    continue   # a folder put here by someone else: not derive's to empty
                listing = list(os.scandir(folder))
            except OSError:
                continue
            for entry in listing:
                if not own.fullmatch(entry.name):
                    continue
                try:
                    if entry.is_file(follow_symlinks=False):
                        info = entry.stat(follow_symlinks=False)
                        found.append((info.st_mtime, info.st_size, Path(entry.path)))
                except OSError:
                    continue   # removed meanwhile (another process pruning)
        return found

    def tidy(self) -> None:
        """After a run that stored something: back under ``limit``."""
        if self.wrote:
            self.prune(self.limit)

    def prune(self, limit: int | None) -> int:
        """Remove the files used least recently until derive's take at most ``limit`` bytes
        (None: no limit).  Returns the bytes removed; a file another process removed first,
        or that cannot be removed, is passed over."""
        if limit is None:
            return 0
        found = sorted(self.files(), key=lambda f: (f[0], str(f[2])))
        total, removed = sum(size for _, size, _ in found), 0
        for _, size, path in found:
            if total - removed <= limit:
                break
            try:
                path.unlink()
            except FileNotFoundError:
                pass       # another process pruning removed it first: it is gone all the same
            except OSError:
                continue
            removed += size
        return removed

    # -- results ---------------------------------------------------------------------------
    @staticmethod
    def key(claim: Claim, settings) -> str | None:
        """The result key, or None for a claim that is not cached."""
        try:
            return result_key(claim, settings)
        except Exception:  # noqa: BLE001 -- Uncacheable, or a printer that cannot cope
            return None

    def get(self, claim: Claim, settings, key: str | None = None) -> Result | None:
        """The stored result of ``check(claim, settings)``, or None."""
        key = key or self.key(claim, settings)
        payload = self._read("result", key) if key else None
        result = None
        if payload is not None:
            try:
                result = loads_result(payload, claim)
            except Exception:  # noqa: BLE001 -- an entry that does not load is not trusted
                result = None
        if result is None:
            self.misses += 1
            return None
        return self._serve(result, payload)

    def _serve(self, found, payload: bytes | None = None):
        """``found`` (a result, a ``Stored`` or a ``Summary``) as one the cache answered."""
        self.hits += 1
        self._served.add(id(found))
        self._remember(found, payload)
        return found

    def _remember(self, found, payload: bytes | None) -> None:
        """Keep ``found`` (so that its id stays its own), and the digest of its bytes."""
        if payload is not None:
            self._digests[id(found)] = hashlib.sha256(payload).hexdigest()
        self._keep.append(found)

    def _summary(self, key: str, claim_id: str) -> Summary | None:
        """The summary stored under ``key``, if it loads as the claim ``claim_id``'s."""
        payload = self._read("summary", key)
        try:
            return Summary.loads(payload, claim_id) if payload is not None else None
        except Exception:  # noqa: BLE001 -- corrupt or foreign: not trusted
            return None

    def put(self, claim: Claim, settings, result: Result, payload: bytes | None = None,
            key: str | None = None) -> bool:
        """Store ``result``; ``payload``: it already pickled by ``dumps_result``.  A transient
        result, an uncacheable claim or a result that cannot be pickled stores nothing."""
        key = key or self.key(claim, settings)
        if key is None or transient(result):
            return False
        if payload is None:
            try:
                payload = dumps_result(result)
            except Exception:  # noqa: BLE001 -- a result that cannot be pickled is not stored
                return False
        self._write("result", key, payload)
        self._write("summary", key, Summary.of(result).dumps())
        self._remember(result, payload)
        return True

    def get_summary(self, claim_id: str, key: str | None) -> Summary | None:
        """The summary of the result stored under ``key`` (``Cache.key``) for the claim
        ``claim_id``, or None: where it or the result entry beside it is missing, or it does
        not load as this claim's."""
        result = self._path("result", key) if key is not None else None
        if result is None or not result.is_file():
            return None
        _touch(result)   # used with its summary: they age together
        found = self._summary(key, claim_id)
        return self._serve(found) if found is not None else None

    def peek(self, claim: Claim, settings, key: str | None = None) -> "Stored | None":
        """The stored result of ``check(claim, settings)`` as a ``Stored``, not unpickled: its
        summary and the digest of its bytes, which is all a report needs when its documents
        are cached too.  None where the result or its summary is missing or not trusted."""
        key = key or self.key(claim, settings)
        payload = self._read("result", key) if key else None
        found = self._summary(key, claim.id) if payload is not None else None
        if found is None:
            return None
        return self._serve(Stored(self, claim, settings, key, payload, found), payload)

    def served(self, result: Result) -> bool:
        return id(result) in self._served

    # -- a topic's claims, by their keys ------------------------------------------------------
    def get_index(self, topic: str, settings) -> list[IndexEntry] | None:
        """The stored index of the built-in ``topic``'s claims checked with ``settings``, or
        None (missing, corrupt, or not an index)."""
        payload = self._read("index", index_key(topic, settings))
        try:
            rows = json.loads(payload) if payload is not None else None
            found = [IndexEntry(*row) for row in rows] if rows is not None else None
        except Exception:  # noqa: BLE001 -- not trusted
            return None
        ok = found is not None and all(
            isinstance(e.id, str) and (e.expected is None or isinstance(e.expected, str))
            and (e.key is None or isinstance(e.key, str)) for e in found)
        return found if ok else None

    def put_index(self, topic: str, settings, claims) -> list[IndexEntry]:
        """Key the topic's claims (``Cache.key``), store the index and return it."""
        found = [IndexEntry(c.id, c.expected, self.key(c, settings)) for c in claims]
        self._write("index", index_key(topic, settings),
                    json.dumps([list(dataclasses.astuple(e)) for e in found]).encode())
        return found

    # -- rendered documents ----------------------------------------------------------------
    def documents_key(self, story, results, formats, settings, timings) -> str | None:
        """The key of ``results``' documents, or None when one of them has no stored bytes
        (checked without the cache, or not stored) or the story cannot be keyed."""
        digests = [self._digests.get(id(r)) for r in results]
        if None in digests:
            return None
        try:
            return documents_key(story, formats, settings, timings, digests)
        except Exception:  # noqa: BLE001 -- Uncacheable, or a printer that cannot cope
            return None

    def get_documents(self, key: str) -> dict[str, bytes] | None:
        return self.get_files("documents", key)

    def put_documents(self, key: str, documents: dict[str, bytes]) -> None:
        self.put_files("documents", key, documents)

    # -- figures ---------------------------------------------------------------------------
    def get_files(self, kind: str, key: str) -> dict[str, bytes] | None:
        """{name: bytes} stored under ``key`` (rendered documents, figures), or None."""
        payload = self._read(kind, key)
        if payload is None:
            return None
        try:
            found = _Envelope(io.BytesIO(payload)).load()
        except Exception:  # noqa: BLE001
            return None
        ok = isinstance(found, dict) and all(isinstance(k, str) and isinstance(v, bytes)
                                             for k, v in found.items())
        return found if ok else None

    def put_files(self, kind: str, key: str, files: dict[str, bytes]) -> None:
        self._write(kind, key, pickle.dumps(dict(files), protocol=pickle.HIGHEST_PROTOCOL))

    # -- PDFs ------------------------------------------------------------------------------
    def get_pdf(self, key: str) -> bytes | None:
        data = self._read("pdf", key)
        return data if data is not None and data.startswith(b"%PDF-") else None

    def put_pdf(self, key: str, data: bytes) -> None:
        self._write("pdf", key, data)


__all__ = ["Cache", "Stored", "Summary", "Uncacheable", "cache_dir", "claim_material",
           "dumps_result", "library_versions", "loaded", "loads_result", "pdf_key", "result_key",
           "settings_material", "size_limit", "source_hash"]
