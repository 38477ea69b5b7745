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
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes(b"[publish]\ndevice = 'K\xfcche'\n")
    with pytest.raises(ConfigError, match="latin1.toml: config file is not UTF-8"):
        load_config(latin1, {})


def test_a_section_that_is_not_a_table_is_named(tmp_path):
    path = tmp_path / "flat.toml"
    path.write_text("pipeline = 0.5\n")
    with pytest.raises(ConfigError, match="section 'pipeline' must be a table"):
        load_config(path, {})


def test_every_setting_has_a_docstring_for_its_flag_help():
    for section, cls in SECTIONS.items():
        docs = setting_docs(cls)
        for setting in dataclasses.fields(cls):
            assert docs.get(setting.name), f"{section}.{setting.name}: no docstring"


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        PipelineConfig().hop_seconds = 1.0  # type: ignore[misc]


# Each limit of every section: the value just inside is taken, the one just outside is refused
# in one line that names the key, states the rule (with its bounds) and shows the value given
# (a limit off by one, a flipped test or a rule naming the wrong bound fails one of the two).
_DEVICE_RULE = 'must be letters, digits, "-", "_" or "." (at most 64), as it names MQTT topics'
_TOPIC_RULE = 'must be topic levels separated by "/", without "+" or "#"'
_BROKER_RULE = (
    "must be mqtt://HOST[:PORT] or mqtts://HOST[:PORT] (credentials go in mqtt.username and "
    "mqtt.password_file)"
)
LIMITS = [
    ("source", "source", "mic:USB", "", "must not be empty"),
    ("source", "block_size", 16, 15, "must be at least 16 samples"),
    ("source", "device_rate", 0, -1, "must be 0 or a rate in hertz"),
    ("source", "ring_seconds", 1.0, 0.9, "must be at least 1 second"),
    ("source", "retry_max_seconds", 0.01, 0.0, "must be positive"),
    ("source", "latency_seconds", 2.0, 2.01, "must be in (0, 2]"),
    ("source", "latency_seconds", 0.01, 0.0, "must be in (0, 2]"),
    ("pipeline", "models", ("lstm",), (), "must name at least one model"),
    ("pipeline", "models", ("cnn",), ("rnn", "gru"), "unknown model ['rnn']"),
    ("pipeline", "hop_seconds", 0.01, 0.0, "must be positive"),
    ("pipeline", "speech_threshold", 0.01, 0.0, "must be in (0, 1)"),
    ("pipeline", "speech_threshold", 0.99, 1.0, "must be in (0, 1)"),
    ("pipeline", "min_speech_seconds", 0.0, -0.01, "must be >= 0"),
    ("pipeline", "smoothing", 1.0, 1.01, "must be in (0, 1]"),
    ("pipeline", "smoothing", 0.01, 0.0, "must be in (0, 1]"),
    ("pipeline", "hysteresis", 0.0, -0.01, "must be in [0, 1)"),
    ("pipeline", "hysteresis", 0.99, 1.0, "must be in [0, 1)"),
    ("pipeline", "confidence_threshold", 0.0, -0.01, "must be in [0, 1)"),
    ("pipeline", "confidence_threshold", 0.99, 1.0, "must be in [0, 1)"),
    ("publish", "send_hwm", 1, 0, "must be at least 1"),
    ("publish", "status_seconds", 0.01, 0.0, "must be positive"),
    ("publish", "wait_for_subscriber", 0.0, -0.1, "must be >= 0"),
    (
        "publish",
        "bind",
        "ipc:///run/e.sock",
        "udp://127.0.0.1:5556",
        "must start with tcp:// or ipc://",
    ),
    ("publish", "device", "kitchen-2.b_c", "kitchen/2", _DEVICE_RULE),
    ("mqtt", "offline_after", 0.01, 0.0, "must be positive"),
    ("mqtt", "keepalive_seconds", 5, 4, "must be at least 5"),
    ("mqtt", "retry_max_seconds", 1.0, 0.9, "must be at least 1"),
    ("mqtt", "connect_timeout", 0.01, 0.0, "must be positive"),
    ("mqtt", "max_unsent", 1, 0, "must be at least 1"),
    ("mqtt", "topic_prefix", "Lab-X/emotions", "home/#", _TOPIC_RULE),
    ("mqtt", "topic_prefix", "home/emotions", "home//emotions", _TOPIC_RULE),
    ("mqtt", "discovery_prefix", "", "ha/+", _TOPIC_RULE),
    ("mqtt", "broker", "mqtts://broker.lan", "http://broker.lan", _BROKER_RULE),
    ("mqtt", "broker", "mqtt://broker.lan:1884", "mqtt://broker.lan:99999", _BROKER_RULE),
    ("adaptation", "memory_seconds", 1.0, 0.99, "must be at least 1 second"),
    ("adaptation", "prior_seconds", 0.01, 0.0, "must be positive"),
    ("adaptation", "save_seconds", 0.01, 0.0, "must be positive"),
]


@pytest.mark.parametrize(("section", "key", "inside", "outside", "rule"), LIMITS)
def test_each_limit_takes_the_value_inside_and_refuses_the_one_outside_saying_why(
    section, key, inside, outside, rule
):
    assert getattr(getattr(load_config(None, {section: {key: inside}}), section), key) == inside
    with pytest.raises(ConfigError) as refused:
        load_config(None, {section: {key: outside}})
    assert str(refused.value) == f"config key '{section}.{key}' {rule} (got {outside!r})"


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
