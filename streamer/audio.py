"""Reading audio files into float32 mono at the models' rate."""

from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np
import soundfile as sf


class AudioError(Exception):
    """An audio file cannot be read; the message names the file."""


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
    mono = audio.mean(axis=1)
    if not np.all(np.isfinite(mono)):
        raise AudioError(f"{path}: samples are not finite numbers")
    if rate != sample_rate:
        mono = librosa.resample(mono, orig_sr=rate, target_sr=sample_rate)
    return mono.astype(np.float32, copy=False)


def _reason(error: Exception) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__
