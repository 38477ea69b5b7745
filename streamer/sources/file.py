"""An audio file replayed as a stream, in real time or as fast as possible."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr

from streamer.audio import rate_problem
from streamer.sources.base import AudioBlock, AudioSource, SourceError


class WavFile(AudioSource):
    """An audio file replayed as a stream, paced in real time unless ``realtime`` is False.

    Read from disk a block at a time, mixed to mono and resampled as ``streamer.audio.read_audio``
    does (the same soxr filter, run incrementally, gives the same samples), so a long recording
    costs no more memory than a short one.
    """

    live = False

    def __init__(
        self, path: Path, sample_rate: int, block_size: int, realtime: bool, loop: bool = False
    ) -> None:
        """``loop``: at the end, go on from the start (one unbroken stream, never "ended")."""
        self.path = Path(path)
        self.name = str(path)
        self.sample_rate = sample_rate
        self.block_size = block_size
        self.realtime = realtime
        self.loop = loop
        self.state = "starting"
        self._file: sf.SoundFile | None = None
        self._resampler: Any = None
        self._file_block = block_size
        self._pending: np.ndarray | None = None
        self._delivered = 0
        self._started = 0.0

    def start(self) -> None:
        try:
            self._file = sf.SoundFile(str(self.path))
        except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as error:
            raise SourceError(f"{self.path}: unreadable audio ({_reason(error)})") from None
        if self._file.frames == 0:
            raise SourceError(f"{self.path}: no audio samples")
        rate = self._file.samplerate
        problem = rate_problem(rate)
        if problem is not None:
            self._file.close()
            raise SourceError(f"{self.path}: {problem}")
        if rate != self.sample_rate:
            self._resampler = soxr.ResampleStream(
                rate, self.sample_rate, 1, dtype="float32", quality="HQ"
            )
        self._file_block = max(1, round(self.block_size * rate / self.sample_rate))
        self._delivered = 0
        self._started = time.monotonic()
        self.state = "running"

    def _next_block(self) -> np.ndarray | None:
        """The next samples at the models' rate; None after the last."""
        if self._file is None or self._file.closed:
            return None
        try:
            raw = self._file.read(self._file_block, dtype="float32", always_2d=True)
            if self.loop and len(raw) < self._file_block:
                self._file.seek(0)
                rest = self._file.read(self._file_block - len(raw), dtype="float32", always_2d=True)
                raw = np.concatenate([raw, rest])
        except (sf.LibsndfileError, RuntimeError) as error:
            raise SourceError(f"{self.path}: unreadable audio ({_reason(error)})") from None
        last = not self.loop and len(raw) < self._file_block
        mono = raw.mean(axis=1, dtype=np.float32)
        if not np.all(np.isfinite(mono)):
            raise SourceError(f"{self.path}: samples are not finite numbers")
        if last:
            self._file.close()
        if self._resampler is not None:
            mono = self._resampler.resample_chunk(mono, last=last)
        if last and len(mono) == 0:
            return None
        return mono

    def read(self, timeout: float) -> AudioBlock | None:
        block = self._pending if self._pending is not None else self._next_block()
        self._pending = None
        if block is None:
            self.state = "ended"
            return None
        if self.realtime:
            # A block is handed out once its last sample would have been spoken.
            due = self._started + (self._delivered + len(block)) / self.sample_rate
            wait = due - time.monotonic()
            if wait > timeout:
                self._pending = block
                time.sleep(max(timeout, 0.0))
                return None
            if wait > 0:
                time.sleep(wait)
        self._delivered += len(block)
        return AudioBlock(block, time.time())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self.state = "ended"


def _reason(error: Exception) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__
