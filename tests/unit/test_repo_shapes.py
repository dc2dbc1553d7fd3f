"""How chiffon reads repos shaped like real homelab repos: plays anywhere, roles, tags, inventories."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from chiffon.servers.ansible import matching
from chiffon.servers.ansible.ansible_cfg import read_ansible_cfg
from chiffon.servers.ansible.catalog import Catalog, ScanCache
from chiffon.servers.ansible.preview import validate_tags
from chiffon.servers.ansible.units import services
from chiffon.shared.errors import InvalidInput, PathOutsideRepo, RepoError
from tests.conftest import git_commit_all
from tests.fixtures import repos

LABELLED = Path(__file__).parents[1] / "fixtures" / "repo_requests.yaml"


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("shapes")
    return {name: build(base / name) for name, build in repos.BUILDERS.items()}


def best(catalog: Catalog, request: str) -> str | None:
    top = matching.rank(catalog, request)[0]
    return top.unit.name if top.score >= matching.MIN_SCORE else None


def test_plays_are_found_at_any_depth_in_yml_and_yaml(shapes: dict[str, Path]) -> None:
    catalog = Catalog.load(shapes["nested_playbooks"])
    assert set(catalog.playbooks) == {"ansible/playbooks/beszel.yaml", "ansible/playbooks/gitea.yaml",
                                      "ansible/playbooks/immich.yaml", "plays/k3s-cluster.yml"}


def test_ci_workflows_taskfiles_compose_molecule_group_vars_and_ignored_files_are_not_playbooks(
        shapes: dict[str, Path]) -> None:
    names = set(Catalog.load(shapes["nested_playbooks"]).playbooks)
    for noise in (".github/workflows/lint.yml", "Taskfile.yml", ".pre-commit-config.yaml", "compose/grafana.yaml",
                  "requirements.yml", "ansible/playbooks/group_vars/all.yml", "scratch/old.yml",
                  "ansible/roles/k3s_agent/molecule/default/converge.yml"):
        assert noise not in names


def test_a_folder_that_is_not_a_git_repo_is_scanned_too(tmp_path: Path) -> None:
    repo = repos.site_roles(tmp_path / "site")
    import shutil

    shutil.rmtree(repo / ".git")
    catalog = Catalog.load(repo)
    assert "site.yml" in catalog.playbooks and not catalog.is_git and catalog.commit is None


def test_ansible_cfg_inventory_folder_is_the_default(shapes: dict[str, Path]) -> None:
    catalog = Catalog.load(shapes["nested_playbooks"])
    assert catalog.inventory == "inventory" and catalog.inventory_name == "inventory"


def test_environments_are_listed_and_ansible_cfg_names_the_default(shapes: dict[str, Path]) -> None:
    catalog = Catalog.load(shapes["environments"])
    assert {(c.name, c.path) for c in catalog.inventories} == {
        ("prod", "inventories/prod/hosts.yml"), ("staging", "inventories/staging")}
    assert catalog.inventory == "inventories/prod/hosts.yml"
    assert Catalog.load(shapes["environments"], "staging").inventory == "inventories/staging"


def test_ansible_config_variable_wins_over_the_repo_file(shapes: dict[str, Path], tmp_path: Path) -> None:
    other = tmp_path / "other.cfg"
    other.write_text(f"[defaults]\ninventory = {shapes['environments']}/inventories/staging\n")
    cfg = read_ansible_cfg(shapes["environments"], {"ANSIBLE_CONFIG": str(other)})
    assert cfg.inventory == ((shapes["environments"] / "inventories" / "staging").resolve(),)


def test_unknown_inventory_name_is_refused_with_the_known_ones(shapes: dict[str, Path]) -> None:
    with pytest.raises(InvalidInput, match=r"'qa' is not an inventory.*prod.*staging"):
        Catalog.load(shapes["environments"], "qa")


def test_inventory_path_out_of_the_repo_is_refused(shapes: dict[str, Path]) -> None:
    with pytest.raises(PathOutsideRepo):
        Catalog.load(shapes["environments"], "../../etc")
    with pytest.raises(PathOutsideRepo):
        Catalog.load(shapes["environments"], "/etc/ansible/hosts")


def test_no_inventory_names_where_chiffon_looked(tmp_path: Path) -> None:
    repo = repos.unused_role(tmp_path / "r")
    (repo / "hosts.yml").rename(repo / "hosts.yml.example")
    git_commit_all(repo)
    catalog = Catalog.load(repo)  # listing still works
    assert "initial-setup.yaml" in catalog.playbooks
    with pytest.raises(RepoError, match=r"no usable inventory \(looked at inventory/, inventories/<env>/"):
        _ = catalog.inventory


def test_site_playbook_roles_are_units_selected_by_their_own_tag(shapes: dict[str, Path]) -> None:
    catalog = Catalog.load(shapes["site_roles"])
    jellyfin = next(u for u in catalog.units if u.role_name == "jellyfin")
    assert jellyfin.playbook is not None and jellyfin.playbook.name == "site.yml"
    assert jellyfin.tags == ("jellyfin",) and jellyfin.entry_tags == ("jellyfin", "apps")
    assert jellyfin.description == "Jellyfin media server for movies and TV"


def test_import_tasks_per_service_are_units_with_their_host_condition(shapes: dict[str, Path]) -> None:
    catalog = Catalog.load(shapes["import_tasks"])
    kuma = next(u for u in catalog.units if u.service == "uptime-kuma")
    assert kuma.kind == "tasks" and kuma.tags == ("uptime-kuma",) and kuma.hosts == ("monitor",)
    assert kuma.source == "roles/docker_containers/tasks/uptime-kuma.yml"
    assert kuma.when == ('inventory_hostname == "monitor"',)


def test_role_no_playbook_applies_is_an_unused_unit(shapes: dict[str, Path]) -> None:
    catalog = Catalog.load(shapes["unused_role"])
    unused = [u for u in catalog.units if u.kind == "unused-role"]
    assert [u.role_name for u in unused] == ["uptime-kuma"]
    assert best(catalog, "Deploy Uptime Kuma") == "role uptime-kuma"


def test_nested_role_folders_are_named_by_their_path_below_roles(tmp_path: Path) -> None:
    repo = tmp_path / "nested"
    (repo / "roles" / "containers" / "jellyfin" / "tasks").mkdir(parents=True)
    (repo / "roles" / "containers" / "jellyfin" / "tasks" / "main.yml").write_text("- ansible.builtin.debug: {}\n")
    (repo / "site.yml").write_text("- hosts: all\n  roles:\n    - role: containers/jellyfin\n      tags: [jellyfin]\n")
    git_commit_all(repo)
    catalog = Catalog.load(repo)
    assert set(catalog.roles) == {"containers/jellyfin"}
    assert best(catalog, "deploy jellyfin") == "site.yml --tags jellyfin"
    assert not [u for u in catalog.units if u.kind == "unused-role"]


def test_services_say_what_runs_where(shapes: dict[str, Path]) -> None:
    catalog = Catalog.load(shapes["import_tasks"])
    rows = services(catalog.units, catalog.hosts_matching)
    kuma = next(r for r in rows if r["service"] == "uptime-kuma")
    assert kuma["playbook"] == "main.yml" and kuma["tags"] == ["uptime-kuma"] and kuma["targets"] == ["monitor"]
    assert [r["service"] for r in services(catalog.units, catalog.hosts_matching, host="dns")] == ["adguard"]


def test_tags_outside_the_playbook_are_refused(shapes: dict[str, Path]) -> None:
    catalog = Catalog.load(shapes["site_roles"])
    site = catalog.get("site.yml")
    assert validate_tags(catalog, site, ["jellyfin"], "tags") == ["jellyfin"]
    with pytest.raises(InvalidInput, match="not a tag of site.yml"):
        validate_tags(catalog, site, ["plex"], "tags")
    with pytest.raises(InvalidInput, match="is not a tag"):
        validate_tags(catalog, site, ["jellyfin --extra-vars=x"], "tags")


def test_labelled_requests_rank_the_right_unit_first_at_least_nine_times_in_ten(shapes: dict[str, Path]) -> None:
    rows = yaml.safe_load(LABELLED.read_text())["requests"]
    catalogs = {name: Catalog.load(path) for name, path in shapes.items()}
    right = sum(best(catalogs[shape], request) == expected for shape, request, expected in rows)
    assert len(rows) >= 40 and sum(1 for r in rows if r[2] is None) >= 6
    assert right / len(rows) >= 0.9


def test_a_rescan_parses_only_the_file_that_changed(tmp_path: Path) -> None:
    repo = repos.site_roles(tmp_path / "site")
    cache = ScanCache()
    Catalog.load(repo, cache=cache)
    before = cache.parsed
    tasks = repo / "roles" / "sonarr" / "tasks" / "main.yml"
    tasks.write_text(tasks.read_text() + "- name: Added later\n  ansible.builtin.debug: {}\n")
    os.utime(tasks, ns=(tasks.stat().st_atime_ns, tasks.stat().st_mtime_ns + 1_000_000))
    again = Catalog.load(repo, cache=cache)
    assert cache.parsed - before == 1
    assert "Added later" in again.roles["sonarr"].task_names


def test_a_symlinked_playbook_pointing_out_of_the_repo_is_never_read(tmp_path: Path) -> None:
    repo = repos.site_roles(tmp_path / "site")
    (tmp_path / "evil.yml").write_text("- hosts: all\n  tasks: [{ansible.builtin.command: id}]\n")
    os.symlink(tmp_path / "evil.yml", repo / "evil.yml")
    assert "evil.yml" not in Catalog.load(repo).playbooks


def test_a_run_that_reports_its_container_not_started_carries_a_warning() -> None:
    from chiffon.servers.ansible.preview import run_warnings

    assert run_warnings({"container_started": True, "monitors": ["a"]}) == []
    (warning,) = run_warnings({"container_started": False, "monitors": ["a"]})
    assert warning.startswith("the playbook reports container_started: false") and "not running yet" in warning
