"""Helpers shared by the daemon's tests: the shipped models, a subscriber, a daemon process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import zmq
from needs import unavailable

ROOT = Path(__file__).resolve().parent.parent
ISOLATED_CONFIG = ROOT / "tests" / "data" / "isolated.toml"
"""The empty settings file test daemons read alone: no system or user file changes a test."""


def shipped_model_dir() -> Path:
    """models/ of the repository; tests that need it skip on a clone without models.

    ``EMOSTREAM_MODEL_DIR`` points elsewhere (for trying models before they are shipped).
    """
    model_dir = Path(os.environ.get("EMOSTREAM_MODEL_DIR", ROOT / "models"))
    missing = [n for n in ("cnn", "lstm") if not (model_dir / f"{n}.tflite").is_file()]
    if missing:
        unavailable(f"models {', '.join(missing)} not found in {model_dir}")
    return model_dir


def emostream_command() -> list[str]:
    """The installed ``emostream`` script, as users run it."""
    script = shutil.which("emostream") or str(Path(sys.executable).parent / "emostream")
    return [script]


def subscribe(address: str) -> zmq.Socket:
    """A SUB socket on ``address`` for both topics, reconnecting quickly so nothing is missed."""
    context = zmq.Context.instance()
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


def serve(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """``emostream serve ARGS`` as a child process, output captured as text.

    Without ``--config`` in ARGS, it reads ``ISOLATED_CONFIG`` alone.
    """
    isolated = [] if "--config" in args else ["--config", str(ISOLATED_CONFIG)]
    return subprocess.Popen(
        [*emostream_command(), "serve", *isolated, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def ipc_address(tmp_path: Path) -> str:
    return f"ipc://{tmp_path / 'emostream.sock'}"
