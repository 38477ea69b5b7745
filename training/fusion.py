"""Weights for the ensemble: how much each model's probabilities count in the published label.

The daemon averages its models' probabilities; a model that is better on unheard voices should
count for more. Weights are chosen on a grid by the unweighted accuracy they give, and never on
the labels of the speakers they are scored on: in evaluation, each fold's weights come from the
other folds' held-out predictions, whose labels are other speakers'. (The models that made
those predictions did train on the fold's speakers; only the choice of weights never sees
their labels.)
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np

from training.metrics import CONDITIONS, unweighted_accuracy

WEIGHT_STEP = 0.1
TIED_WITHIN = 0.01
"""Weights whose mean UA is within this of the best's count as tied, and the tied weights
nearest the plain average win. One seed of one model moves the ensemble's UA by more than
this (reports/ablation.md), so a smaller lead is the folds' noise, not a better weighting; and
the weights nearest the plain average kept more labels in the loudness sweep of
tests/test_speech_detection.py."""
CHOSEN_ON = (CONDITIONS["adapted"], CONDITIONS["cold"])
"""Conditions (adapted and cold) whose mean UA the weights maximise: the daemon publishes with
one set of weights whether it has adapted to a voice or not."""


def weight_grid(n_models: int, step: float = WEIGHT_STEP) -> np.ndarray:
    """Every weight vector on the grid whose weights are multiples of ``step`` and sum to 1,
    uniform first (so that ties keep the plain average)."""
    parts = round(1 / step)
    grid = [
        np.array(c) / parts
        for c in itertools.product(range(parts + 1), repeat=n_models)
        if sum(c) == parts
    ]
    grid.sort(key=lambda w: float(np.abs(w - 1 / n_models).sum()))
    return np.array([np.full(n_models, 1 / n_models), *grid])


def fused(probabilities: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """The weighted average of the models' probabilities ((utterances, classes) each)."""
    return np.tensordot(weights, np.stack(probabilities), axes=1) / weights.sum()


def best_weights(folds: list[dict], models: tuple[str, ...], n_classes: int) -> np.ndarray:
    """The grid's weights with the highest UA over ``folds`` (mean over folds and over the
    ``CHOSEN_ON`` conditions), the first in the grid's order (nearest the plain average) of
    those ``TIED_WITHIN`` of it; each fold holds its ``probabilities`` as ``evaluate_fold``
    keeps them."""
    grid = weight_grid(len(models))
    totals = np.zeros(len(grid))
    scored = 0
    for fold in folds:
        kept = fold["probabilities"]
        for suffix in CHOSEN_ON:
            labels = kept[f"labels{suffix}"]
            stacked = np.stack([kept[f"{m}/int8{suffix}"] for m in models])
            scored += 1
            for i, weights in enumerate(grid):
                combined = np.tensordot(weights, stacked, axes=1)
                totals[i] += unweighted_accuracy(labels, combined, n_classes)
    means = totals / max(scored, 1)
    return grid[int(np.flatnonzero(means >= means.max() - TIED_WITHIN)[0])]


def held_out_weights(
    folds: list[dict], models: tuple[str, ...], n_classes: int
) -> list[np.ndarray]:
    """For each fold, the best weights on all the OTHER folds: the weights that may score it."""
    return [
        best_weights(folds[:index] + folds[index + 1 :], models, n_classes)
        for index in range(len(folds))
    ]


def kept_folds(probabilities_file: Path) -> list[dict]:
    """The folds of a report's ``-probabilities.npz`` (``training.reports``), in fold order, each
    as ``{"fold": name, "probabilities": {key: array}}``."""
    folds: dict[str, dict] = {}
    with np.load(probabilities_file) as arrays:
        for key in arrays.files:
            fold, _, name = key.partition("/")
            folds.setdefault(fold, {"fold": fold, "probabilities": {}})
            folds[fold]["probabilities"][name] = arrays[key]
    return list(folds.values())


def report_folds(reports_dir: Path, features: dict, models: tuple[str, ...]) -> dict[str, list]:
    """Per corpus, the folds of its speaker-independent report in ``reports_dir`` made on
    ``features`` whose kept probabilities hold every one of ``models`` (reports of one fold,
    or without probabilities, are passed over)."""
    found = {}
    for report_file in sorted(Path(reports_dir).glob("*-speaker.json")):
        report = json.loads(report_file.read_text())
        kept = report_file.with_name(f"{report_file.stem}-probabilities.npz")
        if report.get("features") != features or not kept.is_file():
            continue
        folds = kept_folds(kept)
        needed = [f"{m}/int8{suffix}" for m in models for suffix in CHOSEN_ON]
        complete = all(key in f["probabilities"] for f in folds for key in needed)
        if complete and len(folds) > 1:
            found[report["corpus"]] = folds
    return found


def _n_classes(folds: list[dict], models: tuple[str, ...]) -> int:
    return max(f["probabilities"][f"{models[0]}/int8"].shape[1] for f in folds)


def held_out_figures(by_corpus: dict[str, list], models: tuple[str, ...]) -> dict:
    """What the shipped procedure gives a voice it never heard: each fold of every corpus
    scored with the weights chosen on all the OTHER folds of all the corpora (the shipped
    weights are chosen on all of them). Per corpus and condition suffix: (weighted UA, equal
    UA), means over the corpus's folds."""
    corpora = [corpus for corpus, folds in by_corpus.items() for _ in folds]
    everything = [fold for folds in by_corpus.values() for fold in folds]
    n_classes = _n_classes(everything, models)
    weighted = held_out_weights(everything, models, n_classes)
    figures: dict = {}
    for corpus, fold, weights in zip(corpora, everything, weighted, strict=True):
        kept = fold["probabilities"]
        for suffix in CONDITIONS.values():
            if f"labels{suffix}" not in kept:
                continue
            probabilities = [kept[f"{m}/int8{suffix}"] for m in models]
            pair = [
                unweighted_accuracy(kept[f"labels{suffix}"], fused(probabilities, w), n_classes)
                for w in (weights, np.ones(len(models)))
            ]
            figures.setdefault(corpus, {}).setdefault(suffix, []).append(pair)
    return {
        corpus: {suffix: tuple(np.mean(pairs, axis=0).tolist()) for suffix, pairs in by.items()}
        for corpus, by in figures.items()
    }


def attach_weights(model_dir: Path, reports_dir: Path, models: tuple[str, ...]) -> dict:
    """Writes the shipped weights into the models' metadata (``ensemble_weight``); returns
    them by model name, or an empty dict when no report of several folds holds these models'
    probabilities on their features."""
    by_corpus = report_folds(reports_dir, model_features(model_dir, models), models)
    weights = shipped_weights(by_corpus, models)
    set_weights(model_dir, weights)
    return weights


def model_features(model_dir: Path, models: tuple[str, ...]) -> dict:
    """The feature settings in the first model's metadata (the models share them)."""
    return json.loads((Path(model_dir) / f"{models[0]}.json").read_text())["features"]


def shipped_weights(by_corpus: dict[str, list], models: tuple[str, ...]) -> dict[str, float]:
    """The weights best on the folds of every corpus together (Emo-DB's and RAVDESS's), as
    ``emostream evaluate`` chose each fold's weights on the others; by model name, empty
    without folds."""
    folds = [fold for folds in by_corpus.values() for fold in folds]
    if not folds:
        return {}
    chosen = best_weights(folds, models, _n_classes(folds, models))
    return dict(zip(models, chosen.round(3).tolist(), strict=True))


def set_weights(model_dir: Path, weights: dict[str, float]) -> None:
    """Writes each model's ``ensemble_weight`` into its metadata file in ``model_dir``."""
    for name, weight in weights.items():
        path = Path(model_dir) / f"{name}.json"
        values = json.loads(path.read_text())
        values["ensemble_weight"] = weight
        path.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> None:
    """``python -m training.fusion [MODEL_DIR [REPORTS_DIR]]`` (default ``models``, ``reports``):
    sets the models' ensemble weights from the reports, and prints them with what the same
    procedure gives each corpus's held-out folds."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m training.fusion",
        description="Set the models' ensemble weights from the evaluation reports' held-out "
        "predictions, and print what the same rule gives each corpus's folds.",
    )
    parser.add_argument("model_dir", nargs="?", type=Path, default=Path("models"))
    parser.add_argument("reports_dir", nargs="?", type=Path, default=Path("reports"))
    args = parser.parse_args(argv)
    model_dir, reports_dir = args.model_dir, args.reports_dir
    models = ("cnn", "lstm", "functionals")
    by_corpus = report_folds(reports_dir, model_features(model_dir, models), models)
    weights = shipped_weights(by_corpus, models)
    if not weights:
        sys.exit(f"no speaker-independent report with every model's probabilities in {reports_dir}")
    set_weights(model_dir, weights)
    print(f"ensemble weights written into {model_dir}: {weights}")
    print("UA, int8 ensemble, each fold weighted as chosen on all the other folds (equal weights):")
    condition_of = {suffix: condition for condition, suffix in CONDITIONS.items()}
    for corpus, by_suffix in held_out_figures(by_corpus, models).items():
        for suffix, (weighted, equal) in by_suffix.items():
            condition = condition_of[suffix]
            print(f"  {corpus} {condition}: {100 * weighted:.1f} % ({100 * equal:.1f} %)")


if __name__ == "__main__":
    main()
