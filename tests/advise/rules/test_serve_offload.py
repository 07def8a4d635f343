"""recommend's serve advice offers `model.offload` (accelerate's GPU/CPU/disk split) for transformers when the
16-bit weights do not fit the GPU, with a bandwidth-bound tokens/s, as it offers the llama.cpp split."""

from __future__ import annotations

import pytest

from tunekit.advise.estimate import GB, weight_bytes
from tunekit.advise.hardware import resolve_hardware
from tunekit.advise.rules import Facts, load_rules, recommend
from tunekit.advise.rules.fitting import DISK_BANDWIDTH_GBS, PCIE_BANDWIDTH_GBS
from tunekit.advise.rules.serve import serve_lines
from tunekit.advise.rules.speed import gpu_bandwidth_gbs
from tunekit.core.model_facts import resolve_model
from tunekit.core.recipe import validate_data
from tunekit.core.registry import get_registry


def serve(vram: float, ram: float, engine: str | None) -> tuple[Facts, list]:  # type: ignore[type-arg]
    registry = get_registry()
    facts = Facts(hardware=resolve_hardware(vram=vram, ram=ram), model=resolve_model("llama-3.1-8b", registry=registry),
                  goal="serve", engine=engine)
    return facts, recommend(facts, load_rules(registry), registry, top=8).recommendations


def test_16bit_that_does_not_fit_is_offered_offloaded_with_its_speed() -> None:
    facts, recs = serve(12, 64, "hf")
    [rec] = [r for r in recs if r.candidate.offload]
    assert rec.recipe["model"]["offload"] == rec.candidate.offload and rec.fits
    validate_data(rec.recipe, source="test")  # the written recipe is one apply/generate accept
    weights = weight_bytes(facts.model, rec.candidate.setup.quant)
    gpu, cpu = rec.candidate.offload["gpu_gb"] * GB, rec.candidate.offload["cpu_gb"] * GB
    assert 0 < gpu < 12 * GB and gpu + cpu == pytest.approx(weights, rel=0.02)
    expected = 1 / (gpu / (gpu_bandwidth_gbs(facts) * GB) + cpu / (PCIE_BANDWIDTH_GBS * GB))
    assert rec.candidate.tokens_per_s == pytest.approx(expected, rel=0.05)
    assert any("model.offload" in r and "tokens/s" in r for r in rec.reasons)
    assert rec.candidate.memory.total_gb * (1 + facts.margin) <= 12  # the part left on the GPU fits
    # a quantized model that fits whole decodes faster: it ranks above the offloaded 16-bit one
    assert recs[0].candidate.stages.get("quantizer") and rec.rank > 1
    [line] = serve_lines(facts, rec, "hf")
    assert line.startswith(f"tunekit generate {rec.rank:02d}-llama-3.1-8b-bf16.yaml ")


def test_little_ram_sends_the_rest_to_disk_at_disk_speed() -> None:
    _, recs = serve(12, 8, "hf")
    [rec] = [r for r in recs if r.candidate.offload]
    assert any("on disk" in r and f"disk at {DISK_BANDWIDTH_GBS:g} GB/s" in r for r in rec.reasons)


@pytest.mark.parametrize(("vram", "engine"), [(12, None), (12, "vllm"), (40, "hf")])
def test_no_offload_unless_transformers_serves_weights_that_do_not_fit(vram: float, engine: str | None) -> None:
    _, recs = serve(vram, 64, engine)
    assert not [r for r in recs if r.candidate.offload or "offload" in r.recipe["model"]]
