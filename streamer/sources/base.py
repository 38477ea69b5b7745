"""The interface every audio source offers, and the errors opening one raises."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np


class SourceError(Exception):
    """A source cannot be opened; the message names the device or file."""


class UnknownDeviceError(SourceError):
    """The device named matches none (or several) of the inputs PortAudio lists.

    A configuration error, unlike an empty device list or a device that fails to open, which a
    microphone not yet plugged in or a sound server not yet started also cause.
    """


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
