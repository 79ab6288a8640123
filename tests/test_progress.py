"""Progress bars: driven from inside the compiled scan, they reach the last step, change no number,
and do nothing inside a user's jit."""
from __future__ import annotations

import jax
import numpy as np

import smcflow
import smcflow.progress as progress

T = 8  # a short run: one update, at its end


def _filter(n_steps: int = T):
    model = smcflow.plugins.get("model", "linear_gaussian", rho=0.9, sigma_x=1.0, sigma_y=0.5)
    _, ys = model.simulate(jax.random.key(0), n_steps + 1)
    return smcflow.bootstrap_filter(model.ssm, ys)


def test_bar_reaches_the_last_step_and_changes_nothing(monkeypatch, capsys):
    seen = []
    advance = progress._advance_by
    monkeypatch.setattr(progress, "_advance_by", lambda steps: (seen.append(steps), advance(steps)))
    fk = _filter()
    with_bar = smcflow.run(fk, jax.random.key(1), 16, n_runs=3, progress=True)
    assert seen == [T] and progress._OPEN_BARS == []
    err = capsys.readouterr().err
    assert "smcflow.run" in err and f"{T}/{T}" in err
    without = smcflow.run(fk, jax.random.key(1), 16, n_runs=3)
    np.testing.assert_array_equal(np.asarray(with_bar.log_evidence), np.asarray(without.log_evidence))
    np.testing.assert_array_equal(np.asarray(with_bar.particles), np.asarray(without.particles))
    assert [progress.updates_every(n, True) for n in (1000, 1001, 100, 8)] == [100, 101, 25, 8]
    assert progress.updates_every(1000, False) == 0


def test_uneven_last_block_stops_the_bar_at_its_total(monkeypatch, capsys):
    """60 steps in blocks of 25: two full blocks and a last one of ten steps."""
    seen = []
    advance = progress._advance_by
    monkeypatch.setattr(progress, "_advance_by", lambda steps: (seen.append(steps), advance(steps)))
    smcflow.run(_filter(60), jax.random.key(2), 16, progress=True)
    assert seen == [25] * 3
    err = capsys.readouterr().err
    assert "60/60" in err and "75/60" not in err


def test_progress_inside_a_users_jit_is_silent(capsys):
    fk = _filter()
    f = jax.jit(lambda key: smcflow.run(fk, key, 16, progress=True).log_evidence)
    assert np.isfinite(float(f(jax.random.key(3))))
    assert capsys.readouterr().err == "" and progress._OPEN_BARS == []
