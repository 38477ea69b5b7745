"""Helpers shared by the daemon's tests: the shipped models, the one command finder, the one
free-port helper, a subscriber, and the daemon process behind the ``running_daemon`` fixture
(tests/conftest.py)."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import zmq
from needs import unavailable

from streamer.models import MODEL_NAMES

ROOT = Path(__file__).resolve().parent.parent
ISOLATED_CONFIG = ROOT / "tests" / "data" / "isolated.toml"
"""The empty settings file test daemons read alone: no system or user file changes a test."""
ADAPTATION_STATE_KEYS = {
    "format",
    "version",
    "features",
    "adapted_seconds",
    "weight",
    "first",
    "second",
}
"""Every key of the daemon's saved adaptation state: statistics and their bookkeeping, no audio."""


def shipped_model_dir() -> Path:
    """models/ of the repository; tests that need it skip on a clone without models.

    ``EMOSTREAM_MODEL_DIR`` points elsewhere (for trying models before they are shipped).
    """
    model_dir = Path(os.environ.get("EMOSTREAM_MODEL_DIR", ROOT / "models"))
    missing = [n for n in MODEL_NAMES if not (model_dir / f"{n}.tflite").is_file()]
    if missing:
        unavailable(f"models {', '.join(missing)} not found in {model_dir}")
    return model_dir


def emostream_command() -> list[str]:
    """The installed ``emostream`` script, as users run it."""
    script = shutil.which("emostream") or str(Path(sys.executable).parent / "emostream")
    return [script]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, below the ephemeral range.

    Subscribers connect before the daemon binds and keep retrying; to a port in the ephemeral
    range, Linux sometimes picks that very port as the source and the socket connects to itself
    (TCP simultaneous open), which then keeps the daemon from binding it.
    """
    lowest_ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        for port in random.sample(range(10000, lowest_ephemeral), 200):
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    finally:
        probe.close()
    raise AssertionError("no free port below the ephemeral range")


def subscribe(address: str) -> zmq.Socket:
    """A SUB socket on ``address`` for both topics, reconnecting quickly so nothing is missed."""
    context: zmq.Context = zmq.Context.instance()
    socket = context.socket(zmq.SUB)
    socket.setsockopt(zmq.RECONNECT_IVL, 10)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.SUBSCRIBE, b"emotion")
    socket.setsockopt(zmq.SUBSCRIBE, b"status")
    socket.connect(address)
    return socket


def receive(socket: zmq.Socket, until, timeout: float) -> list[tuple[str, dict]]:
    """Messages as (topic, decoded json) until ``until(topic, message)`` is true or timeout."""
    messages: list[tuple[str, dict]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not socket.poll(50):
            continue
        topic, payload = socket.recv_multipart()
        message = (topic.decode(), json.loads(payload))
        messages.append(message)
        if until(*message):
            break
    return messages


def serve(
    *args: str,
    env: dict[str, str] | None = None,
    verbose: bool = False,
    output: Path | None = None,
) -> subprocess.Popen:
    """``emostream serve ARGS`` as a child process, output captured as text, or written to
    ``output`` (standard error) and ``output`` + ".out" (standard output) when given.

    Without ``--config`` in ARGS, it reads ``ISOLATED_CONFIG`` alone.
    """
    isolated = [] if "--config" in args else ["--config", str(ISOLATED_CONFIG)]
    command = [*emostream_command(), *(["-v"] if verbose else []), "serve", *isolated, *args]
    environment = {**os.environ, **(env or {})}
    if output is None:
        return subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment
        )
    with output.open("w") as errors, Path(f"{output}.out").open("w") as printed:
        return subprocess.Popen(command, stdout=printed, stderr=errors, env=environment)


@dataclass
class RunningDaemon:
    """A daemon started by the ``running_daemon`` fixture, and the subscriber it waited for."""

    process: subprocess.Popen
    """The ``emostream serve`` process."""
    address: str
    """Where it publishes."""
    subscriber: zmq.Socket
    """Subscribed to both topics before the daemon started."""
    log: Path
    """Its standard error (standard output is in ``log`` + ".out")."""

    def receive(self, until: Callable[[str, dict], bool], timeout: float) -> list[tuple[str, dict]]:
        """Messages until ``until(topic, message)`` holds or ``timeout`` seconds pass."""
        return receive(self.subscriber, until, timeout)

    def errors(self) -> str:
        """What it has written to standard error so far."""
        return self.log.read_text()

    def output(self) -> str:
        """What it has written to standard output so far."""
        return Path(f"{self.log}.out").read_text()

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, stop_signal: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Sends ``stop_signal`` unless it has exited; returns its exit status."""
        if self.running():
            self.process.send_signal(stop_signal)
        return self.process.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Stops it whatever state it is in (SIGTERM, then SIGKILL after ``timeout`` seconds)
        and closes the subscriber."""
        try:
            self.stop(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        finally:
            self.subscriber.close()


def ipc_address(tmp_path: Path) -> str:
    return f"ipc://{tmp_path / 'emostream.sock'}"
