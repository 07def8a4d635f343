"""Supervised fine-tuning of an adapter with transformers' Trainer (torch imported inside functions).

The Trainer gives checkpoints with optimizer and scheduler state, ``resume_from_checkpoint`` that
continues the step count and the logged loss curve, gradient accumulation, mixed precision and
accelerate/DDP/FSDP for free; tunekit adds the data (``train_data``), the adapter's own optimizer
(LoRA+, LoRA-FA), a progress line with loss and tokens/s, and the numbers recorded for the report.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunekit.core.errors import UsageError
from tunekit.core.resources import shipped_data_dir
from tunekit.run import train_data
from tunekit.run.checkpoints import completion_callback, latest_complete
from tunekit.run.measure import peak_memory_mb

if TYPE_CHECKING:
    from tunekit.core.context import StageContext
    from tunekit.core.kinds import Adapter
    from tunekit.core.recipe_model import TrainSection

OPTIMIZERS = {"adamw": "adamw_torch", "adamw-8bit": "adamw_bnb_8bit", "paged-adamw": "paged_adamw_32bit",
              "paged-adamw-8bit": "paged_adamw_8bit", "sgd": "sgd"}
"""Recipe optimizer names -> transformers ``optim`` names."""


def data_path(ctx: StageContext) -> Path:
    """``--data`` wins over the recipe's ``train.data``; a bare name that is not a file may be a shipped one."""
    section = ctx.recipe.train
    chosen = ctx.data_path or (section.data if section else None)
    if not chosen:
        raise UsageError("training needs data: set train.data in the recipe or pass --data FILE")
    path = Path(chosen)
    shipped = shipped_data_dir() / path
    if not path.exists() and len(path.parts) == 1 and shipped.is_file():
        return shipped  # a recipe names shipped data by file name: train.data: austen_instruct.jsonl
    return path


def checkpoint_dir(ctx: StageContext) -> Path:
    """Where checkpoints go: ``ctx.run.checkpoint_dir`` (the pipeline's stable place) or output/checkpoints."""
    if ctx.run.checkpoint_dir is not None:
        return ctx.run.checkpoint_dir
    if ctx.output_dir is None:
        raise UsageError("training needs an output directory for its checkpoints")
    return Path(ctx.output_dir) / "checkpoints"


def resume_from(ctx: StageContext, directory: Path) -> str | bool | None:
    """``ctx.run.resume``: True (latest checkpoint in ``directory``) or a checkpoint path."""
    resume = ctx.run.resume
    if not resume:
        return None
    if resume is True or resume == "latest":
        last = latest_complete(directory, ctx.log)
        if last is None:
            raise UsageError(f"--resume: no checkpoint in {directory} that finished saving")
        return str(last)
    if not Path(resume).is_dir():
        raise UsageError(f"--resume: {resume} is not a checkpoint folder")
    return str(resume)


def precision_flags(section: TrainSection) -> dict[str, bool]:
    """bf16 where the GPU supports it, else fp16 on a GPU, fp32 on CPU; explicit choices are checked."""
    import torch

    cuda = torch.cuda.is_available()
    choice = section.precision
    if choice == "auto":
        choice = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if cuda else "fp32"
    if choice == "fp16" and not cuda:
        raise UsageError("train.precision fp16 needs a CUDA GPU; use fp32 or bf16 on CPU")
    return {"bf16": choice == "bf16", "fp16": choice == "fp16"}


def training_arguments(
    section: TrainSection, output: Path, has_eval: bool, extra: dict[str, Any] | None = None
) -> Any:
    """TrainingArguments from the recipe; ``extra`` (``ctx.run.training_args``) adds or overrides
    keyword arguments, e.g. what a distributed launch needs, without this module knowing about it."""
    import torch
    from transformers import TrainingArguments

    evaluating = has_eval and section.eval_steps is not None
    kwargs: dict[str, Any] = dict(
        output_dir=str(output),
        per_device_train_batch_size=section.batch_size,
        per_device_eval_batch_size=section.batch_size,
        gradient_accumulation_steps=section.grad_accum,
        num_train_epochs=section.epochs,
        max_steps=section.max_steps or -1,
        learning_rate=section.lr,
        lr_scheduler_type=section.scheduler,
        warmup_steps=section.warmup_steps,
        weight_decay=section.weight_decay,
        optim=OPTIMIZERS[section.optimizer],
        activation_checkpointing=section.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if section.gradient_checkpointing else None,
        eval_strategy="steps" if evaluating else "no",
        eval_steps=section.eval_steps if evaluating else None,
        save_strategy="steps" if section.save_steps else "no",
        save_steps=section.save_steps or 500,
        save_total_limit=section.save_total_limit,
        logging_steps=1,
        seed=section.seed,
        data_seed=section.seed,
        # packed rows carry no attention mask for the Trainer to count with; their padding is a row's tail
        include_num_input_tokens_seen="all" if section.pack_examples else "non_padding",
        report_to=list(section.report_to) or "none",
        disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(),
        dataloader_pin_memory=False,
        remove_unused_columns=False,
        # every trainable adapter weight takes part in each forward; the Trainer's default for a PeftModel
        # (True) costs an extra autograd traversal per step and clashes with gradient checkpointing
        ddp_find_unused_parameters=False,
        # tunekit reads the eval loss only; without this the evaluation loop keeps every batch's logits
        prediction_loss_only=True,
        **precision_flags(section),
    )
    return TrainingArguments(**{**kwargs, **(extra or {})})


def _round(value: float | None) -> float | None:
    return round(value, 5) if value is not None else None


def _perplexity(loss: float | None) -> float | None:
    return round(math.exp(loss), 4) if loss is not None else None


def gathered_state_dict(trainer: Any) -> dict[str, Any] | None:
    """The full weights when FSDP or ZeRO-3 sharded them over the processes, else None.

    Every rank must call this (gathering is a collective); rank 0 gets the whole state dict, which the
    export stage passes to ``save_pretrained`` because the model object on rank 0 holds only its shard
    (ZeRO-3: this needs ``distributed.zero_save_16bit``, which the launch config writes by default).
    """
    accelerator = trainer.accelerator
    zero3 = trainer.is_deepspeed_enabled and accelerator.deepspeed_config["zero_optimization"]["stage"] == 3
    if not (trainer.is_fsdp_enabled or zero3):
        return None
    return dict(accelerator.get_state_dict(trainer.model))


def train(model: Any, ctx: StageContext, adapter: Adapter | None = None) -> Any:
    """Fine-tune ``model`` as the recipe's ``train`` section says: the adapter's weights when the adapter
    stage wrapped it, else the model's own (full fine-tuning, ``train.trainable`` narrowing it)."""
    import torch
    from transformers import PrinterCallback, set_seed

    from tunekit.run.train_loss import MemoryOptionsTrainer
    from tunekit.run.train_progress import ProgressCallback, collate

    section = ctx.recipe.train
    if section is None:
        return model
    if ctx.tokenizer is None:
        raise UsageError("training needs the model's tokenizer")
    set_seed(section.seed)
    if adapter is None:
        from tunekit.run.full_finetune import select_trainable

        trained, total = select_trainable(model, section.trainable)
        ctx.log(f"full fine-tuning: {trained:,} of {total:,} weights train ({100 * trained / total:.1f}%)")
    data = train_data.build(section, ctx.tokenizer, data_path(ctx))
    packed = f" packed into {len(data.train)} rows" if data.packed_from is not None else ""
    ctx.log(f"train: {data.packed_from or len(data.train)} {data.kind} examples{packed} ({data.tokens():,} tokens), "
            f"{len(data.eval)} held out")
    output = checkpoint_dir(ctx)
    resume = resume_from(ctx, output)
    args = training_arguments(section, output, bool(data.eval), ctx.run.training_args)
    custom = adapter.optimizer(model, section.lr, section.weight_decay) if adapter is not None else None
    pad_id = ctx.tokenizer.pad_token_id if ctx.tokenizer.pad_token_id is not None else ctx.tokenizer.eos_token_id
    trainer = MemoryOptionsTrainer(
        chunked_loss=section.chunked_loss, activation_offload=section.activation_offload,
        model=model, args=args, train_dataset=data.train, eval_dataset=data.eval or None,
        data_collator=lambda batch: collate(batch, pad_id),
        optimizers=(custom, None),
        callbacks=[ProgressCallback(ctx.log, quiet=not ctx.run.shows_bars), completion_callback()],
    )
    trainer.remove_callback(PrinterCallback)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    eval_before = trainer.evaluate()["eval_loss"] if data.eval and not resume else None
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume)
    seconds = time.perf_counter() - started
    gathered = gathered_state_dict(trainer)
    if gathered is not None:
        ctx.run.state_dict = gathered
    history = trainer.state.log_history
    evals = [h for h in history if "eval_loss" in h]
    eval_loss = None
    if data.eval:
        last = evals[-1] if evals and evals[-1]["step"] == trainer.state.global_step else None
        eval_loss = last["eval_loss"] if last else trainer.evaluate()["eval_loss"]
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    ctx.record(
        "train",
        full_finetune=adapter is None,
        chunked_loss=section.chunked_loss,
        activation_offload=section.activation_offload,
        steps=trainer.state.global_step,
        resumed_from=str(resume) if resume else None,
        loss_curve=[[h["step"], round(h["loss"], 5)] for h in history if "loss" in h],
        eval_curve=[[h["step"], round(h["eval_loss"], 5)] for h in history if "eval_loss" in h],
        train_loss=round(result.training_loss, 5),
        eval_loss_before=_round(eval_before),
        eval_perplexity_before=_perplexity(eval_before),
        eval_loss=_round(eval_loss),
        eval_perplexity=_perplexity(eval_loss),
        trainable_params=trainable,
        examples=data.packed_from or len(data.train),
        packed_rows=len(data.train) if data.packed_from is not None else None,
        held_out=len(data.eval),
        tokens_seen=int(trainer.state.num_input_tokens_seen),
        time_s=round(seconds, 2),
        peak_memory_mb=round(peak_memory_mb(), 1),
    )
    model.eval()
    return model
