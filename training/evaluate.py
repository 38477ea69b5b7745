"""Evaluation protocols and their metrics; ``training.reports`` writes what they find.

- ``speaker``: speaker-independent folds (RAVDESS 5 folds of 4 actors, Emo-DB and other small
  corpora leave-one-speaker-out, TESS train on one speaker and test on the other). Augmentation is
  added after the split, for training utterances only. These are the figures we stand behind.
- ``random``: a stratified random 80/20 split of utterances, augmentation after the split.
- ``leaky``: the seed notebook's protocol, for contrast: augmented copies are made first, then all
  windows are split at random, so the test set holds copies of training utterances (and the same
  speakers). Scored per window, as the notebook did.

Utterance-level scores average the window probabilities of each utterance, as the daemon's
smoothing does over a spoken sentence.

With the "speaker" normalisation every test utterance is scored twice: ``adapted`` (standardised
with statistics of the same speaker's OTHER utterances, never its own: what the daemon reaches
once it has heard a voice) and ``cold`` (statistics of the fold's training set: a voice the
daemon has just met); a third time ``neutral-heavy``: adapted, but with the speaker's other
neutral utterances making three quarters of the statistics, as a live stream that is mostly
neutral would. Variants are named ``float``/``int8`` (adapted), ``...-cold`` and
``...-neutral``.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamer.features import FeatureSpec, FeatureStatistics
from streamer.models import TFLiteModel
from training.architectures import MODEL_INPUT
from training.corpora import (
    NATIVE_POLICY,
    SHIPPED_CORPORA,
    SHIPPED_POLICY,
    Utterance,
    load_labelled,
)
from training.dataset import (
    ORIGINAL,
    WindowSet,
    build_windows,
    cold_copies,
    neutral_heavy_weights,
    standardise_by_voice,
    standardise_with,
    statistics_of,
    training_windows,
)
from training.export import export_model
from training.fusion import fused, held_out_weights
from training.metrics import CONDITIONS, confusion_scores, scores
from training.train import (
    TrainConfig,
    augmented_variants,
    fit,
    fit_windows,
    takes_cold_copies,
)

_LOGGER = logging.getLogger(__name__)

PROTOCOLS = ("speaker", "random", "leaky", "shipped")
VARIANTS = tuple(f"{m}{suffix}" for suffix in CONDITIONS.values() for m in ("float", "int8"))
"""Scored variants: float or int8 model, under each condition."""


@dataclass(frozen=True)
class Fold:
    """Which utterances train and which test, by index into the corpus's utterance list."""

    name: str
    train: np.ndarray
    test: np.ndarray


def speaker_folds(corpus: str, utterances: list[Utterance]) -> list[Fold]:
    """Speaker-independent folds: RAVDESS 5 × 4 actors, otherwise leave one speaker out."""
    speaker_of = np.array([u.speaker for u in utterances])
    ordered = sorted(set(speaker_of))
    if corpus == "ravdess" or len(ordered) > 10:
        size = 4 if corpus == "ravdess" else int(np.ceil(len(ordered) / 5))
        groups = [ordered[i : i + size] for i in range(0, len(ordered), size)]
    else:
        groups = [[speaker] for speaker in ordered]
    folds = []
    for group in groups:
        held_out = np.isin(speaker_of, group)
        name = "+".join(s.split(":", 1)[1] for s in group)
        folds.append(Fold(name, np.flatnonzero(~held_out), np.flatnonzero(held_out)))
    return folds


def shipped_recipe_folds(corpus: str, utterances: list[Utterance]) -> list[Fold]:
    """``corpus``'s speaker folds over the utterances of several corpora: each tests the held-out
    speakers of ``corpus`` and trains on everyone else, of every corpus, as the shipped models
    are trained."""
    own = np.flatnonzero([u.corpus == corpus for u in utterances])
    everyone = np.arange(len(utterances))
    return [
        Fold(fold.name, np.setdiff1d(everyone, own[fold.test]), own[fold.test])
        for fold in speaker_folds(corpus, [utterances[i] for i in own])
    ]


def random_fold(utterances: list[Utterance], seed: int = 0, test_share: float = 0.2) -> Fold:
    """One stratified random split of utterances (speakers appear on both sides)."""
    from sklearn.model_selection import train_test_split

    indices = np.arange(len(utterances))
    train, test = train_test_split(
        indices, test_size=test_share, random_state=seed, stratify=[u.label for u in utterances]
    )
    return Fold("random", np.sort(train), np.sort(test))


def _per_utterance(
    window_probabilities: np.ndarray, owners: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    utterances = np.unique(owners)
    averaged = np.stack([window_probabilities[owners == u].mean(axis=0) for u in utterances])
    return utterances, averaged


def fold_windows(
    fold: Fold, original: WindowSet, augmented: list[WindowSet]
) -> tuple[WindowSet, WindowSet]:
    """Training windows (original and augmented copies of training utterances) and test
    windows (held-out utterances, unaugmented), before any voice standardisation."""
    train = WindowSet.concat([s.select(fold.train) for s in (original, *augmented)])
    return train, original.select(fold.test)


def standardised_fold(
    fold: Fold,
    original: WindowSet,
    augmented: dict[str, WindowSet],
    speaker_of_utterance: np.ndarray,
    neutral_of_utterance: np.ndarray,
    spec: FeatureSpec,
    config: TrainConfig,
    model_names: tuple[str, ...],
) -> tuple[WindowSet, WindowSet | None, dict[str, WindowSet], FeatureStatistics | None]:
    """Training windows, their cold copies (None if none of ``model_names`` takes them), test
    windows per condition (see ``CONDITIONS``), cold statistics.

    ``augmented`` holds the windows of every variant of ``config.augment`` and
    ``config.cold_variants``. Training windows are standardised with their own speaker's
    statistics, each augmented copy counting as a voice of its own (a pitch-shifted speaker is
    another voice), their cold copies with the training set's statistics; test windows with
    their speaker's other utterances (adapted) or the training set's statistics (cold).
    Without the "speaker" normalisation the windows are already the models' inputs, the same
    adapted or cold.
    """
    variants = {ORIGINAL: original, **augmented}
    train, test = fold_windows(fold, original, [augmented[v] for v in config.augment])
    if spec.normalisation != "speaker":
        return train, None, {"adapted": test, "cold": test}, None
    cold = statistics_of(original.select(fold.train))
    train = training_windows(
        [variants[v].select(fold.train) for v in (ORIGINAL, *config.augment)],
        speaker_of_utterance,
    )
    copies = None
    if takes_cold_copies(model_names, config, spec):
        copies = cold_copies([variants[v].select(fold.train) for v in config.cold_variants], cold)
    tests = {
        "adapted": standardise_by_voice(test, speaker_of_utterance, True, cold),
        "cold": standardise_with(test, [cold] * len(test.utterance)),
    }
    if neutral_of_utterance.any():
        weights = neutral_heavy_weights(test, speaker_of_utterance, neutral_of_utterance)
        tests["neutral-heavy"] = standardise_by_voice(
            test, speaker_of_utterance, True, cold, weights
        )
    return train, copies, tests, cold


def evaluate_fold(
    fold: Fold,
    original: WindowSet,
    augmented: dict[str, WindowSet],
    utterance_labels: np.ndarray,
    speaker_of_utterance: np.ndarray,
    classes: list[str],
    model_names: tuple[str, ...],
    spec: FeatureSpec,
    config: TrainConfig,
) -> dict:
    """Trains each model on the fold's training utterances (plus their augmented copies) and
    scores float and int8 versions on the held-out utterances, adapted and cold, and the int8
    ensemble."""
    neutral_of_utterance = utterance_labels == (
        classes.index("neutral") if "neutral" in classes else -1
    )
    train, copies, tests, cold = standardised_fold(
        fold,
        original,
        augmented,
        speaker_of_utterance,
        neutral_of_utterance,
        spec,
        config,
        model_names,
    )
    result: dict = {
        "fold": fold.name,
        "train_windows": len(train.utterance),
        "test_utterances": len(np.unique(fold.test)),
        "models": {},
    }
    kept: dict[str, np.ndarray] = {}
    for name in model_names:
        started = time.perf_counter()
        mine, window_weights = fit_windows(name, train, copies, config, speaker_of_utterance)
        labels = utterance_labels[mine.utterance]
        model = fit(name, mine, labels, len(classes), config, window_weights=window_weights)
        model_input = MODEL_INPUT[name]
        result["models"][name] = {"train_windows": len(mine.utterance)}
        with tempfile.TemporaryDirectory() as directory:
            path = export_model(
                Path(directory), name, model, mine.get(model_input), classes, spec, {}, cold
            )
            tflite = TFLiteModel(path, spec)
            for condition, test in tests.items():
                suffix = CONDITIONS[condition]
                inputs = test.get(model_input)
                float_windows = model.predict(inputs[..., None], verbose=0)
                int8_windows = np.stack([tflite.predict(x) for x in inputs])
                owners, float_probs = _per_utterance(float_windows, test.utterance)
                _, int8_probs = _per_utterance(int8_windows, test.utterance)
                truth = utterance_labels[owners]
                result["models"][name][f"float{suffix}"] = scores(truth, float_probs, classes)
                result["models"][name][f"int8{suffix}"] = scores(truth, int8_probs, classes)
                agreement = float(np.mean(float_probs.argmax(1) == int8_probs.argmax(1)))
                result["models"][name][f"agreement{suffix}"] = agreement
                kept[f"{name}/int8{suffix}"] = int8_probs
                kept[f"labels{suffix}"] = truth
        result["models"][name]["seconds"] = round(time.perf_counter() - started, 1)
    if len(model_names) > 1:
        result["models"]["ensemble"] = ensemble_scores(kept, model_names, classes)
    result["probabilities"] = kept
    return result


def ensemble_scores(
    kept: dict[str, np.ndarray], model_names: tuple[str, ...], classes: list[str]
) -> dict:
    """Scores of the plain average of the models' kept int8 probabilities, per condition."""
    return {
        f"int8{suffix}": scores(
            kept[f"labels{suffix}"],
            np.mean([kept[f"{name}/int8{suffix}"] for name in model_names], axis=0),
            classes,
        )
        for suffix in CONDITIONS.values()
        if f"labels{suffix}" in kept
    }


def add_weighted_ensemble(folds: list[dict], models: tuple[str, ...], classes: list[str]) -> None:
    """Adds ``"ensemble-weighted"`` to every fold's models: the int8 models' probabilities
    averaged with the weights chosen on the OTHER folds (``training.fusion``), kept under
    ``"weights"``."""
    for fold, weights in zip(folds, held_out_weights(folds, models, len(classes)), strict=True):
        kept = fold["probabilities"]
        entry: dict = {"weights": dict(zip(models, weights.round(3).tolist(), strict=True))}
        for suffix in CONDITIONS.values():
            if f"labels{suffix}" in kept:
                combined = fused([kept[f"{m}/int8{suffix}"] for m in models], weights)
                entry[f"int8{suffix}"] = scores(kept[f"labels{suffix}"], combined, classes)
        fold["models"]["ensemble-weighted"] = entry


ENSEMBLES = ("ensemble", "ensemble-weighted")
"""A fold's results that are scored from its models' probabilities rather than a model's own."""
SAME_RUN = ("corpus", "protocol", "features", "folds_limit", "per_speaker")
"""What a report and a new run must share to be merged, known before anything is trained."""


def check_mergeable(kept: dict, run: dict) -> None:
    """Raises ValueError, naming the first setting that differs, unless a run of ``run``'s
    settings (``SAME_RUN`` keys, as its report would hold them) can be merged into ``kept``."""
    for key in SAME_RUN:
        mine, theirs = kept.get(key), run.get(key)
        if mine == theirs:
            continue
        if isinstance(mine, dict) and isinstance(theirs, dict):
            field = next(f for f in sorted({*mine, *theirs}) if mine.get(f) != theirs.get(f))
            key, mine, theirs = f"{key}.{field}", mine.get(field), theirs.get(field)
        raise ValueError(f"made with {key} {mine!r}, this run {theirs!r}: cannot merge them")


def merge_reports(kept: dict, new: dict) -> dict:
    """``kept`` (changed in place, and returned) with the results of ``new``'s models put in
    place of its own, and its ensembles scored again over all its models.

    For retraining one model without training the others again: both reports must come from
    the same corpus, settings and folds, testing the same utterances in each. ``kept["training"]``
    still says how the models it kept were trained; ``kept["retrained"]`` says it of the models
    taken from ``new``. The folds' probabilities (``training.reports.read_report``) are what the
    ensembles are scored from.
    """
    check_mergeable(kept, new)
    for key in ("labels", "speakers", "utterances"):
        if kept.get(key) != new.get(key):
            raise ValueError(f"made with other {key} than this run's: cannot merge them")
    names = [fold["fold"] for fold in new["folds"]]
    if names != [fold["fold"] for fold in kept["folds"]]:
        raise ValueError(f"made on other folds than this run's {names}: cannot merge them")
    classes = kept["labels"]
    for old_fold, new_fold in zip(kept["folds"], new["folds"], strict=True):
        _merge_fold(old_fold, new_fold, classes)
    models = tuple(name for name in kept["folds"][0]["models"] if name not in ENSEMBLES)
    if len(models) > 1 and len(kept["folds"]) > 1:
        add_weighted_ensemble(kept["folds"], models, classes)
    for name in new["folds"][0]["models"]:
        if name not in ENSEMBLES:
            retrained = {"training": new["training"], "seconds": new["seconds"]}
            kept.setdefault("retrained", {})[name] = retrained
    kept["mean"] = mean_scores(kept["folds"])
    return kept


def _merge_fold(kept: dict, new: dict, classes: list[str]) -> None:
    """One fold of ``merge_reports``: the new models' results and probabilities in, the
    ensembles (scored from the probabilities the report will keep: float32) out and again."""
    probabilities = kept["probabilities"]
    for key, values in new["probabilities"].items():
        if not key.startswith("labels"):
            probabilities[key] = values.astype(np.float32)
        elif not np.array_equal(probabilities.get(key), values):
            raise ValueError(f"fold {kept['fold']} tests other utterances than this run's")
    for ensemble in ENSEMBLES:
        kept["models"].pop(ensemble, None)
    for name, result in new["models"].items():
        if name not in ENSEMBLES:
            kept["models"][name] = result
    models = tuple(kept["models"])
    if len(models) > 1:
        kept["models"]["ensemble"] = ensemble_scores(probabilities, models, classes)


def evaluate_leaky(
    original: WindowSet,
    augmented: dict[str, WindowSet],
    utterance_labels: np.ndarray,
    speaker_of_utterance: np.ndarray,
    classes: list[str],
    model_names: tuple[str, ...],
    spec: FeatureSpec,
    config: TrainConfig,
    seed: int = 0,
) -> dict:
    """The seed's protocol: augment first, split windows at random 80/20, score windows.

    Windows are standardised with their own speaker's statistics (leaking, as the protocol
    does everything); there are no cold copies."""
    sets = [original, *(augmented[v] for v in config.augment)]
    if spec.normalisation == "speaker":
        sets = [standardise_by_voice(s, speaker_of_utterance, False) for s in sets]
    pooled = WindowSet.concat(sets)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(pooled.utterance))
    cut = int(0.8 * len(order))
    train_rows, test_rows = np.sort(order[:cut]), np.sort(order[cut:])
    labels_of = utterance_labels[pooled.utterance]
    result: dict = {
        "fold": "leaky-random-windows",
        "train_windows": len(train_rows),
        "test_windows": len(test_rows),
        "models": {},
    }
    for name in model_names:
        x = pooled.get(MODEL_INPUT[name])
        subset = pooled.rows(train_rows)
        model = fit(name, subset, labels_of[train_rows], len(classes), config)
        probabilities = model.predict(x[test_rows][..., None], verbose=0)
        result["models"][name] = {"float": scores(labels_of[test_rows], probabilities, classes)}
    return result


def mean_scores(folds: list[dict]) -> dict:
    """Per model and variant: the mean of each figure over folds, and ``pooled`` figures from
    the confusion matrix summed over folds (every utterance counted once, so folds with few
    clips of a class do not swing the result)."""
    summary: dict = {}
    for model, variants in folds[0]["models"].items():
        summary[model] = {}
        for variant in VARIANTS:
            if variant not in variants:
                continue
            per_fold = [f["models"][model][variant] for f in folds]
            summary[model][variant] = {
                key: float(np.mean([s[key] for s in per_fold]))
                for key in ("unweighted_accuracy", "weighted_accuracy", "macro_f1", "loss")
            }
            confusion = np.sum([s["confusion"] for s in per_fold], axis=0).tolist()
            summary[model][variant]["confusion"] = confusion
            summary[model][variant]["pooled"] = confusion_scores(confusion)
        for agreement in (f"agreement{suffix}" for suffix in CONDITIONS.values()):
            if agreement in variants:
                summary[model][agreement] = float(
                    np.mean([f["models"][model][agreement] for f in folds])
                )
    return summary


def rescored(report: dict) -> dict:
    """The report with every figure recomputed from its confusion matrices (losses kept)."""
    for fold in report["folds"]:
        for variants in fold["models"].values():
            for variant in VARIANTS:
                if variant in variants:
                    variants[variant].update(confusion_scores(variants[variant]["confusion"]))
    report["mean"] = mean_scores(report["folds"])
    return report


def evaluate_corpus(
    corpus: str,
    protocol: str,
    datasets: Path,
    model_names: tuple[str, ...] = ("cnn", "lstm"),
    spec: FeatureSpec | None = None,
    config: TrainConfig | None = None,
    folds_limit: int | None = None,
    per_speaker: int | None = None,
) -> dict:
    """Runs one protocol on one corpus with its own classes; returns the report.

    The "shipped" protocol measures the shipped recipe instead: the shipped labels, and folds
    that hold out the corpus's speakers as "speaker" does but train on every other speaker of
    ``SHIPPED_CORPORA`` too (``shipped_recipe_folds``).

    ``folds_limit`` and ``per_speaker`` shrink the run (first folds, utterances per speaker)
    for quick checks; the published figures use neither.
    """
    spec = spec or FeatureSpec()
    config = config or TrainConfig()
    shipped = protocol == "shipped"
    utterances, classes, utterance_labels = load_labelled(
        tuple(dict.fromkeys((*SHIPPED_CORPORA, corpus))) if shipped else [corpus],
        datasets,
        SHIPPED_POLICY if shipped else NATIVE_POLICY,
        per_speaker,
        config.seed,
    )
    speaker_of_utterance = np.array([u.speaker for u in utterances])
    original = build_windows(utterances, spec, ORIGINAL)
    # The leaky protocol has no cold copies.
    variants = (
        config.augment if protocol == "leaky" else augmented_variants(model_names, config, spec)
    )
    augmented = {v: build_windows(utterances, spec, v) for v in variants}
    # What every fold of either protocol is made from, in the runners' argument order.
    corpus_data = (
        original,
        augmented,
        utterance_labels,
        speaker_of_utterance,
        classes,
        model_names,
        spec,
        config,
    )
    started = time.perf_counter()
    if protocol == "leaky":
        folds = [evaluate_leaky(*corpus_data)]
    else:
        if protocol == "speaker":
            splits = speaker_folds(corpus, utterances)
        elif shipped:
            splits = shipped_recipe_folds(corpus, utterances)
        else:
            splits = [random_fold(utterances, config.seed)]
        folds = []
        for fold in splits[:folds_limit]:
            folds.append(evaluate_fold(fold, *corpus_data))
            _LOGGER.info(
                "%s %s fold %s: %s",
                corpus,
                protocol,
                fold.name,
                {
                    f"{m} {v}": round(r[v]["unweighted_accuracy"], 3)
                    for m, r in folds[-1]["models"].items()
                    for v in ("int8", "int8-cold", "int8-neutral")
                    if v in r
                },
            )
        if len(model_names) > 1 and len(folds) > 1:
            add_weighted_ensemble(folds, model_names, classes)
    return {
        "corpus": corpus,
        "protocol": protocol,
        "labels": classes,
        "utterances": len(utterances),
        "speakers": sorted({u.speaker for u in utterances}),
        "skipped_files": original.skipped,
        "features": spec.to_dict(),
        "training": config.to_dict(),
        "seconds": round(time.perf_counter() - started, 1),
        "folds_limit": folds_limit,
        "per_speaker": per_speaker,
        "folds": folds,
        "mean": mean_scores(folds),
    }
