"""Check mode told truthfully: what runs during the preview, and what runs unpreviewed after approval."""

from __future__ import annotations

from pathlib import Path

from chiffon.orchestrator.approval import approval_message
from chiffon.servers.ansible import plans
from chiffon.servers.ansible.service import AnsibleService
from chiffon.shared.runtime import Runtime
from tests.conftest import git_commit_all, make_repo

PLAYBOOK = """# Probe then restart the stack (test helper for check-mode notes).
- name: Probe and restart
  hosts: ai
  gather_facts: false
  tasks:
    - name: Probe the engine
      ansible.builtin.command: echo probing
      changed_when: false
      check_mode: false
    - name: Restart the stack
      ansible.builtin.shell: echo restarting
    - name: Tell the monitor
      ansible.builtin.debug:
        msg: restarted
      delegate_to: east
"""


async def test_the_plan_and_the_approval_form_list_what_check_mode_does_not_keep_read_only(
        rt: Runtime, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "iac")
    (repo / "probe-restart.yml").write_text(PLAYBOOK)
    git_commit_all(repo)
    plan = await plans.create_plan(rt, await AnsibleService.for_runtime(rt, repo).catalog(), "probe-restart.yml")
    assert plan.warnings == [
        "runs even in check mode (it ran during this preview): 'Probe the engine': echo probing",
        "runs a command that check mode cannot preview (it runs after approval): 'Restart the stack': echo restarting",
        "runs on east (delegate_to), not on the play's hosts: 'Tell the monitor'",
    ]
    message = approval_message(plan)
    assert all(f"Warning: {w}" in message for w in plan.warnings)
    assert "limit: none" in message and f"Repo snapshot: {plan.snapshot_digest}" in message
