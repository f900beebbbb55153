"""Test corpora with known near-duplicates, and pair precision / recall against exact Jaccard.

Documents are assembled from real sentences (gensim's bundled news and Wikipedia samples, or any
list given); a share of them gets a near-duplicate made by random word substitutions, insertions,
deletions and sentence reorderings, applied until the exact Jaccard similarity of the two
shingle sets falls to a target drawn from a range. The ground truth is computed here with plain
Python sets of word n-grams, independently of the numpy shingler the dedup stages use.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

WORD_RE = re.compile(r"\w+")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def gensim_sentences(min_words: int = 6, max_words: int = 60) -> list[str]:
    """Real English sentences from gensim's test data: 300 Lee news articles and 206 Wikipedia pages
    (markup stripped). Long "sentences" (tables, lists) are left out: one of them would make every
    document that draws it a near-duplicate of the others. Needs ``gensim`` (a dev dependency, not
    one of this package)."""
    import bz2

    from gensim.corpora.wikicorpus import extract_pages, filter_wiki
    from gensim.test.utils import datapath

    with open(datapath("lee_background.cor"), encoding="utf-8") as handle:
        texts = handle.read().splitlines()
    wiki = datapath("enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2")
    with bz2.open(wiki) as handle:
        texts += [filter_wiki(page[1]) for page in extract_pages(handle)]
    sentences = []
    for text in texts:
        for sentence in SENTENCE_END.split(" ".join(text.split())):
            words = sentence.split()
            letters = sum(c.isalpha() for c in sentence)
            if min_words <= len(words) <= max_words and letters > 0.7 * len(sentence):
                sentences.append(sentence)
    return list(dict.fromkeys(sentences))  # exact repeats in the sources would be accidental duplicates


def shingle_set(text: str, ngram: int = 5) -> set[tuple[str, ...]]:
    """Word n-grams of the lowercased text; a shorter text is one n-gram of all its words."""
    words = WORD_RE.findall(text.lower())
    if len(words) < ngram:
        return {tuple(words)} if words else set()
    return {tuple(words[i:i + ngram]) for i in range(len(words) - ngram + 1)}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 0.0


@dataclass(frozen=True)
class NearDuplicateCorpus:
    texts: list[str]
    pairs: list[tuple[int, int, float]]  # (original, near-duplicate, exact Jaccard), original first


def near_duplicate_corpus(sentences: Sequence[str], num_docs: int, duplicate_fraction: float = 0.1,
                          similarity_range: tuple[float, float] = (0.5, 1.0), min_words: int = 100,
                          max_words: int = 400, ngram: int = 5, seed: int = 0,
                          max_copies: int = 1) -> NearDuplicateCorpus:
    """``num_docs`` documents; ``duplicate_fraction`` of them are near-duplicates of another one,
    at exact Jaccard similarities spread over ``similarity_range``, placed at random positions.

    With ``max_copies`` 1, each original gets at most one near-duplicate, so every similarity in
    the corpus is one that was controlled. With more, an original gets 1 to ``max_copies`` edited
    copies, each at its own target similarity to it; the copies' similarities to each other are
    not controlled (only ``exact_duplicate_pairs`` knows them), and their LSH buckets hold three
    or more documents, where some pairs of a bucket pass verification and others fail."""
    if not 0 <= duplicate_fraction <= 0.5:
        raise ValueError(f"duplicate_fraction must be in [0, 0.5], got {duplicate_fraction}")
    if max_copies < 1:
        raise ValueError(f"max_copies must be at least 1, got {max_copies}")
    rng = random.Random(seed)
    vocabulary = sorted({w for s in sentences[:5000] for w in s.split()})
    num_dups = int(num_docs * duplicate_fraction)
    originals = [_assemble(sentences, rng, min_words, max_words) for _ in range(num_docs - num_dups)]
    texts: list[str | None] = [None] * num_docs
    slots = list(range(num_docs))
    rng.shuffle(slots)
    original_slots, duplicate_slots = slots[:len(originals)], slots[len(originals):]
    for slot, sentence_list in zip(original_slots, originals, strict=True):
        texts[slot] = " ".join(sentence_list)
    sources = (rng.sample(range(len(originals)), len(duplicate_slots)) if max_copies == 1
               else _copy_sources(len(originals), len(duplicate_slots), max_copies, rng))
    pairs = []
    for slot, source in zip(duplicate_slots, sources, strict=True):
        target = rng.uniform(*similarity_range)
        text, similarity = _edit_until(originals[source], target, vocabulary, rng, ngram)
        texts[slot] = text
        pairs.append((original_slots[source], slot, similarity))
    return NearDuplicateCorpus([t or "" for t in texts], pairs)


def _copy_sources(num_originals: int, num_copies: int, max_copies: int, rng: random.Random) -> list[int]:
    """The original of each copy: originals in random order, each copied 1 to ``max_copies`` times."""
    sources: list[int] = []
    for original in rng.sample(range(num_originals), num_originals):
        if len(sources) >= num_copies:
            break
        sources += [original] * rng.randint(1, max_copies)
    return sources[:num_copies]


def _assemble(sentences: Sequence[str], rng: random.Random, min_words: int, max_words: int) -> list[str]:
    goal = rng.randint(min_words, max_words)
    chosen, count = [], 0
    while count < goal:
        sentence = sentences[rng.randrange(len(sentences))]
        chosen.append(sentence)
        count += len(sentence.split())
    return chosen


def _edit_until(original: list[str], target: float, vocabulary: list[str], rng: random.Random,
                ngram: int) -> tuple[str, float]:
    """Apply random edits to a copy until its Jaccard to the original drops to ``target`` or below
    (or no further edit is needed: a target of 1.0 gives an exact copy)."""
    reference = shingle_set(" ".join(original), ngram)
    sentences = [s.split() for s in original]
    similarity = 1.0
    while similarity > target:
        _random_edit(sentences, vocabulary, rng)
        similarity = jaccard(reference, shingle_set(" ".join(" ".join(s) for s in sentences), ngram))
    return " ".join(" ".join(s) for s in sentences), similarity


def _random_edit(sentences: list[list[str]], vocabulary: list[str], rng: random.Random) -> None:
    k = rng.randrange(len(sentences))
    words = sentences[k]
    op = rng.random()
    if op < 0.35 and words:
        words[rng.randrange(len(words))] = rng.choice(vocabulary)  # substitution
    elif op < 0.6:
        words.insert(rng.randrange(len(words) + 1), rng.choice(vocabulary))  # insertion
    elif op < 0.85 and len(words) > 1:
        del words[rng.randrange(len(words))]  # deletion
    elif len(sentences) > 1:
        j = rng.randrange(len(sentences))
        sentences[k], sentences[j] = sentences[j], sentences[k]  # reordering


@dataclass(frozen=True)
class PairScores:
    precision: float
    recall: float
    predicted_pairs: int
    true_pairs: int
    found_true_pairs: int


def cluster_pairs(clusters: Iterable[Sequence[int]]) -> set[tuple[int, int]]:
    """Every pair of documents that share a predicted cluster, as (smaller, larger)."""
    pairs = set()
    for members in clusters:
        ordered = sorted(members)
        pairs.update((a, b) for i, a in enumerate(ordered) for b in ordered[i + 1:])
    return pairs


def score_pairs(predicted: set[tuple[int, int]], texts: Sequence[str], truth: Sequence[tuple[int, int, float]],
                threshold: float, ngram: int = 5) -> PairScores:
    """Precision: share of predicted pairs whose exact Jaccard reaches the threshold (computed here
    for every predicted pair). Recall: share of the true pairs (injected pairs at or above the
    threshold, plus any predicted pair that reaches it by accident) that were predicted."""
    cache: dict[int, set] = {}

    def shingles(i: int) -> set:
        if i not in cache:
            cache[i] = shingle_set(texts[i], ngram)
        return cache[i]

    correct = {p for p in predicted if jaccard(shingles(p[0]), shingles(p[1])) >= threshold}
    true_pairs = {(min(a, b), max(a, b)) for a, b, s in truth if s >= threshold} | correct
    found = len(true_pairs & predicted)
    return PairScores(precision=len(correct) / len(predicted) if predicted else 1.0,
                      recall=found / len(true_pairs) if true_pairs else 1.0,
                      predicted_pairs=len(predicted), true_pairs=len(true_pairs), found_true_pairs=found)


def exact_duplicate_pairs(texts: Sequence[str], threshold: float = 0.8, ngram: int = 5) -> list[tuple[int, int, float]]:
    """Every pair of texts whose word n-gram sets reach ``threshold`` Jaccard, found exactly (no
    sampling, no LSH): the prefix filter of all-pairs similarity joins (Bayardo et al. 2007).

    Under one global order of the shingles (rarest first), a pair with Jaccard >= t shares at least
    one shingle among the first ``|x| - ceil(t |x|) + 1`` of each set, so only pairs sharing such
    a prefix shingle are compared exactly. Shingles are ``shingle_set``'s (independent
    of the numpy shingler), hashed to 64 bits (a collision among 10**8 shingles: about 3e-4).
    """
    import numpy as np
    import xxhash

    per_doc = [np.unique(np.fromiter((xxhash.xxh64_intdigest(" ".join(g)) for g in shingle_set(t, ngram)),
                                     dtype=np.uint64)) for t in texts]
    sizes = np.array([len(s) for s in per_doc], dtype=np.int64)
    flat = np.concatenate(per_doc) if per_doc else np.zeros(0, dtype=np.uint64)
    starts = np.cumsum(sizes) - sizes
    doc = np.repeat(np.arange(len(per_doc)), sizes)
    unique, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
    order_of_unique = np.empty(len(unique), dtype=np.int64)
    order_of_unique[np.lexsort((unique, counts))] = np.arange(len(unique))  # rarest first
    rank = order_of_unique[inverse]
    by_doc_then_rank = np.lexsort((rank, doc))
    rank, doc = rank[by_doc_then_rank], doc[by_doc_then_rank]
    position = np.arange(len(doc)) - np.repeat(starts, sizes)
    prefix = sizes - np.ceil(threshold * sizes - 1e-9).astype(np.int64) + 1
    in_prefix = position < prefix[doc]
    found = []
    for a, b in sorted(_pairs_sharing(rank[in_prefix], doc[in_prefix])):
        if threshold * max(sizes[a], sizes[b]) > min(sizes[a], sizes[b]):
            continue  # length filter: Jaccard <= smaller / larger
        shared = len(np.intersect1d(flat[starts[a]:starts[a] + sizes[a]], flat[starts[b]:starts[b] + sizes[b]],
                                    assume_unique=True))
        similarity = shared / (sizes[a] + sizes[b] - shared)
        if similarity >= threshold:
            found.append((a, b, float(similarity)))
    return found


def _pairs_sharing(tokens, docs) -> set[tuple[int, int]]:
    """Distinct (smaller, larger) document pairs that hold a common token."""
    import numpy as np

    order = np.lexsort((docs, tokens))
    tokens, docs = tokens[order], docs[order]
    pairs: set[tuple[int, int]] = set()
    starts = np.flatnonzero(np.concatenate([[True], tokens[1:] != tokens[:-1]]))
    ends = np.append(starts[1:], len(tokens))
    for s, e in zip(starts[ends - starts > 1].tolist(), ends[ends - starts > 1].tolist(), strict=True):
        members = docs[s:e].tolist()
        pairs.update((a, b) for i, a in enumerate(members) for b in members[i + 1:] if a != b)
    return pairs


@dataclass(frozen=True)
class DedupScores:
    """A deduplication against the exact pairs at or above the threshold.

    ``cluster_pair_*``: over every pair of documents sharing a predicted cluster (chaining lowers
    the precision). ``removal_precision``: share of removed documents at or above the threshold to
    the document kept in their place. ``residual_pairs``: true pairs whose two documents were both
    kept (what the run left in the corpus)."""

    cluster_pair_precision: float
    cluster_pair_recall: float
    removal_precision: float
    residual_pairs: int
    predicted_pairs: int
    true_pairs: int


def score_dedup(clusters: Iterable[Sequence[int]], truth: Iterable[tuple[int, int]]) -> DedupScores:
    """Score clusters (each listed with its kept document first) against the true pairs."""
    true_pairs = {(min(a, b), max(a, b)) for a, b in truth}
    clusters = [list(c) for c in clusters if len(c) > 1]
    predicted = cluster_pairs(clusters)
    removals = [(min(c[0], r), max(c[0], r)) for c in clusters for r in c[1:]]
    removed = {r for c in clusters for r in c[1:]}
    correct = len(predicted & true_pairs)
    return DedupScores(
        cluster_pair_precision=correct / len(predicted) if predicted else 1.0,
        cluster_pair_recall=correct / len(true_pairs) if true_pairs else 1.0,
        removal_precision=sum(p in true_pairs for p in removals) / len(removals) if removals else 1.0,
        residual_pairs=sum(a not in removed and b not in removed for a, b in true_pairs),
        predicted_pairs=len(predicted), true_pairs=len(true_pairs))
