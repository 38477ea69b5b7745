"""Windows -> features and speech detection -> models -> smoothing -> one result per window.

``Pipeline`` takes audio in blocks of any size and computes each frame's features and speech
probability once, as its samples arrive; every hop it classifies the newest window with each
model if the voice-activity detector heard enough speech in it. ``classify_clip``
runs the same pipeline over a whole clip, so offline results equal what the daemon publishes
for the same audio.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass

import numpy as np

from streamer.adaptation import FixedVoice, VoiceAdaptation
from streamer.config import ConfigError, PipelineConfig
from streamer.features import (
    FeatureExtractor,
    FeatureStatistics,
    FrameFeatures,
    StreamingFeatures,
    hop_frames_for,
)
from streamer.models import ModelError, TFLiteModel
from streamer.vad import FRAME_SAMPLES, SAMPLE_RATE, SpeechDetector

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelOutput:
    """What one model said about one window."""

    label: str
    """The most probable label."""
    probabilities: dict[str, float]
    """Probability of every label, unsmoothed."""


@dataclass(frozen=True)
class WindowResult:
    """The pipeline's verdict on one window of audio."""

    index: int
    """Window number since the stream started, counting dropped windows."""
    start: float
    """Stream time of the window's first sample (seconds since the source started)."""
    end: float
    """Stream time just after the window's last sample (seconds)."""
    captured_at: float
    """Unix time at which the window's last sample became available (seconds)."""
    speech: bool
    """Whether the voice-activity detector heard enough speech in the window to judge it."""
    label: str | None
    """Smoothed combined label; None without speech or below the confidence threshold."""
    confidence: float
    """Smoothed combined probability of ``label`` (of the leading label when ``label`` is None
    for low confidence; 0 without speech)."""
    models: dict[str, ModelOutput]
    """Each model's raw output; empty when the window has no speech (models are not run)."""
    level_db: float
    """Loudest frame RMS level in the window (dB full scale)."""
    speech_seconds: float
    """Time in the window the detector judged speech (seconds)."""
    speech_probability: float
    """The detector's highest frame probability in the window (0 to 1)."""
    inference_ms: float
    """Time spent on this window's normalisation, models and smoothing (milliseconds)."""


STATISTICS_TOLERANCE = 1e-3
"""Largest difference (in each column's units: dB, MFCC, semitones of pitch, voicing) between
two models' training statistics that still counts as the same statistics: the same corpora's
features computed on another machine differ in the last bits of their float sums (2e-6 seen),
and the models were still trained on one standardisation."""


def ensemble_weights(models: list[TFLiteModel]) -> np.ndarray:
    """Each model's share of the ensemble's average ((models,) float32, summing to 1): the
    weights in their metadata, normalised over the models loaded; equal shares when those
    weigh nothing together (say, one model of weight 0 loaded alone)."""
    weights = np.array([m.metadata.ensemble_weight for m in models], np.float64)
    if weights.sum() == 0:
        weights = np.ones(len(models))
    return (weights / weights.sum()).astype(np.float32)


class Pipeline:
    """Streaming classifier: push blocks of samples, get a result every hop.

    Results do not depend on the block size: blocks are split at window boundaries, frame
    features are computed once each from the samples alone, and the detector scores fixed
    512-sample frames whatever the blocks.
    """

    def __init__(
        self,
        models: list[TFLiteModel],
        config: PipelineConfig,
        voice: VoiceAdaptation | FixedVoice | None = None,
    ) -> None:
        """``models`` share one FeatureSpec, one label set (order may differ) and one set of
        training statistics. ``voice`` holds the statistics speech is standardised with and
        observes each speech window (default: the training statistics, fixed: cold)."""
        if not models:
            raise ModelError("no model to run")
        self.models = models
        self.config = config
        self.spec = models[0].metadata.features
        self.labels = models[0].labels
        for model in models[1:]:
            if model.metadata.features != self.spec:
                raise ModelError(f"{model.path}: feature parameters differ from {models[0].path}")
            if set(model.labels) != set(self.labels):
                raise ModelError(f"{model.path}: labels differ from those of {models[0].path}")
        self.voice = voice or FixedVoice(self.training_statistics(models))
        # Each model's output reordered into self.labels order.
        self._orders = [np.array([m.labels.index(label) for label in self.labels]) for m in models]
        self._weights = ensemble_weights(models)
        try:
            self.hop_frames = hop_frames_for(self.spec, config.hop_seconds)
        except ValueError as error:
            raise ConfigError(f"config key 'pipeline.hop_seconds': {error}") from None
        if self.spec.sample_rate != SAMPLE_RATE:
            raise ModelError(
                f"{models[0].path}: models hear {self.spec.sample_rate} Hz; the speech detector "
                f"needs {SAMPLE_RATE} Hz"
            )
        self.extractor = FeatureExtractor(self.spec)
        self._streaming = StreamingFeatures(self.extractor)
        self.detector = SpeechDetector(self.spec.window_seconds)
        self._samples_in = 0
        # Stream sample where frame 0 of the current run of continuous audio begins.
        self._origin = 0
        self._next_end_frame = self.spec.n_frames
        self._window_index = 0
        self.smoother = LabelSmoother(
            self.labels, config.smoothing, config.hysteresis, config.confidence_threshold
        )
        self.windows = 0
        """Windows classified."""
        self.dropped_windows = 0
        """Windows skipped because a live source got ahead of the pipeline."""

    @staticmethod
    def training_statistics(models: list[TFLiteModel]) -> FeatureStatistics:
        """The models' shared training statistics (placeholders without "speaker" features)."""
        statistics = models[0].metadata.statistics
        for model in models[1:]:
            other = model.metadata.statistics
            same = (statistics is None and other is None) or (
                statistics is not None
                and other is not None
                and np.allclose(statistics.mean, other.mean, rtol=0, atol=STATISTICS_TOLERANCE)
                and np.allclose(statistics.std, other.std, rtol=0, atol=STATISTICS_TOLERANCE)
            )
            if not same:
                raise ModelError(f"{model.path}: training statistics differ from {models[0].path}")
        if statistics is None:
            columns = models[0].metadata.features.statistics_columns
            return FeatureStatistics(np.zeros(columns, np.float32), np.ones(columns, np.float32))
        return statistics

    def _boundary(self) -> int:
        """Samples needed to complete the next window."""
        return self._origin + (self._next_end_frame - 1) * self.spec.hop_length + self.spec.n_fft

    def push(
        self, samples: np.ndarray, captured_at: float, newest_only: bool = False
    ) -> list[WindowResult]:
        """Adds samples ((n,) float32 at the models' rate); returns results of windows completed.

        ``captured_at`` is the Unix time of the newest sample. With ``newest_only`` (a live
        source that got ahead), only the newest completed window is classified; the others are
        counted in ``dropped_windows``.
        """
        samples = np.asarray(samples, np.float32)
        results: list[WindowResult] = []
        pending: tuple[FrameFeatures, np.ndarray, int, float] | None = None
        position = 0
        while position < len(samples):
            take = min(len(samples) - position, self._boundary() - self._samples_in)
            self._streaming.push(samples[position : position + take])
            self.detector.push(samples[position : position + take])
            position += take
            self._samples_in += take
            if self._samples_in < self._boundary():
                continue
            window_captured_at = captured_at - (len(samples) - position) / self.spec.sample_rate
            window = (
                self._streaming.window(),
                self.detector.probabilities(*self._window_span(self._next_end_frame)),
                self._next_end_frame,
                window_captured_at,
            )
            self._next_end_frame += self.hop_frames
            if newest_only:
                if pending is not None:
                    self.dropped_windows += 1
                    self._window_index += 1
                pending = window
            else:
                results.append(self._classify(*window))
        if pending is not None:
            results.append(self._classify(*pending))
        return results

    def discontinuity(self) -> None:
        """Marks a break in the audio (a microphone reopened): no window spans it.

        Frames and smoothing start afresh from the next sample; stream time and window numbers
        go on, so the next window ends one window length after the break.
        """
        self._streaming = StreamingFeatures(self.extractor)
        self.detector.reset()
        self._origin = self._samples_in
        self._next_end_frame = self.spec.n_frames
        self.smoother.reset()

    def finish(self, captured_at: float) -> list[WindowResult]:
        """At the end of a stream shorter than one window, classifies it padded with silence.

        This is how ``FeatureExtractor.windows`` treats a short clip, so a short file still
        yields one result.
        """
        if self._window_index > 0 or self._samples_in == 0:
            return []
        padding = np.zeros(self._boundary() - self._samples_in, np.float32)
        return self.push(padding, captured_at + len(padding) / self.spec.sample_rate)

    def _window_span(self, end_frame: int) -> tuple[int, int]:
        """First and one-past-last sample of the window ending at ``end_frame``, counted from
        the start of the current run of continuous audio."""
        spec = self.spec
        start = (end_frame - spec.n_frames) * spec.hop_length
        return start, (end_frame - 1) * spec.hop_length + spec.n_fft

    def _classify(
        self,
        window: FrameFeatures,
        speech_probabilities: np.ndarray,
        end_frame: int,
        captured_at: float,
    ) -> WindowResult:
        started = time.perf_counter()
        spec = self.spec
        level = window.mfcc_energy[:, -1]
        speech_frames = int(np.count_nonzero(speech_probabilities >= self.config.speech_threshold))
        speech_seconds = speech_frames * FRAME_SAMPLES / spec.sample_rate
        speech = speech_frames > 0 and speech_seconds >= self.config.min_speech_seconds
        outputs: dict[str, ModelOutput] = {}
        label: str | None = None
        confidence = 0.0
        if speech:
            adapting = spec.normalisation == "speaker"
            if adapting:
                level_free = self.extractor.level_free(window)
                inputs = self.voice.statistics.standardise(level_free)
            else:
                inputs = self.extractor.model_inputs(window)
            combined = np.zeros(len(self.labels), np.float32)
            for model, order, weight in zip(self.models, self._orders, self._weights, strict=True):
                probabilities = model.predict(inputs.get(model.metadata.model_input))[order]
                combined += weight * probabilities
                outputs[model.name] = ModelOutput(
                    self.labels[int(np.argmax(probabilities))],
                    {name: float(p) for name, p in zip(self.labels, probabilities, strict=True)},
                )
            label, confidence = self.smoother.update(combined)
            if adapting:
                # After the models: a window is standardised without itself, as in evaluation.
                self.voice.observe(level_free)
        else:
            # Each utterance is judged afresh, not biased by the one before the pause.
            self.smoother.reset()
        start_sample, end_sample = (self._origin + s for s in self._window_span(end_frame))
        result = WindowResult(
            index=self._window_index,
            start=start_sample / spec.sample_rate,
            end=end_sample / spec.sample_rate,
            captured_at=captured_at,
            speech=speech,
            label=label,
            confidence=confidence,
            models=outputs,
            level_db=float(level.max()),
            speech_seconds=speech_seconds,
            speech_probability=float(speech_probabilities.max(initial=0.0)),
            inference_ms=(time.perf_counter() - started) * 1000.0,
        )
        self._window_index += 1
        self.windows += 1
        return result


class LabelSmoother:
    """Turns a stream of probability vectors into a label that does not flap.

    An exponential moving average damps single-window noise; hysteresis keeps the current
    label until another one leads it by a margin; below the confidence threshold the label is
    withheld (None) rather than guessed.
    """

    def __init__(
        self,
        labels: tuple[str, ...],
        smoothing: float,
        hysteresis: float,
        confidence_threshold: float,
    ) -> None:
        """``smoothing`` is the newest vector's weight in the average (1: no smoothing)."""
        self.labels = labels
        self.smoothing = smoothing
        self.hysteresis = hysteresis
        self.confidence_threshold = confidence_threshold
        self._average: np.ndarray | None = None
        self._current: int | None = None

    def reset(self) -> None:
        """Forgets the history, as after a pause in speech."""
        self._average = None
        self._current = None

    def update(self, probabilities: np.ndarray) -> tuple[str | None, float]:
        """Label and confidence after adding ``probabilities`` ((n_labels,), in label order)."""
        if self._average is None:
            self._average = np.asarray(probabilities, np.float32)
        else:
            self._average = self.smoothing * probabilities + (1.0 - self.smoothing) * self._average
        leader = int(np.argmax(self._average))
        current = self._current
        if current is None or self._average[leader] >= self._average[current] + self.hysteresis:
            current = leader
        self._current = current
        confidence = float(self._average[current])
        if confidence < self.confidence_threshold:
            return None, confidence
        return self.labels[current], confidence


def classify_clip(
    audio: np.ndarray,
    models: list[TFLiteModel],
    hop_seconds: float | None = None,
    config: PipelineConfig | None = None,
    voice: VoiceAdaptation | FixedVoice | None = None,
) -> list[WindowResult]:
    """Classifies a whole clip window by window, exactly as the daemon would stream it.

    ``audio`` is (samples,) float32 at the models' sample rate (``streamer.audio.read_audio``
    gives that). ``config`` supplies the gate and smoothing settings (defaults if None); a
    ``hop_seconds`` given replaces its hop. Times in the results are seconds into the clip:
    ``captured_at`` equals ``end``. A clip shorter than one window yields one padded window.
    ``voice`` supplies the statistics (default: the training set's, cold).
    """
    base = config or PipelineConfig(models=tuple(m.name for m in models))
    hop = base.hop_seconds if hop_seconds is None else hop_seconds
    pipeline = Pipeline(models, dataclasses.replace(base, hop_seconds=hop), voice)
    duration = len(audio) / pipeline.spec.sample_rate
    return pipeline.push(audio, captured_at=duration) + pipeline.finish(duration)
