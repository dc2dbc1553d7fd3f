from chiffon.shared.redact import REDACTED, redact, redact_text


def test_values_under_secret_keys_are_replaced() -> None:
    data = {"db_password": "hunter2", "API_TOKEN": "abc", "nested": [{"vault_pass": "x", "name": "ok"}]}
    assert redact(data) == {"db_password": REDACTED, "API_TOKEN": REDACTED,
                            "nested": [{"vault_pass": REDACTED, "name": "ok"}]}


def test_counters_that_look_like_secret_words_are_kept() -> None:
    data = {"tokens_in": 12, "passed": 3, "author": "me", "bypass_cache": True}
    assert redact(data) == data


def test_secret_shapes_inside_text_are_masked() -> None:
    text = ("Authorization: Bearer abcdefghijklmnop key sk-ant-api03-abcdefghijklmnopqrstuv "
            "url postgresql://chiffon:s3cret@db:5432/x token=zzz")
    masked = redact_text(text)
    for secret in ("abcdefghijklmnop", "sk-ant-api03", "s3cret", "zzz"):
        assert secret not in masked
    assert "postgresql://chiffon:" in masked


def test_private_key_blocks_are_masked() -> None:
    pem = "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----"
    assert redact_text(f"key:\n{pem}\n") == f"key:\n{REDACTED}\n"


def test_env_assignments_json_pairs_and_quoted_values_are_masked() -> None:
    text = 'FOO_PASSWORD=abc123 next; export DB_TOKEN=xyz; {"db_password": "hunter2"}; api-key: 1234; password: "q"'
    out = redact_text(text)
    assert not any(secret in out for secret in ("abc123", "xyz", "hunter2", "1234", '"q"'))
    assert out.count(REDACTED) == 5 and "next" in out


def test_counts_named_like_tokens_are_not_masked() -> None:
    assert redact_text("max_tokens: 300, tokens=5") == "max_tokens: 300, tokens=5"


def test_a_url_password_without_a_user_is_masked() -> None:
    assert redact_text("redis://:pw123@east:6379/0") == f"redis://:{REDACTED}@east:6379/0"


def test_a_redactor_masks_a_known_value_that_no_pattern_names() -> None:
    from chiffon.shared.redact import Redactor

    redactor = Redactor(["mellon-unit-4242"])
    assert redactor.text("requirepass mellon-unit-4242\nDB_PASS=mellon-unit-4242") == \
        f"requirepass {REDACTED}\nDB_PASS={REDACTED}"
    assert redactor({"note": ["x mellon-unit-4242"], "db_password": "other"}) == \
        {"note": [f"x {REDACTED}"], "db_password": REDACTED}


def test_a_redactor_ignores_short_values_and_masks_each_line_of_a_long_one() -> None:
    from chiffon.shared.redact import Redactor

    redactor = Redactor(["yes", "line-one-secret\nline-two-secret\n"])
    assert redactor.text("yes: +line-two-secret") == f"yes: +{REDACTED}"
    assert not Redactor(["no", ""])


def test_remembered_values_are_masked_by_redact_text_and_scrub() -> None:
    from chiffon.shared.redact import remember, scrub

    remember({"vault_x": "remembered-unit-5151"})
    assert redact_text("login remembered-unit-5151 failed") == f"login {REDACTED} failed"
    assert scrub({"msg": "remembered-unit-5151", "token": "kept"}) == {"msg": REDACTED, "token": "kept"}
