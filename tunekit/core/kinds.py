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
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, cast, get_args

from pydantic import BaseModel, ConfigDict

from tunekit.core.errors import MissingDependencyError
from tunekit.core.kind_specs import BY_KIND, KIND_SPECS, RECIPE_KINDS

if TYPE_CHECKING:
    from tunekit.core.arch import ModelArch
    from tunekit.core.context import StageContext

KINDS = RECIPE_KINDS
"""Recipe slot names, in the order their pipeline stages run (``tunekit.core.kind_specs``)."""


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

    def install_hint(self, missing: list[str]) -> str:
        """The command that provides ``missing``: the declared extra, else the packages themselves."""
        return f"pip install 'tunekit[{self.extra}]'" if self.extra else "pip install " + " ".join(missing)


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


P = TypeVar("P", bound=PluginParams)
"""A plugin's ``Params`` model: ``class Rtn(Quantizer[RtnParams])`` types ``self.params`` as ``RtnParams``."""


class Plugin(Generic[P]):
    """Common shape of every plugin class.

    Generic over its parameters so ``self.params.bits`` type-checks: write ``class Mine(Quantizer[MyParams])``
    and ``Params`` is taken from the brackets (a class may still set ``Params`` itself, e.g. nested).
    """

    kind: ClassVar[str] = ""
    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    Params: ClassVar[type[PluginParams]] = PluginParams
    requires: ClassVar[Requirements] = Requirements()
    effects: ClassVar[Effects] = Effects()
    params: P

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "Params" in cls.__dict__:
            return
        for base in cls.__dict__.get("__orig_bases__", ()):
            named = [arg for arg in get_args(base) if isinstance(arg, type) and issubclass(arg, PluginParams)]
            if named:
                cls.Params = named[0]
                return

    def __init__(self, params: P | None = None) -> None:
        self.params = params if params is not None else cast(P, self.Params())

    @classmethod
    def check_requirements(cls, *, cuda_available: bool | None = None) -> None:
        """Raise a clear ``MissingDependencyError`` when this machine cannot run the plugin."""
        missing = cls.requires.missing_packages()
        if missing:
            hint = cls.requires.install_hint(missing)
            raise MissingDependencyError(f"{cls.kind} '{cls.name}' needs {', '.join(missing)}: {hint}")
        if cls.requires.cuda and cuda_available is False:
            raise MissingDependencyError(f"{cls.kind} '{cls.name}' needs a CUDA GPU; this machine has none")

    def needs(self) -> Requirements:
        """What this configured plugin needs to run: the class's ``requires`` unless some params need more.

        Why per instance: one plugin's params can need an optional package the class does not (the gguf
        exporter's K-quant types need llama.cpp), and a readiness hint from the class alone would say
        "ready" for a default that then fails.
        """
        return self.requires

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


class Quantizer(Plugin[P]):
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

    def prepare_loaded(self, model: Any, ctx: StageContext) -> Any:
        """Fix up a model ``from_pretrained(**load_kwargs)`` returned, before its first forward.

        Why a separate step from ``apply``: the load stage runs this right after loading, so a backend
        switch that a forward would make irreversible (bitsandbytes' CPU repack) is set before the
        "before" evaluation or anything else touches the model. Default: the model unchanged.
        """
        return model


class Adapter(Plugin[P]):
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


class ContextExtender(Plugin[P]):
    """Changes the positional encoding so the model reads longer inputs."""

    kind = "context"

    def factor_for(self, arch: ModelArch) -> float:
        """The scaling factor this plugin applies to ``arch``'s original context."""
        raise NotImplementedError

    def target_context(self, arch: ModelArch) -> int:
        return int(arch.max_context * self.factor_for(arch))


class Pruner(Plugin[P]):
    """Zeroes weights (unstructured or N:M)."""

    kind = "pruner"

    def sparsity(self) -> float:
        """Fraction of targeted weights set to zero."""
        raise NotImplementedError


class Sampler(Plugin[P]):
    """Decoding controls: produces the generation config a served model uses."""

    kind = "sampler"

    def generation_config(self) -> dict[str, Any]:
        """Keyword arguments for ``transformers.GenerationConfig``."""
        raise NotImplementedError

    def apply(self, model: Any, ctx: StageContext) -> Any:
        """Replace the model's generation config, keeping its special token ids (without ``eos_token_id``
        ``generate`` never stops: every completion runs to ``max_new_tokens``)."""
        from transformers import GenerationConfig

        ids = special_token_ids(getattr(model, "generation_config", None), ctx.tokenizer)
        model.generation_config = GenerationConfig(**{**ids, **self.generation_config()})
        return model


SPECIAL_TOKEN_KEYS = ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id")


def special_token_ids(generation_config: Any, tokenizer: Any) -> dict[str, Any]:
    """BOS/EOS/pad ids for a new generation config: the model's own (it may list several EOS ids, as
    Llama 3's end-of-turn and end-of-text), else the tokenizer's; pad falls back to EOS like ``generate``."""
    ids: dict[str, Any] = {}
    for key in SPECIAL_TOKEN_KEYS:
        value = getattr(generation_config, key, None)
        if value is None and key != "decoder_start_token_id":
            value = getattr(tokenizer, key, None)
        if value is not None:
            ids[key] = value
    if "pad_token_id" not in ids and "eos_token_id" in ids:
        eos = ids["eos_token_id"]
        ids["pad_token_id"] = eos[0] if isinstance(eos, list) else eos
    return ids


class Exporter(Plugin[P]):
    """Writes the finished model in one serving format (Hugging Face folder, GGUF, ...).

    Not a recipe stage slot: the recipe's ``output.formats`` names exporters (``hf``, ``gguf:q4_k_m``,
    ``{gguf: {type: q4_k_m}}``) and the pipeline calls each one's ``export`` after the model is final
    (see ``tunekit.core.formats.parse_format``). Declarations stay torch-free like every plugin's.
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


EXPORTER_KIND = BY_KIND["exporter"].kind
"""Kind name of exporters; kept out of ``KINDS`` because recipes do not have an exporter slot."""

BASES: dict[str, type[Plugin]] = {spec.kind: globals()[spec.base] for spec in KIND_SPECS}
