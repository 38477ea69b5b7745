"""Model inputs for a corpus: utterances -> windows -> features, cached on disk.

Windows are placed on the speech of each clip (found by energy, 30 dB below the peak), hop by
hop as the daemon would see it; a clip whose speech is shorter than a window gives one window
centred on its speech, taken from the clip's own background around it. Only a clip shorter
than a window is padded on both sides, with noise at the level of its own quietest frames:
digital silence is something a microphone never produces.

With the "speaker" normalisation the cache holds level-free windows; the voice statistics that
standardise them depend on the fold (whose speakers train, which utterance is tested), so
``standardise_by_voice`` and ``standardise_with`` apply them afterwards.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import librosa
import numpy as np
from rich.progress import track

from streamer.audio import AudioError, read_audio
from streamer.features import (
    FeatureExtractor,
    FeatureSpec,
    FeatureStatistics,
    FrameFeatures,
    hop_frames_for,
    split_columns,
    statistics_from_moments,
    window_moments,
)
from training.augment import augment
from training.corpora import Utterance

_LOGGER = logging.getLogger(__name__)

HOP_SECONDS = 0.5
CACHE_VERSION = 3
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
    prosody: np.ndarray
    """(windows, frames, 2) float32: pitch and voicing (see ``FrameFeatures.prosody``)."""
    utterance: np.ndarray
    """(windows,) int: index into the utterance list the set was built from."""
    skipped: list[str]
    """Files that could not be read, with the reason."""
    standardised_functionals: np.ndarray | None = None
    """(windows, functionals) float32 once standardised (see ``FrameFeatures``)."""

    def get(self, model_input: str) -> np.ndarray:
        """(windows, frames, columns) inputs of ``model_input``, or (windows, functionals) for
        "functionals" (see ``FrameFeatures.get``)."""
        return self.features.get(model_input)

    @cached_property
    def features(self) -> FrameFeatures:
        """All windows' features at once (arrays with a leading window axis); kept, so that
        their functionals are computed once."""
        return FrameFeatures(
            self.log_mel, self.mfcc_energy, self.prosody, self.standardised_functionals
        )

    @classmethod
    def concat(cls, sets: list[WindowSet]) -> WindowSet:
        """One set holding the windows of all ``sets`` (built from the same utterance list)."""
        functionals = [s.standardised_functionals for s in sets]
        standardised = [f for f in functionals if f is not None]
        return cls(
            np.concatenate([s.log_mel for s in sets]),
            np.concatenate([s.mfcc_energy for s in sets]),
            np.concatenate([s.prosody for s in sets]),
            np.concatenate([s.utterance for s in sets]),
            sets[0].skipped,
            np.concatenate(standardised) if len(standardised) == len(sets) else None,
        )

    def select(self, utterance_indices: np.ndarray) -> WindowSet:
        """The windows of the given utterances."""
        mask = np.isin(self.utterance, utterance_indices)
        return self.rows(mask)

    def rows(self, rows: np.ndarray) -> WindowSet:
        """The windows at ``rows`` (indices or a mask)."""
        functionals = self.standardised_functionals
        return WindowSet(
            self.log_mel[rows],
            self.mfcc_energy[rows],
            self.prosody[rows],
            self.utterance[rows],
            self.skipped,
            None if functionals is None else functionals[rows],
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


def pad_with_background(audio: np.ndarray, length: int, seed: int) -> np.ndarray:
    """``audio`` centred in ``length`` samples of noise as loud as its quietest frames."""
    padding = length - len(audio)
    if padding <= 0:
        return audio
    frames = np.lib.stride_tricks.sliding_window_view(audio, min(320, len(audio)))[::160]
    level = float(np.percentile(np.sqrt(np.mean(np.square(frames), axis=1)), 10))
    noise = np.random.default_rng(seed).normal(0.0, max(level, 1e-5), padding)
    noise = noise.astype(np.float32)
    return np.concatenate([noise[: padding // 2], audio, noise[padding // 2 :]])


def utterance_windows(
    audio: np.ndarray,
    extractor: FeatureExtractor,
    hop_seconds: float = HOP_SECONDS,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(log_mel, mfcc_energy, prosody) windows, each (windows, frames, columns), of one clip:
    level-free for the "speaker" normalisation (standardised later, per fold), else the models'
    inputs."""
    spec = extractor.spec
    audio = pad_with_background(audio, spec.window_samples, seed)
    frames = extractor.frames(audio)
    starts = window_starts(audio, spec, hop_seconds)
    windows = [frames.rows(s, s + spec.n_frames) for s in starts]
    if spec.normalisation == "speaker":
        prepared = [extractor.level_free(w) for w in windows]
    else:
        prepared = [extractor.model_inputs(w) for w in windows]
    return (
        np.stack([w.log_mel for w in prepared]),
        np.stack([w.mfcc_energy for w in prepared]),
        np.stack([w.prosody for w in prepared]),
    )


def _features_of(
    job: tuple[Path, str, FeatureSpec],
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | str:
    path, variant, spec = job
    try:
        audio = read_audio(path, spec.sample_rate)
    except AudioError as error:
        return str(error)
    if variant != ORIGINAL:
        audio = augment(audio, variant, path, spec.sample_rate)
    seed = zlib.crc32(f"{path.name}:{variant}".encode())
    return utterance_windows(audio, FeatureExtractor(spec), seed=seed)


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
    if not cache_file.is_file():
        _write_cache(cache_file, _computed_windows(utterances, spec, variant, workers))
    # Read back even when just computed: the cache holds float16, and the run that builds it
    # must train on the very numbers later runs read (models trained in separate runs share
    # their training statistics exactly, as the daemon requires).
    with np.load(cache_file) as cached:
        return WindowSet(
            cached["log_mel"].astype(np.float32),
            cached["mfcc_energy"].astype(np.float32),
            cached["prosody"].astype(np.float32),
            cached["utterance"],
            list(cached["skipped"]),
        )


def _computed_windows(
    utterances: list[Utterance], spec: FeatureSpec, variant: str, workers: int
) -> WindowSet:
    jobs = [(u.path, variant, spec) for u in utterances]
    log_mel, mfcc_energy, prosody, owner, skipped = [], [], [], [], []
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
            prosody.append(result[2])
            owner.append(np.full(len(result[0]), index))
    if skipped:
        _LOGGER.warning("skipped %d unreadable audio files: %s", len(skipped), "; ".join(skipped))
    if not log_mel:
        raise ValueError("no readable audio among the utterances")
    return WindowSet(
        np.concatenate(log_mel),
        np.concatenate(mfcc_energy),
        np.concatenate(prosody),
        np.concatenate(owner),
        skipped,
    )


def _write_cache(cache_file: Path, windows: WindowSet) -> None:
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    temporary = cache_file.with_suffix(".tmp.npz")
    np.savez(
        temporary,
        log_mel=windows.log_mel.astype(np.float16),
        mfcc_energy=windows.mfcc_energy.astype(np.float16),
        prosody=windows.prosody.astype(np.float16),
        utterance=windows.utterance,
        skipped=np.array(windows.skipped, dtype=str),
    )
    temporary.replace(cache_file)


def statistics_of(windows: WindowSet) -> FeatureStatistics:
    """Statistics of all the windows together, each window weighing the same."""
    first, second = window_moments(windows)
    return statistics_from_moments(first.mean(axis=0), second.mean(axis=0))


def standardise_with(windows: WindowSet, statistics: list[FeatureStatistics]) -> WindowSet:
    """The windows standardised, window ``i`` with ``statistics[i]``."""
    mean = np.stack([s.mean for s in statistics])
    std = np.stack([s.std for s in statistics])
    frames = windows.get("frame_features")
    split = frames.shape[-1]
    columns = ((frames - mean[:, None, :split]) / std[:, None, :split]).astype(np.float32)
    functionals = (windows.get("functionals") - mean[:, split:]) / std[:, split:]
    standardised = split_columns(columns, windows.log_mel.shape[2])
    return WindowSet(
        standardised.log_mel,
        standardised.mfcc_energy,
        standardised.prosody,
        windows.utterance,
        windows.skipped,
        functionals.astype(np.float32),
    )


def standardise_by_voice(
    windows: WindowSet,
    speaker_of_utterance: np.ndarray,
    leave_utterance_out: bool,
    fallback: FeatureStatistics | None = None,
    window_weights: np.ndarray | None = None,
) -> WindowSet:
    """Each window standardised with its speaker's statistics in this set.

    With ``leave_utterance_out`` (test speakers), the statistics for an utterance's windows come
    from the speaker's other utterances only, never from the utterance itself; a speaker with no
    other utterance gets ``fallback`` (the training set's: cold). ``window_weights`` weigh the
    windows in the statistics (default: equally), e.g. to make a speaker's speech neutral-heavy.
    """
    first, second = window_moments(windows)
    weights = np.ones(len(first)) if window_weights is None else np.asarray(window_weights, float)
    first, second = first * weights[:, None], second * weights[:, None]
    speaker = speaker_of_utterance[windows.utterance]
    statistics: list[FeatureStatistics] = []
    rows: list[np.ndarray] = []
    for voice in np.unique(speaker):
        mine = speaker == voice
        total1, total2, total = first[mine].sum(0), second[mine].sum(0), weights[mine].sum()
        if not leave_utterance_out:
            rows.append(np.flatnonzero(mine))
            statistics.append(statistics_from_moments(total1 / total, total2 / total))
            continue
        for utterance in np.unique(windows.utterance[mine]):
            own = windows.utterance == utterance
            others = total - weights[own].sum()
            rows.append(np.flatnonzero(own))
            if others <= 0:
                if fallback is None:
                    raise ValueError(f"speaker {voice} has no other utterance and no fallback")
                statistics.append(fallback)
                continue
            statistics.append(
                statistics_from_moments(
                    (total1 - first[own].sum(0)) / others, (total2 - second[own].sum(0)) / others
                )
            )
    per_window: list[FeatureStatistics] = [statistics[0]] * len(weights)
    for indices, shared in zip(rows, statistics, strict=True):
        for row in indices:
            per_window[row] = shared
    return standardise_with(windows, per_window)


def training_windows(sets: list[WindowSet], speaker_of_utterance: np.ndarray) -> WindowSet:
    """The model inputs to train on: each set (the original recordings first, then augmented
    copies) standardised per voice, each copy counting as a voice of its own (a pitch-shifted
    speaker is another voice)."""
    return WindowSet.concat([standardise_by_voice(s, speaker_of_utterance, False) for s in sets])


def cold_copies(sets: list[WindowSet], cold: FeatureStatistics) -> WindowSet:
    """``sets`` (the recordings of ``TrainConfig.cold_variants``) standardised with ``cold``,
    the training set's statistics: voices as the daemon hears them before it has adapted, for
    the models trained on both (``TrainConfig.cold_copies``)."""
    return WindowSet.concat([standardise_with(s, [cold] * len(s.utterance)) for s in sets])


def neutral_heavy_weights(
    windows: WindowSet,
    speaker_of_utterance: np.ndarray,
    neutral_of_utterance: np.ndarray,
    neutral_share: float = 0.75,
) -> np.ndarray:
    """Window weights that give each speaker's neutral windows ``neutral_share`` of the weight:
    statistics of a stream that is mostly neutral, as live speech often is."""
    weights = np.ones(len(windows.utterance))
    speaker = speaker_of_utterance[windows.utterance]
    neutral = neutral_of_utterance[windows.utterance]
    for voice in np.unique(speaker):
        mine = speaker == voice
        calm, other = mine & neutral, mine & ~neutral
        if calm.any() and other.any():
            weights[calm] = neutral_share / calm.sum()
            weights[other] = (1 - neutral_share) / other.sum()
    return weights
