"""Publishing results over ZeroMQ: the message schema, sequence numbers and status messages.

The only module that publishes over zmq. The protocol's names (schema version, topics, states)
come from ``streamer.wire``, which the subscriber side imports as well. Sends never block:
a subscriber that cannot keep up loses messages beyond the send high-water mark, and sees the
gap in ``seq``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

import zmq
from zmq.auth.thread import ThreadAuthenticator

from streamer.keys import KeyFileError, authorised_keys, load_key_pair
from streamer.pipeline import WindowResult
from streamer.wire import SCHEMA_VERSION, TOPIC_EMOTION, TOPIC_STATUS, is_loopback

_LOGGER = logging.getLogger(__name__)
# pyzmq's authenticator logs several debug lines per handshake; refused clients retry every few
# seconds, so only its warnings and errors are kept (AuthorisedClients reports refusals).
_ZAP_LOGGER = logging.getLogger(f"{__name__}.zap")
_ZAP_LOGGER.setLevel(logging.INFO)

# Long enough to hand queued messages to connected peers, short enough to exit within 1 s.
_LINGER_MS = 300


class PublishError(Exception):
    """The socket cannot be bound or secured; the message names the address or key file."""


def emotion_message(
    result: WindowResult, seq: int, published_at: float, device: str
) -> dict[str, Any]:
    """The ``emotion`` message for one window result of ``device``."""
    return {
        "schema": SCHEMA_VERSION,
        "type": TOPIC_EMOTION,
        "device": device,
        "seq": seq,
        "captured_at": result.captured_at,
        "published_at": published_at,
        "window": {"start": result.start, "end": result.end},
        "speech": result.speech,
        "label": result.label,
        "confidence": result.confidence,
        "models": {
            name: {"label": output.label, "probabilities": output.probabilities}
            for name, output in result.models.items()
        },
        "latency_ms": max(0.0, (published_at - result.captured_at) * 1000.0),
        "inference_ms": result.inference_ms,
        "level_db": result.level_db,
        "speech_probability": result.speech_probability,
        "speech_seconds": result.speech_seconds,
    }


def status_message(
    device: str,
    seq: int,
    published_at: float,
    uptime_s: float,
    source_name: str,
    source_state: str,
    overflows: int,
    dropped_windows: int,
    windows: int,
    inference_p50_ms: float,
    inference_p99_ms: float,
    models: list[str],
    adapted_seconds: float | None = None,
) -> dict[str, Any]:
    """The ``status`` message: health of the daemon of ``device`` since it started.

    ``adapted_seconds`` (speech the feature statistics have adapted on) is left out when
    adaptation is off."""
    return {
        "schema": SCHEMA_VERSION,
        "type": TOPIC_STATUS,
        "device": device,
        "seq": seq,
        "published_at": published_at,
        "uptime_s": uptime_s,
        "source": {"name": source_name, "state": source_state},
        "overflows": overflows,
        "dropped_windows": dropped_windows,
        "windows": windows,
        "inference_ms": {"p50": inference_p50_ms, "p99": inference_p99_ms},
        "models": models,
        **({} if adapted_seconds is None else {"adapted_seconds": adapted_seconds}),
    }


def format_echo(message: dict[str, Any]) -> str:
    """One readable line for an ``emotion`` message, as ``serve --echo`` prints it."""
    span = f"{message['window']['start']:7.2f}-{message['window']['end']:6.2f} s"
    if not message["speech"]:
        return f"{span}  (no speech)"
    label = message["label"] or "(unsure)"
    models = ", ".join(
        f"{name} {output['label']} {output['probabilities'][output['label']]:.2f}"
        for name, output in message["models"].items()
    )
    return f"{span}  {label:<10} {message['confidence']:.2f}  [{models}]"


def _ipc_in_use(path: str) -> bool:
    """Whether a process listens on the Unix socket ``path``.

    ZeroMQ silently takes over an ipc path another daemon is bound to, so ask first; a file
    nobody answers on is a leftover, which binding replaces.
    """
    if not os.path.exists(path):
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        return False
    finally:
        probe.close()
    return True


class AuthorisedClients:
    """The CURVE keys allowed to subscribe, asked by the authenticator at every handshake.

    A refused key is logged at debug level once per ``quiet_seconds``, with the number of
    attempts since: a refused client retries every few seconds, forever, and must not flood
    the log.
    """

    def __init__(self, keys: list[bytes], quiet_seconds: float = 60.0) -> None:
        """``keys`` are Z85 public keys, as ``streamer.keys`` reads them."""
        self._keys = frozenset(keys)
        self._quiet_seconds = quiet_seconds
        self._logged_at: dict[bytes, float] = {}
        self._unlogged: dict[bytes, int] = {}

    def callback(self, domain: str, client_key: bytes) -> bool:
        """Whether ``client_key`` (Z85) may subscribe; pyzmq's credentials-provider hook."""
        if client_key in self._keys:
            return True
        now = time.monotonic()
        logged_at = self._logged_at.get(client_key)
        if logged_at is not None and now - logged_at < self._quiet_seconds:
            self._unlogged[client_key] = self._unlogged.get(client_key, 0) + 1
            return False
        self._logged_at[client_key] = now
        repeats = self._unlogged.pop(client_key, 0)
        _LOGGER.debug(
            "refused a subscriber: CURVE key %s is not among the authorised clients%s",
            client_key.decode("ascii", "replace"),
            f" ({repeats} more attempts since the last report)" if repeats else "",
        )
        return False


class Publisher:
    """A bound PUB socket with per-topic sequence numbers, CURVE-encrypted when given keys."""

    def __init__(
        self,
        bind: str,
        send_hwm: int,
        curve_secret_key: Path | None = None,
        curve_clients: Path | None = None,
        insecure: bool = False,
        *,
        device: str,
    ) -> None:
        """Binds ``bind`` (tcp:// or ipc://); raises PublishError naming it if that fails.

        ``device`` names this machine in every message (``[publish] device``).

        With ``curve_secret_key`` (this server's ``.key_secret``) and ``curve_clients`` (a
        directory of authorised clients' ``.key`` files), traffic is encrypted and only those
        clients can subscribe. A bind reachable from the network is refused without them unless
        ``insecure``: anyone there could otherwise listen in.
        """
        self.bind = bind
        self.device = device
        if not is_loopback(bind) and curve_secret_key is None and not insecure:
            raise PublishError(
                f"{bind}: refusing to publish beyond loopback unencrypted; give CURVE keys "
                "(--curve-secret FILE --curve-clients DIR) or --insecure"
            )
        if (curve_secret_key is None) != (curve_clients is None):
            raise PublishError(f"{bind}: CURVE needs both a server secret key and a clients dir")
        self._context = zmq.Context()
        self._authenticator: ThreadAuthenticator | None = None
        # XPUB sends exactly as PUB does, and also tells when a subscriber has arrived.
        self._socket = self._context.socket(zmq.XPUB)
        self._socket.setsockopt(zmq.SNDHWM, send_hwm)
        self._socket.setsockopt(zmq.LINGER, _LINGER_MS)
        if curve_secret_key is not None and curve_clients is not None:
            self._secure(curve_secret_key, curve_clients)
        try:
            if bind.startswith("ipc://") and _ipc_in_use(bind[len("ipc://") :]):
                raise zmq.ZMQError(zmq.EADDRINUSE)
            self._socket.bind(bind)
        except zmq.ZMQError as error:
            self.close()
            if error.errno == zmq.EADDRINUSE:
                raise PublishError(f"{bind}: address already in use") from None
            raise PublishError(f"{bind}: cannot bind ({error.strerror})") from None
        self._seq = {TOPIC_EMOTION: 0, TOPIC_STATUS: 0}
        if curve_secret_key is None and not is_loopback(bind):
            _LOGGER.warning(
                "publishing on %s unencrypted to anyone who connects (--insecure)", bind
            )
        _LOGGER.info("publishing on %s%s", bind, " (CURVE)" if curve_secret_key else "")

    def _secure(self, secret_key: Path, clients: Path) -> None:
        """Makes the socket a CURVE server that admits only the keys found in ``clients``.

        The authenticator thread answers ZeroMQ's ZAP requests: a client whose public key is not
        in the directory (read once, at start) fails the handshake and is sent nothing.
        """
        try:
            public, secret = load_key_pair(secret_key)
            allowed = authorised_keys(clients)
        except KeyFileError as error:
            self.close()
            raise PublishError(str(error)) from None
        self._authenticator = ThreadAuthenticator(self._context, log=_ZAP_LOGGER)
        self._authenticator.start()
        self._authenticator.configure_curve_callback(
            domain="*", credentials_provider=AuthorisedClients(allowed)
        )
        self._socket.curve_secretkey = secret
        self._socket.curve_publickey = public
        self._socket.curve_server = True
        _LOGGER.info("CURVE: %d authorised client keys in %s", len(allowed), clients)

    def wait_for_subscriber(self, timeout: float) -> bool:
        """Waits up to ``timeout`` seconds for a first subscription; True if one arrived."""
        if not self._socket.poll(round(timeout * 1000)):
            return False
        # A subscriber's topics arrive together: take them all before publishing.
        while self._socket.poll(50):
            self._socket.recv()
        return True

    def _discard_subscriptions(self) -> None:
        """Reads subscription notices so that they cannot pile up over a long run."""
        while self._socket.poll(0):
            self._socket.recv()

    def _send(self, topic: str, message: dict[str, Any]) -> None:
        payload = json.dumps(message, separators=(",", ":")).encode("utf-8")
        try:
            self._socket.send_multipart([topic.encode("ascii"), payload], flags=zmq.NOBLOCK)
        except zmq.Again:
            # Not expected (at the high-water mark XPUB drops silently), and never worth a stall.
            _LOGGER.debug("%s message dropped: socket busy", topic)
        self._seq[topic] += 1

    def publish_emotion(self, result: WindowResult) -> dict[str, Any]:
        """Sends the ``emotion`` message for ``result``; returns it."""
        message = emotion_message(result, self._seq[TOPIC_EMOTION], time.time(), self.device)
        self._send(TOPIC_EMOTION, message)
        return message

    def publish_status(self, **fields: Any) -> dict[str, Any]:
        """Sends a ``status`` message built by ``status_message`` from ``fields``; returns it."""
        self._discard_subscriptions()
        message = status_message(self.device, self._seq[TOPIC_STATUS], time.time(), **fields)
        self._send(TOPIC_STATUS, message)
        return message

    def close(self) -> None:
        """Closes the socket, giving queued messages up to the linger time to leave."""
        self._socket.close()
        if self._authenticator is not None:
            self._authenticator.stop()
        self._context.term()
