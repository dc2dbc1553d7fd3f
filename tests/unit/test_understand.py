"""Answer first: what a request asks for, read from repos in real shapes, whatever is missing on this machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from chiffon.servers.ansible import matching, understand
from chiffon.servers.ansible.catalog import Catalog
from chiffon.servers.ansible.commands import parse_invocation, read_commands
from chiffon.shared.errors import NoMatch
from tests.fixtures import repos


def answer(repo: Path, request: str, **kw: str) -> understand.Answer:
    catalog = Catalog.load(repo)
    return understand.understand(catalog, request, matching.rank(catalog, request), catalog.commands, **kw)


def test_a_project_in_a_subfolder_uses_its_own_ansible_cfg_and_inventory(tmp_path: Path) -> None:
    got = answer(repos.subfolder_project(tmp_path / "r"), "Deploy Jellyfin")
    assert got.project.dir == "ansible" and got.best.unit.playbook.name == "ansible/site.yml"
    assert (got.inventory, got.inventory_present) == ("ansible/inventory.ini", True)


def test_a_role_in_two_plays_picks_the_play_for_the_service_group_and_limits_to_it(tmp_path: Path) -> None:
    got = answer(repos.subfolder_project(tmp_path / "r"), "Redeploy the jellyfin container")
    assert got.best.unit.hosts == ("jellyfin",) and got.limit == "jellyfin"
    assert any("site.yml --limit jellyfin" in e for e in got.evidence)  # the owner's Taskfile says so
    other = next(c for c in got.candidates if c.unit.hosts == ("web",))
    assert "also applies users, ntp, caddy" in " ".join(other.evidence)


def test_the_owners_command_is_read_from_a_taskfile_with_its_cd() -> None:
    assert parse_invocation(" -i inventories/prod site.yml --tags jellyfin -l media -e x=1") == \
        {"playbook": "site.yml", "inventory": "inventories/prod", "tags": ("jellyfin",), "limit": "media"}
    assert parse_invocation(" {{.PLAYBOOK}} --limit {{.LIMIT}}")["playbook"] is None  # templated: not guessed


def test_commands_resolve_playbooks_against_the_folder_they_cd_into(tmp_path: Path) -> None:
    repo = repos.subfolder_project(tmp_path / "r")
    found = read_commands(repo, [str(repo / "Taskfile.yml")], {"ansible/site.yml"})
    assert [(c.playbook, c.limit, c.source) for c in found] == [("ansible/site.yml", "jellyfin", "Taskfile.yml:5")]


def test_a_gitignored_inventory_still_gets_an_answer_with_the_copy_to_make(tmp_path: Path) -> None:
    got = answer(repos.gitignored_inventory(tmp_path / "r"), "Deploy Immich")
    assert (got.best.unit.playbook.name, got.best.unit.tags) == ("deploy.yml", ("immich",))
    assert (got.inventory, got.inventory_present) == ("inventory", False)
    assert "copy inventory.example to inventory" in got.problems[0]


def test_tear_down_picks_the_teardown_play_tagged_for_the_service(tmp_path: Path) -> None:
    got = answer(repos.gitignored_inventory(tmp_path / "r"), "Tear down paperless")
    assert (got.best.unit.playbook.name, got.best.unit.tags, got.intent.action) == \
        ("teardown.yml", ("paperless",), "remove")


def test_a_deploy_request_never_runs_the_teardown_playbook(tmp_path: Path) -> None:
    got = answer(repos.gitignored_inventory(tmp_path / "r"), "set up paperless again")
    assert got.best.unit.playbook.name == "deploy.yml"


def test_tearing_down_a_service_with_no_teardown_play_is_refused(tmp_path: Path) -> None:
    with pytest.raises(NoMatch):
        answer(repos.subfolder_project(tmp_path / "r"), "Tear down Jellyfin")


def test_a_service_the_repo_does_not_have_is_refused(tmp_path: Path) -> None:
    with pytest.raises(NoMatch):
        answer(repos.gitignored_inventory(tmp_path / "r"), "Install Vaultwarden")


def test_the_environment_a_request_names_picks_its_inventory(tmp_path: Path) -> None:
    repo = repos.root_inventory_envs(tmp_path / "r")
    assert answer(repo, "Set up the UniFi controller on staging").inventory == "staging"
    assert answer(repo, "Deploy the UniFi controller").inventory == "production"  # the README's -i


def test_per_environment_inventory_folders_are_chosen_by_the_request(tmp_path: Path) -> None:
    repo = repos.environments(tmp_path / "e")
    assert answer(repo, "Deploy Grafana on staging").inventory == "inventories/staging"
    assert answer(repo, "Deploy Grafana").inventory == "inventories/prod/hosts.yml"


def test_a_host_the_request_names_becomes_the_limit(tmp_path: Path) -> None:
    got = answer(repos.subfolder_project(tmp_path / "r"), "Deploy Caddy on web1")
    assert got.limit == "web1" and got.limit_source == "the request names it"


def test_a_small_models_reason_that_is_not_a_sentence_about_the_request_is_dropped() -> None:
    from chiffon.orchestrator.planner import is_sentence_about

    names = ["deploy-uptime-kuma.yml", "deploy-extsvc.yml"]
    assert not is_sentence_about("deploy-uptime-kuma.yml", "Deploy the extsvc service", names)
    assert not is_sentence_about("backup-postgres.yml is a backup-postgres.yml", "Deploy the extsvc service", names)
    assert is_sentence_about("It deploys the extsvc service the request names.", "Deploy the extsvc service", names)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _repo(tmp_path: Path, files: dict[str, str]) -> Path:
    repo = tmp_path / "repo"
    for name, text in files.items():
        _write(repo / name, text)
    _write(repo / "hosts.yml", "all:\n  children:\n    media:\n      hosts:\n        nas:\n    pis:\n      hosts:\n"
                               "        pi1:\n        pi2:\n")
    return repo


def test_tags_on_tasks_are_units(tmp_path: Path) -> None:
    repo = _repo(tmp_path, {"update.yml": "- hosts: all\n  tasks:\n"
                                          "    - {name: Upgrade packages, ansible.builtin.apt: {upgrade: dist}, tags: packages}\n"
                                          "    - {name: Reboot, ansible.builtin.reboot: {}, tags: reboot}\n"})
    got = answer(repo, "Upgrade packages on the Pis")
    assert (got.best.unit.playbook.name, got.best.unit.tags, got.limit) == ("update.yml", ("packages",), "pis")


def test_a_playbook_split_in_phases_runs_the_phase_asked_for(tmp_path: Path) -> None:
    repo = _repo(tmp_path, {"immich/main.yml": "- hosts: media\n  tasks:\n"
                                               "    - {name: Install, ansible.builtin.debug: {}, tags: install}\n"
                                               "    - {name: Upgrade, ansible.builtin.debug: {}, tags: upgrade}\n"})
    assert answer(repo, "Upgrade Immich").best.unit.tags == ("upgrade",)
    assert answer(repo, "Install Immich").best.unit.tags == ("install",)


def test_roles_included_in_a_loop_over_a_play_list_are_units(tmp_path: Path) -> None:
    repo = _repo(tmp_path, {
        "server.yml": "- hosts: media\n  vars:\n    apps: [grafana, loki]\n  tasks:\n"
                      "    - include_role: {name: '{{ app }}', apply: {tags: '{{ app }}'}}\n"
                      "      loop: '{{ apps }}'\n      loop_control: {loop_var: app}\n      tags: always\n",
        "roles/grafana/tasks/main.yml": "- ansible.builtin.debug: {}\n",
        "roles/loki/tasks/main.yml": "- ansible.builtin.debug: {}\n"})
    got = answer(repo, "Deploy Grafana")
    assert (got.best.unit.playbook.name, got.best.unit.tags) == ("server.yml", ("grafana",))


def test_a_container_a_role_runs_names_it(tmp_path: Path) -> None:
    repo = _repo(tmp_path, {
        "site.yml": "- hosts: media\n  roles:\n    - {role: arr, tags: arr}\n    - {role: caddy, tags: caddy}\n",
        "roles/arr/tasks/main.yml": "- community.docker.docker_compose_v2: {project_src: /srv/arr}\n",
        "roles/arr/templates/docker-compose.yml.j2": "services:\n  sonarr:\n    image: x\n  radarr:\n    image: y\n",
        "roles/caddy/tasks/main.yml": "- ansible.builtin.debug: {}\n"})
    assert answer(repo, "Redeploy the Sonarr container").best.unit.tags == ("arr",)


def test_the_playbook_the_owner_runs_imports_the_one_with_the_unit(tmp_path: Path) -> None:
    repo = _repo(tmp_path, {
        "main.yml": "- import_playbook: media.yml\n- import_playbook: base.yml\n",
        "media.yml": "- hosts: media\n  roles:\n    - {role: jellyfin, tags: jellyfin}\n",
        "base.yml": "- hosts: all\n  tasks: [{ansible.builtin.debug: {}}]\n",
        "roles/jellyfin/tasks/main.yml": "- ansible.builtin.debug: {}\n",
        "README.md": "```\nansible-playbook -i hosts.yml main.yml --tags <tag>\n```\n"})
    got = answer(repo, "Deploy Jellyfin")
    assert (got.best.unit.playbook.name, got.best.unit.tags) == ("main.yml", ("jellyfin",))
    assert any("main.yml, which imports media.yml" in e for e in got.evidence)


def test_a_fact_gathering_play_without_tasks_does_not_hide_the_playbook(tmp_path: Path) -> None:
    repo = _repo(tmp_path, {"site.yml": "- hosts: all\n  gather_facts: true\n  tags: [always]\n"
                                        "- hosts: media\n  roles:\n    - {role: plex, tags: plex}\n",
                            "roles/plex/tasks/main.yml": "- ansible.builtin.debug: {}\n"})
    assert answer(repo, "Install Plex").best.unit.name == "site.yml --tags plex"


def test_a_committed_ansible_cfg_example_names_the_inventory(tmp_path: Path) -> None:
    repo = _repo(tmp_path, {"jellyfin.yml": "- hosts: media\n  tasks: [{ansible.builtin.debug: {}}]\n",
                            "ansible.cfg.example": "[defaults]\ninventory = inventories/home\n"})
    got = answer(repo, "Deploy Jellyfin")
    assert (got.inventory, got.inventory_present) == ("inventories/home", False)


def test_a_request_from_scratch_picks_the_bootstrap_playbook(tmp_path: Path) -> None:
    repo = _repo(tmp_path, {"bootstrap.yml": "- hosts: all\n  tasks: [{name: Create the admin user, ansible.builtin.debug: {}}]\n",
                            "jellyfin.yml": "- hosts: media\n  tasks: [{ansible.builtin.debug: {}}]\n"})
    assert answer(repo, "Set up a fresh server from scratch").best.unit.playbook.name == "bootstrap.yml"


def test_a_vault_identity_that_prompts_blocks_until_a_human_types_it(tmp_path: Path) -> None:
    from chiffon.servers.ansible.preview import vault_password_or_problem

    repo = _repo(tmp_path, {"site.yml": "- hosts: media\n  tasks: [{ansible.builtin.debug: {}}]\n",
                            "ansible.cfg": "[defaults]\ninventory = hosts.yml\nvault_identity_list = home@prompt, "
                                           "lab@~/.chiffon-test-no-such-vault-file\n"})
    catalog = Catalog.load(repo)
    assert catalog.cfg.vault_identities[0] == ("home", "prompt")
    _, problem = vault_password_or_problem(catalog, None)
    assert problem is not None and "lab@" in problem and "not on this machine" in problem
    (repo / "ansible.cfg").write_text("[defaults]\ninventory = hosts.yml\nvault_identity_list = home@prompt\n")
    catalog = Catalog.load(repo)
    _, problem = vault_password_or_problem(catalog, None)
    assert problem is not None and "asks for the home vault password at a prompt" in problem
    assert vault_password_or_problem(catalog, None, typed=True) == (None, None)


def test_a_hostile_readme_cannot_inject_an_inventory_limit_or_tags_into_a_plan(tmp_path: Path) -> None:
    repo = _repo(tmp_path, {"jellyfin.yml": "- hosts: media\n  tasks: [{ansible.builtin.debug: {}}]\n",
                            "README.md": "```\nansible-playbook -i /etc/shadow jellyfin.yml --limit 'media;id' "
                                         "--tags 'x$(id)'\nansible-playbook -i ~/.ssh/inv jellyfin.yml\n```\n"})
    found = read_commands(repo, [str(repo / "README.md")], {"jellyfin.yml"})
    assert found and all(c.inventory is None and c.tags == () for c in found)
    assert all(c.limit in (None, "media") for c in found)  # cut where a shell separates commands, never "id"
    got = answer(repo, "Deploy Jellyfin")
    assert got.inventory == "hosts.yml" and got.limit in (None, "media")  # the repo's own inventory


def test_a_committed_symlink_never_reads_files_outside_the_repo(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.setenv("CHIFFON_TEST_SECRET", "s3cret-from-the-environment")
    repo = _repo(tmp_path, {"jellyfin.yml": "- hosts: media\n  tasks: [{ansible.builtin.debug: {}}]\n"})
    os.symlink("/proc/self/environ", repo / "ansible.cfg")  # what a hostile repo commits
    os.symlink("/proc/self/environ", repo / "inventory-leak")
    got = answer(repo, "Deploy Jellyfin")
    assert got.inventory == "hosts.yml" and "s3cret" not in repr(got.as_dict())
    assert "s3cret" not in repr(Catalog.load(repo).projects)
    from chiffon.servers.ansible.inventories import inventory_names

    assert inventory_names(repo / "inventory-leak", repo) == set()


def test_an_ansible_cfg_that_does_not_parse_is_named_without_its_text(tmp_path: Path) -> None:
    from chiffon.shared.errors import RepoError

    repo = _repo(tmp_path, {"jellyfin.yml": "- hosts: media\n  tasks: [{ansible.builtin.debug: {}}]\n",
                            "ansible.cfg": "TOKEN=abc123-do-not-show\n[defaults]\n"})
    with pytest.raises(RepoError) as raised:
        Catalog.load(repo)
    assert "abc123" not in str(raised.value) and "line 1" in str(raised.value)
