"""The vLLM server process: its command line, environment, start-up wait, log and shutdown.

The server is vLLM's own OpenAI-compatible API server, run by the Python of vLLM's environment,
with development endpoints on (``/collective_rpc``, ``/sleep``, ``/reset_prefix_cache``) and this
package's worker extension (``server_side/llmt_vllm_worker.py``, put on its ``PYTHONPATH`` alone,
so nothing of the workspace's environment leaks into vLLM's).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from llm_vllm.client import VllmClient
from llm_vllm.config import VllmConfig
from llm_vllm.env import python_of

SERVED_NAME = "llmt-policy"
WORKER_EXTENSION = "llmt_vllm_worker.WeightSync"
SERVER_SIDE = Path(__file__).parent / "server_side"
# vLLM's CPU attention kernels take only these head sizes (vllm/v1/attention/backends/cpu_attn.py).
CPU_HEAD_SIZES = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)


def server_command(env: Path, checkpoint: str, port: int, config: VllmConfig, precision: str,
                   device: str = "cpu", model_len: int | None = None) -> list[str]:
    """``python -m vllm...api_server.entry`` with the options that make it a rollout server for llmt;
    ``model_len``: the longest sequence it will see (``max_model_len``, else the model's)."""
    command = [str(python_of(env)), "-m", "vllm.entrypoints.launchers.api_server.entry",
               "--model", checkpoint, "--served-model-name", SERVED_NAME, "--host", "127.0.0.1", "--port", str(port),
               "--dtype", "bfloat16" if precision == "bf16" else "float32",
               # raw: log-softmax of the model's logits before temperature and top-k / top-p (the contract's)
               "--logprobs-mode", "raw_logprobs",
               "--generation-config", "vllm",  # sampling defaults come from each request, not the folder
               "--worker-extension-cls", WORKER_EXTENSION, "--seed", "0", "--disable-log-stats",
               "--max-num-seqs", str(config.max_num_seqs)]
    if config.max_model_len is not None:
        command += ["--max-model-len", str(config.max_model_len)]
    if device == "cpu":
        # A chunked (partial) prefill makes vLLM rewind the request's random generator, which its CPU
        # worker cannot do for a seeded request: the engine dies ("CPU Generator does not use offset")
        # once seeded prompts outgrow one step's token budget (tiny-r1's GRPO step, 16 x 8 samples).
        # Without chunking a step takes whole prompts only, so its budget must hold the longest one.
        command += ["--no-enable-chunked-prefill", "--max-num-batched-tokens", str(max(2048, model_len or 0))]
    if config.enforce_eager:
        command.append("--enforce-eager")
    if config.gpu_memory_utilization is not None:
        command += ["--gpu-memory-utilization", str(config.gpu_memory_utilization)]
    if config.enable_sleep_mode:
        command.append("--enable-sleep-mode")
    return command + list(config.extra_args)


def server_environment(env: Path, config: VllmConfig, device: str) -> dict[str, str]:
    """The server's environment variables: vLLM's environment first on PATH, the worker extension on
    PYTHONPATH, none of the workspace's virtualenv variables."""
    out = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME") and not k.startswith("UV_")}
    out.update(PATH=f"{env / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}", PYTHONPATH=str(SERVER_SIDE),
               VLLM_SERVER_DEV_MODE="1", VLLM_CPU_KVCACHE_SPACE=str(config.cpu_kv_cache_gib))
    if config.threads is not None:  # one OpenMP pool of this size, unbound (shared machines)
        out.update(VLLM_CPU_OMP_THREADS_BIND="nobind", OMP_NUM_THREADS=str(config.threads))
    if device.startswith("cuda:"):
        out["CUDA_VISIBLE_DEVICES"] = device.split(":", 1)[1]
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def check_head_size(hf_config: dict, device: str) -> None:
    """A clear error before a minute of start-up for a model vLLM's CPU kernels cannot run."""
    head = hf_config.get("head_dim") or hf_config["hidden_size"] // hf_config["num_attention_heads"]
    if device == "cpu" and head not in CPU_HEAD_SIZES:
        raise ValueError(f"vLLM on CPU supports attention head sizes {CPU_HEAD_SIZES}; this model's is {head} "
                         "(hidden_size / num_heads). Use the embedded rollout engine (rollout = \"torch\") "
                         "for it, or a shape with head size 32 or more.")


def model_length(checkpoint: str, config: VllmConfig) -> int | None:
    """``max_model_len``, else the checkpoint's ``max_position_embeddings`` (None when it has none)."""
    if config.max_model_len is not None:
        return config.max_model_len
    hf_config = Path(checkpoint) / "config.json"
    return json.loads(hf_config.read_text()).get("max_position_embeddings") if hf_config.exists() else None


class VllmServer:
    """A vLLM server this process started; ``close()`` (also at exit) ends it and its workers."""

    def __init__(self, process: subprocess.Popen, client: VllmClient, log_path: Path):
        self.process, self.client, self.log_path = process, client, log_path

    @classmethod
    def start(cls, env: Path, checkpoint: str, config: VllmConfig, device: str = "cpu",
              precision: str = "fp32") -> VllmServer:
        port = config.port or free_port()
        log_path = Path(tempfile.gettempdir()) / f"llmt-vllm-{os.getpid()}-{port}.log"
        command = server_command(env, checkpoint, port, config, precision, device, model_length(checkpoint, config))
        with open(log_path, "wb") as log:
            # Its own session, so that close() can end the server with its engine-core and worker
            # processes; and SIGTERM when this process dies, so that a killed run leaves no server.
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env=server_environment(env, config, device), start_new_session=True,
                                       preexec_fn=_terminate_with_parent if sys.platform == "linux" else None)
        server = cls(process, VllmClient(f"http://127.0.0.1:{port}", config.request_timeout_s), log_path)
        server.wait_until_ready(config.startup_timeout_s)
        return server

    def wait_until_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the vLLM server exited with code {self.process.returncode} while starting; "
                                   f"its log ({self.log_path}) ends with:\n{self.log_tail()}")
            if self.client.healthy():
                return
            time.sleep(1.0)
        self.close()
        raise TimeoutError(f"the vLLM server did not answer /health within {timeout_s:.0f} s (raise "
                           f"startup_timeout_s on a busy machine); its log ({self.log_path}) ends with:\n"
                           f"{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace").splitlines() if self.log_path.exists() else []
        kept = [line for line in text if "Route:" not in line][-lines:]
        return "\n".join(kept) if kept else "(empty)"

    def close(self) -> None:
        """SIGTERM to the server's process group (vLLM shuts its engine down), SIGKILL if it lingers."""
        if self.process.poll() is not None:
            return
        for sig, wait_s in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(wait_s)
                return
            except subprocess.TimeoutExpired:
                continue


def _terminate_with_parent() -> None:
    """In the child before exec: ask Linux to send SIGTERM when the parent (the trainer) dies."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
