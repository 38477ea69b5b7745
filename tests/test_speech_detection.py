"""The daemon hears speech, not the room: everyday sounds are not speech at any loudness, quiet
voices are, and a voice's label does not depend on the microphone gain.

Real recordings only: ``../shared/nonspeech`` (dogs, rain, engines, music, ...) and the speech
corpora. The detector's settings were chosen on part of them (``benchmarks/vad_compare.py``);
these tests hold the daemon to the bar of issue 9 on all of them.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from daemon_support import RunningDaemon, shipped_model_dir
from pulse_support import PrivatePulse, require_pulseaudio

from streamer.audio import read_audio
from streamer.models import load_models
from streamer.pipeline import classify_clip
from streamer.shipped import MODEL_NAMES

RATE = 16000
LEVELS_DB = (-10, -30, -45)
"""Peak levels (dBFS) a clip is played at: a loud, an ordinary and a quiet microphone."""


@pytest.fixture(scope="module")
def models():
    """The models the daemon runs by default: its label is what a user sees."""
    return load_models(shipped_model_dir(), MODEL_NAMES)


def at_peak(audio: np.ndarray, peak_db: float) -> np.ndarray:
    """``audio`` scaled to ``peak_db`` dBFS peak and rounded to 16 bits, as a microphone gives."""
    scaled = audio * (10 ** (peak_db / 20) / np.abs(audio).max())
    return (np.round(scaled * 32767) / 32768).astype(np.float32)


def every_nth(paths: list[Path], count: int) -> list[Path]:
    """About ``count`` of ``paths``, spread evenly over them (speakers, emotions, words)."""
    return paths[:: max(1, len(paths) // count)]


def quiet_ravdess(datasets: Path) -> list[Path]:
    """RAVDESS actor 05's neutral and sad clips, peaking at -28 to -32 dBFS: the quietest."""
    clips = sorted((datasets / "ravdess" / "Actor_05").glob("03-01-0[14]-*.flac"))
    assert len(clips) == 12
    return clips


def emotion_messages(daemon: RunningDaemon, timeout: float) -> list[dict]:
    """Every emotion message until the daemon reports its file source ended."""
    messages = daemon.receive(
        lambda topic, m: topic == "status" and m["source"]["state"] == "ended", timeout=timeout
    )
    emotions = [m for topic, m in messages if topic == "emotion"]
    assert [m["seq"] for m in emotions] == list(range(len(emotions))), "messages were lost"
    return emotions


def test_everyday_sounds_served_from_a_file_are_rarely_speech_and_almost_never_labelled(
    nonspeech, tmp_path, running_daemon
):
    recordings = sorted(nonspeech.glob("*/*.flac"))
    assert len(recordings) >= 200
    audio = np.concatenate([read_audio(path, RATE) for path in recordings])
    source = tmp_path / "nonspeech.wav"
    sf.write(source, audio, RATE, subtype="PCM_16")
    # A large queue: --fast must not outrun the reader.
    daemon = running_daemon("--source", str(source), "--fast", "--send-hwm", "100000")
    emotions = emotion_messages(daemon, timeout=600)
    assert len(emotions) == 1 + (len(audio) - 31872) // 8000
    speech = sum(m["speech"] for m in emotions) / len(emotions)
    labelled = sum(m["label"] is not None for m in emotions) / len(emotions)
    assert speech <= 0.05, f"{speech:.1%} of {len(emotions)} non-speech windows marked speech"
    assert labelled <= 0.01, f"{labelled:.1%} of {len(emotions)} non-speech windows labelled"


@pytest.mark.corpus
def test_nearly_every_utterance_has_speech_including_the_quietest_voices(models, datasets):
    clips = every_nth(sorted((datasets / "ravdess").glob("Actor_*/*.flac")), 240)
    clips += every_nth(sorted((datasets / "tess").glob("*/*.flac")), 240)
    clips += every_nth(sorted((datasets / "emodb" / "wav").glob("*.wav")), 120)
    quiet = quiet_ravdess(datasets)
    missed = [
        clip
        for clip in clips + quiet
        if not any(r.speech for r in classify_clip(read_audio(clip, RATE), models))
    ]
    assert len(missed) <= 0.03 * len(clips + quiet), f"no speech found in {missed}"
    assert not set(missed) & set(quiet), "a quiet RAVDESS clip was missed"


def level_sweep(models, clips: list[Path]) -> dict[int, list]:
    """Each clip classified at every level of LEVELS_DB: {level: [window results, ...]}."""
    results: dict[int, list] = {level: [] for level in LEVELS_DB}
    for clip in clips:
        audio = read_audio(clip, RATE)
        for level in LEVELS_DB:
            results[level] += classify_clip(at_peak(audio, level), models)
    return results


def sweep_clips(datasets: Path) -> list[Path]:
    clips = every_nth(sorted((datasets / "ravdess").glob("Actor_*/*.flac")), 30)
    clips += every_nth(sorted((datasets / "tess").glob("*/*.flac")), 20)
    return clips + every_nth(sorted((datasets / "emodb" / "wav").glob("*.wav")), 20)


@pytest.mark.corpus
def test_the_detector_decides_speech_alike_at_every_level(models, datasets):
    sweep = level_sweep(models, sweep_clips(datasets))
    loud = [r.speech for r in sweep[-10]]
    assert sum(loud) >= 0.8 * len(loud)
    for level in LEVELS_DB[1:]:
        same = sum(a == r.speech for a, r in zip(loud, sweep[level], strict=True))
        assert same >= 0.95 * len(loud), f"{level} dBFS: {same} of {len(loud)} windows agree"


@pytest.mark.corpus
def test_the_same_clip_gets_the_same_label_at_every_level(models, datasets):
    """Also at -45 dBFS peak, where 16-bit rounding noise lies 40-50 dB below the loudest frame:
    the features' 40 dB dynamic range keeps it out (with 80 dB, 26 % of windows changed)."""
    sweep = level_sweep(models, sweep_clips(datasets))
    loud = [(r.speech, r.label) for r in sweep[-10]]
    for level in LEVELS_DB[1:]:
        same = sum(a == (r.speech, r.label) for a, r in zip(loud, sweep[level], strict=True))
        assert same >= 0.9 * len(loud), f"{level} dBFS: {same} of {len(loud)} windows agree"


@pytest.mark.mic
def test_everyday_sounds_into_the_virtual_microphone_are_not_speech_but_a_voice_is(
    nonspeech, test_clips, tmp_path, running_daemon
):
    """Live, through a private PulseAudio server: 3 s of one recording of each kind, then a
    voice."""
    require_pulseaudio()
    kinds: dict[str, Path] = {}
    for path in sorted(nonspeech.glob("*/*.flac")):
        kind = path.stem.rsplit("-", 1)[-1] if path.parent.name == "esc10" else path.parent.name
        kinds.setdefault(kind, path)
    sounds = np.concatenate([read_audio(path, RATE)[: 3 * RATE] for path in kinds.values()])
    voice = read_audio(test_clips[0], RATE)
    played = tmp_path / "room.wav"
    silence = np.zeros(RATE, np.float32)
    sf.write(played, np.concatenate([sounds, silence, voice, silence]), RATE, subtype="PCM_16")
    sounds_end = len(sounds) / RATE

    pulse = PrivatePulse()
    try:
        daemon = running_daemon("--source", "mic:pulse", env=pulse.env)
        first = daemon.receive(lambda topic, m: topic == "emotion", timeout=20)
        assert first and first[-1][0] == "emotion", "no window from the microphone"
        started = first[-1][1]["window"]["end"]
        pulse.play(played).wait(len(sounds) / RATE + 30)
        time.sleep(2.5)
        messages = first + daemon.receive(lambda topic, m: False, timeout=0.5)
        daemon.stop()
    finally:
        pulse.stop()
    emotions = [m for topic, m in messages if topic == "emotion"]
    # Playback starts a little after `started`: windows ending before the voice hold only sounds.
    room = [m for m in emotions if started <= m["window"]["start"] < started + sounds_end - 2.0]
    assert len(room) >= 2 * (sounds_end - 4)
    speech = sum(m["speech"] for m in room)
    assert speech <= 0.05 * len(room), f"{speech} of {len(room)} windows of sounds marked speech"
    assert sum(m["label"] is not None for m in room) <= 0.01 * len(room)
    assert any(m["speech"] for m in emotions if m["window"]["end"] > started + sounds_end)
