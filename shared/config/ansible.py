"""How chiffon runs Ansible (``ansible:``), and the drift checks of the IaC repo (``drift:``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from chiffon.shared.config.base import CALENDAR, Section


class AnsibleSettings(Section):
    """How chiffon runs Ansible against the IaC repo."""

    inventory: str | None = Field(
        None,
        description="Inventory to plan against: a name chiffon found (prod, local) or a path relative to the IaC "
                    "repo. Unset: the one ansible.cfg names, else the only one in the repo.",
    )
    vault_password_file: Path | None = Field(
        None, description="ansible-vault password file for repos with encrypted vars (else ansible.cfg's).")
    allow_repo_vault_scripts: bool = Field(
        False, description="Allow an executable vault password file or vault client script (from the repo, "
                           "ansible.cfg or vault_password_file): it runs during the check and the run, and the "
                           "plan names it. Off: a plan needing one is blocked with the fix.")
    allowed_extra_vars: list[str] = Field(
        default_factory=list,
        description="Extra vars a request may set beyond those the playbook reads (never ansible_* or magic names).")
    check_timeout_s: int = Field(600, gt=0, description="Wall-clock limit of a check-mode run, seconds.")
    run_timeout_s: int = Field(3600, gt=0, description="Wall-clock limit of a real run, seconds.")
    forks: int = Field(5, gt=0, le=100, description="Ansible forks (hosts changed in parallel).")
    parallel_runs: int = Field(2, ge=1, le=32, description="Plans one infra worker runs at once (checks are not "
                                                           "queued).")
    lint: bool = Field(True, description="Run ansible-lint in suggest_improvements.")
    pass_env: list[str] = Field(
        default_factory=list,
        description="Environment variables of chiffon's own environment that Ansible also gets (cloud credentials "
                    "such as AWS_PROFILE): exact names. Besides these Ansible sees only PATH, HOME, USER, LOGNAME, "
                    "LANG, LANGUAGE, LC_*, TERM, TZ, TMPDIR, SSH_AUTH_SOCK and the ANSIBLE_* variables you set.")


class DriftSettings(Section):
    """`chiffon drift`: check mode of every unit of the IaC repo (servers/ansible/drift.py), and its timer."""

    schedule: str | None = Field(None, pattern=CALENDAR, description="systemd OnCalendar of the drift timer "
                                                                      "`chiffon deploy systemd` emits (e.g. daily); "
                                                                      "unset: no timer. The deploy kit sets it "
                                                                      "nightly.")
    concurrency: int = Field(2, ge=1, le=16, description="Units checked at once within one host group (the groups "
                                                         "are checked one after another).")
    live_tasks: bool = Field(False, description="Also check units with tasks that run for real even in check mode "
                                                "(`check_mode: false`). Off: drift runs with no human approving, so "
                                                "such units are listed under errors, unchecked.")

    @field_validator("schedule", mode="before")
    @classmethod
    def _empty_is_off(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value  # CHIFFON_DRIFT__SCHEDULE=""
