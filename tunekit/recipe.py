"""Load, compose and validate recipes.

A recipe is a YAML (or TOML) file. ``extends`` names parents (paths relative to the extending file,
or shipped recipe names), merged in order with the child last: mappings deep-merge, lists replace,
``null`` deletes a key. ``--set key.path=value`` overrides after composition, the value parsed as
YAML so ``adapter.r=32`` is an int. Validation runs in two passes: the recipe schema, then each stage's
plugin ``Params``. Every error names the file, the key path and what was expected.
"""

from __future__ import annotations

import copy
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError

from tunekit.distributed import check as check_distributed
from tunekit.errors import RecipeError, UnknownPluginError
from tunekit.kinds import KINDS, Plugin
from tunekit.recipe_model import Recipe
from tunekit.resources import shipped_recipe_dir

if TYPE_CHECKING:
    from tunekit.plugins import Registry

RECIPE_SUFFIXES = (".yaml", ".yml", ".toml")
#: ``1e-4``: YAML 1.1 (PyYAML) reads exponent floats without a dot as strings; ``--set`` parses them.
_EXPONENT_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


# -- reading files -------------------------------------------------------------------------


def read_document(path: Path) -> dict[str, Any]:
    """Parse one recipe file into a mapping; syntax errors name the file (and line, for YAML)."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError("file not found", source=source) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"cannot read: {exc}", source=source) from None
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RecipeError(f"invalid YAML{where}: {problem}", source=source) from None
    except (tomllib.TOMLDecodeError, ValueError, RecursionError) as exc:
        raise RecipeError(f"invalid {path.suffix.lstrip('.').upper() or 'YAML'}: {exc}", source=source) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RecipeError(f"a recipe must be a mapping at the top level, got {type(data).__name__}", source=source)
    bad_keys = [k for k in data if not isinstance(k, str)]
    if bad_keys:
        raise RecipeError(f"top-level keys must be strings, got {bad_keys[0]!r}", source=source)
    return data


def recipe_dirs(registry: Registry | None = None) -> list[Path]:
    """Shipped recipes first, then directories that plugins add through ``tunekit_recipe_dirs``."""
    dirs = [shipped_recipe_dir()]
    if registry is not None:
        for _plugin, returned in registry.call_safely("tunekit_recipe_dirs"):
            dirs.extend(Path(p) for p in returned)
    return dirs


def find_recipe(name: str, *, relative_to: Path | None = None, registry: Registry | None = None) -> Path:
    """Locate a recipe by path (relative to the extending file) or by shipped name."""
    candidates = []
    raw = Path(name)
    if relative_to is not None and not raw.is_absolute():
        candidates.append(relative_to / raw)
    candidates.append(raw)
    for directory in recipe_dirs(registry):
        candidates.append(directory / raw)
        candidates.extend(directory / f"{name}{suffix}" for suffix in RECIPE_SUFFIXES)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise RecipeError(f"recipe '{name}' not found (not a file, nor a shipped recipe; see `tunekit recipes ls`)")


def list_recipes(registry: Registry | None = None) -> list[Path]:
    """Every shipped or plugin-provided recipe file (rules and bases live in subfolders)."""
    found: list[Path] = []
    for directory in recipe_dirs(registry):
        if directory.is_dir():
            found.extend(sorted(p for p in directory.iterdir() if p.suffix in RECIPE_SUFFIXES))
    return found


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


def compose(path: Path, *, registry: Registry | None = None, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read ``path`` and everything it extends into one mapping (without ``extends``)."""
    resolved = path.resolve()
    if resolved in _chain:
        cycle = " -> ".join(str(p) for p in (*_chain, resolved))
        raise RecipeError(f"extends cycle: {cycle}", source=str(path), key="extends")
    data = read_document(path)
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
        merged = deep_merge(merged, compose(parent_path, registry=registry, _chain=(*_chain, resolved)))
    return deep_merge(merged, data)


def apply_overrides(data: dict[str, Any], overrides: list[str], *, source: str = "--set") -> dict[str, Any]:
    """Apply ``key.path=value`` overrides; values are parsed as YAML (``32`` -> int, ``null`` deletes)."""
    result = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise RecipeError(f"expected KEY=VALUE, got '{item}'", source=source)
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise RecipeError(f"empty key segment in '{key}'", source=source, key=key)
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except (yaml.YAMLError, ValueError, RecursionError):
            value = raw
        if isinstance(value, str) and _EXPONENT_FLOAT.match(value.strip()):
            value = float(value)
        node = result
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                where = ".".join(parts[: depth + 1])
                raise RecipeError(f"cannot set '{key}': '{where}' is a {type(child).__name__}, not a mapping",
                                  source=source, key=key)
            node = child
        if value is None:
            node.pop(parts[-1], None)
        else:
            node[parts[-1]] = value
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


def validation_error(exc: ValidationError, *, source: str, prefix: str = "") -> RecipeError:
    """The first pydantic error as a RecipeError (file, key path, expectation); the rest counted."""
    errors = exc.errors()
    first = errors[0]
    key = _location((prefix, *first["loc"]) if prefix else tuple(first["loc"]))
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "unknown key (not allowed here)"
    elif "input" in first and first["type"] not in {"missing"} and not isinstance(first["input"], dict):
        message += f" (got {first['input']!r})"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more error{'s' if len(errors) > 2 else ''})"
    return RecipeError(message, source=source, key=key or None)


def validate_data(data: dict[str, Any], *, source: str) -> Recipe:
    """Pass one: the recipe schema."""
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, source=source) from None


@dataclass
class ResolvedRecipe:
    """A recipe with each stage's plugin instantiated from its validated ``Params``."""

    recipe: Recipe
    source: str
    stages: dict[str, Plugin] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The fully resolved recipe as plain data (what ``tunekit-recipe.yaml`` holds)."""
        data = self.recipe.model_dump(mode="json", exclude={"extends"})
        for kind in KINDS:
            plugin = self.stages.get(kind)
            data[kind] = plugin.describe() if plugin else None
        return data


def resolve_stages(recipe: Recipe, registry: Registry, *, source: str) -> ResolvedRecipe:
    """Pass two: each stage's plugin validates its own params; then cross-stage checks."""
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
            raise validation_error(exc, source=source, prefix=kind) from None
    check_cross_stage(resolved)
    return resolved


def check_cross_stage(resolved: ResolvedRecipe) -> None:
    """Combinations that cannot work, caught before any weight loads."""
    from tunekit.kinds import Quantizer

    source, recipe, stages = resolved.source, resolved.recipe, resolved.stages
    quantizer = stages.get("quantizer")
    if recipe.train is not None and "adapter" not in stages:
        raise RecipeError("a fine-tune needs an adapter stage (full fine-tuning is not supported)",
                          source=source, key="train")
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
    from tunekit.exporters import parse_format

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
    from tunekit.plugins import get_registry

    registry = registry or get_registry()
    recipe_path = Path(path)
    if not recipe_path.is_file():
        recipe_path = find_recipe(str(path), registry=registry)
    source = str(path)
    data = compose(recipe_path, registry=registry)
    if overrides:
        data = apply_overrides(data, overrides)
    recipe = validate_data(data, source=source)
    if not resolve:
        return ResolvedRecipe(recipe=recipe, source=source)
    return resolve_stages(recipe, registry, source=source)
