"""What a check-mode preview and a run really say, in words a reviewer can act on.

- Before a check: what would make it hang or fail at once (a ``vars_prompt`` with no
  value given, ``ask_pass``/``become_ask_pass`` in ``ansible.cfg``, vault-encrypted vars
  with no password file).
- After a check: warnings, and the reason a plan cannot be approved as-is: no host of the
  inventory matched, every task was skipped by a condition (with the variable that enables
  it), or a module is missing (with the ``ansible-galaxy`` command that installs it).
- After a run: what did not happen although the run succeeded (a playbook that reports
  ``container_started: false`` with ``set_stats``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from chiffon.servers.ansible import reach
from chiffon.servers.ansible.catalog import Catalog
from chiffon.servers.ansible.events import Outcome
from chiffon.servers.ansible.plays import TAG_RE, Playbook, Task, load_yaml, walk_tasks
from chiffon.servers.ansible.requirements import install_hint, requirements_file
from chiffon.servers.ansible.risk import COMMAND_MODULES
from chiffon.servers.ansible.snapshot import Snapshot, stage_outside
from chiffon.servers.ansible.units import Unit
from chiffon.servers.ansible.variables import expression_variables
from chiffon.shared.errors import InvalidInput, PlanStateError, RepoError
from chiffon.shared.redact import redact_text

FACT_MODULES = {"gather_facts", "setup", "ansible.builtin.setup", "ansible.builtin.gather_facts"}
_MISSING_MODULE = re.compile(r"couldn't resolve module/action '([\w.]+)'")
_MISSING_ROLE = re.compile(r"the role '([\w.\-/]+)' was not found")
# what Ansible says when sudo wants a password nobody gave (or refused the one typed)
_BECOME_PASSWORD = re.compile(r"Missing sudo password|Incorrect sudo password|"
                              r"[Tt]imeout \(\d+s\) waiting for privilege escalation prompt")
VAULT_HEADER = b"$ANSIBLE_VAULT;"
_INLINE_VAULT = re.compile(rb"!vault\s*\|")


def playbook_tags(catalog: Catalog, playbook: Playbook) -> set[str]:
    """Every tag written in ``playbook``, the playbooks it imports, the roles and task files they apply, and
    Ansible's special tags."""
    tags = set(playbook.tags) | {"always", "never", "all", "tagged", "untagged"}
    every = [playbook, *catalog.imported(playbook)]  # main.yml --tags vaultwarden reaches services.yml's plays
    for unit in catalog.units:
        if any(unit.playbook is pb for pb in every):
            tags.update(unit.entry_tags)
    tags.update(t for pb in every for t in pb.tags)
    return tags


def validate_tags(catalog: Catalog, playbook: Playbook, tags: list[str] | None, field: str) -> list[str]:
    """``tags`` checked: allowed characters, and each a tag the playbook carries.

    Raises:
        InvalidInput: a bad character or an unknown tag (the known ones are listed).
    """
    out = []
    known = playbook_tags(catalog, playbook)
    for tag in tags or []:
        if not isinstance(tag, str) or not TAG_RE.match(tag):
            raise InvalidInput(field, f"{tag!r} is not a tag (letters, digits, _ . : @ + -)")
        if tag not in known:
            listed = ", ".join(sorted(known - {"always", "never", "all", "tagged", "untagged"})) or "none"
            raise InvalidInput(field, f"{tag!r} is not a tag of {playbook.name}; its tags: {listed}")
        out.append(tag)
    return list(dict.fromkeys(out))


def vault_files(catalog: Catalog) -> list[str]:
    """Repo files encrypted with ansible-vault (``$ANSIBLE_VAULT;`` header) or holding inline ``!vault |``
    values (vars folders, inventories, playbooks, role vars and defaults), repo-relative, sorted."""
    found = []
    for folder in ("group_vars", "host_vars", "vars", "inventory", "inventories"):
        for path in catalog.root.rglob(f"{folder}/**/*"):
            if path.is_file() and ".git" not in path.parts and path.suffix in (".yml", ".yaml", "", ".json"):
                with path.open("rb") as fh:
                    if fh.read(len(VAULT_HEADER)) == VAULT_HEADER:
                        found.append(path.relative_to(catalog.root).as_posix())
    for name in catalog.files:
        path = Path(name)
        if path.suffix in (".yml", ".yaml") and path.is_file() and _INLINE_VAULT.search(path.read_bytes()):
            found.append(path.relative_to(catalog.root).as_posix())
    return sorted(set(found))


def _executable_refusal(path: Path) -> str:
    return (f"vault password file {path} is executable: Ansible would run it (as this user) during the check and "
            "the run. chiffon runs no such script unless you allow it: set ansible.allow_repo_vault_scripts "
            "(CHIFFON_ANSIBLE__ALLOW_REPO_VAULT_SCRIPTS=true), or use a plain password file (chmod -x), or type "
            "the password in your own terminal: `chiffon run \"<request>\" --ask-vault-pass`")


def vault_password(catalog: Catalog, configured: Path | None, allow_scripts: bool = False) -> Path | None:
    """The vault password file to pass (absolute, live): chiffon's setting, else ``ANSIBLE_VAULT_PASSWORD_FILE``,
    else ``ansible.cfg``'s; None when nothing the run reads is encrypted (:func:`vault_files`), so no password
    file (or script) is used at all.
    ``allow_scripts``: ``ansible.allow_repo_vault_scripts``; without it an executable password file (a script
    Ansible would run) is refused.

    Raises:
        RepoError: encrypted files exist and no password file is set, the set one is missing, or it is
            executable and scripts are not allowed.
    """
    from_env = os.environ.get("ANSIBLE_VAULT_PASSWORD_FILE")  # Ansible's order: the variable before ansible.cfg
    chosen = configured or (Path(from_env) if from_env else None) or catalog.cfg.vault_password_file
    encrypted = vault_files(catalog)
    if not encrypted:
        return None
    if chosen is not None and not Path(chosen).expanduser().is_file():
        raise RepoError(f"vault password file {chosen} does not exist; set ansible.vault_password_file "
                        "(CHIFFON_ANSIBLE__VAULT_PASSWORD_FILE) or --vault-password-file to a readable file, or "
                        "type the password in your own terminal: `chiffon run \"<request>\" --ask-vault-pass`")
    if encrypted and chosen is None:
        raise RepoError(f"{', '.join(encrypted[:5])} {'is' if len(encrypted) == 1 else 'are'} encrypted with "
                        "ansible-vault and no vault password is set: pass --vault-password-file FILE or set "
                        "ansible.vault_password_file (CHIFFON_ANSIBLE__VAULT_PASSWORD_FILE), or type it in your "
                        "own terminal: `chiffon run \"<request>\" --ask-vault-pass` (never through the IDE: a "
                        "model must not see it)")
    path = Path(os.path.abspath(Path(chosen).expanduser())) if chosen else None
    if path is not None and os.access(path, os.X_OK) and not allow_scripts:
        raise RepoError(_executable_refusal(path))
    return path


def vault_note(path: Path | None) -> list[str]:
    """The warning naming an executable vault password file that runs, or nothing."""
    if path is None or not os.access(path, os.X_OK):
        return []
    return [f"runs {path} during the check and the run (an executable vault password file, allowed by "
            "ansible.allow_repo_vault_scripts)"]


def vault_for_run(chosen: Path | None, root: Path, snap: Snapshot, dest: Path) -> Path | None:
    """The path Ansible is given for the vault password file ``chosen`` (live, from :func:`vault_password`): the
    snapshot's verified read-only copy for a file inside the repo, else a private copy in ``dest`` checked
    against the digest the plan recorded (:func:`servers.ansible.snapshot.stage_outside`). Never the live file.

    Raises:
        PlanStateError: the file was not part of the approved plan, or changed since.
    """
    if chosen is None:
        return None
    live = Path(os.path.abspath(chosen))
    top = Path(os.path.abspath(root))
    if live.is_relative_to(top) and (snap.tree / live.relative_to(top)).is_file():
        return snap.tree / live.relative_to(top)
    if str(live) not in snap.outside:
        raise PlanStateError(f"vault password file {live} was not part of the approved plan (snapshot "
                             f"{snap.digest[:12]}); nothing ran. Plan again.")
    return stage_outside(snap, live, dest / "vault")


def vault_password_or_problem(catalog: Catalog, configured: Path | None, typed: bool = False,
                              allow_scripts: bool = False) -> tuple[Path | None, str | None]:
    """:func:`vault_password`, with a missing or refused password file as a problem (the plan's fix) instead of
    an error; ``typed``: a human typed the password at a terminal for this plan, so nothing is missing."""
    asks = [label for label, source in catalog.cfg.vault_identities if source == "prompt"]
    missing = [f"{label}@{source}" for label, source in catalog.cfg.vault_identities
               if source != "prompt" and not Path(source).exists()]
    if missing:
        return None, (f"ansible.cfg's vault_identity_list names {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
                      "not on this machine: create the password file(s) or type the password in your own terminal "
                      "(`chiffon run \"<request>\" --ask-vault-pass`)")
    if typed:
        return None, None
    if asks:
        return None, (f"ansible.cfg's vault_identity_list asks for the {', '.join(asks)} vault password at a prompt, "
                      "and nobody would type it: type it in your own terminal (`chiffon run \"<request>\" "
                      "--ask-vault-pass`; never through the IDE: a model must not see it)")
    try:
        return vault_password(catalog, configured, allow_scripts), None
    except RepoError as exc:
        return None, str(exc)


def preflight_problems(catalog: Catalog, playbook: Playbook, extra_vars: dict[str, Any],
                       answered: frozenset[str] = frozenset()) -> list[str]:
    """:func:`preflight`'s findings as problems that block a plan (each with its fix), not errors.
    ``answered``: the ``ansible.cfg`` prompts a human answers at a terminal for this plan."""
    try:
        preflight(catalog, playbook, extra_vars, answered)
    except (InvalidInput, RepoError) as exc:
        return [str(exc)]
    return []


def preflight(catalog: Catalog, playbook: Playbook, extra_vars: dict[str, Any],
              answered: frozenset[str] = frozenset()) -> None:
    """Refuse what would make a non-interactive run hang on a prompt.

    Raises:
        InvalidInput: a ``vars_prompt`` variable has no value in ``extra_vars``.
        RepoError: ``ansible.cfg`` asks for a connection or become password on every run.
    """
    missing = [name for name in playbook.prompts if name not in extra_vars]
    if missing:
        raise InvalidInput("extra_vars", f"{playbook.name} prompts for {', '.join(missing)} (vars_prompt); chiffon "
                                         "never waits on a prompt: give "
                                         + " ".join(f"-e {m}=VALUE" for m in missing))
    cfg = catalog.cfg.path
    if cfg is not None:
        text = cfg.read_text(errors="replace").lower()
        for key in ("become_ask_pass", "ask_pass", "ask_vault_pass"):
            if key in answered:
                continue
            if any(re.match(rf"[ \t]*{key}[ \t]*=[ \t]*(true|yes|1)\b", line) for line in text.splitlines()):
                raise RepoError(f"{cfg.name} sets {key} = true: Ansible would wait for a password nobody types. "
                                "Type it in your own terminal (`chiffon run \"<request>\" --ask-become-pass` or "
                                "--ask-vault-pass), put the secret in the inventory (vault-encrypted: "
                                "ansible_become_password) or use passwordless sudo for the deploy user.")


def _tasks_of_unit(catalog: Catalog, playbook: Playbook, unit: Unit | None) -> list[Task]:
    """The tasks a plan of ``unit`` may run: the unit's role or task file when tags select it, else the
    playbook's own tasks plus those of every role and task file it applies."""
    units = [unit] if unit is not None and unit.kind != "playbook" and unit.tags else \
        [u for u in catalog.units if u.playbook is playbook and u.kind != "playbook"]
    tasks = list(playbook.tasks) if not (unit is not None and unit.kind != "playbook" and unit.tags) else []
    files: list[Path] = []
    for u in units:
        if u.kind == "tasks":
            files.append(catalog.root / u.source)
        elif u.role is not None:
            files += sorted((catalog.root / u.role.path / "tasks").glob("*.y*ml"))
    root = catalog.root.resolve()
    for path in dict.fromkeys(files):
        if path.is_file() and path.resolve().is_relative_to(root):
            tasks += walk_tasks(load_yaml(path.read_text(errors="replace")))[0]
    return tasks


def _command_of(task: Task) -> str:
    raw = task.args.get("_raw") or task.args.get("cmd") or task.args.get("argv") or task.args.get("free_form")
    text = " ".join(map(str, raw)) if isinstance(raw, list) else str(raw or task.args)
    return redact_text(" ".join(text.split()))[:160]


def check_mode_notes(catalog: Catalog, playbook: Playbook, unit: Unit | None) -> list[str]:
    """What check mode does not keep read-only, one sentence per task, for the human who approves:
    tasks with ``check_mode: false`` (they ran for real during the check), commands (check mode skips
    them; they run for real after approval), and ``delegate_to`` (they run on another host)."""
    notes = []
    for task in _tasks_of_unit(catalog, playbook, unit):
        name = task.name or task.module
        off = str(task.check_mode).strip().lower() in ("false", "no", "0")
        if off:
            notes.append(f"runs even in check mode (it ran during this preview): {name!r}"
                         + (f": {_command_of(task)}" if task.module in COMMAND_MODULES else f" ({task.module})"))
        elif task.module in COMMAND_MODULES:
            notes.append(f"runs a command that check mode cannot preview (it runs after approval): {name!r}: "
                         f"{_command_of(task)}")
        if task.delegate_to:
            notes.append(f"runs on {task.delegate_to} (delegate_to), not on the play's hosts: {name!r}")
    return list(dict.fromkeys(notes))


def _task_events(outcome: Outcome) -> list[Any]:
    return [e for e in outcome.events if e.module not in FACT_MODULES and e.task.lower() != "gathering facts"]


def check_findings(catalog: Catalog, playbook: Playbook, unit: Unit | None,
                   outcome: Outcome) -> tuple[list[str], str | None]:
    """``(warnings, blocked_reason)`` for a finished check-mode run; ``blocked_reason`` None when approvable."""
    warnings = [*(unit.warnings if unit else ()), *check_mode_notes(catalog, playbook, unit)]
    blocked = None
    messages = " ".join(str(f.get("message")) for f in outcome.failures)
    missing = sorted(set(_MISSING_MODULE.findall(messages)))
    roles = sorted(set(_MISSING_ROLE.findall(messages)))
    req = requirements_file(catalog)
    if missing:
        how = install_hint(sorted({".".join(m.split(".")[:2]) for m in missing}), req)
        blocked = f"module {', '.join(missing)} is not installed; install it with {how} and plan again"
    elif roles:
        how = (f"`ansible-galaxy install -r {req}`" if req else "`ansible-galaxy install " + " ".join(
            ".".join(r.split(".")[:2]) for r in roles) + "`")
        blocked = (f"role {', '.join(roles)} is not installed (a Galaxy role or a collection's role); install it "
                   f"with {how} and plan again")
    elif sudo := sorted({str(f["host"]) for f in outcome.failures if _BECOME_PASSWORD.search(str(f.get("message")))}):
        refused = "Incorrect sudo password" in messages
        blocked = (f"sudo on {', '.join(sudo)} {'refused the become password typed' if refused else 'asks for a password'}"
                   " (become): type it in your own terminal, `chiffon run \"<request>\" --ask-become-pass` (held in "
                   "memory, never stored nor shown to a model), or give the deploy user passwordless sudo there")
    elif dark := reach.unreachable(outcome):
        blocked = reach.blocked_reason(dark)
    elif not outcome.hosts and outcome.status != "successful":
        first = next((line.strip() for line in messages.splitlines() if "ERROR" in line), messages.strip()[:300])
        blocked = f"the check failed before reaching any host: {first[:400]}"
    elif not outcome.hosts and outcome.status == "successful":
        patterns = ", ".join(playbook.host_patterns) or "-"
        blocked = (f"no host of inventory {catalog.inventory} matched the play's hosts ({patterns}): "
                   "choose another inventory (--inventory) or add the hosts to it")
    else:
        events = _task_events(outcome)
        if events and all(e.status == "skipped" for e in events):
            conds = list(dict.fromkeys(e.message.removeprefix("condition false: ") for e in events
                                       if e.message.startswith("condition false: ")))
            # ansible-runner's skipped events carry no result; the unit's own conditions say what gated it
            conds = conds or [c for c in (unit.when if unit else ()) if "inventory_hostname" not in c]
            if conds:
                flags = [v for c in conds for v in expression_variables(c) if v.endswith(("_enabled", "_enable"))]
                flags = list(dict.fromkeys(flags or [v for c in conds[:1] for v in expression_variables(c)][:1]))
                where = f"{catalog.inventory}'s group_vars or host_vars" if catalog.inventory_name else "group_vars"
                hint = (f"; to deploy it, set {', '.join(f'{f}: true' for f in flags)} in {where} (a boolean, "
                        "as the role's defaults have it), commit, and plan again") if flags else ""
                blocked = (f"every task was skipped by the condition {' / '.join(conds[:3])}: nothing would "
                           f"be deployed{hint}")
            else:
                blocked = "every task was skipped: nothing would be deployed"
    return warnings, blocked


def run_warnings(artifact_data: dict[str, Any]) -> list[str]:
    """What a successful run reported as not done: each ``set_stats`` key ``*started``/``*running``
    that is false (``container_started: false``)."""
    out = []
    for key, value in artifact_data.items():
        if key.endswith(("started", "running", "deployed")) and str(value).strip().lower() in ("false", "0", "no"):
            out.append(f"the playbook reports {key}: false: the run rendered its configuration, but what it "
                       "deploys is not running yet (for a container: is a Docker engine reachable on the host?)")
    return out
