"""The REST API end to end: ``chiffon serve --transport http`` as a real process, driven over HTTP with httpx as n8n
or Home Assistant would (curl-equivalent calls, a named token): plan the Uptime Kuma request against the example
repo, approve it with the current one-time code, follow the run's Server-Sent Events to the end, read the run.

The server runs with the policy that lets a token approve (``approvals.allow_tool_approval``) and TOTP set up, so
the approval needs the code; the refusal under the default policy is in tests/security/test_rest_api_attacks.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest

from chiffon.orchestrator.api.run_routes import follow
from chiffon.servers.ansible import plans
from chiffon.servers.ansible.service import AnsibleService
from chiffon.shared.runtime import Runtime
from tests.conftest import KUMA_REQUEST, stop_group, wait_healthy
from tests.e2e.test_cli import chiffon
from tests.fixtures import docker_standin
from tests.security.test_remote_ide import CHIFFON, free_port

SECRET = pyotp.random_base32()


@pytest.fixture(scope="module")
def served(home: Path, repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The orchestrator over HTTP on loopback with a named token, tool approval on and TOTP set up; Docker's
    stand-in with its daemon down (the run applies, Uptime Kuma does not start: outcome partial)."""
    targets = tmp_path_factory.mktemp("rest-targets")
    docker = docker_standin.install(targets / "docker-bin", daemon=False)
    env = {**os.environ, "CHIFFON_HOME": str(home), "HOMELAB_ROOT": str(targets),
           "PATH": f"{docker}:{os.environ['PATH']}", "CHIFFON_APPROVALS__ALLOW_TOOL_APPROVAL": "true",
           "CHIFFON_APPROVALS__TOTP_SECRET": SECRET}
    name, port = f"n8n-{secrets.token_hex(4)}", free_port()
    made = chiffon(env, "token", "create", name)
    assert made.returncode == 0, made.stderr
    log = targets / "serve.log"
    with log.open("w") as sink:
        proc = subprocess.Popen([CHIFFON, "serve", "--transport", "http", "--port", str(port), "--repo", str(repo)],
                                env=env, stdout=subprocess.DEVNULL, stderr=sink, start_new_session=True)
    try:
        wait_healthy(f"http://127.0.0.1:{port}/health", proc, log.read_text, timeout_s=180)
        yield {"base": f"http://127.0.0.1:{port}/api/v1", "token": made.stdout.strip(), "name": name, "env": env,
               "targets": targets, "log": log}
    finally:
        stop_group(proc)
        chiffon(env, "token", "revoke", name)


def auth(served: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {served['token']}"}


async def read_events(client: httpx.AsyncClient, url: str, headers: dict[str, str]) -> list[tuple[str, Any]]:
    """``(event, data)`` of each SSE message until the stream closes; comments as ``("comment", text)``."""
    seen: list[tuple[str, Any]] = []
    async with client.stream("GET", url, headers=headers, timeout=httpx.Timeout(30, read=120)) as reply:
        assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/event-stream")
        event, data = "message", []
        async for line in reply.aiter_lines():
            if line.startswith(":"):
                seen.append(("comment", line))
            elif line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                data.append(line.split(":", 1)[1].strip())
            elif line == "" and data:
                seen.append((event, json.loads("\n".join(data))))
                event, data = "message", []
    return seen


async def test_plan_approve_with_the_code_and_follow_the_run_to_its_outcome(served: dict[str, Any],
                                                                              repo: Path) -> None:
    base, headers = served["base"], auth(served)
    async with httpx.AsyncClient(timeout=300) as http:
        made = await http.post(f"{base}/plans", json={"request": KUMA_REQUEST}, headers=headers)
        assert made.status_code == 201, made.text + served["log"].read_text()[-3000:]
        plan = made.json()
        plan_id = plan["plan_id"]
        assert plan["status"] == "awaiting_approval" and plan["playbook"] == "deploy-uptime-kuma.yml"

        cli = chiffon({**served["env"]}, "run", KUMA_REQUEST, "--repo", str(repo), "--json")
        assert cli.returncode == 3, cli.stderr  # awaits approval: the same keys as the REST body
        assert set(json.loads(cli.stdout)) <= set(plan), set(json.loads(cli.stdout)) - set(plan)

        waiting = (await http.get(f"{base}/plans", params={"status": "pending_approval"}, headers=headers)).json()
        assert plan_id in [p["plan_id"] for p in waiting["plans"]]
        assert all(p["plan_status"] == "pending_approval" for p in waiting["plans"])
        one = (await http.get(f"{base}/plans/{plan_id}", headers=headers)).json()
        assert one["plan_id"] == plan_id and one["risk"] in ("low", "medium", "high") and one["diff"]

        following = asyncio.ensure_future(read_events(http, f"{base}/runs/{plan_id}/events", headers))
        await asyncio.sleep(1)  # the stream is open before the approval: what it gets is live
        approved = await http.post(f"{base}/plans/{plan_id}/approve", headers=headers,
                                   json={"reason": "approved from the REST e2e test",
                                         "code": pyotp.TOTP(SECRET).now()})
        assert approved.status_code == 202, approved.text
        assert approved.json()["plan_status"] == "approved" and approved.json()["run_task"]
        events = await asyncio.wait_for(following, 600)

        progress = [data for kind, data in events if kind == "progress"]
        ends = [data for kind, data in events if kind == "end"]
        assert progress and [p["seq"] for p in progress] == sorted({p["seq"] for p in progress})
        assert {"seq", "status", "host", "task", "changed"} <= set(progress[0])
        assert len(ends) == 1 and events[-1][0] == "end"
        end = ends[0]
        assert end["outcome"] == "partial" and end["outcome_reasons"][0].startswith("Uptime Kuma is not running")

        run = (await http.get(f"{base}/runs/{plan_id}", headers=headers)).json()
        assert (run["outcome"], run["status"], run["run_id"]) == ("partial", "succeeded", end["run_id"])
        assert [c["name"] for c in run["checks"]] == [c["name"] for c in end["checks"]]
        assert [(c["name"], c["ok"]) for c in run["checks"]] == [("Uptime Kuma is running", False),
                                                                 ("Uptime Kuma answers on port 3001", False)]
        assert run["approval"]["channel"] == "api"
        assert run["approval"]["approver"] == f"token:{served['name']} from 127.0.0.1 + totp"
        by_run_id = (await http.get(f"{base}/runs/{run['run_id']}", headers=headers)).json()
        assert by_run_id["plan_id"] == plan_id and by_run_id["outcome"] == "partial"

        replay = await read_events(http, f"{base}/runs/{run['run_id']}/events", headers)  # after the end: stored
        assert [d["seq"] for k, d in replay if k == "progress"] == [p["seq"] for p in progress]
        assert replay[-1][0] == "end" and replay[-1][1]["outcome"] == "partial"
    monitors = json.loads((served["targets"] / "east" / "uptime-kuma" / "monitors.json").read_text())
    assert monitors["monitorList"]


def test_without_a_token_or_with_a_wrong_one_the_api_answers_401_in_json(served: dict[str, Any]) -> None:
    base = served["base"]
    for headers in ({}, {"Authorization": "Bearer not-the-token"}):
        for method, path in (("GET", "/plans"), ("POST", "/plans"), ("GET", "/runs/plan-0123456789")):
            reply = httpx.request(method, f"{base}{path}", headers=headers, json={"request": "deploy redis"},
                                  timeout=30)
            assert reply.status_code == 401, (method, path, reply.text)
            assert reply.json()["error"] == "Unauthorized" and reply.headers["www-authenticate"].startswith("Bearer")


def test_a_revoked_token_is_refused_at_once(served: dict[str, Any]) -> None:
    name = f"ha-{secrets.token_hex(4)}"
    made = chiffon(served["env"], "token", "create", name)
    headers = {"Authorization": f"Bearer {made.stdout.strip()}"}
    assert httpx.get(f"{served['base']}/plans", headers=headers, timeout=30).status_code == 200
    assert chiffon(served["env"], "token", "revoke", name).returncode == 0
    assert httpx.get(f"{served['base']}/plans", headers=headers, timeout=30).status_code == 401


def test_openapi_document_and_health_are_served(served: dict[str, Any]) -> None:
    doc = httpx.get(f"{served['base']}/openapi.json", timeout=30).json()
    assert {"/plans", "/plans/{plan_id}/approve", "/runs/{run_id}/events"} <= set(doc["paths"])
    assert doc["servers"] == [{"url": "/api/v1"}]
    health = httpx.get(f"{served['base']}/health", timeout=30)
    assert health.status_code == 200 and health.json()["service"] == "chiffon"


def test_another_host_header_is_refused_as_for_mcp(served: dict[str, Any]) -> None:
    reply = httpx.get(f"{served['base']}/plans", headers={**auth(served), "Host": "evil.example"}, timeout=30)
    assert reply.status_code == 421  # DNS rebinding: the same guard as /mcp


async def test_an_open_stream_keeps_alive_and_ends_when_the_plan_is_rejected(rt: Runtime, repo: Path) -> None:
    plan = await plans.create_plan(rt, await AnsibleService.for_runtime(rt, repo).catalog(), "echo-message.yml")
    chunks: list[str] = []
    first = asyncio.Event()

    async def read() -> None:
        async for chunk in follow(rt, plan.id, heartbeat_s=0.2):
            chunks.append(chunk)
            first.set()

    reading = asyncio.ensure_future(read())
    await asyncio.wait_for(first.wait(), 60)  # a keep-alive comment: the stream is open, the plan still pending
    assert chunks[0] == ": keep-alive\n\n" and not reading.done()
    await plans.decide(rt, plan.id, "rejected", approver="test", channel="api")
    await asyncio.wait_for(reading, 60)
    assert chunks[-1].startswith("event: end\n")
    end = json.loads(chunks[-1].split("data: ", 1)[1])
    assert (end["status"], end["outcome"], end["run_id"]) == ("rejected", None, None)


def test_tags_given_are_the_tags_the_plan_runs(served: dict[str, Any]) -> None:
    reply = httpx.post(f"{served['base']}/plans", json={"request": "deploy redis", "tags": ["cache"], "limit": "east"},
                       headers=auth(served), timeout=300)
    assert reply.status_code == 201, reply.text
    plan = reply.json()
    assert (plan["playbook"], plan["tags"], plan["limit"]) == ("deploy-redis.yml", ["cache"], "east")
