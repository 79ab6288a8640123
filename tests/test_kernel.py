"""The public one-step kernel: stepping by hand reproduces run bitwise; compile once per configuration
(static parts compared by value)."""
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import smcflow
from smcflow.engine import _run_compiled, _step_compiled


@pytest.fixture(scope="module")
def lg():
    model = smcflow.plugins.get("model", "linear_gaussian", rho=0.9, sigma_x=1.0, sigma_y=0.5)
    _, ys = model.simulate(jax.random.key(0), 25)
    return model, ys


@pytest.mark.parametrize("options", [
    {},
    {"schedule": "always", "resampler": "multinomial"},
    {"schedule": [3, 7, 8], "resampler": "stratified"},
    {"ess_threshold": 0.9, "resampler": "ssp"},
])
def test_stepping_by_hand_is_bitwise_run(lg, options):
    model, ys = lg
    fk = smcflow.bootstrap_filter(model.ssm, ys)
    key, n = jax.random.key(3), 300
    res = smcflow.run(fk, key, n, keep_ancestors=True, **options)
    k_init, k_steps = jax.random.split(key)
    state = smcflow.init_state(fk, k_init, n)
    infos = []
    for t in range(fk.n_steps):
        state, info = smcflow.step(fk, state, k_steps, t, **options)
        infos.append(info)
    np.testing.assert_array_equal(state.particles, res.particles)
    np.testing.assert_array_equal(state.log_weights, res.log_weights)
    assert float(state.log_evidence) == float(res.log_evidence)
    np.testing.assert_array_equal([i.ess for i in infos], res.ess[1:])
    np.testing.assert_array_equal([i.resampled for i in infos], res.resampled[1:])
    np.testing.assert_array_equal([i.log_evidence_increment for i in infos], res.log_evidence_increments[1:])
    np.testing.assert_array_equal(np.stack([i.ancestors for i in infos]), res.ancestors[1:])
    assert np.asarray(res.resampled).any()


def test_step_compiles_once_for_new_data_and_works_inside_jit(lg):
    model, ys = lg
    state = smcflow.init_state(smcflow.bootstrap_filter(model.ssm, ys), jax.random.key(0), 64)
    smcflow.step(smcflow.bootstrap_filter(model.ssm, ys), state, jax.random.key(1), 0)
    size = _step_compiled._cache_size()
    for t in range(1, 4):  # new observations, new time: same program
        smcflow.step(smcflow.bootstrap_filter(model.ssm, ys + t), state, jax.random.key(1), t)
    assert _step_compiled._cache_size() == size
    fk = smcflow.bootstrap_filter(model.ssm, ys)
    jitted = jax.jit(lambda s, k: smcflow.step(fk, s, k, 2)[0].log_evidence)
    assert np.isfinite(float(jitted(state, jax.random.key(2))))


@dataclass(frozen=True)
class Config:
    """A static configuration object (not a pytree): compared by value."""

    scale: float = 1.0
    name: str = "walk"


def _potential(x, cfg):
    return -0.5 * cfg.scale * x**2


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class ConfiguredWalk:
    config: Config
    shift: jax.Array
    n_steps: int = 4

    def init(self, key, n):
        return jax.random.normal(key, (n,)), jnp.zeros(n)

    def step(self, key, t, x):
        x = x + self.shift + jax.random.normal(key, x.shape)
        return x, _potential(x, self.config)


def test_equal_configurations_never_recompile():
    smcflow.run(ConfiguredWalk(Config(), jnp.asarray(0.1)), jax.random.key(0), 32)
    size = _run_compiled._cache_size()
    # a new but equal configuration object and new array values: the same program
    smcflow.run(ConfiguredWalk(Config(), jnp.asarray(0.7)), jax.random.key(1), 32)
    assert _run_compiled._cache_size() == size
    # a configuration that differs in value is a new program
    smcflow.run(ConfiguredWalk(Config(scale=2.0), jnp.asarray(0.1)), jax.random.key(0), 32)
    assert _run_compiled._cache_size() == size + 1


def test_unhashable_static_parts_fall_back_to_identity():
    """An unregistered object holding arrays cannot be hashed by value: it is keyed by identity (a new
    object recompiles) and never confused with another one."""

    class Holder:  # not a pytree, not hashable by value
        __hash__ = None

        def __init__(self, a):
            self.a = a

        def __eq__(self, other):
            return self.a == other.a  # elementwise: ambiguous as a bool

    @jax.tree_util.register_dataclass
    @dataclass(frozen=True)
    class Walk:
        holder: Holder
        n_steps: int = 2

        def init(self, key, n):
            return jax.random.normal(key, (n,)) + self.holder.a[0], jnp.zeros(n)

        def step(self, key, t, x):
            return x + jax.random.normal(key, x.shape), jnp.zeros(x.shape[0])

    a = smcflow.run(Walk(Holder(np.array([0.0, 1.0]))), jax.random.key(0), 16)
    b = smcflow.run(Walk(Holder(np.array([100.0, 1.0]))), jax.random.key(0), 16)
    assert float(jnp.mean(b.particles) - jnp.mean(a.particles)) == pytest.approx(100.0, abs=1e-3)
