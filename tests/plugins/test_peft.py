"""The PEFT adapter plugins: declared trainable counts equal PEFT's, each one trains, and what it saves reloads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import ValidationError
from train_helpers import INSTRUCT, write_text_jsonl
from tunekit_peft import Dora, Lora, LoraFA, LoraPlus, PeftAdapter, Vera

from tunekit.core.arch import ModelArch
from tunekit.core.context import StageContext
from tunekit.core.recipe_model import Recipe
from tunekit.core.registry import get_registry
from tunekit.run.training import train
from tunekit.testing import build_tiny_model, build_tokenizer

torch.set_num_threads(2)

LLAMA2_7B = ModelArch(name="llama-2-7b", layers=32, hidden=4096, intermediate=11008, heads=32, kv_heads=32,
                      vocab=32000)

CASES: list[tuple[type[PeftAdapter], dict[str, Any]]] = [
    (Lora, {"r": 4}),
    (Lora, {"r": 8, "targets": ["q_proj", "v_proj"], "bias": "all"}),
    (Lora, {"r": 4, "targets": "attention", "use_dora": True, "bias": "lora_only", "use_rslora": True}),
    (Dora, {"r": 4, "targets": "mlp", "modules_to_save": ["lm_head"]}),
    (LoraPlus, {"r": 4, "targets": "all-linear"}),
    (LoraFA, {"r": 4}),
    (Vera, {"r": 16}),
    (Vera, {"r": 16, "targets": "mlp", "bias": "lora_only"}),
]


def context(data: Path = INSTRUCT, **train: Any) -> StageContext:
    recipe = Recipe.model_validate({"train": train} if train else {})
    return StageContext(recipe=recipe, tokenizer=build_tokenizer(), data_path=data, log=lambda _: None)


def test_published_llama2_7b_counts() -> None:
    assert Lora(Lora.Params(r=8, targets=["q_proj", "v_proj"])).trainable_params(LLAMA2_7B) == 4_194_304
    assert Lora(Lora.Params(r=16, targets="all-linear")).trainable_params(LLAMA2_7B) == 39_976_960


def test_declarations_scale_as_the_papers_say() -> None:
    lora = Lora(Lora.Params(r=8)).trainable_params(LLAMA2_7B)
    a_factors = 8 * LLAMA2_7B.layers * sum(d_in for d_in, _ in LLAMA2_7B.linear_shapes().values())
    assert LoraFA(LoraFA.Params(r=8)).trainable_params(LLAMA2_7B) == lora - a_factors  # B only
    assert Dora(Dora.Params(r=8)).trainable_params(LLAMA2_7B) > lora  # + magnitudes
    assert Vera(Vera.Params(r=256)).trainable_params(LLAMA2_7B) * 10 < lora


@pytest.mark.parametrize("family", ["llama", "qwen2", "mistral"])
@pytest.mark.parametrize(("cls", "params"), CASES, ids=lambda v: v.name if isinstance(v, type) else str(v))
def test_declared_count_equals_peft(family: str, cls: type[PeftAdapter], params: dict[str, Any]) -> None:
    model = build_tiny_model(family=family)
    arch = ModelArch.from_hf_config(model.config.to_dict())
    plugin = cls(cls.Params(**params))
    ctx = context()
    peft_model = plugin.apply(model, ctx)
    trainable, _ = peft_model.get_nb_trainable_parameters()
    assert trainable == plugin.trainable_params(arch) == ctx.metrics["adapter"]["trainable_params"]


def test_plugins_register_and_stay_torch_free() -> None:
    assert {"lora", "dora", "lora-plus", "lora-fa", "vera"} <= set(get_registry().of("adapter"))
    code = "import sys, tunekit_peft; assert not {'torch', 'peft'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(("params", "key"), [({"targets": ["qkv"]}, "targets"), ({"r": 0}, "r"),
                                             ({"modules_to_save": ["norm"]}, "modules_to_save"),
                                             ({"rank": 8}, "rank")])
def test_bad_params_are_rejected(params: dict[str, Any], key: str) -> None:
    with pytest.raises(ValidationError, match=key):
        Lora.Params(**params)


# -- training ------------------------------------------------------------------------------

TRAIN = {"seq_len": 64, "batch_size": 4, "max_steps": 8, "max_samples": 48, "scheduler": "constant",
         "eval_split": 0.1, "eval_steps": 8}


@pytest.fixture(scope="module")
def text_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_text_jsonl(tmp_path_factory.mktemp("data") / "austen.jsonl")


@pytest.mark.parametrize(("cls", "lr"), [(Lora, 3e-3), (Dora, 3e-3), (LoraPlus, 1e-3), (LoraFA, 3e-3), (Vera, 3e-2)],
                         ids=lambda v: v.name if isinstance(v, type) else None)
def test_each_adapter_lowers_the_loss(cls: type[PeftAdapter], lr: float, tmp_path: Path, text_data: Path) -> None:
    ctx = context(text_data, **TRAIN, lr=lr)
    ctx.output_dir = tmp_path
    plugin = cls(cls.Params(r=32) if cls is Vera else cls.Params(r=8))
    train(plugin.apply(build_tiny_model(), ctx), ctx, plugin)
    report = ctx.metrics["train"]
    losses = [loss for _, loss in report["loss_curve"]]
    assert sum(losses[-2:]) < sum(losses[:2])
    assert report["eval_loss"] < report["eval_loss_before"]
    assert report["trainable_params"] == ctx.metrics["adapter"]["declared_trainable_params"]


def test_lora_plus_gives_b_a_higher_learning_rate() -> None:
    plugin = LoraPlus(LoraPlus.Params(r=4))
    model = plugin.apply(build_tiny_model(), context())
    optimizer = plugin.optimizer(model, 1e-4, 0.0)
    names = {id(p): n for n, p in model.named_parameters()}
    lr_of = {names[id(p)]: group["lr"] for group in optimizer.param_groups for p in group["params"]}
    a_rates = {lr for n, lr in lr_of.items() if "lora_A" in n}
    b_rates = {lr for n, lr in lr_of.items() if "lora_B" in n}
    assert a_rates == {1e-4} and len(b_rates) == 1 and b_rates.pop() == pytest.approx(16e-4)


def test_lora_fa_leaves_a_unchanged(tmp_path: Path, text_data: Path) -> None:
    ctx = context(text_data, **{**TRAIN, "max_steps": 3}, lr=1e-2)
    ctx.output_dir = tmp_path
    plugin = LoraFA(LoraFA.Params(r=4))
    model = plugin.apply(build_tiny_model(), ctx)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}
    train(model, ctx, plugin)
    after = dict(model.named_parameters())
    assert all(torch.equal(before[n], after[n]) for n in before if "lora_A" in n)
    assert all(not torch.equal(before[n], after[n]) for n in before if "lora_B" in n)


def trained_adapter(tmp_path: Path, plugin: PeftAdapter) -> Any:
    ctx = context(write_text_jsonl(tmp_path / "austen.jsonl", 8), **{**TRAIN, "max_steps": 2, "eval_split": 0}, lr=1e-2)
    ctx.output_dir = tmp_path / "run"
    return train(plugin.apply(build_tiny_model(), ctx), ctx, plugin)


@pytest.mark.parametrize("cls", [Lora, Vera], ids=lambda c: c.name)
def test_saved_adapter_reloads_with_the_same_logits(cls: type[PeftAdapter], tmp_path: Path) -> None:
    from peft import PeftModel

    model = trained_adapter(tmp_path, cls(cls.Params(r=8)))
    model.save_pretrained(tmp_path / "adapter")
    ids = torch.tensor([build_tokenizer()("It is a truth universally acknowledged")["input_ids"]])
    reloaded = PeftModel.from_pretrained(build_tiny_model(), tmp_path / "adapter").eval()
    with torch.no_grad():
        expected, got, base = model(ids).logits, reloaded(ids).logits, build_tiny_model()(ids).logits
    assert torch.allclose(expected, got, atol=1e-5)
    assert not torch.allclose(expected, base, atol=1e-3)  # the adapter changed something


def test_merged_model_matches_the_adapter(tmp_path: Path) -> None:
    from tunekit_peft.build import merged

    model = trained_adapter(tmp_path, Lora(Lora.Params(r=8)))
    ids = torch.tensor([build_tokenizer()("Mr. Darcy bowed")["input_ids"]])
    with torch.no_grad():
        expected = model(ids).logits
        plain = merged(model)
        assert type(plain).__name__ == "LlamaForCausalLM"
        assert torch.allclose(plain(ids).logits, expected, atol=1e-4)


def test_qlora_trains_on_nf4(tmp_path: Path, text_data: Path) -> None:
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig
    from tunekit_peft.build import merged

    build_tiny_model().save_pretrained(tmp_path / "base")
    nf4 = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32)
    base = AutoModelForCausalLM.from_pretrained(tmp_path / "base", quantization_config=nf4, dtype=torch.float32)
    for module in base.modules():  # what the nf4 quantizer's apply does on CPU (see tunekit_bnb.fixups)
        if type(module).__name__ == "Linear4bit":
            module.support_avx512bf16_for_cpu = False
    ctx = context(text_data, **TRAIN, lr=3e-3, gradient_checkpointing=True)
    ctx.output_dir = tmp_path / "run"
    plugin = Lora(Lora.Params(r=8))
    model = train(plugin.apply(base, ctx), ctx, plugin)
    assert ctx.metrics["adapter"]["qlora"] is True
    layer = model.get_base_model().model.layers[0].self_attn.q_proj.base_layer
    assert type(layer).__name__ == "Linear4bit"
    assert ctx.metrics["train"]["eval_loss"] < ctx.metrics["train"]["eval_loss_before"]
    assert ctx.metrics["adapter"]["trainable_params"] == plugin.trainable_params(ModelArch.from_path(tmp_path / "base"))
    plain = merged(model, tmp_path / "base")  # QLoRA merge: into the unquantized base, not the NF4 one
    weight = plain.model.layers[0].self_attn.q_proj.weight
    assert type(plain).__name__ == "LlamaForCausalLM" and weight.dtype == torch.float32
    assert not torch.equal(weight, build_tiny_model().model.layers[0].self_attn.q_proj.weight)
