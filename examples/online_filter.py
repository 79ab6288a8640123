"""Online filtering: observations arrive one at a time and the filter steps as they come.

The model's observation buffer has a fixed length, so the jitted step compiles once and each new
observation is just new data in an array leaf. Stepping by hand gives bitwise the same result as
``smcflow.run`` over the whole series (checked at the end), and the log-likelihood agrees with the
Kalman filter.

Run: .venv/bin/python examples/online_filter.py
"""
import jax
import jax.numpy as jnp
import numpy as np

import smcflow

T, N = 50, 2_000
lg = smcflow.plugins.get("model", "linear_gaussian", rho=0.9, sigma_x=1.0, sigma_y=0.5)
_, ys = lg.simulate(jax.random.key(0), T)  # stands in for a sensor: ys[t] becomes known at time t

buffer = jnp.zeros_like(ys)  # observations known so far (the rest is never read before it is filled)
k_init, k_steps = jax.random.split(jax.random.key(1))

buffer = buffer.at[0].set(ys[0])
state = smcflow.init_state(smcflow.bootstrap_filter(lg.ssm, buffer), k_init, N)
print(f"t= 0  y={float(ys[0]):+.2f}  filtering mean {float(jnp.sum(jnp.exp(state.log_weights) * state.particles)):+.2f}")
for t in range(T - 1):
    buffer = buffer.at[t + 1].set(ys[t + 1])  # y_{t+1} arrives
    # compiled once: the model's array leaves (the buffer) are arguments, its functions static
    state, info = smcflow.step(smcflow.bootstrap_filter(lg.ssm, buffer), state, k_steps, t)
    if (t + 1) % 10 == 0:
        mean = float(jnp.sum(jnp.exp(state.log_weights) * state.particles))
        print(f"t={t + 1:2d}  y={float(ys[t + 1]):+.2f}  filtering mean {mean:+.2f}  ESS {float(info.ess):7.1f}"
              f"  resampled {bool(info.resampled)}")

batch = smcflow.run(smcflow.bootstrap_filter(lg.ssm, ys), jax.random.key(1), N)
assert np.array_equal(np.asarray(batch.particles), np.asarray(state.particles)), "online != batch"
assert float(batch.log_evidence) == float(state.log_evidence)
print(f"log p(y_0:{T - 1}): online {float(state.log_evidence):.4f} = batch {float(batch.log_evidence):.4f}, "
      f"Kalman {lg.log_likelihood(ys):.4f}")
