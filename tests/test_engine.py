"""Engine behaviour: input checks, numerical failures, determinism, dtypes, runs, genealogy, caching."""
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

import smcflow
from smcflow.engine import _run_compiled
from smcflow.errors import ModelShapeError, SMCNumericalError


@dataclass(frozen=True)
class RandomWalk:
    """x_t = x_{t-1} + N(0, 1), log g = -x^2/2 (a simple Feynman-Kac model written by hand)."""

    n_steps: int = 5
    potential_scale: float = 1.0

    def init(self, key, n):
        return jax.random.normal(key, (n,)), jnp.zeros(n)

    def step(self, key, t, x):
        x = x + jax.random.normal(key, x.shape)
        return x, -0.5 * self.potential_scale * x**2


def _lg_filter(T=10):
    model = smcflow.plugins.get("model", "linear_gaussian", rho=0.9, sigma_x=1.0, sigma_y=0.5)
    _, ys = model.simulate(jax.random.key(0), T)
    return model, ys


# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, -3])
def test_non_positive_particle_count(n):
    with pytest.raises(ValueError, match="n_particles must be >= 1"):
        smcflow.run(RandomWalk(), jax.random.key(0), n)


@pytest.mark.parametrize("n", [2.5, True, "10", jnp.float32(4.0)])
def test_non_integer_particle_count(n):
    with pytest.raises(TypeError, match="n_particles must be a positive int"):
        smcflow.run(RandomWalk(), jax.random.key(0), n)


def test_integer_array_particle_count_is_accepted_and_a_traced_one_named():
    assert smcflow.run(RandomWalk(), jax.random.key(0), jnp.int32(50)).n_particles == 50
    assert smcflow.run(RandomWalk(), jax.random.key(0), np.int64(7)).n_particles == 7
    with pytest.raises(TypeError, match="n_particles must be a concrete int"):
        jax.jit(lambda n: smcflow.run(RandomWalk(), jax.random.key(0), n).log_evidence)(50)


@pytest.mark.parametrize("threshold", [-0.1, 1.5, float("nan")])
def test_threshold_outside_unit_interval(threshold):
    with pytest.raises(ValueError, match=r"ess_threshold must lie in \[0, 1\]"):
        smcflow.run(RandomWalk(), jax.random.key(0), 10, ess_threshold=threshold)


@pytest.mark.parametrize("threshold", ["0.5", None, [0.5]])
def test_threshold_of_the_wrong_type_is_named(threshold):
    with pytest.raises((TypeError, ValueError), match="ess_threshold must be"):
        smcflow.run(RandomWalk(), jax.random.key(0), 10, ess_threshold=threshold)


def test_bad_keys_are_named():
    with pytest.raises(TypeError, match=r"key must be a JAX PRNG key, got 0 \(int\).*jax.random.key\(0\)"):
        smcflow.run(RandomWalk(), 0, 10)
    with pytest.raises(ValueError, match=r"key must be a single PRNG key, got a batch of shape \(3,\).*n_runs"):
        smcflow.run(RandomWalk(), jax.random.split(jax.random.key(0), 3), 10)
    with pytest.raises(ValueError, match="single PRNG key"):
        smcflow.run(RandomWalk(), jax.random.split(jax.random.PRNGKey(0), 3), 10)
    with pytest.raises(TypeError, match="key must be a JAX PRNG key"):
        smcflow.run(RandomWalk(), jnp.zeros(2), 10)


def test_bad_schedule_and_errors_arguments():
    with pytest.raises(ValueError, match="schedule lists times"):
        smcflow.run(RandomWalk(n_steps=3), jax.random.key(0), 10, schedule=[0, 2])
    with pytest.raises(ValueError, match="schedule='sometimes'"):
        smcflow.run(RandomWalk(), jax.random.key(0), 10, schedule="sometimes")
    with pytest.raises(ValueError, match="errors="):
        smcflow.run(RandomWalk(), jax.random.key(0), 10, errors="ignore")
    with pytest.raises(KeyError, match="no_such_scheme"):
        smcflow.run(RandomWalk(), jax.random.key(0), 10, resampler="no_such_scheme")


def test_model_missing_methods():
    class NoStep:
        n_steps = 3

        def init(self, key, n):
            return jnp.zeros(n), jnp.zeros(n)

    with pytest.raises(TypeError, match="model NoStep has no 'step'; a FeynmanKac needs n_steps, init, step"):
        smcflow.run(NoStep(), jax.random.key(0), 10)
    assert isinstance(RandomWalk(), smcflow.FeynmanKac) and not isinstance(NoStep(), smcflow.FeynmanKac)


def test_wrong_log_weight_shape_is_named():
    class BadInit(RandomWalk):
        def init(self, key, n):
            return jnp.zeros((n, 2)), jnp.zeros((n, 1))

    with pytest.raises(ModelShapeError, match=r"BadInit.init.*log-weights must have shape \(10,\), got \(10, 1\)"):
        smcflow.run(BadInit(), jax.random.key(0), 10)


@pytest.mark.parametrize("n", [3, 10])
def test_a_hard_coded_particle_count_is_caught_before_compiling(n):
    """The shape check traces the real particle count, so a length written into the model is caught at
    every N where it is wrong (and is harmless at the one N where it is right)."""

    class Hardcoded(RandomWalk):
        def step(self, key, t, x):
            return x + jax.random.normal(key, (3,)), jnp.zeros(3)

    if n == 3:
        assert np.isfinite(float(smcflow.run(Hardcoded(), jax.random.key(0), n).log_evidence))
        return
    with pytest.raises(ModelShapeError, match="Hardcoded.step"):
        smcflow.run(Hardcoded(), jax.random.key(0), n)


def test_step_changing_particle_shape_is_named():
    class BadStep(RandomWalk):
        def step(self, key, t, x):
            return jnp.stack([x, x], -1), jnp.zeros(x.shape[0])

    with pytest.raises(ModelShapeError, match="BadStep.step must return particles like its input"):
        smcflow.run(BadStep(), jax.random.key(0), 10)


def test_vector_observation_without_event_dims_gets_a_hint():
    ssm = smcflow.StateSpaceModel(
        initial=lambda: dist.Normal(jnp.zeros(2), 1.0).to_event(1),
        transition=lambda x, t: dist.Normal(x, 1.0).to_event(1),
        observation=lambda x, t: dist.Normal(x, 1.0),  # forgot .to_event(1)
    )
    with pytest.raises(ModelShapeError, match=r"to_event\(1\)"):
        smcflow.run(smcflow.bootstrap_filter(ssm, jnp.zeros((5, 2))), jax.random.key(0), 10)


# -- numerical failures ---------------------------------------------------------------------------


class NanAt(RandomWalk):
    def step(self, key, t, x):
        x, log_g = super().step(key, t, x)
        return x, jnp.where((t == 2) & (jnp.arange(x.shape[0]) == 0), jnp.nan, log_g)


class PlusInfAt(RandomWalk):
    def step(self, key, t, x):
        x, log_g = super().step(key, t, x)
        return x, jnp.where((t == 1) & (jnp.arange(x.shape[0]) == 3), jnp.inf, log_g)


class DeadAt(RandomWalk):
    def step(self, key, t, x):
        x, log_g = super().step(key, t, x)
        return x, jnp.where(t == 1, -jnp.inf, log_g)


class HardConstraint(RandomWalk):
    """log of an indicator: -inf outside |x| < 1.5; a dead particle's later potential is NaN (as
    -inf - (-inf) in a telescoping difference would be)."""

    def init(self, key, n):
        x = jax.random.normal(key, (n,))
        return x, jnp.where(jnp.abs(x) < 1.5, 0.0, -jnp.inf)

    def step(self, key, t, x):
        alive = jnp.abs(x) < 1.5
        x = x + 0.3 * jax.random.normal(key, x.shape)
        inside = jnp.where(jnp.abs(x) < 1.5, 0.0, -jnp.inf)
        return x, jnp.where(alive, inside, jnp.nan)


class NanParticles(RandomWalk):
    """Particles turn NaN while the potentials stay finite."""

    def step(self, key, t, x):
        x = x + jax.random.normal(key, x.shape)
        return jnp.where((t == 2) & (jnp.arange(x.shape[0]) < 5), jnp.nan, x), jnp.zeros(x.shape[0])


def test_nan_potential_raises_with_time():
    with pytest.raises(SMCNumericalError, match="at time 3: a log-potential was NaN"):
        smcflow.run(NanAt(), jax.random.key(0), 50)


def test_plus_infinite_potential_is_named_as_such():
    with pytest.raises(SMCNumericalError, match=r"at time 2: a log-potential was \+inf"):
        smcflow.run(PlusInfAt(), jax.random.key(0), 50)


def test_nan_potential_flagged_never_nan():
    with pytest.warns(RuntimeWarning, match="NaN"):
        res = smcflow.run(NanAt(), jax.random.key(0), 50, errors="flag", n_runs=3)
    np.testing.assert_array_equal(res.failure, [smcflow.Failure.POTENTIAL_NAN] * 3)
    np.testing.assert_array_equal(res.failure_time, [3, 3, 3])
    assert np.isfinite(res.log_evidence).all()
    assert np.isfinite(res.log_weights).any() and not np.isnan(res.log_weights).any()


def test_all_weights_dead():
    with pytest.raises(SMCNumericalError, match="every particle has weight zero"):
        smcflow.run(DeadAt(), jax.random.key(0), 50)
    with pytest.warns(RuntimeWarning):
        res = smcflow.run(DeadAt(), jax.random.key(0), 50, errors="flag")
    assert int(res.failure) == smcflow.Failure.ALL_DEAD and int(res.failure_time) == 2
    assert res.log_evidence == -jnp.inf
    assert not np.isnan(np.asarray(res.ess)).any() and not np.isnan(np.asarray(res.particles)).any()
    assert "every particle has weight zero" in res.failure_message()


def test_minus_infinity_is_a_dead_particle_not_a_failure():
    res = smcflow.run(HardConstraint(n_steps=8), jax.random.key(0), 400, schedule="never")
    assert int(res.failure) == 0
    live = np.isfinite(np.asarray(res.log_weights))
    assert 0 < live.sum() < 400 and np.all(np.abs(np.asarray(res.particles)[live]) < 1.5)
    # with resampling the dead are replaced and the run goes on
    res = smcflow.run(HardConstraint(n_steps=8), jax.random.key(0), 400)
    assert int(res.failure) == 0 and np.isfinite(float(res.log_evidence))


def test_nan_in_live_particles_is_reported():
    with pytest.raises(SMCNumericalError, match="a particle of positive weight holds NaN"):
        smcflow.run(NanParticles(), jax.random.key(0), 50, schedule="never")
    with pytest.warns(RuntimeWarning, match="holds NaN"):
        res = smcflow.run(NanParticles(), jax.random.key(0), 50, schedule="always", errors="flag")
    assert int(res.failure) == smcflow.Failure.PARTICLES_NAN and int(res.failure_time) == 3


def test_errors_raise_inside_a_user_jit_and_vmap():
    """errors="raise" holds under jit / vmap: a host callback raises when the compiled run finishes."""
    with pytest.raises(Exception, match="a log-potential was NaN") as info:
        jax.jit(lambda k: smcflow.run(NanAt(), k, 50).log_evidence)(jax.random.key(0)).block_until_ready()
    assert "SMCNumericalError" in str(info.value)
    keys = jax.random.split(jax.random.key(0), 2)
    with pytest.raises(Exception, match="every particle has weight zero"):
        jax.vmap(lambda k: smcflow.run(DeadAt(), k, 50).log_evidence)(keys).block_until_ready()
    # "flag" returns the codes instead
    codes = jax.jit(lambda k: smcflow.run(NanAt(), k, 50, errors="flag").failure)(jax.random.key(0))
    assert int(codes) == smcflow.Failure.POTENTIAL_NAN


# -- determinism, dtypes, runs --------------------------------------------------------------------


def test_same_key_same_result_different_key_different():
    a = smcflow.run(RandomWalk(), jax.random.key(42), 100)
    b = smcflow.run(RandomWalk(), jax.random.key(42), 100)
    c = smcflow.run(RandomWalk(), jax.random.key(43), 100)
    np.testing.assert_array_equal(a.particles, b.particles)
    assert a.log_evidence == b.log_evidence
    assert a.log_evidence != c.log_evidence


def test_raw_uint32_keys_and_other_prng_impls():
    for key in (jax.random.PRNGKey(0), jax.random.key(0, impl="rbg"), jax.random.key(0, impl="unsafe_rbg")):
        res = smcflow.run(RandomWalk(), key, 64, n_runs=2)
        assert np.isfinite(res.log_evidence).all()


def test_float32_default_float64_when_enabled():
    assert smcflow.run(RandomWalk(), jax.random.key(0), 16).log_evidence.dtype == jnp.float32
    with jax.enable_x64(True):
        res = smcflow.run(RandomWalk(), jax.random.key(0), 16)
        assert res.log_evidence.dtype == jnp.float64 and res.log_weights.dtype == jnp.float64


def test_run_axis_shapes():
    res = smcflow.run(RandomWalk(n_steps=4), jax.random.key(0), 30, n_runs=6, keep_ancestors=True)
    assert res.n_runs == 6 and res.n_particles == 30
    assert res.particles.shape == (6, 30) and res.log_weights.shape == (6, 30)
    assert res.ess.shape == (6, 5) and res.resampled.shape == (6, 5) and res.ancestors.shape == (6, 5, 30)
    np.testing.assert_allclose(jax.scipy.special.logsumexp(res.log_weights, -1), 0.0, atol=1e-5)
    assert res.resample(jax.random.key(1)).shape == (6, 30)
    # runs differ from each other
    assert len(np.unique(np.asarray(res.log_evidence))) == 6


def test_no_genealogy_by_default():
    res = smcflow.run(RandomWalk(), jax.random.key(0), 30)
    assert res.ancestors is None and res.history is None
    with pytest.raises(ValueError, match="keep_history=True and keep_ancestors=True"):
        res.paths()


class Lineage(NamedTuple):
    now: jax.Array
    before: jax.Array


@dataclass(frozen=True)
class Remembering:
    """Particles carry their previous position, so genealogy can be checked exactly."""

    n_steps: int = 6

    def init(self, key, n):
        x = jax.random.normal(key, (n,))
        return Lineage(x, jnp.full((n,), jnp.inf)), jnp.zeros(n)  # no NaN: NaN in a live particle is a failure

    def step(self, key, t, state):
        x = state.now + jax.random.normal(key, state.now.shape)
        return Lineage(x, state.now), -2.0 * x**2


def test_paths_follow_ancestors():
    res = smcflow.run(Remembering(), jax.random.key(3), 50, keep_ancestors=True, keep_history=True, schedule="always")
    paths = res.paths()
    assert paths.now.shape == (7, 50)
    np.testing.assert_array_equal(paths.now[-1], res.particles.now)
    # each path's time-t point is the 'before' of its time-(t+1) point
    np.testing.assert_array_equal(paths.now[:-1], paths.before[1:])
    # resampling every time loses lineages: fewer distinct ancestors at time 0 than particles
    assert len(np.unique(np.asarray(paths.now[0]))) < 50


def test_changing_threshold_or_data_does_not_recompile():
    model, ys = _lg_filter()
    smcflow.run(smcflow.bootstrap_filter(model.ssm, ys), jax.random.key(0), 64, ess_threshold=0.5)
    size = _run_compiled._cache_size()
    smcflow.run(smcflow.bootstrap_filter(model.ssm, ys), jax.random.key(0), 64, ess_threshold=0.3)
    smcflow.run(smcflow.bootstrap_filter(model.ssm, ys + 1.0), jax.random.key(1), 64, ess_threshold=0.9)
    assert _run_compiled._cache_size() == size
    smcflow.run(smcflow.bootstrap_filter(model.ssm, ys), jax.random.key(0), 65)
    assert _run_compiled._cache_size() == size + 1


def test_traced_parameters_can_be_vmapped():
    """A pytree model's array leaves are arguments: sweep a parameter with vmap over whole runs."""

    @jax.tree_util.register_dataclass
    @dataclass(frozen=True)
    class Scaled(RandomWalk):
        potential_scale: jax.Array = 1.0
        n_steps: int = 5

    scales = jnp.asarray([0.5, 1.0, 2.0])
    log_z = jax.vmap(lambda s: smcflow.run(Scaled(potential_scale=s), jax.random.key(0), 256).log_evidence)(scales)
    assert log_z.shape == (3,) and bool(jnp.all(jnp.diff(log_z) < 0))


def test_run_inside_user_jit():
    model, ys = _lg_filter()
    f = jax.jit(lambda k: smcflow.run(smcflow.bootstrap_filter(model.ssm, ys), k, 128).log_evidence)
    assert np.isfinite(f(jax.random.key(0)))
