"""The team: role tasks with producer-critic review, the pipeline, and escalation to a human.

* A role task (kind ``agent``) runs the role's agent on the goal. When the role
  names a ``critic`` (developer -> qa, architects -> platform-engineer), the
  critic reviews the output and answers ``approve`` or ``reject`` with feedback;
  a rejection sends the feedback back to the producer, up to the role's
  ``max_rounds``. Still rejected, the task is **escalated**: status
  ``escalated``, a row in the inbox (``chiffon inbox``), a message on the
  ``notifications`` stream and an audit record.
* The pipeline (role ``pipeline``) runs product manager (PRP from
  ``prompts/prp.md``) -> architect-systems (design, reviewed) -> developer
  (change in the task's worktree branch, reviewed by QA) -> QA (the repo's tests)
  and returns each stage's artifact; an escalated stage stops it.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chiffon.servers.llm.router import Router
from chiffon.servers.tasks import inbox
from chiffon.servers.tasks.agent import VERDICT, Agent, AgentResult
from chiffon.servers.tasks.repo import Workspaces
from chiffon.servers.tasks.roles import PIPELINE, Role, allowed_test_command
from chiffon.servers.tasks.tools import ScopedTools, Toolbox
from chiffon.shared.queue import Outcome, TaskContext
from chiffon.shared.resources import prompt_path

log = logging.getLogger(__name__)

PRP_TEMPLATE = prompt_path("prp.md")
PIPELINE_STAGES = ("product-manager", "architect-systems", "developer", "qa")


@dataclass
class Reviewed:
    """A producer's last output and every review it got."""

    output: dict[str, Any]
    reviews: list[dict[str, Any]]
    approved: bool
    rounds: int


async def notify(ctx: TaskContext, kind: str, title: str, body: dict[str, Any]) -> int:
    """Put a message about the task in the human's inbox (:func:`chiffon.servers.tasks.inbox.notify`); its id."""
    return await inbox.notify(ctx.rt, ctx.task.id, kind, title, body)


class Team:
    """Runs agent and pipeline tasks for a worker: the handlers of kinds ``agent`` and ``pipeline``."""

    def __init__(self, router: Router, toolbox: Toolbox, roles: dict[str, Role], workspaces: Workspaces) -> None:
        self.router = router
        self.toolbox = toolbox
        self.roles = roles
        self.workspaces = workspaces

    def handlers(self) -> dict[str, Any]:
        """``{kind: handler}`` for :class:`~chiffon.shared.queue.TaskWorker`."""
        return {"agent": self.run_role_task, "pipeline": self.run_pipeline}

    def _agent(self, role: Role, ctx: TaskContext) -> Agent:
        tools = ScopedTools(self.toolbox, role, ctx.task.id, ctx.task.session_id, ctx.rt.audit)
        return Agent(role, self.router, tools, ctx, functools.partial(self._choices, ctx.task.id))

    async def _choices(self, task_id: str) -> dict[str, dict[str, list[str]]]:
        """The files an agent may read now, for its grammar (none: no worktree, or too many files to list)."""
        files = await asyncio.to_thread(self.workspaces.files, task_id)
        return {"repo_read_file": {"path": files}} if files else {}

    async def _workspace(self, ctx: TaskContext) -> dict[str, Any] | None:
        repo = ctx.task.inputs.get("repo") or ctx.rt.settings.repo
        if not repo:
            return None
        tester = self.roles.get("qa" if ctx.task.role == PIPELINE else ctx.task.role)
        requested = ctx.task.inputs.get("test_command")
        command = allowed_test_command(tester, requested) if tester and tester.test_commands else None
        ws = await asyncio.to_thread(self.workspaces.create, ctx.task.id, Path(str(repo)), command)
        return ws.model_dump()

    async def produce_reviewed(self, ctx: TaskContext, role: Role, goal: str, context: str = "") -> Reviewed:
        """The producer-critic loop for ``role`` (no critic: one run, approved)."""
        reviews: list[dict[str, Any]] = []
        feedback = ""
        output: dict[str, Any] = {}
        critic = self.roles.get(role.critic) if role.critic else None
        for round_no in range(1, (role.max_rounds if critic else 1) + 1):
            extra = context + (f"\n\nThe reviewer rejected your previous answer:\n{feedback}\nAddress every point."
                               if feedback else "")
            produced: AgentResult = await self._agent(role, ctx).run(goal, extra.strip())
            output = produced.final
            if critic is None:
                return Reviewed(output, reviews, True, round_no)
            review = await self._agent(critic, ctx).run(
                f"Review the {role.title}'s answer to this goal and approve it or reject it with concrete feedback.\n"
                f"Goal: {goal}", f"{context}\n\nAnswer under review:\n{json.dumps(output)[:6000]}".strip(), VERDICT)
            verdict = {"round": round_no, "critic": critic.name, **review.final}
            reviews.append(verdict)
            await ctx.step(critic.name, "review", verdict)
            if review.final.get("verdict") == "approve":
                return Reviewed(output, reviews, True, round_no)
            feedback = str(review.final.get("feedback", ""))
        return Reviewed(output, reviews, False, len(reviews))

    async def escalate(self, ctx: TaskContext, role: Role, reviewed: Reviewed, stage: str | None = None) -> Outcome:
        """Hand a task whose output was rejected ``max_rounds`` times to a human."""
        title = (f"{role.title}'s work on {ctx.task.id} was rejected {reviewed.rounds} time(s)"
                 + (f" in the {stage} stage" if stage else "") + "; a human decision is needed")
        body = {"goal": ctx.task.goal, "role": role.name, "last_output": reviewed.output, "reviews": reviewed.reviews}
        note_id = await notify(ctx, "escalation", title, body)
        await ctx.step(role.name, "escalation", {"title": title, "notification": note_id})
        await asyncio.to_thread(ctx.rt.audit.record, "escalation", title, {
            "task_id": ctx.task.id, "role": role.name, "rounds": reviewed.rounds, "reviews": reviewed.reviews})
        return Outcome(status="escalated", error=title,
                       result={"output": reviewed.output, "reviews": reviewed.reviews, "notification": note_id})

    async def run_role_task(self, ctx: TaskContext) -> Outcome:
        """Kind ``agent``: the task's role on its goal, reviewed by the role's critic if it has one."""
        role = self.roles[ctx.task.role]
        workspace = await self._workspace(ctx) if any(s.startswith("repo.") for s in role.scopes) else None
        context = _inputs_context(ctx.task.inputs)
        reviewed = await self.produce_reviewed(ctx, role, ctx.task.goal, context)
        if not reviewed.approved:
            return await self.escalate(ctx, role, reviewed)
        result: dict[str, Any] = {"output": reviewed.output, "reviews": reviewed.reviews}
        if workspace is not None:
            result["change"] = await self._commit(ctx, role)
        return Outcome(status="succeeded", result=result)

    async def _commit(self, ctx: TaskContext, role: Role) -> dict[str, Any]:
        ws = self.workspaces.get(ctx.task.id)
        commit = await asyncio.to_thread(self.workspaces.commit, ctx.task.id,
                                         f"{role.title}: {ctx.task.goal[:60]}\n\nchiffon task {ctx.task.id}")
        diff = await asyncio.to_thread(self.workspaces.diff, ctx.task.id)
        return {"branch": ws.branch, "worktree": ws.path, "commit": commit, "base_commit": ws.base_commit, "diff": diff}

    async def run_pipeline(self, ctx: TaskContext) -> Outcome:
        """Kind ``pipeline``: PM (PRP) -> architect (design) -> developer (change) -> QA (tests); artifacts."""
        artifacts: dict[str, Any] = {}
        workspace = await self._workspace(ctx)
        context = _inputs_context(ctx.task.inputs)
        template = PRP_TEMPLATE.read_text(encoding="utf-8")

        pm = self.roles["product-manager"]
        prp = await self.produce_reviewed(ctx, pm, ctx.task.goal, f"{context}\n\nWrite the PRP with this template:\n"
                                                                   f"{template}".strip())
        artifacts["prp"] = prp.output.get("final", prp.output)
        if not prp.approved:
            return await self._stopped(ctx, pm, prp, "prp", artifacts)

        architect = self.roles["architect-systems"]
        design = await self.produce_reviewed(ctx, architect, f"Design the change for this PRP.\n\n{artifacts['prp']}",
                                             context)
        artifacts["design"] = design.output.get("final", design.output)
        artifacts["design_reviews"] = design.reviews
        if not design.approved:
            return await self._stopped(ctx, architect, design, "design", artifacts)

        developer = self.roles["developer"]
        change = await self.produce_reviewed(
            ctx, developer, f"Implement this design in your worktree.\n\nPRP:\n{artifacts['prp']}",
            f"Design:\n{artifacts['design']}")
        artifacts["change"] = {"summary": change.output.get("final", change.output), "reviews": change.reviews}
        if workspace is not None:
            artifacts["change"].update(await self._commit(ctx, developer))
        if not change.approved:
            return await self._stopped(ctx, developer, change, "change", artifacts)

        qa = self.roles["qa"]
        verdict = await self._agent(qa, ctx).run(
            "Check the change against the PRP's acceptance checks and run the repository's tests.",
            f"PRP:\n{artifacts['prp']}\n\nChange:\n{json.dumps(artifacts['change'], default=str)[:6000]}", VERDICT)
        artifacts["qa"] = dict(verdict.final)
        if workspace is not None:  # the artifact carries the real test run, whatever the agent did
            outcome = await self.toolbox.call("repo_run_tests", {"task_id": ctx.task.id})
            artifacts["qa"]["tests"] = json.loads(outcome.text) if outcome.ok else {"error": outcome.text}
        await ctx.step(qa.name, "review", artifacts["qa"])
        return Outcome(status="succeeded", result={"artifacts": artifacts, "stages": list(PIPELINE_STAGES)})

    async def _stopped(self, ctx: TaskContext, role: Role, reviewed: Reviewed, stage: str,
                       artifacts: dict[str, Any]) -> Outcome:
        outcome = await self.escalate(ctx, role, reviewed, stage)
        outcome.result = {**(outcome.result or {}), "artifacts": artifacts, "stopped_at": stage}
        return outcome


def _inputs_context(inputs: dict[str, Any]) -> str:
    """The task's inputs other than repo plumbing, as context for the first agent."""
    shown = {k: v for k, v in inputs.items() if k not in ("repo", "test_command")}
    return f"Inputs: {json.dumps(shown, default=str)[:4000]}" if shown else ""
