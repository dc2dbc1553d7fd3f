"""The deploy kit: systemd units, compose file, host overrides and the install playbook (syntax and check mode)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from chiffon.orchestrator.deploy import systemd_units
from chiffon.shared.config import PROJECT_ROOT, load_settings
from chiffon.shared.errors import InvalidInput

DEPLOY = PROJECT_ROOT / "deploy"
BIN = Path(sys.executable).parent
PLAYBOOK = DEPLOY / "ansible" / "install-chiffon.yml"


def test_units_for_each_host_run_unprivileged_and_restart_on_failure() -> None:
    settings = load_settings()
    ai = systemd_units(settings, "ai", install_dir=Path("/opt/chiffon"), home=Path("/var/lib/chiffon"))
    assert set(ai) == {"chiffon-orchestrator.service", "chiffon-worker.service", "chiffon-hostd.service"}
    for text in ai.values():
        assert "User=chiffon" in text and "Restart=on-failure" in text
        assert "EnvironmentFile=-/etc/chiffon/chiffon.env" in text and "Environment=CHIFFON_HOST=ai" in text
        assert "ReadWritePaths=/var/lib/chiffon" in text and "WantedBy=multi-user.target" in text
    assert "ExecStart=/opt/chiffon/.venv/bin/chiffon serve --transport http" in ai["chiffon-orchestrator.service"]
    assert set(systemd_units(settings, "east", install_dir=Path("/opt/c"), home=Path("/h"))) == {"chiffon-hostd.service"}
    with pytest.raises(InvalidInput, match="'gamer' is not a configured host; hosts: ai, desktop, east"):
        systemd_units(settings, "gamer", install_dir=Path("/opt/c"), home=Path("/h"))
    with pytest.raises(InvalidInput, match="not root"):
        systemd_units(settings, "ai", install_dir=Path("/opt/c"), home=Path("/h"), user="root")


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
             "chiffon_etc": str(tmp_path / "etc"), "chiffon_source": str(PROJECT_ROOT),
             "chiffon_units_dir": str(tmp_path / "units")}
    args = [a for k, v in extra.items() for a in ("-e", f"{k}={v}")]
    check = subprocess.run([str(BIN / "ansible-playbook"), "-C", "-i", "localhost,", "-c", "local", str(PLAYBOOK), *args],
                           capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stdout[-3000:] + check.stderr[-2000:]
    assert "failed=0" in check.stdout and list(tmp_path.iterdir()) == []  # check mode wrote nothing
