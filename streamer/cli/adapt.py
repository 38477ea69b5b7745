"""``adapt``: what the daemon has adapted to, and forgetting it."""

from __future__ import annotations

import json
from pathlib import Path

import click

from streamer.cli.options import settings_options
from streamer.config_paths import EffectiveConfig


@click.command()
@click.option(
    "--reset",
    is_flag=True,
    help="Forget the voice statistics: the daemon goes back to the training statistics.",
)
@settings_options("adaptation")
def adapt(reset: bool, settings: EffectiveConfig) -> None:
    """Show (or reset) what the daemon has adapted to: seconds of speech, and the state file.

    The file holds feature statistics only, never audio. A running daemon notices a reset
    within a second.
    """
    from streamer.adaptation import default_state_file

    state_file = Path(settings.config.adaptation.state_file or default_state_file())
    if reset:
        try:
            state_file.unlink()
        except FileNotFoundError:
            click.echo(f"nothing to reset: no state at {state_file}")
            return
        except OSError as error:
            raise click.ClickException(f"{state_file}: cannot remove ({error.strerror})") from None
        click.echo(f"reset: removed {state_file}; the training statistics apply again")
        return
    try:
        seconds = float(json.loads(state_file.read_text(encoding="utf-8"))["adapted_seconds"])
    except FileNotFoundError:
        click.echo(f"not adapted yet: no state at {state_file}")
        return
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise click.ClickException(f"{state_file}: unreadable adaptation state ({error})") from None
    click.echo(f"adapted on {seconds:.1f} s of speech; state in {state_file}")
