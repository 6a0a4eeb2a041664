"""rapidfolio_verify: the standalone verifier of Rapidfolio Runs evidence bundles.

An auditor runs it offline: `python -m rapidfolio_verify bundle.json --public-key KEY` checks a
run's record against a checkpoint of the ledger signed with Ed25519 (see docs/evidence.md). The
product imports the same primitives (canonical JSON, the run record's digests, RFC 9162 Merkle
hashing, C2SP signed notes), so there is one copy of the hashing code.

It imports only the Python standard library and `cryptography`, never Django or the product,
so it can be copied alone and read in an afternoon.
"""

__version__ = "1.0.0"
