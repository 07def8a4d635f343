"""Built-in plugin names win over third-party ones, whatever the entry points sort like.

The built-in entry points are the real installed ones (distribution ``tunekit``); the impostors are
fake third-party distributions added beside them, loaded through the same ``importlib.metadata`` door.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fake_plugins import FakePlugin, entry_point

import tunekit.core.registry as plugins_mod
from tunekit.cli.main import cli
from tunekit.core.registry import Registry, builtin_names, load_registry

#: Sorts before every built-in entry point and registers a quantizer named like the built-in ``rtn``.
TAKEOVER = FakePlugin("aaa-takeover", "tk_fake_takeover", "tunekit-evil", "6.6", '''
from tunekit import hookimpl
from tunekit.core.kinds import Quantizer


class FakeRtn(Quantizer):
    name = "rtn"
    summary = "an impostor"


@hookimpl
def tunekit_quantizers():
    return [FakeRtn]
''')

#: An entry point named like the built-in ``rope`` package, offering ``yarn`` and a method of its own.
ROPE_TWIN = FakePlugin("rope", "tk_fake_rope", "tunekit-evil-rope", "1.0", '''
from tunekit import hookimpl
from tunekit.core.kinds import ContextExtender


class FakeYarn(ContextExtender):
    name = "yarn"


class Own(ContextExtender):
    name = "evil-own"


@hookimpl
def tunekit_context_extenders():
    return [FakeYarn, Own]
''')


@pytest.fixture
def with_impostors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Registry]:
    """The real built-in entry points plus the impostors, listed first so order alone cannot save us."""
    for plugin in (TAKEOVER, ROPE_TWIN):
        (tmp_path / f"{plugin.module}.py").write_text(textwrap.dedent(plugin.source))
        monkeypatch.delitem(sys.modules, plugin.module, raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    real = metadata.entry_points
    builtins = [ep for ep in real(group="tunekit") if ep.dist is not None and ep.dist.name == "tunekit"]
    points = [entry_point(TAKEOVER), entry_point(ROPE_TWIN), *builtins]

    def fake_entry_points(**params: str) -> Any:
        return metadata.EntryPoints(points) if params.get("group") == "tunekit" else real(**params)

    monkeypatch.setattr(metadata, "entry_points", fake_entry_points)
    monkeypatch.delenv("TUNEKIT_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("TUNEKIT_STRICT_PLUGINS", raising=False)
    registry = load_registry()
    monkeypatch.setattr(plugins_mod, "_cached", registry)
    cli.unload_plugin_commands()  # type: ignore[attr-defined]
    yield registry
    cli.unload_plugin_commands()  # type: ignore[attr-defined]
    for plugin in (TAKEOVER, ROPE_TWIN):
        sys.modules.pop(plugin.module, None)


def test_builtin_method_wins_and_the_newcomer_is_reported(with_impostors: Registry) -> None:
    registry = with_impostors
    assert registry.of("quantizer")["rtn"].__module__.startswith("tunekit_rtn")
    assert registry.owners[("quantizer", "rtn")].distribution == "tunekit"
    clash = [f for f in registry.failures if "quantizer name 'rtn'" in f.error]
    assert [(f.plugin, f.distribution) for f in clash] == [("aaa-takeover", "tunekit-evil")]


def test_entry_point_named_like_a_builtin_does_not_drop_the_builtin(with_impostors: Registry) -> None:
    registry = with_impostors
    assert {"linear", "dynamic", "yarn", "llama3", "longrope"} <= set(registry.of("context"))
    assert registry.of("context")["yarn"].__module__.startswith("tunekit_rope")
    assert "evil-own" not in registry.of("context")  # the impostor package was not loaded at all
    assert registry.sources["rope"].distribution == "tunekit"
    clash = [f for f in registry.failures if f.plugin == "rope"]
    assert len(clash) == 1 and clash[0].distribution == "tunekit-evil-rope"
    assert "another entry point already uses this name (tunekit " in clash[0].error


def test_plugins_listing_credits_each_method_to_its_real_distribution(with_impostors: Registry) -> None:
    result = CliRunner().invoke(cli, ["plugins", "--json", "--all"])
    assert result.exit_code == 0, result.output
    import json

    report = json.loads(result.output)
    by_name = {item["name"]: item for item in report["kinds"]["context"]}
    assert by_name["yarn"]["distribution"] == "tunekit"
    assert {f["distribution"] for f in report["failures"]} >= {"tunekit-evil", "tunekit-evil-rope"}


def test_validate_says_where_a_contested_method_comes_from(with_impostors: Registry, tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\nmodel: {id: m}\nquantizer: {method: rtn}\n")
    result = CliRunner().invoke(cli, ["validate", str(recipe)])
    assert result.exit_code == 0, result.output
    assert "quantizer 'rtn' comes from tunekit " in result.output
    assert "also offered by tunekit-evil 6.6" in result.output


def test_uncontested_methods_get_no_note(with_impostors: Registry, tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\nmodel: {id: m}\nquantizer: {method: nf4}\n")
    result = CliRunner().invoke(cli, ["validate", str(recipe)])
    assert result.exit_code == 0 and "note:" not in result.output, result.output


@pytest.mark.parametrize("name", ["rope", "rtn", "yarn", "tunekit-lora"])
def test_new_plugin_refuses_builtin_names(name: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["new-plugin", name, "--kind", "pruner", "--dir", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert "is a built-in tunekit plugin or method" in result.output
    assert list(tmp_path.iterdir()) == []


def test_builtin_names_cover_entry_points_and_methods() -> None:
    names = builtin_names(plugins_mod.get_registry())
    assert {"rope", "rtn", "peft", "lora", "yarn", "nf4", "gguf"} <= names
    assert "wanda" not in names  # the example third-party plugin's method stays free for it
