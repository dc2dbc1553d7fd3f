"""``chiffon doctor``: check every configured part and say what is wrong."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

from servers.ansible.service import AnsibleService
from shared.config import Settings
from shared.errors import ChiffonError
from shared.health import Health, Status, probe
from shared.runtime import Runtime, open_runtime


async def _checks(rt: Runtime, svc: AnsibleService) -> list[Health]:
    settings = rt.settings

    async def postgres() -> tuple[Status, str]:
        version = await rt.store.pool.fetchval("SHOW server_version")
        migrations = await rt.store.pool.fetchval("SELECT max(version) FROM schema_migrations")
        where = "embedded in " + str(settings.home / "postgres") if settings.database_url is None else rt.store.display_url
        return ("healthy" if settings.database_url is None else "ok"), f"PostgreSQL {version}, schema v{migrations}, {where}"

    async def redis() -> tuple[Status, str]:
        info = await rt.bus.redis.info("server")
        where = "embedded" if settings.redis_url is None else rt.bus.url
        return ("healthy" if settings.redis_url is None else "ok"), f"Redis {info['redis_version']}, {where}"

    async def audit() -> tuple[Status, str]:
        count = len(await asyncio.to_thread(rt.audit.query, limit=100_000))
        return "ok", f"{rt.audit.path}: {count} record(s)"

    async def repo() -> tuple[Status, str]:
        catalog = await svc.catalog()
        return "ok", f"{catalog.root}: {len(catalog.playbooks)} playbook(s), inventory {catalog.inventory}"

    async def ansible() -> tuple[Status, str]:
        binary = Path(sys.executable).with_name("ansible-playbook")
        out = await asyncio.to_thread(subprocess.run, [str(binary), "--version"], capture_output=True, text=True, check=True)
        return "ok", out.stdout.splitlines()[0]

    async def docker() -> tuple[Status, str]:
        if not shutil.which("docker"):
            return "degraded", "no docker CLI: playbooks render stacks but do not start containers"
        proc = await asyncio.to_thread(subprocess.run, ["docker", "info"], capture_output=True, text=True, check=False)
        return ("ok", "Docker engine reachable") if proc.returncode == 0 else (
            "degraded", "docker CLI present but no engine: containers are not started")

    async def llm() -> tuple[Status, str]:
        if not settings.llm.tiers:
            return "ok", "no tiers configured (llm.tiers): planning uses retrieval only"
        from servers.llm.router import open_router

        async with open_router(rt) as router:
            report = await router.models()
        down = [f"{t.tier}: {t.why_unavailable}" for t in report.tiers if not t.available]
        summary = ", ".join(f"{t.tier}={t.model}" for t in report.tiers)
        if down:
            return ("failed" if len(down) == len(report.tiers) else "degraded"), f"{summary}; " + "; ".join(down)
        return "ok", f"{summary}; external budget left ${report.external_budget_left_usd:.2f}"

    names = {"postgresql": postgres, "redis": redis, "audit": audit, "iac-repo": repo,
             "ansible": ansible, "docker": docker, "llm": llm}
    return list(await asyncio.gather(*(probe(n, c) for n, c in names.items())))


async def run_doctor(settings: Settings) -> list[Health]:
    """Health of every part; a part that cannot even open is reported ``failed``."""
    try:
        async with open_runtime(settings) as rt:
            return await _checks(rt, AnsibleService.for_runtime(rt))
    except ChiffonError as exc:
        return [Health(service="runtime", status="failed", issues=[str(exc)], detail=str(exc))]
