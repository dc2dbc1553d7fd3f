"""The homelab's machines (``hosts:``) and chiffon-hostd on each (``hostd:``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from chiffon.shared.config.base import Section


class HostConfig(Section):
    """One machine of the homelab, as the deploy kit and the scheduler see it."""

    address: str = Field("", description="DNS name or IP the other hosts use.")
    hardware: str = Field("", description="Free-text hardware summary (CPU, RAM, GPU).")
    runs: list[str] = Field(default_factory=list, description="Services this host runs.")
    chiffon: list[Literal["orchestrator", "worker", "hostd", "console"]] = Field(
        default_factory=list, description="chiffon services on this host (systemd units from `chiffon deploy systemd`, "
                                          "processes from `chiffon up`).")
    gpu: Literal["auto", "nvidia", "amd", "none"] = Field(
        "auto", description="How hostd reads the GPU: NVML (nvidia), amdgpu sysfs (amd), auto-detect, or none.")
    vram_budget_percent: float = Field(
        90.0, gt=0, le=100, description="Share of the card's VRAM chiffon may fill with models, percent.")
    vram_hard_limit_mb: int | None = Field(None, gt=0, description="Absolute cap on chiffon's VRAM use, MB.")
    vram_reserve_mb: int = Field(256, ge=0, description="Emergency reserve always left free for the desktop, MB.")


class HostdSettings(Section):
    """chiffon-hostd: where it listens and how clients reach it, its heartbeats, the busy signal and model
    capacity, and how the scheduler treats hosts without one."""

    url: str | None = Field(
        None, description="chiffon-hostd for chiffon-voice, e.g. http://ai:8770; unset runs the engines in-process.")
    token: SecretStr | None = Field(
        None, description="Bearer token hostd requires (CHIFFON_HOSTD__TOKEN); needed to bind beyond loopback.")
    bind: str = Field("127.0.0.1", description="Address chiffon-hostd listens on.")
    port: int = Field(8770, ge=1, le=65535, description="Port chiffon-hostd listens on.")
    assume_available: bool = Field(
        True, description="A host that never sent a heartbeat reads \"unknown\" and still takes work (until host "
                          "daemons report); off: it counts as offline and takes none.")

    heartbeat_s: float = Field(5.0, gt=0, description="Seconds between heartbeats.")
    heartbeat_ttl_s: float = Field(15.0, gt=0, description="A heartbeat key lives this long; a host whose key "
                                                           "expired is offline.")
    busy_gpu_percent: float = Field(50.0, ge=0, le=100, description="GPU busy percent above which, with no chiffon "
                                                                    "process on the card, the host is in use.")
    busy_foreign_vram_mb: int = Field(1024, ge=0, description="VRAM held by processes other than chiffon's above "
                                                              "which the host is in use (a game), MB.")
    busy_after_s: float = Field(30.0, ge=0, description="How long the in-use condition must hold to go busy.")
    free_after_s: float = Field(60.0, ge=0, description="How long it must be gone to go back to available.")
    own_processes: list[str] = Field(
        ["llama-server", "ollama", "chiffon-hostd"], description="Process names whose GPU use counts as chiffon's.")
    gpu_replay: Path | None = Field(None, description="Replay GPU readings from this recording (`chiffon host "
                                                      "record`) instead of reading the hardware.")
    model_vram_mb: dict[str, int] = Field(
        default_factory=dict, description="VRAM each model needs loaded (weights plus KV cache at its context), MB; "
                                          "GET /capacity?model= answers from it.")

    @model_validator(mode="after")
    def _ttl_outlives_beat(self) -> HostdSettings:
        if self.heartbeat_ttl_s <= self.heartbeat_s:
            raise ValueError(f"heartbeat_ttl_s ({self.heartbeat_ttl_s}) must exceed heartbeat_s ({self.heartbeat_s}), "
                             "or every host flaps offline between beats")
        return self
