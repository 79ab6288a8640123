"""Run by tests/test_sharding.py in a fresh process with 4 forced host devices (XLA reads the device
count once, at start-up): SMC runs sharded over a 4-device mesh, printed as JSON on stdout.

Usage: XLA_FLAGS=--xla_force_host_platform_device_count=4 python tests/sharded_runs.py [--scale]
"""
from __future__ import annotations

import json
import sys

import jax
import numpy as np
from jax.sharding import Mesh

import smcflow

N_TIMES, N_PARTICLES, N_RUNS = 30, 128, 64


def main() -> None:
    assert len(jax.devices()) == 4, jax.devices()
    mesh = Mesh(np.array(jax.devices()), ("particles",))
    model = smcflow.plugins.get("model", "linear_gaussian", rho=0.9, sigma_x=1.0, sigma_y=0.5)
    _, ys = model.simulate(jax.random.key(0), N_TIMES)
    filt = smcflow.bootstrap_filter(model.ssm, ys)
    key = jax.random.key(1)
    runs = {
        "single": smcflow.run(filt, key, N_PARTICLES, n_runs=N_RUNS),
        "global": smcflow.run(filt, key, N_PARTICLES, n_runs=N_RUNS, mesh=mesh),
        "global_again": smcflow.run(filt, key, N_PARTICLES, n_runs=N_RUNS, mesh=mesh),
        "island": smcflow.run(filt, jax.random.key(2), N_PARTICLES, n_runs=N_RUNS, mesh=mesh, scope="island"),
        "island_again": smcflow.run(filt, jax.random.key(2), N_PARTICLES, n_runs=N_RUNS, mesh=mesh, scope="island"),
    }
    scale = "--scale" in sys.argv
    if scale:
        from smcflow_diffusion import mixture_diffusion
        from smcflow_rewards import linear

        def steer(**kwargs):
            return smcflow.scale(mixture_diffusion(n_steps=20), linear([1.0]), jax.random.key(3), n_particles=64,
                                 method="fk", beta=0.35, n_runs=8, **kwargs)

        steered = {"global": steer(mesh=mesh), "island": steer(mesh=mesh, scope="island"), "plain": steer()}
    errors = {}
    for label, kwargs in {"not_divisible": dict(mesh=mesh), "unknown_axis": dict(mesh=mesh, mesh_axis="devices"),
                          "unknown_scope": dict(mesh=mesh, scope="local")}.items():
        try:
            smcflow.run(filt, key, 130 if label == "not_divisible" else N_PARTICLES, **kwargs)
            errors[label] = ""
        except (ValueError, TypeError) as exc:
            errors[label] = str(exc)
    out = {
        "exact": float(model.log_likelihood(ys)),
        "log_evidence": {k: np.asarray(r.log_evidence, np.float64).tolist() for k, r in runs.items()},
        "particles_sharded": "particles" in str(runs["global"].particles.sharding),
        "island_weights_normalised": float(np.max(np.abs(jax.scipy.special.logsumexp(runs["island"].log_weights,
                                                                                       axis=-1)))),
        "errors": errors,
        "scale_log_evidence": ({k: np.asarray(r.log_evidence, np.float64).tolist() for k, r in steered.items()}
                               if scale else None),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
