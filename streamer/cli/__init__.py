"""The ``emostream`` command line; only this package sees parsed arguments.

One module per group of commands parses their options (``daemon``: serve and devices;
``classify``; ``client``: monitor, mqtt and keygen; ``settings``: config; ``bench``;
``adapt``);
``output`` draws what they print; ``options`` generates the flags of every setting from
``streamer.config``.
Commands of other packages (``train`` and ``evaluate`` from ``training``) are registered under
the ``emostream.commands`` entry-point group and imported only when run, so the runtime never
imports them.
"""

from __future__ import annotations

import logging
from importlib.metadata import EntryPoint, entry_points

import click

from streamer import __version__
from streamer.cli.adapt import adapt
from streamer.cli.bench import bench
from streamer.cli.classify import classify
from streamer.cli.client import keygen, monitor, mqtt
from streamer.cli.daemon import devices, serve
from streamer.cli.settings import show_config

PLUGIN_GROUP = "emostream.commands"
"""Entry-point group of commands that other packages add."""

EXTRA_COMMANDS = {"train": "train", "evaluate": "train"}
"""Commands that come with an optional extra, by the extra's name: named when not installed."""


def _plugins() -> dict[str, EntryPoint]:
    return {point.name: point for point in entry_points(group=PLUGIN_GROUP)}


class CommandLine(click.Group):
    """The built-in commands plus those registered in ``PLUGIN_GROUP``, loaded when asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_plugins()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        plugin = _plugins().get(cmd_name)
        if plugin is not None:
            loaded = plugin.load()
            assert isinstance(loaded, click.Command), f"{plugin.value} is not a click command"
            return loaded
        if cmd_name in EXTRA_COMMANDS:
            extra = EXTRA_COMMANDS[cmd_name]
            raise click.ClickException(
                f"{cmd_name} needs the [{extra}] extra, which is not installed: "
                f"pip install -e '.[{extra}]'"
            )
        return None


@click.group(cls=CommandLine)
@click.version_option(__version__, prog_name="emostream")
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
def main(verbose: bool) -> None:
    """Real-time speech-emotion classification, published over ZeroMQ."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


for _command in (serve, bench, monitor, mqtt, keygen, show_config, classify, devices, adapt):
    main.add_command(_command)
