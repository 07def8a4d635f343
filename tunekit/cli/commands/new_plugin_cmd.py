"""``tunekit new-plugin NAME --kind KIND``: scaffold a third-party plugin package (see docs/plugins.md)."""

from __future__ import annotations

from pathlib import Path

import click

from tunekit.authoring.scaffold import KIND_CHOICES, PluginNames, new_plugin


@click.command("new-plugin")
@click.argument("name")
@click.option("--kind", type=click.Choice(KIND_CHOICES), required=True, help="Which kind of plugin to write.")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Parent folder of the new package (default: the current folder).")
def command(name: str, kind: str, directory: Path | None) -> None:
    """Write a ready plugin package: pyproject with the entry point, plugin class, README, contract tests."""
    root = new_plugin(name, kind, directory)
    names = PluginNames.from_name(name, kind)
    click.echo(f"wrote {root} ({kind} '{names.name}', distribution {names.distribution}, module {names.module})")
    click.echo("next:")
    click.echo(f"  pip install -e {root}")
    click.echo(f"  pytest {root}")
    click.echo("  tunekit plugins")
