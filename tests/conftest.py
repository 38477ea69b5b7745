"""Shared fixtures: where the corpora and the committed clips are; the user's sound server and
config files kept out of reach."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from daemon_support import RunningDaemon, serve, shipped_model_dir, subscribe
from needs import unavailable
from pulse_support import PrivatePulse, require_pulseaudio, sound_server_state

from streamer.sources import rescan_devices
from streamer.wire import connect_address

ROOT = Path(__file__).resolve().parent.parent
TEST_DATA = ROOT / "tests" / "data"

# The user's own sound server is never touched: PortAudio in this process, and every program a
# test starts, reach no server unless the test starts a private one (pulse_support.PrivatePulse)
# and points PULSE_SERVER at it. After the run the user's server must be as it was before.
USER_ENVIRONMENT = dict(os.environ)
os.environ["PULSE_SERVER"] = "unix:/nonexistent/emostream-tests-use-a-private-server"
os.environ["PIPEWIRE_REMOTE"] = "emostream-tests-use-a-private-server"
USER_SOUND_SERVER = sound_server_state(USER_ENVIRONMENT)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Fails the run if the user's sound server was restarted, started, stopped or changed."""
    after = sound_server_state(USER_ENVIRONMENT)
    if after != USER_SOUND_SERVER:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        assert reporter is not None
        reporter.ensure_newline()
        reporter.write_line(
            f"FAILED: the tests changed the user's sound server: {USER_SOUND_SERVER} -> {after}",
            red=True,
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True)
def private_state_directory(tmp_path_factory, monkeypatch) -> Path:
    """Adaptation state goes to a fresh folder, never the user's (daemons started by a test
    inherit the environment)."""
    state = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    return state


def corpus_root() -> Path:
    return Path(os.environ.get("EMOSTREAM_DATA", ROOT.parent / "shared" / "datasets"))


@pytest.fixture(scope="session", autouse=True)
def isolated_config_home(tmp_path_factory) -> Iterator[Path]:
    """An empty config folder as the user's (XDG_CONFIG_HOME), for the tests and every command
    they start, so ~/.config/emostream never changes a test."""
    home = tmp_path_factory.mktemp("config-home")
    previous = os.environ.get("XDG_CONFIG_HOME")
    os.environ["XDG_CONFIG_HOME"] = str(home)
    yield home
    if previous is None:
        del os.environ["XDG_CONFIG_HOME"]
    else:
        os.environ["XDG_CONFIG_HOME"] = previous


@pytest.fixture()
def running_daemon(tmp_path: Path) -> Iterator[Callable[..., RunningDaemon]]:
    """Starts ``emostream serve ARGS`` for a test, and stops every daemon it started at the end,
    whether the test passed or not.

    Each daemon reads tests/data/isolated.toml alone (unless ARGS give ``--config``), runs the
    shipped models (unless ``--models-dir``), binds a fresh ipc address (unless ``--bind``) and
    holds its source back until the subscriber, connected before it started, is there (unless
    ``--wait-subscriber``). Keywords: ``env`` (added to the environment), ``verbose`` (-v).
    """
    daemons: list[RunningDaemon] = []

    def start(*args: str, env: dict[str, str] | None = None, verbose: bool = False):
        number = len(daemons)
        given = set(args)
        extra: list[str] = []
        if "--bind" in given:
            address = args[args.index("--bind") + 1]
        else:
            address = f"ipc://{tmp_path / f'daemon-{number}.sock'}"
            extra += ["--bind", address]
        if "--models-dir" not in given:
            extra += ["--models-dir", str(shipped_model_dir())]
        if "--wait-subscriber" not in given:
            extra += ["--wait-subscriber", "10"]
        subscriber = subscribe(connect_address(address))
        log = tmp_path / f"daemon-{number}.log"
        process = serve(*args, *extra, env=env, verbose=verbose, output=log)
        daemons.append(RunningDaemon(process, address, subscriber, log))
        return daemons[-1]

    yield start
    for daemon in daemons:
        daemon.close()


@pytest.fixture(scope="session")
def datasets() -> Path:
    """The shared corpora; tests that need them skip (with the reason) on a fresh clone."""
    root = corpus_root()
    missing = [name for name in ("emodb", "ravdess", "tess") if not (root / name).is_dir()]
    if missing:
        reason = f"corpora {', '.join(missing)} not found under {root} (set EMOSTREAM_DATA)"
        unavailable(reason)
    return root


@pytest.fixture(scope="session")
def nonspeech() -> Path:
    """Everyday non-speech recordings (``../shared/nonspeech`` or ``$EMOSTREAM_NONSPEECH``);
    tests that need them skip (with the reason) on a fresh clone."""
    root = Path(os.environ.get("EMOSTREAM_NONSPEECH", ROOT.parent / "shared" / "nonspeech"))
    if not (root / "manifest.tsv").is_file():
        unavailable(f"non-speech recordings not found in {root} (set EMOSTREAM_NONSPEECH)")
    return root


@pytest.fixture(scope="session")
def test_clips() -> list[Path]:
    """Short real clips committed with the repository (see tests/data/README.md)."""
    return sorted(TEST_DATA.glob("*.wav"))


@pytest.fixture()
def private_sound_server(monkeypatch) -> Iterator[None]:
    """A private PulseAudio server behind the ALSA "pulse" device, never the user's own, with
    PortAudio rescanned so that its devices are listed (and again afterwards, so that no
    later test sees them).

    Without hardware, its null sink's monitor gives a real capture device.
    """
    require_pulseaudio()
    pulse = PrivatePulse()
    monkeypatch.setenv("PULSE_SERVER", pulse.env["PULSE_SERVER"])
    rescan_devices()
    yield
    pulse.stop()
    monkeypatch.undo()
    rescan_devices()
