"""Corpus loaders read speakers and emotions from file names, for every naming convention."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from streamer.features import FeatureSpec
from training.corpora import (
    NATIVE_POLICY,
    SHIPPED_POLICY,
    CorpusError,
    Utterance,
    corpus_dir,
    labels,
    load_corpus,
    load_labelled,
    speakers,
    subset_per_speaker,
)
from training.dataset import build_windows


def _write_tone(path: Path, seconds: float = 2.5, rate: int = 16000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, 0.3 * np.sin(2 * np.pi * 220 * t) * (t > 0.3), rate)


def _touch(path: Path) -> None:
    """An empty file: loaders read speakers and emotions from names only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


# Each corpus's emotion codes as its authors document them. A swapped pair keeps every count
# the same, so only a test per code notices, and a model trained on it learns the wrong names.
RAVDESS_EMOTIONS = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}
"""Third field of "03-01-EE-II-SS-RR-AA.wav" (Livingstone & Russo, 2018)."""
EMODB_EMOTIONS = {
    "W": "angry",  # Wut
    "L": "bored",  # Langeweile
    "E": "disgust",  # Ekel
    "A": "fearful",  # Angst
    "F": "happy",  # Freude
    "T": "sad",  # Trauer
    "N": "neutral",
}
"""Sixth character of "03a01Wa.wav" (Burkhardt et al., 2005)."""
TESS_EMOTIONS = {
    "angry": "angry",
    "disgust": "disgust",
    "fear": "fearful",
    "happy": "happy",
    "neutral": "neutral",
    "ps": "surprised",  # pleasant surprise
    "sad": "sad",
}
"""Last word of "OAF_back_angry.wav" (Dupuis & Pichora-Fuller, 2010)."""


def test_each_ravdess_emotion_code_gives_its_documented_emotion(tmp_path):
    for code in RAVDESS_EMOTIONS:
        _touch(tmp_path / "Actor_05" / f"03-01-{code}-01-02-01-05.wav")
    _touch(tmp_path / "Actor_05" / "01-01-05-01-02-01-05.wav")  # video with audio: not ours
    _touch(tmp_path / "Actor_05" / "03-01-09-01-02-01-05.wav")  # no such emotion
    _touch(tmp_path / "Actor_05" / "03-01-05-01-02-05.wav")  # a field missing
    utterances = load_corpus("ravdess", tmp_path)
    assert len(utterances) == len(RAVDESS_EMOTIONS)
    assert {u.path.stem.split("-")[2]: u.label for u in utterances} == RAVDESS_EMOTIONS
    assert {u.speaker for u in utterances} == {"ravdess:05"}


def test_each_emodb_emotion_letter_gives_its_documented_emotion(tmp_path):
    for letter in EMODB_EMOTIONS:
        _touch(tmp_path / "wav" / f"16b10{letter}b.wav")
    utterances = load_corpus("emodb", tmp_path)
    assert {u.path.stem[5]: u.label for u in utterances} == EMODB_EMOTIONS
    assert {u.speaker for u in utterances} == {"emodb:16"}


def test_each_tess_emotion_word_gives_its_documented_emotion(tmp_path):
    for word in TESS_EMOTIONS:
        _touch(tmp_path / f"YAF_{word}" / f"YAF_back_{word}.wav")
    _touch(tmp_path / "OAF_neutral" / "OA_bite_neutral.wav")  # the corpus's own typo
    _touch(tmp_path / "YAF_bored" / "YAF_back_bored.wav")  # no such emotion in TESS
    _touch(tmp_path / "YAF_angry" / "notes.wav")
    utterances = load_corpus("tess", tmp_path)
    young = [u for u in utterances if u.speaker == "tess:YAF"]
    assert {u.path.stem.split("_")[-1]: u.label for u in young} == TESS_EMOTIONS
    assert [(u.speaker, u.label) for u in utterances if u not in young] == [("tess:OAF", "neutral")]


def test_the_shipped_policy_merges_calm_into_neutral_and_drops_boredom(tmp_path):
    utterances = [
        Utterance(tmp_path / f"{label}.wav", "x", "x:1", label)
        for label in ("calm", "bored", "angry")
    ]
    kept = SHIPPED_POLICY.apply(utterances)
    assert [(u.path.stem, u.label) for u in kept] == [("calm", "neutral"), ("angry", "angry")]
    assert NATIVE_POLICY.apply(utterances) == utterances


def test_emodb_lives_in_its_wav_folder_the_others_in_their_own(tmp_path):
    assert corpus_dir(tmp_path, "emodb") == tmp_path / "emodb" / "wav"
    assert corpus_dir(tmp_path, "ravdess") == tmp_path / "ravdess"


def test_labels_come_in_canonical_order_and_speakers_sorted(tmp_path):
    utterances = [
        Utterance(tmp_path / f"{n}.wav", "x", f"x:{speaker}", label)
        for n, (speaker, label) in enumerate(
            [("b", "sad"), ("a", "zany"), ("b", "neutral"), ("c", "calm"), ("a", "sad")]
        )
    ]
    assert labels(utterances) == ["neutral", "calm", "sad", "zany"]
    assert speakers(utterances) == ["x:a", "x:b", "x:c"]


def test_a_subset_keeps_at_most_that_many_of_each_speaker_at_random():
    utterances = [
        Utterance(Path(f"{s}{i}.wav"), "x", f"x:{s}", "sad") for s in "ab" for i in range(6)
    ]
    utterances += [Utterance(Path("c0.wav"), "x", "x:c", "sad")]
    chosen = subset_per_speaker(utterances, 4, seed=1)
    assert [sum(u.speaker == f"x:{s}" for u in chosen) for s in "abc"] == [4, 4, 1]
    assert all(u in utterances for u in chosen) and len(set(chosen)) == len(chosen)
    assert chosen == subset_per_speaker(utterances, 4, seed=1)
    assert chosen != subset_per_speaker(utterances, 4, seed=2)
    own = [u for u in chosen if u.speaker == "x:a"]
    assert own == sorted(own, key=utterances.index)  # in their corpus order


def test_labelled_utterances_of_several_corpora_follow_the_policy(tmp_path):
    for code in ("01", "02", "05"):
        _touch(tmp_path / "ravdess" / "Actor_01" / f"03-01-{code}-01-01-01-01.wav")
    for letter in ("W", "L"):
        _touch(tmp_path / "emodb" / "wav" / f"03a01{letter}a.wav")
    utterances, classes, y = load_labelled(["ravdess", "emodb"], tmp_path, SHIPPED_POLICY)
    assert classes == ["neutral", "angry"]
    assert [(u.corpus, u.label) for u in utterances] == [
        ("ravdess", "neutral"),
        ("ravdess", "neutral"),
        ("ravdess", "angry"),
        ("emodb", "angry"),
    ]
    assert list(y) == [0, 0, 1, 1]
    few, _, _ = load_labelled(["ravdess"], tmp_path, NATIVE_POLICY, per_speaker=2)
    assert len(few) == 2 and {u.label for u in few} <= {"neutral", "calm", "angry"}


def test_the_subset_of_a_quick_run_is_the_one_its_seed_draws(tmp_path):
    for code in ("01", "02", "03", "04", "05", "06", "07", "08"):
        _touch(tmp_path / "ravdess" / "Actor_01" / f"03-01-{code}-01-01-01-01.wav")
    every, _, _ = load_labelled(["ravdess"], tmp_path, NATIVE_POLICY)
    for seed in (0, 5):
        few, _, _ = load_labelled(["ravdess"], tmp_path, NATIVE_POLICY, per_speaker=3, seed=seed)
        assert few == subset_per_speaker(every, 3, seed=seed)
    assert subset_per_speaker(every, 3, seed=0) != subset_per_speaker(every, 3, seed=5)


def test_cremad_names_give_speaker_and_emotion(tmp_path):
    for name in ("1001_DFA_ANG_XX", "1001_IEO_HAP_HI", "1091_TSI_NEU_XX", "1091_WSI_DIS_LO"):
        _write_tone(tmp_path / "AudioWAV" / f"{name}.wav")
    _write_tone(tmp_path / "AudioWAV" / "readme-clip.wav")
    utterances = load_corpus("cremad", tmp_path)
    assert [(u.speaker, u.label) for u in utterances] == [
        ("cremad:1001", "angry"),
        ("cremad:1001", "happy"),
        ("cremad:1091", "neutral"),
        ("cremad:1091", "disgust"),
    ]


def test_savee_names_work_with_and_without_speaker_prefix(tmp_path):
    _write_tone(tmp_path / "ALL" / "DC_sa01.wav")
    _write_tone(tmp_path / "ALL" / "JK_su12.flac")
    _write_tone(tmp_path / "KL" / "a03.wav")
    _write_tone(tmp_path / "KL" / "n30.wav")
    found = {(u.speaker, u.label) for u in load_corpus("savee", tmp_path)}
    assert found == {
        ("savee:DC", "sad"),
        ("savee:JK", "surprised"),
        ("savee:KL", "angry"),
        ("savee:KL", "neutral"),
    }


def test_files_not_named_as_the_corpus_names_its_recordings_are_skipped_and_counted(
    tmp_path, caplog
):
    for name in ("03a01Wa", "notes", "readme"):
        _touch(tmp_path / f"{name}.wav")
    with caplog.at_level(logging.WARNING, logger="training.corpora"):
        utterances = load_corpus("emodb", tmp_path)
    assert [(u.speaker, u.label) for u in utterances] == [("emodb:03", "angry")]
    (warning,) = [record.getMessage() for record in caplog.records]
    assert warning.startswith(f"{tmp_path}: 2 files not named as emodb recordings")
    assert "notes.wav" in warning


def test_an_unknown_corpus_is_refused_naming_it_and_the_known_ones(tmp_path):
    with pytest.raises(
        CorpusError, match="unknown corpus 'iemocap': choose from ravdess, tess, emodb"
    ):
        load_corpus("iemocap", tmp_path)


def test_a_folder_without_recordings_is_a_one_line_error(tmp_path):
    with pytest.raises(CorpusError, match="no emodb recordings"):
        load_corpus("emodb", tmp_path)
    with pytest.raises(CorpusError, match="not found"):
        load_corpus("emodb", tmp_path / "missing")


def test_broken_audio_is_skipped_counted_and_named(tmp_path):
    for name in ("03a01Wa", "03a01Nc", "08a01Ab"):
        _write_tone(tmp_path / f"{name}.wav")
    (tmp_path / "03a02Ta.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage")
    utterances = load_corpus("emodb", tmp_path)
    assert len(utterances) == 4
    windows = build_windows(utterances, FeatureSpec(), cache_dir=tmp_path / "cache")
    assert len(windows.skipped) == 1 and "03a02Ta.wav" in windows.skipped[0]
    assert sorted(set(windows.utterance)) == [0, 1, 3]  # index 2 is the broken file (sorted)


def test_feature_cache_is_reused_on_the_second_run_with_the_very_same_numbers(tmp_path):
    """The run that builds the cache and the runs that read it train on identical windows, so
    models trained in separate runs share their training statistics exactly."""
    _write_tone(tmp_path / "03a01Wa.wav")
    utterances = load_corpus("emodb", tmp_path)
    first = build_windows(utterances, FeatureSpec(), cache_dir=tmp_path / "cache")
    cached = list((tmp_path / "cache").glob("*.npz"))
    assert len(cached) == 1
    modified = cached[0].stat().st_mtime_ns
    second = build_windows(utterances, FeatureSpec(), cache_dir=tmp_path / "cache")
    assert cached[0].stat().st_mtime_ns == modified
    np.testing.assert_array_equal(second.log_mel, first.log_mel)
    np.testing.assert_array_equal(second.mfcc_energy, first.mfcc_energy)
    np.testing.assert_array_equal(second.prosody, first.prosody)


@pytest.mark.corpus
def test_shared_corpora_have_their_documented_speakers_and_emotions(datasets):
    ravdess = load_corpus("ravdess", corpus_dir(datasets, "ravdess"))
    tess = load_corpus("tess", corpus_dir(datasets, "tess"))
    emodb = load_corpus("emodb", corpus_dir(datasets, "emodb"))
    assert (len(ravdess), len(speakers(ravdess)), len(labels(ravdess))) == (1200, 20, 8)
    assert (len(tess), speakers(tess), len(labels(tess))) == (2798, ["tess:OAF", "tess:YAF"], 7)
    assert (len(emodb), len(speakers(emodb))) == (462, 8)
    assert Counter(u.label for u in emodb) == {
        "angry": 105,
        "neutral": 71,
        "bored": 68,
        "happy": 65,
        "fearful": 55,
        "sad": 55,
        "disgust": 43,
    }
    typo = [u for u in tess if u.path.stem == "OA_bite_neutral"]
    assert [(u.speaker, u.label) for u in typo] == [("tess:OAF", "neutral")]


@pytest.mark.corpus
def test_shipped_label_policy_leaves_the_seven_emotions(datasets):
    utterances = []
    for corpus in ("ravdess", "tess", "emodb"):
        utterances += SHIPPED_POLICY.apply(load_corpus(corpus, corpus_dir(datasets, corpus)))
    assert labels(utterances) == [
        "neutral",
        "happy",
        "sad",
        "angry",
        "fearful",
        "disgust",
        "surprised",
    ]
    assert len(utterances) == 1200 + 2798 + 462 - 68
