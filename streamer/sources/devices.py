"""The input devices PortAudio lists: finding one by index or name, rescanning, listing.

sounddevice is imported only here (``require_portaudio``), and only when a microphone is used:
importing it fails without the PortAudio library, which files do not need.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

from streamer.sources.base import SourceError, UnknownDeviceError


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


def input_named(name: str) -> int:
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
