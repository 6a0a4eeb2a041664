"""The keys that make the record evidence, all kept outside the database.

- The ledger's Ed25519 signing key signs checkpoints (runs.ledger). It comes from
  LEDGER_SIGNING_KEY (base64 of the 32-byte seed) or LEDGER_SIGNING_KEY_FILE; with neither,
  one is generated into var/ with mode 0600 (the embedded default; production must set one).
- The record tag key is derived from it (HKDF-SHA256): HMAC tags on the facts the engine acts
  on (a run's header and inputs, every step) let it refuse rows that the application itself
  did not write, such as a decision forged by someone with database access but not the key.
"""

import base64
import hashlib
import hmac
import os
from functools import cache
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.conf import settings

TAG_KEY_INFO = b"rapidfolio record tags v1"


class KeyConfigError(ValueError):
    """The configured key cannot be read."""


def configured() -> bool:
    """Whether the signing key is configured explicitly (not generated into var/)."""
    return bool(settings.LEDGER_SIGNING_KEY or settings.LEDGER_SIGNING_KEY_FILE)


def _seed_from_text(text: str, where: str) -> bytes:
    try:
        seed = base64.b64decode(text.strip(), validate=True)
    except ValueError as exc:
        raise KeyConfigError(f"{where} is not base64: {exc}") from exc
    if len(seed) != 32:
        raise KeyConfigError(
            f"{where} must hold a 32-byte Ed25519 seed (it holds {len(seed)} bytes)"
        )
    return seed


def _generated_seed(path: Path) -> bytes:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_EXCL: two processes starting at once never write two different keys.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return _seed_from_text(path.read_text(), str(path))
        with os.fdopen(fd, "w") as file:
            file.write(base64.b64encode(os.urandom(32)).decode() + "\n")
    return _seed_from_text(path.read_text(), str(path))


@cache
def _seed() -> bytes:
    if settings.LEDGER_SIGNING_KEY:
        return _seed_from_text(settings.LEDGER_SIGNING_KEY, "LEDGER_SIGNING_KEY")
    if settings.LEDGER_SIGNING_KEY_FILE:
        path = Path(settings.LEDGER_SIGNING_KEY_FILE)
        return _seed_from_text(path.read_text(), str(path))
    return _generated_seed(Path(settings.LEDGER_GENERATED_KEY_FILE))


def signing_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(_seed())


def public_key_bytes() -> bytes:
    return signing_key().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


@cache
def _tag_key(seed: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=TAG_KEY_INFO).derive(seed)


def tag(*parts: str) -> str:
    """HMAC-SHA256 (hex) of the parts, under the record tag key."""
    message = "\n".join(parts).encode()
    return hmac.new(_tag_key(_seed()), message, hashlib.sha256).hexdigest()


def tag_matches(expected: str | None, *parts: str) -> bool:
    return bool(expected) and hmac.compare_digest(str(expected), tag(*parts))


def forget_cached_keys() -> None:
    """After the settings changed (tests, a key rotation in a long-lived shell)."""
    _seed.cache_clear()
