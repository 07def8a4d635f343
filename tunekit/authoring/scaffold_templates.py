"""File templates for ``tunekit new-plugin`` (``string.Template``: ``$name``, ``$module``, ``$cls``, ...).

Each kind's plugin does a real, simple operation so the contract tests check something true: a
round-to-nearest fake-quant quantizer, a norm-tuning adapter (trains the RMSNorm weights only), linear
position interpolation, a per-row magnitude pruner and a temperature/top-p sampler.
"""

from __future__ import annotations

COMMON = {
    "pyproject": '''\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "$dist"
version = "0.1.0"
description = "$what (a tunekit $kind plugin)"
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["tunekit[torch]"]

[project.optional-dependencies]
test = ["pytest>=8"]

# tunekit finds the plugin through this entry point: group "tunekit", name = the plugin's name.
[project.entry-points.tunekit]
$name = "$module"

[tool.setuptools.packages.find]
where = ["src"]

[tool.pytest.ini_options]
testpaths = ["tests"]
''',
    "readme": '''\
# $dist

$what: a tunekit $kind plugin.

```bash
pip install -e .            # registers the entry point "$name" in group "tunekit"
tunekit plugins             # lists $kind '$name'
tunekit plugins show $name  # its parameters
pytest                      # tunekit's $kind contract + your own tests
```

Use it in a recipe:

```yaml
$kind: {method: $name}
```

Names: distribution `$dist`, import package `$module`, entry point and method `$name`.
While developing, `TUNEKIT_STRICT_PLUGINS=1 tunekit plugins` turns a load failure into a traceback.
''',
    "init": '''\
"""$dist: $what.

The ``$name`` entry point (group ``tunekit``) names this module. Keep it free of torch: tunekit
imports it for ``tunekit plugins`` and ``tunekit recommend``; heavy imports go inside ``apply``.
"""

from __future__ import annotations

from tunekit import hookimpl
from tunekit.core.kinds import $base

from $module.plugin import $cls

__all__ = ["$cls"]


@hookimpl
def $hook() -> list[type[$base]]:
    return [$cls]
''',
    "tests": '''\
"""tunekit's contract for $kind plugins, run against $cls (add your own tests below)."""

from __future__ import annotations

from tunekit.testing import $contract

from $module import $cls


class Test$cls($contract):
    plugin_class = $cls
    params: dict = {}  # params the apply checks use (the defaults when empty)
''',
}

_QUANTIZER = '''\
"""$cls: symmetric per-output-channel round-to-nearest, written back in the model's dtype (fake-quant)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from tunekit import Effects, PluginParams, Quantizer, Requirements

if TYPE_CHECKING:
    from tunekit import StageContext


class ${cls}Params(PluginParams):
    bits: int = Field(8, ge=2, le=8, description="Bits per weight after rounding")
    keep: tuple[str, ...] = Field(("lm_head",), description="Linear modules left unquantized (last name part)")


class $cls(Quantizer[${cls}Params]):
    name = "$name"
    summary = "$what"
    requires = Requirements(packages=("torch",), extra="torch")
    effects = Effects(quality_cost=0.01, notes=("fake-quant: weights stay in the model's dtype on disk",))
    trainable = True

    def bits_per_weight(self) -> float:
        return float(self.params.bits)  # + one 16-bit scale per row, negligible for wide layers

    def storage_bits_per_weight(self, dtype_bits: int = 16) -> float:
        return float(dtype_bits)  # dequantized back into the model's dtype

    def kept_16bit(self) -> tuple[str, ...]:
        return ("embed_tokens", *self.params.keep)

    def apply(self, model: Any, ctx: StageContext) -> Any:
        import torch

        from tunekit import UsageError

        levels = 2 ** (self.params.bits - 1) - 1
        done = 0
        with torch.no_grad():
            for name, module in model.named_modules():
                if isinstance(module, torch.nn.Linear) and name.rsplit(".", 1)[-1] not in self.params.keep:
                    w = module.weight
                    scale = w.abs().amax(dim=1, keepdim=True).clamp(min=1e-8) / levels
                    w.copy_((w / scale).round().clamp(-levels, levels) * scale)
                    done += 1
        if not done:
            raise UsageError(f"$name: no linear layer to quantize in {type(model).__name__}")
        ctx.record("quantize", method=self.name, layers=done, bits=self.params.bits)
        return model
'''

_ADAPTER = '''\
"""$cls: norm tuning, a tiny adapter that trains only the RMSNorm weights of a frozen model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from tunekit import Adapter, Effects, PluginParams, Requirements

if TYPE_CHECKING:
    from tunekit import ModelArch
    from tunekit import StageContext


class ${cls}Params(PluginParams):
    final_norm: bool = Field(True, description="Also train the norm after the last decoder layer")


class $cls(Adapter[${cls}Params]):
    name = "$name"
    summary = "$what"
    requires = Requirements(packages=("torch",), extra="torch")
    effects = Effects(quality_cost=0.0, notes=("trains 2 x hidden parameters per layer: cheap, limited capacity",))

    def trainable_params(self, arch: ModelArch) -> int:
        return arch.layers * 2 * arch.hidden + (arch.hidden if self.params.final_norm else 0)

    def apply(self, model: Any, ctx: StageContext) -> Any:
        from tunekit import UsageError

        model.requires_grad_(False)
        trained = 0
        for name, param in model.named_parameters():
            in_layer = "layernorm" in name and ".layers." in name
            if in_layer or (self.params.final_norm and name.endswith("model.norm.weight")):
                param.requires_grad_(True)
                trained += param.numel()
        if not trained:
            raise UsageError(f"$name: no RMSNorm weights found in {type(model).__name__}")
        ctx.record("adapter", method=self.name, trainable_params=trained)
        return model
'''

_CONTEXT = '''\
"""$cls: linear position interpolation (positions divided by the factor) through rope_parameters."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from tunekit import ContextExtender, Effects, PluginParams, Requirements

if TYPE_CHECKING:
    from tunekit import ModelArch
    from tunekit import StageContext


class ${cls}Params(PluginParams):
    factor: float = Field(2.0, ge=1.0, le=16.0, description="How many times the trained context to reach")


class $cls(ContextExtender[${cls}Params]):
    name = "$name"
    summary = "$what"
    requires = Requirements(packages=("torch", "transformers"), extra="torch")
    effects = Effects(quality_cost=0.05, notes=("fine-tune a few hundred steps at the new length for best results",))

    def factor_for(self, arch: ModelArch) -> float:
        return self.params.factor

    def apply(self, model: Any, ctx: StageContext) -> Any:
        from tunekit import UsageError

        config = model.config
        rope = dict(getattr(config, "rope_parameters", None) or {})
        if "rope_theta" not in rope:
            raise UsageError(f"$name: {type(model).__name__} has no rotary position embeddings to scale")
        # transformers 5: rope_theta must stay inside rope_parameters, next to the scaling.
        config.rope_parameters = {**rope, "rope_type": "linear", "factor": self.params.factor}
        rebuilt = 0
        for name, module in list(model.named_modules()):
            if name.endswith("rotary_emb"):
                parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
                setattr(parent, name.rpartition(".")[2], type(module)(config=config))
                rebuilt += 1
        if not rebuilt:
            raise UsageError(f"$name: found no rotary embedding module in {type(model).__name__}")
        ctx.record("context", method=self.name, factor=self.params.factor)
        return model
'''

_PRUNER = '''\
"""$cls: zeroes the smallest-magnitude weights of each output row of the chosen linear layers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from tunekit import Effects, PluginParams, Pruner, Requirements

if TYPE_CHECKING:
    from tunekit import StageContext


class ${cls}Params(PluginParams):
    sparsity: float = Field(0.5, gt=0.0, lt=1.0, description="Fraction of each row's weights set to zero")
    targets: tuple[str, ...] = Field(("gate_proj", "up_proj", "down_proj"),
                                     description="Linear modules to prune (last name part)")


class $cls(Pruner[${cls}Params]):
    name = "$name"
    summary = "$what"
    requires = Requirements(packages=("torch",), extra="torch")
    effects = Effects(quality_cost=0.3, notes=("magnitude pruning needs a healing fine-tune",))

    def sparsity(self) -> float:
        return self.params.sparsity

    def apply(self, model: Any, ctx: StageContext) -> Any:
        import torch

        from tunekit import UsageError

        pruned = 0
        with torch.no_grad():
            for name, module in model.named_modules():
                if isinstance(module, torch.nn.Linear) and name.rsplit(".", 1)[-1] in self.params.targets:
                    w = module.weight
                    k = int(w.shape[1] * self.params.sparsity)
                    if k:
                        drop = w.abs().topk(k, dim=1, largest=False).indices
                        w.scatter_(1, drop, 0.0)  # written into the weight: nothing to make permanent
                    pruned += 1
        if not pruned:
            raise UsageError(f"$name: no linear layer named {list(self.params.targets)} in {type(model).__name__}")
        ctx.record("prune", method=self.name, layers=pruned, sparsity=self.params.sparsity)
        return model
'''

_SAMPLER = '''\
"""$cls: temperature and nucleus (top-p) sampling as a transformers generation config."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from tunekit import Effects, PluginParams, Requirements, Sampler


class ${cls}Params(PluginParams):
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="Softmax temperature; 0 means greedy decoding")
    top_p: float = Field(0.9, gt=0.0, le=1.0, description="Keep the smallest token set with this probability mass")
    max_new_tokens: int = Field(256, ge=1, le=32768, description="Most tokens one reply may add")


class $cls(Sampler[${cls}Params]):
    name = "$name"
    summary = "$what"
    requires = Requirements(packages=("transformers",), extra="torch")
    effects = Effects()

    def generation_config(self) -> dict[str, Any]:
        p = self.params
        if p.temperature == 0:
            return {"do_sample": False, "max_new_tokens": p.max_new_tokens}
        return {"do_sample": True, "temperature": p.temperature, "top_p": p.top_p, "max_new_tokens": p.max_new_tokens}
'''

KIND_TEMPLATES: dict[str, dict[str, str]] = {
    "quantizer": {"base": "Quantizer", "hook": "tunekit_quantizers", "contract": "QuantizerContract",
                  "suffix": "Quantizer", "what": "Round-to-nearest per-channel weight quantization",
                  "plugin": _QUANTIZER},
    "adapter": {"base": "Adapter", "hook": "tunekit_adapters", "contract": "AdapterContract",
                "suffix": "Adapter", "what": "Norm tuning: train only the RMSNorm weights", "plugin": _ADAPTER},
    "context": {"base": "ContextExtender", "hook": "tunekit_context_extenders", "contract": "ContextContract",
                "suffix": "Extender", "what": "Linear RoPE position interpolation", "plugin": _CONTEXT},
    "pruner": {"base": "Pruner", "hook": "tunekit_pruners", "contract": "PrunerContract", "suffix": "Pruner",
               "what": "Per-row magnitude pruning of chosen linear layers", "plugin": _PRUNER},
    "sampler": {"base": "Sampler", "hook": "tunekit_samplers", "contract": "SamplerContract", "suffix": "Sampler",
                "what": "Temperature and top-p sampling", "plugin": _SAMPLER},
}
