"""Collect the claims of a user's Python file, the way pytest collects tests.

Only the file the user named is run.  Every ``Claim`` bound to a top-level name, and every
``Claim`` inside a top-level list or tuple, is collected, in the order the file defines them.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from .core import Claim, DeriveError


class UsageError(DeriveError):
    """Wrong input to the command line (a missing file, a file that does not run, ...)."""


def load_claims(path: Path) -> list[Claim]:
    if not path.exists():
        raise UsageError(f"{path}: no such file")
    if path.is_dir():
        raise UsageError(f"{path}: is a directory (expected FILE.py)")
    if path.suffix != ".py":
        raise UsageError(f"{path}: not a Python file (expected FILE.py)")
    try:
        source = path.read_text(encoding="utf-8")
        code = compile(source, str(path), "exec")
    except SyntaxError as err:
        raise UsageError(f"{path}:{err.lineno}: syntax error: {err.msg}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"{path}: cannot read it ({err})") from None
    name = f"derive_user_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_loader(name, loader=None, origin=str(path))
    module = importlib.util.module_from_spec(spec)
    module.__file__ = str(path)
    sys.path.insert(0, str(path.parent.resolve()))  # the file may import its neighbours
    sys.modules[name] = module
    try:
        exec(code, module.__dict__)
    except Exception as err:  # the user's code failed: report it in one line
        raise UsageError(f"{path}: {type(err).__name__} while running it: {err}") from None
    finally:
        sys.path.pop(0)
        sys.modules.pop(name, None)
    found: list[Claim] = []
    for value in list(vars(module).values()):
        items = value if isinstance(value, (list, tuple)) else (value,)
        for item in items:
            if isinstance(item, Claim) and all(item is not c for c in found):
                found.append(item)
    if not found:
        raise UsageError(f"{path}: no claims found (bind Claim objects to top-level names)")
    return found


def load_all(paths) -> list[tuple[Path, list[Claim]]]:
    loaded = [(Path(p), load_claims(Path(p))) for p in paths]
    seen: dict[str, Path] = {}
    for path, claims in loaded:
        for c in claims:
            if c.id in seen:
                raise UsageError(f"{path}: claim id {c.id!r} is already used in {seen[c.id]}")
            seen[c.id] = path
    return loaded
