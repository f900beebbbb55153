"""A contamination test set the package builds itself: real text with eval items planted in it.

Documents are windows of real prose (gensim's 300 Lee news articles and 206 Wikipedia pages, markup
stripped; ``gensim`` is a dev dependency). A share of them gets one eval item inserted at a sentence
boundary, verbatim or lightly edited; the rest stay clean. ``score`` gives, per kind of insertion,
recall (flagged with the inserted item) and precision (flagged ones that name the right item),
and how many clean documents were flagged.

Edits (seeded):
* ``case``: the item in upper case, lower case or with every word capitalized;
* ``punctuation``: each punctuation mark deleted or swapped for another one;
* ``replaced_word``: one word (letters only, 3+ characters) replaced by a word of the corpus;
* ``all``: the three together.
"""

from __future__ import annotations

import random
import re
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from llm_eval.index import ContaminationIndex, EvalItem
from llm_eval.ngrams import tokenize

KINDS = ("verbatim", "case", "punctuation", "replaced_word", "all")
_WORD = re.compile(r"\b[A-Za-z]{3,}\b")


def gensim_texts(wikipedia: bool = True) -> list[str]:
    """Real English prose: gensim's Lee news articles and (``wikipedia``) its Wikipedia sample pages,
    markup stripped (reading those takes about 15 s)."""
    import bz2

    from gensim.corpora.wikicorpus import extract_pages, filter_wiki
    from gensim.test.utils import datapath

    with open(datapath("lee_background.cor"), encoding="utf-8") as handle:
        texts = [line.strip() for line in handle if line.strip()]
    if wikipedia:
        with bz2.open(datapath("enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2")) as handle:
            texts += [" ".join(filter_wiki(page[1]).split()) for page in extract_pages(handle)]
    return [t for t in texts if len(t.split()) >= 50]


def windows(texts: Sequence[str], words: int = 200) -> list[str]:
    """Documents of about ``words`` words cut from the texts (sentence boundaries kept)."""
    docs = []
    for text in texts:
        sentences = re.split(r"(?<=[.!?])\s+", text)
        current: list[str] = []
        for sentence in sentences:
            current.append(sentence)
            if sum(len(s.split()) for s in current) >= words:
                docs.append(" ".join(current))
                current = []
        if sum(len(s.split()) for s in current) >= words // 4:
            docs.append(" ".join(current))
    return docs


def edit(text: str, kind: str, rng: random.Random, vocabulary: Sequence[str]) -> str:
    if kind in ("case", "all"):
        text = rng.choice([str.upper, str.lower, string.capwords])(text)
    if kind in ("punctuation", "all"):
        text = "".join(rng.choice(["", ",", ";", "-", " "]) if c in string.punctuation and c != "_" else c
                       for c in text)
    if kind in ("replaced_word", "all"):
        words = list(_WORD.finditer(text))
        if words:
            m = rng.choice(words)
            text = text[:m.start()] + rng.choice(vocabulary) + text[m.end():]
    return text


@dataclass
class PlantedCorpus:
    texts: list[str]
    truth: dict[int, tuple[str, str, str]] = field(default_factory=dict)  # doc -> (set, item id, kind)


def planted_corpus(docs: Sequence[str], items: Sequence[EvalItem], contaminated_fraction: float = 0.3,
                   seed: int = 0) -> PlantedCorpus:
    """A copy of ``docs`` where ``contaminated_fraction`` of them hold one eval item, the kinds of
    insertion in equal shares."""
    rng = random.Random(seed)
    vocabulary = sorted({w.lower() for d in docs[:500] for w in _WORD.findall(d)})
    corpus = PlantedCorpus(list(docs))
    chosen = rng.sample(range(len(docs)), int(len(docs) * contaminated_fraction))
    for k, doc in enumerate(chosen):
        item, kind = rng.choice(items), KINDS[k % len(KINDS)]
        sentences = re.split(r"(?<=[.!?])\s+", docs[doc])
        at = rng.randint(0, len(sentences))
        corpus.texts[doc] = " ".join(sentences[:at] + [edit(item.text, kind, rng, vocabulary)] + sentences[at:])
        corpus.truth[doc] = (item.set, item.id, kind)
    return corpus


def score(index: ContaminationIndex, corpus: PlantedCorpus, batch_size: int = 256) -> dict[str, dict[str, float]]:
    """Per kind: inserted, recall, precision; plus ``clean``: documents and how many were flagged.
    A match counts as right when it names the inserted item or one with the same normalized text."""
    matches = []
    for start in range(0, len(corpus.texts), batch_size):
        matches += index.match_texts(corpus.texts[start:start + batch_size])
    same_text = {(i.set, i.id): tuple(tokenize(i.text)) for i in index.items}
    inserted, found, right = Counter(), Counter(), Counter()
    clean_flagged = 0
    for doc, match in enumerate(matches):
        truth = corpus.truth.get(doc)
        if truth is None:
            clean_flagged += match is not None
            continue
        inserted[truth[2]] += 1
        if match is not None:
            found[truth[2]] += 1
            # Benchmarks repeat exemplars (BBH's three / five / seven objects): the same text is right.
            right[truth[2]] += same_text.get((match.set, match.item_id)) == same_text.get(truth[:2])
    out = {kind: {"inserted": inserted[kind], "recall": right[kind] / inserted[kind] if inserted[kind] else 0.0,
                  "precision": right[kind] / found[kind] if found[kind] else 1.0} for kind in KINDS}
    out["clean"] = {"documents": len(corpus.texts) - len(corpus.truth), "flagged": clean_flagged}
    return out
