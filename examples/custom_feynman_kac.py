"""Write a Feynman-Kac model by hand and trace the genealogy of its particles.

A particle is a 2-D random walk; the potential favours staying near the unit circle. The model is a
plain class with ``n_steps``, ``init`` and ``step``: no registration needed.

Run: .venv/bin/python examples/custom_feynman_kac.py
"""
import jax
import jax.numpy as jnp
import numpy as np

import smcflow


class RingWalk:
    n_steps = 50

    def init(self, key, n):
        return jax.random.normal(key, (n, 2)), jnp.zeros(n)

    def step(self, key, t, x):
        x = x + 0.2 * jax.random.normal(key, x.shape)
        radius = jnp.linalg.norm(x, axis=1)
        return x, -8.0 * (radius - 1.0) ** 2


res = smcflow.run(RingWalk(), jax.random.key(0), 2_000, keep_ancestors=True, keep_history=True)
paths = res.paths()  # (n_steps + 1, N, 2): the surviving trajectories
print(f"log Z estimate            : {float(res.log_evidence):.3f}")
print(f"paths shape               : {paths.shape}")
print(f"distinct time-0 ancestors : {len(np.unique(np.asarray(paths[0]), axis=0))} of {res.n_particles}")
print(f"final mean radius         : {float(jnp.sum(jnp.exp(res.log_weights) * jnp.linalg.norm(res.particles, axis=1))):.3f}")
