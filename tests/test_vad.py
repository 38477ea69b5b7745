"""The voice-activity detector scores 32 ms frames the same however the stream is cut, hears
speech at any level, and points at the model file it cannot load."""

from __future__ import annotations

import numpy as np
import pytest

from streamer.audio import read_audio
from streamer.models import ModelError
from streamer.vad import FRAME_SAMPLES, SpeechDetector


@pytest.fixture(scope="module")
def speech(test_clips) -> np.ndarray:
    """Two committed clips with a second of digital silence between: (samples,) float32."""
    first, second = (read_audio(clip, 16000) for clip in test_clips[:2])
    return np.concatenate([first, np.zeros(16000, np.float32), second])


def scores(audio: np.ndarray, block_size: int, detector: SpeechDetector | None = None):
    """Probabilities of every frame of ``audio`` pushed in blocks, each block scored at once."""
    detector = detector or SpeechDetector(2.0)
    scored = []
    for start in range(0, len(audio), block_size):
        detector.push(audio[start : start + block_size])
        scored.append(detector.score())
    return np.concatenate(scored)


@pytest.mark.parametrize("block_size", [7, 512, 1024, 1600])
def test_frame_probabilities_do_not_depend_on_the_block_size(speech, block_size):
    whole = scores(speech, len(speech))
    assert len(whole) == len(speech) // FRAME_SAMPLES
    np.testing.assert_array_equal(scores(speech, block_size), whole)


def test_speech_frames_are_likely_speech_and_silence_is_not(speech, test_clips):
    probabilities = scores(speech, len(speech))
    first = len(read_audio(test_clips[0], 16000))
    gap = probabilities[first // FRAME_SAMPLES + 4 : (first + 16000) // FRAME_SAMPLES]
    assert gap.max() < 0.1
    assert np.mean(probabilities[: first // FRAME_SAMPLES] >= 0.5) > 0.4


def test_a_window_gets_the_frames_wholly_inside_it(speech):
    detector = SpeechDetector(2.0)
    every = scores(speech[:48000], 48000, detector)  # 93 frames: the history keeps the newest 65
    np.testing.assert_array_equal(detector.probabilities(16000, 48000), every[32:93])
    np.testing.assert_array_equal(detector.probabilities(16385, 47615), every[33:92])
    assert len(detector.probabilities(0, 48000)) == 65  # older frames are gone
    assert len(detector.probabilities(47200, 48000)) == 0


def test_reset_starts_a_new_stream(speech):
    detector = SpeechDetector(2.0)
    scores(speech[:20000], 20000, detector)
    detector.push(speech[:300])  # pending, not yet a frame: forgotten too
    detector.reset()
    again = scores(speech[:20000], 20000, detector)
    np.testing.assert_array_equal(again, scores(speech[:20000], 20000))
    assert detector.frames_seen == 20000 // FRAME_SAMPLES


def test_frames_are_scored_when_asked_for(speech):
    detector = SpeechDetector(2.0)
    detector.push(speech[:5000])
    detector.push(speech[5000:16000])
    assert detector.frames_seen == 0
    window = detector.probabilities(0, 16000)
    assert detector.frames_seen == 31
    np.testing.assert_array_equal(window, scores(speech[:16000], 16000))


def test_an_unreadable_detector_model_is_a_one_line_error_naming_it(tmp_path):
    broken = tmp_path / "vad.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(ModelError, match=f"^{broken}: cannot load the speech detector") as error:
        SpeechDetector(2.0, broken)
    assert "\n" not in str(error.value)
