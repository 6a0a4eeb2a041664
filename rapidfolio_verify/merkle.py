"""RFC 9162 §2.1 Merkle tree hashing (the same as RFC 6962): roots, proofs and their checks.

Hashes are raw 32-byte SHA-256 values. Proofs are generated from a `subtree_hash(start, end)`
callback returning the root of leaves [start, end), so the product can answer it from stored
subtree hashes without loading the tree. The verifiers are the RFC's iterative algorithms with
strict input checks in front: they return False for anything malformed and never raise, since
a verifier that can be argued into "True" is worse than none (immudb once accepted falsified
proofs).
"""

import hashlib
from collections.abc import Callable, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

SubtreeHash = Callable[[int, int], bytes]


def leaf_hash(data: bytes) -> bytes:
    # The 0x00 / 0x01 prefixes keep a leaf from being passed off as an interior node.
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def largest_power_of_two_below(n: int) -> int:
    """The k of RFC 9162's split: the largest power of two with k < n (n must be > 1)."""
    if n < 2:
        raise ValueError(f"no power of two is below {n} in a tree split")
    return 1 << ((n - 1).bit_length() - 1)


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH over already-hashed leaves; EMPTY_ROOT for none."""
    if not leaf_hashes:
        return EMPTY_ROOT
    return _mth(leaf_hashes, 0, len(leaf_hashes))


def _mth(leaf_hashes: Sequence[bytes], start: int, end: int) -> bytes:
    if end - start == 1:
        return leaf_hashes[start]
    split = start + largest_power_of_two_below(end - start)
    return node_hash(_mth(leaf_hashes, start, split), _mth(leaf_hashes, split, end))


def inclusion_proof(index: int, size: int, subtree_hash: SubtreeHash) -> list[bytes]:
    """PATH(index, D[size]) of RFC 9162 §2.1.3.1, leaf to root."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of size {size}")
    path = []
    start, end = 0, size
    # Walk down from the root, keeping the sibling of the half that holds the leaf; the RFC
    # lists them from the leaf up, hence the reverse.
    while end - start > 1:
        split = start + largest_power_of_two_below(end - start)
        if index < split:
            path.append(subtree_hash(split, end))
            end = split
        else:
            path.append(subtree_hash(start, split))
            start = split
    path.reverse()
    return path


def consistency_proof(old_size: int, new_size: int, subtree_hash: SubtreeHash) -> list[bytes]:
    """PROOF(old_size, D[new_size]) of RFC 9162 §2.1.4.1 (empty when old_size is 0 or equal)."""
    if not 0 <= old_size <= new_size:
        raise ValueError(f"no consistency proof from size {old_size} to {new_size}")
    if old_size in (0, new_size):
        return []
    proof = []
    start, end = 0, new_size
    # SUBPROOF(m, D[start:end], b), unrolled: `whole` is b, true while the old tree is still
    # the left edge of the subtree (its root is then known to the verifier and left out).
    whole = True
    while old_size - start != end - start:
        split = start + largest_power_of_two_below(end - start)
        if old_size <= split:
            proof.append(subtree_hash(split, end))
            end = split
        else:
            proof.append(subtree_hash(start, split))
            start = split
            whole = False
    if not whole:
        proof.append(subtree_hash(start, end))
    proof.reverse()
    return proof


def _is_size(value) -> bool:
    # bool is an int subclass; True is not a tree size.
    return type(value) is int and value >= 0


def _is_hash(value) -> bool:
    return type(value) is bytes and len(value) == HASH_SIZE


def _is_proof(proof) -> bool:
    return isinstance(proof, list | tuple) and all(_is_hash(element) for element in proof)


def _inclusion_length(index: int, size: int) -> int:
    # The levels below the point where the leaf's path and the tree's right edge part, plus
    # one sibling for each left subtree above it (as transparency-dev/merkle computes it).
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def verify_inclusion(index, size, leaf_hash, proof, root) -> bool:
    """RFC 9162 §2.1.3.2: is `leaf_hash` leaf `index` of the tree of `size` with `root`?"""
    if not (_is_size(index) and _is_size(size) and index < size):
        return False
    if not (_is_hash(leaf_hash) and _is_hash(root) and _is_proof(proof)):
        return False
    if len(proof) != _inclusion_length(index, size):
        return False
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            # Step 4.b.ii: on the tree's right edge, skip the levels with no right sibling.
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def _consistency_length(old_size: int, new_size: int) -> int:
    # The old tree's largest complete left subtree (2^shift leaves) is the proof's seed: it is
    # the old root itself when old_size is a power of two, else the proof's first element.
    shift = (old_size & -old_size).bit_length() - 1
    inner = ((old_size - 1) ^ (new_size - 1)).bit_length()
    border = ((old_size - 1) >> inner).bit_count()
    seed = 0 if old_size == 1 << shift else 1
    return seed + inner - shift + border


def verify_consistency(old_size, new_size, old_root, new_root, proof) -> bool:
    """RFC 9162 §2.1.4.2: is the tree of old_size with old_root a prefix of new_size's?"""
    if not (_is_size(old_size) and _is_size(new_size) and old_size <= new_size):
        return False
    if not (_is_hash(old_root) and _is_hash(new_root) and _is_proof(proof)):
        return False
    if old_size == 0:
        # The empty tree is a prefix of every tree, with nothing to prove; but only the
        # empty tree's root is the root of size 0.
        return not proof and old_root == EMPTY_ROOT and (new_size > 0 or new_root == EMPTY_ROOT)
    if old_size == new_size:
        return not proof and old_root == new_root
    if len(proof) != _consistency_length(old_size, new_size):
        return False
    return _consistency_roots_match(old_size, new_size, old_root, new_root, proof)


def _consistency_roots_match(old_size, new_size, old_root, new_root, proof) -> bool:
    # The RFC's steps 2-7 (old_size, new_size, hashes and length already checked).
    elements = iter(proof)
    # Step 2: when old_size is a power of two the old root is the first node of the path.
    seed = old_root if old_size & (old_size - 1) == 0 else next(elements)
    fn, sn = old_size - 1, new_size - 1
    # Step 4: start above the old tree's complete left subtree, whose root is the seed.
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = seed
    for c in elements:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            # Step 6.b.iii, as in verify_inclusion.
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == old_root and sr == new_root
