"""The machine's GPUs and who holds them: inventory (config, NVML or the driver's /proc files)
and an allocator the local executor asks before a job with `gpu_count ≥ 1` starts.

A job is given whole GPUs, lowest free indices first, among those of an acceptable type
(`resources.gpu_type` and `resources.gpu_types`: any of; compared case-insensitively with
`-`, `_` and spaces ignored, so `RTX 3090`, `rtx-3090` and `rtx3090` are one type). Indices
are NVML's (PCI bus order); the job's environment says `CUDA_DEVICE_ORDER=PCI_BUS_ID` so CUDA
numbers the devices the same way.

Policy, stated once: a machine with no GPUs at all runs GPU jobs on its CPU (a handler ported
from trainML always asks for a GPU, and autoinfer must still run it on a laptop), with a log
line saying so; a machine with GPUs whose inventory can never satisfy a job (a type it has
none of, or more than it has) fails that job at once, not retried, with a reason naming what
it has, since the inventory does not change while the service runs; otherwise the job waits
in `waiting for resources` until enough are free.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from autoinfer.config import GpuConfig
from autoinfer.errors import ConfigError

log = logging.getLogger("autoinfer.executor")

PROC_GPUS = Path("/proc/driver/nvidia/gpus")
#: Device nodes every CUDA process needs besides its GPUs' own `/dev/nvidia<minor>`.
CONTROL_DEVICES = (
    "/dev/nvidiactl",
    "/dev/nvidia-uvm",
    "/dev/nvidia-uvm-tools",
    "/dev/nvidia-modeset",
)
_VENDOR_WORDS = {"nvidia", "geforce", "tesla", "quadro"}
# Where a marketing name stops naming the model: form factor, memory, interconnect.
_SUFFIX = re.compile(r"^(sxm\d*|pcie|nvl\d*|hbm\d*e?|\d+gb|mig.*)$", re.IGNORECASE)


@dataclass(frozen=True)
class Gpu:
    index: int
    type: str  # as configured or detected, for messages
    minor: int

    @property
    def kind(self) -> str:
        return normalise_type(self.type)

    @property
    def device(self) -> str:
        return f"/dev/nvidia{self.minor}"


def normalise_type(name: str) -> str:
    """`RTX 2080 Ti` / `rtx-2080_ti` → `rtx2080ti`."""
    return re.sub(r"[\s_\-]+", "", name).lower()


def model_type(marketing_name: str) -> str:
    """The type a detected GPU answers to: `NVIDIA GeForce RTX 3090` → `rtx3090`,
    `NVIDIA A100-SXM4-80GB` → `a100`, `Tesla T4` → `t4`, `NVIDIA H100 80GB HBM3` → `h100`."""
    words = [w for w in re.split(r"[\s\-_]+", marketing_name.strip()) if w]
    kept: list[str] = []
    for word in words:
        if word.lower() in _VENDOR_WORDS and not kept:
            continue
        if kept and _SUFFIX.match(word):
            break
        kept.append(word)
    return normalise_type("".join(kept)) or normalise_type(marketing_name)


def configured_inventory(entries: Sequence[GpuConfig]) -> list[Gpu]:
    gpus = [Gpu(e.index, e.type, e.index if e.minor is None else e.minor) for e in entries]
    indices = [g.index for g in gpus]
    if len(set(indices)) != len(indices):
        raise ConfigError("gpus: each index may be listed once")
    return sorted(gpus, key=lambda g: g.index)


def detect_inventory() -> list[Gpu]:
    """The machine's GPUs through NVML (`nvidia-ml-py`, the `gpu` extra), else the driver's
    /proc files; [] on a machine without an NVIDIA driver."""
    try:
        return _detect_nvml()
    except Exception as error:  # noqa: BLE001 - not installed, no driver, or NVML failed
        log.debug("NVML inventory unavailable (%s); trying %s", error, PROC_GPUS)
    return _detect_proc()


def _detect_nvml() -> list[Gpu]:
    import pynvml  # the optional `gpu` extra (untyped: see pyproject's mypy overrides)

    pynvml.nvmlInit()
    try:
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            name = pynvml.nvmlDeviceGetName(handle)
            name = name.decode() if isinstance(name, bytes) else str(name)
            minor = int(pynvml.nvmlDeviceGetMinorNumber(handle))
            gpus.append(Gpu(index, model_type(name), minor))
        return gpus
    finally:
        pynvml.nvmlShutdown()


def _detect_proc() -> list[Gpu]:
    """`/proc/driver/nvidia/gpus/<pci bus id>/information`: sorted by bus id, NVML's order."""
    try:
        folders = sorted(p for p in PROC_GPUS.iterdir() if p.is_dir())
    except OSError:
        return []
    gpus = []
    for index, folder in enumerate(folders):
        fields: dict[str, str] = {}
        try:
            for line in (folder / "information").read_text().splitlines():
                name, _, value = line.partition(":")
                fields[name.strip()] = value.strip()
        except OSError:
            continue
        minor = fields.get("Device Minor", str(index))
        gpus.append(
            Gpu(
                index,
                model_type(fields.get("Model", "unknown")),
                int(minor) if minor.isdigit() else index,
            )
        )
    return gpus


@dataclass(frozen=True)
class GpuGrant:
    """The GPUs one job holds: what its environment and its sandbox are given."""

    gpus: tuple[Gpu, ...] = ()

    @property
    def indices(self) -> tuple[int, ...]:
        return tuple(g.index for g in self.gpus)

    def environment(self) -> dict[str, str]:
        """`CUDA_VISIBLE_DEVICES` (empty for a job given none: it sees no GPU)."""
        return {
            "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
            "CUDA_VISIBLE_DEVICES": ",".join(str(i) for i in self.indices),
        }

    def device_paths(self) -> list[str]:
        """The device nodes a sandbox binds for this job: its GPUs' and, when it holds any,
        the control devices; only those that exist on this machine."""
        if not self.gpus:
            return []
        wanted = [g.device for g in self.gpus] + list(CONTROL_DEVICES)
        return [path for path in wanted if Path(path).exists()]


NO_GRANT = GpuGrant()


class GpuAllocator:
    """Whole GPUs handed to jobs and taken back; thread-safe."""

    def __init__(self, inventory: Iterable[Gpu]) -> None:
        self.inventory = tuple(sorted(inventory, key=lambda g: g.index))
        self._held: dict[int, str] = {}  # GPU index → job id
        self._lock = threading.Lock()

    def describe(self) -> str:
        """`2 × rtx3090, 1 × a100` (or `no GPUs`)."""
        counts: dict[str, int] = {}
        labels: dict[str, str] = {}  # one spelling per type: the first listed
        for gpu in self.inventory:
            counts[gpu.kind] = counts.get(gpu.kind, 0) + 1
            labels.setdefault(gpu.kind, gpu.type)
        return ", ".join(f"{n} × {labels[kind]}" for kind, n in counts.items()) or "no GPUs"

    def acceptable(self, types: Sequence[str]) -> list[Gpu]:
        """The GPUs of any of `types` (every GPU when `types` is empty)."""
        wanted = {normalise_type(t) for t in types if t.strip()}
        return [g for g in self.inventory if not wanted or g.kind in wanted]

    def impossible(self, count: int, types: Sequence[str]) -> str | None:
        """Why no number of finished jobs could ever free enough GPUs for this request (None:
        it can be satisfied once others finish)."""
        if count <= 0 or not self.inventory:
            return None
        fitting = self.acceptable(types)
        have = f"have: {self.describe()}"
        kinds = " or ".join(dict.fromkeys(t for t in types if t.strip()))
        if not fitting:
            return f"no GPU of type {kinds} on this machine ({have})"
        if len(fitting) < count:
            what = f"{kinds} GPUs" if kinds else "GPUs"
            return f"{count} {what} asked for, this machine has {len(fitting)} ({have})"
        return None

    def try_acquire(self, job_id: str, count: int, types: Sequence[str]) -> GpuGrant | None:
        """`count` free GPUs of an acceptable type for `job_id`, lowest indices first, or None
        while not enough are free."""
        with self._lock:
            free = [g for g in self.acceptable(types) if g.index not in self._held]
            if len(free) < count:
                return None
            chosen = tuple(free[:count])
            for gpu in chosen:
                self._held[gpu.index] = job_id
            return GpuGrant(chosen)

    def release(self, job_id: str) -> None:
        with self._lock:
            for index in [i for i, holder in self._held.items() if holder == job_id]:
                del self._held[index]

    def busy(self) -> int:
        with self._lock:
            return len(self._held)
