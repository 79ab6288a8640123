"""arviz / xarray exports: equally weighted draws, SMC diagnostics, netCDF round trip."""
from typing import NamedTuple

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

import smcflow


class State(NamedTuple):
    position: jax.Array
    velocity: jax.Array


class Mover:
    n_steps = 4

    def init(self, key, n):
        k1, k2 = jax.random.split(key)
        return State(jax.random.normal(k1, (n, 2)), jax.random.normal(k2, (n,))), jnp.zeros(n)

    def step(self, key, t, s):
        pos = s.position + s.velocity[:, None] + 0.1 * jax.random.normal(key, s.position.shape)
        return State(pos, s.velocity), -0.5 * jnp.sum(pos**2, axis=1)


def test_inference_data_groups_and_dims():
    res = smcflow.run(Mover(), jax.random.key(0), 64, n_runs=3)
    idata = res.to_inference_data(jax.random.key(1))
    assert set(idata.groups()) == {"posterior", "sample_stats"}
    post = idata.posterior
    assert post["position"].dims[:2] == ("chain", "draw") and post["position"].shape == (3, 64, 2)
    assert post["velocity"].shape == (3, 64)
    stats = idata.sample_stats
    assert stats["log_weight"].dims == ("chain", "draw")
    assert stats["ess"].dims == ("chain", "step") and stats.sizes["step"] == 5
    assert stats.attrs["smcflow_version"] == smcflow.__version__ and "smcflow-models" in stats.attrs["plugins"]
    np.testing.assert_allclose(stats["log_evidence"].values, np.asarray(res.log_evidence))
    np.testing.assert_array_equal(stats["resampled"].values, np.asarray(res.resampled))
    # every draw is a copy of a particle of positive weight
    for c in range(3):
        src = np.asarray(res.particles.velocity[c])
        assert np.isin(post["velocity"].values[c], src).all()


@pytest.mark.slow
def test_resampled_draws_follow_the_weights():
    """Posterior draws are equally weighted: their mean matches the weighted particle mean."""
    res = smcflow.run(Mover(), jax.random.key(2), 4000)
    idata = res.to_inference_data(jax.random.key(3))
    weighted = float(jnp.sum(jnp.exp(res.log_weights) * res.particles.velocity))
    draws = idata.posterior["velocity"].values.ravel()
    se = draws.std() / np.sqrt(float(res.ess[-1]))
    assert abs(draws.mean() - weighted) < 4.5 * se


def test_netcdf_round_trip(tmp_path):
    res = smcflow.run(Mover(), jax.random.key(0), 32, n_runs=2)
    idata = res.to_inference_data()
    path = tmp_path / "smc.nc"
    idata.to_netcdf(str(path))
    back = az.from_netcdf(str(path))
    for group in ("posterior", "sample_stats"):
        xr.testing.assert_allclose(getattr(back, group), getattr(idata, group))
    assert back.sample_stats["resampled"].dtype == bool


def test_single_run_has_one_chain_and_datatree():
    res = smcflow.run(Mover(), jax.random.key(0), 16)
    idata = res.to_inference_data()
    assert idata.posterior.sizes["chain"] == 1 and idata.posterior.sizes["draw"] == 16
    tree = res.to_datatree()
    assert isinstance(tree, xr.DataTree)
    assert set(tree.children) == {"posterior", "sample_stats"}
    np.testing.assert_array_equal(tree["posterior"]["velocity"].values, idata.posterior["velocity"].values)


def test_bare_array_particles_are_named_x():
    model = smcflow.plugins.get("model", "linear_gaussian")
    _, ys = model.simulate(jax.random.key(0), 5)
    idata = smcflow.run(smcflow.bootstrap_filter(model.ssm, ys), jax.random.key(1), 20).to_inference_data()
    assert list(idata.posterior.data_vars) == ["x"]
    summary = az.summary(idata, kind="stats")
    assert "x" in summary.index


def _scale_export():
    from smcflow_diffusion import mixture_diffusion
    from smcflow_rewards import linear

    return smcflow.scale(mixture_diffusion(n_steps=10), linear([1.0]), jax.random.key(5), n_particles=32,
                         method="fk", beta=0.5, n_runs=2).to_inference_data()


def test_scale_export_round_trips_losslessly(tmp_path):
    scaled = _scale_export()
    assert scaled.posterior["x"].dims == ("chain", "draw", "coordinate")
    assert set(az.summary(scaled, var_names=["x", "reward"]).columns) >= {"mean", "sd", "r_hat"}
    path = tmp_path / "scale.nc"
    scaled.to_netcdf(str(path))
    back = az.from_netcdf(str(path))
    for group in ("posterior", "sample_stats"):
        xr.testing.assert_identical(getattr(back, group), getattr(scaled, group))
    assert back.posterior.attrs["method"] == "fk" and back.posterior.attrs["beta"] == 0.5


@pytest.mark.slow
def test_arviz_plots_run_on_filter_and_scale_exports():
    """az.plot_pair / plot_posterior / plot_forest / plot_ess on a filter export and a scale export."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    filt = smcflow.run(Mover(), jax.random.key(4), 64, n_runs=2).to_inference_data()
    for idata, names in ((filt, ["position", "velocity"]), (_scale_export(), ["x", "reward"])):
        az.plot_pair(idata, var_names=names)
        az.plot_posterior(idata, var_names=names)
        az.plot_forest(idata, var_names=names)
        az.plot_ess(idata, var_names=names)
        plt.close("all")


@pytest.mark.slow
def test_filter_export_has_pointwise_log_likelihood_for_loo():
    """With model= and a kept genealogy, log_likelihood[c, d, t] = log p(y_t | x_t) on draw d's path."""
    import warnings

    model = smcflow.plugins.get("model", "linear_gaussian", rho=0.9, sigma_x=1.0, sigma_y=0.5)
    _, ys = model.simulate(jax.random.key(0), 8)
    filt = smcflow.bootstrap_filter(model.ssm, ys)
    res = smcflow.run(filt, jax.random.key(1), 64, n_runs=2, keep_history=True, keep_ancestors=True)
    idata = res.to_inference_data(model=filt)
    ll = idata.log_likelihood["y"]
    assert ll.dims == ("chain", "draw", "step") and ll.shape == (2, 64, 8)
    np.testing.assert_allclose(idata.observed_data["y"].values, np.asarray(ys))
    # the draw's final state is its path's last point: check the last time directly
    x_last = idata.posterior["x"].values[1]
    expected = -0.5 * ((np.asarray(ys)[-1] - x_last) / 0.5) ** 2 - np.log(0.5 * np.sqrt(2 * np.pi))
    np.testing.assert_allclose(ll.values[1, :, -1], expected, rtol=1e-5, atol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # arviz's k-hat warnings: paths coalesce
        assert np.isfinite(az.loo(idata).elpd_loo) and np.isfinite(az.waic(idata).elpd_waic)
    assert "log_likelihood" not in res.to_inference_data().groups()  # needs model=
