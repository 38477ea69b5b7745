"""The fleet view: every device that bridges to one MQTT broker, one row each.

``FleetState`` folds the broker's ``PREFIX/DEVICE/emotion`` and ``/availability`` messages
into rows; emotion payloads are read with ``streamer.client.parse_message``, the same code
that reads them from ZeroMQ. ``render`` draws the rows with rich; ``run_fleet_monitor`` ties
them to a ``streamer.mqtt.BrokerLink``. As in ``streamer.monitor``, the state is separate
from drawing so that it can be checked without a terminal.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field, replace

from rich.console import RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from streamer.client import Emotion, MessageError, parse_message
from streamer.config import MqttConfig
from streamer.monitor import LABEL_COLOURS
from streamer.mqtt import OFFLINE, ONLINE, BrokerLink
from streamer.wire import TOPIC_EMOTION

_LOGGER = logging.getLogger(__name__)


@dataclass
class DeviceRow:
    """What the fleet view knows of one device."""

    name: str
    """Device name, the topic level after the prefix."""
    online: bool | None = None
    """Its availability (None until the retained message arrives)."""
    emotion: Emotion | None = None
    """Newest emotion message."""
    last_seen: float | None = None
    """Monotonic time of the newest emotion message."""
    missed: int = 0
    """Emotion messages lost in gaps of ``seq`` since the view started."""


@dataclass
class FleetState:
    """Rows by device name, updated one MQTT message at a time."""

    prefix: str
    """Topic prefix (``[mqtt] topic_prefix``)."""
    devices: dict[str, DeviceRow] = field(default_factory=dict)
    """Every device seen, by name."""
    malformed: int = 0
    """Messages skipped because they broke the schema."""

    def update(self, topic: str, payload: bytes, now: float | None = None) -> None:
        """Folds one message into the rows; ``now`` is monotonic time (for tests)."""
        prefix, _, rest = topic.partition("/")
        name, _, leaf = rest.partition("/")
        if prefix != self.prefix or not name or leaf not in ("emotion", "availability"):
            return
        row = self.devices.setdefault(name, DeviceRow(name))
        if leaf == "availability":
            row.online = {ONLINE: True, OFFLINE: False}.get(payload.decode(errors="replace"))
            return
        try:
            event = parse_message(TOPIC_EMOTION.encode(), payload)
        except MessageError as error:
            self.malformed += 1
            _LOGGER.debug("%s: skipped a malformed message: %s", topic, error)
            return
        assert isinstance(event, Emotion)
        previous = row.emotion
        if previous is not None and event.seq > previous.seq + 1:
            row.missed += event.seq - previous.seq - 1
        row.emotion = replace(event, payload=b"")
        row.last_seen = time.monotonic() if now is None else now

    def rows(self) -> list[DeviceRow]:
        """Rows sorted by device name."""
        return [self.devices[name] for name in sorted(self.devices)]


def render(state: FleetState, title: str, now: float | None = None) -> RenderableType:
    """The table of devices; ``now`` is monotonic time (for tests)."""
    now = time.monotonic() if now is None else now
    rows = state.rows()
    online = sum(row.online is True for row in rows)
    table = Table(
        title=f"emostream fleet · {title} · {len(rows)} devices, {online} online",
        title_justify="left",
        caption="Ctrl-C quits",
        caption_justify="right",
    )
    for column in ("device", "", "emotion", "confidence", "speech", "last seen", "missed"):
        table.add_column(column, justify="right" if column in ("confidence", "missed") else "left")
    for row in rows:
        if row.online is None:
            availability = Text("?")
        else:
            availability = Text("online", "green") if row.online else Text("offline", "bold red")
        emotion = row.emotion
        cells: list[RenderableType]
        if emotion is None or row.last_seen is None:
            cells = ["—", "", "", "never"]
        else:
            label = emotion.label or ("unsure" if emotion.speech else "—")
            cells = [
                Text(label, style=LABEL_COLOURS.get(label, "default")),
                f"{emotion.confidence * 100:.0f}%" if emotion.label else "",
                "speech" if emotion.speech else "silence",
                f"{now - row.last_seen:.1f} s ago",
            ]
        table.add_row(row.name, availability, *cells, str(row.missed))
    return table


def run_fleet_monitor(settings: MqttConfig) -> None:
    """Shows every device on ``settings.broker`` until interrupted.

    Raises MqttError (one line) when the broker cannot be reached or refuses the login;
    afterwards the view survives the broker going away and coming back.
    """
    state = FleetState(settings.topic_prefix)
    lock = threading.Lock()

    def received(topic: str, payload: bytes) -> None:
        with lock:
            state.update(topic, payload)

    def current_screen() -> RenderableType:
        with lock:
            return render(state, settings.broker)

    # Never [mqtt] client_id: that is the bridge's, which the broker would then disconnect.
    client_id = f"emostream-monitor-{socket.gethostname()}-{os.getpid()}"
    link = BrokerLink(settings, client_id, on_message=received)
    for leaf in ("emotion", "availability"):
        link.subscribe(f"{settings.topic_prefix}/+/{leaf}")
    link.start()
    try:
        with Live(get_renderable=current_screen, refresh_per_second=2, screen=True):
            threading.Event().wait()
    finally:
        link.close()
