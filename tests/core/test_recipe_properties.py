"""Property tests: whatever a recipe file holds, the loader either returns a recipe or raises one of
tunekit's own errors (which the CLI turns into one line and exit 2), never a stray traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from recipe_fakes import fake_registry

from tunekit.core.errors import TunekitError
from tunekit.core.recipe import apply_overrides, load_recipe
from tunekit.core.recipe_model import Recipe
from tunekit.core.registry import Registry

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["fake-lora", "fq", "fq-packed", "fake-rope", "fake-prune", "sampling", "lora", "x.yaml",
                     "../x", "", "auto", "ddp", "fsdp", "zero3", "hf", "gguf:q4_k_m"]),
)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)

# documents shaped like recipes (real sections, real methods, random params), so they reach pass two
# and the cross-stage checks instead of stopping at the first unknown top-level key
PARAM_KEYS = ["r", "alpha", "dropout", "target", "bits", "group_size", "factor", "type", "sparsity", "pattern",
              "temperature", "top_p", "top_k", "method"]
SECTION_KEYS = {
    name: sorted(getattr(field.annotation, "model_fields", None) or [])
    for name, field in Recipe.model_fields.items()
}
keys = st.sampled_from(PARAM_KEYS + [k for ks in SECTION_KEYS.values() for k in ks]) | st.text(max_size=6)
small = st.recursive(scalars, lambda c: st.lists(c, max_size=2) | st.dictionaries(keys, c, max_size=2), max_leaves=4)
stage = st.builds(lambda method, params: {"method": method, **params},
                  st.sampled_from(["fake-lora", "fq", "fq-packed", "fake-rope", "fake-prune", "sampling", "nope"]),
                  st.dictionaries(st.sampled_from(PARAM_KEYS[:-1]), small, max_size=3))
section = st.sampled_from(sorted(k for k, v in SECTION_KEYS.items() if v)).flatmap(
    lambda name: st.tuples(st.just(name), st.dictionaries(st.sampled_from(SECTION_KEYS[name]), small, max_size=3)))
recipe_like = st.builds(
    lambda stages, sections, extra: {**dict(sections), **stages, **extra},
    st.dictionaries(st.sampled_from(["quantizer", "adapter", "context", "pruner", "sampler"]),
                    stage | st.none(), max_size=3),
    st.lists(section, max_size=3),
    st.dictionaries(st.sampled_from(["name", "description", "extends"]) | keys, small, max_size=1),
)


@pytest.fixture(scope="module")
def registry() -> Registry:
    return fake_registry()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("prop")


def load_or_tunekit_error(path: Path, registry: Registry, overrides: list[str] | None = None) -> None:
    try:
        load_recipe(path, registry=registry, overrides=overrides)
    except TunekitError:
        pass


@SETTINGS
@given(document=values)
def test_any_yaml_document_loads_or_raises_a_tunekit_error(
    document: Any, registry: Registry, workdir: Path
) -> None:
    path = workdir / "doc.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True))
    load_or_tunekit_error(path, registry)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=recipe_like)
def test_recipe_shaped_documents_load_or_raise_a_tunekit_error(
    document: dict[str, Any], registry: Registry, workdir: Path
) -> None:
    path = workdir / "recipe.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True))
    load_or_tunekit_error(path, registry)


@SETTINGS
@given(text=st.text(max_size=200), suffix=st.sampled_from([".yaml", ".toml"]))
def test_arbitrary_text_loads_or_raises_a_tunekit_error(
    text: str, suffix: str, registry: Registry, workdir: Path
) -> None:
    path = workdir / f"text{suffix}"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    load_or_tunekit_error(path, registry)


@SETTINGS
@given(blob=st.binary(max_size=120))
def test_arbitrary_bytes_load_or_raise_a_tunekit_error(blob: bytes, registry: Registry, workdir: Path) -> None:
    path = workdir / "blob.yaml"
    path.write_bytes(blob)
    load_or_tunekit_error(path, registry)


@SETTINGS
@given(overrides=st.lists(st.text(max_size=30) | st.builds(lambda k, v: f"{k}={v}", keys, st.text(max_size=10)),
                          max_size=4))
def test_arbitrary_set_overrides_apply_or_raise_a_tunekit_error(
    overrides: list[str], registry: Registry, workdir: Path
) -> None:
    path = workdir / "base.yaml"
    path.write_text("adapter: {method: fake-lora}\ntrain: {seq_len: 64}\n")
    try:
        apply_overrides({"adapter": {"method": "fake-lora"}}, overrides)
    except TunekitError:
        pass
    load_or_tunekit_error(path, registry, overrides)
