"""Reading recipe files: size-bounded YAML/TOML parsing, and finding recipes by path or shipped name.

Small inputs must not cost much: a file is at most :data:`MAX_FILE_BYTES`, a document (after YAML
aliases expand, after ``extends`` and ``--set``) at most :data:`MAX_NODES` values and
:data:`MAX_CHARS` characters of strings. Composition and validation are :mod:`tunekit.core.recipe`'s.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunekit.core.errors import RecipeError, excerpt
from tunekit.core.resources import shipped_recipe_dir

if TYPE_CHECKING:
    from tunekit.core.registry import Registry

RECIPE_SUFFIXES = (".yaml", ".yml", ".toml")
#: A recipe is a page of settings; these bounds are far above any real one and far below a bomb.
MAX_FILE_BYTES = 1_000_000
MAX_NODES = 20_000
MAX_CHARS = 2_000_000
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


def cut(text: str, limit: int = 120) -> str:
    """A key path short enough for one line (keys come from the user's file and may be any length)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_yaml_error(exc: BaseException) -> bool:
    """Whether ``exc`` is PyYAML's parse error (``parse_yaml`` imports PyYAML before it can raise one)."""
    yaml = sys.modules.get("yaml")
    return yaml is not None and isinstance(exc, yaml.YAMLError)


def parse_yaml(text: str) -> Any:
    """``yaml.safe_load`` (libyaml's when built in) with a constructor's failure on a tag as a YAMLError.

    PyYAML is imported here, on the first parse: a command that reads no YAML file (``tunekit recommend``
    validating the recipes it builds) does not pay its ~10 ms import."""
    import yaml

    try:
        return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
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
    import yaml  # here, not at the top: building and validating recipes in memory reads no YAML

    try:
        if path.suffix == ".toml":
            import tomllib  # only for TOML recipes: every command reads this module

            data = tomllib.loads(text)
        else:
            data = parse_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RecipeError(f"invalid YAML{where}: {problem}", source=source) from None
    except (ValueError, RecursionError) as exc:  # tomllib.TOMLDecodeError is a ValueError
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
                registry.record_failure(
                    plugin, f"tunekit_recipe_dirs() must return paths, got {excerpt(bad[0])}; skipped")
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
        candidates.append(relative_to / raw)  # an extends names files beside the recipe, never the cwd
    else:
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
