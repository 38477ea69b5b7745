"""Configuration files are found, layered and overridden as documented; `emostream config`."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
from daemon_support import emostream_command

from streamer.config import Config, ConfigError, load_config
from streamer.config_paths import config_files, load_effective_config, parse_assignment, to_toml

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib


def emostream(*args: str, home: Path) -> subprocess.CompletedProcess:
    """The installed command, with ``home`` as the user's config home."""
    env = {**os.environ, "XDG_CONFIG_HOME": str(home)}
    return subprocess.run(
        [*emostream_command(), *args], capture_output=True, text=True, env=env, timeout=60
    )


def user_file(home: Path, text: str) -> Path:
    path = home / "emostream" / "emostream.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_config_prints_toml_that_reads_back_to_the_effective_settings(tmp_path):
    user_file(tmp_path, "[pipeline]\nhop_seconds = 0.25\nmodels = ['cnn']\n")
    result = emostream("config", home=tmp_path)
    assert result.returncode == 0, result.stderr
    printed = tmp_path / "printed.toml"
    printed.write_text(result.stdout)
    settings = load_config(printed, {})
    assert settings.pipeline.hop_seconds == 0.25
    assert settings.pipeline.models == ("cnn",)
    assert settings.source == Config().source
    assert str(tmp_path / "emostream" / "emostream.toml") in result.stdout.splitlines()[0]


def test_every_setting_is_printed(tmp_path):
    printed = tomllib.loads(emostream("config", home=tmp_path).stdout)
    defaults = Config()
    assert set(printed) == {field.name for field in dataclasses.fields(defaults)}
    for section, keys in printed.items():
        assert set(keys) == {field.name for field in dataclasses.fields(getattr(defaults, section))}
    assert printed["publish"]["bind"] == "tcp://127.0.0.1:5556"


def test_the_user_file_overrides_the_system_file_key_by_key(tmp_path, monkeypatch):
    system = tmp_path / "etc.toml"
    system.write_text("[pipeline]\nhop_seconds = 1.0\nsmoothing = 0.8\n")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    user = user_file(tmp_path, "[pipeline]\nhop_seconds = 0.25\n")
    effective = load_effective_config(None, {}, system=system)
    assert effective.files == (system, user)
    assert effective.config.pipeline.hop_seconds == 0.25
    assert effective.config.pipeline.smoothing == 0.8


def test_command_line_overrides_beat_every_file(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    user_file(tmp_path, "[publish]\nbind = 'tcp://127.0.0.1:7000'\n")
    effective = load_effective_config(
        None, {"publish": {"bind": "ipc:///tmp/x.sock"}}, system=tmp_path / "none.toml"
    )
    assert effective.config.publish.bind == "ipc:///tmp/x.sock"


def test_an_explicit_config_file_is_read_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    user_file(tmp_path, "[pipeline]\nhop_seconds = 0.25\n")
    explicit = tmp_path / "explicit.toml"
    explicit.write_text("[pipeline]\nsmoothing = 0.9\n")
    effective = load_effective_config(explicit, {})
    assert effective.files == (explicit,)
    assert effective.config.pipeline.hop_seconds == 0.5
    assert effective.config.pipeline.smoothing == 0.9


def test_missing_files_are_optional_unless_named(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert config_files(None, system=tmp_path / "absent.toml") == []
    with pytest.raises(ConfigError, match="absent.toml: config file not found"):
        config_files(tmp_path / "absent.toml")


def test_set_overrides_the_file_and_reads_toml_values(tmp_path):
    user_file(tmp_path, "[pipeline]\nhop_seconds = 0.25\n")
    result = emostream(
        "config",
        "--set",
        "pipeline.hop_seconds=1.0",
        "--set",
        "source.source=mic:USB",
        "--set",
        "pipeline.models=['lstm']",
        home=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    printed = tomllib.loads(result.stdout)
    assert printed["pipeline"]["hop_seconds"] == 1.0
    assert printed["source"]["source"] == "mic:USB"
    assert printed["pipeline"]["models"] == ["lstm"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[pipeline]\nhop_secs = 0.5\n", "unknown config key 'pipeline.hop_secs'"),
        ("[pipeline]\nhop_seconds = 'fast'\n", "config key 'pipeline.hop_seconds'"),
        ("[publish]\nbind = 'udp://x'\n", "config key 'publish.bind'"),
        ("[daemon]\nx = 1\n", "unknown config section 'daemon'"),
        ("[pipeline\n", "invalid TOML"),
    ],
)
def test_a_bad_user_file_is_a_one_line_error_naming_file_and_key(tmp_path, text, message):
    path = user_file(tmp_path, text)
    result = emostream("config", home=tmp_path)
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(path) in lines[0] and message in lines[0]


def test_a_bad_set_option_names_the_key(tmp_path):
    result = emostream("config", "--set", "pipeline.smooth=0.5", home=tmp_path)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == ["Error: unknown config key 'pipeline.smooth'"]
    with pytest.raises(ConfigError, match="not SECTION.KEY=VALUE"):
        parse_assignment("hop_seconds=0.5")


def test_a_missing_config_file_is_named(tmp_path):
    result = emostream("config", "--config", str(tmp_path / "nope.toml"), home=tmp_path)
    assert result.returncode != 0
    assert result.stderr.strip() == f"Error: {tmp_path / 'nope.toml'}: config file not found"


def test_to_toml_round_trips_every_default():
    path_text = to_toml(Config())
    assert load_config(None, tomllib.loads(path_text)) == Config()


@pytest.mark.parametrize("command", ["serve", "classify", "monitor"])
def test_every_command_reads_the_user_file(tmp_path, command):
    path = user_file(tmp_path, "[publish]\nbnd = 'tcp://127.0.0.1:5556'\n")
    arguments = [command, "tests/data/03a01Wa.wav"] if command == "classify" else [command]
    result = emostream(*arguments, home=tmp_path)
    assert result.returncode != 0
    assert result.stderr.strip() == f"Error: {path}: unknown config key 'publish.bnd'"


@pytest.mark.parametrize(("word", "models"), [("cnn", ["cnn"]), ("lstm", ["lstm"])])
def test_flags_and_set_assignments_reach_the_settings_config_prints(tmp_path, word, models):
    from click.testing import CliRunner

    from streamer.cli import main

    empty = tmp_path / "emostream.toml"
    empty.write_text("")
    arguments = ["config", "--config", str(empty), "--model", word]
    result = CliRunner().invoke(main, [*arguments, "--set", "pipeline.hop_seconds=1"])
    assert result.exit_code == 0, result.output
    printed = tomllib.loads(result.output)
    assert printed["pipeline"]["models"] == models
    assert printed["pipeline"]["hop_seconds"] == 1.0
    refused = CliRunner().invoke(main, [*arguments, "--set", "pipeline.hop=1"])
    assert refused.exit_code == 1
    assert refused.output.strip() == "Error: unknown config key 'pipeline.hop'"
