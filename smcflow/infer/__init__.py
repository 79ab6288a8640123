"""numpyro models through tempered SMC: :class:`SMC`, used like numpyro's ``MCMC``.

::

    smc = smcflow.infer.SMC(model, n_particles=1000, kernel="rmh")
    smc.run(jax.random.key(0), x, y=y)         # model(x, y=y), observed sites conditioned as given
    smc.log_evidence                           # log p(y | x) estimate
    smc.get_samples()                          # equally weighted posterior draws, constrained space
    smc.print_summary(); smc.schedule; smc.acceptance; smc.pareto_k; smc.to_inference_data()
    smcflow.infer.SMC(model, n_particles=1000, waste_free=10)  # waste-free: 100 chains of length 10

Likelihood tempering from the prior to the posterior (:mod:`smcflow.infer.tempered`) with the
exponents chosen by :mod:`smcflow.tempering`, BlackJAX rejuvenation moves (:mod:`smcflow.infer.moves`)
and the core kernel's resampling, evidence bookkeeping and failure reporting. Imported on first use
(``smcflow.infer``), as it loads numpyro's inference utilities and BlackJAX.
"""
from __future__ import annotations

import warnings
from functools import partial
from typing import Any, Callable, NamedTuple

import jax
import numpy as np

from .. import tempering as T
from ..engine import resolve_resampler
from ..errors import report_failures
from ..resampling import systematic
from ..validation import StaticPart, check_key, check_n_particles, merge_static
from .moves import KERNELS, move_config
from .target import Target, numpyro_target
from .tempered import Plan, RunSettings, TemperedModel, tempered_run

__all__ = ["SMC", "TemperingSchedule", "KERNELS"]


class TemperingSchedule(NamedTuple):
    """A run's schedule: ``exponents (K,)`` ``lam_1 .. lam_K = 1`` (``lam_0 = 0``, the prior, implied) and
    the moves' whitening ``scales (K - 1, d)``. Pass it as ``SMC(..., tempering=schedule)`` to replay it
    (frozen mode: ``exp(log Z_hat)`` exactly unbiased)."""

    exponents: np.ndarray
    scales: np.ndarray


#: the usual PSIS threshold above which importance weights are too heavy-tailed to trust
PARETO_K_WARN = 0.7


def _pareto_k(log_weights: Any) -> np.ndarray:
    """Pareto k-hat of the final weights (arviz's PSIS), one per run: ``()`` or ``(n_runs,)``."""
    import arviz as az

    log_w = np.asarray(log_weights, np.float64)
    return np.asarray(az.psislw(log_w - log_w.max(axis=-1, keepdims=True), reff=1.0)[1])


class _Spec(NamedTuple):
    """The static configuration of a compiled program (hashable; equal specs share one compile)."""

    model: Callable
    n_particles: int
    move_options: tuple
    target_ess: float
    frozen: bool
    settings: RunSettings
    n_steps: int
    n_runs: int | None
    num_samples: int
    chain_length: int = 1


def _split_inputs(inputs: Any) -> tuple[list, StaticPart]:
    """The model's arguments split into arrays (traced) and everything else (static, compared by value:
    Python numbers too, since numpyro models use them for shapes and plate sizes)."""
    leaves, treedef = jax.tree_util.tree_flatten(inputs)
    is_array = tuple(isinstance(leaf, (jax.Array, np.ndarray)) for leaf in leaves)
    arrays = [leaf for leaf, a in zip(leaves, is_array) if a]
    return arrays, StaticPart(treedef, is_array, tuple(leaf for leaf, a in zip(leaves, is_array) if not a))


def _target(k_model, model_inputs, inputs_static: StaticPart, spec: _Spec) -> Target:
    """The model's :class:`Target`, its array arguments traced, the others (ints, strings, ...) static."""
    args, kwargs = merge_static(model_inputs, inputs_static)
    return numpyro_target(spec.model, k_model, args, kwargs)


@partial(jax.jit, static_argnames=("inputs_static", "spec"))
def _run_program(keys, k_model, model_inputs, exponents, scales, inputs_static: StaticPart, spec: _Spec) -> dict:
    """Build the target from the model's arguments, then ``spec.n_runs`` (or one) tempered runs."""
    target = _target(k_model, model_inputs, inputs_static, spec)
    if spec.frozen and scales.shape[1:] != (target.dim,):
        raise ValueError(f"tempering.scales has {scales.shape[1:]} columns but the model has {target.dim} "
                         "unconstrained dimensions")
    plan = Plan(T.Tempering(spec.target_ess, exponents), scales)
    moves = move_config(spec.move_options[0], target.dim, *spec.move_options[1:])
    one = partial(tempered_run, TemperedModel(target, moves, plan, spec.n_steps, spec.chain_length), cfg=spec.settings)
    return (one if spec.n_runs is None else jax.vmap(one))(keys)


@partial(jax.jit, static_argnames=("inputs_static", "spec"))
def _draws_program(keys, u, log_w, k_model, model_inputs, inputs_static: StaticPart, spec: _Spec) -> dict:
    """Systematic resampling of ``spec.num_samples`` final particles, mapped to the constrained space."""
    constrained = _target(k_model, model_inputs, inputs_static, spec).constrained

    def draws(k, u, log_w):
        return jax.vmap(constrained)(u[systematic(k, log_w, spec.num_samples)])

    return (draws if spec.n_runs is None else jax.vmap(draws))(keys, u, log_w)


def _check_waste_free(value: Any, n_particles: int) -> int | None:
    """None, or a chain length ``P >= 2`` dividing ``n_particles`` (a ValueError / TypeError naming it)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"waste_free must be None or an int chain length >= 2, got {value!r}")
    p = int(value)
    if p < 2:
        raise ValueError(f"waste_free={p}: the chain length must be >= 2 (None moves every particle)")
    if n_particles % p:
        raise ValueError(f"waste_free={p} must divide n_particles={n_particles} (N = chains x chain length); "
                         f"e.g. n_particles={n_particles - n_particles % p + p}")
    return p


class SMC:
    """Adaptive tempered SMC for a numpyro model with continuous latent sites.

    Args:
      model: a numpyro model (a Python callable with numpyro primitives).
      n_particles: N >= 1.
      kernel: rejuvenation move, ``"rmh"`` (random-walk Metropolis), ``"mala"`` or ``"hmc"``, in
        coordinates whitened by the particles' standard deviations (:mod:`smcflow.infer.moves`).
      n_moves: kernel steps per particle per tempering step (with ``waste_free``: per chain transition).
      step_size: the kernel's step size in whitened coordinates (default per kernel and dimension).
      num_integration_steps: leapfrog steps of ``"hmc"``.
      target_ess: conditional-ESS fraction in (0, 1) each tempering step aims at (smaller: fewer,
        bigger steps).
      tempering: ``"adaptive"``, or a :class:`TemperingSchedule` (e.g. a pilot's ``smc.schedule``) to replay.
      waste_free: None (every resampled particle is moved), or the chain length ``P >= 2``, a divisor of
        ``n_particles``: waste-free SMC (Dau and Chopin, 2022; :mod:`smcflow.infer.tempered`) keeps
        ``N / P`` resampled particles and runs a chain of ``P - 1`` transitions from each; all N chain
        states are the next particles, and the evidence is the mean of the increments over all of them.
      resampler: a resampling scheme of :func:`smcflow.run` (the kernel resamples at every step).
      max_steps: cap on the number of tempering steps; a run that does not reach exponent 1 raises.
      n_runs: if given, that many independent runs (vmapped); results gain a leading run axis.
      errors: ``"raise"`` or ``"flag"``, as in :func:`smcflow.run`.
    """

    def __init__(self, model: Callable, *, n_particles: int, kernel: str = "rmh", n_moves: int = 5,
                 step_size: float | None = None, num_integration_steps: int = 5, target_ess: float = 0.5,
                 tempering: str | TemperingSchedule = "adaptive", waste_free: int | None = None,
                 resampler: Any = "systematic", max_steps: int = 200, n_runs: int | None = None,
                 errors: str = "raise"):
        if not callable(model):
            raise TypeError(f"model must be a numpyro model (a callable), got {model!r}")
        self.model = model
        self.n_particles = check_n_particles(n_particles)
        self._move_options = (kernel, step_size, n_moves, num_integration_steps)
        move_config(kernel, 1, step_size, n_moves, num_integration_steps)  # check the options now
        self.target_ess = T.check_target_ess(target_ess)
        if isinstance(tempering, TemperingSchedule):
            self._frozen = TemperingSchedule(T.check_exponents(tempering.exponents, "tempering.exponents"),
                                             np.asarray(tempering.scales, dtype=np.float64))
            if self._frozen.scales.shape[:1] != (self._frozen.exponents.shape[0] - 1,):
                raise ValueError(f"tempering.scales must have one row per step ({self._frozen.exponents.shape[0] - 1}),"
                                 f" got shape {self._frozen.scales.shape}")
        elif isinstance(tempering, str) and tempering == "adaptive":
            self._frozen = None
        else:
            raise ValueError(f"tempering={tempering!r}; use 'adaptive' or a TemperingSchedule (a pilot's smc.schedule)")
        self.waste_free = _check_waste_free(waste_free, self.n_particles)
        self.resampler = resolve_resampler(resampler)
        self.max_steps = check_n_particles(max_steps, name="max_steps")
        self.n_runs = None if n_runs is None else check_n_particles(n_runs, name="n_runs")
        if errors not in ("raise", "flag"):
            raise ValueError(f"errors={errors!r}; use 'raise' or 'flag'")
        self.errors = errors
        self._out: dict | None = None
        self._inputs: tuple = ()  # (model key, array arguments, static arguments) of the last run

    # -- running -----------------------------------------------------------------------------------
    def _spec(self, num_samples: int = 0) -> "_Spec":
        n_steps = self.max_steps if self._frozen is None else self._frozen.exponents.shape[0] - 1
        return _Spec(self.model, self.n_particles, self._move_options, self.target_ess, self._frozen is not None,
                     RunSettings(self.n_particles, self.resampler, max(n_steps, 1)), n_steps, self.n_runs, num_samples,
                     self.waste_free or 1)

    def run(self, key: jax.Array, *args, **kwargs) -> "SMC":
        """Run on ``model(*args, **kwargs)``; returns ``self``. The same key gives the same result.

        Compiled once per configuration and argument shapes (the model's arguments are traced)."""
        check_key(key)
        k_model, k_run = jax.random.split(key)
        keys = k_run if self.n_runs is None else jax.random.split(k_run, self.n_runs)
        plan = (None, None) if self._frozen is None else tuple(self._frozen)
        spec = self._spec()
        model_inputs, inputs_static = _split_inputs((args, kwargs))
        out = _run_program(keys, k_model, model_inputs, *plan, inputs_static=inputs_static, spec=spec)
        report_failures(out["failure"], out["failure_time"], self.errors, context="smcflow.infer.SMC")
        last = np.take_along_axis(np.asarray(out["exponent"]).reshape(-1, spec.settings.max_steps + 1),
                                  np.asarray(out["n_steps"]).reshape(-1, 1), axis=1)
        if self._frozen is None and np.any(last < 1.0):
            raise RuntimeError(f"smcflow.infer.SMC: tempering reached exponent {float(last.min()):.4g} < 1 in "
                               f"max_steps={self.max_steps} steps; raise max_steps or lower target_ess")
        self._out, self._inputs = out, (k_model, model_inputs, inputs_static)
        self._pareto_k = _pareto_k(out["log_weights"])
        worst = float(np.max(self._pareto_k))
        if worst > PARETO_K_WARN:
            warnings.warn(f"smcflow.infer.SMC: the Pareto k-hat of the final weights is {worst:.2f} > "
                          f"{PARETO_K_WARN}: they are heavy-tailed, and log_evidence and the samples are unreliable; "
                          "use more particles, a larger target_ess or more n_moves", RuntimeWarning, stacklevel=2)
        return self

    def _result(self) -> dict:
        if self._out is None:
            raise RuntimeError("smcflow.infer.SMC: call .run(key, ...) first")
        return self._out

    # -- results -----------------------------------------------------------------------------------
    @property
    def log_evidence(self) -> jax.Array:
        """``log Z_hat`` of ``p(observed | args)``; ``(n_runs,)`` with ``n_runs``."""
        return self._result()["log_evidence"]

    @property
    def log_weights(self) -> jax.Array:
        """``(N,)`` normalised final log-weights (``(n_runs, N)`` with ``n_runs``)."""
        return self._result()["log_weights"]

    def _per_step(self, name: str, run: int = 0) -> np.ndarray:
        out = self._result()
        n = int(np.asarray(out["n_steps"]).reshape(-1)[run])
        values = np.asarray(out[name])
        values = values if self.n_runs is None else values[run]
        return values[: n + 1]

    @property
    def pareto_k(self) -> np.ndarray:
        """Pareto k-hat of the final weights (arviz's PSIS; ``(n_runs,)`` with ``n_runs``); above 0.7
        :meth:`run` warns that the weights are too heavy-tailed to trust."""
        self._result()
        return self._pareto_k

    @property
    def schedule(self) -> TemperingSchedule:
        """The exponents and move scales used (of the first run with ``n_runs``)."""
        return TemperingSchedule(self._per_step("exponent"), self._per_step("scale")[1:])

    @property
    def acceptance(self) -> np.ndarray:
        """``(K - 1,)`` mean acceptance rate of the moves at each tempering step (first run with ``n_runs``)."""
        return self._per_step("acceptance")[1:]

    @property
    def ess(self) -> np.ndarray:
        """``(K,)`` ESS after each reweighting (first run with ``n_runs``)."""
        return self._per_step("ess")

    def get_samples(self, key: jax.Array | None = None, num_samples: int | None = None) -> dict:
        """Equally weighted posterior draws of every latent and deterministic site, constrained space:
        ``{site: (num_samples, ...)}`` (``(n_runs, num_samples, ...)`` with ``n_runs``), by systematic
        resampling of the final particles (``key`` default ``jax.random.key(0)``, ``num_samples`` default N)."""
        out = self._result()
        key = jax.random.key(0) if key is None else key
        num = self.n_particles if num_samples is None else check_n_particles(num_samples, name="num_samples")
        keys = key if self.n_runs is None else jax.random.split(key, self.n_runs)
        k_model, model_inputs, inputs_static = self._inputs
        return _draws_program(keys, out["u"], out["log_weights"], k_model, model_inputs, inputs_static=inputs_static,
                              spec=self._spec(num))

    def print_summary(self, prob: float = 0.9) -> None:
        """numpyro's summary table of :meth:`get_samples` (one chain per run), then evidence and steps."""
        from numpyro.diagnostics import print_summary

        samples = self.get_samples()
        print_summary(samples, prob=prob, group_by_chain=self.n_runs is not None)
        log_z = np.asarray(self.log_evidence)
        print(f"log evidence: {np.mean(log_z):.4f}" + (f" (sd {np.std(log_z, ddof=1):.4f} over {log_z.size} runs)"
                                                       if log_z.size > 1 else "")
              + f"; tempering stages: {self.schedule.exponents.shape[0]}")

    def to_inference_data(self, key: jax.Array | None = None):
        """arviz ``InferenceData``: ``posterior`` (equally weighted draws of :meth:`get_samples`, chain =
        run) and ``sample_stats``: ``log_evidence`` and ``pareto_k`` (chain), ``particle_log_weight`` (chain, particle) and,
        per tempering stage (stage 0 is the prior draw), ``exponent``, ``acceptance`` (NaN at stage 0),
        ``ess`` and ``log_evidence_increment`` (chain, stage; NaN past a run's last stage); attrs hold
        the kernel, ``n_particles``, ``target_ess``, ``waste_free`` (the chain length; 0: off) and whether
        the schedule was frozen."""
        import arviz as az
        import xarray as xr

        out = self._result()
        chain = (lambda a: np.asarray(a)[None]) if self.n_runs is None else np.asarray  # noqa: E731
        n_stages = int(np.max(out["n_steps"])) + 1
        attrs = {"inference_library": "smcflow.infer.SMC", "kernel": self._move_options[0],
                 "n_particles": self.n_particles, "target_ess": self.target_ess,
                 "waste_free": int(self.waste_free or 0),
                 "frozen": int(self._frozen is not None), "evidence": "estimate"}
        posterior = az.dict_to_dataset({name: chain(v) for name, v in self.get_samples(key).items()},
                                       library=None, attrs=attrs)
        per_stage = ("exponent", "acceptance", "ess", "log_evidence_increment")
        log_z = chain(out["log_evidence"])
        stats = xr.Dataset(
            {"log_evidence": (["chain"], log_z), "pareto_k": (["chain"], np.reshape(self._pareto_k, -1)),
             "particle_log_weight": (["chain", "particle"], chain(out["log_weights"])),
             **{name: (["chain", "stage"], chain(out[name])[:, :n_stages]) for name in per_stage}},
            coords={"chain": np.arange(log_z.shape[0]), "stage": np.arange(n_stages),
                    "particle": np.arange(self.n_particles)},
            attrs=attrs,
        )
        return az.InferenceData(posterior=posterior, sample_stats=stats)
