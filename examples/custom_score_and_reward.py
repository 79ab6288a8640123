"""Steer your own score model with your own reward through ``smcflow.scale``.

* The "score network" is a plain JAX function ``score(x, t)`` (here the exact score of a 2-D Gaussian
  mixture noised by the VP schedule, written by hand, so the answer can be checked; a trained network
  plugs in the same way).
* The reward is a plain Python object with ``__call__`` (``(n, 2) -> (n,)``) and ``differentiable``.

The target is ``q(x) ∝ p(x) exp(beta r(x))`` with ``r(x) = -|x - c|^2 / 2``: for a Gaussian mixture ``p``
it is again a Gaussian mixture, known in closed form, and printed next to the estimates.

Run: .venv/bin/python examples/custom_score_and_reward.py
"""
import jax
import jax.numpy as jnp
import numpy as np

import smcflow
from smcflow.exact import tilt_gaussian_mixture

# -- the data law and "your" score model ------------------------------------------------------------
WEIGHTS = jnp.array([0.7, 0.3])
MEANS = jnp.array([[-1.5, 0.0], [1.5, 1.0]])
VAR = 0.2  # each component is N(mean, VAR * I)
BETA_MIN, BETA_MAX = 0.1, 20.0  # the "vp" noising schedule the model was trained with


def my_score(x, t):
    """``grad_x log p_t(x)`` for ``x`` of shape (n, 2) at diffusion time ``t`` (a scalar)."""
    log_alpha = -0.5 * (BETA_MIN * t + 0.5 * (BETA_MAX - BETA_MIN) * t**2)
    alpha = jnp.exp(log_alpha)
    var_t = alpha**2 * VAR + (1.0 - alpha**2)  # x_t = alpha x_0 + sigma eps
    diff = alpha * MEANS[None] - x[:, None, :]  # (n, K, 2)
    resp = jax.nn.softmax(jnp.log(WEIGHTS) - 0.5 * jnp.sum(diff**2, -1) / var_t, axis=-1)
    return jnp.sum(resp[..., None] * diff, axis=1) / var_t


# -- "your" reward ----------------------------------------------------------------------------------
class CloseTo:
    """``r(x) = -|x - c|^2 / 2``: any object with ``__call__`` and ``differentiable`` is a reward."""

    differentiable = True  # jax.grad may be taken through it (gradient guidance)
    name = "close_to"  # optional: used in error messages

    def __init__(self, c):
        self.c = jnp.asarray(c)

    def __call__(self, x):
        return -0.5 * jnp.sum((x - self.c) ** 2, axis=-1)


C, BETA = np.array([1.0, 2.0]), 1.0

# smcflow_diffusion's ``score`` sampler: reverse-time VP SDE from t = 1 to t_min = 1e-3 with 100
# Euler-Maruyama steps, then one Tweedie denoising step (final_denoise=True).
sampler = smcflow.plugins.get("sampler", "score", score=my_score, event_shape=(2,), schedule="vp", n_steps=100)
reward = CloseTo(C)

res = smcflow.scale(sampler, reward, jax.random.key(0), n_particles=512, method="urge", beta=BETA,
                    n_runs=4, guidance="reward_grad", guidance_clip=10.0)

# -- compare with the closed form ---------------------------------------------------------------------
# r(x) = -x'x/2 + c'x - c'c/2: a quadratic tilt with A = beta I, b = beta c, plus a constant in log Z.
exact = tilt_gaussian_mixture(np.asarray(WEIGHTS), np.asarray(MEANS), [VAR * np.eye(2)] * 2,
                              A=BETA * np.eye(2), b=BETA * C)
exact_log_z = exact.log_normaliser - BETA * float(C @ C) / 2

x, w = np.asarray(res.particles), np.asarray(res.weights)  # (runs, N, 2), (runs, N)
means = np.einsum("rn,rnd->rd", w, x)
nearest = np.argmin(((x[..., None, :] - exact.means) ** 2).sum(-1), -1)  # nearest tilted component
upper = np.sum(w * (nearest == 1), -1)

print(f"sampler {sampler.name!r}, reward {reward.name!r}, method {res.method!r} (exact={res.exact}), "
      f"NFE per run {res.nfe}, reward calls per run {res.reward_evaluations}")
print(f"tilted mean     : estimate {np.round(means.mean(0), 3)} (runs sd {np.round(means.std(0), 3)}), "
      f"exact {np.round(exact.mean, 3)}")
print(f"weight of comp 2: estimate {upper.mean():.3f} (runs sd {upper.std():.3f}), exact {exact.weights[1]:.3f}")
print(f"log Z           : estimate {float(np.mean(res.log_evidence)):.3f}, exact {exact_log_z:.3f}")
print(f"final ESS       : {np.round(np.asarray(res.ess)[:, -1], 1)} of {x.shape[1]}")
print(f"equally weighted samples for the user: {res.samples.shape}")

# Loose check (Monte Carlo + 100-step discretisation error are far smaller than this).
assert np.linalg.norm(means.mean(0) - exact.mean) < 0.15, "tilted mean is off"
assert abs(upper.mean() - exact.weights[1]) < 0.1, "tilted component weight is off"
