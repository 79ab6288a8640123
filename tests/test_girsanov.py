"""Girsanov path weights: exact algebra, zero-variance optimal guidance, undone guidance, tilted mixture."""
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from mc import assert_mean_close, assert_unbiased_evidence

import smcflow
from smcflow.exact import tilt_gaussian_mixture
from smcflow_diffusion import mixture_diffusion


def test_increment_is_the_gaussian_density_ratio():
    kx, kv, kg, kxi = jax.random.split(jax.random.key(0), 4)
    x, v, g, xi = (jax.random.normal(k, (7, 3)) for k in (kx, kv, kg, kxi))
    h, V = 0.03, 1.7
    x_new = x + h * (v + V**2 * g) + V * jnp.sqrt(h) * xi
    ref = dist.Normal(x + h * v, V * jnp.sqrt(h)).to_event(1).log_prob(x_new)
    prop = dist.Normal(x + h * (v + V**2 * g), V * jnp.sqrt(h)).to_event(1).log_prob(x_new)
    np.testing.assert_allclose(smcflow.girsanov_log_weight(g, xi, V, h), ref - prop, rtol=2e-4, atol=2e-4)


# -- linear-Gaussian chain with the exact h-function -----------------------------------------------


@dataclass(frozen=True)
class LinearChain:
    """x_{k+1} = x_k + h (a x_k + c) + V_k sqrt(h) xi with V_k = v0 + t_k; x_0 ~ N(m0, s0^2); reward lam*x."""

    K: int = 20
    a: float = -0.5
    c: float = 0.3
    v0: float = 0.5
    m0: float = 0.2
    s0: float = 0.7
    lam: float = 0.8

    @property
    def times(self):
        return np.linspace(0.0, 1.0, self.K + 1)

    def h_function(self):
        """log h_k(x) = lam (A_k x + B_k) + lam^2 S_k / 2 for h_k(x) = E[exp(lam x_K) | x_k = x]."""
        t = self.times
        A, B, S = np.ones(self.K + 1), np.zeros(self.K + 1), np.zeros(self.K + 1)
        for k in range(self.K - 1, -1, -1):
            h, V = t[k + 1] - t[k], self.v0 + t[k]
            A[k] = A[k + 1] * (1 + h * self.a)
            B[k] = A[k + 1] * h * self.c + B[k + 1]
            S[k] = A[k + 1] ** 2 * h * V**2 + S[k + 1]
        return A, B, S

    def log_z(self):
        A, B, S = self.h_function()
        return self.lam * (A[0] * self.m0 + B[0]) + 0.5 * self.lam**2 * (A[0] ** 2 * self.s0**2 + S[0])

    def path_model(self, optimal: bool):
        A, B, S = (jnp.asarray(a) for a in self.h_function())
        t = jnp.asarray(self.times)
        h = 1.0 / self.K
        lam, m0, s0 = self.lam, self.m0, self.s0
        index = lambda tk: jnp.round(tk / h).astype(jnp.int32)  # noqa: E731
        log_h = lambda x, tk: lam * (A[index(tk)] * x[:, 0] + B[index(tk)]) + 0.5 * lam**2 * S[index(tk)]  # noqa: E731

        def initial_proposal(key, n):
            q_mean = m0 + s0**2 * lam * A[0]
            x = q_mean + s0 * jax.random.normal(key, (n, 1))
            log_ratio = dist.Normal(m0, s0).log_prob(x[:, 0]) - dist.Normal(q_mean, s0).log_prob(x[:, 0])
            return x, log_ratio

        return smcflow.PathModel(
            times=t,
            sample_initial=lambda key, n: m0 + s0 * jax.random.normal(key, (n, 1)),
            drift=lambda x, tk: self.a * x + self.c,
            noise=lambda tk: self.v0 + tk,
            guidance=(lambda x, tk: jnp.broadcast_to(lam * A[index(tk) + 1], x.shape)) if optimal else None,
            potential=log_h if optimal else None,
            terminal_log_potential=lambda x: lam * x[:, 0],
            initial_proposal=initial_proposal if optimal else None,
        )


@pytest.mark.parametrize("x64", [False, True])
def test_optimal_guidance_gives_zero_variance(x64):
    chain = LinearChain()
    with jax.enable_x64(x64):
        res = smcflow.run(chain.path_model(optimal=True), jax.random.key(0), 37, schedule="never")
        rtol = 1e-12 if x64 else 2e-5
        spread = float(jnp.max(res.log_weights) - jnp.min(res.log_weights))
        assert spread < (1e-12 if x64 else 1e-5), f"log-weights not constant: spread {spread}"
        np.testing.assert_allclose(float(res.log_evidence), chain.log_z(), rtol=rtol, atol=rtol)
        assert float(res.ess[-1]) == pytest.approx(37, rel=1e-5)


def test_unguided_linear_chain_is_unbiased():
    chain = LinearChain()
    res = smcflow.run(chain.path_model(optimal=False), jax.random.key(1), 256, n_runs=300)
    assert_unbiased_evidence(res.log_evidence, chain.log_z(), "unguided linear chain")


@pytest.mark.parametrize("schedule", ["never", "adaptive"])
def test_guidance_with_zero_reward_is_undone(schedule):
    """With r = 0 any guidance is fully undone by the weights: E[Z_hat] = E[W] = 1."""
    model = smcflow.PathModel(
        times=jnp.linspace(0.0, 1.0, 21),
        sample_initial=lambda key, n: jax.random.normal(key, (n, 2)),
        drift=lambda x, t: -x,
        noise=lambda t: 1.0 + 0.0 * t,
        guidance=lambda x, t: jnp.sin(3.0 * x) + t,
    )
    res = smcflow.run(model, jax.random.key(2), 64, n_runs=400, schedule=schedule)
    assert_unbiased_evidence(res.log_evidence, 0.0, f"zero reward, {schedule}")


def test_deterministic_steps_are_refused():
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
    right_mode = jnp.sum(w * (x > 0), axis=-1)
    mean = jnp.sum(w * x, axis=-1)
    assert_mean_close(right_mode, exact.weights[1], f"{guidance}: weight of the right mode")
    assert_mean_close(mean, exact.mean[0], f"{guidance}: tilted mean")
    assert_unbiased_evidence(res.log_evidence, exact.log_normaliser, f"{guidance}: evidence")
