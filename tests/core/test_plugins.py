"""The plugin host: broken plugins are recorded with distribution, version and error, and skipped.

Fake plugins are real modules exposed through a patched ``importlib.metadata.entry_points``, so they
go through the same loading path as an installed third-party distribution.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from fake_plugins import ALL, BY_NAME, entry_point, forget_modules, install

import tunekit.core.registry as plugins_mod
from tunekit.cli.main import cli
from tunekit.core.errors import PluginError, UnknownPluginError
from tunekit.core.registry import Registry, load_registry


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No cached registry, no plugin commands left from another test, no env switches."""
    monkeypatch.setattr(plugins_mod, "_cached", None)
    monkeypatch.delenv("TUNEKIT_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("TUNEKIT_STRICT_PLUGINS", raising=False)
    monkeypatch.setenv("COLUMNS", "250")  # rich folds long errors otherwise
    cli.unload_plugin_commands()  # type: ignore[attr-defined]
    yield
    cli.unload_plugin_commands()  # type: ignore[attr-defined]
    forget_modules(ALL)


@pytest.fixture
def everything(fresh: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Registry:
    """All fake plugins installed at once, good and broken."""
    install(monkeypatch, tmp_path, ALL)
    return load_registry()


def failures_of(registry: Registry, plugin: str) -> list[str]:
    return [f.error for f in registry.failures if f.plugin == plugin]


def test_good_plugin_registers_its_classes_with_its_distribution(everything: Registry) -> None:
    cls = everything.get("pruner", "fake-magnitude")
    assert cls.__module__ == "tk_fake_good"
    owner = everything.owner("pruner", "fake-magnitude")
    assert (owner.plugin, owner.distribution, owner.version) == ("good", "tunekit-good", "1.0")
    assert failures_of(everything, "good") == []
    assert cls(cls.Params.model_validate({"sparsity": 0.25})).sparsity() == 0.25  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("plugin", "expected"),
    [
        ("fails-import", "failed to load tk_fake_fails_import: ImportError: libfake.so"),
        ("exits-import", "SystemExit: plugin gave up at import"),
        ("raises", "tunekit_quantizers() raised RuntimeError: quantizer table is corrupt"),
        ("not-a-plugin", "which is not a subclass of tunekit.core.kinds.Sampler"),
        ("zz-duplicate", "pruner name 'fake-magnitude' is already registered by plugin 'good' (tunekit-good)"),
        ("loose", "LooseQuantizer.Params must forbid extra keys"),
        ("bad-default", "BadDefault.Params() has no valid defaults"),
        ("bad-name", "name must be a lowercase identifier, got 'Bad Name'"),
        ("misspelled", "unknown hook tunekit_quantiser()"),
    ],
)
def test_each_broken_plugin_is_recorded_with_distribution_version_and_error(
    everything: Registry, plugin: str, expected: str
) -> None:
    records = [f for f in everything.failures if f.plugin == plugin]
    assert records, f"no failure recorded for {plugin}: {everything.failures}"
    fake = BY_NAME[plugin]
    assert all((f.distribution, f.version) == (fake.distribution, fake.version) for f in records)
    assert any(expected in f.error for f in records), [f.error for f in records]


def test_a_failure_skips_only_the_broken_part(everything: Registry) -> None:
    """Isolation is per implementation and per class, not per plugin or per registry."""
    assert "fake-adapter" in everything.of("adapter")  # same plugin as the raising quantizer hook
    assert "fake-greedy" in everything.of("sampler")  # same plugin as the misspelled hook
    assert "no-default" not in everything.of("context")
    assert "bad-default" not in everything.of("context")
    assert "loose" not in everything.of("quantizer")
    assert everything.of("pruner")["fake-magnitude"].__module__ == "tk_fake_good"  # first wins
    assert any("NoDefault.Params() has no valid defaults" in e for e in failures_of(everything, "bad-default"))


def test_duplicate_entry_point_name_is_recorded(fresh: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    twin = entry_point(BY_NAME["bad-name"], name="good")  # a second distribution claiming "good"
    install(monkeypatch, tmp_path, [BY_NAME["good"], BY_NAME["bad-name"]], extra=(twin,))
    registry = load_registry()
    assert "fake-magnitude" in registry.of("pruner")
    assert any("another entry point already uses this name" in f.error and f.distribution == "tunekit-shout"
               for f in registry.failures)


def test_disable_plugins_env_skips_named_plugins_without_loading_them(
    fresh: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    install(monkeypatch, tmp_path, ALL)
    monkeypatch.setenv("TUNEKIT_DISABLE_PLUGINS", "fails-import, good,exits-import")
    registry = load_registry()
    assert "fake-magnitude" in registry.of("pruner")  # the duplicate now wins: good is disabled
    assert registry.of("pruner")["fake-magnitude"].__module__ == "tk_fake_duplicate"
    assert failures_of(registry, "fails-import") == []
    assert failures_of(registry, "exits-import") == []
    assert failures_of(registry, "good") == []
    assert failures_of(registry, "raises")  # not disabled: still recorded


@pytest.mark.parametrize("plugin", ["fails-import", "raises", "not-a-plugin", "misspelled", "bad-default"])
def test_strict_mode_reraises_with_distribution_and_version(
    fresh: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, plugin: str
) -> None:
    install(monkeypatch, tmp_path, [BY_NAME[plugin]])
    monkeypatch.setenv("TUNEKIT_STRICT_PLUGINS", "1")
    fake = BY_NAME[plugin]
    with pytest.raises(PluginError, match=f"plugin '{plugin}' \\({fake.distribution} {fake.version}\\)"):
        load_registry()


def test_strict_mode_keeps_the_original_exception_as_cause(
    fresh: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    install(monkeypatch, tmp_path, [BY_NAME["fails-import"]])
    monkeypatch.setenv("TUNEKIT_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError) as info:
        load_registry()
    assert isinstance(info.value.__cause__, ImportError)


def test_plugins_all_shows_every_failure_and_exits_zero(everything: Registry) -> None:
    result = CliRunner().invoke(cli, ["plugins", "--all", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert [p["name"] for p in report["kinds"]["pruner"]] == ["fake-magnitude"]
    assert report["kinds"]["pruner"][0]["distribution"] == "tunekit-good"
    failed = {f["plugin"]: f for f in report["failures"]}
    for name in ("fails-import", "exits-import", "raises", "not-a-plugin", "zz-duplicate", "loose",
                 "bad-default", "bad-name", "misspelled"):
        assert failed[name]["distribution"] == BY_NAME[name].distribution
        assert failed[name]["version"] == BY_NAME[name].version
        assert failed[name]["error"]

    table = CliRunner().invoke(cli, ["plugins", "--all"])
    assert table.exit_code == 0, table.output
    assert "failed plugins (skipped)" in table.output
    assert "tunekit-broken 0.3" in table.output and "quantizer table is corrupt" in table.output

    short = CliRunner().invoke(cli, ["plugins"])
    assert short.exit_code == 0
    assert "failed to load; see `tunekit plugins --all`" in short.output


def test_validate_and_show_keep_working_with_broken_plugins(everything: Registry, tmp_path: Path) -> None:
    recipe = tmp_path / "prune.yaml"
    recipe.write_text("name: p\npruner: {method: fake-magnitude, sparsity: 0.3}\n")
    result = CliRunner().invoke(cli, ["validate", str(recipe)])
    assert result.exit_code == 0, result.output
    assert f"ok: {recipe}" in result.output
    shown = CliRunner().invoke(cli, ["show", "--resolved", str(recipe)])
    assert shown.exit_code == 0, shown.output
    assert "sparsity: 0.3" in shown.output
    bad = CliRunner().invoke(cli, ["validate", str(recipe), "--set", "pruner.method=loose"])
    assert bad.exit_code == 2
    assert "pruner.method: unknown pruner 'loose' (available: fake-magnitude)" in bad.output


def test_plugin_command_is_listed_in_help_and_runs(everything: Registry) -> None:
    helped = CliRunner().invoke(cli, ["--help"])
    assert helped.exit_code == 0
    assert "fake-hello" in helped.output
    ran = CliRunner().invoke(cli, ["fake-hello"])
    assert ran.exit_code == 0, ran.output
    assert ran.output == "hello from a plugin command\n"


def test_plugin_command_cannot_replace_a_builtin(everything: Registry, tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\n")
    CliRunner().invoke(cli, ["--help"])  # loads plugin commands
    result = CliRunner().invoke(cli, ["validate", str(recipe)])
    assert result.exit_code == 0 and "hijacked" not in result.output
    registry = plugins_mod.get_registry()
    assert any("clashes with a built-in" in f.error for f in registry.failures)


def test_builtin_commands_do_not_load_plugin_commands(fresh: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Running (or asking help for) a built-in command never imports plugins to build the command table."""

    def forbidden(**_: object) -> None:
        raise AssertionError("the plugin registry was loaded")

    monkeypatch.setattr(plugins_mod, "get_registry", forbidden)
    for args in (["recipes", "--help"], ["validate", "--help"], ["plugins", "--help"], ["--version"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, (args, result.output, result.exception)
    assert CliRunner().invoke(cli, ["--help"]).exception is not None  # listing commands does load it


def test_call_safely_isolates_each_implementation(everything: Registry) -> None:
    results = everything.call_safely("tunekit_adapters")
    assert [(plugin, [c.name for c in classes]) for plugin, classes in results] == [("raises", ["fake-adapter"])]


def test_in_process_modules_register_without_entry_points(fresh: None) -> None:
    import types

    from tunekit import hookimpl
    from tunekit.core.kinds import Pruner

    class Tiny(Pruner):
        name = "tiny"

    module = types.ModuleType("tk_inproc")
    module.tunekit_pruners = hookimpl(lambda: [Tiny])  # type: ignore[attr-defined]
    module.tunekit_pruners.__name__ = "tunekit_pruners"  # type: ignore[attr-defined]
    registry = load_registry(entry_points=False, extra_modules=[module])
    assert registry.get("pruner", "tiny") is Tiny
    assert registry.owners[("pruner", "tiny")].distribution == "(in-process)"


def test_other_modules_read_and_report_through_public_methods(fresh: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """``of(kind)`` is a read-only view (only the loader fills the tables); ``record_failure`` honours strict mode."""
    registry = load_registry(entry_points=False)
    view = registry.of("pruner")
    assert dict(view) == {}
    with pytest.raises(TypeError):
        view["x"] = object()  # type: ignore[index]
    with pytest.raises(ValueError, match="unknown plugin kind 'prunr'"):
        registry.of("prunr")
    with pytest.raises(UnknownPluginError, match="unknown pruner 'nothing'"):
        registry.owner("pruner", "nothing")
    registry.record_failure("mine", "tunekit_rules(): bad rule")
    recorded = [(f.plugin, f.distribution, f.error) for f in registry.failures]
    assert recorded == [("mine", "?", "tunekit_rules(): bad rule")]
    monkeypatch.setenv("TUNEKIT_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="plugin 'mine'"):
        registry.record_failure("mine", "again")
