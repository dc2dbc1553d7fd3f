"""The config layers: shipped defaults < user file < /etc < CHIFFON_CONFIG/--config < environment < flags,
merged key by key, and errors that name the files read."""

from __future__ import annotations

from pathlib import Path

import pytest

from chiffon.shared.config import DEFAULT_CONFIG, load_settings
from chiffon.shared.config.files import discover_layers, system_config_path, user_config_path
from chiffon.shared.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A user config dir (XDG_CONFIG_HOME) and a system file (CHIFFON_SYSTEM_CONFIG) of this test's own."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("CHIFFON_SYSTEM_CONFIG", str(tmp_path / "etc" / "chiffon.yaml"))
    monkeypatch.delenv("CHIFFON_CONFIG", raising=False)
    return {"user": tmp_path / "xdg" / "chiffon" / "chiffon.yaml", "system": tmp_path / "etc" / "chiffon.yaml",
            "home": tmp_path / "home"}


def test_the_user_file_is_under_xdg_config_home(places: dict[str, Path]) -> None:
    assert user_config_path() == places["user"]
    assert system_config_path() == places["system"]


def test_a_relative_xdg_config_home_is_ignored_as_the_spec_says(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": "relative/dir", "HOME": str(tmp_path)}
    assert user_config_path(env) == tmp_path / ".config" / "chiffon" / "chiffon.yaml"
    assert user_config_path({"HOME": str(tmp_path)}) == tmp_path / ".config" / "chiffon" / "chiffon.yaml"


def test_the_system_file_is_etc_chiffon_unless_moved() -> None:
    assert system_config_path({}) == Path("/etc/chiffon/chiffon.yaml")


def test_the_user_file_overrides_a_shipped_default_and_keeps_the_rest(places: dict[str, Path]) -> None:
    write(places["user"], "llm:\n  monthly_budget_usd: 5\nhosts:\n  lab: {address: 10.0.0.9}\n")
    settings = load_settings(host="ai", home=places["home"])
    assert settings.llm.monthly_budget_usd == 5  # the user's value over the shipped 20
    assert settings.llm.breaker_failures == 3 and "claude-haiku-4-5" in settings.llm.prices  # shipped, kept
    assert set(settings.hosts) == {"ai", "desktop", "east", "lab"}  # shipped hosts merged with the user's
    assert list(settings.llm.tiers) == ["quick", "local", "local-large", "external"]  # shipped hosts/ai.yaml kept


def test_the_user_file_wins_over_the_shipped_host_override(places: dict[str, Path]) -> None:
    write(places["user"], "ansible:\n  inventory: inventories/mine.ini\nllm:\n  tiers:\n    quick: {model: tiny}\n")
    settings = load_settings(host="ai", home=places["home"])
    assert settings.ansible.inventory == "inventories/mine.ini"  # over hosts/ai.yaml's inventories/homelab.ini
    quick = settings.llm.tiers["quick"]
    assert (quick.model, quick.backend, quick.context_window) == ("tiny", "desktop-llamacpp", 4096)  # key by key


def test_the_system_file_wins_over_the_user_file(places: dict[str, Path]) -> None:
    write(places["user"], "console:\n  port: 7001\n  refresh_s: 2\n")
    write(places["system"], "console:\n  port: 7002\n")
    settings = load_settings(home=places["home"])
    assert (settings.console.port, settings.console.refresh_s) == (7002, 2)


def test_chiffon_config_is_a_layer_over_the_system_file(places: dict[str, Path], tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    write(places["system"], "console:\n  port: 7002\n  bind: 0.0.0.0\n")
    explicit = write(tmp_path / "mine.yaml", "console:\n  port: 7003\n")
    monkeypatch.setenv("CHIFFON_CONFIG", str(explicit))
    settings = load_settings(home=places["home"])
    assert (settings.console.port, settings.console.bind) == (7003, "0.0.0.0")
    assert {"ai", "desktop", "east"} <= set(settings.hosts)  # no longer replaces the shipped config


def test_the_config_flag_takes_the_place_of_chiffon_config(places: dict[str, Path], tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHIFFON_CONFIG", str(write(tmp_path / "env.yaml", "console:\n  port: 7003\n  bind: 0.0.0.0\n")))
    flag = write(tmp_path / "flag.yaml", "console:\n  port: 7004\n")
    settings = load_settings(flag, home=places["home"])
    assert (settings.console.port, settings.console.bind) == (7004, "127.0.0.1")


def test_the_environment_wins_over_every_file(places: dict[str, Path], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    write(places["user"], "console:\n  port: 7001\n")
    write(places["system"], "console:\n  port: 7002\n")
    monkeypatch.setenv("CHIFFON_CONFIG", str(write(tmp_path / "mine.yaml", "console:\n  port: 7003\n")))
    monkeypatch.setenv("CHIFFON_CONSOLE__PORT", "7005")
    assert load_settings(home=places["home"]).console.port == 7005
    assert load_settings(home=places["home"], console={"port": 7006}).console.port == 7006  # flags win over it


def test_missing_optional_layers_are_skipped_and_listed(places: dict[str, Path]) -> None:
    settings = load_settings(home=places["home"])
    states = {layer.label: layer.state for layer in settings.config_layers}
    assert states == {"shipped defaults": "read", "user": "missing", "system": "missing"}
    assert settings.config_sources == (f"read: {DEFAULT_CONFIG}; not found: {places['user']}, {places['system']}")


def test_an_unreadable_optional_layer_is_skipped_and_reported(places: dict[str, Path]) -> None:
    places["system"].mkdir(parents=True)  # a folder where the file should be: open() fails, even as root
    settings = load_settings(home=places["home"])
    system = next(layer for layer in settings.config_layers if layer.label == "system")
    assert system.state == "not readable" and system.detail
    assert f"not readable: {places['system']}" in settings.config_sources


def test_a_missing_chiffon_config_file_is_an_error_naming_it(places: dict[str, Path], tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHIFFON_CONFIG", str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match=rf"{tmp_path / 'nope.yaml'} does not exist \(named by CHIFFON_CONFIG\)"):
        load_settings(home=places["home"])
    layers = discover_layers(strict=False)  # what `chiffon config path` shows instead of failing
    assert (layers[-1].label, layers[-1].state) == ("CHIFFON_CONFIG", "missing")


def test_invalid_yaml_in_the_user_file_names_it(places: dict[str, Path]) -> None:
    write(places["user"], "console:\n  port: [7001\n")
    with pytest.raises(ConfigError, match=rf"{places['user']}: not valid YAML"):
        load_settings(home=places["home"])


def test_a_user_file_that_is_not_a_mapping_names_it(places: dict[str, Path]) -> None:
    write(places["user"], "- console\n")
    with pytest.raises(ConfigError, match=rf"{places['user']}: must be a mapping"):
        load_settings(home=places["home"])


def test_a_bad_value_names_its_file_and_every_file_read(places: dict[str, Path]) -> None:
    write(places["user"], "console:\n  port: 7001\n")
    write(places["system"], "console:\n  port: many\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(home=places["home"])
    message = str(caught.value)
    assert f"{places['system']}: console.port: Input should be a valid integer" in message
    assert f"read: {DEFAULT_CONFIG}, {places['user']}, {places['system']}" in message


def test_a_host_override_beside_the_user_file_applies_after_it(places: dict[str, Path]) -> None:
    write(places["user"], "console:\n  port: 7001\n")
    override = write(places["user"].parent / "hosts" / "ai.yaml", "console:\n  port: 7011\n")
    settings = load_settings(host="ai", home=places["home"])
    assert settings.console.port == 7011
    assert override in [layer.path for layer in settings.config_layers if layer.for_host == "ai"]
    assert load_settings(host="east", home=places["home"]).console.port == 7001


def test_tests_never_read_the_developers_own_config() -> None:
    """conftest points XDG_CONFIG_HOME and CHIFFON_SYSTEM_CONFIG at an empty temp dir."""
    assert not user_config_path().is_relative_to(Path.home() / ".config")
    assert system_config_path() != Path("/etc/chiffon/chiffon.yaml")


def test_a_bad_environment_value_is_blamed_on_the_variable_not_the_file(places: dict[str, Path],
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    write(places["user"], "console:\n  port: 7001\n")
    monkeypatch.setenv("CHIFFON_CONSOLE__PORT", "many")
    with pytest.raises(ConfigError, match="environment CHIFFON_CONSOLE__PORT: console.port: Input should be a valid"):
        load_settings(home=places["home"])


def test_a_bad_host_entry_is_blamed_on_its_file_not_on_chiffon_host(places: dict[str, Path]) -> None:
    write(places["user"], "hosts:\n  lab: {gpu: quantum}\n")  # CHIFFON_HOST is set (conftest): not the source
    with pytest.raises(ConfigError, match=rf"{places['user']}: hosts\.lab\.gpu"):
        load_settings(home=places["home"])
