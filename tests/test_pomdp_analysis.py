"""Belief-space analysis against exact answers: epsilon-nets, covering numbers, forgetting, Lipschitz.

* the greedy epsilon-net covers within epsilon, its centres are epsilon-separated, and its size lies
  between the minimum covering numbers at epsilon and epsilon/2 found by brute force (control: a
  net built with the radius doubled);
* Tiger's reachable (listening) beliefs are ``sigmoid(k L)``, ``L = log(0.85 / 0.15)``, so their TV
  covering numbers grow like ``(2 / L) log(1/epsilon)`` (control: the beliefs of a Tiger that hears
  with accuracy 0.75 do not);
* with uninformative observations the switching Tiger forgets in TV exactly at the rate
  ``|1 - 2 flip|``; with informative ones every step contracts the Hilbert distance by at most
  ``|1 - 2 flip|`` (Birkhoff), along every history (control: filtering without the flip);
* the empirical Lipschitz constant equals brute force, and is exactly ``c`` for ``V = c b(left)``
  under TV and exactly 1 for ``V = logit b(left)`` under the Hilbert metric (control: values
  misaligned with their beliefs).
"""
import itertools

import jax.numpy as jnp
import numpy as np
import pytest
from smcflow_pomdp import TV, Hilbert, switching_tiger, tiger
from smcflow_pomdp.analysis import (
    covering_numbers,
    empirical_lipschitz,
    forgetting_curve,
    geometric_rate,
    greedy_net,
)
from smcflow_pomdp.filters import bayes_beliefs

RNG = np.random.default_rng(7)


def euclidean(points):
    return np.linalg.norm(points[:, None] - points[None], axis=-1)


def minimum_cover(D, radius):
    """Brute force: the fewest points whose radius-balls cover every point."""
    n = D.shape[0]
    within = D <= radius
    for k in range(1, n + 1):
        for centres in itertools.combinations(range(n), k):
            if within[list(centres)].any(axis=0).all():
                return k
    raise AssertionError("unreachable")


def is_valid_net(net_fn) -> bool:
    ok = True
    for trial in range(4):
        D = euclidean(RNG.uniform(size=(10, 2)))
        for eps in (0.15, 0.3, 0.5):
            net = net_fn(D, eps)
            centres = np.flatnonzero(np.asarray(net.centers))
            assignment = np.asarray(net.assignment)
            ok &= bool(np.all(D[np.arange(10), assignment] <= eps + 1e-6))  # every point covered
            ok &= bool(np.all(np.isin(assignment, centres)))
            off = D[np.ix_(centres, centres)][~np.eye(centres.size, dtype=bool)]
            ok &= bool(np.all(off > eps))  # the centres are epsilon-separated
            ok &= minimum_cover(D, eps) <= centres.size <= minimum_cover(D, eps / 2)
    return bool(ok)


def test_greedy_net_is_an_epsilon_net_bracketing_the_covering_number():
    assert is_valid_net(greedy_net)
    assert not is_valid_net(lambda D, eps: greedy_net(D, 2 * eps)), "negative control not caught"


def test_covering_numbers_are_the_greedy_net_sizes_and_fall_with_epsilon():
    D = euclidean(RNG.uniform(size=(40, 2)))
    eps = np.array([0.05, 0.1, 0.2, 0.4, 0.8])
    sizes = np.asarray(covering_numbers(D, eps))
    assert list(sizes) == [int(greedy_net(D, e).size) for e in eps]
    assert np.all(np.diff(sizes) <= 0) and sizes[-1] >= 1 and sizes[0] <= 40


def listening_beliefs(accuracy, horizon=12):
    """Every belief reachable by listening ``horizon`` times (all 2^horizon histories), deduplicated."""
    m = tiger(accuracy=accuracy)
    obs = jnp.asarray(list(itertools.product([0, 1], repeat=horizon)), jnp.int32)
    beliefs = np.asarray(bayes_beliefs(m, jnp.zeros_like(obs), obs).beliefs).reshape(-1, 2)
    return np.unique(np.round(beliefs, 7), axis=0)


EPSILONS = np.logspace(-5, -1, 25)


def covering_slope(beliefs):
    sizes = np.asarray(covering_numbers(TV().pairwise(beliefs), EPSILONS))
    return np.polyfit(np.log(1 / EPSILONS), sizes, 1)[0], sizes


def test_tiger_covering_numbers_grow_like_log_one_over_epsilon():
    want = 2 / np.log(0.85 / 0.15)  # one new belief per side each time log(1/eps) grows by L
    slope, sizes = covering_slope(listening_beliefs(0.85))
    print(f"covering numbers {sizes.tolist()}, slope {slope:.4f} vs 2/L = {want:.4f}")
    assert np.all(np.diff(sizes) <= 0)
    assert slope == pytest.approx(want, rel=0.05)  # integer steps: the fit is within ~1%
    wrong, _ = covering_slope(listening_beliefs(0.75))  # negative control: another hearing accuracy
    assert wrong != pytest.approx(want, rel=0.05), "negative control not caught"


PRIORS = (jnp.array([0.9, 0.1]), jnp.array([0.2, 0.8]))


def test_uninformative_switching_tiger_forgets_in_tv_at_rate_one_minus_two_flip():
    flip = 0.1
    actions = jnp.zeros(20, jnp.int32)
    observations = jnp.asarray(RNG.integers(0, 2, 20), jnp.int32)
    curve = forgetting_curve(switching_tiger(flip, accuracy=0.5), actions, observations, *PRIORS, TV())
    np.testing.assert_allclose(curve, 0.7 * (1 - 2 * flip) ** np.arange(21), rtol=1e-4, atol=1e-7)
    assert geometric_rate(curve) == pytest.approx(1 - 2 * flip, abs=1e-4)
    wrong = forgetting_curve(tiger(accuracy=0.5), actions, observations, *PRIORS, TV())  # control: no flip
    assert geometric_rate(wrong) != pytest.approx(1 - 2 * flip, abs=1e-2), "negative control not caught"


def contracts_at_birkhoff_rate(filter_model, flip=0.1, n_histories=64, horizon=12) -> bool:
    """Every step's Hilbert ratio d_{t+1}/d_t <= |1 - 2 flip| along arbitrary listening histories (the
    bound holds for every history), and the largest ratio comes close to it (beliefs near 1/2
    contract at almost exactly that rate)."""
    actions = jnp.zeros((n_histories, horizon), jnp.int32)
    observations = jnp.asarray(RNG.integers(0, 2, (n_histories, horizon)), jnp.int32)
    curves = np.asarray(forgetting_curve(filter_model, actions, observations, *PRIORS, Hilbert()), np.float64)
    assert np.all(np.isfinite(curves))
    usable = curves[:, :-1] > 1e-3  # float32 beliefs resolve ratios of larger distances only
    ratios = curves[:, 1:][usable] / curves[:, :-1][usable]
    rate = abs(1 - 2 * flip)
    return bool(np.all(ratios <= rate * (1 + 1e-3)) and ratios.max() > rate - 0.05)


def test_switching_tiger_hilbert_distance_contracts_at_the_birkhoff_rate():
    assert contracts_at_birkhoff_rate(switching_tiger(0.1))
    assert not contracts_at_birkhoff_rate(tiger()), "negative control not caught"


def lipschitz_brute_force(values, D):
    best = 0.0
    for i, j in itertools.permutations(range(len(values)), 2):
        if abs(values[i] - values[j]) > 0:
            best = max(best, abs(values[i] - values[j]) / D[i, j])
    return best


def finds_the_lipschitz_constants(lipschitz) -> bool:
    B = RNG.dirichlet(np.ones(2), size=30)
    tv, hilbert = np.asarray(TV().pairwise(B), np.float64), np.asarray(Hilbert().pairwise(B), np.float64)
    ok = lipschitz(3.0 * B[:, 0] - 1.0, tv) == pytest.approx(3.0, rel=1e-4)
    ok &= lipschitz(np.log(B[:, 0] / B[:, 1]), hilbert) == pytest.approx(1.0, rel=1e-4)
    v = RNG.normal(size=30)
    ok &= lipschitz(v, tv) == pytest.approx(lipschitz_brute_force(v, tv), rel=1e-9)
    return bool(ok)


def test_empirical_lipschitz_constants_are_exact():
    assert finds_the_lipschitz_constants(lambda v, D: empirical_lipschitz(v, D).constant)
    misaligned = lambda v, D: empirical_lipschitz(np.roll(v, 1), D).constant  # noqa: E731
    assert not finds_the_lipschitz_constants(misaligned), "negative control not caught"
    # equal beliefs with different values: not a function of the belief
    assert empirical_lipschitz(np.array([0.0, 1.0]), np.zeros((2, 2))).constant == np.inf


def test_bad_input_is_refused_by_name():
    D = np.zeros((3, 3))
    with pytest.raises(ValueError, match="epsilon must be >= 0"):
        greedy_net(D, -0.1)
    with pytest.raises(ValueError, match="distances must be a square"):
        greedy_net(np.zeros((3, 2)), 0.1)
    with pytest.raises(ValueError, match="epsilons must be a 1-D array of radii >= 0"):
        covering_numbers(D, [[0.1]])
    with pytest.raises(ValueError, match=r"values must have shape \(3,\)"):
        empirical_lipschitz(np.zeros(4), D)
    with pytest.raises(ValueError, match="geometric_rate needs at least two positive distances"):
        geometric_rate([1.0, 0.0, 0.0])
