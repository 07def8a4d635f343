"""Load, compose and validate recipes.

A recipe is a YAML (or TOML) file. ``extends`` names parents (paths relative to the extending file,
or shipped recipe names), merged in order with the child last: mappings deep-merge, lists replace,
``null`` deletes a key. ``--set key.path=value`` overrides after composition, the value parsed as
YAML so ``adapter.r=32`` is an int. Validation runs in two passes: the recipe schema, then each stage's
plugin ``Params``. Every error names the file, the key path and what was expected.

Small inputs must not cost much: a file is at most :data:`MAX_FILE_BYTES`, a document (after YAML
aliases expand, after ``extends`` and ``--set``) at most :data:`MAX_NODES` values and
:data:`MAX_CHARS` characters of strings, each ``extends`` file is read and composed once per load
however often the graph names it, and values quoted in errors are cut to a short excerpt.
"""

from __future__ import annotations

import copy
import re
import tomllib
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, ValidationError

from tunekit.core.errors import RecipeError, UnknownPluginError, did_you_mean, excerpt
from tunekit.core.kinds import KINDS, Plugin
from tunekit.core.recipe_model import Recipe
from tunekit.core.resources import shipped_recipe_dir
from tunekit.core.sharding import check as check_distributed

if TYPE_CHECKING:
    from tunekit.core.registry import Registry

RECIPE_SUFFIXES = (".yaml", ".yml", ".toml")
#: ``1e-4``: YAML 1.1 (PyYAML) reads exponent floats without a dot as strings; ``--set`` parses them.
_EXPONENT_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")
#: A recipe is a page of settings; these bounds are far above any real one and far below a bomb.
MAX_FILE_BYTES = 1_000_000
MAX_NODES = 20_000
MAX_CHARS = 2_000_000
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
#: Errors PyYAML's constructors raise for a well-formed but meaningless tag (``!!bool maybe``, ``!!int x``).
_CONSTRUCT_ERRORS = (KeyError, ValueError, TypeError, OverflowError, RecursionError)


# -- reading files -------------------------------------------------------------------------


def check_size(data: Any, *, source: str, what: str = "document") -> None:
    """Refuse a document that expands past :data:`MAX_NODES` values or :data:`MAX_CHARS` characters.

    Walks shared (aliased) values once per reference, as everything after parsing would, and stops
    at the bound, so a billion-laughs document costs at most ``MAX_NODES`` steps here.
    """
    nodes = chars = 0
    stack = [data]
    while stack:
        value = stack.pop()
        nodes += 1
        if isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, (list, tuple)):
            stack.extend(value)
        elif isinstance(value, (str, bytes)):
            chars += len(value)
        if nodes > MAX_NODES or chars > MAX_CHARS:
            raise RecipeError(f"{what} too large once YAML aliases expand (over {MAX_NODES} values or "
                              f"{MAX_CHARS} characters); a recipe is a page of settings", source=source)


def _cut(text: str, limit: int = 120) -> str:
    """A key path short enough for one line (keys come from the user's file and may be any length)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _parse_yaml(text: str) -> Any:
    """``yaml.safe_load`` (libyaml's when built in) with a constructor's failure on a tag as a YAMLError."""
    try:
        return yaml.load(text, Loader=_SAFE_LOADER)
    except yaml.YAMLError:
        raise
    except _CONSTRUCT_ERRORS as exc:
        raise yaml.YAMLError(f"cannot construct a value: {type(exc).__name__}: {excerpt(str(exc))}") from None


def is_file(path: Path) -> bool:
    """``Path.is_file`` that says False for a name the OS refuses (too long, NUL byte) instead of raising."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def read_document(path: Path) -> dict[str, Any]:
    """Parse one recipe file into a mapping; syntax errors name the file (and line, for YAML)."""
    source = str(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
        if len(raw) > MAX_FILE_BYTES:
            raise RecipeError(f"file larger than {MAX_FILE_BYTES} bytes; a recipe is a page of settings",
                              source=source)
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise RecipeError("file not found", source=source) from None
    except UnicodeDecodeError as exc:
        raise RecipeError(f"cannot read: not UTF-8 text (byte {exc.start}); is this a recipe?", source=source) from None
    except (OSError, ValueError) as exc:
        raise RecipeError(f"cannot read: {exc.strerror if isinstance(exc, OSError) else exc}",
                          source=source) from None
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else _parse_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RecipeError(f"invalid YAML{where}: {problem}", source=source) from None
    except (tomllib.TOMLDecodeError, ValueError, RecursionError) as exc:
        raise RecipeError(f"invalid {path.suffix.lstrip('.').upper() or 'YAML'}: {excerpt(str(exc), 200)}",
                          source=source) from None
    check_size(data, source=source)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RecipeError(f"a recipe must be a mapping at the top level, got {type(data).__name__}", source=source)
    bad_keys = [k for k in data if not isinstance(k, str)]
    if bad_keys:
        raise RecipeError(f"top-level keys must be strings, got {excerpt(bad_keys[0])}", source=source)
    return data


def recipe_dirs(registry: Registry | None = None) -> list[Path]:
    """Shipped recipes first, then directories that plugins add through ``tunekit_recipe_dirs``."""
    dirs = [shipped_recipe_dir()]
    if registry is not None:
        for plugin, returned in registry.call_safely("tunekit_recipe_dirs"):
            items = returned if isinstance(returned, (list, tuple)) else [returned]
            bad = [p for p in items if not isinstance(p, (str, Path))]
            if bad:
                registry._fail(plugin, f"tunekit_recipe_dirs() must return paths, got {excerpt(bad[0])}; skipped")
                continue
            dirs.extend(Path(p) for p in items)
    return dirs


def find_recipe(name: str, *, relative_to: Path | None = None, registry: Registry | None = None) -> Path:
    """Locate a recipe by path (relative to the extending file) or by shipped name."""
    candidates = []
    if "\0" in name:
        raise RecipeError(f"recipe name {excerpt(name)} contains a NUL byte")
    raw = Path(name)
    if relative_to is not None and not raw.is_absolute():
        candidates.append(relative_to / raw)
    candidates.append(raw)
    for directory in recipe_dirs(registry):
        candidates.append(directory / raw)
        candidates.extend(directory / f"{name}{suffix}" for suffix in RECIPE_SUFFIXES)
    for candidate in candidates:
        if is_file(candidate):
            return candidate
    raise RecipeError(f"recipe {excerpt(name)} not found (not a file, nor a shipped recipe; see `tunekit recipes ls`)")


def list_recipes(registry: Registry | None = None) -> list[Path]:
    """Every shipped or plugin-provided recipe file (rules and bases live in subfolders)."""
    found: list[Path] = []
    for directory in recipe_dirs(registry):
        try:
            found.extend(sorted(p for p in directory.iterdir() if p.suffix in RECIPE_SUFFIXES))
        except OSError:  # a plugin's folder that is missing or unreadable lists nothing
            continue
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
            raise RecipeError(f"empty key segment in {excerpt(key)}", source=source, key=_cut(key))
        try:
            value = _parse_yaml(raw) if raw.strip() else ""
        except yaml.YAMLError:
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
                raise RecipeError(f"cannot set '{_cut(key)}': '{_cut(where)}' is a {type(child).__name__}, "
                                  "not a mapping", source=source, key=_cut(key))
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
    key = _cut(_location((prefix, *first["loc"]) if prefix else tuple(first["loc"])))
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
    if recipe.model.gguf_file and (quantizer is not None or "pruner" in stages):
        raise RecipeError("a GGUF model is already quantized: tunekit dequantizes it on load; "
                          "drop the quantizer/pruner or start from the HF weights",
                          source=source, key="model.gguf_file")
    if recipe.distributed.strategy != "none" and recipe.train is None:
        raise RecipeError("a distributed strategy only applies to training (add a train section)",
                          source=source, key="distributed.strategy")
    check_distributed(resolved)


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
