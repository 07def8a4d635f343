"""Recipe commands: ``recipes ls``, ``validate``, ``show``, ``schema``."""

from __future__ import annotations

from pathlib import Path

import click

from tunekit.core.errors import RecipeError
from tunekit.core.render import echo_json

# tunekit.core.recipe (pydantic models) is imported inside each command so `tunekit --help` stays fast.

set_option = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                          help="Override a recipe key, e.g. --set adapter.r=32 (repeatable).")


@click.group("recipes")
def recipes() -> None:
    """Shipped and plugin-provided recipes."""


@recipes.command("ls")
def recipes_ls() -> None:
    """List recipes found by name (shipped ones and those from plugins)."""
    from tunekit.core.recipe import list_recipes, read_document
    from tunekit.core.registry import get_registry

    for path in list_recipes(get_registry()):
        try:
            description = read_document(path).get("description", "")
        except RecipeError as exc:
            description = f"(unreadable: {exc})"
        click.echo(f"{path.stem:<28} {str(description).strip()}")


@click.command("validate")
@click.argument("files", nargs=-1, required=True)
@set_option
def validate(files: tuple[str, ...], overrides: tuple[str, ...]) -> None:
    """Validate recipe files (schema, plugin params, cross-stage checks). Exit 2 if any is bad."""
    from tunekit.core.recipe import load_recipe
    from tunekit.core.registry import get_registry

    registry = get_registry()
    bad = 0
    for name in files:
        try:
            resolved = load_recipe(name, overrides=list(overrides), registry=registry)
        except RecipeError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            bad += 1
        else:
            click.echo(f"ok: {name}")
            for kind, plugin in resolved.stages.items():
                note = registry.provenance(kind, plugin.name)
                if note:
                    click.echo(f"  note: {note}")
    if bad:
        raise SystemExit(2)


@click.command("show")
@click.argument("file")
@click.option("--resolved", is_flag=True, help="Show every default filled in (what apply runs).")
@set_option
def show(file: str, resolved: bool, overrides: tuple[str, ...]) -> None:
    """Print a recipe after composition (extends and --set applied)."""
    import yaml

    from tunekit.core.recipe import load_recipe

    result = load_recipe(file, overrides=list(overrides))
    if resolved:
        data = result.to_dict()
    else:
        data = result.recipe.model_dump(mode="json", exclude_unset=True, exclude={"extends"})
    click.echo(yaml.safe_dump(data, sort_keys=False), nl=False)


@click.command("schema")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to a file.")
def schema(output: Path | None) -> None:
    """JSON Schema of recipes, for editors (stage slots list the installed methods)."""
    from tunekit.core.schema import recipe_json_schema

    data = recipe_json_schema()
    if output:
        import json

        output.write_text(json.dumps(data, indent=2))
    else:
        echo_json(data)


commands = [recipes, validate, show, schema]
