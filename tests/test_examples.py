"""Every script in examples/ runs to completion."""
import runpy
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.py"))
SLOW = {"pomdp_ope.py", "sde_estimate_and_track.py", "custom_score_and_reward.py",
        "linear_gaussian_filter.py", "assimilate_lorenz63.py"}  # over 10 s each; their parts
# are tested directly


@pytest.mark.parametrize("path", [pytest.param(p, id=p.name, marks=pytest.mark.slow if p.name in SLOW else ())
                                  for p in EXAMPLES])
def test_example_runs(path, capsys):
    runpy.run_path(str(path), run_name="__main__")
    assert capsys.readouterr().out.strip(), f"{path.name} printed nothing"
