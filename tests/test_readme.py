"""The README's Python snippets run as written, in order, and print what their comments say: every line
of the form "<value> ± <standard error>  (exact <y>)" is within the Student-t allowance of y."""
import contextlib
import io
import re
from pathlib import Path

import pytest
from mc import allowed_deviation

README = Path(__file__).resolve().parent.parent / "README.md"
CLAIM = re.compile(r"(-?\d+\.\d+) ± (\d+\.\d+)\s+\(exact (-?\d+\.\d+)\)")
RUNS = 16  # the steering snippet's n_runs


def _blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


@pytest.mark.slow  # compiles every snippet of the README (~30 s); make test-all
def test_readme_snippets_print_what_they_claim():
    namespace: dict = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for block in _blocks():
            exec(compile(block, str(README), "exec"), namespace)  # noqa: S102 - our own documentation
    text = out.getvalue()
    claims = CLAIM.findall(text)
    assert len(claims) >= 2, text
    allowed = allowed_deviation(RUNS, n_checks=len(claims))
    for value, se, exact in claims:
        value, se, exact = float(value), float(se), float(exact)
        assert abs(value - exact) <= allowed * se, f"README claims {exact}, printed {value} ± {se}"
    assert "True" in text.splitlines()[-1], text  # online stepping equals run


def test_readme_starts_with_the_two_commands():
    lines = [line for line in README.read_text().splitlines() if line.strip()]
    assert lines[1] == "```sh" and lines[2].startswith("make demo") and lines[3].startswith("make test")
