"""Ensemble weights are chosen on other speakers' predictions, and favour the model that is right
there."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from daemon_support import shipped_model_dir

from training.evaluate import add_weighted_ensemble, mean_scores
from training.fusion import attach_weights, best_weights, fused, held_out_figures, weight_grid
from training.reports import markdown_table

MODELS = ("cnn", "lstm", "functionals")
CLASSES = ["angry", "neutral", "sad"]


def _one_hot(labels: np.ndarray, confidence: float = 0.8) -> np.ndarray:
    probabilities = np.full((len(labels), len(CLASSES)), (1 - confidence) / (len(CLASSES) - 1))
    probabilities[np.arange(len(labels)), labels] = confidence
    return probabilities


def _fold(right: str, seed: int) -> dict:
    """A fold where only ``right`` names each utterance's class; the others are confidently
    wrong, each in its own way."""
    labels = np.tile(np.arange(len(CLASSES)), 10)
    rng = np.random.default_rng(seed)
    kept: dict[str, np.ndarray] = {}
    for suffix in ("", "-cold", "-neutral"):
        kept[f"labels{suffix}"] = labels
        kept[f"utterances{suffix}"] = np.arange(len(labels))
        for offset, model in enumerate(MODELS, start=1):
            if model == right:
                kept[f"{model}/int8{suffix}"] = _one_hot(labels, 0.5)
            else:
                wrong = (labels + offset + rng.integers(0, 2, len(labels))) % len(CLASSES)
                wrong = np.where(wrong == labels, (labels + 1) % len(CLASSES), wrong)
                kept[f"{model}/int8{suffix}"] = _one_hot(wrong, 0.9)
    return {"fold": str(seed), "models": {}, "probabilities": kept}


def test_the_grid_holds_every_split_of_one_in_tenths_and_starts_with_the_plain_average():
    grid = weight_grid(3)
    assert np.allclose(grid[0], 1 / 3)
    assert np.allclose(grid.sum(axis=1), 1.0)
    assert len(grid) == 1 + 66
    assert any(np.allclose(w, [0.0, 0.2, 0.8]) for w in grid)


def test_fused_probabilities_are_the_weighted_average():
    a, b = np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])
    assert np.allclose(fused([a, b], np.array([0.75, 0.25])), [[0.75, 0.25]])


def test_weights_favour_the_model_that_is_right_on_the_folds_given():
    weights = best_weights([_fold("lstm", 1), _fold("lstm", 2)], MODELS, len(CLASSES))
    assert weights[1] == weights.max() > 0.5


def test_with_no_model_better_than_another_the_plain_average_stays():
    fold = _fold("lstm", 1)
    kept = fold["probabilities"]
    for key in [k for k in kept if "/int8" in k]:
        kept[key] = np.full_like(kept[key], 1 / len(CLASSES))
    assert np.allclose(best_weights([fold], MODELS, len(CLASSES)), 1 / 3)


def _fold_where_only_the_cnn_is_right_on(count: int) -> dict:
    """300 utterances all three models name alike, but for ``count`` of them, where the CNN
    alone is right and the other two confidently wrong."""
    labels = np.tile(np.arange(len(CLASSES)), 100)
    kept: dict[str, np.ndarray] = {}
    for suffix in ("", "-cold"):
        kept[f"labels{suffix}"] = labels
        for model in MODELS:
            kept[f"{model}/int8{suffix}"] = _one_hot(labels, 0.6)
        wrong = (labels[:count] + 1) % len(CLASSES)
        for model in ("lstm", "functionals"):
            kept[f"{model}/int8{suffix}"][:count] = _one_hot(wrong, 0.9)
        kept[f"cnn/int8{suffix}"][:count] = _one_hot(labels[:count], 0.9)
    return {"fold": "0", "models": {}, "probabilities": kept}


def test_weights_within_a_point_of_the_best_are_tied_and_the_nearest_the_plain_average_wins():
    """A lead smaller than one model's seed moves the ensemble is the folds' noise."""
    one_utterance = _fold_where_only_the_cnn_is_right_on(1)  # 0.3 points of UA
    assert np.allclose(best_weights([one_utterance], MODELS, len(CLASSES)), 1 / 3)
    fifteen = _fold_where_only_the_cnn_is_right_on(15)  # 5 points
    assert best_weights([fifteen], MODELS, len(CLASSES))[0] > 0.5


def test_each_fold_is_scored_with_weights_chosen_on_the_other_folds_only():
    folds = [_fold("cnn", 0), _fold("functionals", 1)]
    add_weighted_ensemble(folds, MODELS, CLASSES)
    # Each fold trusts the model the other fold found right, which is wrong here: a fold that
    # chose on its own labels too would score well.
    for index, fold in enumerate(folds):
        entry = fold["models"]["ensemble-weighted"]
        other = best_weights([folds[1 - index]], MODELS, len(CLASSES))
        assert list(entry["weights"].values()) == pytest.approx(other.tolist())
        assert entry["int8"]["unweighted_accuracy"] < 0.5
        assert set(entry) == {"weights", "int8", "int8-cold", "int8-neutral"}


def _reports_with_lstm_right(directory: Path, features: dict) -> None:
    folds = [_fold("lstm", seed) for seed in range(3)]
    arrays = {
        f"{fold['fold']}/{key}": value
        for fold in folds
        for key, value in fold["probabilities"].items()
    }
    np.savez_compressed(directory / "emodb-speaker-probabilities.npz", **arrays)
    report = {
        "corpus": "emodb",
        "features": features,
        "folds": [{"fold": f["fold"]} for f in folds],
    }
    (directory / "emodb-speaker.json").write_text(json.dumps(report))


def test_the_shipped_weights_are_written_into_each_models_metadata(tmp_path):
    models, reports = tmp_path / "models", tmp_path / "reports"
    models.mkdir(), reports.mkdir()
    for name in MODELS:
        (models / f"{name}.json").write_bytes((shipped_model_dir() / f"{name}.json").read_bytes())
    features = json.loads((models / "cnn.json").read_text())["features"]
    _reports_with_lstm_right(reports, features)
    weights = attach_weights(models, reports, MODELS)
    assert weights["lstm"] == max(weights.values()) > 0.5
    for name in MODELS:
        assert json.loads((models / f"{name}.json").read_text())["ensemble_weight"] == weights[name]


def test_reports_made_on_other_features_set_no_weights(tmp_path):
    for name in MODELS:
        (tmp_path / f"{name}.json").write_bytes((shipped_model_dir() / f"{name}.json").read_bytes())
    features = json.loads((tmp_path / "cnn.json").read_text())["features"]
    _reports_with_lstm_right(tmp_path, {**features, "n_mels": 64})
    before = (tmp_path / "lstm.json").read_text()
    assert attach_weights(tmp_path, tmp_path, MODELS) == {}
    assert (tmp_path / "lstm.json").read_text() == before


def test_the_report_shows_each_folds_weights_beside_its_figures():
    folds = [_fold("cnn", 0), _fold("functionals", 1), _fold("functionals", 2)]
    add_weighted_ensemble(folds, MODELS, CLASSES)
    report = {"corpus": "emodb", "protocol": "speaker", "labels": CLASSES, "utterances": 90}
    report.update(folds=folds, mean=mean_scores(folds))
    table = markdown_table(report)
    weights = folds[0]["models"]["ensemble-weighted"]["weights"]
    row = next(line for line in table.splitlines() if line.startswith("| 0 |"))
    assert f"functionals {weights['functionals']:g}" in row
    assert "| ensemble-weighted (int8) |" in table


def test_held_out_figures_score_each_fold_with_weights_chosen_on_every_other_fold():
    by_corpus = {
        "emodb": [_fold("lstm", 1), _fold("lstm", 2), _fold("lstm", 4)],
        "ravdess": [_fold("cnn", 3)],
    }
    figures = held_out_figures(by_corpus, MODELS)
    weighted, equal = figures["emodb"][""]
    assert weighted == pytest.approx(1.0) and equal < 0.5
    # RAVDESS's one fold gets the weights Emo-DB's folds chose, which trust the wrong model.
    assert figures["ravdess"]["-cold"][0] < 0.5


def test_help_prints_the_usage_and_is_not_taken_for_a_models_folder(capsys, monkeypatch, tmp_path):
    from training.fusion import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as leaving:
        main(["--help"])
    assert leaving.value.code == 0
    assert (
        "usage: python -m training.fusion [-h] [model_dir] [reports_dir]" in capsys.readouterr().out
    )
    assert list(tmp_path.iterdir()) == []
