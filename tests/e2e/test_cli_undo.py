"""`chiffon undo RUN` as a user runs it (no TTY): plan, approve, execute, and the files are back."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from tests.e2e.test_cli import chiffon


def test_undo_from_the_command_line_puts_a_deploy_back(cli_env: dict[str, str], repo: Path, tmp_path: Path) -> None:
    env = {**cli_env, "HOMELAB_ROOT": str(tmp_path)}
    conf = tmp_path / "east" / "redis" / "redis.conf"
    conf.parent.mkdir(parents=True)
    conf.write_bytes(b"# hand-tuned\nmaxmemory 512mb\n")
    os.chmod(conf, 0o640)
    os.chown(conf, 4321, 4321)
    ran = chiffon(env, "run", "deploy redis", "--repo", str(repo), "--approve", "--json")
    assert ran.returncode in (0, 5), ran.stderr  # 5: applied, but Redis is not running (no Docker here)
    run_id = json.loads(ran.stdout)["run_id"]
    assert b"allkeys-lru" in conf.read_bytes() and (tmp_path / "east" / "redis" / "compose.yaml").is_file()

    refused = chiffon(env, "undo", "../" + run_id)
    assert refused.returncode == 2 and "is not a run id" in refused.stderr

    planned = chiffon(env, "undo", run_id, "--json")
    assert planned.returncode == 3, planned.stderr  # awaits a human's approval; nothing changed yet
    undo = json.loads(planned.stdout)
    assert undo["undoes"] == run_id and undo["status"] == "awaiting_approval"
    assert {(r["path"].rsplit("/", 1)[-1], r["action"]) for r in undo["restores"]} >= {
        ("redis.conf", "content"), ("compose.yaml", "remove"), ("data", "remove")}
    assert "not_reversible" in undo and b"allkeys-lru" in conf.read_bytes()

    assert chiffon(env, "approve", undo["plan_id"], "--yes").returncode == 0
    done = chiffon(env, "execute", undo["plan_id"], "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert conf.read_bytes() == b"# hand-tuned\nmaxmemory 512mb\n"
    info = conf.stat()
    assert (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (0o640, 4321, 4321)
    assert not (tmp_path / "east" / "redis" / "compose.yaml").exists()
    assert not (tmp_path / "east" / "redis" / "data").exists()
