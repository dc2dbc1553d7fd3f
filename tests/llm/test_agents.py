"""Role agents end to end on real PostgreSQL, Redis, ChromaDB and git.

Scripted behaviour (a denied call, a rejection, garbage replies) comes from the
Anthropic fake, which speaks the real Messages API; the pipeline's flow runs on
the tiny real llama.cpp model with grammar-constrained actions, and is checked for
structure, not wording.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from chiffon.orchestrator.compose import agent_tools
from chiffon.servers.llm.router import Router
from chiffon.servers.memory.service import open_memory
from chiffon.servers.tasks.roles import PIPELINE, load_roles
from chiffon.servers.tasks.service import agent_checks, open_team, running_task_worker
from chiffon.shared.bus import NOTIFICATIONS
from chiffon.shared.config import LLMSettings, TaskSettings
from chiffon.shared.queue import TaskQueue, TaskRecord
from chiffon.shared.runtime import Runtime
from tests.conftest import git_commit_all
from tests.llm.conftest import LlamaServer
from tests.llm.fakes import FakeState

ROLES = load_roles()
CHIFFON = str(Path(sys.executable).parent / "chiffon")
Script = Callable[[str, str], dict[str, Any]]  # (goal, last message) -> the JSON action to answer


def scripted(script: Script) -> Callable[[list[dict[str, Any]]], str]:
    def reply(messages: list[dict[str, Any]]) -> str:
        return json.dumps(script(messages[0]["content"], messages[-1]["content"]))
    return reply


@pytest.fixture
def fake(anthropic_fake: tuple[FakeState, str]) -> Iterator[FakeState]:
    state = anthropic_fake[0]
    before = state.reply
    yield state
    state.reply = before


@asynccontextmanager
async def team_runtime(rt: Runtime, llm: LLMSettings, role_tiers: dict[str, str],
                       memory: bool = False) -> AsyncIterator[tuple[Runtime, TaskQueue]]:
    """A runtime whose roles use ``role_tiers``, a team over it and an in-process worker. Grammar strings are
    capped for the tiny random-weight model, which would otherwise write until its token limit."""
    tasks = TaskSettings(role_tiers=role_tiers, grammar_max_chars=60, tool_result_chars=300)  # type: ignore[arg-type]
    settings = rt.settings.model_copy(update={"llm": llm, "tasks": tasks})
    trt = Runtime(settings, rt.store, rt.bus, rt.audit)
    router = await Router.open(llm, store=rt.store, bus=rt.bus)
    try:
        async with open_memory(trt) if memory else _none() as mem, open_team(trt, ROLES, router, agent_tools(trt, mem)) as team, \
                running_task_worker(trt, team):
            yield trt, TaskQueue(trt, checks=agent_checks([*ROLES, PIPELINE]))
    finally:
        await router.aclose()


@asynccontextmanager
async def _none() -> AsyncIterator[None]:
    yield None


def everyone_on(tier: str) -> dict[str, str]:
    return {name: tier for name in ROLES}


async def finished(q: TaskQueue, task: TaskRecord, timeout_s: float = 120) -> TaskRecord:
    done = await q.wait(task.id, timeout_s)
    assert done.done, f"{task.id} still {done.status} after {timeout_s} s"
    return done


@pytest.fixture
def target_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "app"
    (repo / "tests").mkdir(parents=True)
    (repo / "app.py").write_text("def add(a, b):\n    return a + b\n")
    (repo / "tests" / "test_app.py").write_text("from app import add\n\ndef test_add():\n    assert add(1, 2) == 3\n")
    git_commit_all(repo)
    return repo


async def test_developer_calling_ansible_run_is_denied_and_audited(rt: Runtime, llm_settings: LLMSettings,
                                                                   fake: FakeState) -> None:
    def script(goal: str, last: str) -> dict[str, Any]:
        if goal.startswith("Review"):
            return {"verdict": "approve", "feedback": "fine"}
        if "denied" in last:
            return {"final": "I may not run playbooks; a human must."}
        return {"tool": "ansible_run", "arguments": {"playbook": "site.yml"}}

    fake.reply = scripted(script)
    runs_before = await rt.store.pool.fetchval("SELECT count(*) FROM runs")
    async with team_runtime(rt, llm_settings, everyone_on("external")) as (trt, q):
        task = await finished(q, await q.submit("developer", "Deploy the site playbook now"))
        steps = await q.steps(task.id)
    assert task.status == "succeeded", task.error
    denied = [s for s in steps if s.kind == "denied"]
    assert denied and denied[0].content["tool"] == "ansible_run" and "may not call ansible_run" in denied[0].content["text"]
    assert await rt.store.pool.fetchval("SELECT count(*) FROM runs") == runs_before
    assert all(s.content["native"] for s in steps if s.kind == "llm")  # Claude: real tool use, not JSON text
    sent = fake.requests[-1]
    assert sent["tool_choice"] == {"type": "any"} and sent["tools"][-1]["name"] == "final_answer"
    records = await asyncio.to_thread(rt.audit.query, kind="denial", limit=20)
    assert any(r.body.get("task_id") == task.id and r.body.get("tool") == "ansible_run" for r in records)


async def test_qa_cannot_write_files_and_bad_arguments_go_back_to_the_agent(
        rt: Runtime, llm_settings: LLMSettings, fake: FakeState, target_repo: Path) -> None:
    def script(goal: str, last: str) -> dict[str, Any]:
        if "Error of repo_write_file" in last:
            return {"tool": "repo_read_file", "arguments": {"no_such_argument": 1}}
        if "Error of repo_read_file" in last:
            return {"final": "REJECTED: app.py needs a fix I may not make"}
        return {"tool": "repo_write_file", "arguments": {"path": "app.py", "content": "pwned"}}

    fake.reply = scripted(script)
    async with team_runtime(rt, llm_settings, everyone_on("external")) as (trt, q):
        task = await finished(q, await q.submit("qa", "Fix app.py", {"repo": str(target_repo)}))
        steps = await q.steps(task.id)
    assert task.status == "succeeded", task.error
    kinds = [(s.kind, s.content.get("tool")) for s in steps if s.kind in ("denied", "error")]
    assert ("denied", "repo_write_file") in kinds and ("error", "repo_read_file") in kinds
    worktree = trt.settings.home / "worktrees" / task.id
    assert (worktree / "app.py").read_text().startswith("def add") and (target_repo / "app.py").read_text().startswith("def")


async def test_rejected_work_escalates_to_a_human_after_max_rounds(rt: Runtime, llm_settings: LLMSettings,
                                                                  fake: FakeState, cli_env: dict[str, str]) -> None:
    def script(goal: str, last: str) -> dict[str, Any]:
        if goal.startswith("Review"):
            return {"verdict": "reject", "feedback": "no tests for the change"}
        return {"final": "changed app.py"}

    fake.reply = scripted(script)
    cursor = await rt.bus.last_id(NOTIFICATIONS)
    async with team_runtime(rt, llm_settings, everyone_on("external")) as (trt, q):
        task = await finished(q, await q.submit("developer", "Add input validation to add()"))
        steps = await q.steps(task.id)
    rounds = ROLES["developer"].max_rounds
    assert task.status == "escalated" and f"rejected {rounds} time(s)" in (task.error or "")
    assert [s.content["verdict"] for s in steps if s.kind == "review"] == ["reject"] * rounds
    assert task.result and len(task.result["reviews"]) == rounds
    stream = [m for m in await rt.bus.read({NOTIFICATIONS: cursor}, block_ms=100) if m.data["task_id"] == task.id]
    assert len(stream) == 1 and stream[0].data["kind"] == "escalation"
    inbox = subprocess.run([CHIFFON, "inbox", "--json"], env=cli_env, capture_output=True, text=True, timeout=120)
    assert inbox.returncode == 0, inbox.stderr
    assert any(row["task_id"] == task.id for row in json.loads(inbox.stdout))


async def test_malformed_replies_fail_the_step_after_the_retry_limit(rt: Runtime, llm_settings: LLMSettings,
                                                                    fake: FakeState) -> None:
    fake.reply = lambda messages: "Sure! I would start by looking at the files."
    async with team_runtime(rt, llm_settings, everyone_on("external")) as (trt, q):
        task = await finished(q, await q.submit("ux-researcher", "Interview notes for the dashboard"))
        steps = await q.steps(task.id)
    retries = trt.settings.tasks.malformed_retries
    assert task.status == "failed" and f"no valid action in {retries + 1} replies" in (task.error or "")
    assert sum(1 for s in steps if s.kind == "error" and "malformed" in s.content) == retries + 1


async def test_concurrent_sessions_do_not_see_each_others_memory(rt: Runtime, llm_settings: LLMSettings,
                                                                 fake: FakeState) -> None:
    def script(goal: str, last: str) -> dict[str, Any]:
        secret = goal.split()[-1]
        if goal.startswith("Remember"):
            if "Result of memory_remember" in last:
                return {"final": "noted"}
            return {"tool": "memory_remember", "arguments": {"text": f"the door code is {secret}", "scope": "shared"}}
        if "Result of memory_recall" in last or "Error of memory_recall" in last:
            return {"final": last[:1500]}
        return {"tool": "memory_recall", "arguments": {"query": "what is the door code", "k": 5,
                                                        "scopes": ["shared", "session", "agent", "user"]}}

    fake.reply = scripted(script)
    async with team_runtime(rt, llm_settings, everyone_on("external"), memory=True) as (trt, q):
        writes = [await q.submit("product-manager", f"Remember {code}", session_id=f"sess-{code}")
                  for code in ("alpha-7731", "bravo-4410")]
        assert [t.status for t in await asyncio.gather(*(finished(q, t) for t in writes))] == ["succeeded"] * 2
        reads = [await q.submit("product-manager", f"Recall the door code for {code}", session_id=f"sess-{code}")
                 for code in ("alpha-7731", "bravo-4410")]
        answers = await asyncio.gather(*(finished(q, t) for t in reads))
    alpha, bravo = (json.dumps(a.result) for a in answers)
    assert "alpha-7731" in alpha and "bravo-4410" not in alpha
    assert "bravo-4410" in bravo and "alpha-7731" not in bravo


async def test_cancel_stops_a_running_agent_before_its_next_step(rt: Runtime, llm_settings: LLMSettings,
                                                                 fake: FakeState) -> None:
    fake.reply = scripted(lambda goal, last: {"tool": "repo_list_files", "arguments": {}})
    fake.delay_s = 0.3
    async with team_runtime(rt, llm_settings, everyone_on("external")) as (trt, q):
        task = await q.submit("product-manager", "List everything, slowly")
        for _ in range(200):
            if any(s.kind == "llm" for s in await q.steps(task.id)):
                break
            await asyncio.sleep(0.1)
        await q.cancel(task.id)
        await asyncio.sleep(2)
        done = await q.get(task.id)
        steps = await q.steps(task.id)
    assert done.status == "cancelled" and done.completions == 0
    assert steps[-1].kind == "note" and "cancelled" in steps[-1].content["text"]
    assert sum(1 for s in steps if s.kind == "llm") < ROLES["product-manager"].max_steps


@pytest.fixture(scope="session")
def agent_llama(gguf_models: tuple[Path, Path]) -> Iterator[LlamaServer]:
    server = LlamaServer(gguf_models[0], "tiny-quick", n_ctx=4096).start()
    yield server
    server.stop()


async def test_pipeline_runs_pm_architect_developer_qa_and_returns_artifacts(
        rt: Runtime, llm_settings: LLMSettings, fake: FakeState, agent_llama: LlamaServer, target_repo: Path) -> None:
    fake.reply = scripted(lambda goal, last: {"verdict": "approve", "feedback": "meets the PRP"})
    llm = llm_settings.model_copy(deep=True)
    llm.backends["desktop-llamacpp"].url = agent_llama.url
    llm.tiers["quick"].context_window = 4096
    tiers = {**everyone_on("quick"), "qa": "external", "platform-engineer": "external"}
    async with team_runtime(rt, llm, tiers) as (trt, q):
        task = await finished(q, await q.submit(PIPELINE, "Make add() refuse non-numbers", {
            "repo": str(target_repo), "test_command": "python -m pytest -q -p no:cacheprovider"},
            kind="pipeline"), timeout_s=600)
        steps = await q.steps(task.id)
    assert task.status == "succeeded", task.error
    artifacts = task.result["artifacts"]  # type: ignore[index]
    assert set(artifacts) >= {"prp", "design", "change", "qa"}
    assert artifacts["change"]["branch"] == f"chiffon/{task.id}"
    assert Path(artifacts["change"]["worktree"]).is_dir()
    assert artifacts["qa"]["verdict"] == "approve" and artifacts["qa"]["tests"]["command"].endswith("no:cacheprovider")
    order = [s.role for s in steps if s.kind == "note" and s.content["text"].endswith("starts")]
    assert order[0] == "product-manager" and order[-1] == "qa"
    assert order.index("architect-systems") < order.index("developer")
    developer = [s.content for s in steps if s.kind == "llm" and s.role == "developer"]
    assert {c["tier"] for c in developer} == {"quick"} and not any(c["native"] for c in developer)  # grammar JSON
    branches = subprocess.run(["git", "-C", str(target_repo), "branch", "--list", "chiffon/*"], capture_output=True,
                              text=True, check=True).stdout
    assert f"chiffon/{task.id}" in branches



async def test_tasks_tools_through_the_orchestrator(rt: Runtime, llm_settings: LLMSettings, fake: FakeState,
                                                    repo: Path) -> None:
    from fastmcp import Client
    from fastmcp.exceptions import ToolError

    from chiffon.orchestrator.server import create_orchestrator
    from chiffon.servers.ansible.service import AnsibleService
    from chiffon.servers.tasks.service import TasksService

    def script(goal: str, last: str) -> dict[str, Any]:
        return {"verdict": "approve", "feedback": "ok"} if goal.startswith("Review") else {"final": "done: " + goal}

    fake.reply = scripted(script)
    async with team_runtime(rt, llm_settings, everyone_on("external")) as (trt, q):
        tasks = TasksService(trt, ROLES, q)
        server = create_orchestrator(AnsibleService.for_runtime(trt, repo), tasks=tasks)
        async with Client(server, mode="legacy") as client:
            names = {t.name for t in await client.list_tools()}
            assert {"tasks_submit_task", "tasks_task_status", "tasks_task_result", "tasks_list_tasks",
                    "tasks_cancel_task", "tasks_roles"} <= names
            roles = (await client.call_tool("tasks_roles", {})).structured_content["result"]
            assert {r["name"] for r in roles} >= {"developer", "qa", PIPELINE}
            with pytest.raises(ToolError, match="unknown role 'wizard'"):
                await client.call_tool("tasks_submit_task", {"role": "wizard", "goal": "x"})
            with pytest.raises(ToolError, match="goal: is empty"):
                await client.call_tool("tasks_submit_task", {"role": "developer", "goal": " "})
            task = (await client.call_tool("tasks_submit_task", {"role": "developer", "goal": "Rename add to plus",
                                                                 "priority": "high"})).structured_content
            done = (await client.call_tool("tasks_task_result", {"task_id": task["id"], "wait_s": 60})).structured_content
            assert done["status"] == "succeeded" and done["result"]["output"]["final"].startswith("done: ")
            status = (await client.call_tool("tasks_task_status", {"task_id": task["id"]})).structured_content
            assert [s["kind"] for s in status["steps"]].count("review") == 1
            listed = (await client.call_tool("tasks_list_tasks", {"status": "succeeded", "role": "developer"}))
            assert any(t["id"] == task["id"] for t in listed.structured_content["result"])
            with pytest.raises(ToolError, match="already succeeded"):
                await client.call_tool("tasks_cancel_task", {"task_id": task["id"]})
