"""Particle filters against exact answers: Kalman filter and forward algorithm."""
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from mc import assert_log_evidence_consistent, assert_mean_close, assert_unbiased_evidence

import smcflow

N_RUNS = 200


@pytest.fixture(scope="module")
def lg1():
    model = smcflow.plugins.get("model", "linear_gaussian", rho=0.9, sigma_x=1.0, sigma_y=0.5)
    _, ys = model.simulate(jax.random.key(3), 30)
    return model, ys


def test_bootstrap_1d_matches_kalman(lg1):
    model, ys = lg1
    res = smcflow.run(smcflow.bootstrap_filter(model.ssm, ys), jax.random.key(0), 1024, n_runs=N_RUNS)
    log_z = model.log_likelihood(ys)
    assert res.log_evidence.shape == (N_RUNS,)
    assert_unbiased_evidence(res.log_evidence, log_z, "1-D bootstrap")
    assert_log_evidence_consistent(res.log_evidence, log_z, "1-D bootstrap")
    # per-time increments sum to the total
    np.testing.assert_allclose(res.log_evidence_increments.sum(-1), res.log_evidence, rtol=1e-5)


def test_filtering_moments_match_kalman_at_every_time(lg1):
    model, ys = lg1
    res = smcflow.run(
        smcflow.bootstrap_filter(model.ssm, ys), jax.random.key(1), 2000, n_runs=50, summary=smcflow.weights.moments
    )
    kf = model.kalman(ys)
    assert res.summaries["mean"].shape == (50, 30)
    np.testing.assert_allclose(res.summaries["mean"][:, -1], jnp.sum(jnp.exp(res.log_weights) * res.particles, -1), rtol=1e-4, atol=1e-5)
    # self-normalised estimates carry an O(1/N) bias, far below this run's standard error
    assert_mean_close(res.summaries["mean"], kf.filter_means[:, 0], "filtering means")
    assert_mean_close(res.summaries["var"], kf.filter_covs[:, 0, 0], "filtering variances")


def test_bootstrap_multivariate_matches_kalman():
    F = [[0.8, 0.2], [-0.1, 0.7]]
    model = smcflow.plugins.get(
        "model", "linear_gaussian_mv", F=F, Q=np.eye(2) * 0.5, H=[[1.0, 0.0], [0.5, 1.0]], R=np.eye(2), m0=np.zeros(2), P0=np.eye(2)
    )
    _, ys = model.simulate(jax.random.key(4), 20)
    assert ys.shape == (20, 2)
    res = smcflow.run(smcflow.bootstrap_filter(model.ssm, ys), jax.random.key(2), 512, n_runs=N_RUNS)
    log_z = model.log_likelihood(ys)
    assert_unbiased_evidence(res.log_evidence, log_z, "2-D bootstrap")
    assert_log_evidence_consistent(res.log_evidence, log_z, "2-D bootstrap")


def test_guided_filter_with_optimal_proposal(lg1):
    """Locally optimal proposal p(x_t | x_{t-1}, y_t): exact evidence and lower variance."""
    model, ys = lg1
    rho, q, r = 0.9, 1.0, 0.25
    p0 = 1.0 / (1 - rho**2)
    post_var = 1.0 / (1.0 / q + 1.0 / r)

    def proposal(x_prev, t, y):
        return dist.Normal(post_var * (rho * x_prev / q + y / r), jnp.sqrt(post_var))

    def initial_proposal(y0):
        v0 = 1.0 / (1.0 / p0 + 1.0 / r)
        return dist.Normal(v0 * y0 / r, jnp.sqrt(v0))

    fk = smcflow.guided_filter(model.ssm, ys, proposal, initial_proposal)
    res = smcflow.run(fk, jax.random.key(5), 256, n_runs=N_RUNS)
    boot = smcflow.run(smcflow.bootstrap_filter(model.ssm, ys), jax.random.key(5), 256, n_runs=N_RUNS)
    log_z = model.log_likelihood(ys)
    assert_unbiased_evidence(res.log_evidence, log_z, "guided filter")
    assert res.log_evidence.var() < boot.log_evidence.var()


def test_hmm_matches_forward_algorithm():
    model = smcflow.plugins.get(
        "model",
        "finite_hmm",
        transition_matrix=[[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.05, 0.15, 0.8]],
        initial_probs=[0.5, 0.3, 0.2],
        means=[-1.0, 0.0, 2.0],
        scale=0.7,
    )
    _, ys = model.simulate(jax.random.key(6), 40)
    res = smcflow.run(smcflow.bootstrap_filter(model.ssm, ys), jax.random.key(7), 256, n_runs=N_RUNS, resampler="stratified")
    log_z, filt = model.forward(ys)
    assert_unbiased_evidence(res.log_evidence, log_z, "HMM")
    # filtering probabilities of the final state
    probs = jax.vmap(lambda x, lw: jnp.zeros(3).at[x].add(jnp.exp(lw)))(res.particles, res.log_weights)
    assert_mean_close(probs, filt[-1], "HMM filtering probabilities")


def _carried_weights_run(threshold):
    model = smcflow.plugins.get("model", "linear_gaussian", rho=0.8, sigma_x=1.0, sigma_y=1.0)
    _, ys = model.simulate(jax.random.key(8), 10)
    res = smcflow.run(smcflow.bootstrap_filter(model.ssm, ys), jax.random.key(9), 2048, n_runs=400, ess_threshold=threshold)
    return res, model.log_likelihood(ys)


@pytest.mark.parametrize("threshold", [0.0, 0.5, 1.0])
def test_evidence_unbiased_whatever_the_threshold(threshold):
    """Carried weights are multiplied when a step skips resampling: Z_hat stays unbiased."""
    res, log_z = _carried_weights_run(threshold)
    n_resampled = np.asarray(res.resampled).sum(-1)
    if threshold == 0.0:
        assert n_resampled.max() == 0
    if threshold == 1.0:
        assert n_resampled.min() == 9
    assert_unbiased_evidence(res.log_evidence, log_z, f"threshold {threshold}")


@pytest.fixture
def overwritten_weights(monkeypatch):
    """Negative control: a kernel that overwrites the weights with the new potentials instead of
    multiplying the carried ones (the bug of a popular steering repo when a step skips resampling)."""
    from smcflow import kernel

    correct = kernel.reweigh

    def overwrite(log_w, log_g):
        return correct(jnp.full_like(log_w, -jnp.log(log_w.shape[0])), log_g)

    monkeypatch.setattr(kernel, "reweigh", overwrite)
    jax.clear_caches()  # compiled programs hold the correct kernel
    yield
    jax.clear_caches()


@pytest.mark.parametrize("threshold", [0.0, 0.5])
def test_unbiasedness_check_catches_overwritten_weights(threshold, overwritten_weights):
    res, log_z = _carried_weights_run(threshold)
    with pytest.raises(AssertionError):
        assert_unbiased_evidence(res.log_evidence, log_z, f"overwritten weights, threshold {threshold}")


@pytest.mark.parametrize("schedule", ["always", pytest.param("never", marks=pytest.mark.slow),
                                      pytest.param(3, marks=pytest.mark.slow), [2, 5, 6]])
def test_evidence_unbiased_under_fixed_schedules(schedule):
    model = smcflow.plugins.get("model", "linear_gaussian", rho=0.8, sigma_x=1.0, sigma_y=1.0)
    _, ys = model.simulate(jax.random.key(8), 10)
    res = smcflow.run(smcflow.bootstrap_filter(model.ssm, ys), jax.random.key(10), 2048, n_runs=400, schedule=schedule)
    flags = np.asarray(res.resampled[0])
    expected = {
        "always": np.arange(10) >= 1,
        "never": np.zeros(10, bool),
        3: (np.arange(10) % 3 == 0) & (np.arange(10) >= 1),
    }.get(schedule if not isinstance(schedule, list) else None, np.isin(np.arange(10), schedule))
    np.testing.assert_array_equal(flags, expected)
    assert_unbiased_evidence(res.log_evidence, model.log_likelihood(ys), f"schedule {schedule}")


# each scheme's offspring means are checked directly in test_resampling.py; here, in a whole filter
@pytest.mark.parametrize("scheme", ["systematic"] + [pytest.param(s, marks=pytest.mark.slow) for s in
                                                     ("multinomial", "stratified", "residual", "ssp", "killing")])
def test_every_resampler_gives_unbiased_evidence(scheme, lg1):
    model, ys = lg1
    res = smcflow.run(smcflow.bootstrap_filter(model.ssm, ys[:15]), jax.random.key(11), 512, n_runs=N_RUNS, resampler=scheme)
    assert_unbiased_evidence(res.log_evidence, model.log_likelihood(ys[:15]), scheme)
