"""The wire protocol between the daemon and its subscribers, for both sides to import.

Every message is two ZeroMQ frames, ``[topic, json]``: topic ``emotion`` once per window,
``status`` every few seconds and on source state changes. The JSON follows
``streamer/schema/message.schema.json`` (described in ``docs/messages.md``). ``publish`` builds
and sends messages; ``client`` parses them; both take these names from here, so a change to the
protocol is made once. Nothing here imports zmq or numpy.
"""

from __future__ import annotations

import ipaddress
import json
from importlib import resources
from typing import Any

SCHEMA_VERSION = 1
"""The ``schema`` field of every message; a subscriber refuses other versions."""
TOPIC_EMOTION = "emotion"
"""Topic (first frame) and ``type`` of the message published once per window."""
TOPIC_STATUS = "status"
"""Topic and ``type`` of the daemon's health message."""
TOPICS = (TOPIC_EMOTION, TOPIC_STATUS)
"""Every topic the daemon publishes."""
SOURCE_STATES = ("starting", "running", "lost", "ended")
"""Values of a status message's ``source.state``: "lost" is a microphone gone and being
reopened, "ended" a file source at its end."""
DEFAULT_ADDRESS = "tcp://127.0.0.1:5556"
"""Where the daemon binds and a subscriber connects unless told otherwise: loopback only."""


def is_loopback(bind: str) -> bool:
    """Whether only this machine can reach ``bind``: ipc://, or tcp:// on a loopback host.

    Wildcards (``tcp://*:5556``, ``0.0.0.0``), interface names other than ``lo`` and other
    addresses are reachable from the network.
    """
    if bind.startswith("ipc://"):
        return True
    host = bind.removeprefix("tcp://").rpartition(":")[0].strip("[]")
    if host in ("localhost", "lo"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def connect_address(bind: str) -> str:
    """Address a local subscriber connects to for a daemon bound to ``bind``.

    A wildcard bind (``tcp://*:5556``, ``tcp://0.0.0.0:5556``) is reached on the loopback
    address; anything else is connected to as given.
    """
    for wildcard in ("tcp://*:", "tcp://0.0.0.0:"):
        if bind.startswith(wildcard):
            return "tcp://127.0.0.1:" + bind[len(wildcard) :]
    return bind


def message_schema() -> dict[str, Any]:
    """The JSON Schema every published message satisfies."""
    text = resources.files("streamer").joinpath("schema/message.schema.json").read_text()
    return json.loads(text)
