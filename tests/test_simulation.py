"""Simulated training: the runs lie on the proved closed forms, and a wrong one is caught."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from derive import figures, simulation
from derive.claims import all_claims
from derive.simulation import Check, relative, simulate
from derive.verify import Settings, corroborating_layers

CLAIMS = {c.id: c for c in all_claims()}
SIMULATED = ("centering.drift", "train.weight-norm-growth", "train.naive-scale-step")


@pytest.fixture(scope="module")
def runs():
    return simulation.report_runs()


@pytest.mark.parametrize("claim_id", SIMULATED)
def test_each_simulated_claim_gets_holding_evidence_within_tolerance(claim_id):
    ev = simulation.layer(CLAIMS[claim_id])
    d = ev.details
    assert (ev.kind, ev.holds, d["failures"], d["max_error"] <= d["tolerance"]) == \
        ("simulation", True, 0, True)


def test_evidence_details_name_checks_failures_error_and_tolerance():
    d = simulation.layer(CLAIMS["centering.drift"]).details
    assert {"checks", "failures", "max_error", "tolerance", "runs"} <= set(d)


def test_corroborating_layers_add_simulation_only_where_it_applies():
    kinds = {cid: [e.kind for e in corroborating_layers(c, Settings(frameworks=()))]
             for cid, c in CLAIMS.items()}
    assert {cid for cid, k in kinds.items() if "simulation" in k} == set(SIMULATED)


def test_settings_can_turn_the_simulation_off():
    found = corroborating_layers(CLAIMS["centering.drift"],
                                 Settings(frameworks=(), simulation=False))
    assert found == []


def test_naive_bias_lies_on_the_closed_form_and_moves(runs):
    held = runs["centering-held"]
    err = relative(held.params[:, 0], simulation.drift_closed_form(held)).max()
    assert err <= simulation.TOLERANCE and abs(held.params[-1, 0] - held.params[0, 0]) > 100


def test_bias_through_the_mean_does_not_move(runs):
    through = runs["centering-through"]
    assert np.abs(through.params[:, 0] - through.params[0, 0]).max() < 1e-12


def test_naive_bias_leaves_xhat_and_loss_unchanged(runs):
    held = runs["centering-held"]
    assert held.xhat_change.max() < 1e-12 and np.ptp(held.loss) < 1e-11 * held.loss[0]


def test_a_wrong_drift_rate_is_detected(runs):
    held = runs["centering-held"]
    t = np.arange(held.steps + 1)
    wrong = held.params[0, 0] - t * held.lr * simulation.drift_rate(held.batch) * 1.001
    assert Check.of("b", held.params[:, 0], wrong).failures > 0


def test_a_perturbed_norm_recurrence_is_detected(runs):
    run = runs["scale-through"]
    growth = np.concatenate(([0.0], np.cumsum(run.grad_norm[:-1] ** 2)))
    wrong = run.norm[0] ** 2 + 2 * run.lr ** 2 * growth   # a factor 2 too much
    assert Check.of("norm", run.norm ** 2, wrong).failures > 0


def test_a_run_with_a_perturbed_step_fails_its_checks(runs):
    run = runs["scale-held-grow"]
    bad = simulation.Run(**{**vars(run), "params": run.params * (1 + 1e-6)})
    assert sum(c.failures for c in simulation.run_checks(bad)) > 0


def test_held_scale_with_negative_c_grows_at_least_like_sqrt_t(runs):
    grow = runs["scale-held-grow"]
    c = simulation.scale_constant(grow.batch)
    t = np.arange(grow.steps + 1)
    assert c < 0 and np.all(grow.params[:, 0] ** 2 >= 1 + 2 * grow.lr * abs(c) * t - 1e-9)


def test_held_scale_with_positive_c_crosses_zero_at_the_predicted_step(runs):
    cross = runs["scale-held-cross"]
    step = simulation.crossing(cross)
    w = simulation.naive_scale_closed_form(cross)
    predicted = int(np.flatnonzero(w * w < cross.lr * simulation.scale_constant(cross.batch))[0])
    assert step == predicted and cross.params[step + 1, 0] < 0


def test_at_the_crossing_xhat_flips_and_the_loss_jumps(runs):
    cross = runs["scale-held-cross"]
    step = simulation.crossing(cross)
    flipped = abs(cross.alignment[step + 1] + 1) < 1e-12
    assert flipped and abs(cross.loss[step + 1] - cross.loss[step]) > 1


def test_through_the_statistics_a_scalar_weight_does_not_move(runs):
    through = runs["scale-through-scalar"]
    assert np.abs(through.params - 1.0).max() < 1e-12


def test_windowed_descent_equals_plain_step_by_step_descent():
    run = simulate("scale-held", 300, 0.02, 8, 3, gain=-3.0)
    model = simulation.Model("scale-held", run.batch)
    p = run.params[:1].copy()
    path = [p[0, 0]]
    for _ in range(300):
        p = p - 0.02 * model.evaluate(p, full=False)[0]
        path.append(p[0, 0])
    assert relative(run.params[:, 0], path).max() < 1e-12


def test_runs_are_deterministic():
    a, b = (simulate("scale-through", 200, 0.05, 8, 1) for _ in range(2))
    assert np.array_equal(a.params, b.params) and np.array_equal(a.loss, b.loss)


@settings(deadline=None)   # a run takes ~15 ms: the profile decides how many
@given(lr=st.floats(1e-4, 0.5, allow_nan=False, allow_infinity=False),
       size=st.integers(2, 24), seed=st.integers(0, 1000))
def test_naive_bias_is_on_the_closed_form_for_any_rate_batch_and_seed(lr, size, seed):
    run = simulate("centering-held", 200, lr, size, seed)
    assert sum(c.failures for c in simulation.run_checks(run)) == 0


@settings(deadline=None)   # a run takes ~15 ms: the profile decides how many
@given(lr=st.floats(1e-4, 0.2, allow_nan=False, allow_infinity=False),
       size=st.integers(3, 24), seed=st.integers(0, 1000))
def test_norm_recurrence_holds_for_any_rate_batch_and_seed(lr, size, seed):
    run = simulate("scale-through", 200, lr, size, seed)
    assert sum(c.failures for c in simulation.run_checks(run)) == 0


@pytest.mark.parametrize("bad", [{"steps": 0}, {"steps": -1}, {"lr": 0.0},
                                 {"lr": float("nan")}, {"size": 1}])
def test_bad_values_are_refused(bad):
    args = {"steps": 10, "lr": 0.01, "size": 8, **bad}
    with pytest.raises(ValueError):
        simulate("centering-held", args["steps"], args["lr"], args["size"])


@pytest.mark.parametrize("name", figures.REPORT_FIGURES)
def test_report_figures_have_the_same_bytes_on_every_build(name):
    one, two = (figures.render(lambda: figures.report_figure(name), fmt)
                for fmt in ("pdf", "pdf"))
    assert one == two and one.startswith(b"%PDF") and b"CreationDate" not in one


def test_png_figures_have_the_same_bytes_on_every_build():
    one, two = (figures.render(lambda: figures.report_figure("fig-drift"), "png")
                for _ in range(2))
    assert one == two and one.startswith(b"\x89PNG")


def test_each_figure_is_placed_once_after_its_claim_or_in_the_opening_answers():
    from derive.claims import batchnorm, centering
    placed = {}
    for topic in (centering, batchnorm):
        story = topic.story()
        for where, sections in (("opening", story.opening), ("claims", story.sections)):
            for section in sections:
                for name, _, claim in section.figures:
                    assert name not in placed, f"{name} placed twice"
                    # a figure among the claims follows its claim; one in the opening answers
                    # belongs to no claim (the answers cite the claim instead)
                    assert (claim in section.claims) if where == "claims" else claim is None
                    placed[name] = where
    assert placed == {"fig-drift": "opening", "fig-weight-norm": "claims",
                      "fig-naive-scale": "claims"}
