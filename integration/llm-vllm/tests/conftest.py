"""Fixtures for the tests against the real vLLM: one server per session, a torch engine for the training side.

Tests marked ``vllm`` need vLLM's environment (``uv run llmt vllm setup``); without it they skip,
each with the reason, and the session ends with a banner that says how to build it.
"""

from __future__ import annotations

import random

import pytest

# The tiny-r1 policy's shape (head size 32: vLLM's CPU attention takes 32 and up).
SHAPE = {"hidden_size": 128, "intermediate_size": 384, "num_layers": 4, "num_heads": 4, "num_kv_heads": 2}
WORDS = "the a river city school music water energy market language science valley garden teacher".split()
_SKIPPED: list[str] = []


def pytest_terminal_summary(terminalreporter):
    if _SKIPPED:
        terminalreporter.write_sep("!", "vLLM TESTS SKIPPED", red=True, bold=True)
        terminalreporter.write_line(_SKIPPED[0])


@pytest.fixture(scope="session")
def vllm_env():
    from llm_vllm.env import VllmEnvMissing, probe, require_env

    try:
        env = require_env()
        probe(env)
    except VllmEnvMissing as exc:
        _SKIPPED.append(str(exc))
        pytest.skip(f"vLLM TESTS SKIPPED: {exc}")
    return env


@pytest.fixture(scope="session")
def registries():
    from llm_core.plugins import get_registries

    return get_registries()


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory):
    from llm_torch.tokenizer import train_bpe

    rng = random.Random(0)  # made-up words: enough distinct pairs for a full 512-token vocabulary
    words = WORDS + ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 8)))
                     for _ in range(600)]
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(5, 30))) for _ in range(400)]
    folder = tmp_path_factory.mktemp("vllm-tokenizer")
    tokenizer = train_bpe(texts, vocab_size=512).with_chat_template("chatml")
    assert tokenizer.vocab_size == 512
    tokenizer.save(str(folder))
    return str(folder)


@pytest.fixture(scope="session")
def make_torch_engine(registries, tokenizer_dir):
    """The embedded engine, the training side of every test: a fresh ``shape`` or a ``checkpoint``."""
    from llm_core.engines import build_train_engine
    from llm_core.specs import EngineSpec, ModelShape, OptimizerSpec

    def make(shape=SHAPE, *, checkpoint=None, seed=0, lr=1e-2, tie_embeddings=True):
        source = ({"checkpoint": checkpoint} if checkpoint else
                  {"model": ModelShape(**shape, tie_embeddings=tie_embeddings), "tokenizer": tokenizer_dir})
        return build_train_engine(EngineSpec(name="torch"), registries, **source, total_steps=50, seed=seed,
                                  optimizer=OptimizerSpec(lr=lr, schedule="constant"))

    return make


@pytest.fixture(scope="session")
def exported(make_torch_engine):
    """``exported(folder, seed=, steps=, tie_embeddings=)``: a torch engine trained ``steps`` steps on
    a seeded batch and exported as an HF folder; returns (engine, folder)."""
    import torch

    def export(folder, *, seed=0, steps=3, tie_embeddings=True):
        engine = make_torch_engine(seed=seed, tie_embeddings=tie_embeddings)
        ids = torch.randint(3, 512, (4, 32), generator=torch.Generator().manual_seed(seed)).tolist()
        for _ in range(steps):
            engine.train_step({"input_ids": ids}, lambda logprobs, mask: -(logprobs * mask).sum() / mask.sum())
        engine.export_hf(str(folder))
        return engine, str(folder)

    return export


@pytest.fixture(scope="session")
def start_server(vllm_env):
    """``start_server(folder)``: a vLLM server this session started (one CPU thread)."""
    from llm_vllm.config import VllmConfig
    from llm_vllm.server import VllmServer

    return lambda folder: VllmServer.start(vllm_env, folder, VllmConfig(threads=1, max_model_len=512))


@pytest.fixture(scope="session")
def vllm_server(start_server, exported, tmp_path_factory):
    """One vLLM server (tied embeddings, the tiny-r1 shape) for the whole session; engines connect
    to it with ``options = {url = ...}`` and load their checkpoint into it."""
    server = start_server(exported(tmp_path_factory.mktemp("vllm-start"))[1])
    yield server
    server.close()


@pytest.fixture(scope="session")
def connect_to(registries):
    """``connect_to(server, folder, **options)``: a ``vllm`` rollout engine from the registry on ``server``."""
    from llm_core.engines import build_rollout_engine
    from llm_core.specs import RolloutSpec

    def connect(server, folder, **options):
        spec = RolloutSpec(name="vllm", options={"url": server.client.url, **options})
        return build_rollout_engine(spec, registries, checkpoint=folder)

    return connect


@pytest.fixture
def connect(vllm_server, connect_to):
    """``connect(folder, **options)``: a rollout engine on the session's server."""
    return lambda folder, **options: connect_to(vllm_server, folder, **options)
