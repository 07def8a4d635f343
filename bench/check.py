"""``tunekit check`` and ``recommend --measure`` on the shipped SmolLM2-135M-Instruct (the issue's "done when").

Run: ``python bench/check.py [--work DIR]``. Runs the printed ``tunekit`` commands one after the other
(2 cores: never in parallel) and writes ``bench/results/check-cpu.json``:

- KL ordering: the demo output (YaRN x2 + 20% magnitude pruning) vs RTN 4-bit g64 vs RTN 3-bit g64.
- Repetition: a bad sampler (temperature 0, repetition_penalty 1.0, 1024 new tokens) vs the chat preset
  with repetition_penalty 1.1.
- Passkey: linear RoPE x4 vs YaRN x4, no fine-tune, at 1024 and 2048 tokens. 4x SmolLM2's native 8192
  (32768 tokens) is out of reach of a 2-core CPU (attention over 32k tokens x 30 layers per trial), so
  this measures what scaling does *inside* the native window, where linear interpolation is known to
  hurt (Chen et al. 2023) and YaRN is designed not to.
- ``recommend --measure --goal compress`` with a 5-minute budget, twice (the second run reads the cache).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RECIPES = {
    "rtn4": "name: rtn4\nquantizer: {method: rtn, bits: 4, group_size: 64, keep_16bit: [lm_head]}\n",
    "rtn3": "name: rtn3\nquantizer: {method: rtn, bits: 3, group_size: 64, keep_16bit: [lm_head]}\n",
    "bad-sampler": "name: bad-sampler\nsampler: {method: sampling, temperature: 0, repetition_penalty: 1.0, "
                   "max_new_tokens: 1024}\n",
    "good-sampler": "name: good-sampler\nsampler: {method: sampling, preset: chat, repetition_penalty: 1.1}\n",
    "rope-linear4": "name: rope-linear4\ncontext: {method: linear, factor: 4.0}\n",
    "rope-yarn4": "name: rope-yarn4\ncontext: {method: yarn, factor: 4.0}\n",
}
FAST = "eval: {perplexity: false, check: false}\n"


def tunekit(*args: str) -> tuple[str, float]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "tunekit", *args], capture_output=True, text=True, cwd=ROOT)
    if done.returncode not in (0, 1):
        raise SystemExit(f"tunekit {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return done.stdout, round(time.perf_counter() - start, 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, default=Path(tempfile.mkdtemp(prefix="tunekit-bench-check-")))
    work = parser.parse_args().work
    from tunekit.core.fixtures import smollm2_path

    model = str(smollm2_path())
    results: dict[str, Any] = {"model": "SmolLM2-135M-Instruct (fp32)", "runs": {}}
    outputs = {"demo": "demo"}
    for name, text in RECIPES.items():
        path = work / f"{name}.yaml"
        path.write_text(text + FAST, encoding="utf-8")
        outputs[name] = str(path)
    for name, recipe in outputs.items():
        _, seconds = tunekit("apply", recipe, "--model", model, "--output", str(work / name), "--force", "--quiet")
        results["runs"][f"apply {name}"] = seconds
    plan = [("kl", n, ["--only", "kl_divergence"]) for n in ("demo", "rtn4", "rtn3")]
    from tunekit.run.checks.generations import read_prompts

    prompts = work / "prompts.jsonl"  # the 3rd and 4th shipped instructions (long answers: room to loop)
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in read_prompts(None, 4)[2:]), encoding="utf-8")
    plan += [("repetition", n, ["--only", "repetition", "--only", "eos", "--max-new-tokens", "96",
                                "--prompts", str(prompts), "-n", "2"]) for n in ("bad-sampler", "good-sampler")]
    plan += [("passkey", n, ["--only", "long_context", "--context", "2048"]) for n in ("rope-linear4", "rope-yarn4")]
    for kind, name, extra in plan:
        out, seconds = tunekit("check", str(work / name), "--json", *extra)
        results.setdefault(kind, {})[name] = json.loads(out)
        results["runs"][f"check {name}"] = seconds
    for attempt in ("first", "cached"):
        out, seconds = tunekit("recommend", "--cpu-only", "--model", model, "--goal", "compress", "--measure",
                               "--budget-minutes", "5", "--json")
        recs = json.loads(out)["recommendations"]
        results.setdefault("measure", {})[attempt] = {
            "seconds": seconds, "ranked": [{"recipe": r["recipe"]["name"], **r["measured"]} for r in recs]}
    target = ROOT / "bench" / "results" / "check-cpu.json"
    target.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
