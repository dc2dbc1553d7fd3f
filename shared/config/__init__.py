"""chiffon configuration: one :class:`Settings`, composed of one section per area, each in its own module.

===================  ====================================================  ===========================
module               sections                                              keys
===================  ====================================================  ===========================
:mod:`.ansible`      :class:`AnsibleSettings`, :class:`DriftSettings`      ``ansible:``, ``drift:``
:mod:`.approvals`    :class:`ApprovalSettings`                             ``approvals:``
:mod:`.console`      :class:`ConsoleSettings`, :class:`Operator`           ``console:``
:mod:`.embedded`     :class:`EmbeddedSettings`                             ``embedded:``
:mod:`.hostd`        :class:`HostConfig`, :class:`HostdSettings`           ``hosts:``, ``hostd:``
:mod:`.http`         :class:`HttpSettings`                                 ``http:``
:mod:`.llm`          :class:`LLMSettings`, its backends, tiers and prices  ``llm:``
:mod:`.maintenance`  :class:`BackupSettings`, :class:`RetentionSettings`   ``backup:``, ``retention:``
:mod:`.memory`       :class:`MemorySettings`                               ``memory:``
:mod:`.notify`       :class:`ErrorSettings`, :class:`NotifySettings`       ``errors:``, ``notify:``
:mod:`.tasks`        :class:`TaskSettings`                                 ``tasks:``
:mod:`.voice`        :class:`VoiceSettings`                                ``voice:``
:mod:`.settings`     :class:`Settings` (the top-level keys), the loader    the rest
:mod:`.base`         :class:`Section`, what every section is built on
===================  ====================================================  ===========================

The layers, later winning key by key: the field defaults; the YAML files (:mod:`chiffon.shared.config.files`);
environment variables ``CHIFFON_<FIELD>`` (``__`` for nesting); the keyword arguments of :func:`load_settings`
(the CLI's flags). Build settings in ``main()`` with :func:`load_settings`, never at import.

Every name is importable from here (``from chiffon.shared.config import Settings, load_settings``).
"""

from __future__ import annotations

from chiffon.shared.config.ansible import AnsibleSettings, DriftSettings
from chiffon.shared.config.approvals import ApprovalSettings
from chiffon.shared.config.base import Section
from chiffon.shared.config.console import ConsoleSettings, Operator
from chiffon.shared.config.embedded import EmbeddedSettings
from chiffon.shared.config.files import DEFAULT_CONFIG
from chiffon.shared.config.hostd import HostConfig, HostdSettings
from chiffon.shared.config.http import HttpSettings
from chiffon.shared.config.llm import TIER_NAMES, LLMBackendConfig, LLMPrice, LLMSettings, LLMTierConfig, TierName
from chiffon.shared.config.maintenance import BackupSettings, RetentionSettings
from chiffon.shared.config.memory import MemorySettings
from chiffon.shared.config.notify import ErrorSettings, NotifyEvent, NotifySettings
from chiffon.shared.config.settings import Settings, config_files, load_settings, settings_from_layers
from chiffon.shared.config.tasks import TaskSettings
from chiffon.shared.config.voice import VoiceSettings

__all__ = [
    "DEFAULT_CONFIG",
    "TIER_NAMES",
    "AnsibleSettings",
    "ApprovalSettings",
    "BackupSettings",
    "ConsoleSettings",
    "DriftSettings",
    "EmbeddedSettings",
    "ErrorSettings",
    "HostConfig",
    "HostdSettings",
    "HttpSettings",
    "LLMBackendConfig",
    "LLMPrice",
    "LLMSettings",
    "LLMTierConfig",
    "MemorySettings",
    "NotifyEvent",
    "NotifySettings",
    "Operator",
    "RetentionSettings",
    "Section",
    "Settings",
    "TaskSettings",
    "TierName",
    "VoiceSettings",
    "config_files",
    "load_settings",
    "settings_from_layers",
]
