"""Estimator vs every published memory number in REFERENCE.md, and ``tunekit recommend``'s cold start.

Run: ``python bench/estimator.py``. Writes ``bench/results/estimator-cpu.json`` and
``bench/results/estimator-cpu.md``; prints the table, then the mean absolute error last.

Each point says what its source measured and the estimator compares the same thing: the peak
(nvidia-smi-like, with CUDA context) for the LLaMA-Factory wiki, live tensors for torchtune (its
numbers come from torch.cuda memory stats, which exclude the CUDA context), the weights alone for the
Hugging Face blog's inference row and the llama.cpp file sizes. "estimated" points (LLaMA-Factory
README, HF blog training row) are themselves rough formulas with unstated batch and length; they are
reported apart from the measured ones.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunekit.advise.estimate import (
    CUDA_CONTEXT_GB,
    FRAGMENTATION,
    GB,
    QUANTS,
    Setup,
    default_lora_params,
    estimate,
    quant_spec,
)
from tunekit.advise.model_facts import generic_arch, resolve_model

GIB = 2**30
RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Point:
    source: str
    kind: str  # measured | estimated | file
    label: str
    model: str
    published_gb: float
    setup: Setup
    compare: str = "total"  # total | live (no CUDA context / allocator slack) | weights
    params: str | None = None  # generic model size when the source's model is not in the catalog

    def arch(self) -> Any:
        return generic_arch(self.params) if self.params else resolve_model(self.model)

    def estimated_gb(self) -> float:
        est = estimate(self.arch(), self.setup)
        if self.compare == "weights":
            return est.breakdown["weights"] / GB
        if self.compare == "live":
            live = sum(v for k, v in est.breakdown.items() if k != "overhead")
            overhead_live = est.breakdown["overhead"] - CUDA_CONTEXT_GB * GB - FRAGMENTATION * live
            return (live + overhead_live) / GB
        return est.total_gb


def points() -> list[Point]:
    out: list[Point] = []
    # LLaMA-Factory wiki (measured): Llama-2-7B QLoRA 4-bit, batch 1, FlashAttention-2, LoRA r8 (default) all linears
    l2 = resolve_model("llama-2-7b")
    r8 = default_lora_params(l2, r=8)
    for seq, gb in ((1024, 6), (2048, 7), (4096, 9), (8192, 12), (16384, 19), (32768, 32)):
        out.append(Point("LLaMA-Factory wiki", "measured", f"QLoRA 4-bit seq {seq}", "llama-2-7b", gb,
                         Setup(method="qlora", quant=QUANTS["nf4"], seq_len=seq, trainable_params=r8)))
    # torchtune README (measured, GiB): Llama-3.1-8B, batch 2 x packed 2048, activation checkpointing, chunked loss
    l3 = resolve_model("llama-3.1-8b")
    tt = {"seq_len": 2048, "batch": 2, "chunked_loss": True}
    out.append(Point("torchtune README", "measured", "full, 8-bit paged AdamW, optimizer in backward", "llama-3.1-8b",
                     18.9 * GIB / GB, Setup(method="full", precision="bf16", optimizer="paged-adamw-8bit",
                                            optimizer_in_backward=True, **tt), compare="live"))  # type: ignore[arg-type]
    out.append(Point("torchtune README", "measured", "LoRA r8 q/k/v/o+MLP", "llama-3.1-8b", 16.2 * GIB / GB,
                     Setup(method="lora", trainable_params=default_lora_params(l3, r=8), **tt),  # type: ignore[arg-type]
                     compare="live"))
    out.append(Point("torchtune README", "measured", "QLoRA r8 q/k/v/o+MLP", "llama-3.1-8b", 7.4 * GIB / GB,
                     Setup(method="qlora", quant=QUANTS["nf4"], trainable_params=default_lora_params(l3, r=8),
                           **tt), compare="live"))  # type: ignore[arg-type]
    # llama.cpp quantize README: Llama-3.1-8B GGUF file sizes (GiB)
    for gguf, gib in (("Q4_K_M", 4.58), ("Q8_0", 7.95), ("F16", 14.96)):
        out.append(Point("llama.cpp README", "file", f"GGUF {gguf}", "llama-3.1-8b", gib * GIB / GB,
                         Setup(method="infer", quant=quant_spec(gguf)), compare="weights"))
    # Hugging Face Llama 3.1 blog: inference memory for the weights (FP16 / FP8 / INT4)
    for model, row in (("llama-3.1-8b", (16, 8, 4)), ("llama-3.1-70b", (140, 70, 35))):
        for fmt, gb in zip(("bf16", "fp8", "int4"), row):
            out.append(Point("HF Llama 3.1 blog", "estimated", f"inference weights {fmt}", model, gb,
                             Setup(method="infer", quant=QUANTS[fmt]), compare="weights"))
        full, lora, qlora = (60, 16, 6) if model.endswith("8b") else (500, 160, 48)
        short = {"seq_len": 512}
        out.append(Point("HF Llama 3.1 blog", "estimated", "full fine-tune (bf16 AdamW)", model, full,
                         Setup(method="full", precision="bf16", **short)))  # type: ignore[arg-type]
        out.append(Point("HF Llama 3.1 blog", "estimated", "LoRA", model, lora, Setup(method="lora", **short)))
        out.append(Point("HF Llama 3.1 blog", "estimated", "QLoRA", model, qlora,
                         Setup(method="qlora", quant=QUANTS["nf4"], **short)))  # type: ignore[arg-type]
    # LLaMA-Factory README (estimated; batch and length unstated: assumed batch 1, 512 tokens)
    table = {"Full AMP 32": (Setup(method="full", seq_len=512), (120, 240, 600, 1200, 900)),
             "Full 16": (Setup(method="full", precision="bf16", seq_len=512), (60, 120, 300, 600, 400)),
             "LoRA 16": (Setup(method="lora", seq_len=512), (16, 32, 64, 160, 120)),
             "QLoRA 8": (Setup(method="qlora", quant=QUANTS["int8"], seq_len=512), (10, 20, 40, 80, 60)),
             "QLoRA 4": (Setup(method="qlora", quant=QUANTS["nf4"], seq_len=512), (6, 12, 24, 48, 30)),
             "QLoRA 2": (Setup(method="qlora", quant=QUANTS["int2"], seq_len=512), (4, 8, 16, 24, 18))}
    sizes = (("7B", "llama-2-7b", None), ("13B", "llama-2-13b", None), ("30B", "llama-30b", "32.5B"),
             ("70B", "llama-2-70b", None), ("8x7B", "mixtral-8x7b", None))
    for label, (setup, row) in table.items():
        for (size, model, params), gb in zip(sizes, row):
            out.append(Point("LLaMA-Factory README", "estimated", f"{label} {size}", model, gb, setup, params=params))
    return out


def time_recommend(runs: int = 5) -> dict[str, Any]:
    """Wall time of a fresh ``tunekit recommend`` process, and whether torch got imported."""
    exe = str(Path(sys.executable).parent / "tunekit")
    args = ["recommend", "--vram", "24", "--model", "llama-3.1-8b", "--goal", "finetune", "--json"]
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([exe, *args], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    baseline, help_times, help_uncached = [], [], []
    uncached_env = {**os.environ, "TUNEKIT_COMMAND_CACHE": "off"}  # as on a first run: plugins imported to list
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        baseline.append(time.perf_counter() - start)
        start = time.perf_counter()
        subprocess.run([exe, "--help"], check=True, capture_output=True)  # the CLI's own floor
        help_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        subprocess.run([exe, "--help"], check=True, capture_output=True, env=uncached_env)
        help_uncached.append(time.perf_counter() - start)
    probe = ("import sys\nfrom tunekit.cli.main import main\n"
             "sys.argv = ['tunekit', " + ", ".join(map(repr, args)) + "]\n"
             "try:\n    main()\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules), file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    heavy = json.loads(done.stderr.strip().splitlines()[-1].replace("'", '"'))
    return {"runs": runs, "min_s": round(min(times), 3), "median_s": round(statistics.median(times), 3),
            "python_startup_min_s": round(min(baseline), 3), "tunekit_help_min_s": round(min(help_times), 3),
            "tunekit_help_uncached_min_s": round(min(help_uncached), 3),
            "imports_torch": bool(heavy), "heavy_modules": heavy,
            "load_average": os.getloadavg()[0], "budget_s": 0.3}


def main() -> None:
    rows = []
    for p in points():
        est = p.estimated_gb()
        rows.append({"source": p.source, "kind": p.kind, "point": p.label, "model": p.model,
                     "compare": p.compare, "published_gb": round(p.published_gb, 2), "estimate_gb": round(est, 2),
                     "error_gb": round(est - p.published_gb, 2),
                     "error_pct": round(100 * (est - p.published_gb) / p.published_gb, 1)})
    oom = estimate(resolve_model("llama-2-7b"), method="qlora", quant=QUANTS["nf4"], seq_len=65536,
                   trainable_params=default_lora_params(resolve_model("llama-2-7b"), r=8)).total_gb
    summary: dict[str, Any] = {}
    for kind in ("measured", "file", "estimated"):
        sel = [r for r in rows if r["kind"] == kind]
        summary[kind] = {"points": len(sel), "mae_gb": round(statistics.mean(abs(r["error_gb"]) for r in sel), 2),
                         "mape_pct": round(statistics.mean(abs(r["error_pct"]) for r in sel), 1)}
    summary["all"] = {"points": len(rows), "mae_gb": round(statistics.mean(abs(r["error_gb"]) for r in rows), 2),
                      "mape_pct": round(statistics.mean(abs(r["error_pct"]) for r in rows), 1)}
    timing = time_recommend()
    report = {"units": "GB = 1e9 bytes", "points": rows, "llama_factory_64k_oom_on_40gb": {
        "estimate_gb": round(oom, 1), "predicts_oom": oom > 40}, "summary": summary, "recommend_cold_start": timing}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "estimator-cpu.json").write_text(json.dumps(report, indent=2))
    lines = ["| source | kind | point | model | compares | published GB | estimate GB | error GB | error % |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['source']} | {r['kind']} | {r['point']} | {r['model']} | {r['compare']} | {r['published_gb']} | "
              f"{r['estimate_gb']} | {r['error_gb']:+} | {r['error_pct']:+} |" for r in rows]
    lines += ["", f"LLaMA-Factory wiki 64k tokens (out of memory on 40 GB): estimate {oom:.1f} GB -> "
                  f"{'predicts OOM' if oom > 40 else 'MISSES the OOM'}", ""]
    lines += [f"MAE {kind}: {s['mae_gb']} GB ({s['mape_pct']}%) over {s['points']} points"
              for kind, s in summary.items()]
    lines += ["", f"tunekit recommend cold start: min {timing['min_s']} s, median {timing['median_s']} s "
                  f"(python -c pass: {timing['python_startup_min_s']} s, "
                  f"tunekit --help: {timing['tunekit_help_min_s']} s with the cached plugin-command listing, "
                  f"{timing['tunekit_help_uncached_min_s']} s without; "
                  f"load average {timing['load_average']:.1f}); "
                  f"imports torch: {timing['imports_torch']}"]
    text = "\n".join(lines) + "\n"
    (RESULTS / "estimator-cpu.md").write_text(text)
    print(text, end="")
    print(f"mean absolute error: measured {summary['measured']['mae_gb']} GB, all {summary['all']['mae_gb']} GB")


if __name__ == "__main__":
    main()
