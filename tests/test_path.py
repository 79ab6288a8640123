"""The path model: exact Girsanov algebra for scalar, diagonal and full diffusions, zero-variance optimal
guidance on linear chains, undone guidance, the tilted bimodal mixture, and negative controls (a sign
flip of the Girsanov term, guidance or potential one grid point off) that the same checks must catch."""
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from mc import assert_mean_close, assert_unbiased_evidence

import smcflow
from smcflow.exact import tilt_gaussian_mixture
from smcflow.path import euler_maruyama
from smcflow_diffusion import mixture_diffusion

KINDS = ("scalar", "diagonal", "full")


def _sigma(kind, x):
    """A bounded, state-dependent Sigma(x) of each kind for x of shape (n, 2) (scalar: a number)."""
    if kind == "scalar":
        return 1.3
    if kind == "diagonal":
        return 0.5 + jnp.stack([jax.nn.sigmoid(x[:, 0]), 0.5 * jnp.cos(x[:, 1]) ** 2], axis=1)
    lower = jnp.stack([jnp.stack([1.0 + 0.2 * jnp.sin(x[:, 0]), 0.0 * x[:, 0]], -1),
                       jnp.stack([0.4 * jnp.tanh(x[:, 1]), 0.7 + 0.1 * jnp.cos(x[:, 0])], -1)], axis=1)
    return lower


@pytest.mark.parametrize("kind", KINDS)
def test_girsanov_term_is_the_gaussian_density_ratio(kind):
    """-sqrt(h) <Sigma^T g, xi> - h g^T a g / 2 = log N(x'; x + h b, h a) - log N(x'; x + h (b + a g), h a)."""
    kx, kb, kg, kxi = jax.random.split(jax.random.key(0), 4)
    x, b, g, xi = (jax.random.normal(k, (7, 2)) for k in (kx, kb, kg, kxi))
    h = 0.03
    sigma = _sigma(kind, x)
    x_new, log_ratio = euler_maruyama(x, b, g, sigma, xi, h, kind)
    full = {"scalar": lambda s: s * jnp.broadcast_to(jnp.eye(2), (7, 2, 2)),
            "diagonal": lambda s: jax.vmap(jnp.diag)(s), "full": lambda s: s}[kind](sigma)
    cov = h * full @ jnp.swapaxes(full, 1, 2)
    a_g = jnp.einsum("nij,nj->ni", full @ jnp.swapaxes(full, 1, 2), g)
    np.testing.assert_allclose(x_new, x + h * (b + a_g) + jnp.sqrt(h) * jnp.einsum("nij,nj->ni", full, xi), rtol=1e-5, atol=1e-6)
    ref = dist.MultivariateNormal(x + h * b, covariance_matrix=cov).log_prob(x_new)
    prop = dist.MultivariateNormal(x + h * (b + a_g), covariance_matrix=cov).log_prob(x_new)
    np.testing.assert_allclose(log_ratio, ref - prop, rtol=1e-3, atol=1e-3)
    if kind == "scalar":
        np.testing.assert_allclose(smcflow.girsanov_log_weight(g, xi, sigma, h), log_ratio, rtol=1e-6)


# -- linear chains with the exact h-function ---------------------------------------------------------


@dataclass(frozen=True)
class LinearChain:
    """x_{k+1} = x_k + h (A x_k + c) + sqrt(h) (v0 + t_k) L xi on t in [0, 1]; x_0 ~ N(m0, P0); reward lam'x_K.

    ``L`` is the identity (``scalar``), a diagonal (``diagonal``) or a lower-triangular matrix (``full``).
    With a_K = lam, a_k = (I + h A)' a_{k+1} and b_k = b_{k+1} + h a_{k+1}'c + h a_{k+1}' S_k S_k' a_{k+1} / 2,
    log h_k(x) = a_k'x + b_k is exactly log E[exp(lam'x_K) | x_k = x].
    """

    kind: str = "scalar"
    K: int = 20
    v0: float = 0.5

    @property
    def times(self):
        return np.linspace(0.0, 1.0, self.K + 1)

    A = np.array([[-0.5, 0.2], [0.1, -0.3]])
    c = np.array([0.3, -0.2])
    m0 = np.array([0.2, -0.1])
    P0 = np.array([[0.5, 0.1], [0.1, 0.3]])
    lam = np.array([0.8, -0.4])

    @property
    def L(self):
        return {"scalar": np.eye(2), "diagonal": np.diag([0.7, 1.4]), "full": np.array([[0.9, 0.0], [0.5, 0.6]])}[self.kind]

    def h_function(self):
        t, d = self.times, 2
        a, b = np.zeros((self.K + 1, d)), np.zeros(self.K + 1)
        a[-1] = self.lam
        for k in range(self.K - 1, -1, -1):
            h, S = t[k + 1] - t[k], (self.v0 + t[k]) * self.L
            a[k] = (np.eye(d) + h * self.A).T @ a[k + 1]
            b[k] = b[k + 1] + h * a[k + 1] @ self.c + 0.5 * h * a[k + 1] @ S @ S.T @ a[k + 1]
        return a, b

    def log_z(self):
        a, b = self.h_function()
        return float(a[0] @ self.m0 + b[0] + 0.5 * a[0] @ self.P0 @ a[0])

    def path_model(self, optimal=True, guidance_lag=0, potential_lead=0, cls=smcflow.PathModel):
        a, b = (jnp.asarray(v) for v in self.h_function())
        # arrays converted here, not inside the traced functions: JAX 0.10 reuses a captured NumPy
        # constant's float32 conversion when the same array is traced again under jax.enable_x64
        A, c, m0, L, lam = (jnp.asarray(v) for v in (self.A, self.c, self.m0, self.L, self.lam))
        chol0 = jnp.asarray(np.linalg.cholesky(self.P0))
        P0 = jnp.asarray(self.P0)
        K = self.K
        index = lambda tk: jnp.round(tk * K).astype(jnp.int32)  # noqa: E731

        def sample_initial(key, n):
            return m0 + jax.random.normal(key, (n, 2)) @ chol0.T

        def initial_proposal(key, n):
            q_mean = m0 + P0 @ a[0]
            x = q_mean + jax.random.normal(key, (n, 2)) @ chol0.T
            p0 = dist.MultivariateNormal(m0, scale_tril=chol0)
            q0 = dist.MultivariateNormal(q_mean, scale_tril=chol0)
            return x, p0.log_prob(x) - q0.log_prob(x)

        def log_h(x, tk):
            k = jnp.minimum(index(tk) + potential_lead, K)
            return x @ a[k] + b[k]

        def guidance(x, tk):
            return jnp.broadcast_to(a[index(tk) + 1 - guidance_lag], x.shape)

        kind = self.kind
        scale = lambda tk: self.v0 + tk  # noqa: E731
        extra = {}
        if kind == "scalar":
            extra["noise"] = scale
        elif kind == "diagonal":
            extra["diffusion"] = lambda x, tk: jnp.broadcast_to(scale(tk) * jnp.diag(L), x.shape)
        else:
            extra["diffusion"] = lambda x, tk: jnp.broadcast_to(scale(tk) * L, (x.shape[0], 2, 2))
        return cls(
            times=jnp.asarray(self.times),
            sample_initial=sample_initial,
            drift=lambda x, tk: x @ A.T + c,
            guidance=guidance if optimal else None,
            potential=log_h if optimal else None,
            terminal_log_potential=lambda x: x @ lam,
            initial_proposal=initial_proposal if optimal else None,
            diffusion_kind=kind,
            **extra,
        )


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class FlippedGirsanov(smcflow.PathModel):
    """Negative control: the Girsanov term with the wrong sign."""

    def move(self, key, k, point):
        x_new, log_ratio = super().move(key, k, point)
        return x_new, -log_ratio


def _assert_zero_variance(res, log_z, tol):
    """Constant weights at the end and at every intermediate time (ESS = N: with no resampling the
    intermediate potentials cancel from the final weights, so only the ESS path sees them), and the
    exact log Z."""
    spread = float(jnp.max(res.log_weights) - jnp.min(res.log_weights))
    assert spread < tol, f"log-weights not constant: spread {spread}"
    deficit = 1.0 - np.asarray(res.ess, np.float64) / res.n_particles
    assert deficit.max() < tol, f"weights not constant at time {int(deficit.argmax())}: ESS deficit {deficit.max()}"
    np.testing.assert_allclose(float(res.log_evidence), log_z, rtol=tol, atol=tol)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("x64", [False, True])
def test_optimal_guidance_gives_zero_variance(kind, x64):
    """Guidance g_k = grad log h_{k+1}, potentials G_k = log h_k and the tilted initial draw make every
    log-weight identical and log Z_hat = log Z to rounding, for any N: signs and time indices exact."""
    chain = LinearChain(kind=kind)
    with jax.enable_x64(x64):
        res = smcflow.run(chain.path_model(), jax.random.key(0), 37, schedule="never")
        _assert_zero_variance(res, chain.log_z(), 1e-11 if x64 else 2e-5)
        assert float(res.ess[-1]) == pytest.approx(37, rel=1e-5)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("variant", ["girsanov sign flipped", "guidance one step late", "potential one step early"])
def test_zero_variance_check_catches_wrong_variants(kind, variant):
    chain = LinearChain(kind=kind)
    model = {
        "girsanov sign flipped": lambda: chain.path_model(cls=FlippedGirsanov),
        "guidance one step late": lambda: chain.path_model(guidance_lag=1),
        "potential one step early": lambda: chain.path_model(potential_lead=1),
    }[variant]()
    res = smcflow.run(model, jax.random.key(0), 37, schedule="never")
    with pytest.raises(AssertionError):
        _assert_zero_variance(res, chain.log_z(), 2e-5)


def test_unguided_linear_chain_is_unbiased():
    chain = LinearChain(kind="full")
    res = smcflow.run(chain.path_model(optimal=False), jax.random.key(1), 256, n_runs=300)
    assert_unbiased_evidence(res.log_evidence, chain.log_z(), "unguided linear chain")


def _zero_reward_model(kind, cls=smcflow.PathModel):
    extra = {"noise": lambda t: 1.0 + 0.0 * t} if kind == "scalar" else {"diffusion": lambda x, t: _sigma(kind, x)}
    return cls(
        times=jnp.linspace(0.0, 1.0, 21),
        sample_initial=lambda key, n: jax.random.normal(key, (n, 2)),
        drift=lambda x, t: -x,
        guidance=lambda x, t: jnp.sin(3.0 * x) + t,
        diffusion_kind=kind,
        **extra,
    )


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("schedule", [pytest.param("never", marks=pytest.mark.slow), "adaptive"])
def test_guidance_with_zero_reward_is_undone(kind, schedule):
    """With r = 0 any guidance is fully undone by the weights: E[Z_hat] = E[W] = 1, also for a
    state-dependent matrix diffusion."""
    res = smcflow.run(_zero_reward_model(kind), jax.random.key(2), 64, n_runs=400, schedule=schedule)
    assert_unbiased_evidence(res.log_evidence, 0.0, f"zero reward, {kind}, {schedule}")


@pytest.mark.parametrize("kind", ["scalar", "full"])
def test_undone_guidance_check_catches_a_sign_flip(kind):
    res = smcflow.run(_zero_reward_model(kind, FlippedGirsanov), jax.random.key(2), 64, n_runs=400, schedule="never")
    with pytest.raises(AssertionError):
        assert_unbiased_evidence(res.log_evidence, 0.0, "sign flipped")


def test_bad_configurations_are_refused():
    model = smcflow.PathModel(
        times=jnp.linspace(1.0, 0.0, 11),
        sample_initial=lambda key, n: jax.random.normal(key, (n, 1)),
        drift=lambda x, t: -x,
        noise=lambda t: jnp.where(t < 0.5, 0.0, 1.0),
    )
    with pytest.raises(ValueError, match="deterministic steps are refused"):
        smcflow.run(model, jax.random.key(0), 10)
    bad_grid = smcflow.PathModel(jnp.asarray([0.0, 0.5, 0.2]), model.sample_initial, model.drift, lambda t: 1.0)
    with pytest.raises(ValueError, match="strictly monotone"):
        smcflow.run(bad_grid, jax.random.key(0), 10)
    no_noise = smcflow.PathModel(model.times, model.sample_initial, model.drift)
    with pytest.raises(ValueError, match="needs noise"):
        smcflow.run(no_noise, jax.random.key(0), 10)
    no_sigma = smcflow.PathModel(model.times, model.sample_initial, model.drift, diffusion_kind="full")
    with pytest.raises(ValueError, match="needs diffusion"):
        smcflow.run(no_sigma, jax.random.key(0), 10)
    wrong_kind = smcflow.PathModel(model.times, model.sample_initial, model.drift, diffusion=lambda x, t: x,
                                   diffusion_kind="matrix")
    with pytest.raises(ValueError, match="diffusion_kind='matrix'"):
        smcflow.run(wrong_kind, jax.random.key(0), 10)


def test_minus_infinity_potential_kills_particles_without_failure():
    """A hard constraint (log of an indicator) removes particles; the others go on, no NaN, no failure."""
    model = smcflow.PathModel(
        times=jnp.linspace(0.0, 1.0, 11),
        sample_initial=lambda key, n: jax.random.normal(key, (n, 1)),
        drift=lambda x, t: 0.0 * x,
        noise=lambda t: 0.3 + 0.0 * t,
        potential=lambda x, t: jnp.where(x[:, 0] > -0.5, 0.0, -jnp.inf),
        terminal_log_potential=lambda x: jnp.where(x[:, 0] > -0.5, 0.0, -jnp.inf),
    )
    res = smcflow.run(model, jax.random.key(0), 500, schedule="never")
    assert int(res.failure) == 0
    live = np.isfinite(np.asarray(res.log_weights))
    assert 0 < live.sum() < 500 and np.all(np.asarray(res.particles.x)[live, 0] > -0.5)
    assert np.isfinite(float(res.log_evidence))


# -- the 1-D bimodal mixture of DESIGN.md section 4 ---------------------------------------------------
# The sampler (exact OU score of 0.5 N(-2, 0.25) + 0.5 N(2, 0.25)) comes from the smcflow-diffusion plugin;
# here it drives the generic PathModel, independently of smcflow.scale.

MIX_W, MIX_M, MIX_V = np.array([0.5, 0.5]), np.array([-2.0, 2.0]), 0.25
BETA, N_GRID = 0.35, 200
MIXTURE = mixture_diffusion(MIX_W, MIX_M, [MIX_V, MIX_V], schedule="ou", n_steps=N_GRID)


def _potential(x, s):
    return BETA * MIXTURE.denoise(x, s)[:, 0]


GUIDANCE = {
    "none": None,
    "reward_gradient_at_denoised": lambda x, s: jax.grad(lambda y: jnp.sum(_potential(y, s)))(x),
    "arbitrary": lambda x, s: jnp.sin(3.0 * x),
}


@pytest.mark.parametrize("guidance", sorted(GUIDANCE))
def test_tilted_bimodal_mixture_is_recovered(guidance):
    exact = tilt_gaussian_mixture(MIX_W, MIX_M, [MIX_V, MIX_V], b=[BETA])
    np.testing.assert_allclose(exact.weights, [0.19782, 0.80218], atol=1e-5)
    np.testing.assert_allclose([exact.log_normaliser, exact.mean[0]], [0.242583, 1.296236], atol=1e-6)
    model = smcflow.PathModel(
        times=MIXTURE.times,
        sample_initial=MIXTURE.init,
        drift=MIXTURE.drift,
        noise=MIXTURE.noise,
        guidance=GUIDANCE[guidance],
        potential=_potential,
        terminal_log_potential=lambda x: BETA * x[:, 0],
    )
    res = smcflow.run(model, jax.random.key(4), 1000, n_runs=40)
    x = res.particles.x[..., 0]
    w = jnp.exp(res.log_weights)
    assert_mean_close(jnp.sum(w * (x > 0), axis=-1), exact.weights[1], f"{guidance}: weight of the right mode")
    assert_mean_close(jnp.sum(w * x, axis=-1), exact.mean[0], f"{guidance}: tilted mean")
    assert_unbiased_evidence(res.log_evidence, exact.log_normaliser, f"{guidance}: evidence")
