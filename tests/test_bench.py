"""The bench's measurements measure what they claim (the naive path, needing TensorFlow, aside)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from daemon_support import ROOT, shipped_model_dir

from streamer.bench import (
    BenchReport,
    Timing,
    report_rows,
    speech_audio,
    time_detector,
    time_serve,
    time_streaming,
)
from streamer.models import MODEL_NAMES, load_models


@pytest.fixture(scope="module")
def models():
    return load_models(shipped_model_dir(), MODEL_NAMES)


def test_streaming_is_timed_once_per_hop_that_ran_the_models(models, test_clips):
    audio = speech_audio(test_clips, models[0].metadata.features, 12.0)
    assert len(audio) == 12 * 16000
    timing = time_streaming(models, audio, 0.5)
    # 12 s gives 21 windows of 2 s every 0.5 s; the first is dropped as warm-up, pauses skip some.
    assert 10 <= timing.count <= 20
    assert 0 < timing.median_ms <= timing.p99_ms < 1000


def test_the_detector_is_timed_once_per_hop(models, test_clips):
    audio = speech_audio(test_clips, models[0].metadata.features, 12.0)
    timing = time_detector(audio, 0.5, 2.0)
    assert timing.count == 23  # 24 hops, the first dropped as warm-up
    assert 0 < timing.median_ms <= timing.p99_ms < 1000


def test_serve_is_timed_with_its_own_peak_memory(models, test_clips, tmp_path):
    path = tmp_path / "speech.wav"
    sf.write(path, speech_audio(test_clips, models[0].metadata.features, 10.0), 16000)
    elapsed, peak_mib = time_serve(shipped_model_dir(), path, tmp_path)
    assert 0 < elapsed < 30
    # A Python process with numpy and TFLite: tens of MiB at least, and not this process's size.
    assert 30 < peak_mib < 1000


def test_serve_is_timed_with_the_defaults_whatever_the_users_config_says(
    models, test_clips, tmp_path, monkeypatch
):
    """A user file that would stop ``serve`` (or change its figures) is not read by bench."""
    user = tmp_path / "home" / "emostream" / "emostream.toml"
    user.parent.mkdir(parents=True)
    user.write_text("[pipeline]\nmodels = ['no-such-model']\n")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(user.parent.parent))
    path = tmp_path / "speech.wav"
    sf.write(path, speech_audio(test_clips, models[0].metadata.features, 10.0), 16000)
    elapsed, _ = time_serve(shipped_model_dir(), path, tmp_path)
    assert 0 < elapsed < 30


def test_the_report_shows_each_goal_beside_its_figure():
    timing = Timing.of([0.001, 0.001, 0.002])
    detector = Timing.of([0.0005])
    report = BenchReport(
        0.5, 1, timing, detector, Timing.of([0.1, 0.1]), "stand-ins", 120.0, 1.2, 99.0, 0.7
    )
    assert report.speedup == pytest.approx(100)
    assert report.real_time_factor == pytest.approx(0.01)
    rows = {measure: (value, goal) for measure, value, goal in report_rows(report)}
    assert rows["peak RSS of serve"] == ("99 MiB", "<= 120 MB")
    assert any(goal == ">= 20x" and value == "100x" for value, goal in rows.values())
    assert rows["of which the speech detector (Silero VAD), median"] == ("0.50 ms", "")
    assert np.isclose(timing.median_ms, 1.0)


def test_without_the_training_packages_the_streaming_path_is_still_measured(test_clips):
    """A Raspberry Pi install has no [train] extra: bench times what runs there, and says
    what the naive comparison needs instead of refusing."""
    program = (
        "import sys\n"
        "for name in ('tensorflow', 'keras', 'librosa'):\n"
        "    sys.modules[name] = None  # as if not installed: import and find_spec fail\n"
        "from streamer.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    command = [sys.executable, "-c", program, "bench", "--seconds", "10", "--json"]
    result = subprocess.run(
        [*command, *map(str, test_clips)], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["naive"] is None and report["speedup"] is None
    assert "pip install 'emostream[train]'" in report["naive_models"]
    assert "tensorflow" in report["naive_models"]
    assert 0 < report["streaming"]["median_ms"] <= report["streaming"]["p99_ms"]
    assert report["streaming"]["count"] >= 10
    assert 0 < report["serve_seconds"] < 60 and report["audio_seconds"] == 10
    assert 30 < report["peak_rss_mb"] < 1000
    assert 0 < report["first_label_seconds"] < 30


def test_the_report_without_the_naive_path_says_it_needs_the_train_extra():
    fast = Timing.of([0.001])
    report = BenchReport(0.5, 1, fast, fast, None, "not measured", 120.0, 1.2, 99.0, 0.7)
    assert report.speedup is None
    rows = {measure: (value, goal) for measure, value, goal in report_rows(report)}
    assert rows["speed-up over the naive path (medians)"] == ("needs the [train] extra", ">= 20x")
    assert rows["peak RSS of serve"] == ("99 MiB", "<= 120 MB")
    assert rows["first label after start (serve --fast)"] == ("0.70 s", "<= 1.5 s")
