"""The engine as other packages see it: built from the registry, trained with a registry-free loss."""

from __future__ import annotations

import pytest
import torch

from llm_core.specs import SamplingSpec


def test_registry_example_from_readme(tiny_engine):
    engine = tiny_engine
    tok = engine.tokenizer
    prompt = tok.encode(tok.apply_chat_template([{"role": "user", "content": "the river city"}],
                                                add_generation_prompt=True))
    groups = engine.generate([prompt], n=4, sampling=SamplingSpec(max_new_tokens=12, seed=1))
    assert len(groups) == 1 and len(groups[0]) == 4
    for sample in groups[0]:
        assert sample.prompt_ids == prompt
        assert len(sample.token_ids) == len(sample.logprobs) > 0
        assert all(lp <= 0 for lp in sample.logprobs)
    batch = {"input_ids": [prompt + s.token_ids for s in groups[0]],
             "loss_mask": [[0] * len(prompt) + [1] * len(s.token_ids) for s in groups[0]],
             "advantages": [0.5, -0.5, 1.0, -1.0]}
    reference = engine.reference()
    batch["ref_logprobs"] = reference.logprobs(batch)
    batch["old_logprobs"] = engine.logprobs(batch)

    def policy_loss(logprobs, old_logprobs, advantages, mask):
        ratio = (logprobs - old_logprobs).exp()
        return ((-ratio * advantages[:, None]) * mask).sum() / mask.sum()

    metrics = engine.train_step(batch, policy_loss)
    assert {"loss", "grad_norm", "lr", "tokens"} <= set(metrics)
    assert metrics["tokens"] == sum(len(s.token_ids) for s in groups[0])
    after = engine.logprobs(batch)
    assert not torch.allclose(after, batch["old_logprobs"])
    assert torch.equal(reference.logprobs(batch), batch["ref_logprobs"])  # the reference is frozen


def test_loss_gets_only_what_it_names_and_may_return_metrics(tiny_engine):
    seen = {}

    def loss(logits, labels, **rest):
        seen.update(rest)
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100), \
            {"extra_metric": 3.0}

    metrics = tiny_engine.train_step({"input_ids": [[5, 6, 7, 8], [9, 10]], "weights": [1.0, 2.0]}, loss)
    assert metrics["extra_metric"] == 3.0 and metrics["tokens"] == 4
    assert {"logprobs", "mask", "weights"} <= set(seen)


SMALL = {"hidden_size": 32, "intermediate_size": 64, "num_layers": 1, "num_heads": 2, "num_kv_heads": 1}


def test_micro_batches_accumulate_to_the_full_batch_gradient(registries, make_engine):
    loss = registries.losses.build("cross_entropy")
    ids = torch.randint(0, 300, (4, 16), generator=torch.Generator().manual_seed(0))
    engines = [make_engine(SMALL, lr=3e-4, seed=3) for _ in range(2)]
    full = engines[0].train_step({"input_ids": ids}, loss)
    micro = engines[1].train_step({"input_ids": ids}, loss, micro_batch_size=2)
    assert abs(full["loss"] - micro["loss"]) < 1e-6
    for a, b in zip(engines[0].model.parameters(), engines[1].model.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_clipping_inside_the_fused_adamw_equals_clip_grad_norm(registries, make_engine):
    """The clipping factor enters the fused AdamW as its grad_scale: the step equals
    clip_grad_norm_ and then the optimizer step, with clipping (limit 0.05) and without (1e6)."""
    loss = registries.losses.build("cross_entropy")
    batch = {"input_ids": torch.randint(0, 300, (4, 16), generator=torch.Generator().manual_seed(0))}
    for limit in (0.05, 1e6):
        folded, plain = (make_engine(SMALL, lr=3e-3, seed=3) for _ in range(2))
        assert folded.optimizer.defaults["fused"]
        folded.grad_clip = plain.grad_clip = limit
        metrics = folded.train_step(batch, loss)
        plain.forward_backward(batch, loss)
        norm = torch.nn.utils.clip_grad_norm_([p for p in plain.model.parameters() if p.grad is not None], limit)
        plain.optimizer.step()
        assert (float(norm) > limit) == (limit < 1)
        assert metrics["grad_norm"] == pytest.approx(float(norm), rel=1e-6)
        for a, b in zip(folded.model.parameters(), plain.model.parameters(), strict=True):
            torch.testing.assert_close(a, b, atol=1e-7, rtol=1e-6)
        assert getattr(folded.optimizer, "grad_scale", None) is None  # not left for the next step


def test_save_and_load_restore_weights_and_optimizer(tiny_engine, make_engine, registries, tmp_path):
    loss = registries.losses.build("cross_entropy")
    batch = {"input_ids": torch.randint(0, 300, (2, 12), generator=torch.Generator().manual_seed(1))}
    tiny_engine.train_step(batch, loss)
    tiny_engine.save(str(tmp_path / "ckpt"), extra_state={"cursor": 7})
    expected = tiny_engine.train_step(batch, loss)
    restored = make_engine(checkpoint=str(tmp_path / "ckpt"))
    assert restored.load(str(tmp_path / "ckpt")) == {"cursor": 7}
    assert restored.step == 1
    again = restored.train_step(batch, loss)
    assert again["loss"] == expected["loss"] and again["lr"] == expected["lr"]
    assert restored.tokenizer.apply_chat_template([{"role": "user", "content": "hi"}]) == \
        "<|im_start|>user\nhi<|im_end|>\n"


def test_bf16_autocast_trains_and_stays_close_to_fp32(registries, make_engine):
    engines = {p: make_engine(precision=p) for p in ("fp32", "bf16")}
    batch = {"input_ids": torch.randint(0, 300, (4, 32), generator=torch.Generator().manual_seed(0))}
    diff = (engines["fp32"].logprobs(batch) - engines["bf16"].logprobs(batch)).abs().max().item()
    assert 0 < diff < 0.1
    loss = registries.losses.build("cross_entropy")
    curve = [engines["bf16"].train_step(batch, loss)["loss"] for _ in range(8)]
    assert curve[-1] < curve[0] - 0.5
    assert next(engines["bf16"].model.parameters()).dtype == torch.float32  # fp32 master weights


def test_schedules():
    from llm_torch.schedules import Schedule

    cosine = Schedule(1.0, total_steps=11, warmup_steps=1, kind="cosine", min_lr_ratio=0.1)
    assert cosine.lr(0) == 1.0 and abs(cosine.lr(10) - 0.1) < 1e-9 and abs(cosine.lr(5.5) - 0.55) < 1e-9
    warm = Schedule(1.0, total_steps=10, warmup_steps=4, kind="constant")
    assert [warm.lr(s) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    wsd = Schedule(1.0, total_steps=10, warmup_steps=2, kind="wsd", min_lr_ratio=0.0, decay_fraction=0.3)
    assert [round(wsd.lr(s), 3) for s in range(10)] == [0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.0]


def test_value_head_feeds_the_loss_and_trains(make_engine):
    engine = make_engine(SMALL, value_head=True)
    batch = {"input_ids": [[5, 6, 7, 8], [9, 10, 11, 12]], "returns": [1.0, -1.0]}

    def value_loss(values, returns):
        return ((values[:, -1] - returns) ** 2).mean()

    curve = [engine.train_step(batch, value_loss)["loss"] for _ in range(20)]
    assert curve[-1] < curve[0] / 4
    assert engine.values(batch).shape == (2, 4)
