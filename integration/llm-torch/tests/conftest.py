"""Shared fixtures: a seeded corpus, a small BPE tokenizer trained on it, a tiny engine."""

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
    texts = []
    for _ in range(count):
        sentences = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))).capitalize() + "."
                     for _ in range(rng.randint(1, 5))]
        texts.append(" ".join(sentences))
    return texts


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory):
    from llm_torch.tokenizer import train_bpe

    folder = tmp_path_factory.mktemp("tokenizer")
    train_bpe(seeded_texts(), vocab_size=400).with_chat_template("chatml").save(str(folder))
    return str(folder)


@pytest.fixture(scope="session")
def registries():
    from llm_core.plugins import get_registries

    return get_registries()


TINY_SHAPE = {"hidden_size": 64, "intermediate_size": 128, "num_layers": 2, "num_heads": 4,
              "num_kv_heads": 2}


@pytest.fixture
def make_engine(registries, tokenizer_dir):
    """A torch engine from the registry, as a stage gets one: a fresh ``shape`` (with the session's
    tokenizer) or a ``checkpoint``; AdamW at a constant ``lr`` unless ``frozen``."""
    from llm_core.engines import build_train_engine
    from llm_core.specs import EngineSpec, ModelShape, OptimizerSpec

    def make(shape=TINY_SHAPE, *, checkpoint=None, lr=1e-2, schedule="constant", total_steps=20, seed=0,
             precision="fp32", device="cpu", frozen=False, **request):
        source = {"checkpoint": checkpoint} if checkpoint else {"model": ModelShape(**shape),
                                                                "tokenizer": tokenizer_dir}
        optimizer = None if frozen else OptimizerSpec(lr=lr, schedule=schedule)
        spec = EngineSpec(name="torch", precision=precision, device=device)
        return build_train_engine(spec, registries, **source, optimizer=optimizer, total_steps=total_steps,
                                  seed=seed, **request)

    return make


@pytest.fixture
def tiny_engine(make_engine):
    return make_engine()


@pytest.fixture(scope="session")
def make_texts():
    """The seeded corpus generator, for tests that write their own inputs."""
    return seeded_texts


@pytest.fixture
def matmul_backend(monkeypatch):
    """``use("onednn" | "blas" | "auto")`` sets the fp32 CPU matmul backend for one test (through
    ``LLMT_CPU_MATMUL``) and returns the one in effect; the process's own choice comes back after."""
    from llm_torch.linear import BACKEND_VARIABLE, cpu_matmul_backend

    def use(name: str) -> str:
        monkeypatch.setenv(BACKEND_VARIABLE, name)
        cpu_matmul_backend.cache_clear()
        return cpu_matmul_backend()

    yield use
    cpu_matmul_backend.cache_clear()  # recomputed at the next call, after monkeypatch restores the variable
