"""How well chiffon reads homelab repos of real shapes, and what a rescan costs.

1. Builds every repo shape of ``tests/fixtures/repos.py`` (site playbook + tagged roles,
   nested playbook folders, ``import_tasks`` per service, an unused role, inventories per
   environment, ``<role>_enabled`` flags) and ranks each labelled request of
   ``tests/fixtures/repo_requests.yaml`` with :func:`servers.ansible.matching.rank` (words only,
   as with no LLM and no vector memory). A request is right when the best unit is the labelled one
   (``site.yml --tags jellyfin``, ``role uptime-kuma``), or when an off-topic request scores below
   ``MIN_SCORE``. ``unused_role_answered`` is the share of unused-role requests whose best unit is
   the unused role (so the planner says so plainly instead of planning something else).
2. On a generated repo of 150 roles (tasks, defaults, meta, README each), times a full scan
   (fresh :class:`~servers.ansible.catalog.ScanCache`) against an incremental one after one role
   file changed (same cache), ``--repeat`` times, medians.

Prints one JSON line: ``{"repos", "requests", "off_topic", "top1", "misses", "unused_role_answered",
"catalog_full_s", "catalog_incremental_s", "incremental_ratio", "full_spread_s",
"incremental_spread_s"}``. Targets: top1 >= 0.9, unused_role_answered == 1.0, incremental_ratio <= 0.1.

    uv run python benchmarks/repo_understanding.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from chiffon.servers.ansible import matching  # noqa: E402
from chiffon.servers.ansible.catalog import Catalog, ScanCache  # noqa: E402
from tests.fixtures.repos import BUILDERS, many_roles  # noqa: E402

LABELLED = ROOT / "tests" / "fixtures" / "repo_requests.yaml"
ROLES = 150


def labelled() -> list[tuple[str, str, str | None]]:
    """``(shape, request, expected unit name or None)`` triples."""
    return [tuple(row) for row in yaml.safe_load(LABELLED.read_text())["requests"]]  # type: ignore[misc]


def answer(catalog: Catalog, request: str) -> str | None:
    """The unit name the planner would take for ``request``, or None when it would refuse."""
    best = matching.rank(catalog, request)[0]
    return best.unit.name if best.score >= matching.MIN_SCORE else None


def accuracy(workdir: Path) -> dict[str, object]:
    """Top-1 over the labelled set, with the misses listed."""
    catalogs = {shape: Catalog.load(build(workdir / shape)) for shape, build in BUILDERS.items()}
    rows = labelled()
    misses, unused_total, unused_right = [], 0, 0
    for shape, request, expected in rows:
        got = answer(catalogs[shape], request)
        if got != expected:
            misses.append({"shape": shape, "request": request, "expected": expected, "got": got})
        if expected and expected.startswith("role "):
            unused_total += 1
            unused_right += got == expected
    return {"repos": len(catalogs), "requests": len(rows), "off_topic": sum(1 for r in rows if r[2] is None),
            "top1": round(1 - len(misses) / len(rows), 3), "misses": misses,
            "unused_role_answered": round(unused_right / unused_total, 3) if unused_total else None}


def rescan(workdir: Path, repeat: int) -> dict[str, object]:
    """Median full and incremental scan times of a repo with :data:`ROLES` roles."""
    repo = many_roles(workdir / "many", ROLES)
    full, incremental = [], []
    for i in range(repeat):
        cache = ScanCache()
        started = time.perf_counter()
        catalog = Catalog.load(repo, cache=cache)
        full.append(time.perf_counter() - started)
        assert len(catalog.roles) == ROLES, len(catalog.roles)
        tasks = repo / "roles" / f"app{i:03d}" / "tasks" / "main.yml"
        tasks.write_text(tasks.read_text() + f"\n- name: Step added by rescan {i}\n  ansible.builtin.debug: {{}}\n")
        started = time.perf_counter()
        again = Catalog.load(repo, cache=cache)
        incremental.append(time.perf_counter() - started)
        assert f"Step added by rescan {i}" in again.roles[f"app{i:03d}"].task_names
    f, inc = statistics.median(full), statistics.median(incremental)
    return {"roles": ROLES, "catalog_full_s": round(f, 4), "catalog_incremental_s": round(inc, 4),
            "incremental_ratio": round(inc / f, 3),
            "full_spread_s": [round(min(full), 4), round(max(full), 4)],
            "incremental_spread_s": [round(min(incremental), 4), round(max(incremental), 4)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="scans per figure (medians are printed)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="chiffon-repos-") as tmp:
        result = {**accuracy(Path(tmp)), **rescan(Path(tmp), args.repeat)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
