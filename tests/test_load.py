"""100 subscribers on loopback, many of which never read: neither capture nor live readers notice.

Two runs of the real daemon. From a live (virtual) microphone, falling behind would show where
it hurts: capture overflows and dropped windows in the status, gaps for live readers. But at
the default rate (about 2 KB/s), the kernel's socket buffers (about 1.6 MB a loopback
connection, measured) absorb a stalled subscriber's share for many minutes, so the second run
serves a file ``--fast``, which fills them within seconds and makes the publisher drop for the
stalled subscribers, to show that it drops rather than waits.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import zmq
from daemon_support import free_port
from pulse_support import PrivatePulse, require_pulseaudio

from streamer.audio import read_audio
from streamer.client import Status, parse_message

SUBSCRIBERS = 100


def seq_gaps(seqs: list[int]) -> int:
    """Messages missing between the first and the last seq received."""
    return sum(b - a - 1 for a, b in zip(seqs, seqs[1:], strict=False))


class Readers:
    """``live`` subscribers read on this thread as fast as they can; the rest of SUBSCRIBERS
    are never read (until ``drain_stalled``) and take as little as they can before pushing
    back."""

    def __init__(self, address: str, live: int) -> None:
        self.context = zmq.Context()
        self.live = [self._socket(address, stalled=False) for _ in range(live)]
        self.stalled = [self._socket(address, stalled=True) for _ in range(SUBSCRIBERS - live)]
        self.seqs: list[dict[str, list[int]]] = [{"emotion": [], "status": []} for _ in self.live]
        self.last_status: dict = {}
        self._poller = zmq.Poller()
        for socket in self.live:
            self._poller.register(socket, zmq.POLLIN)
        self._index = {socket: i for i, socket in enumerate(self.live)}

    def _socket(self, address: str, stalled: bool) -> zmq.Socket:
        socket = self.context.socket(zmq.SUB)
        socket.setsockopt(zmq.LINGER, 0)
        if stalled:
            # One queued message and a tiny kernel buffer, then this subscriber pushes back.
            socket.setsockopt(zmq.RCVHWM, 1)
            socket.setsockopt(zmq.RCVBUF, 1024)
        else:
            # ZeroMQ's own thread takes in everything for a live reader, however far Python
            # lags behind in parsing it: a slow test must not pass for a slow publisher.
            socket.setsockopt(zmq.RCVHWM, 0)
        socket.setsockopt(zmq.SUBSCRIBE, b"")
        socket.connect(address)
        return socket

    def read(self, seconds: float, done=lambda: False) -> None:
        """Reads the live subscribers for ``seconds`` or until ``done()``."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not done():
            for socket, _ in self._poller.poll(100):
                self._read_live(socket)

    def _read_live(self, socket: zmq.Socket) -> None:
        topic, payload = socket.recv_multipart()
        event = parse_message(topic, payload)
        self.seqs[self._index[socket]][topic.decode()].append(event.seq)
        if isinstance(event, Status) and event.seq >= self.last_status.get("seq", -1):
            self.last_status = {**event.__dict__, "state": event.source_state}

    def all_live_received(self) -> bool:
        return all(reader["emotion"] for reader in self.seqs)

    def all_live_saw_the_end(self) -> bool:
        """Every live reader has read the daemon's final status (state ``ended``)."""
        if self.last_status.get("state") != "ended":
            return False
        return all(reader["status"][-1:] == [self.last_status["seq"]] for reader in self.seqs)

    def newest(self) -> int:
        return max((max(reader["emotion"], default=-1) for reader in self.seqs), default=-1)

    def drain_stalled(self, seconds: float, sample: int) -> list[list[int]]:
        """Emotion seqs held by ``sample`` of the stalled subscribers, each read to its first gap.

        Each holds thousands of messages by then (the kernel's buffers grow to megabytes), so
        only a sample is read. Read while the daemon still runs (a closed connection discards
        its pipe), alongside the live subscribers, which must keep up.
        """
        chosen = self.stalled[:: len(self.stalled) // sample][:sample]
        received: list[list[int]] = [[] for _ in chosen]
        # A stalled socket queues one message at a time: each read lets ZeroMQ's thread fetch
        # the next from the kernel, so wait for that (a poll) rather than taking turns with a
        # sleep between them, whose length a loaded machine stretches many times over.
        unread = dict(zip(chosen, received, strict=True))
        poller = zmq.Poller()
        for socket in self.live + chosen:
            poller.register(socket, zmq.POLLIN)
        deadline = time.monotonic() + seconds
        while unread and time.monotonic() < deadline:
            for socket, _ in poller.poll(100):
                if socket not in unread:
                    self._read_live(socket)
                    continue
                topic, payload = socket.recv_multipart()
                if topic == b"emotion":
                    unread[socket].append(json.loads(payload)["seq"])
                if seq_gaps(unread[socket]):
                    poller.unregister(socket)
                    del unread[socket]
        return received

    def close(self) -> None:
        for socket in self.live + self.stalled:
            socket.close()
        self.context.term()


def speech_file(clips: list[Path], seconds: float, path: Path) -> float:
    """The clips with 0.3 s pauses, repeated to at least ``seconds``; returns its length."""
    pause = np.zeros(4800, np.float32)
    once = np.concatenate([part for clip in clips for part in (read_audio(clip, 16000), pause)])
    audio = np.tile(once, int(np.ceil(seconds * 16000 / len(once))))
    sf.write(path, audio, 16000)
    return len(audio) / 16000


@pytest.mark.mic
def test_a_hundred_subscribers_some_never_reading_cannot_slow_microphone_capture(
    test_clips, tmp_path, running_daemon
):
    require_pulseaudio()
    pulse = PrivatePulse()
    speech = tmp_path / "speech.wav"
    speech_file(test_clips, 20, speech)
    address = f"tcp://127.0.0.1:{free_port()}"
    readers = Readers(address, live=60)
    daemon = running_daemon("--source", "mic:pulse", "--bind", address, env=pulse.env)
    log_path = daemon.log
    player = None
    try:
        readers.read(20, done=readers.all_live_received)
        assert readers.all_live_received(), log_path.read_text()
        player = pulse.play(speech)
        loaded_from, first = time.monotonic(), readers.newest()
        readers.read(15)
        loaded_for, last = time.monotonic() - loaded_from, readers.newest()
        assert daemon.running(), log_path.read_text()
    finally:
        if player is not None:
            player.terminate()
        exit_status = daemon.stop(timeout=5)
        readers.close()
        pulse.stop()
    assert exit_status == 0, log_path.read_text()

    # Every live reader saw every message from its first on: consecutive seq, both topics.
    for reader in readers.seqs:
        assert seq_gaps(reader["emotion"]) == 0 and seq_gaps(reader["status"]) == 0
        assert len(reader["emotion"]) >= 0.8 * loaded_for / 0.5
    # Capture kept pace: no overflow, no window skipped, a window per hop (give or take the
    # sound server's delivery bursts) while loaded.
    status = readers.last_status
    assert status["state"] == "running", status
    assert status["overflows"] == 0 and status["dropped_windows"] == 0, status
    assert last - first >= loaded_for / 0.5 - 3


def test_a_hundred_subscribers_some_never_reading_cannot_stall_a_fast_publisher(
    test_clips, tmp_path, running_daemon
):
    hop = 0.2
    speech = tmp_path / "speech.wav"
    speech_file(test_clips, 60, speech)
    address = f"tcp://127.0.0.1:{free_port()}"
    readers = Readers(address, live=20)
    daemon = running_daemon(
        "--source", str(speech), "--loop", "--fast", "--hop", str(hop), "--bind", address
    )
    log_path = daemon.log
    try:
        readers.read(20, done=readers.all_live_received)
        started, first = time.monotonic(), readers.newest()
        # 3000 windows (10 minutes of audio, some 2 MB) later, each stalled subscriber has been
        # sent more than its queue and the kernel's buffers hold: see what reached them.
        readers.read(120, done=lambda: readers.newest() >= first + 3000)
        elapsed, published = time.monotonic() - started, readers.newest() - first
        stalled = readers.drain_stalled(120.0, sample=8)
        assert daemon.running(), log_path.read_text()
    finally:
        exit_status = daemon.stop(timeout=10)
        readers.read(2.0, done=readers.all_live_saw_the_end)
        readers.close()
    assert exit_status == 0, log_path.read_text()

    status = readers.last_status
    assert status["state"] == "ended" and status["dropped_windows"] == 0, status
    # The stalled subscribers pushed back, and the publisher dropped their messages instead of
    # waiting: each has a gap.
    assert all(seq_gaps(received) > 0 for received in stalled), [r[-3:] for r in stalled]
    # Not slowed to anything like real time by those who never read: ten times at least.
    assert published * hop >= 10 * elapsed, f"{published} windows in {elapsed:.1f} s"
    # At this pace a live reader is only as live as this busy, shared CPU lets the test be, so
    # it may lose a burst (the real-time test above requires every message); but the stalled
    # ones did not starve it.
    for reader in readers.seqs:
        assert len(reader["emotion"]) >= 0.5 * published
