"""Belief metrics against exact answers, the metric axioms as property tests, and bad input.

Exact references, each with a negative control that the same checking code must reject:

* ``w1`` with the 0/1 ground metric (given explicitly, so the linear program runs) equals ``tv``
  (control: a total variation without the factor 1/2);
* exact OT agrees with POT's network simplex and 1-D closed form on random weighted beliefs, and
  ``w1``/``w2`` between quantile particles of two 1-D Gaussians converge to the Gaussian closed forms
  (control: particles paired in the order given instead of sorted);
* ``sinkhorn`` is squeezed between ``W_p^p`` and ``W_p^p + epsilon log(n m)`` and tends to it as
  ``epsilon`` shrinks; its implicit gradient matches finite differences (control: a Sinkhorn that
  ignores the weights);
* ``mmd``: on one-hot states it is ``sqrt(1 - exp(-1/h^2)) ||p - q||``; on particles from two
  Gaussians the mean of the squared V-statistic equals its exact expectation over many seeds
  (Student-t; control: the kernel ``exp(-||x - y||^2 / h^2)``);
* ``hilbert`` equals its formula, is invariant under positive rescaling of coordinates and contracts
  by Birkhoff's coefficient under a positive matrix (control: ``tv`` is not invariant).
"""
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import ot
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mc import assert_mean_close
from scipy import stats
from smcflow_pomdp import MMD, TV, Hilbert, Sinkhorn, w1, w2

import smcflow

RNG = np.random.default_rng(20261201)


def dirichlet(n, size=None, rng=RNG):
    return rng.dirichlet(np.ones(n), size=size)


def line_cost(n):
    """``|i - j|``: a metric on ``n`` states on a line."""
    i = np.arange(n)
    return np.abs(i[:, None] - i[None, :]).astype(np.float64)


# ----------------------------------------------------------------------------------------------------
# the registry gives every contract name with its configuration
# ----------------------------------------------------------------------------------------------------


def test_every_metric_is_served_by_the_registry_with_its_configuration():
    get = smcflow.plugins.get
    assert {"tv", "w1", "w2", "sinkhorn", "mmd", "hilbert"} <= set(smcflow.plugins.available("belief_metric"))
    p, q = dirichlet(4), dirichlet(4)
    cost = line_cost(4)
    assert float(get("belief_metric", "tv")(p, q)) == pytest.approx(0.5 * np.abs(p - q).sum(), abs=1e-6)
    assert float(get("belief_metric", "w1", cost=cost)(p, q)) == pytest.approx(ot.emd2(p, q, cost), abs=1e-5)
    sink = get("belief_metric", "sinkhorn", epsilon=0.01, p=2, cost=cost)
    assert (sink.epsilon, sink.p) == (0.01, 2.0)
    assert get("belief_metric", "mmd", bandwidth=0.5).bandwidth == 0.5
    assert np.isfinite(float(get("belief_metric", "hilbert")(p, q)))


# ----------------------------------------------------------------------------------------------------
# W1 with the 0/1 ground metric is TV; exact OT against POT
# ----------------------------------------------------------------------------------------------------


def tv_without_half(p, q):
    """Negative control: the L1 distance mistaken for total variation."""
    return np.abs(np.asarray(p) - np.asarray(q)).sum(-1)


def equals_w1_zero_one(tv_fn) -> bool:
    P, Q = dirichlet(5, 12), dirichlet(5, 12)
    lp = w1(cost=1.0 - np.eye(5))  # an explicit cost: the linear program runs, not the tv shortcut
    want = np.asarray(lp.paired(P, Q))
    return bool(np.allclose(np.asarray(tv_fn(P, Q)), want, atol=2e-6))


def test_w1_with_zero_one_cost_equals_tv():
    assert equals_w1_zero_one(TV().paired)
    assert equals_w1_zero_one(lambda P, Q: w1().paired(P, Q))  # the default ground metric is 0/1
    assert not equals_w1_zero_one(tv_without_half), "negative control not caught"


def test_exact_ot_agrees_with_pot_on_discrete_and_particle_beliefs():
    cost = RNG.random((6, 6))
    cost = cost + cost.T
    np.fill_diagonal(cost, 0.0)
    P, Q = dirichlet(6, 5), dirichlet(6, 5)
    want1 = [ot.emd2(p, q, cost) for p, q in zip(P, Q)]
    want2 = [np.sqrt(ot.emd2(p, q, cost**2)) for p, q in zip(P, Q)]
    np.testing.assert_allclose(w1(cost=cost).paired(P, Q), want1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(w2(cost=cost, solver="linprog").paired(P, Q), want2, rtol=1e-5, atol=1e-6)  # HiGHS
    # weighted particles: 2-D (host LP, Euclidean ground metric) and 1-D (sorted closed form)
    x, y = RNG.normal(size=(30, 2)), RNG.normal(size=(40, 2)) + 0.5
    a, b = dirichlet(30), dirichlet(40)
    got = float(w1()((x, np.log(a)), (y, np.log(b))))
    assert got == pytest.approx(ot.emd2(a, b, ot.dist(x, y, metric="euclidean")), rel=1e-5)
    got = float(w2()((x[:, 0], np.log(a)), (y[:, 0], np.log(b))))
    assert got == pytest.approx(np.sqrt(ot.wasserstein_1d(x[:, 0], y[:, 0], a, b, p=2)), rel=1e-5)


@pytest.mark.slow
def test_exact_ot_by_highs_and_the_other_particle_paths():
    cost = line_cost(6)
    P, Q = dirichlet(6, 5), dirichlet(6, 5)
    np.testing.assert_allclose(w1(cost=cost, solver="linprog").paired(P, Q),
                               [ot.emd2(p, q, cost) for p, q in zip(P, Q)], rtol=1e-5, atol=1e-6)
    x, y = RNG.normal(size=(30, 2)), RNG.normal(size=(40, 2)) + 0.5
    a, b = dirichlet(30), dirichlet(40)
    got = float(w2(solver="linprog")((x, np.log(a)), (y, np.log(b))))
    assert got == pytest.approx(np.sqrt(ot.emd2(a, b, ot.dist(x, y))), rel=1e-5)
    got = float(w1()((x[:, 0], np.log(a)), (y[:, 0], np.log(b))))
    assert got == pytest.approx(ot.wasserstein_1d(x[:, 0], y[:, 0], a, b, p=1), rel=1e-5)


def gaussian_w(p, m1, s1, m2, s2):
    """Closed forms: W2 = sqrt(dm^2 + ds^2); W1 = E|dm + ds Z| (the quantile coupling is monotone)."""
    dm, ds = m2 - m1, s2 - s1
    if p == 2:
        return np.hypot(dm, ds)
    if ds == 0:
        return abs(dm)
    u = abs(dm / ds)
    return abs(dm) * (1 - 2 * stats.norm.cdf(-u)) + 2 * abs(ds) * stats.norm.pdf(u)


def quantile_particles(m, s, n, shuffle=False, size=4096):
    """``n`` quantile particles of N(m, s^2), padded to ``size`` with weight-zero particles (one shape,
    one compiled program for every ``n``)."""
    x = m + s * stats.norm.ppf((np.arange(n) + 0.5) / n)
    x = RNG.permutation(x) if shuffle else x
    log_w = np.full(size, -np.inf)
    log_w[:n] = -np.log(n)
    return np.concatenate([x, np.zeros(size - n)]), log_w


def in_order_wasserstein(p):
    """Negative control: particles paired in the order given (the sort forgotten)."""
    def metric(b1, b2):
        return np.sum(np.exp(b1[1]) * np.abs(b1[0] - b2[0]) ** p) ** (1 / p)
    return metric


def converges_to_gaussian_closed_form(make_metric, shuffle) -> bool:
    ok = True
    for p in (1, 2):
        metric = make_metric(p)
        want = gaussian_w(p, 0.0, 1.0, 1.5, 0.5)
        errors = []
        for n in (64, 512, 4096):
            x, y = quantile_particles(0.0, 1.0, n, shuffle), quantile_particles(1.5, 0.5, n, shuffle)
            errors.append(abs(float(metric(x, y)) - want))
        # the quantile discretisation error falls at least like 1/sqrt(n); at n = 4096 it is < 1e-3
        ok &= errors[-1] < 1e-3 and errors[-1] < errors[0] / 8
    return bool(ok)


def test_w1_w2_of_gaussian_particles_converge_to_the_closed_forms():
    assert converges_to_gaussian_closed_form(lambda p: w1() if p == 1 else w2(), shuffle=True)
    assert not converges_to_gaussian_closed_form(in_order_wasserstein, shuffle=True), "negative control not caught"


# ----------------------------------------------------------------------------------------------------
# Sinkhorn tends to exact OT; gradients
# ----------------------------------------------------------------------------------------------------


def weightless_sinkhorn(epsilon, p):
    """Negative control: a Sinkhorn that forgets the weights (uniform marginals)."""
    metric = Sinkhorn(epsilon=epsilon, p=p, tol=1e-5)
    return lambda b1, b2: metric((b1[0], np.zeros(len(b1[1]))), (b2[0], np.zeros(len(b2[1]))))


def sinkhorn_squeezed_to_ot(make_metric) -> bool:
    rng = np.random.default_rng(7)  # its own stream: the check must not depend on which tests ran before
    x, y = rng.normal(size=(20, 2)), rng.normal(size=(25, 2)) + 1.0
    la, lb = np.log(dirichlet(20, rng=rng)), np.log(dirichlet(25, rng=rng))
    ok = True
    for p, exact in ((2, w2()),):  # p = 1 runs the same loop (checked against POT below)
        w_pp = float(exact((x, la), (y, lb))) ** p
        gaps = []
        for eps in (0.3, 0.03, 0.01):
            s_pp = float(make_metric(eps, p)((x, la), (y, lb))) ** p
            gaps.append(s_pp - w_pp)
            ok &= -1e-4 <= gaps[-1] <= eps * np.log(20 * 25)  # <P_eps, C^p> - W_p^p in [0, eps log(n m)]
        ok &= gaps[-1] < 0.2 * gaps[0]
    return bool(ok)


def test_sinkhorn_tends_to_exact_ot_as_epsilon_shrinks():
    # the default max_iter converges down to eps = 0.01 (epsilon scaling and over-relaxation)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # an unconverged pair would warn
        assert sinkhorn_squeezed_to_ot(lambda eps, p: Sinkhorn(epsilon=eps, p=p, tol=1e-5))
    assert not sinkhorn_squeezed_to_ot(weightless_sinkhorn), "negative control not caught"


@pytest.mark.slow
def test_sinkhorn_on_discrete_beliefs_agrees_with_pot_log_domain():
    cost = line_cost(8)
    P, Q = dirichlet(8, 4), dirichlet(8, 4)
    got = Sinkhorn(epsilon=0.05, cost=cost, tol=1e-6, max_iter=20000).paired(P, Q)
    want = [np.sum(ot.sinkhorn(p, q, cost, 0.05, method="sinkhorn_log", stopThr=1e-10, numItermax=100000) * cost)
            for p, q in zip(P, Q)]
    np.testing.assert_allclose(got, want, rtol=2e-4)


@pytest.mark.slow
def test_sinkhorn_gradient_matches_finite_differences():
    x, y = RNG.normal(size=(10, 2)), RNG.normal(size=(12, 2))
    la, lb = jnp.log(dirichlet(10)), jnp.log(dirichlet(12))
    metric = Sinkhorn(epsilon=0.2, p=2, tol=1e-7, max_iter=10000)
    f = jax.jit(lambda x: metric.particles(*(metric_inputs(x, la, y, lb))))
    grad = np.asarray(jax.grad(f)(jnp.asarray(x, jnp.float32)))
    h, fd = 1e-2, np.zeros_like(x)
    for i, j in np.ndindex(*x.shape):
        e = np.zeros_like(x)
        e[i, j] = h
        fd[i, j] = (float(f(jnp.asarray(x + e, jnp.float32))) - float(f(jnp.asarray(x - e, jnp.float32)))) / (2 * h)
    np.testing.assert_allclose(grad, fd, atol=2e-3 * np.abs(fd).max())


def metric_inputs(x, la, y, lb):
    from smcflow_pomdp.beliefs import ParticleBelief
    return ParticleBelief(x, la), ParticleBelief(jnp.asarray(y, jnp.float32), lb)


# ----------------------------------------------------------------------------------------------------
# MMD
# ----------------------------------------------------------------------------------------------------


def test_mmd_of_discrete_beliefs_is_the_one_hot_closed_form():
    P, Q = dirichlet(6, 10), dirichlet(6, 10)
    for h in (0.5, 1.0, 3.0):
        want = np.sqrt(1 - np.exp(-1 / h**2)) * np.linalg.norm(P - Q, axis=1)
        np.testing.assert_allclose(MMD(bandwidth=h).paired(P, Q), want, rtol=1e-5)


def gaussian_kernel_mean(h2, var, dm2, d):
    """``E exp(-||X - Y||^2 / (2 h^2))`` for ``X - Y ~ N(dm, var I_d)``."""
    return (h2 / (h2 + var)) ** (d / 2) * np.exp(-dm2 / (2 * (h2 + var)))


def expected_squared_mmd(h, n, s1, s2, dm2, d):
    """Exact E[V-statistic] of n + n draws: MMD^2 plus the diagonal terms ``(1 - E k(X, X')) / n``."""
    k11, k22 = gaussian_kernel_mean(h**2, 2 * s1**2, 0.0, d), gaussian_kernel_mean(h**2, 2 * s2**2, 0.0, d)
    k12 = gaussian_kernel_mean(h**2, s1**2 + s2**2, dm2, d)
    return k11 + k22 - 2 * k12 + ((1 - k11) + (1 - k22)) / n


def mmd_mean_is_exact(metric_paired, seeds=64, n=64, d=2, h=0.5) -> bool:
    keys = jax.random.split(jax.random.key(11), 2)
    s1, s2, shift = 1.0, 0.5, jnp.array([0.8, -0.3])
    X = s1 * jax.random.normal(keys[0], (seeds, n, d))
    Y = shift + s2 * jax.random.normal(keys[1], (seeds, n, d))
    uniform = jnp.full((seeds, n), -jnp.log(n))
    squared = np.asarray(metric_paired((X, uniform), (Y, uniform)), np.float64) ** 2
    want = expected_squared_mmd(h, n, s1, s2, float(shift @ shift), d)
    try:
        assert_mean_close(squared, want, "mean squared MMD over seeds")
    except AssertionError:
        return False
    return True


def test_mmd_of_gaussian_particles_has_the_exact_expectation():
    assert mmd_mean_is_exact(MMD(bandwidth=0.5).paired)
    wrong = MMD(bandwidth=0.5 / np.sqrt(2))  # negative control: exp(-||x - y||^2 / h^2)
    assert not mmd_mean_is_exact(wrong.paired), "negative control not caught"


# ----------------------------------------------------------------------------------------------------
# Hilbert
# ----------------------------------------------------------------------------------------------------


def behaves_like_hilbert(metric) -> bool:
    P, Q = dirichlet(5, 8), dirichlet(5, 8)
    d = np.asarray(metric.paired(P, Q))
    ratio = np.log(P) - np.log(Q)
    ok = np.allclose(d, ratio.max(1) - ratio.min(1), rtol=1e-5)
    scale = RNG.uniform(0.1, 10.0, size=5)  # positive rescaling of the coordinates is an isometry
    rescale = lambda B: (B * scale) / (B * scale).sum(1, keepdims=True)  # noqa: E731
    ok &= np.allclose(np.asarray(metric.paired(rescale(P), rescale(Q))), d, rtol=1e-4)
    A = RNG.uniform(0.2, 1.0, size=(5, 5))  # a positive matrix contracts by tanh(diameter / 4)
    A /= A.sum(1, keepdims=True)
    la = np.log(A)
    diameter = np.max(la[:, None, :, None] + la[None, :, None, :] - la[:, None, None, :] - la[None, :, :, None])
    moved = np.asarray(metric.paired(P @ A, Q @ A))
    ok &= np.all(moved <= np.tanh(diameter / 4) * d * (1 + 1e-4))
    return bool(ok)


def test_hilbert_metric_formula_invariance_and_birkhoff_contraction():
    assert behaves_like_hilbert(Hilbert())
    assert not behaves_like_hilbert(TV()), "negative control not caught"


def test_hilbert_is_infinite_across_different_supports():
    assert float(Hilbert()(np.array([0.5, 0.5, 0.0]), np.array([0.2, 0.3, 0.5]))) == np.inf
    assert float(Hilbert()(np.array([0.5, 0.5, 0.0]), np.array([0.2, 0.8, 0.0]))) == pytest.approx(np.log(4))


# ----------------------------------------------------------------------------------------------------
# metric axioms, batched forms (hypothesis; fixed shapes, so nothing recompiles between examples)
# ----------------------------------------------------------------------------------------------------

S, N_PARTICLES = 4, 6
DISCRETE = {"tv": TV(), "w1": w1(cost=line_cost(S)), "w2": w2(cost=line_cost(S)), "mmd": MMD(bandwidth=0.8),
            "hilbert": Hilbert()}
PARTICLE = {"tv": TV(), "w2": w2(), "mmd": MMD(bandwidth=0.8)}  # w1 shares w2's LP path
# |d(b, b)| allowance: MMD is a square root of a float32 difference, sqrt(~1e-7)
IDENTITY = {"mmd": 1e-3}

probability = st.lists(st.floats(0.02, 1.0), min_size=S, max_size=S).map(lambda v: np.asarray(v) / np.sum(v))
particle_set = st.tuples(
    st.lists(st.floats(-3.0, 3.0), min_size=2 * N_PARTICLES, max_size=2 * N_PARTICLES),
    st.lists(st.floats(-3.0, 0.0), min_size=N_PARTICLES, max_size=N_PARTICLES),
).map(lambda t: (np.asarray(t[0], np.float32).reshape(N_PARTICLES, 2), np.asarray(t[1], np.float32)))


def check_axioms(metric, name, a, b, c, separated):
    d = lambda u, v: float(metric(u, v))  # noqa: E731
    ab, ba, bc, ac = d(a, b), d(b, a), d(b, c), d(a, c)
    assert ab >= 0 and abs(ab - ba) <= 1e-5 * (1 + ab), (name, ab, ba)
    assert abs(d(a, a)) <= IDENTITY.get(name, 1e-5), (name, d(a, a))
    assert ac <= ab + bc + 1e-4 * (1 + ac), (name, ac, ab, bc)
    if separated:
        assert ab > 1e-4, (name, ab)


@settings(max_examples=25, deadline=None)
@given(probability, probability, probability)
def test_metric_axioms_on_discrete_beliefs(p, q, r):
    separated = 0.5 * np.abs(p - q).sum() > 0.05
    for name, metric in DISCRETE.items():
        check_axioms(metric, name, p, q, r, separated)


@settings(max_examples=10, deadline=None)
@given(particle_set, particle_set, particle_set)
def test_metric_axioms_on_particle_beliefs(x, y, z):
    separated = np.min(np.linalg.norm(x[0][:, None] - y[0][None], axis=-1)) > 0.1  # no shared atoms
    for name, metric in PARTICLE.items():
        check_axioms(metric, name, x, y, z, separated and name != "mmd")  # MMD can be tiny for far sets


# near-ties of the line cost: plain Sinkhorn needs ~9,000 sweeps on this pair at epsilon = 0.05
SLOW_PAIR = np.array([8, 9, 10, 2]) / 29, np.array([15, 12, 15, 4]) / 46


def test_sinkhorn_warns_when_its_iterations_run_out():
    p, q = SLOW_PAIR
    exact = float(w1(cost=line_cost(4))(p, q))
    short = Sinkhorn(epsilon=0.05, cost=line_cost(4), tol=1e-6, max_iter=100)
    with pytest.warns(RuntimeWarning, match=r"1 of 1 pair\(s\) did not reach tol=1e-06 within max_iter=100"):
        out = short.solve(p, q)
    assert int(out.n_iter) >= 100 and float(out.error) > 1e-6 and not bool(out.converged)
    assert float(out.cost) < exact  # unconverged: below W_1, which is why it must not pass silently
    with pytest.warns(RuntimeWarning, match="did not reach tol"):
        short(p, q)
    with pytest.raises(smcflow.SMCNumericalError, match="did not reach tol"):
        Sinkhorn(epsilon=0.05, cost=line_cost(4), tol=1e-6, max_iter=100, errors="raise")(p, q)


def test_sinkhorn_batches_report_how_many_pairs_ran_out():
    p, q = SLOW_PAIR
    short = Sinkhorn(epsilon=0.05, cost=line_cost(4), tol=1e-6, max_iter=100)
    with pytest.warns(RuntimeWarning, match=r"4 of 4 pair\(s\)"):
        short.pairwise(np.stack([p, p]), np.stack([q, q]))
    with pytest.warns(RuntimeWarning, match=r"2 of 2 pair\(s\)"):
        short.paired(np.stack([p, p]), np.stack([q, q]))


def test_sinkhorn_warns_from_inside_a_users_jit():
    p, q = (jnp.asarray(b, jnp.float32) for b in SLOW_PAIR)
    short = Sinkhorn(epsilon=0.05, cost=line_cost(4), tol=1e-6, max_iter=100)
    with pytest.warns(RuntimeWarning, match="did not reach tol"):
        jax.block_until_ready(jax.jit(short.pairwise)(p[None], q[None]))


def test_sinkhorn_default_budget_converges_silently_on_the_slow_pair():
    # negative control of the two above: a converged solve must not warn
    p, q = SLOW_PAIR
    exact = float(w1(cost=line_cost(4))(p, q))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        out = Sinkhorn(epsilon=0.05, cost=line_cost(4), tol=1e-6).solve(p, q)
    assert bool(out.converged) and float(out.error) <= 1e-6 and int(out.n_iter) < 10000
    # the plan's rows are off by error in L1, which moves <P, C> by at most error * max C
    slack = float(out.error) * 3.0
    assert exact - slack - 1e-6 <= float(out.cost) <= exact + 0.05 * np.log(16)


def exact_entropic_value(p, q, cost, epsilon, f, g):
    """POT's float64 ``<P, C>`` for the marginals of the plan ``p q exp((f + g - C) / eps)``: what the
    solver's value must equal to float32 rounding whatever its tolerance."""
    plan = p[:, None] * q[None, :] * np.exp((f[:, None] + g[None, :] - cost) / epsilon)
    rows, cols = plan.sum(1), plan.sum(0)
    ref = ot.sinkhorn(rows / rows.sum(), cols / cols.sum(), cost, epsilon, method="sinkhorn_log", stopThr=1e-13,
                      numItermax=1_000_000)
    return float(np.sum(ref * cost))


@pytest.mark.parametrize("epsilon", [0.05, 0.01])  # one shared kernel (range / eps = 20); per-pair kernels (100)
def test_batched_sinkhorn_value_is_the_entropic_value_of_its_plan(epsilon):
    n_states = 6
    cost = line_cost(n_states) / (n_states - 1)
    P, Q = dirichlet(n_states, 3), dirichlet(n_states, 4)
    out = Sinkhorn(epsilon=epsilon, cost=cost, tol=1e-5).solve_pairwise(P, Q)
    assert bool(np.all(out.converged)) and float(np.max(out.error)) <= 1e-5
    # float32 rounding of the exponents (f + g - C) / eps, each of size <= max C / eps
    atol = 4 * np.finfo(np.float32).eps * (cost.max() / epsilon) * cost.max()
    f, g = np.asarray(out.f, np.float64), np.asarray(out.g, np.float64)
    for i, j in np.ndindex(3, 4):
        want = exact_entropic_value(P[i], Q[j], cost, epsilon, f[i, j], g[i, j])
        assert float(out.cost[i, j]) == pytest.approx(want, abs=atol)
    # the batched values are those of one pair at a time (both within tol of the same plan)
    single = Sinkhorn(epsilon=epsilon, cost=cost, tol=1e-5)
    for i, j in ((0, 0), (2, 3)):
        one = single.solve(P[i], Q[j])
        assert float(one.cost) == pytest.approx(float(out.cost[i, j]), abs=(float(one.error) + float(out.error[i, j]))
                                                * cost.max() + atol)


def test_batched_sinkhorn_on_particles_with_epsilon_scaling():
    # squared distances up to ~30 at eps = 0.05: range / eps ~ 600, so epsilon scaling and absorption run
    rng = np.random.default_rng(11)
    X, Y = rng.normal(size=(2, 12, 2)), rng.normal(size=(3, 10, 2)) + 1.0
    LX, LY = np.log(rng.dirichlet(np.ones(12), 2)), np.log(rng.dirichlet(np.ones(10), 3))
    epsilon = 0.05
    out = Sinkhorn(epsilon=epsilon, p=2, tol=1e-5).solve_pairwise((X, LX), (Y, LY))
    assert bool(np.all(out.converged))
    f, g = np.asarray(out.f, np.float64), np.asarray(out.g, np.float64)
    for i, j in np.ndindex(2, 3):
        cost = ot.dist(X[i], Y[j])
        atol = 4 * np.finfo(np.float32).eps * (cost.max() / epsilon) * cost.max()
        want = exact_entropic_value(np.exp(LX[i]), np.exp(LY[j]), cost, epsilon, f[i, j], g[i, j])
        assert float(out.cost[i, j]) == pytest.approx(want, abs=atol)
    # control: a plan's value read against the wrong pair's marginals is caught
    wrong = exact_entropic_value(np.exp(LX[1]), np.exp(LY[2]), ot.dist(X[1], Y[2]), epsilon, f[0, 0][:12], g[0, 0])
    assert abs(float(out.cost[0, 0]) - wrong) > 1e-2


@settings(max_examples=20, deadline=None)
@given(probability, probability)
def test_sinkhorn_is_symmetric_and_at_least_exact_ot(p, q):
    # near-ties of the line cost make small epsilons slow to converge: a budget far above what is used
    sink, exact = Sinkhorn(epsilon=0.1, cost=line_cost(S), tol=1e-6, max_iter=50000), DISCRETE["w1"]
    assert float(sink(p, q)) == pytest.approx(float(sink(q, p)), rel=1e-4, abs=1e-5)
    assert float(sink(p, q)) >= float(exact(p, q)) - 1e-5


def test_pairwise_forms_match_direct_formulas():
    # the metrics with their own batched kernels (``paired`` vmaps the single-pair kernel, used above)
    P, Q = dirichlet(S, 3), dirichlet(S, 4)
    diff, ratio = P[:, None] - Q[None], np.log(P)[:, None] - np.log(Q)[None]
    np.testing.assert_allclose(TV().pairwise(P, Q), 0.5 * np.abs(diff).sum(-1), atol=1e-6)
    np.testing.assert_allclose(Hilbert().pairwise(P, Q), ratio.max(-1) - ratio.min(-1), rtol=1e-5)
    np.testing.assert_allclose(MMD(bandwidth=0.8).pairwise(P, Q),
                               np.sqrt(1 - np.exp(-1 / 0.8**2)) * np.linalg.norm(diff, axis=-1), rtol=1e-5)
    x, w = RNG.normal(size=(3, 5)), dirichlet(5, 3)
    want = [[np.sqrt(ot.wasserstein_1d(x[i], x[j], w[i], w[j], p=2)) for j in range(3)] for i in range(3)]
    np.testing.assert_allclose(w2().pairwise((x, np.log(w))), want, rtol=1e-5, atol=1e-6)
    k = lambda i, j: np.exp(-(x[i][:, None] - x[j][None]) ** 2 / (2 * 0.8**2))  # noqa: E731
    v = lambda i, j: w[i] @ k(i, j) @ w[j]  # noqa: E731
    want = [[np.sqrt(max(v(i, i) + v(j, j) - 2 * v(i, j), 0)) for j in range(3)] for i in range(3)]
    np.testing.assert_allclose(MMD(bandwidth=0.8).pairwise((x, np.log(w))), want, rtol=1e-4, atol=1e-3)


def test_tv_of_integer_particles_equals_tv_of_their_histograms():
    from smcflow_pomdp.beliefs import histogram
    x, y = RNG.integers(0, 5, size=40), RNG.integers(0, 5, size=30)
    la, lb = np.log(dirichlet(40)), np.log(dirichlet(30))
    want = float(TV()(histogram(jnp.asarray(x), jnp.asarray(la), 5), histogram(jnp.asarray(y), jnp.asarray(lb), 5)))
    assert float(TV()((x, la), (y, lb))) == pytest.approx(want, abs=1e-6)


# ----------------------------------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("b1, b2, error, words", [
    (np.array([0.5, 0.6]), np.array([0.5, 0.5]), ValueError, "b1 does not sum to one"),
    (np.array([0.5, 0.5]), np.array([1.2, -0.2]), ValueError, "b2 has negative probabilities"),
    (np.array([0.5, 0.5]), np.array([0.2, 0.3, 0.5]), ValueError, "mismatched supports"),
    (np.array([0.5, 0.5]), (np.zeros(3), np.zeros(3)), TypeError, "mismatched beliefs"),
    ((np.zeros((3, 2)), np.zeros(3)), (np.zeros((3, 1)), np.zeros(3)), ValueError, "mismatched supports"),
    ((np.zeros(3), np.zeros(4)), (np.zeros(3), np.zeros(3)), ValueError, "b1 must be"),
    ((np.zeros(3), np.full(3, -np.inf)), (np.zeros(3), np.zeros(3)), ValueError, "b1 has no particle"),
    (np.array([[0.5, 0.5]]), np.array([0.5, 0.5]), ValueError, "b1 must be a (S,) probability vector"),
    (np.array([np.nan, 1.0]), np.array([0.5, 0.5]), ValueError, "b1 holds NaN"),
])
def test_bad_beliefs_are_refused_by_name(b1, b2, error, words):
    with pytest.raises(error, match=pytest.importorskip("re").escape(words)):
        TV()(b1, b2)


def test_bad_configuration_is_refused_by_name():
    p = np.array([0.5, 0.5])
    with pytest.raises(ValueError, match=r"cost has shape \(3, 3\).*must be \(2, 2\)"):
        w1(cost=line_cost(3))(p, p)
    with pytest.raises(ValueError, match="cost must be a square"):
        w1(cost=np.ones((2, 3)))
    with pytest.raises(ValueError, match="cost must hold finite entries >= 0"):
        Sinkhorn(cost=-np.ones((2, 2)))
    with pytest.raises(ValueError, match="cost= applies to discrete beliefs"):
        w1(cost=line_cost(2))((np.zeros(2), np.zeros(2)), (np.zeros(2), np.zeros(2)))
    with pytest.raises(ValueError, match="epsilon must be a number > 0"):
        Sinkhorn(epsilon=0.0)
    with pytest.raises(ValueError, match="p must be a number >= 1"):
        Sinkhorn(p=0.5)
    with pytest.raises(ValueError, match="bandwidth must be a number > 0"):
        MMD(bandwidth=-1.0)
    with pytest.raises(ValueError, match="points has 3 rows"):
        MMD(points=np.eye(3))(p, p)
    with pytest.raises(TypeError, match="hilbert is defined for discrete beliefs"):
        Hilbert()((np.zeros(2), np.zeros(2)), (np.zeros(2), np.zeros(2)))
    with pytest.raises(ValueError, match="paired distances need batches of equal size"):
        TV().paired(dirichlet(2, 3), dirichlet(2, 4))


def test_bad_beliefs_are_refused_inside_a_users_jit():
    @jax.jit
    def distance(p, q):
        return TV()(p, q)

    assert float(distance(jnp.array([0.5, 0.5]), jnp.array([0.25, 0.75]))) == pytest.approx(0.25)
    with pytest.raises(Exception, match="b1 does not sum to one"):
        jax.block_until_ready(distance(jnp.array([0.5, 0.9]), jnp.array([0.25, 0.75])))
