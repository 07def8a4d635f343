"""Quantizer benchmark: perplexity, file size, quantization time and peak memory of every built-in method.

    python bench/quantize.py                   # all configurations*, results in bench/results/
    python bench/quantize.py --only rtn-4bit-g64 gptq-4bit-g64

* AWQ and the bf16 baseline run in 16-bit, 30-50x slower than fp32 on a CPU without AVX512-BF16/AMX (hours
for SmolLM2): they are skipped there unless named with ``--only``.

Each configuration runs in its own subprocess (peak RSS belongs to it alone) through the same plugin
classes ``tunekit apply`` uses: post-training methods are applied to the loaded fp32 model, bnb ones
load with their ``load_kwargs``; the output is saved and perplexity is measured on the *reloaded*
output, i.e. on what a user gets. ``gptq-direct`` calls GPTQModel itself with identical settings and
calibration tokens, to show the plugin adds neither error nor time.

Model: SmolLM2-135M-Instruct (see ``tunekit.core.fixtures.smollm2_path``). Its hidden size 576 is not a multiple of 128,
so group size 128 does not divide the q/k/v/gate/up input widths: the table uses group size 64.
Evaluation: Persuasion (held out), first ``--eval-tokens`` tokens in non-overlapping 256-token windows.
Calibration: the shipped Emma excerpt (tunekit/data/calibration_austen_emma.txt), never Persuasion.
Writes ``bench/results/quantize-<machine>.json`` and ``.md`` after every configuration (partial runs keep
what finished).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
CALIBRATION = {"n_samples": 16, "seq_len": 512}
EVAL_CANDIDATES = (REPO / "tunekit" / "data" / "eval_austen_persuasion.txt",)  # shipped: first ~100 KB of Persuasion

# name -> (method, params); None method = the unquantized baseline in that dtype
CONFIGS: dict[str, tuple[str | None, dict[str, Any]]] = {
    "fp32": (None, {"dtype": "float32"}),
    "rtn-4bit-g64": ("rtn", {"bits": 4, "group_size": 64}),
    "gptq-4bit-g64": ("gptq", {"bits": 4, "group_size": 64, "calibration": CALIBRATION}),
    "gptq-direct-4bit-g64": ("gptq-direct", {"bits": 4, "group_size": 64, "calibration": CALIBRATION}),
    "awq-4bit-g64": ("awq", {"bits": 4, "group_size": 64, "calibration": CALIBRATION}),
    "nf4": ("nf4", {}),
    "fp4": ("fp4", {}),
    "int8": ("int8", {}),
    "rtn-3bit-g64": ("rtn", {"bits": 3, "group_size": 64}),
    "gptq-3bit-g64": ("gptq", {"bits": 3, "group_size": 64, "calibration": CALIBRATION}),
    "awq-3bit-g64": ("awq", {"bits": 3, "group_size": 64, "calibration": CALIBRATION}),
    "bf16": (None, {"dtype": "bfloat16"}),
}


SLOW_ON_PLAIN_CPUS = ("awq-4bit-g64", "awq-3bit-g64", "bf16")
"""16-bit work (AWQ packs only fp16/bf16; the bf16 baseline): hours on a CPU without AVX512-BF16/AMX."""


def default_configs() -> list[str]:
    """Every configuration, less the 16-bit ones on a CPU that runs them 30-50x slower than fp32."""
    from tunekit_gptq.backend import cpu_has_fast_bf16

    return [name for name in CONFIGS if cpu_has_fast_bf16() or name not in SLOW_ON_PLAIN_CPUS]


def machine() -> str:
    return os.environ.get("TUNEKIT_BENCH_MACHINE", "cpu")


# -- worker ------------------------------------------------------------------------------------


def eval_text() -> Path:
    for path in EVAL_CANDIDATES:
        if path.is_file():
            return path
    raise FileNotFoundError("no Persuasion text for evaluation; pass --eval-text")


def perplexity(model: Any, ids: list[int], window: int) -> float:
    import torch

    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(ids) - window + 1, window):
            chunk = torch.tensor([ids[start:start + window]])
            loss = model(chunk, labels=chunk).loss.float().item()
            total += loss * (window - 1)
            count += window - 1
    return math.exp(total / count)


def weight_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.glob("*.safetensors"))


def quantize_direct(model_path: Path, out: Path, params: dict[str, Any]) -> None:
    """GPTQModel called directly: same QuantizeConfig, dtype (the fp32 model's) and calibration tokens as the
    plugin builds."""
    import torch
    from transformers import AutoTokenizer
    from tunekit_gptq import GPTQQuantizer
    from tunekit_gptq.backend import (
        build_quantize_config,
        configure_environment,
        resolve_backend,
        resolve_dtype,
        run_gptqmodel,
    )

    from tunekit.core.quantization import CalibrationParams
    from tunekit.core.texts import calibration_windows

    configure_environment()
    plugin = GPTQQuantizer(GPTQQuantizer.Params.model_validate(params))
    tokenizer = AutoTokenizer.from_pretrained(str(model_path))
    windows = calibration_windows(tokenizer, CalibrationParams.model_validate(params["calibration"]))
    calibration = [{"input_ids": w, "attention_mask": [1] * len(w)} for w in windows]
    run_gptqmodel(model_path, out, build_quantize_config(plugin, "cpu"), calibration,
                  backend=resolve_backend("auto", "gptq", "cpu"), device="cpu",
                  dtype=resolve_dtype("auto", "cpu", "gptq", torch.float32))


def run_one(name: str, model_path: Path, eval_path: Path, eval_tokens: int, window: int) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunekit.core.context import StageContext
    from tunekit.core.kinds import Quantizer
    from tunekit.core.recipe_model import Recipe
    from tunekit.core.registry import get_registry

    torch.set_num_threads(int(os.environ.get("TUNEKIT_BENCH_THREADS", "2")))
    method, params = CONFIGS[name]
    tokenizer = AutoTokenizer.from_pretrained(str(model_path))
    ids = tokenizer(eval_path.read_text(encoding="utf-8")[: eval_tokens * 8])["input_ids"][:eval_tokens]
    ctx = StageContext(recipe=Recipe.model_validate({}), model_path=model_path, tokenizer=tokenizer, log=lambda _: None)
    work = Path(tempfile.mkdtemp(prefix="tunekit-bench-"))
    out = work / "out"
    row: dict[str, Any] = {"name": name, "method": method or "baseline", "params": params}
    try:
        start = time.perf_counter()
        if method is None:
            model = AutoModelForCausalLM.from_pretrained(str(model_path), dtype=getattr(torch, params["dtype"]))
            model.save_pretrained(out)
        elif method == "gptq-direct":
            quantize_direct(model_path, out, params)
        else:
            cls = get_registry().get("quantizer", method)
            plugin = cls(cls.Params.model_validate(params))
            assert isinstance(plugin, Quantizer)  # narrows for mypy: the registry's quantizer kind
            row["declared_bits_per_weight"] = round(plugin.bits_per_weight(), 4)
            if plugin.on_load:
                model = AutoModelForCausalLM.from_pretrained(str(model_path), **plugin.load_kwargs(ctx))
                model = plugin.apply(plugin.prepare_loaded(model, ctx), ctx)
            else:
                model = AutoModelForCausalLM.from_pretrained(str(model_path), dtype=torch.float32)
                model = plugin.apply(model, ctx)
            saver = getattr(plugin, "save", None)
            if not (saver and saver(model, out, ctx)):
                model.save_pretrained(out)
        row["quantize_seconds"] = round(time.perf_counter() - start, 1)
        row["file_mb"] = round(weight_bytes(out) / 2**20, 1)
        reloaded = AutoModelForCausalLM.from_pretrained(str(out)).eval()
        start = time.perf_counter()
        row["perplexity"] = round(perplexity(reloaded, ids, window), 2)
        row["eval_seconds"] = round(time.perf_counter() - start, 1)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    row["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 0)
    return row


# -- driver ------------------------------------------------------------------------------------


def markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    lines = [
        f"SmolLM2-135M-Instruct on `{meta['machine']}` ({meta['cpu']}, {meta['threads']} threads); perplexity on "
        f"the first {meta['eval_tokens']} tokens of Persuasion in {meta['window']}-token windows; calibration "
        f"{CALIBRATION['n_samples']} x {CALIBRATION['seq_len']} tokens of Emma; group size 64 (576 is not a "
        "multiple of 128). Time = load + quantize + save; peak = the worker process's max RSS.",
        "",
        "| config | perplexity | Δ vs fp32 | file MB | declared bits/w | time s | peak MB |",
        "|---|---|---|---|---|---|---|",
    ]
    base = next((r.get("perplexity") for r in results["rows"] if r["name"] == "fp32"), None)
    for r in results["rows"]:
        if "error" in r:
            lines.append(f"| {r['name']} | failed: {r['error'][:80]} | | | | | |")
            continue
        delta = f"{100 * (r['perplexity'] / base - 1):+.1f}%" if base else ""
        lines.append(f"| {r['name']} | {r['perplexity']} | {delta} | {r['file_mb']} | "
                     f"{r.get('declared_bits_per_weight', '')} | {r['quantize_seconds']} | {r['peak_rss_mb']:.0f} |")
    return "\n".join(lines) + "\n"


def write(results: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"quantize-{results['meta']['machine']}"
    stem.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    table = markdown(results)
    stem.with_suffix(".md").write_text(table)
    docs = REPO / "docs" / "quantization.md"
    start, end = "<!-- bench:quantize:start -->", "<!-- bench:quantize:end -->"
    if docs.is_file() and start in (text := docs.read_text()):
        head, rest = text.split(start, 1)
        docs.write_text(f"{head}{start}\n{table}{end}{rest.split(end, 1)[1]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=list(CONFIGS), help="configurations to run (default: all)")
    parser.add_argument("--model", type=Path, help="HF model folder (default: the SmolLM2 fixture)")
    parser.add_argument("--eval-text", type=Path, help="held-out text (default: Persuasion)")
    parser.add_argument("--eval-tokens", type=int, default=4096)
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--render", action="store_true", help="only re-render the table from the saved JSON")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.render:
        write(json.loads((RESULTS / f"quantize-{machine()}.json").read_text()))
        return
    sys.path.insert(0, str(HERE))
    from tunekit.core.fixtures import smollm2_path

    model_path = args.model or smollm2_path()
    eval_path = args.eval_text or eval_text()
    if args.worker:
        print(json.dumps(run_one(args.worker, model_path, eval_path, args.eval_tokens, args.window)))
        return

    stem = RESULTS / f"quantize-{machine()}.json"
    previous = json.loads(stem.read_text()) if stem.is_file() and args.only else {"rows": []}
    rows = {r["name"]: r for r in previous["rows"]}
    results: dict[str, Any] = {"meta": {"machine": machine(), "cpu": platform.processor() or platform.machine(),
                                        "threads": int(os.environ.get("TUNEKIT_BENCH_THREADS", "2")),
                                        "model": str(model_path), "eval_text": eval_path.name,
                                        "eval_tokens": args.eval_tokens, "window": args.window,
                                        "calibration": CALIBRATION}, "rows": []}
    for name in args.only or default_configs():
        command = [sys.executable, __file__, "--worker", name, "--model", str(model_path), "--eval-text",
                   str(eval_path), "--eval-tokens", str(args.eval_tokens), "--window", str(args.window)]
        proc = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        if proc.returncode == 0 and lines:
            rows[name] = json.loads(lines[-1])
        else:
            rows[name] = {"name": name, "error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
        print(json.dumps(rows[name]), flush=True)
        results["rows"] = [rows[n] for n in CONFIGS if n in rows]
        write(results)


if __name__ == "__main__":
    main()
