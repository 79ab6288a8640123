"""The adaptive-tempering rule (smcflow.tempering): the chosen exponent hits the conditional-ESS target,
ends at exactly 1 when it can, always makes progress, and replays frozen schedules."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from smcflow import tempering as T


def _cess(log_w, inc):
    """The conditional ESS fraction, in float64 NumPy: (sum W g)^2 / sum W g^2."""
    w, g = np.exp(np.asarray(log_w, np.float64)), np.exp(np.asarray(inc, np.float64))
    return (w * g).sum() ** 2 / (w * g * g).sum()


def _cases(n=400, batch=16):
    """A batch of weighted particle systems with affine increments (non-uniform weights, base != 0)."""
    k = jax.random.split(jax.random.key(0), 3)
    log_w = jax.nn.log_softmax(0.5 * jax.random.normal(k[0], (batch, n)), axis=-1)
    base = 0.3 * jax.random.normal(k[1], (batch, n))
    slope = 20.0 * jax.random.normal(k[2], (batch, n)) - 30.0
    lam_prev = jnp.linspace(0.0, 0.6, batch)
    return log_w, base, slope, lam_prev


def test_log_conditional_ess_is_the_formula():
    log_w, base, slope, _ = _cases()
    inc = T.increment(base[0], slope[0], 0.01, 0.0)
    np.testing.assert_allclose(np.exp(float(T.log_conditional_ess(log_w[0], inc))), _cess(log_w[0], inc), rtol=1e-4)
    uniform = jnp.full((400,), -np.log(400.0))
    ess_fraction = 1.0 / np.sum(np.exp(2 * np.asarray(jax.nn.log_softmax(inc), np.float64))) / 400
    np.testing.assert_allclose(np.exp(float(T.log_conditional_ess(uniform, inc))), ess_fraction, rtol=1e-4)


@pytest.mark.parametrize("target", [0.3, 0.5, 0.9])
def test_next_exponent_hits_the_target_inside_jit_and_vmap(target):
    log_w, base, slope, lam_prev = _cases()
    lam = jax.jit(jax.vmap(T.next_exponent, in_axes=(0, 0, 0, 0, None)))(log_w, base, slope, lam_prev, target)
    lam = np.asarray(lam)
    assert np.all(lam >= np.asarray(lam_prev)) and np.all(lam <= 1.0)
    hit = 0
    for i in range(lam.shape[0]):
        if _cess(log_w[i], base[i]) < target:  # the base alone is below the target: the smallest step
            assert lam[i] - lam_prev[i] < 1e-6, (i, lam[i])
        elif lam[i] < 1.0:
            hit += 1
            cess = _cess(log_w[i], T.increment(base[i], slope[i], lam[i], lam_prev[i]))
            assert abs(cess - target) < 1e-3, (i, lam[i], cess)
    assert hit >= 4  # the cases exercise the bisection


def test_exponent_is_exactly_one_when_reachable():
    log_w, base, slope, _ = _cases()
    lam = T.next_exponent(log_w[0], 0.0 * base[0], 1e-3 * slope[0], jnp.float32(0.2), 0.5)
    assert float(lam) == 1.0  # exact, not 1 - eps


def test_progress_when_some_increments_are_minus_inf():
    n = 100
    slope = jnp.where(jnp.arange(n) < n // 2, -jnp.inf, -1.0)  # half the particles have zero likelihood
    uniform = jnp.full((n,), -np.log(n))
    lam = float(T.next_exponent(uniform, jnp.zeros(n), slope, 0.0, 0.9))  # cess jumps to 0.5 < 0.9
    assert 0.0 < lam < 1e-6
    inc = T.increment(jnp.zeros(n), slope, 0.0, 0.0)  # no step: no change, even for -inf slopes
    assert np.all(np.asarray(inc) == 0.0)


def test_frozen_exponents_are_replayed():
    tempering = T.frozen([0.1, 0.5, 1.0])
    got = [float(T.exponent_at(tempering, t, jnp.zeros(3), jnp.zeros(3), jnp.ones(3), 0.0)) for t in range(3)]
    assert got == [np.float32(0.1), 0.5, 1.0]


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.2, 1.5, float("nan")])
def test_target_ess_outside_the_open_unit_interval_is_refused(bad):
    with pytest.raises(ValueError, match="target_ess"):
        T.adaptive(bad)
    with pytest.raises(TypeError, match="target_ess"):
        T.adaptive("half")


@pytest.mark.parametrize("bad, match", [([0.2, 0.9], "exactly 1"), ([0.5, 0.3, 1.0], "increase"),
                                        ([], "non-empty"), ([0.0, 1.0], "increase")])
def test_bad_frozen_schedules_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        T.frozen(bad)
