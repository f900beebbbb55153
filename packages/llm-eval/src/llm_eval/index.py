"""An n-gram index over eval items: built once, saved, and matched against batches of documents.

Shared n-grams only find candidates; a candidate is then judged against the whole item. For an item
of ``L`` normalized tokens (``llm_eval.ngrams``):

* the candidates are documents sharing an exact n-gram with it: n = 13 (``n``) for long items
  (``L >= 2n + 1``), ``min_n`` = 8 for shorter ones. One edit cannot destroy every n-gram of an item
  at least ``2n + 1`` tokens long (so a copy with one replaced word is always a candidate), hence
  the shorter grams for short items;
* items of at least ``ngram_min_tokens`` (40) tokens follow the classic rule of GPT-3 and lm-eval's
  janitor: any shared 13-gram flags the document (a partial quote too). A 13-gram is a small part
  of such an item, so sharing one is evidence of copying;
* shorter items must be there whole: the window aligned with the item (the offset most shared
  grams agree on, widened by ``slack`` = max(2, L / 10) tokens each side) must hold at least
  ``overlap`` (0.8) of the item's tokens (as a bag of words), and the window without the slack
  every number of the item. Here a 13-gram is a third of the item or more, and templated problems
  share that much: the same sentence with other numbers is a different problem, not a copy.

Items shorter than ``min_tokens`` are not indexed (too short to tell from ordinary text); the index
counts them. A gram found in more than ``max_items_per_gram`` items is the benchmark's own template
("A: Let's think step by step. We refer to Wikipedia articles on"), not an item's content, and is
left out. Documents are matched in batches: their token ids (0 for a word no eval item contains: no
gram through it can match) are concatenated, every window is hashed at once with numpy, and only
windows whose hash is in the index are verified token by token.
"""

from __future__ import annotations

import io
import itertools
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from llm_core.artifacts import atomic_open, exists, join, read_json, write_json
from llm_eval.ngrams import NORMALIZATION, token_spans, tokenize

_MULTIPLIERS = np.random.default_rng(20211).integers(1, 2**63, size=64, dtype=np.uint64) * np.uint64(2) + np.uint64(1)


@dataclass(frozen=True)
class EvalItem:
    """One benchmark example as text: its set, its id in that set, and the text to look for."""

    set: str
    id: str
    text: str


@dataclass(frozen=True)
class MatchRule:
    n: int = 13
    min_n: int = 8
    min_tokens: int = 8
    overlap: float = 0.8
    ngram_min_tokens: int = 40
    max_items_per_gram: int = 5  # a gram shared by more items is template text ("let's think step by step")

    def gram_size(self, length: int) -> int | None:
        if length < self.min_tokens:
            return None
        return self.n if length >= 2 * self.n + 1 else min(self.min_n, length)


@dataclass(frozen=True)
class Match:
    """Where a document matches an eval item. ``tokens`` / ``chars``: the matched span in the
    document (``chars`` None when normalization changed the text's length)."""

    set: str
    item_id: str
    kind: Literal["ngram", "overlap"]
    score: float  # share of the item's tokens found in the aligned window
    tokens: tuple[int, int]
    chars: tuple[int, int] | None
    excerpt: str

    @property
    def reason(self) -> str:
        return f"contamination:{self.set}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Grams:
    hashes: np.ndarray  # sorted uint64
    items: np.ndarray  # int32, item index of each hash
    positions: np.ndarray  # int32, start of the gram in the item


def _bags(item_ids: list[np.ndarray], numeric: np.ndarray) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """Every item as a bag of words, flat: (distinct tokens, counts, offsets per item), and the same
    for its numbers only."""
    parts = [np.unique(ids, return_counts=True) for ids in item_ids]
    numbers = [(t[numeric[t.astype(np.int64)]], c[numeric[t.astype(np.int64)]]) for t, c in parts]

    def flat(pairs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, ...]:
        offsets = np.concatenate([[0], np.cumsum([len(t) for t, _ in pairs])]).astype(np.int64)
        if not pairs:
            return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64), offsets
        return np.concatenate([t for t, _ in pairs]), np.concatenate([c for _, c in pairs]), offsets

    return flat(parts), flat(numbers)


def window_hashes(ids: np.ndarray, size: int) -> np.ndarray:
    """Hash of every window of ``size`` ids (uint64 arithmetic wraps: a random linear hash)."""
    count = len(ids) - size + 1
    out = np.zeros(count, dtype=np.uint64)
    for j in range(size):
        out += ids[j:j + count] * _MULTIPLIERS[j]
    return out


class ContaminationIndex:
    def __init__(self, rule: MatchRule, vocab: dict[str, int], items: list[EvalItem],
                 item_ids: list[np.ndarray], skipped: dict[str, int]):
        self.rule, self.vocab, self.items, self.item_ids, self.skipped = rule, vocab, items, item_ids, skipped
        numeric = np.zeros(len(vocab) + 1, dtype=bool)
        for word, i in vocab.items():
            numeric[i] = word.isdigit()
        self._numeric = numeric
        self._item_flat = np.concatenate(item_ids) if item_ids else np.zeros(0, dtype=np.uint64)
        self._item_offsets = np.concatenate([[0], np.cumsum([len(a) for a in item_ids])]).astype(np.int64)
        self._grams = self._gram_tables()
        self._token_bags, self._number_bags = _bags(item_ids, numeric)
        number_owner = np.repeat(np.arange(len(item_ids)), np.diff(self._number_bags[2]))
        self._number_totals = np.bincount(number_owner, weights=self._number_bags[1], minlength=len(item_ids))

    # -- building and saving ------------------------------------------------------------------

    @classmethod
    def build(cls, items: Iterable[EvalItem], rule: MatchRule = MatchRule()) -> ContaminationIndex:
        if rule.min_n > rule.n or rule.n > len(_MULTIPLIERS):
            raise ValueError(f"need min_n <= n <= {len(_MULTIPLIERS)}, got min_n={rule.min_n}, n={rule.n}")
        vocab: dict[str, int] = {}
        kept, ids, skipped = [], [], Counter()
        for item in items:
            tokens = tokenize(item.text)
            if rule.gram_size(len(tokens)) is None:
                skipped[item.set] += 1
                continue
            kept.append(item)
            ids.append(np.array([vocab.setdefault(t, len(vocab) + 1) for t in tokens], dtype=np.uint64))
        return cls(rule, vocab, kept, ids, dict(skipped))

    def save(self, uri: str) -> None:
        """A folder: ``meta.json`` (rule, normalization, counts), ``vocab.json``, ``items.jsonl``, ``tokens.npz``."""
        words = [""] * (len(self.vocab) + 1)
        for word, i in self.vocab.items():
            words[i] = word
        with atomic_open(join(uri, "vocab.json"), "w", encoding="utf-8") as handle:
            json.dump(words, handle, ensure_ascii=False)
        with atomic_open(join(uri, "items.jsonl"), "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(asdict(item), ensure_ascii=False) + "\n" for item in self.items)
        buffer = io.BytesIO()
        lengths = np.array([len(a) for a in self.item_ids], dtype=np.int64)
        flat = np.concatenate(self.item_ids) if self.item_ids else np.zeros(0, dtype=np.uint64)
        np.savez(buffer, tokens=flat, lengths=lengths)
        with atomic_open(join(uri, "tokens.npz"), "wb") as handle:
            handle.write(buffer.getvalue())
        write_json(join(uri, "meta.json"), self.summary())  # last: its presence marks a complete index

    def summary(self) -> dict[str, Any]:
        return {"format": "llmt-contamination-index-v1", "normalization": NORMALIZATION, "rule": asdict(self.rule),
                "items": len(self.items), "items_by_set": dict(Counter(i.set for i in self.items)),
                "skipped_short": self.skipped, "vocab": len(self.vocab)}

    @classmethod
    def load(cls, uri: str) -> ContaminationIndex:
        import fsspec

        if not exists(join(uri, "meta.json")):
            raise FileNotFoundError(f"{uri}: not a contamination index (no meta.json); build one with the "
                                    "contamination_index stage")
        meta = read_json(join(uri, "meta.json"))
        if meta.get("normalization") != NORMALIZATION:
            raise ValueError(f"{uri}: index normalized with {meta.get('normalization')!r}, this version uses "
                             f"{NORMALIZATION!r}; rebuild the index")
        words = read_json(join(uri, "vocab.json"))
        with fsspec.open(join(uri, "items.jsonl"), "rt", encoding="utf-8") as handle:
            items = [EvalItem(**json.loads(line)) for line in handle if line.strip()]
        with fsspec.open(join(uri, "tokens.npz"), "rb") as handle:
            arrays = np.load(io.BytesIO(handle.read()))
            ids = np.split(arrays["tokens"], np.cumsum(arrays["lengths"])[:-1]) if len(items) else []
        return cls(MatchRule(**meta["rule"]), {w: i for i, w in enumerate(words) if i}, items, list(ids),
                   meta.get("skipped_short", {}))

    def _gram_tables(self) -> dict[int, _Grams]:
        parts: dict[int, list[tuple[np.ndarray, int]]] = {}
        for index, ids in enumerate(self.item_ids):
            size = self.rule.gram_size(len(ids))
            parts.setdefault(size, []).append((window_hashes(ids, size), index))
        tables = {}
        for size, rows in parts.items():
            hashes = np.concatenate([h for h, _ in rows])
            items = np.concatenate([np.full(len(h), i, dtype=np.int32) for h, i in rows])
            positions = np.concatenate([np.arange(len(h), dtype=np.int32) for h, _ in rows])
            order = np.argsort(hashes, kind="stable")
            hashes, items, positions = hashes[order], items[order], positions[order]
            distinct = np.unique(np.stack([hashes, items.astype(np.uint64)]), axis=1)[0]
            common, counts = np.unique(distinct, return_counts=True)
            keep = ~np.isin(hashes, common[counts > self.rule.max_items_per_gram])
            tables[size] = _Grams(hashes[keep], items[keep], positions[keep])
        return tables

    # -- matching -------------------------------------------------------------------------------

    def match_texts(self, texts: Sequence[str]) -> list[Match | None]:
        """The best match of each text (highest score, then most shared grams), or None when clean."""
        get, zeros = self.vocab.get, itertools.repeat(0)
        ids: list[int] = []
        lengths = []
        for text in texts:
            before = len(ids)
            ids.extend(map(get, tokenize(text), zeros))
            lengths.append(len(ids) - before)
            ids.append(0)  # one 0 between documents: no gram spans two
        flat = np.array(ids, dtype=np.uint64)
        starts = np.zeros(len(texts) + 1, dtype=np.int64)
        starts[1:] = np.cumsum(np.array(lengths, dtype=np.int64) + 1)
        anchors = self._anchors(flat, starts)
        ends = starts[:-1] + np.array(lengths, dtype=np.int64)
        best: dict[int, tuple[float, int, int, tuple[int, int]]] = {}  # doc -> (score, spots, item, span)
        for (doc, item), spots, judged in zip(anchors, anchors.values(), self._judge(flat, starts, ends, anchors),
                                              strict=True):
            if judged is not None:
                candidate = (judged[0], len(spots), item, judged[1])
                if doc not in best or candidate[:2] > best[doc][:2]:
                    best[doc] = candidate
        out: list[Match | None] = [None] * len(texts)
        for doc, (score, _, item, span) in best.items():
            chars = _char_span(texts[doc], span)
            it = self.items[item]
            length = len(self.item_ids[item])
            kind = "ngram" if length >= self.rule.ngram_min_tokens and self.rule.gram_size(length) == self.rule.n \
                else "overlap"
            out[doc] = Match(it.set, it.id, kind, round(score, 4), span, chars,
                             texts[doc][chars[0]:chars[1]][:300] if chars else "")
        return out

    def _anchors(self, flat: np.ndarray, starts: np.ndarray) -> dict[tuple[int, int], list[tuple[int, int]]]:
        """(document, item) -> verified (position in flat, position in item) of shared grams."""
        found: dict[tuple[int, int], list[tuple[int, int]]] = {}
        unknown = np.concatenate([[0], np.cumsum(flat == 0)])
        for size, table in self._grams.items():
            if len(flat) < size or not len(table.hashes):
                continue
            ok = np.nonzero(unknown[size:] - unknown[:-size] == 0)[0]
            if not len(ok):
                continue
            hashes = window_hashes(flat, size)[ok]
            left = np.searchsorted(table.hashes, hashes, side="left")
            right = np.searchsorted(table.hashes, hashes, side="right")
            counts = right - left
            if not counts.any():
                continue
            # Every (window, index entry) pair with the same hash, then a token-by-token check of all at once.
            positions = np.repeat(ok, counts)
            entries = np.repeat(left, counts) + (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts,
                                                                                      counts))
            offsets = np.arange(size)
            items, item_starts = table.items[entries], table.positions[entries]
            same = (flat[positions[:, None] + offsets] ==
                    self._item_flat[self._item_offsets[items][:, None] + item_starts[:, None] + offsets]).all(axis=1)
            docs = np.searchsorted(starts, positions[same], side="right") - 1
            for doc, item, position, start in zip(docs.tolist(), items[same].tolist(), positions[same].tolist(),
                                                  item_starts[same].tolist(), strict=True):
                found.setdefault((doc, item), []).append((position, start))
        return found

    def _judge(self, flat: np.ndarray, starts: np.ndarray, ends: np.ndarray,
               anchors: dict[tuple[int, int], list[tuple[int, int]]]) -> list[tuple[float, tuple[int, int]] | None]:
        """For each (document, item) candidate: (score, token span in the document) when the document
        holds the item, else None. All candidates of a batch are scored at once."""
        if not anchors:
            return []
        docs = np.array([d for d, _ in anchors], dtype=np.int64)
        items = np.array([i for _, i in anchors], dtype=np.int64)
        # The alignment most of a candidate's shared grams agree on.
        offsets = np.array([Counter(p - s for p, s in spots).most_common(1)[0][0] for spots in anchors.values()])
        lengths = self._item_offsets[items + 1] - self._item_offsets[items]
        slack = np.maximum(2, lengths // 10)
        lo, hi = np.maximum(starts[docs], offsets), np.minimum(ends[docs], offsets + lengths)
        wide_lo, wide_hi = np.maximum(starts[docs], offsets - slack), np.minimum(ends[docs], offsets + lengths + slack)
        scores = self._overlaps(flat, wide_lo, wide_hi, items, numbers=False) / lengths
        # Numbers are looked for in the aligned window itself: the slack could reach an answer or a
        # worked solution right after the item.
        numbers_ok = self._overlaps(flat, lo, hi, items, numbers=True) >= self._number_totals[items]
        out: list[tuple[float, tuple[int, int]] | None] = []
        for k, spots in enumerate(anchors.values()):
            start = int(starts[docs[k]])
            if lengths[k] >= self.rule.ngram_min_tokens and self.rule.gram_size(int(lengths[k])) == self.rule.n:
                span = (min(p for p, _ in spots) - start, max(p for p, _ in spots) + self.rule.n - start)
                out.append((float(scores[k]), span))
            elif scores[k] >= self.rule.overlap and numbers_ok[k]:
                out.append((float(scores[k]), (int(lo[k]) - start, int(hi[k]) - start)))
            else:
                out.append(None)
        return out

    def _overlaps(self, flat: np.ndarray, lo: np.ndarray, hi: np.ndarray, items: np.ndarray,
                  numbers: bool) -> np.ndarray:
        """For each candidate k, how many of item k's tokens (its numbers only, with ``numbers``) the
        document window ``flat[lo[k]:hi[k]]`` holds, counted as bags of words."""
        width = np.uint64(len(self.vocab) + 1)
        window = _ranges(lo, np.maximum(lo, hi))
        window_keys = np.repeat(np.arange(len(lo), dtype=np.uint64), np.maximum(0, hi - lo)) * width + flat[window]
        keys, counts = np.unique(window_keys, return_counts=True)
        if not len(keys):
            return np.zeros(len(items))
        bags = self._number_bags if numbers else self._token_bags
        tokens, wanted, bag_offsets = bags
        rows = _ranges(bag_offsets[items], bag_offsets[items + 1])
        owner = np.repeat(np.arange(len(items)), bag_offsets[items + 1] - bag_offsets[items])
        item_keys = owner.astype(np.uint64) * width + tokens[rows]
        where = np.minimum(np.searchsorted(keys, item_keys), len(keys) - 1)
        found = np.where(keys[where] == item_keys, counts[where], 0)
        return np.bincount(owner, weights=np.minimum(wanted[rows], found), minlength=len(items))


def _ranges(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The concatenation of ``arange(lo[k], hi[k])`` for every k."""
    sizes = hi - lo
    return np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes) + np.repeat(lo, sizes)


def _char_span(text: str, span: tuple[int, int]) -> tuple[int, int] | None:
    spans = token_spans(text)
    if spans is None or span[1] > len(spans) or span[0] >= span[1]:
        return None
    return spans[span[0]][0], spans[span[1] - 1][1]
