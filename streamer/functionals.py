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
rounding noise decides at -45 dBFS), over the window's loud frames: mean, standard deviation,
maximum, minimum, mean absolute change between neighbouring loud frames, trend (second half's
mean minus the first's), the 10th, 25th, 50th, 75th and 90th percentiles, the 10-90 and 25-75
ranges, skewness, kurtosis, the slope of a straight line over time and the standard deviation
of the change. Then the share of loud frames. Only loud frames count, so that pauses, breaths
and the rounding noise of a quiet microphone move none of them: over all frames, the same
functionals kept fewer of the loudness sweep's labels at -45 dBFS (reports/ablation.md).
"""

from __future__ import annotations

import numpy as np

PER_COLUMN = 17
"""Functionals of each spectral or energy column."""
LOUD_FRAME_DB = -34.0
"""A frame counts as loud within this many dB of the window's loudest frame: about where a
voice's pauses and breaths begin, and above 16-bit rounding noise even at -45 dBFS peak. The
loudest frame always counts. (With features whose range is 34 dB or less, or after per-window
CMVN, every frame counts.)"""
PERCENTILES = (10, 25, 50, 75, 90)


def functionals_count(columns: int) -> int:
    """Functionals of a window of ``columns`` spectral and energy columns."""
    return PER_COLUMN * columns + 1


def window_functionals(columns: np.ndarray) -> np.ndarray:
    """Functionals of level-free windows: ``(..., frames, columns)`` -> ``(..., count)``.

    ``columns`` are the log-mel bands, MFCCs and energy (dB below the window's loudest frame,
    the last). Works on one window or many at once (training), in float64 so that one window
    alone and the same window among thousands give the same numbers.
    """
    x = np.asarray(columns, dtype=np.float64)
    n_frames = x.shape[-2]
    energy = x[..., -1]
    # Relative to the window's loudest frame (0 dB once level-free), which always counts.
    loud = energy > energy.max(axis=-1, keepdims=True) + LOUD_FRAME_DB
    weight = loud[..., None].astype(np.float64)
    count = weight.sum(axis=-2)
    average = (x * weight).sum(axis=-2) / count
    centred = (x - average[..., None, :]) * weight
    squared = centred * centred
    std = np.sqrt(squared.sum(axis=-2) / count)
    standardised_squared = squared / np.square(std + 1e-3)[..., None, :]
    standardised = centred / (std + 1e-3)[..., None, :]
    # Frame-to-frame change between neighbours that are both loud: a pause is not a change.
    both_loud = weight[..., 1:, :] * weight[..., :-1, :]
    pairs = np.maximum(both_loud.sum(axis=-2), 1.0)
    change = (x[..., 1:, :] - x[..., :-1, :]) * both_loud
    mean_change = change.sum(axis=-2) / pairs
    change_spread = (change - mean_change[..., None, :]) * both_loud
    change_std = np.sqrt((change_spread * change_spread).sum(axis=-2) / pairs)
    time = np.arange(n_frames, dtype=np.float64)[:, None]
    time_centred = time - (time * weight).sum(axis=-2, keepdims=True) / count[..., None, :]
    time_centred = time_centred * weight
    spread_of_time = (time_centred * time_centred).sum(axis=-2)
    slope = (time_centred * x).sum(axis=-2) / np.where(spread_of_time > 0, spread_of_time, np.inf)
    half = n_frames // 2
    first, second = weight[..., :half, :].sum(axis=-2), weight[..., half:, :].sum(axis=-2)
    trend = np.where(
        (first > 0) & (second > 0),
        (x[..., half:, :] * weight[..., half:, :]).sum(axis=-2) / np.maximum(second, 1.0)
        - (x[..., :half, :] * weight[..., :half, :]).sum(axis=-2) / np.maximum(first, 1.0),
        0.0,
    )
    ordered = np.sort(np.where(loud[..., None], x, np.inf), axis=-2)
    quantiles = _percentiles(ordered, count)
    parts = [
        average,
        std,
        np.where(loud[..., None], x, -np.inf).max(axis=-2),
        ordered[..., 0, :],
        np.abs(change).sum(axis=-2) / pairs,
        trend,
        *quantiles,
        quantiles[-1] - quantiles[0],
        quantiles[3] - quantiles[1],
        (standardised_squared * standardised).sum(axis=-2) / count,
        (standardised_squared * standardised_squared).sum(axis=-2) / count,
        slope,
        change_std,
        count / n_frames,
    ]
    return np.concatenate(parts, axis=-1)


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
