"""Layer offload (``model.offload``) on a CPU: what streaming layers from disk costs in decode speed.

    python bench/offload.py          # SmolLM2-135M-Instruct, results in bench/results/offload-<machine>.md

On a machine without a GPU the split is CPU RAM vs disk: ``cpu_gb`` caps the weights kept in RAM and
accelerate reads the rest from ``offload_folder`` at every forward. The same model is loaded in full and
with about half of its weights on disk (through ``tunekit.run.offload.load_kwargs``, what ``apply`` and
``generate`` use), greedy-decodes the same tokens, and the logits are compared: offload must change speed,
never the numbers. Writes ``bench/results/offload-<machine>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def measure(model: Any, ids: Any, new_tokens: int) -> dict[str, Any]:
    import torch

    with torch.no_grad():
        logits = model(ids).logits[0, -1].float()
        start = time.perf_counter()
        out = model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
        seconds = time.perf_counter() - start
    return {"logits": logits, "tokens": out[0, ids.shape[1]:].tolist(), "gen_tokens_per_s": new_tokens / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunekit.core.fixtures import smollm2_path
    from tunekit.core.recipe_model import OffloadSection
    from tunekit.run.offload import load_kwargs, placement

    torch.set_num_threads(args.threads)
    path = smollm2_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    ids = tokenizer("Emma Woodhouse, handsome, clever, and rich, with a comfortable home", return_tensors="pt")
    ids = ids["input_ids"]
    size_gb = sum(p.stat().st_size for p in Path(path).glob("*.safetensors")) / 1e9
    rows: dict[str, dict[str, Any]] = {}
    full = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    rows["in RAM"] = {**measure(full, ids, args.new_tokens), "placement": {"cpu": "all"}}
    del full
    with tempfile.TemporaryDirectory(prefix="tunekit-offload-") as scratch:
        spec = OffloadSection(gpu_gb=None, cpu_gb=round(size_gb / 2, 3), disk=None)
        kwargs = load_kwargs(spec, model_path=Path(path), scratch=Path(scratch), gpus=0)
        split = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **kwargs)
        rows["half on disk"] = {**measure(split, ids, args.new_tokens), "placement": placement(split)}
    base = dict(rows["in RAM"])
    for row in rows.values():
        row["max_logit_diff"] = float((row["logits"] - base["logits"]).abs().max())
        row["same_tokens"] = row["tokens"] == base["tokens"]
        row["x_in_ram"] = round(row["gen_tokens_per_s"] / base["gen_tokens_per_s"], 3)
    for row in rows.values():
        del row["logits"], row["tokens"]
    machine = "cpu" if not torch.cuda.is_available() else "gpu"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"offload-{machine}.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")
    lines = [f"# Layer offload, SmolLM2-135M-Instruct fp32 ({size_gb:.2f} GB of weights), {platform.machine()}, "
             f"{args.threads} threads, {args.new_tokens} greedy new tokens", "",
             "`python bench/offload.py`; one run each. `cpu_gb` is half the weights, so accelerate streams the "
             "other half from the offload folder at every forward.", "",
             "| placement | modules per device | gen tok/s | x in RAM | max logit diff | same tokens |",
             "|---|---|---|---|---|---|"]
    for name, row in rows.items():
        lines.append(f"| {name} | {row['placement']} | {row['gen_tokens_per_s']:.2f} | {row['x_in_ram']} | "
                     f"{row['max_logit_diff']:.2e} | {row['same_tokens']} |")
    (RESULTS / f"offload-{machine}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
