"""The systemd units pass systemd's own checks, and the system unit is hardened (exposure <= 2)."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from daemon_support import emostream_command, free_port
from needs import unavailable

from streamer.config import load_config

ROOT = Path(__file__).resolve().parent.parent
SYSTEM_UNIT = ROOT / "systemd" / "emostream.service"
USER_UNIT = ROOT / "systemd" / "emostream-user.service"
MQTT_UNIT = ROOT / "systemd" / "emostream-mqtt.service"
EXAMPLE_CONFIG = ROOT / "systemd" / "emostream.toml"
MAX_EXPOSURE = 2.0


@pytest.fixture(scope="module")
def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        unavailable("systemd-analyze is not installed (apt install systemd)")
    return path


def read_unit(path: Path) -> configparser.ConfigParser:
    """The unit as sections of keys; a repeated key keeps its last value."""
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment, method-assign]  # systemd keys: case-sensitive
    unit.read_string(path.read_text())
    return unit


def installed_copy(unit: Path, directory: Path, install_path: str) -> Path:
    """A copy of ``unit`` whose ExecStart runs the emostream installed here.

    ``verify`` refuses a unit whose program does not exist, and the units name the install
    location README.md describes; only that path is replaced.
    """
    executable = emostream_command()[0]
    text = unit.read_text()
    assert install_path in text
    copy = directory / unit.name
    copy.write_text(text.replace(install_path, executable))
    return copy


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=60
    )


def test_system_unit_passes_systemd_analyze_verify(systemd_analyze, tmp_path):
    unit = installed_copy(SYSTEM_UNIT, tmp_path, "/opt/emostream/venv/bin/emostream")
    result = run(systemd_analyze, "verify", str(unit))
    assert result.returncode == 0, result.stderr
    # verify reports unknown keys and bad values as warnings with exit status 0: none allowed.
    assert result.stderr.strip() == ""


def test_mqtt_unit_passes_systemd_analyze_verify(systemd_analyze, tmp_path):
    unit = installed_copy(MQTT_UNIT, tmp_path, "/opt/emostream/venv/bin/emostream")
    result = run(systemd_analyze, "verify", str(unit))
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""


def test_mqtt_unit_exposure_is_at_most_two(systemd_analyze):
    result = run(systemd_analyze, "security", "--offline=true", str(MQTT_UNIT))
    assert result.returncode == 0, result.stderr
    match = re.search(
        r"Overall exposure level for emostream-mqtt\.service: (\d+\.\d+)", result.stdout
    )
    assert match, result.stdout[-500:]
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout


def test_the_mqtt_bridge_starts_after_the_daemon_and_is_hardened_like_it():
    unit = read_unit(MQTT_UNIT)
    assert "emostream.service" in unit["Unit"]["After"].split()
    assert "Requires" not in unit["Unit"]  # a daemon restart must not stop the bridge
    service, daemon = unit["Service"], read_unit(SYSTEM_UNIT)["Service"]
    assert service["ExecStart"].endswith("emostream mqtt --config /etc/emostream/emostream.toml")
    assert service["Restart"] == "on-failure"
    shared = [
        "User", "ProtectSystem", "ProtectHome", "PrivateTmp", "NoNewPrivileges",
        "CapabilityBoundingSet", "RestrictAddressFamilies", "SystemCallFilter", "UMask",
        "ProtectKernelTunables", "ProtectProc", "PrivateUsers", "RestrictNamespaces",
    ]  # fmt: skip
    assert {key: service.get(key) for key in shared} == {key: daemon.get(key) for key in shared}
    assert service["PrivateDevices"] == "yes" and "SupplementaryGroups" not in service


def test_user_unit_passes_systemd_analyze_verify(systemd_analyze, tmp_path):
    unit = installed_copy(USER_UNIT, tmp_path, "%h/.local/share/emostream/venv/bin/emostream")
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    result = run(
        systemd_analyze, "--user", "verify", str(unit), env={"XDG_RUNTIME_DIR": str(runtime)}
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""


def test_system_unit_exposure_is_at_most_two(systemd_analyze):
    result = run(systemd_analyze, "security", "--offline=true", str(SYSTEM_UNIT))
    assert result.returncode == 0, result.stderr
    match = re.search(r"Overall exposure level for emostream\.service: (\d+\.\d+)", result.stdout)
    assert match, result.stdout[-500:]
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout


def test_both_units_are_supervised_notify_services():
    for path in (SYSTEM_UNIT, USER_UNIT):
        service = read_unit(path)["Service"]
        assert service["Type"] == "notify", path
        assert service["Restart"] == "on-failure", path
        assert int(service["WatchdogSec"].removesuffix("s")) >= 10, path
        assert "emostream serve" in service["ExecStart"], path
        assert service["NoNewPrivileges"] == "yes", path
        assert service["MemoryMax"], path


def test_system_unit_runs_as_a_dedicated_user_in_the_audio_group_on_a_read_only_system():
    service = read_unit(SYSTEM_UNIT)["Service"]
    assert service["User"] == "emostream" and service["Group"] == "emostream"
    assert service["SupplementaryGroups"] == "audio"
    assert service["ProtectSystem"] == "strict"
    assert service["PrivateTmp"] == "yes"
    assert service["RestrictAddressFamilies"] == "AF_UNIX AF_INET AF_INET6 AF_NETLINK"
    assert service["DeviceAllow"] == "char-alsa rw"
    assert "--config /etc/emostream/emostream.toml" in service["ExecStart"]


def test_the_user_unit_searches_the_config_files_as_a_user_would():
    service = read_unit(USER_UNIT)["Service"]
    assert service["ExecStart"].endswith("emostream serve")  # no --config: both files are read
    assert read_unit(USER_UNIT)["Install"]["WantedBy"] == "default.target"


def test_the_example_config_is_valid_and_matches_the_system_install():
    config = load_config(EXAMPLE_CONFIG, {})
    assert config.pipeline.model_dir == Path("/opt/emostream/models")
    assert config.publish.bind == "tcp://127.0.0.1:5556"
    assert config.source.source == "mic"


# Reproduces, without systemd, the unit's restrictions that can break a Python daemon at run
# time: a read-only file system, a private /tmp, a /proc showing only the service's processes
# (and only its PIDs with ProcSubset=pid), no_new_privs and W^X memory (prctl PR_SET_MDWE,
# the kernel's own form of MemoryDenyWriteExecute).
# With SANDBOX_SYSCALLS set, only those syscalls are allowed (libseccomp), as SystemCallFilter=,
# and SANDBOX_FAMILIES limits socket() to those address families, as RestrictAddressFamilies=.
# Not reproduced: the user, ProtectHome (this Python may live under /root).
# Arguments: flags, then the command to exec.
SANDBOX = r"""
import ctypes, os, subprocess, sys

flags, command = sys.argv[1].split(","), sys.argv[2:]
libc = ctypes.CDLL(None, use_errno=True)

def mount(*args):
    subprocess.run(["mount", *args], check=True)

def prctl(option, value):
    if libc.prctl(option, value, 0, 0, 0) != 0:
        sys.exit(f"prctl {option}: {os.strerror(ctypes.get_errno())}")

mount("--make-rprivate", "/")
proc_options = ["hidepid=invisible"] + (["subset=pid"] if "procsubset" in flags else [])
mount("-t", "proc", "-o", ",".join(proc_options), "proc", "/proc")
if "strict" in flags:
    points = [line.split()[4] for line in open("/proc/self/mountinfo")]
    for point in sorted(set(points), key=len):
        if not point.startswith(("/dev", "/proc", "/sys")):
            mount("-o", "remount,bind,ro", point)
if "privatetmp" in flags:
    # An installed daemon lives in /opt; a checkout or a venv under /tmp (as CI or a user may
    # put them) is carried into the private /tmp, read-only, so that the daemon still finds its
    # interpreter, code, models and clips. SANDBOX_KEEP lists them (os.pathsep between).
    keep = os.environ.pop("SANDBOX_KEEP", "").split(os.pathsep)
    kept = {p for p in keep if p.startswith("/tmp/")}
    kept = {p for p in kept if not any(p.startswith(q + "/") for q in kept)}
    if kept:
        mount("--bind", "/tmp", "/mnt")
    mount("-t", "tmpfs", "tmpfs", "/tmp")
    for path in sorted(kept):
        os.makedirs(path)
        mount("--bind", "/mnt" + path.removeprefix("/tmp"), path)
        mount("-o", "remount,bind,ro", path)
    if kept:
        subprocess.run(["umount", "--lazy", "/mnt"], check=True)  # the real /tmp: hidden again
if "nnp" in flags:
    prctl(38, 1)  # PR_SET_NO_NEW_PRIVS
if "mdwe" in flags:
    prctl(65, 1)  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
allowed = os.environ.pop("SANDBOX_SYSCALLS", "")
families = os.environ.pop("SANDBOX_FAMILIES", "")
if allowed:
    class Comparison(ctypes.Structure):
        _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                    ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]

    seccomp = ctypes.CDLL("libseccomp.so.2")
    seccomp.seccomp_init.restype = ctypes.c_void_p
    seccomp.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    ALLOW = ctypes.c_uint32(0x7FFF0000)
    # Everything not allowed fails with EPERM, as SystemCallErrorNumber=EPERM makes it.
    context = ctypes.c_void_p(seccomp.seccomp_init(ctypes.c_uint32(0x00050000 | 1)))
    for name in allowed.split(","):
        number = seccomp.seccomp_syscall_resolve_name(name.encode())
        if number < 0:  # not a syscall of this architecture
            continue
        if name == "socket" and families:
            # RestrictAddressFamilies=: socket() only for the listed families (argument 0).
            for family in families.split(","):
                equal = Comparison(0, 4, int(family), 0)  # SCMP_CMP_EQ
                seccomp.seccomp_rule_add_array(context, ALLOW, number, 1, ctypes.byref(equal))
        else:
            seccomp.seccomp_rule_add(context, ALLOW, number, 0)
    if seccomp.seccomp_load(context) != 0:
        sys.exit("seccomp_load failed")
os.execvp(command[0], command)
"""


def sandbox_flags(service: configparser.SectionProxy) -> list[str]:
    """The SANDBOX flags that reproduce what ``service`` sets."""
    wanted = {
        "strict": service.get("ProtectSystem") == "strict",
        "privatetmp": service.get("PrivateTmp") == "yes",
        "procsubset": service.get("ProcSubset") == "pid",
        "nnp": service.get("NoNewPrivileges") == "yes",
        "mdwe": service.get("MemoryDenyWriteExecute") == "yes",
    }
    return [flag for flag, on in wanted.items() if on]


def syscall_set(systemd_analyze: str, names: list[str]) -> set[str]:
    """System call names of ``names`` (``@groups`` expanded by systemd-analyze syscall-filter)."""
    calls: set[str] = set()
    for name in names:
        if not name.startswith("@"):
            calls.add(name)
            continue
        listing = run(systemd_analyze, "syscall-filter", name).stdout.splitlines()[1:]
        entries = [line.strip() for line in listing if line.strip()]
        calls |= syscall_set(systemd_analyze, [e for e in entries if not e.startswith("#")])
    return calls


def allowed_syscalls(systemd_analyze: str, unit: Path) -> set[str]:
    """The calls the unit's SystemCallFilter= lines allow: the allow list minus the ~deny list."""
    allowed: set[str] = set()
    denied: set[str] = set()
    for line in unit.read_text().splitlines():
        if line.startswith("SystemCallFilter="):
            value = line.partition("=")[2]
            if value.startswith("~"):
                denied |= syscall_set(systemd_analyze, value[1:].split())
            else:
                allowed |= syscall_set(systemd_analyze, value.split())
    return allowed - denied


def kept_paths(*extra: Path) -> list[str]:
    """What the sandboxed process must still see if it lies under /tmp: the checkout, this
    interpreter and its venv, every import path (a venv outside the checkout, an editable
    install's source), and ``extra``."""
    paths = [ROOT, Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).parent]
    paths += [Path(sys.executable).resolve().parent, *map(Path, filter(None, sys.path)), *extra]
    return sorted({os.path.realpath(path) for path in paths if path.exists()})


def require_mount_namespaces() -> None:
    """Skips (fails in CI, which runs as root) where unshare cannot make a mount namespace."""
    if shutil.which("unshare") is None or run("unshare", "--mount", "true").returncode != 0:
        unavailable("unshare cannot create a mount namespace here (needs root)")


def test_the_daemon_runs_under_the_system_units_restrictions(systemd_analyze, test_clips):
    require_mount_namespaces()
    from daemon_support import ISOLATED_CONFIG, receive, shipped_model_dir, subscribe

    model_dir = shipped_model_dir()
    service = read_unit(SYSTEM_UNIT)["Service"]
    flags = sandbox_flags(service)
    name, _, value = service.get("Environment", "").partition("=")
    environment = {name: value.replace("%C", "/var/cache")} if name else {}
    syscalls = allowed_syscalls(systemd_analyze, SYSTEM_UNIT)
    assert "read" in syscalls and "mount" not in syscalls and "reboot" not in syscalls
    environment["SANDBOX_SYSCALLS"] = ",".join(sorted(syscalls))
    families = [getattr(socket, name) for name in service["RestrictAddressFamilies"].split()]
    environment["SANDBOX_FAMILIES"] = ",".join(str(int(family)) for family in families)
    environment["SANDBOX_KEEP"] = os.pathsep.join(kept_paths())
    assert {"strict", "privatetmp", "nnp"} <= set(flags)
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    subscriber = subscribe(address)
    daemon = subprocess.Popen(
        ["unshare", "--mount", "--pid", "--fork", sys.executable, "-c", SANDBOX, ",".join(flags)]
        + [*emostream_command(), "serve", "--config", str(ISOLATED_CONFIG), "--fast"]
        + ["--bind", address, "--wait-subscriber", "10"]
        + ["--source", str(test_clips[1]), "--models-dir", str(model_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **environment},
    )
    messages: list[tuple[str, dict]] = []
    deadline = time.monotonic() + 60
    try:
        # Poll in short slices so a daemon that dies in the sandbox fails the test at once.
        while time.monotonic() < deadline and not (messages and ended(*messages[-1])):
            messages += receive(subscriber, ended, timeout=0.5)
            if daemon.poll() is not None:
                messages += receive(subscriber, ended, timeout=0.5)
                break
        assert daemon.wait(10) == 0, daemon.stderr.read()[-2000:]
    finally:
        subscriber.close()
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    emotions = [message for topic, message in messages if topic == "emotion"]
    assert emotions and emotions[0]["speech"], messages


def test_the_mqtt_bridge_runs_under_its_units_restrictions(systemd_analyze, tmp_path):
    require_mount_namespaces()
    from broker_support import Mosquitto

    service = read_unit(MQTT_UNIT)["Service"]
    flags = sandbox_flags(service)
    assert {"strict", "privatetmp", "procsubset", "nnp", "mdwe"} <= set(flags)
    families = [getattr(socket, name) for name in service["RestrictAddressFamilies"].split()]
    environment = {
        "SANDBOX_SYSCALLS": ",".join(sorted(allowed_syscalls(systemd_analyze, MQTT_UNIT))),
        "SANDBOX_FAMILIES": ",".join(str(int(family)) for family in families),
        "SANDBOX_KEEP": os.pathsep.join(kept_paths(tmp_path)),
    }
    broker = Mosquitto(tmp_path)
    config = tmp_path / "emostream.toml"
    config.write_text(f'[publish]\ndevice = "sandboxed"\n[mqtt]\nbroker = "{broker.url}"\n')
    bridge = subprocess.Popen(
        ["unshare", "--mount", "--pid", "--fork", sys.executable, "-c", SANDBOX, ",".join(flags)]
        + [*emostream_command(), "mqtt", "--config", str(config)]
        + [f"ipc://{tmp_path}/no-daemon.sock"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **environment},
    )
    try:
        deadline = time.monotonic() + 30
        retained: dict[str, str] = {}
        while time.monotonic() < deadline and bridge.poll() is None:
            retained = broker.retained("#", timeout=1)
            if "emostream/sandboxed/availability" in retained:
                break
        assert retained.get("emostream/sandboxed/availability") == "offline", bridge.stderr.read()
        assert len([topic for topic in retained if topic.startswith("homeassistant/")]) == 3
        # unshare --fork does not pass signals on: SIGTERM goes to the bridge itself.
        children = Path(f"/proc/{bridge.pid}/task/{bridge.pid}/children").read_text().split()
        os.kill(int(children[0]), signal.SIGTERM)
        assert bridge.wait(10) == 0, bridge.stderr.read()[-2000:]
    finally:
        if bridge.poll() is None:
            bridge.kill()
        broker.close()


def test_the_sandbox_really_refuses_what_the_unit_would(tmp_path):
    """The emulation is not a no-op: each restriction is observed from inside."""
    require_mount_namespaces()
    probe = (
        "import mmap, os, sys\n"
        "try:\n"
        "    open('/usr/emostream-sandbox-probe', 'w')\n"
        "    sys.exit('/usr is writable')\n"
        "except OSError:\n"
        "    pass\n"
        "assert not os.path.exists('/proc/cpuinfo'), 'ProcSubset=pid not applied'\n"
        "assert not os.path.exists(sys.argv[1]), 'PrivateTmp not applied'\n"
        "assert open(sys.argv[2]).read() == 'kept', 'a kept path vanished'\n"
        "try:\n"
        "    open(sys.argv[2], 'w')\n"
        "    sys.exit('a kept path is writable')\n"
        "except OSError:\n"
        "    pass\n"
        "try:\n"
        "    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)\n"
        "    sys.exit('W^X memory allowed')\n"
        "except PermissionError:\n"
        "    pass\n"
    )
    marker = tmp_path / "marker"
    marker.write_text("outside")
    kept = tmp_path / "kept" / "file"
    kept.parent.mkdir()
    kept.write_text("kept")
    flags = "strict,privatetmp,procsubset,nnp,mdwe"
    result = run(
        "unshare", "--mount", "--pid", "--fork", sys.executable, "-c", SANDBOX, flags,
        sys.executable, "-c", probe, str(marker), str(kept),
        env={"SANDBOX_KEEP": os.pathsep.join(kept_paths(kept.parent))},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def ended(topic: str, message: dict) -> bool:
    return topic == "status" and message["source"]["state"] == "ended"
