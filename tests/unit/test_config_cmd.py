"""`chiffon config path/set/unset/get/show` and `chiffon console passwd` writing the user's config file, run
through typer's CliRunner with XDG_CONFIG_HOME and the system file in a temp dir."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner, Result

from chiffon.orchestrator.cli import app
from chiffon.shared.config import DEFAULT_CONFIG

SECRET = "JBSWY3DPEHPK3PXP"
PASSWORD = "correct horse battery"


@pytest.fixture
def user_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("CHIFFON_SYSTEM_CONFIG", str(tmp_path / "etc" / "chiffon.yaml"))
    monkeypatch.setenv("CHIFFON_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CHIFFON_CONFIG", raising=False)
    return tmp_path / "xdg" / "chiffon" / "chiffon.yaml"


def chiffon(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(app, list(args), input=stdin)


def read(path: Path) -> dict:  # type: ignore[type-arg]
    return yaml.safe_load(path.read_text())


def test_set_creates_the_user_file_0600_in_a_0700_folder(user_file: Path) -> None:
    result = chiffon("config", "set", "console.port", "7861")
    assert result.exit_code == 0, result.output
    assert read(user_file) == {"console": {"port": 7861}}
    assert stat.S_IMODE(user_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(user_file.parent.stat().st_mode) == 0o700
    assert f"set console.port = 7861 in {user_file}" in result.stdout


def test_set_keeps_the_other_keys_of_the_file(user_file: Path) -> None:
    user_file.parent.mkdir(parents=True)
    user_file.write_text("ansible:\n  inventory: prod\nconsole:\n  refresh_s: 2\n")
    assert chiffon("config", "set", "console.port", "7861").exit_code == 0
    assert read(user_file) == {"ansible": {"inventory": "prod"}, "console": {"refresh_s": 2, "port": 7861}}


@pytest.mark.parametrize(("key", "value", "stored"), [
    ("ansible.lint", "false", False),
    ("ansible.pass_env", "[AWS_PROFILE, HOMELAB_ROOT]", ["AWS_PROFILE", "HOMELAB_ROOT"]),
    ("ansible.inventory", "012", "012"),  # a text field keeps the text as typed
    ("ansible.inventory", "a: b", "a: b"),  # YAML syntax in a text value is stored literally
    ("hosts.lab", "{address: 10.0.0.9, chiffon: [hostd]}", {"address": "10.0.0.9", "chiffon": ["hostd"]}),
])
def test_set_parses_the_value_as_yaml_for_the_fields_type(user_file: Path, key: str, value: str,
                                                          stored: object) -> None:
    result = chiffon("config", "set", key, value)
    assert result.exit_code == 0, result.output
    node = read(user_file)
    for part in key.split("."):
        node = node[part]
    assert node == stored


def test_an_unknown_key_changes_nothing_and_lists_the_known_keys(user_file: Path) -> None:
    user_file.parent.mkdir(parents=True)
    user_file.write_text("console:\n  port: 7861\n")
    before = user_file.read_bytes()
    result = chiffon("config", "set", "console.prot", "7862")
    assert result.exit_code == 2
    assert "unknown key 'prot' in console; known keys there:" in result.stderr and "port" in result.stderr
    assert user_file.read_bytes() == before


@pytest.mark.parametrize(("value", "problem"), [("abc", "valid integer"), ("70000", "less than 65536")])
def test_a_bad_value_changes_nothing_and_says_what_is_expected(user_file: Path, value: str, problem: str) -> None:
    result = chiffon("config", "set", "console.port", value)
    assert result.exit_code == 2
    assert f"{user_file}: console.port:" in result.stderr and problem in result.stderr
    assert f"{user_file} is unchanged" in result.stderr
    assert not user_file.exists() and not user_file.parent.exists()


@pytest.mark.parametrize("key", ["../x", "a..b", "console/port", "", ".console", "console.", "console.port.x",
                                 "hosts.../../etc", "console.port\nconsole"])
def test_a_key_that_is_not_a_settings_key_is_refused(user_file: Path, key: str) -> None:
    result = chiffon("config", "set", key, "1")
    assert result.exit_code == 2
    assert "KEY" in result.stderr
    assert not user_file.parent.exists()


@pytest.mark.parametrize(("key", "value"), [("console.port", "1\nconsole: {}"),
                                            ("ansible.inventory", "prod\nconsole:\n  operators: []"),
                                            ("ansible.inventory", "prod\rconsole: {}")])
def test_a_multi_line_value_cannot_inject_yaml(user_file: Path, key: str, value: str) -> None:
    result = chiffon("config", "set", key, value)
    assert result.exit_code == 2
    assert "VALUE: one line" in result.stderr
    assert not user_file.exists()


def test_a_mapping_where_a_number_belongs_is_refused(user_file: Path) -> None:
    result = chiffon("config", "set", "console.port", "{console: {}}")
    assert result.exit_code == 2 and "console.port" in result.stderr
    assert not user_file.exists()


def test_a_secret_on_the_command_line_is_refused_and_not_echoed(user_file: Path) -> None:
    result = chiffon("config", "set", "approvals.totp_secret", SECRET)
    assert result.exit_code == 2
    assert "is a secret: give it on stdin" in result.stderr
    assert SECRET not in result.output
    assert not user_file.exists()


def test_a_secret_from_stdin_is_written_and_never_shown(user_file: Path) -> None:
    result = chiffon("config", "set", "approvals.totp_secret", "-", stdin=SECRET + "\n")
    assert result.exit_code == 0, result.output
    assert read(user_file) == {"approvals": {"totp_secret": SECRET}}
    assert SECRET not in result.output and "(secret, not shown)" in result.stdout
    got = chiffon("config", "get", "approvals.totp_secret")
    assert got.exit_code == 0 and SECRET not in got.output and "**********" in got.stdout


def test_a_secret_in_an_error_is_masked(user_file: Path) -> None:
    result = chiffon("config", "set", "errors.notify_urls", "-", stdin="ntfy://hunter2-token\n")  # not a list
    assert result.exit_code == 2 and "errors.notify_urls" in result.stderr
    assert "hunter2" not in result.output
    assert not user_file.exists()


def test_unset_removes_the_key_and_empty_sections(user_file: Path) -> None:
    user_file.parent.mkdir(parents=True)
    user_file.write_text("console:\n  port: 7861\nansible:\n  inventory: prod\n")
    result = chiffon("config", "unset", "console.port")
    assert result.exit_code == 0, result.output
    assert read(user_file) == {"ansible": {"inventory": "prod"}}


def test_get_prints_the_value_in_effect(user_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert chiffon("config", "set", "console.port", "7861").exit_code == 0
    assert chiffon("config", "get", "console.port").stdout.strip() == "7861"
    monkeypatch.setenv("CHIFFON_CONSOLE__PORT", "7999")
    assert chiffon("config", "get", "console.port").stdout.strip() == "7999"


def test_set_says_when_the_environment_overrides_the_key(user_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHIFFON_CONSOLE__PORT", "7999")
    result = chiffon("config", "set", "console.port", "7861")
    assert result.exit_code == 0
    assert "also set by environment CHIFFON_CONSOLE__PORT" in result.stderr


def test_path_lists_each_layer_and_the_environment_names_only(user_file: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    user_file.parent.mkdir(parents=True)
    user_file.write_text("console:\n  port: 7861\n")
    (tmp_path / "etc" / "chiffon.yaml").mkdir(parents=True)  # not a file: not readable
    monkeypatch.setenv("CHIFFON_HTTP__BEARER_TOKEN", "s3cr3t-value")
    monkeypatch.setenv("CHIFFON_CONFIG", str(tmp_path / "gone.yaml"))
    result = chiffon("config", "path")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines[1:5]] == ["shipped", "user", "system", "CHIFFON_CONFIG"]
    assert lines[1].endswith(f"{DEFAULT_CONFIG}  read") and lines[2].endswith(f"{user_file}  read")
    assert f"{tmp_path / 'etc' / 'chiffon.yaml'}  not readable (Is a directory)" in lines[3]
    assert f"{tmp_path / 'gone.yaml'}  missing: chiffon refuses to start" in lines[4]
    assert "CHIFFON_HTTP__BEARER_TOKEN" in result.stdout and "s3cr3t-value" not in result.output


def test_path_as_json(user_file: Path) -> None:
    import json

    result = chiffon("config", "path", "--json")
    report = json.loads(result.stdout)
    assert [(layer["layer"], layer["state"]) for layer in report["layers"]] == [
        ("shipped defaults", "read"), ("user", "missing"), ("system", "missing")]
    assert report["user_file"] == str(user_file)


def test_show_masks_secrets(user_file: Path) -> None:
    assert chiffon("config", "set", "approvals.totp_secret", "-", stdin=SECRET).exit_code == 0
    result = chiffon("config", "show")
    assert result.exit_code == 0
    assert SECRET not in result.output and "totp_secret: '**********'" in result.stdout
    assert f"read: {DEFAULT_CONFIG}, {user_file}" in result.stdout


def test_passwd_writes_the_operator_into_the_user_file(user_file: Path) -> None:
    from argon2 import PasswordHasher

    result = chiffon("console", "passwd", "alice", "--no-totp", stdin=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    assert f"added operator alice in {user_file} (mode 0600)" in result.stdout
    operators = read(user_file)["console"]["operators"]
    assert [op["name"] for op in operators] == ["alice"]
    assert PasswordHasher().verify(operators[0]["password_hash"], PASSWORD)
    assert PASSWORD not in user_file.read_text() and PASSWORD not in result.output
    assert stat.S_IMODE(user_file.stat().st_mode) == 0o600


def test_passwd_replaces_the_same_name_and_keeps_the_others(user_file: Path) -> None:
    from argon2 import PasswordHasher

    assert chiffon("config", "set", "console.port", "7861").exit_code == 0
    assert chiffon("console", "passwd", "bob", "--no-totp", stdin=PASSWORD).exit_code == 0
    assert chiffon("console", "passwd", "alice", "--no-totp", stdin=PASSWORD).exit_code == 0
    result = chiffon("console", "passwd", "alice", "--no-totp", stdin="another long password\n")
    assert result.exit_code == 0 and "replaced operator alice" in result.stdout
    config = read(user_file)
    assert config["console"]["port"] == 7861
    operators = {op["name"]: op["password_hash"] for op in config["console"]["operators"]}
    assert list(operators) == ["bob", "alice"]
    assert PasswordHasher().verify(operators["alice"], "another long password")


def test_passwd_print_writes_no_file(user_file: Path) -> None:
    result = chiffon("console", "passwd", "alice", "--print", "--no-totp", stdin=PASSWORD)
    assert result.exit_code == 0
    entry = yaml.safe_load(result.stdout)
    assert entry["console"]["operators"][0]["name"] == "alice"
    assert not user_file.exists()


def test_passwd_refuses_a_short_password_and_writes_nothing(user_file: Path) -> None:
    result = chiffon("console", "passwd", "alice", "--no-totp", stdin="short\n")
    assert result.exit_code == 2 and "at least 12 characters" in result.stderr
    assert not user_file.exists()


def test_passwd_warns_when_the_environment_sets_the_operators(user_file: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHIFFON_CONSOLE__OPERATORS", "[]")
    result = chiffon("console", "passwd", "alice", "--no-totp", stdin=PASSWORD)
    assert result.exit_code == 0
    assert "console.operators is also set by environment CHIFFON_CONSOLE__OPERATORS" in result.stderr


def test_unset_of_a_key_the_file_lacks_writes_nothing(user_file: Path) -> None:
    result = chiffon("config", "unset", "console.port")
    assert result.exit_code == 0 and "nothing to remove" in result.stdout
    assert not user_file.exists()
