"""smcflow.diagnose on constructed cases with known answers, each verdict with a case that must not
raise it, and the same diagnosis from a saved InferenceData."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from mc import assert_mean_close

import smcflow
from smcflow.diagnostics import Concern, distinct_ancestors, pareto_khat
from smcflow.weights import weight_statistics


def _result(log_weights, *, particles=None, ess=None, log_evidence=None, ancestors=None, failure=None):
    """An SMCResult with ``R`` runs built from the given arrays (the rest filled in consistently)."""
    log_w = np.asarray(log_weights, dtype=np.float32)
    r, n = log_w.shape
    log_w = log_w - np.log(np.sum(np.exp(log_w - log_w.max(1, keepdims=True)), 1, keepdims=True)) - log_w.max(1, keepdims=True)
    ess = np.full((r, 4), float(n), np.float32) if ess is None else np.asarray(ess, np.float32)
    n_times = ess.shape[1]
    particles = np.random.default_rng(0).standard_normal((r, n, 1)) if particles is None else particles
    return smcflow.SMCResult(
        particles=jnp.asarray(particles, jnp.float32), log_weights=jnp.asarray(log_w),
        log_evidence=jnp.zeros(r) if log_evidence is None else jnp.asarray(log_evidence, jnp.float32),
        ess=jnp.asarray(ess), resampled=jnp.zeros((r, n_times), bool),
        log_evidence_increments=jnp.zeros((r, n_times)),
        failure=jnp.zeros(r, jnp.int32) if failure is None else jnp.asarray(failure, jnp.int32),
        failure_time=jnp.full(r, -1, jnp.int32) if failure is None else jnp.where(jnp.asarray(failure) > 0, 2, -1),
        ancestors=None if ancestors is None else jnp.asarray(ancestors, jnp.int32))


def _standard_normal(key, n):
    return jax.random.normal(key, (n, 1))


def _unit_noise(t):
    return 1.0


def _pull_to_zero(x, t):
    return -x


def _unweighted_paths(n_steps):
    """An Ornstein-Uhlenbeck path model without potentials: every weight stays equal."""
    return smcflow.PathModel(times=jnp.linspace(0.0, 1.0, n_steps + 1), sample_initial=_standard_normal,
                             drift=_pull_to_zero, noise=_unit_noise)


def _concerns(d):
    return {f.concern for f in d.findings}


def test_equal_weights_give_n_and_log_n():
    stats = weight_statistics(None, jnp.zeros(64))
    assert float(stats["max_weight"]) == pytest.approx(1 / 64)
    assert float(stats["entropy"]) == pytest.approx(np.log(64), rel=1e-6)
    one = weight_statistics(None, jnp.array([0.0] + [-jnp.inf] * 63))
    assert float(one["max_weight"]) == 1.0 and float(one["entropy"]) == 0.0
    d = smcflow.diagnose(_result(np.zeros((4, 64))))
    np.testing.assert_allclose(d.final_entropy, np.log(64), rtol=1e-6)
    np.testing.assert_allclose(d.final_max_weight, 1 / 64, rtol=1e-6)
    assert np.all(np.isnan(d.pareto_khat))  # no tail to fit
    assert d.ok, d.summary()


def test_weight_statistics_per_step_from_a_run():
    """Through run(summary=weight_statistics): ESS = exp(entropy) = N where every potential is zero."""
    model = _unweighted_paths(5)
    res = smcflow.run(model, jax.random.key(0), 32, n_runs=2, summary=weight_statistics, keep_ancestors=True)
    d = smcflow.diagnose(res)
    np.testing.assert_allclose(d.entropy, np.log(32), rtol=1e-5)
    np.testing.assert_allclose(d.max_weight, 1 / 32, rtol=1e-5)
    np.testing.assert_allclose(d.ess, 32, rtol=1e-5)
    np.testing.assert_array_equal(d.distinct_ancestors, 32)  # never resampled: every lineage distinct
    np.testing.assert_array_equal(d.coalescence, -1)


def test_coalescence_detected_at_the_right_step():
    """Every time-3 particle is a child of time-2 particle 1, so the final particles have one common
    ancestor at times 0..2 and four distinct ones from time 3 on."""
    identity = np.arange(4)
    anc = np.stack([identity, identity, identity, np.ones(4, int), identity, identity[::-1]])
    counts = distinct_ancestors(anc)
    np.testing.assert_array_equal(counts, [[1, 1, 1, 4, 4, 4]])
    d = smcflow.diagnose(_result(np.zeros((1, 4)), ess=np.full((1, 6), 4.0), ancestors=anc[None]))
    assert d.coalescence.tolist() == [2]
    (note,) = [f for f in d.findings if f.concern is Concern.PATHS_COALESCED]
    assert note.step == 2 and not note.is_warning and d.ok
    # the control: two surviving lineages never coalesce
    anc2 = anc.copy()
    anc2[3] = [1, 1, 0, 0]
    assert distinct_ancestors(anc2).tolist() == [[2, 2, 2, 4, 4, 4]]
    assert smcflow.diagnose(_result(np.zeros((1, 4)), ess=np.full((1, 6), 4.0), ancestors=anc2[None])).coalescence.tolist() == [-1]


@pytest.mark.parametrize("alpha", [1.0, 2.0])
def test_pareto_khat_recovers_a_known_tail(alpha):
    """Weights ``U^(-1/alpha)`` have a Pareto(alpha) tail, shape ``k = 1/alpha``: the mean of k̂ over 24
    independent weight sets matches it; a lognormal control (k = 0 asymptotically) fails the same check."""
    u = np.random.default_rng(1).uniform(size=(24, 20_000))
    assert_mean_close(pareto_khat(-np.log(u) / alpha), 1 / alpha, f"k̂ of a Pareto({alpha}) tail")
    light = pareto_khat(0.3 * np.random.default_rng(2).standard_normal((24, 20_000)))
    with pytest.raises(AssertionError, match="k̂"):
        assert_mean_close(light, 1 / alpha, "k̂ of a lognormal tail")


def test_heavy_tailed_final_weights_are_flagged():
    heavy = -np.log(np.random.default_rng(3).uniform(size=(2, 2_000))) / 0.8
    d = smcflow.diagnose(_result(heavy))
    assert Concern.HEAVY_TAILED_WEIGHTS in _concerns(d) and not d.ok
    assert "k̂" in d.summary()
    light = 0.2 * np.random.default_rng(3).standard_normal((2, 2_000))
    assert Concern.HEAVY_TAILED_WEIGHTS not in _concerns(smcflow.diagnose(_result(light)))


def test_degenerate_weights_reported_at_the_first_bad_step():
    ess = np.full((3, 6), 100.0)
    ess[1, 4] = 2.0
    ess[2, 5] = 1.0
    d = smcflow.diagnose(_result(np.zeros((3, 100)), ess=ess))
    (f,) = [f for f in d.findings if f.concern is Concern.DEGENERATE_WEIGHTS]
    assert f.step == 4 and "step 4" in f.message and "1 of 3" in f.message
    ess[:] = 6.0  # 6% of N: above the 5% threshold
    assert Concern.DEGENERATE_WEIGHTS not in _concerns(smcflow.diagnose(_result(np.zeros((3, 100)), ess=ess)))


def test_evidence_spread_and_runs_that_disagree():
    rng = np.random.default_rng(4)
    spread = smcflow.diagnose(_result(np.zeros((8, 64)), log_evidence=3.0 * rng.standard_normal(8)))
    assert Concern.EVIDENCE_SPREAD in _concerns(spread)
    tight = smcflow.diagnose(_result(np.zeros((8, 64)), log_evidence=0.1 * rng.standard_normal(8)))
    assert Concern.EVIDENCE_SPREAD not in _concerns(tight) and tight.ok
    # runs centred at different places disagree; the same runs sharing one centre do not
    shifted = rng.standard_normal((8, 64, 1)) + np.arange(8)[:, None, None]
    assert Concern.RUNS_DISAGREE in _concerns(smcflow.diagnose(_result(np.zeros((8, 64)), particles=shifted)))
    same = smcflow.diagnose(_result(np.zeros((8, 4096)), particles=rng.standard_normal((8, 4096, 1))))
    assert same.rhat["x"] < 1.005 and same.ok, same.summary()


def test_numerical_failure_is_a_finding():
    d = smcflow.diagnose(_result(np.zeros((2, 8)), failure=[0, int(smcflow.Failure.POTENTIAL_NAN)]))
    (f,) = [f for f in d.findings if f.concern is Concern.NUMERICAL_FAILURE]
    assert "NaN" in f.message and f.step == 2


def test_inference_data_gives_the_same_diagnosis():
    rng = np.random.default_rng(5)
    res = _result(rng.standard_normal((4, 128)), log_evidence=rng.standard_normal(4))
    direct, saved = smcflow.diagnose(res), smcflow.diagnose(res.to_inference_data())
    for name in ("ess", "log_evidence", "pareto_khat", "final_entropy", "final_max_weight"):
        np.testing.assert_allclose(getattr(saved, name), getattr(direct, name), rtol=1e-6, err_msg=name)
    assert saved.rhat.keys() == direct.rhat.keys()
    assert _concerns(saved) == _concerns(direct)


def test_scale_results_and_reprs():
    from smcflow_diffusion import mixture_diffusion
    from smcflow_rewards import linear

    res = smcflow.scale(mixture_diffusion(n_steps=20), linear([1.0]), jax.random.key(0), n_particles=64,
                        method="fk", beta=1.0, n_runs=4)
    d = smcflow.diagnose(res)
    assert d.source == "scale(fk)" and set(d.rhat) == {"x", "reward"}
    assert repr(res).startswith("ScaleResult[fk](4 runs x 64 particles, 20 steps; log Ẑ")
    assert repr(res.smc).startswith("SMCResult(4 runs x 64 particles") and len(repr(res.smc)) < 200
    assert res.summary() == d.summary()
    none = smcflow.diagnose(dataclasses.replace(res, has_evidence=False))  # as for svdd or guidance
    assert np.all(np.isnan(none.log_evidence)) and "log Ẑ: none" in none.summary()


def test_repr_inside_jit_and_bad_input():
    model = _unweighted_paths(3)
    seen = []

    @jax.jit
    def f(key):
        res = smcflow.run(model, key, 8)
        seen.append(repr(res))
        return res.log_evidence

    f(jax.random.key(0))
    assert seen == ["SMCResult(traced)"]
    with pytest.raises(TypeError, match="diagnose\\(\\) takes an SMCResult"):
        smcflow.diagnose(np.zeros(3))


def test_report_and_cli_from_a_netcdf_export(tmp_path):
    """Plots and a self-contained page from a result, and the same from its netCDF via the CLI."""
    from smcflow.cli import main

    anc = np.stack([np.arange(4)] * 2 + [np.ones(4, int)] + [np.arange(4)] * 3)
    res = _result(np.random.default_rng(6).standard_normal((3, 4)), ess=np.full((3, 6), 4.0),
                  log_evidence=[0.0, 0.1, -0.1], ancestors=np.stack([anc] * 3))
    page = smcflow.diagnose(res).report(tmp_path / "direct")
    names = {p.name for p in page.parent.iterdir()}
    assert {"index.html", "ess.png", "weights.png", "genealogy.png", "log_evidence.png"} <= names
    text = page.read_text()
    assert text.count("data:image/png;base64,") == 4 and "share one ancestor at step 1" in text
    assert "smcflow diagnosis of SMCResult" in text
    path = tmp_path / "run.nc"
    good = _result(np.zeros((4, 1024)), particles=np.random.default_rng(7).standard_normal((4, 1024, 1)))
    good.to_inference_data().to_netcdf(path)
    assert main(["diagnose", str(path), "--out", str(tmp_path / "cli")]) == 0
    assert (tmp_path / "cli" / "index.html").exists()
    heavy = _result(-np.log(np.random.default_rng(3).uniform(size=(2, 2_000))) / 0.8)
    heavy.to_inference_data().to_netcdf(tmp_path / "heavy.nc")
    assert main(["diagnose", str(tmp_path / "heavy.nc")]) == 1
    (tmp_path / "junk.nc").write_text("not netcdf")
    assert main(["diagnose", str(tmp_path / "junk.nc")]) == 2


def test_image_samples_get_a_grid(tmp_path):
    """Samples whose event is 64 ``pixel`` s (the digits sampler) or a 2-D array are drawn as images."""
    from smcflow.diagnostics import _as_images

    pixels = np.random.default_rng(8).uniform(size=(2, 20, 64))
    assert _as_images(pixels, ("pixel",)).shape == (16, 8, 8)
    assert _as_images(pixels[..., :60], ("pixel",)) is None and _as_images(pixels, ("coordinate",)) is None
    assert _as_images(pixels.reshape(2, 20, 8, 8), ("row", "column")).shape == (16, 8, 8)
    d = dataclasses.replace(smcflow.diagnose(_result(np.zeros((2, 20)))), images=_as_images(pixels, ("pixel",)))
    assert (d.report(tmp_path).parent / "samples.png").exists()


def test_inference_data_without_resampling_flags_or_failures():
    """Exports of other result types (the numpyro bridge's: per-stage ESS padded with NaN, no
    ``resampled`` or ``failure``) are diagnosed too."""
    idata = _result(np.random.default_rng(9).standard_normal((2, 64)), ess=np.full((2, 4), 50.0)).to_inference_data()
    stats = idata.sample_stats.drop_vars(["resampled", "failure", "failure_time"])
    stats["ess"] = stats["ess"].where(stats["step"] < 3)  # the last step is padding
    idata.sample_stats = stats
    d = smcflow.diagnose(idata)
    assert d.failure.tolist() == [0, 0] and not d.resampled.any()
    assert "ESS: min 50" in d.summary()
