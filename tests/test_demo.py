"""The two demos run end to end (scaled down) and write their outputs."""
import json

import pytest

import smcflow.demo as demo
import smcflow.filter_demo as filter_demo


def test_scaling_demo_writes_outputs(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "N_RUNS", 12)
    monkeypatch.setattr(demo, "N_STEPS", 10)
    assert demo.main(tmp_path) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["methods"]) == {label for label, *_ in demo.CONFIGS}
    for scores in summary["methods"].values():
        assert 0.0 <= scores["judge_accuracy"] <= 1.0
    assert (tmp_path / "samples.png").stat().st_size > 0 and (tmp_path / "urge.nc").stat().st_size > 0


@pytest.mark.slow  # the filter demo's parts are tested in test_filters.py
def test_filter_demo_writes_outputs(tmp_path, monkeypatch):
    monkeypatch.setattr(filter_demo, "N_PARTICLES", 500)
    monkeypatch.setattr(filter_demo, "N_RUNS", 4)
    assert filter_demo.main(tmp_path) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())  # accuracy is tested in test_filters.py
    assert all(key in summary for key in ("kalman_log_evidence", "smc_log_evidence_mean", "ess_min"))
    assert (tmp_path / "filter.png").exists() and (tmp_path / "smc.nc").exists()
