"""Run by tests/test_sharding.py as two processes on loopback (``jax.distributed`` with CPU collectives,
2 forced host devices each): the global and island runs of tests/sharded_runs.py over the 4 devices of
both processes, gathered and printed as JSON by process 0.

Usage: python tests/multihost_runs.py PROCESS_ID PORT
"""
from __future__ import annotations

import json
import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"

import jax  # noqa: E402

jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(coordinator_address=f"localhost:{sys.argv[2]}", num_processes=2,
                           process_id=int(sys.argv[1]))

import numpy as np  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402
from jax.sharding import Mesh  # noqa: E402

import smcflow  # noqa: E402
from sharded_runs import N_PARTICLES, N_RUNS, N_TIMES  # noqa: E402


def main() -> None:
    mesh = Mesh(np.array(jax.devices()), ("particles",))
    model = smcflow.plugins.get("model", "linear_gaussian", rho=0.9, sigma_x=1.0, sigma_y=0.5)
    _, ys = model.simulate(jax.random.key(0), N_TIMES)
    filt = smcflow.bootstrap_filter(model.ssm, ys)
    runs = {"global": smcflow.run(filt, jax.random.key(1), N_PARTICLES, n_runs=N_RUNS, mesh=mesh),
            "island": smcflow.run(filt, jax.random.key(2), N_PARTICLES, n_runs=N_RUNS, mesh=mesh, scope="island")}
    out = {k: np.asarray(multihost_utils.process_allgather(r.log_evidence, tiled=True), np.float64).tolist()
           for k, r in runs.items()}
    if jax.process_index() == 0:
        print(json.dumps({"devices": len(jax.devices()), "processes": jax.process_count(), "log_evidence": out}))


if __name__ == "__main__":
    main()
