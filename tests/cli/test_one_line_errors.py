"""Bad input ends in one ``error: ...`` line naming the file, raised as a typed error at the layer that knows."""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest
from click.testing import CliRunner

from tunekit import command_cache, hookimpl
from tunekit.advise.rules import load_rules
from tunekit.advise.rules.loader import parse_rule, read_rule_file
from tunekit.cli.main import cli
from tunekit.core import registry as plugins_mod
from tunekit.core.arch import ModelArch
from tunekit.core.errors import UsageError
from tunekit.core.recipe import recipe_dirs
from tunekit.core.registry import load_registry

CONFIG = {"hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2, "vocab_size": 100}


def _fails_in_one_line(args: list[str], code: int) -> str:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.output
    return lines[0]


def _plugin(**hooks: object) -> types.ModuleType:
    module = types.ModuleType("tk_fake_inline")
    for name, function in hooks.items():
        setattr(module, name, hookimpl(function))
    return module


@pytest.mark.parametrize("info", [{"help": 5}, {"short_help": ["x"]}, {"hidden": "yes"}, {"deprecated": 3}])
def test_corrupt_command_cache_entry_is_ignored(
    info: dict[str, object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "commands.json"
    monkeypatch.setenv(command_cache.ENV, str(path))
    monkeypatch.setattr(plugins_mod, "_cached", None)
    key = command_cache.fingerprint()
    path.write_text(json.dumps({"fingerprint": key, "commands": {"x": info}}))
    assert command_cache.load(key) is None
    cli.unload_plugin_commands()  # type: ignore[attr-defined]
    try:
        result = CliRunner().invoke(cli, ["--help"])
    finally:
        cli.unload_plugin_commands()  # type: ignore[attr-defined]
    assert result.exit_code == 0 and "validate" in result.output, result.output


@pytest.mark.parametrize("returned", [[5], 5, [None], [{"a": 1}]])
def test_plugin_recipe_dirs_that_are_not_paths_are_recorded_and_skipped(returned: object) -> None:
    registry = load_registry(entry_points=False, extra_modules=[_plugin(tunekit_recipe_dirs=lambda: returned)])
    dirs = recipe_dirs(registry)
    assert len(dirs) == 1  # the shipped folder only
    assert any("tunekit_recipe_dirs() must return paths" in f.error for f in registry.failures)


def test_recipe_dirs_with_a_missing_folder_list_nothing_from_it(tmp_path: Path) -> None:
    from tunekit.core.recipe import list_recipes

    module = _plugin(tunekit_recipe_dirs=lambda: [tmp_path / "missing", str(tmp_path / "f")])
    (tmp_path / "f").write_text("a file, not a folder")
    registry = load_registry(entry_points=False, extra_modules=[module])
    assert list_recipes(registry)  # the shipped ones, no OSError


@pytest.mark.parametrize(("rule", "message"), [
    ({"id": "r", "priority": "high"}, "'priority' must be an integer"),
    ({"id": "r", "priority": True}, "'priority' must be an integer"),
    ({"id": "r", "levers": 5}, "'levers' must be a list"),
    ({"id": "r", "prefer": 5}, "'prefer' must be a list"),
    ({"id": "r", "next": "try harder"}, "'next' must be a list"),
    ({"id": "x" * 10_000, "levers": 5}, "rule .xxx"),
])
def test_bad_rule_values_are_usage_errors(rule: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match=message) as caught:
        parse_rule(rule, "plugin p")
    assert len(str(caught.value)) < 400


def test_bad_plugin_rules_are_recorded_and_the_rest_load(tmp_path: Path) -> None:
    latin1 = tmp_path / "rules.yaml"
    latin1.write_bytes("rules: [{id: caf\xe9}]\n".encode("latin-1"))
    tagged = tmp_path / "tagged.yaml"
    tagged.write_text("rules: [{id: t, priority: !!bool high}]\n")
    module = _plugin(tunekit_rules=lambda: [{"id": "p", "priority": "high"}, latin1, tagged, {"id": "fine"}])
    registry = load_registry(entry_points=False, extra_modules=[module])
    rules = load_rules(registry)
    assert "fine" in {r.id for r in rules}
    errors = [f.error for f in registry.failures]
    assert any("'priority' must be an integer" in e for e in errors)
    assert any("not UTF-8 text" in e and str(latin1) in e for e in errors)
    assert any(str(tagged) in e for e in errors)
    with pytest.raises(UsageError, match="not UTF-8"):
        read_rule_file(latin1)


@pytest.mark.parametrize(("change", "message"), [
    ({"hidden_size": "abc"}, "missing or malformed"),
    ({"num_hidden_layers": -2}, "num_hidden_layers must be a positive integer"),
    ({"vocab_size": 0}, "vocab_size must be a positive integer"),
    ({"rope_scaling": [1]}, "missing or malformed"),
    ({"hidden_size": 1e400}, "missing or malformed"),
])
def test_bad_config_values_are_one_line(tmp_path: Path, change: dict[str, object], message: str) -> None:
    (tmp_path / "config.json").write_text(json.dumps({**CONFIG, **change}))
    line = _fails_in_one_line(["estimate", "--model", str(tmp_path)], 2)
    assert str(tmp_path) in line and message in line


@pytest.mark.parametrize("content", [b"[1, 2]", b"\xff\xfe\x00garbage", b"{" * 50_000])
def test_unreadable_config_json_is_one_line(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "config.json").write_bytes(content)
    with pytest.raises(UsageError, match=r"config\.json"):
        ModelArch.from_path(tmp_path)


def test_good_config_still_reads(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(CONFIG))
    assert ModelArch.from_path(tmp_path).hidden == 64


@pytest.mark.parametrize("target", ["/proc/tunekit-x", "FILE/sub"])
def test_recommend_write_to_an_unwritable_place_is_one_line(tmp_path: Path, target: str) -> None:
    (tmp_path / "FILE").write_text("")
    target = target.replace("FILE", str(tmp_path / "FILE"))
    line = _fails_in_one_line(["recommend", "--params", "1B", "--vram", "24", "--top", "1", "--write", target], 1)
    assert line.startswith(f"error: --write {target}: cannot write")
