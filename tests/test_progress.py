"""Progress bars: driven from inside the compiled scan, they reach the last step, change no number,
and do nothing inside a user's jit."""
from __future__ import annotations

import jax
import numpy as np

import smcflow
import smcflow.progress as progress

T = 8  # fewer than 20 steps: an update after every step


def _filter():
    model = smcflow.plugins.get("model", "linear_gaussian", rho=0.9, sigma_x=1.0, sigma_y=0.5)
    _, ys = model.simulate(jax.random.key(0), T + 1)
    return smcflow.bootstrap_filter(model.ssm, ys)


def test_bar_reaches_the_last_step_and_changes_nothing(monkeypatch, capsys):
    seen = []
    advance = progress._advance_to
    monkeypatch.setattr(progress, "_advance_to", lambda t: (seen.append(int(t)), advance(t)))
    fk = _filter()
    with_bar = smcflow.run(fk, jax.random.key(1), 16, n_runs=3, progress=True)
    assert sorted(seen) == list(range(T)) and progress._OPEN_BARS == []
    err = capsys.readouterr().err
    assert "smcflow.run" in err and f"{T}/{T}" in err
    without = smcflow.run(fk, jax.random.key(1), 16, n_runs=3)
    np.testing.assert_array_equal(np.asarray(with_bar.log_evidence), np.asarray(without.log_evidence))
    np.testing.assert_array_equal(np.asarray(with_bar.particles), np.asarray(without.particles))
    assert progress.updates_every(1000, True) == 100 and progress.updates_every(1000, False) == 0


def test_progress_inside_a_users_jit_is_silent(capsys):
    fk = _filter()
    f = jax.jit(lambda key: smcflow.run(fk, key, 16, progress=True).log_evidence)
    assert np.isfinite(float(f(jax.random.key(3))))
    assert capsys.readouterr().err == "" and progress._OPEN_BARS == []
