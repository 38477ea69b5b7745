"""The ring buffer hands the reader every sample once, in order, and never makes the writer wait."""

from __future__ import annotations

import threading
import tracemalloc

import numpy as np
import pytest

from streamer.ring import RingBuffer


def ramp(start: int, count: int) -> np.ndarray:
    return np.arange(start, start + count, dtype=np.float32)


def test_reads_return_written_samples_in_order_across_the_wrap():
    ring = RingBuffer(1000)
    received = []
    for i in range(7):
        ring.write(ramp(i * 300, 300))
        received.append(ring.read(0)[0])
    np.testing.assert_array_equal(np.concatenate(received), ramp(0, 2100))
    assert ring.overflows == 0


def test_a_reader_that_falls_behind_gets_the_newest_samples_and_an_overflow_is_counted():
    ring = RingBuffer(1000)
    for i in range(5):
        ring.write(ramp(i * 300, 300))
    samples, _ = ring.read(0)
    np.testing.assert_array_equal(samples, ramp(500, 1000))
    assert ring.overflows == 1
    assert ring.lost_samples == 500


def test_a_reader_exactly_one_capacity_behind_loses_nothing():
    """A full ring is not an overflowing one: only the sample after it is lost."""
    ring = RingBuffer(1000)
    ring.write(ramp(0, 400))
    ring.write(ramp(400, 600))
    samples, _ = ring.read(0)
    np.testing.assert_array_equal(samples, ramp(0, 1000))
    assert (ring.overflows, ring.lost_samples) == (0, 0)
    ring.write(ramp(1000, 600))
    ring.write(ramp(1600, 401))
    samples, _ = ring.read(0)
    np.testing.assert_array_equal(samples, ramp(1001, 1000))
    assert (ring.overflows, ring.lost_samples) == (1, 1)


def test_a_block_larger_than_the_ring_keeps_its_newest_samples_and_counts_the_rest_lost():
    ring = RingBuffer(100)
    ring.write(ramp(0, 30))
    ring.write(ramp(30, 240))
    np.testing.assert_array_equal(ring.read(0)[0], ramp(170, 100))
    assert (ring.overflows, ring.lost_samples) == (1, 170)
    ring.write(ramp(270, 10))
    np.testing.assert_array_equal(ring.read(0)[0], ramp(270, 10))


def test_losses_add_up_over_several_overflows():
    ring = RingBuffer(100)
    for start in (0, 150, 300):
        ring.write(ramp(start, 150))
        np.testing.assert_array_equal(ring.read(0)[0], ramp(start + 50, 100))
    assert (ring.overflows, ring.lost_samples) == (3, 150)


def test_a_one_sample_ring_works_and_an_empty_one_is_refused():
    ring = RingBuffer(1)
    ring.write(ramp(7, 1))
    np.testing.assert_array_equal(ring.read(0)[0], ramp(7, 1))
    with pytest.raises(ValueError, match="at least one sample"):
        RingBuffer(0)


def test_read_waits_for_data_then_returns_empty_when_none_came():
    ring = RingBuffer(100)
    samples, captured_at = ring.read(0.05)
    assert len(samples) == 0 and samples.dtype == np.float32 and captured_at == 0.0
    ring.write(ramp(0, 10))
    samples, captured_at = ring.read(0.05)
    assert len(samples) == 10 and samples.dtype == np.float32 and captured_at > 0


def test_write_allocates_no_array_memory():
    ring = RingBuffer(48000)
    block = np.ones(1024, np.float32)
    ring.write(block)  # first call warms up lazily created objects
    tracemalloc.start()
    try:
        for _ in range(200):
            ring.write(block)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # A 1024-sample float32 copy would be 4 KiB; only small interpreter objects may appear.
    assert peak < 2048


def test_a_concurrent_writer_and_reader_lose_nothing_when_the_reader_keeps_up():
    capacity = 16000
    ring = RingBuffer(capacity)
    total = 200_000
    received: list[np.ndarray] = []
    progress = threading.Condition()
    count = 0

    def reader() -> None:
        nonlocal count
        while count < total:
            samples, _ = ring.read(1.0)
            with progress:
                received.append(samples)
                count += len(samples)
                progress.notify()

    # A daemon thread: if the test fails, a reader still waiting must not keep pytest from exiting.
    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    for start in range(0, total, 512):
        # "Keeps up" is the premise, not a race against the scheduler: the writer never runs more
        # than half the ring ahead of what the reader has taken, however slowly the reader thread
        # is scheduled on a loaded machine, so any loss is the ring's fault.
        with progress:
            assert progress.wait_for(lambda start=start: start - count <= capacity // 2, timeout=60)
        ring.write(ramp(start, min(512, total - start)))
    with progress:
        assert progress.wait_for(lambda: count >= total, timeout=60)
    thread.join()
    np.testing.assert_array_equal(np.concatenate(received), ramp(0, total))
    assert ring.overflows == 0
