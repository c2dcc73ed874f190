"""A report built from this commit has the committed bytes, whatever the machine's numerics.

The committed `reports/` are what every machine must reproduce.  Another machine differs in
its CPU's SIMD paths, thread counts, XLA's compilation and Python's hash seed; the build below
runs in a subprocess with each of those changed and must still give the committed .tex, .json
and figures byte for byte.  Round-off may differ; it must not reach the files.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import other_machine_env

ROOT = Path(__file__).resolve().parents[1]
REPORTS = ROOT / "reports"


@pytest.fixture(scope="module")
def rebuilt(elsewhere):
    # every report, built in a subprocess computing like another machine (conftest.Elsewhere)
    return elsewhere.out


def committed_files() -> list[str]:
    names = sorted(p.name for p in REPORTS.iterdir()
                   if p.suffix in (".tex", ".json") and not p.name.endswith(".timings.json")
                   or p.name.startswith("fig-"))
    assert {"centering.tex", "batchnorm.json", "fig-weight-norm.pdf"} <= set(names)
    return names


@pytest.mark.slow
@pytest.mark.parametrize("name", committed_files())
def test_a_build_with_other_numerics_gives_the_committed_bytes(rebuilt, name):
    built, committed = (rebuilt / name).read_bytes(), (REPORTS / name).read_bytes()
    if built != committed:
        a, b = built.decode(errors="replace"), committed.decode(errors="replace")
        at = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        pytest.fail(f"{name} differs from the committed file at character {at}: "
                    f"{a[max(0, at - 60):at + 60]!r} vs {b[max(0, at - 60):at + 60]!r}")


def test_the_other_numerics_really_differ():
    # the environment must change something NumPy computes, else the test above proves little
    env = other_machine_env()
    if "NPY_DISABLE_CPU_FEATURES" not in env:
        pytest.skip("this CPU has no optional SIMD path to disable")
    code = ("import hashlib, numpy as np; x = np.linspace(0.1, 50, 4001); "
            "print(hashlib.sha256((x ** 3.7).tobytes() + np.log(x).tobytes()).hexdigest())")
    here = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=env).stdout
    assert here and there and here != there


# a gradient JAX computes as derive's backend compiles it (its flags and options), hashed
JAX_GRADIENT = (
    "import hashlib, numpy as np\n"
    "from derive.frameworks.backends import JaxBackend\n"
    "xp = JaxBackend(); jax, jnp = xp.jax, xp.jnp\n"
    "loss = lambda x: jnp.sum(jnp.tanh((x - x.mean()) / jnp.sqrt(x.var() + 1e-5)) ** 3)\n"
    "value = xp.jit(jax.grad(loss))(jnp.linspace(0.1, 50, 40001))\n"
    "print(hashlib.sha256(np.asarray(value).tobytes()).hexdigest())\n")


def test_the_other_xla_flags_change_what_jax_computes(tmp_path):
    # XLA's other compilation must change a result's last bits, else the build above would
    # not show that the reports are immune to it
    pytest.importorskip("jax", reason="jax is not installed")
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    runs = {}
    for name, environment in (("here", env), ("there", other_machine_env())):
        environment = {**environment, "DERIVE_CACHE": str(tmp_path / name)}
        runs[name] = subprocess.run([sys.executable, "-c", JAX_GRADIENT], capture_output=True,
                                    text=True, cwd=ROOT, env=environment)
        assert runs[name].returncode == 0, runs[name].stderr[-500:]
    assert runs["here"].stdout != runs["there"].stdout


# -- how errors are recorded -------------------------------------------------------------------

from derive.core import ERROR_FLOOR, error_bound, error_text, shown_pair  # noqa: E402
from derive.render import certificate  # noqa: E402


@pytest.mark.parametrize("err, bound", [(0.0, 1e-11), (3.6e-14, 1e-11), (5.5e-14, 1e-11),
                                        (2.8e-13, 1e-11), (2e-11, 1e-10), (1e-11, 1e-10),
                                        (0.3, 1.0), (5.0, 10.0)])
def test_an_error_is_recorded_as_the_power_of_ten_it_stays_below(err, bound):
    assert error_bound(err) == bound and err < bound


def test_round_off_of_any_size_seen_prints_the_same_on_every_machine():
    # the largest round-off in the reports is 3e-13; noise of any factor up to 30 on it, or on
    # anything smaller, cannot move the printed figure
    seen = [1.1e-16, 1.3e-16, 3.6e-14, 5.5e-14, 5.8e-14, 2.8e-13]
    assert {error_text(e * f) for e in seen for f in (1, 0.5, 2, 30)} == {"< 1e-11"}
    assert max(seen) * 30 < ERROR_FLOOR


def test_a_side_within_round_off_of_zero_is_shown_as_zero():
    assert shown_pair(-0.1023456, 3e-17) == (-0.102, 0.0)
    assert shown_pair(0.5, 0.25) == (0.5, 0.25)


def test_the_certificate_records_bounds_and_the_timings_the_exact_errors():
    details = {"max_error": 3.6e-14, "autograd": {"max_error": 5.5e-14, "instances": 30},
               "failure": {"error": 0.1234567}}
    clean = certificate._clean(details)
    assert clean == {"max_error_below": 1e-11,
                     "autograd": {"max_error_below": 1e-11, "instances": 30},
                     "failure": {"error": 0.123}}
    assert certificate._measured(details) == {"max_error": 3.6e-14,
                                              "autograd": {"max_error": 5.5e-14}}
