"""JSON Schema of a recipe, with each stage slot's installed plugins spelled out for editors."""

from __future__ import annotations

from typing import Any

from tunekit.core.kinds import KINDS
from tunekit.core.recipe_model import Recipe
from tunekit.core.registry import get_registry


def recipe_json_schema() -> dict[str, Any]:
    """The recipe schema; stage slots become ``oneOf`` the installed plugins' ``Params`` schemas."""
    schema = Recipe.model_json_schema()
    registry = get_registry()
    for kind in KINDS:
        options = []
        for name, cls in sorted(registry.of(kind).items()):
            params = cls.Params.model_json_schema()
            props = {"method": {"const": name, "description": cls.summary}, **params.get("properties", {})}
            option: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False,
                                      "required": ["method"] if kind != "sampler" else []}
            if "$defs" in params:
                schema.setdefault("$defs", {}).update(params["$defs"])
            options.append(option)
        if options:
            schema["properties"][kind] = {"anyOf": [*options, {"type": "null"}],
                                          "description": schema["properties"][kind].get("description", "")}
    return schema
