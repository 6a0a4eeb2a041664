"""C2SP signed notes and checkpoints of rapidfolio_verify.note.

The interoperability vector is the PeterNeumann key and note of Go's reference implementation
(golang.org/x/mod, sumdb/note/note_test.go): Ed25519 signatures are deterministic, so signing
its text with its key must reproduce its note byte for byte.
"""

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from rapidfolio_verify.note import (
    Checkpoint,
    NoteError,
    checkpoint_body,
    key_id,
    open_note,
    parse_checkpoint,
    parse_vkey,
    raw_public_key,
    sign_note,
    vkey,
)

GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_SIG = (
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNX"
    "gKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
GO_ENOCH_SIG = (
    "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwn"
    "WLox33WWd1RvMc+QQ=\n"
)
GO_NOTE = GO_TEXT + "\n" + GO_SIG

ORIGIN = "runs.example.com/ledger"
ROOT = bytes(range(32))


def go_private_key() -> Ed25519PrivateKey:
    # PRIVATE+KEY+name+id+base64(0x01 ‖ seed); base64 may hold "+" too.
    seed = base64.b64decode(GO_SKEY.split("+", 4)[4])
    assert seed[0] == 1
    return Ed25519PrivateKey.from_private_bytes(seed[1:])


@pytest.fixture
def signer():
    private_key = Ed25519PrivateKey.generate()
    return private_key, raw_public_key(private_key)


def test_signing_reproduces_the_go_reference_note():
    assert sign_note(GO_TEXT, "PeterNeumann", go_private_key()) == GO_NOTE


def test_the_go_reference_note_opens_with_its_verifier_key():
    name, public_key = parse_vkey(GO_VKEY)
    assert name == "PeterNeumann"
    assert key_id(name, public_key).hex() == "c74f20a3"
    assert vkey(name, public_key) == GO_VKEY
    assert open_note(GO_NOTE, name, public_key) == GO_TEXT


def test_signatures_by_other_keys_are_ignored():
    name, public_key = parse_vkey(GO_VKEY)
    assert open_note(GO_TEXT + "\n" + GO_ENOCH_SIG + GO_SIG, name, public_key) == GO_TEXT


def test_a_note_signed_only_by_another_key_is_refused():
    name, public_key = parse_vkey(GO_VKEY)
    with pytest.raises(NoteError, match="unknown key"):
        open_note(GO_TEXT + "\n" + GO_ENOCH_SIG, name, public_key)


def test_checkpoint_round_trip(signer):
    private_key, public_key = signer
    body = checkpoint_body(ORIGIN, 42, ROOT)
    assert body == f"{ORIGIN}\n42\n{base64.b64encode(ROOT).decode()}\n"
    note = sign_note(body, ORIGIN, private_key)
    assert note.startswith(body + "\n\u2014 " + ORIGIN + " ")
    assert parse_checkpoint(open_note(note, ORIGIN, public_key)) == Checkpoint(ORIGIN, 42, ROOT, ())


def test_signature_line_carries_key_id_and_signature(signer):
    private_key, public_key = signer
    body = checkpoint_body(ORIGIN, 1, ROOT)
    blob = base64.b64decode(sign_note(body, ORIGIN, private_key).splitlines()[-1].split(" ")[2])
    assert blob[:4] == key_id(ORIGIN, public_key)
    assert len(blob) == 4 + 64


def test_tampered_body_is_refused(signer):
    private_key, public_key = signer
    note = sign_note(checkpoint_body(ORIGIN, 42, ROOT), ORIGIN, private_key)
    with pytest.raises(NoteError, match="invalid signature"):
        open_note(note.replace("\n42\n", "\n43\n"), ORIGIN, public_key)


def test_tampered_signature_is_refused(signer):
    private_key, public_key = signer
    note = sign_note(checkpoint_body(ORIGIN, 42, ROOT), ORIGIN, private_key)
    body, line = note.rsplit("\n\u2014 ", 1)
    name, blob_text = line.split(" ")
    blob = bytearray(base64.b64decode(blob_text))
    blob[10] ^= 0x01
    tampered = f"{body}\n\u2014 {name} {base64.b64encode(bytes(blob)).decode()}\n"
    with pytest.raises(NoteError, match="invalid signature"):
        open_note(tampered, ORIGIN, public_key)


def test_another_key_name_or_key_is_refused(signer):
    private_key, public_key = signer
    note = sign_note(checkpoint_body(ORIGIN, 42, ROOT), ORIGIN, private_key)
    with pytest.raises(NoteError, match="unknown key"):
        open_note(note, "other.example.com/ledger", public_key)
    with pytest.raises(NoteError, match="unknown key"):
        open_note(note, ORIGIN, raw_public_key(Ed25519PrivateKey.generate()))
    renamed = note.replace(f"\u2014 {ORIGIN} ", "\u2014 other.example.com/ledger ")
    with pytest.raises(NoteError, match="unknown key"):
        open_note(renamed, ORIGIN, public_key)


def test_a_forged_signature_under_our_key_id_rejects_the_note(signer):
    # The key id is only an identifier: a forger can match it, never the signature.
    private_key, public_key = signer
    body = checkpoint_body(ORIGIN, 42, ROOT)
    forged_blob = key_id(ORIGIN, public_key) + Ed25519PrivateKey.generate().sign(body.encode())
    forged = f"{body}\n\u2014 {ORIGIN} {base64.b64encode(forged_blob).decode()}\n"
    with pytest.raises(NoteError, match="invalid signature"):
        open_note(forged, ORIGIN, public_key)
    genuine_line = sign_note(body, ORIGIN, private_key).rsplit("\n", 2)[1] + "\n"
    with pytest.raises(NoteError, match="invalid signature"):
        open_note(forged + genuine_line, ORIGIN, public_key)


@pytest.mark.parametrize(
    "note",
    [
        GO_TEXT,  # no signatures
        GO_TEXT + "\n",
        GO_TEXT + "\n" + GO_SIG[:-1],  # signature line without its newline
        "\x01" + GO_TEXT + "\n" + GO_SIG,  # control character
        GO_TEXT + "\n" + GO_SIG.replace("PeterNeumann", "Bad Name"),
        GO_TEXT + "\n" + GO_SIG + "Unexpected line.\n",
        GO_TEXT + "\n" + GO_SIG.replace("\u2014", "-"),  # a hyphen, not an em dash
        GO_TEXT + "\n" + GO_SIG.replace("AM=", "AM"),  # unpadded base64
        GO_TEXT + "\n" + GO_SIG.replace("AM=", "AN="),  # non-canonical base64
        GO_TEXT + "\n" + GO_SIG * 101,  # too many signatures
        GO_TEXT + "\n\u2014 PeterNeumann AAAA\n",  # too short to hold a key id and signature
        GO_TEXT.replace("\n", "\r\n") + "\r\n" + GO_SIG,
        b"not text",
    ],
)
def test_malformed_notes_are_refused(note):
    name, public_key = parse_vkey(GO_VKEY)
    with pytest.raises(NoteError):
        open_note(note, name, public_key)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("", "newline"),
        (f"{ORIGIN}\n42\n{base64.b64encode(ROOT).decode()}", "newline"),  # no final newline
        (f"{ORIGIN}\n42\n", "origin, a size and a root"),
        (f"\n42\n{base64.b64encode(ROOT).decode()}\n", "origin is empty"),
        (f"{ORIGIN}\n042\n{base64.b64encode(ROOT).decode()}\n", "decimal"),
        (f"{ORIGIN}\n-1\n{base64.b64encode(ROOT).decode()}\n", "decimal"),
        (f"{ORIGIN}\n4 2\n{base64.b64encode(ROOT).decode()}\n", "decimal"),
        (f"{ORIGIN}\n\u0664\u0662\n{base64.b64encode(ROOT).decode()}\n", "decimal"),
        (f"{ORIGIN}\n42\n{base64.b64encode(ROOT[:31]).decode()}\n", "32 bytes"),
        (f"{ORIGIN}\n42\n{ROOT.hex()}\n", "32 bytes"),  # hex is base64 of 48 bytes
        (f"{ORIGIN}\n42\n{ROOT.hex()[:-1]}!\n", "base64"),
        (f"{ORIGIN}\n42\n{base64.b64encode(ROOT).decode()}\n\n", "empty extension"),
        (f"{ORIGIN}\n42\n{base64.b64encode(ROOT).decode()}\t\n", "newline"),
    ],
)
def test_malformed_checkpoints_are_refused(body, problem):
    with pytest.raises(NoteError, match=problem):
        parse_checkpoint(body)


def test_checkpoint_extension_lines_are_kept():
    body = checkpoint_body(ORIGIN, 0, ROOT) + "ext one\next two\n"
    assert parse_checkpoint(body).extensions == ("ext one", "ext two")


def test_checkpoint_body_refuses_what_it_could_not_parse_back():
    for origin, size, root in [("", 1, ROOT), ("a\nb", 1, ROOT), (ORIGIN, -1, ROOT)]:
        with pytest.raises(NoteError):
            checkpoint_body(origin, size, root)
    with pytest.raises(NoteError):
        checkpoint_body(ORIGIN, 1, ROOT[:31])


def test_sign_note_refuses_bad_names_and_text(signer):
    private_key, _ = signer
    for name in ["", "a b", "a+b", "tab\tname"]:
        with pytest.raises(NoteError):
            sign_note("text\n", name, private_key)
    with pytest.raises(NoteError):
        sign_note("no final newline", ORIGIN, private_key)


def test_vkey_round_trip(signer):
    _, public_key = signer
    text = vkey(ORIGIN, public_key)
    assert text.startswith(f"{ORIGIN}+{key_id(ORIGIN, public_key).hex()}+")
    assert parse_vkey(text) == (ORIGIN, public_key)
    assert parse_vkey(text + "\n") == (ORIGIN, public_key)


def test_mangled_verifier_keys_are_refused():
    # As Go's TestNewVerifier: every proper substring and every one-byte change.
    for i in range(len(GO_VKEY)):
        for j in range(i + 1, len(GO_VKEY) + 1):
            if (i, j) != (0, len(GO_VKEY)):
                with pytest.raises(NoteError):
                    parse_vkey(GO_VKEY[i:j])
    for i in range(len(GO_VKEY)):
        changed = GO_VKEY[:i] + chr(ord(GO_VKEY[i]) + 1) + GO_VKEY[i + 1 :]
        with pytest.raises(NoteError):
            parse_vkey(changed)
    # A wrong-length key and an unknown algorithm, each with its key id adjusted (Go's cases).
    for bad in [
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ]:
        with pytest.raises(NoteError):
            parse_vkey(bad)
