"""A connection to an MQTT broker with paho-mqtt: the only module that touches paho.

``BrokerLink`` connects once at start (so that a wrong address, refused credentials or an
unreachable broker is a one-line error), then lets paho's network thread reconnect with backoff
for as long as the program runs. It never queues: while the broker is away, or while more than
``max_unsent`` messages wait for the socket, ``publish`` drops the message and says so, and the
caller counts it. Whatever must survive a broker restart (retained state, discovery) the caller
publishes again from ``on_connected``.

The topic layout, shared by the bridge and the fleet monitor, is ``Topics``.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from streamer.config import MqttConfig

_LOGGER = logging.getLogger(__name__)

ONLINE = "online"
OFFLINE = "offline"
NO_LABEL = "none"
"""Payload of the state topic while no emotion is recognised (silence, or unsure)."""


class MqttError(Exception):
    """The broker cannot be used; the message names the broker URL or the file at fault."""


@dataclass(frozen=True)
class Topics:
    """Topics of one device: PREFIX/DEVICE/emotion, state, status and availability."""

    prefix: str
    """First level of every topic (``[mqtt] topic_prefix``)."""
    device: str
    """The device's name (``[publish] device``)."""

    def _topic(self, leaf: str) -> str:
        return f"{self.prefix}/{self.device}/{leaf}"

    @property
    def emotion(self) -> str:
        """Every window's emotion message, the JSON the daemon publishes (QoS 0)."""
        return self._topic("emotion")

    @property
    def state(self) -> str:
        """The current label or ``none``; retained, published on change."""
        return self._topic("state")

    @property
    def status(self) -> str:
        """The daemon's status messages, as JSON."""
        return self._topic("status")

    @property
    def availability(self) -> str:
        """``online`` or ``offline``; retained, and the bridge's last will."""
        return self._topic("availability")


def read_password(path: Path) -> str:
    """First line of the password file ``path``; MqttError naming it when unreadable."""
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise MqttError(f"{path}: cannot read the broker password file ({reason})") from None
    if not lines or not lines[0]:
        raise MqttError(f"{path}: the broker password file is empty")
    return lines[0]


class BrokerLink:
    """One MQTT client session, kept up by paho's network thread."""

    def __init__(
        self,
        settings: MqttConfig,
        client_id: str,
        will: tuple[str, str] | None = None,
        on_connected: Callable[[], None] | None = None,
        on_message: Callable[[str, bytes], None] | None = None,
    ) -> None:
        """Prepares the client (nothing is sent before ``start``).

        ``will``: (topic, payload) the broker publishes, retained, when this client vanishes.
        ``on_connected`` runs on paho's thread after every successful (re)connection;
        ``on_message`` receives (topic, payload) of subscribed topics, on the same thread.
        Raises MqttError for an unreadable password or CA file.
        """
        self.settings = settings
        self.endpoint = settings.endpoint
        self._on_connected = on_connected
        self._on_message = on_message
        self._subscriptions: list[str] = []
        self._connected = threading.Event()
        self._answered = threading.Event()
        self._refusal: str | None = None
        self._unsent = 0
        self._unsent_lock = threading.Lock()
        client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv311
        )
        client.enable_logger(logging.getLogger("paho"))
        if settings.username:
            password = (
                None if settings.password_file is None else read_password(settings.password_file)
            )
            client.username_pw_set(settings.username, password)
        if self.endpoint.tls:
            try:
                client.tls_set(ca_certs=None if settings.ca_file is None else str(settings.ca_file))
            except (OSError, ssl.SSLError) as error:
                reason = f"cannot load CA certificates ({error})"
                raise MqttError(f"{settings.ca_file or 'system CA'}: {reason}") from None
        if will is not None:
            client.will_set(will[0], will[1], qos=0, retain=True)
        client.reconnect_delay_set(1, max(1, round(settings.retry_max_seconds)))
        client.connect_timeout = settings.connect_timeout
        client.on_connect = self._connected_callback
        client.on_disconnect = self._disconnected_callback
        client.on_publish = self._published_callback
        client.on_message = self._message_callback
        self._client = client

    @property
    def connected(self) -> bool:
        """Whether the broker has accepted this session and it is still up."""
        return self._connected.is_set()

    def start(self) -> None:
        """Connects and waits for the broker's answer; MqttError (one line) when it fails.

        From then on paho reconnects by itself, with backoff up to ``retry_max_seconds``.
        """
        url = self.settings.broker
        try:
            self._client.connect(
                self.endpoint.host, self.endpoint.port, self.settings.keepalive_seconds
            )
        except ssl.SSLError as error:
            # SSLError is an OSError: tell a certificate problem from an unreachable host.
            reason, hint = error.reason or str(error), ""
            if isinstance(error, ssl.SSLCertVerificationError):
                reason = f"certificate verify failed: {error.verify_message}"
                if self.settings.ca_file is None:
                    hint = "; give the CA that signed its certificate in mqtt.ca_file"
            raise MqttError(f"{url}: TLS with the MQTT broker failed ({reason}){hint}") from None
        except OSError as error:
            reason = error.strerror or str(error) or type(error).__name__
            raise MqttError(f"{url}: cannot reach the MQTT broker ({reason})") from None
        self._client.loop_start()
        if not self._answered.wait(self.settings.connect_timeout):
            self.close()
            raise MqttError(
                f"{url}: the MQTT broker did not answer within {self.settings.connect_timeout:g} s"
            )
        if self._refusal is not None:
            self.close()
            raise MqttError(f"{url}: the MQTT broker refused the connection ({self._refusal})")

    def subscribe(self, topic: str) -> None:
        """Subscribes now if connected, and again after every reconnection."""
        self._subscriptions.append(topic)
        if self.connected:
            self._client.subscribe(topic)

    def publish(self, topic: str, payload: str | bytes, retain: bool = False) -> bool:
        """Hands one message to the network; False when it was dropped instead of queued.

        Dropped: the broker is away, or ``max_unsent`` messages still wait for the socket.
        Everything goes with QoS 0: paho would hold QoS 1 messages across a reconnection and
        send them after what ``on_connected`` republishes, so an old retained value could
        overwrite a new one; what a lost connection loses is republished or superseded.
        """
        if not self.connected:
            return False
        with self._unsent_lock:
            if self._unsent >= self.settings.max_unsent:
                return False
            self._unsent += 1
        info = self._client.publish(topic, payload, qos=0, retain=retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            with self._unsent_lock:
                self._unsent -= 1
            return False
        return True

    def flush(self, timeout: float) -> None:
        """Waits up to ``timeout`` seconds for handed-over messages to reach the socket."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.connected:
            with self._unsent_lock:
                if self._unsent == 0:
                    return
            time.sleep(0.02)

    def close(self) -> None:
        """Disconnects cleanly (the broker then sends no last will) and stops the thread."""
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()

    def _connected_callback(
        self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode, properties: Any
    ) -> None:
        if reason.is_failure:
            if not self._answered.is_set():
                self._refusal = str(reason)
            else:
                _LOGGER.warning("%s refused the connection (%s)", self.settings.broker, reason)
            self._answered.set()
            return
        with self._unsent_lock:
            self._unsent = 0
        self._connected.set()
        if self._answered.is_set():
            _LOGGER.info("reconnected to %s", self.settings.broker)
        else:
            _LOGGER.info("connected to %s", self.settings.broker)
        self._answered.set()
        for topic in self._subscriptions:
            client.subscribe(topic)
        if self._on_connected is not None:
            self._on_connected()

    def _disconnected_callback(
        self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode, properties: Any
    ) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        if was_connected and reason.is_failure:
            _LOGGER.warning(
                "lost the MQTT broker %s (%s): retrying with backoff up to %g s",
                self.settings.broker,
                reason,
                self.settings.retry_max_seconds,
            )

    def _published_callback(
        self, client: paho.Client, userdata: Any, mid: int, reason: ReasonCode, properties: Any
    ) -> None:
        with self._unsent_lock:
            self._unsent = max(0, self._unsent - 1)

    def _message_callback(self, client: paho.Client, userdata: Any, message: Any) -> None:
        if self._on_message is not None:
            self._on_message(message.topic, message.payload)
