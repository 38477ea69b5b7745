"""Model inputs for a corpus: utterances -> windows -> normalised features, cached on disk.

Windows are placed on the speech of each clip (found by energy, 30 dB below the peak), hop by
hop as the daemon would see it; a clip whose speech is shorter than a window gives one window
centred on its speech, taken from the clip's own background around it. Only a clip shorter
than a window is padded, with digital silence on both sides (the features' -80 dB floor).
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import librosa
import numpy as np
from rich.progress import track

from streamer.audio import AudioError, read_audio
from streamer.features import FeatureExtractor, FeatureSpec, hop_frames_for
from training.augment import augment
from training.corpora import Utterance

_LOGGER = logging.getLogger(__name__)

HOP_SECONDS = 0.5
CACHE_VERSION = 1
"""Part of the cache key: raise it when window placement or augmentation code changes."""
SPEECH_TOP_DB = 30.0
ORIGINAL = "original"


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))
    return Path(base) / "emostream" / "features"


@dataclass
class WindowSet:
    """Normalised model inputs of many windows, and the utterance each came from."""

    log_mel: np.ndarray
    """(windows, frames, n_mels) float32."""
    mfcc_energy: np.ndarray
    """(windows, frames, n_mfcc + 1) float32."""
    utterance: np.ndarray
    """(windows,) int: index into the utterance list the set was built from."""
    skipped: list[str]
    """Files that could not be read, with the reason."""

    def get(self, model_input: str) -> np.ndarray:
        return {"log_mel": self.log_mel, "mfcc_energy": self.mfcc_energy}[model_input]

    @classmethod
    def concat(cls, sets: list[WindowSet]) -> WindowSet:
        """One set holding the windows of all ``sets`` (built from the same utterance list)."""
        return cls(
            np.concatenate([s.log_mel for s in sets]),
            np.concatenate([s.mfcc_energy for s in sets]),
            np.concatenate([s.utterance for s in sets]),
            sets[0].skipped,
        )

    def select(self, utterance_indices: np.ndarray) -> WindowSet:
        """The windows of the given utterances."""
        mask = np.isin(self.utterance, utterance_indices)
        return WindowSet(
            self.log_mel[mask], self.mfcc_energy[mask], self.utterance[mask], self.skipped
        )


def window_starts(audio: np.ndarray, spec: FeatureSpec, hop_seconds: float) -> list[int]:
    """First frame of each window to take from a clip (at least one), placed on its speech."""
    n_frames = 1 + (len(audio) - spec.n_fft) // spec.hop_length
    last = n_frames - spec.n_frames
    _, (begin, end) = librosa.effects.trim(audio, top_db=SPEECH_TOP_DB)
    first, final = begin // spec.hop_length, max(end - spec.n_fft, begin) // spec.hop_length
    if final - first + 1 <= spec.n_frames:
        return [int(np.clip((first + final + 1 - spec.n_frames) // 2, 0, last))]
    hop = hop_frames_for(spec, hop_seconds)
    return list(range(first, min(final - spec.n_frames + 1, last) + 1, hop))


def utterance_windows(
    audio: np.ndarray, extractor: FeatureExtractor, hop_seconds: float = HOP_SECONDS
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised (log_mel, mfcc_energy) inputs, each (windows, frames, columns), of one clip."""
    spec = extractor.spec
    if len(audio) < spec.window_samples:
        padding = spec.window_samples - len(audio)
        audio = np.pad(audio, (padding // 2, padding - padding // 2))
    frames = extractor.frames(audio)
    starts = window_starts(audio, spec, hop_seconds)
    cut = [slice(s, s + spec.n_frames) for s in starts]
    log_mel = np.stack([extractor.normalise(frames.log_mel[c]) for c in cut])
    mfcc_energy = np.stack([extractor.normalise(frames.mfcc_energy[c]) for c in cut])
    return log_mel, mfcc_energy


def _features_of(job: tuple[Path, str, FeatureSpec]) -> tuple[np.ndarray, np.ndarray] | str:
    path, variant, spec = job
    try:
        audio = read_audio(path, spec.sample_rate)
    except AudioError as error:
        return str(error)
    if variant != ORIGINAL:
        audio = augment(audio, variant, path, spec.sample_rate)
    return utterance_windows(audio, FeatureExtractor(spec))


def _cache_key(utterances: list[Utterance], variant: str, spec: FeatureSpec) -> str:
    identity = [CACHE_VERSION, spec.to_dict(), variant, HOP_SECONDS, SPEECH_TOP_DB]
    for u in utterances:
        stat = u.path.stat() if u.path.exists() else None
        identity.append([str(u.path), stat.st_size if stat else -1, stat.st_mtime if stat else -1])
    return hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:20]


def build_windows(
    utterances: list[Utterance],
    spec: FeatureSpec,
    variant: str = ORIGINAL,
    cache_dir: Path | None = None,
    workers: int = 2,
) -> WindowSet:
    """Windows of every utterance (optionally augmented), from the cache when it has them.

    Unreadable files are skipped, counted and named in a warning; the rest go on.
    """
    cache_dir = cache_dir or default_cache_dir()
    cache_file = cache_dir / f"{variant}-{_cache_key(utterances, variant, spec)}.npz"
    if cache_file.is_file():
        with np.load(cache_file) as cached:
            return WindowSet(
                cached["log_mel"].astype(np.float32),
                cached["mfcc_energy"].astype(np.float32),
                cached["utterance"],
                list(cached["skipped"]),
            )
    jobs = [(u.path, variant, spec) for u in utterances]
    log_mel, mfcc_energy, owner, skipped = [], [], [], []
    # Spawned, not forked: a fork of a process that has started TensorFlow's threads can
    # deadlock or abort in the child.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        results = pool.map(_features_of, jobs, chunksize=16)
        for index, result in enumerate(
            track(results, total=len(jobs), description=f"features ({variant})")
        ):
            if isinstance(result, str):
                skipped.append(result)
                continue
            log_mel.append(result[0])
            mfcc_energy.append(result[1])
            owner.append(np.full(len(result[0]), index))
    if skipped:
        _LOGGER.warning("skipped %d unreadable audio files: %s", len(skipped), "; ".join(skipped))
    if not log_mel:
        raise ValueError("no readable audio among the utterances")
    windows = WindowSet(
        np.concatenate(log_mel), np.concatenate(mfcc_energy), np.concatenate(owner), skipped
    )
    cache_dir.mkdir(parents=True, exist_ok=True)
    temporary = cache_file.with_suffix(".tmp.npz")
    np.savez(
        temporary,
        log_mel=windows.log_mel.astype(np.float16),
        mfcc_energy=windows.mfcc_energy.astype(np.float16),
        utterance=windows.utterance,
        skipped=np.array(skipped, dtype=str),
    )
    temporary.replace(cache_file)
    return windows
