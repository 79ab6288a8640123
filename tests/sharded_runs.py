"""Run by tests/test_sharding.py in a fresh process with 4 forced host devices (XLA reads the device
count once, at start-up): SMC runs sharded over a 4-device mesh, printed as JSON on stdout.

Usage: XLA_FLAGS=--xla_force_host_platform_device_count=4 python tests/sharded_runs.py [--scale]
       ... tests/sharded_runs.py --exchange-choice N_RUNS
"""
from __future__ import annotations

import contextlib
import json
import re
import sys
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

import smcflow
import smcflow.sharding
from smcflow.sharding import IslandExchange

N_TIMES, N_PARTICLES, N_RUNS = 30, 128, 64
EXCHANGE_EVERY, EXCHANGE_RUNS = 3, 256


class ExchangeWithoutReset(IslandExchange):
    """Negative control: islands copied with probabilities ∝ Ẑ_d, but each keeps the estimate of the
    island it copied instead of the mean (the copies of lucky islands then count twice)."""

    def select(self, key, log_z):
        ancestors, _ = super().select(key, log_z)
        return ancestors, log_z[ancestors]


class ExchangeUniformChoice(IslandExchange):
    """Negative control: islands copied uniformly at random, with replacement (estimates still reset to
    the mean), a selection that ignores the islands' estimates."""

    def select(self, key, log_z):
        n_islands = log_z.shape[0]
        ancestors = jax.random.randint(key, (n_islands,), 0, n_islands, dtype=jnp.int32)
        return ancestors, jnp.full_like(log_z, jax.scipy.special.logsumexp(log_z) - jnp.log(n_islands))


@contextlib.contextmanager
def exchange_rule(cls):
    """``smcflow.run(island_exchange=k)`` builds ``cls(k)`` (a subclass compares unequal: its own compile)."""
    saved = smcflow.sharding.IslandExchange
    smcflow.sharding.IslandExchange = cls
    try:
        yield
    finally:
        smcflow.sharding.IslandExchange = saved


@dataclass(frozen=True)
class LaggedWalk:
    """A Gaussian random walk whose particle also carries its previous position, so that every
    ``history[t]["prev"]`` must equal ``history[t-1]["cur"]`` read through ``ancestors[t]``."""

    n_steps: int = 12

    def init(self, key, n):
        x = jax.random.normal(key, (n,))
        return {"cur": x, "prev": x}, jnp.zeros(n)

    def step(self, key, t, x):
        new = x["cur"] + jax.random.normal(key, x["cur"].shape)
        return {"cur": new, "prev": x["cur"]}, -2.0 * (new - 2.0) ** 2


def genealogy(result) -> dict:
    """Whether the ancestors agree with the carried previous positions, and how many of them cross islands."""
    cur, prev, anc = (np.asarray(a) for a in (result.history["cur"], result.history["prev"], result.ancestors))
    n_island = anc.shape[1] // 4
    own_island = np.arange(anc.shape[1]) // n_island
    return {"consistent": bool(all(np.array_equal(prev[t], cur[t - 1][anc[t]]) for t in range(1, anc.shape[0]))),
            "crossing_times": sorted({int(t) for t in np.nonzero((anc // n_island) != own_island)[0]})}


def compiled_with_loop_collectives(fn, *args):
    """``fn(*args)`` compiled once, and the collectives of the compiled program that run inside the scan
    over time, each named by the op it comes from (``.../while/body/...``, as XLA's metadata has it)."""
    compiled = jax.jit(fn).lower(*args).compile()
    ops = re.findall(r"(?:all-gather|all-reduce|collective-permute|all-to-all|reduce-scatter)(?:-start)?\(.*"
                     r'op_name="([^"]*)"', compiled.as_text())
    return compiled(*args), [op for op in ops if "while/body" in op]


def gather_cases(mesh: Mesh) -> dict:
    """``gather_needed`` against ``jnp.take`` for ancestor patterns that take each path: for each, whether
    the rows match bitwise (a float leaf of shape (N, 2) and an int leaf), whether the all-gather
    fallback ran, and whether the same check rejects rows taken from the wrong device (the negative
    control: the right offset within the device, but every device reading its own block)."""
    where = smcflow.sharding.Placement(mesh, "particles", "global")
    n_total, n_local = N_PARTICLES, N_PARTICLES // 4
    rng = np.random.default_rng(5)
    x = {"float": jnp.asarray(rng.standard_normal((n_total, 2)), jnp.float32),
         "int": jnp.arange(n_total, dtype=jnp.int32) * 7}
    patterns = {
        "identity": np.arange(n_total),
        "near_neighbours": np.sort(np.clip(np.arange(n_total) + rng.integers(-4, 5, n_total), 0, n_total - 1)),
        "one_survivor": np.full(n_total, 77),
        "uniform": rng.integers(0, n_total, n_total),
    }
    gather = jax.jit(lambda x, a: smcflow.sharding.gather_needed(x, a, where))
    out = {}
    for name, ancestors in patterns.items():
        got, fallback = gather(x, jnp.asarray(ancestors, jnp.int32))
        wrong_device = ancestors % n_local + (np.arange(n_total) // n_local) * n_local
        same = lambda rows: all(np.array_equal(np.asarray(got[k]), np.asarray(x[k])[rows]) for k in x)  # noqa: E731
        out[name] = {"equal": same(ancestors), "fallback": bool(fallback),
                     "control_caught": None if np.array_equal(wrong_device, ancestors) else not same(wrong_device)}
    batched = jax.jit(jax.vmap(lambda a: smcflow.sharding.gather_needed(x, a, where)))
    for label, pair in {"vmapped_near": ("near_neighbours", "one_survivor"),
                        "vmapped_mixed": ("near_neighbours", "uniform")}.items():
        stacked = np.stack([patterns[k] for k in pair])
        got, fallback = batched(jnp.asarray(stacked, jnp.int32))
        out[label] = {"equal": bool(np.array_equal(np.asarray(got["float"]), np.asarray(x["float"])[stacked])),
                      "fallback": np.asarray(fallback).tolist()}
    return out


def exchange_choice(filt, mesh: Mesh, n_runs: int) -> dict:
    """``--exchange-choice``: many runs exchanging at every step, with the selection ∝ Ẑ_d and with
    the uniform choice of the negative control (one key for both)."""
    options = dict(n_runs=n_runs, mesh=mesh, scope="island", island_exchange=1)
    right = smcflow.run(filt, jax.random.key(8), N_PARTICLES, **options)
    with exchange_rule(ExchangeUniformChoice):
        uniform = smcflow.run(filt, jax.random.key(8), N_PARTICLES, **options)
    return {k: np.asarray(r.log_evidence, np.float64).tolist() for k, r in (("right", right), ("uniform", uniform))}


def main() -> None:
    assert len(jax.devices()) == 4, jax.devices()
    mesh = Mesh(np.array(jax.devices()), ("particles",))
    model = smcflow.plugins.get("model", "linear_gaussian", rho=0.9, sigma_x=1.0, sigma_y=0.5)
    _, ys = model.simulate(jax.random.key(0), N_TIMES)
    filt = smcflow.bootstrap_filter(model.ssm, ys)
    key = jax.random.key(1)
    if "--exchange-choice" in sys.argv:
        print(json.dumps({"exact": float(model.log_likelihood(ys)),
                          "log_evidence": exchange_choice(filt, mesh, int(sys.argv[-1]))}))
        return
    runs = {
        "single": smcflow.run(filt, key, N_PARTICLES, n_runs=N_RUNS),
        "global": smcflow.run(filt, key, N_PARTICLES, n_runs=N_RUNS, mesh=mesh),
        "global_again": smcflow.run(filt, key, N_PARTICLES, n_runs=N_RUNS, mesh=mesh),
        "island": smcflow.run(filt, jax.random.key(2), N_PARTICLES, n_runs=N_RUNS, mesh=mesh, scope="island"),
        "island_again": smcflow.run(filt, jax.random.key(2), N_PARTICLES, n_runs=N_RUNS, mesh=mesh, scope="island"),
    }
    exchange = dict(n_runs=EXCHANGE_RUNS, mesh=mesh, scope="island", island_exchange=EXCHANGE_EVERY)
    runs["exchange"] = smcflow.run(filt, jax.random.key(4), N_PARTICLES, **exchange)
    runs["exchange_again"] = smcflow.run(filt, jax.random.key(4), N_PARTICLES, **exchange)
    with exchange_rule(ExchangeWithoutReset):
        runs["exchange_without_reset"] = smcflow.run(filt, jax.random.key(4), N_PARTICLES, **exchange)
    # an exchange that is never due (k beyond the last step) leaves the island run as it was
    never = smcflow.run(filt, jax.random.key(2), N_PARTICLES, n_runs=N_RUNS, mesh=mesh, scope="island",
                        island_exchange=10 * N_TIMES)
    same_as_island = {f: bool(np.array_equal(np.asarray(getattr(never, f)), np.asarray(getattr(runs["island"], f))))
                      for f in ("particles", "log_weights", "log_evidence", "ess", "resampled", "failure")}
    increments_gap = float(np.max(np.abs(np.asarray(never.log_evidence_increments)
                                         - np.asarray(runs["island"].log_evidence_increments))))
    _, global_loop = compiled_with_loop_collectives(lambda k: smcflow.run(filt, k, N_PARTICLES, mesh=mesh), key)
    walk, exchange_loop = compiled_with_loop_collectives(
        lambda k: smcflow.run(LaggedWalk(), k, 32, mesh=mesh, scope="island", island_exchange=4, keep_ancestors=True,
                              keep_history=True, schedule="always"), jax.random.key(6))
    scale = "--scale" in sys.argv
    if scale:
        from smcflow_diffusion import mixture_diffusion
        from smcflow_rewards import linear

        def steer(**kwargs):
            return smcflow.scale(mixture_diffusion(n_steps=20), linear([1.0]), jax.random.key(3), n_particles=64,
                                 method="fk", beta=0.35, n_runs=8, **kwargs)

        steered = {"global": steer(mesh=mesh), "island": steer(mesh=mesh, scope="island"), "plain": steer(),
                   "exchange": steer(mesh=mesh, scope="island", island_exchange=5)}
    errors = {}
    for label, kwargs in {"not_divisible": dict(mesh=mesh), "unknown_axis": dict(mesh=mesh, mesh_axis="devices"),
                          "unknown_scope": dict(mesh=mesh, scope="local"),
                          "exchange_global": dict(mesh=mesh, island_exchange=2)}.items():
        try:
            smcflow.run(filt, key, 130 if label == "not_divisible" else N_PARTICLES, **kwargs)
            errors[label] = ""
        except (ValueError, TypeError) as exc:
            errors[label] = str(exc)
    out = {
        "exact": float(model.log_likelihood(ys)),
        "log_evidence": {k: np.asarray(r.log_evidence, np.float64).tolist() for k, r in runs.items()},
        "particles_sharded": "particles" in str(runs["global"].particles.sharding),
        "island_weights_normalised": float(np.max(np.abs(jax.scipy.special.logsumexp(runs["island"].log_weights,
                                                                                       axis=-1)))),
        "errors": errors,
        "gather": gather_cases(mesh),
        "global_loop_collectives": global_loop,
        "exchange_never": {"same_as_island": same_as_island, "increments_gap": increments_gap},
        "exchange_genealogy": genealogy(walk),
        "exchange_loop_collectives": exchange_loop,
        "scale_log_evidence": ({k: np.asarray(r.log_evidence, np.float64).tolist() for k, r in steered.items()}
                               if scale else None),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
