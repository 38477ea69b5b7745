"""The ``emostream`` command line; only this module sees parsed arguments."""

from __future__ import annotations

import logging

import click

from streamer import __version__


@click.group()
@click.version_option(__version__, prog_name="emostream")
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
def main(verbose: bool) -> None:
    """Real-time speech-emotion classification, published over ZeroMQ."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@main.command()
@click.argument("address", default="tcp://127.0.0.1:5556")
@click.option(
    "--stale-after",
    type=click.FloatRange(min=0.5),
    default=3.0,
    show_default=True,
    help="Seconds without a message before the screen says nothing is publishing.",
)
def monitor(address: str, stale_after: float) -> None:
    """Live view of the stream at ADDRESS; reconnects when the daemon restarts."""
    # Imported here so that the monitor starts without loading the audio and model stack.
    from streamer.client import ClientError
    from streamer.monitor import run_monitor

    try:
        run_monitor(address, stale_after=stale_after)
    except ClientError as error:
        raise click.ClickException(str(error)) from None
    except KeyboardInterrupt:
        pass
