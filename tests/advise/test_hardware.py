from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

from tunekit.advise import hardware
from tunekit.advise.hardware import (
    GPUS,
    find_gpu,
    match_gpu_name,
    parse_nvidia_smi,
    resolve_hardware,
    slowest_card_of_size,
    smallest_gpu_fitting,
)
from tunekit.core.errors import UsageError


def test_table_covers_the_common_cards() -> None:
    names = {g.name for g in GPUS}
    for name in ("rtx-3090", "rtx-4090", "rtx-5090", "a100-40gb", "a100-80gb", "h100", "h200", "l4", "l40s", "t4",
                 "a10g", "mi300x"):
        assert name in names
    t4, h100 = find_gpu("t4"), find_gpu("H100")
    assert not t4.bf16 and t4.compute_capability == "7.5"
    assert h100.bf16 and h100.fp8 and h100.vram_gib == 80 and h100.vram_gb == 85.9  # 80 GiB


def test_unknown_gpu_lists_the_known_ones() -> None:
    with pytest.raises(UsageError, match="rtx-4090"):
        find_gpu("rtx-9999")


@pytest.mark.parametrize(("product", "vram", "expected"), [
    ("NVIDIA GeForce RTX 4090", 25.3, "rtx-4090"),
    ("NVIDIA A100-SXM4-80GB", 85.0, "a100-80gb"),
    ("NVIDIA A100-PCIE-40GB", 42.0, "a100-40gb"),
    ("NVIDIA H100 80GB HBM3", 85.0, "h100"),
    ("NVIDIA H100 PCIe", 85.0, "h100-pcie"),
    ("Tesla T4", 16.0, "t4"),
    ("NVIDIA L4", 24.0, "l4"),
    ("NVIDIA L40S", 48.0, "l40s"),
    ("NVIDIA A10G", 24.0, "a10g"),
])
def test_nvidia_smi_names_map_onto_the_table(product: str, vram: float, expected: str) -> None:
    gpu = match_gpu_name(product, vram)
    assert gpu is not None and gpu.name == expected


def test_parse_nvidia_smi_counts_gpus() -> None:
    hw = parse_nvidia_smi("NVIDIA H100 80GB HBM3, 81559, 9.0\nNVIDIA H100 80GB HBM3, 81559, 9.0\n")
    assert hw is not None
    assert (hw.gpus, hw.gpu, hw.fp8, hw.source) == (2, "h100", True, "nvidia-smi")
    assert hw.vram_gb == pytest.approx(85.5, abs=0.1)  # 81559 MiB in GB (1e9)
    unknown = parse_nvidia_smi("Some Future GPU, 10240, 8.9\n")
    assert unknown is not None and unknown.bf16 and unknown.fp8 and unknown.gpu == "Some Future GPU"
    assert parse_nvidia_smi("") is None


def test_flags_win_over_detection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardware, "detect", lambda: pytest.fail("must not detect when flags say it all"))
    hw = resolve_hardware(vram=24, ram=64)
    assert (hw.vram_gb, hw.gpus, hw.cuda, hw.ram_gb) == (24, 1, True, 64)
    hw = resolve_hardware(gpu="a100-40gb", gpus=4)
    assert (hw.vram_gb, hw.gpus, hw.total_vram_gb, hw.compute_capability) == (42.95, 4, 171.8, "8.0")  # 40 GiB
    cpu = resolve_hardware(cpu_only=True, ram=32)
    assert (cpu.gpus, cpu.cuda, cpu.ram_gb) == (0, False, 32)
    with pytest.raises(UsageError):
        resolve_hardware(vram=-1)


def test_detection_without_nvidia_smi_or_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardware.shutil, "which", lambda name: None)
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    hw = resolve_hardware()
    assert hw.gpus == 0 and not hw.cuda and "no GPU" in hw.source


def test_detection_uses_torch_only_when_already_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    props = SimpleNamespace(name="NVIDIA GeForce RTX 4090", total_memory=25_300_000_000, major=8, minor=9)
    cuda = SimpleNamespace(is_available=lambda: True, get_device_properties=lambda i: props, device_count=lambda: 1)
    monkeypatch.setattr(hardware.shutil, "which", lambda name: None)
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=cuda))
    hw = resolve_hardware()
    assert (hw.gpu, hw.gpus, hw.source) == ("rtx-4090", 1, "torch.cuda")


def test_smallest_gpu_fitting() -> None:
    assert smallest_gpu_fitting(20).vram_gib == 24  # type: ignore[union-attr]
    assert smallest_gpu_fitting(25.9).vram_gib == 32  # type: ignore[union-attr]  # a 24 GiB card is 25.77 GB
    gpu = smallest_gpu_fitting(60)
    assert gpu is not None and gpu.name == "a100-80gb"  # 80 GB, the older generation first
    assert smallest_gpu_fitting(10_000) is None


@pytest.mark.parametrize(("vram", "expected"), [(24, "l4"), (25.77, "l4"), (80, "h100-pcie"), (85.9, "h100-pcie"),
                                                (12, "rtx-3060"), (8, "rtx-4060"), (48, "rtx-a6000"),
                                                (20, "rtx-4060-ti-16gb")])
def test_a_bare_vram_assumes_the_slowest_card_of_that_size(vram: float, expected: str) -> None:
    """The size as marketed (24) or in GB (25.77) names the same cards; with no card of that size (20), the
    nearest size's. Decode speeds then never promise more than that card's bandwidth, and say so."""
    assert slowest_card_of_size(vram).name == expected
    hw = resolve_hardware(vram=vram, ram=64)
    assert hw.bandwidth_gbs == find_gpu(expected).bandwidth_gbs
    assert f"as {expected}" in hw.describe() and "--gpu NAME" in hw.describe()
    assert "assumed" not in hw.describe(assumptions=False)  # a fine-tune's table shows no speed
    assert resolve_hardware(gpu="rtx-4090").assumed == ""  # a named card assumes nothing
