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


# Each limit of [publish] and [mqtt]: the value just inside is taken, the one just outside is
# refused with the key named (a limit off by one, or a flipped test, fails one of the two).
LIMITS = [
    ("source", "source", "mic:USB", "", "must not be empty"),
    ("source", "block_size", 16, 15, "must be at least 16 samples"),
    ("source", "device_rate", 0, -1, "must be 0 or a rate in hertz"),
    ("source", "ring_seconds", 1.0, 0.9, "must be at least 1 second"),
    ("source", "retry_max_seconds", 0.01, 0.0, "must be positive"),
    ("source", "latency_seconds", 2.0, 2.01, "must be in (0, 2]"),
    ("source", "latency_seconds", 0.01, 0.0, "must be in (0, 2]"),
    ("publish", "send_hwm", 1, 0, "must be at least 1"),
    ("publish", "status_seconds", 0.01, 0.0, "must be positive"),
    ("publish", "wait_for_subscriber", 0.0, -0.1, "must be >= 0"),
    ("publish", "bind", "ipc:///run/e.sock", "udp://127.0.0.1:5556", "must start with tcp://"),
    ("publish", "device", "kitchen-2.b_c", "kitchen/2", "must be letters, digits"),
    ("mqtt", "offline_after", 0.01, 0.0, "must be positive"),
    ("mqtt", "keepalive_seconds", 5, 4, "must be at least 5"),
    ("mqtt", "retry_max_seconds", 1.0, 0.9, "must be at least 1"),
    ("mqtt", "connect_timeout", 0.01, 0.0, "must be positive"),
    ("mqtt", "max_unsent", 1, 0, "must be at least 1"),
    ("mqtt", "topic_prefix", "home/emotions", "home/#", "without"),
    ("mqtt", "topic_prefix", "home/emotions", "home//emotions", "without"),
    ("mqtt", "discovery_prefix", "", "ha/+", "without"),
    ("mqtt", "broker", "mqtts://broker.lan", "http://broker.lan", "must be mqtt://"),
    ("mqtt", "broker", "mqtt://broker.lan:1884", "mqtt://broker.lan:99999", "must be mqtt://"),
]


@pytest.mark.parametrize(("section", "key", "inside", "outside", "problem"), LIMITS)
def test_each_limit_takes_the_value_inside_and_names_the_key_of_one_outside(
    section, key, inside, outside, problem
):
    assert getattr(getattr(load_config(None, {section: {key: inside}}), section), key) == inside
    with pytest.raises(ConfigError, match=f"'{section}.{key}'.*{re.escape(problem)}"):
        load_config(None, {section: {key: outside}})


@pytest.mark.parametrize(
    ("section", "given", "key", "problem"),
    [
        ("publish", {"curve_clients": "/k/clients"}, "curve_clients", "curve_secret_key"),
        ("publish", {"curve_secret_key": "/k/s.key_secret"}, "curve_clients", "curve_secret_key"),
        ("mqtt", {"curve_secret_key": "/k/b.key_secret"}, "curve_server_key", "curve_secret_key"),
        ("mqtt", {"curve_server_key": "/k/server.key"}, "curve_server_key", "curve_secret_key"),
        ("mqtt", {"password_file": "/k/password"}, "password_file", "needs mqtt.username"),
    ],
)
def test_settings_that_only_work_together_are_refused_alone(section, given, key, problem):
    with pytest.raises(ConfigError, match=f"'{section}.{key}'.*{re.escape(problem)}"):
        load_config(None, {section: given})


def test_settings_that_work_together_are_taken_together():
    keys = {"curve_secret_key": "/k/s.key_secret", "curve_clients": "/k/clients"}
    assert load_config(None, {"publish": keys}).publish.curve_clients == Path("/k/clients")
    bridge = {"curve_secret_key": "/k/b.key_secret", "curve_server_key": "/k/server.key"}
    login = {"username": "emostream", "password_file": "/k/password"}
    mqtt = load_config(None, {"mqtt": {**bridge, **login}}).mqtt
    assert (str(mqtt.curve_server_key), str(mqtt.password_file)) == ("/k/server.key", "/k/password")
