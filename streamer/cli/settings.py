"""``config``: the effective settings, as the other commands would see them."""

from __future__ import annotations

from typing import Any

import click

from streamer.cli.options import overridden, settings_options
from streamer.config_paths import EffectiveConfig


@click.command("config")
@settings_options("source", "pipeline", "publish", "adaptation")
@click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="SECTION.KEY=VALUE",
    help="Override one setting, as its flag would (repeatable).",
)
def show_config(settings: EffectiveConfig, assignments: tuple[str, ...]) -> None:
    """Print the whole effective configuration as TOML, naming the files it came from.

    Precedence, lowest first: defaults, /etc/emostream/emostream.toml,
    ~/.config/emostream/emostream.toml (or the --config file alone), flags, then --set.
    """
    from streamer.cli.output import print_config
    from streamer.config import ConfigError
    from streamer.config_paths import parse_assignment

    table: dict[str, dict[str, Any]] = {}
    try:
        for assignment in assignments:
            section, key, value = parse_assignment(assignment)
            table.setdefault(section, {})[key] = value
    except ConfigError as error:
        raise click.ClickException(str(error)) from None
    print_config(overridden(settings, table))
