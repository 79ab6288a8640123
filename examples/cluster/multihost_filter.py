"""A bootstrap filter over every GPU of a multi-host job (one process per host), global resampling.

Launched by ``submit.slurm`` (``srun`` starts one copy per node); ``jax.distributed.initialize()`` reads
the SLURM environment, so the same script runs unchanged on any number of nodes. Each process prints
only from process 0. For a quick test without a cluster, two processes on one machine::

    python multihost_filter.py --local 0 12355 & python multihost_filter.py --local 1 12355
"""
from __future__ import annotations

import argparse

import jax


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--local", nargs=2, metavar=("PROCESS_ID", "PORT"), help="two CPU processes on localhost")
    p.add_argument("--particles-per-device", type=int, default=1 << 20)
    args = p.parse_args()
    if args.local:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address=f"localhost:{args.local[1]}", num_processes=2,
                                   process_id=int(args.local[0]))
    else:
        jax.distributed.initialize()  # SLURM (or another cluster environment) tells JAX who is who

    import numpy as np
    from jax.experimental import multihost_utils
    from jax.sharding import Mesh

    import smcflow

    mesh = Mesh(np.array(jax.devices()), ("particles",))
    model = smcflow.plugins.get("model", "linear_gaussian", rho=0.9, sigma_x=1.0, sigma_y=0.5)
    _, ys = model.simulate(jax.random.key(0), 100)  # the same key in every process: the same data
    n = args.particles_per_device * len(jax.devices())
    res = smcflow.run(smcflow.bootstrap_filter(model.ssm, ys), jax.random.key(1), n, mesh=mesh, scope="global")
    log_z = float(multihost_utils.process_allgather(res.log_evidence, tiled=True))
    if jax.process_index() == 0:
        print(f"{jax.process_count()} processes, {len(jax.devices())} devices, N = {n}: "
              f"log Z_hat = {log_z:.3f} (Kalman {model.log_likelihood(ys):.3f})")


if __name__ == "__main__":
    main()
