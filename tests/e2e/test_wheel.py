"""The wheel installs one top-level package, `chiffon`, with its prompts, default config and example repo:
an installed chiffon runs the main job from any directory, without the checkout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

from tests.conftest import CHECKOUT, KUMA_REQUEST, git_commit_all
from tests.fixtures import docker_standin


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    # a user installs under their login umask, not the 077 an earlier test's runtime left on this process (the
    # embedded PostgreSQL, run as the pgserver user when root, must read the installed libraries)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, umask=0o022, **kwargs)
    assert done.returncode == 0, f"{' '.join(cmd)}: {done.stderr[-3000:]}"
    return done


# The repository's folders and where the wheel carries them (pyproject.toml's [tool.hatch.build.targets.wheel]).
IN_WHEEL = {"chiffon": "chiffon", "servers": "chiffon/servers", "orchestrator": "chiffon/orchestrator",
            "shared": "chiffon/shared", "prompts": "chiffon/prompts", "deploy/config": "chiffon/deploy/config",
            "examples/homelab-infra": "chiffon/examples/homelab-infra"}


def tracked_package_files() -> list[str]:
    """Where each file of the package's folders lands in the wheel: those git tracks or would track (not
    ignored), as the build takes them from the working tree."""
    listed = run(["git", "-C", str(CHECKOUT), "ls-files", "-z", "--cached", "--others", "--exclude-standard",
                  *IN_WHEEL]).stdout.split("\0")
    return sorted({IN_WHEEL[folder] + name[len(folder):] for name in listed if name and (CHECKOUT / name).is_file()
                   for folder in IN_WHEEL if name.startswith(folder + "/")})


def wheel_files(wheel: Path) -> list[str]:
    """The package's files in ``wheel`` (its metadata folder left out)."""
    with zipfile.ZipFile(wheel) as archive:
        return [name for name in archive.namelist() if not name.startswith("chiffon-")]


def test_the_installed_wheel_runs_the_main_job_from_another_directory(tmp_path: Path) -> None:
    uv = shutil.which("uv")
    assert uv, "uv is not on PATH (the README installs it)"
    run([uv, "build", "--wheel", "-q", "-o", str(tmp_path / "dist"), str(CHECKOUT)])
    wheel = next((tmp_path / "dist").glob("chiffon-*.whl"))
    assert sorted(wheel_files(wheel)) == sorted(tracked_package_files())
    venv = tmp_path / "venv"
    run([uv, "venv", "-q", str(venv)])
    run([uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"), str(wheel)])

    site = Path(run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                    cwd=tmp_path).stdout.strip())
    assert not any((site / name).exists() for name in ("servers", "shared", "orchestrator", "prompts"))
    assert (site / "chiffon" / "prompts" / "roles" / "developer.md").is_file()
    assert (site / "chiffon" / "deploy" / "config" / "chiffon.yaml").is_file()

    repo = tmp_path / "my-homelab"
    shutil.copytree(site / "chiffon" / "examples" / "homelab-infra", repo)  # the packaged example repo
    git_commit_all(repo)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHIFFON_", "VIRTUAL_ENV", "PYTHONPATH"))}
    # a Docker engine (the stand-in, answering as Docker does) so the run is achieved, its checks verified
    docker = docker_standin.install(tmp_path / "docker-bin")
    env.update(CHIFFON_HOME=str(tmp_path / "home"), HOMELAB_ROOT=str(tmp_path / "targets"),
               CHIFFON_EMBEDDED__IDLE_STOP_S="0", PATH=f"{docker}:{os.environ['PATH']}")
    try:
        done = run([str(venv / "bin" / "chiffon"), "run", KUMA_REQUEST, "--repo", str(repo), "--approve", "--json"],
                   cwd=tmp_path, env=env, stdin=subprocess.DEVNULL)
    finally:
        subprocess.run([str(venv / "bin" / "chiffon"), "down"], cwd=tmp_path, env=env, capture_output=True,
                       timeout=120)
        docker_standin.stop(docker)
    result = json.loads(done.stdout)
    assert result["status"] == "succeeded" and result["playbook"] == "deploy-uptime-kuma.yml"
    assert result["outcome"] == "achieved" and [c["ok"] for c in result["checks"]] == [True, True]
    assert (tmp_path / "targets" / "east" / "uptime-kuma" / "monitors.json").is_file()
