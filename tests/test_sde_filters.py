"""SDE simulation and filtering against exact answers.

A linear SDE with linear-Gaussian observations is, once discretised (K Euler-Maruyama substeps per
observation interval), a linear-Gaussian state-space model: the exact log-likelihood of that chain is a
Kalman filter's, and both particle filters must match it within Monte Carlo error; the Girsanov-guided
filter must have a lower Var(log Z_hat). The negative control (the guided filter without the
-h g^T a g / 2 term of its weight) must fail the same check. On a nonlinear SDE with state-dependent
correlated diffusion the two filters must agree with each other. The EnKF is checked against the same
Kalman filter; bad models and data are refused by name.
"""
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from mc import allowed_deviation, assert_log_evidence_consistent, assert_mean_close, assert_unbiased_evidence
from scipy import stats

import smcflow
from smcflow.exact import kalman_filter
from smcflow.sde_filters import SDEFilter, filtering_moments
from smcflow_sde import CorrelatedDiffusion2D

pytestmark = pytest.mark.xdist_group("sde_filters")  # one worker builds the module fixtures once

# -- a partially observed 2-D linear SDE ------------------------------------------------------------

B = np.array([[-1.0, 0.8], [-0.8, -0.5]])
L = np.array([[0.8, 0.0], [0.4, 0.6]])
A = L @ L.T
H = np.array([[1.0, 0.0]])  # only the first coordinate is observed
R_STD, DT, K, T = 0.1, 0.5, 10, 12
M0, P0 = np.zeros(2), np.eye(2)


def linear_sde() -> smcflow.SDE:
    b, a = jnp.asarray(B, jnp.float32), jnp.asarray(A, jnp.float32)
    return smcflow.SDE(lambda x: x @ b.T, lambda x: jnp.broadcast_to(a, (x.shape[0], 2, 2)))


def linear_ssm(n_substeps=K, dt=DT) -> smcflow.SDEStateSpaceModel:
    h = jnp.asarray(H, jnp.float32)
    return smcflow.SDEStateSpaceModel(
        initial=lambda: dist.MultivariateNormal(jnp.zeros(2), jnp.eye(2)),
        sde=linear_sde(),
        observation=lambda x, t: dist.MultivariateNormal(x @ h.T, R_STD**2 * jnp.eye(1)),
        dt=dt,
        n_substeps=n_substeps,
    )


def euler_chain(n_substeps=K, dt=DT):
    """``(F, Q)`` of ``n_substeps`` Euler-Maruyama steps of the linear SDE over ``dt``."""
    h = dt / n_substeps
    step = np.eye(2) + h * B
    F = np.linalg.matrix_power(step, n_substeps)
    Q = sum(np.linalg.matrix_power(step, i) @ (h * A) @ np.linalg.matrix_power(step, i).T for i in range(n_substeps))
    return F, Q


@pytest.fixture(scope="module")
def linear_data():
    """The model, T observations simulated by the model itself, and the exact Kalman answer.

    With R = 0.1 the observations are sharp against the state's spread, so the bootstrap filter's
    Var(log Z_hat) at N = 256 depends strongly on the data (0.2 to 32 over five data sets drawn
    otherwise) while the guided filter's stays within 0.08 to 0.63; on these data it is 0.4 against 0.1.
    """
    ssm = linear_ssm()
    _, ys = ssm.simulate(jax.random.key(1), T)
    F, Q = euler_chain()
    kf = kalman_filter(np.asarray(ys, np.float64), F, Q, H, R_STD**2 * np.eye(1), M0, P0)
    return ssm, ys, kf


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class WithoutQuadraticTerm(SDEFilter):
    """Negative control: the guided filter's weight without its -h g^T a g / 2 term.

    The extra static field keeps its compiled program apart from the filter's: JAX 0.10.2 compares
    the treedefs of two dataclass types with the same fields as equal, so without it ``smcflow.run``
    would reuse the real filter's program for this class.
    """

    control: bool = field(default=True, metadata=dict(static=True))

    def move(self, key, k, point):
        x_new, log_ratio = super().move(key, k, point)
        st_g = jnp.einsum("nji,nj->ni", point.sigma, point.guidance)
        return x_new, log_ratio + 0.5 * self.step_size(k) * jnp.sum(st_g * st_g, axis=1)


# -- simulation ---------------------------------------------------------------------------------------


def test_simulate_sde_has_the_moments_of_the_euler_chain():
    """x_T of simulate_sde from a fixed x_0: mean F x_0 and covariance Q of the discretised chain."""
    x0 = np.array([1.0, -0.5])
    n, n_steps, n_sub, dt = 4000, 4, 5, 0.25
    paths = smcflow.simulate_sde(linear_sde(), jax.random.key(0), jnp.tile(x0, (n, 1)), dt, n_steps, n_sub)
    assert paths.shape == (n, n_steps + 1, 2)
    np.testing.assert_array_equal(paths[:, 0], np.tile(x0, (n, 1)).astype(np.float32))
    F1, Q1 = euler_chain(n_sub, dt)
    F, Q = np.linalg.matrix_power(F1, n_steps), sum(
        np.linalg.matrix_power(F1, i) @ Q1 @ np.linalg.matrix_power(F1, i).T for i in range(n_steps))
    mean = F @ x0
    x = np.asarray(paths[:, -1], np.float64)
    second = (x - mean)[:, :, None] * (x - mean)[:, None, :]
    assert_mean_close(np.concatenate([x, second.reshape(n, 4)], axis=1), np.concatenate([mean, Q.reshape(-1)]),
                      "x_T mean and covariance")
    # the same key gives the same paths; a single (d,) start gives one (n_steps + 1, d) path
    again = smcflow.simulate_sde(linear_sde(), jax.random.key(0), jnp.tile(x0, (n, 1)), dt, n_steps, n_sub)
    np.testing.assert_array_equal(paths, again)
    assert smcflow.simulate_sde(linear_sde(), jax.random.key(0), x0, dt, n_steps).shape == (n_steps + 1, 2)


# -- filters on the linear SDE -------------------------------------------------------------------------

N_RUNS, N_PARTICLES = 100, 256


@pytest.fixture(scope="module")
def linear_runs(linear_data):
    ssm, ys, kf = linear_data
    out = {}
    for name, model in (("bootstrap", smcflow.bootstrap_filter(ssm, ys)), ("girsanov", smcflow.girsanov_filter(ssm, ys))):
        res = smcflow.run(model, jax.random.key(7), N_PARTICLES, n_runs=N_RUNS, summary=_both_moments)
        steps = model.observation_steps
        out[name] = np.asarray(res.log_evidence, np.float64)
        out[name + " means"] = {k: np.asarray(v)[:, steps] for k, v in res.summaries.items()}
    return out, kf.log_likelihood


def _both_moments(point, log_w):
    """Filter means (twist removed) and the means under the filter's own (twisted) weights."""
    return {"filter": filtering_moments(point, log_w)["mean"], "twisted": jnp.exp(log_w) @ point.x}


@pytest.mark.parametrize("name", ["bootstrap", "girsanov"])
def test_filters_match_the_kalman_log_likelihood_of_the_discretised_chain(linear_runs, name):
    runs, log_z = linear_runs
    assert_unbiased_evidence(runs[name], log_z, f"{name} filter, linear SDE")
    assert_log_evidence_consistent(runs[name], log_z, f"{name} filter, linear SDE")


def test_girsanov_filter_has_lower_variance(linear_runs):
    """Var(log Z_hat) of the guided filter is below the bootstrap's: an F-test at alpha = 1e-5."""
    runs, _ = linear_runs
    ratio = runs["bootstrap"].var(ddof=1) / runs["girsanov"].var(ddof=1)
    assert ratio > stats.f.ppf(1 - 1e-5, N_RUNS - 1, N_RUNS - 1), f"variance ratio bootstrap / girsanov = {ratio:.2f}"


def test_negative_control_without_the_quadratic_term_fails(linear_data):
    """Without -h g^T a g / 2 every guided substep over-weights its particle: log Z_hat overshoots by tens
    of nats (and its variance explodes), so the check the real filter passes fails."""
    ssm, ys, kf = linear_data
    model = WithoutQuadraticTerm(ssm, jnp.asarray(ys), guided=True, lookahead=True)
    res = smcflow.run(model, jax.random.key(7), N_PARTICLES, n_runs=N_RUNS // 4)  # its error is tens of nats
    with pytest.raises(AssertionError):
        assert_log_evidence_consistent(res.log_evidence, kf.log_likelihood, "without -h g'ag/2")


@pytest.mark.slow
def test_guided_moves_alone_are_exact(linear_data):
    """Guidance without the twist is exact too: E[Z_hat / Z] = 1."""
    ssm, ys, kf = linear_data
    model = smcflow.girsanov_filter(ssm, ys, lookahead=False)
    res = smcflow.run(model, jax.random.key(8), N_PARTICLES, n_runs=N_RUNS)
    assert_unbiased_evidence(res.log_evidence, kf.log_likelihood, "guided moves without twist")


def one_step_smoother_means(ys, kf, F, Q):
    """E[x_t | y_{0:t+1}], t = 0 .. T-2, of the linear-Gaussian chain, from the Kalman filter's moments."""
    R = R_STD**2 * np.eye(1)
    out = []
    for t in range(len(kf.filter_means) - 1):
        m, P = kf.filter_means[t], kf.filter_covs[t]
        S = H @ (F @ P @ F.T + Q) @ H.T + R
        out.append(m + P @ F.T @ H.T @ np.linalg.solve(S, np.atleast_1d(ys[t + 1]) - H @ F @ m))
    return np.asarray(out)


def test_filtering_weights_give_the_kalman_means(linear_data, linear_runs):
    """At the observation times the guided filter's twisted particles target p(x_t | y_{0:t}) lambda_t(x_t),
    which on the linear SDE is exactly the one-step smoother p(x_t | y_{0:t+1}); with the twist removed
    (filtering_moments) they give the Kalman filter's means, as the bootstrap filter's do. Negative
    control: the twisted means are not the filter means (the same check catches them)."""
    ssm, ys, kf = linear_data
    runs, _ = linear_runs
    F, Q = euler_chain()
    guided, boot = runs["girsanov means"], runs["bootstrap means"]
    assert_mean_close(guided["filter"], kf.filter_means, "Girsanov filter means at the observation times")
    assert_mean_close(boot["filter"], kf.filter_means, "bootstrap filter means at the observation times")
    np.testing.assert_allclose(boot["filter"], boot["twisted"], rtol=1e-5, atol=1e-5)  # no twist: plain weights
    smoother = one_step_smoother_means(np.asarray(ys, np.float64), kf, F, Q)
    assert_mean_close(guided["twisted"][:, :-1], smoother, "twisted means (one-step smoother)")
    with pytest.raises(AssertionError):
        assert_mean_close(guided["twisted"][:, :-1], kf.filter_means[:-1], "twisted means against the filter means")


def test_single_observation_and_dispatch(linear_data):
    """T = 1: log Z_hat is an average of p(y_0 | x_0); bootstrap_filter dispatches on the model type."""
    ssm, ys, _ = linear_data
    model = smcflow.bootstrap_filter(ssm, ys[:1])
    assert isinstance(model, SDEFilter) and model.n_steps == 0 and not model.guided
    res = smcflow.run(model, jax.random.key(0), 64, n_runs=50)
    exact = stats.norm(0, np.sqrt(1.0 + R_STD**2)).logpdf(float(ys[0, 0]))
    assert_unbiased_evidence(res.log_evidence, exact, "one observation")


# -- a nonlinear SDE with state-dependent correlated diffusion -----------------------------------------


@pytest.mark.slow
def test_filters_agree_on_a_nonlinear_sde():
    """CorrelatedDiffusion2D observed through y = x_1 + x_2^2 / 2 + noise: the bootstrap and Girsanov
    estimates of Z agree (Welch two-sample test on Z_hat / Z_ref, Student-t quantile at alpha)."""
    problem = CorrelatedDiffusion2D()
    ssm = smcflow.SDEStateSpaceModel(
        initial=lambda: dist.MultivariateNormal(jnp.zeros(2), 0.16 * jnp.eye(2)),
        sde=problem.sde,
        observation=lambda x, t: dist.Normal(x[:, 0] + 0.5 * x[:, 1] ** 2, 0.15),
        dt=0.4,
        n_substeps=8,
    )
    _, ys = ssm.simulate(jax.random.key(3), 15)
    runs = {name: np.asarray(smcflow.run(build(ssm, ys), jax.random.key(4), 256, n_runs=100).log_evidence, np.float64)
            for name, build in (("bootstrap", smcflow.bootstrap_filter), ("girsanov", smcflow.girsanov_filter))}
    ref = np.max(np.concatenate(list(runs.values())))
    ratios = {k: np.exp(v - ref) for k, v in runs.items()}
    diff = ratios["bootstrap"].mean() - ratios["girsanov"].mean()
    se = np.sqrt(sum(r.var(ddof=1) / r.size for r in ratios.values()))
    assert abs(diff) <= allowed_deviation(100) * se, f"Z_hat means differ by {diff / se:.2f} standard errors"
    assert runs["girsanov"].var() < runs["bootstrap"].var()


# -- the ensemble Kalman filter ---------------------------------------------------------------------------


def test_enkf_tends_to_the_kalman_filter(linear_data):
    """With a large ensemble the EnKF means and log-likelihood are the Kalman filter's (the O(1/n) bias of a
    2000-member ensemble is far below the standard error of 16 runs). Negative control: an inflated EnKF
    (rho = 1.5) is not the Kalman filter, and the same check catches it."""
    ssm, ys, kf = linear_data
    keys = jax.random.split(jax.random.key(5), 16)

    def check(inflation):
        results = [smcflow.ensemble_kalman_filter(ssm, ys, k, 2000, inflation=inflation) for k in keys]
        means = np.stack([np.asarray(r.means, np.float64) for r in results])
        assert means.shape == (16, T, 2)
        assert_mean_close(means, kf.filter_means, f"EnKF means, inflation {inflation}")
        log_liks = np.array([float(r.log_likelihood) for r in results])
        assert_mean_close(log_liks, kf.log_likelihood, f"EnKF log-likelihood, inflation {inflation}")
        return results

    results = check(1.0)
    with pytest.raises(AssertionError):
        check(1.5)
    # an all-ones localisation is the plain filter, bitwise; a pair of tapers is accepted
    plain = smcflow.ensemble_kalman_filter(ssm, ys, keys[0], 2000, localisation=np.ones((2, 1)))
    np.testing.assert_array_equal(plain.means, results[0].means)
    tapered = smcflow.ensemble_kalman_filter(ssm, ys, keys[0], 2000, localisation=(np.ones((2, 1)), np.ones((1, 1))))
    np.testing.assert_array_equal(tapered.means, results[0].means)


def test_gaspari_cohn_taper():
    from smcflow.enkf import gaspari_cohn

    r = np.linspace(0, 3, 31)
    c = np.asarray(gaspari_cohn(r, 1.0))
    assert c[0] == pytest.approx(1.0) and np.all(c[r >= 2] == 0) and np.all(np.diff(c) <= 1e-7)
    np.testing.assert_allclose(np.asarray(gaspari_cohn([0.999999, 1.000001], 1.0)), [0.2083333] * 2, atol=1e-5)


# -- bad input ---------------------------------------------------------------------------------------------


def _ssm_with(sde=None, dt=0.1, n_substeps=2, initial=None):
    return smcflow.SDEStateSpaceModel(
        initial=initial or (lambda: dist.MultivariateNormal(jnp.zeros(2), jnp.eye(2))),
        sde=sde or linear_sde(),
        observation=lambda x, t: dist.Normal(x[:, 0], 0.5),
        dt=dt,
        n_substeps=n_substeps,
    )


def test_bad_sdes_are_refused_by_name():
    ys = jnp.zeros((5,))
    skew = smcflow.SDE(lambda x: -x, lambda x: jnp.broadcast_to(jnp.array([[1.0, 0.5], [0.0, 1.0]]), (x.shape[0], 2, 2)))
    with pytest.raises(ValueError, match=r"sde.diffusion\(x\) must be symmetric"):
        smcflow.bootstrap_filter(_ssm_with(skew), ys)
    indefinite = smcflow.SDE(lambda x: -x, lambda x: jnp.broadcast_to(jnp.array([[1.0, 2.0], [2.0, 1.0]]), (x.shape[0], 2, 2)))
    with pytest.raises(ValueError, match="positive semi-definite"):
        smcflow.girsanov_filter(_ssm_with(indefinite), ys)
    with pytest.raises(ValueError, match="positive semi-definite"):
        smcflow.simulate_sde(indefinite, jax.random.key(0), jnp.zeros((3, 2)), 0.1, 5)
    wrong_dim = smcflow.SDE(lambda x: jnp.zeros((x.shape[0], 3)), linear_sde().diffusion)
    with pytest.raises(ValueError, match=r"drift\(x\) must return shape \(3, 2\)"):
        smcflow.simulate_sde(wrong_dim, jax.random.key(0), jnp.zeros((3, 2)), 0.1, 5)
    wrong_diffusion = smcflow.SDE(linear_sde().drift, lambda x: jnp.broadcast_to(jnp.eye(3), (x.shape[0], 3, 3)))
    with pytest.raises(ValueError, match=r"diffusion\(x\) must return shape \(4, 2, 2\)"):
        smcflow.simulate_sde(wrong_diffusion, jax.random.key(0), jnp.zeros((4, 2)), 0.1, 5)
    not_finite = smcflow.SDE(lambda x: x / 0.0, linear_sde().diffusion)
    with pytest.raises(ValueError, match=r"drift\(x\) is not finite"):
        smcflow.simulate_sde(not_finite, jax.random.key(0), jnp.ones((2, 2)), 0.1, 5)
    with pytest.raises(TypeError, match="SDE.diffusion must be callable"):
        smcflow.SDE(lambda x: x, np.eye(2))
    with pytest.raises(TypeError, match="SDEStateSpaceModel.sde has no callable 'drift'"):
        smcflow.SDEStateSpaceModel(lambda: dist.Normal(0, 1), object(), lambda x, t: dist.Normal(x, 1), 0.1, 1)


def test_bad_arguments_are_refused_by_name():
    with pytest.raises(ValueError, match="dt must be a finite number > 0"):
        _ssm_with(dt=0.0)
    with pytest.raises(ValueError, match="dt must be a finite number > 0"):
        smcflow.simulate_sde(linear_sde(), jax.random.key(0), jnp.zeros((2, 2)), -0.1, 5)
    with pytest.raises(ValueError, match="n_substeps must be >= 1"):
        _ssm_with(n_substeps=0)
    with pytest.raises(TypeError, match="n_steps must be an int"):
        smcflow.simulate_sde(linear_sde(), jax.random.key(0), jnp.zeros((2, 2)), 0.1, 2.5)
    with pytest.raises(ValueError, match="x0 has non-finite entries"):
        smcflow.simulate_sde(linear_sde(), jax.random.key(0), jnp.full((2, 2), jnp.nan), 0.1, 5)
    with pytest.raises(ValueError, match="ys has non-finite entries at time 2"):
        smcflow.bootstrap_filter(_ssm_with(), jnp.array([0.0, 1.0, jnp.nan]))
    with pytest.raises(ValueError, match="event shape"):
        smcflow.bootstrap_filter(_ssm_with(initial=lambda: dist.Normal(0.0, 1.0)), jnp.zeros(3))
    with pytest.raises(TypeError, match="girsanov_filter needs an smcflow.SDEStateSpaceModel"):
        smcflow.girsanov_filter(smcflow.plugins.get("model", "linear_gaussian").ssm, jnp.zeros(3))
    with pytest.raises(TypeError, match="observation must be callable"):
        smcflow.SDEStateSpaceModel(lambda: dist.Normal(0, 1), linear_sde(), dist.Normal(0, 1), 0.1, 1)
    with pytest.raises(ValueError, match="n_ensemble must be >= 2"):
        smcflow.ensemble_kalman_filter(_ssm_with(), jnp.zeros(3), jax.random.key(0), 1)
    with pytest.raises(ValueError, match="inflation must be"):
        smcflow.ensemble_kalman_filter(_ssm_with(), jnp.zeros(3), jax.random.key(0), 10, inflation=0.5)
    with pytest.raises(ValueError, match=r"localisation \(C_xy\) must have shape \(2, 1\)"):
        smcflow.ensemble_kalman_filter(_ssm_with(), jnp.zeros(3), jax.random.key(0), 10, localisation=np.ones(3))
