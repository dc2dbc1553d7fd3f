"""Backups (``backup:``) and the daily purge (``retention:``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from chiffon.shared.config.base import CALENDAR, Section


class BackupSettings(Section):
    """`chiffon backup` and the timer `chiffon deploy systemd` emits for it."""

    schedule: str = Field("*:00/30", pattern=CALENDAR, description="systemd OnCalendar of the backup timer (every "
                                                                    "30 min: a failure loses at most ~31 min).")
    keep_days: int = Field(7, ge=1, description="Every backup of the last 24 h is kept, then the newest of each "
                                                "day up to this many days; older ones are deleted after a backup.")
    dest: Path | None = Field(None, description="Parent folder of the backups; unset: CHIFFON_HOME/backups.")


class RetentionSettings(Section):
    """`chiffon purge` (a daily timer): what is kept, and how long. Chat history: ``memory.retention_days``."""

    schedule: str = Field("daily", pattern=CALENDAR, description="systemd OnCalendar of the purge timer.")
    run_artifacts_days: int | None = Field(
        30, gt=0, description="ansible-runner folders (CHIFFON_HOME/runs) of finished runs and checks older than "
                              "this are deleted; unset keeps all.")
    speech_days: int | None = Field(7, gt=0, description="Spoken replies (CHIFFON_HOME/voice/*.wav) older than "
                                                         "this are deleted; unset keeps all.")
