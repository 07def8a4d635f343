"""``tunekit report OUTPUT``: one self-contained HTML page of a run (memory, loss, perplexity, recipe)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("report")
@click.argument("output", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--html", "html_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the page here (default: OUTPUT/report.html).")
@click.option("--vram", type=float, help="GPU memory per device, GB, drawn as the limit (default: detect).")
def command(output: Path, html_file: Path | None, vram: float | None) -> None:
    """Write an HTML report of a tunekit apply output: memory vs VRAM, loss curve, perplexity, the recipe."""
    from tunekit.cli.html_report import output_report

    if vram is None:
        from tunekit.advise.hardware import detect

        vram = detect().vram_gb or None  # the estimate is per device
    target = html_file or output / "report.html"
    target.write_text(output_report(output, vram_gb=vram), encoding="utf-8")
    click.echo(f"wrote {target}")
