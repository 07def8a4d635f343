"""Recipe composition: extends (three levels, several parents, by path and by name), null-delete,
list replace, cycles, missing parents, TOML, and ``--set`` overrides with type coercion."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import recipe_fakes
from recipe_fakes import fake_registry

from tunekit.core import recipe_files
from tunekit.core.errors import RecipeError
from tunekit.core.recipe import apply_overrides, deep_merge, load_recipe
from tunekit.core.registry import Registry


@pytest.fixture(scope="module")
def registry() -> Registry:
    return fake_registry()


@pytest.fixture
def shipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in shipped recipe directory (the real one is covered by test_shipped_recipes)."""
    directory = tmp_path / "shipped"
    directory.mkdir()
    monkeypatch.setattr(recipe_files, "shipped_recipe_dir", lambda: directory)
    return directory


@pytest.fixture
def plugin_dirs(tmp_path: Path) -> Iterator[list[Path]]:
    recipe_fakes.RECIPE_DIRS.clear()
    yield recipe_fakes.RECIPE_DIRS
    recipe_fakes.RECIPE_DIRS.clear()


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_three_level_extends_merges_in_order(tmp_path: Path, registry: Registry) -> None:
    write(tmp_path / "grand.yaml", """
name: grand
description: the base
adapter: {method: fake-lora, r: 4, alpha: 8, target: [q_proj, k_proj, v_proj]}
train: {seq_len: 128, lr: 0.001, max_steps: 10, scheduler: linear}
eval: {seq_len: 64}
""")
    write(tmp_path / "parent.yaml", """
extends: grand.yaml
name: parent
adapter: {r: 16}
train: {max_steps: 20}
""")
    child = write(tmp_path / "child.yaml", """
extends: parent.yaml
name: child
adapter: {dropout: 0.1}
train: {batch_size: 2}
""")
    resolved = load_recipe(child, registry=registry)
    recipe = resolved.recipe
    assert recipe.name == "child"
    assert recipe.description == "the base"
    assert recipe.adapter == {"method": "fake-lora", "r": 16, "alpha": 8, "dropout": 0.1,
                              "target": ["q_proj", "k_proj", "v_proj"]}
    assert recipe.train is not None
    assert (recipe.train.seq_len, recipe.train.lr, recipe.train.max_steps, recipe.train.batch_size) == (
        128, 0.001, 20, 2)
    assert recipe.train.scheduler == "linear"
    assert recipe.eval.seq_len == 64
    adapter = resolved.stages["adapter"]
    assert adapter.params.r == 16 and adapter.params.dropout == 0.1  # type: ignore[attr-defined]
    assert resolved.to_dict()["adapter"]["r"] == 16


def test_null_deletes_keys_and_whole_sections(tmp_path: Path, registry: Registry) -> None:
    write(tmp_path / "base.yaml", """
quantizer: {method: fq, bits: 8, group_size: 32}
adapter: {method: fake-lora}
context: {method: fake-rope, factor: 4}
train: {max_steps: 7, seq_len: 64}
""")
    child = write(tmp_path / "child.yaml", """
extends: base.yaml
quantizer: {group_size: null}
context: null
train: {max_steps: null}
""")
    recipe = load_recipe(child, registry=registry).recipe
    assert recipe.quantizer == {"method": "fq", "bits": 8}
    assert recipe.context is None
    assert recipe.train is not None and recipe.train.max_steps is None and recipe.train.seq_len == 64
    resolved = load_recipe(child, registry=registry)
    assert resolved.stages["quantizer"].params.group_size == 128  # type: ignore[attr-defined]  # default back


def test_null_in_a_root_recipe_means_absent(tmp_path: Path, registry: Registry) -> None:
    root = write(tmp_path / "root.yaml", "adapter: null\ntrain: null\nname: r\n")
    recipe = load_recipe(root, registry=registry).recipe
    assert recipe.adapter is None and recipe.train is None


def test_lists_replace_instead_of_appending(tmp_path: Path, registry: Registry) -> None:
    write(tmp_path / "base.yaml", "adapter: {method: fake-lora, target: [q_proj, k_proj, v_proj]}\n"
                                  "output: {formats: [hf, merged]}\n")
    child = write(tmp_path / "child.yaml", "extends: base.yaml\nadapter: {target: [o_proj]}\n"
                                           "output: {formats: [hf]}\n")
    recipe = load_recipe(child, registry=registry).recipe
    assert recipe.adapter == {"method": "fake-lora", "target": ["o_proj"]}
    assert recipe.output.formats == ["hf"]


def test_several_parents_merge_left_to_right_then_child(tmp_path: Path, registry: Registry) -> None:
    write(tmp_path / "a.yaml", "name: a\ndescription: from a\nquantizer: {method: fq, bits: 3}\n")
    write(tmp_path / "b.yaml", "name: b\nquantizer: {bits: 5}\npruner: {method: fake-prune}\n")
    child = write(tmp_path / "c.yaml", "extends: [a.yaml, b.yaml]\npruner: {sparsity: 0.25}\n")
    recipe = load_recipe(child, registry=registry).recipe
    assert recipe.name == "b" and recipe.description == "from a"
    assert recipe.quantizer == {"method": "fq", "bits": 5}
    assert recipe.pruner == {"method": "fake-prune", "sparsity": 0.25}
    assert recipe.extends is None  # composition consumes extends


def test_deep_merge_does_not_mutate_its_inputs() -> None:
    base = {"a": {"b": [1, 2], "c": 1}}
    override = {"a": {"b": [3], "c": None}}
    assert deep_merge(base, override) == {"a": {"b": [3]}}
    assert base == {"a": {"b": [1, 2], "c": 1}} and override == {"a": {"b": [3], "c": None}}


@pytest.mark.parametrize("layout", ["self", "pair", "triangle"])
def test_extends_cycles_are_errors(tmp_path: Path, registry: Registry, layout: str) -> None:
    chains = {"self": ["a"], "pair": ["a", "b"], "triangle": ["a", "b", "c"]}[layout]
    for index, name in enumerate(chains):
        parent = chains[(index + 1) % len(chains)]
        write(tmp_path / f"{name}.yaml", f"extends: {parent}.yaml\nname: {name}\n")
    with pytest.raises(RecipeError, match="extends cycle") as info:
        load_recipe(tmp_path / "a.yaml", registry=registry)
    assert info.value.key == "extends"
    assert str(info.value).count("a.yaml") >= 2  # the chain is spelled out


def test_diamond_is_not_a_cycle(tmp_path: Path, registry: Registry) -> None:
    write(tmp_path / "base.yaml", "quantizer: {method: fq}\n")
    write(tmp_path / "left.yaml", "extends: base.yaml\nquantizer: {bits: 3}\n")
    write(tmp_path / "right.yaml", "extends: base.yaml\nname: right\n")
    top = write(tmp_path / "top.yaml", "extends: [left.yaml, right.yaml]\n")
    recipe = load_recipe(top, registry=registry).recipe
    assert recipe.quantizer == {"method": "fq", "bits": 3}  # base merged again under right adds nothing
    assert recipe.name == "right"


def test_missing_parent_names_the_extending_file_and_index(tmp_path: Path, registry: Registry) -> None:
    write(tmp_path / "ok.yaml", "name: ok\n")
    child = write(tmp_path / "child.yaml", "extends: [ok.yaml, nowhere.yaml]\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(child, registry=registry)
    assert info.value.source == str(child)
    assert info.value.key == "extends[1]"
    assert "recipe 'nowhere.yaml' not found" in str(info.value)


def test_missing_grandparent_names_the_parent(tmp_path: Path, registry: Registry) -> None:
    write(tmp_path / "parent.yaml", "extends: gone.yaml\n")
    child = write(tmp_path / "child.yaml", "extends: parent.yaml\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(child, registry=registry)
    assert info.value.source == str(tmp_path / "parent.yaml")
    assert info.value.key == "extends[0]"


def test_extends_by_shipped_name(tmp_path: Path, shipped: Path, registry: Registry) -> None:
    write(shipped / "lora-base.yaml", "name: lora-base\nadapter: {method: fake-lora, r: 4}\n")
    write(shipped / "base" / "common.yml", "train: {seq_len: 96}\n")
    child = write(tmp_path / "mine.yaml", "extends: [lora-base, base/common]\nadapter: {r: 32}\n")
    recipe = load_recipe(child, registry=registry).recipe
    assert recipe.adapter == {"method": "fake-lora", "r": 32}
    assert recipe.train is not None and recipe.train.seq_len == 96
    assert load_recipe("lora-base", registry=registry).recipe.name == "lora-base"  # top-level by name too


def test_extends_a_real_shipped_recipe_by_name(tmp_path: Path, registry: Registry) -> None:
    """The real shipped directory (packaged as tunekit/_recipes in a wheel) is searched by name."""
    shipped_names = sorted(p.stem for p in recipe_files.shipped_recipe_dir().glob("*.yaml"))
    assert shipped_names, "no shipped recipes found"
    child = write(tmp_path / "mine.yaml", f"extends: {shipped_names[0]}\nname: mine\n")
    recipe = load_recipe(child, registry=registry, resolve=False).recipe  # plugins: test_shipped_recipes
    assert recipe.name == "mine"


def test_extends_from_a_plugin_recipe_dir(tmp_path: Path, registry: Registry, plugin_dirs: list[Path]) -> None:
    plugin_dirs.append(write(tmp_path / "plugin-recipes" / "prune-half.yaml",
                             "pruner: {method: fake-prune, sparsity: 0.5}\n").parent)
    child = write(tmp_path / "c.yaml", "extends: prune-half\n")
    assert load_recipe(child, registry=registry).recipe.pruner == {"method": "fake-prune", "sparsity": 0.5}


def test_extends_by_relative_path_is_relative_to_the_extending_file(
    tmp_path: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "shared" / "base.yaml", "quantizer: {method: fq, bits: 6}\n")
    write(tmp_path / "shared" / "mid.yaml", "extends: ./base.yaml\nname: mid\n")
    child = write(tmp_path / "project" / "deep" / "child.yaml", "extends: ../../shared/mid.yaml\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    recipe = load_recipe(child, registry=registry).recipe
    assert recipe.quantizer == {"method": "fq", "bits": 6} and recipe.name == "mid"


def test_toml_recipes_compose_with_yaml(tmp_path: Path, registry: Registry) -> None:
    write(tmp_path / "base.yaml", "adapter: {method: fake-lora, r: 4}\ntrain: {seq_len: 64}\n")
    child = write(tmp_path / "child.toml", """
extends = "base.yaml"
name = "toml-child"

[adapter]
r = 12
target = ["q_proj"]

[train]
lr = 1e-4
packing = false
""")
    recipe = load_recipe(child, registry=registry).recipe
    assert recipe.name == "toml-child"
    assert recipe.adapter == {"method": "fake-lora", "r": 12, "target": ["q_proj"]}
    assert recipe.train is not None and recipe.train.lr == 1e-4 and recipe.train.packing is False
    grandchild = write(tmp_path / "g.yaml", "extends: child.toml\nadapter: {r: 2}\n")
    assert load_recipe(grandchild, registry=registry).recipe.adapter["r"] == 2  # type: ignore[index]


def test_sampler_method_defaults_to_sampling(tmp_path: Path, registry: Registry) -> None:
    path = write(tmp_path / "s.yaml", "sampler: {temperature: 0.7}\n")
    resolved = load_recipe(path, registry=registry)
    assert resolved.recipe.sampler == {"method": "sampling", "temperature": 0.7}
    assert resolved.stages["sampler"].params.temperature == 0.7  # type: ignore[attr-defined]


# -- --set overrides ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "path", "expected"),
    [
        ("adapter.r=32", ("adapter", "r"), 32),
        ("adapter.alpha=0.5", ("adapter", "alpha"), 0.5),
        ("train.lr=1e-4", ("train", "lr"), 1e-4),
        ("train.lr=3.0e-5", ("train", "lr"), 3e-5),
        ("train.packing=false", ("train", "packing"), False),
        ("train.packing=true", ("train", "packing"), True),
        ("model.path=/models/tiny llama", ("model", "path"), "/models/tiny llama"),
        ("adapter.target=[o_proj, up_proj]", ("adapter", "target"), ["o_proj", "up_proj"]),
        ("name='42'", ("name",), "42"),
        ("description=", ("description",), ""),
        ("output.formats=[hf, {gguf: q4_k_m}]", ("output", "formats"), ["hf", {"gguf": "q4_k_m"}]),
    ],
)
def test_set_coerces_values_like_yaml(override: str, path: tuple[str, ...], expected: object) -> None:
    data = {"adapter": {"method": "fake-lora", "r": 8}, "train": {"lr": 0.1}}
    node: object = apply_overrides(data, [override])
    for part in path:
        node = node[part]  # type: ignore[index]
    assert node == expected
    assert type(node) is type(expected)
    assert data == {"adapter": {"method": "fake-lora", "r": 8}, "train": {"lr": 0.1}}  # input untouched


def test_set_null_deletes_and_nested_keys_are_created(tmp_path: Path, registry: Registry) -> None:
    path = write(tmp_path / "r.yaml", "adapter: {method: fake-lora, r: 4}\nquantizer: {method: fq, bits: 3}\n"
                                      "train: {max_steps: 5}\n")
    resolved = load_recipe(path, registry=registry, overrides=[
        "quantizer=null", "train.max_steps=null", "context.method=fake-rope", "context.factor=8",
        "train.seq_len=256", "eval.seq_len=32"])
    recipe = resolved.recipe
    assert recipe.quantizer is None and "quantizer" not in resolved.stages
    assert recipe.train is not None and recipe.train.max_steps is None and recipe.train.seq_len == 256
    assert recipe.context == {"method": "fake-rope", "factor": 8}
    assert resolved.stages["context"].params.factor == 8.0  # type: ignore[attr-defined]
    assert recipe.eval.seq_len == 32


def test_set_applies_after_composition_and_in_order(tmp_path: Path, registry: Registry) -> None:
    write(tmp_path / "base.yaml", "adapter: {method: fake-lora, r: 4}\n")
    child = write(tmp_path / "c.yaml", "extends: base.yaml\nadapter: {r: 8}\n")
    recipe = load_recipe(child, registry=registry, overrides=["adapter.r=16", "adapter.r=64"]).recipe
    assert recipe.adapter == {"method": "fake-lora", "r": 64}


@pytest.mark.parametrize(
    ("override", "message", "key"),
    [
        ("adapter.r", "expected KEY=VALUE, got 'adapter.r'", None),
        ("adapter..r=1", "empty key segment", "adapter..r"),
        ("=1", "empty key segment", ""),
        (".r=1", "empty key segment", ".r"),
        ("train.seq_len.inner=1", "'train.seq_len' is a int, not a mapping", "train.seq_len.inner"),
        ("adapter.target.first=x", "'adapter.target' is a list, not a mapping", "adapter.target.first"),
    ],
)
def test_set_bad_paths_are_recipe_errors(override: str, message: str, key: str | None) -> None:
    data = {"adapter": {"method": "fake-lora", "target": ["q_proj"]}, "train": {"seq_len": 64}}
    with pytest.raises(RecipeError, match=message.replace("[", r"\[").replace(".", r"\.")) as info:
        apply_overrides(data, [override])
    assert info.value.source == "--set"
    assert (info.value.key or "") == (key or "")


@pytest.mark.parametrize(
    ("override", "key", "message"),
    [
        ("bogus.key=1", "bogus", "unknown key"),
        ("adapter.rr=1", "adapter.rr", "unknown key"),
        ("adapter.r=0", "adapter.r", "greater than or equal to 1"),
        ("adapter.r=many", "adapter.r", "valid integer"),
        ("train.seq_len=4", "train.seq_len", "greater than or equal to 8"),
        ("adapter.method=nope", "adapter.method", "unknown adapter 'nope' (available: fake-lora)"),
    ],
)
def test_set_values_are_validated_like_file_values(
    tmp_path: Path, registry: Registry, override: str, key: str, message: str
) -> None:
    path = write(tmp_path / "r.yaml", "adapter: {method: fake-lora}\ntrain: {seq_len: 64}\n")
    with pytest.raises(RecipeError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        load_recipe(path, registry=registry, overrides=[override])
    assert info.value.key == key
    assert info.value.source == str(path)


def test_recipe_serve_engines_are_the_one_engine_list() -> None:
    from typing import get_args

    from tunekit.core.engines import ENGINES
    from tunekit.core.recipe_model import ServeSection

    literal = get_args(ServeSection.model_fields["engine"].annotation)[0]  # Literal[...] | None
    assert get_args(literal) == ENGINES
