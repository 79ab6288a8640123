"""A numpyro model as a tempered target on a flat unconstrained vector, through numpyro's own utilities.

For a model with latent sites ``theta`` (constrained) and observed sites ``y`` (``factor`` sites
included), numpyro's :func:`~numpyro.infer.util.potential_energy` is the negative log density on the
unconstrained space, Jacobian included, ``U(u) = -log p(theta(u)) - log p(y | theta(u)) - log|dtheta/du|``
(site scales and masks applied as numpyro applies them). The same function of the model with its
observed sites hidden (:func:`numpyro.handlers.block`) is ``U_prior(u)``; the latent sites are
flattened into one vector ``u`` of size ``d`` (:func:`jax.flatten_util.ravel_pytree`). The tempered
family, from the prior (``lam = 0``) to the posterior (``lam = 1``), is

    log pi_lam(u) = log_prior(u) + lam * log_lik(u),   log_prior = -U_prior,   log_lik = U_prior - U.

Initial particles are prior draws (:class:`~numpyro.infer.Predictive`) mapped to the unconstrained
space with numpyro's ``unconstrain_fn``, so their density is ``exp(log_prior)``.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
from jax.flatten_util import ravel_pytree
from numpyro import handlers
from numpyro.infer import Predictive
from numpyro.infer.util import constrain_fn, potential_energy, unconstrain_fn

__all__ = ["Target", "numpyro_target", "latent_sites"]


class Target(NamedTuple):
    """The pieces of a tempered static target on ``u (d,)`` (each for one particle; vmap for many).

    Attributes:
      dim: ``d``, the size of the flat unconstrained vector.
      log_parts: ``u -> (log_prior, log_lik)``, two ``()`` arrays: the log prior density on the
        unconstrained space (Jacobian included) and the log-likelihood of the observed sites.
      sample_prior: ``(key, n) -> (n, d)`` prior draws, unconstrained and flattened.
      constrained: ``u -> dict`` the latent and deterministic sites in the constrained space.
      names: latent site names.
    """

    dim: int
    log_parts: Callable[[jax.Array], tuple[jax.Array, jax.Array]]
    sample_prior: Callable[[jax.Array, int], jax.Array]
    constrained: Callable[[jax.Array], dict]
    names: tuple[str, ...]


def latent_sites(prototype: dict) -> dict:
    """The latent sample sites of a model's (seeded) trace; refuses discrete ones, naming them."""
    latent = {name: site for name, site in prototype.items() if site["type"] == "sample" and not site["is_observed"]}
    discrete = [name for name, site in latent.items() if site["fn"].support.is_discrete]
    if discrete:
        raise ValueError(f"smcflow.infer.SMC: latent site(s) {', '.join(map(repr, discrete))} are discrete; "
                         "tempered SMC with gradient or random-walk moves needs continuous latent sites "
                         "(marginalise them out, e.g. with a mixture distribution)")
    if not latent:
        raise ValueError("smcflow.infer.SMC: the model has no latent sample sites to infer")
    return latent


def numpyro_target(model: Callable, key: jax.Array, args: tuple = (), kwargs: dict | None = None) -> Target:
    """Build the :class:`Target` of ``model(*args, **kwargs)`` (its observed sites conditioned as given)."""
    kwargs = {} if kwargs is None else dict(kwargs)
    prototype = handlers.trace(handlers.seed(model, key)).get_trace(*args, **kwargs)
    latent = latent_sites(prototype)
    observed = [name for name, site in prototype.items() if site["type"] == "sample" and site["is_observed"]]
    names = tuple(latent)
    flat0, unravel = ravel_pytree(unconstrain_fn(model, args, kwargs, {name: latent[name]["value"] for name in names}))
    prior_model = handlers.block(model, hide=observed)

    def log_parts(u):
        params = unravel(u)
        prior_only = potential_energy(prior_model, args, kwargs, params)
        return -prior_only, prior_only - potential_energy(model, args, kwargs, params)

    def sample_prior(k, n):
        draws = Predictive(model, num_samples=n, return_sites=list(names))(k, *args, **kwargs)
        to_flat = lambda d: ravel_pytree(unconstrain_fn(model, args, kwargs, d))[0]  # noqa: E731
        return jax.vmap(to_flat)({name: draws[name] for name in names})

    def constrained(u):
        return constrain_fn(model, args, kwargs, unravel(u), return_deterministic=True)

    return Target(int(flat0.shape[0]), log_parts, sample_prior, constrained, names)
