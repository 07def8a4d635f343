"""Child process that runs GPTQModel for the ``gptq`` / ``awq`` plugins: ``python -m tunekit_gptq.worker SPEC``.

Why a child: when one of GPTQModel's worker threads raises, GPTQModel prints the traceback and ends the
whole process with ``os._exit(1)`` (``gptqmodel/utils/threadx.py``), skipping every ``finally``. In-process,
that would kill ``tunekit apply`` before it removes its temporary output. In a child, the parent sees a
non-zero exit, reports GPTQModel's last words as a clear error and cleans up.

SPEC is a JSON file: ``method``, ``params`` (the plugin's validated Params), ``device``, ``dtype`` (a torch
dtype name or ``auto``), ``threads``, ``source`` and ``out`` folders, ``calibration`` (token windows) and
``result`` (where to write ``{"seconds": ...}``, the time GPTQModel itself took).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main(spec_path: str) -> None:
    import torch

    from tunekit_gptq.backend import build_quantize_config, configure_environment, resolve_backend, run_gptqmodel
    from tunekit_gptq.plugin import AWQQuantizer, GPTQQuantizer

    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    torch.set_num_threads(int(spec["threads"]))
    configure_environment()
    cls = {"gptq": GPTQQuantizer, "awq": AWQQuantizer}[spec["method"]]
    plugin = cls(cls.Params.model_validate(spec["params"]))
    device = spec["device"]
    dtype = spec["dtype"] if spec["dtype"] == "auto" else getattr(torch, spec["dtype"])
    start = time.perf_counter()
    run_gptqmodel(Path(spec["source"]), Path(spec["out"]), build_quantize_config(plugin, device), spec["calibration"],
                  backend=resolve_backend(plugin.params.kernel, plugin.method, device), device=device, dtype=dtype)
    Path(spec["result"]).write_text(json.dumps({"seconds": time.perf_counter() - start}), encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1])
