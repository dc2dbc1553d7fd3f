"""Agent tasks (``tasks:``, chiffon-tasks): the queue, its workers and the agent loop."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from chiffon.shared.config.base import Section
from chiffon.shared.config.llm import TierName


class TaskSettings(Section):
    """Agent tasks (chiffon-tasks): the queue, its workers and the agent loop."""

    max_goal_chars: int = Field(4000, gt=0, description="Longest goal accepted, characters.")
    concurrency: int = Field(4, ge=1, le=256, description="Tasks one worker runs at once.")
    reclaim_idle_s: float = Field(
        3.0, ge=0.3, description="A task pending this long without a keepalive is taken over (XAUTOCLAIM); "
                                 "live workers re-claim their tasks, and look for silent ones, every third of it. "
                                 "A dead worker's tasks run again within about 4/3 of it.")
    malformed_retries: int = Field(1, ge=0, le=10, description="Re-asks after a reply that is not one valid JSON "
                                                               "action; then the step fails.")
    tool_result_chars: int = Field(2000, ge=200, description="Longest tool result shown to the model, characters.")
    test_timeout_s: float = Field(600.0, gt=0, description="Wall-clock limit of repo_run_tests, seconds.")
    sandbox: Literal["bwrap", "none"] = Field(
        "bwrap", description="How agents' test commands run: bwrap (bubblewrap jail: no network, no chiffon state "
                             "or credentials) or none (unsandboxed; an explicit operator choice).")
    grammar_max_chars: int | None = Field(
        None, ge=8, le=1000, description="Cap on every string of an agent's action grammar, characters; unset: no "
                                         "cap. Set it for weak local models that ramble inside strings.")
    temperature: float = Field(0.0, ge=0, le=2, description="Sampling temperature of agents' steps.")
    constrained_decoding: bool = Field(
        True, description="Decode agents' actions under their JSON schema on local backends (a grammar); false "
                          "only to measure what it buys (benchmarks/local_model.py).")
    role_tiers: dict[str, TierName] = Field(default_factory=dict, description="Per-role tier overrides, e.g. "
                                                                          "{qa: external}; default: the role file's.")
    result_ttl_s: int = Field(7 * 86400, gt=0, description="How long the once-only result marker of a task lives "
                                                           "in Redis, seconds.")
