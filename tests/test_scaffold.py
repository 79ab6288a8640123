"""``smcflow new-plugin``: the package it writes installs with pip into a fresh target directory, is
listed by ``smcflow plugins`` with one component of each kind, and its own tests pass."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from smcflow.cli import main

KINDS = ("sampler", "reward", "method", "model", "resampler", "estimator", "belief_metric")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """``smcflow new-plugin acme`` installed (not editable) into an empty target directory."""
    root = tmp_path_factory.mktemp("scaffold")
    assert main(["new-plugin", "acme", "--dir", str(root)]) == 0
    site = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site),
                    str(root / "smcflow-acme")], check=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    return root, env


def test_new_plugin_installs_and_is_listed(installed):
    root, env = installed
    out = subprocess.run([sys.executable, "-m", "smcflow.cli", "plugins", "--json"], env=env,
                         capture_output=True, text=True, check=False)
    report = json.loads(out.stdout)
    (acme,) = [p for p in report["plugins"] if p["name"] == "acme"]
    assert acme["distribution"] == "smcflow-acme"
    for kind in KINDS:
        assert [n for n in acme["components"][kind] if n.startswith("acme_")], kind
    assert not [c for c in report["conflicts"] if "acme" in c["plugins"]]
    assert not [e for e in report["load_errors"] if e["plugin"] == "acme"]


def test_new_plugin_refuses_bad_names_and_existing_directories(installed, capsys):
    root, _ = installed
    assert main(["new-plugin", "Bad-Name", "--dir", str(root)]) == 2
    assert main(["new-plugin", "class", "--dir", str(root)]) == 2
    assert main(["new-plugin", "acme", "--dir", str(root)]) == 2
    err = capsys.readouterr().err
    assert "plugin name 'Bad-Name'" in err and "exists" in err


@pytest.mark.slow
def test_new_plugin_own_tests_pass(installed):
    """The generated tests check every component against an exact answer through smcflow.run/scale."""
    root, env = installed
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                          str(root / "smcflow-acme" / "tests")], env=env, capture_output=True, text=True,
                         cwd=root, check=False)
    assert out.returncode == 0, out.stdout[-3000:]
