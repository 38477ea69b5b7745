"""The window functionals the functionals model reads: what they describe, and that training
and the daemon get the same numbers."""

from __future__ import annotations

import numpy as np

from streamer.audio import read_audio
from streamer.features import FeatureExtractor, FeatureSpec
from streamer.functionals import (
    LOUD_FRAME_DB,
    OF_CHANGE,
    PER_COLUMN,
    loud_delta,
    window_functionals,
)

SPEC = FeatureSpec()
COLUMNS = SPEC.n_mels + SPEC.n_mfcc + 1


def of_frames_and_changes(functionals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(PER_COLUMN, COLUMNS) functionals of the columns themselves; (PER_COLUMN, COLUMNS) of
    their changes, NaN for those left out."""
    own = functionals[: PER_COLUMN * COLUMNS].reshape(PER_COLUMN, COLUMNS)
    of_changes = np.full((PER_COLUMN, COLUMNS), np.nan)
    of_changes[OF_CHANGE] = functionals[PER_COLUMN * COLUMNS : -1].reshape(-1, COLUMNS)
    return own, of_changes


def level_free_windows(test_clips) -> list:
    extractor = FeatureExtractor(SPEC)
    return [
        extractor.level_free(window)
        for clip in test_clips
        for window in extractor.windows(read_audio(clip, SPEC.sample_rate), 0.5)
    ]


def test_one_window_alone_gets_the_functionals_it_gets_among_many(test_clips):
    """The daemon computes one window's functionals; training computes thousands at once."""
    windows = level_free_windows(test_clips)
    together = np.stack([w.log_mel for w in windows]), np.stack([w.mfcc_energy for w in windows])
    many = window_functionals(np.concatenate(together, axis=-1))
    alone = np.stack([w.functionals for w in windows])
    assert alone.shape == (len(windows), SPEC.n_functionals)
    np.testing.assert_allclose(alone, many, rtol=1e-12, atol=1e-12)


def test_the_functionals_describe_each_columns_distribution_over_the_window():
    rng = np.random.default_rng(0)
    columns = rng.normal(-10.0, 3.0, (SPEC.n_frames, COLUMNS))
    columns[:, -1] = 0.0  # every frame loud
    functionals = window_functionals(columns)
    assert functionals.shape == (SPEC.n_functionals,)
    per_column, of_changes = of_frames_and_changes(functionals)
    np.testing.assert_allclose(per_column[0], columns.mean(axis=0))
    np.testing.assert_allclose(per_column[1], columns.std(axis=0))
    np.testing.assert_allclose(per_column[2], columns.max(axis=0))
    np.testing.assert_allclose(per_column[3], columns.min(axis=0))
    np.testing.assert_allclose(per_column[6], np.percentile(columns, 10, axis=0))
    np.testing.assert_allclose(per_column[8], np.median(columns, axis=0))
    every_frame = np.ones(SPEC.n_frames, bool)
    np.testing.assert_allclose(of_changes[1], loud_delta(columns, every_frame).std(axis=0))
    assert functionals[-1] == 1.0  # the share of loud frames


def test_a_rising_column_has_its_slope_and_trend():
    columns = np.zeros((SPEC.n_frames, COLUMNS))
    columns[:, 0] = np.arange(SPEC.n_frames) * 0.5
    per_column, of_changes = of_frames_and_changes(window_functionals(columns))
    slope, trend = per_column[15, 0], per_column[5, 0]
    assert abs(slope - 0.5) < 1e-9
    assert abs(trend - 0.5 * (SPEC.n_frames // 2)) < 0.5
    # Every frame but the two ends rises 0.5 (the ends, with one neighbour, 0.25): the change's
    # maximum is 0.5, and the change itself changes only at the two ends, by 0.25 each.
    assert of_changes[2, 0] == 0.5
    assert abs(of_changes[4, 0] - 0.5 / (SPEC.n_frames - 1)) < 1e-9


def test_the_pauses_move_no_functional_and_the_loud_frames_move_them():
    """What a quiet frame holds (rounding noise at -45 dBFS, a breath) counts for nothing, not
    even in the changes of the loud frames beside it."""
    rng = np.random.default_rng(1)
    columns = rng.normal(0.0, 1.0, (SPEC.n_frames, COLUMNS))
    columns[:, -1] = np.where(np.arange(SPEC.n_frames) % 3 == 0, LOUD_FRAME_DB - 5, -3.0)
    quiet = columns[:, -1] < LOUD_FRAME_DB
    before = window_functionals(columns)
    noisy = columns.copy()
    noisy[quiet, :-1] += rng.normal(0.0, 5.0, (quiet.sum(), COLUMNS - 1))
    np.testing.assert_allclose(window_functionals(noisy), before, atol=1e-12)
    assert abs(before[-1] - (~quiet).mean()) < 1e-12
    moved = columns.copy()
    moved[~quiet, :-1] += rng.normal(0.0, 1.0, ((~quiet).sum(), COLUMNS - 1))
    assert np.abs(window_functionals(moved) - before).max() > 0.1


def test_a_window_of_one_loud_frame_has_finite_functionals():
    columns = np.full((SPEC.n_frames, COLUMNS), -40.0)
    columns[7] = 0.0
    functionals = window_functionals(columns)
    assert np.isfinite(functionals).all()
    assert functionals[-1] == 1 / SPEC.n_frames


def test_loud_is_relative_to_the_windows_loudest_frame_so_absolute_levels_work_too():
    """Without the level-free step (normalisation "none") a window's energy is in dBFS."""
    rng = np.random.default_rng(2)
    columns = rng.normal(0.0, 1.0, (SPEC.n_frames, COLUMNS))
    columns[:, -1] = rng.uniform(-40.0, 0.0, SPEC.n_frames)
    columns[3, -1] = 0.0
    quieter = columns.copy()
    quieter[:, -1] -= 50.0  # the same window 50 dB down, every frame below -34 dBFS
    functionals = window_functionals(quieter)
    assert np.isfinite(functionals).all()
    assert functionals[-1] == window_functionals(columns)[-1]


def test_a_loud_frame_beside_a_pause_changes_only_towards_its_loud_neighbour():
    columns = np.zeros((5, 2))
    columns[:, 0] = (9.0, 1.0, 2.0, 4.0, 9.0)
    loud = np.array([False, True, True, True, False])
    np.testing.assert_allclose(loud_delta(columns, loud)[1:4, 0], (0.5, 1.5, 1.0))


def test_two_neighbouring_loud_frames_have_the_slope_between_them():
    columns = np.zeros((SPEC.n_frames, COLUMNS))
    columns[:, -1] = -40.0
    columns[10:12, -1] = 0.0
    columns[10:12, 0] = (0.0, 2.0)
    per_column, _ = of_frames_and_changes(window_functionals(columns))
    assert per_column[15, 0] == 2.0


def test_the_changes_are_described_by_their_spread_and_maximum_only():
    rng = np.random.default_rng(3)
    columns = rng.normal(0.0, 2.0, (SPEC.n_frames, COLUMNS))
    columns[:, -1] = 0.0
    _, of_changes = of_frames_and_changes(window_functionals(columns))
    changes = loud_delta(columns, np.ones(SPEC.n_frames, bool))
    np.testing.assert_allclose(of_changes[1], changes.std(axis=0))
    np.testing.assert_allclose(of_changes[2], changes.max(axis=0))
    # Mean, minimum, trend, percentiles, ranges, skewness, kurtosis and slope of a change move
    # with where the frames fall.
    left_out = [0, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]
    assert np.isnan(of_changes[left_out]).all() and not np.isnan(of_changes[OF_CHANGE]).any()


def test_the_changes_have_the_four_functionals_a_column_holding_them_would_have():
    """The changes' four are computed apart from the columns' seventeen (every hop, without
    the sort the others need), and must mean the same."""
    rng = np.random.default_rng(5)
    columns = rng.normal(0.0, 2.0, (SPEC.n_frames, COLUMNS))
    columns[:, -1] = np.where(np.arange(SPEC.n_frames) % 4 == 0, LOUD_FRAME_DB - 5, -3.0)
    changes = loud_delta(columns, columns[:, -1] > -3.0 + LOUD_FRAME_DB)
    changes[:, -1] = columns[:, -1]  # the same loud frames
    of_a_column_of_changes, _ = of_frames_and_changes(window_functionals(changes))
    _, of_changes = of_frames_and_changes(window_functionals(columns))
    np.testing.assert_array_equal(
        of_changes[OF_CHANGE, :-1], of_a_column_of_changes[OF_CHANGE, :-1]
    )


def test_the_first_and_last_frames_change_towards_their_one_neighbour():
    column = np.array([[1.0], [3.0], [4.0]])
    np.testing.assert_allclose(loud_delta(column, np.ones(3, bool))[:, 0], (1.0, 1.5, 0.5))
    np.testing.assert_allclose(
        loud_delta(column, np.array([True, False, True]))[:, 0], (0.0, 1.5, 0.0)
    )


def test_skewness_and_kurtosis_are_the_standardised_third_and_fourth_moments():
    rng = np.random.default_rng(4)
    columns = rng.gamma(2.0, 2.0, (SPEC.n_frames, COLUMNS))
    columns[:, -1] = 0.0
    per_column, _ = of_frames_and_changes(window_functionals(columns))
    centred = columns - columns.mean(axis=0)
    spread = columns.std(axis=0) + 1e-3
    np.testing.assert_allclose(per_column[13], (centred**3).mean(axis=0) / spread**3)
    np.testing.assert_allclose(per_column[14], (centred**4).mean(axis=0) / spread**4)
    quartiles = np.percentile(columns, (25, 75), axis=0)
    np.testing.assert_allclose(per_column[12], quartiles[1] - quartiles[0])
