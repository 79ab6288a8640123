"""The surrogates of plugin smcflow-surrogates: contract, weight files, and their statistics against the truth."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from mc import allowed_deviation

import smcflow
from smcflow.contracts import ConditionalDiffusionSampler, require
from smcflow.surrogate_filter import _forecast
from smcflow_surrogates import exact_transition, linear_gaussian_surrogate
from smcflow_surrogates.lorenz import LORENZ63, LORENZ96, WEIGHTS, lorenz63_surrogate, lorenz96_surrogate, true_sde

pytestmark = pytest.mark.xdist_group("surrogates")


def forecasts(surrogate, cond: np.ndarray, m: int, seed: int) -> np.ndarray:
    cc = jnp.broadcast_to(jnp.asarray(cond, jnp.float32), (m, cond.shape[-1]))
    return np.asarray(jax.jit(_forecast, static_argnums=0)(surrogate, jax.random.key(seed), cc), np.float64)


def test_surrogates_are_registered_and_satisfy_the_contract():
    names = smcflow.plugins.available("sampler")
    for name in ("linear_gaussian", "lorenz63", "lorenz96"):
        assert name in names
    for surrogate in (linear_gaussian_surrogate(np.eye(2)), smcflow.plugins.get("sampler", "lorenz63"),
                      smcflow.plugins.get("sampler", "lorenz96")):
        require(surrogate, ConditionalDiffusionSampler, surrogate.name)
        assert callable(surrogate.tweedie_factor)


@pytest.mark.parametrize("name", ["lorenz63", "lorenz96"])
def test_weight_files_load_without_pickle(name):
    path = WEIGHTS / f"{name}.npz"
    assert path.stat().st_size < 1024**2
    with np.load(path, allow_pickle=False) as archive:
        assert all(archive[key].dtype != object for key in archive.files)


def test_the_analytic_surrogate_draws_its_exact_transition():
    """Forecasts of the analytic surrogate have the covariance exact_transition computes (Euler chain
    included); the continuous-time Q, off by 3 %, is caught by the same check (negative control)."""
    A, Q = np.array([[0.9, 0.2], [-0.2, 0.9]]), np.array([[0.3, 0.05], [0.05, 0.2]])
    surrogate = linear_gaussian_surrogate(A, Q=Q, n_steps=20)
    F, b, S = exact_transition(surrogate)
    cond = np.array([1.0, -2.0])
    m = 200_000
    draws = forecasts(surrogate, cond, m, 0)
    centred = draws - (F @ cond + b)
    products = np.stack([centred[:, 0] ** 2, centred[:, 1] ** 2, centred[:, 0] * centred[:, 1]], axis=1)
    se = products.std(axis=0, ddof=1) / np.sqrt(m)
    allowed = allowed_deviation(m, 3) * se

    def error(cov):
        return np.abs(products.mean(axis=0) - np.array([cov[0, 0], cov[1, 1], cov[0, 1]]))

    assert np.all(error(S) <= allowed), error(S) / se
    assert not np.all(error(Q) <= allowed), "the continuous-time covariance passed: the check has no power"


# The learned surrogates against the true SDE, one observation interval from held-out states. Model error
# measured (docs/assimilation.md, K = 20): Lorenz-63 on 28 attractor states, the worst coordinate's
# |mean error| median 0.08 forecast sd, maximum 0.66 sd, variance ratios 0.95 .. 1.38; Lorenz-96 on 12
# states, worst of 40 sites median 0.30 sd, maximum 0.57 sd, ratios 0.94 .. 1.26. The allowances are those
# maxima with a margin, in forecast sd, on top of the Monte Carlo tolerance (Bonferroni over coordinates).
MEAN_ALLOWANCE, VARIANCE_RATIO = 0.75, (0.8, 1.5)


def lorenz63_states(n: int) -> np.ndarray:
    x0 = jnp.asarray(LORENZ63.initial_mean) + LORENZ63.initial_sd * jax.random.normal(jax.random.key(5), (n, 3))
    return np.asarray(smcflow.simulate_sde(true_sde(LORENZ63), jax.random.key(6), x0, LORENZ63.dt, 60,
                                           LORENZ63.n_substeps)[:, -1])


def one_step_check(surrogate, cond, truth, m, seed, tamper=None):
    draws = forecasts(surrogate, tamper(cond) if tamper else cond, m, seed)
    sd = truth.std(axis=0, ddof=1)
    se = np.sqrt(draws.var(axis=0, ddof=1) / m + truth.var(axis=0, ddof=1) / m)
    mean_ok = np.abs(draws.mean(0) - truth.mean(0)) <= allowed_deviation(m, cond.shape[-1]) * se + MEAN_ALLOWANCE * sd
    ratio = draws.var(axis=0, ddof=1) / truth.var(axis=0, ddof=1)
    return bool(mean_ok.all() and np.all((VARIANCE_RATIO[0] < ratio) & (ratio < VARIANCE_RATIO[1])))


@pytest.fixture(scope="module")
def lorenz63_truth():
    """Two held-out states and 4000 true-SDE draws one interval ahead of each (one compiled call)."""
    conds = lorenz63_states(2)
    m = 4000
    starts = jnp.repeat(jnp.asarray(conds), m, axis=0)
    draws = np.asarray(smcflow.simulate_sde(true_sde(LORENZ63), jax.random.key(10), starts, LORENZ63.dt, 1,
                                            LORENZ63.n_substeps)[:, -1], np.float64)
    return conds, [draws[:m], draws[m:]], m


@pytest.fixture(scope="module")
def lorenz63():
    return lorenz63_surrogate()


def test_lorenz63_surrogate_one_step_statistics(lorenz63_truth, lorenz63):
    conds, truths, m = lorenz63_truth
    for i, (c, truth) in enumerate(zip(conds, truths)):
        assert one_step_check(lorenz63, c, truth, m, 20 + i), f"held-out state {i}"


@pytest.mark.parametrize("tamper", ["wrong state", "wrong scale"])
def test_lorenz63_one_step_check_catches_a_wrong_surrogate(lorenz63_truth, lorenz63, tamper):
    """Negative controls: conditioned on a state 2 units off in each coordinate, or with the residual
    scale 1.5 times too large (variance ratio 2.25), the same check fails."""
    conds, truths, m = lorenz63_truth
    surrogate, shift = lorenz63, None
    if tamper == "wrong scale":
        surrogate = type(surrogate)(**{**surrogate.__dict__, "scale": 1.5 * surrogate.scale})
    else:
        shift = lambda c: c + 2.0  # noqa: E731
    assert not one_step_check(surrogate, conds[0], truths[0], m, 30, tamper=shift)


@pytest.mark.slow
def test_lorenz96_surrogate_one_step_statistics():
    """The same check on Lorenz-96 at two held-out states; its negative control (scale 1.5 times too
    large) fails it."""
    s, m = LORENZ96, 2000
    x0 = jnp.asarray(s.initial_mean) + jax.random.normal(jax.random.key(7), (2, s.d))
    conds = np.asarray(smcflow.simulate_sde(true_sde(s), jax.random.key(8), x0, s.dt, 60, s.n_substeps)[:, -1])
    draws = np.asarray(smcflow.simulate_sde(true_sde(s), jax.random.key(9), jnp.repeat(jnp.asarray(conds), m, axis=0),
                                            s.dt, 1, s.n_substeps)[:, -1], np.float64)
    surrogate = lorenz96_surrogate()
    for i, c in enumerate(conds):
        assert one_step_check(surrogate, c, draws[i * m:(i + 1) * m], m, 40 + i), f"held-out state {i}"
    wrong = type(surrogate)(**{**surrogate.__dict__, "scale": 1.5 * surrogate.scale})
    assert not one_step_check(wrong, conds[0], draws[:m], m, 42)
