"""A real Mosquitto broker on a free loopback port, and mosquitto_sub as an independent client."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from daemon_support import free_port
from needs import unavailable


def mosquitto_programs() -> tuple[str, str, str]:
    """Paths of mosquitto, mosquitto_sub and mosquitto_passwd (Debian: apt install mosquitto
    mosquitto-clients); skip, or fail in CI, without them."""
    found = [shutil.which(name) for name in ("mosquitto", "mosquitto_sub", "mosquitto_passwd")]
    found[0] = found[0] or shutil.which("mosquitto", path="/usr/sbin:/sbin")
    if not all(found):
        unavailable("mosquitto is not installed (apt install mosquitto mosquitto-clients)")
    return found[0], found[1], found[2]  # type: ignore[return-value]


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate for 127.0.0.1 it signs (openssl): the CA file, the
    server's certificate and its key."""
    openssl = shutil.which("openssl")
    if openssl is None:
        unavailable("openssl is not installed (apt install openssl)")
    ca_key, ca, key, request, certificate = (
        directory / name for name in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem")
    )
    extensions = directory / "server.ext"
    extensions.write_text(
        "subjectAltName = IP:127.0.0.1\nkeyUsage = critical, digitalSignature, keyEncipherment\n"
        "extendedKeyUsage = serverAuth\nauthorityKeyIdentifier = keyid\n"
    )
    for command in (
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-keyout", ca_key,
         "-out", ca, "-subj", "/CN=emostream test CA",
         "-addext", "basicConstraints = critical, CA:TRUE",
         "-addext", "keyUsage = critical, keyCertSign, cRLSign"],
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", request,
         "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", request, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-days", "2", "-out", certificate, "-extfile", extensions],
    ):  # fmt: skip
        subprocess.run([openssl, *map(str, command)], check=True, capture_output=True)
    return ca, certificate, key


class Mosquitto:
    """One broker process with a generated configuration; ``restart`` keeps its port.

    Persistence is off, as in Debian's default: a restarted broker has forgotten every
    retained message, and only what its clients publish again comes back.
    """

    def __init__(
        self, directory: Path, users: dict[str, str] | None = None, tls: bool = False
    ) -> None:
        """``tls``: also a TLS listener (``tls_url``) with a certificate for 127.0.0.1 signed
        by a CA made here (``ca_file``); the plain listener stays for mosquitto_sub."""
        self.program, self.sub_program, passwd = mosquitto_programs()
        self.port = free_port()
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self.log = directory / "mosquitto.log"
        lines = ["per_listener_settings false", "persistence false", "user root"]
        lines.append(f"listener {self.port} 127.0.0.1")
        if tls:
            self.ca_file, certificate, key = make_certificates(directory)
            self.tls_port = free_port()
            self.tls_url = f"mqtts://127.0.0.1:{self.tls_port}"
            lines += [f"listener {self.tls_port} 127.0.0.1", f"cafile {self.ca_file}"]
            lines += [f"certfile {certificate}", f"keyfile {key}"]
        if users:
            password_file = directory / "mosquitto.passwd"
            for user, password in users.items():
                create = ["-c"] if not password_file.exists() else []
                subprocess.run(
                    [passwd, *create, "-b", str(password_file), user, password], check=True
                )
            lines += ["allow_anonymous false", f"password_file {password_file}"]
        else:
            lines.append("allow_anonymous true")
        self.config = directory / "mosquitto.conf"
        self.config.write_text("\n".join(lines) + "\n")
        self.process: subprocess.Popen | None = None
        self.subscriptions: list[Subscription] = []
        """Every mosquitto_sub started here, ended by ``close`` even when a test fails."""
        self.start()

    def start(self) -> None:
        """Starts the broker and waits until it accepts connections."""
        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                [self.program, "-c", str(self.config)], stdout=log, stderr=log
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                assert self.process.poll() is None, self.log.read_text()
                time.sleep(0.05)
        raise AssertionError(f"mosquitto did not listen on {self.port}: {self.log.read_text()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()

    def subscribe(self, *topics: str, credentials: tuple[str, str] | None = None) -> Subscription:
        """``mosquitto_sub -v`` on ``topics``, lines collected as they arrive."""
        login = ["-u", credentials[0], "-P", credentials[1]] if credentials else []
        filters = [argument for topic in topics for argument in ("-t", topic)]
        process = subprocess.Popen(
            [self.sub_program, "-h", "127.0.0.1", "-p", str(self.port), *login, *filters]
            + ["-F", "%r %t %p"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.subscriptions.append(Subscription(process))
        return self.subscriptions[-1]

    def close(self) -> None:
        """Stops the broker and every subscription to it."""
        for subscription in self.subscriptions:
            if subscription.process.poll() is None:
                subscription.close()
        self.stop()

    def retained(self, topic: str, timeout: float = 2.0) -> dict[str, str]:
        """Retained messages under ``topic`` as the broker holds them now (a fresh client)."""
        result = subprocess.run(
            [self.sub_program, "-h", "127.0.0.1", "-p", str(self.port), "-t", topic]
            + ["--retained-only", "-W", str(round(timeout)), "-F", "%t %p"],
            capture_output=True,
            text=True,
            timeout=timeout + 5,
        )
        pairs = (line.split(" ", 1) for line in result.stdout.splitlines() if line)
        return {pair[0]: pair[1] if len(pair) > 1 else "" for pair in pairs}


@dataclass
class Message:
    """One line of ``mosquitto_sub -F '%r %t %p'``."""

    retained: bool
    topic: str
    payload: str
    arrived_at: float = field(default_factory=time.monotonic)


class Subscription:
    """A running mosquitto_sub; ``messages`` fills from a reader thread."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.process = process
        self.messages: list[Message] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            retained, topic, payload = (line.rstrip("\n").split(" ", 2) + ["", ""])[:3]
            self.messages.append(Message(retained == "1", topic, payload))

    def on(self, topic: str) -> list[Message]:
        return [message for message in list(self.messages) if message.topic == topic]

    def wait_for(self, condition, timeout: float) -> bool:
        """Polls ``condition()`` until true or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(0.05)
        return condition()

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(5)
