"""emostream: real-time speech-emotion classification published over ZeroMQ."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("emostream")
except PackageNotFoundError:
    __version__ = "0.0.0+unknown"
