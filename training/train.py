"""Fitting one model on windows of labelled utterances."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from streamer.features import FeatureSpec
from streamer.shipped import MODEL_NAMES
from training.architectures import BUILDERS, MODEL_INPUT
from training.corpora import (
    SHIPPED_POLICY,
    LabelPolicy,
    corpus_of_speakers,
    load_labelled,
    speakers,
)
from training.dataset import (
    ORIGINAL,
    WindowSet,
    build_windows,
    cold_copies,
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
    cold_copies: tuple[str, ...] = ("functionals", "cnn")
    """Models that also train on cold copies: recordings standardised with the training set's
    statistics, as the daemon hears a voice before it has adapted
    (``training.dataset.cold_copies``). The CNN gained most cold with them (8 points alone on
    Emo-DB); the CNN-LSTM lost 1.7 and 3.0 points adapted in two tries (reports/ablation.md)."""
    cold_variants: tuple[str, ...] = (ORIGINAL, "channel")
    """What the cold copies are made of: the original recordings, and the same through a
    microphone's low-pass (``training.augment``). Before adapting, nothing removes a channel's
    tilt from the features, and the functionals model leaned on the top bands that a sound
    server's resampler takes off (reports/ablation.md)."""
    functionals_cold_weight: float = 4.0
    """How much each cold copy counts in the functionals model's fit, against a window
    standardised per voice (the neural models count them alike). With it, the regularisation
    below and the weights the fusion then chose, the ensemble held out gained 1.6 points cold
    and 1.0 adapted on Emo-DB, 1.5 and 1.1 on RAVDESS; lighter copies, or weaker regularisation,
    kept fewer of the loudness sweep's labels (reports/ablation.md)."""
    functionals_c: float = 0.0005
    """Inverse L2 strength of the functionals model's logistic regression. Strong, because its
    probabilities move less with the microphone's level: in the loudness sweep of
    tests/test_speech_detection.py (bar 138 of 153 labels kept at -45 dBFS), with cold copies
    weighing 4, the ensemble kept 137 labels with 0.001, 136 with 0.0007 and 141 with 0.0005,
    as earlier recipes moved by a few labels with it; on held-out speakers these are within
    0.6 point of each other in the ensemble (reports/ablation.md)."""
    corpus_balance: tuple[str, ...] = ("functionals", "cnn")
    """Models whose fit counts each corpus alike, however many windows it has: trained on
    RAVDESS, TESS and Emo-DB together as shipped, Emo-DB's 394 clips otherwise made up 7.6 %
    of the functionals model's 31,150 windows, against RAVDESS's 34.2 % and TESS's 58.2 % (its
    two voices). Balanced, the functionals model scored 72.8 / 69.7 % on Emo-DB's held-out
    speakers (adapted / cold) against 62.3 / 63.3 % under ``emostream evaluate --protocol
    shipped``, and RAVDESS's 56.3 / 52.0 % against 57.6 / 52.2 %; the CNN gained 12.3 / 10.8
    points on the two of Emo-DB's folds measured both ways and lost 3.8 / 3.2 on the one of
    RAVDESS's (half an hour per fold and recipe; reports/ablation.md). It changes
    nothing when training on one corpus. The CNN-LSTM is not named: its fit has not been
    measured balanced."""
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


def takes_cold_copies(model_names: tuple[str, ...], config: TrainConfig, spec: FeatureSpec) -> bool:
    """Whether any of ``model_names`` trains on cold copies: only under the "speaker"
    normalisation, since without it a window is the same whatever the statistics."""
    return spec.normalisation == "speaker" and bool(set(model_names) & set(config.cold_copies))


def augmented_variants(
    model_names: tuple[str, ...], config: TrainConfig, spec: FeatureSpec
) -> tuple[str, ...]:
    """The variants besides the original recordings whose windows training ``model_names``
    needs: ``config.augment``'s, and those the cold copies are made of if a model takes them."""
    cold = config.cold_variants if takes_cold_copies(model_names, config, spec) else ()
    return tuple(dict.fromkeys(v for v in (*config.augment, *cold) if v != ORIGINAL))


def fit_windows(
    name: str,
    windows: WindowSet,
    copies: WindowSet | None,
    config: TrainConfig,
    speaker_of_utterance: np.ndarray,
) -> tuple[WindowSet, np.ndarray | None]:
    """Model ``name``'s training windows and how much each counts in its fit (None: alike).

    The windows are ``windows``, and ``copies`` (the cold copies) too if ``config.cold_copies``
    names the model; for the functionals model the copies count
    ``config.functionals_cold_weight`` times (the neural models count them alike). If
    ``config.corpus_balance`` names the model and the windows come from several corpora, the
    weights are then scaled so that every corpus (each speaker's, ``speaker_of_utterance``)
    counts alike in all. One corpus alone leaves them as they are (None stays None), so that a
    network trained on one corpus takes Keras's class weights as before.
    """
    mine, weights = windows, None
    if copies is not None and name in config.cold_copies:
        mine = WindowSet.concat([windows, copies])
        if name == "functionals":
            weights = np.ones(len(mine.utterance))
            weights[len(windows.utterance) :] = config.functionals_cold_weight
    if name in config.corpus_balance:
        corpus = corpus_of_speakers(speaker_of_utterance)[mine.utterance]
        _, which, count = np.unique(corpus, return_inverse=True, return_counts=True)
        if len(count) > 1:
            balance = len(corpus) / (len(count) * count[which])
            weights = balance if weights is None else weights * balance
    return mine, weights


def fit(
    name: str,
    windows: WindowSet,
    window_labels: np.ndarray,
    n_classes: int,
    config: TrainConfig,
    verbose: int = 0,
    window_weights: np.ndarray | None = None,
) -> keras.Model:
    """A trained Keras model ``name`` (see ``BUILDERS``) for windows labelled 0..n_classes-1,
    each window counting ``window_weights`` times (default: once)."""
    configure_tensorflow()
    x = windows.get(MODEL_INPUT[name])
    class_weight = None
    if config.class_weighting:
        class_weight = class_weights(window_labels, n_classes)
    if name == "functionals":
        return fit_functionals(x, window_labels, n_classes, config, class_weight, window_weights)
    return _fit_network(
        name, x[..., None], window_labels, n_classes, config, class_weight, verbose, window_weights
    )


ABSENT_CLASS_LOGIT = -30.0
"""Logit of a class no training window has: its probability is nil."""
CONSTANT_SPREAD = 1e-3
"""Standard deviation over the training windows at or below which a functional is constant."""


def class_weights(window_labels: np.ndarray, n_classes: int) -> dict[int, float]:
    """Each class's weight in the fit, so that every class present counts alike in all over
    the windows, each window counted once; a class without windows weighs 0.

    Not as the fit weighs the windows: counted that way, a class one corpus lacks keeps its
    share when corpora are balanced (surprise, which Emo-DB lacks, fell from 14 to 10 % of
    the shipped fit), but the shipped functionals model then kept 136 of the loudness sweep's
    153 labels at -45 dBFS (bar 138; 135 and 132 with C = 0.0004 and 0.0007), against 139.
    """
    counts = np.bincount(window_labels, minlength=n_classes).astype(float)
    present = counts > 0
    spread = present.sum() * np.where(present, counts, 1.0)
    return dict(enumerate(np.where(present, counts.sum() / spread, 0.0).tolist()))


def fit_functionals(
    x: np.ndarray,
    window_labels: np.ndarray,
    n_classes: int,
    config: TrainConfig,
    class_weight: dict[int, float] | None,
    window_weights: np.ndarray | None = None,
) -> keras.Model:
    """The functionals model (``architectures.build_functionals``) from a logistic regression
    on ``x`` ((windows, functionals)), each window counting ``window_weights`` times (default:
    once), each functional standardised with the training set's statistics (every window
    alike); the standardisation is folded into the Dense layer's weights."""
    from sklearn.linear_model import LogisticRegression

    x = x.astype(np.float64)
    mean, spread = x.mean(axis=0), x.std(axis=0)
    # A functional that does not move in training (a column's mean after per-window CMVN, bar
    # float16 rounding) is left out (infinite spread: standardised to 0, weight 0): blown up to
    # unit spread, its rounding noise would get a weight that, divided by the tiny spread when
    # folded in, leaves the int8 kernel no resolution for the others.
    std = np.where(spread > CONSTANT_SPREAD, spread, np.inf)
    if class_weight is not None:
        class_weight = {c: w for c, w in class_weight.items() if w > 0}
    classifier = LogisticRegression(
        C=config.functionals_c, class_weight=class_weight, max_iter=3000
    )
    classifier.fit((x - mean) / std, window_labels, sample_weight=window_weights)
    weights = np.zeros((n_classes, x.shape[1]))
    bias = np.full(n_classes, ABSENT_CLASS_LOGIT)
    present = classifier.classes_
    if len(present) == 2:
        # Two classes: scikit-learn keeps one row, the second class's logit against the first.
        weights[present[1]] = classifier.coef_[0]
        bias[present] = (0.0, classifier.intercept_[0])
    else:
        weights[present], bias[present] = classifier.coef_, classifier.intercept_
    kernel = weights / std
    model = BUILDERS["functionals"](x.shape[1], n_classes)
    model.get_layer("classes").set_weights([kernel.T, bias - kernel @ mean])
    return model


def _fit_network(
    name: str,
    x: np.ndarray,
    window_labels: np.ndarray,
    n_classes: int,
    config: TrainConfig,
    class_weight: dict[int, float] | None,
    verbose: int,
    window_weights: np.ndarray | None,
) -> keras.Model:
    """``fit`` for the neural models on their inputs ``x`` ((windows, frames, columns, 1)):
    ``config.seed`` decides the initial weights, dropout and order."""
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
    if window_weights is not None and class_weight is not None:
        # Keras refuses both at once; a class's weight is a factor on each of its windows.
        per_class = np.array([class_weight[c] for c in range(n_classes)])
        window_weights, class_weight = window_weights * per_class[window_labels], None
    model.fit(
        x,
        keras.utils.to_categorical(window_labels, n_classes),
        batch_size=config.batch_size,
        epochs=config.epochs,
        class_weight=class_weight,
        sample_weight=window_weights,
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
    speaker_of_utterance = np.array([u.speaker for u in utterances])
    built = {
        variant: build_windows(utterances, spec, variant)
        for variant in (ORIGINAL, *augmented_variants(model_names, config, spec))
    }
    sets = [built[variant] for variant in (ORIGINAL, *config.augment)]
    statistics = None
    copies = None
    if spec.normalisation == "speaker":
        # The daemon starts from the original recordings' statistics.
        statistics = statistics_of(sets[0])
        windows = training_windows(sets, speaker_of_utterance)
        if takes_cold_copies(model_names, config, spec):
            copies = cold_copies([built[v] for v in config.cold_variants], statistics)
    else:
        windows = WindowSet.concat(sets)
    training = {
        "corpora": list(corpora),
        "speakers": speakers(utterances),
        "utterances": len(utterances),
        "skipped_files": len(windows.skipped),
        "label_policy": {"merge": policy.merge, "drop": list(policy.drop)},
        "config": config.to_dict(),
    }
    written = []
    for name in model_names:
        started = time.perf_counter()
        mine, window_weights = fit_windows(name, windows, copies, config, speaker_of_utterance)
        training["windows"] = len(mine.utterance)
        labels = utterance_labels[mine.utterance]
        model = fit(name, mine, labels, len(classes), config, window_weights=window_weights)
        training["seconds"] = round(time.perf_counter() - started, 1)
        path = export_model(
            out_dir,
            name,
            model,
            mine.get(MODEL_INPUT[name]),
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
