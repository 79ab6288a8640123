"""Monte Carlo assertions shared by the tests: tolerances come from the sampling error, not guesses.

**The statistic.** Each helper compares a mean over ``n`` independent runs with its expected value,
using the standard error estimated from the same runs, ``se = s / sqrt(n)`` (``s`` the sample
standard deviation, ``ddof=1``). Because ``se`` is itself estimated, ``t = (mean - expected) / se`` is
Student-t with ``n - 1`` degrees of freedom under the null (independent, Gaussian runs; approximately
so for other laws by the CLT), not Gaussian. A fixed allowance of 4.5 standard errors, as these
helpers used before, gives the false-alarm rates ``P(|t| > 4.5)``:

    n = 8: 2.8e-3,   n = 32: 9.0e-5,   n = 200: 1.2e-5,   n -> infinity (Gaussian): 6.8e-6

so the Gaussian figure of 7e-6 held only for very many runs.

**The rate.** Every assertion (one call of a helper) now has a stated false-alarm probability
``alpha`` under the null, by default :data:`ALPHA` ``= 1e-5``, whatever ``n`` is and however many
entries it checks. An entry passes when ``|mean - expected| <= c * se + floor`` with

    c = t_{n-1}.ppf(1 - alpha / (2 m)),      m = number of entries checked in that call,

the two-sided Student-t quantile with a **Bonferroni** correction over the ``m`` simultaneous checks:
a vector of 30 filtering means is 30 checks, each at ``alpha / 30``, so that the probability that any
of them fails is at most ``alpha`` whatever their correlation. Some values of ``c`` (``alpha = 1e-5``):

    n        8      16     32     50     200    400    infinity
    m = 1    11.21  6.50   5.27   4.93   4.53   4.47   4.42
    m = 30   18.51  8.63   6.46   5.90   5.28   5.19   5.10

A test function making ``k`` assertions has a false-alarm probability at most ``k * alpha``; the
suite, with about a hundred such assertions, at most about ``1e-3`` per run of all tests.

**Power.** The price of a stated rate with few runs is power: a true bias of 6 standard errors is
caught with probability about 0.05 at ``n = 8``, 0.74 at ``n = 32`` and 0.92 at ``n = 200`` (noncentral
t). Tests that must detect a few-standard-error bias need ``n >= 32`` runs.

``floor`` is an absolute allowance for quantities known only to a stated precision (e.g. float32
rounding); it is never used to absorb Monte Carlo error. ``tests/test_inputs.py`` checks the rates by
simulation (false alarms under the null, and a deliberately wrong answer being caught).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import stats

#: false-alarm probability of one assertion under the null (all its entries together)
ALPHA = 1e-5


def allowed_deviation(n_runs: int, n_checks: int = 1, alpha: float = ALPHA) -> float:
    """Allowed ``|mean - expected| / se``: ``P(max over n_checks of |t_{n_runs-1}| > c) <= alpha``.

    The two-sided Student-t quantile at ``alpha / n_checks`` (Bonferroni).
    """
    if int(n_runs) < 2:
        raise ValueError(f"a standard error needs at least 2 independent runs, got {n_runs}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    return float(stats.t.ppf(1.0 - alpha / (2.0 * max(int(n_checks), 1)), df=int(n_runs) - 1))


class MeanCheck(NamedTuple):
    """Outcome of :func:`mean_check`: ``passed`` has the batch shape; the rest are per entry."""

    passed: np.ndarray
    mean: np.ndarray
    se: np.ndarray
    error: np.ndarray
    allowed: float  # c, in standard errors
    n_runs: int
    n_checks: int


def mean_check(samples, expected, alpha: float = ALPHA, floor: float = 0.0, batch_axes: int = 0) -> MeanCheck:
    """The test of :func:`assert_mean_close`, vectorised over independent experiments.

    ``samples`` has shape ``(*batch, n_runs, *entries)``: the first ``batch_axes`` axes index
    independent experiments (the self-tests use this), the next one the runs, the rest the entries
    checked together (Bonferroni over all of them). ``expected`` broadcasts against ``entries``.
    """
    samples = np.asarray(samples, dtype=np.float64)
    if samples.ndim <= batch_axes:
        raise ValueError(f"samples of shape {samples.shape} have no runs axis after {batch_axes} batch axes")
    n_runs = samples.shape[batch_axes]
    mean = samples.mean(axis=batch_axes)
    se = samples.std(axis=batch_axes, ddof=1) / np.sqrt(n_runs)
    error = np.abs(mean - np.asarray(expected, dtype=np.float64))
    entry_axes = tuple(range(batch_axes, error.ndim))
    n_checks = int(np.prod([error.shape[a] for a in entry_axes], dtype=np.int64))
    allowed = allowed_deviation(n_runs, n_checks, alpha)
    ok = error <= allowed * se + floor  # NaN fails
    return MeanCheck(np.all(ok, axis=entry_axes), mean, se, error, allowed, n_runs, n_checks)


def assert_mean_close(samples, expected, what: str, alpha: float = ALPHA, floor: float = 0.0) -> None:
    """``mean(samples, axis=0)`` within ``c`` standard errors (plus ``floor``) of ``expected``, per entry.

    ``samples`` has the runs on axis 0 and any entries on the remaining axes; ``c`` is the Student-t
    quantile of the module docstring for false-alarm probability ``alpha`` for the whole call.
    """
    check = mean_check(samples, expected, alpha=alpha, floor=floor)
    if not check.passed:
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.max(np.nan_to_num(check.error / check.se, nan=np.inf))
        raise AssertionError(
            f"{what}: mean {check.mean} vs expected {expected} (error {check.error}, standard error "
            f"{check.se}); largest |t| = {t:.2f} > allowed {check.allowed:.2f} (Student-t, {check.n_runs - 1} "
            f"dof, alpha = {alpha:g} over {check.n_checks} check(s)), floor {floor:g}"
        )


def assert_unbiased_evidence(log_z_hat, log_z: float, what: str, alpha: float = ALPHA) -> None:
    """``E[Z_hat / Z] = 1`` over independent runs; needs ``Var(log Z_hat) <~ 1`` to be meaningful.

    One check (a t-test on the ratios). The ratios are right-skewed, so the Student-t rate is
    approximate; the variance cap keeps their law close enough to Gaussian for ``n >= 30`` or so.
    """
    log_z_hat = np.asarray(log_z_hat, dtype=np.float64)
    var = log_z_hat.var()
    assert var < 1.5, f"{what}: Var(log Z_hat) = {var:.2f} is too large for a ratio test; use more particles"
    assert_mean_close(np.exp(log_z_hat - log_z), 1.0, f"{what}: Z_hat / Z", alpha=alpha)


def assert_log_evidence_consistent(log_z_hat, log_z: float, what: str, alpha: float = ALPHA) -> None:
    """``E[log Z_hat] = log Z - Var(log Z_hat) / 2`` (the log-normal limit of the CLT for SMC).

    The relation holds up to the third cumulant of ``log Z_hat``; the allowance ``Var^{3/2}/2`` bounds
    that term for the near-Gaussian regime ``Var <~ 1`` in which the test is run. The tested estimate
    ``mean + s^2 / 2`` carries the error of both terms: for Gaussian runs they are independent and
    ``Var(s^2 / 2) = s^4 / (2 (n - 1))``, so its standard error is ``sqrt(s^2 / n + s^4 / (2 (n - 1)))``,
    compared with the Student-t quantile for one check at ``alpha``.
    """
    log_z_hat = np.asarray(log_z_hat, dtype=np.float64)
    n = log_z_hat.shape[0]
    var = log_z_hat.var(ddof=1)
    assert var < 1.5, f"{what}: Var(log Z_hat) = {var:.2f} too large"
    estimate = log_z_hat.mean() + var / 2
    se = np.sqrt(var / n + var**2 / (2 * (n - 1)))
    allowed = allowed_deviation(n, 1, alpha)
    error = abs(estimate - log_z)
    floor = 0.5 * var**1.5
    assert error <= allowed * se + floor, (
        f"{what}: mean log Z_hat + Var/2 = {estimate:.4f} vs log Z = {log_z:.4f} (error {error:.4f}, "
        f"standard error {se:.4f}, allowed {allowed:.2f} standard errors (Student-t, {n - 1} dof, "
        f"alpha = {alpha:g}) + third-cumulant floor {floor:.4f})"
    )
