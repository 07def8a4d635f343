"""Load, compose and validate recipes.

A recipe is a YAML (or TOML) file. ``extends`` names parents (paths relative to the extending file,
or shipped recipe names), merged in order with the child last: mappings deep-merge, lists replace,
``null`` deletes a key. ``--set key.path=value`` overrides after composition, the value parsed as
YAML so ``adapter.r=32`` is an int. Validation runs in two passes: the recipe schema, then each stage's
plugin ``Params``. Every error names the file, the key path and what was expected.

Small inputs must not cost much: files and documents are size-bounded (:mod:`tunekit.core.recipe_files`,
which also finds recipes by name), each ``extends`` file is read and composed once per load however often
the graph names it, and values quoted in errors are cut to a short excerpt.
"""

from __future__ import annotations

import copy
import re
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from tunekit.core.errors import RecipeError, UnknownPluginError, did_you_mean, excerpt
from tunekit.core.kinds import KINDS, Plugin
from tunekit.core.recipe_files import (
    MAX_CHARS,
    MAX_FILE_BYTES,
    MAX_NODES,
    RECIPE_SUFFIXES,
    check_size,
    cut,
    find_recipe,
    is_file,
    is_yaml_error,
    list_recipes,
    parse_yaml,
    read_document,
    recipe_dirs,
)
from tunekit.core.recipe_model import Recipe
from tunekit.core.sharding import check as check_distributed

if TYPE_CHECKING:
    from tunekit.core.registry import Registry

__all__ = [  # reading files is recipe_files' job; its names stay importable from here
    "MAX_CHARS", "MAX_FILE_BYTES", "MAX_NODES", "RECIPE_SUFFIXES", "Recipe", "ResolvedRecipe", "apply_overrides",
    "check_cross_stage", "check_size", "compose", "deep_merge", "find_recipe", "is_file", "list_recipes",
    "load_recipe", "read_document", "recipe_dirs", "resolve_stages", "validate_data", "validation_error",
]

#: ``1e-4``: YAML 1.1 (PyYAML) reads exponent floats without a dot as strings; ``--set`` parses them.
_EXPONENT_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


# -- composition ---------------------------------------------------------------------------


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Merge ``override`` into ``base``: mappings deep-merge, lists and scalars replace, None deletes."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _strip_nulls(data: dict[str, Any]) -> dict[str, Any]:
    """A root recipe's own ``null`` means "nothing here", the same as deleting from a parent."""
    return deep_merge({}, data)


def compose(path: Path, *, registry: Registry | None = None, _chain: tuple[Path, ...] = (),
            _done: dict[Path, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Read ``path`` and everything it extends into one mapping (without ``extends``).

    ``_done`` memoises each file's composition for this load: a graph that names one parent many
    times (``a`` extends ``b`` twice, ``b`` extends ``c`` twice...) costs one read per file, not 2**depth.
    """
    resolved = path.resolve()
    if resolved in _chain:
        cycle = " -> ".join(str(p) for p in (*_chain, resolved))
        raise RecipeError(f"extends cycle: {cycle}", source=str(path), key="extends")
    done = {} if _done is None else _done
    if resolved not in done:
        done[resolved] = _compose_one(path, resolved, registry, _chain, done)
    return done[resolved]


def _compose_one(path: Path, resolved: Path, registry: Registry | None, chain: tuple[Path, ...],
                 done: dict[Path, dict[str, Any]]) -> dict[str, Any]:
    from tunekit.core.recipe_paths import anchor_paths

    data = anchor_paths(read_document(path), resolved.parent)
    parents = data.pop("extends", None)
    if parents is None:
        return _strip_nulls(data)
    if isinstance(parents, str):
        parents = [parents]
    if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
        raise RecipeError("expected a recipe name or a list of names", source=str(path), key="extends")
    merged: dict[str, Any] = {}
    for index, parent in enumerate(parents):
        try:
            parent_path = find_recipe(parent, relative_to=path.parent, registry=registry)
        except RecipeError as exc:
            raise RecipeError(exc.message, source=str(path), key=f"extends[{index}]") from None
        merged = deep_merge(merged, compose(parent_path, registry=registry, _chain=(*chain, resolved), _done=done))
    merged = deep_merge(merged, data)
    check_size(merged, source=str(path), what="document with its extends")
    return merged


def apply_overrides(data: dict[str, Any], overrides: list[str], *, source: str = "--set") -> dict[str, Any]:
    """Apply ``key.path=value`` overrides; values are parsed as YAML (``32`` -> int, ``null`` deletes)."""
    result = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise RecipeError(f"expected KEY=VALUE, got {excerpt(item)}", source=source)
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise RecipeError(f"empty key segment in {excerpt(key)}", source=source, key=cut(key))
        try:
            value = parse_yaml(raw) if raw.strip() else ""
        except Exception as exc:  # not YAML: the text as it is
            if not is_yaml_error(exc):
                raise
            value = raw
        check_size(value, source=source, what=f"value of {excerpt(key, 60)}")
        if isinstance(value, str) and _EXPONENT_FLOAT.match(value.strip()):
            value = float(value)
        node = result
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                where = ".".join(parts[: depth + 1])
                raise RecipeError(f"cannot set '{cut(key)}': '{cut(where)}' is a {type(child).__name__}, "
                                  "not a mapping", source=source, key=cut(key))
            node = child
        if value is None:
            node.pop(parts[-1], None)
        else:
            node[parts[-1]] = value
    check_size(result, source=source, what="document with its --set values")
    return result


# -- validation ----------------------------------------------------------------------------


def _location(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model a field holds (``TrainSection | None`` -> ``TrainSection``), else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if isinstance(annotation, types.UnionType) or getattr(annotation, "__origin__", None) is not None:
        for arg in getattr(annotation, "__args__", ()):
            found = _model_of(arg)
            if found is not None:
                return found
    return None


def suggest_key(model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    """`` (did you mean 'lr'?)`` for an unknown key at ``loc``, from the field names of the model there
    (``train.pakcing`` in the file or ``--set trian.lr=1`` alike)."""
    current: type[BaseModel] | None = model
    for part in loc[:-1]:
        if current is None or isinstance(part, int):
            return ""
        info = current.model_fields.get(str(part))
        current = _model_of(info.annotation) if info is not None else None
    if current is None or not loc:
        return ""
    return did_you_mean(str(loc[-1]), current.model_fields)


def validation_error(exc: ValidationError, *, source: str, prefix: str = "",
                     model: type[BaseModel] | None = None) -> RecipeError:
    """The first pydantic error as a RecipeError (file, key path, expectation); the rest counted.

    ``model`` is the class that was validated, so an unknown key can name the nearest allowed ones.
    """
    errors = exc.errors()
    first = errors[0]
    key = cut(_location((prefix, *first["loc"]) if prefix else tuple(first["loc"])))
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "unknown key (not allowed here)"
        if model is not None:
            message += suggest_key(model, tuple(first["loc"]))
    elif "input" in first and first["type"] not in {"missing"} and not isinstance(first["input"], dict):
        message += f" (got {excerpt(first['input'])})"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more error{'s' if len(errors) > 2 else ''})"
    return RecipeError(message, source=source, key=key or None)


def validate_data(data: dict[str, Any], *, source: str) -> Recipe:
    """Pass one: the recipe schema."""
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, source=source, model=Recipe) from None


@dataclass
class ResolvedRecipe:
    """A recipe with each stage's plugin instantiated from its validated ``Params``."""

    recipe: Recipe
    source: str
    stages: dict[str, Plugin] = field(default_factory=dict)
    #: The exporter plugins ``output.formats`` names, resolved here so ``validate`` checks what ``apply`` does.
    exporters: list[Any] = field(default_factory=list)
    path: Path | None = None
    """The recipe file read (None for a recipe built in memory)."""

    def to_dict(self) -> dict[str, Any]:
        """The fully resolved recipe as plain data (what ``tunekit-recipe.yaml`` holds)."""
        data = self.recipe.model_dump(mode="json", exclude={"extends"})
        for kind in KINDS:
            plugin = self.stages.get(kind)
            data[kind] = plugin.describe() if plugin else None
        return data


def resolve_stages(recipe: Recipe, registry: Registry, *, source: str) -> ResolvedRecipe:
    """Pass two: each stage's plugin validates its own params, then the export formats, then cross-stage checks."""
    from tunekit.core.formats import resolve_exporters

    resolved = ResolvedRecipe(recipe=recipe, source=source)
    for kind in KINDS:
        spec = getattr(recipe, kind)
        if spec is None:
            continue
        params = {k: v for k, v in spec.items() if k != "method"}
        try:
            cls = registry.get(kind, spec["method"])
        except UnknownPluginError as exc:
            raise RecipeError(str(exc), source=source, key=f"{kind}.method") from None
        try:
            resolved.stages[kind] = cls(cls.Params.model_validate(params))
        except ValidationError as exc:
            raise validation_error(exc, source=source, prefix=kind, model=cls.Params) from None
    resolved.exporters = resolve_exporters(recipe.output.formats, registry, source=source)
    check_cross_stage(resolved)
    return resolved


def check_cross_stage(resolved: ResolvedRecipe) -> None:
    """Combinations that cannot work, caught before any weight loads."""
    from tunekit.core.kinds import Quantizer

    source, recipe, stages = resolved.source, resolved.recipe, resolved.stages
    quantizer = stages.get("quantizer")
    if recipe.train is not None and recipe.train.trainable is not None and "adapter" in stages:
        raise RecipeError("train.trainable picks weights for full fine-tuning; with an adapter the adapter "
                          "decides what trains (drop one of them)", source=source, key="train.trainable")
    if recipe.train is not None and "adapter" not in stages and quantizer is not None:
        raise RecipeError(
            f"full fine-tuning updates the weights themselves, which a '{quantizer.name}' quantizer has packed "
            "into integers: add an adapter (QLoRA), or fine-tune first and quantize the saved folder in a "
            "second recipe", source=source, key="quantizer")
    if "adapter" in stages and isinstance(quantizer, Quantizer) and not quantizer.trainable:
        raise RecipeError(
            f"an adapter cannot be trained on a '{quantizer.name}' base with this backend; "
            "use nf4 (QLoRA) or train first and quantize the merged model afterwards",
            source=source, key="adapter")
    if isinstance(quantizer, Quantizer) and quantizer.output_formats is not None:
        check_output_formats(recipe.output.formats, quantizer, source)
    if recipe.model.gguf_file and (quantizer is not None or "pruner" in stages):
        raise RecipeError("a GGUF model is already quantized: tunekit dequantizes it on load; "
                          "drop the quantizer/pruner or start from the HF weights",
                          source=source, key="model.gguf_file")
    if recipe.model.offload is not None and (recipe.train is not None or stages.keys() - {"sampler"}):
        which = "train" if recipe.train is not None else sorted(stages.keys() - {"sampler"})[0]
        raise RecipeError(f"model.offload is for inference: offloaded layers live on disk/CPU hooks and the "
                          f"'{which}' stage would rewrite them; run the stages without offload, then "
                          "generate/evaluate the output with offload", source=source, key="model.offload")
    if recipe.distributed.strategy != "none" and recipe.train is None:
        raise RecipeError("a distributed strategy only applies to training (add a train section)",
                          source=source, key="distributed.strategy")
    check_distributed(resolved)


def check_output_formats(formats: list[Any], quantizer: Any, source: str) -> None:
    """Refuse an export format the quantizer's model cannot be written as (``Quantizer.output_formats``)."""
    from tunekit.core.formats import parse_format

    allowed = quantizer.output_formats
    for i, entry in enumerate(formats):
        try:
            name = parse_format(entry)[0]
        except ValueError:
            continue  # resolve_exporters reports a malformed entry with its own message
        if name not in allowed:
            raise RecipeError(
                f"a '{quantizer.name}' model cannot be written as '{name}' (it writes its own format: "
                f"{', '.join(sorted(allowed))}); drop '{name}' or pick another quantizer",
                source=source, key=f"output.formats[{i}]")


def load_recipe(
    path: str | Path,
    *,
    overrides: list[str] | None = None,
    registry: Registry | None = None,
    resolve: bool = True,
) -> ResolvedRecipe:
    """Read, compose, override and validate a recipe (file path or shipped name)."""
    from tunekit.core.registry import get_registry

    registry = registry or get_registry()
    recipe_path = Path(path)
    if not is_file(recipe_path):
        recipe_path = find_recipe(str(path), registry=registry)
    source = str(path)
    data = compose(recipe_path, registry=registry)
    if overrides:
        data = apply_overrides(data, overrides)
    recipe = validate_data(data, source=source)
    if not resolve:
        return ResolvedRecipe(recipe=recipe, source=source, path=recipe_path)
    resolved = resolve_stages(recipe, registry, source=source)
    resolved.path = recipe_path
    return resolved
