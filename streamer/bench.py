"""``emostream bench``: per-hop cost, speed, memory and start-up, against the naive path.

The naive path is what a notebook does every hop: librosa recomputes the whole window's
features, and Keras ``predict`` runs the float model. TensorFlow is imported only inside that
path's function, so the daemon never loads it. Without the ``[train]`` extra (a Raspberry Pi
install), the streaming path is measured alone and the report says what the comparison needs.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from streamer.adaptation import VoiceAdaptation
from streamer.audio import read_audio
from streamer.config import PipelineConfig, SourceConfig
from streamer.features import (
    MODEL_INPUTS,
    FeatureSpec,
    FeatureStatistics,
    prosody_from_correlation,
    split_columns,
    taper_correlation,
)
from streamer.models import MODEL_NAMES, ModelError, TFLiteModel, load_models
from streamer.pipeline import Pipeline
from streamer.vad import SpeechDetector

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class Timing:
    """Summary of repeated measurements (milliseconds)."""

    median_ms: float
    p99_ms: float
    count: int

    @classmethod
    def of(cls, seconds: list[float]) -> Timing:
        values = np.array(seconds) * 1000.0
        return cls(float(np.median(values)), float(np.percentile(values, 99)), len(values))


@dataclass(frozen=True)
class BenchReport:
    """Everything ``emostream bench`` measures."""

    hop_seconds: float
    cpu: int | None
    """Core the benchmark was pinned to (None: not pinned)."""
    streaming: Timing
    """Per hop, fed capture blocks as the daemon is: speech detector, new frames' features,
    adaptation, all models, smoothing (quantised TFLite)."""
    detector: Timing
    """Per hop: the speech detector alone, fed whole hops (its share of ``streaming``: it scores
    a hop's frames in one call either way)."""
    naive: Timing | None
    """Per hop: librosa on the whole window, then Keras predict for each model; None when the
    naive path's packages (the [train] extra) are not installed."""
    naive_models: str
    """Where the naive path's Keras models came from, or why it was not measured."""
    audio_seconds: float
    """Length of the file ``serve --fast`` processed."""
    serve_seconds: float
    """Wall time of ``serve --fast`` on it, start-up included."""
    peak_rss_mb: float
    """Peak resident memory of that ``serve`` process (MiB)."""
    first_label_seconds: float
    """From starting ``serve --fast`` to receiving its first emotion message."""

    @property
    def speedup(self) -> float | None:
        """Naive median over streaming median; None without the naive path."""
        if self.naive is None:
            return None
        return self.naive.median_ms / self.streaming.median_ms

    @property
    def real_time_factor(self) -> float:
        """Processing time per second of audio (below 1: faster than real time)."""
        return self.serve_seconds / self.audio_seconds


def pin_to_one_core() -> int | None:
    """Restricts this process (and its children) to one CPU, so figures are per core."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpu = max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu


def speech_audio(clips: list[Path], spec: FeatureSpec, seconds: float) -> np.ndarray:
    """The clips back to back, repeated to ``seconds``: (samples,) float32 at the spec rate."""
    parts = [read_audio(path, spec.sample_rate) for path in clips]
    if not parts:
        raise FileNotFoundError("no clips to benchmark with")
    one_round = np.concatenate(parts)
    repeats = int(np.ceil(seconds * spec.sample_rate / len(one_round)))
    return np.tile(one_round, repeats)[: round(seconds * spec.sample_rate)]


def time_streaming(
    models: list[TFLiteModel],
    audio: np.ndarray,
    hop_seconds: float,
    block_samples: int = SourceConfig.block_size,
) -> Timing:
    """Per-hop time of the daemon's pipeline, adapting as it does, fed capture blocks of
    ``block_samples`` as the microphone delivers them: a hop's time is that of every block
    from the previous window's to its own, since the daemon pays for each block's call."""
    spec = models[0].metadata.features
    adaptation = VoiceAdaptation(Pipeline.training_statistics(models), spec, hop_seconds)
    pipeline = Pipeline(models, PipelineConfig(hop_seconds=hop_seconds), adaptation)
    durations = []
    spent = 0.0
    for start in range(0, len(audio) - block_samples + 1, block_samples):
        started = time.perf_counter()
        results = pipeline.push(audio[start : start + block_samples], time.time())
        spent += time.perf_counter() - started
        if not results:
            continue
        # Count only hops that ran the models: silence skips them and would flatter the figure.
        durations += [spent / len(results) for r in results if len(r.models) == len(models)]
        spent = 0.0
    return Timing.of(durations[1:])


def time_detector(audio: np.ndarray, hop_seconds: float, window_seconds: float) -> Timing:
    """Per-hop time of the voice-activity detector alone, fed one hop of audio at a time."""
    detector = SpeechDetector(window_seconds)
    hop = round(hop_seconds * 16000)
    durations = []
    for start in range(0, len(audio) - hop + 1, hop):
        started = time.perf_counter()
        detector.push(audio[start : start + hop])
        detector.score()
        durations.append(time.perf_counter() - started)
    return Timing.of(durations[1:])


def librosa_features(samples: np.ndarray, spec: FeatureSpec) -> dict[str, np.ndarray]:
    """The textbook librosa computation of both inputs of one window, (frames, columns) each.

    The naive path's features, and the reference the feature module is tested against.
    """
    import librosa

    mel = librosa.feature.melspectrogram(
        y=samples,
        sr=spec.sample_rate,
        n_fft=spec.n_fft,
        hop_length=spec.hop_length,
        center=False,
        n_mels=spec.n_mels,
        fmin=spec.fmin,
        fmax=spec.fmax,
    )
    mel_db = librosa.power_to_db(mel, amin=spec.amin, top_db=None)
    mfcc = librosa.feature.mfcc(S=mel_db, n_mfcc=spec.n_mfcc)
    rms = librosa.feature.rms(
        y=samples, frame_length=spec.n_fft, hop_length=spec.hop_length, center=False
    )
    rms_db = librosa.amplitude_to_db(rms, amin=np.sqrt(spec.amin), top_db=None)
    frames = librosa.util.frame(samples, frame_length=spec.n_fft, hop_length=spec.hop_length)
    tapered = frames.T * librosa.filters.get_window("hann", spec.n_fft)
    # Time-domain autocorrelation of each frame, less its mean (below 50 Hz in the fast path).
    tapered = tapered - tapered.mean(axis=1, keepdims=True)
    correlation = librosa.autocorrelate(tapered, max_size=int(spec.pitch_lags[-1]) + 1, axis=1)
    prosody = prosody_from_correlation(correlation, spec, taper_correlation(spec))
    return {
        "log_mel": mel_db.T,
        "mfcc_energy": np.concatenate([mfcc, rms_db]).T,
        "prosody": prosody,
    }


def librosa_model_inputs(
    samples: np.ndarray, spec: FeatureSpec, statistics: FeatureStatistics
) -> dict[str, np.ndarray]:
    """The models' inputs of one window, the textbook way: librosa's features relative to the
    loudest frame, floored, MFCCs of the floored spectrum, standardised with ``statistics``;
    their functionals (which librosa does not compute) standardised likewise."""
    import librosa

    features = librosa_features(samples, spec)
    reference = features["mfcc_energy"][:, -1].max()
    log_mel = np.maximum(features["log_mel"] - reference, -spec.dynamic_range_db)
    mfcc = librosa.feature.mfcc(S=log_mel.T, n_mfcc=spec.n_mfcc).T
    energy = np.maximum(features["mfcc_energy"][:, -1:] - reference, -spec.dynamic_range_db)
    columns = np.concatenate([log_mel, mfcc, energy, features["prosody"]], axis=1)
    standardised = statistics.standardise(split_columns(columns, spec.n_mels))
    return {name: standardised.get(name) for name in MODEL_INPUTS}


def time_naive(
    models: list[TFLiteModel], model_dir: Path, audio: np.ndarray, hop_seconds: float, hops: int
) -> tuple[Timing, str]:
    """Per-hop time of librosa whole-window features plus Keras predict, and the models' origin."""
    keras_models, origin = _keras_models(models, model_dir)
    spec = models[0].metadata.features
    window = spec.window_samples
    hop = round(hop_seconds * spec.sample_rate)
    durations = []
    statistics = Pipeline.training_statistics(models)
    for start in range(0, min(len(audio) - window, hops * hop) + 1, hop):
        started = time.perf_counter()
        inputs = librosa_model_inputs(audio[start : start + window], spec, statistics)
        for model, keras_model in zip(models, keras_models, strict=True):
            x = inputs[model.metadata.model_input]
            keras_model.predict(x[None, ..., None], verbose=0)
        durations.append(time.perf_counter() - started)
    return Timing.of(durations[1:]), origin


NAIVE_PACKAGES = ("tensorflow", "keras", "librosa")
"""What the naive path imports: Keras with TensorFlow, and librosa; all in the [train] extra."""


def missing_naive_packages() -> list[str]:
    """The naive path's packages that are not installed (found without importing them)."""
    return [name for name in NAIVE_PACKAGES if importlib.util.find_spec(name) is None]


def _keras_models(models: list[TFLiteModel], model_dir: Path) -> tuple[list[Any], str]:
    """The float Keras models saved beside the TFLite ones by ``emostream train``.

    Keras, and through it TensorFlow, is loaded here only: the naive path exists to be compared
    with. One thread each, like the daemon, which the bench pins to one core.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
    import keras

    paths = [Path(model_dir) / f"{model.name}.keras" for model in models]
    for path in paths:
        if not path.is_file():
            raise ModelError(f"{path}: float Keras model for the naive path not found")
    try:
        return [keras.models.load_model(path) for path in paths], ", ".join(map(str, paths))
    except (ValueError, TypeError, OSError) as error:
        reason = str(error).strip().splitlines()[0]
        raise ModelError(f"{paths[0].parent}: cannot load the Keras models ({reason})") from None


def _emostream() -> list[str]:
    script = shutil.which("emostream")
    if script:
        return [script]
    return [sys.executable, "-c", "from streamer.cli import main; main()"]


def _serve_command(scratch_dir: Path) -> list[str]:
    """``emostream serve`` reading an empty settings file alone: the figures are those of the
    defaults and the bench's flags, whatever /etc/emostream or ~/.config/emostream say."""
    settings = scratch_dir / "bench.toml"
    # The daemon adapts as it would for a user, but on its own statistics, never the user's.
    state = scratch_dir / "adaptation.json"
    settings.write_text(
        "# emostream bench: defaults and command-line flags only\n"
        f"[adaptation]\nstate_file = {json.dumps(str(state))}\n"
    )
    return [*_emostream(), "serve", "--config", str(settings)]


def time_serve(model_dir: Path, path: Path, socket_dir: Path) -> tuple[float, float]:
    """Wall time (seconds) and peak RSS (MiB) of ``serve --fast`` on ``path``.

    The peak is the child's own VmHWM, polled until it exits: ``ru_maxrss`` would count the
    pages the child shared with this (much larger) process between fork and exec.
    """
    command = [*_serve_command(socket_dir), "--source", str(path), "--fast"]
    command += ["--models-dir", str(model_dir), "--bind", f"ipc://{socket_dir / 'bench.sock'}"]
    errors = socket_dir / "serve.stderr"
    with errors.open("wb") as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
        peak_kib = 0
        try:
            while process.poll() is None:
                peak_kib = max(peak_kib, _peak_rss_kib(process.pid))
                time.sleep(0.005)
        finally:
            process.kill()
            process.wait()
        elapsed = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"serve failed: {errors.read_text().strip()}")
    return elapsed, peak_kib / 1024.0


def _peak_rss_kib(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def time_first_label(model_dir: Path, clip: Path, socket_dir: Path) -> float:
    """Seconds from starting ``serve --fast`` on ``clip`` to its first emotion message."""
    from streamer.client import Emotion, Subscriber
    from streamer.wire import TOPIC_EMOTION

    address = f"ipc://{socket_dir / 'first.sock'}"
    command = [*_serve_command(socket_dir), "--source", str(clip), "--fast", "--bind", address]
    command += ["--models-dir", str(model_dir), "--wait-subscriber", "10"]
    with Subscriber(address, topics=(TOPIC_EMOTION,), quiet_after=None) as subscriber:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while time.perf_counter() - started < 30.0:
                if isinstance(subscriber.receive(timeout=0.01), Emotion):
                    return time.perf_counter() - started
        finally:
            process.kill()
            process.wait()
    raise RuntimeError("serve published no emotion message within 30 s")


def run_bench(
    model_dir: Path,
    clips: list[Path],
    seconds: float = 120.0,
    hop_seconds: float | None = None,
    naive_hops: int = 60,
) -> BenchReport:
    """Runs every measurement on one core and returns the figures (at the default hop unless
    ``hop_seconds`` is given)."""
    if hop_seconds is None:
        hop_seconds = PipelineConfig().hop_seconds
    cpu = pin_to_one_core()
    models = load_models(model_dir, MODEL_NAMES)
    audio = speech_audio(clips, models[0].metadata.features, seconds)
    rate = models[0].metadata.features.sample_rate
    streaming = time_streaming(models, audio, hop_seconds)
    detector = time_detector(audio, hop_seconds, models[0].metadata.features.window_seconds)
    naive: Timing | None = None
    missing = missing_naive_packages()
    if missing:
        origin = f"not measured: needs {', '.join(missing)} (pip install 'emostream[train]')"
    else:
        naive, origin = time_naive(models, model_dir, audio, hop_seconds, naive_hops)
    with tempfile.TemporaryDirectory() as scratch:
        scratch_dir = Path(scratch)
        long_file = scratch_dir / "long.wav"
        sf.write(long_file, audio, rate)
        serve_seconds, rss = time_serve(model_dir, long_file, scratch_dir)
        first_label = time_first_label(model_dir, clips[0], scratch_dir)
    return BenchReport(
        hop_seconds=hop_seconds,
        cpu=cpu,
        streaming=streaming,
        detector=detector,
        naive=naive,
        naive_models=origin,
        audio_seconds=len(audio) / rate,
        serve_seconds=serve_seconds,
        peak_rss_mb=rss,
        first_label_seconds=first_label,
    )


def report_rows(report: BenchReport) -> list[tuple[str, str, str]]:
    """(measure, value, goal) rows of the printed table."""
    s, n = report.streaming, report.naive
    if n is None or report.speedup is None:
        needs = "needs the [train] extra"
        naive = [
            ("naive per hop (librosa + Keras predict), median", needs, ""),
            ("speed-up over the naive path (medians)", needs, ">= 20x"),
        ]
    else:
        naive = [
            ("naive per hop (librosa + Keras predict), median", f"{n.median_ms:.1f} ms", ""),
            ("naive per hop, p99", f"{n.p99_ms:.1f} ms", ""),
            ("speed-up over the naive path (medians)", f"{report.speedup:.0f}x", ">= 20x"),
        ]
    return [
        (
            f"per hop ({report.hop_seconds} s, fed {SourceConfig.block_size}-sample capture "
            "blocks), detector, features, adaptation, models: median",
            f"{s.median_ms:.2f} ms",
            "<= 2 ms",
        ),
        ("per hop, p99", f"{s.p99_ms:.2f} ms", ""),
        (
            "of which the speech detector (Silero VAD), median",
            f"{report.detector.median_ms:.2f} ms",
            "",
        ),
        *naive,
        (
            f"serve --fast on {report.audio_seconds:.0f} s of speech",
            f"{report.serve_seconds:.2f} s (RTF {report.real_time_factor:.3f}, "
            f"{1 / report.real_time_factor:.0f}x real time)",
            "",
        ),
        ("peak RSS of serve", f"{report.peak_rss_mb:.0f} MiB", "<= 120 MB"),
        (
            "first label after start (serve --fast)",
            f"{report.first_label_seconds:.2f} s",
            "<= 1.5 s",
        ),
    ]


def report_json(report: BenchReport) -> str:
    values = dataclasses.asdict(report)
    values["speedup"] = report.speedup
    values["real_time_factor"] = report.real_time_factor
    return json.dumps(values, indent=2)
