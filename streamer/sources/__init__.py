"""Audio sources behind one interface: blocks of float32 mono samples at the models' rate.

``Microphone`` captures through sounddevice (the only module that touches it) into a ring
buffer; ``WavFile`` replays a file in real time or as fast as possible, so the daemon, tests and
demos run the same code with or without a microphone. sounddevice is imported only where a
microphone is used: importing it fails without the PortAudio library, which files do not need.

``base`` holds the interface, ``file`` the file source, ``microphone`` the capture,
``devices`` the PortAudio device lookup; ``open_source`` picks one from the settings.
"""

from __future__ import annotations

from pathlib import Path

from streamer.config import SourceConfig
from streamer.sources.base import AudioBlock, AudioSource, SourceError, UnknownDeviceError
from streamer.sources.devices import (
    InputDevice,
    list_input_devices,
    require_portaudio,
    rescan_devices,
    resolve_input_device,
)
from streamer.sources.file import WavFile
from streamer.sources.microphone import Microphone

__all__ = [
    "AudioBlock",
    "AudioSource",
    "InputDevice",
    "Microphone",
    "SourceError",
    "UnknownDeviceError",
    "WavFile",
    "list_input_devices",
    "open_source",
    "require_portaudio",
    "rescan_devices",
    "resolve_input_device",
]


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
