"""C2SP signed notes (c2sp.org/signed-note) with Ed25519, and tlog checkpoints in them
(c2sp.org/tlog-checkpoint).

A checkpoint is "origin\\nsize\\nbase64(root)\\n" (plus optional extension lines); a signed note
is that text, a blank line, and lines "— <key name> base64(key id ‖ signature)". Parsing is
strict: a note or checkpoint that is not exactly in the format is rejected, not repaired.
"""

import base64
import binascii
import hashlib
import re
from typing import NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ED25519 = b"\x01"  # the signed-note signature type byte for Ed25519
SIGNATURE_PREFIX = "\u2014 "  # em dash, space
# The spec asks verifiers to accept at least 16 signatures; Go's note package stops at 100.
MAX_SIGNATURES = 100
_SIZE = re.compile(r"0|[1-9][0-9]*")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")  # ASCII controls other than newline


class NoteError(ValueError):
    """A note, checkpoint or verifier key that is malformed or does not verify."""


class Checkpoint(NamedTuple):
    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str, what: str) -> bytes:
    # Strict standard base64, and only its canonical spelling, so that one value has one text.
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise NoteError(f"{what} is not base64") from None
    if _b64(data) != text:
        raise NoteError(f"{what} is not canonical base64")
    return data


def _check_name(name) -> None:
    if not isinstance(name, str) or not name or re.search(r"[\s+]", name):
        raise NoteError(f"key name {name!r} is empty or contains a space or '+'")


def checkpoint_body(origin: str, size: int, root: bytes) -> str:
    """The note text of a checkpoint (no extension lines)."""
    if not isinstance(origin, str) or not origin or "\n" in origin or _CONTROL.search(origin):
        raise NoteError(f"origin {origin!r} is not one non-empty line")
    if type(size) is not int or size < 0 or type(root) is not bytes or len(root) != 32:
        raise NoteError("a checkpoint needs a size >= 0 and a 32-byte root")
    return f"{origin}\n{size}\n{_b64(root)}\n"


def parse_checkpoint(body: str) -> Checkpoint:
    if not isinstance(body, str) or not body.endswith("\n") or _CONTROL.search(body):
        raise NoteError("checkpoint text must be lines ending in a newline")
    lines = body[:-1].split("\n")
    if len(lines) < 3:
        raise NoteError("checkpoint needs an origin, a size and a root hash line")
    origin, size, root, *extensions = lines
    if not origin:
        raise NoteError("checkpoint origin is empty")
    # ASCII decimal without leading zeros: one size, one spelling.
    if not _SIZE.fullmatch(size):
        raise NoteError(f"checkpoint size {size!r} is not a decimal number")
    root_hash = _unb64(root, "checkpoint root hash")
    if len(root_hash) != 32:
        raise NoteError("checkpoint root hash is not 32 bytes")
    if any(not line for line in extensions):
        raise NoteError("checkpoint has an empty extension line")
    return Checkpoint(origin, int(size), root_hash, tuple(extensions))


def key_id(name: str, public_key: bytes) -> bytes:
    """The 4-byte id of an Ed25519 key: SHA-256(name ‖ "\\n" ‖ 0x01 ‖ public key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + ED25519 + public_key).digest()[:4]


def raw_public_key(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def sign_note(body: str, name: str, private_key: Ed25519PrivateKey) -> str:
    """The signed note of `body` with one signature line by `name`."""
    _check_name(name)
    if not body.endswith("\n") or _CONTROL.search(body):
        raise NoteError("note text must end in a newline and hold no control characters")
    signature = private_key.sign(body.encode())
    blob = key_id(name, raw_public_key(private_key)) + signature
    return f"{body}\n{SIGNATURE_PREFIX}{name} {_b64(blob)}\n"


def _split_note(note) -> tuple[str, list[str]]:
    """The note text and its signature lines, or NoteError if it is not a signed note."""
    if not isinstance(note, str) or _CONTROL.search(note):
        raise NoteError("note is not text without control characters")
    # The text ends at the note's last blank line; signatures follow, each ending in "\n".
    cut = note.rfind("\n\n")
    if cut < 0 or not note.endswith("\n") or cut + 2 == len(note):
        raise NoteError("note has no signature lines after a blank line")
    lines = note[cut + 2 : -1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"note has more than {MAX_SIGNATURES} signatures")
    return note[: cut + 1], lines


def _parse_signature(line: str) -> tuple[str, bytes, bytes]:
    if not line.startswith(SIGNATURE_PREFIX) or line.count(" ") != 2:
        raise NoteError(f"malformed signature line {line!r}")
    name, blob_text = line[len(SIGNATURE_PREFIX) :].split(" ")
    _check_name(name)
    blob = _unb64(blob_text, f"signature by {name}")
    if len(blob) < 5:
        raise NoteError(f"signature by {name} is too short")
    return name, blob[:4], blob[4:]


def open_note(note: str, name: str, public_key: bytes) -> str:
    """The text of `note` if a signature by the key (`name`, `public_key`) verifies on it.

    Signatures by other keys are ignored (a witness may co-sign); a signature that claims our
    key and fails rejects the whole note, as the spec advises.
    """
    _check_name(name)
    verifier = _public_key(public_key)
    wanted_id = key_id(name, public_key)
    body, lines = _split_note(note)
    verified = False
    for line in lines:
        signer, signer_id, signature = _parse_signature(line)
        if (signer, signer_id) != (name, wanted_id):
            continue
        try:
            verifier.verify(signature, body.encode())
        except InvalidSignature:
            raise NoteError(f"invalid signature for key {name}+{wanted_id.hex()}") from None
        verified = True
    if not verified:
        raise NoteError(f"no signature by key {name}+{wanted_id.hex()} (unknown key)")
    return body


def _public_key(public_key) -> Ed25519PublicKey:
    if type(public_key) is not bytes or len(public_key) != 32:
        raise NoteError("an Ed25519 public key is 32 bytes")
    try:
        return Ed25519PublicKey.from_public_bytes(public_key)
    except ValueError:
        raise NoteError("not an Ed25519 public key") from None


def vkey(name: str, public_key: bytes) -> str:
    """The C2SP verifier key text: name+hex(key id)+base64(0x01 ‖ public key)."""
    _check_name(name)
    _public_key(public_key)
    return f"{name}+{key_id(name, public_key).hex()}+{_b64(ED25519 + public_key)}"


def parse_vkey(text: str) -> tuple[str, bytes]:
    """(name, 32-byte public key) from a verifier key, checking its key id."""
    if not isinstance(text, str):
        raise NoteError("a verifier key is text")
    # Key names hold no "+", but base64 may: split at the first two only.
    parts = text.strip().split("+", 2)
    if len(parts) != 3:
        raise NoteError("a verifier key is name+keyid+key")
    name, id_text, key_text = parts
    _check_name(name)
    if not re.fullmatch(r"[0-9a-f]{8}", id_text):
        raise NoteError("a verifier key's id is 8 lowercase hex digits")
    key = _unb64(key_text, "verifier key")
    if len(key) != 33 or key[:1] != ED25519:
        raise NoteError("not an Ed25519 verifier key (type 0x01, 32 bytes)")
    public_key = key[1:]
    _public_key(public_key)
    if key_id(name, public_key).hex() != id_text:
        raise NoteError("the verifier key's id does not match its name and key")
    return name, public_key
