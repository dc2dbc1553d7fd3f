"""Turn a plain-language request into a stored plan.

Matching is retrieval over the repo's units (``servers.ansible.matching``): a
playbook, or a role or task file a tag selects in it. The best candidate above
:data:`~servers.ansible.matching.MIN_SCORE` is previewed in check mode
(``--tags`` when it is a role of a site playbook) and stored as a plan awaiting
approval. A request that matches nothing is refused with the closest units
named; one that matches a role no playbook applies is told so plainly.

With vector memory, the catalog's cards in ``documentation``
(:mod:`orchestrator.playbook_memory`) add a meaning score to the word score
(:func:`~servers.ansible.matching.blend`); memory that is down leaves the word
score alone, with a note in ``plan.match["planner"]``.

When an LLM router is configured (``llm.tiers.quick`` and ``llm.planner``; with
the ``llamacpp`` extra and no tiers, the packaged model serves ``quick``), the
quick tier picks among the top matches and says why in one sentence
(``prompts/planner.md``). Its answer is decoded under a JSON schema whose
``playbook`` is an enum of the candidates, so it cannot name anything else; an
invalid answer, no answer, or none within ``llm.planner_deadline_s`` leaves the
retrieval result in place, with the reason in ``plan.match["planner"]``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from chiffon.servers.ansible import generated, matching, plans, prompted, understand
from chiffon.servers.ansible.events import EventCallback
from chiffon.servers.ansible.request import PlanRequest
from chiffon.servers.ansible.service import AnsibleService
from chiffon.servers.ansible.units import hosts_of_condition
from chiffon.shared.errors import ChiffonError, RoleNotApplied
from chiffon.shared.resources import prompt_path

if TYPE_CHECKING:
    from chiffon.orchestrator.playbook_memory import PlaybookIndex
    from chiffon.servers.llm.router import Router

log = logging.getLogger(__name__)

PLANNER_PROMPT = prompt_path("planner.md")
Pick = Callable[[list[understand.Candidate]], Awaitable[understand.Candidate | None]]
CANDIDATES = 3


REASON_CHARS = (12, 160)  # the one sentence the planner gives for its choice, characters
ANSWER_TOKENS = 256  # room for the answer when every character of the reason is a token of its own (digits)


def answer_schema(names: list[str]) -> dict[str, Any]:
    """The JSON schema the quick tier answers under: one candidate ``name`` (an enum, so a constrained decoder
    cannot name anything else) and a one-sentence ``reason``."""
    return {"type": "object",
            "properties": {"playbook": {"enum": names},
                           "reason": {"type": "string", "minLength": REASON_CHARS[0], "maxLength": REASON_CHARS[1]}},
            "required": ["playbook", "reason"], "additionalProperties": False}


def planner_prompt(request: str, candidates: list[matching.Match]) -> str:
    """``prompts/planner.md`` filled in with the request and the candidates (name: what it does, score)."""
    listing = "\n".join(f"- {m.unit.name}: {m.unit.description or m.unit.service} ({m.score:.2f})" for m in candidates)
    return PLANNER_PROMPT.read_text().replace("{request}", request).replace("{candidates}", listing)


async def choose_with_llm(router: Router, request: str, candidates: list[matching.Match]) -> tuple[matching.Match, dict[str, Any]]:
    """Ask the quick tier to choose among ``candidates``; returns the choice and a note for the plan.

    The answer is decoded under :func:`answer_schema` and validated (asked once more when invalid,
    :func:`~servers.llm.structured.chat_json`), within ``llm.planner_deadline_s``. Never raises for the
    model's sake: on any failure, or past the deadline, the first candidate (retrieval's best) is kept and
    the note says why.
    """
    from chiffon.servers.llm.structured import chat_json
    from chiffon.servers.llm.types import Hints, build_messages

    names = [m.unit.name for m in candidates]
    deadline = router.settings.planner_deadline_s
    started = time.perf_counter()
    try:
        async with asyncio.timeout(deadline):
            answer, result = await chat_json(router, build_messages(planner_prompt(request, candidates), None),
                                             Hints(tier="quick", caller="planner", local_only=True),
                                             answer_schema(names), max_tokens=ANSWER_TOKENS)
    except TimeoutError:
        log.info("planner LLM not used: no answer within %.0f s", deadline)
        return candidates[0], {"chosen_by": "retrieval", "llm_error": f"the quick tier did not answer within "
                                                                     f"{deadline:g} s (llm.planner_deadline_s)"}
    except ChiffonError as exc:
        log.info("planner LLM not used: %s", exc)
        return candidates[0], {"chosen_by": "retrieval", "llm_error": str(exc)[:300]}
    chosen = next(m for m in candidates if m.unit.name == answer["playbook"])
    note = {"chosen_by": "llm", "model": result.answered_by.model, "tier": result.answered_by.tier,
            "llm_s": round(time.perf_counter() - started, 2)}
    reason = answer["reason"].strip()
    if is_sentence_about(reason, request, names):
        note["reason"] = reason
    else:
        note["llm_reason_dropped"] = reason[:160]
    return chosen, note


def is_sentence_about(reason: str, request: str, names: list[str]) -> bool:
    """A model's reason is kept only when it is a sentence about the request: at least four words, not a
    candidate's name (or a file name) repeated, and sharing a word with the request."""
    words = re.findall(r"[A-Za-z][A-Za-z'-]+", reason)
    if len(words) < 4 or reason.strip() in names or re.fullmatch(r"[\w./ -]+\.ya?ml\S*", reason.strip()):
        return False
    asked = set(matching.terms(request))
    return bool(asked & set(matching.terms(reason)))


async def plan_request(
    svc: AnsibleService,
    req: PlanRequest | str,
    *,
    on_event: EventCallback | None = None,
    router: Router | None = None,
    playbooks: PlaybookIndex | None = None,
    typed: prompted.Typed | None = None,
    pick: Pick | None = None,
) -> plans.Plan:
    """Match the request to a playbook, run it in check mode and store the plan.

    ``req``: what to plan, built once at the edge (the MCP tool, ``chiffon run``, the console, REST) and passed
    down whole (:class:`~chiffon.servers.ansible.request.PlanRequest`); a bare string is a request with nothing
    else. Its fields, as the planner uses them:

    * ``repo``, ``inventory``: the catalog (default: the service's); ``extra_vars``, ``skip_tags``,
      ``secret_vars``: the check and the run, as :func:`servers.ansible.plans.create_plan` checks them.
    * ``limit``: without it, a unit gated to named hosts (``when: inventory_hostname == "monitor"``), or one of
      a playbook whose plays target different hosts, is planned with ``--limit`` its hosts (:func:`_limit_for`).
    * ``apply_role`` + ``apply_to``: plan a generated playbook that applies that role (one no playbook
      applies, as :class:`RoleNotApplied` offers) to that inventory host or group; the generated text is
      part of the plan and is never written to the repo.
    * ``tags``: run these tags of the matched playbook (``--tags``) instead of the unit's own; each must be a tag
      the playbook uses (InvalidInput otherwise). None: the unit's tags.

    ``router``: when given and its quick tier is configured, the LLM chooses among the top matches
    above MIN_SCORE and explains the plan (``plan.match["planner"]``). ``playbooks``: when given, the
    request is also scored by meaning against the catalog's cards in vector memory.

    ``typed``: vault or become passwords a human typed at a terminal (CLI only; never an MCP argument).

    ``pick``: asked to choose when several candidates name the request equally (a terminal's prompt); None
    keeps retrieval's first, or lets the quick tier choose. MCP and ``--json`` return the candidates in
    ``plan.match["planner"]["answer"]["candidates"]``.

    Raises:
        InvalidInput: empty or over-long request, bad limit or extra_vars.
        NoMatch: no unit scores at least MIN_SCORE; the closest are listed.
        RoleNotApplied: the best match is a role that no playbook applies.
        RepoError: no repo configured, no playbooks, or no usable inventory.
    """
    req = PlanRequest(request=req) if isinstance(req, str) else req
    request = req.text()
    req = req.model_copy(update={"request": request})
    repo, inventory, limit = req.repo, req.inventory, req.limit
    if req.apply_role is not None or req.apply_to is not None:
        catalog = await svc.catalog(repo, inventory)
        applied = req.role_to_apply()
        assert applied is not None  # one of the two is given, so both are (or it raised)
        gen = await asyncio.to_thread(generated.for_role, catalog, *applied)
        return await plans.create_plan(svc.rt, catalog, gen.name, req, generated=gen, on_event=on_event,
                                       typed=typed)
    catalog = await svc.catalog(repo)  # the inventory is chosen per Ansible project, below
    ranked = matching.rank(catalog, request)
    note: dict[str, Any] = {"chosen_by": "retrieval", "scoring": "words"}
    if playbooks is not None:
        try:
            ranked = matching.blend(ranked, await playbooks.similarities(catalog, request))
            note["scoring"] = "words+meaning"
        except ChiffonError as exc:  # memory down must not stop planning: words alone still rank
            log.warning("playbook memory unavailable, matching by words only: %s", exc)
            note["memory_error"] = str(exc)[:300]
    commands = await asyncio.to_thread(lambda: catalog.commands)
    try:
        answer = understand.understand(catalog, request, ranked, commands, inventory=inventory or svc.inventory,
                                       limit=limit, meaning=note["scoring"] == "words+meaning")
    except RoleNotApplied as exc:
        raise RoleNotApplied(request, exc.role, exc.path, await _groups(catalog)) from None
    best = answer.best
    rivals = [c for c in answer.candidates if c.entity == best.entity] if best.entity else answer.candidates
    rivals = rivals[:CANDIDATES]
    use_llm = router is not None and router.settings.planner and router.has_tier("quick")
    if not answer.sure and pick is not None and len(rivals) > 1:
        picked = await pick(rivals)  # a human at a terminal chooses between what retrieval cannot separate
        if picked is not None:
            best = picked
            note.update({"chosen_by": "human", "reason": f"chosen at the terminal among {len(rivals)} candidates"})
    elif not answer.sure and use_llm and len(rivals) > 1:
        # a model decides only between candidates retrieval cannot separate, never against a unique entity match
        assert router is not None
        chosen, said = await choose_with_llm(router, request, [c.match for c in rivals])
        best = next(c for c in rivals if c.match is chosen)
        note.update(said)
    elif use_llm:
        note["llm_skipped"] = "the request names one unit of the repo; retrieval's answer stands"
    note["reason"] = note.get("reason") or _explain(best)
    if best is not answer.best:
        answer = understand.settle(catalog, answer.intent, best, answer.candidates, answer.sure, commands,
                                   inventory=inventory or svc.inventory, limit=limit)
    note["answer"] = answer.as_dict()
    unit = best.unit
    assert unit.playbook is not None  # roles no playbook applies were refused above
    view = catalog.using(answer.project, answer.inventory if answer.inventory_present else None,
                         missing=None if answer.inventory_present else
                         ("; ".join(answer.problems) or "no inventory"))
    limit = answer.limit or (await _limit_for(view, unit) if view.inventory_choice is not None else None)
    alternatives = [c.match for c in answer.candidates if c is not best][:2]
    planned = req.model_copy(update={"limit": limit, "tags": list(unit.tags) if req.tags is None else req.tags})
    return await plans.create_plan(
        svc.rt, view, unit.playbook.name, planned, match=best.match, alternatives=alternatives, planner=note,
        unit=unit, on_event=on_event, expected_inventory=answer.inventory, problems=answer.problems, typed=typed,
    )


def _explain(candidate: understand.Candidate) -> str:
    """Retrieval's explanation of a choice, as one sentence: the evidence, else the words that matched."""
    return "; ".join(candidate.evidence[:3]) or candidate.match.reason


async def _limit_for(catalog: Any, unit: Any) -> str | None:
    """``--limit`` that keeps a plan to its unit's hosts: those a ``when: inventory_hostname == "monitor"``
    names, else the unit's play hosts when the playbook's plays target different hosts (Ansible gathers facts
    for every play even under ``--tags``, and one unreachable host of another play stops the run). None when
    neither applies, or a name is not in the inventory."""
    named = hosts_of_condition(unit.when)
    if not named and unit.kind != "playbook" and len(set(unit.playbook.host_patterns)) > 1:
        named = [h for h in unit.hosts if h not in ("all", "*")]
    if not named:
        return None
    try:
        return await asyncio.to_thread(catalog.validate_limit, ",".join(named))
    except ChiffonError:
        return None


async def _groups(catalog: Any) -> list[str]:
    """Inventory groups to offer for a generated playbook (empty when the inventory cannot be read)."""
    try:
        groups = await asyncio.to_thread(catalog.groups)
    except ChiffonError:
        return []
    return sorted(g for g in groups if g not in ("all", "ungrouped"))
