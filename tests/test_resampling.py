"""Resampling schemes: unbiased offspring counts, -inf weights never picked, float32 safety at 1e6."""
import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from mc import assert_mean_close

import smcflow
from smcflow import resampling
from smcflow.resampling import BUILTIN_RESAMPLERS, offspring_counts

SCHEMES = sorted(BUILTIN_RESAMPLERS)
#: schemes whose counts are floor or ceil of num * W_i
FLOOR_OR_CEIL = ["systematic", "ssp"]


def _weights(n=40, seed=0, n_dead=5, dtype=jnp.float32):
    rng = np.random.default_rng(seed)
    log_w = rng.normal(scale=2.0, size=n)
    log_w[rng.choice(n, n_dead, replace=False)] = -np.inf
    log_w = log_w - np.logaddexp.reduce(log_w)
    return jnp.asarray(log_w, dtype)


def _expected(log_w, num):
    """``num * W_i``, the weights normalised exactly (in float64) as the schemes do."""
    log_w = np.asarray(log_w, np.float64)
    return num * np.exp(log_w - np.logaddexp.reduce(log_w))


def _rounding_error(log_w):
    """Bound on the relative error of the library's float32 ``w_i = exp(lw_i - max)``: the subtraction,
    ``exp`` and the scaling, ``(|lw_i - max| + 6) 2^-24`` (an error in the sum ``S`` is common to all
    weights and cancels)."""
    log_w = np.asarray(log_w, np.float64)
    live = np.isfinite(log_w)
    return (np.where(live, np.abs(log_w - log_w[live].max()), 0.0) + 6.0) * 2.0**-24


def _mean_precision(log_w, num):
    """Largest ``|E[count_i] - num * W_i|`` that float32 fixed-point arithmetic can cause, per particle.

    The stochastic rounding is unbiased up to ``(1 + N W_i) 2^-60``; the mean count given the rounded
    integers is exact up to ``num 2^-32`` (random bits mapped to ``[0, T)``); the rest is the float32
    rounding of ``w_i``.
    """
    w = _expected(log_w, 1)
    return num * (w * _rounding_error(log_w) + 2.0**-32)


def _precision(log_w, num, alpha=1e-6):
    """Largest ``|num q_i / T - num * W_i|`` for one rounding ``q``, per particle (the floor/ceil bounds).

    ``q_i`` is within one quantum of ``x_i = w_i 2^B / S`` and the total ``T`` (at least ``2^29``)
    differs from ``sum x`` by the sum ``D`` of the rounding errors, ``|D| <= sqrt(N log(2/alpha) / 2)``
    except with probability ``alpha`` (Hoeffding: independent errors, each in an interval of length 1).
    """
    w = _expected(log_w, 1)
    quantum = 2.0**-29
    d_max = math.sqrt(w.size * math.log(2.0 / alpha) / 2.0)
    return num * (w * (_rounding_error(log_w) + d_max * quantum) + quantum)


def _counts(scheme, log_w, keys, num):
    resample = BUILTIN_RESAMPLERS[scheme]
    counts = jax.jit(jax.vmap(lambda k: offspring_counts(resample(k, log_w, num), log_w.shape[0])))(keys)
    return np.asarray(counts)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_offspring_counts_have_mean_n_w(scheme):
    log_w = _weights()
    n = log_w.shape[0]
    resample = smcflow.plugins.get("resampler", scheme)
    keys = jax.random.split(jax.random.key(1), 20000)
    counts = np.asarray(jax.jit(jax.vmap(lambda k: offspring_counts(resample(k, log_w, n), n)))(keys))
    assert (counts.sum(1) == n).all(), "every draw must return exactly N offspring"
    expected = _expected(log_w, n)
    assert (counts[:, np.isneginf(np.asarray(log_w))] == 0).all(), "a -inf weight was picked"
    # Student-t test per particle; the floor is the float32 / fixed-point precision of num * W_i
    assert_mean_close(counts, expected, f"{scheme} offspring counts", floor=float(_mean_precision(log_w, n).max()))


@pytest.mark.parametrize("scheme", FLOOR_OR_CEIL)
def test_counts_are_floor_or_ceil(scheme):
    log_w = _weights(seed=3)
    n = log_w.shape[0]
    counts = _counts(scheme, log_w, jax.random.split(jax.random.key(2), 500), n)
    expected = _expected(log_w, n)
    slack = _precision(log_w, n)
    assert (counts >= np.floor(expected - slack)).all() and (counts <= np.ceil(expected + slack)).all()


# --------------------------------------------------------------------------------------------------
# float32 at 10^6 particles: dead particles interleaved with tiny and large weights
# --------------------------------------------------------------------------------------------------

N_BIG = 10**6
N_KEYS = 8
LARGE = {17: 0.2, 500_000: 0.1, N_BIG - 1001: 0.05}  # index: weight (the last 1000 are dead)


def _hard_log_weights():
    """float32 log-weights of 10^6 particles, normalised in float32.

    Every third particle, another 5 % at random, the first 10 and the last 1000 are dead (-inf): dead
    particles sit between live ones everywhere, including right after the last live one. 10^4 live
    particles have tiny weights, 2^-38 to 2^-26 of the total (around the fixed-point quantum 2^-30 and
    far below float32's CDF spacing 2^-24); three have large weights (LARGE); the rest are log-normal.
    """
    rng = np.random.default_rng(4)
    idx = np.arange(N_BIG)
    dead = (idx % 3 == 1) | (rng.random(N_BIG) < 0.05) | (idx < 10) | (idx >= N_BIG - 1000)
    live = np.flatnonzero(~dead & ~np.isin(idx, list(LARGE)))
    tiny = rng.choice(live, 10_000, replace=False)
    normal = np.setdiff1d(live, tiny)
    w = np.zeros(N_BIG)
    w[tiny] = 2.0 ** rng.uniform(-38, -26, tiny.size)
    for i, wi in LARGE.items():
        w[i] = wi
    lognormal = np.exp(rng.normal(scale=3.0, size=normal.size))
    w[normal] = lognormal * (1.0 - w.sum()) / lognormal.sum()
    with np.errstate(divide="ignore"):
        log_w = jnp.asarray(np.log(w), jnp.float32)
    return log_w - jax.scipy.special.logsumexp(log_w), normal


@pytest.fixture(scope="module")
def hard_weights():
    return _hard_log_weights()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_float32_million_particles(scheme, hard_weights):
    """No dead particle is ever selected; counts have mean num * W_i (floor/ceil exact where they should)."""
    log_w, normal = hard_weights
    resample = BUILTIN_RESAMPLERS[scheme]
    many = jax.jit(lambda keys, log_w: jax.vmap(lambda k: resample(k, log_w, N_BIG))(keys))
    idx = np.asarray(many(jax.random.split(jax.random.key(5), N_KEYS), log_w))
    assert idx.dtype == np.int32 and idx.shape == (N_KEYS, N_BIG)
    assert idx.min() >= 0 and idx.max() < N_BIG
    lw = np.asarray(log_w, np.float64)
    picked_dead = np.isneginf(lw[idx])
    assert not picked_dead.any(), f"{picked_dead.sum()} draws of -inf weights, e.g. particle {idx[picked_dead][:5]}"
    counts = np.stack([np.bincount(row, minlength=N_BIG) for row in idx])
    expected = _expected(lw, N_BIG)
    slack = _precision(log_w, N_BIG)
    if scheme in FLOOR_OR_CEIL:  # exact to the float32 / fixed-point precision, particle by particle
        low, high = np.floor(expected - slack), np.ceil(expected + slack)
        bad = (counts < low) | (counts > high)
        example = np.flatnonzero(bad.any(0))[:5]
        assert not bad.any(), f"{bad.sum()} counts outside floor/ceil of N*W, e.g. particles {example}"
    else:  # the large particles, and the normal ones in four blocks of indices
        blocks = np.array_split(normal, 4)
        groups = [[i] for i in LARGE] + blocks
        sample = np.stack([counts[:, g].sum(1) for g in groups], axis=1)
        floor = max(_mean_precision(log_w, N_BIG)[g].sum() for g in groups)  # bounds every group's sum
        assert_mean_close(sample, [expected[g].sum() for g in groups], f"{scheme} group counts at N=1e6",
                          floor=floor)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the rounding pattern of XLA's cumsum is CPU-specific")
def test_negative_control_raw_float32_cumsum_selects_dead(hard_weights):
    """The hazard the fixed point removes is real: XLA's float32 cumsum on CPU is not monotone.

    On the same weights, the CDF ``cumsum(w) / total`` rises at dead particles, and systematic
    resampling on it (the usual hand-written one) selects them.
    """
    log_w, _ = hard_weights

    @jax.jit
    def raw_cdf(log_w):
        cdf = jnp.cumsum(jnp.exp(log_w - jnp.max(log_w)))
        return cdf / cdf[-1]

    @jax.jit
    @partial(jax.vmap, in_axes=(0, None))
    def raw_systematic(key, log_w):
        ends = jnp.clip(jnp.ceil(raw_cdf(log_w) * N_BIG - jax.random.uniform(key)), 0, N_BIG).astype(jnp.int32)
        return jnp.minimum(jnp.cumsum(jnp.zeros(N_BIG + 1, jnp.int32).at[ends].add(1)[:N_BIG]), N_BIG - 1)

    dead = np.isneginf(np.asarray(log_w))
    step = np.diff(np.asarray(raw_cdf(log_w), np.float64), prepend=0.0)
    assert (step[dead] > 0).any(), "float32 cumsum was flat over every dead particle (hazard not reproduced)"
    assert (step < 0).any(), "float32 cumsum was monotone (hazard not reproduced)"
    idx = np.asarray(raw_systematic(jax.random.split(jax.random.key(5), N_KEYS), log_w))
    assert dead[idx].any(), "raw-cumsum systematic resampling never selected a dead particle"


# --------------------------------------------------------------------------------------------------
# the integer machinery
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("num", [1, 7, 10**5, 2**20, 1_677_721, 1_677_722, 2**21 + 3, 10**7, 10**8])
def test_divide_is_exact(num):
    """``num * c = k * T + r`` with ``0 <= r < T`` exactly, from the float estimate (one correction step
    below num = 2^24 / 10, an integer division beyond), for c anywhere in [0, T] and T up to 1.4 * 2^B."""
    fp = resampling._fixed_point(jnp.float32, num)
    assert fp.near == (num < 2**24 / 10) and (fp.bits == 30 or not fp.near)
    rng = np.random.default_rng(num)
    for total in [1, 3, 2**fp.bits - 12345, int(1.4 * 2**fp.bits)]:
        c = np.concatenate([rng.integers(0, total + 1, 5000), [0, 1, total - 1, total]]).clip(0, total)
        k, r = jax.jit(lambda c, t: resampling._divide(c, num, t, fp))(jnp.asarray(c, jnp.int32), jnp.int32(total))
        want = [divmod(x * num, total) for x in c.tolist()]
        assert np.asarray(k).tolist() == [q for q, _ in want] and np.asarray(r).tolist() == [m for _, m in want]


def test_random_targets_cover_zero_to_total_minus_one():
    """``floor(b * T / 2^32)`` is exact (half-width products) and spans [0, T): the extreme targets land
    on positive weights, never on the zero weights around them."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.integers(0, 2**32, 2000, dtype=np.uint64), [0, 2**32 - 1]]).astype(np.uint32)
    for y in [1, 8, 2**30 + 12345, 2**31 - 1, 2**32 - 1]:
        got = np.asarray(resampling._mulhi(jnp.asarray(x), jnp.uint32(y)))
        assert got.tolist() == [(int(a) * y) >> 32 for a in x]
    q = jnp.asarray([0, 3, 0, 0, 5, 0, 0], jnp.int32)
    cdf = jnp.cumsum(q)
    v = resampling._mulhi(jnp.asarray([0, 2**32 - 1], jnp.uint32), cdf[-1].astype(jnp.uint32)).astype(jnp.int32)
    np.testing.assert_array_equal(np.asarray(v), [0, 7])
    np.testing.assert_array_equal(np.asarray(jnp.searchsorted(cdf, v, side="right")), [1, 4])


def test_quantisation_is_unbiased_and_keeps_zeros():
    """E[q_i] = w_i 2^30 / S (stochastic rounding, so tiny weights keep their chance), q_i = 0 for w_i = 0,
    and a large weight among many small equal ones keeps its share (plain floor would inflate it by
    the lost fractions, about N/2 quanta)."""
    n = 10**5
    w = np.full(n, 0.5 / (n - 1))
    w[5:100] = 2.0**-33  # below the quantum
    w[::7] = 0.0
    w[3] = 0.5
    w = np.asarray(w, np.float32)
    fp = resampling._fixed_point(jnp.float32)
    keys = jax.random.split(jax.random.key(0), 64)
    q = np.asarray(jax.jit(jax.vmap(lambda k: resampling._quantise(k, jnp.asarray(w), fp)))(keys))
    assert (q[:, w == 0] == 0).all()
    x = w.astype(np.float64) * 2.0**30 / w.astype(np.float64).sum()
    assert (np.abs(q - x) <= 1 + x * 2.0**-22).all(), "rounded by more than one quantum"
    # a float32 relative error 2^-22 in w_3 * 2^30 / S; the random total moves the mean by ~n 2^-60
    share = x[3] / x.sum()
    assert_mean_close(q[:, 3] / q.sum(1), share, "large weight's share", floor=share * 2.0**-22)
    assert_mean_close(q[:, 5:100].sum(1), x[5:100].sum(), "quanta of the sub-quantum weights",
                      floor=x[5:100].sum() * 2.0**-22)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_float64(scheme):
    """With jax_enable_x64 and float64 weights: int64 fixed point (B = 62), same guarantees."""
    with jax.enable_x64(True):
        log_w = _weights(seed=6, dtype=jnp.float64)
        n = log_w.shape[0]
        assert resampling._fixed_point(log_w.dtype, n).bits == 62
        counts = _counts(scheme, log_w, jax.random.split(jax.random.key(3), 4000), n)
        assert (counts.sum(1) == n).all() and (counts[:, np.isneginf(np.asarray(log_w))] == 0).all()
        # float64 rounding of num * W_i (2^-53 relative, a few operations) is far below this floor
        assert_mean_close(counts, _expected(log_w, n), f"{scheme} float64 offspring counts", floor=1e-12)


def test_killing_requires_square():
    with pytest.raises(ValueError, match="num == N"):
        BUILTIN_RESAMPLERS["killing"](jax.random.key(0), jnp.zeros(4) - jnp.log(4.0), 8)


@pytest.mark.parametrize("scheme", ["multinomial", "systematic", "stratified", "residual", "ssp"])
def test_resample_to_another_size(scheme):
    log_w = _weights(n=10, n_dead=2)
    idx = BUILTIN_RESAMPLERS[scheme](jax.random.key(0), log_w, 25)
    assert idx.shape == (25,)
    assert not np.isneginf(np.asarray(log_w)[np.asarray(idx)]).any()
