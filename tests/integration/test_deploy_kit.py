"""The deploy kit: systemd units, compose file, host overrides and the install playbook (syntax and check mode)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from chiffon.orchestrator.deploy import systemd_units
from chiffon.shared.config import load_settings
from chiffon.shared.errors import ConfigError, InvalidInput
from tests.conftest import CHECKOUT

DEPLOY = CHECKOUT / "deploy"
BIN = Path(sys.executable).parent
PLAYBOOK = DEPLOY / "ansible" / "install-chiffon.yml"


def test_units_for_each_host_run_unprivileged_and_restart_on_failure() -> None:
    settings = load_settings()
    ai = systemd_units(settings, "ai", install_dir=Path("/opt/chiffon"), home=Path("/var/lib/chiffon"))
    assert set(ai) == {"chiffon-orchestrator.service", "chiffon-worker.service", "chiffon-hostd.service",
                       "chiffon-backup.service", "chiffon-backup.timer", "chiffon-purge.service", "chiffon-purge.timer"}
    for name, text in ai.items():
        if name.endswith(".timer"):
            continue
        assert "User=chiffon" in text and "EnvironmentFile=-/etc/chiffon/chiffon.env" in text
        assert "Environment=CHIFFON_HOST=ai" in text and "ReadWritePaths=/var/lib/chiffon" in text
        if name in ("chiffon-backup.service", "chiffon-purge.service"):
            assert "Type=oneshot" in text and "Restart=" not in text
        else:
            assert "Restart=on-failure" in text and "WantedBy=multi-user.target" in text
    backup_timer = ai["chiffon-backup.timer"]
    assert "OnCalendar=*:00/30" in backup_timer and "Persistent=true" in backup_timer
    assert "WantedBy=timers.target" in backup_timer and "OnCalendar=daily" in ai["chiffon-purge.timer"]
    assert "ExecStart=/opt/chiffon/.venv/bin/chiffon backup\n" in ai["chiffon-backup.service"]
    assert "ExecStart=/opt/chiffon/.venv/bin/chiffon purge\n" in ai["chiffon-purge.service"]
    assert "ExecStart=/opt/chiffon/.venv/bin/chiffon serve --transport http" in ai["chiffon-orchestrator.service"]
    assert set(systemd_units(settings, "east", install_dir=Path("/opt/c"), home=Path("/h"))) == {"chiffon-hostd.service"}
    with pytest.raises(InvalidInput, match="'gamer' is not a configured host; hosts: ai, desktop, east"):
        systemd_units(settings, "gamer", install_dir=Path("/opt/c"), home=Path("/h"))
    with pytest.raises(InvalidInput, match="not root"):
        systemd_units(settings, "ai", install_dir=Path("/opt/c"), home=Path("/h"), user="root")


def test_job_schedules_are_configurable_and_cannot_inject_unit_lines(tmp_path: Path) -> None:
    settings = load_settings(backup={"schedule": "*-*-* *:00/30:00", "dest": str(tmp_path / "nas")},
                             retention={"schedule": "Sun 03:00"})
    ai = systemd_units(settings, "ai", install_dir=Path("/opt/c"), home=Path("/h"))
    assert "OnCalendar=*-*-* *:00/30:00" in ai["chiffon-backup.timer"]
    assert f"ReadWritePaths=/h {tmp_path / 'nas'}" in ai["chiffon-backup.service"]
    assert "OnCalendar=Sun 03:00" in ai["chiffon-purge.timer"]
    for bad in ("hourly\nExecStartPre=/bin/sh -c id", "daily; rm -rf /", ""):
        with pytest.raises(ConfigError, match="backup.schedule"):
            load_settings(backup={"schedule": bad})


def test_the_drift_timer_is_off_by_default_and_emitted_when_scheduled() -> None:
    assert load_settings().drift.schedule is None  # the shipped config leaves it off; the deploy kit turns it on
    assert "chiffon_drift_schedule: \"*-*-* 03:30\"" in PLAYBOOK.read_text()
    ai = systemd_units(load_settings(drift={"schedule": "*-*-* 03:30"}), "ai", install_dir=Path("/opt/c"),
                       home=Path("/h"))
    assert "OnCalendar=*-*-* 03:30" in ai["chiffon-drift.timer"] and "Persistent=true" in ai["chiffon-drift.timer"]
    service = ai["chiffon-drift.service"]
    assert "ExecStart=/opt/c/.venv/bin/chiffon drift\n" in service and "Type=oneshot" in service
    assert "SuccessExitStatus=1\n" in service  # drift found is the job working
    assert load_settings(drift={"schedule": ""}).drift.schedule is None  # CHIFFON_DRIFT__SCHEDULE="" turns it off
    for bad in ("daily\nExecStartPre=/bin/sh -c id", "daily; rm -rf /"):
        with pytest.raises(ConfigError, match="drift.schedule"):
            load_settings(drift={"schedule": bad})


@pytest.mark.parametrize("host", ["ai", "desktop", "east"])
def test_every_host_override_loads(host: str) -> None:
    settings = load_settings(host=host)
    assert settings.host == host and (DEPLOY / "config" / "hosts" / f"{host}.yaml").is_file()
    assert settings.hosts[host].chiffon, f"{host} runs no chiffon service"


def test_compose_services_have_model_friendly_health_checks_and_redis_limits() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "chromadb", "ollama", "prometheus", "grafana"}
    for name, service in services.items():
        check = service["healthcheck"]
        assert (check["interval"], check["timeout"], check["retries"], check["start_period"]) == \
            ("60s", "30s", 5, "120s"), name
        assert service["restart"] == "unless-stopped"
    redis = services["redis"]["command"]
    for flag in ("--maxmemory 2gb", "--maxmemory-policy allkeys-lru", "--appendonly yes", "--appendfsync everysec"):
        assert flag in redis


def test_install_playbook_passes_syntax_check_and_check_mode_changes_nothing(tmp_path: Path) -> None:
    syntax = subprocess.run([str(BIN / "ansible-playbook"), "--syntax-check", "-i", "localhost,", str(PLAYBOOK)],
                            capture_output=True, text=True, timeout=120)
    assert syntax.returncode == 0, syntax.stderr
    extra = {"ansible_python_interpreter": sys.executable, "chiffon_hosts": "localhost", "chiffon_become": "false",
             "chiffon_manage_user": "false", "chiffon_dir": str(tmp_path / "opt"), "chiffon_home": str(tmp_path / "home"),
             "chiffon_etc": str(tmp_path / "etc"), "chiffon_source": str(CHECKOUT),
             "chiffon_units_dir": str(tmp_path / "units")}
    args = [a for k, v in extra.items() for a in ("-e", f"{k}={v}")]
    check = subprocess.run([str(BIN / "ansible-playbook"), "-C", "-i", "localhost,", "-c", "local", str(PLAYBOOK), *args],
                           capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stdout[-3000:] + check.stderr[-2000:]
    assert "failed=0" in check.stdout and list(tmp_path.iterdir()) == []  # check mode wrote nothing


def test_the_units_read_the_env_file_they_are_given() -> None:
    units = systemd_units(load_settings(), "ai", install_dir=Path("/opt/c"), home=Path("/h"),
                          env_file=Path("/srv/chiffon/etc/chiffon.env"))
    for name, text in units.items():
        if name.endswith(".service"):
            assert "EnvironmentFile=-/srv/chiffon/etc/chiffon.env\n" in text, name
            assert "/etc/chiffon/chiffon.env" not in text
