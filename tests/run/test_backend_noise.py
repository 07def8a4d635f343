"""A LoRA run with every backend installed prints only tunekit's own lines: GPTQModel is not imported
(no banner, no changed environment variables), and what torchao/torch/bitsandbytes log goes to the
run's ``backends.log``. Runs in a fresh interpreter: the question is what one run imports."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import json, os, sys
from tunekit.run.pipeline import apply_recipe
apply_recipe(sys.argv[1], model=sys.argv[2], output=sys.argv[3])
print(json.dumps({"gptqmodel": "gptqmodel" in sys.modules,
                  "env": {k: os.environ.get(k) for k in ("PYTORCH_ALLOC_CONF", "CUDA_DEVICE_ORDER")}}))
"""

RECIPE = """
name: noise
adapter: {method: lora, r: 4, targets: [q_proj, v_proj]}
train: {data: austen_instruct.jsonl, seq_len: 256, max_steps: 1, max_samples: 4, eval_split: 0}
eval: {perplexity: false}
"""


@pytest.mark.skipif(importlib.util.find_spec("peft") is None, reason="needs the peft extra")
def test_lora_run_prints_no_backend_banner_and_keeps_backend_logs(tmp_path: Path) -> None:
    from tunekit.testing import save_tiny_model

    model = save_tiny_model(tmp_path / "tiny")
    recipe = tmp_path / "lora.yaml"
    recipe.write_text(RECIPE)
    env = {k: v for k, v in os.environ.items() if k not in {"PYTORCH_ALLOC_CONF", "CUDA_DEVICE_ORDER"}}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(recipe), str(model), str(tmp_path / "out")],
                          capture_output=True, text=True, env={**env, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    assert facts == {"gptqmodel": False, "env": {"PYTORCH_ALLOC_CONF": None, "CUDA_DEVICE_ORDER": None}}
    output = done.stdout + done.stderr
    assert "GPT-QModel" not in output and "GPTQModel" not in output
    assert "Failed to load" not in output and "_pytree" not in output  # torchao's and torch's import noise
    log = tmp_path / "out" / "backends.log"
    if importlib.util.find_spec("torchao") is not None:
        assert "torchao" in log.read_text(encoding="utf-8")  # kept, where a bug report can find it


def test_peft_still_sees_gptqmodel_once_it_is_imported() -> None:
    """The guard answers False only while GPTQModel is not imported, so GPTQ bases keep their LoRA layers."""
    pytest.importorskip("peft")
    import peft.import_utils

    from tunekit.core.backends import guard_peft_gptqmodel

    guard_peft_gptqmodel()
    guard_peft_gptqmodel()  # idempotent
    from peft.tuners.lora import gptq

    assert gptq.is_gptqmodel_available is peft.import_utils.is_gptqmodel_available
    if "gptqmodel" not in sys.modules:
        assert not gptq.is_gptqmodel_available()
    spec = importlib.util.find_spec("gptqmodel")
    if spec is not None and "gptqmodel" not in sys.modules:
        stand_in = type(sys)("gptqmodel")  # stands for "a GPTQ load imported it", without the import's cost
        stand_in.__spec__ = spec
        sys.modules["gptqmodel"] = stand_in
        try:
            assert gptq.is_gptqmodel_available()
        finally:
            del sys.modules["gptqmodel"]
