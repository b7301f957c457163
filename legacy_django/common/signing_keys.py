"""RS256 signing keys for the auth issuer: generation on first start, rotation, JWKS.

Two sources, chosen by settings:

* a directory (``JWT_KEYS_DIR``, default ``var/keys/``): one ``<kid>.pem`` private key
  per key and an ``active`` file naming the key that signs.  Created on first
  use; ``python -m legacy_django signing_keys rotate`` adds a key and makes it
  active (the old one stays published), ``retire KID`` removes an old one.
  Every process notices a change by the directory's mtime.
* the environment: ``JWT_PRIVATE_KEY`` (PEM) signs, ``JWT_PREVIOUS_PUBLIC_KEYS``
  (PEMs, concatenated) stay published and accepted.

A key id is the RFC 7638 JWK thumbprint of the public key.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from django.core.signals import setting_changed
from jwt.algorithms import RSAAlgorithm

ACTIVE_FILE = "active"
_PEM_BLOCK = re.compile(r"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", re.DOTALL)


class KeyStoreError(Exception):
    """The key material is missing or unusable (an operator error, never a client one)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class SigningKey:
    kid: str
    public_key: rsa.RSAPublicKey
    private_key: rsa.RSAPrivateKey | None = None

    def jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(self.public_key))
        return {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid, "n": jwk["n"], "e": jwk["e"]}


@dataclass(frozen=True, kw_only=True, slots=True)
class KeySet:
    active: SigningKey
    published: dict[str, SigningKey]

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.jwk() for key in self.published.values()]}


def thumbprint(public_key: rsa.RSAPublicKey) -> str:
    jwk = json.loads(RSAAlgorithm.to_jwk(public_key))
    canonical = json.dumps(
        {"e": jwk["e"], "kty": "RSA", "n": jwk["n"]}, separators=(",", ":"), sort_keys=True
    )
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


def _private_key_from_pem(pem: bytes) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise KeyStoreError("signing keys must be RSA keys")
    return key


def _signing_key(private_key: rsa.RSAPrivateKey) -> SigningKey:
    public_key = private_key.public_key()
    return SigningKey(kid=thumbprint(public_key), public_key=public_key, private_key=private_key)


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


class DirectoryKeyStore:
    """Keys as files in one directory; safe for several processes (flock around changes)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._cached: tuple[int, KeySet] | None = None

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.directory / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _add_key(self) -> SigningKey:
        key = _signing_key(rsa.generate_private_key(public_exponent=65537, key_size=2048))
        assert key.private_key is not None
        pem = key.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        _write_atomically(self.directory / f"{key.kid}.pem", pem)
        _write_atomically(self.directory / ACTIVE_FILE, key.kid.encode())
        return key

    def ensure(self) -> None:
        """Generate the first key if there is none (first start)."""
        with self._exclusive():
            if not (self.directory / ACTIVE_FILE).exists():
                self._add_key()

    def rotate(self) -> SigningKey:
        with self._exclusive():
            return self._add_key()

    def retire(self, kid: str) -> None:
        with self._exclusive():
            if self._read().active.kid == kid:
                raise KeyStoreError(f"key {kid} is active; rotate first")
            path = self.directory / f"{kid}.pem"
            if not path.exists():
                raise KeyStoreError(f"no key {kid} in {self.directory}")
            path.unlink()

    def _read(self) -> KeySet:
        published = {}
        for path in sorted(self.directory.glob("*.pem")):
            key = _signing_key(_private_key_from_pem(path.read_bytes()))
            published[key.kid] = key
        active_kid = (self.directory / ACTIVE_FILE).read_text().strip()
        if active_kid not in published:
            raise KeyStoreError(f"active key {active_kid} has no file in {self.directory}")
        return KeySet(active=published[active_kid], published=published)

    def current(self) -> KeySet:
        try:
            mtime = self.directory.stat().st_mtime_ns
        except FileNotFoundError:
            mtime = -1
        cached = self._cached
        if cached is not None and cached[0] == mtime:
            return cached[1]
        with self._lock:
            if mtime == -1 or not (self.directory / ACTIVE_FILE).exists():
                self.ensure()
                mtime = self.directory.stat().st_mtime_ns
            keyset = self._read()
            self._cached = (mtime, keyset)
            return keyset


class EnvironmentKeyStore:
    """Keys given by the environment (a Kubernetes Secret, say); rotation is a redeploy."""

    def __init__(self, private_pem: str, previous_public_pems: str) -> None:
        active = _signing_key(_private_key_from_pem(private_pem.encode()))
        published = {active.kid: active}
        for block in _PEM_BLOCK.findall(previous_public_pems):
            public_key = serialization.load_pem_public_key(block.encode())
            if not isinstance(public_key, rsa.RSAPublicKey):
                raise KeyStoreError("JWT_PREVIOUS_PUBLIC_KEYS must hold RSA public keys")
            published[thumbprint(public_key)] = SigningKey(kid=thumbprint(public_key), public_key=public_key)
        self._keyset = KeySet(active=active, published=published)

    def current(self) -> KeySet:
        return self._keyset


KeyStore = DirectoryKeyStore | EnvironmentKeyStore


@cache
def get_key_store() -> KeyStore:
    if settings.JWT_PRIVATE_KEY:
        return EnvironmentKeyStore(settings.JWT_PRIVATE_KEY, settings.JWT_PREVIOUS_PUBLIC_KEYS)
    return DirectoryKeyStore(Path(settings.JWT_KEYS_DIR))


def _reset_on_settings_change(*, setting: str, **_: Any) -> None:
    if setting.startswith("JWT_"):
        get_key_store.cache_clear()


setting_changed.connect(_reset_on_settings_change)
