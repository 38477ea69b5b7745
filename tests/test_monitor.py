"""The monitor, run for real in tmux against real ZeroMQ publishers, read with capture-pane."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import zmq
from daemon_support import emostream_command, free_port, ipc_address
from needs import unavailable
from rich.console import Console
from test_client import emotion_message, status_message

from streamer.audio import read_audio
from streamer.client import Emotion, parse_message
from streamer.monitor import MonitorState, render, timeline_marks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def emotion_event(seq: int, label: str | None, **changes) -> Emotion:
    """A parsed emotion message; label None makes it a silent window."""
    message = emotion_message(seq, label=label or "anger", speech=label is not None)
    event = parse_message(b"emotion", json.dumps(message).encode())
    return Emotion(**{**event.__dict__, **changes})


def screen_text(state: MonitorState, now: float, width: int = 110) -> str:
    console = Console(width=width, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(render(state, now, width))
    return console.export_text()


def test_state_counts_gaps_and_restarts_and_keeps_a_timeline():
    state = MonitorState("tcp://127.0.0.1:1")
    state.update(emotion_event(1, "anger"), now=1.0)
    state.update(emotion_event(5, "neutral", missed=3), now=2.0)
    state.update(emotion_event(6, None), now=3.0)
    assert state.missed_emotions == 3
    assert list(state.timeline) == ["anger", "neutral", None]
    state.update(emotion_event(0, "fear", restarted=True), now=4.0)
    assert state.restarts == 1
    assert list(state.timeline) == ["fear"]


def test_silence_keeps_the_last_speech_bars_and_unsure_speech_is_marked():
    state = MonitorState("tcp://127.0.0.1:1")
    state.update(emotion_event(1, "anger"), now=1.0)
    state.update(emotion_event(2, None, models={}), now=2.0)
    state.update(emotion_event(3, None, speech=True, confidence=0.3), now=3.0)
    screen = screen_text(state, 3.5)
    assert "UNSURE  (leading label 30%)" in screen
    assert "cnn → anger" in screen
    assert _line_with(screen, "timeline") and "a·?" in screen
    state.update(emotion_event(4, None, models={}), now=4.0)
    screen = screen_text(state, 4.5)
    assert "silence" in screen and "last speech" in screen and "80%" in screen


def test_the_screen_says_when_data_is_stale():
    state = MonitorState("tcp://127.0.0.1:1", stale_after=3.0, started_at=0.0)
    assert "Nothing is publishing at tcp://127.0.0.1:1 (waited 5 s)" in screen_text(state, 5.0)
    state.update(emotion_event(1, "anger"), now=10.0)
    assert "ANGER  75%" in screen_text(state, 11.0)
    assert "No messages for 4 s" in screen_text(state, 14.0)


def test_every_label_gets_its_own_single_character_in_the_timeline():
    labels = ["neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
    marks = timeline_marks(labels)
    assert marks == {
        "neutral": "n", "happy": "h", "sad": "s", "angry": "a", "fearful": "f", "disgust": "d",
        "surprised": "S",
    }  # fmt: skip
    crowded = timeline_marks(["sad", "Sadness", "sadder", "s"])
    assert all(len(mark) == 1 for mark in crowded.values())
    assert len(set(crowded.values())) == 4 and not {"·", "?"} & set(crowded.values())


@pytest.mark.parametrize("width", [60, 120, 200])
def test_the_timeline_fills_the_terminal_width_without_wrapping(width):
    state = MonitorState("tcp://127.0.0.1:1")
    for seq in range(300):
        state.update(emotion_event(seq, "anger" if seq % 3 else None), now=1.0)
    state.update(emotion_event(300, "neutral"), now=1.0)
    screen = screen_text(state, 1.5, width)
    lines = screen.splitlines()
    assert all(len(line) <= width for line in lines)
    timeline = lines[lines.index(_line_with(screen, "timeline")) + 1].strip("│ ")
    assert len(timeline) == width - 4 and timeline.endswith("a·aan")
    assert f"last {width - 4} windows" in screen


def test_the_screen_shows_the_input_level_and_whether_the_detector_hears_speech():
    state = MonitorState("tcp://127.0.0.1:1")
    state.update(emotion_event(1, "anger"), now=1.0)  # level -23 dBFS, 1.6 s of speech
    meter = _line_with(screen_text(state, 1.5), "input")
    assert meter.count("█") == round((80 - 23) / 80 * 40)
    assert "-23.0 dBFS  ● speech 1.6 s" in meter
    state.update(emotion_event(2, None), now=2.0)
    meter = _line_with(screen_text(state, 2.5, width=60), "input")
    assert "-70.0 dBFS  ○ no speech 0.0 s" in meter and len(meter) <= 60


class Tmux:
    """A private tmux server (its own socket) holding one session, read with capture-pane."""

    def __init__(self, socket: Path) -> None:
        self.socket = str(socket)
        self.env = {**os.environ, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TERM": "xterm-256color"}

    def run(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-S", self.socket, *args],
            check=True,
            capture_output=True,
            text=True,
            env=self.env,
        ).stdout

    def start(self, command: str) -> None:
        self.run("new-session", "-d", "-s", "main", "-x", "120", "-y", "40", "-c", ROOT, command)

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "main")

    def wait_for(self, condition: Callable[[str], bool], timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if condition(screen):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"screen never matched; last screen:\n{screen}")
            time.sleep(0.2)

    def stop(self) -> None:
        subprocess.run(["tmux", "-S", self.socket, "kill-server"], capture_output=True)


@pytest.fixture
def tmux(tmp_path) -> Iterator[Tmux]:
    if shutil.which("tmux") is None:
        unavailable("tmux is not installed")
    session = Tmux(tmp_path / "tmux.sock")
    yield session
    session.stop()


def monitor_command(address: str) -> str:
    return f"{emostream_command()[0]} monitor {address} --stale-after 1.5"


class Publisher:
    """Publishes contract-shaped messages from a thread, like a daemon would."""

    def __init__(self, address: str, label: str, first_seq: int = 0, skip: int = 0) -> None:
        self.socket: zmq.Socket = zmq.Context.instance().socket(zmq.PUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.bind(address)
        self.label = label
        self.seq = first_seq
        self.skip = skip
        self.started_at = time.time()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        status_seq = 0
        while not self._stop.is_set():
            message = emotion_message(self.seq, label=self.label)
            self.socket.send_multipart([b"emotion", json.dumps(message).encode()])
            status = status_message(status_seq, started_at=self.started_at)
            self.socket.send_multipart([b"status", json.dumps(status).encode()])
            # One gap of ``skip`` messages after the tenth, so the screen must count it.
            self.seq += 1 + (self.skip if self.seq == 10 else 0)
            status_seq += 1
            time.sleep(0.1)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.socket.close()


def test_monitor_says_nothing_is_publishing_when_no_daemon_runs_and_quits_on_ctrl_c(tmux):
    address = f"tcp://127.0.0.1:{free_port()}"
    tmux.start(f"{monitor_command(address)}; echo exit status $?; sleep 60")
    screen = tmux.wait_for(lambda s: "Nothing is publishing" in s)
    assert address in screen
    assert "Is the daemon running?" in screen
    tmux.run("send-keys", "-t", "main", "C-c")
    screen = tmux.wait_for(lambda s: "exit status" in s)
    assert "exit status 0" in screen and "Traceback" not in screen
    assert "Nothing is publishing" not in screen  # the full-screen view is gone


def test_monitor_shows_label_bars_timeline_gaps_and_status(tmux):
    address = f"tcp://127.0.0.1:{free_port()}"
    tmux.start(monitor_command(address))
    tmux.wait_for(lambda s: "Nothing is publishing" in s)
    publisher = Publisher(address, label="anger", skip=4)
    try:
        screen = tmux.wait_for(lambda s: "sequence gaps: 4 emotion" in s)
    finally:
        publisher.stop()
    assert "ANGER  75%" in screen
    assert "speech" in screen and "latency 48 ms" in screen
    assert "cnn → anger" in screen and "lstm → anger" in screen
    bar_line = next(line for line in screen.splitlines() if line.strip("│ ").startswith("anger"))
    assert bar_line.count("█") == 19 + 17  # 80 % and 70 % of 24 characters
    assert "80%" in bar_line and "70%" in bar_line
    timeline = screen.splitlines()[screen.splitlines().index(_line_with(screen, "timeline")) + 1]
    assert timeline.strip("│ ").startswith("aaaa")
    assert "daemon: running · tests/data/03a01Wa.wav" in screen
    assert "p50 9.5 ms, p99 21.0 ms" in screen


def _line_with(screen: str, text: str) -> str:
    return next(line for line in screen.splitlines() if text in line)


def test_monitor_reconnects_and_counts_a_restart_when_the_daemon_comes_back(tmux):
    address = f"tcp://127.0.0.1:{free_port()}"
    tmux.start(monitor_command(address))
    first = Publisher(address, label="anger", first_seq=100)
    try:
        tmux.wait_for(lambda s: "ANGER" in s)
    finally:
        first.stop()
    tmux.wait_for(lambda s: "No messages for" in s and "reconnecting" in s)
    second = Publisher(address, label="sadness", first_seq=0)
    try:
        screen = tmux.wait_for(lambda s: "SADNESS" in s and "1 daemon restart" in s)
    finally:
        second.stop()
    assert "No messages for" not in screen


@pytest.fixture(scope="module")
def two_utterances(test_clips, tmp_path_factory) -> Path:
    """Two committed clips around a 1.5 s pause, as a 16 kHz WAV (5.5 s in real time)."""
    pause = np.zeros(24000, np.float32)
    audio = [read_audio(test_clips[1], 16000), pause, read_audio(test_clips[2], 16000)]
    path = tmp_path_factory.mktemp("audio") / "two.wav"
    sf.write(path, np.concatenate(audio), 16000)
    return path


def test_monitor_follows_a_real_daemon_through_its_end_and_restart(
    tmux, two_utterances, tmp_path, running_daemon
):
    address = ipc_address(tmp_path)
    arguments = ("--source", str(two_utterances), "--bind", address)
    tmux.start(monitor_command(address))
    tmux.wait_for(lambda s: "Nothing is publishing" in s)
    first = running_daemon(*arguments)
    screen = tmux.wait_for(lambda s: "daemon: running" in s and "cnn →" in s, timeout=30)
    assert "models cnn, lstm" in screen
    assert "sequence gaps: 0 emotion" in screen
    assert re.search(r"latency \d+ ms", screen)
    assert first.process.wait(30) == 0, first.errors()
    tmux.wait_for(lambda s: "daemon: ended" in s or "No messages for" in s)
    running_daemon(*arguments)
    screen = tmux.wait_for(lambda s: "1 daemon restart" in s, timeout=30)
    assert "daemon: running" in screen or "daemon: ended" in screen


def test_without_a_terminal_the_monitor_says_what_to_use_instead():
    result = subprocess.run(
        [*emostream_command(), "monitor", f"tcp://127.0.0.1:{free_port()}"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "Error: monitor draws a live screen and needs a terminal; "
        "for one line per window, run examples/subscriber.py"
    )
