"""Fitting one model on windows of labelled utterances."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from streamer.features import FeatureSpec
from streamer.shipped import MODEL_NAMES
from training.architectures import BUILDERS, MODEL_INPUT, merge_heads
from training.corpora import SHIPPED_POLICY, LabelPolicy, load_labelled, speakers
from training.dataset import (
    ORIGINAL,
    WindowSet,
    build_windows,
    statistics_of,
    training_windows,
)
from training.export import attach_metrics, export_model
from training.fusion import attach_weights, set_weights

if TYPE_CHECKING:
    import keras

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Training settings; saved in each model's metadata."""

    epochs: int = 30
    """Passes over the training windows (no early stopping: held-out speakers are for testing)."""
    batch_size: int = 64
    learning_rate: float = 2e-3
    """Adam's initial rate, decayed by a cosine schedule to zero over the epochs."""
    augment: tuple[str, ...] = ("pitch", "stretch", "noise")
    """Augmentation variants added for the training utterances only."""
    class_weighting: bool = True
    """Weight classes inversely to their frequency (RAVDESS has half as many neutral clips)."""
    label_smoothing: float = 0.05
    cold_copies: bool = False
    """Also train on the original recordings standardised with the training set's statistics,
    as the daemon hears a voice before it has adapted (``training.dataset.training_windows``)."""
    functionals_heads: int = 1
    """Heads of the functionals model, each trained alone from its own seed (``seed``,
    ``seed + 1``, ...) and averaged in one graph (``architectures.merge_heads``). Five, with
    gated pitch and voicing, were better on both corpora but kept 137 of the loudness sweep's
    153 labels at -45 dBFS, one short of its bar (reports/ablation.md); the shipped model has
    one."""
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def configure_tensorflow(threads: int | None = None) -> None:
    """Quiet, deterministic-enough TensorFlow on the cores we have."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    threads = threads or os.cpu_count() or 1
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # already initialised in this process: the first setting stands


def fit(
    name: str,
    windows: WindowSet,
    window_labels: np.ndarray,
    n_classes: int,
    config: TrainConfig,
    verbose: int = 0,
) -> keras.Model:
    """A trained Keras model ``name`` (see ``BUILDERS``) for windows labelled 0..n_classes-1."""
    configure_tensorflow()
    # Taken once: for the functionals model this joins every window's columns into one array,
    # which each head would otherwise build again.
    x = windows.get(MODEL_INPUT[name])[..., None]
    heads = config.functionals_heads if name == "functionals" else 1
    trained = [
        _fit_one(name, x, window_labels, n_classes, replace(config, seed=config.seed + i), verbose)
        for i in range(heads)
    ]
    if heads == 1:
        return trained[0]
    merged = BUILDERS[name](x.shape[1], x.shape[2], n_classes, heads=heads)
    return merge_heads(merged, trained)


def _fit_one(
    name: str,
    x: np.ndarray,
    window_labels: np.ndarray,
    n_classes: int,
    config: TrainConfig,
    verbose: int,
) -> keras.Model:
    """``fit`` for one seed on its inputs ``x`` ((windows, frames, columns, 1)): ``config.seed``
    decides the initial weights, dropout and order."""
    import keras

    keras.utils.set_random_seed(config.seed)
    model = BUILDERS[name](x.shape[1], x.shape[2], n_classes)
    steps = config.epochs * int(np.ceil(len(x) / config.batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, steps)
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=["accuracy"],
    )
    class_weight = None
    if config.class_weighting:
        counts = np.bincount(window_labels, minlength=n_classes).astype(float)
        present = counts > 0
        weights = np.where(present, len(window_labels) / (present.sum() * np.maximum(counts, 1)), 0)
        class_weight = dict(enumerate(weights))
    model.fit(
        x,
        keras.utils.to_categorical(window_labels, n_classes),
        batch_size=config.batch_size,
        epochs=config.epochs,
        class_weight=class_weight,
        shuffle=True,
        verbose=verbose,
    )
    return model


def train_models(
    corpora: tuple[str, ...],
    datasets: Path,
    out_dir: Path,
    model_names: tuple[str, ...] = ("cnn", "lstm"),
    spec: FeatureSpec | None = None,
    config: TrainConfig | None = None,
    policy: LabelPolicy = SHIPPED_POLICY,
    per_speaker: int | None = None,
    keep_keras: bool = True,
    reports_dir: Path | None = Path("reports"),
) -> list[Path]:
    """Trains the models on every speaker of ``corpora`` and exports them into ``out_dir``.

    ``per_speaker`` keeps only that many utterances of each speaker (for quick runs and CI).
    The evaluation figures found in ``reports_dir`` are copied into each model's metadata, and
    the ensemble weights chosen on its reports (``training.fusion``) with them.
    """
    spec = spec or FeatureSpec()
    config = config or TrainConfig()
    utterances, classes, utterance_labels = load_labelled(
        corpora, datasets, policy, per_speaker, config.seed
    )
    sets = [build_windows(utterances, spec, variant) for variant in (ORIGINAL, *config.augment)]
    statistics = None
    if spec.normalisation == "speaker":
        # The daemon starts from the original recordings' statistics.
        statistics = statistics_of(sets[0])
        speaker_of_utterance = np.array([u.speaker for u in utterances])
        windows = training_windows(sets, speaker_of_utterance, statistics, config.cold_copies)
    else:
        windows = WindowSet.concat(sets)
    training = {
        "corpora": list(corpora),
        "speakers": speakers(utterances),
        "utterances": len(utterances),
        "windows": len(windows.utterance),
        "skipped_files": len(windows.skipped),
        "label_policy": {"merge": policy.merge, "drop": list(policy.drop)},
        "config": config.to_dict(),
    }
    written = []
    for name in model_names:
        started = time.perf_counter()
        model = fit(name, windows, utterance_labels[windows.utterance], len(classes), config)
        training["seconds"] = round(time.perf_counter() - started, 1)
        path = export_model(
            out_dir,
            name,
            model,
            windows.get(MODEL_INPUT[name]),
            classes,
            spec,
            dict(training),
            statistics,
            keep_keras=keep_keras,
        )
        if reports_dir is not None:
            attach_metrics(path, reports_dir)
        _LOGGER.info("%s: trained in %.0f s, written to %s", name, training["seconds"], path)
        written.append(path)
    # Weights are relative to the other models in the folder, retrained or not.
    present = tuple(n for n in MODEL_NAMES if (Path(out_dir) / f"{n}.json").is_file())
    weights = attach_weights(out_dir, reports_dir, present) if reports_dir is not None else {}
    if not weights:
        set_weights(out_dir, dict.fromkeys(present, 1.0))
        _LOGGER.warning("no report holds every model's probabilities: equal ensemble weights")
    else:
        _LOGGER.info("ensemble weights from %s: %s", reports_dir, weights)
    return written
