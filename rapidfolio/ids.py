"""Public identifiers: safe to show and to put in URLs, never sequential integers.

A public id is a type prefix and a ULID (48-bit millisecond time + 80 random bits in Crockford
base32), so ids sort by creation time and reveal nothing about how many rows exist.
"""

import os
import time

CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


def _base32(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, remainder = divmod(value, 32)
        chars.append(CROCKFORD[remainder])
    return "".join(reversed(chars))


def new_ulid() -> str:
    millis = int(time.time() * 1000)
    randomness = int.from_bytes(os.urandom(10), "big")
    return _base32(millis, 10) + _base32(randomness, 16)


def new_public_id(prefix: str) -> str:
    return f"{prefix}_{new_ulid()}"


def run_id() -> str:
    return new_public_id("run")


def procedure_id() -> str:
    return new_public_id("proc")


def review_id() -> str:
    return new_public_id("rev")


def trigger_id() -> str:
    return new_public_id("trg")


PUBLIC_ID_MAX_LENGTH = 40
