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
from streamer.cli.options import flags_of, setting_flags, settings_options
from streamer.config import SECTIONS, Config, PipelineConfig, SourceConfig
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
