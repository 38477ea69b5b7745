"""Sources hand out float32 blocks at the models' rate; files replay in real time or at once."""

from __future__ import annotations

import logging
import re
import time

import numpy as np
import pytest
import soundfile as sf
from needs import unavailable
from pulse_support import has_sound_cards

from streamer.audio import read_audio
from streamer.config import SourceConfig
from streamer.sources import (
    Microphone,
    SourceError,
    UnknownDeviceError,
    WavFile,
    open_source,
    require_portaudio,
    rescan_devices,
    resolve_input_device,
)


def drain(source, timeout: float = 0.5) -> list:
    blocks = []
    while source.state != "ended":
        block = source.read(timeout)
        if block is not None:
            blocks.append(block)
    return blocks


@pytest.mark.parametrize("block_size", [512, 1600])
def test_a_file_replays_every_sample_at_the_models_rate(test_clips, block_size):
    with WavFile(test_clips[0], 16000, block_size, realtime=False) as source:
        assert source.state == "running"
        blocks = drain(source)
    assert source.state == "ended"
    # The clip is 22.05 kHz: resampled block by block, sizes vary around the requested one.
    sizes = [len(b.samples) for b in blocks]
    assert sum(sizes) / len(sizes) == pytest.approx(block_size, rel=0.05)
    assert all(b.samples.dtype == np.float32 for b in blocks)
    np.testing.assert_array_equal(
        np.concatenate([b.samples for b in blocks]), read_audio(test_clips[0], 16000)
    )


def test_a_file_in_real_time_takes_as_long_as_it_lasts(tmp_path):
    path = tmp_path / "tone.wav"
    tone = 0.1 * np.sin(2 * np.pi * 440 * np.arange(0, 0.8, 1 / 48000))
    sf.write(path, tone, 48000)
    started = time.monotonic()
    with WavFile(path, 16000, 1024, realtime=True) as source:
        blocks = drain(source, timeout=0.1)
    elapsed = time.monotonic() - started
    assert sum(len(b.samples) for b in blocks) == 12800  # resampled 48 kHz -> 16 kHz
    assert 0.75 <= elapsed <= 1.2
    # Each block is handed out when its last sample would have been heard.
    gaps = np.diff([b.captured_at for b in blocks])
    assert np.median(gaps) == pytest.approx(1024 / 16000, abs=0.02)


def test_open_source_names_the_missing_file(tmp_path):
    with pytest.raises(SourceError, match="nothing.wav: no such audio file"):
        open_source(SourceConfig(source=str(tmp_path / "nothing.wav")), 16000)


def test_an_unreadable_file_is_named_when_the_source_starts(tmp_path):
    path = tmp_path / "text.wav"
    path.write_text("not audio")
    source = open_source(SourceConfig(source=str(path)), 16000)
    with pytest.raises(SourceError, match="text.wav: unreadable audio"):
        source.start()


def test_mic_sources_are_parsed_from_the_source_setting():
    assert open_source(SourceConfig(source="mic"), 16000).device is None
    named = open_source(SourceConfig(source="mic:USB Audio", device_rate=48000), 16000)
    assert isinstance(named, Microphone)
    assert named.device == "USB Audio" and named.device_rate == 48000
    assert named.name == "mic:USB Audio"


def test_an_unknown_device_is_an_error_naming_it(private_sound_server):
    with pytest.raises(SourceError, match="no input device matching 'no-such-microphone'"):
        resolve_input_device("no-such-microphone")
    with pytest.raises(SourceError, match="no input device with index 999"):
        resolve_input_device(999)
    with pytest.raises(UnknownDeviceError, match="no-such-microphone"):
        Microphone("no-such-microphone", 16000).start()


def test_a_microphone_with_no_device_listed_at_all_is_lost_and_retried(monkeypatch):
    """No input listed (sound server not up yet): not a configuration error, so wait for it."""
    if has_sound_cards():
        unavailable("this machine has sound cards: their inputs are listed")
    monkeypatch.setenv("PULSE_SERVER", "unix:/nonexistent/emostream-test")
    rescan_devices()
    microphone = Microphone("pulse", 16000)
    microphone.start()
    assert microphone.state == "lost"
    assert microphone.read(0.01) is None
    microphone.close()


def test_devices_are_rescanned_after_portaudio_failed_to_initialise():
    """A failed Pa_Initialize (sound server down during a retry) leaves PortAudio uninitialised;
    the next rescan must initialise it again, not fail to terminate it and give up."""
    sounddevice = require_portaudio()
    rescan_devices()
    sounddevice._terminate()  # the state a failed Pa_Initialize leaves behind
    assert sounddevice._initialized == 0
    rescan_devices()
    assert sounddevice._initialized == 1
    sounddevice.query_devices()


def null_inputs(*names: str) -> str:
    """ALSA configuration defining a null capture device (PortAudio lists it) for each name."""
    return "".join(
        f'pcm.{name} {{\n    type null\n    hint {{ show on description "{name}" }}\n}}\n'
        for name in names
    )


def test_a_device_opened_by_index_is_reopened_by_name_when_indices_shift(
    tmp_path, monkeypatch, caplog
):
    """PortAudio numbers devices afresh at each rescan: a new device can take an old index."""
    # ALSA reads ~/.asoundrc, and reads it again when PortAudio rescans after it changed.
    asoundrc = tmp_path / ".asoundrc"
    asoundrc.write_text(null_inputs("zmic"))
    monkeypatch.setenv("HOME", str(tmp_path))
    rescan_devices()
    index = resolve_input_device("zmic")
    microphone = Microphone(index, 16000)
    caplog.set_level(logging.INFO, logger="streamer.sources")
    try:
        microphone.start()
        assert microphone.state == "running"
        microphone.close()
        asoundrc.write_text(null_inputs("amic", "zmic"))
        rescan_devices()
        assert resolve_input_device("amic") == index  # the old index now names another device
        microphone.start()
        assert microphone.state == "running"
    finally:
        microphone.close()
        monkeypatch.undo()
        rescan_devices()
    opened = re.findall(r"capturing from '(\w+)'", caplog.text)
    assert opened == ["zmic", "zmic"], caplog.text
