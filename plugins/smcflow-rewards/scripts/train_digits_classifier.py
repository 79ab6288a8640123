"""Train the digits reward classifier and write ``smcflow_rewards/weights/digits_classifier.npz``.

Usage (from the repository root, well under a minute on 2 CPU cores)::

    .venv/bin/python plugins/smcflow-rewards/scripts/train_digits_classifier.py

Two runs of the same seeded recipe (soft-label cross-entropy; mixup: half of each batch are blends
``lam x_a + (1 - lam) x_b``, ``lam ~ U(0, 1)``, labelled ``lam e_a + (1 - lam) e_b``; then Gaussian
pixel noise with a per-sample standard deviation drawn from U(0, 0.3); AdamW with warm-up and
cosine decay):

1. on a fixed 80 % of the digits, to report holdout accuracy on the other 20 % (clean and noised);
2. on all 1797 digits: these are the weights that are saved.

When the digits score network is available it also reports the accuracy on Tweedie denoised
estimates ``x0_hat(x_t, t)`` of noised held-out digits (from run 1), which is what the classifier
sees as a reward model during guided sampling. Early in sampling (large t) these estimates are
blurry blends of digits; mixup keeps the classifier from being confidently wrong on them (without
it, mean log p(true class) on held-out estimates at t = 0.3 was -2.3 instead of -0.9).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from smcflow.io import load_weights, save_weights
from smcflow_diffusion.digits_data import load_digits_data
from smcflow_rewards.digits_classifier import WEIGHTS_PATH, init_params, log_probs, logits_apply


def train(x, y, *, steps, batch, lr, weight_decay, noise_max, mixup, seed):
    key = jax.random.key(seed)
    key, init_key = jax.random.split(key)
    params = init_params(init_key)
    schedule = optax.warmup_cosine_decay_schedule(0.0, lr, 100, steps, end_value=lr * 0.01)
    optimizer = optax.adamw(schedule, weight_decay=weight_decay)
    opt_state = optimizer.init(params)
    data, targets = jnp.asarray(x), jnp.asarray(y)

    def loss_fn(params, xb, soft_labels):
        return -jnp.mean(jnp.sum(soft_labels * log_probs(params, xb), axis=1))

    def one_step(carry, step_key):
        params, opt_state = carry
        k_idx, k_std, k_noise, k_mix, k_lam, k_other = jax.random.split(step_key, 6)
        idx = jax.random.randint(k_idx, (batch,), 0, data.shape[0])
        other = jax.random.randint(k_other, (batch,), 0, data.shape[0])
        # mixup: a share `mixup` of the rows is a blend lam x_a + (1 - lam) x_b with the soft label
        # lam e_a + (1 - lam) e_b, like the blurry posterior means seen early in sampling
        lam = jnp.where(jax.random.uniform(k_mix, (batch, 1)) < mixup,
                        jax.random.uniform(k_lam, (batch, 1)), 1.0)
        xb = lam * data[idx] + (1.0 - lam) * data[other]
        soft = lam * jax.nn.one_hot(targets[idx], 10) + (1.0 - lam) * jax.nn.one_hot(targets[other], 10)
        std = jax.random.uniform(k_std, (batch, 1), maxval=noise_max)
        xb = xb + std * jax.random.normal(k_noise, (batch, data.shape[1]))
        loss, grads = jax.value_and_grad(loss_fn)(params, xb, soft)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    run = jax.jit(lambda carry, keys: jax.lax.scan(one_step, carry, keys))
    (params, _), losses = run((params, opt_state), jax.random.split(key, steps))
    losses = np.asarray(losses)
    print(f"  final training loss (mean of last 200 steps): {losses[-200:].mean():.4f}")
    return params


def mean_max_prob(params, x):
    return float(jnp.mean(jnp.exp(jnp.max(log_probs(params, x), axis=1))))


def accuracy(params, x, y):
    return float(np.mean(np.asarray(jnp.argmax(logits_apply(params, x), axis=1)) == y))


def noisy_accuracy(params, x, y, std, seed=7):
    noise = np.random.default_rng(seed).standard_normal(x.shape).astype(np.float32)
    return accuracy(params, x + std * noise, y)


def denoised_report(params, x, y, seed=11):
    """Accuracy and mean log p(true class) on Tweedie estimates of noised digits, if possible."""
    try:
        from smcflow_diffusion.digits_net import eps_apply, load_digits_eps_params
        score_params = load_digits_eps_params()
    except (ImportError, FileNotFoundError) as exc:
        print(f"  (skipping the denoised-estimate check: {exc})")
        return
    key = jax.random.key(seed)
    for t in (0.1, 0.3, 0.5, 0.7):
        alpha = np.exp(-0.5 * (0.1 * t + 0.5 * 19.9 * t**2))
        sigma = np.sqrt(1 - alpha**2)
        eps = jax.random.normal(jax.random.fold_in(key, int(t * 100)), x.shape)
        xt = alpha * x + sigma * eps
        x0_hat = (xt - sigma * eps_apply(score_params, xt, t)) / alpha
        logp = np.asarray(log_probs(params, x0_hat))
        acc = np.mean(logp.argmax(1) == y)
        print(f"  t={t}: accuracy on x0_hat {acc:.3f}, mean log p(true class) "
              f"{logp[np.arange(len(y)), y].mean():.3f}, mean max-prob {np.exp(logp.max(1)).mean():.3f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--weight-decay", type=float, default=1e-3)
    parser.add_argument("--noise-max", type=float, default=0.3)
    parser.add_argument("--mixup", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--holdout", type=float, default=0.2)
    parser.add_argument("--out", type=Path, default=WEIGHTS_PATH)
    args = parser.parse_args(argv)
    recipe = dict(steps=args.steps, batch=args.batch, lr=args.lr, weight_decay=args.weight_decay,
                  noise_max=args.noise_max, mixup=args.mixup, seed=args.seed)

    x, y = load_digits_data()
    perm = np.random.default_rng(0).permutation(len(x))  # the fixed reporting split
    n_test = int(round(args.holdout * len(x)))
    test, tr = perm[:n_test], perm[n_test:]

    start = time.perf_counter()
    print(f"run 1: train on {len(tr)}, hold out {len(test)}")
    params = train(x[tr], y[tr], **recipe)
    print(f"  train accuracy {accuracy(params, x[tr], y[tr]):.4f}, "
          f"holdout accuracy {accuracy(params, x[test], y[test]):.4f}, "
          f"holdout mean max-prob {mean_max_prob(params, x[test]):.3f}")
    for std in (0.3, 0.5):
        print(f"  holdout accuracy with N(0, {std}^2) pixel noise: "
              f"{noisy_accuracy(params, x[test], y[test], std):.4f}")
    denoised_report(params, x[test], y[test])

    print(f"run 2: train on all {len(x)} digits (saved)")
    params = train(x, y, **recipe)
    print(f"  accuracy on all digits {accuracy(params, x, y):.4f}, "
          f"mean max-prob {mean_max_prob(params, x):.3f}")
    elapsed = time.perf_counter() - start
    params = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float32), params)
    path = save_weights(args.out, params)
    reloaded = jax.tree_util.tree_map(jnp.asarray, load_weights(path))
    assert accuracy(reloaded, x, y) == accuracy(params, x, y)
    print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB); both runs took {elapsed:.1f} s")


if __name__ == "__main__":
    main()
