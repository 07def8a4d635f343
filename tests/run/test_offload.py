"""Layer offload (``model.offload``): a max_memory that forces disk offload of a tiny model gives the same
outputs as the model in memory, through from_pretrained, ``tunekit apply`` and ``tunekit generate``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from tunekit.core.errors import RecipeError
from tunekit.core.recipe_model import OffloadSection
from tunekit.run.offload import auto_section, load_kwargs

torch.set_num_threads(2)
CPU_GB = 0.006  # the embeddings and one 2.4 MB layer of the tiny model fit; the other layers go to disk


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tunekit.testing import save_tiny_model

    folder = tmp_path_factory.mktemp("tiny") / "model"
    save_tiny_model(folder, hidden_size=256, intermediate_size=512, num_hidden_layers=4)
    return folder


def test_kwargs_for_a_cpu_machine(tmp_path: Path) -> None:
    kwargs = load_kwargs(OffloadSection(cpu_gb=CPU_GB), model_path=tmp_path, scratch=tmp_path, gpus=0)
    assert kwargs == {"device_map": "auto", "max_memory": {"cpu": 6_000_000},
                      "offload_folder": str(tmp_path / "offload")}
    two = load_kwargs(OffloadSection(gpu_gb=10, disk=str(tmp_path / "d")), model_path=tmp_path, scratch=tmp_path,
                      gpus=2, ram_gb=100)
    assert two["max_memory"] == {0: 10_000_000_000, 1: 10_000_000_000, "cpu": 80_000_000_000}
    assert two["offload_folder"] == str(tmp_path / "d") and (tmp_path / "d").is_dir()


def test_auto_leaves_the_estimated_non_weight_memory_free(tiny_dir: Path) -> None:
    from tunekit.advise import estimate as est
    from tunekit.core.arch import ModelArch

    section = auto_section(tiny_dir, vram_gb=24, ram_gb=64)
    arch = ModelArch.from_hf_config(json.loads((tiny_dir / "config.json").read_text()))
    result = est.estimate(arch, est.Setup(method="infer", seq_len=min(4096, arch.max_context)))
    others = sum(v for k, v in result.breakdown.items() if k != "weights") / est.GB
    assert others > 0.5  # at least the CUDA context
    assert section.cpu_gb == pytest.approx(64 * 0.8)
    assert section.gpu_gb == pytest.approx(24 * 0.9 - others, abs=0.01)
    assert auto_section(tiny_dir, vram_gb=0, ram_gb=64).gpu_gb is None  # no GPU: nothing placed there


def test_disk_offloaded_logits_equal_the_model_in_memory(tiny_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    ids = torch.arange(3, 40).unsqueeze(0)
    plain = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32).eval()
    kwargs = load_kwargs(OffloadSection(cpu_gb=CPU_GB), model_path=tiny_dir, scratch=tmp_path, gpus=0)
    offloaded = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32, **kwargs).eval()
    assert "disk" in set(offloaded.hf_device_map.values()) and "cpu" in set(offloaded.hf_device_map.values())
    with torch.no_grad():
        assert torch.equal(offloaded(ids).logits, plain(ids).logits)


def test_apply_and_generate_with_offload_match_without(tiny_dir: Path, tmp_path: Path) -> None:
    from tunekit.run.generate import generate
    from tunekit.run.pipeline import apply_recipe

    results = {}
    for name, model in (("plain", {}), ("offload", {"offload": {"cpu_gb": CPU_GB}})):
        recipe = tmp_path / f"{name}.yaml"
        recipe.write_text(yaml.safe_dump({"name": name, "model": {"path": str(tiny_dir), "dtype": "float32", **model},
                                          "eval": {"seq_len": 32, "max_tokens": 128}}))
        out = apply_recipe(recipe, output=tmp_path / f"out-{name}", quiet=True)
        metrics = out.metrics
        text = generate(str(recipe), "Emma Woodhouse", max_new_tokens=6, chat=False).text
        results[name] = (metrics, text)
    plain, offload = results["plain"], results["offload"]
    assert offload[0]["load"]["offload"]["disk"] >= 2
    assert offload[0]["evaluate"]["perplexity_before"] == plain[0]["evaluate"]["perplexity_before"]
    assert offload[1] == plain[1]


@pytest.mark.parametrize("extra,key", [({"quantizer": {"method": "rtn"}}, "model.offload"),
                                       ({"model": {"offload": "auto", "device_map": "auto"}}, "model")])
def test_offload_is_refused_where_it_cannot_work(tmp_path: Path, extra: dict, key: str) -> None:
    from tunekit.core.recipe import load_recipe

    data = {"model": {"offload": "auto"}, **extra}
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(data))
    with pytest.raises(RecipeError) as info:
        load_recipe(recipe)
    assert str(info.value.key).startswith(key)
