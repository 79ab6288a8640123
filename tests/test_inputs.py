"""Clear errors for bad inputs (weights files, state-space models, score samplers), and the rates of
the Monte Carlo assertions in ``mc.py`` checked by simulation."""
import dataclasses
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from mc import (
    ALPHA,
    allowed_deviation,
    assert_log_evidence_consistent,
    assert_mean_close,
    assert_unbiased_evidence,
    mean_check,
)
from scipy import stats

import smcflow
from smcflow.io import load_weights, save_weights

# ---------------------------------------------------------------------------------------------------
# corrupted weights files

NOT_AN_ARCHIVE = "is not a valid smcflow weights archive \\(.npz\\)"


def _good_archive(tmp_path, compress=False):
    params = {"net": {"w": np.arange(200.0).reshape(20, 10), "b": np.ones(10, np.float32)},
              "half": jnp.ones(3, jnp.bfloat16)}
    return save_weights(tmp_path / f"good_{compress}", params, compress=compress)


def _refused(path, chained=True):
    with pytest.raises(ValueError, match=NOT_AN_ARCHIVE) as info:
        load_weights(path)
    assert str(path) in str(info.value)
    if chained:
        assert info.value.__cause__ is not None  # the original error is chained
    return info.value


def test_empty_weights_file_names_the_file(tmp_path):
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    assert isinstance(_refused(empty).__cause__, EOFError)


def test_random_bytes_are_not_an_archive(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    _refused(junk)


@pytest.mark.parametrize("compress", [False, True])
def test_truncated_archive_names_the_file(tmp_path, compress):
    data = _good_archive(tmp_path, compress).read_bytes()
    cut = tmp_path / "cut.npz"
    cut.write_bytes(data[: len(data) // 2])
    assert isinstance(_refused(cut).__cause__, zipfile.BadZipFile)
    # every truncation point is refused the same way, never with a raw zipfile/EOF error
    for length in range(0, len(data), max(len(data) // 97, 1)):
        cut.write_bytes(data[:length])
        _refused(cut)


@pytest.mark.parametrize("compress", [False, True])
def test_corrupted_member_is_refused(tmp_path, compress):
    good = _good_archive(tmp_path, compress)
    data = bytearray(good.read_bytes())
    with zipfile.ZipFile(good) as archive:  # a byte inside the data of the largest member
        info = max(archive.infolist(), key=lambda i: i.compress_size)
    data[info.header_offset + 30 + len(info.filename) + len(info.extra) + info.compress_size // 2] ^= 0xFF
    bad = tmp_path / "flipped.npz"
    bad.write_bytes(bytes(data))
    _refused(bad)


def test_archive_with_foreign_members_is_refused(tmp_path):
    other = tmp_path / "other.npz"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("readme.txt", "not an array")
    assert "member 'readme.txt' is not a .npy array" in str(_refused(other, chained=False))


def test_found_without_suffix_and_still_named(tmp_path):
    (tmp_path / "w.npz").write_bytes(b"PK\x03\x04 truncated")
    error = _refused(tmp_path / "w.npz")
    with pytest.raises(ValueError, match=NOT_AN_ARCHIVE):
        load_weights(tmp_path / "w")  # the ".npz" fallback reports the file it read
    assert "w.npz" in str(error)


def test_good_archives_and_old_errors_unchanged(tmp_path):
    for compress in (False, True):
        loaded = load_weights(_good_archive(tmp_path, compress))
        np.testing.assert_array_equal(loaded["net"]["w"], np.arange(200.0).reshape(20, 10))
        assert loaded["half"].dtype == jnp.bfloat16
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, x=np.array([{"evil": 1}], dtype=object))
    with pytest.raises(ValueError, match="pickle"):
        load_weights(pickled)
    with pytest.raises(FileNotFoundError):
        load_weights(tmp_path / "missing.npz")


# ---------------------------------------------------------------------------------------------------
# StateSpaceModel parts and simulate(n_times)


def _parts():
    return dict(initial=lambda: dist.Normal(0.0, 1.0),
                transition=lambda x, t: dist.Normal(0.9 * x, 0.5),
                observation=lambda x, t: dist.Normal(x, 1.0))


@pytest.mark.parametrize("part", ["initial", "transition", "observation"])
def test_missing_ssm_part_is_named_at_construction(part):
    with pytest.raises(TypeError, match=f"StateSpaceModel.{part} must be callable {part}\\(.*got None"):
        smcflow.StateSpaceModel(**{**_parts(), part: None})
    with pytest.raises(TypeError, match=f"StateSpaceModel.{part} must be callable.*got int 3"):
        smcflow.StateSpaceModel(**{**_parts(), part: 3})
    # a distribution is callable in numpyro, but the part must be a function returning one
    with pytest.raises(TypeError, match=f"StateSpaceModel.{part}.*distribution Normal itself; wrap it"):
        smcflow.StateSpaceModel(**{**_parts(), part: dist.Normal(0.0, 1.0)})
    with pytest.raises(TypeError, match=f"StateSpaceModel.{part} must be callable"):
        dataclasses.replace(smcflow.StateSpaceModel(**_parts()), **{part: None})


def test_ssm_check_does_not_break_pytree_operations():
    ssm = smcflow.StateSpaceModel(**_parts())
    leaves, treedef = jax.tree_util.tree_flatten(ssm)
    assert len(leaves) == 3
    # JAX rebuilds pytrees with placeholders (axis specs, None, proxies): no check there
    assert jax.tree_util.tree_map(lambda _: None, ssm).transition is None
    assert jax.tree_util.tree_unflatten(treedef, [object()] * 3) is not None
    assert jax.tree_util.tree_unflatten(treedef, leaves) == ssm
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(ssm)[0]]
    assert paths == [".initial", ".transition", ".observation"]
    # and a filter still runs (through jit, with the model split into arrays and static parts)
    _, ys = ssm.simulate(jax.random.key(0), 6)
    res = smcflow.run(smcflow.bootstrap_filter(ssm, ys), jax.random.key(1), 32)
    assert np.isfinite(float(res.log_evidence))
    xs = jax.vmap(lambda s, k: s.simulate(k, 4)[0], in_axes=(None, 0))(ssm, jax.random.split(jax.random.key(2), 3))
    assert xs.shape == (3, 4)


def test_ssm_with_a_callable_pytree_part():
    @jax.tree_util.register_dataclass
    @dataclasses.dataclass(frozen=True)
    class AR:
        phi: jax.Array

        def __call__(self, x, t):
            return dist.Normal(self.phi * x, 0.5)

    ssm = smcflow.StateSpaceModel(_parts()["initial"], AR(jnp.asarray(0.8)), _parts()["observation"])
    # new parameters, same structure (the plain functions are leaves too, kept as they are)
    swapped = jax.tree_util.tree_map(lambda a: jnp.full_like(a, 0.5) if isinstance(a, jax.Array) else a, ssm)
    assert float(swapped.transition.phi) == 0.5
    # built under jit / vmap with a traced part: the check passes (a callable) and nothing recompiles
    def simulate(phi):
        model = smcflow.StateSpaceModel(_parts()["initial"], AR(phi), _parts()["observation"])
        return model.simulate(jax.random.key(0), 4)[0]

    assert jax.jit(simulate)(0.8).shape == (4,)
    assert jax.vmap(simulate)(jnp.array([0.1, 0.5, 0.9])).shape == (3, 4)


@pytest.mark.parametrize("n_times", [0, -1, -10])
def test_simulate_refuses_no_time_points(n_times):
    ssm = smcflow.StateSpaceModel(**_parts())
    with pytest.raises(ValueError, match=f"n_times must be >= 1.*got {n_times}"):
        ssm.simulate(jax.random.key(0), n_times)


@pytest.mark.parametrize("n_times", [2.0, True, "3", None])
def test_simulate_refuses_non_int_n_times(n_times):
    ssm = smcflow.StateSpaceModel(**_parts())
    with pytest.raises(TypeError, match="n_times must be an int >= 1"):
        ssm.simulate(jax.random.key(0), n_times)


def test_simulate_lengths():
    ssm = smcflow.StateSpaceModel(**_parts())
    for n_times in (1, np.int64(2), 5):
        xs, ys = ssm.simulate(jax.random.key(0), n_times)
        assert xs.shape == ys.shape == (int(n_times),)
    with pytest.raises(TypeError, match="n_times.*traced"):
        jax.jit(lambda n: ssm.simulate(jax.random.key(0), n))(3)


# ---------------------------------------------------------------------------------------------------
# score sampler event_shape


def _score(x, t):
    return -x


def test_int_event_shape_shows_the_fix():
    from smcflow_diffusion.score_sampler import score_sampler

    with pytest.raises(TypeError, match=r"event_shape must be a tuple of ints.*got the int 64; use event_shape=\(64,\)"):
        score_sampler(_score, event_shape=64)
    with pytest.raises(TypeError, match=r"use event_shape=\(64,\)"):
        smcflow.plugins.get("sampler", "score", score=_score, event_shape=64)
    with pytest.raises(TypeError, match=r"use event_shape=\(3,\)"):
        score_sampler(_score, event_shape=np.int64(3))


@pytest.mark.parametrize("event_shape,error,message", [
    ((), ValueError, "must not be empty"),
    ((0,), ValueError, ">= 1"),
    ((8, -1), ValueError, ">= 1"),
    ((2.5,), TypeError, "entry 0 of \\(2.5,\\) is float"),
    ((4, "a"), TypeError, "entry 1"),
    ((True,), TypeError, "entry 0 of \\(True,\\) is bool"),
    ("64", TypeError, "got str '64'"),
    (None, TypeError, "got NoneType"),
    (64.0, TypeError, "got float 64.0"),
])
def test_bad_event_shapes_are_refused(event_shape, error, message):
    from smcflow_diffusion.score_sampler import ScoreSampler, score_sampler, uniform_times
    from smcflow_diffusion.schedules import VariancePreserving

    with pytest.raises(error, match=f"event_shape.*{message}"):
        score_sampler(_score, event_shape=event_shape)
    with pytest.raises(error, match=f"event_shape.*{message}"):  # the dataclass itself checks too
        ScoreSampler(_score, VariancePreserving(), uniform_times(VariancePreserving(), 4), event_shape=event_shape)


def test_good_event_shapes_are_normalised():
    from smcflow_diffusion.score_sampler import score_sampler

    assert score_sampler(_score, [np.int64(8), 8]).event_shape == (8, 8)
    sampler = score_sampler(_score, (2,), n_steps=4, name="mine")
    assert jax.tree_util.tree_map(lambda a: a, sampler).event_shape == (2,)
    assert sampler.init(jax.random.key(0), 5).shape == (5, 2)


# ---------------------------------------------------------------------------------------------------
# mc.py: the stated false-alarm rates hold, and wrong answers are caught

N_EXPERIMENTS = 20_000


def _false_alarm_fraction(rng, n_runs, n_entries, alpha, shift_se=0.0, chunk=5_000):
    """Fraction of ``N_EXPERIMENTS`` fake experiments (each ``n_runs`` N(0, 1) runs of ``n_entries``
    entries, the first entry's true mean shifted by ``shift_se`` standard errors) that ``mean_check`` fails."""
    failed = 0
    for _ in range(N_EXPERIMENTS // chunk):
        samples = rng.standard_normal((chunk, n_runs, n_entries))
        samples[..., 0] += shift_se / np.sqrt(n_runs)
        failed += int(np.sum(~mean_check(samples, 0.0, alpha=alpha, batch_axes=1).passed))
    return failed / N_EXPERIMENTS


@pytest.mark.parametrize("n_runs", [8, 32])
@pytest.mark.parametrize("n_entries", [1, 30])
def test_mc_false_alarm_rate_under_the_null(n_runs, n_entries):
    alpha = 0.01  # large enough to be measured with 20 000 experiments (sd of the fraction: 7e-4)
    rng = np.random.default_rng(1000 * n_runs + n_entries)
    fraction = _false_alarm_fraction(rng, n_runs, n_entries, alpha)
    # exact for one entry, 1 - (1 - alpha/30)^30 ~ alpha for 30 independent ones (Bonferroni)
    assert 0.7 * alpha <= fraction <= 1.3 * alpha, fraction


def test_mc_gaussian_allowance_would_understate_the_rate():
    """The old rule (a Gaussian quantile for an estimated standard error) fails far too often at n = 8."""
    rng = np.random.default_rng(7)
    samples = rng.standard_normal((N_EXPERIMENTS, 8))
    t = samples.mean(1) / (samples.std(1, ddof=1) / np.sqrt(8))
    alpha = 0.01
    gaussian = np.mean(np.abs(t) > stats.norm.ppf(1 - alpha / 2))
    student = np.mean(np.abs(t) > allowed_deviation(8, 1, alpha))
    assert gaussian > 3 * alpha  # ~0.037
    assert student < 1.3 * alpha
    # and the fixed 4.5 standard errors of before: 2.8e-3 at n = 8, far above its quoted 7e-6
    assert 2 * stats.t.sf(4.5, df=7) > 100 * 7e-6


def test_mc_wrong_answer_is_caught():
    """Negative control: a mean wrong by 6 standard errors."""
    rng = np.random.default_rng(11)
    # at alpha = 0.01 and n = 32 it is caught essentially always (noncentral t: 0.999)
    assert _false_alarm_fraction(rng, 32, 1, 0.01, shift_se=6.0) >= 0.99
    # at the default alpha = 1e-5 (allowance 5.27 se at n = 32) the power is that of the noncentral t
    c = allowed_deviation(32, 1, ALPHA)
    power = stats.nct.sf(c, 31, 6.0) + stats.nct.cdf(-c, 31, 6.0)  # ~0.74
    assert abs(_false_alarm_fraction(rng, 32, 1, ALPHA, shift_se=6.0) - power) < 0.02
    # one wrong entry among 30 (allowance 6.46 se at n = 32): 9 standard errors off is caught
    assert _false_alarm_fraction(rng, 32, 30, ALPHA, shift_se=9.0) >= 0.95

    # the assertion itself, on one data set wrong by exactly 6 (estimated) standard errors
    samples = rng.standard_normal(32)
    se = samples.std(ddof=1) / np.sqrt(32)
    with pytest.raises(AssertionError, match="largest \\|t\\| = 6.00 > allowed 5.27"):
        assert_mean_close(samples, samples.mean() + 6 * se, "6 se off")
    assert_mean_close(samples, samples.mean() + 5 * se, "5 se off")  # inside the allowance of 5.27
    vector = rng.standard_normal((32, 30))
    expected = vector.mean(0)
    expected[3] += 7 * vector[:, 3].std(ddof=1) / np.sqrt(32)
    with pytest.raises(AssertionError, match="over 30 check"):
        assert_mean_close(vector, expected, "one of 30 entries 7 se off")


def test_mc_allowances():
    assert allowed_deviation(32) == pytest.approx(5.27, abs=0.01)
    assert allowed_deviation(8) == pytest.approx(11.21, abs=0.01)
    assert allowed_deviation(32, 30) == pytest.approx(6.46, abs=0.01)
    assert allowed_deviation(10**6) == pytest.approx(stats.norm.ppf(1 - ALPHA / 2), abs=1e-3)
    with pytest.raises(ValueError, match="at least 2"):
        allowed_deviation(1)
    # a floor covers entries with no Monte Carlo error (se = 0), and NaN always fails
    assert_mean_close(np.ones((10, 3)), 1.0005, "constant", floor=1e-3)
    with pytest.raises(AssertionError):
        assert_mean_close(np.ones((10, 3)), 1.0005, "constant")
    with pytest.raises(AssertionError):
        assert_mean_close(np.array([1.0, np.nan, 2.0]), 1.5, "nan")


def test_mc_evidence_helpers_rates():
    """Exactly unbiased log-normal Z_hat (log Z_hat ~ N(log Z - s2/2, s2)): few false alarms; a biased one is caught."""
    rng = np.random.default_rng(3)
    alpha, n_runs, s2, log_z = 0.05, 200, 0.3, -2.0
    draws = rng.normal(log_z - s2 / 2, np.sqrt(s2), size=(2000, n_runs))
    alarms = {"ratio": 0, "log": 0}
    for log_z_hat in draws:
        for kind, check in (("ratio", assert_unbiased_evidence), ("log", assert_log_evidence_consistent)):
            try:
                check(log_z_hat, log_z, "null", alpha=alpha)
            except AssertionError:
                alarms[kind] += 1
    assert alarms["ratio"] / len(draws) < 1.5 * alpha, alarms
    assert alarms["log"] / len(draws) < 1.5 * alpha, alarms  # the floor makes it conservative
    for check in (assert_unbiased_evidence, assert_log_evidence_consistent):  # log Z wrong by 0.5
        with pytest.raises(AssertionError):
            check(draws[0], log_z + 0.5, "biased")
