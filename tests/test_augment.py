"""Augmentation: a variant does what it is for, and gives the same copy of a file every time."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.augment import augment

RATE = 16000


def band_db(audio: np.ndarray, low: float, high: float) -> float:
    spectrum = np.abs(np.fft.rfft(audio)) ** 2
    hertz = np.fft.rfftfreq(len(audio), 1 / RATE)
    return float(10 * np.log10(spectrum[(hertz >= low) & (hertz < high)].mean()))


def test_the_channel_copy_loses_the_top_band_and_keeps_the_voice_band():
    """A microphone's low-pass, at a cutoff that differs from file to file."""
    noise = np.random.default_rng(0).normal(0, 0.1, 2 * RATE).astype(np.float32)
    losses = []
    for name in (f"{n:02d}.wav" for n in range(20)):
        copy = augment(noise, "channel", Path(name), RATE)
        assert abs(band_db(copy, 100, 3000) - band_db(noise, 100, 3000)) < 0.5
        losses.append(band_db(noise, 7600, 8000) - band_db(copy, 7600, 8000))
    assert min(losses) > 10.0
    assert max(losses) - min(losses) > 10.0


def test_a_file_gets_the_same_copy_every_time_and_another_file_another():
    noise = np.random.default_rng(1).normal(0, 0.1, RATE).astype(np.float32)
    first = augment(noise, "channel", Path("a/03a01Wa.wav"), RATE)
    again = augment(noise, "channel", Path("b/03a01Wa.wav"), RATE)
    other = augment(noise, "channel", Path("a/03a01Nc.wav"), RATE)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)
