"""The losses against TRL 1.16's own code: its ``DPOTrainer`` loss on the same model and batch (through
our engine end to end), and its ORPO / SimPO loss methods on the same log-probs. Slow: importing
transformers and TRL alone takes tens of seconds on a busy 2-core machine."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

pytestmark = pytest.mark.slow
torch = pytest.importorskip("torch")
pytest.importorskip("trl")
pytest.importorskip("llm_torch")


def token_pairs(vocab: int, pairs: int, seed: int = 0):
    rng = random.Random(seed)
    out = []
    for _ in range(pairs):
        prompt = [rng.randrange(3, vocab) for _ in range(rng.randint(2, 5))]
        chosen = [rng.randrange(3, vocab) for _ in range(rng.randint(1, 6))] + [1]
        rejected = [rng.randrange(3, vocab) for _ in range(rng.randint(1, 6))] + [1]
        out.append((prompt, chosen, rejected))
    return out


def trl_inputs(pairs, ref):
    """TRL's collated batch: chosen rows first, then rejected, right-padded with 0."""
    seqs = [p + c for p, c, _ in pairs] + [p + r for p, _, r in pairs]
    masks = [[0] * len(p) + [1] * len(c) for p, c, _ in pairs] + [[0] * len(p) + [1] * len(r) for p, _, r in pairs]
    width = max(len(s) for s in seqs)
    ids = torch.tensor([s + [0] * (width - len(s)) for s in seqs])
    attention = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
    completion = torch.tensor([m + [0] * (width - len(m)) for m in masks])
    return {"input_ids": ids, "attention_mask": attention, "completion_mask": completion,
            "ref_chosen_logps": torch.tensor(ref[0::2]), "ref_rejected_logps": torch.tensor(ref[1::2])}


@pytest.fixture(scope="module")
def hf_model(tmp_path_factory):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True,
                         max_position_embeddings=64)
    model = LlamaForCausalLM(config)
    folder = tmp_path_factory.mktemp("hf") / "model"
    model.save_pretrained(folder)
    return model, str(folder)


def trl_trainer(model, tmp_path, loss_type, loss_weights=None, label_smoothing=0.0):
    from datasets import Dataset
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    from trl import DPOConfig, DPOTrainer

    backend = Tokenizer(models.WordLevel({f"t{i}": i for i in range(64)}, unk_token="t0"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="t1", pad_token="t0")
    dataset = Dataset.from_list([{"prompt": "t3 ", "chosen": "t4 t1", "rejected": "t5 t1"}] * 2)
    args = DPOConfig(output_dir=str(tmp_path), loss_type=loss_type, loss_weights=loss_weights, beta=0.1,
                     label_smoothing=label_smoothing, precompute_ref_log_probs=True, use_cpu=True, report_to=[],
                     save_strategy="no", per_device_train_batch_size=2, disable_tqdm=True)
    return DPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)


CASES = [(["sigmoid"], None, 0.0, "dpo", {}), (["ipo"], None, 0.0, "ipo", {}), (["hinge"], None, 0.0, "hinge", {}),
         (["robust"], None, 0.2, "robust", {"label_smoothing": 0.2}),
         (["sigmoid", "sft"], [1.0, 0.5], 0.0, "dpo", {"sft_weight": 0.5})]


@pytest.mark.parametrize(("loss_type", "weights", "smoothing", "ours", "options"), CASES)
def test_dpo_family_equals_trl_dpo_trainer(hf_model, tmp_path, loss_type, weights, smoothing, ours, options):
    from llm_core.engines import build_train_engine
    from llm_core.plugins import get_registries
    from llm_core.specs import EngineSpec

    model, folder = hf_model
    pairs = token_pairs(64, 4)
    engine = build_train_engine(EngineSpec(name="torch"), get_registries(), checkpoint=folder)
    rows = [p + side for p, c, r in pairs for side in (c, r)]
    masks = [[0] * len(p) + [1] * len(side) for p, c, r in pairs for side in (c, r)]
    ref = [-v - 3.0 for v in torch.rand(len(rows), generator=torch.Generator().manual_seed(1)).tolist()]
    loss = get_registries().losses.build(ours, {"beta": 0.1, **options})
    with torch.no_grad():
        logprobs = engine.logprobs({"input_ids": rows, "loss_mask": masks})
        mask = torch.zeros_like(logprobs)
        for i, m in enumerate(masks):
            mask[i, :len(m) - 1] = torch.tensor(m[1:], dtype=torch.float32)
        value, _ = loss(logprobs, mask, torch.tensor(ref))
    trainer = trl_trainer(model, tmp_path, loss_type, weights, smoothing)
    with torch.no_grad():
        expected = trainer._compute_loss(trainer.model, trl_inputs(pairs, ref), return_outputs=False)
    assert float(value) == pytest.approx(float(expected), abs=2e-5)
    metrics = {k: v[-1] for k, v in trainer._metrics["train"].items()}
    _, ours_metrics = loss(logprobs, mask, torch.tensor(ref))
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen"):
        assert float(ours_metrics[key]) == pytest.approx(metrics[key], abs=2e-5), key


def test_orpo_and_simpo_equal_trl():
    from trl.experimental.cpo import CPOTrainer
    from trl.experimental.orpo import ORPOTrainer

    from llm_prefopt import losses

    g = torch.Generator().manual_seed(2)
    chosen, rejected = -torch.rand(6, generator=g) * 3 - 0.01, -torch.rand(6, generator=g) * 3 - 0.01
    device = SimpleNamespace(device="cpu")
    trl_orpo = ORPOTrainer.odds_ratio_loss(SimpleNamespace(beta=0.1, accelerator=device), chosen, rejected)[0]
    assert losses.orpo_odds_ratio(chosen, rejected, 0.1).tolist() == pytest.approx(trl_orpo.tolist(), abs=1e-6)
    cpo = SimpleNamespace(beta=2.0, simpo_gamma=1.0, loss_type="simpo", label_smoothing=0.0, alpha=0.0,
                          accelerator=device)
    trl_simpo = CPOTrainer.cpo_loss(cpo, chosen, rejected)[0]
    assert losses.simpo(chosen, rejected, 2.0, 1.0).tolist() == pytest.approx(trl_simpo.tolist(), abs=1e-6)


def test_kto_equals_trl_kto_trainer(hf_model, tmp_path):
    from datasets import Dataset
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    from trl import KTOConfig, KTOTrainer

    from llm_core.engines import build_train_engine
    from llm_core.plugins import get_registries
    from llm_core.specs import EngineSpec

    model, folder = hf_model
    rows = [(p, c) for p, c, _ in token_pairs(64, 4, seed=3)]
    labels = [True, False, True, False]
    kl_rows = [(p, rows[i - 1][1]) for i, (p, _) in enumerate(rows)]  # TRL's rotation by one
    ref = [-3.0, -5.5, -4.2, -6.1]
    ref_kl = [-7.0, -6.5, -5.0, -8.0]

    def engine_rows(pairs):
        return {"input_ids": [p + c for p, c in pairs], "loss_mask": [[0] * len(p) + [1] * len(c) for p, c in pairs]}

    def padded(pairs):
        seqs = [p + c for p, c in pairs]
        width = max(len(s) for s in seqs)
        return (torch.tensor([s + [0] * (width - len(s)) for s in seqs]),
                torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs]),
                torch.tensor([[0] * len(p) + [1] * len(c) + [0] * (width - len(p) - len(c)) for p, c in pairs]))

    engine = build_train_engine(EngineSpec(name="torch"), get_registries(), checkpoint=folder)
    loss = get_registries().losses.build("kto", {"beta": 0.1, "desirable_weight": 1.3, "undesirable_weight": 0.9})
    with torch.no_grad():
        batch = engine_rows(rows)
        logprobs = engine.logprobs(batch)
        mask = torch.zeros_like(logprobs)
        for i, m in enumerate(batch["loss_mask"]):
            mask[i, :len(m) - 1] = torch.tensor(m[1:], dtype=torch.float32)
        kl_logps = engine.logprobs(engine_rows(kl_rows)).sum(-1)
        value, _ = loss(logprobs, mask, torch.tensor(labels, dtype=torch.float32), torch.tensor(ref), kl_logps,
                        torch.tensor(ref_kl))

    backend = Tokenizer(models.WordLevel({f"t{i}": i for i in range(64)}, unk_token="t0"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="t1", pad_token="t0")
    dataset = Dataset.from_list([{"prompt": "t3 ", "completion": "t4 t1", "label": b} for b in labels])
    args = KTOConfig(output_dir=str(tmp_path), beta=0.1, desirable_weight=1.3, undesirable_weight=0.9,
                     precompute_ref_log_probs=True, use_cpu=True, report_to=[], save_strategy="no",
                     per_device_train_batch_size=4, disable_tqdm=True)
    trainer = KTOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    ids, attention, completion = padded(rows)
    kl_ids, kl_attention, kl_completion = padded(kl_rows)
    inputs = {"input_ids": ids, "attention_mask": attention, "completion_mask": completion,
              "label": torch.tensor(labels), "KL_input_ids": kl_ids, "KL_attention_mask": kl_attention,
              "KL_completion_mask": kl_completion, "ref_logps": torch.tensor(ref), "ref_KL_logps": torch.tensor(ref_kl)}
    with torch.no_grad():
        expected = trainer._compute_loss(trainer.model, inputs, return_outputs=False)
    assert float(value) == pytest.approx(float(expected), abs=2e-5)
