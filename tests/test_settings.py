"""Settings come from defaults, then a TOML file, then overrides; bad keys are named."""

from __future__ import annotations

import dataclasses
import re
import socket
from pathlib import Path

import pytest

from streamer.config import (
    SECTIONS,
    Config,
    ConfigError,
    PipelineConfig,
    PublishConfig,
    SourceConfig,
    load_config,
    setting_docs,
)
from streamer.models import MODEL_NAMES


def test_defaults_publish_on_loopback_with_both_models_every_half_second():
    config = load_config(None, {})
    assert config == Config()
    assert config.publish.bind == "tcp://127.0.0.1:5556"
    assert config.pipeline.models == MODEL_NAMES and config.pipeline.hop_seconds == 0.5


def test_the_file_may_spell_values_as_toml_writes_them(tmp_path):
    path = tmp_path / "emostream.toml"
    path.write_text(
        '[pipeline]\nmodels = "lstm , cnn"\nhop_seconds = 1\n'
        '[publish]\ncurve_secret_key = ""\ncurve_clients = ""\n'
    )
    config = load_config(path, {})
    assert config.pipeline.models == ("lstm", "cnn")
    assert config.pipeline.hop_seconds == 1.0 and isinstance(config.pipeline.hop_seconds, float)
    assert config.publish.curve_secret_key is None and config.publish.curve_clients is None
    keys = {"curve_secret_key": "/etc/k/server.key_secret", "curve_clients": "/etc/k/clients"}
    config = load_config(path, {"publish": keys})
    assert config.publish.curve_clients == Path("/etc/k/clients")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("[source]\nblock_size = true", "config key 'source.block_size': expected int, got True"),
        ("[source]\nblock_size = 1.5", "config key 'source.block_size': expected int, got 1.5"),
        ("[source]\nfast = 1", "config key 'source.fast': expected bool, got 1"),
        ("[pipeline]\nhop_seconds = false", "'pipeline.hop_seconds': expected float, got False"),
        ("[pipeline]\nmodels = [1]", "config key 'pipeline.models': expected tuple"),
        ("[publish]\ncurve_clients = 5", "config key 'publish.curve_clients': expected Path"),
    ],
)
def test_a_value_of_the_wrong_type_is_refused_naming_key_type_and_value(tmp_path, line, message):
    path = tmp_path / "emostream.toml"
    path.write_text(line + "\n")
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(path, {})


def test_the_file_overrides_defaults_and_overrides_override_the_file(tmp_path):
    path = tmp_path / "emostream.toml"
    path.write_text(
        '[pipeline]\nhop_seconds = 1\nmodels = ["cnn"]\nmodel_dir = "/srv/models"\n'
        '[publish]\nbind = "ipc:///run/emostream.sock"\n'
    )
    config = load_config(path, {"pipeline": {"hop_seconds": 0.25}})
    assert config.pipeline.hop_seconds == 0.25
    assert config.pipeline.models == ("cnn",)
    assert config.pipeline.model_dir == Path("/srv/models")
    assert config.publish.bind == "ipc:///run/emostream.sock"
    assert config.source == SourceConfig()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"pipeline": {"hop": 0.5}}, "unknown config key 'pipeline.hop'"),
        ({"pipelines": {}}, "unknown config section 'pipelines'"),
        ({"pipeline": {"hop_seconds": "fast"}}, "'pipeline.hop_seconds': expected float"),
        ({"pipeline": {"smoothing": 0}}, "'pipeline.smoothing' must be in"),
        ({"pipeline": {"models": ["rnn"]}}, "'pipeline.models' unknown model"),
        ({"source": {"fast": "yes"}}, "'source.fast': expected bool"),
        ({"publish": {"bind": "udp://1.2.3.4:5"}}, "'publish.bind' must start with"),
        ({"publish": {"device": "living room"}}, "'publish.device' must be letters, digits"),
        ({"mqtt": {"broker": "http://pi:1883"}}, "'mqtt.broker' must be mqtt://HOST"),
        ({"mqtt": {"password_file": "/etc/pw"}}, "'mqtt.password_file' needs mqtt.username"),
        ({"mqtt": {"topic_prefix": "emo/#"}}, "'mqtt.topic_prefix' must be topic levels"),
    ],
)
def test_an_invalid_setting_is_one_line_naming_its_key(overrides, message):
    with pytest.raises(ConfigError, match=message) as raised:
        load_config(None, overrides)
    assert "\n" not in str(raised.value)


def test_the_device_is_named_after_the_host_unless_configured():
    assert PublishConfig().device_name == socket.gethostname()
    assert load_config(None, {"publish": {"device": "kitchen-pi"}}).publish.device_name == (
        "kitchen-pi"
    )


def test_a_broken_file_is_named(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[pipeline\n")
    with pytest.raises(ConfigError, match="bad.toml: invalid TOML"):
        load_config(path, {})
    with pytest.raises(ConfigError, match="missing.toml: cannot read"):
        load_config(tmp_path / "missing.toml", {})


def test_every_setting_has_a_docstring_for_its_flag_help():
    for section, cls in SECTIONS.items():
        docs = setting_docs(cls)
        for setting in dataclasses.fields(cls):
            assert docs.get(setting.name), f"{section}.{setting.name}: no docstring"


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        PipelineConfig().hop_seconds = 1.0  # type: ignore[misc]
