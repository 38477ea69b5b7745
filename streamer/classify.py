"""Offline classification of audio files with the daemon's own pipeline.

Each file runs through ``streamer.pipeline.classify_clip``, the code the daemon streams with, so
a file's per-window labels are those the daemon would publish for the same audio. The per-file
verdict averages each model's probabilities over the windows that hold speech, then averages
the models with their ensemble weights, as the daemon combines them per window, and withholds
the label below the daemon's confidence threshold, as the daemon does.

Files are classified cold (features standardised with the training statistics, as for a voice
never heard), or as a session: recordings of one voice, each file standardised with the
statistics of the session's OTHER files' speech, as evaluation does with a speaker's other
utterances and the daemon with the speech it heard before.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich import box
from rich.table import Table

from streamer.adaptation import FixedVoice, session_statistics
from streamer.audio import AudioError, read_audio
from streamer.config import PipelineConfig
from streamer.models import TFLiteModel
from streamer.pipeline import Pipeline, WindowResult, classify_clip, ensemble_weights

_LOGGER = logging.getLogger(__name__)

AUDIO_EXTENSIONS = frozenset(
    {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".caf", ".w64"}
)
"""File name endings (any case) ``classify DIR`` takes as audio: formats libsndfile reads."""


@dataclass(frozen=True)
class FileResult:
    """The verdict on one file and on each of its windows."""

    file: Path
    """The file classified."""
    duration_s: float
    """Length of the audio (seconds)."""
    label: str | None
    """Label with the highest mean probability over speech windows; None without speech or
    when that probability is below the confidence threshold (unsure)."""
    confidence: float
    """Mean combined probability over speech windows of ``label`` (of the leading label when
    unsure; 0 without speech)."""
    models: dict[str, dict[str, float]]
    """Per model, each label's mean probability over speech windows (empty without speech)."""
    windows: list[WindowResult]
    """Every window, as the daemon would publish it."""

    @property
    def speech_windows(self) -> int:
        """Windows the speech gate let through to the models."""
        return sum(window.speech for window in self.windows)

    def model_label(self, model: str) -> str:
        """The label ``model`` gives the file: its highest mean probability."""
        probabilities = self.models[model]
        return max(probabilities, key=probabilities.__getitem__)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: the file's verdict, then each window's."""
        return {
            "file": str(self.file),
            "duration_s": round(self.duration_s, 3),
            "label": self.label,
            "confidence": round(self.confidence, 4),
            "speech_windows": self.speech_windows,
            "models": {
                name: _model_verdict(self.model_label(name), probabilities)
                for name, probabilities in self.models.items()
            },
            "windows": [
                {
                    "start": round(window.start, 3),
                    "end": round(window.end, 3),
                    "speech": window.speech,
                    "label": window.label,
                    "confidence": round(window.confidence, 4),
                    "models": {
                        name: _model_verdict(output.label, output.probabilities)
                        for name, output in window.models.items()
                    },
                }
                for window in self.windows
            ],
        }


def _model_verdict(label: str, probabilities: dict[str, float]) -> dict[str, Any]:
    """One model's output in the shape the daemon's messages use."""
    rounded = {name: round(p, 4) for name, p in probabilities.items()}
    return {"label": label, "probabilities": rounded}


def read_file(path: Path, models: list[TFLiteModel]) -> np.ndarray:
    """The file's audio at the models' rate; raises AudioError naming it."""
    if not Path(path).is_file():
        raise AudioError(f"{path}: no such file")
    return read_audio(path, models[0].metadata.features.sample_rate)


def classify_file(
    path: Path,
    models: list[TFLiteModel],
    config: PipelineConfig,
    voice: FixedVoice | None = None,
    audio: np.ndarray | None = None,
) -> FileResult:
    """Classifies one file (cold unless ``voice`` gives statistics); raises AudioError naming
    it when it cannot be read."""
    if audio is None:
        audio = read_file(path, models)
    windows = classify_clip(audio, models, config=config, voice=voice)
    duration = len(audio) / models[0].metadata.features.sample_rate
    weights = dict(zip((m.name for m in models), ensemble_weights(models).tolist(), strict=True))
    return summarise(path, duration, windows, config.confidence_threshold, weights)


def summarise(
    path: Path,
    duration_s: float,
    windows: list[WindowResult],
    confidence_threshold: float,
    weights: dict[str, float] | None = None,
) -> FileResult:
    """The per-file verdict from the window results (see the module docstring); ``weights``
    are the models' shares of the ensemble (default: equal)."""
    speech = [window for window in windows if window.speech and window.models]
    if not speech:
        return FileResult(path, duration_s, None, 0.0, {}, windows)
    names = list(speech[0].models)
    labels = list(speech[0].models[names[0]].probabilities)
    means = {
        name: {
            label: float(np.mean([w.models[name].probabilities[label] for w in speech]))
            for label in labels
        }
        for name in names
    }
    share = {name: 1.0 / len(names) for name in names} if weights is None else weights
    combined = {
        label: float(sum(share[name] * means[name][label] for name in names)) for label in labels
    }
    leader = max(combined, key=combined.__getitem__)
    label = leader if combined[leader] >= confidence_threshold else None
    return FileResult(path, duration_s, label, combined[leader], means, windows)


def audio_files(paths: list[Path]) -> list[Path]:
    """``paths`` with each directory replaced by the audio files under it (sorted, recursively).

    An audio file is one ending in AUDIO_EXTENSIONS; other files in a directory (notes,
    transcripts) are left alone. A directory holding none is an AudioError naming it. Files
    named directly are kept, whatever their extension.
    """
    found: list[Path] = []
    for path in paths:
        if not Path(path).is_dir():
            found.append(path)
            continue
        inside = sorted(
            p for p in Path(path).rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
        )
        if not inside:
            raise AudioError(f"{path}: no audio files in this directory")
        found += inside
    return found


def classify_files(
    paths: list[Path], models: list[TFLiteModel], config: PipelineConfig, session: bool = False
) -> Iterator[FileResult | AudioError]:
    """Each file's result in order, or the AudioError that names why it was skipped.

    With ``session`` the files are one voice: each is standardised with the statistics of the
    other files' speech windows (cold if they have none). A broken file does not stop the
    others: the caller reports and counts it.
    """
    if not session:
        for path in paths:
            try:
                yield classify_file(path, models, config)
            except AudioError as error:
                _LOGGER.debug("skipped %s", path, exc_info=True)
                yield error
        return
    training = Pipeline.training_statistics(models)
    readable: list[tuple[Path, np.ndarray, FixedVoice]] = []
    outcomes: dict[Path, AudioError] = {}
    for path in paths:
        try:
            audio = read_file(path, models)
        except AudioError as error:
            outcomes[path] = error
            continue
        # A first pass only to see which windows the pipeline calls speech, and their moments.
        observer = FixedVoice(training)
        classify_clip(audio, models, config=config, voice=observer)
        readable.append((path, audio, observer))
    voices = [observer for _, _, observer in readable]
    results = {
        path: classify_file(
            path,
            models,
            config,
            FixedVoice(session_statistics(voices, index) or training),
            audio,
        )
        for index, (path, audio, _) in enumerate(readable)
    }
    for path in paths:
        yield outcomes.get(path) or results[path]


def json_line(result: FileResult) -> str:
    """One JSON object on one line (JSON Lines), so results can be streamed and grepped."""
    return json.dumps(result.to_dict(), ensure_ascii=False)


def probability_columns(models: list[TFLiteModel]) -> list[tuple[str, str]]:
    """(model, label) pairs in output order: the pipeline reports every model in the first
    model's label order."""
    return [(model.name, label) for model in models for label in models[0].labels]


def csv_rows(results: list[FileResult], columns: list[tuple[str, str]], per_window: bool) -> str:
    """CSV with a header: one row per file, or per window with ``per_window``.

    Probability columns (``columns``) are named ``MODEL:LABEL``; they hold the file's mean
    probabilities, or the window's own (empty for a window without speech, where the models
    are not run).
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    position = ["start", "end", "speech"] if per_window else ["duration_s", "speech_windows"]
    writer.writerow(
        ["file", *position, "label", "confidence", *(f"{name}:{label}" for name, label in columns)]
    )
    for result in results:
        if not per_window:
            writer.writerow(
                [
                    result.file,
                    f"{result.duration_s:.3f}",
                    result.speech_windows,
                    result.label or "",
                    f"{result.confidence:.4f}",
                    *(_probability(result.models, name, label) for name, label in columns),
                ]
            )
            continue
        for window in result.windows:
            probabilities = {name: output.probabilities for name, output in window.models.items()}
            writer.writerow(
                [
                    result.file,
                    f"{window.start:.3f}",
                    f"{window.end:.3f}",
                    int(window.speech),
                    window.label or "",
                    f"{window.confidence:.4f}",
                    *(_probability(probabilities, name, label) for name, label in columns),
                ]
            )
    return out.getvalue()


def _probability(models: dict[str, dict[str, float]], name: str, label: str) -> str:
    value = models.get(name, {}).get(label)
    return "" if value is None else f"{value:.4f}"


def table(results: list[FileResult], per_window: bool) -> Table:
    """A readable table: one row per file, followed by its windows with ``per_window``."""
    names = list(dict.fromkeys(name for result in results for name in result.models))
    view = Table(box=box.SIMPLE_HEAD)
    view.add_column("file", no_wrap=True)
    view.add_column("window (s)" if per_window else "speech", justify="right")
    view.add_column("label")
    view.add_column("confidence", justify="right")
    for name in names:
        view.add_column(name)
    for result in results:
        view.add_row(
            str(result.file),
            f"{result.speech_windows}/{len(result.windows)}" if not per_window else "all",
            result.label or ("(unsure)" if result.speech_windows else "(no speech)"),
            f"{result.confidence:.0%}",
            *(
                f"{result.model_label(name)} {max(result.models[name].values()):.0%}"
                if name in result.models
                else ""
                for name in names
            ),
            style="bold" if per_window else None,
        )
        if not per_window:
            continue
        for window in result.windows:
            view.add_row(
                "",
                f"{window.start:.1f}–{window.end:.1f}",
                window.label or ("(unsure)" if window.speech else "(silence)"),
                f"{window.confidence:.0%}" if window.speech else "",
                *(
                    f"{window.models[name].label} "
                    f"{window.models[name].probabilities[window.models[name].label]:.0%}"
                    if name in window.models
                    else ""
                    for name in names
                ),
            )
    return view
