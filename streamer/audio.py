"""Reading audio files into float32 mono at the models' rate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

MIN_FILE_RATE = 4000
"""Lowest sample rate (hertz) a file may declare. Below it the header is damaged, not speech,
and resampling would multiply the file: a 2 s clip whose header says 1 Hz becomes 12 hours of
audio (2.8 GB) at 16 kHz."""
MAX_FILE_RATE = 768000
"""Highest sample rate (hertz) a file may declare."""


class AudioError(Exception):
    """An audio file cannot be read; the message names the file."""


def rate_problem(rate: int) -> str | None:
    """Why a file's declared sample ``rate`` cannot be right, or None when it can."""
    if MIN_FILE_RATE <= rate <= MAX_FILE_RATE:
        return None
    return f"sample rate {rate} Hz is outside {MIN_FILE_RATE}-{MAX_FILE_RATE} Hz (damaged header?)"


def read_audio(path: Path, sample_rate: int) -> np.ndarray:
    """Samples of ``path`` ((n,) float32 in [-1, 1]), mixed to mono, resampled to ``sample_rate``.

    Reads WAV, FLAC and whatever else libsndfile reads. Raises AudioError for a file that is
    missing, truncated, empty or not audio.
    """
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as error:
        raise AudioError(f"{path}: unreadable audio ({_reason(error)})") from None
    if audio.size == 0:
        raise AudioError(f"{path}: no audio samples")
    problem = rate_problem(rate)
    if problem is not None:
        raise AudioError(f"{path}: {problem}")
    mono = audio.mean(axis=1)
    if not np.all(np.isfinite(mono)):
        raise AudioError(f"{path}: samples are not finite numbers")
    if rate != sample_rate:
        # What librosa.resample does by default (soxr_hq), without importing librosa and numba.
        mono = soxr.resample(mono, rate, sample_rate, quality="HQ")
    return mono.astype(np.float32, copy=False)


def _reason(error: Exception) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__
