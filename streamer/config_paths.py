"""Where configuration files are looked for, and the effective configuration from them.

Without ``--config``, the system file and then the user's file are read, each overriding the
one before, so an administrator's defaults hold unless a user changes them; with ``--config``,
that file alone is read, since naming a file means "this, exactly". Command-line options
override whatever the files say. ``streamer.config.load_config`` validates every layer.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamer.config import SECTIONS, Config, ConfigError, override, read_toml

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

_LOGGER = logging.getLogger(__name__)

SYSTEM_CONFIG = Path("/etc/emostream/emostream.toml")
"""Read first, when it exists: settings for every user and for the system service."""


def user_config_path() -> Path:
    """``$XDG_CONFIG_HOME/emostream/emostream.toml`` (``~/.config`` when the variable is unset)."""
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "emostream" / "emostream.toml"


@dataclass(frozen=True)
class EffectiveConfig:
    """Settings and the files they came from."""

    config: Config
    """The validated settings."""
    files: tuple[Path, ...]
    """Files read, lowest precedence first."""


def config_files(explicit: Path | None, system: Path = SYSTEM_CONFIG) -> list[Path]:
    """Files to read, lowest precedence first: ``explicit`` alone, else system then user.

    An explicit file must exist; the system and user files are optional.
    """
    if explicit is not None:
        if not Path(explicit).is_file():
            raise ConfigError(f"{explicit}: config file not found")
        return [Path(explicit)]
    return [path for path in (system, user_config_path()) if path.is_file()]


def load_effective_config(
    explicit: Path | None,
    overrides: Mapping[str, Any],
    system: Path = SYSTEM_CONFIG,
) -> EffectiveConfig:
    """Defaults <- system file <- user file (or ``explicit`` alone) <- ``overrides``.

    Each file is read once and validated on its own first, so an error names the file as well
    as the key. ``overrides`` is shaped as a file (``{section: {key: value}}``).
    """
    files = config_files(explicit, system)
    config = Config()
    for path in files:
        table = read_toml(path)
        try:
            override(Config(), table)
            config = override(config, table)
        except ConfigError as error:
            raise ConfigError(f"{path}: {error}") from None
    _LOGGER.debug("configuration files: %s", ", ".join(map(str, files)) or "none")
    return EffectiveConfig(override(config, overrides), tuple(files))


def parse_assignment(assignment: str) -> tuple[str, str, Any]:
    """``("pipeline", "hop_seconds", 0.25)`` from ``"pipeline.hop_seconds=0.25"``.

    The value is read as a TOML value when it is one (numbers, booleans, arrays, quoted
    strings), else taken as a bare string, so ``source.source=mic:USB`` needs no quotes.
    """
    name, equals, text = assignment.partition("=")
    section, dot, key = name.strip().partition(".")
    if not equals or not dot or not key:
        raise ConfigError(f"setting {assignment!r} is not SECTION.KEY=VALUE")
    if section not in SECTIONS:
        raise ConfigError(f"unknown config section {section!r} in {assignment!r}")
    try:
        value = tomllib.loads(f"value = {text.strip()}")["value"]
    except tomllib.TOMLDecodeError:
        value = text.strip()
    return section, key.strip(), value


def to_toml(config: Config) -> str:
    """``config`` as a TOML document that ``load_config`` reads back to the same settings.

    TOML has no null: an unset optional setting is printed as "", which reads back as unset.
    """
    lines: list[str] = []
    for section in dataclasses.fields(config):
        settings = getattr(config, section.name)
        lines.append(f"[{section.name}]")
        for setting in dataclasses.fields(settings):
            value = getattr(settings, setting.name)
            lines.append(f"{setting.name} = {_toml_value('' if value is None else value)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    # JSON string escapes are valid TOML basic-string escapes.
    return json.dumps(str(value), ensure_ascii=False)
