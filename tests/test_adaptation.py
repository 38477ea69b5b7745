"""Adaptation: running voice statistics start from training, follow the speech heard, persist
(statistics only) and survive any damage to their state file."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from daemon_support import ADAPTATION_STATE_KEYS

from streamer.adaptation import (
    FixedVoice,
    VoiceAdaptation,
    default_state_file,
    load_state,
    save_state,
    session_statistics,
)
from streamer.audio import read_audio
from streamer.features import (
    FeatureExtractor,
    FeatureSpec,
    FeatureStatistics,
    statistics_from_moments,
    window_moments,
)

SPEC = FeatureSpec()
COLUMNS = SPEC.statistics_columns
TRAINING = FeatureStatistics(np.zeros(COLUMNS, np.float32), np.ones(COLUMNS, np.float32))


def _speech_windows(test_clips, gain: float = 1.0):
    """Level-free windows of the committed clips (all hold speech)."""
    extractor = FeatureExtractor(SPEC)
    windows = []
    for clip in test_clips:
        audio = read_audio(clip, SPEC.sample_rate) * gain
        windows += [extractor.level_free(w) for w in extractor.windows(audio, 0.5)]
    return windows


def test_adaptation_starts_from_the_training_statistics_with_nothing_heard():
    adaptation = VoiceAdaptation(TRAINING, SPEC, hop_seconds=0.5)
    assert adaptation.adapted_seconds == 0
    np.testing.assert_array_equal(adaptation.statistics.mean, TRAINING.mean)
    np.testing.assert_array_equal(adaptation.statistics.std, TRAINING.std)


def test_adaptation_moves_to_the_voice_heard_and_counts_its_speech(test_clips):
    windows = _speech_windows(test_clips)
    moments = [window_moments(w) for w in windows]
    voice = statistics_from_moments(
        np.mean([m[0] for m in moments], axis=0), np.mean([m[1] for m in moments], axis=0)
    )
    adaptation = VoiceAdaptation(TRAINING, SPEC, 0.5, memory_seconds=600, prior_seconds=1)
    for window in windows:
        adaptation.observe(window)
    assert adaptation.adapted_seconds == pytest.approx(0.5 * len(windows))
    # The prior (training mean 0) weighs 2 windows against the voice's windows.
    share = len(windows) / (len(windows) + 2)
    np.testing.assert_allclose(adaptation.statistics.mean, share * voice.mean, atol=1e-3)


def test_old_speech_fades_out_once_the_memory_is_full(test_clips):
    first_voice, second_voice = (
        _speech_windows(test_clips[:1])[0],
        _speech_windows(test_clips[-1:])[0],
    )
    adaptation = VoiceAdaptation(TRAINING, SPEC, 0.5, memory_seconds=2, prior_seconds=1)
    for window in [first_voice] * 50 + [second_voice] * 50:
        adaptation.observe(window)
    # A memory of 4 windows: after 50 of the second voice, the first has faded out entirely.
    expected = statistics_from_moments(*window_moments(second_voice))
    np.testing.assert_allclose(adaptation.statistics.mean, expected.mean, atol=1e-3)
    np.testing.assert_allclose(adaptation.statistics.std, expected.std, atol=1e-3)
    assert adaptation.adapted_seconds == 50.0


def test_state_round_trips_and_holds_statistics_not_audio(test_clips, tmp_path):
    adaptation = VoiceAdaptation(TRAINING, SPEC, 0.5)
    for window in _speech_windows(test_clips):
        adaptation.observe(window)
    path = tmp_path / "adaptation.json"
    save_state(adaptation, path)
    state = json.loads(path.read_text())
    assert set(state) == ADAPTATION_STATE_KEYS
    assert len(state["first"]) == len(state["second"]) == COLUMNS
    restored = VoiceAdaptation(TRAINING, SPEC, 0.5)
    assert load_state(restored, path)
    assert restored.adapted_seconds == adaptation.adapted_seconds
    np.testing.assert_allclose(restored.statistics.mean, adaptation.statistics.mean)
    np.testing.assert_allclose(restored.statistics.std, adaptation.statistics.std)


def _valid_state(test_clips) -> dict:
    adaptation = VoiceAdaptation(TRAINING, SPEC, 0.5)
    for window in _speech_windows(test_clips)[:3]:
        adaptation.observe(window)
    return adaptation.to_state()


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda text, state: text[: len(text) // 2], "adaptation state ignored"),
        (lambda text, state: "\x00\xff garbage", "adaptation state ignored"),
        (lambda text, state: json.dumps({**state, "features": {"n_mels": 64}}), "other feature"),
        (lambda text, state: json.dumps({**state, "first": state["first"][:5]}), "columns"),
        (lambda text, state: json.dumps({**state, "weight": float("nan")}), "non-finite"),
        (lambda text, state: json.dumps({**state, "format": "something-else"}), "not an emostream"),
        (lambda text, state: json.dumps([1, 2, 3]), "not an emostream"),
    ],
)
def test_a_damaged_truncated_or_foreign_state_is_named_once_and_training_statistics_stay(
    test_clips, tmp_path, caplog, damage, reason
):
    state = _valid_state(test_clips)
    path = tmp_path / "adaptation.json"
    path.write_text(damage(json.dumps(state), state))
    adaptation = VoiceAdaptation(TRAINING, SPEC, 0.5)
    with caplog.at_level(logging.WARNING, logger="streamer.adaptation"):
        assert not load_state(adaptation, path)
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert str(path) in message and reason in message and "\n" not in message
    np.testing.assert_array_equal(adaptation.statistics.mean, TRAINING.mean)
    assert adaptation.adapted_seconds == 0


def test_a_missing_state_is_a_first_start_without_a_warning(tmp_path, caplog):
    adaptation = VoiceAdaptation(TRAINING, SPEC, 0.5)
    with caplog.at_level(logging.WARNING):
        assert not load_state(adaptation, tmp_path / "absent.json")
    assert not caplog.records


def test_state_lives_in_the_service_state_directory_else_xdg_state_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert default_state_file() == tmp_path / "xdg" / "emostream" / "adaptation.json"
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "systemd"))
    assert default_state_file() == tmp_path / "systemd" / "adaptation.json"


def test_reset_returns_to_the_training_statistics(test_clips):
    adaptation = VoiceAdaptation(TRAINING, SPEC, 0.5)
    for window in _speech_windows(test_clips):
        adaptation.observe(window)
    adaptation.reset()
    assert adaptation.adapted_seconds == 0
    np.testing.assert_array_equal(adaptation.statistics.mean, TRAINING.mean)


def test_a_session_file_is_standardised_with_the_other_files_speech_only(test_clips):
    voices = []
    per_file = []
    for clip in test_clips:
        voice = FixedVoice(TRAINING)
        windows = _speech_windows([clip])
        for window in windows:
            voice.observe(window)
        voices.append(voice)
        per_file.append([window_moments(w) for w in windows])
    others = [m for i, moments in enumerate(per_file) if i != 0 for m in moments]
    expected = statistics_from_moments(
        np.mean([m[0] for m in others], axis=0), np.mean([m[1] for m in others], axis=0)
    )
    statistics = session_statistics(voices, 0)
    np.testing.assert_allclose(statistics.mean, expected.mean, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(statistics.std, expected.std, rtol=1e-5, atol=1e-5)
    assert session_statistics(voices[:1], 0) is None  # a lone file has no others: cold
