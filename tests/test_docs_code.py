"""Every python block of the documentation pages runs as written: the blocks of one page in order, in
one namespace (a later block may use what an earlier one defined). docs/plugins.md (which installs its
example plugin first) and README.md have their own tests."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
OWN_TESTS = {"plugins.md"}  # tests/test_plugins.py::test_docs_code_runs_as_written
# pages whose code compiles several programs (a trained digits network, samplers, filters): make test-all
SLOW_PAGES = {"scaling.md", "scaling-out.md", "numpyro.md", "pomdp.md", "sde.md", "assimilation.md"}


def _pages():
    for page in sorted(DOCS.glob("*.md")):
        if page.name in OWN_TESTS or "```python" not in page.read_text():
            continue
        yield pytest.param(page, id=page.name, marks=pytest.mark.slow if page.name in SLOW_PAGES else ())


@pytest.mark.parametrize("page", list(_pages()))
def test_page_code_runs(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # anything a block writes lands in a scratch folder
    namespace = {"__name__": f"docs_{page.stem}"}
    for i, block in enumerate(re.findall(r"^```python\n(.*?)^```", page.read_text(), flags=re.M | re.S)):
        exec(compile(block, f"docs/{page.name} python block {i + 1}", "exec"), namespace)
