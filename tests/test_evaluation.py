"""Evaluation protocols keep test speakers and utterances out of training, and score right."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from training.corpora import Utterance
from training.dataset import WindowSet
from training.evaluate import (
    fold_windows,
    mean_scores,
    random_fold,
    rescored,
    shipped_recipe_folds,
    speaker_folds,
)
from training.metrics import confusion_matrix, confusion_scores, scores


def _utterances(corpus: str, speakers: list[str], per_speaker: int) -> list[Utterance]:
    return [
        Utterance(Path(f"{s}-{i}.wav"), corpus, f"{corpus}:{s}", ["angry", "sad"][i % 2])
        for s in speakers
        for i in range(per_speaker)
    ]


def test_ravdess_folds_hold_out_four_actors_each_and_never_share_a_speaker():
    utterances = _utterances("ravdess", [f"{n:02d}" for n in range(1, 21)], 3)
    folds = speaker_folds("ravdess", utterances)
    assert [f.name for f in folds][:2] == ["01+02+03+04", "05+06+07+08"]
    assert len(folds) == 5
    tested = np.concatenate([f.test for f in folds])
    assert sorted(tested) == list(range(len(utterances)))  # each utterance tested exactly once
    for fold in folds:
        train_speakers = {utterances[i].speaker for i in fold.train}
        test_speakers = {utterances[i].speaker for i in fold.test}
        assert len(test_speakers) == 4 and not train_speakers & test_speakers


def test_emodb_and_tess_leave_one_speaker_out():
    emodb = speaker_folds("emodb", _utterances("emodb", ["03", "08", "09"], 4))
    assert [f.name for f in emodb] == ["03", "08", "09"]
    tess = speaker_folds("tess", _utterances("tess", ["OAF", "YAF"], 4))
    assert [(f.name, len(f.train), len(f.test)) for f in tess] == [("OAF", 4, 4), ("YAF", 4, 4)]


def test_a_corpus_of_many_speakers_gets_five_folds_and_one_of_ten_leaves_each_out():
    many = speaker_folds("cremad", _utterances("cremad", [f"{n:04d}" for n in range(23)], 2))
    assert [len(f.test) // 2 for f in many] == [5, 5, 5, 5, 3]
    assert many[0].name == "0000+0001+0002+0003+0004"
    ten = speaker_folds("savee", _utterances("savee", [f"S{n}" for n in range(10)], 2))
    assert [f.name for f in ten] == [f"S{n}" for n in range(10)]
    eleven = speaker_folds("savee", _utterances("savee", [f"S{n:02d}" for n in range(11)], 2))
    assert [len(f.test) // 2 for f in eleven] == [3, 3, 3, 2]


def test_ravdess_holds_out_four_actors_at_a_time_even_when_fewer_than_ten_are_there():
    folds = speaker_folds("ravdess", _utterances("ravdess", [f"{n:02d}" for n in range(1, 9)], 2))
    assert [f.name for f in folds] == ["01+02+03+04", "05+06+07+08"]


def test_the_shipped_recipe_s_folds_test_one_corpus_s_speakers_and_train_on_everyone_else():
    """The shipped recipe's folds: Emo-DB's speakers held out one at a time, as the "speaker"
    protocol holds them out, with every RAVDESS and TESS speaker always in training."""
    utterances = [
        *_utterances("ravdess", ["01", "02"], 3),
        *_utterances("emodb", ["03", "08"], 4),
        *_utterances("tess", ["OAF"], 3),
    ]
    folds = shipped_recipe_folds("emodb", utterances)
    assert [f.name for f in folds] == ["03", "08"]
    for fold in folds:
        tested = {utterances[i].speaker for i in fold.test}
        trained = {utterances[i].speaker for i in fold.train}
        assert tested == {f"emodb:{fold.name}"}
        assert trained == {"ravdess:01", "ravdess:02", "tess:OAF", "emodb:03", "emodb:08"} - tested
        assert sorted([*fold.train, *fold.test]) == list(range(len(utterances)))


def test_augmented_copies_of_test_utterances_never_reach_training():
    utterances = _utterances("emodb", ["03", "08"], 3)
    fold = speaker_folds("emodb", utterances)[0]

    def windows(offset: float) -> WindowSet:
        owners = np.repeat(np.arange(len(utterances)), 2)  # two windows per utterance
        values = np.full((len(owners), 4, 3), offset, np.float32)
        return WindowSet(values, values, values[..., :2], owners, [])

    train, test = fold_windows(fold, windows(0.0), [windows(1.0), windows(2.0)])
    assert set(train.utterance) == set(fold.train)
    assert set(test.utterance) == set(fold.test)
    assert len(train.utterance) == 3 * 2 * len(fold.train)
    assert np.all(test.log_mel == 0.0)  # the test set is unaugmented


def test_unweighted_accuracy_is_the_mean_recall_of_the_classes_that_occur():
    confusion = [[8, 2, 0], [5, 5, 0], [0, 0, 0]]  # third class never occurs nor is predicted
    figures = confusion_scores(confusion)
    assert figures["unweighted_accuracy"] == pytest.approx((0.8 + 0.5) / 2)
    assert figures["weighted_accuracy"] == pytest.approx(13 / 20)
    f1_first, f1_second = 2 * 8 / (10 + 13), 2 * 5 / (10 + 7)
    assert figures["macro_f1"] == pytest.approx((f1_first + f1_second) / 2)


def test_macro_f1_counts_a_class_predicted_once_though_it_never_occurs():
    figures = confusion_scores([[9, 1], [0, 0]])  # one clip wrongly called the second class
    assert figures["unweighted_accuracy"] == pytest.approx(0.9)
    assert figures["macro_f1"] == pytest.approx((2 * 9 / (10 + 9) + 0.0) / 2)


def test_unweighted_accuracy_gives_a_rare_class_the_weight_of_a_common_one():
    """With unequal class totals UA and WA differ: 9 of 10 common, 2 of 4 rare right."""
    figures = confusion_scores([[9, 1], [2, 2]])
    assert figures["unweighted_accuracy"] == pytest.approx((9 / 10 + 2 / 4) / 2)
    assert figures["weighted_accuracy"] == pytest.approx(11 / 14)
    assert figures["macro_f1"] == pytest.approx((2 * 9 / (10 + 11) + 2 * 2 / (4 + 3)) / 2)


def test_the_confusion_matrix_counts_true_rows_against_predicted_columns():
    probabilities = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8], [0.6, 0.3, 0.1]])
    matrix = confusion_matrix(np.array([0, 1, 2, 2]), probabilities, 3)
    assert matrix.tolist() == [[1, 0, 0], [0, 1, 0], [1, 0, 1]]


@pytest.mark.parametrize(
    ("labels", "columns"),
    [([0, 3], 3), ([-1, 0], 3), ([0, 1], 4)],
    ids=["label", "negative", "columns"],
)
def test_a_class_outside_the_matrix_is_refused_not_counted_elsewhere(labels, columns):
    with pytest.raises(ValueError, match="outside the 3 classes"):
        confusion_matrix(np.array(labels), np.eye(columns)[: len(labels)], 3)


def test_scores_of_probabilities_give_confusion_and_cross_entropy():
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    figures = scores(np.array([0, 1, 1]), probabilities, ["angry", "sad"])
    assert figures["confusion"] == [[1, 0], [1, 1]]
    assert figures["loss"] == pytest.approx(-np.mean(np.log([0.9, 0.8, 0.4])))
    assert figures["unweighted_accuracy"] == pytest.approx(0.75)
    assert figures["n"] == 3


def test_every_class_has_a_row_and_column_of_the_confusion_even_one_no_clip_touched():
    """Folds' matrices are summed (``mean_scores``), so each must have every class."""
    probabilities = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0]])
    figures = scores(np.array([0, 1]), probabilities, ["angry", "sad", "neutral"])
    assert figures["confusion"] == [[1, 0, 0], [0, 1, 0], [0, 0, 0]]


def test_a_certain_wrong_answer_costs_a_large_but_finite_loss():
    figures = scores(np.array([1]), np.array([[1.0, 0.0]]), ["angry", "sad"])
    assert np.isfinite(figures["loss"]) and figures["loss"] > 10


def test_the_random_split_keeps_a_fifth_for_testing_in_each_class_and_no_utterance_twice():
    utterances = [
        Utterance(Path(f"{i}.wav"), "x", f"x:{i % 3}", "angry" if i < 40 else "sad")
        for i in range(50)
    ]
    fold = random_fold(utterances, seed=3)
    assert fold.name == "random"
    assert len(fold.test) == 10 and len(fold.train) == 40
    assert sorted([*fold.train, *fold.test]) == list(range(50))
    assert list(fold.test) == sorted(fold.test) and list(fold.train) == sorted(fold.train)
    assert sum(utterances[i].label == "sad" for i in fold.test) == 2  # stratified: 10 of 50
    assert list(random_fold(utterances, seed=3).test) == list(fold.test)
    assert list(random_fold(utterances, seed=4).test) != list(fold.test)
    assert len(random_fold(utterances, seed=3, test_share=0.4).test) == 20


def _fold(confusion: list[list[int]], loss: float, agreement: float | None = None) -> dict:
    figures = {**confusion_scores(confusion), "loss": loss, "confusion": confusion}
    model: dict[str, Any] = {"float": figures, "int8": dict(figures)}
    if agreement is not None:
        model["agreement"] = agreement
    return {"models": {"cnn": model}}


def test_mean_scores_average_each_figure_over_folds_and_pool_the_confusion_matrices():
    first, second = [[9, 1], [2, 2]], [[1, 0], [0, 5]]
    summary = mean_scores([_fold(first, 0.5, 0.9), _fold(second, 1.5, 0.7)])
    for variant in ("float", "int8"):
        figures = summary["cnn"][variant]
        assert figures["loss"] == pytest.approx(1.0)
        assert figures["unweighted_accuracy"] == pytest.approx((0.7 + 1.0) / 2)
        assert figures["weighted_accuracy"] == pytest.approx((11 / 14 + 1.0) / 2)
        assert figures["confusion"] == [[10, 1], [2, 7]]
        assert figures["pooled"] == confusion_scores([[10, 1], [2, 7]])
        assert figures["pooled"]["unweighted_accuracy"] == pytest.approx((10 / 11 + 7 / 9) / 2)
    assert summary["cnn"]["agreement"] == pytest.approx(0.8)


def test_mean_scores_leave_out_what_the_folds_did_not_measure():
    fold = _fold([[1, 0], [0, 1]], 0.1)
    del fold["models"]["cnn"]["int8"]
    summary = mean_scores([fold])
    assert set(summary["cnn"]) == {"float"}
    fold["models"]["cnn"]["float-cold"] = dict(fold["models"]["cnn"]["float"])
    assert set(mean_scores([fold])["cnn"]) == {"float", "float-cold"}


def test_rescoring_recomputes_every_figure_from_the_confusion_matrices_and_keeps_losses():
    fold = _fold([[9, 1], [2, 2]], 0.25)
    fold["models"]["cnn"]["float"]["unweighted_accuracy"] = 0.99  # as an older formula had it
    fold["models"]["cnn"]["int8"]["macro_f1"] = 0.0
    report = rescored({"folds": [fold]})
    for variant in ("float", "int8"):
        figures = report["folds"][0]["models"]["cnn"][variant]
        assert figures["unweighted_accuracy"] == pytest.approx(0.7)
        assert figures["macro_f1"] == pytest.approx(confusion_scores([[9, 1], [2, 2]])["macro_f1"])
        assert figures["loss"] == 0.25
    assert report["mean"]["cnn"]["float"]["unweighted_accuracy"] == pytest.approx(0.7)
