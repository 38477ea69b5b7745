"""sd_notify without systemd's library: datagrams to NOTIFY_SOCKET, nothing when it is unset."""

from __future__ import annotations

import os
import socket

from streamer.notify import Notifier


def test_ready_reaches_a_socket_in_the_abstract_namespace():
    name = f"emostream-test-{os.getpid()}"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind("\0" + name)
    listener.settimeout(2)
    notifier = Notifier({"NOTIFY_SOCKET": "@" + name})
    assert notifier.ready("publishing")
    lines = listener.recv(4096).decode().split("\n")
    assert lines == ["READY=1", "STATUS=publishing", f"MAINPID={os.getpid()}"]
    assert notifier.stopping() and listener.recv(4096) == b"STOPPING=1"
    notifier.close()
    listener.close()


def test_without_notify_socket_nothing_is_sent():
    notifier = Notifier({})
    assert not notifier.enabled
    assert not notifier.ready("x") and not notifier.watchdog()
    assert notifier.watchdog_seconds == 0


def test_the_watchdog_interval_applies_only_to_the_process_it_names():
    mine = Notifier({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": str(os.getpid())})
    other = Notifier({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "1"})
    assert mine.watchdog_seconds == 20.0 and other.watchdog_seconds == 0


def test_a_vanished_supervisor_socket_is_not_fatal(tmp_path):
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert notifier.enabled and not notifier.watchdog()
