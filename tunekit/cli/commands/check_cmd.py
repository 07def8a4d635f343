"""``tunekit check OUTPUT``: what a change did to the model, against its base, with a verdict per check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from tunekit.run.checks import CHECKS


@click.command("check")
@click.argument("output", type=click.Path(path_type=Path))
@click.option("--base", help="Base model folder (default: the one recorded in OUTPUT/metrics.json).")
@click.option("--only", "only", multiple=True, type=click.Choice(CHECKS), help="Run only these checks.")
@click.option("--context", type=int, help="Passkey target length (runs long_context even without an extender).")
@click.option("--prompts", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Prompts: JSONL (prompt or instruction/input) or one per line (default: shipped instructions).")
@click.option("-n", "--generations", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Greedy and sampled generations per model.")
@click.option("--max-new-tokens", type=click.IntRange(8, 4096), default=64, show_default=True)
@click.option("--text", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Held-out text for KL and perplexity (default: the shipped Persuasion excerpt).")
@click.option("--max-tokens", type=click.IntRange(16), default=1024, show_default=True,
              help="Held-out tokens compared.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON keyed by check name.")
def command(output: Path, base: str | None, only: tuple[str, ...], context: int | None, prompts: Path | None,
            generations: int, max_new_tokens: int, text: Path | None, max_tokens: int, as_json: bool) -> None:
    """Compare a tuned OUTPUT with its base: KL, repetition, EOS, long context; exits 1 when a check fails."""
    from tunekit.core.registry import get_registry
    from tunekit.run.checks.load import load_pair
    from tunekit.run.checks.runner import Options, run_checks

    options = Options(checks=only or CHECKS, context=context, prompts=prompts, generations=generations,
                      max_new_tokens=max_new_tokens, text=text, max_tokens=max_tokens)
    results = run_checks(load_pair(output, base), options, get_registry())
    if as_json:
        from tunekit.core.render import echo_json

        echo_json(results)
    else:
        render(results)
    if any(r.get("verdict") == "fail" for r in results.values() if isinstance(r, dict)):
        raise SystemExit(1)


def render(results: dict[str, Any]) -> None:
    for name, result in results.items():
        verdict = result.get("verdict", "?") if isinstance(result, dict) else "?"
        click.echo(f"{name:<15} {verdict.upper():<5} {'; '.join(result.get('why', []))}")
        if result.get("try"):
            click.echo(f"{'':<21} try: {result['try']}")
