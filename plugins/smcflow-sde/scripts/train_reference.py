#!/usr/bin/env python
"""Train the neural estimator on the 2-D reference problem and save its weights (no pickle).

Makes ``smcflow_sde/weights/correlated_2d.npz``, used by ``tests/test_sde_estimators.py`` (which
checks its relative L2 errors against stated levels without training) and by the example. The data are
those of the test: ``CorrelatedDiffusion2D().simulate(jax.random.key(0), 100, 2000, dt=0.01)``
(2e5 increments); the estimator is ``NeuralLeastSquares()`` with its defaults (seed 0). About 15 s on
2 CPU cores.

    python plugins/smcflow-sde/scripts/train_reference.py
"""
from __future__ import annotations

import time
from pathlib import Path

import jax
import numpy as np

from smcflow_sde import CorrelatedDiffusion2D, NeuralLeastSquares
from smcflow_sde.reference import relative_l2

OUT = Path(__file__).resolve().parents[1] / "smcflow_sde" / "weights" / "correlated_2d.npz"


def main() -> None:
    problem = CorrelatedDiffusion2D()
    paths = np.asarray(problem.simulate(jax.random.key(0), 100, 2000, 0.01))
    test_points = np.asarray(problem.simulate(jax.random.key(1), 20, 200, 0.01))[:, ::10].reshape(-1, 2)
    start = time.perf_counter()
    sde, report = NeuralLeastSquares().fit_with_report(paths, 0.01)
    elapsed = time.perf_counter() - start
    drift_err, diffusion_err = relative_l2(sde, problem.sde, test_points)
    sde.save(OUT)
    print(f"trained in {elapsed:.1f} s: drift steps {report.drift_steps}, diffusion steps {report.diffusion_steps}")
    print(f"relative L2 errors: drift {drift_err:.4f}, diffusion {diffusion_err:.4f}; saved {OUT}")


if __name__ == "__main__":
    main()
