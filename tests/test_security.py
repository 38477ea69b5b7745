"""Who may listen: loopback by default, CURVE encryption and client keys beyond it.

Every socket here is real and every connection goes to 127.0.0.1: a daemon bound to the
wildcard address is only ever reached through loopback.
"""

from __future__ import annotations

import logging
import stat
import subprocess
import time
from pathlib import Path

import pytest
import zmq
from daemon_support import ISOLATED_CONFIG, ROOT, emostream_command, free_port
from test_monitor import monitor_command, tmux  # noqa: F401 (the tmux fixture)

from streamer.client import ClientError, Emotion, Quiet, Status, Subscriber
from streamer.config import Config
from streamer.keys import KeyFileError, generate_key_pair, load_key_pair, load_public_key
from streamer.publish import AuthorisedClients, Publisher, PublishError
from streamer.wire import is_loopback

CLIP = ROOT / "tests" / "data" / "03a01Wa.wav"


def one_error_line(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if " INFO " not in line and "INFO:" not in line]


@pytest.fixture()
def keys(tmp_path) -> dict[str, Path]:
    """A server key pair, an authorised client (alice) and one that is not (mallory)."""
    clients = tmp_path / "clients"
    server_public, server_secret = generate_key_pair(tmp_path / "server", "server")
    alice_public, alice_secret = generate_key_pair(tmp_path / "alice", "alice")
    _, mallory_secret = generate_key_pair(tmp_path / "mallory", "mallory")
    clients.mkdir()
    (clients / "alice.key").write_bytes(alice_public.read_bytes())
    return {
        "server_public": server_public,
        "server_secret": server_secret,
        "clients": clients,
        "alice_secret": alice_secret,
        "mallory_secret": mallory_secret,
    }


def test_keygen_writes_a_shareable_public_key_and_an_owner_only_secret_key(tmp_path):
    keygen = [*emostream_command(), "keygen", str(tmp_path / "keys"), "--name", "kitchen"]
    made = subprocess.run(keygen, capture_output=True, text=True, timeout=30)
    assert made.returncode == 0, made.stderr
    public, secret = tmp_path / "keys" / "kitchen.key", tmp_path / "keys" / "kitchen.key_secret"
    assert str(public) in made.stdout and str(secret) in made.stdout
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
    assert "secret-key" not in public.read_text()
    key_public, key_secret = load_key_pair(secret)
    assert load_public_key(public) == key_public and len(key_secret) == 40
    assert zmq.curve_public(key_secret) == key_public
    # Nothing else is left behind (the private directory the pair was made in is gone).
    assert {p.name for p in (tmp_path / "keys").iterdir()} == {"kitchen.key", "kitchen.key_secret"}
    again = subprocess.run(keygen, capture_output=True, text=True, timeout=30)
    assert again.returncode == 1
    assert one_error_line(again.stderr) == [
        f"Error: {public}: already exists (delete it to make a new key pair)"
    ]
    assert load_key_pair(secret) == (key_public, key_secret), "the key pair was overwritten"


def test_malformed_key_files_are_named(tmp_path):
    garbage = tmp_path / "garbage.key_secret"
    garbage.write_text('curve\n    public-key = "short"\n    secret-key = "short"\n')
    with pytest.raises(KeyFileError, match=f"^{garbage}: holds a malformed CURVE key"):
        load_key_pair(garbage)
    with pytest.raises(KeyFileError, match="missing.key: key file not found"):
        load_public_key(tmp_path / "missing.key")
    binary = tmp_path / "binary.key"
    binary.write_bytes(bytes(range(256)))
    with pytest.raises(KeyFileError, match=f"^{binary}: "):
        load_public_key(binary)


@pytest.mark.parametrize(
    ("bind", "loopback"),
    [
        ("tcp://127.0.0.1:5556", True),
        ("tcp://127.3.2.1:5556", True),
        ("tcp://localhost:5556", True),
        ("tcp://[::1]:5556", True),
        ("tcp://lo:5556", True),
        ("ipc:///run/emostream/emostream.sock", True),
        ("tcp://*:5556", False),
        ("tcp://0.0.0.0:5556", False),
        ("tcp://[::]:5556", False),
        ("tcp://192.168.1.20:5556", False),
        ("tcp://eth0:5556", False),
    ],
)
def test_only_loopback_and_ipc_addresses_count_as_local(bind, loopback):
    assert is_loopback(bind) is loopback


def test_the_default_bind_is_loopback():
    assert is_loopback(Config().publish.bind)
    assert Config().publish.curve_secret_key is None and not Config().publish.insecure


@pytest.mark.parametrize("host", ["0.0.0.0", "*"])
def test_a_non_loopback_bind_without_keys_is_refused_in_one_line_naming_it(host, tmp_path):
    address = f"tcp://{host}:{free_port()}"
    refused = subprocess.run(
        [*emostream_command(), "serve", "--config", str(ISOLATED_CONFIG), "--source", str(CLIP)]
        + ["--bind", address],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert refused.returncode == 1
    lines = one_error_line(refused.stderr)
    assert len(lines) == 1 and lines[0].startswith(f"Error: {address}: refusing"), refused.stderr
    assert "--insecure" in lines[0] and "Traceback" not in refused.stderr


def test_insecure_allows_a_plain_non_loopback_bind_and_says_so(running_daemon):
    port = free_port()
    subscriber = Subscriber(f"tcp://127.0.0.1:{port}", quiet_after=None)
    # Looping, the daemon is still serving when stopped: a single 2 s clip may end first on a
    # slow machine, and a signal that lands while the interpreter exits kills it (-15).
    daemon = running_daemon(
        "--source", str(CLIP), "--loop", "--bind", f"tcp://0.0.0.0:{port}", "--insecure"
    )
    try:
        event = subscriber.receive(timeout=20)
        assert isinstance(event, Status | Emotion)
    finally:
        subscriber.close()
    assert daemon.stop(timeout=5) == 0
    assert "unencrypted to anyone who connects (--insecure)" in daemon.errors()


def test_a_publisher_refuses_keys_it_cannot_use(keys, tmp_path):
    address = f"tcp://127.0.0.1:{free_port()}"
    with pytest.raises(PublishError, match=f"^{keys['server_public']}: holds no secret key"):
        Publisher(address, 10, keys["server_public"], keys["clients"], device="bench-1")
    with pytest.raises(PublishError, match="nowhere: authorised-clients directory not found"):
        Publisher(address, 10, keys["server_secret"], tmp_path / "nowhere", device="bench-1")
    with pytest.raises(PublishError, match="both a server secret key and a clients dir"):
        Publisher("tcp://0.0.0.0:1", 10, keys["server_secret"], None, device="bench-1")


def test_only_an_authorised_client_receives_and_everyone_else_receives_nothing(
    keys, running_daemon
):
    """CURVE on a real daemon: alice's key is in the clients directory, mallory's is not, a
    plain subscriber has no key, and a fourth client expects another server's key."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    alice = Subscriber(
        address,
        quiet_after=None,
        curve_secret_key=keys["alice_secret"],
        curve_server_key=keys["server_public"],
    )
    mallory = Subscriber(
        address,
        quiet_after=None,
        curve_secret_key=keys["mallory_secret"],
        curve_server_key=keys["server_public"],
    )
    impostor_server = generate_key_pair(keys["clients"].parent / "other", "other")[0]
    misled = Subscriber(
        address,
        quiet_after=None,
        curve_secret_key=keys["alice_secret"],
        curve_server_key=impostor_server,
    )
    plain = zmq.Context.instance().socket(zmq.SUB)
    plain.setsockopt(zmq.LINGER, 0)
    plain.setsockopt(zmq.SUBSCRIBE, b"")
    plain.connect(address)
    daemon = running_daemon(
        "--source", str(CLIP), "--loop", "--bind", f"tcp://0.0.0.0:{port}",
        "--curve-secret", str(keys["server_secret"]), "--curve-clients", str(keys["clients"]),
    )  # fmt: skip
    others_received: list[str] = []
    try:
        alice_events: list[Emotion | Status] = []
        deadline = time.monotonic() + 30
        # Bounded wait: alice must get both topics and several windows; meanwhile (and for as
        # long) the others are polled and must get nothing at all.
        while time.monotonic() < deadline and (
            sum(isinstance(e, Emotion) for e in alice_events) < 4
            or not any(isinstance(e, Status) for e in alice_events)
        ):
            event = alice.receive(timeout=0.1)
            if event is not None:
                alice_events.append(event)
            for name, peer in (("mallory", mallory._socket), ("misled", misled._socket)):
                if peer.poll(0):
                    others_received.append(name)
            if plain.poll(0):
                others_received.append("plain")
        assert sum(isinstance(e, Emotion) for e in alice_events) >= 4, daemon.errors()
        assert any(isinstance(e, Status) and e.source_state == "running" for e in alice_events)
        emotions = [e for e in alice_events if isinstance(e, Emotion)]
        assert any(e.label == "angry" for e in emotions)
        settle = time.monotonic() + 2.0
        while time.monotonic() < settle:
            for name, poller in (("mallory", mallory), ("misled", misled)):
                if poller.receive(timeout=0.05) is not None:
                    others_received.append(name)
            if plain.poll(50):
                others_received.append("plain")
    finally:
        for subscriber in (alice, mallory, misled):
            subscriber.close()
        plain.close()
    assert daemon.stop(timeout=5) == 0
    assert others_received == []
    log = daemon.errors()
    assert "(CURVE)" in log and "1 authorised client keys" in log


def test_the_client_api_names_a_bad_key_file(keys, tmp_path):
    with pytest.raises(ClientError, match="nothing.key_secret: key file not found"):
        Subscriber(
            "tcp://127.0.0.1:1",
            curve_secret_key=tmp_path / "nothing.key_secret",
            curve_server_key=keys["server_public"],
        )
    with pytest.raises(ClientError, match="both this client's key pair and the server's key"):
        Subscriber("tcp://127.0.0.1:1", curve_secret_key=keys["alice_secret"])


def test_the_monitor_shows_an_encrypted_stream_with_the_client_keys(
    keys,
    tmux,  # noqa: F811
    running_daemon,
):
    port = free_port()
    daemon = running_daemon(
        "--source", str(CLIP), "--loop", "--bind", f"tcp://127.0.0.1:{port}",
        "--curve-secret", str(keys["server_secret"]), "--curve-clients", str(keys["clients"]),
    )  # fmt: skip
    tmux.start(
        f"{monitor_command(f'tcp://127.0.0.1:{port}')} "
        f"--curve-secret {keys['alice_secret']} --curve-server {keys['server_public']}"
    )
    screen = tmux.wait_for(lambda s: "daemon: running" in s and "cnn →" in s, timeout=30)
    assert "ANGRY" in screen or "angry" in screen
    assert daemon.stop(timeout=5) == 0


def refusal(subscriber: Subscriber, timeout: float = 10.0) -> str | None:
    """The ``refused`` reason of the first Quiet event that has one, or None by ``timeout``."""
    deadline = time.monotonic() + timeout
    for event in subscriber:
        if isinstance(event, Quiet) and event.refused is not None:
            return event.refused
        if time.monotonic() > deadline:
            return None
    return None


def test_a_refused_subscriber_is_told_that_keys_may_be_the_reason(keys):
    address = f"tcp://127.0.0.1:{free_port()}"
    publisher = Publisher(
        address,
        10,
        device="test",
        curve_secret_key=keys["server_secret"],
        curve_clients=keys["clients"],
    )
    other_server = generate_key_pair(keys["clients"].parent / "other", "other")[0]
    subscribers = {
        "plain": Subscriber(address, quiet_after=0.5),
        "mallory": Subscriber(
            address,
            quiet_after=0.5,
            curve_secret_key=keys["mallory_secret"],
            curve_server_key=keys["server_public"],
        ),
        "misled": Subscriber(
            address,
            quiet_after=0.5,
            curve_secret_key=keys["alice_secret"],
            curve_server_key=other_server,
        ),
        "alice": Subscriber(
            address,
            quiet_after=0.5,
            curve_secret_key=keys["alice_secret"],
            curve_server_key=keys["server_public"],
        ),
    }
    try:
        reasons = {name: refusal(s, timeout=3.0) for name, s in subscribers.items()}
    finally:
        for subscriber in subscribers.values():
            subscriber.close()
        publisher.close()
    assert reasons["alice"] is None
    for name in ("plain", "mallory", "misled"):
        assert reasons[name] and reasons[name].startswith("CURVE keys may be the reason"), name
    assert "--curve-secret FILE --curve-server FILE" in reasons["plain"]
    assert "not among the daemon's authorised clients" in reasons["mallory"]
    assert "--curve-server is not its public key" in reasons["misled"]


def test_a_refused_key_is_logged_at_debug_once_a_minute_with_the_attempts_since(caplog):
    clients = AuthorisedClients([b"alice-key"], quiet_seconds=0.2)
    with caplog.at_level(logging.DEBUG, logger="streamer.publish"):
        assert clients.callback("*", b"alice-key")
        assert not any(clients.callback("*", b"mallory-key") for _ in range(5))
        time.sleep(0.25)
        assert not clients.callback("*", b"mallory-key")
    refused = [r for r in caplog.records if "refused a subscriber" in r.getMessage()]
    assert [r.levelno for r in refused] == [logging.DEBUG, logging.DEBUG]
    assert (
        "mallory-key" in refused[0].getMessage() and "more attempts" not in refused[0].getMessage()
    )
    assert "(4 more attempts since the last report)" in refused[1].getMessage()


def test_a_daemon_retried_by_a_refused_client_logs_it_once_and_no_handshake_chatter(keys, caplog):
    address = f"tcp://127.0.0.1:{free_port()}"
    with caplog.at_level(logging.DEBUG):
        publisher = Publisher(
            address,
            10,
            device="test",
            curve_secret_key=keys["server_secret"],
            curve_clients=keys["clients"],
        )
        mallory = Subscriber(
            address,
            quiet_after=0.5,
            curve_secret_key=keys["mallory_secret"],
            curve_server_key=keys["server_public"],
        )
        try:
            # ZeroMQ retries the refused connection every 0.1-2 s: several handshakes.
            time.sleep(3.0)
            mallory.receive(timeout=0.1)
        finally:
            mallory.close()
            publisher.close()
    refused = [r for r in caplog.records if "refused a subscriber" in r.getMessage()]
    assert len(refused) == 1 and refused[0].levelno == logging.DEBUG
    assert not [r for r in caplog.records if r.name == "streamer.publish.zap"]
    assert not [r for r in caplog.records if "ZAP reply" in r.getMessage()]
    assert mallory.refused is not None


def test_the_monitor_without_keys_says_keys_may_be_why_it_hears_nothing(keys, tmux):  # noqa: F811
    address = f"tcp://127.0.0.1:{free_port()}"
    publisher = Publisher(
        address,
        10,
        device="test",
        curve_secret_key=keys["server_secret"],
        curve_clients=keys["clients"],
    )
    try:
        tmux.start(monitor_command(address))
        screen = tmux.wait_for(lambda s: "refuses this monitor" in s, timeout=20)
    finally:
        publisher.close()
    assert "CURVE keys may be the reason" in " ".join(screen.split())
