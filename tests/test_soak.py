"""Long runs: a looping file source, and a short version of benchmarks/soak.py."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from daemon_support import ROOT, shipped_model_dir

from streamer.audio import read_audio
from streamer.sources import WavFile


def test_a_looping_file_repeats_every_sample_without_a_seam_and_never_ends(test_clips):
    clip = read_audio(test_clips[0], 16000)
    with WavFile(test_clips[0], 16000, 1024, realtime=False, loop=True) as source:
        streamed = []
        while sum(map(len, streamed)) < 3 * len(clip) + 5000:
            block = source.read(0.1)
            assert block is not None and source.state == "running"
            streamed.append(block.samples)
    audio = np.concatenate(streamed)
    # The clip is 22.05 kHz and resampled as one unbroken stream, so the loop point is filtered
    # like any other sample: each pass equals the clip away from the seams.
    length = len(clip)
    for start in (length, 2 * length):
        inner = slice(start + 200, start + length - 200)
        np.testing.assert_allclose(audio[inner], clip[200:-200], atol=0.02)


@pytest.mark.corpus
def test_a_short_soak_keeps_memory_flat_and_loses_nothing(datasets, tmp_path):
    """45 s of real-time Emo-DB speech through the daemon; the README has the 10-minute run."""
    figures = tmp_path / "soak.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "soak.py"), "--duration", "45"]
    command += ["--period", "15", "--warmup", "10", "--json", str(figures)]
    command += ["--data", str(datasets), "--models-dir", str(shipped_model_dir())]
    # 1 MiB over 35 s is proportionate to the 5 MB allowed over 10 minutes, with room for the
    # allocator's page-sized steps.
    command += ["--max-growth-mb", "1.0"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=150)
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(figures.read_text())
    assert report["overflows"] == 0 and report["dropped_windows"] == 0
    assert report["missed_emotion"] == 0 and report["missed_status"] == 0
    assert report["rss_growth_mb"] < 1.0
    assert report["windows"] >= 0.9 * 45 / 0.5
    assert len(report["periods"]) == 3
    assert all(period["windows"] >= 25 for period in report["periods"])
    assert report["failures"] == []
