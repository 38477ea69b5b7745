"""A sound-card input captured through sounddevice into a ring buffer, reopened when it
vanishes."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import soxr

from streamer.ring import RingBuffer
from streamer.sources.base import AudioBlock, AudioSource, SourceError, UnknownDeviceError
from streamer.sources.devices import (
    input_named,
    require_portaudio,
    rescan_devices,
    resolve_input_device,
)

_LOGGER = logging.getLogger(__name__)

# Rates tried, in order, when the models' rate is refused and the device names no default.
_COMMON_RATES = (48000, 44100, 32000, 22050, 16000)
# A running stream that delivers nothing for this long is taken as lost.
_STALL_SECONDS = 2.0
_FIRST_RETRY_SECONDS = 0.5


class Microphone(AudioSource):
    """A sound-card input captured into a ring buffer, resampled to ``sample_rate``.

    The device is opened at the models' rate when it offers it, else at its own default rate
    (USB microphones often offer only 44.1 or 48 kHz) and resampled here, off the audio thread.
    If the device vanishes, or cannot be opened at start (not plugged in yet, sound server not
    up yet), ``state`` becomes "lost" and reopening is retried with exponential backoff;
    ``read`` keeps returning None meanwhile instead of raising. A named device is reopened by
    its full name, since PortAudio's indices shift when devices come and go.
    """

    live = True

    def __init__(
        self,
        device: str | int | None,
        sample_rate: int,
        block_size: int = 1024,
        device_rate: int = 0,
        ring_seconds: float = 10.0,
        retry_max_seconds: float = 10.0,
        latency_seconds: float = 0.1,
    ) -> None:
        """``device`` is an index, a (part of a) device name, or None for the default input.

        Raises SourceError when the PortAudio library is missing.
        """
        self._sd = require_portaudio()
        self.device = device
        self.name = "mic" if device is None else f"mic:{device}"
        self.sample_rate = sample_rate
        self.block_size = block_size
        self.device_rate = device_rate
        self.ring_seconds = ring_seconds
        self.retry_max_seconds = retry_max_seconds
        self.latency_seconds = latency_seconds
        self.state = "starting"
        self.capture_rate = 0
        """Rate the device is actually opened at (hertz)."""
        self._stream: Any = None
        self._ring: RingBuffer | None = None
        self._resampler: Any = None
        self._callback_overflows = 0
        self._previous_overflows = 0
        self._last_data = 0.0
        self._retry_at = 0.0
        self._retry_delay = _FIRST_RETRY_SECONDS
        self._opened_name: str | None = None
        """Full name of the device ``device`` named when it was first opened."""

    @property
    def overflows(self) -> int:
        ring = self._ring.overflows if self._ring is not None else 0
        return self._previous_overflows + self._callback_overflows + ring

    def start(self) -> None:
        """Opens the device, or enters "lost" to retry if it cannot be opened yet.

        Raises UnknownDeviceError when ``device`` matches none (or several) of the inputs
        PortAudio lists: retrying would not help, and the user should see the mistake at once
        rather than a daemon waiting forever.
        """
        try:
            self._open()
        except UnknownDeviceError:
            raise
        except (SourceError, self._sd.PortAudioError) as error:
            self._lose(f"cannot open ({error})")

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        # Runs on the audio thread: copy into the ring, count problems, return. Nothing else.
        if status.input_overflow:
            self._callback_overflows += 1
        self._ring.write(indata[:, 0])  # type: ignore[union-attr]

    def _open(self) -> None:
        sd = self._sd
        if self._opened_name is None:
            index = resolve_input_device(self.device)
        else:
            index = input_named(self._opened_name)
        info = sd.query_devices(index, "input")
        self.capture_rate = self._choose_rate(index, info)
        if self._ring is not None:
            self._previous_overflows += self._ring.overflows
        self._ring = RingBuffer(max(round(self.ring_seconds * self.capture_rate), self.block_size))
        self._resampler = (
            soxr.ResampleStream(self.capture_rate, self.sample_rate, 1, dtype="float32")
            if self.capture_rate != self.sample_rate
            else None
        )
        try:
            self._stream = sd.InputStream(
                device=index,
                samplerate=self.capture_rate,
                blocksize=self.block_size,
                channels=1,
                dtype="float32",
                latency=self.latency_seconds,
                callback=self._callback,
            )
            self._stream.start()
        except sd.PortAudioError as error:
            self._stream = None
            raise SourceError(f"input device {info['name']!r}: cannot open ({error})") from None
        self._last_data = time.monotonic()
        self.state = "running"
        if self.device is not None:
            self._opened_name = info["name"]
        _LOGGER.info(
            "capturing from %r at %d Hz (models hear %d Hz)",
            info["name"],
            self.capture_rate,
            self.sample_rate,
        )

    def _choose_rate(self, index: int, info: dict[str, Any]) -> int:
        if self.device_rate:
            candidates: tuple[int, ...] = (self.device_rate,)
        else:
            default = int(info.get("default_samplerate") or 0)
            candidates = (self.sample_rate, default, *_COMMON_RATES)
        for rate in candidates:
            if rate <= 0:
                continue
            try:
                self._sd.check_input_settings(
                    device=index, samplerate=rate, channels=1, dtype="float32"
                )
            except (self._sd.PortAudioError, ValueError):
                continue
            return rate
        raise SourceError(
            f"input device {info['name']!r} accepts none of the rates {list(candidates)} Hz"
        )

    def read(self, timeout: float) -> AudioBlock | None:
        if self.state == "ended":
            return None
        if self.state == "lost":
            self._retry(timeout)
            return None
        samples, captured_at = self._ring.read(timeout)  # type: ignore[union-attr]
        now = time.monotonic()
        if len(samples) == 0:
            stream_dead = self._stream is None or not self._stream.active
            if stream_dead or now - self._last_data > _STALL_SECONDS:
                self._lose("stopped delivering audio")
            return None
        self._last_data = now
        if self._resampler is not None:
            samples = self._resampler.resample_chunk(samples)
            if len(samples) == 0:
                return None
        return AudioBlock(samples, captured_at)

    def _lose(self, reason: str) -> None:
        _LOGGER.warning("%s: %s; retrying", self.name, reason)
        self._close_stream()
        self.state = "lost"
        self._retry_delay = _FIRST_RETRY_SECONDS
        self._retry_at = time.monotonic() + self._retry_delay

    def _retry(self, timeout: float) -> None:
        """Reopens the device once its backoff delay has passed; always returns None."""
        wait = self._retry_at - time.monotonic()
        if wait > 0:
            time.sleep(min(wait, timeout))
            return None
        try:
            rescan_devices()
            self._open()
        except (SourceError, self._sd.PortAudioError) as error:
            self._retry_delay = min(self._retry_delay * 2, self.retry_max_seconds)
            self._retry_at = time.monotonic() + self._retry_delay
            _LOGGER.debug(
                "%s still unavailable (%s); next try in %.1f s", self.name, error, self._retry_delay
            )
        return None

    def _close_stream(self) -> None:
        if self._stream is not None:
            try:
                self._stream.abort()
                self._stream.close()
            except self._sd.PortAudioError as error:
                _LOGGER.debug("closing %s: %s", self.name, error)
            self._stream = None

    def close(self) -> None:
        self._close_stream()
        self.state = "ended"
