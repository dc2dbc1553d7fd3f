"""`chiffon run`, `services` and `inventories` on repos shaped like real homelab repos, as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.test_cli import chiffon
from tests.fixtures import repos


def test_deploy_jellyfin_on_a_site_playbook_plans_its_tag_end_to_end(cli_env: dict[str, str],
                                                                       tmp_path: Path) -> None:
    repo = repos.site_roles(tmp_path / "site")
    env = {**cli_env, "HOMELAB_ROOT": str(tmp_path / "targets")}
    proc = chiffon(env, "run", "Deploy Jellyfin", "--repo", str(repo), "--approve", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert (out["playbook"], out["tags"], out["inventory"], out["hosts"]) == ("site.yml", ["jellyfin"], "hosts.ini",
                                                                              ["nas"])
    assert out["status"] == "succeeded" and out["changed"] == 2 and out["warnings"] == []
    assert (tmp_path / "targets" / "nas" / "jellyfin" / "compose.yaml").is_file()
    assert not (tmp_path / "targets" / "nas" / "radarr").exists()


def test_a_flag_gated_role_exits_2_naming_the_variable_and_changes_nothing(cli_env: dict[str, str],
                                                                            tmp_path: Path) -> None:
    repo = repos.enabled_flags(tmp_path / "nas")
    env = {**cli_env, "HOMELAB_ROOT": str(tmp_path / "targets")}
    proc = chiffon(env, "run", "Deploy Jellyfin", "--repo", str(repo), "--approve", "--json")
    assert proc.returncode == 2, proc.stderr
    out = json.loads(proc.stdout)
    assert out["status"] == "blocked" and "jellyfin_enabled: true" in out["blocked_reason"]
    assert not (tmp_path / "targets").exists()


def test_an_unused_role_is_answered_plainly(cli_env: dict[str, str], tmp_path: Path) -> None:
    proc = chiffon(cli_env, "run", "Deploy Uptime Kuma", "--repo", str(repos.unused_role(tmp_path / "u")))
    text = " ".join(proc.stderr.split())
    assert proc.returncode == 2 and "role uptime-kuma exists in roles/uptime-kuma but no playbook applies it" in text
    assert "--apply-role uptime-kuma --apply-to GROUP" in text and "Traceback" not in proc.stderr


def test_services_lists_what_runs_where(cli_env: dict[str, str], tmp_path: Path) -> None:
    repo = repos.import_tasks(tmp_path / "c")
    rows = json.loads(chiffon(cli_env, "services", "--repo", str(repo), "--json").stdout)["services"]
    kuma = next(r for r in rows if r["service"] == "uptime-kuma")
    assert (kuma["playbook"], kuma["tags"], kuma["targets"]) == ("main.yml", ["uptime-kuma"], ["monitor"])
    only = json.loads(chiffon(cli_env, "services", "--repo", str(repo), "--host", "dns", "--json").stdout)
    assert [r["service"] for r in only["services"]] == ["adguard"]


def test_inventories_lists_environments_with_the_default(cli_env: dict[str, str], tmp_path: Path) -> None:
    out = json.loads(chiffon(cli_env, "inventories", "--repo", str(repos.environments(tmp_path / "e")),
                             "--json").stdout)
    assert out["default"] == "prod"
    assert [(i["name"], i["source"]) for i in out["inventories"]] == [("prod", "ansible.cfg"), ("staging", "found")]


def test_no_repo_configured_says_how_to_set_one(cli_env: dict[str, str]) -> None:
    env = {k: v for k, v in cli_env.items() if k != "CHIFFON_REPO"}
    proc = chiffon(env, "run", "Deploy Jellyfin", "--approve")
    text = " ".join(proc.stderr.split())
    assert proc.returncode == 2 and "no IaC repo is configured" in text and "CHIFFON_REPO" in text
