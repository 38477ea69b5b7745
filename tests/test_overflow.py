"""Audio lost to an overflow is a break in the stream: no window the daemon publishes spans it."""

from __future__ import annotations

import io
import re
import threading

import numpy as np
import pytest
from daemon_support import ipc_address, shipped_model_dir

from streamer.audio import read_audio
from streamer.config import load_config
from streamer.daemon import build_daemon
from streamer.ring import RingBuffer
from streamer.sources import AudioBlock, AudioSource

RATE = 16000
STEP = RATE // 2
"""Samples written per scripted step (0.5 s)."""


class ScriptedRing(AudioSource):
    """A live source reading a real RingBuffer, filled by a script instead of a sound card.

    Each ``read`` first writes the next step's blocks, as the audio callback would between two
    reads, then reads the ring as ``Microphone.read`` does: no device and no timing involved.
    """

    live = True

    def __init__(self, ring: RingBuffer, steps: list[list[np.ndarray]]) -> None:
        self.name = "scripted"
        self.sample_rate = RATE
        self.state = "starting"
        self._ring = ring
        self._steps = steps

    @property
    def overflows(self) -> int:
        return self._ring.overflows

    def start(self) -> None:
        self.state = "running"

    def read(self, timeout: float) -> AudioBlock | None:
        if not self._steps:
            self.state = "ended"
            return None
        for block in self._steps.pop(0):
            self._ring.write(block)
        samples, captured_at = self._ring.read(0)
        return AudioBlock(samples, captured_at) if len(samples) else None

    def close(self) -> None:
        self.state = "ended"


def test_no_published_window_spans_audio_the_ring_overwrote(test_clips, tmp_path):
    speech = np.concatenate([read_audio(clip, RATE) for clip in test_clips])
    blocks = [speech[i : i + STEP] for i in range(0, 12 * RATE, STEP)]
    # 5 s read as it comes, then 2 s written without a read into a 1 s ring (1 s is lost and
    # the newest 1 s delivered), then 4 s more: in stream time the break is at 5.0 s.
    steps = [[block] for block in blocks[:10]] + [blocks[10:14]] + [[b] for b in blocks[14:22]]
    ring = RingBuffer(RATE)
    config = load_config(
        None,
        {
            "source": {"source": str(test_clips[0])},
            "pipeline": {"model_dir": str(shipped_model_dir())},
            "publish": {"bind": ipc_address(tmp_path)},
        },
    )
    echo = io.StringIO()
    daemon = build_daemon(config, lambda settings, rate: ScriptedRing(ring, steps), echo=echo)
    daemon.run(threading.Event())

    assert ring.overflows == 1 and ring.lost_samples == RATE
    spans = [
        (float(start), float(end))
        for start, end in re.findall(r"^\s*([\d.]+)-\s*([\d.]+) s", echo.getvalue(), re.M)
    ]
    before = [span for span in spans if span[1] <= 5.0]
    after = [span for span in spans if span[0] >= 5.0]
    assert before and after, spans
    assert before + after == spans, f"windows span the break at 5.0 s: {spans}"
    # Frames start afresh at the break: the first window after it is a whole window of new
    # audio (echo prints times to 0.01 s).
    assert after[0] == pytest.approx((5.0, 5.0 + 1.992), abs=0.005)
