"""`chiffon deps`: what requirements.yml names, what is installed here, and how to install the rest."""

from __future__ import annotations

from pathlib import Path

import pytest

from chiffon.servers.ansible import requirements
from chiffon.servers.ansible.catalog import Catalog
from tests.fixtures import repos


def test_deps_lists_installed_and_missing_collections_and_roles(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    repo = repos.site_roles(tmp_path / "site")
    (repo / "requirements.yml").write_text("collections:\n  - name: community.general\n  - name: acme.widgets\n"
                                           "roles:\n  - name: geerlingguy.docker\n")
    installed = tmp_path / "cols" / "ansible_collections" / "acme" / "widgets"
    installed.mkdir(parents=True)
    monkeypatch.setenv("ANSIBLE_COLLECTIONS_PATH", str(tmp_path / "cols"))
    monkeypatch.setattr(requirements, "community_package", lambda: False)
    found = requirements.dependencies(Catalog.load(repo))
    rows = {(i["kind"], i["name"]): i["installed"] for i in found["items"]}
    assert rows == {("collection", "community.general"): False, ("collection", "acme.widgets"): True,
                    ("role", "geerlingguy.docker"): False}
    assert found["missing"] == ["community.general", "geerlingguy.docker"]
    assert "uv tool install 'chiffon[collections]'" in found["fix"][0]  # the community package carries it
    assert found["fix"][1] == "`ansible-galaxy role install -r requirements.yml`"


def test_a_collection_outside_the_community_package_is_installed_with_galaxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(requirements, "community_package", lambda: False)
    assert requirements.install_hint(["homelabco.widgets"], "requirements.yml") == \
        "`ansible-galaxy collection install -r requirements.yml`"


def test_a_subfolder_projects_requirements_file_is_found(tmp_path: Path) -> None:
    repo = repos.subfolder_project(tmp_path / "r")
    (repo / "ansible" / "requirements.yml").unlink(missing_ok=True)
    (repo / "ansible" / "collections").mkdir()
    (repo / "ansible" / "collections" / "requirements.yml").write_text("collections: [ansible.posix]\n")
    assert requirements.requirements_file(Catalog.load(repo)) == "ansible/collections/requirements.yml"
