"""Functionals of a window's frame features: the classical description of an utterance.

Emotion shows in how a voice's levels, spectrum and their movement are distributed over a few
seconds. The classical recipe (many functionals of frame features, standardised per speaker, a
linear model) is strong on small corpora: issue 8's anchor, a linear SVM on openSMILE's
ComParE functionals, reaches 80 % on Emo-DB for voices it never heard. These are computed in
numpy from the level-free frames every model reads, so training and the daemon share them; the
voice's statistics (``streamer.features.window_moments``) standardise them as they standardise
the frames.

Per spectral or energy column (log-mel bands, MFCCs, energy; pitch and voicing are left out:
their extremes over a window are decided by its quietest frames, whose periodicity 16-bit
rounding noise decides at -45 dBFS), and per change of each such column from frame to frame
(half the difference of a frame's neighbours: the classical delta coefficients), over the
window's loud frames: mean, standard deviation, maximum, minimum, mean absolute change between
neighbouring loud frames, trend (second half's mean minus the first's), the 10th, 25th, 50th,
75th and 90th percentiles, the 10-90 and 25-75 ranges, skewness, kurtosis, the slope of a
straight line over time and the standard deviation of the change (of the changes, the four
that where the frames fall moves least: ``OF_CHANGE``). Then the share of loud frames. Only
loud frames count, so that what pauses, breaths and the rounding noise of a quiet microphone
hold moves none of them: over all frames, they kept fewer of the loudness sweep's labels at
-45 dBFS. The changes skip pauses too (a quiet neighbour counts as the frame itself): changes
that looked across pauses into the quiet frames scored up to about a point higher alone, and
level in the ensemble, but kept 129 of the sweep's 153 labels, against a bar of 138
(reports/ablation.md).
"""

from __future__ import annotations

import numpy as np

PER_COLUMN = 17
"""Functionals of each spectral or energy column (and ``OF_CHANGE`` of them of its
frame-to-frame change)."""
LOUD_FRAME_DB = -34.0
"""A frame counts as loud within this many dB of the window's loudest frame: about where a
voice's pauses and breaths begin, and above 16-bit rounding noise even at -45 dBFS peak. The
loudest frame always counts. (With features whose range is 34 dB or less, or after per-window
CMVN, every frame counts.)"""
PERCENTILES = (10, 25, 50, 75, 90)
OF_CHANGE = np.array([1, 2, 4, 16])
"""Which of the ``PER_COLUMN`` functionals describe the changes: their standard deviation,
maximum, mean absolute change and the standard deviation of their change, computed by
``_change_functionals`` in this order. A change is a difference of neighbouring 20 ms frames,
so where the frames fall in the speech moves it, and a microphone's stream never falls where a
file's frames do. With all of them but their mean (which telescopes to the window's ends) and
median (which moved most with the microphone's level), the model's probabilities moved by 0.050
on average between two starts 7 samples (0.4 ms) apart; with these four by 0.033 (0.028 as
shipped), near the model without the changes (0.029). In units of their spread in training, the
changes' minimum, trend, percentiles and ranges moved 1.4 to 4 times as much as these four;
with their skewness, kurtosis and slope kept too, the model moved by 0.042
(reports/ablation.md)."""


def functionals_count(columns: int) -> int:
    """Functionals of a window of ``columns`` spectral and energy columns."""
    return (PER_COLUMN + len(OF_CHANGE)) * columns + 1


def window_functionals(columns: np.ndarray) -> np.ndarray:
    """Functionals of level-free windows: ``(..., frames, columns)`` -> ``(..., count)``.

    ``columns`` are the log-mel bands, MFCCs and energy (dB below the window's loudest frame,
    the last). Works on one window or many at once (training), in float64 so that one window
    alone and the same window among thousands give the same numbers.
    """
    x = np.asarray(columns, dtype=np.float64)
    energy = x[..., -1]
    # Relative to the window's loudest frame (0 dB once level-free), which always counts.
    loud = energy > energy.max(axis=-1, keepdims=True) + LOUD_FRAME_DB
    weight = loud[..., None].astype(np.float64)
    count = weight.sum(axis=-2)
    return np.concatenate(
        [
            _column_functionals(x, loud, weight, count),
            _change_functionals(loud_delta(x, loud), loud, weight, count),
            count / x.shape[-2],
        ],
        axis=-1,
    )


def loud_delta(x: np.ndarray, loud: np.ndarray) -> np.ndarray:
    """Each frame's change, half the difference of its neighbours ``(..., frames, columns)``; a
    neighbour that is not loud, or lies beyond the window, counts as the frame itself, so that
    what a pause holds is no change."""
    own = x[..., 1:-1, :]
    before = np.where(loud[..., :-2, None], x[..., :-2, :], own)
    after = np.where(loud[..., 2:, None], x[..., 2:, :], own)
    first = np.where(loud[..., 1:2, None], x[..., 1:2, :] - x[..., :1, :], 0.0)
    last = np.where(loud[..., -2:-1, None], x[..., -1:, :] - x[..., -2:-1, :], 0.0)
    return np.concatenate([first, after - before, last], axis=-2) / 2.0


def _column_functionals(
    x: np.ndarray, loud: np.ndarray, weight: np.ndarray, count: np.ndarray
) -> np.ndarray:
    """``PER_COLUMN`` functionals of each column of ``x`` over its loud frames:
    ``(..., PER_COLUMN * columns)``, functional-major (the means of every column, then the
    standard deviations, ...), the layout ``window_functionals`` returns and the model reads.

    Few passes over the frames: the daemon computes them every hop.
    """
    n_frames = x.shape[-2]
    loud_x, average, centred, std = _loud_moments(x, weight, count)
    squared = centred * centred
    spread = std + 1e-3
    skewness = (squared * centred).sum(axis=-2) / count / spread**3
    kurtosis = (squared * squared).sum(axis=-2) / count / spread**4
    mean_absolute_change, change_std = _neighbour_changes(x, weight)
    time = np.arange(n_frames, dtype=np.float64)[:, None]
    time_centred = time - (time * weight).sum(axis=-2, keepdims=True) / count[..., None, :]
    time_centred = time_centred * weight
    spread_of_time = (time_centred * time_centred).sum(axis=-2)
    slope = (time_centred * x).sum(axis=-2) / np.where(spread_of_time > 0, spread_of_time, np.inf)
    half = n_frames // 2
    first, second = weight[..., :half, :].sum(axis=-2), weight[..., half:, :].sum(axis=-2)
    trend = np.where(
        (first > 0) & (second > 0),
        loud_x[..., half:, :].sum(axis=-2) / np.maximum(second, 1.0)
        - loud_x[..., :half, :].sum(axis=-2) / np.maximum(first, 1.0),
        0.0,
    )
    # The loud frames' values first, ascending; the quiet ones (inf) after them.
    ordered = np.sort(np.where(loud[..., None], x, np.inf), axis=-2)
    quantiles = _percentiles(ordered, count)
    parts = [
        average,
        std,
        _loud_maximum(x, loud),
        ordered[..., 0, :],
        mean_absolute_change,
        trend,
        *quantiles,
        quantiles[-1] - quantiles[0],
        quantiles[3] - quantiles[1],
        skewness,
        kurtosis,
        slope,
        change_std,
    ]
    return np.concatenate(parts, axis=-1)


def _change_functionals(
    changes: np.ndarray, loud: np.ndarray, weight: np.ndarray, count: np.ndarray
) -> np.ndarray:
    """The ``OF_CHANGE`` functionals of each column of ``changes`` (``loud_delta``'s) over the
    loud frames, as ``_column_functionals`` computes them: ``(..., len(OF_CHANGE) * columns)``.

    Only these four, without the sort and percentiles the other kinds need: the daemon computes
    them every hop.
    """
    # In the order of OF_CHANGE: standard deviation, maximum, mean absolute change, and the
    # standard deviation of the change.
    _, _, _, std = _loud_moments(changes, weight, count)
    mean_absolute_change, change_std = _neighbour_changes(changes, weight)
    return np.concatenate(
        [std, _loud_maximum(changes, loud), mean_absolute_change, change_std], axis=-1
    )


def _loud_moments(
    x: np.ndarray, weight: np.ndarray, count: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``x`` with its quiet frames zeroed, the mean over the loud frames, the loud frames'
    deviations from it (quiet frames zero) and their standard deviation."""
    loud_x = x * weight
    average = loud_x.sum(axis=-2) / count
    centred = (x - average[..., None, :]) * weight
    return loud_x, average, centred, np.sqrt((centred * centred).sum(axis=-2) / count)


def _loud_maximum(x: np.ndarray, loud: np.ndarray) -> np.ndarray:
    """Each column's largest value over the loud frames."""
    return np.where(loud[..., None], x, -np.inf).max(axis=-2)


def _neighbour_changes(x: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean absolute change between neighbouring frames that are both loud (a pause is not a
    change), and the standard deviation of that change."""
    both_loud = weight[..., 1:, :] * weight[..., :-1, :]
    pairs = np.maximum(both_loud.sum(axis=-2), 1.0)
    change = (x[..., 1:, :] - x[..., :-1, :]) * both_loud
    mean_change = change.sum(axis=-2) / pairs
    change_spread = (change - mean_change[..., None, :]) * both_loud
    return (
        np.abs(change).sum(axis=-2) / pairs,
        np.sqrt((change_spread * change_spread).sum(axis=-2) / pairs),
    )


def _percentiles(ordered: np.ndarray, count: np.ndarray) -> list[np.ndarray]:
    """``PERCENTILES`` of each column over its first ``count`` values (``ordered``: sorted over
    frames, the loud frames first), interpolated linearly as numpy's default."""
    position = (count - 1) * (np.array(PERCENTILES, dtype=np.float64) / 100.0)
    below = np.floor(position).astype(np.intp)
    above = np.minimum(below + 1, count.astype(np.intp) - 1)
    indices = np.concatenate([below, above], axis=-1)[..., :, None]
    shape = (*ordered.shape[:-2], indices.shape[-2], ordered.shape[-1])
    gathered = np.take_along_axis(ordered, np.broadcast_to(indices, shape), axis=-2)
    low, high = gathered[..., : len(PERCENTILES), :], gathered[..., len(PERCENTILES) :, :]
    fraction = (position - below)[..., :, None]
    values = low + (high - low) * fraction
    return [values[..., i, :] for i in range(len(PERCENTILES))]
