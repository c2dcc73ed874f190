"""Named axes in the calculus, the rules and the printer; second derivatives in the rules.

The evaluating layers' own axis tests are in test_explicit_axes, test_numeric_axes and
test_frameworks_axes; whole claims through ``check`` are at the end of this file.
"""

from __future__ import annotations

import pickle

import pytest
import sympy as sp

from derive import Axis, Batch, Claim, Equation, Grad, held
from derive.axes import AxisError, layout, size_grid, sizes_text
from derive.calculus import BatchSum
from derive.render.latex import tex
from derive.rules import RULES, normal_form

N, C = Axis("N"), Axis("C")
x, b, g = N.samples("x"), N.samples("b"), N.samples("g")
n, c, d, k = N.index("n"), C.index("c"), C.index("d"), N.index("k")
eps = N.param("epsilon", positive=True)


def batch_norm(v):
    mu = N.mean(v, n)
    return (v - mu) / sp.sqrt(N.mean((v - mu) ** 2, n) + eps)


def layer_norm(v):
    mu = C.mean(v, c)
    return (v - mu) / sp.sqrt(C.mean((v - mu) ** 2, c) + eps)


def loss(norm):
    return N.sum(C.sum(g[n, c] * norm(x[n, c] + b[c]), c), n)


# -- indices and layouts -----------------------------------------------------------------------

def test_an_index_belongs_to_its_axis():
    assert N.index("i") != C.index("i")
    assert N.index("i") == Batch("N").index("i")
    assert N.index("i").axis == N.size


def test_an_index_survives_pickling_with_its_axis():
    back = pickle.loads(pickle.dumps(c))
    assert (back, back.axis) == (c, C.size)


def test_layout_reads_each_tensors_axes_from_indices_and_reductions():
    expr = x[n, c] - N.mean(x[n, c], n) + C.sum(g[k, c], c)
    assert layout(expr) == {x: (N.size, C.size), g: (N.size, C.size)}


def test_a_tensor_along_two_axes_at_one_position_is_refused():
    with pytest.raises(AxisError, match="along"):
        layout(x[n, c] + x[c, n])
    with pytest.raises(ValueError, match="indexed along"):
        Claim("bad", "bad", N, (Equation(x[n, c], N.mean(x[c, n], n)),))


def test_a_claim_lists_its_axes_batch_first_and_their_minimums():
    claim = Claim("t", "t", C, (Equation(Grad(loss(batch_norm), b[d]), 0),),
                  min_sizes=((N.size, 2),))
    assert claim.axes == (C.size, N.size)
    assert claim.minimums() == {C.size: 1, N.size: 2}
    with pytest.raises(ValueError, match="not an axis"):
        Claim("t", "t", N, (Equation(x[n, c], 0),), min_sizes=((sp.Symbol("H"), 2),))


def test_size_grid_is_smallest_first_and_bounded():
    grid = size_grid({N.size: 1, C.size: 2}, 4, budget=6)
    assert grid[0] == {N.size: 1, C.size: 2}
    assert all(s[N.size] * s[C.size] <= 6 for s in grid)
    totals = [sum(s.values()) for s in grid]
    assert totals == sorted(totals)
    assert sizes_text(grid[0]) == "N = 1, C = 2"


# -- the rules ---------------------------------------------------------------------------------

def test_a_delta_across_two_axes_picks_no_term():
    # sum over n in 1..N of delta(n, c) h_n is not h_c: c runs over 1..C, maybe beyond N
    expr = N.sum(sp.KroneckerDelta(n, c) * x[n, c], n)
    assert RULES["sifting"].apply(expr) == expr
    same = N.sum(sp.KroneckerDelta(n, k) * x[n, c], n)
    assert RULES["sifting"].apply(same) == x[k, c]


def test_a_delta_with_an_outer_index_of_another_axis_picks_no_term():
    inner = C.sum(N.sum(sp.KroneckerDelta(n, c) * x[n, c], n), c)
    assert RULES["sifting"].apply(inner) == inner


def test_a_per_channel_bias_before_batch_norm_has_zero_gradient_symbolically():
    assert normal_form(Grad(loss(batch_norm), b[d])) == 0


def test_a_per_channel_bias_before_layer_norm_keeps_its_gradient():
    assert normal_form(Grad(loss(layer_norm), b[d])) != 0


def test_a_second_derivative_reduces_by_the_rules():
    B = Batch("N")
    u, i = B.samples("u"), B.index("i")
    beta = B.param("b")
    assert normal_form(Grad(Grad(B.mean((u[i] + beta) ** 2, i), beta), beta)) == 2
    centered = B.center(u[i] + beta, i)
    assert normal_form(Grad(Grad(B.mean(sp.sin(centered) ** 2, i), beta), beta)) == 0
    naive = B.mean(sp.sin(u[i] + beta - held(B.mean(u[i] + beta, i))) ** 2, i)
    assert normal_form(Grad(Grad(naive, beta), beta)) != 0


# -- the printer -------------------------------------------------------------------------------

def test_a_mean_over_one_axis_of_a_tensor_names_its_index():
    assert tex(N.mean(x[n, c], n)) == r"\operatorname{E}_{j}\!\left[x_{j, c}\right]"
    assert tex(C.sum(x[n, c], c)) == r"\sum_{j=1}^{C} x_{n, j}"
    assert isinstance(C.sum(x[n, c], c), BatchSum)
