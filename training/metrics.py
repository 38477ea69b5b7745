"""The figures every report is made of, and the conditions they are measured under."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

CONDITIONS = {"adapted": "", "cold": "-cold", "neutral-heavy": "-neutral"}
"""How test windows are standardised, and the suffix of their variants' names."""


def confusion_matrix(labels: np.ndarray, probabilities: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts of (true, predicted) class pairs, rows true; the prediction is the most probable
    class of each row of ``probabilities``."""
    labels = np.asarray(labels)
    if probabilities.shape[1] > n_classes or (
        len(labels) and not 0 <= labels.min() <= labels.max() < n_classes
    ):
        raise ValueError(f"labels or probabilities outside the {n_classes} classes")
    predicted = probabilities.argmax(axis=1)
    pairs = labels * n_classes + predicted
    return np.bincount(pairs, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def confusion_scores(confusion: ArrayLike) -> dict:
    """UA, WA and macro-F1 of a confusion matrix (rows true, columns predicted).

    UA is the mean recall over the classes that occur; macro-F1 averages the classes that occur
    or are predicted, so a held-out speaker without, say, disgust is not scored 0 on it.
    """
    matrix = np.asarray(confusion, dtype=float)
    true_counts, predicted_counts, hits = matrix.sum(axis=1), matrix.sum(axis=0), np.diag(matrix)
    occurring = true_counts > 0
    involved = occurring | (predicted_counts > 0)
    f1 = 2 * hits / np.maximum(true_counts + predicted_counts, 1)
    return {
        "unweighted_accuracy": float(np.mean(hits[occurring] / true_counts[occurring])),
        "weighted_accuracy": float(hits.sum() / matrix.sum()),
        "macro_f1": float(np.mean(f1[involved])),
    }


def scores(y_true: np.ndarray, probabilities: np.ndarray, classes: list[str]) -> dict:
    """Confusion matrix, the figures derived from it, and the loss (mean cross-entropy)."""
    confusion = confusion_matrix(y_true, probabilities, len(classes)).tolist()
    true_probability = probabilities[np.arange(len(y_true)), y_true]
    return {
        **confusion_scores(confusion),
        "loss": float(-np.mean(np.log(np.clip(true_probability, 1e-7, 1.0)))),
        "confusion": confusion,
        "n": int(len(y_true)),
    }


def unweighted_accuracy(labels: np.ndarray, probabilities: np.ndarray, n_classes: int) -> float:
    """The UA of ``confusion_scores`` straight from labels and probabilities."""
    return confusion_scores(confusion_matrix(labels, probabilities, n_classes))[
        "unweighted_accuracy"
    ]
