"""Weights for the ensemble: how much each model's probabilities count in the published label.

The daemon averages its models' probabilities; a model that is better on unheard voices should
count for more. Weights are chosen on a grid by the unweighted accuracy they give, and only on
utterances of speakers other than the ones they are scored on: in evaluation, each fold's
weights come from the other folds' held-out predictions (whose labels never include the fold's
own speakers), so the weighted ensemble's figures are as speaker-independent as the models'.
"""

from __future__ import annotations

import itertools

import numpy as np

WEIGHT_STEP = 0.1
CHOSEN_ON = ("", "-cold")
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


def _unweighted_accuracy(labels: np.ndarray, probabilities: np.ndarray, n_classes: int) -> float:
    """UA as ``training.evaluate.confusion_scores`` defines it, without building the matrix."""
    hits = np.bincount(labels[probabilities.argmax(axis=1) == labels], minlength=n_classes)
    counts = np.bincount(labels, minlength=n_classes)
    occurring = counts > 0
    return float(np.mean(hits[occurring] / counts[occurring]))


def best_weights(folds: list[dict], models: tuple[str, ...], n_classes: int) -> np.ndarray:
    """The grid's weights with the highest UA over ``folds`` (mean over folds and over the
    ``CHOSEN_ON`` conditions); each fold holds its ``probabilities`` as ``evaluate_fold`` keeps
    them."""
    grid = weight_grid(len(models))
    totals = np.zeros(len(grid))
    for fold in folds:
        kept = fold["probabilities"]
        for suffix in CHOSEN_ON:
            labels = kept[f"labels{suffix}"]
            stacked = np.stack([kept[f"{m}/int8{suffix}"] for m in models])
            for i, weights in enumerate(grid):
                combined = np.tensordot(weights, stacked, axes=1)
                totals[i] += _unweighted_accuracy(labels, combined, n_classes)
    return grid[int(np.argmax(totals))]
