"""Seeded noise to mix into a clean corpus, so that a pipeline's drops can be checked against truth.

Each generator returns a document whose ``metadata.noise`` names the kind of noise; clean
documents carry ``noise = "none"``. The kinds aim at one filter each (spam URL, other language,
gibberish, repetition, hashtags, bullet lists, boilerplate, toxicity) and PII is planted into
otherwise clean documents.
"""

from __future__ import annotations

import random
import string

from llm_core.types import Document

FOREIGN = {
    "fr": ["Le gouvernement a annoncé hier une nouvelle réforme des retraites.",
           "Les habitants de la ville se sont rassemblés devant la mairie pour protester.",
           "Il fait beau aujourd'hui et nous allons nous promener dans le parc avec les enfants.",
           "La bibliothèque municipale sera fermée pendant les vacances d'été."],
    "de": ["Die Regierung hat gestern eine neue Reform der Rentenversicherung angekündigt.",
           "Die Bewohner der Stadt versammelten sich vor dem Rathaus, um zu protestieren.",
           "Heute ist schönes Wetter und wir gehen mit den Kindern im Park spazieren.",
           "Die Stadtbibliothek bleibt während der Sommerferien geschlossen."],
    "es": ["El gobierno anunció ayer una nueva reforma del sistema de pensiones.",
           "Los vecinos de la ciudad se reunieron frente al ayuntamiento para protestar.",
           "Hoy hace buen tiempo y vamos a pasear por el parque con los niños.",
           "La biblioteca municipal permanecerá cerrada durante las vacaciones de verano."],
}
SPAM_HOSTS = ("www.pornhub.com", "best-casino-bonus.net", "cheap-viagra-online.biz", "m.xvideos.com")
TOXIC = ("fuck", "shit", "bitch", "asshole", "bastard", "cunt")
LOREM = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt."


def _sentences(clean: Document, rng: random.Random, k: int) -> list[str]:
    words = clean.text.split()
    start = rng.randrange(max(1, len(words) - 40 * k))
    return [" ".join(words[start + 40 * i: start + 40 * (i + 1)]) + "." for i in range(k)]


def spam_url(clean: Document, rng: random.Random) -> Document:
    path = "".join(rng.choices(string.ascii_lowercase, k=8))
    return Document("", clean.text, {"url": f"https://{rng.choice(SPAM_HOSTS)}/{path}"})


def other_language(clean: Document, rng: random.Random) -> Document:
    lang = rng.choice(sorted(FOREIGN))
    return Document("", "\n".join(rng.choice(FOREIGN[lang]) for _ in range(rng.randint(8, 30))), {})


def gibberish(clean: Document, rng: random.Random) -> Document:
    alphabet = string.ascii_letters + string.digits + "#$%&*+/<=>@^_|~"
    words = ["".join(rng.choices(alphabet, k=rng.randint(2, 14))) for _ in range(rng.randint(100, 600))]
    return Document("", " ".join(words), {})


def repeated_lines(clean: Document, rng: random.Random) -> Document:
    lines = _sentences(clean, rng, 3)
    return Document("", "\n".join(lines * rng.randint(5, 15)), {})


def hashtags(clean: Document, rng: random.Random) -> Document:
    words = " ".join(_sentences(clean, rng, 3)).split()
    return Document("", " ".join(f"#{w}" if rng.random() < 0.5 else w for w in words), {})


def bullet_list(clean: Document, rng: random.Random) -> Document:
    words = clean.text.split()
    items = [" ".join(rng.sample(words, 3)) if len(words) > 3 else "item" for _ in range(rng.randint(20, 60))]
    return Document("", "\n".join(f"• {item}" for item in items), {})


def boilerplate(clean: Document, rng: random.Random) -> Document:
    return Document("", "\n".join([LOREM] * rng.randint(2, 4) + _sentences(clean, rng, 2)), {})


def toxic(clean: Document, rng: random.Random) -> Document:
    words = " ".join(_sentences(clean, rng, 3)).split()
    for _ in range(max(5, len(words) // 8)):
        words.insert(rng.randrange(len(words) + 1), rng.choice(TOXIC))
    return Document("", " ".join(words), {})


def plant_pii(doc: Document, rng: random.Random) -> Document:
    """Insert an e-mail, a phone number, an IP address and a valid card number into clean text."""
    card = "4111 1111 1111 1111"
    extras = [f"Contact: jane.doe{rng.randint(1, 99)}@example.org.", f"Call +1 415-555-{rng.randint(1000, 9999)}.",
              f"Server at 192.168.{rng.randint(0, 255)}.{rng.randint(1, 254)}.", f"Card {card} on file."]
    lines = doc.text.split("\n")
    for extra in extras:
        lines.insert(rng.randrange(len(lines) + 1), extra)
    doc.text = "\n".join(lines)
    doc.metadata["planted_pii"] = len(extras)
    return doc


GENERATORS = {f.__name__: f for f in (spam_url, other_language, gibberish, repeated_lines, hashtags,
                                      bullet_list, boilerplate, toxic)}


def add_noise(clean_docs: list[Document], noise_fraction: float, pii_fraction: float,
              seed: int) -> list[Document]:
    """Clean documents (some with planted PII) plus noisy ones, shuffled; ids are stable."""
    rng = random.Random(seed)
    out = []
    for doc in clean_docs:
        doc.metadata.setdefault("noise", "none")
        if rng.random() < pii_fraction:
            plant_pii(doc, rng)
        out.append(doc)
    n_noisy = round(len(clean_docs) * noise_fraction / max(1e-9, 1 - noise_fraction))
    kinds = sorted(GENERATORS)
    for i in range(n_noisy):
        kind = kinds[i % len(kinds)]
        noisy = GENERATORS[kind](rng.choice(clean_docs), rng)
        noisy.id = f"noise-{i:05d}"
        noisy.metadata.setdefault("url", f"https://noise.example.org/{kind}/{i}")
        noisy.metadata.update(noise=kind, source="noise")
        out.append(noisy)
    rng.shuffle(out)
    return out
