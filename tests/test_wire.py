"""The wire protocol's names live once (streamer.wire) and agree with the published schema."""

from __future__ import annotations

import json

import pytest

from streamer import client, publish, wire
from streamer.config import PublishConfig


def test_the_schema_file_states_the_version_topics_and_states_of_the_wire_module():
    schema = wire.message_schema()
    kinds = [reference["$ref"].rpartition("/")[2] for reference in schema["oneOf"]]
    assert tuple(kinds) == wire.TOPICS
    for topic in wire.TOPICS:
        properties = schema["$defs"][topic]["properties"]
        assert properties["schema"] == {"const": wire.SCHEMA_VERSION}
        assert properties["type"] == {"const": topic}
    states = schema["$defs"]["status"]["properties"]["source"]["properties"]["state"]["enum"]
    assert tuple(states) == wire.SOURCE_STATES


@pytest.mark.parametrize("state", wire.SOURCE_STATES)
def test_every_state_the_publisher_may_send_the_client_reads(state):
    message = publish.status_message("pi", 0, 1.0, 2.0, "mic", state, 0, 0, 0, 1.0, 2.0, ["cnn"])
    payload = json.dumps(message).encode()
    status = client.parse_message(wire.TOPIC_STATUS.encode(), payload)
    assert isinstance(status, client.Status) and status.source_state == state
    message["source"]["state"] = "paused"
    with pytest.raises(client.MessageError, match="source.state 'paused'"):
        client.parse_message(wire.TOPIC_STATUS.encode(), json.dumps(message).encode())


def test_the_daemon_binds_where_a_subscriber_connects_by_default_on_loopback():
    assert PublishConfig().bind == wire.DEFAULT_ADDRESS
    assert wire.connect_address(PublishConfig().bind) == wire.DEFAULT_ADDRESS
    assert wire.is_loopback(wire.DEFAULT_ADDRESS)


@pytest.mark.parametrize(
    ("bind", "address"),
    [
        ("tcp://*:5556", "tcp://127.0.0.1:5556"),
        ("tcp://0.0.0.0:6000", "tcp://127.0.0.1:6000"),
        ("tcp://192.168.1.5:5556", "tcp://192.168.1.5:5556"),
        ("ipc:///run/emostream.sock", "ipc:///run/emostream.sock"),
    ],
)
def test_a_wildcard_bind_is_reached_on_loopback_anything_else_as_given(bind, address):
    assert wire.connect_address(bind) == address
