"""In CI a missing torch, jax or TeX fails the run with the reason instead of skipping tests.

Each case runs pytest in a subprocess on a throwaway directory holding a copy of the project's
conftest and one trivial test; a plugin loaded first makes the named frameworks unimportable,
and a PATH of one empty directory hides the TeX tools.  The cases run side by side.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CONFTEST = Path(__file__).with_name("conftest.py")
BLOCKER = '''
import sys

BLOCKED = {blocked!r}


class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the test)")
        return None


sys.meta_path.insert(0, Blocker())
'''
CASES = {
    # name: (CI, frameworks made unimportable, TeX on PATH)
    "ci-without-torch": ("true", ("torch",), True),
    "ci-without-anything": ("true", ("torch", "jax"), False),
    "local-without-anything": (None, ("torch", "jax"), False),
}


def start(root: Path, ci, blocked, tex) -> subprocess.Popen:
    root.mkdir()
    shutil.copy(CONFTEST, root / "conftest.py")
    (root / "test_trivial.py").write_text("def test_trivial():\n    pass\n")
    (root / "block_imports.py").write_text(BLOCKER.format(blocked=set(blocked)))
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    env["PYTHONPATH"] = str(root)
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"   # the conftest needs none; saves a second
    if ci is not None:
        env["CI"] = ci
    if not tex:
        (root / "bin").mkdir()
        env["PATH"] = str(root / "bin")
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "block_imports",
         "-q", "--rootdir", str(root), str(root)],
        cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{case: (exit code, output)}"""
    base = tmp_path_factory.mktemp("ci-guard")
    procs = {name: start(base / name, *case) for name, case in CASES.items()}
    return {name: (proc.wait(timeout=60), proc.stdout.read()) for name, proc in procs.items()}


def test_ci_without_torch_fails_and_names_torch(runs):
    code, out = runs["ci-without-torch"]
    assert code not in (0, 5) and "torch cannot be imported" in out, out
    assert "passed" not in out, out


def test_ci_without_frameworks_and_tex_fails_and_names_each(runs):
    code, out = runs["ci-without-anything"]
    assert code not in (0, 5), out
    for reason in ("torch cannot be imported", "jax cannot be imported",
                   "latexmk, pdflatex, pdftotext not found"):
        assert reason in out, out


def test_outside_ci_missing_requirements_do_not_stop_the_run(runs):
    code, out = runs["local-without-anything"]
    assert code == 0 and "1 passed" in out, out
