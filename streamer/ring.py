"""The preallocated ring buffer between the audio callback and the processing thread.

The writer is the sound card's callback thread, which must never wait: ``write`` copies into
memory allocated up front and returns. When the reader falls behind by more than the capacity,
the oldest unread samples are overwritten and counted as an overflow, so capture never stalls.
"""

from __future__ import annotations

import threading
import time

import numpy as np


class RingBuffer:
    """Single-writer, single-reader ring of float32 samples with overflow counting."""

    def __init__(self, capacity: int) -> None:
        """Holds up to ``capacity`` samples; all memory is allocated here."""
        if capacity < 1:
            raise ValueError("ring buffer capacity must be at least one sample")
        self.capacity = capacity
        self._samples = np.zeros(capacity, np.float32)
        # Both counters only grow; their difference is what the reader has not read yet.
        self._written = 0
        self._read = 0
        self._last_write_time = 0.0
        self.overflows = 0
        """Times the reader lost unread samples because the writer overtook it."""
        self.lost_samples = 0
        """Samples overwritten before they were read."""
        # Held only for a copy of one block, never across a wait.
        self._lock = threading.Lock()
        self._data_ready = threading.Event()

    def write(self, block: np.ndarray) -> None:
        """Copies ``block`` ((n,) float32) in; safe to call from the audio callback.

        Allocates no array memory and never blocks for longer than another copy.
        """
        total = len(block)
        # Of a block longer than the ring only the newest samples fit; the reader counts the
        # others lost, as if they had been overwritten.
        skipped = max(0, total - self.capacity)
        block = block[skipped:]
        n = total - skipped
        with self._lock:
            start = (self._written + skipped) % self.capacity
            first = min(n, self.capacity - start)
            self._samples[start : start + first] = block[:first]
            self._samples[: n - first] = block[first:]
            self._written += total
            self._last_write_time = time.time()
        self._data_ready.set()

    def read(self, timeout: float | None = None) -> tuple[np.ndarray, float]:
        """All samples written since the last read (a copy) and the wall-clock time of the newest.

        Waits up to ``timeout`` seconds for data; returns an empty array when none came. If the
        writer overtook the reader, the lost samples are counted and the newest ``capacity`` are
        returned.
        """
        if not self._data_ready.wait(timeout):
            return np.zeros(0, np.float32), 0.0
        with self._lock:
            self._data_ready.clear()
            unread = self._written - self._read
            if unread > self.capacity:
                self.overflows += 1
                self.lost_samples += unread - self.capacity
                self._read = self._written - self.capacity
                unread = self.capacity
            start = self._read % self.capacity
            first = min(unread, self.capacity - start)
            head = self._samples[start : start + first]
            out = np.concatenate([head, self._samples[: unread - first]])
            self._read = self._written
            return out, self._last_write_time
