"""The voice-activity detector scores 32 ms frames the same however the stream is cut, hears
speech at any level, scores as Silero's own export does, and points at the model file it cannot
load."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from streamer.audio import read_audio
from streamer.models import ModelError
from streamer.vad import DEFAULT_MODEL, FRAME_SAMPLES, SpeechDetector

UPSTREAM_MODEL = DEFAULT_MODEL.parent / "silero_vad_16k_sequence.onnx"
REWRITE_TOOL = Path(__file__).resolve().parent.parent / "tools" / "silero_as_matmuls.py"


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


def test_the_shipped_detector_scores_every_clip_as_silero_s_own_export(test_clips):
    silence = np.zeros(8000, np.float32)
    audio = np.concatenate([part for c in test_clips for part in (read_audio(c, 16000), silence)])
    shipped = scores(audio, 8000)
    upstream = scores(audio, 8000, SpeechDetector(2.0, UPSTREAM_MODEL))
    assert DEFAULT_MODEL != UPSTREAM_MODEL
    assert len(shipped) == len(audio) // FRAME_SAMPLES
    np.testing.assert_allclose(shipped, upstream, rtol=0, atol=5e-5)
    assert np.ptp(upstream) > 0.9  # speech and silence both in the comparison


def test_the_shipped_detector_is_what_the_rewrite_tool_makes_of_silero_s_export(tmp_path):
    onnx = pytest.importorskip("onnx", reason="the rewrite tool needs onnx: the [dev] extra")
    spec = importlib.util.spec_from_file_location("silero_as_matmuls", REWRITE_TOOL)
    assert spec is not None and spec.loader is not None
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    made = tmp_path / "rewritten.onnx"
    tool.main(UPSTREAM_MODEL, made)
    assert made.read_bytes() == DEFAULT_MODEL.read_bytes()
    assert [n.op_type for n in onnx.load(made).graph.node].count("Conv") == 0


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
