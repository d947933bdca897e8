"""Encryption at rest: AES-256-GCM for the content of memories stored encrypted.

A sealed value is ``enc1:<key id>:<flags>:<base64(nonce | ciphertext | tag)>``: a random
96-bit nonce per value, and associated data ``<namespace> NUL <memory id>``, so a ciphertext
copied to another row or namespace does not decrypt. What else a row needs is keyed, never
plain: its content hash (exact dedup) is an HMAC, and its full-text words are HMACs too
(``h`` + 12 hex digits per distinct word, per namespace), which the lexical arm matches by
hashing the query's words alike. What the database still tells about such a memory, and the
stricter setting, are in decision 0028.

Keys come from a ``KeyProvider``: the ``KeyRing`` reads them from the settings (a key file,
``STELLAR_ENCRYPTION_KEYS`` or ``STELLAR_ENCRYPTION_KEY``); a key management service can
stand in by implementing the same three members.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from stellar_core.errors import ConfigurationError, EncryptionError

PREFIX = "enc1:"
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_PAD = 256  # the strict setting pads plaintext to a multiple of this many bytes
_TOKENS_KEPT = 200_000  # words whose keyed hash is remembered, per key and namespace


class KeyProvider(Protocol):
    """Where data keys come from: a key ring in the settings, or a key management service."""

    @property
    def primary(self) -> str:
        """The id of the key new values are sealed with."""
        ...

    def ids(self) -> list[str]:
        """Every key id on offer (the primary among them)."""
        ...

    def key(self, key_id: str) -> bytes:
        """The 32-byte key; ``EncryptionError`` naming ``key_id`` if there is none."""
        ...


class KeyRing:
    """Keys held in memory, by id."""

    def __init__(self, keys: Mapping[str, bytes], primary: str | None = None) -> None:
        if not keys:
            raise ConfigurationError("a key ring needs at least one key")
        for key_id, key in keys.items():
            if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", key_id):
                raise ConfigurationError(f"invalid key id {key_id!r}: 1-64 letters, digits, '.', '_' or '-'")
            if len(key) != 32:
                raise ConfigurationError(f"key {key_id!r} is {len(key)} bytes; AES-256 needs 32")
        self._keys = dict(keys)
        self._primary = primary or next(reversed(self._keys))
        if self._primary not in self._keys:
            raise ConfigurationError(f"the primary key {self._primary!r} is not in the key ring")

    @property
    def primary(self) -> str:
        return self._primary

    def ids(self) -> list[str]:
        return list(self._keys)

    def key(self, key_id: str) -> bytes:
        try:
            return self._keys[key_id]
        except KeyError:
            raise EncryptionError(f"no encryption key {key_id!r}: add it to the key ring") from None

    @classmethod
    def from_settings(
        cls, file: Path | None, keys: Mapping[str, str], single: str | None, primary: str | None
    ) -> KeyRing | None:
        """The keys the settings give (None: none), the file's first, then the others."""
        found: dict[str, bytes] = {}
        if file is not None:
            in_file, held = read_key_file(file)
            found.update({k: decode_key(v, k) for k, v in held.items()})
            primary = primary or in_file
        found.update({k: decode_key(v, k) for k, v in keys.items()})
        if single:
            key = decode_key(single, "STELLAR_ENCRYPTION_KEY")
            found.setdefault(key_id_of(key), key)
        return cls(found, primary) if found else None


def new_key() -> str:
    """A fresh random key, base64 (what the settings and key files hold)."""
    return base64.b64encode(os.urandom(32)).decode()


def key_id_of(key: bytes) -> str:
    """The id a key given alone goes by: derived from it, so it names that key only."""
    return "k" + hashlib.sha256(b"stellar key id" + key).hexdigest()[:8]


def decode_key(text: str, name: str) -> bytes:
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise ConfigurationError(f"encryption key {name!r} is not base64") from None
    if len(key) != 32:
        raise ConfigurationError(f"encryption key {name!r} is {len(key)} bytes; AES-256 needs 32")
    return key


def read_key_file(path: Path) -> tuple[str | None, dict[str, str]]:
    """(primary key id, base64 keys by id) of a key file: ``{"primary": id, "keys": {id: key}}``."""
    try:
        document = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read the key file {path}: {exc}") from None
    held = document.get("keys", {}) if isinstance(document, dict) else None
    primary = document.get("primary") if isinstance(document, dict) else None
    if not isinstance(held, dict) or not all(isinstance(v, str) for v in held.values()):
        raise ConfigurationError(f"the key file {path} must hold {{'primary': id, 'keys': {{id: key}}}}")
    return (primary if isinstance(primary, str) else None), held


def write_key_file(path: Path, primary: str | None, held: Mapping[str, str]) -> None:
    """Replace the key file whole (owner-only), so a crash leaves the old one or the new one."""
    path, document = Path(path), {"primary": primary, "keys": dict(held)}
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(document, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Cipher:
    """Seals and opens memory content, and computes its keyed hash and search tokens."""

    def __init__(self, keys: KeyProvider, strict: bool = False) -> None:
        self.keys = keys
        self.strict = strict  # pad lengths; no search tokens (decision 0028)
        self._index: dict[str, bytes] = {}  # by key id: the hashes' keys
        self._ciphers: dict[str, AESGCM] = {}
        self._seen: dict[tuple[str, str], _Tokens] = {}  # by (key id, namespace)

    def seal(self, plaintext: str, namespace: str, memory_id: str) -> str:
        key_id = self.keys.primary
        data = plaintext.encode()
        if self.strict:  # ISO/IEC 7816-4: 0x80, then zeros to the next multiple of _PAD
            data += b"\x80" + b"\0" * (-(len(data) + 1) % _PAD)
        nonce = os.urandom(12)
        sealed = self._aead(key_id).encrypt(nonce, data, _aad(namespace, memory_id))
        flags = "p" if self.strict else "-"
        return f"{PREFIX}{key_id}:{flags}:{base64.b64encode(nonce + sealed).decode()}"

    def open(self, token: str, namespace: str, memory_id: str) -> str:
        key_id, flags, body = parse(token)
        try:
            raw = base64.b64decode(body, validate=True)
            data = self._aead(key_id).decrypt(raw[:12], raw[12:], _aad(namespace, memory_id))
        except (InvalidTag, ValueError, binascii.Error):
            raise EncryptionError(
                f"memory {memory_id} does not decrypt with key {key_id!r}: a wrong key, or the "
                "ciphertext was altered or moved"
            ) from None
        if flags == "p":
            data = data[: data.rindex(b"\x80")]
        return data.decode()

    def digest(self, namespace: str, text: str) -> str:
        """The content hash of an encrypted memory: keyed, so a guess cannot be checked."""
        data = f"{namespace}\0{text}".encode()
        return hashlib.blake2b(data, key=self._index_key(self.keys.primary), digest_size=32).hexdigest()

    def search_text(self, namespace: str, text: str) -> str:
        """What the full-text index holds for an encrypted memory: its distinct words, keyed."""
        if self.strict:
            return ""
        words = dict.fromkeys(_WORD.findall(text.lower()))
        return " ".join(self._tokens(self.keys.primary, namespace, words))

    def query_tokens(self, namespace: str, terms: Iterable[str]) -> list[str]:
        """The query's words as every key on offer would have indexed them."""
        if self.strict:
            return []
        return [t for k in self.keys.ids() for t in self._tokens(k, namespace, terms)]

    def _tokens(self, key_id: str, namespace: str, words: Iterable[str]) -> list[str]:
        """The words as the index holds them. Remembered: words follow Zipf's law, so most
        are hashed once (a lookup is ~30 times cheaper than the hash)."""
        seen = self._seen.get((key_id, namespace))
        if seen is None or len(seen) > _TOKENS_KEPT:
            base = hashlib.blake2b(f"{namespace}\0".encode(), key=self._index_key(key_id), digest_size=6)
            seen = self._seen[(key_id, namespace)] = _Tokens(base)
        return [seen[w] for w in words]

    def _aead(self, key_id: str) -> AESGCM:
        if key_id not in self._ciphers:
            self._ciphers[key_id] = AESGCM(self.keys.key(key_id))
        return self._ciphers[key_id]

    def _index_key(self, key_id: str) -> bytes:
        """A key for the hashes, apart from the one for the ciphertexts."""
        if key_id not in self._index:
            self._index[key_id] = hmac.new(self.keys.key(key_id), b"stellar index key", "sha256").digest()
        return self._index[key_id]


class _Tokens(dict[str, str]):
    """Word -> ``h`` + 48 bits of a keyed BLAKE2b of it (a MAC; collisions within one
    namespace's vocabulary are unlikely enough for search), computed on first use."""

    def __init__(self, base: Any) -> None:
        super().__init__()
        self._base = base  # the key and the namespace fed in already: a word costs a copy

    def __missing__(self, word: str) -> str:
        h = self._base.copy()
        h.update(word.encode())
        self[word] = token = "h" + str(h.hexdigest())
        return token


def parse(token: str) -> tuple[str, str, str]:
    """(key id, flags, base64 body) of a sealed value."""
    parts = token.split(":", 3) if token.startswith(PREFIX) else []
    if len(parts) != 4:
        raise EncryptionError("not an encrypted value (truncated or altered)")
    return parts[1], parts[2], parts[3]


def key_of(token: str) -> str:
    return parse(token)[0]


def _aad(namespace: str, memory_id: str) -> bytes:
    return f"{namespace}\0{memory_id}".encode()


def add_to_key_file(path: Path) -> str:
    """A new key in the key file (made if missing), made the primary one; its id."""
    path = Path(path)
    held = read_key_file(path)[1] if path.exists() else {}
    key = new_key()
    key_id = key_id_of(base64.b64decode(key))
    write_key_file(path, key_id, {**held, key_id: key})
    return key_id
