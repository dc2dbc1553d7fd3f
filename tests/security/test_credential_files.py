"""Attack 6 (second half): credentials the docs put inside a git work tree, where one `git add -A` commits them."""

from __future__ import annotations

import subprocess
from pathlib import Path

from chiffon.orchestrator.credential_files import exposed_credentials
from tests.conftest import CHECKOUT, git_commit_all


def test_the_checkouts_gitignore_covers_deploy_env() -> None:
    done = subprocess.run(["git", "-C", str(CHECKOUT), "check-ignore", "-q", "deploy/.env"], check=False)
    assert done.returncode == 0, "deploy/.env (the compose passwords) is not ignored by git"


def test_a_committed_or_unignored_credential_file_is_named_with_its_fix(tmp_path: Path) -> None:
    tree = tmp_path / "iac"
    (tree / "keys").mkdir(parents=True)
    (tree / "site.yml").write_text("- hosts: all\n")
    (tree / ".vault_pass").write_text("hunter2\n")
    git_commit_all(tree)  # the vault password is now in the history
    (tree / "deploy.env").write_text("POSTGRES_PASSWORD=x\n")  # untracked and not ignored
    (tree / "keys" / "id_rsa").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    (tree / "ignored.pem").write_text("-----BEGIN PRIVATE KEY-----\n")
    (tree / ".gitignore").write_text("ignored.pem\n")

    found = {f.path: f for f in exposed_credentials(tree)}

    assert set(found) == {".vault_pass", "deploy.env", "keys/id_rsa"}
    assert found[".vault_pass"].tracked and "rm --cached .vault_pass" in found[".vault_pass"].fix
    assert "rotate" in found[".vault_pass"].fix
    assert not found["deploy.env"].tracked and ".gitignore" in found["deploy.env"].fix


def test_a_folder_outside_any_git_tree_has_nothing_to_report(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("X=1\n")
    assert exposed_credentials(tmp_path) == []


def test_the_chiffon_checkout_exposes_no_credential_file() -> None:
    assert [f.path for f in exposed_credentials(CHECKOUT)] == []


async def test_doctor_names_an_exposed_file_of_the_iac_repo_with_its_fix(tmp_path: Path) -> None:
    from chiffon.orchestrator.doctor import credential_files
    from chiffon.shared.config import load_settings

    tree = tmp_path / "iac"
    tree.mkdir()
    (tree / "site.yml").write_text("- hosts: all\n")
    git_commit_all(tree)
    settings = load_settings(home=tmp_path / "home", repo=tree)
    assert (await credential_files(settings))[0] == "ok"
    (tree / ".env").write_text("TOKEN=x\n")
    status, detail = await credential_files(settings)
    assert status == "degraded" and f"{tree / '.env'} is not ignored by git" in detail
