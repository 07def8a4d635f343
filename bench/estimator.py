"""Estimator vs 184 published, measured peaks (bench/data/vram_calibration.json), and recommend's cold start.

Run: ``python bench/estimator.py`` (``--fit`` first re-fits the estimator's fitted constants on the set and
prints them; paste them into tunekit/advise/estimate.py; ``--baseline DIR`` also times the one-model
recommend of an older checkout with its own ``.venv`` in the same rounds, e.g. the issue-19 commit:
``git worktree add /tmp/af6d0d9 af6d0d9`` and a venv there). Writes ``bench/results/estimator-cpu.json`` and
``.md``.

Each point is translated into the ``Setup`` its source ran (engine, quantization format, LoRA rank and
targets, checkpointing, GPUs and strategy, generated tokens) from the source's own facts, never from the
number it published, and compared like with like: most sources report ``torch.cuda.max_memory_allocated``
(the estimate's ``tensors``); the Qwen-1 fine-tuning profile is a whole-GPU figure (``total``); rows the
sources summed over GPUs are compared with the per-GPU estimate times the GPUs.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import tunekit.advise.estimate as E
from tunekit.advise.estimate import GB, QUANTS, QuantSpec, Setup, band, default_lora_params, estimate
from tunekit.core.arch import ModelArch

DATA = Path(__file__).resolve().parent / "data" / "vram_calibration.json"
RESULTS = Path(__file__).resolve().parent / "results"
KINDS = ("inference 16-bit", "inference quantized", "LoRA", "QLoRA", "full", "multi-GPU")
FITTED = ("ALLOCATOR", "DEQUANT_LAYERS", "INFER_ACT_SCALE")

# quantization formats as the sources name them; bits from the formats' definitions (block scales included)
_FORMATS = {
    "bf16": QUANTS["bf16"],
    "GPTQ-int8": QuantSpec("gptq-int8", 8.0 + 20 / 128),  # g128: fp16 scale + packed zero per group
    "GPTQ-int4": QUANTS["int4"],
    "AWQ-int4": QUANTS["int4"],
    "nf4": QuantSpec("nf4", 4.0 + 32 / 64, trainable=True),  # fp32 absmax per 64-weight block
    "nf4 + double quant": QUANTS["nf4"],
    "fp4 (bnb)": QuantSpec("fp4", 4.0 + 32 / 64, trainable=True),
}


@dataclass
class Point:
    index: int
    model: str
    kind: str
    measured_gb: float
    arch: ModelArch
    setup: Setup
    compare: str  # tensors | total
    summed: bool  # the source added the GPUs' peaks up
    source: str

    def estimated(self) -> tuple[float, float, float]:
        """(point, low, high) in GB, on the quantity the source measured."""
        est = estimate(self.arch, self.setup)
        value = est.tensors if self.compare == "tensors" else est.total
        if self.summed:
            value *= self.setup.gpus
        low, high = band(value)
        return value / GB, low / GB, high / GB


def _quant(name: str, litgpt: bool) -> QuantSpec:
    spec = _FORMATS.get(name) or _FORMATS["nf4" if name.startswith("bnb") else "GPTQ-int4"]
    # lit-gpt's bitsandbytes precision replaces every nn.Linear, the lm_head too
    return replace(spec, kept_16bit=("embed_tokens",)) if litgpt and spec.bits < 16 else spec


def load_points() -> list[Point]:
    data = json.loads(DATA.read_text())
    configs = {k: ModelArch.from_hf_config(v, name=k) for k, v in data["configs"].items()}
    out = []
    for i, p in enumerate(data["points"]):
        arch = configs[p["config"]]
        litgpt = "litgpt" in p["source"].lower() or "lightning.ai" in p["source"]
        qwen1 = p["source"].startswith("QwenLM/Qwen README")
        method = {"inference": "infer", "LoRA": "lora", "QLoRA": "qlora", "full": "full"}[p["method"]]
        quant = _quant(p["quant"].split(" base")[0], litgpt)
        gpus = int(p["gpus"])
        kw: dict[str, Any] = {"method": method, "quant": quant, "batch": int(p["batch"] or 1)}
        if method == "infer":
            # HF generate / lit-gpt generate: the prompt prefilled at once, then new tokens into the cache
            if qwen1:  # seq_len is the generated length; the prompt is short
                kw.update(seq_len=1, new_tokens=int(p["seq_len"]))
            elif litgpt:  # generate script defaults: a one-line prompt, 50 new tokens
                kw.update(seq_len=16, new_tokens=50)
            else:
                kw.update(seq_len=int(p["seq_len"]), new_tokens=2048)
            kw.update(engine="hf", gpus=1)  # device_map="auto" splits layers: the GPUs' sum is one model
            summed = False
        else:
            kw.update(seq_len=int(p["seq_len"]), grad_ckpt=p["grad_ckpt"] is not False,
                      optimizer="sgd" if p["optimizer"] == "SGD" else "adamw")
            if method != "full":
                targets = ("q_proj", "v_proj") if litgpt else E.ALL_LINEAR
                r = 8 if litgpt else 64
                kw.update(lora_targets=targets, trainable_params=default_lora_params(arch, r, targets))
            if litgpt:
                kw.update(chunked_loss=True)  # lit-gpt's chunked_cross_entropy (128-token chunks)
            summed = qwen1 and gpus > 1
            if gpus > 1:
                kw.update(gpus=gpus, strategy="zero3" if qwen1 else "fsdp")
                if litgpt:  # lit-gpt FSDPStrategy: activation checkpointing per Block; full state dict at save
                    kw.update(grad_ckpt=True, gather_full_weights=True)
        kind = "multi-GPU" if gpus > 1 else {"infer": "inference 16-bit" if quant.bits >= 16 else
                                               "inference quantized", "lora": "LoRA", "qlora": "QLoRA",
                                               "full": "full"}[method]
        out.append(Point(i, p["model"], kind, p["measured_gb"], arch, Setup(**kw),
                         "total" if qwen1 and method != "infer" else "tensors", summed, p["source"].split(" ")[0]))
    return out


def evaluate(points: list[Point]) -> list[dict[str, Any]]:
    rows = []
    for p in points:
        est, low, high = p.estimated()
        err = (est - p.measured_gb) / p.measured_gb
        rows.append({"index": p.index, "model": p.model, "kind": p.kind, "training": p.setup.method != "infer",
                     "source": p.source, "compare": p.compare + (" x gpus" if p.summed else ""),
                     "seq_len": p.setup.seq_len, "gpus": p.setup.gpus, "measured_gb": round(p.measured_gb, 3),
                     "estimate_gb": round(est, 3), "low_gb": round(low, 3), "high_gb": round(high, 3),
                     "error_pct": round(100 * err, 1), "in_band": low <= p.measured_gb <= high})
    return rows


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def stats(sel: list[dict[str, Any]]) -> dict[str, Any]:
        errs = [r["error_pct"] for r in sel]
        absd = [abs(e) for e in errs]
        return {"points": len(sel), "mape_pct": round(statistics.mean(absd), 1),
                "median_abs_error_pct": round(statistics.median(absd), 1),
                "within_10_pct": round(sum(a <= 10 for a in absd) / len(sel), 3),
                "within_20_pct": round(sum(a <= 20 for a in absd) / len(sel), 3),
                "mean_signed_error_pct": round(statistics.mean(errs), 1),
                "under_estimated": round(sum(e < 0 for e in errs) / len(sel), 3),
                "under_by_more_than_10_pct": round(sum(e < -10 for e in errs) / len(sel), 3),
                "band_coverage": round(sum(r["in_band"] for r in sel) / len(sel), 3)}
    out = {"all": stats(rows), "training": stats([r for r in rows if r["training"]])}
    for kind in KINDS:
        sel = [r for r in rows if r["kind"] == kind]
        if sel:
            out[kind] = stats(sel)
    return out


def objective(points: list[Point]) -> float:
    """What the fit minimizes: mean absolute % error, plus a penalty on training points under by > 10%."""
    rows = evaluate(points)
    mape = statistics.mean(abs(r["error_pct"]) for r in rows)
    under = [r for r in rows if r["training"] and r["error_pct"] < -10]
    return mape + 3 * sum(-10 - r["error_pct"] for r in under) / max(1, sum(r["training"] for r in rows))


def fit(points: list[Point], rounds: int = 4) -> dict[str, float]:
    """Coordinate search over the fitted constants (no scipy: the estimator stays dependency-free)."""
    best = objective(points)
    for _ in range(rounds):
        for name in FITTED:
            for factor in (0.5, 0.7, 0.85, 0.93, 1.07, 1.15, 1.4, 2.0):
                old = getattr(E, name)
                setattr(E, name, old * factor)
                score = objective(points)
                if score < best - 1e-6:
                    best = score
                else:
                    setattr(E, name, old)
    ratios = sorted(p.measured_gb / p.estimated()[0] for p in points)
    E.BAND_LOW = round(ratios[int(0.05 * len(ratios))], 3)
    E.BAND_HIGH = round(ratios[int(0.95 * len(ratios))], 3)
    return {name: round(getattr(E, name), 3) for name in (*FITTED, "BAND_LOW", "BAND_HIGH")}


#: The commands timed: the design card's (no model: ranks the catalog) and one model's
RECOMMEND = {"no_model": ["recommend", "--vram", "24"],
             "one_model": ["recommend", "--vram", "24", "--model", "llama-3.1-8b", "--goal", "finetune", "--json"]}
#: The issue-19 bar when no ``--baseline`` is given: the one-model command at the issue's commit (af6d0d9),
#: min of 10 runs interleaved with today's commands on the 2-core CPU box (``--baseline DIR`` measures it
#: again): seconds without / with a bytecode cache.
ISSUE_TIME_ONE_MODEL_S = {"no_bytecode": 0.305, "bytecode": 0.255}
#: How the issue-time commit runs the same command (``tunekit.cli`` was a module then).
_BASELINE_PROBE = ("import sys; sys.argv = ['tunekit', 'recommend', '--vram', '24', '--model', 'llama-3.1-8b', "
                   "'--goal', 'finetune', '--json']; from tunekit.cli import main; main()")


def time_recommend(runs: int = 10, baseline: Path | None = None) -> dict[str, Any]:
    """Wall time of fresh ``tunekit recommend`` processes, with no model and with one, and whether torch got
    imported. Each command runs twice a round: compiling tunekit's sources every time
    (``PYTHONDONTWRITEBYTECODE``, as this environment runs an editable install) and with a bytecode cache, as
    a wheel install runs (pip compiles at install). ``baseline``: a checkout of an older commit with its own
    ``.venv`` (the issue's af6d0d9), whose one-model command runs in the same rounds, so load on the machine
    weighs on both sides alike."""
    exe = str(Path(sys.executable).parent / "tunekit")
    commands: dict[str, tuple[list[str], Path | None]] = {name: ([exe, *args], None)
                                                          for name, args in RECOMMEND.items()}
    if baseline is not None:
        commands["issue_time_one_model"] = ([str(baseline / ".venv" / "bin" / "python"), "-c", _BASELINE_PROBE],
                                            baseline)
    base_env = {k: v for k, v in os.environ.items() if k not in {"PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX"}}
    envs = {"no_bytecode": {**base_env, "PYTHONDONTWRITEBYTECODE": "1"},
            # the cache lives outside the sources, so neither checkout is left with __pycache__ folders
            "bytecode": {**base_env, "PYTHONPYCACHEPREFIX": tempfile.mkdtemp(prefix="tunekit-pyc-")}}
    for argv, cwd in commands.values():  # writes the bytecode cache
        subprocess.run(argv, check=True, capture_output=True, env=envs["bytecode"], cwd=cwd)
    times: dict[tuple[str, str], list[float]] = {(c, e): [] for c in commands for e in envs}
    for _ in range(runs):
        for name, (argv, cwd) in commands.items():
            for env_name, env in envs.items():
                start = time.perf_counter()
                subprocess.run(argv, check=True, capture_output=True, env=env, cwd=cwd)
                times[(name, env_name)].append(time.perf_counter() - start)
    out: dict[str, Any] = {"runs": runs, "baseline": str(baseline) if baseline else None}
    for name in commands:
        out[name] = {"args": RECOMMEND.get(name, RECOMMEND["one_model"]),
                     **{f"{e}_{stat}_s": round(fn(times[(name, e)]), 3) for e in envs
                        for stat, fn in (("min", min), ("median", statistics.median))}}
    if baseline is None:
        out["issue_time_one_model"] = {"recorded": True, **{f"{e}_min_s": v for e, v in ISSUE_TIME_ONE_MODEL_S.items()}}
    walls: dict[str, list[float]] = {name: [] for name in ("pass", "help", "help_uncached")}
    others: list[tuple[str, list[str], dict[str, str] | None]] = [
        ("pass", [sys.executable, "-c", "pass"], None), ("help", [exe, "--help"], None),
        ("help_uncached", [exe, "--help"], {**os.environ, "TUNEKIT_COMMAND_CACHE": "off"})]
    for _ in range(runs):
        for name, other, other_env in others:
            start = time.perf_counter()
            subprocess.run(other, check=True, capture_output=True, env=other_env)
            walls[name].append(time.perf_counter() - start)
    heavy = set()
    for args in RECOMMEND.values():
        probe = ("import sys\nfrom tunekit.cli.main import main\n"
                 "sys.argv = ['tunekit', " + ", ".join(map(repr, args)) + "]\n"
                 "try:\n    main()\nexcept SystemExit:\n    pass\n"
                 "print(sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules), file=sys.stderr)\n")
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
        heavy |= set(json.loads(done.stderr.strip().splitlines()[-1].replace("'", '"')))
    return {**out, "python_startup_min_s": round(min(walls["pass"]), 3),
            "tunekit_help_min_s": round(min(walls["help"]), 3),
            "tunekit_help_uncached_min_s": round(min(walls["help_uncached"]), 3),
            "imports_torch": bool(heavy), "heavy_modules": sorted(heavy), "load_average": os.getloadavg()[0]}


def time_torch_import(runs: int = 3) -> float:
    """What recommend avoids: a fresh ``python -c "import torch"``."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch"], check=True)
        times.append(time.perf_counter() - start)
    return round(min(times), 3)


def main() -> None:
    points = load_points()
    fitted = fit(points) if "--fit" in sys.argv else None
    rows = evaluate(points)
    summary = summarize(rows)
    baseline = Path(sys.argv[sys.argv.index("--baseline") + 1]) if "--baseline" in sys.argv else None
    timing = time_recommend(baseline=baseline)
    timing["import_torch_min_s"] = time_torch_import()
    report = {"units": "GB = 1e9 bytes", "data": str(DATA.relative_to(DATA.parents[2])), "fitted": fitted,
              "constants": {k: getattr(E, k) for k in (*FITTED, "BAND_LOW", "BAND_HIGH", "CUDA_CONTEXT_GB",
                                                         "GATHER_LAYERS", "NORM_UPCAST_BYTES")},
              "summary": summary, "points": rows, "recommend_cold_start": timing}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "estimator-cpu.json").write_text(json.dumps(report, indent=2))
    lines = ["| kind | points | MAPE % | median % | within 10% | within 20% | mean signed % | under | "
             "under >10% | band coverage |", "|---|---|---|---|---|---|---|---|---|---|"]
    for kind, st in summary.items():
        lines.append(f"| {kind} | {st['points']} | {st['mape_pct']} | {st['median_abs_error_pct']} | "
                     f"{st['within_10_pct']:.0%} | {st['within_20_pct']:.0%} | {st['mean_signed_error_pct']:+} | "
                     f"{st['under_estimated']:.0%} | {st['under_by_more_than_10_pct']:.0%} | "
                     f"{st['band_coverage']:.0%} |")
    lines += ["", "| # | model | kind | compares | seq | GPUs | measured GB | estimate GB | band | error % |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['index']} | {r['model']} | {r['kind']} | {r['compare']} | {r['seq_len']} | {r['gpus']} | "
              f"{r['measured_gb']} | {r['estimate_gb']} | {r['low_gb']}-{r['high_gb']}"
              f"{'' if r['in_band'] else ' (out)'} | {r['error_pct']:+} |" for r in rows]
    lines += ["", "tunekit recommend cold start (fresh processes, min and median of "
              f"{timing['runs']} interleaved rounds; load average {timing['load_average']:.1f}):", "",
              "| command | no bytecode cache (this environment) | with a bytecode cache (wheel install) |",
              "|---|---|---|"]
    def cells(row: dict[str, Any]) -> str:
        return " | ".join(f"{row[f'{e}_min_s']} s" + (f" (median {row[f'{e}_median_s']})" if f"{e}_median_s" in row
                                                      else "") for e in ("no_bytecode", "bytecode"))

    for name in RECOMMEND:
        lines.append(f"| `tunekit {' '.join(timing[name]['args'])}` | {cells(timing[name])} |")
    bar = timing["issue_time_one_model"]
    where = ("af6d0d9; recorded, not run: pass `--baseline DIR`" if bar.get("recorded")
             else f"`--baseline {timing['baseline']}`, same rounds")
    lines.append(f"| issue-time `--model` command ({where}) | {cells(bar)} |")
    lines += ["", f"python -c pass: {timing['python_startup_min_s']} s; python -c 'import torch': "
              f"{timing['import_torch_min_s']} s; tunekit --help: {timing['tunekit_help_min_s']} s with the cached "
              f"plugin-command listing, {timing['tunekit_help_uncached_min_s']} s without; "
              f"imports torch: {timing['imports_torch']}"]
    text = "\n".join(lines) + "\n"
    (RESULTS / "estimator-cpu.md").write_text(text)
    print(text, end="")
    if fitted:
        print(f"fitted constants: {fitted}")
    a = summary["all"]
    print(f"all {a['points']} points: MAPE {a['mape_pct']}%, band coverage {a['band_coverage']:.0%}; training under "
          f"by >10%: {summary['training']['under_by_more_than_10_pct']:.0%}")


if __name__ == "__main__":
    main()
