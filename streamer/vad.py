"""Voice-activity detection: the probability that each 32 ms frame of a stream is speech.

Silero VAD (MIT, ``streamer/silero/``) run by onnxruntime decides what is speech, so that a
quiet voice counts and a loud fridge does not: the level of the audio is not the test. Its
"sequence" export scores any number of frames in one call with the LSTM state carried between
calls, bit-identically to scoring them one by one, so the probabilities do not depend on how the
stream was cut into blocks. The daemon runs that export with each convolution rewritten as one
matrix product over the call's frames (``tools/silero_as_matmuls.py``): the same weights and
probabilities within 5e-5, in 0.33 ms per hop instead of 0.83. ``benchmarks/vad_compare.py``
measured the detector against WebRTC's and the former loudness gate.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime

from streamer.models import ModelError

_LOGGER = logging.getLogger(__name__)

SAMPLE_RATE = 16000
"""The only rate the shipped detector hears (hertz)."""
FRAME_SAMPLES = 512
"""Samples per scored frame: 32 ms at 16 kHz."""
CONTEXT_SAMPLES = 64
"""Samples before each frame that the model also sees (the end of the previous frame)."""
DEFAULT_MODEL = Path(__file__).resolve().parent / "silero" / "silero_vad_16k_sequence_matmul.onnx"
_STATE_SHAPE = (1, 1, 128)
# onnxruntime's level for errors only: its warnings about unused initialisers are noise here.
_ORT_ERRORS_ONLY = 3


class SpeechDetector:
    """Streaming Silero VAD over one continuous stream of 16 kHz samples.

    ``push`` takes blocks of any size; frames are counted from the first sample after the last
    ``reset``, frame ``k`` spanning samples ``[k * 512, (k + 1) * 512)``. Frames are scored
    when their probabilities are asked for (``score``, ``probabilities``): one model call for a
    hop's 16 frames took 0.58 ms, a call per 1024-sample capture block 0.74 ms (the export
    before its rewrite, on an earlier machine). The newest
    probabilities are kept, so ``probabilities(start, end)`` answers for a recent window.
    """

    def __init__(self, history_seconds: float, model_path: Path = DEFAULT_MODEL) -> None:
        """Keeps at least ``history_seconds`` of frame probabilities (one window is enough)."""
        options = onnxruntime.SessionOptions()
        # One core's worth of work per hop: threads would only contend with capture.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = _ORT_ERRORS_ONLY
        try:
            self._session = onnxruntime.InferenceSession(
                str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime raises its own unexported exception types
            reason = str(error).strip().splitlines()[0] if str(error).strip() else "unreadable"
            raise ModelError(f"{model_path}: cannot load the speech detector ({reason})") from None
        self._history = np.zeros(int(np.ceil(history_seconds * SAMPLE_RATE / FRAME_SAMPLES)) + 2)
        self.reset()

    def reset(self) -> None:
        """Starts a new stream: state, context and frame numbering begin afresh."""
        self._hidden = np.zeros(_STATE_SHAPE, np.float32)
        self._cell = np.zeros(_STATE_SHAPE, np.float32)
        self._context = np.zeros(CONTEXT_SAMPLES, np.float32)
        self._pending = np.zeros(0, np.float32)
        self._history[:] = 0.0
        self.frames_seen = 0
        """Frames scored since the last reset."""

    def push(self, samples: np.ndarray) -> None:
        """Adds samples ((n,) float32 at 16 kHz), to be scored when next asked for."""
        self._pending = np.concatenate([self._pending, np.asarray(samples, np.float32)])

    def score(self) -> np.ndarray:
        """Scores every complete frame pushed and not yet scored; returns their probabilities
        ((frames,) float32 in [0, 1])."""
        pending = self._pending
        count = len(pending) // FRAME_SAMPLES
        if count == 0:
            return np.zeros(0, np.float32)
        self._pending = pending[count * FRAME_SAMPLES :]
        frames = pending[: count * FRAME_SAMPLES].reshape(count, FRAME_SAMPLES)
        inputs = np.empty((count, CONTEXT_SAMPLES + FRAME_SAMPLES), np.float32)
        inputs[:, CONTEXT_SAMPLES:] = frames
        inputs[0, :CONTEXT_SAMPLES] = self._context
        inputs[1:, :CONTEXT_SAMPLES] = frames[:-1, -CONTEXT_SAMPLES:]
        probabilities, self._hidden, self._cell = self._session.run(
            ["speech_probs", "hn", "cn"], {"input": inputs, "h": self._hidden, "c": self._cell}
        )
        self._context = frames[-1, -CONTEXT_SAMPLES:].copy()
        probabilities = np.asarray(probabilities, np.float32).reshape(-1)
        keep = min(count, len(self._history))
        self._history[:-keep] = self._history[keep:]
        self._history[-keep:] = probabilities[-keep:]
        self.frames_seen += count
        return probabilities

    def probabilities(self, start: int, end: int) -> np.ndarray:
        """Probabilities of the frames lying wholly in samples ``[start, end)`` since the last
        reset ((frames,) float32), scoring what was pushed first; frames older than the history
        are left out."""
        self.score()
        first = max(-(-start // FRAME_SAMPLES), self.frames_seen - len(self._history))
        last = min(end // FRAME_SAMPLES, self.frames_seen)
        if last <= first:
            return np.zeros(0, np.float32)
        offset = len(self._history) - self.frames_seen
        return self._history[first + offset : last + offset].astype(np.float32)
