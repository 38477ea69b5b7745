"""The feature module computes what librosa computes, and the same numbers hop by hop."""

from __future__ import annotations

import dataclasses
import json

import librosa
import numpy as np
import pytest

from streamer.audio import read_audio
from streamer.bench import librosa_features
from streamer.features import (
    PITCH_REFERENCE_HZ,
    PROSODY_COLUMNS,
    STD_FLOOR,
    FeatureExtractor,
    FeatureSpec,
    FeatureStatistics,
    FrameFeatures,
    StreamingFeatures,
    hop_frames_for,
    mel_basis,
    statistics_from_moments,
    window_moments,
)

SPEC = FeatureSpec()


def librosa_reference(audio: np.ndarray, spec: FeatureSpec) -> tuple[np.ndarray, np.ndarray]:
    """Log-mel and MFCC+RMS computed the textbook way with librosa, (frames, columns)."""
    reference = librosa_features(audio, spec)
    return reference["log_mel"], reference["mfcc_energy"]


def test_features_equal_librosa_on_committed_clips(test_clips):
    extractor = FeatureExtractor(SPEC)
    assert test_clips, "tests/data holds no clips"
    for clip in test_clips:
        audio = read_audio(clip, SPEC.sample_rate)
        frames = extractor.frames(audio)
        mel_db, mfcc_energy = librosa_reference(audio, SPEC)
        # float32 against librosa's float32/float64 mix: within 0.01 dB and 0.01 MFCC units
        np.testing.assert_allclose(frames.log_mel, mel_db, atol=1e-2)
        np.testing.assert_allclose(frames.mfcc_energy, mfcc_energy, atol=1e-2)


@pytest.mark.corpus
def test_features_equal_librosa_on_each_corpus(datasets):
    extractor = FeatureExtractor(SPEC)
    clips = [
        datasets / "ravdess/Actor_05/03-01-05-02-01-01-05.flac",
        datasets / "tess/YAF_fear/YAF_back_fear.flac",
        datasets / "emodb/wav/16b10Wb.wav",
    ]
    for clip in clips:
        audio = read_audio(clip, SPEC.sample_rate)
        frames = extractor.frames(audio)
        mel_db, mfcc_energy = librosa_reference(audio, SPEC)
        np.testing.assert_allclose(frames.log_mel, mel_db, atol=1e-2)
        np.testing.assert_allclose(frames.mfcc_energy, mfcc_energy, atol=1e-2)


def test_a_window_has_the_frames_its_spec_promises():
    extractor = FeatureExtractor(SPEC)
    audio = np.random.default_rng(0).normal(0, 0.1, SPEC.window_samples).astype(np.float32)
    frames = extractor.frames(audio)
    assert frames.log_mel.shape == (SPEC.n_frames, SPEC.n_mels)
    assert frames.mfcc_energy.shape == (SPEC.n_frames, SPEC.n_mfcc + 1)
    assert frames.get("frame_features").shape == (SPEC.n_frames, SPEC.frame_columns)
    assert frames.get("functionals").shape == (SPEC.n_functionals,)
    assert SPEC.statistics_columns == SPEC.frame_columns + SPEC.n_functionals


@pytest.mark.parametrize("block_size", [512, 1024, 1600, 7])
def test_streaming_frames_equal_whole_clip_frames_at_any_block_size(test_clips, block_size):
    extractor = FeatureExtractor(SPEC)
    audio = np.concatenate([read_audio(c, SPEC.sample_rate) for c in test_clips[:2]])
    whole = extractor.frames(audio)
    streaming = StreamingFeatures(extractor)
    for start in range(0, len(audio), block_size):
        streaming.push(audio[start : start + block_size])
    assert streaming.frames_seen == len(whole)
    window = streaming.window()
    # Bit for bit: a difference of one rounding step can move an int8 model input by one step.
    np.testing.assert_array_equal(window.log_mel, whole.log_mel[-SPEC.n_frames :])
    np.testing.assert_array_equal(window.mfcc_energy, whole.mfcc_energy[-SPEC.n_frames :])


def test_a_window_asked_for_between_blocks_holds_the_frames_completed_so_far(test_clips):
    extractor = FeatureExtractor(SPEC)
    audio = read_audio(test_clips[0], SPEC.sample_rate)[: 3 * SPEC.window_samples]
    whole = extractor.frames(audio)
    streaming = StreamingFeatures(extractor)
    for start in range(0, len(audio), 1024):
        streaming.push(audio[start : start + 1024])
        seen = streaming.frames_seen
        window = streaming.window()
        held = min(seen, SPEC.n_frames)
        np.testing.assert_array_equal(
            window.log_mel[SPEC.n_frames - held :], whole.log_mel[seen - held : seen]
        )
        np.testing.assert_array_equal(
            window.prosody[SPEC.n_frames - held :], whole.prosody[seen - held : seen]
        )


@pytest.mark.parametrize(("extra_hops", "windows"), [(0, 1), (1, 2), (3, 4)])
def test_a_clip_gives_one_window_per_hop_after_the_first_window(extra_hops, windows):
    extractor = FeatureExtractor(SPEC)
    samples = SPEC.window_samples - (SPEC.window_samples - SPEC.n_fft) % SPEC.hop_length
    audio = np.ones(samples + extra_hops * 8000, np.float32)
    assert len(extractor.windows(audio, 0.5)) == windows
    assert len(extractor.windows(audio[:-1], 0.5)) == max(1, windows - 1)


def test_a_short_clip_is_padded_with_silence_at_its_end():
    extractor = FeatureExtractor(SPEC)
    audio = np.random.default_rng(4).normal(0, 0.1, 8000)  # float64 in, as numpy makes it
    (window,) = extractor.windows(audio, 0.5)
    padded = np.concatenate([audio, np.zeros(SPEC.window_samples - 8000)]).astype(np.float32)
    np.testing.assert_array_equal(window.log_mel, extractor.frames(padded).log_mel)
    assert window.log_mel.dtype == np.float32


def test_cmvn_gives_each_column_zero_mean_and_unit_variance(test_clips):
    extractor = FeatureExtractor(dataclasses.replace(SPEC, normalisation="cmvn"))
    window = extractor.windows(read_audio(test_clips[0], SPEC.sample_rate), 0.5)[0]
    normalised = extractor.model_inputs(window).log_mel
    np.testing.assert_allclose(normalised.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(normalised.std(axis=0), 1, atol=2e-2)


def _window(log_mel_spread: float, mfcc_spread: float, seed: int = 0) -> FrameFeatures:
    """A window of random frame features around -40 dB and 0, with the spreads given."""
    rng = np.random.default_rng(seed)
    log_mel = rng.normal(-40.0, log_mel_spread, (SPEC.n_frames, SPEC.n_mels))
    mfcc_energy = rng.normal(0.0, mfcc_spread, (SPEC.n_frames, SPEC.n_mfcc + 1))
    prosody = rng.normal(0.0, mfcc_spread, (SPEC.n_frames, PROSODY_COLUMNS))
    return FrameFeatures(*(a.astype(np.float32) for a in (log_mel, mfcc_energy, prosody)))


def test_cmvn_never_amplifies_a_column_beyond_unit_spread_and_leaves_a_flat_one_at_zero():
    extractor = FeatureExtractor(dataclasses.replace(SPEC, normalisation="cmvn"))
    window = _window(1.0, 2.0)
    window.log_mel[:, 0] = -80.0  # a band that never moves
    inputs = extractor.model_inputs(window)
    for columns in (inputs.log_mel, inputs.mfcc_energy):
        assert columns.dtype == np.float32
        np.testing.assert_allclose(columns.mean(axis=0), 0, atol=1e-4)
        assert np.all(columns.std(axis=0) <= 1.0)
    np.testing.assert_allclose(inputs.log_mel.std(axis=0)[1:], 1, atol=2e-3)
    np.testing.assert_allclose(inputs.mfcc_energy.std(axis=0), 1, atol=2e-3)
    np.testing.assert_array_equal(inputs.log_mel[:, 0], 0.0)


def test_without_normalisation_the_models_get_the_frame_features_as_they_are():
    window = _window(1.0, 2.0)
    assert (
        FeatureExtractor(dataclasses.replace(SPEC, normalisation="none")).model_inputs(window)
        is window
    )


def test_a_voices_statistics_are_the_mean_and_spread_of_its_windows_each_weighing_the_same():
    windows = [_window(0.5, 3.0, seed) for seed in range(3)]
    for window in windows:
        window.log_mel[:, 0] = -80.0  # a band that never moves: its spread is floored
    moments = [window_moments(window) for window in windows]
    statistics = statistics_from_moments(
        np.mean([first for first, _ in moments], axis=0),
        np.mean([second for _, second in moments], axis=0),
    )
    frames = np.concatenate([window.get("frame_features") for window in windows])
    assert statistics.mean.shape == statistics.std.shape == (SPEC.statistics_columns,)
    assert statistics.mean.dtype == statistics.std.dtype == np.float32
    split = SPEC.frame_columns
    np.testing.assert_allclose(statistics.mean[:split], frames.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(
        statistics.std[:split], np.maximum(frames.std(axis=0), STD_FLOOR), rtol=1e-4
    )
    assert statistics.std[0] == np.float32(STD_FLOOR)
    assert 0.4 < statistics.std[1] < 0.6
    # A window's functionals are one value each: their statistics are over the windows.
    functionals = np.stack([window.functionals for window in windows])
    np.testing.assert_allclose(statistics.mean[split:], functionals.mean(axis=0), rtol=1e-4)
    np.testing.assert_allclose(
        statistics.std[split:], np.maximum(functionals.std(axis=0), STD_FLOOR), rtol=1e-3
    )


@pytest.mark.parametrize("peak_dbfs", [-10.0, -30.0, -45.0])
def test_level_free_features_do_not_depend_on_the_microphone_gain(test_clips, peak_dbfs):
    extractor = FeatureExtractor(SPEC)
    audio = read_audio(test_clips[0], SPEC.sample_rate)
    audio = audio / np.abs(audio).max()
    reference = extractor.level_free(extractor.windows(audio, 0.5)[0])
    quieter = extractor.level_free(extractor.windows(audio * 10 ** (peak_dbfs / 20), 0.5)[0])
    # Levels are relative to the loudest frame and the floor moves with it: equal to rounding.
    np.testing.assert_allclose(quieter.log_mel, reference.log_mel, atol=1e-2)
    np.testing.assert_allclose(quieter.mfcc_energy, reference.mfcc_energy, atol=5e-2)
    # Pitch and voicing are ratios of the frame's own correlations: no level in them at all.
    np.testing.assert_allclose(quieter.prosody, reference.prosody, atol=1e-3)
    assert reference.mfcc_energy[:, -1].max() == 0.0
    assert reference.log_mel.dtype == reference.mfcc_energy.dtype == np.float32
    assert reference.log_mel.min() >= -SPEC.dynamic_range_db


def test_speaker_normalisation_standardises_each_column_with_the_voice_statistics(test_clips):
    extractor = FeatureExtractor(SPEC)
    window = extractor.windows(read_audio(test_clips[0], SPEC.sample_rate), 0.5)[0]
    level_free = extractor.level_free(window)
    columns = SPEC.statistics_columns
    mean = np.linspace(-30, 0, columns).astype(np.float32)
    std = np.linspace(1, 10, columns).astype(np.float32)
    inputs = extractor.model_inputs(window, FeatureStatistics(mean, std))
    np.testing.assert_allclose(
        inputs.log_mel, (level_free.log_mel - mean[:40]) / std[:40], atol=1e-5
    )
    np.testing.assert_allclose(
        inputs.mfcc_energy, (level_free.mfcc_energy - mean[40:61]) / std[40:61], atol=1e-5
    )
    np.testing.assert_allclose(
        inputs.prosody, (level_free.prosody - mean[61:63]) / std[61:63], atol=1e-5
    )
    # The functionals are those of the level-free window, standardised: not functionals of
    # the standardised frames.
    np.testing.assert_allclose(
        inputs.get("functionals"), (level_free.functionals - mean[63:]) / std[63:], atol=1e-4
    )
    assert inputs.log_mel.dtype == inputs.mfcc_energy.dtype == np.float32
    assert inputs.get("functionals").dtype == np.float32
    with pytest.raises(ValueError, match="statistics"):
        extractor.model_inputs(window)


def test_voice_statistics_round_trip_and_refuse_wrong_sizes_and_non_finite_values():
    columns = SPEC.statistics_columns
    good = {"mean": [0.0] * columns, "std": [1.0] * columns}
    statistics = FeatureStatistics.from_dict(good, columns)
    assert statistics.mean.shape == statistics.std.shape == (columns,)
    saved = FeatureStatistics(np.linspace(-30, 0, columns), np.linspace(1, 10, columns))
    restored = FeatureStatistics.from_dict(json.loads(json.dumps(saved.to_dict())), columns)
    np.testing.assert_allclose(restored.mean, saved.mean, rtol=1e-6)
    np.testing.assert_allclose(restored.std, saved.std, rtol=1e-6)
    assert statistics.mean.dtype == statistics.std.dtype == np.float32
    for bad in (
        {"mean": [0.0] * 3, "std": [1.0] * 3},
        {**good, "std": [1.0] * 3},
        {**good, "std": [0.0] * columns},
        {**good, "mean": [float("nan")] * columns},
    ):
        with pytest.raises(ValueError, match="statistics"):
            FeatureStatistics.from_dict(bad, columns)


def test_a_hop_that_is_not_whole_frames_is_refused():
    with pytest.raises(ValueError, match="hop 0.33"):
        FeatureExtractor(SPEC).windows(np.zeros(40000, np.float32), 0.33)
    assert hop_frames_for(SPEC, 0.02) == 1  # one frame is the shortest hop
    with pytest.raises(ValueError, match="hop 0.01"):
        hop_frames_for(SPEC, 0.01)


def test_a_window_of_one_fft_frame_is_the_shortest_and_normalisations_are_named():
    assert FeatureSpec(window_seconds=SPEC.n_fft / SPEC.sample_rate).n_frames == 1
    with pytest.raises(ValueError, match="window_seconds"):
        FeatureSpec(window_seconds=(SPEC.n_fft - 1) / SPEC.sample_rate)
    with pytest.raises(ValueError, match="normalisation 'global'"):
        FeatureSpec(normalisation="global")


def test_audio_shorter_than_one_frame_gives_no_frames_of_the_right_width():
    frames = FeatureExtractor(SPEC).frames(np.zeros(SPEC.n_fft - 1, np.float32))
    assert frames.log_mel.shape == (0, SPEC.n_mels)
    assert frames.mfcc_energy.shape == (0, SPEC.n_mfcc + 1)
    assert frames.log_mel.dtype == frames.mfcc_energy.dtype == np.float32


def test_streaming_counts_the_frames_each_block_completes():
    streaming = StreamingFeatures(FeatureExtractor(SPEC))
    assert streaming.push(np.zeros(SPEC.n_fft - 1, np.float32)) == 0
    assert streaming.push(np.zeros(1, np.float32)) == 1
    assert streaming.push(np.zeros(3 * SPEC.hop_length, np.float32)) == 3
    assert streaming.frames_seen == 4 and not streaming.full
    window = streaming.window()
    assert window.log_mel.dtype == window.mfcc_energy.dtype == np.float32


def test_spec_round_trips_through_its_dict_and_rejects_unknown_keys():
    spec = dataclasses.replace(SPEC, n_mels=64)
    assert FeatureSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="'n_mel'"):
        FeatureSpec.from_dict({"n_mel": 64})


def test_a_short_clip_still_yields_one_padded_window():
    windows = FeatureExtractor(SPEC).windows(np.ones(8000, np.float32) * 0.1, 0.5)
    assert len(windows) == 1 and windows[0].log_mel.shape == (SPEC.n_frames, SPEC.n_mels)


@pytest.mark.parametrize(
    "changes",
    [{}, {"n_mels": 64, "fmin": 0.0}, {"sample_rate": 22050, "n_fft": 1024, "fmax": 11025.0}],
)
def test_mel_filterbank_equals_librosas(changes):
    spec = dataclasses.replace(SPEC, **changes)
    expected = librosa.filters.mel(
        sr=spec.sample_rate, n_fft=spec.n_fft, n_mels=spec.n_mels, fmin=spec.fmin, fmax=spec.fmax
    )
    np.testing.assert_allclose(mel_basis(spec), expected, rtol=1e-5, atol=1e-9)


def _harmonic_voice(f0: float, seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    """A steady vowel-like tone: ten harmonics of ``f0`` falling 6 dB per octave, faint noise."""
    t = np.arange(round(seconds * SPEC.sample_rate)) / SPEC.sample_rate
    tone = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 11))
    noise = np.random.default_rng(seed).normal(0.0, 0.01, len(t))
    return (0.3 * tone / np.abs(tone).max() + noise).astype(np.float32)


@pytest.mark.parametrize("f0", [85.0, 140.0, 220.0, 410.0])
def test_pitch_is_the_voices_fundamental_and_voicing_is_high(f0):
    prosody = FeatureExtractor(SPEC).frames(_harmonic_voice(f0)).prosody
    semitones_off = prosody[:, 0] - 12 * np.log2(f0 / PITCH_REFERENCE_HZ)
    np.testing.assert_allclose(semitones_off, 0.0, atol=0.25)
    assert prosody[:, 1].min() > 0.9


def test_noise_is_not_voiced():
    noise = np.random.default_rng(1).normal(0.0, 0.1, SPEC.sample_rate).astype(np.float32)
    voicing = FeatureExtractor(SPEC).frames(noise).prosody[:, 1]
    assert np.median(voicing) < 0.3


def test_pitch_agrees_with_librosas_pyin_on_the_voiced_frames_of_speech(test_clips):
    """pyin (probabilistic YIN with smoothing) as the reference tracker: most frames that both
    call voiced are within a semitone; the rest are mostly octave slips on creaky or breathy
    frames, which neither tracker gets reliably."""
    extractor = FeatureExtractor(SPEC)
    within = []
    for clip in test_clips:
        audio = read_audio(clip, SPEC.sample_rate)
        prosody = extractor.frames(audio).prosody
        # pyin's 1024-sample frames, shifted to centre on ours.
        f0, voiced, _ = librosa.pyin(
            np.pad(audio, (SPEC.n_fft // 2, 0)),
            fmin=SPEC.pitch_fmin,
            fmax=SPEC.pitch_fmax,
            sr=SPEC.sample_rate,
            frame_length=2 * SPEC.n_fft,
            hop_length=SPEC.hop_length,
            center=False,
        )
        n = min(len(f0), len(prosody))
        both = voiced[:n] & (prosody[:n, 1] > 0.5)
        ours = PITCH_REFERENCE_HZ * 2 ** (prosody[:n, 0][both] / 12)
        within.append(np.abs(12 * np.log2(ours / f0[:n][both])) < 1.0)
    assert np.concatenate(within).mean() > 0.7


def test_the_naive_benchs_time_domain_prosody_matches_the_fast_paths(test_clips):
    audio = read_audio(test_clips[0], SPEC.sample_rate)
    fast = FeatureExtractor(SPEC).frames(audio).prosody
    naive = librosa_features(audio, SPEC)["prosody"]
    voiced = fast[:, 1] > 0.6
    assert np.median(np.abs(fast[voiced, 0] - naive[voiced, 0])) < 0.05
    assert np.median(np.abs(fast[:, 1] - naive[:, 1])) < 0.01
