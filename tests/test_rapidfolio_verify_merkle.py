"""RFC 9162 Merkle hashing, proofs and verifiers of rapidfolio_verify.merkle.

Known-answer vectors are the RFC 6962 ones from transparency-dev/merkle (proof/verify_test.go:
`leaves`, `roots`, `inclusionProofs`, `consistencyProofs`), the same data Certificate
Transparency's tests use. The exhaustive checks compare the iterative generators with a direct
transcription of the RFC's recursive definitions, and the verifiers against every proof of
every tree up to 33 leaves, honest and mangled.
"""

import hashlib
import random

import pytest

from rapidfolio_verify.merkle import (
    EMPTY_ROOT,
    consistency_proof,
    inclusion_proof,
    largest_power_of_two_below,
    leaf_hash,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)

LEAVES = [
    bytes.fromhex(h)
    for h in [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]
ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",  # size 0: SHA-256("")
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
# (0-based leaf index, tree size, PATH); transparency-dev numbers the leaves from 1.
INCLUSION_VECTORS = [
    (0, 1, []),
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
CONSISTENCY_VECTORS = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]
MAX_SIZE = 33


def hashes(hex_list):
    return [bytes.fromhex(h) for h in hex_list]


def subtrees(leaf_hashes):
    """The `subtree_hash` callback over an in-memory tree."""
    return lambda start, end: root(leaf_hashes[start:end])


# A transcription of RFC 9162 §2.1.3.1 and §2.1.4.1, recursion and all, to check the
# iterative generators against.
def reference_path(m, d):
    if len(d) == 1:
        return []
    k = largest_power_of_two_below(len(d))
    if m < k:
        return reference_path(m, d[:k]) + [root(d[k:])]
    return reference_path(m - k, d[k:]) + [root(d[:k])]


def reference_subproof(m, d, b):
    n = len(d)
    if m == n:
        return [] if b else [root(d)]
    k = largest_power_of_two_below(n)
    if m <= k:
        return reference_subproof(m, d[:k], b) + [root(d[k:])]
    return reference_subproof(m - k, d[k:], False) + [root(d[:k])]


TREE = [leaf_hash(b"leaf %d" % i) for i in range(MAX_SIZE)]
ROOT_OF = [root(TREE[:n]) for n in range(MAX_SIZE + 1)]
CONSISTENCY = {
    (m, n): consistency_proof(m, n, subtrees(TREE[:n]))
    for n in range(1, MAX_SIZE + 1)
    for m in range(1, n + 1)
}


def manglings(proof):
    """Every proof that differs from `proof` by one flipped byte, one dropped element, one
    appended, prepended or duplicated element, or two swapped elements."""
    for i, element in enumerate(proof):
        for position in range(32):
            flipped = bytearray(element)
            flipped[position] ^= 0x01
            yield proof[:i] + [bytes(flipped)] + proof[i + 1 :]
        yield proof[:i] + proof[i + 1 :]
        yield proof[:i] + [element] + proof[i:]
    for i in range(len(proof) - 1):
        if proof[i] != proof[i + 1]:
            yield proof[:i] + [proof[i + 1], proof[i]] + proof[i + 2 :]
    yield proof + [EMPTY_ROOT]
    yield [EMPTY_ROOT] + proof


def test_leaf_and_node_hashes_are_domain_separated():
    assert leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    assert leaf_hash(b"").hex() == ROOTS[1]
    left, right = b"a" * 32, b"b" * 32
    assert node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()
    assert hashlib.sha256(b"").digest() == EMPTY_ROOT
    # The second preimage the prefixes prevent: a node's children passed off as a leaf.
    assert leaf_hash(left + right) != node_hash(left, right)


@pytest.mark.parametrize("size", range(len(ROOTS)))
def test_roots_match_the_rfc6962_vectors(size):
    assert root([leaf_hash(leaf) for leaf in LEAVES[:size]]).hex() == ROOTS[size]


def test_largest_power_of_two_below():
    assert [largest_power_of_two_below(n) for n in range(2, 10)] == [1, 2, 2, 4, 4, 4, 4, 8]
    assert largest_power_of_two_below(2**40 + 1) == 2**40
    with pytest.raises(ValueError):
        largest_power_of_two_below(1)


@pytest.mark.parametrize(("index", "size", "path"), INCLUSION_VECTORS)
def test_inclusion_proofs_match_the_vectors(index, size, path):
    tree = [leaf_hash(leaf) for leaf in LEAVES[:size]]
    proof = inclusion_proof(index, size, subtrees(tree))
    assert proof == hashes(path)
    assert verify_inclusion(index, size, tree[index], proof, bytes.fromhex(ROOTS[size]))


@pytest.mark.parametrize(("old_size", "new_size", "proof_hex"), CONSISTENCY_VECTORS)
def test_consistency_proofs_match_the_vectors(old_size, new_size, proof_hex):
    tree = [leaf_hash(leaf) for leaf in LEAVES[:new_size]]
    proof = consistency_proof(old_size, new_size, subtrees(tree))
    assert proof == hashes(proof_hex)
    old_root, new_root = bytes.fromhex(ROOTS[old_size]), bytes.fromhex(ROOTS[new_size])
    assert verify_consistency(old_size, new_size, old_root, new_root, proof)


def test_generators_agree_with_the_rfc_definitions():
    for size in range(1, MAX_SIZE + 1):
        tree = TREE[:size]
        for index in range(size):
            assert inclusion_proof(index, size, subtrees(tree)) == reference_path(index, tree)
        for old_size in range(1, size + 1):
            assert consistency_proof(old_size, size, subtrees(tree)) == reference_subproof(
                old_size, tree, True
            )


def test_generators_refuse_impossible_requests():
    callback = subtrees(TREE)
    for index, size in [(0, 0), (3, 3), (-1, 4)]:
        with pytest.raises(ValueError):
            inclusion_proof(index, size, callback)
    for old_size, new_size in [(5, 4), (-1, 3)]:
        with pytest.raises(ValueError):
            consistency_proof(old_size, new_size, callback)
    assert consistency_proof(0, 5, callback) == []


def test_every_inclusion_proof_verifies_and_every_mangling_fails():
    for size in range(1, MAX_SIZE + 1):
        tree, tree_root = TREE[:size], ROOT_OF[size]
        for index in range(size):
            proof = inclusion_proof(index, size, subtrees(tree))
            assert verify_inclusion(index, size, tree[index], proof, tree_root)
            for bad in manglings(proof):
                assert not verify_inclusion(index, size, tree[index], bad, tree_root)
            assert not verify_inclusion(index, size, leaf_hash(b"other"), proof, tree_root)
            assert not verify_inclusion(index, size, tree[index], proof, ROOT_OF[size - 1])
            # Any other leaf of this tree; transparency-dev's wrong sizes.
            for other in [i for i in range(-1, size + 1) if i != index] + [index ^ 2]:
                if other != index:
                    assert not verify_inclusion(other, size, tree[index], proof, tree_root)
            for other_size in (size * 2, size // 2):
                assert not verify_inclusion(index, other_size, tree[index], proof, tree_root)
            # A root commits to its leaves, not to its size (the signed checkpoint does), so
            # the proof is checked against each other size with that tree's own root.
            for other_size in range(index + 1, MAX_SIZE + 1):
                if other_size != size:
                    root_there = ROOT_OF[other_size]
                    assert not verify_inclusion(index, other_size, tree[index], proof, root_there)


def test_every_consistency_proof_verifies_and_every_mangling_fails():
    for new_size in range(1, MAX_SIZE + 1):
        new_root = ROOT_OF[new_size]
        for old_size in range(1, new_size + 1):
            old_root = ROOT_OF[old_size]
            proof = CONSISTENCY[old_size, new_size]
            assert verify_consistency(old_size, new_size, old_root, new_root, proof)
            for bad in manglings(proof):
                assert not verify_consistency(old_size, new_size, old_root, new_root, bad)
            if old_size != new_size:
                assert not verify_consistency(old_size, new_size, new_root, old_root, proof)
                assert not verify_consistency(old_size, new_size, old_root, new_root, [])
            assert not verify_consistency(old_size, new_size, EMPTY_ROOT, new_root, proof)
            assert not verify_consistency(old_size, new_size, old_root, EMPTY_ROOT, proof)
            # transparency-dev's wrong sizes, with the proof's own roots...
            for bad_old, bad_new in [
                (old_size - 1, new_size),
                (old_size + 1, new_size),
                (old_size ^ 2, new_size),
                (old_size, new_size * 2),
                (old_size, new_size // 2),
            ]:
                if (bad_old, bad_new) != (old_size, new_size):
                    assert not verify_consistency(bad_old, bad_new, old_root, new_root, proof)
            # ...and other pairs of sizes with their own trees' roots: those claims are true,
            # but only their own proof may prove them (two equal sizes share the empty one).
            for other_old in range(1, MAX_SIZE + 1):
                for other_new in {new_size, other_old, MAX_SIZE}:
                    if other_old <= other_new and (other_old, other_new) != (old_size, new_size):
                        roots = ROOT_OF[other_old], ROOT_OF[other_new]
                        own = CONSISTENCY[other_old, other_new] == proof
                        assert verify_consistency(other_old, other_new, *roots, proof) is own


GOOD_HASH = TREE[0]


@pytest.mark.parametrize(
    ("index", "size", "leaf", "proof", "tree_root"),
    [
        (0, 0, GOOD_HASH, [], GOOD_HASH),  # the empty tree has no leaves
        (1, 1, GOOD_HASH, [], GOOD_HASH),  # index >= size
        (-1, 1, GOOD_HASH, [], GOOD_HASH),
        (True, 2, TREE[1], [TREE[0]], ROOT_OF[2]),  # a bool is not an index
        (0, 1.0, GOOD_HASH, [], GOOD_HASH),
        ("0", 1, GOOD_HASH, [], GOOD_HASH),
        (0, 1, GOOD_HASH[:31], [], GOOD_HASH[:31]),  # short hashes
        (0, 1, GOOD_HASH + b"\x00", [], GOOD_HASH + b"\x00"),
        (0, 1, GOOD_HASH.hex(), [], GOOD_HASH.hex()),  # hex text, not bytes
        (0, 1, bytearray(GOOD_HASH), [], GOOD_HASH),
        (0, 2, TREE[0], [TREE[1][:31]], ROOT_OF[2]),
        (0, 2, TREE[0], [TREE[1].hex()], ROOT_OF[2]),
        (0, 2, TREE[0], TREE[1], ROOT_OF[2]),  # bytes, not a list of hashes
        (0, 2, TREE[0], None, ROOT_OF[2]),
        (0, 2, TREE[0], iter([TREE[1]]), ROOT_OF[2]),
        (0, 1, GOOD_HASH, [b""], GOOD_HASH),  # trailing garbage
        (2**64, 2**64 + 1, GOOD_HASH, [GOOD_HASH] * 65, GOOD_HASH),
    ],
)
def test_verify_inclusion_rejects_hostile_input(index, size, leaf, proof, tree_root):
    assert verify_inclusion(index, size, leaf, proof, tree_root) is False


@pytest.mark.parametrize(
    ("old_size", "new_size", "old_root", "new_root", "proof"),
    [
        (2, 1, ROOT_OF[2], ROOT_OF[1], []),  # old_size > new_size
        (1, 0, ROOT_OF[1], EMPTY_ROOT, []),
        (0, 0, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT]),  # size 0 with a non-empty proof
        (0, 3, EMPTY_ROOT, ROOT_OF[3], [ROOT_OF[3]]),
        (0, 3, ROOT_OF[1], ROOT_OF[3], []),  # size 0 with a root that is not the empty root
        (0, 0, EMPTY_ROOT, ROOT_OF[1], []),
        (3, 3, ROOT_OF[3], ROOT_OF[3], [ROOT_OF[3]]),  # equal sizes with a proof
        (3, 3, ROOT_OF[3], ROOT_OF[2], []),  # equal sizes, different roots
        (1, 2, ROOT_OF[1], ROOT_OF[2], []),  # missing proof
        (-1, 2, ROOT_OF[1], ROOT_OF[2], [TREE[1]]),
        (True, 2, ROOT_OF[1], ROOT_OF[2], [TREE[1]]),
        (1, 2.0, ROOT_OF[1], ROOT_OF[2], [TREE[1]]),
        (1, 2, ROOT_OF[1][:31], ROOT_OF[2], [TREE[1]]),
        (1, 2, ROOT_OF[1], ROOT_OF[2].hex(), [TREE[1]]),
        (1, 2, ROOT_OF[1], ROOT_OF[2], [TREE[1].hex()]),
        (1, 2, ROOT_OF[1], ROOT_OF[2], TREE[1]),
        (1, 2, ROOT_OF[1], ROOT_OF[2], None),
        (1, 2, ROOT_OF[1], ROOT_OF[2], [TREE[1], b""]),
        (3, 2**64, ROOT_OF[3], GOOD_HASH, [GOOD_HASH] * 70),
    ],
)
def test_verify_consistency_rejects_hostile_input(old_size, new_size, old_root, new_root, proof):
    assert verify_consistency(old_size, new_size, old_root, new_root, proof) is False


def test_trivial_consistency_holds():
    # The empty tree is a prefix of every tree; a tree is consistent with itself.
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert verify_consistency(0, 5, EMPTY_ROOT, ROOT_OF[5], [])
    assert verify_consistency(5, 5, ROOT_OF[5], ROOT_OF[5], [])


def test_verifiers_never_raise_on_random_input():
    rng = random.Random(9162)
    for _ in range(3000):
        size = rng.randrange(-2, 40)
        index = rng.randrange(-2, 40)
        proof = [rng.randbytes(rng.choice([31, 32, 32, 32, 33])) for _ in range(rng.randrange(8))]
        a, b = rng.choice(ROOT_OF), rng.choice(ROOT_OF + [b"", b"x" * 32])
        assert isinstance(verify_inclusion(index, size, rng.choice(TREE), proof, a), bool)
        assert isinstance(verify_consistency(index, size, a, b, proof), bool)


def test_proofs_of_a_huge_tree_verify():
    # A tree of identical leaves: a subtree's root depends only on its size, so trees far too
    # big to build still have known roots, and the proofs' arithmetic meets 64-bit sizes.
    memo = {1: leaf_hash(b"same")}

    def mth(n):
        if n not in memo:
            k = largest_power_of_two_below(n)
            memo[n] = node_hash(mth(k), mth(n - k))
        return memo[n]

    def subtree(start, end):
        return mth(end - start)

    size = 2**62 + 2**40 + 12345
    for index in (0, 1, 2**40, size // 3, size - 2, size - 1):
        proof = inclusion_proof(index, size, subtree)
        assert verify_inclusion(index, size, mth(1), proof, mth(size))
        assert not verify_inclusion(index, size, mth(1), proof[:-1], mth(size))
    for old_size in (1, 2**40, 2**62, 2**62 + 1, size // 3, size - 1):
        proof = consistency_proof(old_size, size, subtree)
        assert verify_consistency(old_size, size, mth(old_size), mth(size), proof)
        assert not verify_consistency(old_size, size, mth(old_size), mth(size), proof + proof[:1])
