"""From verified duplicate pairs to the kept document of every document, in two modes.

``components``: union-find (connected components); every cluster keeps one document. Transitive:
A ~ B and B ~ C put A and C in one cluster even when A and C are below the threshold ("chaining"),
so C may be removed for A although it is no near-duplicate of A.

``star``: documents are taken in keep order (first, or best score); a document is removed only when
one of its verified pairs is with a document that is kept, and that document becomes its
``duplicate_of``. Nothing chains: every removed document is within the threshold of the document
kept in its place. A document whose only duplicates were themselves removed stays.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from llm_dedup.minhash import bucket_pairs, unique_pairs


def keep_rank(num_docs: int, scores: np.ndarray | None) -> np.ndarray:
    """Position of each document in keep order (0 = kept first): input order, or highest score first
    (ties and missing scores go to the lowest row)."""
    rows = np.arange(num_docs)
    if scores is None:
        return rows
    descending = -np.nan_to_num(scores.astype(float), nan=-np.inf)  # a missing score ranks last
    rank = np.empty(num_docs, dtype=np.int64)
    rank[np.lexsort((rows, descending))] = rows
    return rank


def union_find_clusters(num_docs: int, edges: np.ndarray) -> np.ndarray:
    """Connected-component label of every document (scipy's union-find over a sparse graph)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(edges), dtype=np.int8), (edges[:, 0], edges[:, 1])),
                       shape=(num_docs, num_docs))
    return connected_components(graph, directed=False)[1]


def component_keepers(labels: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """The kept document of each document's component: the best-ranked member."""
    order = np.lexsort((rank, labels))
    sorted_labels = labels[order]
    first_of_label = np.concatenate([[True], sorted_labels[1:] != sorted_labels[:-1]])
    keeper_of_label = np.empty(labels.max() + 1 if len(labels) else 0, dtype=np.int64)
    keeper_of_label[sorted_labels[first_of_label]] = order[first_of_label]
    return keeper_of_label[labels]


def star_keepers(num_docs: int, edges: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """The kept document of each document without chaining (see the module docstring)."""
    keepers = np.arange(num_docs)
    if not len(edges):
        return keepers
    a, b = edges[:, 0], edges[:, 1]
    a_first = rank[a] < rank[b]
    better, worse = np.where(a_first, a, b), np.where(a_first, b, a)
    # Every document's pairs with better-ranked documents, in keep order of both ends: a better
    # document is decided before any document it could remove.
    order = np.lexsort((rank[better], rank[worse]))
    removed = np.zeros(num_docs, dtype=bool)
    for kept_candidate, doc in zip(better[order].tolist(), worse[order].tolist(), strict=True):
        if not removed[doc] and not removed[kept_candidate]:
            removed[doc] = True
            keepers[doc] = kept_candidate
    return keepers


def cluster_quality(keepers: np.ndarray, known_pairs: np.ndarray, known_similarity: np.ndarray | None,
                    threshold: float, jaccard_of: Callable[[np.ndarray], np.ndarray],
                    max_cluster_size: int = 100) -> dict[str, float | int]:
    """How many pairs inside the clusters (a kept document and the documents removed for it) fall
    below the threshold, and how many removed documents are below it to their own kept document.

    Similarities of verified pairs are reused; the others are computed with ``jaccard_of``.
    Clusters larger than ``max_cluster_size`` are left out of the pair count (and counted).
    """
    rows = np.arange(len(keepers))
    sizes = np.bincount(keepers, minlength=len(keepers))
    inside = sizes[keepers] > 1
    counted = inside & (sizes[keepers] <= max_cluster_size)
    pairs, _, _ = bucket_pairs(keepers[counted].astype(np.uint64), rows[counted], max_cluster_size)
    pairs = unique_pairs(pairs)
    removed = np.flatnonzero(keepers != rows)
    to_keeper = np.sort(np.stack([removed, keepers[removed]], 1), axis=1)
    similarity = _similarities(np.concatenate([pairs, to_keeper]), known_pairs, known_similarity, jaccard_of)
    below = similarity < threshold
    return {"cluster_pairs": len(pairs), "cluster_pairs_below_threshold": int(below[:len(pairs)].sum()),
            "cluster_pair_precision": round(1 - below[:len(pairs)].mean(), 6) if len(pairs) else 1.0,
            "removed_below_threshold_to_kept": int(below[len(pairs):].sum()),
            "clusters_too_large_to_count": int((sizes > max_cluster_size).sum())}


def _similarities(pairs: np.ndarray, known_pairs: np.ndarray, known_similarity: np.ndarray | None,
                  jaccard_of: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    keys = (pairs[:, 0] << 32) | pairs[:, 1]
    similarity = np.full(len(pairs), np.nan)
    if known_similarity is not None and len(known_pairs):
        known = (known_pairs[:, 0] << 32) | known_pairs[:, 1]
        order = np.argsort(known)
        at = np.minimum(np.searchsorted(known[order], keys), len(known) - 1)
        found = known[order][at] == keys
        similarity[found] = known_similarity[order][at[found]]
    missing = np.isnan(similarity)
    if missing.any():
        similarity[missing] = jaccard_of(pairs[missing])
    return similarity
