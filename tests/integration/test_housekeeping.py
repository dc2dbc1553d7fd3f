"""The daily purge deletes exactly what retention says has aged out, records its run, and doctor shows it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from chiffon.orchestrator.housekeeping import purge
from chiffon.servers.memory import history
from chiffon.shared.runtime import Runtime

CHIFFON = str(Path(sys.executable).parent / "chiffon")
DAY = 86_400


def aged(path: Path, days: float) -> Path:
    """Set ``path``'s (and everything under it's) modification time ``days`` ago."""
    when = time.time() - days * DAY
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.utime(p, (when, when))
    return path


def run_folder(runs: Path, name: str, days: float) -> Path:
    folder = runs / name
    (folder / "artifacts").mkdir(parents=True)
    (folder / "artifacts" / "stdout").write_text("PLAY RECAP\n" * 100)
    return aged(folder, days)


async def test_purge_deletes_what_aged_out_and_keeps_a_running_runs_record(rt: Runtime, tmp_path: Path) -> None:
    runs, voice = tmp_path / "runs", tmp_path / "voice"
    run_folder(runs, "run-old-done", 40)
    run_folder(runs, "plan-old-check", 45)
    run_folder(runs, "run-recent", 2)
    run_folder(runs, "run-old-running", 40)
    await rt.store.pool.execute("INSERT INTO plans (id, repo, playbook, inventory, risk, status) VALUES "
                                "('plan-purge', '/srv/iac', 'site.yml', 'hosts.ini', 'low', 'running')")
    await rt.store.pool.execute("INSERT INTO runs (id, plan_id, status) VALUES ('run-old-running', 'plan-purge', "
                                "'running')")
    voice.mkdir()
    (voice / "speech-old.wav").write_bytes(b"RIFF" * 100)
    aged(voice / "speech-old.wav", 10)
    (voice / "speech-new.wav").write_bytes(b"RIFF")
    (voice / "notes.txt").write_text("not speech")
    aged(voice / "notes.txt", 100)
    await history.append_message(rt.store, "s-purge-old", "user", "deploy jellyfin, long ago")
    await history.append_message(rt.store, "s-purge-new", "user", "deploy jellyfin, today")
    await rt.store.pool.execute("UPDATE chat_messages SET at = now() - interval '100 days' "
                                "WHERE session_id='s-purge-old'")
    await rt.store.pool.execute("UPDATE chat_sessions SET last_at = now() - interval '100 days' WHERE id='s-purge-old'")

    kwargs = dict(runs_dir=runs, voice_dir=voice, chat_days=90, run_artifacts_days=30, speech_days=7)
    seen = await purge(rt.store, dry_run=True, **kwargs)  # type: ignore[arg-type]
    assert seen.chat_messages == 1 and sorted(seen.run_artifacts) == ["plan-old-check", "run-old-done"]
    assert seen.speech_files == 1 and seen.bytes_freed > 2 * 1100
    assert len(list(runs.iterdir())) == 4 and (voice / "speech-old.wav").exists()  # a dry run deletes nothing
    assert len(await history.history(rt.store, "s-purge-old", 10)) == 1

    done = await purge(rt.store, **kwargs)  # type: ignore[arg-type]
    assert (done.chat_messages, sorted(done.run_artifacts), done.speech_files) == \
        (1, ["plan-old-check", "run-old-done"], 1)
    assert sorted(p.name for p in runs.iterdir()) == ["run-old-running", "run-recent"]
    assert sorted(p.name for p in voice.iterdir()) == ["notes.txt", "speech-new.wav"]
    assert await rt.store.pool.fetchval("SELECT count(*) FROM chat_sessions WHERE id='s-purge-old'") == 0
    assert len(await history.history(rt.store, "s-purge-new", 10)) == 1

    unset = await purge(rt.store, runs_dir=runs, voice_dir=voice, chat_days=None, run_artifacts_days=None,
                        speech_days=None)
    assert (unset.chat_messages, unset.run_artifacts, unset.speech_files) == (0, [], 0)
    await rt.store.pool.execute("DELETE FROM runs WHERE id='run-old-running'; DELETE FROM plans WHERE id='plan-purge'")


def test_purge_command_records_its_run_and_doctor_shows_it(cli_env: dict[str, str]) -> None:
    before = json.loads(subprocess.run([CHIFFON, "doctor", "--json"], env=cli_env, capture_output=True, text=True,
                                       timeout=300).stdout)
    dry = subprocess.run([CHIFFON, "purge", "--dry-run", "--json"], env=cli_env, capture_output=True, text=True,
                         timeout=300)
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["dry_run"] is True
    done = subprocess.run([CHIFFON, "purge"], env=cli_env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "deleted" in done.stdout and "chat message(s)" in done.stdout
    after = json.loads(subprocess.run([CHIFFON, "doctor", "--json"], env=cli_env, capture_output=True, text=True,
                                      timeout=300).stdout)
    part = next(p for p in after["parts"] if p["service"] == "purge")
    assert part["status"] == "ok" and part["detail"].startswith("last ran ") and "deleted" in part["detail"]
    was = next(p for p in before["parts"] if p["service"] == "purge")
    if "never ran" in was["detail"]:  # the first purge of this home
        assert was["status"] == "degraded" and "chiffon-purge.timer" in was["detail"]
