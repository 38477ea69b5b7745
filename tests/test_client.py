"""The client turns the daemon's ZeroMQ messages into typed events, over a real socket."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator

import jsonschema
import numpy as np
import pytest
import soundfile as sf
import zmq
from daemon_support import ROOT, ipc_address, shipped_model_dir

from streamer.audio import read_audio
from streamer.client import (
    ClientError,
    Emotion,
    MessageError,
    Quiet,
    Status,
    Subscriber,
    parse_message,
)
from streamer.models import load_models
from streamer.wire import connect_address, message_schema


def emotion_message(seq: int, label: str | None = "anger", speech: bool = True) -> dict:
    """An emotion message shaped as docs/messages.md specifies."""
    now = time.time()
    return {
        "schema": 1,
        "type": "emotion",
        "device": "kitchen",
        "seq": seq,
        "captured_at": now - 0.05,
        "published_at": now,
        "window": {"start": 0.5 * seq, "end": 0.5 * seq + 2.0},
        "speech": speech,
        "label": label if speech else None,
        "confidence": 0.75,
        # The daemon runs no model on a window without speech.
        "models": {
            "cnn": {"label": "anger", "probabilities": {"anger": 0.8, "neutral": 0.2}},
            "lstm": {"label": "anger", "probabilities": {"anger": 0.7, "neutral": 0.3}},
        }
        if speech
        else {},
        "latency_ms": 48.5,
        "level_db": -23.0 if speech else -70.0,
        "speech_probability": 0.97 if speech else 0.02,
        "speech_seconds": 1.6 if speech else 0.0,
    }


DAEMON_STARTED_AT = time.time() - 12.5


def status_message(seq: int, started_at: float = DAEMON_STARTED_AT) -> dict:
    """A status message of a daemon that started at ``started_at`` (unix seconds)."""
    now = time.time()
    return {
        "schema": 1,
        "type": "status",
        "device": "kitchen",
        "seq": seq,
        "published_at": now,
        "uptime_s": now - started_at,
        "source": {"name": "tests/data/03a01Wa.wav", "state": "running"},
        "overflows": 2,
        "dropped_windows": 1,
        "windows": 40,
        "inference_ms": {"p50": 9.5, "p99": 21.0},
        "models": ["cnn", "lstm"],
    }


@pytest.fixture
def publisher() -> Iterator[zmq.Socket]:
    socket: zmq.Socket = zmq.Context.instance().socket(zmq.PUB)
    socket.setsockopt(zmq.LINGER, 0)
    socket.bind("tcp://127.0.0.1:*")
    yield socket
    socket.close()


def endpoint(socket: zmq.Socket) -> str:
    return socket.getsockopt_string(zmq.LAST_ENDPOINT)


def send(socket: zmq.Socket, message: dict) -> None:
    socket.send_multipart([message["type"].encode(), json.dumps(message).encode()])


def join(publisher: zmq.Socket, subscriber: Subscriber) -> Status:
    """Publishes status messages until the subscriber receives one (ZeroMQ's slow joiner)."""
    for seq in range(100):
        send(publisher, status_message(1000 + seq))
        event = subscriber.receive(timeout=0.05)
        if event is not None:
            assert isinstance(event, Status)
            return event
    raise AssertionError("the subscriber never received a message")


def test_the_messages_these_tests_send_follow_the_daemon_schema():
    schema = message_schema()
    for message in (emotion_message(3), emotion_message(4, speech=False), status_message(5)):
        jsonschema.validate(message, schema)


def test_emotion_and_status_arrive_as_typed_events(publisher):
    with Subscriber(endpoint(publisher)) as subscriber:
        join(publisher, subscriber)
        send(publisher, emotion_message(7))
        emotion = subscriber.receive(timeout=2)
    assert isinstance(emotion, Emotion)
    assert (emotion.seq, emotion.label, emotion.speech) == (7, "anger", True)
    assert emotion.confidence == pytest.approx(0.75)
    assert emotion.window_end - emotion.window_start == pytest.approx(2.0)
    assert emotion.models["lstm"].probabilities == {"anger": 0.7, "neutral": 0.3}
    assert emotion.latency_ms == pytest.approx(48.5)
    assert (emotion.missed, emotion.restarted) == (0, False)


def test_events_name_their_device_and_keep_the_json_as_received(publisher):
    older = {key: value for key, value in emotion_message(8).items() if key != "device"}
    with Subscriber(endpoint(publisher)) as subscriber:
        status = join(publisher, subscriber)
        sent = emotion_message(7)
        send(publisher, sent)
        emotion = subscriber.receive(timeout=2)
        send(publisher, older)
        from_older_daemon = subscriber.receive(timeout=2)
    assert (status.device, emotion.device) == ("kitchen", "kitchen")
    assert json.loads(emotion.payload) == sent
    assert from_older_daemon.device is None and from_older_daemon.seq == 8


def test_status_fields_are_flattened_into_the_event(publisher):
    with Subscriber(endpoint(publisher)) as subscriber:
        status = join(publisher, subscriber)
    assert status.source_name == "tests/data/03a01Wa.wav"
    assert status.source_state == "running"
    assert (status.overflows, status.dropped_windows, status.windows) == (2, 1, 40)
    assert (status.inference_p50_ms, status.inference_p99_ms) == (9.5, 21.0)
    assert status.models == ("cnn", "lstm")


def test_a_gap_in_seq_counts_the_missed_messages_per_topic(publisher):
    with Subscriber(endpoint(publisher)) as subscriber:
        join(publisher, subscriber)
        for seq in (10, 11, 15):
            send(publisher, emotion_message(seq))
        events = [subscriber.receive(timeout=2) for _ in range(3)]
    assert [e.missed for e in events] == [0, 0, 3]
    assert not any(e.restarted for e in events)


def test_seq_going_backwards_is_a_restart_not_a_gap(publisher):
    with Subscriber(endpoint(publisher)) as subscriber:
        join(publisher, subscriber)
        for seq in (50, 51, 0):
            send(publisher, emotion_message(seq))
        events = [subscriber.receive(timeout=2) for _ in range(3)]
    assert [(e.seq, e.restarted, e.missed) for e in events] == [
        (50, False, 0),
        (51, False, 0),
        (0, True, 0),
    ]


def test_a_new_daemon_start_time_is_a_restart_even_when_seq_moves_forward(publisher):
    with Subscriber(endpoint(publisher)) as subscriber:
        join(publisher, subscriber)
        send(publisher, emotion_message(5))
        send(publisher, status_message(2000, started_at=time.time()))
        send(publisher, emotion_message(30))
        events = [subscriber.receive(timeout=2) for _ in range(3)]
    assert [(type(e).__name__, e.restarted, e.missed) for e in events] == [
        ("Emotion", False, 0),
        ("Status", True, 0),
        ("Emotion", True, 0),
    ]


def test_a_restart_seen_first_in_the_emotion_seq_is_reported_once_per_topic(publisher):
    with Subscriber(endpoint(publisher)) as subscriber:
        join(publisher, subscriber)
        send(publisher, emotion_message(50))
        send(publisher, emotion_message(0))
        send(publisher, status_message(0, started_at=time.time()))
        send(publisher, emotion_message(1))
        events = [subscriber.receive(timeout=2) for _ in range(4)]
    assert [(type(e).__name__, e.restarted, e.missed) for e in events] == [
        ("Emotion", False, 0),
        ("Emotion", True, 0),
        ("Status", True, 0),
        ("Emotion", False, 0),
    ]


def test_silence_is_an_event_without_a_label(publisher):
    with Subscriber(endpoint(publisher)) as subscriber:
        join(publisher, subscriber)
        send(publisher, emotion_message(3, speech=False))
        event = subscriber.receive(timeout=2)
    assert isinstance(event, Emotion)
    assert event.speech is False and event.label is None


def test_a_malformed_message_is_counted_and_skipped(publisher):
    broken = emotion_message(4)
    del broken["latency_ms"]
    with Subscriber(endpoint(publisher)) as subscriber:
        join(publisher, subscriber)
        send(publisher, broken)
        publisher.send_multipart([b"emotion", b"{not json"])
        send(publisher, emotion_message(5))
        event = subscriber.receive(timeout=2)
        assert subscriber.malformed == 2
    assert isinstance(event, Emotion) and event.seq == 5


def test_quiet_is_reported_when_nothing_publishes():
    context = zmq.Context.instance()
    probe = context.socket(zmq.PUB)
    probe.bind("tcp://127.0.0.1:*")
    address = endpoint(probe)
    probe.close()  # a free port that nobody publishes on
    started = time.monotonic()
    with Subscriber(address, quiet_after=0.3) as subscriber:
        first = next(iter(subscriber))
    assert isinstance(first, Quiet)
    assert first.ever_received is False
    assert 0.3 <= first.quiet_for < 1.0
    assert time.monotonic() - started < 1.5


def test_the_subscriber_reconnects_when_the_publisher_comes_back():
    context = zmq.Context.instance()
    first = context.socket(zmq.PUB)
    first.setsockopt(zmq.LINGER, 0)
    first.bind("tcp://127.0.0.1:*")
    address = endpoint(first)
    with Subscriber(address) as subscriber:
        join(first, subscriber)
        first.close()
        time.sleep(0.3)
        second = context.socket(zmq.PUB)
        second.setsockopt(zmq.LINGER, 0)
        second.bind(address)
        try:
            status = join(second, subscriber)
        finally:
            second.close()
    assert status.seq >= 1000


def test_an_invalid_address_is_an_error_naming_it():
    with pytest.raises(ClientError, match="tcp://nowhere"):
        Subscriber("tcp://nowhere")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda m: m.update(confidence="high"), "confidence"),
        (lambda m: m["window"].pop("end"), "window.end"),
        (lambda m: m["models"]["cnn"]["probabilities"].update(anger=None), "models.cnn"),
        (lambda m: m.update(schema=2), "schema 2"),
        (lambda m: m.update(seq=True), "seq"),
    ],
)
def test_a_message_breaking_the_schema_names_the_field(change, field):
    message = emotion_message(1)
    change(message)
    with pytest.raises(MessageError, match=field):
        parse_message(b"emotion", json.dumps(message).encode())


def test_a_status_with_an_unknown_source_state_is_refused():
    message = status_message(1)
    message["source"]["state"] = "sleeping"
    with pytest.raises(MessageError, match="source.state 'sleeping'"):
        parse_message(b"status", json.dumps(message).encode())


@pytest.mark.parametrize(
    ("bind", "address"),
    [
        ("tcp://*:5556", "tcp://127.0.0.1:5556"),
        ("tcp://0.0.0.0:6000", "tcp://127.0.0.1:6000"),
        ("tcp://192.168.1.20:5556", "tcp://192.168.1.20:5556"),
        ("ipc:///run/emostream/emostream.sock", "ipc:///run/emostream/emostream.sock"),
    ],
)
def test_a_wildcard_bind_is_reached_on_loopback(bind, address):
    assert connect_address(bind) == address


def test_the_example_subscriber_prints_each_window_of_a_running_daemon(
    test_clips, tmp_path, running_daemon
):
    model_dir = shipped_model_dir()
    clip = tmp_path / "two_clips.wav"
    sf.write(clip, np.concatenate([read_audio(c, 16000) for c in test_clips[:2]]), 16000)
    address = ipc_address(tmp_path)
    example = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "subscriber.py"), address, "--count", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    running_daemon("--source", str(clip), "--bind", address)
    try:
        output, errors = example.communicate(timeout=30)
    finally:
        example.kill()
    assert example.returncode == 0, errors
    # Played in real time, the 4 s file gives windows ending at 1.992, 2.492, 2.992 s ...
    windows = [line.split() for line in output.splitlines() if not line.startswith("--")]
    assert [fields[:2] for fields in windows] == [["2.0", "s"], ["2.5", "s"], ["3.0", "s"]]
    labels = set(load_models(model_dir, ("cnn",))[0].labels) | {"(unsure)"}
    assert all(fields[2] in labels for fields in windows), output
