from pathlib import Path

import pytest

from chiffon.shared.config import load_settings
from chiffon.shared.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_host_override_deep_merges_over_the_base_file(tmp_path: Path) -> None:
    base = write(tmp_path / "chiffon.yaml",
                 "hosts:\n  ai: {}\nansible:\n  inventory: a.ini\n  forks: 7\nhttp:\n  port: 9000\n")
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


def test_unknown_key_names_the_file_the_key_and_the_known_keys(tmp_path: Path) -> None:
    base = write(tmp_path / "chiffon.yaml", "hosts:\n  ai: {}\nhostd:\n  bnd: 0.0.0.0\n")
    with pytest.raises(ConfigError) as err:
        load_settings(base, host="x", home=tmp_path)
    assert f"{base}: hostd.bnd: unknown key; known keys here: assume_available, bind," in str(err.value)


def test_wrong_type_names_the_override_file_and_the_expected_type(tmp_path: Path) -> None:
    base = write(tmp_path / "chiffon.yaml", "hosts:\n  ai: {}\n")
    override = write(tmp_path / "hosts" / "ai.yaml", "ansible:\n  forks: many\n")
    with pytest.raises(ConfigError) as err:
        load_settings(base, host="ai", home=tmp_path)
    assert f"{override}: ansible.forks: Input should be a valid integer" in str(err.value)
    assert "'many'" in str(err.value)


def test_unknown_key_in_a_backend_lists_the_backend_keys(tmp_path: Path) -> None:
    base = write(tmp_path / "chiffon.yaml", "llm:\n  backends:\n    box: {kind: ollama, sluts: 2}\n")
    with pytest.raises(ConfigError, match=r"llm\.backends\.box\.sluts: unknown key; known keys here: .*slots"):
        load_settings(base, host="x", home=tmp_path)


def test_unknown_environment_key_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHIFFON_TASKS__CONCURENCY", "3")
    with pytest.raises(ConfigError, match=r"environment CHIFFON_TASKS__CONCURENCY: tasks\.concurency: unknown key"):
        load_settings(home=tmp_path)


def test_host_override_for_an_unknown_host_is_refused(tmp_path: Path) -> None:
    base = write(tmp_path / "chiffon.yaml", "hosts:\n  east: {}\n")
    override = write(tmp_path / "hosts" / "lab.yaml", "ansible:\n  forks: 3\n")
    with pytest.raises(ConfigError, match=rf"{override}: overrides host 'lab'.*known: ai, desktop, east"):
        load_settings(base, host="lab", home=tmp_path)  # the shipped hosts merge in: ai, desktop, east


@pytest.mark.parametrize("budget", ["120", "0", "-5"])
def test_vram_budget_outside_0_to_100_percent_is_refused(tmp_path: Path, budget: str) -> None:
    base = write(tmp_path / "chiffon.yaml", f"hosts:\n  desktop: {{vram_budget_percent: {budget}}}\n")
    with pytest.raises(ConfigError, match=rf"{base}: hosts\.desktop\.vram_budget_percent"):
        load_settings(base, host="x", home=tmp_path)


def test_heartbeat_ttl_must_outlive_the_beat(tmp_path: Path) -> None:
    base = write(tmp_path / "chiffon.yaml", "hostd:\n  heartbeat_s: 10\n  heartbeat_ttl_s: 5\n")
    with pytest.raises(ConfigError, match="heartbeat_ttl_s"):
        load_settings(base, host="x", home=tmp_path)


def test_the_shipped_deploy_config_loads_for_every_host(tmp_path: Path) -> None:
    for host in ("ai", "desktop", "east"):
        assert host in load_settings(host=host, home=tmp_path).hosts


def test_keys_that_moved_to_hostd_name_their_new_place(tmp_path: Path) -> None:
    base = write(tmp_path / "chiffon.yaml", "voice:\n  bind: 0.0.0.0\n  hostd_token: x\nllm:\n  assume_hosts_available: true\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(base, host="x", home=tmp_path)
    message = str(caught.value)
    assert "voice.bind moved to hostd.bind" in message and "voice.hostd_token moved to hostd.token" in message
    assert "llm.assume_hosts_available moved to hostd.assume_available" in message and "chiffon.yaml" in message
    good = write(tmp_path / "ok.yaml", "hostd:\n  bind: 0.0.0.0\n  port: 9770\n  assume_available: false\n")
    s = load_settings(good, host="x", home=tmp_path)
    assert (s.hostd.bind, s.hostd.port, s.hostd.assume_available) == ("0.0.0.0", 9770, False)
