"""``tunekit bench --checks``: the check results outputs already hold, side by side, for any number of them.

Reads each output's ``metrics.json`` ``check`` section (what ``tunekit apply`` records with
``eval.check: true``) and measures nothing: comparing five quantized variants costs five file reads.
Torch-free. ``tunekit check OUTPUT`` runs the full checks against a base.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tunekit.core.errors import UsageError
from tunekit.run.checks import CHECKS

NUMBERS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("KL (nats/token)", "kl_divergence", ("kl_divergence",)),
    ("top-1 agreement", "kl_divergence", ("top1_agreement",)),
    ("perplexity base", "kl_divergence", ("perplexity", "base")),
    ("perplexity tuned", "kl_divergence", ("perplexity", "tuned")),
    ("greedy loops (tuned)", "repetition", ("greedy", "tuned", "loop_share")),
    ("sampled loops (tuned)", "repetition", ("sampled", "tuned", "loop_share")),
    ("EOS share (tuned)", "eos", ("eos_share", "tuned")),
    ("template ok", "eos", ("template_ok",)),
    ("passkey (tuned)", "long_context", ("accuracy", "tuned")),
)
"""(row label, check, key path inside the check's result): the numbers shown under the verdicts."""


def read_checks(output: Path) -> dict[str, Any]:
    """The ``check`` section of ``output/metrics.json`` (empty when the run recorded none)."""
    path = Path(output) / "metrics.json" if Path(output).is_dir() else Path(output).parent / "metrics.json"
    if not path.is_file():
        return {}
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise UsageError(f"{path}: not valid JSON ({exc})") from exc
    checks = metrics.get("check") if isinstance(metrics, dict) else None
    return checks if isinstance(checks, dict) else {}


def checks_of(outputs: list[Path]) -> list[dict[str, Any]]:
    """Each output's checks; a usage error when none of them has any."""
    found = [read_checks(o) for o in outputs]
    if not any(found):
        raise UsageError(f"{outputs[0]}/metrics.json: no 'check' results in any output "
                         "(tunekit apply records them with eval.check: true)")
    return found


def _at(result: Any, keys: tuple[str, ...]) -> Any:
    for key in keys:
        result = result.get(key) if isinstance(result, dict) else None
    return result


def check_rows(checks: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """(label, one cell per output): each check's verdict, then its main numbers; '-' where not recorded."""
    names = [c for c in CHECKS if any(c in by for by in checks)]
    names += sorted({n for by in checks for n in by} - set(names))  # plugins' checks after the built-in ones
    out = [(name, [str(by[name].get("verdict", "?")) if isinstance(by.get(name), dict) else "-" for by in checks])
           for name in names]
    for label, check, keys in NUMBERS:
        cells = [_at(by.get(check), keys) for by in checks]
        if any(c is not None for c in cells):
            out.append((label, ["-" if c is None else f"{c:.4g}" if isinstance(c, float) else str(c)
                                for c in cells]))
    return out
