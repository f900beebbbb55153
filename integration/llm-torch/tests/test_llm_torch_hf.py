"""HF interchange: our checkpoints load in transformers' LlamaForCausalLM with the same logits, and
HF Llama checkpoints load here with the same logits (fp32, max abs diff <= 1e-4)."""

from __future__ import annotations

import pytest
import torch

from llm_torch import hf
from llm_torch.model import LlamaModel, ModelConfig

transformers = pytest.importorskip("transformers")


@pytest.mark.parametrize("tied", [True, False])
def test_export_loads_in_transformers_with_same_logits(tmp_path, tied, tokenizer_dir):
    from llm_torch.tokenizer import TextTokenizer

    torch.manual_seed(0)
    config = ModelConfig(vocab_size=400, hidden_size=64, intermediate_size=160, num_layers=3, num_heads=8,
                         num_kv_heads=2, tie_embeddings=tied, rope_theta=5000.0)
    model = LlamaModel(config).eval()
    hf.save_checkpoint(str(tmp_path), model, TextTokenizer.load(tokenizer_dir))
    theirs = transformers.LlamaForCausalLM.from_pretrained(str(tmp_path), dtype=torch.float32).eval()
    ids = torch.randint(0, 400, (2, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        diff = (model(ids) - theirs(ids).logits).abs().max().item()
    assert diff <= 1e-4, diff
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    messages = [{"role": "user", "content": "hello"}]
    assert hf_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == \
        TextTokenizer.load(str(tmp_path)).apply_chat_template(messages, add_generation_prompt=True)


def test_transformers_checkpoint_imports_with_same_logits(tmp_path):
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=300, hidden_size=96, intermediate_size=200,
                                      num_hidden_layers=2, num_attention_heads=6, num_key_value_heads=3,
                                      max_position_embeddings=256, rope_theta=20000.0, rms_norm_eps=1e-6,
                                      tie_word_embeddings=False)
    theirs = transformers.LlamaForCausalLM(config).eval()
    theirs.save_pretrained(str(tmp_path))
    ours, tokenizer = hf.load_checkpoint(str(tmp_path))
    assert tokenizer is None
    ids = torch.randint(0, 300, (3, 50), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        diff = (ours.eval()(ids) - theirs(ids).logits).abs().max().item()
    assert diff <= 1e-4, diff
    assert ours.num_parameters() == theirs.num_parameters()


@pytest.mark.parametrize("factor", [4.0])
def test_rope_scaled_transformers_checkpoint_keeps_its_scaling(tmp_path, factor):
    """transformers 5 writes RoPE scaling as ``rope_parameters``; a linear x4 model imports scaled
    (unscaled, its logits differed by about 6) and exports back in the same format. The scaling is
    a context extension from the registry (llm-longctx's ``linear``; its tests cover every type)."""
    pytest.importorskip("llm_longctx")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                                      rope_parameters={"rope_type": "linear", "factor": factor, "rope_theta": 5000.0})
    theirs = transformers.LlamaForCausalLM(config).eval()
    theirs.save_pretrained(str(tmp_path / "theirs"))
    assert "rope_scaling" not in (tmp_path / "theirs" / "config.json").read_text()  # the new format only
    ours, _ = hf.load_checkpoint(str(tmp_path / "theirs"))
    assert ours.config.rope_theta == 5000.0 and ours.config.rope_scaling["factor"] == factor
    ids = torch.randint(0, 300, (2, 200), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        diff = (ours.eval()(ids) - theirs(ids).logits).abs().max().item()
    assert diff <= 1e-4, diff
    hf.save_checkpoint(str(tmp_path / "ours"), ours, None)
    again = transformers.LlamaForCausalLM.from_pretrained(str(tmp_path / "ours"), dtype=torch.float32).eval()
    assert again.config.rope_parameters["rope_type"] == "linear"
    with torch.no_grad():
        assert (again(ids).logits - theirs(ids).logits).abs().max().item() <= 1e-4


def test_plain_rope_needs_no_registry(tmp_path, monkeypatch):
    """Plain RoPE (no rope_type) loads and exports without looking up any context extension."""
    import llm_core.plugins

    def no_registry():
        raise AssertionError("plain RoPE looked up the registry")

    monkeypatch.setattr(llm_core.plugins, "get_registries", no_registry)
    torch.manual_seed(0)
    model = LlamaModel(ModelConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2,
                                   num_kv_heads=1))
    hf.save_checkpoint(str(tmp_path), model, None)
    loaded, _ = hf.load_checkpoint(str(tmp_path))
    assert loaded.rotary.scaling is None
    config = (tmp_path / "config.json").read_text()
    assert '"rope_type": "default"' in config and '"rope_scaling": null' in config


def test_checkpoint_errors_name_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        hf.load_checkpoint(str(tmp_path))
    (tmp_path / "config.json").write_text('{"model_type": "gpt2"}')
    with pytest.raises(ValueError, match="only 'llama'"):
        hf.load_checkpoint(str(tmp_path))


def test_import_checkpoint_stage_copies_an_hf_folder(tmp_path):
    from llm_core.config import validate_recipe
    from llm_core.plugins import get_host, reset_host
    from llm_core.runner import PipelineRunner

    config = transformers.LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                      num_attention_heads=2, num_key_value_heads=1)
    transformers.LlamaForCausalLM(config).save_pretrained(str(tmp_path / "hf"))
    reset_host()
    host = get_host()
    recipe = validate_recipe({"name": "imp", "stages": [
        {"name": "base", "kind": "import_checkpoint", "source": str(tmp_path / "hf")}]}, host.registries, host)
    result = PipelineRunner(recipe, str(tmp_path / "run"), host).run()["base"]
    assert result.metrics["layers"] == 1
    assert (tmp_path / "run" / "base" / "checkpoint" / "model.safetensors").exists()
    reset_host()
    with pytest.raises(FileNotFoundError, match="not installed|no config.json"):
        from llm_torch.import_stage import resolve_source

        hf.load_checkpoint(resolve_source(str(tmp_path / "missing")))
