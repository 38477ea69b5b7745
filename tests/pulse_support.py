"""A private PulseAudio server whose only device is a virtual microphone, for one test module.

Its own runtime directory and socket (``PULSE_SERVER``), and none of the default modules: no
``module-always-sink`` to rescue a stream onto a dummy device, so unloading the null sink takes
the microphone away as unplugging the only USB microphone would. Being private, it can be
broken without disturbing anything else that uses the user's sound server. Processes that
should hear it get ``env``; the ALSA ``pulse`` device follows ``PULSE_SERVER``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from needs import unavailable

SINK = "vmic"


def require_pulseaudio() -> None:
    """Skips (fails in CI, under EMOSTREAM_REQUIRE_DATA) without the PulseAudio tools."""
    missing = [
        tool for tool in ("pulseaudio", "pactl", "paplay", "pacat") if not shutil.which(tool)
    ]
    if missing:
        unavailable(f"PulseAudio tools not installed: {', '.join(missing)}")


def has_sound_cards() -> bool:
    """Whether ALSA sees hardware, whose inputs PortAudio lists with or without PulseAudio."""
    cards = Path("/proc/asound/cards")
    return cards.is_file() and "no soundcards" not in cards.read_text()


class PrivatePulse:
    """A PulseAudio daemon with a null sink ``vmic`` whose monitor is the default source."""

    def __init__(self) -> None:
        # Short path: a Unix socket path must fit in 108 bytes.
        self.directory = Path(tempfile.mkdtemp(prefix="emostream-pa-"))
        self.socket = self.directory / "native"
        self.env = {
            **os.environ,
            "PULSE_SERVER": f"unix:{self.socket}",
            "PULSE_RUNTIME_PATH": str(self.directory),
            "PULSE_STATE_PATH": str(self.directory),
        }
        self._server: subprocess.Popen | None = None
        self._keep_alive: subprocess.Popen | None = None
        self.start_server()

    def start_server(self) -> None:
        """Starts the server on this socket with the virtual microphone plugged in."""
        self._server = subprocess.Popen(
            [
                "pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1",
                "--use-pid-file=no", "--disable-shm=yes",
                f"--load=module-native-protocol-unix socket={self.socket} auth-anonymous=1",
                f"--log-target=file:{self.directory / 'pulseaudio.log'}",
            ],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 15
        while self.pactl("info").returncode != 0:
            assert self._server.poll() is None, "pulseaudio exited at start"
            assert time.monotonic() < deadline, "pulseaudio did not start"
            time.sleep(0.1)
        self.plug_in()

    def pactl(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["pactl", *args], capture_output=True, text=True, timeout=10, env=self.env
        )

    def plug_in(self) -> None:
        """Adds the virtual microphone, makes it the default source and keeps it delivering."""
        loaded = self.pactl("load-module", "module-null-sink", f"sink_name={SINK}")
        assert loaded.returncode == 0, loaded.stderr
        assert self.pactl("set-default-source", f"{SINK}.monitor").returncode == 0
        # A null sink's monitor delivers only while something plays: play silence throughout,
        # so that, like a real microphone, the source delivers continuously.
        self._keep_alive = subprocess.Popen(
            ["pacat", "--playback", "-d", SINK, "--raw", "--latency-msec=20", "/dev/zero"],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def unplug(self) -> None:
        """Removes the virtual microphone: the only source vanishes, streams on it are killed."""
        modules = self.pactl("list", "short", "modules").stdout.splitlines()
        index = next(line.split()[0] for line in modules if f"sink_name={SINK}" in line)
        assert self.pactl("unload-module", index).returncode == 0
        if self._keep_alive is not None:
            self._keep_alive.wait(5)  # killed with its sink
            self._keep_alive = None
        assert f"{SINK}.monitor" not in self.pactl("list", "short", "sources").stdout

    def play(self, path: Path) -> subprocess.Popen:
        """Starts playing ``path`` into the microphone; returns the player."""
        return subprocess.Popen(
            ["paplay", "-d", SINK, str(path)],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop_server(self) -> None:
        """Stops the server, as a crashed or not yet started sound server: no device at all."""
        for process in (self._keep_alive, self._server):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(5)
        self._keep_alive = self._server = None

    def stop(self) -> None:
        self.stop_server()
        shutil.rmtree(self.directory, ignore_errors=True)


def sound_server_state(env: dict[str, str]) -> dict[str, str] | None:
    """What identifies the sound server ``env`` reaches, its default source and any virtual
    microphone loaded in it; None if no server answers.

    Asked with autospawn off, so that asking never starts a server. The socket's inode and time
    change when the server is restarted.
    """
    if shutil.which("pactl") is None:
        return None
    with tempfile.TemporaryDirectory(prefix="emostream-pa-ask-") as directory:
        client_config = Path(directory) / "client.conf"
        client_config.write_text("autospawn = no\n")
        asking = {**env, "PULSE_CLIENTCONFIG": str(client_config)}

        def pactl(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run(
                ["pactl", *args], capture_output=True, text=True, timeout=10, env=asking
            )

        info = pactl("info")
        if info.returncode != 0:
            return None
        modules = pactl("list", "short", "modules").stdout
    fields = dict(line.split(": ", 1) for line in info.stdout.splitlines() if ": " in line)
    state = {key: fields.get(key, "") for key in ("Server String", "Default Source")}
    state["virtual microphones"] = "".join(
        line for line in modules.splitlines(keepends=True) if f"sink_name={SINK}" in line
    )
    socket = Path(state["Server String"].removeprefix("unix:"))
    if socket.is_absolute() and socket.exists():
        status = socket.stat()
        state["socket"] = f"inode {status.st_ino}, changed {status.st_ctime_ns}"
    return state
