"""Every setting has one typed path: field -> flag (type, help, default) -> the same field.

Flags are generated from the settings dataclasses: a flag overrides the files, the files
override the field's default, an absent flag changes nothing (a boolean included), and help
shows the default the field declares.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
import pytest
from daemon_support import ROOT, emostream_command

from streamer.cli import main
from streamer.cli.options import (
    CommaSeparated,
    NamedValue,
    SettingFlag,
    flags_of,
    setting_flags,
    settings_options,
)
from streamer.config import SECTIONS, Config, PipelineConfig, SourceConfig
from streamer.config import flag as flag_metadata
from streamer.config_paths import EffectiveConfig, load_effective_config

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

DAEMON_SECTIONS = ("source", "pipeline", "publish")
"""The sections ``serve`` and ``config`` take flags for."""
BOOLEAN_SETTINGS = [
    (flag.section, flag.setting.name)
    for flag in setting_flags(*DAEMON_SECTIONS)
    if flag.kind is bool
]


def effective(*arguments: str, home: Path) -> dict:
    """``emostream config ARGS`` as TOML read back, with ``home`` as the user's config home."""
    result = subprocess.run(
        [*emostream_command(), "config", *arguments],
        capture_output=True,
        text=True,
        env={**os.environ, "XDG_CONFIG_HOME": str(home)},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return tomllib.loads(result.stdout)


def config_error(*arguments: str, home: Path) -> str:
    """The last line ``emostream config ARGS`` fails with."""
    result = subprocess.run(
        [*emostream_command(), "config", *arguments],
        capture_output=True,
        text=True,
        env={**os.environ, "XDG_CONFIG_HOME": str(home)},
        timeout=60,
    )
    assert result.returncode != 0 and result.stdout == ""
    assert "Traceback" not in result.stderr
    return result.stderr.strip().splitlines()[-1]


def test_a_flag_overrides_the_file_and_the_file_overrides_the_default(tmp_path):
    settings = tmp_path / "settings.toml"
    settings.write_text("[pipeline]\nhop_seconds = 1.0\nsmoothing = 0.8\n")
    printed = effective("--config", str(settings), "--hop", "0.25", home=tmp_path)
    assert printed["pipeline"]["hop_seconds"] == 0.25
    assert printed["pipeline"]["smoothing"] == 0.8
    assert printed["pipeline"]["hysteresis"] == PipelineConfig().hysteresis


@pytest.mark.parametrize(("section", "name"), BOOLEAN_SETTINGS)
def test_a_boolean_flag_not_given_keeps_true_from_the_file(tmp_path, section, name):
    assert getattr(SECTIONS[section](), name) is False, "the test needs a false default"
    settings = tmp_path / "settings.toml"
    settings.write_text(f"[{section}]\n{name} = true\n")
    dashed = name.replace("_", "-")
    assert effective("--config", str(settings), home=tmp_path)[section][name] is True
    assert (
        effective("--config", str(settings), f"--no-{dashed}", home=tmp_path)[section][name]
        is False
    )
    assert effective(f"--{dashed}", home=tmp_path)[section][name] is True


def test_the_flags_of_today_keep_their_names(tmp_path):
    keys = tmp_path / "keys"
    printed = effective(
        *("--source", "speech.wav", "--fast", "--loop", "--bind", "ipc:///tmp/e.sock"),
        *("--model", "lstm", "--hop", "0.25", "--models-dir", str(tmp_path)),
        *("--device-rate", "48000", "--echo", "--wait-subscriber", "3"),
        *("--curve-secret", str(keys / "s.key_secret"), "--curve-clients", str(keys)),
        "--insecure",
        home=tmp_path,
    )
    assert {section: printed[section] for section in DAEMON_SECTIONS} == {
        "source": {
            **printed["source"],
            "source": "speech.wav",
            "fast": True,
            "loop": True,
            "device_rate": 48000,
        },
        "pipeline": {
            **printed["pipeline"],
            "models": ["lstm"],
            "hop_seconds": 0.25,
            "model_dir": str(tmp_path),
        },
        "publish": {
            **printed["publish"],
            "bind": "ipc:///tmp/e.sock",
            "echo": True,
            "wait_for_subscriber": 3.0,
            "curve_secret_key": str(keys / "s.key_secret"),
            "curve_clients": str(keys),
            "insecure": True,
        },
    }


@pytest.mark.parametrize(
    ("word", "models"),
    [("all", ["cnn", "lstm", "functionals"]), ("cnn", ["cnn"]), ("functionals", ["functionals"])],
)
def test_model_names_one_model_or_all(tmp_path, word, models):
    assert effective("--model", word, home=tmp_path)["pipeline"]["models"] == models


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("--hop", "-1"), "Error: config key 'pipeline.hop_seconds' must be positive (got -1.0)"),
        (("--smoothing", "0"), "Error: config key 'pipeline.smoothing' must be in (0, 1]"),
        (("--curve-secret", "a.key_secret"), "Error: config key 'publish.curve_clients' and"),
        (("--hop", "fast"), "Error: Invalid value for '--hop' / '--hop-seconds': 'fast'"),
        (("--model", "rnn"), "Error: Invalid value for '--model': 'rnn' is not one of"),
    ],
)
def test_a_bad_flag_value_is_one_line_naming_its_key_or_flag(tmp_path, arguments, message):
    assert config_error(*arguments, home=tmp_path).startswith(message)


def test_help_shows_the_default_each_field_declares():
    serve = main.commands["serve"]
    context = click.Context(serve)
    records = {
        option.name: " ".join(option.get_help_record(context)[1].split())
        for option in serve.params
        if option.get_help_record(context)
    }
    defaults = Config()
    assert records["pipeline__hop_seconds"].endswith("[default: 0.5]")
    assert records["publish__bind"].endswith(f"[default: {defaults.publish.bind}]")
    assert records["pipeline__model_dir"].endswith(f"[default: {defaults.pipeline.model_dir}]")
    assert records["pipeline__models"].endswith("[default: all]")
    assert records["publish__echo"].endswith("[default: no-echo]")
    assert records["publish__curve_clients"].endswith("[default: unset]")
    for flag in setting_flags(*DAEMON_SECTIONS):
        value = getattr(getattr(defaults, flag.section), flag.setting.name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            assert records[flag.parameter].endswith(f"[default: {value}]"), flag.parameter


def test_the_help_of_a_flag_is_its_fields_docstring():
    help_text = subprocess.run(
        [*emostream_command(), "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert (
        "--ring-seconds FLOAT Audio the capture ring buffer holds before the oldest unread "
        "samples are overwritten. [default: 10.0]"
    ) in " ".join(help_text.split())


@dataclass(frozen=True)
class ExampleConfig:
    """A settings class as a new subsystem would add it."""

    section = "example"

    gain_db: float = -3.0
    """Gain applied before the models (dB)."""
    names: tuple[str, ...] = ("a", "b")
    """Names, comma-separated on the command line."""
    spool: Path | None = None
    """Where to keep copies."""


def test_a_field_with_a_docstring_is_all_a_new_flag_needs():
    gain, names, spool = flags_of("example", ExampleConfig)

    @click.command()
    @gain.option()
    @names.option()
    @spool.option()
    def command(**values: object) -> None:
        """Takes the example settings."""

    context = click.Context(command)
    help_line = command.params[0].get_help_record(context)
    assert help_line == ("--gain-db FLOAT", "Gain applied before the models (dB).  [default: -3.0]")
    parsed = command.make_context("command", ["--names", "x, y", "--spool", "/var/spool"]).params
    assert parsed == {
        "example__gain_db": None,
        "example__names": ("x", "y"),
        "example__spool": Path("/var/spool"),
    }


@pytest.mark.parametrize("name", sorted(main.commands))
def test_no_two_options_of_a_command_share_a_spelling(name):
    spellings = [
        spelling
        for parameter in main.commands[name].params
        for spelling in [*parameter.opts, *parameter.secondary_opts]
    ]
    assert len(spellings) == len(set(spellings))


def test_serve_and_mqtt_take_the_device_name_from_the_same_field(tmp_path):
    assert effective("--device", "kitchen-pi", home=tmp_path)["publish"]["device"] == "kitchen-pi"
    for name in ("serve", "mqtt"):
        (device,) = [p for p in main.commands[name].params if "--device" in p.opts]
        assert device.name == "publish__device"


def test_flag_values_reach_their_fields_typed(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    received: list[Config] = []

    @click.command()
    @settings_options("source", "pipeline", "publish")
    def command(settings: EffectiveConfig) -> None:
        received.append(settings.config)

    arguments = ["--config", str(empty), "--models-dir", "m", "--block-size", "512"]
    command.main([*arguments, "--curve-secret", "k", "--curve-clients", "c"], standalone_mode=False)
    (config,) = received
    assert config.pipeline.model_dir == Path("m")
    assert config.publish.curve_secret_key == Path("k")
    assert config.publish.curve_clients == Path("c")
    assert config.source == dataclasses.replace(SourceConfig(), block_size=512)


def test_each_config_file_is_read_once(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    system = tmp_path / "system.toml"
    system.write_text("[pipeline]\nhop_seconds = 1.0\n")
    user = tmp_path / "emostream" / "emostream.toml"
    user.parent.mkdir()
    user.write_text("[publish]\necho = true\n")
    reads: list[Path] = []
    read_text = Path.read_text

    def counted(path: Path, *args, **kwargs) -> str:
        reads.append(path)
        return read_text(path, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", counted)
    settings = load_effective_config(None, {}, system=system)
    assert sorted(reads) == sorted([system, user])
    assert settings.config.pipeline.hop_seconds == 1.0 and settings.config.publish.echo


def test_reading_settings_loads_neither_numpy_nor_training():
    program = (
        "import sys\n"
        "from streamer.cli import main\n"
        "main(['config'], standalone_mode=False)\n"
        "loaded = {name.partition('.')[0] for name in sys.modules}\n"
        "print(sorted(loaded & {'numpy', 'scipy', 'training', 'zmq', 'tensorflow'}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_train_without_the_training_extra_says_which_package_is_missing():
    program = (
        "import sys\n"
        "sys.modules['keras'] = sys.modules['tensorflow'] = None\n"
        "from streamer.cli import main\n"
        "main(['train', '--epochs', '1'])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "Error: train needs keras from the [train] extra: pip install -e '.[train]'"
    ]


def test_the_configured_hop_reaches_offline_classification_without_being_restated(test_clips):
    from daemon_support import shipped_model_dir

    from streamer.audio import read_audio
    from streamer.models import load_models
    from streamer.pipeline import classify_clip

    models = load_models(shipped_model_dir(), ("cnn",))
    audio = np.concatenate([read_audio(clip, 16000) for clip in test_clips[:3]])
    windows = classify_clip(audio, models, config=PipelineConfig(models=("cnn",), hop_seconds=1.0))
    starts = [window.start for window in windows]
    assert len(starts) >= 3 and np.allclose(np.diff(starts), 1.0, atol=0.02), starts


# The options below are generated here, in the test, rather than taken from `main`, whose
# commands were built at import: so the generator itself runs under test.


def generated_command(*sections: str) -> tuple[click.Command, list[Config]]:
    """A command taking the generated flags of ``sections``, and the settings it received."""
    received: list[Config] = []

    @click.command()
    @settings_options(*sections)
    def command(settings: EffectiveConfig) -> None:
        """Takes settings."""
        received.append(settings.config)

    return command, received


def generated_config(tmp_path: Path, file_text: str, *arguments: str) -> Config:
    """The settings a generated daemon command receives from a --config file and flags."""
    settings = tmp_path / "settings.toml"
    settings.write_text(file_text)
    command, received = generated_command(*DAEMON_SECTIONS)
    command.main(["--config", str(settings), *arguments], standalone_mode=False)
    (config,) = received
    return config


@pytest.mark.parametrize(("section", "name"), BOOLEAN_SETTINGS)
def test_a_generated_boolean_flag_changes_the_files_value_only_when_given(tmp_path, section, name):
    dashed = name.replace("_", "-")
    from_file = f"[{section}]\n{name} = true\n"
    assert getattr(getattr(generated_config(tmp_path, from_file), section), name) is True
    turned_off = generated_config(tmp_path, from_file, f"--no-{dashed}")
    assert getattr(getattr(turned_off, section), name) is False
    assert getattr(getattr(generated_config(tmp_path, "", f"--{dashed}"), section), name) is True


def test_a_generated_flag_overrides_the_file_which_overrides_the_default(tmp_path):
    config = generated_config(
        tmp_path, "[pipeline]\nhop_seconds = 1.0\nsmoothing = 0.8\n", "--hop", "0.25"
    )
    assert config.pipeline.hop_seconds == 0.25
    assert config.pipeline.smoothing == 0.8
    assert config.pipeline.hysteresis == PipelineConfig().hysteresis


def test_an_invalid_value_in_the_file_is_one_line_naming_file_and_key(tmp_path):
    with pytest.raises(click.ClickException) as refused:
        generated_config(tmp_path, "[pipeline]\nhop_seconds = -1.0\n")
    message = refused.value.format_message()
    assert "settings.toml" in message and "'pipeline.hop_seconds' must be positive" in message
    assert "\n" not in message


def test_an_unknown_model_word_is_refused_naming_the_flag(tmp_path):
    with pytest.raises(click.BadParameter) as refused:
        generated_config(tmp_path, "", "--model", "rnn")
    assert "'--model'" in refused.value.format_message()


def test_generated_help_is_the_fields_docstring_and_its_default_as_typed():
    command, _ = generated_command("source", "pipeline", "publish", "adaptation")
    context = click.Context(command)
    options = {option.name: option for option in command.params}
    records = {
        name: " ".join(option.get_help_record(context)[1].split())
        for name, option in options.items()
    }
    assert records["source__ring_seconds"] == (
        "Audio the capture ring buffer holds before the oldest unread samples are overwritten. "
        "[default: 10.0]"
    )
    assert records["publish__echo"].startswith("Also print each published label")
    assert records["publish__echo"].endswith("[default: no-echo]")
    assert options["publish__echo"].secondary_opts == ["--no-echo"]
    assert records["adaptation__enabled"].endswith("[default: adapt]")
    assert records["pipeline__models"].endswith("[default: all]")
    assert records["publish__curve_clients"].endswith("[default: unset]")
    assert records["publish__device"].endswith('[default: ""]')


def test_a_fields_flag_metadata_gives_its_spellings_and_the_words_it_accepts():
    example = dataclasses.make_dataclass(
        "Example",
        [
            (
                "level",
                float,
                dataclasses.field(
                    default=0.5,
                    metadata=flag_metadata("--loudness", values={"half": 0.5, "full": 1.0}),
                ),
            ),
            (
                "colour",
                bool,
                dataclasses.field(default=True, metadata=flag_metadata("--colour", "--color")),
            ),
            ("tags", tuple[str, ...], dataclasses.field(default_factory=lambda: ("a", "b"))),
        ],
        frozen=True,
    )
    level, colour, tags = (
        SettingFlag("example", setting, setting.type, "Help.")
        for setting in dataclasses.fields(example)
    )

    @click.command()
    @level.option()
    @colour.option()
    @tags.option()
    def command(**values: object) -> None:
        """Takes the example settings."""

    context = click.Context(command)
    helps = [" ".join(option.get_help_record(context)[1].split()) for option in command.params]
    assert helps == ["Help. [default: half]", "Help. [default: colour]", "Help. [default: a,b]"]
    parsed = command.make_context("command", ["--loudness", "full", "--no-color"]).params
    assert parsed == {"example__level": 1.0, "example__colour": False, "example__tags": None}


def test_a_flag_value_already_converted_is_taken_as_it_is():
    models = NamedValue({"all": ("cnn", "lstm"), "cnn": ("cnn",)})
    assert models.convert(("cnn",), None, None) == ("cnn",)
    assert models.convert("all", None, None) == ("cnn", "lstm")
    with pytest.raises(click.BadParameter):
        models.convert(("rnn",), None, None)
    assert CommaSeparated().convert(("a", "b"), None, None) == ("a", "b")
    assert CommaSeparated().convert(" a, ,b ", None, None) == ("a", "b")


def test_one_setting_of_a_section_may_be_taken_alone():
    (device,) = setting_flags("publish.device")
    assert (device.section, device.setting.name, device.spellings) == (
        "publish",
        "device",
        ("--device",),
    )


@dataclass(frozen=True)
class Undocumented:
    """A settings class with a field its author forgot to document."""

    gain_db: float = 0.0


def test_a_setting_without_a_docstring_is_refused_naming_it():
    with pytest.raises(TypeError, match="Undocumented.gain_db: no docstring"):
        flags_of("undocumented", Undocumented)
