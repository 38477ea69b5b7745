"""`emostream devices` lists real inputs, and says clearly when PortAudio or devices are missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from daemon_support import emostream_command
from needs import unavailable
from pulse_support import has_sound_cards

ROOT = Path(__file__).resolve().parent.parent


def emostream(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*emostream_command(), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


@pytest.mark.mic
def test_devices_lists_every_input_with_the_rates_it_accepts(private_sound_server):
    from streamer.sources import list_input_devices

    result = emostream("devices")
    assert result.returncode == 0, result.stderr
    found = list_input_devices()
    assert any(device.name == "pulse" for device in found)
    lines = result.stdout.splitlines()
    for device in found:
        line = next(line for line in lines if f" {device.index}  {device.name}  " in line)
        assert line.startswith("*") == device.default
        assert "16000" in line  # the models' rate, which PulseAudio resamples to
    assert lines[-1].startswith("* default input")


def test_no_input_device_is_a_clear_one_line_error():
    if has_sound_cards():
        unavailable("this machine has sound cards: their inputs would be listed")
    # With the sound server unreachable, the ALSA pulse and default devices cannot be opened.
    result = emostream("devices", env={"PULSE_SERVER": "unix:/nonexistent/emostream-test"})
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "Error: no audio input device found: connect a microphone, or check that PulseAudio or "
        "PipeWire runs and that this user may use audio (group 'audio')"
    ]


def test_missing_portaudio_is_a_clear_one_line_error():
    # sounddevice finds PortAudio with ctypes.util.find_library: make the lookup come up empty,
    # as on a system without libportaudio2, and run the real command line.
    program = (
        "import ctypes.util, sys\n"
        "ctypes.util.find_library = lambda name: None\n"
        "from streamer.cli import main\n"
        "sys.exit(main(['devices']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "Error: PortAudio is not available (PortAudio library not found); "
        "install it: sudo apt install libportaudio2"
    ]
