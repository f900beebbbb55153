"""The worker processes behind nanotron engines, started and driven from the stage's process.

A pool is ``tp * pp * dp`` processes of ``python -m llm_nanotron.worker`` with torchrun's
environment, each connected back to this process. Every engine of one layout shares its pool (a
policy and its reference are two models in the same workers), so processes start once per run and
layout. Commands go to every rank at once and return every rank's reply; a rank that fails ends
the pool (its peers may be blocked in a collective) and the error carries its traceback.
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Listener, wait
from typing import Any

from llm_nanotron.wire import receive, send


class WorkerError(RuntimeError):
    """A worker failed (its traceback is in the message) or died."""


@dataclasses.dataclass(frozen=True)
class Layout:
    tp: int
    pp: int
    dp: int
    device: str  # "cpu" or "cuda"
    threads: int  # torch CPU threads per worker
    precision: str  # "fp32", or "bf16" (GPU: DistributedTrainer with fp32 gradient accumulation)

    @property
    def world_size(self) -> int:
        return self.tp * self.pp * self.dp


class WorkerPool:
    def __init__(self, layout: Layout, start_timeout: float):
        self.layout = layout
        self.to_free: list[int] = []  # engines collected since the last command (see NanotronEngine)
        self._next_handle = 0
        key = secrets.token_bytes(16)
        self._listener = Listener(("127.0.0.1", 0), authkey=key)
        host, port = self._listener.address
        env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()),
               "WORLD_SIZE": str(layout.world_size), "LLMT_NANOTRON_CLIENT": f"{host}:{port}",
               "LLMT_NANOTRON_KEY": key.hex(), "OMP_NUM_THREADS": str(layout.threads),
               "CUDA_DEVICE_MAX_CONNECTIONS": "1",  # nanotron asserts it for its async TP kernels
               "TQDM_DISABLE": "1"}  # nanotron's serializer draws progress bars
        self.processes = [subprocess.Popen([sys.executable, "-m", "llm_nanotron.worker"],
                                           env={**env, "RANK": str(r), "LOCAL_RANK": str(r)})
                          for r in range(layout.world_size)]
        try:
            self.connections = self._accept(start_timeout)
            self.call("init", dataclasses.asdict(layout))
        except BaseException:
            self.close()
            raise

    def _accept(self, timeout: float) -> list[Any]:
        """Each worker's connection, in rank order; fails early when a worker exits first."""
        accepted: dict[int, Any] = {}

        def accept_all() -> None:
            while len(accepted) < self.layout.world_size:
                try:
                    connection = self._listener.accept()
                except OSError:
                    return
                accepted[receive(connection)] = connection

        thread = threading.Thread(target=accept_all, daemon=True)
        thread.start()
        deadline = time.monotonic() + timeout
        while thread.is_alive():
            dead = [p for p in self.processes if p.poll() is not None]
            if dead:
                raise WorkerError(f"a nanotron worker exited with code {dead[0].returncode} while starting; "
                                  "its error is printed above")
            if time.monotonic() > deadline:
                raise WorkerError(f"nanotron workers did not all connect within {timeout:.0f} s "
                                  "(engine option start_timeout_s)")
            thread.join(0.05)
        return [accepted[r] for r in range(self.layout.world_size)]

    def new_handle(self) -> int:
        self._next_handle += 1
        return self._next_handle

    def call(self, method: str, per_rank: list[dict[str, Any]] | dict[str, Any]) -> list[Any]:
        """Run ``method`` on every rank (the same arguments, or one dict per rank); every rank's result."""
        if not self.connections:
            raise WorkerError("this nanotron worker pool was closed after an error; build a new engine")
        arguments = per_rank if isinstance(per_rank, list) else [per_rank] * len(self.connections)
        to_free, self.to_free = self.to_free, []
        for connection, kwargs in zip(self.connections, arguments, strict=True):
            send(connection, (method, kwargs, to_free))
        return self._collect(method)

    def _collect(self, method: str) -> list[Any]:
        results: dict[int, Any] = {}
        index = {id(c): r for r, c in enumerate(self.connections)}
        while len(results) < len(self.connections):
            ready = wait([c for c in self.connections if index[id(c)] not in results], timeout=5.0)
            if not ready and any(p.poll() is not None for p in self.processes):
                self._fail(f"a nanotron worker died during {method!r}; its error is printed above")
            for connection in ready:
                try:
                    status, value = receive(connection)
                except (EOFError, ConnectionError):
                    self._fail(f"a nanotron worker died during {method!r}; its error is printed above")
                if status == "error":
                    self._fail(f"nanotron worker failed in {method!r}:\n{value}")
                results[index[id(connection)]] = value
        return [results[r] for r in range(len(self.connections))]

    def _fail(self, message: str) -> None:
        self.close()
        raise WorkerError(message)

    def close(self) -> None:
        for connection in getattr(self, "connections", []):
            try:
                send(connection, ("exit", {}, []))
                connection.close()
            except OSError:
                pass
        self.connections = []
        self._listener.close()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        _POOLS.pop(self.layout, None)


_POOLS: dict[Layout, WorkerPool] = {}


def pool_for(layout: Layout, start_timeout: float) -> WorkerPool:
    """The running pool of this layout, or a new one (its processes started and connected)."""
    pool = _POOLS.get(layout)
    if pool is None or not pool.connections:
        pool = WorkerPool(layout, start_timeout)
        _POOLS[layout] = pool
    return pool


def close_all() -> None:
    for pool in list(_POOLS.values()):
        pool.close()


atexit.register(close_all)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
