"""The MQTT bridge against a real Mosquitto, read by mosquitto_sub: topics, Home Assistant
discovery, broker and daemon restarts, and the one-line errors at start."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import jinja2
import jsonschema
import pytest
from broker_support import Mosquitto, Subscription
from daemon_support import ROOT, emostream_command, ipc_address, serve, shipped_model_dir
from test_monitor import tmux  # noqa: F401 (the tmux fixture)

from streamer.fleet import FleetState
from streamer.wire import message_schema

CLIP = ROOT / "tests" / "data" / "03a01Wa.wav"
HOP_SECONDS = 0.5
OFFLINE_AFTER = 3.0
# Home Assistant's discovery topic: <prefix>/<component>/[<node_id>/]<object_id>/config, ids of
# letters, digits, "_" and "-" (homeassistant/components/mqtt/discovery.py).
DISCOVERY_TOPIC = re.compile(
    r"homeassistant/(?P<component>\w+)/(?:(?P<node_id>[a-zA-Z0-9_-]+)/)?"
    r"(?P<object_id>[a-zA-Z0-9_-]+)/config"
)


@pytest.fixture
def broker(tmp_path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path)
    yield broker
    broker.close()


@pytest.fixture
def model_dir() -> Path:
    return shipped_model_dir()


def write_config(tmp_path: Path, mqtt: dict[str, object] | None = None) -> Path:
    """An isolated config file (the user's own is never read), with ``[mqtt]`` settings."""
    lines = ["[mqtt]", f"offline_after = {OFFLINE_AFTER}"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in (mqtt or {}).items()]
    path = tmp_path / "emostream.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


class Device:
    """A daemon reading a clip in a loop in real time, and its bridge to the broker."""

    def __init__(self, tmp_path: Path, broker: Mosquitto, name: str, model_dir: Path) -> None:
        self.name = name
        self.directory = tmp_path / name
        self.directory.mkdir()
        self.address = ipc_address(self.directory)
        self.config = write_config(self.directory)
        self.model_dir = model_dir
        self.broker = broker
        self.daemon: subprocess.Popen | None = None
        self.bridge: subprocess.Popen | None = None
        self.bridge_log = self.directory / "bridge.log"

    def start_daemon(self) -> None:
        self.daemon = serve(
            "--source", str(CLIP), "--loop", "--bind", self.address, "--device", self.name,
            "--models-dir", str(self.model_dir), "--config", str(self.config),
        )  # fmt: skip

    def start_bridge(self) -> None:
        with self.bridge_log.open("a") as log:
            self.bridge = subprocess.Popen(
                [*emostream_command(), "mqtt", self.address, "--broker", self.broker.url]
                + ["--device", self.name, "--config", str(self.config)],
                stdout=log,
                stderr=log,
            )

    def topic(self, leaf: str) -> str:
        return f"emostream/{self.name}/{leaf}"

    def stop(self) -> None:
        for process in (self.bridge, self.daemon):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(10)


@pytest.fixture
def device(tmp_path, broker, model_dir) -> Iterator[Device]:
    device = Device(tmp_path, broker, "kitchen", model_dir)
    yield device
    device.stop()


def availability(subscription: Subscription, device: Device) -> list[str]:
    return [message.payload for message in subscription.on(device.topic("availability"))]


def emotions(subscription: Subscription, device: Device) -> list[dict]:
    return [json.loads(message.payload) for message in subscription.on(device.topic("emotion"))]


def test_mosquitto_sub_sees_emotion_state_status_and_availability_of_a_file_daemon(broker, device):
    watcher = broker.subscribe("emostream/#")
    device.start_daemon()
    device.start_bridge()
    assert watcher.wait_for(
        lambda: (
            watcher.on(device.topic("status"))
            and any(m["speech"] for m in emotions(watcher, device))
            and any(m.payload not in ("", "none") for m in watcher.on(device.topic("state")))
        ),
        timeout=40,
    ), device.bridge_log.read_text()

    received = emotions(watcher, device)
    schema = message_schema()
    for message in received:
        jsonschema.validate(message, schema)
        assert message["device"] == "kitchen"
    # The same JSON as on ZeroMQ, every window, none missing.
    seqs = [message["seq"] for message in received]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    status = json.loads(watcher.on(device.topic("status"))[-1].payload)
    jsonschema.validate(status, schema)
    assert status["source"]["state"] == "running"
    labels = [m["label"] for m in received if m["speech"] and m["label"]]
    states = [message.payload for message in watcher.on(device.topic("state"))]
    # The state is published on change only: never the same twice in a row.
    assert all(a != b for a, b in zip(states, states[1:], strict=False))
    assert set(states) - {"none"} <= set(labels)
    assert availability(watcher, device)[-1] == "online"

    retained = broker.retained("emostream/#")
    assert retained[device.topic("availability")] == "online"
    assert retained[device.topic("state")] in {*labels, "none"}
    assert device.topic("emotion") not in retained  # the stream is not retained

    device.bridge.send_signal(signal.SIGTERM)
    assert device.bridge.wait(5) == 0, device.bridge_log.read_text()
    assert broker.retained("emostream/#")[device.topic("availability")] == "offline"
    assert re.search(
        r"published \d+ availability, \d+ discovery, \d+ emotion", device.bridge_log.read_text()
    )
    watcher.close()


def render(template: str, payload: str) -> str:
    """A Home Assistant value template rendered as HA does (Jinja, value_json = the JSON)."""
    environment = jinja2.Environment()
    environment.filters["tojson"] = json.dumps
    return environment.from_string(template).render(value=payload, value_json=json.loads(payload))


def test_discovery_is_retained_and_has_what_home_assistant_requires(broker, device):
    watcher = broker.subscribe("emostream/kitchen/emotion")
    device.start_daemon()
    device.start_bridge()
    assert watcher.wait_for(
        lambda: any(json.loads(m.payload)["speech"] for m in watcher.messages), timeout=40
    ), device.bridge_log.read_text()
    speech = next(m.payload for m in watcher.messages if json.loads(m.payload)["speech"])
    silence = json.dumps({**json.loads(speech), "speech": False, "label": None, "models": {}})

    configs = {
        topic: json.loads(payload) for topic, payload in broker.retained("homeassistant/#").items()
    }
    assert len(configs) == 3
    components = sorted(DISCOVERY_TOPIC.fullmatch(topic)["component"] for topic in configs)
    assert components == ["binary_sensor", "sensor", "sensor"]
    assert len({config["unique_id"] for config in configs.values()}) == 3
    published = {device.topic(leaf) for leaf in ("emotion", "state")}
    for topic, config in configs.items():
        assert config["state_topic"] in published, topic
        assert config["availability_topic"] == device.topic("availability")
        assert (config["payload_available"], config["payload_not_available"]) == (
            "online",
            "offline",
        )
        assert config["device"]["identifiers"] == ["emostream_kitchen"]
        assert config["device"]["sw_version"]
    by_name = {config["name"]: config for config in configs.values()}
    assert by_name["Emotion"]["state_topic"] == device.topic("state")
    attributes = json.loads(render(by_name["Emotion"]["json_attributes_template"], speech))
    assert set(attributes) == {"confidence", "speech", "models"} and attributes["models"]
    assert render(by_name["Speech"]["value_template"], speech) == "ON"
    assert render(by_name["Speech"]["value_template"], silence) == "OFF"
    confidence = float(render(by_name["Emotion confidence"]["value_template"], speech))
    assert confidence == round(json.loads(speech)["confidence"] * 100)
    watcher.close()


def test_the_bridge_comes_back_after_a_broker_restart_without_replaying_the_outage(broker, device):
    device.start_daemon()
    device.start_bridge()
    before = broker.subscribe("emostream/kitchen/emotion")
    assert before.wait_for(lambda: len(before.messages) >= 4, timeout=40), (
        device.bridge_log.read_text()
    )
    broker.stop()
    before.close()
    last_before = json.loads(before.messages[-1].payload)["seq"]
    time.sleep(6.0)  # about 12 windows while the broker is away
    broker.start()
    after = broker.subscribe("emostream/#")
    assert after.wait_for(lambda: after.on(device.topic("emotion")), timeout=20), (
        device.bridge_log.read_text()
    )

    retained = broker.retained("#")
    assert retained[device.topic("availability")] == "online"
    assert device.topic("state") in retained
    assert len([topic for topic in retained if topic.startswith("homeassistant/")]) == 3
    # Nothing queued while the broker was away: the stream resumes at the daemon's present,
    # and the bridge's log counts what it dropped.
    first_after = json.loads(after.on(device.topic("emotion"))[0].payload)["seq"]
    gap = first_after - last_before - 1
    assert gap >= 6.0 / HOP_SECONDS - 2
    log = device.bridge_log.read_text()
    report = re.search(r"while the broker was away (.*) were dropped \(never queued\)", log)
    assert report, log
    dropped = int(re.search(r"(\d+) emotion", report[1])[1])
    # Dropped by the bridge, plus the few it wrote to the dying connection.
    assert gap - 6 <= dropped <= gap, log
    assert device.bridge.poll() is None
    after.close()


def test_availability_goes_offline_when_the_daemon_or_the_bridge_stops_or_is_lost(broker, device):
    watcher = broker.subscribe(device.topic("availability"))
    device.start_daemon()
    device.start_bridge()
    assert watcher.wait_for(lambda: availability(watcher, device)[-1:] == ["online"], timeout=40)
    device.daemon.send_signal(signal.SIGTERM)
    assert device.daemon.wait(10) == 0
    # The daemon's last status ("ended") says it stopped: offline at once, for that reason, not
    # after OFFLINE_AFTER s of silence (the deadline only bounds a loaded machine's slowness).
    assert watcher.wait_for(lambda: availability(watcher, device)[-1:] == ["offline"], timeout=20)
    assert "is offline (source ended)" in device.bridge_log.read_text()
    device.start_daemon()
    assert watcher.wait_for(lambda: availability(watcher, device)[-1:] == ["online"], timeout=40)
    device.daemon.kill()  # lost: no last word, only silence
    device.daemon.wait(5)
    killed_at = time.monotonic()
    assert watcher.wait_for(lambda: availability(watcher, device)[-1:] == ["offline"], timeout=20)
    assert time.monotonic() - killed_at >= OFFLINE_AFTER - 1
    assert re.search(r"is offline \(no message for \d+ s\)", device.bridge_log.read_text())
    assert device.bridge.poll() is None
    device.start_daemon()
    assert watcher.wait_for(lambda: availability(watcher, device)[-1:] == ["online"], timeout=40)
    device.bridge.kill()  # the bridge itself vanishes: the broker publishes its last will
    assert watcher.wait_for(lambda: availability(watcher, device)[-1:] == ["offline"], timeout=20)
    assert availability(watcher, device) == ["offline", "online"] * 3 + ["offline"]
    assert broker.retained(device.topic("availability")) == {
        device.topic("availability"): "offline"
    }
    watcher.close()


def bridge_error(*arguments: str, config: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*emostream_command(), "mqtt", "ipc:///nonexistent/emostream.sock", *arguments]
        + ["--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if " INFO " not in line]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    return errors[0]


def test_a_bad_broker_url_is_one_line_naming_the_setting(tmp_path):
    result = bridge_error("--broker", "http://127.0.0.1:1883", config=write_config(tmp_path))
    assert "mqtt.broker" in one_error_line(result)


def test_an_unreachable_broker_is_one_line_naming_it(tmp_path):
    from daemon_support import free_port

    url = f"mqtt://127.0.0.1:{free_port()}"
    line = one_error_line(bridge_error("--broker", url, config=write_config(tmp_path)))
    assert url in line and "cannot reach" in line


def test_refused_credentials_are_one_line_and_accepted_ones_connect(tmp_path):
    broker = Mosquitto(tmp_path, users={"kitchen": "s3cret"})
    try:
        wrong = tmp_path / "wrong.password"
        wrong.write_text("guess\n")
        config = write_config(tmp_path, {"username": "kitchen", "password_file": str(wrong)})
        line = one_error_line(bridge_error("--broker", broker.url, config=config))
        assert broker.url in line and "refused" in line and "authori" in line.lower()

        right = tmp_path / "right.password"
        right.write_text("s3cret\n")
        config = write_config(tmp_path, {"username": "kitchen", "password_file": str(right)})
        bridge = subprocess.Popen(
            [*emostream_command(), "mqtt", "ipc:///nonexistent/emostream.sock"]
            + ["--broker", broker.url, "--device", "pantry", "--config", str(config)],
            stderr=subprocess.PIPE,
            text=True,
        )
        watcher = broker.subscribe("emostream/#", credentials=("kitchen", "s3cret"))
        # No daemon there: the device is announced, and offline.
        assert watcher.wait_for(lambda: watcher.on("emostream/pantry/availability"), timeout=15)
        assert watcher.on("emostream/pantry/availability")[-1].payload == "offline"
        bridge.send_signal(signal.SIGTERM)
        assert bridge.wait(5) == 0, bridge.stderr.read()
        watcher.close()
    finally:
        broker.close()


def test_a_missing_password_file_is_one_line_naming_it(tmp_path, broker):
    config = write_config(tmp_path, {"username": "kitchen", "password_file": "/nonexistent/pw"})
    assert "/nonexistent/pw" in one_error_line(bridge_error("--broker", broker.url, config=config))


def test_the_fleet_state_keeps_one_row_per_device_with_its_gaps_and_availability():
    from test_client import emotion_message

    state = FleetState("emostream")
    for seq in (3, 4, 7):
        state.update("emostream/kitchen/emotion", json.dumps(emotion_message(seq)).encode(), 1.0)
    state.update("emostream/attic/availability", b"offline", 2.0)
    state.update("emostream/kitchen/availability", b"online", 2.0)
    state.update("emostream/hall/emotion", b'{"schema": 1, "type": "emotion"}', 3.0)
    state.update("elsewhere/garage/emotion", json.dumps(emotion_message(1)).encode(), 3.0)
    rows = {row.name: row for row in state.rows()}
    assert list(rows) == ["attic", "hall", "kitchen"]
    assert (rows["kitchen"].online, rows["kitchen"].missed, rows["kitchen"].emotion.seq) == (
        True,
        2,
        7,
    )
    assert rows["attic"].online is False and rows["attic"].emotion is None
    assert state.malformed == 1 and rows["hall"].emotion is None


def test_monitor_mqtt_shows_one_row_per_device_on_the_broker(broker, device, tmux):  # noqa: F811
    subprocess.run(
        [broker.sub_program.replace("_sub", "_pub"), "-p", str(broker.port), "-r"]
        + ["-t", "emostream/attic/availability", "-m", "offline"],
        check=True,
    )
    device.start_daemon()
    device.start_bridge()
    tmux.start(f"{emostream_command()[0]} monitor {broker.url} --config {device.config}")
    screen = tmux.wait_for(
        lambda s: "2 devices, 1 online" in s and "s ago" in table_rows(s).get("kitchen", ""),
        timeout=40,
    )
    rows = table_rows(screen)
    assert "online" in rows["kitchen"] and re.search(r"(speech|silence)", rows["kitchen"])
    assert "offline" in rows["attic"] and "never" in rows["attic"]


def table_rows(screen: str) -> dict[str, str]:
    """The fleet table's rows by device name."""
    lines = [line for line in screen.splitlines() if line.count("│") > 5]
    return {line.split("│")[1].strip(): line for line in lines}


def test_mqtts_with_the_brokers_ca_connects_and_without_it_is_one_line(tmp_path):
    broker = Mosquitto(tmp_path, tls=True)
    try:
        line = one_error_line(
            bridge_error("--broker", broker.tls_url, config=write_config(tmp_path))
        )
        assert broker.tls_url in line and "certificate verify failed" in line and "ca_file" in line

        config = write_config(tmp_path, {"ca_file": str(broker.ca_file)})
        bridge = subprocess.Popen(
            [*emostream_command(), "mqtt", "ipc:///nonexistent/emostream.sock"]
            + ["--broker", broker.tls_url, "--device", "cellar", "--config", str(config)],
            stderr=subprocess.PIPE,
            text=True,
        )
        watcher = broker.subscribe("emostream/#")  # on the plain listener
        assert watcher.wait_for(lambda: watcher.on("emostream/cellar/availability"), timeout=15)
        bridge.send_signal(signal.SIGTERM)
        assert bridge.wait(5) == 0, bridge.stderr.read()
        watcher.close()
    finally:
        broker.close()
