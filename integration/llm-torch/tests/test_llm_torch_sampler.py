"""The sampler: KV-cache decoding agrees with full forward passes; logprobs are teacher-forced ones."""

from __future__ import annotations

import pytest
import torch

from llm_core.specs import SamplingSpec
from llm_torch import sampler
from llm_torch.decode import DecodeLinear, DecodeWeights, DecodeWeightsCache
from llm_torch.sampler import choose_tokens, filter_logits, inverse_cdf_sample, nucleus_mask


def _uniforms(rows, seed):
    return torch.rand((rows, 1), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _teacher_forced(engine, prompt, completion):
    """Logprobs of ``completion`` from one full forward pass without cache or padding."""
    ids = torch.tensor([prompt + completion])
    with torch.no_grad():
        logits = engine.model(ids).float()
    logprobs = logits.log_softmax(-1)[0, len(prompt) - 1:-1]
    return logprobs.gather(-1, torch.tensor(completion)[:, None]).squeeze(-1)


@pytest.mark.parametrize("backend", ["onednn", "blas"])  # both CPU matmul paths, whichever this CPU picks
def test_sampled_logprobs_equal_a_teacher_forced_pass(tiny_engine, backend, matmul_backend):
    matmul_backend(backend)
    prompts = [[5, 17, 42], [8], [3, 9, 27, 81, 100, 200, 7]]  # different lengths: left padding
    sampling = SamplingSpec(max_new_tokens=16, temperature=1.3, top_p=0.9, top_k=50, seed=7)
    groups = tiny_engine.generate(prompts, n=3, sampling=sampling)
    assert [len(g) for g in groups] == [3, 3, 3]
    worst = 0.0
    for prompt, group in zip(prompts, groups, strict=True):
        for sample in group:
            expected = _teacher_forced(tiny_engine, prompt, sample.token_ids)
            worst = max(worst, (torch.tensor(sample.logprobs) - expected).abs().max().item())
    assert worst <= 1e-5, worst


def test_greedy_decoding_matches_uncached_argmax(tiny_engine):
    prompt = [11, 12, 13, 14]
    sample = tiny_engine.generate([prompt, [1, 2]], n=1,
                                  sampling=SamplingSpec(max_new_tokens=10, temperature=0))[0][0]
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(len(sample.token_ids)):
            ids.append(int(tiny_engine.model(torch.tensor([ids]))[0, -1].argmax()))
    assert sample.token_ids == ids[len(prompt):]


def test_stop_tokens_end_a_sample_and_are_kept(tiny_engine):
    prompt = [11, 12, 13]
    free = tiny_engine.generate([prompt], 1, SamplingSpec(max_new_tokens=8, temperature=0))[0][0]
    stop = free.token_ids[3]
    stopped = tiny_engine.generate([prompt], 1, SamplingSpec(max_new_tokens=8, temperature=0,
                                                               stop_token_ids=(stop,)))[0][0]
    first = free.token_ids.index(stop)
    assert stopped.token_ids == free.token_ids[:first + 1]
    assert stopped.finish_reason == "stop" and free.finish_reason in ("length", "stop")


def test_seeded_sampling_is_reproducible_and_n_samples_differ(tiny_engine):
    sampling = SamplingSpec(max_new_tokens=12, temperature=1.0, seed=3)
    a = tiny_engine.generate([[4, 5, 6]], 4, sampling)[0]
    b = tiny_engine.generate([[4, 5, 6]], 4, sampling)[0]
    assert [s.token_ids for s in a] == [s.token_ids for s in b]
    assert len({tuple(s.token_ids) for s in a}) > 1


@pytest.mark.parametrize(("temperature", "top_p", "backend"), [(1.0, 1.0, "blas"), (0.8, 0.9, "blas"),
                                                                (1.0, 1.0, "onednn")])
def test_finished_rows_leave_the_batch_without_changing_any_sample(tiny_engine, monkeypatch, matmul_backend,
                                                                    temperature, top_p, backend):
    """Rows that stop are dropped from the decoding batch and the cache (``COMPACT_SHARE``); the
    samples are those of decoding every row to the end: the same tokens, the same logprobs. With
    oneDNN every decoding matrix is packed for the first row count and then multiplies fewer rows.
    (Sampled: the untrained model decodes greedily by repeating its last prompt token.)"""
    from llm_torch import sampler

    matmul_backend(backend)
    prompts = [[5, 17, 42], [8], [3, 9, 27, 81, 100, 200, 7], [11, 12], [60, 61, 62, 63], [90]]
    sampling = SamplingSpec(max_new_tokens=24, temperature=temperature, top_p=top_p, seed=5)
    free = [s.token_ids for g in tiny_engine.generate(prompts, n=2, sampling=sampling) for s in g]
    # Stop tokens that end the rows at different steps: the token each row decodes at step 2, 5, 8...
    stops = tuple({row[min(2 + 3 * (i % 7), len(row) - 1)] for i, row in enumerate(free)})
    sampling = sampling.model_copy(update={"stop_token_ids": stops})
    batch_sizes = []
    reorder = sampler.KVCache.reorder

    def counting_reorder(cache, index):
        batch_sizes.append(len(index))
        reorder(cache, index)

    monkeypatch.setattr(sampler.KVCache, "reorder", counting_reorder)
    compacted = tiny_engine.generate(prompts, n=2, sampling=sampling)
    assert len(batch_sizes) > 1 and min(batch_sizes) < len(prompts) * 2  # it did drop rows
    lengths = {len(s.token_ids) for g in compacted for s in g}
    assert len(lengths) > 2 and max(lengths) > 4  # rows finished at different steps
    monkeypatch.setattr(sampler, "COMPACT_SHARE", 2.0)  # never: every row decodes to the end
    full = tiny_engine.generate(prompts, n=2, sampling=sampling)
    for got, want in zip((s for g in compacted for s in g), (s for g in full for s in g), strict=True):
        assert got.token_ids == want.token_ids and got.finish_reason == want.finish_reason
        assert torch.allclose(torch.tensor(got.logprobs), torch.tensor(want.logprobs), atol=1e-5)


def test_filter_logits_top_k_and_top_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isinf(filter_logits(logits, 1.0, 2, 1.0)[0, 2:]).all()
    kept = ~torch.isinf(filter_logits(logits, 1.0, 0, 0.7))
    assert kept.tolist() == [[True, True, False, False]]  # 0.5 < 0.7 <= 0.8
    kept = ~torch.isinf(filter_logits(logits, 1.0, 0, 0.5))
    assert kept.tolist() == [[True, False, False, False]]


def _promised_nucleus(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """The sampler's promise, written independently in plain Python: rank tokens by probability
    (ties by token id), sum the float32 probabilities in float64 from the top, and keep each token
    whose mass before it is below top_p and whose probability is not zero (at least one token)."""
    mask = torch.zeros(probs.shape, dtype=torch.bool)
    for row, values in enumerate(probs.tolist()):
        ranked = sorted(range(len(values)), key=lambda token: (-values[token], token))
        mass = 0.0
        for place, token in enumerate(ranked):
            if place > 0 and (mass >= top_p or values[token] == 0.0):
                break
            mask[row, token] = True
            mass += values[token]
    return mask


def test_nucleus_is_the_promised_one_on_any_kernel():
    """Both the sort-free nucleus and the full-sort reference keep exactly the promised tokens, ties
    included and at top_p = 1 - 1e-7, where float32 sums round differently from kernel to kernel
    (AVX2 and AVX-512 disagreed there). Run with ATEN_CPU_CAPABILITY=avx2 to use the AVX2 kernels."""
    generator = torch.Generator().manual_seed(0)
    cases = 0
    for scale in (0.05, 0.3, 1.0, 4.0, 20.0):
        for top_p in (0.01, 0.3, 0.9, 0.95, 0.999, 1.0 - 1e-7):
            for temperature, top_k in ((1.0, 0), (0.7, 0), (1.3, 50)):
                logits = torch.randn(6, 1000, generator=generator) * scale
                logits[:3] = logits[:3].round()  # many exact ties, also at the nucleus boundary
                probs = filter_logits(logits, temperature, top_k, 1.0).softmax(-1)  # what choose_tokens sees
                promised = _promised_nucleus(probs, top_p)
                reference = ~torch.isinf(filter_logits(logits, temperature, top_k, top_p))
                assert torch.equal(nucleus_mask(probs, top_p), promised), (scale, top_p, temperature, top_k)
                assert torch.equal(reference, promised), (scale, top_p, temperature, top_k)
                cases += 1
    assert cases == 90


def test_nucleus_never_keeps_a_zero_probability_token():
    """Probabilities whose float32 total falls short of top_p: the nucleus is every token of
    non-zero probability, never one that top-k removed."""
    probs = torch.tensor([[0.5, 0.25, 0.125, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3, 0.0, 0.0]])
    top_p = 1.0 - 1e-9  # above the float64 sum of either row's float32 probabilities
    expected = [[True, True, True, False, False]] * 2
    assert nucleus_mask(probs, top_p).tolist() == expected
    assert (~torch.isinf(filter_logits(probs.log(), 1.0, 0, top_p))).tolist() == expected


def test_chosen_tokens_follow_the_filtered_distribution():
    """A chi-square check of 40,000 seeded draws against softmax(logits / T) restricted to the
    top-p nucleus; tokens outside the nucleus are never drawn."""
    probs = torch.tensor([0.30, 0.20, 0.15, 0.12, 0.10, 0.06, 0.04, 0.03])
    temperature, top_p, draws = 1.5, 0.8, 40_000
    logits = (probs.log() * temperature).expand(draws, -1).contiguous()  # softmax(logits / T) == probs
    tokens = choose_tokens(logits, temperature, 0, top_p, _uniforms(draws, seed=11))
    counts = torch.bincount(tokens, minlength=8).double()
    # Mass before each token: 0, .30, .50, .65, .77, .87: the nucleus is the first five tokens.
    assert counts[5:].sum() == 0
    expected = probs[:5].double() / probs[:5].sum() * draws
    chi_square = float(((counts[:5] - expected) ** 2 / expected).sum())
    assert chi_square < 18.47, (counts, expected)  # the 0.999 quantile of chi-square with 4 dof


def test_inverse_cdf_sampling_never_draws_a_zero_weight():
    weights = torch.zeros(5000, 7)
    weights[:, 2], weights[:, 4] = 1e-30, 1.0  # a weight vanishing next to a large one
    weights[::2, 6] = 3.0
    tokens = inverse_cdf_sample(weights, _uniforms(5000, seed=0))
    assert set(tokens.tolist()) <= {2, 4, 6}
    assert (tokens[1::2] != 6).all()
    # The whole unit interval maps onto non-zero weights, up to its float64 end.
    weights = torch.tensor([[0.0, 0.25, 0.0, 0.75, 0.0]])
    assert all(int(inverse_cdf_sample(weights, _uniforms(1, seed=s))) in (1, 3) for s in range(200))
    edge = torch.tensor([[1.0 - 2.0 ** -53]])  # the largest float64 below 1
    assert int(inverse_cdf_sample(weights, edge)) == 3


def test_generation_uses_the_weights_of_the_moment(tiny_engine):
    """The decoding weights (fused q/k/v and gate/up, packed) the engine keeps between calls are
    dropped at every training step: after optimizer steps (fused AdamW changes the weights in place
    without bumping their version counters) greedy decoding follows the new weights."""
    from llm_core.builtins.losses import cross_entropy

    prompt, greedy = [11, 12, 13, 14], SamplingSpec(max_new_tokens=6, temperature=0)
    before = tiny_engine.generate([prompt], 1, greedy)[0][0].token_ids
    other = (before[0] + 1) % tiny_engine.model.config.vocab_size  # teach a continuation it did not pick
    batch = {"input_ids": [prompt + [other] * 12] * 4}
    for _ in range(5):
        tiny_engine.train_step(batch, cross_entropy)
    after = tiny_engine.generate([prompt], 1, greedy)[0][0].token_ids
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(len(after)):
            ids.append(int(tiny_engine.model(torch.tensor([ids]))[0, -1].argmax()))
    assert after == ids[len(prompt):] and after != before
    # The decoding weights of a call are copies of the current parameters, fused.
    weights = DecodeWeights.of(tiny_engine.model, rows=1)
    attn = tiny_engine.model.model.layers[0].self_attn
    x = torch.randn(3, attn.q_proj.weight.shape[1])
    queries = weights.layers[0].qkv(x)[:, :attn.q_proj.weight.shape[0]]
    assert torch.allclose(queries, attn.q_proj(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layout", ["packed", "transposed", "plain"])
def test_decode_weights_compute_the_same_projections(layout):
    """Packed (oneDNN), transposed and plain decoding matmuls agree with F.linear up to summation
    order, for the row count they were packed for and for others (a prefill); under autocast the
    matrix is used as it is."""
    from llm_torch.linear import onednn_available

    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(96, 64, generator=generator) * 0.1
    linear = DecodeLinear(weight, rows=8, layout=layout)
    assert (linear.packed is not None) == (layout == "packed" and onednn_available())
    assert (linear.transposed is not None) == (layout == "transposed")
    for shape in ((8, 64), (8, 1, 64), (3, 40, 64)):
        x = torch.randn(*shape, generator=generator)
        assert torch.allclose(linear(x), torch.nn.functional.linear(x, weight), rtol=1e-5, atol=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        kept = DecodeLinear(weight, rows=8, layout=layout)
        assert kept.packed is None and kept.transposed is None and kept.weight is not None


def test_decode_layout_rule(matmul_backend, monkeypatch):
    """``decode_layout``: packed where oneDNN is the backend, on AMD CPUs, for large matrices and for
    models larger than the last-level cache; else transposed for wide matrices and plain for deep ones."""
    from llm_torch import linear

    if not linear.onednn_available():
        pytest.skip("this torch build has no oneDNN")
    cache = linear.last_level_cache_bytes()
    assert cache > 0
    monkeypatch.setattr(linear, "cpu_features", lambda: ("GenuineIntel", frozenset({"avx2", "avx512f"})))
    matmul_backend("blas")
    assert linear.decode_layout(1536, 256, model_bytes=cache // 2) == "transposed"
    assert linear.decode_layout(256, 768, model_bytes=cache // 2) == "plain"
    assert linear.decode_layout(8192, 256, model_bytes=cache // 2) == "packed"  # 8 MiB
    assert linear.decode_layout(256, 768, model_bytes=cache + 1) == "packed"
    matmul_backend("onednn")
    assert linear.decode_layout(256, 768, model_bytes=1) == "packed"
    matmul_backend("blas")  # on AMD, packed whatever the backend and the sizes
    monkeypatch.setattr(linear, "cpu_features", lambda: ("AuthenticAMD", frozenset({"avx2"})))
    assert linear.decode_layout(1536, 256, model_bytes=1) == "packed"
    assert linear.decode_layout(256, 768, model_bytes=1) == "packed"


def _token_ids(groups):
    return [sample.token_ids for group in groups for sample in group]


def test_decode_weights_are_kept_while_the_weights_are_unchanged(tiny_engine):
    """``DecodeWeightsCache``: a second call with the same weights and rows reuses the copy; a
    weight written in place from outside the engine (its version counter moves), another row count
    or ``sleep`` rebuild it; every call decodes as an uncached one does."""
    model, prompts = tiny_engine.model, [[5, 6, 7], [8, 9]]
    spec = SamplingSpec(max_new_tokens=5, temperature=1.0, top_p=0.9, seed=3)
    kept = tiny_engine._decode_weights

    def uncached():
        return _token_ids(sampler.generate(model, prompts, 1, spec, pad_id=0))

    first = tiny_engine.generate(prompts, 1, spec)
    copy = kept._weights
    assert _token_ids(tiny_engine.generate(prompts, 1, spec)) == _token_ids(first) == uncached()
    assert kept._weights is copy
    with torch.no_grad():  # outside the engine: a weight update it is not told about
        model.lm_head.weight.mul_(-1.0)
    changed = tiny_engine.generate(prompts, 1, spec)
    assert kept._weights is not copy and _token_ids(changed) == uncached() != _token_ids(first)
    copy = kept._weights
    tiny_engine.generate(prompts, 2, spec)  # twice the rows: another layout for them
    assert kept._weights is not copy
    tiny_engine.sleep()
    assert kept._weights is None
    with torch.no_grad():
        model.lm_head.weight.mul_(-1.0)


def test_a_kept_copy_is_rebuilt_for_another_model_or_autocast():
    """The key holds every matrix's identity and the autocast state: a cache handed another model,
    or used under autocast, builds the copy for it."""
    from llm_torch.model import LlamaModel, ModelConfig

    config = ModelConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2,
                         num_kv_heads=1)
    cache, (a, b) = DecodeWeightsCache(), (LlamaModel(config), LlamaModel(config))
    first = cache.get(a, rows=4)
    assert cache.get(a, rows=4) is first and cache.get(b, rows=4) is not first
    plain = cache.get(b, rows=4)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # no packed fp32 copies under autocast
        under_autocast = cache.get(b, rows=4)
        assert under_autocast is not plain and cache.get(b, rows=4) is under_autocast
    assert cache.get(b, rows=4) is not under_autocast
