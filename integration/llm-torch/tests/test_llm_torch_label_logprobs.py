"""Log-probs from hidden states without logits (``llm_torch.logprobs``) equal the logits path, values and gradients."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from llm_torch import logprobs as module  # noqa: E402
from llm_torch.engine import TorchEngine, token_logprobs  # noqa: E402
from llm_torch.model import LlamaModel, ModelConfig  # noqa: E402


@pytest.mark.parametrize("backend", ["blas", "onednn"])
@pytest.mark.parametrize("kept", [True, False], ids=["probabilities-kept", "recomputed"])
@pytest.mark.parametrize("all_scored", [False, True], ids=["some-ignored", "all-scored"])
def test_label_logprobs_match_the_full_softmax_with_gradients(monkeypatch, matmul_backend, backend, kept,
                                                              all_scored):
    if matmul_backend(backend) != backend:
        pytest.skip("this torch build has no oneDNN linear")
    monkeypatch.setattr(module, "CHUNK_ROWS", 5)  # several chunks
    if not kept:  # the backward recomputes each chunk's logits instead of keeping them
        monkeypatch.setattr(module, "KEEP_PROBS_BYTES", 0)
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(3, 7, 16, generator=g, requires_grad=True)
    weight = torch.randn(50, 16, generator=g, requires_grad=True)
    labels = torch.randint(0, 50, (3, 7), generator=g)
    if not all_scored:
        labels[0, :3] = -100
        labels[2, 5:] = -100
    upstream = torch.randn(3, 7, generator=g)
    fast = module.label_logprobs(hidden, weight, labels)
    (fast * upstream).sum().backward()
    grads = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    slow = token_logprobs(hidden @ weight.t(), labels)
    (slow * upstream).sum().backward()
    assert torch.allclose(fast, slow, atol=1e-5)
    assert torch.allclose(grads[0], hidden.grad, atol=1e-5) and torch.allclose(grads[1], weight.grad, atol=1e-5)


def test_engine_step_is_the_same_with_and_without_logits():
    def loss_without_logits(logprobs, mask):
        return -(logprobs * mask).sum() / mask.sum()

    def loss_with_logits(logits, logprobs, mask):
        return -(logprobs * mask).sum() / mask.sum() + 0 * logits.sum()

    batch = {"input_ids": [[1, 5, 7, 9, 3], [2, 4, 6]], "loss_mask": [[0, 0, 1, 1, 1], [0, 1, 1]]}
    results = []
    for loss in (loss_without_logits, loss_with_logits):
        torch.manual_seed(0)
        model = LlamaModel(ModelConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_layers=1,
                                       num_heads=2, num_kv_heads=1, max_seq_len=16))
        from llm_core.specs import OptimizerSpec

        engine = TorchEngine(model, optimizer=OptimizerSpec(lr=1e-2))
        metrics = engine.train_step(batch, loss)
        results.append((metrics["loss"], metrics["grad_norm"], engine.model.lm_head.weight.detach().clone()))
    assert results[0][0] == pytest.approx(results[1][0], abs=1e-6)
    assert results[0][1] == pytest.approx(results[1][1], rel=1e-4)
    assert torch.allclose(results[0][2], results[1][2], atol=1e-6)


def test_two_live_graphs_do_not_share_the_kept_buffer():
    """A second forward before the first backward gets its own buffer; each graph's gradient is its own."""
    g = torch.Generator().manual_seed(2)
    weight = torch.randn(40, 8, generator=g, requires_grad=True)
    hiddens = [torch.randn(2, 6, 8, generator=g, requires_grad=True) for _ in range(2)]
    labels = torch.randint(0, 40, (2, 6), generator=g)
    outs = [module.label_logprobs(h, weight, labels) for h in hiddens]  # both graphs alive
    grads = []
    for h, out in zip(hiddens, outs, strict=True):
        out.sum().backward()
        grads.append(h.grad.clone())
    for h, got in zip(hiddens, grads, strict=True):
        h.grad = None
        token_logprobs(h @ weight.t(), labels).sum().backward()
        assert torch.allclose(got, h.grad, atol=1e-5)


def test_a_second_backward_of_one_graph_is_refused():
    hidden = torch.randn(1, 4, 8, requires_grad=True)
    out = module.label_logprobs(hidden, torch.randn(30, 8), torch.randint(0, 30, (1, 4)))
    out.sum().backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="differentiate each graph once"):
        out.sum().backward()
