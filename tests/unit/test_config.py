from pathlib import Path

import pytest

from shared.config import load_settings
from shared.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_host_override_deep_merges_over_the_base_file(tmp_path: Path) -> None:
    base = write(tmp_path / "chiffon.yaml", "ansible:\n  inventory: a.ini\n  forks: 7\nhttp:\n  port: 9000\n")
    write(tmp_path / "hosts" / "ai.yaml", "ansible:\n  inventory: b.ini\n")
    s = load_settings(base, host="ai", home=tmp_path)
    assert s.ansible.inventory == "b.ini"  # overridden
    assert s.ansible.forks == 7  # kept from the base: merged, not replaced
    assert s.http.port == 9000


def test_other_hosts_do_not_get_the_override(tmp_path: Path) -> None:
    base = write(tmp_path / "chiffon.yaml", "ansible:\n  inventory: a.ini\n")
    write(tmp_path / "hosts" / "ai.yaml", "ansible:\n  inventory: b.ini\n")
    assert load_settings(base, host="east", home=tmp_path).ansible.inventory == "a.ini"


def test_environment_wins_over_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = write(tmp_path / "chiffon.yaml", "ansible:\n  forks: 7\n")
    monkeypatch.setenv("CHIFFON_ANSIBLE__FORKS", "3")
    monkeypatch.setenv("CHIFFON_HOME", str(tmp_path / "elsewhere"))
    s = load_settings(base, host="x")
    assert s.ansible.forks == 3
    assert s.home == tmp_path / "elsewhere"


def test_invalid_value_names_the_field(tmp_path: Path) -> None:
    base = write(tmp_path / "chiffon.yaml", "ansible:\n  forks: -1\n")
    with pytest.raises(ConfigError, match=r"ansible\.forks"):
        load_settings(base, host="x", home=tmp_path)


def test_missing_explicit_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml")


def test_tool_approval_is_off_by_default(tmp_path: Path) -> None:
    assert load_settings(home=tmp_path).approvals.allow_tool_approval is False
