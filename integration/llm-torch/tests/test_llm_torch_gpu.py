"""On a CUDA GPU: the engine trains in bf16 and its sampler's logprobs match a teacher-forced pass."""

from __future__ import annotations

import pytest
import torch

from llm_core.specs import SamplingSpec

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_cuda_engine_trains_and_samples(registries, make_engine):
    shape = {"hidden_size": 128, "intermediate_size": 256, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2}
    engine = make_engine(shape, device="cuda", precision="bf16")
    loss = registries.losses.build("cross_entropy")
    batch = {"input_ids": torch.randint(0, 300, (8, 64), generator=torch.Generator().manual_seed(0))}
    curve = [engine.train_step(batch, loss)["loss"] for _ in range(10)]
    assert curve[-1] < curve[0]
    engine.precision = "fp32"  # exact comparison in fp32
    sample = engine.generate([[5, 6, 7]], 2, SamplingSpec(max_new_tokens=16, seed=0))[0][0]
    ids = [5, 6, 7, *sample.token_ids]
    lp = engine.logprobs({"input_ids": [ids]})[0, 2:2 + len(sample.token_ids)].cpu()
    assert (lp - torch.tensor(sample.logprobs)).abs().max().item() <= 1e-4
