"""Which units a drift run checks, when a unit counts as run, and the one-line summary of a change (no Ansible)."""

from __future__ import annotations

from pathlib import Path

from chiffon.servers.ansible.catalog import Catalog
from chiffon.servers.ansible.drift import _summary, drift_units, has_run
from tests.fixtures import repos
from tests.fixtures.drift_repo import make_drift_repo


def test_each_playbook_is_checked_once_and_an_importing_site_playbook_is_not(tmp_path: Path) -> None:
    catalog = Catalog.load(make_drift_repo(tmp_path / "r", 4, "t0k3n", secure=True))
    assert [u.id for u in drift_units(catalog)] == [
        "deploy-svc-00.yml", "deploy-svc-01.yml", "deploy-svc-02.yml", "deploy-svc-03.yml",
        "secure/deploy-secrets-store.yml"]  # site.yml only imports them


def test_a_site_playbook_of_tagged_roles_is_checked_role_by_role(tmp_path: Path) -> None:
    catalog = Catalog.load(repos.site_roles(tmp_path / "r"))
    units = {u.id: u.tags for u in drift_units(catalog)}
    assert units["site.yml::role:jellyfin"] == ("jellyfin",) and "site.yml" not in units
    assert all(tags for uid, tags in units.items() if uid.startswith("site.yml"))


def test_a_unit_counts_as_run_through_its_playbook_an_importer_or_its_tag(tmp_path: Path) -> None:
    catalog = Catalog.load(make_drift_repo(tmp_path / "r", 2, "t0k3n"))
    unit = catalog.unit("deploy-svc-00.yml")
    assert not has_run(catalog, unit, set())
    assert not has_run(catalog, unit, {("deploy-svc-01.yml", ())})
    assert has_run(catalog, unit, {("deploy-svc-00.yml", ())})
    assert has_run(catalog, unit, {("site.yml", ())})  # site.yml imports it
    roles = Catalog.load(repos.site_roles(tmp_path / "s"))
    jellyfin = roles.unit("site.yml::role:jellyfin")
    assert has_run(roles, jellyfin, {("site.yml", ("jellyfin",))}) and has_run(roles, jellyfin, {("site.yml", ())})
    assert not has_run(roles, jellyfin, {("site.yml", ("sonarr",))})


def test_a_change_is_summed_up_in_one_line() -> None:
    assert _summary("--- /srv/a.conf\n+++ /tmp/x/a.conf.j2\n@@ -1 +1 @@\n-a\n+b\n", "") == "/srv/a.conf: +1 -1 line(s)"
    assert _summary("--- before\n+++ /tmp/x/t.j2\n@@ -0,0 +1,2 @@\n+a\n+b\n", "") == "new file: +2 line(s)"
    assert _summary("--- before\n+++ after\n@@ -1 +1 @@\n-state: absent\n+state: directory\n", "") == \
        "-state: absent +state: directory"
    assert _summary("", "line\nadded") == "line added"
