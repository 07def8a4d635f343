"""``ctx.device`` is where the model is: decided before loading for quantize-on-load kwargs, read off the
loaded model afterwards, and what every later plugin sees."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
import yaml

from tunekit import Quantizer, StageContext
from tunekit.run import devices
from tunekit.run.devices import load_device, model_device
from tunekit.testing import registry_with


class _Placed:
    """A stand-in for a model whose weights are on ``device`` (a CUDA device needs no GPU to be named)."""

    def __init__(self, device: torch.device, device_map: dict[str, Any] | None = None) -> None:
        self.weight = torch.empty(0, device="meta")
        self.device = device
        if device_map is not None:
            self.hf_device_map = device_map

    def parameters(self) -> Any:
        return iter([types.SimpleNamespace(device=self.device)])


@pytest.mark.parametrize(("device_map", "on_load", "cuda", "want"), [
    (None, False, True, "cpu"),         # from_pretrained without a device_map stays on the CPU
    (None, True, True, "cuda:0"),       # ... except bitsandbytes, which transformers puts on the GPU
    (None, True, False, "cpu"),
    ("auto", False, True, "cuda:0"),
    ("auto", False, False, "cpu"),
    ("cuda", False, True, "cuda:0"),
    ("cuda:1", False, True, "cuda:1"),
    ("cpu", True, True, "cpu"),
])
def test_load_device_predicts_where_from_pretrained_puts_the_weights(device_map: str | None, on_load: bool,
                                                                    cuda: bool, want: str) -> None:
    assert load_device(device_map, quantize_on_load=on_load, cuda_available=cuda) == want


def test_model_device_reads_the_parameters() -> None:
    assert model_device(_Placed(torch.device("cuda", 1))) == "cuda:1"
    assert model_device(_Placed(torch.device("cpu"))) == "cpu"
    assert model_device(torch.nn.Linear(2, 2)) == "cpu"
    assert model_device(object()) == "cpu"


def test_model_device_prefers_the_gpu_of_a_spread_model() -> None:
    spread = _Placed(torch.device("cpu"), {"model.embed_tokens": "cpu", "model.layers.0": 0, "lm_head": "disk"})
    assert model_device(spread) == "cuda:0"
    assert model_device(_Placed(torch.device("cpu"), {"": "cpu", "lm_head": "disk"})) == "cpu"


class DeviceRecorder(Quantizer):
    """Quantizes on load (so the load stage asks it for kwargs) and records the device it is shown."""

    name = "device-recorder"
    on_load: ClassVar[bool] = True
    seen: ClassVar[dict[str, str]] = {}
    state: ClassVar[tuple[bool, dict[str, Any]]] = (False, {})

    def bits_per_weight(self) -> float:
        return 16.0

    def load_kwargs(self, ctx: StageContext) -> dict[str, Any]:
        DeviceRecorder.seen["load_kwargs"] = ctx.device
        return {}

    def apply(self, model: Any, ctx: StageContext) -> Any:
        DeviceRecorder.seen["apply"] = ctx.device
        DeviceRecorder.state = (ctx.run.stages.get("quantizer") is self, dict(ctx.extras))
        return model


def test_a_plugin_sees_the_device_the_model_is_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tunekit.run import load, pipeline
    from tunekit.testing import save_tiny_model

    model_dir = tmp_path / "model"
    save_tiny_model(model_dir, max_position_embeddings=128)
    asked: list[Any] = []

    def spy(model: Any) -> str:
        asked.append(model)
        return devices.model_device(model)

    monkeypatch.setattr(load, "model_device", spy)
    monkeypatch.setattr(load, "load_device", lambda *a, **k: "predicted")
    DeviceRecorder.seen.clear()
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"quantizer": {"method": "device-recorder"}, "eval": {"perplexity": False}}))
    result = pipeline.apply_recipe(recipe, model=model_dir, output=tmp_path / "out", quiet=True,
                                   registry=registry_with(DeviceRecorder))
    assert DeviceRecorder.seen == {"load_kwargs": "predicted", "apply": "cpu"}
    assert len(asked) == 1 and hasattr(asked[0], "config")  # read off the loaded model, not assumed
    assert result.metrics["load"]["device"] == "cpu"
    assert DeviceRecorder.state == (True, {})  # the run's plugins are in ctx.run; extras stay the plugins' own
