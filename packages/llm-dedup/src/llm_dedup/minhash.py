"""Vectorized MinHash signatures, LSH band keys and bucket pairs, and the bands x rows search.

Each of the ``num_perm`` permutations is the affine map ``h(x) = (a * x + b) mod p`` over the
Mersenne prime ``p = 2**61 - 1``, as in datasketch, but with ``a, b < 2**32`` so that for 32-bit
shingle hashes ``a * x + b < 2**64``: the map is computed exactly in uint64 (no overflow), and
``mod p`` is a shift-and-add fold. All permutations of a block of shingles are one broadcast.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from llm_dedup.shingles import ShingleSets

MERSENNE_61 = np.uint64((1 << 61) - 1)
EMPTY = np.uint32(0xFFFFFFFF)  # the signature value of a document with no shingle
BLOCK_ELEMENTS = 1 << 17  # shingles x permutations per broadcast: 1 MiB of uint64 stays in cache


class MinHasher:
    """``num_perm`` seeded permutations; ``signatures(sets)`` gives one uint32 row per document."""

    def __init__(self, num_perm: int = 128, seed: int = 1):
        rng = np.random.default_rng(seed)
        self.num_perm = num_perm
        self.seed = seed
        self.a = rng.integers(1, 1 << 32, size=num_perm, dtype=np.uint64)
        self.b = rng.integers(0, 1 << 32, size=num_perm, dtype=np.uint64)

    def permute(self, hashes: np.ndarray) -> np.ndarray:
        """(len(hashes), num_perm) permuted values: the low 32 bits of ``(a * x + b) mod p``."""
        x = np.multiply(hashes.astype(np.uint64)[:, None], self.a[None, :])
        x += self.b[None, :]
        # One Mersenne fold, (v & p) + (v >> 61), keeps the low 32 bits that datasketch keeps too; as
        # p's low 32 bits are all ones, v & p has v's low 32 bits, so the fold is done in uint32.
        # A folded value >= p (probability 2**-58) is left unreduced, which no minimum notices.
        low = x.astype(np.uint32)
        np.right_shift(x, np.uint64(61), out=x)
        low += x.astype(np.uint32)
        return low

    def signatures(self, sets: ShingleSets) -> np.ndarray:
        """MinHash signature of every document of ``sets``; empty documents get all ``EMPTY``."""
        out = np.full((len(sets), self.num_perm), EMPTY, dtype=np.uint32)
        sizes = sets.sizes()
        block = max(1, BLOCK_ELEMENTS // self.num_perm)
        doc = 0
        while doc < len(sets):
            # Take whole documents until the block is full (at least one document per block).
            end = int(np.searchsorted(sets.offsets, sets.offsets[doc] + block, side="right")) - 1
            end = min(max(end, doc + 1), len(sets))
            lo, hi = sets.offsets[doc], sets.offsets[end]
            nonempty = np.flatnonzero(sizes[doc:end]) + doc
            if len(nonempty):
                permuted = self.permute(sets.values[lo:hi])
                out[nonempty] = np.minimum.reduceat(permuted, sets.offsets[nonempty] - lo, axis=0)
            doc = end
        return out


# Odd constants mixing a band's rows into one 64-bit bucket key.
_ROW_MULTIPLIERS = np.random.default_rng(0x5EED).integers(1, 1 << 63, size=256, dtype=np.uint64) | np.uint64(1)


def band_keys(signatures: np.ndarray, band: int, rows: int) -> np.ndarray:
    """64-bit bucket key of band ``band`` for each signature (equal rows give equal keys).

    Unequal rows collide with probability about 2**-64 per pair of documents; candidates are
    verified afterwards anyway when verification is on.
    """
    if rows > len(_ROW_MULTIPLIERS):
        raise ValueError(f"at most {len(_ROW_MULTIPLIERS)} rows per band, got {rows}")
    block = signatures[:, band * rows:(band + 1) * rows].astype(np.uint64)
    key = np.full(len(signatures), np.uint64(band), dtype=np.uint64)
    for j in range(rows):
        key = key * np.uint64(0x100000001B3) + block[:, j] * _ROW_MULTIPLIERS[j]
        key ^= key >> np.uint64(29)
    return key


def bucket_pairs(keys: np.ndarray, rows: np.ndarray, max_bucket_size: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """Pairs of global rows sharing a key, as (smaller, larger); the sizes of shared buckets; and
    what the cap left out: in a bucket of more than ``max_bucket_size`` members, each member is
    paired only with the ``max_bucket_size - 1`` members before it (so huge buckets, usually
    boilerplate, cost pairs linear in their size rather than quadratic)."""
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    members = rows[order]
    starts_group = np.concatenate([[True], sorted_keys[1:] != sorted_keys[:-1]])
    group_start = np.flatnonzero(starts_group)
    group_sizes = np.diff(np.concatenate([group_start, [len(keys)]]))
    position = np.arange(len(keys)) - np.repeat(group_start, group_sizes)  # index within the bucket
    reach = np.minimum(position, max_bucket_size - 1)  # members before this one it is paired with
    member = np.repeat(np.arange(len(keys)), reach)
    back = np.arange(len(member)) - np.repeat(np.cumsum(reach) - reach, reach) + 1
    pairs = np.stack([members[member - back], members[member]], 1)
    pairs.sort(axis=1)
    big = group_sizes[group_sizes > max_bucket_size].astype(np.int64)
    emitted_in_big = (max_bucket_size * (max_bucket_size - 1)) // 2 + (big - max_bucket_size) * (max_bucket_size - 1)
    capped = {"buckets": len(big), "pairs_not_emitted": int((big * (big - 1) // 2 - emitted_in_big).sum())}
    return pairs.astype(np.int64), group_sizes[group_sizes > 1], capped


def unique_pairs(pairs: np.ndarray) -> np.ndarray:
    """Distinct (smaller, larger) row pairs, sorted; one 64-bit key per pair (rows below 2**32)."""
    keys = np.unique((pairs[:, 0].astype(np.int64) << 32) | pairs[:, 1].astype(np.int64))
    return np.stack([keys >> 32, keys & 0xFFFFFFFF], 1)


def candidate_probability(similarity: np.ndarray | float, bands: int, rows: int) -> np.ndarray:
    """Chance that two documents of Jaccard ``similarity`` share at least one band."""
    return 1.0 - (1.0 - np.asarray(similarity, dtype=float) ** rows) ** bands


@lru_cache(maxsize=64)
def optimal_bands(threshold: float, num_perm: int, false_positive_weight: float = 0.5,
                  false_negative_weight: float = 0.5) -> tuple[int, int]:
    """(bands, rows) with bands * rows <= num_perm minimizing the weighted error areas.

    The false-positive area is the candidate probability integrated below the threshold, the
    false-negative area one minus it integrated above (datasketch's criterion, integrated here
    with the trapezoid rule on a fine grid rather than adaptive quadrature).
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    below = np.linspace(0.0, threshold, 1001)
    above = np.linspace(threshold, 1.0, 1001)
    best, best_error = (1, 1), float("inf")
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            fp = np.trapezoid(candidate_probability(below, bands, rows), below)
            fn = np.trapezoid(1.0 - candidate_probability(above, bands, rows), above)
            error = false_positive_weight * fp + false_negative_weight * fn
            if error < best_error:
                best, best_error = (bands, rows), error
    return best


@lru_cache(maxsize=64)
def recall_target_bands(threshold: float, num_perm: int, recall: float) -> tuple[int, int]:
    """(bands, rows) with bands * rows <= num_perm under which a pair exactly at the threshold (the
    hardest true pair) becomes a candidate with probability at least ``recall``, choosing among
    those the fewest false candidates (smallest candidate probability integrated below the
    threshold; for each number of rows, the fewest bands that reach the target)."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    below = np.linspace(0.0, threshold, 1001)
    best, best_fp = None, float("inf")
    for rows in range(1, num_perm + 1):
        hit = threshold ** rows
        bands = int(np.ceil(np.log1p(-recall) / np.log1p(-hit))) if hit < 1 else 1
        if bands * rows > num_perm:
            continue
        bands = max(bands, 1)
        while candidate_probability(threshold, bands, rows) < recall:  # guard the float rounding of ceil
            bands += 1
        if bands * rows > num_perm:
            continue
        fp = float(np.trapezoid(candidate_probability(below, bands, rows), below))
        if fp < best_fp:
            best, best_fp = (bands, rows), fp
    if best is None:
        raise ValueError(f"no bands x rows within num_perm = {num_perm} reaches recall {recall} at Jaccard "
                         f"{threshold}; raise num_perm or lower recall_target")
    return best
