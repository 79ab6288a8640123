"""Bootstrap particle filter on a linear-Gaussian model, checked against the Kalman filter.

Run: .venv/bin/python examples/linear_gaussian_filter.py
"""
import jax
import numpy as np

import smcflow

model = smcflow.plugins.get("model", "linear_gaussian", rho=0.9, sigma_x=1.0, sigma_y=0.5)
xs, ys = model.simulate(jax.random.key(0), 100)

res = smcflow.run(smcflow.bootstrap_filter(model.ssm, ys), jax.random.key(1), 2_000, n_runs=10, resampler="ssp")
log_z = np.asarray(res.log_evidence)
print(f"Kalman log p(y)     : {model.log_likelihood(ys):.3f}")
print(f"particle filter     : {log_z.mean():.3f} +- {log_z.std():.3f} over {len(log_z)} runs")
print(f"resampled at        : {np.asarray(res.resampled).mean():.0%} of times")

idata = res.to_inference_data()
print(idata.sample_stats["ess"].mean("chain").values[:5], "... (ESS per time, mean over runs)")
