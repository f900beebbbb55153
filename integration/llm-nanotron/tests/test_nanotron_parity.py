"""Parity with the embedded engine: the same HF weights give the same logits, per-token log-probs
and next-token distributions (``top_logprobs``) (fp32, <= 1e-5) at TP=1, TP=2 and DP=2 (PP=2: slow),
an export matches transformers, and a few SFT and GRPO steps at TP=2 and DP=2, DPO steps and
distillation steps from a nanotron teacher's top-k at TP=2 follow the embedded engine's loss curve
(within 2e-5 per step; the two engines sum in different orders, nothing else differs). PP=2 runs one
step and matches too. Default tests run at TP=2 (one pool of worker processes for the session);
TP=1, DP=2 and PP=2 are marked slow.
"""

from __future__ import annotations

import math

import pytest
import torch

SHAPE = {"hidden_size": 32, "intermediate_size": 64, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2}
LOGIT_TOLERANCE = 1e-5
CURVE_TOLERANCE = 2e-5


@pytest.fixture(scope="module")
def hf_folder(registries, tokenizer_dir, tmp_path_factory):
    """An HF folder of a torch-engine model trained two steps (weights away from their init)."""
    engine = make("torch", registries, model_shape=SHAPE, tokenizer=tokenizer_dir, seed=3)
    batch = random_rows(4, 20, seed=0)
    for _ in range(2):
        engine.train_step(batch, mean_nll)
    folder = str(tmp_path_factory.mktemp("parity-weights"))
    engine.export_hf(folder)
    return folder


def make(name, registries, *, checkpoint=None, model_shape=None, tokenizer=None, seed=0, lr=1e-2,
         total_steps=20, **options):
    from llm_core.engines import build_train_engine
    from llm_core.specs import EngineSpec, ModelShape, OptimizerSpec

    source = {"checkpoint": checkpoint} if checkpoint else {"model": ModelShape(**model_shape), "tokenizer": tokenizer}
    optimizer = OptimizerSpec(lr=lr, warmup_steps=2, schedule="cosine")
    return build_train_engine(EngineSpec(name=name, options=options), registries, **source, optimizer=optimizer,
                              total_steps=total_steps, seed=seed)


def random_rows(rows, length, seed, ragged=False):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 400, (rows, length), generator=g).tolist()
    if ragged:
        ids = [row[: length - 3 * i] for i, row in enumerate(ids)]
    return {"input_ids": ids}


def mean_nll(logprobs, mask):
    return -(logprobs * mask).sum() / mask.sum()


def captured_logits(engine, batch):
    """The (B, T, V) logits the engine hands a loss that names them (a zero-gradient pass)."""
    seen = {}

    def loss(logits):
        seen["logits"] = logits.detach().clone()
        return (logits * 0).sum()

    engine.forward_backward(batch, loss, scale=0.0)
    return seen["logits"]


# The default suite uses one pool of workers (TP=2); every other layout starts its own: slow.
SLOW = pytest.mark.slow


@pytest.mark.parametrize("options", [pytest.param({"tp": 1}, marks=SLOW), {"tp": 2},
                                     pytest.param({"dp": 2}, marks=SLOW), pytest.param({"pp": 2}, marks=SLOW)],
                         ids=["tp1", "tp2", "dp2", "pp2"])
def test_same_weights_same_logits_and_logprobs(options, hf_folder, registries):
    torch_engine = make("torch", registries, checkpoint=hf_folder)
    nanotron = make("nanotron", registries, checkpoint=hf_folder, **options)
    batch = {**random_rows(4, 16, seed=1, ragged=True), "loss_mask": [[0] * 5 + [1] * 11] * 4}
    lp_diff = (torch_engine.logprobs(batch) - nanotron.logprobs(batch)).abs().max().item()
    logit_diff = (captured_logits(torch_engine, batch) - captured_logits(nanotron, batch)).abs().max().item()
    assert lp_diff <= LOGIT_TOLERANCE and logit_diff <= LOGIT_TOLERANCE, (lp_diff, logit_diff)
    assert (nanotron.logprobs(batch)[:, :4] == 0).all(), "the prompt is masked out"
    assert_same_distributions(torch_engine, nanotron, batch)


def assert_same_distributions(torch_engine, nanotron, batch):
    """``top_logprobs``: the whole next-token distribution (compared in vocabulary order, so that
    near-ties may sort either way) and the top 7 (merged from the TP shards' top 7s)."""
    def by_token(values, ids):
        return torch.empty_like(values).scatter_(-1, ids, values)

    whole = [by_token(*e.top_logprobs(batch)) for e in (torch_engine, nanotron)]
    assert (whole[0] - whole[1]).abs().max().item() <= LOGIT_TOLERANCE
    values, ids = nanotron.top_logprobs(batch, k=7)
    expected = torch_engine.top_logprobs(batch, k=7)[0]
    assert (values - expected).abs().max().item() <= LOGIT_TOLERANCE, "the same 7 largest values"
    assert (whole[0].gather(-1, ids) - values).abs().max().item() <= LOGIT_TOLERANCE, "ids name their tokens"


def test_an_export_matches_transformers(hf_folder, registries, tmp_path):
    from transformers import LlamaForCausalLM

    nanotron = make("nanotron", registries, checkpoint=hf_folder, tp=2)
    batch = random_rows(3, 12, seed=2)
    nanotron.train_step(batch, mean_nll)
    nanotron.export_hf(str(tmp_path))
    reference = LlamaForCausalLM.from_pretrained(str(tmp_path), dtype=torch.float32).eval()
    with torch.no_grad():
        expected = reference(torch.tensor(batch["input_ids"])).logits
    diff = (captured_logits(nanotron, batch) - expected).abs().max().item()
    assert diff <= LOGIT_TOLERANCE, diff


def sft_batch(step):
    """Prompt + answer rows of mixed lengths; the loss counts answer tokens only."""
    batch = random_rows(4, 18, seed=100 + step, ragged=True)
    batch["loss_mask"] = [[0] * 6 + [1] * (len(row) - 6) for row in batch["input_ids"]]
    return batch


@pytest.mark.parametrize("options", [{"tp": 2}, pytest.param({"dp": 2}, marks=SLOW)],
                         ids=["tp2", "dp2"])
def test_sft_steps_follow_the_embedded_engine(options, hf_folder, registries):
    loss = registries.losses.get("cross_entropy").build({})
    curves = {}
    for name, opts in (("torch", {}), ("nanotron", options)):
        engine = make(name, registries, checkpoint=hf_folder, lr=3e-3, total_steps=5, **opts)
        curves[name] = [engine.train_step(sft_batch(s), loss, micro_batch_size=2) for s in range(5)]
    for a, b in zip(curves["torch"], curves["nanotron"], strict=True):
        assert abs(a["loss"] - b["loss"]) <= CURVE_TOLERANCE, (curves["torch"], curves["nanotron"])
        assert abs(a["grad_norm"] - b["grad_norm"]) <= 1e-4 * a["grad_norm"]
        assert math.isclose(a["lr"], b["lr"], rel_tol=1e-12), "the same schedule (nanotron: a LambdaLR)"


def padded(rows):
    """Ragged rows as right-padded tensors of the batch's width (micro-batches keep that width)."""
    from llm_nanotron.batches import as_tensor, right_pad

    ids, attention = right_pad(rows["input_ids"], pad_id=0)
    return {"input_ids": ids, "attention_mask": attention, "loss_mask": as_tensor(rows["loss_mask"], ids.shape, 0)}


def grpo_batch(step, engine, reference):
    """Rows of prompt + sampled answer, completion-only mask, per-row advantages, old / ref log-probs."""
    batch = padded(sft_batch(step))  # one width for the whole batch, as the stage does
    batch["advantages"] = torch.tensor([1.0, -0.5, 0.5, -1.0]) * (1 if step % 2 else -1)
    batch["old_logprobs"] = engine.logprobs(batch)
    batch["ref_logprobs"] = reference.logprobs(batch)
    return batch


@pytest.mark.parametrize("options", [{"tp": 2}, pytest.param({"dp": 2}, marks=SLOW)],
                         ids=["tp2", "dp2"])
def test_grpo_steps_follow_the_embedded_engine(options, hf_folder, registries):
    """The registered grpo loss (clipped ratio, KL to a reference) wrapped as the GRPO stage wraps it
    (it also reads the logits, for the entropy metric), two optimizer steps per batch of rollouts."""
    from llm_rlvr.grpo_stage import with_diagnostics

    loss = with_diagnostics(registries.losses.get("grpo").build({"kl_coef": 0.05}))
    curves = {}
    for name, opts in (("torch", {}), ("nanotron", options)):
        engine = make(name, registries, checkpoint=hf_folder, lr=1e-3, total_steps=6, **opts)
        reference = engine.reference()
        curve = []
        for step in range(3):
            batch = grpo_batch(step, engine, reference)
            for half in (slice(0, 2), slice(2, 4)):
                curve.append(engine.train_step({k: v[half] for k, v in batch.items()}, loss))
        curves[name] = curve
    for a, b in zip(curves["torch"], curves["nanotron"], strict=True):
        for key in ("loss", "kl", "entropy"):
            assert abs(a[key] - b[key]) <= CURVE_TOLERANCE, (key, curves["torch"], curves["nanotron"])


@pytest.mark.slow
def test_two_pipeline_stages_match_at_one_step(hf_folder, registries):
    torch_engine = make("torch", registries, checkpoint=hf_folder)
    nanotron = make("nanotron", registries, checkpoint=hf_folder, pp=2)
    batch = sft_batch(0)
    first = [e.train_step(batch, mean_nll)["loss"] for e in (torch_engine, nanotron)]
    diff = (torch_engine.logprobs(batch) - nanotron.logprobs(batch)).abs().max().item()
    assert abs(first[0] - first[1]) <= CURVE_TOLERANCE and diff <= 1e-4, (first, diff)


def follow(curves, keys):
    for a, b in zip(curves["torch"], curves["nanotron"], strict=True):
        for key in keys:
            assert abs(a[key] - b[key]) <= CURVE_TOLERANCE, (key, curves["torch"], curves["nanotron"])


def test_dpo_steps_follow_the_embedded_engine(hf_folder, registries):
    """The registered dpo loss on interleaved chosen / rejected rows, with per-row (B,) reference
    log-probs, at TP=2: three steps."""
    loss = registries.losses.get("dpo").build({"beta": 0.5})
    batch = sft_batch(7)  # rows 2i / 2i + 1: one pair (the same 6-token prompt, two completions)
    reference = make("torch", registries, checkpoint=hf_folder)
    batch["ref_logps"] = (reference.logprobs(batch) * (reference.logprobs(batch) != 0)).sum(-1)
    curves = {}
    for name, opts in (("torch", {}), ("nanotron", {"tp": 2})):
        engine = make(name, registries, checkpoint=hf_folder, lr=3e-3, total_steps=3, **opts)
        curves[name] = [engine.train_step(batch, loss) for _ in range(3)]
    assert curves["torch"][-1]["loss"] < curves["torch"][0]["loss"]
    follow(curves, [k for k in curves["torch"][0] if k not in ("lr", "tokens", "grad_norm")])


def test_distillation_from_a_nanotron_teacher_follows_the_embedded_engine(hf_folder, registries, tokenizer_dir):
    """Soft-label KD: a teacher's top-8 next-token distribution (``top_logprobs`` of a nanotron
    engine at TP=2, a different model) as the batch's extra keys, the registered forward_kl loss
    (which reads the student's logits), students on either engine: three steps."""
    teacher = make("nanotron", registries, model_shape=SHAPE, tokenizer=tokenizer_dir, seed=7, tp=2)
    batch = padded(sft_batch(8))  # one width for every micro-batch: the teacher's keys are (B, T, 8)
    batch["teacher_top_logprobs"], batch["teacher_top_ids"] = teacher.top_logprobs(batch, k=8)
    loss = registries.losses.get("forward_kl").build({"temperature": 2.0})
    curves = {}
    for name, opts in (("torch", {}), ("nanotron", {"tp": 2})):
        engine = make(name, registries, checkpoint=hf_folder, lr=3e-3, total_steps=3, **opts)
        curves[name] = [engine.train_step(batch, loss, micro_batch_size=2) for _ in range(3)]
    assert curves["torch"][-1]["loss"] < curves["torch"][0]["loss"]
    follow(curves, ["loss", "kd", "ce", "kl", "teacher_topk_mass"])
