"""``smcflow run`` and ``smcflow scale`` end to end on small inputs, and ``smcflow diagnose`` on what
they wrote; exit statuses for bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest

from smcflow.cli import main
from smcflow.jobs import parse_settings


@pytest.mark.slow
def test_run_writes_summary_and_export_that_diagnose_reads(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "linear_gaussian", "--particles", "64", "--runs", "2", "--steps", "10",
                 "--set", "rho=0.8", "--out", str(out), "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"] == {"rho": 0.8} and summary["simulated_observations"] == 10
    assert abs(summary["log_evidence_mean"] - summary["exact_log_evidence"]) < 5.0  # a sanity bound only
    import arviz as az

    assert az.from_netcdf(str(out / "result.nc")).posterior.attrs["resampler"] == "systematic"
    assert main(["diagnose", str(out / "result.nc"), "--out", str(tmp_path / "diag")]) in (0, 1)
    assert (tmp_path / "diag" / "index.html").exists()
    assert "smcflow diagnosis of InferenceData" in capsys.readouterr().out


@pytest.mark.slow
def test_scale_writes_samples_and_diagnose_writes_the_page(tmp_path):
    out = tmp_path / "scale"
    assert main(["scale", "gaussian_mixture", "linear", "--method", "fk", "--beta", "0.5", "--particles", "16",
                 "--runs", "2", "--sampler-set", "n_steps=10", "--out", str(out), "--no-progress"]) == 0
    samples = np.load(out / "samples.npy")
    assert samples.shape == (2, 16, 1) and np.isfinite(samples).all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "fk" and summary["nfe_per_run"] > 0
    assert main(["diagnose", str(out / "result.nc"), "--out", str(tmp_path / "diag")]) in (0, 1)
    assert "samples" not in {p.stem for p in (tmp_path / "diag").iterdir()}  # 1-D samples are not images
    assert (tmp_path / "diag" / "index.html").read_text().count("data:image/png") >= 3


def test_bad_input_exit_status(tmp_path, capsys):
    assert main(["run", "no_such_model", "--out", str(tmp_path)]) == 2
    assert "no model named 'no_such_model'" in capsys.readouterr().err
    assert main(["scale", "gaussian_mixture", "linear", "--reward-set", "weights=[1]", "--out", str(tmp_path)]) == 2
    assert "weights" in capsys.readouterr().err
    with pytest.raises(ValueError, match="NAME=VALUE"):
        parse_settings(["rho"])
    assert parse_settings(["rho=0.5", "name=abc", "b=[1, 2]"]) == {"rho": 0.5, "name": "abc", "b": [1, 2]}
