"""CURVE key files: making key pairs, and reading them back with errors that name the file.

The files are ZeroMQ's own certificate format (``zmq.auth.create_certificates``): ``NAME.key``
holds the public key and may be copied anywhere; ``NAME.key_secret`` holds the key pair and
must stay with its owner (it is created readable by its owner only). A daemon publishing
beyond loopback uses its ``.key_secret``; each subscriber allowed to connect puts its ``.key``
in the daemon's authorised-clients directory and is given the daemon's ``.key``.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import zmq.auth
from zmq.utils import z85

_LOGGER = logging.getLogger(__name__)

PUBLIC_SUFFIX = ".key"
SECRET_SUFFIX = ".key_secret"
_KEY_BYTES = 32


class KeyFileError(Exception):
    """A key file or directory cannot be used; the message names it."""


def generate_key_pair(directory: Path, name: str) -> tuple[Path, Path]:
    """Writes ``directory/NAME.key`` and ``NAME.key_secret``; returns (public, secret) paths.

    Existing files are never overwritten: replacing a key pair locks out everyone who holds the
    old public key, so that takes deleting the files on purpose. The secret file is made in a
    private temporary directory and moved into place, so it is never readable by others.
    """
    if not name or "/" in name or name.startswith("."):
        raise KeyFileError(f"{name!r}: a key name is a plain file name (no '/', not hidden)")
    directory = Path(directory)
    public, secret = directory / f"{name}{PUBLIC_SUFFIX}", directory / f"{name}{SECRET_SUFFIX}"
    for path in (public, secret):
        if path.exists():
            raise KeyFileError(f"{path}: already exists (delete it to make a new key pair)")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=directory, prefix=".keygen-") as private:
            made_public, made_secret = zmq.auth.create_certificates(private, name)
            os.chmod(made_secret, 0o600)
            os.chmod(made_public, 0o644)
            os.replace(made_secret, secret)
            os.replace(made_public, public)
    except OSError as error:
        raise KeyFileError(f"{directory}: cannot write keys ({error.strerror})") from None
    return public, secret


def _read(path: Path) -> tuple[bytes, bytes | None]:
    """(public key, secret key or None) from a key file, each checked to be a CURVE key."""
    try:
        public, secret = zmq.auth.load_certificate(path)
    except OSError:
        raise KeyFileError(f"{path}: key file not found") from None
    except ValueError:
        raise KeyFileError(f"{path}: not a key file made by emostream keygen") from None
    for key in (public, secret):
        if key is not None and not _is_curve_key(key):
            raise KeyFileError(f"{path}: holds a malformed CURVE key (40 Z85 characters)")
    return public, secret


def _is_curve_key(key: bytes) -> bool:
    if len(key) != 40:
        return False
    try:
        return len(z85.decode(key)) == _KEY_BYTES
    except (ValueError, KeyError, IndexError):
        return False


def load_key_pair(path: Path) -> tuple[bytes, bytes]:
    """(public, secret) Z85 keys from a ``.key_secret`` file."""
    public, secret = _read(Path(path))
    if secret is None:
        raise KeyFileError(f"{path}: holds no secret key (give the {SECRET_SUFFIX} file)")
    return public, secret


def load_public_key(path: Path) -> bytes:
    """The Z85 public key in a ``.key`` (or ``.key_secret``) file."""
    return _read(Path(path))[0]


def authorised_keys(directory: Path) -> list[bytes]:
    """Public keys of every ``*.key`` file in ``directory``: the clients allowed to connect."""
    directory = Path(directory)
    if not directory.is_dir():
        raise KeyFileError(f"{directory}: authorised-clients directory not found")
    keys = [load_public_key(path) for path in sorted(directory.glob(f"*{PUBLIC_SUFFIX}"))]
    if not keys:
        _LOGGER.warning("%s holds no client keys (*.key): no subscriber can connect", directory)
    return keys
