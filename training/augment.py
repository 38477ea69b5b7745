"""Training-data augmentation: pitch shift, time stretch, additive noise and a microphone's
channel.

Each variant is a pure function of the clip and a seed derived from the file name, so augmented
features can be cached and reused by every fold; which folds use them is decided after the split,
and test utterances are only ever seen unaugmented.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from pathlib import Path

import librosa
import numpy as np
import scipy.signal


def _pitch(audio: np.ndarray, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    steps = rng.uniform(1.0, 3.0) * rng.choice([-1.0, 1.0])
    return librosa.effects.pitch_shift(audio, sr=sample_rate, n_steps=steps, res_type="soxr_hq")


def _stretch(audio: np.ndarray, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    return librosa.effects.time_stretch(audio, rate=rng.uniform(0.85, 1.15))


def _noise(audio: np.ndarray, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    snr_db = rng.uniform(10.0, 25.0)
    signal_power = float(np.mean(audio**2)) + 1e-12
    noise = rng.normal(0.0, np.sqrt(signal_power / 10 ** (snr_db / 10)), len(audio))
    return (audio + noise).astype(np.float32)


def _channel(audio: np.ndarray, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """The low-pass a sound path puts before 16 kHz capture (a sound server's resampler, a USB
    microphone's anti-aliasing filter). PulseAudio's took 2 dB off at 5.9 kHz and 18 dB at
    7.4 kHz (tests/test_microphone.py's path); the corpora were recorded without one, so a
    model that leans on the top bands hears a voice through it as another emotion."""
    cutoff = rng.uniform(0.7, 0.95) * sample_rate / 2
    order = int(rng.integers(4, 9))
    sos = scipy.signal.butter(order, cutoff, fs=sample_rate, output="sos")
    return scipy.signal.sosfilt(sos, audio)


VARIANTS: dict[str, Callable[[np.ndarray, np.random.Generator, int], np.ndarray]] = {
    "pitch": _pitch,
    "stretch": _stretch,
    "noise": _noise,
    "channel": _channel,
}


def augment(audio: np.ndarray, variant: str, path: Path, sample_rate: int) -> np.ndarray:
    """``audio`` ((n,) float32) transformed by ``variant``, seeded by the file's name."""
    rng = np.random.default_rng(zlib.crc32(f"{Path(path).name}:{variant}".encode()))
    return VARIANTS[variant](audio, rng, sample_rate).astype(np.float32)
