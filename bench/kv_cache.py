"""KV-cache implementations at a long prompt on SmolLM2: cache bytes, decode and prompt speed.

    python bench/kv_cache.py                        # 1024 prompt tokens, results in bench/results/
    python bench/kv_cache.py --prompt-tokens 2048   # longer context

Each cache runs through ``tunekit bench --kv-cache SPEC`` on the shipped SmolLM2-135M-Instruct (one fresh
subprocess per cache, greedy decoding of ``--new-tokens`` after ``--prompt-tokens`` prompt tokens of
held-out Persuasion). The KV column is the bytes the cache's tensors hold after the last step (quantized
parts, scales and the 16-bit residual window alike), beside what ``tunekit estimate`` counts for the
same ``kv_bits``. Writes ``bench/results/kv-cache-<machine>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

SPECS = ("dynamic", "static", "quantized:8", "quantized:4:hqq", "quantized:2:hqq")
"""``--kv-cache`` values measured (offloaded is CUDA-only on this torch and is refused on a CPU)."""


def measure(prompt_tokens: int, new_tokens: int, threads: int) -> dict[str, Any]:
    from tunekit.advise.estimate import kv_cache_bytes
    from tunekit.core.arch import ModelArch
    from tunekit.core.fixtures import smollm2_path
    from tunekit.core.kv_cache import kv_bits, parse_spec
    from tunekit.serve.bench import bench

    folder = smollm2_path()
    arch = ModelArch.from_hf_config(json.loads((folder / "config.json").read_text(encoding="utf-8")))
    summary: dict[str, Any] = {}
    for spec in SPECS:
        keys = parse_spec(spec)
        [result] = bench([folder], prompt_tokens=prompt_tokens, new_tokens=new_tokens, eval_tokens=16, seq_len=16,
                         threads=threads, kv_cache=keys)
        bits = kv_bits(keys)
        summary[spec] = {k: result.get(k) for k in ("kv_cache_bytes", "gen_tokens_per_s", "prompt_tokens_per_s",
                                                    "ttft_s", "peak_rss_bytes")}
        summary[spec]["kv_bits"] = bits
        summary[spec]["estimated_kv_bytes"] = int(kv_cache_bytes(arch, prompt_tokens + new_tokens, 1, bits))
    return summary


def markdown(summary: dict[str, Any], options: dict[str, Any]) -> str:
    base = summary["dynamic"]
    lines = [
        f"# KV-cache implementations (SmolLM2-135M-Instruct, {options['dtype']} weights, CPU)", "",
        f"`python bench/kv_cache.py --prompt-tokens {options['prompt_tokens']} --new-tokens {options['new_tokens']} "
        f"--threads {options['threads']}`; one run each. Machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f} at the end (shared: speeds are noisy, read the ratios).", "",
        "| --kv-cache | KV measured (MB) | x dynamic | KV estimated (MB) | gen tok/s | x dynamic | prompt tok/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for spec, row in summary.items():
        lines.append(
            f"| {spec} | {row['kv_cache_bytes'] / 1e6:.1f} | x{row['kv_cache_bytes'] / base['kv_cache_bytes']:.2f} "
            f"| {row['estimated_kv_bytes'] / 1e6:.1f} | {row['gen_tokens_per_s']:.1f} "
            f"| x{row['gen_tokens_per_s'] / base['gen_tokens_per_s']:.2f} | {row['prompt_tokens_per_s']:.0f} |")
    lines += [
        "",
        f"The estimate counts 16-bit keys/values by default; the shipped fixture runs in {options['dtype']}, so "
        "the default cache measures twice the estimate (4 bytes per element), and fp8 (8 bits whatever the "
        "model's dtype) meets it. hqq keeps the newest 128 tokens in the model's dtype plus a scale and zero per "
        "group, which the estimate leaves out (the measured 4- and 2-bit caches sit above it by that window). "
        "Decode speeds at well under 1 token/s are the shared machine's load, not the caches: read the bytes.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--prompt-tokens", type=int, default=1024)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    options = {"prompt_tokens": args.prompt_tokens, "new_tokens": args.new_tokens, "threads": args.threads}
    summary = measure(**options)
    from tunekit.core.fixtures import smollm2_path

    config = json.loads((smollm2_path() / "config.json").read_text(encoding="utf-8"))
    dtype = str(config.get("dtype") or config.get("torch_dtype") or "float32")
    machine = os.environ.get("TUNEKIT_BENCH_MACHINE", "cpu")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"kv-cache-{machine}.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    report = markdown(summary, {**options, "dtype": dtype})
    (RESULTS / f"kv-cache-{machine}.md").write_text(report, encoding="utf-8")
    print(report)


if __name__ == "__main__":
    main()
