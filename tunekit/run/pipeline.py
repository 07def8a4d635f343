"""``tunekit apply``: run a resolved recipe on a real model, stage by stage, into an atomic output folder.

Contract for plugin authors (quantizers, adapters, training) — what the pipeline does, in order
-------------------------------------------------------------------------------------------------
0. **plan** (no torch): the recipe is resolved, every plugin's ``check_requirements()`` runs, the output
   is checked (an existing ``--output`` is refused unless ``--force``), and the plan is printed
   (:mod:`tunekit.run.plan`). ``--dry-run`` stops here.
1. **load**: ``AutoModelForCausalLM.from_pretrained(path, dtype=..., device_map=..., **kw)`` where ``kw`` is
   ``quantizer.load_kwargs(ctx)`` when the quantizer has ``on_load = True``; ``model.gguf_file`` is passed as
   ``gguf_file=``. The tokenizer is loaded into ``ctx.tokenizer``; ``ctx.arch`` is the loaded model's
   :class:`~tunekit.core.arch.ModelArch`. An on-load quantizer's ``prepare_loaded(model, ctx)`` runs right after
   loading, before any forward. Perplexity "before" is measured here, always on the unmodified base: with
   an on-load quantizer the base is first loaded without it, evaluated and freed (:func:`measure_baseline`).
2. **context**  ``model = context_extender.apply(model, ctx)``
3. **prune**    ``model = pruner.apply(model, ctx)``
4. **quantize** ``model = quantizer.apply(model, ctx)`` — for post-training quantizers *and* on-load ones
   (their ``apply`` may fix up the loaded model or return it unchanged). Calibration text:
   :func:`tunekit.core.texts.calibration_windows` (``--data`` > shipped Emma excerpt; never the eval text).
5. **adapter**  ``model = adapter.apply(model, ctx)``
6. **train**    when ``recipe.train`` is set: ``from tunekit.run.training import train; model = train(model, ctx,
   adapter)``. ``ctx.run`` (:class:`~tunekit.core.context.RunState`): ``checkpoint_dir`` (beside the output,
   survives a failed run), ``resume`` (``--resume``), ``shows_bars``.
7. **evaluate** perplexity "after" on held-out text (:mod:`tunekit.run.evaluate`), ROUGE/BLEU when asked.
8. **sampler**  ``model = sampler.apply(model, ctx)`` (sets ``model.generation_config``).
8b. **check**   with ``eval.check`` (default): KL against the logits captured right after load, and the
   EOS/template checks (:mod:`tunekit.run.checks.in_apply`), recorded under ``metrics["check"]``.
9. **export**   into a temporary folder beside ``--output``: ``quantizer.save(model, out_dir, ctx) -> bool``
   (``Plugin.save`` in kinds.py, default False) may write the model in its own format; when it returns
   True the pipeline does not call ``save_pretrained``; otherwise ``model.save_pretrained(out_dir)`` (a
   PEFT model saves its adapter; ``merged`` / ``output.merge`` also saves the merged model). Then the
   tokenizer, exporter plugins (``output.formats``), ``generation_config.json``, ``tunekit-recipe.yaml``,
   ``metrics.json`` and ``README.md``. The folder is renamed to ``--output`` only when everything succeeded.

Every stage, host and plugin alike, runs through the ``tunekit_run_stage`` hook: the host implementation
(:class:`HostStages`, registered with ``trylast``) does the work; observers wrap it with
``@hookimpl(wrapper=True)`` to time, trace or replace the model. ``plugin`` is None for ``load``,
``evaluate``, ``check`` and ``export``; ``ctx.run.phase`` is ``"before"`` or ``"after"`` for ``evaluate``.
``ctx.device`` is where the loaded model's weights are ("cpu", "cuda:0"); the host's own state is typed in
``ctx.run`` and ``ctx.extras`` is left to plugins.
Stages record numbers with ``ctx.record(stage, ...)``; they land in ``metrics.json``.

Library use: ``tunekit.run.pipeline.apply_recipe("demo", model=..., output=..., overrides=[...])`` returns a
:class:`RunResult`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunekit.core.backends import backend_logs
from tunekit.core.context import RunState, StageContext
from tunekit.core.errors import TunekitError, UsageError
from tunekit.core.hookspecs import hookimpl
from tunekit.run import interrupts
from tunekit.run.checkpoints import check_checkpoints, discard_checkpoints
from tunekit.run.load import stage_load
from tunekit.run.measure import peak_memory_mb, size_mb
from tunekit.run.model_source import resolve as resolve_model_source
from tunekit.run.output import AtomicOutput
from tunekit.run.plan import STAGE_SLOT, build_plan, check_inputs, choose_model
from tunekit.run.reporting import Reporter

if TYPE_CHECKING:
    from tunekit.core.kinds import Plugin
    from tunekit.core.recipe import ResolvedRecipe
    from tunekit.core.recipe_model import Recipe
    from tunekit.core.registry import Registry

@dataclass
class RunResult:
    """What a run produced: the output folder (None for a dry run), its metrics and the printed plan."""

    output: Path | None
    metrics: dict[str, Any] = field(default_factory=dict)
    plan: dict[str, Any] = field(default_factory=dict)
    dry_run: bool = False


BACKEND_LOG = "backends.log"
"""The run's log file for what backends (torchao, torch, bitsandbytes, llama.cpp) log; made only if they do."""


# -- the host implementation of every stage --------------------------------------------------


def seed_everything(recipe: Recipe) -> None:
    """Seed python, numpy and torch from ``train.seed`` (42 without a train section) before anything runs.

    Why here and not only in training: the adapter stage draws its initial weights (LoRA A, VeRA's shared
    matrices) and calibration may sample, all before the Trainer seeds itself, so without this two runs of
    one recipe start from different adapters and a recorded recipe does not reproduce its result.
    """
    from transformers import set_seed

    from tunekit.core.recipe_model import TrainSection

    set_seed(recipe.train.seed if recipe.train is not None else TrainSection.model_fields["seed"].default)


def stage_plugin(plugin: Plugin | None, model: Any, ctx: StageContext) -> Any:
    if plugin is None:  # pragma: no cover - the pipeline only calls plugin stages with a plugin
        return model
    result = plugin.apply(model, ctx)
    return model if result is None else result


def stage_train(plugin: Plugin | None, model: Any, ctx: StageContext) -> Any:
    try:
        from tunekit.run.training import train
    except ImportError as exc:
        raise TunekitError(f"this recipe trains, but tunekit.run.training is not available: {exc}") from exc
    return train(model, ctx, plugin)  # type: ignore[arg-type]


def stage_evaluate(plugin: Plugin | None, model: Any, ctx: StageContext) -> Any:
    from tunekit.run import evaluate

    phase = ctx.run.phase
    ev = ctx.recipe.eval
    if ev.perplexity:
        text = evaluate.eval_text(ev.data)
        ppl = evaluate.perplexity(model, ctx.tokenizer, text, seq_len=ev.seq_len, stride=ev.stride,
                                  max_tokens=ev.max_tokens, progress=ctx.run.progress,
                                  label=f"perplexity ({phase})")
        ctx.record("evaluate", **{f"perplexity_{phase}": round(ppl.perplexity, 4),
                                  "eval_tokens": ppl.tokens, "eval_windows": ppl.windows})
        ctx.log(f"perplexity {phase}: {ppl.perplexity:.3f} ({ppl.tokens} tokens)")
    if phase == "after" and ev.tasks:
        if not ev.references:
            raise UsageError("eval.tasks needs eval.references: a JSONL file with prompt and reference")
        scores = evaluate.reference_scores(model, ctx.tokenizer, Path(ev.references), ev.tasks,
                                           progress=ctx.run.progress)
        ctx.record("evaluate", **scores)
    return model


def stage_check(plugin: Plugin | None, model: Any, ctx: StageContext) -> Any:
    from tunekit.run.checks import in_apply

    return in_apply.stage_check(plugin, model, ctx)


def stage_export(plugin: Plugin | None, model: Any, ctx: StageContext) -> Any:
    from tunekit.run import export

    if ctx.output_dir is None:  # pragma: no cover - apply_recipe always sets it before export
        raise TunekitError("no output directory")
    export.write_model(model, ctx)
    return model


HOST_STAGES: dict[str, Callable[[Any, Any, StageContext], Any]] = {
    "load": stage_load, "context": stage_plugin, "prune": stage_plugin, "quantize": stage_plugin,
    "adapter": stage_plugin, "train": stage_train, "evaluate": stage_evaluate, "sampler": stage_plugin,
    "check": stage_check, "export": stage_export,
}


class HostStages:
    """The host's ``tunekit_run_stage``: runs the stage itself (registered ``trylast`` so plugins may
    override a stage by returning a model first; wrappers observe it)."""

    @hookimpl(trylast=True)
    def tunekit_run_stage(self, stage: str, plugin: Plugin | None, model: Any, ctx: StageContext) -> Any:
        try:
            run = HOST_STAGES[stage]
        except KeyError:
            raise TunekitError(f"unknown pipeline stage {stage!r}") from None
        return run(plugin, model, ctx)


HOST_NAME = "tunekit-host-stages"


def _ensure_host(registry: Registry) -> None:
    if registry.pm.get_plugin(HOST_NAME) is None:
        registry.pm.register(HostStages(), name=HOST_NAME)
    from tunekit.run.tracking import TRACKER_NAME, RunTracker

    if registry.pm.get_plugin(TRACKER_NAME) is None:
        registry.pm.register(RunTracker(), name=TRACKER_NAME)


def run_stage(registry: Registry, stage: str, plugin: Plugin | None, model: Any, ctx: StageContext,
              reporter: Reporter) -> Any:
    """One stage through the hook, timed; a stage returning None keeps the model it was given."""
    interrupts.check()  # a Ctrl-C that a library swallowed during the previous stage stops the run here
    start = time.perf_counter()
    method = getattr(plugin, "name", None)
    reporter.event("stage_start", stage=stage, method=method)
    # "still running" lines from rank 0 only, as every other line of a distributed run
    alive: AbstractContextManager[None] = nullcontext()
    if ctx.run.is_main:
        alive = reporter.heartbeat(f"{stage} ({method})" if method else stage)
    with alive:
        result = registry.pm.hook.tunekit_run_stage(stage=stage, plugin=plugin, model=model, ctx=ctx)
    elapsed = round(time.perf_counter() - start, 3)
    label = stage if stage != "evaluate" else f"evaluate_{ctx.run.phase}"
    if stage == "load" and ctx.run.unquantized:
        label = "load_baseline"
    ctx.metrics.setdefault("timings_s", {})[label] = elapsed
    reporter.event("stage_end", stage=stage, seconds=elapsed, peak_memory_mb=peak_memory_mb())
    return model if result is None else result


# -- the run ---------------------------------------------------------------------------------


def _quantizes_on_load(resolved: ResolvedRecipe) -> bool:
    from tunekit.core.kinds import Quantizer

    quantizer = resolved.stages.get("quantizer")
    return isinstance(quantizer, Quantizer) and quantizer.on_load


def measure_baseline(registry: Registry, ctx: StageContext, reporter: Reporter) -> None:
    """Perplexity "before" of a quantize-on-load run, on the unmodified base: load it without the
    quantizer, evaluate, free it; the run then loads again, quantized.

    Why two loads: measured after an on-load quantizer, "before" would already carry the quantization
    cost and the run would report none. When the unquantized base does not fit, the run says plainly
    that no baseline was measured instead of reporting a quantized one as the base.
    """
    import gc

    import torch

    ctx.run.unquantized = True
    ctx.run.phase = "before"
    try:
        base = run_stage(registry, "load", None, None, ctx, reporter)
        if ctx.recipe.eval.check:  # the KL check then includes what the on-load quantizer cost
            from tunekit.run.checks.in_apply import capture_reference

            capture_reference(base, ctx)
        run_stage(registry, "evaluate", None, base, ctx, reporter)
        ctx.record("evaluate", baseline="unquantized base (loaded without the quantize-on-load method)")
    except (MemoryError, torch.OutOfMemoryError) as exc:
        ctx.record("evaluate", baseline=f"not measured: the unquantized base does not fit ({exc})")
        ctx.log("no baseline perplexity: the unquantized base does not fit in memory; only 'after' is measured")
    finally:
        ctx.run.unquantized = False
        base = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


@contextmanager
def _hf_progress_bars(enabled: bool) -> Iterator[None]:
    """transformers' own bars (loading weights, writing shards) follow --quiet / --log-json too."""
    if enabled:
        yield
        return
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def apply_recipe(
    recipe: str | Path,
    *,
    model: str | Path | None = None,
    data: str | Path | None = None,
    output: str | Path | None = None,
    overrides: list[str] | None = None,
    force: bool = False,
    dry_run: bool = False,
    quiet: bool = False,
    resume: bool = False,
    registry: Registry | None = None,
    reporter: Reporter | None = None,
) -> RunResult:
    """Run ``recipe`` (a file or a shipped name) and write the result to ``output`` atomically.

    ``reporter`` says how the run talks (the CLI's carries ``--quiet`` / ``--log-json``); ``quiet=True`` is the
    library shorthand for ``Reporter(quiet=True)``, so the choice is made in one place.

    Raises tunekit errors (``RecipeError``, ``OutputExistsError``, ...) before any weight loads when the
    recipe, the model path or the output cannot work; a failure later removes the temporary output and
    leaves any earlier output untouched.
    """
    from tunekit.core.recipe import load_recipe
    from tunekit.core.registry import get_registry
    from tunekit.run import distributed

    if reporter is not None and quiet:
        raise TypeError("apply_recipe: pass quiet inside the reporter (Reporter(quiet=True)), not beside it")
    registry = registry or get_registry()
    reporter = reporter or Reporter(quiet=quiet)
    resolved = load_recipe(recipe, overrides=list(overrides or []), registry=registry)
    from tunekit.core.formats import resolve_exporters

    exporters = resolve_exporters(resolved.recipe.output.formats, registry, source=resolved.source)
    model_path, gguf_file = choose_model(resolved, model)
    source = resolve_model_source(resolved, model, model_path, gguf_file, registry)
    if source.kind == "hub":
        model_path = Path(str(source.ref))  # from_pretrained(str(path)) receives the hub id unchanged
    data_path = Path(data).expanduser() if data else None
    out_value = output if output is not None else resolved.recipe.output.dir
    if out_value is None and not dry_run:
        raise UsageError("say where to write the result: --output DIR (or output.dir in the recipe)")
    if out_value is not None and not str(out_value).strip():
        raise UsageError("the output path is empty (an unset variable?): say where to write the result")
    out_path = Path(out_value).expanduser().resolve() if out_value is not None else None
    check_inputs(resolved, source.local_path, gguf_file, data_path)
    atomic = AtomicOutput(out_path, force=force, recipe_path=resolved.path) if out_path is not None else None
    if atomic is not None:
        atomic.check()
        if resolved.recipe.train is not None:
            check_checkpoints(atomic.checkpoint_dir, resume=resume, force=force)
    plan = build_plan(resolved, model_path=model_path, gguf_file=gguf_file, output=out_path, data=data_path,
                      source=source)
    reporter.plan(plan)
    if dry_run:
        return RunResult(output=None, plan=plan, dry_run=True)
    if atomic is None or out_path is None:  # unreachable: checked above; keeps the types narrow
        raise UsageError("no output directory")
    info = distributed.prepare_process(resolved.recipe)
    atomic.lock = info.is_main  # other ranks share the main rank's lock and write nothing beside the output
    _ensure_host(registry)
    started = time.perf_counter()
    state = RunState(stages=resolved.stages, exporters=exporters, gguf_file=gguf_file,
                     checkpoint_dir=atomic.checkpoint_dir, resume=resume,
                     recipe_dict=distributed.record(info, resolved.to_dict()), plan=plan, reporter=reporter,
                     is_main=info.is_main)
    ctx = StageContext(recipe=resolved.recipe, model_path=model_path, data_path=data_path,
                       log=distributed.main_only_log(reporter.log), run=state)
    with atomic as tmp, _hf_progress_bars(state.shows_bars), backend_logs(tmp / BACKEND_LOG):
        ctx.output_dir = tmp
        for message in atomic.messages:
            ctx.log(message)
        if info.is_main and resolved.recipe.train is not None and force and not resume:
            discard_checkpoints(atomic.checkpoint_dir, ctx.log)
        seed_everything(resolved.recipe)
        if resolved.recipe.eval.perplexity and info.is_main and _quantizes_on_load(resolved):
            measure_baseline(registry, ctx, reporter)
            current: Any = run_stage(registry, "load", None, None, ctx, reporter)
        else:
            current = run_stage(registry, "load", None, None, ctx, reporter)
            if resolved.recipe.eval.check and info.is_main:
                from tunekit.run.checks.in_apply import capture_reference

                capture_reference(current, ctx)
            if resolved.recipe.eval.perplexity and info.is_main:
                ctx.run.phase = "before"
                current = run_stage(registry, "evaluate", None, current, ctx, reporter)
        for stage in ("context", "prune", "quantize", "adapter"):
            plugin = resolved.stages.get(STAGE_SLOT[stage])
            if plugin is not None:
                current = run_stage(registry, stage, plugin, current, ctx, reporter)
        if resolved.recipe.train is not None:
            current = run_stage(registry, "train", resolved.stages.get("adapter"), current, ctx, reporter)
        if info.is_main and (resolved.recipe.eval.perplexity or resolved.recipe.eval.tasks):
            ctx.run.phase = "after"
            current = run_stage(registry, "evaluate", None, current, ctx, reporter)
        sampler = resolved.stages.get("sampler")
        if sampler is not None:
            current = run_stage(registry, "sampler", sampler, current, ctx, reporter)
        if info.is_main and resolved.recipe.eval.check:
            current = run_stage(registry, "check", None, current, ctx, reporter)
        if info.is_main:
            ctx.record("run", seconds=round(time.perf_counter() - started, 2), peak_memory_mb=peak_memory_mb(),
                       size_mb_after=size_mb(current))
            current = run_stage(registry, "export", None, current, ctx, reporter)
            from tunekit.run.export import write_report

            write_report(ctx)
        else:
            atomic.discard()
    if info.is_main:
        reporter.done(out_path, ctx.metrics)
    return RunResult(output=out_path if info.is_main else None, metrics=ctx.metrics, plan=plan)

