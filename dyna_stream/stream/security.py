"""ZeroMQ CURVE encryption and authentication, with keys kept in files.

``dyna-stream keygen`` writes a key pair (``NAME.key`` public, ``NAME.key_secret`` secret, in
ZeroMQ's certificate format). A socket that binds is a CURVE server: it proves itself with its
secret key and admits only clients whose public keys lie in ``authorized_keys``. A socket that
connects is a CURVE client: it needs its own secret key and the server's public key.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from ..errors import ConfigError

log = logging.getLogger(__name__)
_AUTHENTICATORS: dict[int, ThreadAuthenticator] = {}


@dataclass(frozen=True)
class CurveKeys:
    """secret_key : this side's ``*.key_secret`` file.  server_key : the server's public ``*.key``
    (connecting sockets).  authorized_keys : folder of admitted clients' public keys (binding sockets)."""

    secret_key: str
    server_key: str | None = None
    authorized_keys: str | None = None


def generate_keys(directory: str | Path, name: str) -> tuple[Path, Path]:
    """Write a new key pair; returns (public, secret) paths. The secret file is readable by its owner only."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    public, secret = (Path(p) for p in zmq.auth.create_certificates(directory, name))
    secret.chmod(0o600)
    return public, secret


def _load(path: str, secret: bool) -> tuple[bytes, bytes | None]:
    try:
        return zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        kind = "secret" if secret else "public"
        raise ConfigError(f"cannot read the CURVE {kind} key {path} ({exc}); create one with dyna-stream keygen") \
            from None


def secure(socket: zmq.Socket, keys: CurveKeys, *, server: bool, context: zmq.Context) -> None:
    """Turn on CURVE for ``socket`` (before it binds or connects)."""
    if not zmq.has("curve"):
        raise ConfigError("this libzmq was built without CURVE support")
    public, secret = _load(keys.secret_key, secret=True)
    if secret is None:
        raise ConfigError(f"{keys.secret_key} holds no secret key; pass the .key_secret file")
    socket.curve_publickey, socket.curve_secretkey = public, secret
    if server:
        if not keys.authorized_keys or not Path(keys.authorized_keys).is_dir():
            raise ConfigError("a CURVE server needs authorized_keys: a folder with the clients' public .key files")
        authenticator = _AUTHENTICATORS.get(id(context))
        if authenticator is None:
            authenticator = ThreadAuthenticator(context)
            authenticator.start()
            _AUTHENTICATORS[id(context)] = authenticator
        authenticator.configure_curve(domain="*", location=str(keys.authorized_keys))
        socket.curve_server = True
    else:
        if not keys.server_key:
            raise ConfigError("a CURVE client needs server_key: the server's public .key file")
        socket.curve_serverkey = _load(keys.server_key, secret=False)[0]


def stop_authenticator(context: zmq.Context) -> None:
    authenticator = _AUTHENTICATORS.pop(id(context), None)
    if authenticator is not None:
        authenticator.stop()
