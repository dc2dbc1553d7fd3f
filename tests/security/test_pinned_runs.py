"""Attack 3: a repo edited after approval, a tampered snapshot, an approval used days later."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from chiffon.servers.ansible import execution, plans, snapshot
from chiffon.servers.ansible.service import AnsibleService
from chiffon.shared.errors import PlanStateError
from chiffon.shared.runtime import Runtime
from tests.conftest import make_repo


@pytest.fixture
def fresh_repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "iac")


async def approved_echo(rt: Runtime, repo: Path) -> tuple[AnsibleService, plans.Plan]:
    svc = AnsibleService.for_runtime(rt, repo)
    plan = await plans.create_plan(rt, await svc.catalog(), "echo-message.yml", extra_vars={"message": "approved"})
    return svc, await plans.decide(rt, plan.id, "approved", approver="tester", channel="cli")


async def test_a_playbook_edited_after_approval_runs_as_approved(rt: Runtime, fresh_repo: Path,
                                                                 targets: Path) -> None:
    svc, plan = await approved_echo(rt, fresh_repo)
    pwned = targets / "ai" / "pwned"
    echo = fresh_repo / "echo-message.yml"
    echo.write_text(echo.read_text() + f"    - name: Added after approval\n      ansible.builtin.command: touch {pwned}\n")
    result = await execution.execute(rt, await svc.catalog(), plan.id)
    assert result.status == "succeeded" and not pwned.exists()
    assert "Added after approval" not in {e["task"] for e in await execution.run_events(rt, result.run_id)}
    assert (targets / "ai" / "echo.txt").read_text() == "approved"


async def test_an_inventory_edited_after_approval_is_not_used(rt: Runtime, fresh_repo: Path) -> None:
    svc, plan = await approved_echo(rt, fresh_repo)
    inventory = fresh_repo / "inventories" / "local.ini"
    inventory.write_text(inventory.read_text().replace("ansible_connection=local", "ansible_connection=ssh"))
    result = await execution.execute(rt, await svc.catalog(), plan.id)
    assert result.status == "succeeded"  # ssh to "ai" would be unreachable: the approved inventory ran


async def test_a_snapshot_changed_after_approval_is_refused(rt: Runtime, fresh_repo: Path) -> None:
    svc, plan = await approved_echo(rt, fresh_repo)
    copy = rt.settings.snapshots_dir / plan.snapshot_digest / "tree" / "echo-message.yml"
    os.chmod(copy, 0o644)
    copy.write_text(copy.read_text().replace("Write the message", "Write something else"))
    with pytest.raises(PlanStateError, match="was modified after approval \\(echo-message.yml\\)"):
        await execution.execute(rt, await svc.catalog(), plan.id)
    assert await rt.store.pool.fetchval("SELECT count(*) FROM runs WHERE plan_id=$1", plan.id) == 0


async def test_an_approval_older_than_the_ttl_is_refused_and_the_plan_expires(rt: Runtime, fresh_repo: Path) -> None:
    svc, plan = await approved_echo(rt, fresh_repo)
    await rt.store.pool.execute("UPDATE approvals SET decided_at = now() - interval '25 hours' WHERE plan_id=$1",
                                plan.id)
    with pytest.raises(PlanStateError, match="expired"):
        await execution.execute(rt, await svc.catalog(), plan.id)
    assert (await plans.get_plan(rt, plan.id)).status == "expired"
    assert await rt.store.pool.fetchval("SELECT count(*) FROM runs WHERE plan_id=$1", plan.id) == 0
    assert rt.audit.query(plan_id=plan.id, limit=5)[0].body["kind"] == "expiry"


async def test_the_plan_and_its_approval_record_the_same_snapshot_digest(rt: Runtime, fresh_repo: Path) -> None:
    _, plan = await approved_echo(rt, fresh_repo)
    recorded = await rt.store.pool.fetchval("SELECT snapshot_digest FROM approvals WHERE plan_id=$1", plan.id)
    assert plan.snapshot_digest and len(plan.snapshot_digest) == 64 and recorded == plan.snapshot_digest
    bodies = [r.body for r in rt.audit.query(plan_id=plan.id, limit=5)]
    assert {b["kind"]: b.get("snapshot") for b in bodies} == {"plan": plan.snapshot_digest,
                                                               "approval": plan.snapshot_digest}


def forget_locally(rt: Runtime, digest: str) -> None:
    """What a worker on another host has of a plan's snapshot: nothing (its own CHIFFON_HOME)."""
    store = rt.settings.snapshots_dir
    for _name, mode, sha in json.loads((store / digest / "manifest.json").read_text())["files"]:
        snapshot.blob_path(store, sha, mode).unlink(missing_ok=True)
    shutil.rmtree(store / digest)


async def test_a_snapshot_changed_in_postgresql_is_refused(rt: Runtime, fresh_repo: Path) -> None:
    svc, plan = await approved_echo(rt, fresh_repo)
    assert plan.snapshot_digest is not None
    digest = plan.snapshot_digest
    forget_locally(rt, digest)
    manifest = await rt.store.pool.fetchval("SELECT manifest FROM snapshot_manifests WHERE digest=$1", digest)
    evil = b"- hosts: all\n  tasks:\n    - ansible.builtin.command: touch /tmp/pwned\n"
    sha = hashlib.sha256(evil).hexdigest()
    manifest["files"] = [[n, m, sha if n == "echo-message.yml" else h] for n, m, h in manifest["files"]]
    await rt.store.pool.execute("INSERT INTO snapshot_blobs VALUES ($1, $2) ON CONFLICT DO NOTHING", sha, evil)
    await rt.store.pool.execute("UPDATE snapshot_manifests SET manifest=$2 WHERE digest=$1", digest, manifest)
    with pytest.raises(PlanStateError, match="in PostgreSQL does not match its digest"):
        await execution.execute(rt, await svc.catalog(), plan.id)
    assert await rt.store.pool.fetchval("SELECT count(*) FROM runs WHERE plan_id=$1", plan.id) == 0
    # the next plan of the same content writes the right manifest again
    await approved_echo(rt, fresh_repo)
    assert await rt.store.pool.fetchval("SELECT manifest FROM snapshot_manifests WHERE digest=$1", digest) != manifest

