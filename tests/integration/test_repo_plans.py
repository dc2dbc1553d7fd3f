"""Plans on repos of real homelab shapes, through real ansible-playbook --check and runs on localhost."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from chiffon.orchestrator.planner import plan_request
from chiffon.servers.ansible import execution, plans
from chiffon.servers.ansible.request import PlanRequest
from chiffon.servers.ansible.service import AnsibleService
from chiffon.shared.errors import InvalidInput, PlanStateError, RepoError, RoleNotApplied
from chiffon.shared.runtime import Runtime
from tests.conftest import git_commit_all
from tests.fixtures import repos


def svc_for(rt: Runtime, repo: Path, inventory: str | None = None) -> AnsibleService:
    return AnsibleService.for_runtime(rt, repo, inventory)


async def test_deploy_jellyfin_on_a_site_playbook_plans_and_runs_only_its_tag(
        rt: Runtime, tmp_path: Path, targets: Path) -> None:
    svc = svc_for(rt, repos.site_roles(tmp_path / "site"))
    plan = await plan_request(svc, "Deploy Jellyfin")
    assert (plan.playbook, plan.tags, plan.hosts, plan.inventory) == ("site.yml", ["jellyfin"], ["nas"], "hosts.ini")
    assert plan.blocked_reason is None and plan.check_result["changed"] == 2
    assert {e["task"] for e in plan.check_result["events"]} == {"Create the Jellyfin directory",
                                                                "Write the Jellyfin compose file"}
    await plans.decide(rt, plan.id, "approved", approver="tester", channel="cli")
    result = await execution.execute(rt, await svc.catalog(), plan.id)
    assert result.status == "succeeded"
    assert (targets / "nas" / "jellyfin" / "compose.yaml").is_file()
    assert not (targets / "nas" / "sonarr").exists()  # --tags jellyfin ran nothing else


async def test_a_role_gated_off_by_its_flag_is_blocked_naming_the_condition_and_the_variable(
        rt: Runtime, tmp_path: Path) -> None:
    svc = svc_for(rt, repos.enabled_flags(tmp_path / "nas"))
    plan = await plan_request(svc, "Deploy Jellyfin")
    assert plan.tags == ["jellyfin"] and plan.hosts == ["nas"]
    assert plan.blocked_reason is not None
    assert "jellyfin_enabled is true" in plan.blocked_reason and "jellyfin_enabled: true" in plan.blocked_reason
    with pytest.raises(PlanStateError, match="cannot be approved as-is"):
        await plans.decide(rt, plan.id, "approved", approver="tester", channel="cli")
    enabled = await plan_request(svc, "deploy sonarr")
    assert enabled.blocked_reason is None and enabled.check_result["changed"] == 2


async def test_a_role_no_playbook_applies_is_said_plainly_then_planned_from_a_generated_playbook(
        rt: Runtime, tmp_path: Path, targets: Path) -> None:
    repo = repos.unused_role(tmp_path / "unused")
    svc = svc_for(rt, repo)
    with pytest.raises(RoleNotApplied, match=r"role uptime-kuma exists in roles/uptime-kuma but no playbook "
                                             r"applies it.*--apply-role uptime-kuma.*groups: monitoring, servers"):
        await plan_request(svc, "Deploy Uptime Kuma")
    plan = await plan_request(svc, PlanRequest(request="Deploy Uptime Kuma", apply_role="uptime-kuma",
                                               apply_to="monitoring"))
    assert plan.playbook == "apply-uptime-kuma.yml" and plan.hosts == ["mon"]
    assert "- role: uptime-kuma" in plan.generated_playbook and "hosts: monitoring" in plan.generated_playbook
    assert plan.check_result["changed"] == 2
    status = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--ignored"], capture_output=True,
                            text=True, check=True).stdout
    assert status == ""  # nothing was written into the checkout
    await plans.decide(rt, plan.id, "approved", approver="tester", channel="cli")
    result = await execution.execute(rt, await svc.catalog(), plan.id)
    assert result.status == "succeeded" and (targets / "mon" / "uptime-kuma" / "compose.yaml").is_file()
    assert not (repo / "apply-uptime-kuma.yml").exists()


async def test_apply_to_must_be_a_host_or_group_of_the_inventory(rt: Runtime, tmp_path: Path) -> None:
    svc = svc_for(rt, repos.unused_role(tmp_path / "unused"))
    with pytest.raises(InvalidInput, match="is not a host or group"):
        await plan_request(svc, PlanRequest(request="Deploy Uptime Kuma", apply_role="uptime-kuma", apply_to="nope"))
    with pytest.raises(InvalidInput, match="one inventory host or group name"):
        await plan_request(svc, PlanRequest(request="Deploy Uptime Kuma", apply_role="uptime-kuma",
                                              apply_to="mon\n- hosts: all"))


async def test_the_environment_chosen_by_name_is_the_one_checked(rt: Runtime, tmp_path: Path) -> None:
    repo = repos.environments(tmp_path / "envs")
    prod = await plan_request(svc_for(rt, repo), "Deploy Grafana")
    staging = await plan_request(svc_for(rt, repo, "staging"), "Deploy Grafana")
    assert (prod.inventory, prod.hosts) == ("inventories/prod/hosts.yml", ["prod-app"])
    assert (staging.inventory, staging.hosts) == ("inventories/staging", ["staging-app"])


async def test_vault_encrypted_vars_without_a_password_block_the_answered_plan(rt: Runtime, tmp_path: Path) -> None:
    secret = tmp_path / "vault-pass"
    secret.write_text("correct horse battery staple\n")
    repo = repos.environments(tmp_path / "envs", encrypt_with=secret)
    blocked = await plan_request(svc_for(rt, repo), "Deploy Grafana")
    assert (blocked.playbook, blocked.inventory, blocked.check_result["status"]) == \
        ("playbooks/deploy-grafana.yml", "inventories/prod/hosts.yml", "not_run")
    assert "inventories/prod/group_vars/all/vault.yml is encrypted with ansible-vault and no vault password is " \
           "set: pass --vault-password-file" in blocked.blocked_reason
    rt.settings.ansible.vault_password_file = secret
    try:
        plan = await plan_request(svc_for(rt, repo), "Deploy Grafana")
    finally:
        rt.settings.ansible.vault_password_file = None
    assert plan.check_result["status"] == "successful" and plan.hosts == ["prod-app"]


async def test_a_missing_collection_blocks_the_plan_with_the_install_command(rt: Runtime, tmp_path: Path) -> None:
    plan = await plan_request(svc_for(rt, repos.missing_collection(tmp_path / "m")), "deploy widget")
    assert plan.blocked_reason == ("module homelabco.widgets.widget is not installed; install it with "
                                   "`ansible-galaxy collection install -r requirements.yml` and plan again")


async def test_a_play_that_matches_no_host_is_blocked(rt: Runtime, tmp_path: Path) -> None:
    repo = repos.unused_role(tmp_path / "r")
    (repo / "media.yml").write_text("# Deploy the media stack\n- hosts: media_servers\n  gather_facts: false\n"
                                    "  tasks: [{name: Render, ansible.builtin.debug: {msg: x}}]\n")
    git_commit_all(repo)
    plan = await plan_request(svc_for(rt, repo), "deploy the media stack")
    assert plan.hosts == [] and "no host of inventory hosts.yml matched the play's hosts (media_servers)" in \
        plan.blocked_reason


async def test_a_vars_prompt_without_a_value_blocks_the_plan_before_anything_runs(rt: Runtime, tmp_path: Path) -> None:
    repo = repos.unused_role(tmp_path / "r")
    (repo / "wifi.yml").write_text("# Configure the wifi password\n- hosts: all\n  gather_facts: false\n"
                                   "  vars_prompt: [{name: wifi_password, prompt: Password?}]\n"
                                   "  tasks: [{name: Set it, ansible.builtin.debug: {msg: x}}]\n")
    git_commit_all(repo)
    plan = await plan_request(svc_for(rt, repo), "configure the wifi password")
    assert plan.playbook == "wifi.yml" and plan.check_result["status"] == "not_run"
    assert "prompts for wifi_password" in plan.blocked_reason and "-e wifi_password=VALUE" in plan.blocked_reason


async def test_ask_become_pass_in_ansible_cfg_fails_fast_with_the_hint(rt: Runtime, tmp_path: Path) -> None:
    repo = repos.site_roles(tmp_path / "site")
    (repo / "ansible.cfg").write_text("[defaults]\ninventory = hosts.ini\n[privilege_escalation]\n"
                                      "become_ask_pass = True\n")
    git_commit_all(repo)
    plan = await plan_request(svc_for(rt, repo), "Deploy Jellyfin")
    assert (plan.playbook, plan.tags, plan.check_result["status"]) == ("site.yml", ["jellyfin"], "not_run")
    assert "become_ask_pass = true: Ansible would wait for a password" in plan.blocked_reason


async def test_no_repo_configured_says_how_to_set_one(rt: Runtime) -> None:
    svc = AnsibleService(rt, None)
    with pytest.raises(RepoError, match="no IaC repo is configured. Set one with CHIFFON_REPO"):
        await plan_request(svc, "Deploy Jellyfin")


async def test_a_galaxy_role_that_is_not_installed_blocks_the_plan_with_the_install_command(
        rt: Runtime, tmp_path: Path) -> None:
    repo = repos.site_roles(tmp_path / "site")
    (repo / "requirements.yml").write_text("roles:\n  - name: geerlingguy.docker\n")
    site = (repo / "site.yml").read_text()
    (repo / "site.yml").write_text(site.replace("  roles:\n", "  roles:\n  - role: geerlingguy.docker\n    tags: [docker]\n", 1))
    git_commit_all(repo)
    plan = await plan_request(svc_for(rt, repo), "Deploy Jellyfin")
    assert plan.tags == ["jellyfin"] and plan.hosts == []
    assert plan.blocked_reason == ("role geerlingguy.docker is not installed (a Galaxy role or a collection's role); "
                                   "install it with `ansible-galaxy install -r requirements.yml` and plan again")


@pytest.mark.parametrize(("shape", "request_text", "playbook", "tags", "hosts"), [
    ("nested_playbooks", "Deploy Beszel", "ansible/playbooks/beszel.yaml", [], ["docker1"]),
    ("nested_playbooks", "install the k3s cluster", "plays/k3s-cluster.yml", [], ["kube1"]),
    ("import_tasks", "Deploy Uptime Kuma", "main.yml", ["uptime-kuma"], ["monitor"]),  # --limit from its `when`
])
async def test_nested_and_import_tasks_shapes_check_for_real(rt: Runtime, tmp_path: Path, shape: str,
                                                             request_text: str, playbook: str, tags: list[str],
                                                             hosts: list[str]) -> None:
    plan = await plan_request(svc_for(rt, repos.BUILDERS[shape](tmp_path / shape)), request_text)
    assert (plan.playbook, plan.tags, plan.hosts) == (playbook, tags, hosts)
    assert plan.check_result["status"] == "successful" and plan.blocked_reason is None
    assert {e["host"] for e in plan.check_result["events"] if e["changed"]} == set(hosts)


async def test_a_gitignored_inventory_and_an_absent_vault_password_give_a_stored_blocked_answer(
        rt: Runtime, tmp_path: Path) -> None:
    repo = repos.gitignored_inventory(tmp_path / "r")
    plan = await plan_request(svc_for(rt, repo), "Tear down immich")
    assert (plan.playbook, plan.tags, plan.inventory, plan.status) == \
        ("teardown.yml", ["immich"], "inventory", "pending_approval")
    assert "copy inventory.example to inventory" in plan.blocked_reason
    assert "vault password file" in plan.blocked_reason and "--ask-vault-pass" in plan.blocked_reason
    assert plan.check_result["status"] == "not_run" and plan.audit_commit
    with pytest.raises(PlanStateError, match="cannot be approved as-is"):
        await plans.decide(rt, plan.id, "approved", approver="tester", channel="cli")


async def test_a_subfolder_project_is_checked_from_its_own_folder(rt: Runtime, tmp_path: Path) -> None:
    plan = await plan_request(svc_for(rt, repos.subfolder_project(tmp_path / "r")), "Deploy Jellyfin")
    assert (plan.project, plan.playbook, plan.inventory, plan.host_limit) == \
        ("ansible", "ansible/site.yml", "ansible/inventory.ini", "jellyfin")
    assert plan.check_result["status"] == "successful" and plan.hosts == ["media"]
