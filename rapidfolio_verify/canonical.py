"""Canonical JSON and the SHA-256 digest of a JSON value.

One definition shared by the product (which hashes what it writes) and the verifier (which
hashes what it reads): if the two ever differed, honest records would fail to verify.
"""

import hashlib
import json

# Sorted keys and no whitespace make equal values serialise to equal text. ensure_ascii=False
# and default=str are part of the format: millions of stored hashes were made with them.
# One encoder, made once: json.dumps with these options builds a new one per call, which was a
# fifth of the cost of hashing a small event (the integrity check hashes thousands a request).
# Its encode() keeps no state between calls, so threads can share it.
_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
)


def canonical_json(value) -> str:
    return _CANONICAL.encode(value)


def digest(value) -> str:
    """The hex SHA-256 of the value's canonical JSON (UTF-8)."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()
