"""Adaptation to the voice and the microphone: running feature statistics of the speech heard.

The models read features standardised with a voice's statistics (``streamer.features``). The
daemon starts from the training set's statistics (cold) and moves them towards those of the
speech it hears, window by window: each speech window's column moments enter a running average
whose memory is a few minutes of speech, so a new speaker or microphone takes over gradually and
old speech fades out. A window is standardised with the statistics from before it, never with
its own.

Only these statistics are stored (two numbers per feature column and window functional, and a
weight), never audio. They persist as a small JSON file in the service's state directory across
restarts; a damaged, truncated or foreign file is named in one log line and replaced by the
training statistics.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streamer.features import (
    FeatureSpec,
    FeatureStatistics,
    FrameFeatures,
    statistics_from_moments,
    window_moments,
)

_LOGGER = logging.getLogger(__name__)

STATE_FORMAT = "emostream-adaptation"
STATE_VERSION = 1
STATE_FILE_NAME = "adaptation.json"


def default_state_file() -> Path:
    """``$STATE_DIRECTORY/adaptation.json`` under systemd (its ``StateDirectory=``), else
    ``$XDG_STATE_HOME/emostream/adaptation.json`` (``~/.local/state`` when unset)."""
    state_directory = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if state_directory:
        return Path(state_directory) / STATE_FILE_NAME
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "emostream" / STATE_FILE_NAME


@dataclass
class Moments:
    """Averaged column moments of speech windows, and how many windows' weight they carry."""

    first: np.ndarray
    """(columns,) float64: mean of the windows' column means."""
    second: np.ndarray
    """(columns,) float64: mean of the windows' column mean squares."""
    weight: float
    """Windows' worth of speech behind the averages (the training prior counts as some)."""

    @classmethod
    def of(cls, statistics: FeatureStatistics, weight: float) -> Moments:
        """The moments that give ``statistics``, carrying ``weight`` windows."""
        first = statistics.mean.astype(np.float64)
        return cls(first, np.square(statistics.std.astype(np.float64)) + np.square(first), weight)

    def statistics(self) -> FeatureStatistics:
        return statistics_from_moments(self.first, self.second)


class VoiceAdaptation:
    """Running statistics of the speech heard, starting from the training statistics.

    ``observe`` adds one speech window; the average weighs it as one window among at most
    ``memory_seconds`` of speech, so older speech decays exponentially once that much is heard.
    """

    def __init__(
        self,
        training: FeatureStatistics,
        spec: FeatureSpec,
        hop_seconds: float,
        memory_seconds: float = 600.0,
        prior_seconds: float = 30.0,
    ) -> None:
        """``hop_seconds`` is the speech each window adds (windows overlap; each hop is new)."""
        self.training = training
        self.spec = spec
        self.hop_seconds = hop_seconds
        self._prior_weight = max(prior_seconds / hop_seconds, 1.0)
        self._memory_weight = max(memory_seconds / hop_seconds, self._prior_weight)
        self.reset()

    def reset(self) -> None:
        """Back to the training statistics, as if no speech had been heard."""
        self._moments = Moments.of(self.training, self._prior_weight)
        self._statistics = self.training
        self.adapted_seconds = 0.0
        """Speech heard since the last reset (seconds)."""

    @property
    def statistics(self) -> FeatureStatistics:
        """The statistics to standardise the next window with."""
        return self._statistics

    def observe(self, window: FrameFeatures) -> None:
        """Adds one level-free speech window ((n_frames, columns) features)."""
        first, second = window_moments(window)
        moments = self._moments
        weight = min(moments.weight + 1.0, self._memory_weight)
        moments.first += (first - moments.first) / weight
        moments.second += (second - moments.second) / weight
        moments.weight = weight
        self._statistics = moments.statistics()
        self.adapted_seconds += self.hop_seconds

    def to_state(self) -> dict[str, Any]:
        """What is persisted: statistics and counts, never audio."""
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "features": self.spec.to_dict(),
            "adapted_seconds": self.adapted_seconds,
            "weight": self._moments.weight,
            "first": [float(v) for v in self._moments.first],
            "second": [float(v) for v in self._moments.second],
        }

    def restore(self, state: Any) -> None:
        """Takes over a state from ``to_state``; raises ValueError saying what is wrong with it
        (then nothing changes)."""
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise ValueError("not an emostream adaptation state")
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unknown state version {state.get('version')!r}")
        if state.get("features") != self.spec.to_dict():
            raise ValueError("made for other feature parameters (other models)")
        columns = self.spec.statistics_columns
        try:
            first = np.asarray(state["first"], dtype=np.float64)
            second = np.asarray(state["second"], dtype=np.float64)
            weight = float(state["weight"])
            adapted_seconds = float(state["adapted_seconds"])
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"missing or malformed field ({error})") from None
        if first.shape != (columns,) or second.shape != (columns,):
            raise ValueError(f"statistics need {columns} columns")
        finite = np.isfinite(first).all() and np.isfinite(second).all()
        if not (finite and math.isfinite(weight) and math.isfinite(adapted_seconds)):
            raise ValueError("non-finite values")
        # Features are dB and MFCC units: anything beyond a million is not from this code.
        if np.abs(first).max() > 1e6 or np.abs(second).max() > 1e12:
            raise ValueError("values out of range")
        if weight < 1.0 or adapted_seconds < 0 or (second < np.square(first) - 1e-3).any():
            raise ValueError("inconsistent values")
        self._moments = Moments(first, second, min(weight, self._memory_weight))
        self._statistics = self._moments.statistics()
        self.adapted_seconds = adapted_seconds


class FixedVoice:
    """Statistics that stay as given (cold: the training set's; or a session's other files),
    and the moments of the speech windows seen, for ``classify --session``."""

    def __init__(self, statistics: FeatureStatistics) -> None:
        self.statistics = statistics
        self.adapted_seconds = 0.0
        """Always 0: these statistics do not adapt."""
        self.first_sum: np.ndarray | float = 0.0
        """Sum of the speech windows' column means."""
        self.second_sum: np.ndarray | float = 0.0
        """Sum of the speech windows' column mean squares."""
        self.windows = 0
        """Speech windows seen."""

    def reset(self) -> None:
        """Nothing to forget: the statistics are fixed."""

    def observe(self, window: FrameFeatures) -> None:
        """Records a level-free speech window's moments; the statistics stay as they are."""
        first, second = window_moments(window)
        self.first_sum = self.first_sum + first
        self.second_sum = self.second_sum + second
        self.windows += 1


def session_statistics(voices: list[FixedVoice], index: int) -> FeatureStatistics | None:
    """Statistics of the speech windows of every voice but ``voices[index]`` (None if they hold
    no speech): a file of a session is standardised with the session's OTHER files."""
    others = [v for i, v in enumerate(voices) if i != index and v.windows]
    count = sum(v.windows for v in others)
    if not count:
        return None
    first = sum(v.first_sum for v in others) / count
    second = sum(v.second_sum for v in others) / count
    return statistics_from_moments(np.asarray(first), np.asarray(second))


def load_state(adaptation: VoiceAdaptation, path: Path) -> bool:
    """Restores ``adaptation`` from ``path``; True if it did.

    A missing file means a first start (nothing logged); a damaged, truncated or foreign one is
    named in one warning and the training statistics stay: the daemon always starts.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return False
    except (OSError, UnicodeDecodeError) as error:
        _LOGGER.warning("%s: unreadable adaptation state (%s); starting cold", path, error)
        return False
    try:
        adaptation.restore(json.loads(text))
    except (ValueError, RecursionError) as error:
        reason = str(error).splitlines()[0][:120] if str(error) else type(error).__name__
        _LOGGER.warning("%s: adaptation state ignored (%s); starting cold", path, reason)
        return False
    _LOGGER.info(
        "%s: adapted statistics restored (%.0f s of speech)", path, adaptation.adapted_seconds
    )
    return True


def save_state(adaptation: VoiceAdaptation, path: Path) -> None:
    """Writes the state atomically (a crash leaves the old file or the new one, not half)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(adaptation.to_state()) + "\n", encoding="utf-8")
    temporary.replace(path)
