"""Evaluation protocols keep test speakers and utterances out of training, and score right."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.corpora import Utterance
from training.dataset import WindowSet
from training.evaluate import confusion_scores, fold_windows, scores, speaker_folds


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


def test_augmented_copies_of_test_utterances_never_reach_training():
    utterances = _utterances("emodb", ["03", "08"], 3)
    fold = speaker_folds("emodb", utterances)[0]

    def windows(offset: float) -> WindowSet:
        owners = np.repeat(np.arange(len(utterances)), 2)  # two windows per utterance
        values = np.full((len(owners), 4, 3), offset, np.float32)
        return WindowSet(values, values, owners, [])

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


def test_unweighted_accuracy_gives_a_rare_class_the_weight_of_a_common_one():
    """With unequal class totals UA and WA differ: 9 of 10 common, 2 of 4 rare right."""
    figures = confusion_scores([[9, 1], [2, 2]])
    assert figures["unweighted_accuracy"] == pytest.approx((9 / 10 + 2 / 4) / 2)
    assert figures["weighted_accuracy"] == pytest.approx(11 / 14)
    assert figures["macro_f1"] == pytest.approx((2 * 9 / (10 + 11) + 2 * 2 / (4 + 3)) / 2)


def test_scores_of_probabilities_give_confusion_and_cross_entropy():
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    figures = scores(np.array([0, 1, 1]), probabilities, ["angry", "sad"])
    assert figures["confusion"] == [[1, 0], [1, 1]]
    assert figures["loss"] == pytest.approx(-np.mean(np.log([0.9, 0.8, 0.4])))
    assert figures["unweighted_accuracy"] == pytest.approx(0.75)
