"""Long-context probes generated with a seed at any length and tokenizer: needles, RULER tasks, BABILong facts.

Every generator returns a ``ProbeItem`` whose context fills ``length`` tokens of the given tokenizer
(the whole prompt: context, question and template, measured with the tokenizer, never estimated
alone) and whose answers can be derived from the context: ``check_answerable`` re-derives them
with a small solver that reads only the context, and every generator calls it.

Tasks (RULER, Hsieh et al. 2024; BABILong, Kuratov et al. 2024):

* ``niah_single``: one needle "The special magic number for {key} is: {7 digits}." at ``depth``
  (0 = start, 1 = end of the haystack); the question asks for it;
* ``niah_multikey``: the needle among 3 distractor needles with other keys;
* ``niah_multivalue``: 4 needles with the same key and different numbers; all are asked for;
* ``niah_multiquery``: 4 needles with different keys; all are asked for;
* ``variable_tracking`` (multi-hop): "VAR A = 12345." then a chain "VAR B = A." ... (4 hops) among
  a distractor chain; asks for every variable holding the value;
* ``common_words`` (aggregation): a numbered word list where 10 words appear as often as the length
  allows and the others once; asks for the 10 most common;
* ``babilong_qa1`` / ``babilong_qa2``: bAbI facts (people moving, picking up objects) spread in noise;
  "Where is Mary?" needs the last move (qa1), "Where is the football?" who holds it and where they
  went last (qa2, two supporting facts).

The haystack is RULER's noise ("The grass is green. The sky is blue. ..."), so that no answer is
in it by chance. Score (RULER's string match): the share of answers found in the prediction.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

NOISE = ("The grass is green.", "The sky is blue.", "The sun is yellow.", "Here we go.", "There and back again.")
KEYS = ("apple", "river", "candle", "falcon", "marble", "lantern", "meadow", "harbor", "pepper", "violet",
        "comet", "walnut", "glacier", "saddle", "tundra", "quartz", "sparrow", "cobalt", "juniper", "anchor")
PEOPLE = ("Mary", "John", "Sandra", "Daniel")
PLACES = ("bathroom", "hallway", "kitchen", "garden", "office", "bedroom")
OBJECTS = ("football", "apple", "milk")
WORDS = tuple(f"{a}{b}" for a in ("bl", "cr", "dr", "fl", "gr", "pl", "sk", "tr") for b in
              ("ade", "ick", "one", "ump", "ish", "ank", "ore", "ite", "ull", "eam"))
TASKS = ("niah_single", "niah_multikey", "niah_multivalue", "niah_multiquery", "variable_tracking",
         "common_words", "babilong_qa1", "babilong_qa2")


class Encoder(Protocol):
    def encode(self, text: str) -> list[int]: ...


@dataclass
class ProbeItem:
    task: str
    length: int  # target prompt length in tokens
    depth: float | None
    context: str
    question: str
    answers: list[str]
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def needle(key: str, value: str) -> str:
    return f"The special magic number for {key} is: {value}."


def haystack(facts: list[str], positions: list[float], budget: int, count_tokens: Callable[[str], int],
             rng: random.Random) -> str:
    """Noise sentences filling ``budget`` tokens with each fact at its relative position."""
    filler: list[str] = []
    used = sum(count_tokens(" " + f) for f in facts)
    noise_tokens = {s: count_tokens(" " + s) for s in NOISE}
    while True:
        sentence = NOISE[len(filler) % len(NOISE)]
        if used + noise_tokens[sentence] > budget:
            break
        filler.append(sentence)
        used += noise_tokens[sentence]
    slots = [round(p * len(filler)) for p in positions]
    for k in sorted(range(len(facts)), key=lambda k: (slots[k], k), reverse=True):  # back to front keeps order
        filler.insert(slots[k], facts[k])
    return " ".join(filler)


def build(task: str, length: int, depth: float, seed: int, tokenizer: Encoder,
          prompt_tokens: Callable[[str, str], int] | None = None) -> ProbeItem:
    """One item of ``task`` whose whole prompt is at most ``length`` tokens, its answers checked
    against its context. ``prompt_tokens(context, question)`` measures the prompt as the model will
    see it (chat template included); by default the two texts joined by a blank line."""
    rng = random.Random(f"{task}:{length}:{depth}:{seed}")
    count = lambda text: len(tokenizer.encode(text))  # noqa: E731
    measure = prompt_tokens or (lambda context, question: count(f"{context}\n\n{question}"))
    facts, positions, question, answers, meta = GENERATORS[task](rng, depth)
    budget = length - measure("", question) - 8
    if task == "common_words":
        context = word_list(facts, rng, budget, count)
    else:
        context = haystack(facts, positions, budget, count, rng)
        while measure(context, question) > length and any(s in context for s in NOISE):  # parts undercounted
            context = _drop_one_noise(context)
    item = ProbeItem(task, length, depth if task.startswith("niah") else None, context, question, answers, meta)
    check_answerable(item)
    return item


def _drop_one_noise(context: str) -> str:
    for sentence in NOISE:
        if sentence in context:
            return context.replace(" " + sentence, "", 1) if " " + sentence in context else context.replace(
                sentence + " ", "", 1)
    return context


# -- generators: (facts, positions, question, answers, meta) ---------------------------------------


def _digits(rng: random.Random) -> str:
    return str(rng.randint(1_000_000, 9_999_999))


def _niah(rng: random.Random, depth: float, keys: int, values: int, queries: int) -> tuple:
    chosen = rng.sample(KEYS, keys)
    facts, positions, answers = [], [], []
    for k, key in enumerate(chosen):
        for v in range(values if k == 0 else 1):
            value = _digits(rng)
            facts.append(needle(key, value))
            positions.append(depth if (k == 0 and v == 0) else rng.random())
            if k < queries:
                answers.append(value)
    asked = chosen[:queries]
    if values > 1:
        question = f"What are all the special magic numbers for {asked[0]} mentioned in the provided text?"
    elif queries > 1:
        question = f"What are all the special magic numbers for {', '.join(asked)} mentioned in the provided text?"
    else:
        question = f"What is the special magic number for {asked[0]} mentioned in the provided text?"
    return facts, positions, question, answers, {"keys": asked}


def _variable_tracking(rng: random.Random, depth: float, hops: int = 4) -> tuple:
    names = rng.sample([f"{a}{b}" for a in "ABCDEFGHJKMNPQRSTUVWXYZ" for b in "ABCDEFGHJKMNPQRSTUVWXYZ"],
                       2 * (hops + 1))
    value, other = str(rng.randint(10000, 99999)), str(rng.randint(10000, 99999))
    facts, positions = [], []
    for chain, start in ((names[:hops + 1], value), (names[hops + 1:], other)):
        facts.append(f"VAR {chain[0]} = {start}.")
        facts += [f"VAR {chain[i]} = {chain[i - 1]}." for i in range(1, len(chain))]
        positions += sorted(rng.random() for _ in chain)  # each chain in reading order, the two interleaved
    question = f"Find all variables that are assigned the value {value} in the text above."
    return facts, positions, question, sorted(names[:hops + 1]), {"value": value}


def _common_words(rng: random.Random, depth: float, top: int = 10) -> tuple:
    words = rng.sample(WORDS, len(WORDS))
    question = f"What are the {top} most common words in the above list?"
    return words, [], question, sorted(words[:top]), {"top": top}


def _babilong(rng: random.Random, depth: float, two_facts: bool) -> tuple:
    person, other = rng.sample(PEOPLE, 2)
    moves = [(person, rng.choice(PLACES)) for _ in range(2)] + [(other, rng.choice(PLACES)) for _ in range(2)]
    rng.shuffle(moves)
    facts = [f"{who} {rng.choice(['moved', 'went', 'travelled'])} to the {where}." for who, where in moves]
    if two_facts:
        thing = rng.choice(OBJECTS)
        last_move = max(i for i, (who, _) in enumerate(moves) if who == person)
        facts.insert(rng.randint(0, last_move), f"{person} picked up the {thing}.")  # then carried somewhere
        question, answer = f"Where is the {thing}?", _simulate(facts)[thing]
    else:
        question, answer = f"Where is {person}?", _simulate(facts)[person]
    return facts, sorted(rng.random() for _ in facts), question + " Answer with one word.", [answer], {}


GENERATORS: dict[str, Callable[[random.Random, float], tuple]] = {
    "niah_single": lambda rng, d: _niah(rng, d, 1, 1, 1),
    "niah_multikey": lambda rng, d: _niah(rng, d, 4, 1, 1),
    "niah_multivalue": lambda rng, d: _niah(rng, d, 1, 4, 1),
    "niah_multiquery": lambda rng, d: _niah(rng, d, 4, 1, 4),
    "variable_tracking": _variable_tracking,
    "common_words": _common_words,
    "babilong_qa1": lambda rng, d: _babilong(rng, d, False),
    "babilong_qa2": lambda rng, d: _babilong(rng, d, True),
}


def word_list(words: list[str], rng: random.Random, budget: int, count: Callable[[str], int],
              top: int = 10) -> str:
    """A numbered, shuffled list that fits ``budget`` tokens: the first ``top`` words repeated as
    often as fits, every other word once (fewer of them when space is short); the common words
    always outnumber the rest."""
    common, rare = list(words[:top]), list(words[top:])
    per_entry = max(1, count(f" 100. {common[0]}"))
    fit = max(2 * top, budget // per_entry)
    rare = rare[:max(0, min(len(rare), fit - 2 * top))]
    repeats = max(2, (fit - len(rare)) // top)
    while True:
        entries = common * repeats + rare
        rng.shuffle(entries)
        text = " ".join(f"{i + 1}. {w}" for i, w in enumerate(entries))
        if count(text) <= budget or (repeats == 2 and not rare):
            return text
        if rare:
            del rare[-max(1, len(rare) // 10):]
        else:
            repeats -= 1


# -- solvers: the answers from the context alone ----------------------------------------------------


def _simulate(facts: list[str]) -> dict[str, str]:
    """Where every person and object is after the bAbI facts, in order."""
    where: dict[str, str] = {}
    holder: dict[str, str] = {}
    for fact in facts:
        moved = re.match(r"(\w+) (?:moved|went|travelled) to the (\w+)\.", fact)
        if moved:
            where[moved[1]] = moved[2]
            for thing, who in holder.items():
                if who == moved[1]:
                    where[thing] = moved[2]
            continue
        picked = re.match(r"(\w+) picked up the (\w+)\.", fact)
        if picked:
            holder[picked[2]] = picked[1]
            if picked[1] in where:
                where[picked[2]] = where[picked[1]]
    return where


def solve(item: ProbeItem) -> list[str]:
    """The answers of an item, derived from its context and question only."""
    text, q = item.context, item.question
    if item.task.startswith("niah"):
        found = re.findall(r"The special magic number for (\w+) is: (\d+)\.", text)
        keys = re.findall(r"\b(" + "|".join(KEYS) + r")\b", q)
        return [value for key in keys for k, value in found if k == key]
    if item.task == "variable_tracking":
        value = re.search(r"assigned the value (\d+)", q)[1]
        assigned = dict(re.findall(r"VAR (\w+) = (\w+)\.", text))
        holds = {v for v, x in assigned.items() if x == value}
        while True:
            grown = holds | {v for v, x in assigned.items() if x in holds}
            if grown == holds:
                return sorted(holds)
            holds = grown
    if item.task == "common_words":
        counts = Counter(re.findall(r"\d+\. (\w+)", text))
        top = int(re.search(r"the (\d+) most common", q)[1])
        ranked = counts.most_common()
        if len(ranked) > top and ranked[top - 1][1] == ranked[top][1]:
            return []  # a tie at the cut: no well-defined answer
        return sorted(w for w, _ in ranked[:top])
    facts = re.findall(r"\w+ (?:moved|went|travelled) to the \w+\.|\w+ picked up the \w+\.", text)
    subject = re.search(r"Where is (?:the )?(\w+)\?", q)[1]
    answer = _simulate(facts).get(subject)
    return [answer] if answer else []


def check_answerable(item: ProbeItem) -> None:
    """Raise unless the context alone gives exactly the item's answers (the generator's promise)."""
    derived = solve(item)
    if sorted(derived) != sorted(item.answers) or not derived:
        raise AssertionError(f"{item.task} item (length {item.length}) is not answerable from its context: "
                             f"the context gives {derived}, the item expects {item.answers}")


def score(item: ProbeItem, prediction: str) -> float:
    """RULER's string match: the share of the answers that appear in the prediction (case-insensitive)."""
    lowered = prediction.lower()
    return sum(a.lower() in lowered for a in item.answers) / len(item.answers)
