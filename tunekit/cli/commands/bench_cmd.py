"""``tunekit bench OUTPUT [OUTPUT2]``: serving speed, memory, perplexity and size, side by side; with
``--checks``, the check results each output's metrics.json holds, for any number of outputs."""

from __future__ import annotations

from pathlib import Path

import click

from tunekit.core.kv_cache import parse_spec
from tunekit.core.render import console, echo_json, stdout_for_data, table
from tunekit.serve.bench import BACKENDS, bench, rows


@click.command("bench")
@click.argument("outputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--backend", type=click.Choice(BACKENDS), help="Default: llamacpp for GGUF, transformers otherwise.")
@click.option("--prompt-tokens", default=128, show_default=True, type=click.IntRange(1, 32768))
@click.option("--new-tokens", default=32, show_default=True, type=click.IntRange(1, 4096))
@click.option("--text", "text_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Held-out text for perplexity and the prompt (default: the shipped one).")
@click.option("--seq-len", default=256, show_default=True, type=click.IntRange(8, 32768), help="Perplexity window.")
@click.option("--eval-tokens", default=4096, show_default=True, type=click.IntRange(16), help="Tokens scored.")
@click.option("--threads", default=2, show_default=True, type=click.IntRange(1, 256))
@click.option("--kv-cache", "kv_cache", metavar="SPEC", help="KV cache for transformers: dynamic, static, offloaded "
              "(CUDA), quantized[:BITS[:BACKEND]] (default: the output's generation_config.json).")
@click.option("--checks", "show_checks", is_flag=True,
              help="Show the checks recorded in each output's metrics.json instead (no measuring; any number).")
@click.option("--json", "as_json", is_flag=True, help="Print the measurements as JSON.")
def command(outputs: tuple[Path, ...], backend: str | None, prompt_tokens: int, new_tokens: int,
            text_file: Path | None, seq_len: int, eval_tokens: int, threads: int, kv_cache: str | None,
            show_checks: bool, as_json: bool) -> None:
    """Measure one or two outputs (before/after a recipe): TTFT, tokens/s, peak memory, perplexity, size."""
    if show_checks:
        print_checks(list(outputs), as_json)
        return
    if len(outputs) > 2:
        raise click.UsageError("bench compares at most two outputs")
    text = text_file.read_text(encoding="utf-8") if text_file else None
    cache = parse_spec(kv_cache) if kv_cache else None
    with stdout_for_data() as stdout:
        results = bench(list(outputs), backend=backend, prompt_tokens=prompt_tokens, new_tokens=new_tokens,
                        text=text, seq_len=seq_len, eval_tokens=eval_tokens, threads=threads, kv_cache=cache)
    if as_json:
        echo_json(results, stdout)
        return
    columns = ["", *[Path(r["output"]).name for r in results]] + (["ratio"] if len(results) == 2 else [])
    t = table("tunekit bench", columns)
    for label, cells in rows(results):
        t.add_row(label, *cells)
    console().print(t)


def print_checks(outputs: list[Path], as_json: bool) -> None:
    from tunekit.serve.bench_checks import check_rows, checks_of

    checks = checks_of(outputs)
    if as_json:
        echo_json({str(o): c for o, c in zip(outputs, checks, strict=True)})
        return
    t = table("tunekit bench --checks", ["", *[o.name for o in outputs]])
    for label, cells in check_rows(checks):
        t.add_row(label, *cells)
    console().print(t)
