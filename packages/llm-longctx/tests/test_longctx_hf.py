"""Scaled-RoPE checkpoints round-trip between transformers and the embedded engine (llm-torch), every
type: a transformers Llama with ``rope_parameters`` of that type loads with the same logits (fp32,
<= 1e-4, at lengths beyond the original context), exports back in the same ``rope_parameters``,
and transformers reloads our export with the same logits again."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")
hf = pytest.importorskip("llm_torch.hf")

SCALINGS = {
    "linear": ({"rope_type": "linear", "factor": 4.0}, 256),
    "dynamic": ({"rope_type": "dynamic", "factor": 4.0}, 64),  # max positions: where dynamic starts
    "yarn": ({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64}, 256),
    "yarn_options": ({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64, "beta_fast": 16.0,
                      "beta_slow": 2.0, "truncate": False}, 256),
    "llama3": ({"rope_type": "llama3", "factor": 4.0, "original_max_position_embeddings": 64, "low_freq_factor": 1.0,
                "high_freq_factor": 4.0}, 256),
}
IDS = torch.randint(0, 300, (2, 200), generator=torch.Generator().manual_seed(3))


def logits_diff(ours, theirs) -> float:
    with torch.no_grad():
        return (ours.eval()(IDS) - theirs.eval()(IDS).logits).abs().max().item()


def tiny_llama(rope_parameters: dict, max_positions: int):
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2,
                                      max_position_embeddings=max_positions,
                                      rope_parameters={**rope_parameters, "rope_theta": 5000.0})
    return transformers.LlamaForCausalLM(config).eval()


@pytest.mark.parametrize("case", sorted(SCALINGS))
def test_transformers_checkpoint_round_trips_with_its_scaling(tmp_path, case):
    rope_parameters, max_positions = SCALINGS[case]
    theirs = tiny_llama(rope_parameters, max_positions)
    theirs.save_pretrained(str(tmp_path / "theirs"))
    ours, _ = hf.load_checkpoint(str(tmp_path / "theirs"))
    assert type(ours.rotary.scaling).rope_type == rope_parameters["rope_type"]
    assert logits_diff(ours, theirs) <= 1e-4
    plain = transformers.LlamaForCausalLM(transformers.LlamaConfig(**{
        **theirs.config.to_dict(), "rope_parameters": {"rope_type": "default", "rope_theta": 5000.0}}))
    plain.load_state_dict(theirs.state_dict())
    assert logits_diff(ours, plain) > 1e-3  # the scaling matters at these lengths (10x the tolerance)

    hf.save_checkpoint(str(tmp_path / "ours"), ours, None)
    again = transformers.LlamaForCausalLM.from_pretrained(str(tmp_path / "ours"), dtype=torch.float32)
    for key, value in {**rope_parameters, "rope_theta": 5000.0}.items():
        assert again.config.rope_parameters[key] == value, key
    assert again.config.max_position_embeddings == max_positions
    assert logits_diff(ours, again) <= 1e-4
    reloaded, _ = hf.load_checkpoint(str(tmp_path / "ours"))
    assert logits_diff(reloaded, theirs) <= 1e-4


def test_ntk_exports_as_plain_rope_on_the_grown_base(tmp_path):
    """transformers has no static NTK type: our NTK model is written as plain RoPE on
    theta * s ** (d / (d - 2)), which transformers (and we, reloading) rotate identically."""
    from llm_torch.model import ModelConfig

    config = ModelConfig(vocab_size=300, hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4,
                         num_kv_heads=2, max_seq_len=256, rope_theta=5000.0,
                         rope_scaling={"rope_type": "ntk", "factor": 4.0})
    torch.manual_seed(0)
    ours = hf.build_model(config)
    hf.save_checkpoint(str(tmp_path), ours, None)
    theirs = transformers.LlamaForCausalLM.from_pretrained(str(tmp_path), dtype=torch.float32)
    assert theirs.config.rope_parameters["rope_type"] == "default"
    assert theirs.config.rope_parameters["rope_theta"] == pytest.approx(5000.0 * 4.0 ** (16 / 14))
    assert logits_diff(ours, theirs) <= 1e-4
    reloaded, _ = hf.load_checkpoint(str(tmp_path))
    assert reloaded.rotary.scaling is None and logits_diff(reloaded, theirs) <= 1e-4


def test_unknown_or_bad_rope_parameters_name_the_file(tmp_path):
    theirs = tiny_llama({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64}, 256)
    theirs.save_pretrained(str(tmp_path))
    config_json = tmp_path / "config.json"
    text = config_json.read_text()
    config_json.write_text(text.replace('"yarn"', '"warp"'))
    with pytest.raises(ValueError, match=r"config.json: rope_parameters.rope_type 'warp' is not a registered"):
        hf.load_checkpoint(str(tmp_path))
    config_json.write_text(text.replace('"original_max_position_embeddings"', '"original_max_positions"'))
    expected = (r"config.json: rope_type 'yarn': rope_parameters.original_max_position_embeddings: Field required; "
                r"rope_parameters.original_max_positions: unknown option; did you mean "
                r"'original_max_position_embeddings'\?")
    with pytest.raises(ValueError, match=expected):
        hf.load_checkpoint(str(tmp_path))
