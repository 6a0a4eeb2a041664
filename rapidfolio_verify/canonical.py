"""Canonical JSON and the SHA-256 digest of a JSON value.

One definition shared by the product (which hashes what it writes) and the verifier (which
hashes what it reads): if the two ever differed, honest records would fail to verify.
"""

import hashlib
import json


def canonical_json(value) -> str:
    # Sorted keys and no whitespace make equal values serialise to equal text. ensure_ascii=False
    # and default=str are part of the format: millions of stored hashes were made with them.
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def digest(value) -> str:
    """The hex SHA-256 of the value's canonical JSON (UTF-8)."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()
