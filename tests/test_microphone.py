"""The daemon through a real microphone path: PulseAudio's virtual microphone, ALSA, PortAudio.

A private PulseAudio server (tests/pulse_support.py: its own socket, never the user's server)
has a null sink named ``vmic``, the "room": ``paplay -d vmic`` speaks into it, and its monitor
is the default source, which the daemon captures through the ALSA ``pulse`` device. A silent
stream plays into the sink throughout, so that, like a real microphone, the source delivers
audio continuously rather than only while something plays.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from daemon_support import shipped_model_dir
from pulse_support import PrivatePulse, require_pulseaudio

from streamer.audio import read_audio
from streamer.features import FeatureExtractor
from streamer.models import MODEL_NAMES, load_models
from streamer.pipeline import classify_clip
from streamer.sources import Microphone, rescan_devices

pytestmark = pytest.mark.mic

RATE = 16000


@pytest.fixture(scope="module")
def virtual_microphone() -> Iterator[PrivatePulse]:
    """A private PulseAudio server (its own socket) whose vmic monitor delivers audio; this
    process's PortAudio and the daemons it starts use it, and the user's own server is left
    alone."""
    require_pulseaudio()
    pulse = PrivatePulse()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PULSE_SERVER", pulse.env["PULSE_SERVER"])
        try:
            wait_until_delivering()
            yield pulse
        finally:
            pulse.stop()
    rescan_devices()


def wait_until_delivering() -> None:
    """Returns once the virtual microphone delivers audio (a sink may wake slowly)."""
    rescan_devices()
    with Microphone("pulse", RATE) as probe:
        deadline = time.monotonic() + 10
        while probe.read(0.1) is None:
            assert time.monotonic() < deadline, "the virtual microphone delivers no audio"


def play(pulse: PrivatePulse, path: Path) -> None:
    assert pulse.play(path).wait(120) == 0


def test_the_microphone_is_opened_at_a_device_rate_and_resampled(virtual_microphone, tmp_path):
    tone = tmp_path / "tone.wav"
    seconds = np.arange(0, 1.0, 1 / 44100)
    sf.write(tone, 0.3 * np.sin(2 * np.pi * 1000 * seconds), 44100)
    microphone = Microphone("pulse", RATE, block_size=1024, device_rate=48000)
    with microphone:
        assert microphone.capture_rate == 48000 and microphone.state == "running"
        started = time.monotonic()
        player = virtual_microphone.play(tone)
        blocks = []
        while time.monotonic() - started < 2.5:
            block = microphone.read(0.1)
            if block is not None:
                blocks.append(block.samples)
        elapsed = time.monotonic() - started
        player.wait(10)
    audio = np.concatenate(blocks)
    assert audio.dtype == np.float32
    # Every captured second arrives as 16000 samples (minus what is still in the buffers).
    assert 0.85 * elapsed * RATE <= len(audio) <= 1.02 * elapsed * RATE
    loud = audio[np.abs(audio) > 0.1]
    assert len(loud) > 0.5 * RATE
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    peak_hz = np.argmax(spectrum) * RATE / len(audio)
    assert peak_hz == pytest.approx(1000, abs=10)
    assert microphone.overflows == 0


def test_portaudio_overflow_flags_are_counted(virtual_microphone):
    """PortAudio tells the callback when the device dropped input; each time is an overflow in
    status, and the block still goes into the ring."""
    import sounddevice

    overflowed = sounddevice.CallbackFlags()
    overflowed.input_overflow = True
    block = np.full((1024, 1), 0.5, np.float32)
    with Microphone("pulse", RATE, device_rate=RATE) as microphone:
        before = microphone.overflows
        microphone._callback(block, 1024, None, sounddevice.CallbackFlags())
        assert microphone.overflows == before
        for expected in (1, 2):
            microphone._callback(block, 1024, None, overflowed)
            assert microphone.overflows == before + expected
        heard = []
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            if (read := microphone.read(0.05)) is not None:
                heard.append(read.samples)
    assert np.count_nonzero(np.concatenate(heard) == 0.5) == 3 * 1024


def played_sequence(clips: list[Path], tmp_path: Path) -> tuple[Path, np.ndarray]:
    """Clips separated by 3 s of silence (1 s before, 3 s after), as played and as samples."""
    gap = np.zeros(3 * RATE, np.float32)
    parts = [np.zeros(RATE, np.float32)]
    for clip in clips:
        parts += [read_audio(clip, RATE), gap]
    audio = np.concatenate(parts)
    path = tmp_path / "sequence.wav"
    sf.write(path, audio, RATE, subtype="FLOAT")
    return path, audio


def window_levels(extractor, audio: np.ndarray, delay: int, count: int) -> np.ndarray:
    """Loudest frame level (dB) of the first ``count`` windows of ``audio`` delayed by
    ``delay`` samples, as the pipeline reports them in ``level_db``."""
    spec = extractor.spec
    delayed = np.concatenate([np.zeros(delay, np.float32), audio, np.zeros(10 * RATE, np.float32)])
    levels = extractor.frames(delayed).mfcc_energy[:, -1]
    hop_frames = round(0.5 * spec.sample_rate / spec.hop_length)
    return np.array([levels[w * hop_frames :][: spec.n_frames].max() for w in range(count)])


def aligned_offline(models, audio: np.ndarray, levels: list[float]) -> tuple[list, float]:
    """Offline results for ``audio`` delayed so its windows line up with the streamed ones.

    The stream began before playback by an unknown time: find it from the window levels alone
    (the loudest frame of each window), first in whole 20 ms frames, then to 20 samples, and
    classify the audio delayed by that much.
    """
    extractor = FeatureExtractor(models[0].metadata.features)
    hop = extractor.spec.hop_length
    streamed = np.array(levels)
    # Delaying by whole frames prepends silent frames (the played audio starts silent).
    frames = extractor.frames(np.concatenate([audio, np.zeros(10 * RATE, np.float32)]))
    frame_levels = frames.mfcc_energy[:, -1]
    n_frames, hop_frames = extractor.spec.n_frames, round(0.5 * RATE / hop)
    errors = []
    for delay in range(len(frame_levels) - (len(levels) - 1) * hop_frames - n_frames):
        delayed = np.concatenate([np.full(delay, frame_levels.min()), frame_levels])
        window = [delayed[w * hop_frames :][:n_frames].max() for w in range(len(levels))]
        errors.append(float(np.mean(np.abs(np.array(window) - streamed))))
    coarse = int(np.argmin(errors)) * hop
    fine = min(
        range(max(0, coarse - hop), coarse + hop + 1, 20),
        key=lambda delay: np.mean(
            np.abs(window_levels(extractor, audio, delay, len(levels)) - streamed)
        ),
    )
    error = float(np.mean(np.abs(window_levels(extractor, audio, fine, len(levels)) - streamed)))
    padded = np.concatenate([np.zeros(fine, np.float32), audio, np.zeros(10 * RATE, np.float32)])
    return classify_clip(padded, models)[: len(levels)], error


def test_microphone_labels_agree_with_offline_classification_and_pauses_are_not_speech(
    virtual_microphone, test_clips, tmp_path, running_daemon
):
    model_dir = shipped_model_dir()
    path, audio = played_sequence(test_clips, tmp_path)
    # Offline classification below is cold: so must the daemon be.
    daemon = running_daemon("--source", "mic:pulse", "--no-adapt", env=virtual_microphone.env)
    # Capture is running once the first (silent) window arrives.
    first = daemon.receive(lambda topic, m: topic == "emotion", timeout=15)
    assert first and first[-1][0] == "emotion", "no window from the microphone"
    play(virtual_microphone, path)
    time.sleep(2.5)
    assert daemon.stop(timeout=5) == 0
    messages = first + daemon.receive(
        lambda t, m: t == "status" and m["source"]["state"] == "ended", timeout=3
    )
    emotions = [m for t, m in messages if t == "emotion"]
    statuses = [m for t, m in messages if t == "status"]
    assert [m["seq"] for m in emotions] == list(range(len(emotions)))
    assert statuses[-1]["overflows"] == 0 and statuses[-1]["dropped_windows"] == 0

    models = load_models(model_dir, MODEL_NAMES)
    offline, level_error = aligned_offline(models, audio, [m["level_db"] for m in emotions])
    streamed = [round(m["level_db"]) for m in emotions]
    assert level_error < 1.0, f"captured levels differ by {level_error} dB: {streamed}"
    pairs = list(zip(emotions, offline, strict=True))
    assert sum(m["speech"] == r.speech for m, r in pairs) >= 0.95 * len(pairs)
    pauses = [m for m, r in pairs if not r.speech and r.start > 0 and r.level_db < -70]
    assert len(pauses) >= len(test_clips), "too few windows wholly within the pauses"
    assert not any(m["speech"] for m in pauses)
    assert all(m["label"] is None for m in pauses)

    # The virtual microphone resamples twice (PulseAudio to the sink's rate and back to 16 kHz)
    # and quantizes to 16 bits, and the windows line up with the file's only to 20 samples, so
    # a window where two emotions are close to a tie can go either way: most, not all, must
    # agree (each model agreed on 22 to 26 of 26 windows over several runs here).
    spoken = [(m, r) for m, r in pairs if m["speech"] and r.speech]
    assert len(spoken) >= 3 * len(test_clips)
    for name in MODEL_NAMES:
        agree = sum(m["models"][name]["label"] == r.models[name].label for m, r in spoken)
        assert agree >= 0.7 * len(spoken), f"{name}: {agree} of {len(spoken)} windows agree"
    agree = sum(m["label"] == r.label for m, r in spoken)
    assert agree >= 0.6 * len(spoken), f"published labels: {agree} of {len(spoken)} agree"


def test_a_vanished_microphone_is_reported_lost_and_capture_resumes(
    virtual_microphone, running_daemon
):
    """The sound server dies under the daemon and comes back: the daemon lives through it."""
    daemon = running_daemon(
        "--source", "mic:pulse", "--retry-max-seconds", "1.0", env=virtual_microphone.env
    )
    assert daemon.receive(lambda topic, m: topic == "emotion", timeout=15)
    virtual_microphone.stop_server()

    def state_is(state):
        return lambda topic, m: topic == "status" and m["source"]["state"] == state

    lost = daemon.receive(state_is("lost"), timeout=10)
    assert lost and state_is("lost")(*lost[-1]), "the loss was not reported"
    assert daemon.running()
    virtual_microphone.start_server()
    running = daemon.receive(state_is("running"), timeout=20)
    assert running and state_is("running")(*running[-1]), "capture did not resume"
    after = daemon.receive(lambda topic, m: topic == "emotion", timeout=10)
    assert after and after[-1][0] == "emotion"
    assert daemon.stop(timeout=5) == 0
