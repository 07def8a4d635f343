"""The export stage's plugin half: run each exporter the recipe's ``output.formats`` named.

Which exporters a recipe names (and the formats the pipeline writes itself) is ``tunekit.core.formats``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tunekit.core.context import StageContext
    from tunekit.core.kinds import Exporter


def run_exporters(exporters: list[Exporter], model: Any, tokenizer: Any, out_dir: Path,
                  ctx: StageContext) -> dict[str, Any]:
    """Run each exporter into ``out_dir`` and record what it returns under ``metrics['export']``."""
    results: dict[str, Any] = {}
    for exporter in exporters:
        label = exporter.name
        for suffix in range(2, 100):
            if label not in results:
                break
            label = f"{exporter.name}-{suffix}"
        results[label] = exporter.export(model, tokenizer, Path(out_dir), ctx)
    ctx.record("export", **results)
    return results
