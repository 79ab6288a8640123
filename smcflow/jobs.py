"""The work behind ``smcflow run`` and ``smcflow scale``: build registered components, run, write outputs.

Both write into ``out_dir``: ``result.nc`` (the arviz export, readable by ``smcflow diagnose``) and
``summary.json`` (what ran, log Ẑ over the runs, the diagnosis verdict and findings); ``scale`` also
writes ``samples.npy`` (equally weighted samples, ``(runs, num, *event)``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import numpy as np

from . import plugins
from .diagnostics import diagnose

__all__ = ["parse_settings", "run_registered_model", "scale_registered"]


def parse_settings(pairs: list[str] | None) -> dict[str, Any]:
    """``["rho=0.9", "name=abc"]`` -> ``{"rho": 0.9, "name": "abc"}`` (values read as JSON, else text)."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"--set {pair!r}: use NAME=VALUE with NAME a Python identifier")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _feynman_kac(component: Any, key: jax.Array, n_steps: int) -> tuple[Any, dict[str, Any]]:
    """A Feynman-Kac model from a ``model`` component: itself, or for a component with ``simulate`` and
    ``ssm`` (a state-space model with a simulator) the bootstrap filter of ``n_steps`` simulated
    observations."""
    if all(hasattr(component, m) for m in ("n_steps", "init", "step")):
        return component, {}
    if hasattr(component, "simulate") and hasattr(component, "ssm"):
        from .ssm import bootstrap_filter

        _, ys = component.simulate(key, n_steps)
        info = {"simulated_observations": int(n_steps)}
        if hasattr(component, "log_likelihood"):
            info["exact_log_evidence"] = float(component.log_likelihood(ys))
        return bootstrap_filter(component.ssm, ys), info
    raise TypeError(f"model component {type(component).__name__} is neither a Feynman-Kac model "
                    "(n_steps, init, step) nor a simulator with .simulate and .ssm")


def _summary(result: Any, log_evidence: np.ndarray, extra: dict[str, Any]) -> dict[str, Any]:
    d = diagnose(result)
    finite = log_evidence[np.isfinite(log_evidence)]
    return {
        **extra,
        "log_evidence_mean": float(np.mean(finite)) if finite.size else None,
        "log_evidence_sd": float(np.std(finite, ddof=1)) if finite.size > 1 else None,
        "ok": d.ok,
        "findings": [str(f) for f in d.findings],
    }


def _write(out_dir: str | Path, summary: dict[str, Any], idata: Any) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    idata.to_netcdf(str(out / "result.nc"))
    return out


def run_registered_model(name: str, out_dir: str | Path, *, n_particles: int = 1000, n_runs: int = 4,
                         resampler: str = "systematic", n_steps: int = 100, seed: int = 0,
                         settings: dict[str, Any] | None = None, progress: bool = False) -> dict[str, Any]:
    """Build ``model`` component ``name`` with ``settings``, run it, write the outputs; return the summary."""
    from .engine import run

    component = plugins.get("model", name, **(settings or {}))
    k_data, k_run = jax.random.split(jax.random.key(seed))
    model, info = _feynman_kac(component, k_data, n_steps)
    result = run(model, k_run, n_particles, n_runs=n_runs, resampler=resampler, progress=progress)
    summary = _summary(result, np.atleast_1d(np.asarray(result.log_evidence, np.float64)),
                       {"model": name, "settings": settings or {}, "n_particles": n_particles, "n_runs": n_runs,
                        "resampler": resampler, "seed": seed, **info})
    _write(out_dir, summary, result.to_inference_data(attrs={"model": name, "resampler": resampler}))
    return summary


def scale_registered(sampler: str, reward: str, out_dir: str | Path, *, method: str = "urge", beta: float = 1.0,
                     n_particles: int = 64, n_runs: int = 4, seed: int = 0, sampler_settings: dict | None = None,
                     reward_settings: dict | None = None, method_settings: dict | None = None,
                     progress: bool = False) -> dict[str, Any]:
    """``smcflow.scale`` on registered components; write samples, summary and the export."""
    from .scaling.api import scale

    res = scale(plugins.get("sampler", sampler, **(sampler_settings or {})),
                plugins.get("reward", reward, **(reward_settings or {})), jax.random.key(seed),
                n_particles=n_particles, method=method, beta=beta, n_runs=n_runs, progress=progress,
                **(method_settings or {}))
    summary = _summary(res, np.atleast_1d(np.asarray(res.log_evidence, np.float64)),
                       {"sampler": sampler, "reward": reward, "method": method, "beta": beta,
                        "n_particles": n_particles, "n_runs": n_runs, "seed": seed, "nfe_per_run": res.nfe,
                        "mean_sample_reward": float(np.mean(np.asarray(res.sample_rewards)))})
    out = _write(out_dir, summary, res.to_inference_data())
    np.save(out / "samples.npy", np.asarray(res.samples))
    return summary
