import os
import shutil
from pathlib import Path

import pytest

from chiffon.servers.ansible.catalog import Catalog, resolve_in_repo
from chiffon.servers.ansible.events import render_diff
from chiffon.servers.ansible.unsafe_yaml import unsafe_extra_vars_yaml
from chiffon.shared.errors import InvalidInput, PathOutsideRepo, PlaybookNotFound, RepoError
from tests.conftest import EXAMPLE, git_commit_all


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load(EXAMPLE, "inventories/local.ini")


def test_catalog_lists_the_four_playbooks_with_description_service_and_tags(catalog: Catalog) -> None:
    assert set(catalog.playbooks) == {"deploy-uptime-kuma.yml", "deploy-redis.yml", "backup-postgres.yml",
                                      "cleanup-disk.yml"}
    kuma = catalog.get("deploy-uptime-kuma")
    assert kuma.service == "uptime-kuma"
    assert kuma.description.startswith("Deploy Uptime Kuma")
    assert "monitoring" in kuma.tags and kuma.host_patterns == ("monitoring",)


def test_template_files_are_not_playbooks(catalog: Catalog) -> None:
    assert not any(name.startswith(("templates/", "group_vars/")) for name in catalog.playbooks)


def test_playbook_path_with_dotdot_is_refused(catalog: Catalog) -> None:
    with pytest.raises(PathOutsideRepo, match="outside the IaC repo"):
        catalog.get("../../etc/passwd")


def test_absolute_playbook_path_is_refused(catalog: Catalog) -> None:
    with pytest.raises(PathOutsideRepo, match="absolute"):
        catalog.get("/etc/passwd")


def test_symlink_out_of_the_repo_is_refused(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLE, repo)
    (tmp_path / "outside.yml").write_text("- hosts: all\n  tasks: []\n")
    os.symlink(tmp_path / "outside.yml", repo / "escape.yml")
    git_commit_all(repo)
    catalog = Catalog.load(repo, "inventories/local.ini")
    assert "escape.yml" not in catalog.playbooks
    with pytest.raises(PathOutsideRepo):
        catalog.get("escape.yml")


def test_unknown_playbook_lists_the_known_ones(catalog: Catalog) -> None:
    with pytest.raises(PlaybookNotFound, match="deploy-redis.yml"):
        catalog.get("deploy-nextcloud.yml")


def test_repo_that_is_not_a_git_repo_is_scanned_read_only_with_no_commit(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLE, tmp_path / "plain")
    catalog = Catalog.load(tmp_path / "plain", "inventories/local.ini")
    assert "deploy-uptime-kuma.yml" in catalog.playbooks
    assert not catalog.is_git and catalog.commit is None
    assert not (tmp_path / "plain" / ".git").exists()


def test_repo_without_playbooks_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty" / "inventories").mkdir(parents=True)
    (tmp_path / "empty" / "README.md").write_text("nothing here")
    git_commit_all(tmp_path / "empty")
    with pytest.raises(RepoError, match="no playbooks and no roles"):
        Catalog.load(tmp_path / "empty", "inventories/local.ini")


def test_inventory_outside_the_repo_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PathOutsideRepo):
        resolve_in_repo(EXAMPLE, "../../../etc/hosts", "inventory")


def test_limit_must_name_known_hosts(catalog: Catalog) -> None:
    assert catalog.validate_limit("east,ai") == "east,ai"
    with pytest.raises(InvalidInput, match="not a host or group"):
        catalog.validate_limit("nas")
    with pytest.raises(InvalidInput, match="may contain only"):
        catalog.validate_limit("east; rm -rf /")


def test_local_inventory_maps_the_homelab_hosts(catalog: Catalog) -> None:
    groups = catalog.groups()
    assert set(groups["all"]) == {"ai", "desktop", "east"}
    assert groups["monitoring"] == ["east"]
    assert catalog.hostvars("east")["ansible_connection"] == "local"


def test_extra_vars_are_written_with_the_unsafe_tag() -> None:
    text = unsafe_extra_vars_yaml({"msg": "{{ lookup('pipe','id') }}", "n": 3, "items": ["{{ x }}"]})
    assert "msg: !unsafe '{{ lookup(''pipe'',''id'') }}'" in text
    assert "- !unsafe '{{ x }}'" in text and "n: 3" in text


def test_ansible_diff_renders_as_unified_diff() -> None:
    text = render_diff({"before": "a\nb\n", "after": "a\nc\n", "before_header": "f", "after_header": "f"})
    assert text.splitlines()[:2] == ["--- f", "+++ f"] and "-b" in text and "+c" in text
