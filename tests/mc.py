"""Monte Carlo assertions shared by the tests: tolerances come from the sampling error, not guesses."""
from __future__ import annotations

import numpy as np

#: number of standard errors allowed; P(|z| > 4.5) ~ 7e-6 for a Gaussian estimate
Z_MAX = 4.5


def assert_mean_close(samples, expected, what: str, z_max: float = Z_MAX, floor: float = 0.0) -> None:
    """``mean(samples)`` within ``z_max`` standard errors of ``expected`` (per entry of the last axes).

    ``floor`` is an absolute allowance for quantities known only to a stated precision (e.g. float32
    rounding); it is never used to absorb Monte Carlo error.
    """
    samples = np.asarray(samples, dtype=np.float64)
    mean = samples.mean(axis=0)
    se = samples.std(axis=0, ddof=1) / np.sqrt(samples.shape[0])
    err = np.abs(mean - np.asarray(expected, dtype=np.float64))
    ok = err <= z_max * se + floor
    assert np.all(ok), f"{what}: mean {mean} vs expected {expected} (error {err}, standard error {se})"


def assert_unbiased_evidence(log_z_hat, log_z: float, what: str) -> None:
    """``E[Z_hat / Z] = 1`` over independent runs; needs ``Var(log Z_hat) <~ 1`` to be meaningful."""
    log_z_hat = np.asarray(log_z_hat, dtype=np.float64)
    var = log_z_hat.var()
    assert var < 1.5, f"{what}: Var(log Z_hat) = {var:.2f} is too large for a ratio test; use more particles"
    assert_mean_close(np.exp(log_z_hat - log_z), 1.0, f"{what}: Z_hat / Z")


def assert_log_evidence_consistent(log_z_hat, log_z: float, what: str) -> None:
    """``E[log Z_hat] = log Z - Var(log Z_hat) / 2`` (the log-normal limit of the CLT for SMC).

    The relation holds up to the third cumulant of ``log Z_hat``; the allowance ``Var^{3/2}/2`` bounds
    that term for the near-Gaussian regime ``Var <~ 1`` in which the test is run.
    """
    log_z_hat = np.asarray(log_z_hat, dtype=np.float64)
    var = log_z_hat.var(ddof=1)
    assert var < 1.5, f"{what}: Var(log Z_hat) = {var:.2f} too large"
    assert_mean_close(log_z_hat, log_z - var / 2, f"{what}: log Z_hat", floor=0.5 * var**1.5)
