"""Base classes for the five kinds of plugin, and the torch-free declarations they make.

A plugin is a class: a ``name``, a pydantic ``Params`` model, declarations of what it needs and
what it does to memory and quality (read by the estimator and the recommender without importing
torch), and an ``apply`` method that does the real work with lazy imports. Built-in plugins and
third-party ones subclass the same bases and register through the same hooks.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from tunekit.errors import MissingDependencyError

if TYPE_CHECKING:
    from tunekit.arch import ModelArch
    from tunekit.context import StageContext

KINDS = ("quantizer", "adapter", "context", "pruner", "sampler")
"""Recipe slot names, in pipeline order of the stages that touch weights (sampler last)."""


class PluginParams(BaseModel):
    """Base of every plugin's ``Params``: unknown keys are errors, so typos never pass silently."""

    # defer_build: the schema is built on first validation, so listing plugins (recommend, --help) does not
    # pay for the schemas of plugins it never validates.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


@dataclass(frozen=True)
class Requirements:
    """What a plugin needs from the machine, declared without importing anything heavy.

    ``packages`` are import names checked with ``importlib.util.find_spec``; ``extra`` names the
    ``pip install tunekit[extra]`` that provides them, so the error can say what to run.
    """

    packages: tuple[str, ...] = ()
    extra: str | None = None
    cuda: bool = False
    calibration: bool = False
    bf16: bool = False

    def missing_packages(self) -> list[str]:
        return [name for name in self.packages if importlib.util.find_spec(name) is None]


@dataclass(frozen=True)
class Effects:
    """What a plugin does to memory, speed and quality, for the recommender's ranking.

    ``quality_cost`` is the expected relative perplexity increase at default params (0.02 = +2%),
    from published numbers (cite them where the plugin sets it). ``speedup`` is decode throughput
    relative to the 16-bit model. ``notes`` are shown as reasons.
    """

    quality_cost: float = 0.0
    speedup: float = 1.0
    notes: tuple[str, ...] = field(default=())


class Plugin:
    """Common shape of every plugin class."""

    kind: ClassVar[str] = ""
    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    Params: ClassVar[type[PluginParams]] = PluginParams
    requires: ClassVar[Requirements] = Requirements()
    effects: ClassVar[Effects] = Effects()

    def __init__(self, params: PluginParams | None = None) -> None:
        self.params = params if params is not None else self.Params()

    @classmethod
    def check_requirements(cls, *, cuda_available: bool | None = None) -> None:
        """Raise a clear ``MissingDependencyError`` when this machine cannot run the plugin."""
        missing = cls.requires.missing_packages()
        if missing:
            extra = cls.requires.extra
            hint = f"pip install 'tunekit[{extra}]'" if extra else "pip install " + " ".join(missing)
            raise MissingDependencyError(f"{cls.kind} '{cls.name}' needs {', '.join(missing)}: {hint}")
        if cls.requires.cuda and cuda_available is False:
            raise MissingDependencyError(f"{cls.kind} '{cls.name}' needs a CUDA GPU; this machine has none")

    def describe(self) -> dict[str, Any]:
        """Plain-data view for plans, model cards and ``--json`` output."""
        return {"kind": self.kind, "method": self.name, **self.params.model_dump(mode="json")}

    def apply(self, model: Any, ctx: StageContext) -> Any:
        """Do the real operation on a loaded model and return the (possibly new) model."""
        raise NotImplementedError

    def save(self, model: Any, out_dir: Path, ctx: StageContext) -> bool:
        """Write the model into ``out_dir`` in the plugin's own format (GPTQModel does); return True when
        done so the pipeline skips ``save_pretrained``. The default, False, lets the pipeline save it."""
        return False


class Quantizer(Plugin):
    """Reduces the bits of the weights.

    Post-training quantizers (GPTQ, AWQ, RTN) implement ``apply`` on a loaded model; quantize-on-load
    ones (bitsandbytes) return ``load_kwargs`` for ``from_pretrained`` and set ``on_load = True``.
    """

    kind = "quantizer"
    on_load: ClassVar[bool] = False
    trainable: ClassVar[bool] = False
    """Whether PEFT can train an adapter on top of this quantized base (QLoRA)."""

    def bits_per_weight(self) -> float:
        """Effective bits per quantized linear weight, scales and zeros included."""
        raise NotImplementedError

    def storage_bits_per_weight(self, dtype_bits: int = 16) -> float:
        """Bits per quantized weight in the saved output. Equal to ``bits_per_weight`` for packed
        formats; a fake-quant method (weights rounded, then stored dequantized) returns ``dtype_bits``."""
        return self.bits_per_weight()

    def kept_16bit(self) -> tuple[str, ...]:
        """Modules left in 16-bit (their weights count at 16 bits in the estimate)."""
        return ("embed_tokens", "lm_head")

    def load_kwargs(self, ctx: StageContext) -> dict[str, Any]:
        """Extra ``from_pretrained`` kwargs for quantize-on-load methods."""
        return {}

    output_formats: ClassVar[frozenset[str] | None] = None
    """The ``output.formats`` this quantizer's model can be written as; None: any. A plugin whose model
    ``save_pretrained`` cannot write (dynamic int8) names only the format its own ``save`` writes."""

    @classmethod
    def load_saved(cls, folder: Path, params: PluginParams) -> Any:
        """Reload a model this plugin's ``save`` wrote in its own (non-``from_pretrained``) format;
        ``tunekit generate``/``bench`` call it for a folder without weight files the transformers way."""
        raise NotImplementedError(f"quantizer '{cls.name}' writes folders that from_pretrained loads")


class Adapter(Plugin):
    """Adds a small trainable module to a frozen base (LoRA and friends)."""

    kind = "adapter"

    def trainable_params(self, arch: ModelArch) -> int:
        """How many parameters this adapter trains on ``arch`` (declared, checked against PEFT)."""
        raise NotImplementedError

    def optimizer(self, model: Any, lr: float, weight_decay: float) -> Any | None:
        """A custom optimizer (LoRA+, LoRA-FA) or None for the trainer's default."""
        return None

    def merge(self, model: Any, ctx: StageContext) -> Any:
        """``model`` (wrapped by :meth:`apply`, maybe trained) as a plain model with the adapter folded in,
        for ``output.merge`` / the ``merged`` format. Override when folding in place would be wrong."""
        return model.merge_and_unload()


class ContextExtender(Plugin):
    """Changes the positional encoding so the model reads longer inputs."""

    kind = "context"

    def factor_for(self, arch: ModelArch) -> float:
        """The scaling factor this plugin applies to ``arch``'s original context."""
        raise NotImplementedError

    def target_context(self, arch: ModelArch) -> int:
        return int(arch.max_context * self.factor_for(arch))


class Pruner(Plugin):
    """Zeroes weights (unstructured or N:M)."""

    kind = "pruner"

    def sparsity(self) -> float:
        """Fraction of targeted weights set to zero."""
        raise NotImplementedError


class Sampler(Plugin):
    """Decoding controls: produces the generation config a served model uses."""

    kind = "sampler"

    def generation_config(self) -> dict[str, Any]:
        """Keyword arguments for ``transformers.GenerationConfig``."""
        raise NotImplementedError

    def apply(self, model: Any, ctx: StageContext) -> Any:
        from transformers import GenerationConfig

        model.generation_config = GenerationConfig(**self.generation_config())
        return model


class Exporter(Plugin):
    """Writes the finished model in one serving format (Hugging Face folder, GGUF, ...).

    Not a recipe stage slot: the recipe's ``output.formats`` names exporters (``hf``, ``gguf:q4_k_m``,
    ``{gguf: {type: q4_k_m}}``) and the pipeline calls each one's ``export`` after the model is final
    (see ``tunekit.exporters.parse_formats``). Declarations stay torch-free like every plugin's.
    """

    kind = "exporter"
    shorthand_field: ClassVar[str | None] = None
    """The Params field that the ``name:VALUE`` shorthand in ``output.formats`` sets (e.g. ``type``)."""

    def export(self, model: Any, tokenizer: Any, out_dir: Path, ctx: StageContext) -> dict[str, Any]:
        """Write this format under ``out_dir``; return plain data for metrics.json and the model card
        (paths written, sizes, measured numbers)."""
        raise NotImplementedError

    def apply(self, model: Any, ctx: StageContext) -> Any:
        """Exporters are not weight stages; ``export`` is their entry point."""
        raise NotImplementedError(f"exporter '{self.name}' runs through export(), not apply()")


EXPORTER_KIND = "exporter"
"""Kind name of exporters; kept out of ``KINDS`` because recipes do not have an exporter slot."""

BASES: dict[str, type[Plugin]] = {
    "quantizer": Quantizer,
    "adapter": Adapter,
    "context": ContextExtender,
    "pruner": Pruner,
    "sampler": Sampler,
    "exporter": Exporter,
}
