"""`emostream serve` as users run it: a file through the daemon to a real ZeroMQ subscriber."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime

import jsonschema
import numpy as np
import pytest
import soundfile as sf
from daemon_support import (
    ADAPTATION_STATE_KEYS,
    ISOLATED_CONFIG,
    ROOT,
    emostream_command,
    ipc_address,
    shipped_model_dir,
)

from streamer.audio import read_audio
from streamer.models import MODEL_NAMES, load_models
from streamer.pipeline import classify_clip
from streamer.wire import message_schema


def serve_command() -> list[str]:
    """``emostream serve`` reading the tests' empty settings file alone."""
    return [*emostream_command(), "serve", "--config", str(ISOLATED_CONFIG)]


@pytest.fixture(scope="module")
def model_dir():
    return shipped_model_dir()


@pytest.fixture(scope="module")
def conversation(test_clips, tmp_path_factory):
    """The committed clips with 1.5 s pauses and 3 s of trailing silence, as a 16 kHz WAV."""
    pause = np.zeros(24000, np.float32)
    parts = []
    for clip in test_clips:
        parts += [read_audio(clip, 16000), pause]
    path = tmp_path_factory.mktemp("audio") / "conversation.wav"
    sf.write(path, np.concatenate([*parts, np.zeros(48000, np.float32)]), 16000)
    return path


def ended(topic: str, message: dict) -> bool:
    return topic == "status" and message["source"]["state"] == "ended"


def test_a_file_streams_end_to_end_and_equals_offline_classification(
    model_dir, conversation, running_daemon
):
    # classify_clip below is cold: the daemon must not adapt for the two to be equal.
    daemon = running_daemon(
        "--source", str(conversation), "--fast", "--device", "kitchen-pi", "--no-adapt"
    )
    messages = daemon.receive(ended, timeout=60)
    assert daemon.process.wait(10) == 0, daemon.errors()
    schema = message_schema()
    for _, message in messages:
        jsonschema.validate(message, schema)
    assert {message["device"] for _, message in messages} == {"kitchen-pi"}
    emotions = [m for t, m in messages if t == "emotion"]
    statuses = [m for t, m in messages if t == "status"]
    assert [m["seq"] for m in emotions] == list(range(len(emotions)))
    # The daemon waited for this subscriber, so it saw every message from the first.
    assert [m["seq"] for m in statuses] == list(range(len(statuses)))
    assert statuses[0]["source"]["state"] == "starting"
    assert statuses[-1]["windows"] == len(emotions) and statuses[-1]["dropped_windows"] == 0
    assert statuses[-1]["models"] == list(MODEL_NAMES)
    assert "adapted_seconds" not in statuses[-1]

    models = load_models(model_dir, MODEL_NAMES)
    offline = classify_clip(read_audio(conversation, 16000), models)
    assert len(emotions) == len(offline)
    for message, result in zip(emotions, offline, strict=True):
        assert message["window"] == {"start": result.start, "end": result.end}
        assert message["speech"] == result.speech
        assert set(message["models"]) == set(result.models)
        # The daemon computes features in 1024-sample blocks, offline in one go: float rounding
        # differs by ~1e-4 dB, which can move an int8 input by one step and an output by one or
        # two steps of 1/256.
        for name, output in result.models.items():
            assert message["models"][name]["probabilities"] == pytest.approx(
                output.probabilities, abs=0.02
            )
    same_label = sum(m["label"] == r.label for m, r in zip(emotions, offline, strict=True))
    assert same_label >= 0.9 * len(offline)
    assert any(m["speech"] for m in emotions) and not emotions[-1]["speech"]


def _serve_and_listen(running_daemon, audio, *extra: str) -> list[dict]:
    daemon = running_daemon("--source", str(audio), "--fast", *extra)
    messages = daemon.receive(ended, timeout=60)
    assert daemon.process.wait(10) == 0, daemon.errors()
    return [message for _, message in messages]


def test_the_daemon_adapts_on_speech_keeps_the_statistics_across_restarts_and_resets(
    conversation, running_daemon, private_state_directory
):
    state_file = private_state_directory / "emostream" / "adaptation.json"
    first = _serve_and_listen(running_daemon, conversation)
    speech = [m for m in first if m["type"] == "emotion" and m["speech"]]
    heard = 0.5 * len(speech)
    assert speech and first[-1]["adapted_seconds"] == pytest.approx(heard)
    state = json.loads(state_file.read_text())
    assert state["adapted_seconds"] == pytest.approx(heard)
    assert set(state) == ADAPTATION_STATE_KEYS  # statistics, never audio

    second = _serve_and_listen(running_daemon, conversation)
    statuses = [m for m in second if m["type"] == "status"]
    assert statuses[0]["adapted_seconds"] == pytest.approx(heard)  # restored at start
    assert statuses[-1]["adapted_seconds"] == pytest.approx(2 * heard)

    shown = subprocess.run(
        [*emostream_command(), "adapt"], capture_output=True, text=True, timeout=30
    )
    assert f"adapted on {2 * heard:.1f} s of speech" in shown.stdout, shown.stderr
    reset = subprocess.run(
        [*emostream_command(), "adapt", "--reset"], capture_output=True, text=True, timeout=30
    )
    assert reset.returncode == 0 and not state_file.exists()
    third = _serve_and_listen(running_daemon, conversation)
    assert [m for m in third if m["type"] == "status"][0]["adapted_seconds"] == 0


def test_a_damaged_adaptation_state_is_named_in_one_line_and_the_daemon_starts_cold(
    conversation, running_daemon, private_state_directory
):
    state_file = private_state_directory / "emostream" / "adaptation.json"
    state_file.parent.mkdir(parents=True)
    state_file.write_text('{"format": "emostream-adaptation", "version": 1, "first": [1')
    daemon = running_daemon("--source", str(conversation), "--fast")
    messages = daemon.receive(ended, timeout=60)
    assert daemon.process.wait(10) == 0, daemon.errors()
    warnings = [line for line in daemon.errors().splitlines() if str(state_file) in line]
    assert len(warnings) == 1 and "starting cold" in warnings[0]
    statuses = [m for t, m in messages if t == "status"]
    assert statuses[0]["adapted_seconds"] == 0 and statuses[-1]["adapted_seconds"] > 0
    assert json.loads(state_file.read_text())["adapted_seconds"] > 0  # replaced by a good one


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_daemon_within_one_second_with_exit_status_zero(
    conversation, running_daemon, stop_signal
):
    daemon = running_daemon("--source", str(conversation))
    first = daemon.receive(lambda topic, m: topic == "emotion", timeout=15)
    assert first and first[-1][0] == "emotion", daemon.errors()
    started = time.monotonic()
    daemon.process.send_signal(stop_signal)
    # The daemon's stopping is done when its last status says "ended": the source is closed
    # and nothing more is published. What follows is the interpreter's exit, which takes
    # 0.4-2 s of a loaded machine's time and is given more.
    final = daemon.receive(ended, timeout=5)
    elapsed = time.monotonic() - started
    assert final and ended(*final[-1]) and elapsed < 1.0, (elapsed, daemon.errors())
    assert daemon.process.wait(10) == 0
    assert "Traceback" not in daemon.errors()


def test_the_readme_demo_prints_a_label_line_and_ends_with_the_clip(model_dir, tmp_path):
    command = ["--source", "tests/data/03a01Wa.wav", "--echo", "--bind", ipc_address(tmp_path)]
    if model_dir != ROOT / "models":
        command += ["--models-dir", str(model_dir)]
    daemon = subprocess.run(
        [*serve_command(), *command], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    ended_at = time.time()
    assert daemon.returncode == 0, daemon.stderr
    # Timed from its first log line ("publishing on"): Python's imports before it take seconds
    # on a loaded machine, a wait for a subscriber or a slow pace would come after it.
    first_log = re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}", daemon.stderr)
    assert first_log, daemon.stderr
    started = datetime.strptime(first_log[0], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    elapsed = ended_at - started
    lines = daemon.stdout.splitlines()
    assert len(lines) == 1 and "0.00-  1.99 s" in lines[0]
    labels = load_models(model_dir, ("cnn",))[0].labels
    assert any(label in lines[0] for label in labels)
    assert 2.0 <= elapsed < 2.0 + 3.0, elapsed  # real-time pace; models and exit in the rest


def test_sd_notify_reports_ready_watchdog_and_stopping(running_daemon, tmp_path):
    notify_path = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(notify_path))
    listener.settimeout(10)
    env = {"NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": "200000"}
    clip = ROOT / "tests" / "data" / "03a02Ta.wav"
    daemon = running_daemon("--source", str(clip), env=env)
    received = []
    while not received or "STOPPING=1" not in received[-1]:
        received.append(listener.recv(4096).decode())
    assert daemon.process.wait(5) == 0
    assert "READY=1" in received[0] and f"MAINPID={daemon.process.pid}" in received[0]
    watchdogs = sum("WATCHDOG=1" in r for r in received)
    assert watchdogs >= 10  # every 0.1 s over a 2 s clip
    listener.close()


@pytest.mark.parametrize(
    ("arguments", "culprit"),
    [
        (["--models-dir", "/nonexistent/models"], "/nonexistent/models/cnn.tflite"),
        (["--source", "/nonexistent/clip.wav"], "/nonexistent/clip.wav"),
        (["--hop", "0.33"], "pipeline.hop_seconds"),
        (["--bind", "udp://127.0.0.1:1"], "publish.bind"),
        (["--device", "kitchen/pi"], "publish.device"),
    ],
)
def test_user_errors_are_one_line_naming_the_culprit(model_dir, tmp_path, arguments, culprit):
    command = ["--bind", ipc_address(tmp_path), "--models-dir", str(model_dir), *arguments]
    daemon = subprocess.run(
        [*serve_command(), *command], capture_output=True, text=True, timeout=30
    )
    assert daemon.returncode != 0
    errors = [line for line in daemon.stderr.splitlines() if "INFO" not in line]
    assert len(errors) == 1 and culprit in errors[0], daemon.stderr
    assert "Traceback" not in daemon.stderr


def without_portaudio(*arguments: str) -> subprocess.CompletedProcess:
    """The real command line in a process where the PortAudio library cannot be found.

    sounddevice finds it with ctypes.util.find_library: the lookup comes up empty, as on a
    system without libportaudio2 (tests/test_devices.py does the same).
    """
    program = (
        "import ctypes.util, sys\n"
        "ctypes.util.find_library = lambda name: None\n"
        "from streamer.cli import main\n"
        f"sys.exit(main({list(arguments)!r}))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, cwd=ROOT, timeout=60
    )


def test_a_file_is_served_without_portaudio(model_dir, tmp_path, test_clips):
    result = without_portaudio(
        "serve", "--source", str(test_clips[0]), "--fast", "--echo",
        "--bind", ipc_address(tmp_path), "--models-dir", str(model_dir),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stdout.splitlines()) >= 1 and " s  " in result.stdout


def test_a_microphone_without_portaudio_is_one_line_saying_what_to_install(model_dir, tmp_path):
    result = without_portaudio(
        "serve", "--source", "mic", "--bind", ipc_address(tmp_path), "--models-dir", str(model_dir)
    )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "INFO" not in line]
    assert errors == [
        "Error: PortAudio is not available (PortAudio library not found); "
        "install it: sudo apt install libportaudio2"
    ], result.stderr


def test_a_busy_address_is_named(running_daemon, test_clips):
    # Looping, the first daemon holds the address however long the second takes to start.
    first = running_daemon("--source", str(test_clips[0]), "--loop")
    assert first.receive(lambda topic, m: True, timeout=10)
    second = subprocess.run(
        [*serve_command(), "--source", str(test_clips[0]), "--bind", first.address],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert second.returncode != 0
    assert f"{first.address}: address already in use" in second.stderr
    assert "Traceback" not in second.stderr


def test_the_daemon_never_imports_tensorflow_librosa_or_scipy(model_dir, tmp_path):
    """A whole file served in-process leaves TensorFlow, Keras, librosa and SciPy unimported
    (SciPy alone would take a tenth of the 120 MB memory budget)."""
    script = f"""
import sys, threading
from streamer.config import load_config
from streamer.daemon import build_daemon
config = load_config(None, {{
    "source": {{"source": "{ROOT / "tests" / "data" / "03a01Wa.wav"}", "fast": True}},
    "pipeline": {{"model_dir": "{model_dir}"}},
    "publish": {{"bind": "{ipc_address(tmp_path)}"}},
}})
daemon = build_daemon(config)
daemon.run(threading.Event())
assert daemon.pipeline.windows == 1
heavy = sorted(
    m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "librosa", "scipy")
)
print(heavy)
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
