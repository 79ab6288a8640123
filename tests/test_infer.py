"""smcflow.infer.SMC on numpyro models: evidence against closed forms (frozen schedules exactly
unbiased, adaptive ones within Monte Carlo error, a wrong final exponent caught by the same test),
posteriors against closed forms and NUTS, exports, and refusals of bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from scipy import special

import smcflow
from mc import allowed_deviation, assert_mean_close, assert_unbiased_evidence
from smcflow.infer import SMC, TemperingSchedule

pytestmark = pytest.mark.xdist_group("infer")  # shares compiled programs and fixtures with its group

RUNS = 64


def gaussian_log_evidence(y, cov):
    """log N(y; 0, cov)."""
    y = np.asarray(y, np.float64)
    _, logdet = np.linalg.slogdet(cov)
    return float(-0.5 * (y @ np.linalg.solve(cov, y) + logdet + y.size * np.log(2 * np.pi)))


# -- Gaussian mean, known variance: y_i ~ N(mu, s^2), mu ~ N(0, tau^2); y ~ N(0, s^2 I + tau^2 1 1^T) --------
SIGMA, TAU = 1.0, 3.0
Y = np.asarray(jax.random.normal(jax.random.key(7), (20,)) * SIGMA + 2.0)
LOG_Z = gaussian_log_evidence(Y, SIGMA**2 * np.eye(Y.size) + TAU**2 * np.ones((Y.size, Y.size)))
POST_VAR = 1.0 / (Y.size / SIGMA**2 + 1.0 / TAU**2)
POST_MEAN = POST_VAR * Y.sum() / SIGMA**2


def gaussian_mean(y):
    mu = numpyro.sample("mu", dist.Normal(0.0, TAU))
    with numpyro.plate("data", y.shape[0]):
        numpyro.sample("y", dist.Normal(mu, SIGMA), obs=y)


@pytest.fixture(scope="module")
def adaptive_runs():
    return SMC(gaussian_mean, n_particles=256, n_moves=2, n_runs=RUNS).run(jax.random.key(1), Y)


def test_gaussian_mean_adaptive_evidence_and_posterior(adaptive_runs):
    smc = adaptive_runs
    assert_unbiased_evidence(smc.log_evidence, LOG_Z, "Gaussian mean, adaptive tempering")
    assert_mean_close(np.mean(smc.get_samples()["mu"], axis=1), POST_MEAN, "Gaussian mean: posterior mean")
    schedule = smc.schedule
    assert schedule.exponents[-1] == 1.0 and np.all(np.diff(schedule.exponents) > 0)
    assert schedule.scales.shape == (schedule.exponents.size - 1, 1)
    assert np.all((smc.acceptance > 0.1) & (smc.acceptance <= 1.0))
    assert smc.pareto_k.shape == (RUNS,) and np.all(smc.pareto_k < 0.7)


def test_frozen_schedule_is_unbiased_and_a_wrong_last_exponent_is_caught(adaptive_runs):
    pilot = adaptive_runs.schedule
    smc = SMC(gaussian_mean, n_particles=256, n_moves=2, n_runs=RUNS, tempering=pilot).run(jax.random.key(2), Y)
    np.testing.assert_array_equal(smc.schedule.exponents, pilot.exponents)  # replayed, not re-chosen
    np.testing.assert_allclose(smc.schedule.scales, pilot.scales)
    assert_unbiased_evidence(smc.log_evidence, LOG_Z, "Gaussian mean, frozen schedule")
    # negative control: the same program and test with a schedule stopping short of the posterior
    # (set behind the constructor's check, which refuses it)
    wrong = pilot.exponents.copy()
    wrong[-1] = 0.9 * wrong[-1] + 0.1 * wrong[-2]
    smc._frozen = TemperingSchedule(wrong, pilot.scales)
    smc.run(jax.random.key(2), Y)
    with pytest.raises(AssertionError, match="Z_hat / Z"):
        assert_unbiased_evidence(smc.log_evidence, LOG_Z, "negative control: last exponent below 1")


def test_summary_and_arviz_export(adaptive_runs, capsys):
    smc = adaptive_runs
    smc.print_summary()
    out = capsys.readouterr().out
    assert "mu" in out and "log evidence" in out
    idata = smc.to_inference_data()
    assert idata.posterior["mu"].shape == (RUNS, 256)
    stats = idata.sample_stats
    k = int(np.max(stats.sizes["stage"]))
    assert stats["exponent"].shape == (RUNS, k) and stats["acceptance"].shape == (RUNS, k)
    np.testing.assert_array_equal(stats["exponent"][0, : smc.schedule.exponents.size], smc.schedule.exponents)
    assert stats.attrs["kernel"] == "rmh" and np.isnan(stats["acceptance"][0, 0])


# -- waste-free SMC (Dau and Chopin, 2022) ------------------------------------------------------------------
def test_waste_free_evidence_and_a_wrong_bookkeeping_is_caught():
    """256 particles as 32 chains of length 8 per tempering step, 64 runs vmapped: E[Z_hat / Z] = 1 and the
    posterior mean, against the closed form. Negative control, through the same check on the same runs'
    per-stage evidence increments: the chain states weighted 1 / M each (as their chain start was)
    instead of 1 / N, i.e. each increment summed over a chain instead of averaged over all N states."""
    chains = 8
    smc = SMC(gaussian_mean, n_particles=256, n_moves=1, waste_free=chains, n_runs=RUNS).run(jax.random.key(3), Y)
    assert_unbiased_evidence(smc.log_evidence, LOG_Z, "Gaussian mean, waste-free")
    assert_mean_close(np.mean(smc.get_samples()["mu"], axis=1), POST_MEAN, "Gaussian mean, waste-free: posterior mean")
    stats = smc.to_inference_data().sample_stats
    assert smc.schedule.exponents[-1] == 1.0 and stats.attrs["waste_free"] == chains
    increments = np.asarray(stats["log_evidence_increment"], np.float64)  # (run, stage), NaN past the end
    np.testing.assert_allclose(np.nansum(increments, axis=1), np.asarray(smc.log_evidence), rtol=1e-5, atol=1e-4)
    moved = np.isfinite(increments[:, 1:])  # the stages after a waste-free move (stage 0: the prior draws)
    wrong = np.nansum(increments, axis=1) + np.log(chains) * moved.sum(axis=1)
    with pytest.raises(AssertionError, match="Z_hat / Z"):
        assert_unbiased_evidence(wrong, LOG_Z, "negative control: waste-free states weighted per chain")


@pytest.mark.parametrize("value, error, match", [(1, ValueError, ">= 2"), (3, ValueError, "must divide n_particles=10"),
                                                 (2.0, TypeError, "waste_free")])
def test_bad_waste_free_is_refused(value, error, match):
    with pytest.raises(error, match=match):
        SMC(gaussian_mean, n_particles=10, waste_free=value)


# -- Beta-Bernoulli: a constrained site (the Jacobian of the logit map enters the prior) -------------------
A, B = 2.0, 3.0
FLIPS = np.array([1, 1, 0, 1, 1, 1, 0, 1, 1, 0, 1, 1], dtype=np.float32)


def beta_bernoulli(y):
    p = numpyro.sample("p", dist.Beta(A, B))
    with numpyro.plate("flips", y.shape[0]):
        numpyro.sample("y", dist.Bernoulli(probs=p), obs=y)


@pytest.mark.slow
def test_beta_bernoulli_evidence_and_posterior_mean():
    k = FLIPS.sum()
    log_z = special.betaln(A + k, B + FLIPS.size - k) - special.betaln(A, B)
    smc = SMC(beta_bernoulli, n_particles=256, n_moves=2, n_runs=RUNS).run(jax.random.key(4), FLIPS)
    assert_unbiased_evidence(smc.log_evidence, log_z, "Beta-Bernoulli")
    p = smc.get_samples()["p"]
    assert np.all((p > 0) & (p < 1))  # constrained space
    assert_mean_close(np.mean(p, axis=1), (A + k) / (A + B + FLIPS.size), "Beta-Bernoulli: posterior mean")


# -- Bayesian linear regression, known noise: w ~ N(0, a^2 I), y ~ N(X w, s^2 I) ---------------------------
ALPHA_W, NOISE = 1.5, 0.5
X = np.asarray(jax.random.normal(jax.random.key(8), (30, 3)))
Y_REG = np.asarray(X @ np.array([1.0, -2.0, 0.5]) + NOISE * jax.random.normal(jax.random.key(9), (30,)))


def regression(x, y):
    w = numpyro.sample("w", dist.Normal(0.0, ALPHA_W).expand([x.shape[1]]).to_event(1))
    numpyro.sample("y", dist.Normal(x @ w, NOISE).to_event(1), obs=y)


@pytest.mark.slow
@pytest.mark.parametrize("kernel", ["rmh", "mala", "hmc"])
def test_linear_regression_evidence_and_posterior_mean(kernel):
    log_z = gaussian_log_evidence(Y_REG, NOISE**2 * np.eye(Y_REG.size) + ALPHA_W**2 * X @ X.T)
    precision = X.T @ X / NOISE**2 + np.eye(3) / ALPHA_W**2
    post_mean = np.linalg.solve(precision, X.T @ Y_REG / NOISE**2)
    smc = SMC(regression, n_particles=512, kernel=kernel, n_moves=5, n_runs=RUNS).run(jax.random.key(5), X, Y_REG)
    assert_unbiased_evidence(smc.log_evidence, log_z, f"linear regression ({kernel})")
    assert_mean_close(np.mean(smc.get_samples()["w"], axis=1), post_mean, f"linear regression ({kernel}): mean")
    assert smc.schedule.exponents[-1] == 1.0


# -- A well-separated bimodal posterior with known mode weights ---------------------------------------------
# prior mu ~ N(0, 5^2); likelihood factor 0.3 N(mu; -4, 0.5^2) + 0.7 N(mu; 4, 0.5^2). Each Gaussian product
# integrates to N(m_k; 0, 25 + 0.25), equal for m = -4 and 4: the posterior mode weights are exactly 0.3, 0.7.
def bimodal():
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    log_components = jnp.log(jnp.array([0.3, 0.7])) + dist.Normal(jnp.array([-4.0, 4.0]), 0.5).log_prob(mu)
    numpyro.factor("likelihood", jax.scipy.special.logsumexp(log_components))


@pytest.mark.slow
def test_bimodal_mode_weights_and_evidence():
    log_z = float(dist.Normal(0.0, np.sqrt(25.25)).log_prob(4.0))
    smc = SMC(bimodal, n_particles=1024, n_moves=5, n_runs=RUNS).run(jax.random.key(6))
    assert_unbiased_evidence(smc.log_evidence, log_z, "bimodal")
    right = np.sum(np.exp(np.asarray(smc.log_weights)) * (np.asarray(smc._out["u"])[..., 0] > 0), axis=1)
    assert_mean_close(right, 0.7, "bimodal: weight of the right mode")


# -- Eight schools (non-centred) against numpyro's NUTS ------------------------------------------------------
SCHOOL_Y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SCHOOL_SIGMA = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])


def eight_schools(sigma, y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("school", sigma.shape[0]):
        eta = numpyro.sample("eta", dist.Normal(0.0, 1.0))
        theta = numpyro.deterministic("theta", mu + tau * eta)
        numpyro.sample("y", dist.Normal(theta, sigma), obs=y)


@pytest.mark.slow
def test_eight_schools_matches_nuts():
    from numpyro.diagnostics import effective_sample_size
    from numpyro.infer import MCMC, NUTS

    mcmc = MCMC(NUTS(eight_schools), num_warmup=1000, num_samples=4000, num_chains=4, chain_method="vectorized",
                progress_bar=False)
    mcmc.run(jax.random.key(10), SCHOOL_SIGMA, y=SCHOOL_Y)
    nuts = mcmc.get_samples(group_by_chain=True)
    smc = SMC(eight_schools, n_particles=1000, kernel="hmc", n_moves=5, n_runs=32).run(
        jax.random.key(11), SCHOOL_SIGMA, y=SCHOOL_Y)
    draws = smc.get_samples()
    allowed = allowed_deviation(32, n_checks=2 + SCHOOL_Y.size)  # Student-t over the SMC runs, Bonferroni
    for name in ("mu", "tau", "theta"):
        chains = np.asarray(nuts[name], np.float64)
        nuts_mean = chains.mean(axis=(0, 1))
        nuts_se = chains.std(axis=(0, 1)) / np.sqrt(np.asarray(effective_sample_size(chains)))
        per_run = np.asarray(draws[name], np.float64).mean(axis=1)
        smc_mean, smc_se = per_run.mean(axis=0), per_run.std(axis=0, ddof=1) / np.sqrt(per_run.shape[0])
        t = np.abs(smc_mean - nuts_mean) / np.sqrt(smc_se**2 + nuts_se**2)
        assert np.all(t < allowed), (name, smc_mean, nuts_mean, smc_se, nuts_se, allowed)


# -- bad input --------------------------------------------------------------------------------------------
def discrete_mixture(y):
    z = numpyro.sample("z", dist.Bernoulli(0.5))
    numpyro.sample("y", dist.Normal(2.0 * z, 1.0), obs=y)


def test_discrete_latent_site_is_refused_by_name():
    with pytest.raises(ValueError, match="'z' are discrete"):
        SMC(discrete_mixture, n_particles=10).run(jax.random.key(0), 1.0)


@pytest.mark.parametrize("options, error, match", [
    ({"n_particles": 0}, ValueError, "n_particles"),
    ({"n_particles": 10.5}, TypeError, "n_particles"),
    ({"n_particles": 10, "kernel": "nuts"}, ValueError, "kernel='nuts'"),
    ({"n_particles": 10, "target_ess": 1.0}, ValueError, "target_ess"),
    ({"n_particles": 10, "target_ess": 0.0}, ValueError, "target_ess"),
    ({"n_particles": 10, "n_moves": 0}, ValueError, "n_moves"),
    ({"n_particles": 10, "step_size": -1.0}, ValueError, "step_size"),
    ({"n_particles": 10, "tempering": "fixed"}, ValueError, "tempering='fixed'"),
    ({"n_particles": 10, "tempering": np.array([0.5, 1.0])}, ValueError, "TemperingSchedule"),
    ({"n_particles": 10, "tempering": TemperingSchedule(np.array([0.5, 0.9]), np.ones((1, 1)))}, ValueError,
     "exactly 1"),
    ({"n_particles": 10, "errors": "ignore"}, ValueError, "errors"),
])
def test_bad_options_are_refused_before_running(options, error, match):
    with pytest.raises(error, match=match):
        SMC(gaussian_mean, **options)


def test_results_before_run_and_a_bad_key_are_refused():
    smc = SMC(gaussian_mean, n_particles=10)
    with pytest.raises(RuntimeError, match="run"):
        _ = smc.log_evidence
    with pytest.raises(TypeError, match="key"):
        smc.run(0, Y)


def nan_likelihood(y):
    scale = numpyro.sample("scale", dist.Normal(0.0, 1.0))
    numpyro.factor("bad", jnp.log(scale) * y)  # NaN for the prior draws with scale < 0


@pytest.mark.slow
def test_numerical_failures_and_an_unfinished_schedule_are_reported():
    with pytest.raises(smcflow.SMCNumericalError, match="NaN"):
        SMC(nan_likelihood, n_particles=64, n_moves=1).run(jax.random.key(0), 1.0)
    flagged = SMC(nan_likelihood, n_particles=64, n_moves=1, errors="flag")
    with pytest.warns(RuntimeWarning, match="NaN"):
        flagged.run(jax.random.key(0), 1.0)
    with pytest.raises(RuntimeError, match="max_steps=1"):
        SMC(gaussian_mean, n_particles=64, n_moves=1, max_steps=1).run(jax.random.key(0), Y)


@pytest.mark.slow
def test_heavy_tailed_final_weights_warn():
    with pytest.warns(RuntimeWarning, match="Pareto k-hat"):
        smc = SMC(gaussian_mean, n_particles=256, n_moves=1, target_ess=0.002).run(jax.random.key(0), Y)
    assert float(smc.pareto_k) > 0.7


def test_infer_is_a_lazy_attribute():
    assert smcflow.infer.SMC is SMC
