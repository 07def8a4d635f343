"""How the recipe's ``output.formats`` becomes exporter plugins (``tunekit.run.exporters`` runs them).

Export formats are plugins of their own kind (``tunekit_exporters()``), not recipe stage slots: a
run writes several formats at once (``formats: [hf, gguf:q4_k_m, {gguf: q8_0}]``), each after the
model is final. ``hf``, ``merged`` and ``adapter`` are the pipeline's own ``save_pretrained`` paths
and need no plugin; every other name must be a registered exporter. Torch-free: the pipeline calls
:func:`resolve_exporters` when the recipe loads (so a typo fails before any weight loads) and
:func:`run_exporters` at the export stage.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from pydantic import ValidationError

from tunekit.core.errors import RecipeError, did_you_mean, excerpt

if TYPE_CHECKING:
    from tunekit.core.kinds import Exporter
    from tunekit.core.registry import Registry

BUILTIN_FORMATS = frozenset({"hf", "merged", "adapter"})
"""Formats the pipeline writes itself with ``save_pretrained``."""


def parse_format(entry: str | dict[str, Any]) -> tuple[str, Any]:
    """Split one ``output.formats`` entry into (exporter name, params or shorthand value or None).

    ``"gguf"`` -> ("gguf", None); ``"gguf:q4_k_m"`` / ``{"gguf": "q4_k_m"}`` -> ("gguf", "q4_k_m");
    ``{"gguf": {"type": "q4_k_m"}}`` -> ("gguf", {"type": "q4_k_m"}).
    """
    if isinstance(entry, str):
        name, sep, value = entry.strip().partition(":")
        return name.strip().lower(), (value.strip() if sep else None)
    if isinstance(entry, dict) and len(entry) == 1:
        ((name, value),) = entry.items()
        return str(name).strip().lower(), value
    raise ValueError(f"a format is a name, 'name:value' or a one-key mapping, got {excerpt(entry)}")


def resolve_exporters(formats: list[str | dict[str, Any]], registry: Registry,
                      *, source: str | None = None) -> list[Exporter]:
    """Instantiate the exporter plugins named in ``formats`` (built-in formats are skipped).

    Raises ``RecipeError`` at ``output.formats[i]`` for an unknown name or invalid params.
    """
    exporters: list[Exporter] = []
    for i, entry in enumerate(formats):
        key = f"output.formats[{i}]"
        try:
            name, value = parse_format(entry)
        except ValueError as exc:
            raise RecipeError(str(exc), source=source, key=key) from None
        if name in BUILTIN_FORMATS and value is None:
            continue
        known = registry.of("exporter")
        if name not in known:
            names = ", ".join(sorted(set(known) | BUILTIN_FORMATS))
            hint = did_you_mean(name, set(known) | BUILTIN_FORMATS)
            raise RecipeError(f"unknown export format '{name}'{hint} (available: {names})", source=source, key=key)
        cls = cast("type[Exporter]", known[name])
        params: dict[str, Any]
        if isinstance(value, dict):
            params = value
        elif value is None:
            params = {}
        elif cls.shorthand_field:
            params = {cls.shorthand_field: value}
        else:
            raise RecipeError(f"format '{name}' takes no ':{value}' shorthand", source=source, key=key)
        try:
            exporters.append(cls(cls.Params(**params)))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            got = first.get("input")
            shown = "" if isinstance(got, dict) else f" (got {excerpt(got)})"
            raise RecipeError(f"{name}: {where}: {first.get('msg')}{shown}", source=source, key=key) from None
    return exporters
