"""dynamic-int8 vs fp32 on a CPU: decode speed, prompt speed, peak memory, perplexity, file size.

    python bench/dynamic_int8.py              # SmolLM2-135M-Instruct, results in bench/results/
    python bench/dynamic_int8.py --repeats 3  # interleaved repeats (the median is reported)

Each output is written by ``tunekit apply`` (the fp32 copy, dynamic-int8 with the lm_head kept in fp32 as
the shipped recipe does, and dynamic-int8 with the lm_head quantized too) and measured by ``tunekit bench``
(one fresh subprocess per output and repeat, so peak RSS belongs to that output; greedy decoding of
``--new-tokens`` tokens after ``--prompt-tokens`` prompt tokens; perplexity on held-out Persuasion).
Repeats are interleaved (A B C A B C ...) so that load from other processes on a shared machine hits every
configuration alike. Writes ``bench/results/dynamic-int8-<machine>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

CONFIGS: dict[str, list[str]] = {
    "fp32": ["model.dtype=float32"],
    "dynamic-int8": ["model.dtype=float32", "quantizer.method=dynamic-int8"],
    "dynamic-int8 + lm_head": ["model.dtype=float32", "quantizer.method=dynamic-int8", "quantizer.keep_16bit=[]"],
}
"""name -> ``--set`` overrides on an empty recipe (what ``tunekit apply`` runs)."""

METRICS = ("gen_tokens_per_s", "prompt_tokens_per_s", "ttft_s", "peak_rss_bytes", "perplexity", "file_bytes")


def build(work: Path) -> dict[str, Path]:
    from tunekit.core.fixtures import smollm2_path
    from tunekit.run.pipeline import apply_recipe

    recipe = work / "base.yaml"
    recipe.write_text("name: dynamic-int8-bench\neval: {perplexity: false}\n", encoding="utf-8")
    outputs = {}
    for name, overrides in CONFIGS.items():
        out = work / name.replace(" ", "").replace("+", "-")
        apply_recipe(recipe, model=smollm2_path(), output=out, overrides=overrides, quiet=True)
        outputs[name] = out
    return outputs


def measure(outputs: dict[str, Path], repeats: int, **options: Any) -> dict[str, Any]:
    from tunekit.serve.bench import bench

    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in outputs}
    for _ in range(repeats):
        for name, path in outputs.items():
            runs[name].extend(bench([path], **options))
    summary = {}
    for name, results in runs.items():
        summary[name] = {key: statistics.median(r[key] for r in results) for key in METRICS if key in results[0]}
        summary[name]["gen_tokens_per_s_all"] = [r["gen_tokens_per_s"] for r in results]
    return summary


def markdown(summary: dict[str, Any], options: dict[str, Any]) -> str:
    base = summary["fp32"]
    lines = [
        "# dynamic-int8 vs fp32 (SmolLM2-135M-Instruct, CPU)", "",
        f"`python bench/dynamic_int8.py --repeats {options['repeats']} --eval-tokens {options['eval_tokens']} "
        f"--prompt-tokens {options['prompt_tokens']} --new-tokens {options['new_tokens']} "
        f"--threads {options['threads']}`; {options['threads']} threads, {options['prompt_tokens']} prompt tokens, "
        f"{options['new_tokens']} greedy new tokens, median of {options['repeats']} interleaved runs; perplexity "
        f"on the first {options['eval_tokens']} tokens of Persuasion (256-token windows). "
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end "
        "(shared: speeds are noisy, the ratios are what to read).", "",
        "| output | gen tok/s | x fp32 | prompt tok/s | TTFT (s) | peak RSS (MB) | perplexity | file (MB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in summary.items():
        lines.append(
            f"| {name} | {row['gen_tokens_per_s']:.1f} | x{row['gen_tokens_per_s'] / base['gen_tokens_per_s']:.2f} "
            f"| {row['prompt_tokens_per_s']:.0f} | {row['ttft_s']:.3f} | {row['peak_rss_bytes'] / 1e6:.0f} "
            f"| {row['perplexity']:.3f} | {row['file_bytes'] / 1e6:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--eval-tokens", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    options = {"prompt_tokens": args.prompt_tokens, "new_tokens": args.new_tokens, "eval_tokens": args.eval_tokens,
               "threads": args.threads}
    with tempfile.TemporaryDirectory(prefix="tunekit-dyn-bench-") as tmp:
        outputs = build(Path(tmp))
        summary = measure(outputs, args.repeats, **options)
    machine = os.environ.get("TUNEKIT_BENCH_MACHINE", "cpu")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"dynamic-int8-{machine}.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    report = markdown(summary, {**options, "repeats": args.repeats})
    (RESULTS / f"dynamic-int8-{machine}.md").write_text(report, encoding="utf-8")
    print(report)


if __name__ == "__main__":
    main()
