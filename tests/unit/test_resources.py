"""GPU readers, the busy signal and model capacity, on replayed recordings and a sysfs tree in the real formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chiffon.servers.hostd.resources import (
    AmdgpuSysfsReader,
    BusyDetector,
    GpuReading,
    HostSnapshot,
    ReplayReader,
    capacity,
    open_gpu_reader,
)
from chiffon.shared.config import HostConfig, HostdSettings
from chiffon.shared.errors import ConfigError

FIXTURES = Path(__file__).parents[1] / "fixtures" / "gpu"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def replay_busy(recording: str, hostd: HostdSettings, step_s: float) -> list[bool]:
    """Busy or not after each sample of ``recording``, one sample every ``step_s`` seconds."""
    reader, clock = ReplayReader(FIXTURES / recording), Clock()
    detector = BusyDetector(hostd, clock)
    out = []
    for _ in reader.samples:
        out.append(detector.update(reader.read())[0])
        clock.now += step_s
    return out


def test_a_game_beside_chiffons_model_makes_the_desktop_busy_and_quitting_frees_it() -> None:
    hostd = HostdSettings(busy_after_s=10, free_after_s=5)
    # samples: idle, idle, llama-server answering (chiffon's own load), game x6, game quit x2
    busy = replay_busy("amd-rx550-gaming.json", hostd, step_s=5)
    assert busy[:4] == [False] * 4  # chiffon's own 88-92% busy does not count
    assert busy[4:6] == [False, False]  # the game must last busy_after_s before the host goes busy
    assert busy[6:9] == [True, True, True]
    assert busy[9:] == [True, False]  # quit: still busy until free_after_s has passed, then available


def test_hysteresis_holds_busy_until_free_after_s() -> None:
    hostd = HostdSettings(busy_after_s=10, free_after_s=60)
    busy = replay_busy("amd-rx550-gaming.json", hostd, step_s=5)
    assert busy[-2:] == [True, True]  # 10 s after the game quit, free_after_s=60 has not passed


def test_a_gpu_busy_with_no_chiffon_process_is_in_use() -> None:
    detector = BusyDetector(HostdSettings(busy_after_s=0, free_after_s=0))
    reader = ReplayReader(FIXTURES / "nvidia-8gb-game.json")
    assert [detector.update(reader.read())[0] for _ in range(4)] == [False, False, True, True]
    assert "VRAM held by other processes" in detector.reason


def test_the_last_sample_repeats_when_the_recording_ends() -> None:
    reader = ReplayReader(FIXTURES / "nvidia-8gb-game.json")
    last = [reader.read() for _ in range(6)]
    assert last[-1] == last[-2] == last[3]


def snapshot(gpus: list[GpuReading], status: str = "available") -> HostSnapshot:
    return HostSnapshot(host="desktop", status=status, cpu_cores=6, cpu_percent=5, load_1m=0.3, ram_total_mb=16000,
                        ram_available_mb=9000, disk_total_gb=500, disk_free_gb=200, disk_used_percent=60,
                        gpu_reader="test", gpus=gpus)


def rx550(used: int, ours: int) -> GpuReading:
    return GpuReading(index=0, name="RX 550", vendor="amd", vram_total_mb=4096, vram_used_mb=used,
                      busy_percent=0, chiffon_vram_mb=ours)


def test_capacity_respects_budget_hard_limit_and_reserve() -> None:
    host = HostConfig(vram_budget_percent=75, vram_reserve_mb=256)
    # budget 3072; chiffon holds 1900 → 1172 left in budget; card has 4096-2200-256 = 1640 free
    fit = capacity(snapshot([rx550(2200, 1900)]), host, "small", 1100)
    assert fit.fits and fit.budget_mb == 3072 and fit.free_mb == 1172
    assert not capacity(snapshot([rx550(2200, 1900)]), host, "medium", 1200).fits
    capped = HostConfig(vram_budget_percent=100, vram_hard_limit_mb=2000, vram_reserve_mb=0)
    assert capacity(snapshot([rx550(300, 0)]), capped, "m", 2000).fits
    assert not capacity(snapshot([rx550(300, 0)]), capped, "m", 2001).fits
    reserve = HostConfig(vram_budget_percent=100, vram_reserve_mb=512)
    assert not capacity(snapshot([rx550(3700, 0)]), reserve, "tiny", 100).fits  # 4096-3700-512 < 100


def test_a_busy_host_or_one_without_gpu_fits_nothing() -> None:
    busy = capacity(snapshot([rx550(300, 0)], "busy"), HostConfig(), "m", 10)
    assert not busy.fits and busy.reason.startswith("host is busy")
    assert capacity(snapshot([]), HostConfig(), "m", 10).reason == "no GPU on this host"


def write_card(root: Path, card: str, pci: str, vendor: str, total: int, used: int, busy: int) -> None:
    """A card in the amdgpu sysfs layout: class/drm/cardN/device -> the PCI device directory."""
    device = root / "devices" / pci
    device.mkdir(parents=True)
    for name, value in {"vendor": vendor, "mem_info_vram_total": total, "mem_info_vram_used": used,
                        "gpu_busy_percent": busy, "product_name": "Radeon RX 550"}.items():
        (device / name).write_text(f"{value}\n")
    (root / "class" / "drm" / card).mkdir(parents=True)
    (root / "class" / "drm" / card / "device").symlink_to(device)


def test_amdgpu_sysfs_reader_reads_the_kernel_counters_and_chiffons_fdinfo(tmp_path: Path) -> None:
    write_card(tmp_path, "card0", "0000:01:00.0", "0x1002", 4294967296, 2340421632, 87)
    write_card(tmp_path, "card1", "0000:00:02.0", "0x8086", 0, 0, 0)  # an Intel iGPU is not read
    (tmp_path / "class" / "drm" / "card0-DP-1").mkdir()  # a connector, not a card
    fdinfo = tmp_path / "proc" / "4242" / "fdinfo"
    fdinfo.mkdir(parents=True)
    entry = "pos:\t0\nflags:\t02100002\ndrm-driver:\tamdgpu\ndrm-pdev:\t0000:01:00.0\ndrm-client-id:\t17\n" \
            "drm-memory-vram:\t1951744 KiB\ndrm-memory-gtt:\t2048 KiB\n"
    (fdinfo / "5").write_text(entry)
    (fdinfo / "9").write_text(entry)  # the same DRM client on a second fd counts once
    reader = AmdgpuSysfsReader(lambda: {4242}, root=tmp_path / "class" / "drm", proc=tmp_path / "proc")
    [gpu] = reader.read()
    assert (gpu.vram_total_mb, gpu.vram_used_mb, gpu.busy_percent) == (4096, 2232, 87.0)
    assert gpu.chiffon_vram_mb == 1906 and gpu.foreign_vram_mb == 326
    assert gpu.name == "Radeon RX 550" and gpu.vendor == "amd"


def test_choosing_a_reader_this_host_lacks_is_a_clear_error(tmp_path: Path) -> None:
    reader = open_gpu_reader("auto", HostdSettings())
    if reader.kind == "nvidia":
        pytest.skip("this machine has an NVIDIA driver")
    with pytest.raises(ConfigError, match="NVML unavailable"):
        open_gpu_reader("nvidia", HostdSettings())
    assert open_gpu_reader("none", HostdSettings()).read() == []


@pytest.mark.parametrize("content", ["not json", json.dumps({"samples": []}), json.dumps({"x": 1})])
def test_a_bad_recording_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "rec.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match="rec.json"):
        ReplayReader(path)
