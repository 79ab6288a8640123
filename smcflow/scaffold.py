"""``smcflow new-plugin NAME``: write a ready-to-install plugin package with one component per kind.

The package (``smcflow-NAME/``) has a ``pyproject.toml`` with its entry point in group ``smcflow``, a
``hooks.py`` that registers every component under a name starting with ``NAME_`` (so no built-in is
shadowed), a ``components.py`` with one working example of each kind, and tests that check each
against an exact answer (offspring means for the resampler, a Kalman filter for the model, moments of
Brownian motion for the estimator, the closed form of a tilted Gaussian for the sampler, reward and
method, known distances for the belief metric). ``pip install -e smcflow-NAME`` and
``pytest smcflow-NAME/tests`` then work as they are.
"""
from __future__ import annotations

import keyword
import re
from pathlib import Path

__all__ = ["new_plugin", "check_plugin_name"]

_PYPROJECT = '''[build-system]
requires = ["setuptools>=68", "wheel"]
build-backend = "setuptools.build_meta"

[project]
name = "smcflow-{dist}"
version = "0.1.0"
description = "smcflow plugin {name}: one component of each kind."
requires-python = ">=3.11"
dependencies = ["smcflow", "jax", "numpy"]

[project.entry-points.smcflow]
{name} = "{package}.hooks"

[tool.setuptools.packages.find]
include = ["{package}*"]
'''

_HOOKS = '''"""Entry point of the {name} plugin (group ``smcflow``): one hook per component kind."""
from smcflow.plugins import hookimpl

from . import components


@hookimpl
def smcflow_samplers():
    return {{"{name}_gaussian": components.GaussianDiffusion.create}}


@hookimpl
def smcflow_rewards():
    return {{"{name}_linear": components.LinearReward.create}}


@hookimpl
def smcflow_methods():
    return {{"{name}_clipped_urge": components.clipped_urge}}


@hookimpl
def smcflow_models():
    return {{"{name}_random_walk": components.NoisyRandomWalk.create}}


@hookimpl
def smcflow_resamplers():
    return {{"{name}_multinomial": lambda: components.multinomial}}


@hookimpl
def smcflow_estimators():
    return {{"{name}_constant": components.ConstantCoefficients}}


@hookimpl
def smcflow_belief_metrics():
    return {{"{name}_tv": lambda: components.total_variation}}
'''

_COMPONENTS = '''"""The components of the {name} plugin, one per kind. Replace them with your own; keep the contracts
(docs/plugins.md of smcflow) and the tests in ``tests/``."""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from smcflow.scaling.methods import PathSteering


# -- sampler: a diffusion sampler whose data law is N(mean, std^2), so everything is in closed form --
@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class GaussianDiffusion:
    """Time-reversed Ornstein-Uhlenbeck noising ``dX = -X dt + sqrt(2) dW`` of ``N(mean, std^2)`` data.

    At time ``t`` the noised law is ``N(mean e^-t, v_t)`` with ``v_t = std^2 e^-2t + 1 - e^-2t``;
    generation runs along ``times`` from ``t_max`` down to 0 with drift ``x + 2 score(x, t)``, noise
    ``sqrt(2)`` and Tweedie's denoiser.
    """

    times: jax.Array
    mean: jax.Array
    std: jax.Array

    @classmethod
    def create(cls, mean: float = 0.0, std: float = 1.0, t_max: float = 4.0, n_steps: int = 200):
        return cls(jnp.linspace(t_max, 0.0, n_steps + 1), jnp.float32(mean), jnp.float32(std))

    def _moments(self, t):
        decay = jnp.exp(-t)
        return self.mean * decay, self.std**2 * decay**2 + 1.0 - decay**2

    def init(self, key, n):
        m, v = self._moments(self.times[0])
        return m + jnp.sqrt(v) * jax.random.normal(key, (n, 1))

    def drift(self, x, t):
        m, v = self._moments(t)
        return x - 2.0 * (x - m) / v

    def noise(self, t):
        return jnp.sqrt(2.0)

    def denoise(self, x, t):
        m, v = self._moments(t)
        return self.mean + self.std**2 * jnp.exp(-t) * (x - m) / v


# -- reward: r(x) = slope . x, differentiable --
@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class LinearReward:
    """``r(x) = slope . x`` per particle; ``slope`` is an array leaf (changing it does not recompile)."""

    slope: jax.Array
    differentiable = True

    @classmethod
    def create(cls, slope: float = 1.0, dim: int = 1):
        return cls(jnp.full((dim,), slope, jnp.float32))

    def __call__(self, x):
        return x.reshape(x.shape[0], -1) @ self.slope


# -- method: URGE with a clipped reward-gradient guidance and a linear ramp on the potentials --
def clipped_urge(clip: float = 1.0, tempering: float = 1.0) -> PathSteering:
    """An exact method built from the core's path steering (Girsanov weights undo any guidance)."""
    return PathSteering("{name}_clipped_urge", True, guidance="reward_grad", guidance_clip=clip,
                        tempering=tempering)


# -- model: a Feynman-Kac model (bootstrap filter of a Gaussian random walk) --
@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class NoisyRandomWalk:
    """``x_0 ~ N(0, 1)``, ``x_t = x_(t-1) + step_size xi_t``, observed as ``y_t ~ N(x_t, noise^2)``."""

    ys: jax.Array
    step_size: jax.Array
    noise: jax.Array

    @classmethod
    def create(cls, ys=(0.0, 0.4, 1.1, 0.9, 1.5), step_size: float = 1.0, noise: float = 0.5):
        return cls(jnp.asarray(ys, jnp.float32), jnp.float32(step_size), jnp.float32(noise))

    @property
    def n_steps(self) -> int:
        return self.ys.shape[0] - 1

    def _log_likelihood(self, x, y):
        z = (y - x) / self.noise
        return -0.5 * z**2 - jnp.log(self.noise) - 0.5 * jnp.log(2 * jnp.pi)

    def init(self, key, n):
        x = jax.random.normal(key, (n,))
        return x, self._log_likelihood(x, self.ys[0])

    def step(self, key, t, x):
        x = x + self.step_size * jax.random.normal(key, x.shape)
        return x, self._log_likelihood(x, self.ys[t + 1])


# -- resampler: multinomial resampling (offspring counts have mean num * W_i) --
def multinomial(key, log_weights, num):
    """``num`` ancestor indices drawn independently with probabilities ``W_i``."""
    return jax.random.categorical(key, log_weights, shape=(num,)).astype(jnp.int32)


# -- estimator: constant drift and diffusion from increments --
@dataclass(frozen=True)
class ConstantSDE:
    """``drift(x) = b``, ``diffusion(x) = a`` for every ``x`` (``a`` symmetric PSD)."""

    b: jax.Array
    a: jax.Array

    def drift(self, x):
        return jnp.broadcast_to(self.b, x.shape)

    def diffusion(self, x):
        return jnp.broadcast_to(self.a, (x.shape[0], *self.a.shape))


@dataclass(frozen=True)
class ConstantCoefficients:
    """Fits ``dX = b dt + sqrt(a) dW`` with constant ``b`` and ``a``: ``b`` is the mean increment over
    ``dt`` and ``a`` the covariance of the increments over ``dt`` (unbiased for this model)."""

    def fit(self, paths, dt):
        paths = jnp.asarray(paths)
        if paths.ndim != 3 or paths.shape[1] < 2:
            raise ValueError(f"paths must have shape (n_paths, n_steps + 1 >= 2, d), got {{paths.shape}}")
        if not dt > 0:
            raise ValueError(f"dt must be > 0, got {{dt}}")
        inc = jnp.diff(paths, axis=1).reshape(-1, paths.shape[-1])
        b = inc.mean(axis=0) / dt
        centred = inc - inc.mean(axis=0)
        a = centred.T @ centred / ((inc.shape[0] - 1) * dt)
        return ConstantSDE(b, 0.5 * (a + a.T))


# -- belief metric: total variation between discrete beliefs --
def total_variation(b1, b2):
    """``TV(p, q) = sum_i |p_i - q_i| / 2`` for probability vectors over the same states."""
    p, q = jnp.asarray(b1), jnp.asarray(b2)
    if p.shape != q.shape:
        raise ValueError(f"beliefs over different state spaces: shapes {{p.shape}} and {{q.shape}}")
    return 0.5 * jnp.sum(jnp.abs(p - q), axis=-1)
'''

_TESTS = '''"""Each component of the {name} plugin against an exact answer, through the smcflow registry."""
import jax
import jax.numpy as jnp
import numpy as np

import smcflow
from smcflow import plugins

Z = 5.0  # tolerance in standard errors


def _mean_close(values, expected):
    values = np.asarray(values, dtype=np.float64)
    se = values.std(axis=0, ddof=1) / np.sqrt(len(values))
    assert np.all(np.abs(values.mean(axis=0) - expected) <= Z * se + 1e-12), (values.mean(axis=0), expected, se)


def test_every_component_is_registered():
    names = {{kind: plugins.available(kind) for kind in
             ("sampler", "reward", "method", "model", "resampler", "estimator", "belief_metric")}}
    for kind, offered in names.items():
        assert any(n.startswith("{name}_") for n in offered), kind


def test_resampler_offspring_have_mean_n_w():
    resample = plugins.get("resampler", "{name}_multinomial")
    log_w = jnp.log(jnp.array([0.1, 0.2, 0.3, 0.4]))
    idx = jax.vmap(lambda k: resample(k, log_w, 100))(jax.random.split(jax.random.key(0), 400))
    counts = jax.vmap(lambda i: jnp.bincount(i, length=4))(idx)
    _mean_close(counts, 100 * np.array([0.1, 0.2, 0.3, 0.4]))


def _kalman_log_likelihood(ys, step_size, noise):
    mean, var, total = 0.0, 1.0, 0.0
    for t, y in enumerate(ys):
        if t > 0:
            var += step_size**2
        s = var + noise**2
        total += -0.5 * (np.log(2 * np.pi * s) + (y - mean) ** 2 / s)
        gain = var / s
        mean, var = mean + gain * (y - mean), (1 - gain) * var
    return total


def test_model_evidence_is_unbiased_against_kalman():
    model = plugins.get("model", "{name}_random_walk")
    res = smcflow.run(model, jax.random.key(1), 500, n_runs=64, resampler="{name}_multinomial")
    exact = _kalman_log_likelihood(np.asarray(model.ys), 1.0, 0.5)
    _mean_close(np.exp(np.asarray(res.log_evidence, np.float64) - exact), 1.0)


def test_estimator_recovers_brownian_motion_with_drift():
    b, a, dt = np.array([0.5, -1.0]), np.array([[1.0, 0.3], [0.3, 0.5]]), 0.01
    estimator = plugins.get("estimator", "{name}_constant")
    fits = []
    for seed in range(16):
        rng = np.random.default_rng(seed)
        inc = b * dt + rng.standard_normal((20, 100, 2)) @ np.linalg.cholesky(a).T * np.sqrt(dt)
        paths = np.concatenate([np.zeros((20, 1, 2)), np.cumsum(inc, axis=1)], axis=1)
        sde = estimator.fit(paths, dt)
        fits.append(np.concatenate([np.asarray(sde.drift(jnp.zeros((1, 2))))[0],
                                    np.asarray(sde.diffusion(jnp.zeros((1, 2))))[0].ravel()]))
    _mean_close(np.array(fits), np.concatenate([b, a.ravel()]))


def test_belief_metric_known_values():
    tv = plugins.get("belief_metric", "{name}_tv")
    assert float(tv(jnp.array([1.0, 0.0]), jnp.array([0.0, 1.0]))) == 1.0
    assert float(tv(jnp.array([0.5, 0.5]), jnp.array([0.5, 0.5]))) == 0.0
    assert abs(float(tv(jnp.array([0.2, 0.8]), jnp.array([0.6, 0.4]))) - 0.4) < 1e-6


def test_sampler_reward_and_method_recover_the_tilted_gaussian():
    """N(0, 1) data tilted by exp(beta r), r(x) = x, is N(beta, 1): the weighted mean is beta up to the
    Monte Carlo error (and the chain's small discretisation bias)."""
    sampler = plugins.get("sampler", "{name}_gaussian")
    reward = plugins.get("reward", "{name}_linear")
    res = smcflow.scale(sampler, reward, jax.random.key(2), n_particles=256, method="{name}_clipped_urge",
                        beta=0.5, n_runs=16)
    means = np.einsum("rn,rn->r", np.asarray(res.weights), np.asarray(res.particles)[..., 0])
    _mean_close(means, 0.5)
    _mean_close(np.exp(np.asarray(res.log_evidence, np.float64) - 0.125), 1.0)  # E[exp(x/2)] = e^(1/8)
'''

_README = '''# smcflow-{dist}

An smcflow plugin with one component of each kind, registered under names starting with `{name}_`.

    pip install -e .
    smcflow plugins          # lists {name} and its components
    pytest tests             # each component against an exact answer

Edit `{package}/components.py`; register new names in `{package}/hooks.py`.
'''


def check_plugin_name(name: str) -> str:
    """A plugin name: lower-case letters, digits and underscores, starting with a letter, not a
    Python keyword and not ``smcflow``."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name or "") or keyword.iskeyword(name) or name == "smcflow":
        raise ValueError(f"plugin name {name!r}: use lower-case letters, digits and underscores, starting with a letter")
    return name


def new_plugin(name: str, directory: str | Path = ".") -> Path:
    """Write the package ``smcflow-NAME`` under ``directory`` and return its path (refuses to overwrite)."""
    name = check_plugin_name(name)
    dist = name.replace("_", "-")
    package = f"smcflow_{name}"
    root = Path(directory) / f"smcflow-{dist}"
    if root.exists():
        raise FileExistsError(f"{root} exists; choose another name or directory")
    fields = {"name": name, "dist": dist, "package": package}
    files = {
        root / "pyproject.toml": _PYPROJECT,
        root / "README.md": _README,
        root / package / "__init__.py": '"""smcflow plugin {name}."""\n',
        root / package / "hooks.py": _HOOKS,
        root / package / "components.py": _COMPONENTS,
        root / "tests" / f"test_{name}.py": _TESTS,
    }
    for path, template in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.format(**fields), encoding="utf-8")
    return root
