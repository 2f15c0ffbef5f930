from __future__ import annotations

from pathlib import Path

import pytest

from stigmer.credentials import ensure_token, rotate_stack_key
from stigmer.errors import ConfigError
from stigmer.settings import KEYS, ensure_config_file, resolve, write_config_file


def test_precedence_flag_env_config_default(tmp_path: Path) -> None:
    home = tmp_path / "h"
    home.mkdir()
    write_config_file(home / "config.yaml", {"server_port": 9001, "temporal_port": 9002})
    env = {"STIGMER_SERVER_PORT": "9101", "STIGMER_TEMPORAL_UI_PORT": "9103"}
    s = resolve(home, flags={"server_port": 9201}, env=env)
    assert (s.server_port, s.sources["server_port"]) == (9201, "flag")
    assert (s.temporal_ui_port, s.sources["temporal_ui_port"]) == (9103, "env")
    assert (s.temporal_port, s.sources["temporal_port"]) == (9002, "config")
    assert (s.temporal_namespace, s.sources["temporal_namespace"]) == ("default", "default")
    s2 = resolve(home, env=env)
    assert (s2.server_port, s2.sources["server_port"]) == (9101, "env")


def test_contract_env_names_and_defaults() -> None:
    names = {k.env: k.default for k in KEYS}
    assert names["STIGMER_SERVER_PORT"] == 7234
    assert names["STIGMER_TEMPORAL_PORT"] == 7233
    assert names["STIGMER_TEMPORAL_UI_PORT"] == 8233
    assert names["STIGMER_TEMPORAL_NAMESPACE"] == "default"
    assert names["STIGMER_RUNNER_MODE"] == "auto"
    assert "STIGMER_TEMPORAL_ADDRESS" in names


def test_home_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STIGMER_HOME", str(tmp_path / "x"))
    assert resolve().home == tmp_path / "x"
    assert resolve().temporal_managed
    monkeypatch.setenv("STIGMER_TEMPORAL_ADDRESS", "temporal.example:7233")
    assert not resolve().temporal_managed
    assert resolve().temporal_target == "temporal.example:7233"


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"STIGMER_SERVER_PORT": "abc"}, "server_port"),
        ({"STIGMER_SERVER_PORT": "70000"}, "server_port"),
        ({"STIGMER_RUNNER_MODE": "kubernetes"}, "auto, docker, local"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        resolve(tmp_path, env=env)
    assert needle in err.value.message + (err.value.fix or "")


def test_broken_config_file_gives_line_and_column(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("server_port: 1\n  bad: [\n")
    with pytest.raises(ConfigError) as err:
        resolve(tmp_path, env={})
    assert "config.yaml:" in err.value.message


def test_unknown_config_key(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("server_prot: 1\n")
    with pytest.raises(ConfigError) as err:
        resolve(tmp_path, env={})
    assert "server_prot (did you mean `server_port`?)" in err.value.message


def test_a_key_added_to_the_first_config_file_is_read(tmp_path: Path) -> None:
    """The file as first written holds no `{}`: a line added below it is valid YAML."""
    s = resolve(tmp_path, env={})
    ensure_config_file(s.paths)
    with s.paths.config.open("a") as f:
        f.write("server_port: 28234\n")
    assert resolve(tmp_path, env={}).server_port == 28234
    write_config_file(s.paths.config, {})  # `config unset` of the last key
    assert "{}" not in s.paths.config.read_text()
    # a file an earlier version wrote, with a key added below its `{}`: the fix says so
    s.paths.config.write_text("# header\n{}\nserver_port: 1\n")
    with pytest.raises(ConfigError) as err:
        resolve(tmp_path, env={})
    assert "Delete the line `{}`" in (err.value.fix or "")


def test_config_and_token_are_private(tmp_path: Path) -> None:
    s = resolve(tmp_path / "h", env={})
    assert ensure_config_file(s.paths) is True
    assert ensure_config_file(s.paths) is False
    assert s.paths.config.stat().st_mode & 0o777 == 0o600
    s.paths.ensure()
    token = ensure_token(s.paths.api_token)
    assert len(token) > 30
    assert ensure_token(s.paths.api_token) == token
    assert s.paths.api_token.stat().st_mode & 0o777 == 0o600


def test_long_home_socket_falls_back(tmp_path: Path) -> None:
    s = resolve(tmp_path / ("x" * 120), env={})
    assert len(str(s.paths.control_socket)) < 100


def test_registry_tag_follows_the_version() -> None:
    from stigmer.images.resolve import registry_tag, split_ref

    assert registry_tag("1.4.2") == ("v1.4.2", None)
    tag, note = registry_tag("0.2.0.dev3+g1a2b3c4")
    assert tag == "test-1a2b3c4" and note and "development build" in note
    assert registry_tag("0.2.0.dev0")[0] == "v0.2.0.dev0"
    assert split_ref("127.0.0.1:5000/x/agent-runner") == ("127.0.0.1:5000/x/agent-runner", "latest")
    assert split_ref("127.0.0.1:5000/x/agent-runner:v1") == ("127.0.0.1:5000/x/agent-runner", "v1")


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"STIGMER_START_TIMEOUT": "nan"}, "start_timeout"),
        ({"STIGMER_START_TIMEOUT": "0"}, "at least 1"),
        ({"STIGMER_STOP_GRACE": "-3"}, "at least 0"),
        ({"STIGMER_RESTART_LIMIT": "0"}, "at least 1"),
        ({"STIGMER_RUNNER_CONTAINER": "bad name/x"}, "runner_container"),
        ({"STIGMER_RUNNER_MEMORY": "lots"}, "runner_memory"),
        ({"STIGMER_RUNNER_IMAGE": "Bad Name!!"}, "runner_image"),
    ],
)
def test_values_are_checked_up_front(tmp_path: Path, env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        resolve(tmp_path, env=env)
    assert needle in err.value.message + (err.value.fix or "")


def test_null_and_non_utf8_config(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("temporal_namespace: null\n")
    with pytest.raises(ConfigError, match="empty"):
        resolve(tmp_path, env={})
    (tmp_path / "config.yaml").write_bytes(b"server_port: \xff\xfe\n")
    with pytest.raises(ConfigError, match="UTF-8"):
        resolve(tmp_path, env={})


def test_home_that_is_a_file(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        resolve(f, env={})


def test_managed_temporal_listens_on_loopback_with_low_latency_settings(tmp_path: Path) -> None:
    from stigmer.stack.temporal import ManagedTemporal

    settings = resolve(tmp_path / "home", env={})
    argv = ManagedTemporal(settings, probe=None).command()  # type: ignore[arg-type]
    assert argv[argv.index("--ip") + 1] == "127.0.0.1"
    assert argv[argv.index("--ui-ip") + 1] == "127.0.0.1"
    dynamic = {argv[i + 1] for i, a in enumerate(argv) if a == "--dynamic-config-value"}
    assert dynamic == {
        "system.enableActivityEagerExecution=true",
        "history.transferProcessorMaxPollRPS=1000",
        "limit.mutableStateActivityFailureSize.error=65536",
    }
    assert argv[argv.index("--sqlite-pragma") + 1] == "journal_mode=wal"


def test_stack_key_rotation_keeps_the_old_keys(tmp_path: Path) -> None:
    from stigmer.credentials import ensure_stack_key, read_stack_keys

    path = tmp_path / "credentials" / "stack-key.json"
    active, keys = ensure_stack_key(path)
    assert active == "k1" and path.stat().st_mode & 0o777 == 0o600
    assert rotate_stack_key(path) == "k2"
    found = read_stack_keys(path)
    assert found is not None
    assert found[0] == "k2" and found[1]["k1"] == keys["k1"] and set(found[1]) == {"k1", "k2"}
