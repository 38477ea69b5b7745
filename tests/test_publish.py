"""Messages leave over a real PUB socket, follow the schema, and a slow reader cannot stall us."""

from __future__ import annotations

import dataclasses
import json
import time

import jsonschema
import pytest
import zmq
from daemon_support import ipc_address, receive, subscribe

from streamer.pipeline import ModelOutput, WindowResult
from streamer.publish import (
    Publisher,
    PublishError,
    emotion_message,
    format_echo,
    status_message,
)
from streamer.wire import message_schema

PROBABILITIES = {"angry": 0.7, "neutral": 0.2, "sad": 0.1}


def window(index: int = 0, speech: bool = True) -> WindowResult:
    return WindowResult(
        index=index,
        start=index * 0.5,
        end=index * 0.5 + 1.992,
        captured_at=time.time() - 0.01,
        speech=speech,
        label="angry" if speech else None,
        confidence=0.7 if speech else 0.0,
        models={"cnn": ModelOutput("angry", PROBABILITIES)} if speech else {},
        level_db=-20.0 if speech else -80.0,
        speech_seconds=1.5 if speech else 0.0,
        speech_probability=0.9 if speech else 0.0,
        inference_ms=0.4 if speech else 0.0,
    )


STATUS = {
    "uptime_s": 1.0,
    "source_name": "mic",
    "source_state": "running",
    "overflows": 0,
    "dropped_windows": 0,
    "windows": 3,
    "inference_p50_ms": 0.3,
    "inference_p99_ms": 0.9,
    "models": ["cnn"],
}


@pytest.fixture()
def publisher(tmp_path):
    publisher = Publisher(ipc_address(tmp_path), send_hwm=100, device="bench-1")
    yield publisher
    publisher.close()


def connected_subscriber(publisher: Publisher) -> zmq.Socket:
    """A subscriber that has provably joined: it received a probe status message."""
    socket = subscribe(publisher.bind)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        publisher.publish_status(**STATUS)
        if socket.poll(20):
            receive(socket, lambda t, m: False, 0.1)  # the probe and any late twin
            return socket
    raise AssertionError("subscriber never connected")


def test_messages_are_topic_and_json_frames_with_per_topic_sequence_numbers(publisher):
    socket = connected_subscriber(publisher)
    for index in range(3):
        publisher.publish_emotion(window(index))
    publisher.publish_status(**STATUS)
    messages = receive(socket, lambda topic, m: topic == "status", 2.0)
    emotions = [m for t, m in messages if t == "emotion"]
    assert [m["seq"] for m in emotions] == [0, 1, 2]
    status = messages[-1][1]
    assert status["type"] == "status" and status["seq"] > 0
    first = emotions[0]
    assert first["window"] == {"start": 0.0, "end": 1.992}
    assert first["models"]["cnn"]["probabilities"] == PROBABILITIES
    assert first["published_at"] >= first["captured_at"]
    assert 5 < first["latency_ms"] < 1000
    socket.close()


def test_every_message_names_the_device_it_comes_from(publisher):
    socket = connected_subscriber(publisher)
    publisher.publish_emotion(window(0))
    publisher.publish_status(**STATUS)
    messages = receive(socket, lambda topic, m: topic == "status", 2.0)
    named = [(topic, message["device"]) for topic, message in messages]
    assert named == [("emotion", "bench-1"), ("status", "bench-1")]
    socket.close()


def test_published_messages_satisfy_the_json_schema(publisher):
    socket = connected_subscriber(publisher)
    publisher.publish_emotion(window(0))
    publisher.publish_emotion(window(1, speech=False))
    publisher.publish_status(**STATUS)
    messages = receive(socket, lambda t, m: t == "status" and m["seq"] > 0, 2.0)
    schema = message_schema()
    assert [t for t, _ in messages] == ["emotion", "emotion", "status"]
    for _, message in messages:
        jsonschema.validate(message, schema)
    socket.close()


def test_the_schema_rejects_messages_that_break_the_contract():
    schema = message_schema()
    good = json.loads(json.dumps(_emotion()))
    jsonschema.validate(good, schema)
    for broken in (
        {k: v for k, v in good.items() if k != "seq"},
        {**good, "speech": False},  # a label without speech
        {**good, "confidence": 1.5},
        {**good, "models": {"rnn": good["models"]["cnn"]}},
        {**good, "device": "kitchen/pi"},  # a device name must be one MQTT topic level
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema)


def _emotion() -> dict:
    from streamer.publish import emotion_message

    return emotion_message(window(0), 0, time.time(), "bench-1")


def test_a_subscriber_that_never_reads_cannot_stall_publishing(tmp_path):
    publisher = Publisher(ipc_address(tmp_path), send_hwm=10, device="bench-1")
    socket = subscribe(publisher.bind)
    socket.setsockopt(zmq.RCVHWM, 10)
    connected_subscriber(publisher)
    started = time.monotonic()
    for index in range(20000):
        publisher.publish_emotion(window(index))
    elapsed = time.monotonic() - started
    assert elapsed < 5.0  # ~0.1 ms a message; blocking on the reader would never return
    received = receive(socket, lambda t, m: False, 0.5)
    seqs = [m["seq"] for t, m in received if t == "emotion"]
    # The reader kept only what the high-water marks let through, and can see the gap.
    assert 0 < len(seqs) < 1000
    assert any(b - a > 1 for a, b in zip(seqs, seqs[1:], strict=False)) or seqs[0] > 0
    socket.close()
    publisher.close()


def test_a_busy_address_is_an_error_naming_it(publisher):
    with pytest.raises(PublishError, match=f"^{publisher.bind}: address already in use$"):
        Publisher(publisher.bind, send_hwm=10, device="bench-1")


def test_tcp_loopback_with_a_busy_port_is_reported_too():
    first = Publisher("tcp://127.0.0.1:*", send_hwm=10, device="bench-1")
    try:
        endpoint = first._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        with pytest.raises(PublishError, match="address already in use"):
            Publisher(endpoint, send_hwm=10, device="bench-1")
    finally:
        first.close()


def test_echo_lines_are_readable():
    message = _emotion()
    line = format_echo(message)
    assert "angry" in line and "0.70" in line and "cnn angry 0.70" in line
    silent = {**message, "speech": False, "label": None, "models": {}}
    assert format_echo(silent).endswith("(no speech)")


def test_an_echo_line_shows_the_window_label_confidence_and_each_models_verdict():
    result = dataclasses.replace(
        window(3),
        label=None,
        confidence=0.31,
        models={
            "cnn": ModelOutput("angry", PROBABILITIES),
            "lstm": ModelOutput("sad", {"angry": 0.3, "neutral": 0.1, "sad": 0.6}),
        },
    )
    line = format_echo(emotion_message(result, 7, result.captured_at, "bench-1"))
    assert line == "   1.50-  3.49 s  (unsure)   0.31  [cnn angry 0.70, lstm sad 0.60]"


def test_an_emotion_message_carries_the_window_as_the_pipeline_judged_it():
    result = window(2)
    message = emotion_message(result, 41, result.captured_at + 0.25, "kitchen")
    assert message["seq"] == 41 and message["device"] == "kitchen"
    assert message["window"] == {"start": 1.0, "end": pytest.approx(2.992)}
    assert message["latency_ms"] == pytest.approx(250.0)
    assert message["models"] == {"cnn": {"label": "angry", "probabilities": PROBABILITIES}}
    assert (message["speech_seconds"], message["speech_probability"]) == (1.5, 0.9)
    assert (message["level_db"], message["inference_ms"]) == (-20.0, 0.4)
    # A clock stepping back between capture and publication gives no negative latency.
    assert emotion_message(result, 42, result.captured_at - 1, "kitchen")["latency_ms"] == 0.0


def test_a_status_message_says_how_much_speech_adapted_the_statistics_only_when_adapting():
    adapting = status_message("kitchen", 3, time.time(), **STATUS, adapted_seconds=42.5)
    assert adapting["adapted_seconds"] == 42.5
    assert adapting["windows"] == 3 and adapting["inference_ms"] == {"p50": 0.3, "p99": 0.9}
    assert "adapted_seconds" not in status_message("kitchen", 4, time.time(), **STATUS)


def test_the_publisher_can_wait_for_a_first_subscriber(publisher):
    started = time.monotonic()
    assert not publisher.wait_for_subscriber(0.2)
    assert time.monotonic() - started >= 0.19
    socket = subscribe(publisher.bind)
    assert publisher.wait_for_subscriber(5.0)
    publisher.publish_emotion(window(0))
    # Subscribed before the first message, so nothing is lost to the slow-joiner race.
    assert receive(socket, lambda topic, m: True, 2.0)[0][1]["seq"] == 0
    socket.close()
