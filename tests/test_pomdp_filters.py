"""Belief filters against exact answers: enumeration of hidden paths, the exact likelihood, a grid filter.

* the exact Bayes filter equals brute-force enumeration over every hidden-state path (negative
  control: observing before predicting);
* the particle belief filter's TV distance to the exact beliefs shrinks as N^(-1/2) on Tiger (a
  fitted slope with a Student-t interval over independent replicates; negative control: the same
  filter fed the previous step's observation);
* its log-evidence is unbiased (in exp) for the history's exact likelihood (switching Tiger;
  RockSample, slow), and RockSample's exact beliefs are the closed-form posteriors of its rocks;
* on LightDark-1D (continuous state, heteroscedastic observations) its filtering moments agree with a
  float64 grid filter.
"""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from mc import allowed_deviation, assert_mean_close, assert_unbiased_evidence
from smcflow_pomdp import TV, lightdark_1d, rocksample, switching_tiger, tiger
from smcflow_pomdp.filters import bayes_beliefs, particle_beliefs
from smcflow_pomdp.models import ROCKSAMPLE_4_4_ROCKS
from smcflow_pomdp.ope import simulate
from smcflow_pomdp.policies import Softened, TigerThreshold
from smcflow_pomdp.pomdp import discrete_pomdp


def enumerate_beliefs(pomdp, actions, observations):
    """Beliefs b_0..b_H and log p(o_1:H | a) by summing p(s_0:t, o_1:t) over all hidden paths (float64)."""
    T, Z, b0 = (np.asarray(m, np.float64) for m in (pomdp.transition_matrix, pomdp.observation_matrix,
                                                     pomdp.initial_belief))
    S, H = b0.size, len(actions)
    beliefs, log_lik = [b0], 0.0
    for t in range(1, H + 1):
        joint = np.zeros(S)
        for path in itertools.product(range(S), repeat=t + 1):
            p = b0[path[0]]
            for k in range(t):
                p *= T[actions[k], path[k], path[k + 1]] * Z[actions[k], path[k + 1], observations[k]]
            joint[path[-1]] += p
        beliefs.append(joint / joint.sum())
        log_lik = np.log(joint.sum())
    return np.stack(beliefs), log_lik


def observe_then_predict(pomdp, actions, observations):
    """Negative control: the update in the wrong order (weigh b_t by o_{t+1}, then move)."""
    T, Z = np.asarray(pomdp.transition_matrix), np.asarray(pomdp.observation_matrix)
    b, out = np.asarray(pomdp.initial_belief, np.float64), []
    out.append(b)
    for a, o in zip(actions, observations):
        b = b * Z[a, :, o]
        b = (b / b.sum()) @ T[a]
        out.append(b)
    return np.stack(out), np.nan


N_REPLICATES, N_HISTORIES, HORIZON = 16, 16, 10
SIZES = (128, 1024)


def random_pomdp(seed):
    rng = np.random.default_rng(seed)
    T = rng.dirichlet(np.ones(3), size=(2, 3))
    Z = rng.dirichlet(np.ones(2), size=(2, 3))
    return discrete_pomdp(T, Z, rng.normal(size=(2, 3)), rng.dirichlet(np.ones(3)), 0.9)


CASES = [(switching_tiger(0.2), [0, 0, 1, 0, 0, 0, 2], [0, 1, 1, 0, 0, 1, 0]),
         (random_pomdp(0), [1, 0, 0, 1, 1, 0], [0, 1, 1, 1, 0, 0])]


def matches_enumeration(filter_fn) -> bool:
    ok = True
    for pomdp, actions, observations in CASES:
        beliefs, log_lik = filter_fn(pomdp, actions, observations)
        want, want_log_lik = enumerate_beliefs(pomdp, actions, observations)
        ok &= np.allclose(beliefs, want, atol=2e-6) and (np.isnan(log_lik) or abs(log_lik - want_log_lik) < 1e-5)
    return bool(ok)


def bayes(pomdp, actions, observations):
    out = bayes_beliefs(pomdp, jnp.asarray(actions), jnp.asarray(observations))
    return np.asarray(out.beliefs), float(out.log_likelihood)


def test_bayes_filter_matches_enumeration_of_hidden_paths():
    assert matches_enumeration(bayes)
    assert not matches_enumeration(observe_then_predict), "negative control not caught"


def test_bayes_filter_batched_equals_one_history_at_a_time():
    m = switching_tiger(0.1)
    # the shapes of the Tiger fixture below: the simulation is compiled once for both
    data = simulate(m, Softened(TigerThreshold(0.9), 0.3), jax.random.key(0), N_HISTORIES, HORIZON)
    batch = bayes_beliefs(m, data.actions, data.observations)
    assert batch.beliefs.shape == (N_HISTORIES, HORIZON + 1, 2)
    np.testing.assert_allclose(batch.beliefs, data.beliefs, atol=1e-6)  # the simulator's own beliefs
    for i in range(3):
        one = bayes_beliefs(m, data.actions[i], data.observations[i])
        np.testing.assert_allclose(one.beliefs, batch.beliefs[i], atol=1e-6)
        np.testing.assert_allclose(one.log_likelihood, batch.log_likelihood[i], rtol=1e-5)


@pytest.fixture(scope="module")
def tiger_histories():
    m = tiger()
    data = simulate(m, Softened(TigerThreshold(0.9), 0.3), jax.random.key(0), N_HISTORIES, HORIZON)
    actions, observations = (jnp.tile(x, (N_REPLICATES, 1)) for x in (data.actions, data.observations))
    return m, actions, observations, bayes_beliefs(m, actions, observations).beliefs


def stale(observations):
    """Negative control: each step weighed by the observation of the step before (o_1 twice)."""
    return jnp.concatenate([observations[:, :1], observations[:, :-1]], axis=1)


def tv_slopes(tiger_histories, sizes=SIZES, observe=lambda o: o):
    """Per replicate, the least-squares slope of log(mean TV to the exact beliefs) against log N.

    The filter sees ``observe(observations)``; the exact beliefs are those of the true observations.
    """
    m, actions, observations, exact = tiger_histories
    mean_tv = []
    for i, n in enumerate(sizes):
        pb = particle_beliefs(m, actions, observe(observations), jax.random.key(10 + i), n)
        tv = TV().paired(pb.probabilities(2).reshape(-1, 2), exact.reshape(-1, 2)).reshape(N_REPLICATES, -1)
        mean_tv.append(np.asarray(tv.mean(axis=1)))
    return np.polyfit(np.log(sizes), np.log(np.stack(mean_tv)), 1)[0]


def print_slope(slopes, sizes):
    half_width = allowed_deviation(N_REPLICATES) * slopes.std(ddof=1) / np.sqrt(N_REPLICATES)
    print(f"N = {sizes}: fitted slope {slopes.mean():.4f} ± {half_width:.4f} (Student-t, alpha = 1e-5)")


def test_particle_belief_tv_shrinks_as_one_over_sqrt_n(tiger_histories):
    slopes = tv_slopes(tiger_histories)
    print_slope(slopes, SIZES)
    assert_mean_close(slopes, -0.5, "slope of log TV(particle, exact) against log N")
    # negative control, the same compiled filter on stale observations: the error does not shrink
    wrong = tv_slopes(tiger_histories, observe=stale)
    with pytest.raises(AssertionError):
        assert_mean_close(wrong, -0.5, "negative control")


@pytest.mark.slow
def test_particle_belief_tv_slope_over_a_wider_range(tiger_histories):
    slopes = tv_slopes(tiger_histories, (64, 256, 1024, 4096))
    print_slope(slopes, (64, 256, 1024, 4096))
    assert_mean_close(slopes, -0.5, "slope of log TV(particle, exact) against log N, N = 64 .. 4096")


def test_particle_log_evidence_is_unbiased_for_the_exact_likelihood():
    m = switching_tiger(0.1)
    # the shapes of the slope test (B histories of length HORIZON, N = SIZES[0]): its compiled filter
    data = simulate(m, Softened(TigerThreshold(0.9), 0.3), jax.random.key(3), 1, HORIZON)
    batch = N_REPLICATES * N_HISTORIES
    actions, observations = (jnp.tile(x, (batch, 1)) for x in (data.actions, data.observations))
    log_lik = float(bayes_beliefs(m, data.actions[0], data.observations[0]).log_likelihood)
    pb = particle_beliefs(m, actions, observations, jax.random.key(4), SIZES[0])
    assert pb.particles.shape == (batch, HORIZON + 1, SIZES[0])
    assert_unbiased_evidence(pb.log_evidence, log_lik, "switching Tiger particle filter")


def test_rocksample_exact_beliefs_of_rock_checks():
    """Checking rock i from distance d with accuracy eta = (1 + 2^(-d/2)) / 2: the rocks stay independent
    and each posterior P(good) is the product of its checks' likelihood ratios with the prior 1/2."""
    m = rocksample()
    assert (m.n_states, m.n_actions, m.n_observations) == (257, 9, 3)
    actions = jnp.array([5, 6, 7, 8, 5, 6])  # check every rock, then rocks 0 and 1 again, from (0, 2)
    observations = jnp.array([1, 2, 1, 1, 1, 1])  # good, bad, good, good, good, good
    b = np.asarray(bayes_beliefs(m, actions, observations).beliefs[-1], np.float64)
    bits = np.array([int(name.split(":")[1], 2) if ":" in name else 0 for name in m.state_names])
    for i, (c, r) in enumerate(ROCKSAMPLE_4_4_ROCKS):
        eta = 0.5 * (1 + 2 ** (-np.hypot(c - 0, r - 2) / 2))
        seen = [o for a, o in zip(actions.tolist(), observations.tolist()) if a == 5 + i]
        odds = np.prod([eta / (1 - eta) if o == 1 else (1 - eta) / eta for o in seen])
        assert b[(bits >> i) & 1 == 1].sum() == pytest.approx(odds / (1 + odds), abs=1e-5), i
    assert b[-1] == 0 and np.all(b[[s for s, n in enumerate(m.state_names) if not n.startswith("(0,2)")]] == 0)


@pytest.mark.slow
def test_rocksample_particle_filter_evidence_and_beliefs():
    m = rocksample()
    assert m.n_states == 257 and m.n_actions == 9
    # check every rock from the start, walk east twice, check again, sample where nothing is
    actions = jnp.array([5, 6, 7, 8, 2, 2, 5, 7, 4])
    observations = jnp.array([1, 2, 1, 1, 0, 0, 2, 1, 0])
    exact = bayes_beliefs(m, actions, observations)
    runs = 32
    pb = particle_beliefs(m, jnp.tile(actions, (runs, 1)), jnp.tile(observations, (runs, 1)), jax.random.key(5), 512)
    assert_unbiased_evidence(pb.log_evidence, float(exact.log_likelihood), "RockSample particle filter")
    tv = TV().paired(pb.probabilities(257)[:, -1], jnp.tile(exact.beliefs[-1], (runs, 1)))
    assert float(tv.mean()) < 0.15  # 16 rock patterns weighed by noisy checks, N = 512


def grid_filter(model, actions, observations, lo=-12.0, hi=22.0, step=0.01):
    """LightDark-1D filtering means and variances on a fine grid (float64): exact up to quadrature."""
    x = np.arange(lo, hi + step / 2, step)
    p = lambda v: np.asarray(v, np.float64)  # noqa: E731
    sd0, proc, floor, slope, light = (float(p(getattr(model, k))) for k in
                                      ("initial_sd", "process_sd", "noise_floor", "noise_slope", "light"))
    b = np.exp(-0.5 * ((x - float(model.initial_mean)) / sd0) ** 2)
    kernel_x = np.arange(-60, 61) * step
    kernel = np.exp(-0.5 * (kernel_x / proc) ** 2)
    moments = []
    for t in range(len(actions) + 1):
        if t:
            shift = round(float(model.moves[actions[t - 1]]) / step)
            b = np.roll(b, shift)  # the mass near the ends is negligible here
            b = np.convolve(b, kernel, mode="same")
            sd = floor + slope * np.abs(x - light)
            b = b * np.exp(-0.5 * ((observations[t - 1] - x) / sd) ** 2) / sd
        b = b / b.sum()
        mean = b @ x
        moments.append((mean, b @ (x - mean) ** 2))
    return np.asarray(moments)


def test_lightdark_particle_beliefs_match_a_grid_filter():
    m = lightdark_1d()
    actions = np.array([2, 2, 2, 1, 1, 0, 0, 0])  # move right to the light, stay, walk back
    rng = np.random.default_rng(7)
    x, observations = rng.normal(2.0, 2.0), []
    for a in actions:
        x = x + float(m.moves[a]) + 0.1 * rng.normal()
        observations.append(x + (0.1 + 0.5 * abs(x - 5.0)) * rng.normal())
    observations = np.asarray(observations, np.float32)
    want = grid_filter(m, actions, observations)
    runs = 16
    pb = particle_beliefs(m, jnp.tile(actions, (runs, 1)), jnp.tile(observations, (runs, 1)), jax.random.key(8), 1000)
    w = jnp.exp(pb.log_weights)
    mean = jnp.sum(w * pb.particles, -1)
    var = jnp.sum(w * (pb.particles - mean[..., None]) ** 2, -1)
    # self-normalised estimates: an O(1/N) bias, far below the standard error of 16 runs of N = 1000
    assert_mean_close(mean, want[:, 0], "LightDark filtering means")
    assert_mean_close(var, want[:, 1], "LightDark filtering variances")
