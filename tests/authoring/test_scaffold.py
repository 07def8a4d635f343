"""``tunekit new-plugin``: the package it writes installs, passes its own tests, and is listed.

The install test does what docs/plugins.md tells an author to do, in a throwaway venv layered on this
one (so the scaffolded plugin never shows up in anyone else's ``tunekit plugins``): scaffold, ``pip
install -e``, ``pytest``, ``tunekit plugins``, then a recipe naming the plugin validates and applies.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from venv_helpers import layered_venv, pip_install_editable, run

from tunekit.authoring.scaffold import KIND_CHOICES, PluginNames, new_plugin, render_files
from tunekit.cli.main import cli
from tunekit.core.errors import OutputExistsError, UsageError


def test_names_follow_the_convention() -> None:
    names = PluginNames.from_name("tunekit-my-pruner", "pruner")
    assert (names.name, names.distribution, names.module, names.class_name) == (
        "my-pruner", "tunekit-my-pruner", "tunekit_my_pruner", "MyPruner")
    assert PluginNames.from_name("demo", "context").class_name == "DemoExtender"
    for bad in ("Demo!", "9lives", "", "a--b"):
        with pytest.raises(UsageError):
            PluginNames.from_name(bad, "pruner")


@pytest.mark.parametrize("kind", KIND_CHOICES)
def test_every_kind_renders_valid_python_with_the_entry_point(kind: str) -> None:
    files = render_files(PluginNames.from_name("demo", kind), kind)
    assert '[project.entry-points.tunekit]\ndemo = "tunekit_demo"' in files["pyproject.toml"]
    for path, text in files.items():
        if path.endswith(".py"):
            compile(text, path, "exec")
    assert "Contract" in files["tests/test_plugin.py"]


def test_cli_writes_the_package_and_refuses_to_overwrite(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["new-plugin", "demo", "--kind", "sampler", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "pip install -e" in result.output
    assert (tmp_path / "tunekit-demo" / "src" / "tunekit_demo" / "plugin.py").is_file()
    with pytest.raises(OutputExistsError):
        new_plugin("demo", "sampler", tmp_path)
    again = CliRunner().invoke(cli, ["new-plugin", "demo", "--kind", "sampler", "--dir", str(tmp_path)])
    assert again.exit_code == 2 and "already exists" in again.output


@pytest.mark.slow
def test_scaffolded_pruner_installs_passes_its_tests_and_is_listed(tmp_path: Path) -> None:
    root = new_plugin("demo", "pruner", tmp_path)
    python = layered_venv(tmp_path / "venv")
    pip_install_editable(python, root, tmp_path)

    listed = json.loads(run([str(python), "-m", "tunekit", "plugins", "--json"], tmp_path).stdout)
    demo = [p for p in listed["kinds"]["pruner"] if p["name"] == "demo"]
    assert demo and demo[0]["distribution"] == "tunekit-demo" and demo[0]["ready"]

    recipe = tmp_path / "demo.yaml"
    recipe.write_text("name: demo\npruner: {method: demo, sparsity: 0.25, targets: [down_proj]}\n")
    run([str(python), "-m", "tunekit", "validate", str(recipe)], tmp_path)

    # One interpreter for the package's own tests and the recipe run (each torch import costs seconds).
    (root / "tests" / "test_recipe_applies.py").write_text(APPLY_TEST.replace("RECIPE", str(recipe)))
    tests = run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", str(root / "tests")], root)
    summary = tests.stdout.strip().splitlines()[-1]
    assert re.search(r"\d+ passed", summary) and "failed" not in summary and "error" not in summary, summary


APPLY_TEST = """
from tunekit.core.recipe import load_recipe
from tunekit.testing import build_tiny_model, make_context


def test_recipe_naming_the_plugin_applies():
    plugin = load_recipe("RECIPE").stages["pruner"]
    assert type(plugin).__module__ == "tunekit_demo.plugin"
    model = build_tiny_model()
    plugin.apply(model, make_context(None, model=model))
    for layer in model.model.layers:
        assert abs(float((layer.mlp.down_proj.weight == 0).float().mean()) - 0.25) < 0.01
        assert float((layer.mlp.up_proj.weight == 0).float().mean()) == 0.0
"""
