"""The REST API (/api/v1) refuses what a token holder must not do, with a JSON error, and changes nothing.

In process: the orchestrator's own HTTP app (FastMCP's Starlette app with the API mounted), driven by httpx over
ASGI, on the session's real PostgreSQL and Redis and a git copy of the example repo.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pyotp
import pytest
import pytest_asyncio
from pydantic import SecretStr

from chiffon.orchestrator.server import create_orchestrator
from chiffon.servers.ansible import plans
from chiffon.servers.ansible.service import AnsibleService
from chiffon.shared.mcp import bearer_verifier
from chiffon.shared.runtime import Runtime

TOKEN = "rest-attack-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest_asyncio.fixture(loop_scope="session")
async def api(rt: Runtime, repo: Path) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on the orchestrator's HTTP app (no worker: nothing here may run)."""
    server = create_orchestrator(AnsibleService.for_runtime(rt, repo), toolsets=())
    server.auth = bearer_verifier(TOKEN)  # what shared.mcp.serve sets before serving HTTP
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=server.http_app()),
                                 base_url="http://127.0.0.1:8765") as client:
        yield client


async def pending(rt: Runtime, repo: Path) -> plans.Plan:
    return await plans.create_plan(rt, await AnsibleService.for_runtime(rt, repo).catalog(), "echo-message.yml")


async def count_plans(rt: Runtime) -> int:
    return int(await rt.store.pool.fetchval("SELECT count(*) FROM plans"))


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
                                     {"Authorization": "Bearer "}])
async def test_no_or_wrong_token_gets_401_with_a_json_body_and_plans_nothing(
        api: httpx.AsyncClient, rt: Runtime, headers: dict[str, str]) -> None:
    before = await count_plans(rt)
    reply = await api.post("/api/v1/plans", json={"request": "deploy redis"}, headers=headers)
    assert reply.status_code == 401 and reply.headers["www-authenticate"].startswith("Bearer")
    assert reply.json()["error"] == "Unauthorized" and "token" in reply.json()["message"]
    assert (await api.get("/api/v1/plans", headers=headers)).status_code == 401
    assert await count_plans(rt) == before


async def test_without_a_verifier_the_api_refuses_every_token(rt: Runtime, repo: Path) -> None:
    server = create_orchestrator(AnsibleService.for_runtime(rt, repo), toolsets=())  # never served over HTTP
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=server.http_app()), base_url="http://h") as c:
        assert (await c.get("/api/v1/plans", headers=AUTH)).status_code == 401


@pytest.mark.parametrize("repo_given", ["/etc", "../..", "/", "~", "/tmp/../etc"])
async def test_a_repo_other_than_the_servers_is_refused(api: httpx.AsyncClient, rt: Runtime, repo_given: str) -> None:
    before = await count_plans(rt)
    reply = await api.post("/api/v1/plans", json={"request": "deploy redis", "repo": repo_given}, headers=AUTH)
    assert reply.status_code == 422, reply.text
    assert reply.json()["error"] == "InvalidInput" and reply.json()["field"] == "repo"
    assert await count_plans(rt) == before


@pytest.mark.parametrize("inventory", ["/etc/passwd", "../../etc/passwd", "inventories/../../../etc/passwd",
                                       "local.ini;id", "$(id)", "a\nb"])
async def test_an_inventory_outside_the_repo_or_with_odd_characters_is_refused(
        api: httpx.AsyncClient, rt: Runtime, inventory: str) -> None:
    before = await count_plans(rt)
    reply = await api.post("/api/v1/plans", json={"request": "deploy redis", "inventory": inventory}, headers=AUTH)
    assert reply.status_code == 422 and reply.json()["field"] == "inventory", reply.text
    assert await count_plans(rt) == before


@pytest.mark.parametrize(("field", "value"), [("inventory", "etc/passwd"), ("limit", "nohost"), ("tags", ["nope"])])
async def test_what_the_repo_does_not_have_is_refused_by_the_planner_naming_what_it_has(
        api: httpx.AsyncClient, rt: Runtime, field: str, value: object) -> None:
    before = await count_plans(rt)
    reply = await api.post("/api/v1/plans", json={"request": "deploy redis", field: value}, headers=AUTH)
    body = reply.json()
    assert reply.status_code == 422 and body["field"] == field, reply.text
    assert "known" in body["message"] or "its tags" in body["message"]
    assert await count_plans(rt) == before


@pytest.mark.parametrize("limit", ["east;id", "east && id", "$(id)", "`id`", "east|cat", "east\nid", "east>x"])
async def test_a_limit_with_shell_metacharacters_is_refused(api: httpx.AsyncClient, rt: Runtime, limit: str) -> None:
    before = await count_plans(rt)
    reply = await api.post("/api/v1/plans", json={"request": "deploy redis", "limit": limit}, headers=AUTH)
    assert reply.status_code == 422 and reply.json()["field"] == "limit", reply.text
    assert await count_plans(rt) == before


@pytest.mark.parametrize("body", [{"request": "deploy redis", "extra_vars": {"ansible_shell_executable": "/x"}},
                                  {"request": ""}, {"request": "   "}, {"request": "x" * 2001},
                                  {"request": "deploy redis", "tags": ["a;b"]},
                                  {"request": "deploy redis", "tags": [f"t{i}" for i in range(21)]}, {}])
async def test_bad_plan_bodies_are_refused_naming_the_field(api: httpx.AsyncClient, rt: Runtime,
                                                            body: dict[str, object]) -> None:
    before = await count_plans(rt)
    reply = await api.post("/api/v1/plans", json=body, headers=AUTH)
    assert reply.status_code == 422 and reply.json()["error"] == "InvalidInput" and reply.json()["message"]
    assert await count_plans(rt) == before


async def test_a_request_that_matches_nothing_is_422_with_candidates(api: httpx.AsyncClient, rt: Runtime) -> None:
    before = await count_plans(rt)
    reply = await api.post("/api/v1/plans", json={"request": "bake a sourdough loaf"}, headers=AUTH)
    assert reply.status_code == 422 and reply.json()["error"] == "NoMatch", reply.text
    assert isinstance(reply.json()["candidates"], list)
    assert await count_plans(rt) == before


@pytest.mark.parametrize("path", ["/api/v1/plans/plan-zzzzzzzzzz", "/api/v1/plans/..%2F..%2Fetc",
                                  "/api/v1/plans/plan-0123456789'--", "/api/v1/runs/run-1", "/api/v1/runs/x",
                                  "/api/v1/runs/plan-0123456789abc/events"])
async def test_malformed_ids_are_refused_before_any_lookup(api: httpx.AsyncClient, path: str) -> None:
    reply = await api.get(path, headers=AUTH)
    assert reply.status_code in (404, 422) and reply.json()["error"] in ("InvalidInput", "NotFound"), reply.text


async def test_unknown_well_formed_ids_are_404(api: httpx.AsyncClient) -> None:
    for path in ("/api/v1/plans/plan-0123456789", "/api/v1/runs/run-0123456789", "/api/v1/runs/plan-0123456789"):
        reply = await api.get(path, headers=AUTH)
        assert reply.status_code == 404 and reply.json()["error"] == "PlanNotFound", reply.text


async def test_a_status_filter_outside_the_allow_list_is_refused(api: httpx.AsyncClient) -> None:
    for query in ("status=pending_approval'%20OR%201=1--", "status=all", "limit=0", "limit=501"):
        reply = await api.get(f"/api/v1/plans?{query}", headers=AUTH)
        assert reply.status_code == 422 and reply.json()["error"] == "InvalidInput", reply.text


async def test_approval_under_the_default_policy_is_403_says_how_a_human_approves_and_records_nothing(
        api: httpx.AsyncClient, rt: Runtime, repo: Path) -> None:
    assert rt.settings.approvals.allow_tool_approval is False
    plan = await pending(rt, repo)
    reply = await api.post(f"/api/v1/plans/{plan.id}/approve", json={"reason": "from n8n"}, headers=AUTH)
    assert reply.status_code == 403 and reply.json()["error"] == "ApprovalRefused"
    assert f"chiffon approve {plan.id}" in reply.json()["message"] and "console" in reply.json()["message"]
    assert (await plans.get_plan(rt, plan.id)).status == "pending_approval"
    assert await rt.store.pool.fetchval("SELECT count(*) FROM approvals WHERE plan_id=$1", plan.id) == 0


async def test_with_totp_set_up_an_api_approval_needs_the_current_code(
        api: httpx.AsyncClient, rt: Runtime, repo: Path) -> None:
    secret = pyotp.random_base32()
    rt.settings.approvals.allow_tool_approval = True
    rt.settings.approvals.totp_secret = SecretStr(secret)
    try:
        plan = await pending(rt, repo)
        missing = await api.post(f"/api/v1/plans/{plan.id}/approve", json={"reason": "ok", "code": ""},
                                 headers=AUTH)  # Home Assistant's template renders no code as ""
        wrong = f"{(int(pyotp.TOTP(secret).now()) + 1) % 1_000_000:06d}"
        bad = await api.post(f"/api/v1/plans/{plan.id}/approve", json={"reason": "ok", "code": wrong},
                             headers=AUTH)
        assert (missing.status_code, bad.status_code) == (422, 422), (missing.text, bad.text)
        assert missing.json()["field"] == "code" and bad.json()["field"] == "code"
        assert (await plans.get_plan(rt, plan.id)).status == "pending_approval"
    finally:
        rt.settings.approvals.allow_tool_approval = False
        rt.settings.approvals.totp_secret = None


async def test_a_rejection_is_recorded_as_the_tokens_word_and_a_second_decision_is_409(
        api: httpx.AsyncClient, rt: Runtime, repo: Path) -> None:
    plan = await pending(rt, repo)
    reply = await api.post(f"/api/v1/plans/{plan.id}/reject", json={"reason": "not now"}, headers=AUTH)
    assert reply.status_code == 200 and reply.json()["status"] == "rejected", reply.text
    row = await rt.store.pool.fetchrow("SELECT approver, channel FROM approvals WHERE plan_id=$1", plan.id)
    assert row["channel"] == "api" and row["approver"].startswith("chiffon-operator from ")
    again = await api.post(f"/api/v1/plans/{plan.id}/reject", json={}, headers=AUTH)
    assert again.status_code == 409 and again.json()["error"] == "PlanStateError"
    events = await api.get(f"/api/v1/runs/{plan.id}/events", headers=AUTH)
    assert events.headers["content-type"].startswith("text/event-stream")
    assert "event: end" in events.text and '"status": "rejected"' in events.text


async def test_health_answers_without_a_token_and_says_only_whether_parts_answer(api: httpx.AsyncClient) -> None:
    reply = await api.get("/api/v1/health")
    assert reply.status_code in (200, 503) and set(reply.json()) >= {"service", "status", "parts"}


async def test_openapi_lists_every_route_and_the_bearer_scheme(api: httpx.AsyncClient) -> None:
    doc = (await api.get("/api/v1/openapi.json")).json()
    assert {"/plans", "/plans/{plan_id}", "/plans/{plan_id}/approve", "/plans/{plan_id}/reject", "/runs/{run_id}",
            "/runs/{run_id}/events", "/health"} <= set(doc["paths"])
    assert doc["servers"] == [{"url": "/api/v1"}]
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"].lower() == "bearer"
    assert doc["components"]["schemas"]["PlanBody"]["additionalProperties"] is False
