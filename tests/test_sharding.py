"""Particles sharded over 4 forced host devices (global and island scope, islands with exchanges), the
island combination rule and the exchange with their negative controls, and chunked evaluation."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from jax.scipy.special import logsumexp
from scipy import stats

import smcflow
from smcflow.sharding import placement

from mc import ALPHA, assert_log_evidence_consistent, assert_unbiased_evidence

HERE = Path(__file__).resolve().parent
pytestmark = pytest.mark.xdist_group("sharding")  # one worker builds the 4-device fixture once


EXCHANGE_EVERY = 3  # tests/sharded_runs.py's island_exchange, on 30 observations (29 steps)
EXCHANGE_CHOICE_RUNS = 8192  # s.e. of the mean of Z_hat / Z about 1% (Var(log Z_hat) about 0.5)


def _sharded_runs(*flags: str) -> dict:
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, str(HERE / "sharded_runs.py"), *flags], env=env, capture_output=True,
                         text=True, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def sharded():
    """The 4-device runs (one subprocess; make test's --dist loadfile keeps a module on one worker)."""
    return _sharded_runs()


def test_global_scope_is_the_single_device_run(sharded):
    le = sharded["log_evidence"]
    assert sharded["particles_sharded"]
    np.testing.assert_array_equal(le["global"], le["global_again"])  # same key, same devices: bitwise
    # with partitionable threefry keys the sharded run draws the same numbers as one device
    np.testing.assert_allclose(le["global"], le["single"], rtol=0, atol=1e-4)
    assert_unbiased_evidence(le["global"], sharded["exact"], "global scope, 4 devices")


def test_global_gather_moves_only_needed_rows_and_is_exact(sharded):
    """Global resampling's particle gather (one all_to_all of the rows each device needs, or the
    all-gather when some device needs more than its capacity) is bitwise jnp.take on every pattern."""
    cases = sharded["gather"]
    for name in ("identity", "near_neighbours", "one_survivor", "uniform"):
        assert cases[name]["equal"], name
    for name in ("near_neighbours", "one_survivor", "uniform"):
        assert cases[name]["control_caught"], name  # rows read from the wrong device would be caught
    # the exchange path serves resamplings that keep most rows near home or few distinct rows ...
    assert not any(cases[k]["fallback"] for k in ("identity", "near_neighbours", "one_survivor"))
    # ... and uniform ancestors (3/4 of each device's rows from elsewhere) overflow to the all-gather
    assert cases["uniform"]["fallback"]
    # vmapped runs take one branch together: the all-gather as soon as one run needs it
    assert cases["vmapped_near"] == {"equal": True, "fallback": [False, False]}
    assert cases["vmapped_mixed"] == {"equal": True, "fallback": [True, True]}
    # and the engine's global run does use it: an all-to-all inside its loop over time
    assert any("all_to_all" in op for op in sharded["global_loop_collectives"]), sharded["global_loop_collectives"]


def test_island_scope_is_unbiased_and_agrees_with_global(sharded):
    le = sharded["log_evidence"]
    np.testing.assert_array_equal(le["island"], le["island_again"])
    assert sharded["island_weights_normalised"] < 1e-5
    assert_unbiased_evidence(le["island"], sharded["exact"], "island scope, 4 islands of 32")
    # the islands' log Z has a larger variance, so compare Z_hat / Z (both have mean 1) between scopes
    ratio = {k: np.exp(np.asarray(le[k]) - sharded["exact"]) for k in ("global", "island")}
    assert stats.ttest_ind(ratio["global"], ratio["island"], equal_var=False).pvalue > ALPHA


def test_island_exchange_is_unbiased_and_reproducible(sharded):
    """Islands resampled every 3 steps (probabilities ∝ Ẑ_d, estimates reset to their mean): unbiased for
    Z; the same check catches an exchange that copies islands but keeps each copy's own estimate."""
    le, exact = sharded["log_evidence"], sharded["exact"]
    np.testing.assert_array_equal(le["exchange"], le["exchange_again"])
    assert_unbiased_evidence(le["exchange"], exact, f"4 islands of 32, exchange every {EXCHANGE_EVERY} steps")
    assert_log_evidence_consistent(le["exchange"], exact, "islands with exchange")
    with pytest.raises(AssertionError, match="Z_hat / Z"):
        assert_unbiased_evidence(le["exchange_without_reset"], exact, "exchange without the reset (wrong)")


@pytest.mark.slow
def test_island_exchange_selection_in_proportion_to_estimates():
    """Exchanging at every step stays unbiased for Z over many runs, and the negative control (islands
    chosen uniformly with replacement, estimates still reset) is caught by the same test: its bias of a
    few per cent takes thousands of runs to resolve."""
    runs = _sharded_runs("--exchange-choice", str(EXCHANGE_CHOICE_RUNS))
    le, exact = runs["log_evidence"], runs["exact"]
    assert_unbiased_evidence(le["right"], exact, "islands chosen ∝ Ẑ_d, exchange every step")
    with pytest.raises(AssertionError, match="Z_hat / Z"):  # the mean test, not the variance guard
        assert_unbiased_evidence(le["uniform"], exact, "islands chosen uniformly (negative control)")


def test_island_exchange_bookkeeping(sharded):
    """An exchange never due is the plain island run; ancestors compose the island copy with the step's
    resampling (checked against positions the particles carry); the exchange is the loop's only collective."""
    never = sharded["exchange_never"]
    assert all(never["same_as_island"].values()), never["same_as_island"]
    # with exchanges the running estimate comes from the islands' log Ẑ_d, not a cumsum of increments
    assert never["increments_gap"] < 1e-4
    lineage = sharded["exchange_genealogy"]  # 12 steps, exchanges at times 4 and 8
    assert lineage["consistent"]
    assert lineage["crossing_times"] and set(lineage["crossing_times"]) <= {4, 8}, lineage
    loop = sharded["exchange_loop_collectives"]
    assert loop and all("cond/branch" in op for op in loop), loop


def test_island_exchange_bad_input_is_named(sharded):
    model, ys, filt = _lg_filter(5)
    assert "island_exchange=2 exchanges between islands" in sharded["errors"]["exchange_global"]
    for bad, error in ((0, ValueError), (-3, ValueError), (2.0, TypeError), (True, TypeError), ("3", TypeError)):
        with pytest.raises(error, match="island_exchange must be a positive int"):
            smcflow.run(filt, jax.random.key(0), 8, island_exchange=bad)
    with pytest.raises(ValueError, match="island_exchange=2 .* scope='island' \\(got no mesh\\)"):
        smcflow.run(filt, jax.random.key(0), 8, island_exchange=2)


@pytest.mark.slow
def test_scale_runs_sharded():
    """scale(mesh=...) with global scope is the unsharded run; island scope (with or without exchanges)
    gives finite estimates."""
    le = _sharded_runs("--scale")["scale_log_evidence"]
    np.testing.assert_allclose(le["global"], le["plain"], rtol=0, atol=1e-4)
    for scope in ("island", "exchange"):
        assert np.isfinite(le[scope]).all() and len(le[scope]) == 8


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_processes_on_loopback_equal_one_process(sharded):
    """jax.distributed over two processes of 2 devices each gives the one-process, 4-device numbers
    (up to the order of the cross-process float reductions)."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(HERE)}
    port = str(_free_port())
    procs = [subprocess.Popen([sys.executable, str(HERE / "multihost_runs.py"), str(i), port], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs[0][1][-2000:] + outs[1][1][-2000:]
    result = json.loads(outs[0][0].strip().splitlines()[-1])
    assert (result["devices"], result["processes"]) == (4, 2)
    for scope in ("global", "island"):
        np.testing.assert_allclose(result["log_evidence"][scope], sharded["log_evidence"][scope], rtol=0, atol=1e-4)


def test_sharding_bad_input_is_named(sharded):
    errors = sharded["errors"]
    assert "not divisible by the 4 devices" in errors["not_divisible"]
    assert "mesh_axis='devices' is not an axis" in errors["unknown_axis"]
    assert "scope='local'" in errors["unknown_scope"]
    with pytest.raises(ValueError, match="need a mesh"):
        placement(None, "island", 8)
    with pytest.raises(TypeError, match="jax.sharding.Mesh"):
        placement(object(), "global", 8)


def _lg_filter(n_times=30):
    model = smcflow.plugins.get("model", "linear_gaussian", rho=0.9, sigma_x=1.0, sigma_y=0.5)
    _, ys = model.simulate(jax.random.key(0), n_times)
    return model, ys, smcflow.bootstrap_filter(model.ssm, ys)


def test_island_combination_rule_and_its_negative_control():
    """Ẑ = mean of the islands' Ẑ_d is unbiased; the mean of their log Ẑ_d (a plausible slip) is not, and
    the same check catches it. Islands are independent runs, here on one device."""
    model, ys, filt = _lg_filter()
    exact = float(model.log_likelihood(ys))
    islands = np.asarray(smcflow.run(filt, jax.random.key(3), 32, n_runs=4 * 64).log_evidence, np.float64)
    islands = islands.reshape(64, 4)
    assert_unbiased_evidence(logsumexp(islands, axis=1) - np.log(4), exact, "log-mean-exp of 4 islands")
    with pytest.raises(AssertionError, match="Z_hat / Z"):
        assert_unbiased_evidence(islands.mean(axis=1), exact, "mean of the islands' log Z (wrong)")


def test_chunked_evaluation_is_equal_in_distribution():
    model, ys, filt = _lg_filter()
    exact = float(model.log_likelihood(ys))
    chunked = smcflow.run(filt, jax.random.key(4), 128, n_runs=64, chunk_size=32)
    assert_unbiased_evidence(chunked.log_evidence, exact, "chunks of 32 particles")
    with pytest.raises(ValueError, match="not a multiple of chunk_size=48"):
        smcflow.run(filt, jax.random.key(4), 128, chunk_size=48)
    with pytest.raises(ValueError, match="chunk_size must be a positive int"):
        smcflow.run(filt, jax.random.key(4), 128, chunk_size=0)
