"""What this host can take on now: CPU, RAM, disk and GPUs, the busy signal and model capacity.

GPU readers share one interface, ``read() -> list[GpuReading]``:

* :class:`NvmlReader`: NVIDIA through NVML (``nvidia-ml-py``): memory info, utilization, and
  the per-process memory of compute and graphics processes, so chiffon's own share is known;
* :class:`AmdgpuSysfsReader`: AMD through the amdgpu sysfs counters
  (``/sys/class/drm/card*/device/mem_info_vram_{total,used}`` in bytes, ``gpu_busy_percent``;
  kernel docs, Documentation/gpu/amdgpu/driver-misc.rst) and chiffon's own share from
  ``/proc/<pid>/fdinfo`` (``drm-memory-vram`` in KiB; Documentation/gpu/drm-usage-stats.rst);
* :class:`ReplayReader`: the readings of a recording (``chiffon host record``), one sample per read;
* :class:`NoGpu`.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, Protocol

import psutil
from pydantic import BaseModel, Field

from chiffon.shared.config import HostConfig, HostdSettings
from chiffon.shared.errors import ConfigError

MB = 1024 * 1024
AMD_VENDOR = "0x1002"


class GpuReading(BaseModel):
    """One GPU at one instant. Memory in MB (MiB), busy in percent (None: the driver does not say)."""

    index: int
    name: str
    vendor: Literal["nvidia", "amd"]
    vram_total_mb: int
    vram_used_mb: int
    busy_percent: float | None = None
    chiffon_vram_mb: int = Field(0, description="VRAM held by chiffon's own processes (hostd.own_processes).")

    @property
    def foreign_vram_mb(self) -> int:
        """VRAM held by everything but chiffon (the desktop, a game), MB."""
        return max(0, self.vram_used_mb - self.chiffon_vram_mb)


class GpuReader(Protocol):
    """Reads every GPU of the host."""

    kind: str

    def read(self) -> list[GpuReading]:
        """The GPUs now; raises nothing for a missing card (an empty list)."""
        ...


def own_pids(names: list[str]) -> set[int]:
    """This process, its children, and every process named in ``names`` (hostd.own_processes)."""
    me = psutil.Process()
    pids = {me.pid, *(p.pid for p in me.children(recursive=True))}
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] in names:
            pids.add(proc.pid)
    return pids


class NoGpu:
    """A host without a GPU chiffon can use."""

    kind = "none"

    def read(self) -> list[GpuReading]:
        return []


class NvmlReader:
    """NVIDIA GPUs through NVML.

    Raises (at construction):
        ConfigError: NVML is missing (no driver) or fails to initialise; the NVML error is named.
    """

    kind = "nvidia"

    def __init__(self, pids: Callable[[], set[int]]) -> None:
        import pynvml

        self._nvml = pynvml
        self._pids = pids
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            raise ConfigError(f"NVML unavailable ({exc}): install the NVIDIA driver, or set hosts.<name>.gpu") from exc

    def read(self) -> list[GpuReading]:
        nvml = self._nvml
        mine = self._pids()
        out = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            try:
                busy: float | None = float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
            except nvml.NVMLError:
                busy = None
            procs = [*nvml.nvmlDeviceGetComputeRunningProcesses(handle),
                     *nvml.nvmlDeviceGetGraphicsRunningProcesses(handle)]
            ours = sum((p.usedGpuMemory or 0) for p in procs if p.pid in mine)
            name = nvml.nvmlDeviceGetName(handle)
            out.append(GpuReading(index=index, name=name.decode() if isinstance(name, bytes) else name,
                                  vendor="nvidia", vram_total_mb=memory.total // MB, vram_used_mb=memory.used // MB,
                                  busy_percent=busy, chiffon_vram_mb=ours // MB))
        return out


class AmdgpuSysfsReader:
    """AMD GPUs through the amdgpu sysfs counters under ``root`` (default ``/sys/class/drm``)."""

    kind = "amd"

    def __init__(self, pids: Callable[[], set[int]], root: Path = Path("/sys/class/drm"),
                 proc: Path = Path("/proc")) -> None:
        self._pids = pids
        self.root = root
        self.proc = proc

    def cards(self) -> list[Path]:
        """The amdgpu ``device`` directories, in card order."""
        found = []
        for card in sorted(self.root.glob("card*"), key=lambda p: int(re.sub(r"\D", "", p.name) or 0)):
            if not re.fullmatch(r"card\d+", card.name):
                continue  # connectors: card0-DP-1
            device = card / "device"
            if _read(device / "vendor") == AMD_VENDOR and (device / "mem_info_vram_total").exists():
                found.append(device)
        return found

    def read(self) -> list[GpuReading]:
        devices = self.cards()
        ours = self._own_vram_kib()
        out = []
        for index, device in enumerate(devices):
            busy = _read(device / "gpu_busy_percent")
            pci = device.resolve().name  # 0000:03:00.0, as fdinfo's drm-pdev names it
            out.append(GpuReading(
                index=index, name=_read(device / "product_name") or f"AMD GPU {device.parent.name}", vendor="amd",
                vram_total_mb=int(_read(device / "mem_info_vram_total") or 0) // MB,
                vram_used_mb=int(_read(device / "mem_info_vram_used") or 0) // MB,
                busy_percent=float(busy) if busy else None, chiffon_vram_mb=ours.get(pci, 0) // 1024))
        return out

    def _own_vram_kib(self) -> dict[str, int]:
        """VRAM of chiffon's processes per PCI device, KiB, counting each DRM client once."""
        seen: set[tuple[str, str]] = set()
        totals: dict[str, int] = {}
        for pid in self._pids():
            for fdinfo in (self.proc / str(pid) / "fdinfo").glob("*"):
                fields = dict(line.split(":", 1) for line in _read(fdinfo).splitlines() if ":" in line)
                pdev, client = fields.get("drm-pdev", "").strip(), fields.get("drm-client-id", "").strip()
                vram = fields.get("drm-memory-vram", "").split()
                if not pdev or not vram or (pdev, client) in seen:
                    continue
                seen.add((pdev, client))
                totals[pdev] = totals.get(pdev, 0) + int(vram[0])
        return totals


class ReplayReader:
    """The readings of a recording, one sample per ``read()``; the last sample repeats at the end.

    A recording is JSON: ``{"kind", "host", "recorded_at", "interval_s", "samples": [[GpuReading...]...]}``.

    Raises (at construction):
        ConfigError: the file is missing or not a recording.
    """

    def __init__(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text())
            self.samples = [[GpuReading(**g) for g in sample] for sample in data["samples"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"hostd.gpu_replay {path}: not a GPU recording ({exc})") from exc
        if not self.samples:
            raise ConfigError(f"hostd.gpu_replay {path}: the recording has no samples")
        self.kind = f"replay:{data.get('kind', '?')}"
        self.position = 0

    def read(self) -> list[GpuReading]:
        sample = self.samples[min(self.position, len(self.samples) - 1)]
        self.position += 1
        return [g.model_copy() for g in sample]


def open_gpu_reader(kind: str, hostd: HostdSettings) -> GpuReader:
    """The reader for ``hosts.<name>.gpu`` (auto: NVML if it initialises, else amdgpu sysfs, else none).

    Raises:
        ConfigError: an explicitly chosen reader cannot work here (no NVML, no amdgpu card).
    """
    if hostd.gpu_replay is not None:
        return ReplayReader(hostd.gpu_replay)

    def pids() -> set[int]:
        return own_pids(hostd.own_processes)

    if kind in ("nvidia", "auto"):
        try:
            return NvmlReader(pids)
        except ConfigError:
            if kind == "nvidia":
                raise
    if kind in ("amd", "auto"):
        reader = AmdgpuSysfsReader(pids)
        if reader.cards():
            return reader
        if kind == "amd":
            raise ConfigError(f"no amdgpu card under {reader.root} (hosts.<name>.gpu is 'amd')")
    return NoGpu()


def record(reader: GpuReader, samples: int, interval_s: float, host: str) -> dict[str, object]:
    """``samples`` readings ``interval_s`` apart, as a recording :class:`ReplayReader` replays."""
    taken = []
    for n in range(samples):
        if n:
            time.sleep(interval_s)
        taken.append([g.model_dump() for g in reader.read()])
    return {"kind": reader.kind, "host": host, "recorded_at": datetime.now(UTC).isoformat(),
            "interval_s": interval_s, "samples": taken}


class BusyDetector:
    """Decides when a host is in use by someone else (a game), with hysteresis.

    In use now: some GPU has more than ``busy_foreign_vram_mb`` of VRAM held by other processes, or is busier
    than ``busy_gpu_percent`` while no chiffon process holds VRAM on it. Busy once that holds for
    ``busy_after_s``; available again once it has been gone for ``free_after_s``.
    """

    def __init__(self, hostd: HostdSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.hostd = hostd
        self.clock = clock
        self.busy = False
        self.reason = ""
        self._since: float | None = None  # when the current (opposite) condition started

    def in_use(self, gpus: list[GpuReading]) -> str:
        """Why the GPUs look in use by someone else now ("" when they do not)."""
        for g in gpus:
            if g.foreign_vram_mb > self.hostd.busy_foreign_vram_mb:
                return f"GPU {g.index} ({g.name}): {g.foreign_vram_mb} MB VRAM held by other processes"
            if g.busy_percent is not None and g.busy_percent > self.hostd.busy_gpu_percent and not g.chiffon_vram_mb:
                return f"GPU {g.index} ({g.name}): {g.busy_percent:.0f}% busy with no chiffon process on it"
        return ""

    def update(self, gpus: list[GpuReading]) -> tuple[bool, str]:
        """Feed one reading; returns ``(busy, reason)``."""
        why = self.in_use(gpus)
        now = self.clock()
        if bool(why) == self.busy:
            self._since = None
            if why:
                self.reason = why
            return self.busy, self.reason
        self._since = now if self._since is None else self._since
        if now - self._since >= (self.hostd.busy_after_s if why else self.hostd.free_after_s):
            self.busy, self.reason, self._since = bool(why), why, None
        return self.busy, self.reason


class HostSnapshot(BaseModel):
    """What a host reports in each heartbeat. Memory in MB, disk in GB (GiB), load as the 1-minute average."""

    host: str
    status: Literal["available", "busy"]
    reason: str = ""
    cpu_cores: int
    cpu_percent: float
    load_1m: float
    ram_total_mb: int
    ram_available_mb: int
    disk_total_gb: float
    disk_free_gb: float
    disk_used_percent: float
    gpu_reader: str
    gpus: list[GpuReading]
    at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat())


def machine(disk_path: Path) -> dict[str, float | int]:
    """CPU, RAM and disk figures of this machine (psutil); the disk is the filesystem holding ``disk_path``."""
    memory = psutil.virtual_memory()
    disk = psutil.disk_usage(str(disk_path if disk_path.exists() else Path.home()))
    return {"cpu_cores": psutil.cpu_count() or 1, "cpu_percent": psutil.cpu_percent(interval=None),
            "load_1m": round(psutil.getloadavg()[0], 2), "ram_total_mb": memory.total // MB,
            "ram_available_mb": memory.available // MB, "disk_total_gb": round(disk.total / 1024**3, 1),
            "disk_free_gb": round(disk.free / 1024**3, 1), "disk_used_percent": disk.percent}


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


class Fit(BaseModel):
    """Whether a model fits on this host now, and the arithmetic behind the answer (MB)."""

    model: str
    need_mb: int
    fits: bool
    reason: str
    gpu: int | None = None
    budget_mb: int | None = None
    free_mb: int | None = None


def capacity(snapshot: HostSnapshot, host: HostConfig, model: str, need_mb: int) -> Fit:
    """Does ``model`` (``need_mb`` of VRAM) fit on some GPU of ``snapshot`` now?

    Per GPU, chiffon may hold at most ``budget = min(total * vram_budget_percent / 100, vram_hard_limit_mb)``,
    and must leave ``vram_reserve_mb`` free on the card. Room for the model is therefore
    ``min(budget - chiffon_used, total - used - reserve)``. A busy host fits nothing.
    """
    if snapshot.status == "busy":
        return Fit(model=model, need_mb=need_mb, fits=False, reason=f"host is busy: {snapshot.reason}")
    if not snapshot.gpus:
        return Fit(model=model, need_mb=need_mb, fits=False, reason="no GPU on this host")
    best: Fit | None = None
    for g in snapshot.gpus:
        budget = int(g.vram_total_mb * host.vram_budget_percent / 100)
        if host.vram_hard_limit_mb is not None:
            budget = min(budget, host.vram_hard_limit_mb)
        room = min(budget - g.chiffon_vram_mb, g.vram_total_mb - g.vram_used_mb - host.vram_reserve_mb)
        fit = Fit(model=model, need_mb=need_mb, fits=need_mb <= room, gpu=g.index, budget_mb=budget, free_mb=room,
                  reason=(f"fits on GPU {g.index}: needs {need_mb} MB, {room} MB left within the budget"
                          if need_mb <= room else
                          f"GPU {g.index}: needs {need_mb} MB, only {max(room, 0)} MB left within the budget "
                          f"({budget} MB for chiffon, {host.vram_reserve_mb} MB reserve, {g.vram_used_mb} MB used)"))
        if best is None or (fit.free_mb or 0) > (best.free_mb or 0):
            best = fit
    assert best is not None
    return best
