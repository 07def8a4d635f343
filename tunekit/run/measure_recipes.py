"""``tunekit recommend --measure``: measure the top candidates on the user's own model, then re-rank.

The recommender ranks by *declared* quality costs (papers, other models). This closes the loop on the
model at hand: each recommended post-training candidate runs its weight stages in process (load ->
context -> prune -> quantize, exactly :mod:`tunekit.run.pipeline`'s stage functions, nothing saved) and is
compared with the unchanged model: quantizers and pruners by KL divergence and perplexity on held-out
text (:mod:`tunekit.run.checks.kl`, the base logits computed once), context extenders by passkey retrieval
at the target length (:mod:`tunekit.run.checks.passkey`). Candidates that train are not measured (that is
a full run: ``tunekit apply``). Cheap candidates (no calibration) run first; a candidate is skipped when
the time already spent plus its estimate would pass ``--budget-minutes``. Results are cached under
``$TUNEKIT_CACHE/measure/`` by (model fingerprint, candidate stages), so a second run is instant.
Imported only with ``--measure``: plain ``recommend`` stays torch-free.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from tunekit.core.errors import TunekitError, UsageError
from tunekit.core.fixtures import cache_dir

if TYPE_CHECKING:
    from tunekit.advise.rules.engine import Recommendation, Result
    from tunekit.core.registry import Registry

MEASURED_STAGES = ("context", "pruner", "quantizer")
WINDOWS = 2
SEQ_LEN = 256


@dataclass
class Measurement:
    kind: str  # "kl" | "passkey" | "skipped" | "failed" (not cached: the next run tries again)
    seconds: float = 0.0
    kl_divergence: float | None = None
    top1_agreement: float | None = None
    perplexity: float | None = None
    perplexity_base: float | None = None
    passkey_accuracy: float | None = None
    passkey_length: int | None = None
    cached: bool = False
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None and v != ""}


def fingerprint(model_dir: Path) -> str:
    """Config contents plus each weight file's name, size and mtime (cheap; a changed weight file re-measures)."""
    h = hashlib.sha256((model_dir / "config.json").read_bytes())
    for f in sorted(model_dir.glob("*.safetensors")) + sorted(model_dir.glob("*.bin")):
        st = f.stat()
        h.update(f"{f.name}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:16]


def _stages(rec: Recommendation) -> dict[str, Any]:
    return {k: rec.resolved.get(k) for k in MEASURED_STAGES if rec.resolved.get(k)}


def _cache_path(model_fp: str, stages: dict[str, Any], target: int | None) -> Path:
    key = hashlib.sha256(json.dumps([model_fp, stages, target, WINDOWS, SEQ_LEN], sort_keys=True).encode())
    return cache_dir() / "measure" / f"{key.hexdigest()[:24]}.json"


def _apply_stages(rec: Recommendation, model_dir: Path, registry: Registry) -> tuple[Any, Any]:
    """The candidate's weight stages through the pipeline's own stage functions, in memory."""
    from tunekit.core.context import RunState, StageContext
    from tunekit.core.kind_specs import STAGE_KIND
    from tunekit.core.recipe import load_recipe
    from tunekit.run import pipeline
    from tunekit.run.load import stage_load

    data = {k: v for k, v in rec.recipe.items() if k not in ("train", "adapter", "model")}
    with tempfile.TemporaryDirectory(prefix="tunekit-measure-") as tmp:
        path = Path(tmp) / "candidate.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        resolved = load_recipe(path, registry=registry)
        ctx = StageContext(recipe=resolved.recipe, model_path=model_dir, log=lambda _line: None,
                           run=RunState(stages=resolved.stages))
        pipeline.seed_everything(resolved.recipe)
        model = stage_load(None, None, ctx)
        for stage in ("context", "prune", "quantize"):
            plugin = resolved.stages.get(STAGE_KIND[stage])
            if plugin is not None:
                model = pipeline.stage_plugin(plugin, model, ctx) or model
    return model, ctx.tokenizer


class Measurer:
    """Holds the base model's reference numbers so every candidate is compared with the same ones."""

    def __init__(self, model_dir: Path, target: int | None) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from tunekit.core.texts import eval_text
        from tunekit.run.checks import kl

        self.model_dir = model_dir
        self.target = target
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        base = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype="auto").eval()
        ids = tokenizer(eval_text(None)[: WINDOWS * SEQ_LEN * 8], add_special_tokens=False)["input_ids"]
        self.windows = kl.windows_of(ids, SEQ_LEN, WINDOWS)
        self.reference = [kl.logits_of(base, w) for w in self.windows]
        del base

    def measure(self, rec: Recommendation, registry: Registry) -> Measurement:
        from tunekit.run.checks import kl, passkey

        started = time.perf_counter()
        model, tokenizer = _apply_stages(rec, self.model_dir, registry)
        if "context" in _stages(rec) and self.target:
            result = passkey.passkey(model, tokenizer, [self.target])
            return Measurement(kind="passkey", passkey_accuracy=round(result.accuracy, 4),
                               passkey_length=self.target, seconds=round(time.perf_counter() - started, 1))
        d = kl.divergence_from(self.reference, model, self.windows)
        return Measurement(kind="kl", kl_divergence=round(d.kl_divergence, 5),
                           top1_agreement=round(d.top1_agreement, 4),
                           perplexity=round(d.perplexity_tuned, 3), perplexity_base=round(d.perplexity_base, 3),
                           seconds=round(time.perf_counter() - started, 1))


def measure_and_rerank(result: Result, model_dir: Path, registry: Registry, *, budget_minutes: float,
                       target: int | None = None, log: Callable[[str], None] = print) -> dict[int, Measurement]:
    """Measure what fits the budget, re-rank ``result.recommendations`` in place; returns old rank -> numbers."""
    if not (model_dir / "config.json").is_file():
        raise UsageError(f"--measure needs the weights locally: --model {model_dir} is not a model folder")
    model_fp = fingerprint(model_dir)
    budget_s = budget_minutes * 60
    started = time.perf_counter()
    measured: dict[int, Measurement] = {}
    todo = [r for r in result.recommendations if r.fits and _stages(r) and not r.recipe.get("train")]
    for rec in result.recommendations:
        if rec not in todo:
            measured[rec.rank] = Measurement(kind="skipped", note="trains, does not fit, or changes no weights")
    todo.sort(key=lambda r: (r.candidate.calibration, r.rank))  # cheap ones first
    measurer: Measurer | None = None
    slowest = slowest_calibrated = 0.0
    for rec in todo:
        cache = _cache_path(model_fp, _stages(rec), target)
        if cache.is_file():
            m = Measurement(**json.loads(cache.read_text(encoding="utf-8")))
            m.cached = True
            measured[rec.rank] = m
            slowest = max(slowest, m.seconds)  # what it cost when measured: the best guess for the next
            if rec.candidate.calibration:
                slowest_calibrated = max(slowest_calibrated, m.seconds)
            continue
        spent = time.perf_counter() - started
        guess = _guess(rec.candidate.calibration, slowest, slowest_calibrated)
        if spent + guess > budget_s:
            measured[rec.rank] = Measurement(kind="skipped", note=f"budget: ~{guess:.0f} s more would pass "
                                                                  f"{budget_minutes:g} min")
            continue
        log(f"measuring #{rec.rank} {rec.recipe['name']} ...")
        if measurer is None:
            measurer = Measurer(model_dir, target)
        tried = time.perf_counter()
        try:
            m = measurer.measure(rec, registry)
        except TunekitError as exc:  # one candidate's backend failing must not lose the others' numbers
            measured[rec.rank] = Measurement(kind="failed", note=f"failed: {exc}",
                                             seconds=round(time.perf_counter() - tried, 1))
            continue
        slowest = max(slowest, m.seconds)
        if rec.candidate.calibration:
            slowest_calibrated = max(slowest_calibrated, m.seconds)
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(m.to_dict()), encoding="utf-8")
        measured[rec.rank] = m
    rerank(result, measured)
    return measured


#: A calibration pass (GPTQ/AWQ) against a no-calibration quantizer (RTN/bnb) before either was timed
#: here: SmolLM2 on 2 cores, GPTQ 4-bit 176 s vs RTN ~5 s (docs/design.md), AWQ longer still.
CALIBRATION_FACTOR = 30.0


def _guess(calibration: bool, slowest: float, slowest_calibrated: float) -> float:
    """Seconds the next candidate may take: like the slowest of its sort so far, 1.5x for safety."""
    if not calibration:
        return 1.5 * slowest
    return 1.5 * slowest_calibrated if slowest_calibrated else CALIBRATION_FACTOR * slowest


def _quality_key(m: Measurement) -> tuple[int, float]:
    if m.kind == "kl" and m.kl_divergence is not None:
        return (0, m.kl_divergence)
    if m.kind == "passkey" and m.passkey_accuracy is not None:
        return (0, 1 - m.passkey_accuracy)
    return (1, 0.0)


def rerank(result: Result, measured: dict[int, Measurement]) -> None:
    """Measured candidates first, best measured quality first (all of them fit); unmeasured keep their order."""
    old = {id(r): r.rank for r in result.recommendations}
    result.recommendations.sort(key=lambda r: (*_quality_key(measured[old[id(r)]]), old[id(r)]))
    for new_rank, rec in enumerate(result.recommendations, 1):
        if rec.rank != new_rank:
            rec.reasons.append(f"re-ranked by measurement: declared #{rec.rank} -> measured #{new_rank}")
        rec.rank = new_rank
    remapped = {r.rank: measured[old[id(r)]] for r in result.recommendations}
    measured.clear()
    measured.update(remapped)


def cell(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def render(result: Result, measured: dict[int, Measurement], echo: Callable[[str], None] = print) -> None:
    """Declared and measured numbers side by side, in the new order."""
    echo(f"{'#':>2}  {'recipe':<34} {'declared cost':>13} {'KL':>8} {'top-1':>6} {'ppl':>8} {'passkey':>7} "
         f"{'s':>6}")
    for rec in result.recommendations:
        m = measured[rec.rank]
        echo(f"{rec.rank:>2}  {Path(rec.recipe['name']).name[-34:]:<34} {rec.candidate.quality_cost:>13.3f} "
             f"{cell(m.kl_divergence, '.4f'):>8} {cell(m.top1_agreement, '.1%'):>6} {cell(m.perplexity, '.2f'):>8} "
             f"{cell(m.passkey_accuracy, '.0%'):>7} {m.seconds:>6.1f}"
             + (" (cached)" if m.cached else "") + (f"  {m.note}" if m.note else ""))
    bases = {m.perplexity_base for m in measured.values() if m.perplexity_base is not None}
    if bases:
        echo(f"base perplexity on the same {WINDOWS} x {SEQ_LEN} held-out tokens: {min(bases):.2f}")
