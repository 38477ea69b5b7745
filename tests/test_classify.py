"""`emostream classify`: offline labels per file and per window, equal to what the daemon sends."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from daemon_support import (
    emostream_command,
    ipc_address,
    receive,
    serve,
    shipped_model_dir,
    subscribe,
)

from streamer.adaptation import FixedVoice, session_statistics
from streamer.audio import read_audio
from streamer.classify import summarise
from streamer.config import PipelineConfig
from streamer.models import MODEL_NAMES, load_models
from streamer.pipeline import ModelOutput, Pipeline, WindowResult, classify_clip


@pytest.fixture(scope="module")
def model_dir():
    return shipped_model_dir()


def classify(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*emostream_command(), "classify", *args],
        capture_output=True,
        text=True,
        env=os.environ,
        timeout=120,
    )


@pytest.fixture(scope="module")
def two_utterances(test_clips, tmp_path_factory):
    """Two committed clips with a 1.5 s pause between them, as a 16 kHz WAV (5.5 s)."""
    pause = np.zeros(24000, np.float32)
    audio = np.concatenate(
        [read_audio(test_clips[0], 16000), pause, read_audio(test_clips[1], 16000)]
    )
    path = tmp_path_factory.mktemp("audio") / "two.wav"
    sf.write(path, audio, 16000)
    return path


def test_json_gives_one_object_per_file_with_label_confidence_and_each_model(model_dir, test_clips):
    result = classify("--json", "--models-dir", str(model_dir), *map(str, test_clips))
    assert result.returncode == 0, result.stderr
    objects = [json.loads(line) for line in result.stdout.splitlines()]
    assert [o["file"] for o in objects] == [str(c) for c in test_clips]
    weights = {
        name: json.loads((model_dir / f"{name}.json").read_text()).get("ensemble_weight", 1.0)
        for name in MODEL_NAMES
    }
    for verdict in objects:
        assert set(verdict["models"]) == set(MODEL_NAMES)
        labels = set(verdict["models"]["cnn"]["probabilities"])
        for output in verdict["models"].values():
            assert sum(output["probabilities"].values()) == pytest.approx(1.0, abs=0.02)
            assert output["label"] == max(output["probabilities"], key=output["probabilities"].get)
        # The models' mean, each weighing its share of the ensemble.
        mean = {
            label: sum(weights[m] * o["probabilities"][label] for m, o in verdict["models"].items())
            / sum(weights.values())
            for label in labels
        }
        leader = max(mean, key=mean.get)
        # Below the daemon's confidence threshold (0.35 by default) the file is unsure.
        assert verdict["label"] == (leader if mean[leader] >= 0.35 else None)
        assert verdict["confidence"] == pytest.approx(mean[leader], abs=1e-3)
        # A 2 s clip is one window of 99 frames: 0 to 1.992 s.
        assert [(w["start"], w["end"]) for w in verdict["windows"]] == [(0.0, 1.992)]


def test_windows_equal_what_the_daemon_publishes_for_the_same_file(
    model_dir, two_utterances, tmp_path
):
    address = ipc_address(tmp_path)
    subscriber = subscribe(address)
    # classify without --session is cold: so is a daemon that does not adapt.
    daemon = serve(
        "--source", str(two_utterances), "--fast", "--bind", address,
        "--models-dir", str(model_dir), "--wait-subscriber", "10", "--no-adapt",
    )  # fmt: skip
    messages = receive(
        subscriber,
        lambda topic, message: topic == "status" and message["source"]["state"] == "ended",
        timeout=60,
    )
    assert daemon.wait(10) == 0, daemon.stderr.read()
    subscriber.close()
    published = [message for topic, message in messages if topic == "emotion"]

    result = classify("--json", "--models-dir", str(model_dir), str(two_utterances))
    assert result.returncode == 0, result.stderr
    offline = json.loads(result.stdout)["windows"]
    # 5.5 s at a 0.5 s hop: windows starting at 0, 0.5, ... 3.5 s.
    assert len(offline) == len(published) == 8
    for window, message in zip(offline, published, strict=True):
        assert window["start"] == pytest.approx(message["window"]["start"], abs=1e-3)
        assert window["end"] == pytest.approx(message["window"]["end"], abs=1e-3)
        assert (window["speech"], window["label"]) == (message["speech"], message["label"])
        assert window["confidence"] == pytest.approx(message["confidence"], abs=1e-3)
        assert set(window["models"]) == set(message["models"])
        for name, output in window["models"].items():
            assert output["label"] == message["models"][name]["label"]
            assert output["probabilities"] == pytest.approx(
                message["models"][name]["probabilities"], abs=1e-3
            )
    assert any(not w["speech"] for w in offline) and any(w["speech"] for w in offline)


def test_a_session_standardises_each_file_with_the_other_files_speech(model_dir, test_clips):
    result = classify("--json", "--session", "--models-dir", str(model_dir), *map(str, test_clips))
    assert result.returncode == 0, result.stderr
    session = [json.loads(line) for line in result.stdout.splitlines()]
    cold = classify("--json", "--models-dir", str(model_dir), *map(str, test_clips))
    cold_results = [json.loads(line) for line in cold.stdout.splitlines()]

    models = load_models(model_dir, MODEL_NAMES)
    config = PipelineConfig()
    training = Pipeline.training_statistics(models)
    audio = [read_audio(clip, 16000) for clip in test_clips]
    voices = []
    for clip_audio in audio:
        voices.append(FixedVoice(training))
        classify_clip(clip_audio, models, 0.5, config, voices[-1])
    for index, verdict in enumerate(session):
        others = FixedVoice(session_statistics(voices, index))
        (window,) = classify_clip(audio[index], models, 0.5, config, others)
        for name, output in window.models.items():
            assert verdict["windows"][0]["models"][name]["probabilities"] == pytest.approx(
                output.probabilities, abs=1e-3
            )
    assert any(
        s["models"]["cnn"]["probabilities"] != pytest.approx(c["models"]["cnn"]["probabilities"])
        for s, c in zip(session, cold_results, strict=True)
    )


def test_a_session_of_one_file_is_classified_cold(model_dir, test_clips):
    alone = classify("--json", "--session", "--models-dir", str(model_dir), str(test_clips[0]))
    cold = classify("--json", "--models-dir", str(model_dir), str(test_clips[0]))
    assert json.loads(alone.stdout) == json.loads(cold.stdout)


def test_a_broken_file_among_several_is_skipped_named_and_counted(model_dir, test_clips, tmp_path):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(test_clips[0].read_bytes()[:30])  # a header cut short
    missing = tmp_path / "missing.wav"
    files = [test_clips[0], broken, missing, test_clips[1]]
    result = classify("--csv", "--models-dir", str(model_dir), *map(str, files))
    assert result.returncode == 1
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [row["file"] for row in rows] == [str(test_clips[0]), str(test_clips[1])]
    errors = result.stderr.strip().splitlines()
    assert errors[-1] == "Error: 2 of 4 files skipped (unreadable)"
    assert f"skipped {broken}: unreadable audio" in result.stderr
    assert f"skipped {missing}: no such file" in result.stderr
    assert "Traceback" not in result.stderr


def test_csv_per_window_has_a_row_per_window_with_each_models_probabilities(
    model_dir, two_utterances
):
    result = classify("--csv", "--windows", "--models-dir", str(model_dir), str(two_utterances))
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 8
    assert [float(row["start"]) for row in rows] == [0.5 * i for i in range(8)]
    probability_columns = [c for c in rows[0] if c.startswith(("cnn:", "lstm:"))]
    assert len(probability_columns) == 14  # 7 labels per model
    for row in rows:
        values = [row[c] for c in probability_columns]
        if row["speech"] == "1":
            cnn = [float(row[c]) for c in probability_columns if c.startswith("cnn:")]
            assert sum(cnn) == pytest.approx(1.0, abs=0.02)
        else:
            assert values == [""] * len(values)  # the daemon runs no model on silence


def test_the_default_table_names_each_file_and_its_label(model_dir, test_clips):
    result = classify("--models-dir", str(model_dir), str(test_clips[0]))
    assert result.returncode == 0, result.stderr
    verdict = json.loads(
        classify("--json", "--models-dir", str(model_dir), str(test_clips[0])).stdout
    )
    line = next(line for line in result.stdout.splitlines() if test_clips[0].name in line)
    assert verdict["label"] in line and f"{verdict['confidence']:.0%}" in line


def test_a_missing_model_is_a_one_line_error_naming_it(tmp_path, test_clips):
    result = classify("--models-dir", str(tmp_path), str(test_clips[0]))
    assert result.returncode == 1
    assert result.stderr.strip() == f"Error: {tmp_path / 'cnn.tflite'}: model file not found"


def window(cnn: list[float] | None = None, lstm: list[float] | None = None) -> WindowResult:
    """A window result with these model probabilities; without them, a window of silence."""
    labels = ("anger", "neutral")
    models = {
        name: ModelOutput(labels[int(np.argmax(p))], dict(zip(labels, p, strict=True)))
        for name, p in (("cnn", cnn), ("lstm", lstm))
        if p is not None
    }
    return WindowResult(0, 0.0, 2.0, 2.0, bool(models), None, 0.0, models, -20.0, 1.0, 0.9, 1.0)


def test_the_file_verdict_averages_speech_windows_then_models():
    windows = [
        window([0.9, 0.1], [0.6, 0.4]),
        window(),
        window([0.3, 0.7], [0.2, 0.8]),
    ]
    result = summarise(Path("x.wav"), 3.0, windows, confidence_threshold=0.35)
    assert result.models["cnn"] == pytest.approx({"anger": 0.6, "neutral": 0.4})
    assert result.models["lstm"] == pytest.approx({"anger": 0.4, "neutral": 0.6})
    assert (result.label, result.confidence) == ("anger", pytest.approx(0.5))
    assert result.speech_windows == 2


def test_the_file_verdict_weighs_the_models_by_their_ensemble_weights():
    windows = [window([0.9, 0.1], [0.2, 0.8])]
    equal = summarise(Path("x.wav"), 2.0, windows, confidence_threshold=0.35)
    assert (equal.label, equal.confidence) == ("anger", pytest.approx(0.55))
    weights = {"cnn": 0.25, "lstm": 0.75}
    weighted = summarise(Path("x.wav"), 2.0, windows, confidence_threshold=0.35, weights=weights)
    assert (weighted.label, weighted.confidence) == ("neutral", pytest.approx(0.625))


def test_a_file_without_speech_has_no_label():
    result = summarise(Path("quiet.wav"), 2.0, [window()], confidence_threshold=0.35)
    assert (result.label, result.confidence, result.models) == (None, 0.0, {})


def test_a_file_whose_mean_is_below_the_daemons_confidence_threshold_is_unsure():
    windows = [window([0.3, 0.7], [0.6, 0.4]), window([0.6, 0.4], [0.3, 0.7])]
    unsure = summarise(Path("x.wav"), 2.5, windows, confidence_threshold=0.6)
    assert (unsure.label, unsure.confidence) == (None, pytest.approx(0.55))
    assert unsure.models["cnn"] == pytest.approx({"anger": 0.45, "neutral": 0.55})
    sure = summarise(Path("x.wav"), 2.5, windows, confidence_threshold=0.55)
    assert sure.label == "neutral"


def test_the_table_says_unsure_for_a_file_below_the_threshold(model_dir, test_clips):
    result = classify(
        "--models-dir", str(model_dir), "--confidence-threshold", "0.99", str(test_clips[0])
    )
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if test_clips[0].name in line)
    assert "(unsure)" in line
    (verdict,) = (
        json.loads(line)
        for line in classify(
            "--json", "--models-dir", str(model_dir), "--confidence-threshold", "0.99",
            str(test_clips[0]),
        ).stdout.splitlines()
    )  # fmt: skip
    assert verdict["label"] is None and 0 < verdict["confidence"] < 0.99


def test_a_directory_stands_for_the_audio_files_under_it(model_dir, test_clips, tmp_path):
    (tmp_path / "b").mkdir()
    copies = [tmp_path / "a.wav", tmp_path / "b" / "c.FLAC"]
    for clip, copy in zip(test_clips, copies, strict=False):
        sf.write(copy, read_audio(clip, 16000), 16000)
    (tmp_path / "notes.txt").write_text("not audio")
    result = classify("--json", "--models-dir", str(model_dir), str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["file"] for line in result.stdout.splitlines()] == list(
        map(str, copies)
    )


def test_a_directory_without_audio_is_a_one_line_error_naming_it(model_dir, tmp_path):
    (tmp_path / "notes.txt").write_text("not audio")
    result = classify("--models-dir", str(model_dir), str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.strip() == f"Error: {tmp_path}: no audio files in this directory"
