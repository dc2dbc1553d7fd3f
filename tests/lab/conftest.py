"""The lab fixture: one three-host lab per test session (tests/lab/lab.py), removed at the end even when a test
failed; each test gets it back whole (every sshd up, every link up) and with no host key trusted unless it asks
for ``trusted_lab``."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from chiffon.shared.resources import example_repo
from tests.conftest import git_commit_all
from tests.lab.lab import Lab, missing
from tests.lab.services import LabServices, missing_packages


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A started lab (skips the test, with the reason, where a lab cannot start here)."""
    why = missing()
    if why:
        pytest.skip(f"no lab: {why}")
    made = Lab(tmp_path_factory.mktemp("lab")).start()
    try:
        yield made
    finally:
        made.stop()


@pytest.fixture(autouse=True)
def whole_lab(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test that used the lab: every host's link up, its sshd running, the known_hosts emptied."""
    yield
    if "lab" not in request.fixturenames:
        return
    lab: Lab = request.getfixturevalue("lab")
    for host in lab.hosts.values():
        host.reconnect()
        if not host.sshd_pids():
            host.start_sshd()
    lab.known_hosts.write_text("")
    shutil.rmtree(Path.home() / ".ansible" / "cp", ignore_errors=True)  # Ansible's SSH connections, reused for 60 s


@pytest.fixture
def trusted_lab(lab: Lab) -> Lab:
    """The lab with every host's key in its known_hosts (as after the owner checked the fingerprints)."""
    lab.trust()
    return lab


@pytest.fixture
def lab_repo(lab: Lab, tmp_path: Path) -> Path:
    """A git copy of the example repo with ``inventories/lab.ini`` targeting the lab's hosts."""
    dest = tmp_path / "homelab-infra"
    shutil.copytree(example_repo(), dest)
    (dest / "inventories" / "lab.ini").write_text(lab.inventory())
    git_commit_all(dest)
    return dest


@pytest.fixture(scope="session")
def lab_services(lab: Lab) -> Iterator[LabServices]:
    """Debian's PostgreSQL on ``ai`` and Redis on ``east`` (tests/lab/services.py), started once per session (skips
    with the reason where the Debian packages are missing), stopped at the end."""
    why = missing_packages()
    if why:
        pytest.skip(f"no lab services: {why}")
    services = LabServices(lab).start()
    try:
        yield services
    finally:
        services.stop()
