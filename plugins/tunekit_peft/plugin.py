"""Adapter plugin classes over PEFT: declarations only, torch-free.

Each class says which parameters it trains for a given architecture (the estimator's input), so the
count can be checked against PEFT's own without loading weights. The real work is in ``build``,
imported inside ``apply``/``optimizer`` so that listing plugins never imports torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

from pydantic import Field, field_validator

from tunekit import Adapter, Effects, ModelArch, PluginParams, Requirements
from tunekit.core.arch import ALL_LINEAR

if TYPE_CHECKING:
    from tunekit import StageContext

TARGET_GROUPS = ("attention", "mlp", "all-linear")

#: Linear modules that carry a bias, per ``model_type`` (Qwen2 keeps q/k/v biases; Llama/Mistral none).
BIASED_MODULES: dict[str, tuple[str, ...]] = {"qwen2": ("q_proj", "k_proj", "v_proj")}

#: Modules PEFT can fully train beside the adapter (``modules_to_save``), sized from the architecture.
SAVABLE_MODULES = ("embed_tokens", "lm_head")


class AdapterParams(PluginParams):
    """Fields every PEFT adapter here shares: which linears it wraps and how."""

    targets: str | list[str] = Field(
        "all-linear",
        description="attention, mlp, all-linear, or explicit module names (q_proj, v_proj, ...)",
    )
    bias: Literal["none", "all", "lora_only"] = Field("none", description="Which biases to train")
    modules_to_save: list[str] = Field(
        default_factory=list, description="Modules trained in full beside the adapter (embed_tokens, lm_head)"
    )

    @field_validator("targets")
    @classmethod
    def _known_targets(cls, value: str | list[str]) -> str | list[str]:
        names = [value] if isinstance(value, str) else value
        if not names:
            raise ValueError("needs at least one target module")
        unknown = [n for n in names if n not in ALL_LINEAR and n not in TARGET_GROUPS]
        if unknown:
            raise ValueError(f"unknown target {unknown}; use {', '.join(TARGET_GROUPS)} or {', '.join(ALL_LINEAR)}")
        return value

    @field_validator("modules_to_save")
    @classmethod
    def _savable(cls, value: list[str]) -> list[str]:
        unknown = [n for n in value if n not in SAVABLE_MODULES]
        if unknown:
            raise ValueError(f"modules_to_save supports {', '.join(SAVABLE_MODULES)}; got {unknown}")
        return value


class LoraCommonParams(AdapterParams):
    r: int = Field(16, ge=1, le=4096, description="Rank of the update B·A")
    alpha: float = Field(32, gt=0, le=65536, description="Scale numerator: the update is scaled by alpha/r")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the adapter's input")
    use_rslora: bool = Field(False, description="rsLoRA: scale by alpha/sqrt(r), stable at high ranks")


Params_ = TypeVar("Params_", bound=AdapterParams)


class PeftAdapter(Adapter[Params_]):
    """Shared declarations: target resolution, bias and modules_to_save counts, QLoRA preparation."""

    requires = Requirements(packages=("peft", "torch", "transformers"), extra="peft")
    #: LoRA-FA keeps every lora_A at its random init (frozen at attach time, so counts match the declaration)
    freeze_a: ClassVar[bool] = False

    def targets(self, arch: ModelArch) -> list[str]:
        return arch.resolve_targets(self.params.targets)

    def _extra_trainable(self, arch: ModelArch) -> int:
        """Biases and fully trained modules that PEFT unfreezes beside the adapter."""
        bias_mode = self.params.bias
        biased = BIASED_MODULES.get(arch.family, ())
        shapes = arch.linear_shapes()
        if bias_mode == "all":
            with_bias = list(biased)
        elif bias_mode == "lora_only":
            with_bias = [m for m in self.targets(arch) if m in biased]
        else:
            with_bias = []
        total = arch.layers * sum(shapes[m][1] * arch.module_copies(m) for m in with_bias)
        return total + len(self.params.modules_to_save) * arch.vocab * arch.hidden

    def per_matrix(self, d_in: int, d_out: int) -> int:
        """Trainable parameters added to one adapted d_in x d_out matrix."""
        raise NotImplementedError

    def trainable_params(self, arch: ModelArch) -> int:
        shapes = arch.linear_shapes()
        adapted = sum(self.per_matrix(*shapes[m]) * arch.module_copies(m) for m in self.targets(arch))
        return arch.layers * adapted + self._extra_trainable(arch)

    def peft_config(self, arch: ModelArch) -> Any:
        """The PEFT config object for this adapter (imports peft)."""
        raise NotImplementedError

    def apply(self, model: Any, ctx: StageContext) -> Any:
        from tunekit_peft import build

        return build.attach(self, model, ctx)

    def merge(self, model: Any, ctx: StageContext) -> Any:
        from tunekit_peft import build

        return build.merge_for_export(model, ctx)


class Lora(PeftAdapter[LoraCommonParams]):
    """LoRA (Hu et al. 2021): trains B·A beside each frozen linear; rsLoRA and DoRA as switches."""

    name = "lora"
    summary = "LoRA low-rank adapter (PEFT); rsLoRA/DoRA switches; QLoRA on an NF4 base"
    effects = Effects(notes=("trains r·(d_in+d_out) per adapted matrix; base weights stay frozen",))

    class Params(LoraCommonParams):
        use_dora: bool = Field(False, description="DoRA: also train a per-output magnitude vector")

    @property
    def use_dora(self) -> bool:
        return bool(getattr(self.params, "use_dora", False))

    def per_matrix(self, d_in: int, d_out: int) -> int:
        p = self.params
        return p.r * (d_in + d_out) + (d_out if self.use_dora else 0)

    def peft_config(self, arch: ModelArch) -> Any:
        from peft import LoraConfig

        p = self.params
        return LoraConfig(
            r=p.r, lora_alpha=p.alpha, lora_dropout=p.dropout, target_modules=self.targets(arch), bias=p.bias,
            use_rslora=p.use_rslora, use_dora=self.use_dora, modules_to_save=list(p.modules_to_save) or None,
            task_type="CAUSAL_LM",
        )


class Dora(Lora):
    """DoRA (Liu et al. 2024) as its own name: LoRA on the direction plus a trained magnitude per output."""

    name = "dora"
    summary = "DoRA weight-decomposed LoRA (PEFT use_dora): +1 to +4 points over LoRA on commonsense tasks"
    effects = Effects(notes=("adds d_out magnitude parameters per adapted matrix; slower steps than LoRA",))

    class Params(LoraCommonParams):
        pass

    @property
    def use_dora(self) -> bool:
        return True


class LoraPlus(Lora):
    """LoRA+ (Hayou et al. 2024): same adapter, B learns ``loraplus_lr_ratio`` times faster than A."""

    name = "lora-plus"
    summary = "LoRA+ : LoRA with a higher learning rate for B (peft create_loraplus_optimizer)"
    effects = Effects(notes=("up to ~2x faster convergence than LoRA at the same cost",))

    class Params(LoraCommonParams):
        use_dora: bool = Field(False, description="DoRA: also train a per-output magnitude vector")
        loraplus_lr_ratio: float = Field(16.0, ge=1, le=1024, description="lr(B) / lr(A)")

    def optimizer(self, model: Any, lr: float, weight_decay: float) -> Any:
        import torch
        from peft.optimizers import create_loraplus_optimizer

        ratio = self.params.loraplus_lr_ratio  # type: ignore[attr-defined]
        return create_loraplus_optimizer(
            model, torch.optim.AdamW, lr=lr, loraplus_lr_ratio=ratio, loraplus_weight_decay=weight_decay
        )


class LoraFA(Lora):
    """LoRA-FA (Zhang et al. 2023): A stays at its random init, only B trains (less activation memory)."""

    name = "lora-fa"
    summary = "LoRA-FA: frozen A, trains B only (peft create_lorafa_optimizer); up to 1.4x less memory"
    effects = Effects(notes=("trains r·d_out per adapted matrix (A frozen)",))
    freeze_a = True

    class Params(LoraCommonParams):
        pass

    def per_matrix(self, d_in: int, d_out: int) -> int:
        return self.params.r * d_out

    def optimizer(self, model: Any, lr: float, weight_decay: float) -> Any:
        from peft.optimizers import create_lorafa_optimizer

        p = self.params
        return create_lorafa_optimizer(model, r=p.r, lora_alpha=p.alpha, lr=lr, weight_decay=weight_decay)


class VeraParams(AdapterParams):
    r: int = Field(256, ge=1, le=8192, description="Rank of the shared random projections")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the adapter's input")
    projection_prng_key: int = Field(0, ge=0, description="Seed of the shared random A and B")
    d_initial: float = Field(0.1, gt=0, le=10, description="Initial value of the d scaling vector")
    save_projection: bool = Field(True, description="Store A, B in the adapter (safe reload across torch)")


class Vera(PeftAdapter[VeraParams]):
    """VeRA (Kopiczko et al. 2024): one shared frozen random A, B pair; trains two scaling vectors per matrix."""

    name = "vera"
    summary = "VeRA vector-based random-matrix adaptation (PEFT VeraConfig): ~10x fewer parameters than LoRA"
    effects = Effects(notes=("trains d_out + r per adapted matrix; shared random projections are frozen",))

    def per_matrix(self, d_in: int, d_out: int) -> int:
        return d_out + self.params.r

    def peft_config(self, arch: ModelArch) -> Any:
        from peft import VeraConfig

        p = self.params
        return VeraConfig(
            r=p.r, target_modules=self.targets(arch), projection_prng_key=p.projection_prng_key,
            vera_dropout=p.dropout, d_initial=p.d_initial, save_projection=p.save_projection, bias=p.bias,
            modules_to_save=list(p.modules_to_save) or None, task_type="CAUSAL_LM",
        )


ADAPTERS: list[type[Adapter]] = [Lora, Dora, LoraPlus, LoraFA, Vera]
