"""The compatibility layer: nanotron 0.4 imports, the patch is checked, the flash_attn stand-in is exact."""

from __future__ import annotations

import math
import sys

import pytest
import torch

from llm_nanotron import compat
from llm_nanotron import flash_attn_standin as fa


def test_nanotron_imports_with_the_trainer():
    llama = compat.load_nanotron()
    import nanotron.trainer  # noqa: F401 - imports flash_attn through starcoder2 and nn.layer_norm

    assert llama.__name__ == "nanotron.models.llama"
    assert compat.load_nanotron() is llama, "idempotent"
    if not compat.flash_attn_is_installed():
        assert sys.modules["flash_attn"].LLMT_STANDIN
        assert sys.modules["flash_attn.layers.rotary"].RotaryEmbedding is fa.RotaryEmbedding


def test_the_patch_replaces_exactly_the_circular_import():
    source = "import os\nfrom nanotron.config.config import LoggingArgs\nx = 1\n"
    patched = compat.patched_logging_source(source)
    assert compat.CIRCULAR_IMPORT not in patched and "LoggingArgs = " in patched
    assert patched.splitlines()[0] == "import os" and patched.splitlines()[2] == "x = 1"
    for broken in ("import os\n", source + compat.CIRCULAR_IMPORT + "\n"):
        with pytest.raises(compat.NanotronImportError, match="exactly once"):
            compat.patched_logging_source(broken)


def test_another_nanotron_version_fails_loudly(monkeypatch):
    monkeypatch.setattr(compat.importlib.metadata, "version", lambda name: "0.5")
    with pytest.raises(compat.NanotronImportError, match="nanotron 0.5 is installed"):
        compat.check_version()


def test_transformers_still_sees_no_flash_attn():
    compat.load_nanotron()
    from transformers.utils import is_flash_attn_2_available

    assert is_flash_attn_2_available() == compat.flash_attn_is_installed()


def naive_attention(q, k, v, causal):
    """One sequence, (len, heads, d), GQA by repetition, softmax written out."""
    k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
    v = v.repeat_interleave(q.shape[1] // v.shape[1], dim=1)
    scores = torch.einsum("qhd,khd->hqk", q, k) / math.sqrt(q.shape[-1])
    if causal:
        offset = k.shape[0] - q.shape[0]
        allowed = torch.ones(q.shape[0], k.shape[0]).tril(offset).bool()
        scores = scores.masked_fill(~allowed, float("-inf"))
    return torch.einsum("hqk,khd->qhd", scores.softmax(-1), v)


@pytest.mark.parametrize("lengths", [[5, 5, 5], [3, 7, 1]])
def test_varlen_attention_matches_a_naive_reference(lengths):
    g = torch.Generator().manual_seed(0)
    total = sum(lengths)
    q, k, v = (torch.randn(total, h, 8, generator=g) for h in (4, 2, 2))
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    out = fa.flash_attn_varlen_func(q, k, v, cu, cu, max(lengths), max(lengths), causal=True)
    expected = torch.cat([naive_attention(q[a:b], k[a:b], v[a:b], True) 
                          for a, b in zip(cu[:-1], cu[1:], strict=True)])
    assert torch.allclose(out, expected, atol=1e-6)


def test_rotary_interleaved_is_nanotrons_complex_rotation():
    """nanotron's own (inference) rotary multiplies pairs (2i, 2i+1) as complex numbers by
    exp(i t theta_i): the interleaved stand-in must do exactly that."""
    x = torch.randn(2, 6, 3, 8, generator=torch.Generator().manual_seed(1))
    rotary = fa.RotaryEmbedding(8, interleaved=True)
    kv = torch.stack((x, x), dim=2)
    q, kv_out = rotary(x, kv=kv)
    theta = 1.0 / (10000.0 ** (torch.arange(0, 8, 2).double() / 8))
    angles = torch.arange(6).double()[:, None] * theta
    rotation = torch.polar(torch.ones_like(angles), angles)[None, :, None, :]
    expected = torch.view_as_real(torch.view_as_complex(x.double().reshape(2, 6, 3, 4, 2).contiguous()) * rotation)
    assert torch.allclose(q, expected.reshape(x.shape).float(), atol=1e-5)
    assert torch.equal(kv_out[:, :, 0], q) and torch.equal(kv_out[:, :, 1], x), "k rotates, v does not"


def test_rms_norm_and_padding_helpers():
    x, w = torch.randn(3, 5, 16), torch.rand(16) + 0.5
    expected = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * w
    assert torch.allclose(fa.layer_norm_fn(x, w, None, eps=1e-5, is_rms_norm=True), expected, atol=1e-6)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]], dtype=torch.bool)
    hidden = torch.randn(2, 3, 4)
    flat, indices, cu, longest = fa.unpad_input(hidden, mask)
    assert flat.shape == (3, 4) and cu.tolist() == [0, 2, 3] and longest == 2
    assert torch.equal(fa.pad_input(flat, indices, 2, 3), hidden * mask[..., None])
