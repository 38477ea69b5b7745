"""Settings of the daemon: one frozen dataclass per subsystem, built once.

Values come from the defaults here, then TOML files, then command-line flags, each overriding
the one before. Only this module turns outside values into settings, so every unknown key and
every invalid value is reported the same way: one line naming the key.

Adding a setting: add a field with its type, its default and a one-line docstring right below it
to one of the dataclasses. That is all: the field is read from ``[section] name = value`` in the
TOML file, printed by ``emostream config``, and every command taking that section gets a flag
``--name-with-dashes`` whose type, help (the docstring) and shown default come from the field
(``streamer.cli.options``; booleans get ``--name/--no-name``). Only where a flag's name must
differ from the field's, give ``metadata=flag("--short", "--long")``; validate the value in the
class's ``__post_init__`` with ``_require``, so the error names ``section.key``.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import re
import socket
import sys
import types
import typing
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from streamer.shipped import DEFAULT_MODEL_DIR, MODEL_NAMES
from streamer.wire import DEFAULT_ADDRESS

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib


DEVICE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
"""A device name: one MQTT topic level without wildcards, and readable in a table."""


class ConfigError(Exception):
    """A setting is unknown or invalid; the message names it as ``section.key``."""


def flag(*names: str, values: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Field metadata naming a setting's command-line flag, where ``--field-name`` won't do.

    ``names`` are the flag's spellings (the first one shown in help); ``values`` maps words the
    flag accepts to the field values they stand for (``--model both``).
    """
    return {"flags": names, "values": dict(values or {})}


@dataclass(frozen=True)
class SourceConfig:
    """Where audio comes from and how it is captured."""

    section: ClassVar[str] = "source"

    source: str = "mic"
    """"mic" (default input device), "mic:NAME_OR_INDEX", or the path of an audio file."""
    fast: bool = False
    """Read a file source as fast as possible instead of in real time."""
    loop: bool = False
    """Start a file source over at its end instead of stopping (demos, soak tests)."""
    block_size: int = 1024
    """Samples per capture block, at the device rate (file sources: at the models' rate)."""
    device_rate: int = 0
    """Rate asked of the microphone (hertz); 0 means the models' rate when the device offers
    it, else the device's default rate, resampled to the models' rate."""
    ring_seconds: float = 10.0
    """Audio the capture ring buffer holds before the oldest unread samples are overwritten."""
    retry_max_seconds: float = 10.0
    """Longest wait between attempts to reopen a microphone that vanished."""
    latency_seconds: float = 0.1
    """Input latency asked of the sound system (seconds): PortAudio's own "high" default made
    PulseAudio deliver in bursts over a second apart; raise it if a busy CPU causes overflows."""

    def __post_init__(self) -> None:
        _require(self, "source", bool(self.source), "must not be empty")
        _require(self, "block_size", self.block_size >= 16, "must be at least 16 samples")
        _require(self, "device_rate", self.device_rate >= 0, "must be 0 or a rate in hertz")
        _require(self, "ring_seconds", self.ring_seconds >= 1.0, "must be at least 1 second")
        _require(self, "retry_max_seconds", self.retry_max_seconds > 0, "must be positive")
        _require(self, "latency_seconds", 0 < self.latency_seconds <= 2, "must be in (0, 2]")


@dataclass(frozen=True)
class PipelineConfig:
    """Which models run, how often, and how their outputs become a published label."""

    section: ClassVar[str] = "pipeline"

    models: tuple[str, ...] = field(
        default=MODEL_NAMES,
        metadata=flag(
            "--model", values={"all": MODEL_NAMES, **{name: (name,) for name in MODEL_NAMES}}
        ),
    )
    """Models to run on every window ("cnn", "lstm", "functionals" or all); with several,
    their probabilities are averaged into the published label."""
    model_dir: Path = field(default=DEFAULT_MODEL_DIR, metadata=flag("--models-dir", "--model-dir"))
    """Directory holding NAME.tflite and NAME.json for each model."""
    hop_seconds: float = field(default=0.5, metadata=flag("--hop", "--hop-seconds"))
    """Time between window starts (seconds); a whole number of feature frames."""
    speech_threshold: float = 0.2
    """Speech probability (from the voice-activity detector) at or above which a 32 ms frame
    counts as speech; low, because a voice at -45 dBFS peak scores little more (the defaults
    are chosen by benchmarks/vad_compare.py)."""
    min_speech_seconds: float = 0.5
    """Speech a window needs to be classified rather than published as no speech (seconds)."""
    smoothing: float = 0.5
    """Weight of the newest window in the exponential moving average of probabilities
    (1 disables smoothing)."""
    hysteresis: float = 0.1
    """Probability margin by which a new label must beat the current one to replace it."""
    confidence_threshold: float = 0.35
    """Smoothed probability below which the label is published as null (unsure)."""

    def __post_init__(self) -> None:
        unknown = [name for name in self.models if name not in MODEL_NAMES]
        _require(self, "models", not unknown, f"unknown model {unknown[:1]}")
        _require(self, "models", bool(self.models), "must name at least one model")
        _require(self, "hop_seconds", self.hop_seconds > 0, "must be positive")
        _require(self, "speech_threshold", 0 < self.speech_threshold < 1, "must be in (0, 1)")
        _require(self, "min_speech_seconds", self.min_speech_seconds >= 0, "must be >= 0")
        _require(self, "smoothing", 0 < self.smoothing <= 1, "must be in (0, 1]")
        _require(self, "hysteresis", 0 <= self.hysteresis < 1, "must be in [0, 1)")
        _require(
            self, "confidence_threshold", 0 <= self.confidence_threshold < 1, "must be in [0, 1)"
        )


@dataclass(frozen=True)
class PublishConfig:
    """The ZeroMQ socket results leave through."""

    section: ClassVar[str] = "publish"

    bind: str = DEFAULT_ADDRESS
    """Address the PUB socket binds (tcp:// or ipc://); loopback unless widened on purpose."""
    send_hwm: int = 100
    """Messages queued per subscriber; beyond it a slow subscriber loses messages, capture never
    waits."""
    status_seconds: float = 2.0
    """Interval between status messages (seconds)."""
    echo: bool = False
    """Also print each published label to standard output as a readable line."""
    wait_for_subscriber: float = field(
        default=0.0, metadata=flag("--wait-subscriber", "--wait-for-subscriber")
    )
    """Seconds to wait for a first subscriber before reading the source (0: do not wait); with
    --fast, the first messages would otherwise leave before anyone listens."""
    curve_secret_key: Path | None = field(
        default=None, metadata=flag("--curve-secret", "--curve-secret-key")
    )
    """This server's key pair file (NAME.key_secret from `emostream keygen`): encrypts with
    CURVE; unset (or "") publishes in plain text."""
    curve_clients: Path | None = None
    """Directory of the public keys (NAME.key) of the clients allowed to subscribe, read at
    start; required with curve_secret_key."""
    insecure: bool = False
    """Allow binding a non-loopback address without CURVE keys: anyone who can reach it may
    subscribe and read the stream."""
    device: str = ""
    """Name of this device in every message and MQTT topic (letters, digits, "-", "_", ".");
    "" uses the host name."""

    def __post_init__(self) -> None:
        _require(
            self,
            "device",
            self.device == "" or DEVICE_NAME.fullmatch(self.device) is not None,
            'must be letters, digits, "-", "_" or "." (at most 64), as it names MQTT topics',
        )
        _require(
            self,
            "bind",
            self.bind.startswith(("tcp://", "ipc://")),
            "must start with tcp:// or ipc://",
        )
        _require(self, "send_hwm", self.send_hwm >= 1, "must be at least 1")
        _require(self, "status_seconds", self.status_seconds > 0, "must be positive")
        _require(self, "wait_for_subscriber", self.wait_for_subscriber >= 0, "must be >= 0")
        _require(
            self,
            "curve_clients",
            (self.curve_clients is None) == (self.curve_secret_key is None),
            "and publish.curve_secret_key must be given together",
        )

    @property
    def device_name(self) -> str:
        """``device``, or this machine's host name made fit for a topic when it is ""."""
        if self.device:
            return self.device
        return re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:64] or "emostream"


@dataclass(frozen=True)
class BrokerEndpoint:
    """Where an MQTT broker listens, from its URL."""

    host: str
    """Host name or address."""
    port: int
    """TCP port (1883 for mqtt://, 8883 for mqtts:// unless the URL gives one)."""
    tls: bool
    """Whether the connection is encrypted (mqtts://)."""


@dataclass(frozen=True)
class MqttConfig:
    """The MQTT broker that `emostream mqtt` publishes to and `monitor mqtt://` reads."""

    section: ClassVar[str] = "mqtt"

    broker: str = "mqtt://127.0.0.1:1883"
    """Broker URL: mqtt://HOST[:PORT] (port 1883) or mqtts://HOST[:PORT] (TLS, port 8883)."""
    ca_file: Path | None = None
    """CA certificates (PEM) an mqtts:// broker's certificate must be signed by; unset (or "")
    trusts the system's."""
    username: str = ""
    """User name for the broker; "" connects anonymously."""
    password_file: Path | None = None
    """File whose first line is the broker password (kept off the command line and out of
    this file)."""
    client_id: str = ""
    """MQTT client id; "" is emostream-mqtt-DEVICE (a broker drops the older of two clients
    sharing an id)."""
    topic_prefix: str = "emostream"
    """First level of every topic: PREFIX/DEVICE/emotion, /state, /status, /availability."""
    discovery_prefix: str = "homeassistant"
    """Home Assistant's MQTT discovery prefix; "" publishes no discovery."""
    daemon: str = ""
    """Address of the daemon whose stream the bridge passes on; "" is the local daemon
    ([publish] bind)."""
    curve_secret_key: Path | None = field(
        default=None, metadata=flag("--curve-secret", "--curve-secret-key")
    )
    """The bridge's own key pair file (NAME.key_secret), for a daemon that publishes with
    CURVE."""
    curve_server_key: Path | None = field(
        default=None, metadata=flag("--curve-server", "--curve-server-key")
    )
    """The daemon's public key file (NAME.key); required with curve_secret_key."""
    offline_after: float = 6.0
    """Seconds without a message from the daemon after which the device is offline (the
    daemon sends a status every 2 s)."""
    keepalive_seconds: int = 30
    """MQTT keep-alive; the broker publishes the bridge's last will ("offline") after 1.5
    times this without a word from it."""
    retry_max_seconds: float = 30.0
    """Longest wait between attempts to reconnect to a broker that went away."""
    connect_timeout: float = 10.0
    """Seconds to wait for the broker at start before giving up (exit status 1)."""
    max_unsent: int = 100
    """Messages handed to the network but not yet sent beyond which new ones are dropped
    (counted in the log) instead of queued."""

    def __post_init__(self) -> None:
        self.endpoint  # noqa: B018 - validates the URL
        for key in ("topic_prefix", "discovery_prefix"):
            value = getattr(self, key)
            fits = all(part and not set(part) & set("+#") for part in value.split("/"))
            _require(self, key, fits or (key == "discovery_prefix" and value == ""), _TOPIC_RULE)
        _require(
            self,
            "curve_server_key",
            (self.curve_server_key is None) == (self.curve_secret_key is None),
            "and mqtt.curve_secret_key must be given together",
        )
        _require(
            self,
            "password_file",
            bool(self.username) or self.password_file is None,
            "needs mqtt.username",
        )
        _require(self, "offline_after", self.offline_after > 0, "must be positive")
        _require(self, "keepalive_seconds", self.keepalive_seconds >= 5, "must be at least 5")
        _require(self, "retry_max_seconds", self.retry_max_seconds >= 1, "must be at least 1")
        _require(self, "connect_timeout", self.connect_timeout > 0, "must be positive")
        _require(self, "max_unsent", self.max_unsent >= 1, "must be at least 1")

    @property
    def endpoint(self) -> BrokerEndpoint:
        """Host, port and TLS from ``broker``; ConfigError naming the key when it is no URL."""
        url = urllib.parse.urlsplit(self.broker)
        tls = url.scheme == "mqtts"
        try:
            port = url.port or (8883 if tls else 1883)
        except ValueError:
            port = 0
        valid = (
            url.scheme in ("mqtt", "mqtts")
            and bool(url.hostname)
            and port > 0
            and url.path in ("", "/")
            and not url.username
        )
        _require(self, "broker", valid, _BROKER_RULE)
        return BrokerEndpoint(str(url.hostname), port, tls)


_TOPIC_RULE = 'must be topic levels separated by "/", without "+" or "#"'
_BROKER_RULE = (
    "must be mqtt://HOST[:PORT] or mqtts://HOST[:PORT] (credentials go in mqtt.username and "
    "mqtt.password_file)"
)


@dataclass(frozen=True)
class AdaptationConfig:
    """Adaptation to the voice and microphone: running statistics of the speech heard."""

    section: ClassVar[str] = "adaptation"

    enabled: bool = field(default=True, metadata=flag("--adapt"))
    """Standardise features with running statistics of the speech heard (false: always with
    the training statistics, as for a voice never heard)."""
    memory_seconds: float = 600.0
    """Speech the running statistics remember (seconds); older speech fades out."""
    prior_seconds: float = 30.0
    """Weight of the training statistics at the start, as seconds of speech."""
    state_file: str = ""
    """Where the statistics persist across restarts (only statistics, never audio); "" means
    $STATE_DIRECTORY/adaptation.json under systemd, else
    $XDG_STATE_HOME/emostream/adaptation.json."""
    save_seconds: float = 60.0
    """Interval between saves of the statistics while adapting (seconds); also saved at exit."""

    def __post_init__(self) -> None:
        _require(self, "memory_seconds", self.memory_seconds >= 1.0, "must be at least 1 second")
        _require(self, "prior_seconds", self.prior_seconds > 0, "must be positive")
        _require(self, "save_seconds", self.save_seconds > 0, "must be positive")


@dataclass(frozen=True)
class Config:
    """All settings of the daemon."""

    source: SourceConfig = field(default_factory=SourceConfig)
    """Audio capture."""
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    """Features, models, gate and smoothing."""
    publish: PublishConfig = field(default_factory=PublishConfig)
    """ZeroMQ publishing."""
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    """The MQTT bridge and fleet monitor."""
    adaptation: AdaptationConfig = field(default_factory=AdaptationConfig)
    """Adaptation to the voice and the microphone."""


SECTIONS: dict[str, type] = {
    SourceConfig.section: SourceConfig,
    PipelineConfig.section: PipelineConfig,
    PublishConfig.section: PublishConfig,
    MqttConfig.section: MqttConfig,
    AdaptationConfig.section: AdaptationConfig,
}
"""Each settings class by its TOML section name, which is also its attribute of ``Config``."""


def read_toml(path: Path) -> dict[str, Any]:
    """The TOML file at ``path`` as a dict; ConfigError naming the file if it cannot be."""
    try:
        return tomllib.loads(Path(path).read_text())
    except OSError as error:
        raise ConfigError(f"{path}: cannot read config file ({error.strerror})") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: config file is not UTF-8 text ({error.reason})") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: invalid TOML ({error})") from None


def override(config: Config, table: Mapping[str, Any]) -> Config:
    """``config`` with the values of ``table``, shaped as the file: ``{section: {key: value}}``.

    Each value is converted to its field's type; each section is replaced at once, so settings
    that must come together (the CURVE keys) may. Raises ConfigError naming the key.
    """
    sections: dict[str, Any] = {}
    for section, keys in table.items():
        if section not in SECTIONS:
            raise ConfigError(f"unknown config section {section!r}")
        if not isinstance(keys, Mapping):
            raise ConfigError(f"config section {section!r} must be a table of keys")
        cls = SECTIONS[section]
        hints = typing.get_type_hints(cls)
        known = {setting.name for setting in dataclasses.fields(cls)}
        converted: dict[str, Any] = {}
        for key, value in keys.items():
            if key not in known:
                raise ConfigError(f"unknown config key '{section}.{key}'")
            converted[key] = _convert(f"{section}.{key}", hints[key], value)
        sections[section] = dataclasses.replace(getattr(config, section), **converted)
    return dataclasses.replace(config, **sections)


def load_config(path: Path | None, overrides: Mapping[str, Any]) -> Config:
    """Settings from the defaults, then the TOML file at ``path`` (if any), then ``overrides``.

    ``overrides`` is shaped as the file (``{"pipeline": {"hop_seconds": 0.25}}``). Raises
    ConfigError naming the file or the key.
    """
    config = Config() if path is None else override(Config(), read_toml(path))
    return override(config, overrides)


def setting_docs(cls: type) -> dict[str, str]:
    """The one-line docstrings below the fields of ``cls``, whitespace collapsed, by field name.

    Python keeps no attribute docstrings at run time, so they are read from the class's source.
    """
    tree = ast.parse(inspect.getsource(cls))
    (definition,) = tree.body
    assert isinstance(definition, ast.ClassDef)
    body = definition.body
    docs: dict[str, str] = {}
    for statement, following in itertools.pairwise(body):
        if (
            isinstance(statement, ast.AnnAssign)
            and isinstance(statement.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[statement.target.id] = " ".join(following.value.value.split())
    return docs


def _convert(name: str, kind: Any, value: Any) -> Any:
    """``value`` as type ``kind``, accepting the spellings TOML produces."""
    if _is_optional(kind):
        if value is None or value == "":
            return None
        return _convert(name, typing.get_args(kind)[0], value)
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif kind is str:
        if isinstance(value, str):
            return value
    elif kind is Path:
        if isinstance(value, str | Path):
            return Path(value)
    elif typing.get_origin(kind) is tuple:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",")]
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            return tuple(value)
    expected = getattr(kind, "__name__", str(kind))
    raise ConfigError(f"config key '{name}': expected {expected}, got {value!r}")


def _is_optional(kind: Any) -> bool:
    """Whether ``kind`` is ``X | None``."""
    return typing.get_origin(kind) in (typing.Union, types.UnionType) and type(None) in (
        typing.get_args(kind)
    )


def _require(settings: Any, key: str, condition: bool, problem: str) -> None:
    if not condition:
        value = getattr(settings, key)
        raise ConfigError(f"config key '{settings.section}.{key}' {problem} (got {value!r})")
