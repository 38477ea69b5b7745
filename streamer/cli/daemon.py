"""``serve`` (the daemon) and ``devices`` (what it can capture from)."""

from __future__ import annotations

import click

from streamer.cli.options import settings_options
from streamer.config_paths import EffectiveConfig


@click.command()
@settings_options("source", "pipeline", "publish", "adaptation")
def serve(settings: EffectiveConfig) -> None:
    """Classify audio from a microphone or file and publish each window over ZeroMQ.

    A file source ends the daemon at its end; SIGTERM or Ctrl-C stops it cleanly.
    """
    from streamer.daemon import USER_ERRORS
    from streamer.daemon import serve as run_daemon

    try:
        run_daemon(settings.config)
    except USER_ERRORS as error:
        raise click.ClickException(str(error)) from None


@click.command()
def devices() -> None:
    """List audio input devices and the sample rates each accepts."""
    from streamer.cli.output import print_devices
    from streamer.sources import SourceError, list_input_devices

    try:
        found = list_input_devices()
    except SourceError as error:
        raise click.ClickException(str(error)) from None
    if not found:
        raise click.ClickException(
            "no audio input device found: connect a microphone, or check that PulseAudio or "
            "PipeWire runs and that this user may use audio (group 'audio')"
        )
    print_devices(found)
