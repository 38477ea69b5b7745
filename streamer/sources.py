"""Audio sources behind one interface: blocks of float32 mono samples at the models' rate.

``Microphone`` captures through sounddevice (the only module that touches it) into a ring
buffer; ``WavFile`` replays a file in real time or as fast as possible, so the daemon, tests and
demos run the same code with or without a microphone. sounddevice is imported only where a
microphone is used: importing it fails without the PortAudio library, which files do not need.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import soundfile as sf
import soxr

from streamer.audio import rate_problem
from streamer.config import SourceConfig
from streamer.ring import RingBuffer

_LOGGER = logging.getLogger(__name__)

# Rates tried, in order, when the models' rate is refused and the device names no default.
_COMMON_RATES = (48000, 44100, 32000, 22050, 16000)
# A running stream that delivers nothing for this long is taken as lost.
_STALL_SECONDS = 2.0
_FIRST_RETRY_SECONDS = 0.5


class SourceError(Exception):
    """A source cannot be opened; the message names the device or file."""


class UnknownDeviceError(SourceError):
    """The device named matches none (or several) of the inputs PortAudio lists.

    A configuration error, unlike an empty device list or a device that fails to open, which a
    microphone not yet plugged in or a sound server not yet started also cause.
    """


def require_portaudio() -> ModuleType:
    """The sounddevice module; SourceError (one line) when the PortAudio library is missing."""
    try:
        import sounddevice
    except OSError as error:
        # sounddevice raises OSError on import when it cannot load libportaudio.
        raise SourceError(
            f"PortAudio is not available ({error}); install it: sudo apt install libportaudio2"
        ) from None
    return sounddevice


@dataclass(frozen=True)
class AudioBlock:
    """A run of consecutive samples from a source."""

    samples: np.ndarray
    """(n,) float32 mono in [-1, 1], at the source's ``sample_rate``."""
    captured_at: float
    """Unix time (seconds) at which the newest sample became available."""


class AudioSource(ABC):
    """What the daemon reads audio from."""

    name: str
    """Human-readable identity for status messages ("mic:pulse", a file path)."""
    sample_rate: int
    """Rate of the samples ``read`` returns (hertz): always the models' rate."""
    live: bool
    """True when audio keeps arriving whether or not it is read (a microphone): a reader that
    falls behind should skip windows rather than lag further."""
    state: str = "starting"
    """"starting", "running", "lost" (a microphone vanished; being reopened) or "ended"."""

    @property
    def overflows(self) -> int:
        """Times captured audio was lost because it was not read in time."""
        return 0

    @abstractmethod
    def start(self) -> None:
        """Opens the source; raises SourceError if it cannot be used at all."""

    @abstractmethod
    def read(self, timeout: float) -> AudioBlock | None:
        """The next samples, or None if none came within ``timeout`` seconds or the source ended.

        ``state`` tells which: "ended" after the last block of a file.
        """

    @abstractmethod
    def close(self) -> None:
        """Stops capture and releases the device or file."""

    def __enter__(self) -> AudioSource:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class WavFile(AudioSource):
    """An audio file replayed as a stream, paced in real time unless ``realtime`` is False.

    Read from disk a block at a time, mixed to mono and resampled as ``streamer.audio.read_audio``
    does (the same soxr filter, run incrementally, gives the same samples), so a long recording
    costs no more memory than a short one.
    """

    live = False

    def __init__(
        self, path: Path, sample_rate: int, block_size: int, realtime: bool, loop: bool = False
    ) -> None:
        """``loop``: at the end, go on from the start (one unbroken stream, never "ended")."""
        self.path = Path(path)
        self.name = str(path)
        self.sample_rate = sample_rate
        self.block_size = block_size
        self.realtime = realtime
        self.loop = loop
        self.state = "starting"
        self._file: sf.SoundFile | None = None
        self._resampler: Any = None
        self._file_block = block_size
        self._pending: np.ndarray | None = None
        self._delivered = 0
        self._started = 0.0

    def start(self) -> None:
        try:
            self._file = sf.SoundFile(str(self.path))
        except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as error:
            raise SourceError(f"{self.path}: unreadable audio ({_reason(error)})") from None
        if self._file.frames == 0:
            raise SourceError(f"{self.path}: no audio samples")
        rate = self._file.samplerate
        problem = rate_problem(rate)
        if problem is not None:
            self._file.close()
            raise SourceError(f"{self.path}: {problem}")
        if rate != self.sample_rate:
            self._resampler = soxr.ResampleStream(
                rate, self.sample_rate, 1, dtype="float32", quality="HQ"
            )
        self._file_block = max(1, round(self.block_size * rate / self.sample_rate))
        self._delivered = 0
        self._started = time.monotonic()
        self.state = "running"

    def _next_block(self) -> np.ndarray | None:
        """The next samples at the models' rate; None after the last."""
        if self._file is None or self._file.closed:
            return None
        try:
            raw = self._file.read(self._file_block, dtype="float32", always_2d=True)
            if self.loop and len(raw) < self._file_block:
                self._file.seek(0)
                rest = self._file.read(self._file_block - len(raw), dtype="float32", always_2d=True)
                raw = np.concatenate([raw, rest])
        except (sf.LibsndfileError, RuntimeError) as error:
            raise SourceError(f"{self.path}: unreadable audio ({_reason(error)})") from None
        last = not self.loop and len(raw) < self._file_block
        mono = raw.mean(axis=1, dtype=np.float32)
        if not np.all(np.isfinite(mono)):
            raise SourceError(f"{self.path}: samples are not finite numbers")
        if last:
            self._file.close()
        if self._resampler is not None:
            mono = self._resampler.resample_chunk(mono, last=last)
        if last and len(mono) == 0:
            return None
        return mono

    def read(self, timeout: float) -> AudioBlock | None:
        block = self._pending if self._pending is not None else self._next_block()
        self._pending = None
        if block is None:
            self.state = "ended"
            return None
        if self.realtime:
            # A block is handed out once its last sample would have been spoken.
            due = self._started + (self._delivered + len(block)) / self.sample_rate
            wait = due - time.monotonic()
            if wait > timeout:
                self._pending = block
                time.sleep(max(timeout, 0.0))
                return None
            if wait > 0:
                time.sleep(wait)
        self._delivered += len(block)
        return AudioBlock(block, time.time())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self.state = "ended"


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
            index = _input_named(self._opened_name)
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
            return self._retry(timeout)
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


def rescan_devices() -> None:
    """Makes PortAudio list the devices afresh (it lists them once per initialisation).

    Needed to see a microphone plugged back in, or a sound server started after this process.
    Call it only while no stream is open.
    """
    sd = require_portaudio()
    # A failed Pa_Initialize (sound server down) leaves PortAudio uninitialised, and terminating
    # it then fails: terminate only what is initialised, so that the next rescan can succeed.
    while sd._initialized > 0:
        sd._terminate()
    sd._initialize()


def _input_named(name: str) -> int:
    """Index of the input device whose name is exactly ``name``; SourceError if none is."""
    inputs = _list_inputs()
    matches = [index for index, input_name in inputs.items() if input_name == name]
    if not matches:
        raise SourceError(f"input device {name!r} is not connected")
    return matches[0]


def _list_inputs() -> dict[int, str]:
    """Names of the input devices by PortAudio index; SourceError if PortAudio cannot list."""
    sd = require_portaudio()
    try:
        devices = list(sd.query_devices())
    except sd.PortAudioError as error:
        raise SourceError(f"cannot list audio devices ({error})") from None
    return {i: d["name"] for i, d in enumerate(devices) if d["max_input_channels"] > 0}


def resolve_input_device(device: str | int | None) -> int:
    """Index of the input device named by ``device``: an index, a name or part of one, or None.

    A name matches exactly first, then as a case-insensitive substring of one device's name.
    Raises SourceError naming the device when none or several match: UnknownDeviceError when
    PortAudio lists inputs but none (or several) fit ``device``.
    """
    sd = require_portaudio()
    inputs = _list_inputs()
    if not inputs:
        raise SourceError("no audio input device found")
    available = ", ".join(f"{i}: {name}" for i, name in inputs.items())
    if device is None:
        try:
            index = sd.default.device[0]
        except (sd.PortAudioError, IndexError):
            index = -1
        if index is None or index < 0:
            index = next(iter(inputs))
        return int(index)
    if isinstance(device, int) or device.isdigit():
        index = int(device)
        if index not in inputs:
            raise UnknownDeviceError(f"no input device with index {index} (inputs: {available})")
        return index
    exact = [i for i, name in inputs.items() if name == device]
    if exact:
        return exact[0]
    partial = [i for i, name in inputs.items() if device.lower() in name.lower()]
    if len(partial) == 1:
        return partial[0]
    if not partial:
        raise UnknownDeviceError(f"no input device matching {device!r} (inputs: {available})")
    names = ", ".join(repr(inputs[i]) for i in partial)
    raise UnknownDeviceError(f"input device {device!r} is ambiguous: matches {names}")


def open_source(config: SourceConfig, sample_rate: int) -> AudioSource:
    """The source ``config.source`` names: "mic", "mic:NAME_OR_INDEX", or an audio file path."""
    spec = config.source
    if spec == "mic" or spec.startswith("mic:"):
        device = spec[4:] or None
        return Microphone(
            device,
            sample_rate,
            block_size=config.block_size,
            device_rate=config.device_rate,
            ring_seconds=config.ring_seconds,
            retry_max_seconds=config.retry_max_seconds,
            latency_seconds=config.latency_seconds,
        )
    path = Path(spec)
    if not path.is_file():
        raise SourceError(f"{path}: no such audio file (or use mic, mic:NAME_OR_INDEX)")
    return WavFile(path, sample_rate, config.block_size, realtime=not config.fast, loop=config.loop)


# Rates `emostream devices` probes: the models' rate and the usual hardware rates.
_PROBED_RATES = (8000, 16000, 22050, 32000, 44100, 48000, 96000)


@dataclass(frozen=True)
class InputDevice:
    """An audio input PortAudio offers, for ``emostream devices``."""

    index: int
    """PortAudio device index (usable as ``mic:INDEX``)."""
    name: str
    """Device name (a unique part of it is usable as ``mic:NAME``)."""
    host_api: str
    """Audio system behind the device: ALSA, PulseAudio, Core Audio, ..."""
    channels: int
    """Maximum input channels."""
    default_rate: int
    """The device's default sample rate (hertz)."""
    rates: tuple[int, ...]
    """Rates among the common ones the device accepts for mono float32 capture (hertz)."""
    default: bool
    """Whether it is the default input ("mic" without a name)."""


def list_input_devices() -> list[InputDevice]:
    """Every input device with the rates it accepts; raises SourceError if PortAudio fails."""
    sd = require_portaudio()
    try:
        devices = list(sd.query_devices())
        host_apis = [api["name"] for api in sd.query_hostapis()]
        default_index = sd.default.device[0]
    except sd.PortAudioError as error:
        raise SourceError(f"cannot list audio devices ({error})") from None
    found = []
    for index, info in enumerate(devices):
        if info["max_input_channels"] < 1:
            continue
        rates = []
        for rate in _PROBED_RATES:
            try:
                sd.check_input_settings(device=index, samplerate=rate, channels=1, dtype="float32")
            except (sd.PortAudioError, ValueError):
                continue
            rates.append(rate)
        found.append(
            InputDevice(
                index=index,
                name=info["name"],
                host_api=host_apis[info["hostapi"]],
                channels=int(info["max_input_channels"]),
                default_rate=round(info["default_samplerate"]),
                rates=tuple(rates),
                default=index == default_index,
            )
        )
    return found


def _reason(error: Exception) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__
