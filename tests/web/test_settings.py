"""Settings.from_env: defaults with no configuration, every variable's rule, secrets from files,
and secrets kept out of repr()."""

from pathlib import Path

import pytest

from appliance.settings import Settings, SettingsError

TOKEN = "rl_admin_0123456789abcdef"


def refused(env: dict[str, str]) -> SettingsError:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    return caught.value


def test_defaults_run_on_a_laptop_with_no_configuration():
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.data_dir == Path("data") and settings.keys_dir == Path("data/keys")
    assert settings.db_path == Path("data/runlog.sqlite")
    assert (settings.origin, settings.host, settings.port) == ("localhost/runlog", "127.0.0.1", 8080)
    assert settings.public_url == "http://127.0.0.1:8080"
    assert settings.checkpoint_interval == 300.0
    assert (settings.max_body_bytes, settings.max_batch, settings.synchronous) == (8 * 1024 * 1024, 1000, "FULL")
    assert settings.admin_token is None and settings.slack_signing_secret is None and settings.slack_bot_token is None
    assert settings.slack_api_url == "https://slack.com/api/"


def test_every_variable_is_read():
    settings = Settings.from_env({
        "RUNLOG_DATA_DIR": "/srv/runlog", "RUNLOG_ORIGIN": "runlog.example.com/prod", "RUNLOG_HOST": "0.0.0.0",
        "RUNLOG_PORT": "9000", "RUNLOG_PUBLIC_URL": "https://runlog.example.com/", "RUNLOG_CHECKPOINT_INTERVAL": "2.5",
        "RUNLOG_MAX_BODY_BYTES": "1048576", "RUNLOG_MAX_BATCH": "50", "RUNLOG_SYNCHRONOUS": "normal",
        "RUNLOG_ADMIN_TOKEN": TOKEN, "RUNLOG_SLACK_SIGNING_SECRET": "8f742231b10e8888abcd99yyyzzz85a5",
        "RUNLOG_SLACK_BOT_TOKEN": "xoxb-1-2-3", "RUNLOG_SLACK_API_URL": "http://127.0.0.1:9999/api",
    })
    assert settings.data_dir == Path("/srv/runlog") and settings.keys_dir == Path("/srv/runlog/keys")
    assert settings.db_path == Path("/srv/runlog/runlog.sqlite")
    assert (settings.origin, settings.host, settings.port) == ("runlog.example.com/prod", "0.0.0.0", 9000)
    assert settings.public_url == "https://runlog.example.com"
    assert (settings.checkpoint_interval, settings.max_body_bytes, settings.max_batch) == (2.5, 1048576, 50)
    assert settings.synchronous == "NORMAL"
    assert (settings.admin_token, settings.slack_bot_token) == (TOKEN, "xoxb-1-2-3")
    assert settings.slack_signing_secret == "8f742231b10e8888abcd99yyyzzz85a5"
    assert settings.slack_api_url == "http://127.0.0.1:9999/api/"


def test_keys_dir_can_live_elsewhere():
    assert Settings.from_env({"RUNLOG_DATA_DIR": "d", "RUNLOG_KEYS_DIR": "/etc/runlog"}).keys_dir == Path("/etc/runlog")


def test_public_url_follows_host_and_port_including_ipv6():
    assert Settings.from_env({"RUNLOG_HOST": "::1", "RUNLOG_PORT": "81"}).public_url == "http://[::1]:81"
    assert Settings.from_env({"RUNLOG_HOST": "runlog.internal"}).public_url == "http://runlog.internal:8080"


def test_wildcard_listen_address_gives_a_loopback_public_url():
    assert Settings.from_env({"RUNLOG_HOST": "0.0.0.0"}).public_url == "http://127.0.0.1:8080"
    assert Settings.from_env({"RUNLOG_HOST": "::", "RUNLOG_PORT": "9"}).public_url == "http://[::1]:9"


def test_empty_value_means_unset():
    assert Settings.from_env({"RUNLOG_PORT": "", "RUNLOG_ADMIN_TOKEN": "", "RUNLOG_ORIGIN": ""}) == Settings()


@pytest.mark.parametrize("name, value", [
    ("RUNLOG_PORT", "0"), ("RUNLOG_PORT", "65536"), ("RUNLOG_PORT", "http"), ("RUNLOG_PORT", "-1"),
    ("RUNLOG_ORIGIN", "has space"), ("RUNLOG_ORIGIN", "a+b"), ("RUNLOG_ORIGIN", "runlog-receipt/v1"),
    ("RUNLOG_HOST", "bad host"), ("RUNLOG_HOST", "a/b"),
    ("RUNLOG_PUBLIC_URL", "ftp://x"), ("RUNLOG_PUBLIC_URL", "runlog.example.com"),
    ("RUNLOG_PUBLIC_URL", "http://x/?a=1"), ("RUNLOG_PUBLIC_URL", "http://x:99999"),
    ("RUNLOG_CHECKPOINT_INTERVAL", "0"), ("RUNLOG_CHECKPOINT_INTERVAL", "nan"), ("RUNLOG_CHECKPOINT_INTERVAL", "5m"),
    ("RUNLOG_CHECKPOINT_INTERVAL", "86401"),
    ("RUNLOG_MAX_BODY_BYTES", "8MiB"), ("RUNLOG_MAX_BODY_BYTES", "10"), ("RUNLOG_MAX_BATCH", "0"),
    ("RUNLOG_SYNCHRONOUS", "OFF"), ("RUNLOG_ADMIN_TOKEN", "short"), ("RUNLOG_ADMIN_TOKEN", "has a space in it ok"),
    ("RUNLOG_ADMIN_TOKEN", "x" * 23), ("RUNLOG_ADMIN_TOKEN", "rl_comma,is_not_a_bearer_token_char"),
    ("RUNLOG_SLACK_BOT_TOKEN", "xoxb\n"), ("RUNLOG_SLACK_API_URL", "slack.com/api"),
    ("RUNLOG_WORKERS", "0"), ("RUNLOG_WORKERS", "65"), ("RUNLOG_WORKERS", "two"), ("RUNLOG_WORKERS", "-2"),
    ("RUNLOG_LOOP", "trio"), ("RUNLOG_LOOP", "uv loop"),
])
def test_invalid_values_name_the_variable(name, value):
    error = refused({name: value})
    assert error.variable == name and str(error).startswith(f"{name}: ")


def test_secrets_never_appear_in_repr_or_errors():
    settings = Settings.from_env({"RUNLOG_ADMIN_TOKEN": TOKEN, "RUNLOG_SLACK_BOT_TOKEN": "xoxb-secret-value"})
    shown = repr(settings) + str(settings)
    assert TOKEN not in shown and "xoxb-secret-value" not in shown
    assert "admin_token=<set>" in shown and "slack_signing_secret=None" in shown
    assert "has a space" not in str(refused({"RUNLOG_ADMIN_TOKEN": "has a space in it, secret"}))


def test_secret_from_file_drops_the_trailing_newline(tmp_path):
    secret = tmp_path / "admin_token"
    secret.write_text(TOKEN + "\n")
    signing = tmp_path / "signing"
    signing.write_text("8f742231b10e8888abcd99yyyzzz85a5")
    settings = Settings.from_env({"RUNLOG_ADMIN_TOKEN_FILE": str(secret),
                                  "RUNLOG_SLACK_SIGNING_SECRET_FILE": str(signing)})
    assert settings.admin_token == TOKEN and settings.slack_signing_secret == "8f742231b10e8888abcd99yyyzzz85a5"


def test_secret_and_its_file_together_are_refused(tmp_path):
    secret = tmp_path / "t"
    secret.write_text(TOKEN)
    error = refused({"RUNLOG_ADMIN_TOKEN": TOKEN, "RUNLOG_ADMIN_TOKEN_FILE": str(secret)})
    assert error.variable == "RUNLOG_ADMIN_TOKEN" and "not both" in str(error)


def test_unreadable_or_bad_secret_file_names_the_file_variable(tmp_path):
    assert refused({"RUNLOG_SLACK_BOT_TOKEN_FILE": str(tmp_path / "missing")}).variable == "RUNLOG_SLACK_BOT_TOKEN_FILE"
    short = tmp_path / "short"
    short.write_text("abc\n")
    assert refused({"RUNLOG_ADMIN_TOKEN_FILE": str(short)}).variable == "RUNLOG_ADMIN_TOKEN_FILE"


def test_settings_are_frozen():
    settings = Settings()
    with pytest.raises(AttributeError):
        settings.port = 1  # type: ignore[misc]


def test_reads_the_process_environment_by_default(monkeypatch):
    monkeypatch.setenv("RUNLOG_PORT", "8123")
    assert Settings.from_env().port == 8123


def test_workers_default_to_one_per_available_core_and_can_be_set(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2})
    assert Settings.from_env({}).workers == 3 == Settings().workers
    assert Settings.from_env({"RUNLOG_WORKERS": "auto"}).workers == 3
    assert Settings.from_env({"RUNLOG_WORKERS": "1"}).workers == 1
    assert Settings.from_env({"RUNLOG_WORKERS": "12"}).workers == 12
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(32)))
    assert Settings.from_env({}).workers == 8  # auto stops at 8: the one writer is the limit beyond that


def test_loop_defaults_to_auto_and_can_be_set(monkeypatch):
    assert Settings.from_env({}).loop == "auto" == Settings().loop
    assert Settings.from_env({"RUNLOG_LOOP": "asyncio"}).loop == "asyncio"
    assert Settings.from_env({"RUNLOG_LOOP": " UVLOOP "}).loop == "uvloop"
    monkeypatch.setattr("appliance.settings.uvloop_installed", lambda: False)
    assert Settings.from_env({"RUNLOG_LOOP": "auto"}).loop == "auto"  # falls back to asyncio when serving
    error = refused({"RUNLOG_LOOP": "uvloop"})
    assert error.variable == "RUNLOG_LOOP" and "uvloop is not installed" in str(error)
