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
