"""``tunekit plugins``: what is installed, what failed, and each plugin's parameters."""

from __future__ import annotations

import json
from typing import Any

import click

from tunekit.core.kind_specs import KIND_HOOKS
from tunekit.core.render import console, echo_json, table

KINDS = tuple(KIND_HOOKS)
"""Every plugin kind, recipe slots and exporters alike."""


def _default_needs(cls: Any) -> Any:
    """What the plugin needs at its default params (what a recipe naming only the method runs)."""
    from pydantic import ValidationError

    try:
        return cls().needs()
    except ValidationError:  # a plugin with required params: only its class declaration is known
        return cls.requires


def plugins_report() -> dict[str, Any]:
    """Installed plugins per kind and the failures, as plain data."""
    from tunekit.core.registry import get_registry  # lazy: `tunekit --help` must not pay for pydantic

    registry = get_registry()
    kinds: dict[str, list[dict[str, Any]]] = {}
    for kind in KINDS:
        kinds[kind] = []
        for name, cls in sorted(registry.of(kind).items()):
            owner = registry.owner(kind, name)
            needs = _default_needs(cls)
            missing = needs.missing_packages()
            kinds[kind].append({
                "name": name,
                "summary": cls.summary,
                "plugin": owner.plugin,
                "distribution": owner.distribution,
                "version": owner.version,
                "ready": not missing,
                "missing": missing,
                "hint": needs.install_hint(missing) if missing else None,
                "extra": needs.extra,
                "needs_cuda": cls.requires.cuda,
            })
    failures = [f.__dict__ for f in registry.failures]
    return {"kinds": kinds, "failures": failures}


@click.group("plugins", invoke_without_command=True)
@click.option("--all", "show_all", is_flag=True, help="Also show plugins that failed to load, and why.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def command(ctx: click.Context, show_all: bool, as_json: bool) -> None:
    """List installed plugins by kind (built-in and third-party alike)."""
    if ctx.invoked_subcommand is not None:
        return
    report = plugins_report()
    if as_json:
        echo_json(report if show_all else {"kinds": report["kinds"]})
        return
    from rich.markup import escape

    out = console()
    t = table("tunekit plugins", ["kind", "name", "from", "ready", "summary"])
    for kind, items in report["kinds"].items():
        if not items:
            t.add_row(kind, "[dim](none installed)[/dim]", "", "", "")
        for item in items:
            # escaped: rich would read "[gguf]" in "tunekit[gguf]" as markup and print "pip install 'tunekit'"
            ready = "yes" if item["ready"] else escape(f"no: {', '.join(item['missing'])} missing: {item['hint']}")
            t.add_row(kind, item["name"], f"{item['distribution']} {item['version']}", ready, item["summary"])
    out.print(t)
    failures = report["failures"]
    if failures and show_all:
        f = table("failed plugins (skipped)", ["plugin", "distribution", "error"])
        for item in failures:
            f.add_row(item["plugin"], f"{item['distribution']} {item['version']}", item["error"])
        out.print(f)
    elif failures:
        out.print(f"[yellow]{len(failures)} plugin(s) failed to load; see `tunekit plugins --all`[/yellow]")


@command.command("show")
@click.argument("name")
@click.option("--kind", type=click.Choice(KINDS), help="Disambiguate a name used by several kinds.")
@click.option("--json", "as_json", is_flag=True, help="Print the Params JSON schema only.")
def show(name: str, kind: str | None, as_json: bool) -> None:
    """Show one plugin's parameters as a table and JSON schema."""
    from tunekit.core.registry import get_registry

    registry = get_registry()
    kinds = [kind] if kind else [k for k in KINDS if name in registry.of(k)]
    if not kinds:
        registry.get(kind or "quantizer", name) if kind else None
        raise click.UsageError(f"no plugin named '{name}' (see `tunekit plugins`)")
    cls = registry.get(kinds[0], name)
    schema = cls.Params.model_json_schema()
    if as_json:
        echo_json(schema)
        return
    out = console()
    out.print(f"[bold]{cls.kind} {cls.name}[/bold]: {cls.summary}")
    req = cls.requires
    out.print(f"needs: packages={list(req.packages) or '-'} cuda={req.cuda} calibration={req.calibration}"
              + (f" extra=tunekit[{req.extra}]" if req.extra else ""))
    t = table(None, ["param", "type", "default", "description"])
    for field_name, info in cls.Params.model_fields.items():
        prop = schema.get("properties", {}).get(field_name, {})
        ftype = prop.get("type") or " | ".join(
            str(x.get("type", x.get("const", x.get("$ref", "?").rsplit("/", 1)[-1]))) for x in prop.get("anyOf", []))
        if "enum" in prop:
            ftype = " | ".join(map(str, prop["enum"]))
        t.add_row(field_name, str(ftype), json.dumps(info.get_default(call_default_factory=True), default=str),
                  info.description or "")
    out.print(t)
    out.print_json(json.dumps(schema))
