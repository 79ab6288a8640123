"""``smcflow.scale``: sample ``q(x) ∝ p(x) exp(beta r(x))`` from a diffusion sampler and a reward.

``p`` is the law of the sampler's discretised chain at ``times[-1]`` (mapped by its ``output``); the
reward is taken on that output. See :mod:`smcflow.scaling.methods` for the methods and their NFE
accounting and :mod:`smcflow.scaling.steer` for the weights.
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import plugins
from ..engine import run
from ..errors import SMCNumericalError
from ..result import SMCResult
from .steer import component_name, sampler_output

__all__ = ["scale", "ScaleResult", "check_components"]

_SAMPLER_ATTRS = ("times", "init", "drift", "noise", "denoise")


@dataclass(frozen=True)
class ScaleResult:
    """What :func:`scale` returns. With ``n_runs``, every array gains a leading run axis.

    Attributes:
      samples: equally weighted samples ``(num, *event)``: a final systematic resample of the weighted
        particles (exact methods), the particles themselves (``svdd``, ``guidance``), or the single
        highest-reward particle (``best_of_n``, ``num = 1``).
      particles: sampler outputs of the final particles ``(N, *event)``, before the final resample.
      log_weights: their normalised log-weights ``(N,)``.
      rewards: ``r(particles)``, ``(N,)``.
      log_evidence: estimate of ``log E_p[exp(beta r)]``; ``nan`` for methods that do not estimate it
        (``svdd``, ``guidance``). For ``best_of_n`` it is the importance estimate from the same draws.
      ess: effective sample size after reweighting at each grid time ``(K+1,)``.
      nfe: sampler network evaluations per run (see :mod:`smcflow.scaling.methods`).
      reward_evaluations: reward calls per run, counted per particle.
      method, exact, beta: what ran.
      wall_time: seconds for the run (compilation included on a first call).
      smc: the underlying :class:`~smcflow.SMCResult` (particles are
        :class:`~smcflow.scaling.steer.SteerState`).
    """

    samples: jax.Array
    particles: jax.Array
    log_weights: jax.Array
    rewards: jax.Array
    log_evidence: jax.Array
    ess: jax.Array
    nfe: int
    reward_evaluations: int
    method: str
    exact: bool
    beta: float
    wall_time: float
    smc: SMCResult

    @property
    def weights(self) -> jax.Array:
        """Normalised weights ``exp(log_weights)``."""
        return jnp.exp(self.log_weights)

    def weighted_mean(self, values: jax.Array) -> jax.Array:
        """``sum_i W_i values_i`` per run, for per-particle ``values`` of shape ``(..., N)``."""
        return jnp.sum(self.weights * values, axis=-1)

    def to_inference_data(self, key: jax.Array | None = None):
        """arviz ``InferenceData``: posterior ``x`` (resampled outputs) and ``reward``; SMC stats in ``sample_stats``."""
        idata = self.smc.to_inference_data(key=key)
        post = idata.posterior[["estimate", "value"]].rename({"estimate": "x", "value": "reward"})
        idata.posterior = post.assign_attrs(method=self.method, exact=int(self.exact), beta=self.beta, nfe=self.nfe)
        return idata

    def to_datatree(self, key: jax.Array | None = None):
        """The same content as an ``xarray.DataTree``."""
        return self.to_inference_data(key=key).to_datatree()


def _resolve(kind: str, component: Any) -> Any:
    return plugins.get(kind, component) if isinstance(component, str) else component


def _resolve_method(method: Any, config: dict[str, Any]) -> Any:
    if isinstance(method, str):
        return plugins.get("method", method, **config)
    if config:
        raise TypeError(f"method options {sorted(config)} need a method name; the method object is already built")
    for attr in ("name", "exact", "build", "run_options", "nfe_per_particle", "reward_evaluations_per_particle"):
        if not hasattr(method, attr):
            raise TypeError(f"method {method!r} has no attribute {attr!r} (see smcflow.scaling.methods)")
    return method


def check_components(sampler: Any, reward: Any) -> tuple[int, ...]:
    """Check the sampler and reward contracts and their shapes (abstractly); return the sample shape."""
    s_name, r_name = component_name(sampler, "sampler"), component_name(reward, "reward")
    missing = [a for a in _SAMPLER_ATTRS if not hasattr(sampler, a)]
    if missing:
        raise TypeError(f"sampler {s_name!r} lacks {missing}; a sampler needs {list(_SAMPLER_ATTRS)}")
    if not callable(reward):
        raise TypeError(f"reward {r_name!r} is not callable; a reward maps x of shape (n, ...) to (n,)")
    try:
        x = jax.eval_shape(lambda k: sampler.init(k, 2), jax.random.key(0))
    except Exception as exc:
        raise TypeError(f"sampler {s_name!r}: init(key, 2) failed while tracing: {exc}") from exc
    if not hasattr(x, "shape") or len(x.shape) < 1 or x.shape[0] != 2:
        raise ValueError(f"sampler {s_name!r}: init(key, 2) must return an array with leading axis 2, got {x}")
    try:
        out = jax.eval_shape(lambda a: sampler_output(sampler, a), x)
    except Exception as exc:
        raise TypeError(f"sampler {s_name!r}: output(x) failed while tracing on x of shape {x.shape}: {exc}") from exc
    try:
        r = jax.eval_shape(reward, out)
    except Exception as exc:
        raise ValueError(f"reward {r_name!r} failed on samples of shape {out.shape} from sampler {s_name!r}: {exc}") from exc
    if getattr(r, "shape", None) != (2,):
        raise ValueError(
            f"reward {r_name!r} returned shape {getattr(r, 'shape', r)} for 2 samples of shape "
            f"{tuple(out.shape[1:])} from sampler {s_name!r}; a reward must return one value per sample, shape (n,)"
        )
    return tuple(x.shape[1:])


def scale(
    sampler: Any,
    reward: Any,
    key: jax.Array,
    *,
    n_particles: int,
    method: Any = "urge",
    beta: float = 1.0,
    n_runs: int | None = None,
    **method_config: Any,
) -> ScaleResult:
    """Steer ``sampler`` towards ``p(x) exp(beta r(x))`` with ``n_particles`` particles.

    Args:
      sampler: a sampler component or the name of a ``sampler`` plugin (built with defaults).
      reward: a reward component or the name of a ``reward`` plugin.
      key: PRNG key; the same key gives the same result.
      n_particles: particles per run (for ``best_of_n``: N candidates).
      method: ``"urge"`` (default), ``"fk"``, ``"twisted"``, ``"importance"``, ``"best_of_n"``,
        ``"svdd"``, ``"guidance"``, another ``method`` plugin's name, or a method object.
      beta: inverse temperature of the tilt.
      n_runs: independent runs, vmapped.
      **method_config: options of the named method, e.g. ``guidance="reward_grad"`` for ``urge``,
        ``potential="max"`` for ``fk``, ``n_candidates=8`` for ``svdd``.

    Raises:
      TypeError / ValueError: a component breaks its contract (named in the message), before compiling.
      SMCNumericalError: the reward returned NaN / inf or every weight vanished (components named).
    """
    sampler, reward = _resolve("sampler", sampler), _resolve("reward", reward)
    method = _resolve_method(method, method_config)
    beta = float(beta)
    if not math.isfinite(beta):
        raise ValueError(f"beta must be finite, got {beta}")
    check_components(sampler, reward)
    model = method.build(sampler, reward, beta)
    key_run, key_final = jax.random.split(key)
    start = time.perf_counter()
    with warnings.catch_warnings():  # a failure is raised below with the components named
        warnings.simplefilter("ignore", RuntimeWarning)
        smc = run(model, key_run, n_particles, n_runs=n_runs, errors="flag", **method.run_options)
    jax.block_until_ready(smc.log_weights)
    wall = time.perf_counter() - start
    names = f"sampler {component_name(sampler, 'sampler')!r}, reward {component_name(reward, 'reward')!r}, method {method.name!r}"
    if bool(np.any(np.asarray(smc.failed))):
        raise SMCNumericalError(f"{names}: {smc.failure_message()}")
    rewards = smc.particles.value
    if not bool(np.all(np.isfinite(np.asarray(rewards)))):
        raise SMCNumericalError(f"{names}: the reward returned NaN or inf for some final samples")

    outputs, log_w = smc.particles.estimate, smc.log_weights
    if getattr(method, "pick_best", False):
        best = jnp.argmax(rewards, axis=-1)  # per run: shape () or (n_runs,)
        particle_axis = best.ndim
        samples = jnp.take_along_axis(outputs, jnp.expand_dims(best, tuple(range(particle_axis, outputs.ndim))),
                                      axis=particle_axis)
    elif getattr(method, "weighted", True):
        samples = smc.resample(key_final).estimate
    else:
        samples = outputs
    log_evidence = smc.log_evidence if getattr(method, "weighted", True) else jnp.full_like(smc.log_evidence, jnp.nan)
    n_steps = model.n_steps
    nfe = method.nfe_per_particle(n_steps, int(getattr(sampler, "output_nfe", 0))) * n_particles
    reward_calls = method.reward_evaluations_per_particle(n_steps) * n_particles
    return ScaleResult(
        samples=samples,
        particles=outputs,
        log_weights=log_w,
        rewards=rewards,
        log_evidence=log_evidence,
        ess=smc.ess,
        nfe=int(nfe),
        reward_evaluations=int(reward_calls),
        method=method.name,
        exact=bool(method.exact),
        beta=beta,
        wall_time=wall,
        smc=smc,
    )
