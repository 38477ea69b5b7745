"""The tests' own daemon fixture does what the tests rely on: isolated settings, a subscriber
that sees every message, and a daemon that never outlives its test."""

from __future__ import annotations

import signal

from daemon_support import ROOT

CLIP = ROOT / "tests" / "data" / "03a01Wa.wav"


def ended(topic: str, message: dict) -> bool:
    return topic == "status" and message["source"]["state"] == "ended"


def test_a_test_daemon_reads_neither_the_system_nor_the_users_settings(
    running_daemon, tmp_path, monkeypatch
):
    user = tmp_path / "home" / "emostream" / "emostream.toml"
    user.parent.mkdir(parents=True)
    user.write_text("[publish]\nbnd = 'a key that stops every daemon reading this file'\n")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(user.parent.parent))
    daemon = running_daemon("--source", str(CLIP), "--fast")
    messages = daemon.receive(ended, timeout=30)
    assert daemon.process.wait(10) == 0, daemon.errors()
    # It waited for the fixture's subscriber: every message from the first one arrived.
    statuses = [message for topic, message in messages if topic == "status"]
    assert statuses[0]["seq"] == 0 and statuses[0]["source"]["state"] == "starting"


def test_closing_stops_even_a_daemon_that_ignores_sigterm(running_daemon):
    daemon = running_daemon("--source", str(CLIP), "--loop")
    assert daemon.receive(lambda topic, message: topic == "emotion", timeout=30)
    daemon.process.send_signal(signal.SIGSTOP)  # a stopped process acts on no signal but KILL
    daemon.close(timeout=0.5)
    assert daemon.process.returncode == -signal.SIGKILL
