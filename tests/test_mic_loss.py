"""The microphone vanishes under a running daemon and comes back: the daemon lives through it.

A private PulseAudio server (tests/pulse_support.py) holds the only microphone, a null sink's
monitor; unloading the sink removes it as unplugging a USB microphone would. The daemon captures
it through ALSA's ``pulse`` device, exactly as ``serve --source mic:pulse`` does on a desktop.
"""

from __future__ import annotations

import re
import time

import pytest
from daemon_support import (
    ROOT,
    RunningDaemon,
    receive,
)
from needs import unavailable
from pulse_support import PrivatePulse, has_sound_cards, require_pulseaudio

pytestmark = pytest.mark.mic

RETRY_MAX_SECONDS = 2.0
ANGRY = ROOT / "tests" / "data" / "03a01Wa.wav"


@pytest.fixture()
def pulse():
    require_pulseaudio()
    server = PrivatePulse()
    yield server
    server.stop()


def state_is(state: str):
    return lambda topic, message: topic == "status" and message["source"]["state"] == state


def start_daemon(running_daemon, pulse: PrivatePulse) -> RunningDaemon:
    """``emostream -v serve --source mic:pulse`` on ``pulse``, retrying at most every
    RETRY_MAX_SECONDS."""
    return running_daemon(
        "--source",
        "mic:pulse",
        "--retry-max-seconds",
        str(RETRY_MAX_SECONDS),
        env=pulse.env,
        verbose=True,
    )


def labelled(topic: str, message: dict) -> bool:
    return topic == "emotion" and message["label"] is not None


def test_an_unplugged_microphone_is_reported_lost_retried_with_backoff_and_labels_resume(
    pulse, running_daemon
):
    daemon = start_daemon(running_daemon, pulse)
    subscriber, log_path = daemon.subscriber, daemon.log
    messages: list[tuple[str, dict]] = []
    try:
        messages += receive(subscriber, lambda topic, m: topic == "emotion", timeout=20)
        assert messages and messages[-1][0] == "emotion", log_path.read_text()

        pulse.unplug()
        unplugged = time.monotonic()
        messages += receive(subscriber, state_is("lost"), timeout=10)
        assert state_is("lost")(*messages[-1]), "the loss was not reported"
        # Stay unplugged long enough for the backoff to reach its cap.
        messages += receive(subscriber, lambda t, m: False, timeout=7.0)
        assert daemon.running(), "the daemon died with its microphone"

        pulse.plug_in()
        messages += receive(subscriber, state_is("running"), timeout=3 * RETRY_MAX_SECONDS + 5)
        assert state_is("running")(*messages[-1]), "capture did not resume"
        resumed = time.monotonic()
        player = pulse.play(ANGRY)
        messages += receive(
            subscriber, lambda t, m: t == "emotion" and m["label"] is not None, timeout=15
        )
        player.wait(10)
        assert daemon.running()
    finally:
        status = daemon.stop(timeout=5)
    log = log_path.read_text()
    assert status == 0 and "Traceback" not in log, log

    emotions = [m for t, m in messages if t == "emotion"]
    statuses = [m for t, m in messages if t == "status"]
    assert emotions[-1]["speech"] and emotions[-1]["label"] is not None, "no label after return"
    # One daemon, one socket, all along: both topics' seq run on without a gap or a restart.
    assert [m["seq"] for m in emotions] == list(range(emotions[0]["seq"], emotions[-1]["seq"] + 1))
    assert [m["seq"] for m in statuses] == list(range(statuses[0]["seq"], statuses[-1]["seq"] + 1))
    uptimes = [m["uptime_s"] for m in statuses]
    assert uptimes == sorted(uptimes) and uptimes[-1] - uptimes[0] >= resumed - unplugged
    states = [m["source"]["state"] for m in statuses]
    first_lost, last_lost = states.index("lost"), len(states) - 1 - states[::-1].index("lost")
    assert "running" in states[:first_lost] and "running" in states[last_lost:]
    assert all(state == "lost" for state in states[first_lost : last_lost + 1])
    assert all(m["source"]["name"] == "mic:pulse" for m in statuses)

    # Reopening was retried with exponential backoff up to the configured cap.
    assert "mic:pulse: stopped delivering audio; retrying" in log
    delays = [float(d) for d in re.findall(r"still unavailable .*; next try in ([\d.]+) s", log)]
    assert delays[:2] == [1.0, 2.0], log
    assert len(delays) >= 3 and all(d == RETRY_MAX_SECONDS for d in delays[2:]), delays


def test_a_sound_server_down_across_several_retries_is_waited_for_and_capture_resumes(
    pulse, running_daemon
):
    """PortAudio is rescanned while no sound server runs at all, several times, then it returns."""
    daemon = start_daemon(running_daemon, pulse)
    subscriber, log_path = daemon.subscriber, daemon.log
    messages: list[tuple[str, dict]] = []
    try:
        messages += receive(subscriber, lambda topic, m: topic == "emotion", timeout=20)
        assert messages and messages[-1][0] == "emotion", log_path.read_text()

        pulse.stop_server()
        messages += receive(subscriber, state_is("lost"), timeout=10)
        assert state_is("lost")(*messages[-1]), "the loss was not reported"
        # Retries at about 0.5, 1.5, 3.5 and 5.5 s after the loss: several rescans find nothing.
        messages += receive(subscriber, lambda t, m: False, timeout=6.0)
        failed = re.findall(r"still unavailable", log_path.read_text())
        assert len(failed) >= 3, log_path.read_text()
        assert daemon.running(), "the daemon died with its sound server"

        pulse.start_server()
        messages += receive(subscriber, state_is("running"), timeout=3 * RETRY_MAX_SECONDS + 5)
        assert state_is("running")(*messages[-1]), "capture did not resume"
        player = pulse.play(ANGRY)
        messages += receive(subscriber, labelled, timeout=15)
        player.wait(10)
        assert labelled(*messages[-1]), "no label after the sound server returned"
    finally:
        status = daemon.stop(timeout=5)
    log = log_path.read_text()
    assert status == 0 and "Traceback" not in log, log


def test_a_microphone_missing_at_start_is_waited_for_instead_of_failing(pulse, running_daemon):
    """As a USB microphone not ready at boot: status says lost, retries, then labels."""
    if has_sound_cards():
        unavailable("this machine has sound cards: mic:pulse would not be the only input")
    pulse.stop_server()
    daemon = start_daemon(running_daemon, pulse)
    subscriber, log_path = daemon.subscriber, daemon.log
    messages: list[tuple[str, dict]] = []
    try:
        messages += receive(subscriber, state_is("lost"), timeout=20)
        assert messages and state_is("lost")(*messages[-1]), log_path.read_text()
        messages += receive(subscriber, lambda t, m: False, timeout=2.0)
        assert daemon.running(), log_path.read_text()

        pulse.start_server()
        messages += receive(subscriber, state_is("running"), timeout=3 * RETRY_MAX_SECONDS + 5)
        assert state_is("running")(*messages[-1]), "capture did not start"
        player = pulse.play(ANGRY)
        messages += receive(subscriber, labelled, timeout=15)
        player.wait(10)
        assert labelled(*messages[-1]), "no label once the microphone appeared"
    finally:
        status = daemon.stop(timeout=5)
    log = log_path.read_text()
    assert status == 0 and "Traceback" not in log, log
    assert "mic:pulse: cannot open (no audio input device found); retrying" in log
    states = [m["source"]["state"] for t, m in messages if t == "status"]
    assert states[states.index("lost") :].count("running") >= 1
    assert "running" not in states[: states.index("lost")]
