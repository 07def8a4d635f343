"""The hardware a recommendation is for: flags, a small GPU table, or detection (torch-free).

Detection asks ``nvidia-smi`` (no import at all) and falls back to ``torch.cuda`` only when torch is
*already* imported by the caller, so ``tunekit recommend`` never pays torch's import time. Figures in
``GPUS`` are the vendors' datasheet numbers (bandwidth in GB/s). Memory as marketed is in GiB: a "24 GB" card
has 24 GiB = 25.77 GB; the table keeps the marketed GiB and ``vram_gb`` converts, so every budget tunekit
compares with an estimate is in GB = 1e9 bytes, as ``--vram`` is.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import asdict, dataclass, replace
from typing import Any

from tunekit.core.errors import UsageError


@dataclass(frozen=True)
class GPU:
    """One accelerator model: what the estimator and the rules need to know."""

    name: str
    vram_gib: float  # as marketed: NVIDIA's and AMD's "GB" are GiB
    bandwidth_gbs: float
    bf16: bool
    fp8: bool
    compute_capability: str  # "8.9" for NVIDIA; "" for AMD (gfx arch in `arch`)
    vendor: str = "nvidia"
    arch: str = ""
    aliases: tuple[str, ...] = ()

    @property
    def vram_gb(self) -> float:
        """Capacity in GB = 1e9 bytes, the estimator's unit (24 GiB -> 25.77 GB)."""
        return round(self.vram_gib * 2**30 / 1e9, 2)


#: Datasheet numbers (NVIDIA / AMD product pages). bf16 needs compute capability >= 8.0 (Ampere);
#: fp8 tensor cores need >= 8.9 (Ada, Hopper, Blackwell) or CDNA3.
GPUS: tuple[GPU, ...] = (
    GPU("t4", 16, 320, False, False, "7.5", arch="turing", aliases=("tesla-t4",)),
    GPU("v100-16gb", 16, 900, False, False, "7.0", arch="volta", aliases=("v100",)),
    GPU("v100-32gb", 32, 900, False, False, "7.0", arch="volta"),
    GPU("rtx-2080-ti", 11, 616, False, False, "7.5", arch="turing"),
    GPU("rtx-3060", 12, 360, True, False, "8.6", arch="ampere"),
    GPU("rtx-3070", 8, 448, True, False, "8.6", arch="ampere", aliases=("rtx-3060-ti",)),
    GPU("rtx-4060", 8, 272, True, True, "8.9", arch="ada"),
    GPU("rtx-3080", 10, 760, True, False, "8.6", arch="ampere"),
    GPU("rtx-3090", 24, 936, True, False, "8.6", arch="ampere", aliases=("rtx-3090-ti",)),
    GPU("rtx-4060-ti-16gb", 16, 288, True, True, "8.9", arch="ada"),
    GPU("rtx-4070", 12, 504, True, True, "8.9", arch="ada"),
    GPU("rtx-4080", 16, 717, True, True, "8.9", arch="ada", aliases=("rtx-4080-super",)),
    GPU("rtx-4090", 24, 1008, True, True, "8.9", arch="ada"),
    GPU("rtx-5080", 16, 960, True, True, "12.0", arch="blackwell"),
    GPU("rtx-5090", 32, 1792, True, True, "12.0", arch="blackwell"),
    GPU("rtx-a6000", 48, 768, True, False, "8.6", arch="ampere", aliases=("a6000",)),
    GPU("rtx-6000-ada", 48, 960, True, True, "8.9", arch="ada"),
    GPU("a10", 24, 600, True, False, "8.6", arch="ampere"),
    GPU("a10g", 24, 600, True, False, "8.6", arch="ampere"),
    GPU("l4", 24, 300, True, True, "8.9", arch="ada"),
    GPU("l40s", 48, 864, True, True, "8.9", arch="ada", aliases=("l40",)),
    GPU("a100-40gb", 40, 1555, True, False, "8.0", arch="ampere", aliases=("a100",)),
    GPU("a100-80gb", 80, 2039, True, False, "8.0", arch="ampere"),
    GPU("h100", 80, 3350, True, True, "9.0", arch="hopper", aliases=("h100-sxm", "h100-80gb")),
    GPU("h100-pcie", 80, 2000, True, True, "9.0", arch="hopper"),
    GPU("h200", 141, 4800, True, True, "9.0", arch="hopper"),
    GPU("b200", 180, 8000, True, True, "10.0", arch="blackwell"),
    GPU("mi250x", 128, 3277, True, False, "", vendor="amd", arch="gfx90a", aliases=("mi250",)),
    GPU("mi300x", 192, 5300, True, True, "", vendor="amd", arch="gfx942"),
    GPU("mi325x", 256, 6000, True, True, "", vendor="amd", arch="gfx942"),
)


def _norm(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(" ", "-")


def find_gpu(name: str) -> GPU:
    """A GPU by table name or alias (``rtx-4090``, ``A100-80GB``, ``h100``)."""
    key = _norm(name)
    for gpu in GPUS:
        if key == gpu.name or key in gpu.aliases:
            return gpu
    known = ", ".join(g.name for g in GPUS)
    raise UsageError(f"unknown GPU '{name}' (known: {known}); or give --vram GB")


def _stem(gpu: GPU) -> str:
    """The table name without a memory suffix: ``a100-80gb`` -> ``a100``."""
    parts = gpu.name.split("-")
    return "-".join(parts[:-1]) if parts[-1].endswith("gb") else gpu.name


def match_gpu_name(product: str, vram_gb: float | None = None) -> GPU | None:
    """Map an ``nvidia-smi`` product name ("NVIDIA GeForce RTX 4090") onto the table (memory breaks ties)."""
    text = _norm(product)
    for prefix in ("nvidia-", "geforce-", "tesla-", "amd-", "instinct-"):
        text = text.replace(prefix, "")
    found = [g for g in GPUS if _stem(g) in text]
    if not found:
        return None
    longest = max(len(_stem(g)) for g in found)
    found = [g for g in found if len(_stem(g)) == longest]
    if vram_gb is not None:
        return min(found, key=lambda g: abs(g.vram_gb - vram_gb))
    return found[0]


@dataclass(frozen=True)
class Hardware:
    """Facts about the machine, as flags gave them or detection found them."""

    vram_gb: float = 0.0  # per GPU
    gpus: int = 0
    gpu: str = ""
    bandwidth_gbs: float = 0.0
    bf16: bool = False
    fp8: bool = False
    compute_capability: str = ""
    vendor: str = ""
    cuda: bool = False
    ram_gb: float = 0.0
    source: str = "flags"  # flags | nvidia-smi | torch.cuda | none
    #: what a bare --vram left to assume, said beside the figures it shapes (decode speeds)
    assumed: str = ""

    @property
    def total_vram_gb(self) -> float:
        return self.vram_gb * max(self.gpus, 1)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["total_vram_gb"] = self.total_vram_gb
        return data

    def describe(self, assumptions: bool = True) -> str:
        """One line for a header; ``assumptions=False`` where they shape no figure shown (a fine-tune's table)."""
        if not self.gpus:
            return f"CPU only, {self.ram_gb:.0f} GB RAM ({self.source})"
        name = self.gpu or "GPU"
        assumed = f"; {self.assumed}" if self.assumed and assumptions else ""
        return f"{self.gpus} x {name} {self.vram_gb:g} GB ({self.source}{assumed})"


def system_ram_gb() -> float:
    """Physical memory from sysconf (Linux/macOS); 0 when unknown."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    except (AttributeError, ValueError, OSError):
        return 0.0


def _from_gpu(gpu: GPU, count: int, source: str, vram_gb: float | None = None) -> Hardware:
    return Hardware(vram_gb=vram_gb or gpu.vram_gb, gpus=count, gpu=gpu.name, bandwidth_gbs=gpu.bandwidth_gbs,
                    bf16=gpu.bf16, fp8=gpu.fp8, compute_capability=gpu.compute_capability, vendor=gpu.vendor,
                    cuda=gpu.vendor == "nvidia", source=source)


def parse_nvidia_smi(text: str) -> Hardware | None:
    """Parse ``nvidia-smi --query-gpu=name,memory.total,compute_cap --format=csv,noheader,nounits``."""
    rows = [[c.strip() for c in line.split(",")] for line in text.strip().splitlines() if line.strip()]
    rows = [r for r in rows if len(r) >= 2]
    if not rows:
        return None
    name, mib = rows[0][0], float(rows[0][1])
    vram = round(mib * 1024 * 1024 / 1e9, 1)
    cc = rows[0][2] if len(rows[0]) > 2 else ""
    gpu = match_gpu_name(name, vram)
    if gpu is not None:
        return _from_gpu(gpu, len(rows), "nvidia-smi", vram)
    major = float(cc) if cc.replace(".", "", 1).isdigit() else 0.0
    return Hardware(vram_gb=vram, gpus=len(rows), gpu=name, bf16=major >= 8.0, fp8=major >= 8.9,
                    compute_capability=cc, vendor="nvidia", cuda=True, source="nvidia-smi")


def _detect_nvidia_smi() -> Hardware | None:
    import subprocess  # only when detecting: --vram and --gpu never spawn

    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=name,memory.total,compute_cap", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=5, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_nvidia_smi(out)


def _detect_torch() -> Hardware | None:
    torch = sys.modules.get("torch")  # only when the caller already paid for the import
    if torch is None or not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    vram = round(props.total_memory / 1e9, 1)
    cc = f"{props.major}.{props.minor}"
    gpu = match_gpu_name(props.name, vram)
    if gpu is not None:
        return _from_gpu(gpu, torch.cuda.device_count(), "torch.cuda", vram)
    return Hardware(vram_gb=vram, gpus=torch.cuda.device_count(), gpu=props.name, bf16=props.major >= 8,
                    fp8=(props.major, props.minor) >= (8, 9), compute_capability=cc, vendor="nvidia", cuda=True,
                    source="torch.cuda")


def detect() -> Hardware:
    """What this machine has; a CPU-only ``Hardware`` when no GPU is found."""
    found = _detect_nvidia_smi() or _detect_torch()
    ram = system_ram_gb()
    if found is None:
        return Hardware(ram_gb=ram, source="detected: no GPU")
    return replace(found, ram_gb=ram)


def resolve_hardware(*, vram: float | None = None, gpus: int | None = None, gpu: str | None = None,
                     ram: float | None = None, cpu_only: bool = False) -> Hardware:
    """Flags win; what flags leave open is detected (or taken from the GPU table)."""
    if vram is not None and vram <= 0:
        raise UsageError("--vram must be a positive number of GB")
    if gpus is not None and gpus < 1:
        raise UsageError("--gpus must be >= 1")
    if cpu_only:
        return Hardware(ram_gb=ram if ram is not None else system_ram_gb(), source="flags (--cpu-only)")
    if gpu:
        hw = _from_gpu(find_gpu(gpu), gpus or 1, "flags (--gpu)", vram)
    elif vram is not None:
        # a bare --vram: assume a recent CUDA card (bf16 yes, fp8 unknown -> no) and the memory bandwidth of the
        # slowest listed card of that size (decode speeds are not promised faster than the card may be)
        card = slowest_card_of_size(vram)
        hw = Hardware(vram_gb=vram, gpus=gpus or 1, gpu="", bandwidth_gbs=card.bandwidth_gbs, bf16=True, fp8=False,
                      vendor="nvidia", cuda=True, source="flags (--vram)",
                      assumed=f"{card.bandwidth_gbs:g} GB/s assumed, as {card.name}: --gpu NAME for yours")
    else:
        hw = detect()
        if gpus is not None and hw.gpus:
            hw = replace(hw, gpus=gpus)
    return replace(hw, ram_gb=ram if ram is not None else (hw.ram_gb or system_ram_gb()))


def slowest_card_of_size(vram_gb: float) -> GPU:
    """The slowest listed card of the memory size ``vram_gb`` names, marketed (24 for a 24 GiB card) or in GB
    (25.77), within 3%; when no card has that size, the slowest of the nearest size. A bare ``--vram``
    says nothing of the card's bandwidth, so speeds are never promised above what that card decodes at."""
    def distance(g: GPU) -> float:
        return min(abs(g.vram_gib - vram_gb), abs(g.vram_gb - vram_gb))

    same = [g for g in GPUS if distance(g) <= 0.03 * vram_gb]
    if not same:
        nearest = min(distance(g) for g in GPUS)
        same = [g for g in GPUS if distance(g) == nearest]
    return min(same, key=lambda g: g.bandwidth_gbs)


def smallest_gpu_fitting(needed_gb: float, *, bf16: bool = False) -> GPU | None:
    """The smallest single GPU in the table with at least ``needed_gb`` (fewest GB, then oldest generation)."""
    fitting = [g for g in GPUS if g.vram_gb >= needed_gb and (g.bf16 or not bf16)]
    # among equal memory, the older generation (cheaper to rent) first
    return min(fitting, key=lambda g: (g.vram_gb, float(g.compute_capability or 9.0), g.bandwidth_gbs)) if fitting \
        else None
