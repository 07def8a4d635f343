"""Contract tests every plugin kind passes (see :mod:`tunekit.testing` for how a plugin's tests use them)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tunekit.core.context import StageContext
from tunekit.core.errors import MissingDependencyError, RecipeError, TunekitError
from tunekit.core.kinds import (
    BASES,
    ContextExtender,
    Effects,
    Plugin,
    PluginParams,
    Pruner,
    Quantizer,
    Requirements,
    Sampler,
)
from tunekit.testing.builders import (
    TINY_LLAMA,
    build_tiny_model,
    build_tokenizer,
    decoder_linears,
    make_context,
    registry_with,
    save_tiny_model,
    saved_bits_per_weight,
)

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


class PluginContract:
    """Checks every plugin kind shares. Subclass a kind's contract, not this one."""

    plugin_class: ClassVar[type[Plugin]]
    params: ClassVar[dict[str, Any]] = {}
    """Params for the checks that run ``apply`` (defaults when empty)."""
    check_torch_free: ClassVar[bool] = True
    """Import the plugin's module in a fresh interpreter and fail if torch/transformers came with it."""
    kind: ClassVar[str] = ""

    # fixtures the contract tests use, carried by the class so a subclass needs no conftest
    @pytest.fixture
    def tiny_model(self) -> Any:
        return build_tiny_model()

    @pytest.fixture
    def tiny_model_dir(self, tmp_path: Path) -> Path:
        return save_tiny_model(tmp_path / "tiny-llama")

    def make_plugin(self, **overrides: Any) -> Plugin:
        cls = self.plugin_class
        return cls(cls.Params.model_validate({**self.params, **overrides}))

    # -- naming and params -----------------------------------------------------------------
    def test_kind_and_name(self) -> None:
        cls = self.plugin_class
        assert issubclass(cls, BASES[self.kind]), f"{cls.__name__} must subclass tunekit.core.kinds.{BASES[self.kind]}"
        assert isinstance(cls.name, str) and _NAME_RE.match(cls.name), f"invalid plugin name {cls.name!r}"
        assert cls.summary.strip(), "summary is shown by `tunekit plugins`: say what the plugin does"

    def test_params_schema(self) -> None:
        from pydantic import ValidationError

        params_cls = self.plugin_class.Params
        assert issubclass(params_cls, PluginParams), "Params must subclass tunekit.core.kinds.PluginParams"
        assert params_cls.model_config.get("extra") == "forbid", "Params must forbid unknown keys"
        undocumented = [n for n, f in params_cls.model_fields.items() if not (f.description or "").strip()]
        assert not undocumented, f"Params fields without a description: {undocumented}"
        params_cls()  # defaults are valid
        params_cls.model_validate(self.params)
        with pytest.raises(ValidationError):
            params_cls.model_validate({"no_such_param_xyz": 1})
        json.dumps(params_cls.model_json_schema())
        json.dumps(self.make_plugin().describe())

    def test_declarations_are_plain_data(self) -> None:
        cls = self.plugin_class
        assert isinstance(cls.requires, Requirements) and isinstance(cls.effects, Effects)
        assert all(isinstance(p, str) for p in cls.requires.packages)
        assert cls.effects.quality_cost >= 0, "quality_cost is a relative perplexity increase (>= 0)"
        assert cls.effects.speedup > 0
        assert all(isinstance(n, str) for n in cls.effects.notes)

    def test_module_imports_without_torch(self) -> None:
        if not self.check_torch_free:
            pytest.skip("torch-free import checked elsewhere")
        cls = self.plugin_class
        code = (f"import sys; import {cls.__module__} as m; getattr(m, {cls.__qualname__!r}); "
                "heavy = [n for n in ('torch', 'transformers', 'peft') if n in sys.modules]; "
                "print(','.join(heavy))")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        assert not done.stdout.strip(), f"importing {cls.__module__} imported {done.stdout.strip()}; import it in apply"

    # -- recipes and errors ----------------------------------------------------------------
    def test_loads_through_a_recipe(self, tmp_path: Path) -> None:
        import yaml

        from tunekit.core.recipe import load_recipe

        cls = self.plugin_class
        registry = registry_with(cls)
        assert not registry.failures, registry.failures
        recipe = tmp_path / "contract.yaml"
        recipe.write_text(yaml.safe_dump({"name": "contract", self.kind: {"method": cls.name, **self.params}}))
        resolved = load_recipe(recipe, registry=registry)
        assert isinstance(resolved.stages[self.kind], cls)
        recipe.write_text(yaml.safe_dump({"name": "contract", self.kind: {"method": cls.name, "no_such_param_xyz": 1}}))
        with pytest.raises(RecipeError) as info:
            load_recipe(recipe, registry=registry)
        assert "no_such_param_xyz" in str(info.value)

    def test_missing_package_is_a_tunekit_error(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import importlib.util

        packages = self.plugin_class.requires.packages
        if not packages:
            pytest.skip("declares no packages")
        real = importlib.util.find_spec
        monkeypatch.setattr(importlib.util, "find_spec",
                            lambda name, *a, **k: None if name in packages else real(name, *a, **k))
        with pytest.raises(MissingDependencyError):
            self.plugin_class.check_requirements()

    def load_model(self, plugin: Plugin | None, model_dir: Path, ctx: StageContext) -> Any:
        """Load ``model_dir`` the way the pipeline does (with a quantize-on-load plugin's kwargs)."""
        from transformers import AutoModelForCausalLM

        if isinstance(plugin, Quantizer) and plugin.on_load:
            model = AutoModelForCausalLM.from_pretrained(model_dir, **plugin.load_kwargs(ctx))
            return plugin.prepare_loaded(model, ctx).eval()
        return AutoModelForCausalLM.from_pretrained(model_dir).eval()

    def test_unsupported_model_raises_a_tunekit_error(self, tmp_path: Path) -> None:
        """A model the plugin cannot handle (GPT-2: Conv1D layers, learned positions) either works or
        raises a TunekitError that the CLI can print as one line; never a raw Python exception."""
        from transformers import GPT2Config, GPT2LMHeadModel

        folder = tmp_path / "gpt2"
        GPT2LMHeadModel(GPT2Config(n_embd=128, n_layer=1, n_head=4, vocab_size=512, n_positions=256,
                                   bos_token_id=0, eos_token_id=1)).save_pretrained(
            folder)
        build_tokenizer().save_pretrained(folder)
        plugin = self.make_plugin()
        ctx = make_context(folder, arch=None, output_dir=tmp_path / "out")
        try:
            plugin.apply(self.load_model(plugin, folder, ctx), ctx)
        except TunekitError:
            pass
        except Exception as exc:
            pytest.fail(f"{type(exc).__name__} instead of a tunekit error on an unsupported model: {exc}")


class QuantizerContract(PluginContract):
    """Declared bits per weight against what the saved output really spends."""

    kind = "quantizer"
    bits_tolerance: ClassVar[float] = 0.10

    def test_bits_declared(self) -> None:
        plugin = self.make_plugin()
        assert isinstance(plugin, Quantizer)
        bits = float(plugin.bits_per_weight())
        assert 0 < bits <= 32
        assert 0 < float(plugin.storage_bits_per_weight(16)) <= 32
        assert all(isinstance(name, str) for name in plugin.kept_16bit())

    def test_apply_matches_declared_bits(self, tiny_model_dir: Path, tmp_path: Path) -> None:
        import torch

        from tunekit.core.quantization import is_kept

        plugin = self.make_plugin()
        assert isinstance(plugin, Quantizer)
        ctx = make_context(tiny_model_dir, output_dir=tmp_path / "out")
        dense = self.load_model(None, tiny_model_dir, ctx)
        ids = torch.tensor([build_tokenizer()("It is a truth universally acknowledged, " * 4)["input_ids"][:48]])
        with torch.no_grad():
            reference = dense(ids).logits.float()
        counts = {name: m.in_features * m.out_features for name, m in decoder_linears(dense).items()
                  if not is_kept(name, plugin.kept_16bit())}
        model = plugin.apply(self.load_model(plugin, tiny_model_dir, ctx), ctx)
        with torch.no_grad():
            out = model(ids).logits.float()
        assert torch.isfinite(out).all(), "quantized model produced non-finite logits"
        error = float((out - reference).norm() / reference.norm())
        assert 0 < error < 1.0, f"relative logit error {error:.3g}: nothing quantized (0) or the model broke"
        saved = tmp_path / "saved"
        saved.mkdir(parents=True)
        if plugin.save(model, saved, ctx) and plugin.output_formats is not None:
            # Its own format (not from_pretrained): it must reload to the same model; its tests measure bits.
            reloaded = type(plugin).load_saved(saved, plugin.params)
            with torch.no_grad():
                again = reloaded(ids).logits.float()
            assert torch.allclose(again, out, atol=1e-5), "the plugin's own saved format reloads to another model"
            return
        if not any(saved.glob("*.safetensors")):
            model.save_pretrained(saved)
        dtype_bits = torch.finfo(dense.dtype).bits
        measured = saved_bits_per_weight(saved, counts)
        declared = float(plugin.storage_bits_per_weight(dtype_bits))
        assert measured == pytest.approx(declared, rel=self.bits_tolerance), (
            f"saved output spends {measured:.3f} bits/weight; plugin declares {declared:.3f}")


class AdapterContract(PluginContract):
    """Declared trainable parameters against the real count after ``apply``; training moves only them."""

    kind = "adapter"

    def test_trainable_params_match(self, tiny_model: Any, tmp_path: Path) -> None:
        import torch

        from tunekit.core.kinds import Adapter

        plugin = self.make_plugin()
        assert isinstance(plugin, Adapter)
        ctx = make_context(None, model=tiny_model, output_dir=tmp_path / "out")
        assert ctx.arch is not None
        declared = int(plugin.trainable_params(ctx.arch))
        model = plugin.apply(tiny_model, ctx)
        trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
        real = sum(p.numel() for p in trainable.values())
        assert real == declared, f"apply made {real:,} parameters trainable; trainable_params() declares {declared:,}"
        model.train()
        ids = torch.tensor([build_tokenizer()("She was the youngest of the two daughters " * 3)["input_ids"][:32]])
        loss = model(input_ids=ids, labels=ids).loss
        assert torch.isfinite(loss)
        loss.backward()
        assert any(p.grad is not None for p in trainable.values()), "no trainable parameter received a gradient"
        frozen_grads = [n for n, p in model.named_parameters() if not p.requires_grad and p.grad is not None]
        assert not frozen_grads


class ContextContract(PluginContract):
    """The declared factor lands in ``config.rope_parameters``, and longer inputs run."""

    kind = "context"

    def test_factor_applied_to_rope_parameters(self, tiny_model: Any, tmp_path: Path) -> None:
        import torch

        plugin = self.make_plugin()
        assert isinstance(plugin, ContextExtender)
        ctx = make_context(None, model=tiny_model, output_dir=tmp_path / "out")
        assert ctx.arch is not None
        factor = float(plugin.factor_for(ctx.arch))
        assert factor >= 1.0
        theta = ctx.arch.rope_theta
        model = plugin.apply(tiny_model, ctx)
        rope = model.config.rope_parameters
        assert rope.get("rope_theta"), "rope_theta must stay inside rope_parameters (transformers 5)"
        if factor > 1.0:
            assert rope.get("rope_type") not in (None, "default"), "a scaling factor needs a rope_type"
            assert float(rope.get("factor", 0.0)) == pytest.approx(factor), (
                f"rope_parameters {rope} do not carry the declared factor {factor}")
        else:
            assert float(rope.get("rope_theta")) == pytest.approx(theta) or rope.get("rope_type") != "default"
        length = min(int(ctx.arch.max_context * max(factor, 1.0)), 4 * ctx.arch.max_context)
        ids = torch.randint(3, TINY_LLAMA["vocab_size"], (1, length))
        with torch.no_grad():
            logits = model(ids).logits
        assert logits.shape[1] == length and torch.isfinite(logits).all()


class PrunerContract(PluginContract):
    """Declared sparsity against the zeros ``apply`` leaves, made permanent (they survive a reload)."""

    kind = "pruner"
    sparsity_tolerance: ClassVar[float] = 0.02

    def test_sparsity_achieved_and_permanent(self, tiny_model: Any, tmp_path: Path) -> None:
        from transformers import AutoModelForCausalLM

        plugin = self.make_plugin()
        assert isinstance(plugin, Pruner)
        declared = float(plugin.sparsity())
        assert 0 < declared < 1
        ctx = make_context(None, model=tiny_model, output_dir=tmp_path / "out")
        model = plugin.apply(tiny_model, ctx)
        leftovers = [k for k in model.state_dict() if k.endswith(("weight_orig", "weight_mask"))
                     or ".parametrizations." in k]
        assert not leftovers, f"pruning not made permanent (torch.nn.utils.prune.remove): {leftovers[:3]}"

        def zeros(m: Any) -> dict[str, tuple[int, int]]:
            return {n: (int((lin.weight == 0).sum()), lin.weight.numel()) for n, lin in decoder_linears(m).items()}

        counted = {n: c for n, c in zeros(model).items() if c[0] > 0}
        assert counted, "no decoder linear has a single zero weight after apply"
        achieved = sum(z for z, _ in counted.values()) / sum(t for _, t in counted.values())
        assert achieved == pytest.approx(declared, abs=self.sparsity_tolerance), (
            f"achieved sparsity {achieved:.3f} over the pruned layers; plugin declares {declared:.3f}")
        model.save_pretrained(tmp_path / "pruned")
        reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "pruned")
        assert {n: c for n, c in zeros(reloaded).items() if c[0] > 0} == counted, "zeros lost on reload"


class SamplerContract(PluginContract):
    """The generation config is one transformers accepts, and ``apply`` installs it on the model."""

    kind = "sampler"

    def test_generation_config_is_valid(self, tiny_model: Any) -> None:
        from transformers import GenerationConfig

        plugin = self.make_plugin()
        assert isinstance(plugin, Sampler)
        values = plugin.generation_config()
        json.dumps(values)
        config = GenerationConfig(**values)
        config.validate(strict=True)
        model = plugin.apply(tiny_model, make_context(None, model=tiny_model))
        for key, value in values.items():
            assert getattr(model.generation_config, key) == value, f"generation_config.{key} not applied"

    def test_unsupported_model_raises_a_tunekit_error(self, tmp_path: Path) -> None:
        pytest.skip("a sampler does not depend on the architecture")
