"""Off-policy evaluation on the switching Tiger, and the exact value it is judged against.

* :func:`policy_value` (a linear solve on the belief graph) agrees with a second route: the
  occupancy measure of the beliefs propagated forward level by level, ``V = sum_t discount^t
  E[r(b_t)]`` (control: the value of the same policy in a model with another flip probability);
  and, slow, with long Monte Carlo rollouts of the hidden states (Student-t);
* per-decision importance sampling over the logged beliefs is unbiased for the target's value over
  the logged horizon, computed exactly by the forward route (Student-t over episodes; control: the
  propensities of the greedy behaviour without its exploration);
* fitted-Q evaluation on an epsilon-net of the logged beliefs gets closer to the exact value as the
  data grow (slow; the numbers are in docs/pomdp.md);
* bad input to the models, histories, simulation and estimators raises errors naming the argument.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from mc import assert_mean_close
from smcflow_pomdp import discrete_pomdp, switching_tiger, tiger
from smcflow_pomdp.filters import bayes_beliefs, check_history
from smcflow_pomdp.ope import (
    discounted_returns,
    fqe_value,
    host_probs,
    importance_sampling_returns,
    policy_value,
    simulate,
)
from smcflow_pomdp.policies import Softened, TigerThreshold

FLIP, TARGET, BEHAVIOUR = 0.1, TigerThreshold(0.9), Softened(TigerThreshold(0.9), 0.3)


def forward_value(pomdp, policy, horizon, prune=1e-13):
    """``sum_{t < horizon} discount^t E[r_pi(b_t)]`` by pushing the law of b_t forward (float64).

    Beliefs equal to 1e-10 are merged; branches of probability below ``prune`` are dropped and their
    mass returned, so the truncation error is at most ``dropped * max|R| / (1 - discount)``.
    """
    T, Z, R = (np.asarray(a, np.float64) for a in (pomdp.transition_matrix, pomdp.observation_matrix, pomdp.rewards))
    gamma = float(pomdp.discount)
    beliefs, mass = np.asarray(pomdp.initial_belief, np.float64)[None], np.ones(1)
    value, dropped = 0.0, 0.0
    for t in range(horizon):
        pi = host_probs(policy, beliefs)
        value += gamma**t * np.sum(mass * np.einsum("ka,as,ks->k", pi, R, beliefs))
        children, weights = [], []
        for a in range(T.shape[0]):
            for o in range(Z.shape[2]):
                joint = (beliefs @ T[a]) * Z[a, :, o]
                p = joint.sum(1)
                keep = p > 0
                children.append(joint[keep] / p[keep, None])
                weights.append(mass[keep] * pi[keep, a] * p[keep])
        children, weights = np.concatenate(children), np.concatenate(weights)
        small = weights < prune
        dropped += gamma ** (t + 1) * weights[small].sum()
        children, weights = children[~small], weights[~small]
        unique, inverse = np.unique(np.round(children, 10), axis=0, return_inverse=True)
        beliefs, mass = unique, np.bincount(inverse.ravel(), weights=weights)
    return value, dropped


def value_bracket(pomdp, policy, horizon):
    value, dropped = forward_value(pomdp, policy, horizon)
    r = np.abs(np.asarray(pomdp.rewards)).max() / (1 - float(pomdp.discount))
    return value, dropped * r


def test_exact_policy_value_agrees_with_forward_occupancy():
    for model in (tiger(), switching_tiger(FLIP)):
        exact = policy_value(model, TARGET, tol=1e-4)
        assert exact.lower <= exact.value <= exact.upper and exact.upper - exact.lower <= 1e-4
        # horizon 300: the tail beyond it is at most 0.95^300 * 100 / 0.05 = 4e-4
        value, slack = value_bracket(model, TARGET, 300)
        tail = float(model.discount) ** 300 * 100 / (1 - float(model.discount))
        print(f"policy_value {exact.value:.5f}, forward {value:.5f} (slack {slack:.1e}, tail {tail:.1e})")
        assert abs(exact.value - value) <= 1e-4 + slack + tail + 1e-6 * abs(value)
    wrong = policy_value(switching_tiger(0.12), TARGET, tol=1e-4).value  # negative control: another flip
    assert abs(wrong - value) > 10 * (1e-4 + slack + tail), "negative control not caught"


@pytest.mark.slow
def test_exact_policy_value_agrees_with_monte_carlo_rollouts():
    model = switching_tiger(FLIP)
    exact = policy_value(model, TARGET).value
    horizon = 300
    data = simulate(model, TARGET, jax.random.key(1), 40_000, horizon)
    returns = np.asarray(discounted_returns(data.rewards, 0.95), np.float64)
    tail = 0.95**horizon * 100 / 0.05
    assert_mean_close(returns, exact, "discounted returns of the target policy", floor=tail)


def test_importance_sampling_is_unbiased_for_the_finite_horizon_value():
    model, horizon = switching_tiger(FLIP), 8
    want, slack = value_bracket(model, TARGET, horizon)
    assert slack < 1e-6
    data = simulate(model, BEHAVIOUR, jax.random.key(2), 20_000, horizon)
    assert_mean_close(np.asarray(importance_sampling_returns(data, TARGET, 0.95), np.float64), want,
                      "per-decision importance sampling")
    # negative control: the behaviour's propensities taken without its exploration (greedy: 1)
    greedy = data._replace(propensities=jnp.ones_like(data.propensities))
    with pytest.raises(AssertionError):
        assert_mean_close(np.asarray(importance_sampling_returns(greedy, TARGET, 0.95), np.float64), want,
                          "negative control")


@pytest.mark.slow
def test_fitted_q_error_shrinks_with_data():
    model = switching_tiger(FLIP)
    exact = policy_value(model, TARGET).value
    sizes, seeds = (100, 3000), 5
    data = simulate(model, BEHAVIOUR, jax.random.key(10), seeds * sum(sizes), 60)
    errors, start = {}, 0
    for n in sizes:
        estimates = []
        for _ in range(seeds):  # disjoint slices of one simulation: independent data sets
            part = jax.tree_util.tree_map(lambda a, lo=start, hi=start + n: a[lo:hi], data)
            estimates.append(fqe_value(part, TARGET, 0.05, 0.95))
            start += n
        errors[n] = np.mean([abs(e.value - exact) for e in estimates])
        assert all(e.n_cells <= 25 for e in estimates)  # the covering number of the logged beliefs at 0.05
    print(f"FQE mean |error|: {errors}")
    assert errors[3000] < errors[100] and errors[3000] < 1.5


# ----------------------------------------------------------------------------------------------------
# models and bad input
# ----------------------------------------------------------------------------------------------------


def test_tiger_has_the_stated_constants():
    m = tiger()
    assert m.state_names == ("tiger-left", "tiger-right")
    assert m.action_names == ("listen", "open-left", "open-right")
    np.testing.assert_allclose(m.rewards, [[-1, -1], [-100, 10], [10, -100]])
    np.testing.assert_allclose(m.observation_matrix[0], [[0.85, 0.15], [0.15, 0.85]])
    np.testing.assert_allclose(m.observation_matrix[1:], 0.5)  # opening: an uninformative observation
    np.testing.assert_allclose(m.transition_matrix[0], np.eye(2))
    np.testing.assert_allclose(m.transition_matrix[1:], 0.5)  # opening resets the tiger
    assert float(m.discount) == pytest.approx(0.95)
    np.testing.assert_allclose(switching_tiger(0.1).transition_matrix[0], [[0.9, 0.1], [0.1, 0.9]], rtol=1e-6)


def test_bad_models_are_refused_by_name():
    T, Z, R, b0 = np.full((1, 2, 2), 0.5), np.full((1, 2, 2), 0.5), np.zeros((1, 2)), np.array([0.5, 0.5])
    with pytest.raises(ValueError, match="transition_matrix must sum to 1"):
        discrete_pomdp(np.full((1, 2, 2), 0.6), Z, R, b0, 0.9)
    with pytest.raises(ValueError, match="observation_matrix must hold finite probabilities >= 0"):
        discrete_pomdp(T, np.array([[[1.5, -0.5], [0.5, 0.5]]]), R, b0, 0.9)
    with pytest.raises(ValueError, match=r"rewards must have shape \(1, 2\)"):
        discrete_pomdp(T, Z, np.zeros(2), b0, 0.9)
    with pytest.raises(ValueError, match=r"initial_belief must have shape \(2,\)"):
        discrete_pomdp(T, Z, R, np.ones(3) / 3, 0.9)
    with pytest.raises(ValueError, match=r"discount must lie in \[0, 1\)"):
        discrete_pomdp(T, Z, R, b0, 1.0)
    with pytest.raises(ValueError, match="flip must lie in"):
        switching_tiger(1.5)
    with pytest.raises(ValueError, match="threshold must lie in"):
        TigerThreshold(0.4)


def test_bad_histories_are_refused_by_name():
    m = tiger()
    with pytest.raises(ValueError, match="actions and observations must have the same shape"):
        check_history(m, jnp.zeros(3, jnp.int32), jnp.zeros(4, jnp.int32))
    with pytest.raises(TypeError, match="actions must be integer"):
        check_history(m, jnp.zeros(3), jnp.zeros(3, jnp.int32))
    with pytest.raises(ValueError, match=r"actions must lie in \[0, 3\)"):
        check_history(m, jnp.array([0, 3]), jnp.array([0, 0]))
    with pytest.raises(ValueError, match=r"observations must lie in \[0, 2\)"):
        check_history(m, jnp.array([0, 0]), jnp.array([0, 2]))
    impossible = discrete_pomdp(np.eye(2)[None], np.eye(2)[None], np.zeros((1, 2)), np.array([1.0, 0.0]), 0.9)
    with pytest.raises(ValueError, match="observation of probability zero"):
        bayes_beliefs(impossible, jnp.array([0]), jnp.array([1]))
    with pytest.raises(ValueError, match="initial_belief does not sum to one"):
        bayes_beliefs(m, jnp.array([0]), jnp.array([1]), initial_belief=jnp.array([0.5, 0.6]))
    with pytest.raises(ValueError, match="n_episodes must be an int >= 1"):
        simulate(m, TARGET, jax.random.key(0), 0, 5)


def test_fitted_q_refuses_a_target_that_takes_unlogged_actions():
    listener = Softened(TigerThreshold(1.0), 0.0)  # never opens a door (beliefs never reach 1)
    data = simulate(tiger(), listener, jax.random.key(0), 20_000, 8)  # the shapes of the IS test: no compile
    with pytest.raises(ValueError, match=r"takes actions \[1, 2\] that the logged data never take"):
        fqe_value(data, TigerThreshold(0.8), 0.0, 0.95)
