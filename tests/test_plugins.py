"""Tests of the plugin registry (smcflow.plugins), the weights I/O (smcflow.io) and the CLI.

Out-of-tree plugins are simulated by writing a package and a ``<name>-<version>.dist-info`` folder
(METADATA + entry_points.txt) into ``tmp_path`` and putting it on ``sys.path``: importlib.metadata then
sees an installed distribution with entry points in the group ``smcflow``.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import textwrap
import tomllib
import types
import uuid
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import smcflow
from smcflow import cli, plugins, resampling
from smcflow.io import load_weights, save_weights
from smcflow.plugins import (
    PluginConflictError,
    PluginLoadWarning,
    PluginRegistrationError,
    UnknownComponentError,
    UnknownKindError,
    hookimpl,
)

BUILTIN_RESAMPLERS = {"multinomial", "systematic", "stratified", "residual", "ssp", "killing"}
_PREFIX = "smcflow_fake_"
DOCS = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"

GOOD_SOURCE = """
import jax.numpy as jnp
from smcflow.plugins import hookimpl


class LinearReward:
    differentiable = True

    def __init__(self, scale=1.0):
        self.scale = scale

    def __call__(self, x):
        return self.scale * jnp.sum(x, axis=-1)


def first_particle(key, log_weights, num):
    return jnp.zeros((num,), jnp.int32)


@hookimpl
def smcflow_rewards():
    return {"fake_linear": LinearReward}


@hookimpl
def smcflow_resamplers():
    return {"fake_first": lambda: first_particle}
"""


@pytest.fixture(autouse=True)
def clean_registry(monkeypatch):
    """Start every test from a fresh registry and default environment; leave nothing behind."""
    monkeypatch.delenv(plugins.ENV_DISABLE_AUTOLOAD, raising=False)
    monkeypatch.delenv(plugins.ENV_PLUGINS, raising=False)
    plugins.reset()
    yield
    plugins.reset()
    for name in [m for m in sys.modules if m.startswith((_PREFIX, "smcflow_example"))]:
        del sys.modules[name]


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A fake site-packages folder on sys.path; ``site(dist, version, {ep: source})`` installs one."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def install(dist: str, version: str, entry_points: dict[str, str]) -> dict[str, str]:
        modules = {}
        lines = ["[smcflow]"]
        for ep_name, source in entry_points.items():
            module = f"{_PREFIX}{ep_name}_{uuid.uuid4().hex[:8]}"
            package = tmp_path / module
            package.mkdir()
            (package / "__init__.py").write_text(textwrap.dedent(source))
            lines.append(f"{ep_name} = {module}")
            modules[ep_name] = module
        info = tmp_path / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
        plugins.reset()
        return modules

    return install


def _row(name: str) -> dict:
    rows = {row["name"]: row for row in plugins.describe()}
    assert name in rows, f"plugin {name!r} not in {sorted(rows)}"
    return rows[name]


# ---------------------------------------------------------------------------------------------------
# built-ins


def test_builtin_resamplers_are_available():
    assert BUILTIN_RESAMPLERS <= set(plugins.available("resampler"))
    everything = plugins.available()
    assert set(everything) == set(plugins.KIND_TO_HOOK)
    assert everything["resampler"] == sorted(everything["resampler"])


def test_get_builtin_resampler_returns_a_working_callable():
    resample = plugins.get("resampler", "systematic")
    assert callable(resample)
    log_w = jnp.log(jnp.array([0.1, 0.2, 0.3, 0.4]))
    ancestors = resample(jax.random.key(0), log_w, 8)
    assert ancestors.shape == (8,)
    assert bool(jnp.all((ancestors >= 0) & (ancestors < 4)))


def test_builtins_resolve_without_the_plugin_manager(monkeypatch):
    def no_discovery(*args, **kwargs):
        raise AssertionError("entry points were read to resolve a built-in")

    monkeypatch.setattr(importlib.metadata, "entry_points", no_discovery)
    monkeypatch.setattr(importlib.metadata, "distributions", no_discovery)
    plugins.reset()
    assert plugins.get("resampler", "systematic") is resampling.systematic
    assert plugins.get("resampler", "smcflow:killing") is resampling.killing
    assert plugins.get("method", "urge", guidance="reward_grad").name == "urge"
    assert plugins.registry._pm is None  # the plugin manager was never created


def test_builtins_table_is_the_one_the_hooks_list():
    table = plugins.builtins.table()
    assert set(table["resampler"]) == set(resampling.BUILTIN_RESAMPLERS) == BUILTIN_RESAMPLERS
    assert set(table["method"]) == set(smcflow.scaling.BUILTIN_METHODS)
    row = _row("smcflow")
    for kind, names in table.items():
        assert row["components"][kind] == sorted(names)


def test_builtins_are_described_as_the_smcflow_distribution():
    row = _row(plugins.BUILTIN_PLUGIN_NAME)
    assert row["distribution"] == "smcflow"
    assert row["version"] == smcflow.__version__
    assert BUILTIN_RESAMPLERS <= set(row["components"]["resampler"])


# ---------------------------------------------------------------------------------------------------
# discovery of out-of-tree plugins


def test_out_of_tree_plugin_is_discovered_and_usable(site, capsys):
    site("smcflow-fake-good", "0.1", {"fakegood": GOOD_SOURCE})
    assert "fake_linear" in plugins.available("reward")
    assert "fake_first" in plugins.available("resampler")

    reward = plugins.get("reward", "fake_linear", scale=2.0)
    assert reward.differentiable
    np.testing.assert_allclose(reward(jnp.ones((3, 2))), [4.0, 4.0, 4.0])
    ancestors = plugins.get("resampler", "fake_first")(jax.random.key(0), jnp.zeros(4), 5)
    assert ancestors.tolist() == [0] * 5

    row = _row("fakegood")
    assert (row["distribution"], row["version"], row["source"]) == ("smcflow-fake-good", "0.1",
                                                                    "entry_point")
    assert row["components"]["reward"] == ["fake_linear"]
    assert row["components"]["resampler"] == ["fake_first"]

    assert cli.main(["plugins"]) == 0
    table = capsys.readouterr().out
    assert "fakegood" in table and "smcflow-fake-good" in table and "0.1" in table
    assert "reward: fake_linear" in table

    assert cli.main(["plugins", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    listed = {p["name"]: p for p in report["plugins"]}
    assert listed["fakegood"]["distribution"] == "smcflow-fake-good"
    assert listed["fakegood"]["version"] == "0.1"


def test_broken_plugins_are_reported_and_skipped(site):
    site("smcflow-fake-good", "0.1", {"fakegood": GOOD_SOURCE})
    site("smcflow-fake-broken", "0.2", {"fakebroken": "import no_such_module_for_smcflow_tests\n"})
    site("smcflow-fake-raising", "0.3", {"fakeraising": """
        from smcflow.plugins import hookimpl

        @hookimpl
        def smcflow_rewards():
            raise RuntimeError("reward hook exploded")

        @hookimpl
        def smcflow_models():
            return {"fake_model": dict}
        """})
    with pytest.warns(PluginLoadWarning) as record:
        names = plugins.available()
    messages = "\n".join(str(w.message) for w in record)
    assert "fakebroken" in messages and "smcflow-fake-broken" in messages
    assert "fakeraising" in messages and "reward hook exploded" in messages

    errors = {e.plugin: e for e in plugins.load_errors()}
    assert errors["fakebroken"].distribution == "smcflow-fake-broken"
    assert errors["fakebroken"].hook is None
    assert "no_such_module_for_smcflow_tests" in errors["fakebroken"].error
    assert errors["fakeraising"].hook == "smcflow_rewards"

    # the good plugin, and the healthy hook of the raising one, still work
    assert "fake_linear" in names["reward"]
    assert "fake_model" in names["model"]
    assert plugins.get("reward", "fake_linear")(jnp.ones((1, 3))).tolist() == [3.0]
    described = {row["name"] for row in plugins.describe()}
    assert "fakebroken" not in described and {"fakegood", "fakeraising"} <= described

    # reported once, even when the catalogue is rebuilt
    with warnings.catch_warnings(record=True) as again:
        warnings.simplefilter("always")
        plugins.available()
        plugins.register(types.SimpleNamespace(), name="empty")
        plugins.available()
    assert not [w for w in again if issubclass(w.category, PluginLoadWarning)]
    assert sum(e.plugin == "fakeraising" for e in plugins.load_errors()) == 1

    # the unknown-name error mentions the plugins that failed
    with pytest.raises(UnknownComponentError, match="fakebroken"):
        plugins.get("reward", "does_not_exist")


def test_hook_returning_a_non_mapping_is_reported(site):
    site("smcflow-fake-badreturn", "1.0", {"fakebadreturn": """
        from smcflow.plugins import hookimpl

        @hookimpl
        def smcflow_rewards():
            return ["not", "a", "mapping"]

        @hookimpl
        def smcflow_methods():
            return {"not_callable": 3}
        """})
    with pytest.warns(PluginLoadWarning, match="fakebadreturn"):
        plugins.available()
    hooks = {e.hook for e in plugins.load_errors() if e.plugin == "fakebadreturn"}
    assert hooks == {"smcflow_rewards", "smcflow_methods"}
    assert "not_callable" not in plugins.available("method")


def test_misspelled_hook_is_reported_and_the_plugin_skipped(site):
    site("smcflow-fake-typo", "0.1", {"faketypo": """
        from smcflow.plugins import hookimpl

        @hookimpl
        def smcflow_sampler():
            return {"typo_sampler": dict}

        @hookimpl
        def smcflow_rewards():
            return {"typo_reward": dict}
        """})
    site("smcflow-fake-undecorated", "0.1", {"fakeundecorated": """
        def smcflow_rewards():
            return {"undecorated_reward": dict}
        """})
    with pytest.warns(PluginLoadWarning) as record:
        rewards = plugins.available("reward")
    messages = "\n".join(str(w.message) for w in record)
    assert "faketypo" in messages and "smcflow_sampler" in messages
    assert "smcflow_samplers" in messages  # the suggestion
    assert "fakeundecorated" in messages and "hookimpl" in messages
    assert "typo_reward" not in rewards and "undecorated_reward" not in rewards
    described = {row["name"] for row in plugins.describe()}
    assert "faketypo" not in described and "fakeundecorated" not in described
    assert {e.plugin for e in plugins.load_errors()} >= {"faketypo", "fakeundecorated"}


def test_programmatic_registration_of_an_invalid_plugin_raises():
    class Typo:
        @hookimpl
        def smcflow_reward(self):
            return {}

    with pytest.raises(PluginRegistrationError, match="smcflow_reward"):
        plugins.register(Typo())
    assert all(row["source"] != "register" for row in plugins.describe())


def test_conflicting_names_raise_a_clear_error(site):
    source = """
        from smcflow.plugins import hookimpl

        @hookimpl
        def smcflow_rewards():
            return {"shared_reward": lambda **kw: ("from", __name__)}
        """
    modules = site("smcflow-fake-alpha", "1.0", {"fakealpha": source})
    site("smcflow-fake-beta", "2.0", {"fakebeta": source})
    assert plugins.available("reward").count("shared_reward") == 1
    with pytest.raises(PluginConflictError) as info:
        plugins.get("reward", "shared_reward")
    message = str(info.value)
    for part in ("fakealpha", "fakebeta", "smcflow-fake-alpha", "smcflow-fake-beta"):
        assert part in message
    assert {row["name"] for row in plugins.describe()} >= {"fakealpha", "fakebeta"}
    assert "'<plugin>:shared_reward'" in message
    assert {"kind": "reward", "name": "shared_reward", "plugins": ["fakealpha", "fakebeta"],
            "builtin_wins": False} in plugins.conflicts()
    # a qualified name picks one provider
    assert plugins.get("reward", "fakealpha:shared_reward") == ("from", modules["fakealpha"])
    assert plugins.get("reward", "fakebeta:shared_reward")[1].startswith(_PREFIX + "fakebeta")
    with pytest.raises(UnknownComponentError):
        plugins.get("reward", "fakegamma:shared_reward")


SHADOW_SOURCE = """
from smcflow.plugins import hookimpl

BUILT = []


def systematic(key, log_weights, num):
    raise AssertionError("the plugin's 'systematic' was used instead of the built-in")


def make_systematic():
    BUILT.append(1)
    return systematic


@hookimpl
def smcflow_resamplers():
    return {"systematic": make_systematic}
"""


class _RandomWalk:
    """A tiny hand-written Feynman-Kac model: Gaussian random walk, potentials -x²/2."""

    n_steps = 4

    def init(self, key, n):
        return jax.random.normal(key, (n,)), jnp.zeros(n)

    def step(self, key, t, x):
        x = x + jax.random.normal(key, x.shape)
        return x, -0.5 * x**2


def test_a_plugin_offering_a_builtin_name_does_not_shadow_it(site, capsys):
    modules = site("smcflow-fake-shadow", "0.1", {"fakeshadow": SHADOW_SOURCE})
    model, key = _RandomWalk(), jax.random.key(0)
    # default arguments: resampler="systematic", the built-in, found without loading any plugin
    result = smcflow.run(model, key, 256)
    assert np.isfinite(float(result.log_evidence))
    assert plugins.registry._pm is None

    with pytest.warns(PluginLoadWarning, match="built-in wins"):
        assert plugins.available("resampler").count("systematic") == 1
    plugin_module = sys.modules[modules["fakeshadow"]]
    assert plugins.get("resampler", "systematic") is resampling.systematic
    assert plugins.get("resampler", "smcflow:systematic") is resampling.systematic
    assert plugins.get("resampler", "fakeshadow:systematic") is plugin_module.systematic
    assert plugin_module.BUILT == [1]  # only the qualified get built the plugin's component
    again = smcflow.run(model, key, 256)  # with the plugin loaded: still the built-in
    np.testing.assert_array_equal(again.log_weights, result.log_weights)

    assert {"kind": "resampler", "name": "systematic", "plugins": ["fakeshadow", "smcflow"],
            "builtin_wins": True} in plugins.conflicts()
    with warnings.catch_warnings():  # reported once
        warnings.simplefilter("error", PluginLoadWarning)
        plugins.available()
        plugins.conflicts()
    assert not plugins.load_errors()  # shadowing is not a load error

    assert cli.main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "resampler 'systematic': the built-in wins over fakeshadow" in out
    assert "'fakeshadow:systematic'" in out
    assert cli.main(["plugins", "--strict"]) == 1
    capsys.readouterr()


# ---------------------------------------------------------------------------------------------------
# environment variables


@pytest.mark.parametrize("value", ["1", "true", "yes"])
def test_disable_autoload(site, monkeypatch, value):
    site("smcflow-fake-good", "0.1", {"fakegood": GOOD_SOURCE})
    monkeypatch.setenv(plugins.ENV_DISABLE_AUTOLOAD, value)
    plugins.reset()
    assert "fake_linear" not in plugins.available("reward")
    assert BUILTIN_RESAMPLERS <= set(plugins.available("resampler"))
    assert [row["name"] for row in plugins.describe()] == ["smcflow"]

    module = types.ModuleType("manual_plugin")
    module.smcflow_rewards = hookimpl(lambda: {"manual": dict})
    module.smcflow_rewards.__name__ = "smcflow_rewards"
    assert plugins.register(module) == "manual_plugin"
    assert "manual" in plugins.available("reward")
    with pytest.raises(UnknownComponentError, match=plugins.ENV_DISABLE_AUTOLOAD):
        plugins.get("reward", "fake_linear")


def test_disable_autoload_false_values_still_load(site, monkeypatch):
    site("smcflow-fake-good", "0.1", {"fakegood": GOOD_SOURCE})
    monkeypatch.setenv(plugins.ENV_DISABLE_AUTOLOAD, "0")
    plugins.reset()
    assert "fake_linear" in plugins.available("reward")


@pytest.mark.parametrize("selector", ["fakegood", "smcflow-fake-good", "SMCFLOW_fake.good"])
def test_plugins_env_selects_entry_points(site, monkeypatch, selector):
    site("smcflow-fake-good", "0.1", {"fakegood": GOOD_SOURCE})
    site("smcflow-fake-other", "0.1", {"fakeother": GOOD_SOURCE.replace("fake_", "other_")})
    monkeypatch.setenv(plugins.ENV_PLUGINS, f" {selector} , ")
    plugins.reset()
    assert {row["name"] for row in plugins.describe()} == {"smcflow", "fakegood"}
    assert "fake_linear" in plugins.available("reward")
    assert "other_linear" not in plugins.available("reward")
    assert not plugins.load_errors()


def test_plugins_env_reports_unknown_names(site, monkeypatch):
    site("smcflow-fake-good", "0.1", {"fakegood": GOOD_SOURCE})
    monkeypatch.setenv(plugins.ENV_PLUGINS, "fakegood,nonexistent-plugin")
    plugins.reset()
    with pytest.warns(PluginLoadWarning, match="nonexistent-plugin"):
        assert "fake_linear" in plugins.available("reward")
    assert [e.plugin for e in plugins.load_errors()] == ["nonexistent-plugin"]


# ---------------------------------------------------------------------------------------------------
# programmatic registration and caching


class _ScaledReward:
    differentiable = False

    def __init__(self, beta: float = 1.0) -> None:
        self.beta = beta

    def __call__(self, x):
        return self.beta * x[..., 0]


class _InlinePlugin:
    @hookimpl
    def smcflow_rewards(self):
        return {"inline_reward": _ScaledReward}


def test_registration_after_get_is_visible_and_unregister_removes_it():
    assert plugins.get("resampler", "multinomial")  # builds and caches the catalogue
    assert "inline_reward" not in plugins.available("reward")  # catalogue built and cached

    plugin = _InlinePlugin()
    name = plugins.register(plugin, name="inline")
    assert name == "inline"
    assert "inline_reward" in plugins.available("reward")  # the cache was dropped
    reward = plugins.get("reward", "inline_reward", beta=3.0)
    assert reward.beta == 3.0 and not reward.differentiable
    assert _row("inline")["source"] == "register"

    with pytest.raises(PluginRegistrationError, match="already registered"):
        plugins.register(_InlinePlugin(), name="inline")

    assert plugins.unregister("inline") is plugin
    assert "inline_reward" not in plugins.available("reward")
    plugins.register(plugin)  # default name: module.qualname of the class
    assert "inline_reward" in plugins.available("reward")
    plugins.unregister(plugin)
    assert "inline_reward" not in plugins.available("reward")
    with pytest.raises(KeyError):
        plugins.unregister("inline")
    with pytest.raises(KeyError):  # the built-ins stay
        plugins.unregister("smcflow")


def test_factory_errors_propagate_with_a_note():
    plugins.register(_InlinePlugin(), name="inline")
    with pytest.raises(TypeError) as info:
        plugins.get("reward", "inline_reward", no_such_option=1)
    assert any("inline" in note for note in getattr(info.value, "__notes__", []))


# ---------------------------------------------------------------------------------------------------
# error messages


def test_unknown_kind_is_a_clear_value_error():
    with pytest.raises(ValueError) as info:
        plugins.available("resamplers")
    assert isinstance(info.value, UnknownKindError)
    message = str(info.value)
    for kind in plugins.KIND_TO_HOOK:
        assert kind in message
    assert "did you mean 'resampler'" in message
    with pytest.raises(UnknownKindError):
        plugins.get("nope", "systematic")


def test_unknown_name_is_a_clear_key_error():
    with pytest.raises(KeyError) as info:
        plugins.get("resampler", "sistematic")
    assert isinstance(info.value, UnknownComponentError)
    message = str(info.value)
    assert not message.startswith("'")
    assert "did you mean 'systematic'" in message
    for name in BUILTIN_RESAMPLERS:
        assert name in message


# ---------------------------------------------------------------------------------------------------
# smcflow.io


def test_weights_round_trip_nested_dicts(tmp_path):
    params = {
        "net": {"layer0": {"w": jnp.arange(6.0).reshape(2, 3).T, "b": np.zeros(3, np.float64)},
                "empty": {}},
        "beta": 0.35,
        "steps": np.int32(7),
        "mask": np.array([True, False]),
        "half": jnp.ones(4, dtype=jnp.bfloat16),
    }
    written = save_weights(tmp_path / "sub" / "weights", params)
    assert written == tmp_path / "sub" / "weights.npz" and written.exists()
    loaded = load_weights(written)

    assert set(loaded) == {"net", "beta", "steps", "mask", "half"}
    np.testing.assert_array_equal(loaded["net"]["layer0"]["w"], np.arange(6.0).reshape(2, 3).T)
    assert loaded["net"]["layer0"]["w"].dtype == np.float32
    assert loaded["net"]["layer0"]["b"].dtype == np.float64
    assert loaded["net"]["empty"] == {}
    assert loaded["beta"].shape == () and float(loaded["beta"]) == 0.35
    assert loaded["steps"].dtype == np.int32 and int(loaded["steps"]) == 7
    assert loaded["mask"].tolist() == [True, False]
    assert loaded["half"].dtype == jnp.bfloat16
    # the same file without the suffix, and plain numpy can read it (flattened keys)
    assert set(load_weights(tmp_path / "sub" / "weights")) == set(loaded)
    with np.load(written, allow_pickle=False) as raw:
        assert "net/layer0/w" in raw.files


def test_weights_refuse_object_arrays_and_bad_inputs(tmp_path):
    with pytest.raises(TypeError, match="pickle"):
        save_weights(tmp_path / "o.npz", {"x": np.array([1, "a"], dtype=object)})
    with pytest.raises(TypeError, match="'a/b'"):
        save_weights(tmp_path / "o.npz", {"a": {"b": "a string"}})
    with pytest.raises(TypeError, match="list"):
        save_weights(tmp_path / "o.npz", {"a": [np.zeros(2)]})
    with pytest.raises(ValueError, match="'a/b'"):
        save_weights(tmp_path / "o.npz", {"a/b": np.zeros(2)})
    with pytest.raises(TypeError):
        save_weights(tmp_path / "o.npz", {1: np.zeros(2)})
    assert not list(tmp_path.iterdir())  # nothing half-written

    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, x=np.array([{"evil": 1}], dtype=object))
    with pytest.raises(ValueError, match="pickle"):
        load_weights(pickled)
    with pytest.raises(FileNotFoundError, match="missing"):
        load_weights(tmp_path / "missing.npz")
    single = tmp_path / "single.npy"
    np.save(single, np.zeros(2))
    with pytest.raises(ValueError, match="npz"):
        load_weights(single)


# ---------------------------------------------------------------------------------------------------
# CLI


def test_cli_plugins_json_lists_builtins(capsys):
    assert cli.main(["plugins", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    builtin = {p["name"]: p for p in report["plugins"]}["smcflow"]
    assert builtin["distribution"] == "smcflow"
    assert BUILTIN_RESAMPLERS <= set(builtin["components"]["resampler"])
    assert report["load_errors"] == [] or all("plugin" in e for e in report["load_errors"])


def test_cli_plugins_fails_on_load_errors(site, capsys):
    site("smcflow-fake-good", "0.1", {"fakegood": GOOD_SOURCE})
    site("smcflow-fake-broken", "0.2", {"fakebroken": "raise ImportError('boom at import')\n"})
    assert cli.main(["plugins"]) == 1
    captured = capsys.readouterr()
    assert "PLUGIN" in captured.out and "smcflow" in captured.out and "resampler:" in captured.out
    assert "fakegood" in captured.out  # the listing is still complete
    assert "Load errors" in captured.err and "fakebroken" in captured.err
    assert "smcflow-fake-broken" in captured.err and "boom at import" in captured.err

    assert cli.main(["plugins", "--json"]) == 1
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert [e["plugin"] for e in report["load_errors"]] == ["fakebroken"]
    assert "fakebroken" in captured.err


def test_cli_plugins_fails_on_a_failing_hook(site, capsys):
    site("smcflow-fake-raising", "0.3", {"fakeraising": """
        from smcflow.plugins import hookimpl

        @hookimpl
        def smcflow_rewards():
            raise RuntimeError("reward hook exploded")
        """})
    assert cli.main(["plugins"]) == 1
    assert "hook smcflow_rewards failed" in capsys.readouterr().err


def test_cli_help_documents_the_exit_status(capsys):
    with pytest.raises(SystemExit):
        cli.main(["plugins", "--help"])
    text = capsys.readouterr().out
    assert "exit status" in text and "--strict" in text and "141" in text


class _ClosedPipe:
    """A stdout whose reader went away."""

    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self):
        raise BrokenPipeError(32, "Broken pipe")


def test_cli_closed_stdout_exits_quietly(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdout", _ClosedPipe())
    assert cli.main(["plugins"]) == cli.EXIT_BROKEN_PIPE
    monkeypatch.undo()
    assert "Traceback" not in capsys.readouterr().err


def test_cli_closed_pipe_in_a_real_process(tmp_path):
    script = Path(sys.executable).with_name("smcflow")
    env = {**os.environ, plugins.ENV_DISABLE_AUTOLOAD: "1"}
    # fd 1 becomes a pipe whose read end is already closed: every write fails with EPIPE
    closed = subprocess.run(
        [sys.executable, "-c", "import os, sys; r, w = os.pipe(); os.close(r); os.dup2(w, 1); "
         "from smcflow.cli import main; sys.exit(main(['plugins']))"],
        capture_output=True, text=True, env=env, timeout=120)
    assert closed.returncode == cli.EXIT_BROKEN_PIPE, closed.stderr
    assert closed.stderr == ""
    if not script.exists():
        pytest.skip(f"no console script {script}")
    head = subprocess.run(["bash", "-c", f"'{script}' plugins | head -1; exit ${{PIPESTATUS[0]}}"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert head.stdout.split() == ["PLUGIN", "DISTRIBUTION", "VERSION", "COMPONENTS"]
    assert head.returncode in (0, cli.EXIT_BROKEN_PIPE) and head.stderr == ""


def test_cli_version(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert smcflow.__version__ in capsys.readouterr().out


def test_cli_demo_calls_demo_main(monkeypatch, tmp_path):
    calls = []
    fake = types.ModuleType("smcflow.demo")
    fake.main = lambda out_dir, progress: calls.append((out_dir, progress))
    monkeypatch.setitem(sys.modules, "smcflow.demo", fake)
    monkeypatch.setattr(smcflow, "demo", fake, raising=False)
    assert cli.main(["demo", "--out", str(tmp_path)]) == 0
    assert cli.main(["demo", "--no-progress"]) == 0
    assert calls == [(str(tmp_path), True), ("out/demo", False)]  # progress bars on unless --no-progress


def test_cli_without_command_prints_help(capsys):
    assert cli.main([]) == 2
    assert "plugins" in capsys.readouterr().err


def test_hooks_are_listed_in_docs():
    if not DOCS.exists():
        pytest.skip("docs/plugins.md not present")
    text = DOCS.read_text()
    for hook in plugins.KIND_TO_HOOK.values():
        assert hook in text


def _code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def test_docs_code_runs_as_written(tmp_path, monkeypatch):
    """Install the example plugin of docs/plugins.md from its own pyproject.toml and hooks.py, then
    run every other python block of the page, each in a fresh namespace."""
    if not DOCS.exists():
        pytest.skip("docs/plugins.md not present")
    text = DOCS.read_text()
    hooks, *snippets = _code_blocks(text, "python")
    project = tomllib.loads(_code_blocks(text, "toml")[0])["project"]
    (ep_name, target), = project["entry-points"]["smcflow"].items()
    module_path = tmp_path.joinpath(*target.split(".")).with_suffix(".py")
    module_path.parent.mkdir(parents=True)
    (module_path.parent / "__init__.py").write_text("")
    module_path.write_text(hooks)
    info = tmp_path / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\n"
                                   f"Version: {project['version']}\n")
    (info / "entry_points.txt").write_text(f"[smcflow]\n{ep_name} = {target}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    plugins.reset()

    described = {row["name"]: row for row in plugins.describe()}
    example = described[ep_name]
    assert (example["distribution"], example["version"]) == (project["name"], project["version"])
    # the example's names are its own: no built-in or other installed plugin offers them
    assert plugins.conflicts() == [] and plugins.load_errors() == []
    assert example["components"]["model"] and example["components"]["reward"]
    assert snippets
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginLoadWarning)  # the shadowing example warns, as it says
        for i, snippet in enumerate(snippets):
            exec(compile(snippet, f"docs/plugins.md python block {i + 2}", "exec"), {"__name__": f"docs_{i}"})
    assert plugins.load_errors() == []
