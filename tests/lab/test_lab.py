"""The lab itself: three hosts over SSH with their own files, sudo as configured, and nothing left after stop."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.lab.lab import HOSTS, PASSWORD_HOST, Lab, missing


def test_each_host_answers_over_ssh_with_its_own_name_and_files(trusted_lab: Lab) -> None:
    lab = trusted_lab
    for name in HOSTS:
        done = lab.ssh(name, "hostname && touch /opt/homelab/mine && ls /opt/homelab")
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == [name, "mine"]
        assert lab[name].path("/opt/homelab/mine").exists()
        lab[name].path("/opt/homelab/mine").unlink()
    assert not Path("/opt/homelab/mine").exists()  # on this machine's /opt: nothing


def test_an_unknown_host_key_is_refused_by_ssh(lab: Lab) -> None:
    done = lab.ssh("east", "true")
    assert done.returncode == 255 and "Host key verification failed" in done.stderr


def test_sudo_asks_for_a_password_on_one_host_only(trusted_lab: Lab) -> None:
    for name in HOSTS:
        done = trusted_lab.ssh(name, "sudo -n true")
        assert (done.returncode != 0) == (name == PASSWORD_HOST), (name, done.stderr)
    typed = trusted_lab.ssh(PASSWORD_HOST, f"echo {trusted_lab.sudo_password} | sudo -S -p '' id -u")
    assert typed.stdout.strip() == "0", typed.stderr


def test_a_cut_link_stops_answering_and_comes_back(trusted_lab: Lab) -> None:
    trusted_lab["desktop-linux"].cut()
    assert trusted_lab.ssh("desktop-linux", "true", timeout=30).returncode == 255
    trusted_lab["desktop-linux"].reconnect()
    assert trusted_lab.ssh("desktop-linux", "true").returncode == 0


def test_stop_removes_everything_it_made(tmp_path: Path) -> None:
    if missing():
        pytest.skip(f"no lab: {missing()}")
    lab = Lab(tmp_path / "lab").start()
    netns, user, bridge = [h.netns for h in lab.hosts.values()], lab.user, lab.bridge
    lab.stop()
    lab.stop()  # twice is fine
    assert not set(netns) & set(subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split())
    assert subprocess.run(["id", user], capture_output=True).returncode != 0
    assert subprocess.run(["ip", "link", "show", bridge], capture_output=True).returncode != 0
    assert not (tmp_path / "lab").exists()
