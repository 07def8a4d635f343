"""``tunekit --help`` lists plugin commands from a cache keyed by what is installed.

The cache only saves the import of every plugin; these tests check it never shows a listing that
no longer matches the installed plugins, and that a plugin command still runs through the plugin.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from fake_plugins import ALL, BY_NAME, forget_modules, install
from test_cli_import import imported_modules

from tunekit.cli import command_cache
from tunekit.cli.main import cli
from tunekit.core import registry as plugins_mod

GOOD = BY_NAME["good"]


@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """A cache file of this test's own, no loaded registry, no plugin commands from another test."""
    path = tmp_path / "cache" / "commands.json"
    monkeypatch.setenv(command_cache.ENV, str(path))
    monkeypatch.delenv("TUNEKIT_DISABLE_PLUGINS", raising=False)
    monkeypatch.setattr(plugins_mod, "_cached", None)
    cli.unload_plugin_commands()  # type: ignore[attr-defined]
    yield path
    cli.unload_plugin_commands()  # type: ignore[attr-defined]
    forget_modules(ALL)


def forget_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    """As a new process: no registry and no plugin commands in memory, and loading one is an error."""
    monkeypatch.setattr(plugins_mod, "_cached", None)
    cli.unload_plugin_commands()  # type: ignore[attr-defined]

    def forbidden(**_: object) -> None:
        raise AssertionError("the plugin registry was loaded")

    monkeypatch.setattr(plugins_mod, "get_registry", forbidden)


def test_second_help_lists_plugin_commands_without_loading_plugins(
    cache: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    install(monkeypatch, tmp_path, [GOOD])
    first = CliRunner().invoke(cli, ["--help"])
    assert first.exit_code == 0, first.output
    assert "fake-hello" in first.output and "Say hello from a plugin." in first.output
    assert set(json.loads(cache.read_text())["commands"]) == {"fake-hello"}

    real_get_registry = plugins_mod.get_registry
    forget_loaded(monkeypatch)
    second = CliRunner().invoke(cli, ["--help"])
    assert second.exit_code == 0, second.output
    assert second.output == first.output

    monkeypatch.setattr(plugins_mod, "get_registry", real_get_registry)
    ran = CliRunner().invoke(cli, ["fake-hello"])  # running it loads the plugin, never the cache
    assert ran.exit_code == 0 and ran.output == "hello from a plugin command\n"


@pytest.mark.parametrize("change", ["edit the plugin", "add an entry point", "disable a plugin"])
def test_a_change_to_the_installed_plugins_invalidates_the_listing(
    cache: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, change: str
) -> None:
    install(monkeypatch, tmp_path, [GOOD])
    before = command_cache.fingerprint()
    assert command_cache.fingerprint() == before  # stable while nothing changes
    if change == "edit the plugin":
        module = tmp_path / f"{GOOD.module}.py"
        module.write_text(module.read_text() + "\n# edited\n")
    elif change == "add an entry point":
        install(monkeypatch, tmp_path, [GOOD, BY_NAME["raises"]])
    else:
        monkeypatch.setenv("TUNEKIT_DISABLE_PLUGINS", "good")
    assert command_cache.fingerprint() != before


def test_a_stale_listing_is_not_shown(cache: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    install(monkeypatch, tmp_path, [GOOD])
    cache.parent.mkdir()
    cache.write_text(json.dumps({"fingerprint": "an older install", "commands": {"gone": {"help": "old"}}}))
    helped = CliRunner().invoke(cli, ["--help"])
    assert helped.exit_code == 0
    assert "fake-hello" in helped.output and "gone" not in helped.output
    assert "fake-hello" in json.loads(cache.read_text())["commands"]  # rewritten for what is installed


@pytest.mark.parametrize("content", ["{not json", "[]", '{"fingerprint": "KEY", "commands": {"x": 1}}'])
def test_a_corrupt_listing_is_ignored(
    cache: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: str
) -> None:
    install(monkeypatch, tmp_path, [GOOD])
    cache.parent.mkdir()
    cache.write_text(content.replace("KEY", command_cache.fingerprint()))
    assert command_cache.load(command_cache.fingerprint()) is None
    helped = CliRunner().invoke(cli, ["--help"])
    assert helped.exit_code == 0 and "fake-hello" in helped.output


def test_an_unwritable_cache_only_costs_speed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(command_cache.ENV, str(blocker / "commands.json"))
    monkeypatch.setattr(plugins_mod, "_cached", None)
    cli.unload_plugin_commands()  # type: ignore[attr-defined]
    try:
        install(monkeypatch, tmp_path, [GOOD])
        helped = CliRunner().invoke(cli, ["--help"])
        assert helped.exit_code == 0 and "fake-hello" in helped.output
        written = sorted(p.name for p in tmp_path.iterdir() if p.name != "__pycache__")  # the import's, not ours
        assert written == ["a-file", f"{GOOD.module}.py"]
    finally:
        cli.unload_plugin_commands()  # type: ignore[attr-defined]
        forget_modules(ALL)


def test_off_means_no_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(command_cache.ENV, "off")
    assert command_cache.cache_file() is None
    command_cache.save("key", {})  # a no-op, not an error
    monkeypatch.setenv(command_cache.ENV, "")
    monkeypatch.setenv("TUNEKIT_CACHE", "/somewhere")
    assert str(command_cache.cache_file()).startswith("/somewhere/plugin-commands-")


def test_cached_help_imports_no_plugin_and_no_pydantic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real installed plugins, in fresh processes: the first --help writes the listing, the second uses it."""
    monkeypatch.setenv(command_cache.ENV, str(tmp_path / "commands.json"))
    first_modules, first = imported_modules("-m", "tunekit", "--help")
    assert first.returncode == 0, first.stderr[-2000:]
    assert "tunekit.core.registry" in first_modules and (tmp_path / "commands.json").exists()
    second_modules, second = imported_modules("-m", "tunekit", "--help")
    assert second.returncode == 0, second.stderr[-2000:]
    assert second.stdout == first.stdout
    loaded = {m for m in second_modules if m.split(".")[0] in {"pydantic", "tunekit_peft", "tunekit_gptq"}}
    assert "tunekit.core.registry" not in second_modules and loaded == set()
    assert os.environ[command_cache.ENV] == str(tmp_path / "commands.json")
