"""`python -m rapidfolio_verify BUNDLE.json --public-key KEY`

Exit status: 0 verified, 1 not verified (the first fact that fails is printed), 2 unreadable
input (no such file, not JSON, not a verifier key).
"""

import argparse
import json
import sys
from pathlib import Path

from rapidfolio_verify.bundle import VerificationError, format_account, verify_bundle
from rapidfolio_verify.note import NoteError, parse_vkey


class InputError(Exception):
    """Input that cannot be read, as opposed to evidence that does not verify."""


def _no_duplicate_keys(pairs: list) -> dict:
    # json.loads keeps the last of two equal keys; another reader might keep the first. A
    # bundle that two tools would read differently is refused outright.
    result = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def read_bundle(path: str) -> dict:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the bundle {path}: {exc}") from None
    try:
        bundle = json.loads(
            text, object_pairs_hook=_no_duplicate_keys, parse_constant=_reject_constant
        )
    except (ValueError, RecursionError) as exc:
        raise InputError(f"the bundle {path} is not valid JSON: {exc}") from None
    if not isinstance(bundle, dict):
        raise InputError(f"the bundle {path} is not a JSON object")
    return bundle


def read_key(value: str) -> tuple[str, bytes]:
    """(name, public key) from a verifier key given inline or in a file (# lines ignored)."""
    text = value
    try:
        is_file = Path(value).is_file()
    except (OSError, ValueError):
        is_file = False
    if is_file:
        try:
            lines = Path(value).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read the key file {value}: {exc}") from None
        keys = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
        if len(keys) != 1:
            raise InputError(f"the key file {value} must hold exactly one verifier key")
        text = keys[0]
    try:
        return parse_vkey(text)
    except NoteError as exc:
        where = f"the key file {value}" if is_file else f"--public-key {value!r} (not a file)"
        raise InputError(f"{where} is not a verifier key: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rapidfolio_verify",
        description="Verify a Rapidfolio Runs evidence bundle offline.",
    )
    parser.add_argument("bundle", help="the evidence bundle (JSON file, or - for stdin)")
    parser.add_argument(
        "--public-key",
        required=True,
        metavar="KEY",
        help="the ledger's verifier key (name+keyid+base64), or a file holding it",
    )
    args = parser.parse_args(argv)
    try:
        key_name, public_key = read_key(args.public_key)
        bundle = read_bundle(args.bundle)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        account = verify_bundle(bundle, public_key, key_name=key_name)
    except VerificationError as exc:
        print(f"NOT VERIFIED: {exc.fact}: {exc.problem}")
        return 1
    print(format_account(account))
    print(
        f"VERIFIED: run {account.run_id}: {account.events} events, each included in the tree "
        f"of {account.tree_size} leaves signed by {account.key}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
