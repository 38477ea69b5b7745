"""Command-line options generated from the settings dataclasses of ``streamer.config``.

Every field of a settings section becomes a flag of each command that takes that section:
``--field-name`` (or the spellings in the field's ``flag(...)`` metadata), typed as the field,
its docstring as help, its default shown as the field declares it. A flag's value goes into
its field with ``dataclasses.replace`` on the configuration built from the files, so a command
receives one typed ``EffectiveConfig`` and nothing between it and the flags is keyed by strings.

Boolean fields get ``--name/--no-name``; a flag not given leaves the files' value alone (a
``true`` in the TOML file stays true unless ``--no-name`` is given).
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from streamer.config import SECTIONS, Config, ConfigError, override, setting_docs
from streamer.config_paths import EffectiveConfig, load_effective_config


@dataclass(frozen=True)
class SettingFlag:
    """One setting's command-line flag: which field of which section it sets, and how."""

    section: str
    """Name of the settings section (``Config`` attribute and TOML table), e.g. "pipeline"."""
    setting: dataclasses.Field
    """The field the flag sets."""
    kind: Any
    """The field's type (resolved annotation)."""
    help: str
    """The field's docstring."""

    @property
    def parameter(self) -> str:
        """Name of the click parameter; unique across sections."""
        return f"{self.section}__{self.setting.name}"

    @property
    def spellings(self) -> tuple[str, ...]:
        """The flag's names, the first shown first in help."""
        named = self.setting.metadata.get("flags")
        return tuple(named) if named else ("--" + self.setting.name.replace("_", "-"),)

    @property
    def named_values(self) -> Mapping[str, Any]:
        """Words the flag accepts for field values (``--model both``), if any."""
        return self.setting.metadata.get("values") or {}

    def option(self) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """The click option: default None, so that an absent flag changes nothing."""
        declarations: list[str] = [self.parameter]
        if self.kind is bool:
            declarations += [f"{name}/--no-{name[2:]}" for name in self.spellings]
            return click.option(*declarations, default=None, help=self._help())
        declarations += self.spellings
        return click.option(*declarations, type=self._click_type(), default=None, help=self._help())

    def _click_type(self) -> click.ParamType:
        kind = _without_none(self.kind)
        if self.named_values:
            return NamedValue(self.named_values)
        if typing.get_origin(kind) is tuple:
            return CommaSeparated()
        if kind is Path:
            return click.Path(path_type=Path)
        scalars: dict[Any, click.ParamType] = {
            int: click.INT,
            float: click.FLOAT,
            str: click.STRING,
        }
        return scalars[kind]

    def _help(self) -> str:
        return f"{self.help}  [default: {self._shown_default()}]"

    def _shown_default(self) -> str:
        default = self.setting.default
        if self.setting.default_factory is not dataclasses.MISSING:
            default = self.setting.default_factory()
        for word, value in self.named_values.items():
            if value == default:
                return word
        if isinstance(default, bool):
            return self.spellings[0][2:] if default else "no-" + self.spellings[0][2:]
        if default is None:
            return "unset"
        if default == "":
            return '""'
        if isinstance(default, tuple):
            return ",".join(map(str, default))
        return str(default)


class NamedValue(click.Choice):
    """One of a few words, each standing for a field value (``both`` -> ``("cnn", "lstm")``)."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        super().__init__(list(values))
        self.values = dict(values)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str) and value in self.values.values():
            return value
        return self.values[super().convert(value, param, ctx)]


class CommaSeparated(click.ParamType):
    """A tuple of strings written ``a,b,c``."""

    name = "a,b,..."

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[str, ...]:
        if isinstance(value, tuple):
            return value
        return tuple(part.strip() for part in str(value).split(",") if part.strip())


def setting_flags(*settings: str) -> list[SettingFlag]:
    """A flag for every field of the named settings sections ("pipeline"), or for one field
    ("publish.device"), in declaration order."""
    flags: list[SettingFlag] = []
    for name in settings:
        section, _, only = name.partition(".")
        flags += [
            flag for flag in flags_of(section, SECTIONS[section]) if only in ("", flag.setting.name)
        ]
    return flags


def flags_of(section: str, cls: type) -> list[SettingFlag]:
    """A flag for every field of the settings class ``cls``, stored under ``section``."""
    hints = typing.get_type_hints(cls)
    docs = setting_docs(cls)
    for setting in dataclasses.fields(cls):
        if setting.name not in docs:
            raise TypeError(f"{cls.__name__}.{setting.name}: no docstring below it for its help")
    return [
        SettingFlag(section, setting, hints[setting.name], docs[setting.name])
        for setting in dataclasses.fields(cls)
    ]


def with_flags(config: Config, given: Mapping[SettingFlag, Any]) -> Config:
    """``config`` with each flag's value in its field; one replace per section, so settings
    that must come together (the CURVE keys) may. Raises ConfigError naming the key."""
    sections: dict[str, Any] = {}
    for section in dict.fromkeys(flag.section for flag in given):
        values = {
            flag.setting.name: value for flag, value in given.items() if flag.section == section
        }
        sections[section] = dataclasses.replace(getattr(config, section), **values)
    return dataclasses.replace(config, **sections)


config_file_option = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="TOML settings file, read instead of /etc/emostream/emostream.toml and "
    "~/.config/emostream/emostream.toml; flags given here override it.",
)


def load_settings(
    config_path: Path | None, overrides: Mapping[str, Any] | None = None
) -> EffectiveConfig:
    """Settings from the config files (and a file-shaped ``overrides``); one-line errors."""
    try:
        return load_effective_config(config_path, overrides or {})
    except ConfigError as error:
        raise click.ClickException(str(error)) from None


def overridden(settings: EffectiveConfig, table: Mapping[str, Any]) -> EffectiveConfig:
    """``settings`` with a file-shaped ``table`` (``--set`` assignments) over them."""
    try:
        return dataclasses.replace(settings, config=override(settings.config, table))
    except ConfigError as error:
        raise click.ClickException(str(error)) from None


def settings_options(*settings: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Gives a command ``--config`` and a flag per field of ``settings`` (as ``setting_flags``).

    The command is called with ``settings: EffectiveConfig`` (files, then flags) in place of
    those options.
    """
    flags = setting_flags(*settings)

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(command)
        def with_settings(*args: Any, config_path: Path | None, **options: Any) -> Any:
            given = {flag: options.pop(flag.parameter) for flag in flags}
            effective = load_settings(config_path)
            try:
                config = with_flags(
                    effective.config, {f: v for f, v in given.items() if v is not None}
                )
            except ConfigError as error:
                raise click.ClickException(str(error)) from None
            settings = dataclasses.replace(effective, config=config)
            return command(*args, settings=settings, **options)

        decorated: Callable[..., Any] = with_settings
        for flag in reversed(flags):
            decorated = flag.option()(decorated)
        return config_file_option(decorated)

    return decorate


def _without_none(kind: Any) -> Any:
    """``X`` from ``X | None``; other types unchanged."""
    arguments = [argument for argument in typing.get_args(kind) if argument is not type(None)]
    if typing.get_origin(kind) is not tuple and len(arguments) == 1:
        return arguments[0]
    return kind
