"""The repository has no symlinks, so a clone made as Windows git makes one (``core.symlinks=false``, where a link
would check out as a small text file) is the whole package: it runs the main job."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import CHECKOUT, KUMA_REQUEST, git_commit_all
from tests.e2e.test_wheel import run
from tests.fixtures import docker_standin


def test_the_repository_tracks_no_symlink() -> None:
    staged = run(["git", "-C", str(CHECKOUT), "ls-files", "--stage"]).stdout.splitlines()
    assert [line for line in staged if line.startswith("120000 ")] == []


def test_a_clone_without_symlinks_runs_the_main_job(tmp_path: Path) -> None:
    clone = tmp_path / "chiffon"
    run(["git", "clone", "-q", "-c", "core.symlinks=false", str(CHECKOUT), str(clone)])
    # the clone's own code, not this checkout's: its folders come first on the path, its chiffon/ takes them in
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHIFFON_", "PYTHONPATH"))}
    env["PYTHONPATH"] = str(clone)
    where = run([sys.executable, "-c", "import chiffon.servers.ansible.service as s, chiffon.shared.resources as r;"
                 "print(s.__file__); print(r.example_repo())"], cwd=tmp_path, env=env).stdout.split()
    assert where == [str(clone / "servers" / "ansible" / "service.py"), str(clone / "examples" / "homelab-infra")]

    repo = tmp_path / "my-homelab"
    run(["cp", "-r", str(clone / "examples" / "homelab-infra"), str(repo)])
    git_commit_all(repo)
    docker = docker_standin.install(tmp_path / "docker-bin")
    env.update(CHIFFON_HOME=str(tmp_path / "home"), HOMELAB_ROOT=str(tmp_path / "targets"),
               CHIFFON_EMBEDDED__IDLE_STOP_S="0", PATH=f"{docker}:{os.environ['PATH']}")
    cli = [sys.executable, "-m", "chiffon.orchestrator.cli"]
    try:
        done = run([*cli, "run", KUMA_REQUEST, "--repo", str(repo), "--approve", "--json"], cwd=tmp_path, env=env,
                   stdin=subprocess.DEVNULL)
    finally:
        subprocess.run([*cli, "down"], cwd=tmp_path, env=env, capture_output=True, timeout=120)
        docker_standin.stop(docker)
    result = json.loads(done.stdout)
    assert result["status"] == "succeeded" and result["outcome"] == "achieved"
    assert (tmp_path / "targets" / "east" / "uptime-kuma" / "monitors.json").is_file()
