"""Subscribing to a running daemon: typed events from its ZeroMQ stream.

The daemon publishes two topics, each a two-part message ``[topic, JSON]`` (docs/messages.md):
``emotion`` once per window and ``status`` about once a second. This module turns them into
frozen dataclasses, numbers each topic's gaps from its ``seq`` field, notices daemon restarts
(``seq`` going backwards) and reports quiet periods, so a program never has to parse JSON::

    from streamer.client import Emotion, Quiet, subscribe

    for event in subscribe("tcp://127.0.0.1:5556"):
        if isinstance(event, Emotion) and event.speech:
            print(event.label, event.confidence)
        elif isinstance(event, Quiet):
            print(f"nothing published for {event.quiet_for:.0f} s")

ZeroMQ reconnects a subscriber by itself, so a daemon that restarts is picked up again without
any action here. This is the subscriber side; only ``publish.py`` opens publishing sockets.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import zmq
from zmq.utils.monitor import recv_monitor_message

from streamer.keys import KeyFileError, load_key_pair, load_public_key
from streamer.wire import (
    DEFAULT_ADDRESS,
    SCHEMA_VERSION,
    SOURCE_STATES,
    TOPIC_EMOTION,
    TOPIC_STATUS,
    TOPICS,
)

_LOGGER = logging.getLogger(__name__)

_POLL_SLICE_MS = 200
_HANDSHAKE_FAILED = (
    zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)


def _refusal(event: int, has_keys: bool) -> str:
    """What a failed handshake says about this subscriber's CURVE keys."""
    if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        return (
            "CURVE keys may be the reason: this client's public key is not among the daemon's "
            "authorised clients (serve --curve-clients DIR)"
        )
    if has_keys:
        return (
            "CURVE keys may be the reason: the daemon may publish without CURVE, or "
            "--curve-server is not its public key"
        )
    return (
        "CURVE keys may be the reason: the daemon publishes with CURVE; give this client's "
        "key pair and the daemon's public key (--curve-secret FILE --curve-server FILE)"
    )


"""Longest single wait on the socket, so Ctrl-C is honoured promptly."""
_RESTART_TOLERANCE_S = 1.0
"""Drift of a daemon's computed start time that is still the same run (clock steps, rounding)."""


class ClientError(Exception):
    """The subscription cannot be set up; the message names the address."""


class MessageError(ValueError):
    """A received message does not follow the schema; the message says which field."""


@dataclass(frozen=True)
class ModelOutput:
    """One model's verdict on one window."""

    label: str
    """Most probable class."""
    probabilities: dict[str, float]
    """Probability per class label, summing to about 1."""


@dataclass(frozen=True)
class Emotion:
    """The classification of one window of audio (topic ``emotion``)."""

    seq: int
    """Per-topic sequence number; +1 for each published window."""
    captured_at: float
    """Unix time (seconds) when the window's last sample was captured."""
    published_at: float
    """Unix time (seconds) when the daemon published the message."""
    window_start: float
    """Start of the window in the source's time (seconds since the source started)."""
    window_end: float
    """End of the window in the source's time (seconds)."""
    speech: bool
    """Whether the window holds speech; without it, ``label`` is None."""
    label: str | None
    """Combined label of all models, None for silence."""
    confidence: float
    """Probability of ``label`` (0..1); for silence, whatever the daemon reports."""
    models: dict[str, ModelOutput]
    """Each model's own output, by model name ("cnn", "lstm")."""
    latency_ms: float
    """Capture to publication, as measured by the daemon (milliseconds)."""
    missed: int = 0
    """Emotion messages lost just before this one (a gap in ``seq``)."""
    restarted: bool = False
    """The daemon restarted since the previous emotion message (``seq`` went backwards, or a
    status message in between showed a new start time)."""
    device: str | None = None
    """Name of the daemon's device (``[publish] device``); None from a daemon older than it."""
    level_db: float | None = None
    """Loudest frame RMS level in the window (dBFS); None from a daemon older than the field."""
    speech_probability: float | None = None
    """The voice-activity detector's highest frame probability of speech in the window (0..1);
    None from a daemon older than the field."""
    speech_seconds: float | None = None
    """Time in the window the detector judged speech (seconds); None from an older daemon."""
    payload: bytes = field(default=b"", repr=False, compare=False)
    """The JSON frame as received, for passing the message on unchanged (the MQTT bridge)."""


@dataclass(frozen=True)
class Status:
    """The daemon's health (topic ``status``)."""

    seq: int
    """Per-topic sequence number."""
    published_at: float
    """Unix time (seconds) of publication."""
    uptime_s: float
    """Seconds since the daemon started."""
    source_name: str
    """Audio source: device name or file path."""
    source_state: str
    """"starting", "running", "lost" (device gone, retrying) or "ended" (file finished)."""
    overflows: int
    """Capture blocks the audio callback reported as overflowed since start."""
    dropped_windows: int
    """Windows skipped because inference fell behind, since start."""
    windows: int
    """Windows classified since start."""
    inference_p50_ms: float
    """Median inference time per window (milliseconds)."""
    inference_p99_ms: float
    """99th percentile inference time per window (milliseconds)."""
    models: tuple[str, ...]
    """Names of the loaded models."""
    missed: int = 0
    """Status messages lost just before this one."""
    restarted: bool = False
    """The daemon restarted since the previous status: its start time (``published_at`` minus
    ``uptime_s``) moved, or ``seq`` went backwards."""
    device: str | None = None
    """Name of the daemon's device; None from a daemon older than it."""
    payload: bytes = field(default=b"", repr=False, compare=False)
    """The JSON frame as received."""

    @property
    def started_at(self) -> float:
        """Unix time (seconds) when the daemon started."""
        return self.published_at - self.uptime_s


@dataclass(frozen=True)
class Quiet:
    """Nothing has arrived for a while: no daemon at the address, or it has stalled."""

    quiet_for: float
    """Seconds since the last message (or since subscribing, if none came)."""
    ever_received: bool
    """Whether any message arrived since subscribing."""
    refused: str | None = None
    """Why a daemon that answers at the address refuses this subscriber (its CURVE keys, in
    all likelihood); None when no connection was refused."""


Event = Emotion | Status | Quiet
_Message = TypeVar("_Message", Emotion, Status)


def parse_message(topic: bytes, payload: bytes) -> Emotion | Status:
    """Typed event from one two-part message; raises MessageError naming the bad field.

    ``missed`` and ``restarted`` are left at their defaults: they need the previous message,
    which ``Subscriber`` keeps.
    """
    try:
        name = topic.decode("ascii")
        values = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MessageError(f"not UTF-8 JSON ({error})") from None
    if not isinstance(values, dict):
        raise MessageError("payload is not a JSON object")
    if values.get("schema") != SCHEMA_VERSION:
        raise MessageError(f"schema {values.get('schema')!r}, expected {SCHEMA_VERSION}")
    if name not in TOPICS or values.get("type") != name:
        raise MessageError(f"topic {name!r} with type {values.get('type')!r}")
    fields = _Fields(values)
    if name == TOPIC_EMOTION:
        window = fields.mapping("window")
        window_fields = _Fields(window, "window.")
        return Emotion(
            seq=fields.integer("seq"),
            captured_at=fields.number("captured_at"),
            published_at=fields.number("published_at"),
            window_start=window_fields.number("start"),
            window_end=window_fields.number("end"),
            speech=fields.boolean("speech"),
            label=fields.optional_text("label"),
            confidence=fields.number("confidence"),
            models={
                model: _model_output(model, output)
                for model, output in fields.mapping("models").items()
            },
            latency_ms=fields.number("latency_ms"),
            device=fields.optional_text("device", required=False),
            level_db=fields.optional_number("level_db"),
            speech_probability=fields.optional_number("speech_probability"),
            speech_seconds=fields.optional_number("speech_seconds"),
            payload=payload,
        )
    source = _Fields(fields.mapping("source"), "source.")
    inference = _Fields(fields.mapping("inference_ms"), "inference_ms.")
    state = source.text("state")
    if state not in SOURCE_STATES:
        raise MessageError(f"source.state {state!r} is not one of {', '.join(SOURCE_STATES)}")
    models = values.get("models")
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
        raise MessageError("models is not a list of names")
    return Status(
        seq=fields.integer("seq"),
        published_at=fields.number("published_at"),
        uptime_s=fields.number("uptime_s"),
        source_name=source.text("name"),
        source_state=state,
        overflows=fields.integer("overflows"),
        dropped_windows=fields.integer("dropped_windows"),
        windows=fields.integer("windows"),
        inference_p50_ms=inference.number("p50"),
        inference_p99_ms=inference.number("p99"),
        models=tuple(models),
        device=fields.optional_text("device", required=False),
        payload=payload,
    )


def _model_output(model: str, output: Any) -> ModelOutput:
    if not isinstance(output, dict):
        raise MessageError(f"models.{model} is not an object")
    fields = _Fields(output, f"models.{model}.")
    probabilities = fields.mapping("probabilities")
    for label, probability in probabilities.items():
        if not _is_number(probability):
            raise MessageError(f"models.{model}.probabilities.{label} is not a number")
    return ModelOutput(
        label=fields.text("label"),
        probabilities={label: float(p) for label, p in probabilities.items()},
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class _Fields:
    """Typed access to a JSON object's fields; a wrong field raises MessageError naming it."""

    def __init__(self, values: dict[str, Any], prefix: str = "") -> None:
        self._values = values
        self._prefix = prefix

    def _get(self, key: str, kind: str, accept: Any) -> Any:
        if key not in self._values:
            raise MessageError(f"{self._prefix}{key} is missing")
        value = self._values[key]
        if not accept(value):
            raise MessageError(f"{self._prefix}{key} is not {kind}: {value!r}")
        return value

    def number(self, key: str) -> float:
        return float(self._get(key, "a number", _is_number))

    def optional_number(self, key: str) -> float | None:
        """The number at ``key``, None when the field is absent (added after schema 1 began)."""
        return None if key not in self._values else self.number(key)

    def integer(self, key: str) -> int:
        return self._get(
            key, "an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)
        )

    def boolean(self, key: str) -> bool:
        return self._get(key, "true or false", lambda v: isinstance(v, bool))

    def text(self, key: str) -> str:
        return self._get(key, "a string", lambda v: isinstance(v, str))

    def optional_text(self, key: str, required: bool = True) -> str | None:
        if not required and key not in self._values:
            return None
        return self._get(key, "a string or null", lambda v: v is None or isinstance(v, str))

    def mapping(self, key: str) -> dict[str, Any]:
        return self._get(key, "an object", lambda v: isinstance(v, dict))


class Subscriber:
    """A subscription to one daemon address; iterate it for events.

    Messages that break the schema are logged, counted in ``malformed`` and skipped, so one
    bad publisher cannot stop a monitor. Use as a context manager, or call ``close()``.
    """

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        topics: tuple[str, ...] = TOPICS,
        quiet_after: float | None = 5.0,
        curve_secret_key: Path | None = None,
        curve_server_key: Path | None = None,
    ) -> None:
        """Connects (lazily: ZeroMQ retries until a daemon binds ``address``).

        ``quiet_after``: seconds without any message after which a ``Quiet`` event is yielded,
        and again every ``quiet_after`` seconds while it lasts; None never yields one.
        ``curve_secret_key`` (this client's ``.key_secret``) and ``curve_server_key`` (the
        daemon's ``.key``) connect to a daemon that publishes with CURVE; one whose clients
        directory lacks this client's public key sends it nothing (seen here as ``Quiet``).
        """
        unknown = [topic for topic in topics if topic not in TOPICS]
        if unknown:
            raise ClientError(f"unknown topic {unknown[0]!r}: choose from {', '.join(TOPICS)}")
        if (curve_secret_key is None) != (curve_server_key is None):
            raise ClientError(
                f"{address}: CURVE needs both this client's key pair and the server's key"
            )
        curve: tuple[bytes, bytes, bytes] | None = None
        if curve_secret_key is not None and curve_server_key is not None:
            try:
                curve = (*load_key_pair(curve_secret_key), load_public_key(curve_server_key))
            except KeyFileError as error:
                raise ClientError(str(error)) from None
        self.address = address
        self.quiet_after = quiet_after
        self.malformed = 0
        """Messages skipped because they broke the schema."""
        self.last_message_at: float | None = None
        """Monotonic time of the last valid message."""
        self._last_seq: dict[str, int] = {}
        self._daemon_started_at: float | None = None
        self._restart_unseen_by_emotion = False
        """A status showed a restart that no emotion message has reported yet."""
        self._restart_unseen_by_status = False
        """An emotion's seq showed a restart that no status message has confirmed yet."""
        self.refused: str | None = None
        """Why the daemon refused the last connection attempt (see ``Quiet.refused``); None
        after a successful handshake."""
        self._has_keys = curve is not None
        self._socket: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.SUB)
        self._socket.setsockopt(zmq.LINGER, 0)
        # Retry quickly at first, then every 2 s, so a restarted daemon is found within seconds.
        self._socket.setsockopt(zmq.RECONNECT_IVL, 100)
        self._socket.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
        if curve is not None:
            self._socket.setsockopt(zmq.CURVE_PUBLICKEY, curve[0])
            self._socket.setsockopt(zmq.CURVE_SECRETKEY, curve[1])
            self._socket.setsockopt(zmq.CURVE_SERVERKEY, curve[2])
        for topic in topics:
            self._socket.setsockopt(zmq.SUBSCRIBE, topic.encode("ascii"))
        # Handshake outcomes, the only sign a subscriber gets that the daemon refused it.
        self._handshakes: zmq.Socket = self._socket.get_monitor_socket(
            zmq.EVENT_HANDSHAKE_SUCCEEDED | _HANDSHAKE_FAILED
        )
        try:
            self._socket.connect(address)
        except zmq.ZMQError as error:
            self.close()
            raise ClientError(f"{address}: cannot subscribe ({error})") from None
        self._started_at = time.monotonic()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Closes the socket; iteration then ends."""
        if not self._socket.closed:
            self._socket.disable_monitor()
        self._handshakes.close()
        self._socket.close()

    def __iter__(self) -> Iterator[Event]:
        return self.events()

    def events(self) -> Iterator[Event]:
        """Events as they arrive, with ``Quiet`` in silent stretches; runs until closed."""
        quiet_reported_at = self._started_at
        while not self._socket.closed:
            event = self.receive(timeout=_POLL_SLICE_MS / 1000)
            if event is not None:
                quiet_reported_at = time.monotonic()
                yield event
                continue
            now = time.monotonic()
            if self.quiet_after is not None and now - quiet_reported_at >= self.quiet_after:
                quiet_reported_at = now
                last = self.last_message_at
                yield Quiet(
                    quiet_for=now - (self._started_at if last is None else last),
                    ever_received=last is not None,
                    refused=self.refused,
                )

    def receive(self, timeout: float) -> Emotion | Status | None:
        """The next valid message, or None if none arrived within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            self._follow_handshakes()
            remaining_ms = max(0, round((deadline - time.monotonic()) * 1000))
            if not self._socket.poll(remaining_ms, zmq.POLLIN):
                return None
            parts = self._socket.recv_multipart()
            event = self._accept(parts)
            if event is not None:
                return event

    def _follow_handshakes(self) -> None:
        """Updates ``refused`` from the handshakes since the last call; logs each new refusal
        once, with the hint that keys may be the reason."""
        while self._handshakes.poll(0):
            event = recv_monitor_message(self._handshakes)["event"]
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.refused = None
                continue
            reason = _refusal(event, self._has_keys)
            if reason != self.refused:
                _LOGGER.warning("%s: the daemon refused this subscriber: %s", self.address, reason)
            self.refused = reason

    def _accept(self, parts: list[bytes]) -> Emotion | Status | None:
        try:
            if len(parts) != 2:
                raise MessageError(f"{len(parts)} frames, expected topic and payload")
            event = parse_message(parts[0], parts[1])
        except MessageError as error:
            self.malformed += 1
            _LOGGER.warning("%s: skipped a malformed message: %s", self.address, error)
            return None
        self.last_message_at = time.monotonic()
        if isinstance(event, Status):
            return self._follow_status(event)
        return self._follow_emotion(event)

    def _follow_status(self, event: Status) -> Status:
        """Marks restarts and gaps; a restarted daemon may already have passed its old seq,
        so its start time is the reliable sign."""
        previous_start = self._daemon_started_at
        self._daemon_started_at = event.started_at
        moved = (
            previous_start is not None
            and abs(event.started_at - previous_start) > _RESTART_TOLERANCE_S
        )
        if moved:
            _LOGGER.info("%s: the daemon restarted", self.address)
            self._last_seq.pop(TOPIC_STATUS, None)
            if not self._restart_unseen_by_status:
                # The emotion seq seen so far belongs to the previous run.
                self._restart_unseen_by_emotion = TOPIC_EMOTION in self._last_seq
                self._last_seq.pop(TOPIC_EMOTION, None)
        self._restart_unseen_by_status = False
        marked = self._sequence(TOPIC_STATUS, event)
        return replace(marked, restarted=True) if moved else marked

    def _follow_emotion(self, event: Emotion) -> Emotion:
        """Marks gaps and restarts, each restart once whichever topic shows it first."""
        marked = self._sequence(TOPIC_EMOTION, event)
        if self._restart_unseen_by_emotion:
            self._restart_unseen_by_emotion = False
            return replace(marked, restarted=True)
        if marked.restarted:
            self._restart_unseen_by_status = True
        return marked

    def _sequence(self, topic: str, event: _Message) -> _Message:
        """``event`` with ``missed`` set from the gap in its topic's seq, or ``restarted`` when
        seq went backwards."""
        previous = self._last_seq.get(topic)
        self._last_seq[topic] = event.seq
        if previous is None:
            return event
        if event.seq <= previous:
            _LOGGER.info("%s: %s seq went from %d to %d", self.address, topic, previous, event.seq)
            return replace(event, restarted=True)
        if event.seq > previous + 1:
            return replace(event, missed=event.seq - previous - 1)
        return event


def subscribe(
    address: str = DEFAULT_ADDRESS,
    topics: tuple[str, ...] = TOPICS,
    quiet_after: float | None = 5.0,
    curve_secret_key: Path | None = None,
    curve_server_key: Path | None = None,
) -> Iterator[Event]:
    """Events from the daemon at ``address`` until the caller stops iterating.

    A thin generator over ``Subscriber`` for programs that need nothing else; the socket is
    closed when the generator is closed or garbage-collected. The CURVE key files are as for
    ``Subscriber``.
    """
    with Subscriber(address, topics, quiet_after, curve_secret_key, curve_server_key) as subscriber:
        yield from subscriber
