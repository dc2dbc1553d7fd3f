"""Attack 9: restore trusted the archive (no digest, no signature, manifest paths not confined)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest

from chiffon.orchestrator.backup import backup, check_restorable
from chiffon.shared.errors import InvalidInput
from chiffon.shared.runtime import Runtime


@pytest.fixture(scope="module")
def made(rt: Runtime, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real backup (pg_dump, Chroma, audit bundle) of the session's home, never touched by the tests."""
    rt.audit.record("plan", "plan plan-r1: restore test", {"plan_id": "plan-r1"})
    manifest = backup(rt.settings, rt.store.url, dest=tmp_path_factory.mktemp("backups"))
    return Path(manifest["folder"])


@pytest.fixture
def copy(made: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(made, tmp_path / made.name, symlinks=True))


def manifest_of(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "manifest.json").read_text())


def rewrite(folder: Path, manifest: dict[str, Any], home: Path) -> None:
    """Write ``manifest`` back, signed with the home's backup key when there is one (an attacker holding it)."""
    key_file = home / "keys" / "backup.key"
    if key_file.exists():
        body = {k: v for k, v in manifest.items() if k != "signature"}
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        manifest["signature"] = hmac.new(key_file.read_bytes(), canonical, hashlib.sha256).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))


async def test_an_untouched_backup_is_restorable(rt: Runtime, copy: Path) -> None:
    manifest = await asyncio.to_thread(check_restorable, rt.settings, copy, True)
    assert manifest["signature"] and "postgres.dump" in manifest["files"]
    key = rt.settings.home / "keys" / "backup.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and len(key.read_bytes()) == 32


async def test_a_tampered_file_is_refused(rt: Runtime, copy: Path) -> None:
    with (copy / "postgres.dump").open("ab") as dump:
        dump.write(b"\0")
    with pytest.raises(InvalidInput, match="postgres.dump.*SHA-256 does not match"):
        await asyncio.to_thread(check_restorable, rt.settings, copy, True)


async def test_an_unsigned_manifest_is_refused(rt: Runtime, copy: Path) -> None:
    manifest = manifest_of(copy)
    manifest.pop("signature", None)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InvalidInput, match="not signed"):
        await asyncio.to_thread(check_restorable, rt.settings, copy, True)


async def test_an_edited_manifest_is_refused(rt: Runtime, copy: Path) -> None:
    manifest = manifest_of(copy)
    manifest["created_at"] = "2020-01-01T00:00:00+00:00"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InvalidInput, match="signature of .* does not match"):
        await asyncio.to_thread(check_restorable, rt.settings, copy, True)


@pytest.mark.parametrize("bad", ["../../etc/x", "/etc/passwd", "chroma/../../x"])
async def test_a_manifest_path_out_of_the_backup_is_refused(rt: Runtime, copy: Path, bad: str) -> None:
    manifest = manifest_of(copy)
    manifest.setdefault("files", {})[bad] = hashlib.sha256(b"").hexdigest()
    manifest["parts"]["chroma"] = {"dir": bad}
    rewrite(copy, manifest, rt.settings.home)
    with pytest.raises(InvalidInput, match="outside the backup"):
        await asyncio.to_thread(check_restorable, rt.settings, copy, True)


async def test_a_symlink_out_of_the_backup_is_refused(rt: Runtime, copy: Path, tmp_path: Path) -> None:
    outside = tmp_path / "secret"
    outside.write_text("root's secret\n")
    (copy / "audit.bundle").unlink()
    os.symlink(outside, copy / "audit.bundle")
    manifest = manifest_of(copy)
    manifest.setdefault("files", {})["audit.bundle"] = hashlib.sha256(outside.read_bytes()).hexdigest()
    rewrite(copy, manifest, rt.settings.home)
    with pytest.raises(InvalidInput, match="audit.bundle.*symlink"):
        await asyncio.to_thread(check_restorable, rt.settings, copy, True)


async def test_a_file_not_in_the_manifest_is_refused(rt: Runtime, copy: Path) -> None:
    (copy / "chroma").mkdir(exist_ok=True)
    (copy / "chroma" / "extra.sqlite3").write_text("planted")
    with pytest.raises(InvalidInput, match="chroma/extra.sqlite3.*not in the manifest"):
        await asyncio.to_thread(check_restorable, rt.settings, copy, True)


async def test_a_backup_signed_with_another_key_is_refused_unless_that_key_is_given(rt: Runtime, copy: Path,
                                                                                   tmp_path: Path) -> None:
    other = tmp_path / "other.key"
    other.write_bytes(os.urandom(32))
    with pytest.raises(InvalidInput, match="signature of .* does not match"):
        await asyncio.to_thread(check_restorable, rt.settings, copy, True, other)
    mine = rt.settings.home / "keys" / "backup.key"
    assert (await asyncio.to_thread(check_restorable, rt.settings, copy, True, mine))["files"]
