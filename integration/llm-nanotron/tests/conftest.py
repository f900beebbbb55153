"""Shared fixtures: a seeded BPE tokenizer (vocabulary 400, even, so that tp = 2 divides it)."""

from __future__ import annotations

import random

import pytest

WORDS = """
the a river city school music water energy market language science valley garden teacher
student library network model theory country island mountain forest season harvest journey
letter memory village bridge council station museum
""".split()


def seeded_texts(count: int = 400, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))).capitalize() + "."
                     for _ in range(rng.randint(1, 5))) for _ in range(count)]


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory):
    from llm_torch.tokenizer import train_bpe

    folder = tmp_path_factory.mktemp("tokenizer")
    tokenizer = train_bpe(seeded_texts(), vocab_size=400).with_chat_template("chatml")
    assert tokenizer.vocab_size == 400
    tokenizer.save(str(folder))
    return str(folder)


@pytest.fixture(scope="session")
def registries():
    from llm_core.plugins import get_registries

    return get_registries()
