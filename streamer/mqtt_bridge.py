"""The MQTT bridge: a daemon's ZeroMQ stream on a broker, with Home Assistant discovery.

It subscribes to one daemon with ``streamer.client`` and publishes, under
``PREFIX/DEVICE/`` (``streamer.mqtt.Topics``): every ``emotion`` message as received (QoS 0),
the ``state`` (label or ``none``, retained, on change), the daemon's ``status`` messages, and
``availability`` (``online`` while the daemon publishes; ``offline`` when it stops, goes quiet,
or the bridge itself vanishes, as the broker's last will). Home Assistant's discovery messages
(retained) make one HA device per emostream device with three entities.

Nothing waits for the broker: while it is away, messages are dropped and counted (the log
says how many), and the retained state and discovery are published again on reconnection.
"""

from __future__ import annotations

import json
import logging
import re
import signal
import threading
import time
from collections import Counter
from typing import Any

from streamer import __version__
from streamer.client import Emotion, Status, Subscriber
from streamer.config import Config
from streamer.mqtt import NO_LABEL, OFFLINE, ONLINE, BrokerLink, Topics
from streamer.wire import connect_address

_LOGGER = logging.getLogger(__name__)

_RECEIVE_SLICE_S = 0.2
"""Longest wait for a daemon message, which bounds how late a stop request is noticed."""
_FLUSH_SECONDS = 2.0
"""Time given to the last messages (``offline``) to reach the broker when stopping."""
SUPPORT_URL = "https://github.com/emostream/emostream"


def discovery_messages(topics: Topics, discovery_prefix: str) -> dict[str, dict[str, Any]]:
    """Home Assistant MQTT discovery configs for one device, by discovery topic.

    Three entities of one HA device (identified by the emostream device name): the emotion
    sensor (state: the label; attributes: confidence and each model's probabilities), the
    speech binary sensor and the confidence sensor (%). All share the availability topic.
    Topic ids may hold only letters, digits, "_" and "-", so a "." in the name becomes "_".
    """
    node = "emostream_" + re.sub(r"[^A-Za-z0-9_-]", "_", topics.device)
    common = {
        "availability_topic": topics.availability,
        "payload_available": ONLINE,
        "payload_not_available": OFFLINE,
        "has_entity_name": True,
        "device": {
            "identifiers": [node],
            "name": f"emostream {topics.device}",
            "manufacturer": "emostream",
            "model": "speech-emotion classifier",
            "sw_version": __version__,
        },
        "origin": {"name": "emostream", "sw_version": __version__, "support_url": SUPPORT_URL},
    }
    entities = {
        ("sensor", "emotion"): {
            "name": "Emotion",
            "state_topic": topics.state,
            "icon": "mdi:emoticon-outline",
            "json_attributes_topic": topics.emotion,
            "json_attributes_template": (
                "{{ {'confidence': value_json.confidence, 'speech': value_json.speech,"
                " 'models': value_json.models} | tojson }}"
            ),
        },
        ("binary_sensor", "speech"): {
            "name": "Speech",
            "state_topic": topics.emotion,
            "value_template": "{{ 'ON' if value_json.speech else 'OFF' }}",
            "device_class": "sound",
        },
        ("sensor", "confidence"): {
            "name": "Emotion confidence",
            "state_topic": topics.emotion,
            "value_template": "{{ (value_json.confidence * 100) | round(0) }}",
            "unit_of_measurement": "%",
            "state_class": "measurement",
            "icon": "mdi:gauge",
        },
    }
    return {
        f"{discovery_prefix}/{component}/{node}/{entity}/config": {
            **config,
            "unique_id": f"{node}_{entity}",
            **common,
        }
        for (component, entity), config in entities.items()
    }


class Bridge:
    """Folds a daemon's events into MQTT messages for one device; publishes through ``link``."""

    def __init__(self, topics: Topics, discovery_prefix: str, address: str) -> None:
        self.topics = topics
        self.address = address
        self.discovery = discovery_messages(topics, discovery_prefix) if discovery_prefix else {}
        self.link: BrokerLink | None = None
        self.daemon_online = False
        """Whether the daemon is publishing (a message within ``offline_after``, not ended)."""
        self.state = NO_LABEL
        """Current label, or ``none``."""
        self.passed: Counter[str] = Counter()
        """Messages handed to the broker, by kind (emotion, status, state, availability)."""
        self.dropped: Counter[str] = Counter()
        """Messages dropped because the broker was away or busy, by kind."""
        self._dropped_reported: Counter[str] = Counter()
        self._warned_device: str | None = None
        # Retained topics change on the main thread and are republished on paho's thread after
        # a reconnection: one lock keeps an old value from overtaking a new one.
        self._retained_lock = threading.Lock()
        # Both threads send, so both count.
        self._count_lock = threading.Lock()

    def republish(self) -> None:
        """Discovery, availability and state again, after every (re)connection: a broker
        restarted without persistence has forgotten them."""
        with self._count_lock:
            missed = self.dropped - self._dropped_reported
            self._dropped_reported = self.dropped.copy()
        if missed:
            _LOGGER.warning(
                "while the broker was away %s were dropped (never queued)",
                ", ".join(f"{count} {kind}" for kind, count in sorted(missed.items())),
            )
        with self._retained_lock:
            for topic, config in self.discovery.items():
                self._send("discovery", topic, json.dumps(config), retain=True)
            self._send("availability", self.topics.availability, self._availability, retain=True)
            self._send("state", self.topics.state, self.state, retain=True)

    @property
    def _availability(self) -> str:
        return ONLINE if self.daemon_online else OFFLINE

    def handle(self, event: Emotion | Status) -> None:
        """Publishes one daemon message and whatever it changes (state, availability)."""
        if event.device not in (None, self.topics.device, self._warned_device):
            _LOGGER.warning(
                "the daemon at %s calls itself %r; publishing as %r (set --device %s)",
                self.address,
                event.device,
                self.topics.device,
                event.device,
            )
            self._warned_device = event.device
        if isinstance(event, Status):
            self._set_daemon_online(event.source_state != "ended", f"source {event.source_state}")
            self._send("status", self.topics.status, event.payload)
            return
        self._set_daemon_online(True, "publishing")
        self._send("emotion", self.topics.emotion, event.payload)
        label = event.label if event.speech and event.label else NO_LABEL
        if label != self.state:
            with self._retained_lock:
                self.state = label
                self._send("state", self.topics.state, label, retain=True)

    def daemon_quiet(self, seconds: float) -> None:
        """No message for ``seconds``: the daemon stopped or was lost."""
        self._set_daemon_online(False, f"no message for {seconds:.0f} s")

    def stopping(self) -> None:
        """The bridge is stopping: nobody will report on the daemon, so it is ``offline``."""
        with self._retained_lock:
            self.daemon_online = False
            self._send("availability", self.topics.availability, OFFLINE, retain=True)

    def _set_daemon_online(self, online: bool, reason: str) -> None:
        if online == self.daemon_online:
            return
        with self._retained_lock:
            self.daemon_online = online
            _LOGGER.info("daemon at %s is %s (%s)", self.address, self._availability, reason)
            self._send("availability", self.topics.availability, self._availability, retain=True)

    def _send(self, kind: str, topic: str, payload: str | bytes, retain: bool = False) -> None:
        sent = self.link is not None and self.link.publish(topic, payload, retain=retain)
        with self._count_lock:
            (self.passed if sent else self.dropped)[kind] += 1

    def summary(self) -> str:
        """One line of what was passed on and what was dropped."""
        passed = ", ".join(f"{n} {kind}" for kind, n in sorted(self.passed.items())) or "nothing"
        dropped = ", ".join(f"{n} {kind}" for kind, n in sorted(self.dropped.items())) or "none"
        return f"published {passed}; dropped {dropped}"


def run_bridge(config: Config, stop: threading.Event | None = None) -> None:
    """Bridges the daemon at ``[mqtt] daemon`` (default the local one) until SIGTERM or SIGINT.

    Raises ClientError, MqttError or ConfigError (one line) for what fails at start: a bad
    daemon address or key, an unreachable broker, refused credentials. Once running, the
    broker and the daemon may come and go. On stopping, ``offline`` is published.
    """
    settings = config.mqtt
    device = config.publish.device_name
    address = settings.daemon or connect_address(config.publish.bind)
    topics = Topics(settings.topic_prefix, device)
    bridge = Bridge(topics, settings.discovery_prefix, address)
    if stop is None:
        stop = _stop_on_signals()
    with Subscriber(
        address,
        quiet_after=None,
        curve_secret_key=settings.curve_secret_key,
        curve_server_key=settings.curve_server_key,
    ) as subscriber:
        link = BrokerLink(
            settings,
            settings.client_id or f"emostream-mqtt-{device}",
            will=(topics.availability, OFFLINE),
            on_connected=bridge.republish,
        )
        bridge.link = link
        link.start()
        _LOGGER.info("bridging %s to %s as %s/%s", address, settings.broker, topics.prefix, device)
        try:
            while not stop.is_set():
                event = subscriber.receive(timeout=_RECEIVE_SLICE_S)
                if event is not None:
                    bridge.handle(event)
                    continue
                last = subscriber.last_message_at
                quiet = time.monotonic() - last if last is not None else 0.0
                if bridge.daemon_online and quiet >= settings.offline_after:
                    bridge.daemon_quiet(quiet)
        finally:
            bridge.stopping()
            link.flush(_FLUSH_SECONDS)
            link.close()
            _LOGGER.info("stopped: %s", bridge.summary())


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        _LOGGER.info("%s received: publishing offline and stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    return stop
